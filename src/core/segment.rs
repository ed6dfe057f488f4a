//! Compiled segment conditions and their evaluation against a profile at a given time.
//!
//! Evaluation never fails and allocates nothing: every check that can fail happened when the configuration
//! was compiled (see `config`).

use crate::core::aggregate::{day_of, series_key, DAYS};
use crate::core::consent::Purpose;
use crate::core::context::{glob_matches, Context, Device};
use crate::core::profile::{EventRecord, Profile, MAX_RECENT_EVENTS};
use crate::core::time::{Millis, DAY};
use crate::core::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A numeric comparison, as written in `count` (`{"gte": 2}`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Cmp {
    Eq(f64),
    Ne(f64),
    Lt(f64),
    Lte(f64),
    Gt(f64),
    Gte(f64),
}

impl Cmp {
    pub fn holds(self, x: f64) -> bool {
        match self {
            Cmp::Eq(n) => x == n,
            Cmp::Ne(n) => x != n,
            Cmp::Lt(n) => x < n,
            Cmp::Lte(n) => x <= n,
            Cmp::Gt(n) => x > n,
            Cmp::Gte(n) => x >= n,
        }
    }
}

/// A test on one trait.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TraitTest {
    Eq(Value),
    Ne(Value),
    Num(Cmp),
    In(Vec<Value>),
    /// Substring of a string trait, or member of a list trait.
    Contains(Value),
    Exists(bool),
}

/// A property filter on counted events: the property must equal one of the values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PropertyFilter {
    pub property: String,
    pub any_of: Vec<Value>,
}

impl PropertyFilter {
    pub fn matches(&self, props: &BTreeMap<String, Value>) -> bool {
        props.get(&self.property).is_some_and(|v| self.any_of.iter().any(|w| v.loosely_equals(w)))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    /// Always true: an audience of everyone.
    Everyone,
    /// How many `event`s matching `filters` happened within `window` before now (all time when `None`).
    EventCount {
        event: String,
        filters: Vec<PropertyFilter>,
        count: Vec<Cmp>,
        window: Option<Millis>,
        /// The daily aggregate series that count these events (`series_for`), computed once at compile time.
        series: Option<Vec<String>>,
    },
    /// No event at all for at least this long (`{"inactiveFor": "30d"}`).
    InactiveFor(Millis),
    Identified(bool),
    Trait {
        name: String,
        test: TraitTest,
    },
    Consent(Purpose),
    /// The page path matches one of these globs (`/shop/*`).
    Page(Vec<String>),
    /// The referrer's host matches one of these globs (`*.google.*`).
    Referrer(Vec<String>),
    /// A campaign parameter of the page URL (`utm_campaign`) matches one of these globs.
    Utm {
        param: String,
        any_of: Vec<String>,
    },
    Country(Vec<String>),
    Device(Vec<Device>),
    /// The visitor's local hour, 0 to 23.
    LocalHour(Vec<Cmp>),
    /// A score (by its index in `Config::scores`) compared with numbers: `{"score": "intent", "gte": 30}`.
    Score {
        index: usize,
        cmps: Vec<Cmp>,
    },
    /// Membership of another segment, by its index in `Config::segments`.
    Segment(usize),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

/// A named event count over a window, from the configuration's `computedTraits`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputedTrait {
    pub id: String,
    pub event: String,
    pub filters: Vec<PropertyFilter>,
    pub window: Option<Millis>,
    pub series: Option<Vec<String>>,
}

impl ComputedTrait {
    pub fn value(&self, profile: &Profile, now: Millis) -> u64 {
        count_events(profile, &self.event, &self.filters, self.series.as_deref(), self.window, now)
    }
}

/// What earns a score its points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScoreSource {
    /// Each matching event, its points decayed by its age.
    Event { event: String, filters: Vec<PropertyFilter>, series: Option<Vec<String>> },
    /// A condition on the profile or the request that holds now (no decay). It cannot name segments or
    /// scores, which keeps scores free of cycles.
    When(Condition),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRule {
    pub source: ScoreSource,
    pub points: f64,
}

/// A rule-based scoring plan (`scores` in the configuration): "purchase intent", "churn risk".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub id: String,
    /// Points of an event halve every `half_life`; `None` keeps them whole.
    pub half_life: Option<Millis>,
    pub rules: Vec<ScoreRule>,
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
                    let facts = Facts { profile, cx, now, scores: &[] };
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

/// One compiled segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: String,
    pub when: Condition,
}

/// Everything a condition reads: the profile, the request context, the time and the profile's scores (indexed
/// like `Config::scores`).
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub profile: &'a Profile,
    pub cx: &'a Context,
    pub now: Millis,
    pub scores: &'a [f64],
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
fn history_covers(profile: &Profile, since: Option<Millis>) -> bool {
    profile.recent.len() < MAX_RECENT_EVENTS
        || since.is_some_and(|s| profile.recent.front().is_some_and(|oldest| oldest.at < s))
}

fn matches(r: &EventRecord, event: &str, filters: &[PropertyFilter]) -> bool {
    r.name == *event && filters.iter().all(|f| f.matches(&r.props))
}

/// The daily aggregate series that count `event` with `filters`, when there are such series (no filter, or one
/// whose values can key a series).
pub fn series_for(event: &str, filters: &[PropertyFilter]) -> Option<Vec<String>> {
    let keys: Vec<String> = match filters {
        [] => series_key(event, None).into_iter().collect(),
        [f] => f.any_of.iter().filter_map(|v| series_key(event, Some((&f.property, v)))).collect(),
        _ => return None,
    };
    (keys.len() == filters.first().map_or(1, |f| f.any_of.len())).then_some(keys)
}

/// How many `event`s matching `filters` happened in `window` before `now`. The recent history gives exact times;
/// once it has let events inside the window go (a heavy profile), the daily aggregates count instead, to the
/// day, for windows of up to 30 days and at most one property filter. Beyond that the history's count is the
/// best known, and may be low.
fn count_events(
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
            Condition::Page(globs) => cx.path().is_some_and(|p| globs.iter().any(|g| glob_matches(g, p))),
            Condition::Referrer(globs) => cx.referrer_host().is_some_and(|h| globs.iter().any(|g| glob_matches(g, &h))),
            Condition::Utm { param, any_of } => {
                cx.query(param).is_some_and(|v| any_of.iter().any(|g| glob_matches(g, &v)))
            }
            Condition::Country(list) => cx.country.as_ref().is_some_and(|c| list.contains(c)),
            Condition::Device(list) => cx.device.is_some_and(|d| list.contains(&d)),
            Condition::LocalHour(cmps) => {
                cx.local_hour(now).is_some_and(|h| cmps.iter().all(|c| c.holds(f64::from(h))))
            }
            Condition::Segment(i) => segments.get(*i).copied().unwrap_or(false),
            Condition::All(cs) => cs.iter().all(|c| c.holds(f, segments)),
            Condition::Any(cs) => cs.iter().any(|c| c.holds(f, segments)),
            Condition::Not(c) => !c.holds(f, segments),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use crate::core::profile::{apply_events, ApplyRequest};
    use crate::core::time::{DAY, HOUR};
    use crate::core::wire::parse_batch;

    #[test]
    fn a_heavy_profile_still_counts_windowed_events_exactly_to_the_day() {
        let now = 1_795_344_600_000;
        // 20 bag views 3 to 5 days ago, then far more other events than the history keeps.
        let mut events = Vec::new();
        for i in 0..20 {
            events.push(format!(
                r#"{{"type":"track","event":"Product Viewed","anonymousId":"a","messageId":"b{i}","timestamp":"{}","properties":{{"category":"bags"}},"context":{{"consent":{{"categoryPreferences":{{"analytics":true}}}}}}}}"#,
                crate::core::time::format_iso8601(now - 3 * DAY - i * HOUR)
            ));
        }
        for i in 0..(MAX_RECENT_EVENTS + 50) {
            events.push(format!(
                r#"{{"type":"page","anonymousId":"a","messageId":"p{i}","timestamp":"{}"}}"#,
                crate::core::time::format_iso8601(now - DAY - i as i64 * 1000)
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
