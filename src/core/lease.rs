//! One poster at a time: before an invocation posts a route it takes a lease, a small
//! record next to the delivery record (`<message id>/<fingerprint>.lease`) written with
//! a conditional S3 write. The lease says until when its holder may be posting and what
//! the last attempt left behind; these rules read it.
//!
//! | lease found                         | what the invocation does                      |
//! |-------------------------------------|-----------------------------------------------|
//! | none                                | takes it (`If-None-Match: *`) and posts       |
//! | `posting`, not expired              | leaves the route for a later retry (not lost, not posted) |
//! | `posting`, expired (holder crashed) | takes it over (`If-Match`) and asks RT first  |
//! | `unsure` (RT may have taken it)     | takes it over and asks RT first               |
//! | `free` (RT surely did not get it)   | takes it over and posts                       |
//!
//! A lease lasts until the holder's function deadline plus a margin, so it can't expire
//! while its holder may still be posting.

use std::time::Duration;

/// How long past its holder's deadline a lease still holds (clock skew between hosts).
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// What the last attempt on a route left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// An invocation is (or was, if expired) posting.
    Posting,
    /// The last post ended where RT may have taken the mail (timeout, reset, 5xx).
    Unsure,
    /// The last post surely did not reach RT (refused connection, TLS, 401...).
    Free,
}

/// A lease as stored: `STATE UNTIL_MS HOLDER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What the last attempt left behind.
    pub state: LeaseState,
    /// Until when (epoch milliseconds) a `posting` lease holds.
    pub until_ms: u64,
    /// Who took it (the Lambda request id), for the log.
    pub holder: String,
}

/// What to do about a route, given the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No lease: create one.
    Create,
    /// Replace the lease found (conditional on its version); ask RT first when
    /// `ask_rt` (an earlier attempt may have delivered).
    TakeOver {
        /// Whether RT must be asked before posting.
        ask_rt: bool,
    },
    /// Another invocation holds it: leave the route for a retry.
    Held {
        /// Its holder.
        holder: String,
        /// Until when.
        until_ms: u64,
    },
}

impl Lease {
    /// The stored text.
    pub fn to_text(&self) -> String {
        let state = match self.state {
            LeaseState::Posting => "posting",
            LeaseState::Unsure => "unsure",
            LeaseState::Free => "free",
        };
        format!("{state} {} {}", self.until_ms, self.holder)
    }

    /// Reads the stored text; `None` for anything else (treated as `unsure`).
    pub fn from_text(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let state = match words.next()? {
            "posting" => LeaseState::Posting,
            "unsure" => LeaseState::Unsure,
            "free" => LeaseState::Free,
            _ => return None,
        };
        let until_ms = words.next()?.parse().ok()?;
        let holder = words.next().unwrap_or_default().to_string();
        Some(Self {
            state,
            until_ms,
            holder,
        })
    }
}

/// The rule of the table above. `found` is the lease's text, if a lease exists.
pub fn claim(found: Option<&str>, now_ms: u64) -> Claim {
    let Some(text) = found else { return Claim::Create };
    match Lease::from_text(text) {
        Some(lease) if lease.state == LeaseState::Posting && lease.until_ms > now_ms => Claim::Held {
            holder: lease.holder,
            until_ms: lease.until_ms,
        },
        Some(lease) if lease.state == LeaseState::Free => Claim::TakeOver { ask_rt: false },
        // Expired while posting (a crash), unsure, or unreadable: RT may hold the mail.
        _ => Claim::TakeOver { ask_rt: true },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(state: LeaseState, until_ms: u64) -> String {
        Lease {
            state,
            until_ms,
            holder: "req-1".into(),
        }
        .to_text()
    }

    #[test]
    fn the_table() {
        let now = 1_000_000;
        assert_eq!(claim(None, now), Claim::Create);
        assert_eq!(
            claim(Some(&text(LeaseState::Posting, now + 1)), now),
            Claim::Held {
                holder: "req-1".into(),
                until_ms: now + 1
            }
        );
        assert_eq!(
            claim(Some(&text(LeaseState::Posting, now)), now),
            Claim::TakeOver { ask_rt: true }
        );
        assert_eq!(
            claim(Some(&text(LeaseState::Unsure, now + 999)), now),
            Claim::TakeOver { ask_rt: true }
        );
        assert_eq!(
            claim(Some(&text(LeaseState::Free, now + 999)), now),
            Claim::TakeOver { ask_rt: false }
        );
        assert_eq!(claim(Some("garbage"), now), Claim::TakeOver { ask_rt: true });
    }

    #[test]
    fn text_round_trips() {
        let lease = Lease {
            state: LeaseState::Unsure,
            until_ms: 42,
            holder: "abc".into(),
        };
        assert_eq!(Lease::from_text(&lease.to_text()), Some(lease));
    }
}
