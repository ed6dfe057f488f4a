//! The HTML scanner templates are compiled with: it reads a template's HTML as a browser's tokenizer would, to
//! learn where each placeholder sits (`HtmlContext`: element text, a quoted attribute value, the start or the rest
//! of a URL), and refuses the places where no escaping makes a value safe (script, style, comments, unquoted
//! values, event handlers, tag and attribute names). Escaping for each place is `rules::template`.

use serde::{Deserialize, Serialize};

/// Where a placeholder sits in its template's HTML, learned when the template is compiled. It decides how the
/// value is escaped, because a trait value is whatever a visitor chose to send: escaping meant for text does not
/// make it safe in a URL, a script or an unquoted attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HtmlContext {
    /// Element text, including the text of `<textarea>` and `<title>`: HTML-escaped.
    Text,
    /// The quoted value of an ordinary attribute: HTML-escaped, which escapes both kinds of quote.
    Attribute,
    /// The start of a quoted URL attribute's value (`href="{{traits.site}}"`), where the value decides the
    /// URL's scheme: kept when it is relative or its scheme is http, https, mailto or tel, else replaced by
    /// `about:invalid`; then HTML-escaped.
    UrlStart,
    /// A URL attribute's value after its scheme is settled (`href="/search?q={{traits.q}}"`): percent-encoded
    /// like `encodeURIComponent`, so that it stays one component of the URL.
    UrlPart,
}

/// The schemes a trait value may give a URL: web pages, e-mail and telephone links. Every other scheme is
/// refused rather than listed as dangerous (`javascript:`, `data:`, `vbscript:`, ...), because such a list is
/// never complete.
pub(crate) const SAFE_SCHEMES: [&str; 4] = ["http", "https", "mailto", "tel"];

/// A placeholder as the template's author wrote it, for messages.
pub(crate) fn shown(name: &str) -> String {
    format!("{{{{traits.{name}}}}}")
}

/// Attributes whose value is one URL that a browser follows or loads, on any element. `href` and `src` cover
/// links, images, media and image buttons; the rest are HTML's other URL attributes (some obsolete but still
/// honoured somewhere) and SVG's `xlink:href`. Lists of URLs (`srcset`, `ping`) are refused instead.
pub(crate) const URL_ATTRIBUTES: [&str; 15] = [
    "href",
    "src",
    "action",
    "formaction",
    "poster",
    "cite",
    "background",
    "data",
    "longdesc",
    "codebase",
    "manifest",
    "icon",
    "lowsrc",
    "dynsrc",
    "xlink:href",
];

/// Elements whose attributes run or load content for the page, or configure it: a script's or a style sheet's
/// address, the base of every relative URL, a refresh, a frame or a plugin. A visitor's value has no place in
/// any of their attributes, so none is told apart.
const REFUSED_TAGS: [&str; 13] = [
    "script", "style", "base", "link", "meta", "iframe", "frame", "frameset", "object", "embed", "applet", "param",
    "portal",
];

/// How far a URL attribute's value has been read, to know whether a placeholder decides its scheme.
#[derive(Debug)]
enum Url {
    /// Only spaces and control characters so far (the URL parser drops them): a placeholder here decides the
    /// scheme.
    Start,
    /// Letters that may yet become a scheme, if a `:` follows.
    Scheme(String),
    /// The scheme is safe, or the URL is relative: placeholders from here on are parts of it.
    Settled,
    /// The owner's own text gave the URL this scheme, which is not a safe one.
    Unsafe(String),
    /// A character reference (`&...;`) may hide the scheme's characters; this check does not decode them.
    Unclear,
    /// Right after the placeholder that starts the URL; `true` once only spaces have followed it.
    AfterStart(String, bool),
}

/// Where the scanner is in the text of an element that ends only at its own end tag: how much of `</name` (or,
/// in a script, of `<!--`) follows the last `<`.
#[derive(Clone, Copy, Debug)]
enum Close {
    None,
    Lt,
    /// `</` and this many characters of the element's name.
    Name(usize),
    Bang,
    BangDash,
}

/// The states of the WHATWG HTML tokenizer ("13.2.5 Tokenization") that tell a placeholder's context apart,
/// with the others merged into these.
#[derive(Debug)]
enum State {
    Data,
    /// The text of `<textarea>` or `<title>` (`raw` false: character references work, tags do not), or of
    /// `<script>`, `<style>`, `<xmp>`, `<iframe>`, `<noembed>` or `<noframes>` (`raw`: nothing is HTML in it).
    Text {
        tag: &'static str,
        raw: bool,
        close: Close,
    },
    TagOpen,
    EndTagOpen,
    TagName,
    BeforeAttributeName,
    AttributeName,
    AfterAttributeName,
    BeforeAttributeValue,
    /// The quote that ends the value, or none for an unquoted value.
    AttributeValue(Option<char>),
    AfterAttributeValue,
    SelfClosing,
    /// After `<!`: the characters read towards `--`, `DOCTYPE` or `[CDATA[`.
    Declaration(String),
    CommentStart,
    CommentStartDash,
    /// `dashes`: how many `-` just came (2 means `--`); `bang`: `--!` just came. Either `-->` or `--!>` ends it.
    Comment {
        dashes: u8,
        bang: bool,
    },
    /// `<?...>`, `<!DOCTYPE ...>`, `</ ...>` and other `<!...>`: they end at the next `>`.
    BogusComment,
    /// Past markup whose parsing this scanner does not follow (it says which); no placeholder is accepted after it.
    Unknown(&'static str),
}

/// Reads a template's HTML as a browser's tokenizer would, one character at a time, with each placeholder
/// standing where its value will be, to say what context the placeholder is in. A value escaped for its context
/// holds none of the characters that move the tokenizer on (no `<` in text, no quote in a quoted value), which is
/// why a value's own characters need not be read here; only what follows a URL's first value is checked (`Url`).
#[derive(Debug)]
pub(crate) struct Scanner {
    state: State,
    /// The current tag's name, in lower case, and whether it is an end tag.
    tag: String,
    end_tag: bool,
    /// The current attribute's name, in lower case.
    attribute: String,
    /// For the value of a URL attribute: how far it has been read.
    url: Option<Url>,
    /// The first placeholder in the current tag, if any: a template must not end before that tag does, or the
    /// page around it would decide where the value ends.
    in_tag: Option<String>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::Data,
            tag: String::new(),
            end_tag: false,
            attribute: String::new(),
            url: None,
            in_tag: None,
        }
    }
}

fn is_space(c: char) -> bool {
    // The tokenizer's whitespace; a carriage return counts as the newline it is turned into before tokenizing.
    matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ')
}

impl Scanner {
    pub(crate) fn literal(&mut self, text: &str) -> Result<(), String> {
        text.chars().try_for_each(|c| self.char(c))
    }

    /// Where the template ends: a tag that holds a placeholder must be closed by then.
    pub(crate) fn finish(&self) -> Result<(), String> {
        match &self.in_tag {
            Some(name) => Err(format!(
                "the template ends inside the <{}> tag that holds {}; close it with >",
                self.tag,
                shown(name)
            )),
            None => Ok(()),
        }
    }

    fn char(&mut self, c: char) -> Result<(), String> {
        let next = match std::mem::replace(&mut self.state, State::Data) {
            State::Unknown(why) => State::Unknown(why),
            State::Data if c == '<' => State::TagOpen,
            State::Data => State::Data,
            State::Text { tag, raw, close } => return self.text(tag, raw, close, c),
            State::TagOpen if c.is_ascii_alphabetic() => self.begin_tag(false, c),
            State::TagOpen => match c {
                '/' => State::EndTagOpen,
                '!' => State::Declaration(String::new()),
                '?' => State::BogusComment,
                // Not a tag: the `<` was text, and this character is read as text too.
                _ => return self.reconsume(State::Data, c),
            },
            State::EndTagOpen if c.is_ascii_alphabetic() => self.begin_tag(true, c),
            // `</>` is dropped; `</` and anything else starts a bogus comment that holds this character.
            State::EndTagOpen if c == '>' => State::Data,
            State::EndTagOpen => State::BogusComment,
            State::TagName => match c {
                _ if is_space(c) => State::BeforeAttributeName,
                '/' => State::SelfClosing,
                '>' => self.emit_tag(),
                _ => {
                    self.tag.push(c.to_ascii_lowercase());
                    State::TagName
                }
            },
            State::BeforeAttributeName => match c {
                _ if is_space(c) => State::BeforeAttributeName,
                '/' | '>' => return self.reconsume(State::AfterAttributeName, c),
                // Anything else, `=` included, starts the name.
                _ => {
                    self.attribute.clear();
                    self.attribute.push(c.to_ascii_lowercase());
                    State::AttributeName
                }
            },
            State::AttributeName => match c {
                _ if is_space(c) || c == '/' || c == '>' => return self.reconsume(State::AfterAttributeName, c),
                '=' => State::BeforeAttributeValue,
                _ => {
                    self.attribute.push(c.to_ascii_lowercase());
                    State::AttributeName
                }
            },
            State::AfterAttributeName => match c {
                _ if is_space(c) => State::AfterAttributeName,
                '/' => State::SelfClosing,
                '=' => State::BeforeAttributeValue,
                '>' => self.emit_tag(),
                _ => {
                    self.attribute.clear();
                    return self.reconsume(State::AttributeName, c);
                }
            },
            State::BeforeAttributeValue => match c {
                _ if is_space(c) => State::BeforeAttributeValue,
                '"' | '\'' => {
                    self.url = URL_ATTRIBUTES.contains(&self.attribute.as_str()).then_some(Url::Start);
                    State::AttributeValue(Some(c))
                }
                '>' => self.emit_tag(),
                _ => return self.reconsume(State::AttributeValue(None), c),
            },
            State::AttributeValue(Some(quote)) if c == quote => {
                self.url = None;
                State::AfterAttributeValue
            }
            State::AttributeValue(Some(quote)) => {
                self.url_char(c)?;
                State::AttributeValue(Some(quote))
            }
            State::AttributeValue(None) => match c {
                _ if is_space(c) => State::BeforeAttributeName,
                '>' => self.emit_tag(),
                _ => State::AttributeValue(None),
            },
            State::AfterAttributeValue => match c {
                _ if is_space(c) => State::BeforeAttributeName,
                '/' => State::SelfClosing,
                '>' => self.emit_tag(),
                _ => return self.reconsume(State::BeforeAttributeName, c),
            },
            State::SelfClosing if c == '>' => self.emit_tag(),
            State::SelfClosing => return self.reconsume(State::BeforeAttributeName, c),
            State::Declaration(mut seen) => {
                seen.push(c);
                let prefix = |whole: &str, any_case: bool| {
                    whole.get(..seen.len()).is_some_and(|w| {
                        if any_case {
                            w.eq_ignore_ascii_case(&seen)
                        } else {
                            w == seen
                        }
                    })
                };
                if seen == "--" {
                    State::CommentStart
                } else if seen.eq_ignore_ascii_case("doctype") {
                    // A doctype ends at the next `>`, even inside its quoted identifiers.
                    State::BogusComment
                } else if seen == "[CDATA[" {
                    // A bogus comment in HTML, but a CDATA section, which ends elsewhere, in SVG and MathML.
                    State::Unknown("a <![CDATA[ section")
                } else if prefix("--", false) || prefix("doctype", true) || prefix("[CDATA[", false) {
                    State::Declaration(seen)
                } else if c == '>' {
                    State::Data
                } else {
                    State::BogusComment
                }
            }
            State::CommentStart => match c {
                '-' => State::CommentStartDash,
                // `<!-->` and `<!--->` are whole (empty) comments.
                '>' => State::Data,
                _ => State::Comment { dashes: 0, bang: false },
            },
            State::CommentStartDash => match c {
                '-' => State::Comment { dashes: 2, bang: false },
                '>' => State::Data,
                _ => State::Comment { dashes: 0, bang: false },
            },
            State::Comment { dashes, bang } => match c {
                '>' if dashes >= 2 => State::Data,
                '-' if bang => State::Comment { dashes: 1, bang: false },
                '-' => State::Comment { dashes: (dashes + 1).min(2), bang: false },
                '!' if dashes >= 2 && !bang => State::Comment { dashes, bang: true },
                _ => State::Comment { dashes: 0, bang: false },
            },
            State::BogusComment if c == '>' => State::Data,
            State::BogusComment => State::BogusComment,
        };
        self.state = next;
        Ok(())
    }

    /// Reads `c` again in `state`, as the tokenizer's "reconsume" does.
    fn reconsume(&mut self, state: State, c: char) -> Result<(), String> {
        self.state = state;
        self.char(c)
    }

    fn begin_tag(&mut self, end: bool, first: char) -> State {
        self.tag.clear();
        self.tag.push(first.to_ascii_lowercase());
        self.end_tag = end;
        self.attribute.clear();
        self.url = None;
        State::TagName
    }

    /// The tag is complete: what its element's content is read as.
    fn emit_tag(&mut self) -> State {
        self.in_tag = None;
        if self.end_tag {
            return State::Data;
        }
        let text = |tag, raw| State::Text { tag, raw, close: Close::None };
        match self.tag.as_str() {
            "script" => text("script", true),
            "style" => text("style", true),
            "xmp" => text("xmp", true),
            "iframe" => text("iframe", true),
            "noembed" => text("noembed", true),
            "noframes" => text("noframes", true),
            "textarea" => text("textarea", false),
            "title" => text("title", false),
            // Inside SVG and MathML, `<style>`, `<title>` and CDATA are read otherwise, and HTML tags can end
            // them early: following that is more than this check is worth.
            "svg" | "math" => State::Unknown("<svg> or <math>"),
            // Read as raw text with scripting on and as HTML with it off: the two readings disagree.
            "noscript" => State::Unknown("<noscript>"),
            // Everything after it is text, to the end of the page.
            "plaintext" => State::Unknown("<plaintext>"),
            _ => State::Data,
        }
    }

    /// A character of the text of a `Text` element: it ends at `</name` followed by a space, `/` or `>`.
    fn text(&mut self, tag: &'static str, raw: bool, close: Close, c: char) -> Result<(), String> {
        let plain = State::Text { tag, raw, close: Close::None };
        let close = match close {
            Close::None if c == '<' => Close::Lt,
            Close::None => Close::None,
            Close::Lt if c == '/' => Close::Name(0),
            // `<!--` in a script starts the tokenizer's "escaped" states, where a `<script>` in the text hides
            // the end tag that follows it.
            Close::Lt if c == '!' && tag == "script" => Close::Bang,
            Close::Bang if c == '-' => Close::BangDash,
            Close::BangDash if c == '-' => {
                self.state = State::Unknown("<!-- inside <script>");
                return Ok(());
            }
            Close::Lt | Close::Bang | Close::BangDash => return self.reconsume(plain, c),
            Close::Name(n) => match tag.as_bytes().get(n) {
                Some(&b) if c.eq_ignore_ascii_case(&char::from(b)) => Close::Name(n + 1),
                Some(_) => return self.reconsume(plain, c),
                // The whole name: an end tag if a space, `/` or `>` follows, read on as any tag is.
                None if is_space(c) || c == '/' || c == '>' => {
                    self.tag.clear();
                    self.tag.push_str(tag);
                    self.end_tag = true;
                    self.attribute.clear();
                    return self.reconsume(State::TagName, c);
                }
                None => return self.reconsume(plain, c),
            },
        };
        self.state = State::Text { tag, raw, close };
        Ok(())
    }

    /// A character of a quoted attribute value, for a URL attribute's scheme.
    fn url_char(&mut self, c: char) -> Result<(), String> {
        let Some(url) = self.url.take() else {
            return Ok(());
        };
        self.url = Some(match url {
            // The URL parser drops leading controls and spaces, and tabs and newlines anywhere.
            Url::Start if c <= ' ' => Url::Start,
            Url::Scheme(s) if matches!(c, '\t' | '\n' | '\r') => Url::Scheme(s),
            Url::Start if c.is_ascii_alphabetic() => Url::Scheme(c.to_ascii_lowercase().to_string()),
            Url::Start | Url::Scheme(_) if c == '&' => Url::Unclear,
            Url::Scheme(mut s) if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') => {
                s.push(c.to_ascii_lowercase());
                Url::Scheme(s)
            }
            Url::Scheme(s) if c == ':' => match SAFE_SCHEMES.contains(&s.as_str()) {
                true => Url::Settled,
                false => Url::Unsafe(s),
            },
            // Any other character before a `:` makes the URL relative (`/`, `?`, `#`, `.`, ...).
            Url::Start | Url::Scheme(_) => Url::Settled,
            // After the value that starts the URL, a `/`, `?` or `#` ends any scheme it may lack; anything else
            // might complete one (`{{traits.x}}:alert(1)` with the value `javascript`).
            Url::AfterStart(_, false) if matches!(c, '/' | '?' | '#') => Url::Settled,
            Url::AfterStart(name, _) if c <= ' ' => Url::AfterStart(name, true),
            Url::AfterStart(name, _) => return Err(after_start(&name, &self.attribute)),
            settled => settled,
        });
        Ok(())
    }

    /// The context of a placeholder at the scanner's position, or why none is safe.
    pub(crate) fn placeholder(&mut self, name: &str) -> Result<HtmlContext, String> {
        let p = shown(name);
        let (tag, attribute) = (&self.tag, &self.attribute);
        let refused = match &self.state {
            State::Data => return Ok(HtmlContext::Text),
            State::Text { raw: false, close: Close::None, .. } => return Ok(HtmlContext::Text),
            State::Text { raw: false, tag, .. } => format!("{p} sits inside what may be the end tag </{tag}>"),
            State::Text { tag, .. } => {
                format!("{p} sits inside <{tag}>, whose content is not HTML; no escaping makes a value safe there")
            }
            State::Unknown(why) => format!(
                "{p} comes after {why}, whose parsing this check does not follow; put placeholders before it or in \
                 another block"
            ),
            State::Declaration(_)
            | State::CommentStart
            | State::CommentStartDash
            | State::Comment { .. }
            | State::BogusComment => format!("{p} sits in an HTML comment or <!...> declaration"),
            State::TagOpen | State::EndTagOpen | State::TagName => {
                format!("{p} sits in a tag name; a tag's name cannot come from a trait")
            }
            _ if self.end_tag => format!("{p} sits in the end tag </{tag}>"),
            State::BeforeAttributeName
            | State::AttributeName
            | State::AfterAttributeName
            | State::AfterAttributeValue
            | State::SelfClosing => format!(
                "{p} sits where an attribute name goes, in <{tag}>; a placeholder can only be a quoted attribute value"
            ),
            State::BeforeAttributeValue | State::AttributeValue(None) => {
                format!("{p} sits in an unquoted attribute value; quote it: {attribute}=\"{p}\"")
            }
            State::AttributeValue(Some(_)) => match self.attribute_value(name) {
                Ok(context) => {
                    self.in_tag.get_or_insert_with(|| name.to_string());
                    return Ok(context);
                }
                Err(e) => e,
            },
        };
        Err(refused)
    }

    /// The context of a placeholder in a quoted attribute value, or why none is safe.
    fn attribute_value(&mut self, name: &str) -> Result<HtmlContext, String> {
        let p = shown(name);
        let (tag, attribute) = (self.tag.as_str(), self.attribute.as_str());
        if REFUSED_TAGS.contains(&tag) {
            return Err(format!(
                "{p} sits in an attribute of <{tag}>, which runs, loads or configures content for the page; no \
                 placeholder is allowed in <script>, <style>, <base>, <link>, <meta>, frames and plugins"
            ));
        }
        if attribute.starts_with("on") {
            return Err(format!(
                "{p} sits in the event handler {attribute}; no escaping makes a value safe as JavaScript"
            ));
        }
        match attribute {
            "style" => return Err(format!("{p} sits in a style attribute; no escaping makes a value safe as CSS")),
            "srcdoc" => return Err(format!("{p} sits in srcdoc, whose value is a whole HTML document")),
            "srcset" | "imagesrcset" | "ping" => {
                return Err(format!("{p} sits in {attribute}, a list of URLs; use a single URL in src or href"))
            }
            "id" | "name" => {
                return Err(format!(
                    "{p} sits in the {attribute} attribute; an element named by a visitor can replace a global variable that the \
                     page's scripts read (DOM clobbering)"
                ))
            }
            _ => {}
        }
        if !attribute.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.')) {
            return Err(format!("{p} sits in the value of {attribute:?}, which is not a plain attribute name"));
        }
        let Some(url) = self.url.take() else {
            return Ok(HtmlContext::Attribute);
        };
        let (url, answer) = match url {
            Url::Start => (Url::AfterStart(name.to_string(), false), Ok(HtmlContext::UrlStart)),
            Url::Settled => (Url::Settled, Ok(HtmlContext::UrlPart)),
            Url::Scheme(s) => {
                let e = format!("{p} follows {s:?} at the start of {attribute} and could complete a URL scheme");
                (Url::Scheme(s), Err(e))
            }
            Url::Unsafe(s) => {
                let e = format!(
                    "{p} sits in a {s}: URL in {attribute}; only http, https, mailto, tel and relative URLs may \
                     hold a placeholder"
                );
                (Url::Unsafe(s), Err(e))
            }
            Url::Unclear => {
                let e = format!(
                    "{p} follows a character reference (&...) at the start of {attribute}, which may hide the URL's \
                     scheme; write the scheme in plain characters"
                );
                (Url::Unclear, Err(e))
            }
            Url::AfterStart(first, spaced) => {
                let e = after_start(&first, attribute);
                (Url::AfterStart(first, spaced), Err(e))
            }
        };
        self.url = Some(url);
        answer
    }
}

/// Why the text after a URL's first placeholder is refused.
fn after_start(name: &str, attribute: &str) -> String {
    format!(
        "{} starts the URL in {attribute}, so it must be followed by /, ? or # or end the value: anything else could \
         complete the URL's scheme",
        shown(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::template::{Part, Template};

    #[test]
    fn placeholders_know_their_context() {
        let t = Template::compile(
            r#"<a href="{{traits.a}}" title='{{traits.b}}'>{{traits.c}}</a><a href="/q?{{traits.d}}">"#,
        )
        .unwrap();
        let contexts: Vec<_> =
            t.0.iter()
                .filter_map(|p| match p {
                    Part::Trait { context, .. } => Some(*context),
                    Part::Text(_) => None,
                })
                .collect();
        use HtmlContext::*;
        assert_eq!(contexts, [UrlStart, Attribute, Text, UrlPart]);
        assert_eq!(t.trait_names().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn placeholders_no_escaping_makes_safe_are_refused() {
        // (template, part of the error)
        let cases = [
            ("<img alt={{traits.firstName}}>", r#"unquoted attribute value; quote it: alt="{{traits.firstName}}""#),
            ("<img alt=x{{traits.x}} src=y>", "unquoted attribute value"),
            (r#"<script>var n="{{traits.x}}"</script>"#, "{{traits.x}} sits inside <script>"),
            ("<SCRIPT type=module>{{traits.x}}</SCRIPT>", "inside <script>"),
            ("<style>p { color: {{traits.x}} }</style>", "inside <style>"),
            ("<xmp>{{traits.x}}</xmp>", "inside <xmp>"),
            ("<script></scrip{{traits.x}}", "inside <script>"),
            ("<!-- {{traits.x}} -->", "comment"),
            ("<!-- a -- > {{traits.x}} -->", "comment"),
            ("<!DOCTYPE {{traits.x}}>", "declaration"),
            ("<? {{traits.x}} >", "comment"),
            (r#"<button onclick="{{traits.x}}">"#, "event handler onclick"),
            ("<p ONMOUSEOVER='{{traits.x}}'>", "event handler onmouseover"),
            (r#"<p style="{{traits.x}}">"#, "style attribute"),
            (r#"<p srcdoc="{{traits.x}}">"#, "srcdoc"),
            (r#"<iframe srcdoc="{{traits.x}}">"#, "attribute of <iframe>"),
            (r#"<img srcset="{{traits.x}} 2x">"#, "a list of URLs"),
            (r#"<div id="{{traits.x}}">"#, "DOM clobbering"),
            (r#"<p a"b="{{traits.x}}">"#, "not a plain attribute name"),
            (r#"<script src="{{traits.x}}"></script>"#, "attribute of <script>"),
            (r#"<link rel="stylesheet" href="{{traits.x}}">"#, "attribute of <link>"),
            (r#"<meta http-equiv="refresh" content="0;url={{traits.x}}">"#, "attribute of <meta>"),
            (r#"<base href="{{traits.x}}">"#, "attribute of <base>"),
            ("<{{traits.t}}>", "{{traits.t}} sits in a tag name"),
            ("<h{{traits.t}}>", "tag name"),
            ("</{{traits.t}}>", "tag name"),
            ("<p {{traits.x}}>", "where an attribute name goes, in <p>"),
            (r#"<p a="b"{{traits.x}}>"#, "where an attribute name goes"),
            (r#"<p data-{{traits.x}}="1">"#, "where an attribute name goes"),
            (r#"</p title="{{traits.x}}">"#, "end tag </p>"),
            (r#"<a href="java{{traits.x}}">"#, "could complete a URL scheme"),
            (r#"<a href="javascript:{{traits.x}}">"#, "a javascript: URL in href"),
            (r#"<a href="data:text/html,{{traits.x}}">"#, "a data: URL"),
            (
                r#"<a href="{{traits.a}}:{{traits.b}}">"#,
                "{{traits.a}} starts the URL in href, so it must be followed by /, ? or #",
            ),
            (r#"<a href="{{traits.a}}{{traits.b}}">"#, "{{traits.a}} starts the URL"),
            (r#"<a href="{{traits.a}}&#58;x">"#, "{{traits.a}} starts the URL"),
            (r#"<a href="{{traits.a}}	:x">"#, "{{traits.a}} starts the URL"),
            (r#"<a href="&#106;avascript:{{traits.x}}">"#, "character reference"),
            (r#"<a href="{{traits.x|javascript:alert(1)}}">"#, "the default of {{traits.x}}"),
            (r#"<a title="{{traits.x}}""#, "ends inside the <a> tag that holds {{traits.x}}"),
            (r#"<a href="{{traits.x}}"#, "ends inside the <a> tag"),
            ("<textarea></text{{traits.x}}area>", "may be the end tag </textarea>"),
            ("<textarea><{{traits.x}}</textarea>", "may be the end tag </textarea>"),
            ("<title></title{{traits.x}}>", "may be the end tag </title>"),
            ("<svg><title>{{traits.x}}</title></svg>", "comes after <svg> or <math>"),
            ("<svg></svg><p>{{traits.x}}</p>", "comes after <svg>"),
            ("<noscript>{{traits.x}}</noscript>", "comes after <noscript>"),
            ("<script><!--<script></script>{{traits.x}}--></script>", "comes after <!-- inside <script>"),
            ("<![CDATA[ > ]]>{{traits.x}}", "comes after a <![CDATA[ section"),
        ];
        for (template, want) in cases {
            match Template::compile(template) {
                Ok(t) => panic!("{template} compiled: {t:?}"),
                Err(e) => assert!(e.contains(want), "{template}: {e:?} lacks {want:?}"),
            }
        }
    }
}
