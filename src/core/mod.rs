//! The pure core: no I/O, no clock, no randomness. Time and stored state come in as arguments; decisions and
//! writes go out as values.
//!
//! The folders are layers, in dependency order: each imports only from those listed before it (`tests/tidy.rs`
//! checks this).

pub mod base;
pub mod engine;
pub mod model;
pub mod rules;
pub mod store;
pub mod wire;
pub mod writer;
