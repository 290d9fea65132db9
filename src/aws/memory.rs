//! Stand-ins in memory for the unit tests: a bucket ([`MemoryBucket`]) for what reads
//! and writes the records (the trace, held mail), listed in key order as S3 lists, with
//! records under the prefix [`RECORDS`] written conditionally with the text itself as
//! the version; and an outbox ([`MemoryOutbox`]) that keeps every notice sent.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::aws::record_index::{KeyRange, Listed, Listing, RecordIndex};
use crate::aws::records::DeliveryRecords;
use crate::aws::s3::StoreError;
use crate::aws::ses::{NoticeError, Notifier};
use crate::core::notice::NoticeText;

/// The records prefix the tests' configurations name.
pub const RECORDS: &str = "r/";

/// Objects by full key.
#[derive(Debug, Default)]
pub struct MemoryBucket(Mutex<BTreeMap<String, String>>);

impl MemoryBucket {
    /// Writes `text` at `key` under [`RECORDS`].
    pub fn put(&self, key: &str, text: &str) {
        self.lock().insert(format!("{RECORDS}{key}"), text.into());
    }

    /// The text at `key` under [`RECORDS`].
    pub fn get(&self, key: &str) -> Option<String> {
        self.lock().get(&format!("{RECORDS}{key}")).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RecordIndex for MemoryBucket {
    async fn list(&self, range: &KeyRange, max: usize) -> Result<Listing, StoreError> {
        let map = self.lock();
        let mut listing = Listing::default();
        for key in map.keys().filter(|k| k.starts_with(&range.prefix)) {
            if range.after.as_ref().is_some_and(|a| key <= a) {
                continue;
            }
            if range.until.as_ref().is_some_and(|u| key > u) {
                break;
            }
            if listing.items.len() == max {
                listing.more = true;
                break;
            }
            listing.items.push(Listed {
                key: key.clone(),
                modified_ms: 0,
            });
        }
        Ok(listing)
    }

    async fn read(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().get(key).cloned())
    }
}

impl DeliveryRecords for MemoryBucket {
    async fn find_versioned(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
        Ok(self.get(key).map(|t| (t.clone(), t)))
    }

    async fn create(&self, key: &str, value: &str) -> Result<Option<String>, StoreError> {
        if self.get(key).is_some() {
            return Ok(None);
        }
        self.put(key, value);
        Ok(Some(value.into()))
    }

    async fn replace(&self, key: &str, value: &str, version: &str) -> Result<Option<String>, StoreError> {
        if self.get(key).as_deref() != Some(version) {
            return Ok(None);
        }
        self.put(key, value);
        Ok(Some(value.into()))
    }

    async fn write_index(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.put(key, value);
        Ok(())
    }
}

/// Every notice sent, in order.
#[derive(Debug, Default)]
pub struct MemoryOutbox(pub Mutex<Vec<NoticeText>>);

impl Notifier for MemoryOutbox {
    async fn send(&self, notice: &NoticeText) -> Result<(), NoticeError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(notice.clone());
        Ok(())
    }
}
