//! The Worker's clock, at the bottom of the edge: the core takes time as an argument, and this is where it comes
//! from.

use crate::core::base::time::Millis;

/// The runtime's `Date.now()`, one call across the boundary (workers-rs' `Date::now` makes a `Date` object and
/// asks it: two calls and an object, about 20 µs of a warm request in the isolate's profile).
pub fn now() -> Millis {
    worker::js_sys::Date::now() as Millis
}
