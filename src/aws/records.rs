//! Delivery records: one small S3 object per (message id, post) that RT accepted or
//! refused for good, so a retried or duplicated invocation never posts a route twice.
//! Written with `If-None-Match: *` (a conditional write): the first record wins and is
//! never overwritten.
//!
//! Known limit: if RT took a mail but its answer was lost (connection cut after RT
//! committed), no record is written and the retry posts again. Only RT could tell.

use std::future::Future;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use crate::aws::s3::StoreError;

/// Where delivery records (and notice rate-limit marks) are kept: small write-once
/// objects named by key.
pub trait DeliveryRecords {
    /// The record at `key`, if one exists.
    fn find(&self, key: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Writes `value` at `key` unless a record is already there; true when this call
    /// created it.
    fn create(&self, key: &str, value: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Records in the mail bucket under a prefix (`delivery-records/` by default).
#[derive(Debug, Clone)]
pub struct S3DeliveryRecords {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3DeliveryRecords {
    /// Records in `bucket` under `prefix`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn unavailable(&self, key: String, reason: String) -> StoreError {
        StoreError::Unavailable {
            bucket: self.bucket.clone(),
            key,
            reason,
        }
    }
}

impl DeliveryRecords for S3DeliveryRecords {
    async fn find(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = self.key(key);
        match self.client.get_object().bucket(&self.bucket).key(&key).send().await {
            Ok(object) => {
                let body = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.unavailable(key.clone(), e.to_string()))?;
                Ok(Some(String::from_utf8_lossy(&body.into_bytes()).into_owned()))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(err) => Err(self.unavailable(key, aws_sdk_s3::error::DisplayErrorContext(&err).to_string())),
        }
    }

    async fn create(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let key = self.key(key);
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("text/plain")
            .body(ByteStream::from(value.as_bytes().to_vec()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            // Someone recorded it first: it is recorded either way.
            Err(err) if err.as_service_error().and_then(|e| e.code()) == Some("PreconditionFailed") => Ok(false),
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            Err(err) => Err(self.unavailable(key, aws_sdk_s3::error::DisplayErrorContext(&err).to_string())),
        }
    }
}
