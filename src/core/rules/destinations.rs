//! Destinations: where a journey's sends go and what they carry (the configuration's `destinations` section,
//! compiled beside its types with every problem at its path), and payload templates filled from the profile and
//! escaped for their format (`compile_template`, `render`). What leaves is made by `wire::deliveries`.

use crate::core::base::time::{Millis, HOUR, SECOND};
use crate::core::model::consent::Purpose;
use crate::core::rules::compiler::{at, idx, present, Compiler};
use crate::core::rules::pressure::ONSITE;
use serde_json::Value as J;

/// Destinations a configuration may define.
pub const MAX_DESTINATIONS: usize = 20;
/// Attempts a delivery may make (the first and its retries).
pub const MAX_ATTEMPTS: u32 = 10;
/// The longest a destination may take to answer.
pub const MAX_TIMEOUT: Millis = 30 * SECOND;

/// The traits that are contact points in every configuration.
pub const CONTACT_TRAITS: [&str; 2] = ["email", "phone"];

pub fn default_contact_traits() -> Vec<String> {
    CONTACT_TRAITS.iter().map(|t| t.to_string()).collect()
}

/// Where a send goes and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    pub id: String,
    pub kind: DestinationKind,
    /// The absolute `http(s)` URL a webhook is posted to, or a Tracking API's base (`.../v1`), to which `/track` is
    /// appended.
    pub url: String,
    /// The consent purpose a person must have granted, checked when the send leaves.
    pub purpose: Purpose,
    /// The channel the pressure budget counts it in (`email`, `sms`, `push`, `ads`, ...).
    pub channel: String,
    pub payload: Payload,
    /// The traits (by name) the payload carries in `context.traits`: nothing else of the profile leaves.
    pub traits: Vec<String>,
    /// The traits that address the person (`"to"`; by default those of `email` and `phone` that the send
    /// carries, in `traits` or its template): a send goes only when each one the profile holds was set with
    /// proof (`model::contact`), and is suppressed as `contact_unverified` otherwise.
    pub to: Vec<String>,
    /// Whether its sends reach the person, so that the pressure budget and quiet hours apply (`"pressure":
    /// false` for a destination that reaches nobody, such as a warehouse).
    pub pressure: bool,
    pub timeout: Millis,
    /// Attempts before the delivery is dead-lettered (the first included).
    pub attempts: u32,
    /// The first retry's delay; each further retry waits twice as long as the one before.
    pub backoff: Millis,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DestinationKind {
    /// A Standard Webhooks endpoint, signed with the secret held in the Worker's variable `secret_env`.
    Webhook { secret_env: String },
    /// Any Segment-spec HTTP Tracking API (Segment, RudderStack, another edgecdp): `POST {url}/track` with the
    /// write key (held in the Worker's variable `write_key_env`) as Basic authentication.
    TrackingApi { write_key_env: String },
}

/// What a send carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// The Segment-spec `track` event, with the journey's context.
    Event,
    /// A template filled from the profile and the journey, escaped for its format.
    Template { format: Format, parts: Vec<Part> },
}

/// A template's format, which decides how each value is escaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON: each placeholder sits inside a string literal and its value is escaped as JSON string content.
    Json,
    /// Plain text: values as they are.
    Text,
    /// HTML text: values HTML-escaped (placeholders only in element text or quoted attributes).
    Html,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Text => "text/plain; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

/// A piece of a payload template.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    /// `{{traits.x}}`, `{{context.x}}` (the trigger event's property), `{{journey.id}}`, `{{journey.step}}`,
    /// `{{journey.key}}`, with an optional default after `|`.
    Field {
        source: Source,
        name: String,
        default: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Trait,
    Context,
    Journey,
}

impl Compiler {
    /// `destinations`: `[{"id", "type": "webhook"|"tracking-api", "url", "secretEnv"|"writeKeyEnv", "purpose",
    /// "channel", "payload"?, "traits"?, "timeout"?, "attempts"?, "backoff"?}]`.
    pub(crate) fn destinations(&mut self, v: &J, path: &str) -> Vec<Destination> {
        let mut out: Vec<Destination> = Vec::new();
        let Some(list) = self.array(v, path) else { return out };
        if list.len() > MAX_DESTINATIONS {
            self.err(path, format!("at most {MAX_DESTINATIONS} destinations"));
        }
        for (i, d) in list.iter().enumerate() {
            let p = idx(path, i);
            let keys = [
                "id",
                "type",
                "url",
                "secretEnv",
                "writeKeyEnv",
                "purpose",
                "channel",
                "payload",
                "traits",
                "to",
                "timeout",
                "attempts",
                "backoff",
                "pressure",
            ];
            let Some(o) = self.object(d, &p, &keys) else { continue };
            let id = self.id(o.get("id"), &at(&p, "id"));
            if let Some(id) = &id {
                if out.iter().any(|d| d.id == *id) {
                    self.err(at(&p, "id"), format!("duplicate destination id {id:?}"));
                }
            }
            let url = self.string(o.get("url"), &at(&p, "url"));
            if let Some(u) = &url {
                if !(u.starts_with("https://") || u.starts_with("http://")) || u.contains(char::is_whitespace) {
                    self.err(at(&p, "url"), "expected an absolute http or https URL");
                }
            }
            let env_name = |c: &mut Compiler, key: &str| {
                let name = c.string(o.get(key), &at(&p, key))?;
                let ok = name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if !ok {
                    c.err(at(&p, key), "the name of a Worker variable or secret: upper-case letters, digits and '_'");
                }
                ok.then_some(name)
            };
            let kind = match o.get("type").and_then(J::as_str) {
                Some("webhook") => {
                    if o.contains_key("writeKeyEnv") {
                        self.err(at(&p, "writeKeyEnv"), "a webhook is signed with secretEnv, not a write key");
                    }
                    env_name(self, "secretEnv").map(|secret_env| DestinationKind::Webhook { secret_env })
                }
                Some("tracking-api") => {
                    if o.contains_key("secretEnv") {
                        self.err(at(&p, "secretEnv"), "a Tracking API takes writeKeyEnv, not a signing secret");
                    }
                    env_name(self, "writeKeyEnv").map(|write_key_env| DestinationKind::TrackingApi { write_key_env })
                }
                _ => {
                    self.err(at(&p, "type"), "expected \"webhook\" or \"tracking-api\"");
                    None
                }
            };
            let purpose = match o.get("purpose").and_then(J::as_str).and_then(Purpose::parse) {
                Some(Purpose::Necessary) | None => {
                    self.err(
                        at(&p, "purpose"),
                        "expected the consent purpose a send needs: \"marketing\", \"advertising\", \"analytics\" or \"personalization\"",
                    );
                    None
                }
                Some(purpose) => Some(purpose),
            };
            let channel = self.id(o.get("channel"), &at(&p, "channel"));
            if channel.as_deref() == Some(ONSITE) {
                self.err(at(&p, "channel"), "\"onsite\" is the channel of the slots' impressions");
            }
            let payload = match present(o, "payload") {
                None => Some(Payload::Event),
                Some(J::String(s)) if s == "event" => Some(Payload::Event),
                Some(v) => self.payload_template(v, &at(&p, "payload")),
            };
            let mut traits = Vec::new();
            if let Some(list) = present(o, "traits") {
                for (j, t) in self.array(list, &at(&p, "traits")).into_iter().flatten().enumerate() {
                    match t.as_str() {
                        Some(name) if !name.is_empty() => traits.push(name.to_string()),
                        _ => self.err(idx(&at(&p, "traits"), j), "expected a trait name"),
                    }
                }
            }
            let to = match present(o, "to") {
                Some(list) => {
                    let mut to = Vec::new();
                    for (j, t) in self.array(list, &at(&p, "to")).into_iter().flatten().enumerate() {
                        match t.as_str() {
                            Some(name) if !name.is_empty() => to.push(name.to_string()),
                            _ => self
                                .err(idx(&at(&p, "to"), j), "expected the name of a trait that addresses the person"),
                        }
                    }
                    to
                }
                None => {
                    let carried = |name: &str| {
                        traits.iter().any(|t| t == name)
                            || matches!(&payload, Some(Payload::Template { parts, .. }) if parts.iter().any(
                                |part| matches!(part, Part::Field { source: Source::Trait, name: n, .. } if n == name)))
                    };
                    CONTACT_TRAITS.iter().filter(|t| carried(t)).map(|t| t.to_string()).collect()
                }
            };
            let timeout = self.bounded_duration(present(o, "timeout"), &at(&p, "timeout"), 10 * SECOND, MAX_TIMEOUT);
            let attempts = match present(o, "attempts") {
                Some(v) => self.integer(v, &at(&p, "attempts"), 1, i64::from(MAX_ATTEMPTS)).map(|n| n as u32),
                None => Some(6),
            };
            let backoff = self.bounded_duration(present(o, "backoff"), &at(&p, "backoff"), 30 * SECOND, HOUR);
            let pressure = present(o, "pressure").map_or(Some(true), |v| self.boolean(v, &at(&p, "pressure")));
            if let (Some(id), Some(kind), Some(url), Some(purpose), Some(channel), Some(payload)) =
                (id, kind, url, purpose, channel, payload)
            {
                out.push(Destination {
                    id,
                    kind,
                    url: url.trim_end_matches('/').to_string(),
                    purpose,
                    channel,
                    payload,
                    traits,
                    to,
                    pressure: pressure.unwrap_or(true),
                    timeout: timeout.unwrap_or(10 * SECOND),
                    attempts: attempts.unwrap_or(6),
                    backoff: backoff.unwrap_or(30 * SECOND),
                });
            }
        }
        out
    }

    /// A duration of at least a second and at most `max`, `default` when absent.
    fn bounded_duration(&mut self, v: Option<&J>, path: &str, default: Millis, max: Millis) -> Option<Millis> {
        let Some(v) = v else { return Some(default) };
        let d = self.duration(v, path)?;
        if d < SECOND || d > max {
            self.err(path, format!("between 1s and {}s", max / SECOND));
            return None;
        }
        Some(d)
    }

    /// `{"format": "json"|"text"|"html", "template": "..."}`.
    fn payload_template(&mut self, v: &J, path: &str) -> Option<Payload> {
        let o = self.object(v, path, &["format", "template"])?;
        let format = match o.get("format").and_then(J::as_str) {
            Some("json") => Format::Json,
            Some("text") => Format::Text,
            Some("html") => Format::Html,
            _ => {
                self.err(at(path, "format"), "expected \"json\", \"text\" or \"html\"");
                return None;
            }
        };
        let text = self.string(o.get("template"), &at(path, "template"))?;
        match compile_template(&text, format) {
            Ok(parts) => Some(Payload::Template { format, parts }),
            Err(e) => {
                self.err(at(path, "template"), e);
                None
            }
        }
    }
}

/// Compiles a payload template: `{{traits.x}}`, `{{context.x}}`, `{{journey.id|step|key}}`, each with an optional
/// `|default`. In JSON, every placeholder must sit inside a string literal, and the template with sample values
/// must be valid JSON; in HTML, placeholders must sit in element text or a quoted attribute (not a URL, a script
/// or a tag), as the slots' templates.
pub fn compile_template(text: &str, format: Format) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    // JSON: whether the text so far leaves us inside a string literal.
    let mut in_string = false;
    let mut escaped = false;
    let mut track = |chunk: &str, in_string: &mut bool| {
        for b in chunk.bytes() {
            if escaped {
                escaped = false;
            } else if *in_string && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                *in_string = !*in_string;
            }
        }
    };
    while let Some(start) = rest.find("{{") {
        let before = &rest[..start];
        track(before, &mut in_string);
        if !before.is_empty() {
            parts.push(Part::Text(before.to_string()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("a {{ placeholder is not closed with }}")?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once('|') {
            Some((n, d)) => (n.trim(), d.trim()),
            None => (inner.trim(), ""),
        };
        let (source, field) = match name.split_once('.') {
            Some(("traits", f)) => (Source::Trait, f),
            Some(("context", f)) => (Source::Context, f),
            Some(("journey", f @ ("id" | "step" | "key"))) => (Source::Journey, f),
            _ => {
                return Err(format!(
                    "unknown placeholder {{{{{name}}}}}; expected traits.<name>, context.<property>, journey.id, journey.step or journey.key"
                ))
            }
        };
        if field.is_empty() || !field.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("unknown placeholder {{{{{name}}}}}"));
        }
        if format == Format::Json && !in_string {
            return Err(format!("{{{{{name}}}}} sits outside a JSON string: write \"{{{{{name}}}}}\""));
        }
        parts.push(Part::Field { source, name: field.to_string(), default: default.to_string() });
        rest = &after[end + 2..];
    }
    track(rest, &mut in_string);
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    match format {
        Format::Json => {
            let sample = render(&parts, format, |_, _| Some("x\"<y>".to_string()));
            serde_json::from_str::<J>(&sample).map_err(|e| format!("not JSON once filled: {e}"))?;
        }
        Format::Html => {
            // The slots' template compiler knows where a value is safe in HTML: each placeholder stands in for a
            // trait there, and only element text and quoted attributes pass (URLs need the slots' own rules).
            let mut probe = String::new();
            for p in &parts {
                match p {
                    Part::Text(t) => probe.push_str(t),
                    Part::Field { .. } => probe.push_str("{{traits.x}}"),
                }
            }
            let t = crate::core::rules::template::Template::compile(&probe)?;
            use crate::core::rules::scanner::HtmlContext;
            use crate::core::rules::template::Part as H;
            if t.0.iter().any(|p| matches!(p, H::Trait { context: HtmlContext::UrlStart | HtmlContext::UrlPart, .. })) {
                return Err(
                    "a placeholder sits in a URL attribute; a payload's HTML keeps values in text and attributes"
                        .into(),
                );
            }
        }
        Format::Text => {}
    }
    Ok(parts)
}

/// Fills a compiled template: `value(source, name)` gives each field's value (`None`: its default), escaped for
/// `format`.
pub fn render(parts: &[Part], format: Format, value: impl Fn(Source, &str) -> Option<String>) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(t),
            Part::Field { source, name, default } => {
                let v = value(*source, name).filter(|v| !v.is_empty());
                let v = v.as_deref().unwrap_or(default);
                match format {
                    Format::Json => {
                        let quoted = serde_json::to_string(v).unwrap_or_default();
                        out.push_str(&quoted[1..quoted.len().saturating_sub(1)]);
                    }
                    Format::Html => crate::core::rules::template::escape_html_into(v, &mut out),
                    Format::Text => out.push_str(v),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::compile_str;

    fn errors(text: &str) -> Vec<String> {
        compile_str(text).expect_err("config is invalid").iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn destinations_report_paths() {
        let got = errors(
            r#"{"destinations": [{"id": "a", "type": "smtp", "url": "ftp://x", "purpose": "necessary", "channel": "onsite"},
                                 {"id": "b", "type": "webhook", "url": "https://x", "secretEnv": "lower", "purpose": "marketing",
                                  "channel": "email", "payload": {"format": "json", "template": "{\"to\": {{traits.email}}}"}}],
                "pressure": {"caps": [{"max": 2}], "slots": ["nope"], "quietHours": {"from": 21, "to": 21}, "defaultUtcOffset": "CET"}}"#,
        );
        for want in [
            "destinations[0].url: expected an absolute http or https URL",
            "destinations[0].type: expected \"webhook\" or \"tracking-api\"",
            "destinations[0].purpose: expected the consent purpose",
            "destinations[0].channel: \"onsite\" is the channel",
            "destinations[1].secretEnv: the name of a Worker variable",
            "destinations[1].payload.template: {{traits.email}} sits outside a JSON string",
        ] {
            assert!(got.iter().any(|g| g.starts_with(want)), "missing {want:?} in {got:#?}");
        }
    }

    #[test]
    fn templates_escape_for_their_format() {
        let parts = compile_template(r#"{"to": "{{traits.email}}", "cart": "{{context.cart_id|none}}"}"#, Format::Json)
            .unwrap();
        let out = render(&parts, Format::Json, |s, n| match (s, n) {
            (Source::Trait, "email") => Some("a\"b@x.com\n".into()),
            _ => None,
        });
        assert_eq!(out, r#"{"to": "a\"b@x.com\n", "cart": "none"}"#);
        assert!(serde_json::from_str::<J>(&out).is_ok());
        let parts = compile_template("<p title=\"{{traits.n}}\">Hi {{traits.n}}</p>", Format::Html).unwrap();
        let out = render(&parts, Format::Html, |_, _| Some("<b>\"x\"</b>".into()));
        assert_eq!(out, "<p title=\"&lt;b&gt;&quot;x&quot;&lt;/b&gt;\">Hi &lt;b&gt;&quot;x&quot;&lt;/b&gt;</p>");
        assert!(compile_template("<a href=\"{{traits.u}}\">x</a>", Format::Html).is_err());
        assert!(compile_template("<script>{{traits.u}}</script>", Format::Html).is_err());
        assert!(compile_template("{{profile.x}}", Format::Text).is_err());
    }
}
