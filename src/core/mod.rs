//! The pure core: no I/O, no clock, no randomness. Time and stored state come in as arguments; decisions and
//! writes go out as values.

pub mod aggregate;
pub mod binread;
pub mod config;
pub mod consent;
pub mod context;
pub mod decide;
pub mod delivery;
pub mod encoding;
pub mod event;
pub mod identity;
pub mod ingest;
pub mod json;
pub mod merge;
pub mod profile;
pub mod segment;
pub mod store;
pub mod summary;
pub mod template;
pub mod time;
pub mod trust;
pub mod value;
pub mod wire;
