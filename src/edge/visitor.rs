//! Who a page's request is about: the visitor preamble of every request a page makes for its own visitor
//! (decisions, summaries, impressions, edge delivery), written once. The signed cookie's id wins over a sent
//! `anonymousId`; a known user's profile is preferred over the anonymous one; naming a `userId` needs a server
//! credential (`auth::caller`).

use crate::core::model::consent::{permit_personalization, Permitted, RequestSignals};
use crate::core::model::identity::{Identity, ANONYMOUS_ID, USER_ID};
use crate::core::model::profile::Profile;
use crate::core::rules::Config;
use crate::edge::auth::caller;
use crate::edge::error::ApiError;
use crate::edge::objects::profile_client;
use crate::edge::request::{allowed_origin, signals};
use crate::edge::{cookie, kv};
use std::collections::BTreeMap;
use worker::{Env, Request};

/// A page's visitor, resolved: the origin to answer (CORS), the profile, and the request's signals.
pub struct Visitor {
    pub origin: Option<String>,
    pub profile: Option<Profile>,
    pub signals: RequestSignals,
}

impl Visitor {
    /// A request that names its visitor (`userId`, `anonymousId`, consent): its origin is checked, its caller
    /// proven (`auth::caller`, which may take consent from a credential), and the profile read.
    pub async fn resolve(
        req: &Request,
        env: &Env,
        config: &Config,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
        consent: &mut Option<BTreeMap<String, bool>>,
    ) -> Result<Visitor, ApiError> {
        let origin = allowed_origin(req, config)?;
        let cookie_id = caller(req, env, config, user_id, consent)?;
        let profile = profile_of(env, cookie_id.as_deref().or(anonymous_id), user_id).await?;
        Ok(Visitor { origin, profile, signals: signals(req, env, &config.consent) })
    }

    /// A page request proxied by edge delivery: only the signed cookie says who it is.
    pub async fn of_page(req: &Request, env: &Env, config: &Config) -> Result<Visitor, ApiError> {
        let cookie_id = cookie::secret(env).and_then(|s| cookie::id_from(req, &s));
        let profile = profile_of(env, cookie_id.as_deref(), None).await?;
        Ok(Visitor { origin: None, profile, signals: signals(req, env, &config.consent) })
    }

    /// The profile, when the visitor's consent allows personalization.
    pub fn permitted(&self, config: &Config, consent: Option<&BTreeMap<String, bool>>) -> Option<Permitted<&Profile>> {
        self.profile.as_ref().and_then(|p| permit_personalization(&config.consent, p, consent, &self.signals))
    }
}

/// The profile a visitor's ids lead to: the user's, else the anonymous one's.
async fn profile_of(env: &Env, anonymous_id: Option<&str>, user_id: Option<&str>) -> Result<Option<Profile>, ApiError> {
    let store = kv::store(env)?;
    let mut profile = None;
    if let Some(u) = user_id {
        profile = profile_client::current_of(env, &store, &Identity::new(USER_ID, u)).await?;
    }
    if profile.is_none() {
        if let Some(a) = anonymous_id {
            profile = profile_client::current_of(env, &store, &Identity::new(ANONYMOUS_ID, a)).await?;
        }
    }
    Ok(profile)
}
