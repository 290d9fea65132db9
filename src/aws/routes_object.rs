//! The routing table as an S3 object (`ROUTES_S3_KEY`, in the mail bucket): for tables
//! larger than Lambda's 4 KB of environment, and changed without a redeploy. Read with
//! `If-None-Match` on the last ETag, so an unchanged table costs one small 304.

use crate::aws::s3::GetFailure;

/// The largest table read (a thousand routes take about 60 KB): a bigger object is a
/// mistake (the wrong key), not a table.
pub const MAX_ROUTES_OBJECT_BYTES: usize = 1024 * 1024;

/// Why the table object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RoutesObjectError {
    /// No object at that key.
    #[error("s3://{bucket}/{key} does not exist (upload the routing table there, or fix ROUTES_S3_KEY)")]
    Missing {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The function may not read it.
    #[error(
        "access to s3://{bucket}/{key} denied (the function may read only the RoutesObjectKey it was deployed with)"
    )]
    Denied {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// S3 could not be reached, answered an error, or the body broke off.
    #[error("reading s3://{bucket}/{key} failed: {reason}")]
    Unavailable {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The SDK's words.
        reason: String,
    },
    /// Not a routing table: too large, or not UTF-8.
    #[error("s3://{bucket}/{key} {reason}")]
    NotATable {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The object still has the ETag given (S3 answered 304).
    Unchanged,
    /// The object's text and its ETag.
    Table {
        /// The table as written.
        text: String,
        /// Its ETag, for the next read.
        etag: String,
    },
}

/// The routing table object.
#[derive(Debug, Clone)]
pub struct RoutesObject {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

impl RoutesObject {
    /// The object at `key` in `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    /// `s3://bucket/key`, for messages.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Reads the table, or learns it is unchanged since `etag`.
    pub async fn fetch(&self, etag: Option<&str>) -> Result<Fetched, RoutesObjectError> {
        let (bucket, key) = (self.bucket.clone(), self.key.clone());
        let request = self
            .client
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .set_if_none_match(etag.map(str::to_string));
        let object = match request.send().await {
            Ok(object) => object,
            Err(err) => {
                return match GetFailure::of(&err) {
                    GetFailure::NotModified => Ok(Fetched::Unchanged),
                    GetFailure::Missing => Err(RoutesObjectError::Missing { bucket, key }),
                    GetFailure::Denied => Err(RoutesObjectError::Denied { bucket, key }),
                    GetFailure::Unavailable(reason) => Err(RoutesObjectError::Unavailable { bucket, key, reason }),
                };
            }
        };
        let not_a_table = |reason: String| RoutesObjectError::NotATable {
            bucket: bucket.clone(),
            key: key.clone(),
            reason,
        };
        if object
            .content_length()
            .is_some_and(|n| n > MAX_ROUTES_OBJECT_BYTES as i64)
        {
            return Err(not_a_table(format!(
                "is larger than {MAX_ROUTES_OBJECT_BYTES} bytes: not a routing table"
            )));
        }
        let etag = object.e_tag().unwrap_or_default().to_string();
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| RoutesObjectError::Unavailable {
                bucket: bucket.clone(),
                key: key.clone(),
                reason: e.to_string(),
            })?
            .into_bytes();
        if bytes.len() > MAX_ROUTES_OBJECT_BYTES {
            return Err(not_a_table(format!(
                "is larger than {MAX_ROUTES_OBJECT_BYTES} bytes: not a routing table"
            )));
        }
        let text = String::from_utf8(bytes.to_vec()).map_err(|e| {
            let line = bytes[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            not_a_table(format!("is not UTF-8 (line {line})"))
        })?;
        Ok(Fetched::Table { text, etag })
    }
}
