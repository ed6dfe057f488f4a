//! Content templates: HTML with `{{traits.name}}` placeholders, compiled once. Compiling scans the template's
//! HTML to learn where each placeholder sits (element text, a quoted attribute value, the start or the rest of a
//! URL), so that rendering escapes each value for its place; places where no escaping makes a value safe (script,
//! style, comments, unquoted values, event handlers, tag and attribute names) are refused with a message.

use crate::core::base::value::Value;
use crate::core::model::profile::Profile;
use crate::core::rules::compiler::Compiler;
use crate::core::rules::scanner::{shown, HtmlContext, Scanner, SAFE_SCHEMES};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;
/// One piece of a compiled template.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Part {
    Text(String),
    /// `{{traits.name}}` or `{{traits.name|default}}`: the trait's value, escaped for where it sits in the HTML
    /// (`context`); the default (escaped the same way) or nothing when the profile lacks it.
    Trait {
        name: String,
        default: String,
        context: HtmlContext,
    },
}

/// Content with placeholders, compiled once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template(pub Vec<Part>);

impl Template {
    /// Compiles `text`, or explains what is wrong with it. Each placeholder's place in the HTML is found here,
    /// and a placeholder where no escaping makes a visitor's value safe (a script, an event handler, an unquoted
    /// attribute, a tag name, ...) is refused, so the site's owner learns of it when saving the configuration.
    /// The template's own HTML around the placeholders is the owner's and is kept as written.
    pub fn compile(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut html = Scanner::default();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            html.literal(&rest[..start])?;
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| "a {{ placeholder is not closed with }}".to_string())?;
            let inner = &after[..end];
            let (name, default) = match inner.split_once('|') {
                Some((n, d)) => (n.trim(), d.trim()),
                None => (inner.trim(), ""),
            };
            match name.strip_prefix("traits.") {
                Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => {
                    let context = html.placeholder(t)?;
                    // The owner wrote the default, so an unsafe one is a mistake to report rather than to hide.
                    if context == HtmlContext::UrlStart && !url_is_safe(default) {
                        return Err(format!(
                            "the default of {} is a URL whose scheme is not http, https, mailto or tel",
                            shown(t)
                        ));
                    }
                    parts.push(Part::Trait { name: t.to_string(), default: default.to_string(), context })
                }
                _ => {
                    return Err(format!(
                        "unknown placeholder {{{{{name}}}}}; expected {{{{traits.<name>}}}} or {{{{traits.<name>|default}}}}"
                    ))
                }
            }
            rest = &after[end + 2..];
        }
        html.literal(rest)?;
        html.finish()?;
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// The traits the template reads.
    pub fn trait_names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Part::Trait { name, .. } => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    pub fn render(&self, profile: Option<&Profile>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Trait { name, default, context } => {
                    let value = profile.and_then(|p| p.traits.get(name)).map(|t| display(&t.value));
                    let text = value.as_deref().filter(|v| !v.is_empty()).unwrap_or(default);
                    match context {
                        HtmlContext::Text | HtmlContext::Attribute => escape_html_into(text, &mut out),
                        HtmlContext::UrlStart => {
                            escape_html_into(if url_is_safe(text) { text } else { INVALID_URL }, &mut out)
                        }
                        HtmlContext::UrlPart => percent_encode_into(text, &mut out),
                    }
                }
            }
        }
        out
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Array(_) | Value::Object(_) => v.to_json().to_string(),
    }
}

/// Escapes the five characters that matter in HTML text and attribute values.
pub fn escape_html_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// What an unsafe URL becomes: a URL that every browser accepts and that goes nowhere, rather than an empty
/// value, which would link to the page itself. Someone reading the page's HTML can tell what happened.
const INVALID_URL: &str = "about:invalid";

/// Whether `url` is relative or has one of the safe schemes, read the way the WHATWG URL parser reads it: leading
/// C0 controls and spaces are dropped, tabs and newlines anywhere are ignored (so `java\tscript:` is
/// `javascript:`), the scheme is an ASCII letter and then letters, digits, `+`, `-` or `.` up to a `:`, compared
/// without regard to case. Anything else before a `:` means the URL has no scheme and is relative. The value is
/// written into a quoted attribute HTML-escaped, so the browser decodes it back to exactly this text.
fn url_is_safe(url: &str) -> bool {
    let chars = url.trim_start_matches(|c: char| c <= ' ').chars().filter(|c| !matches!(c, '\t' | '\n' | '\r'));
    let mut scheme = [0u8; 6];
    for (i, c) in chars.enumerate() {
        if c == ':' && i > 0 {
            return SAFE_SCHEMES.iter().any(|s| scheme.get(..i) == Some(s.as_bytes()));
        }
        if !(c.is_ascii_alphabetic() || i > 0 && (c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))) {
            return true;
        }
        // A scheme longer than any safe one is remembered only by its length, which `get` above then refuses.
        if let Some(b) = scheme.get_mut(i) {
            *b = c.to_ascii_lowercase() as u8;
        }
    }
    true
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986: letters, digits, `-`, `.`, `_`, `~`), as
/// `encodeURIComponent` does and stricter: the value cannot add a `:`, `/`, `?`, `#`, `&` or quote, so it can
/// neither change the URL's scheme, path or parameters nor leave the attribute. The output needs no HTML escaping.
fn percent_encode_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

impl Compiler {
    pub(crate) fn template(&mut self, v: Option<&J>, path: &str) -> Option<Template> {
        let text = match v {
            Some(J::String(s)) => s,
            None | Some(J::Null) => {
                self.err(path, "is required");
                return None;
            }
            Some(_) => {
                self.err(path, "expected a string of HTML");
                return None;
            }
        };
        match Template::compile(text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::scanner::URL_ATTRIBUTES;

    #[test]
    fn templates_escape_trait_values() {
        let t = Template::compile("<h2>Hi {{ traits.firstName }}!</h2>").unwrap();
        let mut p = Profile::new("p".into(), 0);
        p.traits.insert(
            "firstName".into(),
            crate::core::model::profile::TraitEntry { value: Value::String("<script>x</script>".into()), at: 0 },
        );
        assert_eq!(t.render(Some(&p)), "<h2>Hi &lt;script&gt;x&lt;/script&gt;!</h2>");
        assert_eq!(t.render(None), "<h2>Hi !</h2>");
        let t = Template::compile("Hi {{traits.firstName | there & <you>}}").unwrap();
        assert_eq!(t.render(None), "Hi there &amp; &lt;you&gt;");
        assert_eq!(t.render(Some(&p)), "Hi &lt;script&gt;x&lt;/script&gt;");
    }

    #[test]
    fn template_errors() {
        assert!(Template::compile("{{traits.x").unwrap_err().contains("not closed"));
        assert!(Template::compile("{{profile.email}}").unwrap_err().contains("unknown placeholder"));
        assert_eq!(Template::compile("plain").unwrap(), Template(vec![Part::Text("plain".into())]));
    }

    fn with_x(value: &str) -> Profile {
        let mut p = Profile::new("p".into(), 0);
        p.traits
            .insert("x".into(), crate::core::model::profile::TraitEntry { value: Value::String(value.into()), at: 0 });
        p
    }

    /// Every attribute that holds one URL, written out here apart from `URL_ATTRIBUTES`: a `javascript:` value in
    /// any of them renders as `about:invalid`, so dropping one from the list fails this row, not a visitor.
    #[test]
    fn every_url_attribute_refuses_a_script_url() {
        let attributes = [
            ("a", "href"),
            ("img", "src"),
            ("form", "action"),
            ("button", "formaction"),
            ("input", "formaction"),
            ("video", "poster"),
            ("blockquote", "cite"),
            ("td", "background"),
            ("a", "data"),
            ("img", "longdesc"),
            ("a", "codebase"),
            ("html", "manifest"),
            ("command", "icon"),
            ("img", "lowsrc"),
            ("img", "dynsrc"),
            ("a", "xlink:href"),
            ("button", "FormAction"),
        ];
        for (tag, attribute) in attributes {
            let t = Template::compile(&format!(r#"<{tag} {attribute}="{{{{traits.x}}}}">"#)).unwrap();
            for bad in ["javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,<script>x</script>"] {
                assert_eq!(
                    t.render(Some(&with_x(bad))),
                    format!(r#"<{tag} {attribute}="about:invalid">"#),
                    "{tag} {attribute} with {bad:?}"
                );
            }
            assert_eq!(t.render(Some(&with_x("/ok"))), format!(r#"<{tag} {attribute}="/ok">"#), "{tag} {attribute}");
        }
        assert_eq!(URL_ATTRIBUTES.len(), 15, "a new URL attribute gets its row above");
    }

    #[test]
    fn values_are_escaped_for_where_they_sit() {
        // (template, the value of traits.x, what renders)
        let cases = [
            // Links: a value that starts the URL keeps only a safe scheme.
            (r#"<a href="{{traits.x}}">"#, "javascript:alert(1)", r#"<a href="about:invalid">"#),
            (r#"<a href="{{traits.x}}">"#, "JaVaScRiPt:alert(1)", r#"<a href="about:invalid">"#),
            (r#"<a href="{{traits.x}}">"#, " javascript:alert(1)", r#"<a href="about:invalid">"#),
            (r#"<a href="{{traits.x}}">"#, "\n\tjavascript:alert(1)", r#"<a href="about:invalid">"#),
            (r#"<a href="{{traits.x}}">"#, "\u{1}javascript:alert(1)", r#"<a href="about:invalid">"#),
            (r#"<a href="{{traits.x}}">"#, "java\tscript:alert(1)", r#"<a href="about:invalid">"#),
            (r#"<a href="{{traits.x}}">"#, "java\nscript\r:alert(1)", r#"<a href="about:invalid">"#),
            (r#"<a href="{{traits.x}}">"#, "data:text/html,<script>alert(1)</script>", r#"<a href="about:invalid">"#),
            (r#"<a href="{{traits.x}}">"#, "vbscript:msgbox(1)", r#"<a href="about:invalid">"#),
            (r#"<a href="{{traits.x}}">"#, "httpsx:y", r#"<a href="about:invalid">"#),
            (r#"<a HREF='{{traits.x}}'>"#, "javascript:alert(1)", "<a HREF='about:invalid'>"),
            (r#"<a href="{{traits.x}}">"#, "https://x/y?a=1&b=2", r#"<a href="https://x/y?a=1&amp;b=2">"#),
            (r#"<a href="{{traits.x}}">"#, "HTTP://X/", r#"<a href="HTTP://X/">"#),
            (r#"<a href="{{traits.x}}">"#, "/path", r#"<a href="/path">"#),
            (r#"<a href="{{traits.x}}">"#, "page.html", r#"<a href="page.html">"#),
            (r#"<a href="{{traits.x}}">"#, "mailto:ada@example.com", r#"<a href="mailto:ada@example.com">"#),
            (r#"<a href="{{traits.x}}">"#, "tel:+49 30 1234", r#"<a href="tel:+49 30 1234">"#),
            // No scheme: a space is not a scheme character, so this is a relative path, not a javascript: URL.
            (r#"<a href="{{traits.x}}">"#, "java script:x", r#"<a href="java script:x">"#),
            (
                r#"<a href="{{traits.x}}">"#,
                r#"" onmouseover="alert(1)"#,
                r#"<a href="&quot; onmouseover=&quot;alert(1)">"#,
            ),
            (
                r#"<img src="{{traits.x}}?w=64">"#,
                "https://cdn.example/a.png",
                r#"<img src="https://cdn.example/a.png?w=64">"#,
            ),
            (r#"<a href="  {{traits.x}}#top">"#, "javascript", r#"<a href="  javascript#top">"#),
            (r#"<form action="{{traits.x}}">"#, "javascript:alert(1)", r#"<form action="about:invalid">"#),
            // Later in a URL: percent-encoded, so it can change neither the scheme nor the parameters.
            (r#"<a href="/p?q={{traits.x}}">"#, "a b&c=d\"'<>", r#"<a href="/p?q=a%20b%26c%3Dd%22%27%3C%3E">"#),
            (r#"<a href="/p?q={{traits.x}}">"#, "javascript:alert(1)", r#"<a href="/p?q=javascript%3Aalert%281%29">"#),
            (
                r#"<a href="https://shop.example/u/{{traits.x}}">"#,
                "../admin",
                r#"<a href="https://shop.example/u/..%2Fadmin">"#,
            ),
            (r#"<a href="mailto:{{traits.x}}">"#, "ada@example.com", r#"<a href="mailto:ada%40example.com">"#),
            (r##"<a href="#{{traits.x}}">"##, "grüße-1_2.3~", r##"<a href="#gr%C3%BC%C3%9Fe-1_2.3~">"##),
            // Quoted values of other attributes, in either quote.
            (r#"<img alt="{{traits.x}}">"#, r#"x" onerror="alert(1)"#, r#"<img alt="x&quot; onerror=&quot;alert(1)">"#),
            ("<img alt='{{traits.x}}'>", "x' onerror='alert(1)", "<img alt='x&#39; onerror=&#39;alert(1)'>"),
            (r#"<p title=">{{traits.x}}">"#, "<b>", r#"<p title=">&lt;b&gt;">"#),
            (
                r#"<div data-name="{{traits.x}}" class="a">"#,
                "javascript:x",
                r#"<div data-name="javascript:x" class="a">"#,
            ),
            // Text, including the text of <textarea> and <title>, which only their own end tag ends.
            (
                "<textarea>{{traits.x}}</textarea>",
                "</textarea><script>alert(1)</script>",
                "<textarea>&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;</textarea>",
            ),
            ("<TITLE>{{traits.x}}</title>", "a & b", "<TITLE>a &amp; b</title>"),
            ("<textarea></textareax>{{traits.x}}</textarea>", "<", "<textarea></textareax>&lt;</textarea>"),
            // Text after markup that is read to its real end.
            ("<!-- note -->{{traits.x}}", "<", "<!-- note -->&lt;"),
            ("<!-->{{traits.x}}", "<", "<!-->&lt;"),
            ("<!--x--!>{{traits.x}}", "<", "<!--x--!>&lt;"),
            ("<!DOCTYPE html><br/>{{traits.x}}", "<", "<!DOCTYPE html><br/>&lt;"),
            ("a < b </> {{traits.x}}", "<", "a < b </> &lt;"),
            (
                r#"<script>if (a < b) { s = "</p>"; }</script>{{traits.x}}"#,
                "<",
                r#"<script>if (a < b) { s = "</p>"; }</script>&lt;"#,
            ),
            (
                r#"<style>p::after { content: "<b>" }</style><p>{{traits.x}}</p>"#,
                "<",
                r#"<style>p::after { content: "<b>" }</style><p>&lt;</p>"#,
            ),
            ("<script></script foo=\">\">{{traits.x}}", "<", "<script></script foo=\">\">&lt;"),
        ];
        for (template, value, want) in cases {
            let t = Template::compile(template).unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(t.render(Some(&with_x(value))), want, "{template} with {value:?}");
        }
    }

    #[test]
    fn defaults_are_escaped_like_values() {
        for (template, want) in [
            (r#"<a href="{{traits.x|/home}}">"#, r#"<a href="/home">"#),
            (r#"<a href="/s?q={{traits.x|a b}}">"#, r#"<a href="/s?q=a%20b">"#),
            (r#"<img alt="{{traits.x|"you"}}">"#, r#"<img alt="&quot;you&quot;">"#),
        ] {
            assert_eq!(Template::compile(template).unwrap().render(None), want, "{template}");
        }
    }

    #[test]
    fn the_owners_own_html_is_kept() {
        let html = r#"<script>window.x = "<p>";</script><style>p { color: red }</style><a href="javascript:void(0)" onclick="go()">go</a>"#;
        assert_eq!(Template::compile(html).unwrap().render(None), html);
        // Markup this check does not follow is fine without placeholders after it.
        for html in ["<svg><title>x</title></svg>", "<noscript><p>x</p></noscript>", "<![CDATA[x]]>", "<a title='x"] {
            assert_eq!(Template::compile(html).unwrap().render(None), html);
        }
    }
}
