//! The trace of a mail (`rt-mailgate-trace`): finds its route records, by SES's message
//! id (one listing under `<records prefix><id>/`), or by `Message-ID` header, sender and
//! time (a listing of the records written in the window, each read and matched), and
//! groups them by mail. What each record means is [`crate::core::trace`]'s.

use std::collections::BTreeMap;

use crate::aws::record_index::RecordIndex;
use crate::aws::s3::StoreError;
use crate::core::route_record::RouteRecord;
use crate::core::trace::MailFilter;

/// Which mails to trace.
#[derive(Debug, Clone, Default)]
pub struct TraceRequest {
    /// SES's message id: its records only.
    pub ses_id: Option<String>,
    /// Otherwise (or as well): the records that match.
    pub filter: MailFilter,
    /// At most this many records are listed (a bound on a search without a message id).
    pub max_records: usize,
}

/// One mail and its routes' records, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailTrace {
    /// SES's message id.
    pub ses_id: String,
    /// One record per route (unreadable records are left out and counted).
    pub routes: Vec<RouteRecord>,
    /// Records found but not readable as a route record.
    pub unreadable: usize,
}

/// Finds the mails `request` names, with their routes, oldest change first.
pub async fn find_mails(
    index: &impl RecordIndex,
    records_prefix: &str,
    request: &TraceRequest,
) -> Result<Vec<MailTrace>, StoreError> {
    let listing_prefix = match &request.ses_id {
        Some(id) => format!("{records_prefix}{id}/"),
        None => records_prefix.to_string(),
    };
    let notices = format!("{records_prefix}notices/");
    // S3's write time is the record's last change, give or take a clock's skew.
    let slack = 5 * 60_000;
    let listed = index.list(&listing_prefix, request.max_records).await?;
    let mut mails: BTreeMap<String, MailTrace> = BTreeMap::new();
    for item in listed {
        if item.key.starts_with(&notices) {
            continue;
        }
        if request.ses_id.is_none() {
            let early = request.filter.since_ms.is_some_and(|t| item.modified_ms + slack < t);
            let late = request.filter.until_ms.is_some_and(|t| item.modified_ms > t + slack);
            if early || late {
                continue;
            }
        }
        let Some(rest) = item.key.strip_prefix(records_prefix) else {
            continue;
        };
        let Some((ses_id, _fingerprint)) = rest.rsplit_once('/') else {
            continue;
        };
        let Some(text) = index.read(&item.key).await? else {
            continue;
        };
        let mail = || MailTrace {
            ses_id: ses_id.to_string(),
            routes: Vec::new(),
            unreadable: 0,
        };
        match RouteRecord::from_text(&text) {
            Some(record) if request.filter.matches(&record) => {
                mails.entry(ses_id.to_string()).or_insert_with(mail).routes.push(record)
            }
            Some(_) => {}
            None if request.ses_id.is_some() => mails.entry(ses_id.to_string()).or_insert_with(mail).unreadable += 1,
            None => {}
        }
    }
    let mut mails: Vec<MailTrace> = mails.into_values().collect();
    let last_change = |m: &MailTrace| m.routes.iter().map(|r| r.updated_ms).max().unwrap_or(0);
    mails.sort_by_key(last_change);
    Ok(mails)
}
