//! Replay: re-deliver mails from the bucket after an outage or a fixed route, honouring
//! the route records (a post RT already took is never repeated; a post that was given
//! up is tried again). The first delivery's screening stands: a mail dropped on SES's
//! verdicts (virus, DMARC reject, spam drop) stays dropped unless the operator forces it
//! ([`Mode::ReplayScreenedToo`]), and a spam-tagged mail keeps its tag. Mails are named
//! by message id and recipients, by an event file, or by the messages of a dead-letter
//! queue (deleted once replayed).

use std::fmt::Write as _;

use crate::aws::records::DeliveryRecords;
use crate::aws::s3::MailStore;
use crate::aws::ses::Notifier;
use crate::aws::sqs::DeadLetters;
use crate::lambda::events::body_mails;
use crate::lambda::events::MailInfo;
use crate::lambda::handler::{Handler, Mode, Summary};
use crate::rt::lookup::DeliveryLookup;
use crate::rt::MailGateway;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Mails whose every route is now settled.
    pub settled: usize,
    /// Mails that still failed (left in place, or on the queue).
    pub failed: usize,
    /// One line per mail.
    pub lines: String,
}

impl<S: MailStore, R: DeliveryRecords, G: MailGateway, N: Notifier, L: DeliveryLookup> Handler<S, R, G, N, L> {
    /// Replays the given mails (`mode`: [`Mode::Replay`], or [`Mode::ReplayScreenedToo`]
    /// to post screened drops as well).
    pub async fn replay(&self, mails: &[MailInfo], mode: Mode) -> ReplayReport {
        let mut report = ReplayReport::default();
        for mail in mails {
            self.replay_one(mail, mode, &mut report).await;
        }
        report
    }

    /// Replays every message of a dead-letter queue (at most `max`), deleting those
    /// whose mails are all settled.
    pub async fn replay_queue(&self, queue: &impl DeadLetters, max: usize, mode: Mode) -> Result<ReplayReport, String> {
        let mut report = ReplayReport::default();
        let mut seen = 0;
        while seen < max {
            let batch = queue.receive((max - seen).min(10) as i32).await?;
            if batch.is_empty() {
                break;
            }
            for message in batch {
                seen += 1;
                let mails = match body_mails(&message.body) {
                    Ok(mails) => mails,
                    Err(error) => {
                        report.failed += 1;
                        let _ = writeln!(report.lines, "queue message not understood, left on the queue: {error}");
                        continue;
                    }
                };
                let before = report.failed;
                for mail in &mails {
                    self.replay_one(mail, mode, &mut report).await;
                }
                if report.failed == before {
                    queue.delete(&message.receipt_handle).await?;
                }
            }
        }
        Ok(report)
    }

    async fn replay_one(&self, mail: &MailInfo, mode: Mode, report: &mut ReplayReport) {
        match self.deliver_mail(mail, None, mode).await {
            Ok(Summary {
                delivered,
                rejected,
                given_up,
                unrouted,
                already_delivered,
            }) => {
                report.settled += 1;
                let _ = writeln!(
                    report.lines,
                    "{}: delivered {delivered}, refused by RT {rejected}, given up {given_up}, unrouted {unrouted}, \
                     already delivered {already_delivered}",
                    mail.ses_id
                );
            }
            Err(error) => {
                report.failed += 1;
                let _ = writeln!(report.lines, "{}: not settled: {error}", mail.ses_id);
            }
        }
    }
}
