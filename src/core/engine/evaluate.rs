//! Evaluation: segment conditions, scores and computed traits against a profile, a request context and a time.
//!
//! Evaluation never fails and allocates nothing: every check that can fail happened when the configuration
//! was compiled (`rules`). `scores_of`, `segments_of` and `computed_of` collect a profile's values for the
//! decisions, the journeys, the audiences and the admin views, which all read them from here.

use crate::core::base::time::{Millis, DAY};
use crate::core::base::value::Value;
use crate::core::engine::predict::for_conditions;
use crate::core::model::aggregate::{day_of, DAYS};
use crate::core::model::consent::Purpose;
use crate::core::model::context::Context;
use crate::core::model::history::{EventRecord, MAX_RECENT_EVENTS};
use crate::core::model::profile::Profile;
use crate::core::rules::segment::*;
use crate::core::rules::Config;

impl ComputedTrait {
    pub fn value(&self, profile: &Profile, now: Millis) -> u64 {
        count_events(profile, &self.event, &self.filters, self.series.as_deref(), self.window, now)
    }
}

impl Score {
    /// The score at `now`, rounded to two decimals so that every platform and every reader sees the same
    /// number.
    pub fn value(&self, profile: &Profile, cx: &Context, now: Millis) -> f64 {
        let mut total = 0.0;
        for rule in &self.rules {
            let weight = match &rule.source {
                ScoreSource::Event { event, filters, series } => {
                    decayed_count(profile, event, filters, series.as_deref(), self.half_life, now)
                }
                ScoreSource::When(c) => {
                    let facts = Facts { profile, cx, now, scores: &[], predictions: &[] };
                    if c.holds(&facts, &[]) {
                        1.0
                    } else {
                        0.0
                    }
                }
            };
            total += weight * rule.points;
        }
        (total * 100.0).round() / 100.0
    }
}

impl Score {
    /// The score at `now` before rounding, in two parts: what does not decay (its conditions' points) and what
    /// does (its events' points, each already decayed to `now`). Until its inputs change, the score at `t` is
    /// `constant + decaying * 2^-((t - now) / half_life)`, which `engine::audiences` solves for a bound's crossing.
    pub fn parts(&self, profile: &Profile, cx: &Context, now: Millis) -> (f64, f64) {
        let (mut constant, mut decaying) = (0.0, 0.0);
        for rule in &self.rules {
            match &rule.source {
                ScoreSource::Event { event, filters, series } => {
                    decaying +=
                        rule.points * decayed_count(profile, event, filters, series.as_deref(), self.half_life, now);
                }
                ScoreSource::When(c) => {
                    if c.holds(&Facts { profile, cx, now, scores: &[], predictions: &[] }, &[]) {
                        constant += rule.points;
                    }
                }
            }
        }
        (constant, decaying)
    }
}

/// Everything a condition reads: the profile, the request context, the time and the profile's scores (indexed
/// like `Config::scores`).
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub profile: &'a Profile,
    pub cx: &'a Context,
    pub now: Millis,
    pub scores: &'a [f64],
    /// The profile's predictions, indexed like `Predictions::names` (`engine::predict::for_conditions`); empty
    /// when no segment reads one.
    pub predictions: &'a [Option<f64>],
}

/// Evaluates every segment. `order` lists segment indexes so that each segment comes after those it references
/// (the compiler checked there are no cycles). The result is indexed like `segments`.
pub fn evaluate_all(segments: &[Segment], order: &[usize], facts: &Facts) -> Vec<bool> {
    let mut results = vec![false; segments.len()];
    for &i in order {
        results[i] = segments[i].when.holds(facts, &results);
    }
    results
}

/// Whether the recent history holds every event since `since` (all time when `None`).
pub(crate) fn history_covers(profile: &Profile, since: Option<Millis>) -> bool {
    profile.recent.len() < MAX_RECENT_EVENTS
        || since.is_some_and(|s| profile.recent.front().is_some_and(|oldest| oldest.at < s))
}

pub(crate) fn matches(r: &EventRecord, event: &str, filters: &[PropertyFilter]) -> bool {
    r.name == *event && filters.iter().all(|f| f.matches(&r.props))
}

/// How many `event`s matching `filters` happened in `window` before `now`. The recent history gives exact times;
/// once it has let events inside the window go (a heavy profile), the daily aggregates count instead, to the
/// day, for windows of up to 30 days and at most one property filter. Beyond that the history's count is the
/// best known, and may be low.
pub(crate) fn count_events(
    profile: &Profile,
    event: &str,
    filters: &[PropertyFilter],
    series: Option<&[String]>,
    window: Option<Millis>,
    now: Millis,
) -> u64 {
    let since = window.map(|w| now.saturating_sub(w));
    if !history_covers(profile, since) {
        if let (Some(since), Some(keys)) = (since.filter(|s| day_of(now) - day_of(*s) < DAYS), series) {
            let (from, to) = (day_of(since), day_of(now));
            return keys.iter().map(|k| profile.aggregates.count(k, from, to)).sum();
        }
    }
    profile
        .recent
        .iter()
        .filter(|r| since.is_none_or(|s| r.at >= s) && r.at <= now && matches(r, event, filters))
        .count() as u64
}

/// Matching events, each weighted `2^-(age / half_life)` (1 without a half-life). A heavy profile's days before
/// its recent history come from the daily aggregates, each event aged from the middle of its day; days beyond
/// the aggregates' 31 are not counted.
fn decayed_count(
    profile: &Profile,
    event: &str,
    filters: &[PropertyFilter],
    series: Option<&[String]>,
    half_life: Option<Millis>,
    now: Millis,
) -> f64 {
    let weight = |at: Millis| match half_life {
        Some(h) => libm::exp2(-((now - at).max(0) as f64) / h as f64),
        None => 1.0,
    };
    let mut total: f64 =
        profile.recent.iter().filter(|r| r.at <= now && matches(r, event, filters)).map(|r| weight(r.at)).sum();
    if !history_covers(profile, None) {
        if let (Some(oldest), Some(keys)) = (profile.recent.front(), series) {
            for day in (day_of(now) - DAYS + 1)..day_of(oldest.at) {
                let n: u64 = keys.iter().map(|k| profile.aggregates.count(k, day, day)).sum();
                total += n as f64 * weight(day * DAY + DAY / 2);
            }
        }
    }
    total
}

impl Condition {
    /// `segments` holds the results of segments already evaluated.
    pub fn holds(&self, f: &Facts, segments: &[bool]) -> bool {
        let (profile, cx, now) = (f.profile, f.cx, f.now);
        match self {
            Condition::Everyone => true,
            Condition::EventCount { event, filters, count, window, series } => {
                let n = count_events(profile, event, filters, series.as_deref(), *window, now) as f64;
                count.iter().all(|c| c.holds(n))
            }
            Condition::Score { index, cmps } => f.scores.get(*index).is_some_and(|s| cmps.iter().all(|c| c.holds(*s))),
            Condition::Prediction { index, cmps } => {
                f.predictions.get(*index).copied().flatten().is_some_and(|v| cmps.iter().all(|c| c.holds(v)))
            }
            Condition::InactiveFor(d) => now.saturating_sub(profile.last_seen) >= *d,
            Condition::Identified(want) => profile.is_identified() == *want,
            Condition::Trait { name, test } => {
                let v = profile.traits.get(name).map(|t| &t.value);
                match test {
                    TraitTest::Exists(want) => v.is_some_and(|v| *v != Value::Null) == *want,
                    TraitTest::Eq(w) => v.is_some_and(|v| v.loosely_equals(w)),
                    TraitTest::Ne(w) => !v.is_some_and(|v| v.loosely_equals(w)),
                    TraitTest::Num(c) => v.and_then(Value::as_f64).is_some_and(|x| c.holds(x)),
                    TraitTest::In(list) => v.is_some_and(|v| list.iter().any(|w| v.loosely_equals(w))),
                    TraitTest::Contains(w) => match (v, w) {
                        (Some(Value::String(s)), Value::String(needle)) => s.contains(needle.as_str()),
                        (Some(Value::Array(items)), w) => items.iter().any(|i| i.loosely_equals(w)),
                        _ => false,
                    },
                }
            }
            Condition::Consent(p) => {
                *p == Purpose::Necessary || profile.consent.grants.get(p).is_some_and(|g| g.granted)
            }
            Condition::Page(globs) => cx.page_is(globs.iter().map(String::as_str)),
            Condition::Referrer(globs) => cx.referrer_is(globs.iter().map(String::as_str)),
            Condition::Utm { param, any_of } => cx.utm_is(param, any_of.iter().map(String::as_str)),
            Condition::Country(list) => cx.country_is(list.iter().map(String::as_str)),
            Condition::Device(list) => cx.device_is(list.iter().copied()),
            Condition::LocalHour(cmps) => local_hour_holds(cx, now, cmps.iter().copied()),
            Condition::Segment(i) => segments.get(*i).copied().unwrap_or(false),
            Condition::All(cs) => cs.iter().all(|c| c.holds(f, segments)),
            Condition::Any(cs) => cs.iter().any(|c| c.holds(f, segments)),
            Condition::Not(c) => !c.holds(f, segments),
        }
    }
}

/// The visitor's local hour at `now` passes every comparison (the device's runner reads the same rule).
pub(crate) fn local_hour_holds(cx: &Context, now: Millis, mut cmps: impl Iterator<Item = Cmp>) -> bool {
    cx.local_hour(now).is_some_and(|h| cmps.all(|c| c.holds(f64::from(h))))
}

/// Every score of a profile, indexed like `Config::scores`.
pub fn scores_of(config: &Config, profile: &Profile, cx: &Context, now: Millis) -> Vec<f64> {
    config.scores.iter().map(|s| s.value(profile, cx, now)).collect()
}

/// The segments a profile belongs to, by id, in configuration order.
pub fn segments_of<'c>(config: &'c Config, profile: &Profile, cx: &Context, now: Millis) -> Vec<&'c str> {
    let scores = scores_of(config, profile, cx, now);
    let predictions = for_conditions(config, profile, now);
    let facts = Facts { profile, cx, now, scores: &scores, predictions: &predictions };
    let results = evaluate_all(&config.segments, &config.segment_order, &facts);
    config.segments.iter().zip(results).filter(|(_, r)| *r).map(|(s, _)| s.id.as_str()).collect()
}

/// The configured computed traits' values for a profile, in configuration order.
pub fn computed_of<'c>(config: &'c Config, profile: &Profile, now: Millis) -> Vec<(&'c str, u64)> {
    config.computed.iter().map(|c| (c.id.as_str(), c.value(profile, now))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::time::{DAY, HOUR};
    use crate::core::engine::apply::{apply_events, ApplyRequest};
    use crate::core::wire::events::parse_batch;

    #[test]
    fn a_heavy_profile_still_counts_windowed_events_exactly_to_the_day() {
        let now = 1_795_344_600_000;
        // 20 bag views 3 to 5 days ago, then far more other events than the history keeps.
        let mut events = Vec::new();
        for i in 0..20 {
            events.push(format!(
                r#"{{"type":"track","event":"Product Viewed","anonymousId":"a","messageId":"b{i}","timestamp":"{}","properties":{{"category":"bags"}},"context":{{"consent":{{"categoryPreferences":{{"analytics":true}}}}}}}}"#,
                crate::core::base::time::format_iso8601(now - 3 * DAY - i * HOUR)
            ));
        }
        for i in 0..(MAX_RECENT_EVENTS + 50) {
            events.push(format!(
                r#"{{"type":"page","anonymousId":"a","messageId":"p{i}","timestamp":"{}"}}"#,
                crate::core::base::time::format_iso8601(now - DAY - i as i64 * 1000)
            ));
        }
        let body = format!(r#"{{"batch":[{}]}}"#, events.join(","));
        let parsed = parse_batch(body.as_bytes(), now).unwrap();
        let req = ApplyRequest { profile_id: "p".into(), events: parsed.events, ..ApplyRequest::default() };
        let profile = apply_events(None, req, &Config::default()).0.unwrap();
        assert!(!profile.recent.iter().any(|r| r.name == "Product Viewed"), "the history let the views go");
        let bags = PropertyFilter { property: "category".into(), any_of: vec![Value::String("bags".into())] };
        let series = series_for("Product Viewed", std::slice::from_ref(&bags));
        let views = |window| {
            count_events(&profile, "Product Viewed", std::slice::from_ref(&bags), series.as_deref(), Some(window), now)
        };
        assert_eq!(views(7 * DAY), 20);
        assert_eq!(views(2 * DAY), 0);
        assert_eq!(
            count_events(&profile, "page", &[], series_for("page", &[]).as_deref(), Some(30 * DAY), now),
            (MAX_RECENT_EVENTS + 50) as u64
        );
    }
}
