//! `scripts/smoke-test` tells the truth at each stage of a deploy, run as the admin runs
//! it (the aws CLI, rt-mailgate-trace) against moto as the account (S3, SESv2, the
//! function's settings in moto's Lambda), cargo-lambda's emulator as `aws lambda invoke`'s
//! endpoint (moto can't run our function), our function and the real RT:
//!
//! - before the MX moves, a stored test mail and an SES-shaped event prove the deployed
//!   function and RT's path: passed only when RT made the ticket;
//! - after the MX moves, a real mail through SES is found by its subject's token (the
//!   test plays SES's inbound side: it stores what SES sent and invokes the function);
//!   "FAILED" only when the mail never arrived, with what to check next;
//! - and the canary, which such a test relies on, is refused for an address no route takes.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::lambda::{ses_event, LambdaStack, ROUTES};
use support::{rt, unique};

const SMOKE_TEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/smoke-test");
/// The name the emulator runs the function under, and moto's copy of it is given.
const FUNCTION: &str = "_";

/// The account: what the admin's shell has (credentials, region; moto as AWS).
fn account(stack: &LambdaStack) -> Vec<(&'static str, String)> {
    let trace_dir = Path::new(support::lambda::TRACE).parent().unwrap();
    let mut account = stack.aws_account();
    account.extend([
        ("HOME", std::env::var("HOME").unwrap_or_default()),
        (
            "PATH",
            format!("{}:{}", trace_dir.display(), std::env::var("PATH").unwrap_or_default()),
        ),
        // `aws lambda invoke` goes to the emulator running our function.
        ("SMOKE_INVOKE_ENDPOINT", stack.invoke_endpoint()),
        ("SMOKE_POLL_SECONDS", "1".into()),
    ]);
    account
}

fn aws(stack: &LambdaStack, args: &[&str]) -> Output {
    let out = Command::new("aws")
        .args(args)
        .env_clear()
        .envs(account(stack))
        .output()
        .expect("the aws CLI runs (scripts/setup test)");
    assert!(out.status.success(), "aws {args:?}: {}", support::stderr(&out));
    out
}

/// The function as deployed: moto's Lambda holds its configuration (the environment the
/// template sets), which the script and rt-mailgate-trace read with the aws CLI.
fn deploy(stack: &LambdaStack) {
    stack.register_function(FUNCTION, &[]);
}

fn smoke_test(stack: &LambdaStack, args: &[&str]) -> Child {
    Command::new(SMOKE_TEST)
        .args(args)
        .env_clear()
        .envs(account(stack))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("scripts/smoke-test runs")
}

fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The subject the script put on its test mail, from what it printed or what SES sent.
fn smoke_subject(text: &str) -> Option<String> {
    let at = text.find("rt-mailgate smoke test smoke-")?;
    Some(
        text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || " -".contains(*c))
            .collect::<String>()
            .trim()
            .to_string(),
    )
}

#[test]
fn before_the_mx_moves_the_deployed_function_and_rts_path_are_proven() {
    let stack = LambdaStack::start(&[]);
    deploy(&stack);
    let (code, text) = finish(smoke_test(
        &stack,
        &["before-mx", FUNCTION, "support@example.test", "60"],
    ));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("smoke test passed (before the MX moves)"), "{text}");
    // RT made the ticket, and the script printed the route record that says so.
    let subject = smoke_subject(&text).expect("the script names its mail");
    let ticket = rt::only_ticket_with_subject(&subject);
    assert_eq!(rt::ticket(ticket)["Queue"], "support");
    assert!(
        text.contains("route support@example.test (support@example.test): delivered"),
        "{text}"
    );

    // An address no route takes: said so, not "passed", and nothing posted.
    let (code, text) = finish(smoke_test(
        &stack,
        &["before-mx", FUNCTION, "nobody@example.test", "10"],
    ));
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("no route takes nobody@example.test"), "{text}");
    let subject = smoke_subject(&text).unwrap();
    assert!(rt::tickets_with_subject(&subject).is_empty());
}

#[test]
fn before_the_mx_moves_an_rt_the_function_cannot_reach_fails_the_smoke_test() {
    // RT's front door is down (nothing listens): the invocation fails and is retried by
    // Lambda; the smoke test says FAILED with the function's own error.
    let stack = LambdaStack::start(&[("RT_URL", "http://127.0.0.1:9")]);
    deploy(&stack);
    let (code, text) = finish(smoke_test(
        &stack,
        &["before-mx", FUNCTION, "support@example.test", "10"],
    ));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("smoke-test FAILED"), "{text}");
    assert!(!text.contains("passed"), "{text}");
}

#[test]
fn after_the_mx_moves_a_mail_through_ses_is_found_by_its_subject() {
    let routes = format!("{ROUTES}; smoke@example.test: --queue support");
    let stack = LambdaStack::start(&[("ROUTES", &routes), ("NOTICE_FROM", "rt-mailgate@example.test")]);
    stack.verify_ses_identity("rt-mailgate@example.test");
    deploy(&stack);
    let mut running = Running::start(&stack, &["after-mx", FUNCTION, "smoke@example.test", "90"]);

    // SES's inbound side: what SES sent arrives (the MX points at SES), SES rewrites the
    // envelope sender and Message-ID, stores the mail and invokes the function. A
    // stranger's mail to the same address arrives first: the token tells them apart.
    let subject = running.sent_subject(&stack);
    let other = unique("other");
    stack.store_mail(
        &other,
        &support::mails::plain("stranger@customer.example", &unique("Unrelated"), "x"),
    );
    let id = unique("ses-inbound");
    let mail = format!(
        "Return-Path: <0100019a-bounce@amazonses.com>\r\nFrom: rt-mailgate@example.test\r\n\
         To: smoke@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <0100019a-{id}@email.amazonses.com>\r\n\r\nA test mail.\r\n"
    );
    stack.store_mail(&id, mail.as_bytes());
    let mut event = ses_event(&id, &["smoke@example.test"]);
    event["Records"][0]["ses"]["mail"]["source"] = "0100019a-bounce@amazonses.com".into();
    let answer = stack.invoke(&event).unwrap();
    assert_eq!(answer["delivered"], 1, "{answer}");

    let (code, text) = running.finish();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("SES stored it as inbound/{id}")), "{text}");
    assert!(
        text.contains("smoke test passed: mail flows from SES through the function into RT"),
        "{text}"
    );
    assert!(!text.contains("FAILED"), "{text}");
    let ticket = rt::only_ticket_with_subject(&subject);
    assert_eq!(rt::ticket(ticket)["Queue"], "support");
    assert!(
        text.contains("route smoke@example.test (smoke@example.test): delivered"),
        "{text}"
    );
}

#[test]
fn after_the_mx_moves_failed_means_the_mail_never_arrived() {
    let stack = LambdaStack::start(&[("NOTICE_FROM", "rt-mailgate@example.test")]);
    stack.verify_ses_identity("rt-mailgate@example.test");
    deploy(&stack);
    let start = Instant::now();
    let (code, text) = finish(smoke_test(&stack, &["after-mx", FUNCTION, "support@example.test", "5"]));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("smoke test FAILED: the mail did not arrive within 5 s"),
        "{text}"
    );
    for next in ["MX record", "rule set is active", "verified in SES"] {
        assert!(text.contains(next), "what to check: {next}: {text}");
    }
    assert!(start.elapsed() < Duration::from_secs(60));

    // It arrived, but RT does not take it (the route's queue is missing): not "FAILED",
    // and the trace says why.
    let routes = format!("{ROUTES}; broken@example.test: --queue no-such-queue");
    let stack = LambdaStack::start(&[("ROUTES", &routes), ("NOTICE_FROM", "rt-mailgate@example.test")]);
    stack.verify_ses_identity("rt-mailgate@example.test");
    deploy(&stack);
    let mut running = Running::start(&stack, &["after-mx", FUNCTION, "broken@example.test", "20"]);
    let subject = running.sent_subject(&stack);
    let id = unique("ses-inbound");
    stack.store_mail(
        &id,
        format!("From: rt-mailgate@example.test\r\nTo: broken@example.test\r\nSubject: {subject}\r\n\r\nx\r\n")
            .as_bytes(),
    );
    stack.invoke(&ses_event(&id, &["broken@example.test"])).unwrap();
    let (code, text) = running.finish();
    assert_eq!(code, Some(3), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
    assert!(
        text.contains(&format!("the mail arrived (SES id {id}) but RT has not taken it")),
        "{text}"
    );
    assert!(text.contains("given-up"), "the trace's story: {text}");
}

#[test]
fn a_canary_address_no_route_takes_is_refused() {
    let stack = LambdaStack::start(&[("NOTICE_FROM", "rt-mailgate@example.test")]);
    stack.verify_ses_identity("rt-mailgate@example.test");
    let (kind, message) = stack
        .invoke(&json!({"rt-mailgate": {"canary": {"to": "canary@example.test"}}}))
        .unwrap_err();
    assert_eq!(kind, "MalformedEvent");
    assert!(message.contains("no route takes canary@example.test"), "{message}");
    assert!(stack.sent_mail().is_empty(), "no canary mail sent");
}

/// A smoke test still running: its output so far is read line by line.
struct Running {
    child: Child,
    stdout: BufReader<std::process::ChildStdout>,
    seen: String,
}

impl Running {
    fn start(stack: &LambdaStack, args: &[&str]) -> Self {
        let mut child = smoke_test(stack, args);
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdout,
            seen: String::new(),
        }
    }

    /// The subject of the mail the smoke test says it sent through SES, once it says so;
    /// checked against SES's own count of sent mail.
    fn sent_subject(&mut self, stack: &LambdaStack) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            self.seen.push_str(&line);
            if n == 0 {
                let (_, rest) = self.finish();
                panic!("the smoke test sent no mail through SES: {rest}");
            }
            if line.starts_with("sent \"") {
                let sent = aws(stack, &["ses", "get-send-quota", "--query", "SentLast24Hours"]);
                assert_eq!(String::from_utf8_lossy(&sent.stdout).trim(), "1.0", "SES sent it");
                return smoke_subject(&line).expect("the subject");
            }
        }
    }

    /// Waits for the end: (exit code, everything it printed).
    fn finish(&mut self) -> (Option<i32>, String) {
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut err).unwrap();
        }
        let status = self.child.wait().unwrap();
        (status.code(), format!("{}{rest}{err}", self.seen))
    }
}
