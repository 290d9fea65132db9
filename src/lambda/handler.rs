//! One invocation: an SES receipt event names a mail (by message id) and its envelope
//! recipients. Each recipient is routed; the mail is read once from the store and posted
//! once per distinct route; each outcome is logged as one JSON line (message id,
//! recipients, route, RT's verdict, bytes, milliseconds).
//!
//! The invocation fails (so Lambda retries it, then hands it to the on-failure
//! destination) only when a delivery may succeed later; RT's permanent refusals and
//! unrouted recipients are logged and do not fail it.

use std::time::{Duration, Instant};

use aws_lambda_events::event::ses::SimpleEmailEvent;
use serde_json::{json, Value};

use crate::aws::records::DeliveryRecords;
use crate::aws::s3::{MailStore, StoreError};
use crate::core::reply::Verdict;
use crate::core::route::PlannedDelivery;
use crate::lambda::config::LambdaConfig;
use crate::rt::MailGateway;
use crate::spool::Spool;

/// SES writes this object when a rule is created; it is not a mail.
pub const SES_SETUP_NOTIFICATION: &str = "AMAZON_SES_SETUP_NOTIFICATION";

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
    /// Posts RT refused for good.
    pub rejected: usize,
    /// Recipients with no route.
    pub unrouted: usize,
    /// Posts skipped because a delivery record shows an earlier invocation made them.
    pub already_delivered: usize,
}

/// Work stops this long before the function's deadline, so a slow RT ends in a clean
/// retry rather than a process killed mid-post.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// The function's work, with its adapters.
pub struct Handler<S, R, G> {
    config: LambdaConfig,
    store: S,
    records: R,
    gateway: G,
}

impl<S: MailStore, R: DeliveryRecords, G: MailGateway> Handler<S, R, G> {
    /// A handler with its configuration and adapters.
    pub fn new(config: LambdaConfig, store: S, records: R, gateway: G) -> Self {
        Self {
            config,
            store,
            records,
            gateway,
        }
    }

    /// Handles one invocation payload; the JSON answer is SES's disposition for a
    /// `RequestResponse` invocation, else a summary. Work that can't finish before
    /// `deadline` is left for Lambda's retry.
    pub async fn handle(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        let event: SimpleEmailEvent =
            serde_json::from_value(payload).map_err(|e| HandlerError::MalformedEvent(e.to_string()))?;
        if event.records.is_empty() {
            return Err(HandlerError::MalformedEvent("no Records".into()));
        }
        let mut summary = Summary::default();
        let mut synchronous = false;
        for record in &event.records {
            let receipt = &record.ses.receipt;
            synchronous |= receipt.action.invocation_type.as_deref() == Some("RequestResponse");
            let message_id = record
                .ses
                .mail
                .message_id
                .clone()
                .filter(|id| !id.is_empty())
                .ok_or_else(|| HandlerError::MalformedEvent("a record has no mail.messageId".into()))?;
            let counted = self.deliver_mail(&message_id, &receipt.recipients, deadline).await?;
            summary.delivered += counted.delivered;
            summary.rejected += counted.rejected;
            summary.unrouted += counted.unrouted;
            summary.already_delivered += counted.already_delivered;
        }
        Ok(if synchronous {
            json!({ "disposition": self.config.disposition })
        } else {
            json!(summary)
        })
    }

    /// Routes, fetches and posts one mail, skipping posts an earlier invocation made.
    pub async fn deliver_mail(
        &self,
        message_id: &str,
        recipients: &[String],
        deadline: Option<Instant>,
    ) -> Result<Summary, HandlerError> {
        let mut summary = Summary::default();
        if message_id == SES_SETUP_NOTIFICATION {
            tracing::info!(message_id, outcome = "skipped", "SES setup notification, not a mail");
            return Ok(summary);
        }
        let plan = self.config.routes.plan(recipients);
        for recipient in &plan.unrouted {
            summary.unrouted += 1;
            tracing::warn!(
                message_id,
                recipient,
                outcome = "unrouted",
                "no route for this recipient; not posted"
            );
        }
        let mut spool: Option<Spool> = None;
        let mut failures = Vec::new();
        for delivery in &plan.deliveries {
            let route = delivery.route.entry.as_str();
            let fingerprint = delivery.route.request.fingerprint();
            match self.records.find(message_id, &fingerprint).await {
                Ok(Some(earlier)) => {
                    summary.already_delivered += 1;
                    tracing::info!(
                        message_id,
                        route,
                        earlier,
                        outcome = "already-delivered",
                        "posted by an earlier invocation; not posted again"
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
                let key = self.config.object_key(message_id);
                let fetched = self
                    .store
                    .fetch(&key, self.config.line_endings)
                    .await
                    .map_err(|source| {
                        tracing::error!(message_id, key, error = %source, outcome = "retry", "mail could not be read");
                        HandlerError::Store {
                            message_id: message_id.to_string(),
                            source,
                        }
                    })?;
                if fetched.is_blank() {
                    // As the CLI: nothing to post. Logged, never silently dropped.
                    tracing::warn!(
                        message_id,
                        key,
                        outcome = "empty",
                        "stored mail holds no message; nothing posted"
                    );
                    return Ok(summary);
                }
                spool = Some(fetched);
            }
            let Some(mail) = spool.as_ref() else { continue };
            let verdict = self
                .post(message_id, delivery, mail, remaining.map(|r| r - DEADLINE_MARGIN / 2))
                .await;
            match verdict {
                Verdict::Delivered => summary.delivered += 1,
                Verdict::Rejected => summary.rejected += 1,
                Verdict::Retry => {
                    failures.push(route.to_string());
                    continue;
                }
            }
            let outcome = if verdict == Verdict::Delivered {
                "delivered"
            } else {
                "rejected"
            };
            if let Err(error) = self.records.record(message_id, &fingerprint, outcome).await {
                tracing::error!(message_id, route, error = %error, "delivery record not written; a retry of this mail may post it again");
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

    async fn post(
        &self,
        message_id: &str,
        delivery: &PlannedDelivery,
        spool: &Spool,
        limit: Option<Duration>,
    ) -> Verdict {
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
        let fields = format!("{:?}", delivery.route.request.form_fields());
        match result {
            Ok(answer) => {
                let verdict = answer.verdict();
                let outcome = match verdict {
                    Verdict::Delivered => "delivered",
                    Verdict::Rejected => "rejected",
                    Verdict::Retry => "retry",
                };
                let rt = answer.summary();
                if verdict == Verdict::Delivered {
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
                verdict
            }
            Err(failure) => {
                let rt = failure.to_string();
                tracing::warn!(
                    message_id,
                    recipients,
                    route,
                    fields,
                    outcome = "retry",
                    rt,
                    bytes,
                    ms,
                    "delivery outcome"
                );
                failure.verdict()
            }
        }
    }
}
