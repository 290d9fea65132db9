//! Notices can't be abused: what the function sends through SES (moto's outbox) when a
//! mail is given up. A forged sender gets nothing, sub-addresses share one limit, one
//! mail to many addresses makes one operator digest, and encoded subjects stay valid.

mod support;

use support::lambda::{ses_event, LambdaStack};
use support::standin::{Answer, StandIn};
use support::unique;

/// A mail as SES stores it, with these extra header lines.
fn smtp_mail(subject: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "From: victim@customer.example\r\nTo: bugs@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{}@customer.example>\r\n{extra_headers}\r\nThe body, never quoted in a notice.\r\n",
        unique("notice")
    )
    .into_bytes()
}

/// A function that gives up every mail (larger than 10 bytes) and tells senders too.
fn stack_telling_senders() -> LambdaStack {
    let stack = LambdaStack::start(&[
        ("MAX_MAIL_BYTES", "10"),
        ("SENDER_NOTICES", "true"),
        ("NOTICE_FROM", "rt@example.test"),
    ]);
    stack.verify_ses_identity("rt@example.test");
    stack
}

/// An SES event from `sender`, with SES's SPF and DKIM verdicts.
fn event_from(id: &str, sender: &str, spf: &str, dkim: &str) -> serde_json::Value {
    let mut event = ses_event(id, &["bugs@example.test"]);
    let ses = &mut event["Records"][0]["ses"];
    ses["mail"]["source"] = sender.into();
    ses["receipt"]["spfVerdict"]["status"] = spf.into();
    ses["receipt"]["dkimVerdict"]["status"] = dkim.into();
    event
}

/// The `To` address of each mail in moto's outbox.
fn recipients(sent: &[String]) -> Vec<String> {
    sent.iter()
        .map(|raw| {
            let message = mail_parser::MessageParser::new()
                .parse(raw.as_bytes())
                .expect("a message");
            let to = message.to().and_then(|a| a.first()).and_then(|a| a.address());
            to.expect("a To address").to_string()
        })
        .collect()
}

/// A notice's body, decoded (it may be quoted-printable).
fn body_of(raw: &str) -> String {
    let message = mail_parser::MessageParser::new()
        .parse(raw.as_bytes())
        .expect("a message");
    message.body_text(0).expect("a text body").into_owned()
}

#[test]
fn a_forged_sender_signed_by_another_domain_gets_nothing() {
    let stack = stack_telling_senders();
    // SPF failed for customer.example; the one DKIM signature that passed is the
    // forger's own domain, which says nothing about customer.example.
    let forged = unique("forged");
    let signed_elsewhere = "DKIM-Signature: v=1; a=rsa-sha256; d=attacker.example; s=s1; bh=x; b=y\r\n";
    stack.store_mail(&forged, &smtp_mail("Forged", signed_elsewhere));
    let answer = stack.invoke(&event_from(&forged, "victim@customer.example", "FAIL", "PASS"));
    assert_eq!(answer.unwrap()["given_up"], 1);
    assert_eq!(
        stack.sent_mail(),
        Vec::<String>::new(),
        "no backscatter to the forged sender"
    );

    // The same, signed by the sender's own (sub)domain: DKIM vouches, the sender is told.
    let genuine = unique("aligned");
    let signed_here = "DKIM-Signature: v=1; a=rsa-sha256; d=mail.customer.example; s=s1; bh=x; b=y\r\n";
    stack.store_mail(&genuine, &smtp_mail("Aligned", signed_here));
    stack
        .invoke(&event_from(&genuine, "victim@customer.example", "FAIL", "PASS"))
        .unwrap();
    assert_eq!(recipients(&stack.sent_mail()), ["victim@customer.example"]);
}

#[test]
fn sub_addresses_of_one_sender_get_one_notice_between_them() {
    let stack = stack_telling_senders();
    for sender in ["victim+a@customer.example", "victim+b@customer.example"] {
        let id = unique("subaddress");
        stack.store_mail(&id, &smtp_mail("Too large", ""));
        let answer = stack.invoke(&event_from(&id, sender, "PASS", "PASS"));
        assert_eq!(answer.unwrap()["given_up"], 1, "{sender}");
    }
    let sent = stack.sent_mail();
    assert_eq!(recipients(&sent), ["victim+a@customer.example"], "{sent:?}");
    assert!(sent[0].contains("\r\nAuto-Submitted: auto-replied\r\n"), "{}", sent[0]);
    let body = body_of(&sent[0]);
    assert!(body.contains("larger than this gateway accepts"), "{body}");
    assert!(!body.contains("never quoted"), "the mail's body is not in the notice");
}

#[test]
fn one_mail_to_fifty_addresses_of_a_missing_queue_makes_one_operator_digest() {
    // `*@domain` routes each local part to its own queue; RT has none of these and says
    // so as RT 5.0.5+ does (a stand-in: fifty posts at once to the shared test RT would
    // test its load, not the notices; lambda_end_to_end has the real RT's answer).
    let rt = StandIn::always(Answer::ok_body("temporary failure - operation unsuccessful\n"));
    let routes = format!("{}; *@desks.example.test: --action correspond", support::lambda::ROUTES);
    let stack = LambdaStack::start(&[
        ("RT_URL", &rt.url),
        ("ROUTES", &routes),
        ("OPERATOR_EMAIL", "ops@example.test"),
        ("NOTICE_FROM", "rt@example.test"),
    ]);
    stack.verify_ses_identity("rt@example.test");
    let id = unique("fifty");
    stack.store_mail(&id, &smtp_mail("Fifty desks", ""));
    let addresses: Vec<String> = (0..50)
        .map(|n| format!("{}@desks.example.test", unique(&format!("nosuchqueue{n}"))))
        .collect();
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let answer = stack.invoke(&ses_event(&id, &addresses)).unwrap();
    assert_eq!(answer["given_up"], 50, "{answer}");
    assert_eq!(rt.requests().len(), 50, "one post per queue");
    let sent = stack.sent_mail();
    assert_eq!(recipients(&sent), ["ops@example.test"], "one digest, not fifty");
    let body = body_of(&sent[0]);
    assert!(body.contains(&id) && body.contains("and 30 more routes"), "{body}");
}

#[test]
fn a_long_subject_in_any_script_decodes_back_exactly_in_the_notice() {
    let stack = stack_telling_senders();
    let subject: String = "打印机着火了🔥🖨️ 請幫忙 😱 ".chars().cycle().take(300).collect();
    // The incoming mail as a sender's mailer writes it: the subject in encoded words.
    let incoming = mail_builder::MessageBuilder::new()
        .from("victim@customer.example")
        .to("bugs@example.test")
        .subject(subject.as_str())
        .text_body("The body, never quoted in a notice.")
        .write_to_vec()
        .unwrap();
    let id = unique("subject");
    stack.store_mail(&id, &incoming);
    stack
        .invoke(&event_from(&id, "victim@customer.example", "PASS", "PASS"))
        .unwrap();
    let sent = stack.sent_mail();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let notice = mail_parser::MessageParser::new().parse(sent[0].as_bytes()).unwrap();
    assert_eq!(notice.subject(), Some(format!("Undelivered: {subject}").as_str()));
}
