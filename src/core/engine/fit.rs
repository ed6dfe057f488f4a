//! Fitting a model version from the summaries profiles published (`wire::predictions`), sans I/O: the job hands
//! in the summaries, the configuration and `now`, and gets the version's model and its quality figures.
//!
//! Quality is measured before the final fit, on a held-out time window: every customer's purchases are cut at
//! `now - holdout`, the purchase model is fitted on what came before, and its predictions for the window are
//! compared with what happened in it (ROC AUC of the probability of buying, predicted against actual purchases,
//! calibration by tenths of predicted probability). Then every part is fitted on everything. Each part fits or
//! fails on its own, and a part that fails says why; nothing here loops without a bound.

use crate::core::base::clv::{fit_beta_binomial, fit_bg_nbd, fit_gamma_gamma, BetaPrior, Customer, Fit, FitError};
use crate::core::base::stats::auc;
use crate::core::base::time::{format_iso8601, Millis, DAY};
use crate::core::model::behaviour::Behaviour;
use crate::core::rules::predictions::{ChannelPriors, Model, Predictions};
use serde_json::{json, Map, Value as J};
use std::collections::BTreeMap;

/// Iterations of the optimizer per part: far more than a well-posed fit needs (a few hundred), and a bound on
/// the time a degenerate population can take.
pub const MAX_ITERATIONS: u32 = 3_000;

/// A fitted version: its model (when any part fitted) and its quality figures, parameters and failures.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted {
    /// `fitted` (every part that has data fitted), `partial` (some parts failed), `failed` (none fitted).
    pub status: &'static str,
    pub model: Option<Model>,
    pub quality: J,
}

/// Parameters beyond this mean the optimizer ran off towards a boundary: the population has no spread for the
/// part to fit (everyone alike), and the "fit" would say nothing.
const RUNAWAY: f64 = 1e6;

/// A fit of `part` whose parameters are all finite and within `RUNAWAY`, else why not.
fn sane<T>(fitted: Result<Fit<T>, FitError>, params: impl Fn(&T) -> Vec<f64>) -> Result<Fit<T>, String> {
    let f = fitted.map_err(|e| reason(&e))?;
    if params(&f.params).iter().all(|x| x.is_finite() && *x > 0.0 && *x < RUNAWAY) {
        Ok(f)
    } else {
        Err("the fit ran off towards a boundary (a parameter beyond a million): the population has too little \
             spread to fit"
            .into())
    }
}

/// Whether fewer than two distinct rows are among `rows`: nothing then tells people apart.
fn all_alike<T: PartialEq>(rows: &[T]) -> bool {
    rows.first().is_none_or(|first| rows.iter().all(|r| r == first))
}

/// Why a part did not fit, in words.
pub fn reason(e: &FitError) -> String {
    match e {
        FitError::Empty => "no data".into(),
        FitError::TooFew { have, need } => format!("too few people: {have}, at least {need} are needed"),
        FitError::NoRepeatBuyers => "nobody bought twice, so how often people buy cannot be told apart from \
                                     whether they stay"
            .into(),
        FitError::Degenerate(why) => format!("the population cannot be fitted: {why}"),
        FitError::NotConverged { iterations } => format!("did not converge within {iterations} iterations"),
    }
}

fn days(ms: Millis) -> f64 {
    ms as f64 / DAY as f64
}

/// One profile as the fit reads it, made as its summary is read (`Row::of`) so that the summaries themselves
/// are not kept: its customer summary now with the mean value of its repeat purchases, the same at the holdout's
/// start with the purchase days after it, and per configured channel its sends, responses and unsubscribes.
/// About 100 bytes, so that `MAX_FIT_PROFILES` of them take about 10 MB of a Worker's 128.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub now: Option<(Customer, f64)>,
    pub calibration: Option<(Customer, u32)>,
    /// Indexed like `Predictions::channels`' keys.
    pub channels: Box<[[u32; 3]]>,
}

impl Row {
    pub fn of(b: &Behaviour, p: &Predictions, now: Millis) -> Row {
        let customer = |s: crate::core::model::behaviour::PurchaseSummary| Customer { x: s.x, t_x: s.t_x, t: s.t };
        let cutoff = now - p.holdout;
        Row {
            now: b.purchases.summary(now).map(|s| (customer(s), s.mean_value)),
            calibration: b
                .purchases
                .before(cutoff)
                .and_then(|(before, after)| before.summary(cutoff).map(|s| (customer(s), after))),
            channels: p
                .channels
                .keys()
                .map(|c| b.channels.get(c).map_or([0; 3], |s| [s.sends, s.responses, s.unsubscribes]))
                .collect(),
        }
    }
}

/// Fits version `version` at `now` from everyone's rows.
pub fn fit(rows: &[Row], p: &Predictions, version: u64, now: Millis) -> Fitted {
    let mut failures = Map::new();
    let mut quality = Map::new();
    let mut model = Model { version, fitted_at: now, bgnbd: None, spend: None, channels: BTreeMap::new() };

    // Customers as of now, and as of the holdout's start with what they bought after it.
    let customers: Vec<Customer> = rows.iter().filter_map(|r| r.now.map(|c| c.0)).collect();
    quality.insert("customers".into(), customers.len().into());
    quality.insert("profiles".into(), rows.len().into());
    let cutoff = now - p.holdout;
    let calibration: Vec<(Customer, u32)> = rows.iter().filter_map(|r| r.calibration).collect();
    let bg = |c: &[Customer]| -> Result<Fit<crate::core::base::clv::BgNbd>, String> {
        if c.len() > 1 && all_alike(c) {
            return Err("everyone has the same purchase history: nothing tells people apart".into());
        }
        // The dropout's parameters may go to their bound: when a history shows no spread in how people leave
        // (or nobody leaving), the fit takes everyone to drop out alike (a and b large, or b alone), which predicts
        // as it should. The purchase rates' may not: their running off means no spread in how often people buy.
        let f = sane(fit_bg_nbd(c, MAX_ITERATIONS), |m| vec![m.r, m.alpha])?;
        let (a, b) = (f.params.a, f.params.b);
        if a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0 {
            Ok(f)
        } else {
            Err("the dropout could not be fitted".into())
        }
    };
    match bg(&calibration.iter().map(|c| c.0).collect::<Vec<_>>()) {
        Ok(f) => {
            let horizon = days(p.holdout);
            let scored: Vec<(f64, bool)> =
                calibration.iter().map(|(c, after)| (f.params.p_any_purchase(c, horizon), *after > 0)).collect();
            let predicted: f64 = calibration.iter().map(|(c, _)| f.params.expected_purchases(c, horizon)).sum();
            let actual: u64 = calibration.iter().map(|(_, a)| u64::from(*a)).sum();
            quality.insert(
                "holdout".into(),
                json!({
                    "from": format_iso8601(cutoff),
                    "to": format_iso8601(now),
                    "customers": calibration.len(),
                    "auc": auc(&scored),
                    "predictedPurchases": predicted,
                    "actualPurchases": actual,
                    "calibration": calibration_bins(&scored),
                }),
            );
        }
        Err(e) => {
            quality.insert("holdout".into(), json!({"from": format_iso8601(cutoff), "error": e}));
        }
    }
    match bg(&customers) {
        Ok(f) => {
            let mut q = json!({"r": f.params.r, "alpha": f.params.alpha, "a": f.params.a, "b": f.params.b,
                               "logLikelihood": f.log_likelihood, "iterations": f.iterations});
            if f.params.b > RUNAWAY || f.params.a * RUNAWAY < 1.0 {
                let p = f.params.a / (f.params.a + f.params.b);
                q["dropout"] =
                    format!("no spread visible: everyone is taken to drop out alike, {p:.4} after each purchase day")
                        .into();
            }
            quality.insert("bgnbd".into(), q);
            model.bgnbd = Some(f.params);
        }
        Err(e) => {
            failures.insert("bgnbd".into(), e.into());
        }
    }
    let repeaters: Vec<(f64, f64)> =
        rows.iter().filter_map(|r| r.now).filter(|(c, m)| c.x > 0.0 && *m > 0.0).map(|(c, m)| (c.x, m)).collect();
    if !customers.is_empty() {
        let gg = if repeaters.len() > 1 && all_alike(&repeaters) {
            Err("every repeat buyer spends the same: nothing tells people apart".to_string())
        } else {
            sane(fit_gamma_gamma(&repeaters, MAX_ITERATIONS), |g| vec![g.p, g.q, g.v])
        };
        match gg {
            Ok(f) => {
                quality.insert(
                    "gammaGamma".into(),
                    json!({"p": f.params.p, "q": f.params.q, "v": f.params.v, "logLikelihood": f.log_likelihood,
                           "repeaters": repeaters.len()}),
                );
                model.spend = Some(f.params);
            }
            Err(e) => {
                failures.insert("gammaGamma".into(), e.into());
            }
        }
    }
    let mut channels = Map::new();
    for (i, name) in p.channels.keys().enumerate() {
        let of = |k: usize| -> Vec<(u32, u32)> {
            rows.iter().filter_map(|r| r.channels.get(i)).map(|c| (c[0], c[k].min(c[0]))).collect()
        };
        let (answered, unsubscribed) = (of(1), of(2));
        let people = answered.iter().filter(|r| r.0 > 0).count();
        match (prior_of(&answered), prior_of(&unsubscribed)) {
            (Ok(r), Ok(u)) => {
                let prior = |(b, how): (BetaPrior, &str)| json!({"alpha": b.alpha, "beta": b.beta, "mean": b.alpha / (b.alpha + b.beta), "how": how});
                model.channels.insert(name.clone(), ChannelPriors { response: r.0, unsubscribe: u.0 });
                channels.insert(name.clone(), json!({"response": prior(r), "unsubscribe": prior(u), "people": people}));
            }
            (Err(e), _) | (_, Err(e)) => {
                failures.insert(format!("channels.{name}"), e.into());
            }
        }
    }
    if !channels.is_empty() {
        quality.insert("channels".into(), channels.into());
    }
    let fitted_any = model.bgnbd.is_some() || model.spend.is_some() || !model.channels.is_empty();
    let status = match (fitted_any, failures.is_empty()) {
        (true, true) => "fitted",
        (true, false) => "partial",
        (false, _) => "failed",
    };
    if !failures.is_empty() {
        quality.insert("failures".into(), failures.into());
    }
    Fitted { status, model: fitted_any.then_some(model), quality: quality.into() }
}

/// Pseudo-sends a pooled prior weighs as: a person's own ten sends count as much as everyone's rate.
const POOLED_WEIGHT: f64 = 10.0;

/// A channel's prior from everyone's (sends, reactions): the beta-binomial fit; when nobody ever reacted (or
/// everyone always did) there is no spread to fit, and the prior is everyone's pooled rate (with half a reaction
/// either way, so it is never 0 or 1) weighing as `POOLED_WEIGHT` sends.
fn prior_of(rows: &[(u32, u32)]) -> Result<(BetaPrior, &'static str), String> {
    let (n, k) = rows.iter().fold((0u64, 0u64), |(n, k), r| (n + u64::from(r.0), k + u64::from(r.1)));
    if n == 0 {
        return Err("no sends yet".into());
    }
    if k == 0 || k == n {
        let mean = (k as f64 + 0.5) / (n as f64 + 1.0);
        return Ok((BetaPrior { alpha: mean * POOLED_WEIGHT, beta: (1.0 - mean) * POOLED_WEIGHT }, "pooled"));
    }
    match sane(fit_beta_binomial(rows, MAX_ITERATIONS), |b| vec![b.alpha, b.beta]) {
        Ok(f) => Ok((f.params, "fitted")),
        // Too few people to fit, or no spread between them: everyone's pooled rate says what is known.
        Err(_) => {
            let mean = k as f64 / n as f64;
            Ok((BetaPrior { alpha: mean * POOLED_WEIGHT, beta: (1.0 - mean) * POOLED_WEIGHT }, "pooled"))
        }
    }
}

/// Calibration: people by tenths of their predicted probability, each tenth's mean prediction beside the share
/// that did buy. A well-calibrated model has the two close in every tenth.
fn calibration_bins(scored: &[(f64, bool)]) -> Vec<J> {
    let mut bins = [(0u64, 0.0f64, 0u64); 10];
    for (p, bought) in scored {
        let i = ((p * 10.0) as usize).min(9);
        bins[i].0 += 1;
        bins[i].1 += p;
        bins[i].2 += u64::from(*bought);
    }
    bins.iter()
        .enumerate()
        .filter(|(_, b)| b.0 > 0)
        .map(
            |(i, b)| json!({"bin": i, "people": b.0, "predicted": b.1 / b.0 as f64, "actual": b.2 as f64 / b.0 as f64}),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::compile_str;

    const NOW: Millis = 1_800_000_000_000;

    /// A small seeded generator, so that every run fits the same population.
    struct Rng(u64);
    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// People who buy every `gap` days (jittered) until they stop, some never again after the first.
    fn population(n: usize) -> Vec<Behaviour> {
        let mut rng = Rng(7);
        (0..n)
            .map(|_| {
                let mut b = Behaviour::default();
                let start = NOW - (200.0 + rng.unit() * 300.0) as i64 * DAY;
                let gap = 5.0 + rng.unit() * 40.0;
                let level = 10.0 + rng.unit() * 190.0;
                let stops = start + (rng.unit() * 500.0) as i64 * DAY;
                let mut t = start;
                while t < NOW && t <= stops {
                    b.purchases.record(t, level * (0.5 + rng.unit()));
                    t += ((gap * (0.5 + rng.unit())) * DAY as f64) as i64;
                }
                let s = b.channel("email").unwrap();
                for k in 0..20 {
                    s.record_send(start + k * 3 * DAY);
                    if rng.unit() < 0.2 {
                        s.record_response(start + k * 3 * DAY + 1000);
                    }
                }
                b
            })
            .collect()
    }

    fn rows(people: &[Behaviour]) -> Vec<Row> {
        people.iter().map(|b| Row::of(b, &config(), NOW)).collect()
    }

    fn config() -> Predictions {
        compile_str(r#"{"predictions": {"channels": {"email": {"responses": ["Email Opened"]}}}}"#).unwrap().predictions
    }

    #[test]
    fn a_population_fits_every_part_and_measures_it_on_the_holdout() {
        let f = fit(&rows(&population(2_000)), &config(), 4, NOW);
        assert_eq!(f.status, "fitted", "{}", f.quality);
        let m = f.model.unwrap();
        assert_eq!(m.version, 4);
        assert!(m.bgnbd.is_some() && m.spend.is_some());
        let email = m.channels["email"].response;
        assert!((email.alpha / (email.alpha + email.beta) - 0.2).abs() < 0.02, "{email:?}");
        let auc = f.quality["holdout"]["auc"].as_f64().unwrap();
        assert!(auc > 0.7, "{}", f.quality["holdout"]);
        assert!(!f.quality["holdout"]["calibration"].as_array().unwrap().is_empty());
    }

    /// A history in which nobody stops buying: the dropout may go to its bound, and the model still fits.
    #[test]
    fn a_history_where_nobody_leaves_still_fits() {
        let mut rng = Rng(11);
        let people: Vec<Behaviour> = (0..500)
            .map(|_| {
                let mut b = Behaviour::default();
                let gap = 3.0 + rng.unit() * 30.0;
                let mut t = NOW - (100.0 + rng.unit() * 200.0) as i64 * DAY;
                while t < NOW {
                    b.purchases.record(t, 20.0);
                    t += (gap * (0.5 + rng.unit()) * DAY as f64) as i64;
                }
                b
            })
            .collect();
        let f = fit(&rows(&people), &config(), 1, NOW);
        assert!(f.model.as_ref().is_some_and(|m| m.bgnbd.is_some()), "{}", f.quality);
        assert!(f.quality["failures"]["bgnbd"].is_null(), "{}", f.quality);
    }

    /// Degenerate populations: each fits what it can, says why the rest could not, and never panics.
    #[test]
    fn degenerate_populations_say_why_they_could_not_fit() {
        let one_time = |n: usize| -> Vec<Behaviour> {
            (0..n)
                .map(|i| {
                    let mut b = Behaviour::default();
                    b.purchases.record(NOW - (i as i64 % 50 + 1) * DAY, 20.0);
                    b
                })
                .collect()
        };
        // Each population, and what its version says of the purchase model (channels may still fit, pooled).
        let one = Row::of(&population(1).remove(0), &config(), NOW);
        let cases: Vec<(&str, Vec<Row>, &str)> = vec![
            ("nobody", Vec::new(), "no data"),
            ("no purchases at all", rows(&vec![Behaviour::default(); 10]), "no data"),
            ("no repeat buyers", rows(&one_time(500)), "nobody bought twice"),
            ("one customer", rows(&population(1)), "too few people: 1"),
            ("everyone identical", vec![one.clone(); 3_000], "everyone has the same purchase history"),
            ("a million of one kind", vec![one; 1_000_000], "everyone has the same purchase history"),
        ];
        for (name, people, why) in cases {
            let f = fit(&people, &config(), 1, NOW);
            assert_ne!(f.status, "fitted", "{name}: {}", f.quality);
            assert!(f.model.as_ref().is_none_or(|m| m.bgnbd.is_none() && m.spend.is_none()), "{name}");
            let said = f.quality["failures"]["bgnbd"].as_str().unwrap_or_default();
            assert!(said.starts_with(why), "{name}: {said:?}");
            let text = f.quality.to_string();
            assert!(!text.contains("NaN") && !text.contains("inf"), "{name}: {text}");
        }
        // A million of one kind among a few hundred others: the identical rows are grouped, so it fits at once, and
        // whatever it says is finite.
        let mut mostly = vec![Row::of(&population(1).remove(0), &config(), NOW); 1_000_000];
        mostly.extend(rows(&population(300)));
        let f = fit(&mostly, &config(), 1, NOW);
        let text = f.quality.to_string();
        assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
        assert_eq!(f.quality["customers"], 1_000_300);
    }
}
