//! The rules a device decides with for one visitor (delivery way 3, for sites that are static files), written at
//! the edge when the device asks for them: everything that reads the profile (traits, events, scores,
//! predictions, consent, identity, experiment assignments, templates) is evaluated here, at `now`, so that the
//! program (`engine::program`) keeps only what the page, the time and the page's own impressions decide, and the
//! table of answers it picks from. The device gets neither the profile nor the configuration.
//!
//! The program holds until the next instant at which time alone could change something evaluated here
//! (`audiences::next_change_of`, to the millisecond); the device fetches a new one after that. A device that
//! decides with it at any instant of its span answers what `decide` answers at the edge (`tests/cases.rs` checks
//! it at several instants of every case).

use crate::core::base::encoding::base64_encode;
use crate::core::base::time::Millis;
use crate::core::engine::audiences::next_change_of;
use crate::core::engine::decide::choose;
use crate::core::engine::evaluate::{scores_of, Facts};
use crate::core::engine::predict::for_conditions;
use crate::core::engine::program::*;
use crate::core::model::consent::Permitted;
use crate::core::model::context::Context;
use crate::core::model::profile::Profile;
use crate::core::rules::segment::{Cmp, Condition, ScoreSource};
use crate::core::rules::slots::CONTROL;
use crate::core::rules::Config;

/// One answer a device can pick: what `/v1/decide` says for a slot.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub block: Option<String>,
    pub variant: Option<String>,
    pub experiment: Option<String>,
    pub html: String,
    /// Serving it must be recorded at the edge (`POST /v1/impressions`): a cap, an experiment, a pressure slot.
    pub record: bool,
}

/// A visitor's rules for a device.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceRules {
    pub profile_id: Option<String>,
    pub program: Vec<u8>,
    /// What the program's picks index.
    pub answers: Vec<Answer>,
    /// Every segment's id, indexed like the program's results.
    pub segments: Vec<String>,
    /// The slots' names, in the program's order.
    pub slots: Vec<String>,
    /// Until when (exclusive) the program holds; `None`: until the profile or the configuration changes.
    pub valid_until: Option<Millis>,
}

/// Why a visitor's rules cannot be decided on a device: its shell then asks the edge (`POST /v1/decide`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeOnly {
    /// A marketing-pressure budget counts some slots: what one page serves spends it for every other slot and
    /// channel, which only the profile's writer knows.
    Pressure,
    /// A score earns points for a page condition: its value is not known until the page is.
    ScoreReadsPage,
}

impl EdgeOnly {
    pub fn code(self) -> &'static str {
        match self {
            EdgeOnly::Pressure => "pressure",
            EdgeOnly::ScoreReadsPage => "score_reads_page",
        }
    }
}

/// What a condition is once the profile is known: a constant, or what is left for the page to decide.
enum Left<'c> {
    Known(bool),
    Page(&'c Condition),
    Segment(usize),
    All(Vec<Left<'c>>),
    Any(Vec<Left<'c>>),
    Not(Box<Left<'c>>),
}

/// A condition with every profile fact evaluated (`known`: the segments evaluated to a constant so far).
fn left<'c>(c: &'c Condition, f: &Facts, known: &[Option<bool>]) -> Left<'c> {
    match c {
        Condition::Page(_)
        | Condition::Referrer(_)
        | Condition::Utm { .. }
        | Condition::Country(_)
        | Condition::Device(_)
        | Condition::LocalHour(_) => Left::Page(c),
        Condition::Segment(i) => match known.get(*i) {
            None => Left::Known(false),
            Some(Some(b)) => Left::Known(*b),
            Some(None) => Left::Segment(*i),
        },
        Condition::All(cs) | Condition::Any(cs) => {
            // `All` stops at the first false member, `Any` at the first true one.
            let stop = matches!(c, Condition::Any(_));
            let mut rest = Vec::new();
            for c in cs {
                match left(c, f, known) {
                    Left::Known(b) if b == stop => return Left::Known(stop),
                    Left::Known(_) => {}
                    l => rest.push(l),
                }
            }
            match (rest.len(), stop) {
                (0, _) => Left::Known(!stop),
                // One member left: it is the condition (`remove` cannot fail on a list of one).
                (1, _) => rest.remove(0),
                (_, false) => Left::All(rest),
                (_, true) => Left::Any(rest),
            }
        }
        Condition::Not(c) => match left(c, f, known) {
            Left::Known(b) => Left::Known(!b),
            l => Left::Not(Box::new(l)),
        },
        // The rest read the profile and the time only (segments are handled above).
        leaf => Left::Known(leaf.holds(f, &[])),
    }
}

fn reads_page(c: &Condition) -> bool {
    match c {
        Condition::All(cs) | Condition::Any(cs) => cs.iter().any(reads_page),
        Condition::Not(c) => reads_page(c),
        c => matches!(
            c,
            Condition::Page(_)
                | Condition::Referrer(_)
                | Condition::Utm { .. }
                | Condition::Country(_)
                | Condition::Device(_)
                | Condition::LocalHour(_)
        ),
    }
}

/// The rules `subject` (a permitted profile, or none: no profile, or no personalization consent) decides with on
/// a device from `now`.
pub fn for_visitor(
    config: &Config,
    subject: Option<&Permitted<&Profile>>,
    now: Millis,
) -> Result<DeviceRules, EdgeOnly> {
    let profile = subject.map(|p| *p.get());
    if profile.is_some() {
        if !config.pressure.slots.is_empty() {
            return Err(EdgeOnly::Pressure);
        }
        let when = |r: &ScoreSource| matches!(r, ScoreSource::When(c) if reads_page(c));
        if config.scores.iter().any(|s| s.rules.iter().any(|r| when(&r.source))) {
            return Err(EdgeOnly::ScoreReadsPage);
        }
    }
    let mut w = Writer::default();
    w.byte(VERSION);
    w.time(now);
    let valid_until = profile.and_then(|p| {
        let audiences = config.slots.values().flat_map(|s| &s.blocks).map(|b| &b.audience);
        let conditions: Vec<&Condition> = config.segments.iter().map(|s| &s.when).chain(audiences).collect();
        next_change_of(config, p, now, &conditions)
    });
    w.time(valid_until.unwrap_or(Millis::MAX));

    // No score reads the page, so the scores are the same on every page.
    let cx = Context::default();
    let scores = profile.map(|p| scores_of(config, p, &cx, now)).unwrap_or_default();
    let predictions = profile.map(|p| for_conditions(config, p, now)).unwrap_or_default();
    let facts = profile.map(|profile| Facts { profile, cx: &cx, now, scores: &scores, predictions: &predictions });

    // Segments: without a profile, none is evaluated (the answer lists none).
    let mut known: Vec<Option<bool>> = vec![None; config.segments.len()];
    match &facts {
        None => {
            w.len(0);
            w.len(0);
        }
        Some(f) => {
            w.len(config.segments.len());
            w.len(config.segment_order.len());
            for &i in &config.segment_order {
                let l = left(&config.segments[i].when, f, &known);
                if let Left::Known(b) = l {
                    known[i] = Some(b);
                }
                w.len(i);
                write(&mut w, &l);
            }
        }
    }

    let mut answers = Vec::new();
    w.len(config.slots.len());
    for slot in config.slots.values() {
        let fallback = slot.fallback.render(None);
        w.len(answers.len());
        answers.push(Answer { block: None, variant: None, experiment: None, html: fallback.clone(), record: false });
        let (Some(f), Some(p)) = (&facts, profile) else {
            w.len(0);
            continue;
        };
        let mut candidates = Writer::default();
        let mut count = 0;
        for block in &slot.blocks {
            // A block whose schedule ended, or whose audience this profile can never be in, is never chosen.
            if block.end.is_some_and(|e| now >= e) {
                continue;
            }
            let audience = left(&block.audience, f, &known);
            if matches!(audience, Left::Known(false)) {
                continue;
            }
            let (variant, _) = choose(block, p);
            candidates.len(answers.len());
            answers.push(Answer {
                block: Some(block.id.clone()),
                variant: Some(variant.map_or(CONTROL, |v| v.id.as_str()).to_string()),
                experiment: block.experiment.as_ref().map(|e| e.id.clone()),
                html: variant.map_or_else(|| fallback.clone(), |v| v.html.render(Some(p))),
                // As `decide` records (a slot the pressure budget counts would be too, but those rules are
                // `EdgeOnly::Pressure`).
                record: block.cap.is_some() || block.experiment.is_some(),
            });
            let start = block.start.filter(|s| now < *s);
            let flag = |on: bool, f: u8| if on { f } else { 0 };
            let flags = flag(start.is_some(), HAS_START)
                | flag(block.end.is_some(), HAS_END)
                | flag(block.cap.is_some(), HAS_CAP);
            candidates.byte(flags);
            start.into_iter().chain(block.end).for_each(|t| candidates.time(t));
            if let Some(cap) = &block.cap {
                // Caps count by block: one number per capped block, the same wherever it appears.
                let id = config.slots.values().flat_map(|s| &s.blocks).position(|b| b.id == block.id).unwrap_or(0);
                candidates.len(id);
                candidates.varint(u64::from(cap.max));
                candidates.time(cap.per);
                // Only the impressions that can still count from now on.
                let times: Vec<Millis> = p
                    .shown
                    .impressions
                    .get(&block.id)
                    .map(|t| t.iter().copied().filter(|at| *at > now.saturating_sub(cap.per)).collect())
                    .unwrap_or_default();
                candidates.len(times.len());
                times.into_iter().for_each(|t| candidates.time(t));
            }
            let always = matches!(audience, Left::Known(true)) && flags == 0;
            write(&mut candidates, &audience);
            count += 1;
            if always {
                // Nothing after a block that is always shown can be chosen.
                break;
            }
        }
        w.len(count);
        w.bytes.extend_from_slice(&candidates.bytes);
    }
    Ok(DeviceRules {
        profile_id: profile.map(|p| p.id.clone()),
        program: w.bytes,
        answers,
        segments: match profile {
            Some(_) => config.segments.iter().map(|s| s.id.clone()).collect(),
            None => Vec::new(),
        },
        slots: config.slots.keys().cloned().collect(),
        valid_until,
    })
}

impl DeviceRules {
    /// The summary's members for the device (`GET /v1/decide/summary`): `profileId`, `program` (base64),
    /// `answers` (`block`, `variant`, `html`, and `experiment` and `record` when they apply), `segments`, `slots`
    /// and `validUntil` (null: until the profile or the configuration changes).
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let answers: Vec<serde_json::Value> = self
            .answers
            .iter()
            .map(|a| {
                let mut o = serde_json::json!({"block": a.block, "variant": a.variant, "html": a.html});
                if let Some(e) = &a.experiment {
                    o["experiment"] = e.as_str().into();
                }
                if a.record {
                    o["record"] = true.into();
                }
                o
            })
            .collect();
        let mut m = serde_json::Map::new();
        m.insert("profileId".into(), self.profile_id.clone().into());
        m.insert("program".into(), base64_encode(&self.program).into());
        m.insert("answers".into(), answers.into());
        m.insert("segments".into(), self.segments.clone().into());
        m.insert("slots".into(), self.slots.clone().into());
        m.insert("validUntil".into(), self.valid_until.into());
        m
    }
}

fn write(w: &mut Writer, l: &Left) {
    match l {
        Left::Known(true) => w.byte(TRUE),
        Left::Known(false) => w.byte(FALSE),
        Left::Segment(i) => {
            w.byte(SEGMENT);
            w.len(*i);
        }
        Left::All(ls) | Left::Any(ls) => {
            w.byte(if matches!(l, Left::All(_)) { ALL } else { ANY });
            w.len(ls.len());
            ls.iter().for_each(|l| write(w, l));
        }
        Left::Not(l) => {
            w.byte(NOT);
            write(w, l);
        }
        Left::Page(c) => match c {
            Condition::Page(globs) => {
                w.byte(PAGE);
                w.strs(globs.iter().map(String::as_str));
            }
            Condition::Referrer(globs) => {
                w.byte(REFERRER);
                w.strs(globs.iter().map(String::as_str));
            }
            Condition::Utm { param, any_of } => {
                w.byte(UTM);
                w.str(param);
                w.strs(any_of.iter().map(String::as_str));
            }
            Condition::Country(list) => {
                w.byte(COUNTRY);
                w.strs(list.iter().map(String::as_str));
            }
            Condition::Device(list) => {
                w.byte(DEVICE);
                w.len(list.len());
                for d in list {
                    w.byte(DEVICES.iter().position(|x| x == d).unwrap_or(0) as u8);
                }
            }
            Condition::LocalHour(cmps) => {
                w.byte(LOCAL_HOUR);
                w.len(cmps.len());
                for c in cmps {
                    let (op, n) = match *c {
                        Cmp::Eq(n) => (0, n),
                        Cmp::Ne(n) => (1, n),
                        Cmp::Lt(n) => (2, n),
                        Cmp::Lte(n) => (3, n),
                        Cmp::Gt(n) => (4, n),
                        Cmp::Gte(n) => (5, n),
                    };
                    w.byte(op);
                    w.float(n);
                }
            }
            // `left` makes `Page` of the page conditions only.
            _ => w.byte(FALSE),
        },
    }
}
