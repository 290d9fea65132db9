//! The records store: small S3 objects next to the mail, written only conditionally.
//! One per route of a mail ([`crate::core::route_record`]: the lease, "settled?" and
//! the outcome at once), one per mail SES flagged (its verdicts,
//! [`crate::core::route_record::MailVerdicts`]) and the notice windows
//! ([`crate::core::rate_limit`]).
//!
//! A record is created with `If-None-Match: *` (the first writer wins) and changed with
//! `If-Match` on the version (ETag) it was read or last written at, so two invocations
//! can't both take a route. Each write answers the new version, so a holder renews its
//! lease without reading it again. S3 answers 409 (ConditionalRequestConflict) when two
//! conditional writes race; AWS says to retry, and we do, a few times.

use std::future::Future;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

use crate::aws::s3::StoreError;

/// Where the records live in the bucket when `RECORDS_PREFIX` does not say.
pub const DEFAULT_RECORDS_PREFIX: &str = "delivery-records/";

/// Where route records (and notice rate-limit marks) are kept: small objects named by
/// key, changed only conditionally.
pub trait DeliveryRecords {
    /// The record at `key` and its version, if one exists.
    fn find_versioned(&self, key: &str) -> impl Future<Output = Result<Option<(String, String)>, StoreError>> + Send;
    /// Writes `value` at `key` unless a record is already there: its new version when
    /// this call created it, `None` when one was there.
    fn create(&self, key: &str, value: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Replaces the record at `key` if it is still at `version`: the new version when it
    /// was, `None` when it had changed.
    fn replace(
        &self,
        key: &str,
        value: &str,
        version: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Writes the trace's index entry `key` (see [`crate::core::mail_index`]): a plain
    /// write, as an entry is the same whoever writes it. Stores without an index (the
    /// unit tests' stand-ins) keep nothing.
    fn write_index(&self, key: &str, value: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (key, value);
        async { Ok(()) }
    }
}

/// How often a conditional write that met a concurrent one (409) is tried again.
const CONFLICT_RETRIES: u32 = 3;

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

    /// The same bucket, listed (full keys, the records prefix included): what the
    /// held-mail daily run reads.
    pub fn index(&self) -> crate::aws::record_index::S3RecordIndex {
        crate::aws::record_index::S3RecordIndex::new(self.client.clone(), self.bucket.clone())
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

/// The answer to a conditional write.
enum Conditional {
    /// Written; the new version (ETag).
    Written(String),
    /// 412: the condition does not hold (someone else wrote first).
    Refused,
    /// 409: a concurrent conditional write; try again.
    Conflict,
}

impl S3DeliveryRecords {
    /// One conditional PUT: `If-None-Match: *` when `version` is `None`, else `If-Match`.
    async fn put_if(&self, key: &str, value: &str, version: Option<&str>) -> Result<Conditional, StoreError> {
        let put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_none_match(version.is_none().then(|| "*".to_string()))
            .set_if_match(version.map(str::to_string))
            .content_type("text/plain")
            .body(ByteStream::from(value.as_bytes().to_vec()))
            .send()
            .await;
        match put {
            Ok(output) => Ok(Conditional::Written(output.e_tag().unwrap_or_default().to_string())),
            Err(err) if err.as_service_error().and_then(|e| e.code()) == Some("PreconditionFailed") => {
                Ok(Conditional::Refused)
            }
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(Conditional::Refused),
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 409) => Ok(Conditional::Conflict),
            Err(err) => Err(self.unavailable(
                key.to_string(),
                aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
            )),
        }
    }

    /// A conditional PUT, tried again on 409 as AWS documents.
    async fn write_if(&self, key: &str, value: &str, version: Option<&str>) -> Result<Option<String>, StoreError> {
        let key = self.key(key);
        for attempt in 0..=CONFLICT_RETRIES {
            match self.put_if(&key, value, version).await? {
                Conditional::Written(version) => return Ok(Some(version)),
                Conditional::Refused => return Ok(None),
                Conditional::Conflict if attempt < CONFLICT_RETRIES => {
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
                Conditional::Conflict => {}
            }
        }
        Err(self.unavailable(key, "409 ConditionalRequestConflict, still after retries".into()))
    }
}

impl DeliveryRecords for S3DeliveryRecords {
    async fn find_versioned(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
        let key = self.key(key);
        match self.client.get_object().bucket(&self.bucket).key(&key).send().await {
            Ok(object) => {
                let version = object.e_tag().unwrap_or_default().to_string();
                let body = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.unavailable(key.clone(), e.to_string()))?;
                Ok(Some((
                    String::from_utf8_lossy(&body.into_bytes()).into_owned(),
                    version,
                )))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(err) => Err(self.unavailable(key, aws_sdk_s3::error::DisplayErrorContext(&err).to_string())),
        }
    }

    async fn create(&self, key: &str, value: &str) -> Result<Option<String>, StoreError> {
        self.write_if(key, value, None).await
    }

    async fn replace(&self, key: &str, value: &str, version: &str) -> Result<Option<String>, StoreError> {
        self.write_if(key, value, Some(version)).await
    }

    async fn write_index(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let key = self.key(key);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(value.as_bytes().to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|err| self.unavailable(key, aws_sdk_s3::error::DisplayErrorContext(&err).to_string()))
    }
}
