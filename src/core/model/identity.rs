//! Identities and how they lead to a profile.
//!
//! An identity is a typed value (`anonymous_id:abc`). The first identity that reaches the edge names the
//! profile: its id is a digest of that identity, so that two first events for the same new visitor that
//! arrive at once go to the same profile (and the same Durable Object) without any coordination.

use crate::core::base::encoding::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ANONYMOUS_ID: &str = "anonymous_id";
pub const USER_ID: &str = "user_id";
pub const EMAIL: &str = "email";
pub const PHONE: &str = "phone";
/// The longest identity index key kept as is: under KV's 512-byte limit, with room to spare.
pub const MAX_INDEX_KEY_BYTES: usize = 480;

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

    /// The identity index key in KV: `idx:<type>:<value>`, or `idh:<type>:<hex SHA-256 of the value>` when that
    /// would pass `MAX_INDEX_KEY_BYTES` (KV refuses keys over 512 bytes, and an allowed id of 256 characters can
    /// be over 1 KB of UTF-8; an e-mail trait can be longer still). The two prefixes cannot collide.
    pub fn index_key(&self) -> String {
        let key = ["idx:", &self.kind, ":", &self.value].concat();
        if key.len() <= MAX_INDEX_KEY_BYTES {
            key
        } else {
            ["idh:", &self.kind, ":", &hex(&Sha256::digest(self.value.as_bytes()))].concat()
        }
    }

    /// The KV key that says, for a minute after an erasure, that this identity's person was just erased:
    /// `erased:<hex SHA-256 of type:value>`, so that the marker itself holds nothing of the person in clear.
    pub fn erased_key(&self) -> String {
        ["erased:", &hex(&Sha256::digest(self.key().as_bytes()))].concat()
    }

    /// The profile id that this identity names when it is the first one seen: keyed with a Worker secret
    /// (`ProfileIdKey`), so that it is the same for concurrent first events of one person (they reach one
    /// writer) but nobody who knows a user id can compute, and so confirm, that person's profile id. Profiles made
    /// before the key keep their (unkeyed) ids: the identity index leads to them, not this function.
    pub fn profile_id(&self, key: &ProfileIdKey) -> String {
        let mac = hmac_sha256(&key.0, ["edgecdp/profile\0", &self.key()].concat().as_bytes());
        ["p_", &hex(&mac[..16])].concat()
    }
}

/// The key new profile ids are made with (`Identity::profile_id`), derived from a Worker secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileIdKey([u8; 32]);

impl std::fmt::Debug for ProfileIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProfileIdKey(..)")
    }
}

impl ProfileIdKey {
    /// The key for a secret; the secret itself is never used directly, so the same one may sign cookies too.
    pub fn of_secret(secret: &[u8]) -> ProfileIdKey {
        ProfileIdKey(hmac_sha256(secret, b"edgecdp/profile-id-key"))
    }
}

/// HMAC-SHA256 (RFC 2104), for signing the first-party id cookie.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Whether an anonymous id can travel in a cookie value unquoted and be trusted as a key (`[A-Za-z0-9_-]`,
/// 1 to 128 characters: UUIDs and Segment's ids qualify).
pub fn cookie_safe(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Signs an anonymous id for the first-party cookie: `<id>.<hex HMAC-SHA256(secret, id)>`. Whoever does not
/// hold the secret cannot make a cookie that carries someone else's id.
pub fn sign_id(secret: &[u8], id: &str) -> String {
    format!("{id}.{}", hex(&hmac_sha256(secret, id.as_bytes())))
}

/// Returns the id a signed cookie value carries, or `None` when it is malformed or its signature is wrong.
pub fn verify_signed_id(secret: &[u8], value: &str) -> Option<String> {
    let (id, sig) = value.rsplit_once('.')?;
    if !cookie_safe(id) || sig.len() != 64 {
        return None;
    }
    let expected = hex(&hmac_sha256(secret, id.as_bytes()));
    constant_time_eq(expected.as_bytes(), sig.as_bytes()).then(|| id.to_string())
}

/// Compares without an early exit, so that timing does not reveal how much of a guess was right. The length
/// is not secret (a digest's is fixed; a token's is public).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in b.iter().enumerate() {
        diff |= x ^ a.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Normalizes and hashes an identifier that is stored hashed: e-mail addresses are trimmed and lower-cased,
/// phone numbers keep a leading `+` and their digits. The result is `sha256:<hex>`, so that a hashed value is
/// never mistaken for a clear one.
pub fn hash_identifier(kind: &str, value: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(normalize_identifier(kind, value).as_bytes())))
}

/// The normalized form of an identifier value: e-mail addresses trimmed and lower-cased, phone numbers with a
/// leading `+` and digits only, other types trimmed.
pub fn normalize_identifier(kind: &str, value: &str) -> String {
    match kind {
        "phone" => {
            let t = value.trim();
            let digits: String = t.chars().filter(char::is_ascii_digit).collect();
            if t.starts_with('+') {
                format!("+{digits}")
            } else {
                digits
            }
        }
        EMAIL => value.trim().to_lowercase(),
        _ => value.trim().to_string(),
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
        let key = ProfileIdKey::of_secret(b"a profile id secret");
        assert_eq!(id.profile_id(&key), Identity::new("user_id", "a:b").profile_id(&key));
        assert_ne!(id.profile_id(&key), Identity::new("anonymous_id", "a:b").profile_id(&key));
        assert_eq!(id.profile_id(&key).len(), 34);
        // Without the secret, a profile id cannot be computed from an identity: another key, another id, and not
        // the unkeyed digest ids were once made with.
        let other = ProfileIdKey::of_secret(b"another secret");
        assert_ne!(id.profile_id(&key), id.profile_id(&other));
        let mut unkeyed = Sha256::new();
        unkeyed.update(b"edgecdp/profile\0");
        unkeyed.update(id.key().as_bytes());
        let unkeyed = ["p_", &hex(&unkeyed.finalize()[..16])].concat();
        assert_ne!(id.profile_id(&key), unkeyed);
        assert!(Identity::parse_key("nocolon").is_none());
        assert!(Identity::parse_key("Bad Type:x").is_none());
        assert!(Identity::parse_key("user_id:").is_none());
    }

    #[test]
    fn index_keys_stay_within_kv_limits_for_any_value() {
        assert_eq!(Identity::new("email", "a@x.com").index_key(), "idx:email:a@x.com");
        let cases = ["é".repeat(256), "😀".repeat(256), format!("{}@x.com", "a".repeat(5000))];
        let mut keys = std::collections::BTreeSet::new();
        for value in cases {
            let key = Identity::new("anonymous_id", &value).index_key();
            assert!(key.len() <= 512 && key.starts_with("idh:anonymous_id:"), "{key}");
            assert_eq!(key, Identity::new("anonymous_id", &value).index_key(), "stable");
            keys.insert(key);
        }
        assert_eq!(keys.len(), 3, "distinct values keep distinct keys");
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn signed_ids_verify_and_forgeries_do_not() {
        let secret = b"s3cret";
        let cookie = sign_id(secret, "3f1c-visitor");
        assert_eq!(verify_signed_id(secret, &cookie).as_deref(), Some("3f1c-visitor"));
        assert_eq!(verify_signed_id(b"other", &cookie), None, "another key");
        let forged = cookie.replacen("3f1c", "0000", 1);
        assert_eq!(verify_signed_id(secret, &forged), None, "another id with the old signature");
        assert_eq!(verify_signed_id(secret, "3f1c-visitor"), None, "unsigned");
        assert_eq!(verify_signed_id(secret, "a;b.00"), None, "unsafe characters");
        let truncated = &cookie[..cookie.len() - 1];
        assert_eq!(verify_signed_id(secret, truncated), None);
        assert!(!cookie_safe("has space") && !cookie_safe("") && cookie_safe("550e8400-e29b-41d4-a716-446655440000"));
    }

    #[test]
    fn identifiers_are_normalized_before_hashing() {
        assert_eq!(hash_identifier("email", "  Ada@Example.COM "), hash_identifier("email", "ada@example.com"));
        assert_eq!(hash_identifier("phone", "+44 (20) 7946-0000"), hash_identifier("phone", "+442079460000"));
        assert_ne!(hash_identifier("phone", "442079460000"), hash_identifier("phone", "+442079460000"));
        // SHA-256 of "ada@example.com".
        assert_eq!(
            hash_identifier("email", "ada@example.com"),
            format!("sha256:{}", hex(&Sha256::digest(b"ada@example.com")))
        );
        assert!(hash_identifier("email", "x").starts_with("sha256:"));
    }
}
