//! `POST /v1/batch` and the single-event endpoints (`edge::collecting`), and the settings documents Segment's and
//! RudderStack's SDKs load. Who may call: any source with its write key (a browser source from its listed
//! origins) or server key.

use crate::core::rules::sources::Source;
use crate::core::rules::Config;
use crate::core::wire::events::CallType;
use crate::core::wire::{self, MAX_BATCH_BYTES};
use crate::edge::collecting::Collecting;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::http::with_cors;
use crate::edge::kv;
use crate::edge::objects::profile_client;
use crate::edge::request::{body, origin_allowed_by, query_param};
use worker::{Env, Request};

/// `POST /v1/batch` and the single-event endpoints; `query_key` is the write key a beacon sends in its URL
/// (`/beacon/v1/batch?writeKey=...`), used when the request has no Basic auth. What follows the body's read is
/// `edge::collecting`, which the JavaScript shell carries out too.
pub(crate) async fn collect(
    mut req: Request,
    env: &Env,
    call: Option<CallType>,
    query_key: Option<String>,
) -> ApiResult {
    let bytes = body(&mut req, MAX_BATCH_BYTES).await?;
    let in_force = kv::config(env).await?;
    let mut c = Collecting::start(&req, env, in_force, call, query_key, &bytes)?;
    profile_client::drive(env, &mut c).await?;
    c.into_answer()?.into_response()
}

/// `GET /v1/projects/{writeKey}/settings`: what Segment's analytics.js loads from its `cdnURL` before sending
/// (`core::wire::settings`), with this Worker as the place its events go. Who may call: anyone, for a browser
/// source's public write key, from one of that source's origins (or with no origin); a server key is never
/// answered, so this cannot tell whether one is right.
pub(crate) async fn segment_settings(req: Request, env: &Env, key: &str) -> ApiResult {
    let (_, config) = kv::config(env).await?;
    let source = browser_source(&config, key)?;
    let origin = origin_allowed_by(&req, |o| source.allows_origin(o))?;
    // Where events go: the configured public origin (`EDGECDP_PUBLIC_ORIGIN`, checked like `delivery.origin`)
    // when there is one, so a forged `Host` cannot point analytics.js elsewhere; else the address this request
    // reached, which on Cloudflare is a host the zone routes to this Worker. The answer varies with `Host` then.
    let configured = env.var("EDGECDP_PUBLIC_ORIGIN").ok().map(|v| v.to_string()).filter(|v| !v.is_empty());
    let configured = match configured {
        Some(v) => Some(
            crate::core::rules::delivery::parse_origin(&v)
                .map_err(|why| ApiError::Unavailable(format!("EDGECDP_PUBLIC_ORIGIN {v:?} is not an origin: {why}")))?,
        ),
        None => None,
    };
    let own = configured.clone().or_else(|| crate::edge::http::own_origin(&req)).unwrap_or_default();
    let (scheme, host) = own.split_once("://").unwrap_or(("https", own.as_str()));
    let body = crate::core::wire::settings::segment_settings(key, &format!("{host}/v1"), scheme);
    let mut resp = with_cors(json_response(200, &body)?, origin.as_deref())?;
    if configured.is_none() {
        resp.headers_mut().append("vary", "Host")?;
    }
    Ok(resp)
}

/// A browser source by its write key: what a settings document may be given for (a server key never is).
fn browser_source<'c>(config: &'c Config, key: &str) -> Result<&'c Source, ApiError> {
    config.authenticate(key).filter(|s| !s.is_server()).ok_or_else(|| ApiError::NotFound {
        code: "unknown_write_key",
        message: "no browser source has this write key".into(),
    })
}

/// `GET /sourceConfig/`: RudderStack's JavaScript SDK v3 asks its `configUrl` for the source's configuration, with
/// the write key as `?writeKey=` and as Basic auth. Who may call: anyone with a browser source's write key (public
/// by design), from that source's origins when the request comes from a page.
pub(crate) async fn rudderstack_source_config(req: Request, env: &Env) -> ApiResult {
    let header_key = req.headers().get("authorization")?.and_then(|h| wire::auth::write_key_from_basic_auth(&h));
    let key = header_key.or(query_param(&req, "writeKey")?).ok_or(ApiError::Unauthorized {
        code: "missing_write_key",
        message: "send the write key as ?writeKey= or as the Basic auth user name",
    })?;
    let (_, config) = kv::config(env).await?;
    let source = browser_source(&config, &key)?;
    let origin = origin_allowed_by(&req, |o| source.allows_origin(o))?;
    let body = crate::core::wire::settings::rudderstack_source_config(&source.id, &key);
    Ok(with_cors(json_response(200, &body)?, origin.as_deref())?)
}
