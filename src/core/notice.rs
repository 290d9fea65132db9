//! The notice sent when a mail is given up: a short plain-text message that quotes the
//! reason, the Message-ID and the subject, never the mail itself. It is marked
//! `Auto-Submitted: auto-replied` so that no autoresponder (RT included) answers it.

use crate::core::outcome::GiveUpClass;

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

/// One route of a mail that was given up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenUpRoute {
    /// The route's entry (its pattern in the routing table).
    pub route: String,
    /// The envelope recipients it took.
    pub recipients: Vec<String>,
    /// Why it was given up, in a sentence.
    pub reason: String,
    /// Whose doing it was: which operator window the digest counts in.
    pub class: GiveUpClass,
}

/// Facts about the mail the notice is about, and every route of it given up in this
/// invocation.
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
    /// The routes given up (at least one).
    pub routes: Vec<GivenUpRoute>,
}

/// Recipients listed per route in a notice; the rest are counted.
const LISTED_RECIPIENTS: usize = 20;
/// Routes listed in an operator digest; the rest are counted (the log has each).
const LISTED_ROUTES: usize = 20;
/// The most characters a notice quotes of anything the mail's sender chose (subject,
/// Message-ID, sender, each recipient): a notice can't carry a sender's payload.
pub const QUOTED_CHARS: usize = 200;

/// The operator's digest: one per mail, with every given-up route and its reason, and
/// everything needed to find and replay the mail.
///
/// A digest whose routes were all dropped by the mail policy (a virus, spam under
/// `drop`, a DMARC reject: [`GiveUpClass::Policy`]) says so in its subject and first
/// line: no action is needed, unlike any other give-up.
pub fn operator_notice(to: &str, mail: &GivenUpMail) -> NoticeText {
    let first = mail.routes.first().map_or("", |r| r.reason.as_str());
    let routine = !mail.routes.is_empty() && mail.routes.iter().all(|r| r.class == GiveUpClass::Policy);
    let what = if routine {
        "mail dropped by policy"
    } else {
        "mail given up"
    };
    let subject = match mail.routes.len() {
        0 | 1 => format!("[rt-mailgate] {what}: {}", one_line(first, 120)),
        n => format!("[rt-mailgate] {what} on {n} routes: {}", one_line(first, 100)),
    };
    let opening = if routine {
        "A mail was dropped by the mail policy, as configured. No action is needed: this is\n\
         counted in the PolicyDropped metric, not GivenUp, and raises no alarm.\n\n"
    } else {
        "A mail was not delivered to RT and will not be retried.\n\n"
    };
    let mut routes: String = mail
        .routes
        .iter()
        .take(LISTED_ROUTES)
        .map(|r| {
            format!(
                "Route:       {}\nTo:          {}\nReason:      {}\n\n",
                r.route,
                recipients(&r.recipients),
                r.reason
            )
        })
        .collect();
    if mail.routes.len() > LISTED_ROUTES {
        routes.push_str(&format!(
            "... and {} more routes given up (each logged with this SES id).\n\n",
            mail.routes.len() - LISTED_ROUTES
        ));
    }
    NoticeText {
        to: to.to_string(),
        subject,
        body: format!(
            "{opening}\
             SES id:      {}\nMessage-ID:  {}\nFrom:        {}\nSubject:     {}\n\n{routes}\
             The raw mail stays in the mail bucket until it expires. Once the cause is fixed,\n\
             re-deliver it with: rt-mailgate-replay --message-id {} --recipient <address>\n\
             A mail SES flagged (a virus, a DMARC reject, spam dropped) is not for replaying: a\n\
             replay keeps it dropped.\n",
            quoted(&mail.ses_message_id),
            quoted(mail.message_id.as_deref().unwrap_or("(none)")),
            quoted(&mail.sender),
            quoted(mail.subject.as_deref().unwrap_or("(none)")),
            quoted(&mail.ses_message_id),
        ),
    }
}

/// The notice for the sender: what happened to their mail, briefly (one per mail).
pub fn sender_notice(mail: &GivenUpMail) -> NoticeText {
    let reasons: Vec<&str> = mail.routes.iter().map(|r| r.reason.as_str()).collect();
    let to: Vec<String> = mail.routes.iter().flat_map(|r| r.recipients.clone()).collect();
    NoticeText {
        to: mail.sender.clone(),
        subject: format!(
            "Undelivered: {}",
            quoted(mail.subject.as_deref().unwrap_or("your message"))
        ),
        body: format!(
            "Your message could not be added to our ticket system.\n\n\
             Reason:     {}\nMessage-ID: {}\nTo:         {}\n\n\
             Please contact us another way, or send a shorter message.\n",
            reasons.join("; "),
            quoted(mail.message_id.as_deref().unwrap_or("(none)")),
            recipients(&to),
        ),
    }
}

/// A bounded list of recipients.
fn recipients(all: &[String]) -> String {
    let mut text = all
        .iter()
        .take(LISTED_RECIPIENTS)
        .map(|r| quoted(r))
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > LISTED_RECIPIENTS {
        text.push_str(&format!(" and {} more", all.len() - LISTED_RECIPIENTS));
    }
    text
}

/// The raw MIME message for a notice, sent at `date` (seconds since the epoch). Built by
/// mail-builder, which folds and RFC 2047-encodes header words at any length and in any
/// script, and picks the body's transfer encoding.
pub fn mime_message(from: &str, notice: &NoticeText, date: i64) -> Vec<u8> {
    use mail_builder::headers::{address::Address, date::Date, raw::Raw, text::Text};
    mail_builder::MessageBuilder::new()
        .from(Address::new_address(None::<&str>, one_line(from, 320)))
        .to(Address::new_address(None::<&str>, one_line(&notice.to, 320)))
        .subject(Text::new(one_line(&notice.subject, 400)))
        .date(Date::new(date))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .header("Precedence", Raw::new("bulk"))
        .text_body(notice.body.replace("\r\n", "\n"))
        .write_to_vec()
        // Writing into a Vec can't fail.
        .unwrap_or_default()
}

/// Something the sender chose, as a notice quotes it: on one line, at most
/// [`QUOTED_CHARS`] characters (an ellipsis marks a cut).
fn quoted(text: &str) -> String {
    let mut line = one_line(text, QUOTED_CHARS);
    if text.chars().count() > QUOTED_CHARS {
        line.push('…');
    }
    line
}

/// Header-safe: no line breaks (they would start a new header), bounded length.
fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    flat.chars().take(max_chars).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, reason: &str) -> GivenUpRoute {
        GivenUpRoute {
            route: name.into(),
            recipients: vec![name.into()],
            reason: reason.into(),
            ..GivenUpRoute::default()
        }
    }

    fn mail() -> GivenUpMail {
        GivenUpMail {
            ses_message_id: "abc123".into(),
            message_id: Some("m1@customer.example".into()),
            subject: Some("Printer\r\nBcc: evil@example.org".into()),
            sender: "alice@customer.example".into(),
            routes: vec![route(
                "bugs@example.com",
                "RT has no queue or action for route bugs@example.com",
            )],
        }
    }

    fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::new().parse(raw).expect("a message")
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
    fn a_policy_drop_says_no_action_is_needed() {
        let mut m = mail();
        m.routes = vec![GivenUpRoute {
            class: GiveUpClass::Policy,
            ..route("bugs@example.com", "SES found a virus in the mail; it is not posted")
        }];
        let n = operator_notice("ops@example.com", &m);
        assert!(
            n.subject
                .starts_with("[rt-mailgate] mail dropped by policy: SES found a virus"),
            "{}",
            n.subject
        );
        assert!(
            n.body.starts_with("A mail was dropped by the mail policy"),
            "{}",
            n.body
        );
        assert!(n.body.contains("No action is needed"));
        // With one route that needs a person, the digest is a give-up again.
        m.routes.push(route("sales@example.com", "RT has no such queue"));
        let n = operator_notice("ops@example.com", &m);
        assert!(
            n.subject.starts_with("[rt-mailgate] mail given up on 2 routes"),
            "{}",
            n.subject
        );
        assert!(!n.body.contains("No action is needed"), "{}", n.body);
    }

    #[test]
    fn one_digest_lists_every_route_and_bounds_the_recipients() {
        let mut m = mail();
        m.routes.push(GivenUpRoute {
            route: "*@support.example.com".into(),
            recipients: (0..50).map(|n| format!("r{n}@support.example.com")).collect(),
            reason: "RT has no such queue".into(),
            ..GivenUpRoute::default()
        });
        let n = operator_notice("ops@example.com", &m);
        assert!(n.subject.contains("on 2 routes"), "{}", n.subject);
        assert!(n.body.contains("Route:       bugs@example.com"));
        assert!(n.body.contains("Route:       *@support.example.com"));
        assert!(n.body.contains("r19@support.example.com and 30 more"), "{}", n.body);
        assert!(!n.body.contains("r20@"));
        let s = sender_notice(&m);
        assert!(s
            .body
            .contains("RT has no queue or action for route bugs@example.com; RT has no such queue"));
        m.routes = (0..25)
            .map(|n| route(&format!("q{n}@desk.example"), "no queue"))
            .collect();
        let n = operator_notice("ops@example.com", &m);
        assert!(n.body.contains("q19@desk.example") && !n.body.contains("q20@desk.example"));
        assert!(n.body.contains("... and 5 more routes given up"), "{}", n.body);
    }

    #[test]
    fn mime_is_auto_submitted_and_headers_cannot_be_injected() {
        let raw = mime_message("rt@example.com", &sender_notice(&mail()), 1_795_000_000);
        let text = String::from_utf8(raw.clone()).unwrap();
        assert!(text.contains("\r\nAuto-Submitted: auto-replied\r\n"), "{text}");
        let headers = text.split("\r\n\r\n").next().unwrap();
        assert!(!headers.lines().any(|l| l.starts_with("Bcc:")), "{headers}");
        let parsed = parse(&raw);
        assert_eq!(
            parsed.from().unwrap().first().unwrap().address(),
            Some("rt@example.com")
        );
        assert_eq!(
            parsed.to().unwrap().first().unwrap().address(),
            Some("alice@customer.example")
        );
        assert_eq!(parsed.subject(), Some("Undelivered: Printer  Bcc: evil@example.org"));
        assert!(parsed.body_text(0).unwrap().contains("could not be added"));
    }

    #[test]
    fn what_a_notice_quotes_is_bounded() {
        let huge = "x".repeat(100_000);
        let m = GivenUpMail {
            ses_message_id: "abc123".into(),
            message_id: Some(format!("{huge}@attacker.example")),
            subject: Some(huge.clone()),
            sender: format!("{huge}@attacker.example"),
            routes: vec![GivenUpRoute {
                route: "*@desk.example".into(),
                recipients: vec![format!("{huge}@desk.example")],
                reason: "no queue".into(),
                ..GivenUpRoute::default()
            }],
        };
        for n in [operator_notice("ops@example.com", &m), sender_notice(&m)] {
            assert!(n.subject.chars().count() < QUOTED_CHARS + 100, "{}", n.subject.len());
            assert!(n.body.chars().count() < 6 * QUOTED_CHARS + 1000, "{}", n.body.len());
            assert!(n.body.contains(&format!("{}…", "x".repeat(QUOTED_CHARS))));
        }
        assert_eq!(quoted("short"), "short");
        assert_eq!(quoted("a\r\nBcc: x"), "a  Bcc: x");
    }

    #[test]
    fn long_subjects_in_any_script_decode_back_exactly() {
        let subject: String = "打印机坏了🖨️🔥 Grüße ".chars().cycle().take(QUOTED_CHARS).collect();
        let mut m = mail();
        m.subject = Some(subject.clone());
        let notice = sender_notice(&m);
        let raw = mime_message("rt@example.com", &notice, 1_795_000_000);
        let text = String::from_utf8(raw.clone()).unwrap();
        let headers = text.split("\r\n\r\n").next().unwrap();
        assert!(headers.lines().all(|l| l.len() <= 998 && l.is_ascii()), "{headers}");
        assert_eq!(parse(&raw).subject(), Some(format!("Undelivered: {subject}").as_str()));
    }
}
