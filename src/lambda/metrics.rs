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

/// The metric a route's outcome counts under: the one rule for what pages someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// RT took it (`Delivered`: the "nothing delivered" alarm reads it).
    Delivered,
    /// Left for a retry (`Retried`).
    Retried,
    /// RT refused it for good and told the sender itself (`Refused`): not ours to give up.
    Refused,
    /// Given up, and a person must act (`GivenUp`: the `GivenUpAlarm` sums it).
    GivenUp,
    /// Dropped by the mail policy (virus, spam under `drop`, DMARC reject): routine, no
    /// alarm (`PolicyDropped`).
    PolicyDropped,
    /// A queue or action the recipient address chose that RT answered `temporary
    /// failure` for (`AddressMisses`): anyone can write such an address, so it must not
    /// fire the alarm. (A queue RT itself says it lacks, asked before any upload, is
    /// `GivenUp`.)
    AddressMiss,
}

impl Counted {
    /// What `case` on a route counts as. `named_by_address`: the recipient address
    /// chose the route's queue or action (see
    /// [`crate::core::route::Route::named_by_address`]).
    pub fn of(case: Case, named_by_address: bool) -> Self {
        match decide(case) {
            Decision::Delivered => Self::Delivered,
            Decision::Retry => Self::Retried,
            Decision::GiveUp(_) => match GiveUpClass::of(case, named_by_address) {
                GiveUpClass::AddressMiss => Self::AddressMiss,
                GiveUpClass::Policy => Self::PolicyDropped,
                _ if case == Case::RtNotOk => Self::Refused,
                GiveUpClass::Route | GiveUpClass::Sender | GiveUpClass::QueueMissing => Self::GivenUp,
            },
        }
    }

    /// The metric's name in CloudWatch.
    pub fn name(self) -> &'static str {
        match self {
            Self::Delivered => "Delivered",
            Self::Retried => "Retried",
            Self::Refused => "Refused",
            Self::GivenUp => "GivenUp",
            Self::PolicyDropped => "PolicyDropped",
            Self::AddressMiss => "AddressMisses",
        }
    }
}

/// A route settled or left for the retry, counted by what the outcome table decided
/// (see [`Counted::of`]).
pub fn outcome(route: &str, case: Case, named_by_address: bool) {
    let route = route.to_string();
    let counted = Counted::of(case, named_by_address);
    let name = counted.name();
    match counted {
        Counted::Retried | Counted::Refused => metrics::counter!(name, "Route" => route).increment(1),
        // Once without dimensions (what the alarms sum), once by route.
        Counted::Delivered => {
            metrics::counter!(name).increment(1);
            metrics::counter!(name, "Route" => route).increment(1);
        }
        // Once without dimensions (what the alarm or the dashboard sums), once by reason and route.
        Counted::GivenUp | Counted::PolicyDropped | Counted::AddressMiss => {
            metrics::counter!(name).increment(1);
            metrics::counter!(name, "Reason" => format!("{case:?}"), "Route" => route).increment(1);
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

/// A held mail kept longer than `HeldDays`: expired, never posted (`HeldExpired`).
pub fn held_expired() {
    metrics::counter!("HeldExpired").increment(1);
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

/// A route's threading decision (issue 22), by its label
/// ([`crate::core::threading::ThreadTarget::label`]): `By` = `rt_marker`, `bounce`,
/// `subject`, `none`, `refused_missing`... Only where threading is on (`RT_ORGANIZATION`).
pub fn threaded(route: &str, by: &'static str) {
    metrics::counter!("Threaded", "By" => by).increment(1);
    metrics::counter!("Threaded", "By" => by, "Route" => route.to_string()).increment(1);
}

/// A route of a mail held instead of posted (issue 23), by cause (`storm-sender`,
/// `storm-route`, `loop`, `auto-reply`).
pub fn held(route: &str, cause: crate::core::hold::HoldCause) {
    metrics::counter!("Held", "Cause" => cause.label()).increment(1);
    metrics::counter!("Held", "Cause" => cause.label(), "Route" => route.to_string()).increment(1);
}

/// Automatic mail a route's policy touched (`comment`) or let pass (`pass`), by kind.
pub fn machine_mail(kind: crate::core::machine_mail::MachineKind, policy: &'static str) {
    metrics::counter!("MachineMail", "Kind" => kind.label(), "Policy" => policy).increment(1);
}

/// A storm counter request that failed: the mail was posted anyway (fail open).
pub fn storm_counter_failed() {
    metrics::counter!("StormCounterFailed").increment(1);
}

/// One read of a mail from S3.
pub fn mail_read(took: Duration) {
    metrics::histogram!("S3ReadTime").record(took.as_secs_f64() * 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routine_policy_drops_are_not_given_up() {
        for case in [Case::VirusFound, Case::SpamDropped, Case::DmarcReject] {
            assert_eq!(Counted::of(case, false), Counted::PolicyDropped, "{case:?}");
            assert_eq!(Counted::of(case, true), Counted::PolicyDropped, "{case:?}");
        }
        assert_eq!(Counted::PolicyDropped.name(), "PolicyDropped");
    }

    #[test]
    fn given_up_is_what_needs_a_person() {
        // A fixed route RT has no queue for, a mail the door or the gateway can't take.
        for case in [
            Case::RtTemporaryFailure,
            Case::PayloadTooLarge,
            Case::MailTooLarge,
            Case::TooManyRoutes,
        ] {
            assert_eq!(Counted::of(case, false), Counted::GivenUp, "{case:?}");
        }
        assert_eq!(Counted::GivenUp.name(), "GivenUp");
        // RT's own refusal (RT told the sender), a made-up address, a retry: never GivenUp.
        assert_eq!(Counted::of(Case::RtNotOk, false), Counted::Refused);
        assert_eq!(Counted::of(Case::RtTemporaryFailure, true), Counted::AddressMiss);
        // A queue the address chose that RT itself says it lacks: a person may act.
        assert_eq!(Counted::of(Case::UnknownQueue, true), Counted::GivenUp);
        assert_eq!(Counted::of(Case::Timeout, false), Counted::Retried);
        assert_eq!(Counted::of(Case::RtOk, false), Counted::Delivered);
        assert_eq!(Counted::of(Case::FoundInRt, true), Counted::Delivered);
    }
}
