//! Identity resolution: which identities a profile may hold (per-type limits and priorities, a blocklist of
//! junk values), merging one profile into another, and splitting a wrong merge back apart.
//!
//! Every merge is recorded on the survivor (when, by which event, what it brought), and the latest merges keep
//! what a split needs, so a profile can say why it holds an identity and an administrator can undo a merge.

use crate::core::base::sort;
use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyRequest, Link};
use crate::core::model::event::{Event, EventKind};
use crate::core::model::identity::{Identity, ProfileIdKey, ANONYMOUS_ID, USER_ID};
use crate::core::model::profile::{
    budget, MergeRecord, Profile, RefusedIdentity, MAX_MERGE_RECORDS, MAX_REFUSED, MAX_SPLITTABLE_MERGES,
};
use crate::core::model::shown::Outcome;
use crate::core::rules::identity::IdentityRules;
use crate::core::rules::Config;
use std::collections::{BTreeMap, BTreeSet};

/// Limit and priority for identifier types the configuration does not name.
const DEFAULT_LIMIT: u32 = 5;
const DEFAULT_PRIORITY: i64 = 5;

/// Whether a value is junk that must never create or merge a profile (`null`, `undefined`, `0`, `anonymous`,
/// empty, and whatever else the blocklist names; compared trimmed and ignoring case).
pub fn is_junk(rules: &IdentityRules, value: &str) -> bool {
    let v = value.trim();
    v.is_empty() || rules.blocklist.iter().any(|b| b.eq_ignore_ascii_case(v))
}

fn limit(rules: &IdentityRules, kind: &str) -> usize {
    rules.identifiers.get(kind).map_or(DEFAULT_LIMIT, |r| r.limit) as usize
}

/// What an identity weighs against the profile's identity budget.
fn identity_weight(id: &Identity) -> usize {
    id.kind.len() + id.value.len() + 16
}

fn identity_bytes(ids: &[Identity]) -> usize {
    ids.iter().map(identity_weight).sum()
}

fn priority(rules: &IdentityRules, kind: &str) -> i64 {
    rules.identifiers.get(kind).map_or(DEFAULT_PRIORITY, |r| r.priority)
}

impl Profile {
    /// Records an identity the profile did not take.
    pub fn refuse(&mut self, identity: Identity, reason: String, at: Millis, message_id: &str) {
        self.refused.push(RefusedIdentity { at, identity, reason, message_id: message_id.to_string() });
        if self.refused.len() > MAX_REFUSED {
            let excess = self.refused.len() - MAX_REFUSED;
            self.refused.drain(..excess);
        }
    }

    /// Records an identity claim that was not believed (`core::model::trust`), once per identity: a visitor repeating
    /// the claim does not push older refusals out.
    pub fn refuse_claim(&mut self, identity: Identity, code: &str, at: Millis, message_id: &str) {
        if !self.refused.iter().any(|r| r.identity == identity) {
            self.refuse(identity, ["unverified claim: ", code].concat(), at, message_id);
        }
    }

    /// Takes an identity if the rules allow it: not junk, and within its type's limit. A refusal is recorded.
    pub fn admit(&mut self, id: Identity, rules: &IdentityRules, at: Millis, message_id: &str) -> bool {
        if self.has_identity(&id) {
            return true;
        }
        if is_junk(rules, &id.value) {
            return false;
        }
        let held = self.identities.iter().filter(|i| i.kind == id.kind).count();
        let max = limit(rules, &id.kind);
        if held >= max {
            let reason = format!("the profile already holds {held} {} (the limit is {max})", id.kind);
            self.refuse(id, reason, at, message_id);
            return false;
        }
        if identity_bytes(&self.identities) + identity_weight(&id) > budget::IDENTITIES {
            let reason = format!("the profile's identities would pass their budget of {} bytes", budget::IDENTITIES);
            self.refuse(id, reason, at, message_id);
            return false;
        }
        self.identities.push(id);
        true
    }
}

/// Why a merge did not happen.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeRefused {
    pub reason: String,
}

/// Merges `other` into `survivor`, because the event `message_id` said that `linked` (an identity of `other`)
/// belongs to the same person as `because` (an identity of the survivor, usually its `user_id`).
///
/// Traits: the later event wins, per trait. Counts, aggregates and computed traits: summed (an event both
/// profiles recorded counts once). History and the dedup window: united by `messageId`. Consent: the most
/// recent decision per purpose, and both trails. First and last seen: the earliest and the latest.
///
/// Identity limits: where the union would hold more identities of a type than its limit allows, a type that
/// ranks at least as high as `because` (a lower or equal `priority` number) refuses the whole merge, and the
/// refusal of `linked` is recorded on the survivor (so two `user_id`s never end up on one profile); a
/// lower-ranking type keeps the survivor's identities and refuses the newcomers beyond the limit.
pub fn absorb(
    survivor: &mut Profile,
    mut other: Profile,
    rules: &IdentityRules,
    because: &Identity,
    linked: &Identity,
    at: Millis,
    message_id: &str,
) -> Result<Vec<Outcome>, MergeRefused> {
    // Identities first: a refused merge must change nothing but the refusal record.
    let kinds: BTreeSet<String> = sort::set_of(other.identities.iter().map(|i| i.kind.clone()));
    let trigger_rank = priority(rules, &because.kind);
    let mut incoming = Vec::new();
    let mut over_limit = Vec::new();
    for kind in &kinds {
        let held: Vec<&Identity> = survivor.identities.iter().filter(|i| i.kind == *kind).collect();
        let new: Vec<&Identity> = other.identities.iter().filter(|i| i.kind == *kind && !held.contains(i)).collect();
        let max = limit(rules, kind);
        if held.len() + new.len() > max && priority(rules, kind) <= trigger_rank {
            let reason = format!(
                "merging profile {} would give this profile {} {kind} identities (the limit is {max})",
                other.id,
                held.len() + new.len()
            );
            survivor.refuse(linked.clone(), reason.clone(), at, message_id);
            return Err(MergeRefused { reason });
        }
        let room = max.saturating_sub(held.len());
        for (i, id) in new.into_iter().enumerate() {
            // Within the type's limit and the profile's identity budget; the rest is refused like over-limit ids.
            let fits = identity_bytes(&survivor.identities) + identity_bytes(&incoming) + identity_weight(id)
                <= budget::IDENTITIES;
            if i < room && fits {
                incoming.push(id.clone());
            } else {
                over_limit.push(id.clone());
            }
        }
    }

    let first_seen_before = survivor.first_seen;
    let last_seen_before = survivor.last_seen;

    // Each part of the profile by its own rule, in this order (counts read the survivor's own message ids, so
    // they come before the history's union).
    let replaced_traits = survivor.absorb_traits(&other.traits);
    // Proofs of contact points follow the values that won; a proof of a value that lost is dropped.
    let traits = &survivor.traits;
    survivor.contacts.absorb(&other.contacts, |name| traits.get(name).map(|t| t.value.clone()));
    let replaced_grants = survivor.consent.absorb(&other.consent);
    survivor.absorb_counts(&other);
    survivor.aggregates.absorb(&other.aggregates);
    survivor.computed.absorb(&other.computed);
    // What both were shown: impressions of both count toward caps; each experiment keeps the earlier assignment.
    let withdrawn = survivor.shown.absorb(&other.shown);
    // Journeys the absorbed profile was on go on here (an anonymous cart identified by its buyer keeps its reminder).
    survivor.journeys.absorb(&other.journeys);
    // Purchases and responses of both are the person's (exactly, day by day and send by send).
    survivor.behaviour.absorb(&other.behaviour);
    survivor.absorb_history(&other);

    // Records: the absorbed profile's own merges and refusals come along; only the latest merges stay splittable.
    for r in other.refused.drain(..) {
        survivor.refuse(r.identity, r.reason, r.at, &r.message_id);
    }
    for id in &over_limit {
        survivor.refuse(
            id.clone(),
            format!("over the limit for {} when profile {} was merged", id.kind, other.id),
            at,
            message_id,
        );
    }
    let mut inherited: Vec<MergeRecord> = other.merges.drain(..).collect();
    for m in &mut inherited {
        m.absorbed = None;
    }
    survivor.identities.extend(incoming.iter().cloned());
    let record = MergeRecord {
        at,
        message_id: message_id.to_string(),
        absorbed_id: other.id.clone(),
        identities: incoming,
        absorbed: Some(Box::new(other)),
        replaced_traits,
        replaced_grants,
        first_seen_before,
        last_seen_before,
    };
    survivor.merges.extend(inherited);
    survivor.merges.push(record);
    let excess = survivor.merges.len().saturating_sub(MAX_MERGE_RECORDS);
    survivor.merges.drain(..excess);
    let splittable_from = survivor.merges.len().saturating_sub(MAX_SPLITTABLE_MERGES);
    for m in &mut survivor.merges[..splittable_from] {
        m.absorbed = None;
    }
    Ok(withdrawn)
}

/// What linking did: the survivor (if there is one), profiles to give back as they were (their merge was
/// refused), identities whose index must now lead to the survivor, the absorbed profiles, and the identities
/// the survivor took to vouch for the links.
#[derive(Debug, Default)]
pub struct Linked {
    pub profile: Option<Profile>,
    /// Experiment exposures the merges withdrew: a person counts once per experiment, in the variant kept.
    pub outcomes: Vec<Outcome>,
    pub returned: Vec<Profile>,
    pub repoint: Vec<Identity>,
    pub absorbed_ids: Vec<String>,
    pub admitted: Vec<Identity>,
}

/// The links of a request that still need another profile's data: not to this profile, and not to an identity
/// it already holds. Only these are worth a handover.
pub fn pending_links<'a>(current: Option<&Profile>, req: &'a ApplyRequest) -> Vec<&'a Link> {
    req.links
        .iter()
        .filter(|l| l.profile_id != req.profile_id && !current.is_some_and(|p| p.has_identity(&l.linked)))
        .collect()
}

/// Absorbs the profiles `fetched` for the request's links into the request's profile, before its events are
/// applied. The survivor first takes the identity that vouches for each link, so the limits judge the merge
/// against it. Linking stores data about a person, so it only stands if consent, judged with the merged
/// profile's record, lets at least one of the events be collected; otherwise nothing changes and every
/// fetched profile is given back.
pub fn link(
    current: Option<Profile>,
    fetched: Vec<(Link, Profile)>,
    req: &ApplyRequest,
    config: &Config,
    now: Millis,
) -> Linked {
    if fetched.is_empty() && req.links.is_empty() {
        return Linked { profile: current, ..Linked::default() };
    }
    let before = current.clone();
    let made_now = current.is_none();
    let mut survivor = current.unwrap_or_else(|| {
        let first = fetched.iter().map(|(_, p)| p.first_seen).min().unwrap_or(now);
        Profile::new(req.profile_id.clone(), first)
    });
    let mut out = Linked::default();
    for l in &req.links {
        let held = survivor.has_identity(&l.because);
        if survivor.admit(l.because.clone(), &config.identity, now, &l.message_id) && !held {
            out.admitted.push(l.because.clone());
        }
    }
    // The first and last visits of what was absorbed (its own, which may predate the history it kept).
    let mut seen: Option<(Millis, Millis)> = None;
    let originals: Vec<Profile> = fetched.iter().map(|(_, p)| p.clone()).collect();
    for (l, other) in fetched {
        let ids = other.identities.clone();
        let other_id = other.id.clone();
        let kept = other.clone();
        let (first, last) = (other.first_seen, other.last_seen);
        if !survivor.has_identity(&l.because) {
            out.returned.push(kept);
            continue;
        }
        match absorb(&mut survivor, other, &config.identity, &l.because, &l.linked, now, &l.message_id) {
            Ok(withdrawn) => {
                out.outcomes.extend(withdrawn);
                out.repoint.extend(ids.into_iter().filter(|i| survivor.has_identity(i)));
                out.absorbed_ids.push(other_id);
                seen = Some(seen.map_or((first, last), |(f, l)| (f.min(first), l.max(last))));
            }
            Err(_) => out.returned.push(kept),
        }
    }
    if let (true, Some((first, last))) = (made_now, seen) {
        // A survivor made just now is as old as what it absorbed (not as its recent history, which may have let
        // the oldest visits go); one that existed keeps its own, widened by what it absorbed (`absorb_history`).
        (survivor.first_seen, survivor.last_seen) = (first, last);
    }
    let collectable = req
        .events
        .iter()
        .any(|e| config.consent.effective(Some(&survivor.consent), e.consent.as_ref(), &req.signals).analytics);
    if !collectable {
        // Undo: every fetched profile goes back as it was, and this one stays as it was.
        return Linked { profile: before, returned: originals, ..Linked::default() };
    }
    out.profile = Some(survivor);
    out
}

/// The events for one profile's writer, and the links they make.
#[derive(Debug, Default)]
pub struct Group {
    pub profile_id: String,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
}

/// The most profiles one request may write: each is a call to its own Durable Object, so a batch naming
/// thousands of visitors would hold one request for tens of seconds. Events beyond it are refused, by index, and
/// may be sent again in another request.
pub const MAX_PROFILES_PER_REQUEST: usize = 50;

/// The positions of the events that would make the request write more than `MAX_PROFILES_PER_REQUEST` profiles,
/// counting each event's own identity (its user id, else its anonymous id) in order; events of a profile already
/// counted are always kept.
pub fn over_profile_budget(events: &[Event]) -> Vec<usize> {
    let mut seen: BTreeSet<(bool, &str)> = BTreeSet::new();
    let mut over = Vec::new();
    for (position, e) in events.iter().enumerate() {
        let Some(routing) = e.user_id.as_deref().map(|u| (true, u)).or(e.anonymous_id.as_deref().map(|a| (false, a)))
        else {
            continue;
        };
        if !seen.contains(&routing) && seen.len() >= MAX_PROFILES_PER_REQUEST {
            over.push(position);
        } else {
            seen.insert(routing);
        }
    }
    over
}

/// The identities `plan` needs looked up in the index (an alias's `previousId` as either kind).
pub fn identities_to_resolve(events: &[Event]) -> BTreeSet<Identity> {
    let mut out = BTreeSet::new();
    for e in events {
        if let Some(a) = &e.anonymous_id {
            out.insert(Identity::new(ANONYMOUS_ID, a));
        }
        if let Some(u) = &e.user_id {
            out.insert(Identity::new(USER_ID, u));
        }
        if let EventKind::Alias { previous_id } = &e.kind {
            out.insert(Identity::new(USER_ID, previous_id));
            out.insert(Identity::new(ANONYMOUS_ID, previous_id));
        }
        if let (None, None, Some(r)) = (&e.anonymous_id, &e.user_id, &e.routing) {
            out.insert(r.clone());
        }
    }
    out
}

/// Decides which profile's writer gets each event, in order. A known person's events go to the profile of
/// their user id and link the anonymous profile they came from (and, for an alias, the previous id's
/// profile: an earlier user id if the index knows one, else an anonymous id); anonymous events go to their
/// anonymous id's profile. `index` holds what the identity index says; an identity it lacks names a new
/// profile. Once an event links an identity, later events of the batch follow it to its new profile.
/// Groups keep the order in which their profiles first appear, so earlier events are stored before a later
/// event absorbs their profile.
pub fn plan(
    events: Vec<Event>,
    index: &BTreeMap<Identity, String>,
    rules: &IdentityRules,
    ids: &ProfileIdKey,
) -> Vec<Group> {
    let mut resolved = index.clone();
    let mut groups: Vec<Group> = Vec::new();
    for event in events {
        let anonymous = event.anonymous_id.as_deref().map(|a| Identity::new(ANONYMOUS_ID, a));
        let user = event.user_id.as_deref().map(|u| Identity::new(USER_ID, u));
        // An imported row with neither id goes where its e-mail or CRM id leads (`Event::routing`).
        let Some(routing) = user.clone().or(anonymous.clone()).or(event.routing.clone()) else { continue };
        let pid = resolved.get(&routing).cloned().unwrap_or_else(|| routing.profile_id(ids));
        let mut links = Vec::new();
        if let Some(u) = &user {
            let mut linked: Vec<Identity> = anonymous.into_iter().collect();
            if let EventKind::Alias { previous_id } = &event.kind {
                if !is_junk(rules, previous_id) {
                    let as_user = Identity::new(USER_ID, previous_id);
                    linked.push(if index.contains_key(&as_user) {
                        as_user
                    } else {
                        Identity::new(ANONYMOUS_ID, previous_id)
                    });
                }
            }
            for l in linked {
                let other = resolved.get(&l).cloned().unwrap_or_else(|| l.profile_id(ids));
                if other != pid {
                    links.push(Link {
                        because: u.clone(),
                        linked: l.clone(),
                        profile_id: other,
                        message_id: event.message_id.clone(),
                    });
                }
                resolved.insert(l, pid.clone());
            }
        }
        resolved.insert(routing, pid.clone());
        let group = match groups.iter_mut().position(|g| g.profile_id == pid) {
            Some(i) => &mut groups[i],
            None => {
                groups.push(Group { profile_id: pid.clone(), ..Group::default() });
                groups.last_mut().expect("just pushed")
            }
        };
        group.events.push(event);
        for l in links {
            if !group.links.contains(&l) {
                group.links.push(l);
            }
        }
    }
    groups
}

/// Why a split could not be done.
#[derive(Clone, Debug, PartialEq)]
pub enum SplitError {
    /// No merge of that profile is recorded.
    NotMerged,
    /// The merge is recorded but too old to keep what a split needs.
    TooOld,
}

/// Undoes the merge that absorbed `absorbed_id`: the absorbed profile comes back as it was at the merge, and
/// the survivor loses its identities, counts, history and dedup records, and gets back the trait and consent
/// entries the merge replaced (where nothing has changed them since). Events after the merge stay with the
/// survivor: which profile they belonged to is exactly what was unknown.
pub fn split(survivor: &mut Profile, absorbed_id: &str) -> Result<Profile, SplitError> {
    let index = survivor.merges.iter().rposition(|m| m.absorbed_id == absorbed_id).ok_or(SplitError::NotMerged)?;
    if survivor.merges[index].absorbed.is_none() {
        return Err(SplitError::TooOld);
    }
    let record = survivor.merges.remove(index);
    let Some(restored) = record.absorbed else { return Err(SplitError::TooOld) };
    let mut restored = *restored;
    // Purchases and responses stay with the survivor, like the events after the merge: a merge record is stored
    // without them, so the profile given back starts its own again whether or not it was stored in between.
    restored.behaviour = Default::default();

    survivor.identities.retain(|i| !record.identities.contains(i));
    for (name, n) in &restored.counts {
        if let Some(c) = survivor.counts.get_mut(name) {
            *c = c.saturating_sub(*n);
        }
    }
    survivor.counts.retain(|_, n| *n > 0);
    survivor.aggregates.subtract(&restored.aggregates);
    let c = &mut survivor.computed;
    c.sessions = c.sessions.saturating_sub(restored.computed.sessions);
    c.orders = c.orders.saturating_sub(restored.computed.orders);
    c.revenue -= restored.computed.revenue;
    if c.orders == 0 {
        c.last_order_at = None;
        c.revenue = 0.0;
    }
    let theirs: BTreeSet<&str> = sort::set_of(restored.seen_message_ids.iter().map(String::as_str));
    survivor.recent.retain(|r| r.message_id.is_empty() || !theirs.contains(r.message_id.as_str()));
    survivor.seen_message_ids.retain(|m| !theirs.contains(m.as_str()));
    for (k, before) in record.replaced_traits {
        if survivor.traits.get(&k) == restored.traits.get(&k) {
            match before {
                Some(entry) => survivor.traits.insert(k, entry),
                None => survivor.traits.remove(&k),
            };
        }
    }
    for (purpose, before) in record.replaced_grants {
        if survivor.consent.grants.get(&purpose) == restored.consent.grants.get(&purpose) {
            match before {
                Some(grant) => survivor.consent.grants.insert(purpose, grant),
                None => survivor.consent.grants.remove(&purpose),
            };
        }
    }
    survivor.consent.history.retain(|c| !restored.consent.history.contains(c));
    let after_merge = survivor.recent.iter().filter(|r| r.at >= record.at).map(|r| r.at);
    survivor.first_seen = record.first_seen_before.min(after_merge.clone().min().unwrap_or(Millis::MAX));
    survivor.last_seen = record.last_seen_before.max(after_merge.max().unwrap_or(Millis::MIN));
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::value::Value;
    use crate::core::engine::apply::{apply_events, ApplyRequest};
    use crate::core::model::profile::MAX_SEEN_MESSAGE_IDS;
    use crate::core::rules::{compile_str, Config};
    use crate::core::wire::events::parse_batch;

    const NOW: Millis = 1_795_344_600_000;
    const GRANT: &str = r#""context":{"consent":{"categoryPreferences":{"analytics":true,"personalization":true}}}"#;

    fn profile(id: &str, events: &[String]) -> Profile {
        let body = format!(r#"{{"batch":[{}]}}"#, events.join(","));
        let parsed = parse_batch(body.as_bytes(), NOW).unwrap();
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        let req = ApplyRequest { profile_id: id.into(), events: parsed.events, ..ApplyRequest::default() };
        apply_events(None, req, &Config::default()).0.unwrap()
    }

    fn ev(json: &str) -> String {
        json.replace("GRANT", GRANT)
    }

    #[test]
    fn a_request_writes_a_bounded_number_of_profiles_and_known_ones_are_always_kept() {
        let one = |a: String, u: Option<&str>| {
            let kind = EventKind::Identify { traits: Default::default() };
            crate::core::model::event::Event::new("m".into(), Some(a), u.map(String::from), NOW, kind)
        };
        let mut events: Vec<_> = (0..MAX_PROFILES_PER_REQUEST + 5).map(|i| one(format!("a{i}"), None)).collect();
        events.push(one("a0".into(), None));
        events.push(one("a-new".into(), Some("u1")));
        let over = over_profile_budget(&events);
        let expected: Vec<usize> =
            (MAX_PROFILES_PER_REQUEST..MAX_PROFILES_PER_REQUEST + 5).chain([events.len() - 1]).collect();
        assert_eq!(over, expected, "the 51st visitor on, but not a second event of the first");
    }

    /// Merges `other` into `user` because an event linked the anonymous id `linked` to user u1.
    fn merge_into_u1(
        user: &mut Profile,
        other: Profile,
        rules: &IdentityRules,
        linked: &str,
        message_id: &str,
    ) -> Result<(), MergeRefused> {
        absorb(
            user,
            other,
            rules,
            &Identity::new("user_id", "u1"),
            &Identity::new("anonymous_id", linked),
            NOW,
            message_id,
        )
        .map(|_| ())
    }

    /// Purchases and channel statistics are the person's: a merge joins them, and a split leaves them with the
    /// survivor (the profile split off starts its own again), whether or not the merge record went through storage.
    #[test]
    fn a_merge_joins_purchases_and_responses_and_a_split_leaves_them_with_the_survivor() {
        use crate::core::base::time::DAY;
        let mut user = Profile::new("p_user".into(), NOW);
        user.identities.push(Identity::new("user_id", "u1"));
        user.behaviour.purchases.record(NOW - 10 * DAY, 5.0);
        let mut device = Profile::new("p_device".into(), NOW);
        device.identities.push(Identity::new("anonymous_id", "d1"));
        device.behaviour.purchases.record(NOW - 3 * DAY, 7.0);
        device.behaviour.channel("email").unwrap().record_send(NOW - DAY);
        merge_into_u1(&mut user, device, &IdentityRules::default(), "d1", "m1").unwrap();
        let s = user.behaviour.purchases.summary(NOW).unwrap();
        assert_eq!((s.x, s.t_x, s.mean_value), (1.0, 7.0, 7.0));
        assert_eq!(user.behaviour.channels["email"].sends, 1);
        let restored = split(&mut user, "p_device").unwrap();
        assert!(restored.behaviour.is_empty());
        assert_eq!(user.behaviour.channels["email"].sends, 1);
    }

    /// Consent after a merge, one row per purpose: the newer decision wins, whichever profile holds it, a refusal
    /// as much as a grant; a purpose only one profile decided keeps that decision; and a split gives the
    /// survivor back the decision it had.
    #[test]
    fn a_merge_keeps_the_newer_consent_decision_per_purpose() {
        use crate::core::model::consent::{Grant, Purpose};
        let grant = |granted: bool, at: Millis| Grant { granted, at, source: "test".into() };
        // purpose, the survivor's decision, the absorbed profile's, the decision after the merge.
        type Row = (Purpose, Option<(bool, Millis)>, Option<(bool, Millis)>, Option<(bool, Millis)>);
        let rows: [Row; 4] = [
            (Purpose::Marketing, Some((true, 10)), Some((false, 20)), Some((false, 20))),
            (Purpose::Advertising, Some((false, 30)), Some((true, 20)), Some((false, 30))),
            (Purpose::Personalization, None, Some((true, 5)), Some((true, 5))),
            (Purpose::Analytics, Some((true, 7)), None, Some((true, 7))),
        ];
        let mut user = Profile::new("p_user".into(), 0);
        user.identities.push(Identity::new("user_id", "u1"));
        let mut other = Profile::new("p_other".into(), 0);
        other.identities.push(Identity::new("anonymous_id", "x"));
        for (purpose, ours, theirs, _) in rows {
            if let Some((g, at)) = ours {
                user.consent.grants.insert(purpose, grant(g, at));
            }
            if let Some((g, at)) = theirs {
                other.consent.grants.insert(purpose, grant(g, at));
            }
        }
        let before = user.consent.grants.clone();
        merge_into_u1(&mut user, other, &Config::default().identity, "x", "m").unwrap();
        for (purpose, _, _, want) in rows {
            let got = user.consent.grants.get(&purpose).map(|g| (g.granted, g.at));
            assert_eq!(got, want, "{purpose:?}");
        }
        split(&mut user, "p_other").unwrap();
        assert_eq!(user.consent.grants, before, "a split gives the survivor back its own decisions");
        // Decisions made at the same instant: the survivor's stands.
        let mut user = Profile::new("p_user".into(), 0);
        user.identities.push(Identity::new("user_id", "u1"));
        user.consent.grants.insert(Purpose::Marketing, grant(false, 50));
        let mut other = Profile::new("p_other".into(), 0);
        other.identities.push(Identity::new("anonymous_id", "x"));
        other.consent.grants.insert(Purpose::Marketing, grant(true, 50));
        merge_into_u1(&mut user, other, &Config::default().identity, "x", "m").unwrap();
        assert!(!user.consent.grants[&Purpose::Marketing].granted, "a tie keeps the survivor's refusal");
    }

    /// Traits after a merge, one row each: the later value wins, whichever profile holds it; on a tie the
    /// survivor's stays; a proof of a contact point goes with the value that won.
    #[test]
    fn a_merge_keeps_the_later_trait_and_the_proof_of_the_value_that_won() {
        use crate::core::model::contact::ProvenBy;
        use crate::core::model::profile::TraitEntry;
        let text = |s: &str| Value::String(s.into());
        // trait, the survivor's (value, at), the absorbed profile's, the value after the merge.
        let rows = [
            ("plan", ("silver", 1), ("gold", 2), "gold"),
            ("tier", ("a", 3), ("b", 2), "a"),
            ("city", ("Paris", 5), ("Lyon", 5), "Paris"),
            ("email", ("old@x.example", 1), ("new@x.example", 2), "new@x.example"),
        ];
        let mut user = Profile::new("p_user".into(), 0);
        user.identities.push(Identity::new("user_id", "u1"));
        let mut other = Profile::new("p_other".into(), 0);
        other.identities.push(Identity::new("anonymous_id", "x"));
        for (name, (ours, ours_at), (theirs, theirs_at), _) in rows {
            user.traits.insert(name.into(), TraitEntry { value: text(ours), at: ours_at });
            other.traits.insert(name.into(), TraitEntry { value: text(theirs), at: theirs_at });
        }
        user.contacts.prove("email", &text("old@x.example"), 1, ProvenBy::Server);
        (user.computed.sessions, user.computed.orders) = (2, 1);
        (other.computed.sessions, other.computed.orders) = (3, 2);
        user.seen_message_ids.extend(["m1".to_string()]);
        other.seen_message_ids.extend(["m1".to_string(), "m2".to_string()]);
        other.contacts.prove("email", &text("new@x.example"), 2, ProvenBy::Token);
        merge_into_u1(&mut user, other, &Config::default().identity, "x", "m").unwrap();
        for (name, _, _, want) in rows {
            assert_eq!(user.traits[name].value, text(want), "{name}");
        }
        assert!(user.contact_verified("email"), "the proof of the value that won came along");
        assert_eq!((user.computed.sessions, user.computed.orders), (5, 3), "sessions and orders add up");
        assert_eq!(user.seen_message_ids, ["m1", "m2"], "each message id once: a retry after the merge counts once");
        assert_eq!(user.contacts.proofs["email"].by, ProvenBy::Token);
        // Two dedup windows make one of the same bound, the newest kept.
        let mut user = Profile::new("p_user".into(), 0);
        user.identities.push(Identity::new("user_id", "u1"));
        user.seen_message_ids.extend((0..MAX_SEEN_MESSAGE_IDS).map(|i| format!("u{i}")));
        let mut other = Profile::new("p_other".into(), 0);
        other.identities.push(Identity::new("anonymous_id", "x"));
        other.seen_message_ids.extend((0..5).map(|i| format!("o{i}")));
        merge_into_u1(&mut user, other, &Config::default().identity, "x", "m").unwrap();
        assert_eq!(user.seen_message_ids.len(), MAX_SEEN_MESSAGE_IDS);
        assert_eq!(user.seen_message_ids.back().map(String::as_str), Some("o4"));
        assert_eq!(user.seen_message_ids.front().map(String::as_str), Some("u5"));
    }

    /// A merge takes the absorbed profile's identities only within the survivor's identity budget; the rest are
    /// refused with their reason, never dropped silently.
    #[test]
    fn a_merge_stays_within_the_identity_budget() {
        let long = |p: &str, i: usize| Identity::new("anonymous_id", &format!("{p}{i:03}{}", "a".repeat(250)));
        let mut user = Profile::new("p_user".into(), 0);
        user.identities.push(Identity::new("user_id", "u1"));
        user.identities.extend((0..55).map(|i| long("u", i)));
        let mut other = Profile::new("p_other".into(), 0);
        other.identities.extend((0..5).map(|i| long("o", i)));
        let linked = other.identities[0].value.clone();
        merge_into_u1(&mut user, other, &Config::default().identity, &linked, "m").unwrap();
        assert!(identity_bytes(&user.identities) <= budget::IDENTITIES, "{} bytes", identity_bytes(&user.identities));
        let taken = user.identities.iter().filter(|i| i.value.starts_with('o')).count();
        let refused = user.refused.iter().filter(|r| r.identity.value.starts_with('o')).count();
        assert_eq!((taken, refused), (3, 2), "three fit in what the budget has left");
    }

    /// The identity rules' edges: an identity that fills the budget to the byte is taken and one byte more is
    /// refused; a merge that would pass a type's limit is refused whole; the refusal record keeps its newest.
    #[test]
    fn identity_limits_hold_at_their_edges() {
        let rules = Config::default().identity;
        // Identities of a known weight: 12 bytes of type, 16 of overhead, and the value.
        let id = |i: usize, len: usize| Identity::new("anonymous_id", &format!("{i:04}{}", "b".repeat(len - 4)));
        let mut p = Profile::new("p".into(), 0);
        for i in 0..45 {
            assert!(p.admit(id(i, 300), &rules, 0, "m"));
        }
        let room = budget::IDENTITIES - identity_bytes(&p.identities);
        let exact = room - "anonymous_id".len() - 16;
        assert!(!p.admit(id(98, exact + 1), &rules, 0, "m"), "one byte over the budget");
        assert!(p.admit(id(99, exact), &rules, 0, "m"), "exactly the budget");
        assert_eq!(identity_bytes(&p.identities), budget::IDENTITIES);
        assert!(p.refused.last().is_some_and(|r| r.reason.contains("budget")));

        // A merge past the anonymous ids' limit (100, a lower priority than the user id that links them) takes
        // what fits and records the rest as refused.
        let mut user = Profile::new("p_user".into(), 0);
        user.identities.push(Identity::new("user_id", "u1"));
        user.identities.extend((0..99).map(|i| Identity::new("anonymous_id", &format!("u{i}"))));
        let mut other = Profile::new("p_other".into(), 0);
        other.identities.extend((0..3).map(|i| Identity::new("anonymous_id", &format!("o{i}"))));
        merge_into_u1(&mut user, other, &rules, "o0", "m").unwrap();
        assert_eq!(user.identities.iter().filter(|i| i.kind == "anonymous_id").count(), 100);
        assert_eq!(user.refused.iter().filter(|r| r.identity.value.starts_with('o')).count(), 2);

        let mut r = Profile::new("r".into(), 0);
        for i in 0..MAX_REFUSED + 3 {
            r.refuse(Identity::new("email", &format!("{i}@x")), "test".into(), 0, "m");
        }
        assert_eq!(r.refused.len(), MAX_REFUSED);
        assert_eq!(r.refused.last().map(|x| x.identity.value.as_str()), Some(&*format!("{}@x", MAX_REFUSED + 2)));
    }

    /// A merge that brings a type exactly to its limit goes ahead: two profiles that both hold user id u1 (one
    /// user id per profile) become one, with u1 once; only passing the limit refuses a merge.
    #[test]
    fn a_merge_that_reaches_a_limit_exactly_goes_ahead() {
        let rules = Config::default().identity;
        let mut user = Profile::new("p_user".into(), 0);
        user.identities.push(Identity::new("user_id", "u1"));
        let mut other = Profile::new("p_other".into(), 0);
        other.identities.push(Identity::new("user_id", "u1"));
        other.identities.push(Identity::new("anonymous_id", "o0"));
        assert!(merge_into_u1(&mut user, other, &rules, "o0", "m").is_ok(), "one user id of one allowed");
        assert_eq!(user.identities.iter().filter(|i| i.kind == "user_id").count(), 1);
        assert!(user.identities.contains(&Identity::new("anonymous_id", "o0")));
        assert!(user.refused.is_empty());
    }

    fn phone() -> Profile {
        profile(
            "p_phone",
            &[
                ev(
                    r#"{"type":"page","anonymousId":"phone","messageId":"a1","timestamp":"2026-11-20T08:00:00Z",GRANT}"#,
                ),
                ev(
                    r#"{"type":"track","event":"Product Viewed","anonymousId":"phone","messageId":"a2","timestamp":"2026-11-20T08:01:00Z","properties":{"category":"bags"},GRANT}"#,
                ),
                ev(
                    r#"{"type":"identify","anonymousId":"phone","messageId":"a3","timestamp":"2026-11-20T08:02:00Z","traits":{"plan":"silver","city":"Lyon"},GRANT}"#,
                ),
            ],
        )
    }

    fn laptop() -> Profile {
        profile(
            "p_user",
            &[
                ev(
                    r#"{"type":"identify","anonymousId":"laptop","userId":"u1","messageId":"b1","timestamp":"2026-11-21T09:00:00Z","traits":{"plan":"gold"},GRANT}"#,
                ),
                ev(
                    r#"{"type":"track","event":"Product Viewed","anonymousId":"laptop","userId":"u1","messageId":"b2","timestamp":"2026-11-21T09:05:00Z","properties":{"category":"bags"},GRANT}"#,
                ),
            ],
        )
    }

    #[test]
    fn a_merge_unites_everything_by_the_rules_and_is_recorded() {
        let rules = Config::default().identity;
        let mut user = laptop();
        merge_into_u1(&mut user, phone(), &rules, "phone", "m-identify").unwrap();
        let keys: Vec<String> = user.identities.iter().map(Identity::key).collect();
        assert_eq!(keys, vec!["anonymous_id:laptop", "user_id:u1", "anonymous_id:phone"]);
        assert_eq!(user.counts["Product Viewed"], 2);
        assert_eq!(user.counts["page"], 1);
        assert_eq!(user.traits["plan"].value, Value::String("gold".into()), "the later event wins");
        assert_eq!(user.traits["city"].value, Value::String("Lyon".into()));
        let ids: Vec<&str> = user.recent.iter().map(|r| r.message_id.as_str()).collect();
        assert_eq!(ids, vec!["a1", "a2", "a3", "b1", "b2"], "history united and in time order");
        assert_eq!(user.first_seen, crate::core::base::time::parse_iso8601("2026-11-20T08:00:00Z").unwrap());
        assert_eq!(user.computed.sessions, 2);
        assert_eq!(user.merges.len(), 1);
        assert_eq!(
            (user.merges[0].absorbed_id.as_str(), user.merges[0].message_id.as_str()),
            ("p_phone", "m-identify")
        );
        let day = crate::core::model::aggregate::day_of(NOW);
        assert_eq!(user.aggregates.count("Product Viewed|category=bags", day - 7, day), 2);
    }

    #[test]
    fn an_event_both_profiles_recorded_counts_once() {
        let rules = Config::default().identity;
        let mut user = laptop();
        let mut other = phone();
        let shared = ev(
            r#"{"type":"track","event":"Signed Up","anonymousId":"phone","messageId":"shared","timestamp":"2026-11-21T10:00:00Z",GRANT}"#,
        );
        // Both profiles recorded the same event (the same messageId).
        let record_shared = |p: Profile| {
            let events = parse_batch(format!(r#"{{"batch":[{shared}]}}"#).as_bytes(), NOW).unwrap().events;
            let req = ApplyRequest { profile_id: p.id.clone(), events, ..ApplyRequest::default() };
            apply_events(Some(p), req, &Config::default()).0.unwrap()
        };
        other = record_shared(other);
        user = record_shared(user);
        merge_into_u1(&mut user, other, &rules, "phone", "m").unwrap();
        assert_eq!(user.counts["Signed Up"], 1);
        assert_eq!(user.recent.iter().filter(|r| r.message_id == "shared").count(), 1);
    }

    #[test]
    fn a_second_user_id_never_merges_and_the_refusal_is_recorded() {
        let rules = Config::default().identity;
        let mut user = laptop();
        let other =
            profile("p_other", &[ev(r#"{"type":"identify","anonymousId":"x","userId":"u2","messageId":"c1",GRANT}"#)]);
        let before = user.clone();
        let err = merge_into_u1(&mut user, other, &rules, "x", "m-alias").unwrap_err();
        assert!(err.reason.contains("2 user_id identities"), "{}", err.reason);
        assert_eq!(user.identities, before.identities);
        assert_eq!(user.counts, before.counts);
        assert_eq!(user.refused.len(), 1);
        assert_eq!(user.refused[0].message_id, "m-alias");
        assert_eq!(user.refused[0].identity, Identity::new("anonymous_id", "x"));
    }

    #[test]
    fn lower_ranking_identities_beyond_their_limit_are_refused_and_the_merge_goes_on() {
        let rules =
            compile_str(r#"{"identity":{"identifiers":{"anonymous_id":{"limit":1,"priority":9}}}}"#).unwrap().identity;
        let mut user = laptop();
        merge_into_u1(&mut user, phone(), &rules, "phone", "m").unwrap();
        assert!(!user.has_identity(&Identity::new("anonymous_id", "phone")));
        assert_eq!(user.counts["page"], 1, "the data merged");
        assert_eq!(user.refused[0].identity, Identity::new("anonymous_id", "phone"));
    }

    #[test]
    fn junk_values_are_never_admitted() {
        let rules = Config::default().identity;
        let mut p = Profile::new("p".into(), 0);
        for junk in ["null", "Undefined", " 0 ", "-1", "anonymous", ""] {
            assert!(!p.admit(Identity::new("user_id", junk), &rules, 0, "m"), "{junk:?}");
        }
        assert!(p.identities.is_empty() && p.refused.is_empty());
        assert!(p.admit(Identity::new("user_id", "u1"), &rules, 0, "m"));
        assert!(!p.admit(Identity::new("user_id", "u2"), &rules, 0, "m"));
        assert_eq!(p.refused.len(), 1);
    }

    #[test]
    fn a_split_gives_back_both_profiles() {
        let rules = Config::default().identity;
        let original_user = laptop();
        let original_phone = phone();
        let mut user = original_user.clone();
        merge_into_u1(&mut user, original_phone.clone(), &rules, "phone", "m").unwrap();
        let restored = split(&mut user, "p_phone").unwrap();
        assert_eq!(restored, original_phone);
        assert_eq!(user.identities, original_user.identities);
        assert_eq!(user.counts, original_user.counts);
        assert_eq!(user.traits, original_user.traits);
        assert_eq!(user.recent, original_user.recent);
        assert_eq!(user.seen_message_ids, original_user.seen_message_ids);
        assert_eq!(user.consent, original_user.consent);
        assert_eq!((user.first_seen, user.last_seen), (original_user.first_seen, original_user.last_seen));
        assert_eq!(user.aggregates, original_user.aggregates);
        assert_eq!(user.computed, original_user.computed);
        assert!(user.merges.is_empty());
        assert_eq!(split(&mut user, "p_phone"), Err(SplitError::NotMerged));
    }

    /// A split when both profiles had orders gives the survivor back its own orders and revenue (neither reset nor
    /// added to), and what the survivor saw after the merge stays its last visit.
    #[test]
    fn a_split_gives_back_the_orders_and_keeps_what_came_after_the_merge() {
        let rules = Config::default().identity;
        let order = |anonymous: &str, user: &str, m: &str, revenue: u32, day: u32| {
            ev(&format!(
                r#"{{"type":"track","event":"Order Completed","anonymousId":"{anonymous}",{user}"messageId":"{m}","timestamp":"2026-11-{day}T10:00:00Z","properties":{{"revenue":{revenue}}},GRANT}}"#
            ))
        };
        let mut user = profile("p_user", &[order("laptop", r#""userId":"u1","#, "b9", 30, 21)]);
        let other = profile("p_phone", &[order("phone", "", "a9", 20, 20)]);
        merge_into_u1(&mut user, other, &rules, "phone", "m").unwrap();
        assert_eq!((user.computed.orders, user.computed.revenue), (2, 50.0));
        // A visit after the merge (at NOW + 1 minute, the batch's receipt time: it names no timestamp).
        let later =
            format!(r#"{{"batch":[{}]}}"#, ev(r#"{"type":"page","anonymousId":"laptop","messageId":"b10",GRANT}"#));
        let parsed = parse_batch(later.as_bytes(), NOW + 60_000).unwrap();
        let req = ApplyRequest { profile_id: "p_user".into(), events: parsed.events, ..ApplyRequest::default() };
        let mut user = apply_events(Some(user), req, &Config::default()).0.unwrap();
        split(&mut user, "p_phone").unwrap();
        assert_eq!((user.computed.orders, user.computed.revenue), (1, 30.0));
        assert!(user.computed.last_order_at.is_some(), "the survivor's own order stays");
        assert_eq!(user.last_seen, NOW + 60_000);
    }

    #[test]
    fn only_the_latest_merges_stay_splittable_so_the_profile_stays_bounded() {
        let rules = compile_str(r#"{"identity":{"identifiers":{"anonymous_id":{"limit":100,"priority":9}}}}"#)
            .unwrap()
            .identity;
        let mut user = laptop();
        for i in 0..(MAX_SPLITTABLE_MERGES + 2) {
            let p = profile(
                &format!("p_{i}"),
                &[ev(&format!(r#"{{"type":"page","anonymousId":"d{i}","messageId":"x{i}",GRANT}}"#))],
            );
            merge_into_u1(&mut user, p, &rules, "d", "m").unwrap();
        }
        assert_eq!(user.merges.iter().filter(|m| m.absorbed.is_some()).count(), MAX_SPLITTABLE_MERGES);
        assert_eq!(split(&mut user, "p_0"), Err(SplitError::TooOld));
        assert!(split(&mut user, &format!("p_{}", MAX_SPLITTABLE_MERGES + 1)).is_ok());
    }

    #[test]
    fn plan_routes_known_people_to_their_user_profile_and_keeps_batch_order() {
        let events = parse_batch(
            br#"{"batch":[
                {"type":"page","anonymousId":"A"},
                {"type":"identify","anonymousId":"A","userId":"U"},
                {"type":"track","event":"E","anonymousId":"A"},
                {"type":"alias","userId":"U","previousId":"old-user"},
                {"type":"page","anonymousId":"B"}]}"#,
            NOW,
        )
        .unwrap()
        .events;
        let mut index = BTreeMap::new();
        index.insert(Identity::new("user_id", "old-user"), "p_old".to_string());
        let key = ProfileIdKey::of_secret(b"test");
        let groups = plan(events, &index, &Config::default().identity, &key);
        let anon_a = Identity::new("anonymous_id", "A").profile_id(&key);
        let user = Identity::new("user_id", "U").profile_id(&key);
        let shape: Vec<(String, usize, Vec<String>)> = groups
            .iter()
            .map(|g| {
                (
                    g.profile_id.clone(),
                    g.events.len(),
                    g.links.iter().map(|l| format!("{}>{}", l.linked.key(), l.profile_id)).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (anon_a.clone(), 1, vec![]),
                (user, 3, vec![format!("anonymous_id:A>{anon_a}"), "user_id:old-user>p_old".to_string()]),
                (Identity::new("anonymous_id", "B").profile_id(&key), 1, vec![]),
            ],
            "the anonymous track after identify follows A to the user's profile"
        );
    }

    #[test]
    fn linking_without_consent_for_any_event_changes_nothing_and_gives_the_profiles_back() {
        let config = Config::default();
        let anonymous = phone();
        let body = r#"{"batch":[{"type":"identify","anonymousId":"phone","userId":"u9","context":{"consent":{"categoryPreferences":{"analytics":false}}}}]}"#;
        let events = parse_batch(body.as_bytes(), NOW).unwrap().events;
        let groups = plan(events, &BTreeMap::new(), &config.identity, &ProfileIdKey::of_secret(b"test"));
        let g = groups.into_iter().next().unwrap();
        let req =
            ApplyRequest { profile_id: g.profile_id, events: g.events, links: g.links, ..ApplyRequest::default() };
        let fetched = vec![(req.links[0].clone(), anonymous.clone())];
        let linked = link(None, fetched, &req, &config, NOW);
        assert!(linked.profile.is_none());
        assert_eq!(linked.returned, vec![anonymous]);
        assert!(linked.absorbed_ids.is_empty() && linked.repoint.is_empty() && linked.admitted.is_empty());
    }

    /// First and last visits after a link: a person made by the link is as old as what it absorbed, and one that
    /// existed keeps its own first visit; neither is read from the recent history, which may have let the oldest
    /// visits go.
    #[test]
    fn a_link_keeps_the_first_and_last_visits_beyond_the_kept_history() {
        let config = Config::default();
        let body = ev(r#"{"batch":[{"type":"identify","anonymousId":"phone","userId":"u1",GRANT}]}"#);
        let events = parse_batch(body.as_bytes(), NOW).unwrap().events;
        let groups = plan(events, &BTreeMap::new(), &config.identity, &ProfileIdKey::of_secret(b"test"));
        let g = groups.into_iter().next().unwrap();
        let req =
            ApplyRequest { profile_id: g.profile_id, events: g.events, links: g.links, ..ApplyRequest::default() };
        let day = 86_400_000;
        // The phone's first visit is a month before its oldest kept event, its last a day after its newest.
        let mut anonymous = phone();
        anonymous.first_seen -= 30 * day;
        anonymous.last_seen += day;
        let mut user = laptop();
        user.first_seen -= 60 * day;
        let rows: Vec<(&str, Option<Profile>, (Millis, Millis))> = vec![
            ("made by the link", None, (anonymous.first_seen, anonymous.last_seen)),
            ("existed before", Some(user.clone()), (user.first_seen, anonymous.last_seen.max(user.last_seen))),
        ];
        for (why, current, want) in rows {
            let fetched = vec![(req.links[0].clone(), anonymous.clone())];
            let linked = link(current, fetched, &req, &config, NOW);
            assert_eq!(linked.absorbed_ids, vec!["p_phone".to_string()], "{why}");
            let p = linked.profile.unwrap();
            assert_eq!((p.first_seen, p.last_seen), want, "{why}");
        }
    }
}
