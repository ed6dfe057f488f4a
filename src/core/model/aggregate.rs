//! Rolling-window aggregates: per-day counts of each event name, and of each event name with each short
//! property value, over the last `DAYS` days. They answer "how many in the last 1, 7 or 30 days" exactly to the
//! day for any traffic, in bounded space, after the capped recent history has let older events go.

use crate::core::base::time::{Millis, DAY};
use crate::core::base::value::Value;
use crate::core::model::history::EventRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Days kept per series (today and the 30 days before it).
pub const DAYS: i64 = 31;
/// Series kept per profile; beyond it, the series whose latest day is oldest goes.
pub const MAX_SERIES: usize = 256;
/// Longest property value that gets its own series.
pub const MAX_VALUE_CHARS: usize = 64;

/// The count of one day (days since 1970-01-01, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    pub day: i64,
    pub count: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregates {
    /// Series key (see `series_key`) to day counts, oldest day first.
    pub series: BTreeMap<String, Vec<DayCount>>,
}

/// `Product Viewed` for the event, `Product Viewed|category=bags` for one of its property values.
pub fn series_key(event: &str, property: Option<(&str, &Value)>) -> Option<String> {
    match property {
        None => Some(event.to_string()),
        Some((k, Value::String(s))) if s.chars().count() <= MAX_VALUE_CHARS => Some(format!("{event}|{k}={s}")),
        Some((k, Value::Bool(b))) => Some(format!("{event}|{k}={b}")),
        Some((k, Value::Number(n))) if n.fract() == 0.0 && n.abs() < 1e15 => Some(format!("{event}|{k}={}", *n as i64)),
        _ => None,
    }
}

pub fn day_of(at: Millis) -> i64 {
    at.div_euclid(DAY)
}

impl Aggregates {
    /// Counts one event in its series.
    pub fn record(&mut self, record: &EventRecord) {
        let day = day_of(record.at);
        let keys = std::iter::once(series_key(&record.name, None))
            .chain(record.props.iter().map(|(k, v)| series_key(&record.name, Some((k, v)))))
            .flatten();
        for key in keys {
            self.add(key, day, 1);
        }
    }

    fn add(&mut self, key: String, day: i64, n: u32) {
        let series = self.series.entry(key).or_default();
        match series.binary_search_by_key(&day, |d| d.day) {
            Ok(i) => series[i].count = series[i].count.saturating_add(n),
            Err(i) => series.insert(i, DayCount { day, count: n }),
        }
        let newest = series.last().map_or(day, |d| d.day);
        series.retain(|d| d.day > newest - DAYS);
        if self.series.len() > MAX_SERIES {
            // Evict the series that has been quiet longest.
            if let Some(stale) =
                self.series.iter().min_by_key(|(_, s)| s.last().map_or(i64::MIN, |d| d.day)).map(|(k, _)| k.clone())
            {
                self.series.remove(&stale);
            }
        }
    }

    /// The count in a series for the days `from..=to`; `None` when the series is unknown.
    pub fn count(&self, key: &str, from: i64, to: i64) -> u64 {
        self.series
            .get(key)
            .map_or(0, |s| s.iter().filter(|d| d.day >= from && d.day <= to).map(|d| u64::from(d.count)).sum())
    }

    /// Adds another profile's counts (a merge).
    pub fn absorb(&mut self, other: &Aggregates) {
        for (key, days) in &other.series {
            for d in days {
                self.add(key.clone(), d.day, d.count);
            }
        }
    }

    /// Takes another profile's counts back out (a split).
    pub fn subtract(&mut self, other: &Aggregates) {
        for (key, days) in &other.series {
            if let Some(series) = self.series.get_mut(key) {
                for d in days {
                    if let Ok(i) = series.binary_search_by_key(&d.day, |x| x.day) {
                        series[i].count = series[i].count.saturating_sub(d.count);
                    }
                }
                series.retain(|d| d.count > 0);
            }
        }
        self.series.retain(|_, s| !s.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at: Millis, name: &str, props: &[(&str, Value)]) -> EventRecord {
        EventRecord {
            at,
            name: name.into(),
            message_id: String::new(),
            props: props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    #[test]
    fn counts_per_day_and_per_value_within_the_window() {
        let mut a = Aggregates::default();
        let bags = Value::String("bags".into());
        for i in 0..40 {
            a.record(&rec(i * DAY + 1, "Product Viewed", &[("category", bags.clone()), ("price", Value::Number(9.5))]));
        }
        let key = series_key("Product Viewed", Some(("category", &bags))).unwrap();
        assert_eq!(key, "Product Viewed|category=bags");
        assert_eq!(a.count(&key, 33, 39), 7);
        assert_eq!(a.count("Product Viewed", 0, 100), DAYS as u64, "only the last 31 days are kept");
        assert!(!a.series.keys().any(|k| k.contains("price")), "non-integral numbers get no series");
    }

    #[test]
    fn series_are_bounded_and_merges_add_and_splits_subtract() {
        let mut a = Aggregates::default();
        for i in 0..(MAX_SERIES as i64 + 20) {
            a.record(&rec(i * 1000, &format!("E{i}"), &[]));
        }
        assert_eq!(a.series.len(), MAX_SERIES);
        assert!(!a.series.contains_key("E0") || a.series.contains_key(&format!("E{}", MAX_SERIES + 19)));
        let mut b = Aggregates::default();
        b.record(&rec(5, "X", &[]));
        b.record(&rec(6, "X", &[]));
        let mut c = Aggregates::default();
        c.record(&rec(7, "X", &[]));
        c.absorb(&b);
        assert_eq!(c.count("X", 0, 0), 3);
        c.subtract(&b);
        assert_eq!(c.count("X", 0, 0), 1);
    }
}
