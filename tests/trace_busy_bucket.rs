//! The trace on a busy bucket: with 50,000 other mails' route records in the bucket (a
//! site's month at ~1,700 mails a day), `rt-mailgate-trace` still finds a mail the
//! function got, by its envelope sender, by its From header (SES rewrote the envelope
//! sender) and by its Message-ID, because it lists one value's index entries, not the
//! bucket. A search that reaches its bound says it stopped short and how to go on,
//! never that the function did not get the mail.
//!
//! moto is filled in its own process before it serves (moto's S3 takes a few hundred
//! PUTs a second over HTTP, 10,000 a second in-process), so the test stays well under
//! two minutes; the mail itself goes through the real function, moto over HTTP and the
//! real RT.

mod support;

use std::io::Write;
use std::process::{Child, Command, Stdio};

use rt_mailgate::core::mail_index::IndexedMail;
use support::lambda::{ses_event, LambdaStack, TRACE};
use support::{mails, rt, unique};

/// Other mails' route records in the bucket.
const OTHER_MAILS: usize = 50_000;
/// Mails from one busy sender (a newsletter), in the last hour.
const BUSY_MAILS: usize = 60;
const BUSY_SENDER: &str = "news@busy.example";

/// Starts moto filled with `objects` (key and body per line, tab between) under the
/// records prefix, serving 127.0.0.1:`port` once they are in.
fn filled_moto(objects: &std::path::Path, port: u16, log: &std::path::Path) -> Child {
    let script = r#"
import sys, threading
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer
objects, port = sys.argv[1], int(sys.argv[2])
s3 = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
s3.create_bucket("rt-mail", "us-east-1")
routes = entries = 0
with open(objects) as lines:
    for line in lines:
        key, body = line.rstrip("\n").split("\t", 1)
        s3.put_object("rt-mail", "delivery-records/" + key, body.encode())
        if key.startswith("index/"):
            entries += 1
        else:
            routes += 1
print(f"filled: {routes} route records, {entries} index entries", flush=True)
ThreadedMotoServer(ip_address="127.0.0.1", port=port).start()
threading.Event().wait()
"#;
    let file = std::fs::File::create(log).unwrap();
    Command::new("python3")
        .args(["-c", script])
        .arg(objects)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .expect("python3 with moto runs (pip install 'moto[server]')")
}

/// A route record as the function writes it.
fn route_record(sender: &str, at_ms: u64) -> String {
    serde_json::json!({
        "state": "delivered", "route": "support@example.test", "recipients": ["support@example.test"],
        "sender": sender, "delivery_id": "x", "ticket": 1, "updated_ms": at_ms,
    })
    .to_string()
}

/// The other mails (their ids sort before any the function gets here, so a search in
/// key order meets all of them first) and the busy sender's, as the function writes
/// them: a route record each, and their index entries.
fn write_other_mails(path: &std::path::Path, now_ms: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    // One mail: its route record and its index entries.
    let mut put = |mail: &IndexedMail| {
        let record = route_record(&mail.sender, mail.received_ms);
        writeln!(out, "{}/fp\t{record}", mail.ses_id).unwrap();
        for key in mail.entry_keys() {
            writeln!(out, "{key}\t{}", mail.to_text()).unwrap();
        }
    };
    for n in 0..OTHER_MAILS {
        let mail = IndexedMail {
            ses_id: format!("0000other{n:06}"),
            // Spread over the last 30 days.
            received_ms: now_ms - (n as u64 * 52_000),
            sender: format!("user{}@noise.example", n % 700),
            recipients: vec!["support@example.test".into()],
            ..IndexedMail::default()
        };
        put(&mail);
    }
    for n in 0..BUSY_MAILS {
        let mail = IndexedMail {
            ses_id: format!("0001busy{n:04}"),
            received_ms: now_ms - 3_000_000 + n as u64 * 10_000,
            sender: BUSY_SENDER.into(),
            message_id: Some(format!("<issue-{n}@busy.example>")),
            recipients: vec!["support@example.test".into()],
            ..IndexedMail::default()
        };
        put(&mail);
    }
}

fn trace(stack: &LambdaStack, args: &[&str]) -> (Option<i32>, String) {
    let out = stack.tool(TRACE, args, &[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code(), format!("{text}{}", support::stderr(&out)))
}

/// The mail ids a trace printed, in order.
fn mails_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("mail "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_trace_finds_a_mail_in_a_busy_bucket_by_sender_from_and_message_id_and_says_when_it_stopped_short() {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects.tsv");
    let now_ms = chrono::Utc::now().timestamp_millis() as u64;
    write_other_mails(&objects, now_ms);
    let mut stack = LambdaStack::without_function_on(1, |port, log| filled_moto(&objects, port, log));
    let filled = stack.log_text("moto.log");
    assert!(
        filled.contains(&format!("filled: {} route records", OTHER_MAILS + BUSY_MAILS)),
        "{filled}"
    );
    stack.start_functions(&[], 1);

    // A mail through SES, whose envelope sender SES's path rewrote: the person knows
    // the From.
    let (id, subject) = (unique("busy"), unique("Lost in a busy bucket"));
    let header = format!("<{subject}@customer.example>");
    stack.store_mail(&id, &mails::plain("alice@customer.example", &subject, "x"));
    let mut event = ses_event(&id, &["support@example.test"]);
    let mail = &mut event["Records"][0]["ses"]["mail"];
    mail["source"] = "0100018c-bounce-4711@amazonses.example".into();
    mail["commonHeaders"]["from"] = serde_json::json!(["\"Example, Alice\" <Alice@Customer.example>"]);
    mail["commonHeaders"]["messageId"] = header.clone().into();
    let answer = stack.invoke(&event).unwrap();
    assert_eq!(answer["delivered"].as_u64(), Some(1), "{answer}");
    let ticket = rt::only_ticket_with_subject(&subject);

    // Found by each: one listing of that value's entries, whatever else the bucket holds.
    let bare = header.trim_matches(['<', '>']).to_string();
    for args in [
        &["--sender", "0100018c-bounce-4711@amazonses.example"][..],
        &["--sender", "alice@customer.example", "--since", "1h"][..],
        &["--header", &bare][..],
    ] {
        let (code, text) = trace(&stack, args);
        assert_eq!(code, Some(0), "{args:?}: {text}");
        assert_eq!(mails_in(&text), [id.as_str()], "{args:?}: {text}");
        assert!(
            text.contains(&format!(
                "mail {id}: from <0100018c-bounce-4711@amazonses.example> (From: alice@customer.example)"
            )),
            "{text}"
        );
        // The ticket where RT's answer named it, else how RT finds it.
        assert!(
            text.contains(&format!("delivered: ticket {ticket}"))
                || text.contains(&format!("delivered: ticket not known (RT's answer did not name it; RT finds it by the header X-RT-Mailgate-Delivery: {id}.")),
            "{args:?}: {text}"
        );
        assert!(!text.contains("STOPPED SHORT"), "{text}");
    }

    // A sender with more mails than the search's bound: it says so, names the last
    // mail it read, and prints the command that goes on from there.
    let (code, text) = trace(&stack, &["--sender", BUSY_SENDER, "--max-mails", "40"]);
    assert_eq!(code, Some(1), "stopped short is not done: {text}");
    assert_eq!(mails_in(&text).len(), 40, "{text}");
    assert!(text.contains("The search STOPPED SHORT: it read 40 mails"), "{text}");
    assert!(!text.contains("never got it"), "{text}");
    let go_on = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("rt-mailgate-trace "))
        .unwrap_or_else(|| panic!("no command to go on: {text}"));
    // The printed command, run as a shell would run it: the rest, to the last.
    let words = shlex::split(go_on).expect("a shell command line");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    assert!(args.contains(&"--since"), "{go_on}");
    let (code, rest) = trace(&stack, &[&args[..], &["--max-mails", "40"]].concat());
    assert_eq!(code, Some(0), "{rest}");
    let mut all = mails_in(&text);
    all.extend(mails_in(&rest));
    all.dedup();
    assert_eq!(all.len(), BUSY_MAILS, "{rest}");
    assert!(all.last().unwrap().ends_with(&format!("{:04}", BUSY_MAILS - 1)));
    assert!(!rest.contains("STOPPED SHORT"), "{rest}");

    // A search of the records one by one (mails from before the index) that reaches
    // its bound says so too, instead of "the function never got it".
    let (code, text) = trace(
        &stack,
        &[
            "--scan",
            "--sender",
            "0100018c-bounce-4711@amazonses.example",
            "--max-records",
            "1500",
        ],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("The search STOPPED SHORT: it read 1500 records (the --max-records bound)"),
        "{text}"
    );
    assert!(!text.contains("never got it"), "{text}");

    // And a search that read everything and found nothing says where it looked.
    let (code, text) = trace(&stack, &["--sender", "nobody@customer.example", "--since", "2d"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("no mail from nobody@customer.example (envelope sender or From)")
            && text.contains("read every entry of the window"),
        "{text}"
    );
}
