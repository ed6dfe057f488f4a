//! A JSON-like value that the stored profile format can encode.
//!
//! `serde_json::Value` cannot go through bincode (it needs a self-describing format), so the core keeps its
//! own closed value type and converts at the wire boundary.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A property, trait or filter value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// About how many bytes the value takes in a stored profile (bincode: a tag, lengths, the bytes), so that a
    /// profile's budget can be checked without encoding it.
    pub fn weight(&self) -> usize {
        match self {
            Value::Null | Value::Bool(_) => 2,
            Value::Number(_) => 9,
            Value::String(s) => 9 + s.len(),
            Value::Array(items) => 9 + items.iter().map(Value::weight).sum::<usize>(),
            Value::Object(map) => 9 + map.iter().map(|(k, v)| 8 + k.len() + v.weight()).sum::<usize>(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// True for the scalar kinds that a compact event record keeps.
    pub fn is_scalar(&self) -> bool {
        matches!(self, Value::Bool(_) | Value::Number(_) | Value::String(_))
    }

    /// Converts from JSON. Numbers that do not fit an `f64` exactly are rounded, as JavaScript would.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::Array(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Object(map_from_json(o)),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Object(o) => map_to_json(o),
        }
    }

    /// Loose equality used by segment filters: numbers compare numerically, strings exactly.
    pub fn loosely_equals(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a == b,
            _ => self == other,
        }
    }
}

/// Converts a JSON object; its keys come sorted, so they are inserted one by one rather than collected.
pub fn map_from_json(o: &serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (k, v) in o {
        out.insert(k.clone(), Value::from_json(v));
    }
    out
}

/// Writes whole numbers as JSON integers so that `2` does not come back as `2.0`.
fn number_to_json(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
    }
}

/// Turns a map of values into a JSON object. Inserted one by one: `collect` would link a sort and a bulk build for
/// keys that come sorted (into the browser decide module too, which renders object traits).
pub fn map_to_json(map: &BTreeMap<String, Value>) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in map {
        m.insert(k.clone(), v.to_json());
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_integers_integral() {
        let j: serde_json::Value = serde_json::from_str(r#"{"a":2,"b":2.5,"c":[true,null,"x"],"d":{"e":-1}}"#).unwrap();
        let v = Value::from_json(&j);
        assert_eq!(v.to_json(), j);
        assert_eq!(serde_json::to_string(&v.to_json()).unwrap(), r#"{"a":2,"b":2.5,"c":[true,null,"x"],"d":{"e":-1}}"#);
    }

    #[test]
    fn loose_equality_compares_numbers_numerically() {
        assert!(Value::Number(2.0).loosely_equals(&Value::Number(2.0)));
        assert!(!Value::String("2".into()).loosely_equals(&Value::Number(2.0)));
    }
}
