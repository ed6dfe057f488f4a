//! Consent: which purposes a visitor has allowed, and the one check that every storing and personalizing
//! path must pass.
//!
//! The check returns `Permitted<T>`, which only this module can construct. `Profile::apply` (`engine::apply`) takes a
//! `Permitted<Event>` and `decide` takes a `Permitted<&Profile>`, so a call path that skipped the check does
//! not compile.

use crate::core::base::sort;
use crate::core::base::time::Millis;
use crate::core::model::event::Event;
pub use crate::core::model::purpose::{Preferences, Purpose};
use crate::core::model::tcf::{TcfPolicy, TcfSignal};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether optional purposes start refused (`OptIn`, as GDPR requires) or granted (`OptOut`, as CCPA allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Model {
    OptIn,
    OptOut,
}

/// The compiled `consent` section of the configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentPolicy {
    pub model: Model,
    /// Country code (ISO 3166-1 alpha-2, upper case) to the model used there.
    pub regions: BTreeMap<String, Model>,
    pub honor_gpc: bool,
    /// CMP category (`C0002`) to purpose.
    pub categories: BTreeMap<String, Purpose>,
    /// How IAB TCF strings map to purposes (`model::tcf`). Edge-only: a device's rules never carry it (the
    /// loader maps the CMP's answer itself).
    #[serde(skip)]
    pub tcf: TcfPolicy,
}

impl ConsentPolicy {
    /// The policy where nothing is configured: opt-in everywhere, GPC honoured, no CMP categories. A constant, so
    /// that the browser can keep it in a `static` (which it never drops, and whose empty maps the optimizer sees).
    pub const DEFAULT: ConsentPolicy = ConsentPolicy {
        model: Model::OptIn,
        regions: BTreeMap::new(),
        honor_gpc: true,
        categories: BTreeMap::new(),
        tcf: TcfPolicy::DEFAULT,
    };
}

impl Default for ConsentPolicy {
    fn default() -> Self {
        ConsentPolicy::DEFAULT
    }
}

/// What the request itself says about the visitor, as the shell observed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestSignals {
    /// Country of the request, upper case.
    pub country: Option<String>,
    /// `Sec-GPC: 1` was sent.
    pub gpc: bool,
    /// The visitor's offset from UTC in minutes at the request's time (from its time zone), when known: journeys
    /// keep quiet hours and local-time windows in it.
    pub utc_offset_minutes: Option<i32>,
    /// What the request's TC string (the CMP's `euconsent-v2` cookie, or a decide body's `tcString`) says,
    /// mapped by `consent.tcf`; `None` without one, or when it is stale.
    pub tcf: Option<TcfSignal>,
}

/// One recorded decision for one purpose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub granted: bool,
    pub at: Millis,
    pub source: String,
}

/// How many consent changes a profile keeps as its audit trail; the oldest go first beyond it.
pub const MAX_CONSENT_HISTORY: usize = 100;

/// One change of one purpose, kept as proof of what the visitor chose and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentChange {
    pub purpose: Purpose,
    pub granted: bool,
    pub at: Millis,
    /// Where the choice came from: `event` (preferences sent with an event), `gpc` (the `Sec-GPC` header),
    /// `import`, or `tcf:` and the CMP's id (a TC string, from the request's cookie or the event's context).
    pub source: String,
}

/// The decisions a profile has recorded, per optional purpose, and the changes that led to them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsentState {
    pub grants: BTreeMap<Purpose, Grant>,
    /// Oldest first, at most `MAX_CONSENT_HISTORY`.
    pub history: Vec<ConsentChange>,
}

impl ConsentState {
    /// A merge's part: each purpose takes the later decision of the two (the survivor's on a tie), and the audit
    /// trails are united in time order, duplicates once, the newest `MAX_CONSENT_HISTORY` kept. Returns the
    /// survivor's grants that were replaced (`None`: it had none), which a split puts back.
    pub fn absorb(&mut self, other: &ConsentState) -> BTreeMap<Purpose, Option<Grant>> {
        let mut replaced = BTreeMap::new();
        for (purpose, grant) in &other.grants {
            let current = self.grants.get(purpose);
            if current.is_none_or(|c| c.at < grant.at) {
                replaced.insert(*purpose, current.cloned());
                self.grants.insert(*purpose, grant.clone());
            }
        }
        let mut trail: Vec<ConsentChange> = self.history.drain(..).chain(other.history.iter().cloned()).collect();
        sort::sort_by_key(&mut trail, |c| c.at);
        trail.dedup();
        let excess = trail.len().saturating_sub(MAX_CONSENT_HISTORY);
        self.history = trail.split_off(excess);
        replaced
    }

    /// Records the preferences an event carried, where they change what was recorded before. Returns whether
    /// anything changed.
    pub fn record(&mut self, policy: &ConsentPolicy, prefs: &BTreeMap<String, bool>, at: Millis, source: &str) -> bool {
        let mut changed = false;
        for (purpose, granted) in policy.preferences(prefs).iter() {
            changed |= self.set(purpose, granted, at, source);
        }
        changed
    }

    /// Records what an import declares (`permit_import`): a refusal like any other, but a grant only for a
    /// purpose the person has recorded nothing for, so that an import never overrides a choice they made.
    pub fn record_basis(&mut self, policy: &ConsentPolicy, prefs: &BTreeMap<String, bool>, at: Millis) -> bool {
        let mut changed = false;
        for (purpose, granted) in policy.preferences(prefs).iter() {
            if !granted || !self.grants.contains_key(&purpose) {
                changed |= self.set(purpose, granted, at, "import");
            }
        }
        changed
    }

    /// Records one purpose's decision if it is newer than, and differs from, what was recorded.
    pub fn set(&mut self, purpose: Purpose, granted: bool, at: Millis, source: &str) -> bool {
        let newer = self.grants.get(&purpose).is_none_or(|g| g.at <= at);
        let differs = self.grants.get(&purpose).is_none_or(|g| g.granted != granted);
        if !(newer && differs) {
            return false;
        }
        self.grants.insert(purpose, Grant { granted, at, source: source.to_string() });
        self.history.push(ConsentChange { purpose, granted, at, source: source.to_string() });
        if self.history.len() > MAX_CONSENT_HISTORY {
            let excess = self.history.len() - MAX_CONSENT_HISTORY;
            self.history.drain(..excess);
        }
        true
    }

    /// Records what the request itself says: `Sec-GPC: 1` is a refusal of advertising, stored as such so that
    /// the profile shows it and later requests without the header still honour it. (The request's TC string is
    /// recorded with each event, as the event's own: `record_event`.)
    pub fn record_signals(&mut self, policy: &ConsentPolicy, signals: &RequestSignals, at: Millis) -> bool {
        signals.gpc && policy.honor_gpc && self.set(Purpose::Advertising, false, at, "gpc")
    }

    /// Records what an event carried: its named preferences, then what the CMP said (`Event::tcf`) for the
    /// purposes those leave open. A named choice the CMP's string makes too came from the CMP (the loader passes
    /// the CMP's answer on): its source is `tcf:` and the CMP's id, as is the rest of the string's; otherwise
    /// `event`.
    pub fn record_event(&mut self, policy: &ConsentPolicy, event: &Event) -> bool {
        let named = event.consent.as_ref().map(|p| policy.preferences(p)).unwrap_or_default();
        let cmp = event.tcf.as_ref();
        let mut changed = false;
        for (purpose, granted) in named.iter() {
            let source = match cmp {
                Some(t) if t.prefs.get(purpose) == Some(granted) => t.source(),
                _ => "event".to_string(),
            };
            changed |= self.set(purpose, granted, event.timestamp, &source);
        }
        if let Some(t) = cmp {
            let source = t.source();
            for (purpose, granted) in t.prefs.iter().filter(|(p, _)| named.get(*p).is_none()) {
                changed |= self.set(purpose, granted, event.timestamp, &source);
            }
        }
        changed
    }
}

/// What is allowed, all inputs considered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Effective {
    pub analytics: bool,
    pub personalization: bool,
    pub advertising: bool,
    pub marketing: bool,
}

impl Effective {
    pub fn allows(&self, purpose: Purpose) -> bool {
        match purpose {
            Purpose::Necessary => true,
            Purpose::Analytics => self.analytics,
            Purpose::Personalization => self.personalization,
            Purpose::Advertising => self.advertising,
            Purpose::Marketing => self.marketing,
        }
    }
}

impl ConsentPolicy {
    /// The model in force for a request from `country`.
    pub fn model_for(&self, country: Option<&str>) -> Model {
        country.and_then(|c| self.regions.get(&c.to_ascii_uppercase())).copied().unwrap_or(self.model)
    }

    /// Maps sent preferences (purpose names or CMP categories) to purposes. Where two categories map to the
    /// same purpose and disagree, the refusal wins.
    pub fn preferences<'a>(&self, prefs: impl IntoIterator<Item = (&'a String, &'a bool)>) -> Preferences {
        let mut out = Preferences::default();
        for (k, &granted) in prefs {
            let purpose = self.categories.get(k).copied().or_else(|| Purpose::parse(k));
            if let Some(i) = purpose.and_then(Preferences::slot) {
                out.0[i] = Some(out.0[i].unwrap_or(true) && granted);
            }
        }
        out
    }

    /// What an event says for itself: its named preferences, then what the CMP said for the purposes they leave
    /// open.
    pub fn sent_by(&self, event: &Event) -> Preferences {
        let named = event.consent.as_ref().map(|p| self.preferences(p)).unwrap_or_default();
        event.tcf.as_ref().map_or(named, |t| named.or(t.prefs))
    }

    /// Decides each purpose. Order of precedence: GPC refuses advertising whatever else says; then the
    /// preferences sent with this call; then the request's TC string; then what the profile recorded; then the
    /// model's default.
    pub fn effective(
        &self,
        stored: Option<&ConsentState>,
        sent: Option<&BTreeMap<String, bool>>,
        signals: &RequestSignals,
    ) -> Effective {
        self.effective_for(stored, sent.map(|p| self.preferences(p)).unwrap_or_default(), signals)
    }

    /// `effective` for preferences already mapped to purposes (`preferences`), for callers that keep the sent
    /// preferences in another collection than a map.
    pub fn effective_for(
        &self,
        stored: Option<&ConsentState>,
        sent: Preferences,
        signals: &RequestSignals,
    ) -> Effective {
        let default = self.model_for(signals.country.as_deref()) == Model::OptOut;
        let decide = |p: Purpose| -> bool {
            if p == Purpose::Advertising && signals.gpc && self.honor_gpc {
                return false;
            }
            if let Some(g) = sent.get(p).or_else(|| signals.tcf.as_ref().and_then(|t| t.prefs.get(p))) {
                return g;
            }
            stored.and_then(|s| s.grants.get(&p)).map(|g| g.granted).unwrap_or(default)
        };
        Effective {
            analytics: decide(Purpose::Analytics),
            personalization: decide(Purpose::Personalization),
            advertising: decide(Purpose::Advertising),
            marketing: decide(Purpose::Marketing),
        }
    }
}

/// Google Consent Mode v2's four signals for what is allowed: `ad_storage` and `ad_user_data` follow advertising,
/// `analytics_storage` analytics, and `ad_personalization` needs both advertising and personalization.
pub fn google_consent_mode(e: &Effective) -> [(&'static str, bool); 4] {
    [
        ("ad_storage", e.advertising),
        ("analytics_storage", e.analytics),
        ("ad_user_data", e.advertising),
        ("ad_personalization", e.advertising && e.personalization),
    ]
}

/// Proof that consent was checked and allows what the wrapped value is used for.
#[derive(Debug)]
pub struct Permitted<T>(T);

impl<T> Permitted<T> {
    pub fn get(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

/// The one collection check: may this event be stored? Gives the event back when it may not.
pub fn permit_collection(
    policy: &ConsentPolicy,
    stored: Option<&ConsentState>,
    event: Event,
    signals: &RequestSignals,
) -> Result<Permitted<Event>, Box<Event>> {
    if policy.effective_for(stored, policy.sent_by(&event), signals).analytics {
        Ok(Permitted(event))
    } else {
        Err(Box::new(event))
    }
}

/// The collection check for an imported event (`Event::imported`): a refusal of analytics the person recorded
/// stands whatever the import declares; otherwise the import's declared basis (its `consent`) counts as if sent,
/// with no request signals (the person is not here), under the model where they were last seen (unknown: the
/// default model). Under opt-in, an import with no basis for a person with no recorded grant stores nothing.
pub fn permit_import(
    policy: &ConsentPolicy,
    stored: Option<&ConsentState>,
    event: Event,
) -> Result<Permitted<Event>, Box<Event>> {
    let refused = stored.is_some_and(|s| s.grants.get(&Purpose::Analytics).is_some_and(|g| !g.granted));
    if refused {
        return Err(Box::new(event));
    }
    permit_collection(policy, stored, event, &RequestSignals::default())
}

/// The one personalization check: may decisions use what is held about this visitor?
pub fn permit_personalization<'a, P: HasConsent>(
    policy: &ConsentPolicy,
    subject: &'a P,
    sent: Option<&BTreeMap<String, bool>>,
    signals: &RequestSignals,
) -> Option<Permitted<&'a P>> {
    policy.effective(Some(subject.consent()), sent, signals).personalization.then_some(Permitted(subject))
}

/// The one send check: may a journey's send for `purpose` leave for this person now? Decided, at the moment it
/// leaves, from what the profile recorded and the model in force where the person was last seen (`country`); no
/// request is involved, so neither sent preferences nor GPC headers (a GPC refusal is recorded on the profile).
pub fn permit_send<'a, P: HasConsent>(
    policy: &ConsentPolicy,
    subject: &'a P,
    purpose: Purpose,
    country: Option<&str>,
) -> Option<Permitted<&'a P>> {
    let signals = RequestSignals { country: country.map(String::from), ..RequestSignals::default() };
    policy.effective(Some(subject.consent()), None, &signals).allows(purpose).then_some(Permitted(subject))
}

/// Anything that carries recorded consent (a profile, or a profile summary in the browser).
pub trait HasConsent {
    fn consent(&self) -> &ConsentState;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    /// An import's basis, one row each: (recorded before, at 10; declared at 20; changed; what stands after).
    #[test]
    fn an_import_s_basis_grants_only_where_nothing_was_recorded_and_refuses_like_anyone() {
        let policy = ConsentPolicy::default();
        type Row<'a> = (&'a [(&'a str, bool)], &'a [(&'a str, bool)], bool, &'a [(Purpose, bool)]);
        let rows: Vec<Row> = vec![
            (&[], &[("analytics", true)], true, &[(Purpose::Analytics, true)]),
            (&[("analytics", false)], &[("analytics", true)], false, &[(Purpose::Analytics, false)]),
            (&[("analytics", true)], &[("analytics", true)], false, &[(Purpose::Analytics, true)]),
            (&[("analytics", true)], &[("analytics", false)], true, &[(Purpose::Analytics, false)]),
            (
                &[("personalization", false)],
                &[("analytics", true), ("personalization", true)],
                true,
                &[(Purpose::Analytics, true), (Purpose::Personalization, false)],
            ),
        ];
        for (before, declared, changed, after) in rows {
            let mut state = ConsentState::default();
            state.record(&policy, &prefs(before), 10, "event");
            assert_eq!(state.record_basis(&policy, &prefs(declared), 20), changed, "{before:?} then {declared:?}");
            let stands: Vec<(Purpose, bool)> = state.grants.iter().map(|(p, g)| (*p, g.granted)).collect();
            assert_eq!(stands, after, "{before:?} then {declared:?}");
            let imported = state.history.iter().filter(|c| c.source == "import").count();
            assert_eq!(imported > 0, changed, "what the import recorded says it came from the import");
        }
    }

    /// Each purpose's word reads back as that purpose, in any case; the words are the contract of every consent
    /// map (`context.consent`, the profile's `consent`, `destinations[].purpose`).
    #[test]
    fn purpose_words_read_back() {
        let all = [
            Purpose::Necessary,
            Purpose::Analytics,
            Purpose::Personalization,
            Purpose::Advertising,
            Purpose::Marketing,
        ];
        let names = all.map(Purpose::name);
        assert_eq!(names, ["necessary", "analytics", "personalization", "advertising", "marketing"]);
        for p in all {
            assert_eq!(Purpose::parse(p.name()), Some(p));
            assert_eq!(Purpose::parse(&p.name().to_ascii_uppercase()), Some(p));
        }
        assert_eq!(Purpose::parse("personalisation"), Some(Purpose::Personalization));
        assert_eq!(Purpose::parse("C0002"), None);
    }

    /// Where a TC string stands among the other answers, one row each: (what, sent with the call, the request's
    /// TC string says analytics and advertising, recorded, GPC; analytics and advertising as decided).
    #[test]
    fn a_request_s_tc_string_stands_below_what_the_call_sends_and_above_what_was_recorded() {
        let policy = ConsentPolicy::default();
        let tcf = |an: bool, ad: bool| {
            let mut prefs = Preferences::default();
            prefs.set(Purpose::Analytics, an);
            prefs.set(Purpose::Advertising, ad);
            Some(TcfSignal { prefs, cmp_id: 7 })
        };
        let mut refused = ConsentState::default();
        refused.set(Purpose::Analytics, false, 1, "event");
        refused.set(Purpose::Advertising, false, 1, "event");
        type Row<'a> =
            (&'a str, &'a [(&'a str, bool)], Option<TcfSignal>, Option<&'a ConsentState>, bool, (bool, bool));
        let rows: Vec<Row> = vec![
            ("nothing: opt-in refuses", &[], None, None, false, (false, false)),
            ("the string grants", &[], tcf(true, true), None, false, (true, true)),
            ("over what was recorded", &[], tcf(true, true), Some(&refused), false, (true, true)),
            ("what the call sends wins", &[("analytics", false)], tcf(true, true), None, false, (false, true)),
            ("GPC refuses advertising whatever the string says", &[], tcf(true, true), None, true, (true, false)),
            ("the string refuses", &[], tcf(false, false), None, false, (false, false)),
        ];
        for (what, sent, tcf, stored, gpc, (an, ad)) in rows {
            let signals = RequestSignals { gpc, tcf, ..RequestSignals::default() };
            let e = policy.effective(stored, Some(&prefs(sent)), &signals);
            assert_eq!((e.analytics, e.advertising), (an, ad), "{what}");
        }
    }

    /// The trail names where each choice came from, one row each: (what, the event's named preferences, what the
    /// CMP said for it, the trail after).
    #[test]
    fn an_event_s_choices_are_recorded_with_the_cmp_as_source_where_the_cmp_made_them() {
        let policy = ConsentPolicy::default();
        let cmp = |an: bool, pe: bool| {
            let mut prefs = Preferences::default();
            prefs.set(Purpose::Analytics, an);
            prefs.set(Purpose::Personalization, pe);
            Some(TcfSignal { prefs, cmp_id: 31 })
        };
        type Row<'a> = (&'a str, &'a [(&'a str, bool)], Option<TcfSignal>, &'a [&'a str]);
        let rows: Vec<Row> = vec![
            ("no CMP: the event", &[("analytics", true)], None, &["analytics=true@event"]),
            (
                "the loader passed the CMP's answer on: the CMP",
                &[("analytics", true), ("personalization", false)],
                cmp(true, false),
                &["analytics=true@tcf:31", "personalization=false@tcf:31"],
            ),
            (
                "the event says otherwise than the CMP: the event, for that purpose",
                &[("analytics", false)],
                cmp(true, true),
                &["analytics=false@event", "personalization=true@tcf:31"],
            ),
            ("only the CMP", &[], cmp(true, false), &["analytics=true@tcf:31", "personalization=false@tcf:31"]),
        ];
        for (what, named, tcf, want) in rows {
            let page = crate::core::model::event::EventKind::Page { name: None, properties: BTreeMap::new() };
            let mut event = Event::new("m".into(), Some("a".into()), None, 10, page);
            event.consent = (!named.is_empty()).then(|| prefs(named));
            event.tcf = tcf;
            let mut state = ConsentState::default();
            assert!(
                state.record_event(&policy, &event),
                "{what}: a change is reported (a refused event's withdrawal is stored by it)"
            );
            let trail: Vec<String> =
                state.history.iter().map(|c| format!("{}={}@{}", c.purpose.name(), c.granted, c.source)).collect();
            assert_eq!(trail, want, "{what}");
            assert!(!state.record_event(&policy, &event), "{what}: the same again changes nothing");
        }
    }

    /// What an event says for itself, one row each: (its named preferences, what its CMP said for analytics, the
    /// event's analytics, and whether it may be stored with nothing else to go on).
    #[test]
    fn an_event_speaks_by_its_named_preferences_then_by_its_cmp() {
        let policy = ConsentPolicy::default();
        let cmp = |an: bool| {
            let mut prefs = Preferences::default();
            prefs.set(Purpose::Analytics, an);
            Some(TcfSignal { prefs, cmp_id: 31 })
        };
        type Row<'a> = (&'a [(&'a str, bool)], Option<TcfSignal>, Option<bool>, bool);
        let rows: Vec<Row> = vec![
            (&[], None, None, false),
            (&[], cmp(true), Some(true), true),
            (&[("analytics", false)], cmp(true), Some(false), false),
            (&[("analytics", true)], cmp(false), Some(true), true),
            (&[("personalization", true)], cmp(true), Some(true), true),
        ];
        for (named, tcf, analytics, stored) in rows {
            let page = crate::core::model::event::EventKind::Page { name: None, properties: BTreeMap::new() };
            let mut event = Event::new("m".into(), Some("a".into()), None, 10, page);
            event.consent = (!named.is_empty()).then(|| prefs(named));
            event.tcf = tcf;
            assert_eq!(policy.sent_by(&event).get(Purpose::Analytics), analytics, "{named:?}");
            let permitted = permit_collection(&policy, None, event, &RequestSignals::default()).is_ok();
            assert_eq!(permitted, stored, "{named:?}");
        }
    }

    #[test]
    fn opt_in_refuses_until_granted_and_opt_out_grants_until_refused() {
        let mut policy = ConsentPolicy::default();
        policy.regions.insert("US".into(), Model::OptOut);
        let fr = RequestSignals { country: Some("FR".into()), gpc: false, ..RequestSignals::default() };
        let us = RequestSignals { country: Some("us".into()), gpc: false, ..RequestSignals::default() };
        assert!(!policy.effective(None, None, &fr).analytics);
        assert!(policy.effective(None, None, &us).analytics);
        assert!(!policy.effective(None, Some(&prefs(&[("Analytics", false)])), &us).analytics);
        assert!(policy.effective(None, Some(&prefs(&[("analytics", true)])), &fr).analytics);
    }

    #[test]
    fn gpc_refuses_advertising_whatever_else_says() {
        let policy = ConsentPolicy { model: Model::OptOut, ..ConsentPolicy::default() };
        let gpc = RequestSignals { country: None, gpc: true, ..RequestSignals::default() };
        let e = policy.effective(None, Some(&prefs(&[("advertising", true)])), &gpc);
        assert!(!e.advertising);
        assert!(e.analytics);
    }

    #[test]
    fn cmp_categories_map_to_purposes_and_refusal_wins() {
        let mut policy = ConsentPolicy::default();
        policy.categories.insert("C0002".into(), Purpose::Analytics);
        policy.categories.insert("C0009".into(), Purpose::Analytics);
        let got = policy.preferences(&prefs(&[("C0002", true), ("C0009", false), ("unknown", true)]));
        assert_eq!(got.iter().collect::<Vec<_>>(), vec![(Purpose::Analytics, false)]);
    }

    #[test]
    fn gpc_is_recorded_as_a_refusal_of_advertising_and_the_trail_is_bounded() {
        let policy = ConsentPolicy::default();
        let mut state = ConsentState::default();
        state.record(&policy, &prefs(&[("advertising", true)]), 10, "event");
        let gpc = RequestSignals { country: None, gpc: true, ..RequestSignals::default() };
        assert!(state.record_signals(&policy, &gpc, 20));
        assert!(!state.grants[&Purpose::Advertising].granted);
        assert_eq!(state.grants[&Purpose::Advertising].source, "gpc");
        assert!(!state.record_signals(&policy, &gpc, 30), "no change, no new entry");
        let ignoring = ConsentPolicy { honor_gpc: false, ..ConsentPolicy::default() };
        assert!(!ConsentState::default().record_signals(&ignoring, &gpc, 20));
        for i in 0..(MAX_CONSENT_HISTORY as i64 + 10) {
            state.set(Purpose::Analytics, i % 2 == 0, 100 + i, "event");
        }
        assert_eq!(state.history.len(), MAX_CONSENT_HISTORY);
        assert_eq!(state.history.last().unwrap().at, 100 + MAX_CONSENT_HISTORY as i64 + 9);
    }

    #[test]
    fn stored_grants_apply_when_the_call_sends_none_and_only_newer_changes_replace_them() {
        let policy = ConsentPolicy::default();
        let mut state = ConsentState::default();
        assert!(state.record(&policy, &prefs(&[("analytics", true)]), 100, "event"));
        assert!(!state.record(&policy, &prefs(&[("analytics", false)]), 50, "event"), "older change ignored");
        assert!(policy.effective(Some(&state), None, &RequestSignals::default()).analytics);
        assert!(state.record(&policy, &prefs(&[("analytics", false)]), 200, "event"));
        assert!(!policy.effective(Some(&state), None, &RequestSignals::default()).analytics);
        let trail: Vec<(Purpose, bool, Millis)> = state.history.iter().map(|c| (c.purpose, c.granted, c.at)).collect();
        assert_eq!(trail, vec![(Purpose::Analytics, true, 100), (Purpose::Analytics, false, 200)]);
    }

    /// A merge keeps the later decision per purpose (the survivor's on a tie) and reports what it replaced; the
    /// trails unite in time order without duplicates and keep only the newest.
    #[test]
    fn absorbing_keeps_the_later_decision_and_one_trail() {
        let grant = |granted, at| Grant { granted, at, source: "event".into() };
        let change = |purpose, granted, at| ConsentChange { purpose, granted, at, source: "event".into() };
        let mut survivor = ConsentState::default();
        survivor.grants.insert(Purpose::Marketing, grant(true, 10));
        survivor.grants.insert(Purpose::Analytics, grant(false, 7));
        survivor.grants.insert(Purpose::Advertising, grant(true, 5));
        survivor.history = vec![change(Purpose::Analytics, false, 7), change(Purpose::Marketing, true, 10)];
        let mut other = ConsentState::default();
        other.grants.insert(Purpose::Marketing, grant(false, 20));
        other.grants.insert(Purpose::Analytics, grant(true, 5));
        other.grants.insert(Purpose::Advertising, grant(false, 5));
        other.grants.insert(Purpose::Personalization, grant(true, 3));
        other.history = vec![change(Purpose::Personalization, true, 3), change(Purpose::Analytics, false, 7)];
        let replaced = survivor.absorb(&other);
        assert_eq!(
            replaced,
            BTreeMap::from([(Purpose::Marketing, Some(grant(true, 10))), (Purpose::Personalization, None)])
        );
        assert_eq!(survivor.grants[&Purpose::Marketing], grant(false, 20), "the later decision wins");
        assert_eq!(survivor.grants[&Purpose::Analytics], grant(false, 7), "an older one does not");
        assert_eq!(survivor.grants[&Purpose::Advertising], grant(true, 5), "on a tie the survivor's stays");
        assert_eq!(survivor.grants[&Purpose::Personalization], grant(true, 3));
        let at: Vec<Millis> = survivor.history.iter().map(|c| c.at).collect();
        assert_eq!(at, [3, 7, 10], "in time order, the shared change once");
        // Past the bound, the oldest go.
        let history = (0..MAX_CONSENT_HISTORY as Millis).map(|i| change(Purpose::Marketing, true, 100 + i)).collect();
        let mut long = ConsentState { history, ..ConsentState::default() };
        long.absorb(&survivor);
        assert_eq!(long.history.len(), MAX_CONSENT_HISTORY);
        assert_eq!(long.history.first().map(|c| c.at), Some(100), "the three older changes went");
    }
}
