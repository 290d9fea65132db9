//! A crash recovers in minutes, against the real RT (issue 13): the function process is
//! killed (`SIGKILL`, as Lambda ends an invocation that ran out of time or memory) while
//! it waits for RT's answer to a post RT has taken. Its route's record is left
//! `posting` with a lease of 45 s that nobody renews any more.
//!
//! - While the lease is live, a retry leaves the route alone (the holder might still be
//!   posting): the invocation fails, to be retried.
//! - Once the lease has run out (Lambda's own retries come a minute or more later), the
//!   retry takes the route over, asks RT first, finds the post the dead holder made, and
//!   records it: one ticket, not two, and no dead letter.
//!
//! Waiting out the lease is simulated by moving its end into the past in the record
//! (what 45 s of waiting would do), to keep the test short.

mod support;

use std::time::Duration;

use support::lambda::{ses_event, LambdaStack};
use support::standin::{AfterCommit, Answer, StandIn};
use support::{rt, unique};

#[test]
fn a_route_whose_holder_died_mid_post_is_taken_over_by_the_retry_and_not_posted_twice() {
    let rt_url = rt::url();
    // The first post reaches RT, and RT's answer is held back: the function waits.
    let forward_to = rt_url.clone();
    let proxy = StandIn::start(move |n| match n {
        0 => Answer::ForwardThen(forward_to.clone(), AfterCommit::Stall),
        _ => Answer::Forward(forward_to.clone()),
    });
    let mut stack = LambdaStack::without_function(1);
    stack.create_secret(
        "rt-mailgate/rt",
        r#"{"rt_username": "root", "rt_password": "password"}"#,
    );
    let env = [
        ("RT_URL", proxy.url.as_str()),
        ("RT_API_URL", rt_url.as_str()),
        ("RT_SECRET_ID", "rt-mailgate/rt"),
        ("RT_TIMEOUT", "60"),
    ];
    stack.start_functions(&env, 1);

    let id = unique("crash");
    let subject = format!("{id} the holder dies");
    stack.store_mail(
        &id,
        format!("From: alice@customer.example\r\nTo: bugs@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n")
            .as_bytes(),
    );
    let event = ses_event(&id, &["bugs@example.test"]);

    // The first invocation posts; RT makes the ticket; the function is killed while it
    // still waits for RT's answer.
    std::thread::scope(|s| {
        s.spawn(|| stack.invoke_and_walk_away(&event, Duration::from_secs(20)));
        let until = std::time::Instant::now() + Duration::from_secs(15);
        while rt::tickets_with_subject(&subject).is_empty() {
            assert!(
                std::time::Instant::now() < until,
                "RT never made the first post's ticket: {}",
                stack.log_text("function.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &stack.function_pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    });
    let records = stack.route_records();
    assert_eq!(records.len(), 1, "one route record");
    let (key, record) = &records[0];
    let mut record: serde_json::Value = serde_json::from_slice(record).unwrap();
    assert_eq!(record["state"], "posting", "the dead holder's record: {record}");

    // A new process, as Lambda starts one; its retry meets the live lease: not posted.
    stack.start_functions(&env, 1);
    let early = stack.invoke(&event);
    assert!(early.is_err(), "a live lease leaves the route alone: {early:?}");
    assert_eq!(rt::tickets_with_subject(&subject).len(), 1);

    // The lease runs out (45 s, and no renewal from the dead holder)...
    record["lease_until_ms"] = 1.into();
    stack.put_object(key, record.to_string().as_bytes());

    // ...and Lambda's next retry takes the route over, asks RT first, finds the post.
    let retry = stack.invoke(&event);
    assert!(retry.is_ok(), "the retry settles the route: {retry:?}");
    assert_eq!(rt::tickets_with_subject(&subject).len(), 1, "one ticket, not two");
    let found = stack.function_log().into_iter().any(|line| {
        line["fields"]["duplicate_avoided"] == "rt-lookup" && line["fields"]["when"] == "before posting again"
    });
    assert!(found, "RT was asked before posting again, and held the post");
    let (_, settled) = &stack.route_records()[0];
    let settled: serde_json::Value = serde_json::from_slice(settled).unwrap();
    assert_eq!(settled["state"], "delivered", "{settled}");
    assert_eq!(proxy.requests().len(), 1, "the retry posted nothing");
}
