//! Journeys' sends on their way out: a thin shell around `core::engine::journeys` (claim, settle) and
//! `core::wire::deliveries` (payloads, signatures, retries, the outcome log).
//!
//! A profile's object hands each due send to the `DELIVERIES` queue once the profile holding it is stored
//! (`enqueue`); a send that cannot happen (no consent, an unproven address, cancelled before it was queued) is
//! never queued: the object logs it as suppressed itself. This Worker's consumer (`consume`) takes a batch, skips
//! deliveries the log already settled (redeliveries), asks each profile's object to claim its sends in one call
//! (each re-checked as it leaves: an exit, consent, erasure, quiet hours, the pressure budget; the payload is made
//! from the profile then), sends each with a timeout, and records the outcome in D1. A failed attempt is retried
//! with exponential backoff (`retry` with a delay); after its last attempt the message goes to the dead-letter
//! queue `DELIVERIES_DLQ` with the reason, and the delivery is recorded as dead-lettered. The queue's own `max_retries` is higher than any destination's attempts, so only
//! a consumer that keeps crashing leaves a message to the platform's dead-lettering.

use crate::core::base::time::Millis;
use crate::core::rules::destinations::{Destination, DestinationKind};
use crate::core::rules::Config;
use crate::core::wire::deliveries::{
    after_failure, headers, record, state, url, AfterFailure, DeliveryMessage, Outcome, Record,
};
use crate::core::writer::protocol::{ClaimAnswer, Claimed as ClaimReply, Reply, Request as ObjectRequest};
use crate::edge::kv;
use crate::edge::objects::profile_client;
use crate::edge::outlets::{log, run};
use futures_util::StreamExt;
use serde_json::{json, Value as J};
use worker::{
    D1Database, Env, Headers, MessageBatch, MessageExt, Method, QueueRetryOptionsBuilder, Request, RequestInit,
};

pub const DLQ_BINDING: &str = "DELIVERIES_DLQ";
/// The queue's name (`wrangler.toml`), which tells the consumer's batches apart from the audience index's.
pub const QUEUE_NAME: &str = "edgecdp-deliveries";

/// Deliveries of one batch handled at once (the batch's size, `max_batch_size` in wrangler.toml).
const AT_ONCE: usize = 25;

/// What the profile's object answered a claim.
enum Claimed {
    Go { body: String, content_type: String, record: Record },
    Suppressed { reason: String, record: Record },
    Deferred { until: Millis, record: Record },
    Unknown,
}

/// Claims a profile's sends in one call at the object holding them, following a merge's tombstone (a send made
/// before the merge lives on in the survivor under the same id). One answer per message, in order.
async fn claim_all(env: &Env, profile: &str, ms: &[&DeliveryMessage]) -> Result<Vec<Claimed>, String> {
    let request = ObjectRequest::Claim { deliveries: ms.iter().map(|m| m.delivery.clone()).collect() };
    let Reply::Claimed(claims) =
        profile_client::follow(env, profile, request).await.map_err(|e| format!("claim: {e:?}"))?.reply
    else {
        return Err("claim: the profile writer answered something else".into());
    };
    if claims.len() != ms.len() {
        return Err(format!("claim: {} answers for {} sends", claims.len(), ms.len()));
    }
    Ok(ms.iter().zip(claims).map(|(m, c)| claimed(m, c)).collect())
}

/// A claim's answer, with what the log names of its send.
fn claimed(m: &DeliveryMessage, c: ClaimReply) -> Claimed {
    let ClaimReply { answer, send } = c;
    let record = Record {
        id: m.delivery.clone(),
        destination: m.destination.clone(),
        profile: send.as_ref().map(|s| s.profile.clone()),
        journey: send.as_ref().map(|s| s.journey.clone()),
        step: send.map(|s| s.step),
    };
    match answer {
        ClaimAnswer::Go { body, content_type } => Claimed::Go { body, content_type, record },
        ClaimAnswer::Suppressed { reason } => Claimed::Suppressed { reason, record },
        ClaimAnswer::Deferred { until } => Claimed::Deferred { until, record },
        ClaimAnswer::Unknown => Claimed::Unknown,
    }
}

/// Tells the object the delivery is over (`delivered`: the destination took it; otherwise it stops counting).
async fn settle(env: &Env, profile: &str, id: &str, delivered: bool) {
    let request = ObjectRequest::Settle { delivery: id.to_string(), delivered };
    if let Err(e) = profile_client::follow(env, profile, request).await {
        worker::console_error!("settling {id} failed: {e:?}");
    }
}

/// One attempt: the status the destination answered (`None`: no answer in time, or no connection) and a reason.
async fn send(env: &Env, d: &Destination, id: &str, body: &str, content_type: &str) -> (Option<u16>, String) {
    let secret_name = match &d.kind {
        DestinationKind::Webhook { secret_env } => secret_env,
        DestinationKind::TrackingApi { write_key_env } => write_key_env,
    };
    let Some(secret) = env
        .secret(secret_name)
        .ok()
        .map(|s| s.to_string())
        .or_else(|| env.var(secret_name).ok().map(|v| v.to_string()))
    else {
        return (None, format!("the Worker has no secret {secret_name}"));
    };
    let now = crate::edge::clock::now();
    let h = Headers::new();
    let _ = h.set("content-type", content_type);
    let _ = h.set("user-agent", concat!("edgecdp/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers(d, &secret, id, now, body) {
        let _ = h.set(k, &v);
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(h).with_body(Some(body.into()));
    let request = match Request::new_with_init(&url(d), &init) {
        Ok(r) => r,
        Err(e) => return (None, format!("request: {e}")),
    };
    let answer = crate::edge::http::fetch_within(request, d.timeout).await;
    match answer {
        Some(Ok(mut resp)) => {
            let status = resp.status_code();
            // The body is read (and dropped) so the connection is released.
            let _ = resp.bytes().await;
            (Some(status), format!("http {status}"))
        }
        Some(Err(e)) => (None, format!("no answer: {e}")),
        None => (None, format!("timeout after {} ms", d.timeout)),
    }
}

/// Why a message was not handled: one this build cannot read (acknowledged), or a step that failed (retried).
enum Failure {
    Unreadable(String),
    Retry(String),
}

/// Records an outcome in the log, and hands its row to the export (`deliveries`; a failure to hand it over is
/// logged, never retried: the delivery itself must not be redone for it).
async fn log_outcome(
    env: &Env,
    db: &D1Database,
    rec: &Record,
    outcome: Outcome,
    attempt: u32,
    reason: Option<&str>,
    now: Millis,
) -> Result<(), Failure> {
    use crate::core::wire::export::{delivery_row, messages, DeliveryOutcome};
    run(db, &record(rec, outcome, attempt, reason, now))
        .await
        .map_err(|e| Failure::Retry(format!("delivery log: {e}")))?;
    let row = delivery_row(&DeliveryOutcome::of(rec, outcome, attempt, reason), now);
    if let Err(e) = crate::edge::outlets::export(env, messages(&[row], now)).await {
        worker::console_error!("delivery {}: its export row was not queued: {e}", rec.id);
    }
    Ok(())
}

/// A message read, whose delivery the log has not settled yet, and the attempt this is.
struct Pending {
    j: J,
    m: DeliveryMessage,
    attempt: u32,
}

/// Reads a message and its delivery's state in the log: `None` when its outcome is recorded already (a
/// redelivery, acknowledged without claiming it again).
async fn read(db: &D1Database, body: &str) -> Result<Option<Pending>, Failure> {
    let j: J = serde_json::from_str(body).map_err(|e| Failure::Unreadable(e.to_string()))?;
    let m = DeliveryMessage::of(&j).map_err(Failure::Unreadable)?;
    let st = crate::edge::outlets::rows(db, &state(&m.delivery)).await.map_err(|e| Failure::Retry(format!("{e:?}")))?;
    let row = st.first().cloned().unwrap_or_default();
    if row.first().is_some_and(|f| !f.is_null()) {
        return Ok(None);
    }
    let attempt = row.get(1).and_then(J::as_u64).unwrap_or(0) as u32 + 1;
    Ok(Some(Pending { j, m, attempt }))
}

/// One claimed message; answers how the queue should treat it: `None` to acknowledge, `Some(delay)` to retry.
async fn handle(
    env: &Env,
    db: &D1Database,
    config: &Config,
    p: &Pending,
    claimed: Claimed,
) -> Result<Option<u32>, Failure> {
    let (j, m, attempt) = (&p.j, &p.m, p.attempt);
    let retry = |e: worker::Error| Failure::Retry(format!("delivery log: {e}"));
    let now = crate::edge::clock::now();
    match claimed {
        Claimed::Unknown => {
            let rec = Record { id: m.delivery.clone(), destination: m.destination.clone(), ..Record::default() };
            log_outcome(env, db, &rec, Outcome::Suppressed, attempt, Some("not_pending"), now).await?;
            Ok(None)
        }
        Claimed::Suppressed { reason, record: rec } => {
            log_outcome(env, db, &rec, Outcome::Suppressed, attempt, Some(&reason), now).await?;
            Ok(None)
        }
        Claimed::Deferred { until, record: rec } => {
            let reason = format!("quiet hours until {}", crate::core::base::time::format_iso8601(until));
            log_outcome(env, db, &rec, Outcome::Deferred, attempt, Some(&reason), now).await?;
            Ok(None)
        }
        Claimed::Go { body, content_type, record: rec } => {
            let Some(d) = config.destinations.iter().find(|d| d.id == m.destination) else {
                log_outcome(env, db, &rec, Outcome::Suppressed, attempt, Some("destination_removed"), now).await?;
                settle(env, &m.profile, &m.delivery, false).await;
                return Ok(None);
            };
            let (status, reason) = send(env, d, &m.delivery, &body, &content_type).await;
            if status.is_some_and(|s| (200..300).contains(&s)) {
                log_outcome(env, db, &rec, Outcome::Sent, attempt, Some(&reason), now).await?;
                settle(env, &m.profile, &m.delivery, true).await;
                return Ok(None);
            }
            match after_failure(d, attempt, status) {
                AfterFailure::Retry { delay_seconds } => {
                    log_outcome(env, db, &rec, Outcome::Retried, attempt, Some(&reason), now).await?;
                    Ok(Some(delay_seconds))
                }
                AfterFailure::GiveUp => {
                    let why = format!("{reason} (attempt {attempt} of {})", d.attempts);
                    let mut dead = j.clone();
                    dead["reason"] = json!(why);
                    dead["attempts"] = json!(attempt);
                    env.queue(DLQ_BINDING).map_err(retry)?.send(dead.to_string()).await.map_err(retry)?;
                    log_outcome(env, db, &rec, Outcome::DeadLettered, attempt, Some(&why), now).await?;
                    settle(env, &m.profile, &m.delivery, false).await;
                    Ok(None)
                }
            }
        }
    }
}

/// One profile's sends in a batch: claimed in one call, then each sent and logged in turn (the answers in order).
async fn group(env: &Env, db: &D1Database, config: &Config, ps: &[&Pending]) -> Vec<Result<Option<u32>, Failure>> {
    let ms: Vec<&DeliveryMessage> = ps.iter().map(|p| &p.m).collect();
    match claim_all(env, &ps[0].m.profile, &ms).await {
        Err(e) => ps.iter().map(|_| Err(Failure::Retry(e.clone()))).collect(),
        Ok(claims) => {
            let mut out = Vec::with_capacity(ps.len());
            for (p, c) in ps.iter().zip(claims) {
                out.push(handle(env, db, config, p, c).await);
            }
            out
        }
    }
}

/// The delivery queue's consumer: each message is one delivery's attempt. The messages of a batch are read and
/// their log states looked up at once; then each profile's sends among them are claimed in one call, and sent
/// and logged (profiles at once, a profile's sends in turn); each message is acknowledged or retried on its own.
pub async fn consume(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let (db, config) = match (log(&env).await, kv::config(&env).await) {
        (Ok(db), Ok((_, config))) => (db, config),
        (Err(e), _) | (_, Err(e)) => {
            worker::console_error!("delivery log or configuration unavailable, retrying the batch: {e:?}");
            batch.retry_all();
            return Ok(());
        }
    };
    let messages = batch.messages()?;
    let read: Vec<_> =
        futures_util::stream::iter(messages.iter().map(|m| read(&db, m.body()))).buffered(AT_ONCE).collect().await;
    // Settled already (`Ok(None)`): a redelivery of a message whose outcome is recorded, acknowledged.
    let pending: Vec<Option<&Pending>> = read.iter().map(|r| r.as_ref().ok().and_then(Option::as_ref)).collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, p) in pending.iter().enumerate().filter_map(|(i, p)| p.map(|p| (i, p))) {
        let same = |g: &&mut Vec<usize>| pending[g[0]].is_some_and(|q| q.m.profile == p.m.profile);
        match groups.iter_mut().find(same) {
            // The same delivery twice in one batch (a producer's retry): the second is acknowledged unclaimed.
            Some(g) if g.iter().any(|j| pending[*j].is_some_and(|q| q.m.delivery == p.m.delivery)) => {}
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    let (db, config, env) = (&db, &config, &env);
    let runs = groups.iter().map(|g| {
        let ps: Vec<&Pending> = g.iter().filter_map(|i| pending[*i]).collect();
        async move { group(env, db, config, &ps).await }
    });
    let handled: Vec<_> = futures_util::stream::iter(runs).buffered(AT_ONCE).collect().await;
    let mut outcomes: Vec<Result<Option<u32>, Failure>> = read.into_iter().map(|r| r.map(|_| None)).collect();
    for (g, results) in groups.iter().zip(handled) {
        for (i, o) in g.iter().zip(results) {
            outcomes[*i] = o;
        }
    }
    for (message, outcome) in messages.iter().zip(outcomes) {
        match outcome {
            Ok(None) => message.ack(),
            Ok(Some(delay)) => {
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(delay).build())
            }
            Err(Failure::Unreadable(e)) => {
                worker::console_error!("delivery message dropped: {e}");
                message.ack();
            }
            Err(Failure::Retry(e)) => {
                worker::console_error!("delivery message failed, retrying: {e}");
                message.retry_with_options(&QueueRetryOptionsBuilder::new().with_delay_seconds(5).build());
            }
        }
    }
    Ok(())
}
