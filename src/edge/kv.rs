//! Workers KV access: the configuration in force (compiled once per version and cached in the isolate), the
//! identity index and the profile snapshots that reads and decisions use.
//!
//! Keys: `config:current` (version number), `config:v<N>` (configuration JSON), `config:latest` (the latest
//! version's number and JSON, for a new isolate's first read), `idx:<type>:<value>` (profile id;
//! `idh:<type>:<sha256 of value>` when the value is too long for a KV key: `Identity::index_key`), `profile:<id>`
//! (the profile's snapshot, `store::encode_snapshot`: written by its object at most once a second),
//! `predictions:model` (the fitted model in force, `edge::predictions`).

use crate::core::base::sort;
use crate::core::base::time::Millis;
use crate::core::model::identity::Identity;
use crate::core::rules::predictions::{model_from_json, Model as PredictionModel};
use crate::core::rules::{compile_str, Config};
use crate::core::store::{encode_latest_config, latest_config_text};
use crate::edge::error::ApiError;
use std::cell::RefCell;
use std::rc::Rc;
use worker::kv::{KvError, PutOptionsBuilder};
use worker::{Env, KvStore};

pub const KV_BINDING: &str = "EDGECDP";

/// The key of the configuration version in force.
const CURRENT_KEY: &str = "config:current";

/// The key of the latest version's number and text (`store::encode_latest_config`): what a new isolate reads
/// beside `config:current`.
/// Written after `config:current`, so that a reader may find it older than the version in force (then it reads
/// `config:v<N>`), never newer than a version it could not find.
const LATEST_KEY: &str = "config:latest";

/// The key of configuration version `version`'s text.
fn config_key(version: u64) -> String {
    format!("config:v{version}")
}

/// Starts a put of a text value. KV stores bytes either way; `KvStore::put` would pass a `String` through
/// serde-wasm-bindgen and link float formatting for numbers that never come, where `put_bytes` hands the UTF-8 over
/// as it is (the Worker Wasm is about 2 KB gzipped smaller).
pub fn put_text(kv: &KvStore, key: &str, text: &str) -> Result<PutOptionsBuilder, KvError> {
    kv.put_bytes(key, text.as_bytes())
}

thread_local! {
    // A Worker isolate is single-threaded; the cache lives as long as the isolate does.
    static CONFIG_CACHE: RefCell<Option<(u64, Rc<Config>)>> = const { RefCell::new(None) };
    // When a request last found the cached version to be `config:current`'s (its own read, or its caller's).
    static CONFIG_CHECKED: std::cell::Cell<Millis> = const { std::cell::Cell::new(Millis::MIN) };
}

/// How long an isolate trusts its cached configuration version without reading `config:current`, where nobody
/// read it for the request (a profile object's alarm). KV itself may answer a value up to a minute old at
/// another location; this adds at most a few seconds to it, and saves the alarm of every busy profile a read.
const CONFIG_RECHECK_MS: Millis = 5_000;

/// The cached configuration is `config:current`'s version as of now.
fn checked() {
    CONFIG_CHECKED.with(|c| c.set(crate::edge::clock::now()));
}

pub fn store(env: &Env) -> Result<KvStore, ApiError> {
    Ok(env.kv(KV_BINDING)?)
}

/// The version of the configuration in force; 0 when none was ever stored.
pub async fn current_version(kv: &KvStore) -> Result<u64, ApiError> {
    Ok(version_of(kv.get(CURRENT_KEY).text().await?.as_deref()))
}

/// The version `config:current`'s text names (0 when absent).
pub fn version_of(current: Option<&str>) -> u64 {
    current.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// `config` without I/O: the configuration in force when `current` (`config:current`'s text) names the version
/// this isolate compiled and its fitted model is fresh; `None` when `config` has a read to do.
pub fn cached_config(current: Option<&str>) -> Option<InForce> {
    let version = version_of(current);
    let config = cached(version)?;
    checked();
    if config.predictions.pinned.is_some() {
        return Some((version, config));
    }
    fresh_model(crate::edge::clock::now(), |model| (version, fitted(version, config, model)))
}

/// Whether this isolate has compiled no configuration yet (its first request reads three keys at once).
pub fn is_cold() -> bool {
    CONFIG_CACHE.with(|c| c.borrow().is_none())
}

/// The configuration in force and its version.
pub type InForce = (u64, Rc<Config>);

/// `config` once its keys are read, without I/O: `current`, `latest` and the model's text (`MODEL_KEY`, just
/// read). `None` when `latest` is not the version `current` names (the text is then `config:v<N>`'s, which
/// `config` reads) or the stored configuration no longer compiles (`config` says so). With the configuration, what
/// its load has to say in the log (`compiled`), which the caller says once its answer is out.
pub fn loaded_config(
    current: Option<&str>,
    latest: Option<&str>,
    model: Option<String>,
) -> Option<(InForce, Option<String>)> {
    let version = version_of(current);
    let model = cache_model(crate::edge::clock::now(), model);
    let (config, warnings) = match cached(version) {
        Some(hit) => (hit, None),
        None if version == 0 => compiled(0, None).ok()?,
        None => compiled(version, Some(latest_config_text(latest?, version)?)).ok()?,
    };
    checked();
    Some(((version, fitted(version, config, &model)), warnings))
}

/// The configuration this isolate compiled, if it is version `version`.
fn cached(version: u64) -> Option<Rc<Config>> {
    CONFIG_CACHE.with(|c| c.borrow().as_ref().filter(|(v, _)| *v == version).map(|(_, c)| c.clone()))
}

/// The configuration in force and its version (0 when none was ever stored: the documented defaults).
pub async fn config(env: &Env) -> Result<(u64, Rc<Config>), ApiError> {
    let kv = store(env)?;
    // A new isolate reads the version in force and the latest text at once (one round trip to KV instead of three
    // in a row on its first request); the text is used when it is that version's.
    let (version, latest) = if is_cold() {
        // The fitted model too (`with_fitted`), which it would otherwise read after these.
        let (version, latest, model) =
            futures_util::future::join3(current_version(&kv), kv.get(LATEST_KEY).text(), kv.get(MODEL_KEY).text())
                .await;
        cache_model(crate::edge::clock::now(), model.ok().flatten());
        (version?, latest.ok().flatten())
    } else {
        (current_version(&kv).await?, None)
    };
    if let Some(hit) = cached(version) {
        checked();
        return Ok((version, with_fitted(env, version, hit).await));
    }
    let text = match latest.as_deref().and_then(|l| latest_config_text(l, version)) {
        _ if version == 0 => None,
        Some(text) => Some(text.to_string()),
        None => Some(
            kv.get(&config_key(version))
                .text()
                .await?
                .ok_or_else(|| ApiError::Unavailable(format!("configuration version {version} is missing")))?,
        ),
    };
    let (compiled, warnings) = compiled(version, text.as_deref())?;
    checked();
    if let Some(w) = warnings {
        worker::console_warn!("{w}");
    }
    Ok((version, with_fitted(env, version, compiled).await))
}

/// Configuration version `version` compiled from its text (none for version 0: the documented defaults) and kept
/// as this isolate's, with what its settings that weaken the trust rules make the Worker say in the log.
fn compiled(version: u64, text: Option<&str>) -> Result<(Rc<Config>, Option<String>), ApiError> {
    let compiled = match text {
        None => Config::default(),
        // A stored configuration was valid when it was stored; if a newer build rejects it, refuse service
        // loudly rather than run with an empty configuration.
        Some(text) => compile_str(text).map_err(|errors| {
            ApiError::Unavailable(format!(
                "stored configuration v{version} no longer compiles: {}",
                errors.first().map(ToString::to_string).unwrap_or_default()
            ))
        })?,
    };
    // Settings that weaken the trust rules are allowed only explicitly, and said out loud at every load (in one
    // line per setting, written at once: each call to the console costs a new isolate's first request about 2 ms,
    // and under `wrangler dev` a first call about 9 ms, which the shell spends after its answer: `loaded_config`).
    let mut warnings = Vec::new();
    for id in compiled.unproven_sources() {
        warnings.push(format!(
            "configuration v{version}: browser source {id:?} has identityProof \"off\": any page can claim any user id and read that user's personalization"
        ));
    }
    for id in compiled.believed_contact_sources() {
        warnings.push(format!(
            "configuration v{version}: browser source {id:?} has contactProof \"off\": any page can make journeys send to any address"
        ));
    }
    if compiled.demo_sign_in {
        warnings.push(format!(
            "configuration v{version}: demo.signIn is on: POST /v1/demo/identity-token signs any user id for anyone; never use it for real visitors"
        ));
    }
    let compiled = Rc::new(compiled);
    CONFIG_CACHE.with(|c| *c.borrow_mut() = Some((version, compiled.clone())));
    Ok((compiled, (!warnings.is_empty()).then(|| warnings.join("\n"))))
}

/// The header in which the Worker tells a profile object which configuration version its request read, so that
/// the object, when it has that version compiled, does not read `config:current` again (`config_seen`).
pub const CONFIG_VERSION_HEADER: &str = "x-edgecdp-config-version";

/// The version of the configuration this isolate compiled last, if any: in a request that called `config`, the
/// version in force when it did.
pub fn cached_version() -> Option<u64> {
    CONFIG_CACHE.with(|c| c.borrow().as_ref().map(|(v, _)| *v))
}

/// `config`, except that when `seen` (the version the calling Worker read for this request) is the one this
/// isolate has compiled, that is the answer, without a KV read: one KV read fewer per batch in the profile
/// object. An object never goes back to an older version than it has, since `seen` was current when read.
pub async fn config_seen(env: &Env, seen: Option<u64>) -> Result<(u64, Rc<Config>), ApiError> {
    let hit = seen.and_then(|s| CONFIG_CACHE.with(|c| c.borrow().as_ref().filter(|(v, _)| *v == s).cloned()));
    match hit {
        Some((version, config)) => {
            checked();
            Ok((version, with_fitted(env, version, config).await))
        }
        None => config(env).await,
    }
}

/// `config` for a profile object's alarm, for which no request read `config:current`: the cached version when a
/// request found it current within `CONFIG_RECHECK_MS`, else read. A request that names no version (a
/// re-evaluation after a new configuration, say) reads it (`config_seen`).
pub async fn config_recent(env: &Env) -> Result<(u64, Rc<Config>), ApiError> {
    let recent = crate::edge::clock::now().saturating_sub(CONFIG_CHECKED.with(|c| c.get())) < CONFIG_RECHECK_MS;
    match recent.then(|| CONFIG_CACHE.with(|c| c.borrow().clone())).flatten() {
        Some((version, config)) => Ok((version, with_fitted(env, version, config).await)),
        None => config(env).await,
    }
}

/// The key of the fitted model in force (`rules::predictions::Model::to_json`), written by the fitting job.
pub const MODEL_KEY: &str = "predictions:model";
/// How long an isolate keeps the fitted model before it reads the key again: a new version reaches every
/// writer within this, and a busy isolate reads it once a minute rather than once a request.
const MODEL_TTL_MS: Millis = 60_000;

thread_local! {
    static MODEL_CACHE: RefCell<Option<(Millis, Option<PredictionModel>)>> = const { RefCell::new(None) };
}

/// The fitted model in `MODEL_KEY`'s text (none when absent or unreadable), kept as read at `now`.
fn cache_model(now: Millis, text: Option<String>) -> Option<PredictionModel> {
    let m = text.and_then(|t| serde_json::from_str(&t).ok()).and_then(|j| model_from_json(&j).ok());
    MODEL_CACHE.with(|c| *c.borrow_mut() = Some((now, m.clone())));
    m
}

/// `then` of the fitted model as kept, unless it was read `MODEL_TTL_MS` or longer before `now`.
fn fresh_model<T>(now: Millis, then: impl FnOnce(&Option<PredictionModel>) -> T) -> Option<T> {
    MODEL_CACHE.with(|c| c.borrow().as_ref().filter(|(at, _)| now - at < MODEL_TTL_MS).map(|(_, m)| then(m)))
}

/// The configuration with the fitted model in force (unless it pins one): the cached compiled configuration
/// when it already has that model, else the two put together once and cached in its place.
async fn with_fitted(env: &Env, version: u64, config: Rc<Config>) -> Rc<Config> {
    if config.predictions.pinned.is_some() {
        return config;
    }
    let now = crate::edge::clock::now();
    let model = match fresh_model(now, Clone::clone) {
        Some(m) => m,
        None => {
            let text = match store(env) {
                Ok(kv) => kv.get(MODEL_KEY).text().await.ok().flatten(),
                Err(_) => None,
            };
            cache_model(now, text)
        }
    };
    fitted(version, config, &model)
}

/// `config` with `model` in force (unless it pins one), kept as this isolate's when that changed it.
fn fitted(version: u64, config: Rc<Config>, model: &Option<PredictionModel>) -> Rc<Config> {
    let same = config.predictions.model.as_ref().map(|m| m.version) == model.as_ref().map(|m| m.version);
    if config.predictions.pinned.is_some() || same {
        return config;
    }
    let merged = Rc::new(config.with_model(model.clone()));
    CONFIG_CACHE.with(|c| *c.borrow_mut() = Some((version, merged.clone())));
    merged
}

/// Forgets the cached model, so that the next request reads the version just stored.
pub fn forget_model() {
    MODEL_CACHE.with(|c| *c.borrow_mut() = None);
}

/// The configuration document in force, as stored.
pub async fn config_text(env: &Env) -> Result<(u64, Option<String>), ApiError> {
    let kv = store(env)?;
    let version = current_version(&kv).await?;
    if version == 0 {
        return Ok((0, None));
    }
    Ok((version, kv.get(&config_key(version)).text().await?))
}

/// Stores a configuration that compiled as `version` and makes it current: the text first, so that the
/// current version never names a text that is not there. Only the configuration's writer
/// (`objects::config::ConfigObject`) calls it, one version at a time.
pub async fn store_version(env: &Env, version: u64, text: &str) -> worker::Result<()> {
    note_write(env, &config_key(version));
    note_write(env, CURRENT_KEY);
    let kv = env.kv(KV_BINDING)?;
    // When it was saved travels as the key's metadata, which listing the versions reads without their texts.
    let saved = serde_json::json!({"savedAt": crate::edge::clock::now()});
    put_text(&kv, &config_key(version), text)?.metadata(saved)?.execute().await?;
    put_text(&kv, CURRENT_KEY, &version.to_string())?.execute().await?;
    note_write(env, LATEST_KEY);
    put_text(&kv, LATEST_KEY, &encode_latest_config(version, text))?.execute().await?;
    Ok(())
}

/// Every stored configuration version, newest first, with when it was saved (unknown for versions stored before
/// the time was kept).
pub async fn config_versions(env: &Env) -> Result<Vec<(u64, Option<Millis>)>, ApiError> {
    let kv = store(env)?;
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    // 1,000 keys a page; 20 pages is more versions than anyone keeps.
    for _ in 0..20 {
        let mut list = kv.list().prefix("config:v".to_string());
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await?;
        for k in &page.keys {
            let Some(version) = k.name.strip_prefix("config:v").and_then(|v| v.parse::<u64>().ok()) else { continue };
            let at = k.metadata.as_ref().and_then(|m| m.get("savedAt")).and_then(serde_json::Value::as_i64);
            out.push((version, at));
        }
        match page.cursor.filter(|_| !page.list_complete) {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    sort::sort_by_key(&mut out, |v| std::cmp::Reverse(v.0));
    Ok(out)
}

/// The text of configuration version `version`, when it is stored.
pub async fn config_text_of(env: &Env, version: u64) -> Result<Option<String>, ApiError> {
    Ok(store(env)?.get(&config_key(version)).text().await?)
}

/// The profile id an identity belongs to, if it has one.
pub async fn profile_id_of(kv: &KvStore, id: &Identity) -> Result<Option<String>, ApiError> {
    Ok(kv.get(&id.index_key()).text().await?)
}

/// How long an erased person's identities stay marked (KV's shortest expiration): events planned before the
/// erasure, or racing it, are refused rather than bringing the person back.
pub const ERASED_MARK_SECONDS: u64 = 60;

/// Marks an identity as just erased (`Identity::erased_key`), before its index entry goes, so that no moment
/// exists in which the identity is neither indexed nor marked.
pub async fn mark_erased(kv: &KvStore, id: &Identity) -> worker::Result<()> {
    put_text(kv, &id.erased_key(), "1")?.expiration_ttl(ERASED_MARK_SECONDS).execute().await?;
    Ok(())
}

/// Says, in the log, that a KV key is about to be written, when `EDGECDP_LOG_KV_WRITES` is set: the test that
/// holds every key to one write a second (KV's limit at Cloudflare) counts these lines. Tests only: index keys
/// name identities (`idx:user_id:...`), which have no place in a production log.
pub fn note_write(env: &Env, key: &str) {
    if env.var("EDGECDP_LOG_KV_WRITES").is_ok() {
        worker::console_warn!("kv-write {} {key}", worker::Date::now().as_millis());
    }
}
