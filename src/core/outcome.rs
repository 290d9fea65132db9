//! The Lambda's one outcome table: for everything that can become of a mail and a
//! route, whether it counts as delivered, is retried (the invocation fails, so Lambda
//! retries and finally hands the event to the dead-letter queue), or is given up with a
//! notice. The table in docs/operate.md is this file in prose; `decide` is the only place the
//! rules live.
//!
//! (The CLI keeps the Perl client's exit codes instead: there the MTA's queue retries.)

use crate::core::headers::HeaderCheck;
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
    /// RT itself says it has no queue of the name the recipient address chose (its
    /// REST 2 queue search, to a user who may see every queue; see
    /// [`crate::rt::queues`]): not posted (RT would parse the whole mail only to answer
    /// `temporary failure`).
    UnknownQueue,
    /// The mail asks for more distinct routes than `MAX_ROUTES_PER_MAIL`: this route,
    /// beyond the cap, is not posted.
    TooManyRoutes,
}

/// Whose doing a give-up is: each class has its own operator notice window (see
/// [`crate::core::rate_limit`]), so give-ups an outsider can cause at will never use up
/// the notices about a broken route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GiveUpClass {
    /// The route or RT needs the operator (a fixed route's queue or action missing in
    /// RT, and anything not listed below).
    #[default]
    Route,
    /// What the sender sent: a mail too large, one RT refused, too many routes.
    Sender,
    /// A routine drop by the mail policy (SES's virus verdict, spam under `drop`, a
    /// DMARC reject honoured): nobody needs to act. Counted under `PolicyDropped`, not
    /// `GivenUp`, with an operator window of its own.
    Policy,
    /// A queue or action the recipient address chose (`*@domain`, a sub-address under
    /// `--extension queue|action`) that RT answered `temporary failure` for, or such a
    /// route beyond `MAX_ROUTES_PER_MAIL`: anyone can write such an address. Counted
    /// under a metric of its own, not in `GivenUp`.
    AddressMiss,
    /// A queue the recipient address chose that RT itself says it doesn't have
    /// ([`Case::UnknownQueue`], never posted): a mail a person may want to route. Counted
    /// in `GivenUp` (its alarm), with an operator window of its own, so that neither
    /// the outsiders' misses nor a broken route's digests crowd it out.
    QueueMissing,
}

impl GiveUpClass {
    /// The class whose window a digest about routes of these classes counts in: a
    /// broken route before the sender's doing, before an address miss. A digest about
    /// a broken route is never held back by what outsiders caused.
    pub fn most_pressing(classes: impl IntoIterator<Item = Self>) -> Self {
        let rank = |c: &Self| match c {
            Self::Route => 0,
            Self::QueueMissing => 1,
            Self::Sender => 2,
            Self::AddressMiss => 3,
            Self::Policy => 4,
        };
        classes.into_iter().min_by_key(rank).unwrap_or(Self::AddressMiss)
    }

    /// The class of a give-up `case` on a route whose queue or action the recipient
    /// address did (`named_by_address`) or did not choose.
    pub fn of(case: Case, named_by_address: bool) -> Self {
        use Case::*;
        match case {
            // Only RT's own word makes a queue missing (rt::queues): a person may act.
            UnknownQueue => Self::QueueMissing,
            // One mail to fifty addresses RT can't take must not fire the GivenUp alarm.
            RtTemporaryFailure | TooManyRoutes if named_by_address => Self::AddressMiss,
            VirusFound | SpamDropped | DmarcReject => Self::Policy,
            MailTooLarge | PayloadTooLarge | RtNotOk | TooManyRoutes => Self::Sender,
            _ => Self::Route,
        }
    }
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
        UnknownQueue | TooManyRoutes => Decision::GiveUp(OPERATOR_ONLY),
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
    /// The envelope sender (SES's `mail.source`): where a notice would go.
    pub envelope_sender: String,
    /// The header's `From` address, if exactly one could be read.
    pub from: Option<String>,
    /// SES's SPF verdict is PASS (SPF checks the envelope sender's domain).
    pub spf_pass: bool,
    /// SES's DKIM verdict is PASS: some signature passed, SES does not say whose.
    pub dkim_pass: bool,
    /// SES's DMARC verdict (`PASS`, `FAIL`, `GRAY`, ...): PASS means the `From` domain
    /// authenticated the mail (aligned SPF or DKIM).
    pub dmarc: String,
    /// The `d=` domain of every `DKIM-Signature` in the mail (see
    /// [`crate::core::headers::MailSummary::dkim_domains`]).
    pub dkim_domains: Vec<String>,
    /// Whether the header block was read whole and well-formed.
    pub header: HeaderCheck,
    /// The header says auto-submitted, bulk, junk or list mail.
    pub machine_generated: bool,
}

/// Whether an automatic notice may go to the sender without causing backscatter or a
/// mail loop: `true` exactly when [`sender_refusal`] finds nothing against it.
pub fn sender_may_be_told(facts: &SenderFacts) -> bool {
    sender_refusal(facts).is_none()
}

/// Local parts of senders that are never told (daemons, bounce and no-reply addresses),
/// also with a `+tag` or `-suffix`: a notice to them would bounce or loop.
pub const DAEMON_LOCAL_PARTS: [&str; 6] = [
    "mailer-daemon",
    "postmaster",
    "noreply",
    "no-reply",
    "bounce",
    "bounces",
];

/// Why the sender must not be told, or `None` when it may be. Fails closed; in order:
/// 1. the header block was not read whole, or is malformed ([`HeaderCheck`]);
/// 2. the mail is automatic or list traffic;
/// 3. the envelope sender is null, not an address, or a mailer daemon / bounce address;
/// 4. the header has no single `From` address, or its domain is not aligned with the
///    envelope sender's (the notice goes to the envelope sender: it must be the
///    visible sender's organisation);
/// 5. SES's DMARC verdict is FAIL;
/// 6. nothing authenticates the envelope sender's domain (see [`sender_authenticated`]).
pub fn sender_refusal(facts: &SenderFacts) -> Option<&'static str> {
    if !facts.header.is_whole() {
        return Some(match facts.header {
            HeaderCheck::TooLong => "header longer than the gateway reads",
            HeaderCheck::Malformed(_) => "header malformed",
            _ => "header not read",
        });
    }
    if facts.machine_generated {
        return Some("automatic or list mail");
    }
    // Trimmed as the notice windows' normal form trims it
    // ([`crate::core::rate_limit::normalize_address`]).
    let sender = facts
        .envelope_sender
        .trim_matches(is_around_address)
        .to_ascii_lowercase();
    let local = sender.split('@').next().unwrap_or_default();
    let daemon = DAEMON_LOCAL_PARTS
        .iter()
        .any(|d| local == *d || local.starts_with(&format!("{d}+")) || local.starts_with(&format!("{d}-")));
    if sender.is_empty() || !sender.contains('@') || daemon {
        return Some("null, daemon or bounce sender");
    }
    let Some(envelope_domain) = domain_part(&sender) else {
        return Some("null, daemon or bounce sender");
    };
    let Some(from_domain) = facts.from.as_deref().and_then(domain_part) else {
        return Some("no From address");
    };
    if !aligned(&from_domain, &envelope_domain) {
        return Some("From not aligned with the envelope sender");
    }
    if facts.dmarc.eq_ignore_ascii_case("FAIL") {
        return Some("DMARC failed");
    }
    if !sender_authenticated(facts) {
        return Some("not authenticated for the envelope sender's domain");
    }
    None
}

/// White space and angle brackets, in any order, around an address (`< a@x >`).
fn is_around_address(c: char) -> bool {
    c.is_whitespace() || matches!(c, '<' | '>')
}

/// The lower-case domain of an address, without a trailing dot; `None` when empty.
fn domain_part(address: &str) -> Option<String> {
    let address = address.trim_matches(is_around_address);
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// Whether authentication ties the envelope sender's domain to the mail: DMARC passed
/// (the `From` domain authenticated it; [`sender_refusal`] also wants `From` aligned
/// with the envelope), or SPF passed (SES's SPF verdict is about the MAIL FROM domain),
/// or DKIM passed and every signature in the mail is for a domain aligned with the
/// envelope sender's. SES says only that *some* signature passed, so one unaligned
/// signature (anyone can sign with their own domain and forge the envelope) means DKIM
/// can't vouch; the header check makes sure no signature was left unread.
pub fn sender_authenticated(facts: &SenderFacts) -> bool {
    let Some(domain) = domain_part(&facts.envelope_sender) else {
        return false;
    };
    facts.dmarc.eq_ignore_ascii_case("PASS")
        || facts.spf_pass
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
        for operator_only in [
            RtNotOk,
            RtTemporaryFailure,
            VirusFound,
            SpamDropped,
            DmarcReject,
            UnknownQueue,
            TooManyRoutes,
        ] {
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
    fn misses_on_names_the_address_chose_are_classed_apart() {
        use Case::*;
        assert_eq!(GiveUpClass::of(RtTemporaryFailure, true), GiveUpClass::AddressMiss);
        assert_eq!(GiveUpClass::of(UnknownQueue, true), GiveUpClass::QueueMissing);
        // The same answer on a fixed route is a broken route: the operator must hear.
        assert_eq!(GiveUpClass::of(RtTemporaryFailure, false), GiveUpClass::Route);
        for policy in [VirusFound, SpamDropped, DmarcReject] {
            assert_eq!(GiveUpClass::of(policy, false), GiveUpClass::Policy, "{policy:?}");
            assert_eq!(GiveUpClass::of(policy, true), GiveUpClass::Policy, "{policy:?}");
        }
        for sender in [MailTooLarge, PayloadTooLarge, RtNotOk] {
            assert_eq!(GiveUpClass::of(sender, false), GiveUpClass::Sender, "{sender:?}");
            assert_eq!(GiveUpClass::of(sender, true), GiveUpClass::Sender, "{sender:?}");
        }
        // Beyond the route cap: the sender's doing; on made-up addresses, a miss.
        assert_eq!(GiveUpClass::of(TooManyRoutes, false), GiveUpClass::Sender);
        assert_eq!(GiveUpClass::of(TooManyRoutes, true), GiveUpClass::AddressMiss);
    }

    #[test]
    fn a_digest_counts_in_its_most_pressing_class() {
        use GiveUpClass::*;
        assert_eq!(GiveUpClass::most_pressing([AddressMiss, Sender]), Sender);
        assert_eq!(GiveUpClass::most_pressing([AddressMiss, Route, Sender]), Route);
        assert_eq!(GiveUpClass::most_pressing([AddressMiss]), AddressMiss);
        assert_eq!(
            GiveUpClass::most_pressing([AddressMiss, QueueMissing, Sender]),
            QueueMissing
        );
        // A routine policy drop never decides the window of a digest that has more.
        assert_eq!(GiveUpClass::most_pressing([Policy, Sender]), Sender);
        assert_eq!(GiveUpClass::most_pressing([Policy, AddressMiss]), AddressMiss);
        assert_eq!(GiveUpClass::most_pressing([Policy]), Policy);
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

    /// A human sender at customer.example, SPF and DKIM passed, DMARC not published.
    fn facts(sender: &str) -> SenderFacts {
        SenderFacts {
            envelope_sender: sender.into(),
            from: Some(sender.trim_matches(['<', '>']).into()),
            spf_pass: true,
            dkim_pass: true,
            dmarc: "GRAY".into(),
            dkim_domains: vec!["customer.example".into()],
            header: HeaderCheck::Whole,
            machine_generated: false,
        }
    }

    #[test]
    fn only_authenticated_human_senders_are_told() {
        assert!(sender_may_be_told(&facts("alice@customer.example")));
        let unauthenticated = SenderFacts {
            spf_pass: false,
            dkim_pass: false,
            ..facts("alice@customer.example")
        };
        assert_eq!(
            sender_refusal(&unauthenticated),
            Some("not authenticated for the envelope sender's domain")
        );
        for null in ["", "<>", "nobody"] {
            assert_eq!(
                sender_refusal(&facts(null)),
                Some("null, daemon or bounce sender"),
                "{null}"
            );
        }
        assert!(!sender_may_be_told(&facts("MAILER-DAEMON@mx.example")));
        assert!(!sender_may_be_told(&facts("bounces+123@lists.example")));
        // Found by the fuzz target `envelope_sender`: blanks inside the brackets hid
        // the daemon's name.
        assert!(!sender_may_be_told(&facts("< postmaster@mx.example >")));
        assert!(sender_may_be_told(&facts("< alice@customer.example >")));
        let automatic = SenderFacts {
            machine_generated: true,
            ..facts("alice@customer.example")
        };
        assert_eq!(sender_refusal(&automatic), Some("automatic or list mail"));
    }

    #[test]
    fn a_header_not_read_whole_is_never_answered() {
        for (header, why) in [
            (HeaderCheck::Unread, "header not read"),
            (HeaderCheck::TooLong, "header longer than the gateway reads"),
            (HeaderCheck::Malformed("a bare LF in a CRLF header"), "header malformed"),
        ] {
            let f = SenderFacts {
                header,
                ..facts("alice@customer.example")
            };
            assert_eq!(sender_refusal(&f), Some(why));
        }
    }

    #[test]
    fn from_must_be_the_envelope_senders_organisation() {
        let f = |from: Option<&str>| SenderFacts {
            from: from.map(String::from),
            ..facts("alice@customer.example")
        };
        assert_eq!(sender_refusal(&f(None)), Some("no From address"));
        assert_eq!(
            sender_refusal(&f(Some("ceo@victim.example"))),
            Some("From not aligned with the envelope sender")
        );
        assert!(sender_may_be_told(&f(Some("Alice@Mail.Customer.Example"))));
    }

    #[test]
    fn dmarc_decides_where_it_has_a_verdict() {
        let f = |dmarc: &str, spf, dkim| SenderFacts {
            dmarc: dmarc.into(),
            spf_pass: spf,
            dkim_pass: dkim,
            ..facts("alice@customer.example")
        };
        // DMARC PASS: the From domain (aligned with the envelope) authenticated the mail.
        assert!(sender_may_be_told(&f("PASS", false, false)));
        // DMARC FAIL: never, whatever SPF says.
        assert_eq!(sender_refusal(&f("FAIL", true, true)), Some("DMARC failed"));
        // No DMARC policy: SPF or aligned DKIM decides.
        assert!(sender_may_be_told(&f("GRAY", true, false)));
        assert!(!sender_may_be_told(&f("GRAY", false, false)));
    }

    fn dkim_told(sender: &str, spf: bool, dkim: bool, domains: &[&str]) -> bool {
        sender_may_be_told(&SenderFacts {
            spf_pass: spf,
            dkim_pass: dkim,
            dkim_domains: domains.iter().map(|d| d.to_string()).collect(),
            ..facts(sender)
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
