//! One profile's writer, as a sans-I/O step: absorb the profiles an apply request links (`merge::link`), then
//! apply its events and impressions (`apply::apply_events`). The profile's Durable Object only fetches and
//! carries out; `tests/cases.rs` drives the same function with maps for storage, so the two cannot drift.
//!
//! The contract, in the order the shell runs it:
//! 1. read the profile it holds, and ask each profile of `merge::pending_links` to hand itself over;
//! 2. `write(current, fetched, request, config, now)`;
//! 3. give back every profile of `returned` (a merge that did not stand), as it was;
//! 4. when `store` is set: store `profile`, then index each of `index` and `repoint` to it (unless
//!    `index_entry_stays`), delete the snapshots of `absorbed_ids`, and count `outcomes`;
//! 5. hand `transitions` (and `absorbed_ids`, which leave every audience with their profiles) to the audience
//!    outlet, once the profile is stored;
//! 6. hand the sends that are due (`journeys::to_enqueue`) to the delivery queue, once the profile is stored, and
//!    note them enqueued (`journeys::mark_enqueued`, stored again);
//! 7. wake the profile at the earliest of its `audiences.due` and `journeys.due()`;
//! 8. answer `answer`.
//!
//! The journeys run after the audiences (`journeys::on_write`: the request's events and every transition, those
//! time alone made before it included); a `setTrait` step that moves an audience is tracked once more, and its
//! transitions reach the journeys too.

use crate::core::base::sort;
use crate::core::base::time::Millis;
use crate::core::engine::apply::{apply_events, ApplyAnswer, ApplyOutcome, ApplyRequest, Link};
use crate::core::engine::audiences::{catch_up, track};
use crate::core::engine::journeys::{self, note_location, Moved};
use crate::core::engine::merge::link;
use crate::core::model::audience::{Cause, Transition};
use crate::core::model::identity::Identity;
use crate::core::model::profile::Profile;
use crate::core::model::shown::Outcome;
use crate::core::rules::Config;

/// Everything a write decided, for the shell to carry out.
#[derive(Debug, Default)]
pub struct Written {
    /// The profile after the request (`None`: there is still none, as consent allowed nothing).
    pub profile: Option<Profile>,
    /// Whether `profile` changed and must be stored, with its index entries, deletions and counts.
    pub store: bool,
    /// The identities the events and the merges added, to index to this profile.
    pub index: Vec<Identity>,
    /// Identities a merge brought here: their index entries move to this profile whatever they say now.
    pub repoint: Vec<Identity>,
    /// Profiles handed over for a merge that did not stand, to give back unchanged.
    pub returned: Vec<Profile>,
    /// Profiles absorbed, whose snapshots go.
    pub absorbed_ids: Vec<String>,
    /// Experiment counts to change once the profile is stored: what merges withdrew, then what the events and
    /// impressions added.
    pub outcomes: Vec<Outcome>,
    /// Audience entries and exits, in order: what time alone or new definitions changed before the request
    /// (`audiences::catch_up`), then what the request did (`audiences::track`).
    pub transitions: Vec<Transition>,
    /// The events stored, as stored, for the export.
    pub events: Vec<crate::core::model::event::Event>,
    pub answer: ApplyAnswer,
}

/// Whether the index entry of `id`, which names `existing` now, stays as it is when profile `here` is stored: an
/// identity indexed to another profile moves here only when a merge brought it (`repoint`); otherwise linking the
/// two would be a merge that has not happened.
pub fn index_entry_stays(id: &Identity, existing: Option<&str>, here: &str, repoint: &[Identity]) -> bool {
    existing.is_some_and(|e| e != here && !repoint.contains(id))
}

/// The journeys' part of a profile that decides whether it must be stored again (its wake-up and size).
fn current_journeys(p: Option<&Profile>) -> Option<(Option<Millis>, usize, usize)> {
    p.map(|p| (p.journeys.due(), p.journeys.instances.len(), p.journeys.outbox.len()))
}

/// A `setTrait` step changed traits: the audiences are tracked again, and what that moved reaches the journeys
/// (once: a trait they set in turn waits for the next write).
fn after_traits_set(config: &Config, p: &mut Profile, moved: Moved, now: Millis) -> Vec<Transition> {
    if !moved.traits_set {
        return Vec::new();
    }
    let more = track(config, p, now, Cause::Event);
    if !more.is_empty() {
        journeys::on_write(config, p, &[], &more, now);
    }
    more
}

/// What time alone changed in a stored profile, as its alarm (or the re-evaluation pass) finds it: the audiences
/// caught up (`audiences::catch_up`), then the journeys (`journeys::on_write` with those transitions and no
/// event). Answers the transitions and whether the profile must be stored.
pub fn refresh(config: &Config, profile: &mut Profile, now: Millis) -> (Vec<Transition>, bool) {
    let before = (profile.audiences.digest, profile.audiences.due, current_journeys(Some(profile)));
    let mut transitions = catch_up(config, profile, now);
    let moved = journeys::on_write(config, profile, &[], &transitions, now);
    let changed = moved.changed();
    transitions.extend(after_traits_set(config, profile, moved, now));
    let after = (profile.audiences.digest, profile.audiences.due, current_journeys(Some(profile)));
    let store = changed || !transitions.is_empty() || before != after;
    (transitions, store)
}

/// The transitions journeys see: all of them for a live write; for an import, only those within the journeys'
/// horizon (`journeys::MAX_TRIGGER_AGE`), so that a customer who entered an audience last year through imported
/// history starts no journey now. The audience index gets them all, at their historical times.
pub fn recent_for_journeys(transitions: &[Transition], imported: bool, now: Millis) -> Vec<Transition> {
    transitions.iter().filter(|t| !imported || t.at >= now - journeys::MAX_TRIGGER_AGE).cloned().collect()
}

/// A new person's imported history as it happened: its events a timestamp at a time, the audiences caught up by
/// time alone to each and evaluated after it at its instant, so each transition has its historical time (the
/// caller then catches up to `now`).
fn apply_history(
    profile: Option<Profile>,
    mut request: ApplyRequest,
    config: &Config,
    now: Millis,
    transitions: &mut Vec<Transition>,
) -> (Option<Profile>, ApplyOutcome) {
    let mut events = std::mem::take(&mut request.events);
    sort::sort_by_key(&mut events, |e| e.timestamp);
    let mut events = events.into_iter().peekable();
    let (mut profile, mut out) = (profile, ApplyOutcome::default());
    while let Some(first) = events.next() {
        let at = first.timestamp.min(now);
        let mut group = vec![first];
        group.extend(std::iter::from_fn(|| events.next_if(|e| e.timestamp.min(now) == at)));
        if let Some(p) = profile.as_mut() {
            transitions.extend(catch_up(config, p, at));
        }
        let (p, o) = apply_events(profile, ApplyRequest { events: group, ..request.clone() }, config);
        profile = p;
        out.absorb(o);
        if let Some(p) = profile.as_mut() {
            transitions.extend(track(config, p, at, Cause::Event));
        }
    }
    (profile, out)
}

/// Links, then applies: see the module's contract.
pub fn write(
    current: Option<Profile>,
    fetched: Vec<(Link, Profile)>,
    request: ApplyRequest,
    config: &Config,
    now: Millis,
) -> Written {
    let signals = request.signals.clone();
    let mut current = current;
    let mut transitions = match current.as_mut() {
        Some(p) => catch_up(config, p, now),
        None => Vec::new(),
    };
    // What an evaluation changes besides transitions: the definitions evaluated and the next change by time.
    let audiences_before = current.as_ref().map(|p| (p.audiences.digest, p.audiences.due));
    // An import's history (`Event::imported`): its audience changes are at the imported times, then time catches
    // up to now at each exact instant; journeys see only what falls within their horizon.
    let newest_imported = request
        .events
        .iter()
        .all(|e| e.imported)
        .then(|| request.events.iter().map(|e| e.timestamp).max())
        .flatten()
        .map(|t| t.min(now));
    // A new person's imported history is evaluated as it happened (`apply_history`); history older than a profile
    // already evaluated at `now` is evaluated once, at its newest time.
    let as_it_happened = newest_imported.is_some() && current.is_none() && fetched.is_empty();
    let linked = link(current, fetched, &request, config, now);
    let merged = linked.absorbed_ids.len();
    let changed_by_link = merged > 0 || !linked.admitted.is_empty();
    let journeys_before = current_journeys(linked.profile.as_ref());
    let cause = if merged > 0 { Cause::Merge } else { Cause::Event };
    let (mut profile, outcome) = if as_it_happened {
        apply_history(linked.profile, request, config, now, &mut transitions)
    } else {
        apply_events(linked.profile, request, config)
    };
    let mut journeys_changed = false;
    if let Some(p) = profile.as_mut() {
        if !as_it_happened {
            transitions.extend(track(config, p, newest_imported.unwrap_or(now), cause));
        }
        if newest_imported.is_some() {
            transitions.extend(catch_up(config, p, now));
        }
        journeys_changed |= note_location(p, signals.utc_offset_minutes, signals.country.as_deref());
        let current = recent_for_journeys(&transitions, newest_imported.is_some(), now);
        let moved = journeys::on_write(config, p, &outcome.happened, &current, now);
        journeys_changed |= moved.changed() || current_journeys(Some(p)) != journeys_before;
        transitions.extend(after_traits_set(config, p, moved, now));
    }
    let audiences_changed = journeys_changed
        || !transitions.is_empty()
        || (audiences_before.is_some()
            && profile.as_ref().map(|p| (p.audiences.digest, p.audiences.due)) != audiences_before);
    let store = profile.is_some() && (outcome.changed || changed_by_link || audiences_changed);
    let answer = ApplyAnswer {
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        refused: outcome.refused,
        merged,
        over_budget: outcome.over_budget,
        ..ApplyAnswer::default()
    };
    if !store {
        return Written { profile, returned: linked.returned, answer, ..Written::default() };
    }
    let mut index = outcome.new_identities;
    index.extend(linked.admitted);
    let mut outcomes = linked.outcomes;
    outcomes.extend(outcome.outcomes);
    Written {
        profile,
        store,
        index,
        repoint: linked.repoint,
        returned: linked.returned,
        absorbed_ids: linked.absorbed_ids,
        outcomes,
        transitions,
        events: outcome.kept,
        answer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::identity::USER_ID;

    #[test]
    fn an_index_entry_moves_only_to_its_own_profile_or_with_a_merge() {
        let id = Identity::new(USER_ID, "u1");
        assert!(!index_entry_stays(&id, None, "p1", &[]), "an identity the index does not know is indexed");
        assert!(!index_entry_stays(&id, Some("p1"), "p1", &[]), "its own entry is rewritten (expiry follows)");
        assert!(index_entry_stays(&id, Some("p2"), "p1", &[]), "another profile's entry stays without a merge");
        assert!(!index_entry_stays(&id, Some("p2"), "p1", std::slice::from_ref(&id)), "a merge takes it over");
    }
}
