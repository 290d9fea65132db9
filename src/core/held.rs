//! Every mail that did not become a ticket, in one place (`rt-mailgate-held`): what it
//! is held, dropped or given up for (its *cause*), what a release or a reject does to
//! it, the notice a reject sends, and the operator's daily digest. Pure: the records,
//! entries and the clock are given; [`crate::lambda::held`] reads and writes them.
//!
//! Four kinds, each with its causes (the words `--cause` takes):
//!
//! | kind       | causes                                                   | from                                  |
//! |------------|----------------------------------------------------------|---------------------------------------|
//! | `held`     | `storm-sender`, `storm-route`, `loop`, `auto-reply`      | a `held` record's reason              |
//! | `dropped`  | `virus`, `dmarc-reject`, `spam-drop`                     | a `given-up` record's screening       |
//! | `given-up` | `rt-refused`, `too-large`, `unknown-queue`, `out-of-time`| the record's outcome case             |
//! | `unrouted` | `unrouted`                                               | recipients no route took              |
//!
//! The function files a mail here when one of its routes ends anything but delivered, or
//! a recipient has no route: one entry by day ([`HeldEntry::day_key`]) for a listing by
//! day, one by SES's message id ([`HeldEntry::mail_key`]) for `show`, `release` and
//! `reject`, and for a listing by sender through the trace's address index. The entry
//! keeps what the event said and a reject needs later: the sender, From, Message-ID,
//! subject and SES's SPF/DKIM/DMARC verdicts (who may be told). The ordinary path (every
//! route delivered) writes nothing.
//!
//! A reject or an expiry settles each such route's record as `refused` with the case
//! [`REJECTED`] or [`EXPIRED`] (written on the version read: a release racing it loses
//! or wins, never both), so the mail leaves the list and no release can post it after
//! its stored copy may be gone. An unrouted mail has no route record: a marker
//! ([`settled_key`]) says the same.

use serde::{Deserialize, Serialize};

use crate::core::hold::HoldCause;
use crate::core::mail_index::{key_part, normal_address, time_part, IndexedMail, INDEX_DIR};
use crate::core::notice::{NoticeText, QUOTED_CHARS};
use crate::core::route_record::{RouteRecord, RouteState, Screened};
use crate::core::shell;
use crate::core::trace::utc;

/// Where the entries by day live, under the records prefix.
pub const DAY_DIR: &str = "not-a-ticket/";
/// Where the entries by SES message id live, under the index.
pub const MAIL_DIR: &str = "not-a-ticket-mail/";
/// Where the markers of settled unrouted mails live, under the index.
pub const SETTLED_DIR: &str = "not-a-ticket-settled/";
/// A route record's case once an operator rejected it.
pub const REJECTED: &str = "HeldRejected";
/// A route record's case once the daily run expired it.
pub const EXPIRED: &str = "HeldExpired";
/// The days held mail is kept unless the template's `HeldDays` says otherwise.
pub const DEFAULT_HELD_DAYS: u32 = 14;
/// A route still unsettled this long after its last change ran out of time: Lambda
/// gives up an asynchronous event after six hours (its maximum event age), and the
/// event waits in the dead-letter queue.
pub const OUT_OF_TIME_MS: u64 = 6 * 3_600_000;
const DAY_MS: u64 = 86_400_000;

/// What the function files about a mail that did not (wholly) become a ticket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldEntry {
    /// The mail as the trace's index describes it (its fields stored at the top level).
    #[serde(flatten)]
    pub mail: IndexedMail,
    /// The subject, as SES's event gave it (cut to [`QUOTED_CHARS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The recipients no route took.
    #[serde(default)]
    pub unrouted: Vec<String>,
    /// SES's SPF verdict was PASS.
    #[serde(default)]
    pub spf_pass: bool,
    /// SES's DKIM verdict was PASS.
    #[serde(default)]
    pub dkim_pass: bool,
    /// SES's DMARC verdict (`PASS`, `FAIL`, `GRAY`...).
    #[serde(default)]
    pub dmarc: String,
}

impl HeldEntry {
    /// The stored JSON.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a stored entry (`None` when it is not one).
    pub fn from_text(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// The entry by day, under the records prefix:
    /// `index/not-a-ticket/<YYYY-MM-DD>/<HHMMSS>-<SES id>`.
    pub fn day_key(&self) -> String {
        format!(
            "{INDEX_DIR}{DAY_DIR}{}-{}",
            time_part(self.mail.received_ms),
            key_part(&self.mail.ses_id)
        )
    }

    /// The entry of mail `ses_id`, under the records prefix.
    pub fn mail_key(ses_id: &str) -> String {
        format!("{INDEX_DIR}{MAIL_DIR}{}", key_part(ses_id))
    }

    /// True when `address` is the envelope sender or a From address.
    pub fn sent_by(&self, address: &str) -> bool {
        let wanted = normal_address(address);
        normal_address(&self.mail.sender) == wanted || self.mail.from.iter().any(|f| normal_address(f) == wanted)
    }
}

/// The marker of an unrouted mail an operator rejected or the daily run expired.
pub fn settled_key(ses_id: &str) -> String {
    format!("{INDEX_DIR}{SETTLED_DIR}{}", key_part(ses_id))
}

/// The listing range of the entries by day received from `since_ms` to `until_ms`
/// (keys under the records prefix): `(prefix, start after, last)`.
pub fn day_range(since_ms: u64, until_ms: u64) -> (String, String, String) {
    let prefix = format!("{INDEX_DIR}{DAY_DIR}");
    (
        prefix.clone(),
        format!("{prefix}{}", time_part(since_ms)),
        format!("{prefix}{}-~", time_part(until_ms)),
    )
}

/// The four kinds of mail that did not become a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Held instead of posted: a storm, a loop, an auto-reply under `hold`.
    Held,
    /// Dropped by the mail policy on SES's verdicts.
    Dropped,
    /// Given up: RT refused it, too large, no such queue, out of time.
    GivenUp,
    /// No route takes a recipient.
    Unrouted,
}

impl Kind {
    /// The word the tools use.
    pub fn word(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Dropped => "dropped",
            Self::GivenUp => "given-up",
            Self::Unrouted => "unrouted",
        }
    }
}

/// Why a route (or a recipient) did not become a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cause {
    /// Its kind.
    pub kind: Kind,
    /// Its word (`storm-sender`, `virus`, `too-large`...).
    pub label: &'static str,
}

/// Every cause, in the order the tools list them.
pub const CAUSES: [Cause; 11] = [
    Cause::held("storm-sender"),
    Cause::held("storm-route"),
    Cause::held("loop"),
    Cause::held("auto-reply"),
    Cause::of(Kind::Dropped, "virus"),
    Cause::of(Kind::Dropped, "dmarc-reject"),
    Cause::of(Kind::Dropped, "spam-drop"),
    Cause::of(Kind::GivenUp, "rt-refused"),
    Cause::of(Kind::GivenUp, "too-large"),
    Cause::of(Kind::GivenUp, "unknown-queue"),
    Cause::of(Kind::GivenUp, "out-of-time"),
];

/// The cause of a recipient no route takes.
pub const UNROUTED: Cause = Cause::of(Kind::Unrouted, "unrouted");

impl Cause {
    const fn of(kind: Kind, label: &'static str) -> Self {
        Self { kind, label }
    }

    const fn held(label: &'static str) -> Self {
        Self::of(Kind::Held, label)
    }

    /// True when `wanted` (a cause's word or a kind's) names this cause.
    pub fn matches(self, wanted: &str) -> bool {
        let wanted = wanted.trim();
        wanted.eq_ignore_ascii_case(self.label) || wanted.eq_ignore_ascii_case(self.kind.word())
    }

    /// True when `wanted` names some cause or kind (`--cause` is checked with it).
    pub fn known(wanted: &str) -> bool {
        CAUSES.iter().chain([&UNROUTED]).any(|c| c.matches(wanted))
    }
}

/// Why a route did not become a ticket, or `None` when it did, is on its way (a retry
/// will come), or an operator settled it (rejected, expired).
pub fn cause_of(record: &RouteRecord, now_ms: u64) -> Option<Cause> {
    let case = record.case.as_deref().unwrap_or("");
    let find = |label: &str| CAUSES.iter().copied().find(|c| c.label == label);
    match record.state {
        RouteState::Delivered => None,
        RouteState::Held => {
            let reason = record.reason.as_deref().unwrap_or("");
            let cause = HoldCause::from_reason(reason).map_or("storm-sender", |(cause, _)| cause.label());
            find(cause)
        }
        RouteState::Refused if case == REJECTED || case == EXPIRED => None,
        RouteState::Refused => find("rt-refused"),
        RouteState::GivenUp => {
            let dropped = match &record.screened {
                Screened::Dropped(case) => Some(case.as_str()),
                _ => None,
            };
            let label = match dropped.unwrap_or(case) {
                "VirusFound" => "virus",
                "DmarcReject" => "dmarc-reject",
                "SpamDropped" => "spam-drop",
                "MailTooLarge" | "PayloadTooLarge" | "TooManyRoutes" => "too-large",
                "RtTemporaryFailure" | "UnknownQueue" | "NoRoute" => "unknown-queue",
                "DeadlineReached" => "out-of-time",
                _ => "rt-refused",
            };
            find(label)
        }
        // Still on its way, unless its retries ran out long ago (the event is in the
        // dead-letter queue).
        RouteState::Posting | RouteState::Unsure | RouteState::Free => {
            (now_ms.saturating_sub(record.updated_ms) >= OUT_OF_TIME_MS && !record.lease_holds(now_ms))
                .then(|| find("out-of-time"))
                .flatten()
        }
    }
}

/// How an operator (or the daily run) settled a route, if one did.
pub fn settled_by_operator(record: &RouteRecord) -> Option<&'static str> {
    match (record.state, record.case.as_deref()) {
        (RouteState::Refused, Some(REJECTED)) => Some("rejected"),
        (RouteState::Refused, Some(EXPIRED)) => Some("expired"),
        _ => None,
    }
}

/// The record a reject (`case` [`REJECTED`]) or an expiry ([`EXPIRED`]) leaves: settled
/// for good, its facts kept, why in `reason`.
pub fn settle(record: &RouteRecord, case: &str, reason: &str, now_ms: u64) -> RouteRecord {
    RouteRecord {
        state: RouteState::Refused,
        case: Some(case.to_string()),
        reason: Some(reason.to_string()),
        lease_until_ms: 0,
        updated_ms: now_ms,
        ..record.clone()
    }
}

/// What a release does to a route of this cause, in a sentence.
pub fn release_does(cause: Cause) -> &'static str {
    match (cause.kind, cause.label) {
        (Kind::Held, _) => "posts it to RT once, through the normal delivery path, screening kept",
        (Kind::Dropped, _) => {
            "nothing unless you judge it safe: with --post-screened-mail it is posted once, the verdict overridden"
        }
        (Kind::GivenUp, "rt-refused") => "nothing: RT refused it for good (RT's log says why); reject it to close it",
        (Kind::GivenUp, _) => "posts it once more (fix the cause first: a route, a size limit, RT)",
        (Kind::Unrouted, _) => "posts it once, if a route takes the recipient now (add one first)",
    }
}

/// Which mails a listing shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// A cause's or a kind's word.
    pub cause: Option<String>,
    /// The envelope sender or a From address.
    pub sender: Option<String>,
    /// A route entry (as the routing table writes it), without case.
    pub route: Option<String>,
}

/// One mail that did not (wholly) become a ticket, with each of its routes' causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldMail {
    /// What the function filed about it.
    pub entry: HeldEntry,
    /// Its routes that did not become a ticket, and why.
    pub routes: Vec<(RouteRecord, Cause)>,
    /// Its recipients no route took (none once settled).
    pub unrouted: Vec<String>,
}

impl HeldMail {
    /// The mail with the records of its routes read at `now_ms`; `unrouted_settled`: an
    /// operator settled its unrouted recipients. `None` when nothing is left to show.
    pub fn of(entry: HeldEntry, records: &[RouteRecord], unrouted_settled: bool, now_ms: u64) -> Option<Self> {
        let routes: Vec<(RouteRecord, Cause)> = records
            .iter()
            .filter_map(|r| cause_of(r, now_ms).map(|c| (r.clone(), c)))
            .collect();
        let unrouted = if unrouted_settled {
            Vec::new()
        } else {
            entry.unrouted.clone()
        };
        (!routes.is_empty() || !unrouted.is_empty()).then_some(Self {
            entry,
            routes,
            unrouted,
        })
    }

    /// Its causes, each once.
    pub fn causes(&self) -> Vec<Cause> {
        let mut causes: Vec<Cause> = self.routes.iter().map(|(_, c)| *c).collect();
        if !self.unrouted.is_empty() {
            causes.push(UNROUTED);
        }
        causes.sort();
        causes.dedup();
        causes
    }

    /// Keeps only the parts that match `filter`; `None` when none does.
    pub fn filtered(mut self, filter: &Filter) -> Option<Self> {
        if filter.sender.as_deref().is_some_and(|s| !self.entry.sent_by(s)) {
            return None;
        }
        let cause_ok = |c: Cause| filter.cause.as_deref().is_none_or(|w| c.matches(w));
        let route_ok = |r: &RouteRecord| {
            filter
                .route
                .as_deref()
                .is_none_or(|w| r.route.eq_ignore_ascii_case(w.trim()))
        };
        self.routes.retain(|(r, c)| cause_ok(*c) && route_ok(r));
        if !cause_ok(UNROUTED) || filter.route.is_some() {
            self.unrouted.clear();
        }
        (!self.routes.is_empty() || !self.unrouted.is_empty()).then_some(self)
    }

    /// True once it was received more than `held_days` before `now_ms`.
    pub fn expired(&self, held_days: u32, now_ms: u64) -> bool {
        self.entry.mail.received_ms + u64::from(held_days) * DAY_MS < now_ms
    }

    /// The line of a listing.
    pub fn line(&self) -> String {
        let causes: Vec<&str> = self.causes().iter().map(|c| c.label).collect();
        let mut routes: Vec<&str> = self.routes.iter().map(|(r, _)| r.route.as_str()).collect();
        routes.dedup();
        if !self.unrouted.is_empty() {
            routes.push("(no route)");
        }
        format!(
            "{received}  {id}  {causes}  from <{sender}>  to {routes}  {subject}\n",
            received = utc(self.entry.mail.received_ms),
            id = self.entry.mail.ses_id,
            causes = causes.join(","),
            sender = quoted(&self.entry.mail.sender, 80),
            routes = quoted(&routes.join(","), 120),
            subject = quoted(self.entry.subject.as_deref().unwrap_or("(no subject)"), 80),
        )
    }

    /// What `show` prints: the mail, each route with its cause, and what release would do.
    pub fn details(&self, now_ms: u64) -> String {
        let e = &self.entry;
        let mut text = format!(
            "mail {}\n  from:       <{}>{}\n  Message-ID: {}\n  subject:    {}\n  received:   {}\n",
            e.mail.ses_id,
            quoted(&e.mail.sender, QUOTED_CHARS),
            if e.mail.from.is_empty() {
                String::new()
            } else {
                format!(" (From: {})", quoted(&e.mail.from.join(", "), QUOTED_CHARS))
            },
            quoted(e.mail.message_id.as_deref().unwrap_or("(none)"), QUOTED_CHARS),
            quoted(e.subject.as_deref().unwrap_or("(none)"), QUOTED_CHARS),
            utc(e.mail.received_ms),
        );
        for (record, cause) in &self.routes {
            let why = record
                .reason
                .clone()
                .or_else(|| record.case.clone())
                .unwrap_or_default();
            text.push_str(&format!(
                "  route {} ({}): {} {}: {}\n    since {}; release {}\n",
                if record.route.is_empty() { "?" } else { &record.route },
                quoted(&record.recipients.join(", "), QUOTED_CHARS),
                cause.kind.word(),
                cause.label,
                quoted(&why, QUOTED_CHARS),
                utc(record.updated_ms),
                release_does(*cause),
            ));
        }
        if !self.unrouted.is_empty() {
            text.push_str(&format!(
                "  unrouted: {}: no route takes them\n    release {}\n",
                quoted(&self.unrouted.join(", "), QUOTED_CHARS),
                release_does(UNROUTED)
            ));
        }
        let _ = now_ms;
        let id = shell::positional(&e.mail.ses_id);
        text.push_str(&format!(
            "  next: rt-mailgate-held release {id}   or   rt-mailgate-held reject {id} --reason REASON\n"
        ));
        text
    }

    /// The recipients a release names: those of the routes it posts (and the unrouted
    /// ones, which a route may take now).
    pub fn release_recipients(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .routes
            .iter()
            .flat_map(|(r, _)| r.recipients.iter().cloned())
            .chain(self.unrouted.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }
}

/// The short catalogue of reasons a reject gives (`--reason`), each with the sentence
/// the sender reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Automatic mail (alerts, auto-replies) this address does not take.
    Automatic,
    /// Too many mails in a short time.
    Flood,
    /// A mail loop with another system.
    Loop,
    /// Unsolicited or unwanted.
    Unwanted,
    /// Too large for the helpdesk.
    TooLarge,
    /// Sent to an address that takes no mail.
    WrongAddress,
}

impl RejectReason {
    /// Every reason, in the order the manual lists them.
    pub const ALL: [Self; 6] = [
        Self::Automatic,
        Self::Flood,
        Self::Loop,
        Self::Unwanted,
        Self::TooLarge,
        Self::WrongAddress,
    ];

    /// The word `--reason` takes.
    pub fn word(self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::Flood => "flood",
            Self::Loop => "loop",
            Self::Unwanted => "unwanted",
            Self::TooLarge => "too-large",
            Self::WrongAddress => "wrong-address",
        }
    }

    /// The reason named by its word.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.word().eq_ignore_ascii_case(word.trim()))
    }

    /// What the sender reads.
    pub fn sentence(self) -> &'static str {
        match self {
            Self::Automatic => {
                "This address takes mail from people; automatic mail (alerts, auto-replies) is not accepted."
            }
            Self::Flood => "Too many mails arrived from you in a short time; they were not accepted.",
            Self::Loop => "Your system and ours were answering each other in a loop; the mail was not accepted.",
            Self::Unwanted => "The mail was not accepted by the helpdesk.",
            Self::TooLarge => "The mail is too large for the helpdesk; please send a smaller one.",
            Self::WrongAddress => "The address you wrote to takes no mail; please use the address on our contact page.",
        }
    }
}

/// The key of the reject notice window of one sender, reason and day (under the
/// records prefix): created once (`If-None-Match: *`), so at most one notice goes to a
/// sender per reason and day, however many of their mails are rejected.
pub fn reject_window_key(normalized_sender: &str, reason: RejectReason, now_ms: u64) -> String {
    let day = &time_part(now_ms)[..10];
    format!("notices/reject/{}/{}/{day}", key_part(normalized_sender), reason.word())
}

/// The notice a rejected mail's sender gets: the reason from the catalogue, the
/// Message-ID and subject quoted (cut), never the mail.
pub fn reject_notice(entry: &HeldEntry, reason: RejectReason) -> NoticeText {
    let subject = entry.subject.as_deref().unwrap_or("(no subject)");
    NoticeText {
        to: entry.mail.sender.clone(),
        subject: format!("Not accepted: {}", quoted(subject, 120)),
        body: format!(
            "Your mail was not accepted by the helpdesk and no ticket was made of it.\n\n\
             {}\n\n  Subject:    {}\n  Message-ID: {}\n\n\
             This notice is sent once a day at most for this reason; please do not reply to it.\n",
            reason.sentence(),
            quoted(subject, QUOTED_CHARS),
            quoted(entry.mail.message_id.as_deref().unwrap_or("(none)"), QUOTED_CHARS),
        ),
    }
}

/// The operator's digest of what is held (one a day): counts by cause, route and
/// sender, the oldest, what expires, and the commands. `None` when nothing is held.
pub fn digest(
    to: &str,
    mails: &[HeldMail],
    expired: usize,
    held_days: u32,
    stopped_short: bool,
    now_ms: u64,
) -> Option<NoticeText> {
    if mails.is_empty() && expired == 0 {
        return None;
    }
    let mut by_cause = std::collections::BTreeMap::<(Kind, &str), usize>::new();
    let mut by_route = std::collections::BTreeMap::<String, usize>::new();
    let mut by_sender = std::collections::BTreeMap::<String, usize>::new();
    for mail in mails {
        for cause in mail.causes() {
            *by_cause.entry((cause.kind, cause.label)).or_default() += 1;
        }
        for (record, _) in &mail.routes {
            *by_route.entry(record.route.clone()).or_default() += 1;
        }
        if !mail.unrouted.is_empty() {
            *by_route.entry("(no route)".into()).or_default() += 1;
        }
        *by_sender.entry(normal_address(&mail.entry.mail.sender)).or_default() += 1;
    }
    let top = |map: std::collections::BTreeMap<String, usize>| {
        let mut rows: Vec<(String, usize)> = map.into_iter().collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let more = rows.len().saturating_sub(10);
        let mut text: String = rows
            .into_iter()
            .take(10)
            .map(|(k, n)| format!("  {n:>6}  {}\n", quoted(&k, 120)))
            .collect();
        if more > 0 {
            text.push_str(&format!("  ...and {more} more\n"));
        }
        text
    };
    let held = mails
        .iter()
        .filter(|m| m.causes().iter().any(|c| c.kind == Kind::Held))
        .count();
    let mut body = format!(
        "{} mail(s) did not become a ticket in the last {held_days} day(s), {held} of them held.\n",
        mails.len()
    );
    if stopped_short {
        body.push_str("The listing STOPPED SHORT at its bound: there are more than counted here.\n");
    }
    if expired > 0 {
        body.push_str(&format!(
            "{expired} held mail(s) older than {held_days} day(s) expired today: never posted (the log names each, outcome \"expired\").\n"
        ));
    }
    body.push_str("\nBy cause:\n");
    for ((kind, label), n) in by_cause {
        body.push_str(&format!("  {n:>6}  {} {label}\n", kind.word()));
    }
    body.push_str("\nBy route:\n");
    body.push_str(&top(by_route));
    body.push_str("\nBy sender:\n");
    body.push_str(&top(by_sender));
    if let Some(oldest) = mails.iter().min_by_key(|m| m.entry.mail.received_ms) {
        body.push_str(&format!(
            "\nOldest: {} ({}), from <{}>\n",
            oldest.entry.mail.ses_id,
            utc(oldest.entry.mail.received_ms),
            quoted(&oldest.entry.mail.sender, 120)
        ));
    }
    body.push_str(&format!(
        "\nHeld mail is kept {held_days} day(s), then expires. To look, release or reject:\n\
         \x20 rt-mailgate-held list --since {held_days}d\n\
         \x20 rt-mailgate-held show SES-MESSAGE-ID\n\
         \x20 rt-mailgate-held release SES-MESSAGE-ID\n\
         \x20 rt-mailgate-held release --storm --cause storm-sender --sender ADDRESS --route ROUTE --day YYYY-MM-DD\n\
         \x20 rt-mailgate-held reject SES-MESSAGE-ID --reason automatic\n"
    ));
    Some(NoticeText {
        to: to.to_string(),
        subject: format!(
            "[rt-mailgate] held mail digest {}: {} mail(s) not in RT{}",
            &utc(now_ms)[..10],
            mails.len(),
            if stopped_short { " (at least)" } else { "" }
        ),
        body,
    })
}

/// The key of the digest's once-a-day mark (under the records prefix): a duplicated or
/// retried daily run sends no second digest.
pub fn digest_key(now_ms: u64) -> String {
    format!("notices/held-digest/{}", &time_part(now_ms)[..10])
}

/// Sender-chosen text on one line, cut to `max` characters.
fn quoted(text: &str, max: usize) -> String {
    let line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.chars().count() > max {
        format!("{}...", line.chars().take(max).collect::<String>())
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn record(state: RouteState, case: Option<&str>, reason: Option<&str>) -> RouteRecord {
        let mut r = RouteRecord::from_text(r#"{"state":"free"}"#).unwrap();
        r.state = state;
        r.case = case.map(str::to_string);
        r.reason = reason.map(str::to_string);
        r.route = "support@example.com".into();
        r.recipients = vec!["support@example.com".into()];
        r.updated_ms = NOW;
        r
    }

    fn label(r: &RouteRecord, now: u64) -> Option<&'static str> {
        cause_of(r, now).map(|c| c.label)
    }

    #[test]
    fn every_record_state_has_its_cause() {
        let held = record(RouteState::Held, None, Some("loop: X-RT-Loop-Prevention: other"));
        assert_eq!(cause_of(&held, NOW), Some(Cause::held("loop")));
        let mut virus = record(RouteState::GivenUp, Some("VirusFound"), None);
        virus.screened = Screened::Dropped("VirusFound".into());
        assert_eq!(
            cause_of(&virus, NOW).map(|c| (c.kind, c.label)),
            Some((Kind::Dropped, "virus"))
        );
        for (case, want) in [
            ("DmarcReject", "dmarc-reject"),
            ("SpamDropped", "spam-drop"),
            ("MailTooLarge", "too-large"),
            ("PayloadTooLarge", "too-large"),
            ("UnknownQueue", "unknown-queue"),
            ("RtTemporaryFailure", "unknown-queue"),
            ("DeadlineReached", "out-of-time"),
        ] {
            assert_eq!(
                label(&record(RouteState::GivenUp, Some(case), None), NOW),
                Some(want),
                "{case}"
            );
        }
        assert_eq!(
            label(&record(RouteState::Refused, Some("RtNotOk"), None), NOW),
            Some("rt-refused")
        );
        assert_eq!(label(&record(RouteState::Delivered, Some("RtOk"), None), NOW), None);
        // A route waiting for its retry is on its way; hours later it ran out of time.
        let unsure = record(RouteState::Unsure, Some("Timeout"), None);
        assert_eq!(label(&unsure, NOW + 60_000), None);
        assert_eq!(label(&unsure, NOW + OUT_OF_TIME_MS), Some("out-of-time"));
    }

    #[test]
    fn a_rejected_or_expired_route_leaves_the_list_and_is_settled() {
        let held = record(RouteState::Held, None, Some("storm-sender: 16 mails"));
        for case in [REJECTED, EXPIRED] {
            let settled = settle(&held, case, "automatic", NOW + 1);
            assert_eq!(cause_of(&settled, NOW + 1), None);
            assert!(settled.state.is_settled());
            assert_eq!(settled.sender, held.sender);
            assert!(settled_by_operator(&settled).is_some());
            let release = crate::core::route_record::claim(
                &settled.to_text(),
                NOW + 2,
                crate::core::route_record::Replaying::Release,
                std::time::Duration::from_secs(30),
            );
            assert_eq!(
                release,
                crate::core::route_record::Claim::Settled(RouteState::Refused),
                "never released"
            );
        }
    }

    fn mail() -> HeldMail {
        let entry = HeldEntry {
            mail: IndexedMail {
                ses_id: "m1".into(),
                received_ms: NOW,
                sender: "alerts@monitor.example".into(),
                from: vec!["alerts@monitor.example".into()],
                ..IndexedMail::default()
            },
            unrouted: vec!["nobody@example.com".into()],
            subject: Some("CPU high".into()),
            ..HeldEntry::default()
        };
        let held = record(RouteState::Held, None, Some("storm-sender: 16 mails"));
        HeldMail::of(entry, &[held, record(RouteState::Delivered, None, None)], false, NOW).unwrap()
    }

    #[test]
    fn a_listing_filters_by_cause_kind_sender_and_route() {
        let m = mail();
        assert_eq!(m.causes(), vec![Cause::held("storm-sender"), UNROUTED]);
        let by = |cause: Option<&str>, sender: Option<&str>, route: Option<&str>| {
            m.clone().filtered(&Filter {
                cause: cause.map(Into::into),
                sender: sender.map(Into::into),
                route: route.map(Into::into),
            })
        };
        assert_eq!(by(Some("held"), None, None).unwrap().unrouted.len(), 0);
        assert_eq!(by(Some("unrouted"), None, None).unwrap().routes.len(), 0);
        assert!(by(Some("virus"), None, None).is_none());
        assert!(by(None, Some("ALERTS@monitor.example"), None).is_some());
        assert!(by(None, Some("else@x.example"), None).is_none());
        assert_eq!(by(None, None, Some("Support@Example.com")).unwrap().routes.len(), 1);
        assert!(Cause::known("storm-route") && Cause::known("given-up") && !Cause::known("nope"));
        assert!(m.line().contains("storm-sender,unrouted"), "{}", m.line());
        assert!(m.details(NOW).contains("release posts it to RT once"));
        assert_eq!(m.release_recipients(), ["nobody@example.com", "support@example.com"]);
        // Settled unrouted recipients and no other cause: nothing left to show.
        let entry = HeldEntry {
            unrouted: vec!["x@example.com".into()],
            ..HeldEntry::default()
        };
        assert!(HeldMail::of(entry, &[], true, NOW).is_none());
    }

    #[test]
    fn expiry_counts_days_from_receipt() {
        let m = mail();
        assert!(!m.expired(14, NOW + 14 * DAY_MS));
        assert!(m.expired(14, NOW + 14 * DAY_MS + 1));
        assert!(m.expired(1, NOW + DAY_MS + 1));
    }

    #[test]
    fn the_reject_window_is_one_per_sender_reason_and_day() {
        let a = reject_window_key("alice@x.example", RejectReason::Automatic, NOW);
        assert_eq!(a, "notices/reject/alice@x.example/automatic/2023-11-14");
        assert_ne!(a, reject_window_key("alice@x.example", RejectReason::Flood, NOW));
        assert_ne!(
            a,
            reject_window_key("alice@x.example", RejectReason::Automatic, NOW + DAY_MS)
        );
        // A sender's address stays one key part.
        assert_eq!(
            reject_window_key("../../x", RejectReason::Loop, NOW)
                .matches('/')
                .count(),
            4
        );
        for reason in RejectReason::ALL {
            assert_eq!(RejectReason::from_word(reason.word()), Some(reason));
        }
        let notice = reject_notice(&mail().entry, RejectReason::Automatic);
        assert_eq!(notice.to, "alerts@monitor.example");
        assert!(notice.subject.contains("CPU high") && notice.body.contains("automatic mail"));
    }

    #[test]
    fn the_digest_counts_and_names_the_commands() {
        let text = digest("ops@example.com", &[mail(), mail()], 1, 14, false, NOW).unwrap();
        assert!(text.subject.contains("2 mail(s)"), "{}", text.subject);
        assert!(text.body.contains("2  held storm-sender"), "{}", text.body);
        assert!(text.body.contains("2  alerts@monitor.example"), "{}", text.body);
        assert!(text.body.contains("1 held mail(s) older than 14 day(s) expired"));
        assert!(text.body.contains("rt-mailgate-held release"));
        assert!(digest("ops@example.com", &[], 0, 14, false, NOW).is_none());
        assert_eq!(digest_key(NOW), "notices/held-digest/2023-11-14");
    }

    #[test]
    fn entries_are_filed_by_day_and_by_id() {
        let e = mail().entry;
        assert_eq!(e.day_key(), "index/not-a-ticket/2023-11-14/221320-m1");
        assert_eq!(HeldEntry::mail_key("m1"), "index/not-a-ticket-mail/m1");
        assert_eq!(HeldEntry::from_text(&e.to_text()), Some(e.clone()));
        let (prefix, after, last) = day_range(NOW - DAY_MS, NOW);
        assert!(e.day_key().starts_with(&prefix));
        assert!(after.as_str() < e.day_key().as_str() && e.day_key().as_str() <= last.as_str());
        assert_eq!(settled_key("m1"), "index/not-a-ticket-settled/m1");
    }
}
