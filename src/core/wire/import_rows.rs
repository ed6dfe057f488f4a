//! The rows of a CSV import file: each column's target (`Target`), a header bound to a mapping (`Columns`), RFC
//! 4180 records, and a row as an event. Cells are typed only when plainly numbers or booleans and never
//! evaluated (`=HYPERLINK(...)` stays that text).

use crate::core::base::sort;
use crate::core::base::time::{parse_iso8601, Millis};
use crate::core::base::value::Value;
use crate::core::model::consent::Purpose;
use crate::core::model::event::{Event, EventKind};
use crate::core::model::identity::{Identity, ANONYMOUS_ID, EMAIL, PHONE, USER_ID};
use crate::core::rules::Config;
use crate::core::wire::events::imported_message_id;
use crate::core::wire::{MAX_FUTURE_MS, MAX_ID_CHARS, MAX_NAME_CHARS, MAX_STRING_BYTES};
use std::collections::BTreeMap;

/// What the rows are: profiles (CRM records: identities and traits, as of a time) or events (history).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Profiles,
    Events,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Profiles => "profiles",
            Kind::Events => "events",
        }
    }
}

/// What a row needs of its job's declaration.
#[derive(Clone, Copy, Debug)]
pub struct RowKind<'a> {
    pub kind: Kind,
    /// Purposes the job declares granted.
    pub consent: &'a [Purpose],
    /// When a profile row without a time is true.
    pub as_of: Option<Millis>,
}

pub type Refusal = (&'static str, String, String);

/// Where a CSV column goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    UserId,
    AnonymousId,
    MessageId,
    Timestamp,
    Event,
    /// An identifier of this type (`email`, `phone`, or one `identity.identifiers` configures).
    Identity(String),
    Trait(String),
    Property(String),
    Consent(Purpose),
    Ignore,
}

impl Target {
    pub fn parse(s: &str, kind: Kind, config: &Config) -> Result<Target, String> {
        let known_id = |t: &str| {
            t == EMAIL
                || t == PHONE
                || (config.identity.identifiers.contains_key(t) && t != USER_ID && t != ANONYMOUS_ID)
        };
        let target = match s.split_once('.') {
            None => match s {
                "userId" => Target::UserId,
                "anonymousId" => Target::AnonymousId,
                "messageId" => Target::MessageId,
                "timestamp" => Target::Timestamp,
                "event" => Target::Event,
                "ignore" => Target::Ignore,
                _ => return Err(format!("{s:?} is not a target: use userId, anonymousId, messageId, timestamp, event, identities.<type>, traits.<name>, properties.<name>, consent.<purpose> or ignore")),
            },
            Some(("identities", t)) if known_id(t) => Target::Identity(t.to_string()),
            Some(("identities", t)) => {
                return Err(format!("identity type {t:?} is neither email, phone nor one of identity.identifiers"))
            }
            Some(("traits", n)) if !n.is_empty() => Target::Trait(n.to_string()),
            Some(("properties", n)) if !n.is_empty() => Target::Property(n.to_string()),
            Some(("consent", p)) => match Purpose::parse(p).filter(|p| Purpose::OPTIONAL.contains(p)) {
                Some(p) => Target::Consent(p),
                None => return Err(format!("{p:?} is not a consent purpose")),
            },
            _ => return Err(format!("{s:?} is not a target")),
        };
        match (&target, kind) {
            (Target::Trait(_), Kind::Events) => {
                Err("traits are set by profile rows: import them with kind profiles".into())
            }
            (Target::Property(_) | Target::Event, Kind::Profiles) => {
                Err("event fields belong to event rows: import them with kind events".into())
            }
            _ => Ok(target),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Target::UserId => "userId".into(),
            Target::AnonymousId => "anonymousId".into(),
            Target::MessageId => "messageId".into(),
            Target::Timestamp => "timestamp".into(),
            Target::Event => "event".into(),
            Target::Identity(t) => format!("identities.{t}"),
            Target::Trait(n) => format!("traits.{n}"),
            Target::Property(n) => format!("properties.{n}"),
            Target::Consent(p) => format!("consent.{}", p.name()),
            Target::Ignore => "ignore".into(),
        }
    }
}

/// A CSV header bound to a mapping (`Declaration::bind`).
#[derive(Clone, Debug, PartialEq)]
pub struct Columns {
    pub names: Vec<String>,
    pub targets: Vec<Target>,
    /// Columns the mapping does not name: ignored, and listed in the job.
    pub unknown: Vec<String>,
    /// The header's and kind's digest: part of every derived row id, so the same row read another way is
    /// another event.
    pub digest: [u8; 32],
}

/// The fields of one CSV record (RFC 4180: quoted fields may hold commas, line breaks and doubled quotes), its
/// line break already included or not.
pub fn csv_fields(row: &[u8]) -> Result<Vec<String>, &'static str> {
    let text = std::str::from_utf8(row).map_err(|_| "it is not UTF-8")?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => {
                quoted = false;
                if !matches!(chars.peek(), None | Some(',')) {
                    return Err("a quoted field goes on after its closing quote");
                }
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            (_, c) => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("a quoted field is never closed");
    }
    fields.push(field);
    Ok(fields)
}

/// A cell as a value: `true`/`false`, a plain decimal number (no leading zeros, so a postcode or a phone number
/// stays text), else the text itself. A cell is never evaluated: `=HYPERLINK(...)` is kept as that text.
fn cell_value(cell: &str) -> Value {
    match cell {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && (int == "0" || !int.starts_with('0'))
        && frac.bytes().all(|b| b.is_ascii_digit())
        && (frac.is_empty() != digits.contains('.'))
        && digits.len() <= 17;
    match cell.parse::<f64>() {
        Ok(n) if plain && n.is_finite() => Value::Number(n),
        _ => Value::String(cell.to_string()),
    }
}

fn consent_cell(cell: &str) -> Option<bool> {
    match cell.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" | "granted" => Some(true),
        "false" | "no" | "n" | "0" | "refused" | "denied" => Some(false),
        _ => None,
    }
}

pub fn csv_event(
    row: &[u8],
    columns: &Columns,
    decl: RowKind<'_>,
    config: &Config,
    now: Millis,
) -> Result<Event, Refusal> {
    let cells = csv_fields(row).map_err(|why| ("invalid_csv", String::new(), format!("the row is not CSV: {why}")))?;
    let mut user_id = None;
    let mut anonymous_id = None;
    let mut message_id = None;
    let mut timestamp = None;
    let mut event_name = None;
    let mut object = BTreeMap::new();
    let mut identities: Vec<Identity> = Vec::new();
    let mut consent: BTreeMap<String, bool> = BTreeMap::new();
    for (i, cell) in cells.iter().enumerate() {
        let (Some(target), Some(name)) = (columns.targets.get(i), columns.names.get(i)) else { continue };
        if cell.is_empty() || *target == Target::Ignore {
            continue;
        }
        let bad = |code, message: String| (code, name.clone(), message);
        let id = |cell: &String| {
            if cell.chars().count() > MAX_ID_CHARS {
                Err(bad("invalid_id", format!("an id may be at most {MAX_ID_CHARS} characters")))
            } else {
                Ok(cell.trim().to_string())
            }
        };
        if cell.len() > MAX_STRING_BYTES {
            return Err(bad("value_too_long", format!("a cell may be at most {MAX_STRING_BYTES} bytes")));
        }
        match target {
            Target::UserId => user_id = Some(id(cell)?),
            Target::AnonymousId => anonymous_id = Some(id(cell)?),
            Target::MessageId => message_id = Some(id(cell)?),
            Target::Timestamp => {
                let at = parse_iso8601(cell.trim()).ok_or_else(|| {
                    bad("invalid_timestamp", "the time must be ISO 8601 (2026-03-01 or 2026-03-01T10:00:00Z)".into())
                })?;
                if at < 0 || at > now + MAX_FUTURE_MS {
                    return Err(bad(
                        "timestamp_out_of_range",
                        "the time must be between 1970 and a day from now: history cannot happen in the future".into(),
                    ));
                }
                timestamp = Some(at);
            }
            Target::Event => {
                if cell.chars().count() > MAX_NAME_CHARS {
                    return Err(bad(
                        "invalid_event",
                        format!("an event name may be at most {MAX_NAME_CHARS} characters"),
                    ));
                }
                event_name = Some(cell.clone());
            }
            Target::Identity(kind) => {
                let value = id(cell)?;
                if decl.kind == Kind::Profiles && (kind == EMAIL || kind == PHONE) {
                    // Set as the trait, which proves the contact point (an import is a server's word).
                    object.insert(kind.clone(), Value::String(value.clone()));
                }
                identities.push(Identity::new(kind, &value));
            }
            Target::Trait(n) | Target::Property(n) => {
                object.insert(n.clone(), cell_value(cell));
            }
            Target::Consent(p) => {
                let granted = consent_cell(cell)
                    .ok_or_else(|| bad("invalid_consent", "consent must be true or false (yes/no, 1/0)".into()))?;
                consent.insert(p.name().to_string(), granted);
            }
            Target::Ignore => {}
        }
    }
    if user_id.is_none() && anonymous_id.is_none() && identities.is_empty() {
        return Err((
            "missing_identity",
            String::new(),
            "the row has no userId, anonymousId or identity: it names nobody".into(),
        ));
    }
    let timestamp = match (timestamp, decl.kind) {
        (Some(t), _) => t,
        (None, Kind::Profiles) => decl.as_of.unwrap_or(now),
        (None, Kind::Events) => {
            return Err((
                "missing_timestamp",
                "timestamp".into(),
                "an event row needs its time (the column mapped to timestamp)".into(),
            ))
        }
    };
    let kind = match decl.kind {
        Kind::Profiles => EventKind::Identify { traits: object },
        Kind::Events => match event_name {
            Some(event) => EventKind::Track { event, properties: object },
            None => return Err(("missing_event", "event".into(), "an event row needs its event name".into())),
        },
    };
    let message_id = message_id.unwrap_or_else(|| imported_message_id(&[&columns.digest[..], row].concat()));
    let routing = match (&user_id, &anonymous_id) {
        (None, None) => identities.first().map(|i| config.stored_identity(&i.kind, &i.value)),
        _ => None,
    };
    // Identities other than the contact traits travel as external ids (`Profile::apply` takes them as identities).
    let external_ids = identities
        .into_iter()
        .filter(|i| !(decl.kind == Kind::Profiles && (i.kind == EMAIL || i.kind == PHONE)))
        .collect();
    let mut event = Event::new(message_id, anonymous_id, user_id, timestamp, kind);
    event.external_ids = external_ids;
    event.routing = routing;
    event.consent = (!consent.is_empty()).then(|| {
        let mut all: BTreeMap<String, bool> = sort::map_of(decl.consent.iter().map(|p| (p.name().to_string(), true)));
        all.extend(consent);
        all
    });
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_typed_only_when_plainly_numbers_or_booleans() {
        let rows = [
            ("12", Value::Number(12.0)),
            ("-3.25", Value::Number(-3.25)),
            ("0.5", Value::Number(0.5)),
            ("007", Value::String("007".into())),
            ("1e9", Value::String("1e9".into())),
            ("12.", Value::String("12.".into())),
            ("+44 20 7946 0000", Value::String("+44 20 7946 0000".into())),
            ("true", Value::Bool(true)),
            ("=1+1", Value::String("=1+1".into())),
            ("123456789012345678", Value::String("123456789012345678".into())),
        ];
        for (cell, want) in rows {
            assert_eq!(cell_value(cell), want, "{cell}");
        }
    }
}
