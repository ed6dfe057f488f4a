//! The settings document Segment's analytics.js fetches before it sends anything
//! (`GET /v1/projects/{writeKey}/settings` from its `cdnURL`), answered with edgecdp itself as the one place events
//! go: a site switches by changing `cdnURL` alone. Only the `Segment.io` destination is listed, so the library loads
//! no other destination's code, and its own remote metrics are off (they would report to Segment).

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
}
