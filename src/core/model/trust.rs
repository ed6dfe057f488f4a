//! Who an event may say it is from: identity tokens (a site backend's proof of a browser's user id), server keys
//! kept only as digests, and `vouch`, which decides per event which identity claims a browser source proved.
//!
//! A browser source's write key is public (it is in every page), so whatever a browser says about who it is
//! counts only with proof. Its own anonymous id is its own; a user id counts when a token made with the shared
//! identity secret names it, or when the browser's anonymous id already leads to that user's profile (a link
//! proven earlier). Everything else it claims (an unproven user id, identifier traits, external ids, an alias of
//! another id) is kept only as an unverified claim on its own anonymous profile, never linked or indexed.

use crate::core::base::encoding::{base64url_decode, base64url_encode, hex};
use crate::core::base::time::Millis;
use crate::core::model::event::{Event, EventKind};
use crate::core::model::identity::{constant_time_eq, hmac_sha256, Identity, ANONYMOUS_ID, USER_ID};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Longer `context.identityToken` values are refused unread: a real HS256 token for a user id is far shorter.
pub const MAX_TOKEN_BYTES: usize = 2048;
/// Clocks of the site's backend and of the edge may disagree by this much about `exp` and `nbf`.
pub const CLOCK_LEEWAY_MS: Millis = 60_000;
/// Digests of server keys are written `sha256:<64 hex digits>`.
pub const KEY_DIGEST_PREFIX: &str = "sha256:";

/// Why an identity claim was not believed. Each is a code in the answer to the sender and a reason on the
/// visitor's profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimError {
    /// A browser sent a user id without a token.
    MissingToken,
    /// The token is not three base64url parts with JSON header and claims.
    MalformedToken,
    /// The header names another algorithm than HS256 (`none` included).
    UnsupportedAlgorithm,
    /// No identity secret made this signature.
    BadSignature,
    /// `exp` is in the past (or absent: tokens must expire).
    ExpiredToken,
    /// `nbf` is in the future.
    TokenNotYetValid,
    /// The token proves another user id than the one claimed.
    TokenForAnotherUser,
    /// The Worker has no identity secret, so no token can be checked.
    NoIdentitySecret,
    /// An alias from a browser names an id other than the browser's own anonymous id.
    AliasOfAnotherId,
}

impl ClaimError {
    pub fn code(self) -> &'static str {
        match self {
            ClaimError::MissingToken => "identity_unproven",
            ClaimError::MalformedToken => "invalid_identity_token",
            ClaimError::UnsupportedAlgorithm => "unsupported_token_algorithm",
            ClaimError::BadSignature => "invalid_token_signature",
            ClaimError::ExpiredToken => "expired_identity_token",
            ClaimError::TokenNotYetValid => "identity_token_not_yet_valid",
            ClaimError::TokenForAnotherUser => "identity_token_mismatch",
            ClaimError::NoIdentitySecret => "identity_proof_unavailable",
            ClaimError::AliasOfAnotherId => "alias_unproven",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ClaimError::MissingToken => {
                "a browser's userId counts only with context.identityToken from the site's backend; kept as an unverified claim"
            }
            ClaimError::MalformedToken => "context.identityToken is not an HS256 JWT; userId kept as an unverified claim",
            ClaimError::UnsupportedAlgorithm => {
                "context.identityToken must be signed with HS256; userId kept as an unverified claim"
            }
            ClaimError::BadSignature => {
                "context.identityToken is not signed with the identity secret; userId kept as an unverified claim"
            }
            ClaimError::ExpiredToken => {
                "context.identityToken has expired (or has no exp); userId kept as an unverified claim"
            }
            ClaimError::TokenNotYetValid => "context.identityToken is not valid yet (nbf); userId kept as an unverified claim",
            ClaimError::TokenForAnotherUser => {
                "context.identityToken proves another user id (sub); userId kept as an unverified claim"
            }
            ClaimError::NoIdentitySecret => {
                "this Worker has no identity secret (EDGECDP_IDENTITY_SECRET), so no userId from a browser can be proven"
            }
            ClaimError::AliasOfAnotherId => {
                "a browser may alias only its own anonymousId; previousId kept as an unverified claim"
            }
        }
    }

    /// The field of the event the refusal is about.
    pub fn field(self) -> &'static str {
        match self {
            ClaimError::MissingToken | ClaimError::NoIdentitySecret => "userId",
            ClaimError::AliasOfAnotherId => "previousId",
            _ => "context.identityToken",
        }
    }
}

/// Makes an HS256 JWT proving `user_id` until `expires_at`, as a site's backend does (and the demo's sign-in).
pub fn make_identity_token(secret: &[u8], user_id: &str, issued_at: Millis, expires_at: Millis) -> String {
    let claims = serde_json::json!({"sub": user_id, "iat": issued_at / 1000, "exp": expires_at / 1000});
    sign_token(secret, &claims)
}

/// `make_identity_token` that also proves the user's e-mail address (`email` with `email_verified`), as a site's
/// backend does once it has verified the address (the demo's sign-in does, for the address typed).
pub fn make_identity_token_proving_email(
    secret: &[u8],
    user_id: &str,
    email: &str,
    issued_at: Millis,
    expires_at: Millis,
) -> String {
    let claims = serde_json::json!({"sub": user_id, "iat": issued_at / 1000, "exp": expires_at / 1000,
        "email": email, "email_verified": true});
    sign_token(secret, &claims)
}

fn sign_token(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = base64url_encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = base64url_encode(claims.to_string().as_bytes());
    let signed = [header.as_str(), ".", body.as_str()].concat();
    let signature = base64url_encode(&hmac_sha256(secret, signed.as_bytes()));
    [signed, ".".into(), signature].concat()
}

/// What a valid identity token proves besides its user id: contact points the site's backend verified, as trait
/// name and value. OpenID Connect's claims are read as they are named there: `email` counts only with
/// `"email_verified": true`, `phone_number` (set as the `phone` trait) only with `"phone_number_verified": true`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenClaims {
    pub contacts: Vec<(String, String)>,
}

/// The longest contact point a token may prove (an e-mail address is at most 254 characters).
pub const MAX_CONTACT_CHARS: usize = 320;

/// Checks that `token` is an HS256 JWT made with one of `secrets` (the current one and, while a rotation is under
/// way, the previous one) whose `sub` is `user_id` and which has not expired at `now`; answers the contact points
/// it proves.
pub fn verify_identity_token(
    token: &str,
    user_id: &str,
    secrets: &[&[u8]],
    now: Millis,
) -> Result<TokenClaims, ClaimError> {
    if secrets.is_empty() {
        return Err(ClaimError::NoIdentitySecret);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ClaimError::MalformedToken);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(body), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimError::MalformedToken);
    };
    let json = |part: &str| -> Result<serde_json::Map<String, serde_json::Value>, ClaimError> {
        let bytes = base64url_decode(part).ok_or(ClaimError::MalformedToken)?;
        match serde_json::from_slice(&bytes) {
            Ok(serde_json::Value::Object(o)) => Ok(o),
            _ => Err(ClaimError::MalformedToken),
        }
    };
    let header = json(header)?;
    // The algorithm is fixed here, never taken from the token: `alg: none` or an asymmetric name is refused
    // before any signature is looked at, and so is a header that asks for extensions we do not implement.
    if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") || header.contains_key("crit") {
        return Err(ClaimError::UnsupportedAlgorithm);
    }
    let sent = base64url_decode(signature).filter(|s| s.len() == 32).ok_or(ClaimError::BadSignature)?;
    let signed = &token[..token.len() - signature.len() - 1];
    let valid = secrets.iter().any(|s| constant_time_eq(&hmac_sha256(s, signed.as_bytes()), &sent));
    if !valid {
        return Err(ClaimError::BadSignature);
    }
    let claims = json(body)?;
    let seconds = |k: &str| claims.get(k).and_then(|v| v.as_f64()).map(|s| (s * 1000.0) as Millis);
    match seconds("exp") {
        Some(exp) if exp + CLOCK_LEEWAY_MS > now => {}
        _ => return Err(ClaimError::ExpiredToken),
    }
    if seconds("nbf").is_some_and(|nbf| nbf - CLOCK_LEEWAY_MS > now) {
        return Err(ClaimError::TokenNotYetValid);
    }
    if claims.get("sub").and_then(|s| s.as_str()) != Some(user_id) {
        return Err(ClaimError::TokenForAnotherUser);
    }
    let mut contacts = Vec::new();
    for (claim, verified, name) in
        [("email", "email_verified", "email"), ("phone_number", "phone_number_verified", "phone")]
    {
        let value = claims.get(claim).and_then(|v| v.as_str()).map(str::trim);
        let value = value.filter(|v| !v.is_empty() && v.chars().count() <= MAX_CONTACT_CHARS);
        if let (Some(value), Some(true)) = (value, claims.get(verified).and_then(|v| v.as_bool())) {
            contacts.push((name.to_string(), value.to_string()));
        }
    }
    Ok(TokenClaims { contacts })
}

/// The digest under which a server key is stored: `sha256:<hex>`. The configuration keeps only this, so reading
/// it (or the KV value it lives in) does not reveal the key.
pub fn key_digest(key: &str) -> String {
    [KEY_DIGEST_PREFIX, &hex(&Sha256::digest(key.as_bytes()))].concat()
}

/// Whether `key` is the key behind `digest`, compared without an early exit.
pub fn key_matches(key: &str, digest: &str) -> bool {
    constant_time_eq(key_digest(key).as_bytes(), digest.as_bytes())
}

/// Whether `digest` has the form `key_digest` writes.
pub fn is_key_digest(digest: &str) -> bool {
    digest.strip_prefix(KEY_DIGEST_PREFIX).is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a request came from a browser, by the marks browsers add and a server's HTTP client does not: an
/// `Origin` (a cross-origin request, or any POST), or the Fetch Metadata headers. `Sec-Fetch-Site` and
/// `Sec-Fetch-Dest` come from browsers only; `Sec-Fetch-Mode` alone is not enough, because Node's `fetch` (undici)
/// sends `Sec-Fetch-Mode: cors` on every request, so only the modes a server never sends count (`navigate`,
/// `no-cors`, `same-origin`, `websocket`). A server key or the admin token in such a request has been seen by a
/// page, so it is refused: a same-origin GET carries no `Origin`, and must not slip through for that.
pub fn is_browser_request(origin: bool, site: Option<&str>, mode: Option<&str>, dest: Option<&str>) -> bool {
    let present = |v: Option<&str>| v.is_some_and(|v| !v.trim().is_empty());
    origin
        || present(site)
        || present(dest)
        || mode.is_some_and(|m| {
            let m = m.trim();
            ["navigate", "no-cors", "same-origin", "websocket"].iter().any(|b| m.eq_ignore_ascii_case(b))
        })
}

/// Whether a browser's user ids must be proven (the default) or are believed as sent (`identityProof: "off"`,
/// which the Worker warns about at every configuration load).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    Required,
    Off,
}

/// One claim of an event that was not believed: the position of the event in the list given to `vouch`.
#[derive(Clone, Debug, PartialEq)]
pub struct RefusedClaim {
    pub position: usize,
    pub error: ClaimError,
}

/// Applies a browser source's trust to its events, in place, and says which claims it refused. Each event is
/// marked as from a browser (its identifier traits and external ids stay claims); a user id that is neither
/// proven by a token nor already linked to the event's anonymous id (`index`: what the identity index says) is
/// taken off the event and kept as an unverified claim, as is an alias of an id that is not the browser's own.
/// The tokens are consumed: none travels further than this check.
pub fn vouch(
    events: &mut [Event],
    proof: Proof,
    secrets: &[&[u8]],
    index: &BTreeMap<Identity, String>,
    now: Millis,
) -> Vec<RefusedClaim> {
    let mut refused = Vec::new();
    for (position, e) in events.iter_mut().enumerate() {
        e.from_browser = true;
        let token = e.identity_token.take();
        if let (Some(user), Proof::Required) = (e.user_id.clone(), proof) {
            let linked = e.anonymous_id.as_ref().is_some_and(|a| {
                let of_anonymous = index.get(&Identity::new(ANONYMOUS_ID, a));
                of_anonymous.is_some() && of_anonymous == index.get(&Identity::new(USER_ID, &user))
            });
            // A token is checked even for a user id already linked: it may prove contact points too.
            let checked = match &token {
                Some(t) => verify_identity_token(t, &user, secrets, now),
                None if secrets.is_empty() => Err(ClaimError::NoIdentitySecret),
                None => Err(ClaimError::MissingToken),
            };
            match checked {
                Ok(claims) => e.proven_contacts = claims.contacts,
                Err(_) if linked => {}
                Err(error) => {
                    e.user_id = None;
                    e.unproven.push((Identity::new(USER_ID, &user), error.code().to_string()));
                    refused.push(RefusedClaim { position, error });
                }
            }
        }
        // An alias links its previous id to the user's profile: from a browser, only the browser's own
        // anonymous id may be linked that way; any other id stays a claim.
        if let EventKind::Alias { previous_id } = &mut e.kind {
            if e.anonymous_id.as_deref() != Some(previous_id.as_str()) && e.user_id.is_some() {
                e.unproven.push((Identity::new(ANONYMOUS_ID, previous_id), ClaimError::AliasOfAnotherId.code().into()));
                refused.push(RefusedClaim { position, error: ClaimError::AliasOfAnotherId });
                *previous_id = e.anonymous_id.clone().or_else(|| e.user_id.clone()).unwrap_or_default();
            }
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::event::Event;

    const SECRET: &[u8] = b"a shared identity secret, 32 bytes";
    const NOW: Millis = 1_780_000_000_000;
    const HOUR: Millis = 3_600_000;

    fn token(user: &str, exp: Millis) -> String {
        make_identity_token(SECRET, user, NOW, exp)
    }

    #[test]
    fn tokens_made_here_verify_and_match_a_known_jwt() {
        assert!(verify_identity_token(&token("alice", NOW + HOUR), "alice", &[SECRET], NOW).is_ok());
        // Made by a reference implementation (Python: hmac + base64.urlsafe_b64encode, padding stripped) for
        // secret "secret", {"alg":"HS256","typ":"JWT"} and {"sub":"u1","exp":4102444800}.
        let reference = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsImV4cCI6NDEwMjQ0NDgwMH0.\
                         8UAoCbnHjNaWv5XovpBDsBNjWGKcwQA5bvtK0ioWIGI";
        assert!(verify_identity_token(reference, "u1", &[b"secret"], NOW).is_ok());
    }

    #[test]
    fn every_kind_of_bad_token_is_refused_with_its_own_code() {
        let good = token("alice", NOW + HOUR);
        let (head, rest) = good.split_once('.').unwrap();
        let none_alg = [base64url_encode(br#"{"alg":"none"}"#).as_str(), ".", rest].concat();
        let rs256 = [base64url_encode(br#"{"alg":"RS256"}"#).as_str(), ".", rest].concat();
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        type Case<'a> = (&'a str, String, &'a str, &'a [&'a [u8]], ClaimError);
        let cases: [Case; 11] = [
            (
                "forged",
                make_identity_token(b"guess", "alice", NOW, NOW + HOUR),
                "alice",
                &[SECRET],
                ClaimError::BadSignature,
            ),
            ("flipped signature", flipped, "alice", &[SECRET], ClaimError::BadSignature),
            ("expired", token("alice", NOW - 2 * CLOCK_LEEWAY_MS), "alice", &[SECRET], ClaimError::ExpiredToken),
            ("other user", token("bob", NOW + HOUR), "alice", &[SECRET], ClaimError::TokenForAnotherUser),
            ("alg none", none_alg, "alice", &[SECRET], ClaimError::UnsupportedAlgorithm),
            ("alg RS256", rs256, "alice", &[SECRET], ClaimError::UnsupportedAlgorithm),
            ("two parts", [head, ".x"].concat(), "alice", &[SECRET], ClaimError::MalformedToken),
            ("not base64", "a.b.c!".into(), "alice", &[SECRET], ClaimError::MalformedToken),
            ("too long", "a".repeat(MAX_TOKEN_BYTES + 1), "alice", &[SECRET], ClaimError::MalformedToken),
            ("no secret", token("alice", NOW + HOUR), "alice", &[], ClaimError::NoIdentitySecret),
            ("padded", [good.as_str(), "="].concat(), "alice", &[SECRET], ClaimError::BadSignature),
        ];
        for (name, t, user, secrets, want) in cases {
            assert_eq!(verify_identity_token(&t, user, secrets, NOW).map(|_| ()), Err(want), "{name}");
        }
        // Every claim that decides validity, one row each: a token must expire, and must not be used early.
        let signed = |claims: serde_json::Value| sign_token(SECRET, &claims);
        let s = |ms: Millis| serde_json::json!(ms / 1000);
        let claim_rows: [(&str, serde_json::Value, Result<(), ClaimError>); 10] = [
            ("no exp", serde_json::json!({"sub": "alice"}), Err(ClaimError::ExpiredToken)),
            ("exp null", serde_json::json!({"sub": "alice", "exp": null}), Err(ClaimError::ExpiredToken)),
            ("exp as text", serde_json::json!({"sub": "alice", "exp": "4102444800"}), Err(ClaimError::ExpiredToken)),
            (
                "exp past the leeway",
                serde_json::json!({"sub": "alice", "exp": s(NOW - CLOCK_LEEWAY_MS - 1000)}),
                Err(ClaimError::ExpiredToken),
            ),
            (
                "exp inside the leeway",
                serde_json::json!({"sub": "alice", "exp": s(NOW - CLOCK_LEEWAY_MS + 2000)}),
                Ok(()),
            ),
            (
                "nbf in the future",
                serde_json::json!({"sub": "alice", "exp": s(NOW + HOUR), "nbf": s(NOW + CLOCK_LEEWAY_MS + 2000)}),
                Err(ClaimError::TokenNotYetValid),
            ),
            (
                "nbf inside the leeway",
                serde_json::json!({"sub": "alice", "exp": s(NOW + HOUR), "nbf": s(NOW + CLOCK_LEEWAY_MS - 2000)}),
                Ok(()),
            ),
            ("nbf past", serde_json::json!({"sub": "alice", "exp": s(NOW + HOUR), "nbf": s(NOW - HOUR)}), Ok(())),
            ("no sub", serde_json::json!({"exp": s(NOW + HOUR)}), Err(ClaimError::TokenForAnotherUser)),
            (
                "sub as number",
                serde_json::json!({"sub": 7, "exp": s(NOW + HOUR)}),
                Err(ClaimError::TokenForAnotherUser),
            ),
        ];
        // The edges: exactly at the leeway, and tokens exactly as long as allowed and one byte longer.
        let edge_rows: [(&str, serde_json::Value, Result<(), ClaimError>); 2] = [
            (
                "exp exactly a leeway ago",
                serde_json::json!({"sub": "alice", "exp": s(NOW - CLOCK_LEEWAY_MS)}),
                Err(ClaimError::ExpiredToken),
            ),
            (
                "nbf exactly a leeway ahead",
                serde_json::json!({"sub": "alice", "exp": s(NOW + HOUR), "nbf": s(NOW + CLOCK_LEEWAY_MS)}),
                Ok(()),
            ),
        ];
        for (name, claims, want) in edge_rows {
            assert_eq!(verify_identity_token(&signed(claims), "alice", &[SECRET], NOW).map(|_| ()), want, "{name}");
        }
        // Padding one character at a time grows the base64 by one or two: one of two spellings of the expiry
        // lands on every length.
        let of_length = |len: usize| {
            (0..3 * MAX_TOKEN_BYTES)
                .flat_map(|n| {
                    [s(NOW + HOUR), serde_json::json!((NOW + HOUR) as f64 / 1000.0 + 0.5)].map(move |e| (n, e))
                })
                .map(|(n, exp)| signed(serde_json::json!({"sub": "alice", "exp": exp, "pad": "a".repeat(n)})))
                .find(|t| t.len() == len)
                .expect("a token of that length")
        };
        let at_limit = of_length(MAX_TOKEN_BYTES);
        assert!(verify_identity_token(&at_limit, "alice", &[SECRET], NOW).is_ok(), "a token of exactly the limit");
        let over = of_length(MAX_TOKEN_BYTES + 1);
        assert_eq!(verify_identity_token(&over, "alice", &[SECRET], NOW).map(|_| ()), Err(ClaimError::MalformedToken));
        // The demo's sign-in proves the address it is given, and nothing else.
        let demo = make_identity_token_proving_email(SECRET, "alice", "ana@x.example", NOW, NOW + HOUR);
        let proven = verify_identity_token(&demo, "alice", &[SECRET], NOW).unwrap().contacts;
        assert_eq!(proven, vec![("email".to_string(), "ana@x.example".to_string())]);
        for (name, claims, want) in claim_rows {
            assert_eq!(verify_identity_token(&signed(claims), "alice", &[SECRET], NOW).map(|_| ()), want, "{name}");
        }
        // Within the leeway, and with the previous secret during a rotation.
        assert!(verify_identity_token(&token("alice", NOW - 1000), "alice", &[SECRET], NOW).is_ok());
        assert!(verify_identity_token(&token("alice", NOW + HOUR), "alice", &[b"new one", SECRET], NOW).is_ok());
        // Contact points: only a claim its verified flag vouches for, as JSON true.
        let contact_rows: [(serde_json::Value, Vec<(&str, &str)>); 8] = [
            (
                serde_json::json!({"email": "ana@example.com", "email_verified": true}),
                vec![("email", "ana@example.com")],
            ),
            (serde_json::json!({"email": "ana@example.com"}), vec![]),
            (serde_json::json!({"email": "ana@example.com", "email_verified": false}), vec![]),
            (serde_json::json!({"email": "ana@example.com", "email_verified": "true"}), vec![]),
            (serde_json::json!({"email": 7, "email_verified": true}), vec![]),
            (serde_json::json!({"email": "x".repeat(MAX_CONTACT_CHARS + 1), "email_verified": true}), vec![]),
            (serde_json::json!({"phone_number": "+44 20", "phone_number_verified": true}), vec![("phone", "+44 20")]),
            (
                serde_json::json!({"phone_number": "+44 20", "email_verified": true, "email": "a@b.c", "phone_number_verified": false}),
                vec![("email", "a@b.c")],
            ),
        ];
        for (extra, want) in contact_rows {
            let mut claims = serde_json::json!({"sub": "alice", "exp": s(NOW + HOUR)});
            for (k, v) in extra.as_object().unwrap() {
                claims[k] = v.clone();
            }
            let got = verify_identity_token(&signed(claims.clone()), "alice", &[SECRET], NOW).unwrap().contacts;
            let want: Vec<(String, String)> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(got, want, "{claims}");
        }
    }

    #[test]
    fn a_browser_is_known_by_its_origin_or_its_fetch_metadata() {
        type Row<'a> = (bool, Option<&'a str>, Option<&'a str>, Option<&'a str>, bool);
        let rows: [Row; 12] = [
            (false, None, None, None, false),
            (true, None, None, None, true),
            // A same-origin GET from a page: no Origin, but the metadata.
            (false, Some("same-origin"), Some("cors"), Some("empty"), true),
            (false, Some("none"), Some("navigate"), Some("document"), true),
            (false, Some("cross-site"), None, None, true),
            (false, None, None, Some("image"), true),
            (false, None, Some("no-cors"), None, true),
            (false, None, Some("Navigate"), None, true),
            (false, None, Some("same-origin"), None, true),
            // Node's fetch sends this on every request: a server, not a browser.
            (false, None, Some("cors"), None, false),
            (false, Some(""), Some(" "), Some(""), false),
            (false, None, Some("websocket"), None, true),
        ];
        for (origin, site, mode, dest, want) in rows {
            assert_eq!(is_browser_request(origin, site, mode, dest), want, "{origin} {site:?} {mode:?} {dest:?}");
        }
    }

    #[test]
    fn server_keys_are_kept_as_digests() {
        let d = key_digest("s3rver-key");
        assert!(is_key_digest(&d) && !d.contains("s3rver"));
        assert!(key_matches("s3rver-key", &d));
        assert!(!key_matches("s3rver-kez", &d) && !key_matches("", &d));
        assert!(!is_key_digest("sha256:xyz") && !is_key_digest("md5:00"));
        assert!(!is_key_digest(&["sha256:", &"z".repeat(64)].concat()), "64 characters, not hex");
        assert!(!is_key_digest(&["sha256:", &"a".repeat(63)].concat()), "hex, one short");
        assert!(is_key_digest(&["sha256:", &"aF".repeat(32)].concat()));
    }

    fn event(anonymous: &str, user: Option<&str>, token: Option<String>) -> Event {
        let mut e = Event::new(
            "m1".into(),
            Some(anonymous.into()),
            user.map(String::from),
            NOW,
            EventKind::Identify { traits: Default::default() },
        );
        e.identity_token = token;
        e
    }

    #[test]
    fn vouch_keeps_proven_and_linked_user_ids_and_refuses_the_rest() {
        let linked = BTreeMap::from([
            (Identity::new(ANONYMOUS_ID, "a2"), "p_alice".to_string()),
            (Identity::new(USER_ID, "alice"), "p_alice".to_string()),
        ]);
        let mut events = vec![
            event("a1", Some("alice"), Some(token("alice", NOW + HOUR))),
            event("a2", Some("alice"), None),
            event("a3", Some("alice"), None),
            event("a4", Some("alice"), Some(token("bob", NOW + HOUR))),
            event("a5", None, None),
        ];
        let refused = vouch(&mut events, Proof::Required, &[SECRET], &linked, NOW);
        assert_eq!(
            refused,
            vec![
                RefusedClaim { position: 2, error: ClaimError::MissingToken },
                RefusedClaim { position: 3, error: ClaimError::TokenForAnotherUser },
            ]
        );
        let users: Vec<_> = events.iter().map(|e| e.user_id.as_deref()).collect();
        assert_eq!(users, [Some("alice"), Some("alice"), None, None, None]);
        assert_eq!(events[2].unproven, vec![(Identity::new(USER_ID, "alice"), "identity_unproven".to_string())]);
        assert!(events.iter().all(|e| e.from_browser && e.identity_token.is_none()));

        let mut off = vec![event("a3", Some("alice"), None)];
        assert!(vouch(&mut off, Proof::Off, &[], &BTreeMap::new(), NOW).is_empty());
        assert_eq!(off[0].user_id.as_deref(), Some("alice"));
    }

    #[test]
    fn a_browser_aliases_only_its_own_anonymous_id() {
        // An alias from browser a1, signed in as alice with a token, of `previous`.
        let alias = |previous: &str| {
            let mut e = Event::new(
                "m".into(),
                Some("a1".into()),
                Some("alice".into()),
                NOW,
                EventKind::Alias { previous_id: previous.into() },
            );
            e.identity_token = Some(token("alice", NOW + HOUR));
            vec![e]
        };
        let mut events = alias("someone-else");
        let refused = vouch(&mut events, Proof::Required, &[SECRET], &BTreeMap::new(), NOW);
        assert_eq!(refused, vec![RefusedClaim { position: 0, error: ClaimError::AliasOfAnotherId }]);
        assert_eq!(events[0].kind, EventKind::Alias { previous_id: "a1".into() });
        assert_eq!(events[0].unproven[0].0, Identity::new(ANONYMOUS_ID, "someone-else"));
        // Its own anonymous id, with a proven user id: linked as sent.
        let mut own = alias("a1");
        assert!(vouch(&mut own, Proof::Required, &[SECRET], &BTreeMap::new(), NOW).is_empty());
        assert_eq!(own[0].kind, EventKind::Alias { previous_id: "a1".into() });
    }

    /// Every refusal has its own code and message, and names the field it is about.
    #[test]
    fn every_refusal_says_what_and_where() {
        use ClaimError::*;
        let all = [
            (MissingToken, "userId"),
            (MalformedToken, "context.identityToken"),
            (UnsupportedAlgorithm, "context.identityToken"),
            (BadSignature, "context.identityToken"),
            (ExpiredToken, "context.identityToken"),
            (TokenNotYetValid, "context.identityToken"),
            (TokenForAnotherUser, "context.identityToken"),
            (NoIdentitySecret, "userId"),
            (AliasOfAnotherId, "previousId"),
        ];
        let mut codes = std::collections::BTreeSet::new();
        let mut messages = std::collections::BTreeSet::new();
        for (e, field) in all {
            assert_eq!(e.field(), field, "{e:?}");
            assert!(codes.insert(e.code()) && e.code().chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{e:?}");
            assert!(messages.insert(e.message()) && e.message().len() > 20, "{e:?}");
        }
        // Without any identity secret, a user id cannot be proven, and the answer says why.
        let mut events = vec![event("a1", Some("alice"), None)];
        let refused = vouch(&mut events, Proof::Required, &[], &BTreeMap::new(), NOW);
        assert_eq!(refused, vec![RefusedClaim { position: 0, error: NoIdentitySecret }]);
    }
}
