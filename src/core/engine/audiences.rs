//! Audiences in motion: which audiences a profile is in, the transitions when that changes, and the next instant
//! at which time alone could change it.
//!
//! An audience is a segment that reads only the profile and the time (`rules::segment::audiences`). Its profile's
//! writer calls `catch_up` before it changes a profile (what time alone or a new configuration changed since the
//! last evaluation), then `track` after (what the change did), and wakes the profile at `Audiences::due` with
//! `catch_up` alone. Nothing polls: a profile whose audiences cannot change by time alone is never woken for them.

use crate::core::base::sort;
use crate::core::base::time::{Millis, DAY};
use crate::core::engine::evaluate::{count_events, evaluate_all, history_covers, matches, scores_of, Facts};
use crate::core::engine::predict::{for_conditions, value};
use crate::core::model::aggregate::day_of;
use crate::core::model::audience::{Cause, Transition};
use crate::core::model::context::Context;
use crate::core::model::profile::Profile;
use crate::core::rules::predictions::Kind;
use crate::core::rules::segment::{Cmp, Condition, Score, ScoreSource};
use crate::core::rules::Config;

/// Time-alone steps `catch_up` replays one by one before it evaluates once at `now`: a profile woken very late
/// (or written after a long silence) still gets each change at its own instant, up to this many.
pub const MAX_REPLAYED_STEPS: usize = 256;

/// The ids of the audiences `profile` is in at `now`, sorted.
pub fn members_at<'c>(config: &'c Config, profile: &Profile, now: Millis) -> Vec<&'c str> {
    if config.audiences.is_empty() {
        return Vec::new();
    }
    let cx = Context::default();
    let scores = scores_of(config, profile, &cx, now);
    let predictions = for_conditions(config, profile, now);
    let facts = Facts { profile, cx: &cx, now, scores: &scores, predictions: &predictions };
    let results = evaluate_all(&config.segments, &config.segment_order, &facts);
    let mut ids: Vec<&str> =
        config.audiences.iter().filter(|&&i| results[i]).map(|&i| config.segments[i].id.as_str()).collect();
    sort::sort(&mut ids);
    ids
}

/// Evaluates the audiences at `at` and records every change as a transition of `cause` (exits first, then
/// entries, each in id order); then notes the definitions evaluated and the next change by time alone.
pub fn track(config: &Config, profile: &mut Profile, at: Millis, cause: Cause) -> Vec<Transition> {
    let now_in = members_at(config, profile, at);
    let mut out = Vec::new();
    let exits: Vec<String> = profile
        .audiences
        .members
        .iter()
        .filter(|(id, _)| now_in.binary_search(&id.as_str()).is_err())
        .map(|(id, _)| id.clone())
        .collect();
    for id in exits {
        out.push(profile.audiences.record(&id, false, at, cause));
    }
    for id in now_in {
        if !profile.audiences.is_member(id) {
            out.push(profile.audiences.record(id, true, at, cause));
        }
    }
    profile.audiences.digest = config.audience_digest;
    profile.audiences.due = next_change(config, profile, at);
    out
}

/// What changed since the profile's last evaluation, before anything else touches it at `now`: under new audience
/// definitions, one evaluation at `now` (cause `Configuration`); otherwise each change by time alone at its exact
/// instant (`Audiences::due`, cause `Time`), at most `MAX_REPLAYED_STEPS` of them, then the rest at `now`.
pub fn catch_up(config: &Config, profile: &mut Profile, now: Millis) -> Vec<Transition> {
    if profile.audiences.digest != config.audience_digest {
        return track(config, profile, now, Cause::Configuration);
    }
    let mut out = Vec::new();
    for _ in 0..MAX_REPLAYED_STEPS {
        match profile.audiences.due {
            Some(due) if due <= now => out.extend(track(config, profile, due, Cause::Time)),
            _ => return out,
        }
    }
    if profile.audiences.due.is_some_and(|d| d <= now) {
        out.extend(track(config, profile, now, Cause::Time));
    }
    out
}

/// The earliest instant after `now` at which any audience of `profile` could change with no new event, exactly:
/// an inactivity threshold passed, an event leaving a window (or a future-dated one entering it) that moves a
/// count across its bound, a decaying score crossing a bound (found to the millisecond on the score itself).
/// A profile too heavy for its recent history (counted from daily aggregates) also wakes when a window's day
/// boundary passes. `None`: time alone changes nothing.
pub fn next_change(config: &Config, profile: &Profile, now: Millis) -> Option<Millis> {
    let conditions: Vec<&Condition> = config.audiences.iter().map(|&i| &config.segments[i].when).collect();
    next_change_of(config, profile, now, &conditions)
}

/// `next_change` for any conditions that read the profile and the time: the next instant at which time alone
/// could change one of them (their request conditions are left out; the device's rules, `engine::device`,
/// evaluate those on the device).
pub fn next_change_of(config: &Config, profile: &Profile, now: Millis, conditions: &[&Condition]) -> Option<Millis> {
    let mut next = Next { now, at: None };
    // Each score's bounds, by score.
    let mut bounds: Vec<Vec<Cmp>> = vec![Vec::new(); config.scores.len()];
    // Each prediction's bounds, by prediction.
    let mut predicted: Vec<(usize, Cmp)> = Vec::new();
    for when in conditions {
        leaves(when, &mut |c| match c {
            Condition::Prediction { index, cmps } => {
                for c in cmps {
                    if !predicted.contains(&(*index, *c)) {
                        predicted.push((*index, *c));
                    }
                }
            }
            Condition::Score { index, cmps } => {
                if let Some(b) = bounds.get_mut(*index) {
                    for c in cmps {
                        if !b.contains(c) {
                            b.push(*c);
                        }
                    }
                }
            }
            c => next.leaf(c, profile),
        });
    }
    // Every score an audience reads: what its own conditions and future-dated events do, then (bounded by all of
    // the above, within which a decaying score is monotone) where it crosses each bound.
    for (score, b) in config.scores.iter().zip(&bounds) {
        if !b.is_empty() {
            next.score_inputs(score, profile);
        }
    }
    let horizon = next.at;
    // A prediction that time changes (a purchase probability, expected purchases or value) only falls while no
    // purchase comes, so each bound is crossed at most once until the horizon: found to the millisecond by
    // bisection on the prediction itself.
    let until = horizon.map_or(now.saturating_add(PREDICTION_HORIZON), |h| h - 1);
    for (index, cmp) in predicted {
        let Some((_, kind)) = config.predictions.names.get(index) else { continue };
        if !matches!(kind, Kind::Alive | Kind::Purchase(_) | Kind::Purchases(_) | Kind::Value(_)) {
            continue;
        }
        let test = |t: Millis| value(&config.predictions, kind, &profile.behaviour, t).is_some_and(|v| cmp.holds(v));
        if let Some(t) = first_change(now, until, test) {
            next.consider(t);
        }
    }
    // Where each bound can be crossed, solved on the score's closed form, in time order; the first that the score
    // itself confirms is the earliest crossing. Should none be confirmed (floating point at its edge), bisection
    // on the score finds each bound's crossing.
    let cx = Context::default();
    let mut solved: Vec<(Millis, &Score, Cmp)> = Vec::new();
    for (score, b) in config.scores.iter().zip(&bounds) {
        let Some(h) = score.half_life.filter(|_| !b.is_empty()) else { continue };
        let parts = score.parts(profile, &cx, now);
        for cmp in b {
            solved.extend(solve(parts, h, now, *cmp).into_iter().map(|t| (t, score, *cmp)));
        }
    }
    let end = |score: &Score| {
        let end = now.saturating_add(score.half_life.unwrap_or(0).saturating_mul(DECAY_HORIZON_HALF_LIVES));
        // The horizon itself belongs to the next evaluation (something else changes there).
        horizon.map_or(end, |x| x.min(end)) - 1
    };
    // Beyond the horizon the closed form no longer holds, and the next evaluation solves again.
    solved.retain(|(t, score, _)| *t <= end(score) + 2);
    sort::sort_by_key(&mut solved, |s| s.0);
    let confirmed = solved.iter().find_map(|(t, score, cmp)| confirm(score, profile, now, end(score), *cmp, *t));
    match confirmed {
        Some(t) => next.consider(t),
        None => {
            for (_, score, cmp) in &solved {
                if let Some(t) = bisect(score, profile, now, end(score), *cmp) {
                    next.consider(t);
                }
            }
        }
    }
    next.at
}

/// How far ahead a prediction's crossing is looked for (ten years): beyond, the next write looks again.
const PREDICTION_HORIZON: Millis = 3653 * DAY;

/// The first millisecond in `(now, end]` at which `test` differs from `test(now)`, for a test that changes at most
/// once in that span.
fn first_change(now: Millis, end: Millis, test: impl Fn(Millis) -> bool) -> Option<Millis> {
    let before = test(now);
    if end <= now || test(end) == before {
        return None;
    }
    let (mut lo, mut hi) = (now, end);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if test(mid) == before {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

/// Calls `f` on every leaf of `c` (segment references are audiences of their own, visited as such).
fn leaves<'c>(c: &'c Condition, f: &mut impl FnMut(&'c Condition)) {
    match c {
        Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| leaves(c, f)),
        Condition::Not(c) => leaves(c, f),
        c => f(c),
    }
}

struct Next {
    now: Millis,
    at: Option<Millis>,
}

impl Next {
    fn consider(&mut self, t: Millis) {
        if t > self.now {
            self.at = Some(self.at.map_or(t, |a| a.min(t)));
        }
    }

    fn leaf(&mut self, c: &Condition, profile: &Profile) {
        let now = self.now;
        match c {
            Condition::InactiveFor(d) => self.consider(profile.last_seen.saturating_add(*d)),
            Condition::EventCount { event, filters, count, window, series } => {
                let holds = |n: u64| count.iter().all(|c| c.holds(n as f64));
                let Some(w) = *window else {
                    // All time: only a future-dated event coming in changes the count.
                    let n = |t| count_events(profile, event, filters, series.as_deref(), None, t);
                    let before = holds(n(now));
                    let mut future: Vec<Millis> = profile
                        .recent
                        .iter()
                        .filter(|r| r.at > now && matches(r, event, filters))
                        .map(|r| r.at)
                        .collect();
                    sort::sort(&mut future);
                    if let Some(t) = future.into_iter().find(|t| holds(n(*t)) != before) {
                        self.consider(t);
                    }
                    return;
                };
                if !history_covers(profile, Some(now.saturating_sub(w))) {
                    // Counted from the daily aggregates, to the day: the count moves when the window's first day
                    // moves on, or at midnight (and with future-dated events, which are in the history); and once
                    // the window starts after the oldest event the history kept, it is counted from the history,
                    // exactly, which leaves out the first day's events before the window.
                    self.consider((day_of(now.saturating_sub(w)) + 1) * DAY + w);
                    self.consider((day_of(now) + 1) * DAY);
                    if let Some(oldest) = profile.recent.front() {
                        self.consider(oldest.at.saturating_add(w).saturating_add(1));
                    }
                    for r in profile.recent.iter().filter(|r| r.at > now && matches(r, event, filters)) {
                        self.consider(r.at);
                    }
                    return;
                }
                // The history holds every event of the window now, and will as the window moves on: the count at
                // `t` is the matching events in `[t - w, t]`, read from their sorted times by binary search. It
                // changes only when an event comes in (its time) or leaves (the first millisecond after its time
                // plus the window); the first of those at which the condition changes is the exact instant.
                let mut times: Vec<Millis> =
                    profile.recent.iter().filter(|r| matches(r, event, filters)).map(|r| r.at).collect();
                sort::sort(&mut times);
                let n = |t: Millis| {
                    (times.partition_point(|&x| x <= t) - times.partition_point(|&x| x < t.saturating_sub(w))) as u64
                };
                let before = holds(n(now));
                let mut instants: Vec<Millis> = times
                    .iter()
                    .flat_map(|&at| [at, at.saturating_add(w).saturating_add(1)])
                    .filter(|t| *t > now)
                    .collect();
                sort::sort(&mut instants);
                if let Some(t) = instants.into_iter().find(|t| holds(n(*t)) != before) {
                    self.consider(t);
                }
            }
            // The rest do not change by time alone (request conditions are not in audiences).
            _ => {}
        }
    }

    /// What changes a score's value other than its decay: its conditions, future-dated events it counts, and
    /// for a heavy profile the day its oldest aggregated day stops counting.
    fn score_inputs(&mut self, score: &Score, profile: &Profile) {
        for rule in &score.rules {
            match &rule.source {
                ScoreSource::When(c) => leaves(c, &mut |c| self.leaf(c, profile)),
                ScoreSource::Event { event, filters, .. } => {
                    let now = self.now;
                    for r in profile.recent.iter().filter(|r| r.at > now && matches(r, event, filters)) {
                        self.consider(r.at);
                    }
                    if !history_covers(profile, None) {
                        self.consider((day_of(self.now) + 1) * DAY);
                    }
                }
            }
        }
    }
}

/// Half-lives after which a decayed part is below the score's rounding (2^-64 of any count a profile holds).
const DECAY_HORIZON_HALF_LIVES: i64 = 64;

/// When `cmp` on a decaying score with parts `(c, d)` at `now` (`Score::parts`) can change, on its closed form
/// `c + d·2^(-(t - now)/h)`: the first millisecond at which the unrounded score passes each value where its
/// rounding to hundredths (half away from zero) changes near the bound, a half-hundredth either side. None: the
/// score decays away from the bound.
fn solve((c, d): (f64, f64), h: Millis, now: Millis, cmp: Cmp) -> Vec<Millis> {
    let bound = match cmp {
        Cmp::Eq(b) | Cmp::Ne(b) | Cmp::Lt(b) | Cmp::Lte(b) | Cmp::Gt(b) | Cmp::Gte(b) => b * 100.0,
    };
    let mut out: Vec<Millis> = [bound.floor() - 0.5, bound.floor() + 0.5, bound.ceil() - 0.5, bound.ceil() + 0.5]
        .iter()
        .filter_map(|x| {
            let ratio = (x / 100.0 - c) / d;
            (d != 0.0 && ratio > 0.0 && ratio < 1.0).then(|| now + (-(h as f64) * libm::log2(ratio)).ceil() as Millis)
        })
        .filter(|t| *t > now)
        .collect();
    sort::sort(&mut out);
    out.dedup();
    out
}

/// The millisecond within two of `guess` (and in `(now, end]`) at which `cmp` on the score itself changes.
fn confirm(score: &Score, profile: &Profile, now: Millis, end: Millis, cmp: Cmp, guess: Millis) -> Option<Millis> {
    let cx = Context::default();
    let test = |t: Millis| cmp.holds(score.value(profile, &cx, t));
    let before = test(now);
    (guess - 2..=guess + 2).find(|&x| x > now && x <= end && test(x) != before && test(x - 1) == before)
}

/// The first millisecond in `(now, end]` at which `cmp` on the score changes, by bisection on the score itself
/// (until `end` its inputs do not change, so it is monotone and the comparison changes at most once).
fn bisect(score: &Score, profile: &Profile, now: Millis, end: Millis, cmp: Cmp) -> Option<Millis> {
    let cx = Context::default();
    first_change(now, end, |t| cmp.holds(score.value(profile, &cx, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::time::{HOUR, MINUTE};
    use crate::core::model::history::EventRecord;
    use crate::core::rules::compile_str;

    /// A small seeded generator, so that every run checks the same profiles.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    const NOW: Millis = 1_795_344_600_000;

    fn profile(rng: &mut Rng) -> Profile {
        let mut p = Profile::new("p".into(), NOW - 20 * DAY);
        let mut times: Vec<Millis> =
            (0..rng.next(12)).map(|_| NOW - 10 * DAY + (rng.next(11 * DAY as u64) as Millis)).collect();
        sort::sort(&mut times);
        for (i, at) in times.iter().enumerate() {
            let name = if rng.next(3) == 0 { "Order Completed" } else { "Product Viewed" };
            p.recent.push_back(EventRecord {
                at: *at,
                name: name.into(),
                message_id: format!("m{i}"),
                props: Default::default(),
            });
        }
        p.last_seen = times.iter().copied().filter(|t| *t <= NOW).max().unwrap_or(NOW - 20 * DAY);
        p
    }

    /// Audiences of one leaf each, whose truth can change by time alone: the next change must be exact (the
    /// membership differs there) and nothing may change before it (checked at random instants and the
    /// millisecond before).
    #[test]
    fn the_next_change_is_exact_and_nothing_changes_before_it() {
        let config = compile_str(
            r#"{"segments": [
                {"id": "views-3-in-2d", "when": {"event": "Product Viewed", "count": {"gte": 3}, "within": "2d"}},
                {"id": "no-order-in-36h", "when": {"event": "Order Completed", "count": {"eq": 0}, "within": "36h"}},
                {"id": "quiet-5d", "when": {"inactiveFor": "5d"}},
                {"id": "ever-ordered-twice", "when": {"event": "Order Completed", "count": {"gte": 2}}}
            ]}"#,
        )
        .expect("compiles");
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut changes = 0;
        for _ in 0..300 {
            let p = profile(&mut rng);
            let start = members_at(&config, &p, NOW);
            let Some(next) = next_change(&config, &p, NOW) else {
                for _ in 0..20 {
                    let t = NOW + rng.next(30 * DAY as u64) as Millis;
                    assert_eq!(members_at(&config, &p, t), start, "a change at {t} though none was due");
                }
                continue;
            };
            assert!(next > NOW);
            assert_ne!(members_at(&config, &p, next), start, "nothing changed at the instant computed");
            assert_eq!(members_at(&config, &p, next - 1), start, "the change came before the instant computed");
            for _ in 0..20 {
                let t = NOW + rng.next((next - NOW) as u64) as Millis;
                assert_eq!(members_at(&config, &p, t), start, "a change at {t}, before {next}");
            }
            changes += 1;
        }
        assert!(changes > 100, "the profiles exercise changes ({changes})");
    }

    /// A heavy profile: `MAX_RECENT_EVENTS + 50` page views `every` apart up to an hour before `NOW`, so that its
    /// history let the oldest 50 go and the daily aggregates count them; then the events `ahead` (their time and
    /// name: a client's clock may be up to a day ahead).
    fn heavy(every: Millis, ahead: &[(Millis, &str)]) -> Profile {
        use crate::core::engine::apply::{apply_events, ApplyRequest};
        use crate::core::model::history::MAX_RECENT_EVENTS;
        use crate::core::wire::events::parse_batch;
        let past = (0..(MAX_RECENT_EVENTS as i64 + 50)).map(|i| (NOW - HOUR - i * every, "page"));
        let events: Vec<String> = past
            .chain(ahead.iter().copied())
            .enumerate()
            .map(|(i, (at, name))| {
                let at = crate::core::base::time::format_iso8601(at);
                let consent = r#"{"consent":{"categoryPreferences":{"analytics":true}}}"#;
                let kind = match name {
                    "page" => r#""type":"page""#.to_string(),
                    _ => format!(r#""type":"track","event":"{name}""#),
                };
                format!(r#"{{{kind},"anonymousId":"a","messageId":"p{i}","timestamp":"{at}","context":{consent}}}"#)
            })
            .collect();
        let body = format!(r#"{{"batch":[{}]}}"#, events.join(","));
        let parsed = parse_batch(body.as_bytes(), NOW).expect("parses");
        let req = ApplyRequest { profile_id: "p".into(), events: parsed.events, ..ApplyRequest::default() };
        let p = apply_events(None, req, &Config::default()).0.expect("stored");
        assert_eq!(p.recent.len(), MAX_RECENT_EVENTS);
        assert!(ahead.iter().all(|(t, _)| p.recent.iter().any(|r| r.at == *t)));
        p
    }

    /// One audience of `when`.
    fn audience(when: &str) -> Config {
        compile_str(&format!(r#"{{"segments": [{{"id": "a", "when": {when}}}]}}"#)).expect("compiles")
    }

    /// A heavy profile is counted from the daily aggregates until the window starts after the oldest event the
    /// history kept, and from the history from then on, without the first day's events before the window: that
    /// instant is a change too (a device program read a count the edge no longer had, `tests/device_props.rs`).
    #[test]
    fn a_heavy_profile_changes_when_its_history_starts_to_cover_the_window() {
        use crate::core::rules::segment::series_for;
        let p = heavy(10 * MINUTE, &[]);
        let w = 2 * DAY;
        let switch = p.recent.front().expect("a history").at + w + 1;
        let series = series_for("page", &[]);
        let count = |t| count_events(&p, "page", &[], series.as_deref(), Some(w), t);
        let (before, after) = (count(switch - 1), count(switch));
        assert!(before > after, "the aggregates count more than the history kept ({before}, {after})");
        let config = audience(&format!(r#"{{"event": "page", "count": {{"gte": {before}}}, "within": "2d"}}"#));
        assert_ne!(members_at(&config, &p, switch - 1), members_at(&config, &p, switch));
        // Every ten minutes before it (a midnight comes first, after which the next day's boundary is later).
        for step in 0..(switch - NOW) / (10 * MINUTE) {
            let now = NOW + step * 10 * MINUTE;
            let next = next_change(&config, &p, now).expect("a windowed count changes");
            assert!(next <= switch, "from {now}, the next change {next} comes after the one at {switch}");
        }
    }

    /// What wakes a profile, row by row: the instant each row names is the next change, and the audience's
    /// membership changes there and not a millisecond before.
    #[test]
    fn each_kind_of_count_wakes_at_its_own_instant() {
        let record = |at, name: &str| EventRecord {
            at,
            name: name.into(),
            message_id: format!("m{at}"),
            props: Default::default(),
        };
        // Two orders, the second dated five hours ahead (a client's clock): an all-time count changes then.
        let mut ahead = Profile::new("p".into(), NOW - 20 * DAY);
        ahead.recent.extend([record(NOW - DAY, "Order Completed"), record(NOW + 5 * HOUR, "Order Completed")]);
        ahead.last_seen = NOW - DAY;
        let views_36h = |p: &Profile, t| {
            let series = crate::core::rules::segment::series_for("page", &[]);
            count_events(p, "page", &[], series.as_deref(), Some(36 * HOUR), t)
        };
        let within_36h = |n: u64| format!(r#"{{"event": "page", "count": {{"gte": {n}}}, "within": "36h"}}"#);
        // A heavy profile and a window that is not whole days: the aggregates' first day leaves at noon.
        let heavy_10m = heavy(10 * MINUTE, &[]);
        let noon = (day_of(NOW - 36 * HOUR) + 1) * DAY + 36 * HOUR;
        // Views a minute apart (the history covers the window only the next day) and one dated tomorrow at one:
        // the aggregates count tomorrow's day from midnight.
        let midnight = (day_of(NOW) + 1) * DAY;
        let tomorrow = heavy(MINUTE, &[(midnight + HOUR, "page")]);
        // A window longer than the aggregates keep: the history counts, and a view dated ahead comes in at its
        // time (another event before it changes nothing).
        let long = heavy(10 * MINUTE, &[(NOW + 2 * HOUR, "Other"), (NOW + 3 * HOUR, "page")]);
        let views_40d = |t| count_events(&long, "page", &[], None, Some(40 * DAY), t);
        let within_40d = format!(r#"{{"event": "page", "count": {{"gte": {}}}, "within": "40d"}}"#, views_40d(NOW) + 1);
        // Three orders, one dated ahead: exactly two holds until it comes (an earlier order changes nothing now).
        let mut third = ahead.clone();
        third.recent.insert(1, record(NOW - 2 * HOUR, "Order Completed"));
        let after_noon = noon + HOUR;
        let rows: &[(&Profile, Millis, String, Millis)] = &[
            (&ahead, NOW, r#"{"event": "Order Completed", "count": {"gte": 2}}"#.into(), NOW + 5 * HOUR),
            (&heavy_10m, NOW, within_36h(views_36h(&heavy_10m, NOW)), noon),
            (&tomorrow, after_noon, within_36h(views_36h(&tomorrow, after_noon) + 1), midnight),
            (&long, NOW, within_40d, NOW + 3 * HOUR),
            (&third, NOW, r#"{"event": "Order Completed", "count": {"eq": 2}}"#.into(), NOW + 5 * HOUR),
        ];
        for (p, now, when, at) in rows {
            let config = audience(when);
            assert_eq!(next_change(&config, p, *now), Some(*at), "{when}");
            assert_ne!(members_at(&config, p, *at), members_at(&config, p, *now), "{when}");
            assert_eq!(members_at(&config, p, *at - 1), members_at(&config, p, *now), "{when}");
        }
    }

    /// A decaying score's crossing, to the millisecond: the score holds its bound just before, not at it.
    #[test]
    fn a_decaying_score_crosses_its_bound_at_the_instant_computed() {
        let config = compile_str(
            r#"{"scores": [{"id": "intent", "halfLife": "1d", "rules": [{"event": "Product Viewed", "points": 10}]}],
                "segments": [{"id": "keen", "when": {"score": "intent", "gte": 12.5}}]}"#,
        )
        .expect("compiles");
        let mut p = Profile::new("p".into(), NOW - DAY);
        for (i, ago) in [30 * MINUTE, 3 * HOUR, 20 * HOUR].iter().enumerate() {
            p.recent.push_back(EventRecord {
                at: NOW - ago,
                name: "Product Viewed".into(),
                message_id: format!("m{i}"),
                props: Default::default(),
            });
        }
        let score = |t| config.scores[0].value(&p, &Context::default(), t);
        assert!(score(NOW) >= 12.5);
        let next = next_change(&config, &p, NOW).expect("the score decays below its bound");
        assert!(score(next - 1) >= 12.5 && score(next) < 12.5, "{} then {}", score(next - 1), score(next));
        assert_eq!(members_at(&config, &p, next), Vec::<&str>::new());
    }

    /// Time alone: an inactive profile enters at the threshold's exact instant when woken late, and a
    /// configuration change re-evaluates it at once with its own cause.
    #[test]
    fn catching_up_replays_each_change_at_its_instant_then_new_definitions() {
        let config =
            compile_str(r#"{"segments": [{"id": "quiet", "when": {"inactiveFor": "1h"}}]}"#).expect("compiles");
        let mut p = Profile::new("p".into(), NOW);
        assert!(track(&config, &mut p, NOW, Cause::Event).is_empty());
        assert_eq!(p.audiences.due, Some(NOW + HOUR));
        let woken = catch_up(&config, &mut p, NOW + 5 * HOUR);
        assert_eq!(woken.len(), 1);
        assert_eq!((woken[0].at, woken[0].cause, woken[0].entered), (NOW + HOUR, Cause::Time, true));
        assert_eq!(p.audiences.due, None);
        let other =
            compile_str(r#"{"segments": [{"id": "quiet", "when": {"inactiveFor": "10h"}}]}"#).expect("compiles");
        let moved = catch_up(&other, &mut p, NOW + 6 * HOUR);
        assert_eq!((moved[0].cause, moved[0].entered, moved[0].at), (Cause::Configuration, false, NOW + 6 * HOUR));
        assert_eq!(p.audiences.due, Some(NOW + 10 * HOUR));
    }

    /// The wake's edges, one row each: an alarm at exactly the instant due moves the profile then (an alarm
    /// is set for that instant, so a wake that did nothing there would be set again for the same instant, for
    /// ever), and a millisecond earlier nothing moves.
    #[test]
    fn a_wake_at_exactly_the_instant_due_moves_the_profile() {
        let config =
            compile_str(r#"{"segments": [{"id": "quiet", "when": {"inactiveFor": "1h"}}]}"#).expect("compiles");
        for (woken_at, moved) in [(NOW + HOUR - 1, 0), (NOW + HOUR, 1), (NOW + HOUR + 1, 1)] {
            let mut p = Profile::new("p".into(), NOW);
            track(&config, &mut p, NOW, Cause::Event);
            let out = catch_up(&config, &mut p, woken_at);
            assert_eq!(out.len(), moved, "woken at due{:+}", woken_at - (NOW + HOUR));
            assert_eq!(p.audiences.due.is_some(), moved == 0, "woken at due{:+}", woken_at - (NOW + HOUR));
        }
    }
}
