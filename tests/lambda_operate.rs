//! Operating the function, as the on-call RT admin does: what happened to a mail
//! (`rt-mailgate-trace` from the route records, the log lines that carry the request and
//! message ids at every log level), a replay run inside the function, and the canary
//! mail through SES (moto's outbox). Against moto, the runtime API emulator and the real
//! RT.

mod support;

use serde_json::json;
use support::lambda::{ses_event, LambdaStack, ROUTES, TRACE};
use support::{mails, rt, unique};

/// A mail to a working route and a broken one, delivered by the function.
fn mail_with_a_broken_route(stack: &LambdaStack) -> (String, String, String) {
    let (id, subject) = (unique("traced"), unique("Where did it go"));
    let header = format!("<{subject}@customer.example>");
    stack.store_mail(&id, &mails::plain("alice@customer.example", &subject, "x"));
    let mut event = ses_event(&id, &["support@example.test", "sales@example.test"]);
    event["Records"][0]["ses"]["mail"]["commonHeaders"]["messageId"] = header.clone().into();
    let answer = stack.invoke(&event).unwrap();
    assert_eq!(
        (answer["delivered"].as_u64(), answer["given_up"].as_u64()),
        (Some(1), Some(1))
    );
    (id, subject, header)
}

fn broken_routes() -> String {
    format!("{ROUTES}; sales@example.test: --queue no-such-queue")
}

#[test]
fn the_trace_says_what_happened_to_each_route_of_a_mail() {
    let stack = LambdaStack::start(&[("ROUTES", &broken_routes())]);
    let (id, subject, header) = mail_with_a_broken_route(&stack);
    let ticket = rt::only_ticket_with_subject(&subject);

    // By SES's message id, by the Message-ID header, by sender and time: the same story.
    let by_id = ["--message-id", id.as_str()];
    let bare = header.trim_matches(['<', '>']).to_string();
    let by_header = ["--header", bare.as_str()];
    let by_sender = ["--sender", "Alice@customer.example", "--since", "10m"];
    for args in [&by_id[..], &by_header[..], &by_sender[..]] {
        let out = stack.tool(TRACE, args, &[]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "a route is not done: {text}{}",
            support::stderr(&out)
        );
        assert!(
            text.contains(&format!("mail {id}: from <alice@customer.example>")),
            "{text}"
        );
        // The ticket where RT's answer named it, else how to find it in RT.
        assert!(
            text.contains(&format!("delivered: ticket {ticket}"))
                || text.contains(&format!("X-RT-Mailgate-Delivery: {id}.")),
            "{args:?}: {text}"
        );
        assert!(
            text.contains("given-up: RT has no such queue") && text.contains("create the queue"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "rt-mailgate-replay --message-id {id} --recipient sales@example.test"
            )),
            "how to get it in: {text}"
        );
    }
    // The log commands, with the log group.
    let out = stack.tool(
        TRACE,
        &["--message-id", &id, "--log-group", "/aws/lambda/mailgate"],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("aws logs filter-log-events --log-group-name /aws/lambda/mailgate"),
        "{text}"
    );

    // A mail the function never saw: said so, exit 2.
    let out = stack.tool(TRACE, &["--message-id", "never-seen"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("never got it"));
}

#[test]
fn under_a_warn_log_level_every_line_carries_the_request_and_message_ids() {
    let stack = LambdaStack::start(&[("ROUTES", &broken_routes()), ("AWS_LAMBDA_LOG_LEVEL", "WARN")]);
    let (id, _, header) = mail_with_a_broken_route(&stack);
    let log = stack.function_log();
    let mine: Vec<_> = log.iter().filter(|l| l.to_string().contains(&id)).collect();
    assert!(!mine.is_empty(), "{log:?}");
    for line in &mine {
        assert_eq!(line["span"]["message_id"], id.as_str(), "{line}");
        let spans = line["spans"].as_array().expect("the span list");
        assert!(
            spans
                .iter()
                .any(|s| s["requestId"].as_str().is_some_and(|r| !r.is_empty())),
            "no request id: {line}"
        );
    }
    // The give-up's outcome line names the sender and the Message-ID header.
    let outcome = mine
        .iter()
        .find(|l| l["fields"]["message"] == "delivery outcome" && l["fields"]["outcome"] == "given-up")
        .expect("the give-up's outcome line");
    assert_eq!(outcome["fields"]["sender"], "alice@customer.example");
    assert_eq!(outcome["fields"]["message_id_header"], header.as_str());
}

#[test]
fn a_missing_mail_is_logged_once() {
    let stack = LambdaStack::start(&[]);
    let id = unique("never-stored");
    let (kind, _) = stack.invoke(&ses_event(&id, &["support@example.test"])).unwrap_err();
    assert_eq!(kind, "MailNotReadable");
    let log = stack.log_text("function.log");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("does not exist")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["fields"]["kind"], "MailNotReadable");
    assert!(
        line["span"]["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{line}"
    );
}

#[test]
fn a_replay_runs_inside_the_function_and_says_whether_it_is_done() {
    let stack = LambdaStack::start(&[("ROUTES", &broken_routes())]);
    let (id, _, _) = mail_with_a_broken_route(&stack);
    let request = json!({"rt-mailgate": {"replay": {"message_id": id, "recipients": ["sales@example.test", "support@example.test"]}}});
    let answer = stack.invoke(&request).unwrap();
    assert_eq!(answer["done"], false, "{answer}");
    let report = answer["report"].as_str().unwrap();
    assert!(
        report.contains("create the queue") && report.contains("already delivered 1"),
        "{report}"
    );
    // A request the function does not know is refused, not taken for a mail.
    let (kind, _) = stack.invoke(&json!({"rt-mailgate": {"delete": {}}})).unwrap_err();
    assert_eq!(kind, "MalformedEvent");
}

#[test]
fn the_canary_sends_a_mail_through_ses() {
    // The canary address has its route (one no route takes is refused: tests/deploy_smoke.rs).
    let routes = format!("{ROUTES}; canary@example.test: --queue support");
    let stack = LambdaStack::start(&[("NOTICE_FROM", "rt-mailgate@example.test"), ("ROUTES", &routes)]);
    stack.verify_ses_identity("rt-mailgate@example.test");
    let answer = stack
        .invoke(&json!({"rt-mailgate": {"canary": {"to": "canary@example.test"}}}))
        .unwrap();
    assert_eq!(answer["canary_sent_to"], "canary@example.test");
    let sent = stack.sent_mail();
    assert!(
        sent.iter()
            .any(|m| m.contains("rt-mailgate canary") && m.contains("canary@example.test")),
        "{sent:?}"
    );

    // Without NOTICE_FROM it fails loudly (the alarm on errors sees it).
    let bare = LambdaStack::start(&[]);
    let (kind, message) = bare
        .invoke(&json!({"rt-mailgate": {"canary": {"to": "canary@example.test"}}}))
        .unwrap_err();
    assert_eq!(kind, "MalformedEvent");
    assert!(message.contains("NOTICE_FROM"), "{message}");
}

#[test]
fn the_tools_take_their_settings_from_the_deployed_function() {
    let stack = LambdaStack::start(&[("ROUTES", &broken_routes())]);
    let (id, _, _) = mail_with_a_broken_route(&stack);
    // The function as deployed (moto's Lambda): its environment with the route fixed.
    let credentials = stack.aws_account();
    let run = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_default())
            .envs(credentials.clone())
            .output()
            .unwrap_or_else(|e| panic!("{program} runs (the aws CLI: pip install awscli): {e}"))
    };
    let routes = format!("{ROUTES}; sales@example.test: --queue support");
    stack.register_function("mailgate", &[("ROUTES", &routes)]);

    // Nothing set locally but the credentials: the settings come from the function.
    let out = run(TRACE, &["--function-name", "mailgate", "--message-id", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}{}", support::stderr(&out));
    assert!(
        text.contains("given-up") && text.contains("--log-group-name /aws/lambda/mailgate"),
        "{text}"
    );
    let out = run(
        support::lambda::REPLAY,
        &[
            "--function-name",
            "mailgate",
            "--message-id",
            &id,
            "--recipient",
            "sales@example.test",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", support::stderr(&out));
    assert!(text.contains("delivered 1"), "{text}");
}

#[test]
fn the_commands_a_report_prints_are_quoted_for_a_shell() {
    let stack = LambdaStack::start(&[]);
    let id = unique("quoted");
    stack.store_mail(&id, &mails::plain("alice@customer.example", &unique("Quoted"), "x"));
    // A recipient no route takes, as a sender may write it (SES passes quoted local parts).
    let hostile = "\"x$(touch /tmp/rt-mailgate-pwned)'`id`;\"@example.test";
    let request = json!({"rt-mailgate": {"replay": {"message_id": id, "recipients": [hostile]}}});
    let answer = stack.invoke(&request).unwrap();
    let report = answer["report"].as_str().unwrap();
    let next = report
        .lines()
        .find(|l| l.contains("next:"))
        .unwrap_or_else(|| panic!("{report}"));
    // The replay command, as a shell would split it: the recipient whole, nothing run.
    let start = next.find("rt-mailgate-replay").unwrap();
    let command = next[start..].strip_suffix(')').unwrap();
    assert_eq!(
        shlex::split(command).unwrap(),
        [
            "rt-mailgate-replay",
            "--message-id",
            id.as_str(),
            "--recipient",
            hostile
        ],
        "{next}"
    );
}
