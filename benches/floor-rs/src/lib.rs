//! The Rust floor: benches/floor/worker.js's health check, batch and decision, in workerd through workers-rs, with
//! the same storage I/O in the same order and nothing else (no checks, no rules, events kept as JSON). What it
//! takes beyond the JavaScript floor is the cost of Rust, wasm-bindgen and workers-rs themselves; what edgecdp takes
//! beyond it is the cost of edgecdp's own code.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::*;

const SNAPSHOT_EVERY_MS: i64 = 1000;
const KEPT_EVENTS: usize = 200;

#[derive(Deserialize)]
struct Batch {
    batch: Vec<Value>,
}

#[derive(Deserialize)]
struct Decide {
    #[serde(rename = "anonymousId")]
    anonymous_id: String,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    id: String,
    events: Vec<Value>,
}

#[derive(Serialize, Deserialize)]
struct Apply {
    id: String,
    events: Vec<Value>,
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let path = req.path();
    if path == "/healthz" {
        return Response::ok("ok");
    }
    if req.method() != Method::Post {
        return Response::error("not found", 404);
    }
    let kv = env.kv("EDGECDP")?;
    match path.as_str() {
        "/v1/batch" => {
            let body: Batch = req.json().await?;
            let anonymous_id =
                body.batch.first().and_then(|e| e.get("anonymousId")).and_then(Value::as_str).unwrap_or_default();
            kv.get("config:current").text().await?;
            let key = format!("idx:a:{anonymous_id}");
            let id = match kv.get(&key).text().await? {
                Some(id) => id,
                None => {
                    let id = format!("p_{anonymous_id}");
                    kv.put(&key, &id)?.execute().await?;
                    id
                }
            };
            let stub = env.durable_object("PROFILES")?.id_from_name(&id)?.get_stub()?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_body(Some(serde_json::to_string(&Apply { id, events: body.batch })?.into()));
            let mut answer = stub.fetch_with_request(Request::new_with_init("https://profile/apply", &init)?).await?;
            let mut out: serde_json::Map<String, Value> = answer.json().await?;
            out.insert("ok".into(), Value::Bool(true));
            Response::from_json(&out)
        }
        "/v1/decide" => {
            let body: Decide = req.json().await?;
            kv.get("config:current").text().await?;
            let id = kv.get(&format!("idx:a:{}", body.anonymous_id)).text().await?;
            let snapshot = match &id {
                Some(id) => kv.get(&format!("profile:{id}")).bytes().await?,
                None => None,
            };
            let html = if snapshot.is_some() { "<h2>Welcome back</h2>" } else { "<h2>Welcome</h2>" };
            Response::from_json(&serde_json::json!({
                "profileId": id,
                "segments": [],
                "slots": { "hero": { "block": null, "variant": null, "html": html } },
            }))
        }
        _ => Response::error("not found", 404),
    }
}

#[durable_object]
pub struct FloorProfile {
    state: State,
    env: Env,
}

impl DurableObject for FloorProfile {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let Apply { id, events } = req.json().await?;
        let storage = self.state.storage();
        // One storage read of both keys, as the JavaScript floor's `storage.get([...])`.
        let got = storage.get_multiple(vec!["profile", "snapshot_at"]).await?;
        let read = |key: &str| got.get(&key.into());
        let mut profile: Stored = match read("profile") {
            v if v.is_undefined() => Stored { id, events: Vec::new() },
            v => serde_wasm_bindgen::from_value(v)?,
        };
        let last = read("snapshot_at").as_f64().unwrap_or(0.0) as i64;
        let accepted = events.len();
        profile.events.extend(events);
        let excess = profile.events.len().saturating_sub(KEPT_EVENTS);
        profile.events.drain(..excess);
        let now = Date::now().as_millis() as i64;
        if now - last >= SNAPSHOT_EVERY_MS {
            storage.put_multiple(serde_json::json!({ "profile": &profile, "snapshot_at": now })).await?;
            let text = serde_json::to_string(&profile)?;
            self.env.kv("EDGECDP")?.put(&format!("profile:{}", profile.id), text)?.execute().await?;
        } else {
            storage.put("profile", &profile).await?;
            storage.set_alarm(last + SNAPSHOT_EVERY_MS).await?;
        }
        Response::from_json(&serde_json::json!({ "accepted": accepted }))
    }

    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        if let Some(profile) = storage.get::<Stored>("profile").await? {
            storage.put("snapshot_at", Date::now().as_millis() as i64).await?;
            let text = serde_json::to_string(&profile)?;
            self.env.kv("EDGECDP")?.put(&format!("profile:{}", profile.id), text)?.execute().await?;
        }
        Response::ok("")
    }
}
