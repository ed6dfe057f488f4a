//! Where a profile writer's effects go beyond its object (`core::writer::effects::Effect`): the audience
//! index's queue and its D1 database, the delivery queue, and the delivery log in the same database. Below the
//! objects that send to them and the consumers and routes that read them, so that none of those import each
//! other.

use crate::core::base::time::Millis;
use crate::core::wire::audiences::{self as audience_index, IndexMessage, Sql, Statement};
use crate::core::wire::deliveries::{self as delivery_log, DeliveryMessage, Outcome, Record};
use crate::core::wire::journeys as journey_index;
use crate::edge::error::ApiError;
use serde_json::Value as J;
use std::cell::Cell;
use worker::wasm_bindgen::JsValue;
use worker::{D1Database, Env};

/// The delivery queue (`wrangler.toml`).
pub const DELIVERY_QUEUE: &str = "DELIVERIES";

/// The audience index's queue (`wrangler.toml`).
pub const INDEX_QUEUE: &str = "AUDIENCE_EVENTS";
pub const D1_BINDING: &str = "DB";

thread_local! {
    /// Whether this isolate has made sure the index's tables exist.
    static INDEX_READY: Cell<bool> = const { Cell::new(false) };
}

/// Sends a message of the index (`wire::audiences::IndexMessage`, `wire::journeys::JourneyState`); with
/// `EDGECDP_TEST_REDELIVER_AUDIENCES` set (for tests only) every message goes twice, as an at-least-once queue may
/// deliver it, so that tests can show the index counts each transition once.
pub async fn send(env: &Env, text: String) -> worker::Result<()> {
    let queue = env.queue(INDEX_QUEUE)?;
    if env.var("EDGECDP_TEST_REDELIVER_AUDIENCES").is_ok_and(|v| !v.to_string().is_empty()) {
        queue.send(text.clone()).await?;
    }
    queue.send(text).await
}

/// Erases these profiles from the index now (their memberships, recorded transitions and journeys), before the
/// erasure answers; a message of theirs still in the queue finds them removed and is not written.
pub async fn erase_now(env: &Env, profile_ids: &[String], at: Millis) -> worker::Result<()> {
    let db = index(env).await.map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
    let removed = IndexMessage::Removed { profile_ids: profile_ids.to_vec(), erased: true, at };
    let mut all = audience_index::statements(&removed, &[]);
    all.extend(journey_index::removed(profile_ids));
    all.extend(crate::core::wire::predictions::removed(profile_ids));
    let list = all.iter().map(|s| bind(&db, s)).collect::<worker::Result<Vec<_>>>()?;
    db.batch(list).await?;
    Ok(())
}

/// The index's database, its tables made sure of once per isolate.
pub async fn index(env: &Env) -> Result<D1Database, ApiError> {
    let db = env.d1(D1_BINDING).map_err(|e| ApiError::Unavailable(format!("audience index: {e}")))?;
    if !INDEX_READY.with(Cell::get) {
        let schema = audience_index::SCHEMA
            .iter()
            .chain(journey_index::SCHEMA)
            .chain(crate::core::wire::predictions::SCHEMA)
            .map(|s| db.prepare(*s))
            .collect();
        db.batch(schema).await.map_err(|e| ApiError::Unavailable(format!("audience index schema: {e}")))?;
        INDEX_READY.with(|r| r.set(true));
    }
    Ok(db)
}

pub fn bind(db: &D1Database, s: &Statement) -> worker::Result<worker::D1PreparedStatement> {
    let params: Vec<JsValue> = s
        .params
        .iter()
        .map(|p| match p {
            Sql::Text(t) => JsValue::from_str(t),
            Sql::Int(n) => JsValue::from_f64(*n as f64),
            Sql::Null => JsValue::NULL,
        })
        .collect();
    db.prepare(s.sql).bind(&params)
}

thread_local! {
    /// Whether this isolate has made sure the outcome log's table exists.
    static LOG_READY: Cell<bool> = const { Cell::new(false) };
}

/// Hands sends to the delivery queue (the profile holding them is stored already).
pub async fn enqueue(env: &Env, messages: &[DeliveryMessage]) -> worker::Result<()> {
    let queue = env.queue(DELIVERY_QUEUE)?;
    for m in messages {
        queue.send(m.to_json().to_string()).await?;
    }
    Ok(())
}

/// The outcome log's database, its table made sure of once per isolate.
pub async fn log(env: &Env) -> Result<D1Database, ApiError> {
    let db = index(env).await?;
    if !LOG_READY.with(Cell::get) {
        let schema = delivery_log::SCHEMA.iter().map(|s| db.prepare(*s)).collect();
        db.batch(schema).await.map_err(|e| ApiError::Unavailable(format!("delivery log schema: {e}")))?;
        LOG_READY.with(|r| r.set(true));
    }
    Ok(db)
}

/// Rows of a statement, each as an array of its columns.
pub async fn rows(db: &D1Database, s: &Statement) -> Result<Vec<Vec<J>>, ApiError> {
    let prepared = bind(db, s).map_err(|e| ApiError::Unavailable(format!("delivery log: {e}")))?;
    prepared.raw::<J>().await.map_err(|e| ApiError::Unavailable(format!("delivery log: {e}")))
}

/// The first column of a statement's first row (a count, a maximum), if it has one.
pub async fn first_value(db: &D1Database, s: &Statement) -> Result<Option<J>, ApiError> {
    Ok(rows(db, s).await?.into_iter().next().and_then(|r| r.into_iter().next()))
}

pub async fn run(db: &D1Database, s: &Statement) -> worker::Result<()> {
    bind(db, s)?.run().await?;
    Ok(())
}

/// Sends that will never leave, logged as `suppressed` with their reasons in one batch (`Effect::Suppressed`).
pub async fn log_suppressed(env: &Env, sends: &[(Record, String)]) -> worker::Result<()> {
    let db = log(env).await.map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
    let now = crate::edge::clock::now();
    let statements = sends.iter().map(|(r, reason)| delivery_log::record(r, Outcome::Suppressed, 0, Some(reason), now));
    let list = statements.map(|s| bind(&db, &s)).collect::<worker::Result<Vec<_>>>()?;
    db.batch(list).await?;
    Ok(())
}

/// Erasure: the log keeps its counts but no longer names these profiles.
pub async fn forget_now(env: &Env, profile_ids: &[String]) -> worker::Result<()> {
    let db = log(env).await.map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
    run(&db, &delivery_log::forget(profile_ids)).await
}

/// The export's queue (`wrangler.toml`); without its binding the Worker exports nothing.
pub const EXPORT_QUEUE: &str = "EXPORT";

/// Hands the rows of what a writer stored to the export queue (`wire::export::messages`), in one `sendBatch` per
/// 100 messages (a queue's batch limit), so that an action's rows go all together or not at all. With
/// `EDGECDP_TEST_REDELIVER_EXPORT` set (for tests only) each message goes twice, as a producer's retry would send
/// it, so that tests show the files hold each row once.
pub async fn export(env: &Env, messages: Vec<String>) -> worker::Result<()> {
    let Ok(queue) = env.queue(EXPORT_QUEUE) else { return Ok(()) };
    let twice = env.var("EDGECDP_TEST_REDELIVER_EXPORT").is_ok_and(|v| !v.to_string().is_empty());
    for group in messages.chunks(if twice { 50 } else { 100 }) {
        let mut group = group.to_vec();
        if twice {
            group.extend(group.clone());
        }
        queue.send_batch(group).await?;
    }
    Ok(())
}

/// An erasure reaches the export now, before it answers: its people (`wire::export::person_key`s) are listed as
/// erased, so that no row of theirs is written from now on and the purge (`edge::export::purge`) takes theirs out
/// of the files; the `deletions` table gets their digests.
pub async fn export_erase(env: &Env, people: &[String], at: Millis) -> worker::Result<()> {
    use crate::core::wire::export::{deletion_row, messages};
    use crate::core::wire::export_ledger::record_erasure;
    if env.queue(EXPORT_QUEUE).is_err() {
        return Ok(());
    }
    let db = export_ledger(env).await.map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
    run(&db, &record_erasure(people, at)).await?;
    let rows: Vec<_> = people.iter().map(|p| deletion_row(p, at)).collect();
    export(env, messages(&rows, at)).await
}

thread_local! {
    /// Whether this isolate has made sure the export ledger's tables exist.
    static EXPORT_READY: Cell<bool> = const { Cell::new(false) };
}

/// The export ledger's database (`wire::export_ledger`), its tables made sure of once per isolate.
pub async fn export_ledger(env: &Env) -> Result<D1Database, ApiError> {
    let db = index(env).await?;
    if !EXPORT_READY.with(Cell::get) {
        let schema = crate::core::wire::export_ledger::SCHEMA.iter().map(|s| db.prepare(*s)).collect();
        db.batch(schema).await.map_err(|e| ApiError::Unavailable(format!("export ledger schema: {e}")))?;
        EXPORT_READY.with(|r| r.set(true));
    }
    Ok(db)
}
