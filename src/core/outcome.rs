//! The Lambda's one outcome table: for everything that can become of a mail and a
//! route, whether it counts as delivered, is retried (the invocation fails, so Lambda
//! retries and finally hands the event to the dead-letter queue), or is given up with a
//! notice. The README's table is this file in prose; `decide` is the only place the
//! rules live.
//!
//! (The CLI keeps the Perl client's exit codes instead: there the MTA's queue retries.)

use crate::core::reply::{RtAnswer, TransportFailure};

/// Everything that can happen to one mail on one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// RT answered `ok`.
    RtOk,
    /// RT answered `not ok`: refused for good (RT mailed the sender where it could).
    RtNotOk,
    /// RT answered `temporary failure`. RT 5 says this only for an unknown queue or an
    /// action no mail plugin handles: a misroute no retry can fix.
    RtTemporaryFailure,
    /// A 2xx answer that is none of RT's (a proxy's page, an empty body, garbage).
    RtUnexpectedReply,
    /// 413 from a body-size limit in front of RT: a retry can never pass.
    PayloadTooLarge,
    /// A 5xx status (500 from RT, 502/503/504 from a proxy): RT may have taken the mail
    /// before the answer broke.
    ServerError,
    /// Any other HTTP status (404 while RT restarts, 400...).
    HttpError,
    /// No byte moved for the timeout.
    Timeout,
    /// Connection refused, DNS failure, unreachable.
    ConnectFailed,
    /// Connection reset or closed mid-request.
    ConnectionBroken,
    /// Certificate or handshake failure.
    TlsFailure,
    /// 401 or 403 from RT's proxy even after the credentials were read again: a wrong or
    /// rotated-away credential, or a proxy rule. Retried (and finally dead-lettered),
    /// never dropped: the mail goes through once the secret is right.
    Unauthorized,
    /// RT or its proxy redirected where a post may not follow (https to http, another
    /// host). Retried, then dead-lettered: fix the URL or allow the host, then replay.
    RedirectRefused,
    /// The function's own deadline came before the post could start or finish.
    DeadlineReached,
    /// Another invocation holds the route's lease (it is posting it now): left for a
    /// later retry, neither lost nor posted twice.
    LeaseHeld,
    /// RT's REST 2 API shows RT already holds this mail on this route (an earlier post's
    /// answer was lost): delivered, not posted again.
    FoundInRt,
    /// The stored mail does not exist (yet, or under another prefix).
    MailMissing,
    /// The function may not read the stored mail.
    MailAccessDenied,
    /// S3 failed or the download broke.
    MailStoreUnavailable,
    /// No route takes the recipient.
    NoRoute,
    /// Larger than the configured limit.
    MailTooLarge,
    /// SES's virus verdict is FAIL.
    VirusFound,
    /// SES's spam verdict is FAIL and the spam policy is `drop`.
    SpamDropped,
    /// DMARC failed and the sender's domain publishes `p=reject`, honoured by policy.
    DmarcReject,
}

/// Who hears about a mail that was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notice {
    /// The operator address (always, when one is configured).
    pub operator: bool,
    /// The sender, when sender notices are on and the sender may safely be answered
    /// (see [`sender_may_be_told`]).
    pub sender: bool,
}

/// What the function does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The mail is in RT (or RT refused it for good and told the sender itself).
    Delivered,
    /// Fail the invocation: Lambda retries, then the dead-letter queue keeps the event.
    Retry,
    /// Stop trying; log it and send the notices.
    GiveUp(Notice),
}

const OPERATOR_ONLY: Notice = Notice {
    operator: true,
    sender: false,
};
const OPERATOR_AND_SENDER: Notice = Notice {
    operator: true,
    sender: true,
};

/// The outcome table.
pub fn decide(case: Case) -> Decision {
    use Case::*;
    match case {
        RtOk | FoundInRt => Decision::Delivered,
        // RT has already told the sender (or the owner address); the operator hears too.
        RtNotOk => Decision::GiveUp(OPERATOR_ONLY),
        // The route names a queue or action RT lacks: fix the route, then replay.
        RtTemporaryFailure => Decision::GiveUp(OPERATOR_ONLY),
        PayloadTooLarge | MailTooLarge => Decision::GiveUp(OPERATOR_AND_SENDER),
        RtUnexpectedReply | HttpError | Timeout | ConnectFailed | ConnectionBroken | TlsFailure | DeadlineReached => {
            Decision::Retry
        }
        Unauthorized | RedirectRefused | ServerError | LeaseHeld => Decision::Retry,
        MailMissing | MailAccessDenied | MailStoreUnavailable => Decision::Retry,
        // Never posted; the log line is the record (an unknown address is not news).
        NoRoute => Decision::GiveUp(Notice {
            operator: false,
            sender: false,
        }),
        // Never answer a virus or spam: the sender is most likely forged.
        VirusFound | SpamDropped => Decision::GiveUp(OPERATOR_ONLY),
        DmarcReject => Decision::GiveUp(OPERATOR_ONLY),
    }
}

impl Case {
    /// The case for RT's answer.
    pub fn from_answer(answer: &RtAnswer) -> Self {
        match answer {
            RtAnswer::Ok(_) => Self::RtOk,
            RtAnswer::NotOk { .. } => Self::RtNotOk,
            RtAnswer::TemporaryFailure { .. } => Self::RtTemporaryFailure,
            RtAnswer::Unexpected { .. } => Self::RtUnexpectedReply,
            RtAnswer::HttpError { status: 413, .. } => Self::PayloadTooLarge,
            RtAnswer::HttpError { status: 401 | 403, .. } => Self::Unauthorized,
            RtAnswer::HttpError { status: 500..=599, .. } => Self::ServerError,
            RtAnswer::HttpError { .. } => Self::HttpError,
        }
    }

    /// The case for a post that failed before RT answered.
    pub fn from_transport(failure: &TransportFailure) -> Self {
        match failure {
            TransportFailure::Connect(_) => Self::ConnectFailed,
            TransportFailure::Timeout(_) => Self::Timeout,
            TransportFailure::Tls(_) => Self::TlsFailure,
            TransportFailure::Broken(_) | TransportFailure::Spool(_) => Self::ConnectionBroken,
            TransportFailure::RedirectRefused(_) => Self::RedirectRefused,
        }
    }

    /// Whether RT may have taken the mail although no `ok` came back: the upload may
    /// have completed before the connection broke, time ran out, or a proxy failed. Such
    /// a post is never simply repeated: RT is asked first (when it can be).
    pub fn may_have_reached_rt(self) -> bool {
        matches!(
            self,
            Self::Timeout
                | Self::ConnectionBroken
                | Self::ServerError
                | Self::RtUnexpectedReply
                | Self::DeadlineReached
        )
    }

    /// The word used for this case in logs (`outcome` field).
    pub fn decision_word(self) -> &'static str {
        match (self, decide(self)) {
            (Self::RtNotOk, _) => "rejected",
            (Self::NoRoute, _) => "unrouted",
            (_, Decision::Delivered) => "delivered",
            (_, Decision::Retry) => "retry",
            (_, Decision::GiveUp(_)) => "given-up",
        }
    }
}

/// What to do with mail SES's scanners flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictPolicy {
    /// Drop mail whose virus verdict is FAIL (default true).
    pub drop_virus: bool,
    /// What to do with spam verdict FAIL.
    pub spam: SpamPolicy,
    /// Drop mail that fails DMARC when the sender's domain asks for `p=reject`.
    pub honour_dmarc_reject: bool,
}

/// Spam verdict FAIL handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpamPolicy {
    /// Post it as any other mail.
    Pass,
    /// Post it with an `X-RT-Mailgate-Spam: FAIL` header in front, for RT to act on.
    Tag,
    /// Do not post it; tell the operator.
    Drop,
}

impl Default for VerdictPolicy {
    fn default() -> Self {
        Self {
            drop_virus: true,
            spam: SpamPolicy::Tag,
            honour_dmarc_reject: true,
        }
    }
}

/// SES's verdicts on one mail (`PASS`, `FAIL`, `GRAY`, `PROCESSING_FAILED`, `DISABLED`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// virusVerdict.status.
    pub virus: String,
    /// spamVerdict.status.
    pub spam: String,
    /// dmarcVerdict.status.
    pub dmarc: String,
    /// receipt.dmarcPolicy (`REJECT`, `QUARANTINE`, `NONE`), when DMARC failed.
    pub dmarc_policy: Option<String>,
}

/// The header put in front of mail tagged as spam.
pub const SPAM_HEADER: &[u8] = b"X-RT-Mailgate-Spam: FAIL (SES spam verdict)\n";

/// Screening of a mail before any route is posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screening {
    /// Post it, with these header bytes in front (empty for none).
    Post(Vec<u8>),
    /// Do not post it: this case applies to every route.
    Drop(Case),
}

impl VerdictPolicy {
    /// Applies the policy to SES's verdicts.
    pub fn screen(&self, verdicts: &Verdicts) -> Screening {
        let fail = |status: &str| status.eq_ignore_ascii_case("FAIL");
        if self.drop_virus && fail(&verdicts.virus) {
            return Screening::Drop(Case::VirusFound);
        }
        let dmarc_reject = verdicts
            .dmarc_policy
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("REJECT"));
        if self.honour_dmarc_reject && fail(&verdicts.dmarc) && dmarc_reject {
            return Screening::Drop(Case::DmarcReject);
        }
        match (fail(&verdicts.spam), self.spam) {
            (true, SpamPolicy::Drop) => Screening::Drop(Case::SpamDropped),
            (true, SpamPolicy::Tag) => Screening::Post(SPAM_HEADER.to_vec()),
            _ => Screening::Post(Vec::new()),
        }
    }
}

/// What the gateway knows about a sender when deciding whether to answer it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderFacts {
    /// The envelope sender (SES's `mail.source`).
    pub envelope_sender: String,
    /// SES's SPF verdict is PASS (SPF checks the envelope sender's domain).
    pub spf_pass: bool,
    /// SES's DKIM verdict is PASS: some signature passed, SES does not say whose.
    pub dkim_pass: bool,
    /// The `d=` domain of every `DKIM-Signature` in the mail (see
    /// [`crate::core::headers::MailSummary::dkim_domains`]).
    pub dkim_domains: Vec<String>,
    /// The header says auto-submitted, bulk, junk or list mail.
    pub machine_generated: bool,
}

/// Whether an automatic notice may go to the sender without causing backscatter or a
/// mail loop: the envelope sender must be authenticated (see [`sender_authenticated`]),
/// not the null sender or a mailer daemon, and the mail must not itself be automatic or
/// list traffic.
pub fn sender_may_be_told(facts: &SenderFacts) -> bool {
    let sender = facts
        .envelope_sender
        .trim()
        .trim_matches(['<', '>'])
        .to_ascii_lowercase();
    let local = sender.split('@').next().unwrap_or_default();
    let daemon = [
        "mailer-daemon",
        "postmaster",
        "noreply",
        "no-reply",
        "bounce",
        "bounces",
    ]
    .iter()
    .any(|d| local == *d || local.starts_with(&format!("{d}+")) || local.starts_with(&format!("{d}-")));
    !sender.is_empty() && sender.contains('@') && !daemon && sender_authenticated(facts) && !facts.machine_generated
}

/// Whether the envelope sender's domain vouches for the mail: SPF passed (SES's SPF
/// verdict is about the MAIL FROM domain), or DKIM passed and every signature in the
/// mail is for a domain aligned with the envelope sender's. SES says only that *some*
/// signature passed, so one unaligned signature (anyone can sign with their own domain
/// and forge the envelope) means DKIM can't vouch.
pub fn sender_authenticated(facts: &SenderFacts) -> bool {
    let sender = facts.envelope_sender.trim().trim_matches(['<', '>']);
    let Some((_, domain)) = sender.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return false;
    }
    facts.spf_pass
        || (facts.dkim_pass && !facts.dkim_domains.is_empty() && facts.dkim_domains.iter().all(|d| aligned(d, &domain)))
}

/// DMARC's relaxed alignment, approximated without the public-suffix list: the same
/// domain, or one a subdomain of the other (`mail.example.org` and `example.org`).
pub fn aligned(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    let under = |child: &str, parent: &str| child.strip_suffix(parent).is_some_and(|rest| rest.ends_with('.'));
    !a.is_empty() && !b.is_empty() && (a == b || under(&a, &b) || under(&b, &a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use Case::*;
        assert_eq!(decide(RtOk), Decision::Delivered);
        assert_eq!(decide(FoundInRt), Decision::Delivered);
        for retried in [
            RtUnexpectedReply,
            HttpError,
            Timeout,
            ConnectFailed,
            ConnectionBroken,
            TlsFailure,
            Unauthorized,
            RedirectRefused,
            ServerError,
            LeaseHeld,
            DeadlineReached,
            MailMissing,
            MailAccessDenied,
            MailStoreUnavailable,
        ] {
            assert_eq!(decide(retried), Decision::Retry, "{retried:?}");
        }
        for operator_only in [RtNotOk, RtTemporaryFailure, VirusFound, SpamDropped, DmarcReject] {
            assert_eq!(
                decide(operator_only),
                Decision::GiveUp(OPERATOR_ONLY),
                "{operator_only:?}"
            );
        }
        for both in [PayloadTooLarge, MailTooLarge] {
            assert_eq!(decide(both), Decision::GiveUp(OPERATOR_AND_SENDER), "{both:?}");
        }
        assert_eq!(
            decide(NoRoute),
            Decision::GiveUp(Notice {
                operator: false,
                sender: false
            })
        );
    }

    #[test]
    fn answers_and_failures_map_to_cases() {
        let http = |status| RtAnswer::HttpError {
            status,
            status_line: String::new(),
        };
        assert_eq!(Case::from_answer(&http(413)), Case::PayloadTooLarge);
        assert_eq!(Case::from_answer(&http(502)), Case::ServerError);
        assert_eq!(Case::from_answer(&http(404)), Case::HttpError);
        assert_eq!(Case::from_answer(&http(401)), Case::Unauthorized);
        assert_eq!(Case::from_answer(&http(403)), Case::Unauthorized);
        assert_eq!(
            Case::from_transport(&TransportFailure::RedirectRefused("https to http".into())),
            Case::RedirectRefused
        );
        assert_eq!(
            Case::from_answer(&RtAnswer::TemporaryFailure {
                reason: String::new(),
                body: String::new(),
            }),
            Case::RtTemporaryFailure
        );
        assert_eq!(
            Case::from_transport(&TransportFailure::Broken("reset".into())),
            Case::ConnectionBroken
        );
        assert_eq!(Case::RtNotOk.decision_word(), "rejected");
        assert_eq!(Case::RtTemporaryFailure.decision_word(), "given-up");
        assert_eq!(Case::Timeout.decision_word(), "retry");
        assert_eq!(Case::FoundInRt.decision_word(), "delivered");
        for ambiguous in [
            Case::Timeout,
            Case::ConnectionBroken,
            Case::ServerError,
            Case::RtUnexpectedReply,
        ] {
            assert!(ambiguous.may_have_reached_rt(), "{ambiguous:?}");
        }
        for surely_not in [
            Case::ConnectFailed,
            Case::TlsFailure,
            Case::Unauthorized,
            Case::HttpError,
            Case::PayloadTooLarge,
        ] {
            assert!(!surely_not.may_have_reached_rt(), "{surely_not:?}");
        }
    }

    #[test]
    fn verdict_policy() {
        let verdicts = |virus: &str, spam: &str, dmarc: &str, policy: Option<&str>| Verdicts {
            virus: virus.into(),
            spam: spam.into(),
            dmarc: dmarc.into(),
            dmarc_policy: policy.map(String::from),
        };
        let default = VerdictPolicy::default();
        assert_eq!(
            default.screen(&verdicts("PASS", "PASS", "PASS", None)),
            Screening::Post(vec![])
        );
        assert_eq!(
            default.screen(&verdicts("FAIL", "PASS", "PASS", None)),
            Screening::Drop(Case::VirusFound)
        );
        assert_eq!(
            default.screen(&verdicts("GRAY", "FAIL", "PASS", None)),
            Screening::Post(SPAM_HEADER.to_vec())
        );
        assert_eq!(
            default.screen(&verdicts("PASS", "PASS", "FAIL", Some("REJECT"))),
            Screening::Drop(Case::DmarcReject)
        );
        assert_eq!(
            default.screen(&verdicts("PASS", "PASS", "FAIL", Some("QUARANTINE"))),
            Screening::Post(vec![])
        );
        let lax = VerdictPolicy {
            drop_virus: false,
            spam: SpamPolicy::Pass,
            honour_dmarc_reject: false,
        };
        assert_eq!(
            lax.screen(&verdicts("FAIL", "FAIL", "FAIL", Some("REJECT"))),
            Screening::Post(vec![])
        );
        let strict = VerdictPolicy {
            spam: SpamPolicy::Drop,
            ..default
        };
        assert_eq!(
            strict.screen(&verdicts("PASS", "FAIL", "PASS", None)),
            Screening::Drop(Case::SpamDropped)
        );
    }

    #[test]
    fn only_authenticated_human_senders_are_told() {
        let told = |sender: &str, spf, dkim, machine| {
            sender_may_be_told(&SenderFacts {
                envelope_sender: sender.into(),
                spf_pass: spf,
                dkim_pass: dkim,
                dkim_domains: vec!["customer.example".into()],
                machine_generated: machine,
            })
        };
        assert!(told("alice@customer.example", true, false, false));
        assert!(told("alice@customer.example", false, true, false));
        assert!(
            !told("alice@customer.example", false, false, false),
            "unauthenticated: backscatter"
        );
        assert!(!told("", true, true, false), "null sender");
        assert!(!told("<>", true, true, false), "null sender");
        assert!(!told("MAILER-DAEMON@mx.example", true, true, false));
        assert!(!told("bounces+123@lists.example", true, true, false));
        assert!(
            !told("alice@customer.example", true, true, true),
            "auto-submitted or list mail"
        );
    }

    fn dkim_told(sender: &str, spf: bool, dkim: bool, domains: &[&str]) -> bool {
        sender_may_be_told(&SenderFacts {
            envelope_sender: sender.into(),
            spf_pass: spf,
            dkim_pass: dkim,
            dkim_domains: domains.iter().map(|d| d.to_string()).collect(),
            machine_generated: false,
        })
    }

    #[test]
    fn spf_pass_suffices() {
        assert!(dkim_told("alice@customer.example", true, false, &[]));
        assert!(dkim_told("alice@customer.example", true, true, &["attacker.example"]));
    }

    #[test]
    fn dkim_vouches_only_for_aligned_domains() {
        // A forged envelope sender, signed by the forger's own domain: not told.
        assert!(!dkim_told(
            "victim@customer.example",
            false,
            true,
            &["attacker.example"]
        ));
        // Aligned: the same domain, or a parent/sub-domain of it.
        assert!(dkim_told("alice@customer.example", false, true, &["customer.example"]));
        assert!(dkim_told(
            "alice@customer.example",
            false,
            true,
            &["mail.customer.example"]
        ));
        assert!(dkim_told(
            "alice@eu.customer.example",
            false,
            true,
            &["Customer.Example"]
        ));
        // One unaligned signature is enough to doubt: SES does not say which passed.
        assert!(!dkim_told(
            "alice@customer.example",
            false,
            true,
            &["customer.example", "attacker.example"]
        ));
        // A signature without d=, no signature at all, or DKIM failed.
        assert!(!dkim_told("alice@customer.example", false, true, &[""]));
        assert!(!dkim_told("alice@customer.example", false, true, &[]));
        assert!(!dkim_told(
            "alice@customer.example",
            false,
            false,
            &["customer.example"]
        ));
        // Suffix is not subdomain.
        assert!(!dkim_told(
            "alice@customer.example",
            false,
            true,
            &["evilcustomer.example"]
        ));
    }

    #[test]
    fn alignment() {
        assert!(aligned("a.example", "A.EXAMPLE"));
        assert!(aligned("x.a.example", "a.example") && aligned("a.example", "x.a.example"));
        assert!(!aligned("ba.example", "a.example"));
        assert!(!aligned("", "a.example"));
    }
}
