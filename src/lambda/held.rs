//! Every mail that did not become a ticket, read and settled (`rt-mailgate-held`, the
//! daily run): the I/O around [`crate::core::held`]'s rules.
//!
//! - Filing ([`file_mail`]): the function writes a mail's entries when a route of it
//!   ended anything but delivered, or a recipient had no route.
//! - Finding ([`find`], [`one`]): by day, one listing of the entries by day; by sender,
//!   one listing of the trace's address index ([`crate::core::mail_index`]), then each
//!   mail's own entry; each mail is read with its route records. Bounded: a listing that
//!   stops at its bound says so ([`StoppedShort`]), never "nothing held".
//! - Settling ([`reject`], [`expire`]): each route still not a ticket is rewritten
//!   `refused` (`HeldRejected`, `HeldExpired`) on the version read, so a release racing
//!   it either posts first (and the reject finds it delivered) or finds it settled.
//! - The daily run ([`daily`]): held mail older than `HeldDays` expires (logged with its
//!   sender and Message-ID, `outcome = "expired"`, metric `HeldExpired`), and the
//!   operator gets one digest a day (a once-a-day mark, created conditionally).
//! - The function's requests ([`request_in`], [`operate`]):
//!   `{"rt-mailgate": {"held": {"reject": {"message_id": "...", "reason": "automatic"}}}}`
//!   and `{"rt-mailgate": {"held": {"daily": {"held_days": 14}}}}` (the template's
//!   `HeldDigestRule`); a release is the replay request with `"release": true`
//!   ([`crate::lambda::operator`]).

use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::aws::record_index::{KeyRange, RecordIndex};
use crate::aws::records::DeliveryRecords;
use crate::aws::s3::{MailStore, StoreError};
use crate::aws::ses::Notifier;
use crate::core::held::{
    cause_of, day_range, digest, digest_key, reject_notice, reject_window_key, settle, settled_key, Filter, HeldEntry,
    HeldMail, Kind, RejectReason, DEFAULT_HELD_DAYS, EXPIRED, REJECTED,
};
use crate::core::mail_index::{parse_entry, IndexKey};
use crate::core::outcome::{sender_refusal, SenderFacts};
use crate::core::rate_limit::normalize_address;
use crate::core::route_record::RouteRecord;
use crate::lambda::config::LambdaConfig;
use crate::lambda::events::MailInfo;
use crate::lambda::handler::HandlerError;
use crate::lambda::invocation::epoch_ms;
pub use crate::lambda::trace::StoppedShort;
use crate::lambda::trace::{indexed, write_entries};
use crate::lambda::wiring::AwsHandler;

/// How many reads a listing has in flight at once.
const READS_AT_ONCE: usize = 16;
/// At most this many route records of one mail are read.
const MAX_ROUTES_READ: usize = 1_000;
/// The daily run reads at most this many mails.
const DAILY_MAX_MAILS: usize = 10_000;
/// The daily run looks this many days past `HeldDays`, for mails a missed run left.
const DAILY_EXTRA_DAYS: u64 = 7;
const DAY_MS: u64 = 86_400_000;

/// Files `mail` for `rt-mailgate-held`: its entry by day and by id (a plain write each:
/// an entry is the same whoever writes it, a retry included), within `time_left`. An
/// entry not written is logged; the delivery goes on (the records still say it all).
pub async fn file_mail(
    records: &impl DeliveryRecords,
    mail: &MailInfo,
    unrouted: &[String],
    time_left: Option<Duration>,
) {
    let entry = HeldEntry {
        mail: indexed(mail),
        subject: mail
            .subject
            .as_deref()
            .map(|s| s.chars().take(crate::core::notice::QUOTED_CHARS).collect()),
        unrouted: unrouted.to_vec(),
        spf_pass: mail.spf_pass,
        dkim_pass: mail.dkim_pass,
        dmarc: mail.verdicts.dmarc.clone(),
    };
    let keys = [entry.day_key(), HeldEntry::mail_key(&mail.ses_id)];
    write_entries(
        records,
        &mail.ses_id,
        &keys,
        &entry.to_text(),
        time_left,
        "held-mail entry",
    )
    .await;
}

/// Which mails a listing reads.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    /// Cause, sender, route.
    pub filter: Filter,
    /// Mails received from this time (epoch ms).
    pub since_ms: u64,
    /// Mails received up to this time (epoch ms).
    pub until_ms: u64,
    /// At most this many entries are read.
    pub max_mails: usize,
}

/// What a listing found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The mails, oldest first.
    pub mails: Vec<HeldMail>,
    /// Set when the listing stopped at its bound with more left.
    pub stopped_short: Option<StoppedShort>,
}

/// One mail as its records show it now: its entry (if the function filed it), each
/// route's record with its key (under the records prefix), and whether its unrouted
/// recipients were settled.
#[derive(Debug, Clone, Default)]
pub struct MailState {
    /// What the function filed.
    pub entry: Option<HeldEntry>,
    /// `(key under the records prefix, record)` per route.
    pub records: Vec<(String, RouteRecord)>,
    /// Records found but not readable.
    pub unreadable: usize,
    /// An operator (or the daily run) settled its unrouted recipients.
    pub unrouted_settled: bool,
}

impl MailState {
    /// The mail as the list shows it (`None`: nothing left that is not a ticket).
    pub fn held(&self, now_ms: u64) -> Option<HeldMail> {
        let entry = self.entry.clone()?;
        let records: Vec<RouteRecord> = self.records.iter().map(|(_, r)| r.clone()).collect();
        HeldMail::of(entry, &records, self.unrouted_settled, now_ms)
    }
}

/// Reads mail `ses_id`: its entry, its route records, its settled marker.
pub async fn one(index: &impl RecordIndex, records_prefix: &str, ses_id: &str) -> Result<MailState, StoreError> {
    let entry_key = format!("{records_prefix}{}", HeldEntry::mail_key(ses_id));
    let marker_key = format!("{records_prefix}{}", settled_key(ses_id));
    let under = format!("{records_prefix}{ses_id}/");
    let (entry, marker, listing) = futures_util::future::join3(
        index.read(&entry_key),
        index.read(&marker_key),
        index.list(&KeyRange::under(under), MAX_ROUTES_READ),
    )
    .await;
    let listing = listing?;
    let texts: Vec<(String, Result<Option<String>, StoreError>)> = futures_util::stream::iter(&listing.items)
        .map(|item| async move { (item.key.clone(), index.read(&item.key).await) })
        .buffered(READS_AT_ONCE)
        .collect()
        .await;
    let mut state = MailState {
        entry: entry?.as_deref().and_then(HeldEntry::from_text),
        unrouted_settled: marker?.is_some(),
        ..MailState::default()
    };
    for (key, text) in texts {
        let Some(text) = text? else { continue };
        match RouteRecord::from_text(&text) {
            Some(record) => state
                .records
                .push((key.strip_prefix(records_prefix).unwrap_or(&key).to_string(), record)),
            None => state.unreadable += 1,
        }
    }
    Ok(state)
}

/// The mails `request` asks for that did not (wholly) become a ticket, at `now_ms`.
pub async fn find(
    index: &impl RecordIndex,
    records_prefix: &str,
    request: &ListRequest,
    now_ms: u64,
) -> Result<Found, StoreError> {
    // By sender: the trace's address index (that sender's mails only); else the
    // entries by day.
    let range = match &request.filter.sender {
        Some(sender) => {
            let key = IndexKey::address(sender);
            KeyRange {
                prefix: format!("{records_prefix}{}", key.prefix()),
                after: Some(format!("{records_prefix}{}", key.start_after(request.since_ms))),
                until: Some(format!("{records_prefix}{}", key.end_at(request.until_ms))),
            }
        }
        None => {
            let (prefix, after, until) = day_range(request.since_ms, request.until_ms);
            KeyRange {
                prefix: format!("{records_prefix}{prefix}"),
                after: Some(format!("{records_prefix}{after}")),
                until: Some(format!("{records_prefix}{until}")),
            }
        }
    };
    let listing = index.list(&range, request.max_mails.max(1)).await?;
    let ids: Vec<(u64, String)> = listing
        .items
        .iter()
        .filter_map(|item| parse_entry(item.key.strip_prefix(&range.prefix)?))
        .collect();
    let stopped_short = listing.more.then(|| StoppedShort {
        read: listing.items.len(),
        last_ms: ids.last().map(|(t, _)| *t),
    });
    let found: Vec<Result<Option<HeldMail>, StoreError>> = futures_util::stream::iter(ids)
        .map(|(_, ses_id)| async move {
            let state = one(index, records_prefix, &ses_id).await?;
            Ok(state.held(now_ms).and_then(|mail| mail.filtered(&request.filter)))
        })
        .buffered(READS_AT_ONCE)
        .collect()
        .await;
    let mut mails = Vec::new();
    for mail in found {
        if let Some(mail) = mail? {
            if !mails
                .iter()
                .any(|m: &HeldMail| m.entry.mail.ses_id == mail.entry.mail.ses_id)
            {
                mails.push(mail);
            }
        }
    }
    mails.sort_by_key(|m| m.entry.mail.received_ms);
    Ok(Found { mails, stopped_short })
}

/// Why a reject or an expiry could not be done.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The records could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The mail is not one the function filed as not a ticket.
    #[error("mail {0} is not in the held list (never filed, or its entry expired); rt-mailgate-trace --message-id says what became of it")]
    NotListed(String),
}

/// What a reject did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RejectReport {
    /// Routes (and unrouted recipient sets) settled now.
    pub settled: usize,
    /// Whether the sender was sent a notice.
    pub notice_sent: bool,
    /// What became of the notice, in words.
    pub notice: String,
}

/// The adapters a reject, an expiry and the daily run use.
pub struct Held<'a, S, R, I, N> {
    /// The function's configuration (notices, the records prefix, the mail key).
    pub config: &'a LambdaConfig,
    /// The stored mails (a reject reads the header: who may be told).
    pub store: &'a S,
    /// The records, written conditionally.
    pub records: &'a R,
    /// The same records, listed.
    pub index: &'a I,
    /// Sends the notices and the digest.
    pub notifier: &'a N,
}

impl<S: MailStore, R: DeliveryRecords, I: RecordIndex, N: Notifier> Held<'_, S, R, I, N> {
    fn records_prefix(&self) -> &str {
        &self.config.records_prefix
    }

    /// Settles every route of `state` still not a ticket with `case` (and its unrouted
    /// recipients with the marker); how many it settled.
    async fn settle_all(&self, ses_id: &str, state: &MailState, case: &str, why: &str) -> Result<usize, StoreError> {
        let now = epoch_ms();
        let mut settled = 0;
        for (key, _) in &state.records {
            // Read again with its version: a release may be posting it right now.
            let Some((text, version)) = self.records.find_versioned(key).await? else {
                continue;
            };
            let Some(record) = RouteRecord::from_text(&text) else {
                continue;
            };
            if cause_of(&record, now).is_none() {
                continue;
            }
            let settled_record = settle(&record, case, why, now);
            match self.records.replace(key, &settled_record.to_text(), &version).await? {
                Some(_) => settled += 1,
                None => tracing::warn!(
                    message_id = ses_id,
                    key,
                    "route changed while being settled (a release?); left as it is now"
                ),
            }
        }
        let unrouted = state.entry.as_ref().is_some_and(|e| !e.unrouted.is_empty());
        if unrouted && !state.unrouted_settled {
            let marker = json!({"case": case, "reason": why, "updated_ms": now}).to_string();
            if self.records.create(&settled_key(ses_id), &marker).await?.is_some() {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Rejects mail `ses_id` for `reason`: settles what of it is not a ticket, then
    /// tells the sender only where the sender-notice rules allow (never a forged or
    /// unauthenticated sender, never machine mail), at most once per sender, reason and
    /// day.
    pub async fn reject(&self, ses_id: &str, reason: RejectReason) -> Result<RejectReport, SettleError> {
        let state = one(self.index, self.records_prefix(), ses_id).await?;
        let Some(entry) = state.entry.clone() else {
            return Err(SettleError::NotListed(ses_id.to_string()));
        };
        let settled = self.settle_all(ses_id, &state, REJECTED, reason.word()).await?;
        let mut report = RejectReport {
            settled,
            ..RejectReport::default()
        };
        if settled == 0 {
            report.notice = "not sent: nothing of this mail was left to reject".into();
            return Ok(report);
        }
        report.notice = self.tell_sender(&entry, reason).await;
        report.notice_sent = report.notice == "sent";
        tracing::warn!(
            message_id = ses_id,
            sender = entry.mail.sender,
            header_message_id = entry.mail.message_id.as_deref().unwrap_or(""),
            reason = reason.word(),
            settled,
            notice = report.notice,
            outcome = "rejected",
            "held mail rejected by an operator"
        );
        Ok(report)
    }

    /// The reject notice, where allowed: what became of it, in words.
    async fn tell_sender(&self, entry: &HeldEntry, reason: RejectReason) -> String {
        if !self.config.notices.to_senders {
            return "not sent: sender notices are off (SENDER_NOTICES)".into();
        }
        if self.config.notices.from.is_none() {
            return "not sent: NOTICE_FROM is not set".into();
        }
        // Who may be told: SES's verdicts as the event gave them, the mail's own header.
        let header = match self.config.mail_key(&entry.mail.ses_id, None) {
            Ok(key) => match self.store.fetch(&key, self.config.line_endings).await {
                Ok(spool) => Some(spool.summary().clone()),
                Err(error) => {
                    tracing::warn!(message_id = entry.mail.ses_id, error = %error, "stored mail not read for the reject notice");
                    None
                }
            },
            Err(_) => None,
        };
        let Some(header) = header else {
            return "not sent: the stored mail could not be read (who sent it can't be checked)".into();
        };
        let facts = SenderFacts {
            envelope_sender: entry.mail.sender.clone(),
            from: header.from.clone(),
            spf_pass: entry.spf_pass,
            dkim_pass: entry.dkim_pass,
            dmarc: entry.dmarc.clone(),
            dkim_domains: header.dkim_domains.clone(),
            header: header.header,
            machine_generated: header.machine_generated,
        };
        if let Some(refused) = sender_refusal(&facts) {
            return format!("not sent: the sender may not be told ({refused})");
        }
        let Some(sender) = normalize_address(&entry.mail.sender) else {
            return "not sent: no sender address".into();
        };
        let key = reject_window_key(&sender, reason, epoch_ms());
        let mark = json!({"message_id": entry.mail.ses_id, "updated_ms": epoch_ms()}).to_string();
        match self.records.create(&key, &mark).await {
            Ok(Some(_)) => {}
            Ok(None) => return "not sent: this sender was told for this reason today already".into(),
            Err(error) => return format!("not sent: the notice window could not be written ({error})"),
        }
        match self.notifier.send(&reject_notice(entry, reason)).await {
            Ok(()) => "sent".into(),
            Err(error) => format!("not sent: {error}"),
        }
    }

    /// Expires `mail`: settles what of it is not a ticket and logs it with its sender
    /// and Message-ID (`outcome = "expired"`).
    pub async fn expire(&self, mail: &HeldMail, held_days: u32) -> Result<usize, SettleError> {
        let ses_id = &mail.entry.mail.ses_id;
        let state = one(self.index, self.records_prefix(), ses_id).await?;
        let why = format!("held longer than {held_days} day(s); never posted");
        let settled = self.settle_all(ses_id, &state, EXPIRED, &why).await?;
        if settled > 0 {
            let causes: Vec<&str> = mail.causes().iter().map(|c| c.label).collect();
            tracing::warn!(
                message_id = ses_id.as_str(),
                sender = mail.entry.mail.sender,
                header_message_id = mail.entry.mail.message_id.as_deref().unwrap_or(""),
                cause = causes.join(","),
                held_days,
                outcome = "expired",
                "held mail expired: dropped, never posted"
            );
            crate::lambda::metrics::held_expired();
        }
        Ok(settled)
    }

    /// The daily run: expires held mail older than `held_days`, then sends the operator
    /// one digest of what is left (at most one a day).
    pub async fn daily(&self, held_days: u32) -> Result<Value, SettleError> {
        let now = epoch_ms();
        let held_days = held_days.max(1);
        let request = ListRequest {
            since_ms: now.saturating_sub((u64::from(held_days) + DAILY_EXTRA_DAYS) * DAY_MS),
            until_ms: now,
            max_mails: DAILY_MAX_MAILS,
            ..ListRequest::default()
        };
        let found = find(self.index, self.records_prefix(), &request, now).await?;
        let mut expired = 0;
        let mut left = Vec::new();
        for mail in found.mails {
            let held = mail.causes().iter().any(|c| c.kind == Kind::Held);
            if held && mail.expired(held_days, now) {
                if self.expire(&mail, held_days).await? > 0 {
                    expired += 1;
                }
            } else if !mail.expired(held_days, now) {
                left.push(mail);
            }
        }
        let stopped_short = found.stopped_short.is_some();
        if stopped_short {
            tracing::warn!(
                read = DAILY_MAX_MAILS,
                "held-mail daily run STOPPED SHORT: more entries than it reads; later ones wait for the next run"
            );
        }
        let digest_sent = self.send_digest(&left, expired, held_days, stopped_short, now).await;
        tracing::info!(
            listed = left.len(),
            expired,
            digest_sent,
            outcome = "held-daily",
            "held-mail daily run done"
        );
        Ok(json!({
            "listed": left.len(),
            "expired": expired,
            "digest_sent": digest_sent,
            "stopped_short": stopped_short,
        }))
    }

    async fn send_digest(&self, mails: &[HeldMail], expired: usize, held_days: u32, short: bool, now: u64) -> bool {
        let (Some(operator), Some(_)) = (&self.config.notices.operator, &self.config.notices.from) else {
            return false;
        };
        let Some(text) = digest(operator, mails, expired, held_days, short, now) else {
            return false;
        };
        match self
            .records
            .create(&digest_key(now), &json!({"updated_ms": now}).to_string())
            .await
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::info!("held-mail digest already sent today");
                return false;
            }
            Err(error) => {
                tracing::error!(error = %error, "held-mail digest mark not written; digest not sent");
                return false;
            }
        }
        match self.notifier.send(&text).await {
            Ok(()) => true,
            Err(error) => {
                tracing::error!(error = %error, "held-mail digest not sent");
                false
            }
        }
    }
}

/// A request to the function about held mail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HeldRequest {
    /// Reject one mail.
    Reject {
        /// SES's message id.
        message_id: String,
        /// A reason's word ([`RejectReason`]).
        reason: String,
    },
    /// The daily run (the template's schedule).
    Daily {
        /// Days held mail is kept (`HeldDays`).
        #[serde(default = "default_held_days")]
        held_days: u32,
    },
}

fn default_held_days() -> u32 {
    DEFAULT_HELD_DAYS
}

/// The held-mail request in an invocation's payload, if it is one
/// (`{"rt-mailgate": {"held": ...}}`).
pub fn request_in(payload: &Value) -> Option<&Value> {
    payload.get(crate::lambda::operator::OPERATOR_KEY)?.get("held")
}

/// Runs a held-mail request with the function's own adapters.
pub async fn operate(handler: &AwsHandler, request: &Value) -> Result<Value, HandlerError> {
    let request: HeldRequest = serde_json::from_value(request.clone())
        .map_err(|e| HandlerError::MalformedEvent(format!("held-mail request: {e}")))?;
    let (store, records, notifier) = handler.adapters();
    let index = records.index();
    let held = Held {
        config: handler.config(),
        store,
        records,
        index: &index,
        notifier,
    };
    let failed = |e: SettleError| HandlerError::MalformedEvent(format!("held mail: {e}"));
    match request {
        HeldRequest::Reject { message_id, reason } => {
            let reason = RejectReason::from_word(&reason)
                .ok_or_else(|| HandlerError::MalformedEvent(format!("held mail: no reject reason {reason:?}")))?;
            let report = held.reject(&message_id, reason).await.map_err(failed)?;
            Ok(json!(report))
        }
        HeldRequest::Daily { held_days } => held.daily(held_days).await.map_err(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::memory::{MemoryBucket, MemoryOutbox};
    use crate::core::route_record::RouteState;
    use crate::spool::{LineEndings, Spool};
    use std::collections::BTreeMap;

    /// The stored mails: one, from an authenticated-looking sender.
    struct Store;
    impl MailStore for Store {
        async fn fetch(&self, _key: &str, endings: LineEndings) -> Result<Spool, StoreError> {
            let mail = b"From: alice@customer.example\nSubject: s\nMessage-ID: <x@customer.example>\n\nhi\n";
            Ok(Spool::from_reader(&mail[..], endings).await.unwrap())
        }
    }

    fn config() -> LambdaConfig {
        let env: BTreeMap<&str, &str> = [
            ("RT_URL", "http://127.0.0.1:9"),
            ("MAIL_BUCKET", "b"),
            ("RECORDS_PREFIX", "r/"),
            ("ROUTES", "bugs@example.com: --queue bugs"),
            ("OPERATOR_EMAIL", "ops@example.com"),
            ("NOTICE_FROM", "rt@example.com"),
            ("SENDER_NOTICES", "true"),
        ]
        .into_iter()
        .collect();
        LambdaConfig::from_vars(|k| env.get(k).map(|v| v.to_string())).unwrap()
    }

    /// Files mail `id` received `age_ms` ago with one route record in `state`.
    async fn file(bucket: &MemoryBucket, id: &str, age_ms: u64, state: &str, reason: &str) {
        let mail = MailInfo {
            ses_id: id.into(),
            sender: "alice@customer.example".into(),
            from: vec!["alice@customer.example".into()],
            message_id_header: Some(format!("<{id}@customer.example>")),
            recipients: vec!["bugs@example.com".into()],
            received_ms: epoch_ms() - age_ms,
            spf_pass: true,
            ..MailInfo::default()
        };
        file_mail(bucket, &mail, &[], None).await;
        let record = json!({"state": state, "route": "bugs@example.com", "recipients": ["bugs@example.com"],
            "sender": "alice@customer.example", "reason": reason, "case": reason, "updated_ms": epoch_ms() - age_ms});
        bucket.put(&format!("{id}/fp"), &record.to_string());
    }

    /// The held-mail operations on `bucket`, telling through `outbox`.
    fn held<'a>(
        config: &'a LambdaConfig,
        bucket: &'a MemoryBucket,
        outbox: &'a MemoryOutbox,
    ) -> Held<'a, Store, MemoryBucket, MemoryBucket, MemoryOutbox> {
        Held {
            config,
            store: &Store,
            records: bucket,
            index: bucket,
            notifier: outbox,
        }
    }

    fn state_of(bucket: &MemoryBucket, id: &str) -> RouteRecord {
        RouteRecord::from_text(&bucket.get(&format!("{id}/fp")).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn the_daily_run_expires_only_old_held_mail_and_sends_one_digest() {
        let (bucket, outbox, config) = (MemoryBucket::default(), MemoryOutbox::default(), config());
        let held = held(&config, &bucket, &outbox);
        file(&bucket, "old-held", 3 * DAY_MS, "held", "storm-sender: 16 mails").await;
        file(&bucket, "new-held", 60_000, "held", "loop: X-Loop").await;
        file(&bucket, "old-given-up", 3 * DAY_MS, "given-up", "MailTooLarge").await;
        let answer = held.daily(2).await.unwrap();
        assert_eq!(answer["expired"], 1, "{answer}");
        assert_eq!(
            answer["listed"], 1,
            "the new one; the old give-up is past the digest's days"
        );
        assert_eq!(state_of(&bucket, "old-held").case.as_deref(), Some(EXPIRED));
        assert_eq!(state_of(&bucket, "new-held").state, RouteState::Held);
        assert_eq!(
            state_of(&bucket, "old-given-up").state,
            RouteState::GivenUp,
            "only held mail expires"
        );
        assert_eq!(outbox.0.lock().unwrap().len(), 1);
        // Again the same day: nothing more to expire, no second digest.
        let again = held.daily(2).await.unwrap();
        assert_eq!(
            (again["expired"].as_u64(), again["digest_sent"].as_bool()),
            (Some(0), Some(false))
        );
        assert_eq!(outbox.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_reject_settles_once_and_tells_once_per_sender_reason_and_day() {
        let (bucket, outbox, config) = (MemoryBucket::default(), MemoryOutbox::default(), config());
        let held = held(&config, &bucket, &outbox);
        for id in ["a", "b"] {
            file(&bucket, id, 60_000, "held", "auto-reply: Auto-Submitted").await;
        }
        let first = held.reject("a", RejectReason::Automatic).await.unwrap();
        assert_eq!((first.settled, first.notice_sent), (1, true), "{first:?}");
        assert_eq!(state_of(&bucket, "a").case.as_deref(), Some(REJECTED));
        // Rejected again: nothing left, nothing sent.
        let again = held.reject("a", RejectReason::Automatic).await.unwrap();
        assert_eq!((again.settled, again.notice_sent), (0, false));
        // Another mail of the sender, same reason and day: settled, not told.
        let second = held.reject("b", RejectReason::Automatic).await.unwrap();
        assert_eq!((second.settled, second.notice_sent), (1, false), "{second:?}");
        assert_eq!(outbox.0.lock().unwrap().len(), 1);
        assert!(matches!(
            held.reject("never-filed", RejectReason::Loop).await,
            Err(SettleError::NotListed(_))
        ));
        // Neither is listed any more.
        let request = ListRequest {
            since_ms: 0,
            until_ms: epoch_ms(),
            max_mails: 10,
            ..ListRequest::default()
        };
        assert!(find(&bucket, "r/", &request, epoch_ms())
            .await
            .unwrap()
            .mails
            .is_empty());
    }

    #[tokio::test]
    async fn a_listing_stops_short_at_its_bound_and_says_so() {
        let bucket = MemoryBucket::default();
        for n in 0..5 {
            file(&bucket, &format!("m{n}"), 60_000 - n * 1000, "given-up", "UnknownQueue").await;
        }
        let request = |max| ListRequest {
            since_ms: 0,
            until_ms: epoch_ms(),
            max_mails: max,
            ..ListRequest::default()
        };
        let all = find(&bucket, "r/", &request(10), epoch_ms()).await.unwrap();
        assert_eq!((all.mails.len(), all.stopped_short), (5, None));
        let short = find(&bucket, "r/", &request(3), epoch_ms()).await.unwrap();
        assert_eq!(short.mails.len(), 3);
        assert_eq!(short.stopped_short.unwrap().read, 3);
    }

    #[test]
    fn a_held_request_is_read_strictly() {
        let payload = json!({"rt-mailgate": {"held": {"daily": {"held_days": 3}}}});
        let request: HeldRequest = serde_json::from_value(request_in(&payload).unwrap().clone()).unwrap();
        assert_eq!(request, HeldRequest::Daily { held_days: 3 });
        let daily: HeldRequest = serde_json::from_value(json!({"daily": {}})).unwrap();
        assert_eq!(daily, HeldRequest::Daily { held_days: 14 });
        assert!(serde_json::from_value::<HeldRequest>(json!({"release": {}})).is_err());
        assert!(request_in(&json!({"rt-mailgate": {"canary": {"to": "x"}}})).is_none());
    }
}
