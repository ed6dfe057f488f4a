//! Criterion benchmarks of the core's hot paths: parsing a browser-sized batch, and parsing plus applying it
//! to a profile (what one profile writer does per request). Run with `cargo bench --bench core`; results go in
//! BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use edgecdp::core::config::compile_str;
use edgecdp::core::consent::RequestSignals;
use edgecdp::core::profile::{apply_events, ApplyRequest};
use edgecdp::core::wire::parse_batch;
use std::hint::black_box;

const NOW: i64 = 1_795_344_600_000;
const EVENTS: usize = 20;

/// A batch like the snippet sends: page views and product views with a few properties and consent.
fn batch_body() -> String {
    let events: Vec<String> = (0..EVENTS)
        .map(|i| {
            if i % 4 == 0 {
                format!(
                    r#"{{"type":"page","anonymousId":"7c0d1f6e-3f1b-4a57-9a44-1c2d3e4f5a6b","messageId":"m-{i}","timestamp":"2026-11-22T10:49:{:02}.000Z","properties":{{"path":"/bags","title":"Bags","url":"https://shop.example/bags"}},"context":{{"consent":{{"categoryPreferences":{{"analytics":true,"personalization":true}}}},"page":{{"path":"/bags"}}}}}}"#,
                    i % 60
                )
            } else {
                format!(
                    r#"{{"type":"track","event":"Product Viewed","anonymousId":"7c0d1f6e-3f1b-4a57-9a44-1c2d3e4f5a6b","messageId":"m-{i}","timestamp":"2026-11-22T10:49:{:02}.000Z","properties":{{"product_id":"sku-{i}","category":"bags","price":129.0,"name":"Leather Backpack"}},"context":{{"consent":{{"categoryPreferences":{{"analytics":true,"personalization":true}}}}}}}}"#,
                    i % 60
                )
            }
        })
        .collect();
    format!(r#"{{"writeKey":"demo","sentAt":"2026-11-22T10:50:00.000Z","batch":[{}]}}"#, events.join(","))
}

fn bench(c: &mut Criterion) {
    let body = batch_body();
    let config = compile_str(include_str!("../config/demo.json")).expect("demo config compiles");
    let mut g = c.benchmark_group("collect");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("parse a 20-event batch", |b| b.iter(|| parse_batch(black_box(body.as_bytes()), NOW)));
    g.bench_function("parse and apply a 20-event batch to a new profile", |b| {
        b.iter_batched(
            || (),
            |_| {
                let parsed = parse_batch(body.as_bytes(), NOW).expect("valid");
                let req = ApplyRequest {
                    profile_id: "p_bench".into(),
                    signals: RequestSignals::default(),
                    events: parsed.events,
                    links: Vec::new(),
                    ..ApplyRequest::default()
                };
                apply_events(None, req, &config)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A typical profile: a few sessions of browsing. A heavy one: far more events than the profile keeps, with
/// many distinct property values, traits, and three recorded merges of busy profiles.
fn profiles() -> (edgecdp::core::profile::Profile, edgecdp::core::profile::Profile) {
    use edgecdp::core::identity::Identity;
    use edgecdp::core::merge::absorb;
    let config = compile_str(include_str!("../config/demo.json")).expect("demo config compiles");
    let make = |id: &str, n: usize, anon: &str| {
        let events: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"type":"track","event":"Product Viewed","anonymousId":"{anon}","messageId":"{anon}-{i:06}","timestamp":"{}","properties":{{"product_id":"sku-{}","category":"cat-{}","price":{}.5,"name":"Product number {i}"}},"context":{{"consent":{{"categoryPreferences":{{"analytics":true}}}}}}}}"#,
                    edgecdp::core::time::format_iso8601(NOW - (i as i64) * 600_000),
                    i % 400,
                    i % 40,
                    i % 90
                )
            })
            .collect();
        let mut profile = None;
        for chunk in events.chunks(100) {
            let body = format!(r#"{{"batch":[{}]}}"#, chunk.join(","));
            let parsed = parse_batch(body.as_bytes(), NOW).expect("valid");
            let req = ApplyRequest {
                profile_id: id.into(),
                signals: RequestSignals::default(),
                events: parsed.events,
                links: Vec::new(),
                ..ApplyRequest::default()
            };
            profile = apply_events(profile, req, &config).0;
        }
        profile.expect("consented events make a profile")
    };
    let typical = make("p_typical", 40, "typical-visitor");
    let mut heavy = make("p_heavy", 5_000, "heavy-visitor");
    for t in 0..30 {
        heavy.traits.insert(
            format!("trait_{t}"),
            edgecdp::core::profile::TraitEntry { value: edgecdp::core::value::Value::String("x".repeat(40)), at: NOW },
        );
    }
    for m in 0..3 {
        let other = make(&format!("p_device_{m}"), 1_500, &format!("device-{m}"));
        let because = Identity::new("user_id", "heavy-user");
        heavy.identities.push(because.clone());
        heavy.identities.dedup();
        absorb(
            &mut heavy,
            other,
            &config.identity,
            &because,
            &Identity::new("anonymous_id", &format!("device-{m}")),
            NOW,
            "m",
        )
        .expect("merges");
    }
    (typical, heavy)
}

fn bench_profiles(c: &mut Criterion) {
    use edgecdp::core::store::{decode_profile, encode_profile};
    let (typical, heavy) = profiles();
    // What writers handle is the profile as stored: within MAX_PROFILE_BYTES (see core::store).
    let stored = |p: &edgecdp::core::profile::Profile| {
        decode_profile(&edgecdp::core::store::encode_profile_bounded(p)).expect("a stored profile decodes")
    };
    let (typical, heavy) = (stored(&typical), stored(&heavy));
    for (name, p) in [("typical", &typical), ("heavy", &heavy)] {
        let bytes = encode_profile(p);
        println!("encoded size of the {name} profile as stored: {} bytes", bytes.len());
        let mut g = c.benchmark_group(format!("profile ({name}, {} bytes)", bytes.len()));
        g.bench_function("encode", |b| b.iter(|| encode_profile(black_box(p))));
        g.bench_function("decode", |b| b.iter(|| decode_profile(black_box(&bytes))));
        g.finish();
    }
    // One event resolved and applied to the heavy profile: what a writer does per event at the limit.
    let body = batch_body();
    let config = compile_str(include_str!("../config/demo.json")).expect("demo config compiles");
    let event = parse_batch(body.as_bytes(), NOW).expect("valid").events.remove(1);
    c.bench_function("resolve and apply one event to the heavy profile", |b| {
        b.iter_batched(
            || heavy.clone(),
            |p| {
                let groups = edgecdp::core::merge::plan(vec![event.clone()], &Default::default(), &config.identity);
                let g = groups.into_iter().next().expect("one group");
                let req = ApplyRequest {
                    profile_id: g.profile_id,
                    signals: RequestSignals::default(),
                    events: g.events,
                    links: g.links,
                    ..ApplyRequest::default()
                };
                apply_events(Some(p), req, &config)
            },
            BatchSize::LargeInput,
        )
    });
}

criterion_group!(benches, bench, bench_profiles);
criterion_main!(benches);
