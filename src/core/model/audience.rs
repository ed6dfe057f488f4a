//! A profile's audiences: which it is in (since when), the transitions that brought it in and out (bounded), and
//! when time alone could next move it. How they are evaluated is `engine::audiences`.

use crate::core::base::time::{format_iso8601, Millis};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Transitions a profile keeps (oldest go first). Every transition also leaves through the activation outlet,
/// so this bound only limits what the profile itself shows.
pub const MAX_TRANSITIONS: usize = 100;

/// What moved a profile in or out of an audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cause {
    /// Events applied to the profile (consent changes included: they arrive as events).
    Event,
    /// The profile absorbed another.
    Merge,
    /// A profile this one had absorbed was split off, or this one was split off and stands again.
    Split,
    /// Time alone: a window's edge, an inactivity threshold, a decaying score crossing a bound.
    Time,
    /// The audiences' definitions changed.
    Configuration,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Event => "event",
            Cause::Merge => "merge",
            Cause::Split => "split",
            Cause::Time => "time",
            Cause::Configuration => "configuration",
        }
    }
}

/// One entry into or exit from an audience.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub audience: String,
    pub entered: bool,
    /// The exact instant (for a change by time alone, the instant the condition changed, however late the
    /// profile was woken).
    pub at: Millis,
    pub cause: Cause,
    /// The profile's transition sequence number: one more for each transition, so that a reader that receives
    /// them out of order (the membership index, behind a queue) keeps the latest per audience.
    pub seq: u64,
}

impl Transition {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "audience": self.audience,
            "type": if self.entered { "entered" } else { "exited" },
            "at": format_iso8601(self.at),
            "cause": self.cause.name(),
            "seq": self.seq,
        })
    }
}

/// The audience part of a profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Audiences {
    /// The audiences the profile is in, by id, with when it entered; sorted by id.
    pub members: Vec<(String, Millis)>,
    /// Oldest first, at most `MAX_TRANSITIONS`.
    pub transitions: VecDeque<Transition>,
    /// The last transition's sequence number (0: none yet).
    pub seq: u64,
    /// The audience definitions (`Config::audience_digest`) the membership was last evaluated under.
    pub digest: u64,
    /// The next instant at which time alone could change a membership (`engine::audiences::next_change`),
    /// computed at the last evaluation.
    pub due: Option<Millis>,
}

impl Audiences {
    pub fn is_member(&self, audience: &str) -> bool {
        self.members.binary_search_by(|(id, _)| id.as_str().cmp(audience)).is_ok()
    }

    /// Records a transition: membership, sequence number and the bounded log.
    pub(crate) fn record(&mut self, audience: &str, entered: bool, at: Millis, cause: Cause) -> Transition {
        match self.members.binary_search_by(|(id, _)| id.as_str().cmp(audience)) {
            Ok(i) if !entered => {
                self.members.remove(i);
            }
            Err(i) if entered => self.members.insert(i, (audience.to_string(), at)),
            _ => {}
        }
        self.seq += 1;
        let t = Transition { audience: audience.to_string(), entered, at, cause, seq: self.seq };
        self.transitions.push_back(t.clone());
        while self.transitions.len() > MAX_TRANSITIONS {
            self.transitions.pop_front();
        }
        t
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "members": self.members.iter().map(|(id, since)| serde_json::json!({"audience": id, "since": format_iso8601(*since)})).collect::<Vec<_>>(),
            "transitions": self.transitions.iter().map(Transition::to_json).collect::<Vec<_>>(),
            "nextChange": self.due.map(format_iso8601),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_stays_sorted_and_the_log_bounded() {
        let mut a = Audiences::default();
        a.record("b", true, 1, Cause::Event);
        a.record("a", true, 2, Cause::Event);
        assert_eq!(a.members, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
        assert!(a.is_member("a") && !a.is_member("c"));
        let t = a.record("b", false, 3, Cause::Time);
        assert_eq!((t.seq, t.entered), (3, false));
        assert!(!a.is_member("b"));
        for i in 0..(MAX_TRANSITIONS as i64 + 10) {
            a.record("c", i % 2 == 0, 10 + i, Cause::Event);
        }
        assert_eq!(a.transitions.len(), MAX_TRANSITIONS);
        assert_eq!(a.transitions.back().map(|t| t.seq), Some(a.seq));
    }
}
