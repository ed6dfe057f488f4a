//! The audience outlet's messages and the membership index they keep, sans I/O.
//!
//! A profile's writer hands every transition (`model::audience::Transition`) to a Cloudflare Queue once the
//! profile is stored; its consumer writes the membership index in D1 with the statements `statements` plans. The
//! index stays right under retries and reordering: a transition is counted once (its key is the profile and
//! its sequence number), a membership only moves forward in the profile's sequence, and a profile removed from
//! the index (absorbed by a merge, erased) is not brought back by an older message that arrives late. An erasure
//! runs these statements at once, from the profile's object, before it answers; merges go through the queue.
//!
//! Each transition also travels as a Segment Engage audience event (`audience_event`: a track call named
//! `Audience Entered` or `Audience Exited`, with `properties.audience_key` and `context.personas`), which the
//! index keeps beside it for what acts on audiences.

use crate::core::base::time::{format_iso8601, Millis, DAY};
use crate::core::model::audience::{Cause, Transition};
use crate::core::model::identity::{hash_identifier, Identity, ANONYMOUS_ID, USER_ID};
use crate::core::model::profile::Profile;
use serde_json::{json, Value as J};

/// The largest integer a JavaScript number (what D1 binds) holds exactly.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// How the index remembers a removed profile: by the SHA-256 of its id, never the id itself, so that nothing
/// left after an erasure names the erased profile.
pub fn removal_key(profile_id: &str) -> String {
    hash_identifier("profile_id", profile_id)
}

/// How long the index remembers that a profile was removed, against messages older than the removal.
pub const REMOVED_KEPT_MS: Millis = 7 * DAY;

/// What a profile's writer sends to the index.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexMessage {
    /// Transitions of one profile (possibly none: the member's main identity changed), with its main identity.
    Transitions { profile_id: String, identity: Option<Identity>, transitions: Vec<Transition> },
    /// Profiles that left every audience with their profile: absorbed by a merge, or erased (whose recorded
    /// transitions go too).
    Removed { profile_ids: Vec<String>, erased: bool, at: Millis },
}

/// The identity a member is listed by: its user id, else its first other identity (an anonymous id last).
pub fn main_identity(profile: &Profile) -> Option<Identity> {
    let ids = &profile.identities;
    ids.iter()
        .find(|i| i.kind == USER_ID)
        .or_else(|| ids.iter().find(|i| i.kind != ANONYMOUS_ID))
        .or_else(|| ids.first())
        .cloned()
}

/// The Segment Engage event of a transition.
pub fn audience_event(profile: &Profile, t: &Transition) -> J {
    let mut e = json!({
        "type": "track",
        "event": if t.entered { "Audience Entered" } else { "Audience Exited" },
        "messageId": format!("audience-{}-{}", profile.id, t.seq),
        "timestamp": format_iso8601(t.at),
        "properties": {"audience_key": t.audience, t.audience.clone(): t.entered},
        "context": {
            "personas": {"computation_class": "audience", "computation_key": t.audience, "computation_id": t.audience},
            "edgecdp": {"profileId": profile.id, "cause": t.cause.name(), "seq": t.seq},
        },
    });
    for (kind, field) in [(USER_ID, "userId"), (ANONYMOUS_ID, "anonymousId")] {
        if let Some(i) = profile.identities.iter().find(|i| i.kind == kind) {
            e[field] = i.value.clone().into();
        }
    }
    e
}

impl IndexMessage {
    /// The message's JSON (what goes on the queue). Transitions carry their Segment events.
    pub fn transitions_json(profile: &Profile, transitions: &[Transition]) -> J {
        json!({
            "kind": "transitions",
            "profileId": profile.id,
            "identity": main_identity(profile).map(|i| json!({"type": i.kind, "value": i.value})),
            "transitions": transitions.iter().map(|t| {
                let mut j = t.to_json();
                j["atMs"] = t.at.into();
                j["event"] = audience_event(profile, t);
                j
            }).collect::<Vec<_>>(),
        })
    }

    pub fn removed_json(profile_ids: &[String], erased: bool, at: Millis) -> J {
        json!({"kind": "removed", "profileIds": profile_ids, "erased": erased, "atMs": at})
    }
}

/// A message read back, with the Segment event of each transition (as text) beside it; an error names the path
/// of what is wrong (a message this build did not write: the consumer drops it rather than retry it forever).
pub fn decode(m: &J) -> Result<(IndexMessage, Vec<String>), String> {
    let text =
        |v: &J, path: &str| v.as_str().map(str::to_string).ok_or_else(|| format!("{path}: a string is required"));
    let int = |v: &J, path: &str| v.as_i64().ok_or_else(|| format!("{path}: an integer is required"));
    match m.get("kind").and_then(J::as_str) {
        Some("transitions") => {
            let profile_id = text(&m["profileId"], "profileId")?;
            let identity = match &m["identity"] {
                J::Null => None,
                i => Some(Identity::new(&text(&i["type"], "identity.type")?, &text(&i["value"], "identity.value")?)),
            };
            let mut transitions = Vec::new();
            let mut events = Vec::new();
            for (n, t) in m["transitions"].as_array().ok_or("transitions: a list is required")?.iter().enumerate() {
                let p = |f: &str| format!("transitions[{n}].{f}");
                let cause = match t["cause"].as_str() {
                    Some("event") => Cause::Event,
                    Some("merge") => Cause::Merge,
                    Some("split") => Cause::Split,
                    Some("time") => Cause::Time,
                    Some("configuration") => Cause::Configuration,
                    _ => return Err(format!("{}: unknown cause", p("cause"))),
                };
                transitions.push(Transition {
                    audience: text(&t["audience"], &p("audience"))?,
                    entered: match t["type"].as_str() {
                        Some("entered") => true,
                        Some("exited") => false,
                        _ => return Err(format!("{}: entered or exited", p("type"))),
                    },
                    at: int(&t["atMs"], &p("atMs"))?,
                    cause,
                    seq: int(&t["seq"], &p("seq"))?.max(0) as u64,
                });
                events.push(t["event"].to_string());
            }
            Ok((IndexMessage::Transitions { profile_id, identity, transitions }, events))
        }
        Some("removed") => {
            let ids = m["profileIds"].as_array().ok_or("profileIds: a list is required")?;
            let profile_ids =
                ids.iter().enumerate().map(|(i, v)| text(v, &format!("profileIds[{i}]"))).collect::<Result<_, _>>()?;
            Ok((
                IndexMessage::Removed {
                    profile_ids,
                    erased: m["erased"].as_bool() == Some(true),
                    at: int(&m["atMs"], "atMs")?,
                },
                Vec::new(),
            ))
        }
        _ => Err("kind: transitions or removed".into()),
    }
}

/// Profiles listed by one step of a re-evaluation pass (KV lists at most 1,000 keys at a time).
pub const SWEEP_LIST: u64 = 1000;
/// Profiles re-evaluated by one message of a pass: each listing step fans out into messages of this many, which
/// the queue's consumers take in parallel, so a pass is as fast as the listing, not as the profiles one by one.
pub const SWEEP_CHUNK: usize = 100;

/// A message of the pass that re-evaluates every profile under new audience definitions, for configuration
/// `version` (a newer version's pass supersedes it): a listing step (where the listing of profiles continues)
/// or a chunk of profiles to re-evaluate.
#[derive(Clone, Debug, PartialEq)]
pub enum Sweep {
    List { version: u64, cursor: Option<String> },
    Profiles { version: u64, profile_ids: Vec<String> },
}

impl Sweep {
    pub fn version(&self) -> u64 {
        match self {
            Sweep::List { version, .. } | Sweep::Profiles { version, .. } => *version,
        }
    }

    pub fn to_json(&self) -> J {
        match self {
            Sweep::List { version, cursor } => json!({"kind": "sweep", "version": version, "cursor": cursor}),
            Sweep::Profiles { version, profile_ids } => {
                json!({"kind": "reevaluate", "version": version, "profileIds": profile_ids})
            }
        }
    }

    /// The pass message a message holds, when it is one (`None`: another kind of message).
    pub fn of(m: &J) -> Option<Result<Sweep, String>> {
        let kind = m.get("kind").and_then(J::as_str);
        if kind != Some("sweep") && kind != Some("reevaluate") {
            return None;
        }
        Some((|| {
            let version = m["version"].as_u64().ok_or("version: an integer is required")?;
            if kind == Some("reevaluate") {
                let ids = m["profileIds"].as_array().ok_or("profileIds: a list is required")?;
                let profile_ids = ids
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v.as_str().map(String::from).ok_or(format!("profileIds[{i}]: a string is required")))
                    .collect::<Result<_, _>>()?;
                return Ok(Sweep::Profiles { version, profile_ids });
            }
            let cursor = match &m["cursor"] {
                J::Null => None,
                J::String(c) => Some(c.clone()),
                _ => return Err("cursor: a string or null is required".to_string()),
            };
            Ok(Sweep::List { version, cursor })
        })())
    }
}

/// A value bound to a statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Sql {
    Text(String),
    Int(i64),
    Null,
}

/// One SQL statement with its parameters (`?1`, `?2`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub sql: &'static str,
    pub params: Vec<Sql>,
}

/// The index's tables, created if missing (each statement idempotent).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audience_members (audience TEXT NOT NULL, profile_id TEXT NOT NULL, \
     member INTEGER NOT NULL, since INTEGER NOT NULL, seq INTEGER NOT NULL, identity_type TEXT, identity_value TEXT, \
     PRIMARY KEY (audience, profile_id)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS audience_members_by_profile ON audience_members (profile_id)",
    "CREATE TABLE IF NOT EXISTS audience_transitions (profile_id TEXT NOT NULL, seq INTEGER NOT NULL, \
     audience TEXT NOT NULL, entered INTEGER NOT NULL, at INTEGER NOT NULL, cause TEXT NOT NULL, event TEXT NOT NULL, \
     PRIMARY KEY (profile_id, seq)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS audience_transitions_by_audience ON audience_transitions (audience, at)",
    "CREATE TABLE IF NOT EXISTS audience_removals (profile_hash TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID",
];

const RECORD_TRANSITION: &str = "INSERT OR IGNORE INTO audience_transitions \
    (profile_id, seq, audience, entered, at, cause, event) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
    WHERE NOT EXISTS (SELECT 1 FROM audience_removals WHERE profile_hash = ?8 AND at >= ?5)";
const MOVE_MEMBER: &str = "INSERT INTO audience_members \
    (audience, profile_id, member, since, seq, identity_type, identity_value) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 \
    WHERE NOT EXISTS (SELECT 1 FROM audience_removals WHERE profile_hash = ?8 AND at >= ?4) \
    ON CONFLICT (audience, profile_id) DO UPDATE SET member = excluded.member, since = excluded.since, \
    seq = excluded.seq, identity_type = excluded.identity_type, identity_value = excluded.identity_value \
    WHERE excluded.seq > audience_members.seq";
const RELABEL_MEMBER: &str =
    "UPDATE audience_members SET identity_type = ?2, identity_value = ?3 WHERE profile_id = ?1 AND seq <= ?4";
const NOTE_REMOVED: &str = "INSERT INTO audience_removals (profile_hash, at) VALUES (?1, ?2) \
    ON CONFLICT (profile_hash) DO UPDATE SET at = max(audience_removals.at, excluded.at)";
const DROP_MEMBERSHIPS: &str = "DELETE FROM audience_members WHERE profile_id = ?1";
const DROP_TRANSITIONS: &str = "DELETE FROM audience_transitions WHERE profile_id = ?1";
const FORGET_OLD_REMOVALS: &str = "DELETE FROM audience_removals WHERE at < ?1";

/// The statements that apply a message to the index, to run as one batch (one transaction in D1).
pub fn statements(message: &IndexMessage, events: &[String]) -> Vec<Statement> {
    let mut out = Vec::new();
    match message {
        IndexMessage::Transitions { profile_id, identity, transitions } => {
            let (kind, value) = match identity {
                Some(i) => (Sql::Text(i.kind.clone()), Sql::Text(i.value.clone())),
                None => (Sql::Null, Sql::Null),
            };
            for (i, t) in transitions.iter().enumerate() {
                out.push(Statement {
                    sql: RECORD_TRANSITION,
                    params: vec![
                        Sql::Text(profile_id.clone()),
                        Sql::Int(t.seq as i64),
                        Sql::Text(t.audience.clone()),
                        Sql::Int(i64::from(t.entered)),
                        Sql::Int(t.at),
                        Sql::Text(t.cause.name().into()),
                        Sql::Text(events.get(i).cloned().unwrap_or_else(|| "null".into())),
                        Sql::Text(removal_key(profile_id)),
                    ],
                });
                out.push(Statement {
                    sql: MOVE_MEMBER,
                    params: vec![
                        Sql::Text(t.audience.clone()),
                        Sql::Text(profile_id.clone()),
                        Sql::Int(i64::from(t.entered)),
                        Sql::Int(t.at),
                        Sql::Int(t.seq as i64),
                        kind.clone(),
                        value.clone(),
                        Sql::Text(removal_key(profile_id)),
                    ],
                });
            }
            // The member's main identity as of this message, on the memberships no later message has moved.
            // (Without transitions, every membership: the largest integer a JavaScript number holds exactly.)
            let upto = transitions.iter().map(|t| t.seq).max().unwrap_or(MAX_SAFE_INTEGER);
            out.push(Statement {
                sql: RELABEL_MEMBER,
                params: vec![Sql::Text(profile_id.clone()), kind, value, Sql::Int(upto as i64)],
            });
        }
        IndexMessage::Removed { profile_ids, erased, at } => {
            for id in profile_ids {
                out.push(Statement { sql: NOTE_REMOVED, params: vec![Sql::Text(removal_key(id)), Sql::Int(*at)] });
                out.push(Statement { sql: DROP_MEMBERSHIPS, params: vec![Sql::Text(id.clone())] });
                if *erased {
                    out.push(Statement { sql: DROP_TRANSITIONS, params: vec![Sql::Text(id.clone())] });
                }
            }
            out.push(Statement { sql: FORGET_OLD_REMOVALS, params: vec![Sql::Int(at - REMOVED_KEPT_MS)] });
        }
    }
    out
}

/// The audiences' sizes: `(audience, members)`.
pub const SIZES: &str = "SELECT audience, COUNT(*) FROM audience_members WHERE member = 1 GROUP BY audience";
/// Entries and exits since `?1` (24 hours ago) and `?2` (7 days ago): `(audience, entered 24 h, exited 24 h,
/// entered 7 d, exited 7 d)`.
pub const MOVEMENTS: &str = "SELECT audience, SUM(entered = 1 AND at >= ?1), SUM(entered = 0 AND at >= ?1), \
    SUM(entered = 1), SUM(entered = 0) FROM audience_transitions WHERE at >= ?2 GROUP BY audience";
/// Entries and exits of one audience (`?1`) per UTC day since `?2`: `(day number since the epoch, entered, exited)`.
pub const DAILY: &str = "SELECT at / 86400000 AS day, SUM(entered = 1), SUM(entered = 0) FROM audience_transitions \
    WHERE audience = ?1 AND at >= ?2 GROUP BY day ORDER BY day";

/// One day of an audience's history: entries, exits, and its size at the day's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Day {
    pub day: i64,
    pub entered: i64,
    pub exited: i64,
    pub size: i64,
}

/// The last `days` days (UTC, `today` included) of an audience from its daily movements (`DAILY`) and its size
/// now: each day's size at its end is worked back from today's (a removed profile's transitions go with it, so the
/// sizes before a removal read one lower than they were).
pub fn history(daily: &[(i64, i64, i64)], size_now: i64, today: i64, days: i64) -> Vec<Day> {
    let mut out = Vec::new();
    let mut size = size_now;
    for day in (today - days + 1..=today).rev() {
        let (entered, exited) = daily.iter().find(|d| d.0 == day).map_or((0, 0), |d| (d.1, d.2));
        out.push(Day { day, entered, exited, size: size.max(0) });
        size = size - entered + exited;
    }
    out.reverse();
    out
}

/// A page of members after the cursor `?2` (a profile id; '' for the first page), at most `?3`.
pub const MEMBERS_PAGE: &str = "SELECT profile_id, identity_type, identity_value, since FROM audience_members \
    WHERE audience = ?1 AND member = 1 AND profile_id > ?2 ORDER BY profile_id LIMIT ?3";

/// A CSV field: quoted when it must be, and a leading `=`, `+`, `-`, `@` (or tab, carriage return) neutralized
/// with a `'` so that a spreadsheet never runs an identity as a formula.
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        let mut p = Profile::new("p1".into(), 0);
        p.identities = vec![Identity::new(ANONYMOUS_ID, "a1"), Identity::new(USER_ID, "u1")];
        p
    }

    #[test]
    fn a_message_reads_back_as_written_with_its_segment_events() {
        let p = profile();
        let t = Transition { audience: "vip".into(), entered: true, at: 1_000, cause: Cause::Time, seq: 7 };
        let (m, events) = decode(&IndexMessage::transitions_json(&p, std::slice::from_ref(&t))).unwrap();
        assert_eq!(
            m,
            IndexMessage::Transitions {
                profile_id: "p1".into(),
                identity: Some(Identity::new(USER_ID, "u1")),
                transitions: vec![t]
            }
        );
        let e: J = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(e["event"], "Audience Entered");
        assert_eq!(e["properties"], json!({"audience_key": "vip", "vip": true}));
        assert_eq!((e["userId"].as_str(), e["anonymousId"].as_str()), (Some("u1"), Some("a1")));
        assert_eq!(e["context"]["personas"]["computation_class"], "audience");
        assert_eq!(e["messageId"], "audience-p1-7", "one id per transition: destinations can deduplicate");
    }

    #[test]
    fn an_audience_s_history_works_its_sizes_back_from_today() {
        // Today (day 10): 2 in, 1 out, 5 members now; day 9: nothing; day 8: 3 in.
        let h = history(&[(8, 3, 0), (10, 2, 1)], 5, 10, 4);
        let sizes: Vec<(i64, i64, i64, i64)> = h.iter().map(|d| (d.day, d.entered, d.exited, d.size)).collect();
        assert_eq!(sizes, vec![(7, 0, 0, 1), (8, 3, 0, 4), (9, 0, 0, 4), (10, 2, 1, 5)]);
    }

    #[test]
    fn a_bad_message_names_its_path() {
        let m = json!({"kind": "transitions", "profileId": "p", "identity": null,
            "transitions": [{"audience": "a", "type": "entered", "atMs": 1, "cause": "bogus", "seq": 1}]});
        assert_eq!(decode(&m).unwrap_err(), "transitions[0].cause: unknown cause");
        assert_eq!(decode(&json!({"kind": "x"})).unwrap_err(), "kind: transitions or removed");
    }

    #[test]
    fn an_erasure_drops_memberships_and_transitions_and_a_merge_only_memberships() {
        let erased = statements(&IndexMessage::Removed { profile_ids: vec!["p".into()], erased: true, at: 10 }, &[]);
        assert!(erased.iter().any(|s| s.sql == DROP_TRANSITIONS) && erased.iter().any(|s| s.sql == DROP_MEMBERSHIPS));
        let merged = statements(&IndexMessage::Removed { profile_ids: vec!["p".into()], erased: false, at: 10 }, &[]);
        assert!(!merged.iter().any(|s| s.sql == DROP_TRANSITIONS) && merged.iter().any(|s| s.sql == DROP_MEMBERSHIPS));
    }

    #[test]
    fn a_sweep_step_reads_back_and_other_messages_are_not_steps() {
        let step = Sweep::List { version: 3, cursor: Some("c1".into()) };
        assert_eq!(Sweep::of(&step.to_json()), Some(Ok(step)));
        let chunk = Sweep::Profiles { version: 3, profile_ids: vec!["p1".into(), "p2".into()] };
        assert_eq!(Sweep::of(&chunk.to_json()), Some(Ok(chunk)));
        assert_eq!(
            Sweep::of(&json!({"kind": "sweep", "version": "x"})),
            Some(Err("version: an integer is required".into()))
        );
        assert_eq!(Sweep::of(&json!({"kind": "removed"})), None);
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
    }
}
