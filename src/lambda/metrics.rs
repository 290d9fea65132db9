//! The function's CloudWatch metrics, by name: what happened to each route of each mail.
//! Recorded through the `metrics` facade; the Lambda binary installs an Embedded Metric
//! Format backend (namespace [`NAMESPACE`]) and flushes it after every invocation, so
//! the figures reach CloudWatch through the log stream. Without a backend (tests, the
//! replay command) recording does nothing.
//!
//! Dimensions stay few and bounded: the route entry (`bugs@example.com`, `*@domain`) as
//! written in the routing table, the reason of a give-up, the kind of duplicate avoided.
//! Never the sender, the recipient or the message id.

use std::time::Duration;

use crate::core::outcome::{decide, Case, Decision, GiveUpClass};

/// The CloudWatch namespace (the template's alarms read `RtMailgate/GivenUp`,
/// `Delivered` and `Unrouted`; its dashboard all of them).
pub const NAMESPACE: &str = "RtMailgate";

/// How a duplicate post was avoided.
#[derive(Debug, Clone, Copy)]
pub enum Avoided {
    /// A delivery record showed an earlier invocation settled the route.
    Record,
    /// Another invocation held the route's lease.
    Lease,
    /// RT's API showed it already holds the mail.
    RtLookup,
}

/// A route settled or left for the retry, counted by what the outcome table decided.
/// `named_by_address`: the recipient address chose the route's queue or action (see
/// [`crate::core::route::Route::named_by_address`]); a miss there is an `AddressMisses`,
/// never a `GivenUp` (anyone can write such an address: it must not fire the alarm).
pub fn outcome(route: &str, case: Case, named_by_address: bool) {
    let route = route.to_string();
    if matches!(decide(case), Decision::GiveUp(_))
        && GiveUpClass::of(case, named_by_address) == GiveUpClass::AddressMiss
    {
        metrics::counter!("AddressMisses").increment(1);
        metrics::counter!("AddressMisses", "Reason" => format!("{case:?}"), "Route" => route).increment(1);
        return;
    }
    match decide(case) {
        Decision::Delivered => {
            // Once without dimensions (what the "nothing delivered" alarm reads), once by route.
            metrics::counter!("Delivered").increment(1);
            metrics::counter!("Delivered", "Route" => route).increment(1);
        }
        Decision::Retry => metrics::counter!("Retried", "Route" => route).increment(1),
        // RT refused it for good and told the sender itself: not ours to give up.
        Decision::GiveUp(_) if case == Case::RtNotOk => metrics::counter!("Refused", "Route" => route).increment(1),
        Decision::GiveUp(_) => {
            // Once without dimensions (what the alarm sums), once by reason and route.
            metrics::counter!("GivenUp").increment(1);
            metrics::counter!("GivenUp", "Reason" => format!("{case:?}"), "Route" => route).increment(1);
        }
    }
}

/// A route left for the retry before any outcome (records unreadable, no time left).
pub fn retried(route: &str) {
    metrics::counter!("Retried", "Route" => route.to_string()).increment(1);
}

/// A duplicate post that did not happen.
pub fn avoided(route: &str, how: Avoided) {
    let kind = match how {
        Avoided::Record => "record",
        Avoided::Lease => "lease",
        Avoided::RtLookup => "rt-lookup",
    };
    metrics::counter!("DuplicatesAvoided", "Kind" => kind, "Route" => route.to_string()).increment(1);
}

/// A recipient no route takes.
pub fn unrouted() {
    metrics::counter!("Unrouted").increment(1);
}

/// A new routing table (`ROUTES_S3_KEY`) that could not be used; the last good one stays.
pub fn routes_refused() {
    metrics::counter!("RoutesRefused").increment(1);
}

/// One post to RT: how long RT took to answer, and how many bytes went.
pub fn posted(route: &str, took: Duration, bytes: u64) {
    metrics::histogram!("RtLatency", "Route" => route.to_string()).record(took.as_secs_f64() * 1000.0);
    metrics::counter!("Bytes", "Route" => route.to_string()).increment(bytes);
}

/// One read of a mail from S3.
pub fn mail_read(took: Duration) {
    metrics::histogram!("S3ReadTime").record(took.as_secs_f64() * 1000.0);
}
