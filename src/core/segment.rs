//! Compiled segment conditions and their evaluation against a profile at a given time.
//!
//! Evaluation never fails and allocates nothing: every check that can fail happened when the configuration
//! was compiled (see `config`).

use crate::core::consent::Purpose;
use crate::core::profile::Profile;
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

impl Condition {
    /// `segments` holds the results of segments already evaluated.
    pub fn holds(&self, profile: &Profile, now: Millis, segments: &[bool]) -> bool {
        match self {
            Condition::Everyone => true,
            Condition::EventCount { event, filters, count, window } => {
                let since = window.map(|w| now.saturating_sub(w));
                let n = profile
                    .recent
                    .iter()
                    .filter(|r| {
                        r.name == *event
                            && since.is_none_or(|s| r.at >= s)
                            && r.at <= now
                            && filters.iter().all(|f| {
                                r.props.get(&f.property).is_some_and(|v| f.any_of.iter().any(|w| v.loosely_equals(w)))
                            })
                    })
                    .count() as f64;
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
