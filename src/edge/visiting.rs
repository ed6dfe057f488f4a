//! A visitor's request between its reads: what `POST` and `GET /v1/decide`, `GET /v1/decide/summary` and `POST
//! /v1/impressions` do once the request is read, as steps (`core::writer::client::Steps`) that the Rust Worker's
//! routes (`routes::decide`) and the JavaScript shell (`edge::shell`) both carry out. Who may call: a page for its
//! own visitor (the signed cookie, or an `anonymousId`); naming a `userId` needs a server credential
//! (`Visitor::name`).

use crate::core::base::time::Millis;
use crate::core::engine::apply::ApplyRequest;
use crate::core::engine::decide::{decide, explain};
use crate::core::engine::device;
use crate::core::model::context::Context as DecideContext;
use crate::core::model::identity::Identity;
use crate::core::model::profile::Profile;
use crate::core::model::shown::Impression;
use crate::core::model::tcf::TcfSignal;
use crate::core::rules::Config;
use crate::core::wire::decide::DecideRequest;
use crate::core::wire::{self};
use crate::core::writer::client::{Failed, Follow, Lookup, Need, Steps};
use crate::core::writer::protocol::{Reply as ObjectReply, Request as ObjectRequest};
use crate::edge::clock::now;
use crate::edge::error::{ApiError, ApiResult, JSON_TYPE};
use crate::edge::http::cors_headers;
use crate::edge::request::{allowed_origin, decide_context};
use crate::edge::visitor::Visitor;
use serde_json::json;
use std::collections::BTreeMap;
use std::rc::Rc;
use worker::{Env, Request};

/// What `GET /v1/decide` asks: its query, which must name slots.
pub(crate) fn decide_get_request(req: &Request) -> Result<DecideRequest, ApiError> {
    let request = decide_query(req)?;
    if request.slots.is_empty() {
        return Err(ApiError::BadRequest {
            code: "missing_field",
            message: "slots is required: ?slots=hero,sidebar".into(),
            path: "slots".into(),
        });
    }
    Ok(request)
}

/// The decide request the URL's query describes (`core::wire::decide::decide_query`).
pub(crate) fn decide_query(req: &Request) -> Result<DecideRequest, ApiError> {
    wire::decide::decide_query(&crate::edge::request::query(req)).map_err(|e| ApiError::BadRequest {
        code: e.code,
        message: e.message,
        path: e.path,
    })
}

/// The visitor a decide request names (`Visitor::name`, which may take consent from a credential).
fn named(
    req: &Request,
    env: &Env,
    config: &Config,
    request: &mut DecideRequest,
) -> Result<(Visitor, Vec<Identity>), ApiError> {
    let (user_id, anonymous_id) = (request.user_id.as_deref(), request.anonymous_id.as_deref());
    Visitor::name(req, env, config, user_id, anonymous_id, &mut request.consent)
}

/// What a visitor's page asked for, answered once their profile is read.
enum Asked {
    /// A decision (`POST` and `GET /v1/decide`): its slots, and where and when.
    Decision { slots: Vec<String>, cx: DecideContext },
    /// The visitor's device program (`GET /v1/decide/summary`).
    Summary,
    /// What a device served (`POST /v1/impressions`), to record.
    Impressions(Vec<Impression>),
}

/// A visitor's request between its reads (`core::writer::client::Steps`): the visitor named (`Visitor::name`),
/// their profile looked up (`Lookup`), what they asked for answered (a decision, a device program, or impressions
/// to record), and what caps and experiments count recorded by the profile's writer before the answer goes out,
/// so that the next decision already sees it. Its reads and calls are carried out by the Rust Worker (`run`) or
/// by the JavaScript shell (`edge::shell`).
pub(crate) struct Deciding {
    /// The configuration version read, which an apply names to the profile's object (`kv::config_seen`).
    pub version: u64,
    config: Rc<Config>,
    /// Consent sent with the request, which takes precedence over the recorded one.
    consent: Option<BTreeMap<String, bool>>,
    visitor: Visitor,
    now: Millis,
    /// `?explain` on a decision: the answer says why (an operator's request: the caller checks the credential).
    pub explaining: bool,
    asked: Asked,
    stage: Stage,
}

enum Stage {
    Lookup(Lookup),
    /// The impressions on their way to the profile's writer, and the answer that follows.
    Record(Follow, serde_json::Value),
    Over(Option<Result<Answer, ApiError>>),
}

/// A visitor's answer (200, JSON) before it is a `Response`: the Rust Worker makes one with workers-rs
/// (`into_response`), the shell with the runtime's own constructor (`shell::ShellStep::head`), from the same
/// headers. Built through workers-rs, the `Response` and its headers were 4% of a warm decision's CPU in the
/// shell (a crossing per header, and the body copied out twice).
pub(crate) struct Answer {
    pub body: Vec<u8>,
    /// One visitor's, kept by no cache at all.
    private: bool,
    /// The page's origin, when it may read the answer (CORS).
    origin: Option<String>,
    /// A `Set-Cookie` header's value (collection's identity cookie, `cookie::set` or `cookie::clear`).
    cookie: Option<String>,
}

impl Answer {
    /// An answer any cache may not keep (`no-store`), readable by `origin`'s page, setting `cookie`.
    pub fn of(body: &serde_json::Value, origin: Option<String>, cookie: Option<String>) -> Answer {
        Answer { body: body.to_string().into_bytes(), private: false, origin, cookie }
    }

    /// Its headers, in order: those of `error::json_response`, then the CORS headers (`http::cors_headers`) when
    /// a page's origin may read it, then the cookie.
    pub fn headers(&self) -> Vec<(&'static str, &str)> {
        let cache = if self.private { "private, no-store" } else { "no-store" };
        let mut headers = vec![("content-type", JSON_TYPE), ("cache-control", cache)];
        if let Some(origin) = &self.origin {
            headers.extend(cors_headers(origin));
        }
        if let Some(cookie) = &self.cookie {
            headers.push(("set-cookie", cookie));
        }
        headers
    }

    pub fn into_response(self) -> ApiResult {
        let headers = worker::Headers::new();
        for (name, value) in self.headers() {
            headers.append(name, value)?;
        }
        Ok(worker::Response::from_bytes(self.body)?.with_headers(headers))
    }
}

impl Deciding {
    /// `POST` or `GET /v1/decide`'s `request`.
    pub fn decision(
        req: &Request,
        env: &Env,
        version: u64,
        config: Rc<Config>,
        mut request: DecideRequest,
    ) -> Result<Deciding, ApiError> {
        let (mut visitor, identities) = named(req, env, &config, &mut request)?;
        if let Some(tc) = &request.tcf {
            // A string in the body stands in for the cookie: a server deciding for a visitor passes theirs.
            visitor.signals.tcf = TcfSignal::of(&config.consent.tcf, tc, now());
        }
        let query = crate::edge::request::query(req);
        let explaining = crate::core::base::url::query_pairs(&query).any(|(k, v)| k == "explain" && v != "0");
        let cx = decide_context(req, env, &request, visitor.signals.country.clone(), now());
        let asked = Asked::Decision { slots: std::mem::take(&mut request.slots), cx };
        Ok(Deciding::new(version, config, request.consent, visitor, identities, explaining, asked))
    }

    /// `GET /v1/decide/summary`'s `request` (ids and consent as for `GET /v1/decide`).
    pub fn summary(
        req: &Request,
        env: &Env,
        version: u64,
        config: Rc<Config>,
        mut request: DecideRequest,
    ) -> Result<Deciding, ApiError> {
        let (visitor, identities) = named(req, env, &config, &mut request)?;
        Ok(Deciding::new(version, config, request.consent, visitor, identities, false, Asked::Summary))
    }

    /// `POST /v1/impressions` with `body`: each impression checked against the configuration in force and
    /// recorded at the edge's time, and only when the visitor's consent allows personalization.
    pub fn impressions(
        req: &Request,
        env: &Env,
        version: u64,
        config: Rc<Config>,
        body: &[u8],
    ) -> Result<Deciding, ApiError> {
        allowed_origin(req, &config)?;
        let mut request = wire::impressions::parse_impressions(body, &config, now()).map_err(ApiError::Body)?;
        let (user_id, anonymous_id) = (request.user_id.as_deref(), request.anonymous_id.as_deref());
        let (visitor, identities) = Visitor::name(req, env, &config, user_id, anonymous_id, &mut request.consent)?;
        let asked = Asked::Impressions(request.impressions);
        Ok(Deciding::new(version, config, request.consent, visitor, identities, false, asked))
    }

    fn new(
        version: u64,
        config: Rc<Config>,
        consent: Option<BTreeMap<String, bool>>,
        visitor: Visitor,
        identities: Vec<Identity>,
        explaining: bool,
        asked: Asked,
    ) -> Deciding {
        let now = now();
        let stage = Stage::Lookup(Lookup::new(identities, now));
        let mut deciding = Deciding { version, config, consent, visitor, now, explaining, asked, stage };
        // A visitor who names no identity has nothing to look up: the answer is made at once.
        deciding.after(Ok(()));
        deciding
    }

    /// Once `need` is `Done`: the answer, or why there is none.
    pub fn finish(self) -> ApiResult {
        self.into_answer()?.into_response()
    }

    /// `finish`, before the answer is a `Response`.
    pub fn into_answer(self) -> Result<Answer, ApiError> {
        match self.stage {
            Stage::Over(Some(result)) => result,
            _ => Err(ApiError::Unavailable("a request was finished before its reads were done".into())),
        }
    }

    /// Ends the request with `e` (a read or a call that failed).
    pub fn fail(&mut self, e: ApiError) {
        self.stage = Stage::Over(Some(Err(e)));
    }

    /// The profile is read: what was asked for, then its record or its answer.
    fn conclude(&mut self, profile: Option<Profile>) {
        self.visitor.profile = profile;
        let (config, now) = (&self.config, self.now);
        let subject = self.visitor.permitted(config, self.consent.as_ref());
        let (body, impressions, private) = match std::mem::replace(&mut self.asked, Asked::Summary) {
            Asked::Decision { slots, cx } => {
                let decision = if self.explaining {
                    explain(config, subject, &cx, &slots, now)
                } else {
                    decide(config, subject, &cx, &slots, now)
                };
                (decision.to_json_explained(), decision.impressions(now), false)
            }
            // What a device needs to decide for the visitor itself (delivery way 3, for sites that are static
            // files): the configuration's version; the edge's time, at which the program starts and the device
            // decides (corrected for its own clock's skew), so that caps and schedules count exactly as at the
            // edge; the country; and the visitor's device program (`core::engine::device`: their rules with what
            // reads their profile evaluated here, and the answers it picks from), or `program: null` with
            // `edgeOnly` (why) when their rules read what only the edge knows. Neither the profile nor the
            // configuration leaves. Never cached: it describes one visitor.
            Asked::Summary => {
                let mut body = match device::for_visitor(config, subject.as_ref(), now) {
                    Ok(rules) => rules.to_json(),
                    Err(why) => {
                        let mut m = serde_json::Map::new();
                        m.insert("program".into(), serde_json::Value::Null);
                        m.insert("edgeOnly".into(), why.code().into());
                        m
                    }
                };
                body.insert("configVersion".into(), self.version.into());
                body.insert("now".into(), now.into());
                body.insert("country".into(), self.visitor.signals.country.clone().into());
                (serde_json::Value::Object(body), Vec::new(), true)
            }
            Asked::Impressions(list) => {
                let list = if subject.is_some() { list } else { Vec::new() };
                (json!({"success": true, "recorded": list.len()}), list, false)
            }
        };
        self.stage = match (&self.visitor.profile, impressions.is_empty()) {
            (Some(p), false) => {
                let signals = self.visitor.signals.clone();
                let apply = ApplyRequest { profile_id: p.id.clone(), signals, impressions, ..ApplyRequest::default() };
                Stage::Record(Follow::new(&p.id, ObjectRequest::Apply(apply)), body)
            }
            _ => Stage::Over(Some(Ok(self.respond(&body, private)))),
        };
    }

    /// The answer; `private`: one visitor's, kept by no cache at all.
    fn respond(&self, body: &serde_json::Value, private: bool) -> Answer {
        Answer { body: body.to_string().into_bytes(), private, origin: self.visitor.origin.clone(), cookie: None }
    }

    /// Moves on after a step: a lookup that is done concludes; an error ends it.
    fn after(&mut self, step: Result<(), ApiError>) {
        if let Err(e) = step {
            return self.fail(e);
        }
        if let Stage::Lookup(l) = &self.stage {
            if matches!(l.need(), Need::Done) {
                let Stage::Lookup(l) = std::mem::replace(&mut self.stage, Stage::Over(None)) else { return };
                self.conclude(l.found());
            }
        }
    }
}

impl Steps for Deciding {
    type Error = ApiError;

    fn need(&self) -> Need<'_> {
        match &self.stage {
            Stage::Lookup(l) => l.need(),
            Stage::Record(f, _) => Need::Object(f),
            Stage::Over(_) => Need::Done,
        }
    }

    fn text(&mut self, value: Option<String>) {
        if let Stage::Lookup(l) = &mut self.stage {
            l.text(value);
        }
        self.after(Ok(()));
    }

    fn bytes(&mut self, value: Option<&[u8]>) -> Result<(), ApiError> {
        let step = match &mut self.stage {
            Stage::Lookup(l) => l.bytes(value).map_err(ApiError::from),
            _ => Ok(()),
        };
        self.after(step);
        Ok(())
    }

    fn answer(&mut self, status: u16, bytes: &[u8]) -> Result<(), ApiError> {
        let step = match &mut self.stage {
            Stage::Lookup(l) => l.answer(status, bytes).map_err(ApiError::from),
            Stage::Record(f, body) => match f.answer(status, bytes) {
                Ok(None) => Ok(()),
                Ok(Some(ObjectReply::Applied(_))) => {
                    let body = std::mem::take(body);
                    let answer = self.respond(&body, false);
                    self.stage = Stage::Over(Some(Ok(answer)));
                    Ok(())
                }
                Ok(Some(other)) => Err(Failed::unexpected(&other).into()),
                Err(f) => Err(f.into()),
            },
            Stage::Over(_) => Ok(()),
        };
        self.after(step);
        Ok(())
    }
}
