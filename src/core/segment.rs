//! Compiled segment conditions and their evaluation against a profile at a given time.
//!
//! Evaluation never fails and allocates nothing: every check that can fail happened when the configuration
//! was compiled (see `config`).

use crate::core::aggregate::{day_of, series_key, DAYS};
use crate::core::consent::Purpose;
use crate::core::profile::{Profile, MAX_RECENT_EVENTS};
use crate::core::time::Millis;
use crate::core::value::Value;

/// A numeric comparison, as written in `count` (`{"gte": 2}`).
#[derive(Clone, Copy, Debug, PartialEq)]
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
#[derive(Clone, Debug, PartialEq)]
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
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyFilter {
    pub property: String,
    pub any_of: Vec<Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// Always true: an audience of everyone.
    Everyone,
    /// How many `event`s matching `filters` happened within `window` before now (all time when `None`).
    EventCount {
        event: String,
        filters: Vec<PropertyFilter>,
        count: Vec<Cmp>,
        window: Option<Millis>,
    },
    /// No event at all for at least this long (`{"inactiveFor": "30d"}`).
    InactiveFor(Millis),
    Identified(bool),
    Trait {
        name: String,
        test: TraitTest,
    },
    Consent(Purpose),
    /// Membership of another segment, by its index in `Config::segments`.
    Segment(usize),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

/// A named event count over a window, from the configuration's `computedTraits`.
#[derive(Clone, Debug, PartialEq)]
pub struct ComputedTrait {
    pub id: String,
    pub event: String,
    pub filters: Vec<PropertyFilter>,
    pub window: Option<Millis>,
}

impl ComputedTrait {
    pub fn value(&self, profile: &Profile, now: Millis) -> u64 {
        count_events(profile, &self.event, &self.filters, self.window, now)
    }
}

/// One compiled segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub id: String,
    pub when: Condition,
}

/// Evaluates every segment for a profile. `order` lists segment indexes so that each segment comes after
/// those it references (the compiler checked there are no cycles). The result is indexed like `segments`.
pub fn evaluate_all(segments: &[Segment], order: &[usize], profile: &Profile, now: Millis) -> Vec<bool> {
    let mut results = vec![false; segments.len()];
    for &i in order {
        results[i] = segments[i].when.holds(profile, now, &results);
    }
    results
}

/// How many `event`s matching `filters` happened in `window` before `now`. The recent history gives exact times;
/// once it has let events inside the window go (a heavy profile), the daily aggregates count instead, to the
/// day, for windows of up to 30 days and at most one property filter. Beyond that the history's count is the
/// best known, and may be low.
fn count_events(
    profile: &Profile,
    event: &str,
    filters: &[PropertyFilter],
    window: Option<Millis>,
    now: Millis,
) -> u64 {
    let since = window.map(|w| now.saturating_sub(w));
    let history_covers = profile.recent.len() < MAX_RECENT_EVENTS
        || since.is_some_and(|s| profile.recent.front().is_some_and(|oldest| oldest.at < s));
    if !history_covers && filters.len() <= 1 {
        if let Some(since) = since.filter(|s| day_of(now) - day_of(*s) < DAYS) {
            let (from, to) = (day_of(since), day_of(now));
            let keys: Vec<String> = match filters.first() {
                None => series_key(event, None).into_iter().collect(),
                Some(f) => f.any_of.iter().filter_map(|v| series_key(event, Some((&f.property, v)))).collect(),
            };
            if keys.len() == filters.first().map_or(1, |f| f.any_of.len()) {
                return keys.iter().map(|k| profile.aggregates.count(k, from, to)).sum();
            }
        }
    }
    profile
        .recent
        .iter()
        .filter(|r| {
            r.name == *event
                && since.is_none_or(|s| r.at >= s)
                && r.at <= now
                && filters
                    .iter()
                    .all(|f| r.props.get(&f.property).is_some_and(|v| f.any_of.iter().any(|w| v.loosely_equals(w))))
        })
        .count() as u64
}

impl Condition {
    /// `segments` holds the results of segments already evaluated.
    pub fn holds(&self, profile: &Profile, now: Millis, segments: &[bool]) -> bool {
        match self {
            Condition::Everyone => true,
            Condition::EventCount { event, filters, count, window } => {
                let n = count_events(profile, event, filters, *window, now) as f64;
                count.iter().all(|c| c.holds(n))
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
            Condition::Segment(i) => segments.get(*i).copied().unwrap_or(false),
            Condition::All(cs) => cs.iter().all(|c| c.holds(profile, now, segments)),
            Condition::Any(cs) => cs.iter().any(|c| c.holds(profile, now, segments)),
            Condition::Not(c) => !c.holds(profile, now, segments),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::Config;
    use crate::core::consent::RequestSignals;
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
        let req = ApplyRequest {
            profile_id: "p".into(),
            signals: RequestSignals::default(),
            events: parsed.events,
            links: Vec::new(),
        };
        let profile = apply_events(None, req, &Config::default()).0.unwrap();
        assert!(!profile.recent.iter().any(|r| r.name == "Product Viewed"), "the history let the views go");
        let bags = PropertyFilter { property: "category".into(), any_of: vec![Value::String("bags".into())] };
        let views = |window| count_events(&profile, "Product Viewed", std::slice::from_ref(&bags), Some(window), now);
        assert_eq!(views(7 * DAY), 20);
        assert_eq!(views(2 * DAY), 0);
        assert_eq!(count_events(&profile, "page", &[], Some(30 * DAY), now), (MAX_RECENT_EVENTS + 50) as u64);
    }
}
