//! What the JavaScript shell (`js/edge.js`) calls synchronously: a visitor's request (a decision, `POST` and `GET
//! /v1/decide`; a device program, `GET /v1/decide/summary`; impressions to record, `POST /v1/impressions`) or a
//! batch of events (`POST /v1/batch`, the single-event endpoints, RudderStack's beacon), whose reads and calls the
//! shell carries out itself, with the runtime's own KV and Durable Object bindings, while every rule runs here
//! (`visiting::Deciding` and `collecting::Collecting`, the same steps the Rust Worker drives). Measured
//! (BENCHMARKS.md, "The shell's decision" and "The shell's batch").
//!
//! Who may call: the shell, for a request it would otherwise hand to the Rust Worker; the rules that follow
//! (origin, caller, consent, write keys) are the Rust Worker's. The shell hands the request to the Rust Worker
//! instead when `ShellStep::load` cannot compile the configuration in force from `config:latest` (a newer version
//! is being stored, or the stored one no longer compiles), when the body is compressed or declares no length or
//! too large a one, and for `?explain` (an operator's credential is checked there).

use crate::core::rules::Config;
use crate::core::wire::{self, MAX_BATCH_BYTES};
use crate::core::writer::client::{Need, Steps};
use crate::core::writer::protocol::Request as ObjectRequest;
use crate::edge::collecting::Collecting;
use crate::edge::error::ApiError;
use crate::edge::kv;
use crate::edge::objects::profile_client::AT_ONCE;
use crate::edge::request::query_param;
use crate::edge::visiting::{decide_get_request, decide_query, Answer, Deciding};
use crate::edge::Resource;
use std::rc::Rc;
use worker::js_sys::{Array, Uint8Array};
use worker::wasm_bindgen::prelude::*;
use worker::web_sys;
use worker::{Env, Method};

/// One request, between the shell's reads. `kind` says what it needs next: 0 the answer is ready (`head` and
/// `payload`, or `response` for an error), 1 the text of KV key `key` (`text`), 2 its bytes (`bytes`), 3 the
/// answer of the profile object `key` to `body`, sent with the `x-edgecdp-config-version` header `version` when
/// there is one (`answer`), 4 the texts of the KV keys `keys`, read at most `at_once` at a time (`texts`), 5 the
/// answers of the profile objects `keys` to one `body`, asked at most `at_once` at a time (`replies`).
#[wasm_bindgen]
pub struct ShellStep {
    config: Option<(u64, Rc<Config>)>,
    task: Option<Task>,
    /// Why the request ended without an answer.
    over: Option<ApiError>,
    /// The answer, once `head` took it.
    answer: Option<Answer>,
    warnings: Option<String>,
    next: Next,
}

/// What the shell carries out: a visitor's request or a batch.
enum Task {
    Deciding(Box<Deciding>),
    Collecting(Box<Collecting>),
}

impl Task {
    fn steps(&mut self) -> &mut dyn Steps<Error = ApiError> {
        match self {
            Task::Deciding(d) => d.as_mut(),
            Task::Collecting(c) => c.as_mut(),
        }
    }

    fn need(&self) -> Need<'_> {
        match self {
            Task::Deciding(d) => d.need(),
            Task::Collecting(c) => c.need(),
        }
    }

    fn version(&self) -> u64 {
        match self {
            Task::Deciding(d) => d.version,
            Task::Collecting(c) => c.version,
        }
    }
}

impl ShellStep {
    fn of(config: kv::InForce, warnings: Option<String>) -> ShellStep {
        ShellStep { config: Some(config), task: None, over: None, answer: None, warnings, next: Next::default() }
    }

    /// The request `resource` names, started under `config`.
    fn task(req: &worker::Request, env: &Env, config: kv::InForce, body: &[u8]) -> Result<Task, ApiError> {
        let path = req.path();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (version, config) = config;
        let deciding = match (req.method(), Resource::of(&segments)) {
            (Method::Get, Some(Resource::DecideSummary)) => {
                decide_query(req).and_then(|asked| Deciding::summary(req, env, version, config, asked))
            }
            (Method::Post, Some(Resource::Impressions)) => Deciding::impressions(req, env, version, config, body),
            (Method::Get, Some(Resource::Decide)) => {
                decide_get_request(req).and_then(|asked| Deciding::decision(req, env, version, config, asked))
            }
            (Method::Post, Some(Resource::Decide)) => wire::decide::parse_decide(body)
                .map_err(ApiError::Body)
                .and_then(|asked| Deciding::decision(req, env, version, config, asked)),
            (Method::Post, Some(Resource::Collect(call))) => {
                return Collecting::start(req, env, (version, config), call, None, body)
                    .map(|c| Task::Collecting(Box::new(c)));
            }
            (Method::Post, Some(Resource::Beacon)) => {
                // A beacon carries no headers of its own: its write key comes in the query.
                let key = query_param(req, "writeKey")?;
                return Collecting::start(req, env, (version, config), None, key, body)
                    .map(|c| Task::Collecting(Box::new(c)));
            }
            _ => Err(ApiError::Unavailable(format!("{path} is not the shell's"))),
        }?;
        if deciding.explaining {
            return Err(ApiError::Unavailable("explain goes to the Rust Worker".into()));
        }
        Ok(Task::Deciding(Box::new(deciding)))
    }
}

/// The step `kind` worked out: what the shell reads next.
#[derive(Default)]
struct Next {
    key: String,
    keys: Vec<String>,
    body: Vec<u8>,
    version: Option<String>,
}

#[wasm_bindgen]
impl ShellStep {
    /// Whether the shell serves `method` on `path` (the Rust Worker's routes, `Resource::of`): -1 not, 0 without
    /// a body, or the largest body it reads.
    pub fn serves(method: &str, path: &str) -> i32 {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let limit = match (method, Resource::of(&segments)) {
            ("GET", Some(Resource::Decide | Resource::DecideSummary)) => 0,
            ("POST", Some(Resource::Decide | Resource::Impressions)) => wire::MAX_EVENT_BYTES,
            ("POST", Some(Resource::Collect(_) | Resource::Beacon)) => MAX_BATCH_BYTES,
            _ => return -1,
        };
        i32::try_from(limit).unwrap_or(-1)
    }

    /// How many reads or calls of one step (kinds 4 and 5) the shell runs at once.
    pub fn at_once() -> usize {
        AT_ONCE
    }

    /// A request under the configuration `current` (`config:current`'s text) names, when this isolate has it
    /// compiled and its fitted model fresh (`kv::cached_config`); `undefined` otherwise.
    pub fn ready(current: Option<String>) -> Option<ShellStep> {
        let config = kv::cached_config(current.as_deref())?;
        Some(ShellStep::of(config, None))
    }

    /// Whether this isolate has compiled no configuration yet: the shell then reads `config:current`,
    /// `config:latest` and `predictions:model` at once, and calls `load`.
    pub fn cold() -> bool {
        kv::is_cold()
    }

    /// `ready`, once the shell has read the three keys (`kv::loaded_config`, which compiles the configuration
    /// as `kv::config` does); `undefined` when the Rust Worker must read more (`config:v<N>`) or answer.
    pub fn load(current: Option<String>, latest: Option<String>, model: Option<String>) -> Option<ShellStep> {
        let (config, warnings) = kv::loaded_config(current.as_deref(), latest.as_deref(), model)?;
        Some(ShellStep::of(config, warnings))
    }

    /// What the configuration's load has to say in the log (`kv::compiled`: settings that weaken the trust
    /// rules), which the shell says once the answer is out.
    pub fn warnings(&mut self) -> Option<String> {
        self.warnings.take()
    }

    /// Starts `request` (one `serves` accepts), with the body the shell read (`body`; empty for a `GET`).
    pub fn start(&mut self, request: web_sys::Request, env: Env, body: &[u8]) {
        let Some(config) = self.config.take() else { return };
        let req = worker::Request::from(request);
        match ShellStep::task(&req, &env, config, body) {
            Ok(task) => self.task = Some(task),
            Err(e) => self.over = Some(e),
        }
    }

    /// What the next step needs, worked out once per step: its key (or keys), body and version are then read by
    /// `key`, `keys`, `body` and `version`.
    pub fn kind(&mut self) -> u8 {
        let Some(task) = &self.task else { return 0 };
        let mut next = Next::default();
        let kind = match task.need() {
            Need::Text(k) => {
                next.key = k;
                1
            }
            Need::Bytes(k) => {
                next.key = k;
                2
            }
            Need::Object(f) => {
                next.key = f.at().to_string();
                next.body = f.body();
                next.version = matches!(f.request(), ObjectRequest::Apply(_)).then(|| task.version().to_string());
                3
            }
            Need::Texts(keys) => {
                next.keys = keys.to_vec();
                4
            }
            Need::Calls(profiles, body) => {
                next.keys = profiles.to_vec();
                next.body = body.to_vec();
                5
            }
            Need::Done => 0,
        };
        self.next = next;
        kind
    }

    /// The KV key asked for (kinds 1 and 2), or the profile whose object is asked (kind 3).
    pub fn key(&mut self) -> String {
        std::mem::take(&mut self.next.key)
    }

    /// The KV keys (kind 4), or the profiles whose objects are asked (kind 5).
    pub fn keys(&mut self) -> Vec<String> {
        std::mem::take(&mut self.next.keys)
    }

    /// What the object is sent (kinds 3 and 5).
    pub fn body(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.next.body)
    }

    /// The configuration version an apply names to the object (kind 3), as `profile_client::send` names it.
    pub fn version(&mut self) -> Option<String> {
        self.next.version.take()
    }

    pub fn text(&mut self, value: Option<String>) {
        if let Some(t) = &mut self.task {
            t.steps().text(value);
        }
    }

    pub fn bytes(&mut self, value: Option<Vec<u8>>) {
        if let Some(t) = &mut self.task {
            let _ = t.steps().bytes(value.as_deref());
        }
    }

    pub fn answer(&mut self, status: u16, bytes: &[u8]) {
        if let Some(t) = &mut self.task {
            let _ = t.steps().answer(status, bytes);
        }
    }

    /// The texts of kind 4's keys, in order, each a string or `null`.
    pub fn texts(&mut self, values: Array) {
        if let Some(t) = &mut self.task {
            let _ = t.steps().texts(values.iter().map(|v| v.as_string()).collect());
        }
    }

    /// The answers of kind 5's objects, in order: their statuses, and their bodies (each a `Uint8Array`).
    pub fn replies(&mut self, statuses: Vec<u16>, bodies: Array) {
        if let Some(t) = &mut self.task {
            let bodies = bodies.iter().map(|b| b.dyn_into::<Uint8Array>().map(|b| b.to_vec()).unwrap_or_default());
            let _ = t.steps().replies(statuses.into_iter().zip(bodies).collect());
        }
    }

    /// A read or a call that threw: as in the Rust Worker, a decision ends as unavailable (503), and a batch goes
    /// on with its other profiles when a profile's writer could not be reached.
    pub fn fail(&mut self, message: String) {
        match &mut self.task {
            Some(Task::Deciding(d)) => d.fail(ApiError::Unavailable(message)),
            Some(Task::Collecting(c)) => c.fail(ApiError::Unavailable(message)),
            None => {}
        }
    }

    /// The answer's headers (kind 0), one per line, the name and the value separated by a tab (a header's name
    /// holds neither, and the runtime refuses a value with a line break), for the shell to make the `Response`
    /// with the body `payload` hands over; `undefined` when the request ended in an error (`response`).
    pub fn head(&mut self) -> Option<String> {
        let result = match (self.over.take(), self.task.take()) {
            (Some(e), _) => Err(e),
            (None, Some(Task::Deciding(d))) => (*d).into_answer(),
            (None, Some(Task::Collecting(c))) => (*c).into_answer(),
            (None, None) => Err(ApiError::Unavailable("a request answered twice".into())),
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
        let e = self.over.take().unwrap_or_else(|| ApiError::Unavailable("a request answered twice".into()));
        Ok(e.into_response().map_err(JsValue::from)?.into())
    }
}
