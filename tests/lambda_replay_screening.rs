//! A replay keeps SES's screening, always, against moto and the real RT: the runbook's
//! path for unrouted mail (a mail arrives for an address no route takes; the admin adds
//! the route; `rt-mailgate-replay --message-id ID --recipient ADDR`) never posts a mail
//! SES flagged as a virus or a DMARC reject, and keeps the spam tag, though no route
//! record holds the first delivery's screening and a replay by message id has no event.
//!
//! - The first delivery of a flagged mail records SES's verdicts for the mail as a
//!   whole (`delivery-records/screening/<id>`), routed or not: the replay reads them.
//! - A mail whose first delivery never ran: SES's own fields on top of the stored mail
//!   (`X-SES-Virus-Verdict`...) say it, and a sender's forged copy below is not read.
//! - The operator may still post a dropped mail (`--post-screened-mail`): dropped is
//!   kept, never lost.

mod support;

use serde_json::Value;
use support::lambda::{ses_event, LambdaStack, ROUTES};
use support::{rt, unique};

/// The routes once the admin has added the address that was unrouted.
fn with_sales() -> String {
    format!("{ROUTES}; sales@example.test: --queue support")
}

fn mail(subject: &str) -> Vec<u8> {
    format!(
        "From: alice@customer.example\r\nTo: sales@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@customer.example>\r\n\r\nbody\r\n"
    )
    .into_bytes()
}

/// A mail as SES's S3 action stores it: SES's fields on top, then the sender's own
/// header, which forges the verdicts SES would give a clean mail.
fn ses_stored(subject: &str, virus: &str, spam: &str, dmarc: &str) -> Vec<u8> {
    let mut stored = format!(
        "Return-Path: <alice@customer.example>\r\n\
         Received: from mx.customer.example by inbound-smtp.us-east-1.amazonaws.com with SMTP id x1\r\n\
         X-SES-Spam-Verdict: {spam}\r\nX-SES-Virus-Verdict: {virus}\r\n\
         Received-SPF: pass (spfCheck: domain of customer.example designates 192.0.2.1 as permitted sender)\r\n\
         Authentication-Results: amazonses.com;\r\n spf=pass smtp.mailfrom=alice@customer.example;\r\n \
         dkim=pass header.i=@customer.example;\r\n dmarc={dmarc} header.from=customer.example;\r\n\
         X-SES-RECEIPT: AEFBQUFBQUFBQUFH\r\n\
         X-SES-Virus-Verdict: PASS\r\nX-SES-Spam-Verdict: PASS\r\n"
    )
    .into_bytes();
    stored.extend_from_slice(&mail(subject));
    stored
}

/// The subject as [`mail`] writes it (no spaces, to keep the search exact).
fn subject(label: &str) -> String {
    unique(label).replace(' ', "-")
}

/// An SES event for a mail to the unrouted `sales@example.test`, with these verdicts.
fn flagged_event(id: &str, verdict: &str) -> Value {
    let mut event = ses_event(id, &["sales@example.test"]);
    let receipt = &mut event["Records"][0]["ses"]["receipt"];
    match verdict {
        "virus" => receipt["virusVerdict"]["status"] = "FAIL".into(),
        "spam" => receipt["spamVerdict"]["status"] = "FAIL".into(),
        "dmarc-reject" => {
            receipt["dmarcVerdict"]["status"] = "FAIL".into();
            receipt["dmarcPolicy"] = "REJECT".into();
        }
        other => panic!("{other}"),
    }
    event
}

fn replay(stack: &LambdaStack, id: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["--message-id", id, "--recipient", "sales@example.test"];
    args.extend_from_slice(extra);
    let out = stack.replay(&args, &[("ROUTES", &with_sales())]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// True when the ticket's first message carries the spam tag in its header.
fn spam_tagged(ticket: u64) -> bool {
    let (first, _, _) = rt::attachments(ticket)[0].clone();
    let attachment = String::from_utf8_lossy(&rt::rest(&format!("ticket/{ticket}/attachments/{first}"))).into_owned();
    attachment.contains("X-RT-Mailgate-Spam: FAIL")
}

#[test]
fn the_runbook_path_never_posts_a_virus_or_a_dmarc_reject_and_keeps_the_spam_tag() {
    let stack = LambdaStack::start(&[]);
    for verdict in ["virus", "dmarc-reject", "spam"] {
        let (id, subject) = (unique(verdict), subject(verdict));
        // No SES field on the stored mail: only the mail's verdict record can tell.
        stack.store_mail(&id, &mail(&subject));
        let answer = stack.invoke(&flagged_event(&id, verdict)).unwrap();
        assert_eq!(answer["unrouted"], 1, "{verdict}: {answer}");
        let kept = stack.objects_under(&format!("delivery-records/screening/{id}"));
        assert_eq!(kept.len(), 1, "{verdict}: the mail's verdicts are recorded");

        // The admin adds the route and replays by message id, as the runbook says.
        let (code, text) = replay(&stack, &id, &[]);
        let tickets = rt::tickets_with_subject(&subject);
        if verdict == "spam" {
            assert_eq!(code, Some(0), "{text}");
            assert_eq!(tickets.len(), 1, "{text}");
            assert!(spam_tagged(tickets[0]), "the spam tag is kept: {text}");
        } else {
            assert_eq!(code, Some(1), "{verdict}: not done, kept dropped: {text}");
            assert!(tickets.is_empty(), "{verdict} posted: {text}");
            assert!(text.contains("--post-screened-mail"), "what to do: {text}");
            // Replayed again: still dropped.
            let (code, _) = replay(&stack, &id, &[]);
            assert_eq!(code, Some(1));
            assert!(
                rt::tickets_with_subject(&subject).is_empty(),
                "{verdict} posted on a second replay"
            );
        }
    }
}

#[test]
fn a_mail_whose_first_delivery_never_ran_is_screened_on_ses_fields_not_the_senders() {
    let stack = LambdaStack::start(&[]);
    // Never delivered (no invocation, no record): SES's own fields are all there is,
    // and the sender's forged PASS below them is not read.
    let (virus_id, virus) = (unique("hdr-virus"), subject("hdr-virus"));
    stack.store_mail(&virus_id, &ses_stored(&virus, "FAIL", "PASS", "pass"));
    let (code, text) = replay(&stack, &virus_id, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(rt::tickets_with_subject(&virus).is_empty(), "a virus posted: {text}");
    assert!(text.contains("--post-screened-mail"), "{text}");

    // SES's header names no DMARC policy: a DMARC failure is kept dropped (fail closed).
    let (dmarc_id, dmarc) = (unique("hdr-dmarc"), subject("hdr-dmarc"));
    stack.store_mail(&dmarc_id, &ses_stored(&dmarc, "PASS", "PASS", "fail"));
    let (code, text) = replay(&stack, &dmarc_id, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        rt::tickets_with_subject(&dmarc).is_empty(),
        "a DMARC failure posted: {text}"
    );

    let (spam_id, spam) = (unique("hdr-spam"), subject("hdr-spam"));
    stack.store_mail(&spam_id, &ses_stored(&spam, "PASS", "FAIL", "pass"));
    let (code, text) = replay(&stack, &spam_id, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(spam_tagged(rt::only_ticket_with_subject(&spam)), "{text}");

    let (clean_id, clean) = (unique("hdr-clean"), subject("hdr-clean"));
    stack.store_mail(&clean_id, &ses_stored(&clean, "PASS", "PASS", "pass"));
    let (code, text) = replay(&stack, &clean_id, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!spam_tagged(rt::only_ticket_with_subject(&clean)), "{text}");

    // The operator judges the virus mail safe: posted, once.
    let (code, text) = replay(&stack, &virus_id, &["--post-screened-mail"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(rt::tickets_with_subject(&virus).len(), 1, "{text}");
}
