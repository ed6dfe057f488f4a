//! `GET /console/...`: the marketer's console, static files from `www/console/`, served by the Worker so that each
//! answer carries a strict Content-Security-Policy (scripts, styles and requests from this origin only; no inline
//! script, no framing). The console talks only to the public admin API, with its session (`edge::auth`). Who
//! may call: anyone may load the files (they hold no data); every datum behind them needs a session.

use crate::edge::error::ApiResult;
use worker::{Env, Request, Response};

/// The policy of every console answer. `style-src 'self'` and `script-src 'self'`: no inline code, so a script
/// injected into a profile's trait and shown by the console cannot run; `connect-src 'self'`: the API only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

pub(crate) async fn console(req: &Request, env: &Env) -> ApiResult {
    let path = req.path();
    // The assets binding ignores the host: only the path names the file (`/console/` serves its index.html).
    let mut asset = env.assets("ASSETS")?.fetch(format!("https://assets.invalid{path}"), None).await?;
    let status = asset.status_code();
    let headers = asset.headers().clone();
    let body = asset.bytes().await?;
    headers.set("content-security-policy", CSP)?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("referrer-policy", "no-referrer")?;
    headers.set("x-frame-options", "DENY")?;
    headers.set("cross-origin-opener-policy", "same-origin")?;
    headers.set("cache-control", "no-cache")?;
    Ok(Response::from_bytes(body)?.with_status(status).with_headers(headers))
}
