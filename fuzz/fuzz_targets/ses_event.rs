//! The event parser: any payload (SES, SQS, SNS, on-failure records, or garbage) must
//! give mails or a MalformedEvent error; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::lambda::events::{body_mails, mails_in, EventShape};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = body_mails(&text);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = EventShape::of(&value);
        if let Ok(mails) = mails_in(&value) {
            assert!(mails.iter().all(|m| !m.ses_id.is_empty()));
        }
    }
});
