//! Decisions: `POST /v1/decide`, `GET /v1/decide`, `GET /v1/decide/summary` and `POST /v1/impressions`. Who may call: a page for its own visitor (the signed cookie, or an `anonymousId`); naming a `userId` needs a server credential.

use crate::core::wire::decide::DecideRequest;
use crate::core::wire::{self};
use crate::edge::auth::require_admin;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::kv;
use crate::edge::objects::profile_client::drive;
use crate::edge::request::body;
use crate::edge::visiting::{decide_get_request, decide_query, Deciding};
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

pub(crate) async fn answer_decision(req: &Request, env: &Env, request: DecideRequest) -> ApiResult {
    let (version, config) = kv::config(env).await?;
    let deciding = Deciding::decision(req, env, version, config, request)?;
    if deciding.explaining {
        require_admin(req, env).await?;
    }
    run(env, deciding).await
}

/// Carries out a `Deciding`'s reads and calls in the Rust Worker: its answer.
async fn run(env: &Env, mut deciding: Deciding) -> ApiResult {
    drive(env, &mut deciding).await?;
    deciding.finish()
}

/// `GET /v1/decide/summary`: what a device needs to decide for the visitor itself (`Asked::Summary`). Ids
/// resolve as for `GET /v1/decide`; personalization consent is checked here, with the request's signals.
pub(crate) async fn decide_summary(req: Request, env: &Env) -> ApiResult {
    let request = decide_query(&req)?;
    let (version, config) = kv::config(env).await?;
    run(env, Deciding::summary(&req, env, version, config, request)?).await
}

/// `POST /v1/impressions`: records the answers a device decided on a summary and served (blocks with caps or
/// experiments), so that caps and experiment exposures count them as they count the edge's own decisions
/// (`Deciding::impressions`).
pub(crate) async fn impressions_post(mut req: Request, env: &Env) -> ApiResult {
    let bytes = body(&mut req, wire::MAX_EVENT_BYTES).await?;
    let (version, config) = kv::config(env).await?;
    run(env, Deciding::impressions(&req, env, version, config, &bytes)?).await
}
