//! A person's predictions from their behaviour and the model in force: the probability they are still a customer,
//! of buying within each horizon, how much they will buy and spend (BG/NBD and Gamma-Gamma), and per channel how
//! likely a send is answered or ends in an unsubscribe, and how much pressure costs (beta-binomial with the
//! population's priors). Each comes with what drove it. `observe` records what an event adds to the behaviour.
//!
//! Every number is computed with `libm` (`base::clv`), so the edge, the browser build and native tests reach
//! bit-identical values, and the instant an audience's bound is crossed is the same everywhere.

use crate::core::base::clv::{BetaPrior, Customer};
use crate::core::base::time::{format_iso8601, Millis, DAY};
use crate::core::base::value::Value;
use crate::core::model::behaviour::{Behaviour, ChannelStats, PurchaseSummary, PRESSURE_BUCKETS};
use crate::core::model::event::Event;
use crate::core::model::profile::{Profile, MAX_ORDER_AMOUNT};
use crate::core::rules::predictions::{Kind, Model, Predictions};
use crate::core::rules::Config;
use serde_json::{json, Value as J};

/// The prior of a channel with no fitted model: uniform, so that a person's own sends and responses decide.
const UNIFORM: BetaPrior = BetaPrior { alpha: 1.0, beta: 1.0 };

/// Records what `event` adds to a person's behaviour: a purchase (by day, with its value), a response to a send
/// or an unsubscribe of a configured channel.
pub fn observe(behaviour: &mut Behaviour, event: &Event, p: &Predictions) {
    let name = event.count_key();
    if name == p.purchase_event {
        let value = event.properties().and_then(|props| props.get(&p.value_property)).and_then(Value::as_f64);
        behaviour.purchases.record(event.timestamp, value.filter(|v| v.abs() <= MAX_ORDER_AMOUNT).unwrap_or(0.0));
    }
    if let Some((channel, response)) = p.reaction(name) {
        if let Some(stats) = behaviour.channel(channel) {
            if response {
                stats.record_response(event.timestamp);
            } else {
                stats.record_unsubscribe();
            }
        }
    }
}

fn customer(s: &PurchaseSummary) -> Customer {
    Customer { x: s.x, t_x: s.t_x, t: s.t }
}

fn days(ms: Millis) -> f64 {
    ms as f64 / DAY as f64
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// The prior of `channel`'s responses or unsubscribes.
fn prior(model: Option<&Model>, channel: &str, response: bool) -> BetaPrior {
    model.and_then(|m| m.channels.get(channel)).map_or(UNIFORM, |c| if response { c.response } else { c.unsubscribe })
}

/// How much of a channel's response is lost under pressure: 1 minus the answered share of sends made after
/// others in the week before, over that of sends made after none, each smoothed by the prior. 0 when pressure
/// costs nothing (or helps), or before there is anything to compare.
pub fn sensitivity(stats: &ChannelStats, prior: BetaPrior) -> f64 {
    let (calm_n, calm_r) = stats.by_pressure[0];
    let (mut busy_n, mut busy_r) = (0u32, 0u32);
    for b in &stats.by_pressure[1..PRESSURE_BUCKETS] {
        busy_n = busy_n.saturating_add(b.0);
        busy_r = busy_r.saturating_add(b.1);
    }
    if calm_n == 0 || busy_n == 0 {
        return 0.0;
    }
    let calm = prior.rate(f64::from(calm_n), f64::from(calm_r));
    let busy = prior.rate(f64::from(busy_n), f64::from(busy_r));
    if calm <= 0.0 {
        return 0.0;
    }
    (1.0 - busy / calm).clamp(0.0, 1.0)
}

/// One prediction of a person at `now`; `None` where it does not apply (no purchase yet, no model to say).
pub fn value(p: &Predictions, kind: &Kind, b: &Behaviour, now: Millis) -> Option<f64> {
    let model = p.model.as_ref();
    match kind {
        Kind::Alive | Kind::Purchase(_) | Kind::Purchases(_) | Kind::Value(_) => {
            let bgnbd = model?.bgnbd?;
            let c = customer(&b.purchases.summary(now)?);
            let v = match kind {
                Kind::Alive => bgnbd.p_alive(&c),
                Kind::Purchase(h) => bgnbd.p_any_purchase(&c, days(*h)),
                Kind::Purchases(h) => bgnbd.expected_purchases(&c, days(*h)),
                _ => {
                    let Kind::Value(h) = kind else { return None };
                    let s = b.purchases.summary(now)?;
                    let spend = match model?.spend {
                        Some(g) => g.expected_spend(s.x, s.mean_value),
                        None if s.x > 0.0 => s.mean_value,
                        None => b.purchases.first?.value,
                    };
                    bgnbd.expected_purchases(&c, days(*h)) * spend
                }
            };
            finite(v)
        }
        Kind::Response(ch) | Kind::Unsubscribe(ch) => {
            let response = matches!(kind, Kind::Response(_));
            let stats = b.channels.get(ch);
            let (n, k) = stats.map_or((0, 0), |s| (s.sends, if response { s.responses } else { s.unsubscribes }));
            finite(prior(model, ch, response).rate(f64::from(n), f64::from(k)))
        }
        Kind::Sensitivity(ch) => {
            let stats = b.channels.get(ch)?;
            finite(sensitivity(stats, prior(model, ch, true)))
        }
    }
}

/// Every prediction of a profile at `now`, indexed like `Predictions::names`.
pub fn predictions_of(config: &Config, profile: &Profile, now: Millis) -> Vec<Option<f64>> {
    let p = &config.predictions;
    if p.names.is_empty() {
        return Vec::new();
    }
    p.names.iter().map(|(_, k)| value(p, k, &profile.behaviour, now)).collect()
}

/// The predictions a condition reads at `now`: all of them when any condition of the configuration reads one
/// (`Predictions::read`), else none: they cost special functions, which a configuration without them never pays.
pub fn for_conditions(config: &Config, profile: &Profile, now: Millis) -> Vec<Option<f64>> {
    if config.predictions.read {
        predictions_of(config, profile, now)
    } else {
        Vec::new()
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// What drove one prediction, in words a marketer reads on the person's page.
fn why(p: &Predictions, kind: &Kind, b: &Behaviour, now: Millis) -> String {
    match kind {
        Kind::Alive | Kind::Purchase(_) | Kind::Purchases(_) | Kind::Value(_) => {
            let Some(s) = b.purchases.summary(now) else {
                return format!("no {:?} yet: the purchase model starts with the first", p.purchase_event);
            };
            if p.model.as_ref().and_then(|m| m.bgnbd).is_none() {
                return "no purchase model has been fitted yet".into();
            }
            let mut out = format!(
                "{} repeat purchase day{} over {:.0} days as a customer; the last {:.0} days ago",
                s.x,
                if s.x == 1.0 { "" } else { "s" },
                s.t,
                s.t - s.t_x
            );
            if let Kind::Value(_) = kind {
                out.push_str(&format!("; mean repeat value {:.2}", s.mean_value));
            }
            if s.x > 0.0 && s.t - s.t_x > 3.0 * s.t_x / s.x.max(1.0) {
                out.push_str("; a silence far longer than their usual gap between purchases lowers it");
            }
            out
        }
        Kind::Response(ch) | Kind::Unsubscribe(ch) => {
            let response = matches!(kind, Kind::Response(_));
            let pr = prior(p.model.as_ref(), ch, response);
            let s = b.channels.get(ch).cloned().unwrap_or_default();
            let k = if response { s.responses } else { s.unsubscribes };
            format!(
                "{k} {} of {} {ch} sends, with everyone's rate ({:.3}) weighing as {:.0} sends",
                if response { "answered" } else { "unsubscribes" },
                s.sends,
                pr.alpha / (pr.alpha + pr.beta),
                pr.alpha + pr.beta
            )
        }
        Kind::Sensitivity(ch) => {
            let s = b.channels.get(ch).cloned().unwrap_or_default();
            let calm = s.by_pressure[0];
            let busy = s.by_pressure[1..].iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            format!(
                "answered {} of {} sends after a quiet week, {} of {} sends after others in the week before",
                calm.1, calm.0, busy.1, busy.0
            )
        }
    }
}

/// The person's predictions as the admin API shows them: the model version that made them, and each value with
/// what drove it. Values are rounded to four decimals for reading; conditions compare the exact ones.
pub fn explain(config: &Config, profile: &Profile, now: Millis) -> J {
    let p = &config.predictions;
    let values: Vec<J> = p
        .names
        .iter()
        .filter_map(|(name, kind)| {
            let v = value(p, kind, &profile.behaviour, now)?;
            Some(json!({"name": name, "value": round4(v), "why": why(p, kind, &profile.behaviour, now)}))
        })
        .collect();
    json!({
        "at": format_iso8601(now),
        "model": p.model.as_ref().map(|m| json!({"version": m.version, "fittedAt": format_iso8601(m.fitted_at), "pinned": p.pinned.is_some()})),
        "values": values,
    })
}

/// The predictions as export columns (`predictions_purchase30d`, ...), with the model version.
pub fn columns(config: &Config, profile: &Profile, now: Millis) -> Vec<(String, J)> {
    let p = &config.predictions;
    let Some(m) = p.model.as_ref() else { return Vec::new() };
    let mut out = vec![("predictions_model_version".to_string(), J::from(m.version))];
    for (name, kind) in &p.names {
        if let Some(v) = value(p, kind, &profile.behaviour, now) {
            out.push((format!("predictions_{}", name.replace('.', "_")), J::from(v)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::compile_str;

    const T0: Millis = 1_780_000_000_000;

    fn config() -> Config {
        compile_str(
            r#"{"predictions": {"channels": {"email": {"responses": ["Email Opened"], "unsubscribes": ["Unsubscribed"]}},
                "model": {"bgnbd": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}, "gammaGamma": {"p": 6.25, "q": 3.74, "v": 15.44},
                "channels": {"email": {"response": {"alpha": 2, "beta": 18}, "unsubscribe": {"alpha": 1, "beta": 99}}}}}}"#,
        )
        .unwrap()
    }

    fn buyer(days: &[i64]) -> Profile {
        let mut p = Profile::new("p".into(), T0);
        for d in days {
            p.behaviour.purchases.record(T0 + d * DAY, 20.0);
        }
        p
    }

    fn get(c: &Config, p: &Profile, name: &str, now: Millis) -> Option<f64> {
        predictions_of(c, p, now)[c.predictions.index(name).unwrap()]
    }

    #[test]
    fn a_silent_customer_fades_and_a_regular_one_does_not() {
        let c = config();
        let regular = buyer(&[0, 10, 20, 30, 40]);
        let early = get(&c, &regular, "purchase30d", T0 + 41 * DAY).unwrap();
        let late = get(&c, &regular, "purchase30d", T0 + 200 * DAY).unwrap();
        assert!(early > 0.5 && late < early / 2.0, "{early} then {late}");
        let alive = |t| get(&c, &regular, "alive", t).unwrap();
        assert!(alive(T0 + 41 * DAY) > alive(T0 + 100 * DAY));
        let value = get(&c, &regular, "value30d", T0 + 41 * DAY).unwrap();
        let purchases = get(&c, &regular, "purchases30d", T0 + 41 * DAY).unwrap();
        assert!(value > purchases * 15.0 && value < purchases * 25.0, "{value} for {purchases} purchases");
    }

    #[test]
    fn no_purchase_no_model_no_prediction() {
        let c = config();
        let nobody = Profile::new("n".into(), T0);
        assert_eq!(get(&c, &nobody, "purchase30d", T0), None);
        let unfitted = compile_str("{}").unwrap();
        assert_eq!(get(&unfitted, &buyer(&[0, 3]), "purchase30d", T0 + 5 * DAY), None);
    }

    #[test]
    fn responses_move_the_rate_from_the_prior() {
        let c = config();
        let mut p = Profile::new("p".into(), T0);
        assert_eq!(get(&c, &p, "response.email", T0), Some(0.1), "the prior alone");
        let stats = p.behaviour.channel("email").unwrap();
        for i in 0..10 {
            stats.record_send(T0 + i * 10 * DAY);
            stats.record_response(T0 + i * 10 * DAY + 1000);
        }
        assert_eq!(get(&c, &p, "response.email", T0 + 100 * DAY), Some(12.0 / 30.0));
        assert_eq!(get(&c, &p, "unsubscribe.email", T0 + 100 * DAY), Some(1.0 / 110.0));
    }

    #[test]
    fn sensitivity_is_the_share_of_response_lost_under_pressure() {
        let mut s = ChannelStats { by_pressure: [(100, 40), (50, 10), (50, 10), (0, 0)], ..Default::default() };
        let flat = BetaPrior { alpha: 1e-9, beta: 1e-9 };
        assert!((sensitivity(&s, flat) - 0.5).abs() < 1e-6);
        s.by_pressure = [(100, 10), (100, 20), (0, 0), (0, 0)];
        assert_eq!(sensitivity(&s, flat), 0.0, "pressure that helps is no sensitivity");
        assert_eq!(sensitivity(&ChannelStats::default(), flat), 0.0);
    }

    #[test]
    fn observing_events_records_purchases_and_reactions() {
        use crate::core::wire::events::parse_batch;
        let c = config();
        let body = r#"{"batch": [
            {"type": "track", "event": "Order Completed", "anonymousId": "a", "timestamp": "2026-05-01T10:00:00Z", "properties": {"revenue": 30}},
            {"type": "track", "event": "Order Completed", "anonymousId": "a", "timestamp": "2026-05-03T10:00:00Z", "properties": {"revenue": "x"}},
            {"type": "track", "event": "Unsubscribed", "anonymousId": "a", "timestamp": "2026-05-03T11:00:00Z"}]}"#;
        let parsed = parse_batch(body.as_bytes(), T0).unwrap();
        let mut b = Behaviour::default();
        for e in &parsed.events {
            observe(&mut b, e, &c.predictions);
        }
        let s = b.purchases.summary(T0).unwrap();
        assert_eq!((s.x, s.t_x, s.mean_value), (1.0, 2.0, 0.0));
        assert_eq!(b.channels["email"].unsubscribes, 1);
    }

    /// `?at=` is an operator's, but any instant a time parses to must give finite values or none, never a panic:
    /// before the first purchase, at the epoch, in year 9999.
    #[test]
    fn any_instant_gives_finite_predictions() {
        let c = config();
        let p = buyer(&[0, 10, 20]);
        for at in
            [0, T0 - 400 * DAY, T0 + 5 * DAY, crate::core::base::time::parse_iso8601("9999-12-31T23:59:59Z").unwrap()]
        {
            for v in predictions_of(&c, &p, at).into_iter().flatten() {
                assert!(v.is_finite() && v >= 0.0, "{v} at {at}");
            }
            assert!(explain(&c, &p, at)["values"].as_array().is_some_and(|v| !v.is_empty()));
        }
    }

    #[test]
    fn the_export_carries_the_predictions_with_their_version() {
        let c = config();
        let cols: std::collections::BTreeMap<String, J> =
            columns(&c, &buyer(&[0, 10, 20]), T0 + 30 * DAY).into_iter().collect();
        assert_eq!(cols["predictions_model_version"], 0);
        for name in
            ["predictions_alive", "predictions_purchase30d", "predictions_value90d", "predictions_response_email"]
        {
            assert!(cols[name].as_f64().is_some_and(f64::is_finite), "{name}");
        }
        assert!(columns(&compile_str("{}").unwrap(), &buyer(&[0, 10]), T0).is_empty(), "no model, no columns");
    }

    #[test]
    fn the_page_says_which_model_and_why() {
        let c = config();
        let j = explain(&c, &buyer(&[0, 10, 20]), T0 + 60 * DAY);
        assert_eq!(j["model"]["version"], 0);
        assert_eq!(j["model"]["pinned"], true);
        let v = j["values"].as_array().unwrap();
        let p30 = v.iter().find(|v| v["name"] == "purchase30d").unwrap();
        assert!(p30["why"].as_str().unwrap().starts_with("2 repeat purchase days over 60 days"), "{p30}");
    }
}
