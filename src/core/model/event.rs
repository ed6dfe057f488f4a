//! The domain event: what the core knows about one thing a visitor did, independent of any wire format.

use crate::core::base::time::Millis;
use crate::core::base::value::Value;
use crate::core::model::identity::Identity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What kind of call this was, with the fields that only that kind carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    Track { event: String, properties: BTreeMap<String, Value> },
    Page { name: Option<String>, properties: BTreeMap<String, Value> },
    Screen { name: Option<String>, properties: BTreeMap<String, Value> },
    Identify { traits: BTreeMap<String, Value> },
    Alias { previous_id: String },
    Group { group_id: String, traits: BTreeMap<String, Value> },
}

/// Where the visitor was when the event happened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageContext {
    pub path: Option<String>,
    pub url: Option<String>,
    pub referrer: Option<String>,
}

/// One validated event. Its `timestamp` is already corrected for client clock skew.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub message_id: String,
    pub anonymous_id: Option<String>,
    pub user_id: Option<String>,
    pub timestamp: Millis,
    pub kind: EventKind,
    /// Consent preferences the sender attached, by category name as sent (`analytics`, `C0002`, ...).
    pub consent: Option<BTreeMap<String, bool>>,
    pub page: Option<PageContext>,
    /// `context.externalIds`: identifiers of other systems (CRM id, loyalty number).
    pub external_ids: Vec<Identity>,
    /// `context.identityToken`: the site backend's proof of `user_id`, checked and consumed by
    /// `core::model::trust::vouch` before the event goes any further.
    pub identity_token: Option<String>,
    /// Sent by a browser source: its identifier traits and external ids are claims, recorded on the profile as
    /// unverified and never made identities (nothing proves them; only the user id has a token).
    pub from_browser: bool,
    /// Identity claims that were not believed, with the code saying why; the profile records them as refused.
    pub unproven: Vec<(Identity, String)>,
    /// Contact points (trait name, value) that the event's identity token carried as verified claims
    /// (`trust::vouch`): set as traits, and proven (`model::contact`).
    pub proven_contacts: Vec<(String, String)>,
    /// From a browser source whose contact points the configuration believes (`contactProof: "off"`).
    pub believe_contacts: bool,
    /// From an import file (`wire::imports`): history at its own time. Its consent is the import's declared
    /// basis, which never overrides what the person recorded (`consent::permit_import`); it converts no
    /// experiment, and journeys see it only within their horizon, like any old event.
    pub imported: bool,
    /// For an imported row with neither a user id nor an anonymous id: the identity (in its stored form, an
    /// e-mail or a CRM id) that names its profile.
    pub routing: Option<Identity>,
    /// What the export writes beside the fields above and nothing else reads (`wire::export`): the sender's
    /// `sentAt` and uncorrected `timestamp`, and its `context` less what is a credential or a person's identifiers
    /// (`identityToken`, `traits`, `externalIds`, consent, all kept elsewhere or never). Only the edge's parser sets it.
    pub sent: Option<Box<Sent>>,
    /// `context.consent.tcString` as the edge's parser decoded it (`model::tcf`), until `ingest::Batch::prepare`
    /// maps it with the configuration into `tcf`. Never leaves the edge.
    #[serde(skip)]
    pub tc_string: Option<Box<crate::core::model::tcf::TcString>>,
    /// What the CMP said for this event: its own TC string mapped at its time, else the request's cookie's
    /// (`apply_events`). Recorded with the CMP's id as the source.
    pub tcf: Option<crate::core::model::tcf::TcfSignal>,
}

/// See `Event::sent`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sent {
    pub sent_at: Option<Millis>,
    pub original_timestamp: Option<Millis>,
    pub context: BTreeMap<String, crate::core::base::value::Value>,
}

impl Event {
    /// An event as a trusted sender describes it, with no context beyond its ids and time.
    /// The person the event is about, as imports group rows: its user id, else its anonymous id, else the
    /// identity that routes it (a CSV row with neither id).
    pub fn person(&self) -> String {
        match (&self.user_id, &self.anonymous_id, &self.routing) {
            (Some(u), _, _) => ["u:", u].concat(),
            (None, Some(a), _) => ["a:", a].concat(),
            (None, None, Some(r)) => [&r.kind, ":", &r.value].concat(),
            _ => String::new(),
        }
    }

    pub fn new(
        message_id: String,
        anonymous_id: Option<String>,
        user_id: Option<String>,
        timestamp: Millis,
        kind: EventKind,
    ) -> Event {
        Event {
            message_id,
            anonymous_id,
            user_id,
            timestamp,
            kind,
            consent: None,
            page: None,
            external_ids: Vec::new(),
            identity_token: None,
            from_browser: false,
            proven_contacts: Vec::new(),
            believe_contacts: false,
            unproven: Vec::new(),
            imported: false,
            routing: None,
            sent: None,
            tc_string: None,
            tcf: None,
        }
    }

    /// The name under which the profile counts this event (see `counts` in the API contract).
    pub fn count_key(&self) -> &str {
        match &self.kind {
            EventKind::Track { event, .. } => event,
            EventKind::Page { .. } => "page",
            EventKind::Screen { .. } => "screen",
            EventKind::Identify { .. } => "identify",
            EventKind::Alias { .. } => "alias",
            EventKind::Group { .. } => "group",
        }
    }

    /// The properties that describe the event, if its kind has any.
    pub fn properties(&self) -> Option<&BTreeMap<String, Value>> {
        match &self.kind {
            EventKind::Track { properties, .. }
            | EventKind::Page { properties, .. }
            | EventKind::Screen { properties, .. } => Some(properties),
            _ => None,
        }
    }
}
