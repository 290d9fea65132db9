//! Recovering after an outage or a misroute: `rt-mailgate-replay` re-delivers mails from
//! the bucket (by message id, or every message of a dead-letter queue), against moto and
//! the real RT behind the README's front door (asked as the README's lookup user), and
//! never posts what RT already took.

mod support;

use serde_json::json;
use support::lambda::{ses_event, Door, LambdaStack, ROUTES};
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
    let mut stack = LambdaStack::without_function(1);
    stack.open_door(Door::default());
    stack.start_functions(&[("RT_URL", &down.url)], 1);
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

    // RT is back: replay the queue through the door.
    let door = stack.door().unwrap();
    let out = stack.replay(
        &["--dlq-url", &dlq],
        &[("RT_URL", door.url()), ("RT_CA_FILE", door.ca())],
    );
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

#[test]
fn a_mail_given_up_for_a_queue_rt_lacked_is_posted_by_a_replay_once_rt_has_it() {
    // A domain whose local part is the queue: RT has no queue of this name yet, and
    // says so to the README's lookup user (SeeQueue granted globally).
    let routes = format!("{ROUTES}; *@desks.example.test: --action correspond");
    let stack = LambdaStack::start(&[("ROUTES", &routes)]);
    let queue = unique("new-desk");
    let address = format!("{queue}@desks.example.test");
    let (id, subject) = (unique("early"), unique("Before the queue"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let answer = stack.invoke(&ses_event(&id, &[address.as_str()])).unwrap();
    assert_eq!(answer["given_up"], 1, "{answer}");
    assert_eq!(stack.door().unwrap().posts(), 0, "never uploaded");

    // The admin makes the queue and replays the mail, as the runbook says.
    support::rt::Rt::sqlite().create_queue(&queue);
    let args = ["--message-id", id.as_str(), "--recipient", address.as_str()];
    let out = stack.replay(&args, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("delivered 1"), "{text}");
    assert_eq!(rt::ticket(rt::only_ticket_with_subject(&subject))["Queue"], queue);

    // Again: nothing more.
    let out = stack.replay(&args, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("already delivered 1"), "{text}");
    assert_eq!(rt::tickets_with_subject(&subject).len(), 1);
    assert_eq!(stack.door().unwrap().posts(), 1);
}
