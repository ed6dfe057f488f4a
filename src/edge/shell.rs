//! What the JavaScript shell (`js/edge.js`) calls synchronously: a visitor's request (a decision, `POST` and `GET
//! /v1/decide`; a device program, `GET /v1/decide/summary`; impressions to record, `POST /v1/impressions`) whose
//! reads and calls the shell carries out itself, with the runtime's own KV and Durable Object bindings, while
//! every rule runs here (`visiting::Deciding`, the same steps the Rust Worker drives). Measured
//! (BENCHMARKS.md, "The shell's decision"): a warm decision 4–6% lighter than through workers-rs, a new isolate's
//! first one a fifth faster.
//!
//! Who may call: the shell, for a request it would otherwise hand to the Rust Worker; the rules that follow
//! (origin, caller, consent) are the Rust Worker's. The shell hands the request to the Rust Worker instead when
//! `DecideStep::load` cannot compile the configuration in force from `config:latest` (a newer version is being
//! stored, or the stored one no longer compiles), when the body is compressed or declares no length or too large
//! a one, and for `?explain` (an operator's credential is checked there).

use crate::core::rules::Config;
use crate::core::wire;
use crate::core::writer::client::{Need, Steps};
use crate::core::writer::protocol::Request as ObjectRequest;
use crate::edge::error::ApiError;
use crate::edge::kv;
use crate::edge::visiting::{decide_get_request, decide_query, Answer, Deciding};
use std::rc::Rc;
use worker::wasm_bindgen::prelude::*;
use worker::web_sys;
use worker::Env;

/// One visitor's request, between the shell's reads. `kind` says what it needs next: 0 the answer is ready
/// (`head` and `payload`, or `response` for an error), 1 the text of KV key `key` (`text`), 2 its bytes (`bytes`), 3 the answer of the profile object
/// `key` to `body`, sent with the `x-edgecdp-config-version` header `version` when there is one (`answer`).
#[wasm_bindgen]
pub struct DecideStep {
    config: Option<(u64, Rc<Config>)>,
    deciding: Option<Deciding>,
    /// Why the request ended without an answer.
    over: Option<ApiError>,
    /// The answer, once `head` took it.
    answer: Option<Answer>,
    warnings: Option<String>,
    next: Next,
}

impl DecideStep {
    fn of(config: kv::InForce, warnings: Option<String>) -> DecideStep {
        DecideStep { config: Some(config), deciding: None, over: None, answer: None, warnings, next: Next::default() }
    }
}

/// The step `kind` worked out: what the shell reads next.
#[derive(Default)]
struct Next {
    key: String,
    body: Vec<u8>,
    version: Option<String>,
}

#[wasm_bindgen]
impl DecideStep {
    /// A decision under the configuration `current` (`config:current`'s text) names, when this isolate has it
    /// compiled and its fitted model fresh (`kv::cached_config`); `undefined` otherwise.
    pub fn ready(current: Option<String>) -> Option<DecideStep> {
        let config = kv::cached_config(current.as_deref())?;
        Some(DecideStep::of(config, None))
    }

    /// Whether this isolate has compiled no configuration yet: the shell then reads `config:current`,
    /// `config:latest` and `predictions:model` at once, and calls `load`.
    pub fn cold() -> bool {
        kv::is_cold()
    }

    /// `ready`, once the shell has read the three keys (`kv::loaded_config`, which compiles the configuration
    /// as `kv::config` does); `undefined` when the Rust Worker must read more (`config:v<N>`) or answer.
    pub fn load(current: Option<String>, latest: Option<String>, model: Option<String>) -> Option<DecideStep> {
        let (config, warnings) = kv::loaded_config(current.as_deref(), latest.as_deref(), model)?;
        Some(DecideStep::of(config, warnings))
    }

    /// What the configuration's load has to say in the log (`kv::compiled`: settings that weaken the trust
    /// rules), which the shell says once the answer is out.
    pub fn warnings(&mut self) -> Option<String> {
        self.warnings.take()
    }

    /// The largest body a decision reads (`core::wire::MAX_EVENT_BYTES`).
    pub fn limit() -> usize {
        wire::MAX_EVENT_BYTES
    }

    /// Starts `request`: `POST` or `GET /v1/decide`, `GET /v1/decide/summary` or `POST /v1/impressions`, with the
    /// body the shell read (`body`; empty for a `GET`).
    pub fn start(&mut self, request: web_sys::Request, env: Env, body: &[u8]) {
        let Some((version, config)) = self.config.take() else { return };
        let req = worker::Request::from(request);
        let started = match (req.method(), req.path().as_str()) {
            (worker::Method::Get, "/v1/decide/summary") => {
                decide_query(&req).and_then(|asked| Deciding::summary(&req, &env, version, config, asked))
            }
            (worker::Method::Post, "/v1/impressions") => Deciding::impressions(&req, &env, version, config, body),
            (worker::Method::Get, _) => {
                decide_get_request(&req).and_then(|asked| Deciding::decision(&req, &env, version, config, asked))
            }
            _ => wire::decide::parse_decide(body)
                .map_err(ApiError::Body)
                .and_then(|asked| Deciding::decision(&req, &env, version, config, asked)),
        };
        match started {
            Ok(d) if d.explaining => self.over = Some(ApiError::Unavailable("explain goes to the Rust Worker".into())),
            Ok(d) => self.deciding = Some(d),
            Err(e) => self.over = Some(e),
        }
    }

    /// What the next step needs, worked out once per step: its key, body and version are then read by `key`,
    /// `body` and `version`.
    pub fn kind(&mut self) -> u8 {
        let Some(d) = &self.deciding else { return 0 };
        let (kind, key, body, version) = match d.need() {
            Need::Text(k) => (1, k, Vec::new(), None),
            Need::Bytes(k) => (2, k, Vec::new(), None),
            Need::Object(f) => {
                let apply = matches!(f.request(), ObjectRequest::Apply(_));
                (3, f.at().to_string(), f.body(), apply.then(|| d.version.to_string()))
            }
            Need::Done => (0, String::new(), Vec::new(), None),
        };
        self.next = Next { key, body, version };
        kind
    }

    /// The KV key asked for (kinds 1 and 2), or the profile whose object is asked (kind 3).
    pub fn key(&mut self) -> String {
        std::mem::take(&mut self.next.key)
    }

    /// What the object is sent (kind 3).
    pub fn body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.next.body)
    }

    /// The configuration version an apply names to the object (kind 3), as `profile_client::send` names it.
    pub fn version(&mut self) -> Option<String> {
        self.next.version.take()
    }

    pub fn text(&mut self, value: Option<String>) {
        if let Some(d) = &mut self.deciding {
            d.text(value);
        }
    }

    pub fn bytes(&mut self, value: Option<Vec<u8>>) {
        if let Some(d) = &mut self.deciding {
            let _ = d.bytes(value.as_deref());
        }
    }

    pub fn answer(&mut self, status: u16, bytes: &[u8]) {
        if let Some(d) = &mut self.deciding {
            let _ = d.answer(status, bytes);
        }
    }

    /// A read or a call that threw: the decision ends as unavailable (503), as in the Rust Worker.
    pub fn fail(&mut self, message: String) {
        if let Some(d) = &mut self.deciding {
            d.fail(ApiError::Unavailable(message));
        }
    }

    /// The answer's headers (kind 0), one per line, the name and the value separated by a tab (a header's name
    /// holds neither, and the runtime refuses a value with a line break), for the shell to make the `Response`
    /// with the body `payload` hands over; `undefined` when the request ended in an error (`response`).
    pub fn head(&mut self) -> Option<String> {
        let result = match (self.over.take(), self.deciding.take()) {
            (Some(e), _) => Err(e),
            (None, Some(d)) => d.into_answer(),
            (None, None) => Err(ApiError::Unavailable("a decision answered twice".into())),
        };
        match result {
            Ok(answer) => {
                let lines: Vec<String> =
                    answer.headers().iter().map(|(name, value)| format!("{name}\t{value}")).collect();
                self.answer = Some(answer);
                Some(lines.join("\n"))
            }
            Err(e) => {
                self.over = Some(e);
                None
            }
        }
    }

    /// The answer's body, once `head` gave its headers.
    pub fn payload(&mut self) -> Vec<u8> {
        self.answer.take().map(|a| a.body).unwrap_or_default()
    }

    /// The error's response, when `head` gave none.
    pub fn response(&mut self) -> Result<web_sys::Response, JsValue> {
        let e = self.over.take().unwrap_or_else(|| ApiError::Unavailable("a decision answered twice".into()));
        Ok(e.into_response().map_err(JsValue::from)?.into())
    }
}
