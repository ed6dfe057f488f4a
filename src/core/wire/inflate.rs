//! Compressed request bodies (`Content-Encoding: gzip` or `deflate`), inflated as their chunks arrive and stopped
//! the moment the output passes the endpoint's limit.
//!
//! The caller owns the I/O: it `push`es each chunk of the body as the network hands it over, and calls `finish`
//! when the body ends. Memory is bounded by the compressed bytes not yet inflated, one output block and the
//! limit itself, whatever the body claims to hold: a body that inflates a thousandfold is refused having produced
//! at most `limit` bytes plus one block. The runtime's `DecompressionStream` was not enough for this: it inflates
//! each chunk it is given whole, so one 478 KB chunk of a bomb became half a gigabyte before the first check.
//!
//! ```
//! use edgecdp::core::wire::inflate::{Coding, Inflater};
//! let mut body = Inflater::new(Coding::Gzip, 1024);
//! let gzip_of_hello: &[u8] = &[
//!     0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 7, 0, 0x86, 0xa6, 0x10, 0x36, 5, 0, 0, 0,
//! ];
//! for chunk in gzip_of_hello.chunks(4) {
//!     body.push(chunk).unwrap();
//! }
//! assert_eq!(body.finish().unwrap(), b"hello");
//! ```

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};

/// A body's content coding, as HTTP names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// RFC 1952: a header, raw deflate, then the CRC-32 and length of the content.
    Gzip,
    /// HTTP's `deflate` is the zlib format (RFC 1950): a two-byte header, raw deflate, an Adler-32.
    Deflate,
}

impl Coding {
    /// The coding a `Content-Encoding` value names: `Ok(None)` for none (`identity` or empty), `Err` for one this
    /// server does not take (a 415).
    pub fn of_header(value: &str) -> Result<Option<Coding>, UnknownCoding> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Coding::Gzip)),
            "deflate" => Ok(Some(Coding::Deflate)),
            _ => Err(UnknownCoding),
        }
    }
}

/// A `Content-Encoding` this server does not take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownCoding;

/// Why a compressed body was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The content passes the limit (a 413).
    TooLarge,
    /// Not valid data of its coding, truncated, or with bytes after its end (a 400), and why.
    Corrupt(&'static str),
}

/// The size of each block inflated at once: the most the output can pass the limit by.
const BLOCK: usize = 32 * 1024;

/// A body being inflated, chunk by chunk. See the module's documentation.
pub struct Inflater {
    coding: Coding,
    limit: usize,
    state: Box<InflateState>,
    /// Compressed bytes received and not yet consumed (a gzip header split across chunks, or input the
    /// decompressor asked to see more of).
    pending: Vec<u8>,
    header_done: bool,
    ended: bool,
    out: Vec<u8>,
    block: Vec<u8>,
    /// What `take` already handed out: its length and running CRC-32 (the limit and the gzip trailer count it).
    taken: usize,
    taken_crc: u32,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater").field("coding", &self.coding).field("out", &self.out.len()).finish()
    }
}

impl Inflater {
    pub fn new(coding: Coding, limit: usize) -> Inflater {
        let format = match coding {
            Coding::Gzip => DataFormat::Raw,
            Coding::Deflate => DataFormat::Zlib,
        };
        Inflater {
            coding,
            limit,
            state: InflateState::new_boxed(format),
            pending: Vec::new(),
            header_done: coding == Coding::Deflate,
            ended: false,
            out: Vec::new(),
            block: vec![0; BLOCK],
            taken: 0,
            taken_crc: 0,
        }
    }

    /// Takes the next chunk of the compressed body and inflates what it can.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), InflateError> {
        self.pending.extend_from_slice(chunk);
        if !self.header_done {
            match gzip_header_len(&self.pending)? {
                None => return Ok(()),
                Some(n) => {
                    self.pending.drain(..n);
                    self.header_done = true;
                }
            }
        }
        if self.ended {
            return Ok(());
        }
        let mut used = 0;
        loop {
            let r = inflate(&mut self.state, &self.pending[used..], &mut self.block, MZFlush::None);
            used += r.bytes_consumed;
            if self.taken + self.out.len() + r.bytes_written > self.limit {
                return Err(InflateError::TooLarge);
            }
            self.out.extend_from_slice(&self.block[..r.bytes_written]);
            match r.status {
                Ok(MZStatus::StreamEnd) => {
                    self.ended = true;
                    break;
                }
                // A full block: there may be more to inflate from the same input.
                Ok(_) if r.bytes_written == self.block.len() => continue,
                Ok(_) => break,
                // No progress without more input: wait for the next chunk.
                Err(miniz_oxide::MZError::Buf) => break,
                Err(_) => return Err(InflateError::Corrupt("the compressed data is invalid")),
            }
        }
        self.pending.drain(..used);
        Ok(())
    }

    /// The content inflated since the last `take`, handed out so that a long body streams through in bounded
    /// memory (an import file); the limit still counts all of it, and `finish` checks the gzip trailer against
    /// all of it, returning only what was not taken yet.
    pub fn take(&mut self) -> Vec<u8> {
        let out = std::mem::take(&mut self.out);
        self.taken_crc = crc32_update(self.taken_crc, &out);
        self.taken += out.len();
        out
    }

    /// The whole content (what `take` did not hand out), once the body has ended: refused when the compressed data stopped before its end, or
    /// has anything after it, or (gzip) its CRC-32 or length does not match what was inflated.
    pub fn finish(self) -> Result<Vec<u8>, InflateError> {
        if !self.ended {
            return Err(InflateError::Corrupt("the compressed data ends before its end (truncated)"));
        }
        match self.coding {
            Coding::Deflate if !self.pending.is_empty() => {
                Err(InflateError::Corrupt("there are bytes after the end of the compressed data"))
            }
            Coding::Deflate => Ok(self.out),
            Coding::Gzip => {
                let t = &self.pending;
                if t.len() < 8 {
                    return Err(InflateError::Corrupt("the gzip trailer is missing (truncated)"));
                }
                if t.len() > 8 {
                    return Err(InflateError::Corrupt("there are bytes after the end of the compressed data"));
                }
                let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
                let total = self.taken + self.out.len();
                if crc != crc32_update(self.taken_crc, &self.out) || size != total as u32 {
                    return Err(InflateError::Corrupt("the gzip checksum does not match the content"));
                }
                Ok(self.out)
            }
        }
    }
}

/// The length of the gzip header at the start of `b` (RFC 1952, section 2.3), `None` while it is incomplete.
fn gzip_header_len(b: &[u8]) -> Result<Option<usize>, InflateError> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if b.len() >= 2 && (b[0] != 0x1f || b[1] != 0x8b) {
        return Err(InflateError::Corrupt("not gzip data (no gzip magic number)"));
    }
    if b.len() >= 3 && b[2] != 8 {
        return Err(InflateError::Corrupt("gzip data compressed with a method other than deflate"));
    }
    if b.len() >= 4 && b[3] & 0xe0 != 0 {
        return Err(InflateError::Corrupt("gzip header flags reserved bits"));
    }
    if b.len() < 10 {
        return Ok(None);
    }
    let flags = b[3];
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let Some(len) = b.get(at..at + 2) else { return Ok(None) };
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            match b.get(at..).and_then(|rest| rest.iter().position(|&c| c == 0)) {
                Some(end) => at += end + 1,
                None => return Ok(None),
            }
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    Ok((b.len() >= at).then_some(at))
}

/// `content` as one gzip member (RFC 1952): deflated at `level` (0 to 10), then its CRC-32 and size. The export's
/// files are written with it (what every warehouse loader reads); it is the one place gzip is written.
pub fn gzip(content: &[u8], level: u8) -> Vec<u8> {
    gzip_with(content, &[], 0, level)
}

/// A gzip member whose header carries `flags` and the optional fields `header_extra` (the tests' odd headers).
fn gzip_with(content: &[u8], header_extra: &[u8], flags: u8, level: u8) -> Vec<u8> {
    // Magic, deflate, flags, no modification time, no extra flags, OS "Unix".
    let mut out = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3];
    out.extend_from_slice(header_extra);
    out.extend(miniz_oxide::deflate::compress_to_vec(content, level));
    out.extend(crc32(content).to_le_bytes());
    out.extend((content.len() as u32).to_le_bytes());
    out
}

/// CRC-32 (ISO 3309, as gzip uses it), with a table made at compile time.
fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0, bytes)
}

/// CRC-32 of the bytes before (whose CRC is `crc`) followed by `bytes`.
fn crc32_update(crc: u32, bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!crc, |c, &b| TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniz_oxide::deflate::compress_to_vec_zlib;

    fn gzip(content: &[u8], header_extra: &[u8], flags: u8) -> Vec<u8> {
        gzip_with(content, header_extra, flags, 9)
    }

    fn run(coding: Coding, body: &[u8], chunk: usize, limit: usize) -> Result<Vec<u8>, InflateError> {
        let mut i = Inflater::new(coding, limit);
        for c in body.chunks(chunk.max(1)) {
            i.push(c)?;
        }
        i.finish()
    }

    #[test]
    fn a_taken_stream_counts_the_limit_and_the_checksum_over_all_of_it() {
        let content: Vec<u8> = (0..200_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let body = gzip(&content, &[], 0);
        let mut i = Inflater::new(Coding::Gzip, content.len());
        let mut got = Vec::new();
        for chunk in body.chunks(1000) {
            i.push(chunk).unwrap();
            let taken = i.take();
            assert!(taken.len() <= 2 * BLOCK + 1000 * 1032, "bounded");
            got.extend(taken);
        }
        got.extend(i.finish().unwrap());
        assert_eq!(got, content);
        // One byte less of limit is refused, however much was taken.
        let mut i = Inflater::new(Coding::Gzip, content.len() - 1);
        let refused = body.chunks(1000).map(|c| i.push(c).map(|()| i.take().len())).find(Result::is_err);
        assert_eq!(refused, Some(Err(InflateError::TooLarge)));
        // A flipped byte of content fails the trailer's check even when all of it was taken before.
        let mut bad = gzip(&content, &[], 0);
        let n = bad.len();
        bad[n - 8] ^= 1;
        let mut i = Inflater::new(Coding::Gzip, content.len());
        for chunk in bad.chunks(1000) {
            i.push(chunk).unwrap();
            i.take();
        }
        assert!(matches!(i.finish(), Err(InflateError::Corrupt(_))));
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn content_comes_back_whatever_the_chunking() {
        let content: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let named = gzip(&content, b"name.json\0", 8);
        let zlib = compress_to_vec_zlib(&content, 6);
        for chunk in [1, 7, 4096, 1 << 20] {
            assert_eq!(run(Coding::Gzip, &gzip(&content, &[], 0), chunk, 1 << 20).unwrap(), content, "{chunk}");
            assert_eq!(run(Coding::Gzip, &named, chunk, 1 << 20).unwrap(), content, "named, {chunk}");
            assert_eq!(run(Coding::Deflate, &zlib, chunk, 1 << 20).unwrap(), content, "zlib, {chunk}");
        }
        let mut extra = vec![4, 0, b'a', b'b', b'c', b'd'];
        extra.extend_from_slice(b"comment\0");
        extra.extend_from_slice(&[0, 0]);
        assert_eq!(run(Coding::Gzip, &gzip(b"x", &extra, 4 | 16 | 2), 3, 10).unwrap(), b"x");
    }

    /// A bomb stops at the limit having produced at most one block more, however it is chunked; each kind of
    /// damage has its own refusal.
    #[test]
    fn a_bomb_stops_at_the_limit_and_damage_is_refused() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = gzip(&zeros, &[], 0);
        assert!(bomb.len() < 100 * 1024, "a 10 MB bomb is {} bytes", bomb.len());
        for chunk in [16, 65_536, bomb.len()] {
            let mut i = Inflater::new(Coding::Gzip, 500 * 1024);
            let mut refused = false;
            for c in bomb.chunks(chunk) {
                if i.push(c) == Err(InflateError::TooLarge) {
                    refused = true;
                    break;
                }
                assert!(i.out.len() <= 500 * 1024);
            }
            assert!(refused, "chunks of {chunk}");
        }
        let good = gzip(b"{\"a\":1}", &[], 0);
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 8] ^= 1;
        let mut trailing = good.clone();
        trailing.push(0);
        let cases: [(&str, Coding, Vec<u8>, InflateError); 7] = [
            (
                "truncated",
                Coding::Gzip,
                good[..good.len() - 3].to_vec(),
                InflateError::Corrupt("the gzip trailer is missing (truncated)"),
            ),
            (
                "cut in the data",
                Coding::Gzip,
                good[..12].to_vec(),
                InflateError::Corrupt("the compressed data ends before its end (truncated)"),
            ),
            ("bad crc", Coding::Gzip, bad_crc, InflateError::Corrupt("the gzip checksum does not match the content")),
            (
                "trailing",
                Coding::Gzip,
                trailing,
                InflateError::Corrupt("there are bytes after the end of the compressed data"),
            ),
            (
                "not gzip",
                Coding::Gzip,
                b"{\"a\":1}".to_vec(),
                InflateError::Corrupt("not gzip data (no gzip magic number)"),
            ),
            (
                "garbage deflate",
                Coding::Deflate,
                vec![0x78, 0x9c, 0xff, 0xff, 0xff],
                InflateError::Corrupt("the compressed data is invalid"),
            ),
            (
                "gzip sent as deflate",
                Coding::Deflate,
                good.clone(),
                InflateError::Corrupt("the compressed data is invalid"),
            ),
        ];
        for (name, coding, body, want) in cases {
            assert_eq!(run(coding, &body, 5, 1024), Err(want), "{name}");
        }
        assert_eq!(run(Coding::Gzip, &good, 3, 6), Err(InflateError::TooLarge), "one byte over");
        assert_eq!(run(Coding::Gzip, &good, 3, 7).unwrap(), b"{\"a\":1}", "exactly at the limit");
    }

    #[test]
    fn content_codings_are_read_from_the_header() {
        for (value, want) in [
            ("gzip", Ok(Some(Coding::Gzip))),
            (" X-GZIP ", Ok(Some(Coding::Gzip))),
            ("deflate", Ok(Some(Coding::Deflate))),
            ("identity", Ok(None)),
            ("", Ok(None)),
            ("br", Err(UnknownCoding)),
            ("gzip, gzip", Err(UnknownCoding)),
        ] {
            assert_eq!(Coding::of_header(value), want, "{value}");
        }
    }
}
