//! Asks RT whether it already holds a mail, over RT 5's REST 2 API (built in), before a
//! mail whose first post may have reached RT is posted again. The rule that judges the
//! answer is [`crate::core::lookup`]; this file only fetches the facts:
//!
//! 1. `GET {api}/REST/2.0/attachments?query=[Headers LIKE "X-RT-Mailgate-Delivery: ID", Parent = 0]&fields=TransactionId,Subject,Headers`
//!    (paged, 100 a page): the top-level attachments holding the post's delivery id
//!    ([`crate::core::delivery_id`]), i.e. each time RT took this post. Each hit's
//!    headers are checked here too (RT silently drops a condition it can't search on).
//!    `Parent = 0` leaves out a forwarded message inside another mail. RT has no index
//!    on attachment headers: on a large RT each search reads the attachments table, and
//!    it is only asked after an unclear answer.
//! 2. `GET {api}/REST/2.0/transaction/N` for each: its `Type` and ticket (`Object`).
//! 3. For a `Create`: `GET {api}/REST/2.0/ticket/N` (its queue) and, for a route naming
//!    its queue, `GET {api}/REST/2.0/queue/N` (the name).
//! 4. Only when a reply or comment sits on another ticket than the route named:
//!    `GET {api}/REST/2.0/ticket/N` for the named one, which REST 2 answers with the
//!    ticket it was merged into.
//!
//! About four requests of ~0.1-0.2 s for a mail RT took once. `{api}` is RT's base URL
//! (`RT_URL`) unless set apart (`RT_API_URL`): the shipped proxy exposes only the mail
//! gateway unless `deploy/nginx/extras/rest2-lookup.conf` is installed too.
//!
//! RT's login goes in `Authorization` (`token ...` for an RT auth token, or basic auth
//! with an RT user's password), so of the proxy's credentials only the header and the
//! client certificate go along; the proxy's basic auth can't (it would need the same
//! header). The RT user needs `ShowTicket` and `ShowTicketComments` (and `SeeQueue`
//! for queue names) on the queues mail goes to: RT's search silently leaves out what
//! its user can't see, which would look like "not found" and post the mail again.
//! `SeeQueue` granted globally also lets the queue check ([`crate::rt::queues`]) prove
//! a queue missing.
//!
//! Threading (issue 22, [`crate::core::threading`]) asks through the same login:
//! `GET {api}/REST/2.0/ticket/N?fields[Queue]=Name` for a ticket a mail names (one
//! request: id after a merge, queue with its name, status, `Resolved`), and for the
//! Message-IDs a reply answers `GET {api}/REST/2.0/attachments?query=[MessageId = ...]`
//! then `GET {api}/REST/2.0/transaction/N` per hit ([`ask_thread_target`]).
//!
//! No redirect is followed (RT 4 without REST 2 redirects to its login page: an
//! error). No error here carries a credential: the API URL may not hold
//! `user:password@`, and header values are never quoted.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{Client, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::Deserialize;

use super::http::{client_for_base_url, transport_failure, GatewayConfigError, HttpGatewayConfig};
use crate::core::credentials::RtApiAuth;
use crate::core::delivery_id::DeliveryId;
use crate::core::lookup::{Expectation, Hit, QueueInfo, TransactionType, Unanswerable, Verdict};
use crate::core::redact::redact_url;
use crate::core::reply::TransportFailure;
use crate::core::request::{GatewayRequest, RtTarget};
use crate::core::threading::{
    checked_target, message_id_target, rt_datetime_secs, AsIs, Ask, MessageIdSearch, ResolvedRule, ThreadDecision,
    ThreadTarget, TicketCheck, MAX_MESSAGE_ID_TICKETS,
};
use crate::rt::queues::{QueueCache, QueueKnown};

/// Attachments asked for per page (RT's REST 2 caps `per_page` at 100).
pub const PER_PAGE: u64 = 100;
/// Pages read at most: more than 1000 copies of one Message-ID is not a mail RT took
/// a few times, and the answer would no longer be quick.
pub const MAX_PAGES: u64 = 10;
/// Merged tickets asked about at most per lookup.
pub const MAX_MERGE_CHECKS: usize = 4;
/// The largest answer read from RT (a page of 100 hits is ~20 KB).
const MAX_BODY: usize = 4 * 1024 * 1024;

/// What RT holds of a mail, for one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// RT holds it as the route would have put it there: don't post it again.
    Found {
        /// The ticket it is on (the new one, or the one replied to / commented on).
        ticket: u64,
        /// The transaction that recorded it (the route's first recording step).
        transaction: u64,
    },
    /// RT does not hold it that way: posting it again makes no duplicate.
    NotFound,
    /// RT can't be asked about this route (no RT login; an action that records no
    /// message): nothing was requested, the caller decides.
    Unanswerable(Unanswerable),
}

/// Asks RT whether it already holds a mail, as a route would have put it there.
pub trait DeliveryLookup {
    /// Looks for the post with delivery id `id`, as posted with `request`. `request.rt`
    /// is not read: the caller picks the lookup of that RT.
    fn find(
        &self,
        id: &DeliveryId,
        request: &GatewayRequest,
    ) -> impl Future<Output = Result<Lookup, LookupError>> + Send;

    /// Whether RT has the queue `request` posts to (see [`crate::rt::queues`]). Not
    /// asked by default: [`QueueKnown::Unknown`], and the mail is posted as before.
    fn queue_known(&self, request: &GatewayRequest) -> impl Future<Output = QueueKnown> + Send {
        let _ = request;
        std::future::ready(QueueKnown::Unknown("RT is not asked about queues".into()))
    }

    /// What RT says of ticket `ticket` on the RT `request` posts to, for threading
    /// (issue 22): one `GET /ticket/N?fields[Queue]=Name` (RT answers for a merged
    /// ticket with the one it went into; its queue's name, status and `Resolved` date in
    /// the same answer). Not asked by default: [`TicketCheck::Unknown`], and the mail is
    /// posted as without threading.
    fn check_ticket(&self, request: &GatewayRequest, ticket: u64) -> impl Future<Output = TicketCheck> + Send {
        let _ = (request, ticket);
        std::future::ready(TicketCheck::Unknown("RT is not asked about tickets".into()))
    }

    /// Which tickets of the RT `request` posts to hold one of `message_ids` (as RT
    /// stores a Message-ID) as a top-level mail, for threading by Message-ID (issue 22):
    /// the attachment search, then each hit's transaction (two requests for one hit). Not
    /// asked by default: [`MessageIdSearch::Unknown`].
    fn find_message_ids(
        &self,
        request: &GatewayRequest,
        message_ids: &[String],
    ) -> impl Future<Output = MessageIdSearch> + Send {
        let _ = (request, message_ids);
        std::future::ready(MessageIdSearch::Unknown("RT is not asked about Message-IDs".into()))
    }
}

/// The lookup could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LookupSetupError {
    /// The URL, TLS or client certificate settings are unusable.
    #[error("RT REST 2 lookup: {0}")]
    Gateway(#[from] GatewayConfigError),
    /// The secret has no RT login.
    #[error("RT REST 2 lookup: the secret has no RT login (rt_token, or rt_username and rt_password)")]
    NoRtLogin,
    /// A credential can't be sent as a header.
    #[error("RT REST 2 lookup: the secret's {0} is not a valid HTTP header value")]
    BadHeader(&'static str),
    /// The API URL carries `user:password@`, which would collide with RT's own login.
    #[error("RT REST 2 lookup: {url} carries user:password@ (basic auth for a proxy), which can't go with RT's own Authorization; give the REST 2 URL without it (RT_API_URL)")]
    UserInUrl {
        /// The URL, redacted.
        url: String,
    },
}

/// The lookup failed: whether RT holds the mail is unknown. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No answer within the time allowed.
    #[error("RT REST 2 lookup: no answer within {0:?}")]
    Timeout(Duration),
    /// The request did not get an HTTP answer (refused, TLS, reset).
    #[error("RT REST 2 lookup, {what}: {source}")]
    Transport {
        /// What was asked.
        what: String,
        /// How it failed.
        source: TransportFailure,
    },
    /// 401: RT (or a proxy in front) refused the login.
    #[error("RT REST 2 lookup, {what}: 401, RT refused the login (rt_token or rt_username/rt_password in the secret; a proxy in front must pass Authorization on)")]
    Unauthorized {
        /// What was asked.
        what: String,
    },
    /// 403: the proxy's checks (header, client certificate) or RT's rights refused it.
    #[error("RT REST 2 lookup, {what}: 403, refused by the proxy's checks or for want of the RT user's rights (ShowTicket, ShowTicketComments, SeeQueue)")]
    Forbidden {
        /// What was asked.
        what: String,
    },
    /// No REST 2 at that URL: 404, or a redirect (RT 4's login page), or a page that is
    /// not JSON where the search should be.
    #[error("RT REST 2 lookup: no REST 2 API at {url} ({answer}); RT 5 has it built in, and a proxy in front must expose it (deploy/nginx/extras/rest2-lookup.conf)")]
    NotAvailable {
        /// The API's base URL.
        url: String,
        /// What came back instead.
        answer: String,
    },
    /// Any other status.
    #[error("RT REST 2 lookup, {what}: RT answered {status}")]
    Status {
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: u16,
    },
    /// An answer that is not what REST 2 sends.
    #[error("RT REST 2 lookup, {what}: unexpected answer: {reason}")]
    Malformed {
        /// What was asked.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// More copies of the Message-ID than [`MAX_PAGES`] pages hold.
    #[error("RT REST 2 lookup: more than {} attachments hold this Message-ID", PER_PAGE * MAX_PAGES)]
    TooManyHits,
}

/// The RT login, ready to send.
#[derive(Clone)]
enum ApiAuth {
    Token(HeaderValue),
    Password { username: String, password: SecretString },
}

/// RT's REST 2 API as a [`DeliveryLookup`].
#[derive(Clone)]
pub struct Rest2Lookup {
    client: Client,
    base: Url,
    auth: ApiAuth,
    proxy_header: Option<(HeaderName, HeaderValue)>,
    timeout: Duration,
    /// Set once RT (or the front door) answered 404 for the RT-side extra
    /// `mailgate-thread`: this instance then searches with RT's own REST 2.
    thread_extra_missing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Rest2Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest2Lookup")
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Rest2Lookup {
    /// A lookup for the RT that `rt` posts to: the same TLS policy, user agent, proxy
    /// header and client certificate, and the RT login from its credentials
    /// (`rt_api`). `api_url` replaces `rt.base_url` (`RT_API_URL`); `timeout` bounds a
    /// whole [`DeliveryLookup::find`], every request of it together.
    pub fn new(rt: &HttpGatewayConfig, api_url: Option<&str>, timeout: Duration) -> Result<Self, LookupSetupError> {
        let mut config = rt.clone();
        if let Some(url) = api_url {
            config.base_url = url.to_string();
        }
        // Checks the URL and builds the client as the gateway does.
        let client = client_for_base_url(&config)?;
        let base = Url::parse(config.base_url.trim_end_matches('/')).map_err(|_| GatewayConfigError::BadUrl {
            url: redact_url(&config.base_url),
        })?;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(LookupSetupError::UserInUrl {
                url: redact_url(&config.base_url),
            });
        }
        let auth = match &config.credentials.rt_api {
            None => return Err(LookupSetupError::NoRtLogin),
            Some(RtApiAuth::Token(token)) => {
                let mut value = HeaderValue::from_str(&format!("token {}", token.expose_secret()))
                    .map_err(|_| LookupSetupError::BadHeader("rt_token"))?;
                value.set_sensitive(true);
                ApiAuth::Token(value)
            }
            Some(RtApiAuth::Password { username, password }) => ApiAuth::Password {
                username: username.clone(),
                password: password.clone(),
            },
        };
        let proxy_header = match &config.credentials.header {
            None => None,
            Some(header) => {
                let name = HeaderName::from_bytes(header.name.as_bytes())
                    .map_err(|_| LookupSetupError::BadHeader("header"))?;
                let mut value = HeaderValue::from_str(header.value.expose_secret())
                    .map_err(|_| LookupSetupError::BadHeader("header"))?;
                value.set_sensitive(true);
                Some((name, value))
            }
        };
        Ok(Self {
            client,
            base,
            auth,
            proxy_header,
            timeout,
            thread_extra_missing: Default::default(),
        })
    }

    /// [`DeliveryLookup::find`] within `limit` instead of the configured timeout (e.g.
    /// what is left of the function's own time).
    pub async fn find_within(
        &self,
        id: &DeliveryId,
        request: &GatewayRequest,
        limit: Duration,
    ) -> Result<Lookup, LookupError> {
        let expectation = match Expectation::of(request) {
            Ok(expectation) => expectation,
            Err(why) => return Ok(Lookup::Unanswerable(why)),
        };
        tokio::time::timeout(limit, self.ask(id, &expectation))
            .await
            .map_err(|_| LookupError::Timeout(limit))?
    }

    async fn ask(&self, id: &DeliveryId, expectation: &Expectation) -> Result<Lookup, LookupError> {
        let hits = self.hits(id, expectation).await?;
        let mut merged_into = BTreeMap::new();
        for ticket in expectation.tickets_to_resolve(&hits, MAX_MERGE_CHECKS) {
            if let Some(into) = self.merged_into(ticket).await? {
                merged_into.insert(ticket, into);
            }
        }
        Ok(match expectation.find(&hits, &merged_into) {
            Verdict::Found { ticket, transaction } => Lookup::Found { ticket, transaction },
            Verdict::NotFound => Lookup::NotFound,
        })
    }

    /// Every transaction holding the mail, with what the rule needs of each.
    async fn hits(&self, id: &DeliveryId, expectation: &Expectation) -> Result<Vec<Hit>, LookupError> {
        let mut hits: Vec<Hit> = Vec::new();
        // Several hits may share a ticket or a queue (one mail, two routes): ask once.
        let mut queues: BTreeMap<u64, QueueInfo> = BTreeMap::new();
        let mut names: BTreeMap<u64, String> = BTreeMap::new();
        for attachment in self.search(id).await? {
            if !id.is_in(attachment.headers.as_deref().unwrap_or_default()) {
                continue;
            }
            if hits.iter().any(|h| h.transaction == attachment.transaction) {
                continue;
            }
            let id = attachment.transaction.to_string();
            let transaction: TransactionJson = self.get(&["transaction", &id], &format!("transaction {id}")).await?;
            if transaction.object.kind != "ticket" {
                continue;
            }
            let ticket = transaction.object.id;
            let kind = TransactionType::from_rt(&transaction.kind);
            // Only a new ticket is judged by its queue.
            let queue = if kind == TransactionType::Create {
                Some(match queues.entry(ticket) {
                    Entry::Occupied(known) => known.get().clone(),
                    Entry::Vacant(new) => {
                        let named = expectation.needs_queue_names();
                        new.insert(self.queue_of(ticket, named, &mut names).await?).clone()
                    }
                })
            } else {
                None
            };
            hits.push(Hit {
                transaction: attachment.transaction,
                kind,
                ticket,
                queue,
                subject: attachment.subject.unwrap_or_default(),
            });
        }
        Ok(hits)
    }

    /// A ticket's queue, with its name when `named` (`names` caches them by queue id).
    async fn queue_of(
        &self,
        ticket: u64,
        named: bool,
        names: &mut BTreeMap<u64, String>,
    ) -> Result<QueueInfo, LookupError> {
        let id = ticket.to_string();
        let json: TicketJson = self.get(&["ticket", &id], &format!("ticket {id}")).await?;
        let queue = json.queue.id;
        if let (true, Entry::Vacant(new)) = (named, names.entry(queue)) {
            let id = queue.to_string();
            let json: QueueJson = self.get(&["queue", &id], &format!("queue {id}")).await?;
            new.insert(json.name);
        }
        Ok(QueueInfo {
            id: queue,
            name: names.get(&queue).cloned(),
        })
    }

    /// The top-level attachments holding the delivery id, every page of them.
    async fn search(&self, id: &DeliveryId) -> Result<Vec<AttachmentJson>, LookupError> {
        let query = serde_json::json!([
            {"field": "Headers", "operator": "LIKE", "value": id.search_text()},
            {"field": "Parent", "operator": "=", "value": "0"},
        ])
        .to_string();
        let mut found = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut url = self.url(&["attachments"]);
            url.query_pairs_mut()
                .append_pair("query", &query)
                .append_pair("fields", "TransactionId,Subject,Headers")
                .append_pair("per_page", &PER_PAGE.to_string())
                .append_pair("page", &page.to_string());
            let answer: SearchJson = match self.get_url(url, "the attachment search").await {
                Err(LookupError::Status { status: 404, .. }) => {
                    return Err(self.not_available("404 Not Found".to_string()));
                }
                Err(LookupError::Status { status, .. }) if (300..400).contains(&status) => {
                    return Err(self.not_available(format!("a redirect ({status})")));
                }
                Err(LookupError::Malformed { reason, .. }) if page == 1 => {
                    return Err(self.not_available(format!("not REST 2's JSON: {reason}")));
                }
                other => other?,
            };
            let full = answer.items.len() as u64 >= answer.per_page.max(1);
            found.extend(answer.items);
            // A superuser is told how many pages there are; anyone else is not (RT then
            // sends `pages: null`), and a full page is the only sign of another one.
            let more = match answer.pages {
                Some(pages) => (page as f64) < pages,
                None => full,
            };
            if !more {
                return Ok(found);
            }
        }
        Err(LookupError::TooManyHits)
    }

    /// The ticket `ticket` was merged into, if any (`None` also when RT won't say).
    async fn merged_into(&self, ticket: u64) -> Result<Option<u64>, LookupError> {
        let id = ticket.to_string();
        match self.get::<TicketJson>(&["ticket", &id], &format!("ticket {id}")).await {
            // REST 2 answers for a merged ticket with the one it went into.
            Ok(json) => Ok((json.id != ticket).then_some(json.id)),
            // Best effort: a ticket that is gone or hidden changes nothing found so far.
            Err(LookupError::Forbidden { .. } | LookupError::Status { status: 404, .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// [`DeliveryLookup::check_ticket`] for this RT, within the lookup's timeout: one
    /// request.
    pub async fn check_ticket(&self, ticket: u64) -> TicketCheck {
        let ask = async {
            let id = ticket.to_string();
            let mut url = self.url(&["ticket", &id]);
            url.query_pairs_mut().append_pair("fields[Queue]", "Name");
            let json: TicketStatusJson = match self.get_url(url, &format!("ticket {id}")).await {
                Ok(json) => json,
                Err(LookupError::Status { status: 404, .. }) => return TicketCheck::Missing,
                Err(other) => return TicketCheck::Unknown(other.to_string()),
            };
            json.into_check()
        };
        tokio::time::timeout(self.timeout, ask)
            .await
            .unwrap_or_else(|_| TicketCheck::Unknown(LookupError::Timeout(self.timeout).to_string()))
    }

    /// [`DeliveryLookup::find_message_ids`] for this RT, within the lookup's timeout:
    ///
    /// 1. `GET /attachments?query=[MessageId = a OR MessageId = b ..., Parent = 0]&fields=TransactionId`
    ///    (compared case-sensitively, so a database index on `Attachments.MessageId`
    ///    serves it; RT has none by default, see docs/operate.md);
    /// 2. `GET /transaction/N` for each hit (at most [`MAX_MESSAGE_ID_TICKETS`]; more
    ///    is [`MessageIdSearch::TooMany`]): its ticket. RT 5's REST 2 does not expand
    ///    `fields[TransactionId]` on an attachment, so this can't fold into the search
    ///    (`/transactions?query=` could read several at once, but the front door's
    ///    lookup extra doesn't pass it, and a reply-all has one hit). Only a ticket's
    ///    transaction counts.
    pub async fn find_message_ids(&self, message_ids: &[String]) -> MessageIdSearch {
        if message_ids.is_empty() {
            return MessageIdSearch::Tickets(Vec::new());
        }
        if let Some(found) = self.ask_thread_extra(message_ids).await {
            return found;
        }
        let ask = async {
            let mut query: Vec<serde_json::Value> = message_ids
                .iter()
                .map(|id| {
                    serde_json::json!({"field": "MessageId", "operator": "=", "value": id,
                        "case_sensitive": 1, "entry_aggregator": "OR"})
                })
                .collect();
            query.push(serde_json::json!({"field": "Parent", "operator": "=", "value": "0"}));
            let mut url = self.url(&["attachments"]);
            url.query_pairs_mut()
                .append_pair("query", &serde_json::Value::Array(query).to_string())
                .append_pair("fields", "TransactionId")
                .append_pair("per_page", &PER_PAGE.to_string());
            let page: SearchJson = self.get_url(url, "the Message-ID search").await?;
            let mut transactions: Vec<u64> = Vec::new();
            for hit in page.items {
                if !transactions.contains(&hit.transaction) {
                    transactions.push(hit.transaction);
                }
            }
            if transactions.is_empty() {
                return Ok(Some(Vec::new()));
            }
            if transactions.len() > MAX_MESSAGE_ID_TICKETS {
                return Ok(None);
            }
            // One `GET /transaction/N` per hit (the front door's lookup extra passes it;
            // a reply-all has one).
            let mut tickets: Vec<u64> = Vec::new();
            for t in transactions {
                let id = t.to_string();
                let json: TransactionJson = self.get(&["transaction", &id], &format!("transaction {id}")).await?;
                if json.object.kind == "ticket" && json.object.id != 0 && !tickets.contains(&json.object.id) {
                    tickets.push(json.object.id);
                }
            }
            Ok::<_, LookupError>(Some(tickets))
        };
        match tokio::time::timeout(self.timeout, ask).await {
            Ok(Ok(Some(tickets))) => MessageIdSearch::Tickets(tickets),
            Ok(Ok(None)) => MessageIdSearch::TooMany,
            Ok(Err(error)) => MessageIdSearch::Unknown(error.to_string()),
            Err(_) => MessageIdSearch::Unknown(LookupError::Timeout(self.timeout).to_string()),
        }
    }

    /// The RT-side extra, when RT has it (`deploy/rt/lib`, passed by the front door's
    /// `rest2-thread.conf`): `GET /REST/2.0/mailgate-thread?message_id=...` answers with
    /// the tickets holding the Message-IDs, checked, in one request. `None` when it is
    /// not there (a 404 from RT or the door, remembered for this instance): then RT's
    /// own REST 2 is searched.
    async fn ask_thread_extra(&self, message_ids: &[String]) -> Option<MessageIdSearch> {
        use std::sync::atomic::Ordering;
        if self.thread_extra_missing.load(Ordering::Relaxed) {
            return None;
        }
        let mut url = self.url(&["mailgate-thread"]);
        for id in message_ids {
            url.query_pairs_mut().append_pair("message_id", id);
        }
        let asked = tokio::time::timeout(
            self.timeout,
            self.get_url::<MailgateThreadJson>(url, "the Message-ID lookup"),
        )
        .await;
        Some(match asked {
            Ok(Ok(answer)) if answer.more != 0 || answer.tickets.len() > MAX_MESSAGE_ID_TICKETS => {
                MessageIdSearch::TooMany
            }
            Ok(Ok(answer)) => {
                MessageIdSearch::Checked(answer.tickets.into_iter().map(TicketStatusJson::into_check).collect())
            }
            Ok(Err(LookupError::Status { status: 404, .. })) => {
                self.thread_extra_missing.store(true, Ordering::Relaxed);
                return None;
            }
            Ok(Err(error)) => MessageIdSearch::Unknown(error.to_string()),
            Err(_) => MessageIdSearch::Unknown(LookupError::Timeout(self.timeout).to_string()),
        })
    }

    fn not_available(&self, answer: String) -> LookupError {
        LookupError::NotAvailable {
            url: self.base.to_string(),
            answer,
        }
    }

    /// `{base}/REST/2.0/{segments...}`, each segment escaped.
    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .extend(["REST", "2.0"])
            .extend(segments);
        url
    }

    pub(super) async fn get<T: DeserializeOwned>(&self, segments: &[&str], what: &str) -> Result<T, LookupError> {
        self.get_url(self.url(segments), what).await
    }

    pub(super) async fn get_url<T: DeserializeOwned>(&self, url: Url, what: &str) -> Result<T, LookupError> {
        let mut request = self.client.get(url).header(ACCEPT, "application/json");
        request = match &self.auth {
            ApiAuth::Token(value) => request.header(AUTHORIZATION, value.clone()),
            ApiAuth::Password { username, password } => request.basic_auth(username, Some(password.expose_secret())),
        };
        if let Some((name, value)) = &self.proxy_header {
            request = request.header(name.clone(), value.clone());
        }
        let transport = |e: &reqwest::Error| LookupError::Transport {
            what: what.to_string(),
            source: transport_failure(e),
        };
        let mut response = request.send().await.map_err(|e| transport(&e))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => return Err(LookupError::Unauthorized { what: what.to_string() }),
            StatusCode::FORBIDDEN => return Err(LookupError::Forbidden { what: what.to_string() }),
            status => {
                return Err(LookupError::Status {
                    what: what.to_string(),
                    status: status.as_u16(),
                })
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(&e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(LookupError::Malformed {
                    what: what.to_string(),
                    reason: format!("larger than {MAX_BODY} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| LookupError::Malformed {
            what: what.to_string(),
            reason: e.to_string(),
        })
    }
}

impl DeliveryLookup for Rest2Lookup {
    async fn find(&self, id: &DeliveryId, request: &GatewayRequest) -> Result<Lookup, LookupError> {
        self.find_within(id, request, self.timeout).await
    }

    async fn check_ticket(&self, _: &GatewayRequest, ticket: u64) -> TicketCheck {
        Rest2Lookup::check_ticket(self, ticket).await
    }

    async fn find_message_ids(&self, _: &GatewayRequest, message_ids: &[String]) -> MessageIdSearch {
        Rest2Lookup::find_message_ids(self, message_ids).await
    }
}

/// What RT says decides a mail's thread target (issue 22, points 2 to 4), for the
/// function and the CLI alike: ticket N checked (one REST 2 request), or the
/// Message-IDs searched (two requests for one hit) and each ticket found checked (one
/// each, at most [`MAX_MESSAGE_ID_TICKETS`]). Whatever RT can't say posts the mail as
/// without threading ([`AsIs::Unchecked`]); the reason comes back for the log.
pub async fn ask_thread_target(
    lookup: &impl DeliveryLookup,
    request: &GatewayRequest,
    decision: &ThreadDecision,
    ask: Ask,
    rule: ResolvedRule,
) -> (ThreadTarget, Option<String>) {
    let queue = request.queue.as_deref();
    match ask {
        Ask::Ticket(ticket) => {
            let check = lookup.check_ticket(request, ticket).await;
            let why = match &check {
                TicketCheck::Unknown(why) => Some(format!("ticket {ticket}: {why}")),
                _ => None,
            };
            (checked_target(decision, &check, queue, rule), why)
        }
        Ask::MessageIds(candidates) => {
            let tickets = match lookup.find_message_ids(request, &candidates).await {
                MessageIdSearch::Tickets(tickets) => tickets,
                MessageIdSearch::Checked(checks) => return (message_id_target(&checks, queue, rule), None),
                MessageIdSearch::TooMany => return (ThreadTarget::AsIs(AsIs::Ambiguous), None),
                MessageIdSearch::Unknown(why) => {
                    return (
                        ThreadTarget::AsIs(AsIs::Unchecked),
                        Some(format!("the Message-ID search: {why}")),
                    )
                }
            };
            let mut checks = Vec::with_capacity(tickets.len());
            let mut why = None;
            for ticket in tickets.into_iter().take(MAX_MESSAGE_ID_TICKETS) {
                let check = lookup.check_ticket(request, ticket).await;
                if let TicketCheck::Unknown(reason) = &check {
                    why.get_or_insert(format!("ticket {ticket}: {reason}"));
                }
                checks.push(check);
            }
            (message_id_target(&checks, queue, rule), why)
        }
    }
}

// REST 2's JSON, as much as is read. Ids come as strings in links and search results
// and as numbers elsewhere.

#[derive(Deserialize)]
struct SearchJson {
    items: Vec<AttachmentJson>,
    per_page: u64,
    /// `null` unless the user is a superuser; a float (`0.0`) when nothing is found.
    #[serde(default)]
    pages: Option<f64>,
}

#[derive(Deserialize)]
struct AttachmentJson {
    #[serde(rename = "TransactionId", deserialize_with = "id")]
    transaction: u64,
    #[serde(rename = "Subject", default)]
    subject: Option<String>,
    #[serde(rename = "Headers", default)]
    headers: Option<String>,
}

#[derive(Deserialize)]
struct TransactionJson {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Object")]
    object: LinkJson,
}

#[derive(Deserialize)]
struct LinkJson {
    #[serde(rename = "type")]
    kind: String,
    #[serde(deserialize_with = "id")]
    id: u64,
}

#[derive(Deserialize)]
struct TicketJson {
    #[serde(deserialize_with = "id")]
    id: u64,
    #[serde(rename = "Queue")]
    queue: LinkJson,
}

/// A ticket as threading reads it (`GET /ticket/N?fields[Queue]=Name`): its id (after a
/// merge), queue (with its name), status and `Resolved` date.
#[derive(Deserialize)]
struct TicketStatusJson {
    #[serde(deserialize_with = "id")]
    id: u64,
    #[serde(rename = "Queue")]
    queue: NamedLinkJson,
    #[serde(rename = "Status", default)]
    status: String,
    #[serde(rename = "Resolved", default)]
    resolved: Option<String>,
}

impl TicketStatusJson {
    /// What threading makes of RT's answer for a ticket: a deleted one is missing.
    fn into_check(self) -> TicketCheck {
        if self.status.eq_ignore_ascii_case("deleted") {
            return TicketCheck::Missing;
        }
        TicketCheck::Found {
            ticket: self.id,
            queue_id: self.queue.id,
            queue_name: self.queue.name.filter(|n| !n.is_empty()),
            status: self.status,
            resolved_secs: self.resolved.as_deref().and_then(rt_datetime_secs),
        }
    }
}

/// The RT-side extra's answer (`GET /REST/2.0/mailgate-thread`): the tickets holding
/// the Message-IDs, each as `GET /ticket/N?fields[Queue]=Name` gives it, and whether
/// more did.
#[derive(Deserialize)]
struct MailgateThreadJson {
    tickets: Vec<TicketStatusJson>,
    #[serde(default)]
    more: u8,
}

/// A link whose record REST 2 expanded with its `Name` (`fields[Queue]=Name`).
#[derive(Deserialize)]
struct NamedLinkJson {
    #[serde(deserialize_with = "id")]
    id: u64,
    #[serde(rename = "Name", default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct QueueJson {
    #[serde(rename = "Name")]
    name: String,
}

/// What the lookup keeps of one REST 2 answer, read with no I/O: for checking the
/// reading alone (the fuzz target `rest2_json` in `fuzz/`). The lookup itself reads each
/// answer as the kind it asked for; anything unreadable is [`LookupError::Malformed`].
#[derive(Debug, Clone, PartialEq)]
pub enum Rest2Answer {
    /// A page of the attachment search: each hit's transaction, subject and headers,
    /// the page size and (for a superuser) the page count.
    Search {
        /// `(TransactionId, Subject, Headers)` of each hit.
        hits: Vec<(u64, Option<String>, Option<String>)>,
        /// `per_page`.
        per_page: u64,
        /// `pages`.
        pages: Option<f64>,
    },
    /// A transaction: its `Type`, and the kind and id of its `Object`.
    Transaction {
        /// `Type`.
        kind: String,
        /// `Object.type` and `Object.id`.
        object: (String, u64),
    },
    /// A ticket: its id (the merge target's, for a merged one) and its queue's id.
    Ticket {
        /// `id`.
        id: u64,
        /// `Queue.id`.
        queue: u64,
    },
    /// A ticket as threading reads it: id, queue id and name (`fields[Queue]=Name`),
    /// status and `Resolved` (as seconds since the epoch, `None` for RT's 1970).
    TicketStatus {
        /// `id`.
        id: u64,
        /// `Queue.id` and `Queue.Name`.
        queue: (u64, Option<String>),
        /// `Status`.
        status: String,
        /// `Resolved`, read by [`rt_datetime_secs`].
        resolved_secs: Option<i64>,
    },
    /// A queue's `Name`.
    Queue(String),
}

/// Reads `body` as each kind of answer the lookup asks RT for; the kinds it reads as.
pub fn read_rest2_answer(body: &[u8]) -> Vec<Rest2Answer> {
    let mut read = Vec::new();
    if let Ok(page) = serde_json::from_slice::<SearchJson>(body) {
        read.push(Rest2Answer::Search {
            hits: page
                .items
                .into_iter()
                .map(|a| (a.transaction, a.subject, a.headers))
                .collect(),
            per_page: page.per_page,
            pages: page.pages,
        });
    }
    if let Ok(t) = serde_json::from_slice::<TransactionJson>(body) {
        read.push(Rest2Answer::Transaction {
            kind: t.kind,
            object: (t.object.kind, t.object.id),
        });
    }
    if let Ok(t) = serde_json::from_slice::<TicketJson>(body) {
        read.push(Rest2Answer::Ticket {
            id: t.id,
            queue: t.queue.id,
        });
    }
    if let Ok(t) = serde_json::from_slice::<TicketStatusJson>(body) {
        read.push(Rest2Answer::TicketStatus {
            id: t.id,
            queue: (t.queue.id, t.queue.name),
            status: t.status,
            resolved_secs: t.resolved.as_deref().and_then(rt_datetime_secs),
        });
    }
    if let Ok(q) = serde_json::from_slice::<QueueJson>(body) {
        read.push(Rest2Answer::Queue(q.name));
    }
    read
}

fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Raw::deserialize(deserializer)? {
        Raw::Number(n) => Ok(n),
        Raw::Text(text) => text.parse().map_err(|_| D::Error::custom("an id that is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::credentials::Credentials;
    use crate::core::url_policy::OtherHosts;
    use crate::rt::http::TlsPolicy;

    fn config(url: &str, secret: &str) -> HttpGatewayConfig {
        HttpGatewayConfig {
            base_url: url.into(),
            timeout: None,
            tls: TlsPolicy::SystemRoots,
            user_agent: "t".into(),
            credentials: Credentials::from_json(secret).unwrap(),
            other_hosts: OtherHosts::Any,
        }
    }

    const LOGIN: &str = r#"{"rt_username": "lookup", "rt_password": "hush-pw"}"#;

    #[test]
    fn urls_keep_rts_web_path_and_escape_segments() {
        let second = Duration::from_secs(1);
        for (base, expected) in [
            ("http://rt.example", "http://rt.example/REST/2.0/ticket/5"),
            ("http://rt.example/", "http://rt.example/REST/2.0/ticket/5"),
            ("https://h.example/rt/", "https://h.example/rt/REST/2.0/ticket/5"),
        ] {
            let lookup = Rest2Lookup::new(&config(base, LOGIN), None, second).unwrap();
            assert_eq!(lookup.url(&["ticket", "5"]).as_str(), expected);
        }
        let lookup = Rest2Lookup::new(
            &config("http://rt.example", LOGIN),
            Some("http://api.example/x"),
            second,
        )
        .unwrap();
        assert_eq!(
            lookup.url(&["queue", "a/b"]).as_str(),
            "http://api.example/x/REST/2.0/queue/a%2Fb"
        );
    }

    #[test]
    fn setup_needs_an_rt_login_and_no_user_in_the_url() {
        let second = Duration::from_secs(1);
        let err = Rest2Lookup::new(&config("http://rt.example", "{}"), None, second).unwrap_err();
        assert!(matches!(err, LookupSetupError::NoRtLogin), "{err}");
        let err = Rest2Lookup::new(&config("http://proxy:hush@rt.example", LOGIN), None, second).unwrap_err();
        assert!(matches!(err, LookupSetupError::UserInUrl { .. }), "{err}");
        assert!(!err.to_string().contains("hush"), "{err}");
        let err = Rest2Lookup::new(&config("http://rt.example", LOGIN), Some("ftp://x"), second).unwrap_err();
        assert!(matches!(err, LookupSetupError::Gateway(_)), "{err}");
        let shown = format!(
            "{:?}",
            Rest2Lookup::new(&config("http://rt.example", LOGIN), None, second).unwrap()
        );
        assert!(!shown.contains("hush") && !shown.contains("lookup\""), "{shown}");
    }

    #[test]
    fn ids_come_as_numbers_or_strings() {
        let t: TransactionJson =
            serde_json::from_str(r#"{"Type": "Create", "Object": {"type": "ticket", "id": "10"}, "id": 43}"#).unwrap();
        assert_eq!((t.kind.as_str(), t.object.id), ("Create", 10));
        let s: SearchJson = serde_json::from_str(
            r#"{"items": [{"TransactionId": "43", "Subject": "x", "id": "1"}], "per_page": 100, "pages": 0.0, "total": 0}"#,
        )
        .unwrap();
        assert_eq!((s.items[0].transaction, s.pages), (43, Some(0.0)));
        let s: SearchJson =
            serde_json::from_str(r#"{"items": [], "per_page": 20, "pages": null, "total": null}"#).unwrap();
        assert_eq!(s.pages, None);
        assert!(serde_json::from_str::<LinkJson>(r#"{"type": "ticket", "id": "ten"}"#).is_err());
    }

    #[test]
    fn threading_reads_rt_5s_answers() {
        // `GET /ticket/1?fields[Queue]=Name` on RT 5.0.3 (trimmed).
        let ticket = br#"{"id": 1, "Status": "resolved", "Resolved": "2026-12-06T08:09:55Z",
            "Queue": {"type": "queue", "Name": "support", "id": "4", "_url": "http://rt/REST/2.0/queue/4"}}"#;
        assert!(read_rest2_answer(ticket).contains(&Rest2Answer::TicketStatus {
            id: 1,
            queue: (4, Some("support".into())),
            status: "resolved".into(),
            resolved_secs: Some(1_796_544_595),
        }));
        let never = br#"{"id": 2, "Status": "new", "Resolved": "1970-01-01T00:00:00Z", "Queue": {"id": "4"}}"#;
        assert!(read_rest2_answer(never).contains(&Rest2Answer::TicketStatus {
            id: 2,
            queue: (4, None),
            status: "new".into(),
            resolved_secs: None,
        }));
    }

    #[test]
    fn the_rt_side_extras_answer_is_read_as_checked_tickets() {
        // `GET /REST/2.0/mailgate-thread?message_id=...` from deploy/rt/lib on RT 5.0.3.
        let answer = br#"{"more":0,"tickets":[{"Queue":{"Name":"support","id":"4"},
            "Resolved":"1970-01-01T00:00:00Z","Status":"new","id":1},
            {"Queue":{"Name":"","id":"5"},"Resolved":"1970-01-01T00:00:00Z","Status":"deleted","id":7}]}"#;
        let read: MailgateThreadJson = serde_json::from_slice(answer).unwrap();
        assert_eq!(read.more, 0);
        let checks: Vec<TicketCheck> = read.tickets.into_iter().map(TicketStatusJson::into_check).collect();
        assert_eq!(
            checks,
            [
                TicketCheck::Found {
                    ticket: 1,
                    queue_id: 4,
                    queue_name: Some("support".into()),
                    status: "new".into(),
                    resolved_secs: None,
                },
                // A deleted ticket is missing; a queue name RT would not give is none.
                TicketCheck::Missing,
            ]
        );
        let more: MailgateThreadJson = serde_json::from_slice(br#"{"more":1,"tickets":[]}"#).unwrap();
        assert_eq!(more.more, 1);
        assert!(serde_json::from_slice::<MailgateThreadJson>(br#"{"tickets":[{"id":"x"}]}"#).is_err());
    }
}

/// Every RT's lookup: the function's own and those of the RTs routes name. An RT whose
/// secret holds no RT login can't be asked ([`Unanswerable::NoRtLogin`]): the function
/// then posts as it would without lookups.
#[derive(Debug, Default)]
pub struct Lookups {
    own: Option<Rest2Lookup>,
    others: BTreeMap<RtTarget, Rest2Lookup>,
    queues: QueueCache,
}

impl Lookups {
    /// The lookups that could be set up.
    pub fn new(own: Option<Rest2Lookup>, others: BTreeMap<RtTarget, Rest2Lookup>) -> Self {
        Self {
            own,
            others,
            queues: QueueCache::new(),
        }
    }

    fn of(&self, request: &GatewayRequest) -> Option<&Rest2Lookup> {
        match &request.rt {
            None => self.own.as_ref(),
            Some(target) => self.others.get(target),
        }
    }

    /// True when no RT can be asked.
    pub fn is_empty(&self) -> bool {
        self.own.is_none() && self.others.is_empty()
    }

    /// Asks each RT once what its lookup can do through its front door with its user
    /// ([`Rest2Lookup::abilities`]) and logs it, one line per RT: in the background,
    /// so a slow or silent RT never holds up the cold start. Needs a Tokio runtime.
    pub fn log_abilities(&self) {
        let each: Vec<(String, Rest2Lookup)> = self
            .own
            .iter()
            .map(|l| ("the function's RT".to_string(), l.clone()))
            .chain(
                self.others
                    .iter()
                    .map(|(t, l)| (format!("RT {}", redact_url(&t.url)), l.clone())),
            )
            .collect();
        for (rt, lookup) in each {
            tokio::spawn(async move {
                let abilities = lookup.abilities().await;
                let api = redact_url(lookup.base.as_str());
                if abilities.complete() {
                    tracing::info!(rt, api, "RT's REST 2 at cold start: {abilities}");
                } else {
                    tracing::warn!(rt, api, "RT's REST 2 at cold start: {abilities}");
                }
            });
        }
    }
}

impl DeliveryLookup for Lookups {
    async fn find(&self, id: &DeliveryId, request: &GatewayRequest) -> Result<Lookup, LookupError> {
        match self.of(request) {
            Some(lookup) => lookup.find(id, request).await,
            None => Ok(Lookup::Unanswerable(Unanswerable::NoRtLogin)),
        }
    }

    async fn queue_known(&self, request: &GatewayRequest) -> QueueKnown {
        let (Some(lookup), Some(queue)) = (self.of(request), request.queue.as_deref()) else {
            return QueueKnown::Unknown("no RT login for this RT, or no queue named".into());
        };
        self.queues.check(lookup, request.rt.as_ref(), queue).await
    }

    async fn check_ticket(&self, request: &GatewayRequest, ticket: u64) -> TicketCheck {
        match self.of(request) {
            Some(lookup) => lookup.check_ticket(ticket).await,
            None => TicketCheck::Unknown("no RT login for this RT".into()),
        }
    }

    async fn find_message_ids(&self, request: &GatewayRequest, message_ids: &[String]) -> MessageIdSearch {
        match self.of(request) {
            Some(lookup) => lookup.find_message_ids(message_ids).await,
            None => MessageIdSearch::Unknown("no RT login for this RT".into()),
        }
    }
}
