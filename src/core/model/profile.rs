//! The unified profile: identities, traits, counts, consent, a bounded recent history, what it was shown, and
//! the budget of what it never sheds. How an event changes it under a configuration is `engine::apply`.

use crate::core::base::sort;
use crate::core::base::sort::CollectInto;
use crate::core::base::time::{format_iso8601, Millis, DAY, MINUTE};
use crate::core::base::value::{map_to_json, Value};
use crate::core::model::aggregate::{day_of, series_key, Aggregates};
use crate::core::model::behaviour::Behaviour;
use crate::core::model::consent::{ConsentState, Grant, HasConsent, Purpose};
use crate::core::model::contact::Contacts;
use crate::core::model::event::Event;
use crate::core::model::identity::{Identity, USER_ID};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::core::model::audience::Audiences;
use crate::core::model::history::{EventRecord, MAX_RECENT_EVENTS, MAX_RECORD_PROPS, MAX_RECORD_STRING};
use crate::core::model::journey::Journeys;
use crate::core::model::shown::Shown;

/// A new session starts after this long without an event.
pub const SESSION_GAP: Millis = 30 * MINUTE;
/// The largest order amount counted in lifetime value (in either direction, for refunds); a sum of such amounts
/// stays finite for any number of orders a profile can record.
pub const MAX_ORDER_AMOUNT: f64 = 1e12;
/// The event whose `revenue` (or `total`) property counts as an order for lifetime value.
pub const ORDER_EVENT: &str = "Order Completed";
/// Merge records kept, and how many of the latest keep what a split needs.
pub const MAX_MERGE_RECORDS: usize = 50;
pub const MAX_SPLITTABLE_MERGES: usize = 3;
/// Refused identities kept as a record.
pub const MAX_REFUSED: usize = 50;
/// Why an identifier a browser sent (an e-mail trait, an external id) is not an identity of its profile.
pub const UNVERIFIED_BROWSER_CLAIM: &str = "sent_by_browser";
/// How many `messageId`s a profile remembers to count retries once. This is the deduplication window.
pub const MAX_SEEN_MESSAGE_IDS: usize = 1_000;

/// A trait value with the event time that set it, so that the latest event wins whatever order events arrive in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraitEntry {
    pub value: Value,
    pub at: Millis,
}

/// Traits computed from events as they arrive.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Computed {
    pub sessions: u32,
    pub orders: u32,
    /// Lifetime value: the sum of `revenue` (or `total`) of `Order Completed` events.
    pub revenue: f64,
    pub last_order_at: Option<Millis>,
}

impl Computed {
    /// A merge's part: counts and revenue add up, the last order is the later of the two.
    pub fn absorb(&mut self, other: &Computed) {
        self.sessions += other.sessions;
        self.orders += other.orders;
        self.revenue += other.revenue;
        self.last_order_at = self.last_order_at.max(other.last_order_at);
    }
}

/// Why a profile holds what it holds: one profile absorbed another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeRecord {
    pub at: Millis,
    /// The event that caused the merge.
    pub message_id: String,
    pub absorbed_id: String,
    pub identities: Vec<Identity>,
    /// What a split needs (kept for the latest `MAX_SPLITTABLE_MERGES` merges): the absorbed profile as it was,
    /// and the survivor's trait and consent entries that the merge replaced (`None`: there was none).
    pub absorbed: Option<Box<Profile>>,
    pub replaced_traits: BTreeMap<String, Option<TraitEntry>>,
    pub replaced_grants: BTreeMap<Purpose, Option<Grant>>,
    /// The survivor's first and last seen before the merge.
    pub first_seen_before: Millis,
    pub last_seen_before: Millis,
}

/// An identity the profile did not take, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefusedIdentity {
    pub at: Millis,
    pub identity: Identity,
    pub reason: String,
    pub message_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: String,
    pub identities: Vec<Identity>,
    pub traits: BTreeMap<String, TraitEntry>,
    pub counts: BTreeMap<String, u64>,
    pub consent: ConsentState,
    pub first_seen: Millis,
    pub last_seen: Millis,
    /// Ordered by event time, oldest first.
    pub recent: VecDeque<EventRecord>,
    /// Most recent last.
    pub seen_message_ids: VecDeque<String>,
    pub aggregates: Aggregates,
    pub computed: Computed,
    /// Oldest first.
    pub merges: Vec<MergeRecord>,
    /// Oldest first.
    pub refused: Vec<RefusedIdentity>,
    /// Stored beside the rest (format version 3, see `store`), so that version 2 profiles still decode.
    #[serde(skip)]
    pub shown: Shown,
    /// Stored after `shown` (format version 4, see `store`).
    #[serde(skip)]
    pub audiences: Audiences,
    /// Stored after `audiences` (format version 5, see `store`).
    #[serde(skip)]
    pub journeys: Journeys,
    /// Which contact points were set with proof (`model::contact`). Stored after `journeys` (format version 6).
    #[serde(skip)]
    pub contacts: Contacts,
    /// Purchases and channel responses, what predictions read (`model::behaviour`). Stored after `contacts`
    /// (format version 7).
    #[serde(skip)]
    pub behaviour: Behaviour,
}

impl HasConsent for Profile {
    fn consent(&self) -> &ConsentState {
        &self.consent
    }
}

/// The per-profile budget for what a profile never sheds (README: "Profile size"). Each part has its own bound,
/// so that together they stay well inside `store::MAX_PROFILE_BYTES` and leave room for what can be shed (history,
/// message ids, aggregates, merge and refusal records), which `store::encode_profile_bounded` drops as needed.
pub mod budget {
    /// Bytes of event names counted (`counts`): about 500 names of 24 characters.
    pub const COUNT_NAMES: usize = 16 * 1024;
    /// Bytes of traits (names and values).
    pub const TRAITS: usize = 32 * 1024;
    /// Bytes of identity values.
    pub const IDENTITIES: usize = 16 * 1024;
}

impl Profile {
    pub fn new(id: String, at: Millis) -> Profile {
        Profile {
            id,
            identities: Vec::new(),
            traits: BTreeMap::new(),
            counts: BTreeMap::new(),
            consent: ConsentState::default(),
            first_seen: at,
            last_seen: at,
            recent: VecDeque::new(),
            seen_message_ids: VecDeque::new(),
            aggregates: Aggregates::default(),
            computed: Computed::default(),
            merges: Vec::new(),
            refused: Vec::new(),
            shown: Shown::default(),
            audiences: Audiences::default(),
            journeys: Journeys::default(),
            contacts: Contacts::default(),
            behaviour: Behaviour::default(),
        }
    }

    pub fn has_identity(&self, id: &Identity) -> bool {
        self.identities.contains(id)
    }

    pub(crate) fn identity_of(&self, kind: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.kind == kind)
    }

    /// Whether the profile belongs to a known person (it holds a `user_id`).
    pub fn is_identified(&self) -> bool {
        self.identity_of(USER_ID).is_some()
    }

    pub(crate) fn remember(&mut self, event: &Event) {
        let props = event
            .properties()
            .map(|p| {
                p.iter()
                    .filter(|(_, v)| v.is_scalar())
                    .take(MAX_RECORD_PROPS)
                    .map(|(k, v)| (k.clone(), truncated(v)))
                    .collect_map()
            })
            .unwrap_or_default();
        let record = EventRecord {
            at: event.timestamp,
            name: event.count_key().to_string(),
            message_id: event.message_id.clone(),
            props,
        };
        self.aggregates.record(&record);
        let pos = self.recent.partition_point(|r| r.at <= record.at);
        self.recent.insert(pos, record);
        while self.recent.len() > MAX_RECENT_EVENTS {
            self.recent.pop_front();
        }
    }

    /// When an anonymous profile expires for lack of activity (`retention.anonymousDays` after it was last
    /// seen). Profiles of known people do not expire this way.
    pub fn expires_at(&self, anonymous_days: u32) -> Option<Millis> {
        (!self.is_identified()).then(|| self.last_seen.saturating_add(i64::from(anonymous_days) * DAY))
    }

    /// Everything held about the person, for an access request: the profile, trait times, the consent audit
    /// trail, the recent event history and the remembered message ids.
    pub fn export_json(&self, segments: &[&str], computed: &[(&str, u64)], now: Millis) -> serde_json::Value {
        let mut out = self.to_json(segments, computed, now);
        out["traitsSetAt"] =
            self.traits.iter().map(|(k, t)| (k.clone(), serde_json::Value::from(format_iso8601(t.at)))).collect_json();
        out["consentHistory"] = self
            .consent
            .history
            .iter()
            .map(|c| {
                serde_json::json!({"purpose": c.purpose.name(), "granted": c.granted,
                    "at": format_iso8601(c.at), "source": c.source})
            })
            .collect();
        out["recentEvents"] = self
            .recent
            .iter()
            .map(|r| serde_json::json!({"event": r.name, "at": format_iso8601(r.at), "properties": map_to_json(&r.props)}))
            .collect();
        out["messageIds"] = self.seen_message_ids.iter().cloned().collect();
        out["contactPoints"] = self.contact_points_json();
        out["impressions"] = self
            .shown
            .impressions
            .iter()
            .map(|(block, times)| (block.clone(), times.iter().map(|t| format_iso8601(*t)).collect()))
            .collect_object()
            .into();
        out["experiments"] = self
            .shown
            .experiments
            .iter()
            .map(|(id, a)| {
                (
                    id.clone(),
                    serde_json::json!({"variant": a.variant, "exposedAt": format_iso8601(a.at),
                    "convertedAt": a.converted_at.map(format_iso8601)}),
                )
            })
            .collect_object()
            .into();
        out["merges"] = self
            .merges
            .iter()
            .map(|m| {
                serde_json::json!({"at": format_iso8601(m.at), "messageId": m.message_id, "absorbedId": m.absorbed_id,
                    "identities": identities_json(&m.identities), "splittable": m.absorbed.is_some()})
            })
            .collect();
        out["refusedIdentities"] = self
            .refused
            .iter()
            .map(|r| {
                serde_json::json!({"at": format_iso8601(r.at), "type": r.identity.kind, "value": r.identity.value,
                    "reason": r.reason, "messageId": r.message_id})
            })
            .collect();
        out
    }

    /// The profile as the admin API shows it (see `GET /v1/profiles/...` in the contract).
    /// `computed` holds the configured computed traits' values (`evaluate::computed_of`).
    pub fn to_json(&self, segments: &[&str], computed: &[(&str, u64)], now: Millis) -> serde_json::Value {
        let traits: BTreeMap<String, Value> =
            sort::map_of(self.traits.iter().map(|(k, t)| (k.clone(), t.value.clone())));
        let mut consent = serde_json::Map::new();
        for p in Purpose::OPTIONAL {
            if let Some(g) = self.consent.grants.get(&p) {
                consent.insert(p.name().to_string(), serde_json::Value::Bool(g.granted));
            }
        }
        // Event counts over rolling windows ending today, from the daily aggregates.
        let today = day_of(now);
        let mut windows = serde_json::Map::new();
        for (label, days) in [("1d", 1), ("7d", 7), ("30d", 30)] {
            let counts: serde_json::Map<String, serde_json::Value> = self
                .counts
                .keys()
                .filter_map(|name| {
                    let key = series_key(name, None)?;
                    let n = self.aggregates.count(&key, today - days + 1, today);
                    (n > 0).then(|| (name.clone(), serde_json::Value::from(n)))
                })
                .collect_object();
            windows.insert(label.to_string(), serde_json::Value::Object(counts));
        }
        let c = &self.computed;
        serde_json::json!({
            "id": self.id,
            "identities": identities_json(&self.identities),
            "traits": map_to_json(&traits),
            "counts": self.counts,
            "consent": consent,
            "segments": segments,
            "audiences": self.audiences.to_json(),
            "journeys": self.journeys.to_json(),
            "contactPoints": self.contact_points_json(),
            "firstSeen": format_iso8601(self.first_seen),
            "lastSeen": format_iso8601(self.last_seen),
            "computed": {
                "sessions": c.sessions,
                "orders": c.orders,
                "lifetimeValue": c.revenue,
                "lastOrderAt": c.last_order_at.map(format_iso8601),
                "daysSinceLastSeen": (now - self.last_seen).max(0) / DAY,
                "windows": windows,
                "traits": computed.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect_object(),
            },
        })
    }
}

/// A merge's parts that live on the profile itself (`engine::merge::absorb` calls them in this order, between
/// the parts that have types of their own).
impl Profile {
    /// Traits: the later event wins (the survivor's on a tie). Returns the survivor's entries that were replaced
    /// (`None`: it had none), which a split puts back.
    pub fn absorb_traits(&mut self, other: &BTreeMap<String, TraitEntry>) -> BTreeMap<String, Option<TraitEntry>> {
        let mut replaced = BTreeMap::new();
        for (k, entry) in other {
            let current = self.traits.get(k);
            if current.is_none_or(|c| c.at < entry.at) {
                replaced.insert(k.clone(), current.cloned());
                self.traits.insert(k.clone(), entry.clone());
            }
        }
        replaced
    }

    /// Counts: summed, except events both profiles recorded (the same messageId), which count once. Runs before
    /// `absorb_history`, while `seen_message_ids` are still the survivor's own.
    pub fn absorb_counts(&mut self, other: &Profile) {
        let known: BTreeSet<&str> = sort::set_of(self.seen_message_ids.iter().map(String::as_str));
        let both: Vec<String> = other
            .recent
            .iter()
            .filter(|r| !r.message_id.is_empty() && known.contains(r.message_id.as_str()))
            .map(|r| r.name.clone())
            .collect();
        for (name, n) in &other.counts {
            *self.counts.entry(name.clone()).or_insert(0) += n;
        }
        for name in both {
            if let Some(n) = self.counts.get_mut(&name) {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// History and dedup window, united by messageId (the newest kept within their bounds), and the earlier first
    /// and later last sighting.
    pub fn absorb_history(&mut self, other: &Profile) {
        let recent_ids: BTreeSet<String> =
            self.recent.iter().map(|r| r.message_id.clone()).filter(|m| !m.is_empty()).collect();
        let mut recent: Vec<_> = self.recent.drain(..).collect();
        recent.extend(
            other.recent.iter().filter(|r| r.message_id.is_empty() || !recent_ids.contains(&r.message_id)).cloned(),
        );
        sort::sort_by_key(&mut recent, |r| r.at);
        let excess = recent.len().saturating_sub(MAX_RECENT_EVENTS);
        self.recent = recent.into_iter().skip(excess).collect();
        let seen: BTreeSet<String> = sort::set_of(self.seen_message_ids.iter().cloned());
        for m in &other.seen_message_ids {
            if !seen.contains(m) {
                self.seen_message_ids.push_back(m.clone());
            }
        }
        while self.seen_message_ids.len() > MAX_SEEN_MESSAGE_IDS {
            self.seen_message_ids.pop_front();
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
    }
}

impl Profile {
    /// Whether the trait `name` holds a contact point that was set with proof (`model::contact`).
    pub fn contact_verified(&self, name: &str) -> bool {
        self.traits.get(name).is_some_and(|t| self.contacts.proof_of(name, &t.value).is_some())
    }

    /// Each proven trait that still holds its proven value: who proved it and when. A trait without an entry is
    /// not verified, and journeys do not send to it.
    fn contact_points_json(&self) -> serde_json::Value {
        self.traits
            .iter()
            .filter_map(|(name, t)| {
                let p = self.contacts.proof_of(name, &t.value)?;
                Some((
                    name.clone(),
                    serde_json::json!({"verified": true, "by": p.by.name(), "at": format_iso8601(p.at)}),
                ))
            })
            .collect_object()
            .into()
    }
}

fn identities_json(ids: &[Identity]) -> Vec<serde_json::Value> {
    ids.iter().map(|i| serde_json::json!({"type": i.kind, "value": i.value})).collect()
}

fn truncated(v: &Value) -> Value {
    match v {
        Value::String(s) if s.chars().count() > MAX_RECORD_STRING => {
            Value::String(s.chars().take(MAX_RECORD_STRING).collect())
        }
        _ => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, message_id: &str, at: Millis) -> EventRecord {
        EventRecord { name: name.into(), message_id: message_id.into(), at, props: BTreeMap::new() }
    }

    /// Traits: the later event wins, the survivor's on a tie, and what was replaced is reported for a split.
    #[test]
    fn absorbing_traits_keeps_the_later_value() {
        let entry = |v: &str, at| TraitEntry { value: Value::String(v.into()), at };
        let mut p = Profile::new("p".into(), 0);
        p.traits.insert("plan".into(), entry("free", 10));
        p.traits.insert("city".into(), entry("Oslo", 30));
        p.traits.insert("name".into(), entry("Ana", 5));
        let other = BTreeMap::from([
            ("plan".to_string(), entry("gold", 20)),
            ("city".to_string(), entry("Rome", 25)),
            ("name".to_string(), entry("Anna", 5)),
            ("email".to_string(), entry("a@x.example", 1)),
        ]);
        let replaced = p.absorb_traits(&other);
        assert_eq!(replaced, BTreeMap::from([("email".into(), None), ("plan".into(), Some(entry("free", 10)))]));
        let values: Vec<(&str, &Value)> = p.traits.iter().map(|(k, e)| (k.as_str(), &e.value)).collect();
        let text = |s: &str| Value::String(s.into());
        assert_eq!(
            values,
            [("city", &text("Oslo")), ("email", &text("a@x.example")), ("name", &text("Ana")), ("plan", &text("gold"))]
        );
    }

    /// Counts add up, and an event both profiles recorded (the same messageId) counts once.
    #[test]
    fn absorbing_counts_counts_a_shared_event_once() {
        let mut p = Profile::new("p".into(), 0);
        p.counts = BTreeMap::from([("Viewed".to_string(), 2), ("Bought".to_string(), 1)]);
        p.seen_message_ids = VecDeque::from(["m1".to_string(), "m2".to_string()]);
        let mut other = Profile::new("o".into(), 0);
        other.counts = BTreeMap::from([("Viewed".to_string(), 3), ("Left".to_string(), 1)]);
        other.recent = VecDeque::from([record("Viewed", "m1", 1), record("Viewed", "m9", 2), record("Viewed", "", 3)]);
        p.absorb_counts(&other);
        assert_eq!(p.counts, BTreeMap::from([("Bought".into(), 1), ("Left".into(), 1), ("Viewed".into(), 4)]));
    }

    /// Computed traits add up; the last order is the later one.
    #[test]
    fn absorbing_computed_adds_up() {
        let mut c = Computed { sessions: 2, orders: 1, revenue: 10.5, last_order_at: Some(7) };
        c.absorb(&Computed { sessions: 3, orders: 2, revenue: 4.5, last_order_at: Some(9) });
        assert_eq!(c, Computed { sessions: 5, orders: 3, revenue: 15.0, last_order_at: Some(9) });
        c.absorb(&Computed::default());
        assert_eq!(c.last_order_at, Some(9), "no order is not a later one");
    }

    /// History unites by messageId in time order within its bound; the dedup window keeps both, newest last; the
    /// first and last sightings widen.
    #[test]
    fn absorbing_history_unites_by_message_id() {
        let mut p = Profile::new("p".into(), 100);
        p.last_seen = 200;
        p.recent = VecDeque::from([record("A", "m1", 110), record("B", "", 150)]);
        p.seen_message_ids = VecDeque::from(["m1".to_string()]);
        let mut other = Profile::new("o".into(), 50);
        other.last_seen = 120;
        other.recent = VecDeque::from([record("A", "m1", 110), record("C", "m2", 60), record("D", "", 150)]);
        other.seen_message_ids = VecDeque::from(["m2".to_string(), "m1".to_string()]);
        p.absorb_history(&other);
        let names: Vec<&str> = p.recent.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["C", "A", "B", "D"]);
        assert_eq!(p.seen_message_ids, ["m1", "m2"]);
        assert_eq!((p.first_seen, p.last_seen), (50, 200));
        // Past their bounds, the oldest go.
        let mut full = Profile::new("f".into(), 0);
        full.recent = (0..MAX_RECENT_EVENTS as Millis).map(|i| record("E", &format!("f{i}"), 1000 + i)).collect();
        full.seen_message_ids = (0..MAX_SEEN_MESSAGE_IDS).map(|i| format!("f{i}")).collect();
        full.absorb_history(&other);
        assert_eq!(full.recent.len(), MAX_RECENT_EVENTS);
        assert_eq!(full.recent.front().map(|r| r.at), Some(1000), "older events than the history holds are shed");
        assert_eq!(full.seen_message_ids.len(), MAX_SEEN_MESSAGE_IDS);
        assert_eq!(full.seen_message_ids.back().map(String::as_str), Some("m1"), "in the order the other saw them");
    }
}
