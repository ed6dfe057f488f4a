//! `POST /v1/batch` and the single-event endpoints: a batch through `core::engine::ingest`, then each writer's apply. Who may call: any source with its write key (a browser source from its listed origins) or server key.

use crate::core::engine::apply::ApplyRequest;
use crate::core::engine::ingest::Batch;
use crate::core::engine::merge::Group;
use crate::core::model::consent::Purpose;
use crate::core::rules::sources::Source;
use crate::core::rules::Config;
use crate::core::wire::events::CallType;
use crate::core::wire::{self, MAX_BATCH_BYTES};
use crate::edge::clock::now;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::http::{self, with_cors};
use crate::edge::objects::profile_client;
use crate::edge::request::{
    body, identity_secrets, origin, origin_allowed_by, query_param, server_key_from_browser, signals, signals_with_zone,
};
use crate::edge::{cookie, kv};
use serde_json::json;
use worker::{Env, Request};

/// `POST /v1/batch` and the single-event endpoints; `query_key` is the write key a beacon sends in its URL
/// (`/beacon/v1/batch?writeKey=...`), used when the request has no Basic auth.
pub(crate) async fn collect(
    mut req: Request,
    env: &Env,
    call: Option<CallType>,
    query_key: Option<String>,
) -> ApiResult {
    let received = now();
    let bytes = body(&mut req, MAX_BATCH_BYTES).await?;
    let parsed = match call {
        None => wire::events::parse_batch(&bytes, received),
        Some(call) => wire::events::parse_single(&bytes, call, received),
    }
    .map_err(ApiError::Body)?;
    let (_, config) = kv::config(env).await?;

    let header_key = req.headers().get("authorization")?.and_then(|h| wire::auth::write_key_from_basic_auth(&h));
    let from_query = header_key.is_none() && query_key.is_some();
    let key = header_key.or(query_key).or(parsed.write_key.clone()).ok_or(ApiError::Unauthorized {
        code: "missing_write_key",
        message: "send the write key as the Basic auth user name or as writeKey in the body",
    })?;
    let source = config
        .authenticate(&key)
        .ok_or(ApiError::Unauthorized { code: "invalid_write_key", message: "unknown write key" })?;
    let origin = origin(&req);
    // URLs end up in logs and histories: a secret key there is a leaked key, so it is refused before use.
    if source.is_server() && from_query {
        return Err(ApiError::Forbidden {
            code: "server_key_in_url",
            message: "a server key must not travel in a URL: send it as the Basic auth user name".into(),
            path: "writeKey",
        });
    }
    if source.is_server() && crate::edge::request::from_browser(&req) {
        return Err(server_key_from_browser(&source.id));
    }
    if let Some(o) = &origin {
        if !http::origin_allowed(&req, o, |o| source.allows_origin(o)) {
            return Err(ApiError::Forbidden {
                code: "origin_not_allowed",
                message: format!("origin {o:?} is not allowed for source {:?}", source.id),
                path: "",
            });
        }
    }

    // A valid first-party cookie is this browser's identity (core::engine::ingest says what follows from that).
    let secret = cookie::secret(env);
    let cookie_id = secret.as_deref().and_then(|s| cookie::id_from(&req, s));
    let mut batch = Batch::prepare(parsed, call.is_some(), cookie_id.as_deref(), &config);

    // What the identity index says, and where each profile lives now (`edge::ingest::resolve`).
    let (index, erased) = crate::edge::ingest::resolve(env, &batch).await?;
    let secrets = identity_secrets(env);
    let secrets: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
    batch.admit(source, &secrets, &index, &erased, received);
    // The cookie is for an id this browser owns: one a valid cookie already proves, or one the request made.
    let new_anonymous_ids = batch.new_anonymous_ids(&index);
    let groups = batch.plan(&index, &config, &crate::edge::request::profile_id_key(env)?);
    // The visitor's time zone matters only to journeys (quiet hours, local-time windows): without any, the
    // runtime's `Intl` is not asked.
    let signals = if config.journeys.is_empty() {
        signals(&req, env, &config.consent)
    } else {
        signals_with_zone(&req, env, &config.consent)
    };
    let mut stored_anonymous_id: Option<String> = None;
    let mut unavailable = None;
    for Group { profile_id, events, links } in groups {
        let first_anonymous = events.iter().find_map(|e| e.anonymous_id.clone());
        let message_ids: Vec<String> = events.iter().map(|e| e.message_id.clone()).collect();
        let request = ApplyRequest { profile_id, signals: signals.clone(), events, links, ..ApplyRequest::default() };
        // Each profile's events are applied on their own: one writer failing never keeps the others' events from
        // being stored. The request still fails afterwards, so that the sender retries; what was stored counts once
        // (message ids), and the rest gets its chance.
        let outcome = match profile_client::apply(env, request).await {
            Ok(outcome) => outcome,
            Err(ApiError::Unavailable(detail)) => {
                unavailable.get_or_insert(detail);
                continue;
            }
            Err(e) => return Err(e),
        };
        let erased = "this person was erased moments ago; events sent before the erasure are not kept";
        batch.refuse_unkept(&message_ids, &outcome, erased, "event");
        if outcome.stored > 0 && stored_anonymous_id.is_none() {
            stored_anonymous_id =
                first_anonymous.filter(|a| cookie_id.as_ref() == Some(a) || new_anonymous_ids.contains(a));
        }
    }

    if let Some(detail) = unavailable {
        return Err(ApiError::Unavailable(detail));
    }
    // A CMP whose cookie now refuses analytics withdraws it as an event would: the identity cookie goes, unless an
    // event itself granted analytics and was stored.
    let refused_by_cmp = signals.tcf.as_ref().is_some_and(|t| t.prefs.get(Purpose::Analytics) == Some(false));
    let withdrawn = batch.withdrawn || refused_by_cmp;
    let (rejected, unverified) = batch.finish();
    let listed = |rs: &[wire::Rejection]| -> serde_json::Value {
        rs.iter().map(|r| json!({"index": r.index, "code": r.code, "message": r.message, "path": r.path})).collect()
    };
    let mut answer = json!({"success": true});
    if !rejected.is_empty() {
        answer["rejected"] = listed(&rejected);
    }
    if !unverified.is_empty() {
        answer["unverified"] = listed(&unverified);
    }
    // Only browsers get the cookie (server-side sources send no Origin), and only once consent let something be
    // stored; a withdrawal of analytics removes it.
    let mut set_cookie = None;
    if let (Some(secret), Some(_)) = (&secret, &origin) {
        if let Some(id) = stored_anonymous_id.as_ref().or(cookie_id.as_ref().filter(|_| !withdrawn)) {
            if let Some(header) = cookie::set(secret, id) {
                answer["anonymousId"] = json!(id);
                set_cookie = Some(header);
            }
        } else if withdrawn && cookie_id.is_some() {
            set_cookie = Some(cookie::clear());
        }
    }
    let mut resp = with_cors(json_response(200, &answer)?, origin.as_deref())?;
    if let Some(h) = set_cookie {
        resp.headers_mut().append("set-cookie", &h)?;
    }
    Ok(resp)
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
