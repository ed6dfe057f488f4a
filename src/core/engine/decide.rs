//! Decisions: which block (and variant) each slot shows to a visitor, filled from its template
//! (`core::rules::template`), with frequency caps and experiments.

use crate::core::base::time::Millis;
use crate::core::engine::evaluate::{evaluate_all, scores_of, Facts};
use crate::core::engine::predict::for_conditions;
use crate::core::engine::pressure::slot_over_budget;
use crate::core::model::consent::Permitted;
use crate::core::model::context::Context;
use crate::core::model::profile::Profile;
use crate::core::model::shown::Impression;
use crate::core::rules::segment::Condition;
use crate::core::rules::slots::{Block, Variant, CONTROL};
use crate::core::rules::Config;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What one slot shows.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotAnswer {
    pub block: Option<String>,
    pub variant: Option<String>,
    pub html: String,
    pub experiment: Option<String>,
    /// Whether serving this answer must be recorded on the profile (the block has a cap or an experiment).
    pub record: bool,
}

/// A requested slot that the configuration does not define.
#[derive(Clone, Debug, PartialEq)]
pub struct UnknownSlot {
    pub index: usize,
    pub slot: String,
}

/// Why a block was passed over.
#[derive(Clone, Debug, PartialEq)]
pub enum Skip {
    NotStarted,
    Ended,
    Audience(String),
    Capped {
        shown: usize,
        max: u32,
    },
    /// The slot is counted by the marketing-pressure budget (`pressure.slots`), which is spent.
    Pressure,
}

/// How a slot's answer came about (`?explain=1`).
#[derive(Clone, Debug, PartialEq)]
pub struct SlotExplanation {
    pub skipped: Vec<(String, Skip)>,
    /// `hash`, `sticky` (an earlier exposure), `holdout`, or `fallback`.
    pub assignment: &'static str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// Why every slot answers its fallback, when that is so for reasons of the whole request.
    pub personalized: Result<(), &'static str>,
    pub scores: Vec<(String, f64)>,
    pub slots: BTreeMap<String, SlotExplanation>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub profile_id: Option<String>,
    pub segments: Vec<String>,
    pub slots: BTreeMap<String, SlotAnswer>,
    pub unknown: Vec<UnknownSlot>,
    pub explanation: Option<Explanation>,
}

impl Decision {
    /// The answer of `/v1/decide`. The explanation, when there is one, is `to_json_explained`'s.
    pub fn to_json(&self) -> serde_json::Value {
        // Maps are filled one by one: `collect` would link a sort and a bulk build per map type.
        let mut slots = serde_json::Map::new();
        for (k, a) in &self.slots {
            let mut v = serde_json::json!({"block": a.block, "variant": a.variant, "html": a.html});
            if let Some(e) = &a.experiment {
                v["experiment"] = e.as_str().into();
            }
            slots.insert(k.clone(), v);
        }
        let mut out = serde_json::json!({"profileId": self.profile_id, "segments": self.segments, "slots": slots});
        if !self.unknown.is_empty() {
            out["rejected"] = self
                .unknown
                .iter()
                .map(|u| {
                    serde_json::json!({"index": u.index, "code": "unknown_slot",
                        "message": format!("slot {:?} is not configured", u.slot), "path": format!("slots[{}]", u.index)})
                })
                .collect();
        }
        out
    }

    /// `to_json` with the explanation under `explain` (`?explain=1`), when the decision has one.
    pub fn to_json_explained(&self) -> serde_json::Value {
        let mut out = self.to_json();
        if let Some(x) = &self.explanation {
            let mut slots = serde_json::Map::new();
            for (k, e) in &x.slots {
                let skipped: Vec<serde_json::Value> = e
                    .skipped
                    .iter()
                    .map(|(block, why)| {
                        let (reason, detail) = match why {
                            Skip::NotStarted => ("not_started", "its schedule has not started".to_string()),
                            Skip::Ended => ("ended", "its schedule has ended".to_string()),
                            Skip::Audience(d) => ("audience", d.clone()),
                            Skip::Capped { shown, max } => {
                                ("capped", format!("shown {shown} times in the cap's period; the cap is {max}"))
                            }
                            Skip::Pressure => {
                                ("pressure", "the marketing-pressure budget is spent for this person".to_string())
                            }
                        };
                        serde_json::json!({"block": block, "reason": reason, "detail": detail})
                    })
                    .collect();
                slots.insert(k.clone(), serde_json::json!({"skipped": skipped, "assignment": e.assignment}));
            }
            let mut scores = serde_json::Map::new();
            for (k, v) in &x.scores {
                scores.insert(k.clone(), serde_json::Value::from(*v));
            }
            out["explain"] = serde_json::json!({
                "personalized": x.personalized.is_ok(),
                "reason": x.personalized.err(),
                "scores": scores,
                "slots": slots,
            });
        }
        out
    }

    /// The answers that must be recorded on the profile, as impressions at `now`.
    pub fn impressions(&self, now: Millis) -> Vec<Impression> {
        self.slots
            .values()
            .filter(|a| a.record)
            .filter_map(|a| {
                Some(Impression {
                    block: a.block.clone()?,
                    variant: a.variant.clone()?,
                    experiment: a.experiment.clone(),
                    at: now,
                })
            })
            .collect()
    }
}

/// Chooses a block for each requested slot. Without a permitted profile (no profile yet, or no
/// personalization consent) every slot gets its fallback.
pub fn decide(
    config: &Config,
    subject: Option<Permitted<&Profile>>,
    cx: &Context,
    slots: &[String],
    now: Millis,
) -> Decision {
    run::<false>(config, subject, cx, slots, now)
}

/// `decide`, with the reasons for each answer (`?explain=1`).
pub fn explain(
    config: &Config,
    subject: Option<Permitted<&Profile>>,
    cx: &Context,
    slots: &[String],
    now: Millis,
) -> Decision {
    run::<true>(config, subject, cx, slots, now)
}

/// `EXPLAIN` is a constant so that `decide` alone links no explanation code.
fn run<const EXPLAIN: bool>(
    config: &Config,
    subject: Option<Permitted<&Profile>>,
    cx: &Context,
    slots: &[String],
    now: Millis,
) -> Decision {
    let profile = subject.as_ref().map(|p| *p.get());
    let scores = profile.map(|p| scores_of(config, p, cx, now)).unwrap_or_default();
    let predictions = profile.map(|p| for_conditions(config, p, now)).unwrap_or_default();
    let facts = profile.map(|profile| Facts { profile, cx, now, scores: &scores, predictions: &predictions });
    let results = facts.as_ref().map(|f| evaluate_all(&config.segments, &config.segment_order, f));
    let mut decision = Decision {
        profile_id: profile.map(|p| p.id.clone()),
        segments: match &results {
            Some(r) => config.segments.iter().zip(r).filter(|(_, m)| **m).map(|(s, _)| s.id.clone()).collect(),
            None => Vec::new(),
        },
        slots: BTreeMap::new(),
        unknown: Vec::new(),
        explanation: EXPLAIN.then(|| Explanation {
            personalized: if profile.is_some() { Ok(()) } else { Err("no profile, or no personalization consent") },
            scores: config.scores.iter().zip(&scores).map(|(s, v)| (s.id.clone(), *v)).collect(),
            slots: BTreeMap::new(),
        }),
    };
    for (index, name) in slots.iter().enumerate() {
        let Some(slot) = config.slots.get(name) else {
            decision.unknown.push(UnknownSlot { index, slot: name.clone() });
            continue;
        };
        let mut why = SlotExplanation { skipped: Vec::new(), assignment: "fallback" };
        let mut answer =
            SlotAnswer { block: None, variant: None, html: String::new(), experiment: None, record: false };
        let mut html = None;
        if let (Some(f), Some(r)) = (&facts, &results) {
            // A slot the pressure budget counts shows nothing once the budget is spent (journeys' sends included).
            let spent = slot_over_budget(config, f.profile, name, f.now);
            for block in &slot.blocks {
                let skipped = if spent { Some(Skip::Pressure) } else { skip::<EXPLAIN>(block, f, r, config) };
                match skipped {
                    Some(s) => {
                        if EXPLAIN {
                            why.skipped.push((block.id.clone(), s));
                        }
                    }
                    None => {
                        let (variant, how) = choose(block, f.profile);
                        why.assignment = how;
                        answer.block = Some(block.id.clone());
                        answer.experiment = block.experiment.as_ref().map(|e| e.id.clone());
                        answer.record = block.cap.is_some()
                            || block.experiment.is_some()
                            || config.pressure.slots.iter().any(|s| s == name);
                        match variant {
                            Some(v) => {
                                answer.variant = Some(v.id.clone());
                                html = Some(v.html.render(Some(f.profile)));
                            }
                            None => answer.variant = Some(CONTROL.to_string()),
                        }
                        break;
                    }
                }
            }
        }
        answer.html = html.unwrap_or_else(|| slot.fallback.render(None));
        if let Some(x) = decision.explanation.as_mut().filter(|_| EXPLAIN) {
            x.slots.insert(name.clone(), why);
        }
        decision.slots.insert(name.clone(), answer);
    }
    decision
}

/// Why a block cannot be shown now, or `None` when it can. Only with `EXPLAIN` does an audience that does
/// not hold say why (which costs allocations a plain decision does not need).
fn skip<const EXPLAIN: bool>(block: &Block, f: &Facts, segments: &[bool], config: &Config) -> Option<Skip> {
    if block.start.is_some_and(|s| f.now < s) {
        return Some(Skip::NotStarted);
    }
    if block.end.is_some_and(|e| f.now >= e) {
        return Some(Skip::Ended);
    }
    if !block.audience.holds(f, segments) {
        return Some(Skip::Audience(if EXPLAIN {
            why_not(&block.audience, f, segments, config)
        } else {
            String::new()
        }));
    }
    if let Some(cap) = &block.cap {
        let shown = f.profile.shown.impressions_within(&block.id, cap.per, f.now);
        if shown >= cap.max as usize {
            return Some(Skip::Capped { shown, max: cap.max });
        }
    }
    None
}

/// A short reason why `c` (which does not hold) fails.
fn why_not(c: &Condition, f: &Facts, segments: &[bool], config: &Config) -> String {
    let segment = |i: &usize| config.segments.get(*i).map_or("?", |s| s.id.as_str());
    match c {
        Condition::Segment(i) => format!("not in segment {:?}", segment(i)),
        Condition::All(cs) => match cs.iter().find(|c| !c.holds(f, segments)) {
            Some(c) => why_not(c, f, segments, config),
            None => "the audience does not match".into(),
        },
        Condition::Not(inner) => match inner.as_ref() {
            Condition::Segment(i) => format!("in excluded segment {:?}", segment(i)),
            Condition::Any(cs) => match cs.iter().find(|c| c.holds(f, segments)) {
                Some(Condition::Segment(i)) => format!("in excluded segment {:?}", segment(i)),
                _ => "an excluding condition holds".into(),
            },
            _ => "an excluding condition holds".into(),
        },
        Condition::Any(_) => "none of the alternatives holds".into(),
        Condition::EventCount { event, .. } => format!("the count of {event:?} events does not match"),
        Condition::Score { index, .. } => {
            let id = config.scores.get(*index).map_or("?", |s| s.id.as_str());
            format!("score {id:?} is {}", f.scores.get(*index).copied().unwrap_or_default())
        }
        Condition::Prediction { index, .. } => {
            let name = config.predictions.names.get(*index).map_or("?", |(n, _)| n.as_str());
            match f.predictions.get(*index).copied().flatten() {
                Some(v) => format!("prediction {name:?} is {v:.4}"),
                None => format!("prediction {name:?} is not known for this person"),
            }
        }
        Condition::InactiveFor(_) => "active too recently".into(),
        Condition::Identified(true) => "not identified".into(),
        Condition::Identified(false) => "identified".into(),
        Condition::Trait { name, .. } => format!("trait {name:?} does not match"),
        Condition::Consent(p) => format!("no {} consent", p.name()),
        Condition::Page(_) => format!("page path {:?} does not match", f.cx.path().unwrap_or("")),
        Condition::Referrer(_) => "the referrer does not match".into(),
        Condition::Utm { param, .. } => format!("{param} does not match"),
        Condition::Country(_) => format!("country {:?} is not listed", f.cx.country.as_deref().unwrap_or("")),
        Condition::Device(_) => "the device class is not listed".into(),
        Condition::LocalHour(_) => "outside the local hours".into(),
        Condition::Everyone => "no one matches".into(),
    }
}

/// The variant a profile sees, `None` for an experiment's holdout, and how it was chosen. An experiment's
/// assignment recorded on the profile wins (sticky across merges and configuration edits, as long as the
/// variant still exists); otherwise the choice is a hash of the profile id, the same on every platform.
pub(crate) fn choose<'b>(block: &'b Block, profile: &Profile) -> (Option<&'b Variant>, &'static str) {
    let Some(exp) = &block.experiment else {
        // One variant (a block with `html`) needs no hash: SHA-256 per block was a tenth of a device decision.
        if let [only] = block.variants.as_slice() {
            return (Some(only), "hash");
        }
        return (Some(weighted(&block.variants, bucket(&profile.id, &block.id))), "hash");
    };
    if let Some(a) = profile.shown.experiments.get(&exp.id) {
        if a.variant == CONTROL {
            return (None, "sticky");
        }
        if let Some(v) = block.variants.iter().find(|v| v.id == a.variant) {
            return (Some(v), "sticky");
        }
    }
    let n = bucket(&profile.id, &exp.id);
    if n % 100 < u64::from(exp.holdout) {
        return (None, "holdout");
    }
    (Some(weighted(&block.variants, n / 100)), "hash")
}

/// A number from the profile id and a key: the first 8 bytes of SHA-256, identical on every platform.
fn bucket(profile_id: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(profile_id.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut n = [0u8; 8];
    n.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(n)
}

fn weighted(variants: &[Variant], n: u64) -> &Variant {
    let total: u64 = variants.iter().map(|v| u64::from(v.weight)).sum();
    let mut bucket = n % total.max(1);
    for v in variants {
        if bucket < u64::from(v.weight) {
            return v;
        }
        bucket -= u64::from(v.weight);
    }
    // Unreachable when weights sum to `total`; the first variant is a safe answer either way.
    &variants[0]
}
