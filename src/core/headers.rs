//! The few header fields the gateway itself looks at: Message-ID for every log line,
//! and (for notices) who sent the mail, which domains signed it (DKIM `d=`), and
//! whether it was machine-generated. The message itself is never changed; only its
//! header block is read.
//!
//! A sender notice trusts what this module reads, so the block is also checked
//! ([`HeaderCheck`]): read whole (within [`MAX_HEADER_BLOCK`]), one line ending
//! throughout (a bare LF pair inside a CRLF block ends the header for some readers and
//! not for others, so a signature could hide behind it), every line a field or a
//! continuation, at most one `From`. Anything else is not an error (the mail is still
//! posted), only a reason never to answer it. DKIM signatures are found by this
//! module's own field scan, which is at least as lenient as a verifier
//! (`DKIM-Signature :` with a space counts), so none can hide from it in a block that
//! passed the check.

/// Header blocks larger than this are cut (a mail's header is rarely over a few KB;
/// SES itself truncates at 10 KB in its event). Bounds memory whatever the input; a
/// block cut here is [`HeaderCheck::TooLong`].
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Collects the header block (up to the first empty line) from the start of a mail,
/// chunk by chunk, so the body never has to be held in memory. Feed it the mail's bytes
/// as stored (before any line-end conversion), so the check sees the sender's bytes.
#[derive(Debug, Default)]
pub struct HeaderBlockCollector {
    block: Vec<u8>,
    done: bool,
    cut: bool,
}

/// A collected header block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    /// The block, its closing empty line included when there was one.
    pub bytes: Vec<u8>,
    /// No empty line came within [`MAX_HEADER_BLOCK`]: the block was cut.
    pub cut: bool,
}

impl HeaderBlockCollector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk of the mail.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        let start = self.block.len().saturating_sub(3);
        let room = MAX_HEADER_BLOCK - self.block.len();
        self.block.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if let Some(end) = find_blank_line(&self.block[start..]) {
            self.block.truncate(start + end);
            self.done = true;
        } else if self.block.len() >= MAX_HEADER_BLOCK {
            self.done = true;
            self.cut = true;
        }
    }

    /// The header block collected (call it once the whole mail was pushed).
    pub fn finish(self) -> HeaderBlock {
        HeaderBlock {
            bytes: self.block,
            cut: self.cut,
        }
    }
}

/// Offset just past the first empty line (`\n\n` or `\n\r\n`).
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| match &bytes[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// Whether a header block can be trusted to say who sent the mail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HeaderCheck {
    /// Nothing was read (the default: fail closed).
    #[default]
    Unread,
    /// Read whole and well-formed.
    Whole,
    /// Longer than [`MAX_HEADER_BLOCK`]: only its start was read.
    TooLong,
    /// Malformed, with why.
    Malformed(&'static str),
}

impl HeaderCheck {
    /// True only for [`HeaderCheck::Whole`].
    pub fn is_whole(self) -> bool {
        self == Self::Whole
    }

    /// A few words for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unread => "header not read",
            Self::Whole => "header read whole",
            Self::TooLong => "header longer than the gateway reads",
            Self::Malformed(why) => why,
        }
    }
}

/// What the gateway knows about a mail from its header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailSummary {
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    /// The first `From` address.
    pub from: Option<String>,
    /// `Subject`.
    pub subject: Option<String>,
    /// True for `Auto-Submitted` (other than `no`), `Precedence: bulk|list|junk`, or any
    /// `List-Id`: mail that must never get an automatic answer.
    pub machine_generated: bool,
    /// The `d=` domain of every `DKIM-Signature` header, lower-case, in order; an empty
    /// string for a signature without exactly one readable `d=` (it aligns with nothing).
    pub dkim_domains: Vec<String>,
    /// Whether the block was read whole and well-formed (see [`HeaderCheck`]).
    pub header: HeaderCheck,
}

impl MailSummary {
    /// Reads a collected block: as [`Self::from_header_block`], and a cut block is
    /// [`HeaderCheck::TooLong`] whatever it holds.
    pub fn from_collected(block: &HeaderBlock) -> Self {
        let mut summary = Self::from_header_block(&block.bytes);
        if block.cut {
            summary.header = HeaderCheck::TooLong;
        }
        summary
    }

    /// Parses a header block read whole (up to and with its empty line, or the whole
    /// mail when it has no body); unparseable input gives an empty summary, never an
    /// error.
    pub fn from_header_block(block: &[u8]) -> Self {
        if block.is_empty() {
            return Self::default();
        }
        let scanned = scan_fields(block);
        let Some(message) = mail_parser::MessageParser::new().parse_headers(block) else {
            return Self {
                header: match scanned {
                    Ok(_) => HeaderCheck::Malformed("header unparseable"),
                    Err(why) => HeaderCheck::Malformed(why),
                },
                ..Self::default()
            };
        };
        let text = |name: &str| {
            message
                .header(name)
                .and_then(|v| v.as_text())
                .map(|s| s.trim().to_ascii_lowercase())
        };
        let auto_submitted = text("Auto-Submitted").is_some_and(|v| !v.is_empty() && v != "no");
        let precedence = text("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "list" | "junk"));
        let listed = message.header("List-Id").is_some();
        let (header, dkim_domains) = match scanned {
            Err(why) => (HeaderCheck::Malformed(why), Vec::new()),
            Ok(fields) => {
                let dkim: Vec<String> = named(&fields, "DKIM-Signature").map(|(_, v)| dkim_domain(v)).collect();
                let check = if named(&fields, "From").count() > 1 {
                    HeaderCheck::Malformed("several From fields")
                } else {
                    HeaderCheck::Whole
                };
                (check, dkim)
            }
        };
        Self {
            message_id: message.message_id().map(str::to_string),
            from: message
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_string),
            subject: message.subject().map(str::to_string),
            machine_generated: auto_submitted || precedence || listed,
            dkim_domains,
            header,
        }
    }
}

/// Every field of a header block as written: `(name, value)`, the value unfolded (the
/// line breaks of folding removed), undecoded and trimmed. Lenient where
/// [`MailSummary`]'s check is strict: a malformed block still yields the fields a reader
/// can make out (threading and the machine-mail screen read hints from any mail, and a
/// hint never decides who gets an answer). Reads at most [`MAX_HEADER_BLOCK`] bytes;
/// a value that is not UTF-8 is read lossily.
pub fn raw_fields(block: &[u8]) -> Vec<(String, String)> {
    let block = &block[..block.len().min(MAX_HEADER_BLOCK)];
    let Some(message) = mail_parser::MessageParser::new().parse_headers(block) else {
        return Vec::new();
    };
    message
        .root_part()
        .headers
        .iter()
        .map(|field| {
            let raw = block
                .get(field.offset_start as usize..field.offset_end as usize)
                .unwrap_or_default();
            let value: String = String::from_utf8_lossy(raw)
                .chars()
                .filter(|c| !matches!(c, '\r' | '\n'))
                .collect();
            (field.name.as_str().to_string(), value.trim().to_string())
        })
        .collect()
}

/// The fields called `name` (any case).
fn named<'a>(fields: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a (String, String)> {
    fields.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name))
}

/// The block's fields, unfolded, as `(name, value)`; or why the block is malformed.
/// The block ends at its first empty line (or its end); one line ending throughout
/// (CRLF or LF, as the first line has it), no lone CR and no NUL; every line a field
/// (`name:` with a printable name; whitespace before the colon allowed, as the obsolete
/// syntax does) or a continuation of one.
fn scan_fields(block: &[u8]) -> Result<Vec<(String, String)>, &'static str> {
    let crlf = block
        .iter()
        .position(|&b| b == b'\n')
        .is_some_and(|i| i > 0 && block[i - 1] == b'\r');
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut rest = block;
    while !rest.is_empty() {
        let (line, terminated) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                rest = &rest[i + 1..];
                (line, true)
            }
            None => (std::mem::take(&mut rest), false),
        };
        let line = match (terminated, crlf, line.strip_suffix(b"\r")) {
            (true, true, Some(line)) => line,
            (true, true, None) => return Err("a bare LF in a CRLF header"),
            (true, false, Some(_)) => return Err("a CRLF in an LF header"),
            (_, _, _) => line,
        };
        if line.is_empty() {
            // The empty line: the header ends here.
            break;
        }
        if line.contains(&b'\r') {
            return Err("a bare CR in the header");
        }
        if line.contains(&0) {
            return Err("a NUL byte in the header");
        }
        if matches!(line[0], b' ' | b'\t') {
            let Some((_, value)) = fields.last_mut() else {
                return Err("the header starts with a continuation line");
            };
            value.push_str(&String::from_utf8_lossy(line));
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err("a header line that is no field");
        };
        let name = line[..colon].trim_ascii_end();
        if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
            return Err("a header field with a malformed name");
        }
        fields.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(&line[colon + 1..]).into_owned(),
        ));
    }
    Ok(fields)
}

/// The `d=` tag of a DKIM-Signature value (RFC 6376 tag list: `name=value;`,
/// whitespace allowed around both), lower-case; empty when absent or given twice (RFC
/// 6376 makes such a signature invalid, and a verifier might read either copy).
fn dkim_domain(value: &str) -> String {
    let mut domains = value
        .split(';')
        .filter_map(|tag| tag.split_once('='))
        .filter(|(name, _)| name.trim() == "d")
        .map(|(_, domain)| {
            let domain: String = domain.chars().filter(|c| !c.is_whitespace()).collect();
            domain.trim_end_matches('.').to_ascii_lowercase()
        });
    match (domains.next(), domains.next()) {
        (Some(domain), None) => domain,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = HeaderBlockCollector::new();
        for chunk in chunks {
            c.push(chunk);
        }
        c.finish().bytes
    }

    /// The summary of a mail pushed in `chunks`, as the spool makes it.
    fn summary(chunks: &[&[u8]]) -> MailSummary {
        let mut c = HeaderBlockCollector::new();
        for chunk in chunks {
            c.push(chunk);
        }
        MailSummary::from_collected(&c.finish())
    }

    #[test]
    fn header_block_stops_at_the_first_empty_line_across_chunks() {
        assert_eq!(collect(&[b"A: 1\nB: 2\n", b"\nbody\n\nmore"]), b"A: 1\nB: 2\n\n");
        assert_eq!(collect(&[b"A: 1\r\n", b"\r", b"\nbody"]), b"A: 1\r\n\r\n");
        assert_eq!(collect(&[b"A: 1\n"]), b"A: 1\n");
    }

    #[test]
    fn header_block_is_bounded() {
        let big = vec![b'x'; MAX_HEADER_BLOCK + 10];
        assert_eq!(collect(&[&big, b"\n\n"]).len(), MAX_HEADER_BLOCK);
    }

    #[test]
    fn a_whole_well_formed_block_is_whole() {
        let crlf = summary(&[b"From: a@example.org\r\nSubject: x\r\n folded\r\n\r\nbody\n\nmore"]);
        assert_eq!(crlf.header, HeaderCheck::Whole);
        assert_eq!(
            summary(&[b"From: a@example.org\nSubject: x\n\nbody"]).header,
            HeaderCheck::Whole
        );
        // A mail without a body: the header is all of it.
        assert_eq!(summary(&[b"From: a@example.org\r\n"]).header, HeaderCheck::Whole);
        // Obsolete syntax a verifier may accept: whitespace before the colon.
        assert_eq!(summary(&[b"From : a@example.org\n\n"]).header, HeaderCheck::Whole);
        assert_eq!(MailSummary::default().header, HeaderCheck::Unread);
    }

    #[test]
    fn a_block_past_the_bound_is_too_long() {
        let mut padded = b"DKIM-Signature: v=1; d=victim.example; b=x\r\nX-Pad: ".to_vec();
        padded.extend(std::iter::repeat_n(b'a', MAX_HEADER_BLOCK));
        padded.extend_from_slice(b"\r\nDKIM-Signature: v=1; d=attacker.example; b=y\r\n\r\nbody");
        let s = summary(&[&padded[..1000], &padded[1000..]]);
        assert_eq!(s.header, HeaderCheck::TooLong);
        assert!(!s.header.is_whole());
    }

    #[test]
    fn mixed_line_ends_are_malformed() {
        // A bare LF pair inside a CRLF block hides what follows from some readers.
        let hidden = summary(&[
            b"DKIM-Signature: v=1; d=victim.example; b=x\r\nX-A: 1\n\nDKIM-Signature: v=1; d=attacker.example\r\n\r\nbody",
        ]);
        assert_eq!(hidden.header, HeaderCheck::Malformed("a bare LF in a CRLF header"));
        for (block, why) in [
            (&b"A: 1\r\nB: 2\nC: 3\r\n\r\n"[..], "a bare LF in a CRLF header"),
            (b"A: 1\nB: 2\r\n\n", "a CRLF in an LF header"),
            (b"A: 1\nB: 2\n\r\n", "a CRLF in an LF header"),
            (b"A: 1\rB: 2\n\n", "a bare CR in the header"),
            (b"A: 1\x00\n\n", "a NUL byte in the header"),
            (b" A: 1\n\n", "the header starts with a continuation line"),
            (b"A: 1\nnot a field\n\n", "a header line that is no field"),
            (b"A B: 1\n\n", "a header field with a malformed name"),
            (b"From: a@x\nFrom: b@y\n\n", "several From fields"),
        ] {
            assert_eq!(
                MailSummary::from_header_block(block).header,
                HeaderCheck::Malformed(why),
                "{}",
                String::from_utf8_lossy(block)
            );
        }
    }

    #[test]
    fn every_signature_is_found_however_spelt() {
        let s = MailSummary::from_header_block(
            b"DKIM-Signature : v=1; d=a.example; b=x\n\
              dKiM-sIgNaTuRe:\n\td=b.example; b=y\n\
              DKIM-Signature: v=1; d=c.example; d=victim.example; b=z\n\n",
        );
        assert_eq!(s.header, HeaderCheck::Whole);
        assert_eq!(s.dkim_domains, ["a.example", "b.example", ""]);
    }

    #[test]
    fn summary_reads_id_sender_and_automation() {
        let s = MailSummary::from_header_block(
            b"From: \"Alice\" <alice@example.org>\nSubject: Hi\nMessage-ID: <abc@mx>\nAuto-Submitted: auto-replied\n\n",
        );
        assert_eq!(s.message_id.as_deref(), Some("abc@mx"));
        assert_eq!(s.from.as_deref(), Some("alice@example.org"));
        assert_eq!(s.subject.as_deref(), Some("Hi"));
        assert!(s.machine_generated);
        let s = MailSummary::from_header_block(b"From: a@b\nAuto-Submitted: no\n\n");
        assert!(!s.machine_generated);
        assert!(MailSummary::from_header_block(b"Precedence: Bulk\n\n").machine_generated);
        assert!(MailSummary::from_header_block(b"List-Id: <x.lists>\n\n").machine_generated);
    }

    #[test]
    fn every_dkim_signature_domain_is_read() {
        let s = MailSummary::from_header_block(
            b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n d=Mail.Example.ORG; s=sel;\r\n\tbh=abc=; b=xyz\r\n\
              From: a@example.org\r\n\
              dkim-signature: v=1; a=rsa-sha256; d = esp.example ; s=s1; b=q\r\n\
              DKIM-Signature: v=1; s=s2; b=nodomain\r\n\r\n",
        );
        assert_eq!(s.dkim_domains, ["mail.example.org", "esp.example", ""]);
        assert!(MailSummary::from_header_block(b"From: a@b\n\n").dkim_domains.is_empty());
    }

    #[test]
    fn raw_fields_are_unfolded_and_lenient() {
        let fields =
            raw_fields(b"References: <a@x>\r\n <b@y>\r\nX-A: 1\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nBody: no\r\n");
        assert_eq!(
            fields,
            [
                ("References".to_string(), "<a@x> <b@y>".to_string()),
                ("X-A".to_string(), "1".to_string()),
                ("Subject".to_string(), "=?utf-8?q?caf=C3=A9?=".to_string()),
            ]
        );
        assert!(raw_fields(b"").is_empty());
        assert!(raw_fields(b"\x00\xff\xfe").iter().all(|(n, _)| !n.is_empty()));
    }

    #[test]
    fn garbage_gives_an_empty_summary() {
        let garbage = MailSummary::from_header_block(b"\x00\xff\xfe");
        assert_eq!(garbage.message_id, None);
        assert!(matches!(garbage.header, HeaderCheck::Malformed(_)));
        assert_eq!(MailSummary::from_header_block(b""), MailSummary::default());
    }
}
