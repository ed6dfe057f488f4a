//! What a profile's object is asked and what it answers: one request type and one reply type, each encoded with
//! a version byte (`OBJECT_V1`) and bincode like the stored formats, for the Worker's one client of the object
//! (`edge::objects::profile::ask`) and the object itself. A tombstone answers every request but `Restore` and
//! `Forget` with `Reply::Moved`, which the client follows.

use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyAnswer, ApplyRequest};
use crate::core::store::{decode, encode, CodecError};
use serde::{Deserialize, Serialize};

/// Version 1 of the requests and replies between the Worker and a profile's object.
pub const OBJECT_V1: u8 = 1;

/// A request to one profile's object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Events, impressions and links for this profile (`engine::write`).
    Apply(ApplyRequest),
    /// The profile as stored here (for readers that must not see a snapshot with a write still due).
    Read,
    /// Whether the profile lives here.
    Locate,
    /// Give this profile to `survivor` (a merge) and leave a tombstone that names it.
    Handover { survivor: String },
    /// Take a profile back (`store::encode_profile`): a merge that did not stand, or a split; with when its KV
    /// keys (its snapshot, its identities' entries) were last written, so that it leaves them a second, and
    /// whether its identities' entries move back to it (a split; a refused merge never moved them).
    Restore { profile: Vec<u8>, last_kv_write: Millis, repoint: bool },
    /// Give back the profile this one absorbed, which becomes its own again.
    Split { absorbed: String },
    /// Remove everything held about the profile.
    Erase,
    /// Remove a tombstone (the profile it names was erased).
    Forget,
    /// Bring the profile's audiences up to the configuration in force.
    Reevaluate,
    /// A journey's send is leaving: re-check it and make its payload from the profile as it is now.
    Claim { delivery: String },
    /// A delivery is over.
    Settle { delivery: String, delivered: bool },
}

/// What a claim decided (`journeys::claim`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClaimAnswer {
    Go { body: String, content_type: String },
    Suppressed { reason: String },
    Deferred { until: Millis },
    Unknown,
}

/// The send a claim was about, as the outcome log names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimedSend {
    pub profile: String,
    pub journey: String,
    pub step: String,
    pub key: String,
    pub event: String,
}

/// A profile object's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// A tombstone: the profile now lives in this one.
    Moved {
        to: String,
    },
    /// An apply's answer (`erased` set: the profile was erased moments ago and takes nothing).
    Applied(ApplyAnswer),
    /// `Read`: the encoded profile, if there is one.
    Profile(Option<Vec<u8>>),
    /// `Locate`: whether there is a profile here.
    Located(bool),
    /// `Handover`: the encoded profile and when this object last wrote to KV; `None`: there was none.
    HandedOver(Option<(Vec<u8>, Millis)>),
    Restored {
        id: String,
    },
    Split {
        profiles: [String; 2],
    },
    /// `Erase`: how many identities were unlinked.
    Erased {
        identities: usize,
    },
    Forgotten(bool),
    /// `Reevaluate`: how many transitions (`None`: no profile here).
    Reevaluated(Option<usize>),
    Claimed {
        answer: ClaimAnswer,
        send: Option<ClaimedSend>,
    },
    Settled(bool),
    /// The request could not be done: `profile_not_found`, `merge_not_found`, `merge_too_old`, `invalid_request`.
    Refused {
        code: String,
        message: String,
    },
}

impl Reply {
    pub fn refused(code: &str, message: &str) -> Reply {
        Reply::Refused { code: code.into(), message: message.into() }
    }

    /// The reply's kind, for an error that names an answer its request does not have.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Moved { .. } => "moved",
            Reply::Applied(_) => "applied",
            Reply::Profile(_) => "profile",
            Reply::Located(_) => "located",
            Reply::HandedOver(_) => "handed over",
            Reply::Restored { .. } => "restored",
            Reply::Split { .. } => "split",
            Reply::Erased { .. } => "erased",
            Reply::Forgotten(_) => "forgotten",
            Reply::Reevaluated(_) => "reevaluated",
            Reply::Claimed { .. } => "claimed",
            Reply::Settled(_) => "settled",
            Reply::Refused { .. } => "refused",
        }
    }
}

pub fn encode_request(r: &Request) -> Vec<u8> {
    encode(OBJECT_V1, r)
}

pub fn decode_request(bytes: &[u8]) -> Result<Request, CodecError> {
    decode(OBJECT_V1, bytes)
}

pub fn encode_reply(r: &Reply) -> Vec<u8> {
    encode(OBJECT_V1, r)
}

pub fn decode_reply(bytes: &[u8]) -> Result<Reply, CodecError> {
    decode(OBJECT_V1, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_and_name_their_version() {
        let requests = [
            Request::Apply(ApplyRequest { profile_id: "p1".into(), ..ApplyRequest::default() }),
            Request::Settle { delivery: "d1".into(), delivered: true },
            Request::Restore { profile: vec![6, 1, 2], last_kv_write: 7, repoint: true },
        ];
        for r in requests {
            let bytes = encode_request(&r);
            assert_eq!(bytes[0], OBJECT_V1);
            assert_eq!(decode_request(&bytes), Ok(r));
        }
        let reply = Reply::Claimed {
            answer: ClaimAnswer::Go { body: "{}".into(), content_type: "application/json".into() },
            send: None,
        };
        assert_eq!(decode_reply(&encode_reply(&reply)), Ok(reply));
        assert_eq!(decode_reply(&[9, 0]), Err(CodecError::UnknownVersion(9)));
    }
}
