//! What a profile's object stores (`Stored`), key by key (`Key`), as the writer reads it and its effects change
//! it.

use crate::core::base::time::Millis;
use crate::core::model::identity::Identity;
use crate::core::model::profile::Profile;
use crate::core::wire::journeys::JourneyState;

/// The keys of a profile object's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// The profile (`store::encode_profile_bounded`).
    Profile,
    /// The tombstone: the id of the profile this one was merged into, and since when.
    MovedTo,
    MovedAt,
    /// When the profile here was erased.
    ErasedAt,
    /// When this object last wrote the KV snapshot, and when the one that is due gets written.
    SnapshotAt,
    SnapshotDue,
    /// When this object last wrote an index entry, and when the entries get their new expiration.
    IndexAt,
    IndexDue,
    /// The expiration (seconds) on the KV snapshot and index entries; absent when they have none.
    KvExpiration,
    /// A merge's KV writes that wait for the absorbed profile's keys to be a second old (`Pending`, JSON).
    MergePending,
}

impl Key {
    pub const ALL: [Key; 10] = [
        Key::Profile,
        Key::MovedTo,
        Key::MovedAt,
        Key::ErasedAt,
        Key::SnapshotAt,
        Key::SnapshotDue,
        Key::IndexAt,
        Key::IndexDue,
        Key::KvExpiration,
        Key::MergePending,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Key::Profile => "profile",
            Key::MovedTo => "moved_to",
            Key::MovedAt => "moved_at",
            Key::ErasedAt => "erased_at",
            Key::SnapshotAt => "snapshot_at",
            Key::SnapshotDue => "snapshot_due",
            Key::IndexAt => "index_at",
            Key::IndexDue => "index_due",
            Key::KvExpiration => "kv_expiration",
            Key::MergePending => "merge_pending",
        }
    }
}

/// A value as the object's storage keeps it: the profile as bytes, times as numbers, the rest as text.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bytes(Vec<u8>),
    Number(f64),
    Text(String),
}

/// A merge's KV writes that wait: identities whose entries move here, absorbed profiles whose snapshots go.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pending {
    pub repoint: Vec<Identity>,
    pub absorbed: Vec<String>,
}

impl Pending {
    pub(crate) fn to_text(&self) -> String {
        let repoint: Vec<[&str; 2]> = self.repoint.iter().map(|i| [i.kind.as_str(), i.value.as_str()]).collect();
        serde_json::json!({"repoint": repoint, "absorbed": self.absorbed}).to_string()
    }

    fn of_text(text: &str) -> Pending {
        let j: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let repoint = j["repoint"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some(Identity::new(p.get(0)?.as_str()?, p.get(1)?.as_str()?)))
            .collect();
        let absorbed =
            j["absorbed"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)).collect();
        Pending { repoint, absorbed }
    }
}

/// What the object stores, field by field (`Key`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stored {
    pub profile: Option<Vec<u8>>,
    pub moved_to: Option<String>,
    pub moved_at: Option<Millis>,
    pub erased_at: Option<Millis>,
    pub snapshot_at: Option<Millis>,
    pub snapshot_due: Option<Millis>,
    pub index_at: Option<Millis>,
    pub index_due: Option<Millis>,
    pub kv_expiration: Option<u64>,
    pub merge_pending: Option<Pending>,
}

impl Stored {
    /// The state from the storage's values (`get` answers what a key holds).
    pub fn load(mut get: impl FnMut(Key) -> Option<Value>) -> Stored {
        let mut s = Stored::default();
        for key in Key::ALL {
            s.set(key, get(key));
        }
        s
    }

    pub(crate) fn set(&mut self, key: Key, value: Option<Value>) {
        let number = |v: &Option<Value>| match v {
            Some(Value::Number(n)) => Some(*n as Millis),
            _ => None,
        };
        let text = |v: &Option<Value>| match v {
            Some(Value::Text(t)) => Some(t.clone()),
            _ => None,
        };
        match key {
            Key::Profile => {
                self.profile = match value {
                    Some(Value::Bytes(b)) => Some(b),
                    _ => None,
                }
            }
            Key::MovedTo => self.moved_to = text(&value),
            Key::MovedAt => self.moved_at = number(&value),
            Key::ErasedAt => self.erased_at = number(&value),
            Key::SnapshotAt => self.snapshot_at = number(&value),
            Key::SnapshotDue => self.snapshot_due = number(&value),
            Key::IndexAt => self.index_at = number(&value),
            Key::IndexDue => self.index_due = number(&value),
            Key::KvExpiration => self.kv_expiration = number(&value).map(|e| e as u64),
            Key::MergePending => self.merge_pending = text(&value).map(|t| Pending::of_text(&t)),
        }
    }
}

/// What the object's alarm needs of a stored profile: when it was last seen if it is anonymous (it expires after
/// the retention period), and when its audiences and journeys next change by time alone.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Due {
    pub anonymous_since: Option<Millis>,
    pub audiences: Option<Millis>,
    pub journeys: Option<Millis>,
    /// A digest of what predictions read (`behaviour_digest`), to publish a summary only when it changed.
    pub behaviour: u64,
}

impl Due {
    pub fn of(p: &Profile) -> Due {
        Due {
            anonymous_since: (!p.is_identified()).then_some(p.last_seen),
            audiences: p.audiences.due,
            journeys: p.journeys.due(),
            behaviour: behaviour_digest(&p.behaviour),
        }
    }
}

fn behaviour_digest(b: &crate::core::model::behaviour::Behaviour) -> u64 {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(crate::core::store::encode(0, b));
    u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
}

/// What the journey index keeps of a profile (where it stands, why instances ended), to tell whether it changed.
pub(super) fn journey_view(p: &Profile) -> JourneyState {
    JourneyState::of_profile(&p.id, &p.journeys, 0)
}
