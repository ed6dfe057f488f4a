//! `POST /v1/demo/identity-token`, the demo shop's sign-in. Who may call: anyone, which is why it exists only with `demo.signIn` in the configuration.

use crate::core::engine::merge::is_junk;
use crate::core::model::trust::{make_identity_token, make_identity_token_proving_email, MAX_CONTACT_CHARS};
use crate::core::wire::{self, BodyError};
use crate::edge::clock::now;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::http::with_cors;
use crate::edge::kv;
use crate::edge::request::{allowed_origin, body, identity_secrets};
use serde_json::json;
use worker::{Env, Request};

/// `POST /v1/demo/identity-token` with `{"userId": "..."}`: the demo shop's sign-in. It signs an identity token
/// (`core::model::trust`, valid for an hour) for whatever user id it is asked, as a site's backend would after a real
/// login, so the demo shows the verified path. Anyone may call it, which is why it exists only when the
/// configuration says `"demo": {"signIn": true}` (404 otherwise), and why the Worker warns at every load then.
pub(crate) async fn demo_identity_token(mut req: Request, env: &Env) -> ApiResult {
    let (_, config) = kv::config(env).await?;
    let not_found = || ApiError::NotFound { code: "not_found", message: "no route for /v1/demo/identity-token".into() };
    if !config.demo_sign_in {
        return Err(not_found());
    }
    let origin = allowed_origin(&req, &config)?;
    let secrets = identity_secrets(env);
    let Some(secret) = secrets.first() else {
        return Err(ApiError::Unavailable("the demo sign-in needs EDGECDP_IDENTITY_SECRET".into()));
    };
    let bytes = body(&mut req, wire::MAX_EVENT_BYTES).await?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::Body(BodyError::NotJson(format!("body is not valid JSON: {e}"))))?;
    let user_id = doc
        .get("userId")
        .and_then(|v| v.as_str())
        .filter(|u| !u.trim().is_empty() && u.chars().count() <= wire::MAX_ID_CHARS && !is_junk(&config.identity, u))
        .ok_or_else(|| ApiError::BadRequest {
            code: "invalid_user_id",
            message: format!("userId must be a non-empty string of at most {} characters", wire::MAX_ID_CHARS),
            path: "userId".into(),
        })?;
    // A real site proves an address only once it has verified it (a link sent to it); the demo takes the one
    // typed, so that its journeys' e-mails reach the demo's own receiver (SECURITY.md: contact points).
    let email = match doc.get("email") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(e)) if e.contains('@') && e.chars().count() <= MAX_CONTACT_CHARS => {
            Some(e.trim())
        }
        Some(_) => {
            return Err(ApiError::BadRequest {
                code: "invalid_email",
                message: format!("email must be an e-mail address of at most {MAX_CONTACT_CHARS} characters"),
                path: "email".into(),
            })
        }
    };
    let now = now();
    let expires_at = now + 3_600_000;
    let token = match email {
        Some(email) => make_identity_token_proving_email(secret, user_id, email, now, expires_at),
        None => make_identity_token(secret, user_id, now, expires_at),
    };
    Ok(with_cors(json_response(200, &json!({"token": token, "expiresAt": expires_at}))?, origin.as_deref())?)
}
