//! The readers every JSON body of the wire shares (events, decisions, impressions): where a problem is (`Ctx`,
//! its path), ids, names, times and objects checked against the limits, nested values walked to their depth and
//! length, and the request context (consent as Segment or RudderStack says it, the page). They read any
//! `JsonView`, so the browser checks with the very same code through `JSON.parse`.

use crate::core::base::json::{JsonKind, JsonView};
use crate::core::base::time::{parse_iso8601, push_padded, Millis};
use crate::core::model::event::PageContext;
use crate::core::wire::*;
use std::collections::BTreeMap;

pub(super) fn not_json(e: serde_json::Error) -> BodyError {
    if e.is_data() {
        // The JSON was well formed but the top level was not an object (or a field had the wrong type).
        BodyError::Shape { path: String::new(), message: format!("body must be a JSON object: {e}") }
    } else {
        BodyError::NotJson(format!("body is not valid JSON: {e}"))
    }
}

/// Builds a path below `base`, which is empty for single-event bodies.
pub(super) fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else {
        [base, ".", field].concat()
    }
}

pub(super) struct Ctx<'a> {
    pub(super) index: usize,
    pub(super) base: &'a str,
}

impl Ctx<'_> {
    pub(super) fn reject(&self, code: &'static str, field: &str, message: impl Into<String>) -> Rejection {
        let path = if field.is_empty() { self.base.to_string() } else { join(self.base, field) };
        Rejection { index: self.index, code, message: message.into(), path }
    }
}

/// Consent as a client sent it, checked by the wire rules and still a view.
#[derive(Clone)]
pub(super) enum ConsentView<V> {
    /// Segment's `context.consent.categoryPreferences`: an object of booleans.
    Preferences(V),
    /// RudderStack's `context.consentManagement`: arrays of the category ids granted and denied. Only the edge
    /// reads it (the browser's own Tracker and decide module never receive RudderStack's events).
    #[cfg(feature = "batch")]
    Ids { allowed: Option<V>, denied: Option<V> },
}

/// Consent preferences that the wire rules found valid, as a map. Inserted one by one: collecting into a
/// `BTreeMap` would link a sort into the Worker for members that already come in order. An id that RudderStack's
/// lists name both granted and denied counts as denied.
pub(super) fn consent_map<V: JsonView>(consent: ConsentView<V>) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    match consent {
        ConsentView::Preferences(prefs) => {
            let _ = prefs.try_entries(|k, v| {
                if let Some(granted) = v.boolean() {
                    out.insert(k.to_string(), granted);
                }
                Ok::<(), ()>(())
            });
        }
        #[cfg(feature = "batch")]
        ConsentView::Ids { allowed, denied } => {
            for (list, granted) in [(allowed, true), (denied, false)] {
                let _ = list.map(|l| {
                    l.try_items(|_, id| {
                        if let Some(id) = id.string() {
                            out.insert(id.as_ref().to_string(), granted);
                        }
                        Ok::<(), ()>(())
                    })
                });
            }
        }
    }
    out
}

pub(super) fn id_field<V: JsonView>(cx: &Ctx, obj: &V, field: &str) -> Result<Option<String>, Rejection> {
    let s = match obj.get(field) {
        None => return Ok(None),
        Some(v) => match v.kind() {
            JsonKind::Null => return Ok(None),
            JsonKind::String => v.string().map(|s| s.as_ref().to_string()).unwrap_or_default(),
            // Segment's libraries accept numeric ids and send them as numbers.
            JsonKind::Number => v.number_text().unwrap_or_default(),
            _ => return Err(cx.reject("invalid_type", field, [field, " must be a string"].concat())),
        },
    };
    if char_count(&s) > MAX_ID_CHARS {
        return Err(cx.reject(
            "string_too_long",
            field,
            [field, " is longer than ", &decimal(MAX_ID_CHARS), " characters"].concat(),
        ));
    }
    Ok(if s.is_empty() { None } else { Some(s) })
}

pub(super) fn name_field<V: JsonView>(cx: &Ctx, obj: &V, field: &str) -> Result<Option<String>, Rejection> {
    let Some(v) = obj.get(field) else { return Ok(None) };
    if v.kind() == JsonKind::Null {
        return Ok(None);
    }
    let Some(s) = v.string() else {
        return Err(cx.reject("invalid_type", field, [field, " must be a string"].concat()));
    };
    let s = s.as_ref();
    if s.trim().is_empty() {
        Err(cx.reject("missing_field", field, [field, " must not be empty"].concat()))
    } else if char_count(s) > MAX_NAME_CHARS {
        Err(cx.reject(
            "string_too_long",
            field,
            [field, " is longer than ", &decimal(MAX_NAME_CHARS), " characters"].concat(),
        ))
    } else {
        Ok(Some(s.to_string()))
    }
}

pub(super) fn optional_time<V: JsonView>(cx: &Ctx, obj: &V, field: &str) -> Result<Option<Millis>, Rejection> {
    match obj.get(field) {
        None => Ok(None),
        Some(v) if v.kind() == JsonKind::Null => Ok(None),
        Some(v) => timestamp_of(&v)
            .map(Some)
            .ok_or_else(|| cx.reject("invalid_timestamp", field, [field, " must be an ISO 8601 date-time"].concat())),
    }
}

pub(super) fn object_field<V: JsonView>(cx: &Ctx, obj: &V, field: &str) -> Result<Option<V>, Rejection> {
    object_value(cx, obj.get(field), field)
}

/// An optional object at `field` (a path below the event, `context.traits`).
pub(super) fn object_value<V: JsonView>(cx: &Ctx, v: Option<V>, field: &str) -> Result<Option<V>, Rejection> {
    let Some(v) = v else { return Ok(None) };
    match v.kind() {
        JsonKind::Null => Ok(None),
        JsonKind::Object => {
            check_nested(cx, &v, field)?;
            Ok(Some(v))
        }
        _ => Err(cx.reject("invalid_type", field, [field, " must be an object"].concat())),
    }
}

/// Checks a nested value: no deeper than `MAX_DEPTH`, no string (or key) longer than `MAX_STRING_BYTES`. The
/// rejection names the exact place, e.g. `batch[2].properties.items[3].description`.
pub(super) fn check_nested<V: JsonView>(cx: &Ctx, v: &V, field: &str) -> Result<(), Rejection> {
    fn walk<V: JsonView>(cx: &Ctx, v: &V, path: &mut String, depth: usize) -> Result<(), Rejection> {
        match v.kind() {
            JsonKind::String => {
                let len = v.string().map_or(0, |s| s.as_ref().len());
                if len > MAX_STRING_BYTES {
                    return Err(cx.reject(
                        "string_too_long",
                        path,
                        ["a string value is ", &decimal(len), " bytes; the limit is ", &decimal(MAX_STRING_BYTES)]
                            .concat(),
                    ));
                }
                Ok(())
            }
            JsonKind::Array | JsonKind::Object if depth >= MAX_DEPTH => {
                Err(cx.reject("too_deep", path, ["nests deeper than ", &decimal(MAX_DEPTH), " levels"].concat()))
            }
            JsonKind::Array => v.try_items(|i, item| {
                let len = path.len();
                path.push('[');
                push_padded(path, i as i64, 1);
                path.push(']');
                walk(cx, &item, path, depth + 1)?;
                path.truncate(len);
                Ok(())
            }),
            JsonKind::Object => v.try_entries(|k, item| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                if k.len() > MAX_STRING_BYTES {
                    return Err(cx.reject("string_too_long", path, "a property name is too long"));
                }
                walk(cx, &item, path, depth + 1)?;
                path.truncate(len);
                Ok(())
            }),
            _ => Ok(()),
        }
    }
    let mut path = field.to_string();
    walk(cx, v, &mut path, 0)
}

/// The number of characters in `s`, as `s.chars().count()` counts them: the bytes that do not continue a UTF-8
/// sequence. Written out because std's count is unrolled for speed, about 0.8 KB of Wasm that every visitor of
/// a site downloads; the ids and names it measures are short.
pub fn char_count(s: &str) -> usize {
    s.bytes().filter(|b| b & 0xC0 != 0x80).count()
}

/// `n` in decimal, for messages the browser build writes too (see `push_padded`).
pub(super) fn decimal(n: usize) -> String {
    let mut out = String::new();
    push_padded(&mut out, n as i64, 1);
    out
}

/// The consent preferences (checked, still a view) and the page.
/// `context.consent.tcString` (the event's own context first, then the batch's), decoded (`model::tcf`). A
/// string that does not decode refuses the event, at the path of the field that failed inside it. Only the
/// edge reads it: the browser's own Tracker and decide module take the CMP's answer from `__tcfapi`.
#[cfg(feature = "batch")]
pub(super) fn tc_string<V: JsonView>(
    cx: &Ctx,
    own: Option<V>,
    envelope: Option<V>,
) -> Result<Option<Box<crate::core::model::tcf::TcString>>, Rejection> {
    const PATH: &str = "context.consent.tcString";
    let in_consent = |c: Option<V>| c.and_then(|c| c.get("consent")).filter(|c| c.kind() != JsonKind::Null);
    let Some(value) = in_consent(own).or_else(|| in_consent(envelope)).and_then(|c| c.get("tcString")) else {
        return Ok(None);
    };
    match value.kind() {
        JsonKind::Null => Ok(None),
        JsonKind::String => {
            let text = value.string().map(|s| s.as_ref().to_string()).unwrap_or_default();
            if text.is_empty() {
                return Ok(None);
            }
            crate::core::model::tcf::decode(&text).map(|tc| Some(Box::new(tc))).map_err(|e| {
                let path = if e.path.is_empty() { PATH.to_string() } else { [PATH, ".", &e.path].concat() };
                cx.reject("invalid_tc_string", &path, ["not a TCF v2 TC string: ", &e.message].concat())
            })
        }
        _ => Err(cx.reject("invalid_type", PATH, "tcString must be a string (the CMP's TC string)")),
    }
}

pub(super) type ContextFields<V> = (Option<ConsentView<V>>, Option<PageContext>);

/// Reads `context.consent` and `context.page`; the event's own context (`own`) wins over the batch's
/// (`envelope`), field by field.
pub(super) fn context_fields<V: JsonView>(
    cx: &Ctx,
    own: Option<V>,
    envelope: Option<V>,
) -> Result<ContextFields<V>, Rejection> {
    let own = match own {
        None => None,
        Some(o) => match o.kind() {
            JsonKind::Null => None,
            JsonKind::Object => {
                check_nested(cx, &o, "context")?;
                Some(o)
            }
            _ => return Err(cx.reject("invalid_type", "context", "context must be an object")),
        },
    };
    let pick = |key: &str| own.as_ref().and_then(|o| o.get(key)).or_else(|| envelope.as_ref().and_then(|e| e.get(key)));
    let not_null = |v: Option<V>| v.filter(|v| v.kind() != JsonKind::Null);

    let consent = match not_null(pick("consent")) {
        None => None,
        Some(c) if c.kind() == JsonKind::Object => match not_null(c.get("categoryPreferences")) {
            None => None,
            Some(prefs) if prefs.kind() == JsonKind::Object => {
                prefs.try_entries(|k, v| match v.boolean() {
                    Some(_) => Ok(()),
                    None => Err(cx.reject(
                        "invalid_type",
                        &["context.consent.categoryPreferences.", k].concat(),
                        "a consent preference must be true or false",
                    )),
                })?;
                Some(ConsentView::Preferences(prefs))
            }
            Some(_) => {
                return Err(cx.reject(
                    "invalid_type",
                    "context.consent.categoryPreferences",
                    "categoryPreferences must be an object",
                ))
            }
        },
        Some(_) => return Err(cx.reject("invalid_type", "context.consent", "context.consent must be an object")),
    };
    // RudderStack's JavaScript SDK says consent with its consent manager's category ids, granted and denied.
    #[cfg(feature = "batch")]
    let consent = match (consent, not_null(pick("consentManagement"))) {
        (Some(c), _) => Some(c),
        (None, None) => None,
        (None, Some(m)) if m.kind() == JsonKind::Object => {
            let list = |key: &str| -> Result<Option<V>, Rejection> {
                let path = ["context.consentManagement.", key].concat();
                match not_null(m.get(key)) {
                    None => Ok(None),
                    Some(l) if l.kind() == JsonKind::Array => {
                        l.try_items(|i, id| match id.kind() {
                            JsonKind::String => Ok(()),
                            _ => Err(cx.reject(
                                "invalid_type",
                                &[path.as_str(), "[", &decimal(i), "]"].concat(),
                                "a consent category id must be a string",
                            )),
                        })?;
                        Ok(Some(l))
                    }
                    Some(_) => {
                        Err(cx.reject("invalid_type", &path, [key, " must be an array of category ids"].concat()))
                    }
                }
            };
            let (allowed, denied) = (list("allowedConsentIds")?, list("deniedConsentIds")?);
            (allowed.is_some() || denied.is_some()).then_some(ConsentView::Ids { allowed, denied })
        }
        (None, Some(_)) => {
            let message = "context.consentManagement must be an object";
            return Err(cx.reject("invalid_type", "context.consentManagement", message));
        }
    };

    let page = match not_null(pick("page")) {
        None => None,
        Some(p) if p.kind() == JsonKind::Object => {
            let text = |k: &str| -> Result<Option<String>, Rejection> {
                match not_null(p.get(k)) {
                    None => Ok(None),
                    Some(v) => match v.string() {
                        Some(s) => Ok(Some(s.as_ref().to_string())),
                        None => Err(cx.reject(
                            "invalid_type",
                            &["context.page.", k].concat(),
                            [k, " must be a string"].concat(),
                        )),
                    },
                }
            };
            Some(PageContext { path: text("path")?, url: text("url")?, referrer: text("referrer")? })
        }
        Some(_) => return Err(cx.reject("invalid_type", "context.page", "context.page must be an object")),
    };
    Ok((consent, page))
}

pub(super) fn timestamp_of<V: JsonView>(v: &V) -> Option<Millis> {
    v.string().and_then(|s| parse_iso8601(s.as_ref()))
}
