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

/// What the operator's one notice of a storm or a loop is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldMail {
    /// SES's message id of the first mail held.
    pub ses_message_id: String,
    /// Its `Message-ID` header, if known.
    pub message_id: Option<String>,
    /// The envelope sender.
    pub sender: String,
    /// The route's entry.
    pub route: String,
    /// The record's reason (`<cause>: <detail>`).
    pub reason: String,
}

/// The operator's notice when a storm or a loop starts being held: one per storm (per
/// cause, route and sender, a day), never one per mail. It says what is held, that it
/// stops by itself, and how to see and release it.
pub fn hold_notice(to: &str, cause: HoldCause, mail: &HeldMail) -> crate::core::notice::NoticeText {
    // What the sender chose is quoted on one line, cut: a notice can't carry its payload.
    let cut = |text: &str| -> String {
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(crate::core::notice::QUOTED_CHARS)
            .collect()
    };
    let what = match cause {
        HoldCause::StormSender => "a storm from one sender",
        HoldCause::StormRoute => "a storm to one route",
        HoldCause::Loop => "a mail loop with another helpdesk",
        HoldCause::AutoReply => "automatic mail",
    };
    let subject = format!("rt-mailgate: holding {what} ({})", cut(&mail.route));
    let body = format!(
        "rt-mailgate is holding mail instead of posting it to RT: {what}.\n\n\
         Route:       {route}\n\
         Sender:      {sender}\n\
         Why:         {reason}\n\
         First held:  SES message id {ses} (Message-ID {mid})\n\n\
         Every further mail of it is held too, with no further notice; holding stops by\n\
         itself once the rate drops (the next storm window). Nothing is lost: held mail\n\
         is kept in the bucket. See it with `rt-mailgate-held list --cause {label}`;\n\
         post it to RT (once) with `rt-mailgate-held release`, or one mail with\n\
         `rt-mailgate-replay --release --message-id ID --recipient ADDRESS`.\n",
        route = cut(&mail.route),
        sender = cut(&mail.sender),
        reason = cut(&mail.reason),
        ses = cut(&mail.ses_message_id),
        mid = cut(mail.message_id.as_deref().unwrap_or("none")),
        label = cause.label(),
    );
    crate::core::notice::NoticeText {
        to: to.to_string(),
        subject,
        body,
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

    #[test]
    fn the_storm_notice_says_what_is_held_and_how_to_release_it() {
        let mail = HeldMail {
            ses_message_id: "m1".into(),
            message_id: Some("<a@b>".into()),
            sender: "alerts@mon.example".into(),
            route: "ops@example.com".into(),
            reason: HoldCause::StormSender.reason("mail 16 ... (bound 15)"),
        };
        let notice = hold_notice("ops@x", HoldCause::StormSender, &mail);
        assert_eq!(notice.to, "ops@x");
        assert!(notice.subject.contains("storm from one sender (ops@example.com)"));
        for part in ["alerts@mon.example", "storm-sender: mail 16", "m1", "<a@b>", "release"] {
            assert!(notice.body.contains(part), "{part}: {}", notice.body);
        }
    }
}
