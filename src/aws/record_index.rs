//! Reading route records and the trace's index by listing them (`ListObjectsV2`): what
//! the trace and the smoke test need to find a mail by sender, From, `Message-ID` or
//! time, where the delivery itself only ever reads one record by key. A listing is
//! bounded, and says when it stopped at its bound with more left, so a search can say
//! it stopped short instead of "not found".

use std::future::Future;

use crate::aws::s3::StoreError;

/// One listed record: its key and when it was last written (epoch ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The full key.
    pub key: String,
    /// When S3 last stored it.
    pub modified_ms: u64,
}

/// Which keys to list: those under `prefix`, after `after` (S3's `start-after`), up to
/// and including `until`, in S3's order (by key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// Only keys starting with this.
    pub prefix: String,
    /// Only keys after this one.
    pub after: Option<String>,
    /// Only keys up to this one.
    pub until: Option<String>,
}

impl KeyRange {
    /// Every key under `prefix`.
    pub fn under(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            ..Self::default()
        }
    }
}

/// What a listing found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The keys, in key order.
    pub items: Vec<Listed>,
    /// True when the range holds more keys than the listing's bound let it take.
    pub more: bool,
}

/// Lists and reads records.
pub trait RecordIndex {
    /// Up to `max` keys of `range`, and whether more were left.
    fn list(&self, range: &KeyRange, max: usize) -> impl Future<Output = Result<Listing, StoreError>> + Send;
    /// The text at `key` (none when it is gone).
    fn read(&self, key: &str) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

/// The records in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3RecordIndex {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3RecordIndex {
    /// The records in `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    fn unavailable(&self, key: &str, reason: String) -> StoreError {
        StoreError::Unavailable {
            bucket: self.bucket.clone(),
            key: key.to_string(),
            reason,
        }
    }
}

impl RecordIndex for S3RecordIndex {
    async fn list(&self, range: &KeyRange, max: usize) -> Result<Listing, StoreError> {
        let mut found = Listing::default();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&range.prefix)
                .set_start_after(range.after.clone())
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.unavailable(&range.prefix, aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if range.until.as_deref().is_some_and(|until| key > until) {
                    return Ok(found);
                }
                if found.items.len() >= max {
                    found.more = true;
                    return Ok(found);
                }
                let modified_ms = object
                    .last_modified()
                    .and_then(|t| t.to_millis().ok())
                    .map_or(0, |ms| ms.max(0) as u64);
                found.items.push(Listed {
                    key: key.to_string(),
                    modified_ms,
                });
            }
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(found);
            }
        }
    }

    async fn read(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(object) => {
                let body = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| self.unavailable(key, e.to_string()))?;
                Ok(Some(String::from_utf8_lossy(&body.into_bytes()).into_owned()))
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) => Err(self.unavailable(key, aws_sdk_s3::error::DisplayErrorContext(&err).to_string())),
        }
    }
}
