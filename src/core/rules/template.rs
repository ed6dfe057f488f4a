//! Content templates: HTML with `{{traits.name}}` placeholders, compiled once. Compiling scans the template's
//! HTML to learn where each placeholder sits (element text, a quoted attribute value, the start or the rest of a
//! URL), so that rendering escapes each value for its place; places where no escaping makes a value safe (script,
//! style, comments, unquoted values, event handlers, tag and attribute names) are refused with a message.

use crate::core::base::value::Value;
use crate::core::model::profile::Profile;
use crate::core::rules::compiler::Compiler;
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

/// The schemes a trait value may give a URL: web pages, e-mail and telephone links. Every other scheme is
/// refused rather than listed as dangerous (`javascript:`, `data:`, `vbscript:`, ...), because such a list is
/// never complete.
const SAFE_SCHEMES: [&str; 4] = ["http", "https", "mailto", "tel"];

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

/// A placeholder as the template's author wrote it, for messages.
fn shown(name: &str) -> String {
    format!("{{{{traits.{name}}}}}")
}

/// Attributes whose value is one URL that a browser follows or loads, on any element. `href` and `src` cover
/// links, images, media and image buttons; the rest are HTML's other URL attributes (some obsolete but still
/// honoured somewhere) and SVG's `xlink:href`. Lists of URLs (`srcset`, `ping`) are refused instead.
const URL_ATTRIBUTES: [&str; 15] = [
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
struct Scanner {
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
    fn finish(&self) -> Result<(), String> {
        match &self.in_tag {
            Some(name) => Err(format!(
                "the template ends inside the <{}> tag that holds {}; close it with >",
                self.tag,
                shown(name)
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn char(&mut self, c: char) -> Result<(), String> {
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
    pub(crate) fn reconsume(&mut self, state: State, c: char) -> Result<(), String> {
        self.state = state;
        self.char(c)
    }

    pub(crate) fn begin_tag(&mut self, end: bool, first: char) -> State {
        self.tag.clear();
        self.tag.push(first.to_ascii_lowercase());
        self.end_tag = end;
        self.attribute.clear();
        self.url = None;
        State::TagName
    }

    /// The tag is complete: what its element's content is read as.
    pub(crate) fn emit_tag(&mut self) -> State {
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
    pub(crate) fn text(&mut self, tag: &'static str, raw: bool, close: Close, c: char) -> Result<(), String> {
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
    pub(crate) fn url_char(&mut self, c: char) -> Result<(), String> {
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
    pub(crate) fn attribute_value(&mut self, name: &str) -> Result<HtmlContext, String> {
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
    fn the_owners_own_html_is_kept() {
        let html = r#"<script>window.x = "<p>";</script><style>p { color: red }</style><a href="javascript:void(0)" onclick="go()">go</a>"#;
        assert_eq!(Template::compile(html).unwrap().render(None), html);
        // Markup this check does not follow is fine without placeholders after it.
        for html in ["<svg><title>x</title></svg>", "<noscript><p>x</p></noscript>", "<![CDATA[x]]>", "<a title='x"] {
            assert_eq!(Template::compile(html).unwrap().render(None), html);
        }
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
