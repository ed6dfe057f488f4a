//! The unified profile: identities, traits, counts, consent and a bounded recent history, and how a
//! permitted event changes it.

use crate::core::aggregate::{day_of, series_key, Aggregates};
use crate::core::config::Config;
use crate::core::consent::{ConsentState, Grant, HasConsent, Permitted, Purpose, RequestSignals};
use crate::core::event::{Event, EventKind};
use crate::core::identity::{hash_identifier, normalize_identifier, Identity, ANONYMOUS_ID, EMAIL, PHONE, USER_ID};
use crate::core::time::{format_iso8601, Millis, DAY, MINUTE};
use crate::core::value::{map_to_json, Value};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// How many recent events a profile keeps for windowed segment conditions with exact times. The oldest go
/// first, so the profile's size is bounded whatever the traffic; the daily aggregates keep counting for 30 days.
pub const MAX_RECENT_EVENTS: usize = 200;
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
/// Scalar properties kept per recent event, and the longest string kept.
pub const MAX_RECORD_PROPS: usize = 16;
pub const MAX_RECORD_STRING: usize = 128;

/// A trait value with the event time that set it, so that the latest event wins whatever order events arrive in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraitEntry {
    pub value: Value,
    pub at: Millis,
}

/// A compact record of one event, enough for windowed counts with property filters, and for uniting two
/// histories by `messageId` when profiles merge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at: Millis,
    pub name: String,
    pub message_id: String,
    pub props: BTreeMap<String, Value>,
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

/// Impression times kept per block: enough for any frequency cap up to this many per period.
pub const MAX_IMPRESSIONS: usize = 64;

/// What a profile was shown, as decisions record it: impressions per block (for frequency caps) and experiment
/// assignments (sticky, and the base of exposure and conversion counts).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    /// Block id to impression times, oldest first, at most `MAX_IMPRESSIONS`.
    pub impressions: BTreeMap<String, VecDeque<Millis>>,
    /// Experiment id to the assignment made at first exposure.
    pub experiments: BTreeMap<String, Assignment>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// A variant id, or `control` for the holdout.
    pub variant: String,
    /// The first exposure.
    pub at: Millis,
    /// The first goal event within the experiment's window after exposure.
    pub converted_at: Option<Millis>,
}

/// One answer a decision served, to be recorded on the profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Impression {
    pub block: String,
    pub variant: String,
    pub experiment: Option<String>,
    pub at: Millis,
}

/// A change to an experiment's counts that recording caused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Exposed {
        experiment: String,
        variant: String,
    },
    Converted {
        experiment: String,
        variant: String,
    },
    /// A merge united two profiles that were both exposed: the person keeps the earlier assignment, and the
    /// other one's exposure (and its conversion, if it had one) no longer counts.
    Withdrawn {
        experiment: String,
        variant: String,
        converted: bool,
    },
}

impl Shown {
    /// Records impressions; the first exposure to an experiment fixes its assignment.
    pub fn record(&mut self, impressions: &[Impression]) {
        for i in impressions {
            self.add_impression(&i.block, i.at);
            if let Some(e) = &i.experiment {
                if !self.experiments.contains_key(e) {
                    let a = Assignment { variant: i.variant.clone(), at: i.at, converted_at: None };
                    self.experiments.insert(e.clone(), a);
                }
            }
        }
    }

    /// The exposures and conversions that happened since `before` (the same profile earlier), for the
    /// experiments' counts.
    pub fn outcomes_since(&self, before: &Shown) -> Vec<Outcome> {
        let mut out = Vec::new();
        for (e, a) in &self.experiments {
            let was = before.experiments.get(e);
            let (experiment, variant) = (e.clone(), a.variant.clone());
            if was.is_none() {
                out.push(Outcome::Exposed { experiment: experiment.clone(), variant: variant.clone() });
            }
            if a.converted_at.is_some() && was.is_none_or(|w| w.converted_at.is_none()) {
                out.push(Outcome::Converted { experiment, variant });
            }
        }
        out
    }

    /// Marks the assignments that this event converts: a goal event within the window after first exposure.
    fn convert(&mut self, event: &Event, config: &Config) {
        for (id, a) in self.experiments.iter_mut().filter(|(_, a)| a.converted_at.is_none()) {
            let Some(x) = config.experiment(id) else { continue };
            let in_window = event.timestamp >= a.at && event.timestamp <= a.at.saturating_add(x.goal.within);
            let props = event.properties();
            let goal_met =
                event.count_key() == x.goal.event && x.goal.filters.iter().all(|f| props.is_some_and(|p| f.matches(p)));
            if in_window && goal_met {
                a.converted_at = Some(event.timestamp);
            }
        }
    }

    /// Adds one impression time to a block's, in time order, keeping the latest `MAX_IMPRESSIONS`.
    fn add_impression(&mut self, block: &str, at: Millis) {
        let times = self.impressions.entry(block.to_string()).or_default();
        let pos = times.partition_point(|t| *t <= at);
        times.insert(pos, at);
        while times.len() > MAX_IMPRESSIONS {
            times.pop_front();
        }
    }

    /// Impressions of a block within `per` before `now`.
    pub fn impressions_within(&self, block: &str, per: Millis, now: Millis) -> usize {
        self.impressions.get(block).map_or(0, |t| t.iter().filter(|at| **at > now - per && **at <= now).count())
    }

    /// Unites another profile's record (a merge): impressions of both, and for each experiment the earlier
    /// assignment, so that a person keeps the variant they saw first. Answers the changes to the experiments'
    /// counts: both profiles were counted when exposed, and one person must count once, in the variant kept;
    /// a conversion on the dropped side after the kept exposure moves to the kept variant.
    pub fn absorb(&mut self, other: &Shown) -> Vec<Outcome> {
        for (block, times) in &other.impressions {
            for at in times {
                self.add_impression(block, *at);
            }
        }
        let mut withdrawn = Vec::new();
        for (e, theirs) in &other.experiments {
            let Some(mine) = self.experiments.get_mut(e) else {
                self.experiments.insert(e.clone(), theirs.clone());
                continue;
            };
            // The earlier assignment is kept (`kept`), the other one is dropped.
            let dropped = if mine.at <= theirs.at { theirs.clone() } else { std::mem::replace(mine, theirs.clone()) };
            let kept = mine;
            withdrawn.push(Outcome::Withdrawn {
                experiment: e.clone(),
                variant: dropped.variant.clone(),
                converted: dropped.converted_at.is_some(),
            });
            // A goal reached on the other device counts for the kept variant: the person is analysed in the
            // variant they were assigned first (it came after the kept exposure, which is the earlier one).
            if let (None, Some(c)) = (kept.converted_at, dropped.converted_at.filter(|c| *c >= kept.at)) {
                kept.converted_at = Some(c);
                withdrawn.push(Outcome::Converted { experiment: e.clone(), variant: kept.variant.clone() });
            }
        }
        withdrawn
    }
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
    /// The event would take the profile past its budget (`budget`): nothing of it was applied. The field names
    /// what did not fit (`event`, `traits.<name>`).
    OverBudget {
        field: String,
    },
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
    pub fn apply(&mut self, event: Permitted<Event>, config: &Config) -> (Applied, Vec<Identity>) {
        let event = event.into_inner();
        if self.seen_message_ids.iter().any(|m| *m == event.message_id) {
            return (Applied::Duplicate, Vec::new());
        }
        if let Some(field) = self.over_budget(&event, config) {
            return (Applied::OverBudget { field }, Vec::new());
        }
        self.seen_message_ids.push_back(event.message_id.clone());
        while self.seen_message_ids.len() > MAX_SEEN_MESSAGE_IDS {
            self.seen_message_ids.pop_front();
        }

        // Identities, within the configured limits; junk values are never taken and a refusal is recorded.
        let mut candidates = Vec::new();
        if let Some(a) = &event.anonymous_id {
            candidates.push(Identity::new(ANONYMOUS_ID, a));
        }
        if let Some(u) = &event.user_id {
            candidates.push(Identity::new(USER_ID, u));
        }
        // Other identifiers: the e-mail and phone traits of an identify, and the types the configuration names
        // (a loyalty number, a CRM id) from the identify's traits or from `context.externalIds`. Each is
        // normalized, or hashed when the configuration keeps that trait hashed, so it matches the stored trait.
        let stored_form = |kind: &str, v: &str| {
            let value = if config.hash_traits.iter().any(|t| t == kind) {
                hash_identifier(kind, v)
            } else {
                normalize_identifier(kind, v)
            };
            Identity { kind: kind.to_string(), value }
        };
        let custom =
            |kind: &str| kind != ANONYMOUS_ID && kind != USER_ID && config.identity.identifiers.contains_key(kind);
        if let EventKind::Identify { traits } = &event.kind {
            for (kind, v) in traits {
                if kind == EMAIL || kind == PHONE || custom(kind) {
                    let text = match v {
                        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
                        Value::Number(n) if n.fract() == 0.0 => Some((*n as i64).to_string()),
                        _ => None,
                    };
                    if let Some(text) = text {
                        candidates.push(stored_form(kind, &text));
                    }
                }
            }
        }
        for id in &event.external_ids {
            if id.kind == EMAIL || id.kind == PHONE || custom(&id.kind) {
                candidates.push(stored_form(&id.kind, &id.value));
            }
        }
        // From a browser, only the anonymous id and a proven user id are identities: the other identifiers are
        // claims nobody proved, recorded (in their stored form) as refused so the profile shows what was said.
        if event.from_browser {
            let (own, claims): (Vec<Identity>, Vec<Identity>) =
                candidates.into_iter().partition(|id| id.kind == ANONYMOUS_ID || id.kind == USER_ID);
            candidates = own;
            for id in claims {
                self.refuse_claim(id, UNVERIFIED_BROWSER_CLAIM, event.timestamp, &event.message_id);
            }
        }
        for (id, code) in &event.unproven {
            self.refuse_claim(id.clone(), code, event.timestamp, &event.message_id);
        }
        let mut added = Vec::new();
        for id in candidates {
            if !self.has_identity(&id) && self.admit(id.clone(), &config.identity, event.timestamp, &event.message_id) {
                added.push(id);
            }
        }
        if let Some(prefs) = &event.consent {
            self.consent.record(&config.consent, prefs, event.timestamp, "event");
        }
        if let EventKind::Identify { traits } = &event.kind {
            for (k, v) in traits {
                let newer = self.traits.get(k).is_none_or(|t| t.at <= event.timestamp);
                if newer {
                    // Traits configured as hashed are never held in clear, not even for a moment in storage.
                    let value = match v {
                        Value::String(clear) if config.hash_traits.contains(k) => {
                            Value::String(hash_identifier(k, clear))
                        }
                        other => other.clone(),
                    };
                    self.traits.insert(k.clone(), TraitEntry { value, at: event.timestamp });
                }
            }
        }
        *self.counts.entry(event.count_key().to_string()).or_insert(0) += 1;
        // The first event of a profile, or one after a gap, starts a session.
        let previous = self.recent.iter().rev().map(|r| r.at).find(|&at| at <= event.timestamp);
        if previous.is_none_or(|p| event.timestamp - p > SESSION_GAP) {
            self.computed.sessions += 1;
        }
        if event.count_key() == ORDER_EVENT {
            self.computed.orders += 1;
            let amount =
                event.properties().and_then(|p| p.get("revenue").or_else(|| p.get("total"))).and_then(Value::as_f64);
            // An amount no real order has (1.7e308, say) counts as none: summed, it would overflow the lifetime
            // value to infinity, which JSON cannot even write, for ever.
            self.computed.revenue += amount.filter(|a| a.abs() <= MAX_ORDER_AMOUNT).unwrap_or(0.0);
            self.computed.last_order_at = self.computed.last_order_at.max(Some(event.timestamp));
        }
        self.first_seen = self.first_seen.min(event.timestamp);
        self.last_seen = self.last_seen.max(event.timestamp);
        self.shown.convert(&event, config);
        self.remember(&event);
        (Applied::Stored, added)
    }

    /// The field of `event` that would take the profile past its budget, checked before anything is applied: a new
    /// event name beyond `budget::COUNT_NAMES`, or traits beyond `budget::TRAITS` (a trait the event replaces is
    /// counted at its new size).
    fn over_budget(&self, event: &Event, config: &Config) -> Option<String> {
        let name = event.count_key();
        if !self.counts.contains_key(name) {
            let used: usize = self.counts.keys().map(|k| k.len() + 8).sum();
            if used + name.len() + 8 > budget::COUNT_NAMES {
                let field = if matches!(event.kind, EventKind::Track { .. }) { "event" } else { "type" };
                return Some(field.into());
            }
        }
        if let EventKind::Identify { traits } = &event.kind {
            let weight = |k: &str, v: &Value| k.len() + 8 + v.weight();
            let mut used: usize = self.traits.iter().map(|(k, t)| weight(k, &t.value)).sum();
            for (k, v) in traits {
                // Hashed traits are stored as a fixed-size digest, whatever was sent.
                let new = if config.hash_traits.contains(k) {
                    weight(k, &Value::String("x".repeat(71)))
                } else {
                    weight(k, v)
                };
                let old = self.traits.get(k).map_or(0, |t| weight(k, &t.value));
                used = used.saturating_sub(old) + new;
                if used > budget::TRAITS {
                    return Some(["traits.", k].concat());
                }
            }
        }
        None
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
    /// `computed` holds the configured computed traits' values (`decide::computed_of`).
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

/// A set of events for one profile, as the edge hands them to the profile's serialized writer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyRequest {
    pub profile_id: String,
    pub signals: RequestSignals,
    pub events: Vec<Event>,
    /// Other profiles these events say belong to the same person, to be absorbed first.
    pub links: Vec<Link>,
    /// Decisions served to this profile, to record (frequency caps, experiment exposures). Only an existing
    /// profile records them: a decision for no profile shows fallbacks and records nothing.
    pub impressions: Vec<Impression>,
}

/// An identity that an event links to this profile, and the profile that holds it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The identity on this profile that vouches for the link (the event's `user_id`).
    pub because: Identity,
    /// The identity that belongs to the other profile.
    pub linked: Identity,
    pub profile_id: String,
    /// The event that made the link.
    pub message_id: String,
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
    /// Experiment exposures and conversions these events and impressions caused, for the experiments' counts.
    pub outcomes: Vec<Outcome>,
    /// Events refused because the profile's budget had no room for them: message id and the field that did not fit.
    pub over_budget: Vec<(String, String)>,
}

/// What a profile's writer answers an apply (the Durable Object protocol, one type on both sides): what happened
/// to the events, or that the profile now lives elsewhere (`moved_to`, a tombstone) or was erased moments ago.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApplyAnswer {
    pub stored: u32,
    pub duplicates: u32,
    pub refused: u32,
    /// How many profiles this apply absorbed.
    pub merged: usize,
    /// Events the profile's budget had no room for: message id and the field that did not fit.
    pub over_budget: Vec<(String, String)>,
    pub moved_to: Option<String>,
    pub erased: bool,
}

/// Applies events to the profile they belong to, passing each through the consent check. No profile is
/// created for events that consent does not allow; an existing profile still records a consent change that
/// such an event carries (withdrawal has to be kept as proof).
pub fn apply_events(profile: Option<Profile>, req: ApplyRequest, config: &Config) -> (Option<Profile>, ApplyOutcome) {
    let mut profile = profile;
    let mut out = ApplyOutcome::default();
    let policy = &config.consent;
    let shown_before = profile.as_ref().map(|p| p.shown.clone()).unwrap_or_default();
    if let Some(p) = profile.as_mut().filter(|_| !req.impressions.is_empty()) {
        p.shown.record(&req.impressions);
        out.changed = true;
    }
    for event in req.events {
        let at = event.timestamp;
        let message_id = event.message_id.clone();
        match crate::core::consent::permit_collection(policy, profile.as_ref().map(|p| &p.consent), event, &req.signals)
        {
            Ok(permitted) => {
                let p = profile.get_or_insert_with(|| Profile::new(req.profile_id.clone(), permitted.get().timestamp));
                let (applied, added) = p.apply(permitted, config);
                match applied {
                    Applied::Stored => {
                        out.stored += 1;
                        out.changed = true;
                    }
                    Applied::Duplicate => out.duplicates += 1,
                    Applied::OverBudget { field } => out.over_budget.push((message_id, field)),
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
        if let Some(p) = profile.as_mut() {
            out.changed |= p.consent.record_signals(policy, &req.signals, at);
        }
    }
    if let Some(p) = &profile {
        out.outcomes = p.shown.outcomes_since(&shown_before);
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
        ApplyRequest { profile_id: "p_test".into(), events: parsed.events, ..ApplyRequest::default() }
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
        let (p, out) = apply_events(None, request(&body), &Config::default());
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
            apply_events(None, request(r#"{"batch":[{"type":"page","anonymousId":"a"}]}"#), &Config::default());
        assert!(p.is_none());
        assert_eq!(out.refused, 1);
        assert!(!out.changed);

        let granted = format!(r#"{{"batch":[{{"type":"page","anonymousId":"a",{GRANT}}}]}}"#);
        let (p, _) = apply_events(None, request(&granted), &Config::default());
        let withdraw = r#"{"batch":[{"type":"page","anonymousId":"a","context":{"consent":{"categoryPreferences":{"analytics":false}}}},
                                    {"type":"page","anonymousId":"a"}]}"#;
        let (p, out) = apply_events(p, request(withdraw), &Config::default());
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
            apply_events(None, request(&format!(r#"{{"batch":[{}]}}"#, events.join(","))), &Config::default());
        let p = p.unwrap();
        assert_eq!(out.stored as usize, MAX_SEEN_MESSAGE_IDS + 50);
        assert_eq!(p.counts["E"] as usize, MAX_SEEN_MESSAGE_IDS + 50);
        assert_eq!(p.recent.len(), MAX_RECENT_EVENTS);
        assert_eq!(p.seen_message_ids.len(), MAX_SEEN_MESSAGE_IDS);
    }

    #[test]
    fn configured_traits_are_stored_hashed_and_gpc_is_recorded() {
        let config = crate::core::config::compile_str(r#"{"privacy": {"hashTraits": ["email", "phone"]}}"#).unwrap();
        let body = format!(
            r#"{{"batch":[{{"type":"identify","anonymousId":"a","traits":{{"email":" Ada@Example.com","phone":"+44 20 7946 0000","plan":"gold"}},{GRANT}}}]}}"#
        );
        let mut req = request(&body);
        req.signals.gpc = true;
        let (p, _) = apply_events(None, req, &config);
        let p = p.unwrap();
        assert_eq!(p.traits["email"].value, Value::String(hash_identifier("email", "ada@example.com")));
        assert_eq!(p.traits["phone"].value, Value::String(hash_identifier("phone", "+442079460000")));
        assert_eq!(p.traits["plan"].value, Value::String("gold".into()));
        let exported = p.export_json(&[], &[], 0).to_string();
        assert!(!exported.to_lowercase().contains("ada@example.com") && !exported.contains("7946"), "{exported}");
        assert!(!p.consent.grants[&Purpose::Advertising].granted);
        assert_eq!(p.consent.history.last().unwrap().source, "gpc");
    }

    #[test]
    fn anonymous_profiles_expire_and_known_ones_do_not() {
        let (p, _) = apply_events(
            None,
            request(&format!(r#"{{"batch":[{{"type":"page","anonymousId":"a",{GRANT}}}]}}"#)),
            &Config::default(),
        );
        let p = p.unwrap();
        assert_eq!(p.expires_at(30), Some(p.last_seen + 30 * DAY));
        let (p, _) = apply_events(
            Some(p),
            request(&format!(r#"{{"batch":[{{"type":"identify","anonymousId":"a","userId":"u",{GRANT}}}]}}"#)),
            &Config::default(),
        );
        assert_eq!(p.unwrap().expires_at(30), None);
    }

    #[test]
    fn configured_identifier_types_come_from_traits_and_external_ids() {
        let config = crate::core::config::compile_str(
            r#"{"identity": {"identifiers": {"loyalty_id": {"limit": 1, "priority": 3}, "crm_id": {"limit": 2, "priority": 4}}}}"#,
        )
        .unwrap();
        let body = r#"{"batch":[{"type":"identify","anonymousId":"a","traits":{"loyalty_id":12345,"email":" Ada@Example.com","nickname":"ada"},
               "context":{"externalIds":[{"id":"crm-7","type":"crm_id","collection":"users"},{"id":"x","type":"unconfigured"}],
                           "consent":{"categoryPreferences":{"analytics":true}}}}]}"#;
        let (p, out) = apply_events(None, request(body), &config);
        let keys: Vec<String> = p.unwrap().identities.iter().map(Identity::key).collect();
        assert_eq!(keys, vec!["anonymous_id:a", "email:ada@example.com", "loyalty_id:12345", "crm_id:crm-7"]);
        assert_eq!(out.new_identities.len(), 4, "all are indexed");
        let bad = parse_batch(br#"{"batch":[{"type":"page","anonymousId":"a","context":{"externalIds":[{"id":"1","type":"Bad Type"}]}}]}"#, NOW).unwrap();
        assert_eq!(bad.rejected[0].path, "batch[0].context.externalIds[0].type");
    }

    #[test]
    fn a_profile_stays_within_its_budget_and_keeps_working_at_it() {
        let config = Config::default();
        let track = |m: usize, name: &str| {
            format!(r#"{{"type":"track","event":"{name}","anonymousId":"a","messageId":"m{m}",{GRANT}}}"#)
        };
        // Distinct 200-character event names until the budget for counted names is full.
        let names: Vec<String> = (0..120).map(|i| format!("{i:03}{}", "n".repeat(197))).collect();
        let events: Vec<String> = names.iter().enumerate().map(|(i, n)| track(i, n)).collect();
        let body = format!(r#"{{"batch":[{}]}}"#, events.join(","));
        let (p, out) = apply_events(None, request(&body), &config);
        let mut p = p.unwrap();
        let fit = budget::COUNT_NAMES / (200 + 8);
        assert_eq!(p.counts.len(), fit);
        assert_eq!(out.stored as usize, fit);
        assert_eq!(out.over_budget.len(), 120 - fit);
        assert_eq!(out.over_budget[0], (format!("m{fit}"), "event".to_string()));
        // A name already counted still counts; a new one does not.
        let more = format!(r#"{{"batch":[{},{}]}}"#, track(500, &names[0]), track(501, &names[119]));
        let (q, out) = apply_events(Some(p.clone()), request(&more), &config);
        p = q.unwrap();
        assert_eq!((p.counts[&names[0]], out.stored, out.over_budget.len()), (2, 1, 1));

        // Traits: an identify that would pass the budget changes nothing and names the trait that did not fit.
        let identify = |m: &str, traits: &str| {
            format!(
                r#"{{"batch":[{{"type":"identify","anonymousId":"a","messageId":"{m}","traits":{{{traits}}},{GRANT}}}]}}"#
            )
        };
        let big = |k: &str| format!(r#""{k}":"{}""#, "v".repeat(7000));
        let first = [big("a"), big("b"), big("c"), big("d")].join(",");
        let (q, out) = apply_events(Some(p), request(&identify("t1", &first)), &config);
        let p = q.unwrap();
        assert_eq!((p.traits.len(), out.stored), (4, 1));
        let (q, out) = apply_events(Some(p), request(&identify("t2", &[big("e"), big("f")].join(","))), &config);
        let p = q.unwrap();
        assert_eq!(out.over_budget, vec![("t2".to_string(), "traits.e".to_string())]);
        assert_eq!(p.traits.len(), 4, "nothing of the refused identify was applied");
        // Replacing a trait with one of the same size still fits.
        let (_, out) = apply_events(Some(p), request(&identify("t3", &big("a"))), &config);
        assert_eq!((out.stored, out.over_budget.len()), (1, 0));
    }

    #[test]
    fn absurd_order_amounts_never_make_lifetime_value_infinite() {
        let order = |m: &str, revenue: &str| {
            format!(
                r#"{{"type":"track","event":"Order Completed","anonymousId":"a","messageId":"{m}","properties":{{"revenue":{revenue}}},{GRANT}}}"#
            )
        };
        let body =
            format!(r#"{{"batch":[{},{},{}]}}"#, order("o1", "1.7e308"), order("o2", "1.7e308"), order("o3", "25.5"));
        let (p, _) = apply_events(None, request(&body), &Config::default());
        let p = p.unwrap();
        assert_eq!((p.computed.orders, p.computed.revenue), (3, 25.5));
    }

    #[test]
    fn a_browser_s_identifiers_and_unproven_ids_are_claims_recorded_once_never_identities() {
        let config = crate::core::config::compile_str(
            r#"{"identity": {"identifiers": {"loyalty_id": {"limit": 1, "priority": 3}}}, "privacy": {"hashTraits": ["email"]}}"#,
        )
        .unwrap();
        let body = r#"{"batch":[{"type":"identify","anonymousId":"a","traits":{"loyalty_id":7,"email":"Ada@Example.com"},
               "context":{"externalIds":[{"id":"L-9","type":"loyalty_id"}],"consent":{"categoryPreferences":{"analytics":true}}}},
               {"type":"identify","anonymousId":"a","traits":{"email":"Ada@Example.com"},
               "context":{"consent":{"categoryPreferences":{"analytics":true}}}}]}"#;
        let mut req = request(body);
        for e in &mut req.events {
            e.from_browser = true;
        }
        req.events[0].unproven.push((Identity::new(USER_ID, "alice"), "identity_unproven".into()));
        let (p, out) = apply_events(None, req, &config);
        let p = p.unwrap();
        assert_eq!(p.identities, vec![Identity::new(ANONYMOUS_ID, "a")]);
        assert_eq!(out.new_identities, vec![Identity::new(ANONYMOUS_ID, "a")], "only its own id is indexed");
        let refused: Vec<(String, &str)> = p.refused.iter().map(|r| (r.identity.key(), r.reason.as_str())).collect();
        let email = hash_identifier(EMAIL, "ada@example.com");
        assert_eq!(
            refused,
            [
                (format!("email:{email}"), "unverified claim: sent_by_browser"),
                ("loyalty_id:7".to_string(), "unverified claim: sent_by_browser"),
                ("loyalty_id:L-9".to_string(), "unverified claim: sent_by_browser"),
                ("user_id:alice".to_string(), "unverified claim: identity_unproven"),
            ],
            "each claim once, e-mail in its hashed stored form"
        );
    }

    #[test]
    fn a_merge_keeps_the_earlier_assignment_and_withdraws_the_other_exposure() {
        let assignment = |variant: &str, at, converted_at| Assignment { variant: variant.into(), at, converted_at };
        let mut phone = Shown::default();
        phone.experiments.insert("e1".into(), assignment("a", 100, None));
        phone.experiments.insert("e2".into(), assignment("b", 300, Some(350)));
        let mut laptop = Shown::default();
        laptop.experiments.insert("e1".into(), assignment("b", 200, Some(250)));
        laptop.experiments.insert("e2".into(), assignment("b", 50, None));
        laptop.experiments.insert("e3".into(), assignment("a", 10, None));
        let withdrawn = phone.absorb(&laptop);
        let kept: Vec<(&str, &str)> = phone.experiments.iter().map(|(e, a)| (e.as_str(), a.variant.as_str())).collect();
        assert_eq!(kept, [("e1", "a"), ("e2", "b"), ("e3", "a")]);
        assert_eq!(phone.experiments["e2"].at, 50, "the laptop saw e2 first");
        assert_eq!(
            withdrawn,
            [
                // e1: the laptop's exposure and conversion go; its conversion (250) came after the phone's exposure
                // (100), so it now counts for the phone's variant.
                Outcome::Withdrawn { experiment: "e1".into(), variant: "b".into(), converted: true },
                Outcome::Converted { experiment: "e1".into(), variant: "a".into() },
                // e2: the laptop saw it first; the phone's exposure goes, its conversion moves to the kept one.
                Outcome::Withdrawn { experiment: "e2".into(), variant: "b".into(), converted: true },
                Outcome::Converted { experiment: "e2".into(), variant: "b".into() },
            ],
            "each doubly counted person is taken back once"
        );
        assert_eq!(
            (phone.experiments["e1"].converted_at, phone.experiments["e2"].converted_at),
            (Some(250), Some(350))
        );
    }
}
