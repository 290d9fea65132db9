//! The SES Lambda: configuration read once at cold start ([`config`]) and the event
//! handler that routes each envelope recipient and posts the mail to RT ([`handler`]),
//! one route at a time as a straight line of steps ([`delivery`]), then the mail's
//! notices ([`notify`]); what they share for one invocation ([`invocation`]); the
//! payloads it understands ([`events`]); re-delivery ([`replay`]); a mail's screening
//! on every path, a replay's included ([`screening`]); an operator's requests
//! to the function, a replay or the canary ([`operator`]); the real adapters
//! ([`wiring`]); CloudWatch metrics by name ([`metrics`]); the log's set-up
//! ([`logging`]); finding a mail's route records for the trace ([`trace`]); the
//! invocation's deadline ([`deadline`]); the hold step's windows (loops, one notice per
//! storm: [`hold`]); every mail that did not become a ticket, listed, rejected, expired
//! and digested daily ([`held`]).
//!
//! Imports run one way: handler → delivery, notify → invocation.

pub mod config;
pub mod deadline;
pub mod delivery;
pub mod events;
pub mod handler;
pub mod held;
pub mod hold;
pub mod invocation;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod operator;
pub mod replay;
pub mod screening;
pub mod trace;
pub mod wiring;
