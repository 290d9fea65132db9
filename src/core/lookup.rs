//! "Does RT already hold this mail, as this route would have put it there?" The rule,
//! with no I/O: [`Expectation::of`] reads a route's [`GatewayRequest`] the way RT's mail
//! gateway would, and [`Expectation::find`] looks for it among the transactions RT
//! holds for this post's delivery id ([`crate::core::delivery_id`]; the adapter,
//! `crate::rt::lookup`, fetches those from RT's REST 2 API). The delivery id names
//! one post of one mail on one route, so a hit is never another mail that reuses the
//! Message-ID, and a mail with no (or an oddly written) Message-ID is found as well.
//!
//! Asked after an outcome where RT may have taken the mail without our hearing back
//! (the upload completed, then a timeout, a reset, or a proxy's 502/503/504), before a
//! mail with no delivery record is posted again: RT does not de-duplicate, so a blind
//! re-post makes a second ticket or a second reply.
//!
//! # What RT records (RT 5's `RT::Interface::Email::Gateway`, read and checked)
//!
//! - The posted `ticket` wins when Perl takes it for true (not absent, `""` or `"0"`);
//!   otherwise RT takes the ticket from an `[rtname #N]` tag in the subject. A ticket
//!   that is not all digits, or not found, makes RT refuse the mail: nothing recorded.
//! - The `action` (default `correspond`) is split on `-`; each piece needs a handler
//!   `Handle` + `ucfirst(piece)`, so `comment` and `Comment` work and `COMMENT` is a
//!   temporary failure. `comment` / `correspond` record the message: on the ticket as a
//!   `Comment` / `Correspond` transaction, or, with no ticket, as the `Create`
//!   transaction of a new ticket (one new ticket per such piece: `comment-correspond` on
//!   a new mail makes two). `take` / `resolve` record no message.
//! - The `queue` (default `1`, General) matters only for a new ticket: digits are an id,
//!   anything else a name, compared case-insensitively; `""` or `"0"` is no queue.
//!
//! # The rule
//!
//! The hits are the transactions holding a top-level attachment with the post's
//! delivery id (a forwarded message inside another mail is a child attachment and is
//! not a hit). A route is **found** when every message-recording step of its action has a
//! hit of its own (each hit counts once):
//!
//! | route                     | a step matches a hit that is                                       |
//! |---------------------------|--------------------------------------------------------------------|
//! | `ticket` N given          | `Correspond` / `Comment` (as the step) on ticket N                  |
//! | no ticket                 | `Create` of a ticket now in the route's queue, or `Correspond` / `Comment` on a ticket the hit's own subject tags (`[… #N]`) |
//! | ticket RT can't load      | nothing: RT refused it                                             |
//!
//! REST 2 reports a merged ticket's transactions on the ticket it was merged into, so
//! "ticket N" also means the ticket N has been merged into ([`Expectation::tickets_to_resolve`]
//! names the tickets whose merge target the adapter must ask for). `Found` names the
//! first step's ticket and transaction. Routes that record no message (`take`,
//! `resolve`) or an action piece RT may not know can't be looked up at all ([`Unanswerable`]).
//!
//! Where a route's steps are only partly there (RT refused a later step), it is not
//! found: a re-post repeats the recorded step rather than lose the missing one.
//!
//! # Known limits (each errs towards posting again, never towards losing a mail)
//!
//! - The subject tag is taken from any `[name #N]` in the stored subject: RT's `rtname`
//!   is not known here. A tag of another system can only match a transaction that holds
//!   this very mail, so it can't hide a missing post.
//! - A new ticket moved to another queue (by a scrip or a person) before the question is
//!   asked is not recognised; nor is one merged into a ticket of another queue.
//! - Two routes that RT records the same way (two new tickets in one queue; the same
//!   kind of transaction on the same ticket) can't be told apart: the second is taken
//!   for found. Posting it would only have made a duplicate of the first.

use std::collections::BTreeMap;

use crate::core::request::GatewayRequest;

/// A kind of RT transaction, as REST 2 names it in `Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionType {
    /// A new ticket (its first message).
    Create,
    /// A reply.
    Correspond,
    /// A private comment.
    Comment,
    /// Anything else (`EmailRecord`, `Status`...): never one of ours.
    Other(String),
}

impl TransactionType {
    /// From REST 2's `Type`.
    pub fn from_rt(name: &str) -> Self {
        match name {
            "Create" => Self::Create,
            "Correspond" => Self::Correspond,
            "Comment" => Self::Comment,
            other => Self::Other(other.to_string()),
        }
    }
}

/// A queue as RT reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Its id.
    pub id: u64,
    /// Its name, when the adapter fetched it (only needed for a route naming its queue).
    pub name: Option<String>,
}

/// One transaction that holds the post (a top-level attachment with its delivery id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The transaction's id.
    pub transaction: u64,
    /// Its type.
    pub kind: TransactionType,
    /// The ticket it is on (REST 2 reports the ticket a merged one went into).
    pub ticket: u64,
    /// The ticket's queue (needed for `Create` hits only; `None` when not fetched).
    pub queue: Option<QueueInfo>,
    /// The subject stored with the attachment (where RT found the `[rtname #N]` tag).
    pub subject: String,
}

/// A queue as a route names it (the `queue` field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueRef {
    /// All digits: RT loads it by id.
    Id(u64),
    /// Anything else: RT loads it by name, case-insensitively.
    Name(String),
}

impl QueueRef {
    /// True when `queue` is this one. A name is compared without case, as RT loads it.
    pub fn is(&self, queue: &QueueInfo) -> bool {
        match self {
            Self::Id(id) => *id == queue.id,
            Self::Name(name) => queue
                .name
                .as_ref()
                .is_some_and(|n| n.to_lowercase() == name.to_lowercase()),
        }
    }
}

/// Where RT puts the message of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// On this ticket (the posted `ticket` field).
    Ticket(u64),
    /// A new ticket in the queue (`None`: RT finds no queue, so only a subject tag can
    /// place the mail), or the ticket the subject tags.
    NewOrTagged(Option<QueueRef>),
    /// Nowhere: RT refuses a `ticket` field it can't load (not all digits, or 0).
    Refused,
}

/// What RT records for one step of the action chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `correspond`: a `Correspond` (or, for a new ticket, a `Create`).
    Correspond,
    /// `comment`: a `Comment` (or, for a new ticket, a `Create`).
    Comment,
}

impl Step {
    fn transaction_type(self) -> TransactionType {
        match self {
            Self::Correspond => TransactionType::Correspond,
            Self::Comment => TransactionType::Comment,
        }
    }
}

/// Why a route's delivery can't be looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unanswerable {
    /// The action records no message (`take`, `resolve`, or an empty action).
    #[error("action `{0}` records no message in RT, so RT can't tell whether it ran")]
    RecordsNoMessage(String),
    /// No RT login for this RT (`rt_token`, or `rt_username` and `rt_password`, in its
    /// secret): RT's API can't be asked.
    #[error("no RT login for this RT (rt_token, or rt_username and rt_password, in its secret)")]
    NoRtLogin,
    /// A piece RT's stock mail plugins don't handle: what it records is unknown.
    #[error(
        "action `{0}` is not one RT handles out of the box (comment, correspond, take, resolve as RT spells them)"
    )]
    UnknownAction(String),
}

/// The rule's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// RT holds the mail as this route would have put it there.
    Found {
        /// The ticket (the new one, or the one replied to / commented on).
        ticket: u64,
        /// The transaction of the route's first message-recording step.
        transaction: u64,
    },
    /// RT does not hold it that way: posting it again is safe.
    NotFound,
}

/// How RT records one route's post: where, and which steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// Where the message goes.
    pub target: Target,
    /// The message-recording steps, in order (never empty).
    pub steps: Vec<Step>,
}

/// Perl's truth for a form value: absent, `""` and `"0"` are false.
fn perl_true(value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|v| !v.is_empty() && *v != b"0")
}

/// `\d+` as RT checks ids; `None` for anything else (or an id too large to exist).
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

impl Expectation {
    /// Reads a route's request as RT's mail gateway does.
    pub fn of(request: &GatewayRequest) -> Result<Self, Unanswerable> {
        let action = request.action.as_deref().unwrap_or(b"correspond");
        let action_text = String::from_utf8_lossy(action).into_owned();
        let mut steps = Vec::new();
        // RT: `grep $_, split /-/, $action`, then `Handle . ucfirst($piece)` must exist.
        for piece in action.split(|&b| b == b'-').filter(|p| perl_true(Some(p)).is_some()) {
            match piece {
                b"correspond" | b"Correspond" => steps.push(Step::Correspond),
                b"comment" | b"Comment" => steps.push(Step::Comment),
                b"take" | b"Take" | b"resolve" | b"Resolve" => {}
                other => return Err(Unanswerable::UnknownAction(String::from_utf8_lossy(other).into_owned())),
            }
        }
        if steps.is_empty() {
            return Err(Unanswerable::RecordsNoMessage(action_text));
        }
        let target = match perl_true(request.ticket.as_deref()) {
            Some(ticket) => match digits(ticket) {
                Some(id) if id > 0 => Target::Ticket(id),
                _ => Target::Refused,
            },
            None => Target::NewOrTagged(match request.queue.as_deref() {
                None => Some(QueueRef::Id(1)),
                Some(queue) => perl_true(Some(queue)).and_then(|q| match digits(q) {
                    Some(id) => Some(QueueRef::Id(id)),
                    // All digits but too large: no such queue.
                    None if q.iter().all(u8::is_ascii_digit) => None,
                    None => Some(QueueRef::Name(String::from_utf8_lossy(q).into_owned())),
                }),
            }),
        };
        Ok(Self { target, steps })
    }

    /// True when a hit's queue must be known to judge it (a new ticket in a queue
    /// given by name); the adapter then fetches the queue's name.
    pub fn needs_queue_names(&self) -> bool {
        matches!(self.target, Target::NewOrTagged(Some(QueueRef::Name(_))))
    }

    /// The tickets whose merge target the adapter should ask RT for: those this route
    /// would have written to (its ticket, or the tickets the hits' subjects tag) when no
    /// `Correspond`/`Comment` hit is on them directly, while some such hit is on another
    /// ticket (which may be the one they were merged into). At most `limit`.
    pub fn tickets_to_resolve(&self, hits: &[Hit], limit: usize) -> Vec<u64> {
        let replies: Vec<&Hit> = hits
            .iter()
            .filter(|h| matches!(h.kind, TransactionType::Correspond | TransactionType::Comment))
            .collect();
        let named: Vec<u64> = match &self.target {
            Target::Ticket(id) => vec![*id],
            Target::NewOrTagged(_) => replies.iter().flat_map(|h| subject_tags(&h.subject)).collect(),
            Target::Refused => Vec::new(),
        };
        let mut wanted: Vec<u64> = named
            .into_iter()
            .filter(|t| !replies.is_empty() && !replies.iter().any(|h| h.ticket == *t))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.truncate(limit);
        wanted
    }

    /// Looks for this route among the hits. `merged_into` maps a ticket to the one it
    /// was merged into (from [`Self::tickets_to_resolve`]; empty when none was asked).
    pub fn find(&self, hits: &[Hit], merged_into: &BTreeMap<u64, u64>) -> Verdict {
        let same_ticket =
            |hit_ticket: u64, named: u64| hit_ticket == named || merged_into.get(&named) == Some(&hit_ticket);
        let mut used = vec![false; hits.len()];
        let mut first = None;
        for step in &self.steps {
            let kind = step.transaction_type();
            let on_ticket = |hit: &Hit| {
                hit.kind == kind
                    && match &self.target {
                        Target::Ticket(id) => same_ticket(hit.ticket, *id),
                        Target::NewOrTagged(_) => subject_tags(&hit.subject).any(|t| same_ticket(hit.ticket, t)),
                        Target::Refused => false,
                    }
            };
            let created = |hit: &Hit| {
                hit.kind == TransactionType::Create
                    && match &self.target {
                        Target::NewOrTagged(Some(queue)) => hit.queue.as_ref().is_some_and(|q| queue.is(q)),
                        _ => false,
                    }
            };
            // A step's own kind first, then a new ticket: one hit never serves two steps.
            let pick = (0..hits.len())
                .find(|&i| !used[i] && on_ticket(&hits[i]))
                .or_else(|| (0..hits.len()).find(|&i| !used[i] && created(&hits[i])));
            let Some(i) = pick else { return Verdict::NotFound };
            used[i] = true;
            first.get_or_insert((hits[i].ticket, hits[i].transaction));
        }
        match first {
            Some((ticket, transaction)) => Verdict::Found { ticket, transaction },
            None => Verdict::NotFound,
        }
    }
}

/// The ticket numbers of every `[name #N]` tag in a subject (RT's
/// `\[(?:https?://)?$rtname\s+\#(\d+)\s*\]`, with any name since `rtname` is not known
/// here), in order.
pub fn subject_tags(subject: &str) -> impl Iterator<Item = u64> + '_ {
    subject.split('[').skip(1).filter_map(|after| {
        let inside = after.split_once(']')?.0.trim_end();
        let (name, number) = inside.rsplit_once('#')?;
        let name_ends_in_space = name.ends_with(char::is_whitespace) && !name.trim().is_empty();
        let number_ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
        (name_ends_in_space && number_ok).then(|| number.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(queue: Option<&str>, action: Option<&str>, ticket: Option<&str>) -> GatewayRequest {
        GatewayRequest {
            queue: queue.map(|v| v.as_bytes().to_vec()),
            action: action.map(|v| v.as_bytes().to_vec()),
            ticket: ticket.map(|v| v.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    fn hit(transaction: u64, kind: &str, ticket: u64, queue: (u64, &str), subject: &str) -> Hit {
        Hit {
            transaction,
            kind: TransactionType::from_rt(kind),
            ticket,
            queue: Some(QueueInfo {
                id: queue.0,
                name: Some(queue.1.to_string()),
            }),
            subject: subject.to_string(),
        }
    }

    const GENERAL: (u64, &str) = (1, "General");
    const BUGS: (u64, &str) = (3, "bugs");
    const SUPPORT: (u64, &str) = (4, "support");

    fn verdict(request: &GatewayRequest, hits: &[Hit]) -> Verdict {
        Expectation::of(request).unwrap().find(hits, &BTreeMap::new())
    }

    fn found(ticket: u64, transaction: u64) -> Verdict {
        Verdict::Found { ticket, transaction }
    }

    #[test]
    fn defaults_are_correspond_and_queue_1() {
        let e = Expectation::of(&route(None, None, None)).unwrap();
        assert_eq!(e.target, Target::NewOrTagged(Some(QueueRef::Id(1))));
        assert_eq!(e.steps, [Step::Correspond]);
        let hits = [hit(40, "Create", 7, GENERAL, "help")];
        assert_eq!(verdict(&route(None, None, None), &hits), found(7, 40));
        assert_eq!(verdict(&route(Some("General"), None, None), &hits), found(7, 40));
        assert_eq!(verdict(&route(Some("general"), None, None), &hits), found(7, 40));
        assert_eq!(verdict(&route(Some("bugs"), None, None), &hits), Verdict::NotFound);
    }

    #[test]
    fn a_new_ticket_is_a_create_in_that_queue_by_name_or_id() {
        let hits = [hit(50, "Create", 9, BUGS, "it broke")];
        for queue in ["bugs", "BUGS", "Bugs", "3", "03"] {
            assert_eq!(verdict(&route(Some(queue), None, None), &hits), found(9, 50), "{queue}");
            assert_eq!(
                verdict(&route(Some(queue), Some("comment"), None), &hits),
                found(9, 50),
                "a comment on a new mail creates the ticket too ({queue})"
            );
        }
        for queue in ["support", "4", "bug", "1"] {
            assert_eq!(
                verdict(&route(Some(queue), None, None), &hits),
                Verdict::NotFound,
                "{queue}"
            );
        }
    }

    #[test]
    fn a_queue_name_is_judged_only_with_the_name_fetched() {
        let e = Expectation::of(&route(Some("bugs"), None, None)).unwrap();
        assert!(e.needs_queue_names());
        assert!(!Expectation::of(&route(Some("3"), None, None))
            .unwrap()
            .needs_queue_names());
        assert!(!Expectation::of(&route(Some("bugs"), None, Some("5")))
            .unwrap()
            .needs_queue_names());
        let mut nameless = hit(50, "Create", 9, BUGS, "s");
        nameless.queue.as_mut().unwrap().name = None;
        assert_eq!(e.find(&[nameless.clone()], &BTreeMap::new()), Verdict::NotFound);
        let by_id = Expectation::of(&route(Some("3"), None, None)).unwrap();
        assert_eq!(by_id.find(&[nameless], &BTreeMap::new()), found(9, 50));
    }

    #[test]
    fn non_ascii_queue_names_compare_without_case() {
        let hits = [hit(50, "Create", 9, (8, "Ärger"), "s")];
        assert_eq!(verdict(&route(Some("ärger"), None, None), &hits), found(9, 50));
    }

    #[test]
    fn one_mail_to_two_queues_is_two_tickets_told_apart() {
        let hits = [
            hit(60, "Create", 11, BUGS, "both"),
            hit(64, "Create", 12, SUPPORT, "both"),
        ];
        assert_eq!(verdict(&route(Some("bugs"), None, None), &hits), found(11, 60));
        assert_eq!(verdict(&route(Some("support"), None, None), &hits), found(12, 64));
        assert_eq!(verdict(&route(Some("General"), None, None), &hits), Verdict::NotFound);
        // Only the bugs post landed: the support route is still to be posted.
        assert_eq!(
            verdict(&route(Some("support"), None, None), &hits[..1]),
            Verdict::NotFound
        );
    }

    #[test]
    fn a_reply_is_a_correspond_on_that_ticket() {
        let hits = [hit(70, "Correspond", 5, BUGS, "Re: no tag")];
        assert_eq!(verdict(&route(Some("bugs"), None, Some("5")), &hits), found(5, 70));
        assert_eq!(
            verdict(&route(Some("bugs"), Some("correspond"), Some("5")), &hits),
            found(5, 70)
        );
        assert_eq!(
            verdict(&route(Some("support"), None, Some("5")), &hits),
            found(5, 70),
            "the queue plays no part once the ticket is known"
        );
        assert_eq!(verdict(&route(Some("bugs"), None, Some("6")), &hits), Verdict::NotFound);
        assert_eq!(
            verdict(&route(Some("bugs"), Some("comment"), Some("5")), &hits),
            Verdict::NotFound,
            "a reply is not a comment"
        );
    }

    #[test]
    fn a_comment_is_a_comment_on_that_ticket() {
        let hits = [
            hit(80, "Comment", 5, BUGS, "note"),
            hit(81, "Correspond", 6, BUGS, "note"),
        ];
        assert_eq!(verdict(&route(None, Some("comment"), Some("5")), &hits), found(5, 80));
        assert_eq!(verdict(&route(None, Some("Comment"), Some("5")), &hits), found(5, 80));
        assert_eq!(
            verdict(&route(None, Some("comment"), Some("6")), &hits),
            Verdict::NotFound
        );
        assert_eq!(
            verdict(&route(None, Some("correspond"), Some("5")), &hits),
            Verdict::NotFound
        );
    }

    #[test]
    fn a_reply_route_is_not_satisfied_by_a_new_ticket_and_vice_versa() {
        let created = [hit(90, "Create", 5, BUGS, "x")];
        assert_eq!(
            verdict(&route(Some("bugs"), None, Some("5")), &created),
            Verdict::NotFound
        );
        let replied = [hit(91, "Correspond", 5, BUGS, "x")];
        assert_eq!(verdict(&route(Some("bugs"), None, None), &replied), Verdict::NotFound);
    }

    #[test]
    fn without_a_ticket_field_the_subject_tag_names_the_ticket() {
        let hits = [hit(100, "Correspond", 42, SUPPORT, "Re: [example.test #42] printer")];
        assert_eq!(verdict(&route(Some("bugs"), None, None), &hits), found(42, 100));
        assert_eq!(
            verdict(&route(Some("bugs"), Some("comment"), None), &hits),
            Verdict::NotFound,
            "the route would have commented"
        );
        // A reply on a ticket the subject does not tag came from another route's ticket field.
        let other = [hit(101, "Correspond", 7, BUGS, "Re: [example.test #42] printer")];
        assert_eq!(verdict(&route(Some("bugs"), None, None), &other), Verdict::NotFound);
        // An empty or "0" ticket field is false to Perl: the tag decides.
        assert_eq!(verdict(&route(None, None, Some("")), &hits), found(42, 100));
        assert_eq!(verdict(&route(None, None, Some("0")), &hits), found(42, 100));
    }

    #[test]
    fn the_posted_ticket_wins_over_the_subject_tag() {
        let hits = [hit(110, "Correspond", 42, BUGS, "Re: [example.test #42] x")];
        assert_eq!(verdict(&route(None, None, Some("9")), &hits), Verdict::NotFound);
        assert_eq!(verdict(&route(None, None, Some("42")), &hits), found(42, 110));
    }

    #[test]
    fn a_ticket_rt_cannot_load_records_nothing() {
        for ticket in ["abc", "00", "4x", " 5", "99999999999999999999999"] {
            let e = Expectation::of(&route(Some("bugs"), None, Some(ticket))).unwrap();
            assert_eq!(e.target, Target::Refused, "{ticket}");
            let hits = [hit(1, "Create", 5, BUGS, "x"), hit(2, "Correspond", 5, BUGS, "x")];
            assert_eq!(e.find(&hits, &BTreeMap::new()), Verdict::NotFound);
        }
        assert_eq!(
            Expectation::of(&route(None, None, Some("05"))).unwrap().target,
            Target::Ticket(5),
            "RT's `\\d+` check passes and the database compares numerically"
        );
    }

    #[test]
    fn no_queue_leaves_only_the_subject_tag() {
        for queue in ["", "0", "99999999999999999999999"] {
            let e = Expectation::of(&route(Some(queue), None, None)).unwrap();
            assert_eq!(e.target, Target::NewOrTagged(None), "{queue:?}");
            let create = [hit(1, "Create", 5, GENERAL, "x")];
            assert_eq!(e.find(&create, &BTreeMap::new()), Verdict::NotFound);
            let tagged = [hit(2, "Correspond", 5, GENERAL, "[rt #5] x")];
            assert_eq!(e.find(&tagged, &BTreeMap::new()), found(5, 2));
        }
    }

    #[test]
    fn take_and_resolve_record_nothing_but_ride_along() {
        for action in ["take", "resolve", "take-resolve", "Take", "", "0", "-"] {
            assert_eq!(
                Expectation::of(&route(None, Some(action), Some("5"))),
                Err(Unanswerable::RecordsNoMessage(action.to_string())),
                "{action:?}"
            );
        }
        let e = Expectation::of(&route(None, Some("take-comment-resolve"), Some("5"))).unwrap();
        assert_eq!(e.steps, [Step::Comment]);
        let hits = [hit(120, "Comment", 5, BUGS, "x")];
        assert_eq!(e.find(&hits, &BTreeMap::new()), found(5, 120));
        // Empty pieces are dropped, as Perl's `grep $_` drops them.
        let e = Expectation::of(&route(None, Some("comment--0-"), Some("5"))).unwrap();
        assert_eq!(e.steps, [Step::Comment]);
    }

    #[test]
    fn actions_are_spelled_as_rt_spells_them() {
        for action in ["COMMENT", "cOmment", "close", "correspond-spam"] {
            assert!(
                matches!(
                    Expectation::of(&route(None, Some(action), Some("5"))),
                    Err(Unanswerable::UnknownAction(_))
                ),
                "{action}"
            );
        }
        assert_eq!(
            Expectation::of(&route(None, Some("Correspond"), None)).unwrap().steps,
            [Step::Correspond]
        );
    }

    #[test]
    fn every_recording_step_needs_its_own_transaction() {
        let on_ticket = route(None, Some("comment-correspond"), Some("5"));
        let both = [hit(130, "Comment", 5, BUGS, "x"), hit(131, "Correspond", 5, BUGS, "x")];
        assert_eq!(verdict(&on_ticket, &both), found(5, 130));
        assert_eq!(
            verdict(&on_ticket, &both[..1]),
            Verdict::NotFound,
            "a later step missing: post again"
        );
        // On a new mail RT makes one ticket per recording step.
        let new = route(Some("bugs"), Some("comment-correspond"), None);
        let one = [hit(140, "Create", 20, BUGS, "x")];
        assert_eq!(verdict(&new, &one), Verdict::NotFound);
        let two = [hit(140, "Create", 20, BUGS, "x"), hit(141, "Create", 21, BUGS, "x")];
        assert_eq!(verdict(&new, &two), found(20, 140));
    }

    #[test]
    fn other_transaction_types_never_match() {
        let hits = [
            hit(150, "EmailRecord", 5, BUGS, "[rt #5] x"),
            hit(151, "Status", 5, BUGS, "[rt #5] x"),
        ];
        assert_eq!(verdict(&route(Some("bugs"), None, Some("5")), &hits), Verdict::NotFound);
        assert_eq!(verdict(&route(Some("bugs"), None, None), &hits), Verdict::NotFound);
        assert_eq!(verdict(&route(Some("bugs"), None, None), &[]), Verdict::NotFound);
    }

    #[test]
    fn merged_tickets_are_followed_when_resolved() {
        // Ticket 11 was merged into 10: REST 2 reports the reply on 10.
        let hits = [hit(160, "Correspond", 10, BUGS, "x")];
        let e = Expectation::of(&route(None, None, Some("11"))).unwrap();
        assert_eq!(e.tickets_to_resolve(&hits, 5), [11]);
        assert_eq!(e.find(&hits, &BTreeMap::new()), Verdict::NotFound);
        assert_eq!(e.find(&hits, &BTreeMap::from([(11, 10)])), found(10, 160));
        assert_eq!(e.find(&hits, &BTreeMap::from([(11, 12)])), Verdict::NotFound);
        // Nothing to ask when the hit is on the ticket itself, or there is no reply at all.
        let direct = [hit(161, "Correspond", 11, BUGS, "x")];
        assert!(e.tickets_to_resolve(&direct, 5).is_empty());
        assert!(e.tickets_to_resolve(&[hit(1, "Create", 3, BUGS, "x")], 5).is_empty());
        // A tag naming a merged ticket.
        let tagged = [hit(170, "Comment", 10, BUGS, "Re: [example.test #11] x")];
        let e = Expectation::of(&route(Some("bugs"), Some("comment"), None)).unwrap();
        assert_eq!(e.tickets_to_resolve(&tagged, 5), [11]);
        assert_eq!(e.find(&tagged, &BTreeMap::from([(11, 10)])), found(10, 170));
        assert!(e.tickets_to_resolve(&tagged, 0).is_empty(), "bounded");
    }

    #[test]
    fn subject_tags_are_found_as_rt_finds_them() {
        let tags = |s: &str| subject_tags(s).collect::<Vec<_>>();
        assert_eq!(tags("Re: [example.test #42] printer"), [42]);
        assert_eq!(tags("[My Company RT #7 ] x"), [7]);
        assert_eq!(tags("[https://rt.example #8]"), [8]);
        assert_eq!(tags("[a #1] and [b #2]"), [1, 2]);
        for none in [
            "#42", "[#42]", "[ #42]", "[rt#42]", "[rt #]", "[rt #4x]", "[rt #42", "no tag",
        ] {
            assert!(tags(none).is_empty(), "{none}: {:?}", tags(none));
        }
        assert_eq!(tags("[rt [x #5]"), [5], "the innermost bracket, as RT's regex finds it");
    }

    #[test]
    fn one_hit_serves_one_step_and_the_step_kind_goes_first() {
        // Both could be the comment step; the Create must stay free for the correspond.
        let e = Expectation {
            target: Target::NewOrTagged(Some(QueueRef::Id(3))),
            steps: vec![Step::Comment, Step::Correspond],
        };
        let hits = [
            hit(1, "Create", 9, BUGS, "[rt #5] x"),
            hit(2, "Comment", 5, BUGS, "[rt #5] x"),
        ];
        assert_eq!(e.find(&hits, &BTreeMap::new()), found(5, 2));
    }
}
