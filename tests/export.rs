//! The export's rows as the real writer makes them (`tests/common`'s simulated Cloudflare): one row per case of
//! what reaches the export queue, and what an erasure tells the export to forget. The rules that protect people
//! each have a row: a refused-consent event is in no row, a hashed trait is only its digest, an erasure names
//! every identity and profile of the person (and only by digest).

use edgecdp::core::base::time::Millis;
use edgecdp::core::model::consent::RequestSignals;
use edgecdp::core::model::identity::{hash_identifier, Identity, ANONYMOUS_ID, USER_ID};
use edgecdp::core::rules::{compile_str, Config};
use edgecdp::core::wire::export::{person_key, read_message, Row};
use edgecdp::core::writer::protocol::{Reply, Request};
use serde_json::Value as J;

mod common;
use common::World;

const NOW: Millis = 1_795_344_600_000;

fn config() -> Config {
    compile_str(
        r#"{
        "sources": [{"id": "api", "type": "server", "key": "a-server-key-of-24-chars!"}],
        "consent": {"model": "opt-in"},
        "privacy": {"hashTraits": ["email"]},
        "segments": [{"id": "buyer", "when": {"event": "Order Completed", "count": {"gte": 1}, "within": "30d"}}]
    }"#,
    )
    .expect("the test configuration compiles")
}

const GRANT: &str = r#""context":{"consent":{"categoryPreferences":{"analytics":true}}}"#;

fn line(id: &str, ids: &str, body: &str, grant: bool) -> String {
    let consent = if grant { format!(",{GRANT}") } else { String::new() };
    format!(r#"{{"messageId":"{id}",{ids},{body}{consent}}}"#)
}

/// Every row the export queue received, in order.
fn rows(world: &World) -> Vec<Row> {
    world.export.iter().flat_map(|m| read_message(m).expect("an export message reads").1).collect()
}

/// The rows the export queue received after the first `n`.
fn rows_after(world: &World, n: usize) -> Vec<Row> {
    rows(world).into_iter().skip(n).collect()
}

fn find<'a>(rows: &'a [Row], table: &str, id: &str) -> Vec<&'a Row> {
    rows.iter().filter(|r| r.table == table && r.columns["id"] == id).collect()
}

#[test]
fn what_is_stored_is_exported_and_nothing_else() {
    let c = config();
    let s = RequestSignals::default();
    let order = r#""type":"track","event":"Order Completed","properties":{"revenue":30,"cart":{"size":2}}"#;
    let identify = r#""type":"identify","traits":{"email":"Ana@Example.com","plan":"gold"}"#;
    // (case, lines sent in order, (table, id) rows expected exactly once, (table, id) rows expected nowhere)
    type Case<'a> = (&'a str, Vec<String>, Vec<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>);
    let u1 = r#""userId":"u1""#;
    let cases: Vec<Case> = vec![
        (
            "a consented track: a row of tracks and of its own table",
            vec![line("m1", u1, order, true)],
            vec![("tracks", "m1"), ("order_completed", "m1")],
            vec![],
        ),
        (
            "an event consent refused: no row anywhere",
            vec![line("m1", u1, order, false)],
            vec![],
            vec![("tracks", "m1")],
        ),
        (
            "the same event twice: one row",
            vec![line("m1", u1, order, true), line("m1", u1, order, true)],
            vec![("tracks", "m1"), ("order_completed", "m1")],
            vec![],
        ),
        ("an identify: a row of identifies", vec![line("i1", u1, identify, true)], vec![("identifies", "i1")], vec![]),
    ];
    for (name, lines, once, nowhere) in cases {
        let mut w = World::default();
        for l in &lines {
            w.write_line(&c, l, &s, NOW);
        }
        let rows = rows(&w);
        for (table, id) in once {
            assert_eq!(find(&rows, table, id).len(), 1, "{name}: {table} {id} once, in {rows:?}");
        }
        for (table, id) in nowhere {
            assert!(find(&rows, table, id).is_empty(), "{name}: {table} {id} nowhere");
        }
        if lines.iter().all(|l| !l.contains("analytics")) {
            assert!(rows.is_empty(), "{name}: nothing stored, nothing exported: {rows:?}");
        }
    }
}

#[test]
fn rows_carry_columns_as_segment_names_them() {
    let c = config();
    let mut w = World::default();
    let s = RequestSignals::default();
    let order = r#""type":"track","event":"Order Completed","properties":{"revenue":30,"cart":{"size":2}}"#;
    w.write_line(&c, &line("m1", r#""userId":"u1""#, order, true), &s, NOW);
    w.write_line(
        &c,
        &line("i1", r#""userId":"u1""#, r#""type":"identify","traits":{"email":"Ana@Example.com"}"#, true),
        &s,
        NOW + 1000,
    );
    let rows = rows(&w);
    let own = find(&rows, "order_completed", "m1")[0];
    assert_eq!((own.columns["revenue"].clone(), own.columns["cart_size"].clone()), (J::from(30), J::from(2)));
    assert_eq!(own.columns["user_id"], J::from("u1"));
    // A trait configured as hashed leaves only as its digest, in identifies and in users.
    let digest = hash_identifier("email", "Ana@Example.com");
    assert_eq!(find(&rows, "identifies", "i1")[0].columns["email"], J::from(digest.as_str()));
    let users: Vec<&Row> = rows.iter().filter(|r| r.table == "users").collect();
    let last = users.last().expect("a users row");
    assert_eq!(last.columns["email"], J::from(digest.as_str()));
    assert_eq!((last.columns["orders"].clone(), last.columns["user_id"].clone()), (J::from(1), J::from("u1")));
    assert!(last.columns["audiences"].as_str().unwrap().contains("buyer"));
    // The audience change and the identity link.
    let entered: Vec<&Row> = rows.iter().filter(|r| r.table == "audience_changes").collect();
    assert_eq!(entered.len(), 1);
    assert_eq!(
        (entered[0].columns["audience"].clone(), entered[0].columns["change"].clone()),
        ("buyer".into(), "entered".into())
    );
    let linked: Vec<&Row> = rows.iter().filter(|r| r.table == "identities").collect();
    // The user id, and the e-mail (a server's identify makes it an identity), as its digest.
    let values: Vec<&J> = linked.iter().map(|r| &r.columns["identity_value"]).collect();
    assert_eq!(values, [&J::from("u1"), &J::from(digest.as_str())]);
    assert!(!rows.iter().any(|r| r.to_line().contains("Ana@Example.com")), "the clear e-mail is in no row");
}

/// A browser (anonymous id `a1`) and a customer (`u1`), each with a page, then a page that ties them: a merge.
fn merged() -> World {
    let (c, s) = (config(), RequestSignals::default());
    let mut w = World::default();
    let page = r#""type":"page","name":"Home""#;
    w.write_line(&c, &line("p1", r#""anonymousId":"a1""#, page, true), &s, NOW);
    w.write_line(&c, &line("p2", r#""userId":"u1""#, page, true), &s, NOW + 2000);
    w.write_line(&c, &line("p3", r#""userId":"u1","anonymousId":"a1""#, page, true), &s, NOW + 4000);
    w
}

#[test]
fn a_merge_exports_the_absorbed_profile_as_merged_into_the_survivor() {
    let (c, mut w) = (config(), merged());
    let rows = rows(&w);
    let survivor = w.profile_of(&Identity::new(USER_ID, "u1"), NOW + 5000).expect("one profile").id;
    let absorbed: Vec<&Row> =
        rows.iter().filter(|r| r.table == "users" && r.columns.contains_key("merged_into")).collect();
    assert_eq!(absorbed.len(), 1, "{rows:?}");
    assert_eq!(absorbed[0].columns["merged_into"], J::from(survivor.as_str()));
    let merged: Vec<&Row> =
        rows.iter().filter(|r| r.table == "identities" && r.columns["change"] == "merged").collect();
    assert_eq!(merged.len(), 1, "{rows:?}");
    assert_eq!(merged[0].columns["identity_value"], J::from("a1"));
    // Each event once, in the pages table.
    for id in ["p1", "p2", "p3"] {
        assert_eq!(find(&rows, "pages", id).len(), 1, "{id}");
    }
    // Undoing the merge: the browser's id leaves with the profile split off.
    let absorbed_id = absorbed[0].columns["id"].as_str().unwrap().to_string();
    let (_, reply) = w.follow(&c, &survivor, NOW + 10_000, |_| Request::Split { absorbed: absorbed_id.clone() });
    assert!(matches!(reply, Reply::Split { .. }), "{reply:?}");
    let after = rows_after(&w, rows.len());
    let split: Vec<&Row> = after.iter().filter(|r| r.table == "identities" && r.columns["change"] == "split").collect();
    assert_eq!(split.len(), 1, "{after:?}");
    assert_eq!(
        (split[0].columns["identity_value"].clone(), split[0].columns["profile_id"].clone()),
        ("a1".into(), J::from(absorbed_id.as_str()))
    );
}

#[test]
fn an_erasure_names_every_identity_and_profile_of_the_person_by_digest_only() {
    let (c, mut w) = (config(), merged());
    let p = w.profile_of(&Identity::new(USER_ID, "u1"), NOW + 5000).expect("a profile");
    let absorbed = p.merges[0].absorbed_id.clone();
    let (_, reply) = w.follow(&c, &p.id, NOW + 10_000, |_| Request::Erase);
    assert!(matches!(reply, Reply::Erased { .. }), "{reply:?}");
    let mut expected = vec![
        person_key(USER_ID, "u1"),
        person_key(ANONYMOUS_ID, "a1"),
        person_key("profile", &p.id),
        person_key("profile", &absorbed),
    ];
    edgecdp::core::base::sort::sort(&mut expected);
    assert_eq!(w.export_erased, expected);
    // Every row the person's events made is about one of those people (so the purge finds it).
    for row in rows(&w) {
        assert!(row.people().iter().any(|k| expected.contains(k)), "a row the purge would miss: {row:?}");
    }
    // An anonymous profile that expires is not an erasure: its export stays (the bucket's own lifecycle rules).
    let mut w = World::default();
    w.write_line(&c, &line("x1", r#""anonymousId":"a9""#, r#""type":"page""#, true), &RequestSignals::default(), NOW);
    w.run_alarms(&c, NOW + 400 * edgecdp::core::base::time::DAY, |_, _| {});
    assert!(w.export_erased.is_empty());
}
