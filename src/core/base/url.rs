//! The parts of a request's URL, read from the runtime's own serialization of it (WHATWG URL, http or https),
//! without parsing it again: the host is already lower case and punycoded, the default port already dropped, and
//! `?` and `#` percent-encoded inside the path. A few lines rather than the `url` crate, whose host parsing and
//! Unicode tables were about 40 KB gzipped of the Worker's Wasm.

use crate::core::base::encoding::percent_decode_query;

/// A serialized absolute URL, split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UrlParts<'a> {
    /// `https`
    pub scheme: &'a str,
    /// `example.com:8443` (the port only when it is not the scheme's default).
    pub host: &'a str,
    /// `/shop/bags`, never empty.
    pub path: &'a str,
    /// What follows `?`, without it; `None` without a `?`.
    pub query: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    /// Splits `href`; `None` when it has no `scheme://`.
    pub fn of(href: &'a str) -> Option<UrlParts<'a>> {
        let (scheme, rest) = href.split_once("://")?;
        let rest = rest.split('#').next().unwrap_or_default();
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        let (host, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, "/"),
        };
        Some(UrlParts { scheme, host, path, query })
    }

    /// `scheme://host[:port]`, as `Origin` headers write it.
    pub fn origin(&self) -> String {
        [self.scheme, "://", self.host].concat()
    }
}

/// The decoded `name=value` pairs of a query string (`application/x-www-form-urlencoded`), in order; a pair
/// without `=` has an empty value, and empty pieces (`a=1&&b=2`) are skipped.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode_query(k), percent_decode_query(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_what_the_runtime_serializes() {
        let u = UrlParts::of("https://shop.example:8443/a%3F%23b/c?x=1&y=%C3%A9#frag").unwrap();
        assert_eq!(
            u,
            UrlParts { scheme: "https", host: "shop.example:8443", path: "/a%3F%23b/c", query: Some("x=1&y=%C3%A9") }
        );
        assert_eq!(u.origin(), "https://shop.example:8443");
        assert_eq!(
            UrlParts::of("http://127.0.0.1/").unwrap(),
            UrlParts { scheme: "http", host: "127.0.0.1", path: "/", query: None }
        );
        assert_eq!(
            UrlParts::of("http://h?q").unwrap(),
            UrlParts { scheme: "http", host: "h", path: "/", query: Some("q") }
        );
        assert_eq!(UrlParts::of("http://h/p?").unwrap().query, Some(""));
        assert_eq!(UrlParts::of("/no/scheme"), None);
    }

    #[test]
    fn decodes_query_pairs() {
        let got: Vec<_> = query_pairs("a=1&&b=x+y%20z&c&d=%C3%A9&a=2&e=%zz").collect();
        let want = [("a", "1"), ("b", "x y z"), ("c", ""), ("d", "é"), ("a", "2"), ("e", "%zz")];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }
}
