//! Decisions: which block (and variant) each slot shows to a visitor, and the content templates that fill
//! blocks with profile data.

use crate::core::config::Config;
use crate::core::consent::Permitted;
use crate::core::profile::Profile;
use crate::core::segment::{evaluate_all, Condition};
use crate::core::time::Millis;
use crate::core::value::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One piece of a compiled template.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    /// `{{traits.name}}` or `{{traits.name|default}}`: the trait's value, HTML-escaped; the default (also
    /// escaped) or nothing when the profile lacks it.
    Trait {
        name: String,
        default: String,
    },
}

/// Content with placeholders, compiled once.
#[derive(Clone, Debug, PartialEq)]
pub struct Template(pub Vec<Part>);

impl Template {
    /// Compiles `text`, or explains what is wrong with it.
    pub fn compile(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
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
                    parts.push(Part::Trait { name: t.to_string(), default: default.to_string() })
                }
                _ => {
                    return Err(format!(
                        "unknown placeholder {{{{{name}}}}}; expected {{{{traits.<name>}}}} or {{{{traits.<name>|default}}}}"
                    ))
                }
            }
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template(parts))
    }

    pub fn render(&self, profile: Option<&Profile>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Trait { name, default } => {
                    let value = profile.and_then(|p| p.traits.get(name)).map(|t| display(&t.value));
                    match value.filter(|v| !v.is_empty()) {
                        Some(v) => escape_html_into(&v, &mut out),
                        None => escape_html_into(default, &mut out),
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

#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub id: String,
    pub weight: u32,
    pub html: Template,
}

/// A frequency cap ("at most `max` impressions per `per`"). Parsed and validated; it is enforced once
/// impressions are recorded (the decisions issue).
#[derive(Clone, Debug, PartialEq)]
pub struct Cap {
    pub max: u32,
    pub per: Millis,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub id: String,
    pub audience: Condition,
    pub priority: i64,
    pub start: Option<Millis>,
    pub end: Option<Millis>,
    pub cap: Option<Cap>,
    /// Never empty; weights sum to more than zero.
    pub variants: Vec<Variant>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    pub fallback: Template,
    /// Highest priority first; equal priorities keep configuration order.
    pub blocks: Vec<Block>,
}

/// What one slot shows.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotAnswer {
    pub block: Option<String>,
    pub variant: Option<String>,
    pub html: String,
}

/// A requested slot that the configuration does not define.
#[derive(Clone, Debug, PartialEq)]
pub struct UnknownSlot {
    pub index: usize,
    pub slot: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub profile_id: Option<String>,
    pub segments: Vec<String>,
    pub slots: BTreeMap<String, SlotAnswer>,
    pub unknown: Vec<UnknownSlot>,
}

impl Decision {
    pub fn to_json(&self) -> serde_json::Value {
        let slots: serde_json::Map<String, serde_json::Value> = self
            .slots
            .iter()
            .map(|(k, a)| (k.clone(), serde_json::json!({"block": a.block, "variant": a.variant, "html": a.html})))
            .collect();
        let mut out = serde_json::json!({"profileId": self.profile_id, "segments": self.segments, "slots": slots});
        if !self.unknown.is_empty() {
            out["rejected"] = self
                .unknown
                .iter()
                .map(|u| {
                    serde_json::json!({"index": u.index, "code": "unknown_slot",
                        "message": format!("slot {:?} is not configured", u.slot), "path": format!("slots[{}]", u.index)})
                })
                .collect();
        }
        out
    }
}

/// The segments a profile belongs to, by id, in configuration order.
pub fn segments_of<'c>(config: &'c Config, profile: &Profile, now: Millis) -> Vec<&'c str> {
    let results = evaluate_all(&config.segments, &config.segment_order, profile, now);
    config.segments.iter().zip(results).filter(|(_, r)| *r).map(|(s, _)| s.id.as_str()).collect()
}

/// The configured computed traits' values for a profile, in configuration order.
pub fn computed_of<'c>(config: &'c Config, profile: &Profile, now: Millis) -> Vec<(&'c str, u64)> {
    config.computed.iter().map(|c| (c.id.as_str(), c.value(profile, now))).collect()
}

/// Chooses a block for each requested slot. Without a permitted profile (no profile yet, or no
/// personalization consent) every slot gets its fallback.
pub fn decide(config: &Config, subject: Option<Permitted<&Profile>>, slots: &[String], now: Millis) -> Decision {
    let profile = subject.as_ref().map(|p| *p.get());
    let results = profile.map(|p| evaluate_all(&config.segments, &config.segment_order, p, now));
    let mut decision = Decision {
        profile_id: profile.map(|p| p.id.clone()),
        segments: match &results {
            Some(r) => config.segments.iter().zip(r).filter(|(_, m)| **m).map(|(s, _)| s.id.clone()).collect(),
            None => Vec::new(),
        },
        slots: BTreeMap::new(),
        unknown: Vec::new(),
    };
    for (index, name) in slots.iter().enumerate() {
        let Some(slot) = config.slots.get(name) else {
            decision.unknown.push(UnknownSlot { index, slot: name.clone() });
            continue;
        };
        let chosen = match (profile, &results) {
            (Some(p), Some(r)) => {
                slot.blocks.iter().find(|b| eligible(b, p, now, r)).map(|b| (b, pick_variant(b, &p.id)))
            }
            _ => None,
        };
        let answer = match chosen {
            Some((block, variant)) => SlotAnswer {
                block: Some(block.id.clone()),
                variant: Some(variant.id.clone()),
                html: variant.html.render(profile),
            },
            None => SlotAnswer { block: None, variant: None, html: slot.fallback.render(None) },
        };
        decision.slots.insert(name.clone(), answer);
    }
    decision
}

fn eligible(block: &Block, profile: &Profile, now: Millis, segments: &[bool]) -> bool {
    block.start.is_none_or(|s| now >= s)
        && block.end.is_none_or(|e| now < e)
        && block.audience.holds(profile, now, segments)
}

/// Deterministic assignment: the same profile always gets the same variant of a block, on every platform.
fn pick_variant<'b>(block: &'b Block, profile_id: &str) -> &'b Variant {
    let total: u64 = block.variants.iter().map(|v| u64::from(v.weight)).sum();
    let mut h = Sha256::new();
    h.update(profile_id.as_bytes());
    h.update([0]);
    h.update(block.id.as_bytes());
    let digest = h.finalize();
    let mut n = [0u8; 8];
    n.copy_from_slice(&digest[..8]);
    let mut bucket = u64::from_be_bytes(n) % total.max(1);
    for v in &block.variants {
        if bucket < u64::from(v.weight) {
            return v;
        }
        bucket -= u64::from(v.weight);
    }
    // Unreachable when weights sum to `total`; the first variant is a safe answer either way.
    &block.variants[0]
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
            crate::core::profile::TraitEntry { value: Value::String("<script>x</script>".into()), at: 0 },
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
}
