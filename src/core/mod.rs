//! The pure core: no I/O, no clock, no randomness. Time and stored state come in as arguments; decisions and
//! writes go out as values.

pub mod event;
pub mod time;
pub mod value;
pub mod wire;
