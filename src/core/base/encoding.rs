//! Byte encodings, each written once: hexadecimal, base64 (standard, URL-safe for JWTs, and the lenient form
//! Basic auth arrives in) and percent-decoding. A few lines each rather than a crate: the browser decide module
//! links base64, and nothing here needs more.

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The value of one hexadecimal digit, either case.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes in a URL path segment; invalid escapes and other bytes stay as they are. Works on bytes,
/// never by slicing the `str`, which could cut a multi-byte character.
pub fn percent_decode_path(s: &str) -> String {
    percent_decode(s, false)
}

/// Decodes a query-string value: `%XX` escapes, and `+` as a space.
pub fn percent_decode_query(s: &str) -> String {
    percent_decode(s, true)
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    // Read with `get`, so that nothing here can panic (the device's module links no panic message).
    while let Some(&c) = b.get(i) {
        let hex = |k: usize| b.get(i + k).copied().and_then(hex_digit);
        match c {
            b'+' if plus_is_space => out.push(b' '),
            b'%' => match (hex(1), hex(2)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648, section 4).
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let t = text.as_bytes();
    if !t.len().is_multiple_of(4) {
        return None;
    }
    // By ranges, not a search of ALPHABET: the device decodes a summary per decision (scripts/bench-growthbook.mjs).
    let value = |c: u8| {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(t.len() / 4 * 3);
    for (i, chunk) in t.chunks(4).enumerate() {
        let last = i + 1 == t.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

/// Unpadded base64url (RFC 7515's form), as JWTs are written.
pub fn base64url_encode(bytes: &[u8]) -> String {
    base64_encode(bytes).trim_end_matches('=').replace('+', "-").replace('/', "_")
}

/// Decodes unpadded base64url; `None` for anything else, padding and the standard alphabet included.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    if text.bytes().any(|b| b == b'+' || b == b'/' || b == b'=') || text.len() % 4 == 1 {
        return None;
    }
    let mut standard = text.replace('-', "+").replace('_', "/");
    while !standard.len().is_multiple_of(4) {
        standard.push('=');
    }
    base64_decode(&standard)
}

/// Base64 as HTTP clients write it in Basic auth: either alphabet (standard or URL-safe), padding optional;
/// `None` on anything else.
pub fn base64_decode_lenient(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_refuses_junk() {
        for (raw, text) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")] {
            assert_eq!(base64_encode(raw.as_bytes()), text);
            assert_eq!(base64_decode(text).as_deref(), Some(raw.as_bytes()));
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&all)), Some(all));
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9*", "Zm9v\n"] {
            assert_eq!(base64_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hex_and_percent_decoding() {
        assert_eq!(hex(&[0, 15, 16, 255]), "000f10ff");
        // (input, as a path segment, as a query value)
        let cases = [
            ("a%20b", "a b", "a b"),
            ("a+b", "a+b", "a b"),
            ("%e2%9C%93", "\u{2713}", "\u{2713}"),
            ("100%", "100%", "100%"),
            ("%zz%4", "%zz%4", "%zz%4"),
            ("%41", "A", "A"),
        ];
        for (input, path, query) in cases {
            assert_eq!(percent_decode_path(input), path, "{input}");
            assert_eq!(percent_decode_query(input), query, "{input}");
        }
    }

    #[test]
    fn base64url_and_the_lenient_basic_auth_form() {
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url_decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(base64url_decode("-_8="), None, "padded");
        assert_eq!(base64url_decode("+/8"), None, "standard alphabet");
        assert_eq!(base64_decode_lenient("ZGVtbzo=").as_deref(), Some(&b"demo:"[..]));
        assert_eq!(base64_decode_lenient("ZGVtbzo").as_deref(), Some(&b"demo:"[..]));
        assert_eq!(base64_decode_lenient("***"), None);
    }
}
