//! A reader of bincode 2's standard format (little-endian, variable-length integers) through serde, for the
//! formats the edge writes for a device: decision rules and profile summaries (`store::decode_rules`,
//! `summary::decode`). The edge writes them with bincode itself; the device reads them here.
//!
//! Why not bincode's own reader: its serde errors keep serde's messages as text, and formatting serde's
//! `Unexpected` links the float formatter (about 37 KB of Wasm) into the browser decide module. Here an error
//! says only that the bytes are malformed, and where reading stopped. Native tests read what bincode wrote
//! (`tests/cases.rs`, `tests/summary_props.rs`, the unit tests below), so the two cannot drift apart.
//!
//! The format: `u8`/`i8` as one byte; wider integers as a variable-length unsigned integer (one byte up to 250;
//! else a marker 251, 252 or 253 and then a little-endian `u16`, `u32` or `u64`), signed ones zigzag-mapped first;
//! floats as little-endian IEEE 754; `bool` and the `Option` tag as one byte 0 or 1; strings, byte strings,
//! sequences and maps as a length, then their contents; structs and tuples as their fields in order; enum
//! variants as a `u32` index, then their fields.

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use std::fmt;

/// Malformed bytes: the offset where reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError {
    pub at: usize,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed binary data at byte {}", self.at)
    }
}

impl std::error::Error for ReadError {}

impl de::Error for ReadError {
    // Every constructor drops serde's message unformatted (see the module's documentation). The offset is
    // filled in by `from_slice`.
    fn custom<T: fmt::Display>(_: T) -> Self {
        ReadError { at: usize::MAX }
    }
    fn invalid_type(_: de::Unexpected, _: &dyn de::Expected) -> Self {
        ReadError { at: usize::MAX }
    }
    fn invalid_value(_: de::Unexpected, _: &dyn de::Expected) -> Self {
        ReadError { at: usize::MAX }
    }
    fn invalid_length(_: usize, _: &dyn de::Expected) -> Self {
        ReadError { at: usize::MAX }
    }
    fn unknown_variant(_: &str, _: &'static [&'static str]) -> Self {
        ReadError { at: usize::MAX }
    }
    fn unknown_field(_: &str, _: &'static [&'static str]) -> Self {
        ReadError { at: usize::MAX }
    }
    fn missing_field(_: &'static str) -> Self {
        ReadError { at: usize::MAX }
    }
    fn duplicate_field(_: &'static str) -> Self {
        ReadError { at: usize::MAX }
    }
}

/// Reads one `T` that must fill `bytes` exactly.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, ReadError> {
    let mut r = Reader { bytes, pos: 0 };
    let value = T::deserialize(&mut r).map_err(|_| ReadError { at: r.pos })?;
    if r.pos != bytes.len() {
        return Err(ReadError { at: r.pos });
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Result<T> = std::result::Result<T, ReadError>;

const BAD: ReadError = ReadError { at: usize::MAX };

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or(BAD)?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn unsigned(&mut self) -> Result<u64> {
        match self.byte()? {
            b @ 0..=250 => Ok(u64::from(b)),
            251 => Ok(u64::from(u16::from_le_bytes(self.array()?))),
            252 => Ok(u64::from(u32::from_le_bytes(self.array()?))),
            253 => Ok(u64::from_le_bytes(self.array()?)),
            _ => Err(BAD),
        }
    }

    fn signed(&mut self) -> Result<i64> {
        let n = self.unsigned()?;
        Ok(if n % 2 == 0 { (n / 2) as i64 } else { !(n / 2) as i64 })
    }

    fn len(&mut self) -> Result<usize> {
        usize::try_from(self.unsigned()?).map_err(|_| BAD)
    }

    fn flag(&mut self) -> Result<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(BAD),
        }
    }

    fn str(&mut self) -> Result<&'a str> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| BAD)
    }
}

/// A counted run of items: a sequence, tuple, struct or map.
struct Items<'r, 'a> {
    r: &'r mut Reader<'a>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'_, '_> {
    type Error = ReadError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Lengths come from the bytes: never more than the bytes left could hold, so a forged length cannot
        // make serde reserve memory for it.
        Some(self.left.min(self.r.bytes.len() - self.r.pos))
    }
}

impl<'de> de::MapAccess<'de> for Items<'_, '_> {
    type Error = ReadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.r).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.r)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.r.bytes.len() - self.r.pos))
    }
}

impl<'de> de::EnumAccess<'de> for &mut Reader<'_> {
    type Error = ReadError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index = u32::try_from(self.unsigned()?).map_err(|_| BAD)?;
        let value = seed.deserialize(IntoDeserializer::<ReadError>::into_deserializer(index))?;
        Ok((value, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Reader<'_> {
    type Error = ReadError;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Items { r: self, left: len })
    }

    fn struct_variant<V: Visitor<'de>>(self, fields: &'static [&'static str], visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Items { r: self, left: fields.len() })
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'_> {
    type Error = ReadError;

    /// The format does not describe itself: only typed reads work.
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(BAD)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_bool(self.flag()?)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i8(self.byte()? as i8)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i16(i16::try_from(self.signed()?).map_err(|_| BAD)?)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i32(i32::try_from(self.signed()?).map_err(|_| BAD)?)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i64(self.signed()?)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(self.byte()?)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u16(u16::try_from(self.unsigned()?).map_err(|_| BAD)?)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u32(u32::try_from(self.unsigned()?).map_err(|_| BAD)?)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u64(self.unsigned()?)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f32(f32::from_le_bytes(self.array()?))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(f64::from_le_bytes(self.array()?))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // UTF-8, one to four bytes, as the first byte says.
        let first = *self.bytes.get(self.pos).ok_or(BAD)?;
        let width = match first {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return Err(BAD),
        };
        let s = std::str::from_utf8(self.take(width)?).map_err(|_| BAD)?;
        visitor.visit_char(s.chars().next().ok_or(BAD)?)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_str(self.str()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_str(self.str()?)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let n = self.len()?;
        visitor.visit_bytes(self.take(n)?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.flag()? {
            visitor.visit_some(self)
        } else {
            visitor.visit_none()
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let left = self.len()?;
        visitor.visit_seq(Items { r: self, left })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Items { r: self, left: len })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(self, _: &'static str, len: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Items { r: self, left: len })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let left = self.len()?;
        visitor.visit_map(Items { r: self, left })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_seq(Items { r: self, left: fields.len() })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_enum(self)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u32(u32::try_from(self.unsigned()?).map_err(|_| BAD)?)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(BAD)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    fn bincode<T: Serialize>(v: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encodes")
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum E {
        Unit,
        New(i64),
        Tuple(u8, String),
        Struct { a: Option<u32>, b: Vec<bool> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct All {
        i8: i8,
        i16: i16,
        i32: i32,
        i64: i64,
        u8: u8,
        u16: u16,
        u32: u32,
        u64: u64,
        usize: usize,
        f32: f32,
        f64: f64,
        c: char,
        s: String,
        o: Option<Box<All>>,
        e: Vec<E>,
        m: BTreeMap<String, (i32, f64)>,
        unit: (),
    }

    fn sample(depth: u8) -> All {
        All {
            i8: -128,
            i16: -300,
            i32: i32::MIN,
            i64: i64::MIN,
            u8: 255,
            u16: 251,
            u32: 70_000,
            u64: u64::MAX,
            usize: 250,
            f32: -0.5,
            f64: 1e300,
            c: '€',
            s: "grüße 🎉".into(),
            o: (depth > 0).then(|| Box::new(sample(depth - 1))),
            e: vec![E::Unit, E::New(-1), E::Tuple(7, "x".into()), E::Struct { a: Some(65_536), b: vec![true, false] }],
            m: BTreeMap::from([("k".into(), (-2, 0.1)), ("".into(), (i32::MAX, -1e-300))]),
            unit: (),
        }
    }

    #[test]
    fn reads_what_bincode_writes() {
        let v = sample(2);
        assert_eq!(from_slice::<All>(&bincode(&v)), Ok(v));
        for n in [0i64, 1, -1, 125, -126, 250, 251, 32_767, -32_768, 65_535, 1 << 40, i64::MAX, i64::MIN] {
            assert_eq!(from_slice::<i64>(&bincode(&n)), Ok(n), "{n}");
        }
        for n in [0u64, 250, 251, 65_535, 65_536, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(from_slice::<u64>(&bincode(&n)), Ok(n), "{n}");
        }
    }

    #[test]
    fn refuses_malformed_bytes_with_where_it_stopped() {
        let bytes = bincode(&sample(1));
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(from_slice::<All>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(from_slice::<All>(&longer), Err(ReadError { at: bytes.len() }));
        assert!(from_slice::<bool>(&[2]).is_err());
        assert!(from_slice::<Option<u8>>(&[7, 1]).is_err());
        assert!(from_slice::<E>(&[4]).is_err(), "no fifth variant");
        assert!(from_slice::<String>(&[2, 0xff, 0xfe]).is_err(), "not UTF-8");
        assert!(from_slice::<u16>(&[252, 0, 0, 1, 0]).is_err(), "too big for u16");
        assert!(from_slice::<Vec<u8>>(&[253, 255, 255, 255, 255, 255, 255, 255, 127]).is_err(), "forged length");
    }
}
