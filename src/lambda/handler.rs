//! One invocation: an SES receipt event names a mail (by message id) and its envelope
//! recipients. Each recipient is routed; the mail is read once from the store and posted
//! once per distinct route; each outcome is logged as one JSON line (message id,
//! recipients, route, RT's verdict, bytes, milliseconds).
//!
//! The invocation fails (so Lambda retries it, then hands it to the on-failure
//! destination) only when a delivery may succeed later; RT's permanent refusals and
//! unrouted recipients are logged and do not fail it.

use std::time::Instant;

use aws_lambda_events::event::ses::SimpleEmailEvent;
use serde_json::{json, Value};

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
}

/// The function's work, with its adapters.
pub struct Handler<S, G> {
    config: LambdaConfig,
    store: S,
    gateway: G,
}

impl<S: MailStore, G: MailGateway> Handler<S, G> {
    /// A handler with its configuration and adapters.
    pub fn new(config: LambdaConfig, store: S, gateway: G) -> Self {
        Self { config, store, gateway }
    }

    /// Handles one invocation payload; the JSON answer is SES's disposition for a
    /// `RequestResponse` invocation, else a summary.
    pub async fn handle(&self, payload: Value) -> Result<Value, HandlerError> {
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
            let counted = self.deliver_mail(&message_id, &receipt.recipients).await?;
            summary.delivered += counted.delivered;
            summary.rejected += counted.rejected;
            summary.unrouted += counted.unrouted;
        }
        Ok(if synchronous {
            json!({ "disposition": self.config.disposition })
        } else {
            json!(summary)
        })
    }

    /// Routes, fetches and posts one mail.
    pub async fn deliver_mail(&self, message_id: &str, recipients: &[String]) -> Result<Summary, HandlerError> {
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
        if plan.deliveries.is_empty() {
            return Ok(summary);
        }
        let key = self.config.object_key(message_id);
        let spool = self
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
        if spool.is_blank() {
            // As the CLI: nothing to post. Logged, never silently dropped.
            tracing::warn!(
                message_id,
                key,
                outcome = "empty",
                "stored mail holds no message; nothing posted"
            );
            return Ok(summary);
        }
        let mut failures = Vec::new();
        for delivery in &plan.deliveries {
            match self.post(message_id, delivery, &spool).await {
                Verdict::Delivered => summary.delivered += 1,
                Verdict::Rejected => summary.rejected += 1,
                Verdict::Retry => failures.push(delivery.route.entry.clone()),
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

    async fn post(&self, message_id: &str, delivery: &PlannedDelivery, spool: &Spool) -> Verdict {
        let started = Instant::now();
        let result = self.gateway.post(&delivery.route.request, spool).await;
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
