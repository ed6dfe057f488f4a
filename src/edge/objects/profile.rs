//! The per-profile Durable Object: the single writer of one profile, as a thin shell around
//! `core::writer::Writer`. KV has no compare-and-swap and keeps the last of concurrent writes, so every change to
//! a profile goes through its own object, and each request runs under `blockConcurrencyWhile`: writes to one
//! profile are strictly serialized and none is lost.
//!
//! The object loads what it stores, hands the request (or its alarm) to the writer, carries out the effects in
//! the order the writer gave them, answers the writer's reply and sets its one alarm to the writer's instant.
//! Nothing here decides anything; the native runners (`tests/common`) carry out the same effects on maps.
//! Who may call: only the Worker itself (a Durable Object has no public address).

use crate::core::base::time::Millis;
use crate::core::store::{decode_profile, CodecError};
use crate::core::writer::effects::{Action, Effect, Effects, Handed};
use crate::core::writer::protocol::{decode_request, encode_reply, Reply, Request};
use crate::core::writer::state::{Key, Stored, Value};
use crate::core::writer::Writer;
use crate::edge::clock::now;
use crate::edge::objects::profile_client::ask;
use crate::edge::{kv, outlets};
use futures_util::FutureExt;
use std::cell::Cell;
use std::rc::Rc;
use worker::js_sys::{Function, Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{durable_object, DurableObject, Env, Request as HttpRequest, Response, Result, State, Storage};

#[durable_object]
pub struct ProfileObject {
    state: State,
    env: Env,
    /// The alarm this instance last set (`Some(None)`: deleted; `None`: not known, as in a new instance or once
    /// the alarm fired): an action whose next wake-up is the one already set does not set it again.
    alarm: Rc<Cell<Option<Option<Millis>>>>,
}

impl DurableObject for ProfileObject {
    fn new(state: State, env: Env) -> Self {
        Self { state, env, alarm: Rc::new(Cell::new(None)) }
    }

    async fn fetch(&self, mut req: HttpRequest) -> Result<Response> {
        let seen = req.headers().get(kv::CONFIG_VERSION_HEADER)?.and_then(|v| v.parse::<u64>().ok());
        let bytes = req.bytes().await?;
        let storage = self.state.storage();
        let env = self.env.clone();
        let set = self.alarm.clone();
        let reply = self
            .state
            .block_concurrency_while(async move {
                let request = match decode_request(&bytes) {
                    Ok(r) => r,
                    Err(e) => return Ok(Reply::refused("invalid_request", &e.to_string())),
                };
                let kv = SyncKv::of(&storage)?;
                let mut writer = Writer::new(load(&kv)?);
                let action = match request {
                    Request::Apply(request) => {
                        let handed = handovers(&env, &mut writer, &request).boxed_local().await?;
                        Action::Apply { request, handed }
                    }
                    other => Action::Request(other),
                };
                run(&storage, &kv, &env, &mut writer, action, seen, &set).boxed_local().await
            })
            .await?;
        Response::from_bytes(encode_reply(&reply))
    }

    async fn alarm(&self) -> Result<Response> {
        let storage = self.state.storage();
        let env = self.env.clone();
        // The alarm that fired is no longer set.
        self.alarm.set(None);
        let set = self.alarm.clone();
        self.state
            .block_concurrency_while(async move {
                let kv = SyncKv::of(&storage)?;
                let mut writer = Writer::new(load(&kv)?);
                run(&storage, &kv, &env, &mut writer, Action::Alarm, None, &set).await
            })
            .await?;
        Response::ok("")
    }
}

fn failure(e: CodecError) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

/// The object's synchronous key-value storage (`ctx.storage.kv`, which SQLite-backed objects have): the same keys
/// the asynchronous API reads and writes (both keep them in the object's hidden `__cf_kv` table), each call answered
/// at once instead of through a promise and the futures bridge around it. Writes with no `await` between them are
/// committed together, and the runtime holds the answer until they are durable (its output gate), as it does for
/// the asynchronous `put`.
struct SyncKv {
    kv: JsValue,
    get: Function,
    put: Function,
    delete: Function,
}

impl SyncKv {
    fn of(storage: &Storage) -> Result<SyncKv> {
        let kv = Reflect::get(storage.as_raw(), &JsValue::from_str("kv"))?;
        let method = |name: &str| -> Result<Function> {
            Reflect::get(&kv, &JsValue::from_str(name))?
                .dyn_into::<Function>()
                .map_err(|_| worker::Error::RustError(format!("ctx.storage.kv.{name} is not a function")))
        };
        Ok(SyncKv { get: method("get")?, put: method("put")?, delete: method("delete")?, kv })
    }

    fn get(&self, key: &str) -> Result<JsValue> {
        Ok(self.get.call1(&self.kv, &JsValue::from_str(key))?)
    }

    fn put(&self, key: &str, value: &JsValue) -> Result<()> {
        self.put.call2(&self.kv, &JsValue::from_str(key), value)?;
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.delete.call1(&self.kv, &JsValue::from_str(key))?;
        Ok(())
    }
}

/// Everything the object stores.
fn load(kv: &SyncKv) -> Result<Stored> {
    let mut read = Vec::with_capacity(Key::ALL.len());
    for key in Key::ALL {
        read.push((key.name(), kv.get(key.name())?));
    }
    Ok(Stored::load(|key| {
        let v = read.iter().find(|(name, _)| *name == key.name()).map(|(_, v)| v)?;
        if v.is_undefined() {
            None
        } else if let Some(n) = v.as_f64() {
            Some(Value::Number(n))
        } else if let Some(t) = v.as_string() {
            Some(Value::Text(t))
        } else {
            Some(Value::Bytes(Uint8Array::new(v).to_vec()))
        }
    }))
}

/// The profiles an apply links, handed over by their objects before the writer decides.
async fn handovers(
    env: &Env,
    writer: &mut Writer,
    request: &crate::core::engine::apply::ApplyRequest,
) -> Result<Vec<Handed>> {
    let mut handed = Vec::new();
    for link in writer.handovers(request, now()).map_err(failure)? {
        let survivor = request.profile_id.clone();
        // `None`: nothing to absorb there; a tombstone: the link is made by the events themselves.
        if let Reply::HandedOver(Some((bytes, last_kv_write))) =
            ask(env, &link.profile_id, &Request::Handover { survivor }).await?
        {
            handed.push(Handed { profile: decode_profile(&bytes).map_err(failure)?, link, last_kv_write });
        }
    }
    Ok(handed)
}

/// Lets the writer decide, carries out what it decided in order, and sets the alarm.
async fn run(
    storage: &Storage,
    kv: &SyncKv,
    env: &Env,
    writer: &mut Writer,
    action: Action,
    seen: Option<u64>,
    set: &Cell<Option<Option<Millis>>>,
) -> Result<Reply> {
    // Reads and handovers decide without the configuration: not loading it saves them a KV read. An alarm takes
    // the isolate's when a request found it current moments ago (`kv::config_recent`): the floor's reads none.
    let config = if action.needs_config() {
        let config = if action == Action::Alarm {
            kv::config_recent(env).boxed_local()
        } else {
            kv::config_seen(env, seen).boxed_local()
        };
        config.await.map(|(_, c)| c).map_err(|e| worker::Error::RustError(format!("{e:?}")))?
    } else {
        std::rc::Rc::new(crate::core::rules::Config::default())
    };
    let Effects { effects, reply, alarm } = writer.handle(action, &config, now()).map_err(failure)?;
    for effect in effects {
        if matches!(effect, Effect::DeleteAll) {
            set.set(None);
        }
        carry_out(storage, kv, env, effect).await?;
    }
    match alarm {
        Some(wake) if set.get() == Some(wake) => {}
        Some(Some(at)) => {
            storage.set_alarm((at - now()).max(1)).await?;
            set.set(Some(Some(at)));
        }
        Some(None) => {
            storage.delete_alarm().await?;
            set.set(Some(None));
        }
        None => {}
    }
    Ok(reply)
}

/// A stored value as the object's storage keeps it.
fn stored_value(value: Value) -> JsValue {
    match value {
        Value::Bytes(b) => JsValue::from(Uint8Array::from(b.as_slice())),
        Value::Number(n) => JsValue::from(n),
        Value::Text(t) => JsValue::from(t),
    }
}

/// Storage calls are awaited in place; every other effect's future is boxed, so that its code is a function of its
/// own, compiled by V8 when an object first carries one out rather than with the first batch (see `edge::route`).
async fn carry_out(storage: &Storage, sync: &SyncKv, env: &Env, effect: Effect) -> Result<()> {
    let store = || env.kv(kv::KV_BINDING);
    match effect {
        Effect::Put(key, value) => sync.put(key.name(), &stored_value(value))?,
        Effect::Stamp(key) => sync.put(key.name(), &JsValue::from(now() as f64))?,
        Effect::Delete(key) => sync.delete(key.name())?,
        Effect::DeleteAll => {
            async {
                storage.delete_alarm().await?;
                storage.delete_all().await
            }
            .boxed_local()
            .await?;
        }
        Effect::WaitUntil(at) => {
            let wait = at - now();
            if wait > 0 {
                worker::Delay::from(std::time::Duration::from_millis(wait as u64)).await;
            }
        }
        Effect::KvPut { key, value, expiration } => {
            kv::note_write(env, &key);
            let mut put = store()?.put_bytes(&key, &value)?;
            if let Some(e) = expiration {
                put = put.expiration(e);
            }
            put.execute().await?;
        }
        Effect::KvDelete { key } => {
            kv::note_write(env, &key);
            store()?.delete(&key).await?;
        }
        Effect::KvIndex(write) => {
            let store = store()?;
            let key = write.identity.index_key();
            if write.writes(store.get(&key).text().await?.as_deref()) {
                kv::note_write(env, &key);
                let mut put = kv::put_text(&store, &key, &write.profile_id)?;
                if let Some(e) = write.expiration {
                    put = put.expiration(e);
                }
                put.execute().await?;
            }
        }
        Effect::KvUnindex { identity, leads_to } => {
            async {
                let store = store()?;
                let key = identity.index_key();
                if store.get(&key).text().await?.is_some_and(|p| leads_to.contains(&p)) {
                    kv::note_write(env, &identity.erased_key());
                    kv::mark_erased(&store, &identity).await?;
                    kv::note_write(env, &key);
                    store.delete(&key).await?;
                }
                Ok::<(), worker::Error>(())
            }
            .boxed_local()
            .await?
        }
        Effect::Call { profile_id, request, required } => {
            let reply = ask(env, &profile_id, &request).boxed_local().await?;
            if required && !matches!(reply, Reply::Restored { .. }) {
                return Err(worker::Error::RustError(format!("{profile_id} answered {}", reply.kind())));
            }
        }
        Effect::Experiments(outcomes) => {
            crate::edge::objects::experiments::record(env, &outcomes).boxed_local().await?
        }
        Effect::Index(message) => outlets::send(env, message).boxed_local().await?,
        Effect::IndexErase { profile_ids, at } => outlets::erase_now(env, &profile_ids, at).boxed_local().await?,
        Effect::DeliveriesForget { profile_ids } => outlets::forget_now(env, &profile_ids).boxed_local().await?,
        Effect::Enqueue(messages) => outlets::enqueue(env, &messages).boxed_local().await?,
        Effect::Suppressed(sends) => outlets::log_suppressed(env, &sends).boxed_local().await?,
        Effect::Export(messages) => outlets::export(env, messages).boxed_local().await?,
        Effect::ExportErase { people, at } => outlets::export_erase(env, &people, at).boxed_local().await?,
    }
    Ok(())
}
