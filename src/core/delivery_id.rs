//! The delivery id: one header line the function puts in front of every mail it posts
//! (next to the extension header), naming this mail's post on this route:
//!
//! ```text
//! X-RT-Mailgate-Delivery: <SES message id>.<fingerprint of the post>
//! ```
//!
//! RT stores it with the mail's other headers, so "does RT hold this post?" is asked of
//! RT by this id, not by the mail's `Message-ID`: senders reuse Message-IDs (scripts,
//! appliances, `Resent-` copies), write them oddly (comments, two headers, folded, no
//! brackets) or leave them out, and RT stores whatever they wrote. A hit for the id is
//! this post and nothing else; a mail without a Message-ID is answerable too.
//!
//! The id is made only of letters, digits, `-` and `.` (SES's message ids are; another
//! id is replaced by a hash of itself), so it needs no quoting in a header or in RT's
//! `LIKE` search.

/// The header's name.
pub const HEADER_NAME: &str = "X-RT-Mailgate-Delivery";

/// One route's delivery id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryId(String);

impl DeliveryId {
    /// The id of the post with `fingerprint` (see
    /// [`crate::core::request::GatewayRequest::fingerprint`]) of SES's mail `ses_id`.
    pub fn new(ses_id: &str, fingerprint: &str) -> Self {
        let plain =
            |s: &str| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let ses_part = if plain(ses_id) {
            ses_id.to_string()
        } else {
            format!("h{}", fnv64(ses_id.as_bytes()))
        };
        let fingerprint = if plain(fingerprint) {
            fingerprint.to_string()
        } else {
            fnv64(fingerprint.as_bytes())
        };
        Self(format!("{ses_part}.{fingerprint}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The header line put in front of the mail, LF-terminated as the extension header.
    pub fn header_line(&self) -> Vec<u8> {
        format!("{HEADER_NAME}: {}\n", self.0).into_bytes()
    }

    /// What RT's search looks for in the stored headers (`LIKE`, any case).
    pub fn search_text(&self) -> String {
        format!("{HEADER_NAME}: {}", self.0)
    }

    /// True when a stored header block (as RT's API returns an attachment's `Headers`)
    /// carries this id as a header of its own: the search's answer is checked here
    /// rather than trusted, since RT silently drops a condition it can't search on.
    pub fn is_in(&self, headers: &str) -> bool {
        headers.lines().any(|line| {
            line.split_once(':')
                .is_some_and(|(name, value)| name.trim().eq_ignore_ascii_case(HEADER_NAME) && value.trim() == self.0)
        })
    }
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// FNV-1a, 64 bits, as hex (stable across builds, as the fingerprint).
pub(crate) fn fnv64(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ses_id_and_a_fingerprint_make_a_plain_header() {
        let id = DeliveryId::new("0000014a-f4d4-4f89-93b3-a3e1e4aef1d0", "af64724c8602eb6e");
        assert_eq!(
            id.header_line(),
            b"X-RT-Mailgate-Delivery: 0000014a-f4d4-4f89-93b3-a3e1e4aef1d0.af64724c8602eb6e\n".to_vec()
        );
        assert_eq!(
            DeliveryId::new("0000014a-f4d4-4f89-93b3-a3e1e4aef1d0", "af64724c8602eb6e"),
            id
        );
    }

    #[test]
    fn odd_ids_are_hashed_never_quoted() {
        for odd in ["a%b", "a_b", "", "x\r\nBcc: victim@example.org", &"a".repeat(500)] {
            let id = DeliveryId::new(odd, "af64724c8602eb6e");
            assert!(
                id.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
                "{id}"
            );
            assert!(id.as_str().len() < 60);
        }
        assert_ne!(DeliveryId::new("a%b", "f"), DeliveryId::new("a_b", "f"));
    }

    #[test]
    fn only_a_header_of_its_own_matches() {
        let id = DeliveryId::new("m1", "af64724c8602eb6e");
        assert!(id.is_in("Subject: x\nX-RT-Mailgate-Delivery: m1.af64724c8602eb6e\nFrom: a@b\n"));
        assert!(id.is_in("x-rt-mailgate-delivery:   m1.af64724c8602eb6e  \r\n"));
        // Another route of the same mail, a longer id, or the id quoted in a body: no.
        assert!(!id.is_in("X-RT-Mailgate-Delivery: m1.0000000000000000\n"));
        assert!(!id.is_in("X-RT-Mailgate-Delivery: m1.af64724c8602eb6e0\n"));
        assert!(!id.is_in("Subject: X-RT-Mailgate-Delivery: m1.af64724c8602eb6e\n"));
    }
}
