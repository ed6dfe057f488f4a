//! Compiling segments, conditions, scores and computed traits (`rules::segment` holds what they compile to): one
//! small reader per condition kind, every operator word mapped exhaustively, an unknown word an error at its
//! path. Every check that can fail is here, so that evaluation (`engine::evaluate`) cannot.

use crate::core::base::sort::CollectInto;
use crate::core::base::value::Value;
use crate::core::model::context::is_country_code;
use crate::core::model::context::Device;
use crate::core::rules::compiler::{at, idx, present, Compiler};
use crate::core::rules::segment::*;
use serde_json::{Map, Value as J};
use std::collections::BTreeMap;

const CONDITION_KINDS: [&str; 18] = [
    "event",
    "computed",
    "score",
    "prediction",
    "inactiveFor",
    "identified",
    "trait",
    "consent",
    "page",
    "referrer",
    "utm",
    "country",
    "device",
    "localHour",
    "segment",
    "all",
    "any",
    "not",
];
/// The campaign parameters `{"utm": {...}}` reads from the page URL, without their `utm_` prefix.
const UTM_PARAMS: [&str; 5] = ["source", "medium", "campaign", "term", "content"];
const TRAIT_TESTS: [&str; 9] = ["eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "exists"];
const CMP_OPS: [&str; 6] = ["eq", "ne", "lt", "lte", "gt", "gte"];

impl Compiler {
    pub(crate) fn segments(&mut self, v: &J, path: &str) -> (Vec<Segment>, Vec<usize>) {
        let Some(items) = self.array(v, path) else {
            return (Vec::new(), Vec::new());
        };
        // First pass: ids, so that a segment may reference one defined after it.
        let mut ids: BTreeMap<String, usize> = BTreeMap::new();
        for (i, s) in items.iter().enumerate() {
            if let Some(J::String(id)) = s.get("id") {
                if ids.contains_key(id) {
                    self.err(at(&idx(path, i), "id"), format!("duplicate segment id {id:?}"));
                } else {
                    ids.insert(id.clone(), i);
                }
            }
        }
        let mut segments = Vec::new();
        let mut ok = true;
        for (i, s) in items.iter().enumerate() {
            let p = idx(path, i);
            let before = self.errors.len();
            let Some(o) = self.object(s, &p, &["id", "when"]) else {
                ok = false;
                continue;
            };
            let id = self.id(o.get("id"), &at(&p, "id"));
            let when = match o.get("when") {
                Some(w) => self.condition(w, &at(&p, "when"), &ids),
                None => {
                    self.err(at(&p, "when"), "is required");
                    None
                }
            };
            match (id, when) {
                (Some(id), Some(when)) if self.errors.len() == before => segments.push(Segment { id, when }),
                _ => ok = false,
            }
        }
        if !ok {
            self.broken_segments = ids.into_keys().collect();
            return (Vec::new(), Vec::new());
        }
        let order = self.segment_order(&segments, path);
        (segments, order)
    }

    /// Orders segments so that references come first, reporting cycles.
    pub(crate) fn segment_order(&mut self, segments: &[Segment], path: &str) -> Vec<usize> {
        fn refs(c: &Condition, out: &mut Vec<usize>) {
            match c {
                Condition::Segment(i) => out.push(*i),
                Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| refs(c, out)),
                Condition::Not(c) => refs(c, out),
                _ => {}
            }
        }
        let deps: Vec<Vec<usize>> = segments
            .iter()
            .map(|s| {
                let mut v = Vec::new();
                refs(&s.when, &mut v);
                v
            })
            .collect();
        let mut order = Vec::with_capacity(segments.len());
        let mut done = vec![false; segments.len()];
        // Repeatedly take every segment whose references are all done; what is left at the end is in a cycle.
        loop {
            let before = order.len();
            for i in 0..segments.len() {
                if !done[i] && deps[i].iter().all(|&d| done[d]) {
                    done[i] = true;
                    order.push(i);
                }
            }
            if order.len() == segments.len() {
                return order;
            }
            if order.len() == before {
                for (i, d) in done.iter().enumerate() {
                    if !d {
                        self.err(
                            at(&idx(path, i), "when"),
                            format!("segment {:?} references itself through a cycle of segments", segments[i].id),
                        );
                    }
                }
                return Vec::new();
            }
        }
    }

    /// A `where` object: property to value, or to a non-empty list of values (any of them).
    pub(crate) fn filters(&mut self, o: &Map<String, J>, path: &str) -> Vec<PropertyFilter> {
        let mut filters = Vec::new();
        if let Some(w) = present(o, "where") {
            let wp = at(path, "where");
            match w.as_object() {
                Some(map) => {
                    for (prop, val) in map {
                        let pp = at(&wp, prop);
                        let any_of = match val {
                            J::Array(list) if !list.is_empty() => {
                                list.iter().enumerate().filter_map(|(i, x)| self.scalar(x, &idx(&pp, i))).collect()
                            }
                            J::Array(_) => {
                                self.err(&pp, "a list of values must not be empty");
                                Vec::new()
                            }
                            x => self.scalar(x, &pp).into_iter().collect(),
                        };
                        filters.push(PropertyFilter { property: prop.clone(), any_of });
                    }
                }
                None => self.err(wp, "expected an object of property to value"),
            }
        }
        filters
    }

    /// `computedTraits`: named event counts (`{"id", "event", "where"?, "within"?}`) shown on profiles and usable
    /// in segments as `{"computed": "<id>", "gte": 2}`.
    pub(crate) fn computed_traits(&mut self, v: &J, path: &str) -> Vec<ComputedTrait> {
        let mut out: Vec<ComputedTrait> = Vec::new();
        for (i, item) in self.array(v, path).into_iter().flatten().enumerate() {
            let p = idx(path, i);
            let Some(o) = self.object(item, &p, &["id", "event", "where", "within"]) else { continue };
            let id = self.id(o.get("id"), &at(&p, "id"));
            let event = self.string(o.get("event"), &at(&p, "event"));
            let filters = self.filters(o, &p);
            let window = match present(o, "within") {
                Some(w) => self.duration(w, &at(&p, "within")).map(Some),
                None => Some(None),
            };
            if let (Some(id), Some(event), Some(window)) = (id, event, window) {
                if out.iter().any(|c| c.id == id) {
                    self.err(at(&p, "id"), format!("duplicate computed trait id {id:?}"));
                } else {
                    let series = series_for(&event, &filters);
                    out.push(ComputedTrait { id, event, filters, window, series });
                }
            }
        }
        out
    }

    /// `scores`: `{"id", "halfLife"?, "rules": [{"event", "where"?, "points"} | {"when", "points"}]}`.
    pub(crate) fn scores(&mut self, v: &J, path: &str) -> Vec<Score> {
        let mut out: Vec<Score> = Vec::new();
        for (i, item) in self.array(v, path).into_iter().flatten().enumerate() {
            let p = idx(path, i);
            let before = self.errors.len();
            let Some(o) = self.object(item, &p, &["id", "halfLife", "rules"]) else { continue };
            let id = self.id(o.get("id"), &at(&p, "id"));
            let half_life = present(o, "halfLife").and_then(|h| self.duration(h, &at(&p, "halfLife")));
            let rp = at(&p, "rules");
            let mut rules = Vec::new();
            match o.get("rules").map(|r| self.array(r, &rp)) {
                None => self.err(&rp, "is required"),
                Some(None) => {}
                Some(Some(list)) if list.is_empty() => self.err(&rp, "expected at least one rule"),
                Some(Some(list)) => {
                    for (j, r) in list.iter().enumerate() {
                        let rp = idx(&rp, j);
                        let Some(ro) = r.as_object() else {
                            self.err(&rp, "expected a rule object");
                            continue;
                        };
                        let source = if ro.contains_key("when") {
                            self.object(r, &rp, &["when", "points"]);
                            self.in_score = true;
                            let when = self.condition(&ro["when"], &at(&rp, "when"), &BTreeMap::new());
                            self.in_score = false;
                            when.map(ScoreSource::When)
                        } else {
                            self.object(r, &rp, &["event", "where", "points"]);
                            let event = self.string(ro.get("event"), &at(&rp, "event"));
                            let filters = self.filters(ro, &rp);
                            event.map(|event| {
                                let series = series_for(&event, &filters);
                                ScoreSource::Event { event, filters, series }
                            })
                        };
                        let points = match ro.get("points") {
                            Some(n) => self.number(n, &at(&rp, "points")),
                            None => {
                                self.err(at(&rp, "points"), "is required");
                                None
                            }
                        };
                        if let (Some(source), Some(points)) = (source, points) {
                            rules.push(ScoreRule { source, points });
                        }
                    }
                }
            }
            let Some(id) = id else { continue };
            if out.iter().any(|s| s.id == id) {
                self.err(at(&p, "id"), format!("duplicate score id {id:?}"));
            } else if self.errors.len() == before {
                out.push(Score { id, half_life, rules });
            }
        }
        out
    }

    pub(crate) fn condition(&mut self, v: &J, path: &str, ids: &BTreeMap<String, usize>) -> Option<Condition> {
        let Some(o) = v.as_object() else {
            self.err(path, "expected a condition object");
            return None;
        };
        let kinds: Vec<&str> = CONDITION_KINDS.iter().copied().filter(|k| o.contains_key(*k)).collect();
        let kind = match kinds.as_slice() {
            [k] => *k,
            [] => {
                self.err(path, format!("expected a condition with one of: {}", CONDITION_KINDS.join(", ")));
                return None;
            }
            _ => {
                self.err(path, format!("a condition has exactly one kind; found {}", kinds.join(" and ")));
                return None;
            }
        };
        match kind {
            "event" => self.when_event(o, v, path),
            "computed" => self.when_computed(o, v, path),
            "segment" | "score" if self.in_score => self.when_segment_in_score(kind, path),
            "score" => self.when_score(o, v, path),
            "prediction" if self.in_score => {
                self.err(at(path, kind), "a score rule cannot use predictions");
                None
            }
            "prediction" => self.when_prediction(o, v, path),
            "inactiveFor" => self.when_inactive_for(o, v, path),
            "identified" => self.when_identified(o, v, path),
            "consent" => self.when_consent(o, v, path),
            "page" => self.when_page(o, v, path),
            "referrer" => self.when_referrer(o, v, path),
            "utm" => self.when_utm(o, v, path),
            "country" => self.when_country(o, v, path),
            "device" => self.when_device(o, v, path),
            "localHour" => self.when_local_hour(o, v, path),
            "segment" => self.when_segment(o, v, path, ids),
            "all" | "any" => self.when_all_or_any(kind, o, v, path, ids),
            "not" => self.when_not(o, v, path, ids),
            "trait" => self.when_trait(o, v, path),
            other => {
                // Every word of CONDITION_KINDS has its arm above; a word added there without one is this error.
                self.err(path, format!("condition kind {other:?} is not implemented"));
                None
            }
        }
    }

    /// `{"event": ...}`.
    fn when_event(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["event", "where", "count", "within"])?;
        let event = self.string(o.get("event"), &at(path, "event"));
        let filters = self.filters(o, path);
        let count = match present(o, "count") {
            None => Some(vec![Cmp::Gte(1.0)]),
            Some(J::Number(n)) => Some(vec![Cmp::Gte(n.as_f64().unwrap_or(1.0))]),
            Some(c) => self.comparisons(c, &at(path, "count")),
        };
        // Each part is checked before any is given up on, so that every problem is reported.
        let window = match present(o, "within") {
            Some(w) => self.duration(w, &at(path, "within")).map(Some),
            None => Some(None),
        };
        let event = event?;
        let series = series_for(&event, &filters);
        Some(Condition::EventCount { event, filters, count: count?, window: window?, series })
    }

    /// `{"computed": ...}`.
    fn when_computed(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        let mut allowed = vec!["computed"];
        allowed.extend(CMP_OPS);
        self.object(v, path, &allowed)?;
        let cp = at(path, "computed");
        let id = self.string(o.get("computed"), &cp)?;
        let Some(def) = self.computed.iter().find(|c| c.id == id).cloned() else {
            self.err(cp, format!("unknown computed trait {id:?}"));
            return None;
        };
        let count = self.comparison_members(o, path)?;
        // A computed trait in a condition is exactly the event count it names.
        Some(Condition::EventCount {
            event: def.event,
            filters: def.filters,
            count,
            window: def.window,
            series: def.series,
        })
    }

    /// `{"segment": ...}` inside a score, where it cannot be used.
    fn when_segment_in_score(&mut self, kind: &str, path: &str) -> Option<Condition> {
        self.err(at(path, kind), "a score rule cannot use segments or scores");
        None
    }

    /// `{"score": ...}`.
    fn when_score(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        let mut allowed = vec!["score"];
        allowed.extend(CMP_OPS);
        self.object(v, path, &allowed)?;
        let sp = at(path, "score");
        let id = self.string(o.get("score"), &sp)?;
        let Some(index) = self.scores.iter().position(|s| *s == id) else {
            self.err(sp, format!("unknown score {id:?}"));
            return None;
        };
        let cmps = self.comparison_members(o, path)?;
        Some(Condition::Score { index, cmps })
    }

    /// `{"prediction": ...}`: a name of `rules::predictions` and comparisons.
    fn when_prediction(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        let mut allowed = vec!["prediction"];
        allowed.extend(CMP_OPS);
        self.object(v, path, &allowed)?;
        let pp = at(path, "prediction");
        let name = self.string(o.get("prediction"), &pp)?;
        let Some(index) = self.predictions.iter().position(|s| *s == name) else {
            self.err(pp, format!("unknown prediction {name:?} (known: {})", self.predictions.join(", ")));
            return None;
        };
        if !CMP_OPS.iter().any(|op| o.contains_key(*op)) {
            self.err(path, "expected a comparison, for example {\"prediction\": \"purchase30d\", \"gte\": 0.4}");
            return None;
        }
        let cmps = self.comparison_members(o, path)?;
        self.reads_predictions = true;
        Some(Condition::Prediction { index, cmps })
    }

    /// `{"inactiveFor": ...}`.
    fn when_inactive_for(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["inactiveFor"])?;
        Some(Condition::InactiveFor(self.duration(&o["inactiveFor"], &at(path, "inactiveFor"))?))
    }

    /// `{"identified": ...}`.
    fn when_identified(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["identified"])?;
        Some(Condition::Identified(self.boolean(&o["identified"], &at(path, "identified"))?))
    }

    /// `{"consent": ...}`.
    fn when_consent(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["consent"])?;
        Some(Condition::Consent(self.purpose(&o["consent"], &at(path, "consent"))?))
    }

    /// `{"page": ...}`.
    fn when_page(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["page"])?;
        Some(Condition::Page(self.one_or_many(&o["page"], &at(path, "page"))?))
    }

    /// `{"referrer": ...}`.
    fn when_referrer(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["referrer"])?;
        let hosts = self.one_or_many(&o["referrer"], &at(path, "referrer"))?;
        Some(Condition::Referrer(hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect()))
    }

    /// `{"utm": ...}`.
    fn when_utm(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["utm"])?;
        let up = at(path, "utm");
        let params = self.object(&o["utm"], &up, &UTM_PARAMS)?;
        let [(param, globs)] = params.iter().collect::<Vec<_>>()[..] else {
            self.err(&up, format!("expected exactly one of: {}", UTM_PARAMS.join(", ")));
            return None;
        };
        let any_of = self.one_or_many(globs, &at(&up, param))?;
        Some(Condition::Utm { param: format!("utm_{param}"), any_of })
    }

    /// `{"country": ...}`.
    fn when_country(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["country"])?;
        let cp = at(path, "country");
        let list = self.one_or_many(&o["country"], &cp)?;
        for (i, c) in list.iter().enumerate() {
            if !is_country_code(c) {
                let p = if matches!(o["country"], J::Array(_)) { idx(&cp, i) } else { cp.clone() };
                self.err(p, "a country is an ISO 3166-1 alpha-2 code in upper case, such as DE");
            }
        }
        Some(Condition::Country(list))
    }

    /// `{"device": ...}`.
    fn when_device(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["device"])?;
        let dp = at(path, "device");
        let list = self.one_or_many(&o["device"], &dp)?;
        let mut devices = Vec::new();
        for (i, d) in list.iter().enumerate() {
            match Device::parse(d) {
                Some(d) => devices.push(d),
                None => {
                    let p = if matches!(o["device"], J::Array(_)) { idx(&dp, i) } else { dp.clone() };
                    self.err(p, format!("unknown device class; expected one of: {}", Device::NAMES.join(", ")));
                }
            }
        }
        (devices.len() == list.len()).then_some(Condition::Device(devices))
    }

    /// `{"localHour": ...}`.
    fn when_local_hour(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        self.object(v, path, &["localHour"])?;
        let hp = at(path, "localHour");
        let cmps = self.comparisons(&o["localHour"], &hp)?;
        Some(Condition::LocalHour(cmps))
    }

    /// `{"segment": ...}`.
    fn when_segment(
        &mut self,
        o: &Map<String, J>,
        v: &J,
        path: &str,
        ids: &BTreeMap<String, usize>,
    ) -> Option<Condition> {
        self.object(v, path, &["segment"])?;
        let sp = at(path, "segment");
        let id = self.string(o.get("segment"), &sp)?;
        match ids.get(&id) {
            Some(&i) => Some(Condition::Segment(i)),
            None => {
                self.unknown_segment(sp, &id);
                None
            }
        }
    }

    /// `{"all": [...]}` or `{"any": [...]}`.
    fn when_all_or_any(
        &mut self,
        kind: &str,
        o: &Map<String, J>,
        v: &J,
        path: &str,
        ids: &BTreeMap<String, usize>,
    ) -> Option<Condition> {
        self.object(v, path, &[kind])?;
        let lp = at(path, kind);
        let list = self.array(&o[kind], &lp)?;
        if list.is_empty() {
            self.err(&lp, "expected at least one condition");
            return None;
        }
        let parts: Vec<Option<Condition>> =
            list.iter().enumerate().map(|(i, c)| self.condition(c, &idx(&lp, i), ids)).collect();
        let parts: Option<Vec<Condition>> = parts.into_iter().collect();
        Some(if kind == "all" { Condition::All(parts?) } else { Condition::Any(parts?) })
    }

    /// `{"not": ...}`.
    fn when_not(&mut self, o: &Map<String, J>, v: &J, path: &str, ids: &BTreeMap<String, usize>) -> Option<Condition> {
        self.object(v, path, &["not"])?;
        Some(Condition::Not(Box::new(self.condition(&o["not"], &at(path, "not"), ids)?)))
    }

    /// `{"trait": ...}`.
    fn when_trait(&mut self, o: &Map<String, J>, v: &J, path: &str) -> Option<Condition> {
        let mut allowed = vec!["trait"];
        allowed.extend(TRAIT_TESTS);
        self.object(v, path, &allowed)?;
        let name = self.string(o.get("trait"), &at(path, "trait"));
        let tests: Vec<&str> = TRAIT_TESTS.iter().copied().filter(|t| o.contains_key(*t)).collect();
        let [op] = tests.as_slice() else {
            self.err(path, format!("a trait condition has exactly one test of: {}", TRAIT_TESTS.join(", ")));
            return None;
        };
        let tp = at(path, op);
        let arg = &o[*op];
        let test = match *op {
            "eq" => TraitTest::Eq(self.scalar(arg, &tp)?),
            "ne" => TraitTest::Ne(self.scalar(arg, &tp)?),
            "contains" => TraitTest::Contains(self.scalar(arg, &tp)?),
            "exists" => TraitTest::Exists(self.boolean(arg, &tp)?),
            "in" => {
                let list = self.array(arg, &tp)?;
                let vals: Vec<Option<Value>> =
                    list.iter().enumerate().map(|(i, x)| self.scalar(x, &idx(&tp, i))).collect();
                TraitTest::In(vals.into_iter().collect::<Option<Vec<_>>>()?)
            }
            numeric => {
                let n = self.number(arg, &tp)?;
                let Some(c) = cmp(numeric, n) else {
                    self.err(&tp, format!("unknown test; expected one of: {}", TRAIT_TESTS.join(", ")));
                    return None;
                };
                TraitTest::Num(c)
            }
        };
        Some(Condition::Trait { name: name?, test })
    }

    /// The comparisons written beside a condition's kind (`{"computed": "x", "gte": 2}`); at least 1 when none.
    pub(crate) fn comparison_members(&mut self, o: &Map<String, J>, path: &str) -> Option<Vec<Cmp>> {
        let ops: Map<String, J> =
            CMP_OPS.iter().filter_map(|op| o.get(*op).map(|n| (op.to_string(), n.clone()))).collect_object();
        if ops.is_empty() {
            return Some(vec![Cmp::Gte(1.0)]);
        }
        self.comparisons(&J::Object(ops), path)
    }

    /// A non-empty string, or a non-empty list of them.
    pub(crate) fn one_or_many(&mut self, v: &J, path: &str) -> Option<Vec<String>> {
        match v {
            J::Array(items) if !items.is_empty() => {
                let out: Vec<Option<String>> =
                    items.iter().enumerate().map(|(i, x)| self.string(Some(x), &idx(path, i))).collect();
                out.into_iter().collect()
            }
            J::Array(_) => {
                self.err(path, "a list of values must not be empty");
                None
            }
            x => self.string(Some(x), path).map(|s| vec![s]),
        }
    }

    pub(crate) fn comparisons(&mut self, v: &J, path: &str) -> Option<Vec<Cmp>> {
        let o = self.object(v, path, &CMP_OPS)?;
        if o.is_empty() {
            self.err(path, format!("expected at least one of: {}", CMP_OPS.join(", ")));
            return None;
        }
        let mut out = Vec::new();
        // Unknown words were reported by `object` above as unknown fields; each known one has its meaning.
        for (op, n) in o.iter().filter(|(op, _)| CMP_OPS.contains(&op.as_str())) {
            let n = self.number(n, &at(path, op))?;
            out.extend(cmp(op, n));
        }
        Some(out)
    }
}

/// The comparison an operator word means, or `None` for a word that is not one: no word falls through to a
/// default meaning.
fn cmp(op: &str, n: f64) -> Option<Cmp> {
    match op {
        "eq" => Some(Cmp::Eq(n)),
        "ne" => Some(Cmp::Ne(n)),
        "lt" => Some(Cmp::Lt(n)),
        "lte" => Some(Cmp::Lte(n)),
        "gt" => Some(Cmp::Gt(n)),
        "gte" => Some(Cmp::Gte(n)),
        _ => None,
    }
}
