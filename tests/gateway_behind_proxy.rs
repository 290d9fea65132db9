//! A private, authenticated path to a cloud-hosted RT (issue 8), shown against real
//! parts: the real RT behind the nginx site we ship (`deploy/nginx/`, run over TLS by
//! `scripts/rt-proxy`), which lets a post through only with its credential: a secret
//! header, basic auth, or a client certificate (mTLS). The Apache site we ship
//! (`deploy/apache/`) is held to the same rules: each check with the CLI, a rotation with
//! the function.
//!
//! Both doors fail closed (issue 14): installed without any check, they refuse every post
//! (403, with a body that says no auth mode is configured); the CLI exits 75, the function
//! retries and dead-letters, and nothing reaches RT.
//!
//! For each kind of credential:
//! - The CLI, given the secret JSON with `--secret-file`, gets its mail into RT. Without
//!   the credential, or with a wrong one, nginx refuses: the CLI exits 75 (the MTA keeps
//!   the mail and retries) and nothing reaches RT.
//! - The function, given the same JSON as a Secrets Manager secret (`RT_SECRET_ID`, in
//!   moto) that it reads at cold start, delivers an SES event's mail into RT.
//! - With a wrong, stale or missing credential every try is refused; after Lambda's two
//!   retries the event is dead-lettered, but the mail is not lost: once the secret is
//!   fixed, `rt-mailgate-replay` delivers it exactly once, and a late retry of the event
//!   posts nothing more.
//! - Rotation (header and basic): the proxy takes a new credential and the secret gets
//!   it; the running function is refused once with the old one, reads the secret again,
//!   and delivers at the first try.
//!
//! - Rotation without a window (issue 16), in docs/deploy.md's order: the new credential is
//!   added at the door beside the old and the door reloaded (both pass), the secret is
//!   updated, then the old credential is removed and the door reloaded (only the new
//!   passes). A running function is never refused a single try on the way.
//!
//! Then one run with all three checks at once is searched for leaks: no secret value
//! (header value, password, client key) is in any log line, delivery record, notice,
//! invocation error, replay output or `--debug` output, also when the password comes in
//! the URL's `user:password@`. And a redirect to another host is never followed with
//! credentials.
//!
//! Each test has its own proxy (port and state folder) and Lambda stack (moto,
//! cargo-lambda's runtime emulator, our function), so they run in parallel. A failing
//! async event is tried as Lambda tries it, as in `lambda_fault_injection.rs`: once and
//! twice more, then it goes to the dead-letter queue.

mod support;

use std::io::Write;
use std::process::Output;

use serde_json::{json, Value};
use support::lambda::{ses_event, LambdaStack, ROUTES};
use support::proxy::{pem_body_lines, Proxy, Server};
use support::standin::{Answer, StandIn};
use support::{code, ours, rt, stderr, unique};

/// Lambda's policy for an async event that fails: one try and two retries.
const TRIES: usize = 3;
/// What the function logs when a proxy refuses its credentials and it reads the secret
/// again.
const REREAD: &str = "refused the credentials; read the secret again";

/// A mail as SES stores it (CRLF), with `subject` to find its ticket by.
fn smtp_mail(subject: &str) -> Vec<u8> {
    format!(
        "From: alice@customer.example\r\nTo: support@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@customer.example>\r\n\r\nMy printer is on fire.\r\n"
    )
    .into_bytes()
}

/// A secret file for the CLI (the same JSON as the function's secret).
fn secret_file(json: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(json.as_bytes()).unwrap();
    file
}

/// Our CLI posting through the proxy to queue General, plus `extra` arguments.
fn cli_through(proxy: &Proxy, extra: &[&str], mail: &[u8]) -> Output {
    let mut args = vec![
        "--url",
        proxy.url(),
        "--ca-file",
        proxy.ca(),
        "--queue",
        "General",
        "--timeout",
        "20",
    ];
    args.extend_from_slice(extra);
    ours(&args, None, mail)
}

/// What the doors answer (the start of the body) when no check is installed.
const NO_MODE: &str = "rt-mailgate front door: no auth mode configured";

/// The CLI posts `mail` through the proxy with `secret_json` as its `--secret-file`.
fn cli_with_secret(proxy: &Proxy, secret_json: &str, mail: &[u8]) -> Output {
    let file = secret_file(secret_json);
    cli_through(proxy, &["--secret-file", file.path().to_str().unwrap()], mail)
}

/// The CLI with `secret_json` gets a new mail into RT (`case` names the attempt).
fn assert_cli_delivers(proxy: &Proxy, secret_json: &str, case: &str) {
    let subject = unique("CLI through the door");
    let out = cli_with_secret(proxy, secret_json, &smtp_mail(&subject));
    assert_eq!(code(&out), 0, "{case}: {}", stderr(&out));
    assert_eq!(
        rt::ticket(rt::only_ticket_with_subject(&subject))["Queue"],
        "General",
        "{case}"
    );
}

/// The CLI with `secret_json` is refused: exit 75 (the MTA keeps the mail), `refusal` in
/// its message, and nothing reaches RT.
fn assert_cli_refused(proxy: &Proxy, secret_json: &str, refusal: &str, case: &str) {
    let subject = unique("CLI refused at the door");
    let out = cli_with_secret(proxy, secret_json, &smtp_mail(&subject));
    assert_eq!(code(&out), 75, "{case}: {}", stderr(&out));
    assert!(stderr(&out).contains(refusal), "{case}: {}", stderr(&out));
    assert!(
        rt::tickets_with_subject(&subject).is_empty(),
        "{case}: nothing reaches RT"
    );
}

/// A rotation in docs/deploy.md's order, seen by the CLI (the secret file stands for the
/// secret): the new credential is added at the door beside the old (reloaded), so both
/// pass; the old is removed (reloaded), so only the new one passes. `refusal` is how the
/// door then refuses the old one.
fn the_door_rotates_without_a_window(proxy: &mut Proxy, refusal: &str) {
    let old = proxy.secret_json();
    assert_cli_delivers(proxy, &old, "before the rotation");

    proxy.rotate_begin();
    let new = proxy.secret_json();
    assert_ne!(new, old, "a new credential");
    assert_eq!(proxy.old_secret_json(), old);
    assert_cli_delivers(proxy, &old, "the old credential during the rotation");
    assert_cli_delivers(proxy, &new, "the new credential during the rotation");
    assert_cli_refused(
        proxy,
        &proxy.wrong_secret_json(),
        refusal,
        "a wrong credential during the rotation",
    );

    proxy.rotate_end();
    assert_eq!(proxy.secret_json(), new);
    assert_cli_delivers(proxy, &new, "the new credential after the rotation");
    assert_cli_refused(proxy, &old, refusal, "the old credential after the rotation");

    // The next rotation uses the slot, user name or CA freed by this one.
    proxy.rotate_begin();
    let newer = proxy.secret_json();
    assert_cli_delivers(proxy, &new, "the previous credential during the next rotation");
    proxy.rotate_end();
    assert_cli_delivers(proxy, &newer, "the newest credential");
    assert_cli_refused(proxy, &new, refusal, "the previous credential after the next rotation");
    assert_cli_refused(proxy, &old, refusal, "the first credential after the next rotation");
}

/// The CLI's part, for any proxy: delivered with the credential; refused and kept (exit
/// 75) without it or with a wrong one. `refusal` is the door's status line.
fn the_cli_delivers_only_with_the_credential(proxy: &Proxy, refusal: &str) {
    let subject = unique("CLI through the proxy");
    let out = cli_through(proxy, &["--secret-file", proxy.secret_file()], &smtp_mail(&subject));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(rt::ticket(rt::only_ticket_with_subject(&subject))["Queue"], "General");

    let wrong = secret_file(&proxy.wrong_secret_json());
    let wrong_path = wrong.path().to_str().unwrap();
    for (case, extra) in [
        ("no credential", vec![]),
        ("a wrong credential", vec!["--secret-file", wrong_path]),
    ] {
        let subject = unique("CLI refused");
        let out = cli_through(proxy, &extra, &smtp_mail(&subject));
        assert_eq!(code(&out), 75, "{case}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("HTTP request failed: {refusal}")),
            "{case}: {}",
            stderr(&out)
        );
        assert!(
            rt::tickets_with_subject(&subject).is_empty(),
            "{case}: nothing reaches RT"
        );
    }
}

/// A mail SES stored in the bucket, and the event SES sends the function for it.
struct Mail {
    id: String,
    subject: String,
    event: Value,
}

impl Mail {
    /// Stores a new mail for support@example.test.
    fn store(stack: &LambdaStack, label: &str) -> Self {
        Self::store_for(stack, label, "support@example.test")
    }

    /// Stores a new mail for `recipient`.
    fn store_for(stack: &LambdaStack, label: &str, recipient: &str) -> Self {
        let (id, subject) = (unique("ses-message"), unique(label));
        stack.store_mail(&id, &smtp_mail(&subject));
        let event = ses_event(&id, &[recipient]);
        Self { id, subject, event }
    }

    /// The answer to one invocation (panics when it fails).
    fn invoke(&self, stack: &LambdaStack) -> Value {
        stack
            .invoke(&self.event)
            .unwrap_or_else(|e| panic!("{}: the invocation failed: {e:?}", self.subject))
    }

    /// As Lambda handles an async event that keeps failing: every try fails, then the
    /// event goes to the dead-letter queue. Returns each try's error.
    fn tries_until_dead_letter(&self, stack: &LambdaStack) -> Vec<String> {
        (1..=TRIES)
            .map(|n| match stack.invoke(&self.event) {
                Ok(answer) => panic!("{}: try {n} succeeded: {answer}", self.subject),
                Err((kind, message)) => format!("{kind}: {message}"),
            })
            .collect()
    }

    /// `rt-mailgate-replay --message-id ID --recipient support@example.test`.
    fn replay(&self, stack: &LambdaStack) -> Output {
        stack.replay(&["--message-id", &self.id, "--recipient", "support@example.test"], &[])
    }

    /// The mail is in RT exactly once, in the support queue.
    fn assert_in_rt_once(&self) {
        let ticket = rt::only_ticket_with_subject(&self.subject);
        assert_eq!(rt::ticket(ticket)["Queue"], "support");
    }

    /// No ticket holds the mail.
    fn assert_not_in_rt(&self) {
        assert!(
            rt::tickets_with_subject(&self.subject).is_empty(),
            "{} is in RT",
            self.subject
        );
    }
}

/// The function behind `proxy`, its secret `secret_id` holding `secret_json` at cold start.
fn function_behind(proxy: &Proxy, secret_id: &str, secret_json: &str, env: &[(&str, &str)]) -> LambdaStack {
    let mut vars = vec![
        ("RT_URL", proxy.url()),
        ("RT_CA_FILE", proxy.ca()),
        ("RT_SECRET_ID", secret_id),
    ];
    vars.extend_from_slice(env);
    LambdaStack::start_with_secrets(&vars, &[(secret_id, secret_json)])
}

/// RT's side of each post of a mail the function logged as to be retried (`rt`: the
/// proxy's status line).
fn retried_posts(stack: &LambdaStack, mail: &Mail) -> Vec<String> {
    stack
        .function_log()
        .iter()
        .filter(|line| line["fields"]["message_id"] == mail.id.as_str() && line["fields"]["outcome"] == "retry")
        .map(|line| line["fields"]["rt"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Each try failed because the proxy refused the credentials: the invocation's error
/// (what Lambda keeps with the dead-lettered event) says so, and the log has the proxy's
/// status line.
fn assert_refused(stack: &LambdaStack, mail: &Mail, errors: &[String], refusal: &str) {
    assert!(errors.iter().all(|e| e.ends_with("(Unauthorized)")), "{errors:?}");
    let logged = retried_posts(stack, mail);
    assert!(
        logged.len() == TRIES && logged.iter().all(|rt| rt.contains(refusal)),
        "{logged:?}"
    );
}

/// How often the function has read its secret again after a refusal.
fn secret_rereads(stack: &LambdaStack) -> usize {
    stack
        .function_log()
        .iter()
        .filter(|line| line["fields"]["message"].as_str().is_some_and(|m| m.contains(REREAD)))
        .count()
}

/// A command's stdout and stderr.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The function's part for a proxy whose credential rotates (header, basic): delivered
/// with the secret it cold-started with; after a rotation of both proxy and secret,
/// refused once, re-read, delivered; with a stale secret dead-lettered, then replayed
/// exactly once when the secret is fixed.
fn the_function_delivers_and_follows_rotations(proxy: &mut Proxy, refusal: &str) {
    let secret_id = unique("rt-mailgate/proxy");
    let stack = function_behind(proxy, &secret_id, &proxy.secret_json(), &[]);

    let first = Mail::store(&stack, "Lambda through the proxy");
    assert_eq!(first.invoke(&stack)["delivered"], 1);
    first.assert_in_rt_once();
    assert_eq!(secret_rereads(&stack), 0, "the secret read at cold start is used");

    // Rotation: the proxy takes a new credential, and the secret gets it. The running
    // function still holds the old one: refused, it reads the secret again and posts again.
    proxy.rotate();
    stack.put_secret(&secret_id, &proxy.secret_json());
    let rotated = Mail::store(&stack, "after a rotation");
    assert_eq!(rotated.invoke(&stack)["delivered"], 1, "delivered at the first try");
    rotated.assert_in_rt_once();
    assert_eq!(secret_rereads(&stack), 1);

    // The proxy rotates again, but nobody updates the secret: every try is refused (each
    // reads the stale secret once more, in vain) and the event is dead-lettered. The mail
    // stays in the bucket and does not reach RT.
    proxy.rotate();
    let stale = Mail::store(&stack, "stale secret");
    let errors = stale.tries_until_dead_letter(&stack);
    assert_refused(&stack, &stale, &errors, refusal);
    stale.assert_not_in_rt();
    assert_eq!(secret_rereads(&stack), 1 + TRIES);

    // The admin puts the right value into the secret and replays: delivered exactly once,
    // and the event redriven from the dead-letter queue posts nothing more.
    stack.put_secret(&secret_id, &proxy.secret_json());
    let out = stale.replay(&stack);
    assert!(
        out.status.success() && text(&out).contains("delivered 1"),
        "{}",
        text(&out)
    );
    stale.assert_in_rt_once();
    assert_eq!(stale.invoke(&stack)["already_delivered"], 1);
    stale.assert_in_rt_once();
}

#[test]
fn header_the_cli_and_the_function_get_through_and_follow_a_rotation() {
    let mut proxy = Proxy::start(&["header"]);
    the_cli_delivers_only_with_the_credential(&proxy, "403 Forbidden");
    the_function_delivers_and_follows_rotations(&mut proxy, "403 Forbidden");
    the_door_rotates_without_a_window(&mut proxy, "HTTP request failed: 403 Forbidden");
}

#[test]
fn basic_auth_the_cli_and_the_function_get_through_and_follow_a_rotation() {
    let mut proxy = Proxy::start(&["basic"]);
    the_cli_delivers_only_with_the_credential(&proxy, "401 Unauthorized");
    the_function_delivers_and_follows_rotations(&mut proxy, "401 Unauthorized");
    the_door_rotates_without_a_window(&mut proxy, "HTTP request failed: 401 Unauthorized");
}

#[test]
fn mtls_the_cli_and_the_function_get_through_only_with_the_right_certificate() {
    let mut proxy = Proxy::start(&["mtls"]);
    the_cli_delivers_only_with_the_credential(&proxy, "403 Forbidden");
    // A new client CA beside the old one, then the old one removed.
    the_door_rotates_without_a_window(&mut proxy, "HTTP request failed: 403 Forbidden");

    // The function cold-starts with a secret that holds no client certificate: nginx
    // refuses every try (403), the event is dead-lettered, the mail is not in RT.
    let secret_id = unique("rt-mailgate/mtls");
    let stack = function_behind(&proxy, &secret_id, "{}", &[]);
    let mail = Mail::store(&stack, "Lambda without a certificate");
    let errors = mail.tries_until_dead_letter(&stack);
    assert_refused(&stack, &mail, &errors, "403 Forbidden");
    mail.assert_not_in_rt();

    // A certificate from a CA the proxy does not trust does no better: the replay fails
    // (exit 1) and the mail stays where it is.
    stack.put_secret(&secret_id, &proxy.wrong_secret_json());
    let out = mail.replay(&stack);
    assert!(
        out.status.code() == Some(1) && text(&out).contains("not settled: ") && text(&out).contains("(Unauthorized)"),
        "{}",
        text(&out)
    );
    mail.assert_not_in_rt();

    // The right certificate: the replay delivers it once; the redriven event posts nothing.
    stack.put_secret(&secret_id, &proxy.secret_json());
    let out = mail.replay(&stack);
    assert!(
        out.status.success() && text(&out).contains("delivered 1"),
        "{}",
        text(&out)
    );
    mail.assert_in_rt_once();
    assert_eq!(mail.invoke(&stack)["already_delivered"], 1);
    mail.assert_in_rt_once();

    // The running function, refused with what it read at cold start, reads the secret
    // again and delivers new mail at the first try.
    let rereads = secret_rereads(&stack);
    let next = Mail::store(&stack, "Lambda with its certificate");
    assert_eq!(next.invoke(&stack)["delivered"], 1);
    next.assert_in_rt_once();
    assert_eq!(secret_rereads(&stack), rereads + 1);
}

/// With no check installed, `proxy` refuses posts with any credential or none, and says
/// why; the CLI exits 75 and nothing reaches RT.
fn the_door_without_a_check_refuses_the_cli(proxy: &Proxy) {
    let (status, body) = proxy.bare_post();
    assert_eq!(status, 403, "{body}");
    assert!(body.starts_with(NO_MODE), "{body}");
    assert!(body.contains("Protecting RT's mail gateway"), "{body}");
    // No other page either (RT's UI, REST 2).
    let (status, _) = proxy.bare_get("/REST/2.0/queues");
    assert_eq!(status, 403);

    // Whatever the CLI brings: nothing, or every kind of credential.
    let everything = json!({
        "header": "X-Mailgate-Token: 0123456789abcdef0123456789abcdef",
        "username": "rt-mailgate",
        "password": "0123456789abcdef",
    })
    .to_string();
    for (case, secret) in [("no credential", "{}"), ("credentials", everything.as_str())] {
        assert_cli_refused(proxy, secret, "HTTP request failed: 403 Forbidden", case);
    }
}

#[test]
fn without_an_auth_mode_the_nginx_door_refuses_every_post_and_says_why() {
    let proxy = Proxy::start(&[]);
    the_door_without_a_check_refuses_the_cli(&proxy);

    // The function retries (Lambda's tries, then the dead-letter queue); RT gets nothing.
    let secret_id = unique("rt-mailgate/no-mode");
    let stack = function_behind(&proxy, &secret_id, "{}", &[]);
    let mail = Mail::store(&stack, "Lambda at a door without checks");
    let errors = mail.tries_until_dead_letter(&stack);
    assert_refused(&stack, &mail, &errors, "403 Forbidden");
    mail.assert_not_in_rt();
}

#[test]
fn without_an_auth_mode_the_apache_door_refuses_every_post_and_says_why() {
    let proxy = Proxy::start_on(Server::Apache, &[]);
    the_door_without_a_check_refuses_the_cli(&proxy);
}

#[test]
fn apache_header_the_cli_gets_through_only_with_the_token_and_rotates_without_a_window() {
    let mut proxy = Proxy::start_on(Server::Apache, &["header"]);
    the_cli_delivers_only_with_the_credential(&proxy, "403 Forbidden");
    the_door_rotates_without_a_window(&mut proxy, "HTTP request failed: 403 Forbidden");
}

#[test]
fn apache_basic_auth_the_cli_gets_through_only_with_the_password_and_rotates_without_a_window() {
    let mut proxy = Proxy::start_on(Server::Apache, &["basic"]);
    the_cli_delivers_only_with_the_credential(&proxy, "401 Unauthorized");
    the_door_rotates_without_a_window(&mut proxy, "HTTP request failed: 401 Unauthorized");
}

#[test]
fn apache_mtls_the_cli_gets_through_only_with_the_certificate_and_rotates_without_a_window() {
    // A missing or foreign certificate passes the handshake and is refused with a 403.
    let mut proxy = Proxy::start_on(Server::Apache, &["mtls"]);
    the_cli_delivers_only_with_the_credential(&proxy, "403 Forbidden");
    the_door_rotates_without_a_window(&mut proxy, "HTTP request failed: 403 Forbidden");
}

#[test]
fn a_rotation_in_the_readmes_order_never_refuses_the_running_function_behind_nginx() {
    the_function_follows_a_rotation_in_the_readmes_order(Server::Nginx);
}

#[test]
fn a_rotation_in_the_readmes_order_never_refuses_the_running_function_behind_apache() {
    the_function_follows_a_rotation_in_the_readmes_order(Server::Apache);
}

/// The rotation order of docs/deploy.md, with the function running throughout behind a door with
/// all three checks: not one try is refused, and nothing waits for a retry.
fn the_function_follows_a_rotation_in_the_readmes_order(server: Server) {
    let mut proxy = Proxy::start_on(server, &["header", "basic", "mtls"]);
    let secret_id = unique("rt-mailgate/rotation");
    let stack = function_behind(&proxy, &secret_id, &proxy.secret_json(), &[]);
    let mut mails = Vec::new();
    let mut deliver = |label: &str| {
        let mail = Mail::store(&stack, label);
        assert_eq!(
            mail.invoke(&stack)["delivered"],
            1,
            "{label}: delivered at the first try"
        );
        mail.assert_in_rt_once();
        mails.push(mail);
    };
    deliver("before the rotation");

    // 1-2. The new credential beside the old, the door reloaded: the function's old one
    // still passes.
    proxy.rotate_begin();
    deliver("new credential added at the door");
    // 3. The secret gets the new credential. The running function still holds the old one,
    // which the door still takes; a cold start would read the new one, which it takes too.
    stack.put_secret(&secret_id, &proxy.secret_json());
    deliver("secret updated");
    assert_eq!(secret_rereads(&stack), 0, "nothing was refused so far");
    // 5-6. The old credential removed, the door reloaded: the function is refused once
    // inside its first try, reads the secret again and posts again at once.
    proxy.rotate_end();
    deliver("old credential removed");
    assert_eq!(secret_rereads(&stack), 1);
    deliver("after the rotation");
    assert_eq!(secret_rereads(&stack), 1);

    for mail in &mails {
        assert!(
            retried_posts(&stack, mail).is_empty(),
            "{}: no try failed",
            mail.subject
        );
    }
}

#[test]
fn no_secret_value_shows_in_any_log_record_notice_or_output() {
    let mut proxy = Proxy::start(&["header", "basic", "mtls"]);
    let mut secrets = proxy.secret_values();
    // What is searched for is what nginx checks: the header's value, the password and the
    // client key's lines, as the secret holds them.
    let secret: Value = serde_json::from_str(&proxy.secret_json()).unwrap();
    assert_eq!(secret["header"], json!(format!("X-Mailgate-Token: {}", secrets[0])));
    assert_eq!(secret["password"], json!(secrets[1]));
    assert!(secrets.len() > 2 && secrets[2..] == pem_body_lines(secret["client_key"].as_str().unwrap())[..]);
    let secret_id = unique("rt-mailgate/leaks");
    let routes = format!("{ROUTES}; broken@example.test: --queue no-such-queue");
    let stack = function_behind(
        &proxy,
        &secret_id,
        &proxy.secret_json(),
        &[
            ("ROUTES", &routes),
            ("OPERATOR_EMAIL", "ops@example.test"),
            ("NOTICE_FROM", "rt@example.test"),
        ],
    );
    stack.verify_ses_identity("rt@example.test");
    let mut outputs: Vec<(String, String)> = Vec::new();

    // A delivery, and a mail given up (RT has no such queue) with its operator notice.
    let delivered = Mail::store(&stack, "leak hunt delivered");
    assert_eq!(delivered.invoke(&stack)["delivered"], 1);
    let misrouted = Mail::store_for(&stack, "leak hunt misrouted", "broken@example.test");
    assert_eq!(misrouted.invoke(&stack)["given_up"], 1);

    // Refused: the proxy rotates, the secret is stale; three failed tries. Their errors
    // are what Lambda keeps in the dead-letter queue.
    proxy.rotate();
    secrets.extend(proxy.secret_values());
    let refused = Mail::store(&stack, "leak hunt refused");
    let errors = refused.tries_until_dead_letter(&stack);
    assert_refused(&stack, &refused, &errors, "403 Forbidden");
    outputs.push(("the failed invocations' errors".into(), errors.join("\n")));

    // A replay before the secret is fixed fails too; fixed, it delivers. Then the running
    // function re-reads the secret and delivers.
    let out = refused.replay(&stack);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    outputs.push(("the failed replay's output".into(), text(&out)));
    stack.put_secret(&secret_id, &proxy.secret_json());
    let out = refused.replay(&stack);
    assert!(out.status.success(), "{}", text(&out));
    outputs.push(("rt-mailgate-replay's output".into(), text(&out)));
    let after = Mail::store(&stack, "leak hunt after the fix");
    assert_eq!(after.invoke(&stack)["delivered"], 1);
    assert!(secret_rereads(&stack) > TRIES, "the refusals were logged");

    // The CLI with --debug: delivered, and refused with a wrong secret.
    let right = cli_through(
        &proxy,
        &["--debug", "--secret-file", proxy.secret_file()],
        &smtp_mail(&unique("leak hunt CLI")),
    );
    assert_eq!(code(&right), 0, "{}", stderr(&right));
    assert!(
        stderr(&right).contains("connecting to https://127.0.0.1"),
        "{}",
        stderr(&right)
    );
    outputs.push(("the CLI's --debug output".into(), text(&right)));
    let wrong_json = proxy.wrong_secret_json();
    let wrong: Value = serde_json::from_str(&wrong_json).unwrap();
    secrets.push(wrong["header"].as_str().unwrap().split_once(": ").unwrap().1.into());
    secrets.push(wrong["password"].as_str().unwrap().into());
    secrets.extend(pem_body_lines(wrong["client_key"].as_str().unwrap()));
    let wrong_file = secret_file(&wrong_json);
    let refused_cli = cli_through(
        &proxy,
        &["--debug", "--secret-file", wrong_file.path().to_str().unwrap()],
        &smtp_mail(&unique("leak hunt CLI refused")),
    );
    assert_eq!(code(&refused_cli), 75, "{}", stderr(&refused_cli));
    outputs.push(("the refused CLI's --debug output".into(), text(&refused_cli)));

    // Basic auth as `user:password@` in --url (the header and certificate from the file).
    let password = proxy.var("RT_PROXY_PASSWORD").to_string();
    let url = proxy.url().replace(
        "https://",
        &format!("https://{}:{password}@", proxy.var("RT_PROXY_USERNAME")),
    );
    let mut without_basic: Value = serde_json::from_str(&proxy.secret_json()).unwrap();
    without_basic
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k != "username" && k != "password");
    let file = secret_file(&without_basic.to_string());
    let subject = unique("leak hunt userinfo");
    let userinfo = ours(
        &[
            "--url",
            &url,
            "--ca-file",
            proxy.ca(),
            "--queue",
            "General",
            "--timeout",
            "20",
            "--debug",
            "--secret-file",
            file.path().to_str().unwrap(),
        ],
        None,
        &smtp_mail(&subject),
    );
    assert_eq!(
        code(&userinfo),
        0,
        "the password in the URL passes: {}",
        stderr(&userinfo)
    );
    rt::only_ticket_with_subject(&subject);
    assert!(
        stderr(&userinfo).contains("connecting to https://***@127.0.0.1"),
        "{}",
        stderr(&userinfo)
    );
    outputs.push(("the CLI's --debug output with user:password@".into(), text(&userinfo)));

    // Everywhere a secret could end up.
    let mut haystacks = outputs;
    for log in ["function.log", "emulator.log", "moto.log"] {
        haystacks.push((log.into(), stack.log_text(log)));
    }
    // Every record is searched: route records (deliveries, give-ups) and notice counters.
    let records = stack.objects_under("delivery-records/");
    let state = |bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes).map(|v| v["state"].as_str().unwrap_or_default().to_string())
    };
    let settled: Vec<String> = records
        .iter()
        .filter(|(key, _)| !key.contains("notices/"))
        .filter_map(|(_, bytes)| state(bytes).ok())
        .filter(|s| s == "delivered" || s == "given-up")
        .collect();
    assert_eq!(settled.len(), 4, "three deliveries and one mail given up: {records:?}");
    assert!(records.iter().any(|(key, _)| key.contains("notices/")), "{records:?}");
    for (key, bytes) in records {
        haystacks.push((format!("delivery record {key}"), String::from_utf8_lossy(&bytes).into()));
    }
    let notices = stack.sent_mail();
    assert_eq!(notices.len(), 1, "one notice, for the misrouted mail: {notices:?}");
    // The body may be quoted-printable (soft line breaks): search it decoded too.
    let body = mail_parser::MessageParser::new()
        .parse(notices[0].as_bytes())
        .and_then(|m| m.body_text(0).map(|b| b.into_owned()))
        .unwrap_or_default();
    assert!(body.contains(&misrouted.id), "{}", notices[0]);
    haystacks.push(("the notice, decoded".to_string(), body));
    haystacks.extend(notices.into_iter().map(|n| ("the notice".to_string(), n)));

    let delivered_lines = stack
        .function_log()
        .iter()
        .filter(|line| line["fields"]["outcome"] == "delivered")
        .count();
    assert_eq!(delivered_lines, 2, "the function's log covers the run");
    secrets.sort();
    secrets.dedup();
    // Two tokens and two passwords in force, a wrong one of each, two client keys' lines.
    assert!(
        secrets.len() >= 10,
        "tokens, passwords and key lines: {}",
        secrets.len()
    );
    let mut leaks = Vec::new();
    for (place, hay) in &haystacks {
        for (n, secret) in secrets.iter().enumerate() {
            if hay.contains(secret.as_str()) {
                leaks.push(format!("secret value #{n} ({} chars) in {place}", secret.len()));
            }
        }
    }
    assert!(leaks.is_empty(), "secret values leaked:\n{}", leaks.join("\n"));
}

#[test]
fn a_redirect_to_another_host_is_not_followed_with_credentials() {
    // RT's proxy answers 302 to another host (same machine, another name and port).
    let other = StandIn::always(Answer::ok_body("ok\n"));
    let elsewhere = other.url.replace("127.0.0.1", "localhost");
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nLocation: {elsewhere}/REST/1.0/NoAuth/mail-gateway\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let proxy = StandIn::always(Answer::Raw(redirect.into_bytes()));
    let secret = secret_file(r#"{"header": "X-Mailgate-Token: not-for-other-hosts-42"}"#);
    let args = ["--url", proxy.url.as_str(), "--queue", "General"];

    let mut with_secret = args.to_vec();
    with_secret.extend(["--secret-file", secret.path().to_str().unwrap()]);
    let out = ours(&with_secret, None, &smtp_mail(&unique("redirected")));
    assert_eq!(code(&out), 75, "the MTA keeps the mail: {}", stderr(&out));
    assert!(
        stderr(&out).contains("refused a redirect to another host with credentials"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        proxy.only_request().header("x-mailgate-token"),
        Some("not-for-other-hosts-42")
    );
    assert!(other.requests().is_empty(), "the other host never saw the post");

    // Without credentials the CLI follows it, as the Perl client does.
    let out = ours(&args, None, &smtp_mail(&unique("redirected")));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(other.requests().len(), 1);
}
