//! The API's own descriptions, in their ecosystems' formats: `GET /v1/openapi.json` (OpenAPI 3.1 of every
//! route) and `GET /v1/config/schema` (JSON Schema 2020-12 of the configuration). Who may call: anyone; they
//! describe the software, not any site's data or configuration. Both are the files kept in `schema/`, which
//! `scripts/build.sh` copies beside the browser bundle (`/edgecdp/schema/`): they are read from the Worker's
//! static assets rather than compiled into its Wasm, which they would grow by a sixth.

use crate::edge::error::{ApiError, ApiResult};
use worker::{Env, Headers, Response};

async fn document(env: &Env, file: &str, content_type: &str) -> ApiResult {
    // The assets binding ignores the host: only the path names the file.
    let mut asset = env.assets("ASSETS")?.fetch(format!("https://assets.invalid/edgecdp/schema/{file}"), None).await?;
    if asset.status_code() != 200 {
        return Err(ApiError::Unavailable(format!("static asset /edgecdp/schema/{file}: {}", asset.status_code())));
    }
    let text = asset.text().await?;
    let headers = Headers::new();
    headers.set("content-type", content_type)?;
    headers.set("cache-control", "public, max-age=300")?;
    // Editors and API tools read these from anywhere; nothing in them is private.
    headers.set("access-control-allow-origin", "*")?;
    Ok(Response::ok(text)?.with_headers(headers))
}

pub(crate) async fn openapi(env: &Env) -> ApiResult {
    document(env, "openapi.json", "application/json").await
}

pub(crate) async fn config_schema(env: &Env) -> ApiResult {
    document(env, "config.schema.json", "application/schema+json").await
}
