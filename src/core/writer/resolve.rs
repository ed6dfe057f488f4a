//! Where a batch's identities lead, as steps without I/O (`Resolving`, after `client::Lookup`): the identity
//! index's entries, read at once; for an identity it does not know, whether it was erased moments ago; and, where
//! the identities lead to several profiles, where each of those lives now (a profile merged into another keeps
//! its index entries for up to a minute, while KV catches up). Collection (`edge::collecting`) and imports
//! (`edge::ingest`) run it; the Rust Worker (`profile_client::drive`) or the JavaScript shell carries its reads out.

use crate::core::base::sort;
use crate::core::engine::merge::MAX_PROFILES_PER_REQUEST;
use crate::core::model::identity::Identity;
use crate::core::writer::client::{reply_of, Failed, Need, Steps};
use crate::core::writer::protocol::{encode_request, Reply, Request};
use std::collections::{BTreeMap, BTreeSet};

/// A batch's identities on their way to the profiles they lead to.
#[derive(Debug)]
pub struct Resolving {
    stage: Stage,
    index: BTreeMap<Identity, String>,
    erased: BTreeSet<Identity>,
}

#[derive(Debug)]
enum Stage {
    /// The index entries of `ids` (their keys, in order).
    Index {
        ids: Vec<Identity>,
        keys: Vec<String>,
    },
    /// The erasure marks of the identities the index does not know.
    Erased {
        ids: Vec<Identity>,
        keys: Vec<String>,
    },
    /// Where each of the distinct profiles lives now (`Request::Locate`, encoded).
    Locate {
        profiles: Vec<String>,
        body: Vec<u8>,
    },
    Done,
}

impl Resolving {
    pub fn new(identities: BTreeSet<Identity>) -> Resolving {
        let ids: Vec<Identity> = identities.into_iter().collect();
        let keys = ids.iter().map(Identity::index_key).collect();
        let stage = if ids.is_empty() { Stage::Done } else { Stage::Index { ids, keys } };
        Resolving { stage, index: BTreeMap::new(), erased: BTreeSet::new() }
    }

    /// Once `need` is `Done`: each known identity's profile (moves followed), and the identities erased moments
    /// ago.
    pub fn found(self) -> (BTreeMap<Identity, String>, BTreeSet<Identity>) {
        (self.index, self.erased)
    }

    /// After the marks: the profiles' objects are asked where each lives only when the identities lead to more
    /// than one, and to no more than one request may write (more are refused by the planner anyway), so that a
    /// hostile batch naming thousands of profiles costs no more than that many calls.
    fn locate(&mut self) {
        let profiles: Vec<String> = sort::set_of(self.index.values().cloned()).into_iter().collect();
        self.stage = if profiles.len() > 1 && profiles.len() <= MAX_PROFILES_PER_REQUEST {
            Stage::Locate { profiles, body: encode_request(&Request::Locate) }
        } else {
            Stage::Done
        };
    }
}

/// Answers that do not match what was asked (a carrier's mistake): nothing is concluded from them.
fn mismatched(asked: usize, got: usize) -> Failed {
    Failed::Unavailable(format!("{got} answers to {asked} reads"))
}

impl Steps for Resolving {
    type Error = Failed;

    fn need(&self) -> Need<'_> {
        match &self.stage {
            Stage::Index { keys, .. } | Stage::Erased { keys, .. } => Need::Texts(keys),
            Stage::Locate { profiles, body } => Need::Calls(profiles, body),
            Stage::Done => Need::Done,
        }
    }

    fn text(&mut self, _value: Option<String>) {}

    fn bytes(&mut self, _value: Option<&[u8]>) -> Result<(), Failed> {
        Ok(())
    }

    fn answer(&mut self, _status: u16, _bytes: &[u8]) -> Result<(), Failed> {
        Ok(())
    }

    fn texts(&mut self, values: Vec<Option<String>>) -> Result<(), Failed> {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            Stage::Index { ids, keys } => {
                if values.len() != keys.len() {
                    return Err(mismatched(keys.len(), values.len()));
                }
                let mut unknown = Vec::new();
                for (id, value) in ids.into_iter().zip(values) {
                    match value {
                        Some(pid) => {
                            self.index.insert(id, pid);
                        }
                        None => unknown.push(id),
                    }
                }
                if unknown.is_empty() {
                    self.locate();
                } else {
                    let keys = unknown.iter().map(Identity::erased_key).collect();
                    self.stage = Stage::Erased { ids: unknown, keys };
                }
            }
            Stage::Erased { ids, keys } => {
                if values.len() != keys.len() {
                    return Err(mismatched(keys.len(), values.len()));
                }
                self.erased.extend(ids.into_iter().zip(values).filter(|(_, v)| v.is_some()).map(|(id, _)| id));
                self.locate();
            }
            other => self.stage = other,
        }
        Ok(())
    }

    fn replies(&mut self, answers: Vec<(u16, Vec<u8>)>) -> Result<(), Failed> {
        let Stage::Locate { profiles, .. } = std::mem::replace(&mut self.stage, Stage::Done) else { return Ok(()) };
        if answers.len() != profiles.len() {
            return Err(mismatched(profiles.len(), answers.len()));
        }
        let mut moved = BTreeMap::new();
        for (from, (status, bytes)) in profiles.into_iter().zip(answers) {
            // A refusal is no answer to where a profile lives: the batch is retried rather than planned on it.
            let reply = reply_of(status, &bytes).map_err(|f| match f {
                Failed::Refused { code, message } => Failed::Unavailable(format!("{code}: {message}")),
                f => f,
            })?;
            if let Reply::Moved { to } = reply {
                if to != from {
                    moved.insert(from, to);
                }
            }
        }
        for pid in self.index.values_mut() {
            if let Some(to) = moved.get(pid) {
                *pid = to.clone();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::identity::{ANONYMOUS_ID, USER_ID};
    use crate::core::writer::protocol::{decode_request, encode_reply};

    /// The store a resolution reads: index entries (identity value → profile), erasure marks, and each object's
    /// answer to `Locate` (`None`: it says it is there; `Some(to)`: moved; `Err(status)`).
    struct World {
        index: Vec<(&'static str, &'static str)>,
        erased: Vec<&'static str>,
        objects: Vec<(&'static str, Result<Option<&'static str>, u16>)>,
    }

    fn id(v: &str) -> Identity {
        Identity::new(if v.starts_with('u') { USER_ID } else { ANONYMOUS_ID }, v)
    }

    /// What a resolution found: "identity value=profile" each, and the erased values.
    type Found = (Vec<String>, Vec<String>);

    /// A row: the identities named, what is found (as `Found`), and the reads in order.
    type Row<'a> = (&'a [&'a str], &'a [&'a str], &'a [&'a str], &'a [String]);

    /// What it found and the reads in order, or why it failed; `short`: that many answers left off.
    fn run(w: &World, ids: &[&str], short: usize) -> (Result<Found, Failed>, Vec<String>) {
        let mut r = Resolving::new(ids.iter().map(|v| id(v)).collect());
        let mut log = Vec::new();
        for _ in 0..10 {
            let step = match r.need() {
                Need::Texts(keys) => {
                    log.push(format!("read {}", keys.join(" ")));
                    let mut values: Vec<Option<String>> = keys
                        .iter()
                        .map(|k| {
                            let known = w.index.iter().find(|(v, _)| id(v).index_key() == *k).map(|(_, p)| p);
                            let mark = w.erased.iter().find(|v| id(v).erased_key() == *k).map(|_| &"1");
                            known.or(mark).map(|s| s.to_string())
                        })
                        .collect();
                    values.truncate(values.len() - short.min(values.len()));
                    r.texts(values)
                }
                Need::Calls(profiles, body) => {
                    assert!(matches!(decode_request(body), Ok(Request::Locate)));
                    log.push(format!("locate {}", profiles.join(" ")));
                    let answers = profiles
                        .iter()
                        .map(|p| match w.objects.iter().find(|(o, _)| o == p).map(|(_, a)| a) {
                            Some(Ok(Some(to))) => (200, encode_reply(&Reply::Moved { to: to.to_string() })),
                            Some(Err(status)) => (*status, b"down".to_vec()),
                            _ => (200, encode_reply(&Reply::Located(true))),
                        })
                        .collect();
                    r.replies(answers)
                }
                Need::Done => {
                    let (index, erased) = r.found();
                    let index = index.iter().map(|(i, p)| format!("{}={p}", i.value)).collect();
                    return (Ok((index, erased.iter().map(|i| i.value.clone()).collect())), log);
                }
                other => panic!("a resolution reads several keys or objects at once: {other:?}"),
            };
            if let Err(e) = step {
                return (Err(e), log);
            }
        }
        panic!("a resolution that never ends: {log:?}");
    }

    fn key(v: &str) -> String {
        id(v).index_key()
    }

    #[test]
    fn each_identity_is_resolved_as_the_index_and_the_objects_say() {
        let world = World {
            index: vec![("a1", "p1"), ("u1", "p2"), ("a2", "p3"), ("a3", "p3")],
            erased: vec!["a9"],
            objects: vec![("p1", Ok(Some("p2"))), ("p9", Err(503))],
        };
        // (identities, what is found, reads in order)
        let rows: &[Row] = &[
            // Nothing named, nothing read.
            (&[], &[], &[], &[]),
            // A known identity alone: its entry, and no object asked.
            (&["a1"], &["a1=p1"], &[], &[format!("read {}", key("a1"))]),
            // An unknown one: its erasure mark is read too, and says nothing here.
            (&["a5"], &[], &[], &[format!("read {}", key("a5")), format!("read {}", id("a5").erased_key())]),
            (&["a9"], &[], &["a9"], &[format!("read {}", key("a9")), format!("read {}", id("a9").erased_key())]),
            // Two profiles: both objects asked, and the moved one followed to where it lives.
            (
                &["a1", "u1"],
                &["a1=p2", "u1=p2"],
                &[],
                &[format!("read {} {}", key("a1"), key("u1")), "locate p1 p2".to_string()],
            ),
            // Two identities of one profile: no object asked.
            (&["a2", "a3"], &["a2=p3", "a3=p3"], &[], &[format!("read {} {}", key("a2"), key("a3"))]),
        ];
        for (ids, index, erased, reads) in rows {
            let (got, log) = run(&world, ids, 0);
            let (got_index, got_erased) = got.unwrap_or_else(|e| panic!("{ids:?}: {e:?}"));
            assert_eq!(got_index, *index, "{ids:?}");
            assert_eq!(got_erased, *erased, "{ids:?}");
            assert_eq!(log, *reads, "{ids:?}");
        }
    }

    #[test]
    fn a_resolution_fails_rather_than_concluding_from_missing_or_refused_answers() {
        let world = World { index: vec![("a1", "p1"), ("a2", "p9")], erased: vec![], objects: vec![("p9", Err(503))] };
        // An object that cannot say where its profile lives: the batch is not planned on a guess.
        let (got, _) = run(&world, &["a1", "a2"], 0);
        assert!(matches!(got, Err(Failed::Unavailable(m)) if m.contains("503")));
        // Fewer answers than reads: nothing is taken as absent.
        let (got, log) = run(&world, &["a1", "a5"], 1);
        assert_eq!(got, Err(Failed::Unavailable("1 answers to 2 reads".into())));
        assert_eq!(log.len(), 1);
        let (got, _) = run(&world, &["a5"], 1);
        assert!(matches!(got, Err(Failed::Unavailable(_))));
    }

    #[test]
    fn more_profiles_than_one_request_may_write_are_not_located() {
        let values: Vec<String> = (0..=MAX_PROFILES_PER_REQUEST).map(|i| format!("a{i}")).collect();
        let pids: Vec<String> = (0..=MAX_PROFILES_PER_REQUEST).map(|i| format!("p{i}")).collect();
        let leak = |v: &String| -> &'static str { Box::leak(v.clone().into_boxed_str()) };
        let index: Vec<_> = values.iter().zip(&pids).map(|(v, p)| (leak(v), leak(p))).collect();
        let world = World { index: index.clone(), erased: vec![], objects: vec![] };
        let ids: Vec<&str> = index.iter().map(|(v, _)| *v).collect();
        let (_, log) = run(&world, &ids, 0);
        assert_eq!(log.len(), 1, "only the index is read");
        let (_, log) = run(&world, &ids[..MAX_PROFILES_PER_REQUEST], 0);
        assert_eq!(log.len(), 2, "the objects are asked");
    }
}
