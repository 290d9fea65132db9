//! The invocation's deadline: Lambda gives it as epoch milliseconds in the context; the
//! handler works with a monotonic `Instant`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The deadline `deadline_ms` (epoch milliseconds) as an `Instant`, seen at `now`
/// (epoch `now_ms`). A deadline already past is `now`: no time left, never "no
/// deadline" (`None` is kept for callers that have none, such as the replay command).
pub fn deadline_at(deadline_ms: u64, now_ms: u64, now: Instant) -> Instant {
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
        assert_eq!(deadline_at(10_500, 10_000, now), now + Duration::from_millis(500));
    }

    #[test]
    fn a_deadline_in_the_past_leaves_no_time() {
        let now = Instant::now();
        assert_eq!(deadline_at(9_000, 10_000, now), now);
        assert_eq!(deadline_at(0, u64::MAX, now), now);
        assert!(deadline_from_epoch_ms(0) <= Instant::now());
    }
}
