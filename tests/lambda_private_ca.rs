//! An RT whose front door has a certificate from a private CA: the function trusts it
//! through the RT's own secret (`ca_pem`), with TLS checks on, and nothing else changes
//! (no `RT_CA_FILE` packed with the function, no `RtVerifyTls=false` for every RT).
//! Without `ca_pem` the same post fails the TLS check and is retried. The CLI reads the
//! same key from `--secret-file`. The real RT behind the shipped nginx site over TLS
//! (`scripts/rt-proxy`), moto, and the function through the Lambda runtime API emulator.

mod support;

use std::io::Write;

use support::lambda::{ses_event, LambdaStack};
use support::proxy::Proxy;
use support::{code, mails, ours, rt, stderr, unique};

/// The proxy's secret JSON plus `ca_pem`: the certificate file `--ca-file` would take.
fn secret_with_ca(proxy: &Proxy) -> String {
    let mut secret: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&proxy.secret_json()).unwrap();
    let pem = std::fs::read_to_string(proxy.ca()).unwrap();
    secret.insert("ca_pem".into(), pem.into());
    serde_json::Value::Object(secret).to_string()
}

fn smtp_mail(subject: &str) -> Vec<u8> {
    format!(
        "From: alice@customer.example\r\nTo: support@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@customer.example>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n"
    )
    .into_bytes()
}

#[test]
fn the_rts_ca_in_its_secret_is_trusted_with_tls_checks_on() {
    let proxy = Proxy::start(&["header"]);
    let (with_ca, without_ca) = (unique("rt-mailgate/with-ca"), unique("rt-mailgate/without-ca"));

    // The secret carries the CA: delivered, TLS checked against it.
    let stack = LambdaStack::start_with_secrets(
        &[("RT_URL", proxy.url()), ("RT_SECRET_ID", &with_ca)],
        &[(&with_ca, &secret_with_ca(&proxy))],
    );
    let (id, subject) = (unique("private-ca"), unique("Private CA"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let answer = stack
        .invoke(&ses_event(&id, &["support@example.test"]))
        .expect("delivered");
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(rt::ticket(rt::only_ticket_with_subject(&subject))["Queue"], "support");
    drop(stack);

    // The same secret without it: the system roots don't know the proxy's CA, the TLS
    // check fails, the invocation fails (Lambda retries it), nothing reaches RT.
    let stack = LambdaStack::start_with_secrets(
        &[("RT_URL", proxy.url()), ("RT_SECRET_ID", &without_ca)],
        &[(&without_ca, &proxy.secret_json())],
    );
    let (id, subject) = (unique("private-ca"), unique("No CA"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let (kind, message) = stack
        .invoke(&ses_event(&id, &["support@example.test"]))
        .expect_err("the TLS check fails");
    assert!(!kind.is_empty(), "{message}");
    assert!(rt::tickets_with_subject(&subject).is_empty());
    let log = stack.log_text("function.log");
    assert!(log.to_lowercase().contains("certificate"), "{log}");

    // A ca_pem that holds no certificate stops the cold start, naming the key.
    let broken = unique("rt-mailgate/broken-ca");
    let mut stack = LambdaStack::start_with_secrets(
        &[("RT_URL", proxy.url()), ("RT_SECRET_ID", &broken)],
        &[(&broken, r#"{"ca_pem": "not a certificate"}"#)],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stack.function_exit().is_none() {
        assert!(std::time::Instant::now() < deadline, "the function did not stop");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let log = stack.log_text("function.log");
    assert!(log.contains("the secret's ca_pem"), "{log}");
}

#[test]
fn the_cli_reads_ca_pem_from_its_secret_file() {
    let proxy = Proxy::start(&["header"]);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(secret_with_ca(&proxy).as_bytes()).unwrap();
    let subject = unique("CLI private CA");
    let mail = mails::plain("alice@customer.example", &subject, "hello");
    let secret = file.path().to_str().unwrap();
    let out = ours(
        &["--url", proxy.url(), "--queue", "General", "--secret-file", secret],
        None,
        &mail,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(rt::tickets_with_subject(&subject).len(), 1);
}
