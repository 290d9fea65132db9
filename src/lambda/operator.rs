//! Requests an operator (or the template's canary schedule) sends the function itself,
//! under the key `rt-mailgate` (SES, SNS and SQS payloads never carry it):
//!
//! - `{"rt-mailgate": {"replay": {"message_id": "...", "recipients": ["..."],
//!   "sender": "...", "post_screened_mail": false}}}`: a replay run inside the function,
//!   for an RT only the function's VPC reaches (`rt-mailgate-replay --function-name F
//!   --in-function` sends it). The answer is the replay's report with `"done"`: true only
//!   when every route RT took or refused. With `"release": true` it is a release of held
//!   mail ([`Mode::Release`]: a route held for a storm, a loop or an auto-reply is
//!   posted, once; the screening kept): what `rt-mailgate-held release` and
//!   `rt-mailgate-replay --release --in-function` send.
//! - `{"rt-mailgate": {"canary": {"to": "canary@example.com"}}}`: sends a synthetic mail
//!   through SES from `NOTICE_FROM` to the canary address, which SES receives and the
//!   function routes to RT like any mail; the "nothing delivered" alarm notices when it
//!   stops arriving. A canary address no route takes is refused (an error, not a send).

use std::time::Instant;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::aws::records::DeliveryRecords;
use crate::aws::s3::MailStore;
use crate::aws::ses::Notifier;
use crate::core::notice::NoticeText;
use crate::core::trace::utc;
use crate::lambda::events::MailInfo;
use crate::lambda::handler::{Handler, HandlerError, Mode};
use crate::lambda::invocation::epoch_ms;
use crate::rt::lookup::DeliveryLookup;
use crate::rt::MailGateway;

/// The payload key that marks an operator's request.
pub const OPERATOR_KEY: &str = "rt-mailgate";

/// An operator's request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum OperatorRequest {
    /// Replay one mail inside the function.
    Replay(ReplayRequest),
    /// Send the canary mail.
    Canary(CanaryRequest),
}

/// A replay of one mail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// SES's message id.
    pub message_id: String,
    /// The envelope recipients to route.
    pub recipients: Vec<String>,
    /// The envelope sender.
    #[serde(default)]
    pub sender: String,
    /// Also post a mail the first delivery dropped on SES's verdicts.
    #[serde(default)]
    pub post_screened_mail: bool,
    /// Release held mail (storm, loop, auto-reply): [`Mode::Release`]. Not with
    /// `post_screened_mail`: a release keeps the screening.
    #[serde(default)]
    pub release: bool,
}

/// The canary.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryRequest {
    /// Where the canary mail goes (an address SES receives, routed to a canary queue).
    pub to: String,
}

/// The canary mail: a subject with the time (to find its ticket), a body saying what it is.
pub fn canary_mail(to: &str, now_ms: u64) -> NoticeText {
    NoticeText {
        to: to.to_string(),
        subject: format!("rt-mailgate canary {}", utc(now_ms)),
        body: "A synthetic mail rt-mailgate's canary sends on the template's CanarySchedule, to prove \
               that mail still flows from SES through the function into RT. Its ticket may be resolved \
               or deleted; the NothingDeliveredAlarm fires when these stop arriving.\n"
            .to_string(),
    }
}

impl<S: MailStore, R: DeliveryRecords, G: MailGateway, N: Notifier, L: DeliveryLookup> Handler<S, R, G, N, L> {
    /// Runs an operator's request (the value under [`OPERATOR_KEY`]) within the
    /// invocation's `deadline`.
    pub async fn operate(&self, request: &Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        let request: OperatorRequest = serde_json::from_value(request.clone())
            .map_err(|e| HandlerError::MalformedEvent(format!("operator request: {e}")))?;
        match request {
            OperatorRequest::Replay(replay) => {
                let mode = match (replay.release, replay.post_screened_mail) {
                    (true, true) => {
                        return Err(HandlerError::MalformedEvent(
                            "operator request: a release keeps the screening; \
                             post_screened_mail can't go with release"
                                .into(),
                        ))
                    }
                    (true, false) => Mode::Release,
                    (false, true) => Mode::ReplayScreenedToo,
                    (false, false) => Mode::Replay,
                };
                tracing::warn!(
                    message_id = replay.message_id,
                    post_screened_mail = replay.post_screened_mail,
                    release = replay.release,
                    "replay requested by an operator"
                );
                let mail = MailInfo {
                    ses_id: replay.message_id,
                    recipients: replay.recipients,
                    sender: replay.sender,
                    ..MailInfo::default()
                };
                let report = self.replay_until(&[mail], mode, deadline).await;
                Ok(json!({
                    "done": report.failed == 0,
                    "settled": report.settled,
                    "failed": report.failed,
                    "report": report.lines,
                }))
            }
            OperatorRequest::Canary(canary) => {
                if self.config().notices.from.is_none() {
                    tracing::error!(
                        outcome = "canary-failed",
                        "canary mail not sent: NOTICE_FROM is not set"
                    );
                    return Err(HandlerError::MalformedEvent("canary: NOTICE_FROM is not set".into()));
                }
                // A canary no route takes would be dropped as unrouted every hour while
                // the NothingDeliveredAlarm waits for it: refused loudly instead (the
                // failed invocation counts in FunctionErrorsAlarm).
                if self.config().routes.route(&canary.to).is_none() {
                    tracing::error!(
                        to = canary.to,
                        outcome = "canary-failed",
                        "canary mail not sent: no route takes the canary address; add one (to a canary queue) or change CanaryAddress"
                    );
                    return Err(HandlerError::MalformedEvent(format!(
                        "canary: no route takes {}; add a route for it or change CanaryAddress",
                        canary.to
                    )));
                }
                let mail = canary_mail(&canary.to, epoch_ms());
                match self.send_notice(&mail).await {
                    Ok(()) => {
                        tracing::info!(
                            to = canary.to,
                            subject = mail.subject,
                            outcome = "canary-sent",
                            "canary mail sent"
                        );
                        Ok(json!({ "canary_sent_to": canary.to, "subject": mail.subject }))
                    }
                    Err(reason) => {
                        tracing::error!(
                            to = canary.to,
                            error = reason,
                            outcome = "canary-failed",
                            "canary mail not sent"
                        );
                        Err(HandlerError::MalformedEvent(format!("canary not sent: {reason}")))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_request_is_read_strictly() {
        let replay: OperatorRequest = serde_json::from_value(json!({
            "replay": {"message_id": "m1", "recipients": ["a@example.com"]}
        }))
        .unwrap();
        assert!(
            matches!(replay, OperatorRequest::Replay(r) if !r.post_screened_mail && !r.release && r.recipients.len() == 1)
        );
        let release: OperatorRequest = serde_json::from_value(json!({
            "replay": {"message_id": "m1", "recipients": ["a@example.com"], "release": true}
        }))
        .unwrap();
        assert!(matches!(release, OperatorRequest::Replay(r) if r.release));
        assert!(serde_json::from_value::<OperatorRequest>(json!({"replay": {"message_id": "m1"}})).is_err());
        assert!(serde_json::from_value::<OperatorRequest>(json!({"delete": {}})).is_err());
        let canary: OperatorRequest = serde_json::from_value(json!({"canary": {"to": "c@example.com"}})).unwrap();
        assert_eq!(
            canary,
            OperatorRequest::Canary(CanaryRequest {
                to: "c@example.com".into()
            })
        );
    }

    #[test]
    fn the_canary_mail_names_itself_and_its_time() {
        let mail = canary_mail("c@example.com", 1_700_000_000_000);
        assert_eq!(mail.subject, "rt-mailgate canary 2023-11-14T22:13:20Z");
        assert!(mail.body.contains("CanarySchedule"));
    }
}
