//! Authentication, in one place: the admin token as a bearer credential (`require_admin`, `bearer`) and the
//! console's sessions: the admin credential exchanged for an `HttpOnly` cookie that no script can read, with
//! a CSRF token for every request that changes something.
//!
//! `POST /v1/session` takes `{"token": <EDGECDP_ADMIN_TOKEN>}` and answers `{"csrf", "expiresAt"}` with the
//! cookie `edgecdp_console` (random, `HttpOnly; Secure; SameSite=Strict`, 8 hours). The session lives in KV under
//! the SHA-256 of the cookie's value (so KV never holds a usable cookie), with the digest of the admin token it
//! was opened with: rotating the token ends every session. `DELETE /v1/session` ends it (the KV entry goes).
//! Admin routes accept the session in place of the bearer token (`authorized`); a request that is not `GET` or
//! `HEAD` must also carry the session's CSRF token in `x-edgecdp-csrf` and come from this origin (or name none).
//! Who may call: `POST` anyone holding the admin token; `GET` and `DELETE` the session's holder.

use crate::core::base::encoding::{base64url_encode, hex};
use crate::core::base::time::format_iso8601;
use crate::core::model::identity::constant_time_eq;
use crate::core::rules::Config;
use crate::core::wire;
use crate::edge::clock::now;
use crate::edge::cookie;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::http::own_origin;
use crate::edge::kv;
use crate::edge::request::{from_browser, server_key_from_browser};
use serde_json::{json, Value as J};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use worker::{Env, Method, Request};

/// Checks `Authorization: Bearer <EDGECDP_ADMIN_TOKEN>`. Without a configured token every admin call is 401:
/// there is no default token.
pub async fn require_admin(req: &Request, env: &worker::Env) -> Result<(), ApiError> {
    let configured = env.var("EDGECDP_ADMIN_TOKEN").map(|v| v.to_string()).unwrap_or_default();
    if configured.is_empty() {
        return Err(ApiError::Unauthorized {
            code: "admin_disabled",
            message: "admin endpoints are disabled: EDGECDP_ADMIN_TOKEN is not set",
        });
    }
    let sent = req.headers().get("authorization")?.unwrap_or_default();
    // The bearer token (scripts), or the console's session (the session below: HttpOnly cookie, CSRF for changes).
    let ok = carries_admin_token(env, &sent) || authorized(req, env).await?;
    // Every attempt with a credential counts (`objects::guard`): a wrong one as a failure, and none is judged
    // while its address has failed too often. A request with no credential at all guesses nothing.
    let attempted = bearer(&sent).is_some() || presented(req);
    if attempted {
        crate::edge::objects::guard::attempt(env, req, ok).await?;
    }
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unauthorized { code: "invalid_admin_token", message: "missing or wrong admin bearer token" })
    }
}

/// Whether an `Authorization` value is `Bearer <EDGECDP_ADMIN_TOKEN>` (false when no token is configured). The
/// scheme is case-insensitive and may be followed by any run of spaces or tabs (RFC 9110), so every spelling a
/// client may use counts; edge delivery relies on that to keep the token from ever reaching the origin.
/// The token is read from the environment only when a bearer credential is sent: a visitor's request carries
/// none, and the read (a binding looked up, a string copied out) was 2% of a warm decision's CPU.
pub fn carries_admin_token(env: &worker::Env, authorization: &str) -> bool {
    bearer(authorization).is_some_and(|t| {
        let configured = env.var("EDGECDP_ADMIN_TOKEN").map(|v| v.to_string()).unwrap_or_default();
        !configured.is_empty() && constant_time_eq(t.as_bytes(), configured.as_bytes())
    })
}

/// The credentials of a `Bearer` `Authorization` value, whatever the case of the scheme and the spaces around.
pub fn bearer(authorization: &str) -> Option<&str> {
    let value = authorization.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    let token = rest.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub const COOKIE: &str = "edgecdp_console";
pub const CSRF_HEADER: &str = "x-edgecdp-csrf";
/// The largest sign-in body read.
const MAX_SIGN_IN_BYTES: usize = 4 * 1024;
/// How long a session lasts from sign-in (it is not extended by use).
const SESSION_SECONDS: u64 = 8 * 60 * 60;

/// `n` random bytes from the runtime's `crypto.getRandomValues`, in hex.
pub(crate) fn random_hex(n: u32) -> Result<String, ApiError> {
    random_bytes(n).map(|b| hex(&b))
}

/// Who runs an import (`POST /v1/imports` and reading its jobs): a server source by its key (its own jobs), or
/// the admin (every job). A browser source's key is public, and reaches no import.
pub(crate) enum Importer {
    Admin,
    Source(String),
}

impl Importer {
    /// Whether this caller may see the jobs of `source`.
    pub(crate) fn sees(&self, source: &str) -> bool {
        match self {
            Importer::Admin => true,
            Importer::Source(own) => own == source,
        }
    }
}

/// Reads who is importing (see `Importer`): a server key as Basic auth user name or bearer, refused from a
/// browser; else the admin token or a console session (`require_admin`).
pub(crate) async fn importer(req: &Request, env: &Env, config: &Config) -> Result<Importer, ApiError> {
    let authorization = req.headers().get("authorization")?.unwrap_or_default();
    let key =
        bearer(&authorization).map(String::from).or_else(|| wire::auth::write_key_from_basic_auth(&authorization));
    if let Some(source) = key.as_deref().and_then(|k| config.authenticate(k)) {
        if !source.is_server() {
            return Err(ApiError::Forbidden {
                code: "server_key_required",
                message: "imports need a server source's key or the admin token: a browser write key is public".into(),
                path: "Authorization",
            });
        }
        if from_browser(req) {
            return Err(server_key_from_browser(&source.id));
        }
        return Ok(Importer::Source(source.id.clone()));
    }
    require_admin(req, env).await.map(|()| Importer::Admin)
}

/// `n` random bytes from the runtime's `crypto.getRandomValues`, base64url.
fn random_token(n: u32) -> Result<String, ApiError> {
    random_bytes(n).map(|b| base64url_encode(&b))
}

fn random_bytes(n: u32) -> Result<Vec<u8>, ApiError> {
    use worker::js_sys::{global, Function, Reflect, Uint8Array};
    let unavailable = |_| ApiError::Unavailable("crypto.getRandomValues is unavailable".into());
    let crypto = Reflect::get(&global(), &"crypto".into()).map_err(unavailable)?;
    let fill: Function = Reflect::get(&crypto, &"getRandomValues".into()).map_err(unavailable)?.into();
    let bytes = Uint8Array::new_with_length(n);
    fill.call1(&crypto, &bytes).map_err(unavailable)?;
    Ok(bytes.to_vec())
}

fn digest(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn key_of(session: &str) -> String {
    ["session:", &digest(session)].concat()
}

fn admin_token(env: &Env) -> String {
    env.var("EDGECDP_ADMIN_TOKEN").map(|v| v.to_string()).unwrap_or_default()
}

/// The session cookie's value on the request, if any.
fn cookie(req: &Request) -> Option<String> {
    crate::edge::cookie::values(req, COOKIE).into_iter().find(|v| !v.is_empty() && v.len() <= 64)
}

/// A request from a browser page of another origin: it may not open or use a session.
fn foreign(req: &Request) -> Result<bool, ApiError> {
    let origin = req.headers().get("origin")?;
    Ok(origin.is_some_and(|o| own_origin(req).is_none_or(|own| !own.eq_ignore_ascii_case(&o))))
}

/// The session a request carries, when it is valid for the admin token in force: its KV record.
async fn current(req: &Request, env: &Env) -> Result<Option<J>, ApiError> {
    let Some(session) = cookie(req) else { return Ok(None) };
    let token = admin_token(env);
    if token.is_empty() {
        return Ok(None);
    }
    let store = kv::store(env)?;
    let Some(text) = store.get(&key_of(&session)).text().await.map_err(|e| ApiError::Unavailable(e.to_string()))?
    else {
        return Ok(None);
    };
    let record: J = serde_json::from_str(&text).unwrap_or_default();
    let live = record["expires"].as_i64().is_some_and(|e| e > now());
    let same_token =
        record["token"].as_str().is_some_and(|t| constant_time_eq(t.as_bytes(), digest(&token).as_bytes()));
    Ok((live && same_token).then_some(record))
}

/// Whether the request carries a console session cookie at all (valid or not): an attempt, for the guard.
pub fn presented(req: &Request) -> bool {
    cookie(req).is_some()
}

/// Whether the request is an admin's by its console session (see the module). A session used for a change
/// without its CSRF token, or from another origin, is refused outright.
pub async fn authorized(req: &Request, env: &Env) -> Result<bool, ApiError> {
    let Some(record) = current(req, env).await? else { return Ok(false) };
    if matches!(req.method(), Method::Get | Method::Head) {
        return Ok(true);
    }
    let sent = req.headers().get(CSRF_HEADER)?.unwrap_or_default();
    let expected = record["csrf"].as_str().unwrap_or_default();
    if foreign(req)? || expected.is_empty() || !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::Forbidden {
            code: "csrf_required",
            message:
                "a change made with the console's session needs its CSRF token in x-edgecdp-csrf, from this origin"
                    .into(),
            path: CSRF_HEADER,
        });
    }
    Ok(true)
}

fn set_cookie(value: &str, max_age: u64) -> String {
    format!("{COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

/// `POST /v1/session`: signs in with the admin token.
pub async fn sign_in(mut req: Request, env: &Env) -> ApiResult {
    if foreign(&req)? {
        return Err(ApiError::Forbidden {
            code: "foreign_origin",
            message: "the console signs in from this Worker's own origin only".into(),
            path: "Origin",
        });
    }
    let token = admin_token(env);
    if token.is_empty() {
        return Err(ApiError::Unauthorized {
            code: "admin_disabled",
            message: "admin endpoints are disabled: EDGECDP_ADMIN_TOKEN is not set",
        });
    }
    // An admin token is short: a larger body is refused (413) before it is read whole.
    let body = crate::edge::request::body(&mut req, MAX_SIGN_IN_BYTES).await?;
    let sent: J = serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest {
        code: "invalid_json",
        message: "expected {\"token\": \"<the admin token>\"}".into(),
        path: String::new(),
    })?;
    let Some(sent) = sent.get("token").and_then(J::as_str) else {
        return Err(ApiError::BadRequest {
            code: "missing_field",
            message: "token is required: the admin token".into(),
            path: "token".into(),
        });
    };
    let ok = constant_time_eq(sent.as_bytes(), token.as_bytes());
    crate::edge::objects::guard::attempt(env, &req, ok).await?;
    if !ok {
        return Err(ApiError::Unauthorized { code: "invalid_admin_token", message: "wrong admin token" });
    }
    let session = random_token(32)?;
    let csrf = random_token(24)?;
    let expires = now() + (SESSION_SECONDS as i64) * 1000;
    let record = json!({"csrf": csrf, "expires": expires, "token": digest(&token)});
    let store = kv::store(env)?;
    let unavailable = |e: worker::kv::KvError| ApiError::Unavailable(e.to_string());
    kv::put_text(&store, &key_of(&session), &record.to_string())
        .map_err(unavailable)?
        .expiration_ttl(SESSION_SECONDS)
        .execute()
        .await
        .map_err(unavailable)?;
    let mut resp = json_response(200, &json!({"csrf": csrf, "expiresAt": format_iso8601(expires)}))?;
    resp.headers_mut().set("set-cookie", &set_cookie(&session, SESSION_SECONDS))?;
    Ok(resp)
}

/// `GET /v1/session`: the session's CSRF token and expiry (the console reads it after a reload).
pub async fn session_get(req: Request, env: &Env) -> ApiResult {
    match current(&req, env).await? {
        Some(r) => Ok(json_response(
            200,
            &json!({"csrf": r["csrf"], "expiresAt": format_iso8601(r["expires"].as_i64().unwrap_or(0))}),
        )?),
        None => Err(ApiError::Unauthorized { code: "no_session", message: "not signed in" }),
    }
}

/// `DELETE /v1/session`: signs out; the session is gone from KV and the cookie cleared.
pub async fn sign_out(req: Request, env: &Env) -> ApiResult {
    if !authorized(&req, env).await? {
        return Err(ApiError::Unauthorized { code: "no_session", message: "not signed in" });
    }
    if let Some(session) = cookie(&req) {
        let store = kv::store(env)?;
        store.delete(&key_of(&session)).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    }
    let mut resp = json_response(200, &json!({"signedOut": true}))?;
    resp.headers_mut().set("set-cookie", &set_cookie("", 0))?;
    Ok(resp)
}

/// Reads who is calling and what it may ask. A server credential is a server source's key (`Authorization:
/// Bearer <key>` or Basic with the key as user name) or the admin token, and is refused from a browser origin.
/// Without one, the caller acts only for its own visitor: naming a user id is refused, and a consent grant in the
/// request (`?personalization=true`, `context.consent`) counts only for the visitor of the cookie, so nobody can
/// override another person's recorded refusal (a refusal always counts). Answers the visitor of a valid signed
/// cookie, if the request has one.
pub(crate) fn caller(
    req: &Request,
    env: &Env,
    config: &Config,
    user_id: Option<&str>,
    consent: &mut Option<BTreeMap<String, bool>>,
) -> Result<Option<String>, ApiError> {
    let authorization = req.headers().get("authorization")?.unwrap_or_default();
    let key =
        bearer(&authorization).map(String::from).or_else(|| wire::auth::write_key_from_basic_auth(&authorization));
    let server = key.as_deref().and_then(|k| config.authenticate(k)).filter(|s| s.is_server());
    let credentialed = server.is_some() || carries_admin_token(env, &authorization);
    if credentialed && from_browser(req) {
        return Err(server_key_from_browser(server.map_or("admin", |s| s.id.as_str())));
    }
    let cookie_id = cookie::secret(env).and_then(|s| cookie::id_from(req, &s));
    if !credentialed && user_id.is_some() {
        return Err(ApiError::Forbidden {
            code: "credential_required",
            message: "deciding for a userId needs a server credential (a server source's key); a browser decides for \
                      its own visitor (the cookie, or anonymousId)"
                .into(),
            path: "userId",
        });
    }
    if !credentialed && cookie_id.is_none() {
        if let Some(consent) = consent {
            consent.retain(|_, granted| !*granted);
        }
    }
    Ok(cookie_id)
}
