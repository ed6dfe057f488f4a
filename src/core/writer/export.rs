//! The export's rows of a writer's action (`core::wire::export`): what it stored, as Segment's warehouse layout
//! has it. Rows are made only of what was stored (an event consent refused, a duplicate, one over the profile's
//! budget makes none) and leave only after the profile is stored (`Writer::flush_export`).

use crate::core::base::sort;
use crate::core::base::time::Millis;
use crate::core::engine::predict;
use crate::core::model::event::Event;
use crate::core::model::identity::Identity;
use crate::core::model::journey::Outgoing;
use crate::core::model::profile::Profile;
use crate::core::rules::Config;
use crate::core::wire::deliveries::{Outcome, Record};
pub use crate::core::wire::export::messages;
use crate::core::wire::export::{
    delivery_row, identity_row, person_key, rows_of, user_row, DeliveryOutcome, IdentityChange, Row,
};

/// An apply's rows: its events', and its identities' (`index`: now leading here; those also in `repoint` came
/// with a merge).
pub fn applied(p: &Profile, events: &[Event], index: &[Identity], repoint: &[Identity], now: Millis) -> Vec<Row> {
    let mut rows: Vec<Row> = events.iter().flat_map(|e| rows_of(e, now)).collect();
    let linked = index.iter().filter(|i| !repoint.contains(i)).map(|i| (i, IdentityChange::Linked));
    let merged = repoint.iter().map(|i| (i, IdentityChange::Merged));
    rows.extend(linked.chain(merged).map(|(i, change)| identity_row(i, &p.id, change, now)));
    rows
}

/// A `users` row of the profile as stored, with its predictions at `now` and the model version that made them.
pub fn user(config: &Config, p: &Profile, now: Millis) -> Row {
    let mut row = user_row(p, now);
    row.columns.extend(predict::columns(config, p, now));
    row
}

/// A split's rows: the identities that left with the profile split off.
pub fn split(restored: &Profile, now: Millis) -> Vec<Row> {
    restored.identities.iter().map(|i| identity_row(i, &restored.id, IdentityChange::Split, now)).collect()
}

/// Whom an erasure removes from the export (`person_key`s): the profile's identities and the ids of the profiles
/// it is made of.
pub fn people_of(p: &Profile, profile_ids: &[String]) -> Vec<String> {
    let ids = p.identities.iter().map(|i| person_key(&i.kind, &i.value));
    let mut people: Vec<String> = ids.chain(profile_ids.iter().map(|id| person_key("profile", id))).collect();
    sort::sort(&mut people);
    people.dedup();
    people
}

/// Sends cancelled before they were queued, for the delivery log (`Effect::Suppressed`) and the export's
/// `deliveries` rows, each `suppressed` with its reason and no attempt.
pub fn suppressed(profile_id: &str, cancelled: &[Outgoing], now: Millis) -> (Vec<(Record, String)>, Vec<Row>) {
    cancelled
        .iter()
        .map(|o| {
            let reason = o.cancelled.clone().unwrap_or_default();
            let record = Record {
                id: o.id.clone(),
                destination: o.destination.clone(),
                profile: Some(profile_id.to_string()),
                journey: Some(o.journey.clone()),
                step: Some(o.step.clone()),
            };
            let row = delivery_row(&DeliveryOutcome::of(&record, Outcome::Suppressed, 0, Some(&reason)), now);
            ((record, reason), row)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A send refused when queued reaches the log and the export's `deliveries` as the same suppression: whose,
    /// which journey and step, why, and never attempted.
    #[test]
    fn a_refused_send_is_logged_and_exported_with_its_reason() {
        let o = Outgoing {
            id: "dlv_1".into(),
            destination: "email".into(),
            journey: "welcome".into(),
            step: "hello".into(),
            instance: 1,
            key: String::new(),
            event: "Hello".into(),
            entered_at: 900,
            context: Default::default(),
            created: 900,
            due: 900,
            enqueued: false,
            claimed: None,
            cancelled: Some("consent".into()),
        };
        let (log, rows) = suppressed("p_1", &[o], 1_000);
        let record = Record {
            id: "dlv_1".into(),
            destination: "email".into(),
            profile: Some("p_1".into()),
            journey: Some("welcome".into()),
            step: Some("hello".into()),
        };
        assert_eq!(log, vec![(record, "consent".to_string())]);
        let c = &rows[0].columns;
        assert_eq!(rows[0].table, "deliveries");
        let got: Vec<_> = ["id", "delivery_id", "profile_id", "journey", "step", "destination", "outcome", "reason"]
            .iter()
            .map(|k| c[*k].as_str().unwrap_or_default())
            .collect();
        let want = ["dlv_1:suppressed:0", "dlv_1", "p_1", "welcome", "hello", "email", "suppressed", "consent"];
        assert_eq!(got, want);
        assert_eq!(c["attempts"], 0);
    }
}
