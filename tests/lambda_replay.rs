//! Recovering after an outage or a misroute: `rt-mailgate-replay` re-delivers mails from
//! the bucket (by message id, or every message of a dead-letter queue), against moto and
//! the real RT, and never posts what RT already took.

mod support;

use serde_json::json;
use support::lambda::{ses_event, LambdaStack, ROUTES};
use support::standin::{Answer, StandIn};
use support::{rt, unique};

fn smtp_mail(subject: &str) -> Vec<u8> {
    format!("From: alice@customer.example\r\nSubject: {subject}\r\nMessage-ID: <{subject}@customer.example>\r\n\r\nbody\r\n")
        .into_bytes()
}

#[test]
fn a_given_up_mail_is_replayed_once_the_route_is_fixed() {
    let broken = format!("{ROUTES}; sales@example.test: --queue no-such-queue");
    let stack = LambdaStack::start(&[("ROUTES", &broken)]);
    let (id, subject) = (unique("misrouted"), unique("Sales lead"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let answer = stack.invoke(&ses_event(&id, &["sales@example.test"])).unwrap();
    assert_eq!(answer["given_up"], 1);
    assert!(rt::tickets_with_subject(&subject).is_empty());

    // The admin fixes the route and replays.
    let fixed = format!("{ROUTES}; sales@example.test: --queue support");
    let args = ["--message-id", id.as_str(), "--recipient", "sales@example.test"];
    let out = stack.replay(&args, &[("ROUTES", &fixed)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("delivered 1"), "{text}");
    assert_eq!(rt::ticket(rt::only_ticket_with_subject(&subject))["Queue"], "support");

    // Replaying again posts nothing.
    let out = stack.replay(&args, &[("ROUTES", &fixed)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("already delivered 1"), "{text}");
    assert_eq!(rt::tickets_with_subject(&subject).len(), 1);
}

#[test]
fn a_failed_event_saved_to_a_file_is_replayed() {
    // The admin saved a dead-letter message (Lambda's on-failure record) to a file and
    // replays it with `--event FILE` once the route is fixed.
    let broken = format!("{ROUTES}; sales@example.test: --queue no-such-queue");
    let stack = LambdaStack::start(&[("ROUTES", &broken)]);
    let (id, subject) = (unique("saved-event"), unique("Saved event"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let event = ses_event(&id, &["sales@example.test"]);
    assert_eq!(stack.invoke(&event).unwrap()["given_up"], 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failed-event.json");
    let on_failure = json!({"version": "1.0", "requestPayload": event});
    std::fs::write(&file, on_failure.to_string()).unwrap();

    let fixed = format!("{ROUTES}; sales@example.test: --queue support");
    let out = stack.replay(&["--event", file.to_str().unwrap()], &[("ROUTES", &fixed)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("delivered 1"), "{text}");
    assert_eq!(rt::ticket(rt::only_ticket_with_subject(&subject))["Queue"], "support");
}

#[test]
fn a_dead_letter_queue_is_drained_into_rt_after_an_outage() {
    // RT is down (503) while the mail arrives: the invocation fails, and after Lambda's
    // retries its on-failure destination puts the event on the dead-letter queue.
    let down = StandIn::always(Answer::status(503));
    let stack = LambdaStack::start(&[("RT_URL", &down.url)]);
    let (id, subject) = (unique("outage"), unique("During the outage"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let event = ses_event(&id, &["bugs@example.test", "support@example.test"]);
    assert_eq!(stack.invoke(&event).unwrap_err().0, "DeliveryWillBeRetried");
    let dlq = stack.create_queue("rt-mailgate-dlq");
    let on_failure = json!({
        "version": "1.0", "requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": event, "responsePayload": {"errorType": "DeliveryWillBeRetried"}
    });
    stack.send_to_queue(&dlq, &on_failure.to_string());
    stack.send_to_queue(&dlq, "this is not an event");
    assert_eq!(stack.queue_depth(&dlq), 2);

    // RT is back: replay the queue against the real RT.
    let out = stack.replay(&["--dlq-url", &dlq], &[("RT_URL", &rt::url())]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "one message was not understood: {text}");
    assert!(
        text.contains("delivered 2") && text.contains("not understood"),
        "{text}"
    );
    assert_eq!(rt::tickets_with_subject(&subject).len(), 2, "one ticket per route");
    assert_eq!(
        stack.queue_depth(&dlq),
        1,
        "the replayed message is deleted, the bad one stays"
    );
}

#[test]
fn a_replay_with_the_route_still_broken_exits_non_zero_and_keeps_the_dead_letter() {
    let broken = format!("{ROUTES}; sales@example.test: --queue no-such-queue");
    let stack = LambdaStack::start(&[("ROUTES", &broken)]);
    let (id, subject) = (unique("still-broken"), unique("Still broken"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let event = ses_event(&id, &["sales@example.test"]);
    assert_eq!(stack.invoke(&event).unwrap()["given_up"], 1);
    let dlq = stack.create_queue("rt-mailgate-dlq-broken");
    let on_failure = json!({"version": "1.0", "requestPayload": event});
    stack.send_to_queue(&dlq, &on_failure.to_string());

    // Replayed before the route is fixed: given up again. Not a success, and the message
    // stays for the replay after the fix.
    let out = stack.replay(&["--dlq-url", &dlq], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("given-up") && text.contains("create the queue"),
        "what to fix: {text}"
    );
    assert!(text.contains(&format!("{id}: NOT DONE")), "{text}");
    assert!(text.contains("stay on the queue"), "{text}");
    assert_eq!(stack.queue_depth(&dlq), 1, "the dead-letter message is kept");
    assert!(rt::tickets_with_subject(&subject).is_empty());

    // Fixed: the same replay delivers it, says so, and empties the queue.
    let fixed = format!("{ROUTES}; sales@example.test: --queue support");
    let out = stack.replay(&["--dlq-url", &dlq], &[("ROUTES", &fixed)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("delivered: ticket "), "the ticket is named: {text}");
    assert_eq!(stack.queue_depth(&dlq), 0);
}

#[test]
fn a_replay_of_a_recipient_without_a_route_is_not_done() {
    let stack = LambdaStack::start(&[]);
    let id = unique("unrouted");
    stack.store_mail(&id, &smtp_mail(&id));
    let out = stack.replay(&["--message-id", &id, "--recipient", "nobody@example.test"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("nobody@example.test: no route"), "{text}");
}
