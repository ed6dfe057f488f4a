//! Property tests of the wire parser (the issue's fuzz target): whatever bytes or JSON arrive, parsing never
//! panics, every event of a batch ends up either accepted or rejected with its own index and a path inside
//! it, and a well-formed event is accepted with its fields intact. The case counts are fixed, so `npm test`
//! runs this for a bounded time (a few seconds).
//!
//! They also prove that the browser's check (`check_event`, which reads the event through a `JsonView` of
//! what `JSON.parse` returns) refuses exactly what the edge refuses, with the same code and path: `JsLike`
//! below stands in for the browser's view of JavaScript values, keeping object members in another order than
//! the edge's parser, as JavaScript does.

use edgecdp::core::base::json::{JsonKind, JsonView};
use edgecdp::core::wire::auth::write_key_from_basic_auth;
use edgecdp::core::wire::decide::parse_decide;
use edgecdp::core::wire::events::{check_event, parse_batch, parse_single, CallType};
use edgecdp::core::wire::BodyError;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const NOW: i64 = 1_795_344_600_000;

/// Field names the parser looks at, mixed with others, so generated objects hit the interesting paths.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "type", "event", "name", "anonymousId", "userId", "messageId", "timestamp", "sentAt", "properties",
            "traits", "context", "consent", "categoryPreferences", "page", "path", "previousId", "groupId",
            "writeKey", "batch",
        ])
        .prop_map(String::from),
        1 => "[a-zA-Z_]{0,8}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        prop::sample::select(vec![
            "track",
            "page",
            "screen",
            "identify",
            "alias",
            "group",
            "",
            "2026-11-22T10:00:00Z",
            "2026-02-30T00:00:00Z",
            "not a time",
            "null",
            "\u{0}",
            "é✓",
        ])
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Events that are mostly shaped like Segment's, with random damage.
fn event_like() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["track", "page", "screen", "identify", "alias", "group", "bogus"]),
        prop::option::of("[a-z0-9-]{0,10}"),
        prop::option::of("[a-z0-9-]{0,10}"),
        prop::collection::btree_map(key(), json_value(), 0..4),
    )
        .prop_map(|(t, a, u, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            m.insert("type".into(), json!(t));
            if let Some(a) = a {
                m.insert("anonymousId".into(), json!(a));
            }
            if let Some(u) = u {
                m.insert("userId".into(), json!(u));
            }
            Value::Object(m)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_batch(&bytes, NOW);
        let _ = parse_single(&bytes, CallType::Track, NOW);
        let _ = parse_decide(&bytes);
        let _ = write_key_from_basic_auth(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn arbitrary_json_never_panics(v in json_value()) {
        let text = v.to_string();
        let _ = parse_batch(text.as_bytes(), NOW);
        let _ = parse_single(text.as_bytes(), CallType::Identify, NOW);
        let _ = parse_decide(text.as_bytes());
        let wrapped = json!({"batch": [v.clone(), v], "sentAt": "2026-11-22T10:00:00Z"}).to_string();
        let _ = parse_batch(wrapped.as_bytes(), NOW);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn every_event_is_accepted_or_rejected_once(events in prop::collection::vec(event_like(), 0..12)) {
        let body = json!({"batch": events}).to_string();
        let parsed = parse_batch(body.as_bytes(), NOW).expect("a batch of objects is a valid body");
        prop_assert_eq!(parsed.events.len() + parsed.rejected.len(), events.len());
        let mut seen = std::collections::BTreeSet::new();
        for r in &parsed.rejected {
            prop_assert!(r.index < events.len());
            prop_assert!(seen.insert(r.index), "index {} rejected twice", r.index);
            let prefix = format!("batch[{}]", r.index);
            prop_assert!(r.path.starts_with(&prefix), "path {} outside {}", r.path, prefix);
            prop_assert!(!r.code.is_empty() && !r.message.is_empty());
        }
        for e in &parsed.events {
            prop_assert!(e.anonymous_id.is_some() || e.user_id.is_some());
            prop_assert!(!e.message_id.is_empty());
        }
    }

    #[test]
    fn well_formed_tracks_are_accepted_intact(
        name in "[A-Za-z][A-Za-z ]{0,30}",
        anon in "[a-z0-9-]{1,36}",
        n in any::<i32>(),
        offset_s in 0i64..86_400,
    ) {
        let ts = edgecdp::core::base::time::format_iso8601(NOW - offset_s * 1000);
        let body = json!({"batch": [{"type": "track", "event": name, "anonymousId": anon, "timestamp": ts,
                                      "properties": {"n": n, "s": "x"}}]}).to_string();
        let parsed = parse_batch(body.as_bytes(), NOW).expect("valid body");
        prop_assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        let e = &parsed.events[0];
        prop_assert_eq!(e.count_key(), name.as_str());
        prop_assert_eq!(e.anonymous_id.as_deref(), Some(anon.as_str()));
        prop_assert_eq!(e.timestamp, NOW - offset_s * 1000);
        prop_assert_eq!(e.properties().and_then(|p| p.get("n")).and_then(|v| v.as_f64()), Some(f64::from(n)));
    }
}

/// A JavaScript-like value, as the browser's view reads it: owned strings, numbers as `f64`, and object
/// members in insertion order (here the reverse of the edge's order, so the view must sort them as the
/// browser's does).
#[derive(Debug)]
enum JsLike {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<JsLike>),
    Object(Vec<(String, JsLike)>),
}

impl JsLike {
    fn from_json(v: &Value) -> JsLike {
        match v {
            Value::Null => JsLike::Null,
            Value::Bool(b) => JsLike::Bool(*b),
            Value::Number(n) => JsLike::Number(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => JsLike::String(s.clone()),
            Value::Array(items) => JsLike::Array(items.iter().map(JsLike::from_json).collect()),
            Value::Object(m) => {
                JsLike::Object(m.iter().rev().map(|(k, v)| (k.clone(), JsLike::from_json(v))).collect())
            }
        }
    }
}

impl<'a> JsonView for &'a JsLike {
    type Str = String;

    fn kind(&self) -> JsonKind {
        match self {
            JsLike::Null => JsonKind::Null,
            JsLike::Bool(_) => JsonKind::Bool,
            JsLike::Number(_) => JsonKind::Number,
            JsLike::String(_) => JsonKind::String,
            JsLike::Array(_) => JsonKind::Array,
            JsLike::Object(_) => JsonKind::Object,
        }
    }

    fn boolean(&self) -> Option<bool> {
        match self {
            JsLike::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn string(&self) -> Option<String> {
        match self {
            JsLike::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    fn number_text(&self) -> Option<String> {
        match self {
            // As JavaScript writes numbers: with an exponent from 1e21 on and below 1e-6.
            JsLike::Number(n) if n.abs() >= 1e21 || (*n != 0.0 && n.abs() < 1e-6) => Some(format!("{n:e}")),
            JsLike::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            JsLike::Number(n) => Some(*n),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&'a JsLike> {
        match self {
            JsLike::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn try_items<E>(&self, mut f: impl FnMut(usize, Self) -> Result<(), E>) -> Result<(), E> {
        if let JsLike::Array(items) = self {
            for (i, item) in items.iter().enumerate() {
                f(i, item)?;
            }
        }
        Ok(())
    }

    fn try_entries<E>(&self, mut f: impl FnMut(&str, Self) -> Result<(), E>) -> Result<(), E> {
        if let JsLike::Object(members) = self {
            let mut sorted: Vec<&(String, JsLike)> = members.iter().collect();
            edgecdp::core::base::sort::sort_by(&mut sorted, |a, b| a.0.cmp(&b.0));
            for (k, v) in sorted {
                f(k, v)?;
            }
        }
        Ok(())
    }
}

/// The first rejection's code and path, or `None` when the event is accepted.
type Outcome = Option<(String, String)>;

/// What the browser's check says of an event's text.
fn browser_outcome(text: &str, call: CallType) -> Outcome {
    // JSON.parse accepts all the text serde_json accepts; what it accepts beyond that, `check_event` refuses
    // before parsing.
    let tree = serde_json::from_str::<Value>(text).ok().map(|v| JsLike::from_json(&v));
    check_event(text, call, |_| tree.as_ref()).err().map(|r| (r.code.to_string(), r.path))
}

/// What the edge says of the same event sent alone to the call's endpoint, and as the only event of a batch
/// (with its path inside the batch made relative again). A body the edge cannot read counts as `invalid_json`.
fn edge_outcomes(text: &str, call: CallType) -> (Outcome, Outcome) {
    let outcome = |parsed: Result<edgecdp::core::wire::events::Parsed, BodyError>, prefix: &str| match parsed {
        Ok(p) => p.rejected.first().map(|r| {
            let path = r.path.strip_prefix(prefix).unwrap_or(&r.path);
            (r.code.to_string(), path.trim_start_matches('.').to_string())
        }),
        Err(BodyError::NotJson(_)) => Some(("invalid_json".to_string(), String::new())),
        // The single endpoint refuses an oversized event as an oversized body (413): the same refusal.
        Err(BodyError::TooLarge { .. }) => Some(("event_too_large".to_string(), String::new())),
        Err(e) => Some((e.code().to_string(), String::from("(body)"))),
    };
    let single = outcome(parse_single(text.as_bytes(), call, NOW), "");
    let in_batch = outcome(parse_batch(format!(r#"{{"batch":[{text}]}}"#).as_bytes(), NOW), "batch[0]");
    (single, in_batch)
}

/// Whether an event names its own call in its `type`, as every event the browser writes does; only then does
/// a batch (where `type` is required and chooses the rules) judge it as the call's endpoint does.
fn names_its_call(text: &str, call: CallType) -> bool {
    let v: Option<Value> = serde_json::from_str(text).ok();
    v.as_ref().and_then(|v| v.get("type")).and_then(Value::as_str).and_then(CallType::from_name) == Some(call)
}

fn call_of(v: &Value) -> CallType {
    v.get("type").and_then(Value::as_str).and_then(CallType::from_name).unwrap_or(CallType::Track)
}

#[test]
fn the_browser_refuses_exactly_what_the_edge_refuses() {
    let long = |n: usize| "x".repeat(n);
    let deep = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    let cases: Vec<(CallType, String)> = vec![
        (CallType::Track, r#"{"type":"track","event":"E","anonymousId":"a","properties":{"k":[1,{"b":null}]}}"#.into()),
        (CallType::Track, r#"{"event":"E","userId":42}"#.into()),
        (CallType::Track, r#"{"type":"track","anonymousId":"a"}"#.into()),
        (CallType::Track, r#"{"type":"page","event":"E","anonymousId":"a"}"#.into()),
        (CallType::Track, r#"{"type":7,"event":"E","anonymousId":"a"}"#.into()),
        (CallType::Track, r#"{"type":"track","event":"E"}"#.into()),
        (CallType::Track, r#"{"type":"track","event":"E","anonymousId":"","userId":null}"#.into()),
        (CallType::Track, r#"{"type":"track","event":"E","anonymousId":"a","messageId":{}}"#.into()),
        (CallType::Track, format!(r#"{{"type":"track","event":"E","anonymousId":"{}"}}"#, long(257))),
        (CallType::Track, r#"{"type":"track","event":"  ","anonymousId":"a"}"#.into()),
        (CallType::Track, format!(r#"{{"type":"track","event":"{}","anonymousId":"a"}}"#, long(1025))),
        (CallType::Track, r#"{"type":"track","event":"E","anonymousId":"a","timestamp":"yesterday"}"#.into()),
        (CallType::Track, r#"{"type":"track","event":"E","anonymousId":"a","sentAt":5}"#.into()),
        (CallType::Track, r#"{"type":"track","event":"E","anonymousId":"a","properties":[]}"#.into()),
        (CallType::Track, format!(r#"{{"type":"track","event":"E","anonymousId":"a","properties":{}}}"#, deep(17))),
        (CallType::Track, format!(r#"{{"type":"track","event":"E","anonymousId":"a","properties":{}}}"#, deep(130))),
        (
            CallType::Track,
            format!(
                r#"{{"type":"track","event":"E","anonymousId":"a","properties":{{"z":"{0}","b":"{0}","10":"{0}","9":"{0}"}}}}"#,
                long(8193)
            ),
        ),
        (
            CallType::Track,
            format!(r#"{{"type":"track","event":"E","anonymousId":"a","properties":{{"{}":1}}}}"#, long(8193)),
        ),
        (
            CallType::Track,
            format!(r#"{{"type":"track","event":"E","anonymousId":"a","properties":{{"s":"{}"}}}}"#, long(40_000)),
        ),
        (CallType::Track, r#"{"type":"track","event":"E","anonymousId":"a","properties":{"s":"\ud800"}}"#.into()),
        (CallType::Track, r#"{"type":"track","event":"E","anonymousId":"a","properties":{"s":"\ud83d\ude00"}}"#.into()),
        (CallType::Page, r#"{"type":"page","anonymousId":"a","name":null,"context":[]}"#.into()),
        (
            CallType::Page,
            r#"{"type":"page","anonymousId":"a","context":{"consent":{"categoryPreferences":{"y":1,"b":"no"}}}}"#
                .into(),
        ),
        (
            CallType::Page,
            r#"{"type":"page","anonymousId":"a","context":{"consent":{"categoryPreferences":[]}}}"#.into(),
        ),
        (CallType::Page, r#"{"type":"page","anonymousId":"a","context":{"consent":true}}"#.into()),
        (CallType::Page, r#"{"type":"page","anonymousId":"a","context":{"page":{"path":3}}}"#.into()),
        (CallType::Page, r#"{"type":"page","anonymousId":"a","context":{"page":"home"}}"#.into()),
        (
            CallType::Page,
            r#"{"type":"page","anonymousId":"a","context":{"page":{"path":"/","url":null}},"name":"Home"}"#.into(),
        ),
        (CallType::Identify, r#"{"type":"identify","userId":"u","traits":"gold"}"#.into()),
        (CallType::Identify, r#"{"type":"identify","userId":"u","traits":{"plan":"gold"}}"#.into()),
        (CallType::Alias, r#"{"type":"alias","userId":"u"}"#.into()),
        (CallType::Alias, r#"{"type":"alias","userId":"u","previousId":1.5e300}"#.into()),
        (CallType::Group, r#"{"type":"group","userId":"u","groupId":""}"#.into()),
        (CallType::Track, "[1]".into()),
    ];
    for (call, text) in &cases {
        let browser = browser_outcome(text, *call);
        let (single, in_batch) = edge_outcomes(text, *call);
        let shown = &text[..text.len().min(120)];
        assert_eq!(browser, single, "single endpoint: {shown}");
        if names_its_call(text, *call) {
            assert_eq!(browser, in_batch, "batch: {shown}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn the_browser_check_agrees_with_the_edge(mut event in event_like()) {
        // A single-event body's `writeKey` belongs to the body, and the browser writes none into events.
        if let Some(m) = event.as_object_mut() {
            m.remove("writeKey");
        }
        let call = call_of(&event);
        let text = event.to_string();
        let browser = browser_outcome(&text, call);
        let (single, in_batch) = edge_outcomes(&text, call);
        prop_assert_eq!(&browser, &single, "{}", text);
        if names_its_call(&text, call) {
            prop_assert_eq!(&browser, &in_batch, "{}", text);
        }
    }
}

#[test]
fn the_device_reads_decide_requests_as_the_edge_does() {
    let bodies = [
        r#"{"slots":["hero","side"]}"#,
        r#"{"slots":["hero"],"anonymousId":"a-1","userId":42,"context":{"page":{"path":"/shop","referrer":"https://x.example/"},
            "userAgent":"Mozilla/5.0 (iPhone)","utcOffset":-300,"location":{"country":"de"},"timezone":"Europe/Berlin",
            "consent":{"categoryPreferences":{"personalization":true,"analytics":false}}}}"#,
        r#"{"slots":["a"],"context":{"consent":{"categoryPreferences":{"C0004":"yes"}}}}"#,
        r#"{"slots":"hero"}"#,
        r#"{"slots":["hero",""]}"#,
        r#"{"slots":[7]}"#,
        r#"{}"#,
        r#"[]"#,
        r#"{"slots":["a"],"anonymousId":""}"#,
        r#"{"slots":["a"],"context":{"utcOffset":60.5}}"#,
        r#"{"slots":["a"],"context":{"utcOffset":900}}"#,
        r#"{"slots":["a"],"context":{"utcOffset":"60"}}"#,
        r#"{"slots":["a"],"context":{"location":{"country":"DEU"}}}"#,
        r#"{"slots":["a"],"context":{"location":{"country":null},"userAgent":null}}"#,
        r#"{"slots":["a"],"context":{"userAgent":5}}"#,
        r#"{"slots":["a"],"context":{"page":{"path":3}}}"#,
        r#"{"slots":["a"],"context":{"page":"x"}}"#,
        r#"{"slots":["a"],"context":{"consent":{"categoryPreferences":[]}}}"#,
        r#"{"slots":["a"],"context":[]}"#,
    ];
    for body in bodies {
        let v: Value = serde_json::from_str(body).expect("test bodies are JSON");
        let js = JsLike::from_json(&v);
        let edge = edgecdp::core::wire::decide::parse_decide(body.as_bytes());
        let device = edgecdp::core::wire::decide::decide_request(&js);
        assert_eq!(device, edge, "{body}");
    }
    // The second body is read in full.
    let v: Value = serde_json::from_str(bodies[1]).unwrap();
    let r = edgecdp::core::wire::decide::decide_request(&JsLike::from_json(&v)).expect("valid");
    assert_eq!(
        (r.country.as_deref(), r.utc_offset_minutes, r.user_id.as_deref()),
        (Some("DE"), Some(-300), Some("42"))
    );
    assert_eq!(
        r.consent.map(|c| c.into_iter().collect::<Vec<_>>()),
        Some(vec![("analytics".into(), false), ("personalization".into(), true)])
    );
}
