//! Whether RT has a queue, asked of RT 5's REST 2 API before a mail is posted to a
//! queue the recipient address chose (a `*@domain` route's local part, a sub-address
//! under `--extension queue`). RT parses the whole mail before it checks the queue, so
//! without this a mail to fifty made-up addresses makes fifty uploads and fifty parses,
//! each answered `temporary failure`.
//!
//! The question is RT's queue search, with the name in the query string (so any name a
//! local part can hold goes as it is: `%`, `/`, `+`, spaces):
//! `GET {api}/REST/2.0/queues?query=[{"field":"Name","operator":"=","value":NAME}]&find_disabled_rows=1&per_page=1`
//! (an all-digit name is asked as `id`, since RT's mail gateway loads such a queue by
//! id). RT matches the name case-insensitively, as its mail gateway loads it. RT lists
//! only the queues its user may see (`SeeQueue`), and says how many there are in all
//! (`total`) only to a user who may see every queue (`SeeQueue` granted globally). So:
//!
//! - a queue listed: it exists;
//! - nothing listed and a `total`: RT itself says there is no such queue ([`QueueKnown::Missing`]);
//! - nothing listed and no `total` (rights per queue only), or anything that is not REST
//!   2's answer (a front door's 404 page, a 401 or 403, a path without RT's `WebPath`, no
//!   answer, no RT login): unknown, and the mail is posted as before (RT then decides).
//!
//! A mail is never given up for a queue RT has: only RT's own word counts as missing.
//! [`Rest2Lookup::abilities`] asks the same questions once at cold start, so the log
//! says what this front door and this user allow.
//!
//! Answers are kept [`CACHE_FOR`] (a queue created meanwhile is found after that at the
//! latest; a replay, a new process, asks again), at most [`CACHE_ENTRIES`] names
//! (made-up names can't grow it without bound).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::core::request::RtTarget;
use crate::rt::lookup::{LookupError, Rest2Lookup};

/// How long an answer is kept.
pub const CACHE_FOR: Duration = Duration::from_secs(5 * 60);
/// The most names kept (per function instance); when full, expired answers go first,
/// then all.
pub const CACHE_ENTRIES: usize = 4096;
/// How long one question may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cold start's questions may take, all together.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What RT says of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueKnown {
    /// RT has it.
    Exists,
    /// RT says it has no queue of that name or id, to a user who may see every queue.
    Missing,
    /// Not asked, or no clear answer (the reason, for the log): post as before.
    Unknown(String),
}

/// RT's answer to the queue search, as far as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueSearch {
    /// The queue is listed.
    Listed,
    /// Nothing listed, and RT says how many queues matched in all (zero): the user may
    /// see every queue, so there is none.
    NoneInAll,
    /// Nothing listed, and RT won't say more (its user may see only some queues).
    NoneVisible,
}

/// An RT (`None`: the function's own) and a queue name, ASCII lower-case (RT's own
/// case folding may not go further).
type QueueKey = (Option<RtTarget>, String);
/// Whether the queue exists, and when RT said so.
type Answers = HashMap<QueueKey, (bool, Instant)>;

/// Answers kept per RT and queue name.
#[derive(Debug, Default)]
pub struct QueueCache {
    answers: Mutex<Answers>,
}

impl QueueCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether RT (`lookup`, the API of the RT `target` names) has the queue `queue`
    /// (the form field's bytes), from the cache or by asking.
    pub async fn check(&self, lookup: &Rest2Lookup, target: Option<&RtTarget>, queue: &[u8]) -> QueueKnown {
        let Some(name) = askable(queue) else {
            return QueueKnown::Unknown("the queue name is empty, not UTF-8 or holds a control character".into());
        };
        let key = (target.cloned(), name.to_ascii_lowercase());
        let now = Instant::now();
        if let Some((exists, at)) = self.lock().get(&key) {
            if now.duration_since(*at) < CACHE_FOR {
                return known(*exists);
            }
        }
        let exists = match tokio::time::timeout(CHECK_TIMEOUT, lookup.search_queue(name)).await {
            Err(_) => return QueueKnown::Unknown(format!("RT's API did not answer within {CHECK_TIMEOUT:?}")),
            Ok(Err(error)) => return QueueKnown::Unknown(error.to_string()),
            Ok(Ok(QueueSearch::NoneVisible)) => {
                return QueueKnown::Unknown(
                    "RT lists no such queue, but its user can't see every queue (grant it SeeQueue globally)".into(),
                )
            }
            Ok(Ok(QueueSearch::Listed)) => true,
            Ok(Ok(QueueSearch::NoneInAll)) => false,
        };
        let mut answers = self.lock();
        if answers.len() >= CACHE_ENTRIES {
            answers.retain(|_, (_, at)| now.duration_since(*at) < CACHE_FOR);
            if answers.len() >= CACHE_ENTRIES {
                answers.clear();
            }
        }
        answers.insert(key, (exists, Instant::now()));
        known(exists)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answers> {
        // A panic while holding the lock leaves only a cache behind: keep using it.
        self.answers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn known(exists: bool) -> QueueKnown {
    if exists {
        QueueKnown::Exists
    } else {
        QueueKnown::Missing
    }
}

/// The name as it can be asked about: UTF-8 (REST 2's JSON), not blank, no control
/// character (no address holds one). Everything else goes as it is, in the query.
fn askable(queue: &[u8]) -> Option<&str> {
    let name = std::str::from_utf8(queue).ok()?;
    let clean = !name.trim().is_empty() && !name.chars().any(char::is_control);
    clean.then_some(name)
}

/// The search's conditions for `name`: RT's mail gateway loads an all-digit queue by
/// id, anything else by name.
pub fn search_query(name: &str) -> String {
    let field = if name.bytes().all(|b| b.is_ascii_digit()) {
        "id"
    } else {
        "Name"
    };
    serde_json::json!([{"field": field, "operator": "=", "value": name}]).to_string()
}

/// What is read of REST 2's collection answer.
#[derive(Debug, Deserialize)]
pub(crate) struct CollectionJson {
    items: Vec<serde_json::Value>,
    /// A number only for a user who may see every record of the kind; else `null`.
    #[serde(default)]
    total: Option<f64>,
}

impl CollectionJson {
    /// The answer as a [`QueueSearch`].
    pub(crate) fn search(&self) -> QueueSearch {
        match (self.items.is_empty(), self.total) {
            (false, _) => QueueSearch::Listed,
            (true, Some(_)) => QueueSearch::NoneInAll,
            (true, None) => QueueSearch::NoneVisible,
        }
    }
}

/// What the lookups can do through this front door with this user, asked once at cold
/// start ([`Rest2Lookup::abilities`]); its `Display` is the log's sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abilities {
    /// The attachment search (the lookup before a mail is posted again): `Ok` when it
    /// answers, else why not.
    pub lookup: Result<(), String>,
    /// The queue search: how far it goes, or why it can't be asked.
    pub queues: Result<QueueSearch, String>,
}

impl Abilities {
    /// True when both work fully: the lookup answers and a missing queue can be proven.
    pub fn complete(&self) -> bool {
        self.lookup.is_ok() && self.queues == Ok(QueueSearch::NoneInAll)
    }
}

impl std::fmt::Display for Abilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.lookup {
            Ok(()) => write!(
                f,
                "lookup before posting again: available (RT shows it only tickets of queues where its user has ShowTicket and ShowTicketComments); "
            )?,
            Err(why) => write!(
                f,
                "lookup before posting again: NOT available ({why}): after an unclear answer the mail is handled as WHEN_RT_CANT_BE_ASKED says; "
            )?,
        }
        match &self.queues {
            Ok(QueueSearch::NoneInAll) => write!(
                f,
                "queue check: proves a queue missing (its user may see every queue): mail to a queue RT lacks is given up before any upload"
            ),
            Ok(_) => write!(
                f,
                "queue check: can't prove a queue missing (its user lacks SeeQueue granted globally): mail to a made-up queue is posted and RT answers temporary failure"
            ),
            Err(why) => write!(
                f,
                "queue check: NOT available ({why}): mail to a made-up queue is posted and RT answers temporary failure"
            ),
        }
    }
}

impl Rest2Lookup {
    /// RT's queue search for `name` (see the module's doc).
    pub async fn search_queue(&self, name: &str) -> Result<QueueSearch, LookupError> {
        let mut url = self.url(&["queues"]);
        url.query_pairs_mut()
            .append_pair("query", &search_query(name))
            .append_pair("find_disabled_rows", "1")
            .append_pair("per_page", "1");
        let answer: CollectionJson = self.get_url(url, "the queue search").await?;
        Ok(answer.search())
    }

    /// What this lookup can do, asked of RT now (within [`PROBE_TIMEOUT`]): the
    /// attachment search and the queue search, each for a record that can't exist (id 0).
    pub async fn abilities(&self) -> Abilities {
        let probe = async {
            let mut url = self.url(&["attachments"]);
            url.query_pairs_mut()
                .append_pair("query", r#"[{"field":"id","operator":"=","value":"0"}]"#)
                .append_pair("per_page", "1");
            let lookup = self
                .get_url::<CollectionJson>(url, "the attachment search")
                .await
                .map(|_| ())
                .map_err(|e| why(&e));
            let queues = self.search_queue("0").await.map_err(|e| why(&e));
            Abilities { lookup, queues }
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe).await.unwrap_or_else(|_| {
            let silent = format!("no answer within {PROBE_TIMEOUT:?}");
            Abilities {
                lookup: Err(silent.clone()),
                queues: Err(silent),
            }
        })
    }
}

/// A failed probe in words an admin acts on.
fn why(error: &LookupError) -> String {
    match error {
        LookupError::Status { status: 404, .. } => {
            "404: the front door does not pass REST 2 (install deploy/nginx/extras/rest2-lookup.conf), or RT_API_URL lacks RT's WebPath".into()
        }
        LookupError::Malformed { .. } => {
            "the answer is not REST 2's JSON: a front door's page, or RT_API_URL lacks RT's WebPath".into()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_name_an_address_holds_is_asked() {
        assert_eq!(askable(b"support"), Some("support"));
        assert_eq!(askable("Ventes été".as_bytes()), Some("Ventes été"));
        for odd in ["a/b", "a%2Fb", "50%", "a+b", "a b", "a\\b", "..", "?x=1&y#z"] {
            assert_eq!(askable(odd.as_bytes()), Some(odd), "{odd:?}");
        }
        for never in [&b""[..], b" ", b"a\nb", b"a\rb", b"\xff"] {
            assert_eq!(askable(never), None, "{never:?}");
        }
    }

    #[test]
    fn the_query_carries_the_name_as_json_and_digits_as_an_id() {
        let q: serde_json::Value = serde_json::from_str(&search_query(r#"a"b/%2F"#)).unwrap();
        assert_eq!(q[0]["field"], "Name");
        assert_eq!(q[0]["value"], r#"a"b/%2F"#);
        assert_eq!(q[0]["operator"], "=");
        let q: serde_json::Value = serde_json::from_str(&search_query("12")).unwrap();
        assert_eq!(q[0]["field"], "id");
    }

    #[test]
    fn only_an_empty_list_with_a_total_is_missing() {
        let read = |json: &str| serde_json::from_str::<CollectionJson>(json).unwrap().search();
        let listed = r#"{"items":[{"type":"queue","id":"4"}],"total":null,"count":1}"#;
        assert_eq!(read(listed), QueueSearch::Listed);
        assert_eq!(read(r#"{"items":[],"total":0,"pages":0.0}"#), QueueSearch::NoneInAll);
        assert_eq!(
            read(r#"{"items":[],"total":null,"pages":null}"#),
            QueueSearch::NoneVisible
        );
        assert_eq!(read(r#"{"items":[]}"#), QueueSearch::NoneVisible);
        assert!(serde_json::from_str::<CollectionJson>(r#"{"message":"Not Found"}"#).is_err());
    }

    #[test]
    fn the_log_says_what_to_grant_or_install() {
        let full = Abilities {
            lookup: Ok(()),
            queues: Ok(QueueSearch::NoneInAll),
        };
        assert!(full.complete());
        assert!(full.to_string().contains("proves a queue missing"), "{full}");
        let narrow = Abilities {
            lookup: Ok(()),
            queues: Ok(QueueSearch::NoneVisible),
        };
        assert!(!narrow.complete());
        assert!(narrow.to_string().contains("SeeQueue granted globally"), "{narrow}");
        let door = Abilities {
            lookup: Err(why(&LookupError::Status {
                what: "x".into(),
                status: 404,
            })),
            queues: Err("y".into()),
        };
        assert!(door.to_string().contains("rest2-lookup.conf"), "{door}");
    }
}
