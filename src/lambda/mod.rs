//! The SES Lambda: configuration read once at cold start ([`config`]) and the event
//! handler that routes each envelope recipient and posts the mail to RT ([`handler`]).

pub mod config;
pub mod events;
pub mod handler;
pub mod replay;
pub mod wiring;
