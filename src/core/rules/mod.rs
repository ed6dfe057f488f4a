//! The site configuration: JSON in, compiled runtime rules out.
//!
//! The configuration type here is the JSON document itself: compiling walks it once and reports every
//! problem with its JSON path (`segments[3].when.count: expected a number`) instead of stopping at the first,
//! which a serde-derived intermediate type could not do. What comes out (`Config`) holds only checked,
//! ready-to-run rules, so evaluation never fails.

mod compiler;
pub mod conditions;
pub mod consent;
pub mod delivery;
pub mod destinations;
pub mod identity;
pub mod journey;
pub mod predictions;
pub mod pressure;
pub mod scanner;
pub mod segment;
pub mod slots;
pub mod sources;
pub mod template;

use crate::core::base::sort;
use crate::core::model::consent::ConsentPolicy;
use crate::core::model::identity::constant_time_eq;
use crate::core::model::trust::{key_matches, Proof};
use crate::core::rules::compiler::{idx, present, Compiler};
use crate::core::rules::delivery::Delivery;
use crate::core::rules::identity::IdentityRules;
use crate::core::rules::segment::{ComputedTrait, Score, Segment};
use crate::core::rules::slots::{Experiment, Slot};
use crate::core::rules::sources::Source;
use crate::core::rules::sources::SourceKind;
pub use compiler::ConfigError;
use serde::{Deserialize, Serialize};
use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};

/// The compiled configuration. It never leaves the edge: a device gets its visitor's program (`engine::device`).
/// (Its serde form skips the edge's own fields, from when devices got the decision rules in binary.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    #[serde(skip)]
    pub sources: Vec<Source>,
    pub consent: ConsentPolicy,
    #[serde(skip, default = "IdentityRules::none")]
    pub identity: IdentityRules,
    #[serde(skip, default = "default_retention")]
    pub retention_anonymous_days: u32,
    /// Traits stored only as a hash of their normalized value (`privacy.hashTraits`, e.g. `email`, `phone`).
    #[serde(skip)]
    pub hash_traits: Vec<String>,
    /// Named event counts shown on profiles (`computedTraits`).
    pub computed: Vec<ComputedTrait>,
    /// Scoring plans (`scores`), shown on profiles and usable in segments.
    pub scores: Vec<Score>,
    pub segments: Vec<Segment>,
    /// Segment indexes ordered so that each comes after the segments it references.
    pub segment_order: Vec<usize>,
    /// The segments that are audiences (`segment::audiences`), by index, and the digest of their definitions
    /// (`segment::audience_digest`). Edge-only: a device evaluates no audience.
    #[serde(skip)]
    pub audiences: Vec<usize>,
    #[serde(skip)]
    pub audience_digest: u64,
    pub slots: BTreeMap<String, Slot>,
    /// Edge HTML delivery (`delivery`): the origin the Worker proxies pages from, and which paths. `None` (the
    /// default): the Worker proxies nothing.
    #[serde(skip)]
    pub delivery: Option<Delivery>,
    /// `demo.signIn`: the demo shop's sign-in route (`POST /v1/demo/identity-token`), which hands any visitor a
    /// token for any user id. Only a demo may turn it on; the Worker warns at every load when it is on.
    #[serde(skip)]
    pub demo_sign_in: bool,
    /// Journeys, the destinations they send to and the marketing-pressure budget (`journey`). Edge-only.
    #[serde(skip)]
    pub journeys: Vec<journey::Journey>,
    #[serde(skip)]
    pub destinations: Vec<destinations::Destination>,
    /// The traits that are contact points, whose proof a profile keeps (`model::contact`): `email`, `phone`,
    /// and whatever a destination addresses (`Destination::to`). Edge-only.
    #[serde(skip)]
    pub contact_traits: Vec<String>,
    #[serde(skip)]
    pub pressure: pressure::Pressure,
    /// Predictions (`predictions`): what they read, their names, the model in force (a device computes them too,
    /// from the summary's behaviour).
    pub predictions: predictions::Predictions,
}

fn default_retention() -> u32 {
    Config::default().retention_anonymous_days
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sources: Vec::new(),
            consent: ConsentPolicy::default(),
            identity: IdentityRules::default(),
            retention_anonymous_days: 30,
            hash_traits: Vec::new(),
            computed: Vec::new(),
            scores: Vec::new(),
            segments: Vec::new(),
            segment_order: Vec::new(),
            audiences: Vec::new(),
            audience_digest: 0,
            slots: BTreeMap::new(),
            delivery: None,
            demo_sign_in: false,
            journeys: Vec::new(),
            destinations: Vec::new(),
            contact_traits: destinations::default_contact_traits(),
            pressure: pressure::Pressure::default(),
            predictions: predictions::Predictions::default(),
        }
    }
}

impl Config {
    /// An identifier in the form profiles and the index hold it: hashed where the configuration keeps that trait
    /// hashed (`hash_traits`), else normalized (an e-mail in lower case).
    pub fn stored_identity(&self, kind: &str, value: &str) -> crate::core::model::identity::Identity {
        use crate::core::model::identity::{hash_identifier, normalize_identifier, Identity};
        let value = if self.hash_traits.iter().any(|t| t == kind) {
            hash_identifier(kind, value)
        } else {
            normalize_identifier(kind, value)
        };
        Identity { kind: kind.to_string(), value }
    }

    /// The experiment with this id, wherever its block is.
    pub fn experiment(&self, id: &str) -> Option<&Experiment> {
        self.slots.values().flat_map(|s| &s.blocks).filter_map(|b| b.experiment.as_ref()).find(|e| e.id == id)
    }

    /// This configuration with `fitted` as its model in force (unless it pins one), and the audiences' digest
    /// that goes with it: audiences that read predictions are evaluated again under a new model version.
    pub fn with_model(&self, fitted: Option<predictions::Model>) -> Config {
        let mut c = Config { predictions: self.predictions.with_model(fitted), ..self.clone() };
        c.audience_digest = c.digest_of_audiences();
        c
    }

    fn digest_of_audiences(&self) -> u64 {
        let base = segment::audience_digest(&self.segments, &self.audiences, &self.scores);
        let reads = self.audiences.iter().any(|&i| self.segments[i].when.reads_predictions());
        match (reads, &self.predictions.model) {
            (true, Some(m)) => base ^ m.version.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            _ => base,
        }
    }

    /// The source a key belongs to: a browser source's public write key, or a server source's secret key
    /// (compared with its digest, in constant time).
    pub fn authenticate(&self, key: &str) -> Option<&Source> {
        self.sources.iter().find(|s| match &s.kind {
            SourceKind::Browser { write_key, .. } => constant_time_eq(write_key.as_bytes(), key.as_bytes()),
            SourceKind::Server { key_digest } => key_matches(key, key_digest),
        })
    }

    /// The browser sources whose identity claims are believed without proof (`identityProof: "off"`), which the
    /// Worker warns about whenever it loads the configuration.
    pub fn unproven_sources(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| match s.kind {
            SourceKind::Browser { identity_proof: Proof::Off, .. } => Some(s.id.as_str()),
            _ => None,
        })
    }

    /// The browser sources whose contact points are believed without proof (`contactProof: "off"`), which the
    /// Worker warns about whenever it loads the configuration: any page can then make journeys send to anyone.
    pub fn believed_contact_sources(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| match s.kind {
            SourceKind::Browser { contact_proof: Proof::Off, .. } => Some(s.id.as_str()),
            _ => None,
        })
    }

    /// Whether any source lets this origin send (used for CORS preflight, which carries no write key).
    pub fn any_source_allows_origin(&self, origin: &str) -> bool {
        self.sources.iter().any(|s| s.allows_origin(origin))
    }
}

/// Compiles configuration text.
pub fn compile_str(text: &str) -> Result<Config, Vec<ConfigError>> {
    match serde_json::from_str::<J>(text) {
        Ok(v) => compile(&v),
        Err(e) => {
            Err(vec![ConfigError { path: String::new(), message: format!("configuration is not valid JSON: {e}") }])
        }
    }
}

/// Compiles a configuration document, reporting every problem.
pub fn compile(doc: &J) -> Result<Config, Vec<ConfigError>> {
    let mut c = Compiler::new();
    let mut config = Config::default();
    let keys = [
        // Where editors find the configuration's JSON Schema (`schema/config.schema.json`); not a rule.
        "$schema",
        "sources",
        "consent",
        "identity",
        "retention",
        "privacy",
        "computedTraits",
        "scores",
        "segments",
        "slots",
        "delivery",
        "demo",
        "destinations",
        "pressure",
        "journeys",
        "predictions",
    ];
    if let Some(root) = c.object(doc, "", &keys) {
        if let Some(v) = present(root, "$schema") {
            if !v.is_string() {
                c.err("$schema", "expected the address of the configuration's JSON Schema (a string)");
            }
        }
        if let Some(v) = present(root, "sources") {
            config.sources = c.sources(v, "sources");
        }
        if let Some(v) = present(root, "consent") {
            config.consent = c.consent(v, "consent");
        }
        if let Some(v) = present(root, "identity") {
            config.identity = c.identity(v, "identity");
        }
        if let Some(v) = present(root, "retention") {
            if let Some(o) = c.object(v, "retention", &["anonymousDays"]) {
                if let Some(d) = present(o, "anonymousDays") {
                    if let Some(n) = c.integer(d, "retention.anonymousDays", 1, 3650) {
                        config.retention_anonymous_days = n as u32;
                    }
                }
            }
        }
        if let Some(v) = present(root, "demo") {
            if let Some(o) = c.object(v, "demo", &["signIn"]) {
                if let Some(b) = present(o, "signIn") {
                    config.demo_sign_in = c.boolean(b, "demo.signIn").unwrap_or(false);
                }
            }
        }
        if let Some(v) = present(root, "privacy") {
            if let Some(o) = c.object(v, "privacy", &["hashTraits"]) {
                if let Some(list) = present(o, "hashTraits") {
                    for (i, item) in c.array(list, "privacy.hashTraits").into_iter().flatten().enumerate() {
                        match item.as_str() {
                            Some(t) if !t.is_empty() => config.hash_traits.push(t.to_string()),
                            _ => c.err(idx("privacy.hashTraits", i), "expected a trait name"),
                        }
                    }
                }
            }
        }
        if let Some(v) = present(root, "computedTraits") {
            c.computed = c.computed_traits(v, "computedTraits");
            config.computed = c.computed.clone();
        }
        if let Some(v) = present(root, "scores") {
            config.scores = c.scores(v, "scores");
            c.scores = config.scores.iter().map(|s| s.id.clone()).collect();
        }
        if let Some(v) = present(root, "predictions") {
            config.predictions = c.predictions(v, "predictions");
        }
        c.predictions = config.predictions.names.iter().map(|(n, _)| n.clone()).collect();
        let mut ids = BTreeMap::new();
        if let Some(v) = present(root, "segments") {
            let (segments, order) = c.segments(v, "segments");
            for (i, s) in segments.iter().enumerate() {
                ids.insert(s.id.clone(), i);
            }
            config.segments = segments;
            config.segment_order = order;
        }
        if let Some(v) = present(root, "slots") {
            config.slots = c.slots(v, "slots", &ids);
        }
        if let Some(v) = present(root, "delivery") {
            config.delivery = c.delivery(v, "delivery");
        }
        if let Some(v) = present(root, "destinations") {
            config.destinations = c.destinations(v, "destinations");
            for d in &config.destinations {
                for t in &d.to {
                    if !config.contact_traits.contains(t) {
                        config.contact_traits.push(t.clone());
                    }
                }
            }
        }
        if let Some(v) = present(root, "pressure") {
            let slots: BTreeSet<String> = sort::set_of(config.slots.keys().cloned());
            config.pressure = c.pressure(v, "pressure", &slots);
        }
        if let Some(v) = present(root, "journeys") {
            let audiences: BTreeSet<usize> =
                segment::audiences(&config.segments, &config.segment_order, &config.scores).into_iter().collect();
            let scores_ok: Vec<bool> = config.scores.iter().map(Score::reads_profile_only).collect();
            config.journeys = c.journeys(v, "journeys", &ids, &audiences, &scores_ok, &config.destinations);
        }
    }
    config.predictions.read = c.reads_predictions;
    if c.errors.is_empty() {
        config.audiences = segment::audiences(&config.segments, &config.segment_order, &config.scores);
        config.audience_digest = config.digest_of_audiences();
        Ok(config)
    } else {
        Err(c.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::value::Value;
    use crate::core::model::consent::{Model, Purpose};
    use crate::core::rules::delivery::PathPattern;
    use crate::core::rules::identity::IdRule;
    use crate::core::rules::segment::*;
    use crate::core::rules::slots::*;

    fn errors(text: &str) -> Vec<String> {
        compile_str(text).expect_err("config is invalid").iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn empty_config_gets_documented_defaults() {
        let c = compile_str("{}").unwrap();
        assert_eq!(c.consent.model, Model::OptIn);
        assert!(c.consent.honor_gpc);
        assert_eq!(c.identity.identifiers["user_id"], IdRule { limit: 1, priority: 1 });
        assert_eq!(c.retention_anonymous_days, 30);
        assert!(c.segments.is_empty() && c.slots.is_empty() && c.sources.is_empty());
    }

    /// `$schema` points editors at the JSON Schema; it is allowed beside the rules and changes nothing.
    #[test]
    fn schema_address_is_allowed_and_ignored() {
        let with = compile_str(
            r#"{"$schema": "../schema/config.schema.json", "segments": [{"id": "k", "when": {"identified": true}}]}"#,
        );
        let without = compile_str(r#"{"segments": [{"id": "k", "when": {"identified": true}}]}"#);
        assert_eq!(with.unwrap(), without.unwrap());
        assert_eq!(
            errors(r#"{"$schema": 3}"#),
            ["$schema: expected the address of the configuration's JSON Schema (a string)"]
        );
    }
    /// Every operator word of every condition kind, and what it compiles to: a word compiled to the wrong
    /// meaning (`lte` as `lt`, a trait's `ne` as `eq`) fails here even when no case exercises the boundary.
    #[test]
    fn every_operator_word_compiles_to_its_own_meaning() {
        use crate::core::rules::segment::Condition as C;
        let when = |json: &str| -> C {
            let text = format!(
                r#"{{"computedTraits": [{{"id": "views", "event": "V"}}], "scores": [{{"id": "s", "rules": [{{"event": "V", "points": 1}}]}}],
                   "segments": [{{"id": "x", "when": {json}}}]}}"#
            );
            compile_str(&text).unwrap_or_else(|e| panic!("{json}: {e:?}")).segments[0].when.clone()
        };
        let cmps = [
            ("eq", Cmp::Eq(3.0)),
            ("ne", Cmp::Ne(3.0)),
            ("lt", Cmp::Lt(3.0)),
            ("lte", Cmp::Lte(3.0)),
            ("gt", Cmp::Gt(3.0)),
            ("gte", Cmp::Gte(3.0)),
        ];
        for (word, meaning) in cmps {
            // A trait's eq and ne compare values of any type; the order words compare numbers.
            let trait_test = match word {
                "eq" => TraitTest::Eq(Value::Number(3.0)),
                "ne" => TraitTest::Ne(Value::Number(3.0)),
                _ => TraitTest::Num(meaning),
            };
            assert_eq!(
                when(&format!(r#"{{"trait": "t", "{word}": 3}}"#)),
                C::Trait { name: "t".into(), test: trait_test },
                "trait {word}"
            );
            match when(&format!(r#"{{"event": "V", "count": {{"{word}": 3}}}}"#)) {
                C::EventCount { count, .. } => assert_eq!(count, vec![meaning], "event count {word}"),
                other => panic!("event count {word}: {other:?}"),
            }
            assert_eq!(when(&format!(r#"{{"score": "s", "{word}": 3}}"#)), C::Score { index: 0, cmps: vec![meaning] });
            assert_eq!(when(&format!(r#"{{"localHour": {{"{word}": 3}}}}"#)), C::LocalHour(vec![meaning]), "{word}");
            match when(&format!(r#"{{"computed": "views", "{word}": 3}}"#)) {
                C::EventCount { count, .. } => assert_eq!(count, vec![meaning], "computed {word}"),
                other => panic!("computed {word}: {other:?}"),
            }
        }
        let s = |v: &str| Value::String(v.into());
        let trait_tests = [
            (r#"{"trait": "t", "eq": "a"}"#, TraitTest::Eq(s("a"))),
            (r#"{"trait": "t", "ne": "a"}"#, TraitTest::Ne(s("a"))),
            (r#"{"trait": "t", "in": ["a", "b"]}"#, TraitTest::In(vec![s("a"), s("b")])),
            (r#"{"trait": "t", "contains": "a"}"#, TraitTest::Contains(s("a"))),
            (r#"{"trait": "t", "exists": false}"#, TraitTest::Exists(false)),
        ];
        for (json, test) in trait_tests {
            assert_eq!(when(json), C::Trait { name: "t".into(), test }, "{json}");
        }
        // Words that mean nothing are errors at their path, never a default meaning.
        let bad = errors(r#"{"segments": [{"id": "x", "when": {"localHour": {"gte": 1, "atLeast": 2}}}]}"#);
        assert!(bad.iter().any(|e| e.starts_with("segments[0].when.localHour.atLeast: unknown field")), "{bad:?}");
        let bad = errors(r#"{"segments": [{"id": "x", "when": {"trait": "t", "above": 2}}]}"#);
        assert!(bad.iter().any(|e| e.starts_with("segments[0].when.above: unknown field")), "{bad:?}");
    }

    #[test]
    fn the_contract_example_compiles() {
        let c = compile_str(include_str!("../../../tests/fixtures/contract-config.json")).unwrap();
        assert!(
            matches!(&c.sources[0].kind, SourceKind::Browser { write_key, identity_proof: Proof::Required, contact_proof: Proof::Required } if write_key == "demo")
        );
        assert_eq!(c.consent.regions["US"], Model::OptOut);
        assert_eq!(c.consent.categories["C0002"], Purpose::Analytics);
        assert_eq!(c.segments.len(), 3);
        // "gold" references "bag-curious", which must be evaluated first.
        let pos = |i: usize| c.segment_order.iter().position(|&x| x == i).unwrap();
        assert!(pos(0) < pos(2));
        assert_eq!(c.slots["hero"].blocks[0].variants.len(), 2);
        assert_eq!(c.slots["hero"].blocks[0].cap, Some(Cap { max: 3, per: crate::core::base::time::DAY }));
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let got = errors(
            r#"{
              "sources": [{"id": "web", "writeKey": "k", "origins": ["http://x/"]}, {"id": "web", "writeKey": "k2"}],
              "consent": {"model": "maybe", "regions": {"usa": "opt-out"}},
              "segments": [
                {"id": "a", "when": {"event": "E", "count": {"gte": "two"}, "within": "7 days"}},
                {"id": "b", "when": {"trait": "plan", "eq": "gold", "gt": 3}},
                {"id": "c", "when": {"segment": "nope"}},
                {"id": "d", "when": {"all": []}}
              ],
              "slots": {"hero": {"blocks": [{"id": "x", "audience": {"include": ["zzz"]}, "variants": [{"id": "v", "html": "{{traits.a"}]}]}},
              "colour": "blue"
            }"#,
        );
        let expected = [
            "sources[0].origins[0]: expected an origin",
            "sources[1].id: duplicate source id \"web\"",
            "consent.model: expected \"opt-in\" or \"opt-out\"",
            "consent.regions.usa: expected a two-letter",
            "segments[0].when.count.gte: expected a number",
            "segments[1].when: a trait condition has exactly one test",
            "segments[2].when.segment: unknown segment \"nope\"",
            "segments[3].when.all: expected at least one condition",
            "slots.hero.blocks[0].audience.include[0]: unknown segment \"zzz\"",
            "slots.hero.blocks[0].variants[0].html: a {{ placeholder is not closed",
            "colour: unknown field",
        ];
        for e in expected {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing {e:?} in {got:#?}");
        }
        // The `within` problem is reported too, at its own path.
        assert!(got.iter().any(|g| g.starts_with("segments[0].when.within: expected a duration")), "{got:#?}");
    }

    #[test]
    fn a_broken_segment_is_reported_once_not_at_every_use() {
        // One mistake in one segment discards the list; the slots, journeys and segments that use its ids (or any
        // other declared id) say nothing more, but an id declared nowhere is still unknown.
        let got = errors(
            r#"{
              "segments": [
                {"id": "known", "when": {"trait": "email", "exists": true}},
                {"id": "broken", "when": {"event": "E", "count": {"gte": "two"}}},
                {"id": "both", "when": {"all": [{"segment": "known"}, {"segment": "broken"}]}}
              ],
              "slots": {"hero": {"blocks": [{"id": "x", "audience": {"include": ["known", "nowhere"]}, "variants": [{"id": "v", "html": "hi"}]}]}},
              "journeys": [{"id": "j", "trigger": {"audience": "known", "on": "entered"}, "steps": [{"id": "s", "wait": "1d"}]}]
            }"#,
        );
        assert_eq!(
            got,
            [
                "segments[1].when.count.gte: expected a number",
                "slots.hero.blocks[0].audience.include[1]: unknown segment \"nowhere\"",
            ],
            "{got:#?}"
        );
    }

    #[test]
    fn unsafe_templates_are_reported_at_their_path() {
        let got = errors(
            r#"{"slots": {"hero": {"fallback": {"html": "<a href={{traits.site}}>site</a>"}, "blocks": [
                {"id": "b", "variants": [{"id": "v", "html": "<p>Hi</p><script>var n = \"{{traits.firstName}}\";</script>"}]},
                {"id": "c", "html": "<a href=\"javascript:go('{{traits.plan}}')\">go</a>"}]}}}"#,
        );
        for want in [
            "slots.hero.fallback.html: {{traits.site}} sits in an unquoted attribute value; quote it: href=\"{{traits.site}}\"",
            "slots.hero.blocks[0].variants[0].html: {{traits.firstName}} sits inside <script>",
            "slots.hero.blocks[1].html: {{traits.plan}} sits in a javascript: URL in href",
        ] {
            assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:#?}");
        }
        assert_eq!(got.len(), 3, "{got:#?}");
    }

    #[test]
    fn the_demo_configuration_compiles() {
        // Its templates put placeholders in text only; escaping by context must not refuse them.
        compile_str(include_str!("../../../config/demo.json")).unwrap();
    }

    #[test]
    fn segment_cycles_are_reported() {
        let got = errors(
            r#"{"segments": [{"id": "a", "when": {"segment": "b"}}, {"id": "b", "when": {"not": {"segment": "a"}}}]}"#,
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("segments[0].when: segment \"a\" references itself"));
    }

    #[test]
    fn not_json_is_one_error_at_the_root() {
        let got = compile_str("{").unwrap_err();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "");
    }

    #[test]
    fn computed_traits_compile_and_segments_can_name_them() {
        let c = compile_str(
            r#"{"computedTraits": [{"id": "bagViews7d", "event": "Product Viewed", "where": {"category": "bags"}, "within": "7d"}],
                "segments": [{"id": "keen", "when": {"computed": "bagViews7d", "gte": 2}}]}"#,
        )
        .unwrap();
        assert_eq!(c.computed[0].window, Some(7 * crate::core::base::time::DAY));
        match &c.segments[0].when {
            Condition::EventCount { event, filters, count, window, .. } => {
                assert_eq!(event, "Product Viewed");
                assert_eq!(filters[0].property, "category");
                assert_eq!(count, &vec![Cmp::Gte(2.0)]);
                assert_eq!(*window, Some(7 * crate::core::base::time::DAY));
            }
            other => panic!("{other:?}"),
        }
        let got = errors(
            r#"{"computedTraits": [{"id": "x", "event": "E", "within": "soon"}, {"id": "y", "event": "E"}, {"id": "y", "event": "F"}],
                "segments": [{"id": "s", "when": {"computed": "nope"}}, {"id": "t", "when": {"computed": "y", "gte": "2"}}]}"#,
        );
        for e in [
            "computedTraits[0].within: expected a duration",
            "computedTraits[2].id: duplicate computed trait id \"y\"",
            "segments[0].when.computed: unknown computed trait \"nope\"",
            "segments[1].when.gte: expected a number",
        ] {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing {e:?} in {got:#?}");
        }
    }

    #[test]
    fn context_conditions_scores_and_experiments_compile() {
        let c = compile_str(
            r#"{"scores": [{"id": "intent", "halfLife": "7d", "rules": [{"event": "Product Viewed", "points": 10},
                                                                       {"when": {"identified": true}, "points": 5}]}],
                "segments": [{"id": "s", "when": {"all": [{"page": ["/shop/*", "/sale/*"]}, {"referrer": "*.Google.*"},
                    {"utm": {"campaign": "bf-*"}}, {"country": ["DE", "AT"]}, {"device": "mobile"},
                    {"localHour": {"gte": 18, "lt": 23}}, {"score": "intent", "gte": 30}]}}],
                "slots": {"hero": {"blocks": [{"id": "b", "html": "x", "cap": {"max": 1, "per": "1d"},
                    "experiment": {"id": "e", "holdout": 10, "goal": {"event": "Order Completed", "within": "7d"}}}]}}}"#,
        )
        .unwrap();
        let Condition::All(parts) = &c.segments[0].when else { panic!("all") };
        assert_eq!(parts[1], Condition::Referrer(vec!["*.google.*".into()]), "hosts compare in lower case");
        assert_eq!(parts[2], Condition::Utm { param: "utm_campaign".into(), any_of: vec!["bf-*".into()] });
        assert_eq!(parts[6], Condition::Score { index: 0, cmps: vec![Cmp::Gte(30.0)] });
        assert_eq!(c.experiment("e").map(|e| e.holdout), Some(10));
        assert_eq!(c.scores[0].half_life, Some(7 * crate::core::base::time::DAY));
    }

    #[test]
    fn context_conditions_scores_and_experiments_report_paths() {
        let got = errors(
            r#"{"scores": [{"id": "x", "rules": [{"when": {"segment": "s"}, "points": 1}, {"event": "E"}]}],
                "segments": [{"id": "s", "when": {"any": [{"country": ["DE", "usa"]}, {"device": ["mobile", "fridge"]},
                    {"utm": {"campaign": "a", "source": "b"}}, {"page": []}, {"score": "nope"}, {"localHour": {"gte": "x"}}]}}],
                "slots": {"hero": {"blocks": [
                    {"id": "b", "html": "x", "experiment": {"id": "e", "holdout": 100}},
                    {"id": "c", "html": "x", "experiment": {"id": "e", "goal": {"event": "O"}}}]}}}"#,
        );
        for want in [
            "scores[0].rules[0].when.segment: a score rule cannot use segments or scores",
            "scores[0].rules[1].points: is required",
            "segments[0].when.any[0].country[1]: a country is an ISO 3166-1 alpha-2 code in upper case, such as DE",
            "segments[0].when.any[1].device[1]: unknown device class; expected one of: mobile, tablet, desktop, bot",
            "segments[0].when.any[2].utm: expected exactly one of: source, medium, campaign, term, content",
            "segments[0].when.any[3].page: a list of values must not be empty",
            "segments[0].when.any[4].score: unknown score \"nope\"",
            "segments[0].when.any[5].localHour.gte: expected a number",
            "slots.hero.blocks[0].experiment.holdout: must be between 0 and 99",
            "slots.hero.blocks[0].experiment.goal: is required: the event that counts as a conversion",
            "slots.hero.blocks[1].experiment.id: duplicate experiment id \"e\"",
            "slots.hero.blocks[1].experiment.goal.within: is required, for example \"7d\"",
        ] {
            assert!(got.iter().any(|g| g == want), "missing {want:?} in {got:#?}");
        }
    }

    #[test]
    fn delivery_is_off_by_default_and_compiles_when_given() {
        assert_eq!(compile_str("{}").unwrap().delivery, None);
        assert_eq!(compile_str(r#"{"delivery": null}"#).unwrap().delivery, None);
        let c =
            compile_str(r#"{"delivery": {"origin": "https://WWW.example.com:8443", "paths": ["/shop/*", "/about"]}}"#)
                .unwrap();
        let d = c.delivery.unwrap();
        assert_eq!(d.origin, "https://www.example.com:8443");
        assert_eq!(d.paths, vec![PathPattern::Under("/shop".into()), PathPattern::Exact("/about".into())]);
        assert!(d.proxies("/shop/bags") && d.proxies("/about") && !d.proxies("/"));
        // Without `paths`, every path that reaches the Worker and is not its API.
        let d = compile_str(r#"{"delivery": {"origin": "http://127.0.0.1:9000"}}"#).unwrap().delivery.unwrap();
        assert!(d.proxies("/") && d.proxies("/any/page.html"));
        assert_eq!(d.timeout, 10_000, "the origin gets 10 s to begin answering unless configured");
        let d = compile_str(r#"{"delivery": {"origin": "http://127.0.0.1:9000", "timeout": "3s"}}"#).unwrap();
        assert_eq!(d.delivery.unwrap().timeout, 3_000);
    }

    #[test]
    fn delivery_problems_are_reported_with_their_paths() {
        let got = errors(
            r#"{"delivery": {"origin": "https://example.com/shop", "paths": ["/ok/*", "shop", "/a/../b", 3, "/v1/*"],
                             "cache": true}}"#,
        );
        for e in [
            "delivery.origin: expected an origin such as \"https://www.example.com\"",
            "delivery.paths[1]: a path starts with \"/\"",
            "delivery.paths[2]: a path has no \".\" or \"..\" segments",
            "delivery.paths[3]: expected a path",
            "delivery.paths[4]: /v1/* and /healthz are the Worker's own API",
            "delivery.cache: unknown field",
        ] {
            assert!(got.iter().any(|g| g.starts_with(e)), "missing {e:?} in {got:#?}");
        }
        assert_eq!(got.len(), 6, "{got:#?}");
        for (doc, e) in [
            (r#"{"delivery": {}}"#, "delivery.origin: is required"),
            (r#"{"delivery": {"origin": "ftp://example.com"}}"#, "delivery.origin: expected an origin"),
            (r#"{"delivery": {"origin": "https://a@example.com"}}"#, "delivery.origin: expected an origin"),
            (r#"{"delivery": {"origin": 7}}"#, "delivery.origin: expected a string"),
            (
                r#"{"delivery": {"origin": "https://example.com", "paths": []}}"#,
                "delivery.paths: expected at least one",
            ),
            (
                r#"{"delivery": {"origin": "https://example.com", "paths": "/shop/*"}}"#,
                "delivery.paths: expected an array",
            ),
            (r#"{"delivery": "https://example.com"}"#, "delivery: expected an object"),
            (
                r#"{"delivery": {"origin": "https://example.com", "timeout": "2m"}}"#,
                "delivery.timeout: at most \"60s\"",
            ),
            (
                r#"{"delivery": {"origin": "https://example.com", "timeout": 5}}"#,
                "delivery.timeout: expected a duration",
            ),
        ] {
            let got = errors(doc);
            assert!(got.len() == 1 && got[0].starts_with(e), "{doc}: expected {e:?}, got {got:#?}");
        }
    }
}
