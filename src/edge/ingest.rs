//! The identity lookups a batch needs before its writers run, shared by collection (`routes::collect`) and
//! imports (`edge::imports`): what the identity index says, the erasure marks of identities it no longer knows,
//! and, where the identities lead to several profiles, where each of those lives now.

use crate::core::base::sort;
use crate::core::engine::ingest::Batch;
use crate::core::engine::merge::MAX_PROFILES_PER_REQUEST;
use crate::core::model::identity::Identity;
use crate::edge::error::ApiError;
use crate::edge::kv;
use crate::edge::objects::profile_client;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};
use worker::Env;

/// How many identity lookups (KV reads, or profile objects asked where a profile lives) one batch runs at once.
const LOOKUPS_AT_ONCE: usize = 16;

/// The index (identity to profile id, moved profiles followed) and the recently erased identities of `batch`.
pub(crate) async fn resolve(
    env: &Env,
    batch: &Batch,
) -> Result<(BTreeMap<Identity, String>, BTreeSet<Identity>), ApiError> {
    let store = kv::store(env)?;
    let mut index = BTreeMap::new();
    let mut erased = BTreeSet::new();
    // Each identity's lookups are independent of the others': several at once, but never more than
    // `LOOKUPS_AT_ONCE` (a batch may name thousands of identities).
    let looked_up: Vec<_> = futures_util::stream::iter(batch.identities_to_resolve().into_iter().map(|id| {
        let store = &store;
        async move {
            let pid = kv::profile_id_of(store, &id).await?;
            let erased = pid.is_none() && kv::recently_erased(store, &id).await?;
            Ok::<_, ApiError>((id, pid, erased))
        }
    }))
    .buffered(LOOKUPS_AT_ONCE)
    .try_collect()
    .await?;
    for (id, pid, was_erased) in looked_up {
        match pid {
            Some(pid) => {
                index.insert(id, pid);
            }
            None if was_erased => {
                erased.insert(id);
            }
            None => {}
        }
    }
    // Identities that lead to different profiles may lead to one that was just merged into another (its index
    // entries move a second later: KV takes one write a second per key). Where they do, the profiles' objects say
    // where each lives now, so that a link already made counts as made (a signed-in browser's proof, say).
    let distinct: BTreeSet<String> = sort::set_of(index.values().cloned());
    // Only as many as one request may write (more are refused by the planner anyway): a hostile batch naming
    // thousands of profiles costs no more than that many calls, and its claims simply stay unproven.
    if distinct.len() > 1 && distinct.len() <= MAX_PROFILES_PER_REQUEST {
        let located: Vec<String> =
            futures_util::stream::iter(distinct.iter().map(|pid| profile_client::locate(env, pid)))
                .buffered(LOOKUPS_AT_ONCE)
                .try_collect()
                .await?;
        let moved: BTreeMap<&String, String> =
            sort::map_of(distinct.iter().zip(located).filter(|(from, to)| *from != to));
        for pid in index.values_mut() {
            if let Some(to) = moved.get(pid) {
                *pid = to.clone();
            }
        }
    }
    Ok((index, erased))
}
