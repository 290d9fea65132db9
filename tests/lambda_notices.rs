//! Notices can't be abused: what the function sends through SES (moto's outbox) when a
//! mail is given up. A forged sender gets nothing (nor does one whose header hides a
//! signature, or whose From is another organisation's, or whose DMARC failed),
//! sub-addresses share one limit, all senders together stop at a global hourly cap, one
//! mail to many addresses makes one operator digest, misses on made-up addresses can't
//! use up the operator's notices, nor can a wave of routine policy drops (counted as
//! `PolicyDropped`, not `GivenUp`), and what a notice quotes is bounded.

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

/// An SES event from `sender`, with SES's SPF and DKIM verdicts (DMARC: GRAY, as for a
/// domain that publishes no DMARC policy).
fn event_from(id: &str, sender: &str, spf: &str, dkim: &str) -> serde_json::Value {
    event_with_dmarc(id, sender, spf, dkim, "GRAY")
}

/// [`event_from`] with SES's DMARC verdict too.
fn event_with_dmarc(id: &str, sender: &str, spf: &str, dkim: &str, dmarc: &str) -> serde_json::Value {
    let mut event = ses_event(id, &["bugs@example.test"]);
    let ses = &mut event["Records"][0]["ses"];
    ses["mail"]["source"] = sender.into();
    ses["receipt"]["spfVerdict"]["status"] = spf.into();
    ses["receipt"]["dkimVerdict"]["status"] = dkim.into();
    ses["receipt"]["dmarcVerdict"]["status"] = dmarc.into();
    event
}

/// The reasons the function logged for not telling a sender.
fn refusals(stack: &LambdaStack) -> Vec<String> {
    stack
        .function_log()
        .iter()
        .filter(|l| l["fields"]["message"] == "sender not told")
        .map(|l| l["fields"]["reason"].as_str().unwrap_or_default().to_string())
        .collect()
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
    // No RT login here, so RT's queues can't be asked: the first MAX_ROUTES_PER_MAIL
    // (10) routes are posted, the forty beyond are given up unposted.
    assert_eq!(rt.requests().len(), 10, "one post per queue, up to the cap");
    let sent = stack.sent_mail();
    assert_eq!(recipients(&sent), ["ops@example.test"], "one digest, not fifty");
    let body = body_of(&sent[0]);
    assert!(body.contains(&id) && body.contains("and 30 more routes"), "{body}");
    assert!(body.contains("MAX_ROUTES_PER_MAIL"), "{body}");
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
    // The sender's subject is quoted up to 200 characters, an ellipsis marking the cut.
    let quoted: String = subject.chars().take(200).collect();
    assert_eq!(notice.subject(), Some(format!("Undelivered: {quoted}…").as_str()));
}

#[test]
fn a_signature_hidden_from_the_guard_gets_no_notice() {
    let stack = stack_telling_senders();
    // SPF failed; SES's DKIM PASS is for the forger's real signature, hidden behind a
    // bare LF pair (the header ends there for some readers only) or 256 KB of padding,
    // while a fake signature of the victim's domain comes first.
    let fake = "DKIM-Signature: v=1; a=rsa-sha256; d=customer.example; s=s1; bh=x; b=fake\r\n";
    let real = "DKIM-Signature: v=1; a=rsa-sha256; d=attacker.example; s=s1; bh=x; b=real\r\n";
    let behind_lf_pair = format!("{fake}X-Note: 1\n\n{real}");
    let behind_padding = format!("{fake}X-Pad: {}\r\n{real}", "a".repeat(256 * 1024));
    for (label, extra) in [("lf-pair", behind_lf_pair), ("padding", behind_padding)] {
        let id = unique(label);
        stack.store_mail(&id, &smtp_mail("Hidden", &extra));
        let answer = stack.invoke(&event_from(&id, "victim@customer.example", "FAIL", "PASS"));
        assert_eq!(answer.unwrap()["given_up"], 1, "{label}");
    }
    assert_eq!(
        stack.sent_mail(),
        Vec::<String>::new(),
        "no backscatter to the forged sender"
    );
    assert_eq!(
        refusals(&stack),
        ["header malformed", "header longer than the gateway reads"]
    );
}

#[test]
fn a_from_of_another_organisation_or_a_dmarc_failure_gets_no_notice() {
    let stack = stack_telling_senders();
    // The envelope is the forger's own (SPF passes for it), the From the victim's.
    let id = unique("from-elsewhere");
    stack.store_mail(&id, &smtp_mail("From elsewhere", ""));
    stack
        .invoke(&event_from(&id, "forger@attacker.example", "PASS", "PASS"))
        .unwrap();
    // Aligned and SPF PASS, but DMARC failed.
    let id = unique("dmarc-fail");
    stack.store_mail(&id, &smtp_mail("DMARC fail", ""));
    stack
        .invoke(&event_with_dmarc(
            &id,
            "victim@customer.example",
            "PASS",
            "PASS",
            "FAIL",
        ))
        .unwrap();
    assert_eq!(stack.sent_mail(), Vec::<String>::new());
    assert_eq!(
        refusals(&stack),
        ["From not aligned with the envelope sender", "DMARC failed"]
    );
    // DMARC PASS alone vouches (SPF and DKIM verdicts aside): told.
    let id = unique("dmarc-pass");
    stack.store_mail(&id, &smtp_mail("DMARC pass", ""));
    stack
        .invoke(&event_with_dmarc(
            &id,
            "victim@customer.example",
            "FAIL",
            "FAIL",
            "PASS",
        ))
        .unwrap();
    assert_eq!(recipients(&stack.sent_mail()), ["victim@customer.example"]);
}

#[test]
fn sender_notices_stop_at_the_global_hourly_cap() {
    let stack = stack_telling_senders();
    // Fifty notices went out in the last hour, to as many domains (as the function
    // counts them, in its window record).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let fifty: Vec<String> = (0..50).map(|n| (now_ms - 60_000 + n).to_string()).collect();
    stack.put_object("delivery-records/notices/all-senders", fifty.join(" ").as_bytes());
    let id = unique("over-cap");
    stack.store_mail(&id, &smtp_mail("Over the cap", ""));
    let answer = stack.invoke(&event_from(&id, "victim@customer.example", "PASS", "PASS"));
    assert_eq!(answer.unwrap()["given_up"], 1);
    assert_eq!(stack.sent_mail(), Vec::<String>::new(), "the fifty-first in the hour");
    // An hour later the window has slid: the next sender is told.
    let old: Vec<String> = (0..50).map(|n| (now_ms - 3_700_000 + n).to_string()).collect();
    stack.put_object("delivery-records/notices/all-senders", old.join(" ").as_bytes());
    let id = unique("slid");
    stack.store_mail(&id, &smtp_mail("Window slid", ""));
    stack
        .invoke(&event_from(&id, "colleague@customer.example", "PASS", "PASS"))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let sent = stack.sent_mail();
    assert_eq!(recipients(&sent), ["colleague@customer.example"], "{sent:?}");
}

#[test]
fn misses_on_made_up_addresses_never_use_up_the_operators_notices() {
    // RT (a stand-in) has none of the queues: every post answers temporary failure.
    let rt = StandIn::always(Answer::ok_body("temporary failure - operation unsuccessful\n"));
    let routes = format!(
        "{}; *@desks.example.test: --action correspond; broken@example.test: --queue nosuch",
        support::lambda::ROUTES
    );
    let stack = LambdaStack::start(&[
        ("RT_URL", &rt.url),
        ("ROUTES", &routes),
        ("OPERATOR_EMAIL", "ops@example.test"),
        ("NOTICE_FROM", "rt@example.test"),
    ]);
    stack.verify_ses_identity("rt@example.test");
    // Outsiders write to made-up addresses, one mail each: one digest in the hour.
    for n in 0..25 {
        let id = unique(&format!("made-up{n}"));
        stack.store_mail(&id, &smtp_mail("Made up", ""));
        let address = format!("{}@desks.example.test", unique("nosuchqueue"));
        let answer = stack.invoke(&ses_event(&id, &[address.as_str()])).unwrap();
        assert_eq!(answer["given_up"], 1, "{answer}");
    }
    assert_eq!(stack.sent_mail().len(), 1, "one digest about made-up addresses");
    // A real route that is broken still reaches the operator.
    let id = unique("broken-route");
    stack.store_mail(&id, &smtp_mail("Broken route", ""));
    stack.invoke(&ses_event(&id, &["broken@example.test"])).unwrap();
    let sent = stack.sent_mail();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let body = body_of(&sent[1]);
    assert!(body.contains(&id) && body.contains("broken@example.test"), "{body}");
    // Counted apart: the misses under AddressMisses, the broken route under GivenUp.
    let log = serde_json::to_string(&stack.function_log()).unwrap();
    assert!(log.contains("\"AddressMisses\""), "no AddressMisses metric");
    let given_up = stack.metric_totals("GivenUp");
    assert_eq!(given_up, [1], "only the broken route counts as given up");
}

#[test]
fn a_virus_wave_never_uses_up_the_digest_about_a_mail_rt_cannot_take() {
    // Routine policy drops (here: SES's virus verdict) have their own operator window and
    // their own metric; a mail too large that follows still gets its digest and counts
    // as GivenUp, the one that needs a person.
    let stack = LambdaStack::start(&[
        ("MAX_MAIL_BYTES", "2000"),
        ("OPERATOR_EMAIL", "ops@example.test"),
        ("NOTICE_FROM", "rt@example.test"),
    ]);
    stack.verify_ses_identity("rt@example.test");
    for n in 0..12 {
        let id = unique(&format!("virus{n}"));
        stack.store_mail(&id, &smtp_mail("Invoice attached", ""));
        let mut event = ses_event(&id, &["bugs@example.test"]);
        event["Records"][0]["ses"]["receipt"]["virusVerdict"]["status"] = "FAIL".into();
        let answer = stack.invoke(&event).unwrap();
        assert_eq!(answer["given_up"], 1, "{answer}");
    }
    let sent = stack.sent_mail();
    assert_eq!(sent.len(), 10, "ten policy digests in the hour, then the log only");
    let subject = |raw: &str| {
        let message = mail_parser::MessageParser::new()
            .parse(raw.as_bytes())
            .expect("a message");
        message.subject().unwrap_or_default().to_string()
    };
    for raw in &sent {
        assert!(
            subject(raw).starts_with("[rt-mailgate] mail dropped by policy: SES found a virus"),
            "each says it is routine: {raw}"
        );
    }
    assert!(body_of(&sent[0]).contains("No action is needed"));

    let big = unique("too-large");
    let padding = format!("X-Padding: {}\r\n", "x".repeat(3000));
    stack.store_mail(&big, &smtp_mail("Large scan", &padding));
    assert_eq!(
        stack.invoke(&ses_event(&big, &["bugs@example.test"])).unwrap()["given_up"],
        1
    );
    let sent = stack.sent_mail();
    assert_eq!(sent.len(), 11, "the digest about the mail too large still goes out");
    let body = body_of(&sent[10]);
    assert!(
        body.contains(&big) && body.contains("larger than this gateway accepts"),
        "{body}"
    );

    // Counted apart: twelve PolicyDropped, one GivenUp (what the alarm sums).
    let plain = |metric: &str| -> u64 { stack.metric_totals(metric).iter().sum() };
    assert_eq!(plain("PolicyDropped"), 12);
    assert_eq!(plain("GivenUp"), 1, "only the mail a person must act on");
}
