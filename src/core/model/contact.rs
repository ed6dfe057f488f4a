//! Contact points: which of a profile's addresses (its `email`, its `phone`, any trait a destination addresses)
//! were set with proof, so that journeys send only to people who are who they say they are.
//!
//! A browser source's write key is public, so a page can set any e-mail address on its own anonymous profile.
//! Sending to such an address would make edgecdp a relay for anyone's text to anyone's inbox. An address counts
//! as verified only when a server source set it, when an identity token carried it as a verified claim
//! (`email` with `email_verified`, `phone_number` with `phone_number_verified`), or when the configuration
//! believes a browser source's contact points explicitly (`contactProof: "off"`). The proof is kept per trait
//! with a digest of the value it proved: a later value from anywhere without proof is simply not verified, and a
//! merge or a split that moves values around cannot carry a proof to a value it was not made for.

use crate::core::base::encoding::hex;
use crate::core::base::time::Millis;
use crate::core::base::value::Value;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Who proved a contact point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProvenBy {
    /// A server source set it (its key is a secret: what it says is believed).
    Server,
    /// An identity token from the site's backend carried it as a verified claim.
    Token,
    /// The configuration believes the browser source's contact points (`contactProof: "off"`).
    Configuration,
}

impl ProvenBy {
    pub fn name(self) -> &'static str {
        match self {
            ProvenBy::Server => "server",
            ProvenBy::Token => "token",
            ProvenBy::Configuration => "configuration",
        }
    }
}

/// The proof of one contact point: the digest of the value it proved, when, and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactProof {
    pub digest: String,
    pub at: Millis,
    pub by: ProvenBy,
}

/// A profile's proven contact points, by trait name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts {
    pub proofs: BTreeMap<String, ContactProof>,
}

/// The digest a proof keeps of its value (128 bits of SHA-256 over the value's JSON text): enough to tell values
/// apart, without keeping a second copy of the address.
pub fn digest(value: &Value) -> String {
    let mut h = Sha256::new();
    h.update(b"edgecdp/contact\0");
    h.update(value.to_json().to_string().as_bytes());
    hex(&h.finalize()[..16])
}

impl Contacts {
    /// Records that `value` of trait `name` was proven at `at`.
    pub fn prove(&mut self, name: &str, value: &Value, at: Millis, by: ProvenBy) {
        self.proofs.insert(name.to_string(), ContactProof { digest: digest(value), at, by });
    }

    /// The proof of trait `name` holding `value` now, if it has one.
    pub fn proof_of(&self, name: &str, value: &Value) -> Option<&ContactProof> {
        self.proofs.get(name).filter(|p| p.digest == digest(value))
    }

    /// A merge: the absorbed profile's proofs join the survivor's where they prove the value the survivor now
    /// holds (`current`: the survivor's trait values after the merge); a proof of a value that lost is dropped.
    pub fn absorb(&mut self, other: &Contacts, current: impl Fn(&str) -> Option<Value>) {
        for (name, proof) in &other.proofs {
            let Some(value) = current(name) else { continue };
            let digest = digest(&value);
            let ours_holds = self.proofs.get(name).is_some_and(|p| p.digest == digest);
            if proof.digest == digest && !ours_holds {
                self.proofs.insert(name.clone(), proof.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::String(s.into())
    }

    #[test]
    fn each_prover_has_its_own_name() {
        let names = [ProvenBy::Server, ProvenBy::Token, ProvenBy::Configuration].map(ProvenBy::name);
        assert_eq!(names, ["server", "token", "configuration"]);
    }

    #[test]
    fn a_proof_holds_only_for_the_value_it_proved() {
        let mut c = Contacts::default();
        c.prove("email", &text("ana@example.com"), 5, ProvenBy::Server);
        assert!(c.proof_of("email", &text("ana@example.com")).is_some());
        assert!(c.proof_of("email", &text("anyone@victim.example")).is_none(), "another value is not proven");
        assert!(c.proof_of("phone", &text("ana@example.com")).is_none(), "another trait is not proven");
        assert!(c.proof_of("email", &Value::Number(1.0)).is_none());
        assert_ne!(digest(&text("1")), digest(&Value::Number(1.0)), "a string and a number are different values");
    }

    #[test]
    fn a_merge_keeps_the_proofs_of_the_values_that_won() {
        let mut survivor = Contacts::default();
        survivor.prove("email", &text("old@example.com"), 1, ProvenBy::Server);
        survivor.prove("phone", &text("+100"), 1, ProvenBy::Server);
        let mut other = Contacts::default();
        other.prove("email", &text("new@example.com"), 2, ProvenBy::Token);
        other.prove("phone", &text("+200"), 2, ProvenBy::Token);
        other.prove("whatsapp", &text("+300"), 2, ProvenBy::Token);
        // After the merge the survivor holds the absorbed e-mail, its own phone, and no whatsapp trait at all.
        let now = |name: &str| match name {
            "email" => Some(text("new@example.com")),
            "phone" => Some(text("+100")),
            _ => None,
        };
        survivor.absorb(&other, now);
        assert_eq!(survivor.proofs["email"].by, ProvenBy::Token);
        // A survivor with no proof of its own value does not take the proof of a value that lost.
        let mut bare = Contacts::default();
        bare.absorb(&other, now);
        assert!(!bare.proofs.contains_key("phone"), "+200 lost to +100: its proof stays behind");
        assert_eq!(bare.proofs["email"].by, ProvenBy::Token);
        assert!(survivor.proof_of("email", &text("new@example.com")).is_some());
        assert!(survivor.proof_of("phone", &text("+100")).is_some(), "the survivor's own proof stays");
        assert!(!survivor.proofs.contains_key("whatsapp"));
    }
}
