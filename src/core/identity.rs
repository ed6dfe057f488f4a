//! Identities and how they lead to a profile.
//!
//! An identity is a typed value (`anonymous_id:abc`). The first identity that reaches the edge names the
//! profile: its id is a digest of that identity, so that two first events for the same new visitor that
//! arrive at once go to the same profile (and the same Durable Object) without any coordination.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ANONYMOUS_ID: &str = "anonymous_id";
pub const USER_ID: &str = "user_id";
pub const EMAIL: &str = "email";

/// One identifier held by a profile.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identity {
    pub kind: String,
    pub value: String,
}

impl Identity {
    pub fn new(kind: &str, value: &str) -> Identity {
        Identity { kind: kind.to_string(), value: value.to_string() }
    }

    /// The text form used in URLs and store keys: `type:value`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.kind, self.value)
    }

    /// Parses `type:value`; the value may itself contain colons.
    pub fn parse_key(s: &str) -> Option<Identity> {
        let (kind, value) = s.split_once(':')?;
        let kind_ok =
            !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
        (kind_ok && !value.is_empty()).then(|| Identity::new(kind, value))
    }

    /// The profile id that this identity names when it is the first one seen.
    pub fn profile_id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"edgecdp/profile\0");
        h.update(self.key().as_bytes());
        let digest = h.finalize();
        let mut id = String::with_capacity(34);
        id.push_str("p_");
        for b in &digest[..16] {
            id.push_str(&format!("{b:02x}"));
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_profile_ids_are_stable() {
        let id = Identity::parse_key("user_id:a:b").unwrap();
        assert_eq!(id, Identity::new("user_id", "a:b"));
        assert_eq!(id.key(), "user_id:a:b");
        assert_eq!(id.profile_id(), Identity::new("user_id", "a:b").profile_id());
        assert_ne!(id.profile_id(), Identity::new("anonymous_id", "a:b").profile_id());
        assert_eq!(id.profile_id().len(), 34);
        assert!(Identity::parse_key("nocolon").is_none());
        assert!(Identity::parse_key("Bad Type:x").is_none());
        assert!(Identity::parse_key("user_id:").is_none());
    }
}
