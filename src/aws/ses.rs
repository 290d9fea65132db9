//! Notices through Amazon SES (SESv2 `SendEmail` with a raw MIME message built by
//! [`mime_message`]: our own `Auto-Submitted` header; SESv2 has no bounce call), behind
//! the small [`Notifier`] trait.

use std::future::Future;

use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{EmailContent, RawMessage};

use crate::core::notice::{mime_message, NoticeText};

/// A notice could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("notice to {to} not sent: {reason}")]
pub struct NoticeError {
    /// The recipient.
    pub to: String,
    /// The SDK's words.
    pub reason: String,
}

/// Sends notices.
pub trait Notifier {
    /// Sends one notice.
    fn send(&self, notice: &NoticeText) -> impl Future<Output = Result<(), NoticeError>> + Send;
}

/// Notices sent through SESv2 from a verified address.
#[derive(Debug, Clone)]
pub struct SesNotifier {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesNotifier {
    /// Sends from `from` (an SES-verified identity).
    pub fn new(client: aws_sdk_sesv2::Client, from: impl Into<String>) -> Self {
        Self {
            client,
            from: from.into(),
        }
    }
}

impl Notifier for SesNotifier {
    async fn send(&self, notice: &NoticeText) -> Result<(), NoticeError> {
        let raw = mime_message(&self.from, notice, chrono::Utc::now().timestamp());
        let err = |reason: String| NoticeError {
            to: notice.to.clone(),
            reason,
        };
        let message = RawMessage::builder()
            .data(Blob::new(raw))
            .build()
            .map_err(|e| err(e.to_string()))?;
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                aws_sdk_sesv2::types::Destination::builder()
                    .to_addresses(&notice.to)
                    .build(),
            )
            .content(EmailContent::builder().raw(message).build())
            .send()
            .await
            .map_err(|e| err(aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }
}

/// `None`: notices are off (no operator address and no sender notices configured).
impl<T: Notifier + Sync> Notifier for Option<T> {
    async fn send(&self, notice: &NoticeText) -> Result<(), NoticeError> {
        match self {
            Some(notifier) => notifier.send(notice).await,
            None => Ok(()),
        }
    }
}
