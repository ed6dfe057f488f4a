//! Decide requests: `POST /v1/decide`'s JSON body and `GET /v1/decide`'s query string, read by the same rules.

use crate::core::base::encoding::percent_decode_query;
use crate::core::base::json::{JsonKind, JsonView};
use crate::core::model::context::{country_code, Context, Device};
use crate::core::model::event::PageContext;
use crate::core::wire::fields::{consent_map, context_fields, id_field, not_json, Ctx};
use crate::core::wire::*;
use std::collections::BTreeMap;

/// A request for decisions (`POST /v1/decide`, or the query of `GET /v1/decide`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecideRequest {
    pub anonymous_id: Option<String>,
    pub user_id: Option<String>,
    pub slots: Vec<String>,
    pub page: Option<PageContext>,
    /// Consent preferences sent with the request, which take precedence over the recorded ones.
    pub consent: Option<BTreeMap<String, bool>>,
    /// `context.userAgent` and `context.timezone` (an IANA name): a server asking on a visitor's behalf
    /// passes the visitor's; otherwise the request's own headers are used.
    pub user_agent: Option<String>,
    pub timezone: Option<String>,
    /// `context.location.country` and `context.utcOffset` (minutes east of UTC), for decisions only: consent
    /// always follows the request's own country.
    pub country: Option<String>,
    pub utc_offset_minutes: Option<i32>,
    /// `context.consent.tcString`, decoded: a server deciding on a visitor's behalf passes the visitor's CMP
    /// string; it stands in for the request's `euconsent-v2` cookie. Read only by the edge.
    pub tcf: Option<Box<crate::core::model::tcf::TcString>>,
}

impl DecideRequest {
    /// The decision context the request itself describes; the edge fills the gaps from the request's headers.
    pub fn context(&self) -> Context {
        Context {
            page: self.page.clone().unwrap_or_default(),
            country: self.country.clone(),
            device: self.user_agent.as_deref().map(Device::of_user_agent),
            utc_offset_minutes: self.utc_offset_minutes,
        }
    }
}

/// Parses the body of `POST /v1/decide`. Errors carry the path of the bad field.
pub fn parse_decide(body: &[u8]) -> Result<DecideRequest, BodyError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(BodyError::TooLarge { limit: MAX_EVENT_BYTES });
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(not_json)?;
    decide_request(&v)
}

/// Reads a decide request (`POST /v1/decide`'s body) from any JSON view: the edge's parsed body, or the
/// device's JavaScript object (so the browser decide module checks it by the same rules with no JSON parser).
pub fn decide_request<V: JsonView>(v: V) -> Result<DecideRequest, BodyError> {
    let shape = |path: &str, message: &str| BodyError::Shape { path: path.to_string(), message: message.to_string() };
    if v.kind() != JsonKind::Object {
        return Err(shape("", "body must be a JSON object"));
    }
    let cx = Ctx { index: 0, base: "" };
    let rejected = |r: Rejection| BodyError::Shape { path: r.path, message: r.message };
    let anonymous_id = id_field(&cx, &v, "anonymousId").map_err(rejected)?;
    let user_id = id_field(&cx, &v, "userId").map_err(rejected)?;
    let mut slots = Vec::new();
    match v.get("slots") {
        Some(items) if items.kind() == JsonKind::Array => items.try_items(|i, item| match item.string() {
            Some(s) if !s.as_ref().is_empty() => {
                slots.push(s.as_ref().to_string());
                Ok(())
            }
            _ => Err(shape(&format!("slots[{i}]"), "a slot is a non-empty string")),
        })?,
        _ => return Err(shape("slots", "slots must be an array of slot names")),
    }
    let context = v.get("context");
    let (consent, page) = context_fields(&cx, context.clone(), None).map_err(rejected)?;
    #[cfg(feature = "batch")]
    let tcf = crate::core::wire::fields::tc_string(&cx, context.clone(), None).map_err(rejected)?;
    #[cfg(not(feature = "batch"))]
    let tcf = None;
    let member = |key: &str| context.as_ref().and_then(|c| c.get(key)).filter(|m| m.kind() != JsonKind::Null);
    let context_text = |key: &str| match member(key) {
        None => Ok(None),
        Some(m) => match m.string().filter(|s| s.as_ref().len() <= 1024) {
            Some(s) => Ok(Some(s.as_ref().to_string())),
            None => Err(shape(&["context.", key].concat(), &[key, " must be a string of at most 1024 bytes"].concat())),
        },
    };
    let user_agent = context_text("userAgent")?;
    let timezone = context_text("timezone")?;
    let country = match member("location").and_then(|l| l.get("country")).filter(|c| c.kind() != JsonKind::Null) {
        None => None,
        Some(c) => match c.string().and_then(|c| country_code(c.as_ref()).filter(|_| c.as_ref().len() == 2)) {
            Some(c) => Some(c),
            None => return Err(shape("context.location.country", "country must be a two-letter ISO 3166-1 code")),
        },
    };
    let utc_offset_minutes = match member("utcOffset") {
        None => None,
        Some(m) => match m.number().filter(|n| n.fract() == 0.0 && (-840.0..=840.0).contains(n)) {
            Some(n) => Some(n as i32),
            None => {
                return Err(shape(
                    "context.utcOffset",
                    "utcOffset is the offset from UTC in whole minutes, -840 to 840",
                ))
            }
        },
    };
    Ok(DecideRequest {
        anonymous_id,
        user_id,
        slots,
        page,
        consent: consent.map(consent_map),
        user_agent,
        timezone,
        country,
        utc_offset_minutes,
        tcf,
    })
}

/// A query parameter that cannot be read: its code, message and name (the path of the bad field).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    pub code: &'static str,
    pub message: String,
    pub path: String,
}

/// Reads the decide request a query string describes (`GET /v1/decide` and `GET /v1/decide/summary`; the query
/// without its `?`): `slots` (comma-separated), `anonymousId`, `userId`, `url`, `path`, `referrer`, and
/// `personalization` (`true`/`false`, the visitor's current choice, as a body's `context.consent`). Unknown
/// parameters and empty values are ignored, as on the web.
pub fn decide_query(query: &str) -> Result<DecideRequest, QueryError> {
    let mut request = DecideRequest::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode_query(k), percent_decode_query(v));
        match k.as_str() {
            "slots" => {
                request.slots = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
            }
            "anonymousId" | "userId" if !v.is_empty() => {
                // The same limit as for an event's ids, said with the query parameter's name.
                if v.chars().count() > MAX_ID_CHARS {
                    let message = format!("{k} is longer than {MAX_ID_CHARS} characters");
                    return Err(QueryError { code: "too_long", message, path: k });
                }
                if k == "anonymousId" {
                    request.anonymous_id = Some(v);
                } else {
                    request.user_id = Some(v);
                }
            }
            "url" | "path" | "referrer" if !v.is_empty() => {
                let page = request.page.get_or_insert_with(PageContext::default);
                let field = match k.as_str() {
                    "url" => &mut page.url,
                    "path" => &mut page.path,
                    _ => &mut page.referrer,
                };
                *field = Some(v);
            }
            "personalization" if v == "true" || v == "false" => {
                request.consent = Some(BTreeMap::from([("personalization".to_string(), v == "true")]))
            }
            _ => {}
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_requests_name_their_bad_field() {
        let ok = parse_decide(br#"{"anonymousId":"a","slots":["hero"],"context":{"page":{"path":"/x"}}}"#).unwrap();
        assert_eq!(ok.slots, vec!["hero"]);
        assert_eq!(ok.page.unwrap().path.as_deref(), Some("/x"));
        let err = parse_decide(br#"{"slots":["hero",3]}"#).unwrap_err();
        assert!(matches!(err, BodyError::Shape { path, .. } if path == "slots[1]"));
        let err = parse_decide(br#"{"anonymousId":{},"slots":[]}"#).unwrap_err();
        assert!(matches!(err, BodyError::Shape { path, .. } if path == "anonymousId"));
    }

    #[test]
    fn decide_queries_read_like_bodies_and_name_their_bad_parameter() {
        let q =
            decide_query("slots=hero,%20side+bar,&anonymousId=a%2Bb&path=%2Fshop&personalization=false&x=1").unwrap();
        assert_eq!(q.slots, vec!["hero", "side bar"]);
        assert_eq!(q.anonymous_id.as_deref(), Some("a+b"));
        assert_eq!(q.page.unwrap().path.as_deref(), Some("/shop"));
        assert_eq!(q.consent, Some(BTreeMap::from([("personalization".to_string(), false)])));
        let long = format!("userId={}", "u".repeat(MAX_ID_CHARS + 1));
        let e = decide_query(&long).unwrap_err();
        assert_eq!((e.code, e.path.as_str()), ("too_long", "userId"));
        assert_eq!(decide_query("").unwrap(), DecideRequest::default());
    }
}
