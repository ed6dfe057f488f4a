//! The TC string decoder against the IAB's own encoder: `scripts/tcf-corpus.mjs` encodes 10,000 random TC models
//! with `@iabtechlabtcf/core` (and prints the IAB's published example strings), each with what the IAB's decoder
//! reads from it; edgecdp's core must read every field the same. Then corrupted strings (truncation, a wrong
//! version, characters outside base64url, bit flips) are refused with a path, or read without a panic.

use edgecdp::core::model::tcf::{decode, TcString, VendorSet};
use serde_json::{json, Value as J};
use std::collections::BTreeMap;
use std::process::Command;

fn corpus(count: usize, seed: u32) -> Vec<J> {
    let out = Command::new("node")
        .args(["scripts/tcf-corpus.mjs", "--count", &count.to_string(), "--seed", &seed.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("node runs scripts/tcf-corpus.mjs (npm ci installs @iabtechlabtcf/core)");
    assert!(out.status.success(), "the corpus script failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn ids(set: &VendorSet) -> J {
    json!(set.ids().collect::<Vec<_>>())
}

fn bits(mask: u64, n: u8) -> J {
    json!((1..=n).filter(|i| mask >> (i - 1) & 1 == 1).collect::<Vec<_>>())
}

fn letters(l: [u8; 2]) -> String {
    String::from_utf8(l.to_vec()).expect("letters")
}

/// What edgecdp read, in the corpus's shape. Restrictions are merged by purpose and type, as the IAB's model keeps
/// them (a string may list one purpose and type twice).
fn as_corpus(tc: &TcString) -> J {
    let mut restrictions: BTreeMap<(u8, u8), std::collections::BTreeSet<u16>> = BTreeMap::new();
    for r in &tc.restrictions {
        let set = restrictions.entry((r.purpose, r.kind as u8)).or_default();
        for &(a, b) in &r.vendors {
            set.extend(a..=b);
        }
    }
    let restrictions: Vec<J> = restrictions
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|((p, t), v)| json!({"purpose": p, "type": t, "vendors": v}))
        .collect();
    json!({
        "version": tc.version,
        "created": tc.created,
        "lastUpdated": tc.last_updated,
        "cmpId": tc.cmp_id,
        "cmpVersion": tc.cmp_version,
        "consentScreen": tc.consent_screen,
        "consentLanguage": letters(tc.consent_language),
        "vendorListVersion": tc.vendor_list_version,
        "policyVersion": tc.policy_version,
        "isServiceSpecific": tc.is_service_specific,
        "useNonStandardTexts": tc.use_non_standard_texts,
        "purposeOneTreatment": tc.purpose_one_treatment,
        "publisherCountryCode": letters(tc.publisher_cc),
        "specialFeatureOptins": bits(tc.special_features.into(), 12),
        "purposeConsents": bits(tc.purpose_consents.into(), 24),
        "purposeLegitimateInterests": bits(tc.purpose_legitimate_interests.into(), 24),
        "vendorConsents": ids(&tc.vendor_consents),
        "vendorLegitimateInterests": ids(&tc.vendor_legitimate_interests),
        "publisherRestrictions": restrictions,
        "vendorsDisclosed": tc.disclosed_vendors.as_ref().map(ids),
        "vendorsAllowed": tc.allowed_vendors.as_ref().map(ids),
        "publisher": tc.publisher.as_ref().map(|p| json!({
            "consents": bits(p.consents.into(), 24),
            "legitimateInterests": bits(p.legitimate_interests.into(), 24),
            "numCustomPurposes": p.custom_count,
            "customConsents": bits(p.custom_consents, p.custom_count),
            "customLegitimateInterests": bits(p.custom_legitimate_interests, p.custom_count),
        })),
    })
}

#[test]
fn ten_thousand_strings_from_the_iab_encoder_and_its_published_examples_decode_field_for_field() {
    let lines = corpus(10_000, 31);
    let (mut random, mut examples) = (0, 0);
    for line in &lines {
        let s = line["s"].as_str().expect("s");
        let tc = decode(s).unwrap_or_else(|e| panic!("{s}: refused at {}: {}", e.path, e.message));
        let got = as_corpus(&tc);
        let want = &line["expect"];
        for (field, value) in want.as_object().expect("expect") {
            assert_eq!(&got[field], value, "{s}: {field}");
        }
        match line["kind"].as_str() {
            Some("example") => examples += 1,
            _ => random += 1,
        }
    }
    assert_eq!((random, examples >= 5), (10_000, true), "the corpus holds 10,000 random strings and the examples");
}

#[test]
fn corrupted_strings_are_refused_with_a_path_or_read_without_a_panic() {
    let lines = corpus(500, 7);
    let (mut flips, mut refused_flips) = (0, 0);
    for line in &lines {
        let s = line["s"].as_str().expect("s");
        let core = s.split('.').next().expect("core");
        // Half the core string is never enough: the vendor sections start past its 213th bit.
        let e = decode(&core[..core.len() / 2]).expect_err("truncated");
        assert!(e.path.starts_with("core."), "{s}: truncated, refused at {}", e.path);
        // The first character is the 6-bit version: `C` is 2; `A` (0) and `Q` (16) are refused.
        for first in ["A", "Q"] {
            let e = decode(&[first, &s[1..]].concat()).expect_err("wrong version");
            assert_eq!(e.path, "core.version", "{s}");
        }
        for bad in ["+", "/", "!", " "] {
            let e = decode(&[&core[..5], bad, &core[6..]].concat()).expect_err("not base64url");
            assert_eq!(e.path, "core", "{s}: {bad}");
        }
        // Each bit flip gives an error with a path, or a string that reads (most bits are consents); never a panic.
        let chars: Vec<char> = s.chars().collect();
        for i in (0..chars.len()).step_by(3) {
            if chars[i] == '.' {
                continue;
            }
            const A: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let v = A.find(chars[i]).expect("base64url");
            let mut c = chars.clone();
            c[i] = A.as_bytes()[v ^ (1 << (i % 6))] as char;
            flips += 1;
            if let Err(e) = decode(&c.iter().collect::<String>()) {
                refused_flips += 1;
                assert!(!e.path.is_empty() && !e.message.is_empty(), "{s}: flip at {i}");
            }
        }
    }
    assert!(flips > 10_000 && refused_flips > 0, "{refused_flips} of {flips} flips refused");
    println!("{refused_flips} of {flips} single-bit flips refused with a path; the rest read as other valid strings");
}
