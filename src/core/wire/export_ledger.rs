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
    "CREATE TABLE IF NOT EXISTS export_messages (id TEXT PRIMARY KEY, batch TEXT NOT NULL) WITHOUT ROWID",
];

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
    rows.iter()
        .filter(|r| !text(r, 0).is_empty())
        .map(|r| {
            let files: Vec<String> = serde_json::from_str(&text(r, 3)).unwrap_or_default();
            (text(r, 0), Known { batch: text(r, 1), written: text(r, 2) == "written", files })
        })
        .collect()
}

/// Before any file of batch `name` is written: the batch with its files' keys, and its messages.
pub fn begin(name: &str, files: &[String], ids: &[String], now: Millis) -> Vec<Statement> {
    vec![
        Statement {
            sql: "INSERT OR REPLACE INTO export_batches (name, files, state, at) VALUES (?1, ?2, 'writing', ?3)",
            params: vec![Sql::Text(name.into()), Sql::Text(J::from(files.to_vec()).to_string()), Sql::Int(now)],
        },
        Statement {
            sql: "INSERT OR REPLACE INTO export_messages (id, batch) SELECT value, ?2 FROM json_each(?1)",
            params: vec![Sql::Text(J::from(ids.to_vec()).to_string()), Sql::Text(name.into())],
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
        let s = begin(&p.name, &ids(&["f/4"]), &p.write, 5);
        assert_eq!(s[0].params[1], Sql::Text("[\"f/4\"]".into()));
        assert_eq!(s[1].params[0], Sql::Text("[\"b\",\"c\"]".into()));
        assert_eq!(lookup(&ids(&["a"])).params, vec![Sql::Text("[\"a\"]".into())]);
    }
}
