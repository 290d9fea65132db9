//! Storms and loops counted, with no I/O (issue 23, points 2 and 3): the bounds (the
//! function's defaults, a route's own), the fixed time window a mail counts in, the
//! counter item and attribute it adds to, and what the counts mean.
//!
//! # Storms
//!
//! Each mail a route takes (first delivery only, never a replay or a release) adds one
//! to a counter item keyed by the route and a fixed window of `window_minutes`
//! ([`counter_item`]): `total` (every sender) and one attribute per sender (`s` and a
//! hash of the normalised envelope sender). One atomic `UpdateItem ADD` (see
//! `crate::aws::counters`) answers both counts, so concurrent invocations neither lose
//! nor double a count. Beyond the bound ([`storm_hold`]) the mail is held, not posted:
//! [`HoldCause::StormSender`] when one sender passed the per-sender bound,
//! [`HoldCause::StormRoute`] when the route as a whole passed its bound. The next window
//! starts from zero, so a sender and a route recover by themselves once the storm
//! stops.
//!
//! A fixed window (not a sliding one) keeps it to one request per mail; a storm that
//! straddles the turn of a window may so get up to twice the bound through, once in
//! each window: the bound is per window, said so in docs/operate.md.
//!
//! # The defaults, from the published peers
//!
//! - **per sender and route: 15 mails in 10 minutes** ([`DEFAULT_SENDER_MAX`],
//!   [`DEFAULT_WINDOW_MINUTES`]): Deskpro's published bound, the only peer's that comes
//!   in our window's shape, and the strictest (Freshdesk acts after 50 in 30 minutes,
//!   BoldDesk after 50 in an hour: 50 tickets before acting). No person writes 15 mails
//!   to one helpdesk address in 10 minutes; a monitoring system gone wild does it in
//!   seconds, and what is held is kept and released in one command.
//! - **per route: 300 mails in 10 minutes** ([`DEFAULT_ROUTE_MAX`]): no peer publishes a
//!   per-address bound, so it is set far above a help desk's human traffic (a mail every
//!   two seconds, sustained for 10 minutes) and below a flood that keeps RT's workers
//!   busy for an hour; it catches a storm spread over many forged senders.
//! - **loops: 3 mails in an hour** per sender and route carrying another helpdesk's
//!   marks ([`DEFAULT_LOOP_MAX`]): two helpdesks answering each other make a mail every
//!   few seconds; a real exchange with another helpdesk's agent rarely makes three an
//!   hour. Zendesk blocks a looping sender for an hour.

use std::fmt;

use crate::core::hold::HoldCause;
use crate::core::machine_mail::AutoPolicy;
use crate::core::rate_limit::{normalize_address, Window};

/// Per sender and route: mails in one window before the next is held.
pub const DEFAULT_SENDER_MAX: u32 = 15;
/// Per route, all senders: mails in one window before the next is held.
pub const DEFAULT_ROUTE_MAX: u32 = 300;
/// The storm window, in minutes.
pub const DEFAULT_WINDOW_MINUTES: u32 = 10;
/// Mails carrying another helpdesk's marks, per sender and route within an hour,
/// before the next is held as a loop.
pub const DEFAULT_LOOP_MAX: u32 = 3;
/// The longest storm window: a day.
pub const MAX_WINDOW_MINUTES: u32 = 24 * 60;
/// How long a counter item outlives its window (DynamoDB's TTL deletes it then; TTL
/// deletion lags, and a late delete costs nothing: the item is never read again).
pub const COUNTER_TTL_AFTER_WINDOW_S: u64 = 24 * 60 * 60;
/// The counter item's attribute that counts every mail of the route.
pub const TOTAL_ATTRIBUTE: &str = "total";
/// The counter item's TTL attribute (epoch seconds).
pub const EXPIRES_ATTRIBUTE: &str = "expires";
/// The counter item's key attribute.
pub const KEY_ATTRIBUTE: &str = "pk";

/// The storm bounds of a route: `0` turns a bound off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StormBounds {
    /// Mails from one sender to the route within a window.
    pub sender_max: u32,
    /// Mails to the route within a window, all senders.
    pub route_max: u32,
    /// The window, in minutes (1 to [`MAX_WINDOW_MINUTES`]).
    pub window_minutes: u32,
}

impl Default for StormBounds {
    fn default() -> Self {
        Self {
            sender_max: DEFAULT_SENDER_MAX,
            route_max: DEFAULT_ROUTE_MAX,
            window_minutes: DEFAULT_WINDOW_MINUTES,
        }
    }
}

impl StormBounds {
    /// True when neither bound is on: the route's mails are not counted.
    pub fn off(&self) -> bool {
        self.sender_max == 0 && self.route_max == 0
    }
}

/// The function's settings for machine mail, storms and loops (the template's
/// parameters, through the environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldSettings {
    /// What a route does with automatic mail unless it says (`AUTO_REPLY_POLICY`).
    pub auto_policy: AutoPolicy,
    /// The storm bounds unless a route says (`STORM_SENDER_MAX`, `STORM_ROUTE_MAX`,
    /// `STORM_WINDOW_MINUTES`).
    pub storm: StormBounds,
    /// Loop bound per sender and route within an hour (`LOOP_HOLD_AFTER`; 0: off).
    pub loop_max: u32,
    /// The DynamoDB table of the storm counters (`STORM_TABLE`); none: storms are not
    /// counted (no table, no request), as for the CLI and older deployments.
    pub counter_table: Option<String>,
}

impl Default for HoldSettings {
    fn default() -> Self {
        Self {
            auto_policy: AutoPolicy::default(),
            storm: StormBounds::default(),
            loop_max: DEFAULT_LOOP_MAX,
            counter_table: None,
        }
    }
}

/// A setting that can't be used: the variable and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSetting {
    /// The environment variable.
    pub var: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl HoldSettings {
    /// Reads the settings through `get` (trimmed, non-empty values).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, BadSetting> {
        let number = |var: &'static str, default: u32, max: u32| -> Result<u32, BadSetting> {
            match get(var) {
                None => Ok(default),
                Some(v) => v.trim().parse::<u32>().ok().filter(|n| *n <= max).ok_or(BadSetting {
                    var,
                    reason: format!("must be a whole number from 0 to {max}"),
                }),
            }
        };
        let auto_policy = match get("AUTO_REPLY_POLICY") {
            None => AutoPolicy::default(),
            Some(v) => v
                .parse()
                .map_err(|e: crate::core::machine_mail::UnknownPolicy| BadSetting {
                    var: "AUTO_REPLY_POLICY",
                    reason: e.to_string(),
                })?,
        };
        let window_minutes = number("STORM_WINDOW_MINUTES", DEFAULT_WINDOW_MINUTES, MAX_WINDOW_MINUTES)?;
        if window_minutes == 0 {
            return Err(BadSetting {
                var: "STORM_WINDOW_MINUTES",
                reason: format!("must be a whole number of minutes from 1 to {MAX_WINDOW_MINUTES}"),
            });
        }
        Ok(Self {
            auto_policy,
            storm: StormBounds {
                sender_max: number("STORM_SENDER_MAX", DEFAULT_SENDER_MAX, 1_000_000)?,
                route_max: number("STORM_ROUTE_MAX", DEFAULT_ROUTE_MAX, 1_000_000)?,
                window_minutes,
            },
            loop_max: number("LOOP_HOLD_AFTER", DEFAULT_LOOP_MAX, 1000)?,
            counter_table: get("STORM_TABLE")
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        })
    }
}

/// A route's own settings (route options `--auto-replies pass|comment|hold`,
/// `--storm-sender N`, `--storm-route N`, `--storm-window MINUTES`); unset ones take
/// the function's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteSense {
    /// `--auto-replies`.
    pub auto_replies: Option<AutoPolicy>,
    /// `--storm-sender N` (0: off).
    pub sender_max: Option<u32>,
    /// `--storm-route N` (0: off).
    pub route_max: Option<u32>,
    /// `--storm-window MINUTES`.
    pub window_minutes: Option<u32>,
}

/// The route options this module reads, as the route parser takes them.
pub const ROUTE_OPTIONS: &[&str] = &["auto-replies", "storm-sender", "storm-route", "storm-window"];

impl RouteSense {
    /// Takes one route option ([`ROUTE_OPTIONS`]); `Ok(false)`: not one of them.
    pub fn take(&mut self, option: &str, value: &str) -> Result<bool, String> {
        let count = |max: u32| {
            value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("--{option} `{value}` must be a whole number from 0 to {max} (0: off)"))
        };
        match option {
            "auto-replies" => {
                self.auto_replies = Some(
                    value
                        .parse()
                        .map_err(|e: crate::core::machine_mail::UnknownPolicy| format!("--auto-replies: {e}"))?,
                )
            }
            "storm-sender" => self.sender_max = Some(count(1_000_000)?),
            "storm-route" => self.route_max = Some(count(1_000_000)?),
            "storm-window" => {
                let minutes = count(MAX_WINDOW_MINUTES)?;
                if minutes == 0 {
                    return Err(format!(
                        "--storm-window `{value}` must be a whole number of minutes from 1 to {MAX_WINDOW_MINUTES}"
                    ));
                }
                self.window_minutes = Some(minutes);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The route's policy for automatic mail.
    pub fn auto_policy(&self, function: &HoldSettings) -> AutoPolicy {
        self.auto_replies.unwrap_or(function.auto_policy)
    }

    /// The route's storm bounds.
    pub fn storm(&self, function: &HoldSettings) -> StormBounds {
        StormBounds {
            sender_max: self.sender_max.unwrap_or(function.storm.sender_max),
            route_max: self.route_max.unwrap_or(function.storm.route_max),
            window_minutes: self.window_minutes.unwrap_or(function.storm.window_minutes),
        }
    }
}

/// One mail's count: the item to add to and the attribute of its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterItem {
    /// The item's key: the route and the window (`bugs@example.com#w10:2935771`).
    pub key: String,
    /// The sender's attribute (`s` and 12 hex digits of its hash).
    pub sender_attribute: String,
    /// When the item may go (epoch seconds, DynamoDB's TTL).
    pub expires_s: u64,
}

/// What a counter answered: the counts after this mail's add.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Mails to the route in the window.
    pub route: u64,
    /// Mails from the sender to the route in the window.
    pub sender: u64,
}

/// The window `now_ms` falls in (its index since the epoch).
pub fn window_index(now_ms: u64, window_minutes: u32) -> u64 {
    now_ms / (u64::from(window_minutes.max(1)) * 60_000)
}

/// The item and attribute one mail of `route` from `sender` adds to at `now_ms`.
pub fn counter_item(route: &str, sender: &str, now_ms: u64, bounds: &StormBounds) -> CounterItem {
    let minutes = bounds.window_minutes.max(1);
    let index = window_index(now_ms, minutes);
    let window_end_s = (index + 1) * u64::from(minutes) * 60;
    CounterItem {
        key: format!("{}#w{minutes}:{index}", route.to_ascii_lowercase()),
        sender_attribute: sender_attribute(sender),
        expires_s: window_end_s + COUNTER_TTL_AFTER_WINDOW_S,
    }
}

/// The attribute that counts one sender: `s` and the first 12 hex digits of the FNV-1a
/// hash of its normal form (`Victim+a@Example.org` is `victim@example.org`), never the
/// address itself (no addresses in the counter table). A bounce's empty sender is one
/// sender (`<>`). Short, so an item holds some 25,000 senders within DynamoDB's 400 KB.
pub fn sender_attribute(sender: &str) -> String {
    let normal = normalize_address(sender).unwrap_or_else(|| "<>".to_string());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in normal.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("s{:012x}", hash >> 16)
}

/// A mail a storm holds: the cause, its detail for the record, and whether this mail
/// is the one that passed the bound (the storm's first held mail: the one that tells
/// the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormHold {
    /// Sender or route.
    pub cause: HoldCause,
    /// For the record's reason.
    pub detail: String,
    /// The first mail over the bound in this window.
    pub first: bool,
}

impl fmt::Display for StormHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cause.reason(&self.detail))
    }
}

/// Whether `counts` (after this mail's add) hold the mail: the sender's bound first
/// (the narrower cause), then the route's.
pub fn storm_hold(counts: Counts, bounds: &StormBounds) -> Option<StormHold> {
    let minutes = bounds.window_minutes;
    let over = |count: u64, max: u32| max > 0 && count > u64::from(max);
    if over(counts.sender, bounds.sender_max) {
        return Some(StormHold {
            cause: HoldCause::StormSender,
            detail: format!(
                "mail {} from this sender to this route within {minutes} min (bound {})",
                counts.sender, bounds.sender_max
            ),
            first: counts.sender == u64::from(bounds.sender_max) + 1,
        });
    }
    if over(counts.route, bounds.route_max) {
        return Some(StormHold {
            cause: HoldCause::StormRoute,
            detail: format!(
                "mail {} to this route within {minutes} min, all senders (bound {})",
                counts.route, bounds.route_max
            ),
            first: counts.route == u64::from(bounds.route_max) + 1,
        });
    }
    None
}

/// The window of mails with another helpdesk's marks, per sender and route, before the
/// next is held as a loop.
pub fn loop_window(loop_max: u32) -> Window {
    Window::per_hour(loop_max as usize)
}

/// The store key (under the records prefix) of the loop window of `sender` on the
/// route `route` (its entry): beside the notice windows, which the trace skips.
pub fn loop_key(route: &str, sender: &str) -> String {
    format!(
        "notices/loop-window/{}/{}",
        route_key_part(route),
        sender_attribute(sender)
    )
}

/// At most one operator notice a day per storm or loop: per cause, route and sender
/// (the route alone for [`HoldCause::StormRoute`]; the sender alone for a loop, as
/// "told once per sender per day"). The store key of that notice window.
pub fn hold_notice_key(cause: HoldCause, route: &str, sender: &str) -> String {
    let route = route_key_part(route);
    match cause {
        HoldCause::StormRoute => format!("notices/hold/{}/{route}", cause.label()),
        HoldCause::Loop => format!("notices/hold/{}/{}", cause.label(), sender_attribute(sender)),
        _ => format!("notices/hold/{}/{route}/{}", cause.label(), sender_attribute(sender)),
    }
}

/// The window of [`hold_notice_key`]: one a day.
pub const HOLD_NOTICE: Window = Window {
    max: 1,
    span_ms: 24 * 60 * 60 * 1000,
};

/// A route entry as part of a store key: lower-case, path separators and `*` replaced.
fn route_key_part(route: &str) -> String {
    route.to_ascii_lowercase().replace(['/', '\\', '*'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_defaults_are_the_published_peers_and_every_one_can_be_set() {
        let d = HoldSettings::from_vars(vars(&[])).unwrap();
        assert_eq!(d, HoldSettings::default());
        assert_eq!(
            (d.storm.sender_max, d.storm.route_max, d.storm.window_minutes),
            (15, 300, 10)
        );
        assert_eq!(
            (d.auto_policy, d.loop_max, d.counter_table),
            (AutoPolicy::Comment, 3, None)
        );
        let s = HoldSettings::from_vars(vars(&[
            ("AUTO_REPLY_POLICY", "Hold"),
            ("STORM_SENDER_MAX", "50"),
            ("STORM_ROUTE_MAX", "0"),
            ("STORM_WINDOW_MINUTES", "30"),
            ("LOOP_HOLD_AFTER", "5"),
            ("STORM_TABLE", "counters"),
        ]))
        .unwrap();
        assert_eq!(s.auto_policy, AutoPolicy::Hold);
        assert_eq!(
            s.storm,
            StormBounds {
                sender_max: 50,
                route_max: 0,
                window_minutes: 30
            }
        );
        assert_eq!((s.loop_max, s.counter_table.as_deref()), (5, Some("counters")));
        for (var, value) in [
            ("AUTO_REPLY_POLICY", "drop"),
            ("STORM_SENDER_MAX", "-1"),
            ("STORM_WINDOW_MINUTES", "0"),
            ("STORM_WINDOW_MINUTES", "1441"),
            ("LOOP_HOLD_AFTER", "many"),
        ] {
            let bad = HoldSettings::from_vars(vars(&[(var, value)])).unwrap_err();
            assert_eq!(bad.var, var, "{value}");
        }
    }

    #[test]
    fn a_route_says_its_own_and_takes_the_functions_for_the_rest() {
        let function = HoldSettings::default();
        let mut sense = RouteSense::default();
        assert!(sense.take("auto-replies", "hold").unwrap());
        assert!(sense.take("storm-sender", "100").unwrap());
        assert!(sense.take("storm-window", "60").unwrap());
        assert!(!sense.take("secret", "x").unwrap());
        assert!(sense.take("storm-route", "lots").is_err());
        assert!(sense.take("storm-window", "0").is_err());
        assert!(sense
            .take("auto-replies", "drop")
            .unwrap_err()
            .contains("pass, comment or hold"));
        assert_eq!(sense.auto_policy(&function), AutoPolicy::Hold);
        assert_eq!(
            sense.storm(&function),
            StormBounds {
                sender_max: 100,
                route_max: 300,
                window_minutes: 60
            }
        );
        assert_eq!(RouteSense::default().auto_policy(&function), AutoPolicy::Comment);
    }

    #[test]
    fn a_mail_counts_in_its_routes_window_under_its_normal_sender() {
        let b = StormBounds::default();
        let t = 1_700_000_000_000;
        let item = counter_item("Bugs@Example.com", "Alerts+x@Mon.example", t, &b);
        assert_eq!(item.key, format!("bugs@example.com#w10:{}", t / 600_000));
        assert_eq!(item.sender_attribute, sender_attribute("alerts@mon.example"));
        assert_eq!(item.sender_attribute.len(), 13);
        assert!(item.expires_s > t / 1000 + COUNTER_TTL_AFTER_WINDOW_S);
        // The same window until it turns, then the next one (counts start from zero).
        let end = (t / 600_000 + 1) * 600_000;
        assert_eq!(counter_item("bugs@example.com", "a@b", end - 1, &b).key, item.key);
        assert_ne!(counter_item("bugs@example.com", "a@b", end, &b).key, item.key);
        assert_ne!(sender_attribute("a@b.example"), sender_attribute("c@b.example"));
        assert_eq!(sender_attribute(""), sender_attribute("<>"));
    }

    #[test]
    fn beyond_a_bound_the_mail_is_held_and_the_first_one_over_tells() {
        let b = StormBounds {
            sender_max: 15,
            route_max: 300,
            window_minutes: 10,
        };
        let at = |sender, route| storm_hold(Counts { route, sender }, &b);
        assert_eq!(at(15, 15), None, "the bound itself still goes in");
        let first = at(16, 16).unwrap();
        assert_eq!((first.cause, first.first), (HoldCause::StormSender, true));
        assert!(first.to_string().starts_with("storm-sender: mail 16 from this sender"));
        assert!(!at(17, 17).unwrap().first, "one notice per storm, not per mail");
        let route = at(1, 301).unwrap();
        assert_eq!((route.cause, route.first), (HoldCause::StormRoute, true));
        assert_eq!(at(400, 40_000).unwrap().cause, HoldCause::StormSender);
        let off = StormBounds {
            sender_max: 0,
            route_max: 0,
            window_minutes: 10,
        };
        assert!(off.off());
        assert_eq!(
            storm_hold(
                Counts {
                    route: 10_000,
                    sender: 10_000
                },
                &off
            ),
            None
        );
    }

    #[test]
    fn notice_keys_are_one_per_storm_and_one_per_looping_sender() {
        let a = hold_notice_key(HoldCause::StormSender, "*@Example.com", "a@x");
        assert_eq!(
            a,
            format!("notices/hold/storm-sender/_@example.com/{}", sender_attribute("a@x"))
        );
        assert_eq!(
            hold_notice_key(HoldCause::StormRoute, "bugs@x", "a@x"),
            hold_notice_key(HoldCause::StormRoute, "bugs@x", "b@x")
        );
        assert_eq!(
            hold_notice_key(HoldCause::Loop, "bugs@x", "a@x"),
            hold_notice_key(HoldCause::Loop, "sales@x", "a@x")
        );
        assert_eq!(
            loop_key("*@Example.com", "a+b@X"),
            format!("notices/loop-window/_@example.com/{}", sender_attribute("a@x"))
        );
    }
}
