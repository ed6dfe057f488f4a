//! Failed attempts at an admin credential, per client address: past `MAX_FAILURES` in a minute, every attempt from
//! that address is refused until the minute since the oldest of them has passed, the right token included, so
//! that guessing is as slow as the limit says. A success neither counts nor clears the failures.

use crate::core::base::time::{Millis, SECOND};
use std::collections::VecDeque;

/// Failures allowed from one address in `WINDOW`, unless the Worker's `EDGECDP_ADMIN_FAILURES_PER_MINUTE` says
/// otherwise.
pub const MAX_FAILURES: usize = 10;
/// The window failures are counted over.
pub const WINDOW: Millis = 60 * SECOND;

/// One address's recent failures, oldest first (at most the limit is kept: more change nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    pub failures: VecDeque<Millis>,
}

/// What to do with an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Judge the credential as usual.
    Go,
    /// Refuse it unread, and say when to try again (whole seconds, at least 1).
    Wait { retry_after_seconds: u64 },
}

impl Attempts {
    /// Forgets failures older than the window at `now`.
    fn expire(&mut self, now: Millis) {
        while self.failures.front().is_some_and(|&at| at + WINDOW <= now) {
            self.failures.pop_front();
        }
    }

    /// Whether an attempt at `now` may be judged: refused while `max` failures lie within the window.
    pub fn verdict(&mut self, now: Millis, max: usize) -> Verdict {
        self.expire(now);
        match self.failures.front() {
            Some(&oldest) if self.failures.len() >= max.max(1) => {
                let wait = oldest + WINDOW - now;
                Verdict::Wait { retry_after_seconds: (wait.max(1) as u64).div_ceil(SECOND as u64) }
            }
            _ => Verdict::Go,
        }
    }

    /// Records a failed attempt at `now`, keeping at most `max`.
    pub fn fail(&mut self, now: Millis, max: usize) {
        self.expire(now);
        self.failures.push_back(now);
        while self.failures.len() > max.max(1) {
            self.failures.pop_front();
        }
    }
}

/// The address attempts are counted under: an IPv4 address as it is, an IPv6 address by its /64 network (one
/// subscriber commonly holds a whole /64, so counting single IPv6 addresses would let one caller rotate through
/// 2^64 of them), anything else under one shared name.
pub fn client_bucket(address: Option<&str>) -> String {
    let Some(a) = address.map(str::trim).filter(|a| !a.is_empty()) else { return "unknown".into() };
    if a.contains(':') {
        let groups = expand_ipv6(a);
        return match groups {
            Some(g) => format!("{:x}:{:x}:{:x}:{:x}::/64", g[0], g[1], g[2], g[3]),
            None => "unknown".into(),
        };
    }
    if a.split('.').count() == 4 && a.split('.').all(|p| !p.is_empty() && p.len() <= 3 && p.parse::<u8>().is_ok()) {
        a.to_string()
    } else {
        "unknown".into()
    }
}

/// The eight groups of an IPv6 address (`::` expanded); `None` when it is not one.
fn expand_ipv6(a: &str) -> Option<[u16; 8]> {
    let group = |s: &str| (!s.is_empty() && s.len() <= 4).then(|| u16::from_str_radix(s, 16).ok()).flatten();
    let parse = |s: &str| -> Option<Vec<u16>> {
        if s.is_empty() {
            return Some(Vec::new());
        }
        s.split(':').map(group).collect()
    };
    let (head, tail) = match a.split_once("::") {
        Some((h, t)) => (parse(h)?, Some(parse(t)?)),
        None => (parse(a)?, None),
    };
    let mut out = [0u16; 8];
    match tail {
        None if head.len() == 8 => out.copy_from_slice(&head),
        Some(tail) if head.len() + tail.len() < 8 => {
            out[..head.len()].copy_from_slice(&head);
            out[8 - tail.len()..].copy_from_slice(&tail);
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limit's edges, one row each: the tenth failure still leaves the eleventh attempt refused, a failure a
    /// whole window old no longer counts, and a success changes nothing.
    #[test]
    fn ten_failures_a_minute_then_wait_until_the_oldest_is_a_minute_old() {
        let mut a = Attempts::default();
        for i in 0..MAX_FAILURES as Millis - 1 {
            assert_eq!(a.verdict(i * SECOND, MAX_FAILURES), Verdict::Go);
            a.fail(i * SECOND, MAX_FAILURES);
        }
        assert_eq!(a.verdict(9 * SECOND, MAX_FAILURES), Verdict::Go, "nine failures: the tenth attempt is judged");
        a.fail(9 * SECOND, MAX_FAILURES);
        assert_eq!(a.verdict(9 * SECOND, MAX_FAILURES), Verdict::Wait { retry_after_seconds: 51 });
        assert_eq!(
            a.verdict(WINDOW - 1, MAX_FAILURES),
            Verdict::Wait { retry_after_seconds: 1 },
            "the oldest is not yet a minute old"
        );
        assert_eq!(a.verdict(WINDOW, MAX_FAILURES), Verdict::Go, "the oldest is exactly a minute old");
        a.fail(WINDOW, MAX_FAILURES);
        assert_eq!(
            a.verdict(WINDOW, MAX_FAILURES),
            Verdict::Wait { retry_after_seconds: 1 },
            "ten again within the window"
        );
        assert_eq!(a.verdict(WINDOW + SECOND, MAX_FAILURES), Verdict::Go);
        assert!(a.failures.len() <= MAX_FAILURES);
        let mut quiet = Attempts::default();
        quiet.fail(0, MAX_FAILURES);
        assert_eq!(quiet.verdict(10 * WINDOW, MAX_FAILURES), Verdict::Go);
        assert!(quiet.failures.is_empty(), "old failures are forgotten");
        // Another limit, as configured; a limit of 0 is taken as 1, never as "no attempt at all".
        let mut strict = Attempts::default();
        strict.fail(0, 2);
        assert_eq!(strict.verdict(0, 2), Verdict::Go);
        strict.fail(1, 2);
        assert_eq!(strict.verdict(1, 2), Verdict::Wait { retry_after_seconds: 60 });
        let mut zero = Attempts::default();
        assert_eq!(zero.verdict(0, 0), Verdict::Go);
        zero.fail(0, 0);
        assert_eq!((zero.verdict(0, 0), zero.failures.len()), (Verdict::Wait { retry_after_seconds: 60 }, 1));
    }

    #[test]
    fn addresses_are_counted_by_ipv4_address_or_ipv6_network() {
        for (address, bucket) in [
            (Some("203.0.113.7"), "203.0.113.7"),
            (Some(" 203.0.113.7 "), "203.0.113.7"),
            (Some("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64"),
            (Some("2001:db8:1:2::ffff"), "2001:db8:1:2::/64"),
            (Some("2001:DB8:1:2:aaaa::1"), "2001:db8:1:2::/64"),
            (Some("::1"), "0:0:0:0::/64"),
            (Some("2001:db8::"), "2001:db8:0:0::/64"),
            (Some("2001:db8::1::2"), "unknown"),
            (Some("2001:db8:00001:2::1"), "unknown"),
            (Some("1:2:3:4:5:6:7::8"), "unknown"),
            (Some("::1:2:3:4:5:6:7:8"), "unknown"),
            (Some("1:2:3:4:5:6::8"), "1:2:3:4::/64"),
            (Some("2001:db8:1:2:3:4:5:6:7"), "unknown"),
            (Some("999.1.1.1"), "unknown"),
            (Some("1.2.3"), "unknown"),
            (Some("evil"), "unknown"),
            (Some(""), "unknown"),
            (None, "unknown"),
        ] {
            assert_eq!(client_bucket(address), bucket, "{address:?}");
        }
    }
}
