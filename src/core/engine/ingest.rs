//! Ingest: a parsed batch on its way to the profiles' writers, as a sans-I/O contract the Worker only executes.
//!
//! 1. `Batch::prepare` (no I/O): the signed cookie's id replaces the ids the script sent, a withdrawal of
//!    analytics is noticed, junk ids are dropped, and each good event keeps its index in the request.
//! 2. The shell looks up `Batch::identities_to_resolve` in the identity index (and, for identities the index no
//!    longer knows, the erasure marks).
//! 3. `Batch::admit` with those answers: the events of a person erased moments ago are refused, a browser's
//!    claims go through `trust::vouch`, and one request writes at most `MAX_PROFILES_PER_REQUEST` profiles.
//! 4. `Batch::plan` hands out the writers' groups (`merge::plan`); what a writer refuses comes back by message
//!    id (`Batch::refuse_by_message_id`).
//! 5. `Batch::finish`: the rejections and the unverified claims, each with its index, code and JSON path.

use crate::core::base::sort;
use crate::core::base::time::Millis;
use crate::core::engine::apply::ApplyAnswer;
use crate::core::engine::merge::{
    identities_to_resolve, is_junk, over_profile_budget, plan, Group, MAX_PROFILES_PER_REQUEST,
};
use crate::core::model::consent::Purpose;
use crate::core::model::event::Event;
use crate::core::model::identity::{Identity, ProfileIdKey, ANONYMOUS_ID, USER_ID};
use crate::core::model::tcf::TcfSignal;
use crate::core::model::trust::{vouch, Proof, RefusedClaim};
use crate::core::rules::sources::{Source, SourceKind};
use crate::core::rules::Config;
use crate::core::wire::events::Parsed;
use crate::core::wire::Rejection;
use std::collections::{BTreeMap, BTreeSet};

/// A batch between parsing and the writers.
#[derive(Debug, Default)]
pub struct Batch {
    /// The events still on their way, and each one's index in the request.
    events: Vec<Event>,
    positions: Vec<usize>,
    rejected: Vec<Rejection>,
    unverified: Vec<Rejection>,
    /// A single-event endpoint: paths have no `batch[i].` prefix.
    single: bool,
    /// Whether an event of the batch withdraws analytics (the cookie then goes).
    pub withdrawn: bool,
    /// Message id → index in the request, once planned, for what the writers answer by message id.
    index_of: BTreeMap<String, usize>,
}

impl Batch {
    /// Step 1. `cookie_id` is the anonymous id of the request's valid signed cookie, which wins over the id the
    /// script sent (it may be new because the browser cleared script storage).
    pub fn prepare(parsed: Parsed, single: bool, cookie_id: Option<&str>, config: &Config) -> Batch {
        let mut batch = Batch {
            events: Vec::with_capacity(parsed.events.len()),
            positions: Vec::with_capacity(parsed.events.len()),
            rejected: parsed.rejected,
            unverified: Vec::new(),
            single,
            withdrawn: false,
            index_of: BTreeMap::new(),
        };
        // The wire parser keeps good events in order and names the bad ones by index: the n-th good event has
        // the n-th index that was not rejected.
        let parse_rejected: BTreeSet<usize> = sort::set_of(batch.rejected.iter().map(|r| r.index));
        let mut indexes = (0..).filter(|i| !parse_rejected.contains(i));
        for mut event in parsed.events {
            let index = indexes.next().unwrap_or(0);
            if let Some(c) = cookie_id {
                event.anonymous_id = Some(c.to_string());
            }
            // The event's own TC string, mapped at its time (a stale one says nothing).
            event.tcf = event.tc_string.take().and_then(|tc| TcfSignal::of(&config.consent.tcf, &tc, event.timestamp));
            batch.withdrawn |= config.consent.sent_by(&event).get(Purpose::Analytics) == Some(false);
            // Junk ids (the configured blocklist: `null`, `undefined`, `0`, ...) never create or merge a profile:
            // they are dropped, and an event left with no usable id is rejected at its index.
            let junk_user = event.user_id.as_deref().is_some_and(|u| is_junk(&config.identity, u));
            if event.anonymous_id.as_deref().is_some_and(|a| is_junk(&config.identity, a)) {
                event.anonymous_id = None;
            }
            if junk_user {
                event.user_id = None;
            }
            if event.anonymous_id.is_none() && event.user_id.is_none() && event.routing.is_none() {
                let field = if junk_user { "userId" } else { "anonymousId" };
                let message = format!("{field} is on the identity blocklist and no other id was sent");
                batch.rejected.push(Rejection {
                    index,
                    code: "blocked_identity",
                    message,
                    path: batch.path(index, field),
                });
                continue;
            }
            batch.events.push(event);
            batch.positions.push(index);
        }
        batch
    }

    /// Step 2: what the shell must look up in the identity index.
    pub fn identities_to_resolve(&self) -> BTreeSet<Identity> {
        identities_to_resolve(&self.events)
    }

    /// Step 3. `index` is what the identity index says; `erased`, the identities it no longer knows that an
    /// erasure marked moments ago; `secrets`, the identity secrets a browser's tokens may be signed with.
    pub fn admit(
        &mut self,
        source: &Source,
        secrets: &[&[u8]],
        index: &BTreeMap<Identity, String>,
        erased: &BTreeSet<Identity>,
        now: Millis,
    ) {
        // Events of a person erased moments ago (sent before the erasure, or racing it) do not bring them back.
        if !erased.is_empty() {
            let message = "this person was erased moments ago; events sent before the erasure are not kept";
            self.refuse(|_, e| {
                let of =
                    |kind, v: &Option<String>| v.as_deref().is_some_and(|v| erased.contains(&Identity::new(kind, v)));
                (of(ANONYMOUS_ID, &e.anonymous_id) || of(USER_ID, &e.user_id))
                    .then(|| ("profile_erased", message.to_string(), ""))
            });
        }
        // A browser's identity claims count only with proof; a server source's are believed. A claim that is not
        // believed is named in the answer, and the event is still stored, for the visitor's own profile.
        match &source.kind {
            SourceKind::Browser { identity_proof, contact_proof, .. } => {
                // The contact points a browser sets are believed only when the configuration says so.
                let believed = *contact_proof == Proof::Off;
                for e in &mut self.events {
                    e.believe_contacts = believed;
                }
                for RefusedClaim { position, error } in vouch(&mut self.events, *identity_proof, secrets, index, now) {
                    let index = self.positions[position];
                    let path = self.path(index, error.field());
                    self.unverified.push(Rejection {
                        index,
                        code: error.code(),
                        message: error.message().into(),
                        path,
                    });
                }
                // An event that had only the user id it could not prove has no profile to go to.
                let message =
                    "the userId was not proven and no anonymousId was sent, so the event has no profile to go to";
                self.refuse(|_, e| {
                    (e.anonymous_id.is_none() && e.user_id.is_none())
                        .then(|| ("identity_unproven", message.to_string(), "anonymousId"))
                });
            }
            SourceKind::Server { .. } => {
                // A server's claims need no proof; a token it sent anyway goes no further than here.
                for e in &mut self.events {
                    e.identity_token = None;
                }
            }
        }
        // One request writes a bounded number of profiles; the rest is refused by index, to be sent again.
        let over = over_profile_budget(&self.events);
        self.refuse(|i, _| {
            over.contains(&i).then(|| {
                let message = format!(
                    "one request writes at most {MAX_PROFILES_PER_REQUEST} profiles; send this event again in another request"
                );
                ("too_many_profiles", message, "")
            })
        });
    }

    /// The anonymous ids of the batch that had no profile before it: the request made them, so the browser that
    /// sent it owns them (and may get the cookie for one). Naming someone else's id earns nothing.
    pub fn new_anonymous_ids(&self, index: &BTreeMap<Identity, String>) -> BTreeSet<String> {
        sort::set_of(
            self.events
                .iter()
                .filter_map(|e| e.anonymous_id.clone())
                .filter(|a| !index.contains_key(&Identity::new(ANONYMOUS_ID, a))),
        )
    }

    /// Step 4: the writers' groups, in order. The events leave the batch; their indexes stay, by message id.
    /// `ids` makes the ids of profiles the index does not know yet.
    pub fn plan(&mut self, index: &BTreeMap<Identity, String>, config: &Config, ids: &ProfileIdKey) -> Vec<Group> {
        self.index_of = sort::map_of(self.events.iter().zip(&self.positions).map(|(e, &i)| (e.message_id.clone(), i)));
        self.positions.clear();
        plan(std::mem::take(&mut self.events), index, &config.identity, ids)
    }

    /// Records that a writer refused the event `message_id` (its `field`, empty for the whole event).
    pub fn refuse_by_message_id(&mut self, message_id: &str, code: &'static str, message: String, field: &str) {
        if let Some(&index) = self.index_of.get(message_id) {
            let path = self.path(index, field);
            self.rejected.push(Rejection { index, code, message, path });
        }
    }

    /// What a profile's writer did not keep of the events sent to it (`message_ids`): every one when the person was
    /// erased moments ago (refused with `erased`, the message saying why), and those the profile had no room for.
    /// `noun` names them in that message ("event", "row").
    pub fn refuse_unkept(&mut self, message_ids: &[String], answer: &ApplyAnswer, erased: &str, noun: &str) {
        if answer.erased {
            for m in message_ids {
                self.refuse_by_message_id(m, "profile_erased", erased.to_string(), "");
            }
        }
        for (m, field) in &answer.over_budget {
            let message = format!("the profile has no room for this {noun}'s {field} (see Profile size in README.md)");
            self.refuse_by_message_id(m, "profile_budget_exceeded", message, field);
        }
    }

    /// Step 5: the rejected events and the unverified claims, in request order.
    pub fn finish(mut self) -> (Vec<Rejection>, Vec<Rejection>) {
        sort::sort_by_key(&mut self.rejected, |r| r.index);
        (self.rejected, self.unverified)
    }

    /// The JSON path of a field of the event at `index`; the event itself when `field` is empty.
    fn path(&self, index: usize, field: &str) -> String {
        match (self.single, field) {
            (true, f) => f.to_string(),
            (false, "") => format!("batch[{index}]"),
            (false, f) => format!("batch[{index}].{f}"),
        }
    }

    /// Takes the events `verdict` names (by position, with a code, a message and the field) out of the batch,
    /// keeping the positions in step, and records each as rejected at its path.
    fn refuse(&mut self, verdict: impl Fn(usize, &Event) -> Option<(&'static str, String, &'static str)>) {
        let mut kept = Vec::with_capacity(self.events.len());
        let mut positions = Vec::with_capacity(self.positions.len());
        for (i, (event, index)) in
            std::mem::take(&mut self.events).into_iter().zip(std::mem::take(&mut self.positions)).enumerate()
        {
            match verdict(i, &event) {
                None => {
                    kept.push(event);
                    positions.push(index);
                }
                Some((code, message, field)) => {
                    let path = self.path(index, field);
                    self.rejected.push(Rejection { index, code, message, path });
                }
            }
        }
        self.events = kept;
        self.positions = positions;
    }
}

/// An import chunk's events (each with its line) as the batches its consumer sends, one after another: in time
/// order (so each person's history is applied in the order it happened), at most `MAX_PROFILES_PER_REQUEST`
/// people per batch, each person's rows in one batch.
pub fn import_batches(events: Vec<Event>, lines: Vec<u64>) -> Vec<(Vec<Event>, Vec<u64>)> {
    let mut rows: Vec<(Event, u64)> = events.into_iter().zip(lines).collect();
    sort::sort_by_key(&mut rows, |(e, _)| e.timestamp);
    let mut people: BTreeMap<String, usize> = BTreeMap::new();
    let mut batches: Vec<(Vec<Event>, Vec<u64>)> = Vec::new();
    for (event, line) in rows {
        let count = people.len();
        let b = *people.entry(event.person()).or_insert(count / MAX_PROFILES_PER_REQUEST);
        if batches.len() <= b {
            batches.resize_with(b + 1, Default::default);
        }
        batches[b].0.push(event);
        batches[b].1.push(line);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::trust::make_identity_token;
    use crate::core::rules::compile_str;
    use crate::core::wire::events::{parse_batch, parse_single, CallType};

    const NOW: Millis = 1_795_344_600_000;
    const SECRET: &[u8] = b"the identity secret of the tests";

    fn config() -> Config {
        compile_str(
            r#"{"sources": [{"id": "web", "writeKey": "pub"}, {"id": "api", "type": "server", "key": "a-server-key-of-24-chars!"}]}"#,
        )
        .unwrap()
    }

    fn codes(rs: &[Rejection]) -> Vec<(usize, &str, &str)> {
        rs.iter().map(|r| (r.index, r.code, r.path.as_str())).collect()
    }

    #[test]
    fn prepare_keeps_each_event_s_index_and_drops_junk_ids() {
        let parsed = parse_batch(
            br#"{"batch":[{"type":"page","anonymousId":"a"},{"type":"nope"},{"type":"page","anonymousId":"null"},
                {"type":"page","anonymousId":"b","userId":"undefined"},{"type":"page","userId":"0"}]}"#,
            NOW,
        )
        .unwrap();
        let batch = Batch::prepare(parsed, false, None, &config());
        assert_eq!(batch.positions, [0, 3]);
        assert_eq!(batch.events[1].user_id, None, "a junk user id is dropped, the event kept");
        let (rejected, _) = batch.finish();
        assert_eq!(
            codes(&rejected),
            [
                (1, "unknown_type", "batch[1].type"),
                (2, "blocked_identity", "batch[2].anonymousId"),
                (4, "blocked_identity", "batch[4].userId")
            ]
        );
    }

    #[test]
    fn the_cookie_s_id_wins_and_a_withdrawal_is_noticed() {
        let parsed = parse_single(
            br#"{"anonymousId":"from-script","event":"E","context":{"consent":{"categoryPreferences":{"analytics":false}}}}"#,
            CallType::Track,
            NOW,
        )
        .unwrap();
        let batch = Batch::prepare(parsed, true, Some("from-cookie"), &config());
        assert_eq!(batch.events[0].anonymous_id.as_deref(), Some("from-cookie"));
        assert!(batch.withdrawn);
    }

    #[test]
    fn admit_applies_trust_erasure_and_the_request_budget_at_their_paths() {
        let token = make_identity_token(SECRET, "alice", NOW, NOW + 3_600_000);
        let body = format!(
            r#"{{"batch":[{{"type":"identify","anonymousId":"a","userId":"alice","context":{{"identityToken":"{token}"}}}},
                {{"type":"identify","anonymousId":"b","userId":"alice"}},
                {{"type":"track","event":"E","userId":"bob"}},
                {{"type":"page","anonymousId":"gone"}}]}}"#
        );
        let config = config();
        let mut batch = Batch::prepare(parse_batch(body.as_bytes(), NOW).unwrap(), false, None, &config);
        let erased = BTreeSet::from([Identity::new(ANONYMOUS_ID, "gone")]);
        batch.admit(&config.sources[0], &[SECRET], &BTreeMap::new(), &erased, NOW);
        assert_eq!(batch.positions, [0, 1]);
        assert_eq!(batch.events[0].user_id.as_deref(), Some("alice"), "proven");
        assert_eq!(batch.events[1].user_id, None, "unproven: kept as a claim");
        let (rejected, unverified) = batch.finish();
        assert_eq!(
            codes(&unverified),
            [(1, "identity_unproven", "batch[1].userId"), (2, "identity_unproven", "batch[2].userId")]
        );
        assert_eq!(
            codes(&rejected),
            [(2, "identity_unproven", "batch[2].anonymousId"), (3, "profile_erased", "batch[3]")]
        );

        // The same events from the server source are believed as sent, and carry no token further.
        let mut batch = Batch::prepare(parse_batch(body.as_bytes(), NOW).unwrap(), false, None, &config);
        batch.admit(&config.sources[1], &[], &BTreeMap::new(), &BTreeSet::new(), NOW);
        assert_eq!(batch.events.iter().filter(|e| e.user_id.is_some()).count(), 3);
        assert!(batch.events.iter().all(|e| e.identity_token.is_none() && !e.from_browser));
    }

    #[test]
    fn an_import_chunk_goes_in_time_order_each_person_whole_in_one_batch() {
        let event = |user: usize, at: Millis| {
            let kind = crate::core::model::event::EventKind::Track { event: "E".into(), properties: BTreeMap::new() };
            let mut e = Event::new(format!("m{user}-{at}"), None, Some(format!("u{user}")), at, kind);
            e.imported = true;
            e
        };
        let people = MAX_PROFILES_PER_REQUEST + 3;
        let mut events: Vec<Event> = (0..people).map(|u| event(u, 100 + u as Millis)).collect();
        events.push(event(0, 1));
        events.push(event(people - 1, 5));
        let lines: Vec<u64> = (0..events.len() as u64).map(|l| l + 2).collect();
        let batches = import_batches(events, lines);
        assert_eq!(batches.len(), 2);
        for (events, lines) in &batches {
            assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp), "in time order");
            assert_eq!(events.len(), lines.len());
        }
        let users = |b: &Vec<Event>| b.iter().filter_map(|e| e.user_id.clone()).collect::<BTreeSet<_>>();
        assert_eq!(users(&batches[0].0).len(), MAX_PROFILES_PER_REQUEST);
        assert_eq!(users(&batches[1].0).len(), 3);
        assert!(users(&batches[0].0).is_disjoint(&users(&batches[1].0)), "each person whole");
        // The earliest row (u0 at 1) leads, with its line.
        assert_eq!((batches[0].0[0].timestamp, batches[0].1[0]), (1, 2 + people as u64));
    }

    #[test]
    fn what_writers_refuse_comes_back_at_its_index() {
        let events: Vec<String> = (0..MAX_PROFILES_PER_REQUEST + 2)
            .map(|i| format!(r#"{{"type":"page","anonymousId":"v{i}","messageId":"m{i}"}}"#))
            .collect();
        let body = format!(r#"{{"batch":[{}]}}"#, events.join(","));
        let config = config();
        let mut batch = Batch::prepare(parse_batch(body.as_bytes(), NOW).unwrap(), false, None, &config);
        batch.admit(&config.sources[1], &[], &BTreeMap::new(), &BTreeSet::new(), NOW);
        let groups = batch.plan(&BTreeMap::new(), &config, &ProfileIdKey::of_secret(b"test"));
        assert_eq!(groups.len(), MAX_PROFILES_PER_REQUEST);
        let over = ApplyAnswer {
            over_budget: vec![("m3".into(), "traits.x".into()), ("not-in-this-batch".into(), String::new())],
            ..ApplyAnswer::default()
        };
        batch.refuse_unkept(&["m3".into()], &over, "erased", "event");
        let erased = ApplyAnswer { erased: true, ..ApplyAnswer::default() };
        batch.refuse_unkept(&["m5".into(), "m6".into()], &erased, "erased moments ago", "event");
        batch.refuse_unkept(&["m7".into()], &ApplyAnswer::default(), "kept", "event");
        let (rejected, _) = batch.finish();
        let message = rejected.iter().find(|r| r.index == 3).map(|r| r.message.as_str());
        assert_eq!(message, Some("the profile has no room for this event's traits.x (see Profile size in README.md)"));
        assert_eq!(
            codes(&rejected),
            [
                (3, "profile_budget_exceeded", "batch[3].traits.x"),
                (5, "profile_erased", "batch[5]"),
                (6, "profile_erased", "batch[6]"),
                (MAX_PROFILES_PER_REQUEST, "too_many_profiles", "batch[50]"),
                (MAX_PROFILES_PER_REQUEST + 1, "too_many_profiles", "batch[51]"),
            ]
        );
    }
}
