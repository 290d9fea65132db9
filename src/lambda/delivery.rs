//! One route's delivery, as a straight line of named steps:
//!
//! 1. **claim** the route's record ([`crate::core::route_record`]): one conditional
//!    create, which is at once the lease and the "settled?" check; only when a record
//!    is there already is it read, and the claim rule decides (settled, held by another
//!    invocation, or taken over);
//! 2. **screen**: the first delivery's screening (kept in the record) or, for a route
//!    without a record, the mail's ([`crate::lambda::screening`]: SES's verdicts from
//!    the event, the mail's verdict record, or SES's fields on the stored mail): a
//!    verdict policy that drops the mail decides here, nothing is posted;
//! 3. **fetch** the mail from the store (once per mail, shared by its routes);
//! 4. **ask RT** first when an earlier attempt may have reached it, until RT shows it
//!    or RT can no longer be storing it ([`RouteRecord::settle_until_ms`]);
//! 5. **post**, with the delivery id ([`crate::core::delivery_id`]) in front;
//! 6. **ask RT** again after an answer that leaves it open whether RT took the mail,
//!    as long as this invocation's time allows;
//! 7. **settle**: the record's final state (delivered, refused, given up), or what the
//!    retry needs (`unsure` with its settle time, `free`);
//! 8. **tell**: a route given up is handed back ([`RouteEnd::GivenUp`]); once all the
//!    mail's routes are done, the handler sends its notices ([`crate::lambda::notify`]).
//!
//! While steps 4 to 6 run, the lease is renewed every [`LEASE_RENEWAL`], so a crashed
//! holder's route is taken over by Lambda's next retry, a minute later. A renewal may be
//! cut mid-request when the step it runs beside ends; the record's next write then
//! finds the version moved on by this invocation's own renewal and writes again
//! (`HeldRecord::write`): no record is left `posting` by the function's own lease
//! traffic. On the ordinary
//! path (a first delivery, no fault) the S3 requests before the post are two, sent at
//! once: the record's create and the mail's read; the record's final write comes after.
//!
//! The outcome table ([`crate::core::outcome::decide`]) is the only place deciding what
//! a case means. Every step that waits (S3, RT, RT's API) is bounded by the invocation's
//! deadline: what can't finish in time is left for the retry.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use crate::aws::counters::{CounterError, Counters, ADD_LIMIT};
use crate::aws::records::DeliveryRecords;
use crate::aws::s3::{MailStore, StoreError};
use crate::core::delivery_id::DeliveryId;
use crate::core::hold::{hold_notice, HeldMail, HoldCause};
use crate::core::lookup::Unanswerable;
use crate::core::machine_mail::{classify, loop_markers, AutoDecision, AutoPolicy, MachineKind};
use crate::core::notice::GivenUpRoute;
use crate::core::outcome::{decide, Case, Decision, GiveUpClass, Notice, Screening, SPAM_HEADER};
use crate::core::reply::{RtAnswer, TransportFailure};
use crate::core::route::PlannedDelivery;
use crate::core::route_record::{claim, Claim, Replaying, RouteRecord, RouteState, Screened, LEASE_RENEWAL, LEASE_TTL};
use crate::core::storm::{
    counter_item, hold_notice_key, loop_key, loop_window, storm_hold, Counts, StormBounds, HOLD_NOTICE,
};
use crate::core::threading::{
    decide_mail, unchecked_target, AsIs, Ask, ResolvedRule, ThreadDecision, ThreadTarget, MAX_BOUNCE_SCAN,
};
use crate::lambda::config::{LambdaConfig, UnaskablePolicy};
use crate::lambda::hold::take_slot;
use crate::lambda::invocation::{epoch_ms, within, HandlerError, Mode, Stop, StoredMail, Summary};
use crate::lambda::metrics::{self, Avoided};
use crate::rt::lookup::{ask_thread_target, DeliveryLookup, Lookup};
use crate::rt::MailGateway;
use crate::spool::Spool;

/// How a route's delivery ended for this invocation.
#[derive(Debug)]
pub enum RouteEnd {
    /// Settled (delivered, refused, given up, or found settled), counted.
    Settled(Summary),
    /// Settled, counted, and given up by this invocation: whom to tell, and about what
    /// (the mail's notices go out once its routes are all done).
    GivenUp(Summary, GivenUpRoute, Notice),
    /// Held instead of posted (a storm, a loop, an auto-reply under `hold`), counted,
    /// with the operator's notice when this mail is the storm's or loop's first
    /// (sent once the mail's routes are done).
    Held(Summary, Option<crate::core::notice::NoticeText>),
    /// Left for a retry, with the reason.
    Retry(String),
    /// The stored mail is blank: nothing to post on any route.
    NothingToPost,
}

/// How much of a mail's start the hold step reads for its header (machine-mail marks,
/// other helpdesks' marks): far more than any header block.
const HOLD_HEADER_SCAN: usize = 64 * 1024;

/// Step 1's third request (issue 23): one add to the storm counters, for a first
/// delivery of a route with a bound, when counters are on (`None` otherwise, or when
/// no answer came in time: the mail is then posted).
async fn storm_count(
    mail: &StoredMail<'_>,
    route: &str,
    bounds: &StormBounds,
    mode: Mode,
    counters: &Counters,
) -> Option<Result<Counts, CounterError>> {
    if mode != Mode::Normal || bounds.off() || !counters.on() {
        return None;
    }
    let item = counter_item(route, &mail.info.sender, epoch_ms(), bounds);
    let limit = mail.time_left().map_or(ADD_LIMIT, |left| left.min(ADD_LIMIT));
    match within(Some(limit), counters.add(&item)).await {
        Ok(answer) => answer,
        Err(Stop(why)) => Some(Err(CounterError::Failed(why))),
    }
}

/// The first wait between two questions to RT while it may still be storing a mail;
/// it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_secs(2);
/// The longest wait between two questions to RT.
const MAX_POLL: Duration = Duration::from_secs(20);

/// Delivers the routes of a mail: the function's configuration and the adapters one
/// route's delivery uses.
pub struct RouteDeliverer<'a, S, R, G, L> {
    /// The function's configuration.
    pub config: &'a LambdaConfig,
    /// Where the mail is stored.
    pub store: &'a S,
    /// Where the route records are kept.
    pub records: &'a R,
    /// RT's mail gateway.
    pub gateway: &'a G,
    /// RT's search, to ask whether it holds a post.
    pub lookup: &'a L,
}

/// A route's record as this invocation holds it: the record and the version it was last
/// written at. One write at a time (the renewals and the steps share it).
struct HeldRecord<'r, R> {
    records: &'r R,
    key: String,
    current: tokio::sync::Mutex<(RouteRecord, String)>,
    /// How often the lease is renewed ([`LEASE_RENEWAL`]; shorter in the tests).
    renewal: Duration,
}

/// What became of a change to a held record.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Written {
    /// Written.
    Yes,
    /// Another invocation took the record over (its holder, and where it left it).
    TakenOver { holder: String, state: RouteState },
    /// The record is gone (deleted by hand, or by the bucket's expiry).
    Vanished,
    /// The record no longer reads as one.
    Unreadable,
    /// Still this invocation's, but its version moved on at every try.
    KeptChanging,
}

impl Written {
    /// The real cause of a refused write, for the log.
    fn cause(&self) -> String {
        match self {
            Self::Yes => "written".into(),
            Self::TakenOver { holder, state } => {
                format!(
                    "another invocation ({holder}) took the route over; it is {}",
                    state.word()
                )
            }
            Self::Vanished => "the record was deleted meanwhile".into(),
            Self::Unreadable => "the record was overwritten with something unreadable".into(),
            Self::KeptChanging => "the record's version kept moving on under this invocation's own writes".into(),
        }
    }
}

/// How often a write refused by this invocation's own earlier write (one whose answer
/// never came back) is tried again at the version found.
const OWN_WRITE_RETRIES: u32 = 3;

impl<R: DeliveryRecords> HeldRecord<'_, R> {
    /// Changes the record, if no other invocation took it over meanwhile.
    ///
    /// A refusal alone does not mean "another invocation": a renewal cancelled
    /// mid-request (its work ended first) or one whose answer was lost may have been
    /// carried out, moving the record's version on without this invocation learning the
    /// new one. So a refused write reads the record: still held by this invocation, it
    /// is written again at the version found (this invocation's own lease traffic never
    /// beats its final write); else the answer says who or what changed it.
    async fn write(&self, edit: impl FnOnce(&mut RouteRecord)) -> Result<Written, StoreError> {
        let mut current = self.current.lock().await;
        let mut next = current.0.clone();
        edit(&mut next);
        for _ in 0..=OWN_WRITE_RETRIES {
            next.updated_ms = epoch_ms();
            if let Some(version) = self.records.replace(&self.key, &next.to_text(), &current.1).await? {
                *current = (next, version);
                return Ok(Written::Yes);
            }
            let Some((text, version)) = self.records.find_versioned(&self.key).await? else {
                return Ok(Written::Vanished);
            };
            match RouteRecord::from_text(&text) {
                // A claim always writes its own holder: this one is still ours.
                Some(found) if found.holder == current.0.holder => current.1 = version,
                Some(found) => {
                    return Ok(Written::TakenOver {
                        holder: found.holder,
                        state: found.state,
                    })
                }
                None => return Ok(Written::Unreadable),
            }
        }
        Ok(Written::KeptChanging)
    }

    /// Changes the record in memory only: the next write carries it (no S3 request).
    async fn note(&self, edit: impl FnOnce(&mut RouteRecord)) {
        edit(&mut self.current.lock().await.0);
    }

    /// The record as last written.
    async fn record(&self) -> RouteRecord {
        self.current.lock().await.0.clone()
    }

    /// Renews the lease every [`LEASE_RENEWAL`], for as long as it is polled.
    async fn renew(&self, ses_id: &str) -> Infallible {
        loop {
            tokio::time::sleep(self.renewal).await;
            let until = epoch_ms() + LEASE_TTL.as_millis() as u64;
            match self.write(|r| r.lease_until_ms = until).await {
                Ok(Written::Yes) => {}
                Ok(refused) => tracing::error!(
                    message_id = ses_id,
                    key = self.key,
                    cause = refused.cause(),
                    "lease not renewed while this invocation still works on the route"
                ),
                Err(error) => tracing::warn!(message_id = ses_id, key = self.key, error = %error, "lease not renewed"),
            }
        }
    }
}

/// Runs `work` while the lease is renewed.
async fn renewing<T, R: DeliveryRecords>(
    held: &HeldRecord<'_, R>,
    ses_id: &str,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::select! {
        biased;
        out = work => out,
        never = held.renew(ses_id) => match never {},
    }
}

/// What RT was found to hold, asked until RT can no longer be storing the post.
enum Confirmed {
    /// RT holds the post.
    Found { ticket: u64, transaction: u64 },
    /// RT does not hold it, and can't still be storing it: posting is safe.
    Absent,
    /// RT can't be asked (no RT login, an action that records nothing, or its API
    /// failing under `WHEN_RT_CANT_BE_ASKED=post`), and can no longer be storing an
    /// earlier post: post, knowing a duplicate is possible.
    PostUnconfirmed,
    /// Not known in this invocation's time (or RT can't be asked and the policy waits):
    /// left for the retry.
    Unknown(String),
}

/// The outcome of the claim.
enum Claimed<'r, R> {
    /// This invocation holds the record.
    Mine {
        held: Box<HeldRecord<'r, R>>,
        ask_rt: bool,
        settle_until_ms: u64,
    },
    /// Nothing to do (or left for a retry): how the route ended.
    Ended(RouteEnd),
}

impl<S, R, G, L> RouteDeliverer<'_, S, R, G, L>
where
    S: MailStore,
    R: DeliveryRecords,
    G: MailGateway,
    L: DeliveryLookup,
{
    /// Delivers one route of a mail: the steps of the module doc, in order.
    pub async fn deliver_route(
        &self,
        mail: &StoredMail<'_>,
        delivery: &PlannedDelivery,
        screening: &Screening,
        mode: Mode,
        counters: &Counters,
    ) -> Result<RouteEnd, HandlerError> {
        let ses_id = mail.ses_id();
        let route = delivery.route.entry.as_str();
        // The spam tag is not part of the post's identity: a replay finds its record
        // whatever the policy says today.
        let fingerprint = delivery.route.request.fingerprint();
        let id = DeliveryId::new(ses_id, &fingerprint);

        // 1. claim, and on the ordinary path 3. fetch at the same time: the mail's read
        // does not wait for the claim's round trip (a claim that finds the route settled
        // or held just wastes one read).
        let fresh = self.fresh_record(mail, delivery, &id, screening);
        let claim = self.claim(mail, format!("{ses_id}/{fingerprint}"), fresh, mode);
        // ... and the storm counters' one request, also at the same time (issue 23).
        let bounds = delivery.route.sense.storm(&self.config.hold);
        let count = storm_count(mail, route, &bounds, mode, counters);
        let (claimed, read_while_claiming, counted) = if self.reads_while_claiming(mail, delivery, screening, mode) {
            let (claimed, read, counted) = tokio::join!(claim, mail.spool.get_or_try_init(|| self.fetch(mail)), count);
            (claimed, Some(read), counted)
        } else {
            let (claimed, counted) = tokio::join!(claim, count);
            (claimed, None, counted)
        };
        let (held, ask_rt_first, settle_until_ms) = match claimed {
            Claimed::Mine {
                held,
                ask_rt,
                settle_until_ms,
            } => (held, ask_rt, settle_until_ms),
            Claimed::Ended(end) => return Ok(end),
        };
        // What the retry needs if this invocation stops before posting.
        let untouched = if ask_rt_first {
            LeftFor::Unsure(settle_until_ms)
        } else {
            LeftFor::Free
        };

        // 2. screen: the first delivery's screening, kept in the record.
        let mut delivery = delivery.clone();
        let screened = held.record().await.screened;
        let tag = match (&screened, mode) {
            (Screened::Dropped(case), Mode::ReplayScreenedToo) => {
                tracing::warn!(
                    message_id = ses_id,
                    route,
                    case,
                    "posting a mail the first delivery dropped on SES's verdicts, as the operator asked"
                );
                if case == "SpamDropped" {
                    SPAM_HEADER.to_vec()
                } else {
                    Vec::new()
                }
            }
            (Screened::Dropped(case), _) => {
                let case = screened_case(case);
                tracing::warn!(message_id = ses_id, route, outcome = case.decision_word(), case = ?case, "dropped by the verdict policy; not posted");
                return Ok(self.settle(mail, &delivery, &held, case, None).await);
            }
            (Screened::Tagged(tag), _) => tag.as_bytes().to_vec(),
            (Screened::Passed, _) => Vec::new(),
        };
        let mut front = id.header_line();
        front.extend_from_slice(&tag);
        delivery.route.request.extra_headers = front;

        // 2b. refused before any upload: a route beyond MAX_ROUTES_PER_MAIL, or a queue RT
        // doesn't have (see `PlannedDelivery::refused`). Unless an earlier attempt may
        // have reached RT: then it goes on as any other, RT asked first.
        if let (Some(case), false) = (delivery.refused, ask_rt_first) {
            tracing::warn!(message_id = ses_id, route, outcome = case.decision_word(), case = ?case, "refused before posting; not posted");
            return Ok(self.settle(mail, &delivery, &held, case, None).await);
        }

        // A post our own deadline could cut while RT is still storing the mail (RT may be
        // silent for up to RT_TIMEOUT) is not started: never posted, it waits for the retry.
        if !self.time_to_post(mail) && !ask_rt_first {
            self.leave(mail, &held, untouched).await;
            return Ok(self.retry(ses_id, route, "too close to the function's deadline".into()));
        }

        // 3. fetch (once: the first route to get here reads, the others wait for it),
        // unless read while claiming
        let read = match read_while_claiming {
            Some(read) => read,
            None => mail.spool.get_or_try_init(|| self.fetch(mail)).await,
        };
        let spool = match read {
            Ok(spool) => spool,
            Err(error) => {
                self.leave(mail, &held, untouched).await;
                return Err(error);
            }
        };
        if spool.is_blank() {
            self.leave(mail, &held, LeftFor::Free).await;
            // As the CLI: nothing to post. Logged, never silently dropped.
            tracing::warn!(
                message_id = ses_id,
                route,
                outcome = "empty",
                "stored mail holds no message; nothing posted"
            );
            return Ok(RouteEnd::NothingToPost);
        }
        if self.config.max_mail_bytes.is_some_and(|max| spool.len() > max) {
            tracing::warn!(
                message_id = ses_id,
                route,
                outcome = "given-up",
                "mail larger than MAX_MAIL_BYTES"
            );
            return Ok(self.settle(mail, &delivery, &held, Case::MailTooLarge, None).await);
        }

        // 3b. thread (issue 22): decided once, kept in the record before any post, so a
        // retry posts (and asks RT about) the same post.
        let thread = match self.thread(mail, &mut delivery, &held, spool, ask_rt_first).await {
            Ok(thread) => thread.map(|t| t.label()),
            Err(why) => {
                self.leave(mail, &held, untouched).await;
                return Ok(self.retry(ses_id, route, why));
            }
        };

        // 3c. hold (issue 23): a storm, a loop or an auto-reply under `hold` is held, not
        // posted; an auto-reply under `comment` is posted as a comment.
        match self
            .hold(mail, &mut delivery, &held, spool, counted, &bounds, ask_rt_first, mode)
            .await
        {
            Ok(None) => {}
            Ok(Some(end)) => return Ok(end),
            Err(why) => {
                self.leave(mail, &held, untouched).await;
                return Ok(self.retry(ses_id, route, why));
            }
        }

        // 4. ask RT first, while RT may still be storing an earlier attempt
        if ask_rt_first {
            let confirmed = renewing(
                &held,
                ses_id,
                self.confirm(mail, &delivery, &id, settle_until_ms, "before posting again"),
            )
            .await;
            match confirmed {
                Confirmed::Found { ticket, transaction } => {
                    let found = Some((ticket, transaction));
                    return Ok(self.settle(mail, &delivery, &held, Case::FoundInRt, found).await);
                }
                Confirmed::Absent | Confirmed::PostUnconfirmed => {}
                Confirmed::Unknown(why) => {
                    self.leave(mail, &held, LeftFor::Unsure(settle_until_ms)).await;
                    return Ok(self.retry(ses_id, route, why));
                }
            }
            if !self.time_to_post(mail) {
                // RT surely doesn't hold it: the retry posts at once.
                self.leave(mail, &held, LeftFor::Free).await;
                return Ok(self.retry(ses_id, route, "too close to the function's deadline".into()));
            }
        }

        // 5. post, in the instance's posting turn (the lease is renewed while waiting)
        let turn = renewing(&held, ses_id, within(mail.time_left(), mail.posting_turn())).await;
        let posting = match turn {
            Ok(posting) if self.time_to_post(mail) => posting,
            // Never posted by this invocation, and RT holds no earlier post (step 4).
            _ => {
                self.leave(mail, &held, LeftFor::Free).await;
                return Ok(self.retry(ses_id, route, "too close to the function's deadline".into()));
            }
        };
        held.note(|r| r.posts += 1).await;
        let (mut case, answer) = renewing(&held, ses_id, self.post(mail, &delivery, spool, &id, thread)).await;
        drop(posting);
        let mut found = None;

        // 6. ask RT after an answer that leaves it open
        if case.may_have_reached_rt() {
            let settle_until = epoch_ms() + self.settle_time().as_millis() as u64;
            // Kept at once: a crash now still leaves the retry the time to wait.
            let _ = held
                .write(|r| {
                    r.settle_until_ms = settle_until;
                    r.case = Some(format!("{case:?}"));
                })
                .await;
            let confirmed = renewing(
                &held,
                ses_id,
                self.confirm(mail, &delivery, &id, settle_until, "after an unclear answer"),
            )
            .await;
            match confirmed {
                Confirmed::Found { ticket, transaction } => {
                    case = Case::FoundInRt;
                    found = Some((ticket, transaction));
                }
                // RT did not take it: the retry posts at once.
                Confirmed::Absent => {
                    self.leave(mail, &held, LeftFor::Free).await;
                    return Ok(self.retry(ses_id, route, format!("{case:?}; RT does not hold the mail")));
                }
                // Not known, but RT can't still be storing it: the retry asks if it can.
                Confirmed::PostUnconfirmed => {
                    self.leave(mail, &held, LeftFor::Unsure(settle_until)).await;
                    return Ok(self.retry(ses_id, route, format!("{case:?}; RT can't be asked")));
                }
                Confirmed::Unknown(why) => {
                    self.leave(mail, &held, LeftFor::Unsure(settle_until)).await;
                    return Ok(self.retry(ses_id, route, format!("{case:?}; {why}")));
                }
            }
        }
        if let (None, Some(ticket)) = (found, answer) {
            found = Some((ticket, 0));
        }

        // 7. settle, 8. tell
        Ok(self.settle(mail, &delivery, &held, case, found).await)
    }

    /// Step 3b: threading by RT's markers (issue 22), for a route to the function's own
    /// RT once `RT_ORGANIZATION` is set (`Ok(None)`: off, the post unchanged), and never
    /// over a ticket the route or its sub-address names. The target an earlier attempt
    /// kept in the record is reused as it is (even with threading off since); otherwise the mail's start (from the spool,
    /// no second read of the store) decides, RT is asked ([`Self::ask_thread_target`])
    /// and the target written to the record before the post. `Err`: left for the retry (the record
    /// could not keep it).
    async fn thread(
        &self,
        mail: &StoredMail<'_>,
        delivery: &mut PlannedDelivery,
        held: &HeldRecord<'_, R>,
        spool: &Spool,
        ask_rt_first: bool,
    ) -> Result<Option<ThreadTarget>, String> {
        let rt = &self.config.rt_identity;
        let stored = held.record().await.thread;
        let stored = stored.as_deref().and_then(ThreadTarget::from_text);
        let request = &delivery.route.request;
        // A kept target stands even if threading was turned off since: the retry must
        // make (and ask RT about) the post the first attempt made.
        let off = rt.organization.is_empty() || request.rt.is_some() || request.ticket.is_some();
        if off && stored.is_none() {
            return Ok(None);
        }
        let route = delivery.route.entry.as_str();
        let target = match stored {
            Some(target) => target,
            None => {
                let head = spool
                    .head(MAX_BOUNCE_SCAN)
                    .await
                    .map_err(|e| format!("the spooled mail can't be read: {e}"))?;
                let decision = decide_mail(&head, rt);
                match unchecked_target(&decision) {
                    Ok(target) => target,
                    // An attempt that may have reached RT kept no target: it posted
                    // without threading (a target is always kept before a post).
                    Err(_) if ask_rt_first => ThreadTarget::AsIs(AsIs::Unchecked),
                    Err(ask) => {
                        let target = self.ask_thread_target(mail, held, &decision, ask, request, route).await;
                        match held.write(|r| r.thread = Some(target.to_text())).await {
                            Ok(Written::Yes) => target,
                            Ok(refused) => return Err(format!("threading target not kept: {}", refused.cause())),
                            Err(error) => return Err(format!("threading target not kept: {error}")),
                        }
                    }
                }
            }
        };
        target.apply(&mut delivery.route.request);
        metrics::threaded(route, target.label());
        Ok(Some(target))
    }

    /// Step 3c (issue 23), before any post: what a storm, a loop or a route's policy
    /// for automatic mail does with the mail. `Ok(None)`: post (perhaps as a comment);
    /// `Ok(Some(end))`: held (the record says `held`, with its cause), or left for a
    /// retry; `Err`: left for the retry (the record could not keep the decision).
    ///
    /// Checked on the first attempt only: a decision kept in the record (`auto`) is
    /// reused as it is, a release posts past the checks, and an attempt that may have
    /// reached RT kept no decision (it posted as the route says). Storms and loops are
    /// counted for first deliveries, never for a replay. Every store failure fails open:
    /// the mail is posted, with a warning.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        mail: &StoredMail<'_>,
        delivery: &mut PlannedDelivery,
        held: &HeldRecord<'_, R>,
        spool: &Spool,
        counted: Option<Result<Counts, CounterError>>,
        bounds: &StormBounds,
        ask_rt_first: bool,
        mode: Mode,
    ) -> Result<Option<RouteEnd>, String> {
        let (message_id, route) = (mail.ses_id(), delivery.route.entry.clone());
        let route = route.as_str();
        let request = &mut delivery.route.request;
        if let Some(kept) = held.record().await.auto {
            if kept.starts_with("comment") {
                if let AutoDecision::Comment(action) =
                    AutoPolicy::Comment.decide(MachineKind::AutoReply, request.action.as_deref())
                {
                    request.action = Some(action);
                }
            }
            return Ok(None);
        }
        if mode == Mode::Release {
            tracing::warn!(
                message_id,
                route,
                "released by an operator: posted past the hold checks"
            );
            return Ok(None);
        }
        if ask_rt_first {
            return Ok(None);
        }
        // Storms: the count made while the route was claimed.
        match counted {
            None => {}
            Some(Ok(counts)) => {
                if let Some(storm) = storm_hold(counts, bounds) {
                    return self
                        .hold_route(mail, delivery, held, storm.cause, &storm.detail, storm.first)
                        .await
                        .map(Some);
                }
            }
            Some(Err(CounterError::ItemFull)) if bounds.route_max > 0 => {
                let detail = format!(
                    "the counter of this window holds tens of thousands of senders (bound {} to this route within {} min)",
                    bounds.route_max, bounds.window_minutes
                );
                return self
                    .hold_route(mail, delivery, held, HoldCause::StormRoute, &detail, true)
                    .await
                    .map(Some);
            }
            Some(Err(error)) => {
                metrics::storm_counter_failed();
                tracing::warn!(message_id, route, error = %error, "storm counter failed; the mail is posted (fail open)");
            }
        }
        let head = spool
            .head(HOLD_HEADER_SCAN)
            .await
            .map_err(|e| format!("the spooled mail can't be read: {e}"))?;
        // Loops: another helpdesk's marks, repeated from one sender to one route.
        let loop_max = self.config.hold.loop_max;
        if mode == Mode::Normal && loop_max > 0 {
            let marks = loop_markers(&head, &self.config.rt_identity.rtname);
            if let Some(mark) = marks.iter().find(|m| m.system.is_other()) {
                let key = loop_key(route, &mail.info.sender);
                match take_slot(self.records, &key, loop_window(loop_max), mail.time_left()).await {
                    Ok(true) => tracing::info!(
                        message_id,
                        route,
                        helpdesk = %mark.system,
                        evidence = mark.evidence,
                        "another helpdesk's mail, within the loop bound: posted"
                    ),
                    Ok(false) => {
                        let detail = format!(
                            "{} ({}): more than {loop_max} such mails from this sender to this route within an hour",
                            mark.system, mark.evidence
                        );
                        return self
                            .hold_route(mail, delivery, held, HoldCause::Loop, &detail, true)
                            .await
                            .map(Some);
                    }
                    Err(error) => tracing::warn!(
                        message_id,
                        route,
                        error,
                        "loop window unreadable; the mail is posted (fail open)"
                    ),
                }
            }
        }
        // Automatic mail: the route's policy (threading decided the ticket already).
        let Some(machine) = classify(&head) else {
            return Ok(None);
        };
        let policy = delivery.route.sense.auto_policy(&self.config.hold);
        let request = &mut delivery.route.request;
        match policy.decide(machine.kind, request.action.as_deref()) {
            AutoDecision::AsIs => {
                if machine.kind.is_automatic() {
                    metrics::machine_mail(machine.kind, policy.label());
                }
                Ok(None)
            }
            AutoDecision::Hold => {
                let detail = machine.kind.label().to_string();
                self.hold_route(mail, delivery, held, HoldCause::AutoReply, &detail, false)
                    .await
                    .map(Some)
            }
            AutoDecision::Comment(action) => {
                // Kept before the post: a retry posts (and asks RT about) the same post.
                let kept = format!("comment:{}", machine.kind.label());
                match held.write(|r| r.auto = Some(kept)).await {
                    Ok(Written::Yes) => {}
                    Ok(refused) => return Err(format!("auto-reply decision not kept: {}", refused.cause())),
                    Err(error) => return Err(format!("auto-reply decision not kept: {error}")),
                }
                metrics::machine_mail(machine.kind, "comment");
                tracing::info!(
                    message_id,
                    route,
                    kind = machine.kind.label(),
                    "automatic mail: posted as a comment (AUTO_REPLY_POLICY / --auto-replies comment)"
                );
                request.action = Some(action);
                Ok(None)
            }
        }
    }

    /// Writes the route `held` with its cause, and (for the first mail of a storm or a
    /// loop, `notify`) takes the one operator notice a day of that storm or loop.
    async fn hold_route(
        &self,
        mail: &StoredMail<'_>,
        delivery: &PlannedDelivery,
        held: &HeldRecord<'_, R>,
        cause: HoldCause,
        detail: &str,
        notify: bool,
    ) -> Result<RouteEnd, String> {
        let (message_id, route) = (mail.ses_id(), delivery.route.entry.as_str());
        let reason = cause.reason(detail);
        let written = held
            .write(|r| {
                r.state = RouteState::Held;
                r.reason = Some(reason.clone());
                r.case = Some("Held".into());
                r.lease_until_ms = 0;
            })
            .await;
        match written {
            Ok(Written::Yes) => {}
            Ok(refused) => return Err(format!("held record not written: {}", refused.cause())),
            Err(error) => return Err(format!("held record not written: {error}")),
        }
        metrics::held(route, cause);
        tracing::warn!(
            message_id,
            route,
            sender = mail.info.sender,
            message_id_header = mail.info.message_id_header.as_deref(),
            outcome = "held",
            cause = cause.label(),
            reason,
            "held, not posted (release: rt-mailgate-held release, or rt-mailgate-replay --release)"
        );
        let counted = Summary {
            held: 1,
            ..Summary::default()
        };
        let Some(operator) = self.config.notices.operator.as_deref().filter(|_| notify) else {
            return Ok(RouteEnd::Held(counted, None));
        };
        let key = hold_notice_key(cause, route, &mail.info.sender);
        let notice = match take_slot(self.records, &key, HOLD_NOTICE, mail.time_left()).await {
            Ok(true) => Some(hold_notice(
                operator,
                cause,
                &HeldMail {
                    ses_message_id: message_id.to_string(),
                    message_id: mail.info.message_id_header.clone(),
                    sender: mail.info.sender.clone(),
                    route: route.to_string(),
                    reason,
                },
            )),
            Ok(false) => None,
            Err(error) => {
                tracing::warn!(message_id, route, error, "hold notice window unreadable; not sent");
                None
            }
        };
        Ok(RouteEnd::Held(counted, notice))
    }

    /// What RT says decides the target ([`ask_thread_target`]), while the lease is
    /// renewed and within the function's time; what RT could not say is logged (the
    /// mail then posts as without threading).
    async fn ask_thread_target(
        &self,
        mail: &StoredMail<'_>,
        held: &HeldRecord<'_, R>,
        decision: &ThreadDecision,
        ask: Ask,
        request: &crate::core::request::GatewayRequest,
        route: &str,
    ) -> ThreadTarget {
        let message_id = mail.ses_id();
        let rule = ResolvedRule {
            after_days: self.config.rt_identity.reopen_after_days,
            now_secs: (epoch_ms() / 1000) as i64,
        };
        let asked = renewing(
            held,
            message_id,
            within(
                mail.time_left(),
                ask_thread_target(self.lookup, request, decision, ask, rule),
            ),
        )
        .await;
        let (target, why) = asked.unwrap_or_else(|Stop(why)| (ThreadTarget::AsIs(AsIs::Unchecked), Some(why)));
        if let Some(why) = why {
            tracing::warn!(
                message_id,
                route,
                error = why.as_str(),
                thread = target.label(),
                "threading: RT could not say where the mail belongs"
            );
        }
        target
    }

    /// The record a first delivery creates.
    fn fresh_record(
        &self,
        mail: &StoredMail<'_>,
        delivery: &PlannedDelivery,
        id: &DeliveryId,
        screening: &Screening,
    ) -> RouteRecord {
        let now = epoch_ms();
        RouteRecord {
            state: RouteState::Posting,
            route: delivery.route.entry.clone(),
            recipients: delivery.recipients.clone(),
            sender: mail.info.sender.clone(),
            message_id: mail.info.message_id_header.clone(),
            delivery_id: id.to_string(),
            holder: holder_id(),
            lease_until_ms: now + LEASE_TTL.as_millis() as u64,
            settle_until_ms: 0,
            posts: 0,
            case: None,
            reason: None,
            ticket: None,
            transaction: None,
            screened: match screening {
                Screening::Drop(case) => Screened::Dropped(format!("{case:?}")),
                Screening::Post(tag) if tag.is_empty() => Screened::Passed,
                Screening::Post(tag) => Screened::Tagged(String::from_utf8_lossy(tag).into_owned()),
            },
            thread: None,
            auto: None,
            updated_ms: now,
        }
    }

    /// Whether the mail is read while its route is claimed: only where the ordinary path
    /// reads it anyway. Not in a replay (the first delivery's screening decides there),
    /// nor for a mail this invocation's screening drops, a route refused before any
    /// upload, or a post the deadline would not let start.
    fn reads_while_claiming(
        &self,
        mail: &StoredMail<'_>,
        delivery: &PlannedDelivery,
        screening: &Screening,
        mode: Mode,
    ) -> bool {
        mode == Mode::Normal
            && matches!(screening, Screening::Post(_))
            && delivery.refused.is_none()
            && self.time_to_post(mail)
    }

    /// Step 1: creates the route's record (one request on the ordinary path); when one is
    /// there, reads it and lets the claim rule decide.
    async fn claim<'r>(&'r self, mail: &StoredMail<'_>, key: String, fresh: RouteRecord, mode: Mode) -> Claimed<'r, R> {
        let ses_id = mail.ses_id();
        let route = fresh.route.clone();
        let route = route.as_str();
        let stopped = |why: String| Claimed::Ended(self.retry(ses_id, route, why));
        let mine = |record: RouteRecord, version: String, ask_rt: bool, settle_until_ms: u64| Claimed::Mine {
            held: Box::new(HeldRecord {
                records: self.records,
                key: key.clone(),
                current: tokio::sync::Mutex::new((record, version)),
                renewal: LEASE_RENEWAL,
            }),
            ask_rt,
            settle_until_ms,
        };
        match within(mail.time_left(), self.records.create(&key, &fresh.to_text())).await {
            Ok(Ok(Some(version))) => return mine(fresh, version, false, 0),
            Ok(Ok(None)) => {}
            // Unknown is not "not delivered": retry later rather than risk a duplicate.
            Ok(Err(error)) => return stopped(format!("route record unwritable: {error}")),
            Err(Stop(why)) => return stopped(format!("route record: {why}")),
        }
        let (text, version) = match within(mail.time_left(), self.records.find_versioned(&key)).await {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => return stopped("route record vanished between its create and its read".into()),
            Ok(Err(error)) => return stopped(format!("route record unreadable: {error}")),
            Err(Stop(why)) => return stopped(format!("route record: {why}")),
        };
        let replaying = match mode {
            Mode::Normal => Replaying::No,
            Mode::Replay => Replaying::Yes,
            Mode::ReplayScreenedToo => Replaying::ScreenedToo,
            Mode::Release => Replaying::Release,
        };
        match claim(&text, epoch_ms(), replaying, self.settle_time()) {
            Claim::Settled(state) => {
                metrics::avoided(route, Avoided::Record);
                tracing::info!(
                    message_id = ses_id,
                    route,
                    earlier = state.word(),
                    outcome = "already-delivered",
                    "settled by an earlier invocation; not posted again"
                );
                Claimed::Ended(RouteEnd::Settled(Summary {
                    already_delivered: 1,
                    ..Summary::default()
                }))
            }
            Claim::KeptDropped(case) => {
                tracing::warn!(
                    message_id = ses_id,
                    route,
                    case,
                    outcome = "given-up",
                    "the first delivery dropped this mail on SES's verdicts; a replay keeps it dropped \
                     (rt-mailgate-replay --post-screened-mail posts it anyway)"
                );
                Claimed::Ended(RouteEnd::Settled(Summary {
                    given_up: 1,
                    ..Summary::default()
                }))
            }
            Claim::Held { holder, until_ms } => {
                metrics::avoided(route, Avoided::Lease);
                metrics::outcome(route, Case::LeaseHeld, false);
                tracing::info!(
                    message_id = ses_id,
                    route,
                    holder,
                    until_ms,
                    outcome = "retry",
                    duplicate_avoided = "lease",
                    "another invocation is posting this route; left for a later retry"
                );
                Claimed::Ended(RouteEnd::Retry(format!("{:?}", Case::LeaseHeld)))
            }
            Claim::TakeOver {
                ask_rt,
                settle_until_ms,
            } => {
                // The first delivery's facts (and screening) stay; the lease is ours.
                let mut record = RouteRecord::from_text(&text)
                    .filter(|r| !r.delivery_id.is_empty())
                    .unwrap_or_else(|| fresh.clone());
                record.state = RouteState::Posting;
                record.holder = fresh.holder.clone();
                record.lease_until_ms = fresh.lease_until_ms;
                record.settle_until_ms = settle_until_ms;
                record.updated_ms = epoch_ms();
                match within(
                    mail.time_left(),
                    self.records.replace(&key, &record.to_text(), &version),
                )
                .await
                {
                    Ok(Ok(Some(version))) => mine(record, version, ask_rt, settle_until_ms),
                    Ok(Ok(None)) => {
                        metrics::avoided(route, Avoided::Lease);
                        tracing::info!(
                            message_id = ses_id,
                            route,
                            outcome = "retry",
                            duplicate_avoided = "lease",
                            "a concurrent invocation took this route first; left for a later retry"
                        );
                        Claimed::Ended(RouteEnd::Retry(format!("{:?}", Case::LeaseHeld)))
                    }
                    Ok(Err(error)) => stopped(format!("route record unwritable: {error}")),
                    Err(Stop(why)) => stopped(format!("route record: {why}")),
                }
            }
        }
    }

    /// Step 3: reads the mail (only keys under `MAIL_PREFIX`), bounded by the deadline.
    pub(crate) async fn fetch(&self, mail: &StoredMail<'_>) -> Result<Spool, HandlerError> {
        let message_id = mail.ses_id();
        let key = self
            .config
            .mail_key(message_id, mail.info.object_key.as_deref())
            .map_err(|reason| {
                tracing::error!(message_id, reason, outcome = "retry", "refused to read the mail");
                HandlerError::MalformedEvent(reason)
            })?;
        let started = Instant::now();
        let fetched = within(mail.time_left(), self.store.fetch(&key, self.config.line_endings)).await;
        metrics::mail_read(started.elapsed());
        let fetched = match fetched {
            Ok(fetched) => fetched,
            // Logged once, by the caller ("invocation failed" / "batch item will be retried").
            Err(Stop(_)) => {
                return Err(HandlerError::Deadline {
                    message_id: message_id.to_string(),
                });
            }
        };
        fetched.map_err(|source| HandlerError::Store {
            message_id: message_id.to_string(),
            source,
        })
    }

    /// Steps 4 and 6: asks RT whether it holds this post, again and again while RT may
    /// still be storing it (until `settle_until_ms`), within this invocation's time.
    async fn confirm(
        &self,
        mail: &StoredMail<'_>,
        delivery: &PlannedDelivery,
        id: &DeliveryId,
        settle_until_ms: u64,
        when: &str,
    ) -> Confirmed {
        let message_id = mail.ses_id();
        let route = delivery.route.entry.as_str();
        let mut pause = FIRST_POLL;
        loop {
            let answer = within(mail.time_left(), self.lookup.find(id, &delivery.route.request)).await;
            let settled = epoch_ms() >= settle_until_ms;
            // What "not known" means once RT can't still be storing the post.
            let unknown_after_settling = |reason: String, for_good: bool| {
                if for_good || self.config.when_rt_cant_be_asked == UnaskablePolicy::Post {
                    tracing::warn!(
                        message_id,
                        route,
                        when,
                        reason,
                        "RT can't be asked, and can no longer be storing an earlier post; posting (a duplicate is possible)"
                    );
                    Confirmed::PostUnconfirmed
                } else {
                    Confirmed::Unknown(format!(
                        "RT could not be asked ({reason}); left for the retry (WHEN_RT_CANT_BE_ASKED=retry)"
                    ))
                }
            };
            match answer {
                Ok(Ok(Lookup::Found { ticket, transaction })) => {
                    metrics::avoided(route, Avoided::RtLookup);
                    tracing::info!(
                        message_id,
                        route,
                        when,
                        ticket,
                        transaction,
                        duplicate_avoided = "rt-lookup",
                        "RT already holds this post; not posted again"
                    );
                    return Confirmed::Found { ticket, transaction };
                }
                Ok(Ok(Lookup::NotFound)) if settled => {
                    tracing::info!(message_id, route, when, "RT does not hold this post");
                    return Confirmed::Absent;
                }
                Ok(Ok(Lookup::NotFound)) => {}
                Ok(Ok(Lookup::Unanswerable(why))) if settled => {
                    return unknown_after_settling(why.to_string(), permanently_unanswerable(&why));
                }
                Ok(Ok(Lookup::Unanswerable(_))) => {}
                Ok(Err(error)) if settled => return unknown_after_settling(error.to_string(), false),
                Ok(Err(error)) => {
                    tracing::warn!(message_id, route, when, error = %error, "RT could not be asked; asking again");
                }
                Err(Stop(why)) => return Confirmed::Unknown(format!("RT could not be asked in time: {why}")),
            }
            // RT may still be storing it: ask again, while this invocation has time.
            let until_settled = Duration::from_millis(settle_until_ms.saturating_sub(epoch_ms()));
            let wait = pause.min(until_settled).max(Duration::from_millis(100));
            if mail.time_left().is_some_and(|left| left <= wait) {
                return Confirmed::Unknown(format!(
                    "RT may still be storing an earlier post for {} s; left for the retry",
                    until_settled.as_secs()
                ));
            }
            tokio::time::sleep(wait).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Step 5: one post, abandoned (as a timeout) before the function's deadline. The
    /// case, and the ticket RT named in an `ok`.
    async fn post(
        &self,
        mail: &StoredMail<'_>,
        delivery: &PlannedDelivery,
        spool: &Spool,
        id: &DeliveryId,
        thread: Option<&'static str>,
    ) -> (Case, Option<u64>) {
        let message_id = mail.ses_id();
        let started = Instant::now();
        let result = within(mail.time_left(), self.gateway.post(&delivery.route.request, spool))
            .await
            .unwrap_or_else(|_| {
                Err(TransportFailure::Timeout(
                    "stopped before the function's deadline".into(),
                ))
            });
        let ms = started.elapsed().as_millis() as u64;
        let bytes = spool.len() + delivery.route.request.message_prefix().len() as u64;
        metrics::posted(&delivery.route.entry, started.elapsed(), bytes);
        let recipients = delivery.recipients.join(",");
        let route = delivery.route.entry.as_str();
        let sender = mail.info.sender.as_str();
        let message_id_header = mail.info.message_id_header.as_deref();
        let delivery_id = id.as_str();
        // Each field its own JSON string (absent when not posted), never a Debug dump.
        let fields = delivery.route.request.form_fields_text();
        let field = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        let (queue, action, ticket) = (field("queue"), field("action"), field("ticket"));
        let (case, rt, rt_ticket) = match result {
            Ok(answer) => {
                let rt_ticket = match &answer {
                    RtAnswer::Ok(details) => details.ticket,
                    _ => None,
                };
                (Case::from_answer(&answer), answer.summary(), rt_ticket)
            }
            Err(failure) => (Case::from_transport(&failure), failure.to_string(), None),
        };
        let outcome = case.decision_word();
        // One line per post; tracing takes its level only as a literal, hence the macro.
        macro_rules! outcome_line {
            ($level:ident) => {
                tracing::$level!(
                    message_id,
                    sender,
                    message_id_header,
                    recipients,
                    route,
                    queue,
                    action,
                    ticket,
                    thread,
                    delivery_id,
                    outcome,
                    rt,
                    rt_ticket,
                    bytes,
                    ms,
                    "delivery outcome"
                )
            };
        }
        if case == Case::RtOk {
            outcome_line!(info);
        } else {
            outcome_line!(warn);
        }
        (case, rt_ticket)
    }

    /// Step 7: writes what the outcome table decided into the record, and hands back
    /// whom to tell. `found` is RT's ticket and transaction, where known.
    async fn settle(
        &self,
        mail: &StoredMail<'_>,
        delivery: &PlannedDelivery,
        held: &HeldRecord<'_, R>,
        case: Case,
        found: Option<(u64, u64)>,
    ) -> RouteEnd {
        let message_id = mail.ses_id();
        let route = delivery.route.entry.as_str();
        let mut counted = Summary::default();
        metrics::outcome(route, case, delivery.route.named_by_address);
        let (state, end) = match decide(case) {
            Decision::Retry => {
                let left = if case.may_have_reached_rt() {
                    LeftFor::Unsure(epoch_ms() + self.settle_time().as_millis() as u64)
                } else {
                    LeftFor::Free
                };
                self.leave(mail, held, left).await;
                return RouteEnd::Retry(format!("{case:?}"));
            }
            Decision::Delivered => {
                counted.delivered += 1;
                (RouteState::Delivered, RouteEnd::Settled(counted))
            }
            Decision::GiveUp(notice) if case == Case::RtNotOk => {
                counted.rejected += 1;
                (
                    RouteState::Refused,
                    RouteEnd::GivenUp(counted, given_up_route(delivery, case), notice),
                )
            }
            Decision::GiveUp(notice) => {
                counted.given_up += 1;
                (
                    RouteState::GivenUp,
                    RouteEnd::GivenUp(counted, given_up_route(delivery, case), notice),
                )
            }
        };
        let written = held
            .write(|r| {
                r.state = state;
                r.case = Some(format!("{case:?}"));
                r.lease_until_ms = 0;
                if state == RouteState::GivenUp {
                    r.reason = Some(reason(case, route));
                }
                if let Some((ticket, transaction)) = found {
                    r.ticket = Some(ticket);
                    r.transaction = (transaction != 0).then_some(transaction);
                }
            })
            .await;
        match written {
            Ok(Written::Yes) => {}
            Ok(refused) => tracing::error!(
                message_id,
                route,
                state = state.word(),
                cause = refused.cause(),
                "route record not written: it changed meanwhile, and was not overwritten"
            ),
            // The record stays `posting`: its lease expires and the retry asks RT first.
            Err(error) => tracing::error!(
                message_id,
                route,
                state = state.word(),
                error = %error,
                "route record not written; a retry asks RT before posting again"
            ),
        }
        end
    }

    /// Leaves the record in the state the retry needs.
    async fn leave(&self, mail: &StoredMail<'_>, held: &HeldRecord<'_, R>, left: LeftFor) {
        let (state, settle_until) = match left {
            LeftFor::Free => (RouteState::Free, 0),
            LeftFor::Unsure(until) => (RouteState::Unsure, until),
        };
        let write = held.write(|r| {
            r.state = state;
            r.settle_until_ms = settle_until;
            r.lease_until_ms = 0;
        });
        // Part of the margin: a lease left `posting` makes the retry wait for it.
        let limit = mail
            .time_left()
            .map(|t| t + crate::lambda::invocation::DEADLINE_MARGIN / 2);
        let message_id = mail.ses_id();
        match within(limit, write).await {
            Ok(Ok(Written::Yes)) => {}
            // Left as it is: another invocation has it, or it is gone.
            Ok(Ok(refused)) => tracing::info!(
                message_id,
                key = held.key,
                cause = refused.cause(),
                "route record changed meanwhile; left as it is"
            ),
            Ok(Err(error)) => {
                tracing::warn!(message_id, key = held.key, error = %error, "lease not released; it expires")
            }
            Err(Stop(why)) => tracing::warn!(
                message_id,
                key = held.key,
                error = why,
                "lease not released in time; it expires"
            ),
        }
    }

    /// Whether a post may start now: only with `RT_TIMEOUT` left before the deadline, so
    /// that the deadline never cuts a post RT may still be storing.
    fn time_to_post(&self, mail: &StoredMail<'_>) -> bool {
        mail.time_left().is_none_or(|left| left >= self.rt_timeout())
    }

    /// How long RT may still be storing a post after the last sign of it (`RT_TIMEOUT`).
    fn rt_timeout(&self) -> Duration {
        self.config.rt.timeout.unwrap_or(Duration::from_secs(900))
    }

    /// How long RT may still be storing a post after its last sign: `RT_SETTLE_SECONDS`,
    /// by default `RT_TIMEOUT` (3 × the slowest answer measured, see "Timeouts").
    fn settle_time(&self) -> Duration {
        self.config.rt_settle.unwrap_or_else(|| self.rt_timeout())
    }

    /// A route left for the retry, logged.
    fn retry(&self, message_id: &str, route: &str, why: String) -> RouteEnd {
        metrics::retried(route);
        tracing::warn!(message_id, route, outcome = "retry", reason = why, "left for the retry");
        RouteEnd::Retry(why)
    }
}

/// What an invocation that stops leaves for the retry.
#[derive(Debug, Clone, Copy)]
enum LeftFor {
    /// RT surely does not hold the post: post at once.
    Free,
    /// RT may hold it, and may still be storing it until then (epoch ms).
    Unsure(u64),
}

/// True when asking can never work for this route (so waiting for RT's API is useless).
fn permanently_unanswerable(why: &Unanswerable) -> bool {
    matches!(
        why,
        Unanswerable::NoRtLogin | Unanswerable::RecordsNoMessage(_) | Unanswerable::UnknownAction(_)
    )
}

/// The case a record's screening names.
fn screened_case(name: &str) -> Case {
    match name {
        "SpamDropped" => Case::SpamDropped,
        "DmarcReject" => Case::DmarcReject,
        _ => Case::VirusFound,
    }
}

/// Who holds a lease: this process, the moment it claimed, and a random part. Unique
/// per claim (Lambda's sandboxes may share a process id): a held record's writes tell
/// this invocation's own earlier writes from another invocation's by it.
fn holder_id() -> String {
    use std::hash::BuildHasher;
    static CLAIMS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let claim = CLAIMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // std's hasher keys are random per process: a random part without a new dependency.
    let random = std::collections::hash_map::RandomState::new().hash_one(claim) & 0xffff_ffff;
    format!("pid{}-{}-{random:08x}", std::process::id(), epoch_ms())
}

/// What a notice says about a route given up.
fn given_up_route(delivery: &PlannedDelivery, case: Case) -> GivenUpRoute {
    GivenUpRoute {
        route: delivery.route.entry.clone(),
        recipients: delivery.recipients.clone(),
        reason: reason(case, &delivery.route.entry),
        class: GiveUpClass::of(case, delivery.route.named_by_address),
    }
}

/// A sentence for the notice and the record.
fn reason(case: Case, route: &str) -> String {
    match case {
        Case::RtNotOk => format!("RT refused the mail for good (route {route}); RT has told the sender where it could"),
        Case::RtTemporaryFailure => {
            format!("RT has no such queue or action for route {route}: fix the route or create the queue, then replay")
        }
        Case::PayloadTooLarge => "the mail is larger than the web server in front of RT accepts (HTTP 413)".to_string(),
        Case::MailTooLarge => "the mail is larger than this gateway accepts (MAX_MAIL_BYTES)".to_string(),
        Case::VirusFound => "SES found a virus in the mail; it is not posted".to_string(),
        Case::SpamDropped => "SES judged the mail to be spam; it is not posted".to_string(),
        Case::DmarcReject => "the mail failed DMARC and the sender's domain asks for rejection".to_string(),
        Case::UnknownQueue => format!("RT has no queue of the name the address chose (route {route}); not posted"),
        Case::TooManyRoutes => {
            format!("the mail asks for more routes than MAX_ROUTES_PER_MAIL allows; route {route} not posted")
        }
        other => format!("{other:?} on route {route}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::request::GatewayRequest;
    use crate::core::threading::{MessageIdSearch, TicketCheck};
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A records store whose every answer to a change comes `answer_after` after the
    /// change is made: a request cancelled while it waits has been carried out.
    #[derive(Default)]
    struct SlowAnswers {
        map: Mutex<HashMap<String, (String, u64)>>,
        answer_after: Duration,
    }

    impl SlowAnswers {
        fn put(&self, key: &str, record: &RouteRecord) -> String {
            self.map.lock().unwrap().insert(key.into(), (record.to_text(), 1));
            "1".into()
        }

        fn stored(&self, key: &str) -> RouteRecord {
            RouteRecord::from_text(&self.map.lock().unwrap()[key].0).unwrap()
        }
    }

    impl DeliveryRecords for SlowAnswers {
        async fn find_versioned(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
            Ok(self
                .map
                .lock()
                .unwrap()
                .get(key)
                .map(|(t, v)| (t.clone(), v.to_string())))
        }
        async fn create(&self, key: &str, value: &str) -> Result<Option<String>, StoreError> {
            let mut map = self.map.lock().unwrap();
            if map.contains_key(key) {
                return Ok(None);
            }
            map.insert(key.into(), (value.into(), 1));
            Ok(Some("1".into()))
        }
        async fn replace(&self, key: &str, value: &str, version: &str) -> Result<Option<String>, StoreError> {
            let written = {
                let mut map = self.map.lock().unwrap();
                match map.get_mut(key) {
                    Some((text, v)) if v.to_string() == version => {
                        *v += 1;
                        *text = value.into();
                        Some(v.to_string())
                    }
                    _ => None,
                }
            };
            tokio::time::sleep(self.answer_after).await;
            Ok(written)
        }
    }

    fn posting(holder: &str) -> RouteRecord {
        let mut record = RouteRecord::from_text("delivered").unwrap();
        record.state = RouteState::Posting;
        record.holder = holder.into();
        record
    }

    fn held<'r>(records: &'r SlowAnswers, record: RouteRecord, renewal: Duration) -> HeldRecord<'r, SlowAnswers> {
        let version = records.put("m1/f", &record);
        HeldRecord {
            records,
            key: "m1/f".into(),
            current: tokio::sync::Mutex::new((record, version)),
            renewal,
        }
    }

    #[tokio::test]
    async fn a_renewal_cancelled_mid_request_does_not_block_the_final_write() {
        // The renewal (every 50 ms) reaches the store, but its answer (200 ms later)
        // never reaches this invocation: the post ended at 80 ms, and the renewal with it.
        let records = SlowAnswers {
            answer_after: Duration::from_millis(200),
            ..SlowAnswers::default()
        };
        let held = held(&records, posting("pid1-1-a"), Duration::from_millis(50));
        renewing(&held, "m1", tokio::time::sleep(Duration::from_millis(80))).await;
        assert!(records.stored("m1/f").lease_until_ms > 0, "the renewal was carried out");

        let written = held.write(|r| r.state = RouteState::Delivered).await.unwrap();
        assert_eq!(written, Written::Yes);
        assert_eq!(
            records.stored("m1/f").state,
            RouteState::Delivered,
            "the final write wins over this invocation's own lease traffic"
        );
    }

    #[tokio::test]
    async fn a_write_refused_for_another_invocation_names_it() {
        let records = SlowAnswers::default();
        let held = held(&records, posting("pid1-1-a"), LEASE_RENEWAL);
        // Another invocation took the route over (this one's lease ran out).
        let mut theirs = posting("pid2-9-b");
        theirs.state = RouteState::Unsure;
        records.put("m1/f", &theirs);
        records.map.lock().unwrap().get_mut("m1/f").unwrap().1 = 7;

        let written = held.write(|r| r.state = RouteState::Delivered).await.unwrap();
        assert_eq!(
            written,
            Written::TakenOver {
                holder: "pid2-9-b".into(),
                state: RouteState::Unsure
            }
        );
        assert!(written.cause().contains("pid2-9-b"), "{}", written.cause());
        assert_eq!(records.stored("m1/f").state, RouteState::Unsure, "theirs stands");

        records.map.lock().unwrap().clear();
        let written = held.write(|r| r.state = RouteState::Delivered).await.unwrap();
        assert_eq!(written, Written::Vanished);
        assert!(!written.cause().contains("another invocation"));
    }

    /// The adapters the threading step uses: RT's REST 2 answers for a ticket, scripted,
    /// and how often it was asked. The store and the gateway are never reached.
    #[derive(Default)]
    struct ThreadingRt {
        answers: Mutex<Vec<TicketCheck>>,
        asked: Mutex<Vec<u64>>,
        /// The Message-ID search's answers (none left: no ticket holds them).
        searches: Mutex<Vec<MessageIdSearch>>,
        searched: Mutex<Vec<Vec<String>>>,
    }

    impl MailStore for ThreadingRt {
        async fn fetch(&self, key: &str, _: crate::spool::LineEndings) -> Result<Spool, StoreError> {
            Err(StoreError::Missing {
                bucket: "b".into(),
                key: key.into(),
            })
        }
    }

    impl MailGateway for ThreadingRt {
        async fn post(&self, _: &GatewayRequest, _: &Spool) -> Result<RtAnswer, TransportFailure> {
            Err(TransportFailure::Timeout("not posted in this test".into()))
        }
    }

    impl DeliveryLookup for ThreadingRt {
        async fn find(&self, _: &DeliveryId, _: &GatewayRequest) -> Result<Lookup, crate::rt::lookup::LookupError> {
            Ok(Lookup::NotFound)
        }
        async fn check_ticket(&self, _: &GatewayRequest, ticket: u64) -> TicketCheck {
            self.asked.lock().unwrap().push(ticket);
            self.answers.lock().unwrap().remove(0)
        }
        async fn find_message_ids(&self, _: &GatewayRequest, ids: &[String]) -> MessageIdSearch {
            self.searched.lock().unwrap().push(ids.to_vec());
            let mut searches = self.searches.lock().unwrap();
            if searches.is_empty() {
                MessageIdSearch::Tickets(Vec::new())
            } else {
                searches.remove(0)
            }
        }
    }

    fn threading_config(organization: &str) -> LambdaConfig {
        threading_config_with(organization, &[])
    }

    /// One route (`support@example.test` to queue General), RT's `Organization`, and
    /// `more` variables.
    fn threading_config_with(organization: &str, more: &[(&str, &str)]) -> LambdaConfig {
        let mut vars: HashMap<&str, &str> = [
            ("RT_URL", "https://rt.example.test"),
            ("MAIL_BUCKET", "mail"),
            ("ROUTES", "support@example.test: --queue General"),
            ("RT_ORGANIZATION", organization),
            ("RT_NAME", "example.test"),
        ]
        .into();
        vars.extend(more.iter().copied());
        LambdaConfig::from_vars(|name| vars.get(name).map(|v| v.to_string())).unwrap()
    }

    fn planned(queue: &str) -> PlannedDelivery {
        PlannedDelivery {
            route: crate::core::route::Route {
                entry: "support@example.test".into(),
                request: GatewayRequest {
                    queue: Some(queue.as_bytes().to_vec()),
                    ..GatewayRequest::default()
                },
                named_by_address: false,
                sense: Default::default(),
            },
            recipients: vec!["support@example.test".into()],
            refused: None,
        }
    }

    const REPLY: &[u8] = b"From: customer@example.net\nSubject: Re: my printer\n\
        In-Reply-To: <rt-5.0.5-1-2-3.7-1-1@rt.example.test>\n\
        References: <RT-Ticket-7@rt.example.test> <rt-5.0.5-1-2-3.7-1-1@rt.example.test>\n\nthanks\n";

    /// A threading test's parts: a scripted RT (the store, the gateway and the lookup
    /// at once), the records, and mail `m1`, the reply [`REPLY`], as SES stored it.
    struct ThreadingCase {
        rt: ThreadingRt,
        records: SlowAnswers,
        info: crate::lambda::events::MailInfo,
        spool: Spool,
    }

    impl ThreadingCase {
        async fn new() -> Self {
            Self {
                rt: ThreadingRt::default(),
                records: SlowAnswers::default(),
                info: crate::lambda::events::MailInfo {
                    ses_id: "m1".into(),
                    ..Default::default()
                },
                spool: Spool::from_reader(REPLY, crate::spool::LineEndings::Keep)
                    .await
                    .unwrap(),
            }
        }

        /// The route's record, claimed for a post by this invocation.
        fn held(&self) -> HeldRecord<'_, SlowAnswers> {
            held(&self.records, posting("pid1-1-a"), LEASE_RENEWAL)
        }

        /// The thread step on `delivery` under `config`: a first attempt, or
        /// (`ask_rt_first`) one after a post that may have reached RT.
        async fn thread(
            &self,
            config: &LambdaConfig,
            delivery: &mut PlannedDelivery,
            held: &HeldRecord<'_, SlowAnswers>,
            ask_rt_first: bool,
        ) -> Result<Option<ThreadTarget>, String> {
            let deliverer = RouteDeliverer {
                config,
                store: &self.rt,
                records: &self.records,
                gateway: &self.rt,
                lookup: &self.rt,
            };
            let mail = StoredMail::new(&self.info, None);
            deliverer.thread(&mail, delivery, held, &self.spool, ask_rt_first).await
        }
    }

    #[tokio::test]
    async fn a_retry_posts_to_the_ticket_the_first_attempt_decided_whatever_rt_says_now() {
        let config = threading_config("rt.example.test");
        let case = ThreadingCase::new().await;
        // Ticket 7 was merged into 9 (RT answers with 9), in queue General; later gone.
        case.rt.answers.lock().unwrap().extend([
            TicketCheck::Found {
                ticket: 9,
                queue_id: 1,
                queue_name: Some("General".into()),
                status: "open".into(),
                resolved_secs: None,
            },
            TicketCheck::Missing,
        ]);
        let route = planned("General");
        let fingerprint = route.route.request.fingerprint();
        let held = case.held();

        let mut first = route.clone();
        let target = case.thread(&config, &mut first, &held, false).await.unwrap();
        assert_eq!(target, Some(ThreadTarget::Reply { ticket: 9 }));
        assert_eq!(first.route.request.ticket.as_deref(), Some(&b"9"[..]));
        assert_eq!(
            case.records.stored("m1/f").thread.as_deref(),
            Some("rt_marker:9"),
            "kept before the post"
        );

        // The retry (RT may hold the first post) reads the record: same post, RT not asked.
        let mut retry = route.clone();
        let target = case.thread(&config, &mut retry, &held, true).await.unwrap();
        assert_eq!(target, Some(ThreadTarget::Reply { ticket: 9 }));
        assert_eq!(retry.route.request, first.route.request);
        assert_eq!(
            *case.rt.asked.lock().unwrap(),
            vec![7],
            "one REST 2 question, by the first attempt"
        );
        // The record's key and the delivery id come from the route before threading.
        assert_eq!(route.route.request.fingerprint(), fingerprint);

        // Threading turned off before the retry: the kept target still stands.
        let mut after = route.clone();
        let target = case
            .thread(&threading_config(""), &mut after, &held, true)
            .await
            .unwrap();
        assert_eq!(target, Some(ThreadTarget::Reply { ticket: 9 }));
        assert_eq!(after.route.request, first.route.request);
    }

    #[tokio::test]
    async fn without_an_organization_or_with_an_earlier_unthreaded_post_nothing_changes() {
        let case = ThreadingCase::new().await;
        for (organization, ask_rt_first, expected) in [
            ("", false, None),
            // A post that may have reached RT kept no target: it went unthreaded.
            ("rt.example.test", true, Some(ThreadTarget::AsIs(AsIs::Unchecked))),
        ] {
            let config = threading_config(organization);
            let held = case.held();
            let mut delivery = planned("General");
            let target = case.thread(&config, &mut delivery, &held, ask_rt_first).await;
            assert_eq!(target.unwrap(), expected, "{organization}");
            assert_eq!(delivery.route.request, planned("General").route.request);
            assert_eq!(case.records.stored("m1/f").thread, None);
        }
        assert!(case.rt.asked.lock().unwrap().is_empty(), "RT never asked");
        assert!(case.rt.searched.lock().unwrap().is_empty(), "RT never searched");
    }

    /// A reply-all to the customer's own first mail: no marker of this RT (another RT's
    /// Organization), so its Message-IDs are searched; of the two tickets holding them,
    /// the one in the route's queue is the mail's, kept for the retry.
    #[tokio::test]
    async fn message_ids_thread_to_the_ticket_in_the_routes_queue_and_the_retry_keeps_it() {
        let config = threading_config("rt.elsewhere.test");
        let case = ThreadingCase::new().await;
        let rt = &case.rt;
        rt.searches.lock().unwrap().push(MessageIdSearch::Tickets(vec![4, 5]));
        let found = |ticket, queue_id, name: &str| TicketCheck::Found {
            ticket,
            queue_id,
            queue_name: Some(name.into()),
            status: "open".into(),
            resolved_secs: None,
        };
        rt.answers
            .lock()
            .unwrap()
            .extend([found(4, 2, "Sales"), found(5, 1, "General")]);
        let held = case.held();
        let mut first = planned("General");
        let target = case.thread(&config, &mut first, &held, false).await.unwrap();
        assert_eq!(target, Some(ThreadTarget::ReplyByMessageId { ticket: 5 }));
        assert_eq!(first.route.request.ticket.as_deref(), Some(&b"5"[..]));
        assert_eq!(case.records.stored("m1/f").thread.as_deref(), Some("message_id:5"));
        assert_eq!(
            *rt.searched.lock().unwrap(),
            // In-Reply-To, then References from its end (the same id, once); the
            // pseudo-reference names no stored mail.
            [vec!["rt-5.0.5-1-2-3.7-1-1@rt.example.test".to_string()]]
        );
        assert_eq!(*rt.asked.lock().unwrap(), [4, 5]);
        // The retry: the record decides, RT is not asked again.
        let mut retry = planned("General");
        let target = case.thread(&config, &mut retry, &held, true).await.unwrap();
        assert_eq!(target, Some(ThreadTarget::ReplyByMessageId { ticket: 5 }));
        assert_eq!(retry.route.request, first.route.request);
        assert_eq!(rt.searched.lock().unwrap().len(), 1);
    }

    /// RT_REOPEN_AFTER_DAYS: a marker naming a ticket resolved long ago makes a new
    /// ticket naming it (a header in front), and the record keeps that.
    #[tokio::test]
    async fn a_reply_to_a_long_resolved_ticket_is_a_new_ticket_naming_it() {
        let config = threading_config_with("rt.example.test", &[("RT_REOPEN_AFTER_DAYS", "30")]);
        assert_eq!(config.rt_identity.reopen_after_days, 30);
        let case = ThreadingCase::new().await;
        let now = (epoch_ms() / 1000) as i64;
        case.rt.answers.lock().unwrap().push(TicketCheck::Found {
            ticket: 7,
            queue_id: 1,
            queue_name: Some("General".into()),
            status: "resolved".into(),
            resolved_secs: Some(now - 31 * 86_400),
        });
        let held = case.held();
        let mut delivery = planned("General");
        let target = case.thread(&config, &mut delivery, &held, false).await.unwrap();
        assert_eq!(target, Some(ThreadTarget::NewAfterResolved { ticket: 7 }));
        assert_eq!(delivery.route.request.ticket, None);
        assert_eq!(
            delivery.route.request.extra_headers,
            b"X-RT-Mailgate-Resolved-Ticket: 7\n"
        );
        assert_eq!(
            case.records.stored("m1/f").thread.as_deref(),
            Some("new_after_resolved:7")
        );
    }

    #[test]
    fn every_claim_has_a_holder_of_its_own() {
        let (a, b) = (holder_id(), holder_id());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("pid{}-", std::process::id())), "{a}");
    }
}
