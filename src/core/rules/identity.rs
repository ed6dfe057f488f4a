//! Identity resolution rules: which identifiers count, their limits and priorities.

use crate::core::rules::compiler::{at, idx, present, Compiler};
use serde_json::Value as J;
use std::collections::BTreeMap;

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
    pub(crate) fn none() -> Self {
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

impl Compiler {
    pub(crate) fn identity(&mut self, v: &J, path: &str) -> IdentityRules {
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
}
