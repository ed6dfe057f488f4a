//! One profile's write: a permitted event applied under the configuration (hashed traits, identity rules,
//! consent policy, experiment goals), and `apply_events`, what a profile's serialized writer runs for a request.

use crate::core::base::sort::CollectInto;
use crate::core::base::value::Value;
use crate::core::model::consent::{Permitted, Purpose, RequestSignals};
use crate::core::model::contact::ProvenBy;
use crate::core::model::event::{Event, EventKind};
use crate::core::model::identity::{hash_identifier, Identity, ANONYMOUS_ID, EMAIL, PHONE, USER_ID};
use crate::core::model::profile::{
    budget, Profile, TraitEntry, MAX_ORDER_AMOUNT, MAX_SEEN_MESSAGE_IDS, ORDER_EVENT, SESSION_GAP,
    UNVERIFIED_BROWSER_CLAIM,
};
use crate::core::model::shown::{Impression, Outcome, Shown};
use crate::core::rules::Config;
use serde::{Deserialize, Serialize};

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

impl Shown {
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
}

impl Profile {
    /// Records which contact points (`Config::contact_traits`) this event proved (`model::contact`): every one
    /// it set, when it comes from a server source or from a browser source the configuration believes; and the
    /// verified claims of its identity token, which are set as traits too when they are newer than what the
    /// profile holds. A browser's own value proves nothing, and the proof of an earlier value does not carry over
    /// to it.
    fn prove_contacts(&mut self, event: &Event, config: &Config) {
        let by = match (event.from_browser, event.believe_contacts) {
            (false, _) => Some(ProvenBy::Server),
            (true, true) => Some(ProvenBy::Configuration),
            (true, false) => None,
        };
        if let (Some(by), EventKind::Identify { traits }) = (by, &event.kind) {
            for name in traits.keys().filter(|k| config.contact_traits.contains(k)) {
                if let Some(t) = self.traits.get(name).filter(|t| t.at == event.timestamp) {
                    self.contacts.prove(name, &t.value, event.timestamp, by);
                }
            }
        }
        for (name, value) in &event.proven_contacts {
            if self.traits.get(name).is_some_and(|t| t.at > event.timestamp) {
                continue;
            }
            let value = if config.hash_traits.contains(name) {
                Value::String(hash_identifier(name, value))
            } else {
                Value::String(value.clone())
            };
            self.contacts.prove(name, &value, event.timestamp, ProvenBy::Token);
            self.traits.insert(name.clone(), TraitEntry { value, at: event.timestamp });
        }
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
        let stored_form = |kind: &str, v: &str| config.stored_identity(kind, v);
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
        if event.imported {
            if let Some(prefs) = &event.consent {
                self.consent.record_basis(&config.consent, prefs, event.timestamp);
            }
        } else {
            self.consent.record_event(&config.consent, &event);
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
        self.prove_contacts(&event, config);
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
        crate::core::engine::predict::observe(&mut self.behaviour, &event, &config.predictions);
        self.first_seen = self.first_seen.min(event.timestamp);
        self.last_seen = self.last_seen.max(event.timestamp);
        // History converts no experiment: nobody was shown anything for it.
        if !event.imported {
            self.shown.convert(&event, config);
        }
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// The events stored, as journeys see them (only when the configuration has journeys).
    #[serde(skip)]
    pub happened: Vec<crate::core::engine::journeys::Happened>,
    /// The events stored, as stored (a trait configured as hashed is its digest), for the export.
    #[serde(skip)]
    pub kept: Vec<Event>,
}

impl ApplyOutcome {
    /// Adds what a later part of the same request did.
    pub fn absorb(&mut self, o: ApplyOutcome) {
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.refused += o.refused;
        self.new_identities.extend(o.new_identities);
        self.changed |= o.changed;
        self.outcomes.extend(o.outcomes);
        self.kept.extend(o.kept);
        self.over_budget.extend(o.over_budget);
        self.happened.extend(o.happened);
    }
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
    for mut event in req.events {
        let at = event.timestamp;
        // The request's CMP answer (its cookie) is the event's when it carries none of its own; under GPC, neither
        // speaks for advertising (the refusal is recorded once, not undone by the string at every event).
        if !event.imported {
            if event.tcf.is_none() {
                event.tcf.clone_from(&req.signals.tcf);
            }
            if let Some(t) = event.tcf.as_mut().filter(|_| req.signals.gpc && policy.honor_gpc) {
                t.prefs.clear(Purpose::Advertising);
            }
        }
        let message_id = event.message_id.clone();
        let stored = profile.as_ref().map(|p| &p.consent);
        let imported = event.imported;
        let permitted = if imported {
            crate::core::model::consent::permit_import(policy, stored, event)
        } else {
            crate::core::model::consent::permit_collection(policy, stored, event, &req.signals)
        };
        match permitted {
            Ok(permitted) => {
                let p = profile.get_or_insert_with(|| Profile::new(req.profile_id.clone(), permitted.get().timestamp));
                let happened = (!config.journeys.is_empty()).then(|| {
                    let e = permitted.get();
                    crate::core::engine::journeys::Happened {
                        name: e.count_key().to_string(),
                        props: e.properties().cloned().unwrap_or_default(),
                        at: e.timestamp,
                    }
                });
                let kept = as_stored(permitted.get(), config);
                let (applied, added) = p.apply(permitted, config);
                match applied {
                    Applied::Stored => {
                        out.kept.push(kept);
                        out.stored += 1;
                        out.changed = true;
                        out.happened.extend(happened);
                    }
                    Applied::Duplicate => out.duplicates += 1,
                    Applied::OverBudget { field } => out.over_budget.push((message_id, field)),
                }
                out.new_identities.extend(added);
            }
            Err(refused) => {
                out.refused += 1;
                if let Some(p) = profile.as_mut() {
                    // An import refused for this person records only the refusals it carries: no grant of its
                    // lands beside a refusal of analytics the person made.
                    out.changed |= match (imported, refused.consent.as_ref()) {
                        (true, Some(prefs)) => {
                            let refusals =
                                prefs.iter().filter(|(_, g)| !**g).map(|(k, g)| (k.clone(), *g)).collect_map();
                            p.consent.record_basis(policy, &refusals, refused.timestamp)
                        }
                        (true, None) => false,
                        (false, _) => p.consent.record_event(policy, &refused),
                    };
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

/// An event as the profile keeps it: an identify's traits configured as hashed are their digests.
fn as_stored(e: &Event, config: &Config) -> Event {
    let mut e = e.clone();
    if let EventKind::Identify { traits } = &mut e.kind {
        for (k, v) in traits.iter_mut() {
            if let Value::String(clear) = v {
                if config.hash_traits.contains(k) {
                    *v = Value::String(hash_identifier(k, clear));
                }
            }
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::time::{Millis, DAY};
    use crate::core::model::consent::Purpose;
    use crate::core::model::history::MAX_RECENT_EVENTS;
    use crate::core::model::shown::Assignment;
    use crate::core::wire::events::parse_batch;

    const NOW: Millis = 1_795_344_600_000;

    fn request(json: &str) -> ApplyRequest {
        let parsed = parse_batch(json.as_bytes(), NOW).unwrap();
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        ApplyRequest { profile_id: "p_test".into(), events: parsed.events, ..ApplyRequest::default() }
    }

    const GRANT: &str = r#""context":{"consent":{"categoryPreferences":{"analytics":true,"personalization":true}}}"#;

    /// Who may prove a contact point, one row each: a server source, a token's verified claim, a browser source
    /// the configuration believes; never a page on its own word, and never for a value it replaced.
    #[test]
    fn contact_points_are_proven_only_by_a_server_a_token_or_the_configuration() {
        use crate::core::model::contact::ProvenBy;
        let config = Config::default();
        let identify = |m: &str, traits: &str, at: &str| {
            format!(
                r#"{{"type":"identify","anonymousId":"a","messageId":"{m}","timestamp":"{at}","traits":{{{traits}}},{GRANT}}}"#
            )
        };
        type Setup = fn(&mut Event);
        let browser: Setup = |e| e.from_browser = true;
        let believed: Setup = |e| {
            e.from_browser = true;
            e.believe_contacts = true;
        };
        let token: Setup = |e| {
            e.from_browser = true;
            e.proven_contacts = vec![("email".into(), "ana@x.example".into())];
        };
        let server: Setup = |_| {};
        // Events in order (traits, how it was sent), then the e-mail held and who proved it, if anyone did.
        type Row<'a> = (&'a str, Vec<(&'a str, Setup)>, Option<&'a str>, Option<ProvenBy>);
        let rows: Vec<Row> = vec![
            ("page", vec![(r#""email":"ana@x.example""#, browser)], Some("ana@x.example"), None),
            ("server", vec![(r#""email":"ana@x.example""#, server)], Some("ana@x.example"), Some(ProvenBy::Server)),
            (
                "believed",
                vec![(r#""email":"ana@x.example""#, believed)],
                Some("ana@x.example"),
                Some(ProvenBy::Configuration),
            ),
            ("token sets it", vec![(r#""firstName":"Ana""#, token)], Some("ana@x.example"), Some(ProvenBy::Token)),
            (
                "token wins over the page",
                vec![(r#""email":"victim@y.example""#, token)],
                Some("ana@x.example"),
                Some(ProvenBy::Token),
            ),
            (
                "page replaces a proven one",
                vec![(r#""email":"ana@x.example""#, server), (r#""email":"victim@y.example""#, browser)],
                Some("victim@y.example"),
                None,
            ),
            (
                "page repeats a proven one",
                vec![(r#""email":"ana@x.example""#, server), (r#""email":"ana@x.example""#, browser)],
                Some("ana@x.example"),
                Some(ProvenBy::Server),
            ),
            ("not a contact trait", vec![(r#""plan":"gold""#, server)], None, None),
        ];
        for (name, events, want_value, want_by) in rows {
            let mut profile = None;
            for (i, (traits, setup)) in events.iter().enumerate() {
                let at = format!("2026-11-22T10:0{i}:00Z");
                let mut r = request(&format!(r#"{{"batch":[{}]}}"#, identify(&format!("m{i}"), traits, &at)));
                for e in &mut r.events {
                    setup(e);
                }
                profile = apply_events(profile, r, &config).0;
            }
            let p = profile.expect("stored");
            let held = p.traits.get("email").and_then(|t| t.value.as_str().map(String::from));
            assert_eq!(held.as_deref(), want_value, "{name}");
            let by = p.traits.get("email").and_then(|t| p.contacts.proof_of("email", &t.value)).map(|c| c.by);
            assert_eq!(by, want_by, "{name}");
            assert_eq!(p.contact_verified("email"), want_by.is_some(), "{name}");
        }
    }

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
        assert_eq!(
            p.recent.front().unwrap().at,
            crate::core::base::time::parse_iso8601("2026-11-22T09:00:00Z").unwrap()
        );
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
        let config = crate::core::rules::compile_str(r#"{"privacy": {"hashTraits": ["email", "phone"]}}"#).unwrap();
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

    /// The request's CMP cookie speaks for each event that has no string of its own, and is recorded with the
    /// CMP as the source; under GPC it never grants advertising, so two events leave one refusal in the trail.
    #[test]
    fn the_cmp_cookie_speaks_for_events_and_gpc_holds_against_it() {
        use crate::core::model::consent::Preferences;
        use crate::core::model::tcf::TcfSignal;
        let config = Config::default();
        let mut prefs = Preferences::default();
        for p in [Purpose::Analytics, Purpose::Advertising] {
            prefs.set(p, true);
        }
        prefs.set(Purpose::Personalization, false);
        let body = r#"{"batch":[{"type":"page","anonymousId":"a","messageId":"1"},{"type":"page","anonymousId":"a","messageId":"2"}]}"#;
        for gpc in [false, true] {
            let mut req = request(body);
            req.signals.tcf = Some(TcfSignal { prefs, cmp_id: 31 });
            req.signals.gpc = gpc;
            let (p, out) = apply_events(None, req, &config);
            assert_eq!(out.stored, 2, "the cookie grants analytics (opt-in, nothing sent)");
            let trail: Vec<String> = p
                .unwrap()
                .consent
                .history
                .iter()
                .map(|c| format!("{}={}@{}", c.purpose.name(), c.granted, c.source))
                .collect();
            let advertising = if gpc { "advertising=false@gpc" } else { "advertising=true@tcf:31" };
            let want = vec!["analytics=true@tcf:31", "personalization=false@tcf:31", advertising];
            assert_eq!(trail, want, "gpc {gpc}");
        }
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
        let config = crate::core::rules::compile_str(
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
        let config = crate::core::rules::compile_str(
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
