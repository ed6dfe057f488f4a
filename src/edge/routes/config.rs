//! `GET`/`PUT /v1/config`: the configuration in force, and conditional writes of a new version;
//! `POST /v1/config/validate`: the same checks as `PUT`, storing nothing; `GET /v1/config/versions` and
//! `.../versions/{n}`: the history, to compare with or roll back to (by saving an old version again). Who may
//! call: the admin token (or the console's session) only.

use crate::core::rules::sources::seal_server_keys;
use crate::core::rules::{compile_str, Config};
use crate::core::wire::{BodyError, MAX_BATCH_BYTES};
use crate::edge::auth::require_admin;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::kv;
use crate::edge::objects::config::{self as config_writer, Written};
use crate::edge::request::{body, if_match_version};
use serde_json::json;
use worker::{Env, Request};

pub(crate) async fn config_get(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let (version, text) = kv::config_text(env).await?;
    let mut doc: serde_json::Value = match text {
        Some(t) => serde_json::from_str(&t).map_err(|e| ApiError::Unavailable(e.to_string()))?,
        None => json!({}),
    };
    // Stored configurations hold server keys only as hashes; one put into KV by hand may not, and is shown
    // sealed all the same.
    seal_server_keys(&mut doc);
    let mut resp = json_response(200, &doc)?;
    resp.headers_mut().set("x-edgecdp-config-version", &version.to_string())?;
    resp.headers_mut().set("etag", &format!("\"{version}\""))?;
    Ok(resp)
}

/// Reads a configuration body and compiles it: every problem with its path, or the text and what it compiled to.
async fn checked(req: &mut Request) -> Result<(String, Config), ApiError> {
    let bytes = body(req, MAX_BATCH_BYTES).await?;
    let text = String::from_utf8(bytes).map_err(|_| ApiError::Body(BodyError::NotJson("body is not UTF-8".into())))?;
    let compiled = compile_str(&text).map_err(ApiError::InvalidConfig)?;
    Ok((text, compiled))
}

/// A dry run of `PUT`: editors (and the console) show the compiler's own errors at their paths before saving.
pub(crate) async fn config_validate(mut req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    checked(&mut req).await?;
    Ok(json_response(200, &json!({"valid": true}))?)
}

pub(crate) async fn config_put(mut req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let (text, compiled) = checked(&mut req).await?;
    // Server keys are stored as their hashes only: what KV and `GET /v1/config` hold cannot authenticate.
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ApiError::Body(BodyError::NotJson(e.to_string())))?;
    seal_server_keys(&mut doc);
    let text = doc.to_string();
    // New audience definitions start a pass that re-evaluates every profile (`audiences::start_sweep`).
    let (_, before) = kv::config(env).await?;
    match config_writer::write(env, &text, if_match_version(&req)?).await? {
        Written::Stored { version } => {
            if compiled.audience_digest != before.audience_digest {
                crate::edge::audiences::start_sweep(env, version).await?;
            }
            let mut resp = json_response(200, &json!({"version": version}))?;
            resp.headers_mut().set("x-edgecdp-config-version", &version.to_string())?;
            resp.headers_mut().set("etag", &format!("\"{version}\""))?;
            Ok(resp)
        }
        Written::Conflict { current } => Err(ApiError::PreconditionFailed {
            code: "version_conflict",
            message: format!(
                "the configuration in force is version {current}: read it again (GET /v1/config), then write with If-Match: \"{current}\""
            ),
        }),
    }
}

/// `GET /v1/config/versions`: every stored version, newest first, with when it was saved.
pub(crate) async fn config_versions(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let (current, _) = kv::config_text(env).await?;
    let versions: Vec<serde_json::Value> = kv::config_versions(env)
        .await?
        .into_iter()
        .map(|(v, at)| json!({"version": v, "savedAt": at.map(crate::core::base::time::format_iso8601)}))
        .collect();
    Ok(json_response(200, &json!({"current": current, "versions": versions}))?)
}

/// `GET /v1/config/versions/{n}`: that version's document, server keys sealed as in `GET /v1/config`.
pub(crate) async fn config_version(req: Request, env: &Env, n: &str) -> ApiResult {
    require_admin(&req, env).await?;
    let bad = || ApiError::BadRequest {
        code: "invalid_version",
        message: format!("a version is a whole number from 1, not {n:?}"),
        path: "version".into(),
    };
    let version: u64 = n.parse().ok().filter(|v| *v > 0 && n.len() <= 19).ok_or_else(bad)?;
    let text = kv::config_text_of(env, version).await?.ok_or_else(|| ApiError::NotFound {
        code: "version_not_found",
        message: format!("no configuration version {version}"),
    })?;
    let mut doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    seal_server_keys(&mut doc);
    let mut resp = json_response(200, &doc)?;
    resp.headers_mut().set("x-edgecdp-config-version", &version.to_string())?;
    Ok(resp)
}
