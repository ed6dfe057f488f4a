//! What a request says: the visitor's privacy signals, country and local time, its body within a limit, its browser origin, and who is calling (`caller`).

use crate::core::base::time::Millis;
use crate::core::base::url::{query_pairs, UrlParts};
use crate::core::model::consent::{ConsentPolicy, RequestSignals};
use crate::core::model::context::{country_code, Context as DecideContext, Device};
use crate::core::model::event::PageContext;
use crate::core::model::identity::ProfileIdKey;
use crate::core::model::tcf;
use crate::core::model::tcf::TcfSignal;
use crate::core::rules::Config;
use crate::core::wire::decide::DecideRequest;
use crate::core::wire::inflate::{Coding, InflateError, Inflater};
use crate::core::wire::BodyError;
use crate::edge::clock::now;
use crate::edge::cookie;
use crate::edge::error::ApiError;
use crate::edge::http::{self, href};
use worker::{Env, Request};

/// The cookie an IAB TCF v2 CMP keeps its TC string in.
pub(crate) const TC_COOKIE: &str = "euconsent-v2";

/// What the request says about the visitor's privacy choices and country: `Sec-GPC`, and the CMP's TC string
/// cookie mapped by `consent.tcf` (a cookie that does not decode, or is stale, says nothing).
pub(crate) fn signals(req: &Request, env: &Env, policy: &ConsentPolicy) -> RequestSignals {
    let gpc = req.headers().get("sec-gpc").ok().flatten().is_some_and(|v| v.trim() == "1");
    RequestSignals { country: country(req, env), gpc, utc_offset_minutes: None, tcf: tcf_cookie(req, policy) }
}

/// The CMP's answer in the request's `euconsent-v2` cookie, if it gives one.
pub(crate) fn tcf_cookie(req: &Request, policy: &ConsentPolicy) -> Option<TcfSignal> {
    if !policy.tcf.enabled {
        return None;
    }
    let tc = cookie::values(req, TC_COOKIE).iter().find_map(|v| tcf::decode(v).ok())?;
    TcfSignal::of(&policy.tcf, &tc, now())
}

/// `signals` with the offset of the visitor's time zone, for writes (journeys keep quiet hours and local-time
/// windows in it; locally from `x-edgecdp-timezone`, as for the country). Decisions take local time from their
/// own context (`decide_context`), so only the collect path pays for the runtime's `Intl`.
pub(crate) fn signals_with_zone(req: &Request, env: &Env, policy: &ConsentPolicy) -> RequestSignals {
    let timezone = if local_headers(env) {
        req.headers().get("x-edgecdp-timezone").ok().flatten()
    } else {
        req.cf().map(|cf| cf.timezone_name())
    };
    RequestSignals {
        utc_offset_minutes: timezone.and_then(|tz| utc_offset_minutes(&tz, now())),
        ..signals(req, env, policy)
    }
}

/// The visitor's country, which chooses the consent model. In production it is Cloudflare's `request.cf.country`.
/// `wrangler dev` cannot fetch the real `cf` object offline and substitutes a fixed one (country `US`), so local
/// runs set `EDGECDP_COUNTRY_SOURCE=header` and the country comes from the `x-edgecdp-country` header instead
/// (none when absent). Production never sets that variable, so visitors cannot choose their own country there.
pub(crate) fn country(req: &Request, env: &Env) -> Option<String> {
    let raw = if local_headers(env) {
        req.headers().get("x-edgecdp-country").ok().flatten()
    } else {
        req.cf().and_then(|cf| cf.country())
    };
    raw.and_then(|c| country_code(c.trim()))
}

/// Whether local runs stand in headers (`x-edgecdp-country`, `x-edgecdp-timezone`) for Cloudflare's `cf`.
pub(crate) fn local_headers(env: &Env) -> bool {
    env.var("EDGECDP_COUNTRY_SOURCE").is_ok_and(|v| v.to_string() == "header")
}

/// Reads a body with a running limit: refused before reading when the declared length is already over it, and
/// otherwise read chunk by chunk, stopped as soon as the bytes received (a chunked body declares no length) or,
/// for a `gzip` or `deflate` body, the bytes inflated pass the limit (`core::wire::inflate`). Nothing beyond the
/// limit and one chunk is ever held. A truncated or corrupt compressed body is a 400, another coding a 415.
pub(crate) async fn body(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    use worker::wasm_bindgen::{JsCast, JsValue};
    use worker::web_sys::ReadableStreamDefaultReader;
    // A length too large for any integer is too large for the limit too; only digits are a length at all.
    let mut within_declared = false;
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
        within_declared = true;
    }
    let coding = match req.headers().get("content-encoding")? {
        None => None,
        Some(header) => {
            Coding::of_header(&header).map_err(|_| ApiError::UnsupportedEncoding(header.trim().to_string()))?
        }
    };
    if within_declared && coding.is_none() {
        // A plain body of a declared length within the limit: the runtime frames the body by that length (it can
        // deliver no more), so it is read in one call rather than a crossing per chunk; checked again all the same.
        let bytes = req.bytes().await.map_err(|e| ApiError::BadRequest {
            code: "body_unreadable",
            message: format!("the request body could not be read: {e}"),
            path: String::new(),
        })?;
        if bytes.len() > limit {
            return Err(ApiError::Body(BodyError::TooLarge { limit }));
        }
        return Ok(bytes);
    }
    let Some(stream) = req.inner().body() else {
        return match coding {
            None => Ok(Vec::new()),
            Some(c) => Inflater::new(c, limit).finish().map_err(|e| inflate_error(e, limit)),
        };
    };
    // A body the client stops sending halfway is the client's failure, not the store's.
    let unreadable = |e: JsValue| ApiError::BadRequest {
        code: "body_unreadable",
        message: format!("the request body could not be read: {}", e.as_string().unwrap_or_else(|| format!("{e:?}"))),
        path: String::new(),
    };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut received = 0usize;
    let mut plain = Vec::new();
    let mut inflater = coding.map(|c| Inflater::new(c, limit));
    while let Some(chunk) = next_chunk(&reader).await.map_err(unreadable)? {
        let chunk = chunk.to_vec();
        received += chunk.len();
        let pushed = match &mut inflater {
            _ if received > limit => Err(ApiError::Body(BodyError::TooLarge { limit })),
            Some(i) => i.push(&chunk).map_err(|e| inflate_error(e, limit)),
            None => {
                plain.extend_from_slice(&chunk);
                Ok(())
            }
        };
        if let Err(e) = pushed {
            // Reading stops here: nothing more is kept. The rest of the body is read and dropped, a chunk at a
            // time, up to `DRAIN_BYTES` (a body that declared its length has at most the limit left: a longer
            // one was refused unread), so that the answer reaches the client and the connection carries its next
            // request; a body that goes on past that is cancelled. (Under `wrangler dev` a cancelled body can
            // make its proxy answer 503 instead of the Worker's 413: see abuse.test.mjs.)
            drain(&reader).await;
            return Err(e);
        }
    }
    match inflater {
        Some(i) => i.finish().map_err(|e| inflate_error(e, limit)),
        None => Ok(plain),
    }
}

/// The next chunk of a body, left in JavaScript's memory (the caller copies what it keeps); `None` at its end.
pub(crate) async fn next_chunk(
    reader: &worker::web_sys::ReadableStreamDefaultReader,
) -> Result<Option<worker::js_sys::Uint8Array>, worker::wasm_bindgen::JsValue> {
    use worker::js_sys::{Reflect, Uint8Array};
    let read = worker::wasm_bindgen_futures::JsFuture::from(reader.read()).await?;
    if Reflect::get(&read, &"done".into())?.is_truthy() {
        return Ok(None);
    }
    Ok(Some(Uint8Array::new(&Reflect::get(&read, &"value".into())?)))
}

/// Reads the rest of a refused body and drops it, up to `DRAIN_BYTES`, then cancels what is left: the answer
/// then reaches the client, and under `wrangler dev` the runtime stays up (a body cancelled unread restarted it).
pub(crate) async fn drain(reader: &worker::web_sys::ReadableStreamDefaultReader) {
    let mut drained = 0usize;
    while let Ok(Some(chunk)) = next_chunk(reader).await {
        drained += chunk.length() as usize;
        if drained > DRAIN_BYTES {
            let _ = reader.cancel();
            return;
        }
    }
}

/// How much of a refused body is read and dropped after its limit before the rest is cancelled.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

pub(crate) fn inflate_error(e: InflateError, limit: usize) -> ApiError {
    match e {
        InflateError::TooLarge => ApiError::Body(BodyError::TooLarge { limit }),
        InflateError::Corrupt(why) => ApiError::BadRequest {
            code: "invalid_body_encoding",
            message: format!("the body is not valid data of its Content-Encoding: {why}"),
            path: "Content-Encoding".into(),
        },
    }
}

/// The browser origin of a request, if it is a browser request at all. `null` is kept: it is a browser that
/// hides its origin, which no source allows (`http::origin_allowed`), not a server.
pub(crate) fn origin(req: &Request) -> Option<String> {
    req.headers().get("origin").ok().flatten().filter(|o| !o.trim().is_empty())
}

/// The secrets an identity token may be signed with: `EDGECDP_IDENTITY_SECRET`, and during a rotation
/// `EDGECDP_IDENTITY_SECRET_PREVIOUS` (see SECURITY.md). Shorter ones than the cookie's minimum are ignored.
pub(crate) fn identity_secrets(env: &Env) -> Vec<Vec<u8>> {
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

/// Whether a browser sent the request (`core::model::trust::is_browser_request`): an `Origin`, or the `Sec-Fetch-*`
/// metadata every current browser adds, even to a same-origin GET that carries no `Origin`.
pub(crate) fn from_browser(req: &Request) -> bool {
    let header = |name: &str| req.headers().get(name).ok().flatten();
    crate::core::model::trust::is_browser_request(
        origin(req).is_some(),
        header("sec-fetch-site").as_deref(),
        header("sec-fetch-mode").as_deref(),
        header("sec-fetch-dest").as_deref(),
    )
}

/// The key new profile ids are made with (`Identity::profile_id`): `EDGECDP_PROFILE_ID_SECRET`, or else one
/// derived from `EDGECDP_COOKIE_SECRET`. Without either, profile ids could be computed from identities by anyone,
/// so nothing is stored: a 503 until the Worker has a secret.
pub(crate) fn profile_id_key(env: &Env) -> Result<ProfileIdKey, ApiError> {
    let own = env.var("EDGECDP_PROFILE_ID_SECRET").map(|v| v.to_string()).unwrap_or_default();
    let secret = if own.len() >= cookie::MIN_SECRET_BYTES { Some(own.into_bytes()) } else { cookie::secret(env) };
    // The key derived from the secret is kept for the isolate, with the secret it came from: a changed secret
    // (a new deployment's) derives a new one.
    thread_local! {
        static KEY: std::cell::RefCell<Option<(Vec<u8>, ProfileIdKey)>> = const { std::cell::RefCell::new(None) };
    }
    if let Some(s) = &secret {
        if let Some(k) = KEY.with(|c| c.borrow().as_ref().filter(|(seen, _)| seen == s).map(|(_, k)| k.clone())) {
            return Ok(k);
        }
    }
    secret
        .map(|s| {
            let key = ProfileIdKey::of_secret(&s);
            KEY.with(|c| *c.borrow_mut() = Some((s, key.clone())));
            key
        })
        .ok_or_else(|| {
            ApiError::Unavailable(format!(
                "profile ids need a secret: set EDGECDP_COOKIE_SECRET or EDGECDP_PROFILE_ID_SECRET (at least {} bytes)",
                cookie::MIN_SECRET_BYTES
            ))
        })
}

pub(crate) fn server_key_from_browser(source: &str) -> ApiError {
    worker::console_warn!("a server key (source {source:?}) was sent from a browser origin and refused; rotate it");
    ApiError::Forbidden {
        code: "server_key_from_browser",
        message: "a server key is secret and never accepted from a browser; if a page holds it, rotate it".into(),
        path: "",
    }
}

/// Refuses a browser request from an origin that no source lists (the site's own origin always may ask);
/// answers the origin, for the CORS headers of the answer.
pub(crate) fn allowed_origin(req: &Request, config: &Config) -> Result<Option<String>, ApiError> {
    origin_allowed_by(req, |o| config.any_source_allows_origin(o))
}

/// `allowed_origin` with the rule given: which origins may ask (one source's, for that source's own answers).
pub(crate) fn origin_allowed_by(req: &Request, allows: impl Fn(&str) -> bool) -> Result<Option<String>, ApiError> {
    let origin = origin(req);
    if let Some(o) = &origin {
        if !http::origin_allowed(req, o, allows) {
            return Err(ApiError::Forbidden {
                code: "origin_not_allowed",
                message: format!("origin {o:?} is not allowed"),
                path: "",
            });
        }
    }
    Ok(origin)
}

/// Where and when the visitor asks: the page from the request (or the `Referer` of a browser's request), the
/// device from `context.userAgent` or the `User-Agent` header, local time from `context.timezone` or
/// Cloudflare's (locally, the `x-edgecdp-timezone` header, as for the country).
pub(crate) fn decide_context(
    req: &Request,
    env: &Env,
    r: &DecideRequest,
    country: Option<String>,
    now: Millis,
) -> DecideContext {
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
pub(crate) fn utc_offset_minutes(tz: &str, now: Millis) -> Option<i32> {
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

/// The version a conditional `PUT /v1/config` is based on: `If-Match: "N"` (an entity tag, as `GET /v1/config`'s
/// `ETag` gives it; `W/` and bare numbers are accepted too). No header: an unconditional write.
pub(crate) fn if_match_version(req: &Request) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.headers().get("if-match")? else { return Ok(None) };
    // Exactly what schema/openapi.json documents: `"7"`, `W/"7"` or `7`, between spaces or tabs; empty is none
    // (an empty header does not always reach the Worker, so it cannot mean more than its absence).
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Ok(None);
    }
    let tag = value.strip_prefix("W/").unwrap_or(value);
    let tag = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).unwrap_or(tag);
    let digits = !tag.is_empty() && tag.len() <= 19 && tag.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| tag.parse().ok()).flatten().map(Some).ok_or_else(|| ApiError::BadRequest {
        code: "invalid_header",
        message: format!(
            "If-Match must name one configuration version, as GET /v1/config's ETag: \"7\", not {value:?}"
        ),
        path: "If-Match".into(),
    })
}

/// The request's query string, without `?`; empty when it has none.
pub(crate) fn query(req: &Request) -> String {
    let href = href(req);
    UrlParts::of(&href).and_then(|u| u.query).unwrap_or_default().to_string()
}

/// The first value of a query parameter, when there is one and it is not empty.
pub(crate) fn query_param(req: &Request, name: &str) -> Result<Option<String>, ApiError> {
    Ok(query_pairs(&query(req)).find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v))
}

/// A whole-number query parameter from 1 to `max`, `default` when absent; anything else is a 400 with `code`
/// at the parameter's name.
pub(crate) fn count_param(
    req: &Request,
    name: &'static str,
    default: i64,
    max: i64,
    code: &'static str,
) -> Result<i64, ApiError> {
    // Present but empty (`?days=`) is not absent: it is not a number.
    let present = query_pairs(&query(req)).any(|(k, _)| k == name);
    let refused = || ApiError::BadRequest {
        code,
        message: format!("{name} must be a whole number from 1 to {max}"),
        path: name.into(),
    };
    match query_param(req, name)? {
        None if !present => Ok(default),
        None => Err(refused()),
        Some(v) => v.parse::<i64>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(refused),
    }
}
