//! The consent a site's CMP records in an IAB TCF v2 TC string (`euconsent-v2`, `context.consent.tcString`):
//! the string decoded (`decode`), and what it says for edgecdp's purposes under the site's mapping
//! (`TcfPolicy::preferences`).
//!
//! The string is dot-separated base64url segments read as big-endian bit fields. The first is the core string
//! (no segment type); each other one starts with a 3-bit type: 1 Disclosed Vendors (mandatory since TCF v2.3),
//! 2 Allowed Vendors (legacy), 3 Publisher TC. Everything is bounded: at most `MAX_LEN` characters, every
//! read checked against the bits there are, every count and range checked, so a hostile string is an error with
//! the path of the field that failed, never a panic nor unbounded work.

use crate::core::base::time::{Millis, DAY};
use crate::core::model::purpose::{Preferences, Purpose};
use serde::{Deserialize, Serialize};

/// The longest string read. Real strings are a few hundred characters (a large CMP's with 1,400 vendors, 753),
/// and a browser keeps a cookie under 4 KB. The bound also bounds the work: at most about 2,900 ranges, each
/// filling at most 1,024 words.
pub const MAX_LEN: usize = 8_192;

/// Vendor ids are 16 bits.
const MAX_VENDOR: u16 = u16::MAX;

/// A set of vendor ids (1 to `max`), as bits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VendorSet {
    /// `MaxVendorId`: the highest id the set speaks for.
    pub max: u16,
    words: Vec<u64>,
}

impl VendorSet {
    fn with_max(max: u16) -> VendorSet {
        VendorSet { max, words: vec![0; (max as usize).div_ceil(64)] }
    }

    pub fn contains(&self, id: u16) -> bool {
        id != 0 && id <= self.max && self.words[(id as usize - 1) / 64] >> ((id as usize - 1) % 64) & 1 == 1
    }

    fn insert(&mut self, id: u16) {
        let i = id as usize - 1;
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// Sets every id in `from..=to` (both within `1..=max`), a word at a time.
    fn insert_range(&mut self, from: u16, to: u16) {
        let (mut i, end) = (from as usize - 1, to as usize);
        while i < end {
            let bit = i % 64;
            let n = (64 - bit).min(end - i);
            let mask = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << bit };
            self.words[i / 64] |= mask;
            i += n;
        }
    }

    /// A set of the ids given (each within `1..=max`).
    pub fn of(max: u16, ids: &[u16]) -> VendorSet {
        let mut set = VendorSet::with_max(max);
        for &id in ids.iter().filter(|&&id| id != 0 && id <= max) {
            set.insert(id);
        }
        set
    }

    /// The ids in the set, in order.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        (1..=self.max).filter(|&id| self.contains(id))
    }
}

/// A publisher restriction: for `purpose`, the vendors in `vendors` may process only under `kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restriction {
    pub purpose: u8,
    pub kind: RestrictionKind,
    /// Ranges of vendor ids, as the string lists them.
    pub vendors: Vec<(u16, u16)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestrictionKind {
    /// 0: the purpose is not allowed for these vendors.
    NotAllowed,
    /// 1: only with consent.
    RequireConsent,
    /// 2: only under legitimate interest.
    RequireLegitimateInterest,
}

/// The Publisher TC segment: the publisher's own purposes and custom purposes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublisherTc {
    /// Bit `p - 1` is purpose `p`.
    pub consents: u32,
    pub legitimate_interests: u32,
    pub custom_count: u8,
    /// Bit `c - 1` is custom purpose `c`.
    pub custom_consents: u64,
    pub custom_legitimate_interests: u64,
}

/// A decoded TC string, every field of TCF v2.3.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TcString {
    pub version: u8,
    pub created: Millis,
    pub last_updated: Millis,
    pub cmp_id: u16,
    pub cmp_version: u16,
    pub consent_screen: u8,
    /// Two upper-case letters.
    pub consent_language: [u8; 2],
    pub vendor_list_version: u16,
    pub policy_version: u8,
    pub is_service_specific: bool,
    pub use_non_standard_texts: bool,
    /// Bit `f - 1` is special feature `f` (12 bits).
    pub special_features: u16,
    /// Bit `p - 1` is purpose `p` (24 bits).
    pub purpose_consents: u32,
    pub purpose_legitimate_interests: u32,
    pub purpose_one_treatment: bool,
    pub publisher_cc: [u8; 2],
    pub vendor_consents: VendorSet,
    pub vendor_legitimate_interests: VendorSet,
    pub restrictions: Vec<Restriction>,
    pub disclosed_vendors: Option<VendorSet>,
    pub allowed_vendors: Option<VendorSet>,
    pub publisher: Option<PublisherTc>,
}

impl TcString {
    /// The restriction the publisher set for `vendor` on `purpose`, if any.
    pub fn restriction(&self, purpose: u8, vendor: u16) -> Option<RestrictionKind> {
        self.restrictions
            .iter()
            .find(|r| r.purpose == purpose && r.vendors.iter().any(|&(a, b)| a <= vendor && vendor <= b))
            .map(|r| r.kind)
    }
}

/// Why a string could not be read, at the path of the field (`core.vendorConsents.ranges[2].end`,
/// `segments[1].segmentType`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcfError {
    pub path: String,
    pub message: String,
}

fn fail<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, TcfError> {
    Err(TcfError { path: path.into(), message: message.into() })
}

/// Reads big-endian bit fields from a segment's base64url characters, unpacked once into bytes. Paths are made
/// only for an error: the hot paths (bitfields of thousands of vendors) read up to 64 bits at a time.
struct Bits<'a> {
    bytes: Vec<u8>,
    /// Bits there are: 6 per character.
    len: usize,
    at: usize,
    segment: &'a str,
}

fn sextet(c: u8) -> Option<u8> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    })
}

impl<'a> Bits<'a> {
    fn new(text: &'a str, segment: &'a str) -> Result<Bits<'a>, TcfError> {
        let chars = text.trim_end_matches('=').as_bytes();
        if chars.is_empty() {
            return fail(segment, "the segment is empty");
        }
        let mut bytes = Vec::with_capacity(chars.len() * 3 / 4 + 1);
        let (mut acc, mut held) = (0u32, 0u32);
        for (i, &c) in chars.iter().enumerate() {
            let Some(v) = sextet(c) else {
                return fail(segment, format!("character {} is not base64url (A-Z, a-z, 0-9, - and _)", i + 1));
            };
            acc = acc << 6 | u32::from(v);
            held += 6;
            if held >= 8 {
                held -= 8;
                bytes.push((acc >> held) as u8);
                acc &= (1 << held) - 1;
            }
        }
        if held > 0 {
            bytes.push((acc << (8 - held)) as u8);
        }
        Ok(Bits { bytes, len: chars.len() * 6, at: 0, segment })
    }

    fn left(&self) -> usize {
        self.len - self.at
    }

    /// The error for a field the string ends in.
    fn short(&self, field: &str, n: usize) -> TcfError {
        TcfError {
            path: [self.segment, ".", field].concat(),
            message: format!("the string ends {} bits into this {n}-bit field", self.left()),
        }
    }

    /// `n` bits (at most 64), or `None` past the end.
    fn take(&mut self, n: usize) -> Option<u64> {
        if n > self.left() {
            return None;
        }
        let (mut v, mut need) = (0u64, n);
        while need > 0 {
            let off = self.at % 8;
            let step = (8 - off).min(need);
            let byte = u64::from(self.bytes[self.at / 8]);
            v = v << step | (byte >> (8 - off - step)) & ((1 << step) - 1);
            self.at += step;
            need -= step;
        }
        Some(v)
    }

    /// `n` bits (at most 64) as a number; `field` names what is read, for the error.
    fn read(&mut self, n: usize, field: &str) -> Result<u64, TcfError> {
        self.take(n).ok_or_else(|| self.short(field, n))
    }

    fn flag(&mut self, field: &str) -> Result<bool, TcfError> {
        Ok(self.read(1, field)? == 1)
    }

    /// A bitfield of `n` flags (at most 64), first flag in bit 0.
    fn flags(&mut self, n: usize, field: &str) -> Result<u64, TcfError> {
        let raw = self.read(n, field)?;
        Ok(if n == 0 { 0 } else { (raw << (64 - n)).reverse_bits() })
    }

    fn letters(&mut self, field: &str) -> Result<[u8; 2], TcfError> {
        let a = self.read(6, field)?;
        let b = self.read(6, field)?;
        if a > 25 || b > 25 {
            return fail([self.segment, ".", field].concat(), "expected two letters A to Z");
        }
        Ok([b'A' + a as u8, b'A' + b as u8])
    }

    /// `NumEntries` then that many ranges (`IsARange`, `StartOrOnlyVendorId`, `EndVendorId`), each within
    /// `1..=max`. Gives them as inclusive pairs.
    fn ranges(&mut self, max: u16, field: &str) -> Result<Vec<(u16, u16)>, TcfError> {
        let n = self.read(12, &[field, ".numEntries"].concat())? as usize;
        // Each entry is at least 17 bits: a count the string cannot hold is refused before allocating for it.
        if n * 17 > self.left() {
            return fail(
                [self.segment, ".", field, ".numEntries"].concat(),
                format!("{n} entries do not fit in the {} bits left", self.left()),
            );
        }
        let entry = |i: usize, part: &str| [field, ".ranges[", &i.to_string(), "]", part].concat();
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let is_range = self.take(1).ok_or_else(|| self.short(&entry(i, ""), 1))? == 1;
            let start = self.take(16).ok_or_else(|| self.short(&entry(i, ".start"), 16))? as u16;
            let end =
                if is_range { self.take(16).ok_or_else(|| self.short(&entry(i, ".end"), 16))? as u16 } else { start };
            if start == 0 || start > end || end > max {
                return fail(
                    [self.segment, ".", &entry(i, "")].concat(),
                    format!("vendor range {start}-{end} is not within 1-{max} in order"),
                );
            }
            out.push((start, end));
        }
        Ok(out)
    }

    /// A vendor section: `MaxVendorId`, `IsRangeEncoding`, then a bitfield (read 64 ids at a time) or ranges.
    fn vendors(&mut self, field: &str) -> Result<VendorSet, TcfError> {
        let max = self.take(16).ok_or_else(|| self.short(&[field, ".maxVendorId"].concat(), 16))? as u16;
        let ranged = self.take(1).ok_or_else(|| self.short(&[field, ".isRangeEncoding"].concat(), 1))? == 1;
        let mut set = VendorSet::with_max(max);
        if ranged {
            for (a, b) in self.ranges(max, field)? {
                set.insert_range(a, b);
            }
        } else {
            if usize::from(max) > self.left() {
                return fail(
                    [self.segment, ".", field, ".bitField"].concat(),
                    format!("the string ends before the {max}-bit field of vendors"),
                );
            }
            let mut left = usize::from(max);
            for word in set.words.iter_mut() {
                let n = left.min(64);
                *word = (self.take(n).unwrap_or(0) << (64 - n)).reverse_bits();
                left -= n;
            }
        }
        Ok(set)
    }
}

/// Deciseconds in the string to milliseconds.
fn moment(ds: u64) -> Millis {
    ds as Millis * 100
}

/// Decodes a TC string (TCF v2: core string, then any Disclosed Vendors, Allowed Vendors and Publisher TC
/// segments, each at most once).
pub fn decode(s: &str) -> Result<TcString, TcfError> {
    if s.len() > MAX_LEN {
        return fail("", format!("a TC string is at most {MAX_LEN} characters"));
    }
    let mut parts = s.split('.');
    let mut b = Bits::new(parts.next().unwrap_or(""), "core")?;
    let version = b.read(6, "version")? as u8;
    if version != 2 {
        return fail("core.version", format!("version {version} is not TCF v2"));
    }
    let mut tc = TcString {
        version,
        created: moment(b.read(36, "created")?),
        last_updated: moment(b.read(36, "lastUpdated")?),
        cmp_id: b.read(12, "cmpId")? as u16,
        cmp_version: b.read(12, "cmpVersion")? as u16,
        consent_screen: b.read(6, "consentScreen")? as u8,
        consent_language: b.letters("consentLanguage")?,
        vendor_list_version: b.read(12, "vendorListVersion")? as u16,
        policy_version: b.read(6, "policyVersion")? as u8,
        is_service_specific: b.flag("isServiceSpecific")?,
        use_non_standard_texts: b.flag("useNonStandardTexts")?,
        special_features: b.flags(12, "specialFeatureOptins")? as u16,
        purpose_consents: b.flags(24, "purposeConsents")? as u32,
        purpose_legitimate_interests: b.flags(24, "purposeLegitimateInterests")? as u32,
        purpose_one_treatment: b.flag("purposeOneTreatment")?,
        publisher_cc: b.letters("publisherCountryCode")?,
        ..TcString::default()
    };
    tc.vendor_consents = b.vendors("vendorConsents")?;
    tc.vendor_legitimate_interests = b.vendors("vendorLegitimateInterests")?;
    let n = b.read(12, "publisherRestrictions.numPubRestrictions")? as usize;
    for i in 0..n {
        let at = ["publisherRestrictions[", &i.to_string(), "]"].concat();
        let purpose = b.read(6, &[at.as_str(), ".purposeId"].concat())? as u8;
        let kind = match b.read(2, &[at.as_str(), ".restrictionType"].concat())? {
            0 => RestrictionKind::NotAllowed,
            1 => RestrictionKind::RequireConsent,
            2 => RestrictionKind::RequireLegitimateInterest,
            _ => return fail(["core.", &at, ".restrictionType"].concat(), "restriction type 3 is undefined"),
        };
        let vendors = b.ranges(MAX_VENDOR, &at)?;
        tc.restrictions.push(Restriction { purpose, kind, vendors });
    }
    for (i, text) in parts.enumerate() {
        let name = ["segments[", &(i + 1).to_string(), "]"].concat();
        let mut b = Bits::new(text, &name)?;
        match b.read(3, "segmentType")? {
            1 if tc.disclosed_vendors.is_none() => tc.disclosed_vendors = Some(b.vendors("vendorsDisclosed")?),
            2 if tc.allowed_vendors.is_none() => tc.allowed_vendors = Some(b.vendors("vendorsAllowed")?),
            3 if tc.publisher.is_none() => {
                let consents = b.flags(24, "pubPurposesConsent")? as u32;
                let legitimate_interests = b.flags(24, "pubPurposesLITransparency")? as u32;
                let custom_count = b.read(6, "numCustomPurposes")? as u8;
                let custom_consents = b.flags(custom_count.into(), "customPurposesConsent")?;
                let custom_legitimate_interests = b.flags(custom_count.into(), "customPurposesLITransparency")?;
                tc.publisher = Some(PublisherTc {
                    consents,
                    legitimate_interests,
                    custom_count,
                    custom_consents,
                    custom_legitimate_interests,
                });
            }
            t @ 1..=3 => return fail([name.as_str(), ".segmentType"].concat(), format!("segment type {t} twice")),
            t => return fail([name.as_str(), ".segmentType"].concat(), format!("segment type {t} is not defined")),
        }
    }
    Ok(tc)
}

/// Purposes that TCF (v2.2 on) lets a vendor or publisher process under legitimate interest; 1 and 3 to 6
/// need consent.
pub const LEGITIMATE_INTEREST_PURPOSES: [u8; 5] = [2, 7, 8, 9, 10];

/// Where the purposes' answers are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Basis {
    /// The core string's purpose consents: what the person chose per purpose in the CMP.
    Purposes,
    /// The Publisher TC segment: the publisher's own processing (a string without it refuses every purpose).
    Publisher,
}

/// The compiled `consent.tcf` section: which TCF purposes grant each of edgecdp's optional purposes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcfPolicy {
    /// `false` (`"tcf": false`): TC strings are not read.
    pub enabled: bool,
    /// Per optional purpose (`Purpose::OPTIONAL` order), the TCF purposes that must all be allowed, bit `p - 1`
    /// for purpose `p`; 0: TCF does not speak for it.
    pub purposes: [u32; 4],
    pub basis: Basis,
    /// edgecdp's own Global Vendor List id, when the site registers it as a vendor: then the vendor must also
    /// be disclosed, allowed, and not restricted.
    pub vendor: Option<u16>,
    /// Legitimate interest counts for the purposes TCF allows it for.
    pub legitimate_interests: bool,
    /// A string last updated longer ago than this says nothing.
    pub max_age: Millis,
}

/// Bit mask of TCF purposes.
pub const fn mask(purposes: &[u8]) -> u32 {
    let mut m = 0;
    let mut i = 0;
    while i < purposes.len() {
        m |= 1 << (purposes[i] - 1);
        i += 1;
    }
    m
}

impl TcfPolicy {
    /// Analytics: 1 (store and access information on a device), 8 (measure content performance), 9 (understand
    /// audiences). Personalization: 1, 5 (create a personalised content profile), 6 (use it to select content).
    /// Advertising: 1, 2, 3, 4, 7. Marketing (sends to the person) is not a TCF purpose and is not mapped.
    /// Strings older than 390 days (TCF's 13 months) say nothing.
    pub const DEFAULT: TcfPolicy = TcfPolicy {
        enabled: true,
        purposes: [mask(&[1, 8, 9]), mask(&[1, 5, 6]), mask(&[1, 2, 3, 4, 7]), 0],
        basis: Basis::Purposes,
        vendor: None,
        legitimate_interests: false,
        max_age: 390 * DAY,
    };

    /// Whether the string allows TCF purpose `p` for edgecdp.
    pub fn allows(&self, tc: &TcString, p: u8) -> bool {
        let bit = |m: u32| m >> (p - 1) & 1 == 1;
        let li_counts = self.legitimate_interests && LEGITIMATE_INTEREST_PURPOSES.contains(&p);
        let (consents, interests) = match self.basis {
            Basis::Purposes => (tc.purpose_consents, tc.purpose_legitimate_interests),
            Basis::Publisher => tc.publisher.as_ref().map_or((0, 0), |x| (x.consents, x.legitimate_interests)),
        };
        let mut by_consent = bit(consents);
        let mut by_interest = li_counts && bit(interests);
        if let Some(v) = self.vendor {
            if !tc.disclosed_vendors.as_ref().is_some_and(|d| d.contains(v)) {
                return false;
            }
            by_consent &= tc.vendor_consents.contains(v);
            by_interest &= tc.vendor_legitimate_interests.contains(v);
            match tc.restriction(p, v) {
                Some(RestrictionKind::NotAllowed) => return false,
                Some(RestrictionKind::RequireConsent) => by_interest = false,
                Some(RestrictionKind::RequireLegitimateInterest) => by_consent = false,
                None => {}
            }
        }
        by_consent || by_interest
    }
}

impl TcfPolicy {
    /// What the string says for each purpose this maps, at `now`: granted when every TCF purpose mapped to it is
    /// allowed (`allows`), refused otherwise. `None` when TCF is off or the string is stale (last updated longer
    /// than `max_age` ago).
    pub fn preferences(&self, tc: &TcString, now: Millis) -> Option<Preferences> {
        if !self.enabled || now.saturating_sub(tc.last_updated) > self.max_age {
            return None;
        }
        let mut out = Preferences::default();
        for (purpose, &m) in Purpose::OPTIONAL.iter().zip(&self.purposes) {
            if m != 0 {
                out.set(*purpose, (1..=24u8).filter(|p| m >> (p - 1) & 1 == 1).all(|p| self.allows(tc, p)));
            }
        }
        Some(out)
    }
}

/// What a TC string said, mapped, with the CMP that wrote it: an event's own (`Event::tcf`, mapped at the edge
/// at the event's time), or a request's (its cookie, `RequestSignals::tcf`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcfSignal {
    pub prefs: Preferences,
    pub cmp_id: u16,
}

impl TcfSignal {
    /// The string's answer under `policy` at `now`, if it gives one.
    pub fn of(policy: &TcfPolicy, tc: &TcString, now: Millis) -> Option<TcfSignal> {
        policy.preferences(tc, now).map(|prefs| TcfSignal { prefs, cmp_id: tc.cmp_id })
    }

    /// The consent trail's source: `tcf:` and the CMP's id.
    pub fn source(&self) -> String {
        ["tcf:", &self.cmp_id.to_string()].concat()
    }
}

impl Default for TcfPolicy {
    fn default() -> Self {
        TcfPolicy::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::time::DAY;

    const NOW: Millis = 1_780_000_000_000;

    /// A test-only encoder (bit writer), so rows can state a string's fields and corrupt them.
    #[derive(Default)]
    struct W(Vec<bool>);

    impl W {
        fn put(&mut self, n: usize, v: u64) -> &mut W {
            for i in (0..n).rev() {
                self.0.push(i < 64 && v >> i & 1 == 1);
            }
            self
        }
        fn flags(&mut self, n: usize, mask: u64) -> &mut W {
            for i in 0..n {
                self.0.push(mask >> i & 1 == 1);
            }
            self
        }
        fn vendors(&mut self, set: &VendorSet) -> &mut W {
            self.put(16, set.max.into()).put(1, 0);
            for id in 1..=set.max {
                self.0.push(set.contains(id));
            }
            self
        }
        fn text(&self) -> String {
            const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            self.0
                .chunks(6)
                .map(|c| A[c.iter().enumerate().fold(0, |acc, (i, &b)| acc | (usize::from(b) << (5 - i)))] as char)
                .collect()
        }
    }

    fn encode(tc: &TcString) -> String {
        let mut w = W::default();
        w.put(6, tc.version.into()).put(36, (tc.created / 100) as u64).put(36, (tc.last_updated / 100) as u64);
        w.put(12, tc.cmp_id.into()).put(12, tc.cmp_version.into()).put(6, tc.consent_screen.into());
        w.put(6, u64::from(tc.consent_language[0] - b'A')).put(6, u64::from(tc.consent_language[1] - b'A'));
        w.put(12, tc.vendor_list_version.into()).put(6, tc.policy_version.into());
        w.put(1, tc.is_service_specific.into()).put(1, tc.use_non_standard_texts.into());
        w.flags(12, tc.special_features.into()).flags(24, tc.purpose_consents.into());
        w.flags(24, tc.purpose_legitimate_interests.into()).put(1, tc.purpose_one_treatment.into());
        w.put(6, u64::from(tc.publisher_cc[0] - b'A')).put(6, u64::from(tc.publisher_cc[1] - b'A'));
        w.vendors(&tc.vendor_consents).vendors(&tc.vendor_legitimate_interests);
        w.put(12, tc.restrictions.len() as u64);
        for r in &tc.restrictions {
            w.put(6, r.purpose.into()).put(2, r.kind as u64).put(12, r.vendors.len() as u64);
            for &(a, b) in &r.vendors {
                w.put(1, u64::from(a != b)).put(16, a.into());
                if a != b {
                    w.put(16, b.into());
                }
            }
        }
        let mut out = w.text();
        if let Some(d) = &tc.disclosed_vendors {
            out = [out, ".".into(), W::default().put(3, 1).vendors(d).text()].concat();
        }
        if let Some(p) = &tc.publisher {
            let mut w = W::default();
            w.put(3, 3).flags(24, p.consents.into()).flags(24, p.legitimate_interests.into());
            w.put(6, p.custom_count.into()).flags(p.custom_count.into(), p.custom_consents);
            w.flags(p.custom_count.into(), p.custom_legitimate_interests);
            out = [out, ".".into(), w.text()].concat();
        }
        out
    }

    /// A string consenting purposes 1, 8 and 9, vendor 755 consented and disclosed, updated a day before NOW.
    fn base() -> TcString {
        TcString {
            version: 2,
            created: NOW - 10 * DAY,
            last_updated: NOW - DAY,
            cmp_id: 28,
            cmp_version: 3,
            consent_language: *b"EN",
            vendor_list_version: 150,
            policy_version: 5,
            purpose_consents: mask(&[1, 8, 9]),
            publisher_cc: *b"FR",
            vendor_consents: VendorSet::of(800, &[755]),
            vendor_legitimate_interests: VendorSet::of(0, &[]),
            disclosed_vendors: Some(VendorSet::of(800, &[10, 755])),
            ..TcString::default()
        }
    }

    fn granted(p: &TcfPolicy, tc: &TcString) -> Option<Vec<(Purpose, bool)>> {
        p.preferences(tc, NOW).map(|prefs| prefs.iter().collect())
    }

    /// The mapping's rules, one row each: (what the row checks, the policy, the string, what it grants).
    #[test]
    fn a_tc_string_grants_a_purpose_only_when_every_mapped_tcf_purpose_is_allowed() {
        use Purpose::{Advertising as Ad, Analytics as An, Personalization as Pe};
        let d = TcfPolicy::DEFAULT;
        let vendor = TcfPolicy { vendor: Some(755), ..d.clone() };
        let li = TcfPolicy { legitimate_interests: true, ..d.clone() };
        let with = |f: &dyn Fn(&mut TcString)| {
            let mut tc = base();
            f(&mut tc);
            tc
        };
        type Row<'a> = (&'a str, TcfPolicy, TcString, Option<Vec<(Purpose, bool)>>);
        let rows: Vec<Row> = vec![
            (
                "purposes 1, 8, 9 grant analytics only",
                d.clone(),
                base(),
                Some(vec![(An, true), (Pe, false), (Ad, false)]),
            ),
            (
                "one mapped purpose refused refuses",
                d.clone(),
                with(&|t| t.purpose_consents = mask(&[1, 8])),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            (
                "everything granted grants all three mapped",
                d.clone(),
                with(&|t| t.purpose_consents = mask(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])),
                Some(vec![(An, true), (Pe, true), (Ad, true)]),
            ),
            ("older than maxAge says nothing", d.clone(), with(&|t| t.last_updated = NOW - 391 * DAY), None),
            (
                "exactly maxAge old still speaks",
                d.clone(),
                with(&|t| t.last_updated = NOW - 390 * DAY),
                granted(&d, &base()),
            ),
            ("tcf: false reads nothing", TcfPolicy { enabled: false, ..d.clone() }, base(), None),
            (
                "legitimate interest does not count unless configured",
                d.clone(),
                with(&|t| {
                    t.purpose_consents = mask(&[1]);
                    t.purpose_legitimate_interests = mask(&[8, 9]);
                }),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            (
                "configured, it counts for 8 and 9",
                li.clone(),
                with(&|t| {
                    t.purpose_consents = mask(&[1]);
                    t.purpose_legitimate_interests = mask(&[8, 9]);
                }),
                Some(vec![(An, true), (Pe, false), (Ad, false)]),
            ),
            (
                "and never for purpose 1",
                li.clone(),
                with(&|t| {
                    t.purpose_consents = mask(&[8, 9]);
                    t.purpose_legitimate_interests = mask(&[1]);
                }),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            ("a vendor consented and disclosed", vendor.clone(), base(), granted(&d, &base())),
            (
                "a vendor not disclosed is refused",
                vendor.clone(),
                with(&|t| t.disclosed_vendors = Some(VendorSet::of(800, &[10]))),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            (
                "no Disclosed Vendors segment: not disclosed",
                vendor.clone(),
                with(&|t| t.disclosed_vendors = None),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            (
                "a vendor without consent is refused",
                vendor.clone(),
                with(&|t| t.vendor_consents = VendorSet::of(800, &[754])),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            (
                "a publisher restriction not allowing purpose 8 for the vendor refuses",
                vendor.clone(),
                with(&|t| {
                    t.restrictions =
                        vec![Restriction { purpose: 8, kind: RestrictionKind::NotAllowed, vendors: vec![(700, 760)] }]
                }),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            (
                "a restriction for other vendors does not",
                vendor.clone(),
                with(&|t| {
                    t.restrictions = vec![Restriction {
                        purpose: 8,
                        kind: RestrictionKind::NotAllowed,
                        vendors: vec![(1, 754), (756, 800)],
                    }]
                }),
                granted(&d, &base()),
            ),
            (
                "require consent: the vendor's legitimate interest no longer counts",
                TcfPolicy { legitimate_interests: true, ..vendor.clone() },
                with(&|t| {
                    t.purpose_consents = mask(&[1, 9]);
                    t.purpose_legitimate_interests = mask(&[8]);
                    t.vendor_legitimate_interests = VendorSet::of(800, &[755]);
                    t.restrictions = vec![Restriction {
                        purpose: 8,
                        kind: RestrictionKind::RequireConsent,
                        vendors: vec![(755, 755)],
                    }];
                }),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            (
                "require legitimate interest: consent no longer counts",
                vendor.clone(),
                with(&|t| {
                    t.restrictions = vec![Restriction {
                        purpose: 9,
                        kind: RestrictionKind::RequireLegitimateInterest,
                        vendors: vec![(755, 755)],
                    }]
                }),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            (
                "publisher basis without a Publisher TC segment refuses",
                TcfPolicy { basis: Basis::Publisher, ..d.clone() },
                base(),
                Some(vec![(An, false), (Pe, false), (Ad, false)]),
            ),
            (
                "publisher basis reads the publisher's own consents, not the core's",
                TcfPolicy { basis: Basis::Publisher, ..d.clone() },
                with(&|t| {
                    t.purpose_consents = 0;
                    t.publisher = Some(PublisherTc { consents: mask(&[1, 5, 6]), ..PublisherTc::default() });
                }),
                Some(vec![(An, false), (Pe, true), (Ad, false)]),
            ),
            (
                "marketing mapped to purpose 1 speaks for marketing",
                TcfPolicy { purposes: [0, 0, 0, mask(&[1])], ..d.clone() },
                base(),
                Some(vec![(Purpose::Marketing, true)]),
            ),
        ];
        for (what, policy, tc, want) in rows {
            assert_eq!(granted(&policy, &tc), want, "{what}");
        }
    }

    #[test]
    fn what_is_encoded_decodes_field_for_field() {
        let mut tc = base();
        tc.special_features = 0b1001;
        tc.purpose_one_treatment = true;
        tc.is_service_specific = true;
        tc.restrictions = vec![
            Restriction { purpose: 2, kind: RestrictionKind::NotAllowed, vendors: vec![(3, 3), (40, 700)] },
            Restriction { purpose: 7, kind: RestrictionKind::RequireLegitimateInterest, vendors: vec![(9, 9)] },
        ];
        tc.publisher = Some(PublisherTc {
            consents: mask(&[1, 3]),
            legitimate_interests: mask(&[2]),
            custom_count: 3,
            custom_consents: 0b101,
            custom_legitimate_interests: 0b010,
        });
        assert_eq!(decode(&encode(&tc)), Ok(tc.clone()));
        assert_eq!(tc.restriction(2, 41), Some(RestrictionKind::NotAllowed));
        assert_eq!(tc.restriction(2, 39), None);
        assert_eq!(tc.vendor_consents.ids().collect::<Vec<_>>(), vec![755]);
    }

    /// Every kind of broken string is refused at the path of what broke, never a panic.
    #[test]
    fn broken_strings_are_refused_with_the_path_of_what_broke() {
        let good = encode(&base());
        let (core, rest) = good.split_once('.').unwrap();
        let ranged = |n: u64, start: u64, end: u64| {
            // A core string whose vendor consents are range-encoded with one range.
            let mut w = W::default();
            w.put(6, 2).put(36 + 36 + 12 + 12 + 6 + 12 + 12 + 6 + 2 + 12 + 24 + 24 + 1 + 12, 0);
            w.put(16, 100).put(1, 1).put(12, n).put(1, 1).put(16, start).put(16, end);
            w.text()
        };
        let rows: Vec<(String, &str)> = vec![
            (String::new(), "core"),
            ("C".repeat(MAX_LEN + 1), ""),
            (["%", &core[1..]].concat(), "core"),
            (["A", &core[1..]].concat(), "core.version"),
            (core[..10].to_string(), "core.lastUpdated"),
            (core[..core.len() - 20].to_string(), "core.vendorConsents.bitField"),
            ([core, ".", rest, ".", rest].concat(), "segments[2].segmentType"),
            ([core, ".", "4AAA"].concat(), "segments[1].segmentType"),
            ([core, ".", ""].concat(), "segments[1]"),
            (ranged(1, 0, 0), "core.vendorConsents.ranges[0]"),
            (ranged(1, 50, 20), "core.vendorConsents.ranges[0]"),
            (ranged(1, 50, 101), "core.vendorConsents.ranges[0]"),
            (ranged(4095, 1, 2), "core.vendorConsents.numEntries"),
        ];
        for (s, path) in rows {
            match decode(&s) {
                Err(e) => assert_eq!(e.path, path, "{s:.40}: {}", e.message),
                Ok(_) => panic!("{s:.40} decoded"),
            }
        }
        assert!(decode(&[good.as_str(), "=="].concat()).is_ok(), "padding is tolerated");
    }

    #[test]
    fn ranges_fill_whole_words_and_their_edges() {
        for (a, b) in [(1, 1), (1, 64), (63, 65), (64, 128), (1, u16::MAX), (65_000, u16::MAX)] {
            let mut set = VendorSet::with_max(u16::MAX);
            set.insert_range(a, b);
            let ids: Vec<u16> = set.ids().collect();
            assert_eq!(ids.len(), usize::from(b - a) + 1, "{a}-{b}");
            assert_eq!((ids[0], ids[ids.len() - 1]), (a, b));
        }
    }

    /// The trail's source names the CMP.
    #[test]
    fn a_signal_names_its_cmp() {
        let s = TcfSignal::of(&TcfPolicy::DEFAULT, &base(), NOW).unwrap();
        assert_eq!(s.source(), "tcf:28");
        assert_eq!(s.prefs.get(Purpose::Analytics), Some(true));
        assert_eq!(s.prefs.get(Purpose::Marketing), None);
    }
}
