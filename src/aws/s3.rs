//! The mail store: SES's S3 action writes each raw mail to `prefix + messageId`; the
//! Lambda reads it back, streaming it into a spool (never whole into memory).

use std::future::Future;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;

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

/// What a failed S3 GetObject means, for the readers of one object (the mail, the
/// routing table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GetFailure {
    /// 304: the object still has the ETag the request named.
    NotModified,
    /// No object at that key.
    Missing,
    /// The caller may not read it.
    Denied,
    /// Anything else, in the SDK's words.
    Unavailable(String),
}

impl GetFailure {
    /// Reads S3's answer: its status and error code.
    pub(crate) fn of(err: &SdkError<GetObjectError>) -> Self {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.as_service_error().and_then(|e| e.code()).unwrap_or_default();
        let missing = err.as_service_error().is_some_and(|e| e.is_no_such_key());
        if status == Some(304) {
            Self::NotModified
        } else if missing || code == "NoSuchKey" || status == Some(404) {
            Self::Missing
        } else if code == "AccessDenied" || status == Some(403) {
            Self::Denied
        } else {
            Self::Unavailable(aws_sdk_s3::error::DisplayErrorContext(err).to_string())
        }
    }
}

impl MailStore for S3MailStore {
    async fn fetch(&self, key: &str, line_endings: LineEndings) -> Result<Spool, StoreError> {
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        let object = match self.client.get_object().bucket(&bucket).key(&key).send().await {
            Ok(object) => object,
            Err(err) => {
                return Err(match GetFailure::of(&err) {
                    GetFailure::Missing => StoreError::Missing { bucket, key },
                    GetFailure::Denied => StoreError::Denied { bucket, key },
                    // A 304 can't come: the read names no ETag.
                    GetFailure::NotModified => StoreError::Unavailable {
                        bucket,
                        key,
                        reason: "S3 answered 304 to a read without If-None-Match".into(),
                    },
                    GetFailure::Unavailable(reason) => StoreError::Unavailable { bucket, key, reason },
                });
            }
        };
        let reader = Box::pin(object.body.into_async_read());
        Spool::from_reader(reader, line_endings)
            .await
            .map_err(|source| StoreError::Spool { bucket, key, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::primitives::SdkBody;

    fn failure(status: u16, code: Option<&str>) -> GetFailure {
        let mut meta = ErrorMetadata::builder();
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let response = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        GetFailure::of(&SdkError::service_error(
            GetObjectError::generic(meta.build()),
            response,
        ))
    }

    #[test]
    fn s3s_answer_to_a_read_is_told_apart_by_status_and_code() {
        assert_eq!(failure(304, None), GetFailure::NotModified);
        assert_eq!(failure(404, None), GetFailure::Missing);
        assert_eq!(failure(400, Some("NoSuchKey")), GetFailure::Missing);
        assert_eq!(failure(403, None), GetFailure::Denied);
        assert_eq!(failure(400, Some("AccessDenied")), GetFailure::Denied);
        assert!(
            matches!(failure(503, Some("SlowDown")), GetFailure::Unavailable(reason) if reason.contains("SlowDown"))
        );
    }
}
