//! Segments, conditions, scores and computed traits as compiled rules: the types evaluation reads, which of the
//! segments are audiences, and the aggregate series a count can read. Compiling them from JSON is
//! `rules::conditions`; their evaluation against a profile is `engine::evaluate`, which cannot fail.

use crate::core::base::time::Millis;
use crate::core::base::value::Value;
use crate::core::model::aggregate::series_key;
use crate::core::model::consent::Purpose;
use crate::core::model::context::Device;
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
    /// A prediction (by its index in `Predictions::names`) compared with numbers:
    /// `{"prediction": "purchase30d", "gte": 0.4}`. Unknown (false) for a person it does not apply to (no
    /// purchase yet, no model).
    Prediction {
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

/// One compiled segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub id: String,
    pub when: Condition,
}

impl Condition {
    /// Whether the condition reads only the profile and the time, never the request (page, referrer, campaign,
    /// country, device, local hour): such a condition can be evaluated with no request at all, so segments made
    /// of them are audiences (`audiences`). `segments` and `scores` say the same of the segments and scores it
    /// references (each computed before the segments that reference it, in `segment_order`).
    pub fn reads_profile_only(&self, segments: &[bool], scores: &[bool]) -> bool {
        match self {
            Condition::Page(_)
            | Condition::Referrer(_)
            | Condition::Utm { .. }
            | Condition::Country(_)
            | Condition::Device(_)
            | Condition::LocalHour(_) => false,
            Condition::Everyone
            | Condition::EventCount { .. }
            | Condition::InactiveFor(_)
            | Condition::Identified(_)
            | Condition::Trait { .. }
            | Condition::Consent(_)
            | Condition::Prediction { .. } => true,
            Condition::Score { index, .. } => scores.get(*index).copied().unwrap_or(false),
            Condition::Segment(i) => segments.get(*i).copied().unwrap_or(false),
            Condition::All(cs) | Condition::Any(cs) => cs.iter().all(|c| c.reads_profile_only(segments, scores)),
            Condition::Not(c) => c.reads_profile_only(segments, scores),
        }
    }
}

impl Condition {
    /// Whether the condition reads a prediction (itself or a part of it; segment references are audiences of
    /// their own).
    pub fn reads_predictions(&self) -> bool {
        match self {
            Condition::Prediction { .. } => true,
            Condition::All(cs) | Condition::Any(cs) => cs.iter().any(Condition::reads_predictions),
            Condition::Not(c) => c.reads_predictions(),
            _ => false,
        }
    }
}

impl Score {
    /// Whether the score reads only the profile and the time (`Condition::reads_profile_only`).
    pub fn reads_profile_only(&self) -> bool {
        self.rules.iter().all(|r| match &r.source {
            ScoreSource::Event { .. } => true,
            ScoreSource::When(c) => c.reads_profile_only(&[], &[]),
        })
    }
}

/// The audiences of a configuration: the segments that read only the profile and the time (by index in
/// `segments`, in configuration order). Their membership is tracked on every profile, with transitions
/// (`engine::audiences`); segments that read the request are evaluated only when a request asks.
pub fn audiences(segments: &[Segment], order: &[usize], scores: &[Score]) -> Vec<usize> {
    let scores: Vec<bool> = scores.iter().map(Score::reads_profile_only).collect();
    let mut profile_only = vec![false; segments.len()];
    for &i in order {
        profile_only[i] = segments[i].when.reads_profile_only(&profile_only, &scores);
    }
    (0..segments.len()).filter(|&i| profile_only[i]).collect()
}

/// A digest of what decides audience membership (the audiences' ids and compiled conditions, and the scores),
/// so that a profile evaluated under other definitions is re-evaluated the next time it is touched.
pub fn audience_digest(segments: &[Segment], audiences: &[usize], scores: &[Score]) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for &i in audiences {
        h.update(format!("{:?}\n", segments[i]).as_bytes());
    }
    for s in scores {
        h.update(format!("{s:?}\n").as_bytes());
    }
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
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
