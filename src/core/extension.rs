//! The mail extension: the `+detail` of an address (`$EXTENSION` from the MTA, or a
//! sub-address in the Lambda) and what it does.
//!
//! Like the Perl `rt-mailgate`:
//! - `--extension queue|action|ticket` (any case) puts the extension into that form field;
//! - whenever an extension is present, an `X-RT-Mail-Extension` header is put in front
//!   of the message, with trailing line ends stripped and every inner line end followed
//!   by a TAB, so the value stays one (folded) header and cannot smuggle in another.
//!
//! Deliberate differences from the Perl code (documented in docs/cli.md):
//! - with no extension the header is left out; Perl wrote the `--extension` option's
//!   own word (`ticket`) as the header value, which RT then took for an extension;
//! - `0` is a real extension (Perl's truthiness dropped it: ticket 0 or queue `0`).

use std::str::FromStr;

/// The form field that `--extension` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionField {
    /// The extension names the queue.
    Queue,
    /// The extension names the action chain.
    Action,
    /// The extension is the ticket id the mail belongs to.
    Ticket,
}

impl ExtensionField {
    /// The form field's name as RT's mail gateway expects it.
    pub fn field_name(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Action => "action",
            Self::Ticket => "ticket",
        }
    }
}

/// `--extension` was given a word other than queue, action or ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--extension must be queue, action or ticket, not `{0}`")]
pub struct UnknownExtensionField(pub String);

impl FromStr for ExtensionField {
    type Err = UnknownExtensionField;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "queue" => Ok(Self::Queue),
            "action" => Ok(Self::Action),
            "ticket" => Ok(Self::Ticket),
            _ => Err(UnknownExtensionField(s.to_string())),
        }
    }
}

impl ExtensionField {
    /// Parses the `--extension` word as given on a command line (bytes).
    pub fn from_bytes(word: &[u8]) -> Result<Self, UnknownExtensionField> {
        String::from_utf8_lossy(word).parse()
    }
}

/// The header line (ending in `\n`) to put in front of the message for `extension`,
/// byte for byte as the Perl client builds it.
pub fn extension_header(extension: &[u8]) -> Vec<u8> {
    let value = strip_trailing_line_ends(extension);
    let mut header = b"X-RT-Mail-Extension: ".to_vec();
    header.reserve(value.len() + 8);
    for &byte in value {
        header.push(byte);
        // Perl's `s/(\r*\n)/$1\t/g`: every line end is kept and gains a TAB.
        if byte == b'\n' {
            header.push(b'\t');
        }
    }
    header.push(b'\n');
    header
}

/// Perl's `s/(\r*\n)+$//`: removes every trailing run of CRs followed by an LF.
fn strip_trailing_line_ends(value: &[u8]) -> &[u8] {
    let mut end = value.len();
    while end > 0 && value[end - 1] == b'\n' {
        end -= 1;
        while end > 0 && value[end - 1] == b'\r' {
            end -= 1;
        }
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> String {
        String::from_utf8(extension_header(value.as_bytes())).unwrap()
    }

    #[test]
    fn field_names_are_case_insensitive() {
        assert_eq!("Ticket".parse::<ExtensionField>(), Ok(ExtensionField::Ticket));
        assert_eq!("QUEUE".parse::<ExtensionField>().unwrap().field_name(), "queue");
        assert_eq!("action".parse::<ExtensionField>().unwrap().field_name(), "action");
        assert_eq!(
            "owner".parse::<ExtensionField>(),
            Err(UnknownExtensionField("owner".into()))
        );
    }

    #[test]
    fn plain_value_is_one_header_line() {
        assert_eq!(header("42"), "X-RT-Mail-Extension: 42\n");
    }

    #[test]
    fn trailing_line_ends_are_stripped() {
        assert_eq!(header("bugs\r\n\n\r\r\n"), "X-RT-Mail-Extension: bugs\n");
        // A CR not followed by LF is not a line end; Perl keeps it.
        assert_eq!(header("bugs\r"), "X-RT-Mail-Extension: bugs\r\n");
    }

    #[test]
    fn inner_line_ends_are_folded_so_no_header_can_be_injected() {
        assert_eq!(
            header("a\nRT-Send-Cc: evil@x"),
            "X-RT-Mail-Extension: a\n\tRT-Send-Cc: evil@x\n"
        );
        assert_eq!(header("a\r\nb\r\r\nc"), "X-RT-Mail-Extension: a\r\n\tb\r\r\n\tc\n");
        assert_eq!(header("a\n\nb"), "X-RT-Mail-Extension: a\n\t\n\tb\n");
    }

    #[test]
    fn empty_value_after_stripping_still_makes_a_header() {
        assert_eq!(header("\n"), "X-RT-Mail-Extension: \n");
    }
}
