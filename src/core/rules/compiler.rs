//! The compiler's readers: a configuration's JSON read into typed values, each problem reported with its JSON
//! path (`ConfigError`) and the reading carried on, so that one compile reports every problem. Every section's
//! `impl Compiler` (`sources`, `segment`, `slots`, ...) reads through these; `Compiler` also carries what the
//! sections compiled so far that later ones may name (computed traits, scores, experiments, broken segments).

use crate::core::base::time::{parse_duration, parse_iso8601};
use crate::core::base::value::Value;
use crate::core::rules::segment::ComputedTrait;
use serde_json::{Map, Value as J};
use std::collections::BTreeSet;

/// One problem in a configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A key that is present and not `null` (a `null` section means "use the default").
pub(crate) fn present<'a>(o: &'a Map<String, J>, key: &str) -> Option<&'a J> {
    o.get(key).filter(|v| !v.is_null())
}

pub(crate) fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(crate) fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

pub(crate) struct Compiler {
    pub(crate) errors: Vec<ConfigError>,
    /// The computed traits compiled so far, which conditions may name.
    pub(crate) computed: Vec<ComputedTrait>,
    /// The ids of the scores compiled so far, which segment conditions may name.
    pub(crate) scores: Vec<String>,
    /// Set while compiling a score's rules, which may not name segments or scores (no cycles).
    pub(crate) in_score: bool,
    pub(crate) experiment_ids: BTreeSet<String>,
    /// The ids of segments that are declared but failed to compile (all of them, since one failure discards the
    /// list). A reference to one is not reported again: the segment's own problem already refuses the
    /// configuration, and "unknown segment" at every use would bury it.
    pub(crate) broken_segments: BTreeSet<String>,
    /// The names of the predictions (`rules::predictions`), which segment conditions may name.
    pub(crate) predictions: Vec<String>,
    /// Set once a condition names a prediction.
    pub(crate) reads_predictions: bool,
}

impl Compiler {
    pub(crate) fn new() -> Compiler {
        Compiler {
            errors: Vec::new(),
            computed: Vec::new(),
            scores: Vec::new(),
            in_score: false,
            experiment_ids: BTreeSet::new(),
            broken_segments: BTreeSet::new(),
            predictions: Vec::new(),
            reads_predictions: false,
        }
    }

    pub(crate) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }

    /// A reference to a segment id that is not among the compiled segments: reported, unless the segment is
    /// declared and broken (see `broken_segments`).
    pub(crate) fn unknown_segment(&mut self, path: impl Into<String>, id: &str) {
        if !self.broken_segments.contains(id) {
            self.err(path, format!("unknown segment {id:?}"));
        }
    }

    pub(crate) fn object<'a>(&mut self, v: &'a J, path: &str, allowed: &[&str]) -> Option<&'a Map<String, J>> {
        match v {
            J::Object(o) => {
                for k in o.keys() {
                    if !allowed.contains(&k.as_str()) {
                        self.err(at(path, k), format!("unknown field; expected one of: {}", allowed.join(", ")));
                    }
                }
                Some(o)
            }
            _ => {
                self.err(path, "expected an object");
                None
            }
        }
    }

    pub(crate) fn array<'a>(&mut self, v: &'a J, path: &str) -> Option<&'a Vec<J>> {
        match v {
            J::Array(a) => Some(a),
            _ => {
                self.err(path, "expected an array");
                None
            }
        }
    }

    pub(crate) fn string(&mut self, v: Option<&J>, path: &str) -> Option<String> {
        match v {
            Some(J::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(J::String(_)) => {
                self.err(path, "must not be empty");
                None
            }
            None | Some(J::Null) => {
                self.err(path, "is required");
                None
            }
            Some(_) => {
                self.err(path, "expected a string");
                None
            }
        }
    }

    pub(crate) fn id(&mut self, v: Option<&J>, path: &str) -> Option<String> {
        let s = self.string(v, path)?;
        if is_id(&s) {
            Some(s)
        } else {
            self.err(path, "an id is 1 to 128 letters, digits, '-', '_' or '.'");
            None
        }
    }

    pub(crate) fn number(&mut self, v: &J, path: &str) -> Option<f64> {
        match v.as_f64() {
            Some(n) => Some(n),
            None => {
                self.err(path, "expected a number");
                None
            }
        }
    }

    pub(crate) fn integer(&mut self, v: &J, path: &str, min: i64, max: i64) -> Option<i64> {
        match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.err(path, format!("must be between {min} and {max}"));
                None
            }
            None => {
                self.err(path, "expected a whole number");
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, v: &J, path: &str) -> Option<bool> {
        match v {
            J::Bool(b) => Some(*b),
            _ => {
                self.err(path, "expected true or false");
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, v: &J, path: &str) -> Option<i64> {
        match v.as_str().and_then(parse_duration) {
            Some(d) => Some(d),
            None => {
                self.err(path, "expected a duration such as \"30m\", \"12h\", \"7d\" or \"4w\"");
                None
            }
        }
    }

    pub(crate) fn time(&mut self, v: &J, path: &str) -> Option<i64> {
        match v.as_str().and_then(parse_iso8601) {
            Some(t) => Some(t),
            None => {
                self.err(path, "expected an ISO 8601 date-time");
                None
            }
        }
    }

    pub(crate) fn scalar(&mut self, v: &J, path: &str) -> Option<Value> {
        match v {
            J::String(_) | J::Number(_) | J::Bool(_) => Some(Value::from_json(v)),
            _ => {
                self.err(path, "expected a string, number or boolean");
                None
            }
        }
    }
}
