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
                };
                apply_events(None, req, &config)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
