//! Journey cases as data, in simulated time: each directory under `tests/journeys/` holds `timeline.jsonl` (what
//! happens, in order, each line with its instant `at`), `expected.json` (`until`, then the log of what left and
//! the journeys each person ends with) and `config.json` (when absent, the demo configuration `config/demo.json`,
//! whose journeys handle abandoned carts, repeat views, inactivity, churn, flights; a `config.json` may extend it with
//! `"$extends"`).
//!
//! The runner plays what the Worker does, with the same code: each event through the collect route's core and
//! the profile objects' writer (`common::World`), every object woken at its alarm, and every send the objects
//! enqueue claimed at once as the delivery queue's consumer would (`Request::Claim`, then `Settle`), so the log
//! shows the exact instants sends leave, and what stopped or deferred them.
//!
//! Timeline lines: `{"at", "event": {...}}` (a Segment event; optional `"utcOffset": "+01:00"` and `"country"`
//! are the request's signals), `{"at", "decide": {...}}` (a decide request; what it serves is recorded, as the
//! Worker does, and logged).
//!
//! `UPDATE_EXPECT=1 cargo test --test journeys` rewrites `expected.json` from what the core does now; review the
//! diff before committing it.

use edgecdp::core::base::time::{format_iso8601, parse_iso8601, Millis};
use edgecdp::core::engine::apply::ApplyRequest;
use edgecdp::core::engine::decide::decide;
use edgecdp::core::model::consent::{permit_personalization, RequestSignals};
use edgecdp::core::model::identity::{Identity, ANONYMOUS_ID, USER_ID};
use edgecdp::core::rules::destinations::Payload;
use edgecdp::core::rules::pressure::parse_offset;
use edgecdp::core::rules::{compile_str, Config};
use edgecdp::core::wire::decide::parse_decide;
use edgecdp::core::wire::deliveries::DeliveryMessage;
use edgecdp::core::writer::protocol::{ClaimAnswer, Claimed, ClaimedSend, Reply, Request};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;

mod common;
use common::World;

/// The delivery queue's consumer: every send enqueued is claimed now and, when it goes, settled as delivered.
/// A send refused or cancelled before it was queued is logged by the writer itself (`Effect::Suppressed`): it
/// appears here with `"stage": "queued"`, and no claim is made for it.
fn deliver(config: &Config, world: &mut World, now: Millis, log: &mut Vec<Value>) {
    while let Some((record, reason)) = world.suppressed.pop_front() {
        let who = record.profile.as_deref().and_then(|id| who(world, id));
        log.push(json!({"at": format_iso8601(now), "of": who, "journey": record.journey, "step": record.step,
            "suppressed": reason, "stage": "queued"}));
    }
    // As the consumer does: a profile's sends in the queue are claimed in one call.
    let mut groups: Vec<(String, Vec<DeliveryMessage>)> = Vec::new();
    for m in world.deliveries.drain(..) {
        match groups.iter_mut().find(|(p, _)| *p == m.profile) {
            Some((_, ms)) => ms.push(m),
            None => groups.push((m.profile.clone(), vec![m])),
        }
    }
    for (profile, ms) in groups {
        let deliveries: Vec<String> = ms.iter().map(|m| m.delivery.clone()).collect();
        let (at, reply) = world.follow(config, &profile, now, |_| Request::Claim { deliveries: deliveries.clone() });
        let Reply::Claimed(claims) = reply else { panic!("a claim answered {reply:?}") };
        assert_eq!(claims.len(), ms.len(), "one answer per send");
        for (m, Claimed { answer, send }) in ms.into_iter().zip(claims) {
            deliver_one(config, world, now, log, &at, &m, answer, send);
        }
    }
}

/// The person a stored profile is (their user id, else their first identity), as the log names them.
fn who(world: &World, profile_id: &str) -> Option<String> {
    let p = world.stored_profile(profile_id)?;
    p.identities.iter().find(|i| i.kind == USER_ID).or(p.identities.first()).map(|i| i.value.clone())
}

/// What the consumer does with one claimed send: sends it and settles it as delivered, or logs why not.
#[allow(clippy::too_many_arguments)]
fn deliver_one(
    config: &Config,
    world: &mut World,
    now: Millis,
    log: &mut Vec<Value>,
    at: &str,
    m: &DeliveryMessage,
    answer: ClaimAnswer,
    send: Option<ClaimedSend>,
) {
    let mut entry = json!({"at": format_iso8601(now), "of": who(world, at)});
    if let Some(s) = &send {
        entry["journey"] = json!(s.journey);
        entry["step"] = json!(s.step);
        entry["key"] = json!(s.key);
    }
    match answer {
        ClaimAnswer::Go { body, .. } => {
            entry["sent"] = json!(send.as_ref().map(|s| s.event.clone()));
            entry["to"] = json!(m.destination);
            // A template's text is logged (its escaping is part of the case); an event's shape has unit tests.
            let destination = config.destinations.iter().find(|d| d.id == m.destination);
            if destination.is_some_and(|d| d.payload != Payload::Event) {
                entry["body"] = json!(body);
            }
            let settle = |_: &str| Request::Settle { delivery: m.delivery.clone(), delivered: true };
            world.follow(config, at, now, settle);
        }
        ClaimAnswer::Suppressed { reason } => entry["suppressed"] = json!(reason),
        ClaimAnswer::Deferred { until } => entry["deferredUntil"] = json!(format_iso8601(until)),
        ClaimAnswer::Unknown => entry["unknown"] = json!(m.delivery),
    }
    log.push(entry);
}

/// Wakes every profile whose alarm is at or before `limit`, earliest first, delivering what each sends.
fn run_alarms(config: &Config, world: &mut World, limit: Millis, log: &mut Vec<Value>) {
    world.run_alarms(config, limit, |world, t| deliver(config, world, t, log));
}

fn identity_of(of: &Value) -> Identity {
    match (of["userId"].as_str(), of["anonymousId"].as_str()) {
        (Some(u), _) => Identity::new(USER_ID, u),
        (None, Some(a)) => Identity::new(ANONYMOUS_ID, a),
        _ => panic!("expected {{\"userId\"}} or {{\"anonymousId\"}}, not {of}"),
    }
}

fn run_case(dir: &Path) -> (Value, Value) {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let read = |f: &Path| fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    let config_path = if dir.join("config.json").exists() {
        dir.join("config.json")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.json")
    };
    // `"$extends": "config/demo.json"` takes that configuration and replaces its top-level sections with the
    // case's own (a server source, say, so that the case can name users without identity tokens).
    let mut doc: Value = serde_json::from_str(&read(&config_path)).expect("the configuration is JSON");
    if let Some(base) = doc.get("$extends").and_then(Value::as_str).map(String::from) {
        let mut merged: Value =
            serde_json::from_str(&read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(&base))).expect("JSON");
        for (k, v) in doc.as_object().expect("an object") {
            if k != "$extends" {
                merged[k] = v.clone();
            }
        }
        doc = merged;
    }
    let config = compile_str(&doc.to_string()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let expected: Value = serde_json::from_str(&read(&dir.join("expected.json"))).expect("expected.json is JSON");
    let until = parse_iso8601(expected["until"].as_str().expect("expected.until")).expect("until is a time");
    let mut world = World::default();
    let mut log = Vec::new();
    let mut last = Millis::MIN;
    for (n, line) in read(&dir.join("timeline.jsonl")).lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: timeline line {}: {e}", n + 1));
        let at = parse_iso8601(entry["at"].as_str().expect("a line has its `at`")).expect("`at` is a time");
        assert!(at >= last, "{name}: timeline line {} goes back in time", n + 1);
        last = at;
        run_alarms(&config, &mut world, at, &mut log);
        if let Some(event) = entry.get("event") {
            let signals = RequestSignals {
                country: entry["country"].as_str().map(String::from),
                gpc: false,
                utc_offset_minutes: entry["utcOffset"].as_str().and_then(parse_offset),
                tcf: None,
            };
            world.write_line(&config, &event.to_string(), &signals, at);
            deliver(&config, &mut world, at, &mut log);
        } else if let Some(request) = entry.get("decide") {
            let request = parse_decide(request.to_string().as_bytes()).expect("a valid decide request");
            let id = request
                .user_id
                .as_ref()
                .map(|u| Identity::new(USER_ID, u))
                .or_else(|| request.anonymous_id.as_ref().map(|a| Identity::new(ANONYMOUS_ID, a)));
            let profile = id.as_ref().and_then(|id| world.profile_of(id, at));
            let subject = profile.as_ref().and_then(|p| {
                permit_personalization(&config.consent, p, request.consent.as_ref(), &RequestSignals::default())
            });
            let decision = decide(&config, subject, &request.context(), &request.slots, at);
            let served: serde_json::Map<String, Value> =
                decision.slots.iter().map(|(k, a)| (k.clone(), json!(a.block))).collect();
            log.push(json!({"at": format_iso8601(at), "decided": served}));
            let impressions = decision.impressions(at);
            if let (Some(p), false) = (profile, impressions.is_empty()) {
                let req = ApplyRequest { profile_id: p.id.clone(), impressions, ..ApplyRequest::default() };
                world.apply(&config, req, at);
                deliver(&config, &mut world, at, &mut log);
            }
        } else {
            panic!("{name}: timeline line {} is neither an event nor a decision", n + 1);
        }
    }
    run_alarms(&config, &mut world, until, &mut log);
    let mut people = serde_json::Map::new();
    // `people` names whose journeys to show: `user:<userId>` or `anon:<anonymousId>`.
    for key in expected["people"].as_object().into_iter().flatten().map(|(k, _)| k) {
        let id = match key.split_once(':') {
            Some(("user", u)) => identity_of(&json!({"userId": u})),
            Some(("anon", a)) => identity_of(&json!({"anonymousId": a})),
            _ => panic!("{name}: people keys are user:<id> or anon:<id>, not {key}"),
        };
        let p = world.profile_of(&id, until).unwrap_or_else(|| panic!("{name}: no profile for {key}"));
        let j = p.journeys.to_json();
        people.insert(key.clone(), json!({"instances": j["instances"], "ended": j["ended"], "outbox": j["outbox"]}));
    }
    (json!(log), Value::Object(people))
}

#[test]
fn journey_cases() {
    let update = std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/journeys");
    let mut dirs: Vec<_> = fs::read_dir(&root).expect("tests/journeys").map(|e| e.expect("entry").path()).collect();
    edgecdp::core::base::sort::sort(&mut dirs);
    assert!(!dirs.is_empty(), "expected journey cases under tests/journeys");
    let mut failures = Vec::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let (log, people) = run_case(dir);
        let path = dir.join("expected.json");
        let mut expected: Value = serde_json::from_str(&fs::read_to_string(&path).expect("reads")).expect("JSON");
        if update {
            expected["log"] = log;
            expected["people"] = people;
            fs::write(&path, serde_json::to_string_pretty(&expected).expect("serializes") + "\n").expect("writes");
            continue;
        }
        if expected["log"] != log {
            failures.push(format!("{}: log\n  expected {}\n  got      {log}", dir.display(), expected["log"]));
        }
        if expected["people"] != people {
            failures.push(format!("{}: people\n  expected {}\n  got      {people}", dir.display(), expected["people"]));
        }
    }
    assert!(failures.is_empty(), "{} journey case(s) differ:\n{}", failures.len(), failures.join("\n"));
}
