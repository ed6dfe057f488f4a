//! The fitting job, a thin shell around `core::engine::fit`: it reads the summaries profiles published (D1, at most
//! `MAX_FIT_PROFILES`, a page at a time), fits a version, records it with its quality figures in D1 and, when
//! any part fitted, makes it the model in force (KV `predictions:model`, which every writer picks up within a
//! minute, and the re-evaluation pass brings every profile's audiences to it). The cron runs it when the last fit is older than `predictions.refit`; the console runs it on demand
//! (`routes::predictions`). One invocation does one bounded fit: its reads, memory and optimizer iterations have
//! fixed ceilings whatever the population.

use crate::core::base::time::Millis;
use crate::core::engine::fit::{fit, Fitted, Row};
use crate::core::rules::predictions::Predictions;
use crate::core::wire::audiences::{Sql, Statement};
use crate::core::wire::predictions::{
    Published, LAST_FIT, MAX_FIT_PROFILES, NEXT_VERSION, PAGE, RECORD_MODEL, SUMMARIES_PAGE,
};
use crate::edge::clock::now;
use crate::edge::error::ApiError;
use crate::edge::kv;
use crate::edge::outlets::{first_value, index, rows, run};
use serde_json::{json, Value as J};
use worker::Env;

/// Every summary the fit reads (at most `MAX_FIT_PROFILES`), by profile id, each made into the fit's row as it is
/// read (a page of summaries at a time is all that is held of them).
async fn summaries(env: &Env, p: &Predictions, now: Millis) -> Result<Vec<Row>, ApiError> {
    let db = index(env).await?;
    let mut out = Vec::new();
    let mut after = String::new();
    while out.len() < MAX_FIT_PROFILES {
        let limit = PAGE.min(MAX_FIT_PROFILES - out.len());
        let page = rows(
            &db,
            &Statement { sql: SUMMARIES_PAGE, params: vec![Sql::Text(after.clone()), Sql::Int(limit as i64)] },
        )
        .await?;
        for r in &page {
            let body = r.get(1).and_then(J::as_str).unwrap_or_default();
            // A summary this build cannot read is left out of the fit, not a reason to fail it.
            if let Some(Ok(summary)) = serde_json::from_str::<J>(body).ok().as_ref().and_then(Published::of) {
                out.push(Row::of(&summary.behaviour, p, now));
            }
        }
        match page.last().and_then(|r| r.first()).and_then(J::as_str) {
            Some(last) if page.len() == limit => after = last.to_string(),
            _ => break,
        }
    }
    Ok(out)
}

/// Fits a new version now, records it, and puts it in force when any part fitted. Answers the version's row.
pub async fn fit_now(env: &Env) -> Result<J, ApiError> {
    let (config_version, config) = kv::config(env).await?;
    let at = now();
    let people = summaries(env, &config.predictions, at).await?;
    let db = index(env).await?;
    let version = first_value(&db, &Statement { sql: NEXT_VERSION, params: vec![] })
        .await?
        .as_ref()
        .and_then(J::as_u64)
        .unwrap_or(1);
    let Fitted { status, model, quality } = fit(&people, &config.predictions, version, at);
    let model_json = model.as_ref().map(|m| m.to_json());
    let record = Statement {
        sql: RECORD_MODEL,
        params: vec![
            Sql::Int(version as i64),
            Sql::Int(at),
            Sql::Text(status.into()),
            model_json.as_ref().map_or(Sql::Null, |m| Sql::Text(m.to_string())),
            Sql::Text(quality.to_string()),
        ],
    };
    run(&db, &record).await.map_err(|e| ApiError::Unavailable(format!("model versions: {e}")))?;
    if let Some(m) = &model_json {
        kv::note_write(env, kv::MODEL_KEY);
        let store = kv::store(env)?;
        kv::put_text(&store, kv::MODEL_KEY, &m.to_string())?.execute().await?;
        kv::forget_model();
        // Audiences that read predictions are evaluated again under the new version: each profile when it is next
        // touched, and every other one by the re-evaluation pass, so that nobody waits for their next event.
        if config.predictions.read {
            crate::edge::audiences::start_sweep(env, config_version).await?;
        }
    }
    Ok(version_json(version as i64, at, status, model_json, quality))
}

/// A version as the admin API shows it.
pub fn version_json(version: i64, at: Millis, status: &str, model: Option<J>, quality: J) -> J {
    json!({
        "version": version,
        "fittedAt": crate::core::base::time::format_iso8601(at),
        "status": status,
        "model": model,
        "quality": quality,
    })
}

/// The cron's part: a fit when the last one is older than `predictions.refit` (or there was none) and anyone
/// has published a summary.
pub async fn maybe_fit(env: &Env) -> Result<(), ApiError> {
    let (_, config) = kv::config(env).await?;
    if config.predictions.pinned.is_some() {
        return Ok(());
    }
    let db = index(env).await?;
    let last =
        first_value(&db, &Statement { sql: LAST_FIT, params: vec![] }).await?.as_ref().and_then(J::as_i64).unwrap_or(0);
    if now() - last < config.predictions.refit {
        return Ok(());
    }
    let any =
        rows(&db, &Statement { sql: SUMMARIES_PAGE, params: vec![Sql::Text(String::new()), Sql::Int(1)] }).await?;
    if any.is_empty() {
        return Ok(());
    }
    let v = fit_now(env).await?;
    worker::console_log!("predictions: fitted version {} ({})", v["version"], v["status"]);
    Ok(())
}
