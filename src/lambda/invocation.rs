//! What every part of one invocation shares: the mail being delivered with its deadline
//! ([`StoredMail`]), the counts ([`Summary`]), the mode ([`Mode`]), why an invocation
//! fails ([`HandlerError`]), and the bound on every wait ([`within`]).
//!
//! The handler ([`crate::lambda::handler`]), one route's delivery
//! ([`crate::lambda::delivery`]) and the notices ([`crate::lambda::notify`]) all import
//! this module and none imports another's internals: the call line runs one way,
//! handler → delivery → adapters.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::aws::s3::StoreError;
use crate::lambda::events::{MailInfo, MalformedEvent};
use crate::spool::Spool;

/// Work stops this long before the function's deadline, so a slow RT ends in a clean
/// retry rather than a process killed mid-post.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The payload is not an SES receipt event.
    #[error("not an SES receipt-rule event: {0}")]
    MalformedEvent(String),
    /// The mail could not be read from the store.
    #[error("message {message_id}: {source}")]
    Store {
        /// SES's message id.
        message_id: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The mail could not be read before the function's deadline.
    #[error("message {message_id}: the mail could not be read before the function's deadline")]
    Deadline {
        /// SES's message id.
        message_id: String,
    },
    /// Some deliveries failed in a way a retry may fix.
    #[error("message {message_id}: {failed} of {total} deliveries will be retried: {details}")]
    Retry {
        /// SES's message id.
        message_id: String,
        /// How many posts failed.
        failed: usize,
        /// How many posts were planned.
        total: usize,
        /// Route and reason for each failure.
        details: String,
    },
}

impl From<MalformedEvent> for HandlerError {
    fn from(error: MalformedEvent) -> Self {
        Self::MalformedEvent(error.0)
    }
}

impl HandlerError {
    /// A short name for the Lambda error type (shown in the DLQ / on-failure record).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MalformedEvent(_) => "MalformedEvent",
            Self::Store { .. } => "MailNotReadable",
            Self::Deadline { .. } => "DeadlineReached",
            Self::Retry { .. } => "DeliveryWillBeRetried",
        }
    }
}

/// What one invocation did, counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Posts RT took.
    pub delivered: usize,
    /// Posts RT refused for good (`not ok`).
    pub rejected: usize,
    /// Posts given up (misroute, too large, virus, spam, DMARC), with notices.
    pub given_up: usize,
    /// Recipients with no route.
    pub unrouted: usize,
    /// Posts skipped because a record shows an earlier invocation settled them.
    pub already_delivered: usize,
    /// Posts held instead of made (storm, loop, auto-reply `hold`) by this invocation.
    pub held: usize,
}

impl std::ops::AddAssign for Summary {
    fn add_assign(&mut self, other: Self) {
        self.delivered += other.delivered;
        self.rejected += other.rejected;
        self.given_up += other.given_up;
        self.unrouted += other.unrouted;
        self.already_delivered += other.already_delivered;
        self.held += other.held;
    }
}

/// Whether earlier give-ups are honoured (a normal invocation) or retried (a replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Skip posts that were delivered, refused or given up before.
    Normal,
    /// Skip only posts that were delivered or refused: an admin fixed the cause. A mail
    /// the first delivery dropped on SES's verdicts (virus, DMARC reject, spam drop)
    /// stays dropped.
    Replay,
    /// As `Replay`, and also posts mails the first delivery dropped on SES's verdicts:
    /// only ever by the operator's explicit choice (`--post-screened-mail`).
    ReplayScreenedToo,
    /// A release of held mail (`rt-mailgate-held release`, `rt-mailgate-replay
    /// --release`): as `Replay` (the screening kept), and a route held for a storm, a
    /// loop or an auto-reply is taken over and posted, past the hold checks. A route
    /// that is not held (delivered, refused) is left as it is: posted exactly once.
    Release,
}

impl Mode {
    /// True for either replay.
    pub fn is_replay(self) -> bool {
        !matches!(self, Self::Normal)
    }
}

/// The mail of one invocation: its event's facts, the deadline, and the stored bytes
/// once fetched (its routes, posted concurrently, share one download).
pub struct StoredMail<'a> {
    /// The event's facts about the mail.
    pub info: &'a MailInfo,
    /// When the invocation must be done (none: no limit, as for a replay).
    pub deadline: Option<Instant>,
    /// The mail's bytes, fetched by the first route that needs them.
    pub spool: tokio::sync::OnceCell<Spool>,
    /// The instance's posting turn ([`PostingTurn`]) while this mail has it, and how many
    /// of its routes are posting: the last post to end gives the turn back.
    turn: tokio::sync::Mutex<Option<tokio::sync::OwnedMutexGuard<()>>>,
    posting_routes: std::sync::atomic::AtomicUsize,
    posting: Option<PostingTurn>,
}

/// One mail of an instance posts at a time (its routes concurrently, up to
/// `ROUTE_CONCURRENCY`): while it posts, the next mail of an SQS batch claims its
/// routes and reads its bytes, and the mail before writes its records, so the S3 round
/// trips hide behind RT's answers and no more posts reach RT at once than when mails
/// went one after another.
#[derive(Clone, Default)]
pub struct PostingTurn(std::sync::Arc<tokio::sync::Mutex<()>>);

impl<'a> StoredMail<'a> {
    /// Nothing fetched yet.
    pub fn new(info: &'a MailInfo, deadline: Option<Instant>) -> Self {
        Self {
            info,
            deadline,
            spool: tokio::sync::OnceCell::new(),
            turn: tokio::sync::Mutex::new(None),
            posting_routes: std::sync::atomic::AtomicUsize::new(0),
            posting: None,
        }
    }

    /// The same, posting only in `turn` (see [`PostingTurn`]).
    pub fn taking_turns(mut self, turn: PostingTurn) -> Self {
        self.posting = Some(turn);
        self
    }

    /// Waits for the instance's posting turn (at once when this mail has it already, or
    /// takes no turns); held until the returned value is dropped, after the post.
    pub async fn posting_turn(&self) -> Posting<'_, 'a> {
        if let Some(PostingTurn(instance)) = &self.posting {
            let mut turn = self.turn.lock().await;
            if turn.is_none() {
                *turn = Some(instance.clone().lock_owned().await);
            }
            self.posting_routes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Posting(self)
    }

    /// SES's message id.
    pub fn ses_id(&self) -> &str {
        &self.info.ses_id
    }

    /// Time left before the margin the function keeps for itself (`None`: no deadline).
    /// A deadline already past leaves zero, never "no limit".
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .saturating_sub(DEADLINE_MARGIN)
        })
    }
}

/// A route of a mail posting in the instance's turn (see [`StoredMail::posting_turn`]).
pub struct Posting<'m, 'a>(&'m StoredMail<'a>);

impl Drop for Posting<'_, '_> {
    fn drop(&mut self) {
        let mail = self.0;
        if mail.posting.is_some() && mail.posting_routes.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            // A route taking the turn right now holds the lock and will post: keep it.
            if let Ok(mut turn) = mail.turn.try_lock() {
                *turn = None;
            }
        }
    }
}

/// A step ran out of time, or its store failed: the route is left for the retry.
#[derive(Debug)]
pub struct Stop(pub String);

/// Runs `work` within `limit` (no limit when `None`).
pub async fn within<T>(limit: Option<Duration>, work: impl Future<Output = T>) -> Result<T, Stop> {
    match limit {
        None => Ok(work.await),
        Some(limit) => tokio::time::timeout(limit, work).await.map_err(|_| {
            Stop(format!(
                "not done within the {} s left before the deadline",
                limit.as_secs()
            ))
        }),
    }
}

/// A store call's answer, or why there is none (failed, or out of time), as text.
pub fn settled_in_time<T>(answer: Result<Result<T, StoreError>, Stop>) -> Result<T, String> {
    match answer {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(Stop(why)) => Err(why),
    }
}

/// Now, in milliseconds since the epoch (the unit of records and rate-limit windows).
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
