//! Why a route of a mail was held instead of posted (issue 23): the causes, their
//! words, and how a held route's record says it.
//!
//! A held route's record ([`crate::core::route_record::RouteState::Held`]) keeps the
//! cause and a detail in its `reason`, as `"<cause>: <detail>"` (for example
//! `storm-sender: 16 mails from this sender to this route within 10 min (bound 15)`).
//! Held mail was never posted: it waits in the bucket until an operator releases it
//! (`rt-mailgate-held release`, or `rt-mailgate-replay --release`: posted exactly once,
//! through the same delivery path, screening kept) or rejects it, or until it expires.

use std::fmt;

/// Why a route was held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HoldCause {
    /// One sender sent more mails to one route within the storm window than the
    /// route's per-sender bound (a monitoring system gone wild, a mail loop with a
    /// machine that ignores every loop header).
    StormSender,
    /// A route as a whole took more mails within the storm window than its bound, from
    /// any senders (a flood spread over many senders, a list gone wild).
    StormRoute,
    /// Another helpdesk's loop markers (another RT's `X-RT-Loop-Prevention`, Zendesk,
    /// Freshdesk, ...; see [`crate::core::machine_mail::loop_markers`]) repeated for the
    /// same sender and route beyond the loop bound: two helpdesks answering each other.
    Loop,
    /// Auto-generated mail (an out-of-office, an auto-reply, a bounce not threaded, bulk
    /// mail) on a route whose auto-reply policy is `hold`.
    AutoReply,
}

impl HoldCause {
    /// Every cause, in the order the tools list them.
    pub const ALL: [HoldCause; 4] = [Self::StormSender, Self::StormRoute, Self::Loop, Self::AutoReply];

    /// The word in records, logs, metrics and the tools.
    pub fn label(self) -> &'static str {
        match self {
            Self::StormSender => "storm-sender",
            Self::StormRoute => "storm-route",
            Self::Loop => "loop",
            Self::AutoReply => "auto-reply",
        }
    }

    /// The cause named by its [`Self::label`].
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|cause| cause.label() == label.trim())
    }

    /// A held record's `reason`: `"<cause>: <detail>"`.
    pub fn reason(self, detail: &str) -> String {
        format!("{}: {}", self.label(), detail)
    }

    /// The cause and the detail of a held record's `reason` (`None`: not a hold's
    /// reason).
    pub fn from_reason(reason: &str) -> Option<(Self, &str)> {
        let (label, detail) = match reason.split_once(':') {
            Some((label, detail)) => (label, detail.trim_start()),
            None => (reason, ""),
        };
        Self::from_label(label).map(|cause| (cause, detail))
    }
}

impl fmt::Display for HoldCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_reason_names_its_cause_and_reads_back() {
        for cause in HoldCause::ALL {
            let reason = cause.reason("some detail: with a colon");
            assert_eq!(
                HoldCause::from_reason(&reason),
                Some((cause, "some detail: with a colon"))
            );
            assert_eq!(HoldCause::from_label(cause.label()), Some(cause));
        }
        assert_eq!(HoldCause::StormSender.reason("x"), "storm-sender: x");
        assert_eq!(HoldCause::from_reason("auto-reply"), Some((HoldCause::AutoReply, "")));
        assert_eq!(HoldCause::from_reason("MailTooLarge"), None);
        assert_eq!(HoldCause::from_reason("storm: x"), None);
    }
}
