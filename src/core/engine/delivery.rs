//! Edge HTML delivery: which requests the Worker proxies to the site's origin, what travels to the origin and
//! back, and the streaming rewriter that fills `data-edgecdp-slot` elements while a page streams through.
//!
//! Everything here is pure: the edge (`edge::delivery`) does the fetching and hands chunks in and out, so the
//! rules and the rewriter are tested natively, split at every byte if need be.

use crate::core::base::encoding::percent_decode_path;

/// The attribute that marks a slot in a page: `<div data-edgecdp-slot="hero">`.
pub const SLOT_ATTRIBUTE: &str = "data-edgecdp-slot";

/// The request header that marks a request the Worker proxied to the origin. A request that arrives carrying it
/// is the Worker calling itself (an origin that resolves to the Worker), and is never proxied again.
pub const HOP_HEADER: &str = "x-edgecdp-hop";

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

/// The prefix of every cookie the Worker sets (`edgecdp_aid`, the visitor's id; `edgecdp_console`, an admin's
/// console session). None of them is the origin's business, and a session cookie in an origin's logs would be an
/// admin session for whoever reads them, so a prefix rule drops every one of them, today's and any added later.
pub const OWN_COOKIE_PREFIX: &str = "edgecdp_";

/// A `Cookie` header without the Worker's own cookies (`OWN_COOKIE_PREFIX`, in any case); `None` when nothing
/// else is left.
pub fn without_own_cookies(header: &str) -> Option<String> {
    let own =
        |name: &str| name.get(..OWN_COOKIE_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(OWN_COOKIE_PREFIX));
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty() && !own(part.split_once('=').map_or(*part, |(k, _)| k.trim())))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Why a request path is refused before it is matched against `delivery.paths` and proxied, if it is. The
/// Worker matches the path as the runtime parsed it, where `..%2f` is one segment; an origin (or a server
/// behind it) may decode it once or twice, or drop `;parameters`, and climb out of the proxied directory
/// (`/shop/..%2f..%2fprivate`, `/shop/%252e%252e/private`, `/shop/..;/private`). So a path whose decoding, done
/// up to three times, shows a dot segment (with or without `;parameters`), an encoded `/` or `\`, a backslash
/// or a control character is refused rather than guessed at.
pub fn refused_path(path: &str) -> Option<&'static str> {
    let mut current = path.to_string();
    for _ in 0..3 {
        let segments = current.split('/');
        for segment in segments {
            let bare = segment.split(';').next().unwrap_or_default();
            if bare == "." || bare == ".." {
                return Some("the path has a \".\" or \"..\" segment (possibly encoded)");
            }
        }
        if current.bytes().any(|b| b == b'\\' || b.is_ascii_control()) {
            return Some("the path has a backslash or a control character (possibly encoded)");
        }
        let lower = current.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Some("the path has an encoded \"/\" or \"\\\"");
        }
        let decoded = percent_decode_path(&current);
        if decoded == current {
            return None;
        }
        current = decoded;
    }
    // Still changing after three decodings: nobody's path is encoded that deeply.
    Some("the path is percent-encoded more than twice")
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

/// A redirect's `Location` that points at the origin, rewritten to a path on the site the visitor asked, so
/// that proxying does not send visitors to the origin's address. The path is relative to the request's own
/// address (RFC 9110 allows it), so the redirect never names a host taken from the request's `Host` header,
/// which a client could forge to make a cached redirect point elsewhere.
pub fn local_location(location: &str, origin: &str) -> Option<String> {
    let rest =
        location.get(..origin.len()).filter(|p| p.eq_ignore_ascii_case(origin)).map(|_| &location[origin.len()..])?;
    match rest.as_bytes().first() {
        None => Some("/".into()),
        Some(b'/') if !rest.starts_with("//") => Some(rest.into()),
        Some(b'?' | b'#') => Some(["/", rest].concat()),
        _ => None,
    }
}

/// Whether a page in charset `label` can be rewritten: a charset the Encoding standard knows whose bytes below
/// 0x80 are ASCII, as HTML rewriting needs. The runtime's rewriter refuses the others, and a label it does not
/// know breaks the page's stream, so such pages go out unfilled.
pub fn ascii_compatible(label: &str) -> bool {
    let label = label.trim().to_ascii_lowercase();
    ASCII_COMPATIBLE.binary_search(&label.as_str()).is_ok()
}

/// Every label the WHATWG Encoding standard gives an ASCII-compatible encoding (all but UTF-16BE, UTF-16LE,
/// ISO-2022-JP and the replacement encoding), sorted for a binary search: 211 labels of 35 encodings.
const ASCII_COMPATIBLE: [&str; 211] = [
    "866",
    "ansi_x3.4-1968",
    "arabic",
    "ascii",
    "asmo-708",
    "big5",
    "big5-hkscs",
    "chinese",
    "cn-big5",
    "cp1250",
    "cp1251",
    "cp1252",
    "cp1253",
    "cp1254",
    "cp1255",
    "cp1256",
    "cp1257",
    "cp1258",
    "cp819",
    "cp866",
    "csbig5",
    "cseuckr",
    "cseucpkdfmtjapanese",
    "csgb2312",
    "csibm866",
    "csiso58gb231280",
    "csiso88596e",
    "csiso88596i",
    "csiso88598e",
    "csiso88598i",
    "csisolatin1",
    "csisolatin2",
    "csisolatin3",
    "csisolatin4",
    "csisolatin5",
    "csisolatin6",
    "csisolatin9",
    "csisolatinarabic",
    "csisolatincyrillic",
    "csisolatingreek",
    "csisolatinhebrew",
    "cskoi8r",
    "csksc56011987",
    "csmacintosh",
    "csshiftjis",
    "cyrillic",
    "dos-874",
    "ecma-114",
    "ecma-118",
    "elot_928",
    "euc-jp",
    "euc-kr",
    "gb18030",
    "gb2312",
    "gb_2312",
    "gb_2312-80",
    "gbk",
    "greek",
    "greek8",
    "hebrew",
    "ibm819",
    "ibm866",
    "iso-8859-1",
    "iso-8859-10",
    "iso-8859-11",
    "iso-8859-13",
    "iso-8859-14",
    "iso-8859-15",
    "iso-8859-16",
    "iso-8859-2",
    "iso-8859-3",
    "iso-8859-4",
    "iso-8859-5",
    "iso-8859-6",
    "iso-8859-6-e",
    "iso-8859-6-i",
    "iso-8859-7",
    "iso-8859-8",
    "iso-8859-8-e",
    "iso-8859-8-i",
    "iso-8859-9",
    "iso-ir-100",
    "iso-ir-101",
    "iso-ir-109",
    "iso-ir-110",
    "iso-ir-126",
    "iso-ir-127",
    "iso-ir-138",
    "iso-ir-144",
    "iso-ir-148",
    "iso-ir-149",
    "iso-ir-157",
    "iso-ir-58",
    "iso8859-1",
    "iso8859-10",
    "iso8859-11",
    "iso8859-13",
    "iso8859-14",
    "iso8859-15",
    "iso8859-2",
    "iso8859-3",
    "iso8859-4",
    "iso8859-5",
    "iso8859-6",
    "iso8859-7",
    "iso8859-8",
    "iso8859-9",
    "iso88591",
    "iso885910",
    "iso885911",
    "iso885913",
    "iso885914",
    "iso885915",
    "iso88592",
    "iso88593",
    "iso88594",
    "iso88595",
    "iso88596",
    "iso88597",
    "iso88598",
    "iso88599",
    "iso_8859-1",
    "iso_8859-15",
    "iso_8859-1:1987",
    "iso_8859-2",
    "iso_8859-2:1987",
    "iso_8859-3",
    "iso_8859-3:1988",
    "iso_8859-4",
    "iso_8859-4:1988",
    "iso_8859-5",
    "iso_8859-5:1988",
    "iso_8859-6",
    "iso_8859-6:1987",
    "iso_8859-7",
    "iso_8859-7:1987",
    "iso_8859-8",
    "iso_8859-8:1988",
    "iso_8859-9",
    "iso_8859-9:1989",
    "koi",
    "koi8",
    "koi8-r",
    "koi8-ru",
    "koi8-u",
    "koi8_r",
    "korean",
    "ks_c_5601-1987",
    "ks_c_5601-1989",
    "ksc5601",
    "ksc_5601",
    "l1",
    "l2",
    "l3",
    "l4",
    "l5",
    "l6",
    "l9",
    "latin1",
    "latin2",
    "latin3",
    "latin4",
    "latin5",
    "latin6",
    "logical",
    "mac",
    "macintosh",
    "ms932",
    "ms_kanji",
    "shift-jis",
    "shift_jis",
    "sjis",
    "sun_eu_greek",
    "tis-620",
    "unicode-1-1-utf-8",
    "unicode11utf8",
    "unicode20utf8",
    "us-ascii",
    "utf-8",
    "utf8",
    "visual",
    "windows-1250",
    "windows-1251",
    "windows-1252",
    "windows-1253",
    "windows-1254",
    "windows-1255",
    "windows-1256",
    "windows-1257",
    "windows-1258",
    "windows-31j",
    "windows-874",
    "windows-949",
    "x-cp1250",
    "x-cp1251",
    "x-cp1252",
    "x-cp1253",
    "x-cp1254",
    "x-cp1255",
    "x-cp1256",
    "x-cp1257",
    "x-cp1258",
    "x-euc-jp",
    "x-gbk",
    "x-mac-cyrillic",
    "x-mac-roman",
    "x-mac-ukrainian",
    "x-sjis",
    "x-unicode20utf8",
    "x-user-defined",
    "x-x-big5",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::delivery::*;

    #[test]
    fn charsets_that_can_be_rewritten() {
        assert!(ASCII_COMPATIBLE.windows(2).all(|w| w[0] < w[1]), "sorted, for the binary search");
        for ok in ["utf-8", "UTF-8", "iso-8859-1", "windows-1252", "shift_jis", " EUC-KR "] {
            assert!(ascii_compatible(ok), "{ok}");
        }
        for not in ["utf-16", "UTF-16LE", "utf-16be", "iso-2022-jp", "replacement", "hz-gb-2312", "x-no-such", ""] {
            assert!(!ascii_compatible(not), "{not}");
        }
    }

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
        assert_eq!(parse_origin("http://127.0.0.1:08911").unwrap(), "http://127.0.0.1:8911", "leading zeros");
        assert_eq!(parse_origin("https://shop.example:443").unwrap(), "https://shop.example", "default port");
        assert_eq!(parse_origin("http://shop.example:80").unwrap(), "http://shop.example");
        assert_eq!(parse_origin("http://shop.example:443").unwrap(), "http://shop.example:443");
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
        let d = Delivery {
            origin: "https://o.example".into(),
            paths: vec![PathPattern::parse("/*").unwrap()],
            timeout: DEFAULT_ORIGIN_TIMEOUT,
        };
        assert_eq!(d.upstream_url("/a/b", Some("x=1&y")), "https://o.example/a/b?x=1&y");
        assert_eq!(d.upstream_url("/", None), "https://o.example/");
    }

    /// Every spelling of a way out of a proxied directory that an origin might decode is refused; ordinary
    /// paths, dots inside names and encoded characters that are not separators pass.
    #[test]
    fn paths_that_climb_out_are_refused() {
        for bad in [
            "/shop/../private",
            "/shop/./x",
            "/shop/..%2f..%2fprivate",
            "/shop/..%2F..%2Fprivate",
            "/shop/%2e%2e/private",
            "/shop/%2E%2E%2Fprivate",
            "/shop/.%2e/private",
            "/shop/%252e%252e%252fprivate",
            "/shop/%25252e%25252e/private",
            "/shop/..;/private",
            "/shop/..;jsessionid=1/private",
            "/shop/%2e%2e;x/private",
            "/shop/..\\private",
            "/shop/..%5cprivate",
            "/shop/a%00b",
            "/shop/a%0ab",
            "/shop/..",
            "/shop/%252525252e",
            // An encoded separator alone: servers disagree on whether it separates, so it is not guessed at.
            "/shop/a%2fb",
            "/shop/a%5Cb",
        ] {
            assert!(refused_path(bad).is_some(), "{bad} should be refused");
        }
        for good in [
            "/",
            "/shop",
            "/shop/",
            "/shop/a.b",
            "/shop/..a/b",
            "/shop/a..",
            "/shop/caf%C3%A9",
            "/shop/a%20b",
            "/shop/;x",
        ] {
            assert_eq!(refused_path(good), None, "{good} should pass");
        }
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

        for (header, kept) in [
            ("a=1; edgecdp_aid=x.y;b=2", Some("a=1; b=2")),
            ("edgecdp_aid=x.y", None),
            ("edgecdp_console=s3ss10n; theme=dark", Some("theme=dark")),
            ("EDGECDP_Console=s; x=1", Some("x=1")),
            ("edgecdp_future=1; edgecdp_aid=2", None),
            ("myedgecdp_aid=1; edgecdp=2", Some("myedgecdp_aid=1; edgecdp=2")),
        ] {
            assert_eq!(without_own_cookies(header).as_deref(), kept, "{header}");
        }

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

        let o = "http://127.0.0.1:9000";
        assert_eq!(local_location("http://127.0.0.1:9000/shop/x?y", o).as_deref(), Some("/shop/x?y"));
        assert_eq!(local_location("http://127.0.0.1:9000", o).as_deref(), Some("/"));
        assert_eq!(local_location("http://127.0.0.1:9000?q", o).as_deref(), Some("/?q"));
        assert_eq!(local_location("http://127.0.0.1:9000//evil.example/", o), None, "never protocol-relative");
        assert_eq!(local_location("http://127.0.0.1:90001/", o), None);
        assert_eq!(local_location("https://elsewhere.example/", o), None);
        assert_eq!(local_location("/relative", o), None);
    }
}
