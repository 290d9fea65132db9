//! The SES/SNS/SQS envelopes around an SES notification (`body_mails`, `mails_in`): the
//! fuzzer's text is put where outside input sits in each shape (an SQS body, an SNS
//! message, an on-failure record's payload, nested), and every shape must give mails
//! with a message id or a MalformedEvent; never a panic. The same notification gives
//! the same mails whichever envelope carries it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::lambda::events::{body_mails, mails_in, MailInfo};
use serde_json::{json, Value};

fn ids(mails: &[MailInfo]) -> Vec<(String, Vec<String>, Option<String>)> {
    mails
        .iter()
        .map(|m| (m.ses_id.clone(), m.recipients.clone(), m.object_key.clone()))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let direct = body_mails(&text);
    let sns_envelope = json!({"Type": "Notification", "Message": text}).to_string();
    let shapes: Vec<Value> = vec![
        json!({"Records": [{"eventSource": "aws:sqs", "messageId": "q", "body": text}]}),
        json!({"Records": [{"eventSource": "aws:sqs", "messageId": "q", "body": sns_envelope}]}),
        json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": text}}]}),
        json!({"version": "1.0", "requestPayload": {"Records": [{"eventSource": "aws:sqs", "body": text}]}}),
    ];
    for shape in &shapes {
        if let Ok(mails) = mails_in(shape) {
            assert!(mails.iter().all(|m| !m.ses_id.is_empty()), "a mail without an id");
        }
        if let Ok(mails) = body_mails(&shape.to_string()) {
            assert!(mails.iter().all(|m| !m.ses_id.is_empty()), "a mail without an id");
        }
    }
    // A bare SES notification (not itself an event) reads the same in an SQS body and
    // in an SNS envelope inside one.
    if let (Ok(direct), Ok(Value::Object(map))) = (&direct, serde_json::from_str::<Value>(&text)) {
        if !map.contains_key("Records") && !map.contains_key("requestPayload") && !map.contains_key("Message") {
            let queued = mails_in(&shapes[0]).expect("an SQS body that reads alone reads queued");
            assert_eq!(ids(&queued), ids(direct));
            let enveloped = mails_in(&shapes[1]).expect("the same in an SNS envelope");
            assert_eq!(ids(&enveloped), ids(direct));
        }
    }
});
