//! Dead-letter queues (SQS), read by the replay command behind [`DeadLetters`]: a message
//! is deleted once replayed, or released (visible again) when its mails are not done.

use std::future::Future;

/// A queued message: its receipt handle (to delete it) and its body.
#[derive(Debug, Clone)]
pub struct Queued {
    /// What `DeleteMessage` needs.
    pub receipt_handle: String,
    /// The message body (a Lambda on-failure record, an SNS envelope, a notification).
    pub body: String,
}

/// Where failed events wait.
pub trait DeadLetters {
    /// Up to `max` messages (none when the queue is empty).
    fn receive(&self, max: i32) -> impl Future<Output = Result<Vec<Queued>, String>> + Send;
    /// Removes a message that was replayed.
    fn delete(&self, receipt_handle: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// Makes a kept message visible again at once (not after the visibility timeout), so
    /// the replay after the fix finds it.
    fn release(&self, receipt_handle: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// An SQS queue by URL.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsDeadLetters {
    /// The queue at `url`.
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

impl DeadLetters for SqsDeadLetters {
    async fn receive(&self, max: i32) -> Result<Vec<Queued>, String> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())?;
        Ok(output
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Queued {
                    receipt_handle: m.receipt_handle()?.to_string(),
                    body: m.body()?.to_string(),
                })
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), String> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }

    async fn release(&self, receipt_handle: &str) -> Result<(), String> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(0)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }
}
