//! The site configuration: JSON in, compiled runtime rules out.
//!
//! The configuration type here is the JSON document itself: compiling walks it once and reports every
//! problem with its JSON path (`segments[3].when.count: expected a number`) instead of stopping at the first,
//! which a serde-derived intermediate type could not do. What comes out (`Config`) holds only checked,
//! ready-to-run rules, so evaluation never fails.

use crate::core::consent::{ConsentPolicy, Model, Purpose};
use crate::core::context::{is_country_code, Device};
use crate::core::decide::{Block, Cap, Experiment, Goal, Slot, Variant};
use crate::core::delivery::{parse_origin, Delivery, PathPattern, DEFAULT_ORIGIN_TIMEOUT, MAX_ORIGIN_TIMEOUT};
use crate::core::identity::constant_time_eq;
use crate::core::segment::{
    series_for, Cmp, ComputedTrait, Condition, PropertyFilter, Score, ScoreRule, ScoreSource, Segment, TraitTest,
};
use crate::core::template::Template;
use crate::core::time::{parse_duration, parse_iso8601};
use crate::core::trust::{is_key_digest, key_digest, key_matches, Proof};
use crate::core::value::Value;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as J};
use std::collections::{BTreeMap, BTreeSet};

/// One problem in a configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A place events come from, and how far its word is believed.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub id: String,
    pub kind: SourceKind,
    /// Browser origins allowed to send with this key (`*` allows any); a server source lists none.
    pub origins: Vec<String>,
}

/// The two kinds of source. A configuration written before there were kinds has browser sources only: their
/// write keys were always public, so nothing they said about identity was ever proven.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// A page's snippet: the write key is public (it is in the page), so identity claims count only with proof
    /// (`core::trust`), unless the configuration turns that off explicitly (`identityProof: "off"`).
    Browser { write_key: String, identity_proof: Proof },
    /// A site's backend or CMS: the key is a secret, kept here only as its digest (`trust::key_digest`); it is
    /// refused from any request that carries a browser `Origin`, and what the source says is believed.
    Server { key_digest: String },
}

impl Source {
    pub fn allows_origin(&self, origin: &str) -> bool {
        matches!(self.kind, SourceKind::Browser { .. })
            && self.origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    pub fn is_server(&self) -> bool {
        matches!(self.kind, SourceKind::Server { .. })
    }
}

/// The shortest server key accepted: shorter ones could be guessed, and with one any identity claimed.
pub const MIN_SERVER_KEY_CHARS: usize = 24;

/// Replaces every server source's clear `key` with its `keyHash`, so that the configuration is stored (and
/// shown by `GET /v1/config`) without the secret. Runs before a configuration is stored and before one is shown.
pub fn seal_server_keys(doc: &mut J) {
    let Some(sources) = doc.get_mut("sources").and_then(J::as_array_mut) else { return };
    for source in sources.iter_mut().filter_map(J::as_object_mut) {
        if let Some(J::String(key)) = source.get("key") {
            let digest = key_digest(key);
            source.remove("key");
            source.insert("keyHash".into(), J::String(digest));
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct IdRule {
    pub limit: u32,
    pub priority: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IdentityRules {
    pub identifiers: BTreeMap<String, IdRule>,
    pub blocklist: Vec<String>,
}

impl IdentityRules {
    /// No identifiers and no blocklist: what a device's rules carry (they never resolve identities).
    fn none() -> Self {
        IdentityRules { identifiers: BTreeMap::new(), blocklist: Vec::new() }
    }
}

impl Default for IdentityRules {
    fn default() -> Self {
        let rule = |limit, priority| IdRule { limit, priority };
        // Inserted, not collected: collecting links a sort into every build that defaults a configuration.
        let mut identifiers = BTreeMap::new();
        identifiers.insert("user_id".to_string(), rule(1, 1));
        identifiers.insert("email".to_string(), rule(5, 2));
        identifiers.insert("anonymous_id".to_string(), rule(100, 9));
        IdentityRules {
            identifiers,
            blocklist: ["null", "undefined", "0", "-1", "anonymous"].iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The compiled configuration.
///
/// Its binary form (`store::encode_rules`, serde) is what a device decides with: only the decision rules travel,
/// so the fields that are the edge's business alone (sources and their write keys, identity rules, retention,
/// hashed traits, delivery) are skipped and come back empty (retention at its default). See `Config::for_device`.
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
    pub slots: BTreeMap<String, Slot>,
    /// Edge HTML delivery (`delivery`): the origin the Worker proxies pages from, and which paths. `None` (the
    /// default): the Worker proxies nothing.
    #[serde(skip)]
    pub delivery: Option<Delivery>,
    /// `demo.signIn`: the demo shop's sign-in route (`POST /v1/demo/identity-token`), which hands any visitor a
    /// token for any user id. Only a demo may turn it on; the Worker warns at every load when it is on.
    #[serde(skip)]
    pub demo_sign_in: bool,
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
            slots: BTreeMap::new(),
            delivery: None,
            demo_sign_in: false,
        }
    }
}

impl Config {
    /// The rules a device decides with for a visitor from `country`: the decision sections as they are, and a
    /// consent policy already resolved for that country (its model, whether GPC is honoured, and only the CMP
    /// categories that stand for personalization), so the regions list and the other categories stay at the
    /// edge. The edge-only fields are emptied too, though the binary form skips them anyway.
    pub fn for_device(&self, country: Option<&str>) -> Config {
        let consent = ConsentPolicy {
            model: self.consent.model_for(country),
            regions: BTreeMap::new(),
            honor_gpc: self.consent.honor_gpc,
            categories: self
                .consent
                .categories
                .iter()
                .filter(|(_, p)| **p == Purpose::Personalization)
                .map(|(c, p)| (c.clone(), *p))
                .collect(),
        };
        Config {
            consent,
            computed: self.computed.clone(),
            scores: self.scores.clone(),
            segments: self.segments.clone(),
            segment_order: self.segment_order.clone(),
            slots: self.slots.clone(),
            ..Config::default()
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
    let mut c = Compiler {
        errors: Vec::new(),
        computed: Vec::new(),
        scores: Vec::new(),
        in_score: false,
        experiment_ids: BTreeSet::new(),
    };
    let mut config = Config::default();
    let keys = [
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
    ];
    if let Some(root) = c.object(doc, "", &keys) {
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
    }
    if c.errors.is_empty() {
        Ok(config)
    } else {
        Err(c.errors)
    }
}

/// A key that is present and not `null` (a `null` section means "use the default").
fn present<'a>(o: &'a Map<String, J>, key: &str) -> Option<&'a J> {
    o.get(key).filter(|v| !v.is_null())
}

fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

const CONDITION_KINDS: [&str; 17] = [
    "event",
    "computed",
    "score",
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

struct Compiler {
    errors: Vec<ConfigError>,
    /// The computed traits compiled so far, which conditions may name.
    computed: Vec<ComputedTrait>,
    /// The ids of the scores compiled so far, which segment conditions may name.
    scores: Vec<String>,
    /// Set while compiling a score's rules, which may not name segments or scores (no cycles).
    in_score: bool,
    experiment_ids: BTreeSet<String>,
}

impl Compiler {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }

    fn object<'a>(&mut self, v: &'a J, path: &str, allowed: &[&str]) -> Option<&'a Map<String, J>> {
        match v {
            J::Object(o) => {
                for k in o.keys() {
                    if !allowed.contains(&k.as_str()) {
                        self.err(at(path, k), format!("unknown field; expected one of: {}", allowed.join(", ")));
                    }
                }
                Some(o)
            }
            _ => {
                self.err(path, "expected an object");
                None
            }
        }
    }

    fn array<'a>(&mut self, v: &'a J, path: &str) -> Option<&'a Vec<J>> {
        match v {
            J::Array(a) => Some(a),
            _ => {
                self.err(path, "expected an array");
                None
            }
        }
    }

    fn string(&mut self, v: Option<&J>, path: &str) -> Option<String> {
        match v {
            Some(J::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(J::String(_)) => {
                self.err(path, "must not be empty");
                None
            }
            None | Some(J::Null) => {
                self.err(path, "is required");
                None
            }
            Some(_) => {
                self.err(path, "expected a string");
                None
            }
        }
    }

    fn id(&mut self, v: Option<&J>, path: &str) -> Option<String> {
        let s = self.string(v, path)?;
        if is_id(&s) {
            Some(s)
        } else {
            self.err(path, "an id is 1 to 128 letters, digits, '-', '_' or '.'");
            None
        }
    }

    fn number(&mut self, v: &J, path: &str) -> Option<f64> {
        match v.as_f64() {
            Some(n) => Some(n),
            None => {
                self.err(path, "expected a number");
                None
            }
        }
    }

    fn integer(&mut self, v: &J, path: &str, min: i64, max: i64) -> Option<i64> {
        match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.err(path, format!("must be between {min} and {max}"));
                None
            }
            None => {
                self.err(path, "expected a whole number");
                None
            }
        }
    }

    fn boolean(&mut self, v: &J, path: &str) -> Option<bool> {
        match v {
            J::Bool(b) => Some(*b),
            _ => {
                self.err(path, "expected true or false");
                None
            }
        }
    }

    fn duration(&mut self, v: &J, path: &str) -> Option<i64> {
        match v.as_str().and_then(parse_duration) {
            Some(d) => Some(d),
            None => {
                self.err(path, "expected a duration such as \"30m\", \"12h\", \"7d\" or \"4w\"");
                None
            }
        }
    }

    fn time(&mut self, v: &J, path: &str) -> Option<i64> {
        match v.as_str().and_then(parse_iso8601) {
            Some(t) => Some(t),
            None => {
                self.err(path, "expected an ISO 8601 date-time");
                None
            }
        }
    }

    fn scalar(&mut self, v: &J, path: &str) -> Option<Value> {
        match v {
            J::String(_) | J::Number(_) | J::Bool(_) => Some(Value::from_json(v)),
            _ => {
                self.err(path, "expected a string, number or boolean");
                None
            }
        }
    }

    fn model(&mut self, v: &J, path: &str) -> Option<Model> {
        match v.as_str() {
            Some("opt-in") => Some(Model::OptIn),
            Some("opt-out") => Some(Model::OptOut),
            _ => {
                self.err(path, "expected \"opt-in\" or \"opt-out\"");
                None
            }
        }
    }

    fn purpose(&mut self, v: &J, path: &str) -> Option<Purpose> {
        match v.as_str().and_then(Purpose::parse) {
            Some(p) => Some(p),
            None => {
                self.err(path, "expected one of: necessary, analytics, personalization, advertising");
                None
            }
        }
    }

    fn sources(&mut self, v: &J, path: &str) -> Vec<Source> {
        let mut out: Vec<Source> = Vec::new();
        let fields = ["id", "type", "writeKey", "origins", "identityProof", "key", "keyHash"];
        for (i, s) in self.array(v, path).into_iter().flatten().enumerate() {
            let p = idx(path, i);
            let Some(o) = self.object(s, &p, &fields) else {
                continue;
            };
            let id = self.id(o.get("id"), &at(&p, "id"));
            let kind = match o.get("type").map(|t| t.as_str()) {
                None | Some(Some("browser")) => self.browser_source(o, &p),
                Some(Some("server")) => self.server_source(o, &p),
                Some(_) => {
                    self.err(at(&p, "type"), "expected \"browser\" (a page's snippet, public write key) or \"server\" (a backend, secret key)");
                    None
                }
            };
            let mut origins = Vec::new();
            if let Some(list) = present(o, "origins") {
                for (j, origin) in self.array(list, &at(&p, "origins")).into_iter().flatten().enumerate() {
                    let op = idx(&at(&p, "origins"), j);
                    match origin.as_str() {
                        Some(s)
                            if s == "*"
                                || ((s.starts_with("http://") || s.starts_with("https://")) && !s.ends_with('/')) =>
                        {
                            origins.push(s.to_string())
                        }
                        _ => self.err(
                            op,
                            "expected an origin such as \"https://shop.example\" (scheme and host, no path) or \"*\"",
                        ),
                    }
                }
            }
            let Some(kind) = kind else { continue };
            if matches!(kind, SourceKind::Server { .. }) && !origins.is_empty() {
                self.err(at(&p, "origins"), "a server source is never used from a browser, so it lists no origins");
                continue;
            }
            let Some(id) = id else { continue };
            if out.iter().any(|s| s.id == id) {
                self.err(at(&p, "id"), format!("duplicate source id {id:?}"));
                continue;
            }
            let clash = out.iter().any(|other| match (&other.kind, &kind) {
                (SourceKind::Browser { write_key: a, .. }, SourceKind::Browser { write_key: b, .. }) => a == b,
                (SourceKind::Browser { write_key, .. }, SourceKind::Server { key_digest })
                | (SourceKind::Server { key_digest }, SourceKind::Browser { write_key, .. }) => {
                    key_matches(write_key, key_digest)
                }
                (SourceKind::Server { key_digest: a }, SourceKind::Server { key_digest: b }) => a == b,
            });
            if clash {
                let field = if matches!(kind, SourceKind::Server { .. }) { "key" } else { "writeKey" };
                self.err(at(&p, field), "another source has the same key");
            } else {
                out.push(Source { id, kind, origins });
            }
        }
        out
    }

    fn browser_source(&mut self, o: &Map<String, J>, p: &str) -> Option<SourceKind> {
        for secret in ["key", "keyHash"] {
            if o.contains_key(secret) {
                self.err(at(p, secret), "only a server source has a secret key (\"type\": \"server\")");
            }
        }
        let write_key = self.string(o.get("writeKey"), &at(p, "writeKey"));
        let identity_proof = match present(o, "identityProof").map(|v| v.as_str()) {
            None | Some(Some("required")) => Proof::Required,
            Some(Some("off")) => Proof::Off,
            Some(_) => {
                self.err(at(p, "identityProof"), "expected \"required\" (the default) or \"off\"");
                Proof::Required
            }
        };
        Some(SourceKind::Browser { write_key: write_key?, identity_proof })
    }

    fn server_source(&mut self, o: &Map<String, J>, p: &str) -> Option<SourceKind> {
        for browser_only in ["writeKey", "identityProof"] {
            if o.contains_key(browser_only) {
                self.err(at(p, browser_only), "a server source has a secret key, not a public write key");
            }
        }
        match (o.get("key"), o.get("keyHash")) {
            (Some(J::String(k)), None) if k.chars().count() >= MIN_SERVER_KEY_CHARS => {
                Some(SourceKind::Server { key_digest: key_digest(k) })
            }
            (Some(_), None) => {
                self.err(
                    at(p, "key"),
                    format!("a server key is a string of at least {MIN_SERVER_KEY_CHARS} random characters"),
                );
                None
            }
            (None, Some(J::String(d))) if is_key_digest(d) => {
                Some(SourceKind::Server { key_digest: d.to_ascii_lowercase() })
            }
            (None, Some(_)) => {
                self.err(at(p, "keyHash"), "expected \"sha256:\" and 64 hex digits (the SHA-256 of the key)");
                None
            }
            (Some(_), Some(_)) => {
                self.err(at(p, "key"), "give key or keyHash, not both");
                None
            }
            (None, None) => {
                self.err(at(p, "key"), "is required: the secret key (stored only as its hash) or keyHash");
                None
            }
        }
    }

    fn consent(&mut self, v: &J, path: &str) -> ConsentPolicy {
        let mut policy = ConsentPolicy::default();
        let Some(o) = self.object(v, path, &["model", "regions", "honorGpc", "categories"]) else {
            return policy;
        };
        if let Some(m) = present(o, "model") {
            if let Some(m) = self.model(m, &at(path, "model")) {
                policy.model = m;
            }
        }
        if let Some(r) = present(o, "regions") {
            let rp = at(path, "regions");
            if let Some(map) = self.object(r, &rp, &[]).and_then(|_| r.as_object()) {
                // `object` with no allowed keys reported every key as unknown; take those reports back, since
                // any country code is allowed here, and check the codes instead.
                self.errors.retain(|e| !e.path.starts_with(&format!("{rp}.")));
                for (country, m) in map {
                    let cp = at(&rp, country);
                    if !is_country_code(country) {
                        self.err(&cp, "expected a two-letter upper-case country code (ISO 3166-1 alpha-2)");
                    } else if let Some(m) = self.model(m, &cp) {
                        policy.regions.insert(country.clone(), m);
                    }
                }
            }
        }
        if let Some(g) = present(o, "honorGpc") {
            if let Some(b) = self.boolean(g, &at(path, "honorGpc")) {
                policy.honor_gpc = b;
            }
        }
        if let Some(cats) = present(o, "categories") {
            let cp = at(path, "categories");
            match cats.as_object() {
                Some(map) => {
                    for (cat, purpose) in map {
                        if let Some(p) = self.purpose(purpose, &at(&cp, cat)) {
                            policy.categories.insert(cat.clone(), p);
                        }
                    }
                }
                None => self.err(cp, "expected an object of category to purpose"),
            }
        }
        policy
    }

    fn identity(&mut self, v: &J, path: &str) -> IdentityRules {
        let mut rules = IdentityRules::default();
        let Some(o) = self.object(v, path, &["identifiers", "blocklist"]) else {
            return rules;
        };
        if let Some(ids) = present(o, "identifiers") {
            let ip = at(path, "identifiers");
            match ids.as_object() {
                Some(map) => {
                    for (kind, rule) in map {
                        let rp = at(&ip, kind);
                        if kind.is_empty()
                            || !kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                        {
                            self.err(&rp, "an identifier type is lower-case letters, digits and '_'");
                            continue;
                        }
                        let Some(r) = self.object(rule, &rp, &["limit", "priority"]) else {
                            continue;
                        };
                        let limit = match present(r, "limit") {
                            Some(l) => self.integer(l, &at(&rp, "limit"), 1, 1000).map(|n| n as u32),
                            None => Some(rules.identifiers.get(kind).map_or(1, |d| d.limit)),
                        };
                        let priority = match present(r, "priority") {
                            Some(p) => self.integer(p, &at(&rp, "priority"), 0, 1000),
                            None => Some(rules.identifiers.get(kind).map_or(5, |d| d.priority)),
                        };
                        if let (Some(limit), Some(priority)) = (limit, priority) {
                            rules.identifiers.insert(kind.clone(), IdRule { limit, priority });
                        }
                    }
                }
                None => self.err(ip, "expected an object of identifier type to rule"),
            }
        }
        if let Some(b) = present(o, "blocklist") {
            let bp = at(path, "blocklist");
            let mut list = Vec::new();
            for (i, item) in self.array(b, &bp).into_iter().flatten().enumerate() {
                match item.as_str() {
                    Some(s) => list.push(s.to_string()),
                    None => self.err(idx(&bp, i), "expected a string"),
                }
            }
            rules.blocklist = list;
        }
        rules
    }

    fn segments(&mut self, v: &J, path: &str) -> (Vec<Segment>, Vec<usize>) {
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
            return (Vec::new(), Vec::new());
        }
        let order = self.segment_order(&segments, path);
        (segments, order)
    }

    /// Orders segments so that references come first, reporting cycles.
    fn segment_order(&mut self, segments: &[Segment], path: &str) -> Vec<usize> {
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
    fn filters(&mut self, o: &Map<String, J>, path: &str) -> Vec<PropertyFilter> {
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
    fn computed_traits(&mut self, v: &J, path: &str) -> Vec<ComputedTrait> {
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
    fn scores(&mut self, v: &J, path: &str) -> Vec<Score> {
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

    fn condition(&mut self, v: &J, path: &str, ids: &BTreeMap<String, usize>) -> Option<Condition> {
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
            "event" => {
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
            "computed" => {
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
            "segment" | "score" if self.in_score => {
                self.err(at(path, kind), "a score rule cannot use segments or scores");
                None
            }
            "score" => {
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
            "inactiveFor" => {
                self.object(v, path, &["inactiveFor"])?;
                Some(Condition::InactiveFor(self.duration(&o["inactiveFor"], &at(path, "inactiveFor"))?))
            }
            "identified" => {
                self.object(v, path, &["identified"])?;
                Some(Condition::Identified(self.boolean(&o["identified"], &at(path, "identified"))?))
            }
            "consent" => {
                self.object(v, path, &["consent"])?;
                Some(Condition::Consent(self.purpose(&o["consent"], &at(path, "consent"))?))
            }
            "page" => {
                self.object(v, path, &["page"])?;
                Some(Condition::Page(self.one_or_many(&o["page"], &at(path, "page"))?))
            }
            "referrer" => {
                self.object(v, path, &["referrer"])?;
                let hosts = self.one_or_many(&o["referrer"], &at(path, "referrer"))?;
                Some(Condition::Referrer(hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect()))
            }
            "utm" => {
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
            "country" => {
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
            "device" => {
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
            "localHour" => {
                self.object(v, path, &["localHour"])?;
                let hp = at(path, "localHour");
                let cmps = self.comparisons(&o["localHour"], &hp)?;
                Some(Condition::LocalHour(cmps))
            }
            "segment" => {
                self.object(v, path, &["segment"])?;
                let sp = at(path, "segment");
                let id = self.string(o.get("segment"), &sp)?;
                match ids.get(&id) {
                    Some(&i) => Some(Condition::Segment(i)),
                    None => {
                        self.err(sp, format!("unknown segment {id:?}"));
                        None
                    }
                }
            }
            "all" | "any" => {
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
            "not" => {
                self.object(v, path, &["not"])?;
                Some(Condition::Not(Box::new(self.condition(&o["not"], &at(path, "not"), ids)?)))
            }
            "trait" => {
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
            other => {
                // Every word of CONDITION_KINDS has its arm above; a word added there without one is this error.
                self.err(path, format!("condition kind {other:?} is not implemented"));
                None
            }
        }
    }

    /// The comparisons written beside a condition's kind (`{"computed": "x", "gte": 2}`); at least 1 when none.
    fn comparison_members(&mut self, o: &Map<String, J>, path: &str) -> Option<Vec<Cmp>> {
        let ops: Map<String, J> =
            CMP_OPS.iter().filter_map(|op| o.get(*op).map(|n| (op.to_string(), n.clone()))).collect();
        if ops.is_empty() {
            return Some(vec![Cmp::Gte(1.0)]);
        }
        self.comparisons(&J::Object(ops), path)
    }

    /// A non-empty string, or a non-empty list of them.
    fn one_or_many(&mut self, v: &J, path: &str) -> Option<Vec<String>> {
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

    fn comparisons(&mut self, v: &J, path: &str) -> Option<Vec<Cmp>> {
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

    fn slots(&mut self, v: &J, path: &str, segments: &BTreeMap<String, usize>) -> BTreeMap<String, Slot> {
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
            blocks.sort_by_key(|b| std::cmp::Reverse(b.priority));
            if let Some(fallback) = fallback {
                out.insert(name.clone(), Slot { fallback, blocks });
            }
        }
        out
    }

    /// `{"origin": "https://www.example.com", "paths": ["/shop/*", "/about"]}`; `paths` defaults to `["/*"]`.
    fn delivery(&mut self, v: &J, path: &str) -> Option<Delivery> {
        let o = self.object(v, path, &["origin", "paths", "timeout"])?;
        let before = self.errors.len();
        let op = at(path, "origin");
        let origin = self.string(o.get("origin"), &op).and_then(|s| match parse_origin(&s) {
            Ok(origin) => Some(origin),
            Err(message) => {
                self.err(&op, message);
                None
            }
        });
        let mut paths = Vec::new();
        match present(o, "paths") {
            None => paths.push(PathPattern::Under(String::new())),
            Some(list) => {
                let pp = at(path, "paths");
                let items = self.array(list, &pp).map(Vec::as_slice).unwrap_or_default();
                if items.is_empty() && list.is_array() {
                    self.err(&pp, "expected at least one path; leave delivery out to proxy nothing");
                }
                for (i, item) in items.iter().enumerate() {
                    let ip = idx(&pp, i);
                    match item.as_str().map(PathPattern::parse) {
                        Some(Ok(p)) => paths.push(p),
                        Some(Err(message)) => self.err(ip, message),
                        None => self.err(ip, "expected a path such as \"/shop/*\""),
                    }
                }
            }
        }
        let timeout = match present(o, "timeout") {
            None => DEFAULT_ORIGIN_TIMEOUT,
            Some(t) => {
                let tp = at(path, "timeout");
                match self.duration(t, &tp) {
                    Some(ms) if ms > MAX_ORIGIN_TIMEOUT => {
                        self.err(&tp, "at most \"60s\": a visitor should not wait longer for a page to begin");
                        DEFAULT_ORIGIN_TIMEOUT
                    }
                    Some(ms) => ms,
                    None => DEFAULT_ORIGIN_TIMEOUT,
                }
            }
        };
        (self.errors.len() == before).then_some(Delivery { origin: origin?, paths, timeout })
    }

    fn template(&mut self, v: Option<&J>, path: &str) -> Option<Template> {
        let text = match v {
            Some(J::String(s)) => s,
            None | Some(J::Null) => {
                self.err(path, "is required");
                return None;
            }
            Some(_) => {
                self.err(path, "expected a string of HTML");
                return None;
            }
        };
        match Template::compile(text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    fn block(&mut self, v: &J, path: &str, segments: &BTreeMap<String, usize>) -> Option<Block> {
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
    fn experiment(&mut self, v: &J, path: &str) -> Option<Experiment> {
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

    fn audience(&mut self, v: &J, path: &str, segments: &BTreeMap<String, usize>) -> Option<Condition> {
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
                    Some(None) => self.err(ip, format!("unknown segment {:?}", item.as_str().unwrap_or_default())),
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

    fn variants(&mut self, v: &J, path: &str) -> Option<Vec<Variant>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Every operator word of every condition kind, and what it compiles to: a word compiled to the wrong
    /// meaning (`lte` as `lt`, a trait's `ne` as `eq`) fails here even when no case exercises the boundary.
    #[test]
    fn every_operator_word_compiles_to_its_own_meaning() {
        use crate::core::segment::Condition as C;
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
        let c = compile_str(include_str!("../../tests/fixtures/contract-config.json")).unwrap();
        assert!(
            matches!(&c.sources[0].kind, SourceKind::Browser { write_key, identity_proof: Proof::Required } if write_key == "demo")
        );
        assert_eq!(c.consent.regions["US"], Model::OptOut);
        assert_eq!(c.consent.categories["C0002"], Purpose::Analytics);
        assert_eq!(c.segments.len(), 3);
        // "gold" references "bag-curious", which must be evaluated first.
        let pos = |i: usize| c.segment_order.iter().position(|&x| x == i).unwrap();
        assert!(pos(0) < pos(2));
        assert_eq!(c.slots["hero"].blocks[0].variants.len(), 2);
        assert_eq!(c.slots["hero"].blocks[0].cap, Some(Cap { max: 3, per: crate::core::time::DAY }));
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
        compile_str(include_str!("../../config/demo.json")).unwrap();
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
        assert_eq!(c.computed[0].window, Some(7 * crate::core::time::DAY));
        match &c.segments[0].when {
            Condition::EventCount { event, filters, count, window, .. } => {
                assert_eq!(event, "Product Viewed");
                assert_eq!(filters[0].property, "category");
                assert_eq!(count, &vec![Cmp::Gte(2.0)]);
                assert_eq!(*window, Some(7 * crate::core::time::DAY));
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
        assert_eq!(c.scores[0].half_life, Some(7 * crate::core::time::DAY));
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
