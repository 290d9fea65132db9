//! The notice sent when a mail is given up: a short plain-text message that quotes the
//! reason, the Message-ID and the subject, never the mail itself. It is marked
//! `Auto-Submitted: auto-replied` so that no autoresponder (RT included) answers it.

/// One notice to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeText {
    /// Recipient.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Facts about the mail the notice is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenUpMail {
    /// SES's message id (the S3 key's last part).
    pub ses_message_id: String,
    /// The mail's own Message-ID header, if known.
    pub message_id: Option<String>,
    /// The subject, if known.
    pub subject: Option<String>,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipients concerned.
    pub recipients: Vec<String>,
    /// Why it was given up, in a sentence.
    pub reason: String,
}

/// The notice for the operator: everything needed to find and replay the mail.
pub fn operator_notice(to: &str, mail: &GivenUpMail) -> NoticeText {
    NoticeText {
        to: to.to_string(),
        subject: format!("[rt-mailgate] mail given up: {}", one_line(&mail.reason, 120)),
        body: format!(
            "A mail was not delivered to RT and will not be retried.\n\n\
             Reason:      {}\nSES id:      {}\nMessage-ID:  {}\nFrom:        {}\nTo:          {}\nSubject:     {}\n\n\
             The raw mail stays in the mail bucket until it expires. Once the cause is fixed,\n\
             re-deliver it with: rt-mailgate-replay --message-id {} --recipient <address>\n",
            mail.reason,
            mail.ses_message_id,
            mail.message_id.as_deref().unwrap_or("(none)"),
            mail.sender,
            mail.recipients.join(", "),
            one_line(mail.subject.as_deref().unwrap_or("(none)"), 200),
            mail.ses_message_id,
        ),
    }
}

/// The notice for the sender: what happened to their mail, briefly.
pub fn sender_notice(mail: &GivenUpMail) -> NoticeText {
    NoticeText {
        to: mail.sender.clone(),
        subject: format!(
            "Undelivered: {}",
            one_line(mail.subject.as_deref().unwrap_or("your message"), 150)
        ),
        body: format!(
            "Your message could not be added to our ticket system.\n\n\
             Reason:     {}\nMessage-ID: {}\nTo:         {}\n\n\
             Please contact us another way, or send a shorter message.\n",
            mail.reason,
            mail.message_id.as_deref().unwrap_or("(none)"),
            mail.recipients.join(", "),
        ),
    }
}

/// The raw MIME message for a notice. `date` is an RFC 2822 date.
pub fn mime_message(from: &str, notice: &NoticeText, date: &str) -> Vec<u8> {
    let mut message = String::new();
    for (name, value) in [
        ("From", from),
        ("To", notice.to.as_str()),
        ("Subject", &encode_header(&notice.subject)),
        ("Date", date),
        ("Auto-Submitted", "auto-replied"),
        ("Precedence", "bulk"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", "8bit"),
    ] {
        message.push_str(&format!("{name}: {}\r\n", one_line(value, 900)));
    }
    message.push_str("\r\n");
    message.push_str(&notice.body.replace("\r\n", "\n").replace('\n', "\r\n"));
    message.into_bytes()
}

/// Header-safe: no line breaks (they would start a new header), bounded length.
fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    flat.chars().take(max_chars).collect()
}

/// RFC 2047 for non-ASCII subjects.
fn encode_header(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::from("=?UTF-8?Q?");
    for &b in one_line(text, 300).as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => encoded.push(b as char),
            b' ' => encoded.push('_'),
            _ => {
                encoded.push('=');
                encoded.push(HEX[(b >> 4) as usize] as char);
                encoded.push(HEX[(b & 15) as usize] as char);
            }
        }
    }
    encoded.push_str("?=");
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> GivenUpMail {
        GivenUpMail {
            ses_message_id: "abc123".into(),
            message_id: Some("m1@customer.example".into()),
            subject: Some("Printer\r\nBcc: evil@example.org".into()),
            sender: "alice@customer.example".into(),
            recipients: vec!["bugs@example.com".into()],
            reason: "RT has no queue or action for route bugs@example.com".into(),
        }
    }

    #[test]
    fn operator_notice_quotes_reason_and_ids_not_the_mail() {
        let n = operator_notice("ops@example.com", &mail());
        assert_eq!(n.to, "ops@example.com");
        assert!(n.subject.contains("RT has no queue"));
        assert!(n.body.contains("abc123") && n.body.contains("m1@customer.example"));
        assert!(n.body.contains("rt-mailgate-replay --message-id abc123"));
    }

    #[test]
    fn mime_is_auto_submitted_and_headers_cannot_be_injected() {
        let raw = String::from_utf8(mime_message(
            "rt@example.com",
            &sender_notice(&mail()),
            "Tue, 24 Nov 2026 10:00:00 +0000",
        ))
        .unwrap();
        assert!(raw.contains("\r\nAuto-Submitted: auto-replied\r\n"));
        assert!(raw.starts_with("From: rt@example.com\r\nTo: alice@customer.example\r\n"));
        let headers = raw.split("\r\n\r\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc:")), "{headers}");
    }

    #[test]
    fn non_ascii_subjects_are_encoded() {
        assert_eq!(encode_header("Grüße"), "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=");
        assert_eq!(encode_header("plain"), "plain");
    }
}
