//! HTTP plumbing for the Worker: JSON answers, origins and CORS, and fetching with a deadline.

use crate::core::base::url::UrlParts;
use crate::core::rules::Config;
use crate::edge::error::{ApiError, ApiResult};
use worker::{AbortController, Delay, Fetch, Headers, Request, Response};

/// The request's own origin (`scheme://host[:port]`).
pub fn own_origin(req: &Request) -> Option<String> {
    UrlParts::of(&href(req)).map(|u| u.origin())
}

/// Whether a browser request from `Origin` may reach the collection and decision endpoints: the site's own
/// origin always may (the snippet is served first-party); others only when a source lists them. `null` (a
/// sandboxed frame, a `file:` page, a cross-origin redirect) is a browser that hides where it is: never allowed,
/// not even by `*`.
pub fn origin_allowed(req: &Request, origin: &str, allowed: impl Fn(&str) -> bool) -> bool {
    origin != "null" && (own_origin(req).is_some_and(|own| own.eq_ignore_ascii_case(origin)) || allowed(origin))
}

/// The CORS headers of an answer to an allowed cross-origin request (`vary` is added to, the others set).
pub fn cors_headers(origin: &str) -> [(&'static str, &str); 3] {
    [("access-control-allow-origin", origin), ("access-control-allow-credentials", "true"), ("vary", "Origin")]
}

/// Adds the CORS headers for an allowed cross-origin request.
pub fn with_cors(mut resp: Response, origin: Option<&str>) -> worker::Result<Response> {
    if let Some(origin) = origin {
        let h = resp.headers_mut();
        for (name, value) in cors_headers(origin) {
            if name == "vary" {
                h.append(name, value)?;
            } else {
                h.set(name, value)?;
            }
        }
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

/// The request's URL as the runtime serialized it (absolute, WHATWG), to split with `core::base::url::UrlParts`.
pub fn href(req: &Request) -> String {
    req.inner().url()
}
