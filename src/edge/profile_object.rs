//! The per-profile Durable Object: the single writer of one profile.
//!
//! KV has no compare-and-swap and keeps the last of concurrent writes, so every change to a profile goes
//! through the profile's own Durable Object. Each request runs under `blockConcurrencyWhile`, which delivers no
//! other request to this object until the read-apply-write (and the KV snapshot) is done: writes to one
//! profile are strictly serialized and none is lost.

use crate::core::profile::{apply_events, Profile};
use crate::core::store::{decode_apply, decode_profile, encode_profile};
use crate::edge::http::json_response;
use crate::edge::kv;
use serde_json::json;
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State, Storage};

/// Key of the profile inside the object's own storage.
const PROFILE_KEY: &str = "profile";

#[durable_object]
pub struct ProfileObject {
    state: State,
    env: Env,
}

impl DurableObject for ProfileObject {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let bytes = req.bytes().await?;
        let apply = match decode_apply(&bytes) {
            Ok(a) => a,
            Err(e) => {
                return json_response(
                    400,
                    &json!({"error": {"code": "invalid_apply_request", "message": e.to_string(), "path": ""}}),
                )
            }
        };
        let storage = self.state.storage();
        let env = self.env.clone();
        let outcome = self
            .state
            .block_concurrency_while(async move {
                let (_, config) = kv::config(&env).await.map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
                let current = read_profile(&storage).await?;
                let (profile, outcome) = apply_events(current, apply, &config.consent);
                if let (true, Some(profile)) = (outcome.changed, profile.as_ref()) {
                    write_profile(&storage, &env, profile, &outcome.new_identities).await?;
                }
                Ok(outcome)
            })
            .await?;
        json_response(
            200,
            &json!({"stored": outcome.stored, "duplicates": outcome.duplicates, "refused": outcome.refused}),
        )
    }
}

async fn read_profile(storage: &Storage) -> Result<Option<Profile>> {
    let value = JsFuture::from(storage.as_raw().get(PROFILE_KEY)?).await?;
    if value.is_undefined() {
        return Ok(None);
    }
    let bytes = Uint8Array::new(&value).to_vec();
    decode_profile(&bytes).map(Some).map_err(|e| worker::Error::RustError(e.to_string()))
}

async fn write_profile(
    storage: &Storage,
    env: &Env,
    profile: &Profile,
    new_identities: &[crate::core::identity::Identity],
) -> Result<()> {
    let bytes = encode_profile(profile);
    let raw = JsValue::from(Uint8Array::from(bytes.as_slice()));
    storage.put_raw(PROFILE_KEY, raw).await?;
    let store = env.kv(kv::KV_BINDING)?;
    // The snapshot goes first, so that an index entry never leads to a profile that is not there yet.
    store.put_bytes(&format!("profile:{}", profile.id), &bytes)?.execute().await?;
    for id in new_identities {
        let key = format!("idx:{}", id.key());
        // An identity already indexed to another profile is left there: linking two profiles is a merge, which
        // the identity-resolution work does with its own rules.
        match store.get(&key).text().await? {
            Some(existing) if existing != profile.id => {}
            _ => store.put(&key, profile.id.clone())?.execute().await?,
        }
    }
    Ok(())
}
