//! Decision cases as data: each directory under `tests/cases/` holds `config.json`, `events.jsonl` (one
//! Segment event per line) and `expected.json` (`now`, then decide requests with their exact responses, in order:
//! what a decision serves is recorded, so frequency caps and experiment assignments carry over between steps).
//! This runner plays them through the core natively; `tests/e2e/cases.test.mjs` plays the same files
//! through the Worker under workerd, and both must match `expected.json`.
//!
//! Each step is also decided by the visitor's device program (`engine::device`, what the browser decide module
//! runs, `tests/browser/cases.test.mjs`) at instants across its span, and again after serving; it must answer the
//! same as the edge at each instant.
//!
//! `audiences` (optional) lists a profile's audiences after the events and decisions, then woken at later
//! instants (`at`) as its alarm would wake it: members, transitions (cause and exact instant) and the next change.
//! `tests/e2e/cases.test.mjs` checks the steps without `at` through the Worker.
//!
//! `UPDATE_EXPECT=1 cargo test --test cases` rewrites the responses from what the core answers now; review the
//! diff before committing it.

use edgecdp::core::base::time::parse_iso8601;
use edgecdp::core::engine::apply::{apply_events, ApplyRequest};
use edgecdp::core::engine::audiences::catch_up;
use edgecdp::core::engine::decide::decide;
use edgecdp::core::engine::device::for_visitor;
use edgecdp::core::engine::program::{run, Outcome};
use edgecdp::core::model::consent::{permit_personalization, ConsentPolicy, RequestSignals};
use edgecdp::core::model::identity::{Identity, ANONYMOUS_ID, USER_ID};
use edgecdp::core::model::profile::Profile;
use edgecdp::core::rules::compile_str;
use edgecdp::core::wire::decide::{parse_decide, DecideRequest};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

mod common;
mod on_device;
use common::play;
use on_device::{answer, edge, instants};

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    edgecdp::core::base::sort::sort(&mut dirs);
    dirs
}

fn profile_of<'a>(profiles: &'a [Profile], request: &DecideRequest) -> Option<&'a Profile> {
    request
        .user_id
        .as_ref()
        .and_then(|u| find(profiles, &Identity::new(USER_ID, u)))
        .or_else(|| request.anonymous_id.as_ref().and_then(|a| find(profiles, &Identity::new(ANONYMOUS_ID, a))))
}

fn find<'a>(profiles: &'a [Profile], id: &Identity) -> Option<&'a Profile> {
    profiles.iter().find(|p| p.has_identity(id))
}

#[test]
fn decision_cases() {
    let update = std::env::var("UPDATE_EXPECT").is_ok_and(|v| v == "1");
    let dirs = case_dirs();
    assert!(dirs.len() >= 3, "expected decision cases under tests/cases");
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{name}/{f}: {e}"));
        let config = compile_str(&read("config.json")).unwrap_or_else(|e| panic!("{name}/config.json: {e:?}"));
        let mut expected: Value = serde_json::from_str(&read("expected.json")).expect("expected.json is JSON");
        let now = parse_iso8601(expected["now"].as_str().expect("expected.now")).expect("expected.now is a time");
        let mut profiles = play(&config, &read("events.jsonl"), now);
        let Some(steps) = expected["decide"].as_array_mut() else { panic!("{name}: expected.decide is a list") };
        for (i, step) in steps.iter_mut().enumerate() {
            let request = parse_decide(step["request"].to_string().as_bytes()).expect("a valid decide request");
            let profile =
                request.user_id.as_ref().and_then(|u| find(&profiles, &Identity::new(USER_ID, u))).or_else(|| {
                    request.anonymous_id.as_ref().and_then(|a| find(&profiles, &Identity::new(ANONYMOUS_ID, a)))
                });
            let permit = || {
                profile.and_then(|p| {
                    permit_personalization(&config.consent, p, request.consent.as_ref(), &RequestSignals::default())
                })
            };
            let decision = decide(&config, permit(), &request.context(), &request.slots, now);
            // The device's program for this visitor: at every instant of its span, the same answer as the edge.
            let rules = for_visitor(&config, permit().as_ref(), now)
                .unwrap_or_else(|e| panic!("{name}: not on a device: {e:?}"));
            let cx = request.context();
            let mut device = Vec::new();
            for t in instants(now, rules.valid_until) {
                match run(&rules.program, &cx, t, &[]).expect("the program reads") {
                    Outcome::Stale => {
                        assert!(t < now || rules.valid_until.is_some_and(|v| t >= v), "{name}: stale at {t}")
                    }
                    Outcome::Decided(d) => {
                        let edge = edge(&decide(&config, permit(), &cx, &request.slots, t));
                        let got = answer(&rules, &d, &request.slots);
                        if got != edge {
                            failures.push(format!(
                                "{name}, decide[{i}] on the device at {t}:\n  edge   {edge:?}\n  device {got:?}"
                            ));
                        }
                        if t == now {
                            device = d
                                .caps
                                .iter()
                                .zip(&rules.slots)
                                .filter(|(_, n)| request.slots.contains(n))
                                .filter_map(|(c, _)| c.map(|c| (c, now)))
                                .collect();
                        }
                    }
                }
            }
            // What was served is recorded on the profile, as the edge's writer does, so caps and experiment
            // assignments carry over to the next request.
            let impressions = decision.impressions(now);
            if let Some(pid) = decision.profile_id.clone().filter(|_| !impressions.is_empty()) {
                if let Some(pos) = profiles.iter().position(|p| p.id == pid) {
                    let current = profiles.remove(pos);
                    let req = ApplyRequest { profile_id: pid, impressions, ..ApplyRequest::default() };
                    if let (Some(p), _) = apply_events(Some(current), req, &config) {
                        profiles.push(p);
                    }
                }
            }
            // The same program, deciding again on the same page after serving: it counts its own impressions
            // toward caps as the edge counts the recorded ones.
            if let Some(p) = profile_of(&profiles, &request) {
                let subject =
                    permit_personalization(&config.consent, p, request.consent.as_ref(), &RequestSignals::default());
                let edge = edge(&decide(&config, subject, &cx, &request.slots, now));
                if let Ok(Outcome::Decided(d)) = run(&rules.program, &cx, now, &device) {
                    let got = answer(&rules, &d, &request.slots);
                    if got != edge {
                        failures.push(format!(
                            "{name}, decide[{i}] again on the device:\n  edge   {edge:?}\n  device {got:?}"
                        ));
                    }
                }
            }
            let got = decision.to_json();
            if update {
                step["response"] = got;
            } else if got != step["response"] {
                failures.push(format!("{name}, decide[{i}]:\n  expected {}\n  got      {}", step["response"], got));
            }
        }
        // Audiences: after the events (and the decisions), then woken at later instants (`at`), as the profile's
        // alarm wakes it: membership, every transition with its cause and exact instant, and the next change.
        if let Some(steps) = expected.get_mut("audiences").and_then(Value::as_array_mut) {
            for (i, step) in steps.iter_mut().enumerate() {
                let of = &step["of"];
                let id = match (of["userId"].as_str(), of["anonymousId"].as_str()) {
                    (Some(u), _) => Identity::new(USER_ID, u),
                    (None, Some(a)) => Identity::new(ANONYMOUS_ID, a),
                    _ => panic!("{name}: audiences[{i}].of names a userId or an anonymousId"),
                };
                let pos = profiles.iter().position(|p| p.has_identity(&id));
                let pos = pos.unwrap_or_else(|| panic!("{name}: audiences[{i}]: no profile has {id:?}"));
                if let Some(at) = step.get("at").and_then(Value::as_str) {
                    let at = parse_iso8601(at).expect("audiences[].at is a time");
                    catch_up(&config, &mut profiles[pos], at);
                }
                let got = profiles[pos].audiences.to_json();
                if update {
                    step["expect"] = got;
                } else if got != step["expect"] {
                    failures.push(format!("{name}, audiences[{i}]:\n  expected {}\n  got      {got}", step["expect"]));
                }
            }
        }
        if update {
            let text = serde_json::to_string_pretty(&expected).expect("serializes") + "\n";
            fs::write(dir.join("expected.json"), text).expect("writes expected.json");
        }
    }
    assert!(failures.is_empty(), "{} case step(s) differ:\n{}", failures.len(), failures.join("\n"));
    // The default policy must be the strict one, or cases without consent would pass for the wrong reason.
    assert_eq!(ConsentPolicy::default().model, edgecdp::core::model::consent::Model::OptIn);
}
