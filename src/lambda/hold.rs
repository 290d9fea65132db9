//! The hold step's store work (issue 23): one slot in a small sliding window kept in
//! the records store, for the loop bound (per sender and route) and for the one notice
//! per storm or loop ([`crate::core::storm::hold_notice_key`]). Each window is one small
//! record written only conditionally (`If-None-Match` to create, `If-Match` to change),
//! re-read after a lost race, so concurrent invocations can't both pass a bound. Only
//! mail with another helpdesk's marks, and a storm's first held mail, come here: the
//! ordinary path never does.

use std::time::Duration;

use crate::aws::records::DeliveryRecords;
use crate::core::rate_limit::{admit, Admission, Window};
use crate::lambda::invocation::{epoch_ms, settled_in_time, within};

/// How often a window is read again after another invocation wrote it first.
const RACES: usize = 5;

/// Takes one slot in the window at `key`: `Ok(true)` taken, `Ok(false)` the window is
/// full, `Err` the store failed or stayed contended (the caller fails open: the mail is
/// posted, or the notice not sent).
pub async fn take_slot<R: DeliveryRecords>(
    records: &R,
    key: &str,
    window: Window,
    limit: Option<Duration>,
) -> Result<bool, String> {
    for _ in 0..RACES {
        let found = settled_in_time(within(limit, records.find_versioned(key)).await)?;
        let Admission::Send(text) = admit(found.as_ref().map(|(t, _)| t.as_str()), epoch_ms(), window) else {
            return Ok(false);
        };
        let written = match &found {
            None => within(limit, records.create(key, &text)).await,
            Some((_, version)) => within(limit, records.replace(key, &text, version)).await,
        };
        if settled_in_time(written)?.is_some() {
            return Ok(true);
        }
    }
    Err(format!("window {key} stayed contended"))
}
