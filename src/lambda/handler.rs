//! One invocation: an SES receipt event names a mail (by message id) and its envelope
//! recipients. The mail is screened (SES's verdicts), each recipient is routed, the mail
//! is read once from the store and posted once per distinct route, and each outcome is
//! decided by the one outcome table ([`crate::core::outcome`]) and logged as one JSON line
//! (message id, recipients, route, RT's answer, bytes, milliseconds).
//!
//! - Delivered or refused posts get a delivery record: a retried or duplicated
//!   invocation never posts them again.
//! - Given-up posts get a given-up record and notices (operator; sender when allowed).
//! - The invocation fails, so Lambda retries it and finally hands it to the dead-letter
//!   queue, only when something may succeed later.

use std::time::{Duration, Instant};

use aws_lambda_events::event::ses::{SimpleEmailEvent, SimpleEmailService};
use serde_json::{json, Value};

use crate::aws::records::DeliveryRecords;
use crate::aws::s3::{MailStore, StoreError};
use crate::aws::ses::Notifier;
use crate::core::headers::MailSummary;
use crate::core::notice::{operator_notice, sender_notice, GivenUpMail};
use crate::core::outcome::{decide, sender_may_be_told, Case, Decision, Notice, Screening, SenderFacts, Verdicts};
use crate::core::route::PlannedDelivery;
use crate::lambda::config::LambdaConfig;
use crate::lambda::events::{body_mails, mails_in, EventShape};
use crate::rt::MailGateway;
use crate::spool::Spool;

/// SES writes this object when a rule is created; it is not a mail.
pub const SES_SETUP_NOTIFICATION: &str = "AMAZON_SES_SETUP_NOTIFICATION";

/// Work stops this long before the function's deadline, so a slow RT ends in a clean
/// retry rather than a process killed mid-post.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not an SES receipt event.
    #[error("not an SES receipt-rule event: {0}")]
    MalformedEvent(String),
    /// The mail could not be read from the store.
    #[error("message {message_id}: {source}")]
    Store {
        /// SES's message id.
        message_id: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// Some deliveries failed in a way a retry may fix.
    #[error("message {message_id}: {failed} of {total} deliveries will be retried: {details}")]
    Retry {
        /// SES's message id.
        message_id: String,
        /// How many posts failed.
        failed: usize,
        /// How many posts were planned.
        total: usize,
        /// Route and reason for each failure.
        details: String,
    },
}

impl HandlerError {
    /// A short name for the Lambda error type (shown in the DLQ / on-failure record).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MalformedEvent(_) => "MalformedEvent",
            Self::Store { .. } => "MailNotReadable",
            Self::Retry { .. } => "DeliveryWillBeRetried",
        }
    }
}

/// What one invocation did, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Posts RT took.
    pub delivered: usize,
    /// Posts RT refused for good (`not ok`).
    pub rejected: usize,
    /// Posts given up (misroute, too large, virus, spam, DMARC), with notices.
    pub given_up: usize,
    /// Recipients with no route.
    pub unrouted: usize,
    /// Posts skipped because a record shows an earlier invocation settled them.
    pub already_delivered: usize,
}

impl std::ops::AddAssign for Summary {
    fn add_assign(&mut self, other: Self) {
        self.delivered += other.delivered;
        self.rejected += other.rejected;
        self.given_up += other.given_up;
        self.unrouted += other.unrouted;
        self.already_delivered += other.already_delivered;
    }
}

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
    /// The S3 key when the event names it (an S3 action's notification); else
    /// `MAIL_PREFIX + ses_id`.
    pub object_key: Option<String>,
}

impl MailInfo {
    /// Reads the mail's facts from an SES record.
    pub fn from_ses(ses: &SimpleEmailService) -> Result<Self, HandlerError> {
        let receipt = &ses.receipt;
        let status = |v: &aws_lambda_events::event::ses::SimpleEmailVerdict| v.status.clone().unwrap_or_default();
        let pass = |v: &aws_lambda_events::event::ses::SimpleEmailVerdict| status(v).eq_ignore_ascii_case("PASS");
        Ok(Self {
            ses_id: ses
                .mail
                .message_id
                .clone()
                .filter(|id| !id.is_empty())
                .ok_or_else(|| HandlerError::MalformedEvent("a record has no mail.messageId".into()))?,
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
            object_key: receipt.action.object_key.clone().filter(|k| !k.is_empty()),
        })
    }
}

/// Whether earlier give-ups are honoured (a normal invocation) or retried (a replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Skip posts that were delivered, refused or given up before.
    Normal,
    /// Skip only posts that were delivered or refused: an admin fixed the cause.
    Replay,
}

/// The function's work, with its adapters.
pub struct Handler<S, R, G, N> {
    config: LambdaConfig,
    store: S,
    records: R,
    gateway: G,
    notifier: N,
}

impl<S: MailStore, R: DeliveryRecords, G: MailGateway, N: Notifier> Handler<S, R, G, N> {
    /// A handler with its configuration and adapters.
    pub fn new(config: LambdaConfig, store: S, records: R, gateway: G, notifier: N) -> Self {
        Self {
            config,
            store,
            records,
            gateway,
            notifier,
        }
    }

    /// Handles one invocation payload, whatever its shape:
    /// - an SES receipt event (the Lambda action): the answer is SES's disposition for a
    ///   `RequestResponse` invocation, else a summary;
    /// - an SQS batch (the buffered path: S3 action → SNS → SQS): the answer reports the
    ///   messages to retry (`batchItemFailures`), so one bad mail does not hold the rest;
    /// - an SNS event (S3 action → SNS → the function).
    ///
    /// Work that can't finish before `deadline` is left for a retry.
    pub async fn handle(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        match EventShape::of(&payload) {
            EventShape::Ses => self.handle_ses(payload, deadline).await,
            EventShape::Sqs => self.handle_sqs(payload, deadline).await,
            EventShape::Sns => self.handle_sns(payload, deadline).await,
            EventShape::Unknown(what) => Err(HandlerError::MalformedEvent(what)),
        }
    }

    async fn handle_ses(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        let event: SimpleEmailEvent =
            serde_json::from_value(payload).map_err(|e| HandlerError::MalformedEvent(e.to_string()))?;
        let mut summary = Summary::default();
        let mut synchronous = false;
        for record in &event.records {
            synchronous |= record.ses.receipt.action.invocation_type.as_deref() == Some("RequestResponse");
            let mail = MailInfo::from_ses(&record.ses)?;
            summary += self.deliver_mail(&mail, deadline, Mode::Normal).await?;
        }
        Ok(if synchronous {
            json!({ "disposition": self.config.disposition })
        } else {
            json!(summary)
        })
    }

    async fn handle_sqs(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        let records = payload["Records"].as_array().cloned().unwrap_or_default();
        let mut failures = Vec::new();
        for record in records {
            let item = record["messageId"].as_str().unwrap_or_default().to_string();
            if let Err(error) = self
                .deliver_body(record["body"].as_str().unwrap_or_default(), deadline)
                .await
            {
                // Left on the queue: retried after the visibility timeout, then dead-lettered.
                tracing::warn!(sqs_message_id = item, error = %error, kind = error.kind(), "batch item will be retried");
                failures.push(json!({ "itemIdentifier": item }));
            }
        }
        Ok(json!({ "batchItemFailures": failures }))
    }

    /// Delivers every mail one queued message body names.
    async fn deliver_body(&self, body: &str, deadline: Option<Instant>) -> Result<(), HandlerError> {
        for mail in body_mails(body)? {
            self.deliver_mail(&mail, deadline, Mode::Normal).await?;
        }
        Ok(())
    }

    async fn handle_sns(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        let mut summary = Summary::default();
        for mail in mails_in(&payload)? {
            summary += self.deliver_mail(&mail, deadline, Mode::Normal).await?;
        }
        Ok(json!(summary))
    }

    /// Screens, routes, fetches and posts one mail.
    pub async fn deliver_mail(
        &self,
        mail: &MailInfo,
        deadline: Option<Instant>,
        mode: Mode,
    ) -> Result<Summary, HandlerError> {
        let mut summary = Summary::default();
        let message_id = mail.ses_id.as_str();
        if message_id == SES_SETUP_NOTIFICATION {
            tracing::info!(message_id, outcome = "skipped", "SES setup notification, not a mail");
            return Ok(summary);
        }
        let plan = self.config.routes.plan(&mail.recipients);
        for recipient in &plan.unrouted {
            summary.unrouted += 1;
            tracing::warn!(
                message_id,
                recipient,
                outcome = "unrouted",
                "no route for this recipient; not posted"
            );
        }
        let screening = match mode {
            Mode::Normal => self.config.verdict_policy.screen(&mail.verdicts),
            Mode::Replay => Screening::Post(Vec::new()),
        };
        let mut spool: Option<Spool> = None;
        let mut failures = Vec::new();
        for delivery in &plan.deliveries {
            let mut delivery = delivery.clone();
            if let Screening::Post(tag) = &screening {
                delivery.route.request.extra_headers.clone_from(tag);
            }
            let route = delivery.route.entry.clone();
            let fingerprint = delivery.route.request.fingerprint();
            let (done_key, given_up_key) = (
                format!("{message_id}/{fingerprint}"),
                format!("{message_id}/{fingerprint}.given-up"),
            );
            match self.settled_before(&done_key, &given_up_key, mode).await {
                Ok(Some(earlier)) => {
                    summary.already_delivered += 1;
                    tracing::info!(
                        message_id,
                        route,
                        earlier,
                        outcome = "already-delivered",
                        "settled by an earlier invocation; not posted again"
                    );
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    // Unknown is not "not delivered": retry later rather than risk a duplicate.
                    tracing::warn!(message_id, route, error = %error, outcome = "retry", "delivery record unreadable");
                    failures.push(format!("{route} (delivery record unreadable)"));
                    continue;
                }
            }
            let case = if let Screening::Drop(case) = screening {
                tracing::warn!(message_id, route, outcome = case.decision_word(), case = ?case, "dropped by the verdict policy; not posted");
                case
            } else {
                let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                if remaining.is_some_and(|r| r <= DEADLINE_MARGIN) {
                    tracing::warn!(
                        message_id,
                        route,
                        outcome = "retry",
                        "too close to the function's deadline; left for the retry"
                    );
                    failures.push(format!("{route} (deadline)"));
                    continue;
                }
                if spool.is_none() {
                    let fetched = self.fetch(mail).await?;
                    if fetched.is_blank() {
                        // As the CLI: nothing to post. Logged, never silently dropped.
                        tracing::warn!(
                            message_id,
                            outcome = "empty",
                            "stored mail holds no message; nothing posted"
                        );
                        return Ok(summary);
                    }
                    spool = Some(fetched);
                }
                let Some(stored) = spool.as_ref() else { continue };
                if self.config.max_mail_bytes.is_some_and(|max| stored.len() > max) {
                    tracing::warn!(
                        message_id,
                        route,
                        bytes = stored.len(),
                        outcome = "given-up",
                        "mail larger than MAX_MAIL_BYTES"
                    );
                    Case::MailTooLarge
                } else {
                    self.post(
                        message_id,
                        &delivery,
                        stored,
                        remaining.map(|r| r - DEADLINE_MARGIN / 2),
                    )
                    .await
                }
            };
            if matches!(case, Case::RtOk | Case::RtNotOk) {
                // RT settled it: record it so no retry posts it again.
                if case == Case::RtOk {
                    summary.delivered += 1;
                } else {
                    summary.rejected += 1;
                }
                self.write_record(message_id, &route, &done_key, case.decision_word())
                    .await;
            }
            match decide(case) {
                Decision::Delivered => {}
                Decision::Retry => failures.push(format!("{route} ({case:?})")),
                Decision::GiveUp(notice) if case == Case::RtNotOk => {
                    self.notify(mail, spool.as_ref(), &delivery, case, notice).await;
                }
                Decision::GiveUp(notice) => {
                    summary.given_up += 1;
                    if self
                        .create_record(message_id, &route, &given_up_key, &format!("{case:?}"))
                        .await
                    {
                        self.notify(mail, spool.as_ref(), &delivery, case, notice).await;
                    }
                }
            }
        }
        if failures.is_empty() {
            Ok(summary)
        } else {
            Err(HandlerError::Retry {
                message_id: message_id.to_string(),
                failed: failures.len(),
                total: plan.deliveries.len(),
                details: failures.join(", "),
            })
        }
    }

    async fn settled_before(
        &self,
        done_key: &str,
        given_up_key: &str,
        mode: Mode,
    ) -> Result<Option<String>, StoreError> {
        if let Some(earlier) = self.records.find(done_key).await? {
            return Ok(Some(earlier));
        }
        match mode {
            Mode::Normal => Ok(self
                .records
                .find(given_up_key)
                .await?
                .map(|why| format!("given up: {why}"))),
            Mode::Replay => Ok(None),
        }
    }

    async fn fetch(&self, mail: &MailInfo) -> Result<Spool, HandlerError> {
        let message_id = mail.ses_id.as_str();
        let key = self
            .config
            .mail_key(message_id, mail.object_key.as_deref())
            .map_err(|reason| {
                tracing::error!(message_id, reason, outcome = "retry", "refused to read the mail");
                HandlerError::MalformedEvent(reason)
            })?;
        self.store
            .fetch(&key, self.config.line_endings)
            .await
            .map_err(|source| {
                tracing::error!(message_id, key, error = %source, outcome = "retry", "mail could not be read");
                HandlerError::Store {
                    message_id: message_id.to_string(),
                    source,
                }
            })
    }

    /// Writes a record; a failure is logged (the mail is settled either way).
    async fn write_record(&self, message_id: &str, route: &str, key: &str, value: &str) {
        if let Err(error) = self.records.create(key, value).await {
            tracing::error!(message_id, route, error = %error, "delivery record not written; a retry of this mail may post it again");
        }
    }

    /// Creates a given-up record; true when this invocation is the first to give up
    /// (so notices go out once, whatever the retries).
    async fn create_record(&self, message_id: &str, route: &str, key: &str, value: &str) -> bool {
        match self.records.create(key, value).await {
            Ok(created) => created,
            Err(error) => {
                tracing::error!(message_id, route, error = %error, "given-up record not written");
                true
            }
        }
    }

    async fn notify(
        &self,
        mail: &MailInfo,
        spool: Option<&Spool>,
        delivery: &PlannedDelivery,
        case: Case,
        notice: Notice,
    ) {
        let header = spool.map(Spool::summary).cloned().unwrap_or_else(MailSummary::default);
        let given_up = GivenUpMail {
            ses_message_id: mail.ses_id.clone(),
            message_id: header.message_id.clone(),
            subject: header.subject.clone().or_else(|| mail.subject.clone()),
            sender: mail.sender.clone(),
            recipients: delivery.recipients.clone(),
            reason: reason(case, &delivery.route.entry),
        };
        let mut notices = Vec::new();
        if let (true, Some(operator)) = (notice.operator, self.config.notices.operator.as_deref()) {
            notices.push(operator_notice(operator, &given_up));
        }
        let facts = SenderFacts {
            envelope_sender: mail.sender.clone(),
            spf_pass: mail.spf_pass,
            dkim_pass: mail.dkim_pass,
            machine_generated: header.machine_generated,
        };
        if notice.sender && self.config.notices.to_senders && sender_may_be_told(&facts) {
            // At most one notice per sender per hour: no mail storm, whatever arrives.
            let hour = chrono::Utc::now().format("%Y%m%d%H");
            let mark = format!("notices/{}/{hour}", mail.sender.to_ascii_lowercase());
            if self.records.create(&mark, &mail.ses_id).await.unwrap_or(false) {
                notices.push(sender_notice(&given_up));
            } else {
                tracing::info!(
                    message_id = mail.ses_id,
                    sender = mail.sender,
                    "sender notice rate-limited"
                );
            }
        }
        for text in notices {
            match self.notifier.send(&text).await {
                Ok(()) => tracing::info!(message_id = mail.ses_id, to = text.to, "notice sent"),
                Err(error) => tracing::error!(message_id = mail.ses_id, error = %error, "notice not sent"),
            }
        }
    }

    async fn post(&self, message_id: &str, delivery: &PlannedDelivery, spool: &Spool, limit: Option<Duration>) -> Case {
        let started = Instant::now();
        let posting = self.gateway.post(&delivery.route.request, spool);
        let result = match limit {
            None => posting.await,
            Some(limit) => tokio::time::timeout(limit, posting).await.unwrap_or_else(|_| {
                Err(crate::core::reply::TransportFailure::Timeout(
                    "stopped before the function's deadline".into(),
                ))
            }),
        };
        let ms = started.elapsed().as_millis() as u64;
        let bytes = spool.len() + delivery.route.request.message_prefix().len() as u64;
        let recipients = delivery.recipients.join(",");
        let route = delivery.route.entry.as_str();
        let fields = format!("{:?}", delivery.route.request.form_fields_text());
        let (case, rt) = match result {
            Ok(answer) => (Case::from_answer(&answer), answer.summary()),
            Err(failure) => (Case::from_transport(&failure), failure.to_string()),
        };
        let outcome = case.decision_word();
        if case == Case::RtOk {
            tracing::info!(
                message_id,
                recipients,
                route,
                fields,
                outcome,
                rt,
                bytes,
                ms,
                "delivery outcome"
            );
        } else {
            tracing::warn!(
                message_id,
                recipients,
                route,
                fields,
                outcome,
                rt,
                bytes,
                ms,
                "delivery outcome"
            );
        }
        case
    }
}

/// A sentence for the notice.
fn reason(case: Case, route: &str) -> String {
    match case {
        Case::RtNotOk => format!("RT refused the mail for good (route {route}); RT has told the sender where it could"),
        Case::RtTemporaryFailure => {
            format!("RT has no such queue or action for route {route}: fix the route or create the queue, then replay")
        }
        Case::PayloadTooLarge => "the mail is larger than the web server in front of RT accepts (HTTP 413)".to_string(),
        Case::MailTooLarge => "the mail is larger than this gateway accepts (MAX_MAIL_BYTES)".to_string(),
        Case::VirusFound => "SES found a virus in the mail".to_string(),
        Case::SpamDropped => "SES judged the mail to be spam".to_string(),
        Case::DmarcReject => "the mail failed DMARC and the sender's domain asks for rejection".to_string(),
        other => format!("{other:?} on route {route}"),
    }
}

#[cfg(test)]
mod tests {
    //! The handler's decisions with in-memory adapters: what the integration tests can't
    //! easily provoke (a deadline, a notice rate limit, an unreadable record store).
    use super::*;
    use crate::aws::ses::NoticeError;
    use crate::core::notice::NoticeText;
    use crate::core::reply::{OkDetails, RtAnswer, TransportFailure};
    use crate::core::request::GatewayRequest;
    use crate::spool::LineEndings;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    struct Store(HashMap<String, Vec<u8>>);
    impl MailStore for Store {
        async fn fetch(&self, key: &str, endings: LineEndings) -> Result<Spool, StoreError> {
            let Some(bytes) = self.0.get(key) else {
                return Err(StoreError::Missing {
                    bucket: "b".into(),
                    key: key.into(),
                });
            };
            Ok(Spool::from_reader(&bytes[..], endings).await.unwrap())
        }
    }

    #[derive(Default)]
    struct Records {
        map: Mutex<HashMap<String, String>>,
        broken: bool,
    }
    impl DeliveryRecords for Records {
        async fn find(&self, key: &str) -> Result<Option<String>, StoreError> {
            if self.broken {
                return Err(StoreError::Unavailable {
                    bucket: "b".into(),
                    key: key.into(),
                    reason: "503".into(),
                });
            }
            Ok(self.map.lock().unwrap().get(key).cloned())
        }
        async fn create(&self, key: &str, value: &str) -> Result<bool, StoreError> {
            let mut map = self.map.lock().unwrap();
            Ok(!map.contains_key(key) && map.insert(key.into(), value.into()).is_none())
        }
    }

    struct Gateway {
        posts: AtomicUsize,
        delay: Duration,
    }
    impl MailGateway for Gateway {
        async fn post(&self, _request: &GatewayRequest, _message: &Spool) -> Result<RtAnswer, TransportFailure> {
            self.posts.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(self.delay).await;
            Ok(RtAnswer::Ok(OkDetails::default()))
        }
    }

    #[derive(Default)]
    struct Outbox(Mutex<Vec<NoticeText>>);
    impl Notifier for Outbox {
        async fn send(&self, notice: &NoticeText) -> Result<(), NoticeError> {
            self.0.lock().unwrap().push(notice.clone());
            Ok(())
        }
    }

    fn handler(vars: &[(&str, &str)], records: Records, delay: Duration) -> Handler<Store, Records, Gateway, Outbox> {
        let mut env: HashMap<String, String> = [
            ("RT_URL", "http://127.0.0.1:9"),
            ("MAIL_BUCKET", "b"),
            ("ROUTES", "bugs@example.com: --queue bugs"),
            ("OPERATOR_EMAIL", "ops@example.com"),
            ("NOTICE_FROM", "rt@example.com"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = LambdaConfig::from_vars(|k| env.get(k).cloned()).unwrap();
        let mails = ["m1", "m2", "m3"].map(|id| {
            (
                id.to_string(),
                format!("From: a@c.example\nSubject: {id}\n\nhello\n").into_bytes(),
            )
        });
        let gateway = Gateway {
            posts: AtomicUsize::new(0),
            delay,
        };
        Handler::new(
            config,
            Store(mails.into_iter().collect()),
            records,
            gateway,
            Outbox::default(),
        )
    }

    fn mail(id: &str, spf_pass: bool) -> MailInfo {
        MailInfo {
            ses_id: id.into(),
            recipients: vec!["bugs@example.com".into()],
            sender: "a@c.example".into(),
            spf_pass,
            ..MailInfo::default()
        }
    }

    #[tokio::test]
    async fn near_the_deadline_nothing_is_posted_and_the_work_is_left_for_the_retry() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        let err = h
            .deliver_mail(
                &mail("m1", true),
                Some(Instant::now() + Duration::from_secs(1)),
                Mode::Normal,
            )
            .await;
        assert!(
            matches!(&err, Err(HandlerError::Retry { details, .. }) if details.contains("deadline")),
            "{err:?}"
        );
        assert_eq!(h.gateway.posts.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_slow_rt_is_abandoned_before_the_deadline_and_not_recorded() {
        let h = handler(&[], Records::default(), Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(3);
        let err = h.deliver_mail(&mail("m1", true), Some(deadline), Mode::Normal).await;
        assert!(matches!(err, Err(HandlerError::Retry { .. })), "{err:?}");
        assert!(Instant::now() < deadline, "stopped before the deadline");
        assert!(
            h.records.map.lock().unwrap().is_empty(),
            "nothing recorded as delivered"
        );
    }

    #[tokio::test]
    async fn an_unreadable_record_store_means_retry_not_a_possible_duplicate() {
        let h = handler(
            &[],
            Records {
                broken: true,
                ..Records::default()
            },
            Duration::ZERO,
        );
        assert!(h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.is_err());
        assert_eq!(h.gateway.posts.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn senders_are_told_only_when_safe_and_at_most_hourly() {
        let h = handler(
            &[("MAX_MAIL_BYTES", "10"), ("SENDER_NOTICES", "true")],
            Records::default(),
            Duration::ZERO,
        );
        for id in ["m1", "m2"] {
            let summary = h.deliver_mail(&mail(id, true), None, Mode::Normal).await.unwrap();
            assert_eq!(summary.given_up, 1);
        }
        // An unauthenticated sender is never answered (backscatter).
        h.deliver_mail(&mail("m3", false), None, Mode::Normal).await.unwrap();
        let sent = h.notifier.0.lock().unwrap().clone();
        let to: Vec<&str> = sent.iter().map(|n| n.to.as_str()).collect();
        assert_eq!(
            to,
            ["ops@example.com", "a@c.example", "ops@example.com", "ops@example.com"]
        );
        assert!(sent[1].body.contains("larger than this gateway accepts"));
        assert_eq!(h.gateway.posts.load(Ordering::Relaxed), 0);
        // A retry of a given-up mail neither posts nor notifies again.
        let again = h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        assert_eq!((again.given_up, again.already_delivered), (0, 1));
        assert_eq!(h.notifier.0.lock().unwrap().len(), 4);
    }
}
