//! Predictions as configured (the `predictions` section, compiled beside its type with every problem at its
//! path): which event is a purchase and which property its value, the horizons, the channels' response and
//! unsubscribe events, the fitting schedule, and the model in force (fitted by the job, or pinned in the
//! configuration). What each prediction is named, so that conditions can read it (`{"prediction": "purchase30d",
//! "gte": 0.4}`). Computing them is `engine::predict`; fitting is `engine::fit`.

use crate::core::base::clv::{BetaPrior, BgNbd, GammaGamma};
use crate::core::base::sort::CollectInto;
use crate::core::base::time::{format_iso8601, Millis, DAY};
use crate::core::rules::compiler::{at, idx, is_id, present, Compiler};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as J};
use std::collections::BTreeMap;

/// What one prediction is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Kind {
    /// The probability the customer is still active (BG/NBD).
    Alive,
    /// The probability of at least one purchase within the horizon.
    Purchase(Millis),
    /// Expected purchases within the horizon.
    Purchases(Millis),
    /// Predicted value within the horizon: expected purchases times the expected value of one (Gamma-Gamma).
    Value(Millis),
    /// The probability that a send of the channel is answered (smoothed by the population's prior).
    Response(String),
    /// The probability that a send of the channel is followed by an unsubscribe.
    Unsubscribe(String),
    /// How much of the channel's response is lost under recent sends: 0 (none) to 1 (all).
    Sensitivity(String),
}

/// One channel's events: what counts as a response and as an unsubscribe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelEvents {
    pub responses: Vec<String>,
    pub unsubscribes: Vec<String>,
}

/// The population's priors of one channel.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelPriors {
    pub response: BetaPrior,
    pub unsubscribe: BetaPrior,
}

/// Fitted parameters: what the fitting job stores as a version, or what a configuration pins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// 0: pinned in the configuration.
    pub version: u64,
    pub fitted_at: Millis,
    pub bgnbd: Option<BgNbd>,
    pub spend: Option<GammaGamma>,
    pub channels: BTreeMap<String, ChannelPriors>,
}

/// The compiled `predictions` section: it names events and holds the population's parameters, nothing of anyone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Predictions {
    pub purchase_event: String,
    pub value_property: String,
    /// Horizons by their label as written (`30d`).
    pub horizons: Vec<(String, Millis)>,
    pub channels: BTreeMap<String, ChannelEvents>,
    /// How often the job fits a new version.
    pub refit: Millis,
    /// The last stretch of time held out of a fit to measure it.
    pub holdout: Millis,
    /// A model the configuration pins (`model`): used instead of any fitted one.
    pub pinned: Option<Model>,
    /// The model in force: the pinned one, or the latest fitted version the edge loaded (`with_model`).
    pub model: Option<Model>,
    /// Every prediction by name, in the order conditions index them.
    pub names: Vec<(String, Kind)>,
    /// Whether any condition (a segment's, a journey's branch) reads a prediction.
    pub read: bool,
}

impl Default for Predictions {
    fn default() -> Self {
        let horizons = vec![("30d".to_string(), 30 * DAY), ("90d".to_string(), 90 * DAY)];
        let names = names(&horizons, &BTreeMap::new());
        Predictions {
            purchase_event: "Order Completed".into(),
            value_property: "revenue".into(),
            horizons,
            channels: BTreeMap::new(),
            refit: 7 * DAY,
            holdout: 30 * DAY,
            pinned: None,
            model: None,
            names,
            read: false,
        }
    }
}

/// The names predictions go by: `alive`; per horizon `purchase30d`, `purchases30d`, `value30d`; per channel
/// `response.email`, `unsubscribe.email`, `sensitivity.email`.
fn names(horizons: &[(String, Millis)], channels: &BTreeMap<String, ChannelEvents>) -> Vec<(String, Kind)> {
    let mut out = vec![("alive".to_string(), Kind::Alive)];
    for (label, h) in horizons {
        out.push((format!("purchase{label}"), Kind::Purchase(*h)));
        out.push((format!("purchases{label}"), Kind::Purchases(*h)));
        out.push((format!("value{label}"), Kind::Value(*h)));
    }
    for c in channels.keys() {
        out.push((format!("response.{c}"), Kind::Response(c.clone())));
        out.push((format!("unsubscribe.{c}"), Kind::Unsubscribe(c.clone())));
        out.push((format!("sensitivity.{c}"), Kind::Sensitivity(c.clone())));
    }
    out
}

impl Predictions {
    /// The index of a prediction by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|(n, _)| n == name)
    }

    /// The channel an event answers or leaves, if any: `(channel, true)` a response, `(channel, false)` an
    /// unsubscribe.
    pub fn reaction(&self, event: &str) -> Option<(&str, bool)> {
        self.channels.iter().find_map(|(c, e)| {
            if e.responses.iter().any(|r| r == event) {
                Some((c.as_str(), true))
            } else if e.unsubscribes.iter().any(|u| u == event) {
                Some((c.as_str(), false))
            } else {
                None
            }
        })
    }

    /// These predictions with `fitted` in force, unless the configuration pins a model.
    pub fn with_model(&self, fitted: Option<Model>) -> Predictions {
        Predictions { model: self.pinned.clone().or(fitted), ..self.clone() }
    }
}

impl Model {
    /// The model as stored (KV `predictions:model`, the D1 version's row) and as the configuration pins it.
    pub fn to_json(&self) -> J {
        let mut o = json!({"version": self.version, "fittedAt": format_iso8601(self.fitted_at)});
        if let Some(m) = self.bgnbd {
            o["bgnbd"] = json!({"r": m.r, "alpha": m.alpha, "a": m.a, "b": m.b});
        }
        if let Some(g) = self.spend {
            o["gammaGamma"] = json!({"p": g.p, "q": g.q, "v": g.v});
        }
        if !self.channels.is_empty() {
            let prior = |b: BetaPrior| json!({"alpha": b.alpha, "beta": b.beta});
            o["channels"] = self
                .channels
                .iter()
                .map(|(c, p)| (c.clone(), json!({"response": prior(p.response), "unsubscribe": prior(p.unsubscribe)})))
                .collect_object()
                .into();
        }
        o
    }
}

/// Reads a model's JSON (`Model::to_json`), with every problem at its path.
pub fn model_from_json(v: &J) -> Result<Model, Vec<crate::core::rules::ConfigError>> {
    let mut c = Compiler::new();
    let m = c.prediction_model(v, "");
    match m {
        Some(m) if c.errors.is_empty() => Ok(m),
        _ => Err(c.errors),
    }
}

impl Compiler {
    /// `predictions`: `{"purchase": {"event", "value"}, "horizons": ["30d"], "channels": {"email": {"responses":
    /// [...], "unsubscribes": [...]}}, "refit": "7d", "holdout": "30d", "model": {...}}`.
    pub(crate) fn predictions(&mut self, v: &J, path: &str) -> Predictions {
        let mut out = Predictions::default();
        let keys = ["purchase", "horizons", "channels", "refit", "holdout", "model"];
        let Some(o) = self.object(v, path, &keys) else { return out };
        if let Some(v) = present(o, "purchase") {
            let p = at(path, "purchase");
            if let Some(po) = self.object(v, &p, &["event", "value"]) {
                if let Some(e) = present(po, "event") {
                    if let Some(e) = self.string(Some(e), &at(&p, "event")) {
                        out.purchase_event = e;
                    }
                }
                if let Some(e) = present(po, "value") {
                    if let Some(e) = self.string(Some(e), &at(&p, "value")) {
                        out.value_property = e;
                    }
                }
            }
        }
        if let Some(v) = present(o, "horizons") {
            let p = at(path, "horizons");
            out.horizons.clear();
            for (i, h) in self.array(v, &p).into_iter().flatten().enumerate() {
                let hp = idx(&p, i);
                let (Some(label), Some(ms)) = (h.as_str(), self.duration(h, &hp)) else { continue };
                if !(DAY..=3 * 365 * DAY).contains(&ms) || ms % DAY != 0 {
                    self.err(hp, "a horizon is whole days, 1d to 1095d");
                } else if out.horizons.iter().any(|(_, m)| *m == ms) {
                    self.err(hp, format!("horizon {label:?} is listed twice"));
                } else {
                    out.horizons.push((format!("{}d", ms / DAY), ms));
                }
            }
            if out.horizons.is_empty() && self.errors.iter().all(|e| !e.path.starts_with(&p)) {
                self.err(p, "expected at least one horizon, for example \"30d\"");
            }
        }
        if let Some(v) = present(o, "channels") {
            let p = at(path, "channels");
            match v.as_object() {
                Some(map) => {
                    for (name, events) in map {
                        let cp = at(&p, name);
                        if !is_id(name) {
                            self.err(&cp, "a channel is 1 to 128 letters, digits, '-', '_' or '.'");
                            continue;
                        }
                        let Some(eo) = self.object(events, &cp, &["responses", "unsubscribes"]) else { continue };
                        let mut ch = ChannelEvents::default();
                        for (key, list) in [("responses", &mut ch.responses), ("unsubscribes", &mut ch.unsubscribes)] {
                            if let Some(v) = present(eo, key) {
                                for (i, e) in self.array(v, &at(&cp, key)).into_iter().flatten().enumerate() {
                                    match e.as_str() {
                                        Some(e) if !e.is_empty() => list.push(e.to_string()),
                                        _ => self.err(idx(&at(&cp, key), i), "expected an event name"),
                                    }
                                }
                            }
                        }
                        if ch.responses.is_empty() {
                            self.err(at(&cp, "responses"), "expected at least one event that answers a send");
                        }
                        out.channels.insert(name.clone(), ch);
                    }
                    if out.channels.len() > crate::core::model::behaviour::MAX_CHANNELS {
                        self.err(&p, format!("at most {} channels", crate::core::model::behaviour::MAX_CHANNELS));
                    }
                }
                None => self.err(p, "expected an object of channel to its events"),
            }
        }
        for (key, slot, min) in [("refit", &mut out.refit, DAY), ("holdout", &mut out.holdout, DAY)] {
            if let Some(v) = present(o, key) {
                if let Some(ms) = self.duration(v, &at(path, key)) {
                    if ms < min || ms > 365 * DAY {
                        self.err(at(path, key), "between 1d and 365d");
                    } else {
                        *slot = ms;
                    }
                }
            }
        }
        if let Some(v) = present(o, "model") {
            out.pinned = self.prediction_model(v, &at(path, "model"));
            out.model = out.pinned.clone();
        }
        out.names = names(&out.horizons, &out.channels);
        out
    }

    /// A model's JSON (`Model::to_json`).
    pub(crate) fn prediction_model(&mut self, v: &J, path: &str) -> Option<Model> {
        let o = self.object(v, path, &["version", "fittedAt", "bgnbd", "gammaGamma", "channels"])?;
        let mut m = Model { version: 0, fitted_at: 0, bgnbd: None, spend: None, channels: BTreeMap::new() };
        if let Some(v) = present(o, "version") {
            m.version = self.integer(v, &at(path, "version"), 0, 1 << 52).unwrap_or(0) as u64;
        }
        if let Some(v) = present(o, "fittedAt") {
            m.fitted_at = self.time(v, &at(path, "fittedAt")).unwrap_or(0);
        }
        if let Some(v) = present(o, "bgnbd") {
            let [r, alpha, a, b] = self.positives(v, &at(path, "bgnbd"), ["r", "alpha", "a", "b"])?;
            m.bgnbd = Some(BgNbd { r, alpha, a, b });
        }
        if let Some(v) = present(o, "gammaGamma") {
            let [p, q, v] = self.positives(v, &at(path, "gammaGamma"), ["p", "q", "v"])?;
            m.spend = Some(GammaGamma { p, q, v });
        }
        if let Some(v) = present(o, "channels") {
            let p = at(path, "channels");
            let Some(map) = v.as_object() else {
                self.err(p, "expected an object of channel to its priors");
                return None;
            };
            for (name, priors) in map {
                let cp = at(&p, name);
                let po = self.object(priors, &cp, &["response", "unsubscribe"])?;
                let mut prior = |key: &str| -> Option<BetaPrior> {
                    let Some(v) = po.get(key) else {
                        self.err(at(&cp, key), "is required");
                        return None;
                    };
                    let [alpha, beta] = self.positives(v, &at(&cp, key), ["alpha", "beta"])?;
                    Some(BetaPrior { alpha, beta })
                };
                let (response, unsubscribe) = (prior("response"), prior("unsubscribe"));
                m.channels.insert(name.clone(), ChannelPriors { response: response?, unsubscribe: unsubscribe? });
            }
        }
        Some(m)
    }

    /// An object of the named positive, finite numbers.
    fn positives<const N: usize>(&mut self, v: &J, path: &str, keys: [&str; N]) -> Option<[f64; N]> {
        let o = self.object(v, path, &keys)?;
        let mut out = [0.0; N];
        let mut ok = true;
        for (slot, key) in out.iter_mut().zip(keys) {
            match o.get(key).and_then(J::as_f64) {
                Some(x) if x.is_finite() && x > 0.0 => *slot = x,
                _ => {
                    self.err(at(path, key), "expected a positive number");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::core::rules::compile_str;

    fn errors(text: &str) -> Vec<String> {
        compile_str(text).err().unwrap_or_default().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_section_compiles_to_named_predictions() {
        let c = compile_str(
            r#"{"predictions": {"purchase": {"event": "Purchase", "value": "total"}, "horizons": ["7d", "60d"],
                "channels": {"email": {"responses": ["Email Opened"], "unsubscribes": ["Unsubscribed"]}}}}"#,
        )
        .unwrap();
        let p = &c.predictions;
        assert_eq!((p.purchase_event.as_str(), p.value_property.as_str()), ("Purchase", "total"));
        let names: Vec<&str> = p.names.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "alive",
                "purchase7d",
                "purchases7d",
                "value7d",
                "purchase60d",
                "purchases60d",
                "value60d",
                "response.email",
                "unsubscribe.email",
                "sensitivity.email"
            ]
        );
        assert_eq!(p.reaction("Email Opened"), Some(("email", true)));
        assert_eq!(p.reaction("Unsubscribed"), Some(("email", false)));
        assert_eq!(p.reaction("Page"), None);
    }

    /// Each broken part of the section, and the path its error names.
    #[test]
    fn every_problem_is_reported_at_its_path() {
        let cases = [
            (r#"{"predictions": {"horizons": ["12h"]}}"#, "predictions.horizons[0]: a horizon is whole days"),
            (
                r#"{"predictions": {"horizons": ["30d", "30d"]}}"#,
                "predictions.horizons[1]: horizon \"30d\" is listed twice",
            ),
            (r#"{"predictions": {"horizons": []}}"#, "predictions.horizons: expected at least one horizon"),
            (
                r#"{"predictions": {"channels": {"email": {}}}}"#,
                "predictions.channels.email.responses: expected at least one",
            ),
            (
                r#"{"predictions": {"channels": {"email": {"responses": [3]}}}}"#,
                "predictions.channels.email.responses[0]: expected an event name",
            ),
            (r#"{"predictions": {"refit": "400d"}}"#, "predictions.refit: between 1d and 365d"),
            (
                r#"{"predictions": {"model": {"bgnbd": {"r": 1, "alpha": -2, "a": 1, "b": 1}}}}"#,
                "predictions.model.bgnbd.alpha: expected a positive number",
            ),
            (
                r#"{"predictions": {"model": {"channels": {"email": {"response": {"alpha": 1, "beta": 2}}}}}}"#,
                "predictions.model.channels.email.unsubscribe: is required",
            ),
            (r#"{"predictions": {"purchase": {"event": 4}}}"#, "predictions.purchase.event:"),
            (r#"{"predictions": {"horizon": ["30d"]}}"#, "predictions.horizon:"),
            (
                r#"{"segments": [{"id": "s", "when": {"prediction": "purchase45d", "gte": 0.5}}]}"#,
                "segments[0].when.prediction: unknown prediction \"purchase45d\"",
            ),
            (
                r#"{"segments": [{"id": "s", "when": {"prediction": "alive"}}]}"#,
                "segments[0].when: expected a comparison",
            ),
        ];
        for (text, want) in cases {
            let got = errors(text);
            assert!(got.iter().any(|e| e.starts_with(want)), "{text}: wanted {want:?}, got {got:?}");
        }
    }

    #[test]
    fn a_pinned_model_reads_back_as_written() {
        let c = compile_str(
            r#"{"predictions": {"channels": {"email": {"responses": ["Email Opened"]}}, "model": {"version": 0,
                "fittedAt": "2026-11-01T00:00:00.000Z", "bgnbd": {"r": 0.25, "alpha": 4.5, "a": 0.8, "b": 2.5},
                "gammaGamma": {"p": 6.2, "q": 3.7, "v": 15.4},
                "channels": {"email": {"response": {"alpha": 2, "beta": 18}, "unsubscribe": {"alpha": 0.5, "beta": 99}}}}}}"#,
        )
        .unwrap();
        let m = c.predictions.model.clone().unwrap();
        assert_eq!(super::model_from_json(&m.to_json()).unwrap(), m);
        assert_eq!(m.bgnbd.unwrap().alpha, 4.5);
    }
}
