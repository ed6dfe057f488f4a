//! Layer 1, the base: time, values, JSON views, encodings and the statistics predictions fit and evaluate
//! (`stats`, `clv`, `logistic`). Knows nothing of events or profiles.

pub mod clv;
pub mod encoding;
pub mod json;
pub mod logistic;
pub mod sort;
pub mod stats;
pub mod time;
pub mod url;
pub mod value;
