//! The identity lookups an import's batch needs before its writers run (`core::writer::resolve`: the identity
//! index, the erasure marks of identities it no longer knows, and where several profiles live now), carried out by
//! the Rust Worker. Collection runs the same steps inside its own (`edge::collecting`).

use crate::core::engine::ingest::Batch;
use crate::core::model::identity::Identity;
use crate::core::writer::resolve::Resolving;
use crate::edge::error::ApiError;
use crate::edge::objects::profile_client;
use std::collections::{BTreeMap, BTreeSet};
use worker::Env;

/// The index (identity to profile id, moved profiles followed) and the recently erased identities of `batch`
/// (`core::writer::resolve`).
pub(crate) async fn resolve(
    env: &Env,
    batch: &Batch,
) -> Result<(BTreeMap<Identity, String>, BTreeSet<Identity>), ApiError> {
    let mut r = Resolving::new(batch.identities_to_resolve());
    profile_client::drive(env, &mut r).await?;
    Ok(r.found())
}
