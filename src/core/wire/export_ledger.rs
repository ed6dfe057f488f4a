//! The export's ledger in D1 (issue 29), sans I/O: which batch of files each exported message went into, so that
//! a message delivered again (the queue's redelivery, a retried batch) is written into the files exactly once.
//!
//! A consumer's delivery goes: `lookup` the messages; `plan` what to do; delete the files of any batch that was
//! cut off before all its files were written (`Plan::delete`); `begin` the new batch (its name and its files'
//! keys recorded before any file is written); write the files; mark the batch `written`; only then acknowledge.
//! A message whose batch was written is not written again; one whose batch was cut off goes into the new batch
//! after the old batch's files are gone, so that at no moment do two files hold the same row. The batch's name
//! is a digest of the messages it holds, so the same delivery retried writes the same keys.

use crate::core::base::encoding::hex;
use crate::core::base::sort;
use crate::core::base::time::Millis;
use crate::core::wire::audiences::Sql;
pub use crate::core::wire::audiences::Statement;
use serde_json::Value as J;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The tables, created if missing (each statement idempotent).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS export_batches (name TEXT PRIMARY KEY, files TEXT NOT NULL, state TEXT NOT NULL, \
     at INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS export_messages (id TEXT PRIMARY KEY, batch TEXT NOT NULL, at INTEGER NOT NULL \
     DEFAULT 0) WITHOUT ROWID",
    // Each file: its table, partition, rows, size, when written, its batch.
    "CREATE TABLE IF NOT EXISTS export_files (key TEXT PRIMARY KEY, tbl TEXT NOT NULL, dt TEXT NOT NULL, \
     hour TEXT NOT NULL, rows INTEGER NOT NULL, bytes INTEGER NOT NULL, at INTEGER NOT NULL, batch TEXT NOT NULL, \
     oldest INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS export_files_partition ON export_files (tbl, dt, hour)",
    "CREATE INDEX IF NOT EXISTS export_files_at ON export_files (at)",
    // Which files hold each person's rows (`export::person_key`), for the purge.
    "CREATE TABLE IF NOT EXISTS export_people (person TEXT NOT NULL, file TEXT NOT NULL, \
     PRIMARY KEY (person, file)) WITHOUT ROWID",
    // People erased (`export::person_key`): no row of theirs is written; `purged_at` once no file holds one.
    "CREATE TABLE IF NOT EXISTS export_deletions (person TEXT PRIMARY KEY, at INTEGER NOT NULL, purged_at INTEGER) \
     WITHOUT ROWID",
];

/// One file of a batch, as the ledger lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub key: String,
    pub table: String,
    /// Its partition (`YYYY-MM-DD`, `HH`).
    pub dt: String,
    pub hour: String,
    pub rows: u64,
    pub bytes: u64,
    /// When its oldest row was stored (the file's lag is from then to its write).
    pub oldest: Millis,
    /// The people its rows are about (`export::person_key`).
    pub people: Vec<String>,
}

/// What the ledger knows of one message: the batch it went into, whether all that batch's files were written,
/// and their keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    pub batch: String,
    pub written: bool,
    pub files: Vec<String>,
}

/// What a delivery does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Messages already in written files: acknowledged, not written again.
    pub done: Vec<String>,
    /// Files of batches cut off part way, deleted before anything is written.
    pub delete: Vec<String>,
    /// The messages written now (each once, in id order), and the name of their batch.
    pub write: Vec<String>,
    pub name: String,
}

/// The plan for a delivery of `ids`, given what the ledger knows of them (`known_of` the `lookup`'s rows).
pub fn plan(ids: &[String], known: &BTreeMap<String, Known>) -> Plan {
    let mut done = BTreeSet::new();
    let mut delete = BTreeSet::new();
    let mut write = BTreeSet::new();
    for id in ids {
        match known.get(id) {
            Some(k) if k.written => {
                done.insert(id.clone());
            }
            Some(k) => {
                delete.extend(k.files.iter().cloned());
                write.insert(id.clone());
            }
            None => {
                write.insert(id.clone());
            }
        }
    }
    let mut digest = Sha256::new();
    for id in &write {
        digest.update(id.as_bytes());
        digest.update(b"\n");
    }
    let name = hex(&digest.finalize()[..16]);
    Plan {
        done: done.into_iter().collect(),
        delete: delete.into_iter().collect(),
        write: write.into_iter().collect(),
        name,
    }
}

/// What the ledger knows of `ids`: rows of (message id, batch name, batch state, the batch's files as JSON).
pub fn lookup(ids: &[String]) -> Statement {
    Statement {
        sql: "SELECT m.id, b.name, b.state, b.files FROM export_messages m JOIN export_batches b ON b.name = m.batch \
              WHERE m.id IN (SELECT value FROM json_each(?1))",
        params: vec![Sql::Text(J::from(ids.to_vec()).to_string())],
    }
}

/// The `lookup`'s rows as what the ledger knows, by message id (a row without an id is skipped; files that do not
/// read are none).
pub fn known_of(rows: &[Vec<J>]) -> BTreeMap<String, Known> {
    let text = |r: &Vec<J>, i: usize| r.get(i).and_then(J::as_str).unwrap_or_default().to_string();
    sort::map_of(rows.iter().filter(|r| !text(r, 0).is_empty()).map(|r| {
        let files: Vec<String> = serde_json::from_str(&text(r, 3)).unwrap_or_default();
        (text(r, 0), Known { batch: text(r, 1), written: text(r, 2) == "written", files })
    }))
}

/// Before any file of batch `name` is written: the batch with its files' keys, its messages, each file and the
/// people in it (so that an erasure from now on finds the file, and waits for the batch to be written).
pub fn begin(name: &str, files: &[FileEntry], ids: &[String], now: Millis) -> Vec<Statement> {
    let keys: Vec<String> = files.iter().map(|f| f.key.clone()).collect();
    let mut out = begin_batch(name, &keys, ids, now);
    for f in files {
        out.push(Statement {
            sql: "INSERT OR REPLACE INTO export_files (key, tbl, dt, hour, rows, bytes, at, batch, oldest) \
                  VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params: vec![
                Sql::Text(f.key.clone()),
                Sql::Text(f.table.clone()),
                Sql::Text(f.dt.clone()),
                Sql::Text(f.hour.clone()),
                Sql::Int(f.rows as i64),
                Sql::Int(f.bytes as i64),
                Sql::Int(now),
                Sql::Text(name.into()),
                Sql::Int(f.oldest),
            ],
        });
        out.push(Statement {
            sql: "INSERT OR IGNORE INTO export_people (person, file) SELECT value, ?2 FROM json_each(?1)",
            params: vec![Sql::Text(J::from(f.people.clone()).to_string()), Sql::Text(f.key.clone())],
        });
    }
    out
}

fn begin_batch(name: &str, files: &[String], ids: &[String], now: Millis) -> Vec<Statement> {
    vec![
        Statement {
            sql: "INSERT OR REPLACE INTO export_batches (name, files, state, at) VALUES (?1, ?2, 'writing', ?3)",
            params: vec![Sql::Text(name.into()), Sql::Text(J::from(files.to_vec()).to_string()), Sql::Int(now)],
        },
        Statement {
            sql: "INSERT OR REPLACE INTO export_messages (id, batch, at) SELECT value, ?2, ?3 FROM json_each(?1)",
            params: vec![Sql::Text(J::from(ids.to_vec()).to_string()), Sql::Text(name.into()), Sql::Int(now)],
        },
    ]
}

/// Every file of batch `name` is written: its messages are done.
pub fn written(name: &str) -> Statement {
    Statement {
        sql: "UPDATE export_batches SET state = 'written' WHERE name = ?1",
        params: vec![Sql::Text(name.into())],
    }
}

/// Which of `people` were erased (rows of one column, the person).
pub fn erased_among(people: &[String]) -> Statement {
    Statement {
        sql: "SELECT person FROM export_deletions WHERE person IN (SELECT value FROM json_each(?1))",
        params: vec![Sql::Text(J::from(people.to_vec()).to_string())],
    }
}

/// An erasure at `at`: these people are no longer written, and their rows are to be purged.
pub fn record_erasure(people: &[String], at: Millis) -> Statement {
    Statement {
        sql: "INSERT INTO export_deletions (person, at, purged_at) SELECT value, ?2, NULL FROM json_each(?1) \
              WHERE true ON CONFLICT (person) DO UPDATE SET at = excluded.at, purged_at = NULL",
        params: vec![Sql::Text(J::from(people.to_vec()).to_string()), Sql::Int(at)],
    }
}

/// People erased whose rows may still be in files (oldest erasure first, at most `limit`).
pub fn unpurged(limit: i64) -> Statement {
    Statement {
        sql: "SELECT person FROM export_deletions WHERE purged_at IS NULL ORDER BY at LIMIT ?1",
        params: vec![Sql::Int(limit)],
    }
}

/// The files that hold rows of `people`: key, its batch's state, its table, dt and hour, and when its batch began.
pub fn files_of(people: &[String]) -> Statement {
    Statement {
        sql: "SELECT DISTINCT f.key, b.state, f.tbl, f.dt, f.hour, b.at FROM export_people p \
              JOIN export_files f ON f.key = p.file JOIN export_batches b ON b.name = f.batch \
              WHERE p.person IN (SELECT value FROM json_each(?1))",
        params: vec![Sql::Text(J::from(people.to_vec()).to_string())],
    }
}

/// A file rewritten by the purge: what it holds now (a file left with no row is gone).
pub fn rewritten(key: &str, rows: u64, bytes: u64) -> Statement {
    if rows == 0 {
        return Statement { sql: "DELETE FROM export_files WHERE key = ?1", params: vec![Sql::Text(key.into())] };
    }
    Statement {
        sql: "UPDATE export_files SET rows = ?2, bytes = ?3 WHERE key = ?1",
        params: vec![Sql::Text(key.into()), Sql::Int(rows as i64), Sql::Int(bytes as i64)],
    }
}

/// No file holds rows of `people` any more (at `at`): the purge is done, and the index of their files goes.
pub fn purged(people: &[String], at: Millis) -> Vec<Statement> {
    let list = Sql::Text(J::from(people.to_vec()).to_string());
    vec![
        Statement {
            sql: "UPDATE export_deletions SET purged_at = ?2 WHERE person IN (SELECT value FROM json_each(?1))",
            params: vec![list.clone(), Sql::Int(at)],
        },
        Statement {
            sql: "DELETE FROM export_people WHERE person IN (SELECT value FROM json_each(?1))",
            params: vec![list],
        },
    ]
}

/// The files of a partition (key, rows, bytes, at), for its manifest.
pub fn partition(table: &str, dt: &str, hour: &str) -> Statement {
    Statement {
        sql: "SELECT key, rows, bytes, at FROM export_files WHERE tbl = ?1 AND dt = ?2 AND hour = ?3 ORDER BY key",
        params: vec![Sql::Text(table.into()), Sql::Text(dt.into()), Sql::Text(hour.into())],
    }
}

/// A partition's manifest (`manifest.json` beside its files): every file with its rows and size, from the ledger's
/// `partition` rows.
pub fn manifest(table: &str, dt: &str, hour: &str, rows: &[Vec<J>], now: Millis) -> J {
    let files: Vec<J> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "key": r.first().cloned().unwrap_or(J::Null),
                "rows": r.get(1).cloned().unwrap_or(J::Null),
                "bytes": r.get(2).cloned().unwrap_or(J::Null),
                "written_at": crate::core::base::time::format_iso8601(r.get(3).and_then(J::as_i64).unwrap_or(0)),
            })
        })
        .collect();
    let total: u64 = rows.iter().filter_map(|r| r.get(1).and_then(J::as_u64)).sum();
    serde_json::json!({
        "table": table, "dt": dt, "hour": hour, "format": "ndjson", "compression": "gzip",
        "rows": total, "files": files, "updated_at": crate::core::base::time::format_iso8601(now),
    })
}

/// The partitions (table, dt, hour) written to since `since`, whose manifests the cron writes (each minute, not
/// each delivery: R2 takes one write a second per key, and consumers run side by side).
pub fn recent_partitions(since: Millis) -> Statement {
    Statement { sql: "SELECT DISTINCT tbl, dt, hour FROM export_files WHERE at >= ?1", params: vec![Sql::Int(since)] }
}

/// Per table and day: rows, files, bytes and the last write (for the admin route and the console).
pub const SUMMARY: &str = "SELECT tbl, dt, SUM(rows), COUNT(*), SUM(bytes), MAX(at) FROM export_files \
                           GROUP BY tbl, dt ORDER BY tbl, dt";

/// The latest files (key, table, rows, bytes, at, oldest), newest first, optionally of one table, `offset` files
/// in.
pub fn latest(table: Option<&str>, limit: i64, offset: i64) -> Statement {
    Statement {
        sql: "SELECT key, tbl, rows, bytes, at, oldest FROM export_files WHERE (?1 IS NULL OR tbl = ?1) \
              ORDER BY at DESC, key LIMIT ?2 OFFSET ?3",
        params: vec![table.map_or(Sql::Null, |t| Sql::Text(t.into())), Sql::Int(limit), Sql::Int(offset)],
    }
}

/// What the ledger of delivered messages keeps no longer than this: a queue holds a message at most 14 days.
pub const KEEP_MESSAGES_MS: Millis = 15 * 24 * 3_600_000;

/// The ledger forgets messages (and written batches) older than `KEEP_MESSAGES_MS` before `now`.
pub fn prune(now: Millis) -> Vec<Statement> {
    let before = now - KEEP_MESSAGES_MS;
    vec![
        Statement { sql: "DELETE FROM export_messages WHERE at < ?1", params: vec![Sql::Int(before)] },
        Statement {
            sql: "DELETE FROM export_batches WHERE at < ?1 AND state = 'written'",
            params: vec![Sql::Int(before)],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    /// One row per case of a delivery: the ids delivered, what the ledger knows, and (done, deleted, written).
    #[test]
    fn each_message_is_written_once_whatever_was_delivered_before() {
        let written = |batch: &str| Known { batch: batch.into(), written: true, files: vec![format!("f/{batch}")] };
        let cut_off = |batch: &str| Known {
            batch: batch.into(),
            written: false,
            files: vec![format!("f/{batch}/tracks"), format!("f/{batch}/pages")],
        };
        type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, Known)>, (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>));
        let cases: Vec<Case> = vec![
            ("all new: all written", vec!["b", "a"], vec![], (vec![], vec![], vec!["a", "b"])),
            (
                "one already in written files: not again",
                vec!["a", "b"],
                vec![("a", written("n1"))],
                (vec!["a"], vec![], vec!["b"]),
            ),
            (
                "one in a batch cut off: that batch's files go first, then it is written",
                vec!["a", "b"],
                vec![("a", cut_off("n1"))],
                (vec![], vec!["f/n1/pages", "f/n1/tracks"], vec!["a", "b"]),
            ),
            ("the same message twice in one delivery: once", vec!["a", "a"], vec![], (vec![], vec![], vec!["a"])),
            ("everything done: nothing written", vec!["a"], vec![("a", written("n1"))], (vec!["a"], vec![], vec![])),
        ];
        for (name, delivered, known, (done, delete, write)) in cases {
            let known: BTreeMap<String, Known> = known.into_iter().map(|(id, k)| (id.to_string(), k)).collect();
            let p = plan(&ids(&delivered), &known);
            assert_eq!((p.done, p.delete, p.write), (ids(&done), ids(&delete), ids(&write)), "{name}");
        }
    }

    #[test]
    fn a_batch_s_name_is_its_messages_whatever_their_order() {
        let none = BTreeMap::new();
        let a = plan(&ids(&["x", "y", "z"]), &none).name;
        assert_eq!(a, plan(&ids(&["z", "x", "y"]), &none).name);
        assert_ne!(a, plan(&ids(&["x", "y"]), &none).name);
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn the_ledger_s_rows_read_back_as_what_it_knows() {
        let rows = vec![
            vec![json!("a"), json!("n1"), json!("written"), json!("[\"f/1\"]")],
            vec![json!("b"), json!("n2"), json!("writing"), json!("[\"f/2\",\"f/3\"]")],
            vec![json!(null)],
        ];
        let k = known_of(&rows);
        assert_eq!(k.len(), 2);
        assert_eq!(k["a"], Known { batch: "n1".into(), written: true, files: ids(&["f/1"]) });
        assert_eq!(k["b"], Known { batch: "n2".into(), written: false, files: ids(&["f/2", "f/3"]) });
        let p = plan(&ids(&["a", "b", "c"]), &k);
        assert_eq!((&p.done, &p.delete, &p.write), (&ids(&["a"]), &ids(&["f/2", "f/3"]), &ids(&["b", "c"])));
        // What begin records is what lookup reads back.
        let file = FileEntry {
            key: "f/4".into(),
            table: "tracks".into(),
            dt: "2026-12-06".into(),
            hour: "21".into(),
            rows: 2,
            bytes: 90,
            oldest: 1,
            people: ids(&["p1"]),
        };
        let s = begin(&p.name, &[file], &p.write, 5);
        assert_eq!(s.len(), 4, "the batch, its messages, the file and its people");
        assert_eq!(s[0].params[1], Sql::Text("[\"f/4\"]".into()));
        assert_eq!(s[1].params[0], Sql::Text("[\"b\",\"c\"]".into()));
        assert_eq!(lookup(&ids(&["a"])).params, vec![Sql::Text("[\"a\"]".into())]);
    }
}
