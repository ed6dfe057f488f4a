//! The per-profile Durable Object: the single writer of one profile.
//!
//! KV has no compare-and-swap and keeps the last of concurrent writes, so every change to a profile goes
//! through the profile's own Durable Object. Each request runs under `blockConcurrencyWhile`, which delivers no
//! other request to this object until the read-apply-write (and the KV snapshot) is done: writes to one
//! profile are strictly serialized and none is lost.
//!
//! Requests: `POST /apply` (an encoded `ApplyRequest`), `POST /erase`. An alarm erases an anonymous profile
//! once `retention.anonymousDays` have passed without activity.

use crate::core::config::Config;
use crate::core::identity::Identity;
use crate::core::profile::{apply_events, Profile};
use crate::core::store::{decode_apply, decode_profile, encode_profile};
use crate::core::time::Millis;
use crate::edge::http::{json_response, ApiError};
use crate::edge::kv;
use serde_json::json;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, State, Storage};

const BINDING: &str = "PROFILES";
/// Key of the profile inside the object's own storage.
const PROFILE_KEY: &str = "profile";
/// KV refuses expirations less than 60 seconds away.
const MIN_KV_TTL_SECONDS: i64 = 60;

/// Sends a request to a profile's writer and returns its JSON answer. Any failure is the store being
/// unavailable: the writer validates nothing that came from outside the Worker.
pub async fn send(
    env: &Env,
    profile_id: &str,
    action: &str,
    body: Vec<u8>,
) -> std::result::Result<serde_json::Value, ApiError> {
    let stub = env.durable_object(BINDING)?.id_from_name(profile_id)?.get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(JsValue::from(Uint8Array::from(body.as_slice()))));
    let req = Request::new_with_init(&format!("https://profile/{action}"), &init)?;
    let mut resp = stub.fetch_with_request(req).await?;
    let text = resp.text().await.unwrap_or_default();
    match resp.status_code() {
        200 => serde_json::from_str(&text).map_err(|e| ApiError::Unavailable(format!("profile writer: {e}"))),
        404 => Err(ApiError::NotFound { code: "profile_not_found", message: "the profile no longer exists".into() }),
        status => Err(ApiError::Unavailable(format!("profile writer answered {status}: {text}"))),
    }
}

#[durable_object]
pub struct ProfileObject {
    state: State,
    env: Env,
}

impl DurableObject for ProfileObject {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let action = req.path();
        let bytes = req.bytes().await?;
        let storage = self.state.storage();
        let env = self.env.clone();
        match action.as_str() {
            "/apply" => {
                let apply = match decode_apply(&bytes) {
                    Ok(a) => a,
                    Err(e) => return internal_error(400, "invalid_apply_request", &e.to_string()),
                };
                let outcome = self
                    .state
                    .block_concurrency_while(async move {
                        let config = config(&env).await?;
                        let current = read_profile(&storage).await?;
                        let (profile, outcome) = apply_events(current, apply, &config);
                        if let (true, Some(profile)) = (outcome.changed, profile.as_ref()) {
                            write_profile(&storage, &env, &config, profile, &outcome.new_identities).await?;
                        }
                        Ok(outcome)
                    })
                    .await?;
                json_response(
                    200,
                    &json!({"stored": outcome.stored, "duplicates": outcome.duplicates, "refused": outcome.refused}),
                )
            }
            "/erase" => {
                let erased = self.state.block_concurrency_while(async move { erase(&storage, &env).await }).await?;
                match erased {
                    Some(identities) => json_response(200, &json!({"erased": true, "identities": identities})),
                    None => internal_error(404, "profile_not_found", "no profile here"),
                }
            }
            other => internal_error(404, "not_found", &format!("no action {other}")),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        let env = self.env.clone();
        self.state
            .block_concurrency_while(async move {
                let config = config(&env).await?;
                if let Some(profile) = read_profile(&storage).await? {
                    match profile.expires_at(config.retention_anonymous_days) {
                        Some(at) if at <= now() => {
                            erase(&storage, &env).await?;
                        }
                        // Activity since the alarm was set, or the profile became known: look again later.
                        Some(at) => storage.set_alarm(at - now()).await?,
                        None => {}
                    }
                }
                Ok(())
            })
            .await?;
        Response::ok("")
    }
}

fn now() -> Millis {
    worker::Date::now().as_millis() as Millis
}

fn internal_error(status: u16, code: &str, message: &str) -> Result<Response> {
    json_response(status, &json!({"error": {"code": code, "message": message, "path": ""}}))
}

async fn config(env: &Env) -> Result<std::rc::Rc<Config>> {
    kv::config(env).await.map(|(_, c)| c).map_err(|e| worker::Error::RustError(format!("{e:?}")))
}

async fn read_profile(storage: &Storage) -> Result<Option<Profile>> {
    let value = JsFuture::from(storage.as_raw().get(PROFILE_KEY)?).await?;
    if value.is_undefined() {
        return Ok(None);
    }
    let bytes = Uint8Array::new(&value).to_vec();
    decode_profile(&bytes).map(Some).map_err(|e| worker::Error::RustError(e.to_string()))
}

async fn write_profile(
    storage: &Storage,
    env: &Env,
    config: &Config,
    profile: &Profile,
    new_identities: &[Identity],
) -> Result<()> {
    let bytes = encode_profile(profile);
    storage.put_raw(PROFILE_KEY, JsValue::from(Uint8Array::from(bytes.as_slice()))).await?;
    // An anonymous profile expires after its retention period without activity: the alarm erases it from here,
    // and the KV copies carry the same expiration in case the alarm is late.
    let expires_at = profile.expires_at(config.retention_anonymous_days);
    let kv_expiration = expires_at.map(|at| (at / 1000).max(now() / 1000 + MIN_KV_TTL_SECONDS) as u64);
    match expires_at {
        Some(at) => storage.set_alarm((at - now()).max(1_000)).await?,
        None => storage.delete_alarm().await?,
    }
    let store = env.kv(kv::KV_BINDING)?;
    // The snapshot goes first, so that an index entry never leads to a profile that is not there yet.
    let mut put = store.put_bytes(&format!("profile:{}", profile.id), &bytes)?;
    if let Some(exp) = kv_expiration {
        put = put.expiration(exp);
    }
    put.execute().await?;
    // Identities whose expiration must follow the profile's are rewritten too, not only new ones.
    let to_index: Vec<&Identity> =
        if kv_expiration.is_some() { profile.identities.iter().collect() } else { new_identities.iter().collect() };
    for id in to_index {
        let key = format!("idx:{}", id.key());
        // An identity already indexed to another profile is left there: linking two profiles is a merge, which
        // the identity-resolution work does with its own rules.
        match store.get(&key).text().await? {
            Some(existing) if existing != profile.id => {}
            _ => {
                let mut put = store.put(&key, profile.id.clone())?;
                if let Some(exp) = kv_expiration {
                    put = put.expiration(exp);
                }
                put.execute().await?
            }
        }
    }
    Ok(())
}

/// Removes everything held about the profile: its storage here (the profile, its dedup window and consent
/// trail), its alarm, its KV snapshot and every index entry that leads to it. Returns how many identities
/// were unlinked, or `None` when there was no profile.
async fn erase(storage: &Storage, env: &Env) -> Result<Option<usize>> {
    let Some(profile) = read_profile(storage).await? else { return Ok(None) };
    let store = env.kv(kv::KV_BINDING)?;
    for id in &profile.identities {
        let key = format!("idx:{}", id.key());
        if store.get(&key).text().await?.as_deref() == Some(profile.id.as_str()) {
            store.delete(&key).await?;
        }
    }
    store.delete(&format!("profile:{}", profile.id)).await?;
    storage.delete_alarm().await?;
    storage.delete_all().await?;
    Ok(Some(profile.identities.len()))
}
