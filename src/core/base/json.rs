//! A read-only view of a JSON value, so that one set of wire rules reads both the edge's parsed JSON and the
//! browser's JavaScript values.
//!
//! `core::wire` writes its per-event checks once, over `JsonView`. The edge implements it for
//! `serde_json::Value` (here); the browser shell implements it over the `JSON.parse` result of the event text it
//! is about to send, so the browser links no JSON parser of its own and still refuses exactly what the edge
//! would.

/// What kind of JSON value a view holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

/// Read access to one JSON value. Views are cheap handles (a reference, or a JavaScript object reference).
pub trait JsonView: Sized + Clone {
    /// A string read out of the value: borrowed where the value holds Rust strings, owned where it does not.
    type Str: AsRef<str>;

    fn kind(&self) -> JsonKind;

    /// The value of a boolean.
    fn boolean(&self) -> Option<bool>;

    /// The text of a string.
    fn string(&self) -> Option<Self::Str>;

    /// A number written as text, for ids that Segment's libraries send as numbers. Implementations may write a
    /// number differently (`1e21` or `1e+21`); no rule depends on more than the text being short (serde_json
    /// and JavaScript both write any `f64` in at most 25 characters, with an exponent for large ones) and not
    /// empty.
    fn number_text(&self) -> Option<String>;

    /// The value of a number.
    fn number(&self) -> Option<f64>;

    /// An object's member; `None` when it is absent or when this is not an object.
    fn get(&self, key: &str) -> Option<Self>;

    /// Calls `f` with each item of an array, in order, until `f` fails. Does nothing for other kinds.
    fn try_items<E>(&self, f: impl FnMut(usize, Self) -> Result<(), E>) -> Result<(), E>;

    /// Calls `f` with each member of an object until `f` fails, in the byte order of the member names (the
    /// order the edge's parser keeps them in, which decides which bad member a rejection names first). Does
    /// nothing for other kinds.
    fn try_entries<E>(&self, f: impl FnMut(&str, Self) -> Result<(), E>) -> Result<(), E>;
}

impl<'a> JsonView for &'a serde_json::Value {
    type Str = &'a str;

    fn kind(&self) -> JsonKind {
        match self {
            serde_json::Value::Null => JsonKind::Null,
            serde_json::Value::Bool(_) => JsonKind::Bool,
            serde_json::Value::Number(_) => JsonKind::Number,
            serde_json::Value::String(_) => JsonKind::String,
            serde_json::Value::Array(_) => JsonKind::Array,
            serde_json::Value::Object(_) => JsonKind::Object,
        }
    }

    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }

    fn string(&self) -> Option<&'a str> {
        self.as_str()
    }

    fn number_text(&self) -> Option<String> {
        match self {
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn number(&self) -> Option<f64> {
        self.as_f64()
    }

    fn get(&self, key: &str) -> Option<&'a serde_json::Value> {
        self.as_object()?.get(key)
    }

    fn try_items<E>(&self, mut f: impl FnMut(usize, Self) -> Result<(), E>) -> Result<(), E> {
        if let serde_json::Value::Array(items) = self {
            for (i, item) in items.iter().enumerate() {
                f(i, item)?;
            }
        }
        Ok(())
    }

    fn try_entries<E>(&self, mut f: impl FnMut(&str, Self) -> Result<(), E>) -> Result<(), E> {
        // Without serde_json's `preserve_order` feature (which nothing in the build enables), a map iterates
        // in key order.
        if let serde_json::Value::Object(map) = self {
            for (k, v) in map {
                f(k, v)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_json_members_come_in_key_order() {
        let v: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":2,"10":3,"9":4}"#).expect("valid JSON");
        let mut keys = Vec::new();
        (&v).try_entries(|k, _| {
            keys.push(k.to_string());
            Ok::<(), ()>(())
        })
        .expect("no error");
        assert_eq!(keys, ["10", "9", "a", "b"]);
    }
}
