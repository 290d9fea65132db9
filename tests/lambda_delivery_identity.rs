//! Exactly *this* mail, against the real RT: after an answer that leaves it open whether
//! RT took a post (a proxy's 502), the function asks RT's REST 2 API for the delivery id
//! it put in front of that post (`X-RT-Mailgate-Delivery: <SES id>.<fingerprint>`),
//! never for the mail's Message-ID, which senders reuse, write oddly or leave out.
//!
//! - Two different alerts with the same Message-ID: the second's post dies at a proxy
//!   that never forwarded it. The first alert's ticket is not taken for the second: the
//!   second is retried and becomes a ticket of its own.
//! - Message-IDs with a comment, two Message-ID headers, a folded one, one without
//!   brackets, none at all: the post reaches RT, the proxy answers 502, and RT is found
//!   holding it: one ticket each, never two.

mod support;

use support::lambda::{ses_event, LambdaStack};
use support::standin::{AfterCommit, Answer, StandIn};
use support::{rt, unique};

const RT_LOGIN: &str = r#"{"rt_username": "root", "rt_password": "password"}"#;

/// The function posting through `proxy`, asking the real RT directly, with an RT login.
/// RT_TIMEOUT is short so that "RT may still be storing it" ends within the test.
fn stack_behind(proxy: &StandIn) -> LambdaStack {
    let rt_url = rt::url();
    LambdaStack::start_with_secrets(
        &[
            ("RT_URL", proxy.url.as_str()),
            ("RT_API_URL", rt_url.as_str()),
            ("RT_SECRET_ID", "rt-mailgate/rt"),
            ("RT_TIMEOUT", "5"),
        ],
        &[("rt-mailgate/rt", RT_LOGIN)],
    )
}

fn alert(message_id_lines: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: monitor@appliance.example\r\nTo: bugs@example.test\r\n{message_id_lines}Subject: {subject}\r\n\
         Date: Wed, 02 Dec 2026 10:00:00 +0000\r\n\r\n{subject}: disk full\r\n"
    )
    .into_bytes()
}

#[test]
fn a_reused_message_id_never_makes_a_mail_delivered_that_rt_does_not_hold() {
    let rt_url = rt::url();
    // The first post (alert A) goes through; the second (alert B) gets a 502 from a
    // proxy that never forwarded it; from then on, posts go through.
    let proxy = StandIn::start(move |n| match n {
        1 => Answer::status(502),
        _ => Answer::Forward(rt_url.clone()),
    });
    let stack = stack_behind(&proxy);
    let run = unique("reused-id");
    let same_id = format!("Message-ID: <{run}@appliance.example>\r\n");
    let (subject_a, subject_b) = (format!("{run} alert A"), format!("{run} alert B"));

    stack.store_mail(&format!("{run}-a"), &alert(&same_id, &subject_a));
    let a = stack.invoke(&ses_event(&format!("{run}-a"), &["bugs@example.test"]));
    assert!(a.is_ok(), "{a:?}");
    assert_eq!(rt::tickets_with_subject(&subject_a).len(), 1);

    stack.store_mail(&format!("{run}-b"), &alert(&same_id, &subject_b));
    let event_b = ses_event(&format!("{run}-b"), &["bugs@example.test"]);
    let first = stack.invoke(&event_b);
    assert!(
        first.is_err(),
        "alert B is not in RT: the invocation must fail so Lambda retries it, got {first:?}"
    );
    assert!(rt::tickets_with_subject(&subject_b).is_empty());
    let retry = stack.invoke(&event_b);
    assert!(retry.is_ok(), "{retry:?}");
    assert_eq!(
        rt::tickets_with_subject(&subject_b).len(),
        1,
        "alert B is a ticket, once"
    );
    assert_eq!(rt::tickets_with_subject(&subject_a).len(), 1, "alert A is untouched");
    assert_eq!(proxy.requests().len(), 3, "A, B's lost post, B's retry");
}

#[test]
fn oddly_written_message_ids_are_found_after_an_unclear_answer_never_posted_twice() {
    let rt_url = rt::url();
    // Every post reaches RT, which takes the mail; the client gets the proxy's 502.
    let proxy = StandIn::start(move |_| Answer::ForwardThen(rt_url.clone(), AfterCommit::Status(502)));
    let stack = stack_behind(&proxy);
    let run = unique("odd-id");
    let cases = [
        (
            "comment",
            format!("Message-ID: <{run}-1@x.example> (sent by a script)\r\n"),
        ),
        (
            "two headers",
            format!("Message-ID: <{run}-2a@x.example>\r\nMessage-ID: <{run}-2b@x.example>\r\n"),
        ),
        ("folded", format!("Message-ID:\r\n <{run}-3@x.example>\r\n")),
        ("no brackets", format!("Message-ID: {run}-4@x.example\r\n")),
        ("none", String::new()),
    ];
    for (n, (what, lines)) in cases.iter().enumerate() {
        let id = format!("{run}-{n}");
        let subject = format!("{run} {what}");
        stack.store_mail(&id, &alert(lines, &subject));
        let answer = stack.invoke(&ses_event(&id, &["bugs@example.test"]));
        assert!(answer.is_ok(), "{what}: RT holds it, so it is delivered: {answer:?}");
        assert_eq!(answer.unwrap()["delivered"], 1, "{what}");
        assert_eq!(rt::tickets_with_subject(&subject).len(), 1, "{what}: one ticket");
    }
    assert_eq!(proxy.requests().len(), cases.len(), "each mail posted once");
    // RT keeps the delivery id with the mail's headers, where an admin can see it.
    let ticket = rt::only_ticket_with_subject(&format!("{run} none"));
    let history = rt::history(ticket);
    assert!(!history.is_empty());
    let log = stack.function_log();
    assert!(
        log.iter()
            .filter(|l| l["fields"]["duplicate_avoided"] == "rt-lookup")
            .count()
            >= cases.len(),
        "each found by the lookup"
    );
}
