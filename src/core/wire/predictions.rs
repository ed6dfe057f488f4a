//! What profiles publish for the fitting job and where the job keeps its versions, sans I/O: the summary
//! message a profile's writer sends through the index queue whenever its behaviour changed, the D1 statements
//! that keep the newest summary of each profile (right under redelivery and reordering, and never for a
//! profile the index marked removed), and the model versions' table.
//!
//! A summary names no person: the profile id, purchase days and values, and per channel three counts. It goes
//! with its profile (`removed`), so an erasure leaves nothing of the person in the next fit.

use crate::core::base::sort::CollectInto;
use crate::core::base::time::Millis;
use crate::core::model::behaviour::{Behaviour, ChannelStats, PurchaseDay, Purchases};
use crate::core::wire::audiences::{removal_key, Sql, Statement};
use serde_json::{json, Map, Value as J};

/// One profile's published summary.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub profile_id: String,
    /// When its writer published it: a newer summary replaces an older one, never the reverse.
    pub version: u64,
    pub behaviour: Behaviour,
}

fn day_json(d: &PurchaseDay) -> J {
    json!([d.at, d.value])
}

impl Published {
    pub fn of_profile(profile_id: &str, b: &Behaviour, now: Millis) -> Published {
        Published { profile_id: profile_id.to_string(), version: now.max(0) as u64, behaviour: b.clone() }
    }

    /// The message (`kind: predictions`). Channels carry their counts and the pressure buckets; open sends
    /// and recent times are the writer's business alone.
    pub fn to_json(&self) -> J {
        let p = &self.behaviour.purchases;
        let channels: Map<String, J> = self
            .behaviour
            .channels
            .iter()
            .map(|(c, s)| {
                let buckets: Vec<J> = s.by_pressure.iter().map(|(n, r)| json!([n, r])).collect();
                (c.clone(), json!({"sends": s.sends, "responses": s.responses, "unsubscribes": s.unsubscribes, "byPressure": buckets}))
            })
            .collect_object();
        json!({
            "kind": "predictions",
            "profileId": self.profile_id,
            "version": self.version,
            "purchases": p.first.map(|f| json!({
                "first": day_json(&f),
                "folded": [p.folded_days, p.folded_value],
                "days": p.days.iter().map(day_json).collect::<Vec<_>>(),
            })),
            "channels": channels,
        })
    }

    /// The message if it is a summary (`None`: another kind); an error names the path of what is wrong.
    pub fn of(m: &J) -> Option<Result<Published, String>> {
        (m.get("kind").and_then(J::as_str) == Some("predictions")).then(|| read(m))
    }
}

fn read(m: &J) -> Result<Published, String> {
    let profile_id = m["profileId"].as_str().ok_or("profileId: expected a string")?.to_string();
    let version = m["version"].as_u64().ok_or("version: expected a whole number")?;
    let day = |v: &J, path: &str| -> Result<PurchaseDay, String> {
        match (v[0].as_i64(), v[1].as_f64()) {
            (Some(at), Some(value)) if value.is_finite() => Ok(PurchaseDay { at, value }),
            _ => Err(format!("{path}: expected [instant, value]")),
        }
    };
    let mut behaviour = Behaviour::default();
    match &m["purchases"] {
        J::Null => {}
        p => {
            let first = day(&p["first"], "purchases.first")?;
            let folded_days = p["folded"][0].as_u64().ok_or("purchases.folded[0]: expected a whole number")?;
            let folded_value = p["folded"][1].as_f64().ok_or("purchases.folded[1]: expected a number")?;
            let mut days = Vec::new();
            for (i, d) in p["days"].as_array().ok_or("purchases.days: expected an array")?.iter().enumerate() {
                days.push(day(d, &format!("purchases.days[{i}]"))?);
            }
            behaviour.purchases = Purchases {
                first: Some(first),
                folded_days: folded_days.min(u64::from(u32::MAX)) as u32,
                folded_value,
                days,
            };
        }
    }
    if let Some(channels) = m["channels"].as_object() {
        for (name, c) in channels {
            let count = |k: &str| {
                c[k].as_u64()
                    .map(|n| n.min(u64::from(u32::MAX)) as u32)
                    .ok_or(format!("channels.{name}.{k}: expected a whole number"))
            };
            let mut stats = ChannelStats {
                sends: count("sends")?,
                responses: count("responses")?,
                unsubscribes: count("unsubscribes")?,
                ..ChannelStats::default()
            };
            if let Some(buckets) = c["byPressure"].as_array() {
                for (slot, b) in stats.by_pressure.iter_mut().zip(buckets) {
                    *slot = (b[0].as_u64().unwrap_or(0) as u32, b[1].as_u64().unwrap_or(0) as u32);
                }
            }
            behaviour.channels.insert(name.clone(), stats);
        }
    }
    Ok(Published { profile_id, version, behaviour })
}

/// The summaries' and the model versions' tables, created if missing (each statement idempotent).
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS prediction_summaries (profile_id TEXT PRIMARY KEY, version INTEGER NOT NULL, \
     body TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS prediction_models (version INTEGER PRIMARY KEY, at INTEGER NOT NULL, \
     status TEXT NOT NULL, model TEXT, quality TEXT NOT NULL)",
];

const KEEP_SUMMARY: &str = "INSERT INTO prediction_summaries (profile_id, version, body) SELECT ?1, ?2, ?3 \
    WHERE NOT EXISTS (SELECT 1 FROM audience_removals WHERE profile_hash = ?4 AND at >= ?2) \
    ON CONFLICT (profile_id) DO UPDATE SET version = excluded.version, body = excluded.body \
    WHERE excluded.version > prediction_summaries.version";
const DROP_SUMMARY: &str = "DELETE FROM prediction_summaries WHERE profile_id = ?1";

/// The statement that keeps a summary (its message's text as the body).
pub fn statements(p: &Published, body: &str) -> Vec<Statement> {
    vec![Statement {
        sql: KEEP_SUMMARY,
        params: vec![
            Sql::Text(p.profile_id.clone()),
            Sql::Int(p.version.min(i64::MAX as u64) as i64),
            Sql::Text(body.to_string()),
            Sql::Text(removal_key(&p.profile_id)),
        ],
    }]
}

/// Profiles that left the index (absorbed or erased) leave the fit too.
pub fn removed(profile_ids: &[String]) -> Vec<Statement> {
    profile_ids.iter().map(|id| Statement { sql: DROP_SUMMARY, params: vec![Sql::Text(id.clone())] }).collect()
}

/// Summaries a fit reads at most: its time and memory stay bounded whatever the population (a larger one is
/// fitted on the first this many by profile id, an arbitrary but stable sample).
pub const MAX_FIT_PROFILES: usize = 100_000;
/// Summaries read per query.
pub const PAGE: usize = 5_000;
/// The next page after profile id `?1` (keyset pagination: each page one indexed range read).
pub const SUMMARIES_PAGE: &str =
    "SELECT profile_id, body FROM prediction_summaries WHERE profile_id > ?1 ORDER BY profile_id LIMIT ?2";
/// How many profiles have a summary (what the next fit reads, up to `MAX_FIT_PROFILES`).
pub const COUNT_SUMMARIES: &str = "SELECT COUNT(*) FROM prediction_summaries";
/// The next version number.
pub const NEXT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) + 1 FROM prediction_models";
/// When the last fit ran (0 when none did).
pub const LAST_FIT: &str = "SELECT COALESCE(MAX(at), 0) FROM prediction_models";
pub const RECORD_MODEL: &str =
    "INSERT INTO prediction_models (version, at, status, model, quality) VALUES (?1, ?2, ?3, ?4, ?5)";
/// The latest versions, newest first.
pub const VERSIONS: &str =
    "SELECT version, at, status, model, quality FROM prediction_models ORDER BY version DESC LIMIT ?1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reads_back_as_published() {
        let mut b = Behaviour::default();
        b.purchases.record(1_000, 12.5);
        b.purchases.record(1_000 + 5 * 86_400_000, 7.0);
        let s = b.channel("email").unwrap();
        s.record_send(10);
        s.record_response(20);
        s.record_unsubscribe();
        let p = Published::of_profile("p1", &b, 99);
        let back = Published::of(&p.to_json()).unwrap().unwrap();
        assert_eq!(back.behaviour.purchases, b.purchases);
        let c = &back.behaviour.channels["email"];
        assert_eq!((c.sends, c.responses, c.unsubscribes, c.by_pressure[0]), (1, 1, 1, (1, 1)));
        assert_eq!(back.version, 99);
    }

    /// Each damaged message, and the path its error names.
    #[test]
    fn a_damaged_summary_names_what_is_wrong() {
        let cases = [
            (json!({"kind": "predictions", "version": 1}), "profileId"),
            (json!({"kind": "predictions", "profileId": "p", "version": -1}), "version"),
            (
                json!({"kind": "predictions", "profileId": "p", "version": 1, "purchases": {"first": [1]}}),
                "purchases.first",
            ),
            (
                json!({"kind": "predictions", "profileId": "p", "version": 1, "purchases": {"first": [1, 2], "folded": [0, 0], "days": [[1, "x"]]}}),
                "purchases.days[0]",
            ),
            (
                json!({"kind": "predictions", "profileId": "p", "version": 1, "channels": {"email": {"sends": 1}}}),
                "channels.email.responses",
            ),
        ];
        for (m, path) in cases {
            let e = Published::of(&m).unwrap().unwrap_err();
            assert!(e.starts_with(path), "{m}: {e}");
        }
        assert!(Published::of(&json!({"kind": "journeys"})).is_none());
    }

    #[test]
    fn a_removed_profile_is_not_written_back_and_only_newer_summaries_replace() {
        let p = Published::of_profile("p1", &Behaviour::default(), 5);
        let s = &statements(&p, "{}")[0];
        assert!(
            s.sql.contains("audience_removals") && s.sql.contains("excluded.version > prediction_summaries.version")
        );
        assert_eq!(s.params[3], Sql::Text(removal_key("p1")));
        assert_eq!(removed(&["a".into(), "b".into()]).len(), 2);
    }
}
