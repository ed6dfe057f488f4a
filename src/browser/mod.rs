//! The browser shell: a wasm-bindgen `Tracker` behind the snippet.
//!
//! It builds Segment-shaped events, validates each with the same core wire rules the edge applies, keeps them
//! only while consent allows analytics, and hands out request bodies. It does no I/O of its own: the
//! JavaScript glue (`js/sdk.js`) sends, persists and schedules. It reads the clock and the random source,
//! which the core may not.
//!
//! Every byte of this module's Wasm is downloaded by each consenting visitor, so it stays lean on purpose:
//! JavaScript values cross as `JSON.stringify` text (the same text the SDK would send) instead of going
//! through serde, and events are written as JSON text by hand. The text is then checked by
//! `core::wire::events::check_event`, the edge's own per-event rules, reading it through `JSON.parse` (`json.rs`):
//! no JSON parser is linked into this Wasm.

use crate::core::base::json::{JsonKind, JsonView};
use crate::core::base::time::format_iso8601;
use crate::core::model::consent::{ConsentPolicy, Purpose, RequestSignals};
use crate::core::wire::events::{check_event, parser_refuses, CallType};
use crate::core::wire::fields::char_count;
use crate::core::wire::{Rejection, MAX_ID_CHARS};
use std::collections::VecDeque;
use wasm_bindgen::prelude::*;

/// Most events kept while waiting to be sent; the oldest go first beyond it.
const MAX_QUEUED: usize = 1_000;

/// The `context.library` member every event carries.
const LIBRARY: &str = concat!(r#""library":{"name":"edgecdp.js","version":""#, env!("CARGO_PKG_VERSION"), r#""}"#);

/// The browser does not know the site's region rules, so it uses the strictest model: opt-in, the default.
static POLICY: ConsentPolicy = ConsentPolicy::DEFAULT;

#[wasm_bindgen]
pub struct Tracker {
    write_key: String,
    anonymous_id: String,
    user_id: Option<String>,
    /// The token the site's backend made for `user_id` (`identify(userId, traits, {token})`): sent in
    /// `context.identityToken` with every event that carries that user id, so the edge believes it.
    identity_token: Option<String>,
    /// The consent preferences so far, by name in byte order (the order the edge keeps them in), each name once.
    /// A sorted vector rather than a map: a map's code costs download size.
    prefs: Vec<(String, bool)>,
    /// Serialized events, oldest first.
    queue: VecDeque<String>,
    /// The message id and time the next event takes (`stampNext`): a call the loader queued before the SDK loaded
    /// keeps the id and time it got when it was made, so that sending it twice still counts once.
    stamp: Option<(String, f64)>,
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
            identity_token: None,
            prefs: Vec::new(),
            queue: VecDeque::new(),
            stamp: None,
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
        if id.is_empty() || char_count(&id) > MAX_ID_CHARS {
            return Err(js_error("invalid_type", "anonymousId", "anonymousId must be 1 to 256 characters"));
        }
        self.anonymous_id = id;
        Ok(())
    }

    #[wasm_bindgen(getter, js_name = userId)]
    pub fn user_id(&self) -> Option<String> {
        self.user_id.clone()
    }

    /// Records the visitor's choices (`{analytics, personalization, advertising, marketing}` booleans, or CMP categories).
    /// Withdrawing analytics drops what is still queued: it may no longer be sent.
    pub fn consent(&mut self, prefs: JsValue) -> Result<(), JsValue> {
        let invalid = || js_error("invalid_consent", "", "consent preferences must be an object of booleans");
        // The preferences as the JSON text of them would read, as for events.
        let parsed = stringify(&prefs).filter(|text| !parser_refuses(text)).and_then(|text| parse(&text));
        let Some(map) = parsed.filter(|v| v.kind() == JsonKind::Object) else {
            return Err(invalid());
        };
        // All of them are read before any is kept, so that refused preferences change nothing.
        let mut prefs = Vec::new();
        map.try_entries(|k, v| {
            prefs.push((k.to_string(), v.boolean().ok_or_else(invalid)?));
            Ok::<(), JsValue>(())
        })?;
        for (name, granted) in prefs {
            match self.prefs.binary_search_by(|(k, _)| k.cmp(&name)) {
                Ok(at) => self.prefs[at].1 = granted,
                Err(at) => self.prefs.insert(at, (name, granted)),
            }
        }
        if !self.allows("analytics") {
            self.queue.clear();
        }
        Ok(())
    }

    /// Whether the choices so far allow a purpose.
    pub fn allows(&self, purpose: &str) -> bool {
        let sent = POLICY.preferences(self.prefs.iter().map(|(k, g)| (k, g)));
        let effective = POLICY.effective_for(None, sent, &RequestSignals::default());
        Purpose::parse(purpose).is_some_and(|p| effective.allows(p))
    }

    pub fn page(&mut self, name: JsValue, properties: JsValue) -> Result<bool, JsValue> {
        let props = json_field(&properties, "properties")?;
        let name = json_field(&name, "name")?;
        // The glue passes the page's location in the properties; it also goes in context.page, where
        // segment conditions read it.
        let mut page = String::from("{");
        for key in ["path", "url", "referrer", "title"] {
            let value = js_sys::Reflect::get(&properties, &JsValue::from_str(key)).ok();
            if let Some(text) = value.as_ref().and_then(stringify) {
                if page.len() > 1 {
                    page.push(',');
                }
                push_json_str(&mut page, key);
                page.push(':');
                page.push_str(&text);
            }
        }
        page.push('}');
        self.enqueue(CallType::Page, "page", &[("name", name), ("properties", props)], Some(&page), None)
    }

    pub fn track(&mut self, event: JsValue, properties: JsValue) -> Result<bool, JsValue> {
        let event = json_field(&event, "event")?;
        let properties = json_field(&properties, "properties")?;
        self.enqueue(CallType::Track, "track", &[("event", event), ("properties", properties)], None, None)
    }

    /// `token`: the identity token the site's backend made for this user id (an HS256 JWT); without one, the
    /// edge keeps the user id only as an unverified claim of this browser's anonymous profile.
    pub fn identify(&mut self, user_id: JsValue, traits: JsValue, token: Option<String>) -> Result<bool, JsValue> {
        let user = json_field(&user_id, "userId")?;
        let traits = json_field(&traits, "traits")?;
        let fields = [("userId", user), ("traits", traits)];
        let sent = self.enqueue(CallType::Identify, "identify", &fields, None, token.as_deref())?;
        if sent {
            // Only a string user id is remembered for later events; a number is sent but not kept.
            self.user_id = user_id.as_string();
            self.identity_token = token.filter(|_| self.user_id.is_some());
        }
        Ok(sent)
    }

    pub fn alias(&mut self, user_id: JsValue, previous_id: JsValue) -> Result<bool, JsValue> {
        let user = json_field(&user_id, "userId")?;
        let previous = match json_field(&previous_id, "previousId")? {
            Some(p) => p,
            None => json_str(&self.anonymous_id),
        };
        // The remembered token proves the remembered user id, and only that one.
        let token = self.identity_token.clone().filter(|_| user_id.as_string() == self.user_id);
        self.enqueue(
            CallType::Alias,
            "alias",
            &[("userId", user), ("previousId", Some(previous))],
            None,
            token.as_deref(),
        )
    }

    /// Gives the next event this message id and time (milliseconds since the epoch) instead of new ones. An id
    /// the edge would refuse (empty, or longer than its limit) is ignored, and the event gets a new one.
    #[wasm_bindgen(js_name = stampNext)]
    pub fn stamp_next(&mut self, message_id: String, at: f64) {
        let fits = !message_id.is_empty() && char_count(&message_id) <= MAX_ID_CHARS;
        self.stamp = (fits && at.is_finite() && at > 0.0).then_some((message_id, at));
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
        let mut body = String::from(r#"{"writeKey":"#);
        push_json_str(&mut body, &self.write_key);
        body.push_str(r#","sentAt":""#);
        body.push_str(&format_iso8601(now()));
        body.push_str(r#"","batch":["#);
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
    /// Writes, validates and queues an event of type `call`, named `kind` on the wire. `fields` are the call's own members as JSON text (`None` when
    /// not given); a given `userId` replaces the remembered one. Returns false, keeping nothing, when consent
    /// does not allow analytics.
    fn enqueue(
        &mut self,
        call: CallType,
        kind: &str,
        fields: &[(&str, Option<String>)],
        page: Option<&str>,
        own_token: Option<&str>,
    ) -> Result<bool, JsValue> {
        let (message_id, now) = match self.stamp.take() {
            Some((id, at)) => (id, at as i64),
            None => (uuid_v4(), now()),
        };
        let mut event = String::with_capacity(256);
        event.push_str(r#"{"type":""#);
        event.push_str(kind);
        event.push_str(r#"","messageId":"#);
        push_json_str(&mut event, &message_id);
        event.push_str(r#","anonymousId":"#);
        push_json_str(&mut event, &self.anonymous_id);
        event.push_str(r#","timestamp":""#);
        event.push_str(&format_iso8601(now));
        event.push_str(r#"","context":{"#);
        event.push_str(LIBRARY);
        event.push_str(r#","consent":{"categoryPreferences":{"#);
        for (i, (k, granted)) in self.prefs.iter().enumerate() {
            if i > 0 {
                event.push(',');
            }
            push_json_str(&mut event, k);
            event.push_str(if *granted { ":true" } else { ":false" });
        }
        event.push_str("}}");
        let own_user = fields.iter().any(|(k, v)| *k == "userId" && v.is_some());
        let token =
            if own_user { own_token } else { self.identity_token.as_deref().filter(|_| self.user_id.is_some()) };
        if let Some(token) = token {
            event.push_str(r#","identityToken":"#);
            push_json_str(&mut event, token);
        }
        if let Some(page) = page {
            event.push_str(r#","page":"#);
            event.push_str(page);
        }
        event.push('}');
        if let Some(user) = self.user_id.as_deref().filter(|_| !own_user) {
            event.push_str(r#","userId":"#);
            push_json_str(&mut event, user);
        }
        for (k, v) in fields {
            if let Some(v) = v {
                event.push_str(",\"");
                event.push_str(k);
                event.push_str("\":");
                event.push_str(v);
            }
        }
        event.push('}');
        // The same validation as the edge, so that the device never sends what the edge would refuse.
        check_event(&event, call, parse).map_err(|r| rejection_error(&r))?;
        if !self.allows("analytics") {
            return Ok(false);
        }
        self.queue.push_back(event);
        while self.queue.len() > MAX_QUEUED {
            self.queue.pop_front();
        }
        Ok(true)
    }
}

fn now() -> i64 {
    js_sys::Date::now() as i64
}

/// The JSON text of a JavaScript value as `JSON.stringify` writes it; `None` where it writes nothing
/// (`undefined`, functions) or throws (cycles, `BigInt`).
fn stringify(v: &JsValue) -> Option<String> {
    js_sys::JSON::stringify(v).ok()?.as_string()
}

/// JSON text as `JSON.parse` reads it.
fn parse(text: &str) -> Option<JsValue> {
    js_sys::JSON::parse(text).ok()
}

/// A call argument as JSON text. `undefined`, `null` and what JSON writes as `null` (`NaN`) mean "not given";
/// a value that JSON cannot represent at all is refused, naming the argument.
fn json_field(v: &JsValue, field: &str) -> Result<Option<String>, JsValue> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    match stringify(v) {
        Some(text) if text == "null" => Ok(None),
        Some(text) => Ok(Some(text)),
        None => Err(js_error("invalid_type", field, &[field, " is not JSON-compatible"].concat())),
    }
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_str(&mut out, s);
    out
}

/// Appends `s` as a JSON string literal, escaping what JSON requires and nothing more.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' => {
                out.push_str("\\u00");
                push_hex(out, c as u8);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a byte as two lower-case hex digits.
fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 15)]));
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

#[wasm_bindgen]
extern "C" {
    /// The global `crypto.getRandomValues`, bound directly: through `web_sys::window()` it would also link the
    /// lookup of the global object and a `Window` type check, about 1.2 KB gzipped of Wasm and glue. It throws,
    /// which `catch` turns into an error, where the page has no Web Crypto.
    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues, catch)]
    fn get_random_values(buf: &mut [u8]) -> Result<(), JsValue>;
}

/// A random (version 4) UUID from the browser's cryptographic random source.
fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    if get_random_values(&mut b).is_err() {
        // No Web Crypto (very old or unusual hosts): fall back to Math.random, which is still unique enough for
        // an anonymous id but not unguessable.
        for x in b.iter_mut() {
            *x = (js_sys::Math::random() * 256.0) as u8;
        }
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        push_hex(&mut out, *x);
    }
    out
}

/// A free-list allocator instead of dlmalloc: smaller (see Cargo.toml). The lock costs nothing measurable on the
/// browser's single thread, and unlike `AssumeSingleThreaded` needs no `unsafe`.
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());
