//! The header block and DKIM selection (what decides whether a sender is answered):
//! whatever the mail's first bytes and however they arrive in chunks,
//! - the collected block is a prefix of the mail, within the bound, and the same for any
//!   chunking;
//! - a block judged whole has one DKIM domain for every `DKIM-Signature` field an
//!   independent line scan finds (no signature can hide from the guard), and a block
//!   judged anything else never lets a sender be told.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::headers::{HeaderBlockCollector, HeaderCheck, MailSummary, MAX_HEADER_BLOCK};
use rt_mailgate::core::outcome::{sender_may_be_told, SenderFacts};

fn collect(chunks: &[&[u8]]) -> MailSummary {
    let mut collector = HeaderBlockCollector::new();
    for chunk in chunks {
        collector.push(chunk);
    }
    let block = collector.finish();
    MailSummary::from_collected(&block)
}

/// DKIM-Signature fields by a plain scan: a line (CRLF or LF) that starts with the name,
/// any case, then optional blanks and a colon; up to the first empty line.
fn signature_lines(block: &[u8]) -> usize {
    let mut count = 0;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let name = b"dkim-signature";
        if line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name) {
            let rest = &line[name.len()..];
            let rest = &rest[rest.iter().take_while(|b| matches!(b, b' ' | b'\t')).count()..];
            if rest.first() == Some(&b':') {
                count += 1;
            }
        }
    }
    count
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size: the same bytes must give the same answer.
    let Some((&size, mail)) = data.split_first() else {
        return;
    };
    let size = usize::from(size).max(1);
    let chunks: Vec<&[u8]> = mail.chunks(size).collect();
    let whole = collect(&[mail]);
    assert_eq!(collect(&chunks), whole, "chunking changed the summary");

    let mut collector = HeaderBlockCollector::new();
    collector.push(mail);
    let block = collector.finish();
    assert!(mail.starts_with(&block.bytes), "the block is not the mail's start");
    assert!(block.bytes.len() <= MAX_HEADER_BLOCK);
    if block.cut {
        assert_eq!(whole.header, HeaderCheck::TooLong);
    }
    if whole.header.is_whole() {
        assert_eq!(whole.dkim_domains.len(), signature_lines(&block.bytes), "a signature hid");
    }

    let facts = SenderFacts {
        envelope_sender: "alice@customer.example".into(),
        from: whole.from.clone(),
        spf_pass: true,
        dkim_pass: true,
        dmarc: "PASS".into(),
        dkim_domains: whole.dkim_domains.clone(),
        header: whole.header,
        machine_generated: whole.machine_generated,
    };
    if !whole.header.is_whole() {
        assert!(!sender_may_be_told(&facts), "told on a header not read whole");
    }
});
