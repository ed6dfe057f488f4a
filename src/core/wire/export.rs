//! The export's rows (issue 29), sans I/O: a stored event as the rows Segment's warehouse layout gives it, so that
//! what data teams already query over Segment's tables reads edgecdp's files unchanged.
//!
//! A `track` is a row of `tracks` (the common columns only) and a row of its event's own table (its name in snake
//! case, the properties as columns); `page`, `screen`, `identify`, `group` and `alias` are rows of `pages`,
//! `screens`, `identifies`, `groups` and `aliases`. Properties and traits are flattened into columns with no prefix
//! (`product.sku` is `product_sku`), the page context into `context_page_*`; arrays are kept as their JSON text; a
//! null is no column. A property named like a common column (`user_id`) is dropped, as Segment drops it. Names go
//! through `snake`, which follows the rules Segment's warehouses document (go-snakecase).

use crate::core::base::sort;
use crate::core::base::time::{format_iso8601, Millis};
use crate::core::base::value::Value;
use crate::core::model::audience::Transition;
use crate::core::model::event::{Event, EventKind};
use crate::core::model::identity::{Identity, ANONYMOUS_ID, USER_ID};
use crate::core::model::profile::Profile;
use crate::core::wire::deliveries::{Outcome, Record};
use serde_json::{Map, Value as J};
use std::collections::{BTreeMap, BTreeSet};

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
        serde_json::to_string(&self.columns).unwrap_or_default()
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
    if let Some(sent) = &e.sent {
        for (name, at) in [("sent_at", sent.sent_at), ("original_timestamp", sent.original_timestamp)] {
            if let Some(at) = at {
                common.insert(name.into(), J::from(format_iso8601(at)));
            }
        }
        flatten(&mut common, "context", &sent.context);
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

/// One file's content, before compression: its NDJSON, how many rows, and whom they are about (`Row::people`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileBody {
    pub ndjson: Vec<u8>,
    pub rows: u64,
    pub people: BTreeSet<String>,
    /// When its oldest row was stored.
    pub oldest: Millis,
}

/// The longest key of an export file.
const MAX_KEY_BYTES: usize = 512;

/// Whether `key` has the shape of an export file's key (the OpenAPI pattern): under `export/`, a file or a
/// manifest, only the characters keys are made of.
pub fn has_file_key_shape(key: &str) -> bool {
    key.len() <= MAX_KEY_BYTES
        && key.starts_with("export/")
        && (key.ends_with(".json.gz") || key.ends_with("/manifest.json"))
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_-=.".contains(&b))
}

/// Whether `key` names a file of the export (`file_key`) or a partition's manifest: its shape, and no `.` or `..`
/// segment, no empty one. The file route serves nothing else.
pub fn is_file_key(key: &str) -> bool {
    has_file_key_shape(key) && key.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
}

/// Rows as the files they go in: by table and by the hour each was received in (the key is the table and the
/// hour's first millisecond), each file's NDJSON in the rows' order, not yet compressed.
pub fn files(rows: impl IntoIterator<Item = (Row, Millis)>) -> BTreeMap<(String, Millis), FileBody> {
    const HOUR: Millis = 3_600_000;
    let mut out: BTreeMap<(String, Millis), FileBody> = BTreeMap::new();
    for (row, at) in rows {
        let file = out
            .entry((row.table.clone(), at.div_euclid(HOUR) * HOUR))
            .or_insert_with(|| FileBody { oldest: at, ..FileBody::default() });
        file.oldest = file.oldest.min(at);
        file.ndjson.extend_from_slice(row.to_line().as_bytes());
        file.ndjson.push(b'\n');
        file.rows += 1;
        file.people.extend(row.people());
    }
    out
}

/// A file of `table` without the rows about any of `erased` (`Row::people`): its NDJSON and how many rows it
/// keeps. A line that does not read is kept as it is (the purge removes people, nothing else).
pub fn without(table: &str, ndjson: &[u8], erased: &BTreeSet<String>) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(ndjson.len());
    let mut kept = 0;
    for line in ndjson.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let about_erased = serde_json::from_slice::<Map<String, J>>(line).is_ok_and(|columns| {
            let row = Row { table: table.to_string(), columns };
            row.people().iter().any(|p| erased.contains(p))
        });
        if !about_erased {
            out.extend_from_slice(line);
            out.push(b'\n');
            kept += 1;
        }
    }
    (out, kept)
}

/// A row of `users`: profile `p` as stored at `at`, one row per change (the newest `received_at` of an `id` is
/// the profile now; `merged_into` names the survivor of a profile that was absorbed). Traits are columns as
/// stored (a trait configured as hashed is its digest), beside the main identity and the computed traits.
pub fn user_row(p: &Profile, at: Millis) -> Row {
    let mut c = Map::new();
    c.insert("id".into(), J::from(p.id.as_str()));
    if let Some(u) = p.identities.iter().find(|i| i.kind == USER_ID) {
        c.insert("user_id".into(), J::from(u.value.as_str()));
    }
    if let Some(main) = crate::core::wire::audiences::main_identity(p) {
        c.insert("main_identity_type".into(), J::from(main.kind.as_str()));
        c.insert("main_identity_value".into(), J::from(main.value.as_str()));
    }
    c.insert("first_seen".into(), J::from(format_iso8601(p.first_seen)));
    c.insert("last_seen".into(), J::from(format_iso8601(p.last_seen)));
    c.insert("sessions".into(), J::from(p.computed.sessions));
    c.insert("orders".into(), J::from(p.computed.orders));
    c.insert("revenue".into(), J::from(p.computed.revenue));
    if let Some(t) = p.computed.last_order_at {
        c.insert("last_order_at".into(), J::from(format_iso8601(t)));
    }
    let audiences: Vec<&str> = p.audiences.members.iter().map(|(id, _)| id.as_str()).collect();
    c.insert("audiences".into(), J::from(J::from(audiences).to_string()));
    c.insert("received_at".into(), J::from(format_iso8601(at)));
    let traits: BTreeMap<String, Value> = sort::map_of(p.traits.iter().map(|(k, t)| (k.clone(), t.value.clone())));
    flatten(&mut c, "", &traits);
    Row { table: "users".into(), columns: c }
}

/// A row of `users` for a profile absorbed into `survivor` at `at`: it is that profile from then on.
pub fn absorbed_user_row(absorbed: &str, survivor: &str, at: Millis) -> Row {
    let mut c = Map::new();
    c.insert("id".into(), J::from(absorbed));
    c.insert("merged_into".into(), J::from(survivor));
    c.insert("received_at".into(), J::from(format_iso8601(at)));
    Row { table: "users".into(), columns: c }
}

/// A row of `deliveries`: a journey's send `delivery` to `destination` for `profile_id` ended as `outcome`
/// (`sent`, `retried`, `dead_lettered`, `suppressed`, `deferred`, with its reason and attempt) at `at`. Its id is
/// the delivery's, the outcome's and the attempt's, the same however often it is sent.
pub fn delivery_row(d: &DeliveryOutcome, at: Millis) -> Row {
    let mut c = Map::new();
    c.insert("id".into(), J::from(format!("{}:{}:{}", d.delivery, d.outcome, d.attempts)));
    c.insert("delivery_id".into(), J::from(d.delivery.as_str()));
    c.insert("profile_id".into(), J::from(d.profile_id.as_str()));
    c.insert("journey".into(), J::from(d.journey.as_str()));
    c.insert("step".into(), J::from(d.step.as_str()));
    c.insert("destination".into(), J::from(d.destination.as_str()));
    c.insert("outcome".into(), J::from(d.outcome.as_str()));
    if let Some(status) = d.status {
        c.insert("status".into(), J::from(status));
    }
    if let Some(reason) = &d.reason {
        c.insert("reason".into(), J::from(reason.as_str()));
    }
    c.insert("attempts".into(), J::from(d.attempts));
    c.insert("timestamp".into(), J::from(format_iso8601(at)));
    Row { table: "deliveries".into(), columns: c }
}

/// What a journey's send came to, for `delivery_row`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliveryOutcome {
    pub delivery: String,
    pub profile_id: String,
    pub journey: String,
    pub step: String,
    pub destination: String,
    pub outcome: String,
    pub status: Option<u16>,
    pub reason: Option<String>,
    pub attempts: u32,
}

impl DeliveryOutcome {
    /// The outcome of the send a delivery log `Record` names, after `attempts` attempts.
    pub fn of(rec: &Record, outcome: Outcome, attempts: u32, reason: Option<&str>) -> DeliveryOutcome {
        DeliveryOutcome {
            delivery: rec.id.clone(),
            profile_id: rec.profile.clone().unwrap_or_default(),
            journey: rec.journey.clone().unwrap_or_default(),
            step: rec.step.clone().unwrap_or_default(),
            destination: rec.destination.clone(),
            outcome: outcome.name().to_string(),
            reason: reason.map(String::from),
            attempts,
            status: None,
        }
    }
}

/// A row of `deletions`: what an erasure at `at` removed, as the digests of `person_key` (never the values), so
/// that a warehouse holding copies of the files finds the same rows (`sha256('user_id:' || user_id)`).
pub fn deletion_row(person: &str, at: Millis) -> Row {
    let mut c = Map::new();
    c.insert("id".into(), J::from(person));
    c.insert("person".into(), J::from(person));
    c.insert("timestamp".into(), J::from(format_iso8601(at)));
    Row { table: "deletions".into(), columns: c }
}

/// The digest an erasure lists a person's value by: SHA-256 of `{kind}:{value}`, in hex. `kind` is an identity's
/// type (`user_id`, `anonymous_id`, `email`, ...) or `profile` for a profile's id.
pub fn person_key(kind: &str, value: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::core::base::encoding::hex(&Sha256::digest([kind, ":", value].concat().as_bytes()))
}

impl Row {
    /// The people this row is about (`person_key`s): its ids, its profile, the identity it records. An alias's
    /// previous id may be either kind of id, so it is both.
    pub fn people(&self) -> Vec<String> {
        let text = |k: &str| self.columns.get(k).and_then(J::as_str);
        let mut out = Vec::new();
        let mut add = |kind: &str, column: &str| {
            if let Some(v) = text(column) {
                out.push(person_key(kind, v));
            }
        };
        add(ANONYMOUS_ID, "anonymous_id");
        add(USER_ID, "user_id");
        add("profile", "profile_id");
        add("profile", "merged_into");
        add(ANONYMOUS_ID, "previous_id");
        add(USER_ID, "previous_id");
        if self.table == "users" {
            add("profile", "id");
        }
        if let Some(kind) = text("identity_type") {
            add(kind, "identity_value");
        }
        sort::sort(&mut out);
        out.dedup();
        out
    }
}

/// The largest export message (a queue message holds at most 128 KB), in bytes of JSON.
pub const MAX_MESSAGE_BYTES: usize = 100 * 1024;

/// Rows stored at `at` as the export queue's messages: `{"at":…,"rows":[{"t":table,"r":{columns}}…]}`, each under
/// `MAX_MESSAGE_BYTES` (a row is never split; one alone larger than that is its own message).
pub fn messages(rows: &[Row], at: Millis) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 0;
    for row in rows {
        // Written straight from the row (`json!` would copy every column into a new value first).
        let item = ["{\"t\":", &J::from(row.table.as_str()).to_string(), ",\"r\":", &row.to_line(), "}"].concat();
        if !current.is_empty() && size + item.len() + 1 > MAX_MESSAGE_BYTES {
            out.push(frame(&current, at));
            current.clear();
            size = 0;
        }
        size += item.len() + 1;
        current.push(item);
    }
    if !current.is_empty() {
        out.push(frame(&current, at));
    }
    out
}

fn frame(items: &[String], at: Millis) -> String {
    format!("{{\"at\":{at},\"rows\":[{}]}}", items.join(","))
}

/// An export message's rows and when they were stored (`None`: not a message of `messages`).
pub fn read_message(text: &str) -> Option<(Millis, Vec<Row>)> {
    let v: J = serde_json::from_str(text).ok()?;
    let at = v.get("at")?.as_i64()?;
    let rows = v
        .get("rows")?
        .as_array()?
        .iter()
        .filter_map(|r| {
            let table = r.get("t")?.as_str()?.to_string();
            let columns = r.get("r")?.as_object()?.clone();
            Some(Row { table, columns })
        })
        .collect();
    Some((at, rows))
}

/// Tables of the layout itself, which no event's own table may take the name of.
const RESERVED_TABLES: &[&str] = &[
    "tracks",
    "pages",
    "screens",
    "identifies",
    "groups",
    "aliases",
    "users",
    "identities",
    "audience_changes",
    "deliveries",
    "deletions",
];

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
    fn only_the_export_s_own_files_are_served() {
        let rows = [
            ("export/tracks/dt=2026-12-06/hour=21/0123abcd.json.gz", true),
            ("export/tracks/dt=2026-12-06/hour=21/manifest.json", true),
            ("imports/job/0", false),
            ("export/../imports/job/0.json.gz", false),
            ("export/./tracks/x.json.gz", false),
            ("export//x.json.gz", false),
            ("export/tracks/x.json", false),
            ("export/tracks/%2e%2e/x.json.gz", false),
            ("", false),
        ];
        for (key, ok) in rows {
            assert_eq!(is_file_key(key), ok, "{key}");
        }
        assert!(!is_file_key(&format!("export/{}.json.gz", "a".repeat(600))));
    }

    /// The sender's context is columns, less what must never leave: a credential, the traits in clear, the
    /// identities and consent kept elsewhere. One row per context key.
    #[test]
    fn the_context_is_columns_but_never_a_credential_or_the_traits() {
        let body = r#"{"sentAt":"2026-11-22T10:49:59Z","batch":[{"type":"track","event":"Signed In","userId":"u1",
            "messageId":"m1","timestamp":"2026-11-22T10:49:58Z","context":{"library":{"name":"analytics-node"},
            "campaign":{"source":"news"},"identityToken":"secret.jwt.token","traits":{"email":"a@b.c"},
            "externalIds":[{"id":"c1","type":"crm_id","collection":"users","encoding":"none"}],
            "consent":{"categoryPreferences":{"analytics":true}},"locale":"fr-FR"}}]}"#;
        let parsed = crate::core::wire::events::parse_batch(body.as_bytes(), NOW).unwrap();
        let rows = rows_of(&parsed.events[0], NOW);
        let c = &rows[0].columns;
        let cases = [
            ("context_library_name", Some("analytics-node")),
            ("context_campaign_source", Some("news")),
            ("context_locale", Some("fr-FR")),
            ("sent_at", Some("2026-11-22T10:49:59.000Z")),
            ("original_timestamp", Some("2026-11-22T10:49:58.000Z")),
            ("context_identity_token", None),
            ("context_traits_email", None),
            ("context_external_ids", None),
            ("context_consent_category_preferences_analytics", None),
        ];
        for (column, expected) in cases {
            assert_eq!(c.get(column).and_then(J::as_str), expected, "{column}");
        }
        let line = rows[0].to_line();
        assert!(!line.contains("secret.jwt.token") && !line.contains("a@b.c"), "{line}");
        // Each of the three alone is kept: the sender's time, its sentAt, its context.
        let alone = [
            (r#""timestamp":"2026-11-22T10:49:58Z""#, "original_timestamp"),
            (r#""sentAt":"2026-11-22T10:49:58Z""#, "sent_at"),
            (r#""context":{"locale":"fr-FR"}"#, "context_locale"),
        ];
        for (field, column) in alone {
            let body = format!(r#"{{"batch":[{{"type":"page","userId":"u1","messageId":"m2",{field}}}]}}"#);
            let parsed = crate::core::wire::events::parse_batch(body.as_bytes(), NOW).unwrap();
            assert!(rows_of(&parsed.events[0], NOW)[0].columns.contains_key(column), "{column} alone");
        }
    }

    /// Whom a row is about, one row per kind of row: each id it holds, by its kind, and nothing else.
    #[test]
    fn a_row_is_about_the_people_it_names() {
        let row = |table: &str, v: J| Row { table: table.into(), columns: v.as_object().unwrap().clone() };
        let cases = [
            (
                "a call by both ids",
                row("tracks", json!({"id": "m1", "anonymous_id": "a1", "user_id": "u1"})),
                vec![person_key(ANONYMOUS_ID, "a1"), person_key(USER_ID, "u1")],
            ),
            (
                "a users row is its profile",
                row("users", json!({"id": "p1", "user_id": "u1"})),
                vec![person_key("profile", "p1"), person_key(USER_ID, "u1")],
            ),
            (
                "an absorbed profile is about both",
                row("users", json!({"id": "p2", "merged_into": "p1"})),
                vec![person_key("profile", "p1"), person_key("profile", "p2")],
            ),
            (
                "an identity by its own kind",
                row(
                    "identities",
                    json!({"id": "x", "identity_type": "email",
                "identity_value": "sha256:ab", "profile_id": "p1"}),
                ),
                vec![person_key("email", "sha256:ab"), person_key("profile", "p1")],
            ),
            (
                "an alias's previous id is either kind",
                row(
                    "aliases",
                    json!({"id": "m2", "user_id": "u1",
                "previous_id": "a1"}),
                ),
                vec![person_key(ANONYMOUS_ID, "a1"), person_key(USER_ID, "a1"), person_key(USER_ID, "u1")],
            ),
            ("a row of another table's id is not a profile", row("tracks", json!({"id": "p1"})), vec![]),
            ("a deletion names nobody", row("deletions", json!({"id": "d", "person": "abc"})), vec![]),
            (
                "an id's kind matters",
                row("tracks", json!({"id": "m3", "anonymous_id": "u1"})),
                vec![person_key(ANONYMOUS_ID, "u1")],
            ),
        ];
        for (name, r, mut expected) in cases {
            sort::sort(&mut expected);
            assert_eq!(r.people(), expected, "{name}");
        }
        assert_eq!(
            person_key("user_id", "u1"),
            crate::core::base::encoding::hex(&{
                use sha2::{Digest, Sha256};
                Sha256::digest(b"user_id:u1")
            }),
            "a warehouse finds it with sha256('user_id:' || user_id)"
        );
    }

    /// The purge's rewrite: rows about anyone erased go, every other line stays as it was, in order.
    #[test]
    fn a_file_without_the_erased_keeps_everything_else() {
        let erased: BTreeSet<String> = [person_key(USER_ID, "u1"), person_key("profile", "p9")].into();
        let file = concat!(
            "{\"id\":\"1\",\"user_id\":\"u1\"}\n",
            "{\"id\":\"2\",\"user_id\":\"u2\"}\n",
            "{\"id\":\"3\",\"anonymous_id\":\"u1\"}\n",
            "not json\n",
            "\n",
            "{\"id\":\"p9\"}\n",
        );
        let (kept, n) = without("users", file.as_bytes(), &erased);
        assert_eq!(
            String::from_utf8(kept).unwrap(),
            "{\"id\":\"2\",\"user_id\":\"u2\"}\n{\"id\":\"3\",\"anonymous_id\":\"u1\"}\nnot json\n"
        );
        assert_eq!(n, 3);
        let (kept, n) = without("tracks", b"{\"id\":\"p9\"}\n", &erased);
        assert_eq!((kept.len(), n), (12, 1), "in another table an id is not a profile");
        let (kept, n) = without("tracks", b"{\"id\":\"1\",\"user_id\":\"u1\"}", &erased);
        assert_eq!((kept.len(), n), (0, 0), "a last line without its end goes too");
    }

    /// Messages keep every row, each under the queue's limit, and read back as sent.
    #[test]
    fn messages_split_under_the_queue_s_limit_and_read_back() {
        let big = "x".repeat(30 * 1024);
        let rows: Vec<Row> = (0..10)
            .map(|i| Row {
                table: "tracks".into(),
                columns: json!({"id": i.to_string(), "p": big}).as_object().unwrap().clone(),
            })
            .collect();
        let ms = messages(&rows, NOW);
        assert!(ms.len() >= 3 && ms.iter().all(|m| m.len() <= MAX_MESSAGE_BYTES), "{}", ms.len());
        let back: Vec<Row> = ms
            .iter()
            .flat_map(|m| {
                let (at, rs) = read_message(m).unwrap();
                assert_eq!(at, NOW);
                rs
            })
            .collect();
        assert_eq!(back, rows);
        assert_eq!(read_message("{\"rows\":[]}"), None);
        assert!(messages(&[], NOW).is_empty());
    }

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
        assert_eq!(ids(&files[&("tracks".to_string(), at)].ndjson), ["a", "b"]);
        assert_eq!(files[&("tracks".to_string(), at)].rows, 2);
        assert_eq!(files[&("tracks".to_string(), at)].oldest, at + 5, "a file's lag counts from its oldest row");
        assert_eq!(ids(&files[&("tracks".to_string(), at + hour)].ndjson), ["c"]);
        let file = &files[&("signed_up".to_string(), at)].ndjson;
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
