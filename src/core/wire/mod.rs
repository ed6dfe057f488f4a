//! The Segment-compatible JSON wire format: request bodies in, validated core `Event`s out.
//!
//! Validation is per event: a bad event becomes a `Rejection` naming its index, a code, a message and the JSON
//! path of the bad field, and the good events beside it are kept. Only a body that is not JSON at all, or
//! not shaped like a batch, fails as a whole.

pub mod audiences;
pub mod auth;
pub mod decide;
pub mod deliveries;
pub mod events;
// The export's rows (Segment's warehouse layout): the profile writer makes them, so they compile everywhere the
// writer does (the browser builds link none of it); the ledger is the edge's.
pub mod export;
#[cfg(feature = "batch")]
pub mod export_ledger;
pub mod fields;
// Import files are the edge's (and the native runners'): the browser builds leave them out.
#[cfg(feature = "batch")]
pub mod import_jobs;
#[cfg(feature = "batch")]
pub mod import_rows;
#[cfg(feature = "batch")]
pub mod imports;
pub mod impressions;
pub mod inflate;
pub mod journeys;
pub mod predictions;
pub mod settings;

use crate::core::base::time::Millis;

/// Largest accepted single event, in bytes of JSON.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Largest accepted request body, in bytes.
pub const MAX_BATCH_BYTES: usize = 500 * 1024;
/// Longest id (`messageId`, `anonymousId`, `userId`, `previousId`, `groupId`).
pub const MAX_ID_CHARS: usize = 256;
/// How far ahead of the edge's clock an event's corrected time may be.
pub const MAX_FUTURE_MS: Millis = 24 * 60 * 60 * 1000;
/// Longest event or page name.
pub const MAX_NAME_CHARS: usize = 1024;
/// Deepest nesting allowed inside `properties`, `traits` and `context`.
pub const MAX_DEPTH: usize = 16;
/// Longest string value (or property name) inside `properties`, `traits` and `context`, in bytes.
pub const MAX_STRING_BYTES: usize = 8 * 1024;

/// Why a whole request body was refused. The edge maps each to a status code.
#[derive(Debug, Clone, PartialEq)]
pub enum BodyError {
    /// 400: the body is not JSON (or nests deeper than the parser allows).
    NotJson(String),
    /// 400: the body is JSON but not the expected shape; `path` names the field.
    Shape { path: String, message: String },
    /// 413: over the size limit.
    TooLarge { limit: usize },
}

impl BodyError {
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::NotJson(_) => "invalid_json",
            BodyError::Shape { .. } => "invalid_body",
            BodyError::TooLarge { .. } => "payload_too_large",
        }
    }
}

/// One event that was not accepted, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub index: usize,
    pub code: &'static str,
    pub message: String,
    pub path: String,
}
