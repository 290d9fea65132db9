//! Whether RT has a queue, asked of RT 5's REST 2 API before a mail is posted to a
//! queue the recipient address chose (a `*@domain` route's local part, a sub-address
//! under `--extension queue`). RT parses the whole mail before it checks the queue, so
//! without this a mail to fifty made-up addresses makes fifty uploads and fifty parses,
//! each answered `temporary failure`.
//!
//! `GET {api}/REST/2.0/queue/{name}` answers 200 for a queue the RT login may see,
//! by name (as RT's mail gateway loads it: case-insensitively) or by id, and 404 for
//! none. Only a 404 counts as "no such queue": a 403 (the login lacks `SeeQueue`), a
//! proxy's refusal, no answer, or no RT login at all leave it unknown, and the mail is
//! posted as before (RT then decides). One request per name, not RT's whole queue list,
//! so that a queue the login can't see is never taken for a missing one.
//!
//! Answers are kept [`CACHE_FOR`] (a queue created meanwhile is found after that at the
//! latest; a replay of a mail given up meanwhile posts it), at most [`CACHE_ENTRIES`]
//! names (made-up names can't grow it without bound).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::core::request::RtTarget;
use crate::rt::lookup::{LookupError, Rest2Lookup};

/// How long an answer is kept.
pub const CACHE_FOR: Duration = Duration::from_secs(5 * 60);
/// The most names kept (per function instance); when full, expired answers go first,
/// then all.
pub const CACHE_ENTRIES: usize = 4096;
/// How long one question may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What RT says of a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueKnown {
    /// RT has it (or RT was not asked the question the name can't be put in).
    Exists,
    /// RT answered 404: no queue of that name or id.
    Missing,
    /// Not asked, or no clear answer (the reason, for the log): post as before.
    Unknown(String),
}

/// An RT (`None`: the function's own) and a queue name, lower-case.
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
            return QueueKnown::Unknown("the queue name can't be put in a REST 2 URL".into());
        };
        let key = (target.cloned(), name.to_lowercase());
        let now = Instant::now();
        if let Some((exists, at)) = self.lock().get(&key) {
            if now.duration_since(*at) < CACHE_FOR {
                return known(*exists);
            }
        }
        let answer = match tokio::time::timeout(CHECK_TIMEOUT, lookup.queue_exists(name)).await {
            Err(_) => return QueueKnown::Unknown(format!("RT's API did not answer within {CHECK_TIMEOUT:?}")),
            Ok(Err(error)) => return QueueKnown::Unknown(error.to_string()),
            Ok(Ok(exists)) => exists,
        };
        let mut answers = self.lock();
        if answers.len() >= CACHE_ENTRIES {
            answers.retain(|_, (_, at)| now.duration_since(*at) < CACHE_FOR);
            if answers.len() >= CACHE_ENTRIES {
                answers.clear();
            }
        }
        answers.insert(key, (answer, Instant::now()));
        known(answer)
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

/// The name as REST 2 can be asked about it: UTF-8, not empty, and without `/` or `%`
/// (RT's web server may decode an escaped one, making the answer about another path).
fn askable(queue: &[u8]) -> Option<&str> {
    let name = std::str::from_utf8(queue).ok()?;
    let clean = !name.trim().is_empty() && !name.contains(['/', '%', '\\']) && !name.chars().any(char::is_control);
    clean.then_some(name)
}

impl Rest2Lookup {
    /// `GET {api}/REST/2.0/queue/{name}`: `Ok(true)` for 200, `Ok(false)` for 404, an
    /// error for anything else.
    pub async fn queue_exists(&self, name: &str) -> Result<bool, LookupError> {
        match self
            .get::<serde_json::Value>(&["queue", name], &format!("queue {name}"))
            .await
        {
            Ok(_) => Ok(true),
            Err(LookupError::Status { status: 404, .. }) => Ok(false),
            Err(other) => Err(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_asked() {
        assert_eq!(askable(b"support"), Some("support"));
        assert_eq!(askable("Ventes été".as_bytes()), Some("Ventes été"));
        for odd in [&b""[..], b" ", b"a/b", b"a%2Fb", b"a\\b", b"a\nb", b"\xff"] {
            assert_eq!(askable(odd), None, "{odd:?}");
        }
    }
}
