//! The client's side of a profile object's protocol, as steps without I/O (after the writer itself): `Follow`
//! sends one request to a profile's object and follows the tombstones it meets (at most `MAX_HOPS`); `Lookup`
//! finds the profile a visitor's identities lead to (the identity index in KV, the profile's snapshot, and the
//! object itself when the snapshot is young enough that a newer write may be due, `FRESH_MS`). Each says what it
//! needs next (`Need`) and is given the answer; whoever carries the I/O out (the Rust Worker's
//! `edge::objects::profile_client`, or the JavaScript shell through `edge::shell`) runs the same rules.

use crate::core::base::time::Millis;
use crate::core::model::identity::Identity;
use crate::core::model::profile::Profile;
use crate::core::store::{decode_profile, decode_snapshot};
use crate::core::writer::protocol::{decode_reply, encode_request, Reply, Request};
use crate::core::writer::{profile_key, FRESH_MS};

/// Tombstones a request follows at most: a merged profile names where it went, and KV may show the old index for
/// up to a minute, so a chain is short; a longer one is an error rather than a loop.
pub const MAX_HOPS: usize = 4;

/// Why a request to the objects could not go on.
#[derive(Clone, Debug, PartialEq)]
pub enum Failed {
    /// The object refused it (`Reply::Refused`).
    Refused { code: String, message: String },
    /// An answer that is not a 200 or cannot be read, a chain of tombstones too long, a reply of the wrong kind,
    /// an unreadable snapshot.
    Unavailable(String),
}

impl Failed {
    /// A reply of a kind the request does not have.
    pub fn unexpected(reply: &Reply) -> Failed {
        Failed::Unavailable(format!("profile writer answered {}", reply.kind()))
    }
}

/// An object's answer (its status and bytes) as its reply.
pub fn reply_of(status: u16, bytes: &[u8]) -> Result<Reply, Failed> {
    if status != 200 {
        let text = String::from_utf8_lossy(bytes);
        return Err(Failed::Unavailable(format!("profile writer answered {status}: {text}")));
    }
    decode_reply(bytes).map_err(|e| Failed::Unavailable(format!("profile writer answered unreadably: {e}")))
}

/// One request on its way to the object that holds its profile now.
#[derive(Clone, Debug)]
pub struct Follow {
    first: String,
    at: String,
    request: Request,
    passed: Vec<String>,
}

impl Follow {
    pub fn new(profile_id: &str, request: Request) -> Follow {
        Follow { first: profile_id.to_string(), at: profile_id.to_string(), request, passed: Vec::new() }
    }

    /// The profile whose object is asked next (and, once answered, the one that answered).
    pub fn at(&self) -> &str {
        &self.at
    }

    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The tombstones passed on the way.
    pub fn passed(&self) -> &[String] {
        &self.passed
    }

    /// What the object at `at` is sent.
    pub fn body(&self) -> Vec<u8> {
        encode_request(&self.request)
    }

    /// The object's answer (its status and bytes): the reply when it is the end of the way, `None` when the request
    /// goes on to the profile a tombstone named (an apply readdressed to it).
    pub fn answer(&mut self, status: u16, bytes: &[u8]) -> Result<Option<Reply>, Failed> {
        match reply_of(status, bytes)? {
            Reply::Moved { to } => {
                if self.passed.len() >= MAX_HOPS {
                    return Err(Failed::Unavailable(format!(
                        "profile {} moved more than {MAX_HOPS} times",
                        self.first
                    )));
                }
                if let Request::Apply(a) = &mut self.request {
                    a.profile_id = to.clone();
                }
                self.passed.push(std::mem::replace(&mut self.at, to));
                Ok(None)
            }
            Reply::Refused { code, message } => Err(Failed::Refused { code, message }),
            reply => Ok(Some(reply)),
        }
    }
}

/// What a step needs before it can go on.
#[derive(Debug)]
pub enum Need<'a> {
    /// The text of a KV key (an identity's index entry: the profile id), `None` when absent.
    Text(String),
    /// The bytes of a KV key (a profile's snapshot), `None` when absent.
    Bytes(String),
    /// The answer of the object `Follow::at` to `Follow::body`.
    Object(&'a Follow),
    /// The texts of several KV keys, read at once (`Steps::texts`, in the order asked).
    Texts(&'a [String]),
    /// The answers of several profiles' objects to one body, asked at once, each once (no tombstone followed, no
    /// configuration version named): `Steps::replies`, in the order asked.
    Calls(&'a [String], &'a [u8]),
    /// Nothing more: the step is over.
    Done,
}

/// A task that goes on in steps, each after one read or one call (`Lookup`, and the edge's decision): whoever
/// carries its I/O out asks `need`, and gives the answer to the method that takes it.
pub trait Steps {
    type Error;
    fn need(&self) -> Need<'_>;
    /// The KV text asked for (`Need::Text`).
    fn text(&mut self, value: Option<String>);
    /// The KV bytes asked for (`Need::Bytes`).
    fn bytes(&mut self, value: Option<&[u8]>) -> Result<(), Self::Error>;
    /// The object's answer (`Need::Object`).
    fn answer(&mut self, status: u16, bytes: &[u8]) -> Result<(), Self::Error>;
    /// The KV texts asked for at once (`Need::Texts`), one per key; a task that never asks ignores them.
    fn texts(&mut self, values: Vec<Option<String>>) -> Result<(), Self::Error> {
        let _ = values;
        Ok(())
    }
    /// The objects' answers asked for at once (`Need::Calls`), one status and body per profile.
    fn replies(&mut self, answers: Vec<(u16, Vec<u8>)>) -> Result<(), Self::Error> {
        let _ = answers;
        Ok(())
    }
}

#[derive(Debug)]
enum Step {
    Index(Identity),
    Snapshot(String),
    Object(Follow),
    Found(Option<Box<Profile>>),
}

/// The profile a visitor's identities lead to, the first that has one winning (a user's before an anonymous
/// one's): as its readers must see it, the KV snapshot, unless it was written less than `FRESH_MS` before `now`,
/// in which case the object itself answers. `Lookup::whole` asks the object always: the snapshot leaves out what
/// only the writer uses (`store::encode_reader_snapshot`), which an access request must show.
#[derive(Debug)]
pub struct Lookup {
    rest: Vec<Identity>,
    now: Millis,
    whole: bool,
    step: Step,
}

impl Lookup {
    pub fn new(identities: Vec<Identity>, now: Millis) -> Lookup {
        let mut rest = identities;
        rest.reverse();
        let mut l = Lookup { rest, now, whole: false, step: Step::Found(None) };
        l.next_identity();
        l
    }

    /// The whole profile, from its object: everything it holds (an access request's export).
    pub fn whole(identities: Vec<Identity>, now: Millis) -> Lookup {
        Lookup { whole: true, ..Lookup::new(identities, now) }
    }

    fn next_identity(&mut self) {
        self.step = match self.rest.pop() {
            Some(id) => Step::Index(id),
            None => Step::Found(None),
        };
    }

    /// The profile found, once `need` is `Done`.
    pub fn found(self) -> Option<Profile> {
        match self.step {
            Step::Found(p) => p.map(|p| *p),
            _ => None,
        }
    }
}

impl Steps for Lookup {
    type Error = Failed;

    fn need(&self) -> Need<'_> {
        match &self.step {
            Step::Index(id) => Need::Text(id.index_key()),
            Step::Snapshot(pid) => Need::Bytes(profile_key(pid)),
            Step::Object(f) => Need::Object(f),
            Step::Found(_) => Need::Done,
        }
    }

    fn text(&mut self, value: Option<String>) {
        if matches!(self.step, Step::Index(_)) {
            match value {
                Some(pid) if self.whole => self.step = Step::Object(Follow::new(&pid, Request::Read)),
                Some(pid) => self.step = Step::Snapshot(pid),
                None => self.next_identity(),
            }
        }
    }

    fn bytes(&mut self, value: Option<&[u8]>) -> Result<(), Failed> {
        let Step::Snapshot(pid) = &self.step else { return Ok(()) };
        let Some(bytes) = value else {
            self.next_identity();
            return Ok(());
        };
        let (profile, written_at) =
            decode_snapshot(bytes).map_err(|e| Failed::Unavailable(format!("profile {pid}: {e}")))?;
        self.step = if written_at.is_some_and(|at| self.now - at < FRESH_MS) {
            Step::Object(Follow::new(pid, Request::Read))
        } else {
            Step::Found(Some(Box::new(profile)))
        };
        Ok(())
    }

    fn answer(&mut self, status: u16, bytes: &[u8]) -> Result<(), Failed> {
        let Step::Object(f) = &mut self.step else { return Ok(()) };
        match f.answer(status, bytes)? {
            None => {}
            Some(Reply::Profile(Some(bytes))) => {
                let profile = decode_profile(&bytes).map_err(|e| Failed::Unavailable(e.to_string()))?;
                self.step = Step::Found(Some(Box::new(profile)));
            }
            Some(Reply::Profile(None)) => self.next_identity(),
            Some(other) => return Err(Failed::unexpected(&other)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::identity::{ANONYMOUS_ID, USER_ID};
    use crate::core::store::{encode_profile, encode_snapshot};
    use crate::core::writer::protocol::encode_reply;

    const NOW: Millis = 1_000_000;

    fn profile(id: &str) -> Profile {
        Profile::new(id.to_string(), NOW - 10_000)
    }

    fn reply(r: &Reply) -> Vec<u8> {
        encode_reply(r)
    }

    /// What the store holds, as a lookup reads it: index entries, snapshots written at a time, objects' replies.
    struct World {
        index: Vec<(&'static str, &'static str)>,
        snapshots: Vec<(&'static str, Millis)>,
        objects: Vec<(&'static str, Reply)>,
    }

    /// A case: its name, the store, the identities looked up, the profile found (or the failure), the I/O done.
    type Row = (
        &'static str,
        World,
        Vec<(&'static str, &'static str)>,
        Result<Option<&'static str>, &'static str>,
        &'static str,
    );

    /// Runs a lookup against `w`: the profile found, or what the failure says, and the I/O it did, in order.
    fn run(w: &World, ids: &[(&str, &str)], whole: bool) -> (Result<Option<String>, String>, Vec<String>) {
        let (got, log) = run_lookup(w, ids, whole);
        let got = got.map_err(|e| match e {
            Failed::Unavailable(m) => m,
            Failed::Refused { code, .. } => code,
        });
        (got, log)
    }

    fn run_lookup(w: &World, ids: &[(&str, &str)], whole: bool) -> (Result<Option<String>, Failed>, Vec<String>) {
        let ids = ids.iter().map(|(k, v)| Identity::new(k, v)).collect();
        let mut l = if whole { Lookup::whole(ids, NOW) } else { Lookup::new(ids, NOW) };
        let mut log = Vec::new();
        for _ in 0..20 {
            let step = match l.need() {
                Need::Text(key) => {
                    log.push(key.clone());
                    let v = w.index.iter().find(|(k, _)| *k == key).map(|(_, p)| p.to_string());
                    l.text(v);
                    Ok(())
                }
                Need::Bytes(key) => {
                    log.push(key.clone());
                    let s = w.snapshots.iter().find(|(p, _)| profile_key(p) == key);
                    let bytes = s.map(|(p, at)| encode_snapshot(&encode_profile(&profile(p)), *at));
                    l.bytes(bytes.as_deref())
                }
                Need::Object(f) => {
                    log.push(format!("object:{}", f.at()));
                    assert_eq!(f.body(), encode_request(&Request::Read));
                    let r = w.objects.iter().find(|(p, _)| *p == f.at()).map(|(_, r)| reply(r));
                    let (status, bytes) = r.map_or((500, b"gone".to_vec()), |b| (200, b));
                    l.answer(status, &bytes)
                }
                Need::Done => return (Ok(l.found().map(|p| p.id)), log),
                other => panic!("a lookup asks for one thing at a time: {other:?}"),
            };
            if let Err(e) = step {
                return (Err(e), log);
            }
        }
        panic!("a lookup that never ends: {log:?}");
    }

    fn stored(id: &str) -> Reply {
        Reply::Profile(Some(encode_profile(&profile(id))))
    }

    #[test]
    fn a_whole_lookup_reads_the_object_never_the_snapshot() {
        let old = NOW - FRESH_MS;
        let user = (USER_ID, "u1");
        let anon = (ANONYMOUS_ID, "a1");
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("an old snapshot is passed by: the object answers",
             World { index: vec![("idx:anonymous_id:a1", "p1")], snapshots: vec![("p1", old)],
                     objects: vec![("p1", stored("p1-whole"))] },
             vec![anon], Ok(Some("p1-whole")), "idx:anonymous_id:a1 object:p1"),
            ("an object with no profile leads on to the next identity",
             World { index: vec![("idx:user_id:u1", "pu"), ("idx:anonymous_id:a1", "pa")],
                     snapshots: vec![("pu", old), ("pa", old)],
                     objects: vec![("pu", Reply::Profile(None)), ("pa", stored("pa"))] },
             vec![user, anon], Ok(Some("pa")), "idx:user_id:u1 object:pu idx:anonymous_id:a1 object:pa"),
            ("tombstones are followed",
             World { index: vec![("idx:anonymous_id:a1", "p1")], snapshots: vec![],
                     objects: vec![("p1", Reply::Moved { to: "p2".into() }), ("p2", stored("p2"))] },
             vec![anon], Ok(Some("p2")), "idx:anonymous_id:a1 object:p1 object:p2"),
            ("no index entry: nothing",
             World { index: vec![], snapshots: vec![("p1", old)], objects: vec![("p1", stored("p1"))] },
             vec![anon], Ok(None), "idx:anonymous_id:a1"),
        ];
        for (name, world, ids, want, io) in rows {
            let (got, log) = run(&world, &ids, true);
            assert_eq!(got.as_ref().map(|p| p.as_deref()), want.map_err(String::from).as_ref().map(|p| *p), "{name}");
            assert_eq!(log.join(" "), io, "{name}");
        }
    }

    #[test]
    fn a_lookup_reads_what_its_readers_must_see() {
        let old = NOW - FRESH_MS;
        let young = NOW - FRESH_MS + 1;
        let moved = |to: &str| Reply::Moved { to: to.into() };
        let user = (USER_ID, "u1");
        let anon = (ANONYMOUS_ID, "a1");
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            ("no identity reads nothing",
             World { index: vec![], snapshots: vec![], objects: vec![] }, vec![], Ok(None), ""),
            ("an old snapshot is the answer",
             World { index: vec![("idx:anonymous_id:a1", "p1")], snapshots: vec![("p1", old)], objects: vec![] },
             vec![anon], Ok(Some("p1")), "idx:anonymous_id:a1 profile:p1"),
            ("a snapshot with a write still due: the object answers",
             World { index: vec![("idx:anonymous_id:a1", "p1")], snapshots: vec![("p1", young)],
                     objects: vec![("p1", stored("p1-now"))] },
             vec![anon], Ok(Some("p1-now")), "idx:anonymous_id:a1 profile:p1 object:p1"),
            ("the user's profile wins over the anonymous one",
             World { index: vec![("idx:user_id:u1", "pu"), ("idx:anonymous_id:a1", "pa")],
                     snapshots: vec![("pu", old), ("pa", old)], objects: vec![] },
             vec![user, anon], Ok(Some("pu")), "idx:user_id:u1 profile:pu"),
            ("a user without a profile: the anonymous one",
             World { index: vec![("idx:anonymous_id:a1", "pa")], snapshots: vec![("pa", old)], objects: vec![] },
             vec![user, anon], Ok(Some("pa")), "idx:user_id:u1 idx:anonymous_id:a1 profile:pa"),
            ("an index entry without a snapshot leads on to the next identity",
             World { index: vec![("idx:user_id:u1", "pu"), ("idx:anonymous_id:a1", "pa")],
                     snapshots: vec![("pa", old)], objects: vec![] },
             vec![user, anon], Ok(Some("pa")), "idx:user_id:u1 profile:pu idx:anonymous_id:a1 profile:pa"),
            ("an object with no profile leads on to the next identity",
             World { index: vec![("idx:user_id:u1", "pu"), ("idx:anonymous_id:a1", "pa")],
                     snapshots: vec![("pu", young), ("pa", old)], objects: vec![("pu", Reply::Profile(None))] },
             vec![user, anon], Ok(Some("pa")), "idx:user_id:u1 profile:pu object:pu idx:anonymous_id:a1 profile:pa"),
            ("tombstones are followed to the profile",
             World { index: vec![("idx:anonymous_id:a1", "p1")], snapshots: vec![("p1", young)],
                     objects: vec![("p1", moved("p2")), ("p2", stored("p2"))] },
             vec![anon], Ok(Some("p2")), "idx:anonymous_id:a1 profile:p1 object:p1 object:p2"),
            ("a chain of tombstones one too long fails",
             World { index: vec![("idx:anonymous_id:a1", "p0")], snapshots: vec![("p0", young)],
                     objects: vec![("p0", moved("p1")), ("p1", moved("p2")), ("p2", moved("p3")),
                                   ("p3", moved("p4")), ("p4", moved("p5")), ("p5", stored("p5"))] },
             vec![anon], Err("profile p0 moved more than 4 times"),
             "idx:anonymous_id:a1 profile:p0 object:p0 object:p1 object:p2 object:p3 object:p4"),
            ("the longest chain allowed is followed",
             World { index: vec![("idx:anonymous_id:a1", "p0")], snapshots: vec![("p0", young)],
                     objects: vec![("p0", moved("p1")), ("p1", moved("p2")), ("p2", moved("p3")),
                                   ("p3", moved("p4")), ("p4", stored("p4"))] },
             vec![anon], Ok(Some("p4")),
             "idx:anonymous_id:a1 profile:p0 object:p0 object:p1 object:p2 object:p3 object:p4"),
            ("an object that fails is unavailable, not an empty profile",
             World { index: vec![("idx:anonymous_id:a1", "p1")], snapshots: vec![("p1", young)], objects: vec![] },
             vec![anon], Err("profile writer answered 500: gone"), "idx:anonymous_id:a1 profile:p1 object:p1"),
            ("a reply of another kind is unavailable",
             World { index: vec![("idx:anonymous_id:a1", "p1")], snapshots: vec![("p1", young)],
                     objects: vec![("p1", Reply::Located(true))] },
             vec![anon], Err("profile writer answered located"), "idx:anonymous_id:a1 profile:p1 object:p1"),
        ];
        for (name, world, ids, want, io) in rows {
            let (got, log) = run(&world, &ids, false);
            assert_eq!(got.as_ref().map(|p| p.as_deref()), want.map_err(String::from).as_ref().map(|p| *p), "{name}");
            assert_eq!(log.join(" "), io, "{name}");
        }
    }

    #[test]
    fn a_refusal_is_the_object_s_and_an_apply_is_readdressed_at_each_tombstone() {
        use crate::core::engine::apply::ApplyRequest;
        let apply = Request::Apply(ApplyRequest { profile_id: "p1".into(), ..ApplyRequest::default() });
        let mut f = Follow::new("p1", apply);
        assert_eq!(f.answer(200, &reply(&Reply::Moved { to: "p2".into() })), Ok(None));
        assert_eq!(f.at(), "p2");
        assert_eq!(f.passed(), ["p1".to_string()]);
        match f.request() {
            Request::Apply(a) => assert_eq!(a.profile_id, "p2"),
            other => panic!("{other:?}"),
        }
        let refused = f.answer(200, &reply(&Reply::refused("profile_not_found", "gone")));
        assert_eq!(refused, Err(Failed::Refused { code: "profile_not_found".into(), message: "gone".into() }));
        assert!(matches!(f.answer(200, b"\x09"), Err(Failed::Unavailable(m)) if m.contains("unreadably")));
    }
}
