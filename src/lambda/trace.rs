//! The trace of a mail (`rt-mailgate-trace`), and the index it searches.
//!
//! - Writing: for every mail it gets, the function writes the mail's index entries
//!   ([`crate::core::mail_index`]: by envelope sender, From address and `Message-ID`,
//!   under the receipt day) while it delivers the mail ([`index_mail`]).
//! - Searching ([`find_mails`]): by SES's message id, one listing under
//!   `<records prefix><id>/`; by `Message-ID` header or sender, one listing of that
//!   value's index prefix, from the first day asked to the last; each mail found is then
//!   read with its route records. Mails received before the index existed are found by
//!   `scan` (every record in key order, read one by one, as before the index).
//!
//! Every search is bounded, and when it stops at its bound with more left it says so
//! ([`Found::stopped_short`]): "not found" is said only of a search that saw everything
//! in its window. What each record means is [`crate::core::trace`]'s.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;

use crate::aws::record_index::{KeyRange, RecordIndex};
use crate::aws::records::DeliveryRecords;
use crate::aws::s3::StoreError;
use crate::core::mail_index::{parse_entry, IndexKey, IndexedMail, INDEX_DIR};
use crate::core::route_record::{MailVerdicts, RouteRecord};
use crate::core::trace::MailFilter;
use crate::lambda::events::MailInfo;
use crate::lambda::invocation::{epoch_ms, within};

/// How many reads a search has in flight at once.
const READS_AT_ONCE: usize = 16;

/// At most this many route records of one mail are read (one per route; routes per
/// mail are capped far below this).
const MAX_ROUTES_READ: usize = 1_000;

/// Which mails to trace.
#[derive(Debug, Clone, Default)]
pub struct TraceRequest {
    /// SES's message id: its records only.
    pub ses_id: Option<String>,
    /// Otherwise (or as well): the mails that match.
    pub filter: MailFilter,
    /// At most this many index entries are read (a search by header or sender).
    pub max_mails: usize,
    /// Search the records one by one instead of the index (mails from before the index).
    pub scan: bool,
    /// At most this many records are read by a scan.
    pub max_records: usize,
}

/// One mail and its routes' records, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailTrace {
    /// SES's message id.
    pub ses_id: String,
    /// The mail as its index entry describes it (a search by header or sender).
    pub indexed: Option<IndexedMail>,
    /// One record per route (unreadable records are left out and counted).
    pub routes: Vec<RouteRecord>,
    /// Records found but not readable as a route record.
    pub unreadable: usize,
}

/// Where a search stopped with more left to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedShort {
    /// How many entries (or records) it read: the bound.
    pub read: usize,
    /// The time of the last one read (epoch ms; an index entry's receipt time, a
    /// record's last write), when known.
    pub last_ms: Option<u64>,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    /// The mails, oldest first.
    pub mails: Vec<MailTrace>,
    /// Set when the search stopped at its bound with more left.
    pub stopped_short: Option<StoppedShort>,
}

/// Finds the mails `request` names, with their routes.
pub async fn find_mails(
    index: &impl RecordIndex,
    records_prefix: &str,
    request: &TraceRequest,
) -> Result<Found, StoreError> {
    if let Some(id) = &request.ses_id {
        let mut mail = read_routes(index, records_prefix, id, &request.filter).await?;
        return Ok(Found {
            mails: if mail.routes.is_empty() && mail.unreadable == 0 {
                Vec::new()
            } else {
                mail.indexed = None;
                vec![mail]
            },
            stopped_short: None,
        });
    }
    if request.scan {
        return scan(index, records_prefix, request).await;
    }
    let filter = &request.filter;
    let key = match (&filter.message_id_header, &filter.sender) {
        (Some(header), _) => IndexKey::message_id(header),
        (None, Some(sender)) => IndexKey::address(sender),
        (None, None) => return Ok(Found::default()),
    };
    let range = KeyRange {
        prefix: format!("{records_prefix}{}", key.prefix()),
        after: filter
            .since_ms
            .map(|t| format!("{records_prefix}{}", key.start_after(t))),
        until: filter.until_ms.map(|t| format!("{records_prefix}{}", key.end_at(t))),
    };
    let listing = index.list(&range, request.max_mails).await?;
    let stopped_short = listing.more.then(|| StoppedShort {
        read: listing.items.len(),
        last_ms: listing
            .items
            .last()
            .and_then(|l| parse_entry(l.key.strip_prefix(&range.prefix)?))
            .map(|(ms, _)| ms),
    });
    let found: Vec<Result<Option<MailTrace>, StoreError>> = futures_util::stream::iter(listing.items)
        .map(|item| {
            let range = &range;
            async move {
                let Some((received_ms, ses_id)) = item.key.strip_prefix(&range.prefix).and_then(parse_entry) else {
                    return Ok(None);
                };
                // An entry that can't be read still names its mail and time.
                let indexed = index
                    .read(&item.key)
                    .await?
                    .and_then(|text| IndexedMail::from_text(&text))
                    .filter(|m| m.ses_id == ses_id)
                    .unwrap_or_else(|| IndexedMail {
                        ses_id: ses_id.clone(),
                        received_ms,
                        ..IndexedMail::default()
                    });
                // Values sharing a hashed key part, and the other parts asked for.
                let checked = MailFilter {
                    message_id_header: filter
                        .message_id_header
                        .clone()
                        .filter(|_| indexed.message_id.is_some()),
                    sender: filter
                        .sender
                        .clone()
                        .filter(|_| !indexed.sender.is_empty() || !indexed.from.is_empty()),
                    ..filter.clone()
                };
                if !checked.matches_mail(&indexed) {
                    return Ok(None);
                }
                let mut mail = read_routes(index, records_prefix, &ses_id, &only_recipient(filter)).await?;
                mail.indexed = Some(indexed);
                Ok(Some(mail))
            }
        })
        .buffered(READS_AT_ONCE)
        .collect()
        .await;
    let mut mails: BTreeMap<String, MailTrace> = BTreeMap::new();
    for mail in found {
        if let Some(mail) = mail? {
            mails.entry(mail.ses_id.clone()).or_insert(mail);
        }
    }
    let mut mails: Vec<MailTrace> = mails.into_values().collect();
    mails.sort_by_key(|m| m.indexed.as_ref().map_or(0, |i| i.received_ms));
    Ok(Found { mails, stopped_short })
}

/// Only the recipient part of a filter: what a route record of a mail found by the
/// index is still checked against.
fn only_recipient(filter: &MailFilter) -> MailFilter {
    MailFilter {
        recipient: filter.recipient.clone(),
        ..MailFilter::default()
    }
}

/// The route records of one mail that match `filter`.
async fn read_routes(
    index: &impl RecordIndex,
    records_prefix: &str,
    ses_id: &str,
    filter: &MailFilter,
) -> Result<MailTrace, StoreError> {
    let listing = index
        .list(&KeyRange::under(format!("{records_prefix}{ses_id}/")), MAX_ROUTES_READ)
        .await?;
    let texts: Vec<Result<Option<String>, StoreError>> = futures_util::stream::iter(&listing.items)
        .map(|item| index.read(&item.key))
        .buffered(READS_AT_ONCE)
        .collect()
        .await;
    let mut mail = MailTrace {
        ses_id: ses_id.to_string(),
        indexed: None,
        routes: Vec::new(),
        unreadable: 0,
    };
    for text in texts {
        let Some(text) = text? else { continue };
        match RouteRecord::from_text(&text) {
            Some(record) if filter.matches(&record) => mail.routes.push(record),
            Some(_) => {}
            None => mail.unreadable += 1,
        }
    }
    Ok(mail)
}

/// Every record under the prefix in key order, read one by one and matched (the search
/// before the index): for mails received before it, bounded by `max_records`.
async fn scan(index: &impl RecordIndex, records_prefix: &str, request: &TraceRequest) -> Result<Found, StoreError> {
    let notices = format!("{records_prefix}notices/");
    let indexed = format!("{records_prefix}{INDEX_DIR}");
    // A flagged mail's verdicts (replay's screening) sit beside the routes' records.
    let screening = format!("{records_prefix}{}", MailVerdicts::key(""));
    // S3's write time is the record's last change, give or take a clock's skew.
    let slack = 5 * 60_000;
    let listing = index
        .list(&KeyRange::under(records_prefix), request.max_records)
        .await?;
    let stopped_short = listing.more.then_some(StoppedShort {
        read: listing.items.len(),
        last_ms: None,
    });
    let wanted: Vec<_> = listing
        .items
        .into_iter()
        .filter(|item| {
            ![&notices, &indexed, &screening]
                .iter()
                .any(|dir| item.key.starts_with(dir.as_str()))
        })
        .filter(|item| {
            let early = request.filter.since_ms.is_some_and(|t| item.modified_ms + slack < t);
            let late = request.filter.until_ms.is_some_and(|t| item.modified_ms > t + slack);
            !early && !late
        })
        .collect();
    let texts: Vec<(String, Result<Option<String>, StoreError>)> = futures_util::stream::iter(wanted)
        .map(|item| async move {
            let text = index.read(&item.key).await;
            (item.key, text)
        })
        .buffered(READS_AT_ONCE)
        .collect()
        .await;
    let mut mails: BTreeMap<String, MailTrace> = BTreeMap::new();
    for (key, text) in texts {
        let Some(text) = text? else { continue };
        let Some((ses_id, _fingerprint)) = key.strip_prefix(records_prefix).and_then(|r| r.rsplit_once('/')) else {
            continue;
        };
        if let Some(record) = RouteRecord::from_text(&text).filter(|r| request.filter.matches(r)) {
            mails
                .entry(ses_id.to_string())
                .or_insert_with(|| MailTrace {
                    ses_id: ses_id.to_string(),
                    indexed: None,
                    routes: Vec::new(),
                    unreadable: 0,
                })
                .routes
                .push(record);
        }
    }
    let mut mails: Vec<MailTrace> = mails.into_values().collect();
    mails.sort_by_key(|m| m.routes.iter().map(|r| r.updated_ms).max().unwrap_or(0));
    Ok(Found { mails, stopped_short })
}

/// Writes `mail`'s index entries (see [`crate::core::mail_index`]), all at once, within
/// `time_left`. An entry not written is logged and the delivery goes on: the index
/// only helps a person find the mail.
pub async fn index_mail(records: &impl DeliveryRecords, mail: &MailInfo, time_left: Option<Duration>) {
    let entry = indexed(mail);
    write_entries(
        records,
        &mail.ses_id,
        &entry.entry_keys(),
        &entry.to_text(),
        time_left,
        "trace index entry",
    )
    .await;
}

/// The index's description of `mail` (received now, when SES's event gave no time).
pub fn indexed(mail: &MailInfo) -> IndexedMail {
    IndexedMail {
        ses_id: mail.ses_id.clone(),
        received_ms: if mail.received_ms == 0 {
            epoch_ms()
        } else {
            mail.received_ms
        },
        sender: mail.sender.clone(),
        from: mail.from.clone(),
        message_id: mail.message_id_header.clone(),
        recipients: mail.recipients.clone(),
    }
}

/// Writes `text` under each of `keys`, all at once, within `time_left`. A key not
/// written is logged as `what` not written, with the mail's `ses_id`; the delivery goes
/// on (index entries only help a person find the mail; the records say it all).
pub async fn write_entries(
    records: &impl DeliveryRecords,
    ses_id: &str,
    keys: &[String],
    text: &str,
    time_left: Option<Duration>,
    what: &str,
) {
    let writes = keys.iter().map(|key| async move {
        match within(time_left, records.write_index(key, text)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(message_id = ses_id, key, error = %error, "{what} not written"),
            Err(stop) => tracing::warn!(message_id = ses_id, key, reason = stop.0, "{what} not written"),
        }
    });
    futures_util::future::join_all(writes).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::memory::MemoryBucket;

    const DAY: u64 = 86_400_000;
    const T0: u64 = 1_700_000_000_000;

    /// A mail received at `at`, indexed, with one route record.
    async fn receive(bucket: &MemoryBucket, id: &str, sender: &str, from: &str, at: u64) {
        let mail = MailInfo {
            ses_id: id.into(),
            sender: sender.into(),
            from: vec![from.into()],
            message_id_header: Some(format!("<{id}@example.org>")),
            recipients: vec!["support@example.com".into()],
            received_ms: at,
            ..MailInfo::default()
        };
        index_mail(bucket, &mail, None).await;
        let record = format!(
            r#"{{"state":"delivered","route":"support@example.com","recipients":["support@example.com"],"sender":"{sender}","updated_ms":{at}}}"#
        );
        bucket.put(&format!("{id}/fp"), &record);
    }

    fn by(filter: MailFilter, max_mails: usize) -> TraceRequest {
        TraceRequest {
            filter,
            max_mails,
            max_records: 10,
            ..TraceRequest::default()
        }
    }

    #[tokio::test]
    async fn a_mail_is_found_by_sender_from_or_message_id_whatever_else_the_bucket_holds() {
        let bucket = MemoryBucket::default();
        for n in 0..300 {
            receive(
                &bucket,
                &format!("a{n:04}"),
                "noise@x.example",
                "noise@x.example",
                T0 + n,
            )
            .await;
        }
        receive(
            &bucket,
            "zz-mine",
            "bounce-1@ses.example",
            "Alice@Customer.example",
            T0 + DAY,
        )
        .await;
        for filter in [
            MailFilter {
                sender: Some("bounce-1@ses.example".into()),
                ..MailFilter::default()
            },
            MailFilter {
                sender: Some("alice@customer.example".into()),
                ..MailFilter::default()
            },
            MailFilter {
                message_id_header: Some("zz-mine@example.org".into()),
                ..MailFilter::default()
            },
        ] {
            let found = find_mails(&bucket, "r/", &by(filter.clone(), 5)).await.unwrap();
            assert_eq!(found.stopped_short, None, "{filter:?}");
            assert_eq!(found.mails.len(), 1, "{filter:?}");
            assert_eq!(found.mails[0].ses_id, "zz-mine");
            assert_eq!(found.mails[0].routes.len(), 1);
            assert_eq!(
                found.mails[0].indexed.as_ref().unwrap().from,
                ["Alice@Customer.example"]
            );
        }
        // The scan of the records in key order stops short of it, and says so.
        let scan = TraceRequest {
            scan: true,
            ..by(
                MailFilter {
                    sender: Some("bounce-1@ses.example".into()),
                    ..MailFilter::default()
                },
                5,
            )
        };
        let found = find_mails(&bucket, "r/", &scan).await.unwrap();
        assert!(found.mails.is_empty());
        assert_eq!(found.stopped_short.unwrap().read, 10);
    }

    #[tokio::test]
    async fn a_search_lists_only_the_days_asked_and_says_when_it_stopped_short() {
        let bucket = MemoryBucket::default();
        for day in 0..5 {
            for n in 0..4 {
                receive(
                    &bucket,
                    &format!("d{day}n{n}"),
                    "busy@list.example",
                    "x@y.example",
                    T0 + day * DAY + n * 1000,
                )
                .await;
            }
        }
        let busy = |since, until, max| {
            by(
                MailFilter {
                    sender: Some("busy@list.example".into()),
                    since_ms: since,
                    until_ms: until,
                    ..MailFilter::default()
                },
                max,
            )
        };
        // Days 1 to 2: eight mails, all of them.
        let found = find_mails(&bucket, "r/", &busy(Some(T0 + DAY), Some(T0 + 2 * DAY + 3000), 8))
            .await
            .unwrap();
        assert_eq!(found.stopped_short, None);
        let ids: Vec<_> = found.mails.iter().map(|m| m.ses_id.as_str()).collect();
        assert_eq!(ids, ["d1n0", "d1n1", "d1n2", "d1n3", "d2n0", "d2n1", "d2n2", "d2n3"]);
        // Everything, with room for 6: stopped short after the 6th, which it names.
        let found = find_mails(&bucket, "r/", &busy(None, None, 6)).await.unwrap();
        assert_eq!(found.mails.len(), 6);
        assert_eq!(
            found.stopped_short,
            Some(StoppedShort {
                read: 6,
                last_ms: Some(T0 - T0 % 1000 + DAY + 1000)
            })
        );
    }

    #[tokio::test]
    async fn a_mail_without_route_records_is_found_and_a_recipient_narrows() {
        let bucket = MemoryBucket::default();
        let mail = MailInfo {
            ses_id: "unrouted".into(),
            sender: "s@x.example".into(),
            recipients: vec!["nobody@example.com".into()],
            received_ms: T0,
            ..MailInfo::default()
        };
        index_mail(&bucket, &mail, None).await;
        let filter = MailFilter {
            sender: Some("s@x.example".into()),
            ..MailFilter::default()
        };
        let found = find_mails(&bucket, "r/", &by(filter.clone(), 5)).await.unwrap();
        assert_eq!(found.mails.len(), 1);
        assert!(found.mails[0].routes.is_empty());
        let elsewhere = MailFilter {
            recipient: Some("support@".into()),
            ..filter
        };
        assert!(find_mails(&bucket, "r/", &by(elsewhere, 5))
            .await
            .unwrap()
            .mails
            .is_empty());
    }
}
