//! Decisions: `POST /v1/decide`, `GET /v1/decide`, `GET /v1/decide/summary` and `POST /v1/impressions`. Who may call: a page for its own visitor (the signed cookie, or an `anonymousId`); naming a `userId` needs a server credential.

use crate::core::base::time::Millis;
use crate::core::engine::apply::ApplyRequest;
use crate::core::engine::decide::{decide, explain};
use crate::core::engine::device;
use crate::core::model::context::Context as DecideContext;
use crate::core::model::profile::Profile;
use crate::core::model::tcf::TcfSignal;
use crate::core::rules::Config;
use crate::core::wire::decide::DecideRequest;
use crate::core::wire::{self};
use crate::core::writer::client::{Failed, Follow, Lookup, Need, Steps};
use crate::core::writer::protocol::{Reply as ObjectReply, Request as ObjectRequest};
use crate::edge::auth::require_admin;
use crate::edge::clock::now;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::http::with_cors;
use crate::edge::kv;
use crate::edge::objects::profile_client::{apply, drive};
use crate::edge::request::{allowed_origin, body, decide_context};
use crate::edge::visitor::Visitor;
use serde_json::json;
use std::rc::Rc;
use worker::{Env, Request};

pub(crate) async fn decide_post(mut req: Request, env: &Env) -> ApiResult {
    let bytes = body(&mut req, wire::MAX_EVENT_BYTES).await?;
    let request = wire::decide::parse_decide(&bytes).map_err(ApiError::Body)?;
    answer_decision(&req, env, request).await
}

/// `GET /v1/decide?slots=hero,sidebar&anonymousId=...`, for CMS pages and servers.
pub(crate) async fn decide_get(req: Request, env: &Env) -> ApiResult {
    let request = decide_get_request(&req)?;
    answer_decision(&req, env, request).await
}

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

pub(crate) async fn answer_decision(req: &Request, env: &Env, request: DecideRequest) -> ApiResult {
    let (version, config) = kv::config(env).await?;
    let mut deciding = Deciding::start(req, env, version, config, request)?;
    if deciding.explaining {
        require_admin(req, env).await?;
    }
    drive(env, &mut deciding).await?;
    deciding.finish()
}

/// A decision between its reads (`core::writer::client::Steps`): the visitor named (`Visitor::name`), their
/// profile looked up (`Lookup`), the decision made, and what it serves that caps and experiments count recorded
/// by the profile's writer before the answer goes out, so that the next decision already sees it. Its reads and
/// calls are carried out by the Rust Worker (`answer_decision`) or by the JavaScript shell (`edge::shell`).
pub(crate) struct Deciding {
    /// The configuration version read, which an apply names to the profile's object (`kv::config_seen`).
    pub version: u64,
    config: Rc<Config>,
    request: DecideRequest,
    visitor: Visitor,
    cx: DecideContext,
    now: Millis,
    /// `?explain`: the answer says why (an operator's request: the caller checks the admin credential).
    pub explaining: bool,
    stage: Stage,
}

enum Stage {
    Lookup(Lookup),
    /// The impressions on their way to the profile's writer, and the answer that follows.
    Record(Follow, serde_json::Value),
    Over(Option<ApiResult>),
}

impl Deciding {
    pub fn start(
        req: &Request,
        env: &Env,
        version: u64,
        config: Rc<Config>,
        mut request: DecideRequest,
    ) -> Result<Deciding, ApiError> {
        let (user_id, anonymous_id) = (request.user_id.as_deref(), request.anonymous_id.as_deref());
        let (mut visitor, identities) = Visitor::name(req, env, &config, user_id, anonymous_id, &mut request.consent)?;
        if let Some(tc) = &request.tcf {
            // A string in the body stands in for the cookie: a server deciding for a visitor passes theirs.
            visitor.signals.tcf = TcfSignal::of(&config.consent.tcf, tc, now());
        }
        let query = crate::edge::request::query(req);
        let explaining = crate::core::base::url::query_pairs(&query).any(|(k, v)| k == "explain" && v != "0");
        let now = now();
        let cx = decide_context(req, env, &request, visitor.signals.country.clone(), now);
        let stage = Stage::Lookup(Lookup::new(identities, now));
        let mut deciding = Deciding { version, config, request, visitor, cx, now, explaining, stage };
        // A visitor who names no identity has nothing to look up: the decision is made at once.
        deciding.after(Ok(()));
        Ok(deciding)
    }

    /// Once `need` is `Done`: the answer, or why there is none.
    pub fn finish(self) -> ApiResult {
        match self.stage {
            Stage::Over(Some(result)) => result,
            _ => Err(ApiError::Unavailable("a decision was finished before its reads were done".into())),
        }
    }

    /// Ends the decision with `e` (a read or a call that failed).
    pub fn fail(&mut self, e: ApiError) {
        self.stage = Stage::Over(Some(Err(e)));
    }

    /// The profile is read: the decision, then its record or its answer.
    fn decide(&mut self, profile: Option<Profile>) {
        self.visitor.profile = profile;
        let (config, now) = (&self.config, self.now);
        let subject = self.visitor.permitted(config, self.request.consent.as_ref());
        let slots = &self.request.slots;
        let decision = if self.explaining {
            explain(config, subject, &self.cx, slots, now)
        } else {
            decide(config, subject, &self.cx, slots, now)
        };
        let impressions = decision.impressions(now);
        let body = decision.to_json_explained();
        self.stage = match (&self.visitor.profile, impressions.is_empty()) {
            (Some(p), false) => {
                let signals = self.visitor.signals.clone();
                let apply = ApplyRequest { profile_id: p.id.clone(), signals, impressions, ..ApplyRequest::default() };
                Stage::Record(Follow::new(&p.id, ObjectRequest::Apply(apply)), body)
            }
            _ => Stage::Over(Some(self.respond(&body))),
        };
    }

    fn respond(&self, body: &serde_json::Value) -> ApiResult {
        Ok(with_cors(json_response(200, body)?, self.visitor.origin.as_deref())?)
    }

    /// Moves on after a step: a lookup that is done decides; an error ends it.
    fn after(&mut self, step: Result<(), ApiError>) {
        if let Err(e) = step {
            return self.fail(e);
        }
        if let Stage::Lookup(l) = &self.stage {
            if matches!(l.need(), Need::Done) {
                let Stage::Lookup(l) = std::mem::replace(&mut self.stage, Stage::Over(None)) else { return };
                self.decide(l.found());
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
                    let answer = self.respond(&body);
                    self.stage = Stage::Over(Some(answer));
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

/// `GET /v1/decide/summary`: what a device needs to decide for the visitor itself (delivery way 3, for sites
/// that are static files): the configuration's version; the edge's time; the country; and the visitor's device
/// program (`core::engine::device`: their rules with what reads their profile evaluated here, and the answers it
/// picks from; `DeviceRules::to_json`), or `program: null` with `edgeOnly` (why) when their rules read what only
/// the edge knows. Neither the profile nor the configuration leaves. Ids resolve as for `GET /v1/decide`;
/// personalization consent is checked here, with the request's signals. Never cached: it describes one visitor.
pub(crate) async fn decide_summary(req: Request, env: &Env) -> ApiResult {
    let mut request = decide_query(&req)?;
    let (version, config) = kv::config(env).await?;
    let (user_id, anonymous_id) = (request.user_id.as_deref(), request.anonymous_id.as_deref());
    let visitor = Visitor::resolve(&req, env, &config, user_id, anonymous_id, &mut request.consent).await?;
    let subject = visitor.permitted(&config, request.consent.as_ref());
    let (origin, signals) = (&visitor.origin, &visitor.signals);
    // The edge's clock: the program starts at it, and the device decides at it (corrected for its own clock's
    // skew), so caps and schedules count exactly as at the edge, whatever the device's clock says.
    let at = now();
    let mut body = match device::for_visitor(&config, subject.as_ref(), at) {
        Ok(rules) => rules.to_json(),
        Err(why) => {
            let mut m = serde_json::Map::new();
            m.insert("program".into(), serde_json::Value::Null);
            m.insert("edgeOnly".into(), why.code().into());
            m
        }
    };
    body.insert("configVersion".into(), version.into());
    body.insert("now".into(), at.into());
    body.insert("country".into(), signals.country.clone().into());
    let mut resp = json_response(200, &serde_json::Value::Object(body))?;
    resp.headers_mut().set("cache-control", "private, no-store")?;
    Ok(with_cors(resp, origin.as_deref())?)
}

/// `POST /v1/impressions`: records the answers a device decided on a summary and served (blocks with caps or
/// experiments), so that caps and experiment exposures count them as they count the edge's own decisions. Each
/// impression is checked against the configuration in force and recorded at the edge's time, and only when the
/// visitor's consent allows personalization.
pub(crate) async fn impressions_post(mut req: Request, env: &Env) -> ApiResult {
    let bytes = body(&mut req, wire::MAX_EVENT_BYTES).await?;
    let (_, config) = kv::config(env).await?;
    let origin = allowed_origin(&req, &config)?;
    let now = now();
    let mut request = wire::impressions::parse_impressions(&bytes, &config, now).map_err(ApiError::Body)?;
    let (user_id, anonymous_id) = (request.user_id.as_deref(), request.anonymous_id.as_deref());
    let visitor = Visitor::resolve(&req, env, &config, user_id, anonymous_id, &mut request.consent).await?;
    let permitted = visitor.permitted(&config, request.consent.as_ref());
    let signals = visitor.signals.clone();
    let mut recorded = 0;
    if let Some(p) = permitted {
        recorded = request.impressions.len();
        let apply_request = ApplyRequest {
            profile_id: p.get().id.clone(),
            signals,
            impressions: request.impressions,
            ..ApplyRequest::default()
        };
        apply(env, apply_request).await?;
    }
    Ok(with_cors(json_response(200, &json!({"success": true, "recorded": recorded}))?, origin.as_deref())?)
}
