//! What the native runners share: a simulated Cloudflare (after quinn-proto's test `Pair`) that drives the real
//! profile writer (`core::writer::Writer`) and carries out its effects on maps, in simulated time: each profile
//! object's storage and alarm, Workers KV (values, expirations, and its one write a second per key, which a
//! test breaks loudly), the audience index queue, the delivery queue and the experiments' counts. Requests and
//! replies go through the object protocol's codecs, as they do between the Worker and its objects.
//!
//! Besides carrying out, the world checks what the writer promises: nothing leaves an object (an index message,
//! a send, an experiment count) before the profile that caused it is stored, and no KV key is written twice
//! within a second.

#![allow(dead_code)]

use edgecdp::core::base::time::Millis;
use edgecdp::core::engine::apply::ApplyRequest;
use edgecdp::core::engine::ingest::{import_batches, Batch};
use edgecdp::core::model::consent::RequestSignals;
use edgecdp::core::model::identity::{Identity, ProfileIdKey};
use edgecdp::core::model::profile::Profile;
use edgecdp::core::model::shown::Outcome;
use edgecdp::core::rules::sources::{Source, SourceKind};
use edgecdp::core::rules::Config;
use edgecdp::core::store::decode_profile;
use edgecdp::core::wire::deliveries::{DeliveryMessage, Record};
use edgecdp::core::wire::events::parse_batch;
use edgecdp::core::wire::events::Parsed;
use edgecdp::core::wire::imports::{parse_chunk, Declaration, Splitter};
use edgecdp::core::wire::Rejection;
use edgecdp::core::writer::effects::{Action, Effect, Effects, Handed};
use edgecdp::core::writer::protocol::{decode_reply, decode_request, encode_reply, encode_request, Reply, Request};
use edgecdp::core::writer::state::{Key, Stored, Value};
use edgecdp::core::writer::{Writer, KV_INTERVAL_MS};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// The profile id secret of every test Worker (`tests/support/worker.mjs` sets `EDGECDP_PROFILE_ID_SECRET` to the
/// same text), so that a case's profile ids are the same natively, under workerd and in Chromium.
pub const TEST_PROFILE_ID_SECRET: &[u8] = b"edgecdp test profile ids, never a real secret";

/// Tombstones followed at most, as the Worker's client does.
const MAX_HOPS: usize = 4;

/// A KV entry: its bytes and expiration (seconds).
#[derive(Clone, Debug)]
pub struct KvEntry {
    pub value: Vec<u8>,
    pub expiration: Option<u64>,
}

/// Everything the Worker's storage holds, and what left it.
#[derive(Default)]
pub struct World {
    /// Each profile object's storage.
    pub objects: BTreeMap<String, BTreeMap<Key, Value>>,
    /// Each object's alarm.
    pub alarms: BTreeMap<String, Millis>,
    pub kv: BTreeMap<String, KvEntry>,
    /// When each KV key was last written (deletions included).
    pub kv_written: BTreeMap<String, Millis>,
    /// How many KV writes were carried out.
    pub kv_writes: usize,
    /// Messages for the audience and journey index, in order.
    pub index_messages: Vec<String>,
    /// Profiles the audience index and the delivery log were told to forget.
    pub forgotten: Vec<String>,
    pub deliveries: VecDeque<DeliveryMessage>,
    /// Sends logged as suppressed when they were queued (`Effect::Suppressed`), with their reasons.
    pub suppressed: VecDeque<(Record, String)>,
    pub experiments: Vec<Outcome>,
    /// The export queue's messages, in order, and the people (`person_key`s) erasures purged from the export.
    pub export: Vec<String>,
    pub export_erased: Vec<String>,
    /// The latest instant anything happened at (an erasure may wait for KV's second past the request's time).
    pub clock: Millis,
    /// When each object's alarm was last set (an alarm is at least a millisecond after that).
    pub alarm_set_at: BTreeMap<String, Millis>,
    /// Time the KV writes of the effect being carried out took, added to the clock after it.
    kv_latency_debt: Millis,
}

/// How long one KV write takes in the simulation.
pub const KV_WRITE_MS: Millis = 3;

/// A stored profile as it was before its sends were noted enqueued (which is stored after they leave).
fn as_before_enqueued(bytes: &[u8]) -> Profile {
    let mut p = decode_profile(bytes).expect("a stored profile decodes");
    // A send cancelled before it was queued leaves the outbox for the log (`Effect::Suppressed`) as the sends are
    // enqueued.
    p.journeys.outbox.retain(|o| o.enqueued || o.cancelled.is_none());
    for o in &mut p.journeys.outbox {
        o.enqueued = false;
    }
    p
}

impl World {
    /// One request to one object at `now`, through the protocol's codecs, carried out.
    pub fn ask(&mut self, config: &Config, id: &str, request: &Request, now: Millis) -> Reply {
        let request = decode_request(&encode_request(request)).expect("a request decodes");
        let storage = self.objects.get(id).cloned().unwrap_or_default();
        let mut writer = Writer::new(Stored::load(|k| storage.get(&k).cloned()));
        let action = match request {
            Request::Apply(request) => {
                let mut handed = Vec::new();
                for link in writer.handovers(&request, now).expect("stored state decodes") {
                    let survivor = request.profile_id.clone();
                    if let Reply::HandedOver(Some((bytes, last_kv_write))) =
                        self.ask(config, &link.profile_id, &Request::Handover { survivor }, now)
                    {
                        let profile = decode_profile(&bytes).expect("a handed-over profile decodes");
                        handed.push(Handed { link, profile, last_kv_write });
                    }
                }
                Action::Apply { request, handed }
            }
            other => Action::Request(other),
        };
        let effects = writer.handle(action, config, now).expect("stored state decodes");
        trace("ask", id, &effects, now);
        let final_profile = writer.stored().profile.clone();
        self.carry_out(config, id, effects, final_profile.as_deref(), now)
    }

    /// An object's alarm at `now`.
    pub fn wake(&mut self, config: &Config, id: &str, now: Millis) {
        self.alarms.remove(id);
        let storage = self.objects.get(id).cloned().unwrap_or_default();
        let mut writer = Writer::new(Stored::load(|k| storage.get(&k).cloned()));
        let effects = writer.handle(Action::Alarm, config, now).expect("stored state decodes");
        trace("alarm", id, &effects, now);
        let final_profile = writer.stored().profile.clone();
        self.carry_out(config, id, effects, final_profile.as_deref(), now);
    }

    /// `ask`, following tombstones as the Worker's client does (`make` builds the request for each object).
    pub fn follow(
        &mut self,
        config: &Config,
        id: &str,
        now: Millis,
        make: impl Fn(&str) -> Request,
    ) -> (String, Reply) {
        let mut at = id.to_string();
        for _ in 0..=MAX_HOPS {
            match self.ask(config, &at, &make(&at), now) {
                Reply::Moved { to } => at = to,
                reply => return (at, reply),
            }
        }
        panic!("profile {id} moved more than {MAX_HOPS} times");
    }

    fn carry_out(&mut self, config: &Config, id: &str, e: Effects, final_profile: Option<&[u8]>, now: Millis) -> Reply {
        let mut t = now;
        for effect in e.effects {
            t += std::mem::take(&mut self.kv_latency_debt);
            if matches!(effect, Effect::Index(_) | Effect::Enqueue(_) | Effect::Experiments(_) | Effect::Export(_)) {
                self.assert_stored(id, final_profile, &effect);
            }
            match effect {
                Effect::Put(k, v) => {
                    self.objects.entry(id.to_string()).or_default().insert(k, v);
                }
                Effect::Stamp(k) => {
                    self.objects.entry(id.to_string()).or_default().insert(k, Value::Number(t as f64));
                }
                Effect::Delete(k) => {
                    self.objects.entry(id.to_string()).or_default().remove(&k);
                }
                Effect::DeleteAll => {
                    self.objects.remove(id);
                    self.alarms.remove(id);
                }
                Effect::WaitUntil(at) => t = t.max(at),
                Effect::KvPut { key, value, expiration } => self.kv_write(&key, Some(KvEntry { value, expiration }), t),
                Effect::KvDelete { key } => self.kv_write(&key, None, t),
                Effect::KvIndex(w) => {
                    let key = w.identity.index_key();
                    if w.writes(self.kv_text(&key, t).as_deref()) {
                        let entry = KvEntry { value: w.profile_id.clone().into_bytes(), expiration: w.expiration };
                        self.kv_write(&key, Some(entry), t);
                    }
                }
                Effect::KvUnindex { identity, leads_to } => {
                    let key = identity.index_key();
                    if self.kv_text(&key, t).is_some_and(|p| leads_to.contains(&p)) {
                        let mark = KvEntry { value: b"1".to_vec(), expiration: Some((t / 1000 + 60) as u64) };
                        self.kv_write(&identity.erased_key(), Some(mark), t);
                        self.kv_write(&key, None, t);
                    }
                }
                Effect::Call { profile_id, request, required } => {
                    let reply = self.ask(config, &profile_id, &request, t);
                    assert!(!required || matches!(reply, Reply::Restored { .. }), "{profile_id} answered {reply:?}");
                }
                Effect::Experiments(o) => self.experiments.extend(o),
                Effect::Index(m) => self.index_messages.push(m),
                Effect::IndexErase { profile_ids, .. } | Effect::DeliveriesForget { profile_ids } => {
                    self.forgotten.extend(profile_ids)
                }
                Effect::Enqueue(messages) => self.deliveries.extend(messages),
                Effect::Suppressed(sends) => self.suppressed.extend(sends),
                Effect::Export(messages) => self.export.extend(messages),
                Effect::ExportErase { people, .. } => self.export_erased.extend(people),
            }
        }
        match e.alarm {
            // An alarm is at least a millisecond away, as the object sets it.
            Some(Some(at)) => {
                self.alarms.insert(id.to_string(), at.max(t + 1));
                self.alarm_set_at.insert(id.to_string(), t);
            }
            Some(None) => {
                self.alarms.remove(id);
            }
            None => {}
        }
        t += std::mem::take(&mut self.kv_latency_debt);
        self.clock = self.clock.max(t);
        decode_reply(&encode_reply(&e.reply)).expect("a reply decodes")
    }

    /// Nothing leaves an object before the profile that caused it is stored there.
    fn assert_stored(&self, id: &str, final_profile: Option<&[u8]>, effect: &Effect) {
        let Some(after) = final_profile else { return };
        let stored = self.objects.get(id).and_then(|s| s.get(&Key::Profile));
        let stored = match stored {
            Some(Value::Bytes(b)) => as_before_enqueued(b),
            _ => panic!("{effect:?} left profile {id} before any profile was stored"),
        };
        assert!(stored == as_before_enqueued(after), "{effect:?} left profile {id} before the profile was stored");
    }

    /// A KV write (`None`: a deletion): KV takes at most one a second per key.
    fn kv_write(&mut self, key: &str, entry: Option<KvEntry>, t: Millis) {
        if std::env::var_os("EDGECDP_TRACE").is_some() {
            eprintln!(
                "kv {t} {key} {:?}",
                entry.as_ref().map(|e| String::from_utf8_lossy(&e.value).chars().take(40).collect::<String>())
            );
        }
        if let Some(last) = self.kv_written.insert(key.to_string(), t) {
            assert!(t - last >= KV_INTERVAL_MS, "KV key {key} written at {last} and again at {t}");
        }
        self.kv_writes += 1;
        // Each KV write takes a little time, as it does at Cloudflare: what the object notes of it must be when it
        // happened, not when the writer planned it.
        self.kv_latency_debt += KV_WRITE_MS;
        match entry {
            Some(e) => self.kv.insert(key.to_string(), e),
            None => self.kv.remove(key),
        };
    }

    /// A KV value as text at `t` (an expired entry is gone).
    pub fn kv_text(&self, key: &str, t: Millis) -> Option<String> {
        let e = self.kv.get(key).filter(|e| e.expiration.is_none_or(|x| (x as Millis) * 1000 > t))?;
        Some(String::from_utf8_lossy(&e.value).into_owned())
    }

    /// One request of one Segment event (a JSON line) at `now`, as the Worker's collect route sends it (with the
    /// case's server key when it has a server source, otherwise its first source's write key, and no cookie):
    /// `ingest::Batch` (prepare, admit, plan), then an apply to each profile's object. Answers the ids of the
    /// profiles that took events.
    pub fn write_line(&mut self, config: &Config, line: &str, signals: &RequestSignals, now: Millis) -> Vec<String> {
        let (written, rejected) = self.collect(config, line, signals, now);
        assert!(rejected.is_empty(), "the Worker would refuse {line}: {rejected:?}");
        written
    }

    /// `write_line` for an event the Worker may refuse (an identity erased moments ago): answers the profiles that
    /// took it, and the refusals.
    pub fn collect(
        &mut self,
        config: &Config,
        line: &str,
        signals: &RequestSignals,
        now: Millis,
    ) -> (Vec<String>, Vec<String>) {
        let (written, rejected) = self.collect_rejections(config, line, signals, now);
        (written, rejected.iter().map(|r| format!("{r:?}")).collect())
    }

    fn collect_rejections(
        &mut self,
        config: &Config,
        line: &str,
        signals: &RequestSignals,
        now: Millis,
    ) -> (Vec<String>, Vec<Rejection>) {
        let source =
            config.sources.iter().find(|s| s.is_server()).or(config.sources.first()).expect("a case has a source");
        let body = format!(r#"{{"batch":[{line}]}}"#);
        let parsed = parse_batch(body.as_bytes(), now).expect("events hold valid JSON events");
        assert!(parsed.rejected.is_empty(), "an event is rejected: {:?}", parsed.rejected);
        self.write_parsed(config, source, parsed, signals, now)
    }

    /// An import file as the Worker takes it: through the `Splitter` (rows parsed, rejected or put in their
    /// person's partition), then chunk by chunk as the imports consumer applies it (`wire::imports::parse_chunk`),
    /// in time order, batch by batch (`ingest::import_batches`), from a server's word. Answers the rows read, the
    /// profiles that took rows, and the rows refused (splitting's and parsing's rejects, and writers' refusals), as
    /// (line, code).
    pub fn import(
        &mut self,
        config: &Config,
        decl: &Declaration,
        file: &[u8],
        now: Millis,
    ) -> (u64, Vec<String>, Vec<(u64, String)>) {
        let mut splitter = Splitter::new(decl, config, now);
        let mut chunks = Vec::new();
        for piece in file.chunks(64 * 1024) {
            splitter.feed(piece).expect("the file's header binds");
            chunks.extend(splitter.take_ready());
        }
        let mut split = splitter.finish().expect("the file's header binds");
        chunks.extend(std::mem::take(&mut split.ready));
        let mut refused: Vec<(u64, String)> = split.rejects.iter().map(|r| (r.line, r.code.to_string())).collect();
        let mut read = split.rejected;
        let source =
            Source { id: "import".into(), kind: SourceKind::Server { key_digest: String::new() }, origins: vec![] };
        let mut written = Vec::new();
        for chunk in chunks {
            let rows = parse_chunk(&chunk, decl, split.columns.as_ref(), config, now);
            read += rows.read;
            refused.extend(rows.rejects.iter().map(|r| (r.line, r.code.to_string())));
            for (events, lines) in import_batches(rows.events, rows.lines) {
                let parsed = Parsed { write_key: None, events, rejected: Vec::new() };
                let (w, r) = self.write_parsed(config, &source, parsed, &RequestSignals::default(), now);
                written.extend(w);
                refused.extend(r.iter().map(|r| (lines[r.index], r.code.to_string())));
            }
        }
        edgecdp::core::base::sort::sort(&mut refused);
        (read, written, refused)
    }

    /// Parsed events through `ingest::Batch` (prepare, lookups, admit, plan) and each profile's object.
    fn write_parsed(
        &mut self,
        config: &Config,
        source: &Source,
        parsed: Parsed,
        signals: &RequestSignals,
        now: Millis,
    ) -> (Vec<String>, Vec<Rejection>) {
        let mut batch = Batch::prepare(parsed, false, None, config);
        let mut known = BTreeMap::new();
        let mut erased = BTreeSet::new();
        for id in batch.identities_to_resolve() {
            match self.kv_text(&id.index_key(), now) {
                Some(p) => {
                    known.insert(id, p);
                }
                None if self.kv_text(&id.erased_key(), now).is_some() => {
                    erased.insert(id);
                }
                None => {}
            }
        }
        // Identities leading to different profiles: their objects say where each lives now (a merge's index
        // entries move a second after it).
        let distinct: BTreeSet<String> = known.values().cloned().collect();
        if distinct.len() > 1 {
            for pid in distinct {
                if let Reply::Moved { to } = self.ask(config, &pid, &Request::Locate, now) {
                    known.values_mut().filter(|p| **p == pid).for_each(|p| *p = to.clone());
                }
            }
        }
        batch.admit(source, &[], &known, &erased, now);
        let mut written = Vec::new();
        for group in batch.plan(&known, config, &ProfileIdKey::of_secret(TEST_PROFILE_ID_SECRET)) {
            let request = ApplyRequest {
                profile_id: group.profile_id.clone(),
                signals: signals.clone(),
                events: group.events,
                links: group.links,
                ..ApplyRequest::default()
            };
            let (at, reply) = self.apply(config, request, now);
            if let Reply::Applied(a) = reply {
                if a.stored > 0 || a.merged > 0 {
                    written.push(at);
                }
            }
        }
        let (rejected, _) = batch.finish();
        (written, rejected)
    }

    /// An apply, following tombstones.
    pub fn apply(&mut self, config: &Config, request: ApplyRequest, now: Millis) -> (String, Reply) {
        let id = request.profile_id.clone();
        self.follow(config, &id, now, |at| {
            Request::Apply(ApplyRequest { profile_id: at.to_string(), ..request.clone() })
        })
    }

    /// The profile stored in an object, if any.
    pub fn stored_profile(&self, id: &str) -> Option<Profile> {
        match self.objects.get(id)?.get(&Key::Profile)? {
            Value::Bytes(b) => Some(decode_profile(b).expect("a stored profile decodes")),
            _ => None,
        }
    }

    /// Every profile stored.
    pub fn profiles(&self) -> Vec<Profile> {
        self.objects.keys().filter_map(|id| self.stored_profile(id)).collect()
    }

    /// The profile an identity leads to at `now`, following a tombstone as readers do.
    pub fn profile_of(&self, id: &Identity, now: Millis) -> Option<Profile> {
        let mut pid = self.kv_text(&id.index_key(), now)?;
        for _ in 0..=MAX_HOPS {
            let storage = self.objects.get(&pid)?;
            match storage.get(&Key::MovedTo) {
                Some(Value::Text(to)) => pid = to.clone(),
                _ => return self.stored_profile(&pid),
            }
        }
        None
    }

    /// Wakes every object whose alarm is at or before `limit`, earliest first, calling `after` after each.
    pub fn run_alarms(&mut self, config: &Config, limit: Millis, mut after: impl FnMut(&mut World, Millis)) {
        for _ in 0..MAX_ALARMS {
            let next = self.alarms.iter().map(|(id, t)| (*t, id.clone())).min();
            let Some((t, id)) = next.filter(|(t, _)| *t <= limit) else { return };
            self.wake(config, &id, t);
            after(self, t);
        }
        panic!("more than {MAX_ALARMS} alarms");
    }
}

/// Alarms fired in one run at most: a runaway schedule fails the case instead of hanging it.
pub const MAX_ALARMS: usize = 20_000;

/// With `EDGECDP_TRACE` set, prints what an object decided (each effect shortened), to debug a failing sequence.
fn trace(what: &str, id: &str, effects: &Effects, now: Millis) {
    if std::env::var_os("EDGECDP_TRACE").is_some() {
        let shown: Vec<String> = effects.effects.iter().map(|e| format!("{e:?}").chars().take(60).collect()).collect();
        eprintln!("{what} {now} {id}: {shown:?}");
    }
}

/// Plays the events in order, one request each (`World::write_line`), all at `now`, and answers every profile
/// stored.
pub fn play(config: &Config, events_jsonl: &str, now: Millis) -> Vec<Profile> {
    let mut world = World::default();
    for line in events_jsonl.lines().filter(|l| !l.trim().is_empty()) {
        world.write_line(config, line, &RequestSignals::default(), now);
    }
    world.profiles()
}
