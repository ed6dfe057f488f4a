//! The consent section, compiled into the model's `ConsentPolicy`.

use crate::core::rules::compiler::{at, present, Compiler};
use serde_json::Value as J;

use crate::core::model::consent::{ConsentPolicy, Model, Purpose};
use crate::core::model::context::is_country_code;

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
}
