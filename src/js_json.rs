//! `core::base::json::JsonView` over JavaScript values, so the browser checks its events (the tracker) and its decide
//! requests (the decide module) with the edge's wire rules, without a JSON parser in its Wasm.
//!
//! The values it reads come from `JSON.parse`: plain objects, arrays and primitives, with no `undefined`,
//! functions or prototypes of interest. `core::wire::events::check_event` refuses first the text `JSON.parse` would
//! read differently from the edge's parser.

use crate::core::base::json::{JsonKind, JsonView};
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

impl JsonView for JsValue {
    type Str = String;

    fn kind(&self) -> JsonKind {
        if self.is_null() || self.is_undefined() {
            JsonKind::Null
        } else if self.as_bool().is_some() {
            JsonKind::Bool
        } else if self.as_f64().is_some() {
            JsonKind::Number
        } else if self.is_string() {
            JsonKind::String
        } else if Array::is_array(self) {
            JsonKind::Array
        } else {
            JsonKind::Object
        }
    }

    fn boolean(&self) -> Option<bool> {
        self.as_bool()
    }

    fn string(&self) -> Option<String> {
        self.as_string()
    }

    fn number_text(&self) -> Option<String> {
        // JavaScript's own writing of the number (`1e+21` where the edge writes `1e21`); see the trait.
        self.as_f64()?;
        self.unchecked_ref::<js_sys::Number>().to_string_with_radix(10).ok().map(String::from)
    }

    fn number(&self) -> Option<f64> {
        self.as_f64()
    }

    fn get(&self, key: &str) -> Option<JsValue> {
        // `kind` would cross into JavaScript up to six times; an object is two questions.
        if !self.is_object() || Array::is_array(self) {
            return None;
        }
        let key = JsValue::from_str(key);
        // Own members only: a member inherited from a prototype is not in the JSON the edge reads.
        // (`Object.hasOwn` would say the same, but only in browsers from 2022 on.)
        let own = Reflect::get_own_property_descriptor(self.unchecked_ref::<Object>(), &key).ok()?;
        if own.is_undefined() {
            return None;
        }
        Reflect::get(self, &key).ok()
    }

    fn try_items<E>(&self, mut f: impl FnMut(usize, JsValue) -> Result<(), E>) -> Result<(), E> {
        // `dyn_ref` asks `Array.isArray`, which is what makes the kind an array.
        if let Some(items) = self.dyn_ref::<Array>() {
            for i in 0..items.length() {
                f(i as usize, items.get(i))?;
            }
        }
        Ok(())
    }

    fn try_entries<E>(&self, mut f: impl FnMut(&str, JsValue) -> Result<(), E>) -> Result<(), E> {
        if self.kind() != JsonKind::Object {
            return Ok(());
        }
        let keys = Object::keys(self.unchecked_ref::<Object>());
        // The edge's parser keeps members in the byte order of their names; JavaScript keeps integer-like names
        // first, then insertion order. Each member goes in at its place (a general sort costs about 1 KB of
        // Wasm, gzipped, that every visitor downloads).
        let mut entries: Vec<(String, JsValue)> = Vec::with_capacity(keys.length() as usize);
        // By index, as in `try_items`: `Array::iter` would bind a second getter into the glue.
        for i in 0..keys.length() {
            let key = keys.get(i);
            let value = Reflect::get(self, &key).unwrap_or(JsValue::NULL);
            let key = key.as_string().unwrap_or_default();
            let at = entries.partition_point(|(k, _)| *k < key);
            entries.insert(at, (key, value));
        }
        for (k, v) in entries {
            f(&k, v)?;
        }
        Ok(())
    }
}
