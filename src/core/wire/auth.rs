//! Write keys from HTTP Basic `Authorization` headers, as Segment's libraries send them.

use crate::core::base::encoding::base64_decode_lenient;

/// Reads the write key from an HTTP Basic `Authorization` header: the key is the user name and the password
/// is empty, as Segment's libraries send it.
pub fn write_key_from_basic_auth(header: &str) -> Option<String> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode_lenient(encoded.trim())?).ok()?;
    let user = decoded.split_once(':').map_or(decoded.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_carries_the_write_key_as_user_name() {
        // "demo:" in base64.
        assert_eq!(write_key_from_basic_auth("Basic ZGVtbzo=").as_deref(), Some("demo"));
        assert_eq!(write_key_from_basic_auth("basic ZGVtbw").as_deref(), Some("demo"));
        assert_eq!(write_key_from_basic_auth("Bearer ZGVtbzo="), None);
        assert_eq!(write_key_from_basic_auth("Basic ***"), None);
        assert_eq!(write_key_from_basic_auth("Basic Og=="), None, "empty user name");
    }
}
