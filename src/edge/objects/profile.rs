//! The per-profile Durable Object: the single writer of one profile.
//!
//! KV has no compare-and-swap and keeps the last of concurrent writes, so every change to a profile goes
//! through the profile's own Durable Object. Each request runs under `blockConcurrencyWhile`, which delivers no
//! other request to this object until the read-apply-write (and the KV snapshot) is done: writes to one
//! profile are strictly serialized and none is lost.
//!
//! Requests: `POST /apply` (an encoded `ApplyRequest`), `POST /erase`, `POST /forget` (drop a tombstone whose
//! profile was erased), and for identity resolution
//! `POST /handover` (give this profile to a survivor and leave a tombstone), `POST /restore` (take a profile
//! back: a refused merge or a split), `POST /split` (give back a profile this one absorbed). A tombstoned
//! object answers `409 {"movedTo": id}` so the Worker follows it; the tombstone expires after a day, by which
//! time KV shows the new index everywhere. Calls go only from a survivor to the profiles it absorbs, never
//! back, so two objects never wait on each other. An alarm erases an anonymous profile once
//! `retention.anonymousDays` have passed without activity.
//!
//! KV takes at most one write a second per key (at Cloudflare), so the object writes its snapshot at once only
//! when the last one is a second old; otherwise it notes the snapshot as due and its alarm (one alarm, at the
//! earliest of that and the retention expiry) writes it. Readers that find a snapshot younger than
//! `FRESH_MS` ask the object instead (`Action::Read`, `current_of`), so a decision or an admin read right after a
//! write sees it. Index entries carry an expiration a day beyond the profile's own, refreshed about once a day
//! rather than on every write.

use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyAnswer, ApplyRequest};
use crate::core::engine::audiences::{catch_up, track};
use crate::core::engine::journeys::{self, mark_enqueued, to_enqueue, Claim};
use crate::core::engine::merge::{pending_links, split};
use crate::core::engine::write::{index_entry_stays, refresh, write};
use crate::core::model::audience::Cause;
use crate::core::model::identity::Identity;
use crate::core::model::profile::Profile;
use crate::core::rules::Config;
use crate::core::store::{
    decode_apply, decode_profile, decode_snapshot, encode_apply_answer, encode_profile, encode_profile_bounded,
    encode_snapshot,
};
use crate::core::wire::audiences::main_identity;
use crate::edge::audiences;
use crate::edge::deliveries;
use crate::edge::http::ApiError;
use crate::edge::kv;
use crate::edge::objects::{get_number, get_raw, get_text};
use serde_json::json;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State, Storage};

const BINDING: &str = "PROFILES";
/// Key of the profile inside the object's own storage.
const PROFILE_KEY: &str = "profile";
/// Key of the tombstone: the id of the profile this one was merged into.
const MOVED_KEY: &str = "moved_to";
/// How long a tombstone redirects before it goes.
const TOMBSTONE_MS: Millis = 24 * 60 * 60 * 1000;
/// Key of the erasure marker: when the profile here was erased. For `ERASED_GRACE_MS` afterwards the object
/// refuses to apply events, so that events planned before the erasure (carrying its old links) cannot bring the
/// profile back; an alarm then removes the marker.
const ERASED_KEY: &str = "erased_at";
const ERASED_GRACE_MS: Millis = 60 * 1000;
/// KV refuses expirations less than 60 seconds away.
const MIN_KV_TTL_SECONDS: i64 = 60;
/// When this object last wrote the profile's KV snapshot (milliseconds).
const SNAPSHOT_AT_KEY: &str = "snapshot_at";
/// When the snapshot that is due gets written (milliseconds); absent when KV has the profile as stored here.
const SNAPSHOT_DUE_KEY: &str = "snapshot_due";
/// The expiration (seconds) written on the KV snapshot and index entries; absent when they have none.
const KV_EXPIRATION_KEY: &str = "kv_expiration";
/// When this object last wrote an index entry (milliseconds).
const INDEX_AT_KEY: &str = "index_at";
/// When the index entries get their new expiration (milliseconds); absent when none is due.
const INDEX_DUE_KEY: &str = "index_due";
/// A merge's KV writes that wait for the absorbed profile's keys to be a second old (JSON: `{"repoint":
/// [[kind, value], ...], "absorbed": [id, ...]}`), done with the index refresh at `INDEX_DUE_KEY`.
const MERGE_PENDING_KEY: &str = "merge_pending";
/// At most one KV write a second per key.
pub const SNAPSHOT_INTERVAL_MS: Millis = 1_000;
/// KV entries of an anonymous profile expire this long after the profile itself would, so that keeping them
/// ahead of it needs a rewrite about once a day.
const KV_EXPIRATION_SLACK_SECONDS: i64 = 24 * 60 * 60;
/// A snapshot younger than this may have a newer write due: one interval, and as long again for a late alarm.
pub const FRESH_MS: Millis = 2 * SNAPSHOT_INTERVAL_MS;

/// What a profile's object is asked to do: the protocol's paths, written once for the caller (`Action::path`) and
/// the object (`Action::of`). Bodies and answers: `Apply` takes `store::encode_apply` and answers
/// `store::encode_apply_answer` (410 with `erased` moments after an erasure); `Handover` takes the survivor's id
/// and answers the encoded profile (204: none here); `Restore` takes an encoded profile; `Split` takes the
/// absorbed profile's id and answers `{"profiles": [...]}`; `Erase` answers `{"erased", "identities"}`; `Forget`
/// removes a tombstone. A tombstone answers every action but `Restore` and `Forget` with 409 `{"movedTo": id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Apply,
    Handover,
    Restore,
    Split,
    Erase,
    Forget,
    /// The profile as stored here (encoded; 204 when there is none), for readers that must not see a snapshot
    /// with a write still due.
    Read,
    /// Whether the profile lives here: 200 (empty) when it does, 204 when there is none, 409 `{"movedTo"}` when it
    /// was merged elsewhere (the index may still lead here for a second).
    Locate,
    /// Brings the profile's audiences up to date (`audiences::catch_up`: new definitions, time alone), as the
    /// re-evaluation pass after a configuration change asks: 200 `{"transitions": n}`, 204 when there is none.
    Reevaluate,
    /// Claims a journey's send as it leaves (`journeys::claim`; the body is the delivery id): 200 `{"claim": "go",
    /// "body", "contentType", ...}`, `"suppressed"` with its reason, `"deferred"` with `until`, or `"unknown"`.
    Claim,
    /// A delivery is over (`journeys::settle`; the body is `{"delivery", "delivered"}`): 200 `{"settled": bool}`.
    Settle,
}

impl Action {
    const ALL: [(Action, &'static str); 11] = [
        (Action::Read, "read"),
        (Action::Locate, "locate"),
        (Action::Apply, "apply"),
        (Action::Handover, "handover"),
        (Action::Restore, "restore"),
        (Action::Split, "split"),
        (Action::Erase, "erase"),
        (Action::Forget, "forget"),
        (Action::Reevaluate, "reevaluate"),
        (Action::Claim, "claim"),
        (Action::Settle, "settle"),
    ];

    pub fn path(self) -> &'static str {
        Action::ALL.iter().find(|(a, _)| *a == self).map_or("", |(_, p)| p)
    }

    fn of(path: &str) -> Option<Action> {
        let path = path.strip_prefix('/').unwrap_or(path);
        Action::ALL.iter().find(|(_, p)| *p == path).map(|(a, _)| *a)
    }
}

/// Sends a request to a profile's writer and returns its JSON answer. Any failure is the store being
/// unavailable: the writer validates nothing that came from outside the Worker.
pub async fn send(
    env: &Env,
    profile_id: &str,
    action: Action,
    body: Vec<u8>,
) -> std::result::Result<serde_json::Value, ApiError> {
    let (status, bytes) = call(env, profile_id, action, body).await?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let error = body.get("error").and_then(|e| e.get("code")).and_then(|c| c.as_str()).unwrap_or_default();
    let message =
        body.get("error").and_then(|e| e.get("message")).and_then(|m| m.as_str()).unwrap_or_default().to_string();
    match (status, error) {
        (200, _) => Ok(body),
        // A tombstone: the caller follows `movedTo`.
        (409, _) if body.get("movedTo").is_some() => Ok(body),
        (404, "merge_not_found") => Err(ApiError::NotFound { code: "merge_not_found", message }),
        (404, _) => {
            Err(ApiError::NotFound { code: "profile_not_found", message: "the profile no longer exists".into() })
        }
        (409, "merge_too_old") => Err(ApiError::Conflict { code: "merge_too_old", message }),
        _ => Err(ApiError::Unavailable(format!("profile writer answered {status}: {text}"))),
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
        let path = req.path();
        let action = Action::of(&path);
        let seen = req.headers().get(kv::CONFIG_VERSION_HEADER)?.and_then(|v| v.parse::<u64>().ok());
        let bytes = req.bytes().await?;
        let storage = self.state.storage();
        let env = self.env.clone();
        let answer = self
            .state
            .block_concurrency_while(async move {
                // A tombstone: this profile now lives elsewhere. `forget` removes the tombstone; restoring (a refused
                // merge, a split) replaces it with the profile; everything else is redirected.
                if action != Some(Action::Restore) {
                    if let Some(to) = moved_to(&storage).await? {
                        // `forget` removes a tombstone once the profile it names is erased; everything else, erasing
                        // included, is redirected, so an erasure that fails further on can be retried from here.
                        if action == Some(Action::Forget) {
                            storage.delete_all().await?;
                            return Ok((200, json!({"forgotten": true}).to_string().into_bytes()));
                        }
                        return Ok((409, json!({"movedTo": to}).to_string().into_bytes()));
                    }
                }
                match action {
                    Some(Action::Apply) if recently_erased(&storage).await? => {
                        Ok((410, encode_apply_answer(&ApplyAnswer { erased: true, ..ApplyAnswer::default() })))
                    }
                    Some(Action::Apply) => match decode_apply(&bytes) {
                        Ok(apply) => apply_and_merge(&storage, &env, apply, seen).await,
                        Err(e) => Ok(error_body(400, "invalid_apply_request", &e.to_string())),
                    },
                    Some(Action::Handover) => handover(&storage, &String::from_utf8_lossy(&bytes)).await,
                    Some(Action::Restore) => match decode_profile(&bytes) {
                        Ok(mut profile) => {
                            let config = config(&env).await?;
                            storage.delete(MOVED_KEY).await?;
                            let ids = profile.identities.clone();
                            // What time alone changed while it was away (a split-off profile arrives already
                            // evaluated: `split_off`), its journeys included.
                            let (transitions, _) = refresh(&config, &mut profile, now());
                            write_profile(&storage, &env, &config, &profile, &ids, &ids).await?;
                            if !transitions.is_empty() {
                                audiences::publish(&env, &profile, &transitions).await?;
                            }
                            deliver_due(&storage, &env, &mut profile).await?;
                            Ok((200, json!({"restored": profile.id}).to_string().into_bytes()))
                        }
                        Err(e) => Ok(error_body(400, "invalid_profile", &e.to_string())),
                    },
                    Some(Action::Split) => split_off(&storage, &env, &String::from_utf8_lossy(&bytes)).await,
                    Some(Action::Erase) => match erase(&storage, &env).await? {
                        Some(identities) => {
                            Ok((200, json!({"erased": true, "identities": identities}).to_string().into_bytes()))
                        }
                        None => Ok(error_body(404, "profile_not_found", "no profile here")),
                    },
                    // Not a tombstone (any more): nothing to forget.
                    Some(Action::Forget) => Ok((200, json!({"forgotten": false}).to_string().into_bytes())),
                    Some(Action::Locate) => match get_raw(&storage, PROFILE_KEY).await? {
                        v if v.is_undefined() => Ok((204, Vec::new())),
                        _ => Ok((200, Vec::new())),
                    },
                    Some(Action::Read) => match get_raw(&storage, PROFILE_KEY).await? {
                        v if v.is_undefined() => Ok((204, Vec::new())),
                        v => Ok((200, Uint8Array::new(&v).to_vec())),
                    },
                    Some(Action::Reevaluate) => reevaluate(&storage, &env).await,
                    Some(Action::Claim) => claim_send(&storage, &env, &String::from_utf8_lossy(&bytes)).await,
                    Some(Action::Settle) => settle_send(&storage, &env, &bytes).await,
                    None => Ok(error_body(404, "not_found", &format!("no action {path}"))),
                }
            })
            .await?;
        let (status, body) = answer;
        Ok(Response::from_bytes(body)?.with_status(status))
    }

    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        let env = self.env.clone();
        self.state
            .block_concurrency_while(async move {
                if moved_to(&storage).await?.is_some() {
                    // The tombstone's day is over: the index shows the survivor everywhere by now.
                    storage.delete_all().await?;
                    return Ok(());
                }
                if get_number(&storage, ERASED_KEY).await?.is_some() && read_profile(&storage).await?.is_none() {
                    // The erasure's grace period is over: not even its time stays.
                    storage.delete_all().await?;
                    return Ok(());
                }
                let config = config(&env).await?;
                if let Some(mut profile) = read_profile(&storage).await? {
                    let expires_at = profile.expires_at(config.retention_anonymous_days);
                    if expires_at.is_some_and(|at| at <= now()) {
                        erase(&storage, &env).await?;
                        return Ok(());
                    }
                    // What time alone changed in its audiences and journeys, each at its own instant.
                    refresh_audiences(&storage, &env, &config, &mut profile).await?;
                    deliver_due(&storage, &env, &mut profile).await?;
                    // What was due (index expirations first: the snapshot then carries the same), then the next
                    // alarm, for whatever comes first.
                    if get_number(&storage, INDEX_DUE_KEY).await?.is_some_and(|at| at as Millis <= now()) {
                        refresh_index(&storage, &env, &profile, expires_at).await?;
                    }
                    if get_number(&storage, SNAPSHOT_DUE_KEY).await?.is_some_and(|at| at as Millis <= now()) {
                        let expiration = get_number(&storage, KV_EXPIRATION_KEY).await?.map(|e| e as u64);
                        put_snapshot(&storage, &env, &profile, expiration).await?;
                    }
                    schedule(&storage, expires_at, next_wake(&profile)).await?;
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

fn error_body(status: u16, code: &str, message: &str) -> (u16, Vec<u8>) {
    (status, json!({"error": {"code": code, "message": message, "path": ""}}).to_string().into_bytes())
}

/// Whether the profile here was erased less than `ERASED_GRACE_MS` ago.
async fn recently_erased(storage: &Storage) -> Result<bool> {
    Ok(get_number(storage, ERASED_KEY).await?.is_some_and(|at| now() - (at as Millis) < ERASED_GRACE_MS))
}

async fn moved_to(storage: &Storage) -> Result<Option<String>> {
    get_text(storage, MOVED_KEY).await
}

/// Calls a profile's object and returns its status and body as they are (the Worker reads an apply's answer,
/// which is binary, this way; `send` is for the JSON ones).
pub async fn call(env: &Env, profile_id: &str, action: Action, body: Vec<u8>) -> Result<(u16, Vec<u8>)> {
    crate::edge::objects::call(env, BINDING, profile_id, Method::Post, action.path(), Some(&body), None).await
}

/// `call` for an apply, from a request that has just read the configuration: the object is told its version.
pub async fn call_apply(env: &Env, profile_id: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>)> {
    let seen = kv::cached_version();
    crate::edge::objects::call(env, BINDING, profile_id, Method::Post, Action::Apply.path(), Some(&body), seen).await
}

/// Runs one apply request through the core's writer (`core::engine::write`, whose contract this follows step by
/// step): hand-overs in, then what it decided carried out.
async fn apply_and_merge(
    storage: &Storage,
    env: &Env,
    apply: ApplyRequest,
    seen: Option<u64>,
) -> Result<(u16, Vec<u8>)> {
    let config = config_seen(env, seen).await?;
    let current = read_profile(storage).await?;
    let mut fetched = Vec::new();
    // Until when the absorbed profiles' KV keys are a second from their last write (KV's limit per key).
    let mut hot_until: Millis = 0;
    for l in pending_links(current.as_ref(), &apply) {
        let (status, bytes) = call(env, &l.profile_id, Action::Handover, apply.profile_id.clone().into_bytes()).await?;
        // 204: nothing to absorb there (no profile yet); 409: it went elsewhere, and the link is made by the
        // events themselves.
        if status == 200 {
            let (other, last_kv_write) =
                decode_snapshot(&bytes).map_err(|e| worker::Error::RustError(e.to_string()))?;
            hot_until = hot_until.max(last_kv_write.unwrap_or(0) + SNAPSHOT_INTERVAL_MS);
            fetched.push((l.clone(), other));
        }
    }
    let now = now();
    let identity_before = current.as_ref().and_then(main_identity);
    let journeys_before = current.as_ref().map(journey_view);
    let written = write(current, fetched, apply, &config, now);
    for p in &written.returned {
        // Refused merges: each profile goes back where it was, as it was.
        call(env, &p.id, Action::Restore, encode_profile(p)).await?;
    }
    if let Some(profile) = written.profile.as_ref().filter(|_| written.store) {
        if now >= hot_until || written.absorbed_ids.is_empty() {
            write_profile(storage, env, &config, profile, &written.index, &written.repoint).await?;
            let store = env.kv(kv::KV_BINDING)?;
            for id in &written.absorbed_ids {
                kv::note_write(env, &kv::profile_key(id));
                store.delete(&kv::profile_key(id)).await?;
            }
        } else {
            // The absorbed profiles' keys were written less than a second ago: their entries move here and their
            // snapshots go when the alarm comes. Until then their tombstones send writers here, and readers too
            // (their snapshots are young, so readers ask their objects: `current_of`).
            let pending = json!({
                "repoint": written.repoint.iter().map(|i| [&i.kind, &i.value]).collect::<Vec<_>>(),
                "absorbed": written.absorbed_ids,
            });
            storage.put_raw(MERGE_PENDING_KEY, pending.to_string()).await?;
            storage.put_raw(INDEX_DUE_KEY, hot_until as f64).await?;
            write_profile(storage, env, &config, profile, &written.index, &[]).await?;
        }
        if !written.outcomes.is_empty() {
            crate::edge::objects::experiments::record(env, &written.outcomes).await?;
        }
        // The audience outlet, once the profile is stored: its transitions (or a new main identity for the
        // index to list it by), and the profiles it absorbed, which leave every audience.
        let relabel = main_identity(profile) != identity_before && !profile.audiences.members.is_empty();
        if !written.transitions.is_empty() || relabel {
            audiences::publish(env, profile, &written.transitions).await?;
        }
        audiences::publish_removed(env, &written.absorbed_ids, now).await?;
        if Some(journey_view(profile)) != journeys_before {
            audiences::publish_journeys(env, profile, now).await?;
        }
    }
    if let Some(mut profile) = written.profile.filter(|_| written.store) {
        deliver_due(storage, env, &mut profile).await?;
    }
    Ok((200, encode_apply_answer(&written.answer)))
}

/// `Action::Reevaluate`: the profile's audiences under the configuration in force.
async fn reevaluate(storage: &Storage, env: &Env) -> Result<(u16, Vec<u8>)> {
    let Some(mut profile) = read_profile(storage).await? else { return Ok((204, Vec::new())) };
    let config = config(env).await?;
    let n = refresh_audiences(storage, env, &config, &mut profile).await?;
    deliver_due(storage, env, &mut profile).await?;
    Ok((200, json!({"transitions": n}).to_string().into_bytes()))
}

/// Brings a stored profile's audiences and journeys up to `now` (`write::refresh`: new definitions, time alone, the
/// journeys' steps that are due), stores the profile when that changed anything, then publishes the transitions.
/// Answers how many there were. The sends it made leave with `deliver_due`.
async fn refresh_audiences(storage: &Storage, env: &Env, config: &Config, profile: &mut Profile) -> Result<usize> {
    let journeys_before = journey_view(profile);
    let (transitions, store) = refresh(config, profile, now());
    if store {
        write_profile(storage, env, config, profile, &[], &[]).await?;
    }
    if journey_view(profile) != journeys_before {
        audiences::publish_journeys(env, profile, now()).await?;
    }
    if !transitions.is_empty() {
        audiences::publish(env, profile, &transitions).await?;
    }
    Ok(transitions.len())
}

/// What the journey index keeps of a profile (where it stands, why instances ended), to tell whether it changed.
fn journey_view(profile: &Profile) -> crate::core::wire::journeys::JourneyState {
    crate::core::wire::journeys::JourneyState::of_profile(&profile.id, &profile.journeys, 0)
}

/// Hands the sends that are due to the delivery queue (the profile holding them is stored already), then notes
/// them enqueued in storage. A failure between the two sends them again at the next alarm; the delivery's id
/// keeps that from reaching anyone twice (`wire::deliveries`).
async fn deliver_due(storage: &Storage, env: &Env, profile: &mut Profile) -> Result<()> {
    let sends = to_enqueue(profile, now());
    if sends.is_empty() {
        return Ok(());
    }
    deliveries::enqueue(env, &profile.id, &sends).await?;
    let ids: Vec<String> = sends.into_iter().map(|o| o.id).collect();
    mark_enqueued(profile, &ids);
    let bytes = encode_profile_bounded(profile);
    storage.put_raw(PROFILE_KEY, JsValue::from(Uint8Array::from(bytes.as_slice()))).await?;
    Ok(())
}

/// `Action::Claim`: a send re-checked as it leaves; when it goes, its payload made from the profile as it is now.
async fn claim_send(storage: &Storage, env: &Env, id: &str) -> Result<(u16, Vec<u8>)> {
    let Some(mut profile) = read_profile(storage).await? else {
        let reason = if get_number(storage, ERASED_KEY).await?.is_some() { "erased" } else { "profile_gone" };
        return Ok((200, json!({"claim": "suppressed", "reason": reason}).to_string().into_bytes()));
    };
    let config = config(env).await?;
    let now = now();
    let before = profile.journeys.clone();
    let pending = profile.journeys.outbox.iter().find(|o| o.id == id).cloned();
    let answer = match journeys::claim(&config, &mut profile, id, now) {
        Claim::Go { destination, outgoing } => {
            let (body, content_type) = crate::core::wire::deliveries::body(destination, &profile, &outgoing, now);
            json!({"claim": "go", "body": body, "contentType": content_type})
        }
        Claim::Suppressed(reason) => json!({"claim": "suppressed", "reason": reason}),
        Claim::Deferred(until) => json!({"claim": "deferred", "until": until}),
        Claim::Unknown => json!({"claim": "unknown"}),
    };
    let mut answer = answer;
    if let Some(o) = pending {
        answer["profile"] = json!(profile.id);
        answer["journey"] = json!(o.journey);
        answer["step"] = json!(o.step);
    }
    if profile.journeys != before {
        store_journeys(storage, &config, &profile).await?;
    }
    Ok((200, answer.to_string().into_bytes()))
}

/// Stores a profile whose journeys alone changed (a claim, a settlement): here at once, and its KV snapshot a
/// second later from the alarm, so that a delivery's claim and settlement cost one KV write between them (only
/// the journeys' part of the snapshot waits; readers of a young snapshot ask this object: `current_of`).
async fn store_journeys(storage: &Storage, config: &Config, profile: &Profile) -> Result<()> {
    let bytes = encode_profile_bounded(profile);
    storage.put_raw(PROFILE_KEY, JsValue::from(Uint8Array::from(bytes.as_slice()))).await?;
    if get_number(storage, SNAPSHOT_DUE_KEY).await?.is_none() {
        let last = get_number(storage, SNAPSHOT_AT_KEY).await?.map_or(0, |t| t as Millis);
        let due = (last + SNAPSHOT_INTERVAL_MS).max(now() + SNAPSHOT_INTERVAL_MS);
        storage.put_raw(SNAPSHOT_DUE_KEY, due as f64).await?;
    }
    schedule(storage, profile.expires_at(config.retention_anonymous_days), next_wake(profile)).await
}

/// `Action::Settle`: a delivery is over.
async fn settle_send(storage: &Storage, env: &Env, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let j: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let (Some(id), Some(delivered)) = (j["delivery"].as_str(), j["delivered"].as_bool()) else {
        return Ok(error_body(400, "invalid_settle", "expected {\"delivery\": id, \"delivered\": bool}"));
    };
    let Some(mut profile) = read_profile(storage).await? else {
        return Ok((200, json!({"settled": false}).to_string().into_bytes()));
    };
    let settled = journeys::settle(&mut profile, id, delivered);
    if settled {
        let config = config(env).await?;
        store_journeys(storage, &config, &profile).await?;
    }
    Ok((200, json!({"settled": settled}).to_string().into_bytes()))
}

/// Gives this profile to `survivor`: answers its encoded bytes and leaves a tombstone that redirects to it.
async fn handover(storage: &Storage, survivor: &str) -> Result<(u16, Vec<u8>)> {
    let Some(profile) = read_profile(storage).await? else { return Ok((204, Vec::new())) };
    // With when this object last wrote to KV, so that the survivor leaves its keys alone for a second after.
    let snapshot_at = get_number(storage, SNAPSHOT_AT_KEY).await?.unwrap_or(0.0);
    let index_at = get_number(storage, INDEX_AT_KEY).await?.unwrap_or(0.0);
    let bytes = encode_snapshot(&encode_profile(&profile), snapshot_at.max(index_at) as Millis);
    storage.delete_all().await?;
    storage.put_raw(MOVED_KEY, survivor).await?;
    storage.set_alarm(TOMBSTONE_MS).await?;
    Ok((200, bytes))
}

/// Gives back a profile this one absorbed (`absorbed_id`), which becomes its own profile again.
async fn split_off(storage: &Storage, env: &Env, absorbed_id: &str) -> Result<(u16, Vec<u8>)> {
    let config = config(env).await?;
    let Some(mut profile) = read_profile(storage).await? else {
        return Ok(error_body(404, "profile_not_found", "no profile here"));
    };
    let mut restored = match split(&mut profile, absorbed_id) {
        Ok(r) => r,
        Err(crate::core::engine::merge::SplitError::NotMerged) => {
            return Ok(error_body(404, "merge_not_found", &format!("this profile did not absorb {absorbed_id}")));
        }
        Err(crate::core::engine::merge::SplitError::TooOld) => {
            return Ok(error_body(409, "merge_too_old", "only the latest merges keep what a split needs"));
        }
    };
    let mut transitions = catch_up(&config, &mut profile, now());
    transitions.extend(track(&config, &mut profile, now(), Cause::Split));
    write_profile(storage, env, &config, &profile, &[], &[]).await?;
    if !transitions.is_empty() {
        audiences::publish(env, &profile, &transitions).await?;
    }
    // The profile split off had no audiences of its own inside the merge record: it enters them now, and its
    // transitions leave once its own object has stored it.
    let restored_transitions = track(&config, &mut restored, now(), Cause::Split);
    let (status, body) = call(env, &restored.id, Action::Restore, encode_profile(&restored)).await?;
    if status != 200 {
        return Err(worker::Error::RustError(format!(
            "restoring {} answered {status}: {}",
            restored.id,
            String::from_utf8_lossy(&body)
        )));
    }
    if !restored_transitions.is_empty() {
        audiences::publish(env, &restored, &restored_transitions).await?;
    }
    Ok((200, json!({"profiles": [profile.id, restored.id]}).to_string().into_bytes()))
}

async fn config(env: &Env) -> Result<std::rc::Rc<Config>> {
    config_seen(env, None).await
}

/// The configuration in force, or the version the calling Worker read when this isolate has it (`kv::config_seen`).
async fn config_seen(env: &Env, seen: Option<u64>) -> Result<std::rc::Rc<Config>> {
    kv::config_seen(env, seen).await.map(|(_, c)| c).map_err(|e| worker::Error::RustError(format!("{e:?}")))
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
    repoint: &[Identity],
) -> Result<()> {
    let bytes = encode_profile_bounded(profile);
    storage.put_raw(PROFILE_KEY, JsValue::from(Uint8Array::from(bytes.as_slice()))).await?;
    let now = now();
    // An anonymous profile expires after its retention period without activity: the alarm erases it from here,
    // and the KV copies carry an expiration (a day later) in case the alarm is late. When the profile's expiry
    // catches up with theirs (about daily), or the profile became known (none), the alarm rewrites them.
    let expires_at = profile.expires_at(config.retention_anonymous_days);
    let target = kv_expiration_for(expires_at, now);
    let written = get_number(storage, KV_EXPIRATION_KEY).await?.map(|e| e as u64);
    let refresh = match (expires_at, written) {
        (Some(at), Some(w)) => at / 1000 + MIN_KV_TTL_SECONDS > w as i64,
        (None, None) => false,
        _ => true,
    };
    // New index entries (and those a merge brought here) go at once: they are new to this object.
    let store = env.kv(kv::KV_BINDING)?;
    for id in new_identities.iter().chain(repoint) {
        put_index_entry(storage, env, &store, id, &profile.id, repoint, target, false).await?;
    }
    // Every entry just written (a new profile): they carry the new expiration already.
    let all_written = profile.identities.iter().all(|id| new_identities.contains(id) || repoint.contains(id));
    if refresh && all_written {
        match target {
            Some(e) => storage.put_raw(KV_EXPIRATION_KEY, e as f64).await?,
            None => {
                storage.delete(KV_EXPIRATION_KEY).await?;
            }
        }
    } else if refresh || get_number(storage, INDEX_DUE_KEY).await?.is_some() {
        // Never sooner than a second after this object's last index write, so no entry is written twice in one,
        // nor sooner than a due time already set (a merge waiting for its absorbed profiles' keys).
        let last = get_number(storage, INDEX_AT_KEY).await?.map_or(0, |t| t as Millis);
        let set = get_number(storage, INDEX_DUE_KEY).await?.map_or(0, |t| t as Millis);
        storage.put_raw(INDEX_DUE_KEY, now.max(last + SNAPSHOT_INTERVAL_MS).max(set) as f64).await?;
    }
    // The snapshot: at once when the last one is a second old (or there is none), else when the alarm comes.
    let expiration = if refresh { target } else { written };
    let last = get_number(storage, SNAPSHOT_AT_KEY).await?.map(|t| t as Millis);
    match last.filter(|&t| now - t < SNAPSHOT_INTERVAL_MS) {
        None => put_snapshot(storage, env, profile, expiration).await?,
        Some(t) => storage.put_raw(SNAPSHOT_DUE_KEY, (t + SNAPSHOT_INTERVAL_MS) as f64).await?,
    }
    schedule(storage, expires_at, next_wake(profile)).await
}

/// When the profile itself next needs its object: time alone moving an audience, or a journey's step or send.
fn next_wake(profile: &Profile) -> Option<Millis> {
    [profile.audiences.due, profile.journeys.due()].into_iter().flatten().min()
}

/// The expiration KV copies of a profile that expires at `expires_at` carry: a day later (none for a known one).
fn kv_expiration_for(expires_at: Option<Millis>, now: Millis) -> Option<u64> {
    expires_at.map(|at| (at / 1000 + KV_EXPIRATION_SLACK_SECONDS).max(now / 1000 + MIN_KV_TTL_SECONDS) as u64)
}

/// Points `id`'s index entry at `profile_id`, unless it leads to another profile that no merge brought here. One
/// that leads here already is rewritten only for a new expiration (`rewrite_own`).
#[allow(clippy::too_many_arguments)]
async fn put_index_entry(
    storage: &Storage,
    env: &Env,
    store: &worker::KvStore,
    id: &Identity,
    profile_id: &str,
    repoint: &[Identity],
    expiration: Option<u64>,
    rewrite_own: bool,
) -> Result<()> {
    let key = id.index_key();
    let existing = store.get(&key).text().await?;
    if index_entry_stays(id, existing.as_deref(), profile_id, repoint)
        || (!rewrite_own && existing.as_deref() == Some(profile_id))
    {
        return Ok(());
    }
    kv::note_write(env, &key);
    storage.put_raw(INDEX_AT_KEY, now() as f64).await?;
    let mut put = kv::put_text(store, &key, profile_id)?;
    if let Some(exp) = expiration {
        put = put.expiration(exp);
    }
    put.execute().await?;
    Ok(())
}

/// Gives every index entry of the profile the expiration it should have now (the alarm's part of `write_profile`).
async fn refresh_index(storage: &Storage, env: &Env, profile: &Profile, expires_at: Option<Millis>) -> Result<()> {
    let target = kv_expiration_for(expires_at, now());
    let store = env.kv(kv::KV_BINDING)?;
    // A merge's writes that waited: its identities' entries move here, the absorbed snapshots go.
    let pending: serde_json::Value =
        get_text(storage, MERGE_PENDING_KEY).await?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let repoint: Vec<Identity> = pending["repoint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some(Identity::new(p.get(0)?.as_str()?, p.get(1)?.as_str()?)))
        .collect();
    for id in &profile.identities {
        put_index_entry(storage, env, &store, id, &profile.id, &repoint, target, true).await?;
    }
    for absorbed in pending["absorbed"].as_array().into_iter().flatten().filter_map(|a| a.as_str()) {
        kv::note_write(env, &kv::profile_key(absorbed));
        store.delete(&kv::profile_key(absorbed)).await?;
    }
    storage.delete(MERGE_PENDING_KEY).await?;
    match target {
        Some(e) => storage.put_raw(KV_EXPIRATION_KEY, e as f64).await?,
        None => {
            storage.delete(KV_EXPIRATION_KEY).await?;
        }
    }
    storage.delete(INDEX_DUE_KEY).await?;
    Ok(())
}

/// Writes the profile's KV snapshot now (with the time, `store::encode_snapshot`) and notes it written.
async fn put_snapshot(storage: &Storage, env: &Env, profile: &Profile, expiration: Option<u64>) -> Result<()> {
    let key = kv::profile_key(&profile.id);
    kv::note_write(env, &key);
    // Noted before the time is taken: the next write, a second after this time, is a second after the note too.
    let now = now();
    let bytes = encode_snapshot(&encode_profile_bounded(profile), now);
    let mut put = env.kv(kv::KV_BINDING)?.put_bytes(&key, &bytes)?;
    if let Some(exp) = expiration {
        put = put.expiration(exp);
    }
    put.execute().await?;
    storage.put_raw(SNAPSHOT_AT_KEY, now as f64).await?;
    storage.delete(SNAPSHOT_DUE_KEY).await?;
    Ok(())
}

/// The object's one alarm, at the earliest of the profile's expiry, the next change of its audiences by time
/// alone (`Audiences::due`) and the KV writes that are due.
async fn schedule(storage: &Storage, expires_at: Option<Millis>, audiences_due: Option<Millis>) -> Result<()> {
    let snapshot = get_number(storage, SNAPSHOT_DUE_KEY).await?.map(|t| t as Millis);
    let index = get_number(storage, INDEX_DUE_KEY).await?.map(|t| t as Millis);
    match [expires_at, audiences_due, snapshot, index].into_iter().flatten().min() {
        Some(at) => storage.set_alarm((at - now()).max(1)).await,
        None => storage.delete_alarm().await,
    }
}

/// Where profile `id` lives now: itself, or the profile it was merged into (one hop; a tombstone names the
/// survivor for a day, while the index entries that still lead to `id` catch up).
pub async fn locate(env: &Env, id: &str) -> std::result::Result<String, ApiError> {
    let (status, bytes) = call(env, id, Action::Locate, Vec::new()).await?;
    if status == 409 {
        let moved: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if let Some(to) = moved["movedTo"].as_str() {
            return Ok(to.to_string());
        }
    }
    Ok(id.to_string())
}

/// The profile an identity leads to, as its readers must see it: the KV snapshot, unless it is young enough that
/// a newer write may be due (`FRESH_MS`), in which case the object itself answers.
pub async fn current_of(
    env: &Env,
    store: &worker::KvStore,
    id: &Identity,
) -> std::result::Result<Option<Profile>, ApiError> {
    let Some(pid) = kv::profile_id_of(store, id).await? else { return Ok(None) };
    let Some((snapshot, written_at)) = kv::snapshot(store, &pid).await? else { return Ok(None) };
    if written_at.is_some_and(|at| now() - at < FRESH_MS) {
        let (mut status, mut bytes) = call(env, &pid, Action::Read, Vec::new()).await?;
        // A tombstone: the profile was merged into another, whose object answers (the index follows shortly).
        if status == 409 {
            let moved: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if let Some(to) = moved["movedTo"].as_str() {
                (status, bytes) = call(env, to, Action::Read, Vec::new()).await?;
            }
        }
        match status {
            200 => return decode_profile(&bytes).map(Some).map_err(|e| ApiError::Unavailable(e.to_string())),
            204 => return Ok(None),
            _ => {}
        }
    }
    Ok(Some(snapshot))
}

/// Removes everything held about the profile: its storage here (the profile, its dedup window and consent
/// trail), its alarm, its KV snapshot and every index entry that leads to it. Returns how many identities
/// were unlinked, or `None` when there was no profile.
///
/// KV takes one write a second per key, deletions included: when this object wrote a KV key less than a second
/// ago (its snapshot, an index entry, or an absorbed profile's keys a merge is still to write), the erasure
/// first waits for that second to pass, holding the object (events racing it wait, then find it erased), so
/// that everything is still gone when the erasure answers. Erasures are rare; the wait is at most a second.
async fn erase(storage: &Storage, env: &Env) -> Result<Option<usize>> {
    let Some(profile) = read_profile(storage).await? else { return Ok(None) };
    let last_write =
        |key| async move { Ok::<_, worker::Error>(get_number(storage, key).await?.map_or(0, |t| t as Millis)) };
    let merge_pending = get_text(storage, MERGE_PENDING_KEY).await?.is_some();
    let hot_until = [
        last_write(SNAPSHOT_AT_KEY).await? + SNAPSHOT_INTERVAL_MS,
        last_write(INDEX_AT_KEY).await? + SNAPSHOT_INTERVAL_MS,
        if merge_pending { last_write(INDEX_DUE_KEY).await? } else { 0 },
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let wait = hot_until - now();
    if wait > 0 {
        worker::Delay::from(std::time::Duration::from_millis(wait as u64)).await;
    }
    let store = env.kv(kv::KV_BINDING)?;
    // Entries that lead here, or still to a profile merged here (a merge's repointing may be waiting: see
    // `MERGE_PENDING_KEY`).
    let absorbed: Vec<&str> = profile.merges.iter().map(|m| m.absorbed_id.as_str()).collect();
    for id in &profile.identities {
        let key = id.index_key();
        let leads_to = store.get(&key).text().await?;
        if leads_to.as_deref().is_some_and(|pid| pid == profile.id || absorbed.contains(&pid)) {
            kv::note_write(env, &id.erased_key());
            kv::mark_erased(&store, id).await?;
            kv::note_write(env, &key);
            store.delete(&key).await?;
        }
    }
    for id in absorbed.iter().copied().chain(std::iter::once(profile.id.as_str())) {
        kv::note_write(env, &kv::profile_key(id));
        store.delete(&kv::profile_key(id)).await?;
    }
    // The profiles it absorbed may still hold a tombstone that names it.
    for m in &profile.merges {
        call(env, &m.absorbed_id, Action::Forget, Vec::new()).await?;
    }
    // The audience index forgets it too (and the profiles it absorbed, in case a message of theirs is late).
    let gone: Vec<String> =
        absorbed.iter().copied().chain(std::iter::once(profile.id.as_str())).map(String::from).collect();
    audiences::erase_now(env, &gone, now()).await?;
    // The delivery log keeps its counts without naming them; sends still queued find no profile and go nowhere.
    deliveries::forget_now(env, &gone).await?;
    storage.delete_alarm().await?;
    storage.delete_all().await?;
    // Only the time of the erasure stays, for the grace period, and then goes too.
    storage.put_raw(ERASED_KEY, now() as f64).await?;
    storage.set_alarm(ERASED_GRACE_MS).await?;
    Ok(Some(profile.identities.len()))
}
