//! Journeys: the configuration's `journeys` section, compiled beside its types with every problem at its path.
//! Where sends go is `rules::destinations`, the budget they spend `rules::pressure`; how an instance moves
//! through its steps is `engine::journeys`.
//!
//! A journey is a list of steps run in order; a step may name where to go next (`goto`, a branch's arms, a
//! split's arms, a hold's timeout), and `"end"` ends the instance. Every loop in a journey passes a wait or a
//! hold (the compiler refuses one that does not), so an instance never runs without end inside one write.

use crate::core::base::time::{Millis, DAY, SECOND};
use crate::core::base::value::Value;
use crate::core::rules::compiler::{at, idx, present, Compiler};
use crate::core::rules::destinations::Destination;
use crate::core::rules::segment::{Condition, PropertyFilter};
use serde_json::{Map, Value as J};
use std::collections::{BTreeMap, BTreeSet};

/// Journeys a configuration may define.
pub const MAX_JOURNEYS: usize = 50;
/// Steps a journey may have.
pub const MAX_STEPS: usize = 32;
/// Instances running at once on one profile, across journeys (as Segment's Journeys allow 25 per profile).
pub const MAX_RUNNING: usize = 25;
/// The longest wait, hold or delay (Segment's Journeys allow 182 days).
pub const MAX_WAIT: Millis = 182 * DAY;
#[derive(Clone, Debug, PartialEq)]
pub struct Journey {
    pub id: String,
    pub trigger: Trigger,
    /// An audience the profile must be in to enter (index into `Config::segments`).
    pub audience: Option<usize>,
    pub reentry: Reentry,
    pub exits: Vec<Exit>,
    pub steps: Vec<Step>,
}

impl Journey {
    pub fn step(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Trigger {
    /// An event of this name with these properties; with `nth`, only the event that makes this the nth such event
    /// with the same entry key (the fourth view of one product).
    Event { event: String, filters: Vec<PropertyFilter>, nth: Option<u32> },
    /// Entering (or leaving) an audience, by its segment id.
    Audience { audience: String, entered: bool },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reentry {
    /// Once per profile, ever.
    Once,
    /// Every time the trigger fires, one instance at a time per value of this event property (`cart_id`); `None`:
    /// one instance at a time.
    EveryTime { key: Option<String> },
}

impl Reentry {
    pub fn key_property(&self) -> Option<&str> {
        match self {
            Reentry::EveryTime { key: Some(k) } => Some(k),
            _ => None,
        }
    }
}

/// An exit rule: this event (matching the instance's entry key when `match_key`) ends the instance at any step.
#[derive(Clone, Debug, PartialEq)]
pub enum Exit {
    Event {
        event: String,
        filters: Vec<PropertyFilter>,
        match_key: bool,
    },
    /// Leaving an audience (by segment id).
    AudienceExited(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    /// The step that follows (by index); `None`: the instance ends.
    pub next: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    Wait(Millis),
    /// Until the date held in a trait, moved by `offset` (`-1d`: the day before). A date already passed ends the
    /// instance (`date_passed`); a missing one too (`no_date`).
    WaitUntilDate {
        name: String,
        offset: Millis,
    },
    /// Until the person's local time is inside `[from, to)` hours on one of `days` (bit 0 Monday ... bit 6 Sunday).
    WaitWindow {
        from: u8,
        to: u8,
        days: u8,
    },
    /// Until this event (matching the entry key when `match_key`), then `next`; after `max`, `timeout`.
    Hold {
        event: String,
        filters: Vec<PropertyFilter>,
        match_key: bool,
        max: Millis,
        timeout: Option<usize>,
    },
    /// The first arm whose condition holds, else `default`.
    Branch {
        arms: Vec<(Condition, Option<usize>)>,
        default: Option<usize>,
    },
    /// A weighted random arm, the same for a person every time (sticky).
    Split {
        arms: Vec<(u32, Option<usize>)>,
    },
    SetTrait {
        name: String,
        value: Value,
    },
    Send {
        destination: usize,
        event: String,
    },
}

impl StepKind {
    /// Whether the step lets time pass (a loop must pass one).
    fn waits(&self) -> bool {
        matches!(
            self,
            StepKind::Wait(_) | StepKind::WaitUntilDate { .. } | StepKind::WaitWindow { .. } | StepKind::Hold { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Wait(_) | StepKind::WaitUntilDate { .. } => "wait",
            StepKind::WaitWindow { .. } => "waitUntil",
            StepKind::Hold { .. } => "holdUntil",
            StepKind::Branch { .. } => "branch",
            StepKind::Split { .. } => "split",
            StepKind::SetTrait { .. } => "setTrait",
            StepKind::Send { .. } => "send",
        }
    }
}

const STEP_KINDS: [&str; 7] = ["wait", "waitUntil", "holdUntil", "branch", "split", "setTrait", "send"];

/// Reads an audience's id at a path (a journey's filter, trigger or exit), reporting what is wrong with it.
type AudienceOf<'a> = &'a dyn Fn(&mut Compiler, Option<&J>, &str) -> Option<usize>;

impl Compiler {
    /// `journeys`: see the module's documentation and README.md.
    pub(crate) fn journeys(
        &mut self,
        v: &J,
        path: &str,
        ids: &BTreeMap<String, usize>,
        audiences: &BTreeSet<usize>,
        scores_ok: &[bool],
        destinations: &[Destination],
    ) -> Vec<Journey> {
        let mut out: Vec<Journey> = Vec::new();
        let Some(list) = self.array(v, path) else { return out };
        if list.len() > MAX_JOURNEYS {
            self.err(path, format!("at most {MAX_JOURNEYS} journeys"));
        }
        for (i, j) in list.iter().enumerate() {
            let p = idx(path, i);
            let keys = ["id", "name", "trigger", "audience", "reentry", "exit", "steps"];
            let Some(o) = self.object(j, &p, &keys) else { continue };
            let id = self.id(o.get("id"), &at(&p, "id"));
            if let Some(id) = &id {
                if out.iter().any(|j| j.id == *id) {
                    self.err(at(&p, "id"), format!("duplicate journey id {id:?}"));
                }
            }
            if let Some(n) = present(o, "name") {
                if !n.is_string() {
                    self.err(at(&p, "name"), "expected a string");
                }
            }
            let audience_of = |c: &mut Compiler, v: Option<&J>, path: &str| -> Option<usize> {
                let name = c.string(v, path)?;
                match ids.get(&name) {
                    Some(i) if audiences.contains(i) => Some(*i),
                    Some(_) => {
                        c.err(
                            path,
                            format!(
                                "segment {name:?} reads the request (page, country, ...), so it is not an audience"
                            ),
                        );
                        None
                    }
                    None => {
                        c.unknown_segment(path, &name);
                        None
                    }
                }
            };
            let trigger = match o.get("trigger") {
                Some(t) => self.trigger(t, &at(&p, "trigger"), &audience_of),
                None => {
                    self.err(
                        at(&p, "trigger"),
                        "is required: {\"event\": ...} or {\"audience\": ..., \"on\": \"entered\"}",
                    );
                    None
                }
            };
            let audience = present(o, "audience").and_then(|a| audience_of(self, Some(a), &at(&p, "audience")));
            let reentry = match present(o, "reentry") {
                None => Some(Reentry::Once),
                Some(J::String(s)) if s == "once" => Some(Reentry::Once),
                Some(J::String(s)) if s == "always" => Some(Reentry::EveryTime { key: None }),
                Some(J::Object(r))
                    if r.len() == 1 && r.get("key").is_some_and(|k| k.as_str().is_some_and(|k| !k.is_empty())) =>
                {
                    Some(Reentry::EveryTime { key: r.get("key").and_then(J::as_str).map(String::from) })
                }
                Some(_) => {
                    self.err(at(&p, "reentry"), "expected \"once\", \"always\" or {\"key\": \"<event property>\"}");
                    None
                }
            };
            if let (Some(Reentry::EveryTime { key: Some(_) }), Some(Trigger::Audience { .. })) = (&reentry, &trigger) {
                self.err(at(&p, "reentry"), "an audience trigger has no event properties to key instances by");
            }
            let keyed = reentry.as_ref().and_then(Reentry::key_property).is_some();
            if let Some(Trigger::Event { nth: Some(_), .. }) = &trigger {
                if !keyed {
                    self.err(at(&p, "trigger.nth"), "counts events with the same entry key: set reentry.key");
                }
            }
            let mut exits = Vec::new();
            if let Some(list) = present(o, "exit") {
                for (k, e) in self.array(list, &at(&p, "exit")).into_iter().flatten().enumerate() {
                    let ep = idx(&at(&p, "exit"), k);
                    if let Some(exit) = self.exit(e, &ep, keyed, &audience_of) {
                        exits.push(exit);
                    }
                }
            }
            let scope = Scope { keyed, names: &[], ids, audiences, scores_ok, destinations };
            let steps = match o.get("steps") {
                Some(s) => self.steps(s, &at(&p, "steps"), &scope),
                None => {
                    self.err(at(&p, "steps"), "is required");
                    None
                }
            };
            if let (Some(id), Some(trigger), Some(reentry), Some(steps)) = (id, trigger, reentry, steps) {
                out.push(Journey { id, trigger, audience, reentry, exits, steps });
            }
        }
        out
    }

    fn trigger(&mut self, v: &J, path: &str, audience_of: AudienceOf) -> Option<Trigger> {
        let o = v.as_object();
        if o.is_some_and(|o| o.contains_key("audience")) {
            let o = self.object(v, path, &["audience", "on"])?;
            let audience = audience_of(self, o.get("audience"), &at(path, "audience"));
            let entered = match o.get("on").and_then(J::as_str) {
                None | Some("entered") => Some(true),
                Some("exited") => Some(false),
                Some(_) => {
                    self.err(at(path, "on"), "expected \"entered\" or \"exited\"");
                    None
                }
            };
            let _ = audience?;
            let name = o.get("audience").and_then(J::as_str)?.to_string();
            return Some(Trigger::Audience { audience: name, entered: entered? });
        }
        let o = self.object(v, path, &["event", "where", "nth"])?;
        let event = self.string(o.get("event"), &at(path, "event"));
        let filters = self.filters(o, path);
        let nth = match present(o, "nth") {
            Some(n) => Some(self.integer(n, &at(path, "nth"), 2, 100)? as u32),
            None => None,
        };
        Some(Trigger::Event { event: event?, filters, nth })
    }

    fn exit(&mut self, v: &J, path: &str, keyed: bool, audience_of: AudienceOf) -> Option<Exit> {
        if v.as_object().is_some_and(|o| o.contains_key("audience")) {
            let o = self.object(v, path, &["audience", "on"])?;
            if o.get("on").and_then(J::as_str).is_some_and(|s| s != "exited") {
                self.err(at(path, "on"), "an exit rule leaves with an audience: \"exited\"");
            }
            audience_of(self, o.get("audience"), &at(path, "audience"))?;
            return Some(Exit::AudienceExited(o.get("audience").and_then(J::as_str)?.to_string()));
        }
        let o = self.object(v, path, &["event", "where", "matchKey"])?;
        let event = self.string(o.get("event"), &at(path, "event"));
        let filters = self.filters(o, path);
        let match_key = self.match_key(o, path, keyed);
        Some(Exit::Event { event: event?, filters, match_key })
    }

    fn match_key(&mut self, o: &Map<String, J>, path: &str, keyed: bool) -> bool {
        match present(o, "matchKey") {
            Some(v) => {
                let b = self.boolean(v, &at(path, "matchKey")).unwrap_or(false);
                if b && !keyed {
                    self.err(at(path, "matchKey"), "the journey has no entry key: set reentry.key");
                }
                b
            }
            // Keyed journeys match the key unless told otherwise: an order of another cart ends nothing.
            None => keyed,
        }
    }

    fn target(&mut self, v: Option<&J>, path: &str, names: &[Option<String>]) -> Result<Option<usize>, ()> {
        match v.and_then(J::as_str) {
            Some("end") => Ok(None),
            Some(s) => match names.iter().position(|n| n.as_deref() == Some(s)) {
                Some(i) => Ok(Some(i)),
                None => {
                    self.err(path, format!("unknown step {s:?} (or \"end\")"));
                    Err(())
                }
            },
            None => {
                self.err(path, "expected a step id, or \"end\"");
                Err(())
            }
        }
    }

    /// A journey's steps: their ids first (so that any step can name any other), then each step by its kind,
    /// then the check that every loop waits.
    fn steps(&mut self, v: &J, path: &str, scope: &Scope) -> Option<Vec<Step>> {
        let list = self.array(v, path)?;
        if list.is_empty() {
            self.err(path, "expected at least one step");
            return None;
        }
        if list.len() > MAX_STEPS {
            self.err(path, format!("at most {MAX_STEPS} steps"));
            return None;
        }
        let errors_before = self.errors.len();
        let mut names: Vec<Option<String>> = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let p = at(&idx(path, i), "id");
            let id = self.id(s.get("id"), &p);
            if let Some(id) = &id {
                if id == "end" {
                    self.err(&p, "\"end\" names the end of the journey");
                } else if names.iter().any(|n| n.as_ref() == Some(id)) {
                    self.err(&p, format!("duplicate step id {id:?}"));
                }
            }
            names.push(id);
        }
        let scope = Scope { names: &names, ..*scope };
        let mut steps = Vec::new();
        for (i, s) in list.iter().enumerate() {
            let p = idx(path, i);
            let Some(o) = s.as_object() else {
                self.err(&p, "expected an object");
                continue;
            };
            let kinds: Vec<&str> = STEP_KINDS.into_iter().filter(|k| o.contains_key(*k)).collect();
            let [kind] = kinds[..] else {
                self.err(&p, format!("a step does exactly one of: {}", STEP_KINDS.join(", ")));
                continue;
            };
            let allowed: &[&str] = match kind {
                "holdUntil" => &["id", "holdUntil", "max", "timeout", "goto"],
                "branch" => &["id", "branch", "default"],
                "split" => &["id", "split"],
                "send" => &["id", "send", "event", "goto"],
                "wait" => &["id", "wait", "offset", "goto"],
                _ => &["id", kind, "goto"],
            };
            let Some(o) = self.object(s, &p, allowed) else { continue };
            let step = StepJson {
                o,
                body: &o[kind],
                bp: at(&p, kind),
                p,
                follows: if i + 1 < list.len() { Some(i + 1) } else { None },
            };
            let next = match o.get("goto") {
                Some(g) => match self.target(Some(g), &at(&step.p, "goto"), &names) {
                    Ok(t) => t,
                    Err(()) => continue,
                },
                None => step.follows,
            };
            let compiled = match kind {
                "wait" => self.wait_step(&step),
                "waitUntil" => self.window_step(&step),
                "holdUntil" => self.hold_step(&step, &scope),
                "branch" => self.branch_step(&step, &scope),
                "split" => self.split_step(&step, &scope),
                "setTrait" => self.set_trait_step(&step),
                _ => self.send_step(&step, &scope),
            };
            if let (Some(id), Some(kind)) = (names[i].clone(), compiled) {
                steps.push(Step { id, kind, next });
            }
        }
        if self.errors.len() != errors_before || steps.len() != list.len() {
            return None;
        }
        if let Some(at_step) = loop_without_wait(&steps) {
            self.err(idx(path, at_step), "this step is on a loop that never waits: a loop must pass a wait or a hold");
            return None;
        }
        Some(steps)
    }

    /// `{"wait": "1d"}`, or `{"wait": {"untilTrait": "flight_date"}, "offset": "-1d"}`.
    fn wait_step(&mut self, s: &StepJson) -> Option<StepKind> {
        if s.body.is_string() {
            if s.o.contains_key("offset") {
                self.err(
                    at(&s.p, "offset"),
                    "an offset moves a date held in a trait: {\"wait\": {\"untilTrait\": ...}}",
                );
            }
            let d = self.duration(s.body, &s.bp)?;
            if !(0..=MAX_WAIT).contains(&d) {
                self.err(&s.bp, "at most 182d");
                return None;
            }
            return Some(StepKind::Wait(d));
        }
        let w = self.object(s.body, &s.bp, &["untilTrait"]);
        let name = w.and_then(|w| self.string(w.get("untilTrait"), &at(&s.bp, "untilTrait")));
        let offset = match s.o.get("offset") {
            None => Some(0),
            Some(v) => {
                let parsed = v.as_str().and_then(|text| {
                    let (sign, d) = match text.strip_prefix('-') {
                        Some(rest) => (-1, rest),
                        None => (1, text.strip_prefix('+').unwrap_or(text)),
                    };
                    crate::core::base::time::parse_duration(d).filter(|d| *d <= MAX_WAIT).map(|d| sign * d)
                });
                if parsed.is_none() {
                    self.err(at(&s.p, "offset"), "expected a duration such as \"-1d\" or \"2h\", at most 182d");
                }
                parsed
            }
        };
        Some(StepKind::WaitUntilDate { name: name?, offset: offset? })
    }

    /// `{"waitUntil": {"from": 9, "to": 18, "days": ["mon", ...]}}`: local hours.
    fn window_step(&mut self, s: &StepJson) -> Option<StepKind> {
        let w = self.object(s.body, &s.bp, &["from", "to", "days"])?;
        let from = w.get("from").and_then(|h| self.integer(h, &at(&s.bp, "from"), 0, 23));
        let to = w.get("to").and_then(|h| self.integer(h, &at(&s.bp, "to"), 1, 24));
        if !w.contains_key("from") || !w.contains_key("to") {
            self.err(&s.bp, "expected from and to, local hours (from 0 to 23, to 1 to 24)");
        }
        let mut days = 0x7f;
        if let Some(list) = present(w, "days") {
            const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
            days = 0;
            for (k, d) in self.array(list, &at(&s.bp, "days")).into_iter().flatten().enumerate() {
                match d.as_str().and_then(|d| NAMES.iter().position(|n| n.eq_ignore_ascii_case(d))) {
                    Some(n) => days |= 1 << n,
                    None => self.err(idx(&at(&s.bp, "days"), k), "expected mon, tue, wed, thu, fri, sat or sun"),
                }
            }
            if days == 0 {
                self.err(at(&s.bp, "days"), "expected at least one day");
            }
        }
        match (from?, to?) {
            (f, t) if f < t => Some(StepKind::WaitWindow { from: f as u8, to: t as u8, days }),
            _ => {
                self.err(&s.bp, "from must be before to (a window inside one local day)");
                None
            }
        }
    }

    /// `{"holdUntil": {"event", "where"?, "matchKey"?}, "max": "2d", "timeout"?: step}`.
    fn hold_step(&mut self, s: &StepJson, scope: &Scope) -> Option<StepKind> {
        let h = self.object(s.body, &s.bp, &["event", "where", "matchKey"]);
        let event = h.and_then(|h| self.string(h.get("event"), &at(&s.bp, "event")));
        let filters = h.map(|h| self.filters(h, &s.bp)).unwrap_or_default();
        let match_key = h.is_some_and(|h| self.match_key(h, &s.bp, scope.keyed));
        let max = match s.o.get("max") {
            Some(m) => self.duration(m, &at(&s.p, "max")).and_then(|d| {
                let ok = (SECOND..=MAX_WAIT).contains(&d);
                if !ok {
                    self.err(at(&s.p, "max"), "between 1s and 182d");
                }
                ok.then_some(d)
            }),
            None => {
                self.err(at(&s.p, "max"), "is required: how long to hold, at most 182d");
                None
            }
        };
        let timeout = match s.o.get("timeout") {
            Some(t) => self.target(Some(t), &at(&s.p, "timeout"), scope.names).ok(),
            None => Some(None),
        };
        Some(StepKind::Hold { event: event?, filters, match_key, max: max?, timeout: timeout? })
    }

    /// A list of arms, each `{<field>: ..., "goto": step}`; `None` when any arm is wrong.
    fn arms<T>(
        &mut self,
        s: &StepJson,
        field: &str,
        scope: &Scope,
        mut each: impl FnMut(&mut Compiler, &Map<String, J>, &str) -> Option<T>,
    ) -> Option<Vec<(T, Option<usize>)>> {
        let mut arms = Vec::new();
        let mut ok = true;
        for (k, arm) in self.array(s.body, &s.bp).into_iter().flatten().enumerate() {
            let ap = idx(&s.bp, k);
            let Some(a) = self.object(arm, &ap, &[field, "goto"]) else {
                ok = false;
                continue;
            };
            let value = match a.get(field) {
                Some(_) => each(self, a, &ap),
                None => {
                    self.err(at(&ap, field), "is required");
                    None
                }
            };
            match (value, self.target(a.get("goto"), &at(&ap, "goto"), scope.names)) {
                (Some(v), Ok(g)) => arms.push((v, g)),
                _ => ok = false,
            }
        }
        ok.then_some(arms)
    }

    /// `{"branch": [{"when": condition, "goto": step}], "default"?: step}`: conditions on the profile only.
    fn branch_step(&mut self, s: &StepJson, scope: &Scope) -> Option<StepKind> {
        let segments: Vec<bool> = (0..scope.ids.len()).map(|i| scope.audiences.contains(&i)).collect();
        let arms = self.arms(s, "when", scope, |c, a, ap| {
            let when = c.condition(&a["when"], &at(ap, "when"), scope.ids)?;
            if !when.reads_profile_only(&segments, scope.scores_ok) {
                c.err(at(ap, "when"), "a journey runs without a request: conditions read the profile only (no page, referrer, utm, country, device or local hour)");
            }
            Some(when)
        });
        let default = match s.o.get("default") {
            Some(d) => self.target(Some(d), &at(&s.p, "default"), scope.names).ok(),
            None => Some(s.follows),
        };
        let arms = arms?;
        if arms.is_empty() {
            self.err(&s.bp, "expected at least one arm");
            return None;
        }
        Some(StepKind::Branch { arms, default: default? })
    }

    /// `{"split": [{"weight": 50, "goto": step}, ...]}`: at least two arms.
    fn split_step(&mut self, s: &StepJson, scope: &Scope) -> Option<StepKind> {
        let arms = self.arms(s, "weight", scope, |c, a, ap| {
            c.integer(&a["weight"], &at(ap, "weight"), 1, 10_000).map(|w| w as u32)
        })?;
        if arms.len() < 2 {
            self.err(&s.bp, "expected at least two arms");
            return None;
        }
        Some(StepKind::Split { arms })
    }

    /// `{"setTrait": {"name", "value"}}`.
    fn set_trait_step(&mut self, s: &StepJson) -> Option<StepKind> {
        let t = self.object(s.body, &s.bp, &["name", "value"])?;
        let name = self.string(t.get("name"), &at(&s.bp, "name"));
        let value = match t.get("value") {
            Some(v) => self.scalar(v, &at(&s.bp, "value")),
            None => {
                self.err(at(&s.bp, "value"), "is required");
                None
            }
        };
        Some(StepKind::SetTrait { name: name?, value: value? })
    }

    /// `{"send": destination, "event": name}`.
    fn send_step(&mut self, s: &StepJson, scope: &Scope) -> Option<StepKind> {
        let destination = self.string(Some(s.body), &s.bp).and_then(|d| {
            let found = scope.destinations.iter().position(|x| x.id == d);
            if found.is_none() {
                self.err(&s.bp, format!("unknown destination {d:?}"));
            }
            found
        });
        let event = self.string(s.o.get("event"), &at(&s.p, "event"));
        Some(StepKind::Send { destination: destination?, event: event? })
    }
}

/// What compiling a journey's steps reads besides the steps: whether it has an entry key, its step ids, the
/// segments (which are audiences) and scores (which read the profile only), and the destinations.
#[derive(Clone, Copy)]
struct Scope<'a> {
    keyed: bool,
    names: &'a [Option<String>],
    ids: &'a BTreeMap<String, usize>,
    audiences: &'a BTreeSet<usize>,
    scores_ok: &'a [bool],
    destinations: &'a [Destination],
}

/// One step as written: its object and path, its kind's value and that value's path, and the step that follows
/// it in the list.
struct StepJson<'a> {
    o: &'a Map<String, J>,
    p: String,
    body: &'a J,
    bp: String,
    follows: Option<usize>,
}

/// The first step on a cycle of steps that do not wait, if there is one (a depth-first search over the edges
/// between steps that run at once).
fn loop_without_wait(steps: &[Step]) -> Option<usize> {
    fn edges(s: &Step) -> Vec<usize> {
        let mut out: Vec<Option<usize>> = vec![s.next];
        match &s.kind {
            StepKind::Branch { arms, default } => {
                out = arms.iter().map(|(_, g)| *g).collect();
                out.push(*default);
            }
            StepKind::Split { arms } => out = arms.iter().map(|(_, g)| *g).collect(),
            _ => {}
        }
        out.into_iter().flatten().collect()
    }
    // 0: unvisited, 1: on the current path, 2: done.
    fn visit(i: usize, steps: &[Step], state: &mut [u8]) -> Option<usize> {
        if steps[i].kind.waits() {
            return None;
        }
        match state[i] {
            1 => return Some(i),
            2 => return None,
            _ => {}
        }
        state[i] = 1;
        for j in edges(&steps[i]) {
            if let Some(found) = visit(j, steps, state) {
                return Some(found);
            }
        }
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; steps.len()];
    (0..steps.len()).find_map(|i| visit(i, steps, &mut state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::compile_str;

    fn errors(text: &str) -> Vec<String> {
        compile_str(text).expect_err("config is invalid").iter().map(|e| e.to_string()).collect()
    }

    const DEST: &str = r#""destinations": [{"id": "crm", "type": "webhook", "url": "http://127.0.0.1:9/hook",
        "secretEnv": "CRM_SECRET", "purpose": "marketing", "channel": "email"}]"#;

    #[test]
    fn a_journey_with_every_step_kind_compiles() {
        let c = compile_str(&format!(
            r#"{{{DEST}, "segments": [{{"id": "vip", "when": {{"trait": "plan", "eq": "gold"}}}}],
               "journeys": [{{"id": "cart", "trigger": {{"event": "Product Added"}}, "reentry": {{"key": "cart_id"}},
                 "audience": "vip", "exit": [{{"event": "Order Completed"}}, {{"audience": "vip", "on": "exited"}}],
                 "steps": [{{"id": "w", "wait": "1d"}}, {{"id": "s", "send": "crm", "event": "Cart Reminder"}},
                   {{"id": "h", "holdUntil": {{"event": "Email Clicked"}}, "max": "2d", "timeout": "again"}},
                   {{"id": "b", "branch": [{{"when": {{"segment": "vip"}}, "goto": "t"}}], "default": "end"}},
                   {{"id": "t", "setTrait": {{"name": "clicked", "value": true}}, "goto": "end"}},
                   {{"id": "again", "split": [{{"weight": 1, "goto": "win"}}, {{"weight": 1, "goto": "end"}}]}},
                   {{"id": "win", "waitUntil": {{"from": 9, "to": 18, "days": ["mon", "fri"]}}}},
                   {{"id": "d", "wait": {{"untilTrait": "flight"}}, "offset": "-1d"}},
                   {{"id": "s2", "send": "crm", "event": "Second"}}]}}]}}"#
        ))
        .unwrap();
        let j = &c.journeys[0];
        assert_eq!(j.reentry, Reentry::EveryTime { key: Some("cart_id".into()) });
        assert_eq!(j.exits[0], Exit::Event { event: "Order Completed".into(), filters: vec![], match_key: true });
        assert_eq!(j.steps[0].kind, StepKind::Wait(DAY));
        assert!(
            matches!(j.steps[2].kind, StepKind::Hold { max, timeout: Some(5), match_key: true, .. } if max == 2 * DAY)
        );
        assert_eq!(j.steps[3].next, Some(4));
        assert_eq!(j.steps[4].next, None);
        assert_eq!(j.steps[6].kind, StepKind::WaitWindow { from: 9, to: 18, days: 0b1_0001 });
        assert_eq!(j.steps[7].kind, StepKind::WaitUntilDate { name: "flight".into(), offset: -DAY });
        assert_eq!(j.steps[8].next, None);
        assert_eq!(c.destinations[0].attempts, 6);
    }

    #[test]
    fn journey_problems_are_reported_at_their_paths() {
        let got = errors(&format!(
            r#"{{{DEST}, "segments": [{{"id": "de", "when": {{"country": ["DE"]}}}}],
               "journeys": [{{"id": "j", "trigger": {{"event": "E", "nth": 4}}, "audience": "de",
                 "steps": [{{"id": "a", "wait": "400d"}}, {{"id": "b", "send": "nope", "event": "X"}},
                   {{"id": "c", "branch": [{{"when": {{"device": "mobile"}}, "goto": "zz"}}]}},
                   {{"id": "d", "wait": "1d", "send": "crm"}}]}},
                 {{"id": "loop", "trigger": {{"event": "E"}}, "steps": [{{"id": "x", "setTrait": {{"name": "a", "value": 1}}, "goto": "x"}}]}}]}}"#
        ));
        for want in [
            "journeys[0].trigger.nth: counts events with the same entry key",
            "journeys[0].audience: segment \"de\" reads the request",
            "journeys[0].steps[0].wait: at most 182d",
            "journeys[0].steps[1].send: unknown destination \"nope\"",
            "journeys[0].steps[2].branch[0].when: a journey runs without a request",
            "journeys[0].steps[2].branch[0].goto: unknown step \"zz\"",
            "journeys[0].steps[3]: a step does exactly one of",
            "journeys[1].steps[0]: this step is on a loop that never waits",
        ] {
            assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:#?}");
        }
    }
}
