//! A profile's journeys: the instances running (which step, until when), the outbox of sends waiting to leave or
//! to be settled, the ledger of sends the marketing-pressure budget counts, and a bounded record of ended
//! instances. How they move is `engine::journeys`.

use crate::core::base::encoding::hex;
use crate::core::base::sort;
use crate::core::base::time::{format_iso8601, Millis};
use crate::core::base::value::{map_to_json, Value};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};

/// Ended instances a profile keeps (oldest go first).
pub const MAX_ENDED: usize = 50;
/// Journeys (with their entry keys) a profile remembers having entered, for `reentry: once` and `nth`.
pub const MAX_ENTERED: usize = 200;
/// Sends a profile's outbox holds at once; a send beyond it is recorded as ended (`outbox_full`), not kept.
pub const MAX_OUTBOX: usize = 50;
/// Sends the ledger remembers (the pressure budget counts those within its longest period).
pub const MAX_LEDGER: usize = 200;
/// Trigger properties an instance keeps as its context (the rest are not needed by any step).
pub const MAX_CONTEXT_PROPS: usize = 20;

/// One person's run through one journey.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique on this profile.
    pub id: u64,
    pub journey: String,
    /// The value of the journey's entry key property (`cart_id`), empty when it has none.
    pub key: String,
    /// The step it is at (by id, so that an edited journey does not move it somewhere else).
    pub step: String,
    pub entered_at: Millis,
    /// When it reached its step.
    pub since: Millis,
    /// When it wakes: the end of a wait, a hold's timeout.
    pub wake: Option<Millis>,
    /// The trigger event's properties (at most `MAX_CONTEXT_PROPS`), the journey's context in every payload.
    pub context: BTreeMap<String, Value>,
}

/// A send on its way: enqueued once the profile holding it is stored, claimed when it leaves (consent, erasure,
/// exits, pressure and quiet hours checked then), settled once the destination answered or gave up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// The delivery's id, its idempotency key at the destination across every retry (`webhook-id`, `messageId`).
    pub id: String,
    pub destination: String,
    pub journey: String,
    pub step: String,
    pub instance: u64,
    pub key: String,
    /// The event name the send carries.
    pub event: String,
    pub entered_at: Millis,
    pub context: BTreeMap<String, Value>,
    pub created: Millis,
    /// When it may leave (later than `created` when quiet hours deferred it).
    pub due: Millis,
    /// Handed to the delivery queue (the object does it after storing; the alarm retries what is not).
    pub enqueued: bool,
    /// When it was first claimed; a retry's claim is answered again without being counted again.
    pub claimed: Option<Millis>,
    /// Why it will not go (the instance exited, the journey was removed); the claim reports it.
    pub cancelled: Option<String>,
}

/// One send the pressure budget counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub at: Millis,
    pub channel: String,
    pub id: String,
}

/// An instance that ended, and why: `completed`, `exit:<event>`, `exit:audience:<id>`, `date_passed`, ...
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ended {
    pub journey: String,
    pub key: String,
    pub step: String,
    pub at: Millis,
    pub reason: String,
}

/// The journey part of a profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Journeys {
    pub instances: Vec<Instance>,
    pub outbox: Vec<Outgoing>,
    /// Oldest first, at most `MAX_LEDGER`.
    pub ledger: VecDeque<Sent>,
    /// Oldest first, at most `MAX_ENDED`.
    pub ended: VecDeque<Ended>,
    /// `journey\u{1f}key` of instances entered, oldest first, at most `MAX_ENTERED`.
    pub entered: VecDeque<String>,
    /// The last instance id and the last send number given out.
    pub seq: u64,
    pub sends: u64,
    /// Where the person was last seen: offset from UTC (minutes) and country, for local time and consent.
    pub utc_offset: Option<i32>,
    pub country: Option<String>,
}

impl Journeys {
    pub fn entered_key(journey: &str, key: &str) -> String {
        [journey, "\u{1f}", key].concat()
    }

    pub fn has_entered(&self, journey: &str, key: &str) -> bool {
        let k = Journeys::entered_key(journey, key);
        self.entered.iter().any(|e| *e == k)
    }

    pub(crate) fn note_entered(&mut self, journey: &str, key: &str) {
        self.entered.push_back(Journeys::entered_key(journey, key));
        while self.entered.len() > MAX_ENTERED {
            self.entered.pop_front();
        }
    }

    pub(crate) fn note_ended(&mut self, e: Ended) {
        self.ended.push_back(e);
        while self.ended.len() > MAX_ENDED {
            self.ended.pop_front();
        }
    }

    /// Sends of `channel` (all channels when `None`) counted since `since`.
    pub fn sent_since(&self, channel: Option<&str>, since: Millis) -> usize {
        self.ledger.iter().filter(|s| s.at > since && channel.is_none_or(|c| s.channel == c)).count()
    }

    /// The earliest instant anything here waits for: an instance's wake-up, or a send not yet handed to the queue
    /// (a cancelled one at once, so that its claim records why it did not leave).
    pub fn due(&self) -> Option<Millis> {
        let wakes = self.instances.iter().filter_map(|i| i.wake);
        let sends =
            self.outbox.iter().filter(|o| !o.enqueued).map(|o| if o.cancelled.is_some() { o.created } else { o.due });
        wakes.chain(sends).min()
    }

    /// Takes over a profile absorbed by a merge: its instances (unless one of the same journey and key runs here,
    /// in which case the absorbed one's sends are cancelled as `merged`), its outbox (sends keep their ids, so a
    /// delivery already queued finds them here through the absorbed profile's tombstone), its ledger, ended
    /// instances and entries.
    pub(crate) fn absorb(&mut self, other: &Journeys) {
        for inst in &other.instances {
            let duplicate = self.instances.iter().any(|i| i.journey == inst.journey && i.key == inst.key);
            let new_id = if duplicate {
                None
            } else {
                self.seq += 1;
                let mut adopted = inst.clone();
                adopted.id = self.seq;
                self.instances.push(adopted);
                Some(self.seq)
            };
            for o in other.outbox.iter().filter(|o| o.instance == inst.id && o.journey == inst.journey) {
                let mut o = o.clone();
                match new_id {
                    Some(id) => o.instance = id,
                    None => {
                        o.cancelled.get_or_insert_with(|| "merged".into());
                    }
                }
                self.outbox.push(o);
            }
        }
        // Sends of instances that had already ended there.
        for o in &other.outbox {
            if !other.instances.iter().any(|i| i.id == o.instance && i.journey == o.journey) {
                self.outbox.push(o.clone());
            }
        }
        let mut ledger: Vec<Sent> = self.ledger.drain(..).chain(other.ledger.iter().cloned()).collect();
        sort::sort_by_key(&mut ledger, |s| s.at);
        ledger.dedup_by(|a, b| a.id == b.id);
        let excess = ledger.len().saturating_sub(MAX_LEDGER);
        self.ledger = ledger.into_iter().skip(excess).collect();
        for e in &other.ended {
            self.note_ended(e.clone());
        }
        for e in &other.entered {
            if !self.entered.contains(e) {
                self.entered.push_back(e.clone());
            }
        }
        while self.entered.len() > MAX_ENTERED {
            self.entered.pop_front();
        }
        self.utc_offset = self.utc_offset.or(other.utc_offset);
        self.country = self.country.clone().or_else(|| other.country.clone());
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "instances": self.instances.iter().map(|i| serde_json::json!({
                "id": i.id, "journey": i.journey, "key": i.key, "step": i.step,
                "enteredAt": format_iso8601(i.entered_at), "since": format_iso8601(i.since),
                "wakeAt": i.wake.map(format_iso8601), "context": map_to_json(&i.context),
            })).collect::<Vec<_>>(),
            "outbox": self.outbox.iter().map(|o| serde_json::json!({
                "id": o.id, "destination": o.destination, "journey": o.journey, "step": o.step, "event": o.event,
                "due": format_iso8601(o.due), "enqueued": o.enqueued, "claimedAt": o.claimed.map(format_iso8601),
                "cancelled": o.cancelled,
            })).collect::<Vec<_>>(),
            "sent": self.ledger.iter().map(|s| serde_json::json!({
                "id": s.id, "channel": s.channel, "at": format_iso8601(s.at),
            })).collect::<Vec<_>>(),
            "ended": self.ended.iter().map(|e| serde_json::json!({
                "journey": e.journey, "key": e.key, "step": e.step, "at": format_iso8601(e.at), "reason": e.reason,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The id of a profile's `n`th send: `dlv_` and 96 bits of a digest of the profile id and `n`. Unique as the
/// profile id is, stable across merges (it is kept in the outbox), and naming nobody: the id travels to
/// destinations (the webhook's `webhook-id`) and stays in the outcome log after an erasure, so it must not embed
/// the profile id.
pub fn delivery_id(profile_id: &str, n: u64) -> String {
    let mut h = Sha256::new();
    h.update(b"edgecdp/delivery\0");
    h.update(profile_id.as_bytes());
    h.update(n.to_le_bytes());
    ["dlv_", &hex(&h.finalize()[..12])].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_due_time_is_the_earliest_wait_or_unsent_send_and_records_stay_bounded() {
        let mut j = Journeys::default();
        assert_eq!(j.due(), None);
        j.instances.push(Instance {
            id: 1,
            journey: "a".into(),
            key: String::new(),
            step: "w".into(),
            entered_at: 0,
            since: 0,
            wake: Some(50),
            context: BTreeMap::new(),
        });
        let send = |id: &str, due, enqueued| Outgoing {
            id: id.into(),
            destination: "d".into(),
            journey: "a".into(),
            step: "s".into(),
            instance: 1,
            key: String::new(),
            event: "E".into(),
            entered_at: 0,
            context: BTreeMap::new(),
            created: 0,
            due,
            enqueued,
            claimed: None,
            cancelled: None,
        };
        j.outbox.push(send("x", 10, true));
        assert_eq!(j.due(), Some(50), "an enqueued send waits for nothing here");
        j.outbox.push(Outgoing { cancelled: Some("exited".into()), created: 40, ..send("z", 90, false) });
        assert_eq!(j.due(), Some(40), "a cancelled send is queued at once, for its claim to record why");
        j.outbox.pop();
        j.outbox.push(send("y", 20, false));
        assert_eq!(j.due(), Some(20));
        for i in 0..(MAX_ENDED + 5) {
            j.note_ended(Ended {
                journey: "a".into(),
                key: i.to_string(),
                step: "s".into(),
                at: 0,
                reason: "r".into(),
            });
            j.note_entered("a", &i.to_string());
        }
        assert_eq!(j.ended.len(), MAX_ENDED);
        assert!(j.has_entered("a", "54") && !j.has_entered("a", "x"));
    }
}
