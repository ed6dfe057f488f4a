//! The audience outlet and the membership index: a thin shell around `core::wire::audiences`.
//!
//! A profile's object publishes its transitions to the `AUDIENCE_EVENTS` queue after the profile is stored, and
//! its journeys' state when it changed (kept in the same database by `core::wire::journeys`) and the summary the
//! predictions' fit reads (`core::wire::predictions`), through
//! `outlets::send`; this Worker's queue consumer (`consume`) writes them to the index in D1 (`DB`),
//! one message per batch of statements (one transaction), acknowledging each message it wrote and retrying the
//! ones that failed (after the last retry the queue moves them to its dead-letter queue). The admin routes read
//! the index (`routes::audiences`).

use crate::core::wire::audiences::{decode, statements, IndexMessage, Sweep, SWEEP_CHUNK, SWEEP_LIST};
use crate::core::wire::journeys::{self as journey_index, JourneyState};
use crate::core::wire::predictions::{self, Published};
use crate::core::writer::protocol::Request;
use crate::edge::error::ApiError;
use crate::edge::kv;
use crate::edge::objects::profile_client;
use crate::edge::outlets::{bind, index, send, INDEX_QUEUE};
use futures_util::{StreamExt, TryStreamExt};
use worker::{D1Database, Env, MessageBatch, MessageExt};

/// Profile objects a chunk of the re-evaluation pass calls at once.
const SWEEP_CALLS_AT_ONCE: usize = 16;

/// Starts the pass that re-evaluates every profile under new audience definitions (configuration `version`).
/// Profiles are re-evaluated anyway the next time anything touches them; the pass reaches the others.
pub async fn start_sweep(env: &Env, version: u64) -> worker::Result<()> {
    send(env, Sweep::List { version, cursor: None }.to_json().to_string()).await
}

/// One message of the pass. A listing step lists the next `SWEEP_LIST` profiles from KV and fans them out as
/// messages of `SWEEP_CHUNK` profiles, then sends the next listing step; a chunk has each of its profiles
/// re-evaluated by its own object (`Request::Reevaluate`, a few at once). A message for a configuration that is no
/// longer in force is dropped: the newer version's pass covers every profile.
async fn sweep(env: &Env, step: Sweep) -> Result<(), ApiError> {
    let store = env.kv(kv::KV_BINDING).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    if kv::current_version(&store).await? != step.version() {
        return Ok(());
    }
    match step {
        Sweep::List { version, cursor } => {
            let mut list = store.list().prefix(crate::core::writer::PROFILE_PREFIX.to_string()).limit(SWEEP_LIST);
            if let Some(c) = cursor {
                list = list.cursor(c);
            }
            let page = list.execute().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
            let ids: Vec<String> = page
                .keys
                .iter()
                .filter_map(|k| k.name.strip_prefix(crate::core::writer::PROFILE_PREFIX))
                .map(String::from)
                .collect();
            let queue = env.queue(INDEX_QUEUE)?;
            for chunk in ids.chunks(SWEEP_CHUNK) {
                let message = Sweep::Profiles { version, profile_ids: chunk.to_vec() };
                queue.send(message.to_json().to_string()).await?;
            }
            if let Some(cursor) = page.cursor.filter(|_| !page.list_complete) {
                send(env, Sweep::List { version, cursor: Some(cursor) }.to_json().to_string()).await?;
            }
        }
        Sweep::Profiles { profile_ids, .. } => {
            futures_util::stream::iter(profile_ids.iter().map(|id| async move {
                profile_client::ask(env, id, &Request::Reevaluate).await.map_err(ApiError::from)
            }))
            .buffer_unordered(SWEEP_CALLS_AT_ONCE)
            .try_collect::<Vec<_>>()
            .await?;
        }
    }
    Ok(())
}

/// Why a message was not handled: one this build cannot read (retrying cannot make it readable), or a write that
/// failed (retried, then dead-lettered).
enum Failure {
    Unreadable(String),
    Retry(String),
}

/// One message: a step of the re-evaluation pass, or one batch of index statements (one transaction).
async fn handle(env: &Env, db: &D1Database, body: &str) -> Result<(), Failure> {
    let json = serde_json::from_str::<serde_json::Value>(body).map_err(|e| Failure::Unreadable(e.to_string()))?;
    if let Some(step) = Sweep::of(&json) {
        let step = step.map_err(Failure::Unreadable)?;
        return sweep(env, step).await.map_err(|e| Failure::Retry(format!("re-evaluation step: {e:?}")));
    }
    let retry = |e: worker::Error| Failure::Retry(format!("index write: {e}"));
    if let Some(state) = JourneyState::of(&json) {
        let state = state.map_err(Failure::Unreadable)?;
        let list = journey_index::statements(&state)
            .iter()
            .map(|s| bind(db, s))
            .collect::<worker::Result<Vec<_>>>()
            .map_err(retry)?;
        return db.batch(list).await.map(|_| ()).map_err(retry);
    }
    if let Some(summary) = Published::of(&json) {
        let summary = summary.map_err(Failure::Unreadable)?;
        let list =
            predictions::statements(&summary, body).iter().map(|s| bind(db, s)).collect::<worker::Result<Vec<_>>>();
        return db.batch(list.map_err(retry)?).await.map(|_| ()).map_err(retry);
    }
    let (m, events) = decode(&json).map_err(Failure::Unreadable)?;
    let mut all = statements(&m, &events);
    // Profiles that left the index leave its journeys and the fit's summaries too (an absorbed profile's went on
    // with the survivor).
    if let IndexMessage::Removed { profile_ids, .. } = &m {
        all.extend(journey_index::removed(profile_ids));
        all.extend(predictions::removed(profile_ids));
    }
    let list = all.iter().map(|s| bind(db, s)).collect::<worker::Result<Vec<_>>>().map_err(retry)?;
    if !list.is_empty() {
        db.batch(list).await.map_err(retry)?;
    }
    Ok(())
}

/// The queue consumer: each message becomes one batch of statements. A message this build cannot read is
/// acknowledged and logged (retrying cannot make it readable); a failed write is retried.
pub async fn consume(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let db = match index(&env).await {
        Ok(db) => db,
        Err(e) => {
            worker::console_error!("audience index unavailable, retrying the batch: {e:?}");
            batch.retry_all();
            return Ok(());
        }
    };
    for message in batch.messages()? {
        match handle(&env, &db, message.body()).await {
            Ok(()) => message.ack(),
            Err(Failure::Unreadable(e)) => {
                worker::console_error!("audience message dropped: {e}");
                message.ack();
            }
            Err(Failure::Retry(e)) => {
                worker::console_error!("audience message failed, retrying: {e}");
                message.retry();
            }
        }
    }
    Ok(())
}
