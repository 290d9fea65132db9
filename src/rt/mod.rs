//! Adapter to RT's mail gateway. [`MailGateway`] is the small trait the CLI and the
//! Lambda post through; [`http::HttpGateway`] is the real one (reqwest, rustls), and
//! [`pool::GatewayPool`] holds one per RT the function serves, with its credentials;
//! [`tls`] checks certificates against `--ca-file` / `RT_CA_FILE` as OpenSSL would;
//! [`lookup`] asks RT's REST 2 API whether it already holds a mail, before a mail that
//! may have reached RT is posted again; [`queues`] whether RT has a queue a recipient
//! address names, before a mail is posted to it.

pub mod http;
pub mod lookup;
pub mod pool;
pub mod queues;
pub mod tls;

use std::future::Future;

use crate::core::reply::{RtAnswer, TransportFailure};
use crate::core::request::GatewayRequest;
use crate::spool::Spool;

/// Posts one mail to RT's mail gateway.
pub trait MailGateway {
    /// Posts `message` (with the request's header in front) and returns RT's answer, or
    /// how the post failed before RT could answer.
    fn post(
        &self,
        request: &GatewayRequest,
        message: &Spool,
    ) -> impl Future<Output = Result<RtAnswer, TransportFailure>> + Send;
}
