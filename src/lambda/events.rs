//! The payloads the function (and the replay command) understand: SES receipt events,
//! SQS batches and SNS events carrying an S3 action's SES notification (raw or in an SNS
//! envelope), and Lambda's on-failure records (which hold the original event); and
//! [`MailInfo`], what the function needs to know of one mail from its event.

use aws_lambda_events::event::ses::{SimpleEmailEvent, SimpleEmailService};
use serde_json::Value;

use crate::core::outcome::Verdicts;

/// A payload that is not what its shape promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an SES receipt-rule event: {0}")]
pub struct MalformedEvent(pub String);

/// One mail as the event describes it.
#[derive(Debug, Clone, Default)]
pub struct MailInfo {
    /// SES's message id (the S3 key's last part).
    pub ses_id: String,
    /// The envelope recipients this rule matched.
    pub recipients: Vec<String>,
    /// The envelope sender.
    pub sender: String,
    /// SES's verdicts.
    pub verdicts: Verdicts,
    /// SPF passed.
    pub spf_pass: bool,
    /// DKIM passed.
    pub dkim_pass: bool,
    /// Subject from the event's common headers.
    pub subject: Option<String>,
    /// The mail's `Message-ID` header from the event's common headers (at most
    /// [`MAX_LOGGED_ID`] characters: it is logged and recorded, and senders choose it).
    pub message_id_header: Option<String>,
    /// The S3 key when the event names it (an S3 action's notification); else
    /// `MAIL_PREFIX + ses_id`.
    pub object_key: Option<String>,
    /// The addresses of the `From` header (the event's common headers), for the trace's
    /// index; empty in a replay.
    pub from: Vec<String>,
    /// SES's receipt time (epoch ms; 0 when not known, as in a replay).
    pub received_ms: u64,
}

impl MailInfo {
    /// Reads the mail's facts from an SES record.
    pub fn from_ses(ses: &SimpleEmailService) -> Result<Self, MalformedEvent> {
        let receipt = &ses.receipt;
        let status = |v: &aws_lambda_events::event::ses::SimpleEmailVerdict| v.status.clone().unwrap_or_default();
        let pass = |v: &aws_lambda_events::event::ses::SimpleEmailVerdict| status(v).eq_ignore_ascii_case("PASS");
        Ok(Self {
            ses_id: ses
                .mail
                .message_id
                .clone()
                .filter(|id| !id.is_empty())
                .ok_or_else(|| MalformedEvent("a record has no mail.messageId".into()))?,
            recipients: receipt.recipients.clone(),
            sender: ses.mail.source.clone().unwrap_or_default(),
            verdicts: Verdicts {
                virus: status(&receipt.virus_verdict),
                spam: status(&receipt.spam_verdict),
                dmarc: status(&receipt.dmarc_verdict),
                dmarc_policy: receipt.dmarc_policy.clone(),
            },
            spf_pass: pass(&receipt.spf_verdict),
            dkim_pass: pass(&receipt.dkim_verdict),
            subject: ses.mail.common_headers.subject.clone(),
            message_id_header: ses
                .mail
                .common_headers
                .message_id
                .as_deref()
                .map(bounded_id)
                .filter(|id| !id.is_empty()),
            object_key: receipt.action.object_key.clone().filter(|k| !k.is_empty()),
            from: crate::core::mail_index::from_addresses(&ses.mail.common_headers.from)
                .iter()
                .take(crate::core::mail_index::MAX_FROM_ADDRESSES)
                .map(|a| bounded_id(a))
                .collect(),
            received_ms: u64::try_from(ses.mail.timestamp.timestamp_millis()).unwrap_or(0),
        })
    }
}

/// The longest `Message-ID` kept for logs and records, in characters.
pub const MAX_LOGGED_ID: usize = 256;

/// A sender-chosen id as logged: control characters dropped, at most [`MAX_LOGGED_ID`]
/// characters.
pub fn bounded_id(id: &str) -> String {
    id.chars().filter(|c| !c.is_control()).take(MAX_LOGGED_ID).collect()
}

/// The kinds of payload the function is invoked with.
#[derive(Debug, PartialEq, Eq)]
pub enum EventShape {
    /// An SES receipt-rule event (the rule's Lambda action).
    Ses,
    /// An SQS batch (the buffered path).
    Sqs,
    /// An SNS event.
    Sns,
    /// Anything else, with what was wrong.
    Unknown(String),
}

impl EventShape {
    /// Tells the shape from the first record.
    pub fn of(payload: &Value) -> Self {
        let Some(first) = payload
            .get("Records")
            .and_then(|r| r.as_array())
            .and_then(|r| r.first())
        else {
            return Self::Unknown("missing field `Records` (or no records)".into());
        };
        // SQS spells it eventSource, SNS EventSource.
        let source = first
            .get("eventSource")
            .or_else(|| first.get("EventSource"))
            .and_then(Value::as_str);
        match source {
            Some("aws:ses") => Self::Ses,
            Some("aws:sqs") => Self::Sqs,
            Some("aws:sns") => Self::Sns,
            // Some hand-made SES events leave eventSource out.
            None if first.get("ses").is_some() => Self::Ses,
            other => Self::Unknown(format!("unsupported event source {other:?}")),
        }
    }
}

/// An SES notification (an S3 action's, through SNS), raw or in an SNS envelope.
fn ses_notification(text: &str) -> Result<MailInfo, MalformedEvent> {
    let malformed = |e: String| MalformedEvent(format!("not an SES notification: {e}"));
    let mut value: Value = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    if let Some(inner) = value.get("Message").and_then(Value::as_str) {
        value = serde_json::from_str(inner).map_err(|e| malformed(e.to_string()))?;
    }
    let ses: SimpleEmailService = serde_json::from_value(value).map_err(|e| malformed(e.to_string()))?;
    MailInfo::from_ses(&ses)
}

/// Every mail named by a payload of any shape above, or by a Lambda on-failure record
/// (`requestPayload`), or by an SQS body holding one: what the replay command reads.
pub fn mails_in(payload: &Value) -> Result<Vec<MailInfo>, MalformedEvent> {
    if let Some(original) = payload.get("requestPayload") {
        return mails_in(original);
    }
    match EventShape::of(payload) {
        EventShape::Ses => {
            let event: SimpleEmailEvent =
                serde_json::from_value(payload.clone()).map_err(|e| MalformedEvent(e.to_string()))?;
            event.records.iter().map(|r| MailInfo::from_ses(&r.ses)).collect()
        }
        EventShape::Sqs => records(payload)
            .iter()
            .map(|r| body_mails(r["body"].as_str().unwrap_or_default()))
            .collect::<Result<Vec<_>, _>>()
            .map(|all| all.into_iter().flatten().collect()),
        EventShape::Sns => records(payload)
            .iter()
            .map(|r| ses_notification(r["Sns"]["Message"].as_str().unwrap_or_default()))
            .collect(),
        EventShape::Unknown(_) => ses_notification(&payload.to_string()).map(|m| vec![m]),
    }
}

/// The mails in one queued message body: an on-failure record, an event, or a notification.
pub fn body_mails(body: &str) -> Result<Vec<MailInfo>, MalformedEvent> {
    let value: Value = serde_json::from_str(body).map_err(|e| MalformedEvent(e.to_string()))?;
    if value.get("requestPayload").is_some() || value.get("Records").is_some() {
        mails_in(&value)
    } else {
        ses_notification(body).map(|m| vec![m])
    }
}

fn records(payload: &Value) -> Vec<Value> {
    payload["Records"].as_array().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ses() -> Value {
        let verdict = json!({"status": "PASS"});
        json!({
            "mail": {"timestamp": "2026-11-24T10:00:00Z", "source": "a@customer.example", "messageId": "m1",
                     "destination": ["bugs@example.com"], "headersTruncated": false, "headers": [],
                     "commonHeaders": {"from": [], "to": [], "subject": "s"}},
            "receipt": {"timestamp": "2026-11-24T10:00:00Z", "processingTimeMillis": 1, "recipients": ["bugs@example.com"],
                        "spamVerdict": verdict, "virusVerdict": verdict, "spfVerdict": verdict,
                        "dkimVerdict": verdict, "dmarcVerdict": verdict,
                        "action": {"type": "S3", "bucketName": "b", "objectKey": "in/m1"}}
        })
    }

    #[test]
    fn every_shape_names_its_mail() {
        let event = json!({"Records": [{"eventSource": "aws:ses", "ses": ses()}]});
        let sqs_raw = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "q", "body": ses().to_string()}]});
        let envelope = json!({"Type": "Notification", "Message": ses().to_string()});
        let sqs_sns = json!({"Records": [{"eventSource": "aws:sqs", "messageId": "q", "body": envelope.to_string()}]});
        let sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": ses().to_string()}}]});
        let on_failure = json!({"version": "1.0", "requestPayload": event.clone(), "responsePayload": {}});
        for payload in [&event, &sqs_raw, &sqs_sns, &sns, &on_failure] {
            let mails = mails_in(payload).unwrap();
            assert_eq!(mails.len(), 1, "{payload}");
            assert_eq!(mails[0].ses_id, "m1");
            assert_eq!(mails[0].recipients, ["bugs@example.com"]);
            assert_eq!(mails[0].object_key.as_deref(), Some("in/m1"));
        }
        assert_eq!(body_mails(&on_failure.to_string()).unwrap()[0].ses_id, "m1");
    }

    #[test]
    fn malformed_payloads_are_errors_not_panics() {
        for payload in [
            json!({}),
            json!({"Records": []}),
            json!({"Records": [{"eventSource": "aws:s3"}]}),
            json!("x"),
            json!(null),
        ] {
            assert!(matches!(EventShape::of(&payload), EventShape::Unknown(_)), "{payload}");
        }
        assert!(mails_in(&json!({"Records": [{"eventSource": "aws:sqs", "body": "not json"}]})).is_err());
        assert!(mails_in(&json!({"Records": [{"eventSource": "aws:ses", "ses": {}}]})).is_err());
        assert!(body_mails("{\"Message\": \"{}\"}").is_err());
    }
}
