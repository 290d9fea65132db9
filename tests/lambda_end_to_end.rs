//! The SES Lambda end to end on this machine: mails stored in moto's S3 as SES stores
//! them (CRLF), SES receipt events sent through cargo-lambda's Lambda runtime API
//! emulator to our function, and tickets read back from the real RT. The function
//! reaches RT as the README deploys it (the shipped nginx door with its REST 2 extra,
//! the README's lookup user; see `support::lambda::Door`) unless a test puts a
//! stand-in in RT's place.

mod support;

use serde_json::json;
use support::lambda::{fixture, ses_event, Door, LambdaStack};
use support::standin::{Answer, StandIn};
use support::{mails, rt, unique};

/// A mail as SES stores it: CRLF line ends.
fn smtp_mail(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: alice@customer.example\r\nTo: bugs@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@customer.example>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[test]
fn each_routed_recipient_gets_one_ticket_and_the_unrouted_one_none() {
    let stack = LambdaStack::start(&[]);
    let (id, subject) = (unique("multi"), unique("Two desks"));
    stack.store_mail(&id, &smtp_mail(&subject, "for both desks"));
    let answer = stack.invoke(&ses_event(
        &id,
        &["bugs@example.test", "support@example.test", "nobody@example.test"],
    ));
    assert_eq!(
        answer,
        Ok(json!({"delivered": 2, "rejected": 0, "unrouted": 1, "already_delivered": 0, "given_up": 0}))
    );
    let tickets = rt::tickets_with_subject(&subject);
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    let mut queues: Vec<String> = tickets.iter().map(|&t| rt::ticket(t)["Queue"].clone()).collect();
    queues.sort();
    assert_eq!(queues, ["bugs", "support"]);
    // RT stores what a local MTA would have handed over: no stray CR.
    assert!(!rt::history(tickets[0]).contains('\r'));

    let log = stack.function_log();
    let unrouted = log
        .iter()
        .find(|l| l["fields"]["outcome"] == "unrouted")
        .expect("unrouted logged");
    assert_eq!(unrouted["fields"]["recipient"], "nobody@example.test");
    assert_eq!(unrouted["fields"]["message_id"], id.as_str());
    let delivered: Vec<_> = log.iter().filter(|l| l["fields"]["outcome"] == "delivered").collect();
    assert_eq!(delivered.len(), 2);
    for line in delivered {
        assert_eq!(line["fields"]["message_id"], id.as_str());
        assert!(line["fields"]["bytes"].as_u64().unwrap() > 100 && line["fields"]["ms"].is_u64());
    }
}

#[test]
fn the_same_route_twice_posts_once() {
    let stack = LambdaStack::start(&[]);
    let (id, subject) = (unique("twice"), unique("Same desk twice"));
    stack.store_mail(&id, &smtp_mail(&subject, "x"));
    let answer = stack.invoke(&ses_event(&id, &["bugs@example.test", "BUGS@Example.Test"]));
    assert_eq!(
        answer,
        Ok(json!({"delivered": 1, "rejected": 0, "unrouted": 0, "already_delivered": 0, "given_up": 0}))
    );
    assert_eq!(rt::tickets_with_subject(&subject).len(), 1);
}

#[test]
fn a_sub_address_replies_to_that_ticket_and_the_comment_route_comments() {
    let stack = LambdaStack::start(&[]);
    let (first, subject) = (unique("first"), unique("Printer"));
    stack.store_mail(&first, &smtp_mail(&subject, "it is on fire"));
    stack.invoke(&ses_event(&first, &["bugs@example.test"])).unwrap();
    let ticket = rt::only_ticket_with_subject(&subject);

    let (reply, marker) = (unique("reply"), unique("reply-text"));
    stack.store_mail(&reply, &smtp_mail("Re: printer", &marker));
    stack
        .invoke(&ses_event(&reply, &[&format!("bugs+{ticket}@example.test")]))
        .unwrap();
    let history = rt::history(ticket);
    let transaction = history
        .split("\n--\n")
        .find(|t| t.contains(&marker))
        .expect("reply on the ticket");
    assert!(transaction.contains("Type: Correspond"), "{transaction}");

    let (note, marker) = (unique("note"), unique("note-text"));
    stack.store_mail(&note, &smtp_mail("internal note", &marker));
    stack
        .invoke(&ses_event(&note, &[&format!("bugs-comment+{ticket}@example.test")]))
        .unwrap();
    let history = rt::history(ticket);
    let transaction = history
        .split("\n--\n")
        .find(|t| t.contains(&marker))
        .expect("comment on the ticket");
    assert!(transaction.contains("Type: Comment"), "{transaction}");
    assert_eq!(rt::tickets_with_subject(&subject), [ticket], "no extra ticket");
}

#[test]
fn an_unrouted_recipient_posts_nothing_and_reads_nothing() {
    let rt_standin = StandIn::always(Answer::ok_body("ok\n"));
    let stack = LambdaStack::start(&[("RT_URL", &rt_standin.url)]);
    // No mail is stored: an unrouted mail must not even be fetched.
    let answer = stack.invoke(&ses_event(
        &unique("unrouted"),
        &["nobody@example.test", "bugs@elsewhere.test"],
    ));
    assert_eq!(
        answer,
        Ok(json!({"delivered": 0, "rejected": 0, "unrouted": 2, "already_delivered": 0, "given_up": 0}))
    );
    assert!(rt_standin.requests().is_empty());
}

#[test]
fn a_missing_mail_fails_the_invocation_clearly() {
    let stack = LambdaStack::start(&[]);
    let id = unique("missing");
    let (kind, message) = stack.invoke(&ses_event(&id, &["bugs@example.test"])).unwrap_err();
    assert_eq!(kind, "MailNotReadable");
    assert!(
        message.contains(&format!("s3://rt-mail/inbound/{id} does not exist")),
        "{message}"
    );
}

#[test]
fn rt_refusing_for_good_does_not_fail_the_invocation_but_a_server_error_does() {
    let refusing = StandIn::always(Answer::ok_body("not ok - operation unsuccessful\n"));
    let stack = LambdaStack::start(&[("RT_URL", &refusing.url)]);
    let id = unique("refused");
    stack.store_mail(&id, &smtp_mail("refused", "x"));
    assert_eq!(
        stack.invoke(&ses_event(&id, &["bugs@example.test"])),
        Ok(json!({"delivered": 0, "rejected": 1, "unrouted": 0, "already_delivered": 0, "given_up": 0}))
    );

    let failing = StandIn::always(Answer::status(502));
    let stack = LambdaStack::start(&[("RT_URL", &failing.url)]);
    stack.store_mail(&id, &smtp_mail("refused", "x"));
    let (kind, message) = stack
        .invoke(&ses_event(&id, &["bugs@example.test", "support@example.test"]))
        .unwrap_err();
    assert_eq!(kind, "DeliveryWillBeRetried");
    assert!(message.contains("2 of 2 deliveries"), "{message}");
}

#[test]
fn a_forty_megabyte_mail_arrives_byte_identical() {
    let recorder = StandIn::always(Answer::ok_body("ok\n"));
    let stack = LambdaStack::start(&[("RT_URL", &recorder.url), ("LINE_ENDINGS", "raw")]);
    let mut mail = smtp_mail("big", "see attachment");
    mail.extend(
        support::mails::base64_lines(&support::mails::binary_blob(29 * 1024 * 1024))
            .replace('\n', "\r\n")
            .into_bytes(),
    );
    assert!(mail.len() > 39 * 1024 * 1024, "{}", mail.len());
    let id = unique("big");
    stack.store_mail(&id, &mail);
    let answer = stack.invoke(&ses_event(&id, &["bugs+77@example.test"]));
    assert_eq!(
        answer,
        Ok(json!({"delivered": 1, "rejected": 0, "unrouted": 0, "already_delivered": 0, "given_up": 0}))
    );
    let post = recorder.only_request();
    assert!(!post.chunked && post.header("content-length").is_some());
    // In front: the extension header, then the delivery id; then the mail, unchanged.
    let whole = post.message();
    let header = b"X-RT-Mail-Extension: 77\nX-RT-Mailgate-Delivery: ";
    assert!(whole.starts_with(header), "{}", String::from_utf8_lossy(&whole[..100]));
    let (delivery_id, received) = post.lambda_message();
    assert!(delivery_id.starts_with(&format!("{id}.")), "{delivery_id}");
    let header = b"X-RT-Mail-Extension: 77\n";
    assert!(received.starts_with(header));
    assert!(received[header.len()..] == mail[..], "the mail changed on its way");
    assert_eq!(post.text_fields(), ["action=correspond", "queue=bugs", "ticket=77"]);
}

#[test]
fn crlf_becomes_lf_by_default() {
    let recorder = StandIn::always(Answer::ok_body("ok\n"));
    let stack = LambdaStack::start(&[("RT_URL", &recorder.url)]);
    let id = unique("crlf");
    stack.store_mail(&id, b"Subject: crlf\r\n\r\nline\r\nbare\rcr\r\n");
    stack.invoke(&ses_event(&id, &["support@example.test"])).unwrap();
    assert_eq!(
        recorder.only_request().lambda_message().1,
        b"Subject: crlf\n\nline\nbare\rcr\n"
    );
}

#[test]
fn request_response_invocations_get_the_configured_disposition() {
    let recorder = StandIn::always(Answer::ok_body("ok\n"));
    let stack = LambdaStack::start(&[("RT_URL", &recorder.url), ("SES_DISPOSITION", "STOP_RULE_SET")]);
    let mut event = fixture("ses-request-response.json");
    let id = event["Records"][0]["ses"]["mail"]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    stack.store_mail(&id, &smtp_mail("sync", "x"));
    assert_eq!(stack.invoke(&event), Ok(json!({"disposition": "STOP_RULE_SET"})));
    assert_eq!(recorder.requests().len(), 1);
    // The same mail as an `Event` invocation gets a summary (and is not posted twice).
    event["Records"][0]["ses"]["receipt"]["action"]["invocationType"] = "Event".into();
    assert_eq!(
        stack.invoke(&event),
        Ok(json!({"delivered": 0, "rejected": 0, "unrouted": 0, "already_delivered": 1, "given_up": 0}))
    );
    assert_eq!(recorder.requests().len(), 1);
}

#[test]
fn malformed_events_and_the_setup_notification() {
    let stack = LambdaStack::start(&[]);
    let (kind, message) = stack.invoke(&json!({"hello": "world"})).unwrap_err();
    assert_eq!(kind, "MalformedEvent");
    assert!(message.contains("Records"), "{message}");
    let mut no_verdicts = ses_event("x", &["bugs@example.test"]);
    no_verdicts["Records"][0]["ses"]["receipt"]
        .as_object_mut()
        .unwrap()
        .remove("virusVerdict");
    assert_eq!(stack.invoke(&no_verdicts).unwrap_err().0, "MalformedEvent");
    // SES's probe object when a rule is created is not a mail.
    let answer = stack.invoke(&ses_event("AMAZON_SES_SETUP_NOTIFICATION", &["bugs@example.test"]));
    assert_eq!(
        answer,
        Ok(json!({"delivered": 0, "rejected": 0, "unrouted": 0, "already_delivered": 0, "given_up": 0}))
    );
}

#[test]
fn a_bad_configuration_stops_the_cold_start_naming_the_entry() {
    let output = std::process::Command::new(support::lambda::FUNCTION)
        .env_clear()
        .env("RT_URL", "https://rt.example.com")
        .env("MAIL_BUCKET", "mail")
        .env(
            "ROUTES",
            "bugs@example.test: --queue bugs; support@example.test: --queue support --action close",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("route 2") && text.contains("close"), "{text}");
    assert!(text.contains("no mail was touched"), "{text}");
}

#[test]
fn a_retried_invocation_never_posts_a_route_twice_and_posts_the_rest() {
    // In front of the README's door to the real RT: the second post fails once with a
    // 503 (the routes post concurrently, so which route gets it varies). RT's API is
    // asked through the door directly.
    let mut stack = LambdaStack::without_function(1);
    let door = Door {
        tls: false,
        ..Door::default()
    };
    let door_url = stack.open_door(door).url().to_string();
    let to_door = door_url.clone();
    let proxy = StandIn::start(move |n| {
        if n == 1 {
            Answer::status(503)
        } else {
            Answer::Forward(to_door.clone())
        }
    });
    stack.start_functions(&[("RT_URL", &proxy.url), ("RT_API_URL", &door_url)], 1);
    let (id, subject) = (unique("retried"), unique("Retried mail"));
    stack.store_mail(&id, &smtp_mail(&subject, "once only"));
    let event = ses_event(&id, &["bugs@example.test", "support@example.test"]);

    let (kind, message) = stack.invoke(&event).unwrap_err();
    assert_eq!(kind, "DeliveryWillBeRetried");
    assert!(
        message.contains("1 of 2") && message.contains("ServerError"),
        "{message}"
    );
    assert_eq!(rt::tickets_with_subject(&subject).len(), 1);

    // Lambda's retry: the delivered route is not posted again, the failed one is.
    assert_eq!(
        stack.invoke(&event),
        Ok(json!({"delivered": 1, "rejected": 0, "unrouted": 0, "already_delivered": 1, "given_up": 0}))
    );
    // A duplicated invocation of the same mail posts nothing at all.
    assert_eq!(
        stack.invoke(&event),
        Ok(json!({"delivered": 0, "rejected": 0, "unrouted": 0, "already_delivered": 2, "given_up": 0}))
    );
    let tickets = rt::tickets_with_subject(&subject);
    assert_eq!(tickets.len(), 2, "one ticket per route, none twice: {tickets:?}");
    assert_eq!(proxy.requests().len(), 3, "three posts in all: ok, 503, ok");
}

#[test]
fn a_misrouted_mail_is_given_up_once_with_an_operator_notice() {
    // RT answers `temporary failure` for a queue it lacks: no retry can fix that.
    let routes = format!(
        "{}; broken@example.test: --queue no-such-queue",
        support::lambda::ROUTES
    );
    let stack = LambdaStack::start(&[
        ("ROUTES", &routes),
        ("OPERATOR_EMAIL", "ops@example.test"),
        ("NOTICE_FROM", "rt@example.test"),
    ]);
    stack.verify_ses_identity("rt@example.test");
    let id = unique("misrouted");
    stack.store_mail(&id, &smtp_mail("misrouted", "x"));
    let event = ses_event(&id, &["broken@example.test"]);
    assert_eq!(
        stack.invoke(&event),
        Ok(json!({"delivered": 0, "rejected": 0, "unrouted": 0, "already_delivered": 0, "given_up": 1}))
    );
    // A retry or duplicate neither posts nor notifies again.
    assert_eq!(
        stack.invoke(&event),
        Ok(json!({"delivered": 0, "rejected": 0, "unrouted": 0, "already_delivered": 1, "given_up": 0}))
    );
    let sent = stack.sent_mail();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let raw = &sent[0];
    let notice = mail_parser::MessageParser::new().parse(raw.as_bytes()).unwrap();
    let to = notice.to().and_then(|a| a.first()).and_then(|a| a.address());
    assert_eq!(to, Some("ops@example.test"), "{raw}");
    assert!(raw.contains("\r\nAuto-Submitted: auto-replied\r\n"), "{raw}");
    let body = notice.body_text(0).unwrap();
    assert!(body.contains(&id) && body.contains("no such queue or action"), "{body}");
}

#[test]
fn the_verdict_policy_drops_viruses_and_tags_spam() {
    let recorder = StandIn::always(Answer::ok_body("ok\n"));
    let stack = LambdaStack::start(&[
        ("RT_URL", &recorder.url),
        ("OPERATOR_EMAIL", "ops@example.test"),
        ("NOTICE_FROM", "rt@example.test"),
    ]);
    stack.verify_ses_identity("rt@example.test");
    for fixture_name in ["ses-virus.json", "ses-spam.json"] {
        let event = fixture(fixture_name);
        let id = event["Records"][0]["ses"]["mail"]["messageId"]
            .as_str()
            .unwrap()
            .to_string();
        let eml = std::fs::read(format!("{}/events/mail/{id}.eml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        stack.store_mail(&id, &eml);
        stack.invoke(&event).unwrap();
    }
    // The virus is never posted; the spam is, tagged for RT.
    let post = recorder.only_request();
    let (_, message) = post.lambda_message();
    assert!(
        message.starts_with(b"X-RT-Mailgate-Spam: FAIL"),
        "{}",
        String::from_utf8_lossy(&message[..80])
    );
    let sent = stack.sent_mail();
    assert_eq!(sent.len(), 1, "one operator notice, for the virus");
    assert!(sent[0].contains("virus"), "{}", sent[0]);
}

/// The buffered path's event: an SQS batch whose bodies are SNS envelopes holding the
/// S3 action's SES notification (which names the object key).
fn sqs_batch(mails: &[(&str, &str)]) -> serde_json::Value {
    let records: Vec<serde_json::Value> = mails
        .iter()
        .enumerate()
        .map(|(n, (ses_id, recipient))| {
            let mut ses = ses_event(ses_id, &[recipient])["Records"][0]["ses"].clone();
            ses["notificationType"] = "Received".into();
            ses["receipt"]["action"] = json!({
                "type": "S3", "topicArn": "arn:aws:sns:us-east-1:123456789012:rt-mail",
                "bucketName": support::lambda::BUCKET, "objectKey": format!("{}{ses_id}", support::lambda::PREFIX)
            });
            let envelope = json!({"Type": "Notification", "MessageId": format!("sns-{n}"), "Message": ses.to_string()});
            json!({"messageId": format!("sqs-{n}"), "eventSource": "aws:sqs", "body": envelope.to_string()})
        })
        .collect();
    json!({ "Records": records })
}

#[test]
fn the_buffered_path_reports_only_the_failed_messages_of_a_batch() {
    let stack = LambdaStack::start(&[]);
    let (good, subject) = (unique("buffered"), unique("Buffered mail"));
    stack.store_mail(&good, &smtp_mail(&subject, "via SNS and SQS"));
    let missing = unique("buffered-missing");
    let answer = stack.invoke(&sqs_batch(&[
        (&good, "support@example.test"),
        (&missing, "bugs@example.test"),
    ]));
    assert_eq!(answer, Ok(json!({"batchItemFailures": [{"itemIdentifier": "sqs-1"}]})));
    let ticket = rt::only_ticket_with_subject(&subject);
    assert_eq!(rt::ticket(ticket)["Queue"], "support");
    // SQS redelivers the batch (at-least-once): the delivered mail is not posted again.
    assert_eq!(
        stack.invoke(&sqs_batch(&[(&good, "support@example.test")])),
        Ok(json!({"batchItemFailures": []}))
    );
    assert_eq!(rt::tickets_with_subject(&subject), [ticket]);
}

#[test]
fn every_line_about_a_mail_is_json_with_its_message_id_and_the_request_id() {
    let stack = LambdaStack::start(&[]);
    let id = unique("log-shape");
    stack.store_mail(&id, &mails::plain("a@example.org", &id, "x"));
    stack.invoke(&ses_event(&id, &["bugs@example.test"])).unwrap();
    let log = stack.function_log();
    let lines: Vec<serde_json::Value> = log
        .iter()
        .filter(|l| l["span"]["message_id"] == id.as_str())
        .cloned()
        .collect();
    assert!(
        !lines.is_empty(),
        "a mail's lines carry its message id in their span: {log:?}"
    );
    for line in &lines {
        let spans = line["spans"].as_array().expect("the span list");
        assert!(
            spans
                .iter()
                .any(|s| s["requestId"].as_str().is_some_and(|r| !r.is_empty())),
            "no request id: {line}"
        );
        // Real JSON values, not Debug strings.
        assert!(line["fields"].get("fields").is_none(), "{line}");
    }
    let outcome = lines
        .iter()
        .find(|l| l["fields"]["outcome"] == "delivered")
        .expect("the outcome line");
    assert_eq!(outcome["fields"]["queue"], "bugs");
    assert!(outcome["fields"]["bytes"].is_u64());
}

#[test]
fn each_invocation_writes_its_metrics_in_embedded_metric_format() {
    let stack = LambdaStack::start(&[]);
    let id = unique("metrics");
    stack.store_mail(&id, &mails::plain("a@example.org", &id, "x"));
    stack
        .invoke(&ses_event(&id, &["bugs@example.test", "nobody@example.test"]))
        .unwrap();
    let documents: Vec<serde_json::Value> = stack
        .function_log()
        .into_iter()
        .filter(|l| l["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "RtMailgate")
        .collect();
    let value = |metric: &str, dimensions: &[&str]| {
        documents.iter().find_map(|d| {
            let names: Vec<&str> = d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
                .as_array()?
                .iter()
                .filter_map(|n| n.as_str())
                .collect();
            (names == dimensions)
                .then(|| d[metric].clone())
                .filter(|v| !v.is_null())
        })
    };
    assert_eq!(value("Delivered", &["Route"]), Some(json!(1)), "{documents:?}");
    assert_eq!(value("Unrouted", &[]), Some(json!(1)), "{documents:?}");
    assert!(value("RtLatency", &["Route"]).is_some(), "{documents:?}");
    // Low cardinality: never the sender, recipient or message id as a dimension.
    let text = serde_json::to_string(&documents).unwrap();
    assert!(!text.contains("a@example.org") && !text.contains("nobody@example.test") && !text.contains(&id));
}
