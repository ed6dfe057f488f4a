//! Edge HTML delivery: which requests the Worker proxies to the site's origin, what travels to the origin and
//! back, and the streaming rewriter that fills `data-edgecdp-slot` elements while a page streams through.
//!
//! Everything here is pure: the edge (`edge::delivery`) does the fetching and hands chunks in and out, so the
//! rules and the rewriter are tested natively, split at every byte if need be.

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

#[cfg(feature = "delivery")]
pub use filler::SlotFiller;

#[cfg(feature = "delivery")]
mod filler {
    use super::SLOT_ATTRIBUTE;
    use lol_html::html_content::ContentType;
    use lol_html::{element, AsciiCompatibleEncoding, HtmlRewriter, MemorySettings, OutputSink, Settings};
    use std::cell::RefCell;
    use std::collections::{BTreeMap, BTreeSet};
    use std::rc::Rc;

    /// The most the rewriter may hold while it parses (a tag or an attribute split across chunks). Past it, the
    /// rest of the page passes through unchanged rather than break.
    const MAX_PARSER_MEMORY: usize = 4 << 20;

    struct Sink(Rc<RefCell<Vec<u8>>>);

    impl OutputSink for Sink {
        fn handle_chunk(&mut self, chunk: &[u8]) {
            self.0.borrow_mut().extend_from_slice(chunk);
        }
    }

    /// Fills the slots of one HTML document as it streams: chunks in, chunks out, in order. The inner content of
    /// every element whose `data-edgecdp-slot` names a slot in `slots` becomes that slot's HTML; everything else
    /// (elements of other slots too) passes through byte for byte.
    pub struct SlotFiller {
        /// `None` once the rewriter gave up (the memory limit) or the document ended.
        rewriter: Option<HtmlRewriter<'static, Sink>>,
        out: Rc<RefCell<Vec<u8>>>,
        /// The slots the document really showed, so that only those count as served (caps, experiments).
        filled: Rc<RefCell<BTreeSet<String>>>,
        bailed_out: bool,
    }

    impl std::fmt::Debug for SlotFiller {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("SlotFiller").field("bailed_out", &self.bailed_out).finish_non_exhaustive()
        }
    }

    impl SlotFiller {
        /// A filler for a document in `charset` (UTF-8 when the response names none). `None` when the charset
        /// is unknown or not ASCII-compatible (UTF-16): such a page passes through unchanged.
        pub fn new(slots: BTreeMap<String, String>, charset: Option<&str>) -> Option<SlotFiller> {
            let encoding = match charset {
                None => AsciiCompatibleEncoding::utf_8(),
                Some(label) => {
                    AsciiCompatibleEncoding::new(encoding_rs::Encoding::for_label_no_replacement(label.as_bytes())?)?
                }
            };
            let out = Rc::new(RefCell::new(Vec::new()));
            let filled = Rc::new(RefCell::new(BTreeSet::new()));
            let seen = filled.clone();
            let selector = format!("[{SLOT_ATTRIBUTE}]");
            let settings = Settings::new()
                .with_encoding(encoding)
                // Not strict: strict mode stops at rare ambiguous markup (`<select><xmp>`) and would lose the
                // rest of the page; a slot inside such markup is at worst left unfilled.
                .with_strict(false)
                // A page that names its charset only in `<meta charset>` is still decoded and written correctly.
                .with_adjust_charset_on_meta_tag(charset.is_none())
                .with_memory_settings(
                    MemorySettings::new()
                        .with_max_allowed_memory_usage(MAX_PARSER_MEMORY)
                        .with_graceful_bail_out_on_memory_limit_exceeded(true),
                )
                .append_element_content_handler(element!(selector, move |el| {
                    let name = el.get_attribute(SLOT_ATTRIBUTE).unwrap_or_default();
                    if let Some((name, html)) = slots.get_key_value(name.trim()) {
                        el.set_inner_content(html, ContentType::Html);
                        if !seen.borrow().contains(name) {
                            seen.borrow_mut().insert(name.clone());
                        }
                    }
                    Ok(())
                }));
            let rewriter = HtmlRewriter::new(settings, Sink(out.clone()));
            Some(SlotFiller { rewriter: Some(rewriter), out, filled, bailed_out: false })
        }

        /// Takes the next chunk of the origin's body; answers what can be sent on so far (possibly nothing,
        /// while a tag is split across chunks).
        pub fn write(&mut self, chunk: &[u8]) -> Vec<u8> {
            match self.rewriter.as_mut() {
                Some(r) => {
                    if r.write(chunk).is_err() {
                        // A graceful bail-out has already written the unparsed bytes to the sink as they were;
                        // the rewriter must not be used again.
                        self.rewriter = None;
                        self.bailed_out = true;
                    }
                    std::mem::take(&mut *self.out.borrow_mut())
                }
                None => chunk.to_vec(),
            }
        }

        /// Ends the document; answers the last bytes.
        pub fn end(&mut self) -> Vec<u8> {
            if let Some(r) = self.rewriter.take() {
                if r.end().is_err() {
                    self.bailed_out = true;
                }
            }
            std::mem::take(&mut *self.out.borrow_mut())
        }

        /// The names of the slots filled so far.
        pub fn filled(&self) -> BTreeSet<String> {
            self.filled.borrow().clone()
        }

        /// Whether the rewriter gave up and the rest of the page passed through unchanged.
        pub fn bailed_out(&self) -> bool {
            self.bailed_out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::delivery::*;
    use std::collections::BTreeMap;

    fn fill(slots: &[(&str, &str)], chunks: &[&[u8]]) -> Vec<u8> {
        fill_and_tell(slots, chunks).0
    }

    /// The output, and the slots the filler says it filled.
    fn fill_and_tell(slots: &[(&str, &str)], chunks: &[&[u8]]) -> (Vec<u8>, Vec<String>) {
        let slots: BTreeMap<String, String> = slots.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut f = SlotFiller::new(slots, None).expect("utf-8 is supported");
        let mut out = Vec::new();
        for c in chunks {
            out.extend(f.write(c));
        }
        out.extend(f.end());
        (out, f.filled().into_iter().collect())
    }

    #[test]
    fn fills_known_slots_and_leaves_the_rest_byte_for_byte() {
        let page = br#"<!doctype html><html><body><div class="x" data-edgecdp-slot="hero"><p>origin</p></div>
<section data-edgecdp-slot="nope">keep <b>me</b></section><DIV DATA-EDGECDP-SLOT='hero'></DIV><img data-edgecdp-slot="hero"></body></html>"#;
        let got = String::from_utf8(fill(&[("hero", "<h2>Hi &amp; welcome</h2>"), ("side", "x")], &[page])).unwrap();
        assert_eq!(
            got,
            r#"<!doctype html><html><body><div class="x" data-edgecdp-slot="hero"><h2>Hi &amp; welcome</h2></div>
<section data-edgecdp-slot="nope">keep <b>me</b></section><DIV DATA-EDGECDP-SLOT='hero'><h2>Hi &amp; welcome</h2></DIV><img data-edgecdp-slot="hero"></body></html>"#
        );
    }

    #[test]
    fn tells_which_slots_the_page_showed() {
        let slots = [("hero", "H"), ("side", "S"), ("footer", "F")];
        let page = b"<div data-edgecdp-slot=hero></div><p data-edgecdp-slot=side></p><i data-edgecdp-slot=hero></i>";
        assert_eq!(fill_and_tell(&slots, &[page]).1, ["hero", "side"]);
        assert!(fill_and_tell(&slots, &[b"<p>no slots</p><div data-edgecdp-slot=other></div>"]).1.is_empty());
    }

    #[test]
    fn a_page_without_slots_is_unchanged_even_when_odd() {
        let page: &[u8] = b"<p>caf\xc3\xa9 <!-- <div data-edgecdp-slot=\"hero\"> --> <b>unclosed <script>if (a<b) x='</div>'</script>\r\n\x00";
        assert_eq!(fill(&[("hero", "X")], &[page]), page);
    }

    #[test]
    fn every_split_point_gives_the_same_output() {
        let page = "<html><body><h1>é</h1><div data-edgecdp-slot=\"hero\">old <i>stuff</i></div><p>after</p>\
                    <span data-edgecdp-slot=\"side\">s</span></body></html>";
        let slots = [("hero", "<h2>new</h2>"), ("side", "ø")];
        let whole = fill(&slots, &[page.as_bytes()]);
        assert!(String::from_utf8(whole.clone())
            .unwrap()
            .contains("<div data-edgecdp-slot=\"hero\"><h2>new</h2></div>"));
        for i in 0..=page.len() {
            for j in i..=page.len() {
                let b = page.as_bytes();
                assert_eq!(fill(&slots, &[&b[..i], &b[i..j], &b[j..]]), whole, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn other_charsets_are_written_in_their_own_encoding() {
        let slots: BTreeMap<String, String> = [("hero".to_string(), "é".to_string())].into_iter().collect();
        let mut f = SlotFiller::new(slots.clone(), Some("iso-8859-1")).unwrap();
        let mut out = f.write(b"<div data-edgecdp-slot=hero>\xe9</div>");
        out.extend(f.end());
        assert_eq!(out, b"<div data-edgecdp-slot=hero>\xe9</div>");
        assert!(SlotFiller::new(slots.clone(), Some("utf-16le")).is_none());
        assert!(SlotFiller::new(slots, Some("no-such-charset")).is_none());
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
