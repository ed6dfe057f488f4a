//! What leaves for a destination, sans I/O: the delivery queue's message, the payload of a send (a Segment-spec
//! `track` event with the journey's context, or a template filled from the profile), the Standard Webhooks
//! signature, the retry schedule, and the SQL that records every outcome in D1 and reads the statistics back.
//!
//! Idempotency: a delivery's id is fixed when the send is made (`model::journey::Outgoing::id`) and travels as the
//! `webhook-id` header and the event's `messageId` in every attempt, so a receiver that deduplicates by it takes
//! the message once however many times the queue delivers it. The outcome log keeps one final row per delivery
//! (`sent`, `dead_lettered` or `suppressed`), written with `INSERT OR IGNORE`, so a redelivered message finds its
//! delivery settled and sends nothing.

use crate::core::base::encoding::{base64_decode, base64_encode};
use crate::core::base::sort::CollectInto;
use crate::core::base::time::{format_iso8601, Millis, SECOND};
use crate::core::base::value::Value;
use crate::core::model::consent::{google_consent_mode, ConsentPolicy, Purpose, RequestSignals};
use crate::core::model::identity::{hmac_sha256, ANONYMOUS_ID, USER_ID};
use crate::core::model::journey::Outgoing;
use crate::core::model::profile::Profile;
use crate::core::rules::destinations::{render, Destination, DestinationKind, Payload, Source};
use crate::core::wire::audiences::{Sql, Statement};
use serde_json::{json, Map, Value as J};

/// The delivery queue's message: which send, held by which profile's object. Nothing of the person travels in
/// the queue: the payload is made from the profile when the send is claimed, as it leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryMessage {
    pub delivery: String,
    pub profile: String,
    pub destination: String,
}

impl DeliveryMessage {
    /// The message for one of a profile's sends.
    pub fn of_send(profile: &str, o: &Outgoing) -> DeliveryMessage {
        DeliveryMessage { delivery: o.id.clone(), profile: profile.to_string(), destination: o.destination.clone() }
    }

    pub fn to_json(&self) -> J {
        json!({"delivery": self.delivery, "profile": self.profile, "destination": self.destination})
    }

    pub fn of(j: &J) -> Result<DeliveryMessage, String> {
        let text = |k: &str| {
            j.get(k)
                .and_then(J::as_str)
                .filter(|s| !s.is_empty() && s.len() <= 512)
                .map(String::from)
                .ok_or(format!("{k}: expected a string"))
        };
        Ok(DeliveryMessage {
            delivery: text("delivery")?,
            profile: text("profile")?,
            destination: text("destination")?,
        })
    }
}

/// The body of a send and its content type.
pub fn body(
    d: &Destination,
    policy: &ConsentPolicy,
    profile: &Profile,
    o: &Outgoing,
    now: Millis,
) -> (String, &'static str) {
    match &d.payload {
        Payload::Event => (event(d, policy, profile, o, now).to_string(), "application/json"),
        Payload::Template { format, parts } => {
            let text = render(parts, *format, |source, name| match source {
                Source::Trait => profile.traits.get(name).map(|t| display(&t.value)),
                Source::Context => o.context.get(name).map(display),
                Source::Journey => Some(match name {
                    "id" => o.journey.clone(),
                    "step" => o.step.clone(),
                    _ => o.key.clone(),
                }),
            });
            (text, format.content_type())
        }
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_json().to_string(),
    }
}

/// The Segment-spec `track` event of a send: the step's event name, the trigger's properties, the journey's context
/// (`context.journey`), only the traits the destination names (`context.traits`), and the person's consent as it
/// stands (`context.consent`: Segment's `categoryPreferences`, and Google Consent Mode v2's four signals, so that
/// a Google Ads or GA4 forwarder downstream passes them on as they are).
pub fn event(d: &Destination, policy: &ConsentPolicy, profile: &Profile, o: &Outgoing, now: Millis) -> J {
    let mut traits = Map::new();
    for name in &d.traits {
        if let Some(t) = profile.traits.get(name) {
            traits.insert(name.clone(), t.value.to_json());
        }
    }
    let properties: Map<String, J> = o.context.iter().map(|(k, v)| (k.clone(), v.to_json())).collect_object();
    let mut e = json!({
        "type": "track",
        "event": o.event,
        "messageId": o.id,
        "timestamp": format_iso8601(now),
        "properties": properties,
        "context": {
            "library": {"name": "edgecdp", "version": env!("CARGO_PKG_VERSION")},
            "journey": {
                "id": o.journey,
                "step": o.step,
                "key": o.key,
                "instance": o.instance,
                "enteredAt": format_iso8601(o.entered_at),
                "destination": d.id,
            },
            "traits": traits,
            "consent": consent_context(policy, profile),
        },
    });
    if let Some(u) = profile.identity_of(USER_ID) {
        e["userId"] = json!(u.value);
    }
    if let Some(a) = profile.identity_of(ANONYMOUS_ID) {
        e["anonymousId"] = json!(a.value);
    }
    if e.get("userId").is_none() && e.get("anonymousId").is_none() {
        // The spec needs one of them; a profile known by another identifier only is named by its profile id.
        e["anonymousId"] = json!(profile.id);
    }
    e
}

/// `context.consent` of a send: each optional purpose as decided for the person now (what they recorded, under the
/// model where they were last seen), and Google Consent Mode v2's signals derived from it.
fn consent_context(policy: &ConsentPolicy, profile: &Profile) -> J {
    let signals = RequestSignals { country: profile.journeys.country.clone(), ..RequestSignals::default() };
    let e = policy.effective(Some(&profile.consent), None, &signals);
    let prefs: Map<String, J> =
        Purpose::OPTIONAL.iter().map(|p| (p.name().to_string(), J::Bool(e.allows(*p)))).collect_object();
    let gcm: Map<String, J> = google_consent_mode(&e)
        .iter()
        .map(|(k, g)| (k.to_string(), json!(if *g { "granted" } else { "denied" })))
        .collect_object();
    json!({"categoryPreferences": prefs, "googleConsentMode": gcm})
}

/// Where a send goes: the webhook's URL, or the Tracking API's `/track`.
pub fn url(d: &Destination) -> String {
    match d.kind {
        DestinationKind::Webhook { .. } => d.url.clone(),
        DestinationKind::TrackingApi { .. } => format!("{}/track", d.url),
    }
}

/// The Standard Webhooks signature of a message: `v1,` and the base64 of HMAC-SHA256 over
/// `{webhook-id}.{webhook-timestamp}.{body}`, keyed by the secret (the base64 after `whsec_`, or the text itself
/// when it has no such prefix).
pub fn sign(secret: &str, id: &str, timestamp_seconds: i64, body: &str) -> String {
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => base64_decode(b64).unwrap_or_else(|| b64.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    };
    let signed = format!("{id}.{timestamp_seconds}.{body}");
    ["v1,", &base64_encode(&hmac_sha256(&key, signed.as_bytes()))].concat()
}

/// The headers of a send, besides `content-type`: Standard Webhooks' three for a webhook; Basic authentication
/// with the write key for a Tracking API.
pub fn headers(d: &Destination, secret_or_key: &str, id: &str, now: Millis, body: &str) -> Vec<(&'static str, String)> {
    match d.kind {
        DestinationKind::Webhook { .. } => {
            let ts = now.div_euclid(SECOND);
            vec![
                ("webhook-id", id.to_string()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", sign(secret_or_key, id, ts, body)),
            ]
        }
        DestinationKind::TrackingApi { .. } => {
            vec![("authorization", ["Basic ", &base64_encode(format!("{secret_or_key}:").as_bytes())].concat())]
        }
    }
}

/// How a failed attempt goes on: retried after a delay (seconds), or given up (dead-lettered) with a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    Retry { delay_seconds: u32 },
    GiveUp,
}

/// Exponential backoff: the first retry after `backoff`, each next one twice as late, at most 12 hours (the
/// queue's longest delay); no retry after the last attempt, nor after an answer that a retry cannot change (a
/// 4xx other than 408 and 429).
pub fn after_failure(d: &Destination, attempt: u32, status: Option<u16>) -> AfterFailure {
    let permanent = status.is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429);
    if permanent || attempt >= d.attempts {
        return AfterFailure::GiveUp;
    }
    let delay = (d.backoff / SECOND).max(1).saturating_mul(1 << (attempt - 1).min(20));
    AfterFailure::Retry { delay_seconds: delay.min(12 * 3600) as u32 }
}

/// The outcome log's table, created if missing.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS delivery_outcomes (id TEXT NOT NULL, n INTEGER NOT NULL, destination TEXT NOT NULL, \
     profile TEXT, journey TEXT, step TEXT, outcome TEXT NOT NULL, reason TEXT, at INTEGER NOT NULL, \
     PRIMARY KEY (id, n))",
    "CREATE INDEX IF NOT EXISTS delivery_outcomes_profile ON delivery_outcomes (profile)",
    "CREATE INDEX IF NOT EXISTS delivery_outcomes_destination ON delivery_outcomes (destination, outcome)",
];

/// An outcome of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// An attempt failed and another follows.
    Retried,
    /// The last attempt failed (or one that a retry cannot change): the message went to the dead-letter queue.
    DeadLettered,
    Suppressed,
    Deferred,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Suppressed => "suppressed",
            Outcome::Deferred => "deferred",
        }
    }

    /// Whether it settles the delivery (one such row per delivery: `n` 0).
    pub fn is_final(self) -> bool {
        matches!(self, Outcome::Sent | Outcome::DeadLettered | Outcome::Suppressed)
    }
}

/// What a record names besides its outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub destination: String,
    /// `None` once the person was erased: what stays counts, and names nobody.
    pub profile: Option<String>,
    pub journey: Option<String>,
    pub step: Option<String>,
}

/// Records an outcome: a final one as row 0 (ignored when the delivery is already settled: a redelivery), a
/// retried attempt as row `attempt`, a deferral as a negative row.
pub fn record(r: &Record, outcome: Outcome, attempt: u32, reason: Option<&str>, at: Millis) -> Statement {
    let opt = |v: &Option<String>| v.clone().map_or(Sql::Null, Sql::Text);
    let n = match outcome {
        o if o.is_final() => Sql::Int(0),
        Outcome::Deferred => Sql::Int(-(i64::from(attempt)) - 1_000),
        _ => Sql::Int(i64::from(attempt)),
    };
    Statement {
        sql:
            "INSERT OR IGNORE INTO delivery_outcomes (id, n, destination, profile, journey, step, outcome, reason, at) \
              VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params: vec![
            Sql::Text(r.id.clone()),
            n,
            Sql::Text(r.destination.clone()),
            opt(&r.profile),
            opt(&r.journey),
            opt(&r.step),
            Sql::Text(outcome.name().into()),
            reason.map_or(Sql::Null, |s| Sql::Text(s.into())),
            Sql::Int(at),
        ],
    }
}

/// A delivery's state in the log: `settled` (its final outcome, if any) and the attempts that failed before.
/// Columns: `final`, `failed`, `deferred`.
pub fn state(id: &str) -> Statement {
    Statement {
        sql: "SELECT (SELECT outcome FROM delivery_outcomes WHERE id = ?1 AND n = 0) AS final, \
              (SELECT COUNT(*) FROM delivery_outcomes WHERE id = ?1 AND n > 0) AS failed, \
              (SELECT COUNT(*) FROM delivery_outcomes WHERE id = ?1 AND n < 0) AS deferred",
        params: vec![Sql::Text(id.into())],
    }
}

/// Counts per destination, outcome and reason. Columns: `destination`, `outcome`, `reason`, `n`.
pub const STATS: &str = "SELECT destination, outcome, COALESCE(reason, '') AS reason, COUNT(*) AS n \
                         FROM delivery_outcomes GROUP BY destination, outcome, reason";

/// One person's delivery log, oldest first.
pub fn log_of(profile_ids: &[String]) -> Statement {
    Statement {
        sql: "SELECT id, n, destination, journey, step, outcome, reason, at FROM delivery_outcomes \
              WHERE profile IN (SELECT value FROM json_each(?1)) ORDER BY at, id, n",
        params: vec![Sql::Text(J::from(profile_ids.to_vec()).to_string())],
    }
}

/// Forgets erased people: their rows lose the profile id (the counts stay, naming nobody). Delivery ids made
/// before `model::journey::delivery_id` embedded the profile id (`dlv_<profile id>_<n>`); such rows get a random
/// id instead, including rows logged with no profile (a claim that found none), so that nothing in the log can be
/// tied to the person afterwards. SQLite reads every `SET` expression from the row as it was.
pub fn forget(profile_ids: &[String]) -> Statement {
    Statement {
        sql: "UPDATE delivery_outcomes SET profile = NULL, journey = NULL, step = NULL, \
              id = CASE WHEN EXISTS (SELECT 1 FROM json_each(?1) \
                   WHERE substr(delivery_outcomes.id, 1, length(value) + 5) = 'dlv_' || value || '_') \
                   THEN 'dlv_erased_' || lower(hex(randomblob(12))) ELSE id END \
              WHERE profile IN (SELECT value FROM json_each(?1)) OR EXISTS (SELECT 1 FROM json_each(?1) \
                   WHERE substr(delivery_outcomes.id, 1, length(value) + 5) = 'dlv_' || value || '_')",
        params: vec![Sql::Text(J::from(profile_ids.to_vec()).to_string())],
    }
}

/// Folds `STATS` rows into one object per destination: `sent`, `retried`, `failedAttempts` (retried and
/// dead-lettered), `deadLettered`, `deferred`, and `suppressed` by reason.
pub fn stats_json(destinations: &[Destination], rows: &[(String, String, String, u64)]) -> J {
    let mut out = Vec::new();
    let mut names: Vec<&str> = destinations.iter().map(|d| d.id.as_str()).collect();
    for (d, ..) in rows {
        if !names.contains(&d.as_str()) {
            names.push(d);
        }
    }
    for name in names {
        let count = |o: &str| rows.iter().filter(|r| r.0 == name && r.1 == o).map(|r| r.3).sum::<u64>();
        let suppressed: Map<String, J> = rows
            .iter()
            .filter(|r| r.0 == name && r.1 == "suppressed")
            .map(|r| (r.2.clone(), J::from(r.3)))
            .collect_object();
        let d = destinations.iter().find(|d| d.id == name);
        out.push(json!({
            "id": name,
            "configured": d.is_some(),
            "channel": d.map(|d| d.channel.clone()),
            "purpose": d.map(|d| d.purpose.name()),
            "sent": count("sent"),
            "retried": count("retried"),
            "failedAttempts": count("retried") + count("dead_lettered"),
            "deadLettered": count("dead_lettered"),
            "deferred": count("deferred"),
            "suppressed": suppressed,
        }));
    }
    json!({ "destinations": out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::compile_str;
    use std::collections::BTreeMap;

    fn dest() -> Destination {
        compile_str(
            r#"{"destinations": [{"id": "crm", "type": "webhook", "url": "http://x/hook", "secretEnv": "S",
                "purpose": "marketing", "channel": "email", "traits": ["email"], "attempts": 4, "backoff": "2s"}]}"#,
        )
        .unwrap()
        .destinations
        .remove(0)
    }

    #[test]
    fn the_signature_follows_standard_webhooks() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn retries_back_off_exponentially_and_give_up() {
        let d = dest();
        assert_eq!(after_failure(&d, 1, Some(503)), AfterFailure::Retry { delay_seconds: 2 });
        assert_eq!(after_failure(&d, 2, None), AfterFailure::Retry { delay_seconds: 4 });
        assert_eq!(after_failure(&d, 3, Some(429)), AfterFailure::Retry { delay_seconds: 8 });
        assert_eq!(after_failure(&d, 4, Some(503)), AfterFailure::GiveUp, "the last attempt");
        assert_eq!(after_failure(&d, 1, Some(400)), AfterFailure::GiveUp, "a retry cannot change a 400");
    }

    #[test]
    fn the_event_carries_the_journey_and_only_the_named_traits() {
        let d = dest();
        let mut p = Profile::new("p1".into(), 0);
        p.identities.push(crate::core::model::identity::Identity::new(USER_ID, "u1"));
        for (k, v) in [("email", "a@x.com"), ("secret", "no")] {
            p.traits
                .insert(k.into(), crate::core::model::profile::TraitEntry { value: Value::String(v.into()), at: 0 });
        }
        let o = Outgoing {
            id: "dlv_p1_1".into(),
            destination: "crm".into(),
            journey: "cart".into(),
            step: "remind".into(),
            instance: 3,
            key: "c9".into(),
            event: "Cart Reminder".into(),
            entered_at: 0,
            context: BTreeMap::from([("cart_id".to_string(), Value::String("c9".into()))]),
            created: 0,
            due: 0,
            enqueued: true,
            claimed: None,
            cancelled: None,
        };
        let mut policy = ConsentPolicy::default();
        policy.regions.insert("US".into(), crate::core::model::consent::Model::OptOut);
        let e = event(&d, &policy, &p, &o, 1000);
        assert_eq!(e["messageId"], "dlv_p1_1");
        let none = json!({"ad_storage": "denied", "analytics_storage": "denied", "ad_user_data": "denied", "ad_personalization": "denied"});
        assert_eq!(e["context"]["consent"]["googleConsentMode"], none, "opt-in, nothing recorded: all denied");
        p.consent.set(Purpose::Advertising, true, 5, "event");
        p.consent.set(Purpose::Analytics, true, 5, "event");
        let e = event(&d, &policy, &p, &o, 1000);
        let gcm = &e["context"]["consent"]["googleConsentMode"];
        assert_eq!(
            (&gcm["ad_storage"], &gcm["analytics_storage"], &gcm["ad_user_data"], &gcm["ad_personalization"]),
            (&json!("granted"), &json!("granted"), &json!("granted"), &json!("denied")),
            "ad_personalization also needs personalization"
        );
        assert_eq!(e["context"]["consent"]["categoryPreferences"]["personalization"], false);
        p.journeys.country = Some("US".into());
        let e = event(&d, &policy, &p, &o, 1000);
        assert_eq!(
            e["context"]["consent"]["googleConsentMode"]["ad_personalization"], "granted",
            "opt-out where last seen"
        );
        assert_eq!(e["userId"], "u1");
        assert_eq!(e["properties"]["cart_id"], "c9");
        assert_eq!(e["context"]["journey"]["step"], "remind");
        assert_eq!(e["context"]["traits"], json!({"email": "a@x.com"}));
        assert_eq!(
            DeliveryMessage::of(
                &DeliveryMessage { delivery: "a".into(), profile: "b".into(), destination: "d".into() }.to_json()
            )
            .unwrap()
            .profile,
            "b"
        );
        assert!(DeliveryMessage::of(&json!({"delivery": 3})).unwrap_err().starts_with("delivery"));
    }
}
