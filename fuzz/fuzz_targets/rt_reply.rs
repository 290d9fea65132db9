//! RT's replies: the mail gateway's answer (any status, status line and body) and the
//! delivery id and ticket tags a lookup reads back from RT. Never a panic; the verdict follows the Perl
//! client's prefix rule, and the log summary is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::delivery_id::DeliveryId;
use rt_mailgate::core::lookup::subject_tags;
use rt_mailgate::core::outcome::Case;
use rt_mailgate::core::reply::{classify, Verdict};

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]) % 600, rest),
        _ => (200, data),
    };
    let answer = classify(status, "XXX Reason", body);
    let verdict = answer.verdict();
    let ok_2xx = (200..300).contains(&status);
    if ok_2xx && body.starts_with(b"not ok") {
        assert_eq!(verdict, Verdict::Rejected);
    } else if ok_2xx && body.starts_with(b"ok") {
        assert_eq!(verdict, Verdict::Delivered);
    } else {
        assert_eq!(verdict, Verdict::Retry);
    }
    assert!(!answer.summary().contains('\n'), "a summary over several lines");
    let _ = Case::from_answer(&answer).decision_word();
    let _ = answer.as_written();

    // The lookup's answer, read as RT's API returns an attachment's headers: the delivery
    // id counts only when the text really carries it.
    let text = String::from_utf8_lossy(body);
    let id = DeliveryId::new("0000000000000000-ses", "263ea9abfc60de3d");
    if id.is_in(&text) {
        assert!(text.contains(id.as_str()), "a delivery id found where there is none");
    }
    // RT's subject tags, as the lookup reads them: every number read is in the text.
    for ticket in subject_tags(&text) {
        assert!(text.contains(&ticket.to_string()), "a ticket number not in the subject");
    }
});
