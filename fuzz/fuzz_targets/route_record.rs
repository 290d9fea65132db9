//! Route records (`core::route_record`), as read back from the bucket: any stored text
//! (ours, an older release's bare word, a truncated or foreign object) gives a claim,
//! never a panic, at any time and timeout. A record read writes back to the same
//! record; a settled record stands outside a replay; an unreadable one is taken over
//! only after asking RT; a lease is held only by a `posting` record.
//!
//! Input: 8 bytes of "now" (ms), 2 bytes of RT timeout (s), a replay byte, then the text.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::route_record::{claim, Claim, Replaying, RouteRecord, RouteState};

fuzz_target!(|data: &[u8]| {
    if data.len() < 11 {
        return;
    }
    let now_ms = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let rt_timeout = Duration::from_secs(u64::from(u16::from_le_bytes([data[8], data[9]])));
    let replaying = match data[10] % 3 {
        0 => Replaying::No,
        1 => Replaying::Yes,
        _ => Replaying::ScreenedToo,
    };
    let text = String::from_utf8_lossy(&data[11..]);

    let record = RouteRecord::from_text(&text);
    if let Some(record) = &record {
        let written = record.to_text();
        assert_eq!(
            RouteRecord::from_text(&written).as_ref(),
            Some(record),
            "{written} reads back otherwise"
        );
        assert!(
            !record.lease_holds(now_ms) || record.state == RouteState::Posting,
            "a lease held by a settled record"
        );
    }
    match claim(&text, now_ms, replaying, rt_timeout) {
        Claim::Settled(state) => {
            assert!(state.is_settled());
            assert_eq!(record.map(|r| r.state), Some(state));
        }
        Claim::KeptDropped(_) => {
            assert_eq!(replaying, Replaying::Yes);
            assert_eq!(record.map(|r| r.state), Some(RouteState::GivenUp));
        }
        Claim::Held { .. } => {
            assert!(record.is_some_and(|r| r.state == RouteState::Posting && r.lease_holds(now_ms)));
        }
        Claim::TakeOver { ask_rt, .. } => match record {
            None => assert!(ask_rt, "an unreadable record taken over without asking RT"),
            Some(r) => {
                assert!(
                    replaying != Replaying::No || !r.state.is_settled(),
                    "a settled record taken over"
                );
                if matches!(r.state, RouteState::Posting | RouteState::Unsure) {
                    assert!(ask_rt, "RT may hold it, yet not asked");
                }
            }
        },
    }
});
