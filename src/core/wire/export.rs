//! The export's rows (issue 29), sans I/O: a stored event as the rows Segment's warehouse layout gives it, so that
//! what data teams already query over Segment's tables reads edgecdp's files unchanged.
//!
//! A `track` is a row of `tracks` (the common columns only) and a row of its event's own table (its name in snake
//! case, the properties as columns); `page`, `screen`, `identify`, `group` and `alias` are rows of `pages`,
//! `screens`, `identifies`, `groups` and `aliases`. Properties and traits are flattened into columns with no prefix
//! (`product.sku` is `product_sku`), the page context into `context_page_*`; arrays are kept as their JSON text; a
//! null is no column. A property named like a common column (`user_id`) is dropped, as Segment drops it. Names go
//! through `snake`, which follows the rules Segment's warehouses document (go-snakecase).

use crate::core::base::time::{format_iso8601, Millis};
use crate::core::base::value::Value;
use crate::core::model::audience::Transition;
use crate::core::model::event::{Event, EventKind};
use crate::core::model::identity::Identity;
use serde_json::{Map, Value as J};
use std::collections::BTreeMap;

/// The longest table or column name (Redshift's identifiers; longer names are cut, at a character boundary).
pub const MAX_NAME_BYTES: usize = 127;

/// A name as Segment's warehouses write it: words in lower case joined by one `_`. A word ends at any character
/// that is not an ASCII letter or digit (dropped, non-ASCII letters included) and before an upper-case letter
/// that follows a lower-case letter or a digit, or that starts a word after a run of capitals (`HTTPServer` is
/// `http_server`). A name that would start with a digit gets a leading `_`; one with no letter or digit is empty.
pub fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len());
    let mut in_word = false;
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            in_word = false;
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
        let breaks = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase() || p.is_ascii_digit() || (p.is_ascii_uppercase() && next_lower)
            });
        if !out.is_empty() && (!in_word || breaks) {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        in_word = true;
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out.truncate(MAX_NAME_BYTES);
    out
}

/// One row of one table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub table: String,
    pub columns: Map<String, J>,
}

impl Row {
    /// The row as one line of NDJSON (no line break).
    pub fn to_line(&self) -> String {
        J::Object(self.columns.clone()).to_string()
    }
}

/// The rows an event stored at `received_at` makes: one, or two for a `track` (see the module).
pub fn rows_of(e: &Event, received_at: Millis) -> Vec<Row> {
    let mut common = Map::new();
    common.insert("id".into(), J::from(e.message_id.as_str()));
    if let Some(a) = &e.anonymous_id {
        common.insert("anonymous_id".into(), J::from(a.as_str()));
    }
    if let Some(u) = &e.user_id {
        common.insert("user_id".into(), J::from(u.as_str()));
    }
    common.insert("timestamp".into(), J::from(format_iso8601(e.timestamp)));
    common.insert("received_at".into(), J::from(format_iso8601(received_at)));
    if let Some(page) = &e.page {
        for (name, value) in [("path", &page.path), ("url", &page.url), ("referrer", &page.referrer)] {
            if let Some(v) = value {
                common.insert(format!("context_page_{name}"), J::from(v.as_str()));
            }
        }
    }
    let row = |table: &str, mut columns: Map<String, J>, fields: &BTreeMap<String, Value>| {
        flatten(&mut columns, "", fields);
        Row { table: table.to_string(), columns }
    };
    let with = |pairs: &[(&str, &str)]| {
        let mut c = common.clone();
        for (k, v) in pairs {
            c.insert((*k).into(), J::from(*v));
        }
        c
    };
    match &e.kind {
        EventKind::Track { event, properties } => {
            let table = snake(event);
            let columns = with(&[("event", &table), ("event_text", event)]);
            let own = if table.is_empty() || RESERVED_TABLES.contains(&table.as_str()) {
                Vec::new()
            } else {
                vec![row(&table, columns.clone(), properties)]
            };
            [vec![Row { table: "tracks".into(), columns }], own].concat()
        }
        EventKind::Page { name, properties } => {
            vec![row("pages", with(&[("name", name.as_deref().unwrap_or_default())]), properties)]
        }
        EventKind::Screen { name, properties } => {
            vec![row("screens", with(&[("name", name.as_deref().unwrap_or_default())]), properties)]
        }
        EventKind::Identify { traits } => vec![row("identifies", common.clone(), traits)],
        EventKind::Group { group_id, traits } => vec![row("groups", with(&[("group_id", group_id)]), traits)],
        EventKind::Alias { previous_id } => {
            vec![row("aliases", with(&[("previous_id", previous_id)]), &BTreeMap::new())]
        }
    }
}

/// A row of `audience_changes`: profile `profile_id` entered or left an audience, at the transition's own instant,
/// and why. Its id is the profile's and the transition's sequence number, the same however often it is sent.
pub fn audience_change_row(profile_id: &str, t: &Transition, received_at: Millis) -> Row {
    let mut c = Map::new();
    c.insert("id".into(), J::from(format!("{profile_id}:{}", t.seq)));
    c.insert("profile_id".into(), J::from(profile_id));
    c.insert("audience".into(), J::from(t.audience.as_str()));
    c.insert("change".into(), J::from(if t.entered { "entered" } else { "exited" }));
    c.insert("cause".into(), J::from(t.cause.name()));
    c.insert("timestamp".into(), J::from(format_iso8601(t.at)));
    c.insert("received_at".into(), J::from(format_iso8601(received_at)));
    Row { table: "audience_changes".into(), columns: c }
}

/// What became of an identity: it now leads to a profile (`linked`), moved with a merge (`merged`), or left with
/// a split (`split`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentityChange {
    Linked,
    Merged,
    Split,
}

/// A row of `identities`: `identity` leads to `profile_id` from `at`, by `change`. Its id is a digest of all of
/// that, the same however often it is sent.
pub fn identity_row(identity: &Identity, profile_id: &str, change: IdentityChange, at: Millis) -> Row {
    use sha2::{Digest, Sha256};
    let change = match change {
        IdentityChange::Linked => "linked",
        IdentityChange::Merged => "merged",
        IdentityChange::Split => "split",
    };
    let mut digest = Sha256::new();
    for part in [identity.kind.as_str(), &identity.value, profile_id, change, &at.to_string()] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let mut c = Map::new();
    c.insert("id".into(), J::from(crate::core::base::encoding::hex(&digest.finalize()[..16])));
    c.insert("identity_type".into(), J::from(identity.kind.as_str()));
    c.insert("identity_value".into(), J::from(identity.value.as_str()));
    c.insert("profile_id".into(), J::from(profile_id));
    c.insert("change".into(), J::from(change));
    c.insert("timestamp".into(), J::from(format_iso8601(at)));
    Row { table: "identities".into(), columns: c }
}

/// Where a file of `table`'s rows received in the hour of `at` is kept: Hive partitions (`dt`, `hour`) that
/// DuckDB, ClickHouse, BigQuery and Snowflake read as columns; `name` (the batch's) tells the hour's files apart.
pub fn file_key(table: &str, at: Millis, name: &str) -> String {
    let iso = format_iso8601(at);
    format!("export/{table}/dt={}/hour={}/{name}.json.gz", &iso[..10], &iso[11..13])
}

/// Rows as the files they go in: by table and by the hour each was received in (the key is the table and the
/// hour's first millisecond), each file's NDJSON in the rows' order, not yet compressed.
pub fn files(rows: impl IntoIterator<Item = (Row, Millis)>) -> BTreeMap<(String, Millis), Vec<u8>> {
    const HOUR: Millis = 3_600_000;
    let mut out: BTreeMap<(String, Millis), Vec<u8>> = BTreeMap::new();
    for (row, at) in rows {
        let file = out.entry((row.table.clone(), at.div_euclid(HOUR) * HOUR)).or_default();
        file.extend_from_slice(row.to_line().as_bytes());
        file.push(b'\n');
    }
    out
}

/// Tables of the layout itself, which no event's own table may take the name of.
const RESERVED_TABLES: &[&str] =
    &["tracks", "pages", "screens", "identifies", "groups", "aliases", "users", "identities", "audience_changes"];

/// Adds `fields` (under `prefix`, words already joined) to `columns`, objects flattened with `_`, arrays as their
/// JSON text, nulls left out; a name already taken (a common column, or an earlier field) keeps what it has.
fn flatten(columns: &mut Map<String, J>, prefix: &str, fields: &BTreeMap<String, Value>) {
    for (key, value) in fields {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}_{key}") };
        let column = snake(&path);
        let cell = match value {
            Value::Null => continue,
            Value::Object(inner) => {
                flatten(columns, &path, inner);
                continue;
            }
            Value::Array(_) => J::from(value.to_json().to_string()),
            other => other.to_json(),
        };
        if !column.is_empty() && !columns.contains_key(&column) {
            columns.insert(column, cell);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::event::PageContext;
    use serde_json::json;

    const NOW: Millis = 1_795_344_600_000; // 2026-11-22T10:50:00Z

    /// Names as Segment's warehouses write them, one row each (go-snakecase's own examples first).
    #[test]
    fn names_are_snake_case_as_segment_writes_them() {
        let rows = [
            ("sampleText", "sample_text"),
            ("SAMPLE 2 TEXT", "sample_2_text"),
            ("___$$Base64Encode", "base64_encode"),
            ("something.com", "something_com"),
            ("•¶§ƒ˚foo˙∆˚¬", "foo"),
            ("Order Completed", "order_completed"),
            ("HTTPServer", "http_server"),
            ("product2Id", "product2_id"),
            ("already_snake", "already_snake"),
            ("101 Account Update", "_101_account_update"),
            ("Ünïcode Ñame", "n_code_ame"),
            ("", ""),
            ("$$$", ""),
        ];
        for (name, expected) in rows {
            assert_eq!(snake(name), expected, "{name:?}");
        }
        assert_eq!(snake(&"a".repeat(300)).len(), MAX_NAME_BYTES);
    }

    fn event(kind: EventKind) -> Event {
        let mut e = Event::new("m1".into(), Some("a1".into()), Some("u1".into()), NOW - 5000, kind);
        e.page =
            Some(PageContext { path: Some("/shop".into()), url: None, referrer: Some("https://r.example/".into()) });
        e
    }

    fn props(v: J) -> BTreeMap<String, Value> {
        match Value::from_json(&v) {
            Value::Object(m) => m,
            _ => panic!("an object"),
        }
    }

    /// Each call type, the tables it lands in and every column of each row.
    #[test]
    fn each_call_lands_in_its_tables_with_its_columns() {
        let common = json!({"id": "m1", "anonymous_id": "a1", "user_id": "u1", "timestamp": "2026-11-22T10:49:55.000Z",
            "received_at": "2026-11-22T10:50:00.000Z", "context_page_path": "/shop",
            "context_page_referrer": "https://r.example/"});
        let with = |extra: J| {
            let mut c = common.clone();
            c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            c
        };
        let order = EventKind::Track {
            event: "Order Completed".into(),
            properties: props(json!({"revenue": 30.5, "product": {"sku": "b1", "Unit Price": 3}, "tags": ["a", "b"],
                "user_id": "spoofed", "coupon": null, "first": true})),
        };
        let rows: Vec<(EventKind, Vec<(&str, J)>)> = vec![
            (
                order,
                vec![
                    ("tracks", with(json!({"event": "order_completed", "event_text": "Order Completed"}))),
                    (
                        "order_completed",
                        with(json!({"event": "order_completed", "event_text": "Order Completed", "revenue": 30.5,
                            "product_sku": "b1", "product_unit_price": 3, "tags": "[\"a\",\"b\"]", "first": true})),
                    ),
                ],
            ),
            (
                EventKind::Track { event: "users".into(), properties: BTreeMap::new() },
                vec![("tracks", with(json!({"event": "users", "event_text": "users"})))],
            ),
            (
                EventKind::Page { name: Some("Home".into()), properties: props(json!({"title": "Welcome"})) },
                vec![("pages", with(json!({"name": "Home", "title": "Welcome"})))],
            ),
            (
                EventKind::Screen { name: None, properties: BTreeMap::new() },
                vec![("screens", with(json!({"name": ""})))],
            ),
            (
                EventKind::Identify { traits: props(json!({"email": "ana@x.example", "address": {"city": "Lyon"}})) },
                vec![("identifies", with(json!({"email": "ana@x.example", "address_city": "Lyon"})))],
            ),
            (
                EventKind::Group { group_id: "g1".into(), traits: props(json!({"plan": "gold", "group_id": "no"})) },
                vec![("groups", with(json!({"group_id": "g1", "plan": "gold"})))],
            ),
            (EventKind::Alias { previous_id: "old".into() }, vec![("aliases", with(json!({"previous_id": "old"})))]),
        ];
        for (kind, expected) in rows {
            let name = format!("{kind:?}");
            let got: Vec<(String, J)> =
                rows_of(&event(kind), NOW).into_iter().map(|r| (r.table, J::Object(r.columns))).collect();
            let expected: Vec<(String, J)> = expected.into_iter().map(|(t, c)| (t.to_string(), c)).collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    /// Rows of two tables over two hours make four files, each under its partition, each line a row, and
    /// gzip that inflates back to them.
    #[test]
    fn rows_go_to_one_file_per_table_and_hour() {
        let hour = 3_600_000;
        let at = NOW - NOW % hour; // 10:00
        let track = |id: &str| {
            let mut e = event(EventKind::Track { event: "Signed Up".into(), properties: BTreeMap::new() });
            e.message_id = id.into();
            e
        };
        let rows = [(track("a"), at + 5), (track("b"), at + hour - 1), (track("c"), at + hour)]
            .into_iter()
            .flat_map(|(e, at)| rows_of(&e, at).into_iter().map(move |r| (r, at)));
        let files = files(rows);
        let keys: Vec<String> = files.keys().map(|(t, h)| file_key(t, *h, "b1")).collect();
        assert_eq!(
            keys,
            [
                "export/signed_up/dt=2026-11-22/hour=10/b1.json.gz",
                "export/signed_up/dt=2026-11-22/hour=11/b1.json.gz",
                "export/tracks/dt=2026-11-22/hour=10/b1.json.gz",
                "export/tracks/dt=2026-11-22/hour=11/b1.json.gz",
            ]
        );
        let ids = |bytes: &[u8]| -> Vec<String> {
            let text = std::str::from_utf8(bytes).unwrap();
            text.lines().map(|l| serde_json::from_str::<J>(l).unwrap()["id"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(ids(&files[&("tracks".to_string(), at)]), ["a", "b"]);
        assert_eq!(ids(&files[&("tracks".to_string(), at + hour)]), ["c"]);
        let file = &files[&("signed_up".to_string(), at)];
        let mut inflater = crate::core::wire::inflate::Inflater::new(crate::core::wire::inflate::Coding::Gzip, 1 << 20);
        inflater.push(&crate::core::wire::inflate::gzip(file, 9)).unwrap();
        assert_eq!(&inflater.finish().unwrap(), file);
    }

    #[test]
    fn audience_changes_and_identities_are_rows_with_ids_that_do_not_change() {
        use crate::core::model::audience::Cause;
        let t =
            Transition { audience: "repeat-buyer".into(), entered: true, at: NOW - 1000, cause: Cause::Time, seq: 7 };
        let row = audience_change_row("p1", &t, NOW);
        assert_eq!(row.table, "audience_changes");
        assert_eq!(
            J::Object(row.columns),
            json!({"id": "p1:7", "profile_id": "p1", "audience": "repeat-buyer", "change": "entered", "cause": "time",
                "timestamp": "2026-11-22T10:49:59.000Z", "received_at": "2026-11-22T10:50:00.000Z"})
        );
        let mail = Identity::new("email", "ana@x.example");
        let a = identity_row(&mail, "p1", IdentityChange::Linked, NOW);
        assert_eq!(a, identity_row(&mail, "p1", IdentityChange::Linked, NOW), "the same change, the same row");
        for other in [
            identity_row(&mail, "p2", IdentityChange::Linked, NOW),
            identity_row(&mail, "p1", IdentityChange::Merged, NOW),
            identity_row(&mail, "p1", IdentityChange::Linked, NOW + 1),
        ] {
            assert_ne!(other.columns["id"], a.columns["id"], "{other:?}");
        }
        assert_eq!(
            (&a.table, &a.columns["identity_type"], &a.columns["identity_value"], &a.columns["change"]),
            (&"identities".to_string(), &json!("email"), &json!("ana@x.example"), &json!("linked"))
        );
    }

    #[test]
    fn a_row_is_one_line_of_json() {
        let e = event(EventKind::Alias { previous_id: "line\nbreak".into() });
        let line = rows_of(&e, NOW)[0].to_line();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<J>(&line).unwrap()["previous_id"], "line\nbreak");
    }
}
