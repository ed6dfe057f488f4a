//! The unified profile: identities, traits, counts, consent, a bounded recent history, what it was shown, and
//! the budget of what it never sheds. How an event changes it under a configuration is `engine::apply`.

use crate::core::base::time::{format_iso8601, Millis, DAY, MINUTE};
use crate::core::base::value::{map_to_json, Value};
use crate::core::model::aggregate::{day_of, series_key, Aggregates};
use crate::core::model::consent::{ConsentState, Grant, HasConsent, Purpose};
use crate::core::model::contact::Contacts;
use crate::core::model::event::Event;
use crate::core::model::identity::{Identity, USER_ID};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

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
                    .collect()
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
            self.traits.iter().map(|(k, t)| (k.clone(), serde_json::Value::from(format_iso8601(t.at)))).collect();
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
            .collect::<serde_json::Map<_, _>>()
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
            .collect::<serde_json::Map<_, _>>()
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
        let traits: BTreeMap<String, Value> = self.traits.iter().map(|(k, t)| (k.clone(), t.value.clone())).collect();
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
                .collect();
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
                "traits": computed.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
            },
        })
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
            .collect::<serde_json::Map<_, _>>()
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
