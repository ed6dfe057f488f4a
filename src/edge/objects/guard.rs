//! The guard against guessing the admin token: one Durable Object per client address (`attempts::client_bucket`)
//! that counts failed attempts (`core::model::attempts`) and says whether the next may be judged. Every attempt
//! at an admin credential (`POST /v1/session`, a Bearer token or a console session on an admin route) reports
//! here with its outcome, and past ten failures a minute the address gets `429` with `Retry-After`, whatever it
//! sends, the right token included. Who may call: only this Worker (Durable Objects have no public address).

use crate::core::model::attempts::{client_bucket, Attempts, Verdict, MAX_FAILURES};
use crate::edge::error::ApiError;
use crate::edge::objects::{call, get_text};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State};

const BINDING: &str = "GUARD";
/// Storage key of the failures, a JSON array of milliseconds.
const FAILURES_KEY: &str = "failures";

/// Reports an attempt at an admin credential and its outcome (`ok`): `Ok(())` to go on judging it as usual, or
/// `429` when the caller's address has failed too often. The object is asked even for a right credential, since
/// a right guess after a thousand wrong ones must not pass either.
pub async fn attempt(env: &Env, req: &Request, ok: bool) -> std::result::Result<(), ApiError> {
    let address = req.headers().get("cf-connecting-ip").ok().flatten();
    let bucket = client_bucket(address.as_deref());
    // The limit is the Worker's (`EDGECDP_ADMIN_FAILURES_PER_MINUTE`, default `MAX_FAILURES`): the object is told
    // it with each report, so a change takes effect at once.
    let max = env
        .var("EDGECDP_ADMIN_FAILURES_PER_MINUTE")
        .ok()
        .and_then(|v| v.to_string().trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(MAX_FAILURES);
    let report = format!("{} {max}", if ok { "ok" } else { "fail" });
    let (status, body) = call(env, BINDING, &bucket, Method::Post, "", Some(report.as_bytes()), None).await?;
    if status != 200 {
        return Err(ApiError::Unavailable(format!("the attempts guard answered {status}")));
    }
    let seconds: u64 = std::str::from_utf8(&body).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    if seconds > 0 {
        return Err(ApiError::TooManyRequests { retry_after_seconds: seconds });
    }
    Ok(())
}

#[durable_object]
pub struct GuardObject {
    state: State,
}

impl DurableObject for GuardObject {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    /// `POST` with `ok` or `fail` and the limit: answers `0` to go on, or the seconds to wait.
    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let report = req.text().await?;
        let (outcome, max) = report.split_once(' ').unwrap_or((report.as_str(), ""));
        let ok = outcome == "ok";
        let max = max.parse::<usize>().unwrap_or(MAX_FAILURES);
        let storage = self.state.storage();
        let seconds = self
            .state
            .block_concurrency_while(async move {
                let stored = get_text(&storage, FAILURES_KEY).await?.unwrap_or_default();
                let failures: Vec<i64> = serde_json::from_str(&stored).unwrap_or_default();
                let mut attempts = Attempts { failures: failures.into() };
                let now = crate::edge::clock::now();
                let seconds = match attempts.verdict(now, max) {
                    Verdict::Wait { retry_after_seconds } => retry_after_seconds,
                    Verdict::Go if ok => 0,
                    Verdict::Go => {
                        attempts.fail(now, max);
                        0
                    }
                };
                if !ok {
                    let failures: Vec<i64> = attempts.failures.into_iter().collect();
                    storage.put_raw(FAILURES_KEY, serde_json::to_string(&failures)?).await?;
                }
                Ok::<u64, worker::Error>(seconds)
            })
            .await?;
        Response::ok(seconds.to_string())
    }
}
