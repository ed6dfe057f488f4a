//! Experiment counts: one Durable Object per experiment holds, per variant, how many profiles were exposed and
//! how many of them converted.
//!
//! Profiles record their own assignment (`core::model::shown::Shown`); a profile's writer sends the exposures and
//! conversions that an apply caused (`core::model::shown::Outcome`, each at most once per profile and experiment)
//! here, after the profile is stored. The object counts them with `Outcome::count_in`, one request at a time, so no count is lost to a race, which
//! counters in KV could not promise.

use crate::core::base::sort::CollectInto;
use crate::core::model::shown::{Outcome, Tally};
use crate::core::store::{decode_outcomes, encode_outcomes};
use crate::edge::objects::{call_ok, get_raw};
use std::collections::BTreeMap;
use worker::wasm_bindgen::JsCast;
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State, Storage};

const BINDING: &str = "EXPERIMENTS";
/// Storage key of the counts: variant id to `[exposures, conversions]`.
const COUNTS_KEY: &str = "counts";

type Counts = Tally;

/// Sends the outcomes of one apply to their experiments' objects: each object gets its own, as they are
/// (`store::encode_outcomes`), and counts them with `Outcome::count_in`.
pub async fn record(env: &Env, outcomes: &[Outcome]) -> Result<()> {
    let mut by_experiment: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        by_experiment.entry(o.experiment()).or_default().push(o);
    }
    for (experiment, outcomes) in by_experiment {
        call(env, experiment, Method::Post, Some(encode_outcomes(&outcomes))).await?;
    }
    Ok(())
}

/// The counts of an experiment: variant id to `(exposures, conversions)`.
pub async fn counts(env: &Env, experiment: &str) -> Result<BTreeMap<String, (u64, u64)>> {
    let text = call(env, experiment, Method::Get, None).await?;
    let counts: Counts = serde_json::from_str(&text).unwrap_or_default();
    Ok(counts.into_iter().map(|(k, [e, c])| (k, (e, c))).collect_map())
}

async fn call(env: &Env, experiment: &str, method: Method, body: Option<Vec<u8>>) -> Result<String> {
    call_ok(env, BINDING, experiment, method, body.as_deref(), "experiment counts").await
}

#[durable_object]
pub struct ExperimentObject {
    state: State,
}

impl DurableObject for ExperimentObject {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // Only the Worker's profile writers post here, with the outcomes of one apply for this experiment;
        // anything else is ignored rather than counted.
        let outcomes: Vec<Outcome> = if req.method() == Method::Post {
            decode_outcomes(&req.bytes().await?).unwrap_or_default()
        } else {
            Vec::new()
        };
        let storage = self.state.storage();
        // One read-increment-write at a time, as for profiles.
        let counts = self
            .state
            .block_concurrency_while(async move {
                let mut counts = read_counts(&storage).await?;
                if !outcomes.is_empty() {
                    for o in &outcomes {
                        o.count_in(&mut counts);
                    }
                    storage.put_raw(COUNTS_KEY, serde_json::to_string(&counts)?).await?;
                }
                Ok::<Counts, worker::Error>(counts)
            })
            .await?;
        Response::from_json(&counts)
    }
}

/// The counts kept here: JSON text (`{"variant": [exposed, converted]}`); counts written before that are a
/// JavaScript `Map` of the same pairs, and are read as such.
async fn read_counts(storage: &Storage) -> Result<Counts> {
    let value = get_raw(storage, COUNTS_KEY).await?;
    if let Some(text) = value.as_string() {
        return Ok(serde_json::from_str(&text).unwrap_or_default());
    }
    let mut counts = Counts::new();
    if let Some(map) = value.dyn_ref::<worker::js_sys::Map>() {
        map.for_each(&mut |v, k| {
            let pair = worker::js_sys::Array::from(&v);
            if let Some(variant) = k.as_string() {
                let n = |i| pair.get(i).as_f64().unwrap_or(0.0) as u64;
                counts.insert(variant, [n(0), n(1)]);
            }
        });
    }
    Ok(counts)
}
