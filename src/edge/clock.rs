//! The Worker's clock, at the bottom of the edge: the core takes time as an argument, and this is where it comes
//! from.

use crate::core::base::time::Millis;

pub fn now() -> Millis {
    worker::Date::now().as_millis() as Millis
}
