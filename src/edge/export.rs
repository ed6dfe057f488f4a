//! The export (issue 29): the consumer that writes the export queue's rows to R2 as Segment's warehouse layout
//! (`core::wire::export`), exactly once (`core::wire::export_ledger`), and the purge that takes erased people's
//! rows out of the files (run by the cron).
//!
//! A delivery of messages: the ledger says which were written before (acknowledged, not written again) and which
//! batch was cut off part way (its files deleted first); the rows of the rest are grouped into one file per table
//! and hour, named for the batch (`export/{table}/dt=…/hour=…/{batch}.json.gz`, gzip NDJSON); rows about a person
//! erased are dropped; the batch and its files are recorded, the files written, the batch marked written, and only
//! then is the delivery acknowledged. Each partition's `manifest.json` is written from the ledger by the cron.

use crate::core::base::sort;
use crate::core::base::time::{format_iso8601, Millis};
use crate::core::wire::export::{file_key, files, read_message, without, Row};
use crate::core::wire::export_ledger::{self as ledger, FileEntry, Statement};
use crate::core::wire::inflate::{gzip, Coding, Inflater};
use crate::edge::clock::now;
use crate::edge::error::ApiError;
use crate::edge::outlets::{bind, export_ledger, rows, run};
use serde_json::Value as J;
use std::collections::BTreeSet;
use worker::{D1Database, Env, HttpMetadata, MessageBatch};

/// The export queue's name (`wrangler.toml`), which the queue handler dispatches on.
pub(crate) const QUEUE_NAME: &str = "edgecdp-export";
/// The bucket the files are written to (`wrangler.toml`).
pub const BUCKET: &str = "EXPORT_BUCKET";
/// zlib's default: 3–4× smaller than the NDJSON at a fraction of level 9's time.
const GZIP_LEVEL: u8 = 6;
/// The largest file the purge reads back (a batch's file is at most 100 messages of 100 KB).
const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// A batch still being written this long after it began was cut off: the purge rewrites what of it exists.
const ABANDONED_MS: Millis = 10 * 60 * 1000;
/// People purged per cron run.
const PURGE_PER_RUN: i64 = 200;

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("export: {e}"))
}

thread_local! {
    /// Whether this isolate has cut a delivery off already (`EDGECDP_TEST_EXPORT_CUT_OFF`).
    static CUT_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The queue's consumer: a whole delivery is written, or retried (the ledger keeps a retry from writing a row
/// twice). A message is known by a digest of its body (`message_id`), not by the queue's id: the same rows sent
/// twice (a producer's retry) are then one message, as a redelivery is.
pub(crate) async fn consume(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let delivered: Vec<(String, String)> =
        batch.messages()?.iter().map(|m| (message_id(m.body()), m.body().clone())).collect();
    match write(&env, &delivered).await {
        Ok(()) => batch.ack_all(),
        Err(e) => {
            worker::console_error!("export batch failed, retrying: {e:?}");
            batch.retry_all();
        }
    }
    Ok(())
}

/// A message's id in the ledger: the first 16 bytes of the SHA-256 of its body, in hex.
fn message_id(body: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::core::base::encoding::hex(&Sha256::digest(body.as_bytes())[..16])
}

async fn exec(db: &D1Database, statements: &[Statement]) -> Result<(), ApiError> {
    let list = statements.iter().map(|s| bind(db, s)).collect::<worker::Result<Vec<_>>>().map_err(unavailable)?;
    db.batch(list).await.map_err(unavailable)?;
    Ok(())
}

/// Which of `people` are erased.
async fn erased(db: &D1Database, people: &[String]) -> Result<BTreeSet<String>, ApiError> {
    let mut out = BTreeSet::new();
    // json_each over a long list is one statement; a delivery names at most a few thousand people.
    for group in people.chunks(1000) {
        for r in rows(db, &ledger::erased_among(group)).await? {
            out.extend(r.first().and_then(J::as_str).map(String::from));
        }
    }
    Ok(out)
}

async fn write(env: &Env, delivered: &[(String, String)]) -> Result<(), ApiError> {
    let db = export_ledger(env).await?;
    let bucket = env.bucket(BUCKET).map_err(unavailable)?;
    let ids: Vec<String> = delivered.iter().map(|(id, _)| id.clone()).collect();
    let known = ledger::known_of(&rows(&db, &ledger::lookup(&ids)).await?);
    let plan = ledger::plan(&ids, &known);
    if plan.write.is_empty() {
        return Ok(());
    }
    for key in &plan.delete {
        bucket.delete(key).await.map_err(unavailable)?;
    }
    let to_write: BTreeSet<&str> = sort::set_of(plan.write.iter().map(String::as_str));
    let mut taken = BTreeSet::new();
    let mut all: Vec<(Row, Millis)> = Vec::new();
    for (id, body) in delivered {
        if !to_write.contains(id.as_str()) || !taken.insert(id.as_str()) {
            continue;
        }
        match read_message(body) {
            Some((at, rows)) => all.extend(rows.into_iter().map(|r| (r, at))),
            None => worker::console_error!("export message {id} is not an export message; skipped"),
        }
    }
    let people: Vec<String> = all.iter().flat_map(|(r, _)| r.people()).collect::<BTreeSet<_>>().into_iter().collect();
    let gone = erased(&db, &people).await?;
    all.retain(|(r, _)| r.people().iter().all(|p| !gone.contains(p)));
    let at = now();
    let built: Vec<(FileEntry, Vec<u8>)> = files(all)
        .into_iter()
        .map(|((table, hour), body)| {
            let key = file_key(&table, hour, &plan.name);
            let iso = format_iso8601(hour);
            let gz = gzip(&body.ndjson, GZIP_LEVEL);
            let entry = FileEntry {
                key,
                table,
                dt: iso[..10].to_string(),
                hour: iso[11..13].to_string(),
                rows: body.rows,
                bytes: gz.len() as u64,
                oldest: body.oldest,
                people: body.people.into_iter().collect(),
            };
            (entry, gz)
        })
        .collect();
    let entries: Vec<FileEntry> = built.iter().map(|(e, _)| e.clone()).collect();
    exec(&db, &ledger::begin(&plan.name, &entries, &plan.write, at)).await?;
    // An erasure between the check and `begin` did not see these files: the delivery is retried, and its next
    // attempt drops that person's rows (the purge waits for a batch being written).
    if erased(&db, &people).await?.len() > gone.len() {
        return Err(unavailable("a person in this delivery was erased while it was planned"));
    }
    for (entry, gz) in built {
        let meta = HttpMetadata { content_type: Some("application/gzip".into()), ..HttpMetadata::default() };
        bucket.put(&entry.key, gz).http_metadata(meta).execute().await.map_err(unavailable)?;
    }
    // For tests only: the first delivery of this isolate stops here, its files written and its batch not marked
    // (a runtime that died mid-batch), so that its retry must delete them and write each row once.
    let cut = env.var("EDGECDP_TEST_EXPORT_CUT_OFF").is_ok_and(|v| !v.to_string().is_empty());
    if cut && !CUT_OFF.with(|c| c.replace(true)) {
        return Err(unavailable("cut off after writing its files (EDGECDP_TEST_EXPORT_CUT_OFF)"));
    }
    run(&db, &ledger::written(&plan.name)).await.map_err(unavailable)?;
    Ok(())
}

/// The cron's part: the manifests of the partitions written in the last ten minutes (a missed run or two
/// included), from the ledger. A manifest is so at most a minute behind its partition's files.
pub async fn refresh_manifests(env: &Env) -> Result<(), ApiError> {
    if env.queue(crate::edge::outlets::EXPORT_QUEUE).is_err() {
        return Ok(());
    }
    let db = export_ledger(env).await?;
    let bucket = env.bucket(BUCKET).map_err(unavailable)?;
    let text = |r: &Vec<J>, i: usize| r.get(i).and_then(J::as_str).unwrap_or_default().to_string();
    let recent = rows(&db, &ledger::recent_partitions(now() - 600_000)).await?;
    manifests(&db, &bucket, recent.iter().map(|r| (text(r, 0), text(r, 1), text(r, 2))).collect()).await
}

/// Rewrites each partition's `manifest.json` from the ledger: every file of it, with its rows and size.
async fn manifests(
    db: &D1Database,
    bucket: &worker::Bucket,
    partitions: BTreeSet<(String, String, String)>,
) -> Result<(), ApiError> {
    for (table, dt, hour) in partitions {
        let listed = rows(db, &ledger::partition(&table, &dt, &hour)).await?;
        let manifest = ledger::manifest(&table, &dt, &hour, &listed, now());
        let key = format!("export/{table}/dt={dt}/hour={hour}/manifest.json");
        let meta = HttpMetadata { content_type: Some("application/json".into()), ..HttpMetadata::default() };
        bucket.put(key, manifest.to_string().into_bytes()).http_metadata(meta).execute().await.map_err(unavailable)?;
    }
    Ok(())
}

/// The purge (every minute, from the cron): the people erased whose rows may still be in files, oldest first,
/// have every file that holds one rewritten without them (a file left empty is deleted), then are marked purged.
/// While a batch holding one of them is still being written (for less than `ABANDONED_MS`), they wait for the
/// next run. So an erased person is in no file within a minute of the last batch holding their rows being
/// written: at most `ABANDONED_MS` and a minute after the erasure, usually one to two minutes.
pub async fn purge(env: &Env) -> Result<usize, ApiError> {
    if env.queue(crate::edge::outlets::EXPORT_QUEUE).is_err() {
        return Ok(0);
    }
    let db = export_ledger(env).await?;
    let at = now();
    let people: Vec<String> = rows(&db, &ledger::unpurged(PURGE_PER_RUN))
        .await?
        .iter()
        .filter_map(|r| r.first().and_then(J::as_str).map(String::from))
        .collect();
    if people.is_empty() {
        return exec(&db, &ledger::prune(at)).await.map(|()| 0);
    }
    let held = rows(&db, &ledger::files_of(&people)).await?;
    let text = |r: &Vec<J>, i: usize| r.get(i).and_then(J::as_str).unwrap_or_default().to_string();
    let writing = |r: &Vec<J>| text(r, 1) != "written" && at - r.get(5).and_then(J::as_i64).unwrap_or(0) < ABANDONED_MS;
    if held.iter().any(writing) {
        return Ok(0);
    }
    let bucket = env.bucket(BUCKET).map_err(unavailable)?;
    let erased: BTreeSet<String> = sort::set_of(people.iter().cloned());
    let mut partitions = BTreeSet::new();
    let mut statements = Vec::new();
    for r in &held {
        let (key, table) = (text(r, 0), text(r, 2));
        partitions.insert((table.clone(), text(r, 3), text(r, 4)));
        let Some(object) = bucket.get(&key).execute().await.map_err(unavailable)? else {
            statements.push(ledger::rewritten(&key, 0, 0));
            continue;
        };
        let gz = object.body().ok_or_else(|| unavailable("no body"))?.bytes().await.map_err(unavailable)?;
        let mut inflater = Inflater::new(Coding::Gzip, MAX_FILE_BYTES);
        inflater.push(&gz).map_err(|e| unavailable(format!("{key}: {e:?}")))?;
        let ndjson = inflater.finish().map_err(|e| unavailable(format!("{key}: {e:?}")))?;
        let (kept, n) = without(&table, &ndjson, &erased);
        if n == 0 {
            bucket.delete(&key).await.map_err(unavailable)?;
            statements.push(ledger::rewritten(&key, 0, 0));
        } else {
            let gz = gzip(&kept, GZIP_LEVEL);
            let len = gz.len() as u64;
            let meta = HttpMetadata { content_type: Some("application/gzip".into()), ..HttpMetadata::default() };
            bucket.put(&key, gz).http_metadata(meta).execute().await.map_err(unavailable)?;
            statements.push(ledger::rewritten(&key, n, len));
        }
    }
    statements.extend(ledger::purged(&people, at));
    exec(&db, &statements).await?;
    manifests(&db, &bucket, partitions).await?;
    Ok(people.len())
}
