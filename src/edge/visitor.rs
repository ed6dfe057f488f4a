//! Who a page's request is about: the visitor preamble of every request a page makes for its own visitor
//! (decisions, summaries, impressions, edge delivery), written once. The signed cookie's id wins over a sent
//! `anonymousId`; a known user's profile is preferred over the anonymous one; naming a `userId` needs a server
//! credential (`auth::caller`).

use crate::core::model::consent::{permit_personalization, Permitted, RequestSignals};
use crate::core::model::identity::{Identity, ANONYMOUS_ID, USER_ID};
use crate::core::model::profile::Profile;
use crate::core::rules::Config;
use crate::edge::auth::caller;
use crate::edge::cookie;
use crate::edge::error::ApiError;
use crate::edge::objects::profile_client;
use crate::edge::request::{allowed_origin, signals};
use std::collections::BTreeMap;
use worker::{Env, Request};

/// A page's visitor, resolved: the origin to answer (CORS), the profile, and the request's signals.
pub struct Visitor {
    pub origin: Option<String>,
    pub profile: Option<Profile>,
    pub signals: RequestSignals,
}

impl Visitor {
    /// A request that names its visitor (`userId`, `anonymousId`, consent): its origin is checked and its caller
    /// proven (`auth::caller`, which may take consent from a credential). The visitor without their profile, and
    /// the identities whose profile it is (`identities`), which the caller looks up (`visiting::Deciding`).
    pub fn name(
        req: &Request,
        env: &Env,
        config: &Config,
        user_id: Option<&str>,
        anonymous_id: Option<&str>,
        consent: &mut Option<BTreeMap<String, bool>>,
    ) -> Result<(Visitor, Vec<Identity>), ApiError> {
        let origin = allowed_origin(req, config)?;
        let cookie_id = caller(req, env, config, user_id, consent)?;
        let identities = identities(cookie_id.as_deref().or(anonymous_id), user_id);
        Ok((Visitor { origin, profile: None, signals: signals(req, env, &config.consent) }, identities))
    }

    /// A page request proxied by edge delivery: only the signed cookie says who it is.
    pub async fn of_page(req: &Request, env: &Env, config: &Config) -> Result<Visitor, ApiError> {
        let cookie_id = cookie::secret(env).and_then(|s| cookie::id_from(req, &s));
        let profile = profile_client::lookup(env, identities(cookie_id.as_deref(), None)).await?;
        Ok(Visitor { origin: None, profile, signals: signals(req, env, &config.consent) })
    }

    /// The profile, when the visitor's consent allows personalization.
    pub fn permitted(&self, config: &Config, consent: Option<&BTreeMap<String, bool>>) -> Option<Permitted<&Profile>> {
        self.profile.as_ref().and_then(|p| permit_personalization(&config.consent, p, consent, &self.signals))
    }
}

/// The identities a visitor's ids name, in the order their profiles are preferred: the user's, then the
/// anonymous one's.
pub fn identities(anonymous_id: Option<&str>, user_id: Option<&str>) -> Vec<Identity> {
    let user = user_id.map(|u| Identity::new(USER_ID, u));
    user.into_iter().chain(anonymous_id.map(|a| Identity::new(ANONYMOUS_ID, a))).collect()
}
