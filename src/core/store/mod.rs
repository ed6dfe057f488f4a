//! The stored binary formats: a version byte, then bincode. Every byte string that leaves the core for
//! storage or for the hop to the profile writer goes through here, so the codec can be replaced (bincode is
//! unmaintained, RUSTSEC-2025-0141) by adding a version, without touching the rest.

use crate::core::base::sort;
use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyAnswer, ApplyRequest};
use crate::core::model::audience::Audiences;
use crate::core::model::behaviour::Behaviour;
use crate::core::model::contact::Contacts;
use crate::core::model::history::EventRecord;
use crate::core::model::journey::Journeys;
use crate::core::model::profile::{MergeRecord, Profile};
use crate::core::model::shown::Outcome;
use crate::core::model::shown::Shown;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::VecDeque;

/// Version 1 of the stored profile: bincode 2 (standard configuration, serde) of `v1::Profile`. Still read.
pub const PROFILE_V1: u8 = 1;
/// Version 2: `Profile` with message ids in its history, daily aggregates, computed traits, and merge and
/// refusal records. Still read.
pub const PROFILE_V2: u8 = 2;
/// Version 3: version 2's body followed by what the profile was shown (`Shown`: impressions and
/// experiment assignments). Appending keeps version 2 readable with no frozen copy of its types. A profile
/// kept inside a merge record (for a split) is stored without its `Shown`.
pub const PROFILE_V3: u8 = 3;
/// Version 4: version 3's body followed by the profile's audiences (`Audiences`: membership, transitions, the
/// next change by time). A profile inside a merge record is stored without them. Still read.
pub const PROFILE_V4: u8 = 4;
/// Version 5: version 4's body followed by the profile's journeys (`Journeys`: running instances,
/// the outbox of sends, the ledger the pressure budget counts, ended instances). A profile inside a merge record
/// is stored without them.
pub const PROFILE_V5: u8 = 5;
/// Version 6: version 5's body followed by the profile's proven contact points (`Contacts`). A
/// profile inside a merge record is stored without them, so a split gives the absorbed profile back with none
/// proven: its journeys then send to nobody until proof comes again, never to an address nobody proved. Still read.
pub const PROFILE_V6: u8 = 6;
/// Version 7, written now: version 6's body followed by what predictions read (`Behaviour`: purchase days,
/// channel sends and responses). A profile inside a merge record is stored without it: its purchases and
/// responses are the survivor's, and a split leaves them there (the profile split off starts its own again).
pub const PROFILE_V7: u8 = 7;
/// Version 1 of the writer request (no longer read).
pub const APPLY_V1: u8 = 1;
/// Version 2 of the writer request: `ApplyRequest` with the links of profiles to absorb (no longer read).
pub const APPLY_V2: u8 = 2;
/// Version 3: with the impressions to record. The Worker and its Durable Objects deploy together, so older
/// versions are no longer read.
pub const APPLY_V3: u8 = 3;
/// Version 4: the request's signals carry the visitor's offset from UTC (journeys' local time). No longer read.
pub const APPLY_V4: u8 = 4;
/// Version 5: each event carries the contact points its identity token proved and whether its source's contact
/// points are believed (`model::contact`). No longer read.
pub const APPLY_V5: u8 = 5;
/// Version 6: each event says whether it was imported, and the identity that routes an imported row that has
/// neither a user id nor an anonymous id (`wire::imports`). No longer read.
pub const APPLY_V6: u8 = 6;
/// Version 7: each event carries what the sender said beside it for the export (`Event::sent`: `sentAt`, the
/// uncorrected timestamp, the context). No longer read.
pub const APPLY_V7: u8 = 7;
/// Version 8: the request's signals carry what its TC string says (`RequestSignals::tcf`), and each event its own
/// decoded TC string (`Event::tcf`).
pub const APPLY_V8: u8 = 8;
/// Version 1 of a device's decision rules: bincode of `Config::for_device` (serde skips the edge-only fields).
/// No longer read.
pub const RULES_V1: u8 = 1;
/// Version 2: each template placeholder carries its HTML context (`scanner::HtmlContext`), which decides how the
/// device escapes it. No longer written or read: a device now runs its visitor's program (`engine::program`),
/// with its own version byte, and gets neither rules nor a profile.
pub const RULES_V2: u8 = 2;
/// Version 1 of a profile writer's answer to an apply (`ApplyAnswer`), in bincode like the request it answers.
pub const APPLY_ANSWER_V1: u8 = 1;
/// Version 1 of the outcomes a profile's writer sends an experiment's object (`encode_outcomes`).
pub const OUTCOMES_V1: u8 = 1;
/// Version 1 of a profile summary (`summary::encode`). No longer read.
pub const SUMMARY_V1: u8 = 1;
/// Version 2: with what predictions read (`Behaviour`). No longer written or read (see `RULES_V2`).
pub const SUMMARY_V2: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub enum CodecError {
    Empty,
    UnknownVersion(u8),
    Corrupt(String),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Empty => write!(f, "stored value is empty"),
            CodecError::UnknownVersion(v) => write!(f, "stored format version {v} is not known to this build"),
            CodecError::Corrupt(e) => write!(f, "stored value is corrupt: {e}"),
        }
    }
}

pub(crate) fn encode<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    // Encoding into a Vec cannot fail for these types: they hold no maps with non-string keys that bincode
    // rejects, and no sequences of unknown length.
    match bincode::serde::encode_to_vec(value, bincode::config::standard()) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        Err(_) => unreachable!("bincode encoding into memory does not fail for core types"),
    }
    out
}

pub(crate) fn decode<T: DeserializeOwned>(expected: u8, bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != expected {
        return Err(CodecError::UnknownVersion(version));
    }
    decode_body(body)
}

fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map_err(|e| CodecError::Corrupt(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Corrupt(format!("{} trailing bytes", body.len() - used)));
    }
    Ok(value)
}

pub fn encode_profile(p: &Profile) -> Vec<u8> {
    encode(PROFILE_V7, &(p, &p.shown, &p.audiences, &p.journeys, &p.contacts, &p.behaviour))
}

/// The largest encoded profile stored. A Durable Object's storage holds at most 128 KiB per value; this leaves
/// room for the version byte and growth between writes.
pub const MAX_PROFILE_BYTES: usize = 112 * 1024;

/// Encodes a profile within `MAX_PROFILE_BYTES`. A profile over it sheds, in this order and only as much as
/// needed: what splits of older merges need, then the oldest recent events, remembered message ids and quiet
/// aggregate series, then old merge and refusal records. Counts, traits and identities have budgets of their own
/// (`profile::budget`) that keep them inside the bound; only a merge of two full profiles can pass it, and then
/// the oldest traits and the least counted event names go last. Identities and consent are never shed.
pub fn encode_profile_bounded(p: &Profile) -> Vec<u8> {
    let bytes = encode_profile(p);
    if bytes.len() <= MAX_PROFILE_BYTES {
        return bytes;
    }
    let mut p = p.clone();
    for i in 0..p.merges.len() {
        if p.merges[i].absorbed.take().is_some() {
            let bytes = encode_profile(&p);
            if bytes.len() <= MAX_PROFILE_BYTES {
                return bytes;
            }
        }
    }
    loop {
        let shed = |n: usize| (n / 10).max(1);
        for _ in 0..shed(p.recent.len()) {
            p.recent.pop_front();
        }
        for _ in 0..shed(p.seen_message_ids.len()) {
            p.seen_message_ids.pop_front();
        }
        let quiet: Vec<String> = {
            let mut keys: Vec<(i64, &String)> =
                p.aggregates.series.iter().map(|(k, s)| (s.last().map_or(i64::MIN, |d| d.day), k)).collect();
            sort::sort(&mut keys);
            keys.iter().take(shed(keys.len())).map(|(_, k)| (*k).clone()).collect()
        };
        for k in quiet {
            p.aggregates.series.remove(&k);
        }
        let drop = shed(p.merges.len()).min(p.merges.len());
        p.merges.drain(..drop);
        let drop = shed(p.refused.len()).min(p.refused.len());
        p.refused.drain(..drop);
        let bytes = encode_profile(&p);
        let nothing_left = p.recent.is_empty()
            && p.seen_message_ids.is_empty()
            && p.aggregates.series.is_empty()
            && p.merges.is_empty()
            && p.refused.is_empty();
        if bytes.len() <= MAX_PROFILE_BYTES {
            return bytes;
        }
        if nothing_left {
            break;
        }
    }
    // Only a merge of two profiles each full to its budget (`profile::budget`) gets here: the oldest traits go,
    // then the least counted event names, a tenth at a time, until the profile fits.
    loop {
        let shed = |n: usize| (n / 10).max(1);
        let mut by_age: Vec<(i64, String)> = p.traits.iter().map(|(k, t)| (t.at, k.clone())).collect();
        sort::sort(&mut by_age);
        for (_, k) in by_age.iter().take(shed(by_age.len())) {
            p.traits.remove(k);
        }
        if by_age.is_empty() {
            let mut by_count: Vec<(u64, String)> = p.counts.iter().map(|(k, n)| (*n, k.clone())).collect();
            sort::sort(&mut by_count);
            for (_, k) in by_count.iter().take(shed(by_count.len())) {
                p.counts.remove(k);
            }
        }
        let bytes = encode_profile(&p);
        if bytes.len() <= MAX_PROFILE_BYTES || (p.traits.is_empty() && p.counts.is_empty()) {
            return bytes;
        }
    }
}

/// Reads any known version; older ones are migrated to the current `Profile`.
pub fn decode_profile(bytes: &[u8]) -> Result<Profile, CodecError> {
    match bytes.first() {
        Some(&PROFILE_V1) => decode_body::<v1::Profile>(&bytes[1..]).map(v1::Profile::migrate),
        Some(&PROFILE_V2) => decode(PROFILE_V2, bytes),
        Some(&PROFILE_V3) => {
            let (mut p, shown): (Profile, Shown) = decode(PROFILE_V3, bytes)?;
            p.shown = shown;
            Ok(p)
        }
        Some(&PROFILE_V4) => {
            let (mut p, shown, audiences): (Profile, Shown, Audiences) = decode(PROFILE_V4, bytes)?;
            p.shown = shown;
            p.audiences = audiences;
            Ok(p)
        }
        Some(&PROFILE_V5) => {
            let (mut p, shown, audiences, journeys): (Profile, Shown, Audiences, Journeys) = decode(PROFILE_V5, bytes)?;
            p.shown = shown;
            p.audiences = audiences;
            p.journeys = journeys;
            Ok(p)
        }
        Some(&PROFILE_V6) => {
            let (mut p, shown, audiences, journeys, contacts): (Profile, Shown, Audiences, Journeys, Contacts) =
                decode(PROFILE_V6, bytes)?;
            p.shown = shown;
            p.audiences = audiences;
            p.journeys = journeys;
            p.contacts = contacts;
            Ok(p)
        }
        _ => {
            type V7 = (Profile, Shown, Audiences, Journeys, Contacts, Behaviour);
            let (mut p, shown, audiences, journeys, contacts, behaviour): V7 = decode(PROFILE_V7, bytes)?;
            p.shown = shown;
            p.audiences = audiences;
            p.journeys = journeys;
            p.contacts = contacts;
            p.behaviour = behaviour;
            Ok(p)
        }
    }
}

/// A profile's snapshot in KV: `SNAPSHOT_V1`, the time it was written (milliseconds, 8 bytes little-endian), then
/// the profile as `encode_profile` writes it. Readers use the time to tell a snapshot that may have a newer write
/// pending (its writer coalesces KV writes to one a second) from a settled one. A value without the marker is a
/// snapshot from before it: the profile alone, time unknown.
pub const SNAPSHOT_V1: u8 = b'S';

pub fn encode_snapshot(profile_bytes: &[u8], written_at: Millis) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + profile_bytes.len());
    out.push(SNAPSHOT_V1);
    out.extend_from_slice(&written_at.to_le_bytes());
    out.extend_from_slice(profile_bytes);
    out
}

/// The snapshot of `p` (`encode_snapshot`, in the same format: readers decode it as any stored profile) without
/// what only its writer uses: the message ids it remembers (each event counted once), each recent event's own id
/// (histories are united by it when profiles merge), and its merge records (what a split needs). Those were three
/// quarters of an active profile's bytes and a third of its decoding (BENCHMARKS.md), which every decision paid.
/// Its readers (decisions, a page's visitor, the admin's read and preview) use none of them; an access request
/// asks the object for the whole profile. Taken from `p` as it stands: a profile over `MAX_PROFILE_BYTES` (whose
/// stored form shed some history) keeps that history here until its next write.
pub fn encode_reader_snapshot(p: &Profile, written_at: Millis) -> Vec<u8> {
    let view = (ForReaders(p), &p.shown, &p.audiences, &p.journeys, &p.contacts, &p.behaviour);
    encode_snapshot(&encode(PROFILE_V7, &view), written_at)
}

/// `Profile` as its derived serde form writes it (the fields in order: a reader decodes it as a `Profile`), with
/// the writer's own parts empty. A field added to `Profile` and not here fails the round-trip test.
struct ForReaders<'a>(&'a Profile);

impl Serialize for ForReaders<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut out = s.serialize_struct("Profile", 13)?;
        out.serialize_field("id", &p.id)?;
        out.serialize_field("identities", &p.identities)?;
        out.serialize_field("traits", &p.traits)?;
        out.serialize_field("counts", &p.counts)?;
        out.serialize_field("consent", &p.consent)?;
        out.serialize_field("first_seen", &p.first_seen)?;
        out.serialize_field("last_seen", &p.last_seen)?;
        out.serialize_field("recent", &WithoutIds(&p.recent))?;
        out.serialize_field("seen_message_ids", &VecDeque::<String>::new())?;
        out.serialize_field("aggregates", &p.aggregates)?;
        out.serialize_field("computed", &p.computed)?;
        out.serialize_field("merges", &Vec::<MergeRecord>::new())?;
        out.serialize_field("refused", &p.refused)?;
        out.end()
    }
}

/// Recent events as `EventRecord` writes them (at, name, message id, properties), each with an empty id.
struct WithoutIds<'a>(&'a VecDeque<EventRecord>);

impl Serialize for WithoutIds<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            out.serialize_element(&(r.at, &r.name, "", &r.props))?;
        }
        out.end()
    }
}

/// The profile in a snapshot, and when it was written (`None` for snapshots from before the time was kept).
pub fn decode_snapshot(bytes: &[u8]) -> Result<(Profile, Option<Millis>), CodecError> {
    match bytes.split_first() {
        Some((&SNAPSHOT_V1, rest)) if rest.len() >= 8 => {
            let (at, profile) = rest.split_at(8);
            let at = Millis::from_le_bytes(at.try_into().map_err(|_| CodecError::Corrupt("snapshot time".into()))?);
            Ok((decode_profile(profile)?, Some(at)))
        }
        Some((&SNAPSHOT_V1, _)) => Err(CodecError::Corrupt("snapshot shorter than its time".into())),
        _ => decode_profile(bytes).map(|p| (p, None)),
    }
}

/// The version-1 layout, frozen: these types must not change, or version-1 bytes stop loading. Types that
/// version 2 kept as they were (identities, trait entries, consent) are shared.
mod v1 {
    use crate::core::base::time::Millis;
    use crate::core::base::value::Value;
    use crate::core::model::aggregate::Aggregates;
    use crate::core::model::consent::ConsentState;
    use crate::core::model::identity::Identity;
    use crate::core::model::profile::{Computed, TraitEntry, SESSION_GAP};
    use serde::Deserialize;
    use std::collections::{BTreeMap, VecDeque};

    #[derive(Deserialize)]
    pub struct EventRecord {
        pub at: Millis,
        pub name: String,
        pub props: BTreeMap<String, Value>,
    }

    #[derive(Deserialize)]
    pub struct Profile {
        pub id: String,
        pub identities: Vec<Identity>,
        pub traits: BTreeMap<String, TraitEntry>,
        pub counts: BTreeMap<String, u64>,
        pub consent: ConsentState,
        pub first_seen: Millis,
        pub last_seen: Millis,
        pub recent: VecDeque<EventRecord>,
        pub seen_message_ids: VecDeque<String>,
    }

    impl Profile {
        /// Version 1 kept no message ids in its history, no aggregates and no computed traits; they are rebuilt
        /// from the recent history it did keep (exact for what it held, which is all a v1 profile knew).
        pub fn migrate(self) -> crate::core::model::profile::Profile {
            let mut p = crate::core::model::profile::Profile::new(self.id, self.first_seen);
            p.identities = self.identities;
            p.traits = self.traits;
            p.counts = self.counts;
            p.consent = self.consent;
            p.first_seen = self.first_seen;
            p.last_seen = self.last_seen;
            p.seen_message_ids = self.seen_message_ids;
            let mut aggregates = Aggregates::default();
            let mut computed = Computed::default();
            let mut previous: Option<Millis> = None;
            for r in self.recent {
                let record = crate::core::model::history::EventRecord {
                    at: r.at,
                    name: r.name,
                    message_id: String::new(),
                    props: r.props,
                };
                aggregates.record(&record);
                if previous.is_none_or(|prev| record.at - prev > SESSION_GAP) {
                    computed.sessions += 1;
                }
                previous = Some(record.at);
                p.recent.push_back(record);
            }
            p.aggregates = aggregates;
            p.computed = computed;
            p
        }
    }
}

pub fn encode_apply(r: &ApplyRequest) -> Vec<u8> {
    encode(APPLY_V8, r)
}

pub fn decode_apply(bytes: &[u8]) -> Result<ApplyRequest, CodecError> {
    decode(APPLY_V8, bytes)
}

pub fn encode_apply_answer(a: &ApplyAnswer) -> Vec<u8> {
    encode(APPLY_ANSWER_V1, a)
}

pub fn decode_apply_answer(bytes: &[u8]) -> Result<ApplyAnswer, CodecError> {
    decode(APPLY_ANSWER_V1, bytes)
}

/// The experiment outcomes of one apply, as a profile's writer sends them to the experiment's object.
pub fn encode_outcomes(outcomes: &[&Outcome]) -> Vec<u8> {
    encode(OUTCOMES_V1, &outcomes)
}

pub fn decode_outcomes(bytes: &[u8]) -> Result<Vec<Outcome>, CodecError> {
    decode(OUTCOMES_V1, bytes)
}

/// `config:latest`'s value (`edge::kv`): the latest configuration version's number and text, which a new isolate
/// reads beside `config:current` in one round trip.
pub fn encode_latest_config(version: u64, text: &str) -> String {
    format!("{version}\n{text}")
}

/// The text in a `config:latest` value when it is version `version`'s; `None` for another version (the key is
/// written after `config:current`, so it may lag) or a value that is not one.
pub fn latest_config_text(latest: &str, version: u64) -> Option<&str> {
    let (v, text) = latest.split_once('\n')?;
    (v.parse() == Ok(version)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::contact::ProvenBy;

    #[test]
    fn snapshots_carry_their_time_and_older_ones_still_read() {
        let mut p = Profile::new("p1".into(), 5);
        p.last_seen = 7;
        let bytes = encode_profile(&p);
        let (back, at) = decode_snapshot(&encode_snapshot(&bytes, 1_795_000_000_123)).unwrap();
        assert_eq!((back, at), (p.clone(), Some(1_795_000_000_123)));
        assert_eq!(decode_snapshot(&bytes).unwrap(), (p, None));
        assert!(decode_snapshot(&[SNAPSHOT_V1, 1, 2]).is_err());
    }
    use crate::core::engine::apply::apply_events;
    use crate::core::rules::Config;
    use crate::core::wire::events::parse_batch;

    fn sample() -> Profile {
        let body = r#"{"batch":[{"type":"identify","anonymousId":"a","userId":"u","traits":{"n":1.5,"tags":["x"],"o":{"k":null}},
            "context":{"consent":{"categoryPreferences":{"analytics":true}}}},
            {"type":"track","event":"Order Completed","anonymousId":"a","properties":{"revenue":30}}]}"#;
        let events = parse_batch(body.as_bytes(), 1_000).unwrap().events;
        let req = ApplyRequest { profile_id: "p".into(), events, ..ApplyRequest::default() };
        apply_events(None, req, &Config::default()).0.unwrap()
    }

    /// `sample`, with every part a version added.
    fn rich() -> Profile {
        let mut p = sample();
        p.shown.record(&[crate::core::model::shown::Impression {
            block: "b".into(),
            variant: "a".into(),
            experiment: Some("x".into()),
            at: 5,
        }]);
        p.audiences.record("vip", true, 7, crate::core::model::audience::Cause::Event);
        p.audiences.due = Some(99);
        p.journeys.seq = 3;
        p.journeys.utc_offset = Some(60);
        p.contacts.prove("email", &crate::core::base::value::Value::String("a@b.c".into()), 8, ProvenBy::Token);
        p.behaviour.purchases.record(9, 12.5);
        p.behaviour.channel("email").unwrap().record_send(10);
        p
    }

    #[test]
    fn profile_round_trips_with_a_version_byte() {
        let p = rich();
        let bytes = encode_profile(&p);
        assert_eq!(bytes[0], PROFILE_V7);
        let back = decode_profile(&bytes).unwrap();
        assert_eq!(back.shown.experiments["x"].variant, "a");
        assert_eq!(back, p);
        // Version 3 (no audiences) still reads: the profile has none until its writer evaluates them.
        let v3 = encode(PROFILE_V3, &(&p, &p.shown));
        let old = decode_profile(&v3).unwrap();
        assert_eq!(old.shown, p.shown);
        assert_eq!(old.audiences, Audiences::default());
        // Version 4 (no journeys) still reads: the profile is on none until an event or a transition starts one.
        let v4 = encode(PROFILE_V4, &(&p, &p.shown, &p.audiences));
        let old = decode_profile(&v4).unwrap();
        assert_eq!(old.audiences, p.audiences);
        assert_eq!(old.journeys, Journeys::default());
        // Version 5 (no proven contact points) still reads: nothing it holds counts as proven.
        let v5 = encode(PROFILE_V5, &(&p, &p.shown, &p.audiences, &p.journeys));
        let old = decode_profile(&v5).unwrap();
        assert_eq!(old.journeys, p.journeys);
        assert_eq!(old.contacts, Contacts::default());
        // Version 6 (no purchases nor responses) still reads: predictions start from what comes next.
        let v6 = encode(PROFILE_V6, &(&p, &p.shown, &p.audiences, &p.journeys, &p.contacts));
        let old = decode_profile(&v6).unwrap();
        assert_eq!(old.contacts, p.contacts);
        assert_eq!(old.behaviour, Behaviour::default());
    }

    #[test]
    fn a_reader_s_snapshot_is_the_profile_without_its_writer_s_parts() {
        use crate::core::model::identity::Identity;
        use crate::core::model::profile::RefusedIdentity;
        let mut p = rich();
        let absorbed = Profile::new("p_old".into(), 2);
        p.merges.push(MergeRecord {
            at: 3,
            message_id: "m-merge".into(),
            absorbed_id: "p_old".into(),
            identities: vec![Identity::new("anonymous_id", "old")],
            absorbed: Some(Box::new(absorbed)),
            replaced_traits: Default::default(),
            replaced_grants: Default::default(),
            first_seen_before: 1,
            last_seen_before: 2,
        });
        let refused = Identity::new("user_id", "other");
        p.refused.push(RefusedIdentity { at: 4, identity: refused, reason: "limit".into(), message_id: "m-r".into() });
        assert!(!p.seen_message_ids.is_empty() && p.recent.iter().all(|r| !r.message_id.is_empty()));
        assert!(!p.aggregates.series.is_empty() && !p.traits.is_empty() && !p.counts.is_empty());
        let (back, at) = decode_snapshot(&encode_reader_snapshot(&p, 1_795_000_000_123)).unwrap();
        assert_eq!(at, Some(1_795_000_000_123));
        let mut want = p.clone();
        want.seen_message_ids.clear();
        want.merges.clear();
        for r in &mut want.recent {
            r.message_id.clear();
        }
        assert_eq!(back, want, "everything else, the refusals and the parts after the profile included");
        assert!(encode_reader_snapshot(&p, 0).len() < encode_snapshot(&encode_profile(&p), 0).len());
    }

    #[test]
    fn a_version_2_profile_still_loads() {
        // Version 2 is version 3 without the appended `Shown`.
        let p = sample();
        let v2 = encode(PROFILE_V2, &p);
        // Everything but what came after it (the sample's order is a purchase predictions read, from version 7).
        assert_eq!(decode_profile(&v2).unwrap(), Profile { behaviour: Behaviour::default(), ..p });
    }

    #[test]
    fn unknown_versions_and_damage_are_errors_not_panics() {
        let mut bytes = encode_profile(&sample());
        assert_eq!(decode_profile(&[]), Err(CodecError::Empty));
        bytes[0] = 99;
        assert_eq!(decode_profile(&bytes), Err(CodecError::UnknownVersion(99)));
        bytes[0] = PROFILE_V3;
        for cut in [1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(matches!(decode_profile(&bytes[..cut]), Err(CodecError::Corrupt(_))), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode_profile(&longer), Err(CodecError::Corrupt(_))));
    }

    #[test]
    fn a_profile_written_by_version_1_loads_in_version_2() {
        // Bytes written by the version-1 codec (see the commit that added the file).
        let bytes = include_bytes!("../../../tests/fixtures/profile-v1.bin");
        assert_eq!(bytes[0], PROFILE_V1);
        let p = decode_profile(bytes).expect("version 1 loads");
        assert_eq!(p.id, "p_v1fixture");
        let ids: Vec<String> = p.identities.iter().map(|i| i.key()).collect();
        assert_eq!(ids, vec!["anonymous_id:v1-visitor", "user_id:v1-user"]);
        assert_eq!(p.counts.get("Product Viewed"), Some(&1));
        assert_eq!(p.counts.get("identify"), Some(&1));
        assert!(
            matches!(&p.traits["email"].value, crate::core::base::value::Value::String(h) if h.starts_with("sha256:"))
        );
        assert!(!p.consent.grants[&crate::core::model::consent::Purpose::Advertising].granted, "GPC refusal kept");
        assert_eq!(p.recent.len(), 3);
        assert_eq!(p.seen_message_ids.iter().collect::<Vec<_>>(), vec!["v1-m1", "v1-m2", "v1-m3"]);
        // Rebuilt from the history: one session (three events within minutes), daily counts.
        assert_eq!(p.computed.sessions, 1);
        let day = crate::core::model::aggregate::day_of(p.last_seen);
        assert_eq!(p.aggregates.count("Product Viewed|category=bags", day, day), 1);
        // And it is written back in the current version.
        let again = encode_profile(&p);
        assert_eq!(again[0], PROFILE_V7);
        assert_eq!(decode_profile(&again).unwrap(), p);
    }

    #[test]
    fn an_oversized_profile_sheds_history_but_keeps_what_it_knows() {
        let mut p = sample();
        for i in 0..4_000 {
            p.seen_message_ids.push_back(format!("message-{i:08}-{}", "x".repeat(40)));
        }
        for i in 0..200 {
            p.traits.insert(
                format!("t{i}"),
                crate::core::model::profile::TraitEntry { value: crate::core::base::value::Value::Number(1.0), at: 0 },
            );
        }
        assert!(encode_profile(&p).len() > MAX_PROFILE_BYTES);
        let bytes = encode_profile_bounded(&p);
        assert!(bytes.len() <= MAX_PROFILE_BYTES, "{} bytes", bytes.len());
        let back = decode_profile(&bytes).unwrap();
        assert_eq!(back.traits, p.traits);
        assert_eq!(back.counts, p.counts);
        assert_eq!(back.identities, p.identities);
        assert_eq!(back.consent, p.consent);
        assert!(back.seen_message_ids.len() < p.seen_message_ids.len());
        assert_eq!(back.seen_message_ids.back(), p.seen_message_ids.back(), "the newest are kept");
        let small = sample();
        assert_eq!(encode_profile_bounded(&small), encode_profile(&small), "a profile within the bound is untouched");
    }

    #[test]
    fn a_writer_s_answer_round_trips_and_is_refused_in_another_version() {
        let answer = ApplyAnswer {
            stored: 2,
            duplicates: 1,
            over_budget: vec![("m1".into(), "traits.x".into())],
            erased: false,
            ..ApplyAnswer::default()
        };
        let bytes = encode_apply_answer(&answer);
        assert_eq!(bytes[0], APPLY_ANSWER_V1);
        assert_eq!(decode_apply_answer(&bytes), Ok(answer));
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(decode_apply_answer(&other).is_err());
    }

    #[test]
    fn even_a_merge_of_two_full_profiles_is_stored_within_the_bound() {
        use crate::core::base::value::Value;
        use crate::core::model::profile::TraitEntry;
        let mut p = sample();
        // Far more traits and counted names than a profile's budget lets in (twice the budgets still fit), and
        // refusal records with long values: the last resort must still bring it within the bound.
        for i in 0..40 {
            p.traits.insert(format!("t{i:02}"), TraitEntry { value: Value::String("v".repeat(3_000)), at: i });
        }
        for i in 0..300u64 {
            p.counts.insert(format!("{i:03}{}", "n".repeat(100)), 1000 - i);
        }
        for i in 0..50 {
            p.refused.push(crate::core::model::profile::RefusedIdentity {
                at: 0,
                identity: crate::core::model::identity::Identity::new("email", &format!("{i}{}", "e".repeat(2_000))),
                reason: "r".into(),
                message_id: "m".into(),
            });
        }
        assert!(encode_profile(&p).len() > 2 * MAX_PROFILE_BYTES, "{}", encode_profile(&p).len());
        let back = decode_profile(&encode_profile_bounded(&p)).unwrap();
        assert!(encode_profile(&back).len() <= MAX_PROFILE_BYTES);
        assert_eq!(back.identities, p.identities, "identities are never shed");
        assert!(back.traits.contains_key("t39") && !back.traits.contains_key("t00"), "the newest traits stay");
        assert!(back.counts.contains_key(&format!("000{}", "n".repeat(100))), "the most counted names stay");
    }

    #[test]
    fn outcomes_travel_in_their_own_versioned_format() {
        let o = Outcome::Withdrawn { experiment: "e".into(), variant: "a".into(), converted: true };
        let bytes = encode_outcomes(&[&o]);
        assert_eq!(bytes[0], OUTCOMES_V1);
        assert_eq!(decode_outcomes(&bytes), Ok(vec![o]));
        assert!(decode_outcomes(&[9, 0]).is_err());
    }

    /// A new isolate takes `config:latest`'s text only for the version `config:current` names.
    #[test]
    fn the_latest_text_serves_only_its_own_version() {
        let stored = encode_latest_config(7, "{\"a\":\n1}");
        let rows: [(&str, u64, Option<&str>); 6] = [
            (&stored, 7, Some("{\"a\":\n1}")),
            (&stored, 8, None),
            (&stored, 6, None),
            ("7", 7, None),
            ("x\n{}", 7, None),
            ("07\n{}", 7, Some("{}")),
        ];
        for (latest, version, want) in rows {
            assert_eq!(latest_config_text(latest, version), want, "{latest:?} for v{version}");
        }
    }
}
