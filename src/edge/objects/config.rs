//! The configuration's writer: one Durable Object (named `config`) through which every `PUT /v1/config` goes, so
//! that versions are handed out one at a time. Without it, two PUTs at once could both read version N from KV
//! and both store N + 1: one configuration lost, and isolates that cached either text serving different rules
//! under the same version number. KV has no compare-and-swap; this object's storage is strongly consistent and
//! `blockConcurrencyWhile` runs one write at a time.
//!
//! It also answers conditional writes (`If-Match: "N"`): a write based on a version that is no longer current is
//! refused, so two people editing the configuration cannot silently overwrite each other.

use crate::edge::kv;
use crate::edge::objects::{call_ok, get_number};
use serde::{Deserialize, Serialize};
use worker::{durable_object, DurableObject, Env, Method, Request, Response, Result, State};

const BINDING: &str = "CONFIG_WRITER";
/// Storage key of the last version handed out.
const VERSION_KEY: &str = "version";

#[derive(Serialize, Deserialize)]
struct Write {
    text: String,
    /// The version the write is based on (`If-Match`); `None` writes unconditionally.
    based_on: Option<u64>,
}

/// What a write came to: stored as `version`, or refused because `current` is not the version it was based on.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum Written {
    Stored { version: u64 },
    Conflict { current: u64 },
}

/// Stores `text` (a configuration that compiled) as the next version, unless `based_on` names a version that is
/// no longer current.
pub async fn write(env: &Env, text: &str, based_on: Option<u64>) -> Result<Written> {
    let body = serde_json::to_string(&Write { text: text.to_string(), based_on })?;
    let answer =
        call_ok(env, BINDING, "config", Method::Post, Some(body.as_bytes()), "the configuration writer").await?;
    Ok(serde_json::from_str(&answer)?)
}

#[durable_object]
pub struct ConfigObject {
    state: State,
    env: Env,
}

impl DurableObject for ConfigObject {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        // Parsed by serde_json, not the runtime's JSON.parse (`req.json`), which reads numbers as doubles: an
        // If-Match version past 2^53 became a float that no longer read as a u64 (a 503 found by schemathesis).
        let Write { text, based_on } = serde_json::from_str(&req.text().await?)?;
        let storage = self.state.storage();
        let env = self.env.clone();
        let written = self
            .state
            .block_concurrency_while(async move {
                // The first write after a deployment that had no writer yet continues from KV's version.
                let current: u64 = match get_number(&storage, VERSION_KEY).await? {
                    Some(v) => v as u64,
                    None => kv::current_version(&env.kv(kv::KV_BINDING)?)
                        .await
                        .map_err(|_| worker::Error::RustError("reading the configuration version failed".into()))?,
                };
                if based_on.is_some_and(|v| v != current) {
                    return Ok::<Written, worker::Error>(Written::Conflict { current });
                }
                let next = current + 1;
                kv::store_version(&env, next, &text).await?;
                storage.put_raw(VERSION_KEY, next as f64).await?;
                Ok(Written::Stored { version: next })
            })
            .await?;
        Response::from_json(&written)
    }
}
