//! One route, one identity, against the real RT with an RT login: a route written
//! another way between two attempts of one mail (RT's default action written out, a
//! queue name in other letters' case, the options in another order) is the same post,
//! with the same delivery id and record. So an attempt cut after RT took the mail is
//! found in RT by the next one, whatever the admin edited meanwhile: one ticket.
//!
//! The first attempt's post reaches RT, which makes the ticket; the client gets a
//! proxy's 502, and RT's API is down (503) for the rest of that invocation, so it can't
//! learn whether RT took the mail: the route is left `unsure`, the invocation fails.
//! Then the admin rewrites the route, and Lambda's retry runs in a new process.

mod support;

use support::lambda::{ses_event, LambdaStack};
use support::standin::{AfterCommit, Answer, StandIn};
use support::{rt, unique};

const RT_LOGIN: &str = r#"{"rt_username": "root", "rt_password": "password"}"#;

#[test]
fn a_route_rewritten_between_two_attempts_is_the_same_post_not_a_second_ticket() {
    let rt_url = rt::url();
    // The first post reaches RT and RT takes it; the function gets a 502.
    let forward_to = rt_url.clone();
    let proxy = StandIn::start(move |n| match n {
        0 => Answer::ForwardThen(forward_to.clone(), AfterCommit::Status(502)),
        _ => Answer::Forward(forward_to.clone()),
    });
    let api_down = StandIn::always(Answer::status(503));
    let mut stack = LambdaStack::without_function(1);
    stack.create_secret("rt-mailgate/rt", RT_LOGIN);
    let env = |routes: &'static str, api: &str| {
        vec![
            ("ROUTES".to_string(), routes.to_string()),
            ("RT_URL".to_string(), proxy.url.clone()),
            ("RT_API_URL".to_string(), api.to_string()),
            ("RT_SECRET_ID".to_string(), "rt-mailgate/rt".to_string()),
            // RT may be storing a post for 2 s after its last sign: short, for the test.
            ("RT_TIMEOUT".to_string(), "2".to_string()),
        ]
    };
    let start = |stack: &mut LambdaStack, vars: &[(String, String)]| {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        stack.start_functions(&vars, 1);
    };
    start(&mut stack, &env("help@example.test: --queue support", &api_down.url));

    let id = unique("respelled");
    let subject = format!("{id} one post, two spellings");
    stack.store_mail(
        &id,
        format!("From: alice@customer.example\r\nTo: help@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n")
            .as_bytes(),
    );
    let event = ses_event(&id, &["help@example.test"]);

    let first = stack.invoke(&event);
    assert!(
        first.is_err(),
        "RT's answer was lost and RT can't be asked: left for the retry, got {first:?}"
    );
    assert_eq!(rt::tickets_with_subject(&subject).len(), 1, "RT took the first post");
    let records = stack.route_records();
    assert_eq!(records.len(), 1, "{records:?}");
    let (key, record) = &records[0];
    let record: serde_json::Value = serde_json::from_slice(record).unwrap();
    assert_eq!(record["state"], "unsure", "{record}");

    // The admin writes the route out in full, other case, other order; the retry runs in
    // a new process with the new table (and RT's API back).
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &stack.function_pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    start(
        &mut stack,
        &env("help@example.test: --action Correspond --queue=Support", &rt_url),
    );
    let retry = stack.invoke(&event);
    assert!(retry.is_ok(), "the retry finds the post in RT: {retry:?}");
    assert_eq!(retry.unwrap()["delivered"], 1);

    assert_eq!(rt::tickets_with_subject(&subject).len(), 1, "one ticket, not two");
    assert_eq!(proxy.requests().len(), 1, "the retry posted nothing");
    let records = stack.route_records();
    assert_eq!(records.len(), 1, "one record for both spellings: {records:?}");
    assert_eq!(&records[0].0, key, "the same record");
    let settled: serde_json::Value = serde_json::from_slice(&records[0].1).unwrap();
    assert_eq!(settled["state"], "delivered", "{settled}");
    assert_eq!(settled["delivery_id"], record["delivery_id"], "the same delivery id");
}

#[test]
fn a_real_change_of_queue_between_two_attempts_is_a_new_post_by_design() {
    // The first attempt is given up (no such queue); the admin points the route at
    // another queue: that is another post, made at once.
    let stack = LambdaStack::start(&[("ROUTES", "help@example.test: --queue no-such-queue")]);
    let id = unique("requeued");
    let subject = format!("{id} moved to support");
    stack.store_mail(
        &id,
        format!("From: alice@customer.example\r\nTo: help@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n")
            .as_bytes(),
    );
    let answer = stack.invoke(&ses_event(&id, &["help@example.test"])).unwrap();
    assert_eq!(answer["given_up"], 1, "{answer}");
    let out = stack.replay(
        &["--message-id", &id, "--recipient", "help@example.test"],
        &[("ROUTES", "help@example.test: --queue support")],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rt::ticket(rt::only_ticket_with_subject(&subject))["Queue"], "support");
    assert_eq!(
        stack.objects_under(&format!("delivery-records/{id}/")).len(),
        2,
        "two posts, two records"
    );
}
