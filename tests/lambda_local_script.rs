//! `scripts/lambda-local`, the Lambda half of `scripts/demo` (the README's first
//! command): started with the function as built, it takes a mail into its moto bucket,
//! invokes the function with the shipped `events/ses-multi-recipient.json`, and both
//! routed recipients become tickets in the real RT; the unrouted one is counted. Ports
//! and state of its own, so it runs beside the other tests.

mod support;

use std::process::Command;

use support::lambda::FUNCTION;
use support::{rt, unique};

/// Runs `scripts/lambda-local ARGS` with this test's state folder, ports and RT.
fn lambda_local(state: &std::path::Path, ports: (u16, u16), args: &[&str]) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lambda-local"))
        .args(args)
        .env("LAMBDA_LOCAL_STATE", state)
        .env("MOTO_PORT", ports.0.to_string())
        .env("LAMBDA_API_PORT", ports.1.to_string())
        .env("RT_URL", rt::url())
        .output()
        .expect("scripts/lambda-local runs")
}

/// Stops what the script started, whatever the test's end.
struct Stopped<'a>(&'a std::path::Path, (u16, u16));

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let _ = lambda_local(self.0, self.1, &["stop"]);
    }
}

#[test]
fn the_demos_lambda_delivers_the_shipped_event_with_its_default_settings() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("stack");
    let ports = (support::lambda::free_port(), support::lambda::free_port());
    let _stop = Stopped(&state, ports);
    let started = lambda_local(&state, ports, &["start", FUNCTION]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));

    let subject = unique("Two desks, one mail");
    let mail = dir.path().join("mail.eml");
    std::fs::write(
        &mail,
        format!("From: alice@customer.example\r\nTo: bugs@example.test, support@example.test\r\nSubject: {subject}\r\n\r\nFor both desks.\r\n"),
    )
    .unwrap();
    let put = lambda_local(&state, ports, &["put", "demo-multi-0001", mail.to_str().unwrap()]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));

    let event = concat!(env!("CARGO_MANIFEST_DIR"), "/events/ses-multi-recipient.json");
    let invoked = lambda_local(&state, ports, &["invoke", event]);
    let answer = String::from_utf8_lossy(&invoked.stdout);
    assert!(
        invoked.status.success(),
        "{answer}{}",
        String::from_utf8_lossy(&invoked.stderr)
    );
    let summary: serde_json::Value = serde_json::from_str(answer.trim()).expect("the summary, as JSON");
    assert_eq!(summary["delivered"], 2, "{summary}");
    assert_eq!(summary["unrouted"], 1, "{summary}");
    let queues: Vec<String> = rt::tickets_like(&subject).into_iter().map(|t| t.queue).collect();
    assert_eq!(queues.len(), 2, "one ticket per desk: {queues:?}");
    assert!(queues.contains(&"bugs".to_string()) && queues.contains(&"support".to_string()));
}
