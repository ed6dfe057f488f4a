//! The browser decide module (feature `browser-decide`): runs the visitor's device program
//! (`core::engine::program`), which the edge writes for them at `GET /v1/decide/summary`
//! (`core::engine::device`), so that sites that are static files can fill their slots without a server of their
//! own (delivery way 3).
//!
//! It is a second Wasm module, separate from the tracker (`src/browser/`): `js/slots.js` loads it only on pages
//! that have slots and only when personalization is allowed. It reads bytes and answers numbers: the program's
//! picks, which `js/slots.js` turns into `/v1/decide`'s answer from the table beside the program. No I/O, no
//! clock (the JavaScript passes the time in), no serde and no configuration: what read the profile was evaluated at
//! the edge.

use crate::core::base::time::Millis;
use crate::core::engine::program::{run, Outcome};
use crate::core::model::context::{Context, Device};
use crate::core::model::event::PageContext;
use wasm_bindgen::prelude::*;

/// What `decide` answers first: the program no longer holds at that time (fetch a new one).
const STALE: u32 = 0;
/// What `decide` answers first: decided; the segments and the slots' answers follow.
const DECIDED: u32 = 1;
/// What `decide` answers first: the program cannot be read (say, a module older than the Worker).
const MALFORMED: u32 = 2;

/// One visitor's program, and what this page served since it was written.
#[wasm_bindgen]
pub struct Engine {
    program: Vec<u8>,
    /// The impressions this page served of capped blocks (cap, time): they count toward the caps as the edge
    /// counts the ones it recorded.
    served: Vec<(u32, Millis)>,
}

#[wasm_bindgen]
impl Engine {
    /// Loads a program (`program` of the summary, which js/slots.js decodes from base64 with the browser's own
    /// `atob`). A program that cannot be read answers `MALFORMED` at every decision.
    #[wasm_bindgen(constructor)]
    pub fn new(program: Vec<u8>) -> Engine {
        Engine { program, served: Vec::new() }
    }

    /// Decides every slot on the page at `now` (milliseconds since 1970), and counts the capped answers of the
    /// slots the page asked for (`requested`, by their number in the program) as served. `page` is what
    /// `/v1/decide` reads from its `context`, in UTF-8, in six parts separated by a zero byte: which of the next
    /// five are given (`1` or `0` each), then the URL, the path, the referrer, the country and the User-Agent
    /// (the device class is read from it). `utc_offset` is in minutes. Answers `[STALE]`, `[MALFORMED]`, or
    /// `[DECIDED, one 0/1 per segment…, one answer per slot…]`.
    pub fn decide(&mut self, page: &[u8], utc_offset: Option<i32>, now: f64, requested: &[u32]) -> Vec<u32> {
        let mut parts = page.split(|b| *b == 0);
        let given = parts.next().unwrap_or_default();
        let mut field = |i: usize| {
            let part = parts.next().unwrap_or_default();
            let text = core::str::from_utf8(part).unwrap_or_default();
            (given.get(i) == Some(&b'1')).then(|| text.to_string())
        };
        let (url, path, referrer, country, user_agent) = (field(0), field(1), field(2), field(3), field(4));
        let cx = Context {
            page: PageContext { path, url, referrer },
            country,
            device: user_agent.as_deref().map(Device::of_user_agent),
            utc_offset_minutes: utc_offset,
        };
        let now = now as Millis;
        match run(&self.program, &cx, now, &self.served) {
            Err(_) => vec![MALFORMED],
            Ok(Outcome::Stale) => vec![STALE],
            Ok(Outcome::Decided(d)) => {
                for &slot in requested {
                    if let Some(&Some(cap)) = d.caps.get(slot as usize) {
                        self.served.push((cap, now));
                    }
                }
                let mut out = Vec::with_capacity(1 + d.segments.len() + d.answers.len());
                out.push(DECIDED);
                out.extend(d.segments.iter().map(|&s| u32::from(s)));
                out.extend(d.answers);
                out
            }
        }
    }
}

/// A free-list allocator instead of dlmalloc, as in the tracker (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());
