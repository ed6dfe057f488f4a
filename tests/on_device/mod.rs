//! What the device's shell (`js/slots.js`) makes of a device program's picks, for the native runners that check
//! programs against the edge's decisions (`tests/cases.rs`, `tests/device_props.rs`).

#![allow(dead_code)]

use edgecdp::core::base::time::{Millis, DAY, HOUR};
use edgecdp::core::engine::decide::Decision;
use edgecdp::core::engine::device::DeviceRules;
use edgecdp::core::engine::program::Decided;
use edgecdp::core::model::shown::Impression;
use serde_json::Value;

/// Instants to decide a program at: its first, moments after, just before it (stale), either side of its end.
pub fn instants(now: Millis, until: Option<Millis>) -> Vec<Millis> {
    let mut t = vec![now, now + 1, now + 60_000, now + HOUR, now + DAY, now + 7 * DAY, now + 40 * DAY, now - 1];
    if let Some(u) = until {
        t.extend([u - 1, u, u + 1]);
    }
    t
}

/// `/v1/decide`'s answer from a program's picks, as js/slots.js builds it (which sends a request with an unknown
/// slot to the edge instead; here it is answered as the edge does, so that such steps compare too), with the
/// impressions it posts (`block`, `variant`, `experiment` of the answers marked `record`), in slot order.
pub fn answer(rules: &DeviceRules, d: &Decided, requested: &[String]) -> (Value, Vec<Impression>) {
    let segments: Vec<&String> = rules.segments.iter().zip(&d.segments).filter(|(_, h)| **h).map(|(s, _)| s).collect();
    let mut slots = serde_json::Map::new();
    let mut rejected = Vec::new();
    let mut served = Vec::new();
    for (k, name) in rules.slots.iter().enumerate() {
        let a = &rules.answers[d.answers[k] as usize];
        if a.record && requested.contains(name) {
            if let (Some(block), Some(variant)) = (&a.block, &a.variant) {
                served.push(Impression {
                    block: block.clone(),
                    variant: variant.clone(),
                    experiment: a.experiment.clone(),
                    at: 0,
                });
            }
        }
    }
    for (index, name) in requested.iter().enumerate() {
        match rules.slots.iter().position(|s| s == name) {
            Some(k) => {
                let a = &rules.answers[d.answers[k] as usize];
                let mut v = serde_json::json!({"block": a.block, "variant": a.variant, "html": a.html});
                if let Some(e) = &a.experiment {
                    v["experiment"] = e.as_str().into();
                }
                slots.insert(name.clone(), v);
            }
            None => rejected.push(serde_json::json!({"index": index, "code": "unknown_slot",
                "message": format!("slot {name:?} is not configured"), "path": format!("slots[{index}]")})),
        }
    }
    let mut out = serde_json::json!({"profileId": rules.profile_id, "segments": segments, "slots": slots});
    if !rejected.is_empty() {
        out["rejected"] = rejected.into();
    }
    (out, served)
}

/// The edge's decision as the device's shell would compare it: the answer, and its impressions without their time.
pub fn edge(d: &Decision) -> (Value, Vec<Impression>) {
    let mut served = d.impressions(0);
    served.iter_mut().for_each(|i| i.at = 0);
    (d.to_json(), served)
}
