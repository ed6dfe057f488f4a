//! The export's files for an operator (issue 29): `GET /v1/export` (tables, rows per day, the latest files
//! (`limit`, `offset`), the last one's lag) and `GET /v1/export/file?key=…` (one file or manifest as it is in the bucket). Who may call:
//! the admin token or a console session only; the files hold people's events. In production analysts read the
//! bucket itself through R2's S3 API (docs/export.md); locally, where there is no S3 API, these routes are the way.

use crate::core::base::time::format_iso8601;
use crate::core::base::url::query_pairs;
use crate::core::wire::export::{has_file_key_shape, is_file_key};
use crate::core::wire::export_ledger::{latest, Statement, SUMMARY};
use crate::edge::auth::require_admin;
use crate::edge::clock::now;
use crate::edge::error::{json_response, ApiError, ApiResult};
use crate::edge::export::BUCKET;
use crate::edge::outlets::{export_ledger, rows};
use crate::edge::request::{count_param, query, query_param};
use serde_json::{json, Map, Value as J};
use worker::{Env, Request, Response};

/// `GET /v1/export[?table=…&limit=…]`.
pub(crate) async fn export_summary(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let table = query_pairs(&query(&req)).find(|(k, _)| k == "table").map(|(_, v)| v);
    let snake = |t: &str| !t.is_empty() && t.len() <= 127 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if table.as_deref().is_some_and(|t| !snake(t)) {
        return Err(ApiError::BadRequest {
            code: "invalid_table",
            message: "a table is a snake-case name (letters, digits and _)".into(),
            path: "table".into(),
        });
    }
    let limit = count_param(&req, "limit", 20, 1000, "invalid_limit")?;
    let offset = match query_param(&req, "offset")? {
        None => 0,
        Some(v) => v.parse::<u32>().map_err(|_| ApiError::BadRequest {
            code: "invalid_offset",
            message: "offset must be a whole number from 0".into(),
            path: "offset".into(),
        })?,
    };
    let db = export_ledger(env).await?;
    let mut tables: Map<String, J> = Map::new();
    for r in rows(&db, &Statement { sql: SUMMARY, params: vec![] }).await? {
        let int = |i: usize| r.get(i).and_then(J::as_i64).unwrap_or(0);
        let name = r.first().and_then(J::as_str).unwrap_or_default().to_string();
        let entry = tables.entry(name.clone()).or_insert_with(
            || json!({"table": name, "rows": 0, "files": 0, "bytes": 0, "days": [], "last_written_at": null}),
        );
        for (k, i) in [("rows", 2), ("files", 3), ("bytes", 4)] {
            entry[k] = J::from(entry[k].as_i64().unwrap_or(0) + int(i));
        }
        entry["last_written_at"] = J::from(format_iso8601(int(5)));
        let day = json!({"dt": r.get(1).cloned().unwrap_or(J::Null), "rows": int(2), "files": int(3), "bytes": int(4)});
        if let Some(days) = entry["days"].as_array_mut() {
            days.push(day);
        }
    }
    let files: Vec<J> = rows(&db, &latest(table.as_deref(), limit, i64::from(offset)))
        .await?
        .iter()
        .map(|r| {
            let int = |i: usize| r.get(i).and_then(J::as_i64).unwrap_or(0);
            json!({
                "key": r.first().cloned().unwrap_or(J::Null),
                "table": r.get(1).cloned().unwrap_or(J::Null),
                "rows": int(2),
                "bytes": int(3),
                "written_at": format_iso8601(int(4)),
                "lag_ms": int(4) - int(5),
            })
        })
        .collect();
    let last = files.first().cloned().unwrap_or(J::Null);
    let body = json!({
        "tables": tables.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "files": files,
        "last_file": last,
        "now": format_iso8601(now()),
    });
    Ok(json_response(200, &body)?)
}

/// `GET /v1/export/file?key=…`: the file's bytes as stored (gzip NDJSON, or a manifest's JSON).
pub(crate) async fn export_file(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let key = query_param(&req, "key")?.unwrap_or_default();
    // The shape the contract gives (under `export/`, a file or a manifest, the characters keys are made of) is a
    // 400 when broken; a key of that shape that no file can have (`..`, an empty segment) is simply not there.
    if !has_file_key_shape(&key) {
        return Err(ApiError::BadRequest {
            code: "invalid_key",
            message: "key names an export file: export/{table}/dt=YYYY-MM-DD/hour=HH/{name}.json.gz or its \
                      manifest.json"
                .into(),
            path: "key".into(),
        });
    }
    if !is_file_key(&key) {
        return Err(ApiError::NotFound { code: "file_not_found", message: format!("no export file {key}") });
    }
    let bucket = env.bucket(BUCKET).map_err(|e| ApiError::Unavailable(format!("export bucket: {e}")))?;
    let object = bucket.get(&key).execute().await.map_err(|e| ApiError::Unavailable(format!("export bucket: {e}")))?;
    let Some(object) = object else {
        return Err(ApiError::NotFound { code: "file_not_found", message: format!("no export file {key}") });
    };
    let bytes = object
        .body()
        .ok_or_else(|| ApiError::Unavailable("export bucket: no body".into()))?
        .bytes()
        .await
        .map_err(|e| ApiError::Unavailable(format!("export bucket: {e}")))?;
    let gz = key.ends_with(".gz");
    let name = key.rsplit('/').next().unwrap_or("file");
    let mut resp = Response::from_bytes(bytes)?;
    let headers = resp.headers_mut();
    headers.set("content-type", if gz { "application/gzip" } else { "application/json; charset=utf-8" })?;
    headers.set("content-disposition", &format!("attachment; filename=\"{name}\""))?;
    headers.set("cache-control", "no-store")?;
    headers.set("x-content-type-options", "nosniff")?;
    Ok(resp)
}
