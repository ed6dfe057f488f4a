//! The Cloudflare Worker shell: turns HTTP requests into core calls and core results into HTTP responses.
//!
//! It owns everything the core must not do: reading the clock, KV and Durable Object I/O, headers and
//! cookies. Routes follow `shared/api.md`; errors become responses in `http::ApiError::into_response` only.

mod config_object;
mod cookie;
mod delivery;
mod experiments;
mod http;
mod kv;
mod profile_object;

use crate::core::base::encoding::percent_decode_path;
use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyAnswer, ApplyRequest};
use crate::core::engine::decide::{computed_of, decide, explain, scores_of, segments_of};
use crate::core::engine::delivery::HOP_HEADER;
use crate::core::engine::ingest::Batch;
use crate::core::engine::merge::{is_junk, Group};
use crate::core::model::consent::{permit_personalization, RequestSignals};
use crate::core::model::context::{country_code, Context as DecideContext, Device};
use crate::core::model::event::PageContext;
use crate::core::model::identity::{Identity, ANONYMOUS_ID, USER_ID};
use crate::core::model::profile::Profile;
use crate::core::model::trust::make_identity_token;
use crate::core::rules::slots::CONTROL;
use crate::core::rules::sources::seal_server_keys;
use crate::core::rules::{compile_str, Config};
use crate::core::store::summary;
use crate::core::store::{decode_apply_answer, encode_apply};
use crate::core::wire::decide::DecideRequest;
use crate::core::wire::events::CallType;
use crate::core::wire::{self, BodyError, MAX_BATCH_BYTES};
use http::{json_response, require_admin, with_cors, ApiError, ApiResult};
use serde_json::json;
use std::collections::BTreeMap;
use worker::{event, Context, Env, Method, Request, Response};

pub use config_object::ConfigObject;
pub use experiments::ExperimentObject;
pub use profile_object::ProfileObject;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    match route(req, &env).await {
        Ok(resp) => Ok(resp),
        Err(e) => e.into_response(),
    }
}

fn now() -> Millis {
    worker::Date::now().as_millis() as Millis
}

/// The Worker's own resources, each path written once. Which methods a resource answers is `route`'s match: a
/// known resource asked with another method is 405, and any other `/v1/...` path is 404.
#[derive(Clone, Copy, Debug)]
enum Resource<'a> {
    Healthz,
    /// `POST /v1/batch`, or a single-event endpoint (`/v1/track`, ...).
    Collect(Option<CallType>),
    Decide,
    DecideSummary,
    Impressions,
    DemoToken,
    Profile(&'a str),
    ProfileExport(&'a str),
    ProfileSplit(&'a str),
    Experiment(&'a str),
    Config,
}

impl<'a> Resource<'a> {
    fn of(segments: &[&'a str]) -> Option<Resource<'a>> {
        Some(match segments {
            ["healthz"] => Resource::Healthz,
            ["v1", "batch"] => Resource::Collect(None),
            ["v1", call] if CallType::from_name(call).is_some() => Resource::Collect(CallType::from_name(call)),
            ["v1", "decide"] => Resource::Decide,
            ["v1", "decide", "summary"] => Resource::DecideSummary,
            ["v1", "impressions"] => Resource::Impressions,
            ["v1", "demo", "identity-token"] => Resource::DemoToken,
            ["v1", "profiles", key] => Resource::Profile(key),
            ["v1", "profiles", key, "export"] => Resource::ProfileExport(key),
            ["v1", "profiles", key, "split"] => Resource::ProfileSplit(key),
            ["v1", "experiments", id] => Resource::Experiment(id),
            ["v1", "config"] => Resource::Config,
            _ => return None,
        })
    }

    /// Whether pages call it, so that a CORS preflight is answered; profiles, experiments and the configuration
    /// are for servers and operators, and never readable from a browser origin.
    fn for_pages(self) -> bool {
        matches!(
            self,
            Resource::Collect(_)
                | Resource::Decide
                | Resource::DecideSummary
                | Resource::Impressions
                | Resource::DemoToken
        )
    }
}

async fn route(req: Request, env: &Env) -> ApiResult {
    let path = req.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some(resource) = Resource::of(&segments) else {
        if segments.first() == Some(&"v1") {
            return Err(ApiError::NotFound { code: "not_found", message: format!("no route for {path}") });
        }
        // Everything else reaches the Worker only when it is not a static asset (see wrangler.toml): proxied to
        // the site's origin when the configuration's `delivery` covers it.
        let (_, config) = kv::config(env).await?;
        return match &config.delivery {
            // The Worker reached itself through the origin (an origin that resolves to this Worker): stop.
            Some(d) if d.proxies(&path) && req.headers().has(HOP_HEADER)? => {
                Err(ApiError::LoopDetected(format!("delivery.origin {} leads back to this Worker", d.origin)))
            }
            Some(d) if d.proxies(&path) => delivery::proxy(req, env, &config, d).await,
            _ => Err(ApiError::NotFound { code: "not_found", message: format!("no route for {path}") }),
        };
    };
    match (req.method(), resource) {
        (Method::Get, Resource::Healthz) => {
            Ok(json_response(200, &json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))?)
        }
        (Method::Options, r) if !matches!(r, Resource::Healthz) => {
            let (_, config) = kv::config(env).await?;
            http::preflight(&req, &config, r.for_pages())
        }
        (Method::Post, Resource::Collect(call)) => collect(req, env, call).await,
        (Method::Post, Resource::Decide) => decide_post(req, env).await,
        (Method::Get, Resource::Decide) => decide_get(req, env).await,
        (Method::Get, Resource::DecideSummary) => decide_summary(req, env).await,
        (Method::Post, Resource::Impressions) => impressions_post(req, env).await,
        (Method::Post, Resource::DemoToken) => demo_identity_token(req, env).await,
        (Method::Get, Resource::Profile(key)) => profile_get(req, env, key, false).await,
        (Method::Get, Resource::ProfileExport(key)) => profile_get(req, env, key, true).await,
        (Method::Delete, Resource::Profile(key)) => profile_delete(req, env, key).await,
        (Method::Post, Resource::ProfileSplit(key)) => profile_split(req, env, key).await,
        (Method::Get, Resource::Experiment(id)) => experiment_stats(req, env, id).await,
        (Method::Get, Resource::Config) => config_get(req, env).await,
        (Method::Put, Resource::Config) => config_put(req, env).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// What the request says about the visitor's privacy choices.
fn signals(req: &Request, env: &Env) -> RequestSignals {
    let gpc = req.headers().get("sec-gpc").ok().flatten().is_some_and(|v| v.trim() == "1");
    RequestSignals { country: country(req, env), gpc }
}

/// The visitor's country, which chooses the consent model. In production it is Cloudflare's `request.cf.country`.
/// `wrangler dev` cannot fetch the real `cf` object offline and substitutes a fixed one (country `US`), so local
/// runs set `EDGECDP_COUNTRY_SOURCE=header` and the country comes from the `x-edgecdp-country` header instead
/// (none when absent). Production never sets that variable, so visitors cannot choose their own country there.
fn country(req: &Request, env: &Env) -> Option<String> {
    let raw = if local_headers(env) {
        req.headers().get("x-edgecdp-country").ok().flatten()
    } else {
        req.cf().and_then(|cf| cf.country())
    };
    raw.and_then(|c| country_code(c.trim()))
}

/// Whether local runs stand in headers (`x-edgecdp-country`, `x-edgecdp-timezone`) for Cloudflare's `cf`.
fn local_headers(env: &Env) -> bool {
    env.var("EDGECDP_COUNTRY_SOURCE").is_ok_and(|v| v.to_string() == "header")
}

/// Reads a body, refusing it before reading when the declared length is already over the limit.
async fn body(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    // A length too large for any integer is too large for the limit too; only digits are a length at all.
    if let Some(declared) = req.headers().get("content-length")? {
        let declared = declared.trim();
        if declared.is_empty() || !declared.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::BadRequest {
                code: "invalid_header",
                message: "Content-Length must be a number of bytes".into(),
                path: "Content-Length".into(),
            });
        }
        if declared.parse::<usize>().map_or(true, |n| n > limit) {
            return Err(ApiError::Body(BodyError::TooLarge { limit }));
        }
    }
    // A body the client stops sending halfway is the client's failure, not the store's.
    let bytes = req.bytes().await.map_err(|e| ApiError::BadRequest {
        code: "body_unreadable",
        message: format!("the request body could not be read: {e}"),
        path: String::new(),
    })?;
    if bytes.len() > limit {
        return Err(ApiError::Body(BodyError::TooLarge { limit }));
    }
    Ok(bytes)
}

/// The browser origin of a request, if it is a browser request at all. `null` is kept: it is a browser that
/// hides its origin, which no source allows (`http::origin_allowed`), not a server.
fn origin(req: &Request) -> Option<String> {
    req.headers().get("origin").ok().flatten().filter(|o| !o.trim().is_empty())
}

/// `POST /v1/batch` and the single-event endpoints.
async fn collect(mut req: Request, env: &Env, call: Option<CallType>) -> ApiResult {
    let received = now();
    let bytes = body(&mut req, MAX_BATCH_BYTES).await?;
    let parsed = match call {
        None => wire::events::parse_batch(&bytes, received),
        Some(call) => wire::events::parse_single(&bytes, call, received),
    }
    .map_err(ApiError::Body)?;
    let (_, config) = kv::config(env).await?;

    let header_key = req.headers().get("authorization")?.and_then(|h| wire::auth::write_key_from_basic_auth(&h));
    let key = header_key.or(parsed.write_key.clone()).ok_or(ApiError::Unauthorized {
        code: "missing_write_key",
        message: "send the write key as the Basic auth user name or as writeKey in the body",
    })?;
    let source = config
        .authenticate(&key)
        .ok_or(ApiError::Unauthorized { code: "invalid_write_key", message: "unknown write key" })?;
    let origin = origin(&req);
    if source.is_server() && origin.is_some() {
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

    // What the identity index says, and for identities it no longer knows, whether an erasure marked them.
    let store = kv::store(env)?;
    let mut index = BTreeMap::new();
    let mut erased = std::collections::BTreeSet::new();
    for id in batch.identities_to_resolve() {
        if let Some(pid) = kv::profile_id_of(&store, &id).await? {
            index.insert(id, pid);
        } else if kv::recently_erased(&store, &id).await? {
            erased.insert(id);
        }
    }
    let secrets = identity_secrets(env);
    let secrets: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
    batch.admit(source, &secrets, &index, &erased, received);
    // The cookie is for an id this browser owns: one a valid cookie already proves, or one the request made.
    let new_anonymous_ids = batch.new_anonymous_ids(&index);
    let groups = batch.plan(&index, &config);
    let signals = signals(&req, env);
    let mut stored_anonymous_id: Option<String> = None;
    let mut unavailable = None;
    for Group { profile_id, events, links } in groups {
        let first_anonymous = events.iter().find_map(|e| e.anonymous_id.clone());
        let message_ids: Vec<String> = events.iter().map(|e| e.message_id.clone()).collect();
        let request = ApplyRequest { profile_id, signals: signals.clone(), events, links, ..ApplyRequest::default() };
        // Each profile's events are applied on their own: one writer failing never keeps the others' events from
        // being stored. The request still fails afterwards, so that the sender retries; what was stored counts once
        // (message ids), and the rest gets its chance.
        let outcome = match apply(env, request).await {
            Ok(outcome) => outcome,
            Err(ApiError::Unavailable(detail)) => {
                unavailable.get_or_insert(detail);
                continue;
            }
            Err(e) => return Err(e),
        };
        if outcome.erased {
            for m in &message_ids {
                let message = "this person was erased moments ago; events sent before the erasure are not kept";
                batch.refuse_by_message_id(m, "profile_erased", message.into(), "");
            }
        }
        for (message_id, field) in &outcome.over_budget {
            let message = format!("the profile has no room for this event's {field} (see Profile size in README.md)");
            batch.refuse_by_message_id(message_id, "profile_budget_exceeded", message, field);
        }
        if outcome.stored > 0 && stored_anonymous_id.is_none() {
            stored_anonymous_id =
                first_anonymous.filter(|a| cookie_id.as_ref() == Some(a) || new_anonymous_ids.contains(a));
        }
    }

    if let Some(detail) = unavailable {
        return Err(ApiError::Unavailable(detail));
    }
    let withdrawn = batch.withdrawn;
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

async fn decide_post(mut req: Request, env: &Env) -> ApiResult {
    let bytes = body(&mut req, wire::MAX_EVENT_BYTES).await?;
    let request = wire::decide::parse_decide(&bytes).map_err(ApiError::Body)?;
    answer_decision(&req, env, request).await
}

/// The secrets an identity token may be signed with: `EDGECDP_IDENTITY_SECRET`, and during a rotation
/// `EDGECDP_IDENTITY_SECRET_PREVIOUS` (see SECURITY.md). Shorter ones than the cookie's minimum are ignored.
fn identity_secrets(env: &Env) -> Vec<Vec<u8>> {
    let mut secrets = Vec::new();
    for name in ["EDGECDP_IDENTITY_SECRET", "EDGECDP_IDENTITY_SECRET_PREVIOUS"] {
        let value = env.var(name).map(|v| v.to_string()).unwrap_or_default();
        if value.len() >= cookie::MIN_SECRET_BYTES {
            secrets.push(value.into_bytes());
        } else if !value.is_empty() {
            // Said without the value: a short secret could be guessed, and with it any user id proven.
            worker::console_error!("{name} is shorter than {} bytes and is ignored", cookie::MIN_SECRET_BYTES);
        }
    }
    secrets
}

fn server_key_from_browser(source: &str) -> ApiError {
    worker::console_warn!("a server key (source {source:?}) was sent from a browser origin and refused; rotate it");
    ApiError::Forbidden {
        code: "server_key_from_browser",
        message: "a server key is secret and never accepted from a browser; if a page holds it, rotate it".into(),
        path: "",
    }
}

/// Reads who is calling and what it may ask. A server credential is a server source's key (`Authorization:
/// Bearer <key>` or Basic with the key as user name) or the admin token, and is refused from a browser origin.
/// Without one, the caller acts only for its own visitor: naming a user id is refused, and a consent grant in the
/// request (`?personalization=true`, `context.consent`) counts only for the visitor of the cookie, so nobody can
/// override another person's recorded refusal (a refusal always counts). Answers the visitor of a valid signed
/// cookie, if the request has one.
fn caller(
    req: &Request,
    env: &Env,
    config: &Config,
    user_id: Option<&str>,
    consent: &mut Option<BTreeMap<String, bool>>,
) -> Result<Option<String>, ApiError> {
    let authorization = req.headers().get("authorization")?.unwrap_or_default();
    let key = http::bearer(&authorization)
        .map(String::from)
        .or_else(|| wire::auth::write_key_from_basic_auth(&authorization));
    let server = key.as_deref().and_then(|k| config.authenticate(k)).filter(|s| s.is_server());
    let credentialed = server.is_some() || http::carries_admin_token(env, &authorization);
    if credentialed && origin(req).is_some() {
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

/// `GET /v1/decide?slots=hero,sidebar&anonymousId=...`, for CMS pages and servers.
async fn decide_get(req: Request, env: &Env) -> ApiResult {
    let request = decide_query(&req)?;
    if request.slots.is_empty() {
        return Err(ApiError::BadRequest {
            code: "missing_field",
            message: "slots is required: ?slots=hero,sidebar".into(),
            path: "slots".into(),
        });
    }
    answer_decision(&req, env, request).await
}

/// The decide request the URL's query describes (`core::wire::decide::decide_query`).
fn decide_query(req: &Request) -> Result<DecideRequest, ApiError> {
    let url = req.url()?;
    wire::decide::decide_query(url.query().unwrap_or("")).map_err(|e| ApiError::BadRequest {
        code: e.code,
        message: e.message,
        path: e.path,
    })
}

/// Refuses a browser request from an origin that no source lists (the site's own origin always may ask);
/// answers the origin, for the CORS headers of the answer.
fn allowed_origin(req: &Request, config: &Config) -> Result<Option<String>, ApiError> {
    let origin = origin(req);
    if let Some(o) = &origin {
        if !http::origin_allowed(req, o, |o| config.any_source_allows_origin(o)) {
            return Err(ApiError::Forbidden {
                code: "origin_not_allowed",
                message: format!("origin {o:?} is not allowed"),
                path: "",
            });
        }
    }
    Ok(origin)
}

/// The profile a decision is for: the signed cookie's id wins over a sent `anonymousId`, and a known user's
/// profile is preferred over the anonymous one.
async fn visitor_profile(
    env: &Env,
    cookie_id: Option<&str>,
    anonymous_id: Option<&str>,
    user_id: Option<&str>,
) -> Result<Option<Profile>, ApiError> {
    let anonymous_id = cookie_id.or(anonymous_id);
    let store = kv::store(env)?;
    let mut profile = None;
    if let Some(u) = user_id {
        profile = kv::profile_of(&store, &Identity::new(USER_ID, u)).await?;
    }
    if profile.is_none() {
        if let Some(a) = anonymous_id {
            profile = kv::profile_of(&store, &Identity::new(ANONYMOUS_ID, a)).await?;
        }
    }
    Ok(profile)
}

async fn answer_decision(req: &Request, env: &Env, mut request: DecideRequest) -> ApiResult {
    let (_, config) = kv::config(env).await?;
    let origin = allowed_origin(req, &config)?;
    let cookie_id = caller(req, env, &config, request.user_id.as_deref(), &mut request.consent)?;
    let profile =
        visitor_profile(env, cookie_id.as_deref(), request.anonymous_id.as_deref(), request.user_id.as_deref()).await?;
    let signals = signals(req, env);
    let subject =
        profile.as_ref().and_then(|p| permit_personalization(&config.consent, p, request.consent.as_ref(), &signals));
    let explaining = req.url()?.query_pairs().any(|(k, v)| k == "explain" && v != "0");
    if explaining {
        require_admin(req, env)?;
    }
    let now = now();
    let cx = decide_context(req, env, &request, signals.country.clone(), now);
    let decision = if explaining {
        explain(&config, subject, &cx, &request.slots, now)
    } else {
        decide(&config, subject, &cx, &request.slots, now)
    };
    // Caps and experiments count what was served: the profile's writer records it before the answer goes out, so
    // the next decision already sees it.
    let impressions = decision.impressions(now);
    if let (Some(p), false) = (&profile, impressions.is_empty()) {
        let request = ApplyRequest { profile_id: p.id.clone(), signals, impressions, ..ApplyRequest::default() };
        apply(env, request).await?;
    }
    Ok(with_cors(json_response(200, &decision.to_json_explained())?, origin.as_deref())?)
}

/// `GET /v1/decide/summary`: what a device needs to decide for the visitor itself (delivery way 3, for sites
/// that are static files): the configuration's version; the edge's time; its decision rules, compiled, in binary
/// (`Config::for_device`: segments, scores, computed traits, slots and the consent policy resolved for the
/// request's country; no sources, write keys, identity or delivery settings), base64; the country; and the
/// visitor's profile summary (`Profile::minimized_for`, base64), or `null` without a profile or without
/// personalization consent. Ids resolve as for `GET /v1/decide`. Never cached: it describes one visitor.
async fn decide_summary(req: Request, env: &Env) -> ApiResult {
    let mut request = decide_query(&req)?;
    let (version, config) = kv::config(env).await?;
    let origin = allowed_origin(&req, &config)?;
    let cookie_id = caller(&req, env, &config, request.user_id.as_deref(), &mut request.consent)?;
    let profile =
        visitor_profile(env, cookie_id.as_deref(), request.anonymous_id.as_deref(), request.user_id.as_deref()).await?;
    let signals = signals(&req, env);
    let subject =
        profile.as_ref().and_then(|p| permit_personalization(&config.consent, p, request.consent.as_ref(), &signals));
    let rules = kv::device_rules(version, &config, signals.country.as_deref());
    let body = json!({
        "configVersion": version,
        // The edge's clock: the device decides at it (corrected for its own clock's skew), so caps and schedules
        // count exactly as at the edge, whatever the device's clock says.
        "now": now(),
        "rules": &*rules,
        "country": signals.country,
        "profile": subject.map(|p| summary::encode(&p.get().minimized_for(&config))),
    });
    let mut resp = json_response(200, &body)?;
    resp.headers_mut().set("cache-control", "private, no-store")?;
    Ok(with_cors(resp, origin.as_deref())?)
}

/// `POST /v1/impressions`: records the answers a device decided on a summary and served (blocks with caps or
/// experiments), so that caps and experiment exposures count them as they count the edge's own decisions. Each
/// impression is checked against the configuration in force and recorded at the edge's time, and only when the
/// visitor's consent allows personalization.
async fn impressions_post(mut req: Request, env: &Env) -> ApiResult {
    let bytes = body(&mut req, wire::MAX_EVENT_BYTES).await?;
    let (_, config) = kv::config(env).await?;
    let origin = allowed_origin(&req, &config)?;
    let now = now();
    let mut request = wire::impressions::parse_impressions(&bytes, &config, now).map_err(ApiError::Body)?;
    let cookie_id = caller(&req, env, &config, request.user_id.as_deref(), &mut request.consent)?;
    let profile =
        visitor_profile(env, cookie_id.as_deref(), request.anonymous_id.as_deref(), request.user_id.as_deref()).await?;
    let signals = signals(&req, env);
    let permitted =
        profile.as_ref().and_then(|p| permit_personalization(&config.consent, p, request.consent.as_ref(), &signals));
    let mut recorded = 0;
    if let Some(p) = permitted {
        recorded = request.impressions.len();
        let apply_request = ApplyRequest {
            profile_id: p.get().id.clone(),
            signals,
            impressions: request.impressions,
            ..ApplyRequest::default()
        };
        apply(env, apply_request).await?;
    }
    Ok(with_cors(json_response(200, &json!({"success": true, "recorded": recorded}))?, origin.as_deref())?)
}

/// Where and when the visitor asks: the page from the request (or the `Referer` of a browser's request), the
/// device from `context.userAgent` or the `User-Agent` header, local time from `context.timezone` or
/// Cloudflare's (locally, the `x-edgecdp-timezone` header, as for the country).
fn decide_context(req: &Request, env: &Env, r: &DecideRequest, country: Option<String>, now: Millis) -> DecideContext {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let mut cx = r.context();
    if r.page.is_none() {
        cx.page = PageContext { url: header("referer"), ..PageContext::default() };
    }
    cx.country = cx.country.or(country);
    if cx.device.is_none() {
        cx.device = header("user-agent").map(|ua| Device::of_user_agent(&ua));
    }
    if cx.utc_offset_minutes.is_none() {
        let timezone = r.timezone.clone().or_else(|| {
            if local_headers(env) {
                header("x-edgecdp-timezone")
            } else {
                req.cf().map(|cf| cf.timezone_name())
            }
        });
        cx.utc_offset_minutes = timezone.and_then(|tz| utc_offset_minutes(&tz, now));
    }
    cx
}

/// The offset from UTC of an IANA time zone at `now`, from the runtime's `Intl` (`GMT+05:30` → 330). `None`
/// for a zone the runtime does not know.
fn utc_offset_minutes(tz: &str, now: Millis) -> Option<i32> {
    use worker::js_sys::{Array, Date, Function, Object, Reflect};
    let intl = Reflect::get(&worker::js_sys::global(), &"Intl".into()).ok()?;
    let ctor: Function = Reflect::get(&intl, &"DateTimeFormat".into()).ok()?.into();
    let options = Object::new();
    Reflect::set(&options, &"timeZone".into(), &tz.into()).ok()?;
    Reflect::set(&options, &"timeZoneName".into(), &"longOffset".into()).ok()?;
    // `new Intl.DateTimeFormat` throws a RangeError for an unknown zone; `construct` turns that into an Err.
    let format = Reflect::construct(&ctor, &Array::of2(&"en-US".into(), &options)).ok()?;
    let to_parts: Function = Reflect::get(&format, &"formatToParts".into()).ok()?.into();
    let parts: Array = to_parts.call1(&format, &Date::new(&(now as f64).into())).ok()?.into();
    let name = parts.iter().find_map(|p| {
        let kind = Reflect::get(&p, &"type".into()).ok()?.as_string()?;
        (kind == "timeZoneName").then(|| Reflect::get(&p, &"value".into()).ok()?.as_string()).flatten()
    })?;
    crate::core::model::context::parse_gmt_offset(&name)
}

/// Sends an apply to a profile's writer, following tombstones (a merged profile says where it went; KV may
/// show the old index for up to a minute, so a few hops at most).
async fn apply(env: &Env, mut request: ApplyRequest) -> Result<ApplyAnswer, ApiError> {
    for _ in 0..4 {
        let (status, bytes) = profile_object::call(env, &request.profile_id, "apply", encode_apply(&request)).await?;
        let answer = match status {
            // The answer (200), or that the profile was erased moments ago (410): `ApplyAnswer`, binary.
            200 | 410 => decode_apply_answer(&bytes)
                .map_err(|e| ApiError::Unavailable(format!("a profile writer answered an apply unreadably: {e}")))?,
            // A tombstone, which answers every action alike: `{"movedTo": id}`.
            409 => {
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let Some(to) = body.get("movedTo").and_then(|v| v.as_str()) else {
                    return Err(ApiError::Unavailable(format!("profile writer answered 409 without movedTo: {body}")));
                };
                ApplyAnswer { moved_to: Some(to.to_string()), ..ApplyAnswer::default() }
            }
            _ => {
                let text = String::from_utf8_lossy(&bytes);
                return Err(ApiError::Unavailable(format!("profile writer answered {status}: {text}")));
            }
        };
        match answer.moved_to {
            Some(to) => request.profile_id = to,
            None => return Ok(answer),
        }
    }
    Err(ApiError::Unavailable("a profile moved too many times while events were applied".into()))
}

/// `POST /v1/demo/identity-token` with `{"userId": "..."}`: the demo shop's sign-in. It signs an identity token
/// (`core::model::trust`, valid for an hour) for whatever user id it is asked, as a site's backend would after a real
/// login, so the demo shows the verified path. Anyone may call it, which is why it exists only when the
/// configuration says `"demo": {"signIn": true}` (404 otherwise), and why the Worker warns at every load then.
async fn demo_identity_token(mut req: Request, env: &Env) -> ApiResult {
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
    let now = now();
    let expires_at = now + 3_600_000;
    let token = make_identity_token(secret, user_id, now, expires_at);
    Ok(with_cors(json_response(200, &json!({"token": token, "expiresAt": expires_at}))?, origin.as_deref())?)
}

/// `GET /v1/experiments/{id}` (admin): exposures, conversions and conversion rates per variant, the holdout
/// (`control`) included; variants nobody saw yet show zeros.
async fn experiment_stats(req: Request, env: &Env, id: &str) -> ApiResult {
    require_admin(&req, env)?;
    let (_, config) = kv::config(env).await?;
    let Some((slot, block)) = config.slots.iter().find_map(|(name, s)| {
        s.blocks.iter().find(|b| b.experiment.as_ref().is_some_and(|e| e.id == id)).map(|b| (name, b))
    }) else {
        return Err(ApiError::NotFound { code: "experiment_not_found", message: format!("no experiment {id:?}") });
    };
    let Some(experiment) = &block.experiment else { unreachable!("found by its experiment") };
    let mut counts = experiments::counts(env, id).await?;
    let mut names: Vec<String> = Vec::new();
    if experiment.holdout > 0 {
        names.push(CONTROL.to_string());
    }
    names.extend(block.variants.iter().map(|v| v.id.clone()));
    // Variants removed from the configuration since they were counted are still reported.
    names.extend(counts.keys().filter(|k| !names.contains(k)).cloned().collect::<Vec<_>>());
    let variants: Vec<serde_json::Value> = names
        .iter()
        .map(|v| {
            let (exposures, conversions) = counts.remove(v).unwrap_or((0, 0));
            let rate = if exposures > 0 { conversions as f64 / exposures as f64 } else { 0.0 };
            json!({"variant": v, "exposures": exposures, "conversions": conversions, "conversionRate": rate})
        })
        .collect();
    Ok(json_response(
        200,
        &json!({"experiment": id, "slot": slot, "block": block.id, "holdout": experiment.holdout,
            "goal": {"event": experiment.goal.event, "withinMs": experiment.goal.within}, "variants": variants}),
    )?)
}

/// Resolves `{type}:{value}` from the path to an identity.
fn identity_from_path(key: &str) -> Result<(Identity, String), ApiError> {
    let decoded = percent_decode_path(key);
    let identity = Identity::parse_key(&decoded).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_identity",
        message: "expected {type}:{value}, for example anonymous_id:abc".into(),
        path: "identity".into(),
    })?;
    Ok((identity, decoded))
}

fn no_profile(decoded: &str) -> ApiError {
    ApiError::NotFound { code: "profile_not_found", message: format!("no profile for {decoded}") }
}

/// `GET /v1/profiles/{type}:{value}` and, with `export`, `.../export` (everything held, for access requests).
async fn profile_get(req: Request, env: &Env, key: &str, export: bool) -> ApiResult {
    require_admin(&req, env)?;
    let (identity, decoded) = identity_from_path(key)?;
    let store = kv::store(env)?;
    let profile = kv::profile_of(&store, &identity).await?.ok_or_else(|| no_profile(&decoded))?;
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
    let scores = scores_of(&config, &profile, &cx, now);
    body["scores"] = config.scores.iter().zip(scores).map(|(s, v)| (s.id.clone(), json!(v))).collect();
    Ok(json_response(200, &body)?)
}

/// `DELETE /v1/profiles/{type}:{value}`: erases the profile, its identity index entries and its writer's storage.
async fn profile_delete(req: Request, env: &Env, key: &str) -> ApiResult {
    require_admin(&req, env)?;
    let (identity, decoded) = identity_from_path(key)?;
    let store = kv::store(env)?;
    let indexed = kv::profile_id_of(&store, &identity).await?.ok_or_else(|| no_profile(&decoded))?;
    // The index may name a profile that was merged away (a tombstone): the person's data is in the profile it
    // moved to, so the erasure follows it there. Only an erasure that reached a profile answers 204.
    // The tombstones on the way stay until the profile is erased, so a failure further on can be retried from
    // the same index entry; then they go too.
    let mut profile_id = indexed.clone();
    let mut tombstones = Vec::new();
    let mut erased = false;
    for _ in 0..4 {
        let answer = profile_object::send(env, &profile_id, "erase", Vec::new()).await?;
        match answer.get("movedTo").and_then(|v| v.as_str()) {
            Some(to) => tombstones.push(std::mem::replace(&mut profile_id, to.to_string())),
            None => {
                erased = true;
                break;
            }
        }
    }
    if !erased {
        return Err(ApiError::Unavailable(format!("erasing {decoded}: the profile moved too many times")));
    }
    for tombstone in &tombstones {
        profile_object::send(env, tombstone, "forget", Vec::new()).await?;
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
async fn profile_split(mut req: Request, env: &Env, key: &str) -> ApiResult {
    require_admin(&req, env)?;
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
    let answer = profile_object::send(env, &profile_id, "split", absorbed.as_bytes().to_vec()).await?;
    Ok(json_response(200, &answer)?)
}

async fn config_get(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env)?;
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

async fn config_put(mut req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env)?;
    let bytes = body(&mut req, MAX_BATCH_BYTES).await?;
    let text = String::from_utf8(bytes).map_err(|_| ApiError::Body(BodyError::NotJson("body is not UTF-8".into())))?;
    compile_str(&text).map_err(ApiError::InvalidConfig)?;
    // Server keys are stored as their hashes only: what KV and `GET /v1/config` hold cannot authenticate.
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ApiError::Body(BodyError::NotJson(e.to_string())))?;
    seal_server_keys(&mut doc);
    let text = doc.to_string();
    match config_object::write(env, &text, if_match_version(&req)?).await? {
        config_object::Written::Stored { version } => {
            let mut resp = json_response(200, &json!({"version": version}))?;
            resp.headers_mut().set("etag", &format!("\"{version}\""))?;
            Ok(resp)
        }
        config_object::Written::Conflict { current } => Err(ApiError::PreconditionFailed {
            code: "version_conflict",
            message: format!(
                "the configuration in force is version {current}: read it again (GET /v1/config), then write with If-Match: \"{current}\""
            ),
        }),
    }
}

/// The version a conditional `PUT /v1/config` is based on: `If-Match: "N"` (an entity tag, as `GET /v1/config`'s
/// `ETag` gives it; `W/` and bare numbers are accepted too). No header: an unconditional write.
fn if_match_version(req: &Request) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.headers().get("if-match")? else { return Ok(None) };
    let tag = value.trim().trim_start_matches("W/").trim_matches('"');
    tag.parse().map(Some).map_err(|_| ApiError::BadRequest {
        code: "invalid_header",
        message: format!(
            "If-Match must name one configuration version, as GET /v1/config's ETag: \"7\", not {value:?}"
        ),
        path: "If-Match".into(),
    })
}
