//! Journeys in motion, as a sans-I/O engine: from a profile's instances, what just happened (events, audience
//! transitions) or a wake-up, and `now`, the next state, the sends to make and the next wake-up.
//!
//! The contract, as the profile's Durable Object runs it (`engine::write` calls `on_write`; tests drive the same
//! functions with simulated time):
//! - **inputs**: `on_write(config, profile, happened, transitions, now)` after a write's events are applied and
//!   its audiences tracked; `wake(config, profile, now)` from the object's alarm;
//! - **state**: everything lives in `Profile::journeys` and is stored with the profile;
//! - **outputs**: new sends sit in the outbox; `to_enqueue` lists those due and not yet handed to the delivery
//!   queue, which the shell sends *after* storing the profile and then marks (`mark_enqueued`);
//!   `Journeys::due` is the next instant the object must wake;
//! - **when a send is queued**: `refused` (consent to the destination's purpose, a proven address) is checked
//!   first; a send that cannot leave is cancelled at once, and the writer logs it without queueing it
//!   (`take_cancelled`): no queue message, no claim, no work for a send that cannot happen;
//! - **at send time**: `claim` re-checks a send as it leaves (cancelled by an exit, destination removed, consent,
//!   quiet hours, the pressure budget) and counts it once; `settle` removes it once the destination took it or the
//!   delivery gave up (a send that never arrived stops counting).
//!
//! Steps run at their own instants however late the object wakes: a wait of a day that ended an hour ago moves on
//! at the end of the day, and the steps after it count from there.

use crate::core::base::time::{parse_iso8601, Millis, DAY};
use crate::core::base::value::Value;
use crate::core::engine::evaluate::{evaluate_all, scores_of, Facts};
use crate::core::engine::predict::for_conditions;
use crate::core::engine::pressure::{next_in_window, offset_of, over_budget, quiet_end};
use crate::core::model::audience::Transition;
use crate::core::model::consent::permit_send;
use crate::core::model::context::Context;
use crate::core::model::journey::{
    delivery_id, Ended, Instance, Outgoing, Sent, MAX_CONTEXT_PROPS, MAX_LEDGER, MAX_OUTBOX,
};
use crate::core::model::profile::{Profile, TraitEntry};
use crate::core::rules::destinations::Destination;
use crate::core::rules::journey::{Exit, Journey, Reentry, StepKind, Trigger};
use crate::core::rules::segment::PropertyFilter;
use crate::core::rules::Config;
use std::collections::BTreeMap;

/// An event older than this when it is written starts no journey (an import of history is not a visit).
pub const MAX_TRIGGER_AGE: Millis = DAY;
/// How long an outbox entry that was cancelled, or claimed and never settled, is kept before it goes.
pub const OUTBOX_KEEP: Millis = 7 * DAY;

/// An event as the journeys see it: its name (as counted), properties and time.
#[derive(Clone, Debug, PartialEq)]
pub struct Happened {
    pub name: String,
    pub props: BTreeMap<String, Value>,
    pub at: Millis,
}

/// What a run of the engine changed besides the instances themselves.
#[derive(Debug, Default, PartialEq)]
pub struct Moved {
    /// A `setTrait` step changed the profile's traits (audiences must be tracked again).
    pub traits_set: bool,
    /// Instances entered, ended, and sends added to the outbox.
    pub entered: usize,
    pub ended: usize,
    pub sends: usize,
}

impl Moved {
    pub fn changed(&self) -> bool {
        self.entered + self.ended + self.sends > 0 || self.traits_set
    }

    fn add(&mut self, o: Moved) {
        self.traits_set |= o.traits_set;
        self.entered += o.entered;
        self.ended += o.ended;
        self.sends += o.sends;
    }
}

/// A send's fate when it is claimed at the moment it leaves.
#[derive(Debug, PartialEq)]
pub enum Claim<'c> {
    /// It goes (again, for a retry): to this destination, with this entry.
    Go { destination: &'c Destination, outgoing: Box<Outgoing> },
    /// It does not go, for this reason (`exited`, `journey_removed`, `destination_removed`, `consent`,
    /// `pressure_cap`, `channel_cap`); it left the outbox.
    Suppressed(String),
    /// Quiet hours: it waits until then (the object's alarm hands it to the queue again).
    Deferred(Millis),
    /// Nothing by this id waits here.
    Unknown,
}

/// After a write: catches up with time, then what the events and transitions did, then runs what is due.
pub fn on_write(
    config: &Config,
    profile: &mut Profile,
    happened: &[Happened],
    transitions: &[Transition],
    now: Millis,
) -> Moved {
    if config.journeys.is_empty() && profile.journeys.instances.is_empty() && profile.journeys.outbox.is_empty() {
        return Moved::default();
    }
    let mut moved = wake(config, profile, now);
    for h in happened {
        moved.add(on_event(config, profile, h, now));
    }
    for t in transitions {
        moved.add(on_transition(config, profile, t, now));
    }
    moved.add(advance_all(config, profile, now));
    moved
}

/// The alarm: ends instances of journeys no longer configured, runs every step that is due, and drops outbox
/// entries kept long enough.
pub fn wake(config: &Config, profile: &mut Profile, now: Millis) -> Moved {
    let mut moved = Moved::default();
    let gone: Vec<u64> = profile
        .journeys
        .instances
        .iter()
        .filter(|i| config.journeys.iter().all(|j| j.id != i.journey))
        .map(|i| i.id)
        .collect();
    for id in gone {
        end(profile, id, "journey_removed", now);
        moved.ended += 1;
    }
    profile.journeys.outbox.retain(|o| {
        let stale = o.cancelled.is_some() || o.claimed.is_some();
        !(stale && o.created + OUTBOX_KEEP < now)
    });
    moved.add(advance_all(config, profile, now));
    moved
}

/// One applied event: exits first, then holds it releases, then journeys it starts.
fn on_event(config: &Config, profile: &mut Profile, h: &Happened, now: Millis) -> Moved {
    let mut moved = Moved::default();
    // Exits and holds, instance by instance.
    let ids: Vec<u64> = profile.journeys.instances.iter().map(|i| i.id).collect();
    for id in ids {
        let Some(inst) = profile.journeys.instances.iter().find(|i| i.id == id) else { continue };
        let Some(journey) = config.journeys.iter().find(|j| j.id == inst.journey) else { continue };
        let key_of = |filters_ok: bool, match_key: bool| {
            filters_ok
                && (!match_key || key_value(&h.props, journey.reentry.key_property()).as_deref() == Some(&inst.key))
        };
        if h.at < inst.entered_at {
            continue;
        }
        let exit = journey.exits.iter().find(|e| match e {
            Exit::Event { event, filters, match_key } => {
                *event == h.name && key_of(matches(filters, &h.props), *match_key)
            }
            Exit::AudienceExited(_) => false,
        });
        if let Some(Exit::Event { event, .. }) = exit {
            end(profile, id, &format!("exit:{event}"), h.at.min(now));
            moved.ended += 1;
            continue;
        }
        let Some(step) = journey.step(&inst.step).map(|s| &journey.steps[s]) else { continue };
        if let StepKind::Hold { event, filters, match_key, .. } = &step.kind {
            if *event == h.name && h.at >= inst.since && key_of(matches(filters, &h.props), *match_key) {
                let at = h.at.min(now);
                move_to(profile, id, step.next.map(|n| journey.steps[n].id.as_str()), at);
                if step.next.is_none() {
                    moved.ended += 1;
                }
            }
        }
    }
    // Sends still waiting to leave (deferred by quiet hours, or queued) whose journey this event exits: an
    // instance that ended by queueing its last send still does not send after its exit event.
    for o in profile
        .journeys
        .outbox
        .iter_mut()
        .filter(|o| o.claimed.is_none() && o.cancelled.is_none() && h.at >= o.entered_at)
    {
        let Some(journey) = config.journeys.iter().find(|j| j.id == o.journey) else { continue };
        let exits = journey.exits.iter().any(|e| match e {
            Exit::Event { event, filters, match_key } => {
                *event == h.name
                    && matches(filters, &h.props)
                    && (!match_key || key_value(&h.props, journey.reentry.key_property()).as_deref() == Some(&o.key))
            }
            Exit::AudienceExited(_) => false,
        });
        if exits {
            o.cancelled = Some("exited".into());
            moved.ended += 1;
        }
    }
    // Triggers.
    if h.at < now - MAX_TRIGGER_AGE {
        return moved;
    }
    for journey in &config.journeys {
        let Trigger::Event { event, filters, nth } = &journey.trigger else { continue };
        if *event != h.name || !matches(filters, &h.props) {
            continue;
        }
        let key = match journey.reentry.key_property() {
            Some(k) => match key_value(&h.props, Some(k)) {
                Some(v) => v,
                None => continue,
            },
            None => String::new(),
        };
        if let Some(n) = nth {
            // This event makes the nth with this key: count those the profile holds (this one included).
            let prop = journey.reentry.key_property();
            let seen = profile
                .recent
                .iter()
                .filter(|r| r.name == *event && key_is(&r.props, prop, &key) && matches(filters, &r.props))
                .count();
            if seen != *n as usize {
                continue;
            }
        }
        if enter(config, profile, journey, key, h.props.clone(), h.at.min(now), now) {
            moved.entered += 1;
        }
    }
    moved
}

/// One audience transition: exits on leaving, journeys it starts.
fn on_transition(config: &Config, profile: &mut Profile, t: &Transition, now: Millis) -> Moved {
    let mut moved = Moved::default();
    if !t.entered {
        let leaving: Vec<u64> = profile
            .journeys
            .instances
            .iter()
            .filter(|i| {
                config.journeys.iter().any(|j| {
                    j.id == i.journey
                        && j.exits.iter().any(|e| matches!(e, Exit::AudienceExited(a) if *a == t.audience))
                })
            })
            .map(|i| i.id)
            .collect();
        for id in leaving {
            end(profile, id, &format!("exit:audience:{}", t.audience), t.at);
            moved.ended += 1;
        }
    }
    for journey in &config.journeys {
        if let Trigger::Audience { audience, entered } = &journey.trigger {
            if *audience == t.audience
                && *entered == t.entered
                && enter(config, profile, journey, String::new(), BTreeMap::new(), t.at, now)
            {
                moved.entered += 1;
            }
        }
    }
    moved
}

/// Starts an instance if the re-entry rule, the audience filter and the running limit allow.
fn enter(
    config: &Config,
    profile: &mut Profile,
    journey: &Journey,
    key: String,
    mut context: BTreeMap<String, Value>,
    at: Millis,
    now: Millis,
) -> bool {
    let js = &profile.journeys;
    let allowed = match &journey.reentry {
        Reentry::Once => !js.has_entered(&journey.id, ""),
        Reentry::EveryTime { .. } => !js.instances.iter().any(|i| i.journey == journey.id && i.key == key),
    };
    if !allowed {
        return false;
    }
    if let Some(a) = journey.audience {
        if !profile.audiences.is_member(&config.segments[a].id) {
            return false;
        }
    }
    if js.instances.len() >= crate::core::rules::journey::MAX_RUNNING {
        let step = journey.steps[0].id.clone();
        profile.journeys.note_ended(Ended { journey: journey.id.clone(), key, step, at: now, reason: "limit".into() });
        return false;
    }
    while context.len() > MAX_CONTEXT_PROPS {
        context.pop_last();
    }
    let js = &mut profile.journeys;
    js.seq += 1;
    let entered_key = if journey.reentry == Reentry::Once { "" } else { key.as_str() };
    js.note_entered(&journey.id, entered_key);
    js.instances.push(Instance {
        id: js.seq,
        journey: journey.id.clone(),
        key,
        step: journey.steps[0].id.clone(),
        entered_at: at,
        since: at,
        wake: None,
        context,
    });
    true
}

/// Ends an instance: recorded with its reason, its sends that have not left cancelled.
fn end(profile: &mut Profile, id: u64, reason: &str, at: Millis) {
    let js = &mut profile.journeys;
    let Some(pos) = js.instances.iter().position(|i| i.id == id) else { return };
    let inst = js.instances.remove(pos);
    if reason != "completed" {
        for o in js.outbox.iter_mut().filter(|o| o.instance == id && o.journey == inst.journey) {
            o.cancelled.get_or_insert_with(|| if reason.starts_with("exit") { "exited".into() } else { reason.into() });
        }
    }
    js.note_ended(Ended { journey: inst.journey, key: inst.key, step: inst.step, at, reason: reason.to_string() });
}

/// Moves an instance to a step (`None`: it completes) at `at`.
fn move_to(profile: &mut Profile, id: u64, step: Option<&str>, at: Millis) {
    match step {
        Some(s) => {
            if let Some(inst) = profile.journeys.instances.iter_mut().find(|i| i.id == id) {
                inst.step = s.to_string();
                inst.since = at;
                inst.wake = None;
            }
        }
        None => end(profile, id, "completed", at),
    }
}

fn advance_all(config: &Config, profile: &mut Profile, now: Millis) -> Moved {
    let mut moved = Moved::default();
    let ids: Vec<u64> = profile.journeys.instances.iter().map(|i| i.id).collect();
    for id in ids {
        moved.add(advance(config, profile, id, now));
    }
    moved
}

/// Runs one instance's steps that are due at `now`, each at its own instant, until it waits or ends.
fn advance(config: &Config, profile: &mut Profile, id: u64, now: Millis) -> Moved {
    let mut moved = Moved::default();
    // Every loop passes a wait (the compiler checks), so this bound is never reached by a valid journey.
    for _ in 0..(2 * crate::core::rules::journey::MAX_STEPS + 2) {
        let Some(inst) = profile.journeys.instances.iter().find(|i| i.id == id) else { return moved };
        let Some(journey) = config.journeys.iter().find(|j| j.id == inst.journey) else { return moved };
        let Some(index) = journey.step(&inst.step) else {
            end(profile, id, "step_removed", now);
            moved.ended += 1;
            return moved;
        };
        let step = &journey.steps[index];
        let t = inst.since;
        let next_id = |n: Option<usize>| n.map(|n| journey.steps[n].id.as_str());
        let offset = offset_of(config, profile);
        // Steps that wait: set the wake-up on arrival; move on once it has come.
        let waiting_until = match &step.kind {
            StepKind::Wait(d) => Some(Ok(t + d)),
            StepKind::WaitUntilDate { name, offset: by } => {
                Some(match profile.traits.get(name).and_then(|e| date_of(&e.value)) {
                    None => Err("no_date"),
                    Some(date) if date + by < t => Err("date_passed"),
                    Some(date) => Ok(date + by),
                })
            }
            StepKind::WaitWindow { from, to, days } => Some(Ok(next_in_window(t, offset, *from, *to, *days))),
            StepKind::Hold { max, .. } => Some(Ok(t + max)),
            _ => None,
        };
        if let Some(until) = waiting_until {
            let until = match until {
                Ok(u) => u,
                Err(reason) => {
                    end(profile, id, reason, t);
                    moved.ended += 1;
                    return moved;
                }
            };
            if until > now {
                if let Some(inst) = profile.journeys.instances.iter_mut().find(|i| i.id == id) {
                    inst.wake = Some(until);
                }
                return moved;
            }
            let next = match &step.kind {
                StepKind::Hold { timeout, .. } => *timeout,
                _ => step.next,
            };
            if next.is_none() {
                let reason = if matches!(step.kind, StepKind::Hold { .. }) { "hold_timeout" } else { "completed" };
                end(profile, id, reason, until);
                moved.ended += 1;
                return moved;
            }
            move_to(profile, id, next_id(next), until);
            continue;
        }
        let next = match &step.kind {
            StepKind::Branch { arms, default } => {
                let cx = Context::default();
                let scores = scores_of(config, profile, &cx, t.max(0));
                let predictions = for_conditions(config, profile, t.max(0));
                let facts = Facts { profile, cx: &cx, now: t, scores: &scores, predictions: &predictions };
                let segments = evaluate_all(&config.segments, &config.segment_order, &facts);
                arms.iter().find(|(c, _)| c.holds(&facts, &segments)).map_or(*default, |(_, g)| *g)
            }
            StepKind::Split { arms } => {
                let total: u64 = arms.iter().map(|(w, _)| u64::from(*w)).sum();
                let mut pick = sticky_bucket(&profile.id, &journey.id, &step.id) % total.max(1);
                let mut chosen = None;
                for (w, g) in arms {
                    if pick < u64::from(*w) {
                        chosen = Some(*g);
                        break;
                    }
                    pick -= u64::from(*w);
                }
                chosen.unwrap_or(None)
            }
            StepKind::SetTrait { name, value } => {
                profile.traits.insert(name.clone(), TraitEntry { value: value.clone(), at: t });
                moved.traits_set = true;
                step.next
            }
            StepKind::Send { destination, event } => {
                let dest = &config.destinations[*destination];
                let inst = inst.clone();
                let cancelled = refused(config, profile, dest).map(String::from);
                let js = &mut profile.journeys;
                if js.outbox.len() >= MAX_OUTBOX {
                    js.note_ended(Ended {
                        journey: inst.journey.clone(),
                        key: inst.key.clone(),
                        step: step.id.clone(),
                        at: t,
                        reason: "outbox_full".into(),
                    });
                } else {
                    js.sends += 1;
                    let leaves = t.max(now);
                    let quiet = if dest.pressure { quiet_end(&config.pressure.quiet, offset, leaves) } else { None };
                    let due = quiet.unwrap_or(leaves);
                    js.outbox.push(Outgoing {
                        id: delivery_id(&profile.id, js.sends),
                        destination: dest.id.clone(),
                        journey: inst.journey.clone(),
                        step: step.id.clone(),
                        instance: inst.id,
                        key: inst.key.clone(),
                        event: event.clone(),
                        entered_at: inst.entered_at,
                        context: inst.context.clone(),
                        created: leaves,
                        due,
                        enqueued: false,
                        claimed: None,
                        cancelled,
                    });
                    moved.sends += 1;
                }
                step.next
            }
            _ => step.next,
        };
        if next.is_none() {
            end(profile, id, "completed", t);
            moved.ended += 1;
            return moved;
        }
        move_to(profile, id, next_id(next), t);
    }
    end(profile, id, "loop", now);
    moved.ended += 1;
    moved
}

/// The sends due at `now` that wait to be handed to the delivery queue (after the profile is stored).
/// A cancelled one never is: `take_cancelled` hands it to the log instead.
pub fn to_enqueue(profile: &Profile, now: Millis) -> Vec<Outgoing> {
    profile.journeys.outbox.iter().filter(|o| !o.enqueued && o.cancelled.is_none() && o.due <= now).cloned().collect()
}

/// Removes the sends cancelled before they were queued (refused when queued, an exit, a merge) and answers them,
/// for the delivery log with their reasons: nothing of theirs is queued or claimed. One already queued stays
/// until its claim, which records why it did not leave.
pub fn take_cancelled(profile: &mut Profile) -> Vec<Outgoing> {
    let outbox = std::mem::take(&mut profile.journeys.outbox);
    let (gone, kept) = outbox.into_iter().partition(|o| !o.enqueued && o.cancelled.is_some());
    profile.journeys.outbox = kept;
    gone
}

/// Why a send to `destination` cannot leave for this person (`None`: it may), checked when it is queued and again
/// as it leaves: no consent to the destination's purpose where the person is, or an address on it nobody proved
/// (an address a page set could be anyone's: `model::contact`).
pub fn refused(config: &Config, profile: &Profile, destination: &Destination) -> Option<&'static str> {
    let country = profile.journeys.country.as_deref();
    if permit_send(&config.consent, profile, destination.purpose, country).is_none() {
        return Some("consent");
    }
    if destination.to.iter().any(|t| profile.traits.contains_key(t) && !profile.contact_verified(t)) {
        return Some("contact_unverified");
    }
    None
}

/// Notes sends as handed to the queue.
pub fn mark_enqueued(profile: &mut Profile, ids: &[String]) {
    for o in profile.journeys.outbox.iter_mut().filter(|o| ids.contains(&o.id)) {
        o.enqueued = true;
    }
}

/// Re-checks a send as it leaves and, the first time it may go, counts it in the pressure budget.
pub fn claim<'c>(config: &'c Config, profile: &mut Profile, id: &str, now: Millis) -> Claim<'c> {
    let Some(pos) = profile.journeys.outbox.iter().position(|o| o.id == id) else { return Claim::Unknown };
    let o = profile.journeys.outbox[pos].clone();
    let suppress = |profile: &mut Profile, reason: &str| {
        profile.journeys.outbox.remove(pos);
        Claim::Suppressed(reason.to_string())
    };
    if let Some(reason) = &o.cancelled {
        return suppress(profile, reason);
    }
    let Some(destination) = config.destinations.iter().find(|d| d.id == o.destination) else {
        return suppress(profile, "destination_removed");
    };
    if config.journeys.iter().all(|j| j.id != o.journey) {
        return suppress(profile, "journey_removed");
    }
    if let Some(reason) = refused(config, profile, destination) {
        return suppress(profile, reason);
    }
    if o.claimed.is_some() {
        return Claim::Go { destination, outgoing: Box::new(o) };
    }
    let counted = destination.pressure;
    if let Some(until) = quiet_end(&config.pressure.quiet, offset_of(config, profile), now).filter(|_| counted) {
        let entry = &mut profile.journeys.outbox[pos];
        entry.due = until;
        entry.enqueued = false;
        return Claim::Deferred(until);
    }
    if let Some(reason) = over_budget(config, profile, &destination.channel, now).filter(|_| counted) {
        return suppress(profile, reason);
    }
    let js = &mut profile.journeys;
    js.outbox[pos].claimed = Some(now);
    if counted {
        js.ledger.push_back(Sent { at: now, channel: destination.channel.clone(), id: o.id.clone() });
    }
    let keep_from = now - config.pressure.longest_period();
    while js.ledger.len() > MAX_LEDGER || js.ledger.front().is_some_and(|s| s.at <= keep_from) {
        js.ledger.pop_front();
    }
    let outgoing = Box::new(js.outbox[pos].clone());
    Claim::Go { destination, outgoing }
}

/// Removes a send once the destination took it (`delivered`) or its delivery gave up; one that never arrived
/// stops counting in the budget.
///
/// A delivered send counts in its channel's statistics (`model::behaviour`) at the instant it was claimed, which
/// the responses that come back are measured against: the person's response rates and pressure sensitivity.
pub fn settle(profile: &mut Profile, id: &str, delivered: bool) -> bool {
    let js = &mut profile.journeys;
    let before = js.outbox.len();
    js.outbox.retain(|o| o.id != id);
    let settled = js.outbox.len() != before;
    if !delivered {
        js.ledger.retain(|s| s.id != id);
    } else if settled {
        if let Some(sent) = js.ledger.iter().find(|s| s.id == id) {
            let (channel, at) = (sent.channel.clone(), sent.at);
            if let Some(stats) = profile.behaviour.channel(&channel) {
                stats.record_send(at);
            }
        }
    }
    settled
}

/// Notes where the person was last seen (a request's signals), for local time and the consent model.
pub fn note_location(profile: &mut Profile, utc_offset: Option<i32>, country: Option<&str>) -> bool {
    let js = &mut profile.journeys;
    let mut changed = false;
    if utc_offset.is_some() && js.utc_offset != utc_offset {
        js.utc_offset = utc_offset;
        changed = true;
    }
    if let Some(c) = country {
        if js.country.as_deref() != Some(c) {
            js.country = Some(c.to_string());
            changed = true;
        }
    }
    changed
}

fn matches(filters: &[PropertyFilter], props: &BTreeMap<String, Value>) -> bool {
    filters.iter().all(|f| f.matches(props))
}

/// The entry key's value in an event's properties, as text.
fn key_value(props: &BTreeMap<String, Value>, key: Option<&str>) -> Option<String> {
    let Some(key) = key else { return Some(String::new()) };
    match props.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(if n.fract() == 0.0 { format!("{}", *n as i64) } else { n.to_string() }),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether an event's entry key is `want` (`key_value`, without making its text when it is a string: an nth
/// trigger asks this of every recent event, for each event that could be the nth).
fn key_is(props: &BTreeMap<String, Value>, key: Option<&str>, want: &str) -> bool {
    match key.map(|k| props.get(k)) {
        None => want.is_empty(),
        Some(Some(Value::String(s))) => !s.is_empty() && s == want,
        Some(_) => key_value(props, key).as_deref() == Some(want),
    }
}

/// A trait's date: an ISO 8601 date or date-time, or milliseconds since the epoch.
fn date_of(v: &Value) -> Option<Millis> {
    match v {
        Value::String(s) => parse_iso8601(s),
        Value::Number(n) if n.is_finite() => Some(*n as Millis),
        _ => None,
    }
}

/// A number from the person, the journey and the step: the same arm of a split for the same person every time.
fn sticky_bucket(profile: &str, journey: &str, step: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest([profile, "\u{1f}", journey, "\u{1f}", step].concat().as_bytes());
    u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::time::parse_iso8601;
    use crate::core::base::time::HOUR;
    use crate::core::rules::pressure::ONSITE;

    fn t(s: &str) -> Millis {
        parse_iso8601(s).unwrap()
    }

    /// A send claimed twice (a retry) goes twice but counts once; one that never arrived stops counting; quiet
    /// hours at the moment it leaves defer it; an unknown id is unknown.
    #[test]
    fn a_claim_counts_once_defers_in_quiet_hours_and_settles() {
        let config = crate::core::rules::compile_str(
            r#"{"consent": {"model": "opt-out"},
                "destinations": [{"id": "mail", "type": "webhook", "url": "http://x/h", "secretEnv": "S",
                                  "purpose": "marketing", "channel": "email"}],
                "pressure": {"caps": [{"max": 1, "per": "1d"}], "quietHours": {"from": 22, "to": 7}},
                "journeys": [{"id": "j", "trigger": {"event": "Go"}, "reentry": "always",
                              "steps": [{"id": "s", "send": "mail", "event": "Hello"}]}]}"#,
        )
        .unwrap();
        let mut p = Profile::new("p".into(), 0);
        let at = t("2026-11-30T12:00:00Z");
        let go = Happened { name: "Go".into(), props: BTreeMap::new(), at };
        on_write(&config, &mut p, std::slice::from_ref(&go), &[], at);
        let id = p.journeys.outbox[0].id.clone();
        assert!(matches!(claim(&config, &mut p, &id, at), Claim::Go { .. }));
        assert!(matches!(claim(&config, &mut p, &id, at + 60_000), Claim::Go { .. }), "a retry goes again");
        assert_eq!(p.journeys.ledger.len(), 1, "and is counted once");
        assert!(settle(&mut p, &id, false) && p.journeys.ledger.is_empty(), "a send that never arrived stops counting");
        assert_eq!(claim(&config, &mut p, &id, at), Claim::Unknown);
        // At 23:00 UTC (no offset known: UTC) a claim is deferred to 07:00, and handed to the queue again then.
        let late = t("2026-11-30T23:00:00Z");
        on_write(&config, &mut p, &[Happened { at: t("2026-11-30T21:59:00Z"), ..go }], &[], t("2026-11-30T21:59:00Z"));
        let id = p.journeys.outbox[0].id.clone();
        mark_enqueued(&mut p, std::slice::from_ref(&id));
        assert_eq!(claim(&config, &mut p, &id, late), Claim::Deferred(t("2026-12-01T07:00:00Z")));
        assert!(to_enqueue(&p, late).is_empty() && p.journeys.due() == Some(t("2026-12-01T07:00:00Z")));
        let morning = t("2026-12-01T07:00:00Z");
        assert_eq!(to_enqueue(&p, morning).len(), 1);
        assert!(matches!(claim(&config, &mut p, &id, morning), Claim::Go { .. }));
        // The budget (one a day) is spent: the next send is suppressed with its reason.
        on_write(
            &config,
            &mut p,
            &[Happened { name: "Go".into(), props: BTreeMap::new(), at: morning + HOUR }],
            &[],
            morning + HOUR,
        );
        let id = p.journeys.outbox.last().unwrap().id.clone();
        assert_eq!(claim(&config, &mut p, &id, morning + HOUR), Claim::Suppressed("pressure_cap".into()));
    }

    /// The rules a send obeys when it is queued and as it leaves, one row each: it goes only to an address
    /// somebody proved (a page's own address is anyone's), and only with consent under the model of the person's
    /// region.
    #[test]
    fn a_send_goes_only_to_a_proven_address_with_consent_where_the_person_is() {
        use crate::core::model::contact::ProvenBy;
        let config = crate::core::rules::compile_str(
            r#"{"consent": {"model": "opt-out", "regions": {"DE": "opt-in"}},
                "destinations": [
                    {"id": "mail", "type": "webhook", "url": "http://x/h", "secretEnv": "S", "purpose": "marketing",
                     "channel": "email", "traits": ["email", "firstName"]},
                    {"id": "sms", "type": "webhook", "url": "http://x/s", "secretEnv": "S", "purpose": "marketing",
                     "channel": "sms", "payload": {"format": "json", "template": "{\"to\": \"{{traits.phone}}\"}"}},
                    {"id": "chat", "type": "webhook", "url": "http://x/c", "secretEnv": "S", "purpose": "marketing",
                     "channel": "chat", "traits": ["handle"], "to": ["handle"]},
                    {"id": "crm", "type": "webhook", "url": "http://x/crm", "secretEnv": "S", "purpose": "marketing",
                     "channel": "crm", "traits": ["firstName"], "pressure": false}],
                "journeys": [{"id": "j", "trigger": {"event": "Go"}, "reentry": "always",
                              "steps": [{"id": "s", "send": "mail", "event": "Hello"}]}]}"#,
        )
        .unwrap();
        let by_id = |id: &str| config.destinations.iter().find(|d| d.id == id).unwrap();
        assert_eq!(by_id("mail").to, ["email"], "an e-mail carried is an address");
        assert_eq!(by_id("sms").to, ["phone"], "so is a phone in a template");
        assert_eq!(by_id("chat").to, ["handle"]);
        assert!(by_id("crm").to.is_empty(), "a first name addresses nobody");
        assert!(config.contact_traits.contains(&"handle".to_string()));

        let text = |s: &str| Value::String(s.into());
        type Row<'a> = (&'a str, &'a str, Option<&'a str>, Option<(&'a str, ProvenBy)>, Option<&'a str>, &'a str);
        // destination, trait, the value the profile holds, the value proven (and by whom), country, outcome.
        let rows: [Row; 11] = [
            ("mail", "email", Some("ana@x.example"), None, None, "contact_unverified"),
            ("mail", "email", Some("ana@x.example"), Some(("ana@x.example", ProvenBy::Server)), None, "go"),
            ("mail", "email", Some("ana@x.example"), Some(("ana@x.example", ProvenBy::Token)), None, "go"),
            ("mail", "email", Some("ana@x.example"), Some(("ana@x.example", ProvenBy::Configuration)), None, "go"),
            // A page replaced the proven address with its own: the new one is nobody's proof.
            (
                "mail",
                "email",
                Some("victim@y.example"),
                Some(("ana@x.example", ProvenBy::Server)),
                None,
                "contact_unverified",
            ),
            ("sms", "phone", Some("+4420"), None, None, "contact_unverified"),
            ("sms", "phone", Some("+4420"), Some(("+4420", ProvenBy::Server)), None, "go"),
            ("chat", "handle", Some("@ana"), None, None, "contact_unverified"),
            ("crm", "firstName", Some("Click http://phish.example"), None, None, "go"),
            // Opt-out where the person is unknown or elsewhere; opt-in in Germany, where nothing was granted.
            ("mail", "email", Some("ana@x.example"), Some(("ana@x.example", ProvenBy::Server)), Some("US"), "go"),
            ("mail", "email", Some("ana@x.example"), Some(("ana@x.example", ProvenBy::Server)), Some("DE"), "consent"),
        ];
        for (destination, name, held, proven, country, want) in rows {
            let at = t("2026-11-30T12:00:00Z");
            let mut p = Profile::new("p".into(), 0);
            if let Some(v) = held {
                p.traits.insert(name.into(), TraitEntry { value: text(v), at: 1 });
            }
            if let Some((v, by)) = proven {
                p.contacts.prove(name, &text(v), 1, by);
            }
            p.journeys.country = country.map(String::from);
            // The same rule holds when the send is queued (where a refused one is cancelled at once) as when it
            // leaves.
            let queued = refused(&config, &p, by_id(destination)).unwrap_or("go");
            assert_eq!(queued, want, "queued: {destination} {name}={held:?} proven {proven:?} in {country:?}");
            p.journeys.outbox.push(pending("d1", destination, at));
            let got = match claim(&config, &mut p, "d1", at) {
                Claim::Go { .. } => "go".to_string(),
                Claim::Suppressed(reason) => reason,
                other => format!("{other:?}"),
            };
            assert_eq!(got, want, "{destination} {name}={held:?} proven {proven:?} in {country:?}");
        }
    }

    /// An nth trigger's entry key, as it counts the recent events with the same key: one row each.
    #[test]
    fn an_entry_key_matches_only_its_own_value() {
        let props: BTreeMap<String, Value> = [
            ("sku".to_string(), Value::String("a".into())),
            ("empty".to_string(), Value::String(String::new())),
            ("n".to_string(), Value::Number(3.0)),
        ]
        .into_iter()
        .collect();
        let rows = [
            (None, "", true),
            (None, "a", false),
            (Some("sku"), "a", true),
            (Some("sku"), "b", false),
            (Some("empty"), "", false),
            (Some("n"), "3", true),
            (Some("n"), "4", false),
            (Some("missing"), "", false),
        ];
        for (key, want, is) in rows {
            assert_eq!(key_is(&props, key, want), is, "{key:?} = {want:?}");
            assert_eq!(key_value(&props, key).as_deref() == Some(want), is, "key_value agrees: {key:?} = {want:?}");
        }
    }

    /// A send of journey `j`, step `s`, waiting in the outbox to be claimed.
    fn pending(id: &str, destination: &str, at: Millis) -> Outgoing {
        Outgoing {
            id: id.into(),
            destination: destination.into(),
            journey: "j".into(),
            step: "s".into(),
            instance: 1,
            key: String::new(),
            event: "Hello".into(),
            entered_at: at,
            created: at,
            due: at,
            enqueued: true,
            claimed: None,
            cancelled: None,
            context: BTreeMap::new(),
        }
    }

    /// The budget's edges: the pressure slots' impressions count as `onsite` sends and in the overall caps, never
    /// in another channel's; the ledger forgets what no cap counts any more and never holds more than its bound.
    #[test]
    fn impressions_count_only_as_onsite_and_the_ledger_forgets_what_no_cap_counts() {
        let config = crate::core::rules::compile_str(
            r#"{"consent": {"model": "opt-out"},
                "slots": {"hero": {"blocks": [{"id": "promo", "html": "<p>Promo</p>"}]}},
                "destinations": [{"id": "mail", "type": "webhook", "url": "http://x/h", "secretEnv": "S",
                                  "purpose": "marketing", "channel": "email"},
                                 {"id": "crm", "type": "webhook", "url": "http://x/c", "secretEnv": "S",
                                  "purpose": "marketing", "channel": "crm"}],
                "pressure": {"caps": [{"max": 1000, "per": "1d"}], "channels": {"email": [{"max": 1, "per": "1d"}],
                             "onsite": [{"max": 1, "per": "1d"}]}, "slots": ["hero"]},
                "journeys": [{"id": "j", "trigger": {"event": "Go"}, "reentry": "always",
                              "steps": [{"id": "s", "send": "mail", "event": "Hello"}]}]}"#,
        )
        .unwrap();
        let at = t("2026-11-30T12:00:00Z");
        let mut p = Profile::new("p".into(), 0);
        p.shown.record(&[crate::core::model::shown::Impression {
            block: "promo".into(),
            variant: String::new(),
            experiment: None,
            at: at - HOUR,
        }]);
        assert_eq!(over_budget(&config, &p, ONSITE, at), Some("channel_cap"), "the impression spent the onsite cap");
        // Old sends, a day and more ago, are forgotten once no cap counts them.
        for i in 0..5 {
            p.journeys.ledger.push_back(Sent { at: at - 2 * DAY - i, channel: "sms".into(), id: format!("old{i}") });
        }
        p.journeys.outbox.push(pending("d1", "mail", at));
        assert!(matches!(claim(&config, &mut p, "d1", at), Claim::Go { .. }), "an impression is no e-mail");
        assert_eq!(p.journeys.ledger.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), ["d1"]);
        // A full ledger of recent sends keeps its bound, and the newest.
        for i in 1..MAX_LEDGER as Millis {
            p.journeys.ledger.push_back(Sent { at: at - HOUR + i, channel: "sms".into(), id: format!("recent{i}") });
        }
        p.journeys.outbox.push(pending("d2", "crm", at));
        assert!(matches!(claim(&config, &mut p, "d2", at), Claim::Go { .. }));
        assert_eq!(p.journeys.ledger.len(), MAX_LEDGER, "bounded");
        assert_eq!(p.journeys.ledger.back().map(|s| s.id.as_str()), Some("d2"), "the newest send kept");
        assert!(p.journeys.ledger.iter().all(|s| s.at > at - DAY), "what no cap counts is forgotten");
    }

    #[test]
    fn sticky_buckets_do_not_move() {
        assert_eq!(sticky_bucket("p", "j", "s"), sticky_bucket("p", "j", "s"));
        assert_ne!(sticky_bucket("p", "j", "s"), sticky_bucket("q", "j", "s"));
    }
}
