//! Audiences in motion: which audiences a profile is in, the transitions when that changes, and the next instant
//! at which time alone could change it.
//!
//! An audience is a segment that reads only the profile and the time (`rules::segment::audiences`). Its profile's
//! writer calls `catch_up` before it changes a profile (what time alone or a new configuration changed since the
//! last evaluation), then `track` after (what the change did), and wakes the profile at `Audiences::due` with
//! `catch_up` alone. Nothing polls: a profile whose audiences cannot change by time alone is never woken for them.

use crate::core::base::time::{Millis, DAY};
use crate::core::engine::decide::scores_of;
use crate::core::engine::evaluate::{count_events, evaluate_all, history_covers, matches, Facts};
use crate::core::model::aggregate::day_of;
use crate::core::model::audience::{Cause, Transition};
use crate::core::model::context::Context;
use crate::core::model::profile::Profile;
use crate::core::rules::segment::{Condition, Score, ScoreSource};
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
    let results =
        evaluate_all(&config.segments, &config.segment_order, &Facts { profile, cx: &cx, now, scores: &scores });
    let mut ids: Vec<&str> =
        config.audiences.iter().filter(|&&i| results[i]).map(|&i| config.segments[i].id.as_str()).collect();
    ids.sort_unstable();
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
    let mut next = Next { now, at: None };
    let mut scores = Vec::new();
    for &i in &config.audiences {
        leaves(&config.segments[i].when, &mut |c| match c {
            Condition::Score { index, cmps } => scores.push((*index, cmps)),
            c => next.leaf(c, profile),
        });
    }
    // Every score an audience reads: what its own conditions and future-dated events do, then (bounded by all of
    // the above, within which a decaying score is monotone) where it crosses each bound.
    for (index, _) in &scores {
        if let Some(score) = config.scores.get(*index) {
            next.score_inputs(score, profile);
        }
    }
    let horizon = next.at;
    for (index, cmps) in scores {
        if let Some(score) = config.scores.get(index) {
            for cmp in cmps {
                if let Some(t) = crossing(score, profile, now, horizon, |v| cmp.holds(v)) {
                    next.consider(t);
                }
            }
        }
    }
    next.at
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
                let holds = |t: Millis| {
                    let n = count_events(profile, event, filters, series.as_deref(), *window, t) as f64;
                    count.iter().all(|c| c.holds(n))
                };
                // Where the count can change: a future-dated event comes in, an event leaves the window (the
                // first millisecond it is out). The first of those where the condition changes is exact.
                let mut instants: Vec<Millis> = profile
                    .recent
                    .iter()
                    .filter(|r| matches(r, event, filters))
                    .flat_map(|r| [Some(r.at), window.map(|w| r.at.saturating_add(w).saturating_add(1))])
                    .flatten()
                    .filter(|t| *t > now)
                    .collect();
                instants.sort_unstable();
                instants.dedup();
                let before = holds(now);
                if let Some(t) = instants.into_iter().find(|t| holds(*t) != before) {
                    self.consider(t);
                }
                // Counted from the daily aggregates: the window's first day moves on at a day boundary.
                if let Some(w) = window {
                    if !history_covers(profile, Some(now.saturating_sub(*w))) {
                        self.consider((day_of(now.saturating_sub(*w)) + 1) * DAY + w);
                        self.consider((day_of(now) + 1) * DAY);
                    }
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

/// The first millisecond after `now`, and no later than `horizon`, at which `test` of `score` changes, when the
/// score decays (without a half-life it changes only with its inputs, which `score_inputs` covers). Until the
/// horizon its inputs do not change, so the decayed part is `D·2^(-t/h)`, monotone: the test changes at most once,
/// and bisection on the score itself finds the exact millisecond, rounding included.
fn crossing(
    score: &Score,
    profile: &Profile,
    now: Millis,
    horizon: Option<Millis>,
    test: impl Fn(f64) -> bool,
) -> Option<Millis> {
    let h = score.half_life?;
    let end = now.saturating_add(h.saturating_mul(DECAY_HORIZON_HALF_LIVES));
    let end = horizon.map_or(end, |x| x.min(end));
    let cx = Context::default();
    let at = |t: Millis| test(score.value(profile, &cx, t));
    let before = at(now);
    // The horizon itself belongs to the next evaluation (something else changes there).
    let (mut lo, mut hi) = (now, end - 1);
    if hi <= lo || at(hi) == before {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if at(mid) == before {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}
