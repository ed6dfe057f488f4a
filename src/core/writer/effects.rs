//! What the writer asks its object to do (`Effect`, in order, with the reply and the alarm: `Effects`), and what
//! the object hands the writer (`Action`).

use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyRequest, Link};
use crate::core::engine::write::index_entry_stays;
use crate::core::model::identity::Identity;
use crate::core::model::profile::Profile;
use crate::core::model::shown::Outcome;
use crate::core::wire::deliveries::{DeliveryMessage, Record};
use crate::core::writer::protocol::{Reply, Request};
use crate::core::writer::state::{Key, Value};

/// An index entry to point at a profile, unless it should stay as it is (`IndexWrite::writes`): the object reads
/// the entry, asks, and writes.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexWrite {
    pub identity: Identity,
    pub profile_id: String,
    /// Identities a merge brought here, whose entries move whatever they say now.
    pub repoint: Vec<Identity>,
    pub expiration: Option<u64>,
    /// Whether an entry that leads here already is written again (for a new expiration).
    pub rewrite_own: bool,
}

impl IndexWrite {
    /// Whether the entry, which names `existing` now, is written. A new identity's entry is written unless it
    /// leads to another profile that no merge brought here (`write::index_entry_stays`) or here already. A
    /// rewrite (a new expiration, a merge's repointing) only rewrites an entry that exists: one that is gone was
    /// erased, or expired, and comes back only with an event.
    pub fn writes(&self, existing: Option<&str>) -> bool {
        let here = Some(self.profile_id.as_str());
        if self.rewrite_own {
            existing == here || (existing.is_some() && self.repoint.contains(&self.identity))
        } else {
            !index_entry_stays(&self.identity, existing, &self.profile_id, &self.repoint) && existing != here
        }
    }
}

/// One thing for the object to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// The object's own storage.
    Put(Key, Value),
    Delete(Key),
    DeleteAll,
    /// The time now, as the object's clock says after the KV writes before it, into this key: when a KV write
    /// really happened, which the one-write-a-second rule counts from.
    Stamp(Key),
    /// Hold the object (and every request to it) until this instant: an erasure waiting for KV's second.
    WaitUntil(Millis),
    /// KV: a profile snapshot (`store::encode_snapshot`), with its expiration (seconds).
    KvPut {
        key: String,
        value: Vec<u8>,
        expiration: Option<u64>,
    },
    KvDelete {
        key: String,
    },
    /// KV: an index entry, when `IndexWrite::writes` says so.
    KvIndex(IndexWrite),
    /// KV: an identity's entry goes, when it leads to one of `leads_to`, marked as erased first
    /// (`Identity::erased_key`) so that no moment exists in which it is neither indexed nor marked.
    KvUnindex {
        identity: Identity,
        leads_to: Vec<String>,
    },
    /// Another profile's object (a restore, a forget); `required`: anything but its success fails this action.
    Call {
        profile_id: String,
        request: Request,
        required: bool,
    },
    /// Experiment exposures and conversions, for the experiments' objects.
    Experiments(Vec<Outcome>),
    /// A message for the audience and journey index queue (JSON text).
    Index(String),
    /// The audience index forgets these profiles now, before the erasure answers.
    IndexErase {
        profile_ids: Vec<String>,
        at: Millis,
    },
    /// The delivery log forgets these profiles now.
    DeliveriesForget {
        profile_ids: Vec<String>,
    },
    /// Sends for the delivery queue (the profile holding them is stored already).
    Enqueue(Vec<DeliveryMessage>),
    /// Sends that will never leave (refused when queued, cancelled before they were), for the delivery log at
    /// once as `suppressed` with their reasons (`wire::deliveries::record`): nothing is queued or claimed for them.
    Suppressed(Vec<(Record, String)>),
    /// Messages for the export queue (`wire::export::messages`): the rows of what was stored.
    Export(Vec<String>),
    /// The export forgets these people (`wire::export::person_key`s) now: listed as erased, their rows in files
    /// purged, and no row of theirs still in the queue written.
    ExportErase {
        people: Vec<String>,
        at: Millis,
    },
}

/// What an action decided: the effects in order, the reply, and the alarm (`None`: leave it as it is;
/// `Some(None)`: none).
#[derive(Clone, Debug, PartialEq)]
pub struct Effects {
    pub effects: Vec<Effect>,
    pub reply: Reply,
    pub alarm: Option<Option<Millis>>,
}

/// A profile another object handed over for a merge, with when that object last wrote to KV.
#[derive(Clone, Debug, PartialEq)]
pub struct Handed {
    pub link: Link,
    pub profile: Profile,
    pub last_kv_write: Millis,
}

/// What the object is asked to do: a request (an apply with the profiles its links handed over, fetched first:
/// `Writer::handovers`), or its alarm.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Request(Request),
    Apply { request: ApplyRequest, handed: Vec<Handed> },
    Alarm,
}

impl Action {
    /// Whether deciding the action reads the configuration: reads, handovers and forgetting never do (nor does
    /// the alarm's instant after them), so the object need not load it for them, a KV read each.
    pub fn needs_config(&self) -> bool {
        !matches!(self, Action::Request(Request::Read | Request::Locate | Request::Handover { .. } | Request::Forget))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::identity::USER_ID;

    #[test]
    fn an_index_entry_is_written_only_where_it_belongs() {
        let id = Identity::new(USER_ID, "u1");
        let write = |repoint: bool, rewrite_own: bool| IndexWrite {
            identity: id.clone(),
            profile_id: "here".into(),
            repoint: if repoint { vec![id.clone()] } else { Vec::new() },
            expiration: None,
            rewrite_own,
        };
        // A new identity: written unless it is here already or another profile's without a merge.
        assert!(write(false, false).writes(None));
        assert!(!write(false, false).writes(Some("here")));
        assert!(!write(false, false).writes(Some("other")));
        assert!(write(true, false).writes(Some("other")));
        // A rewrite: only an entry that exists, and another profile's only with a merge.
        assert!(write(false, true).writes(Some("here")));
        assert!(!write(false, true).writes(None), "an erased or expired entry does not come back");
        assert!(!write(true, true).writes(None));
        assert!(!write(false, true).writes(Some("other")));
        assert!(write(true, true).writes(Some("other")));
    }
}
