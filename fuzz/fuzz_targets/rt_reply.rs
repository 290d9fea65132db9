//! RT's replies: the mail gateway's answer (any status, status line and body) and the
//! Message-ID a lookup searches for. Never a panic; the verdict follows the Perl
//! client's prefix rule, and the log summary is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::lookup::stored_message_id;
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

    let text = String::from_utf8_lossy(body);
    if let Some(id) = stored_message_id(&text) {
        assert!(!id.is_empty() && text.contains(id));
    }
});
