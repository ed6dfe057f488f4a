//! Slots and what fills them: blocks with audiences, priorities, schedules, caps, variants and experiments.

use crate::core::base::sort;
use crate::core::base::time::Millis;
use crate::core::rules::compiler::{at, idx, is_id, present, Compiler};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};

use crate::core::rules::segment::{Condition, PropertyFilter};
use crate::core::rules::template::Template;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub id: String,
    pub weight: u32,
    pub html: Template,
}

/// A frequency cap ("at most `max` impressions per `per`"), counted from the impressions recorded on the
/// profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cap {
    pub max: u32,
    pub per: Millis,
}

/// The variant id of an experiment's holdout, which is shown the slot's fallback.
pub const CONTROL: &str = "control";

/// What counts as a conversion: a `event` matching `filters` within `within` after first exposure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub event: String,
    pub filters: Vec<PropertyFilter>,
    pub within: Millis,
}

/// An experiment over a block's variants.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    pub id: String,
    /// The percentage of visitors (0 to 99) held out: they see the fallback, as variant `control`.
    pub holdout: u32,
    pub goal: Goal,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub id: String,
    pub audience: Condition,
    pub priority: i64,
    pub start: Option<Millis>,
    pub end: Option<Millis>,
    pub cap: Option<Cap>,
    /// Never empty; weights sum to more than zero.
    pub variants: Vec<Variant>,
    pub experiment: Option<Experiment>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub fallback: Template,
    /// Highest priority first; equal priorities keep configuration order.
    pub blocks: Vec<Block>,
}

impl Compiler {
    pub(crate) fn slots(&mut self, v: &J, path: &str, segments: &BTreeMap<String, usize>) -> BTreeMap<String, Slot> {
        let mut out = BTreeMap::new();
        let Some(map) = v.as_object() else {
            self.err(path, "expected an object of slot name to slot");
            return out;
        };
        let mut block_ids = BTreeSet::new();
        for (name, slot) in map {
            let sp = at(path, name);
            if !is_id(name) {
                self.err(&sp, "a slot name is 1 to 128 letters, digits, '-', '_' or '.'");
                continue;
            }
            let Some(o) = self.object(slot, &sp, &["fallback", "blocks"]) else {
                continue;
            };
            let fallback = match present(o, "fallback") {
                Some(f) => {
                    let fp = at(&sp, "fallback");
                    self.object(f, &fp, &["html"]).and_then(|fo| self.template(fo.get("html"), &at(&fp, "html")))
                }
                None => Some(Template(Vec::new())),
            };
            let mut blocks = Vec::new();
            if let Some(b) = present(o, "blocks") {
                let bp = at(&sp, "blocks");
                for (i, block) in self.array(b, &bp).into_iter().flatten().enumerate() {
                    if let Some(block) = self.block(block, &idx(&bp, i), segments) {
                        if !block_ids.insert(block.id.clone()) {
                            self.err(at(&idx(&bp, i), "id"), format!("duplicate block id {:?}", block.id));
                        }
                        blocks.push(block);
                    }
                }
            }
            // A stable sort keeps configuration order among equal priorities.
            sort::sort_by_key(&mut blocks, |b| std::cmp::Reverse(b.priority));
            if let Some(fallback) = fallback {
                out.insert(name.clone(), Slot { fallback, blocks });
            }
        }
        out
    }

    pub(crate) fn block(&mut self, v: &J, path: &str, segments: &BTreeMap<String, usize>) -> Option<Block> {
        let o = self.object(
            v,
            path,
            &["id", "audience", "priority", "start", "end", "cap", "variants", "html", "experiment"],
        )?;
        let before = self.errors.len();
        let id = self.id(o.get("id"), &at(path, "id"));
        let audience = match present(o, "audience") {
            None => Some(Condition::Everyone),
            Some(a) => self.audience(a, &at(path, "audience"), segments),
        };
        let priority = match present(o, "priority") {
            Some(p) => self.integer(p, &at(path, "priority"), -1_000_000, 1_000_000),
            None => Some(0),
        };
        let start = present(o, "start").and_then(|s| self.time(s, &at(path, "start")));
        let end = present(o, "end").and_then(|e| self.time(e, &at(path, "end")));
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                self.err(at(path, "end"), "end must be after start");
            }
        }
        let cap = match present(o, "cap") {
            None => None,
            Some(c) => {
                let cp = at(path, "cap");
                let co = self.object(c, &cp, &["max", "per"]);
                let max = match co.and_then(|co| co.get("max")) {
                    Some(m) => self.integer(m, &at(&cp, "max"), 1, 1_000_000),
                    None => {
                        self.err(at(&cp, "max"), "is required");
                        None
                    }
                };
                let per = match co.and_then(|co| co.get("per")) {
                    Some(p) => self.duration(p, &at(&cp, "per")),
                    None => {
                        self.err(at(&cp, "per"), "is required");
                        None
                    }
                };
                match (max, per) {
                    (Some(max), Some(per)) => Some(Cap { max: max as u32, per }),
                    _ => None,
                }
            }
        };
        let variants = match (present(o, "variants"), present(o, "html")) {
            (Some(_), Some(_)) => {
                self.err(path, "a block has either html or variants, not both");
                None
            }
            (None, None) => {
                self.err(at(path, "variants"), "a block needs html or variants");
                None
            }
            (None, Some(h)) => self
                .template(Some(h), &at(path, "html"))
                .map(|html| vec![Variant { id: "default".into(), weight: 1, html }]),
            (Some(vs), None) => self.variants(vs, &at(path, "variants")),
        };
        let experiment = present(o, "experiment").and_then(|e| self.experiment(e, &at(path, "experiment")));
        // An experiment's holdout is reported, counted and remembered as variant `control`: a variant of that name
        // would be taken for the holdout (shown the fallback, counted twice in the results).
        if let (Some(_), Some(vs)) = (&experiment, &variants) {
            if let Some(i) = vs.iter().position(|v| v.id == CONTROL) {
                let message = "\"control\" names the experiment's holdout; give this variant another id";
                self.err(at(&idx(&at(path, "variants"), i), "id"), message);
            }
        }
        if self.errors.len() != before {
            return None;
        }
        Some(Block {
            id: id?,
            audience: audience?,
            priority: priority?,
            start,
            end,
            cap,
            variants: variants?,
            experiment,
        })
    }

    /// `{"id", "holdout"?: percent, "goal": {"event", "where"?, "within"}}`.
    pub(crate) fn experiment(&mut self, v: &J, path: &str) -> Option<Experiment> {
        let o = self.object(v, path, &["id", "holdout", "goal"])?;
        let id = self.id(o.get("id"), &at(path, "id"));
        if let Some(id) = &id {
            if !self.experiment_ids.insert(id.clone()) {
                self.err(at(path, "id"), format!("duplicate experiment id {id:?}"));
            }
        }
        let holdout = match present(o, "holdout") {
            Some(h) => self.integer(h, &at(path, "holdout"), 0, 99).map(|h| h as u32),
            None => Some(0),
        };
        let gp = at(path, "goal");
        let goal = match o.get("goal") {
            None => {
                self.err(&gp, "is required: the event that counts as a conversion");
                None
            }
            Some(g) => {
                let go = self.object(g, &gp, &["event", "where", "within"])?;
                let event = self.string(go.get("event"), &at(&gp, "event"));
                let filters = self.filters(go, &gp);
                let within = match go.get("within") {
                    Some(w) => self.duration(w, &at(&gp, "within")),
                    None => {
                        self.err(at(&gp, "within"), "is required, for example \"7d\"");
                        None
                    }
                };
                Some(Goal { event: event?, filters, within: within? })
            }
        };
        Some(Experiment { id: id?, holdout: holdout?, goal: goal? })
    }

    pub(crate) fn audience(&mut self, v: &J, path: &str, segments: &BTreeMap<String, usize>) -> Option<Condition> {
        let Some(o) = v.as_object() else {
            self.err(path, "expected a condition or {\"include\": [...], \"exclude\": [...]}");
            return None;
        };
        if !(o.contains_key("include") || o.contains_key("exclude")) {
            return self.condition(v, path, segments);
        }
        self.object(v, path, &["include", "exclude"])?;
        let mut list = |key: &str| -> Option<Vec<Condition>> {
            let lp = at(path, key);
            let Some(items) = present(o, key) else {
                return Some(Vec::new());
            };
            let items = self.array(items, &lp)?;
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let ip = idx(&lp, i);
                match item.as_str().map(|id| segments.get(id)) {
                    Some(Some(&s)) => out.push(Condition::Segment(s)),
                    Some(None) => self.unknown_segment(ip, item.as_str().unwrap_or_default()),
                    None => self.err(ip, "expected a segment id"),
                }
            }
            Some(out)
        };
        let include = list("include")?;
        let exclude = list("exclude")?;
        let mut all = include;
        if !exclude.is_empty() {
            all.push(Condition::Not(Box::new(Condition::Any(exclude))));
        }
        Some(if all.is_empty() { Condition::Everyone } else { Condition::All(all) })
    }

    pub(crate) fn variants(&mut self, v: &J, path: &str) -> Option<Vec<Variant>> {
        let items = self.array(v, path)?;
        if items.is_empty() {
            self.err(path, "expected at least one variant");
            return None;
        }
        let mut out: Vec<Variant> = Vec::new();
        let before = self.errors.len();
        for (i, item) in items.iter().enumerate() {
            let p = idx(path, i);
            let Some(o) = self.object(item, &p, &["id", "weight", "html"]) else {
                continue;
            };
            let id = self.id(o.get("id"), &at(&p, "id"));
            let weight = match present(o, "weight") {
                Some(w) => self.integer(w, &at(&p, "weight"), 0, 1_000_000).map(|n| n as u32),
                None => Some(1),
            };
            let html = self.template(o.get("html"), &at(&p, "html"));
            if let (Some(id), Some(weight), Some(html)) = (id, weight, html) {
                if out.iter().any(|v| v.id == id) {
                    self.err(at(&p, "id"), format!("duplicate variant id {id:?}"));
                }
                out.push(Variant { id, weight, html });
            }
        }
        if self.errors.len() == before && out.iter().all(|v| v.weight == 0) {
            self.err(path, "at least one variant needs a weight above 0");
        }
        (self.errors.len() == before).then_some(out)
    }
}
