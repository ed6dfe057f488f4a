//! HTTP plumbing for the Worker: the one place where errors become status codes and JSON bodies, and the
//! CORS and admin-token rules.

use crate::core::base::url::UrlParts;
use crate::core::model::identity::constant_time_eq;
use crate::core::rules::{Config, ConfigError};
use crate::core::wire::BodyError;
use serde_json::json;
use worker::{AbortController, Delay, Fetch, Headers, Request, Response};

/// Every failure a handler can answer with. Bad input never becomes a 500; only the store being unreachable
/// answers 503, and only the site's origin being unreachable (edge delivery) answers 502.
#[derive(Debug)]
pub enum ApiError {
    Body(BodyError),
    BadRequest {
        code: &'static str,
        message: String,
        path: String,
    },
    Unauthorized {
        code: &'static str,
        message: &'static str,
    },
    Forbidden {
        code: &'static str,
        message: String,
        /// The request field the refusal is about (`userId`), or empty.
        path: &'static str,
    },
    NotFound {
        code: &'static str,
        message: String,
    },
    Conflict {
        code: &'static str,
        message: String,
    },
    /// 412: a conditional write (`If-Match`) based on a version that is no longer current.
    PreconditionFailed {
        code: &'static str,
        message: String,
    },
    /// 429: too many failed attempts at an admin credential from this address (`objects::guard`), with the
    /// seconds to wait (its `Retry-After` header).
    TooManyRequests {
        retry_after_seconds: u64,
    },
    /// 405, with the methods the resource does answer (its `Allow` header).
    MethodNotAllowed(&'static str),
    /// 415: a body in a content coding the Worker does not read (`Content-Encoding: br`).
    UnsupportedEncoding(String),
    InvalidConfig(Vec<ConfigError>),
    Unavailable(String),
    /// The site's origin could not be reached (edge delivery). The detail is logged, not shown to visitors.
    BadGateway(String),
    /// The site's origin did not begin answering within `delivery.timeout` (edge delivery). Logged, as above.
    GatewayTimeout(String),
    /// 508: `delivery.origin` leads back to this Worker (edge delivery). Logged, as above.
    LoopDetected(String),
}

impl From<worker::Error> for ApiError {
    fn from(e: worker::Error) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<worker::KvError> for ApiError {
    fn from(e: worker::KvError) -> Self {
        ApiError::Unavailable(format!("{e:?}"))
    }
}

pub type ApiResult = Result<Response, ApiError>;

impl ApiError {
    pub fn into_response(self) -> worker::Result<Response> {
        let allow = match &self {
            ApiError::MethodNotAllowed(methods) => Some(*methods),
            _ => None,
        };
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after_seconds } => Some(*retry_after_seconds),
            _ => None,
        };
        let (status, code, message, path, extra) = match self {
            ApiError::Body(e) => {
                let status = if matches!(e, BodyError::TooLarge { .. }) { 413 } else { 400 };
                let code = e.code();
                match e {
                    BodyError::NotJson(m) => (status, code, m, String::new(), None),
                    BodyError::Shape { path, message } => (status, code, message, path, None),
                    BodyError::TooLarge { limit } => {
                        (status, code, format!("request body is larger than {limit} bytes"), String::new(), None)
                    }
                }
            }
            ApiError::BadRequest { code, message, path } => (400, code, message, path, None),
            ApiError::Unauthorized { code, message } => (401, code, message.to_string(), String::new(), None),
            ApiError::Forbidden { code, message, path } => (403, code, message, path.to_string(), None),
            ApiError::NotFound { code, message } => (404, code, message, String::new(), None),
            ApiError::Conflict { code, message } => (409, code, message, String::new(), None),
            ApiError::PreconditionFailed { code, message } => (412, code, message, String::new(), None),
            ApiError::TooManyRequests { retry_after_seconds } => {
                let message = format!(
                    "too many failed attempts at an admin credential from this address; retry in {retry_after_seconds} s"
                );
                (429, "too_many_attempts", message, String::new(), None)
            }
            ApiError::MethodNotAllowed(_) => {
                (405, "method_not_allowed", "method not allowed on this path".to_string(), String::new(), None)
            }
            ApiError::UnsupportedEncoding(coding) => {
                let message = format!("Content-Encoding {coding:?} is not supported; send gzip, deflate or none");
                (415, "unsupported_content_encoding", message, "Content-Encoding".to_string(), None)
            }
            ApiError::InvalidConfig(errors) => {
                let first = errors.first().map(|e| e.path.clone()).unwrap_or_default();
                let problems: Vec<_> = errors.iter().map(|e| json!({"path": e.path, "message": e.message})).collect();
                (
                    400,
                    "invalid_config",
                    format!(
                        "the configuration has {} problem(s); the previous configuration stays in force",
                        errors.len()
                    ),
                    first,
                    Some(problems),
                )
            }
            // Failures of what the Worker depends on: the detail goes to the log, the visitor gets a fixed message.
            ApiError::Unavailable(detail) => {
                worker::console_error!("store unavailable: {detail}");
                (503, "store_unavailable", "the profile store is unavailable; retry later".into(), String::new(), None)
            }
            ApiError::BadGateway(detail) => {
                worker::console_error!("origin unreachable: {detail}");
                (502, "origin_unreachable", "the site's origin did not answer; retry later".into(), String::new(), None)
            }
            ApiError::LoopDetected(detail) => {
                worker::console_error!("edge delivery loop: {detail}");
                let message = "the site's origin leads back to this Worker; check delivery.origin".into();
                (508, "proxy_loop", message, String::new(), None)
            }
            ApiError::GatewayTimeout(detail) => {
                worker::console_error!("origin timed out: {detail}");
                let message = "the site's origin took too long to answer; retry later".into();
                (504, "origin_timeout", message, String::new(), None)
            }
        };
        let mut body = json!({"error": {"code": code, "message": message, "path": path}});
        if let Some(problems) = extra {
            body["problems"] = json!(problems);
        }
        let mut resp = json_response(status, &body)?;
        if let Some(methods) = allow {
            resp.headers_mut().set("allow", methods)?;
        }
        if let Some(seconds) = retry_after {
            resp.headers_mut().set("retry-after", &seconds.to_string())?;
        }
        Ok(resp)
    }
}

pub fn json_response(status: u16, body: &serde_json::Value) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_bytes(body.to_string().into_bytes())?.with_status(status).with_headers(headers))
}

/// The request's own origin (`scheme://host[:port]`).
pub fn own_origin(req: &Request) -> Option<String> {
    UrlParts::of(&super::request::href(req)).map(|u| u.origin())
}

/// Whether a browser request from `Origin` may reach the collection and decision endpoints: the site's own
/// origin always may (the snippet is served first-party); others only when a source lists them. `null` (a
/// sandboxed frame, a `file:` page, a cross-origin redirect) is a browser that hides where it is: never allowed,
/// not even by `*`.
pub fn origin_allowed(req: &Request, origin: &str, allowed: impl Fn(&str) -> bool) -> bool {
    origin != "null" && (own_origin(req).is_some_and(|own| own.eq_ignore_ascii_case(origin)) || allowed(origin))
}

/// Adds the CORS headers for an allowed cross-origin request.
pub fn with_cors(mut resp: Response, origin: Option<&str>) -> worker::Result<Response> {
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        h.set("access-control-allow-origin", origin)?;
        h.set("access-control-allow-credentials", "true")?;
        h.append("vary", "Origin")?;
    }
    Ok(resp)
}

/// Answers a CORS preflight, for the endpoints a page may call only (`for_pages`: collection, decisions,
/// impressions, the demo's sign-in): admin and profile endpoints are never readable from a browser origin.
pub fn preflight(req: &Request, config: &Config, for_pages: bool, methods: &str) -> ApiResult {
    let origin = req.headers().get("origin")?.unwrap_or_default();
    if !for_pages {
        return Err(ApiError::Forbidden {
            code: "cors_not_allowed",
            message: "this endpoint is not for browsers: call it from a server".into(),
            path: "",
        });
    }
    if origin.is_empty() || !origin_allowed(req, &origin, |o| config.any_source_allows_origin(o)) {
        return Err(ApiError::Forbidden {
            code: "origin_not_allowed",
            message: format!("origin {origin:?} is not allowed"),
            path: "",
        });
    }
    let resp = Response::empty()?.with_status(204);
    let resp = with_cors(resp, Some(&origin))?;
    let h = Headers::new();
    for (k, v) in resp.headers().entries() {
        h.set(&k, &v)?;
    }
    h.set("access-control-allow-methods", methods)?;
    // `x-retry-count`: analytics.js numbers its retries in it. `anonymousid`, `sentat` and `rsa-*`: RudderStack's
    // JavaScript SDK sends them on every event, and on retried or recovered ones.
    h.set(
        "access-control-allow-headers",
        "authorization, content-type, x-retry-count, anonymousid, sentat, rsa-retry-attempt, rsa-since-last-attempt, \
         rsa-since-first-attempt, rsa-retry-reason, rsa-recovered",
    )?;
    h.set("access-control-max-age", "86400")?;
    Ok(resp.with_headers(h))
}

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
    // The bearer token (scripts), or the console's session (`edge::session`: HttpOnly cookie, CSRF for changes).
    let ok = carries_admin_token(env, &sent) || crate::edge::session::authorized(req, env).await?;
    // Every attempt with a credential counts (`objects::guard`): a wrong one as a failure, and none is judged
    // while its address has failed too often. A request with no credential at all guesses nothing.
    let attempted = bearer(&sent).is_some() || crate::edge::session::presented(req);
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
pub fn carries_admin_token(env: &worker::Env, authorization: &str) -> bool {
    let configured = env.var("EDGECDP_ADMIN_TOKEN").map(|v| v.to_string()).unwrap_or_default();
    !configured.is_empty()
        && bearer(authorization).is_some_and(|t| constant_time_eq(t.as_bytes(), configured.as_bytes()))
}

/// The credentials of a `Bearer` `Authorization` value, whatever the case of the scheme and the spaces around.
pub fn bearer(authorization: &str) -> Option<&str> {
    let value = authorization.trim_matches([' ', '\t']);
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    let token = rest.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Fetches `request`, giving the other side `timeout_ms` to begin answering (status and headers): `None` when it
/// did not, and the fetch is then aborted so nothing keeps running for it. Edge delivery (the site's origin) and
/// journey sends (a destination) both go out this way.
pub async fn fetch_within(request: Request, timeout_ms: i64) -> Option<worker::Result<Response>> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let sending = fetch.send_with_signal(&signal);
    let waiting = Delay::from(std::time::Duration::from_millis(timeout_ms.max(0) as u64));
    futures_util::pin_mut!(sending, waiting);
    match futures_util::future::select(sending, waiting).await {
        futures_util::future::Either::Left((answer, _)) => Some(answer),
        futures_util::future::Either::Right(_) => {
            controller.abort();
            None
        }
    }
}
