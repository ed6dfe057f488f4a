//! Edge HTML delivery: which requests the Worker proxies to the site's origin, and what travels to the origin
//! and back.
//!
//! Everything here is pure: the edge does the fetching, so the rules are tested natively.

/// The attribute that marks a slot in a page: `<div data-edgecdp-slot="hero">`.
pub const SLOT_ATTRIBUTE: &str = "data-edgecdp-slot";

/// The compiled `delivery` section: the site's origin, and the paths the Worker proxies to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// `scheme://host[:port]`, lower case, no path.
    pub origin: String,
    pub paths: Vec<PathPattern>,
}

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
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    if !host_ok || !port_ok {
        return Err(SHAPE);
    }
    Ok(format!("{scheme}://{authority}"))
}

/// Whether a request header travels to the origin. Hop-by-hop headers (RFC 9110, section 7.6.1) describe one
/// connection, not the request; `host` and `content-length` are set by the runtime for the new request;
/// `cf-*` headers are Cloudflare's own facts about this request, which the runtime sets afresh on a subrequest;
/// `x-edgecdp-*` headers talk to the Worker only. `connection` may name further hop-by-hop headers.
pub fn forwards_request_header(name: &str, connection: Option<&str>) -> bool {
    let name = name.to_ascii_lowercase();
    const DROPPED: [&str; 11] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    ];
    !(DROPPED.contains(&name.as_str())
        || name.starts_with("cf-")
        || name.starts_with("x-edgecdp-")
        || connection.is_some_and(|c| c.split(',').any(|t| t.trim().eq_ignore_ascii_case(&name))))
}

/// A `Cookie` header without the cookie `name` (the Worker's own id cookie, which the origin has no use for);
/// `None` when nothing else is left.
pub fn without_cookie(header: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty() && part.split_once('=').map_or(*part, |(k, _)| k.trim()) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// The media type of a `Content-Type` value, lower case, without parameters.
fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Whether a response is an HTML page (`text/html`, whatever its parameters).
pub fn is_html(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| essence(c) == "text/html")
}

/// The `charset` parameter of a `Content-Type` value, if any.
pub fn charset(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim().eq_ignore_ascii_case("charset").then(|| v.trim().trim_matches('"'))
    })
}

/// Whether the body arrives as the runtime hands it over in plain bytes. A Worker's `fetch` decodes `gzip` and
/// `br` itself (and encodes the answer again according to the same header); any other coding is opaque, and a
/// page in it is passed through rather than rewritten.
pub fn readable_encoding(content_encoding: Option<&str>) -> bool {
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()) {
        None => true,
        Some(e) => matches!(e.as_str(), "" | "identity" | "gzip" | "x-gzip" | "br"),
    }
}

/// `Cache-Control` for a personalized page: the origin's directives, made `private` (shared caches must not keep
/// one visitor's page for another), without the directives that only speak to shared caches.
pub fn private_cache_control(origin: Option<&str>) -> String {
    let mut out = vec!["private".to_string()];
    for d in origin.unwrap_or_default().split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let name = d.split('=').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !matches!(name.as_str(), "public" | "private" | "s-maxage" | "proxy-revalidate") {
            out.push(d.to_string());
        }
    }
    out.join(", ")
}

/// A `Vary` value that also names `token` (once).
pub fn vary_with(existing: Option<&str>, token: &str) -> String {
    let existing = existing.unwrap_or_default().trim();
    if existing == "*" || existing.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)) {
        existing.to_string()
    } else if existing.is_empty() {
        token.to_string()
    } else {
        format!("{existing}, {token}")
    }
}

/// A redirect's `Location` that points at the origin, rewritten to point at the site the visitor asked
/// (`own`, `scheme://host[:port]`), so that proxying does not send visitors to the origin's address.
pub fn local_location(location: &str, origin: &str, own: &str) -> Option<String> {
    let rest =
        location.get(..origin.len()).filter(|p| p.eq_ignore_ascii_case(origin)).map(|_| &location[origin.len()..])?;
    (rest.is_empty() || rest.starts_with(['/', '?', '#'])).then(|| format!("{own}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        let p = |s| PathPattern::parse(s).unwrap();
        assert!(p("/shop/*").matches("/shop"));
        assert!(p("/shop/*").matches("/shop/"));
        assert!(p("/shop/*").matches("/shop/bags/1"));
        assert!(!p("/shop/*").matches("/shopping"));
        assert!(p("/*").matches("/"));
        assert!(p("/*").matches("/anything/at/all"));
        assert!(p("/about").matches("/about"));
        assert!(!p("/about").matches("/about/team"));
        for bad in ["shop/*", "/shop*", "/a/*/b", "/a/../b", "/a?x=1", "/a b", "/v1/*", "/v1", "/healthz", "/é"] {
            assert!(PathPattern::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn origins() {
        assert_eq!(parse_origin("https://www.Example.com").unwrap(), "https://www.example.com");
        assert_eq!(parse_origin("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(parse_origin("http://[::1]:8080").unwrap(), "http://[::1]:8080");
        for bad in [
            "ftp://example.com",
            "example.com",
            "https://",
            "https://example.com/",
            "https://example.com/shop",
            "https://example.com?x",
            "https://example.com#x",
            "https://user@example.com",
            "https://evil.com\\@example.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com:",
            "https://exa mple.com",
            "https://exa..mple.com",
            "https://ex%41mple.com",
            "http://[::1",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad} should be refused");
        }
        let d = Delivery { origin: "https://o.example".into(), paths: vec![PathPattern::parse("/*").unwrap()] };
        assert_eq!(d.upstream_url("/a/b", Some("x=1&y")), "https://o.example/a/b?x=1&y");
        assert_eq!(d.upstream_url("/", None), "https://o.example/");
    }

    #[test]
    fn header_rules() {
        assert!(forwards_request_header("Accept-Language", None));
        assert!(forwards_request_header("cookie", None));
        for dropped in [
            "Connection",
            "keep-alive",
            "TE",
            "Transfer-Encoding",
            "upgrade",
            "Host",
            "Content-Length",
            "CF-Connecting-IP",
            "x-edgecdp-country",
            "proxy-authorization",
        ] {
            assert!(!forwards_request_header(dropped, None), "{dropped}");
        }
        assert!(!forwards_request_header("X-Secret-Hop", Some("close, x-secret-hop")));

        assert_eq!(without_cookie("a=1; edgecdp_aid=x.y;b=2", "edgecdp_aid").as_deref(), Some("a=1; b=2"));
        assert_eq!(without_cookie("edgecdp_aid=x.y", "edgecdp_aid"), None);
        assert_eq!(without_cookie("edgecdp_aid_other=1", "edgecdp_aid").as_deref(), Some("edgecdp_aid_other=1"));

        assert!(is_html(Some("text/html; charset=utf-8")));
        assert!(is_html(Some("Text/HTML")));
        assert!(!is_html(Some("application/xhtml+xml")) && !is_html(Some("text/plain")) && !is_html(None));
        assert_eq!(charset("text/html; Charset=\"ISO-8859-1\""), Some("ISO-8859-1"));
        assert_eq!(charset("text/html"), None);
        assert!(readable_encoding(None) && readable_encoding(Some("gzip")) && readable_encoding(Some("br")));
        assert!(!readable_encoding(Some("zstd")) && !readable_encoding(Some("deflate")));

        assert_eq!(private_cache_control(None), "private");
        assert_eq!(
            private_cache_control(Some("public, max-age=60, s-maxage=3600, stale-while-revalidate=30")),
            "private, max-age=60, stale-while-revalidate=30"
        );
        assert_eq!(private_cache_control(Some("no-store")), "private, no-store");
        assert_eq!(vary_with(None, "Cookie"), "Cookie");
        assert_eq!(vary_with(Some("Accept-Encoding"), "Cookie"), "Accept-Encoding, Cookie");
        assert_eq!(vary_with(Some("accept-encoding, cookie"), "Cookie"), "accept-encoding, cookie");

        let (o, own) = ("http://127.0.0.1:9000", "https://shop.example");
        assert_eq!(
            local_location("http://127.0.0.1:9000/shop/x?y", o, own).as_deref(),
            Some("https://shop.example/shop/x?y")
        );
        assert_eq!(local_location("http://127.0.0.1:90001/", o, own), None);
        assert_eq!(local_location("https://elsewhere.example/", o, own), None);
        assert_eq!(local_location("/relative", o, own), None);
    }
}
