//! The browser decide module (feature `browser-decide`): the core's decision engine for the device, so that
//! sites that are static files can fill their slots without a server of their own (delivery way 3).
//!
//! It is a second Wasm module, separate from the tracker (`src/browser/`): `js/slots.js` loads it only on
//! pages that have slots and only when personalization is allowed, so no other visitor downloads it. It
//! loads the compiled rules that `GET /v1/decide/summary` answers, once, and decides on the profile
//! summary from the same answer with `core::engine::decide::decide`, behind `core::model::consent::permit_personalization`:
//! the same answer as `POST /v1/decide` for the same profile, configuration, context and time. No I/O, no
//! clock: the JavaScript passes the time in.

use crate::core::base::time::Millis;
use crate::core::engine::decide::decide;
use crate::core::model::consent::{permit_personalization, RequestSignals};
use crate::core::model::profile::Profile;
use crate::core::model::shown::Impression;
use crate::core::rules::Config;
use crate::core::store;
use crate::core::store::summary;
use crate::core::wire::decide::decide_request;
use crate::core::wire::BodyError;
use js_sys::{Error, Reflect};
use wasm_bindgen::prelude::*;

/// A compiled configuration, ready to decide.
#[wasm_bindgen]
pub struct Engine {
    config: Config,
    /// What the last decision served that must be recorded at the edge (`Decision::impressions`).
    last: Vec<Impression>,
    /// The last summary read (its text and the profile), with what this page has served since recorded on it:
    /// a page that decides again sees its own impressions, as the edge would, and decodes the summary once.
    summary: Option<(String, Profile)>,
}

#[wasm_bindgen]
impl Engine {
    /// Loads the decision rules of a summary (`rules`: base64 of `Config::for_device`'s binary form, compiled
    /// at the edge, so the device needs no configuration compiler). Throws an `Error` with `code`
    /// `invalid_rules` and `path` `rules` when they cannot be read (say, a module older than the Worker).
    #[wasm_bindgen(constructor)]
    pub fn new(rules: &str) -> Result<Engine, JsValue> {
        let bytes = crate::core::base::encoding::base64_decode(rules)
            .ok_or_else(|| error("invalid_rules", "rules", "rules are not base64"))?;
        let config = store::decode_rules(&bytes).map_err(|e| error("invalid_rules", "rules", &e.to_string()))?;
        Ok(Engine { config, last: Vec::new(), summary: None })
    }

    /// Decides `request` (a `POST /v1/decide` body as a JavaScript object: `slots` and `context`, read by the
    /// edge's rules through `core::base::json::JsonView`) for the visitor whose summary is `profile` (base64, or
    /// `null`: no profile or no personalization consent) at `now` (milliseconds since 1970). `country` is the
    /// summary's (the request's own country, which chooses the consent model) and `gpc` the browser's Global
    /// Privacy Control signal. Answers the JSON text of `/v1/decide`'s answer. Throws an `Error` with `code`
    /// and `path` for a bad request or summary.
    pub fn decide(
        &mut self,
        profile: Option<String>,
        request: JsValue,
        country: Option<String>,
        gpc: bool,
        now: f64,
    ) -> Result<String, JsValue> {
        let request = decide_request(request).map_err(|e| {
            let code = e.code();
            match e {
                BodyError::Shape { path, message } => error(code, &path, &message),
                _ => error(code, "", "the request is not an object"),
            }
        })?;
        let profile = match profile {
            None => None,
            Some(text) => {
                if self.summary.as_ref().is_none_or(|(seen, _)| *seen != text) {
                    let p = summary::decode(&text).map_err(|e| error("invalid_summary", "profile", &e.to_string()))?;
                    self.summary = Some((text, p));
                }
                self.summary.as_ref().map(|(_, p)| p)
            }
        };
        let signals = RequestSignals { country, gpc, utc_offset_minutes: None, tcf: None };
        let subject =
            profile.and_then(|p| permit_personalization(&self.config.consent, p, request.consent.as_ref(), &signals));
        // As at the edge: the request's `context.location.country` is for decisions, the consent model follows
        // the request's own country.
        let mut cx = request.context();
        cx.country = cx.country.or(signals.country);
        let decision = decide(&self.config, subject, &cx, &request.slots, now as Millis);
        self.last = decision.impressions(now as Millis);
        if let Some((_, p)) = self.summary.as_mut().filter(|_| decision.profile_id.is_some()) {
            p.shown.record(&self.last);
        }
        Ok(decision.to_json_text())
    }

    /// The JSON text of what the last decision served that caps or experiments count
    /// (`[{block, variant, experiment}]`), the body of `POST /v1/impressions` without the ids; `[]` for none.
    pub fn impressions(&self) -> String {
        let list: Vec<serde_json::Value> = self
            .last
            .iter()
            .map(|i| {
                let mut o = serde_json::json!({"block": i.block, "variant": i.variant});
                if let Some(e) = &i.experiment {
                    o["experiment"] = e.as_str().into();
                }
                o
            })
            .collect();
        serde_json::Value::from(list).to_string()
    }
}

fn set(target: &JsValue, key: &str, value: &JsValue) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(target, &key.into(), value);
}

fn error(code: &str, path: &str, message: &str) -> Error {
    let e = Error::new(message);
    set(&e, "code", &code.into());
    set(&e, "path", &path.into());
    e
}
