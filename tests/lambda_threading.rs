//! Threading by RT's own markers (issue 22), through the README's front door as the
//! README's lookup user, on SQLite and PostgreSQL, built from the mail RT itself sends
//! (`scripts/rt-test-server` hands RT's outgoing mail to a script that keeps it):
//!
//! - a reply whose subject lost RT's tag, carrying RT's markers (`RT-Ticket-N@rt.example.test`
//!   in `References`, RT's Message-ID in `In-Reply-To`), lands on the ticket;
//! - a colleague's reply-all to the customer's own first mail (no marker of RT, only the
//!   customer's Message-ID, which RT holds) lands on the ticket too;
//! - a reply carrying another RT's Organization makes a new ticket;
//! - a marker naming a ticket out of the route's queue, one RT doesn't have, or a
//!   deleted one posts the mail as without threading (a new ticket), and RT mails no
//!   error to the sender;
//! - with `RT_REOPEN_AFTER_DAYS` set, a reply to a ticket resolved longer ago makes a
//!   new ticket whose first mail names the old one (`X-RT-Mailgate-Resolved-Ticket`),
//!   and the old one stays resolved;
//! - a Postfix-style and an Exchange-style DSN of RT's autoreply each become a comment
//!   on its ticket: the resolved ticket stays resolved, and RT mails nobody.
//!
//! Exactly once holds for each: the same mail delivered again (SES's retry) posts
//! nothing more.
//!
//! With the RT-side extra (`deploy/rt/lib`, which every test RT loads) passed by the
//! door's `rest2-thread.conf`, the reply-all costs one REST 2 request instead of three.

mod support;

use support::lambda::{ses_event, Door, LambdaStack};
use support::mails::header;
use support::rt::{Db, Rt};
use support::unique;

/// RT's `$Organization` in the test RT.
const ORGANIZATION: &str = "rt.example.test";
/// A mail from the customer to the support desk, as SES stores it (CRLF).
fn customer_mail(subject: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    mail_with_id(
        &format!("<{}@customer.example>", unique("m")),
        subject,
        extra_headers,
        body,
    )
}

/// [`customer_mail`] with this Message-ID.
fn mail_with_id(message_id: &str, subject: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: alice@customer.example\nTo: support@example.test\nSubject: {subject}\n\
         Message-ID: {message_id}\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n{extra_headers}\n{body}\n"
    )
    .replace('\n', "\r\n")
    .into_bytes()
}

/// Posts `mail` to support@example.test (queue `support`) through the function; the
/// outcome line's `thread` label.
fn deliver(stack: &LambdaStack, mail: &[u8]) -> String {
    deliver_to(stack, mail, "support@example.test")
}

/// Posts `mail` to `recipient` through the function; the outcome line's `thread` label.
fn deliver_to(stack: &LambdaStack, mail: &[u8], recipient: &str) -> String {
    deliver_twice(stack, mail, recipient, false)
}

/// Posts `mail` to `recipient`; with `again`, SES delivers the same event a second time,
/// which must post nothing more (exactly once, whatever the thread target). The first
/// outcome line's `thread` label.
fn deliver_twice(stack: &LambdaStack, mail: &[u8], recipient: &str, again: bool) -> String {
    let id = unique("ses");
    stack.store_mail(&id, mail);
    let answer = stack.invoke(&ses_event(&id, &[recipient])).unwrap();
    assert_eq!(answer["delivered"].as_u64(), Some(1), "{answer}");
    if again {
        let answer = stack.invoke(&ses_event(&id, &[recipient])).unwrap();
        assert_eq!(
            (answer["delivered"].as_u64(), answer["already_delivered"].as_u64()),
            (Some(0), Some(1)),
            "{answer}"
        );
    }
    let line = stack
        .function_log()
        .into_iter()
        .find(|l| l["fields"]["message"] == "delivery outcome" && l["fields"]["message_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no outcome line: {}", stack.log_text("function.log")));
    for warning in stack
        .function_log()
        .into_iter()
        .filter(|l| l["fields"]["message_id"] == id.as_str() && l["level"] == "WARN")
    {
        eprintln!("function warned: {warning}");
    }
    line["fields"]["thread"].as_str().unwrap_or_default().to_string()
}

/// A colleague's (bob's) reply-all to the customer's first mail `message_id`: no RT
/// marker, only In-Reply-To and References naming that mail.
fn reply_all(subject: &str, message_id: &str, words: &str) -> Vec<u8> {
    String::from_utf8(customer_mail(
        &format!("Re: {subject}"),
        &format!("In-Reply-To: {message_id}\nReferences: {message_id}\n"),
        words,
    ))
    .unwrap()
    .replace("From: alice@customer.example", "From: bob@customer.example")
    .into_bytes()
}

/// A new ticket from the customer's first mail (with this Message-ID): the ticket and
/// RT's autoreply to it, which the replies and bounces are built from.
fn new_ticket(stack: &LambdaStack, rt: &Rt, subject: &str, message_id: &str) -> (u64, String) {
    let sent_before = rt.outgoing_mail().len();
    assert_eq!(
        deliver(stack, &mail_with_id(message_id, subject, "", "It burns.")),
        "none"
    );
    let ticket = rt.only_ticket_with_subject(subject);
    let sent = rt.outgoing_mail();
    let autoreply = sent[sent_before..]
        .iter()
        .find(|m| header(m, "X-RT-Ticket").is_some_and(|t| t.ends_with(&format!("#{ticket}"))))
        .unwrap_or_else(|| panic!("RT sent no autoreply for ticket {ticket}: {sent:?}"))
        .clone();
    (ticket, autoreply)
}

/// How many transactions of the ticket hold `text`, leaving out RT's records of its own
/// outgoing mail (a reply by a colleague is mailed on to the requestor, with its text).
fn times_on(rt: &Rt, ticket: u64, text: &str) -> usize {
    rt.history(ticket)
        .split("\n--\n")
        .filter(|t| t.contains(text) && !t.contains("Type: EmailRecord"))
        .count()
}

/// Asserts RT sent no error mail (nor any mail saying the post failed) since `before`.
fn no_error_mail_since(rt: &Rt, before: usize) {
    for mail in &rt.outgoing_mail()[before..] {
        let said = mail.to_lowercase();
        assert!(
            !said.contains("could not") && !said.contains("not recorded") && !said.contains("failed"),
            "RT mailed an error: {mail}"
        );
    }
}

/// The header of RT's outgoing mail, as a returned-headers part carries it (CRLF).
fn returned_header(rt_mail: &str) -> String {
    rt_mail.split("\n\n").next().unwrap().replace('\n', "\r\n")
}

fn replies_and_bounces_land_on_rts_ticket(db: Db) {
    let rt = Rt::of(db);
    let mut stack = LambdaStack::without_function(1);
    stack.open_door(Door { db, ..Door::default() });
    stack.start_functions(
        &[
            ("RT_ORGANIZATION", ORGANIZATION),
            ("RT_NAME", "example.test"),
            ("RT_REOPEN_AFTER_DAYS", "30"),
        ],
        1,
    );

    // A new ticket; RT's autoreply to the customer is what the rest is built from.
    let subject = unique("Printer on fire");
    let customer_message_id = format!("<{}@customer.example>", unique("first"));
    let (ticket, autoreply) = new_ticket(&stack, &rt, &subject, &customer_message_id);
    let rt_message_id = header(&autoreply, "Message-ID").expect("RT's Message-ID");
    let rt_references = header(&autoreply, "References").expect("RT's References");
    assert!(
        rt_references.starts_with(&format!("<RT-Ticket-{ticket}@{ORGANIZATION}>")),
        "{rt_references}"
    );

    // 1. A reply whose subject lost the tag: on the same ticket, by RT's marker; SES's
    // second delivery of it posts nothing.
    let words = unique("reply without the tag");
    let reply = customer_mail(
        &format!("Re: {subject}"),
        &format!("In-Reply-To: {rt_message_id}\nReferences: {rt_references} {rt_message_id}\n"),
        &words,
    );
    assert_eq!(deliver_twice(&stack, &reply, "support@example.test", true), "rt_marker");
    assert_eq!(rt.tickets_with_subject(&subject), [ticket], "no second ticket");
    assert_eq!(
        times_on(&rt, ticket, &words),
        1,
        "the reply is on ticket {ticket}, once"
    );

    // 1b. A colleague's reply-all to the customer's own first mail: no marker of RT, but
    // RT holds that Message-ID on the ticket's Create (the gateway posts the sender's
    // Message-ID unchanged): same ticket, by Message-ID, once.
    let words = unique("reply-all to the first mail");
    let reply_all = reply_all(&subject, &customer_message_id, &words);
    assert_eq!(
        deliver_twice(&stack, &reply_all, "support@example.test", true),
        "message_id"
    );
    assert_eq!(rt.tickets_with_subject(&subject), [ticket], "no second ticket");
    assert_eq!(
        times_on(&rt, ticket, &words),
        1,
        "the reply-all is on ticket {ticket}, once"
    );

    // 2. Another RT's marker for the same number: a new ticket, as without threading.
    let other = unique("Another RT ticket");
    let foreign = customer_mail(
        &format!("Re: {other}"),
        &format!("References: <RT-Ticket-{ticket}@rt.elsewhere.test>\n"),
        "Elsewhere.",
    );
    assert_ne!(deliver(&stack, &foreign), "rt_marker");
    let made = rt.only_ticket_with_subject(&other);
    assert_ne!(made, ticket);

    // 3. A marker naming a ticket RT doesn't have: posted as without threading (a new
    // ticket), never an error mail from RT to the sender.
    let missing = unique("A ticket RT never had");
    let sent_before = rt.outgoing_mail().len();
    let ghost = customer_mail(
        &format!("Re: {missing}"),
        &format!("References: <RT-Ticket-987654321@{ORGANIZATION}>\n"),
        "Anyone?",
    );
    assert_eq!(deliver(&stack, &ghost), "refused_missing");
    assert_ne!(rt.only_ticket_with_subject(&missing), ticket);
    no_error_mail_since(&rt, sent_before);

    // 3a. A marker naming a ticket deleted since: the same, posted as without threading.
    let doomed = unique("A ticket deleted since");
    let (deleted, _) = new_ticket(&stack, &rt, &doomed, &format!("<{}@customer.example>", unique("d")));
    rt.set_status(deleted, "deleted");
    let sent_before = rt.outgoing_mail().len();
    let late = unique("A reply to a deleted ticket");
    let to_deleted = customer_mail(
        &format!("Re: {late}"),
        &format!("References: <RT-Ticket-{deleted}@{ORGANIZATION}>\n"),
        "Hello?",
    );
    assert_eq!(
        deliver_twice(&stack, &to_deleted, "support@example.test", true),
        "refused_missing"
    );
    let made = rt.only_ticket_with_subject(&late);
    assert_ne!(made, deleted);
    assert_eq!(rt.ticket(deleted)["Status"], "deleted");
    no_error_mail_since(&rt, sent_before);

    // 3b. RT's marker, but mail to the bugs desk (queue bugs): the support ticket is out
    // of the route's reach, so the mail makes a new ticket in bugs.
    let elsewhere = unique("Sent to another desk");
    let crossed = customer_mail(
        &format!("Re: {elsewhere}"),
        &format!("References: {rt_references} {rt_message_id}\n"),
        "Wrong desk.",
    );
    assert_eq!(deliver_to(&stack, &crossed, "bugs@example.test"), "refused_queue");
    let listed = rt.tickets_like(&elsewhere);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].queue.as_str(), listed[0].id == ticket), ("bugs", false));

    // 4. A Postfix DSN of RT's autoreply, on the resolved ticket: a comment, the ticket
    // stays resolved, and RT mails nobody (a correspondence would reopen it and mail
    // the requestor).
    rt.set_status(ticket, "resolved");
    let sent_before = rt.outgoing_mail().len();
    let returned = returned_header(&autoreply);
    let dsn = format!(
        "Return-Path: <>\nFrom: MAILER-DAEMON@mx.customer.example (Mail Delivery System)\n\
         To: support@example.test\nSubject: Undelivered Mail Returned to Sender\n\
         Message-ID: <{}@mx.customer.example>\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\n\n\
         --B1\nContent-Type: text/plain\n\nI'm sorry to have to inform you that your message could not\n\
         be delivered to one or more recipients.\n\n<alice@customer.example>: host mx.customer.example said: 550 5.1.1\n    <alice@customer.example>: Recipient address rejected (in reply to RCPT TO command)\n\n\
         --B1\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.customer.example\n\n\
         Final-Recipient: rfc822; alice@customer.example\nAction: failed\nStatus: 5.1.1\n\
         Diagnostic-Code: smtp; 550 5.1.1 <alice@customer.example>: Recipient address rejected\n\n\
         --B1\nContent-Type: text/rfc822-headers\n\n{returned}\n\n--B1--\n",
        unique("bounce")
    )
    .replace("\r\n", "\n")
    .replace('\n', "\r\n");
    assert_eq!(deliver(&stack, dsn.as_bytes()), "bounce");
    assert_eq!(rt.ticket(ticket)["Status"], "resolved", "the bounce did not reopen it");
    let history = rt.history(ticket);
    assert!(history.contains("Type: Comment"), "{history}");
    assert!(
        history.contains("5.1.1"),
        "the failed recipient's status is on the ticket"
    );
    assert!(
        rt.tickets_with_subject("Undelivered Mail Returned to Sender")
            .iter()
            .all(|t| *t < ticket),
        "no ticket made of the bounce"
    );
    assert_eq!(rt.outgoing_mail()[sent_before..], [] as [String; 0], "RT mailed nobody");
    let comments = times_on(&rt, ticket, "Type: Comment");

    // 5. An Exchange Online NDR of the same autoreply: only the returned header
    // (text/rfc822-headers), the NDR's own In-Reply-To/References pointing at RT's mail,
    // and RT's subject tag kept after "Undeliverable:": a comment too, never a reply.
    let sent_before = rt.outgoing_mail().len();
    let ndr = format!(
        "From: Microsoft Outlook <postmaster@customer.example>\nTo: <support@example.test>\n\
         Subject: Undeliverable: [example.test #{ticket}] {subject}\n\
         Message-ID: <{}@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>\n\
         In-Reply-To: {rt_message_id}\nReferences: {rt_references}\n\
         Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"b1_7c2f\"\n\
         X-MS-Exchange-Message-Is-Ndr:\nAuto-Submitted: auto-replied\nMIME-Version: 1.0\n\n\
         --b1_7c2f\nContent-Type: text/plain; charset=\"us-ascii\"\n\n\
         Your message to alice@customer.example couldn't be delivered.\n\n\
         --b1_7c2f\nContent-Type: message/delivery-status\n\n\
         Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com\n\n\
         Final-Recipient: rfc822;alice@customer.example\nAction: failed\nStatus: 5.1.10\n\
         Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found\n\n\
         --b1_7c2f\nContent-Type: text/rfc822-headers\n\n{returned}\n--b1_7c2f--\n",
        unique("ndr")
    )
    .replace("\r\n", "\n")
    .replace('\n', "\r\n");
    assert_eq!(
        deliver_twice(&stack, ndr.as_bytes(), "support@example.test", true),
        "bounce"
    );
    assert_eq!(rt.ticket(ticket)["Status"], "resolved", "the NDR did not reopen it");
    assert_eq!(times_on(&rt, ticket, "Type: Comment"), comments + 1, "one comment more");
    // Its text names the failed recipient; its delivery-status part (shown inline in
    // RT's web UI) the status.
    assert!(rt
        .history(ticket)
        .contains("Your message to alice@customer.example couldn't be delivered"));
    let reports: Vec<String> = rt
        .attachments(ticket)
        .into_iter()
        .filter(|(_, _, kind)| kind == "message/delivery-status")
        .map(|(id, ..)| String::from_utf8_lossy(&rt.attachment_content(ticket, id)).into_owned())
        .collect();
    assert!(
        reports
            .iter()
            .any(|r| r.contains("Status: 5.1.10") && r.contains("alice@customer.example")),
        "the NDR's status is on the ticket: {reports:?}"
    );
    assert_eq!(rt.outgoing_mail()[sent_before..], [] as [String; 0], "RT mailed nobody");

    // 6. RT_REOPEN_AFTER_DAYS=30: a reply by RT's marker to a ticket resolved in 2020
    // makes a new ticket, whose first mail names the old one; the old stays resolved.
    let old_subject = unique("Resolved long ago");
    let (old, old_autoreply) = new_ticket(
        &stack,
        &rt,
        &old_subject,
        &format!("<{}@customer.example>", unique("o")),
    );
    rt.set_status(old, "resolved");
    rt.set_field(old, "Resolved: 2020-01-02 03:04:05");
    let old_references = header(&old_autoreply, "References").expect("RT's References");
    let words = unique("a reply years later");
    let late = customer_mail(
        &format!("Re: {old_subject}"),
        &format!("References: {old_references}\n"),
        &words,
    );
    assert_eq!(
        deliver_twice(&stack, &late, "support@example.test", true),
        "new_after_resolved"
    );
    assert_eq!(rt.ticket(old)["Status"], "resolved", "not reopened");
    assert_eq!(times_on(&rt, old, &words), 0);
    let listed = rt.tickets_like(&old_subject);
    let new: Vec<u64> = listed.iter().map(|l| l.id).filter(|id| *id != old).collect();
    assert_eq!(new.len(), 1, "one new ticket: {listed:?}");
    assert_eq!(times_on(&rt, new[0], &words), 1);
    let (first, ..) = rt.attachments(new[0])[0].clone();
    let shown = String::from_utf8_lossy(&rt.rest(&format!("ticket/{}/attachments/{first}", new[0]))).into_owned();
    assert!(
        shown.contains(&format!("X-RT-Mailgate-Resolved-Ticket: {old}")),
        "the new ticket's first mail names the old one: {shown}"
    );
}

#[test]
fn replies_and_bounces_land_on_rts_ticket_on_sqlite() {
    replies_and_bounces_land_on_rts_ticket(Db::Sqlite);
}

#[test]
fn replies_and_bounces_land_on_rts_ticket_on_postgresql() {
    replies_and_bounces_land_on_rts_ticket(Db::Pg);
}

/// With the optional RT-side extra and its door extra, a reply-all to the customer's
/// first mail threads with one REST 2 request (`GET /REST/2.0/mailgate-thread`), not
/// RT's attachment search, the hit's transaction and the check (issue 22, point 9).
fn a_reply_all_takes_one_request_with_the_rt_side_extra(db: Db) {
    let rt = Rt::of(db);
    let mut stack = LambdaStack::without_function(1);
    stack.open_door(Door {
        db,
        thread_extra: true,
        ..Door::default()
    });
    stack.start_functions(&[("RT_ORGANIZATION", ORGANIZATION), ("RT_NAME", "example.test")], 1);
    let subject = unique("Scanner jammed");
    let customer_message_id = format!("<{}@customer.example>", unique("first"));
    let (ticket, _) = new_ticket(&stack, &rt, &subject, &customer_message_id);

    let words = unique("reply-all, one request");
    let reply_all = reply_all(&subject, &customer_message_id, &words);
    let door = stack.door().expect("the front door");
    let asked_before = door.requests().len();
    assert_eq!(
        deliver_twice(&stack, &reply_all, "support@example.test", true),
        "message_id"
    );
    // The cold start's REST 2 probe (`GET /REST/2.0/queues?query=[id = 0]`) may finish
    // in this window on a slow RT; this route asks RT nothing about queues.
    let rest2: Vec<String> = door.requests()[asked_before..]
        .iter()
        .filter(|r| r.contains("/REST/2.0/") && !r.starts_with("GET /REST/2.0/queues?"))
        .cloned()
        .collect();
    assert_eq!(rest2.len(), 1, "one REST 2 request: {rest2:?}");
    assert!(
        rest2[0].starts_with("GET /REST/2.0/mailgate-thread?message_id=") && rest2[0].ends_with(" 200"),
        "{rest2:?}"
    );
    assert_eq!(rt.tickets_with_subject(&subject), [ticket], "no second ticket");
    assert_eq!(
        times_on(&rt, ticket, &words),
        1,
        "the reply-all is on ticket {ticket}, once"
    );
}

#[test]
fn a_reply_all_takes_one_request_with_the_rt_side_extra_on_sqlite() {
    a_reply_all_takes_one_request_with_the_rt_side_extra(Db::Sqlite);
}

#[test]
fn a_reply_all_takes_one_request_with_the_rt_side_extra_on_postgresql() {
    a_reply_all_takes_one_request_with_the_rt_side_extra(Db::Pg);
}
