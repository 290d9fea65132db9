//! AWS adapters: the mail store (S3) behind the small [`s3::MailStore`] trait, and the
//! delivery records (S3) behind [`records::DeliveryRecords`], RT's credentials (Secrets
//! Manager) behind [`secrets::SecretSource`], the routing table object
//! ([`routes_object::RoutesObject`]); the deployed function through the `aws` CLI
//! ([`function`]); the storm counters (DynamoDB) behind [`counters::StormCounters`];
//! and, for unit tests, a bucket and an outbox in memory (`memory`).

pub mod counters;
pub mod function;
#[cfg(test)]
pub mod memory;
pub mod record_index;
pub mod records;
pub mod routes_object;
pub mod s3;
pub mod secrets;
pub mod ses;
pub mod sqs;
