//! The pressure budget on a person, as journeys' sends and the pressure slots' impressions spend it: the caps
//! over every send and per channel (`over_budget`), the slots it keeps unshown (`slot_over_budget`), and the
//! person's local time that quiet hours and send windows count in (`quiet_end`, `next_in_window`).
//!
//! `engine::journeys` asks it when a send is planned and again when it leaves (`claim`); `engine::decide` asks
//! it for slots. It reads the ledger (`model::journey`) and the impressions (`model::shown`); it changes nothing.

use crate::core::base::clv::BetaPrior;
use crate::core::base::time::{Millis, DAY, HOUR};
use crate::core::engine::predict;
use crate::core::model::profile::Profile;
use crate::core::rules::pressure::{Adaptive, ONSITE};
use crate::core::rules::Config;

/// The budget a new send of `channel` would break, if any: the caps over every send and the slots' impressions,
/// then the channel's own caps.
///
/// With the adaptive budget (`pressure.adaptive`), a person whose last sends of the channel went unanswered waits
/// (`paused_unanswered`), and every cap shrinks by how much their response to the channel falls under pressure
/// (`adaptive_cap`: a cap the plain budget would still allow).
pub fn over_budget(config: &Config, profile: &Profile, channel: &str, now: Millis) -> Option<&'static str> {
    let p = &config.pressure;
    let stats = profile.behaviour.channels.get(channel);
    let mut sensitivity = 0.0;
    if let (Some(a), Some(stats)) = (&p.adaptive, stats) {
        if stats.unanswered >= a.pause_after && stats.last_send.is_some_and(|l| now - l < a.pause) {
            return Some("paused_unanswered");
        }
        let prior = config.predictions.model.as_ref().and_then(|m| m.channels.get(channel)).map(|c| c.response);
        sensitivity = predict::sensitivity(stats, prior.unwrap_or(BetaPrior { alpha: 1.0, beta: 1.0 }));
    }
    let caps = p.caps.iter().map(|c| (c, None, "pressure_cap"));
    let channel_caps = p.channels.get(channel).into_iter().flatten().map(|c| (c, Some(channel), "channel_cap"));
    for (cap, only, reason) in caps.chain(channel_caps) {
        let sent = sent_in(config, profile, only, cap.per, now);
        if sent >= cap.max as usize {
            return Some(reason);
        }
        if sent >= Adaptive::cap(cap.max, sensitivity) as usize {
            return Some("adaptive_cap");
        }
    }
    None
}

/// Sends (of `channel`, or all) in the `per` before `now`, counting the pressure slots' impressions as `onsite`.
fn sent_in(config: &Config, profile: &Profile, channel: Option<&str>, per: Millis, now: Millis) -> usize {
    let sends = profile.journeys.sent_since(channel, now - per);
    let onsite = if channel.is_none_or(|c| c == ONSITE) {
        config
            .pressure
            .slots
            .iter()
            .filter_map(|s| config.slots.get(s))
            .flat_map(|slot| slot.blocks.iter())
            .map(|b| profile.shown.impressions_within(&b.id, per, now))
            .sum()
    } else {
        0
    };
    sends + onsite
}

/// Whether the slot's blocks must stay unshown because the pressure budget is spent (a slot the budget counts).
pub fn slot_over_budget(config: &Config, profile: &Profile, slot: &str, now: Millis) -> bool {
    config.pressure.slots.iter().any(|s| s == slot) && over_budget(config, profile, ONSITE, now).is_some()
}

/// The person's offset from UTC in minutes: where they were last seen, else the configuration's default.
pub fn offset_of(config: &Config, profile: &Profile) -> i32 {
    profile.journeys.utc_offset.unwrap_or(config.pressure.default_offset)
}

/// The local hour and weekday (0 Monday) at `t` for an offset in minutes.
fn local(t: Millis, offset: i32) -> (Millis, u8, u8) {
    let l = t + Millis::from(offset) * 60_000;
    let day = l.div_euclid(DAY);
    // 1970-01-01 was a Thursday (weekday 3 counting from Monday).
    (l, (l.rem_euclid(DAY) / HOUR) as u8, (day + 3).rem_euclid(7) as u8)
}

/// The first instant at or after `t` inside `[from, to)` local hours on one of `days`.
pub fn next_in_window(t: Millis, offset: i32, from: u8, to: u8, days: u8) -> Millis {
    let (l, _, weekday) = local(t, offset);
    let day_start = l.div_euclid(DAY) * DAY;
    for d in 0..8 {
        if days & (1 << ((weekday as i64 + d) % 7)) == 0 {
            continue;
        }
        let start = day_start + d * DAY + Millis::from(from) * HOUR;
        let end = day_start + d * DAY + Millis::from(to) * HOUR;
        if l < end {
            return l.max(start) - Millis::from(offset) * 60_000;
        }
    }
    t
}

/// When quiet hours `(from, to)` around `t` end, if `t` is inside them.
pub fn quiet_end(quiet: &Option<(u8, u8)>, offset: i32, t: Millis) -> Option<Millis> {
    let (from, to) = (*quiet)?;
    let (l, hour, _) = local(t, offset);
    let inside = if from < to { hour >= from && hour < to } else { hour >= from || hour < to };
    if !inside {
        return None;
    }
    let day_start = l.div_euclid(DAY) * DAY;
    let mut end = day_start + Millis::from(to) * HOUR;
    if end <= l {
        end += DAY;
    }
    Some(end - Millis::from(offset) * 60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::base::time::parse_iso8601;

    fn t(s: &str) -> Millis {
        parse_iso8601(s).unwrap()
    }

    /// The adaptive budget, one row per rule: with `adaptive` on or off, a person's unanswered sends in a row and
    /// the last one's age, their sensitivity (answered shares after a quiet week and after a busy one), the sends
    /// of the channel in the cap's week, and what a new send meets. The cap is 4 email sends a week.
    #[test]
    fn the_adaptive_budget_pauses_unanswered_channels_and_shrinks_caps_for_the_sensitive() {
        use crate::core::model::behaviour::ChannelStats;
        use crate::core::model::journey::Sent;
        use crate::core::model::profile::Profile;
        use crate::core::rules::compile_str;
        let now = t("2026-12-01T12:00:00Z");
        let config = |adaptive: bool| {
            compile_str(&format!(
                r#"{{"pressure": {{"channels": {{"email": [{{"max": 4, "per": "7d"}}]}}, "adaptive": {adaptive}}}}}"#
            ))
            .unwrap()
        };
        let flat = [(0, 0); 4];
        let halved = [(100, 40), (100, 20), (0, 0), (0, 0)];
        type Row = (bool, u32, i64, [(u32, u32); 4], usize, Option<&'static str>);
        #[rustfmt::skip]
        let rows: [Row; 11] = [
            (false, 5, 1, flat, 0, None),                          // off: unanswered sends change nothing
            (true, 3, 1, flat, 0, Some("paused_unanswered")),     // three unanswered, the last a day ago
            (true, 3, 13, flat, 0, Some("paused_unanswered")),    // still inside the 14-day pause
            (true, 3, 14, flat, 0, None),                          // the pause ends 14 days after the last send
            (true, 3, 15, flat, 0, None),                          // and stays over
            (true, 2, 1, flat, 0, None),                           // two unanswered are not yet a pause
            (true, 0, 1, halved, 1, None),                         // half the response under pressure: cap 2
            (true, 0, 1, halved, 2, Some("adaptive_cap")),        // ... which two sends reach
            (false, 0, 1, halved, 2, None),                        // off: the plain cap of 4
            (true, 0, 1, flat, 3, None),                           // no sensitivity: the plain cap of 4
            (true, 0, 1, flat, 4, Some("channel_cap")),           // which the plain budget enforces
        ];
        for (i, (on, unanswered, days_ago, by_pressure, sent, want)) in rows.into_iter().enumerate() {
            let mut p = Profile::new("p".into(), now - 30 * DAY);
            let stats = ChannelStats {
                unanswered,
                last_send: Some(now - days_ago * DAY),
                by_pressure,
                ..ChannelStats::default()
            };
            p.behaviour.channels.insert("email".into(), stats);
            for k in 0..sent {
                p.journeys.ledger.push_back(Sent {
                    at: now - HOUR * (k as i64 + 1),
                    channel: "email".into(),
                    id: format!("s{k}"),
                });
            }
            assert_eq!(over_budget(&config(on), &p, "email", now), want, "row {i}");
        }
        assert_eq!(Adaptive::cap(4, 0.9), 1, "never below one send");
        assert_eq!(Adaptive::cap(4, f64::NAN), 4);
    }

    #[test]
    fn local_windows_and_quiet_hours_count_in_the_person_s_time() {
        // 2026-11-30 is a Monday. At 20:00 UTC it is 21:00 in UTC+1: quiet hours 21-8 hold it until 08:00 local.
        assert_eq!(quiet_end(&Some((21, 8)), 60, t("2026-11-30T20:00:00Z")), Some(t("2026-12-01T07:00:00Z")));
        assert_eq!(quiet_end(&Some((21, 8)), 60, t("2026-11-30T19:59:00Z")), None);
        assert_eq!(quiet_end(&Some((21, 8)), 60, t("2026-12-01T03:00:00Z")), Some(t("2026-12-01T07:00:00Z")));
        assert_eq!(quiet_end(&Some((12, 14)), 0, t("2026-11-30T13:30:00Z")), Some(t("2026-11-30T14:00:00Z")));
        // A window inside one day: its edges, and the hours on either side of it.
        for (at, want) in [
            ("2026-11-30T11:59:00Z", None),
            ("2026-11-30T12:00:00Z", Some(t("2026-11-30T14:00:00Z"))),
            ("2026-11-30T13:59:59Z", Some(t("2026-11-30T14:00:00Z"))),
            ("2026-11-30T14:00:00Z", None),
            ("2026-11-30T15:00:00Z", None),
        ] {
            assert_eq!(quiet_end(&Some((12, 14)), 0, t(at)), want, "12-14 at {at}");
        }
        // One across midnight, at its edges.
        assert_eq!(quiet_end(&Some((21, 8)), 0, t("2026-11-30T08:00:00Z")), None);
        assert_eq!(quiet_end(&Some((21, 8)), 0, t("2026-11-30T21:00:00Z")), Some(t("2026-12-01T08:00:00Z")));
        // A window of 9-18 on weekdays, from Saturday 10:00 UTC-5: Monday 09:00 local.
        let sat = t("2026-12-05T15:00:00Z");
        assert_eq!(next_in_window(sat, -300, 9, 18, 0b001_1111), t("2026-12-07T14:00:00Z"));
        // Inside the window already: at once.
        let mon = t("2026-11-30T10:00:00Z");
        assert_eq!(next_in_window(mon, 0, 9, 18, 0x7f), mon);
        assert_eq!(next_in_window(t("2026-11-30T18:00:00Z"), 0, 9, 18, 0x7f), t("2026-12-01T09:00:00Z"));
        assert_eq!(next_in_window(t("2026-11-30T08:59:00Z"), 0, 9, 18, 0x7f), t("2026-11-30T09:00:00Z"));
    }
}
