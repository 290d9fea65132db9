//! AWS adapters: the mail store (S3) behind the small [`s3::MailStore`] trait.

pub mod s3;
