//! The edge's one error type, at the bottom of its order: every failure a route, an object or a consumer can
//! answer with, and the one place where errors become status codes and JSON bodies (with a code, a message and
//! the path of the bad field).

use crate::core::rules::ConfigError;
use crate::core::wire::BodyError;
use serde_json::json;
use worker::{Headers, Response};

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
    /// 415: a body of a type the endpoint does not read (an import that is neither CSV nor NDJSON).
    UnsupportedMediaType(String),
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
    /// The status and the error's code, message and path (and a configuration's problems), as answered.
    fn parts(&self) -> (u16, &'static str, String, String, Option<Vec<serde_json::Value>>) {
        match self {
            ApiError::Body(e) => {
                let status = if matches!(e, BodyError::TooLarge { .. }) { 413 } else { 400 };
                let code = e.code();
                match e {
                    BodyError::NotJson(m) => (status, code, m.clone(), String::new(), None),
                    BodyError::Shape { path, message } => (status, code, message.clone(), path.clone(), None),
                    BodyError::TooLarge { limit } => {
                        (status, code, format!("request body is larger than {limit} bytes"), String::new(), None)
                    }
                }
            }
            ApiError::BadRequest { code, message, path } => (400, code, message.clone(), path.clone(), None),
            ApiError::Unauthorized { code, message } => (401, code, message.to_string(), String::new(), None),
            ApiError::Forbidden { code, message, path } => (403, code, message.clone(), path.to_string(), None),
            ApiError::NotFound { code, message } => (404, code, message.clone(), String::new(), None),
            ApiError::Conflict { code, message } => (409, code, message.clone(), String::new(), None),
            ApiError::PreconditionFailed { code, message } => (412, code, message.clone(), String::new(), None),
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
            ApiError::UnsupportedMediaType(t) => {
                let message = format!("Content-Type {t:?} is not read here; send text/csv or application/x-ndjson");
                (415, "unsupported_media_type", message, "Content-Type".to_string(), None)
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
        }
    }

    /// The error's `{code, message, path}`, as a job records why it failed.
    pub fn to_json(&self) -> serde_json::Value {
        let (_, code, message, path, _) = self.parts();
        json!({"code": code, "message": message, "path": path})
    }

    pub fn into_response(self) -> worker::Result<Response> {
        let allow = match &self {
            ApiError::MethodNotAllowed(methods) => Some(*methods),
            _ => None,
        };
        let retry_after = match &self {
            ApiError::TooManyRequests { retry_after_seconds } => Some(*retry_after_seconds),
            _ => None,
        };
        let (status, code, message, path, extra) = self.parts();
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

/// The content type of every JSON answer.
pub const JSON_TYPE: &str = "application/json; charset=utf-8";

/// A JSON answer that no cache keeps.
pub fn json_response(status: u16, body: &serde_json::Value) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", JSON_TYPE)?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_bytes(body.to_string().into_bytes())?.with_status(status).with_headers(headers))
}
