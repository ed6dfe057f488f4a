//! The Worker's one client of the profile objects: every request goes through `ask` (one object) or `follow`
//! (following tombstones, at most `MAX_HOPS` of them), with bodies and answers as the core's types
//! (`core::writer::protocol`).

use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyAnswer, ApplyRequest};
use crate::core::model::identity::Identity;
use crate::core::model::profile::Profile;
use crate::core::store::decode_profile;
use crate::core::writer::protocol::{decode_reply, encode_request, Reply, Request};
use crate::core::writer::FRESH_MS;
use crate::edge::error::ApiError;
use crate::edge::kv;
use worker::{Env, Method};

const BINDING: &str = "PROFILES";
/// Tombstones a request follows at most: a merged profile names where it went, and KV may show the old index for
/// up to a minute, so a chain is short; a longer one is an error rather than a loop.
pub const MAX_HOPS: usize = 4;

/// Asks one profile's object, with the configuration version this isolate read (`kv::config_seen`) for an apply.
pub async fn ask(env: &Env, profile_id: &str, request: &Request) -> worker::Result<Reply> {
    let seen = if matches!(request, Request::Apply(_)) { kv::cached_version() } else { None };
    let body = encode_request(request);
    let (status, bytes) =
        crate::edge::objects::call(env, BINDING, profile_id, Method::Post, "", Some(&body), seen).await?;
    if status != 200 {
        let text = String::from_utf8_lossy(&bytes);
        return Err(worker::Error::RustError(format!("profile writer answered {status}: {text}")));
    }
    decode_reply(&bytes).map_err(|e| worker::Error::RustError(format!("profile writer answered unreadably: {e}")))
}

/// What `follow` reached: the profile that answered, the tombstones passed on the way, and its reply.
pub struct Followed {
    pub profile_id: String,
    pub passed: Vec<String>,
    pub reply: Reply,
}

/// Asks the object of `profile_id`, following tombstones (an apply is readdressed to each profile asked).
pub async fn follow(env: &Env, profile_id: &str, mut request: Request) -> Result<Followed, ApiError> {
    let mut at = profile_id.to_string();
    let mut passed = Vec::new();
    for _ in 0..=MAX_HOPS {
        match ask(env, &at, &request).await? {
            Reply::Moved { to } => {
                if let Request::Apply(a) = &mut request {
                    a.profile_id = to.clone();
                }
                passed.push(std::mem::replace(&mut at, to));
            }
            Reply::Refused { code, message } => return Err(refusal(&code, message)),
            reply => return Ok(Followed { profile_id: at, passed, reply }),
        }
    }
    Err(ApiError::Unavailable(format!("profile {profile_id} moved more than {MAX_HOPS} times")))
}

/// A refusal as the API says it.
fn refusal(code: &str, message: String) -> ApiError {
    match code {
        "merge_not_found" => ApiError::NotFound { code: "merge_not_found", message },
        "merge_too_old" => ApiError::Conflict { code: "merge_too_old", message },
        "profile_not_found" => {
            ApiError::NotFound { code: "profile_not_found", message: "the profile no longer exists".into() }
        }
        _ => ApiError::Unavailable(format!("profile writer refused: {code}: {message}")),
    }
}

/// A reply of a kind the request does not have.
pub fn unexpected(reply: &Reply) -> ApiError {
    ApiError::Unavailable(format!("profile writer answered {}", reply.kind()))
}

/// Sends an apply to a profile's writer, following tombstones.
pub async fn apply(env: &Env, request: ApplyRequest) -> Result<ApplyAnswer, ApiError> {
    let id = request.profile_id.clone();
    match follow(env, &id, Request::Apply(request)).await?.reply {
        Reply::Applied(answer) => Ok(answer),
        other => Err(unexpected(&other)),
    }
}

/// Where profile `id` lives now: itself, or the profile it was merged into (one hop; a tombstone names the
/// survivor for a day, while the index entries that still lead to `id` catch up).
pub async fn locate(env: &Env, id: &str) -> Result<String, ApiError> {
    match ask(env, id, &Request::Locate).await? {
        Reply::Moved { to } => Ok(to),
        _ => Ok(id.to_string()),
    }
}

/// The profile an identity leads to, as its readers must see it: the KV snapshot, unless it is young enough that
/// a newer write may be due (`FRESH_MS`), in which case the object itself answers.
pub async fn current_of(env: &Env, store: &worker::KvStore, id: &Identity) -> Result<Option<Profile>, ApiError> {
    let Some(pid) = kv::profile_id_of(store, id).await? else { return Ok(None) };
    let Some((snapshot, written_at)) = kv::snapshot(store, &pid).await? else { return Ok(None) };
    if written_at.is_some_and(|at| now() - at < FRESH_MS) {
        return match follow(env, &pid, Request::Read).await?.reply {
            Reply::Profile(Some(bytes)) => {
                decode_profile(&bytes).map(Some).map_err(|e| ApiError::Unavailable(e.to_string()))
            }
            Reply::Profile(None) => Ok(None),
            other => Err(unexpected(&other)),
        };
    }
    Ok(Some(snapshot))
}

fn now() -> Millis {
    worker::Date::now().as_millis() as Millis
}
