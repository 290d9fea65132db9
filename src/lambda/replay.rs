//! Replay: re-deliver mails from the bucket after an outage or a fixed route, honouring
//! the route records (a post RT already took is never repeated; a post that was given
//! up is tried again). The first delivery's screening stands: a mail dropped on SES's
//! verdicts (virus, DMARC reject, spam drop) stays dropped unless the operator forces it
//! ([`Mode::ReplayScreenedToo`]), and a spam-tagged mail keeps its tag. That holds for
//! a route without a record too (unrouted at receipt, added since): a replay by message
//! id, which has no event, finds SES's verdicts in the mail's verdict record or in
//! SES's own fields on the stored mail ([`crate::lambda::screening`]). Mails are named
//! by message id and recipients, by an event file, or by the messages of a dead-letter
//! queue (deleted only once every mail it names is delivered or refused).
//!
//! The report tells the truth: a mail counts as done only when each of its routes'
//! records says `delivered` or `refused`. A route given up again, still failing, or kept
//! dropped on SES's verdicts, and a recipient without a route, leave the mail not done:
//! its dead-letter message stays, the report says per route what to fix
//! ([`crate::core::trace`]), and `rt-mailgate-replay` exits 1.

use std::fmt::Write as _;
use std::time::Instant;

use crate::aws::records::DeliveryRecords;
use crate::aws::s3::MailStore;
use crate::aws::ses::Notifier;
use crate::aws::sqs::DeadLetters;
use crate::core::trace::{describe, route_lines};
use crate::lambda::events::body_mails;
use crate::lambda::events::MailInfo;
use crate::lambda::handler::{Handler, Mode, Summary};
use crate::lambda::invocation::epoch_ms;
use crate::rt::lookup::DeliveryLookup;
use crate::rt::MailGateway;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Mails whose every route RT took or refused for good.
    pub settled: usize,
    /// Mails not done: a route given up, still failing, kept dropped, or unrouted (left
    /// in place, or on the queue).
    pub failed: usize,
    /// One line per mail.
    pub lines: String,
}

impl<S: MailStore, R: DeliveryRecords, G: MailGateway, N: Notifier, L: DeliveryLookup> Handler<S, R, G, N, L> {
    /// Replays the given mails (`mode`: [`Mode::Replay`], or [`Mode::ReplayScreenedToo`]
    /// to post screened drops as well).
    pub async fn replay(&self, mails: &[MailInfo], mode: Mode) -> ReplayReport {
        self.replay_until(mails, mode, None).await
    }

    /// As [`Self::replay`], within an invocation's `deadline` (a replay run inside the
    /// function): what can't finish in time is left as a retry would leave it.
    pub async fn replay_until(&self, mails: &[MailInfo], mode: Mode, deadline: Option<Instant>) -> ReplayReport {
        let mut report = ReplayReport::default();
        for mail in mails {
            self.replay_one(mail, mode, deadline, &mut report).await;
        }
        report
    }

    /// Replays every message of a dead-letter queue (at most `max`), deleting those
    /// whose mails are all settled.
    pub async fn replay_queue(&self, queue: &impl DeadLetters, max: usize, mode: Mode) -> Result<ReplayReport, String> {
        let mut report = ReplayReport::default();
        let mut seen = 0;
        // Kept messages stay invisible until the run ends (so it does not meet them
        // again), then are released for the replay after the fix.
        let mut kept = Vec::new();
        while seen < max {
            let batch = queue.receive((max - seen).min(10) as i32).await?;
            if batch.is_empty() {
                break;
            }
            for message in batch {
                seen += 1;
                // A canary's failed invocation is dead-lettered too: not a mail.
                if is_operator_request(&message.body) {
                    let _ = writeln!(
                        report.lines,
                        "a canary or operator request, not a mail: removed from the queue"
                    );
                    queue.delete(&message.receipt_handle).await?;
                    continue;
                }
                let mails = match body_mails(&message.body) {
                    Ok(mails) => mails,
                    Err(error) => {
                        report.failed += 1;
                        let _ = writeln!(report.lines, "queue message not understood, left on the queue: {error}");
                        kept.push(message.receipt_handle);
                        continue;
                    }
                };
                let before = report.failed;
                for mail in &mails {
                    self.replay_one(mail, mode, None, &mut report).await;
                }
                if report.failed == before {
                    queue.delete(&message.receipt_handle).await?;
                } else {
                    kept.push(message.receipt_handle);
                }
            }
        }
        for handle in kept {
            queue.release(&handle).await?;
        }
        Ok(report)
    }

    async fn replay_one(&self, mail: &MailInfo, mode: Mode, deadline: Option<Instant>, report: &mut ReplayReport) {
        let ses_id = mail.ses_id.as_str();
        let mut done = match self.deliver_mail(mail, deadline, mode).await {
            Ok(Summary {
                delivered,
                rejected,
                given_up,
                unrouted,
                already_delivered,
                held,
            }) => {
                let _ = writeln!(
                    report.lines,
                    "{ses_id}: delivered {delivered}, refused by RT {rejected}, given up {given_up}, unrouted {unrouted}, \
                     already delivered {already_delivered}, held {held}",
                );
                true
            }
            Err(error) => {
                let _ = writeln!(report.lines, "{ses_id}: not settled: {error}");
                false
            }
        };
        // The truth is in the records, route by route.
        let now = epoch_ms();
        let (routes, unrouted) = self.routes_now(mail).await;
        for route in &routes {
            match &route.record {
                Ok(Some(record)) => {
                    done &= describe(record, now).done;
                    report.lines.push_str(&route_lines(ses_id, record, now));
                }
                Ok(None) => {
                    done = false;
                    let _ = writeln!(
                        report.lines,
                        "  route {} ({}): no record: not attempted (the mail was not read?)",
                        route.route,
                        route.recipients.join(", ")
                    );
                }
                Err(error) => {
                    done = false;
                    let _ = writeln!(report.lines, "  route {}: record unreadable: {error}", route.route);
                }
            }
        }
        for recipient in &unrouted {
            done = false;
            // The recipient is the sender's choice: quoted in the commands.
            let _ = writeln!(
                report.lines,
                "  recipient {recipient}: no route\n    next: add one to ROUTES (rt-mailgate-routes explain {}), \
                 then replay it (rt-mailgate-replay {} {})",
                crate::core::shell::positional(recipient),
                crate::core::shell::option("--message-id", ses_id),
                crate::core::shell::option("--recipient", recipient),
            );
        }
        if routes.is_empty() && unrouted.is_empty() && mail.recipients.is_empty() {
            done = false;
            let _ = writeln!(report.lines, "  no recipients named: give --recipient");
        }
        if done {
            report.settled += 1;
        } else {
            report.failed += 1;
            let _ = writeln!(report.lines, "{ses_id}: NOT DONE");
        }
    }
}

/// True for a dead-lettered operator request (the canary's, as Lambda's on-failure record).
fn is_operator_request(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body).is_ok_and(|v| {
        v.get(crate::lambda::operator::OPERATOR_KEY).is_some()
            || v.get("requestPayload")
                .is_some_and(|p| p.get(crate::lambda::operator::OPERATOR_KEY).is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_lettered_canary_is_told_from_a_mail() {
        let canary = r#"{"requestPayload": {"rt-mailgate": {"canary": {"to": "c@example.com"}}}}"#;
        assert!(is_operator_request(canary));
        assert!(!is_operator_request(r#"{"requestPayload": {"Records": []}}"#));
        assert!(!is_operator_request("not json"));
    }
}
