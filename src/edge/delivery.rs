//! Edge HTML delivery: the Worker proxies the site's origin and fills `data-edgecdp-slot` elements in pages as
//! they stream through, so personalized content arrives in the HTML itself (no flicker, no script).
//!
//! The rules (which paths, which headers, cache headers, which charsets) live in `core::engine::delivery`; this
//! shell fetches, looks the visitor up, decides, and hands the origin's answer to the runtime's own streaming
//! `HTMLRewriter` (Cloudflare's lol_html, native code in workerd), which fills the slots chunk by chunk. Linking
//! lol_html into the Worker's Wasm instead cost about half of that Wasm (its parser, CSS selectors and every
//! legacy charset's tables; SIZE.md) and ran the rewriting in slower Wasm code.

use crate::core::base::sort::CollectInto;
use crate::core::base::time::Millis;
use crate::core::base::url::UrlParts;
use crate::core::engine::apply::ApplyRequest;
use crate::core::engine::decide::{decide, Decision};
use crate::core::engine::delivery::{
    ascii_compatible, charset, forwards_request_header, is_html, local_location, private_cache_control,
    readable_encoding, vary_with, without_own_cookies, HOP_HEADER, SLOT_ATTRIBUTE,
};
use crate::core::model::consent::{Permitted, RequestSignals};
use crate::core::model::event::PageContext;
use crate::core::model::profile::Profile;
use crate::core::rules::delivery::Delivery;
use crate::core::rules::Config;
use crate::core::wire::decide::DecideRequest;
use crate::edge::clock::now;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::http::{self};
use crate::edge::objects::profile_client::apply;
use crate::edge::request::{decide_context, signals};
use crate::edge::visitor::Visitor;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use worker::js_sys::{Object, Promise, Reflect};
use worker::{Env, Headers, Method, Request, RequestInit, RequestRedirect, Response, ResponseBody};

/// Proxies one request to the origin; fills the slots of an HTML answer.
pub async fn proxy(req: Request, env: &Env, config: &Config, delivery: &Delivery) -> ApiResult {
    let href = crate::edge::http::href(&req);
    let url = UrlParts::of(&href).ok_or_else(|| ApiError::BadGateway(format!("{href} is not an absolute URL")))?;
    let own = url.origin();
    if own.eq_ignore_ascii_case(&delivery.origin) {
        return Err(ApiError::BadGateway(format!("delivery.origin {own} is this Worker itself; proxying would loop")));
    }
    let upstream = delivery.upstream_url(url.path, url.query);
    let method = req.method();
    let mut init = RequestInit::new();
    init.with_method(method.clone()).with_headers(forwarded_headers(&req, env, config, &own)?);
    // Redirects go back to the browser (with their Location made local), as the origin meant them.
    init.with_redirect(RequestRedirect::Manual);
    if !matches!(method, Method::Get | Method::Head) {
        // The request body streams on to the origin as it arrives.
        init.with_body(req.inner().body().map(JsValue::from));
    }
    let outgoing = Request::new_with_init(&upstream, &init)
        .map_err(|e| ApiError::BadGateway(format!("cannot build the request to {upstream}: {e}")))?;
    // The origin has `delivery.timeout` to send its status and headers; a hung origin then costs the visitor a
    // 504 rather than a page that never loads. The fetch is aborted, so nothing keeps running for it.
    let resp = match http::fetch_within(outgoing, delivery.timeout).await {
        Some(answer) => answer.map_err(|e| ApiError::BadGateway(format!("fetching {upstream} failed: {e}")))?,
        None => {
            return Err(ApiError::GatewayTimeout(format!(
                "{upstream} did not begin answering within {} ms (delivery.timeout)",
                delivery.timeout
            )));
        }
    };

    let status = resp.status_code();
    let headers = Headers::new();
    for (name, value) in resp.headers().entries() {
        if name == "location" {
            headers.append(&name, &local_location(&value, &delivery.origin).unwrap_or(value))?;
        } else {
            headers.append(&name, &value)?;
        }
    }
    let content_type = headers.get("content-type")?;
    let fillable = !config.slots.is_empty()
        && method != Method::Head
        && !matches!(status, 204 | 205 | 304)
        && matches!(resp.body(), ResponseBody::Stream(_))
        && is_html(content_type.as_deref())
        && readable_encoding(headers.get("content-encoding")?.as_deref())
        && content_type.as_deref().and_then(charset).is_none_or(ascii_compatible);
    let (_, body) = resp.into_parts();
    if !fillable {
        // Not a page to fill: the origin's answer as it came, body untouched.
        return Ok(Response::builder().with_status(status).with_headers(headers).body(body));
    }
    let served = decide_page(&req, env, config).await;

    // The body is rewritten: its length is no longer known, and it differs per visitor, so no shared cache may
    // keep it and no validator of the origin's bytes may revalidate it.
    for name in ["content-length", "etag", "last-modified"] {
        headers.delete(name)?;
    }
    headers.set("cache-control", &private_cache_control(headers.get("cache-control")?.as_deref()))?;
    headers.set("vary", &vary_with(headers.get("vary")?.as_deref(), "Cookie"))?;
    let page = Response::builder().with_status(status).with_headers(headers).body(body);
    fill(page, served)
}

/// A page's decision, and what recording it needs once the page has been sent.
struct Served {
    env: Env,
    decision: Decision,
    /// The profile that gets the impressions; `None` for a visitor without one, who is shown fallbacks and has
    /// nothing recorded (as with `/v1/decide`).
    profile_id: Option<String>,
    signals: RequestSignals,
    now: Millis,
}

#[wasm_bindgen]
extern "C" {
    /// The runtime's streaming HTML rewriter (workers-rs 0.8 has no binding for it).
    #[wasm_bindgen(js_name = HTMLRewriter)]
    type HtmlRewriter;
    #[wasm_bindgen(constructor, js_class = "HTMLRewriter")]
    fn new() -> HtmlRewriter;
    #[wasm_bindgen(method, js_class = "HTMLRewriter")]
    fn on(this: &HtmlRewriter, selector: &str, handlers: &Object) -> HtmlRewriter;
    #[wasm_bindgen(method, js_class = "HTMLRewriter", js_name = onDocument)]
    fn on_document(this: &HtmlRewriter, handlers: &Object) -> HtmlRewriter;
    #[wasm_bindgen(method, catch, js_class = "HTMLRewriter")]
    fn transform(this: &HtmlRewriter, page: &worker::web_sys::Response) -> Result<worker::web_sys::Response, JsValue>;

    /// An element the rewriter hands to an `element` handler.
    type PageElement;
    #[wasm_bindgen(method, js_name = getAttribute)]
    fn get_attribute(this: &PageElement, name: &str) -> Option<String>;
    #[wasm_bindgen(method, js_name = setInnerContent)]
    fn set_inner_content(this: &PageElement, content: &str, options: &Object);
}

/// The page with every `data-edgecdp-slot` element that the decision answers filled with its HTML, as the body
/// streams through; nothing is buffered beyond what the rewriter holds of a tag split across chunks. When the
/// document ends, and before the body does, the slots the page really showed are recorded on the profile (caps,
/// experiment exposures), as `/v1/decide` records what it answers; slots that were decided but that the page
/// does not have are not.
fn fill(page: Response, served: Served) -> ApiResult {
    let slots: BTreeMap<String, String> =
        served.decision.slots.iter().map(|(name, answer)| (name.clone(), answer.html.clone())).collect_map();
    let shown = Rc::new(RefCell::new(BTreeSet::new()));
    let seen = shown.clone();
    let as_html = Object::new();
    set(&as_html, "html", &JsValue::TRUE);
    let element = Closure::<dyn FnMut(PageElement)>::new(move |el: PageElement| {
        let name = el.get_attribute(SLOT_ATTRIBUTE).unwrap_or_default();
        if let Some((name, html)) = slots.get_key_value(name.trim()) {
            el.set_inner_content(html, &as_html);
            seen.borrow_mut().insert(name.clone());
        }
    });
    let served = RefCell::new(Some(served));
    let end = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |_| {
        let served = served.borrow_mut().take();
        let shown = shown.borrow().clone();
        worker::wasm_bindgen_futures::future_to_promise(async move {
            if let Some(served) = served {
                record(served, shown).await;
            }
            Ok(JsValue::UNDEFINED)
        })
    });
    let on_element = Object::new();
    set(&on_element, "element", &element.into_js_value());
    let on_document = Object::new();
    set(&on_document, "end", &end.into_js_value());
    let rewriter = HtmlRewriter::new().on(&format!("[{SLOT_ATTRIBUTE}]"), &on_element).on_document(&on_document);
    let page: worker::web_sys::Response = page.into();
    match rewriter.transform(&page) {
        Ok(filled) => Ok(Response::from(filled)),
        Err(e) => {
            // A charset the runtime cannot rewrite in: the page goes out as the origin wrote it, unfilled.
            worker::console_warn!("edge delivery: the page could not be rewritten, sent unfilled: {e:?}");
            Ok(Response::from(page))
        }
    }
}

fn set(target: &Object, key: &str, value: &JsValue) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(target, &key.into(), value);
}

/// Records the impressions of the slots a page showed. A failure is logged: the page has been sent already.
async fn record(served: Served, shown: BTreeSet<String>) {
    let Served { env, mut decision, profile_id, signals, now } = served;
    let Some(profile_id) = profile_id else { return };
    decision.slots.retain(|name, _| shown.contains(name));
    let impressions = decision.impressions(now);
    if impressions.is_empty() {
        return;
    }
    if let Err(e) = apply(&env, ApplyRequest { profile_id, signals, impressions, ..ApplyRequest::default() }).await {
        worker::console_error!("edge delivery: recording what a page showed failed: {e:?}");
    }
}

/// The request headers the origin gets: the browser's, without hop-by-hop headers, Cloudflare's own, and anything
/// of edgecdp's own (the `x-edgecdp-*` headers, the CSRF token among them; every `edgecdp_*` cookie, the visitor's
/// id and the console's session among them; an `Authorization` that carries the admin token or a source's key);
/// plus where the request was really addressed. No credential of edgecdp's may reach an origin or its logs.
fn forwarded_headers(req: &Request, env: &Env, config: &Config, own: &str) -> Result<Headers, ApiError> {
    let incoming = req.headers();
    let connection = incoming.get("connection")?;
    let out = Headers::new();
    for (name, value) in incoming.entries() {
        if !forwards_request_header(&name, connection.as_deref()) {
            continue;
        }
        match name.as_str() {
            "authorization" if carries_own_credential(env, config, &value) => {}
            "cookie" => {
                if let Some(rest) = without_own_cookies(&value) {
                    out.append("cookie", &rest)?;
                }
            }
            _ => out.append(&name, &value)?,
        }
    }
    if let Some((scheme, host)) = own.split_once("://") {
        out.set("x-forwarded-host", host)?;
        out.set("x-forwarded-proto", scheme)?;
    }
    // Incoming `x-edgecdp-*` headers were dropped above, so this one is only ever the Worker's own.
    out.set(HOP_HEADER, "1")?;
    Ok(out)
}

/// Whether an `Authorization` value carries a credential of edgecdp's: the admin token, or any source's key (a
/// server key as Bearer or Basic, or even a browser source's write key, which means nothing to the origin).
fn carries_own_credential(env: &Env, config: &Config, authorization: &str) -> bool {
    let key = crate::edge::auth::bearer(authorization)
        .map(String::from)
        .or_else(|| crate::core::wire::auth::write_key_from_basic_auth(authorization));
    crate::edge::auth::carries_admin_token(env, authorization) || key.is_some_and(|k| config.authenticate(&k).is_some())
}

/// Decides every configured slot for the visitor of the cookie, the same way `GET /v1/decide` does. A page
/// whose store lookup fails still goes out, with the fallbacks.
async fn decide_page(req: &Request, env: &Env, config: &Config) -> Served {
    let visitor = match Visitor::of_page(req, env, config).await {
        Ok(v) => v,
        Err(e) => {
            worker::console_error!("edge delivery: the profile store is unavailable, serving fallbacks: {e:?}");
            Visitor { origin: None, profile: None, signals: signals(req, env, &config.consent) }
        }
    };
    let subject = visitor.permitted(config, None);
    let now = now();
    let decision = decide_for_page(req, env, config, subject, &visitor.signals, now);
    let profile_id = visitor.profile.as_ref().map(|p| p.id.clone());
    Served { env: env.clone(), decision, profile_id, signals: visitor.signals, now }
}

/// The one call to `core::engine::decide` for proxied pages, in the page's own context: this request's URL and path,
/// its `Referer` as the referrer, and the country, device and local time that `decide_context` reads from the
/// request as for `/v1/decide`. Every configured slot is decided up front (cheap, no I/O), because the page
/// reveals its slots only as it streams; the ones it does not have are not used, and not recorded.
fn decide_for_page(
    req: &Request,
    env: &Env,
    config: &Config,
    subject: Option<Permitted<&Profile>>,
    signals: &RequestSignals,
    now: Millis,
) -> Decision {
    let href = crate::edge::http::href(req);
    let page = PageContext {
        path: UrlParts::of(&href).map(|u| u.path.to_string()),
        url: Some(href.clone()),
        referrer: req.headers().get("referer").ok().flatten().filter(|v| !v.is_empty()),
    };
    let request = DecideRequest { page: Some(page), ..DecideRequest::default() };
    let cx = decide_context(req, env, &request, signals.country.clone(), now);
    let slots: Vec<String> = config.slots.keys().cloned().collect();
    decide(config, subject, &cx, &slots, now)
}
