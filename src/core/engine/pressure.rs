//! The pressure budget on a person, as journeys' sends and the pressure slots' impressions spend it: the caps
//! over every send and per channel (`over_budget`), the slots it keeps unshown (`slot_over_budget`), and the
//! person's local time that quiet hours and send windows count in (`quiet_end`, `next_in_window`).
//!
//! `engine::journeys` asks it when a send is planned and again when it leaves (`claim`); `engine::decide` asks
//! it for slots. It reads the ledger (`model::journey`) and the impressions (`model::shown`); it changes nothing.

use crate::core::base::time::{Millis, DAY, HOUR};
use crate::core::model::profile::Profile;
use crate::core::rules::pressure::ONSITE;
use crate::core::rules::Config;

/// The budget a new send of `channel` would break, if any: the caps over every send and the slots' impressions,
/// then the channel's own caps.
pub fn over_budget(config: &Config, profile: &Profile, channel: &str, now: Millis) -> Option<&'static str> {
    let p = &config.pressure;
    for cap in &p.caps {
        if sent_in(config, profile, None, cap.per, now) >= cap.max as usize {
            return Some("pressure_cap");
        }
    }
    for cap in p.channels.get(channel).into_iter().flatten() {
        if sent_in(config, profile, Some(channel), cap.per, now) >= cap.max as usize {
            return Some("channel_cap");
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
