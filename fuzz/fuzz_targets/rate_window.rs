//! A notice window's stored text (`core::rate_limit::admit`): any text (ours, garbage,
//! times in the future, huge numbers) gives an answer, never a panic, at any time.
//! Never more than the window's limit: a send is allowed only while fewer than `max`
//! readable times lie in the span, and the text to store then holds exactly those
//! times and `now`, sorted, and reads back as full once `max` sends are in it.
//!
//! Input: 8 bytes of "now" (ms), a byte for the limit, 4 bytes of span (ms), the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::rate_limit::{admit, Admission, Window};

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let now_ms = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let window = Window {
        max: usize::from(data[8] % 64),
        span_ms: u64::from(u32::from_le_bytes(data[9..13].try_into().expect("4 bytes"))),
    };
    let text = String::from_utf8_lossy(&data[13..]);
    let since = now_ms.saturating_sub(window.span_ms);
    // The times that count, read independently of `admit`.
    let counted: Vec<u64> = text
        .split_ascii_whitespace()
        .filter_map(|t| t.parse::<u64>().ok())
        .filter(|&t| t > since)
        .collect();
    match admit(Some(&text), now_ms, window) {
        Admission::Limited => assert!(counted.len() >= window.max, "limited below the limit"),
        Admission::Send(stored) => {
            assert!(counted.len() < window.max, "a send over the limit");
            let times: Vec<u64> = stored.split(' ').map(|t| t.parse().expect("a stored time")).collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "not sorted: {stored}");
            let mut expected = counted.clone();
            expected.push(now_ms);
            expected.sort_unstable();
            assert_eq!(times, expected);
            // The next send at the same moment sees what was stored (a window has a
            // span: every window the notices use is an hour; and the clock is past 1970:
            // at 0 ms the window's start saturates at 0, and a send at 0 is not "after" it).
            if window.span_ms > 0 && now_ms > 0 {
                let again = admit(Some(&stored), now_ms, window);
                assert_eq!(again == Admission::Limited, times.len() >= window.max);
            }
        }
    }
    // Nothing stored yet: a send, unless the limit is zero.
    assert_eq!(admit(None, now_ms, window) == Admission::Limited, window.max == 0);
});
