//! Timestamps as milliseconds since the Unix epoch, and their ISO 8601 text form.
//!
//! The core never reads the clock: callers pass `now` in. This module only converts.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60 * SECOND;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;

/// Parses an ISO 8601 / RFC 3339 date-time such as `2026-11-22T10:50:00.123Z` or
/// `2026-11-22T11:50:00+01:00`. A date alone (`2026-11-22`) means midnight UTC.
pub fn parse_iso8601(s: &str) -> Option<Millis> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return Some(days * DAY);
    }
    if b.len() < 16 || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') || b[13] != b':' {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    let minute = digits(b, 14, 2)?;
    let mut i = 16;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = digits(b, i + 1, 2)?;
        i += 3;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset = match b.get(i) {
        None => 0,
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2)?;
            let (om, end) =
                if b.get(i + 3) == Some(&b':') { (digits(b, i + 4, 2)?, i + 6) } else { (digits(b, i + 3, 2)?, i + 5) };
            if end != b.len() || oh > 23 || om > 59 {
                return None;
            }
            let off = oh * HOUR + om * MINUTE;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    Some(days * DAY + hour * HOUR + minute * MINUTE + second.min(59) * SECOND + millis - offset)
}

/// Formats as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_iso8601(ms: Millis) -> String {
    let days = ms.div_euclid(DAY);
    let rem = ms.rem_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let mut out = String::with_capacity(24);
    let parts = [(y, 4, '-'), (m, 2, '-'), (d, 2, 'T'), (rem / HOUR, 2, ':'), ((rem % HOUR) / MINUTE, 2, ':')];
    for (value, width, then) in parts {
        push_padded(&mut out, value, width);
        out.push(then);
    }
    push_padded(&mut out, (rem % MINUTE) / SECOND, 2);
    out.push('.');
    push_padded(&mut out, rem % SECOND, 3);
    out.push('Z');
    out
}

/// Appends `n` in decimal, padded with zeros to `width` characters as `format!("{n:0width$}")` pads it (a
/// minus sign counts toward the width). Written out so that the browser build, which downloads every byte,
/// needs no formatting machinery for dates and messages.
pub(crate) fn push_padded(out: &mut String, n: i64, width: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let sign = usize::from(n < 0);
    if n < 0 {
        out.push('-');
    }
    for _ in (digits.len() - at + sign)..width {
        out.push('0');
    }
    for &digit in digits.iter().skip(at) {
        out.push(char::from(digit));
    }
}

/// Parses a window such as `30m`, `12h`, `7d` or `4w`.
pub fn parse_duration(s: &str) -> Option<Millis> {
    let unit = match s.as_bytes().last()? {
        b's' => SECOND,
        b'm' => MINUTE,
        b'h' => HOUR,
        b'd' => DAY,
        b'w' => 7 * DAY,
        _ => return None,
    };
    let n: i64 = s[..s.len() - 1].parse().ok()?;
    if n <= 0 || n > 100_000 {
        return None;
    }
    Some(n * unit)
}

fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    let slice = b.get(at..at + len)?;
    let mut n = 0i64;
    for &c in slice {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Some(n)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's well-known civil calendar algorithms, which are exact for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        let ms = parse_iso8601("2026-11-22T10:50:00.123Z").unwrap();
        assert_eq!(ms, 1_795_344_600_123);
        assert_eq!(format_iso8601(ms), "2026-11-22T10:50:00.123Z");
    }

    #[test]
    fn applies_offsets_and_fractions() {
        assert_eq!(parse_iso8601("2026-11-22T11:50:00+01:00"), parse_iso8601("2026-11-22T10:50:00Z"));
        assert_eq!(parse_iso8601("2026-11-22T10:50:00.5Z").unwrap() % 1000, 500);
        assert_eq!(parse_iso8601("1970-01-01"), Some(0));
        assert_eq!(format_iso8601(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn formats_as_format_would() {
        for n in [0, 7, -7, 42, -42, 999, -999, 12_345, -12_345, i64::MAX, i64::MIN] {
            for width in [1, 2, 3, 4] {
                let mut out = String::new();
                push_padded(&mut out, n, width);
                assert_eq!(out, format!("{n:0width$}"));
            }
        }
        for ms in [0i64, -1, 1_795_344_600_123, -62_167_219_200_001, 253_402_300_800_000, -8_640_000_000_000_000] {
            let (days, rem) = (ms.div_euclid(DAY), ms.rem_euclid(DAY));
            let (y, m, d) = civil_from_days(days);
            let (h, min, s, milli) = (rem / HOUR, (rem % HOUR) / MINUTE, (rem % MINUTE) / SECOND, rem % SECOND);
            assert_eq!(format_iso8601(ms), format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z"));
        }
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-02-30",
            "2026-11-22T25:00:00Z",
            "2026-11-22T10:50:00Zjunk",
            "2026-11-22T10:50:00.",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Some(7 * DAY));
        assert_eq!(parse_duration("2w"), Some(14 * DAY));
        assert_eq!(parse_duration("0d"), None);
        assert_eq!(parse_duration("d"), None);
        assert_eq!(parse_duration("7y"), None);
    }
}
