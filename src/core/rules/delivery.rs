//! The `delivery` section: the site's origin, the paths the Worker proxies to it, and how long it waits.

use crate::core::base::time::Millis;
use crate::core::rules::compiler::{at, idx, present, Compiler};
use serde_json::Value as J;

/// The compiled `delivery` section: the site's origin, the paths the Worker proxies to it, and how long it waits
/// for the origin's answer to begin.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// `scheme://host[:port]`, lower case, no path.
    pub origin: String,
    pub paths: Vec<PathPattern>,
    /// Milliseconds to wait for the origin's status and headers (`delivery.timeout`, default
    /// `DEFAULT_ORIGIN_TIMEOUT`); then the visitor gets a 504 rather than a request that hangs. The body streams
    /// without a limit once it has begun.
    pub timeout: Millis,
}

/// `delivery.timeout` when the configuration does not say: 10 seconds.
pub const DEFAULT_ORIGIN_TIMEOUT: Millis = 10_000;
/// The longest `delivery.timeout` allowed: a minute.
pub const MAX_ORIGIN_TIMEOUT: Millis = 60_000;

impl Delivery {
    /// Whether the Worker proxies a request for `path` (the URL's path, as the Worker received it).
    pub fn proxies(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p.matches(path))
    }

    /// The origin's URL for a request's path and query: same path, same query, the configured origin.
    pub fn upstream_url(&self, path: &str, query: Option<&str>) -> String {
        match query {
            Some(q) => format!("{}{path}?{q}", self.origin),
            None => format!("{}{path}", self.origin),
        }
    }
}

/// A `delivery.paths` entry: `/about` matches that path only; `/shop/*` matches `/shop` and everything under
/// `/shop/`; `/*` matches every path.
#[derive(Clone, Debug, PartialEq)]
pub enum PathPattern {
    Exact(String),
    /// The directory, without its trailing slash (empty for `/*`).
    Under(String),
}

impl PathPattern {
    /// Parses a pattern, or explains what is wrong with it.
    pub fn parse(s: &str) -> Result<PathPattern, &'static str> {
        if !s.starts_with('/') {
            return Err("a path starts with \"/\", for example \"/shop/*\"");
        }
        if s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'?' | b'#' | b'\\'))
            || !s.is_ascii()
        {
            return Err(
                "a path has no spaces, query, fragment, backslash or non-ASCII characters (percent-encode them)",
            );
        }
        let (base, under) = match s.strip_suffix("/*") {
            Some(base) => (base, true),
            None => (s, false),
        };
        if base.contains('*') {
            return Err("\"*\" is only allowed as the last segment: \"/shop/*\"");
        }
        if base.split('/').any(|seg| seg == "." || seg == "..") {
            return Err("a path has no \".\" or \"..\" segments");
        }
        if base == "/v1" || base.starts_with("/v1/") || base == "/healthz" {
            return Err("/v1/* and /healthz are the Worker's own API and are never proxied");
        }
        Ok(if under { PathPattern::Under(base.to_string()) } else { PathPattern::Exact(base.to_string()) })
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Exact(p) => path == p,
            PathPattern::Under(dir) => {
                path.strip_prefix(dir.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }
}

/// Checks and normalizes `delivery.origin`: `http` or `https`, a host and an optional port, and nothing else
/// (no path, query, fragment or user name), so that the request's path can only ever be appended to it.
pub fn parse_origin(s: &str) -> Result<String, &'static str> {
    const SHAPE: &str = "expected an origin such as \"https://www.example.com\" (http or https, a host and an \
                         optional port; no path, query or user name)";
    let lower = s.to_ascii_lowercase();
    let (scheme, authority) = if let Some(rest) = lower.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Err(SHAPE);
    };
    if authority.is_empty()
        || !authority.is_ascii()
        || authority.bytes().any(|b| {
            b.is_ascii_whitespace() || b.is_ascii_control() || matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\' | b'%')
        })
    {
        return Err(SHAPE);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or(SHAPE)?;
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return Err(SHAPE);
        }
        match after {
            "" => (authority, None),
            p => (&authority[..authority.len() - p.len()], Some(p.strip_prefix(':').ok_or(SHAPE)?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host_ok = host.starts_with('[')
        || (host
            .split('.')
            .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')));
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 10
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    if !host_ok || !port_ok {
        return Err(SHAPE);
    }
    // One spelling per address, as a URL parser writes it, so that comparing it with the Worker's own origin
    // means something: `:08911` is port 8911, and a scheme's default port is left out.
    let port = port.and_then(|p| p.parse::<u16>().ok()).filter(|&p| p != if scheme == "https" { 443 } else { 80 });
    Ok(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

impl Compiler {
    /// `{"origin": "https://www.example.com", "paths": ["/shop/*", "/about"]}`; `paths` defaults to `["/*"]`.
    pub(crate) fn delivery(&mut self, v: &J, path: &str) -> Option<Delivery> {
        let o = self.object(v, path, &["origin", "paths", "timeout"])?;
        let before = self.errors.len();
        let op = at(path, "origin");
        let origin = self.string(o.get("origin"), &op).and_then(|s| match parse_origin(&s) {
            Ok(origin) => Some(origin),
            Err(message) => {
                self.err(&op, message);
                None
            }
        });
        let mut paths = Vec::new();
        match present(o, "paths") {
            None => paths.push(PathPattern::Under(String::new())),
            Some(list) => {
                let pp = at(path, "paths");
                let items = self.array(list, &pp).map(Vec::as_slice).unwrap_or_default();
                if items.is_empty() && list.is_array() {
                    self.err(&pp, "expected at least one path; leave delivery out to proxy nothing");
                }
                for (i, item) in items.iter().enumerate() {
                    let ip = idx(&pp, i);
                    match item.as_str().map(PathPattern::parse) {
                        Some(Ok(p)) => paths.push(p),
                        Some(Err(message)) => self.err(ip, message),
                        None => self.err(ip, "expected a path such as \"/shop/*\""),
                    }
                }
            }
        }
        let timeout = match present(o, "timeout") {
            None => DEFAULT_ORIGIN_TIMEOUT,
            Some(t) => {
                let tp = at(path, "timeout");
                match self.duration(t, &tp) {
                    Some(ms) if ms > MAX_ORIGIN_TIMEOUT => {
                        self.err(&tp, "at most \"60s\": a visitor should not wait longer for a page to begin");
                        DEFAULT_ORIGIN_TIMEOUT
                    }
                    Some(ms) => ms,
                    None => DEFAULT_ORIGIN_TIMEOUT,
                }
            }
        };
        (self.errors.len() == before).then_some(Delivery { origin: origin?, paths, timeout })
    }
}
