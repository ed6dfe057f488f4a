//! Import jobs at the edge (`core::wire::imports`, `core::wire::import_jobs`): a file streamed through the
//! splitter (or one already in R2, read a range at a time), each chunk it makes stored as an object of its own
//! (`imports/{job}/{n}`) and handed to the imports queue, the consumer that applies each chunk through the
//! profiles' writers and then deletes it, and the cron that hands on a chunk whose message was lost. No step holds
//! more than the splitter's partitions (`PARTITIONS` chunks) or one chunk.

use crate::core::base::encoding::hex;
use crate::core::engine::apply::ApplyRequest;
use crate::core::engine::ingest::{import_batches, Batch};
use crate::core::engine::merge::Group;
use crate::core::model::identity::ProfileIdKey;
use crate::core::rules::sources::{Source, SourceKind};
use crate::core::wire::events::Parsed;
use crate::core::wire::import_jobs::{self as jobs, Counts, Started};
use crate::core::wire::imports::{parse_chunk, Declaration, Format, RowReject, Split, Splitter, MAX_IMPORT_BYTES};
use crate::core::wire::imports::{CHUNK_BYTES, MAX_REJECTS_KEPT, MAX_ROW_BYTES};
use crate::core::wire::inflate::{Coding, Inflater};
use crate::core::wire::BodyError;
use crate::edge::clock::now;
use crate::edge::error::ApiError;
use crate::edge::objects::profile_client;
use crate::edge::outlets::{bind, rows, run};
use crate::edge::request::{drain, inflate_error, next_chunk, profile_id_key};
use crate::edge::{ingest, kv};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Value as J};
use std::cell::Cell;
use worker::{D1Database, Env, MessageExt, Request};

/// The bucket import files are kept in (`wrangler.toml`).
pub const BUCKET: &str = "IMPORTS";
/// The imports queue's binding and name.
pub const QUEUE: &str = "IMPORT_CHUNKS";
pub const QUEUE_NAME: &str = "edgecdp-imports";
/// How much of a file already in R2 is read at once while it is split.
const READ_BYTES: u64 = 1024 * 1024;
/// Profiles written at once by one batch of a chunk.
const WRITERS_AT_ONCE: usize = 32;
/// Batches of a chunk applied at once (when no two of them name the same identity).
const BATCHES_AT_ONCE: usize = 4;

/// Where chunk `n` of job `id` is kept.
fn chunk_key(id: &str, n: usize) -> String {
    format!("imports/{id}/{n}")
}

thread_local! {
    static READY: Cell<bool> = const { Cell::new(false) };
}

/// The jobs' database, its tables made sure of once per isolate.
pub(crate) async fn db(env: &Env) -> Result<D1Database, ApiError> {
    let db = env.d1(crate::edge::outlets::D1_BINDING).map_err(|e| ApiError::Unavailable(format!("imports: {e}")))?;
    if !READY.with(Cell::get) {
        let schema = jobs::SCHEMA.iter().map(|s| db.prepare(*s)).collect();
        db.batch(schema).await.map_err(|e| ApiError::Unavailable(format!("imports schema: {e}")))?;
        READY.with(|r| r.set(true));
    }
    Ok(db)
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("imports: {e}"))
}

async fn exec(db: &D1Database, statements: &[jobs::Statement]) -> Result<(), ApiError> {
    for group in statements.chunks(50) {
        let list = group.iter().map(|s| bind(db, s)).collect::<worker::Result<Vec<_>>>().map_err(unavailable)?;
        db.batch(list).await.map_err(unavailable)?;
    }
    Ok(())
}

/// A job's answer: its row with the first rejected rows.
pub(crate) async fn job(db: &D1Database, id: &str) -> Result<Option<J>, ApiError> {
    let Some(row) = rows(db, &jobs::job(id)).await?.into_iter().next() else { return Ok(None) };
    let mut job = jobs::job_json(&row, now());
    let rejects = rows(db, &jobs::rejects(id, 0, 100)).await?;
    job["rejects"] = rejects.iter().map(|r| jobs::reject_json(r)).collect();
    Ok(Some(job))
}

/// Creates a job for `source` and splits its file (the request's body streamed in, or the object the declaration
/// names) into chunks kept in R2. Answers the job.
pub(crate) async fn create(req: &mut Request, env: &Env, decl: Declaration, source: &str) -> Result<J, ApiError> {
    let at = now();
    let id = ["imp_", &crate::edge::auth::random_hex(16)?].concat();
    let db = db(env).await?;
    let owned = decl.object.is_none();
    let object = decl.object.clone().unwrap_or_else(|| format!("imports/{id}"));
    let declaration = decl.to_json().to_string();
    run(&db, &jobs::create(&id, source, &declaration, &object, owned, at)).await.map_err(unavailable)?;
    let (_, config) = kv::config(env).await?;
    let mut chunks = Chunks { bucket: env.bucket(BUCKET).map_err(unavailable)?, job: id.clone(), stored: 0 };
    let mut splitter = Splitter::new(&decl, &config, at);
    let outcome = async {
        if owned {
            upload(req, env, &mut splitter, &mut chunks).await?;
        } else {
            read_object(env, &mut splitter, &mut chunks, &object).await?;
        }
        let mut split = splitter.finish().map_err(ApiError::Body)?;
        chunks.store(std::mem::take(&mut split.ready)).await?;
        start(env, &db, &id, source, &decl, &declaration, split).await
    }
    .await;
    if let Err(e) = &outcome {
        run(&db, &jobs::fail(&id, &e.to_json(), now())).await.map_err(unavailable)?;
        chunks.discard().await;
    }
    if let Ok(true) = &outcome {
        // The same file again: its chunks are not needed.
        chunks.discard().await;
    }
    outcome?;
    job(&db, &id).await?.ok_or_else(|| unavailable("the job vanished"))
}

/// The chunks of one job as the splitter makes them: each stored as soon as it is ready.
struct Chunks {
    bucket: worker::Bucket,
    job: String,
    stored: usize,
}

impl Chunks {
    async fn store(&mut self, ready: Vec<Vec<u8>>) -> Result<(), ApiError> {
        for bytes in ready {
            self.bucket.put(chunk_key(&self.job, self.stored), bytes).execute().await.map_err(unavailable)?;
            self.stored += 1;
        }
        Ok(())
    }

    /// The job failed while splitting, or is a duplicate: none of its chunks is kept.
    async fn discard(&self) {
        for n in 0..self.stored {
            let _ = self.bucket.delete(chunk_key(&self.job, n)).await;
        }
    }
}

/// Streams the request's body (inflated, when its `Content-Encoding` says so) through the splitter, with a
/// running limit on what the body holds, storing each chunk as it is ready.
async fn upload(
    req: &mut Request,
    env: &Env,
    splitter: &mut Splitter<'_>,
    chunks: &mut Chunks,
) -> Result<(), ApiError> {
    use worker::wasm_bindgen::JsCast;
    use worker::web_sys::ReadableStreamDefaultReader;
    let coding = match req.headers().get("content-encoding")? {
        None => None,
        Some(h) => Coding::of_header(&h).map_err(|_| ApiError::UnsupportedEncoding(h.trim().to_string()))?,
    };
    let limit = limit(env);
    let mut inflater = coding.map(|c| Inflater::new(c, limit));
    let mut received = 0usize;
    let Some(stream) = req.inner().body() else { return Ok(()) };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let unreadable = |_| ApiError::BadRequest {
        code: "body_unreadable",
        message: "the file could not be read to its end".into(),
        path: String::new(),
    };
    while let Some(chunk) = next_chunk(&reader).await.map_err(unreadable)? {
        received += chunk.length() as usize;
        let fed = if received > limit {
            Err(ApiError::Body(BodyError::TooLarge { limit }))
        } else {
            let chunk = chunk.to_vec();
            match inflater.as_mut() {
                // A kilobyte of compressed input at a time inflates to at most about a megabyte (deflate's
                // ratio is at most 1032:1), so a bomb never holds more than that at once.
                Some(i) => chunk.chunks(1024).try_for_each(|piece| {
                    i.push(piece).map_err(|e| inflate_error(e, limit))?;
                    splitter.feed(&i.take()).map_err(ApiError::Body)
                }),
                None => splitter.feed(&chunk).map_err(ApiError::Body),
            }
        };
        if let Err(e) = fed {
            drain(&reader).await;
            return Err(e);
        }
        chunks.store(splitter.take_ready()).await?;
    }
    if let Some(i) = inflater {
        let rest = i.finish().map_err(|e| inflate_error(e, limit))?;
        splitter.feed(&rest).map_err(ApiError::Body)?;
    }
    Ok(())
}

/// The most a file may hold: `MAX_IMPORT_BYTES`, or less where `EDGECDP_IMPORT_MAX_BYTES` says (tests).
fn limit(env: &Env) -> usize {
    let set = env.var("EDGECDP_IMPORT_MAX_BYTES").ok().and_then(|v| v.to_string().parse::<usize>().ok());
    set.map_or(MAX_IMPORT_BYTES, |n| n.min(MAX_IMPORT_BYTES))
}

/// Splits a file already in R2, read a range at a time. A compressed object is refused: it is read by range
/// (upload it with `Content-Encoding: gzip` instead).
async fn read_object(env: &Env, splitter: &mut Splitter<'_>, chunks: &mut Chunks, key: &str) -> Result<(), ApiError> {
    let bucket = env.bucket(BUCKET).map_err(unavailable)?;
    let missing = || ApiError::BadRequest {
        code: "object_not_found",
        message: format!("the imports bucket has no object {key:?}"),
        path: "object".into(),
    };
    let size = bucket.head(key).await.map_err(unavailable)?.ok_or_else(missing)?.size();
    if size > limit(env) as u64 {
        return Err(ApiError::Body(BodyError::TooLarge { limit: limit(env) }));
    }
    let mut offset = 0;
    while offset < size {
        let length = READ_BYTES.min(size - offset);
        let range = worker::Range::OffsetWithLength { offset, length };
        let object = bucket.get(key).range(range).execute().await.map_err(unavailable)?.ok_or_else(missing)?;
        let bytes = object.body().ok_or_else(missing)?.bytes().await.map_err(unavailable)?;
        if offset == 0 && bytes.starts_with(&[0x1f, 0x8b]) {
            return Err(ApiError::BadRequest {
                code: "compressed_object",
                message: "the object is gzip: it is read by range, so name an uncompressed file (or upload it with \
                          Content-Encoding: gzip)"
                    .into(),
                path: "object".into(),
            });
        }
        splitter.feed(&bytes).map_err(ApiError::Body)?;
        chunks.store(splitter.take_ready()).await?;
        offset += bytes.len().max(1) as u64;
    }
    Ok(())
}

/// The file is split: the job records its chunks and rejected rows and runs, unless the same source imported the
/// same file the same way before (then it ends as that job's duplicate, applying nothing: answers true).
async fn start(
    env: &Env,
    db: &D1Database,
    id: &str,
    source: &str,
    decl: &Declaration,
    declaration: &str,
    split: Split,
) -> Result<bool, ApiError> {
    let header = match (decl.format, split.header.as_deref()) {
        (Format::Csv, None) => {
            return Err(ApiError::Body(BodyError::Shape {
                path: "header".into(),
                message: "the CSV file is empty: its first row must name its columns".into(),
            }))
        }
        (Format::Csv, Some(h)) => Some(h),
        _ => None,
    };
    let header_text = header.map(|h| String::from_utf8_lossy(h).into_owned());
    let digest = hex(&split.digest);
    let unknown = split.columns.as_ref().map(|c| c.unknown.clone()).unwrap_or_default();
    let started = Started {
        header: header_text.as_deref(),
        unknown_columns: &unknown,
        digest: &digest,
        bytes: split.bytes,
        chunks: split.chunks.len(),
        split_rejected: split.rejected as usize,
    };
    let at = now();
    if let Some(row) = rows(db, &jobs::same_file(id, source, &digest, declaration)).await?.into_iter().next() {
        let of = row.first().and_then(J::as_str).unwrap_or_default().to_string();
        run(db, &jobs::duplicate(id, &of, &started, at)).await.map_err(unavailable)?;
        return Ok(true);
    }
    let mut statements: Vec<jobs::Statement> =
        split.chunks.iter().enumerate().map(|(n, c)| jobs::add_chunk(id, n, c, at)).collect();
    statements.extend(split.rejects.iter().take(MAX_REJECTS_KEPT).map(|r| jobs::add_reject(id, r)));
    statements.push(jobs::start(id, &started, at));
    exec(db, &statements).await?;
    let queue = env.queue(QUEUE).map_err(unavailable)?;
    // Each message as text, as every queue of this Worker carries them (its consumer reads `String` bodies).
    let messages: Vec<String> = (0..split.chunks.len()).map(|n| json!({"job": id, "n": n}).to_string()).collect();
    for group in messages.chunks(100) {
        queue.send_batch(group.to_vec()).await.map_err(unavailable)?;
    }
    Ok(false)
}

/// The queue's consumer: each message is one chunk, applied once (see `apply_chunk`); a chunk that fails for
/// now (a writer unavailable) is retried by the queue.
pub(crate) async fn consume(batch: worker::MessageBatch<String>, env: Env) -> worker::Result<()> {
    for message in batch.messages()? {
        match apply_chunk(&env, message.body()).await {
            Ok(()) => message.ack(),
            Err(e) => {
                worker::console_error!("import chunk {}: {e:?}", message.body());
                message.retry();
            }
        }
    }
    Ok(())
}

/// The source an import's events come from: a server's word (identities merge, contact points are proven).
fn import_source(id: &str) -> Source {
    Source { id: id.to_string(), kind: SourceKind::Server { key_digest: String::new() }, origins: Vec::new() }
}

/// Reads one chunk back, parses its rows, and applies them through the profiles' writers in time order per
/// person; then records its counts and rejected rows, once, ends the job when it was the last, and deletes the
/// chunk.
async fn apply_chunk(env: &Env, body: &str) -> Result<(), ApiError> {
    let message: J = serde_json::from_str(body).unwrap_or_default();
    let (Some(id), Some(n)) = (message["job"].as_str(), message["n"].as_u64()) else { return Ok(()) };
    let n = n as usize;
    let db = db(env).await?;
    let Some(row) = rows(&db, &jobs::job_for_chunk(id, n)).await?.into_iter().next() else { return Ok(()) };
    let text = |i: usize| row.get(i).and_then(J::as_str).unwrap_or_default().to_string();
    let int = |i: usize| row.get(i).and_then(J::as_u64).unwrap_or(0);
    let bucket = env.bucket(BUCKET).map_err(unavailable)?;
    if text(8) == jobs::DONE {
        // A redelivery of a chunk applied: its object goes, if it is still there.
        return bucket.delete(chunk_key(id, n)).await.map_err(unavailable);
    }
    if text(0) != jobs::RUNNING {
        return drop_chunk(&db, &bucket, id, n).await;
    }
    let at = now();
    let (_, config) = kv::config(env).await?;
    let failed = |code: &str, message: String| json!({"code": code, "message": message, "path": ""});
    let decl = match Declaration::of_stored(&text(1), &config, at) {
        Ok(d) => d,
        Err(e) => {
            let why = failed("declaration_invalid", format!("the configuration no longer takes this job: {e:?}"));
            return run(&db, &jobs::fail(id, &why, at)).await.map_err(unavailable);
        }
    };
    let columns = match decl.format {
        Format::Csv => Some(decl.bind(text(3).as_bytes()).map_err(ApiError::Body)?),
        Format::Ndjson => None,
    };
    if int(6) > 2 * (CHUNK_BYTES + MAX_ROW_BYTES) {
        return Err(unavailable("a chunk longer than any split makes"));
    }
    let Some(object) = bucket.get(chunk_key(id, n)).execute().await.map_err(unavailable)? else {
        let why = failed("file_missing", format!("chunk {n} of the job is no longer in the imports bucket"));
        return run(&db, &jobs::fail(id, &why, at)).await.map_err(unavailable);
    };
    let bytes = object.body().ok_or_else(|| unavailable("no body"))?.bytes().await.map_err(unavailable)?;
    let parsed = parse_chunk(&bytes, &decl, columns.as_ref(), &config, at);
    let mut counts = Counts { read: parsed.read, ..Counts::default() };
    let mut rejects = parsed.rejects;
    let source = import_source(&text(4));
    let ids = profile_id_key(env)?;
    let batches: Vec<(Batch, Vec<u64>)> = import_batches(parsed.events, parsed.lines)
        .into_iter()
        .map(|(events, lines)| {
            let parsed = Parsed { write_key: None, events, rejected: Vec::new() };
            (Batch::prepare(parsed, true, None, &config), lines)
        })
        .collect();
    for wave in waves(batches) {
        if rows(&db, &jobs::state_of(id)).await?.first().and_then(|r| r.first()).and_then(J::as_str)
            != Some(jobs::RUNNING)
        {
            // Cancelled (or failed) meanwhile: what was applied stays, the rest of the chunk goes.
            return drop_chunk(&db, &bucket, id, n).await;
        }
        let applied = futures_util::future::try_join_all(
            wave.into_iter().map(|(batch, lines)| apply_batch(env, batch, lines, &source, &config, &ids, at)),
        )
        .await?;
        for (c, r) in applied {
            counts.applied += c.applied;
            counts.duplicates += c.duplicates;
            counts.refused += c.refused;
            rejects.extend(r);
        }
    }
    counts.rejected = rejects.len() as u64;
    let mut statements: Vec<jobs::Statement> =
        rejects.iter().take(MAX_REJECTS_KEPT).map(|r| jobs::add_reject(id, r)).collect();
    statements.push(jobs::chunk_done(id, n, counts, now()));
    statements.push(jobs::finish(id, now()));
    exec(&db, &statements).await?;
    // Nothing of its people is kept beyond their profiles once the chunk is applied.
    bucket.delete(chunk_key(id, n)).await.map_err(unavailable)
}

/// A chunk of a job that was cancelled or failed: it will not be applied, its object goes, and the cron hands it
/// on no more.
async fn drop_chunk(db: &D1Database, bucket: &worker::Bucket, id: &str, n: usize) -> Result<(), ApiError> {
    bucket.delete(chunk_key(id, n)).await.map_err(unavailable)?;
    run(db, &jobs::chunk_dropped(id, n)).await.map_err(unavailable)
}

/// A chunk's batches in waves: batches in a wave name no identity in common (so applying them at once decides
/// nothing differently from applying them in turn), at most `BATCHES_AT_ONCE` of them; waves go in order.
fn waves(batches: Vec<(Batch, Vec<u64>)>) -> Vec<Vec<(Batch, Vec<u64>)>> {
    let mut waves: Vec<Vec<(Batch, Vec<u64>)>> = Vec::new();
    let mut named = std::collections::BTreeSet::new();
    for (batch, lines) in batches {
        let identities = batch.identities_to_resolve();
        let fits =
            waves.last().is_some_and(|w| w.len() < BATCHES_AT_ONCE) && identities.iter().all(|i| !named.contains(i));
        if !fits {
            waves.push(Vec::new());
            named.clear();
        }
        named.extend(identities);
        waves.last_mut().expect("pushed").push((batch, lines));
    }
    waves
}

/// One batch of a chunk through the writers: its counts, and its rows refused by line.
async fn apply_batch(
    env: &Env,
    mut batch: Batch,
    lines: Vec<u64>,
    source: &Source,
    config: &crate::core::rules::Config,
    ids: &ProfileIdKey,
    at: crate::core::base::time::Millis,
) -> Result<(Counts, Vec<RowReject>), ApiError> {
    let mut counts = Counts::default();
    let (index, erased) = ingest::resolve(env, &batch).await?;
    batch.admit(source, &[], &index, &erased, at);
    let groups = batch.plan(&index, config, ids);
    for (message_ids, outcome) in apply_groups(env, groups).await? {
        counts.applied += u64::from(outcome.stored);
        counts.duplicates += u64::from(outcome.duplicates);
        counts.refused += u64::from(outcome.refused);
        let erased = "this person was erased moments ago; rows for them are not kept";
        batch.refuse_unkept(&message_ids, &outcome, erased, "row");
    }
    let (rejected, _) = batch.finish();
    let rejects = rejected
        .into_iter()
        .map(|r| RowReject {
            line: lines.get(r.index).copied().unwrap_or(0),
            code: r.code,
            path: r.path,
            message: r.message,
        })
        .collect();
    Ok((counts, rejects))
}

/// Applies a batch's groups: those that absorb no other profile at once (several writers at a time), then those
/// that do, one after another in the planner's order (a merge must find the profiles it absorbs stored).
async fn apply_groups(
    env: &Env,
    groups: Vec<Group>,
) -> Result<Vec<(Vec<String>, crate::core::engine::apply::ApplyAnswer)>, ApiError> {
    let (plain, linking): (Vec<Group>, Vec<Group>) = groups.into_iter().partition(|g| g.links.is_empty());
    let request = |g: Group| {
        let message_ids: Vec<String> = g.events.iter().map(|e| e.message_id.clone()).collect();
        let r = ApplyRequest { profile_id: g.profile_id, events: g.events, links: g.links, ..ApplyRequest::default() };
        (message_ids, r)
    };
    let mut out: Vec<_> = futures_util::stream::iter(
        plain.into_iter().map(request).map(|(m, r)| async move { profile_client::apply(env, r).await.map(|o| (m, o)) }),
    )
    .buffer_unordered(WRITERS_AT_ONCE)
    .try_collect()
    .await?;
    for (m, r) in linking.into_iter().map(request) {
        out.push((m, profile_client::apply(env, r).await?));
    }
    Ok(out)
}

/// The cron: chunks handed to the queue longer ago than `EDGECDP_IMPORT_STALE_SECONDS` (10 minutes by default)
/// and neither done nor dropped go to the queue again; their message was lost (a runtime restart). A running job's
/// chunk is applied (twice counts once: message ids, and `chunk_done` marks it once); a cancelled or failed job's
/// is dropped, its object deleted.
pub(crate) async fn requeue_stale(env: &Env) -> Result<usize, ApiError> {
    let stale_ms =
        env.var("EDGECDP_IMPORT_STALE_SECONDS").ok().and_then(|v| v.to_string().parse::<i64>().ok()).unwrap_or(600)
            * 1000;
    let db = db(env).await?;
    let at = now();
    let stale = rows(&db, &jobs::stale_chunks(at - stale_ms, 500)).await?;
    let queue = env.queue(QUEUE).map_err(unavailable)?;
    let mut statements = Vec::new();
    let mut messages = Vec::new();
    for row in &stale {
        let (Some(job), Some(n)) = (row.first().and_then(J::as_str), row.get(1).and_then(J::as_i64)) else { continue };
        messages.push(json!({"job": job, "n": n}).to_string());
        statements.push(jobs::requeued(job, n, at));
    }
    exec(&db, &statements).await?;
    for group in messages.chunks(100) {
        queue.send_batch(group.to_vec()).await.map_err(unavailable)?;
    }
    Ok(messages.len())
}
