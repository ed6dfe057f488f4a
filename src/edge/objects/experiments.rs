//! Experiment counts: one Durable Object per experiment holds, per variant, how many profiles were exposed and
//! how many of them converted.
//!
//! Profiles record their own assignment (`core::model::profile::Shown`); a profile's writer sends the exposures and
//! conversions that an apply caused (`core::model::profile::Outcome`, each at most once per profile and experiment)
//! here, after the profile is stored. The object serializes the increments, so no count is lost to a race, which
//! counters in KV could not promise.

use crate::core::model::profile::Outcome;
use crate::edge::objects::get_raw;
use serde_json::json;
use std::collections::BTreeMap;
use worker::wasm_bindgen::JsCast;
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State, Storage};

const BINDING: &str = "EXPERIMENTS";
/// Storage key of the counts: variant id to `[exposures, conversions]`.
const COUNTS_KEY: &str = "counts";

type Counts = BTreeMap<String, [u64; 2]>;

/// What a posted change does: add an exposure or a conversion, or take one back (a merge withdrew it).
const EXPOSED: usize = 0;
const CONVERTED: usize = 1;
const UN_EXPOSED: usize = 2;
const UN_CONVERTED: usize = 3;

/// Sends the outcomes of one apply to their experiments' objects.
pub async fn record(env: &Env, outcomes: &[Outcome]) -> Result<()> {
    let mut by_experiment: BTreeMap<&str, Vec<serde_json::Value>> = BTreeMap::new();
    for o in outcomes {
        let (experiment, variant, kinds): (_, _, &[usize]) = match o {
            Outcome::Exposed { experiment, variant } => (experiment, variant, &[EXPOSED]),
            Outcome::Converted { experiment, variant } => (experiment, variant, &[CONVERTED]),
            Outcome::Withdrawn { experiment, variant, converted: false } => (experiment, variant, &[UN_EXPOSED]),
            Outcome::Withdrawn { experiment, variant, converted: true } => {
                (experiment, variant, &[UN_EXPOSED, UN_CONVERTED])
            }
        };
        for kind in kinds {
            by_experiment.entry(experiment).or_default().push(json!([variant, kind]));
        }
    }
    for (experiment, adds) in by_experiment {
        call(env, experiment, Method::Post, Some(json!(adds).to_string())).await?;
    }
    Ok(())
}

/// The counts of an experiment: variant id to `(exposures, conversions)`.
pub async fn counts(env: &Env, experiment: &str) -> Result<BTreeMap<String, (u64, u64)>> {
    let text = call(env, experiment, Method::Get, None).await?;
    let counts: Counts = serde_json::from_str(&text).unwrap_or_default();
    Ok(counts.into_iter().map(|(k, [e, c])| (k, (e, c))).collect())
}

async fn call(env: &Env, experiment: &str, method: Method, body: Option<String>) -> Result<String> {
    object_call(env, BINDING, experiment, method, body, "experiment counts").await
}

/// Sends one request to the Durable Object `name` of `binding` and answers its body; anything but a 200 is an
/// error naming `what` answered it. The objects that answer text (experiments, the configuration's writer) use it.
pub(crate) async fn object_call(
    env: &Env,
    binding: &str,
    name: &str,
    method: Method,
    body: Option<String>,
    what: &str,
) -> Result<String> {
    let (status, bytes) =
        crate::edge::objects::call(env, binding, name, method, "", body.as_ref().map(|b| b.as_bytes())).await?;
    if status != 200 {
        return Err(worker::Error::RustError(format!("{what} answered {status}")));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
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
        // Only the Worker's profile writers post here, with `[[variant, 0 | 1 | 2 | 3], ...]` (see `EXPOSED` and
        // the rest); anything else is ignored rather than counted.
        let adds: Vec<(String, usize)> =
            if req.method() == Method::Post { req.json().await.unwrap_or_default() } else { Vec::new() };
        let storage = self.state.storage();
        // One read-increment-write at a time, as for profiles.
        let counts = self
            .state
            .block_concurrency_while(async move {
                let mut counts = read_counts(&storage).await?;
                if !adds.is_empty() {
                    for (variant, kind) in adds {
                        let c = counts.entry(variant).or_default();
                        match kind {
                            EXPOSED | CONVERTED => c[kind] += 1,
                            UN_EXPOSED | UN_CONVERTED => c[kind - 2] = c[kind - 2].saturating_sub(1),
                            _ => {}
                        }
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
