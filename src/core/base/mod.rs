//! Layer 1, the base: time, values, JSON views and encodings. Knows nothing of events or profiles.

pub mod binread;
pub mod encoding;
pub mod json;
pub mod time;
pub mod url;
pub mod value;
