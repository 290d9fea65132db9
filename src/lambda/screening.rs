//! A mail's screening (SES's verdicts under the function's verdict policy) on every
//! path, a replay's included: a mail SES flagged as a virus or a DMARC reject is never
//! posted, and a spam-tagged one keeps its tag, however it is replayed.
//!
//! Where the verdicts come from, in the order trusted:
//!
//! 1. a route's own record, when it has one: the first delivery's screening of that
//!    route stands, whatever is said below ([`crate::lambda::delivery`], step 2);
//! 2. the verdicts of the mail's receipt event: what SES told the function (an
//!    ordinary invocation, whatever its event holds; a replayed event file or
//!    dead-letter message that holds verdicts);
//! 3. the mail's own record ([`MailVerdicts`]), written from the event by the first
//!    delivery of a mail SES flagged, before any route is claimed and whether or not a
//!    route took the mail: what a replay by message id (which has no event) reads;
//! 4. the fields SES put on top of the stored mail (`X-SES-Virus-Verdict`,
//!    `X-SES-Spam-Verdict`, SES's `Authentication-Results`), read as
//!    [`crate::core::headers::SesHeaderVerdicts`] reads them: SES's own, never a
//!    sender's copy. For a mail whose first delivery never ran (or ran before this
//!    record existed). That header may not name the sender's DMARC policy: a DMARC
//!    `FAIL` without one is taken as a reject (fail closed; `--post-screened-mail`
//!    posts it);
//! 5. none of these (no SES field on the stored mail: SES's scanning off for the rule,
//!    or a mail put in the bucket by hand): posted as SES's absent verdicts would have
//!    it, with a warning.
//!
//! Only mails SES flagged get a record (3): for any other, SES's header (4) says the
//! same, and the ordinary path keeps its S3 requests (the record's create and the
//! mail's read, at once).

use crate::aws::records::DeliveryRecords;
use crate::aws::s3::MailStore;
use crate::core::outcome::{Screening, Verdicts};
use crate::core::route_record::MailVerdicts;
use crate::lambda::delivery::RouteDeliverer;
use crate::lambda::invocation::{epoch_ms, within, HandlerError, Mode, Stop, StoredMail};
use crate::rt::lookup::DeliveryLookup;
use crate::rt::MailGateway;

/// Where a mail's verdicts were found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictSource {
    /// The receipt event (2).
    Event,
    /// The mail's own record (3).
    MailRecord,
    /// SES's fields on the stored mail (4).
    StoredHeader,
    /// Nowhere (5).
    Unknown,
}

impl VerdictSource {
    /// For the log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Event => "the receipt event",
            Self::MailRecord => "the mail's verdict record",
            Self::StoredHeader => "the fields SES put on top of the stored mail",
            Self::Unknown => "nowhere",
        }
    }
}

impl<S, R, G, L> RouteDeliverer<'_, S, R, G, L>
where
    S: MailStore,
    R: DeliveryRecords,
    G: MailGateway,
    L: DeliveryLookup,
{
    /// The screening of a mail for the routes that have no record yet (see the module
    /// doc). `routed`: some route takes the mail (else nothing is read for a replay:
    /// there is nothing to post). A first delivery of a flagged mail records its verdicts
    /// here, before any route is claimed.
    pub async fn screen_mail(
        &self,
        mail: &StoredMail<'_>,
        routed: bool,
        mode: Mode,
    ) -> Result<Screening, HandlerError> {
        let event = &mail.info.verdicts;
        // An ordinary invocation's event is SES's own word, whatever it holds.
        if MailVerdicts::known(event) || mode == Mode::Normal {
            if mode == Mode::Normal && MailVerdicts::flagged(event) {
                self.keep_verdicts(mail).await;
            }
            return Ok(self.config.verdict_policy.screen(event));
        }
        if !routed {
            return Ok(Screening::Post(Vec::new()));
        }
        let (verdicts, source) = self.recover_verdicts(mail).await?;
        let message_id = mail.ses_id();
        let screening = self.config.verdict_policy.screen(&verdicts);
        match source {
            VerdictSource::Unknown => tracing::warn!(
                message_id,
                "SES's verdicts are unknown (no verdict record, and no SES field on the stored mail); \
                 screened as a mail SES did not flag"
            ),
            _ => tracing::info!(
                message_id,
                source = source.describe(),
                virus = verdicts.virus,
                spam = verdicts.spam,
                dmarc = verdicts.dmarc,
                dmarc_policy = verdicts.dmarc_policy,
                "SES's verdicts recovered for the routes without a record"
            ),
        }
        Ok(screening)
    }

    /// Writes the mail's verdict record (first writer wins). A failure is logged, not
    /// fatal: SES's fields on the stored mail remain.
    async fn keep_verdicts(&self, mail: &StoredMail<'_>) {
        let message_id = mail.ses_id();
        let record = MailVerdicts::new(&mail.info.verdicts, epoch_ms());
        let key = MailVerdicts::key(message_id);
        let written = within(mail.time_left(), self.records.create(&key, &record.to_text())).await;
        let error = match written {
            Ok(Ok(_)) => return,
            Ok(Err(error)) => error.to_string(),
            Err(Stop(why)) => why,
        };
        tracing::warn!(
            message_id,
            key,
            error,
            "SES's verdicts not recorded for the mail; a replay by message id reads SES's fields on the stored mail"
        );
    }

    /// Steps 3 to 5 of the module doc.
    async fn recover_verdicts(&self, mail: &StoredMail<'_>) -> Result<(Verdicts, VerdictSource), HandlerError> {
        let message_id = mail.ses_id();
        let key = MailVerdicts::key(message_id);
        let found = match within(mail.time_left(), self.records.find_versioned(&key)).await {
            Ok(Ok(found)) => found,
            // Unknown is not "clean": nothing is posted until the record can be read.
            Ok(Err(source)) => {
                return Err(HandlerError::Store {
                    message_id: message_id.to_string(),
                    source,
                })
            }
            Err(Stop(_)) => {
                return Err(HandlerError::Deadline {
                    message_id: message_id.to_string(),
                })
            }
        };
        match found.map(|(text, _)| MailVerdicts::from_text(&text)) {
            Some(Some(record)) => return Ok((record.verdicts(), VerdictSource::MailRecord)),
            Some(None) => tracing::warn!(
                message_id,
                key,
                "the mail's verdict record is unreadable; reading SES's fields on the stored mail"
            ),
            None => {}
        }
        let spool = mail.spool.get_or_try_init(|| self.fetch(mail)).await?;
        let ses = &spool.summary().ses;
        if ses.is_empty() {
            return Ok((Verdicts::default(), VerdictSource::Unknown));
        }
        let dmarc = ses.dmarc.clone().unwrap_or_default();
        let dmarc_policy = match &ses.dmarc_policy {
            Some(policy) => Some(policy.clone()),
            None if dmarc == "FAIL" => {
                tracing::warn!(
                    message_id,
                    "DMARC failed and SES's field names no policy: taken as a reject \
                     (rt-mailgate-replay --post-screened-mail posts it)"
                );
                Some("REJECT".to_string())
            }
            None => None,
        };
        let verdicts = Verdicts {
            virus: ses.virus.clone().unwrap_or_default(),
            spam: ses.spam.clone().unwrap_or_default(),
            dmarc,
            dmarc_policy,
        };
        Ok((verdicts, VerdictSource::StoredHeader))
    }
}
