//! The predictions' model versions for an operator: `GET /v1/predictions` (the latest versions, newest first, each
//! with its status, parameters and quality figures; the version in force) and `POST /v1/predictions/fit` (a fit
//! now, as the cron does when the last is older than `predictions.refit`). Who may call: the admin token or a
//! console session only (a session's POST with its CSRF token); the figures are the population's, but a fit reads
//! everyone's summaries.

use crate::core::wire::audiences::{Sql, Statement};
use crate::core::wire::predictions::{COUNT_SUMMARIES, VERSIONS};
use crate::edge::auth::require_admin;
use crate::edge::error::{json_response, ApiError, ApiResult};
use crate::edge::kv;
use crate::edge::outlets::{first_value, index, rows};
use crate::edge::predictions::{fit_now, version_json};
use crate::edge::request::count_param;
use serde_json::{json, Value as J};
use worker::{Env, Request};

/// `GET /v1/predictions[?limit=…]`.
pub(crate) async fn predictions_list(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let limit = count_param(&req, "limit", 20, 200, "invalid_limit")?;
    let db = index(env).await?;
    let versions: Vec<J> = rows(&db, &Statement { sql: VERSIONS, params: vec![Sql::Int(limit)] })
        .await?
        .into_iter()
        .map(|r| {
            let text = |i: usize| r.get(i).and_then(J::as_str).and_then(|t| serde_json::from_str::<J>(t).ok());
            version_json(
                r.first().and_then(J::as_i64).unwrap_or(0),
                r.get(1).and_then(J::as_i64).unwrap_or(0),
                r.get(2).and_then(J::as_str).unwrap_or_default(),
                text(3),
                text(4).unwrap_or(J::Null),
            )
        })
        .collect();
    let summaries = first_value(&db, &Statement { sql: COUNT_SUMMARIES, params: vec![] })
        .await?
        .as_ref()
        .and_then(J::as_u64)
        .unwrap_or(0);
    let (_, config) = kv::config(env).await?;
    let p = &config.predictions;
    let body = json!({
        "summaries": summaries,
        "inForce": p.model.as_ref().map(|m| json!({"version": m.version, "pinned": p.pinned.is_some()})),
        "names": p.names.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        "versions": versions,
    });
    Ok(json_response(200, &body)?)
}

/// `POST /v1/predictions/fit`: fits a version now and answers it (201).
pub(crate) async fn predictions_fit(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let (_, config) = kv::config(env).await?;
    if config.predictions.pinned.is_some() {
        return Err(ApiError::Conflict {
            code: "model_pinned",
            message: "the configuration pins predictions.model; remove it to fit from the data".into(),
        });
    }
    let version = fit_now(env).await?;
    Ok(json_response(201, &version)?)
}
