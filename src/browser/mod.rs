//! The browser shell: a wasm-bindgen `Tracker` behind the snippet.
//!
//! It builds Segment-shaped events, validates each with the same core wire rules the edge applies, keeps them
//! only while consent allows analytics, and hands out request bodies. It does no I/O of its own: the
//! JavaScript glue (`js/sdk.js`) sends, persists and schedules. It reads the clock and the random source,
//! which the core may not.

use crate::core::consent::{ConsentPolicy, Purpose, RequestSignals};
use crate::core::time::format_iso8601;
use crate::core::wire::{parse_event_value, Rejection};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use wasm_bindgen::prelude::*;

/// Most events kept while waiting to be sent; the oldest go first beyond it.
const MAX_QUEUED: usize = 1_000;

#[wasm_bindgen]
pub struct Tracker {
    write_key: String,
    anonymous_id: String,
    user_id: Option<String>,
    prefs: BTreeMap<String, bool>,
    /// The browser does not know the site's region rules, so it uses the strictest model: opt-in.
    policy: ConsentPolicy,
    /// Serialized events, oldest first.
    queue: VecDeque<String>,
}

#[wasm_bindgen]
impl Tracker {
    #[wasm_bindgen(constructor)]
    pub fn new(write_key: String, anonymous_id: Option<String>) -> Tracker {
        let anonymous_id = anonymous_id.filter(|a| !a.is_empty()).unwrap_or_else(uuid_v4);
        Tracker {
            write_key,
            anonymous_id,
            user_id: None,
            prefs: BTreeMap::new(),
            policy: ConsentPolicy::default(),
            queue: VecDeque::new(),
        }
    }

    #[wasm_bindgen(getter, js_name = anonymousId)]
    pub fn anonymous_id(&self) -> String {
        self.anonymous_id.clone()
    }

    /// Adopts the id the edge answered with (from the signed first-party cookie), so a visitor whose script
    /// storage was cleared keeps one profile. Events already queued keep the id they were made with.
    #[wasm_bindgen(setter, js_name = anonymousId)]
    pub fn set_anonymous_id(&mut self, id: String) -> Result<(), JsValue> {
        if id.is_empty() || id.chars().count() > crate::core::wire::MAX_ID_CHARS {
            return Err(js_error("invalid_type", "anonymousId", "anonymousId must be 1 to 256 characters"));
        }
        self.anonymous_id = id;
        Ok(())
    }

    #[wasm_bindgen(getter, js_name = userId)]
    pub fn user_id(&self) -> Option<String> {
        self.user_id.clone()
    }

    /// Records the visitor's choices (`{analytics, personalization, advertising}` booleans, or CMP categories).
    /// Withdrawing analytics drops what is still queued: it may no longer be sent.
    pub fn consent(&mut self, prefs: JsValue) -> Result<(), JsValue> {
        let prefs: BTreeMap<String, bool> = serde_wasm_bindgen::from_value(prefs)
            .map_err(|e| js_error("invalid_consent", "", &format!("consent preferences must be booleans: {e}")))?;
        self.prefs.extend(prefs);
        if !self.allows("analytics") {
            self.queue.clear();
        }
        Ok(())
    }

    /// Whether the choices so far allow a purpose.
    pub fn allows(&self, purpose: &str) -> bool {
        let effective = self.policy.effective(None, Some(&self.prefs), &RequestSignals::default());
        Purpose::parse(purpose).is_some_and(|p| effective.allows(p))
    }

    pub fn page(&mut self, name: JsValue, properties: JsValue) -> Result<bool, JsValue> {
        let properties = to_json(properties, "properties")?;
        let mut fields = Map::new();
        if !name.is_undefined() && !name.is_null() {
            fields.insert("name".into(), to_json(name, "name")?);
        }
        // The glue passes the page's location in the properties; it also goes in context.page, where
        // segment conditions read it.
        let page: Map<String, Value> = ["path", "url", "referrer", "title"]
            .iter()
            .filter_map(|k| properties.get(*k).map(|v| (k.to_string(), v.clone())))
            .collect();
        fields.insert("properties".into(), properties);
        self.enqueue("page", fields, Some(Value::Object(page)))
    }

    pub fn track(&mut self, event: JsValue, properties: JsValue) -> Result<bool, JsValue> {
        let mut fields = Map::new();
        fields.insert("event".into(), to_json(event, "event")?);
        fields.insert("properties".into(), to_json(properties, "properties")?);
        self.enqueue("track", fields, None)
    }

    pub fn identify(&mut self, user_id: JsValue, traits: JsValue) -> Result<bool, JsValue> {
        let user = to_json(user_id, "userId")?;
        let mut fields = Map::new();
        fields.insert("userId".into(), user.clone());
        fields.insert("traits".into(), to_json(traits, "traits")?);
        let sent = self.enqueue("identify", fields, None)?;
        if sent {
            self.user_id = user.as_str().map(String::from);
        }
        Ok(sent)
    }

    pub fn alias(&mut self, user_id: JsValue, previous_id: JsValue) -> Result<bool, JsValue> {
        let mut fields = Map::new();
        fields.insert("userId".into(), to_json(user_id, "userId")?);
        let previous = to_json(previous_id, "previousId")?;
        let previous = if previous.is_null() { Value::String(self.anonymous_id.clone()) } else { previous };
        fields.insert("previousId".into(), previous);
        self.enqueue("alias", fields, None)
    }

    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Takes the oldest queued events that fit in `max_bytes` and returns a `POST /v1/batch` body, or
    /// `undefined` when nothing is queued. One event always goes, so a large event cannot stall the queue.
    #[wasm_bindgen(js_name = takeBatch)]
    pub fn take_batch(&mut self, max_bytes: usize) -> Option<String> {
        if self.queue.is_empty() {
            return None;
        }
        let head = format!(
            r#"{{"writeKey":{},"sentAt":"{}","batch":["#,
            Value::String(self.write_key.clone()),
            format_iso8601(now())
        );
        let mut body = head;
        let mut first = true;
        while let Some(next) = self.queue.front() {
            if !first && body.len() + next.len() + 3 > max_bytes {
                break;
            }
            if !first {
                body.push(',');
            }
            body.push_str(next);
            first = false;
            self.queue.pop_front();
        }
        body.push_str("]}");
        Some(body)
    }
}

impl Tracker {
    /// Builds, validates and queues an event. Returns false, keeping nothing, when consent does not allow
    /// analytics.
    fn enqueue(&mut self, kind: &str, fields: Map<String, Value>, page: Option<Value>) -> Result<bool, JsValue> {
        let now = now();
        let mut event = json!({
            "type": kind,
            "messageId": uuid_v4(),
            "anonymousId": self.anonymous_id,
            "timestamp": format_iso8601(now),
            "context": {
                "library": {"name": "edgecdp.js", "version": env!("CARGO_PKG_VERSION")},
                "consent": {"categoryPreferences": self.prefs},
            },
        });
        if let Some(u) = &self.user_id {
            event["userId"] = Value::String(u.clone());
        }
        if let Some(p) = page {
            event["context"]["page"] = p;
        }
        if let Value::Object(obj) = &mut event {
            obj.extend(fields.into_iter().filter(|(_, v)| !v.is_null()));
        }
        // The same validation as the edge, so that the device never sends what the edge would refuse.
        parse_event_value(&event, now).map_err(|r| rejection_error(&r))?;
        if !self.allows("analytics") {
            return Ok(false);
        }
        self.queue.push_back(event.to_string());
        while self.queue.len() > MAX_QUEUED {
            self.queue.pop_front();
        }
        Ok(true)
    }
}

fn now() -> i64 {
    js_sys::Date::now() as i64
}

fn to_json(v: JsValue, field: &str) -> Result<Value, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(Value::Null);
    }
    serde_wasm_bindgen::from_value(v)
        .map_err(|e| js_error("invalid_type", field, &format!("{field} is not JSON-compatible: {e}")))
}

fn rejection_error(r: &Rejection) -> JsValue {
    js_error(r.code, &r.path, &r.message)
}

/// A JavaScript `Error` carrying `code` and `path`, like the edge's error bodies.
fn js_error(code: &str, path: &str, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &"code".into(), &code.into());
    let _ = js_sys::Reflect::set(&err, &"path".into(), &path.into());
    err.into()
}

/// A random (version 4) UUID from the browser's cryptographic random source, which, unlike
/// `crypto.randomUUID`, is available on plain-HTTP pages too.
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    let filled = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .is_some_and(|c| c.get_random_values_with_u8_array(&mut b).is_ok());
    if !filled {
        // No Web Crypto (very old or unusual hosts): fall back to Math.random, which is still unique enough for
        // an anonymous id but not unguessable.
        for x in b.iter_mut() {
            *x = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}
