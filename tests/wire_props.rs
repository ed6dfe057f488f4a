//! Property tests of the wire parser (the fuzz target): whatever bytes or JSON arrive, parsing never
//! panics, every event of a batch ends up either accepted or rejected with its own index and a path inside
//! it, and a well-formed event is accepted with its fields intact. The case counts are fixed, so `npm test`
//! runs this for a bounded time (a few seconds).

use edgecdp::core::wire::{parse_batch, parse_decide, parse_single, write_key_from_basic_auth, CallType};
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
        let ts = edgecdp::core::time::format_iso8601(NOW - offset_s * 1000);
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
