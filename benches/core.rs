//! Criterion benchmarks of the core's hot paths: parsing a browser-sized batch, and parsing plus applying it
//! to a profile (what one profile writer does per request). Run with `cargo bench --bench core`; results go in
//! BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use edgecdp::core::engine::apply::{apply_events, ApplyRequest};
use edgecdp::core::model::consent::RequestSignals;
use edgecdp::core::rules::compile_str;
use edgecdp::core::wire::events::parse_batch;
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
                let req =
                    ApplyRequest { profile_id: "p_bench".into(), events: parsed.events, ..ApplyRequest::default() };
                apply_events(None, req, &config)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// A typical profile: a few sessions of browsing. A heavy one: far more events than the profile keeps, with
/// many distinct property values, traits, and three recorded merges of busy profiles.
fn profiles() -> (edgecdp::core::model::profile::Profile, edgecdp::core::model::profile::Profile) {
    use edgecdp::core::engine::merge::absorb;
    use edgecdp::core::model::identity::Identity;
    let config = compile_str(include_str!("../config/demo.json")).expect("demo config compiles");
    let make = |id: &str, n: usize, anon: &str| {
        let events: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"type":"track","event":"Product Viewed","anonymousId":"{anon}","messageId":"{anon}-{i:06}","timestamp":"{}","properties":{{"product_id":"sku-{}","category":"cat-{}","price":{}.5,"name":"Product number {i}"}},"context":{{"consent":{{"categoryPreferences":{{"analytics":true}}}}}}}}"#,
                    edgecdp::core::base::time::format_iso8601(NOW - (i as i64) * 600_000),
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
            let req = ApplyRequest { profile_id: id.into(), events: parsed.events, ..ApplyRequest::default() };
            profile = apply_events(profile, req, &config).0;
        }
        profile.expect("consented events make a profile")
    };
    let typical = make("p_typical", 40, "typical-visitor");
    let mut heavy = make("p_heavy", 5_000, "heavy-visitor");
    for t in 0..30 {
        heavy.traits.insert(
            format!("trait_{t}"),
            edgecdp::core::model::profile::TraitEntry {
                value: edgecdp::core::base::value::Value::String("x".repeat(40)),
                at: NOW,
            },
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
    let stored = |p: &edgecdp::core::model::profile::Profile| {
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
                let groups = edgecdp::core::engine::merge::plan(
                    vec![event.clone()],
                    &Default::default(),
                    &config.identity,
                    &edgecdp::core::model::identity::ProfileIdKey::of_secret(b"bench"),
                );
                let g = groups.into_iter().next().expect("one group");
                let req = ApplyRequest {
                    profile_id: g.profile_id,
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

/// A large site configuration: 100 segments of every kind (windowed event counts with filters, traits, page
/// globs, scores, references to other segments), 3 decayed scores and 20 slots of 5 blocks each, with caps,
/// an experiment per slot and templates.
fn large_config() -> String {
    let segments: Vec<String> = (0..100)
        .map(|i| {
            let when = match i % 5 {
                0 => format!(
                    r#"{{"event": "Product Viewed", "where": {{"category": "cat-{}"}}, "count": {{"gte": 2}}, "within": "7d"}}"#,
                    i % 40
                ),
                1 => format!(r#"{{"trait": "trait_{}", "eq": "gold"}}"#, i % 30),
                2 => format!(r#"{{"page": ["/shop/cat-{}/*", "/sale/*"]}}"#, i % 40),
                3 => format!(r#"{{"score": "intent{}", "gte": {}}}"#, i % 3, i),
                _ => format!(r#"{{"all": [{{"segment": "s{}"}}, {{"not": {{"identified": true}}}}]}}"#, i - 1),
            };
            format!(r#"{{"id": "s{i}", "when": {when}}}"#)
        })
        .collect();
    let scores: Vec<String> = (0..3)
        .map(|i| {
            format!(
                r#"{{"id": "intent{i}", "halfLife": "7d", "rules": [{{"event": "Product Viewed", "where": {{"category": "cat-{i}"}}, "points": 10}},
                    {{"event": "Order Completed", "points": 50}}, {{"when": {{"trait": "trait_{i}", "exists": true}}, "points": 5}}]}}"#
            )
        })
        .collect();
    let slots: Vec<String> = (0..20)
        .map(|slot| {
            let blocks: Vec<String> = (0..5)
                .map(|b| {
                    let n = slot * 5 + b;
                    let extra = match b {
                        0 => r#", "cap": {"max": 3, "per": "1d"}"#.to_string(),
                        4 => format!(
                            r#", "experiment": {{"id": "x{slot}", "holdout": 10, "goal": {{"event": "Order Completed", "within": "7d"}}}}"#
                        ),
                        _ => String::new(),
                    };
                    format!(
                        r#"{{"id": "b{n}", "audience": {{"include": ["s{}"], "exclude": ["s{}"]}}, "priority": {b}{extra},
                            "variants": [{{"id": "a", "html": "<h2>Hi {{{{traits.trait_1|there}}}}: offer {n}</h2>"}}, {{"id": "b", "html": "<h2>Offer {n}</h2>"}}]}}"#,
                        (n * 7) % 100,
                        (n * 13 + 1) % 100
                    )
                })
                .collect();
            format!(r#""slot{slot}": {{"fallback": {{"html": "<h2>Welcome</h2>"}}, "blocks": [{}]}}"#, blocks.join(","))
        })
        .collect();
    format!(
        r#"{{"scores": [{}], "segments": [{}], "slots": {{{}}}}}"#,
        scores.join(","),
        segments.join(","),
        slots.join(",")
    )
}

/// One decision for all 20 slots of the large configuration, for the typical and the heavy profile.
fn bench_decide(c: &mut Criterion) {
    use edgecdp::core::engine::decide::decide;
    use edgecdp::core::model::consent::{permit_personalization, Purpose};
    use edgecdp::core::model::context::{Context, Device};
    use edgecdp::core::model::event::PageContext;
    let config = compile_str(&large_config()).expect("the large configuration compiles");
    let (mut typical, mut heavy) = profiles();
    let cx = Context {
        page: PageContext { path: Some("/shop/cat-3/tote".into()), url: None, referrer: None },
        country: Some("DE".into()),
        device: Some(Device::Mobile),
        utc_offset_minutes: Some(60),
    };
    let slots: Vec<String> = (0..20).map(|i| format!("slot{i}")).collect();
    let mut g = c.benchmark_group("decide: 100 segments, 3 scores, 20 slots");
    for (name, p) in [("typical", &mut typical), ("heavy", &mut heavy)] {
        // Personalization granted, as a decision for a consenting visitor needs.
        let grant = edgecdp::core::model::consent::Grant { granted: true, at: NOW, source: "bench".into() };
        p.consent.grants.insert(Purpose::Personalization, grant);
        let subject = permit_personalization(&config.consent, &*p, None, &RequestSignals::default());
        assert!(subject.is_some(), "personalization is permitted");
        let d = decide(&config, subject, &cx, &slots, NOW);
        println!(
            "{name}: {} segments matched, {} slots filled",
            d.segments.len(),
            d.slots.values().filter(|a| a.block.is_some()).count()
        );
        g.bench_function(format!("{name} profile"), |b| {
            b.iter(|| {
                let subject = permit_personalization(&config.consent, &*p, None, &RequestSignals::default());
                decide(&config, subject, black_box(&cx), &slots, NOW)
            })
        });
    }
    g.finish();
}

/// The profile writer's step (`write::write`: link, apply, and audience tracking) for a 20-event batch under the
/// large configuration (100 segments, of which the 80 that read only the profile are audiences), against the same
/// step with no audiences (the configuration's audience list emptied): what tracking transitions costs.
fn bench_write_audiences(c: &mut Criterion) {
    use edgecdp::core::engine::write::write;
    let with = compile_str(&large_config()).expect("the large configuration compiles");
    let mut without = with.clone();
    without.audiences.clear();
    let (mut typical, mut heavy) = profiles();
    // In steady state: each profile was evaluated under these definitions at its last write.
    for p in [&mut typical, &mut heavy] {
        edgecdp::core::engine::audiences::track(&with, p, NOW, edgecdp::core::model::audience::Cause::Event);
    }
    let body = batch_body();
    let mut g = c.benchmark_group("write a 20-event batch: 100 segments");
    println!("audiences tracked: {} of {} segments", with.audiences.len(), with.segments.len());
    for (name, p) in [("typical", &typical), ("heavy", &heavy)] {
        for (tracking, config) in [("with audience tracking", &with), ("without", &without)] {
            g.bench_function(format!("{name} profile, {tracking}"), |b| {
                b.iter_batched(
                    || (p.clone(), parse_batch(body.as_bytes(), NOW).expect("valid").events),
                    |(p, events)| {
                        let req = ApplyRequest { profile_id: p.id.clone(), events, ..ApplyRequest::default() };
                        write(Some(p), Vec::new(), req, config, NOW)
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

/// 20 journeys, each holding until a reply (with an exit rule, a key and a send after), on a profile with one
/// instance running in each: what one event, one wake-up and one claim cost the profile's writer.
fn bench_journeys(c: &mut Criterion) {
    use edgecdp::core::engine::journeys::{claim, on_write, wake, Happened};
    use std::collections::BTreeMap;
    let journeys: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"id": "j{i}", "trigger": {{"event": "Start {i}"}}, "reentry": {{"key": "k"}},
                    "exit": [{{"event": "Stop {i}"}}],
                    "steps": [{{"id": "hold", "holdUntil": {{"event": "Reply {i}"}}, "max": "7d", "goto": "send"}},
                              {{"id": "send", "send": "hook", "event": "Hello {i}"}}]}}"#
            )
        })
        .collect();
    let config = compile_str(&format!(
        r#"{{"consent": {{"model": "opt-out"}},
            "destinations": [{{"id": "hook", "type": "webhook", "url": "https://example.com/h", "secretEnv": "S",
                              "purpose": "marketing", "channel": "email"}}],
            "pressure": {{"caps": [{{"max": 5, "per": "1d"}}], "quietHours": {{"from": 22, "to": 7}}}},
            "journeys": [{}]}}"#,
        journeys.join(",")
    ))
    .expect("the journeys compile");
    let (typical, _) = profiles();
    let mut p = typical;
    let event = |name: String| Happened {
        name,
        props: BTreeMap::from([("k".to_string(), edgecdp::core::base::value::Value::String("a".into()))]),
        at: NOW,
    };
    let starts: Vec<Happened> = (0..20).map(|i| event(format!("Start {i}"))).collect();
    on_write(&config, &mut p, &starts, &[], NOW);
    assert_eq!(p.journeys.instances.len(), 20, "one instance per journey runs");
    let mut g = c.benchmark_group("journeys: 20 journeys, 20 running instances");
    let quiet = [event("Product Viewed".into())];
    g.bench_function("an event that moves nothing", |b| {
        b.iter_batched(
            || p.clone(),
            |mut p| on_write(&config, &mut p, black_box(&quiet), &[], NOW + 1),
            BatchSize::LargeInput,
        )
    });
    let reply = [event("Reply 7".into())];
    g.bench_function("an event that ends a hold and queues a send", |b| {
        b.iter_batched_ref(
            || p.clone(),
            |p| {
                let moved = on_write(&config, p, black_box(&reply), &[], NOW + 1);
                assert_eq!(moved.sends, 1);
                moved
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("a wake-up with nothing due", |b| {
        b.iter_batched_ref(|| p.clone(), |p| wake(&config, p, NOW + 1), BatchSize::LargeInput)
    });
    let mut with_send = p.clone();
    on_write(&config, &mut with_send, &reply, &[], NOW + 1);
    let id = with_send.journeys.outbox[0].id.clone();
    g.bench_function("claim a send as it leaves", |b| {
        b.iter_batched_ref(
            || with_send.clone(),
            |p| matches!(claim(&config, p, black_box(&id), NOW + 2), edgecdp::core::engine::journeys::Claim::Go { .. }),
            BatchSize::LargeInput,
        )
    });
    // The whole writer's step for a 20-event batch (link, apply, audiences, journeys), with the 20 journeys and
    // their instances, and with none.
    let body = batch_body();
    let mut none = config.clone();
    none.journeys.clear();
    let (bare, _) = profiles();
    for (name, config, p) in [("with 20 running journeys", &config, &p), ("without journeys", &none, &bare)] {
        g.bench_function(format!("write a 20-event batch, {name}"), |b| {
            b.iter_batched(
                || (p.clone(), parse_batch(body.as_bytes(), NOW + 1).expect("valid").events),
                |(p, events)| {
                    let req = ApplyRequest { profile_id: p.id.clone(), events, ..ApplyRequest::default() };
                    edgecdp::core::engine::write::write(Some(p), Vec::new(), req, config, NOW + 1)
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

/// Predictions: the fit of 100,000 profiles' summaries (BG/NBD on the holdout and on everything, Gamma-Gamma, a
/// channel's priors), and what predictions add to a write (a 20-event batch with two audiences on predictions,
/// which evaluate them and solve their next crossing) and to a decision on a customer's profile.
fn bench_predictions(c: &mut Criterion) {
    use edgecdp::core::engine::fit::fit;
    use edgecdp::core::model::behaviour::Behaviour;
    const DAY: i64 = 86_400_000;
    // Seeded: every run fits the same population.
    let mut seed = 7u64;
    let mut unit = move || {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let people: Vec<Behaviour> = (0..100_000)
        .map(|_| {
            let mut b = Behaviour::default();
            let start = NOW - ((30.0 + unit() * 400.0) as i64) * DAY;
            let gap = 5.0 + unit() * 60.0;
            let stop = start + ((unit() * 500.0) as i64) * DAY;
            let level = 10.0 + unit() * 150.0;
            let mut t = start;
            while t < NOW && t <= stop {
                b.purchases.record(t, level * (0.5 + unit()));
                t += (gap * (0.5 + unit()) * DAY as f64) as i64;
            }
            let s = b.channel("email").expect("room");
            for k in 0..((unit() * 20.0) as i64) {
                s.record_send(start + k * 2 * DAY);
                if unit() < 0.15 {
                    s.record_response(start + k * 2 * DAY + 60_000);
                }
            }
            b
        })
        .collect();
    let p = compile_str(r#"{"predictions": {"channels": {"email": {"responses": ["Email Opened"]}}}}"#)
        .expect("compiles")
        .predictions;
    let rows: Vec<edgecdp::core::engine::fit::Row> =
        people.iter().map(|b| edgecdp::core::engine::fit::Row::of(b, &p, NOW)).collect();
    println!("a row of the fit: {} bytes and its channels", std::mem::size_of::<edgecdp::core::engine::fit::Row>());
    let once = fit(&rows, &p, 1, NOW);
    println!("fit of 100,000: {} {}", once.status, once.quality);
    let mut g = c.benchmark_group("predictions");
    g.sample_size(10);
    g.bench_function("fit 100,000 profiles' summaries", |b| b.iter(|| fit(black_box(&rows), &p, 1, NOW)));
    let model = once.model.expect("the population fits");
    let text = |read: bool| {
        let segments = if read {
            r#""segments": [{"id": "likely", "when": {"prediction": "purchase30d", "gte": 0.4}},
                             {"id": "slipping", "when": {"prediction": "alive", "lt": 0.5}}],"#
        } else {
            r#""segments": [{"id": "likely", "when": {"event": "Order Completed", "within": "30d"}},
                             {"id": "slipping", "when": {"inactiveFor": "30d"}}],"#
        };
        format!(
            r#"{{{segments} "slots": {{"hero": {{"fallback": {{"html": "x"}}, "blocks": [{{"id": "b", "audience": {{"segment": "likely"}}, "html": "y"}}]}}}}}}"#
        )
    };
    let with = compile_str(&text(true)).expect("compiles").with_model(Some(model));
    let without = compile_str(&text(false)).expect("compiles");
    let (mut customer, _) = profiles();
    customer.behaviour = people.iter().find(|b| b.purchases.days.len() > 5).cloned().expect("a repeat buyer");
    let body = batch_body();
    for (name, config) in [("two audiences on predictions", &with), ("two audiences on counts", &without)] {
        edgecdp::core::engine::audiences::track(
            config,
            &mut customer,
            NOW,
            edgecdp::core::model::audience::Cause::Event,
        );
        g.bench_function(format!("write a 20-event batch, {name}"), |b| {
            b.iter_batched(
                || (customer.clone(), parse_batch(body.as_bytes(), NOW + 1).expect("valid").events),
                |(p, events)| {
                    let req = ApplyRequest { profile_id: p.id.clone(), events, ..ApplyRequest::default() };
                    edgecdp::core::engine::write::write(Some(p), Vec::new(), req, config, NOW + 1)
                },
                BatchSize::LargeInput,
            )
        });
        let mut granted = customer.clone();
        let grant = edgecdp::core::model::consent::Grant { granted: true, at: NOW, source: "bench".into() };
        granted.consent.grants.insert(edgecdp::core::model::consent::Purpose::Personalization, grant);
        let cx = edgecdp::core::model::context::Context::default();
        let slots = vec!["hero".to_string()];
        g.bench_function(format!("decide, {name}"), |b| {
            b.iter(|| {
                let subject = edgecdp::core::model::consent::permit_personalization(
                    &config.consent,
                    &granted,
                    None,
                    &RequestSignals::default(),
                );
                edgecdp::core::engine::decide::decide(config, subject, black_box(&cx), &slots, NOW)
            })
        });
    }
    g.finish();
}

/// Decoding a TC string (`model::tcf::decode`) and mapping it to purposes, as every request with the CMP's cookie
/// does: a small string (purposes only, one vendor), and a large CMP's (`tests/fixtures/tcf-large.txt`: 1,400
/// vendors, 900 consented, 300 under legitimate interest, 1,000 disclosed; 753 characters).
fn bench_tcf(c: &mut Criterion) {
    use edgecdp::core::model::tcf::{decode, TcfPolicy, TcfSignal};
    let large = include_str!("../tests/fixtures/tcf-large.txt").trim();
    let small = "CQu3OdpQu3OdpAcABAENCWFgAIGAAAAAAAqIAAAAAAAA.IAAA";
    let vendor = TcfPolicy { vendor: Some(755), ..TcfPolicy::DEFAULT };
    let mut g = c.benchmark_group("tcf");
    for (name, s) in [("small", small), ("large", large)] {
        g.bench_function(format!("decode, {name}"), |b| b.iter(|| decode(black_box(s))));
        let tc = decode(s).expect("a TC string");
        g.bench_function(format!("map to purposes, {name}, as a vendor"), |b| {
            b.iter(|| TcfSignal::of(&vendor, black_box(&tc), tc.last_updated))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    bench,
    bench_profiles,
    bench_decide,
    bench_write_audiences,
    bench_journeys,
    bench_predictions,
    bench_tcf
);
criterion_main!(benches);
