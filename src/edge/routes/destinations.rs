//! `GET /v1/destinations`: each destination's delivery statistics from the outcome log (`edge::deliveries`): sent,
//! retried, failed attempts, dead-lettered, deferred by quiet hours, and suppressed by reason. Who may call: the
//! admin token only (the counts describe the marketing sent to people, though they name nobody).

use crate::core::wire::audiences::Statement;
use crate::core::wire::deliveries::{stats_json, STATS};
use crate::edge::auth::require_admin;
use crate::edge::error::json_response;
use crate::edge::error::ApiResult;
use crate::edge::kv;
use crate::edge::outlets::{log, rows};
use serde_json::Value as J;
use worker::{Env, Request};

pub(crate) async fn destinations_stats(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let (_, config) = kv::config(env).await?;
    let db = log(env).await?;
    let text = |v: Option<&J>| v.and_then(J::as_str).unwrap_or_default().to_string();
    let counted: Vec<(String, String, String, u64)> = rows(&db, &Statement { sql: STATS, params: vec![] })
        .await?
        .iter()
        .map(|r| (text(r.first()), text(r.get(1)), text(r.get(2)), r.get(3).and_then(J::as_u64).unwrap_or(0)))
        .collect();
    Ok(json_response(200, &stats_json(&config.destinations, &counted))?)
}
