//! The Worker's one client of the profile objects: every request goes through `ask` (one object), `follow`
//! (following tombstones, at most `core::writer::client::MAX_HOPS` of them) or `lookup` (a visitor's profile),
//! with bodies and answers as the core's types (`core::writer::protocol`); `drive` carries out any task in steps.

use crate::core::engine::apply::{ApplyAnswer, ApplyRequest};
use crate::core::model::identity::Identity;
use crate::core::model::profile::Profile;
use crate::core::writer::client::{reply_of, Failed, Follow, Lookup, Need, Steps};
use crate::core::writer::protocol::{encode_request, Reply, Request};
use crate::edge::error::ApiError;
use crate::edge::kv;
use futures_util::{StreamExt, TryStreamExt};
use worker::{Env, Method};

const BINDING: &str = "PROFILES";

/// How many reads or calls of one step (`Need::Texts`, `Need::Calls`) run at once: a batch may name thousands
/// of identities.
pub const AT_ONCE: usize = 16;

/// Sends one profile's object `body` (`request`, encoded), with the configuration version this isolate read
/// (`kv::config_seen`) for an apply: its status and bytes.
pub async fn send(env: &Env, profile_id: &str, request: &Request, body: &[u8]) -> worker::Result<(u16, Vec<u8>)> {
    let seen = if matches!(request, Request::Apply(_)) { kv::cached_version() } else { None };
    crate::edge::objects::call(env, BINDING, profile_id, Method::Post, "", Some(body), seen).await
}

/// Asks one profile's object, tombstones not followed: its reply.
pub async fn ask(env: &Env, profile_id: &str, request: &Request) -> worker::Result<Reply> {
    let (status, bytes) = send(env, profile_id, request, &encode_request(request)).await?;
    reply_of(status, &bytes).map_err(|f| match f {
        Failed::Unavailable(m) | Failed::Refused { message: m, .. } => worker::Error::RustError(m),
    })
}

/// What `follow` reached: the profile that answered, the tombstones passed on the way, and its reply.
pub struct Followed {
    pub profile_id: String,
    pub passed: Vec<String>,
    pub reply: Reply,
}

/// Asks the object of `profile_id`, following tombstones (`core::writer::client::Follow`: an apply is readdressed
/// to each profile asked).
pub async fn follow(env: &Env, profile_id: &str, request: Request) -> Result<Followed, ApiError> {
    let mut f = Follow::new(profile_id, request);
    loop {
        let (status, bytes) = send(env, f.at(), f.request(), &f.body()).await?;
        if let Some(reply) = f.answer(status, &bytes)? {
            return Ok(Followed { profile_id: f.at().to_string(), passed: f.passed().to_vec(), reply });
        }
    }
}

/// A request that could not go on, as the API says it.
impl From<Failed> for ApiError {
    fn from(f: Failed) -> ApiError {
        match f {
            Failed::Refused { code, message } => refusal(&code, message),
            Failed::Unavailable(detail) => ApiError::Unavailable(detail),
        }
    }
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
    Failed::unexpected(reply).into()
}

/// Sends an apply to a profile's writer, following tombstones.
pub async fn apply(env: &Env, request: ApplyRequest) -> Result<ApplyAnswer, ApiError> {
    let id = request.profile_id.clone();
    match follow(env, &id, Request::Apply(request)).await?.reply {
        Reply::Applied(answer) => Ok(answer),
        other => Err(unexpected(&other)),
    }
}

/// The profile the first of `identities` that has one leads to, as its readers must see it
/// (`core::writer::client::Lookup`: the KV snapshot, unless a newer write may be due, when the object answers).
pub async fn lookup(env: &Env, identities: Vec<Identity>) -> Result<Option<Profile>, ApiError> {
    found(env, Lookup::new(identities, crate::edge::clock::now())).await
}

/// `lookup`, of the whole profile its object holds (`Lookup::whole`): what an access request shows.
pub async fn lookup_whole(env: &Env, identities: Vec<Identity>) -> Result<Option<Profile>, ApiError> {
    found(env, Lookup::whole(identities, crate::edge::clock::now())).await
}

async fn found(env: &Env, mut l: Lookup) -> Result<Option<Profile>, ApiError> {
    drive(env, &mut l).await?;
    Ok(l.found())
}

/// Carries out a task's reads and calls (`core::writer::client::Steps`) until it needs nothing more.
pub async fn drive<S: Steps>(env: &Env, task: &mut S) -> Result<(), ApiError>
where
    ApiError: From<S::Error>,
{
    let store = kv::store(env)?;
    loop {
        match task.need() {
            Need::Text(key) => {
                let value = store.get(&key).text().await?;
                task.text(value);
            }
            Need::Bytes(key) => {
                let value = store.get(&key).bytes().await?;
                task.bytes(value.as_deref())?;
            }
            Need::Object(f) => {
                // An object that cannot be reached answers as one that is unavailable (503): the task says what
                // follows (a batch goes on with its other profiles).
                let (status, bytes) = match send(env, f.at(), f.request(), &f.body()).await {
                    Ok(answer) => answer,
                    Err(e) => (503, e.to_string().into_bytes()),
                };
                task.answer(status, &bytes)?;
            }
            Need::Texts(keys) => {
                let reads = keys.iter().map(|k| store.get(k).text());
                let values = futures_util::stream::iter(reads).buffered(AT_ONCE).try_collect().await?;
                task.texts(values)?;
            }
            Need::Calls(profiles, body) => {
                let calls = profiles
                    .iter()
                    .map(|p| crate::edge::objects::call(env, BINDING, p, Method::Post, "", Some(body), None));
                let answers = futures_util::stream::iter(calls).buffered(AT_ONCE).try_collect().await?;
                task.replies(answers)?;
            }
            Need::Done => return Ok(()),
        }
    }
}
