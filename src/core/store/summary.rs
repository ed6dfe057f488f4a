//! The profile summary a device decides on: a profile cut down to exactly what a configuration's decisions
//! read, and its text form (the stored codec's bytes in base64) for `GET /v1/decide/summary`.
//!
//! Minimization is what makes "way 3" (deciding in the browser) acceptable: the device receives the few traits
//! that conditions and templates name, the recent events that conditions and scores count, consent grants and
//! what caps and experiments need, and nothing else (no identity values, message ids, merge records or other
//! traits). `decide` on the summary equals `decide` on the full profile, which `tests/summary_props.rs` and the
//! decision cases check.

use crate::core::base::encoding::{base64_decode, base64_encode};
use crate::core::base::time::Millis;
use crate::core::base::value::Value;
use crate::core::model::aggregate::DayCount;
use crate::core::model::behaviour::{Behaviour, ChannelStats};
use crate::core::model::consent::{Grant, Purpose};
use crate::core::model::history::{EventRecord, MAX_RECENT_EVENTS};
use crate::core::model::identity::{Identity, USER_ID};
use crate::core::model::profile::{Profile, TraitEntry};
use crate::core::model::shown::{Assignment, Shown};
use crate::core::rules::segment::{Condition, PropertyFilter, ScoreSource};
use crate::core::rules::Config;
use crate::core::store::{self, CodecError, SUMMARY_V2};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What a configuration's decisions read from a profile.
#[derive(Debug, Default)]
struct Reads {
    /// Event name to the properties its filters test.
    events: BTreeMap<String, BTreeSet<String>>,
    traits: BTreeSet<String>,
}

impl Reads {
    fn of(config: &Config) -> Reads {
        let mut r = Reads::default();
        for s in &config.segments {
            r.condition(&s.when);
        }
        for score in &config.scores {
            for rule in &score.rules {
                match &rule.source {
                    ScoreSource::Event { event, filters, .. } => r.event(event, filters),
                    ScoreSource::When(c) => r.condition(c),
                }
            }
        }
        for c in &config.computed {
            r.event(&c.event, &c.filters);
        }
        for slot in config.slots.values() {
            // Fallbacks are rendered without a profile, so only the blocks' templates read traits.
            for block in &slot.blocks {
                r.condition(&block.audience);
                for v in &block.variants {
                    r.traits.extend(v.html.trait_names().map(String::from));
                }
            }
        }
        r
    }

    fn event(&mut self, event: &str, filters: &[PropertyFilter]) {
        self.events.entry(event.to_string()).or_default().extend(filters.iter().map(|f| f.property.clone()));
    }

    fn condition(&mut self, c: &Condition) {
        match c {
            Condition::EventCount { event, filters, .. } => self.event(event, filters),
            Condition::Trait { name, .. } => {
                self.traits.insert(name.clone());
            }
            Condition::All(cs) | Condition::Any(cs) => cs.iter().for_each(|c| self.condition(c)),
            Condition::Not(c) => self.condition(c),
            // The rest read the request context, `last_seen`, identities, consent grants, or results
            // (segments, scores) whose own reads are collected from their definitions.
            _ => {}
        }
    }

    /// Whether an aggregate series can answer a count these reads make: the event's own series, or one of a
    /// filtered property's values (`Product Viewed|category=bags`).
    fn series(&self, key: &str) -> bool {
        self.events.iter().any(|(event, props)| {
            key == event
                || key.strip_prefix(event.as_str()).and_then(|rest| rest.strip_prefix('|')).is_some_and(|rest| {
                    props.iter().any(|p| rest.strip_prefix(p.as_str()).is_some_and(|v| v.starts_with('=')))
                })
        })
    }
}

impl Profile {
    /// This profile cut down to what `config`'s decisions read. `decide` gives the same answer for both.
    ///
    /// Kept: the id (variant assignment hashes it); `last_seen` (`inactiveFor`); a `user_id` identity with an
    /// empty value when the profile is identified (the value is never sent); consent grants without their
    /// trail; the traits that conditions and templates name; the recent events and daily series of the events
    /// that conditions, scores and computed traits count, with only the properties their filters test; the
    /// impressions of capped blocks; the assignments of configured experiments.
    ///
    /// A full recent history changes how counts work (beyond it the daily series count, see
    /// `segment::count_events`), so when the history is full the events dropped from it are replaced by
    /// nameless placeholders at the time of its oldest event: the history stays full and starts at the same time,
    /// and no condition can match a placeholder (event names are never empty).
    pub fn minimized_for(&self, config: &Config) -> Profile {
        let reads = Reads::of(config);
        let mut out = Profile::new(self.id.clone(), self.last_seen);
        if self.is_identified() {
            out.identities.push(Identity::new(USER_ID, ""));
        }
        out.consent.grants = self.consent.grants.clone();
        for name in &reads.traits {
            if let Some(t) = self.traits.get(name) {
                // When a trait was set is never read by a decision.
                out.traits
                    .insert(name.clone(), crate::core::model::profile::TraitEntry { value: t.value.clone(), at: 0 });
            }
        }
        let kept = self.recent.iter().filter_map(|r| {
            let props = reads.events.get(&r.name)?;
            Some(EventRecord {
                at: r.at,
                name: r.name.clone(),
                message_id: String::new(),
                props: r
                    .props
                    .iter()
                    .filter(|(k, _)| props.contains(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            })
        });
        let kept: Vec<EventRecord> = kept.collect();
        if self.recent.len() >= MAX_RECENT_EVENTS {
            let oldest = self.recent.front().map_or(0, |r| r.at);
            let placeholder =
                EventRecord { at: oldest, name: String::new(), message_id: String::new(), props: BTreeMap::new() };
            for _ in kept.len()..self.recent.len() {
                out.recent.push_back(placeholder.clone());
            }
        }
        out.recent.extend(kept);
        out.aggregates.series = self
            .aggregates
            .series
            .iter()
            .filter(|(k, _)| reads.series(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut shown = Shown::default();
        for slot in config.slots.values() {
            for block in &slot.blocks {
                if block.cap.is_some() {
                    if let Some(times) = self.shown.impressions.get(&block.id) {
                        shown.impressions.insert(block.id.clone(), times.clone());
                    }
                }
                if let Some(e) = &block.experiment {
                    if let Some(a) = self.shown.experiments.get(&e.id) {
                        // Conversions are counted at the edge; a decision only reads the variant.
                        let a = crate::core::model::shown::Assignment { converted_at: None, ..a.clone() };
                        shown.experiments.insert(e.id.clone(), a);
                    }
                }
            }
        }
        out.shown = shown;
        if config.predictions.read {
            // Purchases and channel counts, not the writer's open sends nor recent send times.
            out.behaviour.purchases = self.behaviour.purchases.clone();
            for (name, c) in &self.behaviour.channels {
                let counts = ChannelStats { open: Vec::new(), recent: Vec::new(), ..c.clone() };
                out.behaviour.channels.insert(name.clone(), counts);
            }
        }
        out
    }
}

type WireEvent = (Millis, String, Vec<(String, Value)>);

/// A summary's binary form: exactly the fields decisions read, so the browser decide module links no codec
/// for the rest of a profile (merge records, message ids, consent history, older stored versions). Maps travel
/// as sorted pairs and are rebuilt on reading.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: String,
    identified: bool,
    last_seen: Millis,
    grants: Vec<(Purpose, Grant)>,
    traits: Vec<(String, Value)>,
    /// Time, name and the filtered properties of each recent event, oldest first.
    recent: Vec<WireEvent>,
    series: Vec<(String, Vec<DayCount>)>,
    impressions: Vec<(String, Vec<Millis>)>,
    /// Experiment id, variant and first exposure.
    experiments: Vec<(String, String, Millis)>,
    /// What predictions read, when a condition reads one (else empty).
    behaviour: Behaviour,
}

/// A profile summary (`Profile::minimized_for`) as text: version byte and bincode of its fields, in standard
/// base64. Only what `decode` reads back is kept: use it on a minimized profile.
pub fn encode(p: &Profile) -> String {
    let wire = Wire {
        id: p.id.clone(),
        identified: p.is_identified(),
        last_seen: p.last_seen,
        grants: p.consent.grants.iter().map(|(k, g)| (*k, g.clone())).collect(),
        traits: p.traits.iter().map(|(k, t)| (k.clone(), t.value.clone())).collect(),
        recent: p.recent.iter().map(|r| (r.at, r.name.clone(), pairs(&r.props))).collect(),
        series: pairs(&p.aggregates.series),
        impressions: p.shown.impressions.iter().map(|(k, v)| (k.clone(), v.iter().copied().collect())).collect(),
        experiments: p.shown.experiments.iter().map(|(k, a)| (k.clone(), a.variant.clone(), a.at)).collect(),
        behaviour: p.behaviour.clone(),
    };
    base64_encode(&store::encode(SUMMARY_V2, &wire))
}

fn pairs<V: Clone>(m: &BTreeMap<String, V>) -> Vec<(String, V)> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A map from pairs, inserted one by one: `collect` would link a sort and a bulk build per map type into the
/// decide module, for pairs that come sorted anyway.
fn map_of<K: Ord, V>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut m = BTreeMap::new();
    for (k, v) in pairs {
        m.insert(k, v);
    }
    m
}

/// Reads `encode`'s text back into a profile that decides as the minimized one does.
pub fn decode(text: &str) -> Result<Profile, CodecError> {
    let bytes = base64_decode(text).ok_or_else(|| CodecError::Corrupt("the summary is not base64".into()))?;
    let w: Wire = store::decode_for_device(SUMMARY_V2, &bytes)?;
    let mut p = Profile::new(w.id, w.last_seen);
    if w.identified {
        p.identities.push(Identity::new(USER_ID, ""));
    }
    p.consent.grants = map_of(w.grants);
    p.traits = map_of(w.traits.into_iter().map(|(k, value)| (k, TraitEntry { value, at: 0 })));
    for (at, name, props) in w.recent {
        p.recent.push_back(EventRecord { at, name, message_id: String::new(), props: map_of(props) });
    }
    p.aggregates.series = map_of(w.series);
    p.behaviour = w.behaviour;
    p.shown.impressions = map_of(w.impressions.into_iter().map(|(k, v)| (k, v.into())));
    p.shown.experiments =
        map_of(w.experiments.into_iter().map(|(k, variant, at)| (k, Assignment { variant, at, converted_at: None })));
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_carry_decisions_and_nothing_of_the_edge() {
        use crate::core::model::consent::Model;
        use crate::core::rules::compile_str;
        let config = compile_str(
            r#"{
              "sources": [{"id": "shop-web", "writeKey": "wk_secret_4711", "origins": ["https://shop.example"]}],
              "consent": {"model": "opt-out", "regions": {"DE": "opt-in"}, "honorGpc": false,
                          "categories": {"C0002": "analytics", "C0004": "personalization"}},
              "privacy": {"hashTraits": ["email"]},
              "delivery": {"origin": "https://origin.example", "paths": ["/shop/*"]},
              "segments": [{"id": "vip", "when": {"trait": "plan", "eq": "gold"}}],
              "slots": {"hero": {"fallback": {"html": "<p>Hi</p>"}, "blocks": [
                {"id": "vip", "audience": {"include": ["vip"]}, "html": "<b>{{traits.name}}</b>"}
              ]}}
            }"#,
        )
        .expect("compiles");
        let bytes = store::encode_rules(&config.for_device(Some("DE")));
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["wk_secret_4711", "shop-web", "shop.example", "origin.example", "C0002"] {
            assert!(!text.contains(secret), "{secret} reached the device's rules");
        }
        let rules = store::decode_rules(&bytes).expect("decodes");
        assert!(rules.sources.is_empty() && rules.hash_traits.is_empty() && rules.delivery.is_none());
        assert!(rules.identity.identifiers.is_empty() && rules.identity.blocklist.is_empty());
        assert_eq!(rules.consent.model, Model::OptIn, "the model for DE, resolved at the edge");
        assert!(rules.consent.regions.is_empty() && !rules.consent.honor_gpc);
        assert_eq!(rules.consent.categories.keys().collect::<Vec<_>>(), ["C0004"]);
        assert_eq!(
            (&rules.segments, &rules.segment_order, &rules.slots),
            (&config.segments, &config.segment_order, &config.slots)
        );
        assert_eq!(config.for_device(Some("US")).consent.model, Model::OptOut);
        assert!(matches!(store::decode_rules(&bytes[..bytes.len() - 1]), Err(CodecError::Corrupt(_))));
    }
}
