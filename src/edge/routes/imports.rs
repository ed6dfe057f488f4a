//! `/v1/imports`: import jobs (`edge::imports`). Who may call: a server source by its key (Basic auth user name,
//! or bearer), for its own jobs; the admin token or a console session, for every job (an admin's job belongs to
//! `?source=`, else `admin`). A browser source's key is refused (403): it is public.

use crate::core::base::url::query_pairs;
use crate::core::wire::import_jobs as jobs;
use crate::core::wire::imports::{Declaration, Format};
use crate::core::wire::BodyError;
use crate::edge::auth::{importer, Importer};
use crate::edge::clock::now;
use crate::edge::error::{json_response, ApiError, ApiResult};
use crate::edge::imports::{self, db};
use crate::edge::kv;
use crate::edge::outlets::{rows, run};
use crate::edge::request::{body, query, query_param};
use serde_json::{json, Value as J};
use worker::{Env, Request, Response};

/// The largest JSON body naming a file already in R2.
const MAX_DECLARATION_BYTES: usize = 64 * 1024;

/// `POST /v1/imports`: a file streamed in the body (its declaration in the query), or a JSON body naming a file
/// already in the imports bucket. Answers 202 with the job.
pub(crate) async fn imports_post(mut req: Request, env: &Env) -> ApiResult {
    let (_, config) = kv::config(env).await?;
    let who = importer(&req, env, &config).await?;
    let source = match &who {
        Importer::Source(id) => id.clone(),
        Importer::Admin => {
            query_param(&req, "source")?.filter(|s| !s.is_empty() && s.len() <= 64).unwrap_or("admin".into())
        }
    };
    let content_type = req.headers().get("content-type")?;
    let at = now();
    let json_body = content_type
        .as_deref()
        .is_some_and(|c| c.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json"));
    let decl = if json_body {
        Declaration::of_json(&body(&mut req, MAX_DECLARATION_BYTES).await?, &config, at)
    } else {
        if content_type.as_deref().and_then(Format::of_content_type).is_none() {
            return Err(ApiError::UnsupportedMediaType(content_type.unwrap_or_default()));
        }
        // The runtime's own URL, split without a URL parser (`base::url`): `Request::url` links one, with IDNA.
        let query: Vec<(String, String)> = query_pairs(&query(&req)).collect();
        Declaration::of_upload(content_type.as_deref(), &query, &config, at)
    }
    .map_err(ApiError::Body)?;
    let job = imports::create(&mut req, env, decl, &source).await?;
    let mut resp = json_response(202, &job)?;
    resp.headers_mut().set("location", &format!("/v1/imports/{}", job["id"].as_str().unwrap_or_default()))?;
    Ok(resp)
}

/// `GET /v1/imports`: the newest 50 jobs the caller may see.
pub(crate) async fn imports_list(req: Request, env: &Env) -> ApiResult {
    let (_, config) = kv::config(env).await?;
    let source = match importer(&req, env, &config).await? {
        Importer::Admin => String::new(),
        Importer::Source(id) => id,
    };
    let db = db(env).await?;
    let list: Vec<J> = rows(&db, &jobs::jobs(&source)).await?.iter().map(|r| jobs::job_json(r, now())).collect();
    Ok(json_response(200, &json!({"imports": list}))?)
}

/// The job `id`, when the caller may see it.
async fn visible(req: &Request, env: &Env, id: &str) -> Result<J, ApiError> {
    let (_, config) = kv::config(env).await?;
    let who = importer(req, env, &config).await?;
    let not_found = || ApiError::NotFound { code: "import_not_found", message: format!("no import job {id:?}") };
    let well_formed = id.len() == 36 && id.starts_with("imp_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err(not_found());
    }
    let job = imports::job(&db(env).await?, id).await?.ok_or_else(not_found)?;
    if !who.sees(job["source"].as_str().unwrap_or_default()) {
        return Err(ApiError::Forbidden {
            code: "import_of_another_source",
            message: "this job belongs to another source; its key (or the admin token) reads it".into(),
            path: "",
        });
    }
    Ok(job)
}

/// `GET /v1/imports/{id}`: the job's state, counts, speed and first rejected rows.
pub(crate) async fn import_get(req: Request, env: &Env, id: &str) -> ApiResult {
    Ok(json_response(200, &visible(&req, env, id).await?)?)
}

/// `GET /v1/imports/{id}/rejects`: every rejected row kept, as NDJSON, read from D1 a page at a time.
pub(crate) async fn import_rejects(req: Request, env: &Env, id: &str) -> ApiResult {
    visible(&req, env, id).await?;
    let db = db(env).await?;
    let mut out = String::new();
    let mut after = 0;
    loop {
        let page = rows(&db, &jobs::rejects(id, after, 1000)).await?;
        for r in &page {
            out.push_str(&jobs::reject_json(r).to_string());
            out.push('\n');
            after = r.first().and_then(J::as_i64).unwrap_or(after);
        }
        if page.len() < 1000 {
            break;
        }
    }
    let mut resp = Response::from_bytes(out.into_bytes())?;
    let headers = resp.headers_mut();
    headers.set("content-type", "application/x-ndjson")?;
    headers.set("content-disposition", &format!("attachment; filename=\"{id}-rejects.ndjson\""))?;
    headers.set("cache-control", "no-store")?;
    Ok(resp)
}

/// `POST /v1/imports/{id}/cancel`: a running job stops before its next batch of rows (what was applied stays).
pub(crate) async fn import_cancel(req: Request, env: &Env, id: &str) -> ApiResult {
    let job = visible(&req, env, id).await?;
    if !matches!(job["state"].as_str(), Some(jobs::UPLOADING | jobs::RUNNING)) {
        return Err(ApiError::Conflict {
            code: "import_finished",
            message: format!("the job has ended ({}); there is nothing to cancel", job["state"]),
        });
    }
    let db = db(env).await?;
    run(&db, &jobs::cancel(id, now())).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let job = imports::job(&db, id).await?.ok_or(ApiError::Body(BodyError::NotJson(String::new())))?;
    Ok(json_response(200, &job)?)
}
