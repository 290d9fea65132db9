//! Request Tracker's mail gateway client, in Rust.
//!
//! - [`core`]: every rule (actions, extensions, routing, headers, RT's replies), no I/O.
//! - [`spool`]: mail to a temporary file, so memory stays flat.
//! - [`rt`]: RT's mail gateway over HTTP, behind the [`rt::MailGateway`] trait.
//! - [`aws`]: the mail store in S3, behind [`aws::s3::MailStore`].
//! - [`cli`]: the drop-in `rt-mailgate` command.
//! - [`lambda`]: the SES Lambda's configuration and event handler.
//!
//! The binaries in `src/bin/` only wire these together.

pub mod aws;
pub mod cli;
pub mod core;
pub mod lambda;
pub mod rt;
pub mod spool;
