//! The stored binary formats: a version byte, then bincode. Every byte string that leaves the core for
//! storage or for the hop to the profile writer goes through here, so the codec can be replaced (bincode is
//! unmaintained, RUSTSEC-2025-0141) by adding a version, without touching the rest.

use crate::core::profile::{ApplyRequest, Profile};
use serde::{de::DeserializeOwned, Serialize};

/// Version 1 of the stored profile: bincode 2 (standard configuration, serde) of `Profile`.
pub const PROFILE_V1: u8 = 1;
/// Version 1 of the writer request: bincode 2 of `ApplyRequest`.
pub const APPLY_V1: u8 = 1;

#[derive(Debug, Clone, PartialEq)]
pub enum CodecError {
    Empty,
    UnknownVersion(u8),
    Corrupt(String),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Empty => write!(f, "stored value is empty"),
            CodecError::UnknownVersion(v) => write!(f, "stored format version {v} is not known to this build"),
            CodecError::Corrupt(e) => write!(f, "stored value is corrupt: {e}"),
        }
    }
}

fn encode<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    // Encoding into a Vec cannot fail for these types: they hold no maps with non-string keys that bincode
    // rejects, and no sequences of unknown length.
    match bincode::serde::encode_to_vec(value, bincode::config::standard()) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        Err(_) => unreachable!("bincode encoding into memory does not fail for core types"),
    }
    out
}

fn decode<T: DeserializeOwned>(expected: u8, bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != expected {
        return Err(CodecError::UnknownVersion(version));
    }
    let (value, used) = bincode::serde::decode_from_slice(body, bincode::config::standard())
        .map_err(|e| CodecError::Corrupt(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Corrupt(format!("{} trailing bytes", body.len() - used)));
    }
    Ok(value)
}

pub fn encode_profile(p: &Profile) -> Vec<u8> {
    encode(PROFILE_V1, p)
}

pub fn decode_profile(bytes: &[u8]) -> Result<Profile, CodecError> {
    decode(PROFILE_V1, bytes)
}

pub fn encode_apply(r: &ApplyRequest) -> Vec<u8> {
    encode(APPLY_V1, r)
}

pub fn decode_apply(bytes: &[u8]) -> Result<ApplyRequest, CodecError> {
    decode(APPLY_V1, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::consent::{ConsentPolicy, RequestSignals};
    use crate::core::profile::apply_events;
    use crate::core::wire::parse_batch;

    fn sample() -> Profile {
        let body = r#"{"batch":[{"type":"identify","anonymousId":"a","userId":"u","traits":{"n":1.5,"tags":["x"],"o":{"k":null}},
            "context":{"consent":{"categoryPreferences":{"analytics":true}}}},
            {"type":"track","event":"Order Completed","anonymousId":"a","properties":{"revenue":30}}]}"#;
        let events = parse_batch(body.as_bytes(), 1_000).unwrap().events;
        let req = ApplyRequest { profile_id: "p".into(), signals: RequestSignals::default(), events };
        apply_events(None, req, &ConsentPolicy::default()).0.unwrap()
    }

    #[test]
    fn profile_round_trips_with_a_version_byte() {
        let p = sample();
        let bytes = encode_profile(&p);
        assert_eq!(bytes[0], PROFILE_V1);
        assert_eq!(decode_profile(&bytes).unwrap(), p);
    }

    #[test]
    fn unknown_versions_and_damage_are_errors_not_panics() {
        let mut bytes = encode_profile(&sample());
        assert_eq!(decode_profile(&[]), Err(CodecError::Empty));
        bytes[0] = 99;
        assert_eq!(decode_profile(&bytes), Err(CodecError::UnknownVersion(99)));
        bytes[0] = PROFILE_V1;
        for cut in [1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert!(matches!(decode_profile(&bytes[..cut]), Err(CodecError::Corrupt(_))), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode_profile(&longer), Err(CodecError::Corrupt(_))));
    }
}
