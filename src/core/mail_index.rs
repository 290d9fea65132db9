//! The trace's index: for every mail the function gets, small objects under the records
//! prefix, one per key a person searches by, named so that a search lists one key's
//! prefix and, within it, only the days asked for:
//!
//! ```text
//! <records prefix>index/address/<address>/<YYYY-MM-DD>/<HHMMSS>-<SES message id>
//! <records prefix>index/message-id/<Message-ID>/<YYYY-MM-DD>/<HHMMSS>-<SES message id>
//! ```
//!
//! - `address`: the envelope sender and each address of the `From` header (SES often
//!   rewrites the envelope sender, e.g. to `…@amazonses.com`; a person knows the From),
//!   without case; `message-id`: the `Message-ID` header without angle brackets.
//! - The time is SES's receipt time (UTC), so Lambda's retries write the same keys, and
//!   S3 lists a key's entries oldest first.
//! - Each object holds [`IndexedMail`]: who sent it to whom, as the event said, so a mail
//!   none of whose recipients was routed (no route records) is found too.
//! - Key parts a sender chose are percent-encoded (nothing but `A-Z a-z 0-9 . _ @ + = -`
//!   stays), and a part too long for a key is replaced by a hash of itself; the entry's
//!   content is checked against the search, so two values sharing a hash never mix.
//!
//! The objects expire with the records (the template's lifecycle rule for the records
//! prefix) and the function writes them with the records' grant. Pure: keys and texts.

use serde::{Deserialize, Serialize};

/// Where the index lives, under the records prefix.
pub const INDEX_DIR: &str = "index/";

/// At most this many `From` addresses of one mail are indexed (senders choose them).
pub const MAX_FROM_ADDRESSES: usize = 3;

/// The longest encoded key part kept as it is; a longer one is hashed.
const MAX_KEY_PART: usize = 200;

/// What an index entry holds: the mail as its SES event described it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedMail {
    /// SES's message id.
    pub ses_id: String,
    /// SES's receipt time (epoch ms).
    pub received_ms: u64,
    /// The envelope sender.
    #[serde(default)]
    pub sender: String,
    /// The addresses of the `From` header.
    #[serde(default)]
    pub from: Vec<String>,
    /// The `Message-ID` header, as SES read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The envelope recipients of this receipt rule.
    #[serde(default)]
    pub recipients: Vec<String>,
}

impl IndexedMail {
    /// The stored JSON.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored entry (`None` when it is not one).
    pub fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The keys (under the records prefix) of this mail's index entries: its envelope
    /// sender, its From addresses (at most [`MAX_FROM_ADDRESSES`]) and its Message-ID,
    /// each once.
    pub fn entry_keys(&self) -> Vec<String> {
        let mut keys: Vec<IndexKey> = vec![IndexKey::address(&self.sender)];
        for from in self.from.iter().take(MAX_FROM_ADDRESSES) {
            let key = IndexKey::address(from);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        if let Some(id) = self.message_id.as_deref().filter(|id| !bare_message_id(id).is_empty()) {
            keys.push(IndexKey::message_id(id));
        }
        keys.iter().map(|k| k.entry(self.received_ms, &self.ses_id)).collect()
    }

    /// True when `address` is the envelope sender or one of the From addresses.
    pub fn sent_by(&self, address: &str) -> bool {
        let wanted = normal_address(address);
        normal_address(&self.sender) == wanted || self.from.iter().any(|f| normal_address(f) == wanted)
    }
}

/// An address as the index compares it: trimmed, without angle brackets, without case.
/// The null sender (`<>`, a bounce's) is `<>`.
pub fn normal_address(address: &str) -> String {
    let bare = address.trim().trim_start_matches('<').trim_end_matches('>').trim();
    if bare.is_empty() {
        "<>".to_string()
    } else {
        bare.to_lowercase()
    }
}

/// A `Message-ID` as compared: without angle brackets and surrounding space, so
/// `<a@b>` and `a@b` name the same mail.
pub fn bare_message_id(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

/// The addresses of a `From` header's values (as SES's `commonHeaders.from` gives them:
/// `Alice <alice@example.com>`, `"Smith, Bob" <bob@example.com>`, groups, comments,
/// encoded words), read as a mail reader reads them.
pub fn from_addresses(values: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for value in values {
        let header = format!("From: {}\r\n\r\n", value.replace(['\r', '\n'], " "));
        let Some(message) = mail_parser::MessageParser::new().parse_headers(header.as_bytes()) else {
            continue;
        };
        let Some(from) = message.from() else { continue };
        for address in from.iter() {
            if let Some(text) = address.address() {
                let text = normal_address(text);
                if text.contains('@') && !found.contains(&text) {
                    found.push(text);
                }
            }
        }
    }
    found
}

/// One searchable value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexKey {
    /// An envelope sender or From address (normalised by [`normal_address`]).
    Address(String),
    /// A `Message-ID` (bare, as [`bare_message_id`]).
    MessageId(String),
}

impl IndexKey {
    /// The key of an address.
    pub fn address(address: &str) -> Self {
        Self::Address(normal_address(address))
    }

    /// The key of a `Message-ID` header.
    pub fn message_id(id: &str) -> Self {
        Self::MessageId(bare_message_id(id).to_string())
    }

    /// This value's prefix under the records prefix: `index/address/<part>/`.
    pub fn prefix(&self) -> String {
        let (kind, value) = match self {
            Self::Address(a) => ("address", a),
            Self::MessageId(m) => ("message-id", m),
        };
        format!("{INDEX_DIR}{kind}/{}/", key_part(value))
    }

    /// The entry of mail `ses_id`, received at `received_ms`.
    pub fn entry(&self, received_ms: u64, ses_id: &str) -> String {
        format!("{}{}-{}", self.prefix(), time_part(received_ms), key_part(ses_id))
    }

    /// The key to list after (S3's `start-after`) so that entries received before
    /// `since_ms` are skipped.
    pub fn start_after(&self, since_ms: u64) -> String {
        // Entries of the same second come after `<time>-`; `<time>` sorts before them.
        format!("{}{}", self.prefix(), time_part(since_ms))
    }

    /// The last key (inclusive) of the entries received up to `until_ms`.
    pub fn end_at(&self, until_ms: u64) -> String {
        // `~` sorts after every character of an encoded SES id.
        format!("{}{}-~", self.prefix(), time_part(until_ms))
    }
}

/// `YYYY-MM-DD/HHMMSS` (UTC) of an epoch-ms time.
pub fn time_part(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms.min(i64::MAX as u64) as i64)
        .unwrap_or_default()
        .format("%Y-%m-%d/%H%M%S")
        .to_string()
}

/// When an entry was received (epoch ms, to the second) and its SES id, from its key's
/// part after the value's prefix (`YYYY-MM-DD/HHMMSS-<id>`).
pub fn parse_entry(rest: &str) -> Option<(u64, String)> {
    let (day, rest) = rest.split_once('/')?;
    let (time, id) = rest.split_once('-')?;
    let when = chrono::NaiveDateTime::parse_from_str(&format!("{day} {time}"), "%Y-%m-%d %H%M%S").ok()?;
    let ms = when.and_utc().timestamp_millis();
    Some((u64::try_from(ms).ok()?, decode_part(id)?))
}

/// A value as one key part: percent-encoded, or hashed when too long.
pub fn key_part(value: &str) -> String {
    let mut out = String::new();
    for (i, b) in value.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'+' | b'=' | b'-') || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        return "%00".to_string();
    }
    if out.len() > MAX_KEY_PART {
        return format!("%23{}", crate::core::delivery_id::fnv64(value.as_bytes()));
    }
    out
}

/// A key part back (an SES id: never hashed, as it is short).
fn decode_part(part: &str) -> Option<String> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> IndexedMail {
        IndexedMail {
            ses_id: "0100018c4d5e6f70-abc".into(),
            received_ms: 1_700_000_000_000, // 2023-11-14T22:13:20Z
            sender: "bounce+x1@Mailer.example".into(),
            from: vec!["alice@customer.example".into()],
            message_id: Some("<m1@customer.example>".into()),
            recipients: vec!["support@example.com".into()],
        }
    }

    #[test]
    fn a_mail_is_indexed_by_envelope_sender_from_and_message_id_under_its_day() {
        assert_eq!(
            mail().entry_keys(),
            [
                "index/address/bounce+x1@mailer.example/2023-11-14/221320-0100018c4d5e6f70-abc",
                "index/address/alice@customer.example/2023-11-14/221320-0100018c4d5e6f70-abc",
                "index/message-id/m1@customer.example/2023-11-14/221320-0100018c4d5e6f70-abc",
            ]
        );
        // The same address twice (From = envelope sender) is one entry; no Message-ID, none.
        let plain = IndexedMail {
            from: vec!["BOUNCE+x1@mailer.example".into()],
            message_id: None,
            ..mail()
        };
        assert_eq!(plain.entry_keys().len(), 1);
    }

    #[test]
    fn an_entry_names_its_time_and_mail() {
        let key = IndexKey::address("Alice@Customer.example");
        let entry = key.entry(1_700_000_000_999, "ses/odd id");
        let rest = entry.strip_prefix(&key.prefix()).unwrap();
        assert_eq!(rest, "2023-11-14/221320-ses%2Fodd%20id");
        assert_eq!(parse_entry(rest), Some((1_700_000_000_000, "ses/odd id".to_string())));
        // A search from a time lists from that second on, in key order.
        let after = key.start_after(1_700_000_000_000);
        assert!(after.as_str() < entry.as_str());
        assert!(key.start_after(1_700_000_001_000).as_str() > entry.as_str());
        assert!(key.end_at(1_700_000_000_000).as_str() >= entry.as_str());
        assert!(key.end_at(1_699_999_999_000).as_str() < entry.as_str());
        assert_eq!(parse_entry("garbage"), None);
    }

    #[test]
    fn sender_chosen_values_make_safe_bounded_keys() {
        for hostile in ["../../x", "a/b@c", "<>", "", "$(id)@x", &"a".repeat(900), "\n\r\u{0}"] {
            let prefix = IndexKey::message_id(hostile).prefix();
            let part = prefix
                .strip_prefix("index/message-id/")
                .and_then(|p| p.strip_suffix('/'))
                .unwrap();
            assert!(!part.is_empty() && part.len() <= MAX_KEY_PART, "{hostile:?}: {part}");
            assert!(!part.contains('/') && !part.starts_with('.'), "{hostile:?}: {part}");
            assert!(part.bytes().all(|b| b.is_ascii_graphic()), "{hostile:?}: {part}");
        }
        // Different long values get different keys.
        assert_ne!(
            IndexKey::message_id(&"a".repeat(900)).prefix(),
            IndexKey::message_id(&"b".repeat(900)).prefix()
        );
    }

    #[test]
    fn from_headers_are_read_as_a_mail_reader_reads_them() {
        let values = vec![
            "Alice Example <Alice@Customer.example>".to_string(),
            "\"Smith, Bob\" <bob@b.example>, carol@c.example (Carol)".to_string(),
            "=?UTF-8?B?w4RsaWNl?= <alice@customer.example>".to_string(),
            "undisclosed-recipients:;".to_string(),
        ];
        assert_eq!(
            from_addresses(&values),
            ["alice@customer.example", "bob@b.example", "carol@c.example"]
        );
    }

    #[test]
    fn a_mail_is_sent_by_its_envelope_sender_or_a_from_address() {
        let m = mail();
        assert!(m.sent_by("<Bounce+X1@mailer.example>"));
        assert!(m.sent_by(" ALICE@customer.example "));
        assert!(!m.sent_by("mallory@customer.example"));
        let bounce = IndexedMail {
            sender: String::new(),
            ..mail()
        };
        assert!(bounce.sent_by("<>"));
    }

    #[test]
    fn an_entry_reads_back() {
        let m = mail();
        assert_eq!(IndexedMail::from_text(&m.to_text()), Some(m));
        assert_eq!(IndexedMail::from_text("delivered"), None);
    }
}
