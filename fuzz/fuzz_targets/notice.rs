//! Notice building (`core::notice`): whatever the sender chose (Message-ID, subject,
//! envelope sender, recipients, split on NUL bytes in the input),
//! - no CR or LF from the input reaches a header: the MIME message's header block holds
//!   only the headers the builder writes, each once, every other line a folded
//!   continuation, and every line ends in CRLF;
//! - the notices' subjects are one line, and their bodies have the same lines as with
//!   harmless values (the sender can't add a line), within a bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::notice::{
    mime_message, operator_notice, sender_notice, GivenUpMail, GivenUpRoute, QUOTED_CHARS,
};
use rt_mailgate::core::outcome::GiveUpClass;

const HEADERS: [&str; 10] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Auto-Submitted",
    "Precedence",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

fn mail(fields: &[&str], reason: &str) -> GivenUpMail {
    let field = |i: usize| fields.get(i).map(|f| f.to_string());
    GivenUpMail {
        ses_message_id: "0000000000000000-ses".into(),
        message_id: field(0),
        subject: field(1),
        sender: field(2).unwrap_or_default(),
        routes: vec![GivenUpRoute {
            route: "*@desk.example".into(),
            recipients: fields.iter().skip(3).map(|r| r.to_string()).collect(),
            reason: reason.into(),
            class: GiveUpClass::AddressMiss,
        }],
    }
}

/// The header block of a notice's MIME message is what the builder writes, nothing more.
fn check_headers(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let (block, _) = text.split_once("\r\n\r\n").expect("a header block and a body");
    let mut seen: Vec<&str> = Vec::new();
    for line in block.split("\r\n") {
        assert!(
            !line.contains(['\r', '\n']),
            "a bare CR or LF in the header block: {line:?}"
        );
        assert!(line.len() <= 998, "a header line over 998 octets");
        if line.starts_with([' ', '\t']) {
            assert!(!seen.is_empty(), "a continuation before any header");
            continue;
        }
        let (name, _) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not a header line: {line:?}"));
        assert!(HEADERS.contains(&name), "an unexpected header {name:?}");
        assert!(!seen.contains(&name), "{name} twice");
        seen.push(name);
    }
    for name in ["From", "To", "Subject", "Auto-Submitted"] {
        assert!(seen.contains(&name), "no {name}");
    }
    assert!(
        block.contains("\r\nAuto-Submitted: auto-replied\r\n") || block.starts_with("Auto-Submitted: auto-replied\r\n")
    );
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let fields: Vec<&str> = text.split('\0').take(40).collect();
    let harmless: Vec<String> = fields
        .iter()
        .enumerate()
        .map(|(i, _)| format!("field{i}@x.example"))
        .collect();
    let harmless: Vec<&str> = harmless.iter().map(String::as_str).collect();
    let reason = "RT has no queue or action for this address";

    let fuzzed = mail(&fields, reason);
    let plain = mail(&harmless, reason);
    for (notice, baseline) in [
        (
            operator_notice("ops@example.com", &fuzzed),
            operator_notice("ops@example.com", &plain),
        ),
        (sender_notice(&fuzzed), sender_notice(&plain)),
    ] {
        assert!(
            !notice.subject.contains(char::is_control),
            "a control character in the subject"
        );
        assert_eq!(
            notice.body.split('\n').count(),
            baseline.body.split('\n').count(),
            "the sender changed the body's lines"
        );
        assert!(
            notice.body.chars().count() <= 1500 + 24 * (QUOTED_CHARS + 3),
            "an unbounded body"
        );
        assert!(notice.subject.chars().count() <= 200 + QUOTED_CHARS);
        check_headers(&mime_message("rt@example.com", &notice, 1_795_000_000));
    }

    // The reason may quote a name from the address (a queue RT lacks): still one
    // subject line, and still nothing in the header block.
    let quoting = mail(&fields, fields.first().copied().unwrap_or_default());
    let notice = operator_notice("ops@example.com", &quoting);
    assert!(!notice.subject.contains(char::is_control));
    check_headers(&mime_message("rt@example.com", &notice, 1_795_000_000));
});
