//! One invocation: an SES receipt event names a mail (by message id) and its envelope
//! recipients. The mail is screened (SES's verdicts), each recipient is routed, the mail
//! is read once from the store and posted once per distinct route, and each outcome is
//! decided by the one outcome table ([`crate::core::outcome`]) and logged as one JSON line
//! (message id, recipients, route, RT's answer, bytes, milliseconds).
//!
//! - Delivered or refused posts get a delivery record: a retried or duplicated
//!   invocation never posts them again.
//! - Given-up posts get a given-up record; the mail's given-up routes, one notice per
//!   mail (an operator digest; the sender when allowed), within rate limits.
//! - The invocation fails, so Lambda retries it and finally hands it to the dead-letter
//!   queue, only when something may succeed later.

use std::time::Instant;

use aws_lambda_events::event::ses::SimpleEmailEvent;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tracing::Instrument;

use crate::aws::counters::Counters;
use crate::aws::records::DeliveryRecords;
use crate::aws::s3::MailStore;
use crate::aws::ses::Notifier;
use crate::core::outcome::Case;
use crate::core::route::PlannedDelivery;
use crate::lambda::config::LambdaConfig;
use crate::lambda::delivery::{RouteDeliverer, RouteEnd};
use crate::lambda::events::{body_mails, mails_in, EventShape, MailInfo};
use crate::lambda::invocation::{within, PostingTurn, StoredMail};
pub use crate::lambda::invocation::{HandlerError, Mode, Summary, DEADLINE_MARGIN};
use crate::lambda::notify::Notices;
use crate::rt::lookup::{DeliveryLookup, Lookups};
use crate::rt::queues::QueueKnown;
use crate::rt::MailGateway;

/// SES writes this object when a rule is created; it is not a mail.
pub const SES_SETUP_NOTIFICATION: &str = "AMAZON_SES_SETUP_NOTIFICATION";

/// The function's work, with its adapters.
pub struct Handler<S, R, G, N, L = Lookups> {
    config: LambdaConfig,
    store: S,
    records: R,
    gateway: G,
    notifier: N,
    lookup: L,
    posting: PostingTurn,
    /// The storm counters (off unless `STORM_TABLE` is set; see [`Self::with_counters`]).
    counters: Counters,
}

/// How many messages of an SQS batch are worked on at once: one posting, the next
/// getting ready (see [`PostingTurn`]).
const BATCH_MESSAGES_AT_ONCE: usize = 2;

impl<S: MailStore, R: DeliveryRecords, G: MailGateway, N: Notifier, L: DeliveryLookup> Handler<S, R, G, N, L> {
    /// A handler with its configuration and adapters. `lookup` asks RT whether it holds
    /// a mail already ([`Lookups`]: none when no RT API credentials are configured).
    pub fn new(config: LambdaConfig, store: S, records: R, gateway: G, notifier: N, lookup: L) -> Self {
        Self {
            config,
            store,
            records,
            gateway,
            notifier,
            lookup,
            posting: PostingTurn::default(),
            counters: Counters::Off,
        }
    }

    /// The same, counting storms in `counters` (issue 23).
    pub fn with_counters(mut self, counters: Counters) -> Self {
        self.counters = counters;
        self
    }

    /// Handles one invocation payload, whatever its shape:
    /// - an SES receipt event (the Lambda action): the answer is SES's disposition for a
    ///   `RequestResponse` invocation, else a summary;
    /// - an SQS batch (the buffered path: S3 action → SNS → SQS): the answer reports the
    ///   messages to retry (`batchItemFailures`), so one bad mail does not hold the rest;
    /// - an SNS event (S3 action → SNS → the function).
    ///
    /// Work that can't finish before `deadline` is left for a retry.
    pub async fn handle(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        if let Some(request) = payload.get(crate::lambda::operator::OPERATOR_KEY) {
            return self.operate(request, deadline).await;
        }
        match EventShape::of(&payload) {
            EventShape::Ses => self.handle_ses(payload, deadline).await,
            EventShape::Sqs => self.handle_sqs(payload, deadline).await,
            EventShape::Sns => self.handle_sns(payload, deadline).await,
            EventShape::Unknown(what) => Err(HandlerError::MalformedEvent(what)),
        }
    }

    async fn handle_ses(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        let event: SimpleEmailEvent =
            serde_json::from_value(payload).map_err(|e| HandlerError::MalformedEvent(e.to_string()))?;
        let mut summary = Summary::default();
        let mut synchronous = false;
        for record in &event.records {
            synchronous |= record.ses.receipt.action.invocation_type.as_deref() == Some("RequestResponse");
            let mail = MailInfo::from_ses(&record.ses)?;
            summary += self.deliver_mail(&mail, deadline, Mode::Normal).await?;
        }
        Ok(if synchronous {
            json!({ "disposition": self.config.disposition })
        } else {
            json!(summary)
        })
    }

    async fn handle_sqs(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        let records = payload["Records"].as_array().cloned().unwrap_or_default();
        let failures: Vec<Value> = futures_util::stream::iter(records)
            .map(|record| async move {
                let item = record["messageId"].as_str().unwrap_or_default().to_string();
                let body = record["body"].as_str().unwrap_or_default();
                let error = self.deliver_body(body, deadline).await.err()?;
                // Left on the queue: retried after the visibility timeout, then dead-lettered.
                tracing::warn!(sqs_message_id = item, error = %error, kind = error.kind(), "batch item will be retried");
                Some(json!({ "itemIdentifier": item }))
            })
            .buffered(BATCH_MESSAGES_AT_ONCE)
            .filter_map(std::future::ready)
            .collect()
            .await;
        Ok(json!({ "batchItemFailures": failures }))
    }

    /// Delivers every mail one queued message body names.
    async fn deliver_body(&self, body: &str, deadline: Option<Instant>) -> Result<(), HandlerError> {
        for mail in body_mails(body)? {
            self.deliver_mail(&mail, deadline, Mode::Normal).await?;
        }
        Ok(())
    }

    async fn handle_sns(&self, payload: Value, deadline: Option<Instant>) -> Result<Value, HandlerError> {
        let mut summary = Summary::default();
        for mail in mails_in(&payload)? {
            summary += self.deliver_mail(&mail, deadline, Mode::Normal).await?;
        }
        Ok(json!(summary))
    }

    /// Screens, routes, fetches and posts one mail: one delivery per distinct route,
    /// each a straight line of steps (see [`crate::lambda::delivery`]).
    pub async fn deliver_mail(
        &self,
        mail: &MailInfo,
        deadline: Option<Instant>,
        mode: Mode,
    ) -> Result<Summary, HandlerError> {
        // Every line logged for this mail carries its message id (the span's field), at
        // every log level: an INFO span would be disabled under AWS_LAMBDA_LOG_LEVEL=WARN.
        let span = tracing::error_span!("mail", message_id = %mail.ses_id);
        self.deliver_mail_in_span(mail, deadline, mode).instrument(span).await
    }

    async fn deliver_mail_in_span(
        &self,
        mail: &MailInfo,
        deadline: Option<Instant>,
        mode: Mode,
    ) -> Result<Summary, HandlerError> {
        let mut summary = Summary::default();
        let message_id = mail.ses_id.as_str();
        if message_id == SES_SETUP_NOTIFICATION {
            tracing::info!(message_id, outcome = "skipped", "SES setup notification, not a mail");
            return Ok(summary);
        }
        // At most MAX_ROUTES_PER_MAIL posts; the routes beyond are given up, not posted.
        let plan = self
            .config
            .routes
            .plan(&mail.recipients)
            .capped(self.config.max_routes_per_mail);
        for recipient in &plan.unrouted {
            summary.unrouted += 1;
            crate::lambda::metrics::unrouted();
            tracing::warn!(
                message_id,
                recipient,
                outcome = "unrouted",
                "no route for this recipient; not posted"
            );
        }
        let stored = StoredMail::new(mail, deadline).taking_turns(self.posting.clone());
        let deliverer = RouteDeliverer {
            config: &self.config,
            store: &self.store,
            records: &self.records,
            gateway: &self.gateway,
            lookup: &self.lookup,
        };
        // A replay screens as the first delivery did: a virus stays dropped, spam tagged,
        // even where a route has no record yet (see `crate::lambda::screening`).
        let screening = deliverer
            .screen_mail(&stored, !plan.deliveries.is_empty(), mode)
            .await?;
        // Routes post concurrently (`ROUTE_CONCURRENCY`, default 4: enough that a mail to a
        // few queues takes about as long as its slowest post, few enough that one mail
        // can't flood RT). They share one download of the mail.
        let routes = futures_util::stream::iter(&plan.deliveries)
            .map(|delivery| {
                let (stored, screening, deliverer) = (&stored, &screening, &deliverer);
                async move {
                    let checked = self.check_queue(stored, delivery).await;
                    (
                        delivery,
                        deliverer
                            .deliver_route(stored, &checked, screening, mode, &self.counters)
                            .await,
                    )
                }
            })
            .buffer_unordered(self.config.route_concurrency)
            .collect::<Vec<_>>();
        // The trace's index entries, written while the routes post (first delivery and
        // Lambda's retries; a replay names no new mail).
        let index = async {
            if mode == Mode::Normal {
                crate::lambda::trace::index_mail(&self.records, mail, stored.time_left()).await;
            }
        };
        let (ends, ()) = futures_util::future::join(routes, index).await;
        let mut failures = Vec::new();
        let mut nothing_to_post = false;
        let mut given_up = Vec::new();
        let mut hold_notices = Vec::new();
        let mut error = None;
        for (delivery, end) in ends {
            match end {
                Ok(RouteEnd::Settled(counted)) => summary += counted,
                Ok(RouteEnd::GivenUp(counted, route, notice)) => {
                    summary += counted;
                    given_up.push((route, notice));
                }
                Ok(RouteEnd::Held(counted, notice)) => {
                    summary += counted;
                    hold_notices.extend(notice);
                }
                Ok(RouteEnd::Retry(why)) => failures.push(format!("{} ({why})", delivery.route.entry)),
                Ok(RouteEnd::NothingToPost) => nothing_to_post = true,
                Err(e) => error = error.or(Some(e)),
            }
        }
        // Filed for `rt-mailgate-held` (and the daily digest) when a route ended anything
        // but delivered or a recipient has no route: the ordinary path writes nothing.
        let all_tickets = plan.unrouted.is_empty()
            && given_up.is_empty()
            && error.is_none()
            && summary.rejected == 0
            && summary.delivered + summary.already_delivered == plan.deliveries.len();
        if mode == Mode::Normal && !all_tickets {
            crate::lambda::held::file_mail(&self.records, mail, &plan.unrouted, stored.time_left()).await;
        }
        // One digest (and at most one sender notice) for all the routes given up, sent
        // whatever happened to the others: their given-up records are written, so no
        // retry would tell about them.
        if !given_up.is_empty() {
            let notices = Notices {
                config: &self.config,
                records: &self.records,
                notifier: &self.notifier,
            };
            notices.tell(&stored, given_up).await;
        }
        // A storm's or loop's one notice (its notice window is taken already).
        crate::lambda::notify::send_logged(&self.notifier, message_id, hold_notices, "hold notice").await;
        if let Some(error) = error {
            return Err(error);
        }
        if nothing_to_post {
            return Ok(summary);
        }
        if failures.is_empty() {
            Ok(summary)
        } else {
            Err(HandlerError::Retry {
                message_id: message_id.to_string(),
                failed: failures.len(),
                total: plan.deliveries.len(),
                details: failures.join(", "),
            })
        }
    }

    /// A route whose queue the recipient address chose, checked against RT's queues
    /// ([`crate::rt::queues`], through the RT login of the lookups): one RT has no queue
    /// of that name is refused ([`Case::UnknownQueue`]) before any upload. Without a
    /// login, or without a clear answer, it is posted as before (RT then decides).
    async fn check_queue(&self, mail: &StoredMail<'_>, delivery: &PlannedDelivery) -> PlannedDelivery {
        let mut checked = delivery.clone();
        if !delivery.route.named_by_address || delivery.refused.is_some() || delivery.route.request.queue.is_none() {
            return checked;
        }
        let asked = within(mail.time_left(), self.lookup.queue_known(&delivery.route.request)).await;
        match asked.unwrap_or_else(|_| QueueKnown::Unknown("no time left to ask".into())) {
            QueueKnown::Exists => {}
            QueueKnown::Missing => checked.refused = Some(Case::UnknownQueue),
            QueueKnown::Unknown(why) => tracing::debug!(
                route = delivery.route.entry,
                reason = why,
                "RT's queues not asked; posting as before"
            ),
        }
        checked
    }
}

/// A route of a mail as its record shows it now: the route entry and recipients, and
/// the record (none when no invocation reached the route; an error when unreadable).
#[derive(Debug, Clone)]
pub struct RouteNow {
    /// The route entry.
    pub route: String,
    /// The recipients sharing the post.
    pub recipients: Vec<String>,
    /// The record, if any.
    pub record: Result<Option<crate::core::route_record::RouteRecord>, String>,
}

impl<S: MailStore, R: DeliveryRecords, G: MailGateway, N: Notifier, L: DeliveryLookup> Handler<S, R, G, N, L> {
    /// Where each route of `mail` stands (read from its records, as routed today), and
    /// the recipients no route takes: what a replay reports and the operator must fix.
    pub async fn routes_now(&self, mail: &MailInfo) -> (Vec<RouteNow>, Vec<String>) {
        let plan = self.config.routes.plan(&mail.recipients);
        let mut routes = Vec::new();
        for delivery in &plan.deliveries {
            let key = format!("{}/{}", mail.ses_id, delivery.route.request.fingerprint());
            let record = match self.records.find_versioned(&key).await {
                Ok(found) => Ok(found.and_then(|(text, _)| crate::core::route_record::RouteRecord::from_text(&text))),
                Err(error) => Err(error.to_string()),
            };
            routes.push(RouteNow {
                route: delivery.route.entry.clone(),
                recipients: delivery.recipients.clone(),
                record,
            });
        }
        (routes, plan.unrouted)
    }

    /// Sends one mail through the notifier (the canary), as text on failure.
    pub(crate) async fn send_notice(&self, notice: &crate::core::notice::NoticeText) -> Result<(), String> {
        self.notifier.send(notice).await.map_err(|e| e.to_string())
    }

    /// The configuration the handler runs with.
    pub fn config(&self) -> &LambdaConfig {
        &self.config
    }

    /// The adapters a held mail's reject, expiry and digest use (`crate::lambda::held`):
    /// the mail store, the records and the notifier.
    pub fn adapters(&self) -> (&S, &R, &N) {
        (&self.store, &self.records, &self.notifier)
    }
}

#[cfg(test)]
mod tests {
    //! The handler's decisions with in-memory adapters: what the integration tests can't
    //! easily provoke (a deadline, a notice rate limit, an unreadable record store, RT
    //! still storing a mail when asked).
    use super::*;
    use crate::aws::memory::MemoryOutbox;
    use crate::aws::s3::StoreError;
    use crate::core::delivery_id::DeliveryId;
    use crate::core::rate_limit;
    use crate::core::reply::{OkDetails, RtAnswer, TransportFailure};
    use crate::core::request::GatewayRequest;
    use crate::core::route_record::{RouteRecord, RouteState};
    use crate::lambda::invocation::epoch_ms;
    use crate::rt::lookup::{Lookup, LookupError};
    use crate::spool::{LineEndings, Spool};
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    /// The stored mails by key; reads are journalled.
    struct Store(HashMap<String, Vec<u8>>, Journal);
    impl MailStore for Store {
        async fn fetch(&self, key: &str, endings: LineEndings) -> Result<Spool, StoreError> {
            self.1.lock().unwrap().push(format!("read {key}"));
            let Some(bytes) = self.0.get(key) else {
                return Err(StoreError::Missing {
                    bucket: "b".into(),
                    key: key.into(),
                });
            };
            Ok(Spool::from_reader(&bytes[..], endings).await.unwrap())
        }
    }

    /// The records store; the value is its own version, and the writes are counted.
    #[derive(Default)]
    struct Records {
        map: Mutex<HashMap<String, String>>,
        broken: bool,
        requests: AtomicUsize,
        /// How long a claim (the record's create) takes.
        create_delay: Duration,
        /// What happened, in order: route claims here, reads in [`Store`], posts in
        /// [`Gateway`].
        journal: Journal,
    }

    type Journal = std::sync::Arc<Mutex<Vec<String>>>;
    impl Records {
        fn check(&self, key: &str) -> Result<(), StoreError> {
            self.requests.fetch_add(1, Ordering::Relaxed);
            if self.broken {
                return Err(StoreError::Unavailable {
                    bucket: "b".into(),
                    key: key.into(),
                    reason: "503".into(),
                });
            }
            Ok(())
        }
    }
    impl DeliveryRecords for Records {
        async fn find_versioned(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
            self.check(key)?;
            Ok(self.map.lock().unwrap().get(key).map(|v| (v.clone(), v.clone())))
        }
        async fn create(&self, key: &str, value: &str) -> Result<Option<String>, StoreError> {
            self.check(key)?;
            let mail = key.split('/').next().unwrap_or_default();
            self.journal.lock().unwrap().push(format!("claim {mail}"));
            tokio::time::sleep(self.create_delay).await;
            self.journal.lock().unwrap().push(format!("claimed {mail}"));
            let mut map = self.map.lock().unwrap();
            if map.contains_key(key) {
                return Ok(None);
            }
            map.insert(key.into(), value.into());
            Ok(Some(value.into()))
        }
        async fn replace(&self, key: &str, value: &str, version: &str) -> Result<Option<String>, StoreError> {
            self.check(key)?;
            let mut map = self.map.lock().unwrap();
            if map.get(key).map(String::as_str) != Some(version) {
                return Ok(None);
            }
            map.insert(key.into(), value.into());
            Ok(Some(value.into()))
        }
    }

    /// RT as its API would show it: whether it holds the post (from the `holds_from`th
    /// question on: RT is still storing it before), and how often asked.
    struct FakeLookup {
        holds_from: AtomicUsize,
        asked: AtomicUsize,
        broken: AtomicBool,
    }
    impl Default for FakeLookup {
        fn default() -> Self {
            Self {
                holds_from: AtomicUsize::new(usize::MAX),
                asked: AtomicUsize::new(0),
                broken: AtomicBool::new(false),
            }
        }
    }
    impl FakeLookup {
        fn holds(&self) {
            self.holds_from.store(1, Ordering::Relaxed);
        }
    }
    impl DeliveryLookup for FakeLookup {
        async fn find(&self, _id: &DeliveryId, _request: &GatewayRequest) -> Result<Lookup, LookupError> {
            let asked = self.asked.fetch_add(1, Ordering::Relaxed) + 1;
            if self.broken.load(Ordering::Relaxed) {
                return Err(LookupError::Timeout(Duration::from_secs(1)));
            }
            Ok(if asked >= self.holds_from.load(Ordering::Relaxed) {
                Lookup::Found {
                    ticket: 7,
                    transaction: 70,
                }
            } else {
                Lookup::NotFound
            })
        }
    }

    struct Gateway {
        posts: AtomicUsize,
        delay: Duration,
        /// Answers with a reset (RT may have taken the mail) instead of `ok`.
        breaks: AtomicBool,
        /// The bytes put in front of the message by the last post.
        last_prefix: Mutex<Vec<u8>>,
        /// The `action` field of the last post.
        last_action: Mutex<Option<Vec<u8>>>,
        journal: Journal,
    }
    impl MailGateway for Gateway {
        async fn post(&self, request: &GatewayRequest, _message: &Spool) -> Result<RtAnswer, TransportFailure> {
            self.posts.fetch_add(1, Ordering::Relaxed);
            *self.last_prefix.lock().unwrap() = request.message_prefix();
            *self.last_action.lock().unwrap() = request.action.clone();
            self.journal.lock().unwrap().push("post begins".into());
            tokio::time::sleep(self.delay).await;
            self.journal.lock().unwrap().push("post ends".into());
            if self.breaks.load(Ordering::Relaxed) {
                return Err(TransportFailure::Broken("connection reset".into()));
            }
            Ok(RtAnswer::Ok(OkDetails {
                ticket: Some(7),
                ..OkDetails::default()
            }))
        }
    }

    type TestHandler = Handler<Store, Records, Gateway, MemoryOutbox, FakeLookup>;

    fn handler(vars: &[(&str, &str)], records: Records, delay: Duration) -> TestHandler {
        let mut env: HashMap<String, String> = [
            ("RT_URL", "http://127.0.0.1:9"),
            ("MAIL_BUCKET", "b"),
            ("ROUTES", "bugs@example.com: --queue bugs"),
            ("OPERATOR_EMAIL", "ops@example.com"),
            ("NOTICE_FROM", "rt@example.com"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = LambdaConfig::from_vars(|k| env.get(k).cloned()).unwrap();
        let mails = ["m1", "m2", "m3"].map(|id| {
            (
                id.to_string(),
                format!("From: a@c.example\nMessage-ID: <{id}@c.example>\nSubject: {id}\n\nhello\n").into_bytes(),
            )
        });
        let gateway = Gateway {
            posts: AtomicUsize::new(0),
            delay,
            breaks: Default::default(),
            last_prefix: Default::default(),
            last_action: Default::default(),
            journal: records.journal.clone(),
        };
        Handler::new(
            config,
            Store(mails.into_iter().collect(), records.journal.clone()),
            records,
            gateway,
            MemoryOutbox::default(),
            FakeLookup::default(),
        )
    }

    fn mail(id: &str, spf_pass: bool) -> MailInfo {
        MailInfo {
            ses_id: id.into(),
            recipients: vec!["bugs@example.com".into()],
            sender: "a@c.example".into(),
            spf_pass,
            ..MailInfo::default()
        }
    }

    /// The route records (not the notice windows), by key.
    fn route_records(h: &TestHandler) -> Vec<(String, RouteRecord)> {
        let map = h.records.map.lock().unwrap();
        let mut records: Vec<_> = map
            .iter()
            .filter(|(k, _)| !k.starts_with("notices/"))
            .map(|(k, v)| (k.clone(), RouteRecord::from_text(v).expect("a route record")))
            .collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        records
    }

    /// Rewrites the one route record of the handler.
    fn edit_record(h: &TestHandler, edit: impl FnOnce(&mut RouteRecord)) {
        let (key, mut record) = route_records(h).remove(0);
        edit(&mut record);
        h.records.map.lock().unwrap().insert(key, record.to_text());
    }

    fn posts(h: &TestHandler) -> usize {
        h.gateway.posts.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn near_the_deadline_nothing_is_posted_and_the_work_is_left_for_the_retry() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        let err = h
            .deliver_mail(
                &mail("m1", true),
                Some(Instant::now() + Duration::from_secs(1)),
                Mode::Normal,
            )
            .await;
        assert!(
            matches!(&err, Err(HandlerError::Retry { details, .. }) if details.contains("deadline")),
            "{err:?}"
        );
        assert_eq!(posts(&h), 0);
        assert_eq!(
            route_records(&h)[0].1.state,
            RouteState::Free,
            "the retry posts at once"
        );
    }

    #[tokio::test]
    async fn a_deadline_already_past_leaves_no_time_rather_than_no_limit() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        let past = Instant::now() - Duration::from_secs(5);
        assert!(h
            .deliver_mail(&mail("m1", true), Some(past), Mode::Normal)
            .await
            .is_err());
        assert_eq!(posts(&h), 0);
    }

    #[tokio::test]
    async fn the_ordinary_path_costs_one_record_request_before_the_post_and_one_after() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        let summary = h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        assert_eq!(summary.delivered, 1);
        // The create (claim and "settled?" at once), then the final state.
        assert_eq!(h.records.requests.load(Ordering::Relaxed), 2);
        let (key, record) = route_records(&h).remove(0);
        assert!(key.starts_with("m1/"), "{key}");
        assert_eq!(record.state, RouteState::Delivered);
        assert_eq!(record.ticket, Some(7));
        assert_eq!(record.route, "bugs@example.com");
        assert_eq!(record.posts, 1);
        // The delivery id is put in front of the mail, and named in the record.
        let prefix = String::from_utf8(h.gateway.last_prefix.lock().unwrap().clone()).unwrap();
        assert_eq!(prefix, format!("X-RT-Mailgate-Delivery: {}\n", record.delivery_id));
        assert!(record.delivery_id.starts_with("m1."));
    }

    #[tokio::test]
    async fn the_ordinary_path_reads_the_mail_while_it_claims_the_route() {
        let records = Records {
            create_delay: Duration::from_millis(100),
            ..Records::default()
        };
        let h = handler(&[], records, Duration::ZERO);
        assert_eq!(
            h.deliver_mail(&mail("m1", true), None, Mode::Normal)
                .await
                .unwrap()
                .delivered,
            1
        );
        let journal = h.records.journal.lock().unwrap().clone();
        // One round trip before the post, not two.
        assert_eq!(
            journal,
            ["claim m1", "read m1", "claimed m1", "post begins", "post ends"]
        );
    }

    #[tokio::test]
    async fn a_mail_the_screening_drops_is_never_read() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        let mut virus = mail("m1", true);
        virus.verdicts.virus = "FAIL".into();
        assert_eq!(h.deliver_mail(&virus, None, Mode::Normal).await.unwrap().given_up, 1);
        let journal = h.records.journal.lock().unwrap().clone();
        assert!(!journal.iter().any(|e| e.starts_with("read")), "{journal:?}");
    }

    #[tokio::test]
    async fn an_sqs_batch_readies_the_next_mail_while_one_posts_and_never_posts_two_at_once() {
        let h = handler(&[], Records::default(), Duration::from_millis(200));
        let body = |id: &str| {
            let pass = json!({"status": "PASS"});
            json!({
                "mail": {"timestamp": "2026-11-24T10:00:00Z", "source": "a@c.example", "messageId": id,
                         "destination": ["bugs@example.com"], "headersTruncated": false, "headers": [],
                         "commonHeaders": {"from": [], "to": [], "subject": id}},
                "receipt": {"timestamp": "2026-11-24T10:00:00Z", "processingTimeMillis": 1,
                            "recipients": ["bugs@example.com"], "spamVerdict": pass, "virusVerdict": pass,
                            "spfVerdict": pass, "dkimVerdict": pass, "dmarcVerdict": pass,
                            "action": {"type": "S3", "bucketName": "b", "objectKey": id}}
            })
            .to_string()
        };
        let records = ["m1", "m2", "m3"].map(|id| json!({"eventSource": "aws:sqs", "messageId": id, "body": body(id)}));
        let batch = json!({ "Records": records });
        let answer = h.handle(batch, None).await.unwrap();
        assert_eq!(answer, json!({"batchItemFailures": []}));
        assert_eq!(posts(&h), 3);
        let journal = h.records.journal.lock().unwrap().clone();
        // One post at a time, as when the mails went one after another...
        let mut at_once = 0;
        for event in &journal {
            at_once += match event.as_str() {
                "post begins" => 1,
                "post ends" => -1,
                _ => 0,
            };
            assert!(at_once <= 1, "two posts at once: {journal:?}");
        }
        // ...but the next mail's route is claimed while the one before posts.
        let first_post_ends = journal.iter().position(|e| e == "post ends").unwrap();
        let second_claimed = journal.iter().position(|e| e == "claim m2").unwrap();
        assert!(second_claimed < first_post_ends, "{journal:?}");
    }

    #[tokio::test]
    async fn a_slow_rt_is_abandoned_before_the_deadline_and_not_recorded_as_delivered() {
        let h = handler(&[("RT_TIMEOUT", "1")], Records::default(), Duration::from_secs(30));
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = h.deliver_mail(&mail("m1", true), Some(deadline), Mode::Normal).await;
        assert!(matches!(err, Err(HandlerError::Retry { .. })), "{err:?}");
        assert!(Instant::now() < deadline, "stopped before the deadline");
        let record = route_records(&h).remove(0).1;
        // The deadline came before RT could be done with it: the retry must ask RT, and
        // not post before `settle_until`.
        assert_eq!(record.state, RouteState::Unsure, "{record:?}");
        assert_eq!(record.case.as_deref(), Some("Timeout"));
        assert!(record.settle_until_ms > record.updated_ms, "{record:?}");
    }

    #[tokio::test]
    async fn an_unreadable_record_store_means_retry_not_a_possible_duplicate() {
        let h = handler(
            &[],
            Records {
                broken: true,
                ..Records::default()
            },
            Duration::ZERO,
        );
        assert!(h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.is_err());
        assert_eq!(posts(&h), 0);
    }

    #[tokio::test]
    async fn senders_are_told_only_when_safe_and_at_most_hourly() {
        let h = handler(
            &[("MAX_MAIL_BYTES", "10"), ("SENDER_NOTICES", "true")],
            Records::default(),
            Duration::ZERO,
        );
        for id in ["m1", "m2"] {
            let summary = h.deliver_mail(&mail(id, true), None, Mode::Normal).await.unwrap();
            assert_eq!(summary.given_up, 1);
        }
        // An unauthenticated sender is never answered (backscatter).
        h.deliver_mail(&mail("m3", false), None, Mode::Normal).await.unwrap();
        let sent = h.notifier.0.lock().unwrap().clone();
        let to: Vec<&str> = sent.iter().map(|n| n.to.as_str()).collect();
        assert_eq!(
            to,
            ["ops@example.com", "a@c.example", "ops@example.com", "ops@example.com"]
        );
        assert!(sent[1].body.contains("larger than this gateway accepts"));
        assert_eq!(posts(&h), 0);
        // A retry of a given-up mail neither posts nor notifies again.
        let again = h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        assert_eq!((again.given_up, again.already_delivered), (0, 1));
        assert_eq!(h.notifier.0.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn sub_addresses_share_one_limit_and_a_domain_has_its_own() {
        let h = handler(
            &[("MAX_MAIL_BYTES", "10"), ("SENDER_NOTICES", "true")],
            Records::default(),
            Duration::ZERO,
        );
        let from = |id: &str, sender: &str| MailInfo {
            sender: sender.into(),
            ..mail(id, true)
        };
        h.deliver_mail(&from("m1", "Victim+a@c.example"), None, Mode::Normal)
            .await
            .unwrap();
        h.deliver_mail(&from("m2", "victim+b@c.example"), None, Mode::Normal)
            .await
            .unwrap();
        let to_senders = |h: &TestHandler| {
            h.notifier
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|n| n.to != "ops@example.com")
                .map(|n| n.to.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(to_senders(&h), ["Victim+a@c.example"], "one notice between them");
        // The domain's window: five addresses of one domain, then no more this hour.
        let h = handler(
            &[("MAX_MAIL_BYTES", "10"), ("SENDER_NOTICES", "true")],
            Records::default(),
            Duration::ZERO,
        );
        for n in 0..3 {
            h.records.map.lock().unwrap().retain(|k, _| k.starts_with("notices/"));
            for id in ["m1", "m2", "m3"] {
                let sender = format!("user{n}{id}@c.example");
                h.deliver_mail(&from(id, &sender), None, Mode::Normal).await.unwrap();
            }
        }
        assert_eq!(to_senders(&h).len(), rate_limit::PER_DOMAIN.max);
    }

    #[tokio::test]
    async fn one_operator_digest_per_mail_whatever_its_routes() {
        let h = handler(
            &[
                ("MAX_MAIL_BYTES", "10"),
                (
                    "ROUTES",
                    "bugs@example.com: --queue bugs; *@desk.example: --action correspond",
                ),
            ],
            Records::default(),
            Duration::ZERO,
        );
        let many = MailInfo {
            recipients: (0..12)
                .map(|n| format!("q{n}@desk.example"))
                .chain(["bugs@example.com".into()])
                .collect(),
            ..mail("m1", true)
        };
        let summary = h.deliver_mail(&many, None, Mode::Normal).await.unwrap();
        assert_eq!(summary.given_up, 13);
        let sent = h.notifier.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(sent[0].subject.contains("on 13 routes"), "{}", sent[0].subject);
        assert!(sent[0].body.contains("q11@desk.example") && sent[0].body.contains("bugs@example.com"));
    }

    #[tokio::test]
    async fn operator_digests_are_rate_limited() {
        let h = handler(&[("MAX_MAIL_BYTES", "10")], Records::default(), Duration::ZERO);
        for round in 0..rate_limit::OPERATOR.max + 3 {
            // Each round forgets the given-up records, as new mails would be.
            h.records.map.lock().unwrap().retain(|k, _| k.starts_with("notices/"));
            h.deliver_mail(&mail(["m1", "m2", "m3"][round % 3], true), None, Mode::Normal)
                .await
                .unwrap();
        }
        assert_eq!(h.notifier.0.lock().unwrap().len(), rate_limit::OPERATOR.max);
    }

    #[tokio::test]
    async fn a_live_lease_of_another_invocation_leaves_the_route_for_later() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        // Another invocation claimed the route and is posting it now.
        edit_record(&h, |r| {
            r.state = RouteState::Posting;
            r.lease_until_ms = epoch_ms() + 60_000;
        });
        let err = h.deliver_mail(&mail("m1", true), None, Mode::Normal).await;
        assert!(
            matches!(&err, Err(HandlerError::Retry { details, .. }) if details.contains("LeaseHeld")),
            "{err:?}"
        );
        assert_eq!(posts(&h), 1, "not posted a second time");
    }

    #[tokio::test]
    async fn a_crashed_holders_route_is_taken_over_and_rt_asked_first() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        // Its holder died mid-post a minute ago: the lease (45 s) has run out.
        edit_record(&h, |r| {
            r.state = RouteState::Posting;
            r.lease_until_ms = epoch_ms() - 60_000;
        });
        h.lookup.holds();
        let summary = h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        assert_eq!(summary.delivered, 1);
        assert_eq!(posts(&h), 1, "found in RT, not posted again");
        assert_eq!(route_records(&h)[0].1.transaction, Some(70));
    }

    #[tokio::test]
    async fn an_unclear_answer_asks_rt_and_a_found_mail_is_recorded_not_reposted() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        h.gateway.breaks.store(true, Ordering::Relaxed);
        h.lookup.holds();
        let summary = h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        assert_eq!(summary.delivered, 1);
        assert_eq!(h.lookup.asked.load(Ordering::Relaxed), 1);
        // A duplicate invocation finds the record and neither posts nor asks.
        let again = h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        assert_eq!(again.already_delivered, 1);
        assert_eq!(posts(&h), 1);
    }

    #[tokio::test]
    async fn rt_still_storing_the_mail_is_asked_again_until_it_shows_it() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        h.gateway.breaks.store(true, Ordering::Relaxed);
        // Not committed yet when first asked (PostgreSQL answers at once), there next time.
        h.lookup.holds_from.store(2, Ordering::Relaxed);
        let deadline = Some(Instant::now() + Duration::from_secs(900));
        let summary = h.deliver_mail(&mail("m1", true), deadline, Mode::Normal).await.unwrap();
        assert_eq!(summary.delivered, 1);
        assert_eq!(posts(&h), 1);
        assert_eq!(h.lookup.asked.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn no_repost_while_rt_may_still_store_an_earlier_attempt() {
        // RT may store a mail for up to RT_TIMEOUT (3 s here) after the post's last sign.
        let h = handler(&[("RT_TIMEOUT", "3")], Records::default(), Duration::from_secs(1));
        h.gateway.breaks.store(true, Ordering::Relaxed);
        // The post gets a reset; RT is asked while this invocation has time, which ends
        // before RT could be done: left `unsure` with when that is, not posted again.
        let deadline = Instant::now() + Duration::from_millis(5_500);
        assert!(h
            .deliver_mail(&mail("m1", true), Some(deadline), Mode::Normal)
            .await
            .is_err());
        let record = route_records(&h).remove(0).1;
        assert_eq!((record.state, posts(&h)), (RouteState::Unsure, 1), "{record:?}");
        assert!(record.settle_until_ms > epoch_ms(), "{record:?}");
        assert!(h.lookup.asked.load(Ordering::Relaxed) >= 1);
        // The retry comes while RT may still be storing it: it asks again, waits until
        // RT can't be, and only then posts.
        h.gateway.breaks.store(false, Ordering::Relaxed);
        let asked_before = h.lookup.asked.load(Ordering::Relaxed);
        let summary = h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        assert_eq!(summary.delivered, 1);
        assert!(
            epoch_ms() >= record.settle_until_ms,
            "not posted before RT could be done"
        );
        assert!(h.lookup.asked.load(Ordering::Relaxed) >= asked_before + 2);
        assert_eq!(posts(&h), 2);
    }

    #[tokio::test]
    async fn when_rt_cant_be_asked_the_route_waits_for_the_retry_unless_told_to_post() {
        for (policy, posted, state) in [("retry", 1, RouteState::Unsure), ("post", 2, RouteState::Delivered)] {
            let h = handler(
                &[("RT_TIMEOUT", "1"), ("WHEN_RT_CANT_BE_ASKED", policy)],
                Records::default(),
                Duration::ZERO,
            );
            h.gateway.breaks.store(true, Ordering::Relaxed);
            h.lookup.broken.store(true, Ordering::Relaxed);
            assert!(h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.is_err());
            h.gateway.breaks.store(false, Ordering::Relaxed);
            let _ = h.deliver_mail(&mail("m1", true), None, Mode::Normal).await;
            assert_eq!(posts(&h), posted, "{policy}");
            assert_eq!(route_records(&h)[0].1.state, state, "{policy}");
        }
    }

    #[tokio::test]
    async fn a_failure_that_never_reached_rt_is_retried_without_asking() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        // Left `free` (say, after a refused connection): no question needed.
        edit_record(&h, |r| r.state = RouteState::Free);
        h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        assert_eq!(h.lookup.asked.load(Ordering::Relaxed), 0);
        assert_eq!(posts(&h), 2);
    }

    #[tokio::test]
    async fn held_mail_is_posted_by_a_release_only_and_once() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        h.deliver_mail(&mail("m1", true), None, Mode::Normal).await.unwrap();
        // As the hold step leaves it: never posted, held with its cause.
        edit_record(&h, |r| {
            r.state = RouteState::Held;
            r.reason = Some("storm-sender: 16 mails in 10 min".into());
            r.posts = 0;
        });
        h.gateway.posts.store(0, Ordering::Relaxed);
        for mode in [Mode::Normal, Mode::Replay, Mode::ReplayScreenedToo] {
            h.deliver_mail(&mail("m1", true), None, mode).await.unwrap();
            assert_eq!(posts(&h), 0, "{mode:?} leaves held mail held");
        }
        let released = h.deliver_mail(&mail("m1", true), None, Mode::Release).await.unwrap();
        assert_eq!((released.delivered, posts(&h)), (1, 1));
        assert_eq!(route_records(&h)[0].1.state, RouteState::Delivered);
        let again = h.deliver_mail(&mail("m1", true), None, Mode::Release).await.unwrap();
        assert_eq!((again.already_delivered, posts(&h)), (1, 1), "released once");
    }

    /// Adds mails to the handler's store (`From: sender`, the extra header lines).
    fn with_mails(mut h: TestHandler, ids: &[&str], sender: &str, header: &str) -> TestHandler {
        for id in ids {
            let text = format!("From: {sender}\nMessage-ID: <{id}@c.example>\n{header}Subject: {id}\n\nhello\n");
            h.store.0.insert(id.to_string(), text.into_bytes());
        }
        h
    }

    fn from_sender(id: &str, sender: &str) -> MailInfo {
        MailInfo {
            sender: sender.into(),
            ..mail(id, true)
        }
    }

    fn held_reasons(h: &TestHandler) -> Vec<String> {
        route_records(h)
            .into_iter()
            .filter(|(_, r)| r.state == RouteState::Held)
            .map(|(_, r)| r.reason.unwrap_or_default())
            .collect()
    }

    #[tokio::test]
    async fn a_storm_from_one_sender_is_held_beyond_its_bound_told_once_and_released_once() {
        use crate::aws::counters::MemoryCounters;
        let ids = ["s1", "s2", "s3", "s4", "s5"];
        let h = handler(&[("STORM_SENDER_MAX", "2")], Records::default(), Duration::ZERO)
            .with_counters(Counters::Memory(MemoryCounters::default()));
        let h = with_mails(h, &ids, "alerts@mon.example", "Auto-Submitted: auto-generated\n");
        let mut held = 0;
        for id in ids {
            held += h
                .deliver_mail(&from_sender(id, "alerts@mon.example"), None, Mode::Normal)
                .await
                .unwrap()
                .held;
        }
        assert_eq!((posts(&h), held), (2, 3), "the bound goes in, the rest is held");
        let reasons = held_reasons(&h);
        assert_eq!(reasons.len(), 3);
        assert!(reasons.iter().all(|r| r.starts_with("storm-sender: ")), "{reasons:?}");
        let notices = h.notifier.0.lock().unwrap().clone();
        assert_eq!(notices.len(), 1, "one notice per storm, not per mail: {notices:?}");
        assert_eq!(notices[0].to, "ops@example.com");
        assert!(notices[0].subject.contains("storm from one sender"));
        // Another sender to the same route is not held (its own count).
        let h = with_mails(h, &["p1"], "person@c.example", "");
        h.deliver_mail(&from_sender("p1", "person@c.example"), None, Mode::Normal)
            .await
            .unwrap();
        assert_eq!(posts(&h), 3);
        // Released: posted once each, past the bound; a second release posts nothing.
        for round in 0..2 {
            for id in ids {
                h.deliver_mail(&from_sender(id, "alerts@mon.example"), None, Mode::Release)
                    .await
                    .unwrap();
            }
            assert_eq!(posts(&h), 6, "round {round}");
        }
        assert!(held_reasons(&h).is_empty());
    }

    #[tokio::test]
    async fn a_failing_storm_counter_never_holds_or_loses_mail() {
        use crate::aws::counters::MemoryCounters;
        let counters = MemoryCounters::default();
        counters.failing.store(true, Ordering::Relaxed);
        let ids = ["s1", "s2", "s3"];
        let h = handler(&[("STORM_SENDER_MAX", "1")], Records::default(), Duration::ZERO)
            .with_counters(Counters::Memory(counters));
        let h = with_mails(h, &ids, "alerts@mon.example", "");
        for id in ids {
            let summary = h
                .deliver_mail(&from_sender(id, "alerts@mon.example"), None, Mode::Normal)
                .await
                .unwrap();
            assert_eq!(summary.delivered, 1, "fail open");
        }
        assert_eq!(posts(&h), 3);
    }

    #[tokio::test]
    async fn an_out_of_office_reply_is_a_comment_by_default_and_a_retry_posts_the_same() {
        let ooo = "Auto-Submitted: auto-replied\nX-Auto-Response-Suppress: All\nX-MS-Exchange-Inbox-Rules-Loop: a@c.example\n";
        let h = with_mails(
            handler(&[], Records::default(), Duration::ZERO),
            &["o1"],
            "a@c.example",
            ooo,
        );
        h.deliver_mail(&mail("o1", true), None, Mode::Normal).await.unwrap();
        assert_eq!(h.gateway.last_action.lock().unwrap().as_deref(), Some(&b"comment"[..]));
        let record = route_records(&h).remove(0).1;
        assert_eq!(record.auto.as_deref(), Some("comment:out_of_office"));
        // The retry of an attempt that never reached RT, under a policy changed to
        // `pass` meanwhile, posts the same comment: the decision is in the record.
        let pass = with_mails(
            handler(&[("AUTO_REPLY_POLICY", "pass")], Records::default(), Duration::ZERO),
            &["o1"],
            "a@c.example",
            ooo,
        );
        *pass.records.map.lock().unwrap() = h.records.map.lock().unwrap().clone();
        edit_record(&pass, |r| r.state = RouteState::Free);
        pass.deliver_mail(&mail("o1", true), None, Mode::Normal).await.unwrap();
        assert_eq!(
            pass.gateway.last_action.lock().unwrap().as_deref(),
            Some(&b"comment"[..])
        );
        // A fresh mail under `pass` is posted as the route says; a person's mail always is.
        let pass = with_mails(pass, &["o2"], "a@c.example", ooo);
        pass.deliver_mail(&mail("o2", true), None, Mode::Normal).await.unwrap();
        assert_eq!(*pass.gateway.last_action.lock().unwrap(), None);
        h.deliver_mail(&mail("m2", true), None, Mode::Normal).await.unwrap();
        assert_eq!(*h.gateway.last_action.lock().unwrap(), None);
    }

    #[tokio::test]
    async fn a_route_under_hold_holds_automatic_mail_until_released() {
        let routes = ("ROUTES", "bugs@example.com: --queue bugs --auto-replies hold");
        let h = with_mails(
            handler(&[routes], Records::default(), Duration::ZERO),
            &["o1"],
            "a@c.example",
            "Auto-Submitted: auto-replied\n",
        );
        let summary = h.deliver_mail(&mail("o1", true), None, Mode::Normal).await.unwrap();
        assert_eq!((summary.held, posts(&h)), (1, 0));
        assert_eq!(held_reasons(&h), vec!["auto-reply: auto_reply".to_string()]);
        assert!(
            h.notifier.0.lock().unwrap().is_empty(),
            "auto-replies go in the daily digest only"
        );
        h.deliver_mail(&mail("o1", true), None, Mode::Release).await.unwrap();
        assert_eq!(posts(&h), 1);
    }

    #[tokio::test]
    async fn another_helpdesks_mail_is_held_as_a_loop_beyond_its_bound_and_told_once() {
        let ids = ["l1", "l2", "l3", "l4", "l5"];
        let h = with_mails(
            handler(&[], Records::default(), Duration::ZERO),
            &ids,
            "support@acme.zendesk.com",
            "X-Zendesk-From-Account-Id: 12345\n",
        );
        for id in ids {
            h.deliver_mail(&from_sender(id, "support@acme.zendesk.com"), None, Mode::Normal)
                .await
                .unwrap();
        }
        assert_eq!(posts(&h), 3, "LOOP_HOLD_AFTER=3 within an hour");
        let reasons = held_reasons(&h);
        assert_eq!(reasons.len(), 2);
        assert!(
            reasons[0].starts_with("loop: Zendesk (X-Zendesk-From-Account-Id"),
            "{reasons:?}"
        );
        let notices = h.notifier.0.lock().unwrap().clone();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(notices[0].subject.contains("loop"));
    }

    #[tokio::test]
    async fn a_replay_is_neither_counted_nor_held_for_a_storm() {
        use crate::aws::counters::MemoryCounters;
        let h = handler(
            &[("STORM_SENDER_MAX", "1"), ("MAX_MAIL_BYTES", "10")],
            Records::default(),
            Duration::ZERO,
        )
        .with_counters(Counters::Memory(MemoryCounters::default()));
        // Given up (too large), then replayed after the fix: never counted.
        for id in ["m1", "m2", "m3"] {
            h.deliver_mail(&mail(id, true), None, Mode::Normal).await.unwrap();
        }
        let fixed = handler(&[("STORM_SENDER_MAX", "1")], Records::default(), Duration::ZERO)
            .with_counters(Counters::Memory(MemoryCounters::default()));
        *fixed.records.map.lock().unwrap() = h.records.map.lock().unwrap().clone();
        for id in ["m1", "m2", "m3"] {
            fixed.deliver_mail(&mail(id, true), None, Mode::Replay).await.unwrap();
        }
        assert_eq!(posts(&fixed), 3);
    }

    #[tokio::test]
    async fn a_replay_keeps_the_first_deliverys_screening() {
        let h = handler(&[("VIRUS_POLICY", "drop")], Records::default(), Duration::ZERO);
        let mut virus = mail("m1", true);
        virus.verdicts.virus = "FAIL".into();
        assert_eq!(h.deliver_mail(&virus, None, Mode::Normal).await.unwrap().given_up, 1);
        // The replay knows no verdicts (--message-id): the record's screening stands.
        let replayed = h.deliver_mail(&mail("m1", true), None, Mode::Replay).await.unwrap();
        assert_eq!(replayed.given_up, 1);
        assert_eq!(posts(&h), 0, "a virus is not posted by a replay");
        let forced = h
            .deliver_mail(&mail("m1", true), None, Mode::ReplayScreenedToo)
            .await
            .unwrap();
        assert_eq!(
            (forced.delivered, posts(&h)),
            (1, 1),
            "only when the operator forces it"
        );

        // A spam-tagged mail given up (413) keeps its tag when replayed without verdicts.
        let h = handler(&[("MAX_MAIL_BYTES", "10")], Records::default(), Duration::ZERO);
        let mut spam = mail("m2", true);
        spam.verdicts.spam = "FAIL".into();
        assert_eq!(h.deliver_mail(&spam, None, Mode::Normal).await.unwrap().given_up, 1);
        let h2 = handler(&[], Records::default(), Duration::ZERO);
        *h2.records.map.lock().unwrap() = h.records.map.lock().unwrap().clone();
        let replayed = h2.deliver_mail(&mail("m2", true), None, Mode::Replay).await.unwrap();
        assert_eq!(replayed.delivered, 1);
        let prefix = String::from_utf8(h2.gateway.last_prefix.lock().unwrap().clone()).unwrap();
        assert!(prefix.contains("X-RT-Mailgate-Spam: FAIL"), "{prefix}");
        // And a delivered spam-tagged mail is found by its record, whatever the tag.
        let again = h2.deliver_mail(&spam, None, Mode::Replay).await.unwrap();
        assert_eq!(again.already_delivered, 1);
    }

    #[tokio::test]
    async fn a_post_that_the_deadline_could_cut_while_rt_stores_the_mail_is_not_started() {
        let h = handler(&[("RT_TIMEOUT", "60")], Records::default(), Duration::ZERO);
        let err = h
            .deliver_mail(
                &mail("m1", true),
                Some(Instant::now() + Duration::from_secs(30)),
                Mode::Normal,
            )
            .await;
        assert!(
            matches!(&err, Err(HandlerError::Retry { details, .. }) if details.contains("deadline")),
            "{err:?}"
        );
        assert_eq!(posts(&h), 0);
    }

    #[tokio::test]
    async fn a_mail_that_could_not_be_read_frees_its_lease_for_the_retry() {
        let h = handler(&[], Records::default(), Duration::ZERO);
        let missing = MailInfo {
            ses_id: "gone".into(),
            ..mail("m1", true)
        };
        assert!(h.deliver_mail(&missing, None, Mode::Normal).await.is_err());
        assert_eq!(route_records(&h)[0].1.state, RouteState::Free);
    }
}
