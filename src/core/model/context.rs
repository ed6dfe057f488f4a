//! The request context a decision is made in: the page (path, referrer, campaign parameters), the visitor's
//! country, device class and local time. The shells gather it (the edge from the request, the browser from the
//! page); the core only reads it, so both reach the same answer for the same context.

use crate::core::base::encoding::percent_decode_query;
use crate::core::base::time::{Millis, HOUR};
use crate::core::model::event::PageContext;
use serde::{Deserialize, Serialize};

/// A coarse device class, from the User-Agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Device {
    Mobile,
    Tablet,
    Desktop,
    Bot,
}

impl Device {
    pub const NAMES: [&'static str; 4] = ["mobile", "tablet", "desktop", "bot"];

    pub fn parse(s: &str) -> Option<Device> {
        Some(match s {
            "mobile" => Device::Mobile,
            "tablet" => Device::Tablet,
            "desktop" => Device::Desktop,
            "bot" => Device::Bot,
            _ => return None,
        })
    }

    /// The class of a User-Agent string. Crawlers first (they often claim to be mobile browsers too), then
    /// tablets (iPads and Android devices without "Mobile"), then phones; everything else is a desktop.
    pub fn of_user_agent(ua: &str) -> Device {
        let ua = ua.to_ascii_lowercase();
        // Searched on bytes: `str::contains` links a substring searcher of 2 KB into the device's module, and
        // `windows` a panic for a width of 0.
        let has = |s: &str| {
            let (h, n) = (ua.as_bytes(), s.as_bytes());
            (0..=h.len().saturating_sub(n.len())).any(|i| h.get(i..i + n.len()) == Some(n))
        };
        if ["bot", "crawler", "spider", "slurp", "facebookexternalhit"].iter().any(|s| has(s)) {
            Device::Bot
        } else if has("ipad") || has("tablet") || (has("android") && !has("mobile")) {
            Device::Tablet
        } else if has("mobi") || has("iphone") || has("ipod") || has("windows phone") {
            Device::Mobile
        } else {
            Device::Desktop
        }
    }
}

/// Where and when a decision is asked for. Every part is optional: a condition on a missing part does not hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    pub page: PageContext,
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
    pub device: Option<Device>,
    /// The visitor's offset from UTC in minutes (UTC+1 is 60), for local-time conditions.
    pub utc_offset_minutes: Option<i32>,
}

impl Context {
    /// The page's path: `page.path` when given, else the path of `page.url`.
    pub fn path(&self) -> Option<&str> {
        if let Some(p) = self.page.path.as_deref() {
            return Some(p);
        }
        let url = self.page.url.as_deref()?;
        let rest = after_scheme(url);
        let path = rest.get(rest.find('/')?..)?;
        Some(path.split(['?', '#']).next().unwrap_or(path))
    }

    /// The host of the referrer, lower case, without port.
    pub fn referrer_host(&self) -> Option<String> {
        let r = self.page.referrer.as_deref()?;
        let rest = after_scheme(r);
        let host = rest.split(['/', '?', '#']).next()?;
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = host.split(':').next().unwrap_or(host);
        (!host.is_empty()).then(|| host.to_ascii_lowercase())
    }

    /// A query parameter of the page URL (the first of that name), percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let url = self.page.url.as_deref()?;
        let query = url.split_once('?')?.1;
        let query = query.split('#').next().unwrap_or(query);
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode_query(k) == name).then(|| percent_decode_query(v))
        })
    }

    /// The page conditions, one rule each for the edge's evaluation (`Condition::holds`) and the device's
    /// (`engine::program`), which hand their lists in as iterators: the path matches one of `globs`.
    pub fn page_is<'g>(&self, mut globs: impl Iterator<Item = &'g str>) -> bool {
        self.path().is_some_and(|p| globs.any(|g| glob_matches(g, p)))
    }

    /// The referrer's host matches one of `globs`.
    pub fn referrer_is<'g>(&self, mut globs: impl Iterator<Item = &'g str>) -> bool {
        self.referrer_host().is_some_and(|h| globs.any(|g| glob_matches(g, &h)))
    }

    /// The page URL's parameter `param` matches one of `globs`.
    pub fn utm_is<'g>(&self, param: &str, mut globs: impl Iterator<Item = &'g str>) -> bool {
        self.query(param).is_some_and(|v| globs.any(|g| glob_matches(g, &v)))
    }

    /// The country is one of `list`.
    pub fn country_is<'g>(&self, mut list: impl Iterator<Item = &'g str>) -> bool {
        self.country.as_deref().is_some_and(|c| list.any(|x| x == c))
    }

    /// The device class is one of `list`.
    pub fn device_is(&self, mut list: impl Iterator<Item = Device>) -> bool {
        self.device.is_some_and(|d| list.any(|x| x == d))
    }

    /// The visitor's local hour (0 to 23) at `now`.
    pub fn local_hour(&self, now: Millis) -> Option<u8> {
        let offset = Millis::from(self.utc_offset_minutes?) * 60_000;
        // `rem_euclid` keeps times before 1970 and negative offsets in 0..24.
        Some((now + offset).div_euclid(HOUR).rem_euclid(24) as u8)
    }
}

/// Whether `code` is an ISO 3166-1 alpha-2 country code as the configuration writes them: two upper-case letters.
pub fn is_country_code(code: &str) -> bool {
    code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())
}

/// A country code as a request may send it (either case) in the configuration's form; `None` when it is not two
/// ASCII letters. (No trimming here: `str::trim` would link Unicode's whitespace table into the device's module.)
pub fn country_code(raw: &str) -> Option<String> {
    Some(raw.to_ascii_uppercase()).filter(|c| is_country_code(c))
}

/// Glob matching: `*` matches any run of characters (`/` included), `?` exactly one; everything else itself.
/// Works on the bytes, allocating nothing, with the classic backtracking over the last `*` only.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // The length of the UTF-8 character starting at `t[i]` (always at a character's start), which `?` consumes
    // whole; read from its first byte, so that nothing here can panic (a panic's message links the formatter
    // into the device's module).
    let char_len = |i: usize| match t.get(i) {
        Some(0xf0..) => 4,
        Some(0xe0..) => 3,
        Some(0xc0..) => 2,
        _ => 1,
    };
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = t.get(ti) {
        let at = p.get(pi).copied();
        if at == Some(b'?') {
            pi += 1;
            ti += char_len(ti);
        } else if at.is_some_and(|a| a != b'*' && a == c) {
            pi += 1;
            ti += 1;
        } else if at == Some(b'*') {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` take one more character, and try again after it.
            let next = st + char_len(st);
            pi = sp + 1;
            ti = next;
            star = Some((sp, next));
        } else {
            return false;
        }
    }
    p.get(pi..).unwrap_or_default().iter().all(|c| *c == b'*')
}

/// What follows the first `://` of a URL, or all of it: `split_once("://")` without a substring searcher.
fn after_scheme(url: &str) -> &str {
    match url.as_bytes().windows(3).position(|w| w == b"://") {
        Some(i) => url.get(i + 3..).unwrap_or(url),
        None => url,
    }
}

/// `GMT`, `GMT+1`, `GMT-05:00`, `GMT+05:30` to minutes east of UTC.
pub fn parse_gmt_offset(name: &str) -> Option<i32> {
    let rest = name.strip_prefix("GMT")?;
    if rest.is_empty() {
        return Some(0);
    }
    let (sign, rest) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    Some(sign * (h.parse::<i32>().ok()? * 60 + m.parse::<i32>().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_in_every_spelling_a_request_may_use() {
        // (as sent, what it means)
        let cases = [
            ("DE", Some("DE")),
            ("de", Some("DE")),
            (" DE", None),
            ("uS", Some("US")),
            ("DEU", None),
            ("D", None),
            ("1A", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(country_code(raw).as_deref(), want, "{raw:?}");
        }
        assert!(is_country_code("AT") && !is_country_code("at"), "the configuration writes them in capitals");
    }

    fn page(url: &str, referrer: Option<&str>) -> Context {
        Context {
            page: PageContext { path: None, url: Some(url.into()), referrer: referrer.map(String::from) },
            ..Context::default()
        }
    }

    #[test]
    fn globs() {
        assert!(glob_matches("/shop/*", "/shop/bags/tote"));
        assert!(glob_matches("/shop/*", "/shop/"));
        assert!(!glob_matches("/shop/*", "/shop"));
        assert!(glob_matches("*.google.*", "www.google.de"));
        assert!(glob_matches("/p?ge", "/page"));
        assert!(glob_matches("*a*b*", "xxaxxbxx"));
        assert!(!glob_matches("*a*b", "xxaxxbxx"));
        assert!(glob_matches("", ""));
        assert!(glob_matches("/caf?/*", "/café/x"), "? takes one character, not one byte");
        assert!(glob_matches("*é", "caféé"));
        assert!(!glob_matches("", "x"));
    }

    #[test]
    fn page_parts() {
        let c = page(
            "https://shop.example/bags/tote?utm_campaign=black%20friday&x=1#top",
            Some("https://WWW.Google.com:443/search?q=x"),
        );
        assert_eq!(c.path(), Some("/bags/tote"));
        assert_eq!(c.query("utm_campaign").as_deref(), Some("black friday"));
        assert_eq!(c.query("utm_source"), None);
        assert_eq!(c.referrer_host().as_deref(), Some("www.google.com"));
        assert_eq!(page("https://shop.example", None).path(), None);
        assert_eq!(page("https://shop.example/?q=a+b%zz", None).query("q").as_deref(), Some("a b%zz"));
    }

    #[test]
    fn local_hours() {
        let c = Context { utc_offset_minutes: Some(60), ..Context::default() };
        assert_eq!(c.local_hour(23 * HOUR + 5), Some(0));
        let c = Context { utc_offset_minutes: Some(-300), ..Context::default() };
        assert_eq!(c.local_hour(2 * HOUR), Some(21));
        assert_eq!(Context::default().local_hour(0), None);
    }

    #[test]
    fn devices() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        assert_eq!(Device::of_user_agent(iphone), Device::Mobile);
        assert_eq!(Device::of_user_agent("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)"), Device::Tablet);
        assert_eq!(Device::of_user_agent("Mozilla/5.0 (Linux; Android 14; SM-X710) Safari/537.36"), Device::Tablet);
        assert_eq!(
            Device::of_user_agent("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36"),
            Device::Mobile
        );
        assert_eq!(Device::of_user_agent("Mozilla/5.0 (compatible; Googlebot/2.1)"), Device::Bot);
        assert_eq!(Device::of_user_agent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120"), Device::Desktop);
    }

    #[test]
    fn gmt_offsets_read_as_minutes_east_of_utc() {
        assert_eq!(parse_gmt_offset("GMT"), Some(0));
        assert_eq!(parse_gmt_offset("GMT+1"), Some(60));
        assert_eq!(parse_gmt_offset("GMT-05:00"), Some(-300));
        assert_eq!(parse_gmt_offset("GMT+05:30"), Some(330));
        assert_eq!(parse_gmt_offset("UTC+1"), None);
        assert_eq!(parse_gmt_offset("GMT*1"), None);
    }
}
