//! What a profile's object is asked and what it answers: one request type and one reply type, each encoded with
//! a version byte (`OBJECT_V1`), a tag and its fields (strings and bytes length-prefixed, times as 8 bytes; an
//! apply and its answer in their own stored formats, `store::encode_apply`), for the Worker's one client of the
//! object (`edge::objects::profile_client`) and the object itself. Written by hand rather than derived: the
//! Worker's Wasm is smaller for it (SIZE.md). A tombstone answers every request but `Restore` and
//! `Forget` with `Reply::Moved`, which the client follows.

use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyAnswer, ApplyRequest};
use crate::core::model::journey::Outgoing;
use crate::core::store::{decode_apply, decode_apply_answer, encode_apply, encode_apply_answer, CodecError};

/// Version 1 of the requests and replies between the Worker and a profile's object.
pub const OBJECT_V1: u8 = 1;

/// A request to one profile's object.
#[derive(Clone, Debug, PartialEq)]
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
    /// Journeys' sends are leaving (a profile's due sends, claimed in one call): re-check each and make its
    /// payload from the profile as it is now. At most `MAX_CLAIMS`.
    Claim { deliveries: Vec<String> },
    /// A delivery is over.
    Settle { delivery: String, delivered: bool },
}

/// What a claim decided (`journeys::claim`).
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimAnswer {
    Go { body: String, content_type: String },
    Suppressed { reason: String },
    Deferred { until: Millis },
    Unknown,
}

/// Sends claimed in one call at most (a delivery queue's batch).
pub const MAX_CLAIMS: usize = 100;

/// One send's claim: what was decided, and the send it was about.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    pub answer: ClaimAnswer,
    pub send: Option<ClaimedSend>,
}

/// The send a claim was about, as the outcome log names it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedSend {
    pub profile: String,
    pub journey: String,
    pub step: String,
    pub key: String,
    pub event: String,
}

impl ClaimedSend {
    /// The send `o` of profile `profile`.
    pub fn of(profile: &str, o: &Outgoing) -> ClaimedSend {
        let (journey, step, key, event) = (o.journey.clone(), o.step.clone(), o.key.clone(), o.event.clone());
        ClaimedSend { profile: profile.to_string(), journey, step, key, event }
    }
}

/// A profile object's answer.
#[derive(Clone, Debug, PartialEq)]
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
    /// `Claim`: each send's claim, in the order asked.
    Claimed(Vec<Claimed>),
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
            Reply::Claimed(_) => "claimed",
            Reply::Settled(_) => "settled",
            Reply::Refused { .. } => "refused",
        }
    }
}

/// Bytes out: a version byte, then tags and fields.
struct Out(Vec<u8>);

impl Out {
    fn new(tag: u8) -> Out {
        Out(vec![OBJECT_V1, tag])
    }
    fn byte(mut self, b: u8) -> Out {
        self.0.push(b);
        self
    }
    fn bytes(mut self, b: &[u8]) -> Out {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn text(self, t: &str) -> Out {
        self.bytes(t.as_bytes())
    }
    fn time(mut self, t: Millis) -> Out {
        self.0.extend_from_slice(&t.to_le_bytes());
        self
    }
}

/// Bytes in, each read checked: a short or malformed value is `CodecError::Corrupt`.
struct In<'a>(&'a [u8]);

impl<'a> In<'a> {
    /// The reader after the version byte, and the tag.
    fn open(bytes: &'a [u8]) -> Result<(In<'a>, u8), CodecError> {
        match bytes {
            [] => Err(CodecError::Empty),
            [OBJECT_V1, tag, rest @ ..] => Ok((In(rest), *tag)),
            [OBJECT_V1] => Err(corrupt()),
            [v, ..] => Err(CodecError::UnknownVersion(*v)),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn byte(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn flag(&mut self) -> Result<bool, CodecError> {
        Ok(self.byte()? != 0)
    }
    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| corrupt())?);
        self.take(n as usize)
    }
    fn text(&mut self) -> Result<String, CodecError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| corrupt())
    }
    fn time(&mut self) -> Result<Millis, CodecError> {
        Ok(Millis::from_le_bytes(self.take(8)?.try_into().map_err(|_| corrupt())?))
    }
    fn end<T>(self, value: T) -> Result<T, CodecError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(CodecError::Corrupt(format!("{} trailing bytes", self.0.len())))
        }
    }
}

fn corrupt() -> CodecError {
    CodecError::Corrupt("a request or reply of a profile object ends early".into())
}

pub fn encode_request(r: &Request) -> Vec<u8> {
    match r {
        Request::Apply(a) => Out::new(0).bytes(&encode_apply(a)),
        Request::Read => Out::new(1),
        Request::Locate => Out::new(2),
        Request::Handover { survivor } => Out::new(3).text(survivor),
        Request::Restore { profile, last_kv_write, repoint } => {
            Out::new(4).bytes(profile).time(*last_kv_write).byte(u8::from(*repoint))
        }
        Request::Split { absorbed } => Out::new(5).text(absorbed),
        Request::Erase => Out::new(6),
        Request::Forget => Out::new(7),
        Request::Reevaluate => Out::new(8),
        Request::Claim { deliveries } => {
            deliveries.iter().fold(Out::new(11).time(deliveries.len() as Millis), |o, d| o.text(d))
        }
        Request::Settle { delivery, delivered } => Out::new(10).text(delivery).byte(u8::from(*delivered)),
    }
    .0
}

pub fn decode_request(bytes: &[u8]) -> Result<Request, CodecError> {
    let (mut i, tag) = In::open(bytes)?;
    let r = match tag {
        0 => Request::Apply(decode_apply(i.bytes()?)?),
        1 => Request::Read,
        2 => Request::Locate,
        3 => Request::Handover { survivor: i.text()? },
        4 => Request::Restore { profile: i.bytes()?.to_vec(), last_kv_write: i.time()?, repoint: i.flag()? },
        5 => Request::Split { absorbed: i.text()? },
        6 => Request::Erase,
        7 => Request::Forget,
        8 => Request::Reevaluate,
        11 => {
            let n = usize::try_from(i.time()?).ok().filter(|n| *n <= MAX_CLAIMS).ok_or_else(corrupt)?;
            Request::Claim { deliveries: (0..n).map(|_| i.text()).collect::<Result<_, _>>()? }
        }
        10 => Request::Settle { delivery: i.text()?, delivered: i.flag()? },
        t => return Err(CodecError::Corrupt(format!("unknown request {t}"))),
    };
    i.end(r)
}

pub fn encode_reply(r: &Reply) -> Vec<u8> {
    let opt = |o: Out, some: bool| o.byte(u8::from(some));
    match r {
        Reply::Moved { to } => Out::new(0).text(to),
        Reply::Applied(a) => Out::new(1).bytes(&encode_apply_answer(a)),
        Reply::Profile(None) => opt(Out::new(2), false),
        Reply::Profile(Some(b)) => opt(Out::new(2), true).bytes(b),
        Reply::Located(here) => Out::new(3).byte(u8::from(*here)),
        Reply::HandedOver(None) => opt(Out::new(4), false),
        Reply::HandedOver(Some((b, t))) => opt(Out::new(4), true).bytes(b).time(*t),
        Reply::Restored { id } => Out::new(5).text(id),
        Reply::Split { profiles: [a, b] } => Out::new(6).text(a).text(b),
        Reply::Erased { identities } => Out::new(7).time(*identities as Millis),
        Reply::Forgotten(f) => Out::new(8).byte(u8::from(*f)),
        Reply::Reevaluated(None) => opt(Out::new(9), false),
        Reply::Reevaluated(Some(n)) => opt(Out::new(9), true).time(*n as Millis),
        Reply::Claimed(claims) => claims.iter().fold(Out::new(13).time(claims.len() as Millis), |o, c| {
            let o = match &c.answer {
                ClaimAnswer::Go { body, content_type } => o.byte(0).text(body).text(content_type),
                ClaimAnswer::Suppressed { reason } => o.byte(1).text(reason),
                ClaimAnswer::Deferred { until } => o.byte(2).time(*until),
                ClaimAnswer::Unknown => o.byte(3),
            };
            match &c.send {
                None => opt(o, false),
                Some(s) => opt(o, true).text(&s.profile).text(&s.journey).text(&s.step).text(&s.key).text(&s.event),
            }
        }),
        Reply::Settled(s) => Out::new(11).byte(u8::from(*s)),
        Reply::Refused { code, message } => Out::new(12).text(code).text(message),
    }
    .0
}

pub fn decode_reply(bytes: &[u8]) -> Result<Reply, CodecError> {
    let (mut i, tag) = In::open(bytes)?;
    let r = match tag {
        0 => Reply::Moved { to: i.text()? },
        1 => Reply::Applied(decode_apply_answer(i.bytes()?)?),
        2 => Reply::Profile(if i.flag()? { Some(i.bytes()?.to_vec()) } else { None }),
        3 => Reply::Located(i.flag()?),
        4 => Reply::HandedOver(if i.flag()? { Some((i.bytes()?.to_vec(), i.time()?)) } else { None }),
        5 => Reply::Restored { id: i.text()? },
        6 => Reply::Split { profiles: [i.text()?, i.text()?] },
        7 => Reply::Erased { identities: i.time()? as usize },
        8 => Reply::Forgotten(i.flag()?),
        9 => Reply::Reevaluated(if i.flag()? { Some(i.time()? as usize) } else { None }),
        13 => {
            let n = usize::try_from(i.time()?).ok().filter(|n| *n <= MAX_CLAIMS).ok_or_else(corrupt)?;
            let mut claims = Vec::with_capacity(n);
            for _ in 0..n {
                let answer = match i.byte()? {
                    0 => ClaimAnswer::Go { body: i.text()?, content_type: i.text()? },
                    1 => ClaimAnswer::Suppressed { reason: i.text()? },
                    2 => ClaimAnswer::Deferred { until: i.time()? },
                    _ => ClaimAnswer::Unknown,
                };
                let send = if i.flag()? {
                    let mut t = || i.text();
                    Some(ClaimedSend { profile: t()?, journey: t()?, step: t()?, key: t()?, event: t()? })
                } else {
                    None
                };
                claims.push(Claimed { answer, send });
            }
            Reply::Claimed(claims)
        }
        11 => Reply::Settled(i.flag()?),
        12 => Reply::Refused { code: i.text()?, message: i.text()? },
        t => return Err(CodecError::Corrupt(format!("unknown reply {t}"))),
    };
    i.end(r)
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
        let reply = Reply::Claimed(vec![Claimed {
            answer: ClaimAnswer::Go { body: "{}".into(), content_type: "application/json".into() },
            send: None,
        }]);
        assert_eq!(decode_reply(&encode_reply(&reply)), Ok(reply));
        let send = ClaimedSend {
            profile: "p".into(),
            journey: "j".into(),
            step: "s".into(),
            key: "k".into(),
            event: "e".into(),
        };
        let replies = [
            Reply::Moved { to: "p2".into() },
            Reply::Applied(ApplyAnswer { stored: 3, erased: true, ..ApplyAnswer::default() }),
            Reply::Profile(None),
            Reply::Profile(Some(vec![1, 2])),
            Reply::HandedOver(Some((vec![3], -5))),
            Reply::Split { profiles: ["a".into(), "b".into()] },
            Reply::Erased { identities: 4 },
            Reply::Reevaluated(Some(2)),
            Reply::Claimed(vec![
                Claimed { answer: ClaimAnswer::Deferred { until: 9 }, send: Some(send) },
                Claimed { answer: ClaimAnswer::Suppressed { reason: "erased".into() }, send: None },
                Claimed { answer: ClaimAnswer::Unknown, send: None },
            ]),
            Reply::Claimed(Vec::new()),
            Reply::Refused { code: "c".into(), message: "m".into() },
        ];
        for r in replies {
            assert_eq!(decode_reply(&encode_reply(&r)), Ok(r));
        }
        assert_eq!(decode_reply(&[9, 0]), Err(CodecError::UnknownVersion(9)));
        assert_eq!(decode_reply(&[]), Err(CodecError::Empty));
        let claims = Request::Claim { deliveries: vec!["d1".into(), "d2".into()] };
        assert_eq!(decode_request(&encode_request(&claims)), Ok(claims));
        let too_many = Request::Claim { deliveries: vec![String::new(); MAX_CLAIMS + 1] };
        assert!(matches!(decode_request(&encode_request(&too_many)), Err(CodecError::Corrupt(_))), "a bounded list");
        let mut long = encode_request(&Request::Claim { deliveries: vec!["d".into()] });
        long.push(0);
        assert!(matches!(decode_request(&long), Err(CodecError::Corrupt(_))), "trailing bytes are refused");
        let short = encode_request(&Request::Claim { deliveries: vec!["delivery".into()] });
        assert!(matches!(decode_request(&short[..short.len() - 1]), Err(CodecError::Corrupt(_))));
    }
}
