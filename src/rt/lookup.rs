//! Asking RT whether it already holds a mail (RT 5's REST 2 API, by Message-ID), behind
//! the small [`DeliveryLookup`] trait the handler asks before posting a route again.

use std::future::Future;

use crate::core::request::GatewayRequest;

/// What RT holds for one mail and route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// RT holds the mail on this route: the transaction that recorded it.
    Found {
        /// The ticket.
        ticket: u64,
        /// The transaction.
        transaction: u64,
    },
    /// RT has no such transaction.
    NotFound,
}

/// RT could not be asked (the answer is unknown, not "no").
#[derive(Debug, Clone, thiserror::Error)]
#[error("RT lookup: {0}")]
pub struct LookupError(pub String);

/// Asks RT whether it holds the mail `message_id` (without angle brackets) as posted
/// by `request`.
pub trait DeliveryLookup {
    /// Finds the transaction, if any.
    fn find(
        &self,
        message_id: &str,
        request: &GatewayRequest,
    ) -> impl Future<Output = Result<Lookup, LookupError>> + Send;
}

/// No RT API credentials: RT is never asked (today's behaviour; duplicates after a lost
/// answer remain possible, see the README).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLookup;

impl DeliveryLookup for NoLookup {
    async fn find(&self, _message_id: &str, _request: &GatewayRequest) -> Result<Lookup, LookupError> {
        Err(LookupError(
            "no RT API credentials (rt_token, or rt_username and rt_password, in the secret)".into(),
        ))
    }
}
