//! The storm counters (issue 23, point 3) behind the small [`StormCounters`] trait: a
//! DynamoDB table ([`DynamoCounters`]) in the function, a map in memory
//! ([`MemoryCounters`]) for the unit tests, and none at all ([`Counters::Off`]) when
//! `STORM_TABLE` is unset (the CLI, older deployments: no table, no request).
//!
//! One mail and route is one `UpdateItem` on the item of its route and window
//! ([`crate::core::storm::counter_item`]):
//!
//! ```text
//! UpdateExpression: ADD #total :one, #sender :one SET #expires = :expires
//! ReturnValues:     UPDATED_NEW
//! ```
//!
//! DynamoDB applies the `ADD`s to one item atomically and answers the counts after
//! them, so every concurrent invocation sees every other's mails: no lost and no
//! double count, however many invocations a storm runs at once (DynamoDB serialises
//! writes to one item; a 10,000-mail storm is some 17 writes a second per item over 10
//! minutes, far below a partition's 1,000 writes a second). A write DynamoDB throttles
//! is not applied, so the client's retries ([`ADD_ATTEMPTS`] within [`ADD_LIMIT`]) can't
//! count twice. It is sent while the route's record is claimed, so the ordinary path
//! gains one request and no wait.
//!
//! Measured under contention by `tests/storm_counters.rs` and `bench/storm-counters.sh`
//! (10,000 adds, 64 at once, against moto behind a front that applies one item's writes
//! one at a time as DynamoDB does and throttles a share of them).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use crate::core::storm::{CounterItem, Counts, EXPIRES_ATTRIBUTE, KEY_ATTRIBUTE, TOTAL_ATTRIBUTE};

/// Why a count is not known. The mail is then posted (fail open) and a warning logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// The item can hold no more senders (DynamoDB's 400 KB): only a route in a storm of
    /// tens of thousands of senders gets there.
    #[error("the counter item of this window is full (DynamoDB's item size limit)")]
    ItemFull,
    /// Any other failure (throttled, no access, the table missing, the network).
    #[error("storm counter: {0}")]
    Failed(String),
}

/// Adds one mail to a route's counters.
pub trait StormCounters {
    /// Adds one to the item's total and to its sender's attribute; the counts after.
    fn add(&self, item: &CounterItem) -> impl Future<Output = Result<Counts, CounterError>> + Send;
}

/// The counters in a DynamoDB table (key `pk`, a string; TTL on `expires`).
#[derive(Debug, Clone)]
pub struct DynamoCounters {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The longest one add may take, every try and wait included: past it the mail is
/// posted uncounted (fail open), so a slow or unreachable counter store never holds a
/// delivery up for long.
pub const ADD_LIMIT: Duration = Duration::from_secs(3);

/// How many times an add is tried. A storm's item is the hottest in the table: DynamoDB
/// answers writes beyond its rate as throttled (never applied, so a retry can't count
/// twice), and an add still throttled after its last try goes uncounted.
/// bench/storm-counters.sh, 10,000 adds with 5% of writes throttled at random: 2 went
/// uncounted with the SDK's default 3 tries, none with 5 (with 20% throttled: 1).
pub const ADD_ATTEMPTS: u32 = 5;

/// The longest first wait before a retry (jittered, then doubled each time): all four
/// waits together stay under 1.5 s, inside [`ADD_LIMIT`]. The SDK's default, 1 s, would
/// spend the limit by the third try.
pub const ADD_FIRST_BACKOFF: Duration = Duration::from_millis(100);

impl DynamoCounters {
    /// Counters in `table`, through `client` as it is.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Counters in `table`, with a client of `aws`'s settings that tries each add
    /// [`ADD_ATTEMPTS`] times within [`ADD_LIMIT`]: the function's.
    pub fn from_sdk_config(aws: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        let retries = aws_sdk_dynamodb::config::retry::RetryConfig::standard()
            .with_max_attempts(ADD_ATTEMPTS)
            .with_initial_backoff(ADD_FIRST_BACKOFF);
        let timeouts = aws
            .timeout_config()
            .map(|t| t.to_builder())
            .unwrap_or_default()
            .operation_timeout(ADD_LIMIT)
            .build();
        let config = aws_sdk_dynamodb::config::Builder::from(aws)
            .retry_config(retries)
            .timeout_config(timeouts)
            .build();
        Self::new(aws_sdk_dynamodb::Client::from_conf(config), table)
    }
}

impl StormCounters for DynamoCounters {
    async fn add(&self, item: &CounterItem) -> Result<Counts, CounterError> {
        let answer = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY_ATTRIBUTE, AttributeValue::S(item.key.clone()))
            .update_expression("ADD #total :one, #sender :one SET #expires = :expires")
            .expression_attribute_names("#total", TOTAL_ATTRIBUTE)
            .expression_attribute_names("#sender", &item.sender_attribute)
            .expression_attribute_names("#expires", EXPIRES_ATTRIBUTE)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":expires", AttributeValue::N(item.expires_s.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| {
                let message = e.message().unwrap_or_default().to_string();
                if e.code() == Some("ValidationException") && message.to_ascii_lowercase().contains("size") {
                    CounterError::ItemFull
                } else {
                    CounterError::Failed(format!(
                        "{}: {}",
                        e.code().unwrap_or("error"),
                        if message.is_empty() { e.to_string() } else { message }
                    ))
                }
            })?;
        let attributes = answer.attributes().cloned().unwrap_or_default();
        let number = |name: &str| -> Result<u64, CounterError> {
            match attributes.get(name) {
                Some(AttributeValue::N(n)) => n
                    .parse()
                    .map_err(|_| CounterError::Failed(format!("`{name}` is not a count: {n}"))),
                _ => Err(CounterError::Failed(format!("`{name}` missing from the answer"))),
            }
        };
        Ok(Counts {
            route: number(TOTAL_ATTRIBUTE)?,
            sender: number(&item.sender_attribute)?,
        })
    }
}

/// Counters in this process's memory: the unit tests' stand-in (one instance only, so
/// never the function's store).
#[derive(Debug, Default)]
pub struct MemoryCounters {
    items: Mutex<HashMap<String, HashMap<String, u64>>>,
    /// When set, every add fails (a fault the tests need).
    pub failing: std::sync::atomic::AtomicBool,
}

impl StormCounters for MemoryCounters {
    async fn add(&self, item: &CounterItem) -> Result<Counts, CounterError> {
        if self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(CounterError::Failed("throttled (a test's fault)".into()));
        }
        let mut items = self.items.lock().unwrap_or_else(|e| e.into_inner());
        let counts = items.entry(item.key.clone()).or_default();
        let mut bump = |name: &str| {
            let count = counts.entry(name.to_string()).or_default();
            *count += 1;
            *count
        };
        let route = bump(TOTAL_ATTRIBUTE);
        let sender = bump(&item.sender_attribute);
        Ok(Counts { route, sender })
    }
}

/// The function's counters: none, DynamoDB, or (tests) memory.
#[derive(Debug, Default)]
pub enum Counters {
    /// Storms are not counted (`STORM_TABLE` unset).
    #[default]
    Off,
    /// The DynamoDB table.
    Dynamo(DynamoCounters),
    /// In memory (tests).
    Memory(MemoryCounters),
}

impl Counters {
    /// True when mails are counted.
    pub fn on(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// Adds one mail (`None`: counters off, nothing sent).
    pub async fn add(&self, item: &CounterItem) -> Option<Result<Counts, CounterError>> {
        match self {
            Self::Off => None,
            Self::Dynamo(counters) => Some(counters.add(item).await),
            Self::Memory(counters) => Some(counters.add(item).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_add_answers_the_route_and_the_sender_count_after_it() {
        let counters = Counters::Memory(MemoryCounters::default());
        let item = |key: &str, sender: &str| CounterItem {
            key: key.into(),
            sender_attribute: sender.into(),
            expires_s: 0,
        };
        let a = item("r#1", "sa");
        assert_eq!(counters.add(&a).await, Some(Ok(Counts { route: 1, sender: 1 })));
        assert_eq!(
            counters.add(&item("r#1", "sb")).await,
            Some(Ok(Counts { route: 2, sender: 1 }))
        );
        assert_eq!(counters.add(&a).await, Some(Ok(Counts { route: 3, sender: 2 })));
        assert_eq!(
            counters.add(&item("r#2", "sa")).await,
            Some(Ok(Counts { route: 1, sender: 1 })),
            "the next window starts from zero"
        );
        assert_eq!(Counters::Off.add(&a).await, None);
        assert!(!Counters::Off.on() && counters.on());
    }
}
