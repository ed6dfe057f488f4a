//! The consent section, compiled into the model's `ConsentPolicy`.

use crate::core::rules::compiler::{at, present, Compiler};
use serde_json::Value as J;

use crate::core::model::consent::{ConsentPolicy, Model, Purpose};
use crate::core::model::context::is_country_code;
use crate::core::model::tcf::{mask, Basis, TcfPolicy};

/// The highest TCF purpose id (TCF v2.2 and v2.3 define 1 to 11).
const MAX_TCF_PURPOSE: i64 = 11;

impl Compiler {
    pub(crate) fn model(&mut self, v: &J, path: &str) -> Option<Model> {
        match v.as_str() {
            Some("opt-in") => Some(Model::OptIn),
            Some("opt-out") => Some(Model::OptOut),
            _ => {
                self.err(path, "expected \"opt-in\" or \"opt-out\"");
                None
            }
        }
    }

    pub(crate) fn purpose(&mut self, v: &J, path: &str) -> Option<Purpose> {
        match v.as_str().and_then(Purpose::parse) {
            Some(p) => Some(p),
            None => {
                self.err(path, "expected one of: necessary, analytics, personalization, advertising");
                None
            }
        }
    }

    pub(crate) fn consent(&mut self, v: &J, path: &str) -> ConsentPolicy {
        let mut policy = ConsentPolicy::default();
        let Some(o) = self.object(v, path, &["model", "regions", "honorGpc", "categories", "tcf"]) else {
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
        if let Some(t) = present(o, "tcf") {
            policy.tcf = self.tcf(t, &at(path, "tcf"));
        }
        policy
    }

    /// `consent.tcf`: `false`, or which TCF purposes grant each purpose (the ones left out keep their
    /// defaults, `TcfPolicy::DEFAULT`), where they are read, edgecdp's vendor id, whether legitimate interest
    /// counts, and how old a string may be.
    fn tcf(&mut self, v: &J, path: &str) -> TcfPolicy {
        let mut tcf = TcfPolicy::DEFAULT;
        if v.as_bool() == Some(false) {
            tcf.enabled = false;
            return tcf;
        }
        let allowed = ["purposes", "basis", "vendorId", "legitimateInterests", "maxAge"];
        let Some(o) = self.object(v, path, &allowed) else {
            return tcf;
        };
        if let Some(p) = present(o, "purposes") {
            let pp = at(path, "purposes");
            let names = ["analytics", "personalization", "advertising", "marketing"];
            if let Some(map) = self.object(p, &pp, &names) {
                for (i, name) in names.iter().enumerate() {
                    let Some(list) = present(map, name) else { continue };
                    let lp = at(&pp, name);
                    let Some(items) = self.array(list, &lp) else { continue };
                    let mut ids = Vec::new();
                    for (j, id) in items.iter().enumerate() {
                        if let Some(id) =
                            self.integer(id, &crate::core::rules::compiler::idx(&lp, j), 1, MAX_TCF_PURPOSE)
                        {
                            ids.push(id as u8);
                        }
                    }
                    tcf.purposes[i] = mask(&ids);
                }
            }
        }
        if let Some(b) = present(o, "basis") {
            match b.as_str() {
                Some("purposes") => tcf.basis = Basis::Purposes,
                Some("publisher") => tcf.basis = Basis::Publisher,
                _ => self.err(at(path, "basis"), "expected \"purposes\" or \"publisher\""),
            }
        }
        if let Some(id) = present(o, "vendorId") {
            tcf.vendor = self.integer(id, &at(path, "vendorId"), 1, i64::from(u16::MAX)).map(|id| id as u16);
        }
        if let Some(li) = present(o, "legitimateInterests") {
            if let Some(li) = self.boolean(li, &at(path, "legitimateInterests")) {
                tcf.legitimate_interests = li;
            }
        }
        if let Some(age) = present(o, "maxAge") {
            if let Some(age) = self.duration(age, &at(path, "maxAge")) {
                tcf.max_age = age;
            }
        }
        tcf
    }
}
