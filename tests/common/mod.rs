//! What the native runners of data-driven cases share: the Worker's write path, played through the core with maps
//! standing in for the identity index and the profiles' storage.

#![allow(dead_code)]

use edgecdp::core::engine::apply::{ApplyRequest, Link};
use edgecdp::core::engine::ingest::Batch;
use edgecdp::core::engine::merge::pending_links;
use edgecdp::core::engine::write::{index_entry_stays, write};
use edgecdp::core::model::consent::RequestSignals;
use edgecdp::core::model::identity::{Identity, ProfileIdKey};
use edgecdp::core::model::profile::Profile;
use edgecdp::core::rules::Config;
use edgecdp::core::wire::events::parse_batch;
use std::collections::{BTreeMap, BTreeSet};

/// The profile id secret of every test Worker (`tests/support/worker.mjs` sets `EDGECDP_PROFILE_ID_SECRET` to the
/// same text), so that a case's profile ids are the same natively, under workerd and in Chromium.
pub const TEST_PROFILE_ID_SECRET: &[u8] = b"edgecdp test profile ids, never a real secret";

/// Profiles by id and the identity index, as a Worker's storage holds them.
#[derive(Default)]
pub struct World {
    pub profiles: BTreeMap<String, Profile>,
    pub index: BTreeMap<Identity, String>,
}

impl World {
    /// One request of one Segment event (a JSON line) at `now`, as the Worker case runner sends it (with the
    /// case's server key when it has a server source, otherwise its first source's write key, and no cookie),
    /// through the same core steps the Worker executes: `ingest::Batch` (prepare, admit, plan), then each writer's
    /// `write::write` with the profiles its links hand over. Answers the ids of the profiles written.
    pub fn write_line(&mut self, config: &Config, line: &str, signals: &RequestSignals, now: i64) -> Vec<String> {
        let source =
            config.sources.iter().find(|s| s.is_server()).or(config.sources.first()).expect("a case has a source");
        let body = format!(r#"{{"batch":[{line}]}}"#);
        let parsed = parse_batch(body.as_bytes(), now).expect("events hold valid JSON events");
        assert!(parsed.rejected.is_empty(), "an event is rejected: {:?}", parsed.rejected);
        let mut batch = Batch::prepare(parsed, false, None, config);
        let known: BTreeMap<Identity, String> = batch
            .identities_to_resolve()
            .into_iter()
            .filter_map(|id| self.index.get(&id).map(|p| (id, p.clone())))
            .collect();
        batch.admit(source, &[], &known, &BTreeSet::new(), now);
        let mut written_ids = Vec::new();
        for group in batch.plan(&known, config, &ProfileIdKey::of_secret(TEST_PROFILE_ID_SECRET)) {
            let req = ApplyRequest {
                profile_id: group.profile_id.clone(),
                signals: signals.clone(),
                events: group.events,
                links: group.links,
                ..ApplyRequest::default()
            };
            let current = self.profiles.remove(&req.profile_id);
            let wanted: Vec<Link> = pending_links(current.as_ref(), &req).into_iter().cloned().collect();
            let fetched =
                wanted.into_iter().filter_map(|l| self.profiles.remove(&l.profile_id).map(|p| (l, p))).collect();
            let written = write(current, fetched, req, config, now);
            for p in written.returned.iter().cloned().chain(written.profile.iter().cloned()) {
                self.profiles.insert(p.id.clone(), p);
            }
            if let Some(p) = written.profile.as_ref().filter(|_| written.store) {
                written_ids.push(p.id.clone());
                for id in written.index.iter().chain(&written.repoint) {
                    if !index_entry_stays(id, self.index.get(id).map(String::as_str), &p.id, &written.repoint) {
                        self.index.insert(id.clone(), p.id.clone());
                    }
                }
            }
        }
        let (rejected, _) = batch.finish();
        assert!(rejected.is_empty(), "the Worker would refuse {line}: {rejected:?}");
        written_ids
    }

    pub fn profile_of(&self, id: &Identity) -> Option<&Profile> {
        self.index.get(id).and_then(|p| self.profiles.get(p))
    }
}

/// Plays the events in order, one request each (`World::write_line`), all at `now`.
pub fn play(config: &Config, events_jsonl: &str, now: i64) -> Vec<Profile> {
    let mut world = World::default();
    for line in events_jsonl.lines().filter(|l| !l.trim().is_empty()) {
        world.write_line(config, line, &RequestSignals::default(), now);
    }
    world.profiles.into_values().collect()
}
