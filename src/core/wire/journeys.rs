//! The journey index, sans I/O: where each person stands in each journey and why instances ended, kept in D1 for
//! the statistics no single profile holds (instances per step, exits by reason).
//!
//! A profile's writer publishes its journeys' state (`JourneyState`) through the index queue once the profile is
//! stored, whenever they changed; the consumer writes it with `statements`, which stay right under redelivery and
//! reordering: the running instances of a profile are replaced only by a message of a newer `version`, an ended
//! instance is recorded once (its key is the profile, journey, entry key, instant and reason), and a profile the
//! audience index marked removed (`audiences::removal_key`) is not written back by a message that arrives late.

use crate::core::base::time::Millis;
use crate::core::model::journey::Journeys;
use crate::core::wire::audiences::{removal_key, Sql, Statement};
use serde_json::{json, Value as J};

/// One profile's journeys as the index keeps them.
#[derive(Clone, Debug, PartialEq)]
pub struct JourneyState {
    pub profile_id: String,
    /// When the profile's writer published it (its writes are serialized, so this grows with each state): a newer
    /// state replaces an older one, never the reverse.
    pub version: u64,
    /// Running instances: journey, step, since.
    pub running: Vec<(String, String, Millis)>,
    /// Ended instances the profile still remembers: journey, key, step, reason, at.
    pub ended: Vec<(String, String, String, String, Millis)>,
}

impl JourneyState {
    pub fn of_profile(profile_id: &str, j: &Journeys, now: Millis) -> JourneyState {
        JourneyState {
            profile_id: profile_id.to_string(),
            version: now.max(0) as u64,
            running: j.instances.iter().map(|i| (i.journey.clone(), i.step.clone(), i.since)).collect(),
            ended: j
                .ended
                .iter()
                .map(|e| (e.journey.clone(), e.key.clone(), e.step.clone(), e.reason.clone(), e.at))
                .collect(),
        }
    }

    pub fn to_json(&self) -> J {
        json!({
            "kind": "journeys",
            "profileId": self.profile_id,
            "version": self.version,
            "running": self.running.iter().map(|(j, s, t)| json!([j, s, t])).collect::<Vec<_>>(),
            "ended": self.ended.iter().map(|(j, k, s, r, t)| json!([j, k, s, r, t])).collect::<Vec<_>>(),
        })
    }

    /// The message if it is a journey state (`None`: another kind of index message); an error names what is wrong.
    pub fn of(m: &J) -> Option<Result<JourneyState, String>> {
        (m.get("kind").and_then(J::as_str) == Some("journeys")).then(|| {
            let text = |v: &J, what: &str| v.as_str().map(String::from).ok_or(format!("{what}: expected a string"));
            let int = |v: &J, what: &str| v.as_i64().ok_or(format!("{what}: expected a whole number"));
            let list = |k: &str| m.get(k).and_then(J::as_array).ok_or(format!("{k}: expected an array"));
            let mut running = Vec::new();
            for (i, r) in list("running")?.iter().enumerate() {
                let p = format!("running[{i}]");
                running.push((text(&r[0], &p)?, text(&r[1], &p)?, int(&r[2], &p)?));
            }
            let mut ended = Vec::new();
            for (i, e) in list("ended")?.iter().enumerate() {
                let p = format!("ended[{i}]");
                ended.push((text(&e[0], &p)?, text(&e[1], &p)?, text(&e[2], &p)?, text(&e[3], &p)?, int(&e[4], &p)?));
            }
            Ok(JourneyState {
                profile_id: text(&m["profileId"], "profileId")?,
                version: m["version"].as_u64().ok_or("version: expected a whole number")?,
                running,
                ended,
            })
        })
    }
}

/// The index's tables, created if missing.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS journey_profiles (profile_id TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS journey_running (profile_id TEXT NOT NULL, n INTEGER NOT NULL, journey TEXT NOT NULL, \
     step TEXT NOT NULL, since INTEGER NOT NULL, PRIMARY KEY (profile_id, n)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS journey_running_by_step ON journey_running (journey, step)",
    "CREATE TABLE IF NOT EXISTS journey_ended (profile_id TEXT NOT NULL, journey TEXT NOT NULL, entry_key TEXT NOT NULL, \
     step TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL, \
     PRIMARY KEY (profile_id, journey, entry_key, at, reason)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS journey_ended_by_journey ON journey_ended (journey, at)",
];

/// The statements that write a state: the version moves forward only, and the running rows are replaced only
/// when this message's version is the one stored (a newer message that already won leaves them alone).
pub fn statements(s: &JourneyState) -> Vec<Statement> {
    let pid = || Sql::Text(s.profile_id.clone());
    let version = Sql::Int(s.version as i64);
    // A profile removed from the index (erased, absorbed) keeps its removal mark for a while: a state it published
    // before its removal and that arrives after it writes nothing (without a `journey_profiles` row, no running
    // row is written either).
    let removed = || Sql::Text(removal_key(&s.profile_id));
    let mut out = vec![
        Statement {
            sql: "INSERT INTO journey_profiles (profile_id, version) SELECT ?1, ?2 \
                  WHERE NOT EXISTS (SELECT 1 FROM audience_removals WHERE profile_hash = ?3) ON CONFLICT (profile_id) \
                  DO UPDATE SET version = excluded.version WHERE excluded.version > journey_profiles.version",
            params: vec![pid(), version.clone(), removed()],
        },
        Statement {
            sql: "DELETE FROM journey_running WHERE profile_id = ?1 \
                  AND (SELECT version FROM journey_profiles WHERE profile_id = ?1) = ?2",
            params: vec![pid(), version.clone()],
        },
    ];
    for (n, (journey, step, since)) in s.running.iter().enumerate() {
        out.push(Statement {
            sql: "INSERT OR REPLACE INTO journey_running (profile_id, n, journey, step, since) SELECT ?1, ?3, ?4, ?5, ?6 \
                  WHERE (SELECT version FROM journey_profiles WHERE profile_id = ?1) = ?2",
            params: vec![pid(), version.clone(), Sql::Int(n as i64), Sql::Text(journey.clone()), Sql::Text(step.clone()), Sql::Int(*since)],
        });
    }
    for (journey, key, step, reason, at) in &s.ended {
        out.push(Statement {
            sql: "INSERT OR IGNORE INTO journey_ended (profile_id, journey, entry_key, step, reason, at) \
                  SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE NOT EXISTS (SELECT 1 FROM audience_removals WHERE profile_hash = ?7)",
            params: vec![
                pid(),
                Sql::Text(journey.clone()),
                Sql::Text(key.clone()),
                Sql::Text(step.clone()),
                Sql::Text(reason.clone()),
                Sql::Int(*at),
                removed(),
            ],
        });
    }
    out
}

/// Profiles that left the index (erased, or absorbed by a merge, whose journeys went on with the survivor).
pub fn removed(profile_ids: &[String]) -> Vec<Statement> {
    let ids = Sql::Text(J::from(profile_ids.to_vec()).to_string());
    ["journey_profiles", "journey_running", "journey_ended"]
        .into_iter()
        .map(|table| Statement {
            sql: match table {
                "journey_profiles" => {
                    "DELETE FROM journey_profiles WHERE profile_id IN (SELECT value FROM json_each(?1))"
                }
                "journey_running" => {
                    "DELETE FROM journey_running WHERE profile_id IN (SELECT value FROM json_each(?1))"
                }
                _ => "DELETE FROM journey_ended WHERE profile_id IN (SELECT value FROM json_each(?1))",
            },
            params: vec![ids.clone()],
        })
        .collect()
}

/// Running instances per journey and step: `(journey, step, count)`.
pub const RUNNING: &str = "SELECT journey, step, COUNT(*) FROM journey_running GROUP BY journey, step";
/// Ended instances per journey and reason since `?1`: `(journey, reason, count)`.
pub const ENDED: &str = "SELECT journey, reason, COUNT(*) FROM journey_ended WHERE at >= ?1 GROUP BY journey, reason";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_reads_back_and_bad_ones_name_their_path() {
        let s = JourneyState {
            profile_id: "p".into(),
            version: 3,
            running: vec![("cart".into(), "wait".into(), 5)],
            ended: vec![("cart".into(), "c1".into(), "send".into(), "completed".into(), 9)],
        };
        assert_eq!(JourneyState::of(&s.to_json()), Some(Ok(s.clone())));
        assert_eq!(JourneyState::of(&json!({"kind": "other"})), None);
        let mut bad = s.to_json();
        bad["running"][0][2] = json!("soon");
        assert_eq!(JourneyState::of(&bad), Some(Err("running[0]: expected a whole number".into())));
        let st = statements(&s);
        assert_eq!(st.len(), 4, "version, clear, one running row, one ended row");
        assert!(st[2].sql.contains("WHERE (SELECT version FROM journey_profiles WHERE profile_id = ?1) = ?2"));
        assert_eq!(removed(&["p".into()]).len(), 3);
        // A profile marked removed is not written back: the version row and the ended rows check the mark (the
        // running rows need the version row).
        for i in [0, 3] {
            assert!(
                st[i].sql.contains("NOT EXISTS (SELECT 1 FROM audience_removals WHERE profile_hash"),
                "{}",
                st[i].sql
            );
        }
    }
}
