//! Consent: which purposes a visitor has allowed, and the one check that every storing and personalizing
//! path must pass.
//!
//! The check returns `Permitted<T>`, which only this module can construct. `Profile::apply` takes a
//! `Permitted<Event>` and `decide` takes a `Permitted<&Profile>`, so a call path that skipped the check does
//! not compile.

use crate::core::event::Event;
use crate::core::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why data may be processed. `Necessary` is always allowed and cannot be refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Purpose {
    Necessary,
    Analytics,
    Personalization,
    Advertising,
}

impl Purpose {
    /// The purposes a visitor can grant or refuse.
    pub const OPTIONAL: [Purpose; 3] = [Purpose::Analytics, Purpose::Personalization, Purpose::Advertising];

    pub fn name(self) -> &'static str {
        match self {
            Purpose::Necessary => "necessary",
            Purpose::Analytics => "analytics",
            Purpose::Personalization => "personalization",
            Purpose::Advertising => "advertising",
        }
    }

    /// Reads a purpose name, ignoring case (Segment's examples write `Analytics`).
    pub fn parse(s: &str) -> Option<Purpose> {
        Some(match s.to_ascii_lowercase().as_str() {
            "necessary" => Purpose::Necessary,
            "analytics" => Purpose::Analytics,
            "personalization" | "personalisation" => Purpose::Personalization,
            "advertising" => Purpose::Advertising,
            _ => return None,
        })
    }
}

/// Whether optional purposes start refused (`OptIn`, as GDPR requires) or granted (`OptOut`, as CCPA allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    OptIn,
    OptOut,
}

/// The compiled `consent` section of the configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsentPolicy {
    pub model: Model,
    /// Country code (ISO 3166-1 alpha-2, upper case) to the model used there.
    pub regions: BTreeMap<String, Model>,
    pub honor_gpc: bool,
    /// CMP category (`C0002`) to purpose.
    pub categories: BTreeMap<String, Purpose>,
}

impl Default for ConsentPolicy {
    fn default() -> Self {
        ConsentPolicy { model: Model::OptIn, regions: BTreeMap::new(), honor_gpc: true, categories: BTreeMap::new() }
    }
}

/// What the request itself says about the visitor, as the shell observed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestSignals {
    /// Country of the request, upper case.
    pub country: Option<String>,
    /// `Sec-GPC: 1` was sent.
    pub gpc: bool,
}

/// One recorded decision for one purpose.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub granted: bool,
    pub at: Millis,
    pub source: String,
}

/// The decisions a profile has recorded, per optional purpose.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsentState {
    pub grants: BTreeMap<Purpose, Grant>,
}

impl ConsentState {
    /// Records the preferences an event carried, where they change what was recorded before. Returns whether
    /// anything changed.
    pub fn record(&mut self, policy: &ConsentPolicy, prefs: &BTreeMap<String, bool>, at: Millis, source: &str) -> bool {
        let mut changed = false;
        for (purpose, granted) in policy.preferences(prefs) {
            let newer = self.grants.get(&purpose).is_none_or(|g| g.at <= at);
            let differs = self.grants.get(&purpose).is_none_or(|g| g.granted != granted);
            if newer && differs {
                self.grants.insert(purpose, Grant { granted, at, source: source.to_string() });
                changed = true;
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
}

impl Effective {
    pub fn allows(&self, purpose: Purpose) -> bool {
        match purpose {
            Purpose::Necessary => true,
            Purpose::Analytics => self.analytics,
            Purpose::Personalization => self.personalization,
            Purpose::Advertising => self.advertising,
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
    pub fn preferences(&self, prefs: &BTreeMap<String, bool>) -> BTreeMap<Purpose, bool> {
        let mut out: BTreeMap<Purpose, bool> = BTreeMap::new();
        for (k, &granted) in prefs {
            let purpose = self.categories.get(k).copied().or_else(|| Purpose::parse(k));
            if let Some(p) = purpose.filter(|p| *p != Purpose::Necessary) {
                let e = out.entry(p).or_insert(granted);
                *e = *e && granted;
            }
        }
        out
    }

    /// Decides each purpose. Order of precedence: GPC refuses advertising whatever else says; then the
    /// preferences sent with this call; then what the profile recorded; then the model's default.
    pub fn effective(
        &self,
        stored: Option<&ConsentState>,
        sent: Option<&BTreeMap<String, bool>>,
        signals: &RequestSignals,
    ) -> Effective {
        let default = self.model_for(signals.country.as_deref()) == Model::OptOut;
        let sent = sent.map(|p| self.preferences(p)).unwrap_or_default();
        let decide = |p: Purpose| -> bool {
            if p == Purpose::Advertising && signals.gpc && self.honor_gpc {
                return false;
            }
            if let Some(&g) = sent.get(&p) {
                return g;
            }
            stored.and_then(|s| s.grants.get(&p)).map(|g| g.granted).unwrap_or(default)
        };
        Effective {
            analytics: decide(Purpose::Analytics),
            personalization: decide(Purpose::Personalization),
            advertising: decide(Purpose::Advertising),
        }
    }
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
    if policy.effective(stored, event.consent.as_ref(), signals).analytics {
        Ok(Permitted(event))
    } else {
        Err(Box::new(event))
    }
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

    #[test]
    fn opt_in_refuses_until_granted_and_opt_out_grants_until_refused() {
        let mut policy = ConsentPolicy::default();
        policy.regions.insert("US".into(), Model::OptOut);
        let fr = RequestSignals { country: Some("FR".into()), gpc: false };
        let us = RequestSignals { country: Some("us".into()), gpc: false };
        assert!(!policy.effective(None, None, &fr).analytics);
        assert!(policy.effective(None, None, &us).analytics);
        assert!(!policy.effective(None, Some(&prefs(&[("Analytics", false)])), &us).analytics);
        assert!(policy.effective(None, Some(&prefs(&[("analytics", true)])), &fr).analytics);
    }

    #[test]
    fn gpc_refuses_advertising_whatever_else_says() {
        let policy = ConsentPolicy { model: Model::OptOut, ..ConsentPolicy::default() };
        let gpc = RequestSignals { country: None, gpc: true };
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
        assert_eq!(got, [(Purpose::Analytics, false)].into_iter().collect());
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
    }
}
