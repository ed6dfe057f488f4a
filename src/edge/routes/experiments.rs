//! `GET /v1/experiments/{id}`: an experiment's counts per variant. Who may call: the admin token only.

use crate::core::rules::slots::CONTROL;
use crate::edge::auth::require_admin;
use crate::edge::error::json_response;
use crate::edge::error::{ApiError, ApiResult};
use crate::edge::kv;
use crate::edge::objects::experiments;
use serde_json::json;
use worker::{Env, Request};

/// `GET /v1/experiments/{id}` (admin): exposures, conversions and conversion rates per variant, the holdout
/// (`control`) included; variants nobody saw yet show zeros.
pub(crate) async fn experiment_stats(req: Request, env: &Env, id: &str) -> ApiResult {
    require_admin(&req, env).await?;
    let (_, config) = kv::config(env).await?;
    let Some((slot, block)) = config.slots.iter().find_map(|(name, s)| {
        s.blocks.iter().find(|b| b.experiment.as_ref().is_some_and(|e| e.id == id)).map(|b| (name, b))
    }) else {
        return Err(ApiError::NotFound { code: "experiment_not_found", message: format!("no experiment {id:?}") });
    };
    let Some(experiment) = &block.experiment else { unreachable!("found by its experiment") };
    let mut counts = experiments::counts(env, id).await?;
    let mut names: Vec<String> = Vec::new();
    if experiment.holdout > 0 {
        names.push(CONTROL.to_string());
    }
    names.extend(block.variants.iter().map(|v| v.id.clone()));
    // Variants removed from the configuration since they were counted are still reported.
    names.extend(counts.keys().filter(|k| !names.contains(k)).cloned().collect::<Vec<_>>());
    let variants: Vec<serde_json::Value> = names
        .iter()
        .map(|v| {
            let (exposures, conversions) = counts.remove(v).unwrap_or((0, 0));
            let rate = if exposures > 0 { conversions as f64 / exposures as f64 } else { 0.0 };
            json!({"variant": v, "exposures": exposures, "conversions": conversions, "conversionRate": rate})
        })
        .collect();
    Ok(json_response(
        200,
        &json!({"experiment": id, "slot": slot, "block": block.id, "holdout": experiment.holdout,
            "goal": {"event": experiment.goal.event, "withinMs": experiment.goal.within}, "variants": variants}),
    )?)
}
