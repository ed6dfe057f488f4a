//! What a profile was shown: impressions per block (frequency caps) and experiment assignments, exposures
//! and conversions.

use crate::core::base::time::Millis;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Impression times kept per block: enough for any frequency cap up to this many per period.
pub const MAX_IMPRESSIONS: usize = 64;

/// What a profile was shown, as decisions record it: impressions per block (for frequency caps) and experiment
/// assignments (sticky, and the base of exposure and conversion counts).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Shown {
    /// Block id to impression times, oldest first, at most `MAX_IMPRESSIONS`.
    pub impressions: BTreeMap<String, VecDeque<Millis>>,
    /// Experiment id to the assignment made at first exposure.
    pub experiments: BTreeMap<String, Assignment>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// A variant id, or `control` for the holdout.
    pub variant: String,
    /// The first exposure.
    pub at: Millis,
    /// The first goal event within the experiment's window after exposure.
    pub converted_at: Option<Millis>,
}

/// One answer a decision served, to be recorded on the profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Impression {
    pub block: String,
    pub variant: String,
    pub experiment: Option<String>,
    pub at: Millis,
}

/// A change to an experiment's counts that recording caused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Exposed {
        experiment: String,
        variant: String,
    },
    Converted {
        experiment: String,
        variant: String,
    },
    /// A merge united two profiles that were both exposed: the person keeps the earlier assignment, and the
    /// other one's exposure (and its conversion, if it had one) no longer counts.
    Withdrawn {
        experiment: String,
        variant: String,
        converted: bool,
    },
}

/// An experiment's counts: variant id to `[exposures, conversions]`, as its Durable Object keeps them.
pub type Tally = BTreeMap<String, [u64; 2]>;

impl Outcome {
    /// The experiment this outcome counts for.
    pub fn experiment(&self) -> &str {
        match self {
            Outcome::Exposed { experiment, .. }
            | Outcome::Converted { experiment, .. }
            | Outcome::Withdrawn { experiment, .. } => experiment,
        }
    }

    /// Counts this outcome in its experiment's tally: an exposure or a conversion adds one; a withdrawal takes
    /// back the exposure (and its conversion), never below zero.
    pub fn count_in(&self, tally: &mut Tally) {
        match self {
            Outcome::Exposed { variant, .. } => tally.entry(variant.clone()).or_default()[0] += 1,
            Outcome::Converted { variant, .. } => tally.entry(variant.clone()).or_default()[1] += 1,
            Outcome::Withdrawn { variant, converted, .. } => {
                let c = tally.entry(variant.clone()).or_default();
                c[0] = c[0].saturating_sub(1);
                if *converted {
                    c[1] = c[1].saturating_sub(1);
                }
            }
        }
    }
}

impl Shown {
    /// Records impressions; the first exposure to an experiment fixes its assignment.
    pub fn record(&mut self, impressions: &[Impression]) {
        for i in impressions {
            self.add_impression(&i.block, i.at);
            if let Some(e) = &i.experiment {
                if !self.experiments.contains_key(e) {
                    let a = Assignment { variant: i.variant.clone(), at: i.at, converted_at: None };
                    self.experiments.insert(e.clone(), a);
                }
            }
        }
    }

    /// The exposures and conversions that happened since `before` (the same profile earlier), for the
    /// experiments' counts.
    pub fn outcomes_since(&self, before: &Shown) -> Vec<Outcome> {
        let mut out = Vec::new();
        for (e, a) in &self.experiments {
            let was = before.experiments.get(e);
            let (experiment, variant) = (e.clone(), a.variant.clone());
            if was.is_none() {
                out.push(Outcome::Exposed { experiment: experiment.clone(), variant: variant.clone() });
            }
            if a.converted_at.is_some() && was.is_none_or(|w| w.converted_at.is_none()) {
                out.push(Outcome::Converted { experiment, variant });
            }
        }
        out
    }

    /// Adds one impression time to a block's, in time order, keeping the latest `MAX_IMPRESSIONS`.
    fn add_impression(&mut self, block: &str, at: Millis) {
        let times = self.impressions.entry(block.to_string()).or_default();
        let pos = times.partition_point(|t| *t <= at);
        times.insert(pos, at);
        while times.len() > MAX_IMPRESSIONS {
            times.pop_front();
        }
    }

    /// Impressions of a block within `per` before `now`.
    pub fn impressions_within(&self, block: &str, per: Millis, now: Millis) -> usize {
        self.impressions.get(block).map_or(0, |t| t.iter().filter(|at| **at > now - per && **at <= now).count())
    }

    /// Unites another profile's record (a merge): impressions of both, and for each experiment the earlier
    /// assignment, so that a person keeps the variant they saw first. Answers the changes to the experiments'
    /// counts: both profiles were counted when exposed, and one person must count once, in the variant kept;
    /// a conversion on the dropped side after the kept exposure moves to the kept variant.
    pub fn absorb(&mut self, other: &Shown) -> Vec<Outcome> {
        for (block, times) in &other.impressions {
            for at in times {
                self.add_impression(block, *at);
            }
        }
        let mut withdrawn = Vec::new();
        for (e, theirs) in &other.experiments {
            let Some(mine) = self.experiments.get_mut(e) else {
                self.experiments.insert(e.clone(), theirs.clone());
                continue;
            };
            // The earlier assignment is kept (`kept`), the other one is dropped.
            let dropped = if mine.at <= theirs.at { theirs.clone() } else { std::mem::replace(mine, theirs.clone()) };
            let kept = mine;
            withdrawn.push(Outcome::Withdrawn {
                experiment: e.clone(),
                variant: dropped.variant.clone(),
                converted: dropped.converted_at.is_some(),
            });
            // A goal reached on the other device counts for the kept variant: the person is analysed in the
            // variant they were assigned first (it came after the kept exposure, which is the earlier one).
            if let (None, Some(c)) = (kept.converted_at, dropped.converted_at.filter(|c| *c >= kept.at)) {
                kept.converted_at = Some(c);
                withdrawn.push(Outcome::Converted { experiment: e.clone(), variant: kept.variant.clone() });
            }
        }
        withdrawn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_count_in_their_tally_and_withdrawals_never_go_below_zero() {
        let (x, a) = ("e1".to_string(), "a".to_string());
        let exposed = Outcome::Exposed { experiment: x.clone(), variant: a.clone() };
        let converted = Outcome::Converted { experiment: x.clone(), variant: a.clone() };
        let withdrawn = |converted| Outcome::Withdrawn { experiment: x.clone(), variant: a.clone(), converted };
        let mut tally = Tally::new();
        for o in [&exposed, &exposed, &converted] {
            o.count_in(&mut tally);
        }
        assert_eq!(tally["a"], [2, 1]);
        withdrawn(true).count_in(&mut tally);
        assert_eq!(tally["a"], [1, 0]);
        withdrawn(true).count_in(&mut tally);
        withdrawn(false).count_in(&mut tally);
        assert_eq!(tally["a"], [0, 0], "never below zero");
        assert_eq!(exposed.experiment(), "e1");
    }
}
