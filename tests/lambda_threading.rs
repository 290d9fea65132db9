//! Threading by RT's own markers (issue 22), through the README's front door as the
//! README's lookup user, on SQLite and PostgreSQL, built from the mail RT itself sends
//! (`scripts/rt-test-server` hands RT's outgoing mail to a script that keeps it):
//!
//! - a reply whose subject lost RT's tag, carrying RT's markers (`RT-Ticket-N@rt.example.test`
//!   in `References`, RT's Message-ID in `In-Reply-To`), lands on the ticket;
//! - a reply carrying another RT's Organization makes a new ticket;
//! - a marker naming a ticket out of the route's queue, or one RT doesn't have, posts
//!   the mail as without threading (a new ticket), and RT mails no error to the sender;
//! - a Postfix-style DSN of RT's autoreply becomes a comment on its ticket: the resolved
//!   ticket stays resolved, and RT mails nobody.

mod support;

use std::path::PathBuf;

use support::lambda::{ses_event, Door, LambdaStack};
use support::rt::{Db, Rt};
use support::unique;

/// RT's `$Organization` in the test RT.
const ORGANIZATION: &str = "rt.example.test";
/// What the capture script writes before each mail.
const SEPARATOR: &str = "==== rt-test-server: outgoing mail ====\n";

/// The mails RT has sent so far (the capture file of its state folder).
fn outgoing(rt: &Rt) -> Vec<String> {
    let file: PathBuf = rt.state().join("outgoing-mail");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (start the RT with this branch's scripts/rt-test-server, which keeps RT's mail)",
            file.display()
        )
    });
    text.split(SEPARATOR)
        .filter(|m| !m.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// A header of a mail, unfolded (the first of that name, in the mail's header).
fn header(mail: &str, name: &str) -> Option<String> {
    let head = mail.split("\n\n").next().unwrap_or_default();
    let mut value: Option<String> = None;
    for line in head.lines() {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => {
                v.push(' ');
                v.push_str(line.trim());
            }
            Some(_) => break,
            None => {
                if let Some((n, v)) = line.split_once(':') {
                    if n.eq_ignore_ascii_case(name) {
                        value = Some(v.trim().to_string());
                    }
                }
            }
        }
    }
    value
}

/// A mail from the customer to the support desk, as SES stores it (CRLF).
fn customer_mail(subject: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    let message_id = format!("<{}@customer.example>", unique("m"));
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
    let id = unique("ses");
    stack.store_mail(&id, mail);
    let answer = stack.invoke(&ses_event(&id, &[recipient])).unwrap();
    assert_eq!(answer["delivered"].as_u64(), Some(1), "{answer}");
    let line = stack
        .function_log()
        .into_iter()
        .find(|l| l["fields"]["message"] == "delivery outcome" && l["fields"]["message_id"] == id.as_str())
        .unwrap_or_else(|| panic!("no outcome line: {}", stack.log_text("function.log")));
    line["fields"]["thread"].as_str().unwrap_or_default().to_string()
}

/// Sets a ticket's status as an RT user would (REST 1.0, as root).
fn set_status(rt: &Rt, ticket: u64, status: &str) {
    let out = std::process::Command::new("curl")
        .args(["-fsS", "--max-time", "30", "--data-urlencode"])
        .arg(format!("content=Status: {status}"))
        .arg(format!(
            "{}/REST/1.0/ticket/{ticket}/edit?user=root&pass=password",
            rt.url
        ))
        .output()
        .expect("curl runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("updated"), "{said}");
}

fn replies_and_bounces_land_on_rts_ticket(db: Db) {
    let rt = Rt::of(db);
    let mut stack = LambdaStack::without_function(1);
    stack.open_door(Door { db, ..Door::default() });
    stack.start_functions(&[("RT_ORGANIZATION", ORGANIZATION), ("RT_NAME", "example.test")], 1);

    // A new ticket; RT's autoreply to the customer is what the rest is built from.
    let subject = unique("Printer on fire");
    let sent_before = outgoing(&rt).len();
    assert_eq!(deliver(&stack, &customer_mail(&subject, "", "It burns.")), "none");
    let ticket = rt.only_ticket_with_subject(&subject);
    let sent = outgoing(&rt);
    let autoreply = sent[sent_before..]
        .iter()
        .find(|m| header(m, "X-RT-Ticket").is_some_and(|t| t.ends_with(&format!("#{ticket}"))))
        .unwrap_or_else(|| panic!("RT sent no autoreply for ticket {ticket}: {sent:?}"))
        .clone();
    let rt_message_id = header(&autoreply, "Message-ID").expect("RT's Message-ID");
    let rt_references = header(&autoreply, "References").expect("RT's References");
    assert!(
        rt_references.starts_with(&format!("<RT-Ticket-{ticket}@{ORGANIZATION}>")),
        "{rt_references}"
    );

    // 1. A reply whose subject lost the tag: on the same ticket, by RT's marker.
    let words = unique("reply without the tag");
    let reply = customer_mail(
        &format!("Re: {subject}"),
        &format!("In-Reply-To: {rt_message_id}\nReferences: {rt_references} {rt_message_id}\n"),
        &words,
    );
    assert_eq!(deliver(&stack, &reply), "rt_marker");
    assert_eq!(rt.tickets_with_subject(&subject), [ticket], "no second ticket");
    assert!(rt.history(ticket).contains(&words), "the reply is on ticket {ticket}");

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
    let sent_before = outgoing(&rt).len();
    let ghost = customer_mail(
        &format!("Re: {missing}"),
        &format!("References: <RT-Ticket-987654321@{ORGANIZATION}>\n"),
        "Anyone?",
    );
    assert_eq!(deliver(&stack, &ghost), "refused_missing");
    assert_ne!(rt.only_ticket_with_subject(&missing), ticket);
    for mail in &outgoing(&rt)[sent_before..] {
        let said = mail.to_lowercase();
        assert!(
            !said.contains("could not") && !said.contains("not recorded") && !said.contains("failed"),
            "RT mailed an error: {mail}"
        );
    }

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
    set_status(&rt, ticket, "resolved");
    let sent_before = outgoing(&rt).len();
    let returned = autoreply.split("\n\n").next().unwrap().replace('\n', "\r\n");
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
    assert_eq!(outgoing(&rt)[sent_before..], [] as [String; 0], "RT mailed nobody");
}

#[test]
fn replies_and_bounces_land_on_rts_ticket_on_sqlite() {
    replies_and_bounces_land_on_rts_ticket(Db::Sqlite);
}

#[test]
fn replies_and_bounces_land_on_rts_ticket_on_postgresql() {
    replies_and_bounces_land_on_rts_ticket(Db::Pg);
}
