//! Which ticket a mail belongs to, read from RT's own markers (issue 22, points 1, 2 and
//! 5), with no I/O: the gateway can then post the mail with RT's `ticket` field, which
//! wins over the subject in RT's `Gateway()` (`$args{'ticket'} ||= ExtractTicketId(...)`).
//!
//! # What RT writes, and so what is read here
//!
//! Read in `bestpractical/rt` (`lib/RT/Interface/Email.pm`, `lib/RT/Action/SendEmail.pm`;
//! the same in RT 5.0 and 6.0):
//!
//! - **Subject tag** (`ParseTicketId`): `[rtname #N]`, matched as RT's default
//!   `EmailSubjectTagRegex` does (`\[\Qrtname\E\s+\#(\d+)\s*\]`, case-insensitive, the
//!   first match in the subject decides); when the rtname tag is absent RT tries each
//!   queue's `SubjectTag` in turn. A tag naming ticket 0 is no ticket (`return undef
//!   unless $id`). A site with its own `EmailSubjectTagRegex` (a Perl regex) lists its
//!   tags as queue tags: no Perl regex is run here. See [`subject_ticket`].
//! - **Pseudo-reference** (`PseudoReference`): `<RT-Ticket-N@Organization>`, always the
//!   *first* entry of the `References` of every mail RT sends (`SetReferencesHeaders` pushes
//!   it to the front; past 10 entries RT keeps the first 4 and the last 6, so it stays).
//! - **Message-ID** (`GenMessageId`): `<rt-VERSION-PID-EPOCH-RAND.N-SCRIP-SENT@Organization>`,
//!   N the ticket (0 when none). VERSION may hold `.`, `-`, `+` and `~` (Debian's
//!   `5.0.3+dfsg-3~deb12u2`), so N is read from the last `.N-N-N@` group. A mail made in
//!   RT's web UI has an internal id ending `.N-0-0@Organization`.
//!
//! `Organization` (RT's config, default `example.com`; not `rtname`) is compared without
//! regard to case; a marker of another Organization is another RT's and never matches.
//! See [`rt_marker`].
//!
//! # The rule ([`decide`])
//!
//! 1. **A bounce** ([`read_bounce`]) whose returned mail names a ticket of this RT (or
//!    whose subject carries this RT's tag) is [`ThreadDecision::Bounce`]: to be posted as
//!    a comment on that ticket, never a correspondence that reopens it or mails the
//!    requester. A bounce naming no ticket is handled as any mail (today: by subject).
//! 2. **A subject tag** of this RT always wins: [`ThreadDecision::BySubject`] (RT's own
//!    rule, untouched: the gateway need post no `ticket`).
//! 3. **RT's markers** in `References` and `In-Reply-To`: [`ThreadDecision::ByRtMarker`].
//!    When they name several tickets (a reply-all across two threads, a forwarded
//!    ticket), the first `RT-Ticket-N` pseudo-reference in `References` wins, as RT puts
//!    the ticket the mail is about first; then a marker in `In-Reply-To` (the mail answered);
//!    then RT's Message-IDs in `References`, the most recent (last) first.
//! 4. **Message-IDs** in `In-Reply-To` and `References` that RT may hold as a ticket's
//!    incoming mail (a reply-all to the customer's own first mail):
//!    [`ThreadDecision::ByMessageId`] with at most [`MAX_MESSAGE_ID_CANDIDATES`] ids, the
//!    most recent first (`In-Reply-To`, then `References` from its end), each written as
//!    RT stores a Message-ID ([`rt_stored_message_id`]); the adapter asks RT for them.
//!    Not when the admin turned it off ([`RtIdentity::by_message_id`]).
//! 5. Otherwise [`ThreadDecision::None`].
//!
//! # The target ([`ThreadTarget`])
//!
//! Every ticket found here is a claim the mail makes, not a fact: the adapter checks that
//! the ticket exists and that the route may reach it before posting to it (issue 22,
//! point 3), and the answer decides what is posted: [`unchecked_target`] says what RT
//! must be asked ([`Ask`]), [`checked_target`] judges a marker's ticket,
//! [`message_id_target`] the tickets RT holds the Message-IDs on (exactly one the route
//! may reach, else [`AsIs::Ambiguous`]). A reply to a ticket resolved long ago may open a
//! new ticket instead ([`ResolvedRule`], as RT's RepliesToResolved extension; a bounce
//! stays a comment). Whatever can't be checked is posted as without threading.
//!
//! # Bounces ([`read_bounce`])
//!
//! Read from at most [`MAX_BOUNCE_SCAN`] bytes of the mail, never panicking on any input:
//!
//! - **RFC 3464** `multipart/report; report-type=delivery-status` (Postfix, Exchange,
//!   Gmail, Sendmail, SES): the `message/delivery-status` part gives each recipient's
//!   `Final-Recipient`, `Action`, `Status` and `Diagnostic-Code`; the returned mail's
//!   header comes from a `message/rfc822` part (Postfix returns the whole mail, Exchange
//!   too) or a `text/rfc822-headers` part (Sendmail, Postfix with `bounce_size_limit`,
//!   SES). `message/global-*` (RFC 6533) likewise.
//! - **Non-standard** bounces (qmail's "failure notice", Exim's "Mail delivery failed",
//!   old Sendmail's "Returned mail"), recognised by their sender (`MAILER-DAEMON@`,
//!   `postmaster@`), an empty `Return-Path` or their subject: the original's
//!   `Message-ID`/`References`/`In-Reply-To` lines are read where the bounce quotes them in
//!   its text (`--- Below this line is a copy of the message.`, `------ This is a copy of
//!   the message, including all the headers. ------`), the failed recipients from Exim's
//!   `X-Failed-Recipients` or from `<address>:` lines (Postfix's and qmail's texts), the
//!   status from the first enhanced status code (`5.1.1`) in the text.
//!
//! A read receipt (`report-type=disposition-notification`) or an abuse report
//! (`feedback-report`) is not a bounce.

use std::collections::HashSet;

use crate::core::headers::{raw_fields, HeaderBlockCollector};
use crate::core::machine_mail::is_mailer_daemon;
use crate::core::request::GatewayRequest;

/// At most this many Message-IDs are read from one `References` or `In-Reply-To` field
/// (RT itself writes at most 10; a longer list is someone else's, and the bound keeps
/// a hostile header cheap).
pub const MAX_IDS_PER_FIELD: usize = 100;

/// At most this many Message-IDs are handed to the adapter to look up in RT (one REST 2
/// query can ask for all of them at once).
pub const MAX_MESSAGE_ID_CANDIDATES: usize = 5;

/// A bounce is read from at most this many bytes of the mail: the report and the
/// returned header sit near the start; the returned body, which may be large, is not
/// needed.
pub const MAX_BOUNCE_SCAN: usize = 256 * 1024;

/// At most this many failed recipients are kept from one bounce.
pub const MAX_FAILED_RECIPIENTS: usize = 20;

/// A diagnostic longer than this (in characters) is cut, with `…` at its end.
pub const MAX_DIAGNOSTIC_CHARS: usize = 300;

/// The RT a route posts to, as threading must know it: its `Organization` (in its
/// Message-IDs and pseudo-references) and its `rtname` (in subject tags), with the
/// queues' own subject tags where the site sets any; and the admin's two threading
/// settings for that RT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtIdentity {
    /// RT's `$Organization`. Empty: no marker ever matches (threading by marker off).
    pub organization: String,
    /// RT's `$rtname`.
    pub rtname: String,
    /// Queues' `SubjectTag` values (or a custom `EmailSubjectTagRegex`'s tags), tried in
    /// order after `rtname`, as RT does.
    pub queue_tags: Vec<String>,
    /// Whether a mail with no marker is threaded by the Message-IDs it answers
    /// ([`ThreadDecision::ByMessageId`]; `RT_THREAD_BY_MESSAGE_ID`, default on).
    pub by_message_id: bool,
    /// A reply (by marker or Message-ID) to a ticket resolved or rejected more than this
    /// many days ago opens a new ticket ([`ThreadTarget::NewAfterResolved`]); 0: never
    /// (`RT_REOPEN_AFTER_DAYS`, default 0, as RT itself reopens it).
    pub reopen_after_days: u64,
}

impl Default for RtIdentity {
    fn default() -> Self {
        Self {
            organization: String::new(),
            rtname: String::new(),
            queue_tags: Vec::new(),
            by_message_id: true,
            reopen_after_days: 0,
        }
    }
}

/// Where a ticket number was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// `RT-Ticket-N@Organization` (`PseudoReference`).
    PseudoReference,
    /// `rt-VERSION-PID-EPOCH-RAND.N-SCRIP-SENT@Organization` (`GenMessageId`).
    MessageId,
}

/// The gateway's threading decision for one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadDecision {
    /// The subject carries this RT's tag: RT threads it itself.
    BySubject {
        /// The ticket the tag names.
        ticket: u64,
    },
    /// RT's own marker in `References`/`In-Reply-To` names the ticket.
    ByRtMarker {
        /// The ticket the marker names.
        ticket: u64,
    },
    /// No marker: these Message-IDs (as RT stores them, most recent first) may be held by
    /// RT as a ticket's incoming mail.
    ByMessageId {
        /// At most [`MAX_MESSAGE_ID_CANDIDATES`] ids.
        candidates: Vec<String>,
    },
    /// A bounce of this RT's mail: to be a comment on the ticket.
    Bounce {
        /// The ticket whose mail bounced.
        ticket: u64,
        /// Who could not be reached, and why.
        failed_recipients: Vec<FailedRecipient>,
        /// The first status found (`5.1.1`), for the log and the comment.
        status: Option<String>,
    },
    /// Nothing to thread by: the mail goes where it would have gone.
    None,
}

impl ThreadDecision {
    /// A short stable name for logs and metrics: `subject`, `rt_marker`, `message_id`,
    /// `bounce` or `none`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::BySubject { .. } => "subject",
            Self::ByRtMarker { .. } => "rt_marker",
            Self::ByMessageId { .. } => "message_id",
            Self::Bounce { .. } => "bounce",
            Self::None => "none",
        }
    }

    /// The ticket decided, where one is (not for [`Self::ByMessageId`], which the adapter
    /// must first look up).
    pub fn ticket(&self) -> Option<u64> {
        match self {
            Self::BySubject { ticket } | Self::ByRtMarker { ticket } | Self::Bounce { ticket, .. } => Some(*ticket),
            Self::ByMessageId { .. } | Self::None => None,
        }
    }
}

/// One recipient a bounce reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedRecipient {
    /// The address (`Final-Recipient`, without its `rfc822;` type).
    pub address: String,
    /// `Action` (`failed`, `delayed`), lower-case, when reported.
    pub action: Option<String>,
    /// `Status` (`5.1.1`), when reported.
    pub status: Option<String>,
    /// `Diagnostic-Code` (or the bounce's own words), at most [`MAX_DIAGNOSTIC_CHARS`].
    pub diagnostic: Option<String>,
}

/// How a bounce was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceForm {
    /// RFC 3464: a `message/delivery-status` part.
    DeliveryStatus,
    /// A bounce in prose (qmail, Exim, old Sendmail).
    NonStandard,
}

/// What a bounce says: who failed, and which mail came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceReport {
    /// How it was written.
    pub form: BounceForm,
    /// Recipients not reached (failed or delayed), at most [`MAX_FAILED_RECIPIENTS`].
    pub failed_recipients: Vec<FailedRecipient>,
    /// The first status found.
    pub status: Option<String>,
    /// The returned mail's `Message-ID` (inside its brackets).
    pub returned_message_id: Option<String>,
    /// The returned mail's `References`, in order.
    pub returned_references: Vec<String>,
    /// The returned mail's `In-Reply-To`.
    pub returned_in_reply_to: Vec<String>,
    /// The bounce's own `References` then `In-Reply-To` (Exchange points them at the
    /// returned mail).
    pub own_references: Vec<String>,
    /// The bounce's own subject (Exchange keeps the returned mail's, with its tag).
    pub subject: Option<String>,
}

impl BounceReport {
    /// The ticket of this RT the bounce is about: the returned mail's first pseudo-
    /// reference, then its Message-ID, then its `In-Reply-To`, then RT's other markers in
    /// its `References`, then the bounce's own `References`/`In-Reply-To`.
    pub fn ticket(&self, organization: &str) -> Option<u64> {
        let marker = |id: &String| rt_marker(id, organization);
        let pseudo = |id: &String| marker(id).filter(|(kind, _)| *kind == MarkerKind::PseudoReference);
        self.returned_references
            .iter()
            .find_map(pseudo)
            .or_else(|| self.returned_message_id.as_ref().and_then(marker))
            .or_else(|| self.returned_in_reply_to.iter().find_map(marker))
            .or_else(|| self.returned_references.iter().rev().find_map(marker))
            .or_else(|| self.own_references.iter().find_map(marker))
            .map(|(_, ticket)| ticket)
    }

    /// A few lines saying who failed and why, for the comment posted on the ticket (and
    /// the log): one line per recipient, `address: status (action): diagnostic`.
    pub fn summary(&self) -> String {
        if self.failed_recipients.is_empty() {
            return match &self.status {
                Some(status) => format!("Delivery failed: status {status}"),
                None => "Delivery failed (no recipient named in the bounce)".to_string(),
            };
        }
        let mut out = String::from("Delivery failed for:\n");
        for r in &self.failed_recipients {
            out.push_str("  ");
            out.push_str(&r.address);
            if let Some(status) = &r.status {
                out.push_str(": ");
                out.push_str(status);
            }
            if let Some(action) = &r.action {
                out.push_str(&format!(" ({action})"));
            }
            if let Some(diagnostic) = &r.diagnostic {
                out.push_str(": ");
                out.push_str(diagnostic);
            }
            out.push('\n');
        }
        out
    }
}

/// The ticket a Message-ID names when it is one of this RT's markers: `id` is the text
/// inside the angle brackets. `None` for another Organization, ticket 0, or anything
/// that is not exactly one of RT's two forms.
pub fn rt_marker(id: &str, organization: &str) -> Option<(MarkerKind, u64)> {
    let organization = organization.trim();
    if organization.is_empty() {
        return None;
    }
    let (local, domain) = id.trim().rsplit_once('@')?;
    if !domain.trim().eq_ignore_ascii_case(organization) {
        return None;
    }
    if let Some(number) = strip_prefix_ignore_case(local, "RT-Ticket-") {
        return ticket_number(number).map(|n| (MarkerKind::PseudoReference, n));
    }
    let rest = strip_prefix_ignore_case(local, "rt-")?;
    // `VERSION-PID-EPOCH-RAND` `.` `N-SCRIP-SENT`: the last dot, as VERSION may hold dots.
    let (head, tail) = rest.rsplit_once('.')?;
    let mut tail_parts = tail.split('-');
    let (Some(ticket), Some(scrip), Some(sent), None) = (
        tail_parts.next(),
        tail_parts.next(),
        tail_parts.next(),
        tail_parts.next(),
    ) else {
        return None;
    };
    if !all_digits(scrip) || !all_digits(sent) {
        return None;
    }
    let mut head_parts = head.rsplitn(4, '-');
    let (Some(rand), Some(epoch), Some(pid), Some(version)) = (
        head_parts.next(),
        head_parts.next(),
        head_parts.next(),
        head_parts.next(),
    ) else {
        return None;
    };
    if version.is_empty() || !all_digits(rand) || !all_digits(epoch) || !all_digits(pid) {
        return None;
    }
    ticket_number(ticket).map(|n| (MarkerKind::MessageId, n))
}

/// The ticket the subject's tag of this RT names, as RT's `ParseTicketId` reads it:
/// `[rtname #N]` first (the first such tag in the subject decides, even when it names 0),
/// then each queue tag in turn. `None` when no tag names a ticket.
pub fn subject_ticket(subject: &str, rt: &RtIdentity) -> Option<u64> {
    let tags = std::iter::once(&rt.rtname).chain(rt.queue_tags.iter());
    for tag in tags.filter(|t| !t.is_empty()) {
        if let Some(number) = first_tag_number(subject, tag) {
            return ticket_number(number);
        }
    }
    None
}

/// The Message-IDs in a `References` or `In-Reply-To` value, in order, each the text
/// inside its angle brackets, at most [`MAX_IDS_PER_FIELD`]. A value with no bracket at
/// all (some clients) gives its whitespace- or comma-separated words that hold an `@`.
pub fn message_ids(value: &str) -> Vec<String> {
    let mut ids = Vec::new();
    if value.contains('<') {
        let mut rest = value;
        while ids.len() < MAX_IDS_PER_FIELD {
            let Some(open) = rest.find('<') else { break };
            let after = &rest[open + 1..];
            let Some(close) = after.find('>') else { break };
            let id = after[..close].trim();
            // A `<` inside is a lost bracket: start again from it.
            let id = id.rsplit('<').next().unwrap_or(id).trim();
            if !id.is_empty() {
                ids.push(id.to_string());
            }
            rest = &after[close + 1..];
        }
    } else {
        ids.extend(
            value
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|w| w.contains('@'))
                .take(MAX_IDS_PER_FIELD)
                .map(str::to_string),
        );
    }
    ids
}

/// A `Message-ID` header value as RT stores it (`RT::Attachment->Create`, facts §6): the
/// value unfolded, without its line end; the angle brackets removed only when they
/// enclose the whole value (`<a@b> (comment)` is kept as it is). `None` when empty.
pub fn rt_stored_message_id(value: &str) -> Option<String> {
    let unfolded: String = value.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let value = unfolded.trim_start();
    let inner = value
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .filter(|inner| !inner.contains('>'))
        .unwrap_or(value);
    (!inner.is_empty()).then(|| inner.to_string())
}

/// The threading fields of a header block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadFields {
    /// The subject, decoded (RFC 2047) as RT reads it.
    pub subject: Option<String>,
    /// Ids in `In-Reply-To` (every such field, in order).
    pub in_reply_to: Vec<String>,
    /// Ids in `References` (every such field, in order).
    pub references: Vec<String>,
}

impl ThreadFields {
    /// Reads a header block (see [`crate::core::headers::raw_fields`]; never fails).
    pub fn from_header_block(block: &[u8]) -> Self {
        let mut fields = Self::default();
        for (name, value) in raw_fields(block) {
            if name.eq_ignore_ascii_case("In-Reply-To") {
                extend_bounded(&mut fields.in_reply_to, message_ids(&value));
            } else if name.eq_ignore_ascii_case("References") {
                extend_bounded(&mut fields.references, message_ids(&value));
            }
        }
        fields.subject = decoded_subject(block);
        fields
    }

    /// This RT's ticket named by the markers, by the rule in the module doc (point 3).
    pub fn marker_ticket(&self, organization: &str) -> Option<u64> {
        let marker = |id: &String| rt_marker(id, organization);
        self.references
            .iter()
            .find_map(|id| marker(id).filter(|(kind, _)| *kind == MarkerKind::PseudoReference))
            .or_else(|| self.in_reply_to.iter().find_map(marker))
            .or_else(|| self.references.iter().rev().find_map(marker))
            .map(|(_, ticket)| ticket)
    }

    /// The Message-IDs to look up in RT, most recent first: `In-Reply-To`, then
    /// `References` from its end; without RT pseudo-references (of any Organization:
    /// they name no stored mail) and duplicates; at most [`MAX_MESSAGE_ID_CANDIDATES`].
    pub fn message_id_candidates(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.in_reply_to
            .iter()
            .chain(self.references.iter().rev())
            .filter(|id| !is_pseudo_reference(id))
            .filter_map(|id| rt_stored_message_id(id))
            .filter(|id| seen.insert(id.clone()))
            .take(MAX_MESSAGE_ID_CANDIDATES)
            .collect()
    }
}

/// The decision for a mail, from its header block and (when [`looks_like_bounce`] said so
/// and the adapter read it) its bounce report. See the module doc for the rule.
pub fn decide(header_block: &[u8], bounce: Option<&BounceReport>, rt: &RtIdentity) -> ThreadDecision {
    let fields = ThreadFields::from_header_block(header_block);
    let tagged = fields.subject.as_deref().and_then(|s| subject_ticket(s, rt));
    if let Some(report) = bounce {
        if let Some(ticket) = tagged.or_else(|| report.ticket(&rt.organization)) {
            return ThreadDecision::Bounce {
                ticket,
                failed_recipients: report.failed_recipients.clone(),
                status: report.status.clone(),
            };
        }
    }
    if let Some(ticket) = tagged {
        return ThreadDecision::BySubject { ticket };
    }
    if bounce.is_some() {
        // A bounce of no mail of ours: as today (threading a bounce by a stranger's
        // Message-ID would post it as correspondence).
        return ThreadDecision::None;
    }
    if let Some(ticket) = fields.marker_ticket(&rt.organization) {
        return ThreadDecision::ByRtMarker { ticket };
    }
    let candidates = if rt.by_message_id {
        fields.message_id_candidates()
    } else {
        Vec::new()
    };
    if candidates.is_empty() {
        ThreadDecision::None
    } else {
        ThreadDecision::ByMessageId { candidates }
    }
}

/// [`decide`] from the start of the mail (header and as much of the body as the caller
/// has, at least up to [`MAX_BOUNCE_SCAN`] bytes when it can): reads the bounce only when
/// the header suggests one.
pub fn decide_mail(mail_start: &[u8], rt: &RtIdentity) -> ThreadDecision {
    let header = header_block(mail_start);
    let bounce = if looks_like_bounce(&header) {
        read_bounce(mail_start)
    } else {
        None
    };
    decide(&header, bounce.as_ref(), rt)
}

/// Whether a header block suggests a bounce, cheaply (so the body is read only then):
/// `multipart/report` with `report-type=delivery-status`, Exim's `X-Failed-Recipients`,
/// a sender `MAILER-DAEMON@`/`postmaster@`, or an empty `Return-Path` with a bounce's
/// subject.
pub fn looks_like_bounce(header_block: &[u8]) -> bool {
    let fields = raw_fields(header_block);
    let value = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if value("Content-Type").is_some_and(is_delivery_report_type) || value("X-Failed-Recipients").is_some() {
        return true;
    }
    if value("From").is_some_and(is_mailer_daemon) {
        return true;
    }
    let null_return_path = fields
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("Return-Path") && v.replace(' ', "") == "<>");
    null_return_path && decoded_subject(header_block).is_some_and(|s| is_bounce_subject(&s))
}

/// Reads a bounce from the start of a mail (at most [`MAX_BOUNCE_SCAN`] bytes are looked
/// at; the rest may be absent). `None` when the mail is no bounce. Never panics.
pub fn read_bounce(mail_start: &[u8]) -> Option<BounceReport> {
    let bytes = &mail_start[..mail_start.len().min(MAX_BOUNCE_SCAN)];
    let header = header_block(bytes);
    let header = header.as_slice();
    let top = raw_fields(header);
    let top_value = |name: &str| {
        top.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let message = mail_parser::MessageParser::new().parse(bytes)?;

    let mut status_blocks: Vec<Vec<(String, String)>> = Vec::new();
    let mut returned: Option<Vec<(String, String)>> = None;
    let mut texts: Vec<String> = Vec::new();
    for part in message.parts.iter().skip(1) {
        let (ctype, subtype) = content_type_of(part);
        match (ctype.as_str(), subtype.as_str()) {
            ("message", "delivery-status") | ("message", "global-delivery-status") => {
                status_blocks.extend(field_blocks(&String::from_utf8_lossy(part.contents())));
            }
            // The first returned header is the returned mail's (an MTA adds no second).
            ("message", "rfc822") | ("message", "global") if returned.is_none() => {
                returned = Some(raw_fields(&header_block(part.contents())));
            }
            ("text", "rfc822-headers") | ("message", "global-headers") if returned.is_none() => {
                returned = Some(raw_fields(part.contents()));
            }
            ("text", "plain") => {
                if let Some(text) = part.text_contents() {
                    texts.push(text.to_string());
                }
            }
            _ => {}
        }
    }
    // A single-part bounce: its body is the text.
    if message.parts.len() == 1 {
        if let Some(text) = message.parts[0].text_contents() {
            texts.push(text.to_string());
        }
    }

    let is_report = top_value("Content-Type").is_some_and(|v| is_delivery_report_type(&v)) || !status_blocks.is_empty();
    let form = if is_report {
        BounceForm::DeliveryStatus
    } else if looks_like_bounce(header) {
        BounceForm::NonStandard
    } else {
        return None;
    };

    let mut report = BounceReport {
        form,
        failed_recipients: Vec::new(),
        status: None,
        returned_message_id: None,
        returned_references: Vec::new(),
        returned_in_reply_to: Vec::new(),
        own_references: Vec::new(),
        subject: decoded_subject(header),
    };
    for (name, value) in &top {
        if name.eq_ignore_ascii_case("References") || name.eq_ignore_ascii_case("In-Reply-To") {
            extend_bounded(&mut report.own_references, message_ids(value));
        }
    }

    // Per-recipient blocks: every block after the first (per-message) one; a block
    // without a recipient field is skipped.
    for block in status_blocks.iter() {
        if report.failed_recipients.len() >= MAX_FAILED_RECIPIENTS {
            break;
        }
        let get = |name: &str| {
            block
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        };
        let Some(recipient) = get("Final-Recipient").or_else(|| get("Original-Recipient")) else {
            continue;
        };
        let action = get("Action").map(|a| a.to_ascii_lowercase());
        if action
            .as_deref()
            .is_some_and(|a| matches!(a, "delivered" | "relayed" | "expanded"))
        {
            continue;
        }
        report.failed_recipients.push(FailedRecipient {
            address: address_of_type(&recipient),
            action,
            status: get("Status").and_then(|s| enhanced_status(&s)),
            diagnostic: get("Diagnostic-Code").map(|d| cut(&d)),
        });
    }

    match returned {
        Some(fields) => {
            for (name, value) in fields {
                take_returned_field(&mut report, &name, &value);
            }
        }
        None => {
            for text in &texts {
                for (name, value) in quoted_header_lines(text) {
                    take_returned_field(&mut report, &name, &value);
                }
            }
        }
    }

    if report.failed_recipients.is_empty() {
        report.failed_recipients = recipients_from_prose(top_value("X-Failed-Recipients").as_deref(), &texts);
    }
    report.status = report
        .failed_recipients
        .iter()
        .find_map(|r| r.status.clone())
        .or_else(|| texts.iter().find_map(|t| enhanced_status(t)));
    Some(report)
}

/// Puts one field of the returned mail's header into the report.
fn take_returned_field(report: &mut BounceReport, name: &str, value: &str) {
    if name.eq_ignore_ascii_case("Message-ID") {
        if report.returned_message_id.is_none() {
            report.returned_message_id = message_ids(value).into_iter().next();
        }
    } else if name.eq_ignore_ascii_case("References") {
        extend_bounded(&mut report.returned_references, message_ids(value));
    } else if name.eq_ignore_ascii_case("In-Reply-To") {
        extend_bounded(&mut report.returned_in_reply_to, message_ids(value));
    }
}

/// `Message-ID`, `References` and `In-Reply-To` lines a bounce quotes in its text
/// (possibly indented or behind `>`), each with its continuation lines.
fn quoted_header_lines(text: &str) -> Vec<(String, String)> {
    const NAMES: [&str; 3] = ["Message-ID", "References", "In-Reply-To"];
    let mut found: Vec<(String, String)> = Vec::new();
    let mut open = false;
    for line in text.lines() {
        let stripped = line.trim_start_matches(['>', ' ', '\t']);
        if open && !line.is_empty() && line.starts_with([' ', '\t']) && !stripped.contains(':') {
            if let Some((_, value)) = found.last_mut() {
                value.push(' ');
                value.push_str(stripped);
            }
            continue;
        }
        open = false;
        let Some((name, value)) = stripped.split_once(':') else {
            continue;
        };
        if let Some(known) = NAMES.iter().find(|n| n.eq_ignore_ascii_case(name.trim_end())) {
            found.push((known.to_string(), value.trim().to_string()));
            open = true;
        }
    }
    found
}

/// Failed recipients of a bounce in prose: Exim's `X-Failed-Recipients`, else the
/// `<address>:` lines of Postfix's and qmail's texts, each with the lines that follow
/// it (up to a blank line) as its diagnostic.
fn recipients_from_prose(x_failed: Option<&str>, texts: &[String]) -> Vec<FailedRecipient> {
    let mut out = Vec::new();
    if let Some(list) = x_failed {
        for address in list.split(',').map(str::trim).filter(|a| a.contains('@')) {
            if out.len() >= MAX_FAILED_RECIPIENTS {
                break;
            }
            let address = address.trim_matches(|c| c == '<' || c == '>').to_string();
            let diagnostic = texts.iter().find_map(|t| diagnostic_after(t, &address));
            out.push(FailedRecipient {
                status: diagnostic.as_deref().and_then(enhanced_status),
                address,
                action: Some("failed".to_string()),
                diagnostic,
            });
        }
        return out;
    }
    for text in texts {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if out.len() >= MAX_FAILED_RECIPIENTS {
                return out;
            }
            let line = line.trim();
            let Some(rest) = line.strip_prefix('<') else { continue };
            let Some((address, after)) = rest.split_once(">:") else {
                continue;
            };
            if !address.contains('@') || address.contains(char::is_whitespace) {
                continue;
            }
            let mut diagnostic = after.trim().to_string();
            for next in lines.iter().skip(i + 1).take_while(|l| !l.trim().is_empty()).take(5) {
                if next.trim_start().starts_with('<') {
                    break;
                }
                if !diagnostic.is_empty() {
                    diagnostic.push(' ');
                }
                diagnostic.push_str(next.trim());
            }
            let diagnostic = (!diagnostic.is_empty()).then(|| cut(&diagnostic));
            out.push(FailedRecipient {
                address: address.to_string(),
                action: Some("failed".to_string()),
                status: diagnostic.as_deref().and_then(enhanced_status),
                diagnostic,
            });
        }
    }
    out
}

/// The lines after the one naming `address` (Exim: the address alone on a line, then its
/// indented reason), up to a blank line.
fn diagnostic_after(text: &str, address: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|l| l.trim() != address);
    lines.next()?;
    let words: Vec<&str> = lines
        .take_while(|l| !l.trim().is_empty())
        .take(5)
        .map(str::trim)
        .collect();
    (!words.is_empty()).then(|| cut(&words.join(" ")))
}

/// The first RFC 3463 enhanced status code (`class.subject.detail`, class 2, 4 or 5) in a
/// text, when one stands alone as a word (`#5.1.1` and `(5.1.1)` count).
fn enhanced_status(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|w| w.trim_end_matches('.'))
        .find(|w| {
            let mut parts = w.split('.');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(class), Some(subject), Some(detail), None) => {
                    matches!(class, "2" | "4" | "5")
                        && (1..=3).contains(&subject.len())
                        && (1..=3).contains(&detail.len())
                        && all_digits(subject)
                        && all_digits(detail)
                }
                _ => false,
            }
        })
        .map(str::to_string)
}

/// `rfc822; a@b` → `a@b` (the address type of RFC 3464's recipient fields removed).
fn address_of_type(value: &str) -> String {
    let address = value.split_once(';').map_or(value, |(_, a)| a).trim();
    address.trim_matches(|c| c == '<' || c == '>').to_string()
}

/// RFC 3464's blocks of fields (separated by blank lines), leniently: a line that is no
/// field is skipped; a continuation line extends the field before it.
fn field_blocks(text: &str) -> Vec<Vec<(String, String)>> {
    let mut blocks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.lines() {
        let current = blocks.last_mut().expect("never empty");
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(Vec::new());
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            current.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    blocks.retain(|b| !b.is_empty());
    blocks
}

/// A part's content type, lower-case (`text/plain` when it has none, as MIME says).
fn content_type_of(part: &mail_parser::MessagePart<'_>) -> (String, String) {
    use mail_parser::MimeHeaders;
    match part.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase(),
        ),
        None => ("text".to_string(), "plain".to_string()),
    }
}

/// `multipart/report` whose `report-type` is `delivery-status` (or absent: a report
/// with no type given is most likely a DSN); not read receipts or abuse reports.
pub(crate) fn is_delivery_report_type(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    let mut params = lower.split(';').map(str::trim);
    if params.next() != Some("multipart/report") {
        return false;
    }
    let report_type = params
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim() == "report-type")
        .map(|(_, v)| v.trim().trim_matches('"').to_string());
    match report_type {
        None => true,
        Some(t) => t == "delivery-status" || t == "global-delivery-status",
    }
}

/// The subjects bounces are sent under (Postfix, Exchange, Exim, qmail, Sendmail, Gmail,
/// Notes), compared at the start and case-insensitively.
fn is_bounce_subject(subject: &str) -> bool {
    const STARTS: [&str; 10] = [
        "undelivered mail returned to sender",
        "undeliverable:",
        "undeliverable mail",
        "mail delivery failed",
        "failure notice",
        "returned mail:",
        "delivery status notification",
        "mail delivery system",
        "delivery failure",
        "non remis",
    ];
    let lower = subject.trim().to_lowercase();
    STARTS.iter().any(|s| lower.starts_with(s))
}

/// The header block at the start of a mail (up to and with its blank line; all of it
/// when there is none), as the spool collects it (bounded by
/// [`crate::core::headers::MAX_HEADER_BLOCK`]).
fn header_block(mail: &[u8]) -> Vec<u8> {
    let mut collector = HeaderBlockCollector::new();
    collector.push(mail);
    collector.finish().bytes
}

/// The decoded `Subject` of a header block.
fn decoded_subject(block: &[u8]) -> Option<String> {
    let block = &block[..block.len().min(crate::core::headers::MAX_HEADER_BLOCK)];
    mail_parser::MessageParser::new()
        .parse_headers(block)
        .and_then(|m| m.subject().map(str::to_string))
}

/// The digits of the first `[tag #N]` in the subject (RT's `\[TAG\s+\#(\d+)\s*\]`, `/i`).
fn first_tag_number<'s>(subject: &'s str, tag: &str) -> Option<&'s str> {
    let mut from = 0;
    while let Some(offset) = subject[from..].find('[') {
        let start = from + offset + 1;
        from = start;
        let Some(rest) = strip_prefix_ignore_case(&subject[start..], tag) else {
            continue;
        };
        let after_space = rest.trim_start();
        if after_space.len() == rest.len() {
            continue;
        }
        let Some(after_hash) = after_space.strip_prefix('#') else {
            continue;
        };
        let digits_end = after_hash
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after_hash.len());
        if digits_end == 0 {
            continue;
        }
        if after_hash[digits_end..].trim_start().starts_with(']') {
            return Some(&after_hash[..digits_end]);
        }
    }
    None
}

/// `text` without `prefix` at its start, compared case-insensitively (Unicode-aware, as
/// Perl's `/i`), or `None`.
fn strip_prefix_ignore_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let mut chars = text.char_indices();
    for expected in prefix.chars() {
        let (_, got) = chars.next()?;
        if got != expected && !got.to_lowercase().eq(expected.to_lowercase()) {
            return None;
        }
    }
    let end = chars.next().map_or(text.len(), |(i, _)| i);
    Some(&text[end..])
}

/// A ticket number: ASCII digits (at most 19, so it fits), not 0.
fn ticket_number(digits: &str) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !all_digits(digits) {
        return None;
    }
    digits.parse().ok().filter(|n| *n != 0)
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `RT-Ticket-…@…` of any Organization.
fn is_pseudo_reference(id: &str) -> bool {
    strip_prefix_ignore_case(id, "RT-Ticket-").is_some()
}

/// Appends up to [`MAX_IDS_PER_FIELD`] in all.
fn extend_bounded(into: &mut Vec<String>, more: Vec<String>) {
    let room = MAX_IDS_PER_FIELD.saturating_sub(into.len());
    into.extend(more.into_iter().take(room));
}

/// At most [`MAX_DIAGNOSTIC_CHARS`] characters, whitespace runs made one space.
fn cut(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let joined = words.join(" ");
    if joined.chars().count() <= MAX_DIAGNOSTIC_CHARS {
        return joined;
    }
    let mut short: String = joined.chars().take(MAX_DIAGNOSTIC_CHARS - 1).collect();
    short.push('…');
    short
}

/// What RT said of a ticket a mail names (REST 2's `GET /ticket/N?fields[Queue]=Name`,
/// as the lookup user: one request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketCheck {
    /// RT loads it: `ticket` is the id RT answers with (the one a merged ticket went
    /// into), in the queue with this id and (when RT gave it) name.
    Found {
        /// The ticket RT loads (after a merge, the one it was merged into).
        ticket: u64,
        /// Its queue's id.
        queue_id: u64,
        /// Its queue's name (`None` when RT gave none: no `SeeQueue`).
        queue_name: Option<String>,
        /// Its `Status` (`new`, `open`, `resolved`...).
        status: String,
        /// Its `Resolved` date, in seconds since the epoch (`None`: never resolved,
        /// RT's `1970-01-01T00:00:00Z`); see [`rt_datetime_secs`].
        resolved_secs: Option<i64>,
    },
    /// RT has no such ticket (404), or it is deleted.
    Missing,
    /// RT could not be asked, or would not say (no login, 403, a timeout): the reason.
    Unknown(String),
}

/// What RT holds of the Message-IDs a mail answers (the attachment search, then the
/// transactions holding the hits): the distinct tickets, in RT's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageIdSearch {
    /// The tickets whose transactions hold one of the Message-IDs as a top-level mail
    /// (only transactions on tickets count), each once; empty: none.
    Tickets(Vec<u64>),
    /// The tickets holding them, each already checked (RT's answer for each, as
    /// [`TicketCheck`]): the RT-side extra `mailgate-thread` answers with them in one
    /// request (`deploy/rt/lib/RT/REST2/Resource/MailgateThread.pm`).
    Checked(Vec<TicketCheck>),
    /// More than [`MAX_MESSAGE_ID_TICKETS`] transactions hold them: [`AsIs::Ambiguous`].
    TooMany,
    /// RT could not be asked, or would not say: the reason.
    Unknown(String),
}

/// At most this many tickets found by Message-ID are checked; more is
/// [`AsIs::Ambiguous`] at once (a Message-ID on that many tickets says nothing).
pub const MAX_MESSAGE_ID_TICKETS: usize = 3;

/// Why a mail is posted as it would be without threading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsIs {
    /// No marker of this RT (or a bounce of no mail of ours).
    NoMarker,
    /// The subject carries this RT's tag: RT threads it itself.
    Subject,
    /// Message-IDs RT holds on no ticket.
    UnknownMessageIds,
    /// The Message-IDs are on several tickets the route may reach (or on more than
    /// [`MAX_MESSAGE_ID_TICKETS`]): no one of them is the mail's.
    Ambiguous,
    /// The ticket named is not in RT (or deleted).
    Missing,
    /// The ticket is in another queue than the route's.
    OutOfQueue,
    /// RT could not say (or an earlier attempt may have posted without threading).
    Unchecked,
}

/// What a route posts for a mail once its [`ThreadDecision`] is checked against RT. Kept
/// in the route's record ([`crate::core::route_record::RouteRecord::thread`]) before the
/// post, so a retry posts exactly what the first attempt did, whatever RT says by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadTarget {
    /// Posted as without threading.
    AsIs(AsIs),
    /// Posted with the `ticket` field and the route's action (a reply by RT's marker).
    Reply {
        /// The ticket.
        ticket: u64,
    },
    /// Posted with the `ticket` field and the route's action: a reply to a mail RT
    /// holds on that ticket (by its Message-ID, e.g. a reply-all to the customer's own
    /// first mail).
    ReplyByMessageId {
        /// The ticket.
        ticket: u64,
    },
    /// Posted as a `comment` on the ticket (a bounce of RT's mail): never a
    /// correspondence that reopens the ticket or mails its requestors.
    Comment {
        /// The ticket.
        ticket: u64,
    },
    /// A reply to a ticket resolved long ago ([`ResolvedRule`]): posted as a new ticket
    /// (no `ticket` field), with [`RESOLVED_TICKET_HEADER`] naming the old one.
    NewAfterResolved {
        /// The old, resolved ticket.
        ticket: u64,
    },
}

/// The header put in front of a mail that replies to a long-resolved ticket
/// ([`ThreadTarget::NewAfterResolved`]): RT keeps it with the new ticket's first mail
/// (its full headers), where an admin (or a scrip linking the two) reads the old number.
pub const RESOLVED_TICKET_HEADER: &str = "X-RT-Mailgate-Resolved-Ticket";

impl ThreadTarget {
    /// A short stable name for the outcome line, the metric and the record: `none`,
    /// `subject`, `rt_marker`, `message_id`, `message_id_none`, `message_id_ambiguous`,
    /// `bounce`, `new_after_resolved`, `refused_missing`, `refused_queue`,
    /// `refused_unchecked`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::AsIs(AsIs::NoMarker) => "none",
            Self::AsIs(AsIs::Subject) => "subject",
            Self::AsIs(AsIs::UnknownMessageIds) => "message_id_none",
            Self::AsIs(AsIs::Ambiguous) => "message_id_ambiguous",
            Self::AsIs(AsIs::Missing) => "refused_missing",
            Self::AsIs(AsIs::OutOfQueue) => "refused_queue",
            Self::AsIs(AsIs::Unchecked) => "refused_unchecked",
            Self::Reply { .. } => "rt_marker",
            Self::ReplyByMessageId { .. } => "message_id",
            Self::Comment { .. } => "bounce",
            Self::NewAfterResolved { .. } => "new_after_resolved",
        }
    }

    /// The record's text: the label, and `:N` with a ticket.
    pub fn to_text(&self) -> String {
        match self.ticket_named() {
            Some(ticket) => format!("{}:{ticket}", self.label()),
            None => self.label().to_string(),
        }
    }

    /// Reads [`Self::to_text`]; `None` for anything else. A record of the first
    /// threading release holding `message_id` alone (Message-IDs not yet looked up,
    /// posted as without threading) reads as [`AsIs::UnknownMessageIds`]: posted the
    /// same way.
    pub fn from_text(text: &str) -> Option<Self> {
        let (label, ticket) = match text.split_once(':') {
            Some((label, n)) => (label, Some(n.parse::<u64>().ok().filter(|&n| n > 0)?)),
            None => (text, None),
        };
        let target = match (label, ticket) {
            ("rt_marker", Some(ticket)) => Self::Reply { ticket },
            ("message_id", Some(ticket)) => Self::ReplyByMessageId { ticket },
            ("bounce", Some(ticket)) => Self::Comment { ticket },
            ("new_after_resolved", Some(ticket)) => Self::NewAfterResolved { ticket },
            (_, Some(_)) => return None,
            ("none", None) => Self::AsIs(AsIs::NoMarker),
            ("subject", None) => Self::AsIs(AsIs::Subject),
            ("message_id_none" | "message_id", None) => Self::AsIs(AsIs::UnknownMessageIds),
            ("message_id_ambiguous", None) => Self::AsIs(AsIs::Ambiguous),
            ("refused_missing", None) => Self::AsIs(AsIs::Missing),
            ("refused_queue", None) => Self::AsIs(AsIs::OutOfQueue),
            ("refused_unchecked", None) => Self::AsIs(AsIs::Unchecked),
            _ => return None,
        };
        Some(target)
    }

    /// The ticket this target posts to, where it changes the post's `ticket` field.
    pub fn ticket(&self) -> Option<u64> {
        match self {
            Self::Reply { ticket } | Self::ReplyByMessageId { ticket } | Self::Comment { ticket } => Some(*ticket),
            Self::AsIs(_) | Self::NewAfterResolved { .. } => None,
        }
    }

    /// The ticket the target names (for a new ticket after a resolved one, the old).
    fn ticket_named(&self) -> Option<u64> {
        match self {
            Self::NewAfterResolved { ticket } => Some(*ticket),
            _ => self.ticket(),
        }
    }

    /// Changes the post: the `ticket` field; for a bounce the action `comment`; for a
    /// reply to a long-resolved ticket, [`RESOLVED_TICKET_HEADER`] after the other
    /// header lines put in front. The route's delivery id is made before and stays (a
    /// retry must find this post).
    pub fn apply(&self, request: &mut GatewayRequest) {
        match self {
            Self::Reply { ticket } | Self::ReplyByMessageId { ticket } => {
                request.ticket = Some(ticket.to_string().into_bytes())
            }
            Self::Comment { ticket } => {
                request.ticket = Some(ticket.to_string().into_bytes());
                request.action = Some(b"comment".to_vec());
            }
            Self::NewAfterResolved { ticket } => {
                request
                    .extra_headers
                    .extend_from_slice(format!("{RESOLVED_TICKET_HEADER}: {ticket}\n").as_bytes());
            }
            Self::AsIs(_) => {}
        }
    }
}

/// What must be asked of RT before the target is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// Check ticket N ([`checked_target`]).
    Ticket(u64),
    /// Search RT for these Message-IDs, then check the tickets found
    /// ([`message_id_target`]).
    MessageIds(Vec<String>),
}

/// The target before RT is asked: `Ok` when the decision alone settles it (nothing to
/// ask RT), `Err` with what RT must first be asked.
pub fn unchecked_target(decision: &ThreadDecision) -> Result<ThreadTarget, Ask> {
    match decision {
        ThreadDecision::BySubject { .. } => Ok(ThreadTarget::AsIs(AsIs::Subject)),
        ThreadDecision::None => Ok(ThreadTarget::AsIs(AsIs::NoMarker)),
        ThreadDecision::ByMessageId { candidates } => Err(Ask::MessageIds(candidates.clone())),
        ThreadDecision::ByRtMarker { ticket } | ThreadDecision::Bounce { ticket, .. } => Err(Ask::Ticket(*ticket)),
    }
}

/// The admin's rule for replies to resolved tickets (issue 22, point 4), as RT's
/// RepliesToResolved extension has it: a reply to a ticket whose status is `resolved`
/// or `rejected` (RT's inactive statuses in its default lifecycle; `deleted` is
/// [`TicketCheck::Missing`]) and whose `Resolved` date is more than `after_days` days
/// before `now_secs` opens a new ticket. `after_days` 0: never (RT reopens it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedRule {
    /// Days; 0 turns the rule off.
    pub after_days: u64,
    /// Now, in seconds since the epoch (the adapter's clock).
    pub now_secs: i64,
}

impl ResolvedRule {
    /// The rule off: every reply goes to its ticket.
    pub const OFF: Self = Self {
        after_days: 0,
        now_secs: 0,
    };

    /// Whether a reply to a ticket with this status and `Resolved` date opens a new one.
    pub fn opens_new(&self, status: &str, resolved_secs: Option<i64>) -> bool {
        let inactive = status.eq_ignore_ascii_case("resolved") || status.eq_ignore_ascii_case("rejected");
        let (true, true, Some(resolved)) = (self.after_days > 0, inactive, resolved_secs) else {
            return false;
        };
        let limit = i64::try_from(self.after_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        self.now_secs.saturating_sub(resolved) > limit
    }
}

/// A ticket RT found, once judged by the route's queue: `Ok((ticket, status, resolved))`
/// when the route may reach it, else why not.
fn reachable<'c>(check: &'c TicketCheck, route_queue: Option<&[u8]>) -> Result<(u64, &'c str, Option<i64>), AsIs> {
    let TicketCheck::Found {
        ticket,
        queue_id,
        queue_name,
        status,
        resolved_secs,
    } = check
    else {
        return Err(match check {
            TicketCheck::Missing => AsIs::Missing,
            _ => AsIs::Unchecked,
        });
    };
    let in_queue = match route_queue {
        None => true,
        Some(queue) if !queue.is_empty() && queue.iter().all(u8::is_ascii_digit) => {
            std::str::from_utf8(queue).ok().and_then(|q| q.parse::<u64>().ok()) == Some(*queue_id)
        }
        Some(queue) => match queue_name {
            Some(name) => name.as_bytes().eq_ignore_ascii_case(queue),
            None => return Err(AsIs::Unchecked),
        },
    };
    if !in_queue {
        return Err(AsIs::OutOfQueue);
    }
    Ok((*ticket, status.as_str(), *resolved_secs))
}

/// The target once RT answered for the ticket the decision names (issue 22, points 3
/// and 4): only a ticket RT loads, in the route's queue when the route names one (by
/// id, or by name without regard to ASCII case, as RT loads a queue), is posted to; RT's
/// own id is used (a merged ticket's new home). A reply to a ticket resolved long ago
/// (`rule`) opens a new ticket naming it; a bounce stays a comment whatever the status.
/// Anything else is posted as without threading.
pub fn checked_target(
    decision: &ThreadDecision,
    check: &TicketCheck,
    route_queue: Option<&[u8]>,
    rule: ResolvedRule,
) -> ThreadTarget {
    if let Ok(target) = unchecked_target(decision) {
        return target;
    }
    let (ticket, status, resolved) = match reachable(check, route_queue) {
        Ok(found) => found,
        Err(why) => return ThreadTarget::AsIs(why),
    };
    match decision {
        ThreadDecision::Bounce { .. } => ThreadTarget::Comment { ticket },
        _ if rule.opens_new(status, resolved) => ThreadTarget::NewAfterResolved { ticket },
        _ => ThreadTarget::Reply { ticket },
    }
}

/// The target of a mail threaded by Message-ID (issue 22, point 2), from RT's answer
/// for each ticket the search found ([`MessageIdSearch::Tickets`], each checked as a
/// marker's ticket is): no ticket is [`AsIs::UnknownMessageIds`]; of the tickets the
/// route may reach (merges followed, so two that went into one count once), exactly one
/// is the mail's ticket; several, or any RT could not say of among several, is
/// [`AsIs::Ambiguous`]; none is why the first could not be reached.
pub fn message_id_target(checks: &[TicketCheck], route_queue: Option<&[u8]>, rule: ResolvedRule) -> ThreadTarget {
    if checks.is_empty() {
        return ThreadTarget::AsIs(AsIs::UnknownMessageIds);
    }
    if checks.len() > MAX_MESSAGE_ID_TICKETS {
        return ThreadTarget::AsIs(AsIs::Ambiguous);
    }
    let judged: Vec<_> = checks.iter().map(|c| reachable(c, route_queue)).collect();
    let mut reached: Vec<(u64, &str, Option<i64>)> = Vec::new();
    for found in judged.iter().flatten() {
        if !reached.iter().any(|r| r.0 == found.0) {
            reached.push(*found);
        }
    }
    // Among several, one RT could not say of might be the mail's too.
    let unsure = checks.len() > 1 && judged.contains(&Err(AsIs::Unchecked));
    match reached.as_slice() {
        [_, _, ..] => ThreadTarget::AsIs(AsIs::Ambiguous),
        _ if unsure => ThreadTarget::AsIs(AsIs::Unchecked),
        [(ticket, status, resolved)] if rule.opens_new(status, *resolved) => {
            ThreadTarget::NewAfterResolved { ticket: *ticket }
        }
        [(ticket, ..)] => ThreadTarget::ReplyByMessageId { ticket: *ticket },
        [] => ThreadTarget::AsIs(judged[0].err().unwrap_or(AsIs::Unchecked)),
    }
}

/// RT's REST 2 date (`2026-12-06T08:09:55Z`, UTC) in seconds since the epoch; `None` for
/// RT's "not set" (`1970-01-01T00:00:00Z`) and anything unreadable.
pub fn rt_datetime_secs(text: &str) -> Option<i64> {
    let text = text.trim();
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let rest = &text[19..];
    if !(rest.is_empty() || rest == "Z" || rest == "+00:00") {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        all_digits(part).then(|| part.parse().ok()).flatten()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    (secs > 0).then_some(secs)
}

#[cfg(test)]
mod target_tests {
    use super::*;

    const OFF: ResolvedRule = ResolvedRule::OFF;
    /// 2026-12-06T00:00:00Z.
    const NOW: i64 = 1_796_515_200;
    const DAY: i64 = 86_400;

    fn found(ticket: u64, queue_id: u64, name: Option<&str>) -> TicketCheck {
        TicketCheck::Found {
            ticket,
            queue_id,
            queue_name: name.map(str::to_string),
            status: "open".into(),
            resolved_secs: None,
        }
    }

    fn resolved(ticket: u64, status: &str, days_ago: i64) -> TicketCheck {
        TicketCheck::Found {
            ticket,
            queue_id: 3,
            queue_name: Some("support".into()),
            status: status.into(),
            resolved_secs: Some(NOW - days_ago * DAY),
        }
    }

    #[test]
    fn a_marker_posts_to_the_ticket_rt_loads_in_the_routes_queue() {
        let marker = ThreadDecision::ByRtMarker { ticket: 7 };
        // A merged ticket: RT answers with the ticket it went into.
        assert_eq!(
            checked_target(&marker, &found(9, 3, None), None, OFF),
            ThreadTarget::Reply { ticket: 9 }
        );
        assert_eq!(
            checked_target(&marker, &found(7, 3, None), Some(b"3"), OFF),
            ThreadTarget::Reply { ticket: 7 }
        );
        let by_name = checked_target(&marker, &found(7, 3, Some("Support")), Some(b"support"), OFF);
        assert_eq!(by_name, ThreadTarget::Reply { ticket: 7 });
        let other = checked_target(&marker, &found(7, 3, Some("Sales")), Some(b"support"), OFF);
        assert_eq!(other, ThreadTarget::AsIs(AsIs::OutOfQueue));
        assert_eq!(
            checked_target(&marker, &found(7, 4, None), Some(b"3"), OFF),
            ThreadTarget::AsIs(AsIs::OutOfQueue)
        );
        assert_eq!(
            checked_target(&marker, &found(7, 3, None), Some(b"support"), OFF),
            ThreadTarget::AsIs(AsIs::Unchecked)
        );
        assert_eq!(
            checked_target(&marker, &TicketCheck::Missing, None, OFF),
            ThreadTarget::AsIs(AsIs::Missing)
        );
        let unknown = checked_target(&marker, &TicketCheck::Unknown("403".into()), None, OFF);
        assert_eq!(unknown, ThreadTarget::AsIs(AsIs::Unchecked));
    }

    #[test]
    fn a_bounce_becomes_a_comment_and_a_subject_tag_asks_nothing() {
        let bounce = ThreadDecision::Bounce {
            ticket: 5,
            failed_recipients: Vec::new(),
            status: None,
        };
        assert_eq!(
            checked_target(&bounce, &found(5, 1, None), None, OFF),
            ThreadTarget::Comment { ticket: 5 }
        );
        // Resolved long ago: still a comment (a comment reopens nothing).
        let rule = ResolvedRule {
            after_days: 30,
            now_secs: NOW,
        };
        assert_eq!(
            checked_target(&bounce, &resolved(5, "resolved", 400), None, rule),
            ThreadTarget::Comment { ticket: 5 }
        );
        assert_eq!(unchecked_target(&bounce), Err(Ask::Ticket(5)));
        assert_eq!(
            unchecked_target(&ThreadDecision::BySubject { ticket: 5 }),
            Ok(ThreadTarget::AsIs(AsIs::Subject))
        );
        assert_eq!(
            unchecked_target(&ThreadDecision::None),
            Ok(ThreadTarget::AsIs(AsIs::NoMarker))
        );
        let by_id = ThreadDecision::ByMessageId {
            candidates: vec!["a@b".into()],
        };
        assert_eq!(unchecked_target(&by_id), Err(Ask::MessageIds(vec!["a@b".into()])));
    }

    #[test]
    fn a_reply_to_a_ticket_resolved_long_ago_opens_a_new_one_when_the_admin_wants() {
        let marker = ThreadDecision::ByRtMarker { ticket: 7 };
        let rule = ResolvedRule {
            after_days: 30,
            now_secs: NOW,
        };
        let queue = Some(&b"support"[..]);
        assert_eq!(
            checked_target(&marker, &resolved(7, "resolved", 31), queue, rule),
            ThreadTarget::NewAfterResolved { ticket: 7 }
        );
        assert_eq!(
            checked_target(&marker, &resolved(7, "Rejected", 365), queue, rule),
            ThreadTarget::NewAfterResolved { ticket: 7 }
        );
        // Within the days, reopened since (Resolved stays set), or the rule off: RT's way.
        for (check, rule) in [
            (resolved(7, "resolved", 29), rule),
            (resolved(7, "open", 400), rule),
            (resolved(7, "resolved", 400), OFF),
        ] {
            assert_eq!(
                checked_target(&marker, &check, queue, rule),
                ThreadTarget::Reply { ticket: 7 },
                "{check:?} {rule:?}"
            );
        }
        // Never resolved (RT's 1970 date reads as none).
        assert!(!rule.opens_new("resolved", None));
        assert!(!rule.opens_new("resolved", rt_datetime_secs("1970-01-01T00:00:00Z")));
        // By Message-ID too.
        assert_eq!(
            message_id_target(&[resolved(7, "resolved", 31)], queue, rule),
            ThreadTarget::NewAfterResolved { ticket: 7 }
        );
        // The post: no ticket field, the old ticket named in a header put in front.
        let mut post = GatewayRequest {
            queue: Some(b"support".to_vec()),
            extra_headers: b"X-RT-Mailgate-Delivery: m.1\n".to_vec(),
            ..GatewayRequest::default()
        };
        ThreadTarget::NewAfterResolved { ticket: 7 }.apply(&mut post);
        assert_eq!(post.ticket, None);
        assert_eq!(
            post.extra_headers,
            b"X-RT-Mailgate-Delivery: m.1\nX-RT-Mailgate-Resolved-Ticket: 7\n"
        );
    }

    #[test]
    fn message_ids_thread_to_the_one_ticket_the_route_may_reach() {
        let queue = Some(&b"support"[..]);
        let support = |t| found(t, 3, Some("support"));
        let sales = |t| found(t, 4, Some("sales"));
        assert_eq!(
            message_id_target(&[], queue, OFF),
            ThreadTarget::AsIs(AsIs::UnknownMessageIds)
        );
        assert_eq!(
            message_id_target(&[support(5)], queue, OFF),
            ThreadTarget::ReplyByMessageId { ticket: 5 }
        );
        // The same mail on a support and a sales ticket (two routes): the route's queue's.
        assert_eq!(
            message_id_target(&[sales(4), support(5)], queue, OFF),
            ThreadTarget::ReplyByMessageId { ticket: 5 }
        );
        // Two that were merged into one are one.
        assert_eq!(
            message_id_target(&[support(9), support(9)], queue, OFF),
            ThreadTarget::ReplyByMessageId { ticket: 9 }
        );
        // Two reachable, or a route naming no queue with two: ambiguous.
        assert_eq!(
            message_id_target(&[support(5), support(6)], queue, OFF),
            ThreadTarget::AsIs(AsIs::Ambiguous)
        );
        assert_eq!(
            message_id_target(&[sales(4), support(5)], None, OFF),
            ThreadTarget::AsIs(AsIs::Ambiguous)
        );
        let many: Vec<_> = (1..=MAX_MESSAGE_ID_TICKETS as u64 + 1).map(support).collect();
        assert_eq!(
            message_id_target(&many, queue, OFF),
            ThreadTarget::AsIs(AsIs::Ambiguous)
        );
        // One RT couldn't say of among several: it might be the mail's.
        let unknown = TicketCheck::Unknown("timeout".into());
        assert_eq!(
            message_id_target(&[unknown.clone(), support(5)], queue, OFF),
            ThreadTarget::AsIs(AsIs::Unchecked)
        );
        // None reachable: why the first is not.
        assert_eq!(
            message_id_target(&[sales(4)], queue, OFF),
            ThreadTarget::AsIs(AsIs::OutOfQueue)
        );
        assert_eq!(
            message_id_target(&[TicketCheck::Missing, sales(4)], queue, OFF),
            ThreadTarget::AsIs(AsIs::Missing)
        );
        assert_eq!(
            message_id_target(&[unknown], queue, OFF),
            ThreadTarget::AsIs(AsIs::Unchecked)
        );
    }

    #[test]
    fn rt_dates_read_as_epoch_seconds() {
        assert_eq!(rt_datetime_secs("2026-12-06T00:00:00Z"), Some(NOW));
        assert_eq!(
            rt_datetime_secs("2026-12-06T08:09:55Z"),
            Some(NOW + 8 * 3600 + 9 * 60 + 55)
        );
        assert_eq!(rt_datetime_secs("2000-02-29 12:00:00"), Some(951_825_600));
        assert_eq!(rt_datetime_secs("1970-01-01T00:00:00Z"), None);
        for bad in [
            "",
            "not a date",
            "2026-13-01T00:00:00Z",
            "2026-12-06T00:00:00+02:00",
            "２０２６-12-06T00:00:00Z",
        ] {
            assert_eq!(rt_datetime_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_target_changes_the_post_but_not_its_identity_and_reads_back_from_the_record() {
        let route = GatewayRequest {
            queue: Some(b"support".to_vec()),
            action: Some(b"correspond".to_vec()),
            ..GatewayRequest::default()
        };
        let fingerprint = route.fingerprint();
        for target in [
            ThreadTarget::Reply { ticket: 12 },
            ThreadTarget::ReplyByMessageId { ticket: 12 },
            ThreadTarget::Comment { ticket: 12 },
            ThreadTarget::NewAfterResolved { ticket: 12 },
            ThreadTarget::AsIs(AsIs::NoMarker),
            ThreadTarget::AsIs(AsIs::Subject),
            ThreadTarget::AsIs(AsIs::UnknownMessageIds),
            ThreadTarget::AsIs(AsIs::Ambiguous),
            ThreadTarget::AsIs(AsIs::Missing),
            ThreadTarget::AsIs(AsIs::OutOfQueue),
            ThreadTarget::AsIs(AsIs::Unchecked),
        ] {
            assert_eq!(ThreadTarget::from_text(&target.to_text()), Some(target), "{target:?}");
            let mut posted = route.clone();
            target.apply(&mut posted);
            assert_eq!(posted.ticket, target.ticket().map(|t| t.to_string().into_bytes()));
            // The delivery id is made from the route before threading: unchanged.
            assert_eq!(route.fingerprint(), fingerprint);
        }
        assert_eq!(
            ThreadTarget::NewAfterResolved { ticket: 12 }.to_text(),
            "new_after_resolved:12"
        );
        // A record of the first threading release.
        assert_eq!(
            ThreadTarget::from_text("message_id"),
            Some(ThreadTarget::AsIs(AsIs::UnknownMessageIds))
        );
        let mut comment = route.clone();
        ThreadTarget::Comment { ticket: 12 }.apply(&mut comment);
        assert_eq!(comment.action.as_deref(), Some(&b"comment"[..]));
        for bad in [
            "",
            "rt_marker",
            "rt_marker:0",
            "rt_marker:x",
            "none:3",
            "bounce:-1",
            "new_after_resolved",
            "other",
        ] {
            assert_eq!(ThreadTarget::from_text(bad), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test RT: `rtname` and `Organization` differ, as they may in RT.
    fn rt() -> RtIdentity {
        RtIdentity {
            organization: "rt.acme.example".to_string(),
            rtname: "acme".to_string(),
            queue_tags: vec!["Acme Billing".to_string()],
            ..RtIdentity::default()
        }
    }

    /// RT's Message-ID on Debian's RT 5.0.3 (`GenMessageId`: VERSION with `+`, `~`, `-`).
    const RT_MSGID: &str = "rt-5.0.3+dfsg-3~deb12u2-1234-1700000000-1593.42-4-0@rt.acme.example";

    /// The header of an autoreply RT 5 sent for ticket 42 (facts §7: `SendEmail.pm`,
    /// `Interface/Email.pm`), answering Alice's first mail `<CAF=abc123@mail.gmail.com>`.
    fn rt_outgoing() -> String {
        format!(
            "Return-Path: <rt@rt.acme.example>\r\n\
             Subject: [acme #42] AutoReply: Printer on fire\r\n\
             From: \"General via RT\" <rt@rt.acme.example>\r\n\
             Reply-To: rt@rt.acme.example\r\n\
             In-Reply-To: <CAF=abc123@mail.gmail.com>\r\n\
             References: <RT-Ticket-42@rt.acme.example> <CAF=abc123@mail.gmail.com>\r\n\
             Message-ID: <{RT_MSGID}>\r\n\
             Precedence: bulk\r\n\
             X-RT-Loop-Prevention: acme\r\n\
             X-RT-Ticket: acme #42\r\n\
             X-Managed-by: RT 5.0.3+dfsg-3~deb12u2 (http://www.bestpractical.com/rt/)\r\n\
             X-RT-Originator: alice@customer.example\r\n\
             To: alice@customer.example\r\n\
             Content-Type: text/plain; charset=\"utf-8\"\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             MIME-Version: 1.0\r\n\
             Date: Tue, 14 Nov 2023 22:14:59 +0000\r\n\
             \r\n"
        )
    }

    /// Alice's reply to RT's autoreply from Thunderbird, her subject edited (tag gone).
    fn customer_reply(subject: &str) -> String {
        format!(
            "From: Alice <alice@customer.example>\r\n\
             To: support@acme.example\r\n\
             Subject: {subject}\r\n\
             Message-ID: <8f3c2a1e-77d0-4c1b-9a4e-0b6f2d9e1c11@customer.example>\r\n\
             In-Reply-To: <{RT_MSGID}>\r\n\
             References: <RT-Ticket-42@rt.acme.example> <CAF=abc123@mail.gmail.com>\r\n\
             \x20<{RT_MSGID}>\r\n\
             User-Agent: Mozilla Thunderbird\r\n\
             \r\n\
             It is still burning.\r\n"
        )
    }

    #[test]
    fn rt_markers_of_this_organization_are_read() {
        assert_eq!(
            rt_marker("RT-Ticket-42@rt.acme.example", "rt.acme.example"),
            Some((MarkerKind::PseudoReference, 42))
        );
        assert_eq!(
            rt_marker(RT_MSGID, "rt.acme.example"),
            Some((MarkerKind::MessageId, 42))
        );
        // Organization compared without regard to case; RT's prefix likewise.
        assert_eq!(
            rt_marker("rt-ticket-7@RT.Acme.Example", "rt.acme.example"),
            Some((MarkerKind::PseudoReference, 7))
        );
        // Upstream RT's plain version; a web-UI id (`.N-0-0`).
        assert_eq!(
            rt_marker(
                "rt-5.0.5-98765-1712345678-17.1234-0-0@rt.acme.example",
                "rt.acme.example"
            ),
            Some((MarkerKind::MessageId, 1234))
        );
        // A version with dots and dashes of its own: the last `.N-N-N` group counts.
        assert_eq!(
            rt_marker(
                "rt-6.0.0-rc.1-7-1712345678-1999.8-12-3@rt.acme.example",
                "rt.acme.example"
            ),
            Some((MarkerKind::MessageId, 8))
        );
    }

    #[test]
    fn other_organizations_ticket_zero_and_lookalikes_are_no_marker() {
        let org = "rt.acme.example";
        for id in [
            "RT-Ticket-42@other.example",                     // another RT
            "RT-Ticket-42@rt.acme.example.evil",              // not the same domain
            "RT-Ticket-0@rt.acme.example",                    // no ticket
            "RT-Ticket-@rt.acme.example",                     // no number
            "RT-Ticket-4x2@rt.acme.example",                  // not a number
            "RT-Ticket-99999999999999999999@rt.acme.example", // too large
            "rt-5.0.3-1-2-3.0-4-0@rt.acme.example",           // ticket 0: a mail of no ticket
            "rt-5.0.3-1-2-3.42-4@rt.acme.example",            // two groups, not three
            "rt-5.0.3-1-2-x.42-4-0@rt.acme.example",          // RAND not digits
            "rt--1-2-3.42-4-0@rt.acme.example",               // no VERSION
            "rt-1-2.42-4-0@rt.acme.example",                  // PID-EPOCH-RAND incomplete
            "CAF=abc123@mail.gmail.com",
            "",
            "@",
        ] {
            assert_eq!(rt_marker(id, org), None, "{id}");
        }
        // No Organization configured: threading by marker is off.
        assert_eq!(rt_marker("RT-Ticket-42@rt.acme.example", ""), None);
    }

    #[test]
    fn subject_tags_are_read_as_rt_does() {
        let rt = rt();
        let tag = |s: &str| subject_ticket(s, &rt);
        assert_eq!(tag("[acme #42] AutoReply: Printer on fire"), Some(42));
        assert_eq!(tag("Re: [ACME  #42 ] Printer"), Some(42));
        assert_eq!(tag("Fwd: Re: [acme #42]"), Some(42));
        assert_eq!(tag("[acme\t#7]"), Some(7));
        // The first tag decides, even one naming 0 (RT: `return undef unless $id`).
        assert_eq!(tag("[acme #5] about [acme #6]"), Some(5));
        assert_eq!(tag("[acme #0] about [acme #6]"), None);
        // Not this RT's tag, or not a tag at all.
        assert_eq!(tag("[other #42] Printer"), None);
        assert_eq!(tag("[acmecorp #42] Printer"), None);
        assert_eq!(tag("[acme#42] no space"), None);
        assert_eq!(tag("[acme #42 Printer"), None);
        assert_eq!(tag("acme #42"), None);
        assert_eq!(tag(""), None);
        // A queue's own SubjectTag, tried after rtname.
        assert_eq!(tag("Re: [Acme Billing #9] Invoice"), Some(9));
        assert_eq!(tag("[acme #3] [Acme Billing #9]"), Some(3));
        // Multi-byte text around and inside tags never panics.
        assert_eq!(tag("Ré: [ä [acme #11] ü]"), Some(11));
        let unicode = RtIdentity {
            rtname: "Ünïcode".to_string(),
            ..rt.clone()
        };
        assert_eq!(subject_ticket("[üNÏCODE #12]", &unicode), Some(12));
    }

    #[test]
    fn message_ids_are_read_from_any_writing() {
        assert_eq!(message_ids("<a@x> <b@y>\t<c@z>"), ["a@x", "b@y", "c@z"]);
        // Exchange and iOS separate with commas (GitLab's `scan_fallback_references`).
        assert_eq!(message_ids("<a@x>,<b@y>, <c@z>"), ["a@x", "b@y", "c@z"]);
        // Comments and junk around the brackets.
        assert_eq!(message_ids("<a@x> (Alice's message of Monday)"), ["a@x"]);
        // No brackets at all.
        assert_eq!(message_ids("a@x, b@y junk"), ["a@x", "b@y"]);
        // A lost bracket, an unclosed one, an empty pair.
        assert_eq!(message_ids("<broken <a@x> <> <unclosed@y"), ["a@x"]);
        assert!(message_ids("").is_empty());
        // Bounded.
        let many = "<x@y> ".repeat(MAX_IDS_PER_FIELD * 3);
        assert_eq!(message_ids(&many).len(), MAX_IDS_PER_FIELD);
    }

    #[test]
    fn message_ids_are_written_as_rt_stores_them() {
        assert_eq!(rt_stored_message_id("<a@b>").as_deref(), Some("a@b"));
        assert_eq!(rt_stored_message_id(" <a@b>\r\n").as_deref(), Some("a@b"));
        assert_eq!(
            rt_stored_message_id("<a@b> (comment)").as_deref(),
            Some("<a@b> (comment)")
        );
        assert_eq!(rt_stored_message_id("a@b").as_deref(), Some("a@b"));
        assert_eq!(rt_stored_message_id("<a@\r\n b>").as_deref(), Some("a@ b"));
        assert_eq!(rt_stored_message_id(""), None);
        assert_eq!(rt_stored_message_id("<>"), None);
    }

    #[test]
    fn a_subject_tag_always_wins() {
        let mail = customer_reply("Re: [acme #7] Printer on fire");
        assert_eq!(
            decide(mail.as_bytes(), None, &rt()),
            ThreadDecision::BySubject { ticket: 7 }
        );
    }

    #[test]
    fn a_reply_without_its_tag_threads_by_rt_markers() {
        let mail = customer_reply("Re: Printer on fire");
        let decision = decide(mail.as_bytes(), None, &rt());
        assert_eq!(decision, ThreadDecision::ByRtMarker { ticket: 42 });
        assert_eq!(decision.label(), "rt_marker");
        assert_eq!(decision.ticket(), Some(42));
        // RT's own outgoing mail read as a reply would be (its References are the reply's).
        let fields = ThreadFields::from_header_block(rt_outgoing().as_bytes());
        assert_eq!(fields.marker_ticket("rt.acme.example"), Some(42));
        assert_eq!(fields.subject.as_deref(), Some("[acme #42] AutoReply: Printer on fire"));
    }

    #[test]
    fn the_first_pseudo_reference_wins_then_in_reply_to() {
        // A reply that names two tickets: References' first pseudo-reference wins.
        let mail = "Subject: Re: both\r\n\
                    In-Reply-To: <rt-5.0.5-1-2-3.8-1-0@rt.acme.example>\r\n\
                    References: <RT-Ticket-5@rt.acme.example> <x@y> <RT-Ticket-8@rt.acme.example>\r\n\r\n";
        assert_eq!(
            decide(mail.as_bytes(), None, &rt()),
            ThreadDecision::ByRtMarker { ticket: 5 }
        );
        // No pseudo-reference (a client that kept only the last References): In-Reply-To.
        let mail = "Subject: Re: both\r\n\
                    In-Reply-To: <rt-5.0.5-1-2-3.8-1-0@rt.acme.example>\r\n\
                    References: <rt-5.0.5-1-2-3.5-1-0@rt.acme.example> <x@y>\r\n\r\n";
        assert_eq!(
            decide(mail.as_bytes(), None, &rt()),
            ThreadDecision::ByRtMarker { ticket: 8 }
        );
        // Only RT ids in References: the most recent (last) one.
        let mail = "Subject: Re\r\n\
                    References: <rt-5.0.5-1-2-3.5-1-0@rt.acme.example> <rt-5.0.5-1-2-3.6-1-0@rt.acme.example>\r\n\r\n";
        assert_eq!(
            decide(mail.as_bytes(), None, &rt()),
            ThreadDecision::ByRtMarker { ticket: 6 }
        );
        // A pseudo-reference of another RT never wins over ours.
        let mail = "Subject: Re\r\n\
                    References: <RT-Ticket-1@other.example> <RT-Ticket-9@rt.acme.example>\r\n\r\n";
        assert_eq!(
            decide(mail.as_bytes(), None, &rt()),
            ThreadDecision::ByRtMarker { ticket: 9 }
        );
    }

    #[test]
    fn a_reply_all_to_the_customers_own_mail_is_looked_up_by_message_id() {
        // Bob answers Alice's first mail (which made ticket 42), copying RT.
        let mail = "From: Bob <bob@customer.example>\r\n\
                    Subject: Re: Printer on fire\r\n\
                    Message-ID: <b0b@customer.example>\r\n\
                    In-Reply-To: <CAF=abc123@mail.gmail.com>\r\n\
                    References: <CAF=abc123@mail.gmail.com>\r\n\r\n";
        let decision = decide(mail.as_bytes(), None, &rt());
        assert_eq!(
            decision,
            ThreadDecision::ByMessageId {
                candidates: vec!["CAF=abc123@mail.gmail.com".to_string()]
            }
        );
        assert_eq!(decision.label(), "message_id");
        assert_eq!(decision.ticket(), None);
        // RT_THREAD_BY_MESSAGE_ID=false: no search, as without threading.
        let off = RtIdentity {
            by_message_id: false,
            ..rt()
        };
        assert_eq!(decide(mail.as_bytes(), None, &off), ThreadDecision::None);
        // RT's markers still thread with it off.
        let reply = customer_reply("Re: Printer on fire");
        assert_eq!(decide(reply.as_bytes(), None, &off).label(), "rt_marker");
    }

    #[test]
    fn message_id_candidates_are_recent_first_bounded_and_never_pseudo_references() {
        let mail = "Subject: Re\r\n\
                    In-Reply-To: <p@x>\r\n\
                    References: <RT-Ticket-3@other.example> <a@x> <b@x> <c@x> <d@x> <e@x> <f@x> <p@x>\r\n\r\n";
        let fields = ThreadFields::from_header_block(mail.as_bytes());
        assert_eq!(fields.message_id_candidates(), ["p@x", "f@x", "e@x", "d@x", "c@x"]);
        assert_eq!(fields.message_id_candidates().len(), MAX_MESSAGE_ID_CANDIDATES);
    }

    #[test]
    fn another_rts_markers_never_thread_here() {
        // A reply to a mail of another RT (Organization other.example).
        let mail = "Subject: Re: [other #42] Their ticket\r\n\
                    In-Reply-To: <rt-5.0.3-1-2-3.42-4-0@other.example>\r\n\
                    References: <RT-Ticket-42@other.example> <rt-5.0.3-1-2-3.42-4-0@other.example>\r\n\r\n";
        let decision = decide(mail.as_bytes(), None, &rt());
        // Only the real Message-ID is left to look up (RT holds it only if that RT wrote
        // to ours); never ticket 42 here.
        assert_eq!(
            decision,
            ThreadDecision::ByMessageId {
                candidates: vec!["rt-5.0.3-1-2-3.42-4-0@other.example".to_string()]
            }
        );
    }

    #[test]
    fn an_outlook_reply_with_comma_separated_references_threads() {
        let mail = "From: Carol <carol@customer.example>\r\n\
                    Subject: RE: Printer on fire\r\n\
                    Thread-Topic: Printer on fire\r\n\
                    References: <RT-Ticket-42@rt.acme.example>,<CAF=abc123@mail.gmail.com>\r\n\r\n";
        assert_eq!(
            decide(mail.as_bytes(), None, &rt()),
            ThreadDecision::ByRtMarker { ticket: 42 }
        );
    }

    #[test]
    fn an_out_of_office_reply_threads_by_marker_and_is_screened_as_such() {
        // Threading decides the ticket; the machine-mail screen how it is posted.
        let ooo = format!(
            "From: Alice <alice@gmail.com>\r\n\
             Subject: Out of office until Monday\r\n\
             In-Reply-To: <{RT_MSGID}>\r\n\
             References: <RT-Ticket-42@rt.acme.example> <{RT_MSGID}>\r\n\
             Auto-Submitted: auto-replied\r\n\r\n"
        );
        assert_eq!(
            decide_mail(ooo.as_bytes(), &rt()),
            ThreadDecision::ByRtMarker { ticket: 42 }
        );
        let screened = crate::core::machine_mail::classify(ooo.as_bytes()).map(|m| m.kind);
        assert_eq!(screened, Some(crate::core::machine_mail::MachineKind::OutOfOffice));
    }

    #[test]
    fn a_mail_with_nothing_to_thread_by_is_none() {
        let decision = decide(b"From: a@b\r\nSubject: New problem\r\n\r\n", None, &rt());
        assert_eq!(decision, ThreadDecision::None);
        assert_eq!(decision.label(), "none");
        assert_eq!(decide(b"", None, &rt()), ThreadDecision::None);
        assert_eq!(decide(b"\x00\xff garbage", None, &rt()), ThreadDecision::None);
    }

    /// A Postfix DSN of RT's mail to ticket 42's requester (Postfix 3.7's `bounce`
    /// templates; the returned mail is RT's own, whole).
    fn postfix_dsn() -> String {
        format!(
            "Return-Path: <>\r\n\
             Received: by mx.customer.example (Postfix) id 9B0A51C0B8; Tue, 14 Nov 2023 22:15:00 +0000 (UTC)\r\n\
             Date: Tue, 14 Nov 2023 22:15:00 +0000 (UTC)\r\n\
             From: MAILER-DAEMON@mx.customer.example (Mail Delivery System)\r\n\
             Subject: Undelivered Mail Returned to Sender\r\n\
             To: rt@rt.acme.example\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"9B0A51C0B8.1700000100/mx.customer.example\"\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             Message-Id: <20231114221500.9B0A51C0B8@mx.customer.example>\r\n\
             \r\n\
             This is a MIME-encapsulated message.\r\n\
             \r\n\
             --9B0A51C0B8.1700000100/mx.customer.example\r\n\
             Content-Description: Notification\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\
             \r\n\
             This is the mail system at host mx.customer.example.\r\n\
             \r\n\
             I'm sorry to have to inform you that your message could not\r\n\
             be delivered to one or more recipients. It's attached below.\r\n\
             \r\n\
             \x20                  The mail system\r\n\
             \r\n\
             <alice@customer.example>: host mail.customer.example[192.0.2.25] said: 550\r\n\
             \x20   5.1.1 <alice@customer.example>: Recipient address rejected: User unknown in\r\n\
             \x20   local recipient table (in reply to RCPT TO command)\r\n\
             \r\n\
             --9B0A51C0B8.1700000100/mx.customer.example\r\n\
             Content-Description: Delivery report\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns; mx.customer.example\r\n\
             X-Postfix-Queue-ID: 9B0A51C0B8\r\n\
             X-Postfix-Sender: rfc822; rt@rt.acme.example\r\n\
             Arrival-Date: Tue, 14 Nov 2023 22:14:59 +0000 (UTC)\r\n\
             \r\n\
             Final-Recipient: rfc822; alice@customer.example\r\n\
             Original-Recipient: rfc822;alice@customer.example\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Remote-MTA: dns; mail.customer.example\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 <alice@customer.example>: Recipient address\r\n\
             \x20   rejected: User unknown in local recipient table\r\n\
             \r\n\
             --9B0A51C0B8.1700000100/mx.customer.example\r\n\
             Content-Description: Undelivered Message\r\n\
             Content-Type: message/rfc822\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             \r\n\
             {rt}We received your request.\r\n\
             \r\n\
             --9B0A51C0B8.1700000100/mx.customer.example--\r\n",
            rt = rt_outgoing().replace("[acme #42] ", "")
        )
    }

    /// An Exchange Online NDR of the same mail: the returned header only
    /// (`text/rfc822-headers`), the NDR's own `In-Reply-To`/`References` pointing at it,
    /// and the original subject (with RT's tag) after `Undeliverable:`.
    fn exchange_ndr(subject: &str) -> String {
        format!(
            "From: Microsoft Outlook <postmaster@customer.example>\r\n\
             To: <rt@rt.acme.example>\r\n\
             Date: Tue, 14 Nov 2023 22:15:02 +0000\r\n\
             Content-Type: multipart/report; report-type=delivery-status;\r\n\
             \tboundary=\"b1_7c2f\"\r\n\
             X-MS-Exchange-Message-Is-Ndr:\r\n\
             Content-Language: en-US\r\n\
             Message-ID: <3c1f0b8e-9d7a-4f0e-b1a2-5e6d7c8b9a01@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>\r\n\
             In-Reply-To: <{RT_MSGID}>\r\n\
             References: <RT-Ticket-42@rt.acme.example>\r\n\
             \x20<{RT_MSGID}>\r\n\
             Subject: {subject}\r\n\
             Auto-Submitted: auto-replied\r\n\
             MIME-Version: 1.0\r\n\
             \r\n\
             --b1_7c2f\r\n\
             Content-Type: multipart/alternative; boundary=\"b2_9a1e\"\r\n\
             \r\n\
             --b2_9a1e\r\n\
             Content-Type: text/plain; charset=\"us-ascii\"\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n\
             Your message to alice@customer.example couldn't be delivered.\r\n\
             alice wasn't found at customer.example.\r\n\
             \r\n\
             --b2_9a1e\r\n\
             Content-Type: text/html; charset=\"us-ascii\"\r\n\
             \r\n\
             <html><body><p>Your message couldn't be delivered.</p></body></html>\r\n\
             --b2_9a1e--\r\n\
             \r\n\
             --b1_7c2f\r\n\
             Content-Type: message/delivery-status\r\n\
             \r\n\
             Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.exchangelabs.com\r\n\
             Received-From-MTA: dns;mail.rt.acme.example\r\n\
             Arrival-Date: Tue, 14 Nov 2023 22:14:59 +0000\r\n\
             \r\n\
             Final-Recipient: rfc822;alice@customer.example\r\n\
             Action: failed\r\n\
             Status: 5.1.10\r\n\
             Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup\r\n\
             \r\n\
             --b1_7c2f\r\n\
             Content-Type: text/rfc822-headers\r\n\
             \r\n\
             {rt}\
             --b1_7c2f--\r\n",
            rt = rt_outgoing()
        )
    }

    #[test]
    fn a_postfix_dsn_of_rts_mail_is_a_bounce_on_its_ticket() {
        let dsn = postfix_dsn();
        assert!(looks_like_bounce(dsn.as_bytes()));
        let report = read_bounce(dsn.as_bytes()).expect("a bounce");
        assert_eq!(report.form, BounceForm::DeliveryStatus);
        assert_eq!(report.returned_message_id.as_deref(), Some(RT_MSGID));
        assert_eq!(
            report.returned_references,
            ["RT-Ticket-42@rt.acme.example", "CAF=abc123@mail.gmail.com"]
        );
        assert_eq!(
            report.failed_recipients,
            [FailedRecipient {
                address: "alice@customer.example".to_string(),
                action: Some("failed".to_string()),
                status: Some("5.1.1".to_string()),
                diagnostic: Some(
                    "smtp; 550 5.1.1 <alice@customer.example>: Recipient address rejected: User unknown in local recipient table"
                        .to_string()
                ),
            }]
        );
        let decision = decide_mail(dsn.as_bytes(), &rt());
        assert_eq!(decision.label(), "bounce");
        assert_eq!(
            decision,
            ThreadDecision::Bounce {
                ticket: 42,
                failed_recipients: report.failed_recipients.clone(),
                status: Some("5.1.1".to_string()),
            }
        );
        let summary = report.summary();
        assert!(
            summary.contains("alice@customer.example: 5.1.1 (failed): smtp; 550"),
            "{summary}"
        );
    }

    #[test]
    fn an_exchange_ndr_of_rts_mail_is_a_bounce_on_its_ticket() {
        // Its subject keeps RT's tag: still a bounce (a comment), never correspondence.
        let ndr = exchange_ndr("Undeliverable: [acme #42] AutoReply: Printer on fire");
        let decision = decide_mail(ndr.as_bytes(), &rt());
        let ThreadDecision::Bounce {
            ticket,
            failed_recipients,
            status,
        } = decision
        else {
            panic!("not a bounce: {decision:?}");
        };
        assert_eq!(ticket, 42);
        assert_eq!(status.as_deref(), Some("5.1.10"));
        assert_eq!(failed_recipients.len(), 1);
        assert_eq!(failed_recipients[0].address, "alice@customer.example");
        // Without the tag, the returned header names the ticket.
        let ndr = exchange_ndr("Undeliverable: Printer on fire");
        let report = read_bounce(ndr.as_bytes()).expect("a bounce");
        assert_eq!(report.returned_references[0], "RT-Ticket-42@rt.acme.example");
        assert_eq!(report.ticket("rt.acme.example"), Some(42));
        assert_eq!(decide_mail(ndr.as_bytes(), &rt()).ticket(), Some(42));
    }

    #[test]
    fn a_qmail_bounce_quoting_the_original_is_a_bounce() {
        let bounce = format!(
            "Return-Path: <>\r\n\
             Date: 14 Nov 2023 22:15:00 -0000\r\n\
             From: MAILER-DAEMON@mail.customer.example\r\n\
             To: rt@rt.acme.example\r\n\
             Subject: failure notice\r\n\
             \r\n\
             Hi. This is the qmail-send program at mail.customer.example.\r\n\
             I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\
             This is a permanent error; I've given up. Sorry it didn't work out.\r\n\
             \r\n\
             <alice@customer.example>:\r\n\
             Sorry, no mailbox here by that name. (#5.1.1)\r\n\
             \r\n\
             --- Below this line is a copy of the message.\r\n\
             \r\n\
             {}We received your request.\r\n",
            rt_outgoing().replace("[acme #42] ", "")
        );
        let report = read_bounce(bounce.as_bytes()).expect("a bounce");
        assert_eq!(report.form, BounceForm::NonStandard);
        assert_eq!(report.status.as_deref(), Some("5.1.1"));
        assert_eq!(report.failed_recipients.len(), 1);
        assert_eq!(report.failed_recipients[0].address, "alice@customer.example");
        assert_eq!(
            report.failed_recipients[0].diagnostic.as_deref(),
            Some("Sorry, no mailbox here by that name. (#5.1.1)")
        );
        assert_eq!(decide_mail(bounce.as_bytes(), &rt()).ticket(), Some(42));
        assert_eq!(decide_mail(bounce.as_bytes(), &rt()).label(), "bounce");
    }

    #[test]
    fn an_exim_bounce_names_its_failed_recipients() {
        let bounce = format!(
            "Return-path: <>\n\
             From: Mail Delivery System <Mailer-Daemon@mx.customer.example>\n\
             To: rt@rt.acme.example\n\
             Subject: Mail delivery failed: returning message to sender\n\
             X-Failed-Recipients: alice@customer.example\n\
             Auto-Submitted: auto-replied\n\
             \n\
             This message was created automatically by mail delivery software.\n\
             \n\
             A message that you sent could not be delivered to one or more of its\n\
             recipients. This is a permanent error. The following address(es) failed:\n\
             \n\
             \x20 alice@customer.example\n\
             \x20   host mail.customer.example [192.0.2.25]\n\
             \x20   SMTP error from remote mail server after RCPT TO:<alice@customer.example>:\n\
             \x20   550 5.1.1 User unknown\n\
             \n\
             ------ This is a copy of the message, including all the headers. ------\n\
             \n\
             {}",
            rt_outgoing().replace("\r\n", "\n").replace("[acme #42] ", "")
        );
        let report = read_bounce(bounce.as_bytes()).expect("a bounce");
        assert_eq!(report.form, BounceForm::NonStandard);
        assert_eq!(report.failed_recipients.len(), 1);
        let failed = &report.failed_recipients[0];
        assert_eq!(failed.address, "alice@customer.example");
        assert_eq!(failed.status.as_deref(), Some("5.1.1"));
        assert!(failed
            .diagnostic
            .as_deref()
            .unwrap_or_default()
            .contains("550 5.1.1 User unknown"));
        assert_eq!(decide_mail(bounce.as_bytes(), &rt()).ticket(), Some(42));
    }

    #[test]
    fn a_bounce_of_no_mail_of_ours_is_handled_as_today() {
        let dsn = postfix_dsn()
            .replace("rt.acme.example>", "other.example>")
            .replace("@rt.acme.example", "@other.example");
        assert!(read_bounce(dsn.as_bytes()).is_some());
        assert_eq!(decide_mail(dsn.as_bytes(), &rt()), ThreadDecision::None);
    }

    #[test]
    fn read_receipts_and_ordinary_mail_are_no_bounce() {
        let mdn = "From: alice@customer.example\r\n\
                   Subject: Read: Printer on fire\r\n\
                   Content-Type: multipart/report; report-type=disposition-notification; boundary=\"x\"\r\n\r\n\
                   --x\r\nContent-Type: text/plain\r\n\r\nRead.\r\n--x--\r\n";
        assert!(!looks_like_bounce(mdn.as_bytes()));
        assert_eq!(read_bounce(mdn.as_bytes()), None);
        let reply = customer_reply("Re: Printer on fire");
        assert!(!looks_like_bounce(reply.as_bytes()));
        assert_eq!(read_bounce(reply.as_bytes()), None);
        // A vacation reply has an empty Return-Path too, but no bounce's subject.
        let ooo = "Return-Path: <>\r\nFrom: alice@customer.example\r\nSubject: Out of office\r\n\r\nAway.\r\n";
        assert!(!looks_like_bounce(ooo.as_bytes()));
    }

    #[test]
    fn bounce_reading_is_bounded_and_never_panics() {
        // Every prefix of a real DSN (a mail cut anywhere).
        let dsn = postfix_dsn();
        for end in 0..dsn.len() {
            let _ = decide_mail(&dsn.as_bytes()[..end], &rt());
        }
        // Pseudo-random bytes, with and without a bounce's header in front.
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..300 {
            let len = (round * 37) % 3000;
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed >> 24) as u8
                })
                .collect();
            let _ = decide_mail(&bytes, &rt());
            let mut framed = b"From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; boundary=\"q\"\r\n\r\n--q\r\nContent-Type: message/delivery-status\r\n\r\n".to_vec();
            framed.append(&mut bytes);
            let _ = read_bounce(&framed);
        }
        // Deep nesting and a huge mail: only the first MAX_BOUNCE_SCAN bytes are read.
        let mut nested =
            String::from("From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; boundary=\"b0\"\r\n\r\n");
        for i in 1..200 {
            nested.push_str(&format!(
                "--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n",
                i - 1
            ));
        }
        let _ = read_bounce(nested.as_bytes());
        let mut huge = postfix_dsn().into_bytes();
        huge.extend(std::iter::repeat_n(b'a', 20 * 1024 * 1024));
        let started = std::time::Instant::now();
        assert_eq!(decide_mail(&huge, &rt()).ticket(), Some(42));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn nothing_past_the_scan_bound_is_read() {
        // The same DSN with its notification padded: the returned mail (RT's marker)
        // starts past MAX_BOUNCE_SCAN, so it is not read.
        let pad = "x".repeat(76) + "\r\n";
        let padding = pad.repeat(MAX_BOUNCE_SCAN / pad.len() + 1);
        let padded = postfix_dsn().replacen("The mail system\r\n", &format!("The mail system\r\n{padding}"), 1);
        let report = read_bounce(padded.as_bytes()).expect("still a bounce");
        assert_eq!(report.returned_message_id, None);
        assert!(report.returned_references.is_empty());
        // Within the bound it is read.
        assert_eq!(
            read_bounce(postfix_dsn().as_bytes())
                .expect("a bounce")
                .returned_message_id
                .as_deref(),
            Some(RT_MSGID)
        );
    }

    #[test]
    fn many_recipients_and_long_diagnostics_are_cut() {
        let mut status = String::from("Reporting-MTA: dns; mx\r\n\r\n");
        for i in 0..100 {
            status.push_str(&format!(
                "Final-Recipient: rfc822; u{i}@x\r\nAction: failed\r\nStatus: 5.2.2\r\nDiagnostic-Code: smtp; {}\r\n\r\n",
                "full ".repeat(200)
            ));
        }
        let mail = format!(
            "From: MAILER-DAEMON@x\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"q\"\r\n\r\n\
             --q\r\nContent-Type: message/delivery-status\r\n\r\n{status}--q--\r\n"
        );
        let report = read_bounce(mail.as_bytes()).expect("a bounce");
        assert_eq!(report.failed_recipients.len(), MAX_FAILED_RECIPIENTS);
        let diagnostic = report.failed_recipients[0].diagnostic.clone().unwrap_or_default();
        assert_eq!(diagnostic.chars().count(), MAX_DIAGNOSTIC_CHARS);
        assert!(diagnostic.ends_with('…'));
        // Successful deliveries in a DSN are no failures.
        let delivered = mail.replace("Action: failed", "Action: delivered");
        assert!(read_bounce(delivered.as_bytes())
            .expect("a DSN")
            .failed_recipients
            .is_empty());
    }

    #[test]
    fn enhanced_status_codes_are_found_alone() {
        assert_eq!(enhanced_status("550 5.1.1 User unknown").as_deref(), Some("5.1.1"));
        assert_eq!(enhanced_status("(#5.1.1)").as_deref(), Some("5.1.1"));
        assert_eq!(enhanced_status("4.4.7.").as_deref(), Some("4.4.7"));
        assert_eq!(
            enhanced_status("host [192.0.2.25] said 550 5.7.1").as_deref(),
            Some("5.7.1")
        );
        assert_eq!(enhanced_status("version 1.2.3"), None);
        assert_eq!(enhanced_status("5.1"), None);
    }
}
