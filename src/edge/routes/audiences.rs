//! `GET /v1/audiences`, `GET /v1/audiences/{id}/members`, `.../export`, `.../history`: who is in each
//! audience, read from the membership index (`edge::audiences`). Who may call: the admin token only (they list
//! people).

use crate::core::base::sort::CollectInto;
use crate::core::base::time::{format_iso8601, DAY, HOUR};
use crate::core::rules::Config;
use crate::core::wire::audiences::{csv_field, history, Sql, Statement, DAILY, MEMBERS_PAGE, MOVEMENTS, SIZES};
use crate::edge::auth::require_admin;
use crate::edge::clock::now;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::kv;
use crate::edge::outlets::{bind, index};
use crate::edge::request::{count_param, query_param};
use serde_json::{json, Value as J};
use std::collections::BTreeMap;
use worker::{D1Database, Env, Headers, Request, Response};

/// Members per page: the default and the most a page may ask for.
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;
/// The longest cursor taken (a profile id is far shorter).
const MAX_CURSOR_BYTES: usize = 256;
/// Rows read from the index per step of an export.
const EXPORT_STEP: i64 = 500;

async fn rows(db: &D1Database, s: Statement) -> Result<Vec<Vec<J>>, ApiError> {
    let prepared = bind(db, &s).map_err(|e| ApiError::Unavailable(format!("audience index: {e}")))?;
    prepared.raw::<J>().await.map_err(|e| ApiError::Unavailable(format!("audience index: {e}")))
}

fn audience<'c>(config: &'c Config, id: &str) -> Result<&'c str, ApiError> {
    config
        .audiences
        .iter()
        .map(|&i| config.segments[i].id.as_str())
        .find(|a| *a == id)
        .ok_or_else(|| ApiError::NotFound { code: "audience_not_found", message: format!("no audience {id:?}") })
}

/// `GET /v1/audiences`: every audience with its size and its entries and exits of the last 24 hours and 7 days;
/// and the segments that are not audiences (they read the request, so only a request can evaluate them).
pub(crate) async fn audiences_list(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let (_, config) = kv::config(env).await?;
    let db = index(env).await?;
    let now = now();
    let int = |v: &J| v.as_i64().unwrap_or(0);
    let sizes: BTreeMap<String, i64> = rows(&db, Statement { sql: SIZES, params: vec![] })
        .await?
        .iter()
        .filter_map(|r| Some((r.first()?.as_str()?.to_string(), int(r.get(1)?))))
        .collect_map();
    let moves: BTreeMap<String, [i64; 4]> =
        rows(&db, Statement { sql: MOVEMENTS, params: vec![Sql::Int(now - 24 * HOUR), Sql::Int(now - 7 * DAY)] })
            .await?
            .iter()
            .filter_map(|r| {
                Some((
                    r.first()?.as_str()?.to_string(),
                    [int(r.get(1)?), int(r.get(2)?), int(r.get(3)?), int(r.get(4)?)],
                ))
            })
            .collect_map();
    let list: Vec<J> = config
        .audiences
        .iter()
        .map(|&i| {
            let id = &config.segments[i].id;
            let m = moves.get(id).copied().unwrap_or_default();
            json!({"id": id, "size": sizes.get(id).copied().unwrap_or(0),
                "entered": {"last24h": m[0], "last7d": m[2]}, "exited": {"last24h": m[1], "last7d": m[3]}})
        })
        .collect();
    let others: Vec<&str> = (0..config.segments.len())
        .filter(|i| !config.audiences.contains(i))
        .map(|i| config.segments[i].id.as_str())
        .collect();
    Ok(json_response(200, &json!({"audiences": list, "requestSegments": others, "at": format_iso8601(now)}))?)
}

fn member_json(r: &[J]) -> Option<J> {
    let identity = match (r.get(1)?.as_str(), r.get(2)?.as_str()) {
        (Some(t), Some(v)) => json!({"type": t, "value": v}),
        _ => J::Null,
    };
    Some(json!({"profileId": r.first()?.as_str()?, "identity": identity, "since": format_iso8601(r.get(3)?.as_i64()?)}))
}

/// `GET /v1/audiences/{id}/members?limit=&cursor=`: a page of members in profile id order, each with its main
/// identity and entry time, and the cursor of the next page (`null` on the last).
pub(crate) async fn audience_members(req: Request, env: &Env, id: &str) -> ApiResult {
    require_admin(&req, env).await?;
    let limit = count_param(&req, "limit", DEFAULT_PAGE, MAX_PAGE, "invalid_limit")?;
    // A cursor is a profile id (`next`); anything longer than an id can be is refused rather than sent to D1.
    let cursor = query_param(&req, "cursor")?.unwrap_or_default();
    if cursor.len() > MAX_CURSOR_BYTES {
        return Err(ApiError::BadRequest {
            code: "invalid_cursor",
            message: format!("cursor is the `next` of a previous page (at most {MAX_CURSOR_BYTES} bytes)"),
            path: "cursor".into(),
        });
    }
    let (_, config) = kv::config(env).await?;
    let id = audience(&config, id)?;
    let db = index(env).await?;
    let page = rows(
        &db,
        Statement { sql: MEMBERS_PAGE, params: vec![Sql::Text(id.into()), Sql::Text(cursor), Sql::Int(limit + 1)] },
    )
    .await?;
    let more = page.len() as i64 > limit;
    let members: Vec<J> = page.iter().take(limit as usize).filter_map(|r| member_json(r)).collect();
    let next = if more { members.last().and_then(|m| m["profileId"].as_str()).map(str::to_string) } else { None };
    Ok(json_response(200, &json!({"audience": id, "members": members, "next": next}))?)
}

/// Days of history an audience's chart may ask for.
const MAX_DAYS: i64 = 90;

/// `GET /v1/audiences/{id}/history?days=30`: per UTC day (today included), entries, exits and the size at the
/// day's end (worked back from the size now: `wire::audiences::history`).
pub(crate) async fn audience_history(req: Request, env: &Env, id: &str) -> ApiResult {
    require_admin(&req, env).await?;
    let days = count_param(&req, "days", 30, MAX_DAYS, "invalid_days")?;
    let (_, config) = kv::config(env).await?;
    let id = audience(&config, id)?;
    let db = index(env).await?;
    let today = now().div_euclid(DAY);
    let int = |v: Option<&J>| v.and_then(J::as_i64).unwrap_or(0);
    let daily: Vec<(i64, i64, i64)> =
        rows(&db, Statement { sql: DAILY, params: vec![Sql::Text(id.into()), Sql::Int((today - days + 1) * DAY)] })
            .await?
            .iter()
            .map(|r| (int(r.first()), int(r.get(1)), int(r.get(2))))
            .collect();
    let size = rows(&db, Statement { sql: SIZES, params: vec![] })
        .await?
        .iter()
        .find(|r| r.first().and_then(J::as_str) == Some(id))
        .map_or(0, |r| int(r.get(1)));
    let list: Vec<J> = history(&daily, size, today, days)
        .iter()
        .map(|d| {
            json!({"day": format_iso8601(d.day * DAY).get(..10), "entered": d.entered, "exited": d.exited, "size": d.size})
        })
        .collect();
    Ok(json_response(200, &json!({"audience": id, "days": list}))?)
}

/// `GET /v1/audiences/{id}/export?format=ndjson|csv`: every member, streamed as the index is read (NDJSON, one
/// member a line as in `members`; or CSV with a header row).
pub(crate) async fn audience_export(req: Request, env: &Env, id: &str) -> ApiResult {
    require_admin(&req, env).await?;
    let csv = match query_param(&req, "format")?.as_deref() {
        None | Some("ndjson") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::BadRequest {
                code: "invalid_format",
                message: "format is ndjson or csv".into(),
                path: "format".into(),
            })
        }
    };
    let (_, config) = kv::config(env).await?;
    let id = audience(&config, id)?.to_string();
    let db = index(env).await?;
    // One step per page of the index; the first carries the CSV header.
    let state = (db, id, String::new(), false, csv);
    let stream = futures_util::stream::unfold(state, |(db, id, cursor, done, csv)| async move {
        if done {
            return None;
        }
        let first = cursor.is_empty();
        let statement = Statement {
            sql: MEMBERS_PAGE,
            params: vec![Sql::Text(id.clone()), Sql::Text(cursor.clone()), Sql::Int(EXPORT_STEP)],
        };
        let page = match rows(&db, statement).await {
            Ok(p) => p,
            Err(e) => return Some((Err(worker::Error::RustError(format!("{e:?}"))), (db, id, cursor, true, csv))),
        };
        let mut out = String::new();
        if first && csv {
            out.push_str("profileId,identityType,identityValue,since\n");
        }
        for m in page.iter().filter_map(|r| member_json(r)) {
            if csv {
                let field = |v: &J| csv_field(v.as_str().unwrap_or_default());
                let line = [
                    field(&m["profileId"]),
                    field(&m["identity"]["type"]),
                    field(&m["identity"]["value"]),
                    field(&m["since"]),
                ];
                out.push_str(&line.join(","));
            } else {
                out.push_str(&m.to_string());
            }
            out.push('\n');
        }
        let last = page.last().and_then(|r| r.first()).and_then(J::as_str).map(str::to_string);
        let done = (page.len() as i64) < EXPORT_STEP;
        Some((Ok::<Vec<u8>, worker::Error>(out.into_bytes()), (db, id, last.unwrap_or_default(), done, csv)))
    });
    let headers = Headers::new();
    headers.set("content-type", if csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" })?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_stream(stream)?.with_headers(headers))
}
