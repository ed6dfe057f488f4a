//! What a device runs to decide: one visitor's decision rules with everything that reads their profile already
//! evaluated at the edge (`engine::device` writes it), so that what is left reads only the page (path, referrer,
//! campaign parameters, country, device class, local hour), the time (schedules, caps) and what the page itself
//! served since. The device needs neither the profile nor the configuration, only this program and, beside it, a
//! table of the answers it can pick (the shell turns the picks into `/v1/decide`'s answer).
//!
//! The format, written by `engine::device` and read here in place, without serde, so that the browser's module
//! links nothing but this reader, the page conditions and an allocator:
//!
//! ```text
//! program   = VERSION built_at valid_until segments slots
//! segments  = count n (index cond)×n           -- in evaluation order; `count` results, indexed like the config's
//! slots     = n (fallback m candidate×m)×n      -- the configuration's slots in name order
//! candidate = answer flags [start] [end] [cap id max per k time×k] cond
//! cond      = TRUE | FALSE | ALL n cond×n | ANY n cond×n | NOT cond | SEGMENT index
//!           | PAGE strs | REFERRER strs | UTM str strs | COUNTRY strs | DEVICE n byte×n | LOCAL_HOUR n (op f64)×n
//! ```
//!
//! Numbers are LEB128 varints (times zigzag-mapped first), floats little-endian IEEE 754, strings a length and
//! UTF-8. The program holds from `built_at` until just before `valid_until` (the next instant at which time alone
//! could change what the edge evaluated, `audiences::next_change_of`); outside that span `run` answers `Stale`
//! and the device fetches a new one.

use crate::core::base::time::Millis;
use crate::core::engine::evaluate::local_hour_holds;
use crate::core::model::context::{Context, Device};
use crate::core::rules::segment::Cmp;

pub const VERSION: u8 = 1;

/// A program that cannot be read: the offset where reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError {
    pub at: usize,
}

pub(crate) const TRUE: u8 = 0;
pub(crate) const FALSE: u8 = 1;
pub(crate) const ALL: u8 = 2;
pub(crate) const ANY: u8 = 3;
pub(crate) const NOT: u8 = 4;
pub(crate) const SEGMENT: u8 = 5;
pub(crate) const PAGE: u8 = 6;
pub(crate) const REFERRER: u8 = 7;
pub(crate) const UTM: u8 = 8;
pub(crate) const COUNTRY: u8 = 9;
pub(crate) const DEVICE: u8 = 10;
pub(crate) const LOCAL_HOUR: u8 = 11;

/// A candidate's flags: which of its optional parts follow.
pub(crate) const HAS_START: u8 = 1;
pub(crate) const HAS_END: u8 = 2;
pub(crate) const HAS_CAP: u8 = 4;

/// The device classes by their number in the program.
pub(crate) const DEVICES: [Device; 4] = [Device::Mobile, Device::Tablet, Device::Desktop, Device::Bot];
/// The comparisons by their number in the program.
pub(crate) fn cmp_of(op: u8, n: f64) -> Option<Cmp> {
    Some(match op {
        0 => Cmp::Eq(n),
        1 => Cmp::Ne(n),
        2 => Cmp::Lt(n),
        3 => Cmp::Lte(n),
        4 => Cmp::Gt(n),
        5 => Cmp::Gte(n),
        _ => return None,
    })
}

/// How deep conditions may nest: the configuration's own limit is lower; a deeper program is malformed.
const MAX_DEPTH: u8 = 64;

/// What a run decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The time is outside the program's span: the device must fetch a new one.
    Stale,
    Decided(Decided),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// Whether each segment holds, indexed like the configuration's segments.
    pub segments: Vec<bool>,
    /// Each slot's answer (an index into the answers' table), in the program's slot order.
    pub answers: Vec<u32>,
    /// Each slot's cap, when its answer is a capped block: what serving it must count.
    pub caps: Vec<Option<u32>>,
}

/// Decides every slot of `program` on the page `cx` at `now`, counting toward caps the impressions `served`
/// since the program was written (`(cap, at)`).
pub fn run(program: &[u8], cx: &Context, now: Millis, served: &[(u32, Millis)]) -> Result<Outcome, ReadError> {
    let mut r = Reader { bytes: program, at: 0 };
    if r.byte()? != VERSION {
        return Err(ReadError { at: 0 });
    }
    let (built_at, valid_until) = (r.time()?, r.time()?);
    if now < built_at || now >= valid_until {
        return Ok(Outcome::Stale);
    }
    let mut segments = vec![false; r.len()?];
    for _ in 0..r.len()? {
        let index = r.index()? as usize;
        let holds = cond(&mut r, cx, now, &segments, 0)?;
        *segments.get_mut(index).ok_or(r.error())? = holds;
    }
    let slots = r.len()?;
    let (mut answers, mut caps) = (Vec::with_capacity(slots), Vec::with_capacity(slots));
    for _ in 0..slots {
        let fallback = r.index()?;
        let mut chosen: Option<(u32, Option<u32>)> = None;
        for _ in 0..r.len()? {
            let answer = r.index()?;
            let flags = r.byte()?;
            let mut can = true;
            if flags & HAS_START != 0 {
                can &= now >= r.time()?;
            }
            if flags & HAS_END != 0 {
                can &= now < r.time()?;
            }
            let mut cap = None;
            if flags & HAS_CAP != 0 {
                let (id, max, per) = (r.index()?, r.varint()?, r.time()?);
                let counts = |at: Millis| at > now.saturating_sub(per) && at <= now;
                let mut shown = served.iter().filter(|(c, at)| *c == id && counts(*at)).count();
                for _ in 0..r.len()? {
                    shown += usize::from(counts(r.time()?));
                }
                can &= (shown as u64) < max;
                cap = Some(id);
            }
            // Read whole even once the slot is decided: the next candidate starts after it.
            can &= cond(&mut r, cx, now, &segments, 0)?;
            if can && chosen.is_none() {
                chosen = Some((answer, cap));
            }
        }
        let (answer, cap) = chosen.unwrap_or((fallback, None));
        answers.push(answer);
        caps.push(cap);
    }
    if r.at != program.len() {
        return Err(r.error());
    }
    Ok(Outcome::Decided(Decided { segments, answers, caps }))
}

fn cond(r: &mut Reader, cx: &Context, now: Millis, segments: &[bool], depth: u8) -> Result<bool, ReadError> {
    if depth > MAX_DEPTH {
        return Err(r.error());
    }
    let tag = r.byte()?;
    Ok(match tag {
        TRUE => true,
        FALSE => false,
        ALL | ANY => {
            let (mut all, mut any) = (true, false);
            // Every member is read, also after the answer is known: the next condition starts after them.
            for _ in 0..r.len()? {
                let holds = cond(r, cx, now, segments, depth + 1)?;
                all &= holds;
                any |= holds;
            }
            if tag == ALL {
                all
            } else {
                any
            }
        }
        NOT => !cond(r, cx, now, segments, depth + 1)?,
        SEGMENT => *segments.get(r.index()? as usize).ok_or(r.error())?,
        PAGE => cx.page_is(r.strs()?.into_iter()),
        REFERRER => cx.referrer_is(r.strs()?.into_iter()),
        UTM => {
            let param = r.str()?;
            cx.utm_is(param, r.strs()?.into_iter())
        }
        COUNTRY => cx.country_is(r.strs()?.into_iter()),
        DEVICE => {
            let mut list = Vec::new();
            for _ in 0..r.len()? {
                list.push(*DEVICES.get(usize::from(r.byte()?)).ok_or(r.error())?);
            }
            cx.device_is(list.into_iter())
        }
        LOCAL_HOUR => {
            let mut cmps = Vec::new();
            for _ in 0..r.len()? {
                let op = r.byte()?;
                cmps.push(cmp_of(op, r.float()?).ok_or(r.error())?);
            }
            local_hour_holds(cx, now, cmps.into_iter())
        }
        _ => return Err(ReadError { at: r.at - 1 }),
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self) -> ReadError {
        ReadError { at: self.at }
    }

    fn byte(&mut self) -> Result<u8, ReadError> {
        let b = *self.bytes.get(self.at).ok_or(self.error())?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, ReadError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(self.error())
    }

    /// A count or an index: never more than the bytes left could hold, so a corrupt one allocates nothing large.
    fn len(&mut self) -> Result<usize, ReadError> {
        let n = self.varint()?;
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(self.error());
        }
        Ok(n as usize)
    }

    fn index(&mut self) -> Result<u32, ReadError> {
        u32::try_from(self.varint()?).map_err(|_| self.error())
    }

    fn time(&mut self) -> Result<Millis, ReadError> {
        let z = self.varint()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    fn float(&mut self) -> Result<f64, ReadError> {
        let end = self.at + 8;
        let b: [u8; 8] = self.bytes.get(self.at..end).and_then(|s| s.try_into().ok()).ok_or(self.error())?;
        self.at = end;
        Ok(f64::from_le_bytes(b))
    }

    fn str(&mut self) -> Result<&'a str, ReadError> {
        let n = self.len()?;
        let bytes = self.bytes.get(self.at..self.at + n).ok_or(self.error())?;
        let s = core::str::from_utf8(bytes).map_err(|_| self.error())?;
        self.at += n;
        Ok(s)
    }

    fn strs(&mut self) -> Result<Vec<&'a str>, ReadError> {
        let n = self.len()?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.str()?);
        }
        Ok(out)
    }
}

/// The writer's side of the format, for `engine::device`.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn byte(&mut self, b: u8) {
        self.bytes.push(b);
    }

    pub fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.bytes.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.bytes.push(n as u8);
    }

    pub fn len(&mut self, n: usize) {
        self.varint(n as u64);
    }

    pub fn time(&mut self, t: Millis) {
        self.varint(((t << 1) ^ (t >> 63)) as u64);
    }

    pub fn float(&mut self, x: f64) {
        self.bytes.extend_from_slice(&x.to_le_bytes());
    }

    pub fn str(&mut self, s: &str) {
        self.len(s.len());
        self.bytes.extend_from_slice(s.as_bytes());
    }

    pub fn strs<'s>(&mut self, list: impl ExactSizeIterator<Item = &'s str>) {
        self.len(list.len());
        list.for_each(|s| self.str(s));
    }
}
