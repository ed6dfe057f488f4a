//! Events on the wire: `POST /v1/batch` and the single-event endpoints, validated event by event.

use crate::core::base::encoding::hex;
use crate::core::base::json::{JsonKind, JsonView};
use crate::core::base::time::Millis;
use crate::core::model::event::{Event, EventKind, PageContext};
use crate::core::model::identity::Identity;
use crate::core::wire::fields::*;
use crate::core::wire::*;
#[cfg(feature = "batch")]
use serde::Deserialize;
#[cfg(feature = "batch")]
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// The outcome of parsing a body: the good events, the rejected ones, and the write key if the body had one.
#[derive(Debug, Default)]
pub struct Parsed {
    pub write_key: Option<String>,
    pub events: Vec<Event>,
    pub rejected: Vec<Rejection>,
}

/// The single-event endpoints, each of which fixes the event `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallType {
    Track,
    Page,
    Screen,
    Identify,
    Alias,
    Group,
}

impl CallType {
    pub fn from_name(s: &str) -> Option<CallType> {
        Some(match s {
            "track" => CallType::Track,
            "page" => CallType::Page,
            "screen" => CallType::Screen,
            "identify" => CallType::Identify,
            "alias" => CallType::Alias,
            "group" => CallType::Group,
            _ => return None,
        })
    }

    /// The single-event endpoint a path segment names: the call's name (`/v1/track`), or its first letter as
    /// Segment's analytics.js posts it (`/v1/t`, `/v1/p`, `/v1/i`, `/v1/a`, `/v1/g`, `/v1/s`).
    pub fn from_path(s: &str) -> Option<CallType> {
        Some(match s {
            "t" => CallType::Track,
            "p" => CallType::Page,
            "s" => CallType::Screen,
            "i" => CallType::Identify,
            "a" => CallType::Alias,
            "g" => CallType::Group,
            _ => return CallType::from_name(s),
        })
    }
}

#[cfg(feature = "batch")]
#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Option<&'a RawValue>,
    #[serde(rename = "sentAt")]
    sent_at: Option<serde_json::Value>,
    context: Option<serde_json::Value>,
    #[serde(rename = "writeKey")]
    write_key: Option<serde_json::Value>,
}

/// What the batch envelope contributes to each of its events.
#[derive(Default)]
struct Envelope {
    sent_at: Option<Millis>,
    /// The batch's `context`, always an object.
    context: Option<serde_json::Value>,
    /// A line of an import file: history, whose time must be given and is never moved.
    historical: bool,
}

/// Parses `POST /v1/batch`. `received` is when the edge received the request.
#[cfg(feature = "batch")]
pub fn parse_batch(body: &[u8], received: Millis) -> Result<Parsed, BodyError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(BodyError::TooLarge { limit: MAX_BATCH_BYTES });
    }
    let outer: BatchBody = serde_json::from_slice(body).map_err(not_json)?;
    let write_key = write_key_of(outer.write_key.as_ref(), "writeKey")?;
    let mut envelope = Envelope::default();
    if let Some(s) = &outer.sent_at {
        envelope.sent_at = Some(timestamp_of(&s).ok_or_else(|| BodyError::Shape {
            path: "sentAt".into(),
            message: "sentAt must be an ISO 8601 date-time".into(),
        })?);
    }
    match outer.context {
        None | Some(serde_json::Value::Null) => {}
        Some(ctx @ serde_json::Value::Object(_)) => envelope.context = Some(ctx),
        Some(_) => {
            return Err(BodyError::Shape { path: "context".into(), message: "context must be an object".into() })
        }
    }
    let raw = outer.batch.ok_or_else(|| BodyError::Shape {
        path: "batch".into(),
        message: "batch is required and must be an array of events".into(),
    })?;
    let items: Vec<&RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| BodyError::Shape { path: "batch".into(), message: "batch must be an array of events".into() })?;
    let mut parsed = Parsed { write_key, ..Parsed::default() };
    for (index, item) in items.iter().enumerate() {
        let path = format!("batch[{index}]");
        match parse_raw_event(item.get(), index, &path, None, &envelope, received) {
            Ok(ev) => parsed.events.push(ev),
            Err(r) => parsed.rejected.push(r),
        }
    }
    Ok(parsed)
}

/// Parses a single-event endpoint (`POST /v1/track` and the others). The event is the body itself.
#[cfg(feature = "batch")]
pub fn parse_single(body: &[u8], call: CallType, received: Millis) -> Result<Parsed, BodyError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(BodyError::TooLarge { limit: MAX_EVENT_BYTES });
    }
    let raw: &RawValue = serde_json::from_slice(body).map_err(not_json)?;
    let value: serde_json::Value = serde_json::from_str(raw.get()).map_err(not_json)?;
    let write_key = match &value {
        serde_json::Value::Object(o) => write_key_of(o.get("writeKey"), "writeKey")?,
        _ => None,
    };
    let mut parsed = Parsed { write_key, ..Parsed::default() };
    match parse_raw_event(raw.get(), 0, "", Some(call), &Envelope::default(), received) {
        Ok(ev) => parsed.events.push(ev),
        Err(r) => parsed.rejected.push(r),
    }
    Ok(parsed)
}

/// Validates one event given as JSON, as the edge would.
pub fn parse_event_value(value: &serde_json::Value, received: Millis) -> Result<Event, Rejection> {
    parse_raw_event(&value.to_string(), 0, "", None, &Envelope::default(), received)
}

/// Validates one event of type `call`, given as JSON text, with the rules the edge applies: the checks and
/// rejections of `parse_single` for that type, which for an event whose `type` is `call` are also those of
/// `parse_batch`. The browser uses this so that the device refuses exactly what the edge would refuse.
///
/// `parse` reads the text into any `JsonView`: the browser passes `JSON.parse`, so it needs no JSON parser of
/// its own. Where `JSON.parse` accepts text that the edge's parser refuses (`parser_refuses`), the event is
/// refused here first, as `invalid_json`; only the message of an `invalid_json` rejection can differ from the
/// edge's. It builds no `Event` and derives no `messageId`, which keeps the maps, the value conversions,
/// SHA-256 and the serializer out of the browser build, as a fixed `call` keeps out the unknown-type message.
pub fn check_event<V: JsonView>(
    text: &str,
    call: CallType,
    parse: impl FnOnce(&str) -> Option<V>,
) -> Result<(), Rejection> {
    let cx = Ctx { index: 0, base: "" };
    check_size(&cx, text)?;
    let value = (!parser_refuses(text))
        .then(|| parse(text))
        .flatten()
        .ok_or_else(|| cx.reject("invalid_json", "", "event is not valid JSON"))?;
    let of_call = |cx: &Ctx, field: Option<V>| fixed_call_type(cx, call, field);
    check_fields(&cx, value, of_call, None).map(|_| ())
}

/// Whether the edge's JSON parser refuses `text`, given that JavaScript's `JSON.parse` accepts it. The two
/// differ in two ways that `JSON.stringify` output can reach: serde_json refuses an escaped lone UTF-16
/// surrogate (`"\ud800"`), which `JSON.stringify` writes for a string that holds one, and it refuses arrays
/// and objects nested `SERDE_JSON_MAX_NESTING` deep or more.
pub fn parser_refuses(text: &str) -> bool {
    let b = text.as_bytes();
    // Four hex digits, read by hand: `u32::from_str_radix` would link UTF-8 validation and sign handling into
    // the browser build. (Its one difference, accepting a leading `+`, never yields a surrogate.)
    let hex4 = |at: usize| -> Option<u32> {
        b.get(at..at + 4)?.iter().try_fold(0, |n, &d| Some(n << 4 | char::from(d).to_digit(16)?))
    };
    let (mut i, mut depth, mut in_string) = (0, 0usize, false);
    while i < b.len() {
        match b[i] {
            b'\\' if in_string => {
                if b.get(i + 1) == Some(&b'u') {
                    match hex4(i + 2) {
                        // A high surrogate must be followed by an escaped low one.
                        Some(0xD800..=0xDBFF) => {
                            if b.get(i + 6..i + 8) != Some(b"\\u") || !matches!(hex4(i + 8), Some(0xDC00..=0xDFFF)) {
                                return true;
                            }
                            i += 6;
                        }
                        Some(0xDC00..=0xDFFF) => return true,
                        _ => {}
                    }
                }
                i += 1;
            }
            b'"' => in_string = !in_string,
            b'[' | b'{' if !in_string => {
                depth += 1;
                if depth >= SERDE_JSON_MAX_NESTING {
                    return true;
                }
            }
            b']' | b'}' if !in_string => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    false
}

/// The nesting at which serde_json stops parsing (its recursion limit).
const SERDE_JSON_MAX_NESTING: usize = 128;

#[cfg(feature = "batch")]
fn write_key_of(v: Option<&serde_json::Value>, path: &str) -> Result<Option<String>, BodyError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(BodyError::Shape { path: path.into(), message: "writeKey must be a string".into() }),
    }
}

fn parse_raw_event(
    text: &str,
    index: usize,
    base: &str,
    forced: Option<CallType>,
    envelope: &Envelope,
    received: Millis,
) -> Result<Event, Rejection> {
    let cx = Ctx { index, base };
    check_size(&cx, text)?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| cx.reject("invalid_json", "", e.to_string()))?;
    let of_call = |cx: &Ctx, field: Option<&serde_json::Value>| call_type(cx, forced, field);
    let fields = check_fields(&cx, &value, of_call, envelope.context.as_ref())?;
    let external_ids = external_ids(&cx, value.get("context"))?;
    let external_ids_of = external_ids.clone();
    #[cfg(feature = "batch")]
    let tc_string = crate::core::wire::fields::tc_string(&cx, value.get("context"), envelope.context.as_ref())?;
    #[cfg(not(feature = "batch"))]
    let tc_string = None;

    let sent_at = fields.sent_at.or(envelope.sent_at);
    // Storage has a range too: a profile's retention alarm is set from its last event, and the runtime refuses
    // alarms centuries away. A time more than a day ahead even after the sentAt correction is a clock that cannot
    // be corrected (or a made-up one): the event counts at the time it was received, as one without a timestamp.
    // Before 1970 is no time any event happened, and is refused.
    if envelope.historical {
        return historical_event(cx, fields, text, received).map(|mut e| {
            e.external_ids = external_ids_of;
            e.identity_token = None;
            e
        });
    }
    let mut timestamp = corrected_time(fields.timestamp, sent_at, received);
    if timestamp > received.saturating_add(MAX_FUTURE_MS) {
        timestamp = received;
    }
    if timestamp < 0 {
        return Err(cx.reject("timestamp_out_of_range", "timestamp", "timestamp must not be before 1970"));
    }
    let message_id = match fields.message_id {
        Some(id) => id,
        None => generated_message_id(text, index, fields.timestamp.or(sent_at).unwrap_or(received)),
    };
    let object =
        fields.object.and_then(|o| o.as_object()).map(crate::core::base::value::map_from_json).unwrap_or_default();
    let kind = kind_of(fields.call, object);
    Ok(Event {
        message_id,
        anonymous_id: fields.anonymous_id,
        user_id: fields.user_id,
        timestamp,
        kind,
        consent: fields.consent.map(consent_map),
        page: fields.page,
        external_ids,
        identity_token: identity_token(value.get("context")),
        from_browser: false,
        unproven: Vec::new(),
        proven_contacts: Vec::new(),
        believe_contacts: false,
        imported: false,
        routing: None,
        sent: sent_fields(fields.timestamp, sent_at, value.get("context").or(envelope.context.as_ref())),
        tc_string,
        tcf: None,
    })
}

/// Context keys the export never writes: a credential, and what is kept elsewhere (identities, consent) or would
/// carry a person's identifiers in clear past `privacy.hashTraits` (`context.traits`).
const UNEXPORTED_CONTEXT: &[&str] = &["identityToken", "traits", "externalIds", "consent", "consentManagement"];

/// `Event::sent`: what the sender said beside the event, for the export.
fn sent_fields(
    original: Option<Millis>,
    sent_at: Option<Millis>,
    context: Option<&serde_json::Value>,
) -> Option<Box<crate::core::model::event::Sent>> {
    let mut context =
        context.and_then(|c| c.as_object()).map(crate::core::base::value::map_from_json).unwrap_or_default();
    context.retain(|k, _| !UNEXPORTED_CONTEXT.contains(&k.as_str()));
    if original.is_none() && sent_at.is_none() && context.is_empty() {
        return None;
    }
    Some(Box::new(crate::core::model::event::Sent { sent_at, original_timestamp: original, context }))
}

fn kind_of(call: CallFields, object: std::collections::BTreeMap<String, crate::core::base::value::Value>) -> EventKind {
    match call {
        CallFields::Track { event } => EventKind::Track { event, properties: object },
        CallFields::Page { name } => EventKind::Page { name, properties: object },
        CallFields::Screen { name } => EventKind::Screen { name, properties: object },
        CallFields::Identify => EventKind::Identify { traits: object },
        CallFields::Alias { previous_id } => EventKind::Alias { previous_id },
        CallFields::Group { group_id } => EventKind::Group { group_id, traits: object },
    }
}

/// `context.identityToken`, as sent. A value that is not a string is kept as an empty token, which fails the
/// check like any malformed one: the claim it came with is refused, the event itself is not.
fn identity_token(context: Option<&serde_json::Value>) -> Option<String> {
    match context?.get("identityToken")? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        _ => Some(String::new()),
    }
}

/// Segment's `context.externalIds` (`[{"id": "...", "type": "crm_id", ...}]`): identifiers of other systems.
/// Which types a profile takes is the configuration's choice (`identity.identifiers`). Only the edge reads
/// them: the browser Tracker writes each event's context itself and never sends any, so its build leaves this
/// out.
fn external_ids<V: JsonView>(cx: &Ctx, context: Option<V>) -> Result<Vec<Identity>, Rejection> {
    let not_null = |v: Option<V>| v.filter(|v| v.kind() != JsonKind::Null);
    let own = not_null(context).filter(|c| c.kind() == JsonKind::Object);
    let mut external_ids = Vec::new();
    if let Some(list) = not_null(own.as_ref().and_then(|o| o.get("externalIds"))) {
        if list.kind() != JsonKind::Array {
            return Err(cx.reject("invalid_type", "context.externalIds", "context.externalIds must be an array"));
        }
        list.try_items(|i, item| {
            let at = |field: &str| ["context.externalIds[", &decimal(i), "]", field].concat();
            if item.kind() != JsonKind::Object {
                return Err(cx.reject("invalid_type", &at(""), "an external id must be an object"));
            }
            let kind = not_null(item.get("type")).and_then(|t| t.string().map(|s| s.as_ref().to_string()));
            let kind = match kind {
                Some(k)
                    if !k.is_empty()
                        && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
                {
                    k
                }
                _ => {
                    return Err(cx.reject(
                        "invalid_type",
                        &at(".type"),
                        "type must be lower-case letters, digits and '_'",
                    ))
                }
            };
            let id = match not_null(item.get("id")) {
                Some(v) if v.kind() == JsonKind::String => v.string().map(|s| s.as_ref().to_string()),
                Some(v) if v.kind() == JsonKind::Number => v.number_text(),
                _ => None,
            };
            match id.filter(|v| !v.is_empty() && char_count(v) <= MAX_ID_CHARS) {
                Some(value) => {
                    external_ids.push(Identity { kind, value });
                    Ok(())
                }
                None => Err(cx.reject("invalid_type", &at(".id"), "id must be a non-empty string or number")),
            }
        })?;
    }
    Ok(external_ids)
}

fn check_size(cx: &Ctx, text: &str) -> Result<(), Rejection> {
    if text.len() > MAX_EVENT_BYTES {
        return Err(cx.reject(
            "event_too_large",
            "",
            ["event is ", &decimal(text.len()), " bytes; the limit is ", &decimal(MAX_EVENT_BYTES)].concat(),
        ));
    }
    Ok(())
}

/// One event's fields as the wire rules found them. The objects (`properties` or `traits`, and the consent
/// preferences) stay views: the edge converts them into its `Event` (`parse_raw_event`), and the browser, which
/// only checks, converts nothing, so its build links no map code.
struct Fields<V> {
    call: CallFields,
    message_id: Option<String>,
    anonymous_id: Option<String>,
    user_id: Option<String>,
    /// The event's own `timestamp` and `sentAt`, not yet corrected for clock skew.
    timestamp: Option<Millis>,
    sent_at: Option<Millis>,
    /// `properties` (track, page, screen) or `traits` (identify, group), when they are an object.
    object: Option<V>,
    /// `context.consent.categoryPreferences`, or RudderStack's `context.consentManagement`.
    consent: Option<ConsentView<V>>,
    page: Option<PageContext>,
}

/// The fields of one call type besides its object: an `EventKind` without the properties or traits.
enum CallFields {
    Track { event: String },
    Page { name: Option<String> },
    Screen { name: Option<String> },
    Identify,
    Alias { previous_id: String },
    Group { group_id: String },
}

/// Checks one parsed event, in the order that decides which problem a rejection names; `of_call` checks its
/// `type` field, and the batch's `context` (`env_context`) fills in for the event's own.
fn check_fields<V: JsonView>(
    cx: &Ctx,
    obj: V,
    of_call: impl FnOnce(&Ctx, Option<V>) -> Result<CallType, Rejection>,
    env_context: Option<V>,
) -> Result<Fields<V>, Rejection> {
    if obj.kind() != JsonKind::Object {
        return Err(cx.reject("invalid_type", "", "event must be a JSON object"));
    }

    let call = of_call(cx, obj.get("type"))?;

    let message_id = id_field(cx, &obj, "messageId")?;
    let anonymous_id = id_field(cx, &obj, "anonymousId")?;
    let user_id = id_field(cx, &obj, "userId")?;
    if anonymous_id.is_none() && user_id.is_none() {
        return Err(cx.reject("missing_identity", "", "one of anonymousId or userId is required"));
    }

    let timestamp = optional_time(cx, &obj, "timestamp")?;
    let sent_at = optional_time(cx, &obj, "sentAt")?;

    let (call, object) = match call {
        CallType::Track => {
            let event = name_field(cx, &obj, "event")?
                .ok_or_else(|| cx.reject("missing_field", "event", "event is required for track"))?;
            (CallFields::Track { event }, object_field(cx, &obj, "properties")?)
        }
        CallType::Page => {
            (CallFields::Page { name: name_field(cx, &obj, "name")? }, object_field(cx, &obj, "properties")?)
        }
        CallType::Screen => {
            (CallFields::Screen { name: name_field(cx, &obj, "name")? }, object_field(cx, &obj, "properties")?)
        }
        CallType::Identify => {
            // RudderStack's JavaScript SDK sends an identify's traits in `context.traits` only.
            let traits = match object_field(cx, &obj, "traits")? {
                Some(t) => Some(t),
                None => match obj.get("context") {
                    Some(c) if c.kind() == JsonKind::Object => object_value(cx, c.get("traits"), "context.traits")?,
                    _ => None,
                },
            };
            (CallFields::Identify, traits)
        }
        CallType::Alias => {
            let previous_id = id_field(cx, &obj, "previousId")?
                .ok_or_else(|| cx.reject("missing_field", "previousId", "previousId is required for alias"))?;
            (CallFields::Alias { previous_id }, None)
        }
        CallType::Group => {
            let group_id = id_field(cx, &obj, "groupId")?
                .ok_or_else(|| cx.reject("missing_field", "groupId", "groupId is required for group"))?;
            (CallFields::Group { group_id }, object_field(cx, &obj, "traits")?)
        }
    };

    let (consent, page) = context_fields(cx, obj.get("context"), env_context)?;
    Ok(Fields { call, message_id, anonymous_id, user_id, timestamp, sent_at, object, consent, page })
}

/// Checks an event's `type` field: fixed by a single-event endpoint (`forced`), or required and read from it.
fn call_type<V: JsonView>(cx: &Ctx, forced: Option<CallType>, field: Option<V>) -> Result<CallType, Rejection> {
    match forced {
        Some(call) => fixed_call_type(cx, call, field),
        None => named_call_type(cx, field),
    }
}

/// Where the endpoint fixes the type, the event may leave it out but not contradict it.
fn fixed_call_type<V: JsonView>(cx: &Ctx, call: CallType, field: Option<V>) -> Result<CallType, Rejection> {
    match field {
        None => Ok(call),
        Some(t) if t.string().and_then(|t| CallType::from_name(t.as_ref())) == Some(call) => Ok(call),
        Some(_) => Err(cx.reject("type_mismatch", "type", "type does not match the endpoint")),
    }
}

fn named_call_type<V: JsonView>(cx: &Ctx, field: Option<V>) -> Result<CallType, Rejection> {
    let Some(field) = field else {
        return Err(cx.reject("missing_field", "type", "type is required"));
    };
    let Some(t) = field.string() else {
        return Err(cx.reject("invalid_type", "type", "type must be a string"));
    };
    let t = t.as_ref();
    CallType::from_name(t).ok_or_else(|| {
        cx.reject(
            "unknown_type",
            "type",
            format!("unknown event type {t:?}; expected track, page, screen, identify, alias or group"),
        )
    })
}

/// Segment's skew correction: the client's clock may be wrong, but the distance between `timestamp` and
/// `sentAt` was measured on that same clock, so it is applied to the edge's receive time.
fn corrected_time(timestamp: Option<Millis>, sent_at: Option<Millis>, received: Millis) -> Millis {
    match (timestamp, sent_at) {
        (Some(ts), Some(sent)) => received.saturating_sub(sent.saturating_sub(ts)),
        (Some(ts), None) => ts,
        (None, _) => received,
    }
}

/// An event without a `messageId` gets one derived from its bytes, its place in the batch and the client's own
/// time (`timestamp`, else `sentAt`, else the receive time). A client that re-sends the same body therefore
/// counts once, two identical events in one batch count twice, and the core needs no random numbers.
/// Parses one line of an NDJSON import file: a Segment event with its own `type` and its historical
/// `timestamp`, which must be given and is kept as it is (no clock-skew correction applies to history). A time
/// more than a day after `received` (a year 2190) is refused, not moved to now. Without a `messageId` the id is
/// derived from the line's content alone, so the same line imported again is the same event. Rejections name
/// the field by its JSON path within the line.
#[cfg(feature = "batch")]
pub fn parse_import_line(text: &str, received: Millis) -> Result<Event, Rejection> {
    let envelope = Envelope { historical: true, ..Envelope::default() };
    let mut event = parse_raw_event(text, 0, "", None, &envelope, received)?;
    event.imported = true;
    Ok(event)
}

/// The event of an import line (see `parse_import_line`).
fn historical_event(
    cx: Ctx,
    fields: Fields<&serde_json::Value>,
    text: &str,
    received: Millis,
) -> Result<Event, Rejection> {
    let timestamp = fields.timestamp.ok_or_else(|| {
        cx.reject("missing_timestamp", "timestamp", "an imported event needs its own timestamp (ISO 8601)")
    })?;
    if timestamp < 0 || timestamp > received.saturating_add(MAX_FUTURE_MS) {
        return Err(cx.reject(
            "timestamp_out_of_range",
            "timestamp",
            "timestamp must be between 1970 and a day from now: history cannot happen in the future",
        ));
    }
    let message_id = fields.message_id.unwrap_or_else(|| imported_message_id(text.as_bytes()));
    let object =
        fields.object.and_then(|o| o.as_object()).map(crate::core::base::value::map_from_json).unwrap_or_default();
    let mut event =
        Event::new(message_id, fields.anonymous_id, fields.user_id, timestamp, kind_of(fields.call, object));
    event.consent = fields.consent.map(consent_map);
    event.page = fields.page;
    Ok(event)
}

/// The id of an imported row that has no `messageId`: its content's digest, so importing it again (another
/// upload of the file, a job resumed) finds the same id, and two identical rows are one event.
pub fn imported_message_id(row: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(row);
    ["imp-", &hex(&h.finalize()[..16])].concat()
}

fn generated_message_id(text: &str, index: usize, time: Millis) -> String {
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    h.update((index as u64).to_be_bytes());
    h.update(time.to_be_bytes());
    ["gen-", &hex(&h.finalize()[..16])].concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::time::parse_iso8601;

    const NOW: Millis = 1_795_344_600_000; // 2026-11-22T10:50:00Z

    fn batch(json: &str) -> Parsed {
        parse_batch(json.as_bytes(), NOW).expect("batch parses")
    }

    #[test]
    fn keeps_good_events_beside_bad_ones() {
        let p = batch(
            r#"{"writeKey":"demo","batch":[
                {"type":"track","event":"Product Viewed","anonymousId":"a1","messageId":"m1","properties":{"category":"bags"}},
                {"type":"track","anonymousId":"a1"},
                {"type":"launch","anonymousId":"a1"},
                {"type":"page","messageId":"m4"},
                {"type":"page","anonymousId":"a1","timestamp":"yesterday"},
                {"type":"identify","userId":42,"traits":{"plan":"gold"}}
            ]}"#,
        );
        assert_eq!(p.write_key.as_deref(), Some("demo"));
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.events[0].count_key(), "Product Viewed");
        assert_eq!(p.events[1].user_id.as_deref(), Some("42"));
        let got: Vec<(usize, &str, &str)> = p.rejected.iter().map(|r| (r.index, r.code, r.path.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (1, "missing_field", "batch[1].event"),
                (2, "unknown_type", "batch[2].type"),
                (3, "missing_identity", "batch[3]"),
                (4, "invalid_timestamp", "batch[4].timestamp"),
            ]
        );
    }

    #[test]
    fn whole_body_errors() {
        assert!(matches!(parse_batch(b"{nope", NOW), Err(BodyError::NotJson(_))));
        assert!(matches!(parse_batch(b"[1,2]", NOW), Err(BodyError::Shape { .. })));
        assert!(matches!(parse_batch(br#"{"batch":{}}"#, NOW), Err(BodyError::Shape { path, .. }) if path == "batch"));
        assert!(matches!(parse_batch(br#"{}"#, NOW), Err(BodyError::Shape { path, .. }) if path == "batch"));
        let big = vec![b' '; MAX_BATCH_BYTES + 1];
        assert_eq!(parse_batch(&big, NOW).unwrap_err(), BodyError::TooLarge { limit: MAX_BATCH_BYTES });
    }

    #[test]
    fn corrects_clock_skew_from_sent_at() {
        // The client's clock runs one hour fast; the event happened 5 s before it was sent.
        let p = batch(
            r#"{"sentAt":"2026-11-22T11:50:00Z","batch":[
                {"type":"page","anonymousId":"a","timestamp":"2026-11-22T11:49:55Z"}]}"#,
        );
        assert_eq!(p.events[0].timestamp, NOW - 5_000);
    }

    #[test]
    fn times_storage_cannot_hold_are_refused_or_counted_when_received() {
        let p = batch(
            r#"{"batch":[
                {"type":"page","anonymousId":"a","timestamp":"2190-01-01T00:00:00Z"},
                {"type":"page","anonymousId":"a","timestamp":"1969-12-31T23:59:59Z"},
                {"type":"page","anonymousId":"a","timestamp":"2026-11-23T10:00:00Z"},
                {"type":"page","anonymousId":"a","timestamp":"1999-01-01T00:00:00Z"}]}"#,
        );
        let refused: Vec<(usize, &str, &str)> = p.rejected.iter().map(|r| (r.index, r.code, r.path.as_str())).collect();
        assert_eq!(refused, [(1, "timestamp_out_of_range", "batch[1].timestamp")]);
        let times: Vec<Millis> = p.events.iter().map(|e| e.timestamp).collect();
        let within_a_day = parse_iso8601("2026-11-23T10:00:00Z").unwrap();
        assert_eq!(times, [NOW, within_a_day, parse_iso8601("1999-01-01T00:00:00Z").unwrap()]);
    }

    #[test]
    fn oversized_and_deep_events_are_rejected_alone() {
        let long = "x".repeat(MAX_EVENT_BYTES);
        let mut deep = String::from("1");
        for _ in 0..20 {
            deep = format!("{{\"a\":{deep}}}");
        }
        let body = format!(
            r#"{{"batch":[{{"type":"track","event":"E","anonymousId":"a","properties":{{"s":"{long}"}}}},
                {{"type":"track","event":"E","anonymousId":"a","properties":{deep}}},
                {{"type":"track","event":"E","anonymousId":"a"}}]}}"#
        );
        let p = batch(&body);
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.rejected[0].code, "event_too_large");
        assert_eq!(p.rejected[1].code, "too_deep");
        assert!(p.rejected[1].path.starts_with("batch[1].properties.a.a.a"), "{}", p.rejected[1].path);
        let long = "y".repeat(MAX_STRING_BYTES + 1);
        let body = format!(
            r#"{{"batch":[{{"type":"track","event":"E","anonymousId":"a","properties":{{"items":[{{"d":"ok"}},{{"d":"{long}"}}]}}}}]}}"#
        );
        let p = batch(&body);
        assert_eq!(
            (p.rejected[0].code, p.rejected[0].path.as_str()),
            ("string_too_long", "batch[0].properties.items[1].d")
        );
    }

    #[test]
    fn reads_consent_and_page_context_with_batch_defaults() {
        let p = batch(
            r#"{"context":{"consent":{"categoryPreferences":{"analytics":true}}},"batch":[
                {"type":"page","anonymousId":"a","context":{"page":{"path":"/bags"}}},
                {"type":"page","anonymousId":"a","context":{"consent":{"categoryPreferences":{"C0002":"yes"}}}}]}"#,
        );
        assert_eq!(p.events[0].consent.as_ref().unwrap().get("analytics"), Some(&true));
        assert_eq!(p.events[0].page.as_ref().unwrap().path.as_deref(), Some("/bags"));
        assert_eq!(p.rejected[0].path, "batch[1].context.consent.categoryPreferences.C0002");
    }

    /// RudderStack's JavaScript SDK says consent as `context.consentManagement` id lists; Segment's form wins when
    /// both are sent, a denial wins over a grant of the same id, and a bad list is named by its path.
    #[test]
    fn reads_rudderstack_consent_ids() {
        let p = batch(
            r#"{"batch":[
                {"type":"page","anonymousId":"a","context":{"consentManagement":{"provider":"custom","allowedConsentIds":["C0002","C0003"],"deniedConsentIds":["C0004","C0003"]}}},
                {"type":"page","anonymousId":"a","context":{"consent":{"categoryPreferences":{"C0004":true}},"consentManagement":{"deniedConsentIds":["C0004"]}}},
                {"type":"page","anonymousId":"a","context":{"consentManagement":{"provider":"custom"}}},
                {"type":"page","anonymousId":"a","context":{"consentManagement":{"allowedConsentIds":["C0002",7]}}},
                {"type":"page","anonymousId":"a","context":{"consentManagement":"yes"}}]}"#,
        );
        let first = p.events[0].consent.clone().unwrap();
        assert_eq!(
            first.into_iter().collect::<Vec<_>>(),
            [("C0002".to_string(), true), ("C0003".to_string(), false), ("C0004".to_string(), false)]
        );
        assert_eq!(p.events[1].consent.as_ref().unwrap().get("C0004"), Some(&true));
        assert!(p.events[2].consent.is_none());
        let paths: Vec<_> = p.rejected.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            ["batch[3].context.consentManagement.allowedConsentIds[1]", "batch[4].context.consentManagement"]
        );
    }

    /// RudderStack's JavaScript SDK puts an identify's traits in `context.traits` alone; top-level traits win
    /// when both are there, and a bad `context.traits` is named by its own path.
    #[test]
    fn identify_takes_context_traits_when_it_has_no_traits() {
        let traits_of =
            |body: &str| match &parse_single(body.as_bytes(), CallType::Identify, NOW).unwrap().events[0].kind {
                EventKind::Identify { traits } => traits.get("plan").cloned(),
                other => panic!("{other:?}"),
            };
        assert_eq!(
            traits_of(r#"{"userId":"u","context":{"traits":{"plan":"gold"}}}"#),
            Some(crate::core::base::value::Value::String("gold".into()))
        );
        assert_eq!(
            traits_of(r#"{"userId":"u","traits":{"plan":"top"},"context":{"traits":{"plan":"gold"}}}"#),
            Some(crate::core::base::value::Value::String("top".into()))
        );
        let p = parse_single(br#"{"userId":"u","context":{"traits":[1]}}"#, CallType::Identify, NOW).unwrap();
        assert_eq!(p.rejected[0].path, "context.traits");
        // Other calls' `context.traits` describe the user at the time; they are not traits to store.
        let p =
            parse_single(br#"{"event":"E","userId":"u","context":{"traits":{"plan":"gold"}}}"#, CallType::Track, NOW)
                .unwrap();
        assert!(matches!(&p.events[0].kind, EventKind::Track { properties, .. } if properties.is_empty()));
    }

    #[test]
    fn single_endpoint_fixes_the_type_and_generates_message_ids() {
        let p = parse_single(br#"{"event":"Signed Up","userId":"u1","writeKey":"k"}"#, CallType::Track, NOW).unwrap();
        assert_eq!(p.write_key.as_deref(), Some("k"));
        assert!(p.events[0].message_id.starts_with("gen-"));
        // Identical events in one batch are two events; the same body sent again gives the same ids.
        let body = br#"{"sentAt":"2026-11-22T10:00:00Z","batch":[{"type":"page","anonymousId":"a"},{"type":"page","anonymousId":"a"}]}"#;
        let first = parse_batch(body, NOW).unwrap();
        let again = parse_batch(body, NOW + 5_000).unwrap();
        assert_ne!(first.events[0].message_id, first.events[1].message_id);
        assert_eq!(first.events[1].message_id, again.events[1].message_id);
        let p = parse_single(br#"{"type":"page","userId":"u1"}"#, CallType::Track, NOW).unwrap();
        assert_eq!(p.rejected[0].code, "type_mismatch");
        assert_eq!(p.rejected[0].path, "type");
    }

    /// `check_event` reading serde_json values, as the edge's own parser reads them.
    fn check(text: &str, call: CallType) -> Result<(), Rejection> {
        let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
        check_event(text, call, |_| value.as_ref())
    }

    #[test]
    fn check_event_applies_the_edge_rules() {
        let ok = r#"{"type":"page","anonymousId":"a","properties":{"path":"/"}}"#;
        assert_eq!(check(ok, CallType::Page), Ok(()));
        let bad = r#"{"type":"track","anonymousId":"a"}"#;
        let err = check(bad, CallType::Track).unwrap_err();
        let in_batch = batch(&format!(r#"{{"batch":[{bad}]}}"#)).rejected.remove(0);
        assert_eq!((err.code, err.message.as_str()), (in_batch.code, in_batch.message.as_str()));
        assert_eq!((err.path.as_str(), in_batch.path.as_str()), ("event", "batch[0].event"));
        let other = check(r#"{"type":"page","anonymousId":"a"}"#, CallType::Track).unwrap_err();
        assert_eq!((other.code, other.path.as_str()), ("type_mismatch", "type"));
    }

    #[test]
    fn parser_refuses_what_serde_json_refuses_and_json_parse_accepts() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let texts = [
            r#"{"a":"\ud800"}"#.to_string(),
            r#"{"a":"\udc00x"}"#.to_string(),
            r#"{"a":"\ud800\u0041"}"#.to_string(),
            r#"{"a":"\ud83d\ude00"}"#.to_string(),
            r#"{"a":"\\ud800"}"#.to_string(),
            r#"{"a":"[[[[\"\u00e9"}"#.to_string(),
            nested(SERDE_JSON_MAX_NESTING - 1),
            nested(SERDE_JSON_MAX_NESTING),
            format!(r#"{{"a":"{}"}}"#, "{".repeat(200)),
        ];
        for text in &texts {
            let serde_refuses = serde_json::from_str::<serde_json::Value>(text).is_err();
            assert_eq!(parser_refuses(text), serde_refuses, "{text}");
        }
        assert!(parser_refuses(&texts[0]) && !parser_refuses(&texts[3]));
    }

    #[test]
    fn single_event_paths_take_the_name_or_its_first_letter_and_types_only_the_name() {
        for (path, call) in [
            ("t", CallType::Track),
            ("p", CallType::Page),
            ("s", CallType::Screen),
            ("i", CallType::Identify),
            ("a", CallType::Alias),
            ("g", CallType::Group),
            ("track", CallType::Track),
            ("alias", CallType::Alias),
        ] {
            assert_eq!(CallType::from_path(path), Some(call), "{path}");
        }
        assert_eq!(CallType::from_path("b"), None, "/v1/b is the batch, routed on its own");
        assert_eq!(CallType::from_name("t"), None, "an event's type is never a letter");
    }
}
