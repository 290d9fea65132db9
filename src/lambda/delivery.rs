//! One route's delivery, as a straight line of named steps:
//!
//! 1. **settled?** a delivery (or given-up) record says an earlier invocation finished
//!    it: nothing to do;
//! 2. **screen**: a verdict policy that drops the mail decides here, nothing is posted;
//! 3. **claim** the route's lease ([`crate::core::lease`]): another invocation posting
//!    it now means "later", not "again";
//! 4. **fetch** the mail from the store (once per mail, shared by its routes);
//! 5. **ask RT** first when an earlier attempt may have reached it;
//! 6. **post**;
//! 7. **ask RT** after an answer that leaves it unknown whether RT took the mail;
//! 8. **settle**: the record (delivered, refused, given up), or the lease's state for
//!    the retry (`unsure` when RT may hold the mail, `free` when it surely does not);
//! 9. **tell**: a route given up is handed back ([`RouteEnd::GivenUp`]); once all its
//!    routes are done, the mail's notices go out: one operator digest and at most one
//!    sender notice per mail, each within its rate limit ([`crate::core::rate_limit`]).
//!
//! The outcome table ([`crate::core::outcome::decide`]) is the only place deciding what
//! a case means. Every step that waits (S3, RT, RT's API) is bounded by the invocation's
//! deadline: what can't finish in time is left for the retry.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::aws::records::DeliveryRecords;
use crate::aws::s3::MailStore;
use crate::aws::ses::Notifier;
use crate::core::headers::MailSummary;
use crate::core::lease::{claim, Claim, Lease, LeaseState, LEASE_MARGIN};
use crate::core::notice::{operator_notice, sender_notice, GivenUpMail, GivenUpRoute};
use crate::core::outcome::{decide, sender_may_be_told, Case, Decision, GiveUpClass, Notice, Screening, SenderFacts};
use crate::core::rate_limit::{self, admit, normalize_address, sender_keys, Admission, Window};
use crate::core::reply::TransportFailure;
use crate::core::route::PlannedDelivery;
use crate::lambda::events::MailInfo;
use crate::lambda::handler::{Handler, HandlerError, Mode, Summary, DEADLINE_MARGIN};
use crate::lambda::metrics::{self, Avoided};
use crate::rt::lookup::{DeliveryLookup, Lookup};
use crate::rt::MailGateway;
use crate::spool::Spool;

/// How a route's delivery ended for this invocation.
#[derive(Debug)]
pub enum RouteEnd {
    /// Settled (delivered, refused, given up, or found settled), counted.
    Settled(Summary),
    /// Settled, counted, and given up by this invocation: whom to tell, and about what
    /// (the mail's notices go out once its routes are all done, see [`Handler::tell`]).
    GivenUp(Summary, GivenUpRoute, Notice),
    /// Left for a retry, with the reason.
    Retry(String),
    /// The stored mail is blank: nothing to post on any route.
    NothingToPost,
}

/// The mail of one invocation: its event's facts, the deadline, and the stored bytes
/// once fetched (its routes, posted concurrently, share one download).
pub struct StoredMail<'a> {
    info: &'a MailInfo,
    deadline: Option<Instant>,
    spool: tokio::sync::OnceCell<Spool>,
}

impl<'a> StoredMail<'a> {
    /// Nothing fetched yet.
    pub fn new(info: &'a MailInfo, deadline: Option<Instant>) -> Self {
        Self {
            info,
            deadline,
            spool: tokio::sync::OnceCell::new(),
        }
    }

    /// Time left before the margin the function keeps for itself.
    fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| {
            d.saturating_duration_since(Instant::now())
                .saturating_sub(DEADLINE_MARGIN)
        })
    }

    /// The mail's own Message-ID (without brackets), once fetched.
    fn message_id_header(&self) -> Option<&str> {
        self.spool.get()?.summary().message_id.as_deref()
    }
}

/// The record keys of one route of one mail.
struct Keys {
    done: String,
    given_up: String,
    lease: String,
}

impl Keys {
    fn new(message_id: &str, delivery: &PlannedDelivery) -> Self {
        // The spam tag is not part of the post's identity: a replay of a tagged mail
        // finds its record whatever the policy says today.
        let fingerprint = delivery.route.request.fingerprint();
        Self {
            done: format!("{message_id}/{fingerprint}"),
            given_up: format!("{message_id}/{fingerprint}.given-up"),
            lease: format!("{message_id}/{fingerprint}.lease"),
        }
    }
}

/// A step ran out of time, or its store failed: the route is left for the retry.
struct Stop(String);

impl<S, R, G, N, L> Handler<S, R, G, N, L>
where
    S: MailStore,
    R: DeliveryRecords,
    G: MailGateway,
    N: Notifier,
    L: DeliveryLookup,
{
    /// Delivers one route of a mail: the steps of the module doc, in order.
    pub(super) async fn deliver_route(
        &self,
        mail: &StoredMail<'_>,
        delivery: &PlannedDelivery,
        screening: &Screening,
        mode: Mode,
    ) -> Result<RouteEnd, HandlerError> {
        let message_id = mail.info.ses_id.clone();
        let message_id = message_id.as_str();
        let route = delivery.route.entry.as_str();
        let keys = Keys::new(message_id, delivery);
        let mut delivery = delivery.clone();

        // 1. settled?
        match self.settled_before(mail, &keys, mode).await {
            Ok(Some(earlier)) => {
                metrics::avoided(route, Avoided::Record);
                tracing::info!(
                    message_id,
                    route,
                    earlier,
                    outcome = "already-delivered",
                    "settled by an earlier invocation; not posted again"
                );
                return Ok(RouteEnd::Settled(Summary {
                    already_delivered: 1,
                    ..Summary::default()
                }));
            }
            Ok(None) => {}
            // Unknown is not "not delivered": retry later rather than risk a duplicate.
            Err(Stop(why)) => return Ok(self.retry(message_id, route, format!("delivery record unreadable: {why}"))),
        }

        // 2. screen
        let tag = match screening {
            Screening::Drop(case) => {
                tracing::warn!(message_id, route, outcome = case.decision_word(), case = ?case, "dropped by the verdict policy; not posted");
                return Ok(self.settle(mail, &delivery, &keys, *case, None).await);
            }
            Screening::Post(tag) => tag,
        };
        delivery.route.request.extra_headers.clone_from(tag);
        // A post our own deadline could cut while RT is still storing the mail (RT may be
        // silent for up to RT_TIMEOUT) is not started: never posted, it waits for the retry.
        let needed = self.config.rt.timeout.unwrap_or_default();
        if mail.time_left().is_some_and(|left| left.is_zero() || left < needed) {
            return Ok(self.retry(message_id, route, "too close to the function's deadline".into()));
        }

        // 3. claim
        let ask_rt_first = match self.claim(mail, &keys).await {
            Ok(Claimed::Mine { ask_rt }) => ask_rt,
            Ok(Claimed::Held { holder, until_ms }) => {
                metrics::avoided(route, Avoided::Lease);
                metrics::outcome(route, Case::LeaseHeld, false);
                tracing::info!(
                    message_id,
                    route,
                    holder,
                    until_ms,
                    outcome = "retry",
                    duplicate_avoided = "lease",
                    "another invocation is posting this route; left for a later retry"
                );
                return Ok(RouteEnd::Retry(format!("{:?}", Case::LeaseHeld)));
            }
            Err(Stop(why)) => return Ok(self.retry(message_id, route, format!("lease: {why}"))),
        };

        // 4. fetch (once: the first route to get here reads, the others wait for it)
        let spool = match mail.spool.get_or_try_init(|| self.fetch(mail)).await {
            Ok(spool) => spool,
            Err(error) => {
                // Nothing was posted: the retry may take the route at once.
                self.release(mail, &keys.lease, LeaseState::Free).await;
                return Err(error);
            }
        };
        if spool.is_blank() {
            self.release(mail, &keys.lease, LeaseState::Free).await;
            // As the CLI: nothing to post. Logged, never silently dropped.
            tracing::warn!(
                message_id,
                route,
                outcome = "empty",
                "stored mail holds no message; nothing posted"
            );
            return Ok(RouteEnd::NothingToPost);
        }
        let too_large = self.config.max_mail_bytes.is_some_and(|max| spool.len() > max);
        if too_large {
            tracing::warn!(
                message_id,
                route,
                outcome = "given-up",
                "mail larger than MAX_MAIL_BYTES"
            );
            return Ok(self.settle(mail, &delivery, &keys, Case::MailTooLarge, None).await);
        }

        // 5. ask RT first
        if ask_rt_first && self.ask_rt(mail, &delivery, "before posting again").await {
            return Ok(self.settle(mail, &delivery, &keys, Case::FoundInRt, None).await);
        }

        // 6. post
        let mut case = self.post(mail, &delivery).await;

        // 7. ask RT after an answer that leaves it open
        if case.may_have_reached_rt() && self.ask_rt(mail, &delivery, "after an unclear answer").await {
            case = Case::FoundInRt;
        }

        // 8. settle, 9. tell
        Ok(self.settle(mail, &delivery, &keys, case, Some(&keys.lease)).await)
    }

    /// Step 1: an earlier invocation's delivery record (or, outside a replay, its
    /// given-up record).
    async fn settled_before(&self, mail: &StoredMail<'_>, keys: &Keys, mode: Mode) -> Result<Option<String>, Stop> {
        if let Some(earlier) = self.find_record(mail, &keys.done).await? {
            return Ok(Some(earlier));
        }
        match mode {
            Mode::Normal => Ok(self
                .find_record(mail, &keys.given_up)
                .await?
                .map(|why| format!("given up: {why}"))),
            // An admin fixed what made it give up: post it again.
            Mode::Replay => Ok(None),
        }
    }

    /// A record, read within the time left.
    async fn find_record(&self, mail: &StoredMail<'_>, key: &str) -> Result<Option<String>, Stop> {
        within(mail.time_left(), self.records.find(key))
            .await?
            .map_err(|e| Stop(e.to_string()))
    }

    /// Step 3: takes the route's lease, until this invocation's deadline (plus a margin).
    async fn claim(&self, mail: &StoredMail<'_>, keys: &Keys) -> Result<Claimed, Stop> {
        let now = epoch_ms();
        let lasts = mail.time_left().unwrap_or(Duration::from_secs(900)) + DEADLINE_MARGIN + LEASE_MARGIN;
        let mine = Lease {
            state: LeaseState::Posting,
            until_ms: now + lasts.as_millis() as u64,
            holder: holder_id(),
        }
        .to_text();
        let found = within(mail.time_left(), self.records.find_versioned(&keys.lease))
            .await?
            .map_err(|e| Stop(e.to_string()))?;
        let (decision, version) = match &found {
            None => (claim(None, now), None),
            Some((text, version)) => (claim(Some(text), now), Some(version.as_str())),
        };
        let taken = match (&decision, version) {
            (Claim::Held { holder, until_ms }, _) => {
                return Ok(Claimed::Held {
                    holder: holder.clone(),
                    until_ms: *until_ms,
                })
            }
            (Claim::Create, _) | (_, None) => self.records.create(&keys.lease, &mine),
            (Claim::TakeOver { .. }, Some(version)) => {
                return match within(mail.time_left(), self.records.replace(&keys.lease, &mine, version))
                    .await?
                    .map_err(|e| Stop(e.to_string()))?
                {
                    true => Ok(Claimed::Mine {
                        ask_rt: matches!(decision, Claim::TakeOver { ask_rt: true }),
                    }),
                    false => Ok(lost_race()),
                };
            }
        };
        match within(mail.time_left(), taken)
            .await?
            .map_err(|e| Stop(e.to_string()))?
        {
            true => Ok(Claimed::Mine { ask_rt: false }),
            false => Ok(lost_race()),
        }
    }

    /// Step 4: reads the mail (only keys under `MAIL_PREFIX`), bounded by the deadline.
    async fn fetch(&self, mail: &StoredMail<'_>) -> Result<Spool, HandlerError> {
        let message_id = mail.info.ses_id.as_str();
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
            Err(Stop(why)) => {
                tracing::error!(
                    message_id,
                    key,
                    error = why,
                    outcome = "retry",
                    "mail not read before the deadline"
                );
                return Err(HandlerError::Deadline {
                    message_id: message_id.to_string(),
                });
            }
        };
        fetched.map_err(|source| {
            tracing::error!(message_id, key, error = %source, outcome = "retry", "mail could not be read");
            HandlerError::Store {
                message_id: message_id.to_string(),
                source,
            }
        })
    }

    /// Steps 5 and 7: true when RT's API shows RT holds the mail on this route. Unknown
    /// (no credentials, no Message-ID, RT unreachable, no time) counts as "no", logged:
    /// then the post goes ahead as it would without the lookup.
    async fn ask_rt(&self, mail: &StoredMail<'_>, delivery: &PlannedDelivery, when: &str) -> bool {
        let message_id = mail.info.ses_id.as_str();
        let route = delivery.route.entry.as_str();
        let Some(header_id) = mail.message_id_header() else {
            tracing::warn!(
                message_id,
                route,
                when,
                "the mail has no Message-ID: RT can't be asked; posting as before"
            );
            return false;
        };
        match within(mail.time_left(), self.lookup.find(header_id, &delivery.route.request)).await {
            Ok(Ok(Lookup::Found { ticket, transaction })) => {
                metrics::avoided(route, Avoided::RtLookup);
                tracing::info!(
                    message_id,
                    route,
                    when,
                    ticket,
                    transaction,
                    duplicate_avoided = "rt-lookup",
                    "RT already holds this mail on this route; not posted again"
                );
                true
            }
            Ok(Ok(Lookup::NotFound)) => {
                tracing::info!(message_id, route, when, "RT does not hold this mail on this route");
                false
            }
            Ok(Ok(Lookup::Unanswerable(why))) => {
                tracing::warn!(message_id, route, when, reason = %why, "RT can't be asked about this mail; posting as before, a duplicate is possible");
                false
            }
            Ok(Err(error)) => {
                tracing::warn!(message_id, route, when, error = %error, "RT could not be asked; a duplicate is possible");
                false
            }
            Err(Stop(why)) => {
                tracing::warn!(
                    message_id,
                    route,
                    when,
                    error = why,
                    "RT could not be asked in time; a duplicate is possible"
                );
                false
            }
        }
    }

    /// Step 6: one post, abandoned (as a timeout) before the function's deadline.
    async fn post(&self, mail: &StoredMail<'_>, delivery: &PlannedDelivery) -> Case {
        let Some(spool) = mail.spool.get() else {
            return Case::MailStoreUnavailable;
        };
        let message_id = mail.info.ses_id.as_str();
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
        // Each field its own JSON string (absent when not posted), never a Debug dump.
        let fields = delivery.route.request.form_fields_text();
        let field = |name: &str| fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        let (queue, action, ticket) = (field("queue"), field("action"), field("ticket"));
        let (case, rt) = match result {
            Ok(answer) => (Case::from_answer(&answer), answer.summary()),
            Err(failure) => (Case::from_transport(&failure), failure.to_string()),
        };
        let outcome = case.decision_word();
        // One line per post; tracing takes its level only as a literal, hence the macro.
        macro_rules! outcome_line {
            ($level:ident) => {
                tracing::$level!(
                    message_id,
                    recipients,
                    route,
                    queue,
                    action,
                    ticket,
                    outcome,
                    rt,
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
        case
    }

    /// Steps 8 and 9: records what the outcome table decided, leaves the lease (when
    /// this invocation holds one) in the state the retry needs, and tells who is told.
    async fn settle(
        &self,
        mail: &StoredMail<'_>,
        delivery: &PlannedDelivery,
        keys: &Keys,
        case: Case,
        lease: Option<&str>,
    ) -> RouteEnd {
        let message_id = mail.info.ses_id.as_str();
        let route = delivery.route.entry.as_str();
        let mut counted = Summary::default();
        metrics::outcome(route, case, delivery.route.named_by_address);
        match decide(case) {
            Decision::Delivered | Decision::GiveUp(_)
                if matches!(case, Case::RtOk | Case::RtNotOk | Case::FoundInRt) =>
            {
                // RT settled it: record it so no retry posts it again.
                if case == Case::RtNotOk {
                    counted.rejected += 1;
                } else {
                    counted.delivered += 1;
                }
                self.write_record(message_id, route, &keys.done, case.decision_word())
                    .await;
                match decide(case) {
                    Decision::GiveUp(notice) => RouteEnd::GivenUp(counted, given_up_route(delivery, case), notice),
                    _ => RouteEnd::Settled(counted),
                }
            }
            Decision::Delivered => RouteEnd::Settled(counted),
            Decision::GiveUp(notice) => {
                counted.given_up += 1;
                // The first invocation to give up tells; a retry or a twin does not.
                if self
                    .create_record(message_id, route, &keys.given_up, &format!("{case:?}"))
                    .await
                {
                    RouteEnd::GivenUp(counted, given_up_route(delivery, case), notice)
                } else {
                    RouteEnd::Settled(counted)
                }
            }
            Decision::Retry => {
                if let Some(key) = lease {
                    let state = if case.may_have_reached_rt() {
                        LeaseState::Unsure
                    } else {
                        LeaseState::Free
                    };
                    self.release(mail, key, state).await;
                }
                RouteEnd::Retry(format!("{case:?}"))
            }
        }
    }

    /// Leaves the lease in `state` for the retry (if it is still ours to change).
    async fn release(&self, mail: &StoredMail<'_>, key: &str, state: LeaseState) {
        let text = Lease {
            state,
            until_ms: epoch_ms(),
            holder: holder_id(),
        }
        .to_text();
        let message_id = mail.info.ses_id.as_str();
        let written = async {
            let (_, version) = self.records.find_versioned(key).await?.unwrap_or_default();
            self.records.replace(key, &text, &version).await
        };
        match within(mail.time_left().map(|t| t + DEADLINE_MARGIN / 2), written).await {
            Ok(Ok(true)) => {}
            // Left as `posting`, the lease expires and the next taker asks RT first.
            Ok(Ok(false)) => tracing::info!(message_id, key, "lease changed meanwhile; left as it is"),
            Ok(Err(error)) => tracing::warn!(message_id, key, error = %error, "lease not released; it expires"),
            Err(Stop(why)) => tracing::warn!(message_id, key, error = why, "lease not released in time; it expires"),
        }
    }

    /// Writes a delivery record; a lost race (another invocation wrote it first) and a
    /// failure are logged (the mail is settled either way).
    async fn write_record(&self, message_id: &str, route: &str, key: &str, value: &str) {
        match self.records.create(key, value).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(message_id, route, key, "delivery record already written by another invocation (a record race lost); RT may hold this mail twice"),
            Err(error) => tracing::error!(message_id, route, error = %error, "delivery record not written; a retry of this mail may post it again"),
        }
    }

    /// Creates a given-up record; true when this invocation is the first to give up
    /// (so notices go out once, whatever the retries).
    async fn create_record(&self, message_id: &str, route: &str, key: &str, value: &str) -> bool {
        match self.records.create(key, value).await {
            Ok(created) => created,
            Err(error) => {
                tracing::error!(message_id, route, error = %error, "given-up record not written");
                true
            }
        }
    }

    /// Step 9, once per mail: the notices for the routes this invocation gave up. One
    /// operator digest listing them all, and one sender notice when any route asks for
    /// it and the sender may safely be told; each only while its rate limit allows.
    pub(super) async fn tell(&self, mail: &StoredMail<'_>, given_up: Vec<(GivenUpRoute, Notice)>) {
        let info = mail.info;
        let message_id = info.ses_id.as_str();
        let header = mail
            .spool
            .get()
            .map(Spool::summary)
            .cloned()
            .unwrap_or_else(MailSummary::default);
        let operator_routes: Vec<GivenUpRoute> = given_up
            .iter()
            .filter(|(_, notice)| notice.operator)
            .map(|(route, _)| route.clone())
            .collect();
        let sender_routes: Vec<GivenUpRoute> = given_up
            .iter()
            .filter(|(_, notice)| notice.sender)
            .map(|(route, _)| route.clone())
            .collect();
        let about = |routes: Vec<GivenUpRoute>| GivenUpMail {
            ses_message_id: info.ses_id.clone(),
            message_id: header.message_id.clone(),
            subject: header.subject.clone().or_else(|| info.subject.clone()),
            sender: info.sender.clone(),
            routes,
        };
        let mut notices = Vec::new();
        if let (false, Some(operator)) = (operator_routes.is_empty(), self.config.notices.operator.as_deref()) {
            if self
                .take_slots(mail, &[(rate_limit::OPERATOR_KEY.to_string(), rate_limit::OPERATOR)])
                .await
            {
                notices.push(operator_notice(operator, &about(operator_routes)));
            } else {
                tracing::warn!(
                    message_id,
                    routes = operator_routes.len(),
                    "operator digest rate-limited; the given-up routes are in this log only"
                );
            }
        }
        let facts = SenderFacts {
            envelope_sender: info.sender.clone(),
            from: header.from.clone(),
            spf_pass: info.spf_pass,
            dkim_pass: info.dkim_pass,
            dmarc: info.verdicts.dmarc.clone(),
            dkim_domains: header.dkim_domains.clone(),
            header: header.header,
            machine_generated: header.machine_generated,
        };
        if !sender_routes.is_empty() && self.config.notices.to_senders {
            match normalize_address(&info.sender).filter(|_| sender_may_be_told(&facts)) {
                None => tracing::info!(
                    message_id,
                    "sender not told: unauthenticated for its domain, automatic, or no address"
                ),
                Some(normalized) => {
                    let [address_key, domain_key] = sender_keys(&normalized);
                    let windows = [
                        (address_key, rate_limit::PER_ADDRESS),
                        (domain_key, rate_limit::PER_DOMAIN),
                    ];
                    if self.take_slots(mail, &windows).await {
                        notices.push(sender_notice(&about(sender_routes)));
                    } else {
                        tracing::info!(message_id, sender = info.sender, "sender notice rate-limited");
                    }
                }
            }
        }
        for text in notices {
            match self.notifier.send(&text).await {
                Ok(()) => tracing::info!(message_id, to = text.to, "notice sent"),
                Err(error) => tracing::error!(message_id, error = %error, "notice not sent"),
            }
        }
    }

    /// Takes one slot in each window, in order; false (send nothing) as soon as one is
    /// full or its store fails. Each window is one small record updated only if
    /// unchanged (`If-Match`, or `If-None-Match` for the first), re-read after a lost
    /// race: concurrent invocations can't both send past a limit. A slot taken in an
    /// earlier window is not given back when a later one is full: fewer notices, never
    /// more.
    async fn take_slots(&self, mail: &StoredMail<'_>, windows: &[(String, Window)]) -> bool {
        const RACES: usize = 5;
        // The given-up record is written already: use part of the margin rather than lose the notice.
        let limit = mail.time_left().map(|t| t + DEADLINE_MARGIN / 2);
        'windows: for (key, window) in windows {
            for _ in 0..RACES {
                let not_sent = |what: &str, error: String| {
                    tracing::warn!(
                        message_id = mail.info.ses_id,
                        key,
                        error,
                        "notice window {what}; not sent"
                    );
                    false
                };
                let found = match settled_in_time(within(limit, self.records.find_versioned(key)).await) {
                    Ok(found) => found,
                    Err(error) => return not_sent("unreadable", error),
                };
                let Admission::Send(text) = admit(found.as_ref().map(|(t, _)| t.as_str()), epoch_ms(), *window) else {
                    return false;
                };
                let written = match &found {
                    None => within(limit, self.records.create(key, &text)).await,
                    Some((_, version)) => within(limit, self.records.replace(key, &text, version)).await,
                };
                match settled_in_time(written) {
                    Ok(true) => continue 'windows,
                    // Another invocation wrote meanwhile: read its times and decide again.
                    Ok(false) => {}
                    Err(error) => return not_sent("not written", error),
                }
            }
            tracing::warn!(message_id = mail.info.ses_id, key, "notice window contended; not sent");
            return false;
        }
        true
    }

    /// A route left for the retry, logged.
    fn retry(&self, message_id: &str, route: &str, why: String) -> RouteEnd {
        metrics::retried(route);
        tracing::warn!(message_id, route, outcome = "retry", reason = why, "left for the retry");
        RouteEnd::Retry(why)
    }
}

/// The claim's result.
enum Claimed {
    /// This invocation may post; ask RT first when `ask_rt`.
    Mine { ask_rt: bool },
    /// Another invocation holds the lease.
    Held { holder: String, until_ms: u64 },
}

/// Another invocation changed the lease between our read and our write: it holds it.
fn lost_race() -> Claimed {
    Claimed::Held {
        holder: "a concurrent invocation".into(),
        until_ms: 0,
    }
}

/// A store call's answer, or why there is none (failed, or out of time), as text.
fn settled_in_time<T>(answer: Result<Result<T, crate::aws::s3::StoreError>, Stop>) -> Result<T, String> {
    match answer {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(Stop(why)) => Err(why),
    }
}

/// Runs `work` within `limit` (no limit when `None`).
async fn within<T>(limit: Option<Duration>, work: impl Future<Output = T>) -> Result<T, Stop> {
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

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Who holds a lease: this process and the moment it claimed (for the log only).
fn holder_id() -> String {
    format!("pid{}-{}", std::process::id(), epoch_ms())
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

/// A sentence for the notice.
fn reason(case: Case, route: &str) -> String {
    match case {
        Case::RtNotOk => format!("RT refused the mail for good (route {route}); RT has told the sender where it could"),
        Case::RtTemporaryFailure => {
            format!("RT has no such queue or action for route {route}: fix the route or create the queue, then replay")
        }
        Case::PayloadTooLarge => "the mail is larger than the web server in front of RT accepts (HTTP 413)".to_string(),
        Case::MailTooLarge => "the mail is larger than this gateway accepts (MAX_MAIL_BYTES)".to_string(),
        Case::VirusFound => "SES found a virus in the mail".to_string(),
        Case::SpamDropped => "SES judged the mail to be spam".to_string(),
        Case::DmarcReject => "the mail failed DMARC and the sender's domain asks for rejection".to_string(),
        Case::UnknownQueue => format!("RT has no queue of the name the address chose (route {route}); not posted"),
        Case::TooManyRoutes => {
            format!("the mail asks for more routes than MAX_ROUTES_PER_MAIL allows; route {route} not posted")
        }
        other => format!("{other:?} on route {route}"),
    }
}

#[cfg(test)]
pub(super) mod tests_support {
    //! Lease texts for the handler's tests.
    use super::*;

    /// A `posting` lease of another invocation, valid until `until_ms`.
    pub fn posting_until(until_ms: u64) -> String {
        Lease {
            state: LeaseState::Posting,
            until_ms,
            holder: "another".into(),
        }
        .to_text()
    }
}
