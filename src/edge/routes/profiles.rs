//! `GET`/`DELETE /v1/profiles/{type}:{value}`, `.../export`, `.../split` and `.../preview`: access, erasure, undoing a
//! merge, and what the person would be shown. Who may call: the admin token (or the console's session) only.

use crate::core::base::encoding::percent_decode_path;
use crate::core::base::sort::CollectInto;
use crate::core::engine::evaluate::{computed_of, scores_of, segments_of};
use crate::core::model::context::Context as DecideContext;
use crate::core::model::identity::Identity;
use crate::core::wire::{self, BodyError};
use crate::core::writer::protocol::{Reply, Request as ObjectRequest};
use crate::edge::auth::require_admin;
use crate::edge::clock::now;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::kv;
use crate::edge::objects::profile_client;
use crate::edge::request::body;
use serde_json::json;
use worker::{Env, Request, Response};

/// Resolves `{type}:{value}` from the path to an identity.
pub(crate) fn identity_from_path(key: &str) -> Result<(Identity, String), ApiError> {
    let decoded = percent_decode_path(key);
    let identity = Identity::parse_key(&decoded).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_identity",
        message: "expected {type}:{value}, for example anonymous_id:abc".into(),
        path: "identity".into(),
    })?;
    Ok((identity, decoded))
}

pub(crate) fn no_profile(decoded: &str) -> ApiError {
    ApiError::NotFound { code: "profile_not_found", message: format!("no profile for {decoded}") }
}

/// `GET /v1/profiles/{type}:{value}` and, with `export`, `.../export` (everything held, for access requests).
pub(crate) async fn profile_get(req: Request, env: &Env, key: &str, export: bool) -> ApiResult {
    require_admin(&req, env).await?;
    let (identity, decoded) = identity_from_path(key)?;
    // An access request shows everything held, which the KV snapshot leaves out in part (the remembered message
    // ids, merge records): it reads the object.
    let profile = if export {
        profile_client::lookup_whole(env, vec![identity]).await?
    } else {
        profile_client::lookup(env, vec![identity]).await?
    };
    let profile = profile.ok_or_else(|| no_profile(&decoded))?;
    let (_, config) = kv::config(env).await?;
    let now = now();
    // Outside a request for a page, segments on the page or request context do not hold.
    let cx = DecideContext::default();
    let segments = segments_of(&config, &profile, &cx, now);
    let computed = computed_of(&config, &profile, now);
    let mut body = if export {
        profile.export_json(&segments, &computed, now)
    } else {
        profile.to_json(&segments, &computed, now)
    };
    if export {
        // Every delivery outcome recorded for this person (and the profiles merged into it), from the log in D1.
        let mut ids: Vec<String> = profile.merges.iter().map(|m| m.absorbed_id.clone()).collect();
        ids.push(profile.id.clone());
        let db = crate::edge::outlets::log(env).await?;
        let log = crate::edge::outlets::rows(&db, &crate::core::wire::deliveries::log_of(&ids)).await?;
        body["deliveries"] = log
            .iter()
            .map(|r| {
                let at = r.get(7).and_then(serde_json::Value::as_i64).unwrap_or(0);
                // Row numbers above 0 are failed attempts; 0 is the final outcome and below 0 deferrals.
                let attempt = r.get(1).and_then(serde_json::Value::as_i64).filter(|n| *n > 0);
                json!({"id": r.first(), "attempt": attempt, "destination": r.get(2), "journey": r.get(3),
                    "step": r.get(4), "outcome": r.get(5), "reason": r.get(6),
                    "at": crate::core::base::time::format_iso8601(at)})
            })
            .collect();
    }
    let scores = scores_of(&config, &profile, &cx, now);
    body["scores"] = config.scores.iter().zip(scores).map(|(s, v)| (s.id.clone(), json!(v))).collect_json();
    // The predictions now, or at `?at=` (an operator asking what they were or will be with nothing new).
    let at = match crate::edge::request::query_param(&req, "at")? {
        None => now,
        Some(t) => crate::core::base::time::parse_iso8601(&t).ok_or_else(|| ApiError::BadRequest {
            code: "invalid_at",
            message: "at must be an ISO 8601 instant such as 2026-12-01T00:00:00Z".into(),
            path: "at".into(),
        })?,
    };
    body["predictions"] = crate::core::engine::predict::explain(&config, &profile, at);
    Ok(json_response(200, &body)?)
}

/// `DELETE /v1/profiles/{type}:{value}`: erases the profile, its identity index entries and its writer's storage.
pub(crate) async fn profile_delete(req: Request, env: &Env, key: &str) -> ApiResult {
    require_admin(&req, env).await?;
    let (identity, decoded) = identity_from_path(key)?;
    let store = kv::store(env)?;
    let indexed = kv::profile_id_of(&store, &identity).await?.ok_or_else(|| no_profile(&decoded))?;
    // The index may name a profile that was merged away (a tombstone): the person's data is in the profile it
    // moved to, so the erasure follows it there. Only an erasure that reached a profile answers 204.
    // The tombstones on the way stay until the profile is erased, so a failure further on can be retried from
    // the same index entry; then they go too.
    let erased = profile_client::follow(env, &indexed, ObjectRequest::Erase).await?;
    if !matches!(erased.reply, Reply::Erased { .. }) {
        return Err(profile_client::unexpected(&erased.reply));
    }
    let profile_id = erased.profile_id;
    for tombstone in &erased.passed {
        profile_client::ask(env, tombstone, &ObjectRequest::Forget).await?;
    }
    // An identity the survivor refused still leads to the tombstone; it must not outlive the person.
    if indexed != profile_id {
        let key = identity.index_key();
        if kv::profile_id_of(&store, &identity).await?.as_deref() == Some(indexed.as_str()) {
            kv::mark_erased(&store, &identity).await?;
            store.delete(&key).await?;
        }
    }
    Ok(Response::empty()?.with_status(204))
}

/// `POST /v1/profiles/{type}:{value}/split` with `{"profileId": "p_..."}`: undoes the merge in which the profile
/// absorbed that profile; both profiles exist again afterwards.
pub(crate) async fn profile_split(mut req: Request, env: &Env, key: &str) -> ApiResult {
    require_admin(&req, env).await?;
    let (identity, decoded) = identity_from_path(key)?;
    let bytes = body(&mut req, wire::MAX_EVENT_BYTES).await?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Body(BodyError::NotJson(format!("body is not valid JSON: {e}"))))?;
    let absorbed = doc.get("profileId").and_then(|v| v.as_str()).filter(|s| !s.is_empty()).ok_or_else(|| {
        ApiError::BadRequest {
            code: "missing_field",
            message: "profileId (the absorbed profile to split off) is required".into(),
            path: "profileId".into(),
        }
    })?;
    let store = kv::store(env)?;
    let profile_id = kv::profile_id_of(&store, &identity).await?.ok_or_else(|| no_profile(&decoded))?;
    let request = ObjectRequest::Split { absorbed: absorbed.to_string() };
    match profile_client::follow(env, &profile_id, request).await?.reply {
        Reply::Split { profiles } => Ok(json_response(200, &serde_json::json!({"profiles": profiles}))?),
        other => Err(profile_client::unexpected(&other)),
    }
}

/// `POST /v1/profiles/{type}:{value}/preview`: every slot's decision for this person with its explanation, for
/// a page URL, country, device and time the caller picks (`{"context": {"page": {"url"}, "location": {"country"},
/// "utcOffset"}, "device", "at", "slots"?}`; all slots when none are named). The person's recorded consent
/// applies; nothing is recorded (no impression, no exposure).
pub(crate) async fn profile_preview(mut req: Request, env: &Env, key: &str) -> ApiResult {
    require_admin(&req, env).await?;
    let (identity, decoded) = identity_from_path(key)?;
    let bytes = body(&mut req, wire::MAX_EVENT_BYTES).await?;
    let mut doc: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Body(BodyError::NotJson(e.to_string())))?;
    if !doc.is_object() {
        return Err(ApiError::Body(BodyError::Shape {
            path: String::new(),
            message: "body must be a JSON object".into(),
        }));
    }
    let (_, config) = kv::config(env).await?;
    let at = match doc.get("at").filter(|v| !v.is_null()) {
        None => now(),
        Some(v) => v.as_str().and_then(crate::core::base::time::parse_iso8601).ok_or_else(|| {
            ApiError::Body(BodyError::Shape { path: "at".into(), message: "expected an ISO 8601 date-time".into() })
        })?,
    };
    let device = match doc.get("device").filter(|v| !v.is_null()) {
        None => None,
        Some(v) => Some(v.as_str().and_then(crate::core::model::context::Device::parse).ok_or_else(|| {
            ApiError::Body(BodyError::Shape {
                path: "device".into(),
                message: "expected mobile, tablet, desktop or bot".into(),
            })
        })?),
    };
    if doc.get("slots").is_none_or(|s| s.as_array().is_some_and(|a| a.is_empty())) {
        doc["slots"] = config.slots.keys().cloned().collect();
    }
    let request = wire::decide::decide_request(&doc).map_err(ApiError::Body)?;
    let profile = profile_client::lookup(env, vec![identity]).await?.ok_or_else(|| no_profile(&decoded))?;
    let mut cx = request.context();
    cx.device = device.or(cx.device);
    let subject = crate::core::model::consent::permit_personalization(
        &config.consent,
        &profile,
        None,
        &crate::core::model::consent::RequestSignals::default(),
    );
    let decision = crate::core::engine::decide::explain(&config, subject, &cx, &request.slots, at);
    let mut answer = decision.to_json_explained();
    answer["at"] = json!(crate::core::base::time::format_iso8601(at));
    Ok(json_response(200, &answer)?)
}
