//! A batch between its reads: what `POST /v1/batch`, the single-event endpoints and RudderStack's beacon do once
//! the body is read, as steps (`core::writer::client::Steps`) that the Rust Worker's route (`routes::collect`)
//! and the JavaScript shell (`edge::shell`) both carry out: the source authenticated and its origin checked, the
//! events parsed (`core::engine::ingest`), their identities resolved (`core::writer::resolve`), and each
//! profile's events applied by its writer, one profile after another. Who may call: any source with its write
//! key (a browser source from its listed origins) or server key.

use crate::core::base::time::Millis;
use crate::core::engine::apply::{ApplyAnswer, ApplyRequest};
use crate::core::engine::ingest::Batch;
use crate::core::engine::merge::Group;
use crate::core::model::consent::{Purpose, RequestSignals};
use crate::core::model::identity::ProfileIdKey;
use crate::core::rules::Config;
use crate::core::wire::events::CallType;
use crate::core::wire::{self};
use crate::core::writer::client::{Failed, Follow, Need, Steps};
use crate::core::writer::protocol::{Reply, Request as ObjectRequest};
use crate::core::writer::resolve::Resolving;
use crate::edge::clock::now;
use crate::edge::cookie;
use crate::edge::error::ApiError;
use crate::edge::http;
use crate::edge::kv::InForce;
use crate::edge::request::{identity_secrets, origin, server_key_from_browser, signals, signals_with_zone};
use crate::edge::visiting::Answer;
use serde_json::json;
use std::collections::BTreeSet;
use std::rc::Rc;
use worker::{Env, Request};

/// A batch on its way to its writers.
pub(crate) struct Collecting {
    /// The configuration version read, which an apply names to the profile's object (`kv::config_seen`).
    pub version: u64,
    config: Rc<Config>,
    /// The write key the source was authenticated by.
    key: String,
    batch: Batch,
    received: Millis,
    origin: Option<String>,
    /// The identity cookie's secret, and the id a valid cookie proves.
    secret: Option<Vec<u8>>,
    cookie_id: Option<String>,
    secrets: Vec<Vec<u8>>,
    ids: ProfileIdKey,
    signals: RequestSignals,
    stage: Stage,
}

enum Stage {
    Resolve(Resolving),
    Apply(Applying),
    Over(Option<Result<Answer, ApiError>>),
}

/// The profiles' writers, one after another.
struct Applying {
    /// The groups still to send, last first.
    rest: Vec<Group>,
    /// The group on its way: its request, its message ids, and its first anonymous id.
    current: Option<(Follow, Vec<String>, Option<String>)>,
    new_anonymous_ids: BTreeSet<String>,
    stored_anonymous_id: Option<String>,
    /// Why a writer could not be reached, once one could not.
    unavailable: Option<String>,
}

impl Collecting {
    /// `bytes`, sent to `POST /v1/batch` (`call` `None`) or a single-event endpoint, with `query_key` the write
    /// key a beacon sends in its URL (`/beacon/v1/batch?writeKey=...`), used when the request has no Basic auth.
    pub fn start(
        req: &Request,
        env: &Env,
        (version, config): InForce,
        call: Option<CallType>,
        query_key: Option<String>,
        bytes: &[u8],
    ) -> Result<Collecting, ApiError> {
        let received = now();
        let parsed = match call {
            None => wire::events::parse_batch(bytes, received),
            Some(call) => wire::events::parse_single(bytes, call, received),
        }
        .map_err(ApiError::Body)?;
        let header_key = req.headers().get("authorization")?.and_then(|h| wire::auth::write_key_from_basic_auth(&h));
        let from_query = header_key.is_none() && query_key.is_some();
        let key = header_key.or(query_key).or(parsed.write_key.clone()).ok_or(ApiError::Unauthorized {
            code: "missing_write_key",
            message: "send the write key as the Basic auth user name or as writeKey in the body",
        })?;
        let source = config
            .authenticate(&key)
            .ok_or(ApiError::Unauthorized { code: "invalid_write_key", message: "unknown write key" })?;
        let origin = origin(req);
        // URLs end up in logs and histories: a secret key there is a leaked key, so it is refused before use.
        if source.is_server() && from_query {
            return Err(ApiError::Forbidden {
                code: "server_key_in_url",
                message: "a server key must not travel in a URL: send it as the Basic auth user name".into(),
                path: "writeKey",
            });
        }
        if source.is_server() && crate::edge::request::from_browser(req) {
            return Err(server_key_from_browser(&source.id));
        }
        if let Some(o) = &origin {
            if !http::origin_allowed(req, o, |o| source.allows_origin(o)) {
                return Err(ApiError::Forbidden {
                    code: "origin_not_allowed",
                    message: format!("origin {o:?} is not allowed for source {:?}", source.id),
                    path: "",
                });
            }
        }
        // A valid first-party cookie is this browser's identity (core::engine::ingest says what follows from that).
        let secret = cookie::secret(env);
        let cookie_id = secret.as_deref().and_then(|s| cookie::id_from(req, s));
        let batch = Batch::prepare(parsed, call.is_some(), cookie_id.as_deref(), &config);
        // The visitor's time zone matters only to journeys (quiet hours, local-time windows): without any, the
        // runtime's `Intl` is not asked.
        let signals = if config.journeys.is_empty() {
            signals(req, env, &config.consent)
        } else {
            signals_with_zone(req, env, &config.consent)
        };
        let ids = crate::edge::request::profile_id_key(env)?;
        let stage = Stage::Resolve(Resolving::new(batch.identities_to_resolve()));
        let mut c = Collecting {
            version,
            config,
            key,
            batch,
            received,
            origin,
            secret,
            cookie_id,
            secrets: identity_secrets(env),
            ids,
            signals,
            stage,
        };
        c.after(Ok(()));
        Ok(c)
    }

    /// Once `need` is `Done`: the answer, or why there is none.
    pub fn into_answer(self) -> Result<Answer, ApiError> {
        match self.stage {
            Stage::Over(Some(result)) => result,
            _ => Err(ApiError::Unavailable("a batch was finished before its reads were done".into())),
        }
    }

    /// A read or a call that failed: a writer that could not be reached leaves the other profiles' events to be
    /// stored (the batch still fails afterwards, so that the sender retries); anything else ends the batch.
    pub fn fail(&mut self, e: ApiError) {
        match (&mut self.stage, e) {
            (Stage::Apply(a), ApiError::Unavailable(detail)) if a.current.is_some() => {
                a.current = None;
                a.unavailable.get_or_insert(detail);
                self.after(Ok(()));
            }
            (_, e) => self.stage = Stage::Over(Some(Err(e))),
        }
    }

    /// The identities are resolved: the events admitted and planned into one group per profile.
    fn plan(&mut self, r: Resolving) {
        let (index, erased) = r.found();
        let Some(source) = self.config.authenticate(&self.key) else {
            return self.fail(ApiError::Unavailable("the source left the configuration".into()));
        };
        let secrets: Vec<&[u8]> = self.secrets.iter().map(Vec::as_slice).collect();
        self.batch.admit(source, &secrets, &index, &erased, self.received);
        // The cookie is for an id this browser owns: one a valid cookie already proves, or one the request made.
        let new_anonymous_ids = self.batch.new_anonymous_ids(&index);
        let mut rest = self.batch.plan(&index, &self.config, &self.ids);
        rest.reverse();
        let applying =
            Applying { rest, current: None, new_anonymous_ids, stored_anonymous_id: None, unavailable: None };
        self.stage = Stage::Apply(applying);
    }

    /// A writer's answer for the group on its way.
    fn applied(&mut self, answer: ApplyAnswer) {
        let Stage::Apply(a) = &mut self.stage else { return };
        let Some((_, message_ids, first_anonymous)) = a.current.take() else { return };
        let erased = "this person was erased moments ago; events sent before the erasure are not kept";
        self.batch.refuse_unkept(&message_ids, &answer, erased, "event");
        if answer.stored > 0 && a.stored_anonymous_id.is_none() {
            a.stored_anonymous_id =
                first_anonymous.filter(|id| self.cookie_id.as_ref() == Some(id) || a.new_anonymous_ids.contains(id));
        }
    }

    /// Moves on after a step: the resolution done is planned, the next group is sent, and the last one's answer
    /// makes the batch's.
    fn after(&mut self, step: Result<(), ApiError>) {
        if let Err(e) = step {
            return self.fail(e);
        }
        if let Stage::Resolve(r) = &self.stage {
            if !matches!(r.need(), Need::Done) {
                return;
            }
            let Stage::Resolve(r) = std::mem::replace(&mut self.stage, Stage::Over(None)) else { return };
            self.plan(r);
        }
        let Stage::Apply(a) = &mut self.stage else { return };
        if a.current.is_some() {
            return;
        }
        // Each profile's events are applied on their own: one writer failing never keeps the others' events from
        // being stored. The request still fails afterwards, so that the sender retries; what was stored counts
        // once (message ids), and the rest gets its chance.
        if let Some(Group { profile_id, events, links }) = a.rest.pop() {
            let first_anonymous = events.iter().find_map(|e| e.anonymous_id.clone());
            let message_ids = events.iter().map(|e| e.message_id.clone()).collect();
            let signals = self.signals.clone();
            let request = ApplyRequest { profile_id, signals, events, links, ..ApplyRequest::default() };
            let follow = Follow::new(&request.profile_id.clone(), ObjectRequest::Apply(request));
            a.current = Some((follow, message_ids, first_anonymous));
            return;
        }
        let result = match a.unavailable.take() {
            Some(detail) => Err(ApiError::Unavailable(detail)),
            None => Ok(self.answer()),
        };
        self.stage = Stage::Over(Some(result));
    }

    /// The batch's answer: what was refused and what stays unverified, and the identity cookie.
    fn answer(&mut self) -> Answer {
        let Stage::Apply(a) = &self.stage else { return Answer::of(&json!({"success": true}), None, None) };
        // A CMP whose cookie now refuses analytics withdraws it as an event would: the identity cookie goes,
        // unless an event itself granted analytics and was stored.
        let refused_by_cmp = self.signals.tcf.as_ref().is_some_and(|t| t.prefs.get(Purpose::Analytics) == Some(false));
        let withdrawn = self.batch.withdrawn || refused_by_cmp;
        let stored_anonymous_id = a.stored_anonymous_id.clone();
        let (rejected, unverified) = std::mem::take(&mut self.batch).finish();
        let listed = |rs: &[wire::Rejection]| -> serde_json::Value {
            rs.iter().map(|r| json!({"index": r.index, "code": r.code, "message": r.message, "path": r.path})).collect()
        };
        let mut answer = json!({"success": true});
        if !rejected.is_empty() {
            answer["rejected"] = listed(&rejected);
        }
        if !unverified.is_empty() {
            answer["unverified"] = listed(&unverified);
        }
        // Only browsers get the cookie (server-side sources send no Origin), and only once consent let something
        // be stored; a withdrawal of analytics removes it.
        let mut set_cookie = None;
        if let (Some(secret), Some(_)) = (&self.secret, &self.origin) {
            if let Some(id) = stored_anonymous_id.as_ref().or(self.cookie_id.as_ref().filter(|_| !withdrawn)) {
                if let Some(header) = cookie::set(secret, id) {
                    answer["anonymousId"] = json!(id);
                    set_cookie = Some(header);
                }
            } else if withdrawn && self.cookie_id.is_some() {
                set_cookie = Some(cookie::clear());
            }
        }
        Answer::of(&answer, self.origin.clone(), set_cookie)
    }
}

impl Steps for Collecting {
    type Error = ApiError;

    fn need(&self) -> Need<'_> {
        match &self.stage {
            Stage::Resolve(r) => r.need(),
            Stage::Apply(Applying { current: Some((f, ..)), .. }) => Need::Object(f),
            Stage::Apply(_) | Stage::Over(_) => Need::Done,
        }
    }

    fn text(&mut self, _value: Option<String>) {}

    fn bytes(&mut self, _value: Option<&[u8]>) -> Result<(), ApiError> {
        Ok(())
    }

    fn answer(&mut self, status: u16, bytes: &[u8]) -> Result<(), ApiError> {
        let Stage::Apply(Applying { current: Some((f, ..)), .. }) = &mut self.stage else { return Ok(()) };
        match f.answer(status, bytes) {
            Ok(None) => {}
            Ok(Some(Reply::Applied(answer))) => self.applied(answer),
            Ok(Some(other)) => self.fail(Failed::unexpected(&other).into()),
            Err(f) => self.fail(f.into()),
        }
        self.after(Ok(()));
        Ok(())
    }

    fn texts(&mut self, values: Vec<Option<String>>) -> Result<(), ApiError> {
        if let Stage::Resolve(r) = &mut self.stage {
            let step = r.texts(values).map_err(ApiError::from);
            self.after(step);
        }
        Ok(())
    }

    fn replies(&mut self, answers: Vec<(u16, Vec<u8>)>) -> Result<(), ApiError> {
        if let Stage::Resolve(r) = &mut self.stage {
            let step = r.replies(answers).map_err(ApiError::from);
            self.after(step);
        }
        Ok(())
    }
}
