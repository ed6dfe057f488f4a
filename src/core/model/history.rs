//! A profile's bounded event history: one compact record per recent event.

use crate::core::base::time::Millis;
use crate::core::base::value::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many recent events a profile keeps for windowed segment conditions with exact times. The oldest go
/// first, so the profile's size is bounded whatever the traffic; the daily aggregates keep counting for 30 days.
pub const MAX_RECENT_EVENTS: usize = 200;
/// Scalar properties kept per recent event, and the longest string kept.
pub const MAX_RECORD_PROPS: usize = 16;
pub const MAX_RECORD_STRING: usize = 128;

/// A compact record of one event, enough for windowed counts with property filters, and for uniting two
/// histories by `messageId` when profiles merge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub at: Millis,
    pub name: String,
    pub message_id: String,
    pub props: BTreeMap<String, Value>,
}
