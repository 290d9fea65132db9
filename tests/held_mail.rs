//! Every mail that did not become a ticket, in one place, as the on-call RT admin uses
//! it after a bad night (`rt-mailgate-held`): held mail (a storm, an out-of-office
//! reply under the `hold` policy), a mail dropped on
//! SES's virus verdict, one given up (RT has no such queue) and one nobody's route
//! takes are listed and shown by cause; a held mail released twice is one ticket in the
//! real RT; a reject tells an authenticated sender once a day per reason and never a
//! forged one; the daily run expires held mail past `HeldDays` (logged with its sender
//! and Message-ID) and sends the operator one digest. Against moto over HTTP, the
//! runtime API emulator and the real RT.
//!
//! Held records are written as the hold step writes them (state `held`, reason
//! `storm-sender: ...`), with the entries the function files for a mail that did not
//! become a ticket; every other mail goes through the function.

mod support;

use rt_mailgate::core::held::HeldEntry;
use rt_mailgate::core::mail_index::IndexedMail;
use rt_mailgate::core::route::RoutingTable;
use serde_json::{json, Value};
use support::lambda::{ses_event, LambdaStack, ROUTES};
use support::{mails, rt, unique};

const HELD: &str = env!("CARGO_BIN_EXE_rt-mailgate-held");
const RECORDS: &str = "delivery-records/";
const DAY_MS: u64 = 86_400_000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The fixtures' routes, and one to a queue RT does not have.
fn routes() -> String {
    format!("{ROUTES}; sales@example.test: --queue no-such-queue")
}

fn stack() -> LambdaStack {
    let stack = LambdaStack::start(&[
        ("ROUTES", &routes()),
        ("SENDER_NOTICES", "true"),
        ("NOTICE_FROM", "rt@example.test"),
        ("OPERATOR_EMAIL", "ops@example.test"),
        ("AUTO_REPLY_POLICY", "hold"),
    ]);
    stack.verify_ses_identity("rt@example.test");
    stack
}

/// Runs `rt-mailgate-held` with the function's settings: exit code, stdout.
fn held(stack: &LambdaStack, args: &[&str]) -> (i32, String) {
    let out = stack.tool(HELD, args, &[]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.code().unwrap_or(-1),
        format!("{text}{}", support::stderr(&out)),
    )
}

/// The SES ids `list --json` shows.
fn listed(stack: &LambdaStack, args: &[&str]) -> Vec<String> {
    let mut all = vec!["list", "--json"];
    all.extend_from_slice(args);
    let (code, text) = held(stack, &all);
    assert_eq!(code, 0, "{text}");
    let value: Value = serde_json::from_str(text.lines().next().unwrap_or_default()).expect(&text);
    value["mails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ses_id"].as_str().unwrap().to_string())
        .collect()
}

/// A mail `subject` from `sender`, stored and put through the function to
/// `recipients` (with SES's SPF verdict `spf`).
fn deliver(stack: &LambdaStack, sender: &str, subject: &str, recipients: &[&str], spf: &str) -> String {
    let id = unique("held-mail");
    let mut mail = mails::plain(sender, subject, "the body");
    if subject.contains("Out of office") {
        mail = [b"Auto-Submitted: auto-replied\n".to_vec(), mail].concat();
    }
    stack.store_mail(&id, &mail);
    let mut event = ses_event(&id, recipients);
    let ses = &mut event["Records"][0]["ses"];
    ses["mail"]["source"] = sender.into();
    ses["mail"]["commonHeaders"]["subject"] = subject.into();
    ses["receipt"]["spfVerdict"]["status"] = spf.into();
    ses["receipt"]["dkimVerdict"]["status"] = spf.into();
    ses["receipt"]["dmarcVerdict"]["status"] = "GRAY".into();
    if subject.contains("virus") {
        ses["receipt"]["virusVerdict"]["status"] = "FAIL".into();
    }
    stack.invoke(&event).expect("the function takes it");
    id
}

/// A mail held for a storm on the support route, received `age_ms` ago: the stored
/// mail, its held record and the entries, as the hold step and the function leave them.
/// The record's key is the one the function uses for that route.
fn hold(stack: &LambdaStack, sender: &str, subject: &str, age_ms: u64) -> (String, String) {
    let id = unique("storm");
    let header = format!("<{id}@monitor.example>");
    stack.store_mail(&id, &mails::plain(sender, subject, "CPU at 100%"));
    let received = now_ms() - age_ms;
    let plan = RoutingTable::parse(&routes(), Some('+'))
        .unwrap()
        .plan(&["support@example.test"]);
    let key = format!("{RECORDS}{id}/{}", plan.deliveries[0].route.request.fingerprint());
    let record = json!({
        "state": "held", "route": "support@example.test", "recipients": ["support@example.test"],
        "sender": sender, "message_id": header, "delivery_id": format!("{id}.x"),
        "reason": "storm-sender: 16 mails from this sender to this route within 10 min (bound 15)",
        "updated_ms": received,
    });
    stack.put_object(&key, record.to_string().as_bytes());
    let indexed = IndexedMail {
        ses_id: id.clone(),
        received_ms: received,
        sender: sender.into(),
        from: vec![sender.into()],
        message_id: Some(header.clone()),
        recipients: vec!["support@example.test".into()],
    };
    let entry = HeldEntry {
        mail: indexed.clone(),
        subject: Some(subject.into()),
        ..HeldEntry::default()
    };
    for entry_key in [entry.day_key(), HeldEntry::mail_key(&id)] {
        stack.put_object(&format!("{RECORDS}{entry_key}"), entry.to_text().as_bytes());
    }
    for index_key in indexed.entry_keys() {
        stack.put_object(&format!("{RECORDS}{index_key}"), indexed.to_text().as_bytes());
    }
    (id, key)
}

fn record_at(stack: &LambdaStack, key: &str) -> Value {
    let found = stack.objects_under(key);
    serde_json::from_slice(&found.first().expect("the record").1).unwrap()
}

#[test]
fn held_dropped_given_up_and_unrouted_mail_are_listed_by_cause_and_a_release_posts_once() {
    let stack = stack();
    let storm_subject = unique("CPU high");
    let (storm, storm_key) = hold(&stack, "alerts@monitor.example", &storm_subject, 60_000);
    let virus = deliver(
        &stack,
        "eve@customer.example",
        &unique("a virus"),
        &["support@example.test"],
        "PASS",
    );
    let misrouted = deliver(
        &stack,
        "bob@customer.example",
        &unique("To sales"),
        &["sales@example.test"],
        "PASS",
    );
    let unrouted = deliver(
        &stack,
        "carol@customer.example",
        &unique("Hello?"),
        &["nobody@example.test"],
        "PASS",
    );
    let fine = deliver(
        &stack,
        "dave@customer.example",
        &unique("Fine"),
        &["support@example.test"],
        "PASS",
    );
    // Held by the function itself: an out-of-office reply, on a route whose auto-reply
    // policy is `hold`.
    let ooo_subject = unique("Out of office");
    let ooo = deliver(
        &stack,
        "erin@customer.example",
        &ooo_subject,
        &["support@example.test"],
        "PASS",
    );

    // Every kind, by cause; what became a ticket is not there, and the function filed
    // nothing for it (the ordinary path writes no entry).
    let all = listed(&stack, &[]);
    for id in [&storm, &virus, &misrouted, &unrouted, &ooo] {
        assert!(all.contains(id), "{id} listed: {all:?}");
    }
    assert!(!all.contains(&fine), "{all:?}");
    assert!(stack
        .objects_under(&format!("{RECORDS}index/not-a-ticket-mail/{fine}"))
        .is_empty());
    assert_eq!(listed(&stack, &["--cause", "auto-reply"]), std::slice::from_ref(&ooo));
    assert_eq!(listed(&stack, &["--cause", "held"]).len(), 2);
    for (cause, id) in [
        ("storm-sender", &storm),
        ("dropped", &virus),
        ("virus", &virus),
        ("given-up", &misrouted),
        ("unknown-queue", &misrouted),
        ("unrouted", &unrouted),
    ] {
        let only = listed(&stack, &["--cause", cause]);
        assert!(only.contains(id), "--cause {cause}: {only:?}");
        assert_eq!(only.len(), 1, "--cause {cause}: {only:?}");
    }
    // By time, sender (the trace's address index), route, day.
    assert_eq!(
        listed(&stack, &["--cause", "storm-sender", "--since", "24h"]),
        std::slice::from_ref(&storm)
    );
    assert!(listed(
        &stack,
        &["--since", "2026-01-01T00:00:00Z", "--until", "2026-01-02T00:00:00Z"]
    )
    .is_empty());
    assert_eq!(
        listed(&stack, &["--sender", "Alerts@Monitor.example"]),
        std::slice::from_ref(&storm)
    );
    let support = listed(&stack, &["--route", "support@example.test"]);
    assert!(support.contains(&storm) && support.contains(&virus) && !support.contains(&misrouted));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(listed(&stack, &["--day", &today]).len(), 5);
    // A bound: it says it stopped short.
    let (code, text) = held(&stack, &["list", "--max-mails", "2"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("STOPPED SHORT"), "{text}");
    // Readable by a person.
    let (code, text) = held(&stack, &["list", "--cause", "held"]);
    assert_eq!(code, 0);
    assert!(
        text.contains(&storm) && text.contains("storm-sender") && text.contains("alerts@monitor.example"),
        "{text}"
    );

    // One mail: sender, Message-ID, subject, cause and what a release would do.
    let (code, text) = held(&stack, &["show", &storm]);
    assert_eq!(code, 0, "{text}");
    for part in [
        "<alerts@monitor.example>",
        &format!("<{storm}@monitor.example>"),
        storm_subject.as_str(),
        "held storm-sender",
        "release posts it to RT once",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    let (_, text) = held(&stack, &["show", &virus]);
    assert!(
        text.contains("dropped virus") && text.contains("--post-screened-mail"),
        "{text}"
    );

    // Released twice: one ticket, through the route's own record.
    for _ in 0..2 {
        let (code, text) = held(&stack, &["release", &storm]);
        assert!(code == 0 || text.contains("not in the held list"), "{text}");
    }
    assert_eq!(rt::tickets_with_subject(&storm_subject).len(), 1, "posted once");
    assert_eq!(record_at(&stack, &storm_key)["state"], "delivered");
    assert!(!listed(&stack, &["--cause", "held"]).contains(&storm));
    // The function's own hold, released: one ticket, and nothing held any more.
    assert!(rt::tickets_with_subject(&ooo_subject).is_empty(), "held, not posted");
    let (code, text) = held(&stack, &["release", &ooo]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(rt::tickets_with_subject(&ooo_subject).len(), 1);
    assert!(listed(&stack, &["--cause", "held"]).is_empty());
    // Released with the screening kept: the virus stays out of RT.
    let (code, text) = held(&stack, &["release", &virus]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("dropped virus"), "{text}");
}

#[test]
fn a_storm_is_released_whole_and_the_daily_run_expires_old_held_mail_and_sends_one_digest() {
    let stack = stack();
    let subjects: Vec<String> = (0..3).map(|_| unique("Disk full")).collect();
    for subject in &subjects {
        hold(&stack, "nagios@monitor.example", subject, 60_000);
    }
    let old_subject = unique("Old alert");
    let (old, old_key) = hold(&stack, "zabbix@monitor.example", &old_subject, 2 * DAY_MS + 60_000);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();

    // A storm: by cause, sender, route and day, each posted once.
    let (code, text) = held(
        &stack,
        &[
            "release",
            "--storm",
            "--cause",
            "storm-sender",
            "--sender",
            "nagios@monitor.example",
            "--route",
            "support@example.test",
            "--day",
            &today,
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("released 3, not done 0"), "{text}");
    for subject in &subjects {
        assert_eq!(rt::tickets_with_subject(subject).len(), 1, "{subject}");
    }

    // The daily run, as the template's schedule sends it, with HeldDays 1.
    let daily = json!({"rt-mailgate": {"held": {"daily": {"held_days": 1}}}});
    let answer = stack.invoke(&daily).unwrap();
    assert_eq!(answer["expired"], 1, "{answer}");
    assert_eq!(answer["digest_sent"], true, "{answer}");
    let expired: Vec<Value> = stack
        .function_log()
        .into_iter()
        .filter(|l| l["fields"]["outcome"] == "expired")
        .collect();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["fields"]["sender"], "zabbix@monitor.example");
    assert_eq!(
        expired[0]["fields"]["header_message_id"],
        format!("<{old}@monitor.example>")
    );
    assert_eq!(expired[0]["fields"]["message_id"], old.as_str());
    // Settled for good: never released after its mail may be gone.
    assert_eq!(record_at(&stack, &old_key)["case"], "HeldExpired");
    let (code, text) = held(&stack, &["release", &old]);
    assert_eq!(code, 2, "{text}");
    assert!(rt::tickets_with_subject(&old_subject).is_empty());

    // One digest a day, to the operator, with the commands.
    let digests = |stack: &LambdaStack| -> Vec<String> {
        stack
            .sent_mail()
            .into_iter()
            .filter(|m| m.contains("held mail digest"))
            .collect()
    };
    assert_eq!(digests(&stack).len(), 1);
    assert!(digests(&stack)[0].contains("ops@example.test"));
    assert!(digests(&stack)[0].contains("rt-mailgate-held"));
    let again = stack.invoke(&daily).unwrap();
    assert_eq!(
        (again["expired"].as_u64(), again["digest_sent"].as_bool()),
        (Some(0), Some(false))
    );
    assert_eq!(digests(&stack).len(), 1, "one digest a day");
}

#[test]
fn a_reject_tells_an_authenticated_sender_once_a_day_and_never_a_forged_one() {
    let stack = stack();
    let notices_to = |stack: &LambdaStack, to: &str| -> usize {
        stack
            .sent_mail()
            .iter()
            .filter(|m| {
                let message = mail_parser::MessageParser::new()
                    .parse(m.as_bytes())
                    .expect("a message");
                let addressed = message.to().and_then(|a| a.first()).and_then(|a| a.address());
                message.subject().is_some_and(|s| s.starts_with("Not accepted")) && addressed == Some(to)
            })
            .count()
    };
    // Given up (RT has no such queue): listed, from an authenticated sender (SPF and
    // DKIM pass, From aligned) and from a forged one (SPF and DKIM fail).
    let first = deliver(
        &stack,
        "alice@customer.example",
        &unique("Order"),
        &["sales@example.test"],
        "PASS",
    );
    let second = deliver(
        &stack,
        "alice@customer.example",
        &unique("Order 2"),
        &["sales@example.test"],
        "PASS",
    );
    let forged = deliver(
        &stack,
        "victim@bank.example",
        &unique("Urgent"),
        &["sales@example.test"],
        "FAIL",
    );

    let (code, text) = held(&stack, &["reject", &first, "--reason", "unwanted"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("sender notice sent"), "{text}");
    assert_eq!(notices_to(&stack, "alice@customer.example"), 1);
    let notice = stack
        .sent_mail()
        .into_iter()
        .find(|m| m.contains("Not accepted"))
        .unwrap();
    assert!(notice.contains("Auto-Submitted: auto-replied"), "{notice}");
    assert!(!notice.contains("the body"), "the mail itself is never quoted");

    // The same sender, reason and day: settled, not told again.
    let (code, text) = held(&stack, &["reject", &second, "--reason", "unwanted"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("told for this reason today already"), "{text}");
    assert_eq!(notices_to(&stack, "alice@customer.example"), 1);

    // A forged sender: never told.
    let (code, text) = held(&stack, &["reject", &forged, "--reason", "unwanted"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("may not be told"), "{text}");
    assert_eq!(notices_to(&stack, "victim@bank.example"), 0);

    // Inside the function (what `--in-function` sends): another reason, another window.
    let third = deliver(
        &stack,
        "alice@customer.example",
        &unique("Order 3"),
        &["sales@example.test"],
        "PASS",
    );
    let answer = stack
        .invoke(&json!({"rt-mailgate": {"held": {"reject": {"message_id": third, "reason": "flood"}}}}))
        .unwrap();
    assert_eq!(
        (answer["settled"].as_u64(), answer["notice_sent"].as_bool()),
        (Some(1), Some(true)),
        "{answer}"
    );
    assert_eq!(notices_to(&stack, "alice@customer.example"), 2);

    // Rejected mail leaves the list and can't be released.
    let left = listed(&stack, &[]);
    for id in [&first, &second, &forged, &third] {
        assert!(!left.contains(id), "{left:?}");
    }
    let (code, _) = held(&stack, &["release", &first]);
    assert_eq!(code, 2);
    // A reason outside the catalogue is refused.
    let (code, text) = held(&stack, &["reject", &first, "--reason", "because"]);
    assert_eq!(code, 2);
    assert!(text.contains("automatic, flood, loop"), "{text}");
}
