//! The first-party identity cookie: the anonymous id, signed, set by the Worker itself.
//!
//! Script-written storage is capped at 7 days by Safari; an `HttpOnly` cookie set by the site's own server is
//! not. The cookie is only set when a stored event shows that consent allows analytics, and cleared when a
//! request withdraws it. It is signed with `EDGECDP_COOKIE_SECRET`, so a forged or guessed id is ignored.

use crate::core::model::identity::{cookie_safe, sign_id, verify_signed_id};
use worker::{Env, Request};

pub const NAME: &str = "edgecdp_aid";
/// 400 days, the longest lifetime browsers accept for a cookie.
const MAX_AGE_SECONDS: u64 = 400 * 24 * 60 * 60;
/// Shorter secrets are refused: they could be guessed, and with them every visitor's cookie forged.
pub const MIN_SECRET_BYTES: usize = 16;

/// The signing key, when one is configured.
pub fn secret(env: &Env) -> Option<Vec<u8>> {
    let s = env.var("EDGECDP_COOKIE_SECRET").map(|v| v.to_string()).unwrap_or_default();
    if s.len() >= MIN_SECRET_BYTES {
        Some(s.into_bytes())
    } else {
        if !s.is_empty() {
            worker::console_error!("EDGECDP_COOKIE_SECRET is shorter than {MIN_SECRET_BYTES} bytes; no cookie is set");
        }
        None
    }
}

/// The values the request's `Cookie` header gives the cookie `name`, in order (a browser may send several).
pub fn values(req: &Request, name: &str) -> Vec<String> {
    let header = req.headers().get("cookie").ok().flatten().unwrap_or_default();
    header
        .split(';')
        .filter_map(|part| part.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// The anonymous id of a valid cookie on the request, if any.
pub fn id_from(req: &Request, secret: &[u8]) -> Option<String> {
    values(req, NAME).iter().find_map(|v| verify_signed_id(secret, v))
}

/// `Set-Cookie` for an id; `None` when the id cannot travel in a cookie.
pub fn set(secret: &[u8], id: &str) -> Option<String> {
    cookie_safe(id).then(|| {
        format!("{NAME}={}; Max-Age={MAX_AGE_SECONDS}; Path=/; HttpOnly; Secure; SameSite=Lax", sign_id(secret, id))
    })
}

/// `Set-Cookie` that removes the cookie.
pub fn clear() -> String {
    format!("{NAME}=; Max-Age=0; Path=/; HttpOnly; Secure; SameSite=Lax")
}
