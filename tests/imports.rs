//! Imports through the real writer (`tests/common`'s simulated Cloudflare), as the Worker's imports consumer
//! applies them: history collected live and the same history imported give the same profile and the same
//! segments; an import's audience changes reach journeys only within their horizon; and the consent an import
//! declares is a basis that never overrides what a person recorded (one row per rule).

use edgecdp::core::base::time::{format_iso8601, Millis, DAY, HOUR};
use edgecdp::core::engine::evaluate::segments_of;
use edgecdp::core::model::consent::{Purpose, RequestSignals};
use edgecdp::core::model::context::Context;
use edgecdp::core::model::identity::{Identity, USER_ID};
use edgecdp::core::model::profile::Profile;
use edgecdp::core::rules::{compile_str, Config};
use edgecdp::core::wire::imports::Declaration;

mod common;
use common::World;

const NOW: Millis = 1_795_344_600_000;

fn config() -> Config {
    compile_str(
        r#"{
        "sources": [{"id": "api", "type": "server", "key": "a-server-key-of-24-chars!"}],
        "consent": {"model": "opt-in"},
        "segments": [
            {"id": "repeat-buyer", "when": {"event": "Order Completed", "count": {"gte": 2}, "within": "365d"}},
            {"id": "recent-viewer", "when": {"event": "Product Viewed", "count": {"gte": 1}, "within": "7d"}},
            {"id": "lapsed", "when": {"inactiveFor": "30d"}},
            {"id": "gold", "when": {"trait": "plan", "eq": "gold"}}
        ],
        "destinations": [{"id": "hook", "type": "webhook", "url": "https://hooks.example/x", "secretEnv": "S",
                          "purpose": "analytics", "channel": "email"}],
        "journeys": [
            {"id": "thanks", "trigger": {"event": "Order Completed"}, "reentry": "always",
             "steps": [{"id": "go", "send": "hook", "event": "Thanks"}]},
            {"id": "vip", "trigger": {"audience": "repeat-buyer"}, "reentry": "always",
             "steps": [{"id": "go", "send": "hook", "event": "Vip"}]}
        ]
    }"#,
    )
    .expect("the test configuration compiles")
}

const GRANT: &str = r#""context":{"consent":{"categoryPreferences":{"analytics":true}}}"#;

/// A year of one person's history, oldest first, as Segment events.
fn history(user: &str) -> Vec<String> {
    let at = |days_ago: i64| format_iso8601(NOW - days_ago * DAY - 3 * HOUR);
    let line = |m: &str, body: String| format!(r#"{{"messageId":"{user}-{m}","userId":"{user}",{body},{GRANT}}}"#);
    vec![
        line(
            "i1",
            format!(r#""type":"identify","timestamp":"{}","traits":{{"plan":"silver","firstName":"Ana"}}"#, at(300)),
        ),
        line(
            "o1",
            format!(
                r#""type":"track","event":"Order Completed","timestamp":"{}","properties":{{"revenue":30}}"#,
                at(200)
            ),
        ),
        line(
            "v1",
            format!(r#""type":"track","event":"Product Viewed","timestamp":"{}","properties":{{"sku":"b1"}}"#, at(120)),
        ),
        line(
            "o2",
            format!(
                r#""type":"track","event":"Order Completed","timestamp":"{}","properties":{{"revenue":12.5}}"#,
                at(100)
            ),
        ),
        line("i2", format!(r#""type":"identify","timestamp":"{}","traits":{{"plan":"gold"}}"#, at(90))),
        line("p1", format!(r#""type":"page","name":"Home","timestamp":"{}""#, at(45))),
        line("p2", format!(r#""type":"page","name":"Home","timestamp":"{}""#, at(44))),
    ]
}

fn ndjson() -> Declaration {
    Declaration::of_upload(Some("application/x-ndjson"), &[], &config(), NOW).expect("a declaration")
}

fn user(u: &str) -> Identity {
    Identity::new(USER_ID, u)
}

/// What a profile holds that history decides (not how consent was recorded, which says live or import).
fn held(config: &Config, p: &Profile) -> String {
    let segments = segments_of(config, p, &Context::default(), NOW);
    format!(
        "{:?}",
        (
            &p.identities,
            p.traits.iter().map(|(k, t)| (k, &t.value, t.at)).collect::<Vec<_>>(),
            &p.counts,
            &p.recent,
            &p.aggregates,
            &p.computed,
            p.first_seen,
            p.last_seen,
            segments,
            p.audiences.members.iter().map(|(a, _)| a).collect::<Vec<_>>(),
        )
    )
}

#[test]
fn history_imported_is_the_profile_history_collected_live() {
    let config = config();
    let lines = history("ana");
    let mut live = World::default();
    for l in &lines {
        live.write_line(&config, l, &RequestSignals::default(), NOW);
    }
    let mut imported = World::default();
    // Out of order in the file: the consumer applies each person's rows in time order.
    let mut file: Vec<&String> = lines.iter().collect();
    file.reverse();
    let file = file.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n");
    let (read, _, refused) = imported.import(&config, &ndjson(), file.as_bytes(), NOW);
    assert_eq!((read, refused), (7, vec![]));
    let a = live.profile_of(&user("ana"), NOW).expect("collected");
    let b = imported.profile_of(&user("ana"), NOW).expect("imported");
    assert_eq!(held(&config, &a), held(&config, &b));
    assert_eq!(b.computed.revenue, 42.5);
    assert_eq!(segments_of(&config, &b, &Context::default(), NOW), ["repeat-buyer", "lapsed", "gold"]);
    // Imported again: every row a duplicate, nothing changes.
    let before = held(&config, &b);
    imported.import(&config, &ndjson(), file.as_bytes(), NOW);
    assert_eq!(held(&config, &imported.profile_of(&user("ana"), NOW).unwrap()), before);
}

#[test]
fn history_starts_no_journey_and_its_audience_changes_are_historical() {
    let config = config();
    let mut world = World::default();
    let file = history("bo").join("\n");
    world.import(&config, &ndjson(), file.as_bytes(), NOW);
    let p = world.profile_of(&user("bo"), NOW).unwrap();
    assert!(p.journeys.instances.is_empty() && p.journeys.outbox.is_empty(), "{:?}", p.journeys);
    // Each audience entered at the instant it happened, not at the import's newest row or now: repeat-buyer at the
    // second order (100 days ago), gold at the identify that set the plan (90 days ago); every transition in the
    // order of its time.
    let since = |id: &str| p.audiences.members.iter().find(|(a, _)| a == id).map(|(_, t)| *t);
    let at = |days_ago: i64| NOW - days_ago * DAY - 3 * HOUR;
    assert_eq!((since("repeat-buyer"), since("gold")), (Some(at(100)), Some(at(90))), "{:?}", p.audiences.members);
    let times: Vec<Millis> = p.audiences.transitions.iter().map(|t| t.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times.len() >= 3, "{times:?}");
    // lapsed (inactive for 30 days) came by time alone 30 days after each activity that a gap followed (the
    // identify at 300 days, the order at 200, the identify at 90, the page at 44), and went at the next activity.
    let lapsed: Vec<(Millis, bool)> =
        p.audiences.transitions.iter().filter(|t| t.audience == "lapsed").map(|t| (t.at, t.entered)).collect();
    let month = 30 * DAY;
    let expected =
        [(at(300) + month, true), (at(200), false), (at(200) + month, true), (at(120), false), (at(90) + month, true)];
    assert_eq!(lapsed[..5], expected, "{lapsed:?}");
    assert_eq!(lapsed[5..], [(at(45), false), (at(44) + month, true)], "{lapsed:?}");
    // An order an hour old is within the journeys' horizon: as if collected live, it starts one.
    let recent = format!(
        r#"{{"type":"track","event":"Order Completed","userId":"bo","messageId":"bo-o3","timestamp":"{}",{GRANT}}}"#,
        format_iso8601(NOW - HOUR)
    );
    world.import(&config, &ndjson(), recent.as_bytes(), NOW);
    let p = world.profile_of(&user("bo"), NOW).unwrap();
    let started: Vec<&str> = p.journeys.outbox.iter().map(|o| o.journey.as_str()).collect();
    assert_eq!(started, ["thanks"], "only the recent order's journey; the audience was entered long ago");
}

/// The consent an import declares, one row per rule, under opt-in: (what the person recorded live before, the
/// import's declared purposes, whether the imported event is stored, analytics and personalization afterwards).
#[test]
fn an_import_s_consent_is_a_basis_that_never_overrides_a_person_s_choice() {
    type Row<'a> = (&'a str, Option<&'a str>, &'a str, bool, Option<bool>, Option<bool>);
    let rows: Vec<Row> = vec![
        ("nobody, no basis: nothing is stored", None, "", false, None, None),
        (
            "nobody, a basis: stored, the basis recorded",
            None,
            "analytics,personalization",
            true,
            Some(true),
            Some(true),
        ),
        (
            "a refusal recorded: the basis does not override it",
            Some(r#"{"analytics":true}"#),
            "",
            true,
            Some(true),
            None,
        ),
        (
            "analytics refused on the web: nothing stored",
            Some(r#"{"analytics":false}"#),
            "analytics,personalization",
            false,
            Some(false),
            None,
        ),
        (
            "personalization refused, analytics granted: stored, personalization stays refused",
            Some(r#"{"analytics":true,"personalization":false}"#),
            "analytics,personalization",
            true,
            Some(true),
            Some(false),
        ),
    ];
    let config = config();
    for (name, recorded, basis, stored, analytics, personalization) in rows {
        let mut world = World::default();
        let who = "cy";
        if let Some(prefs) = recorded {
            // First a grant (so there is a profile to record on), then what the person chose, an hour later.
            let grant = format!(
                r#"{{"type":"page","userId":"{who}","messageId":"g","timestamp":"{}",{GRANT}}}"#,
                format_iso8601(NOW - 2 * HOUR)
            );
            world.write_line(&config, &grant, &RequestSignals::default(), NOW - 2 * HOUR);
            let choice = format!(
                r#"{{"type":"track","event":"Choice","userId":"{who}","messageId":"c","timestamp":"{}","context":{{"consent":{{"categoryPreferences":{prefs}}}}}}}"#,
                format_iso8601(NOW - HOUR)
            );
            world.collect(&config, &choice, &RequestSignals::default(), NOW - HOUR);
        }
        let query = vec![("consent".to_string(), basis.to_string())];
        let decl = Declaration::of_upload(Some("application/x-ndjson"), &query, &config, NOW).unwrap();
        let row = format!(
            r#"{{"type":"track","event":"Order Completed","userId":"{who}","messageId":"imp","timestamp":"{}"}}"#,
            format_iso8601(NOW - 10 * DAY)
        );
        world.import(&config, &decl, row.as_bytes(), NOW);
        let p = world.profile_of(&user(who), NOW);
        let got = p.as_ref().is_some_and(|p| p.counts.contains_key("Order Completed"));
        assert_eq!(got, stored, "{name}");
        let grant = |purpose| p.as_ref().and_then(|p| p.consent.grants.get(&purpose).map(|g| g.granted));
        assert_eq!(
            (grant(Purpose::Analytics), grant(Purpose::Personalization)),
            (analytics, personalization),
            "{name}"
        );
    }
}
