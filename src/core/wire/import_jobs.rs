//! Import jobs in D1: the tables, every statement the Worker runs on them, and a job as the API answers it.
//!
//! A job is one row of `import_jobs`; its chunks are rows of `import_chunks`, each marked done once, with its
//! counts, by the consumer that applied it (a redelivered chunk finds it done, or applies it again: profiles count
//! each message id once); rejected rows are keyed by their line, so writing them again changes nothing. The job's
//! counts are the sums over its chunks.

use crate::core::base::time::{format_iso8601, Millis};
use crate::core::wire::audiences::Sql;
pub use crate::core::wire::audiences::Statement;
use crate::core::wire::imports::{Chunk, RowReject};
use serde_json::{json, Value as J};

/// The tables, created if missing (each statement idempotent).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS import_jobs (id TEXT PRIMARY KEY, source TEXT NOT NULL, state TEXT NOT NULL, \
     declaration TEXT NOT NULL, object TEXT NOT NULL, owned INTEGER NOT NULL, header TEXT, unknown_columns TEXT, \
     digest TEXT, duplicate_of TEXT, bytes INTEGER NOT NULL DEFAULT 0, chunks INTEGER NOT NULL DEFAULT 0, \
     split_rejected INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, \
     error TEXT) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS import_jobs_by_digest ON import_jobs (source, digest)",
    "CREATE TABLE IF NOT EXISTS import_chunks (job TEXT NOT NULL, n INTEGER NOT NULL, offset INTEGER NOT NULL, \
     length INTEGER NOT NULL, first_line INTEGER NOT NULL, rows INTEGER NOT NULL, state TEXT NOT NULL, \
     enqueued_at INTEGER NOT NULL, read INTEGER NOT NULL DEFAULT 0, applied INTEGER NOT NULL DEFAULT 0, \
     duplicates INTEGER NOT NULL DEFAULT 0, refused INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0, \
     done_at INTEGER, PRIMARY KEY (job, n)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS import_rejects (job TEXT NOT NULL, line INTEGER NOT NULL, code TEXT NOT NULL, \
     path TEXT NOT NULL, message TEXT NOT NULL, PRIMARY KEY (job, line)) WITHOUT ROWID",
];

/// A job's states. `uploading` until the file is split; `running` while chunks are applied; then one of the
/// three ends.
pub const UPLOADING: &str = "uploading";
pub const RUNNING: &str = "running";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";
pub const CANCELLED: &str = "cancelled";

fn text(s: &str) -> Sql {
    Sql::Text(s.to_string())
}

fn opt(s: Option<&str>) -> Sql {
    s.map_or(Sql::Null, text)
}

pub fn create(id: &str, source: &str, declaration: &str, object: &str, owned: bool, now: Millis) -> Statement {
    Statement {
        sql: "INSERT INTO import_jobs (id, source, state, declaration, object, owned, created_at) \
              VALUES (?1, ?2, 'uploading', ?3, ?4, ?5, ?6)",
        params: vec![text(id), text(source), text(declaration), text(object), Sql::Int(owned.into()), Sql::Int(now)],
    }
}

/// What splitting the file found, and the job running.
pub struct Started<'a> {
    pub header: Option<&'a str>,
    pub unknown_columns: &'a [String],
    pub digest: &'a str,
    pub bytes: u64,
    pub chunks: usize,
    pub split_rejected: usize,
}

pub fn start(id: &str, s: &Started, now: Millis) -> Statement {
    let unknown = J::from(s.unknown_columns.to_vec()).to_string();
    Statement {
        sql: "UPDATE import_jobs SET state = CASE WHEN ?7 = 0 THEN 'done' ELSE 'running' END, header = ?2, \
              unknown_columns = ?3, digest = ?4, bytes = ?5, chunks = ?7, split_rejected = ?6, started_at = ?8, \
              finished_at = CASE WHEN ?7 = 0 THEN ?8 ELSE NULL END WHERE id = ?1 AND state = 'uploading'",
        params: vec![
            text(id),
            opt(s.header),
            text(&unknown),
            text(s.digest),
            Sql::Int(s.bytes as i64),
            Sql::Int(s.split_rejected as i64),
            Sql::Int(s.chunks as i64),
            Sql::Int(now),
        ],
    }
}

/// An earlier job of the same source that read the same file the same way and did not fail: the file is not
/// applied again.
pub fn same_file(id: &str, source: &str, digest: &str, declaration: &str) -> Statement {
    Statement {
        sql: "SELECT id FROM import_jobs WHERE source = ?2 AND digest = ?3 AND declaration = ?4 AND id != ?1 \
              AND state IN ('running', 'done') AND duplicate_of IS NULL ORDER BY created_at LIMIT 1",
        params: vec![text(id), text(source), text(digest), text(declaration)],
    }
}

/// The job ends as a copy of `of`: nothing applied, nothing counted twice.
pub fn duplicate(id: &str, of: &str, s: &Started, now: Millis) -> Statement {
    Statement {
        sql: "UPDATE import_jobs SET state = 'done', duplicate_of = ?2, digest = ?3, bytes = ?4, header = ?5, \
              started_at = ?6, finished_at = ?6 WHERE id = ?1 AND state = 'uploading'",
        params: vec![text(id), text(of), text(s.digest), Sql::Int(s.bytes as i64), opt(s.header), Sql::Int(now)],
    }
}

pub fn fail(id: &str, error: &J, now: Millis) -> Statement {
    Statement {
        sql: "UPDATE import_jobs SET state = 'failed', error = ?2, finished_at = ?3 \
              WHERE id = ?1 AND state IN ('uploading', 'running')",
        params: vec![text(id), text(&error.to_string()), Sql::Int(now)],
    }
}

pub fn cancel(id: &str, now: Millis) -> Statement {
    Statement {
        sql: "UPDATE import_jobs SET state = 'cancelled', finished_at = ?2 WHERE id = ?1 AND state IN ('uploading', 'running')",
        params: vec![text(id), Sql::Int(now)],
    }
}

pub fn add_chunk(id: &str, n: usize, c: &Chunk, now: Millis) -> Statement {
    Statement {
        sql: "INSERT OR IGNORE INTO import_chunks (job, n, offset, length, first_line, rows, state, enqueued_at) \
              VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7)",
        params: vec![
            text(id),
            Sql::Int(n as i64),
            Sql::Int(c.offset as i64),
            Sql::Int(c.length as i64),
            Sql::Int(c.first_line as i64),
            Sql::Int(c.rows as i64),
            Sql::Int(now),
        ],
    }
}

pub fn add_reject(id: &str, r: &RowReject) -> Statement {
    Statement {
        sql: "INSERT OR REPLACE INTO import_rejects (job, line, code, path, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        params: vec![text(id), Sql::Int(r.line as i64), text(r.code), text(&r.path), text(&r.message)],
    }
}

/// The job's state, declaration, file and header, as a consumer needs them.
pub fn job_for_chunk(id: &str, n: usize) -> Statement {
    Statement {
        sql: "SELECT j.state, j.declaration, j.object, j.header, j.source, c.offset, c.length, c.first_line, c.state \
              FROM import_jobs j JOIN import_chunks c ON c.job = j.id WHERE j.id = ?1 AND c.n = ?2",
        params: vec![text(id), Sql::Int(n as i64)],
    }
}

pub fn state_of(id: &str) -> Statement {
    Statement { sql: "SELECT state FROM import_jobs WHERE id = ?1", params: vec![text(id)] }
}

/// What one chunk came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub refused: u64,
    pub rejected: u64,
}

/// Marks a chunk done with its counts, once: a second consumer of the same chunk changes nothing.
pub fn chunk_done(id: &str, n: usize, c: Counts, now: Millis) -> Statement {
    Statement {
        sql: "UPDATE import_chunks SET state = 'done', read = ?3, applied = ?4, duplicates = ?5, refused = ?6, \
              rejected = ?7, done_at = ?8 WHERE job = ?1 AND n = ?2 AND state != 'done'",
        params: vec![
            text(id),
            Sql::Int(n as i64),
            Sql::Int(c.read as i64),
            Sql::Int(c.applied as i64),
            Sql::Int(c.duplicates as i64),
            Sql::Int(c.refused as i64),
            Sql::Int(c.rejected as i64),
            Sql::Int(now),
        ],
    }
}

/// Ends a running job whose chunks are all done.
pub fn finish(id: &str, now: Millis) -> Statement {
    Statement {
        sql: "UPDATE import_jobs SET state = 'done', finished_at = ?2 WHERE id = ?1 AND state = 'running' \
              AND NOT EXISTS (SELECT 1 FROM import_chunks WHERE job = ?1 AND state != 'done')",
        params: vec![text(id), Sql::Int(now)],
    }
}

/// Chunks of running jobs handed to the queue before `before` and still not done (their message was lost: a
/// restart of the runtime, say), at most `limit`.
pub fn stale_chunks(before: Millis, limit: i64) -> Statement {
    Statement {
        sql: "SELECT c.job, c.n FROM import_chunks c JOIN import_jobs j ON j.id = c.job \
              WHERE j.state IN ('running', 'cancelled', 'failed') AND c.state NOT IN ('done', 'dropped') \
              AND c.enqueued_at < ?1 LIMIT ?2",
        params: vec![Sql::Int(before), Sql::Int(limit)],
    }
}

/// A chunk its job ended without (cancelled or failed): its object is deleted, and the cron hands it on no more.
pub fn chunk_dropped(id: &str, n: usize) -> Statement {
    Statement {
        sql: "UPDATE import_chunks SET state = 'dropped' WHERE job = ?1 AND n = ?2 AND state != 'done'",
        params: vec![text(id), Sql::Int(n as i64)],
    }
}

pub fn requeued(id: &str, n: i64, now: Millis) -> Statement {
    Statement {
        sql: "UPDATE import_chunks SET enqueued_at = ?3 WHERE job = ?1 AND n = ?2",
        params: vec![text(id), Sql::Int(n), Sql::Int(now)],
    }
}

/// A job with its chunks' sums (`job_json` reads the columns by position).
macro_rules! job_columns {
    () => {
        "SELECT j.id, j.source, j.state, j.declaration, j.unknown_columns, j.bytes, j.chunks, \
    j.split_rejected, j.created_at, j.started_at, j.finished_at, j.error, j.duplicate_of, \
    coalesce(sum(c.state = 'done'), 0), coalesce(sum(c.read), 0), coalesce(sum(c.applied), 0), \
    coalesce(sum(c.duplicates), 0), coalesce(sum(c.refused), 0), coalesce(sum(c.rejected), 0) \
    FROM import_jobs j LEFT JOIN import_chunks c ON c.job = j.id"
    };
}

pub fn job(id: &str) -> Statement {
    Statement { sql: concat!(job_columns!(), " WHERE j.id = ?1 GROUP BY j.id"), params: vec![text(id)] }
}

/// The newest jobs (of one source; all of them for an empty `source`).
pub fn jobs(source: &str) -> Statement {
    Statement {
        sql: concat!(
            job_columns!(),
            " WHERE (?1 = '' OR j.source = ?1) GROUP BY j.id ORDER BY j.created_at DESC, j.id LIMIT 50"
        ),
        params: vec![text(source)],
    }
}

/// Rejected rows by line, from `after` (exclusive), at most `limit`.
pub fn rejects(id: &str, after: i64, limit: i64) -> Statement {
    Statement {
        sql: "SELECT line, code, path, message FROM import_rejects WHERE job = ?1 AND line > ?2 ORDER BY line LIMIT ?3",
        params: vec![text(id), Sql::Int(after), Sql::Int(limit)],
    }
}

/// A reject row as JSON.
pub fn reject_json(row: &[J]) -> J {
    json!({"line": row.first(), "code": row.get(1), "path": row.get(2), "message": row.get(3)})
}

/// A row of `job`/`jobs` as the API answers it (`rejects` added by the caller); `now` times a running job.
pub fn job_json(row: &[J], now: Millis) -> J {
    let int = |i: usize| row.get(i).and_then(J::as_i64).unwrap_or(0);
    let time = |i: usize| row.get(i).and_then(J::as_i64).map(format_iso8601);
    let declaration: J = row.get(3).and_then(J::as_str).and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    let unknown: J = row.get(4).and_then(J::as_str).and_then(|s| serde_json::from_str(s).ok()).unwrap_or(json!([]));
    let error: J = row.get(11).and_then(J::as_str).and_then(|s| serde_json::from_str(s).ok()).unwrap_or(J::Null);
    let split_rejected = int(7);
    let read = int(14) + split_rejected;
    let started = row.get(9).and_then(J::as_i64);
    let ended = row.get(10).and_then(J::as_i64).unwrap_or(now);
    let seconds = started.map(|s| (ended - s).max(1) as f64 / 1000.0);
    let rate = seconds.map_or(0.0, |s| ((read as f64 / s) * 10.0).round() / 10.0);
    json!({
        "id": row.first(),
        "source": row.get(1),
        "state": row.get(2),
        "format": declaration["format"],
        "kind": declaration["kind"],
        "object": declaration["object"],
        "createdAt": time(8),
        "startedAt": time(9),
        "finishedAt": time(10),
        "bytes": int(5),
        "rows": {"read": read, "applied": int(15), "duplicates": int(16), "refused": int(17), "rejected": int(18) + split_rejected},
        "chunks": {"total": int(6), "done": int(13)},
        "rowsPerSecond": rate,
        "unknownColumns": unknown,
        "duplicateOf": row.get(12),
        "error": error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_row_reads_as_the_api_answers_it() {
        let decl = r#"{"format":"csv","kind":"profiles","object":null}"#;
        let row: Vec<J> = vec![
            json!("imp_1"),
            json!("crm"),
            json!("running"),
            json!(decl),
            json!("[\"notes\"]"),
            json!(1000),
            json!(4),
            json!(2),
            json!(0),
            json!(1_000),
            J::Null,
            J::Null,
            J::Null,
            json!(3),
            json!(98),
            json!(90),
            json!(5),
            json!(1),
            json!(2),
        ];
        let j = job_json(&row, 11_000);
        assert_eq!(j["rows"], json!({"read": 100, "applied": 90, "duplicates": 5, "refused": 1, "rejected": 4}));
        assert_eq!(j["chunks"], json!({"total": 4, "done": 3}));
        assert_eq!(j["rowsPerSecond"], json!(10.0), "100 rows in the 10 s since it started");
        assert_eq!((j["format"].as_str(), j["unknownColumns"][0].as_str()), (Some("csv"), Some("notes")));
    }
}
