//! The unified profile: identities, traits, counts, consent and a bounded recent history, and how a
//! permitted event changes it.

use crate::core::consent::{ConsentPolicy, ConsentState, HasConsent, Permitted, Purpose, RequestSignals};
use crate::core::event::{Event, EventKind};
use crate::core::identity::{Identity, ANONYMOUS_ID, USER_ID};
use crate::core::time::{format_iso8601, Millis};
use crate::core::value::{map_to_json, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// How many recent events a profile keeps for windowed segment conditions. The oldest go first, so the
/// profile's size is bounded whatever the traffic.
pub const MAX_RECENT_EVENTS: usize = 500;
/// How many `messageId`s a profile remembers to count retries once. This is the deduplication window.
pub const MAX_SEEN_MESSAGE_IDS: usize = 1_000;
/// Scalar properties kept per recent event, and the longest string kept.
pub const MAX_RECORD_PROPS: usize = 16;
pub const MAX_RECORD_STRING: usize = 128;

/// A trait value with the event time that set it, so that the latest event wins whatever order events arrive in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraitEntry {
    pub value: Value,
    pub at: Millis,
}

/// A compact record of one event, enough for windowed counts with property filters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at: Millis,
    pub name: String,
    pub props: BTreeMap<String, Value>,
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
}

impl HasConsent for Profile {
    fn consent(&self) -> &ConsentState {
        &self.consent
    }
}

/// What applying one event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Stored,
    Duplicate,
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
        }
    }

    pub fn has_identity(&self, id: &Identity) -> bool {
        self.identities.contains(id)
    }

    fn identity_of(&self, kind: &str) -> Option<&Identity> {
        self.identities.iter().find(|i| i.kind == kind)
    }

    /// Whether the profile belongs to a known person (it holds a `user_id`).
    pub fn is_identified(&self) -> bool {
        self.identity_of(USER_ID).is_some()
    }

    /// Applies a permitted event. A `messageId` seen before changes nothing. Returns what happened and the
    /// identities this event added, which the store must index.
    pub fn apply(&mut self, event: Permitted<Event>, policy: &ConsentPolicy) -> (Applied, Vec<Identity>) {
        let event = event.into_inner();
        if self.seen_message_ids.iter().any(|m| *m == event.message_id) {
            return (Applied::Duplicate, Vec::new());
        }
        self.seen_message_ids.push_back(event.message_id.clone());
        while self.seen_message_ids.len() > MAX_SEEN_MESSAGE_IDS {
            self.seen_message_ids.pop_front();
        }

        let mut added = Vec::new();
        if let Some(a) = &event.anonymous_id {
            self.add_identity(Identity::new(ANONYMOUS_ID, a), &mut added);
        }
        if let Some(u) = &event.user_id {
            // A profile holds at most one user id; the identity issue replaces this rule with configured limits
            // and priorities. Until then a second user id is not linked.
            if self.identity_of(USER_ID).is_none() {
                self.add_identity(Identity::new(USER_ID, u), &mut added);
            }
        }
        if let Some(prefs) = &event.consent {
            self.consent.record(policy, prefs, event.timestamp, "event");
        }
        if let EventKind::Identify { traits } = &event.kind {
            for (k, v) in traits {
                let newer = self.traits.get(k).is_none_or(|t| t.at <= event.timestamp);
                if newer {
                    self.traits.insert(k.clone(), TraitEntry { value: v.clone(), at: event.timestamp });
                }
            }
        }
        *self.counts.entry(event.count_key().to_string()).or_insert(0) += 1;
        self.first_seen = self.first_seen.min(event.timestamp);
        self.last_seen = self.last_seen.max(event.timestamp);
        self.remember(&event);
        (Applied::Stored, added)
    }

    fn add_identity(&mut self, id: Identity, added: &mut Vec<Identity>) {
        if !self.has_identity(&id) {
            added.push(id.clone());
            self.identities.push(id);
        }
    }

    fn remember(&mut self, event: &Event) {
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
        let record = EventRecord { at: event.timestamp, name: event.count_key().to_string(), props };
        let pos = self.recent.partition_point(|r| r.at <= record.at);
        self.recent.insert(pos, record);
        while self.recent.len() > MAX_RECENT_EVENTS {
            self.recent.pop_front();
        }
    }

    /// The profile as the admin API shows it (see `GET /v1/profiles/...` in the contract).
    pub fn to_json(&self, segments: &[&str]) -> serde_json::Value {
        let traits: BTreeMap<String, Value> = self.traits.iter().map(|(k, t)| (k.clone(), t.value.clone())).collect();
        let mut consent = serde_json::Map::new();
        for p in Purpose::OPTIONAL {
            if let Some(g) = self.consent.grants.get(&p) {
                consent.insert(p.name().to_string(), serde_json::Value::Bool(g.granted));
            }
        }
        serde_json::json!({
            "id": self.id,
            "identities": self.identities.iter().map(|i| serde_json::json!({"type": i.kind, "value": i.value})).collect::<Vec<_>>(),
            "traits": map_to_json(&traits),
            "counts": self.counts,
            "consent": consent,
            "segments": segments,
            "firstSeen": format_iso8601(self.first_seen),
            "lastSeen": format_iso8601(self.last_seen),
        })
    }
}

fn truncated(v: &Value) -> Value {
    match v {
        Value::String(s) if s.chars().count() > MAX_RECORD_STRING => {
            Value::String(s.chars().take(MAX_RECORD_STRING).collect())
        }
        _ => v.clone(),
    }
}

/// A set of events for one profile, as the edge hands them to the profile's serialized writer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub profile_id: String,
    pub signals: RequestSignals,
    pub events: Vec<Event>,
}

/// What the writer did with an `ApplyRequest`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutcome {
    pub stored: u32,
    pub duplicates: u32,
    pub refused: u32,
    /// Identities the profile gained, which the store must index.
    pub new_identities: Vec<Identity>,
    /// Whether the profile changed and must be written.
    pub changed: bool,
}

/// Applies events to the profile they belong to, passing each through the consent check. No profile is
/// created for events that consent does not allow; an existing profile still records a consent change that
/// such an event carries (withdrawal has to be kept as proof).
pub fn apply_events(
    profile: Option<Profile>,
    req: ApplyRequest,
    policy: &ConsentPolicy,
) -> (Option<Profile>, ApplyOutcome) {
    let mut profile = profile;
    let mut out = ApplyOutcome::default();
    for event in req.events {
        match crate::core::consent::permit_collection(policy, profile.as_ref().map(|p| &p.consent), event, &req.signals)
        {
            Ok(permitted) => {
                let p = profile.get_or_insert_with(|| Profile::new(req.profile_id.clone(), permitted.get().timestamp));
                let (applied, added) = p.apply(permitted, policy);
                match applied {
                    Applied::Stored => {
                        out.stored += 1;
                        out.changed = true;
                    }
                    Applied::Duplicate => out.duplicates += 1,
                }
                out.new_identities.extend(added);
            }
            Err(refused) => {
                out.refused += 1;
                if let (Some(p), Some(prefs)) = (profile.as_mut(), refused.consent.as_ref()) {
                    out.changed |= p.consent.record(policy, prefs, refused.timestamp, "event");
                }
            }
        }
    }
    (profile, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::parse_batch;

    const NOW: Millis = 1_795_344_600_000;

    fn request(json: &str) -> ApplyRequest {
        let parsed = parse_batch(json.as_bytes(), NOW).unwrap();
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        ApplyRequest { profile_id: "p_test".into(), signals: RequestSignals::default(), events: parsed.events }
    }

    const GRANT: &str = r#""context":{"consent":{"categoryPreferences":{"analytics":true,"personalization":true}}}"#;

    #[test]
    fn counts_each_message_once_and_keeps_traits_by_event_time() {
        let body = format!(
            r#"{{"batch":[
              {{"type":"page","anonymousId":"a","messageId":"m1",{GRANT}}},
              {{"type":"page","anonymousId":"a","messageId":"m1",{GRANT}}},
              {{"type":"track","event":"Product Viewed","anonymousId":"a","messageId":"m2","properties":{{"category":"bags","nested":{{"x":1}}}},{GRANT}}},
              {{"type":"identify","anonymousId":"a","userId":"u1","messageId":"m3","timestamp":"2026-11-22T10:00:00Z","traits":{{"plan":"gold"}},{GRANT}}},
              {{"type":"identify","anonymousId":"a","userId":"u1","messageId":"m4","timestamp":"2026-11-22T09:00:00Z","traits":{{"plan":"silver","firstName":"Ada"}},{GRANT}}}
            ]}}"#
        );
        let (p, out) = apply_events(None, request(&body), &ConsentPolicy::default());
        let p = p.expect("profile created");
        assert_eq!((out.stored, out.duplicates, out.refused), (4, 1, 0));
        assert_eq!(p.counts.get("page"), Some(&1));
        assert_eq!(p.counts.get("Product Viewed"), Some(&1));
        assert_eq!(p.counts.get("identify"), Some(&2));
        assert_eq!(p.traits["plan"].value, Value::String("gold".into()), "the later event wins");
        assert_eq!(p.traits["firstName"].value, Value::String("Ada".into()));
        assert_eq!(out.new_identities, vec![Identity::new("anonymous_id", "a"), Identity::new("user_id", "u1")]);
        let viewed = p.recent.iter().find(|r| r.name == "Product Viewed").unwrap();
        assert_eq!(viewed.props.keys().collect::<Vec<_>>(), vec!["category"], "only scalar properties are kept");
        assert_eq!(p.recent.front().unwrap().at, crate::core::time::parse_iso8601("2026-11-22T09:00:00Z").unwrap());
    }

    #[test]
    fn no_profile_without_consent_but_a_withdrawal_is_recorded() {
        let (p, out) =
            apply_events(None, request(r#"{"batch":[{"type":"page","anonymousId":"a"}]}"#), &ConsentPolicy::default());
        assert!(p.is_none());
        assert_eq!(out.refused, 1);
        assert!(!out.changed);

        let granted = format!(r#"{{"batch":[{{"type":"page","anonymousId":"a",{GRANT}}}]}}"#);
        let (p, _) = apply_events(None, request(&granted), &ConsentPolicy::default());
        let withdraw = r#"{"batch":[{"type":"page","anonymousId":"a","context":{"consent":{"categoryPreferences":{"analytics":false}}}},
                                    {"type":"page","anonymousId":"a"}]}"#;
        let (p, out) = apply_events(p, request(withdraw), &ConsentPolicy::default());
        let p = p.unwrap();
        assert_eq!((out.stored, out.refused), (0, 2), "collection stops from the withdrawal on");
        assert!(out.changed);
        assert_eq!(p.counts.get("page"), Some(&1));
        assert!(!p.consent.grants[&Purpose::Analytics].granted);
    }

    #[test]
    fn history_and_dedup_window_stay_bounded() {
        let mut events = Vec::new();
        for i in 0..(MAX_SEEN_MESSAGE_IDS + 50) {
            events.push(format!(r#"{{"type":"track","event":"E","anonymousId":"a","messageId":"m{i}",{GRANT}}}"#));
        }
        let (p, out) =
            apply_events(None, request(&format!(r#"{{"batch":[{}]}}"#, events.join(","))), &ConsentPolicy::default());
        let p = p.unwrap();
        assert_eq!(out.stored as usize, MAX_SEEN_MESSAGE_IDS + 50);
        assert_eq!(p.counts["E"] as usize, MAX_SEEN_MESSAGE_IDS + 50);
        assert_eq!(p.recent.len(), MAX_RECENT_EVENTS);
        assert_eq!(p.seen_message_ids.len(), MAX_SEEN_MESSAGE_IDS);
    }
}
