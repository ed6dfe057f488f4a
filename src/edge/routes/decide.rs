//! Decisions: `POST /v1/decide`, `GET /v1/decide`, `GET /v1/decide/summary` and `POST /v1/impressions`. Who may call: a page for its own visitor (the signed cookie, or an `anonymousId`); naming a `userId` needs a server credential.

use crate::core::engine::apply::ApplyRequest;
use crate::core::engine::decide::{decide, explain};
use crate::core::engine::device;
use crate::core::model::tcf::TcfSignal;
use crate::core::wire::decide::DecideRequest;
use crate::core::wire::{self};
use crate::edge::auth::require_admin;
use crate::edge::clock::now;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::http::with_cors;
use crate::edge::kv;
use crate::edge::objects::profile_client::apply;
use crate::edge::request::{allowed_origin, body, decide_context};
use crate::edge::visitor::Visitor;
use serde_json::json;
use worker::{Env, Request};

pub(crate) async fn decide_post(mut req: Request, env: &Env) -> ApiResult {
    let bytes = body(&mut req, wire::MAX_EVENT_BYTES).await?;
    let request = wire::decide::parse_decide(&bytes).map_err(ApiError::Body)?;
    answer_decision(&req, env, request).await
}

/// `GET /v1/decide?slots=hero,sidebar&anonymousId=...`, for CMS pages and servers.
pub(crate) async fn decide_get(req: Request, env: &Env) -> ApiResult {
    let request = decide_query(&req)?;
    if request.slots.is_empty() {
        return Err(ApiError::BadRequest {
            code: "missing_field",
            message: "slots is required: ?slots=hero,sidebar".into(),
            path: "slots".into(),
        });
    }
    answer_decision(&req, env, request).await
}

/// The decide request the URL's query describes (`core::wire::decide::decide_query`).
pub(crate) fn decide_query(req: &Request) -> Result<DecideRequest, ApiError> {
    wire::decide::decide_query(&crate::edge::request::query(req)).map_err(|e| ApiError::BadRequest {
        code: e.code,
        message: e.message,
        path: e.path,
    })
}

pub(crate) async fn answer_decision(req: &Request, env: &Env, mut request: DecideRequest) -> ApiResult {
    let (_, config) = kv::config(env).await?;
    let (user_id, anonymous_id) = (request.user_id.as_deref(), request.anonymous_id.as_deref());
    let mut visitor = Visitor::resolve(req, env, &config, user_id, anonymous_id, &mut request.consent).await?;
    if let Some(tc) = &request.tcf {
        // A string in the body stands in for the cookie: a server deciding for a visitor passes theirs.
        visitor.signals.tcf = TcfSignal::of(&config.consent.tcf, tc, now());
    }
    let subject = visitor.permitted(&config, request.consent.as_ref());
    let (origin, signals) = (visitor.origin.clone(), visitor.signals.clone());
    let explaining =
        crate::core::base::url::query_pairs(&crate::edge::request::query(req)).any(|(k, v)| k == "explain" && v != "0");
    if explaining {
        require_admin(req, env).await?;
    }
    let now = now();
    let cx = decide_context(req, env, &request, signals.country.clone(), now);
    let decision = if explaining {
        explain(&config, subject, &cx, &request.slots, now)
    } else {
        decide(&config, subject, &cx, &request.slots, now)
    };
    // Caps and experiments count what was served: the profile's writer records it before the answer goes out, so
    // the next decision already sees it.
    let impressions = decision.impressions(now);
    if let (Some(p), false) = (&visitor.profile, impressions.is_empty()) {
        let request = ApplyRequest { profile_id: p.id.clone(), signals, impressions, ..ApplyRequest::default() };
        apply(env, request).await?;
    }
    Ok(with_cors(json_response(200, &decision.to_json_explained())?, origin.as_deref())?)
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
