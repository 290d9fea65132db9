//! The mail store: SES's S3 action writes each raw mail to `prefix + messageId`; the
//! Lambda reads it back, streaming it into a spool (never whole into memory).

use std::future::Future;

use aws_sdk_s3::error::ProvideErrorMetadata;

use crate::spool::{LineEndings, Spool, SpoolError};

/// Why a stored mail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No object at that key (wrong `MAIL_PREFIX`, or the S3 action did not run).
    #[error("mail s3://{bucket}/{key} does not exist (check MAIL_PREFIX and the receipt rule's S3 action)")]
    Missing {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The function may not read it (IAM policy, KMS key).
    #[error("access to s3://{bucket}/{key} denied (check the function's IAM policy)")]
    Denied {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// S3 could not be reached or answered an error.
    #[error("reading s3://{bucket}/{key} failed: {reason}")]
    Unavailable {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The SDK's words.
        reason: String,
    },
    /// The download broke off or the local disk is full.
    #[error("spooling s3://{bucket}/{key}: {source}")]
    Spool {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The cause.
        #[source]
        source: SpoolError,
    },
}

/// Where raw mails are kept.
pub trait MailStore {
    /// Streams the mail at `key` into a local spool.
    fn fetch(&self, key: &str, line_endings: LineEndings) -> impl Future<Output = Result<Spool, StoreError>> + Send;
}

/// The S3 bucket SES writes to.
#[derive(Debug, Clone)]
pub struct S3MailStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3MailStore {
    /// A store for `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

impl MailStore for S3MailStore {
    async fn fetch(&self, key: &str, line_endings: LineEndings) -> Result<Spool, StoreError> {
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        let object = match self.client.get_object().bucket(&bucket).key(&key).send().await {
            Ok(object) => object,
            Err(err) => {
                let missing = err.as_service_error().is_some_and(|e| e.is_no_such_key());
                let code = err
                    .as_service_error()
                    .and_then(|e| e.code())
                    .unwrap_or_default()
                    .to_string();
                let status = err.raw_response().map(|r| r.status().as_u16());
                return Err(if missing || code == "NoSuchKey" || status == Some(404) {
                    StoreError::Missing { bucket, key }
                } else if code == "AccessDenied" || status == Some(403) {
                    StoreError::Denied { bucket, key }
                } else {
                    let reason = format!("{}", aws_sdk_s3::error::DisplayErrorContext(&err));
                    StoreError::Unavailable { bucket, key, reason }
                });
            }
        };
        let reader = Box::pin(object.body.into_async_read());
        Spool::from_reader(reader, line_endings)
            .await
            .map_err(|source| StoreError::Spool { bucket, key, source })
    }
}
