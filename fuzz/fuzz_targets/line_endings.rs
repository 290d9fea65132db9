//! CRLF to LF on the mail's bytes (`core::line_endings`), however they arrive in chunks:
//! - the result is the same for any chunking, and is exactly the mail with each `\r\n`
//!   turned into `\n` (an independent byte scan), every lone `\r` kept: nothing else is
//!   added, lost or reordered;
//! - for a mail in the SMTP form (every line ends in CRLF, no lone CR or LF), turning
//!   each LF back into CRLF gives the mail's bytes back exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::line_endings::CrlfToLf;

fn convert(chunks: &[&[u8]]) -> Vec<u8> {
    let mut converter = CrlfToLf::new();
    let mut out = Vec::new();
    for chunk in chunks {
        converter.push(chunk, &mut out);
    }
    converter.finish(&mut out);
    out
}

/// The rule, byte by byte: a `\r` right before a `\n` goes, every other byte stays.
fn reference(mail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mail.len());
    for (i, &byte) in mail.iter().enumerate() {
        if byte == b'\r' && mail.get(i + 1) == Some(&b'\n') {
            continue;
        }
        out.push(byte);
    }
    out
}

fn lf_to_crlf(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for &byte in text {
        if byte == b'\n' {
            out.push(b'\r');
        }
        out.push(byte);
    }
    out
}

/// Every line ends in CRLF: no lone CR, no bare LF.
fn is_smtp_form(mail: &[u8]) -> bool {
    mail.iter().enumerate().all(|(i, &byte)| match byte {
        b'\r' => mail.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && mail[i - 1] == b'\r',
        _ => true,
    })
}

fuzz_target!(|data: &[u8]| {
    // The first bytes pick chunk sizes (cycled): the same mail must give the same bytes.
    let Some((&sizes, mail)) = data.split_first() else {
        return;
    };
    let whole = convert(&[mail]);
    assert_eq!(whole, reference(mail), "not exactly CRLF to LF");

    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut rest = mail;
    let mut step = 0u32;
    while !rest.is_empty() {
        // Sizes 1..=7, varied along the mail; a 0 adds an empty chunk first.
        let size = usize::from(sizes.rotate_left(step) & 7);
        if size == 0 {
            chunks.push(&[]);
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        chunks.push(chunk);
        rest = tail;
        step += 3;
    }
    assert_eq!(convert(&chunks), whole, "chunking changed the result");
    // A chunk boundary between CR and LF, everywhere.
    for (i, _) in mail.iter().enumerate().filter(|&(_, &b)| b == b'\r').take(8) {
        assert_eq!(
            convert(&[&mail[..=i], &mail[i + 1..]]),
            whole,
            "split after the CR at {i}"
        );
    }

    if is_smtp_form(mail) {
        assert_eq!(lf_to_crlf(&whole), mail, "the SMTP form does not come back");
        assert!(!whole.contains(&b'\r'));
    }
    let crlf_pairs = mail.windows(2).filter(|w| *w == b"\r\n").count();
    assert_eq!(whole.len(), mail.len() - crlf_pairs);
});
