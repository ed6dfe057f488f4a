//! Impressions a device decided (`POST /v1/impressions`), checked against the configuration in force.

use crate::core::base::time::Millis;
use crate::core::model::shown::Impression;
use crate::core::rules::slots::CONTROL;
use crate::core::rules::Config;
use crate::core::wire::fields::{consent_map, context_fields, id_field, not_json, Ctx};
use crate::core::wire::*;
use std::collections::BTreeMap;

/// Most impressions one `POST /v1/impressions` may record.
pub const MAX_IMPRESSIONS_PER_REQUEST: usize = 32;

/// The body of `POST /v1/impressions`: answers a device decided (`Decision::impressions`), to record on the
/// visitor's profile so that frequency caps and experiment exposures count them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImpressionsRequest {
    pub anonymous_id: Option<String>,
    pub user_id: Option<String>,
    /// Consent preferences sent with the request, which take precedence over the recorded ones.
    pub consent: Option<BTreeMap<String, bool>>,
    /// Each recorded at the edge's time, never the device's.
    pub impressions: Vec<Impression>,
}

/// Parses `{"anonymousId"?, "userId"?, "impressions": [{"block", "variant", "experiment"?}], "context"?}` and
/// checks every impression against the configuration in force: the block exists and records impressions (it
/// has a cap or an experiment), the variant is one of its own (or `control`, an experiment's holdout), and the
/// experiment is the block's. Errors carry the path of the bad field.
pub fn parse_impressions(body: &[u8], config: &Config, now: Millis) -> Result<ImpressionsRequest, BodyError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(BodyError::TooLarge { limit: MAX_EVENT_BYTES });
    }
    let v: serde_json::Value = serde_json::from_slice(body).map_err(not_json)?;
    if !v.is_object() {
        return Err(BodyError::Shape { path: String::new(), message: "body must be a JSON object".into() });
    }
    let cx = Ctx { index: 0, base: "" };
    let shape = |r: Rejection| BodyError::Shape { path: r.path, message: r.message };
    let bad = |path: String, message: String| BodyError::Shape { path, message };
    let anonymous_id = id_field(&cx, &&v, "anonymousId").map_err(shape)?;
    let user_id = id_field(&cx, &&v, "userId").map_err(shape)?;
    let (consent, _) = context_fields(&cx, v.get("context"), None).map_err(shape)?;
    let Some(items) = v.get("impressions").and_then(|i| i.as_array()) else {
        return Err(bad("impressions".into(), "impressions must be an array".into()));
    };
    if items.is_empty() || items.len() > MAX_IMPRESSIONS_PER_REQUEST {
        let message = format!("impressions must hold 1 to {MAX_IMPRESSIONS_PER_REQUEST} entries");
        return Err(bad("impressions".into(), message));
    }
    let mut impressions = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = |field: &str| format!("impressions[{i}].{field}");
        if !item.is_object() {
            return Err(bad(format!("impressions[{i}]"), "an impression is an object".into()));
        }
        let text = |field: &str| match item.get(field) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(bad(path(field), format!("{field} must be a non-empty string"))),
        };
        let Some(block_id) = text("block")? else {
            return Err(bad(path("block"), "block is required".into()));
        };
        let Some(block) = config.slots.values().flat_map(|s| &s.blocks).find(|b| b.id == block_id) else {
            return Err(bad(path("block"), format!("block {block_id:?} is not configured")));
        };
        if block.cap.is_none() && block.experiment.is_none() {
            let message = format!("block {block_id:?} has no cap and no experiment: its impressions are not recorded");
            return Err(bad(path("block"), message));
        }
        let Some(variant) = text("variant")? else {
            return Err(bad(path("variant"), "variant is required".into()));
        };
        let holdout = block.experiment.as_ref().is_some_and(|e| e.holdout > 0) && variant == CONTROL;
        if !holdout && !block.variants.iter().any(|v| v.id == variant) {
            return Err(bad(path("variant"), format!("block {block_id:?} has no variant {variant:?}")));
        }
        let experiment = text("experiment")?;
        let expected = block.experiment.as_ref().map(|e| e.id.clone());
        if experiment != expected {
            let message = match &expected {
                Some(e) => format!("block {block_id:?} is in experiment {e:?}"),
                None => format!("block {block_id:?} is in no experiment"),
            };
            return Err(bad(path("experiment"), message));
        }
        impressions.push(Impression { block: block_id, variant, experiment, at: now });
    }
    Ok(ImpressionsRequest { anonymous_id, user_id, consent: consent.map(consent_map), impressions })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_795_344_600_000;

    #[test]
    fn impressions_are_checked_against_the_configuration() {
        let config = crate::core::rules::compile_str(
            r#"{"slots": {"hero": {"blocks": [
                {"id": "capped", "cap": {"max": 1, "per": "1d"}, "html": "x"},
                {"id": "exp", "experiment": {"id": "e1", "holdout": 10, "goal": {"event": "E", "within": "1d"}},
                 "variants": [{"id": "a", "html": "a"}]},
                {"id": "plain", "html": "p"}]}}}"#,
        )
        .unwrap();
        let ok = parse_impressions(
            br#"{"anonymousId": "a1", "impressions": [{"block": "capped", "variant": "default"},
                {"block": "exp", "variant": "control", "experiment": "e1"}],
                "context": {"consent": {"categoryPreferences": {"personalization": true}}}}"#,
            &config,
            NOW,
        )
        .unwrap();
        assert_eq!(ok.anonymous_id.as_deref(), Some("a1"));
        assert!(ok.consent.unwrap()["personalization"]);
        assert_eq!(
            ok.impressions[1],
            Impression { block: "exp".into(), variant: "control".into(), experiment: Some("e1".into()), at: NOW }
        );
        let path = |body: &str| match parse_impressions(body.as_bytes(), &config, NOW) {
            Err(BodyError::Shape { path, .. }) => path,
            other => panic!("{other:?}"),
        };
        assert_eq!(path(r#"{"impressions": []}"#), "impressions");
        assert_eq!(path(r#"{"impressions": [{"block": "nope", "variant": "a"}]}"#), "impressions[0].block");
        assert_eq!(path(r#"{"impressions": [{"block": "plain", "variant": "default"}]}"#), "impressions[0].block");
        assert_eq!(
            path(
                r#"{"impressions": [{"block": "capped", "variant": "default"}, {"block": "exp", "variant": "z", "experiment": "e1"}]}"#
            ),
            "impressions[1].variant"
        );
        assert_eq!(path(r#"{"impressions": [{"block": "capped", "variant": "control"}]}"#), "impressions[0].variant");
        assert_eq!(path(r#"{"impressions": [{"block": "exp", "variant": "a"}]}"#), "impressions[0].experiment");
        assert_eq!(
            path(r#"{"impressions": [{"block": "capped", "variant": "default", "experiment": "e1"}]}"#),
            "impressions[0].experiment"
        );
        assert_eq!(path(r#"{"userId": {}, "impressions": [{"block": "capped", "variant": "default"}]}"#), "userId");
    }
}
