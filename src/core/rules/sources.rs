//! Sources: where events come from, and how far each one's word is believed (browser: public write key,
//! identity proof; server: secret key kept as its digest).

use crate::core::rules::compiler::{at, idx, present, Compiler};
use serde_json::{Map, Value as J};

use crate::core::model::trust::{is_key_digest, key_digest, key_matches, Proof};

/// A place events come from, and how far its word is believed.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub id: String,
    pub kind: SourceKind,
    /// Browser origins allowed to send with this key (`*` allows any); a server source lists none.
    pub origins: Vec<String>,
}

/// The two kinds of source. A configuration written before there were kinds has browser sources only: their
/// write keys were always public, so nothing they said about identity was ever proven.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    /// A page's snippet: the write key is public (it is in the page), so identity claims count only with proof
    /// (`core::model::trust`), unless the configuration turns that off explicitly (`identityProof: "off"`).
    /// The contact points it sets (`email`, `phone`, what a destination addresses) are not proven either, so
    /// journeys do not send to them (`core::model::contact`), unless the configuration says `contactProof: "off"`.
    Browser { write_key: String, identity_proof: Proof, contact_proof: Proof },
    /// A site's backend or CMS: the key is a secret, kept here only as its digest (`trust::key_digest`); it is
    /// refused from any request that carries a browser `Origin`, and what the source says is believed.
    Server { key_digest: String },
}

impl Source {
    pub fn allows_origin(&self, origin: &str) -> bool {
        matches!(self.kind, SourceKind::Browser { .. })
            && self.origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    pub fn is_server(&self) -> bool {
        matches!(self.kind, SourceKind::Server { .. })
    }
}

/// The shortest server key accepted: shorter ones could be guessed, and with one any identity claimed.
pub const MIN_SERVER_KEY_CHARS: usize = 24;

/// Replaces every server source's clear `key` with its `keyHash`, so that the configuration is stored (and
/// shown by `GET /v1/config`) without the secret. Runs before a configuration is stored and before one is shown.
pub fn seal_server_keys(doc: &mut J) {
    let Some(sources) = doc.get_mut("sources").and_then(J::as_array_mut) else { return };
    for source in sources.iter_mut().filter_map(J::as_object_mut) {
        if let Some(J::String(key)) = source.get("key") {
            let digest = key_digest(key);
            source.remove("key");
            source.insert("keyHash".into(), J::String(digest));
        }
    }
}

impl Compiler {
    pub(crate) fn sources(&mut self, v: &J, path: &str) -> Vec<Source> {
        let mut out: Vec<Source> = Vec::new();
        let fields = ["id", "type", "writeKey", "origins", "identityProof", "contactProof", "key", "keyHash"];
        for (i, s) in self.array(v, path).into_iter().flatten().enumerate() {
            let p = idx(path, i);
            let Some(o) = self.object(s, &p, &fields) else {
                continue;
            };
            let id = self.id(o.get("id"), &at(&p, "id"));
            let kind = match o.get("type").map(|t| t.as_str()) {
                None | Some(Some("browser")) => self.browser_source(o, &p),
                Some(Some("server")) => self.server_source(o, &p),
                Some(_) => {
                    self.err(at(&p, "type"), "expected \"browser\" (a page's snippet, public write key) or \"server\" (a backend, secret key)");
                    None
                }
            };
            let mut origins = Vec::new();
            if let Some(list) = present(o, "origins") {
                for (j, origin) in self.array(list, &at(&p, "origins")).into_iter().flatten().enumerate() {
                    let op = idx(&at(&p, "origins"), j);
                    match origin.as_str() {
                        Some(s) if s == "*" || is_origin(s) => origins.push(s.to_string()),
                        _ => self.err(
                            op,
                            "expected an origin such as \"https://shop.example\" (scheme and host, no path) or \"*\"",
                        ),
                    }
                }
            }
            let Some(kind) = kind else { continue };
            if matches!(kind, SourceKind::Server { .. }) && !origins.is_empty() {
                self.err(at(&p, "origins"), "a server source is never used from a browser, so it lists no origins");
                continue;
            }
            let Some(id) = id else { continue };
            if out.iter().any(|s| s.id == id) {
                self.err(at(&p, "id"), format!("duplicate source id {id:?}"));
                continue;
            }
            let clash = out.iter().any(|other| match (&other.kind, &kind) {
                (SourceKind::Browser { write_key: a, .. }, SourceKind::Browser { write_key: b, .. }) => a == b,
                (SourceKind::Browser { write_key, .. }, SourceKind::Server { key_digest })
                | (SourceKind::Server { key_digest }, SourceKind::Browser { write_key, .. }) => {
                    key_matches(write_key, key_digest)
                }
                (SourceKind::Server { key_digest: a }, SourceKind::Server { key_digest: b }) => a == b,
            });
            if clash {
                let field = if matches!(kind, SourceKind::Server { .. }) { "key" } else { "writeKey" };
                self.err(at(&p, field), "another source has the same key");
            } else {
                out.push(Source { id, kind, origins });
            }
        }
        out
    }

    pub(crate) fn browser_source(&mut self, o: &Map<String, J>, p: &str) -> Option<SourceKind> {
        for secret in ["key", "keyHash"] {
            if o.contains_key(secret) {
                self.err(at(p, secret), "only a server source has a secret key (\"type\": \"server\")");
            }
        }
        let write_key = self.string(o.get("writeKey"), &at(p, "writeKey"));
        let identity_proof = self.proof(o, p, "identityProof");
        let contact_proof = self.proof(o, p, "contactProof");
        Some(SourceKind::Browser { write_key: write_key?, identity_proof, contact_proof })
    }

    /// `"required"` (the default) or `"off"`.
    fn proof(&mut self, o: &Map<String, J>, p: &str, key: &str) -> Proof {
        match present(o, key).map(|v| v.as_str()) {
            None | Some(Some("required")) => Proof::Required,
            Some(Some("off")) => Proof::Off,
            Some(_) => {
                self.err(at(p, key), "expected \"required\" (the default) or \"off\"");
                Proof::Required
            }
        }
    }

    pub(crate) fn server_source(&mut self, o: &Map<String, J>, p: &str) -> Option<SourceKind> {
        for browser_only in ["writeKey", "identityProof", "contactProof"] {
            if o.contains_key(browser_only) {
                self.err(at(p, browser_only), "a server source has a secret key, not a public write key");
            }
        }
        match (o.get("key"), o.get("keyHash")) {
            (Some(J::String(k)), None) if k.chars().count() >= MIN_SERVER_KEY_CHARS => {
                Some(SourceKind::Server { key_digest: key_digest(k) })
            }
            (Some(_), None) => {
                self.err(
                    at(p, "key"),
                    format!("a server key is a string of at least {MIN_SERVER_KEY_CHARS} random characters"),
                );
                None
            }
            (None, Some(J::String(d))) if is_key_digest(d) => {
                Some(SourceKind::Server { key_digest: d.to_ascii_lowercase() })
            }
            (None, Some(_)) => {
                self.err(at(p, "keyHash"), "expected \"sha256:\" and 64 hex digits (the SHA-256 of the key)");
                None
            }
            (Some(_), Some(_)) => {
                self.err(at(p, "key"), "give key or keyHash, not both");
                None
            }
            (None, None) => {
                self.err(at(p, "key"), "is required: the secret key (stored only as its hash) or keyHash");
                None
            }
        }
    }
}

/// A browser origin as the `Origin` header carries it: `http://` or `https://`, then a host (and port), with no
/// path, query or fragment. One with a path (`https://shop.example/app`) could never match a browser.
fn is_origin(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains(['/', '?', '#']) && !r.chars().any(char::is_whitespace))
}
