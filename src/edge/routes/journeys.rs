//! `GET /v1/journeys`: each configured journey with the people at each of its steps now and the instances that
//! ended by reason over the last 30 days, from the journey index (`core::wire::journeys`, kept by the index queue's
//! consumer). Who may call: the admin token (or the console's session) only; the counts name nobody.

use crate::core::base::sort;
use crate::core::base::sort::CollectInto;
use crate::core::base::time::{format_iso8601, DAY};
use crate::core::wire::audiences::{Sql, Statement};
use crate::core::wire::journeys::{ENDED, RUNNING};
use crate::edge::auth::require_admin;
use crate::edge::clock::now;
use crate::edge::error::json_response;
use crate::edge::error::ApiResult;
use crate::edge::kv;
use crate::edge::outlets::rows;
use serde_json::{json, Map, Value as J};
use worker::{Env, Request};

/// How far back ended instances are counted.
const ENDED_WINDOW: i64 = 30 * DAY;

pub(crate) async fn journeys_stats(req: Request, env: &Env) -> ApiResult {
    require_admin(&req, env).await?;
    let (_, config) = kv::config(env).await?;
    let db = crate::edge::outlets::index(env).await?;
    let text = |v: Option<&J>| v.and_then(J::as_str).unwrap_or_default().to_string();
    let count = |v: Option<&J>| v.and_then(J::as_u64).unwrap_or(0);
    let running = rows(&db, &Statement { sql: RUNNING, params: vec![] }).await?;
    let since = now() - ENDED_WINDOW;
    let ended = rows(&db, &Statement { sql: ENDED, params: vec![Sql::Int(since)] }).await?;
    let per = |list: &[Vec<J>], journey: &str| -> Map<String, J> {
        list.iter()
            .filter(|r| text(r.first()) == journey)
            .map(|r| (text(r.get(1)), J::from(count(r.get(2)))))
            .collect_object()
    };
    let mut out: Vec<J> = config
        .journeys
        .iter()
        .map(|j| {
            // Every step, in order, with the people at it (0 for none), so a chart shows where people wait.
            let at_step = per(&running, &j.id);
            let steps: Vec<J> = j
                .steps
                .iter()
                .map(|s| json!({"step": s.id, "kind": s.kind.name(), "running": at_step.get(&s.id).cloned().unwrap_or(J::from(0))}))
                .collect();
            json!({"id": j.id, "configured": true, "steps": steps, "running": at_step.values().filter_map(J::as_u64).sum::<u64>(),
                   "ended": per(&ended, &j.id)})
        })
        .collect();
    // Journeys no longer configured whose instances are still counted.
    let mut gone: Vec<String> = running.iter().chain(&ended).map(|r| text(r.first())).collect();
    sort::sort(&mut gone);
    gone.dedup();
    for id in gone.into_iter().filter(|id| config.journeys.iter().all(|j| j.id != *id)) {
        let at_step = per(&running, &id);
        out.push(json!({"id": id, "configured": false, "steps": at_step.iter().map(|(s, n)| json!({"step": s, "kind": null, "running": n})).collect::<Vec<_>>(),
            "running": at_step.values().filter_map(J::as_u64).sum::<u64>(), "ended": per(&ended, &id)}));
    }
    Ok(json_response(200, &json!({"journeys": out, "endedSince": format_iso8601(since)}))?)
}
