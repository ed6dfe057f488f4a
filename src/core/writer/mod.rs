//! The profile writer as a state machine (after quinn-proto's `Connection`): `Writer` holds what a profile's
//! Durable Object stores, `handle(action, config, now)` answers with what to do (`Effects`: storage puts and
//! deletes, KV writes already timed to KV's one write a second per key, messages for the audience index and the
//! delivery queue, calls to other objects, the reply) and the instant of the object's one alarm. The object
//! carries the effects out in the order given and nothing else; the native runners (`tests/common`) carry out
//! the same effects on maps, in simulated time.
//!
//! KV takes at most one write a second per key, so the snapshot is written at once only when the last one is a
//! second old; otherwise it is due (`Key::SnapshotDue`) and the alarm writes it. Index entries carry an expiration
//! a day beyond the profile's own, refreshed about once a day (`Key::IndexDue`). A merge whose absorbed profiles'
//! keys are less than a second old leaves their repointing for the alarm (`Key::MergePending`). A tombstone
//! (`Key::MovedTo`) redirects for a day; an erasure leaves only its time (`Key::ErasedAt`) for a minute, during
//! which applies are refused, so that events planned before it cannot bring the person back.

pub mod client;
pub mod effects;
mod export;
pub mod protocol;
pub mod resolve;
pub mod state;

use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyAnswer, ApplyRequest, Link};
use crate::core::engine::audiences::{catch_up, track};
use crate::core::engine::journeys::{self, mark_enqueued, to_enqueue, Claim};
use crate::core::engine::merge::{pending_links, split, SplitError};
use crate::core::engine::write::{refresh, write};
use crate::core::model::audience::{Cause, Transition};
use crate::core::model::identity::Identity;
use crate::core::model::profile::Profile;
use crate::core::rules::Config;
use crate::core::store::{decode_profile, encode_profile, encode_profile_bounded, encode_reader_snapshot, CodecError};
use crate::core::wire::audiences::{main_identity, IndexMessage};
use crate::core::wire::deliveries::{body, DeliveryMessage};
use crate::core::wire::export::{absorbed_user_row, audience_change_row};
use crate::core::wire::journeys::JourneyState;
use crate::core::wire::predictions::Published;
use effects::{Action, Effect, Effects, Handed, IndexWrite};
use protocol::{ClaimAnswer, Claimed, ClaimedSend, Reply, Request};
use state::{journey_view, Due, Key, Pending, Stored, Value};

/// At most one KV write a second per key.
pub const KV_INTERVAL_MS: Millis = 1_000;
/// A snapshot younger than this may have a newer write due: one interval, and as long again for a late alarm.
pub const FRESH_MS: Millis = 2 * KV_INTERVAL_MS;
/// How long a tombstone redirects before it goes.
pub const TOMBSTONE_MS: Millis = 24 * 60 * 60 * 1000;
/// How long an erasure refuses applies.
pub const ERASED_GRACE_MS: Millis = 60 * 1000;
/// KV refuses expirations less than 60 seconds away.
const MIN_KV_TTL_SECONDS: i64 = 60;
/// KV entries of an anonymous profile expire this long after the profile itself would.
const KV_EXPIRATION_SLACK_SECONDS: i64 = 24 * 60 * 60;
/// The prefix of profile snapshot keys in KV.
pub const PROFILE_PREFIX: &str = "profile:";

/// The KV key of a profile's snapshot.
pub fn profile_key(profile_id: &str) -> String {
    [PROFILE_PREFIX, profile_id].concat()
}

/// Why an action could not run: what the object stores does not decode. The object answers 500 and changes
/// nothing.
pub type Failure = CodecError;

/// One profile object's state and its decisions.
#[derive(Debug, Default)]
pub struct Writer {
    stored: Stored,
    /// The stored profile, decoded when an action first needs it (and taken by the action that changes it).
    decoded: Option<Profile>,
    /// What the alarm needs of the profile last stored, kept so that it is neither cloned nor decoded again.
    due: Option<Due>,
    out: Vec<Effect>,
    changed: bool,
    /// The export's rows of this action (`export`), sent after everything else it does.
    export: Vec<crate::core::wire::export::Row>,
}

impl Writer {
    pub fn new(stored: Stored) -> Writer {
        Writer { stored, ..Writer::default() }
    }

    pub fn stored(&self) -> &Stored {
        &self.stored
    }

    /// The profiles an apply must have handed over before it runs (`merge::pending_links`): none for a tombstone
    /// or moments after an erasure, which answer without them.
    pub fn handovers(&mut self, request: &ApplyRequest, now: Millis) -> Result<Vec<Link>, Failure> {
        if self.stored.moved_to.is_some() || self.recently_erased(now) {
            return Ok(Vec::new());
        }
        let current = self.current()?;
        Ok(pending_links(current, request).into_iter().cloned().collect())
    }

    /// When the object next needs its alarm: a tombstone's end, an erasure's grace, or for a profile the earliest
    /// of its expiry, its audiences' and journeys' next change by time alone, and the KV writes that are due.
    pub fn next_wake(&mut self, config: &Config) -> Result<Option<Millis>, Failure> {
        if self.stored.moved_to.is_some() {
            return Ok(self.stored.moved_at.map(|t| t + TOMBSTONE_MS));
        }
        let due = match self.due {
            Some(due) => due,
            None => match self.current()? {
                Some(p) => Due::of(p),
                None => return Ok(self.stored.erased_at.map(|t| t + ERASED_GRACE_MS)),
            },
        };
        let retention = i64::from(config.retention_anonymous_days) * crate::core::base::time::DAY;
        let expires_at = due.anonymous_since.map(|t| t.saturating_add(retention));
        let wake = [expires_at, due.audiences, due.journeys, self.stored.snapshot_due, self.stored.index_due];
        Ok(wake.into_iter().flatten().min())
    }

    /// Decides one action at `now`.
    pub fn handle(&mut self, action: Action, config: &Config, now: Millis) -> Result<Effects, Failure> {
        self.out.clear();
        self.changed = false;
        let is_alarm = action == Action::Alarm;
        let fresh = self.stored == Stored::default(); // it stored nothing, so it has no alarm to delete
        let reply = self.decide(action, config, now)?;
        self.flush_export(now);
        let alarm = (self.changed || is_alarm).then(|| self.next_wake(config)).transpose()?;
        let alarm = alarm.filter(|wake| wake.is_some() || !fresh);
        Ok(Effects { effects: std::mem::take(&mut self.out), reply, alarm })
    }

    fn decide(&mut self, action: Action, config: &Config, now: Millis) -> Result<Reply, Failure> {
        let request = match action {
            Action::Alarm => return self.alarm(config, now).map(|()| Reply::Forgotten(false)),
            Action::Apply { request, handed } => {
                if let Some(to) = &self.stored.moved_to {
                    return Ok(Reply::Moved { to: to.clone() });
                }
                return self.apply(request, handed, config, now);
            }
            Action::Request(r) => r,
        };
        // A tombstone: `Forget` removes it, `Restore` replaces it with the profile, everything else (erasing
        // included, so that an erasure that fails further on can be retried from here) is redirected.
        if let Some(to) = self.stored.moved_to.clone() {
            match request {
                Request::Forget => {
                    self.delete_all();
                    return Ok(Reply::Forgotten(true));
                }
                Request::Restore { .. } => {}
                _ => return Ok(Reply::Moved { to }),
            }
        }
        match request {
            Request::Apply(request) => self.apply(request, Vec::new(), config, now),
            Request::Read => Ok(Reply::Profile(self.stored.profile.clone())),
            Request::Locate => Ok(Reply::Located(self.stored.profile.is_some())),
            Request::Handover { survivor } => Ok(self.handover(survivor, now)),
            Request::Restore { profile, last_kv_write, repoint } => {
                self.restore(&profile, last_kv_write, repoint, config, now)
            }
            Request::Split { absorbed } => self.split_off(&absorbed, config, now),
            Request::Erase => Ok(match self.erase(now, true)? {
                Some(identities) => Reply::Erased { identities },
                None => Reply::refused("profile_not_found", "no profile here"),
            }),
            Request::Forget => Ok(Reply::Forgotten(false)),
            Request::Reevaluate => {
                let Some(mut p) = self.profile()? else { return Ok(Reply::Reevaluated(None)) };
                let n = self.refresh_audiences(config, &mut p, now);
                self.deliver_due(&mut p, now);
                Ok(Reply::Reevaluated(Some(n)))
            }
            Request::Claim { deliveries } => self.claim(&deliveries, config, now),
            Request::Settle { delivery, delivered } => {
                let Some(mut p) = self.profile()? else { return Ok(Reply::Settled(false)) };
                let settled = journeys::settle(&mut p, &delivery, delivered);
                if settled {
                    self.store_journeys(&p, now);
                }
                Ok(Reply::Settled(settled))
            }
        }
    }

    // --- the object's storage, through which every change goes (the state and the effects cannot drift) ---

    fn put(&mut self, key: Key, value: Value) {
        self.stored.set(key, Some(value.clone()));
        if key == Key::Profile {
            self.decoded = None;
        }
        self.changed = true;
        self.out.push(Effect::Put(key, value));
    }

    fn put_time(&mut self, key: Key, at: Millis) {
        self.put(key, Value::Number(at as f64));
    }

    /// Notes the time a KV write just carried out happened at: `now` here, and the instant it really happened in
    /// the object's storage (`Effect::Stamp`), which the next decisions then count from.
    fn stamp(&mut self, key: Key, now: Millis) {
        self.stored.set(key, Some(Value::Number(now as f64)));
        self.changed = true;
        self.out.push(Effect::Stamp(key));
    }

    fn delete(&mut self, key: Key) {
        self.stored.set(key, None);
        self.changed = true;
        self.out.push(Effect::Delete(key));
    }

    fn delete_all(&mut self) {
        self.stored = Stored::default();
        self.decoded = None;
        self.due = None;
        self.changed = true;
        self.out.push(Effect::DeleteAll);
    }

    /// The stored profile, decoded (once per action sequence, until it is stored again).
    fn current(&mut self) -> Result<Option<&Profile>, Failure> {
        if self.decoded.is_none() {
            if let Some(bytes) = &self.stored.profile {
                self.decoded = Some(decode_profile(bytes)?);
            }
        }
        Ok(self.decoded.as_ref())
    }

    /// The stored profile, for an action that changes it (and stores it again, or not at all).
    fn profile(&mut self) -> Result<Option<Profile>, Failure> {
        if let Some(p) = self.current()? {
            self.due = Some(Due::of(p));
        }
        Ok(self.decoded.take())
    }

    /// Stores the profile; when what predictions read changed, its summary goes to the fit (`wire::predictions`).
    fn put_profile(&mut self, p: &Profile, now: Millis) {
        self.put(Key::Profile, Value::Bytes(encode_profile_bounded(p)));
        let before = self.due.replace(Due::of(p)).map(|d| d.behaviour);
        if before != self.due.map(|d| d.behaviour) && !p.behaviour.is_empty() {
            self.out.push(Effect::Index(Published::of_profile(&p.id, &p.behaviour, now).to_json().to_string()));
        }
    }

    fn recently_erased(&self, now: Millis) -> bool {
        self.stored.erased_at.is_some_and(|at| now - at < ERASED_GRACE_MS)
    }

    // --- the actions ---

    fn apply(
        &mut self,
        request: ApplyRequest,
        handed: Vec<Handed>,
        config: &Config,
        now: Millis,
    ) -> Result<Reply, Failure> {
        if self.recently_erased(now) {
            return Ok(Reply::Applied(ApplyAnswer { erased: true, ..ApplyAnswer::default() }));
        }
        let current = self.profile()?;
        // Until when the absorbed profiles' KV keys are a second from their last write.
        let hot_until = handed.iter().map(|h| h.last_kv_write + KV_INTERVAL_MS).max().unwrap_or(0);
        let last_writes: Vec<(String, Millis)> =
            handed.iter().map(|h| (h.profile.id.clone(), h.last_kv_write)).collect();
        let fetched = handed.into_iter().map(|h| (h.link, h.profile)).collect();
        let identity_before = current.as_ref().and_then(main_identity);
        // A new profile absorbing none is in no journey before (so one in none sends the index no empty row).
        let new = last_writes.is_empty().then(|| journey_view(&Profile::new(request.profile_id.clone(), now)));
        let journeys_before = current.as_ref().map(journey_view).or(new);
        let written = write(current, fetched, request, config, now);
        for p in &written.returned {
            // Refused merges: each profile goes back where it was, as it was.
            let last_kv_write = last_writes.iter().find(|(id, _)| *id == p.id).map_or(0, |(_, t)| *t);
            let request = Request::Restore { profile: encode_profile(p), last_kv_write, repoint: false };
            self.out.push(Effect::Call { profile_id: p.id.clone(), request, required: false });
        }
        let Some(mut profile) = written.profile.filter(|_| written.store) else {
            return Ok(Reply::Applied(written.answer));
        };
        if now >= hot_until || written.absorbed_ids.is_empty() {
            self.store(config, &profile, &written.index, &written.repoint, now);
            for id in &written.absorbed_ids {
                self.out.push(Effect::KvDelete { key: profile_key(id) });
                self.stamp(Key::IndexAt, now);
            }
        } else {
            // The absorbed profiles' keys were written less than a second ago: their entries move here and their
            // snapshots go when the alarm comes. Until then their tombstones send writers and readers here.
            let pending = Pending { repoint: written.repoint.clone(), absorbed: written.absorbed_ids.clone() };
            self.put(Key::MergePending, Value::Text(pending.to_text()));
            self.put_time(Key::IndexDue, hot_until);
            self.store(config, &profile, &written.index, &[], now);
        }
        if !written.outcomes.is_empty() {
            self.out.push(Effect::Experiments(written.outcomes));
        }
        self.export.extend(export::applied(&profile, &written.events, &written.index, &written.repoint, now));
        self.export.extend(written.absorbed_ids.iter().map(|a| absorbed_user_row(a, &profile.id, now)));
        // The audience outlet, once the profile is stored: its transitions (or a new main identity for the index
        // to list it by), and the profiles it absorbed, which leave every audience.
        let relabel = main_identity(&profile) != identity_before && !profile.audiences.members.is_empty();
        if !written.transitions.is_empty() || relabel {
            self.publish(&profile, &written.transitions, now);
        }
        if !written.absorbed_ids.is_empty() {
            let removed = IndexMessage::removed_json(&written.absorbed_ids, false, now);
            self.out.push(Effect::Index(removed.to_string()));
        }
        if Some(journey_view(&profile)) != journeys_before {
            self.publish_journeys(&profile, now);
        }
        self.deliver_due(&mut profile, now);
        Ok(Reply::Applied(written.answer))
    }

    fn handover(&mut self, survivor: String, now: Millis) -> Reply {
        let Some(bytes) = self.stored.profile.clone() else { return Reply::HandedOver(None) };
        // With when this object last wrote to KV, so that the survivor leaves its keys alone for a second after.
        let last = self.stored.snapshot_at.unwrap_or(0).max(self.stored.index_at.unwrap_or(0));
        self.delete_all();
        self.put(Key::MovedTo, Value::Text(survivor));
        self.put_time(Key::MovedAt, now);
        Reply::HandedOver(Some((bytes, last)))
    }

    fn restore(
        &mut self,
        bytes: &[u8],
        last_kv_write: Millis,
        repoint: bool,
        config: &Config,
        now: Millis,
    ) -> Result<Reply, Failure> {
        let Ok(mut profile) = decode_profile(bytes) else {
            return Ok(Reply::refused("invalid_request", "the profile to restore does not decode"));
        };
        if self.stored.moved_to.is_some() {
            self.delete(Key::MovedTo);
            self.delete(Key::MovedAt);
        }
        let ids = profile.identities.clone();
        // What time alone changed while it was away (a split-off profile arrives already evaluated).
        let (transitions, _) = refresh(config, &mut profile, now);
        // Its keys were last written at `last_kv_write` (by the object that held it): what this object writes
        // waits for that second.
        for key in [Key::SnapshotAt, Key::IndexAt] {
            if last_kv_write > 0 {
                let t = match key {
                    Key::SnapshotAt => self.stored.snapshot_at,
                    _ => self.stored.index_at,
                };
                self.put_time(key, last_kv_write.max(t.unwrap_or(0)));
            }
        }
        let hot_until = last_kv_write + KV_INTERVAL_MS;
        if !repoint {
            self.store(config, &profile, &[], &[], now);
        } else if now < hot_until {
            // Its identities' entries move here with the alarm.
            let pending = Pending { repoint: ids, absorbed: Vec::new() };
            self.put(Key::MergePending, Value::Text(pending.to_text()));
            self.put_time(Key::IndexDue, hot_until.max(self.stored.index_due.unwrap_or(0)));
            self.store(config, &profile, &[], &[], now);
        } else {
            self.store(config, &profile, &ids, &ids, now);
        }
        if !transitions.is_empty() {
            self.publish(&profile, &transitions, now);
        }
        self.deliver_due(&mut profile, now);
        Ok(Reply::Restored { id: profile.id })
    }

    fn split_off(&mut self, absorbed: &str, config: &Config, now: Millis) -> Result<Reply, Failure> {
        let Some(mut profile) = self.profile()? else {
            return Ok(Reply::refused("profile_not_found", "no profile here"));
        };
        let mut restored = match split(&mut profile, absorbed) {
            Ok(r) => r,
            Err(SplitError::NotMerged) => {
                return Ok(Reply::refused("merge_not_found", &format!("this profile did not absorb {absorbed}")));
            }
            Err(SplitError::TooOld) => {
                return Ok(Reply::refused("merge_too_old", "only the latest merges keep what a split needs"));
            }
        };
        // The entries of its identities were written by this object (at a merge, or its repointing), or, while
        // the merge's writes still wait, by its own object before the merge (a second before `IndexDue`).
        let mut last_kv_write = self.stored.index_at.unwrap_or(0);
        // A merge's KV writes still waiting leave the profile split off alone: its snapshot and its entries are
        // its own again.
        if let Some(mut pending) = self.stored.merge_pending.clone() {
            if pending.absorbed.iter().any(|id| id == absorbed) {
                last_kv_write = last_kv_write.max(self.stored.index_due.unwrap_or(0) - KV_INTERVAL_MS);
            }
            pending.absorbed.retain(|id| id != absorbed);
            pending.repoint.retain(|id| !restored.identities.contains(id));
            self.put(Key::MergePending, Value::Text(pending.to_text()));
        }
        let mut transitions = catch_up(config, &mut profile, now);
        transitions.extend(track(config, &mut profile, now, Cause::Split));
        self.store(config, &profile, &[], &[], now);
        if !transitions.is_empty() {
            self.publish(&profile, &transitions, now);
        }
        // The profile split off enters its audiences now; its transitions leave once its own object stored it.
        let restored_transitions = track(config, &mut restored, now, Cause::Split);
        self.export.extend(export::split(&restored, now));
        let request = Request::Restore { profile: encode_profile(&restored), last_kv_write, repoint: true };
        self.out.push(Effect::Call { profile_id: restored.id.clone(), request, required: true });
        if !restored_transitions.is_empty() {
            self.publish(&restored, &restored_transitions, now);
        }
        Ok(Reply::Split { profiles: [profile.id, restored.id] })
    }

    /// Removes everything held about the profile: its storage here, its KV snapshot, every index entry that leads
    /// to it (or to a profile it absorbed), the tombstones of those, its rows in the audience index and the
    /// delivery log; an erasure asked for (not an anonymous profile's expiry) purges the export too. A KV key this
    /// object wrote less than a second ago is waited for first (erasures are rare;
    /// the wait is at most a second), so that everything is gone when the erasure answers.
    fn erase(&mut self, now: Millis, purge_export: bool) -> Result<Option<usize>, Failure> {
        let Some(profile) = self.profile()? else { return Ok(None) };
        let s = &self.stored;
        let hot_until = [
            s.snapshot_at.map_or(0, |t| t + KV_INTERVAL_MS),
            s.index_at.map_or(0, |t| t + KV_INTERVAL_MS),
            if s.merge_pending.is_some() { s.index_due.unwrap_or(0) } else { 0 },
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let at = now.max(hot_until);
        if hot_until > now {
            self.out.push(Effect::WaitUntil(hot_until));
        }
        let absorbed: Vec<String> = profile.merges.iter().map(|m| m.absorbed_id.clone()).collect();
        let gone: Vec<String> = absorbed.iter().cloned().chain(std::iter::once(profile.id.clone())).collect();
        for identity in &profile.identities {
            self.out.push(Effect::KvUnindex { identity: identity.clone(), leads_to: gone.clone() });
        }
        for id in &gone {
            self.out.push(Effect::KvDelete { key: profile_key(id) });
        }
        for id in &absorbed {
            self.out.push(Effect::Call { profile_id: id.clone(), request: Request::Forget, required: false });
        }
        self.out.push(Effect::IndexErase { profile_ids: gone.clone(), at });
        if purge_export {
            self.out.push(Effect::ExportErase { people: export::people_of(&profile, &gone), at });
        }
        self.out.push(Effect::DeliveriesForget { profile_ids: gone });
        self.delete_all();
        // Only the time of the erasure stays, for the grace period, and then goes too.
        self.put_time(Key::ErasedAt, at);
        Ok(Some(profile.identities.len()))
    }

    /// Claims a profile's sends in one action, each as `journeys::claim` decides, stored once.
    fn claim(&mut self, deliveries: &[String], config: &Config, now: Millis) -> Result<Reply, Failure> {
        let Some(mut profile) = self.profile()? else {
            let reason = if self.stored.erased_at.is_some() { "erased" } else { "profile_gone" };
            let gone = Claimed { answer: ClaimAnswer::Suppressed { reason: reason.into() }, send: None };
            return Ok(Reply::Claimed(vec![gone; deliveries.len()]));
        };
        let before = profile.journeys.clone();
        let mut claims = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let send =
                profile.journeys.outbox.iter().find(|o| &o.id == delivery).map(|o| ClaimedSend::of(&profile.id, o));
            let answer = match journeys::claim(config, &mut profile, delivery, now) {
                Claim::Go { destination, outgoing } => {
                    let (body, content_type) = body(destination, &config.consent, &profile, &outgoing, now);
                    ClaimAnswer::Go { body, content_type: content_type.into() }
                }
                Claim::Suppressed(reason) => ClaimAnswer::Suppressed { reason: reason.to_string() },
                Claim::Deferred(until) => ClaimAnswer::Deferred { until },
                Claim::Unknown => ClaimAnswer::Unknown,
            };
            claims.push(Claimed { answer, send });
        }
        if profile.journeys != before {
            self.store_journeys(&profile, now);
        }
        Ok(Reply::Claimed(claims))
    }

    fn alarm(&mut self, config: &Config, now: Millis) -> Result<(), Failure> {
        if self.stored.moved_to.is_some() {
            // The tombstone's day is over: the index shows the survivor everywhere by now.
            self.delete_all();
            return Ok(());
        }
        let Some(mut profile) = self.profile()? else {
            if self.stored.erased_at.is_some() {
                // The erasure's grace period is over: not even its time stays.
                self.delete_all();
            }
            return Ok(());
        };
        let expires_at = profile.expires_at(config.retention_anonymous_days);
        if expires_at.is_some_and(|at| at <= now) {
            self.erase(now, false)?;
            return Ok(());
        }
        // What time alone changed in its audiences and journeys, each at its own instant.
        self.refresh_audiences(config, &mut profile, now);
        self.deliver_due(&mut profile, now);
        // What was due (index expirations first: the snapshot then carries the same).
        // A write is due only a second after the last one as it happened (`Effect::Stamp`), which may be a little
        // later than the instant the writer planned it at: otherwise it waits for that.
        let after_last = |last: Option<Millis>| last.map_or(0, |t| t + KV_INTERVAL_MS);
        if self.stored.index_due.is_some_and(|at| at <= now) {
            match after_last(self.stored.index_at) {
                t if t > now => self.put_time(Key::IndexDue, t),
                _ => self.refresh_index(&profile, expires_at, now),
            }
        }
        if self.stored.snapshot_due.is_some_and(|at| at <= now) {
            match after_last(self.stored.snapshot_at) {
                t if t > now => self.put_time(Key::SnapshotDue, t),
                _ => self.put_snapshot(&profile, self.stored.kv_expiration, now),
            }
        }
        Ok(())
    }

    // --- the parts ---

    /// The export's rows of this action, as the export queue's messages, once everything else is done.
    fn flush_export(&mut self, now: Millis) {
        if !self.export.is_empty() {
            self.out.push(Effect::Export(export::messages(&std::mem::take(&mut self.export), now)));
        }
    }

    /// Stores the profile here, indexes `new_identities` and `repoint` to it at once (they are new to this
    /// object), and writes its snapshot (at once when the last one is a second old, else when the alarm comes).
    /// An anonymous profile's KV copies carry an expiration a day after its own; when its expiry catches up with
    /// theirs (about daily), or it became known (none), the index entries are due for a rewrite.
    fn store(&mut self, config: &Config, p: &Profile, new_identities: &[Identity], repoint: &[Identity], now: Millis) {
        self.put_profile(p, now);
        self.export.push(export::user(config, p, now));
        let expires_at = p.expires_at(config.retention_anonymous_days);
        let target = kv_expiration_for(expires_at, now);
        let written = self.stored.kv_expiration;
        let refresh = match (expires_at, written) {
            (Some(at), Some(w)) => at / 1000 + MIN_KV_TTL_SECONDS > w as i64,
            (None, None) => false,
            _ => true,
        };
        let repointed_only = repoint.iter().filter(|id| !new_identities.contains(id));
        for id in new_identities.iter().chain(repointed_only) {
            self.index_write(id, &p.id, repoint, target, false, now);
        }
        let all_written = p.identities.iter().all(|id| new_identities.contains(id) || repoint.contains(id));
        if refresh && all_written {
            self.set_kv_expiration(target);
        } else if refresh || self.stored.index_due.is_some() {
            // Never sooner than a second after this object's last index write, so no entry is written twice in
            // one, nor sooner than a due time already set (a merge waiting for its absorbed profiles' keys).
            let last = self.stored.index_at.unwrap_or(0);
            let set = self.stored.index_due.unwrap_or(0);
            self.put_time(Key::IndexDue, now.max(last + KV_INTERVAL_MS).max(set));
        }
        let expiration = if refresh { target } else { written };
        match self.stored.snapshot_at.filter(|&t| now - t < KV_INTERVAL_MS) {
            None => self.put_snapshot(p, expiration, now),
            Some(t) => self.put_time(Key::SnapshotDue, t + KV_INTERVAL_MS),
        }
    }

    fn set_kv_expiration(&mut self, target: Option<u64>) {
        match target {
            Some(e) => self.put(Key::KvExpiration, Value::Number(e as f64)),
            None => self.delete(Key::KvExpiration),
        }
    }

    /// An index write, noted as a KV write of this object now (whether or not the entry turns out to need it).
    fn index_write(
        &mut self,
        id: &Identity,
        profile_id: &str,
        repoint: &[Identity],
        expiration: Option<u64>,
        rewrite_own: bool,
        now: Millis,
    ) {
        self.out.push(Effect::KvIndex(IndexWrite {
            identity: id.clone(),
            profile_id: profile_id.to_string(),
            repoint: repoint.to_vec(),
            expiration,
            rewrite_own,
        }));
        self.stamp(Key::IndexAt, now);
    }

    /// Gives every index entry of the profile the expiration it should have now, and carries out a merge's
    /// writes that waited (its identities' entries move here, the absorbed snapshots go).
    fn refresh_index(&mut self, p: &Profile, expires_at: Option<Millis>, now: Millis) {
        let target = kv_expiration_for(expires_at, now);
        let pending = self.stored.merge_pending.clone().unwrap_or_default();
        for id in &p.identities {
            self.index_write(id, &p.id, &pending.repoint, target, true, now);
        }
        for absorbed in &pending.absorbed {
            self.out.push(Effect::KvDelete { key: profile_key(absorbed) });
            self.stamp(Key::IndexAt, now);
        }
        if self.stored.merge_pending.is_some() {
            self.delete(Key::MergePending);
        }
        self.set_kv_expiration(target);
        self.delete(Key::IndexDue);
    }

    /// The profile's KV snapshot: what its readers use (`store::encode_reader_snapshot`).
    fn put_snapshot(&mut self, p: &Profile, expiration: Option<u64>, now: Millis) {
        let value = encode_reader_snapshot(p, now);
        self.out.push(Effect::KvPut { key: profile_key(&p.id), value, expiration });
        self.stamp(Key::SnapshotAt, now);
        if self.stored.snapshot_due.is_some() {
            self.delete(Key::SnapshotDue);
        }
    }

    /// Stores a profile whose journeys alone changed (a claim, a settlement): here at once, and its KV snapshot a
    /// second later from the alarm, so that a delivery's claim and settlement cost one KV write between them.
    fn store_journeys(&mut self, p: &Profile, now: Millis) {
        self.put_profile(p, now);
        if self.stored.snapshot_due.is_none() {
            // A second from now, which is never sooner than a second after the last snapshot.
            let last = self.stored.snapshot_at.unwrap_or(0);
            self.put_time(Key::SnapshotDue, last.max(now) + KV_INTERVAL_MS);
        }
    }

    /// Brings a stored profile's audiences and journeys up to `now` (`write::refresh`), stores it when that changed
    /// anything, then publishes. Answers how many transitions there were.
    fn refresh_audiences(&mut self, config: &Config, p: &mut Profile, now: Millis) -> usize {
        let journeys_before = journey_view(p);
        let (transitions, store) = refresh(config, p, now);
        if store {
            self.store(config, p, &[], &[], now);
        }
        if journey_view(p) != journeys_before {
            self.publish_journeys(p, now);
        }
        if !transitions.is_empty() {
            self.publish(p, &transitions, now);
        }
        transitions.len()
    }

    /// Hands the sends that are due to the delivery queue (the profile holding them is stored already), then
    /// stores them as enqueued. A failure between the two sends them again at the next alarm; the delivery's id
    /// keeps that from reaching anyone twice. Sends cancelled before they were queued go to the log instead.
    fn deliver_due(&mut self, p: &mut Profile, now: Millis) {
        let (cancelled, sends) = (journeys::take_cancelled(p), to_enqueue(p, now));
        if !cancelled.is_empty() {
            let (log, rows) = export::suppressed(&p.id, &cancelled, now);
            self.out.push(Effect::Suppressed(log));
            self.export.extend(rows);
        }
        if !sends.is_empty() {
            self.out.push(Effect::Enqueue(sends.iter().map(|o| DeliveryMessage::of_send(&p.id, o)).collect()));
            mark_enqueued(p, &sends.into_iter().map(|o| o.id).collect::<Vec<_>>());
        } else if cancelled.is_empty() {
            return;
        }
        self.put_profile(p, now);
    }

    fn publish(&mut self, p: &Profile, transitions: &[Transition], now: Millis) {
        self.export.extend(transitions.iter().map(|t| audience_change_row(&p.id, t, now)));
        self.out.push(Effect::Index(IndexMessage::transitions_json(p, transitions).to_string()));
    }

    fn publish_journeys(&mut self, p: &Profile, now: Millis) {
        self.out.push(Effect::Index(JourneyState::of_profile(&p.id, &p.journeys, now).to_json().to_string()));
    }
}

/// The expiration KV copies of a profile that expires at `expires_at` carry: a day later (none for a known one).
fn kv_expiration_for(expires_at: Option<Millis>, now: Millis) -> Option<u64> {
    expires_at.map(|at| (at / 1000 + KV_EXPIRATION_SLACK_SECONDS).max(now / 1000 + MIN_KV_TTL_SECONDS) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::identity::{Identity, ANONYMOUS_ID, USER_ID};
    use crate::core::model::profile::MergeRecord;

    const NOW: Millis = 1_795_344_600_000;

    /// A writer holding a known profile (no expiry), its snapshot written at `snapshot_at`.
    fn holding(snapshot_at: Option<Millis>) -> Writer {
        let mut p = Profile::new("p1".into(), NOW - 10_000);
        p.identities.push(Identity::new(USER_ID, "u1"));
        Writer::new(Stored { profile: Some(encode_profile_bounded(&p)), snapshot_at, ..Stored::default() })
    }

    fn handle(w: &mut Writer, request: Request, now: Millis) -> Effects {
        w.handle(Action::Request(request), &Config::default(), now).expect("decodes")
    }

    #[test]
    fn a_tombstone_redirects_everything_but_restore_and_forget() {
        let mut w = Writer::new(Stored { moved_to: Some("p2".into()), moved_at: Some(NOW), ..Stored::default() });
        for r in [Request::Read, Request::Locate, Request::Erase, Request::Claim { deliveries: vec!["d".into()] }] {
            let e = handle(&mut w, r, NOW);
            assert_eq!(e.reply, Reply::Moved { to: "p2".into() });
            assert!(e.effects.is_empty() && e.alarm.is_none(), "a redirect changes nothing");
        }
        let e = handle(&mut w, Request::Forget, NOW);
        assert_eq!((e.reply, e.effects, e.alarm), (Reply::Forgotten(true), vec![Effect::DeleteAll], Some(None)));
    }

    /// An apply to `p1` of one track event with message id `id`, by user `u1`.
    fn apply(id: &str) -> ApplyRequest {
        let kind = crate::core::model::event::EventKind::Track { event: "E".into(), properties: Default::default() };
        let event = crate::core::model::event::Event::new(id.into(), None, Some("u1".into()), NOW - 1000, kind);
        ApplyRequest { profile_id: "p1".into(), events: vec![event], ..ApplyRequest::default() }
    }

    #[test]
    fn a_new_object_deletes_no_alarm_and_sends_the_journey_index_no_empty_row() {
        let config = crate::core::rules::compile_str(r#"{"consent": {"model": "opt-out"}}"#).unwrap();
        let mut fresh = Writer::new(Stored::default());
        let e = fresh.handle(Action::Apply { request: apply("m1"), handed: vec![] }, &config, NOW).unwrap();
        assert!(e.effects.iter().any(|x| matches!(x, Effect::Put(Key::Profile, _))), "stored");
        assert_eq!(e.alarm, None, "a new object never had an alarm");
        assert!(!e.effects.iter().any(|x| matches!(x, Effect::Index(_))), "in no journey: no empty row for the index");
        let mut w = holding(Some(NOW - 10_000));
        let e = w.handle(Action::Apply { request: apply("m2"), handed: vec![] }, &config, NOW).unwrap();
        assert_eq!(e.alarm, Some(None), "one that stored before may have one, and nothing is due now");
    }

    #[test]
    fn the_alarm_ends_a_tombstone_after_its_day_and_an_erasure_after_its_grace() {
        let mut w = Writer::new(Stored { moved_to: Some("p2".into()), moved_at: Some(NOW), ..Stored::default() });
        assert_eq!(w.next_wake(&Config::default()), Ok(Some(NOW + TOMBSTONE_MS)));
        let e = w.handle(Action::Alarm, &Config::default(), NOW + TOMBSTONE_MS).expect("decodes");
        assert_eq!((e.effects, e.alarm), (vec![Effect::DeleteAll], Some(None)));
        let mut w = Writer::new(Stored { erased_at: Some(NOW), ..Stored::default() });
        assert_eq!(w.next_wake(&Config::default()), Ok(Some(NOW + ERASED_GRACE_MS)));
        let apply = ApplyRequest { profile_id: "p1".into(), ..ApplyRequest::default() };
        let e = w.handle(Action::Apply { request: apply.clone(), handed: vec![] }, &Config::default(), NOW + 1);
        assert_eq!(e.expect("decodes").reply, Reply::Applied(ApplyAnswer { erased: true, ..ApplyAnswer::default() }));
        let e = w.handle(Action::Apply { request: apply, handed: vec![] }, &Config::default(), NOW + ERASED_GRACE_MS);
        assert!(!matches!(e.expect("decodes").reply, Reply::Applied(ApplyAnswer { erased: true, .. })));
    }

    #[test]
    fn an_erasure_waits_for_the_keys_second_then_removes_every_trace() {
        let mut w = holding(Some(NOW - 200));
        let e = handle(&mut w, Request::Erase, NOW);
        assert_eq!(e.reply, Reply::Erased { identities: 1 });
        assert_eq!(e.effects[0], Effect::WaitUntil(NOW + 800), "the snapshot was written 200 ms ago");
        assert!(e.effects.contains(&Effect::KvDelete { key: profile_key("p1") }));
        let unindex = Effect::KvUnindex { identity: Identity::new(USER_ID, "u1"), leads_to: vec!["p1".into()] };
        assert!(e.effects.contains(&unindex));
        let at = e.effects.iter().position(|x| *x == Effect::DeleteAll).expect("the storage goes");
        assert_eq!(e.effects[at + 1..], [Effect::Put(Key::ErasedAt, Value::Number((NOW + 800) as f64))]);
        assert_eq!(e.alarm, Some(Some(NOW + 800 + ERASED_GRACE_MS)));
        assert_eq!(w.stored(), &Stored { erased_at: Some(NOW + 800), ..Stored::default() });
    }

    #[test]
    fn a_snapshot_is_written_at_once_only_when_the_last_is_a_second_old() {
        for (last, at_once) in [(None, true), (Some(NOW - 1_000), true), (Some(NOW - 999), false)] {
            let mut w = holding(last);
            let e = handle(&mut w, Request::Reevaluate, NOW);
            let mut p = Profile::new("p1".into(), NOW);
            p.identities.push(Identity::new(USER_ID, "u1"));
            w.store(&Config::default(), &p, &[], &[], NOW);
            let put = w.out.iter().any(|x| matches!(x, Effect::KvPut { .. }));
            assert_eq!(put, at_once, "last snapshot {last:?}");
            assert_eq!(w.stored.snapshot_due.is_some(), !at_once);
            assert!(matches!(e.reply, Reply::Reevaluated(Some(0))));
        }
    }

    #[test]
    fn a_handover_leaves_a_tombstone_and_names_the_last_kv_write() {
        let mut w = holding(Some(NOW - 300));
        let e = handle(&mut w, Request::Handover { survivor: "p2".into() }, NOW);
        assert!(matches!(e.reply, Reply::HandedOver(Some((_, t))) if t == NOW - 300));
        assert_eq!(w.stored().moved_to.as_deref(), Some("p2"));
        assert_eq!(e.alarm, Some(Some(NOW + TOMBSTONE_MS)));
        assert_eq!(
            handle(&mut w, Request::Handover { survivor: "p3".into() }, NOW).reply,
            Reply::Moved { to: "p2".into() }
        );
    }

    fn anonymous(id: &str, anon: &str) -> Profile {
        let mut p = Profile::new(id.into(), NOW - 60_000);
        p.identities.push(Identity::new(ANONYMOUS_ID, anon));
        p
    }

    /// Profile p1 (user u1) that absorbed p2 (anonymous a2), splittable.
    fn merged() -> Profile {
        let mut survivor = Profile::new("p1".into(), NOW - 60_000);
        survivor.identities.push(Identity::new(USER_ID, "u1"));
        survivor.identities.push(Identity::new(ANONYMOUS_ID, "a2"));
        let absorbed = anonymous("p2", "a2");
        survivor.merges.push(MergeRecord {
            at: NOW - 1_000,
            message_id: "m".into(),
            absorbed_id: "p2".into(),
            identities: vec![Identity::new(ANONYMOUS_ID, "a2")],
            absorbed: Some(Box::new(absorbed)),
            replaced_traits: Default::default(),
            replaced_grants: Default::default(),
            first_seen_before: NOW - 60_000,
            last_seen_before: NOW - 60_000,
        });
        survivor
    }

    fn indexes(e: &Effects) -> Vec<&IndexWrite> {
        e.effects.iter().filter_map(|x| if let Effect::KvIndex(w) = x { Some(w) } else { None }).collect()
    }

    #[test]
    fn a_restore_moves_the_index_back_only_for_a_split_and_only_a_second_after_its_keys() {
        let bytes = encode_profile(&anonymous("p2", "a2"));
        let restore = |repoint, last_kv_write, now| {
            let mut w = Writer::new(Stored { moved_to: Some("p1".into()), moved_at: Some(NOW), ..Stored::default() });
            let e = handle(&mut w, Request::Restore { profile: bytes.clone(), last_kv_write, repoint }, now);
            assert_eq!(e.reply, Reply::Restored { id: "p2".into() });
            assert!(!e.effects.iter().any(|x| matches!(x, Effect::Index(_))), "no audience moved: nothing to publish");
            (indexes(&e).len(), w.stored.merge_pending.clone(), w.stored.snapshot_due)
        };
        // A refused merge never moved the entries: none is written, now or later.
        assert_eq!(restore(false, NOW - 5_000, NOW), (0, None, None));
        // A split moves them back: at once when its keys are a second old ...
        let (written, pending, _) = restore(true, NOW - 1_000, NOW);
        assert_eq!((written, pending), (1, None));
        // ... else with the alarm, and the snapshot waits too.
        let (written, pending, due) = restore(true, NOW - 999, NOW);
        assert_eq!(written, 0);
        assert_eq!(pending.map(|p| p.repoint), Some(vec![Identity::new(ANONYMOUS_ID, "a2")]));
        assert_eq!(due, Some(NOW + 1));
    }

    #[test]
    fn a_split_gives_the_profile_back_with_when_its_keys_were_written_and_drops_its_waiting_writes() {
        let pending = Pending { repoint: vec![Identity::new(ANONYMOUS_ID, "a2")], absorbed: vec!["p2".into()] };
        let mut w = Writer::new(Stored {
            profile: Some(encode_profile_bounded(&merged())),
            index_at: Some(NOW - 5_000),
            index_due: Some(NOW + 400),
            merge_pending: Some(pending),
            ..Stored::default()
        });
        let e = handle(&mut w, Request::Split { absorbed: "p2".into() }, NOW);
        assert_eq!(e.reply, Reply::Split { profiles: ["p1".into(), "p2".into()] });
        let call = e.effects.iter().find_map(|x| match x {
            Effect::Call { profile_id, request: Request::Restore { last_kv_write, repoint, .. }, required } => {
                Some((profile_id.as_str(), *last_kv_write, *repoint, *required))
            }
            _ => None,
        });
        assert_eq!(
            call,
            Some(("p2", NOW - 600, true, true)),
            "the absorbed keys were last written a second before due"
        );
        assert_eq!(w.stored.merge_pending, Some(Pending::default()), "nothing of p2 waits in p1 any more");
        // With no audiences configured, no transition moves, and no index message goes.
        assert!(!e.effects.iter().any(|x| matches!(x, Effect::Index(_))));
    }

    /// The snapshot in KV, written at once or from the alarm, is what the object stored but for the writer's own
    /// parts (`store::encode_reader_snapshot`): the remembered message ids and each recent event's id.
    #[test]
    fn the_snapshot_is_the_stored_profile_without_the_writer_s_parts() {
        let config = crate::core::rules::compile_str(r#"{"consent": {"model": "opt-out"}}"#).unwrap();
        let snapshot = |e: &Effects| {
            e.effects.iter().find_map(|x| match x {
                Effect::KvPut { key, value, .. } if key == "profile:p1" => {
                    Some(crate::core::store::decode_snapshot(value).unwrap().0)
                }
                _ => None,
            })
        };
        let mut w = holding(Some(NOW - 10_000));
        let at_once = w.handle(Action::Apply { request: apply("m1"), handed: vec![] }, &config, NOW).unwrap();
        let then = w.profile().unwrap().unwrap();
        let later = w.handle(Action::Apply { request: apply("m2"), handed: vec![] }, &config, NOW + 10).unwrap();
        assert_eq!(snapshot(&later), None, "a second after the last one");
        let alarm = w.handle(Action::Alarm, &config, NOW + KV_INTERVAL_MS).unwrap();
        let now = w.profile().unwrap().unwrap();
        for (why, e, stored, ids) in
            [("at once", at_once, then, vec!["m1"]), ("from the alarm", alarm, now, vec!["m1", "m2"])]
        {
            assert_eq!(stored.seen_message_ids, ids, "{why}");
            let mut want = stored;
            want.seen_message_ids.clear();
            want.recent.iter_mut().for_each(|r| r.message_id.clear());
            assert_eq!(snapshot(&e), Some(want), "{why}");
        }
    }

    #[test]
    fn a_due_kv_write_waits_a_second_after_the_last_one_as_it_happened() {
        // Due now by the writer's plan, but the last write really happened 500 ms ago: both wait for it.
        let mut w = holding(Some(NOW - 500));
        w.stored.snapshot_due = Some(NOW);
        w.stored.index_at = Some(NOW - 500);
        w.stored.index_due = Some(NOW);
        let e = w.handle(Action::Alarm, &Config::default(), NOW).expect("decodes");
        assert!(indexes(&e).is_empty() && !e.effects.iter().any(|x| matches!(x, Effect::KvPut { .. })));
        assert_eq!((w.stored.snapshot_due, w.stored.index_due), (Some(NOW + 500), Some(NOW + 500)));
        // A second after it, they go.
        let e = w.handle(Action::Alarm, &Config::default(), NOW + 500).expect("decodes");
        assert_eq!(indexes(&e).len(), 1);
        assert!(e.effects.iter().any(|x| matches!(x, Effect::KvPut { .. })));
        assert_eq!((w.stored.snapshot_due, w.stored.index_due), (None, None));
    }

    #[test]
    fn index_entries_are_rewritten_only_when_their_expiration_must_change() {
        let config = Config::default();
        // A known profile whose entries carry no expiration: nothing to rewrite.
        let mut w = holding(None);
        let mut p = w.profile().expect("decodes").expect("a profile");
        w.store(&config, &p, &[], &[], NOW);
        assert_eq!((w.stored.index_due, w.stored.kv_expiration), (None, None));
        // An anonymous one whose entries expire a day after it does: nothing to rewrite either.
        let mut anon = anonymous("p2", "a2");
        anon.last_seen = NOW;
        let target = kv_expiration_for(anon.expires_at(config.retention_anonymous_days), NOW);
        let mut w = Writer::new(Stored { kv_expiration: target, ..Stored::default() });
        w.store(&config, &anon, &[], &[], NOW);
        assert_eq!((w.stored.index_due, w.stored.kv_expiration), (None, target));
        // When the profile's own expiry catches up with its entries' (less than KV's shortest TTL ahead), they are.
        let at = anon.expires_at(config.retention_anonymous_days).expect("anonymous") / 1000;
        for (written, rewritten) in [(at + 59, true), (at + 60, false)] {
            let mut w = Writer::new(Stored { kv_expiration: Some(written as u64), ..Stored::default() });
            w.store(&config, &anon, &[], &[], NOW);
            assert_eq!(w.stored.index_due.is_some(), rewritten, "entries expiring at {written}, profile at {at}");
        }
        // The known profile's entries, written with an expiration while it was anonymous, are rewritten.
        let mut w = Writer::new(Stored { kv_expiration: target, index_at: Some(NOW - 5_000), ..Stored::default() });
        p.last_seen = NOW;
        w.store(&config, &p, &[], &[], NOW);
        assert_eq!(w.stored.index_due, Some(NOW));
    }

    #[test]
    fn what_waits_for_kv_waits_exactly_a_second_after_the_last_write() {
        let config = Config::default();
        let mut w = holding(Some(NOW - 300));
        let p = w.profile().expect("decodes").expect("a profile");
        w.store(&config, &p, &[], &[], NOW);
        assert_eq!(w.stored.snapshot_due, Some(NOW + 700), "a second after the last snapshot");
        // A claim's or a settlement's snapshot waits a second from now (the journeys' part alone changed).
        let mut w = holding(Some(NOW - 300));
        w.store_journeys(&p, NOW);
        assert_eq!(w.stored.snapshot_due, Some(NOW + 1_000));
        // Index entries due for a new expiration: a second after this object's last index write.
        let mut anon = anonymous("p2", "a2");
        anon.last_seen = NOW;
        let mut w = Writer::new(Stored { index_at: Some(NOW - 300), ..Stored::default() });
        w.store(&config, &anon, &[], &[], NOW);
        assert_eq!(w.stored.index_due, Some(NOW + 700));
    }

    #[test]
    fn new_entries_carry_the_new_expiration_at_once_and_old_ones_get_it_with_the_alarm() {
        let config = Config::default();
        let mut anon = anonymous("p2", "a2");
        anon.last_seen = NOW;
        let target = kv_expiration_for(anon.expires_at(config.retention_anonymous_days), NOW);
        // Every entry is new: written with the expiration, nothing left for the alarm.
        let mut w = Writer::default();
        w.store(&config, &anon, &anon.identities.clone(), &[], NOW);
        assert_eq!((w.stored.kv_expiration, w.stored.index_due), (target, None));
        // One entry is old: the alarm rewrites them all, a second after the new one was written.
        let mut second = anon.clone();
        second.identities.push(Identity::new(ANONYMOUS_ID, "a3"));
        let mut w = Writer::default();
        w.store(&config, &second, &[Identity::new(ANONYMOUS_ID, "a3")], &[], NOW);
        assert_eq!(w.stored.kv_expiration, None);
        assert_eq!(w.stored.index_due, Some(NOW + 1_000));
        // Nothing to renew: a known profile's entries carry none, and none is deleted.
        let mut w = holding(None);
        let p = w.profile().expect("decodes").expect("a profile");
        let e = {
            w.store(&config, &p, &p.identities.clone(), &[], NOW);
            std::mem::take(&mut w.out)
        };
        assert!(!e.contains(&Effect::Delete(Key::KvExpiration)) && w.stored.index_due.is_none());
    }

    #[test]
    fn kv_copies_expire_a_day_after_the_profile_and_never_sooner_than_kv_allows() {
        let at = NOW + 30 * 24 * 3_600_000;
        assert_eq!(kv_expiration_for(Some(at), NOW), Some((at / 1000 + 86_400) as u64));
        assert_eq!(kv_expiration_for(Some(NOW - 2 * 86_400_000), NOW), Some((NOW / 1000 + 60) as u64));
        assert_eq!(kv_expiration_for(None, NOW), None, "a known profile's copies do not expire");
    }

    #[test]
    fn a_tombstone_or_a_fresh_erasure_asks_for_no_handover() {
        let link = Link {
            because: Identity::new(USER_ID, "u1"),
            linked: Identity::new(ANONYMOUS_ID, "a9"),
            profile_id: "p9".into(),
            message_id: "m".into(),
        };
        let request = ApplyRequest { profile_id: "p1".into(), links: vec![link.clone()], ..ApplyRequest::default() };
        assert_eq!(Writer::default().handovers(&request, NOW), Ok(vec![link]), "a new profile takes the link");
        let mut tombstone = Writer::new(Stored { moved_to: Some("p2".into()), ..Stored::default() });
        assert_eq!(tombstone.handovers(&request, NOW), Ok(vec![]));
        let mut erased = Writer::new(Stored { erased_at: Some(NOW - 10), ..Stored::default() });
        assert_eq!(erased.handovers(&request, NOW), Ok(vec![]));
    }

    #[test]
    fn an_anonymous_profile_wakes_when_its_retention_ends() {
        let config = Config::default();
        let mut anon = anonymous("p2", "a2");
        anon.last_seen = NOW;
        let mut w = Writer::new(Stored { profile: Some(encode_profile_bounded(&anon)), ..Stored::default() });
        let retention = i64::from(config.retention_anonymous_days) * crate::core::base::time::DAY;
        assert_eq!(w.next_wake(&config), Ok(Some(NOW + retention)));
        assert_eq!(holding(None).next_wake(&config), Ok(None), "a known profile with nothing due sleeps");
    }

    #[test]
    fn reads_handovers_and_forgetting_decide_without_the_configuration() {
        let needs = |r: Request| Action::Request(r).needs_config();
        assert!(!needs(Request::Read) && !needs(Request::Locate) && !needs(Request::Forget));
        assert!(!needs(Request::Handover { survivor: "p2".into() }));
        assert!(needs(Request::Erase) && needs(Request::Reevaluate) && Action::Alarm.needs_config());
        // What they decide is the same under any configuration: a handover's alarm is the tombstone's day.
        let mut w = holding(Some(NOW - 300));
        let strict = Config { retention_anonymous_days: 1, ..Config::default() };
        let e = w.handle(Action::Request(Request::Handover { survivor: "p2".into() }), &strict, NOW);
        assert_eq!(e.expect("decodes").alarm, Some(Some(NOW + TOMBSTONE_MS)));
    }
}
