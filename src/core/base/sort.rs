//! One stable sort for the whole crate. The standard library's `sort*` methods (and `collect` into a B-tree map or
//! set, which sorts) are generic: each element type and comparison got its own copy of driftsort and quicksort,
//! about 3–5 KB of Wasm each, 140 KB in the Worker before this module. Here the sorting itself runs once, on
//! positions, with the comparison behind a reference; what stays generic per call is a closure and the swaps that
//! put the elements in their sorted order.
//!
//! The lists sorted here are small (a batch's events, a profile's recent entries, an audience's instants), so a
//! merge sort on `u32` positions with a dynamic comparison costs nothing that matters.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// Sorts `v` by `cmp`, stably: elements that compare equal keep their order.
pub fn sort_by<T>(v: &mut [T], cmp: impl Fn(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let order = sorted_positions(v.len(), &|a, b| cmp(&v[a], &v[b]));
    permute(v, order);
}

/// Sorts `v` by the key `key` gives each element, stably.
pub fn sort_by_key<T, K: Ord>(v: &mut [T], key: impl Fn(&T) -> K) {
    sort_by(v, |a, b| key(a).cmp(&key(b)));
}

/// Sorts `v` in its natural order, stably.
pub fn sort<T: Ord>(v: &mut [T]) {
    sort_by(v, T::cmp);
}

/// A B-tree map of `pairs`, the last value kept for a key given twice (as `collect` keeps it), without the sort
/// `collect` runs for its bulk build.
pub fn map_of<K: Ord, V>(pairs: impl IntoIterator<Item = (K, V)>) -> BTreeMap<K, V> {
    let mut map = BTreeMap::new();
    for (k, v) in pairs {
        map.insert(k, v);
    }
    map
}

/// A B-tree set of `items`, without the sort `collect` runs for its bulk build.
pub fn set_of<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeSet<T> {
    let mut set = BTreeSet::new();
    for item in items {
        set.insert(item);
    }
    set
}

/// `collect` into maps and JSON objects without the sort `collect` runs for a B-tree's bulk build (one copy of
/// driftsort per iterator type): each is filled by insertion, the last value kept for a key given twice.
pub trait CollectInto: Iterator + Sized {
    fn collect_map<K: Ord, V>(self) -> BTreeMap<K, V>
    where
        Self: Iterator<Item = (K, V)>,
    {
        map_of(self)
    }

    fn collect_object(self) -> serde_json::Map<String, serde_json::Value>
    where
        Self: Iterator<Item = (String, serde_json::Value)>,
    {
        let mut object = serde_json::Map::new();
        for (k, v) in self {
            object.insert(k, v);
        }
        object
    }

    /// `collect_object` as a JSON value.
    fn collect_json(self) -> serde_json::Value
    where
        Self: Iterator<Item = (String, serde_json::Value)>,
    {
        serde_json::Value::Object(self.collect_object())
    }
}

impl<I: Iterator> CollectInto for I {}

/// The positions `0..n` in the order `cmp` sorts them, stably: a bottom-up merge sort, the one copy of the algorithm
/// in the crate.
fn sorted_positions(n: usize, cmp: &dyn Fn(usize, usize) -> Ordering) -> Vec<u32> {
    let mut a: Vec<u32> = (0..n as u32).collect();
    let mut b = a.clone();
    let mut width = 1;
    while width < n {
        let mut start = 0;
        while start < n {
            let mid = (start + width).min(n);
            let end = (start + 2 * width).min(n);
            let (mut i, mut j) = (start, mid);
            for slot in &mut b[start..end] {
                // The left run's element goes first unless the right one is strictly smaller: stability.
                let take_left = j >= end || (i < mid && cmp(a[j] as usize, a[i] as usize) != Ordering::Less);
                if take_left {
                    *slot = a[i];
                    i += 1;
                } else {
                    *slot = a[j];
                    j += 1;
                }
            }
            start = end;
        }
        std::mem::swap(&mut a, &mut b);
        width *= 2;
    }
    a
}

/// Rearranges `v` so that position `k` holds what was at `order[k]`, by swaps along the permutation's cycles.
fn permute<T>(v: &mut [T], mut order: Vec<u32>) {
    for k in 0..order.len() {
        // Follow the cycle through `k`, placing each element where it belongs; a placed position points to itself.
        let mut at = k;
        loop {
            let from = order[at] as usize;
            order[at] = at as u32;
            if from == k {
                break;
            }
            v.swap(at, from);
            at = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row: input, and the pairs sorted by their first element, stably (the second records input order).
    /// Checked against the standard library's stable sort, which the crate otherwise leaves alone.
    #[test]
    #[allow(clippy::disallowed_methods)]
    fn sorts_stably_whatever_the_input() {
        let rows: &[&[u8]] = &[
            &[],
            &[1],
            &[2, 1],
            &[1, 2],
            &[1, 1, 1],
            &[3, 1, 2, 1, 3, 0],
            &[5, 4, 3, 2, 1, 0, 9, 8, 7],
            &[0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0],
        ];
        for row in rows {
            let mut v: Vec<(u8, usize)> = row.iter().copied().zip(0..).collect();
            let mut expected = v.clone();
            expected.sort_by_key(|p| p.0);
            sort_by_key(&mut v, |p| p.0);
            assert_eq!(v, expected, "input {row:?}");
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn sorts_lists_of_every_length_like_the_standard_sort() {
        // A deterministic spread of inputs of every length up to 70, with many ties.
        let mut seed = 7u64;
        for n in 0..70 {
            let mut v: Vec<(u64, usize)> = (0..n)
                .map(|i| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    ((seed >> 33) % 9, i)
                })
                .collect();
            let mut expected = v.clone();
            expected.sort_by_key(|p| std::cmp::Reverse(p.0));
            sort_by(&mut v, |a, b| b.0.cmp(&a.0));
            assert_eq!(v, expected, "length {n}");
        }
    }

    #[test]
    fn maps_and_sets_keep_what_collect_keeps() {
        let pairs = vec![("b", 1), ("a", 2), ("b", 3)];
        assert_eq!(map_of(pairs.clone()), pairs.into_iter().collect::<BTreeMap<_, _>>());
        assert_eq!(set_of([3, 1, 3, 2]), [1, 2, 3].into_iter().collect::<BTreeSet<_>>());
        let object = [("b".to_string(), 1.into()), ("a".to_string(), 2.into()), ("b".to_string(), 3.into())];
        assert_eq!(object.clone().into_iter().collect_json(), object.into_iter().collect::<serde_json::Value>());
        let mut words = vec!["pear", "apple", "fig"];
        sort(&mut words);
        assert_eq!(words, ["apple", "fig", "pear"]);
    }
}
