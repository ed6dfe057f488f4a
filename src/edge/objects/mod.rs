//! The Worker's Durable Objects: one per profile (its serialized writer), one per experiment (its counts), the
//! configuration's writer (its versions), and one per client address that guesses at the admin token (`guard`).

pub mod config;
pub mod experiments;
pub mod guard;
pub mod profile;
pub mod profile_client;

use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Env, Method, Request, RequestInit, Result, Storage};

/// The one transport to every Durable Object: a request to the object `name` of `binding`, at `path`, answered as
/// its status and bytes. `path` has no leading slash. Each object's module wraps it in its own typed calls (`profile_client::ask`,
/// `experiments::record`, `config::write`), so a path or an answer's shape is written in one place.
/// `config_version`, when given, tells the object the configuration version this request read (`kv::config_seen`).
pub async fn call(
    env: &Env,
    binding: &str,
    name: &str,
    method: Method,
    path: &str,
    body: Option<&[u8]>,
    config_version: Option<u64>,
) -> Result<(u16, Vec<u8>)> {
    let stub = env.durable_object(binding)?.id_from_name(name)?.get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(method).with_body(body.map(|b| JsValue::from(Uint8Array::from(b))));
    if let Some(v) = config_version {
        let headers = worker::Headers::new();
        headers.set(crate::edge::kv::CONFIG_VERSION_HEADER, &v.to_string())?;
        init.with_headers(headers);
    }
    let mut resp = stub.fetch_with_request(Request::new_with_init(&format!("https://object/{path}"), &init)?).await?;
    Ok((resp.status_code(), resp.bytes().await?))
}

/// `call` for the objects whose answers are text (experiments, the configuration's writer): anything but a 200 is
/// an error naming `what` answered it.
pub async fn call_ok(
    env: &Env,
    binding: &str,
    name: &str,
    method: Method,
    body: Option<&[u8]>,
    what: &str,
) -> Result<String> {
    let (status, bytes) = call(env, binding, name, method, "", body, None).await?;
    if status != 200 {
        return Err(worker::Error::RustError(format!("{what} answered {status}")));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A value of an object's storage as JavaScript holds it (`undefined` when absent). The objects keep small values
/// as plain strings and numbers and read them this way: `Storage::get`/`put` go through serde-wasm-bindgen, which
/// these values do not need (the Worker Wasm is smaller without it).
pub async fn get_raw(storage: &Storage, key: &str) -> Result<JsValue> {
    Ok(JsFuture::from(storage.as_raw().get(key)?).await?)
}

/// A number kept in an object's storage, if there is one.
pub async fn get_number(storage: &Storage, key: &str) -> Result<Option<f64>> {
    Ok(get_raw(storage, key).await?.as_f64())
}

/// A string kept in an object's storage, if there is one.
pub async fn get_text(storage: &Storage, key: &str) -> Result<Option<String>> {
    Ok(get_raw(storage, key).await?.as_string())
}
