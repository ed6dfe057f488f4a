//! Property tests of device programs (`engine::device`): for generated profiles (light and heavy histories,
//! traits, consent, identities, impressions of capped blocks and experiment assignments) and pages, the program
//! written at one instant answers, at every instant of its span (through its end, and after serving a capped
//! block), what the edge's `decide` answers on the full profile, for a configuration that uses every kind of
//! condition, scores with decay and computed traits; and it is stale outside its span, never wrong. The case
//! count is fixed, so `cargo test` runs this for a bounded time.

use edgecdp::core::base::time::{format_iso8601, DAY, HOUR};
use edgecdp::core::engine::apply::{apply_events, ApplyRequest};
use edgecdp::core::engine::decide::decide;
use edgecdp::core::engine::device::{for_visitor, EdgeOnly};
use edgecdp::core::engine::program::{run, Outcome};
use edgecdp::core::model::consent::{permit_personalization, Permitted, RequestSignals};
use edgecdp::core::model::context::{Context, Device};
use edgecdp::core::model::event::PageContext;
use edgecdp::core::model::profile::Profile;
use edgecdp::core::model::shown::Impression;
use edgecdp::core::rules::{compile_str, Config};
use edgecdp::core::store;
use edgecdp::core::wire::events::parse_batch;
use proptest::prelude::*;

mod on_device;
use on_device::answer;

const NOW: i64 = 1_795_344_600_000;

const CONFIG: &str = r#"{
  "computedTraits": [{"id": "bag7", "event": "Product Viewed", "where": {"category": "bags"}, "within": "7d"}],
  "scores": [{"id": "intent", "halfLife": "3d", "rules": [
    {"event": "Product Viewed", "where": {"category": ["bags", "shoes"]}, "points": 10},
    {"event": "Added", "points": 5},
    {"when": {"trait": "plan", "eq": "gold"}, "points": 7}]}],
  "segments": [
    {"id": "bags", "when": {"event": "Product Viewed", "where": {"category": "bags"}, "count": {"gte": 2}, "within": "7d"}},
    {"id": "bags-or-shoes", "when": {"event": "Product Viewed", "where": {"category": ["bags", "shoes"]}, "count": {"gte": 3}, "within": "20d"}},
    {"id": "red-bags", "when": {"event": "Product Viewed", "where": {"category": "bags", "color": "red"}, "within": "30d"}},
    {"id": "pages", "when": {"event": "page", "count": {"gte": 30}, "within": "30d"}},
    {"id": "all-time", "when": {"event": "Added", "count": {"gte": 2}}},
    {"id": "keen", "when": {"computed": "bag7", "gte": 1}},
    {"id": "hot", "when": {"score": "intent", "gte": 15}},
    {"id": "known", "when": {"identified": true}},
    {"id": "gold", "when": {"trait": "plan", "eq": "gold"}},
    {"id": "tagged", "when": {"trait": "tags", "contains": "vip"}},
    {"id": "idle", "when": {"inactiveFor": "3d"}},
    {"id": "ads", "when": {"consent": "advertising"}},
    {"id": "morning", "when": {"all": [{"localHour": {"lt": 12}}, {"not": {"segment": "idle"}}]}},
    {"id": "visitor", "when": {"any": [{"page": ["/shop/*"]}, {"device": ["mobile"]}, {"country": ["DE"]}, {"utm": {"campaign": ["sale*"]}}]}}
  ],
  "slots": {
    "hero": {"fallback": {"html": "<p>Welcome {{traits.firstName|there}}</p>"}, "blocks": [
      {"id": "capped", "audience": {"segment": "bags"}, "priority": 10, "cap": {"max": 2, "per": "1d"}, "html": "Hi {{traits.firstName|you}}"},
      {"id": "exp", "audience": {"segment": "hot"}, "priority": 5,
       "experiment": {"id": "e1", "holdout": 20, "goal": {"event": "Order Completed", "within": "7d"}},
       "variants": [{"id": "a", "weight": 1, "html": "A {{traits.plan}}"}, {"id": "b", "weight": 2, "html": "B"}]},
      {"id": "gold-b", "audience": {"include": ["gold"], "exclude": ["idle"]}, "cap": {"max": 1, "per": "1d"}, "html": "G {{traits.email}}"},
      {"id": "ctx", "audience": {"any": [{"segment": "visitor"}, {"segment": "morning"}]}, "html": "C"}
    ]},
    "side": {"blocks": [
      {"id": "known-b", "audience": {"all": [{"segment": "known"}, {"segment": "all-time"}]}, "html": "K"},
      {"id": "misc", "audience": {"any": [{"segment": "red-bags"}, {"segment": "pages"}, {"segment": "keen"},
        {"segment": "tagged"}, {"segment": "ads"}, {"segment": "bags-or-shoes"}]}, "cap": {"max": 1, "per": "1d"}, "html": "M"}
    ]}
  }
}"#;

fn config() -> Config {
    compile_str(CONFIG).expect("the test configuration compiles")
}

/// One generated event: kind, category, color, hours before `NOW`.
type Gen = (u8, u8, u8, i64);

fn event_json(i: usize, (kind, category, color, hours_ago): Gen, grant: bool) -> String {
    let at = format_iso8601(NOW - hours_ago * HOUR - i as i64);
    let consent = if grant {
        r#","context":{"consent":{"categoryPreferences":{"analytics":true,"personalization":true,"advertising":true}}}"#
    } else {
        ""
    };
    let gold = category % 3 == 0;
    let category = ["bags", "shoes", "hats"][category as usize % 3];
    let color = ["red", "blue"][color as usize % 2];
    match kind % 6 {
        0 => format!(r#"{{"type":"page","anonymousId":"a","messageId":"m{i}","timestamp":"{at}"{consent}}}"#),
        1 | 2 => format!(
            r#"{{"type":"track","event":"Product Viewed","anonymousId":"a","messageId":"m{i}","timestamp":"{at}","properties":{{"category":"{category}","color":"{color}","sku":"s{i}"}}{consent}}}"#
        ),
        3 => format!(
            r#"{{"type":"track","event":"Added","anonymousId":"a","messageId":"m{i}","timestamp":"{at}"{consent}}}"#
        ),
        4 => format!(
            r#"{{"type":"track","event":"Other","anonymousId":"a","messageId":"m{i}","timestamp":"{at}","properties":{{"category":"{category}"}}{consent}}}"#
        ),
        _ => format!(
            r#"{{"type":"identify","anonymousId":"a","userId":"u{}","messageId":"m{i}","timestamp":"{at}","traits":{{"firstName":"Ada <{i}>","plan":"{}","email":"ada@example.com","tags":["vip","x"],"secret":"s"}}{consent}}}"#,
            i % 2,
            if gold { "gold" } else { "silver" }
        ),
    }
}

fn profile(events: &[Gen], impressions: &[(u8, i64)], refuse_personalization: bool) -> Option<Profile> {
    let config = config();
    let mut lines: Vec<String> = events.iter().enumerate().map(|(i, g)| event_json(i, *g, i == 0)).collect();
    if refuse_personalization {
        lines.push(format!(
            r#"{{"type":"track","event":"Other","anonymousId":"a","messageId":"refuse","timestamp":"{}","context":{{"consent":{{"categoryPreferences":{{"analytics":true,"personalization":false}}}}}}}}"#,
            format_iso8601(NOW - HOUR)
        ));
    }
    let body = format!(r#"{{"batch":[{}]}}"#, lines.join(","));
    let parsed = parse_batch(body.as_bytes(), NOW).expect("generated events parse");
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    let impressions = impressions
        .iter()
        .map(|(which, minutes_ago)| {
            let at = NOW - minutes_ago * 60_000;
            match which % 3 {
                0 => Impression { block: "capped".into(), variant: "default".into(), experiment: None, at },
                1 => Impression { block: "exp".into(), variant: "b".into(), experiment: Some("e1".into()), at },
                _ => Impression { block: "gold-b".into(), variant: "default".into(), experiment: None, at },
            }
        })
        .collect();
    let req = ApplyRequest { profile_id: "p_gen".into(), events: parsed.events, ..ApplyRequest::default() };
    let (p, _) = apply_events(None, req, &config);
    let req = ApplyRequest { profile_id: "p_gen".into(), impressions, ..ApplyRequest::default() };
    apply_events(p, req, &config).0
}

fn context(pick: u8) -> Context {
    let page = |url: &str| PageContext { url: Some(url.into()), path: None, referrer: None };
    match pick % 4 {
        0 => Context::default(),
        1 => Context { page: page("https://s.example/shop/bags?utm_campaign=sale-1"), ..Context::default() },
        2 => Context { device: Some(Device::Mobile), utc_offset_minutes: Some(-300), ..Context::default() },
        _ => Context { country: Some("DE".into()), utc_offset_minutes: Some(600), ..Context::default() },
    }
}

fn gen() -> impl Strategy<Value = Gen> {
    // Mostly within 10 days, so that a full history lets events inside the windows go.
    (any::<u8>(), any::<u8>(), any::<u8>(), prop_oneof![3 => 0i64..(10 * 24), 1 => 0i64..(40 * 24)])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn a_device_program_answers_as_the_edge_throughout_its_span(
        // Up to 320 events: beyond `MAX_RECENT_EVENTS` (200) the history is full and daily series count.
        events in prop_oneof![prop::collection::vec(gen(), 1..40), prop::collection::vec(gen(), 200..320)],
        impressions in prop::collection::vec((any::<u8>(), 0i64..(3 * 24 * 60)), 0..6),
        refuse in any::<bool>(),
        cx in any::<u8>(),
        later_hours in 0i64..(5 * 24),
        later_ms in 0i64..HOUR,
    ) {
        let config = config();
        let Some(full) = profile(&events, &impressions, refuse) else { return Ok(()) };
        let slots = vec!["hero".to_string(), "side".to_string(), "nope".to_string()];
        let cx = context(cx);
        let permit = || permit_personalization(&config.consent, &full, None, &RequestSignals::default());
        let rules = for_visitor(&config, permit().as_ref(), NOW).expect("this configuration runs on a device");
        let mut at = vec![NOW, NOW + later_ms, NOW + later_hours * HOUR, NOW + 8 * DAY, NOW - 1];
        if let Some(until) = rules.valid_until {
            prop_assert!(until > NOW);
            at.extend([until - 1, until]);
        }
        for now in at {
            let edge = decide(&config, permit(), &cx, &slots, now);
            match run(&rules.program, &cx, now, &[]).expect("the program reads") {
                Outcome::Stale => prop_assert!(now < NOW || rules.valid_until.is_some_and(|u| now >= u), "stale at {}", now),
                Outcome::Decided(d) => {
                    prop_assert!(now >= NOW && rules.valid_until.is_none_or(|u| now < u), "not stale at {}", now);
                    prop_assert_eq!(answer(&rules, &d, &slots), on_device::edge(&edge), "at {}", now);
                    // Served, then decided again on the same page: as the edge after recording the impressions.
                    let served: Vec<(u32, i64)> = d.caps.iter().flatten().map(|c| (*c, now)).collect();
                    let mut after = full.clone();
                    after.shown.record(&edge.impressions(now));
                    let edge = decide(&config, permit_personalization(&config.consent, &after, None, &RequestSignals::default()), &cx, &slots, now);
                    if let Outcome::Decided(d) = run(&rules.program, &cx, now, &served).expect("the program reads") {
                        prop_assert_eq!(answer(&rules, &d, &slots), on_device::edge(&edge), "again at {}", now);
                    }
                }
            }
        }
    }
}

#[test]
fn a_device_program_holds_nothing_of_the_profile_but_its_answers() {
    let config = config();
    let events: Vec<Gen> = (0..250).map(|i| ((i % 6) as u8, (i / 6 % 3) as u8, 0, i as i64)).collect();
    let full = profile(&events, &[(0, 5), (1, 6), (2, 7)], false).expect("a profile");
    assert!(full.is_identified());
    let permit = permit_personalization(&config.consent, &full, None, &RequestSignals::default());
    let rules = for_visitor(&config, permit.as_ref(), NOW).expect("this configuration runs on a device");
    let mut json = rules.to_json();
    json.remove("program");
    let text = serde_json::Value::Object(json).to_string();
    let program = String::from_utf8_lossy(&rules.program).into_owned();
    for (what, secret) in [
        ("the trait nobody reads", "\"s\""),
        ("an event's name", "Product Viewed"),
        ("a property", "\"s12"),
        ("a user id", "u1"),
        ("a message id", "m12"),
        ("a trait only a condition reads", "silver"),
        ("a segment's rule", "inactiveFor"),
    ] {
        assert!(!text.contains(secret) && !program.contains(secret), "{what} ({secret}) reached the device: {text}");
    }
    // What templates show is there: the page would show it anyway.
    assert!(text.contains("Ada &lt;"), "{text}");
    let sent = text.len();
    let stored = edgecdp::core::base::encoding::base64_encode(&store::encode_profile(&full)).len();
    assert!(sent * 4 < stored, "the program and its answers take {sent} bytes, the stored profile {stored}");
}

/// Rules that read what only the edge knows send no program, and say why; without a profile there is nothing of
/// theirs to evaluate, and a program of fallbacks goes.
#[test]
fn rules_only_the_edge_can_run_say_why() {
    let slots = r#""slots": {"hero": {"fallback": {"html": "F"}, "blocks": [{"id": "b", "html": "B"}]}}"#;
    let rows: [(&str, Option<&str>); 4] = [
        (r#"{"pressure": {"caps": [{"max": 1, "per": "1d"}], "slots": ["hero"]}, SLOTS}"#, Some("pressure")),
        (
            r#"{"scores": [{"id": "s", "rules": [{"when": {"page": ["/x"]}, "points": 1}]}], SLOTS}"#,
            Some("score_reads_page"),
        ),
        (r#"{"scores": [{"id": "s", "rules": [{"when": {"identified": true}, "points": 1}]}], SLOTS}"#, None),
        (r#"{"pressure": {"caps": [{"max": 1, "per": "1d"}]}, SLOTS}"#, None),
    ];
    // Opt-out: personalization is allowed until refused.
    let profile = Profile::new("p".into(), 0);
    for (text, want) in rows {
        let mut text = text.replace("SLOTS", slots);
        text.insert_str(1, r#""consent": {"model": "opt-out"}, "#);
        let config = compile_str(&text).expect("compiles");
        let permit = permit_personalization(&config.consent, &profile, None, &RequestSignals::default());
        assert!(permit.is_some(), "{text}");
        let got = for_visitor(&config, permit.as_ref(), 10).err().map(EdgeOnly::code);
        assert_eq!(got, want, "{text}");
        // Nobody's profile: nothing to evaluate, so the program goes whatever the rules read.
        let rules = for_visitor(&config, None, 10).expect("a program of fallbacks");
        assert_eq!((rules.profile_id, rules.answers.len()), (None, 1), "{text}");
    }
}

/// Schedules and caps are the time the device decides itself: a program written at `NOW` answers as the edge hour
/// by hour over three days (a block that starts, one that ends, a cap whose impressions leave its window, a
/// second capped block that must not count the first's), and after serving, as the edge after recording.
#[test]
fn schedules_and_caps_count_on_the_device_as_at_the_edge() {
    let at = |hours: i64| format_iso8601(NOW + hours * HOUR);
    let config = compile_str(&format!(
        r#"{{"consent": {{"model": "opt-out"}}, "slots": {{"hero": {{"fallback": {{"html": "F"}}, "blocks": [
          {{"id": "soon", "priority": 9, "start": "{}", "end": "{}", "html": "S"}},
          {{"id": "once", "priority": 8, "cap": {{"max": 1, "per": "1d"}}, "html": "O"}},
          {{"id": "twice", "priority": 7, "cap": {{"max": 2, "per": "12h"}}, "html": "T"}},
          {{"id": "until", "priority": 6, "end": "{}", "html": "U"}}]}}}}}}"#,
        at(30),
        at(40),
        at(50)
    ))
    .expect("compiles");
    let mut profile = Profile::new("p_sched".into(), NOW - DAY);
    // Shown 23 hours ago (counts until NOW + 1 h) and twice 11 hours ago (until NOW + 1 h).
    profile.shown.record(&[Impression {
        block: "once".into(),
        variant: "default".into(),
        experiment: None,
        at: NOW - 23 * HOUR,
    }]);
    for k in 0..2 {
        profile.shown.record(&[Impression {
            block: "twice".into(),
            variant: "default".into(),
            experiment: None,
            at: NOW - 11 * HOUR + k,
        }]);
    }
    fn permit<'p>(config: &Config, p: &'p Profile) -> Option<Permitted<&'p Profile>> {
        permit_personalization(&config.consent, p, None, &RequestSignals::default())
    }
    let slots = vec!["hero".to_string()];
    let cx = Context::default();
    let subject = permit_personalization(&config.consent, &profile, None, &RequestSignals::default());
    let rules = for_visitor(&config, subject.as_ref(), NOW).expect("runs on a device");
    assert_eq!(rules.valid_until, None, "nothing here changes by time alone at the edge");
    // A page open for three days, deciding every hour and serving what it decides; the edge records the same.
    let mut blocks = Vec::new();
    let mut served: Vec<(u32, i64)> = Vec::new();
    for hour in 0..72 {
        let now = NOW + hour * HOUR;
        let want = decide(&config, permit(&config, &profile), &cx, &slots, now);
        let Outcome::Decided(d) = run(&rules.program, &cx, now, &served).expect("reads") else {
            panic!("stale at {hour} h")
        };
        assert_eq!(answer(&rules, &d, &slots), on_device::edge(&want), "at {hour} h");
        blocks.push(want.slots["hero"].block.clone().unwrap_or_default());
        profile.shown.record(&want.impressions(now));
        served.extend(d.caps.iter().flatten().map(|c| (*c, now)));
        // At once again, on the same page: its own impression counts as the recorded one does.
        let again = decide(&config, permit(&config, &profile), &cx, &slots, now);
        let Outcome::Decided(d) = run(&rules.program, &cx, now, &served).expect("reads") else { panic!("stale") };
        assert_eq!(answer(&rules, &d, &slots), on_device::edge(&again), "again at {hour} h");
    }
    // The table really moved through every block.
    for b in ["soon", "once", "twice", "until", ""] {
        assert!(blocks.iter().any(|x| x == b), "{b:?} never answered: {blocks:?}");
    }
}

/// A program by hand: version 1, written at 0, valid for ever, one segment holding `cond`, no slots.
fn program_of(cond: &[u8]) -> Vec<u8> {
    let mut p = vec![1, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 1, 0];
    p.extend_from_slice(cond);
    p.push(0);
    p
}

/// A program the module cannot read is an error that says where reading stopped, never a panic or an answer:
/// conditions nested deeper than 64, an unknown tag, a truncation anywhere.
#[test]
fn a_program_that_cannot_be_read_says_where() {
    let cx = Context::default();
    let nested = |n: usize| {
        let mut c = vec![4u8; n];
        c.push(0);
        c
    };
    let segment = |p: &[u8]| match run(p, &cx, 5, &[]) {
        Ok(Outcome::Decided(d)) => Ok(d.segments),
        Ok(Outcome::Stale) => panic!("stale"),
        Err(e) => Err(e.at),
    };
    assert_eq!(segment(&program_of(&[0])), Ok(vec![true]));
    assert_eq!(segment(&program_of(&nested(64))), Ok(vec![true]), "64 levels are read");
    assert_eq!(segment(&program_of(&nested(63))), Ok(vec![false]));
    assert!(segment(&program_of(&nested(65))).is_err(), "65 are not");
    // The same through `all` (one member each).
    let all = |n: usize| [[2u8, 1].repeat(n), vec![0]].concat();
    assert_eq!(segment(&program_of(&all(64))), Ok(vec![true]));
    assert!(segment(&program_of(&all(65))).is_err());
    // An unknown tag: reading stopped at its byte (15, after the header and the segment's index).
    assert_eq!(segment(&program_of(&[99])), Err(15));
    assert_eq!(segment(&program_of(&[4, 99])), Err(16));
    let whole = program_of(&[2, 2, 6, 1, 1, b'/', 10, 1, 0]);
    assert_eq!(segment(&whole), Ok(vec![false]));
    for cut in 0..whole.len() {
        assert!(segment(&whole[..cut]).is_err(), "cut at {cut}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any bytes, or a real program with bytes changed: an answer or an error, never a panic.
    #[test]
    fn no_program_makes_the_reader_panic(
        events in prop::collection::vec(gen(), 1..30),
        changes in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        cut in any::<usize>(),
        noise in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let config = config();
        let Some(p) = profile(&events, &[], false) else { return Ok(()) };
        let subject = permit_personalization(&config.consent, &p, None, &RequestSignals::default());
        let mut program = for_visitor(&config, subject.as_ref(), NOW).expect("runs on a device").program;
        for (at, b) in changes {
            let n = program.len();
            program[at % n] = b;
        }
        program.truncate(cut % (program.len() + 1));
        for bytes in [&program, &noise] {
            let _ = run(bytes, &context(cut as u8), NOW, &[(0, NOW)]);
        }
    }
}
