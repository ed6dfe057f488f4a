//! The API's own descriptions, in their ecosystems' formats: `GET /v1/openapi.json` (OpenAPI 3.1 of every
//! route) and `GET /v1/config/schema` (JSON Schema 2020-12 of the configuration). Who may call: anyone; they
//! describe the software, not any site's data or configuration. Both are the files kept in `schema/`, compiled
//! into the Worker so that what it serves is what the repository holds.

use crate::edge::http::ApiResult;
use worker::{Headers, Response};

const OPENAPI: &str = include_str!("../../../schema/openapi.json");
const CONFIG_SCHEMA: &str = include_str!("../../../schema/config.schema.json");

fn document(text: &str, content_type: &str) -> ApiResult {
    let headers = Headers::new();
    headers.set("content-type", content_type)?;
    headers.set("cache-control", "public, max-age=300")?;
    // Editors and API tools read these from anywhere; nothing in them is private.
    headers.set("access-control-allow-origin", "*")?;
    Ok(Response::ok(text)?.with_headers(headers))
}

pub(crate) fn openapi() -> ApiResult {
    document(OPENAPI, "application/json")
}

pub(crate) fn config_schema() -> ApiResult {
    document(CONFIG_SCHEMA, "application/schema+json")
}
