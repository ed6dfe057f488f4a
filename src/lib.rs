//! edgecdp: a first-party customer data platform whose pure core runs natively, in a Cloudflare Worker
//! (feature `edge`) and in the browser (feature `browser`, the tracker; feature `browser-decide`, the decision
//! engine that static sites load on pages with slots).
//!
//! The crate is laid out as a sans-I/O core with two thin shells; ARCHITECTURE.md has the map.

pub mod core;

#[cfg(all(feature = "edge", target_arch = "wasm32"))]
pub mod edge;

#[cfg(all(feature = "browser", target_arch = "wasm32"))]
pub mod browser;

#[cfg(all(feature = "browser-decide", target_arch = "wasm32"))]
pub mod browser_decide;

/// The JSON view over JavaScript values that the tracker reads its input through.
#[cfg(all(feature = "browser", target_arch = "wasm32"))]
mod js_json;
