//! The few header fields the gateway itself looks at: Message-ID for every log line,
//! and (for notices) who sent the mail, which domains signed it (DKIM `d=`), and
//! whether it was machine-generated. The
//! message itself is never changed; only its header block is parsed, with mail-parser.

/// Header blocks larger than this are cut (a mail's header is rarely over a few KB;
/// SES itself truncates at 10 KB). Bounds memory whatever the input.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Collects the header block (up to the first empty line) from the start of a mail,
/// chunk by chunk, so the body never has to be held in memory.
#[derive(Debug, Default)]
pub struct HeaderBlockCollector {
    block: Vec<u8>,
    done: bool,
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
        }
    }

    /// The header block collected so far.
    pub fn finish(self) -> Vec<u8> {
        self.block
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
    /// string for a signature without a readable `d=` (it aligns with nothing).
    pub dkim_domains: Vec<String>,
}

impl MailSummary {
    /// Parses a header block; unparseable input gives an empty summary, never an error.
    pub fn from_header_block(block: &[u8]) -> Self {
        let Some(message) = mail_parser::MessageParser::new().parse_headers(block) else {
            return Self::default();
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
        Self {
            message_id: message.message_id().map(str::to_string),
            from: message
                .from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_string),
            subject: message.subject().map(str::to_string),
            machine_generated: auto_submitted || precedence || listed,
            dkim_domains: message
                .headers()
                .iter()
                .filter(|h| h.name().eq_ignore_ascii_case("DKIM-Signature"))
                .map(|h| h.value().as_text().map(dkim_domain).unwrap_or_default())
                .collect(),
        }
    }
}

/// The `d=` tag of a DKIM-Signature value (RFC 6376 tag list: `name=value;`,
/// whitespace allowed around both), lower-case; empty when absent.
fn dkim_domain(value: &str) -> String {
    value
        .split(';')
        .filter_map(|tag| tag.split_once('='))
        .find(|(name, _)| name.trim() == "d")
        .map(|(_, domain)| {
            let domain: String = domain.chars().filter(|c| !c.is_whitespace()).collect();
            domain.trim_end_matches('.').to_ascii_lowercase()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = HeaderBlockCollector::new();
        for chunk in chunks {
            c.push(chunk);
        }
        c.finish()
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
    fn garbage_gives_an_empty_summary() {
        assert_eq!(MailSummary::from_header_block(b"\x00\xff\xfe").message_id, None);
        assert_eq!(MailSummary::from_header_block(b""), MailSummary::default());
    }
}
