//! What a person's predictions are computed from: their purchases (one per day, as the BG/NBD model counts them)
//! and, per channel, the sends journeys delivered and the responses and unsubscribes that came back. Which events
//! are purchases and responses is the configuration's (`rules::predictions`); the model reads no configuration,
//! so what comes in here is already classified. Each part merges exactly with another profile's.

use crate::core::base::sort;
use crate::core::base::time::{Millis, DAY};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Purchase days a profile keeps one by one; older days are folded into a count and a sum (the model needs their
/// number and the first day, not each of them).
pub const MAX_PURCHASE_DAYS: usize = 120;
/// Unanswered sends a channel remembers, to attribute a response to the send it answers.
pub const MAX_OPEN_SENDS: usize = 16;
/// A response answers a send of its channel at most this long after it.
pub const RESPONSE_WINDOW: Millis = 7 * DAY;
/// Recent sends are counted over this period before each send, for the pressure a send was made under.
pub const PRESSURE_PERIOD: Millis = 7 * DAY;
/// Pressure buckets: a send made after 0, 1, 2, or 3 and more sends of the channel in the period before it.
pub const PRESSURE_BUCKETS: usize = 4;

/// One purchase day: the instant of its first purchase and the value of all of that day's purchases.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PurchaseDay {
    pub at: Millis,
    pub value: f64,
}

/// A person's purchases, by UTC day.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Purchases {
    /// The first purchase, kept even when its day is folded.
    pub first: Option<PurchaseDay>,
    /// Folded days: how many, and their value (never the first day).
    pub folded_days: u32,
    pub folded_value: f64,
    /// Days after the first, oldest first, at most `MAX_PURCHASE_DAYS`.
    pub days: Vec<PurchaseDay>,
}

/// The summary the BG/NBD and Gamma-Gamma models read, in days, as of `now`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PurchaseSummary {
    /// Repeat purchase days (after the first).
    pub x: f64,
    /// Days from the first purchase to the last.
    pub t_x: f64,
    /// Days from the first purchase to `now`.
    pub t: f64,
    /// The mean value of the repeat purchase days (0 with none).
    pub mean_value: f64,
}

fn day(at: Millis) -> i64 {
    at.div_euclid(DAY)
}

impl Purchases {
    /// Records a purchase of `value` at `at`: a new day, or more on a day already counted. A purchase older
    /// than the first (history arriving late) becomes the first, and the old first a repeat day.
    pub fn record(&mut self, at: Millis, value: f64) {
        let value = if value.is_finite() { value.max(0.0) } else { 0.0 };
        let Some(first) = self.first.as_mut() else {
            self.first = Some(PurchaseDay { at, value });
            return;
        };
        if day(at) == day(first.at) {
            first.value += value;
            first.at = first.at.min(at);
            return;
        }
        if at < first.at {
            let old = std::mem::replace(first, PurchaseDay { at, value });
            self.insert_day(old);
            return;
        }
        self.insert_day(PurchaseDay { at, value });
    }

    fn insert_day(&mut self, d: PurchaseDay) {
        match self.days.binary_search_by_key(&day(d.at), |x| day(x.at)) {
            Ok(i) => {
                self.days[i].value += d.value;
                self.days[i].at = self.days[i].at.min(d.at);
            }
            Err(i) => self.days.insert(i, d),
        }
        while self.days.len() > MAX_PURCHASE_DAYS {
            let old = self.days.remove(0);
            self.folded_days += 1;
            self.folded_value += old.value;
        }
    }

    /// A merge: the other profile's purchases join these, day by day.
    pub fn absorb(&mut self, other: &Purchases) {
        if let Some(f) = other.first {
            self.record(f.at, f.value);
        }
        for d in &other.days {
            self.record(d.at, d.value);
        }
        // Days the other profile had folded are older than any it kept; they stay folded here.
        self.folded_days += other.folded_days;
        self.folded_value += other.folded_value;
    }

    /// The model's summary at `now`; `None` before the first purchase.
    pub fn summary(&self, now: Millis) -> Option<PurchaseSummary> {
        let first = self.first?;
        let repeat = self.folded_days as usize + self.days.len();
        let last = self.days.last().map_or(first.at, |d| d.at);
        let value: f64 = self.folded_value + self.days.iter().map(|d| d.value).sum::<f64>();
        Some(PurchaseSummary {
            x: repeat as f64,
            t_x: (last - first.at).max(0) as f64 / DAY as f64,
            t: (now.max(last) - first.at).max(0) as f64 / DAY as f64,
            mean_value: if repeat > 0 { value / repeat as f64 } else { 0.0 },
        })
    }

    /// The summary as of `cutoff` (purchases after it not yet made), for a holdout: with the purchase days
    /// after it, counted. `None` when the first purchase is after `cutoff`. Days already folded count as before
    /// the cutoff.
    pub fn before(&self, cutoff: Millis) -> Option<(Purchases, u32)> {
        let first = self.first.filter(|f| f.at <= cutoff)?;
        let kept: Vec<PurchaseDay> = self.days.iter().copied().filter(|d| d.at <= cutoff).collect();
        let after = (self.days.len() - kept.len()) as u32;
        Some((
            Purchases {
                first: Some(first),
                folded_days: self.folded_days,
                folded_value: self.folded_value,
                days: kept,
            },
            after,
        ))
    }
}

/// Sends, responses and unsubscribes of one channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    pub sends: u32,
    /// Sends answered by a response within `RESPONSE_WINDOW` (each send answered at most once).
    pub responses: u32,
    pub unsubscribes: u32,
    /// Sends in a row since the last response.
    pub unanswered: u32,
    pub last_send: Option<Millis>,
    /// Recent unanswered sends: when, and the pressure bucket each was made under.
    pub open: Vec<(Millis, u8)>,
    /// Sends and answered sends by the pressure they were made under (`PRESSURE_BUCKETS`).
    pub by_pressure: [(u32, u32); PRESSURE_BUCKETS],
    /// Send times within `PRESSURE_PERIOD` of the last, for the next send's bucket.
    pub recent: Vec<Millis>,
}

impl ChannelStats {
    /// A delivered send at `at`.
    pub fn record_send(&mut self, at: Millis) {
        self.recent.retain(|&t| t > at - PRESSURE_PERIOD && t <= at);
        let bucket = self.recent.len().min(PRESSURE_BUCKETS - 1) as u8;
        self.recent.push(at);
        self.sends = self.sends.saturating_add(1);
        self.unanswered = self.unanswered.saturating_add(1);
        self.last_send = Some(self.last_send.map_or(at, |l| l.max(at)));
        self.by_pressure[bucket as usize].0 = self.by_pressure[bucket as usize].0.saturating_add(1);
        self.open.push((at, bucket));
        if self.open.len() > MAX_OPEN_SENDS {
            self.open.remove(0);
        }
    }

    /// A response at `at`: it answers the latest open send within the window before it; a response to no send
    /// (an old e-mail opened again) counts nothing, so a rate stays a share of sends.
    pub fn record_response(&mut self, at: Millis) -> bool {
        let Some(i) = self.open.iter().rposition(|&(t, _)| t <= at && at - t <= RESPONSE_WINDOW) else {
            return false;
        };
        let (_, bucket) = self.open.remove(i);
        self.responses = self.responses.saturating_add(1);
        self.unanswered = 0;
        let b = &mut self.by_pressure[usize::from(bucket).min(PRESSURE_BUCKETS - 1)];
        b.1 = b.1.saturating_add(1);
        true
    }

    pub fn record_unsubscribe(&mut self) {
        self.unsubscribes = self.unsubscribes.saturating_add(1);
    }

    /// A merge: counts add up; the open sends and recent times join, newest kept.
    pub fn absorb(&mut self, other: &ChannelStats) {
        self.sends = self.sends.saturating_add(other.sends);
        self.responses = self.responses.saturating_add(other.responses);
        self.unsubscribes = self.unsubscribes.saturating_add(other.unsubscribes);
        let newest_other = other.last_send.unwrap_or(Millis::MIN);
        if newest_other > self.last_send.unwrap_or(Millis::MIN) {
            self.unanswered = other.unanswered;
        }
        self.last_send = match (self.last_send, other.last_send) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for (mine, theirs) in self.by_pressure.iter_mut().zip(other.by_pressure) {
            mine.0 = mine.0.saturating_add(theirs.0);
            mine.1 = mine.1.saturating_add(theirs.1);
        }
        self.open.extend(other.open.iter().copied());
        sort::sort(&mut self.open);
        let extra = self.open.len().saturating_sub(MAX_OPEN_SENDS);
        self.open.drain(..extra);
        self.recent.extend(other.recent.iter().copied());
        sort::sort(&mut self.recent);
        let extra = self.recent.len().saturating_sub(MAX_OPEN_SENDS);
        self.recent.drain(..extra);
    }
}

/// Everything predictions read from one profile (stored after its contacts, profile format 7).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    pub purchases: Purchases,
    pub channels: BTreeMap<String, ChannelStats>,
}

/// Channels a profile keeps statistics for (the configuration names them; this bounds a profile whatever it says).
pub const MAX_CHANNELS: usize = 16;

impl Behaviour {
    pub fn is_empty(&self) -> bool {
        self.purchases.first.is_none() && self.channels.is_empty()
    }

    /// The statistics of `channel`, created if there is room.
    pub fn channel(&mut self, channel: &str) -> Option<&mut ChannelStats> {
        if !self.channels.contains_key(channel) && self.channels.len() >= MAX_CHANNELS {
            return None;
        }
        Some(self.channels.entry(channel.to_string()).or_default())
    }

    pub fn absorb(&mut self, other: &Behaviour) {
        self.purchases.absorb(&other.purchases);
        for (name, stats) in &other.channels {
            if let Some(mine) = self.channel(name) {
                mine.absorb(stats);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_780_000_000_000;

    #[test]
    fn purchases_count_days_not_orders() {
        let mut p = Purchases::default();
        p.record(T0, 10.0);
        p.record(T0 + 1000, 5.0); // the same day: more value, no repeat
        p.record(T0 + 3 * DAY, 20.0);
        p.record(T0 + 3 * DAY + 60_000, 20.0);
        p.record(T0 + 10 * DAY, 30.0);
        let s = p.summary(T0 + 20 * DAY).unwrap();
        assert_eq!(s.x, 2.0);
        assert_eq!(s.t_x, 10.0);
        assert_eq!(s.t, 20.0);
        assert_eq!(s.mean_value, 35.0);
        assert_eq!(p.first.unwrap().value, 15.0);
    }

    #[test]
    fn a_late_older_purchase_becomes_the_first() {
        let mut p = Purchases::default();
        p.record(T0 + 5 * DAY, 10.0);
        p.record(T0, 4.0);
        let s = p.summary(T0 + 5 * DAY).unwrap();
        assert_eq!((s.x, s.t_x, s.t, s.mean_value), (1.0, 5.0, 5.0, 10.0));
    }

    #[test]
    fn a_merge_of_purchases_is_the_purchases_of_both() {
        let (mut a, mut b, mut both) = (Purchases::default(), Purchases::default(), Purchases::default());
        for (i, at) in [T0, T0 + 2 * DAY, T0 + 9 * DAY].into_iter().enumerate() {
            a.record(at, i as f64);
            both.record(at, i as f64);
        }
        for at in [T0 - DAY, T0 + 2 * DAY + 5, T0 + 20 * DAY] {
            b.record(at, 1.0);
            both.record(at, 1.0);
        }
        a.absorb(&b);
        assert_eq!(a.summary(T0 + 30 * DAY), both.summary(T0 + 30 * DAY));
    }

    #[test]
    fn old_days_fold_and_still_count() {
        let mut p = Purchases::default();
        for d in 0..(MAX_PURCHASE_DAYS as i64 + 30) {
            p.record(T0 + d * DAY, 1.0);
        }
        assert_eq!(p.days.len(), MAX_PURCHASE_DAYS);
        let s = p.summary(T0 + 400 * DAY).unwrap();
        assert_eq!(s.x, (MAX_PURCHASE_DAYS + 29) as f64);
        assert_eq!(s.mean_value, 1.0);
    }

    #[test]
    fn a_merge_keeps_the_days_both_had_folded() {
        let (mut a, mut b) = (Purchases::default(), Purchases::default());
        for d in 0..(MAX_PURCHASE_DAYS as i64 + 10) {
            a.record(T0 + d * DAY, 2.0);
            b.record(T0 + d * DAY + 1000 * DAY, 3.0);
        }
        assert_eq!((a.folded_days, b.folded_days), (9, 9));
        a.absorb(&b);
        let s = a.summary(T0 + 2000 * DAY).unwrap();
        // Every day of both but the first is a repeat day, and their value is all there.
        assert_eq!(s.x, (2 * (MAX_PURCHASE_DAYS + 10) - 1) as f64);
        let total = 2.0 * (MAX_PURCHASE_DAYS + 9) as f64 + 3.0 * (MAX_PURCHASE_DAYS + 10) as f64;
        assert!((s.mean_value * s.x - total).abs() < 1e-9, "{} of {total}", s.mean_value * s.x);
        assert!(a.folded_days >= 18 && a.folded_value >= 9.0 * 2.0 + 9.0 * 3.0);
    }

    #[test]
    fn a_holdout_cut_counts_the_days_after_it() {
        let mut p = Purchases::default();
        for d in [0, 4, 8, 12] {
            p.record(T0 + d * DAY, 1.0);
        }
        let (before, after) = p.before(T0 + 5 * DAY).unwrap();
        assert_eq!(after, 2);
        assert_eq!(before.summary(T0 + 5 * DAY).unwrap().x, 1.0);
        assert!(p.before(T0 - 1).is_none());
    }

    #[test]
    fn a_response_answers_the_latest_open_send_within_the_window_once() {
        let mut c = ChannelStats::default();
        c.record_send(T0);
        c.record_send(T0 + DAY);
        assert!(c.record_response(T0 + DAY + 10));
        assert!(c.record_response(T0 + DAY + 20), "the earlier send is still open");
        assert!(!c.record_response(T0 + DAY + 30), "each send is answered once");
        assert_eq!((c.sends, c.responses, c.unanswered), (2, 2, 0));
        c.record_send(T0 + 20 * DAY);
        assert!(!c.record_response(T0 + 28 * DAY), "outside the window");
        assert_eq!(c.unanswered, 1);
    }

    #[test]
    fn a_send_a_week_after_another_is_a_quiet_one() {
        let mut c = ChannelStats::default();
        c.record_send(T0);
        c.record_send(T0 + PRESSURE_PERIOD);
        assert_eq!(c.by_pressure[0].0, 2, "the period before a send is open at its start");
    }

    #[test]
    fn the_latest_sixteen_sends_can_each_be_answered() {
        let mut c = ChannelStats::default();
        for i in 0..(MAX_OPEN_SENDS as i64 + 1) {
            c.record_send(T0 + i * 60_000);
        }
        let answered = (0..20).filter(|i| c.record_response(T0 + DAY + i)).count();
        assert_eq!(answered, MAX_OPEN_SENDS);
    }

    /// A merge of two profiles' channel statistics: counts add up, the run of unanswered sends is the newer one's,
    /// and what may still be answered joins (the newest kept).
    #[test]
    fn a_merge_of_channels_adds_counts_and_keeps_the_newer_run() {
        let (mut a, mut b) = (ChannelStats::default(), ChannelStats::default());
        for i in 0..3 {
            a.record_send(T0 + i * DAY);
        }
        a.record_response(T0 + 2 * DAY + 5);
        for i in 0..(MAX_OPEN_SENDS as i64) {
            b.record_send(T0 - 10 * DAY + i * 60_000);
        }
        b.record_unsubscribe();
        let (older, newer) = (a.clone(), b.clone());
        a.absorb(&b);
        assert_eq!((a.sends, a.responses, a.unsubscribes), (3 + MAX_OPEN_SENDS as u32, 1, 1));
        assert_eq!(a.unanswered, older.unanswered, "a's sends are the newer");
        assert_eq!(a.last_send, Some(T0 + 2 * DAY));
        assert_eq!(a.by_pressure[0].0 + a.by_pressure[1].0 + a.by_pressure[2].0 + a.by_pressure[3].0, a.sends);
        assert_eq!(a.by_pressure[0].1, older.by_pressure[0].1 + newer.by_pressure[0].1);
        assert_eq!(a.open.len(), MAX_OPEN_SENDS);
        assert_eq!(a.open.last().map(|o| o.0), Some(T0 + DAY), "the newest open sends are kept");
        let mut c = newer.clone();
        c.absorb(&older);
        assert_eq!(c.unanswered, older.unanswered, "whichever absorbs, the newer run counts");
        let mut d = older.clone();
        d.absorb(&ChannelStats::default());
        assert_eq!(d, older, "nothing from nothing");
    }

    #[test]
    fn a_profile_keeps_at_most_sixteen_channels() {
        let mut b = Behaviour::default();
        for i in 0..MAX_CHANNELS {
            assert!(b.channel(&format!("c{i}")).is_some());
        }
        assert!(b.channel("one-more").is_none());
        assert!(b.channel("c3").is_some(), "a channel it has is still there");
        assert_eq!(b.channels.len(), MAX_CHANNELS);
    }

    #[test]
    fn pressure_buckets_count_the_sends_in_the_week_before() {
        let mut c = ChannelStats::default();
        for d in 0..5 {
            c.record_send(T0 + d * DAY);
        }
        c.record_send(T0 + 30 * DAY);
        let sends: Vec<u32> = c.by_pressure.iter().map(|b| b.0).collect();
        assert_eq!(sends, [2, 1, 1, 2]);
    }
}
