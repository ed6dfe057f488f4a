//! The Cloudflare Worker shell: turns HTTP requests into core calls and core results into HTTP responses.
//!
//! It owns everything the core must not do: reading the clock, KV and Durable Object I/O, headers and
//! cookies. Routes follow `schema/openapi.json`; errors become responses in `crate::edge::error::ApiError::into_response` only.

mod audiences;
mod auth;
mod clock;
mod collecting;
mod cookie;
mod deliveries;
mod delivery;
mod error;
mod export;
mod http;
mod imports;
mod ingest;
mod kv;
mod objects;
mod outlets;
mod predictions;
mod request;
mod routes;
mod shell;
mod visiting;
mod visitor;

use crate::core::engine::delivery::HOP_HEADER;
use crate::core::wire::events::CallType;
use crate::edge::error::{json_response, ApiError, ApiResult};
use crate::edge::request::query_param;
use crate::edge::routes::audiences::{audience_export, audience_history, audience_members, audiences_list};
use crate::edge::routes::collect::{collect, rudderstack_source_config, segment_settings};
use crate::edge::routes::config::{config_get, config_put, config_validate, config_version, config_versions};
use crate::edge::routes::console;
use crate::edge::routes::decide::{decide_get, decide_post, decide_summary, impressions_post};
use crate::edge::routes::demo::demo_identity_token;
use crate::edge::routes::destinations::destinations_stats;
use crate::edge::routes::docs;
use crate::edge::routes::experiments::experiment_stats;
use crate::edge::routes::imports as import_routes;
use crate::edge::routes::profiles::{profile_delete, profile_get, profile_preview, profile_split};
use futures_util::FutureExt;
use serde_json::json;
use worker::{event, Context, Env, Method, Request, Response};

pub use objects::config::ConfigObject;
pub use objects::experiments::ExperimentObject;
pub use objects::guard::GuardObject;
pub use objects::profile::ProfileObject;

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    match route(req, &env).await {
        Ok(resp) => Ok(resp),
        Err(e) => e.into_response(),
    }
}

/// The Worker's own resources, each path written once. Which methods a resource answers is `route`'s match: a
/// known resource asked with another method is 405, and any other `/v1/...` path is 404.
/// The queue consumers: journeys' deliveries (`edge::deliveries::consume`), import chunks (`edge::imports`), the
/// export (`edge::export::consume`) and the audience index (`edge::audiences::consume`).
#[event(queue)]
async fn queue(batch: worker::MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    if batch.queue() == deliveries::QUEUE_NAME {
        deliveries::consume(batch, env).boxed_local().await
    } else if batch.queue() == imports::QUEUE_NAME {
        imports::consume(batch, env).boxed_local().await
    } else if batch.queue() == export::QUEUE_NAME {
        export::consume(batch, env).boxed_local().await
    } else {
        audiences::consume(batch, env).boxed_local().await
    }
}

/// The cron (`wrangler.toml`): import chunks whose queue message was lost go to the queue again, erased people's
/// rows leave the export's files (`export::purge`), recent partitions' manifests are written again, and the
/// predictions' model is fitted again when it is older than `predictions.refit` (`predictions::maybe_fit`).
#[event(scheduled)]
async fn scheduled(_event: worker::ScheduledEvent, env: Env, _ctx: worker::ScheduleContext) {
    if let Err(e) = imports::requeue_stale(&env).await {
        worker::console_error!("import requeue: {e:?}");
    }
    if let Err(e) = export::purge(&env).await {
        worker::console_error!("export purge: {e:?}");
    }
    if let Err(e) = export::refresh_manifests(&env).await {
        worker::console_error!("export manifests: {e:?}");
    }
    if let Err(e) = predictions::maybe_fit(&env).await {
        worker::console_error!("predictions fit: {e:?}");
    }
}

#[derive(Clone, Copy, Debug)]
enum Resource<'a> {
    Healthz,
    /// `POST /v1/batch` (or `/v1/b`), or a single-event endpoint (`/v1/track`, ... or `/v1/t`, ...).
    Collect(Option<CallType>),
    Decide,
    DecideSummary,
    Impressions,
    DemoToken,
    Profile(&'a str),
    ProfileExport(&'a str),
    ProfileSplit(&'a str),
    /// `POST /v1/profiles/{key}/preview`: what the person would be shown, explained.
    ProfilePreview(&'a str),
    /// `/v1/session`: the console's sign-in (`POST`), its CSRF token (`GET`) and sign-out (`DELETE`).
    Session,
    /// `/console` and what is under it: the marketer's console (static assets, served with a strict CSP).
    Console,
    Experiment(&'a str),
    Audiences,
    AudienceMembers(&'a str),
    AudienceExport(&'a str),
    AudienceHistory(&'a str),
    /// `GET /v1/destinations`: journeys' delivery statistics per destination.
    Destinations,
    /// `POST /v1/imports` and `GET /v1/imports`: import jobs (`routes::imports`).
    Imports,
    Import(&'a str),
    ImportRejects(&'a str),
    ImportCancel(&'a str),
    /// `GET /v1/journeys`: people per step and exits by reason, per journey.
    Journeys,
    /// `GET /v1/export` and `GET /v1/export/file?key=…`: the export's files (`routes::export`).
    Export,
    ExportFile,
    /// `GET /v1/predictions` and `POST /v1/predictions/fit`: the model versions (`routes::predictions`).
    Predictions,
    PredictionsFit,
    Config,
    /// `POST /v1/config/validate`: `PUT /v1/config`'s checks, storing nothing.
    ConfigValidate,
    /// `GET /v1/config/versions` and `.../versions/{n}`: the configuration's history.
    ConfigVersions,
    ConfigVersion(&'a str),
    /// `GET /v1/config/schema`: the configuration's JSON Schema (`schema/config.schema.json`).
    ConfigSchema,
    /// `GET /v1/openapi.json`: the OpenAPI document of every route (`schema/openapi.json`).
    OpenApi,
    /// `GET /v1/projects/{writeKey}/settings`: Segment's analytics.js settings, pointing at this Worker.
    SegmentSettings(&'a str),
    /// `GET /sourceConfig/?writeKey=...`: RudderStack's JavaScript SDK's source configuration (its `configUrl`).
    RudderStackConfig,
    /// `POST /beacon/v1/batch?writeKey=...`: RudderStack's JavaScript SDK's batches sent with `navigator.sendBeacon`.
    Beacon,
}

impl<'a> Resource<'a> {
    fn of(segments: &[&'a str]) -> Option<Resource<'a>> {
        Some(match segments {
            ["healthz"] => Resource::Healthz,
            // `/v1/b` is where analytics.js's batching posts.
            ["v1", "batch" | "b"] => Resource::Collect(None),
            ["v1", call] if CallType::from_path(call).is_some() => Resource::Collect(CallType::from_path(call)),
            ["v1", "decide"] => Resource::Decide,
            ["v1", "decide", "summary"] => Resource::DecideSummary,
            ["v1", "impressions"] => Resource::Impressions,
            ["v1", "demo", "identity-token"] => Resource::DemoToken,
            ["v1", "profiles", key] => Resource::Profile(key),
            ["v1", "profiles", key, "export"] => Resource::ProfileExport(key),
            ["v1", "profiles", key, "split"] => Resource::ProfileSplit(key),
            ["v1", "profiles", key, "preview"] => Resource::ProfilePreview(key),
            ["v1", "session"] => Resource::Session,
            ["console", ..] => Resource::Console,
            ["v1", "experiments", id] => Resource::Experiment(id),
            ["v1", "audiences"] => Resource::Audiences,
            ["v1", "audiences", id, "members"] => Resource::AudienceMembers(id),
            ["v1", "audiences", id, "export"] => Resource::AudienceExport(id),
            ["v1", "audiences", id, "history"] => Resource::AudienceHistory(id),
            ["v1", "destinations"] => Resource::Destinations,
            ["v1", "imports"] => Resource::Imports,
            ["v1", "imports", id] => Resource::Import(id),
            ["v1", "imports", id, "rejects"] => Resource::ImportRejects(id),
            ["v1", "imports", id, "cancel"] => Resource::ImportCancel(id),
            ["v1", "journeys"] => Resource::Journeys,
            ["v1", "export"] => Resource::Export,
            ["v1", "export", "file"] => Resource::ExportFile,
            ["v1", "predictions"] => Resource::Predictions,
            ["v1", "predictions", "fit"] => Resource::PredictionsFit,
            ["v1", "config"] => Resource::Config,
            ["v1", "config", "validate"] => Resource::ConfigValidate,
            ["v1", "config", "schema"] => Resource::ConfigSchema,
            ["v1", "config", "versions"] => Resource::ConfigVersions,
            ["v1", "config", "versions", n] => Resource::ConfigVersion(n),
            ["v1", "openapi.json"] => Resource::OpenApi,
            ["v1", "projects", key, "settings"] => Resource::SegmentSettings(key),
            ["sourceConfig"] => Resource::RudderStackConfig,
            ["beacon", "v1", "batch"] => Resource::Beacon,
            _ => return None,
        })
    }

    /// What `route` answers for it, for the `Allow` header of a 405 (written beside the match it describes).
    fn methods(self) -> &'static str {
        match self {
            Resource::Healthz => "GET",
            Resource::Decide => "GET, POST, OPTIONS",
            Resource::Profile(_) => "GET, DELETE, OPTIONS",
            Resource::Config => "GET, PUT, OPTIONS",
            Resource::Session => "GET, POST, DELETE, OPTIONS",
            Resource::Console => "GET",
            Resource::Collect(_)
            | Resource::Impressions
            | Resource::DemoToken
            | Resource::ProfileSplit(_)
            | Resource::ProfilePreview(_)
            | Resource::ConfigValidate
            | Resource::ImportCancel(_)
            | Resource::PredictionsFit
            | Resource::Beacon => "POST, OPTIONS",
            Resource::Imports => "GET, POST, OPTIONS",
            Resource::DecideSummary
            | Resource::ProfileExport(_)
            | Resource::Experiment(_)
            | Resource::Audiences
            | Resource::AudienceMembers(_)
            | Resource::AudienceExport(_)
            | Resource::AudienceHistory(_)
            | Resource::Destinations
            | Resource::Import(_)
            | Resource::ImportRejects(_)
            | Resource::Journeys
            | Resource::Export
            | Resource::ExportFile
            | Resource::Predictions
            | Resource::ConfigVersions
            | Resource::ConfigVersion(_)
            | Resource::ConfigSchema
            | Resource::OpenApi
            | Resource::SegmentSettings(_)
            | Resource::RudderStackConfig => "GET, OPTIONS",
        }
    }

    /// Whether pages call it, so that a CORS preflight is answered; profiles, experiments and the configuration
    /// are for servers and operators, and never readable from a browser origin.
    fn for_pages(self) -> bool {
        matches!(
            self,
            Resource::Collect(_)
                | Resource::Decide
                | Resource::DecideSummary
                | Resource::Impressions
                | Resource::DemoToken
                | Resource::SegmentSettings(_)
                | Resource::RudderStackConfig
                | Resource::Beacon
        )
    }
}

async fn route(req: Request, env: &Env) -> ApiResult {
    let path = req.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let Some(resource) = Resource::of(&segments) else {
        if segments.first() == Some(&"v1") {
            return Err(ApiError::NotFound { code: "not_found", message: format!("no route for {path}") });
        }
        // Everything else reaches the Worker only when it is not a static asset (see wrangler.toml): proxied to
        // the site's origin when the configuration's `delivery` covers it.
        let (_, config) = kv::config(env).await?;
        return match &config.delivery {
            // The Worker reached itself through the origin (an origin that resolves to this Worker): stop.
            Some(d) if d.proxies(&path) && req.headers().has(HOP_HEADER)? => {
                Err(ApiError::LoopDetected(format!("delivery.origin {} leads back to this Worker", d.origin)))
            }
            Some(d) if d.proxies(&path) => match crate::core::engine::delivery::refused_path(&path) {
                // Refused before matching counts: an origin that decodes the path again could be led out of the
                // proxied directory (`/shop/..%2f..%2fprivate`).
                Some(why) => {
                    Err(ApiError::BadRequest { code: "invalid_path", message: why.into(), path: "path".into() })
                }
                None => delivery::proxy(req, env, &config, d).boxed_local().await,
            },
            _ => Err(ApiError::NotFound { code: "not_found", message: format!("no route for {path}") }),
        };
    };
    // workers-rs reads any method it does not know (`QUERY`, `FOO`) as GET; such a request must not be served as one.
    let raw = req.inner().method();
    if !matches!(raw.as_str(), "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") {
        return Err(ApiError::MethodNotAllowed(resource.methods()));
    }
    // Each route's future is boxed: awaited in place, every route's state machine was inlined into one function
    // (168 KB of Wasm), which V8 compiled whole on a new isolate's first request, whichever route it asked for.
    // Boxed, each route is its own function, compiled when first called (BENCHMARKS.md, "Cold start").
    match (req.method(), resource) {
        (Method::Get, Resource::Healthz) => {
            Ok(json_response(200, &json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))?)
        }
        (Method::Options, r) if !matches!(r, Resource::Healthz) => {
            let (_, config) = kv::config(env).boxed_local().await?;
            http::preflight(&req, &config, r.for_pages(), r.methods())
        }
        (Method::Post, Resource::Collect(call)) => collect(req, env, call, None).boxed_local().await,
        (Method::Post, Resource::Beacon) => {
            // A beacon carries no headers of its own: its write key comes in the query.
            let key = query_param(&req, "writeKey")?;
            collect(req, env, None, key).boxed_local().await
        }
        (Method::Get, Resource::RudderStackConfig) => rudderstack_source_config(req, env).boxed_local().await,
        (Method::Post, Resource::Decide) => decide_post(req, env).boxed_local().await,
        (Method::Get, Resource::Decide) => decide_get(req, env).boxed_local().await,
        (Method::Get, Resource::DecideSummary) => decide_summary(req, env).boxed_local().await,
        (Method::Post, Resource::Impressions) => impressions_post(req, env).boxed_local().await,
        (Method::Post, Resource::DemoToken) => demo_identity_token(req, env).boxed_local().await,
        (Method::Get, Resource::Profile(key)) => profile_get(req, env, key, false).boxed_local().await,
        (Method::Get, Resource::ProfileExport(key)) => profile_get(req, env, key, true).boxed_local().await,
        (Method::Delete, Resource::Profile(key)) => profile_delete(req, env, key).boxed_local().await,
        (Method::Post, Resource::ProfileSplit(key)) => profile_split(req, env, key).boxed_local().await,
        (Method::Post, Resource::ProfilePreview(key)) => profile_preview(req, env, key).boxed_local().await,
        (Method::Post, Resource::Session) => crate::edge::auth::sign_in(req, env).boxed_local().await,
        (Method::Get, Resource::Session) => crate::edge::auth::session_get(req, env).boxed_local().await,
        (Method::Delete, Resource::Session) => crate::edge::auth::sign_out(req, env).boxed_local().await,
        (Method::Get, Resource::Console) => console::console(&req, env).boxed_local().await,
        (Method::Get, Resource::Experiment(id)) => experiment_stats(req, env, id).boxed_local().await,
        (Method::Get, Resource::Audiences) => audiences_list(req, env).boxed_local().await,
        (Method::Get, Resource::AudienceMembers(id)) => audience_members(req, env, id).boxed_local().await,
        (Method::Get, Resource::AudienceExport(id)) => audience_export(req, env, id).boxed_local().await,
        (Method::Get, Resource::AudienceHistory(id)) => audience_history(req, env, id).boxed_local().await,
        (Method::Get, Resource::Destinations) => destinations_stats(req, env).boxed_local().await,
        (Method::Post, Resource::Imports) => import_routes::imports_post(req, env).boxed_local().await,
        (Method::Get, Resource::Imports) => import_routes::imports_list(req, env).boxed_local().await,
        (Method::Get, Resource::Import(id)) => import_routes::import_get(req, env, id).boxed_local().await,
        (Method::Get, Resource::ImportRejects(id)) => import_routes::import_rejects(req, env, id).boxed_local().await,
        (Method::Post, Resource::ImportCancel(id)) => import_routes::import_cancel(req, env, id).boxed_local().await,
        (Method::Get, Resource::Journeys) => {
            crate::edge::routes::journeys::journeys_stats(req, env).boxed_local().await
        }
        (Method::Get, Resource::Export) => crate::edge::routes::export::export_summary(req, env).boxed_local().await,
        (Method::Get, Resource::ExportFile) => crate::edge::routes::export::export_file(req, env).boxed_local().await,
        (Method::Get, Resource::Predictions) => {
            crate::edge::routes::predictions::predictions_list(req, env).boxed_local().await
        }
        (Method::Post, Resource::PredictionsFit) => {
            crate::edge::routes::predictions::predictions_fit(req, env).boxed_local().await
        }
        (Method::Get, Resource::Config) => config_get(req, env).boxed_local().await,
        (Method::Put, Resource::Config) => config_put(req, env).boxed_local().await,
        (Method::Post, Resource::ConfigValidate) => config_validate(req, env).boxed_local().await,
        (Method::Get, Resource::ConfigVersions) => config_versions(req, env).boxed_local().await,
        (Method::Get, Resource::ConfigVersion(n)) => config_version(req, env, n).boxed_local().await,
        (Method::Get, Resource::ConfigSchema) => docs::config_schema(env).boxed_local().await,
        (Method::Get, Resource::OpenApi) => docs::openapi(env).boxed_local().await,
        (Method::Get, Resource::SegmentSettings(key)) => segment_settings(req, env, key).boxed_local().await,
        _ => Err(ApiError::MethodNotAllowed(resource.methods())),
    }
}
