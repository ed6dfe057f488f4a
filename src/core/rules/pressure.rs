//! The marketing-pressure budget (the configuration's `pressure` section, compiled beside its type with every
//! problem at its path): caps over every send and per channel, the slots whose impressions count as `onsite`
//! sends, quiet hours and the default offset from UTC. How sends spend it is `engine::pressure`.

use crate::core::base::time::{Millis, DAY};
use crate::core::rules::compiler::{at, idx, is_id, present, Compiler};
use crate::core::rules::slots::Cap;
use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};

/// The marketing-pressure budget: one set of caps over every send of every journey to every destination, caps per
/// channel, and impressions of the slots it names counted as sends of channel `onsite`; quiet hours in the
/// person's local time defer a send to their end.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pressure {
    pub caps: Vec<Cap>,
    pub channels: BTreeMap<String, Vec<Cap>>,
    pub slots: Vec<String>,
    /// Local hours `[from, to)`: a send due inside waits until `to` (`from > to` spans midnight).
    pub quiet: Option<(u8, u8)>,
    /// The offset from UTC (minutes) of a person whose time zone is not known.
    pub default_offset: i32,
    /// `adaptive`: each person's caps shrink with how much their response falls under pressure
    /// (`sensitivity.<channel>`), and a channel pauses after unanswered sends.
    pub adaptive: Option<Adaptive>,
}

/// The adaptive budget: after `pause_after` unanswered sends in a row, the channel waits `pause` from the last.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adaptive {
    pub pause_after: u32,
    pub pause: Millis,
}

impl Default for Adaptive {
    fn default() -> Self {
        Adaptive { pause_after: 3, pause: 14 * DAY }
    }
}

impl Adaptive {
    /// A cap of `max` for a person whose response falls by `sensitivity` (0 to 1) under pressure: the share of
    /// it they still answer to, never below one send.
    pub fn cap(max: u32, sensitivity: f64) -> u32 {
        if sensitivity.is_nan() || sensitivity <= 0.0 || max == 0 {
            return max;
        }
        ((f64::from(max) * (1.0 - sensitivity.min(1.0))).floor() as u32).max(1)
    }
}

impl Pressure {
    /// The longest period any cap counts over (how long the ledger of sends must remember).
    pub fn longest_period(&self) -> Millis {
        self.caps.iter().chain(self.channels.values().flatten()).map(|c| c.per).max().unwrap_or(0)
    }
}

/// The channel a slot impression counts in.
pub const ONSITE: &str = "onsite";

impl Compiler {
    /// `pressure`: `{"caps": [{"max", "per"}], "channels": {"email": [{"max", "per"}]}, "slots": [...],
    /// "quietHours": {"from": 21, "to": 8}, "defaultUtcOffset": "+01:00"}`.
    pub(crate) fn pressure(&mut self, v: &J, path: &str, slots: &BTreeSet<String>) -> Pressure {
        let mut out = Pressure::default();
        let keys = ["caps", "channels", "slots", "quietHours", "defaultUtcOffset", "adaptive"];
        let Some(o) = self.object(v, path, &keys) else { return out };
        if let Some(v) = present(o, "caps") {
            out.caps = self.caps(v, &at(path, "caps"));
        }
        if let Some(v) = present(o, "channels") {
            match v.as_object() {
                Some(map) => {
                    for (name, caps) in map {
                        let p = at(&at(path, "channels"), name);
                        if !is_id(name) {
                            self.err(&p, "a channel is 1 to 128 letters, digits, '-', '_' or '.'");
                        }
                        let caps = self.caps(caps, &p);
                        out.channels.insert(name.clone(), caps);
                    }
                }
                None => self.err(at(path, "channels"), "expected an object of channel to caps"),
            }
        }
        if let Some(v) = present(o, "slots") {
            for (i, s) in self.array(v, &at(path, "slots")).into_iter().flatten().enumerate() {
                match s.as_str() {
                    Some(id) if slots.contains(id) => out.slots.push(id.to_string()),
                    Some(id) => self.err(idx(&at(path, "slots"), i), format!("unknown slot {id:?}")),
                    None => self.err(idx(&at(path, "slots"), i), "expected a slot id"),
                }
            }
        }
        if let Some(v) = present(o, "quietHours") {
            let p = at(path, "quietHours");
            if let Some(q) = self.object(v, &p, &["from", "to"]) {
                let from = q.get("from").and_then(|h| self.integer(h, &at(&p, "from"), 0, 23));
                let to = q.get("to").and_then(|h| self.integer(h, &at(&p, "to"), 0, 23));
                match (from, to) {
                    (Some(f), Some(t)) if f != t => out.quiet = Some((f as u8, t as u8)),
                    (Some(_), Some(_)) => self.err(&p, "from and to must differ"),
                    _ if !q.contains_key("from") || !q.contains_key("to") => {
                        self.err(&p, "expected from and to, local hours 0 to 23")
                    }
                    _ => {}
                }
            }
        }
        if let Some(v) = present(o, "adaptive") {
            out.adaptive = self.adaptive(v, &at(path, "adaptive"));
        }
        if let Some(v) = present(o, "defaultUtcOffset") {
            match v.as_str().and_then(parse_offset) {
                Some(m) => out.default_offset = m,
                None => self.err(at(path, "defaultUtcOffset"), "expected an offset such as \"+01:00\" or \"-05:00\""),
            }
        }
        out
    }

    /// `adaptive`: `true`, `false`, or `{"pauseAfter": 3, "pause": "14d"}`.
    fn adaptive(&mut self, v: &J, path: &str) -> Option<Adaptive> {
        if let J::Bool(on) = v {
            return on.then(Adaptive::default);
        }
        let o = self.object(v, path, &["pauseAfter", "pause"])?;
        let mut a = Adaptive::default();
        if let Some(n) = present(o, "pauseAfter") {
            a.pause_after = self.integer(n, &at(path, "pauseAfter"), 1, 100).unwrap_or(3) as u32;
        }
        if let Some(d) = present(o, "pause") {
            match self.duration(d, &at(path, "pause")) {
                Some(ms) if ms <= 365 * DAY => a.pause = ms,
                Some(_) => self.err(at(path, "pause"), "at most 365d"),
                None => {}
            }
        }
        Some(a)
    }

    fn caps(&mut self, v: &J, path: &str) -> Vec<Cap> {
        let mut out = Vec::new();
        for (i, c) in self.array(v, path).into_iter().flatten().enumerate() {
            let p = idx(path, i);
            let Some(o) = self.object(c, &p, &["max", "per"]) else { continue };
            let max = o.get("max").and_then(|m| self.integer(m, &at(&p, "max"), 0, 1000));
            let per = match o.get("per") {
                Some(d) => self.duration(d, &at(&p, "per")),
                None => {
                    self.err(at(&p, "per"), "is required, for example \"7d\"");
                    None
                }
            };
            if o.get("max").is_none() {
                self.err(at(&p, "max"), "is required");
            }
            if let Some(per) = per.filter(|&d| d > 365 * DAY) {
                self.err(at(&p, "per"), format!("at most 365d, not {}d", per / DAY));
            } else if let (Some(max), Some(per)) = (max, per) {
                out.push(Cap { max: max as u32, per });
            }
        }
        out
    }
}

/// `+01:00`, `-05:30`, `Z` → minutes east of UTC.
pub fn parse_offset(s: &str) -> Option<i32> {
    if s == "Z" || s == "+00:00" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=14).contains(&h) && (0..60).contains(&m) && h.to_string().len() <= 2).then_some(sign * (h * 60 + m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::compile_str;

    fn errors(text: &str) -> Vec<String> {
        compile_str(text).expect_err("config is invalid").iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn pressure_reports_paths() {
        let got = errors(
            r#"{"destinations": [{"id": "a", "type": "smtp", "url": "ftp://x", "purpose": "necessary", "channel": "onsite"},
                                 {"id": "b", "type": "webhook", "url": "https://x", "secretEnv": "lower", "purpose": "marketing",
                                  "channel": "email", "payload": {"format": "json", "template": "{\"to\": {{traits.email}}}"}}],
                "pressure": {"caps": [{"max": 2}], "slots": ["nope"], "quietHours": {"from": 21, "to": 21}, "defaultUtcOffset": "CET"}}"#,
        );
        for want in [
            "pressure.caps[0].per: is required",
            "pressure.slots[0]: unknown slot \"nope\"",
            "pressure.quietHours: from and to must differ",
            "pressure.defaultUtcOffset: expected an offset",
        ] {
            assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:#?}");
        }
    }

    #[test]
    fn the_adaptive_budget_reads_true_or_its_settings() {
        let adaptive =
            |v: &str| compile_str(&format!(r#"{{"pressure": {{"adaptive": {v}}}}}"#)).map(|c| c.pressure.adaptive);
        assert_eq!(adaptive("true").unwrap(), Some(Adaptive::default()));
        assert_eq!(adaptive("false").unwrap(), None);
        assert_eq!(
            adaptive(r#"{"pauseAfter": 5, "pause": "3d"}"#).unwrap(),
            Some(Adaptive { pause_after: 5, pause: 3 * DAY })
        );
        for (v, want) in [
            (r#"{"pauseAfter": 0}"#, "pressure.adaptive.pauseAfter:"),
            (r#"{"pause": "400d"}"#, "pressure.adaptive.pause: at most 365d"),
            (r#"{"after": 2}"#, "pressure.adaptive.after:"),
            ("3", "pressure.adaptive:"),
        ] {
            let got = errors(&format!(r#"{{"pressure": {{"adaptive": {v}}}}}"#));
            assert!(got.iter().any(|g| g.starts_with(want)), "{v}: missing {want:?} in {got:#?}");
        }
    }

    #[test]
    fn offsets_are_minutes_east_of_utc() {
        assert_eq!(parse_offset("+05:30"), Some(330));
        assert_eq!(parse_offset("-05:00"), Some(-300));
        assert_eq!(parse_offset("05:00"), None);
    }
}
