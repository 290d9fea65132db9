//! Storms, loops and auto-replies (issue 23) through the README's front door, against
//! the real RT, with the storm counters in DynamoDB (moto, behind a front that applies
//! one item's writes one at a time as DynamoDB does) as the template
//! makes them:
//!
//! - a storm of 500 mails from one sender to one route: at most the bound become
//!   tickets, the rest is held (one operator notice); then released, twice over and
//!   concurrently: every one of the 500 is exactly once in RT;
//! - an out-of-office reply to RT's own autoreply (captured from the test RT), on a
//!   resolved ticket, under the default `comment`: a comment, the ticket still
//!   resolved, no mail from RT to anyone;
//! - a scripted helpdesk (Zendesk's marks, no RFC 3834 header) answering every mail RT
//!   sends it: the loop stops at the bound, the operator is told once;
//! - direct and buffered (SQS) mail both hold; `rt-mailgate-replay --release` posts
//!   each held mail once, however often it is run, and a plain replay leaves it held.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use support::lambda::{ses_event, Door, LambdaStack};
use support::mails::header;
use support::rt::{Db, Rt};
use support::unique;

const OPERATOR: &str = "ops@example.test";
const NOTICE_FROM: &str = "rt-mailgate@example.test";

/// A mail as SES stores it (CRLF).
fn mail(from: &str, subject: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\nTo: support@example.test\nSubject: {subject}\nMessage-ID: <{}@sender.example>\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0000\n{extra_headers}\n{body}\n",
        unique("m")
    )
    .replace('\n', "\r\n")
    .into_bytes()
}

/// The SES event of a mail from `sender` to `recipient`.
fn event(id: &str, sender: &str, recipient: &str) -> serde_json::Value {
    let mut event = ses_event(id, &[recipient]);
    event["Records"][0]["ses"]["mail"]["source"] = sender.into();
    event
}

/// The records of held routes of the mails whose SES message id starts with `ids`:
/// (SES message id, reason).
fn held(stack: &LambdaStack, ids: &str) -> Vec<(String, String)> {
    stack
        .objects_under(&format!("delivery-records/{ids}"))
        .into_iter()
        .filter_map(|(key, bytes)| {
            let record: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            (record["state"] == "held").then(|| {
                let id = key.trim_start_matches("delivery-records/").split('/').next().unwrap();
                (
                    id.to_string(),
                    record["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
        .collect()
}

/// Runs `work` on every item from `threads` threads at once.
fn in_parallel<T: Sync>(items: &[T], threads: usize, work: impl Fn(&T) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                work(item);
            });
        }
    });
}

/// A stack in front of `db`'s RT with the storm counters' table, `functions` function
/// processes with `env`, and the operator's notices through SES (moto).
fn stack(db: Db, functions: usize, env: &[(&str, &str)]) -> LambdaStack {
    let mut stack = LambdaStack::without_function(functions);
    stack.open_door(Door { db, ..Door::default() });
    stack.create_storm_table("rt-mail-storms");
    stack.verify_ses_identity(NOTICE_FROM);
    let mut all = vec![
        ("STORM_TABLE", "rt-mail-storms"),
        ("OPERATOR_EMAIL", OPERATOR),
        ("NOTICE_FROM", NOTICE_FROM),
        ("RT_NAME", "example.test"),
    ];
    all.extend_from_slice(env);
    stack.start_functions(&all, functions);
    stack
}

/// The operator's notices SES was asked to send whose subject holds `text`.
fn notices(stack: &LambdaStack, text: &str) -> usize {
    stack
        .sent_mail()
        .iter()
        .filter(|m| m.contains(&format!("To: <{OPERATOR}>")) && m.contains(text))
        .count()
}

fn a_storm_of_500_is_held_beyond_the_bound_then_released_exactly_once_each(db: Db) {
    const STORM: usize = 500;
    const BOUND: usize = 20;
    let rt = Rt::of(db);
    // A day-long window, so the test's minutes fall in one window (or, across midnight
    // UTC, two: then the bound applies in each).
    let stack = stack(db, 4, &[("STORM_SENDER_MAX", "20"), ("STORM_WINDOW_MINUTES", "1440")]);
    let started = Instant::now();
    let day = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400;
    let first_day = day(std::time::SystemTime::now());
    let tag = unique("disk full on db");
    let sender = format!("{}@monitoring.example", unique("alerts"));
    let ids: Vec<String> = (0..STORM).map(|n| format!("{tag}-{n:03}")).collect();
    in_parallel(&ids, 8, |id| {
        let alert = mail(
            &sender,
            &format!("ALERT {id}"),
            "Auto-Submitted: auto-generated\n",
            "disk full",
        );
        stack.store_mail(id, &alert);
    });
    let deliver = |id: &String| {
        let answer = stack.invoke(&event(id, &sender, "support@example.test")).unwrap();
        assert_eq!(
            answer["delivered"].as_u64().unwrap_or(0) + answer["held"].as_u64().unwrap_or(0),
            1,
            "{answer}"
        );
    };
    in_parallel(&ids, 8, deliver);
    let counted = stack.dynamodb_front().unwrap().stats().forwarded;
    assert!(
        counted >= STORM as u64,
        "every mail counted through the front: {counted}"
    );
    let windows = (day(std::time::SystemTime::now()) - first_day + 1) as usize;
    let in_rt = rt.subjects_like(&format!("ALERT {tag}"));
    assert!(
        !in_rt.is_empty() && in_rt.len() <= BOUND * windows,
        "{} tickets for a bound of {BOUND}",
        in_rt.len()
    );
    let holds = held(&stack, &tag);
    assert_eq!(holds.len() + in_rt.len(), STORM, "every mail is a ticket or held");
    assert!(
        holds.iter().all(|(_, reason)| reason.starts_with("storm-sender: ")),
        "{holds:?}"
    );
    assert_eq!(
        notices(&stack, "holding a storm from one sender"),
        1,
        "one notice per storm, not per mail"
    );
    let stormed = started.elapsed();

    // Released: every held mail, and the first 50 of them twice, all at once.
    let mut releases: Vec<&String> = holds.iter().map(|(id, _)| id).collect();
    releases.extend(holds.iter().take(50).map(|(id, _)| id));
    in_parallel(&releases, 8, |id| {
        let request = serde_json::json!({"rt-mailgate": {"replay": {
            "message_id": id, "recipients": ["support@example.test"], "sender": sender, "release": true,
        }}});
        stack.invoke(&request).unwrap();
    });
    // A release that lost the race to its twin left the route to it ("left for a
    // retry"): nothing is held any more, and RT has each of the 500 once.
    assert_eq!(held(&stack, &tag), [] as [(String, String); 0]);
    let mut subjects: Vec<String> = rt
        .subjects_like(&format!("ALERT {tag}"))
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    subjects.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("ALERT {id}")).collect();
    expected.sort();
    assert_eq!(subjects, expected, "every mail exactly once in RT");
    eprintln!(
        "storm of {STORM}: {stormed:?} to hold; released in {:?}",
        started.elapsed() - stormed
    );
}

#[test]
fn a_storm_of_500_is_held_beyond_the_bound_then_released_exactly_once_each_on_sqlite() {
    a_storm_of_500_is_held_beyond_the_bound_then_released_exactly_once_each(Db::Sqlite);
}

#[test]
fn a_storm_of_500_is_held_beyond_the_bound_then_released_exactly_once_each_on_postgresql() {
    a_storm_of_500_is_held_beyond_the_bound_then_released_exactly_once_each(Db::Pg);
}

fn an_out_of_office_reply_is_a_comment_on_the_resolved_ticket(db: Db) {
    let rt = Rt::of(db);
    let stack = stack(db, 1, &[]);
    let customer = format!("{}@customer.example", unique("bob"));
    let subject = unique("Printer jammed");
    let sent_before = rt.outgoing_mail().len();
    let id = unique("ses");
    stack.store_mail(&id, &mail(&customer, &subject, "", "It jams."));
    stack.invoke(&event(&id, &customer, "support@example.test")).unwrap();
    let ticket = rt.only_ticket_with_subject(&subject);
    let autoreply = rt.outgoing_mail()[sent_before..]
        .iter()
        .find(|m| header(m, "X-RT-Ticket").is_some_and(|t| t.ends_with(&format!("#{ticket}"))))
        .unwrap_or_else(|| panic!("RT sent no autoreply for ticket {ticket}"))
        .clone();
    let rt_subject = header(&autoreply, "Subject").expect("RT's subject");
    assert!(rt_subject.contains(&format!("#{ticket}]")), "{rt_subject}");
    rt.set_status(ticket, "resolved");

    // Exchange's out-of-office reply to RT's autoreply.
    let sent_before = rt.outgoing_mail().len();
    let away = unique("I am away until Monday");
    let ooo = mail(
        &customer,
        &format!("Automatic reply: {rt_subject}"),
        &format!(
            "In-Reply-To: {}\nAuto-Submitted: auto-replied\nX-Auto-Response-Suppress: All\n\
             X-MS-Exchange-Inbox-Rules-Loop: {customer}\n",
            header(&autoreply, "Message-ID").unwrap()
        ),
        &away,
    );
    let id = unique("ses");
    stack.store_mail(&id, &ooo);
    stack.invoke(&event(&id, &customer, "support@example.test")).unwrap();
    let history = rt.history(ticket);
    assert!(history.contains(&away), "the reply is on ticket {ticket}");
    assert!(history.contains("Type: Comment"), "{history}");
    assert_eq!(rt.ticket(ticket)["Status"], "resolved", "not reopened");
    // Other tests share this RT: only mail about this ticket or to this customer counts.
    let about_it: Vec<String> = rt.outgoing_mail()[sent_before..]
        .iter()
        .filter(|m| {
            header(m, "X-RT-Ticket").is_some_and(|t| t.ends_with(&format!("#{ticket}")))
                || header(m, "To").is_some_and(|to| to.contains(&customer))
        })
        .cloned()
        .collect();
    assert_eq!(about_it, [] as [String; 0], "RT mailed nobody");
}

#[test]
fn an_out_of_office_reply_is_a_comment_on_the_resolved_ticket_on_sqlite() {
    an_out_of_office_reply_is_a_comment_on_the_resolved_ticket(Db::Sqlite);
}

#[test]
fn an_out_of_office_reply_is_a_comment_on_the_resolved_ticket_on_postgresql() {
    an_out_of_office_reply_is_a_comment_on_the_resolved_ticket(Db::Pg);
}

#[test]
fn a_loop_with_a_helpdesk_answering_every_mail_stops_at_the_bound() {
    let rt = Rt::of(Db::Sqlite);
    let stack = stack(Db::Sqlite, 1, &[("LOOP_HOLD_AFTER", "3")]);
    let helpdesk = format!("{}@acme.zendesk.example", unique("support"));
    let marks = "X-Zendesk-From-Account-Id: 4ca1477\nX-Mailer: Zendesk Mailer\n";
    let topic = unique("Your order");
    // The helpdesk writes first; then it answers every mail RT sends it, with a new
    // request (no RT tag, no Auto-Submitted: it ignores RFC 3834).
    let mut subject = format!("Request received: {topic}");
    let mut sent_seen = rt.outgoing_mail().len();
    let mut rounds = 0;
    let loop_ids = unique("loop");
    for round in 1..=8 {
        rounds = round;
        let id = format!("{loop_ids}-{round}");
        stack.store_mail(&id, &mail(&helpdesk, &subject, marks, "We got your request."));
        stack.invoke(&event(&id, &helpdesk, "support@example.test")).unwrap();
        let sent = rt.outgoing_mail();
        let to_helpdesk: Vec<&String> = sent[sent_seen..]
            .iter()
            .filter(|m| header(m, "To").is_some_and(|to| to.contains(&helpdesk)))
            .collect();
        sent_seen = sent.len();
        let Some(answer) = to_helpdesk.first() else { break };
        let rt_subject = header(answer, "Subject").unwrap_or_default();
        let untagged = rt_subject.rsplit("] ").next().unwrap_or(&rt_subject).to_string();
        subject = format!("Request received: {untagged}");
    }
    let tickets = rt.tickets_with_subject(&topic);
    assert_eq!(tickets.len(), 3, "the loop's first 3 mails became tickets: {tickets:?}");
    assert_eq!(
        rounds, 4,
        "the 4th mail was held, so RT answered nothing and the loop stopped"
    );
    let holds = held(&stack, &loop_ids);
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert!(holds[0].1.starts_with("loop: Zendesk ("), "{holds:?}");
    assert_eq!(notices(&stack, "holding a mail loop"), 1, "{:?}", stack.sent_mail());
}

/// The buffered path's event: an SQS batch whose bodies are SNS envelopes holding the
/// S3 action's SES notification, from `sender`.
fn sqs_batch(ids: &[&str], sender: &str, recipient: &str) -> serde_json::Value {
    let records: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let mut ses = event(id, sender, recipient)["Records"][0]["ses"].clone();
            ses["notificationType"] = "Received".into();
            ses["receipt"]["action"] = serde_json::json!({
                "type": "S3", "topicArn": "arn:aws:sns:us-east-1:123456789012:rt-mail",
                "bucketName": support::lambda::BUCKET, "objectKey": format!("{}{id}", support::lambda::PREFIX)
            });
            let envelope = serde_json::json!({"Type": "Notification", "MessageId": format!("sns-{n}"), "Message": ses.to_string()});
            serde_json::json!({"messageId": format!("sqs-{n}"), "eventSource": "aws:sqs", "body": envelope.to_string()})
        })
        .collect();
    serde_json::json!({ "Records": records })
}

#[test]
fn direct_and_buffered_mail_both_hold_and_the_replay_tool_releases_once() {
    let rt = Rt::of(Db::Sqlite);
    let stack = stack(
        Db::Sqlite,
        1,
        &[("STORM_SENDER_MAX", "1"), ("STORM_WINDOW_MINUTES", "1440")],
    );
    let sender = format!("{}@monitoring.example", unique("cron"));
    let tag = unique("nightly-job");
    let ids: Vec<String> = ["d1", "d2", "b1", "b2"].iter().map(|n| format!("{tag}-{n}")).collect();
    for id in &ids {
        stack.store_mail(id, &mail(&sender, &format!("JOB {id}"), "", "failed"));
    }
    // Direct: SES invokes the function. The first mail is posted, the second held.
    for id in &ids[..2] {
        stack.invoke(&event(id, &sender, "support@example.test")).unwrap();
    }
    // Buffered: an SQS batch. Both held, and neither is a failed batch item (held is settled).
    let batch = sqs_batch(&[&ids[2], &ids[3]], &sender, "support@example.test");
    assert_eq!(stack.invoke(&batch), Ok(serde_json::json!({"batchItemFailures": []})));
    assert_eq!(rt.tickets_with_subject(&tag).len(), 1);
    let mut holds: Vec<String> = held(&stack, &tag).into_iter().map(|(id, _)| id).collect();
    holds.sort();
    let mut expected_holds = ids[1..].to_vec();
    expected_holds.sort();
    assert_eq!(holds, expected_holds);

    // A plain replay leaves held mail held, and says how to release it (exit 1).
    let replay = |id: &str, release: bool| {
        let mut args = vec![
            "--message-id",
            id,
            "--recipient",
            "support@example.test",
            "--sender",
            &sender,
        ];
        if release {
            args.push("--release");
        }
        stack.replay(&args, &[])
    };
    let plain = replay(&ids[1], false);
    let said = String::from_utf8_lossy(&plain.stdout);
    assert_eq!(plain.status.code(), Some(1), "{said}");
    assert!(said.contains("held") && said.contains("--release"), "{said}");
    // Released, each twice: posted once, exit 0 both times.
    for round in 0..2 {
        for id in &ids[1..] {
            let out = replay(id, true);
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
    let mut subjects: Vec<String> = rt.subjects_like(&tag).into_iter().map(|(_, s)| s).collect();
    subjects.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("JOB {id}")).collect();
    expected.sort();
    assert_eq!(subjects, expected, "each exactly once in RT");
}
