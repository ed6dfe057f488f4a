//! The settings documents browser SDKs fetch before they send anything, answered with edgecdp itself as the one
//! place events go, so that a site switches by changing hosts alone:
//! - Segment's analytics.js: `GET /v1/projects/{writeKey}/settings` from its `cdnURL`. Only the `Segment.io`
//!   destination is listed, so the library loads no other destination's code, and its own remote metrics are off
//!   (they would report to Segment).
//! - RudderStack's JavaScript SDK v3: `GET /sourceConfig/?writeKey=...` from its `configUrl`. No destinations
//!   (events go to its `dataPlaneUrl`, edgecdp), and its error and metrics reporting off (they would post to a
//!   RudderStack endpoint).

use serde_json::{json, Value};

/// The document for a browser source's write key, with events sent to `{protocol}://{api_host}` (`api_host` is
/// a host and path, as analytics.js expects: `cdp.example.com/v1`).
pub fn segment_settings(write_key: &str, api_host: &str, protocol: &str) -> Value {
    let every = json!({"__default": {"enabled": true, "integrations": {}}});
    json!({
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": true,
            }
        },
        "plan": {"track": every.clone(), "identify": every.clone(), "group": every},
        "edgeFunction": {},
        "analyticsNextEnabled": true,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": false,
        "remotePlugins": [],
    })
}

/// The source configuration RudderStack's SDK requires (`source.id`, `source.config`, `source.destinations`; it
/// stops when `source.enabled` is false).
pub fn rudderstack_source_config(source_id: &str, write_key: &str) -> Value {
    json!({
        "source": {
            "id": source_id,
            "name": source_id,
            "writeKey": write_key,
            "workspaceId": "edgecdp",
            "enabled": true,
            "config": {"statsCollection": {"errors": {"enabled": false}, "metrics": {"enabled": false}}},
            "destinations": [],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_destination_is_edgecdp_and_metrics_stay_home() {
        let s = segment_settings("demo", "127.0.0.1:8787/v1", "http");
        let own = &s["integrations"]["Segment.io"];
        assert_eq!(
            (own["apiKey"].as_str(), own["apiHost"].as_str(), own["protocol"].as_str()),
            (Some("demo"), Some("127.0.0.1:8787/v1"), Some("http"))
        );
        assert_eq!(s["integrations"].as_object().map(|o| o.len()), Some(1));
        assert_eq!(s["metrics"]["sampleRate"], 0);
    }

    #[test]
    fn rudderstack_gets_no_destination_and_reports_nothing_elsewhere() {
        let c = rudderstack_source_config("web", "demo");
        assert_eq!((c["source"]["id"].as_str(), c["source"]["enabled"].as_bool()), (Some("web"), Some(true)));
        assert_eq!(c["source"]["destinations"].as_array().map(Vec::len), Some(0));
        assert_eq!(c["source"]["config"]["statsCollection"]["errors"]["enabled"], false);
        assert_eq!(c["source"]["config"]["statsCollection"]["metrics"]["enabled"], false);
    }
}
