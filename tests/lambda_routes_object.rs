//! A routing table of any size, kept as an object in the mail bucket (`ROUTES_S3_KEY`,
//! the template's `RoutesObjectKey`): the function reads it at cold start, routes its
//! last entry as any other, and follows a change without a redeploy; a bad new table
//! leaves the last good one in use, and a bad table at cold start stops the function
//! before any mail is touched; so does a route whose own `--url` breaks the rule
//! `RT_URL` keeps (plain http to another machine, loopback inside Lambda). moto as S3, the real RT, the function through the Lambda
//! runtime API emulator.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::lambda::{ses_event, LambdaStack};
use support::{rt, unique};

const KEY: &str = "config/routes.txt";

/// A table as `rt-mailgate-routes import-aliases` prints it (`#` comments first), with
/// `count` desks routed to General before `last`, its final entry.
fn table(count: usize, last: &str) -> String {
    let mut text = String::from(
        "# Lambda routes from /etc/aliases, made by `rt-mailgate-routes import-aliases`.\n\
         # The RT the aliases post to:\n#   RtUrl=https://rt.example.test  (all aliases)\n",
    );
    for n in 0..count {
        text.push_str(&format!(
            "desk-{n:04}@example.test: --queue General --action correspond --extension ticket\n\
             desk-{n:04}-comment@example.test: --queue General --action comment --extension ticket\n"
        ));
    }
    text.push_str(last);
    text.push('\n');
    text
}

fn smtp_mail(subject: &str) -> Vec<u8> {
    format!(
        "From: alice@customer.example\r\nTo: last-desk@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@customer.example>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n"
    )
    .into_bytes()
}

/// Stores a mail for `recipient`, invokes the function, gives its answer and subject.
fn deliver(stack: &LambdaStack, recipient: &str) -> (Value, String) {
    let (id, subject) = (unique("routes-object"), unique("Routes from S3"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let answer = stack
        .invoke(&ses_event(&id, &[recipient]))
        .expect("the invocation succeeds");
    (answer, subject)
}

fn queue_of(subject: &str) -> String {
    rt::ticket(rt::only_ticket_with_subject(subject))["Queue"].clone()
}

fn log_has(stack: &LambdaStack, message: &str, needle: &str) -> bool {
    stack
        .function_log()
        .iter()
        .any(|l| l["fields"]["message"] == message && l.to_string().contains(needle))
}

#[test]
fn a_table_far_over_4_kb_routes_its_last_entry_and_changes_without_a_redeploy() {
    let first = table(400, "last-desk@example.test: --queue bugs --action correspond");
    assert!(first.len() > 10 * 4096, "{} bytes", first.len());
    let mut stack = LambdaStack::without_function(1);
    stack.put_object(KEY, first.as_bytes());
    // No ROUTES at all: the whole table is the object. Checked at every invocation here
    // (the deployed function checks at most once a minute).
    stack.start_functions(
        &[("ROUTES", ""), ("ROUTES_S3_KEY", KEY), ("ROUTES_S3_CHECK_SECONDS", "0")],
        1,
    );

    let (answer, subject) = deliver(&stack, "last-desk@example.test");
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(queue_of(&subject), "bugs");
    let delivered = stack
        .function_log()
        .into_iter()
        .find(|l| l["fields"]["outcome"] == "delivered")
        .expect("a delivered line");
    assert_eq!(delivered["fields"]["route"], "last-desk@example.test");

    // The admin uploads a new table: the next mail follows it, no redeploy.
    let second = table(400, "last-desk@example.test: --queue support --action correspond");
    stack.put_object(KEY, second.as_bytes());
    let (answer, subject) = deliver(&stack, "last-desk@example.test");
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(queue_of(&subject), "support");
    assert!(log_has(&stack, "routing table changed; now in use", KEY));

    // A broken upload (an entry without its colon) is refused, named in the log, and the
    // last good table keeps routing.
    let broken = format!("{second}broken@example.test --queue bugs\n");
    stack.put_object(KEY, broken.as_bytes());
    let (answer, subject) = deliver(&stack, "last-desk@example.test");
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(queue_of(&subject), "support");
    assert!(
        log_has(
            &stack,
            "new routing table refused; the last good one stays in use",
            "broken@example.test --queue bugs"
        ),
        "{:#?}",
        stack.function_log()
    );
    assert!(stack.function_exit().is_none(), "the function keeps serving");
}

/// Starts the function on a table object `table` (or none), waits for it to stop, and
/// gives its log: a table the function can't use stops the cold start.
fn cold_start_log(table: Option<&str>) -> String {
    cold_start_log_with(table, &[])
}

/// As [`cold_start_log`], with more of the function's environment.
fn cold_start_log_with(table: Option<&str>, env: &[(&str, &str)]) -> String {
    let mut stack = LambdaStack::without_function(1);
    if let Some(table) = table {
        stack.put_object(KEY, table.as_bytes());
    }
    let mut vars = vec![("ROUTES", ""), ("ROUTES_S3_KEY", KEY)];
    vars.extend_from_slice(env);
    stack.start_functions(&vars, 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = stack.function_exit() {
            assert!(!status.success(), "the function stopped with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the function did not stop: {}",
            stack.log_text("function.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing was read or written for a mail: no delivery record exists.
    assert!(stack.objects_under("delivery-records/").is_empty());
    stack.log_text("function.log")
}

#[test]
fn a_bad_or_missing_table_at_cold_start_stops_the_function_before_any_mail() {
    let bad = table(3, "last-desk@example.test: --queue bugs --action fix");
    let log = cold_start_log(Some(&bad));
    assert!(
        log.contains("configuration refused; no mail was touched")
            && log.contains("ROUTES_S3_KEY s3://rt-mail/config/routes.txt): route 7 `last-desk@example.test"),
        "{log}"
    );
    let log = cold_start_log(None);
    assert!(
        log.contains("s3://rt-mail/config/routes.txt does not exist (upload the routing table there"),
        "{log}"
    );
}

#[test]
fn a_routes_own_plain_http_or_loopback_url_stops_the_cold_start_as_rt_url_would() {
    // Plain http to another machine: RT_URL would need RT_ALLOW_HTTP, and so does a route.
    let plain = table(
        3,
        "last-desk@example.test: --queue bugs --url http://rt-two.example.test/rt",
    );
    let log = cold_start_log(Some(&plain));
    assert!(
        log.contains("configuration refused; no mail was touched")
            && log.contains("a route's --url is refused, as RT_URL would be")
            && log.contains("http://rt-two.example.test/rt is plain http://")
            && log.contains("RT_ALLOW_HTTP=true"),
        "{log}"
    );
    // Inside Lambda's sandbox (LAMBDA_TASK_ROOT, as Lambda sets it) loopback is the
    // function itself: refused for a route, even over https and with plain http allowed.
    let local = table(3, "last-desk@example.test: --queue bugs --url https://localhost:8443");
    let in_lambda = [
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("RT_ALLOW_HTTP", "true"),
        ("RT_URL", "https://rt.example.test"),
    ];
    let log = cold_start_log_with(Some(&local), &in_lambda);
    assert!(
        log.contains("configuration refused; no mail was touched")
            && log.contains("a route's --url is refused")
            && log.contains("https://localhost:8443/ is this machine (localhost/loopback)"),
        "{log}"
    );
    // ... and for RT_URL itself, by the same rule.
    let fine = table(3, "last-desk@example.test: --queue bugs");
    let log = cold_start_log_with(
        Some(&fine),
        &[("LAMBDA_TASK_ROOT", "/var/task"), ("RT_URL", &rt::url())],
    );
    assert!(
        log.contains("configuration refused; no mail was touched")
            && log.contains(&format!("RT_URL: RT URL {}", rt::url()))
            && log.contains("is this machine (localhost/loopback): in Lambda that is the function itself"),
        "{log}"
    );
}
