//! The invocation's deadline: Lambda gives it as epoch milliseconds in the context; the
//! handler works with a monotonic `Instant`. A deadline already past leaves no time.
//!
//! cargo-lambda's runtime emulator (the tests' Lambda) sends the function's timeout
//! itself (`600000`) where Lambda sends an epoch time. A value too small to be an
//! epoch time of this century ([`EPOCH_MS_FLOOR`]) is read that way, as milliseconds
//! from now: the function stays bounded, and a real deadline just past still means no
//! time left.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Epoch milliseconds of 2001-09-09: no invocation's deadline is earlier; a smaller
/// value is a time budget (see the module doc).
pub const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// The deadline `deadline_ms` (epoch milliseconds) as an `Instant`, seen at `now`
/// (epoch `now_ms`). A deadline already past is `now`: no time left, never "no
/// deadline" (`None` is kept for callers that have none, such as the replay command).
pub fn deadline_at(deadline_ms: u64, now_ms: u64, now: Instant) -> Instant {
    if deadline_ms < EPOCH_MS_FLOOR {
        return now + Duration::from_millis(deadline_ms);
    }
    now + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

/// The deadline `deadline_ms` (epoch milliseconds) as an `Instant`, from the clock now.
/// A clock before 1970 (never on Lambda) counts as the deadline reached.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now = Instant::now();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(u64::MAX, |d| d.as_millis() as u64);
    deadline_at(deadline_ms, now_ms, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_left_is_the_difference() {
        let now = Instant::now();
        let now_ms = 1_796_000_000_000;
        assert_eq!(deadline_at(now_ms + 500, now_ms, now), now + Duration::from_millis(500));
    }

    #[test]
    fn a_deadline_in_the_past_leaves_no_time() {
        let now = Instant::now();
        let now_ms = 1_796_000_000_000;
        assert_eq!(deadline_at(now_ms - 1, now_ms, now), now);
        assert_eq!(deadline_at(now_ms - 3_600_000, now_ms, now), now);
        assert_eq!(deadline_at(EPOCH_MS_FLOOR, u64::MAX, now), now);
        let past = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 - 5_000;
        assert!(deadline_from_epoch_ms(past) <= Instant::now());
    }

    #[test]
    fn the_emulators_timeout_is_a_budget_from_now() {
        let now = Instant::now();
        assert_eq!(
            deadline_at(600_000, 1_796_000_000_000, now),
            now + Duration::from_secs(600)
        );
        assert_eq!(deadline_at(0, 1_796_000_000_000, now), now);
    }
}
