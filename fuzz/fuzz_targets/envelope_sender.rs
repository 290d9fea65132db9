//! The envelope sender's normal form (`core::rate_limit::normalize_address`, the key of a
//! sender's notice windows) and the check whether a sender may be told
//! (`core::outcome::sender_refusal`), for any sender text:
//! - the normal form is an address (a non-empty local part without `+tag`, a non-empty
//!   domain, no upper-case ASCII) and is its own normal form: one sender, one window;
//! - a `+tag` and the case of ASCII letters never make another sender;
//! - the window keys stay under their prefixes (no path separator from the address);
//! - a sender told is never a null, daemon or bounce address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::headers::HeaderCheck;
use rt_mailgate::core::outcome::{sender_refusal, SenderFacts, DAEMON_LOCAL_PARTS};
use rt_mailgate::core::rate_limit::{domain_of, normalize_address, sender_keys, sender_windows, ALL_SENDERS_KEY};


fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // An optional second line is the header's From (for the "may be told" check).
    let (sender, from) = match text.split_once('\n') {
        Some((sender, from)) => (sender, Some(from.to_string())),
        None => (&*text, None),
    };

    if let Some(normal) = normalize_address(sender) {
        let (local, domain) = normal.rsplit_once('@').expect("a normal form has a domain");
        assert!(!local.is_empty() && !domain.is_empty(), "{normal:?}");
        assert!(!local.contains('+'), "a sub-address kept: {normal:?}");
        assert!(!normal.bytes().any(|b| b.is_ascii_uppercase()), "{normal:?}");
        assert_eq!(domain_of(&normal), domain);
        assert_eq!(
            normalize_address(&normal).as_deref(),
            Some(normal.as_str()),
            "the normal form of {sender:?} is not its own normal form"
        );
        // The same sender with a tag, or in capitals, shares the windows.
        let tagged = format!("{local}+tag@{domain}");
        assert_eq!(normalize_address(&tagged).as_deref(), Some(normal.as_str()));
        assert_eq!(
            normalize_address(&sender.to_ascii_uppercase()).as_deref(),
            Some(normal.as_str()),
            "capitals made another sender of {sender:?}"
        );

        let [address_key, domain_key] = sender_keys(&normal);
        for (key, prefix) in [(&address_key, "notices/address/"), (&domain_key, "notices/domain/")] {
            let rest = key.strip_prefix(prefix).expect("the key's prefix");
            assert!(!rest.contains(['/', '\\']), "a path separator in {key:?}");
        }
        let windows = sender_windows(&normal);
        assert_eq!(windows[0].0, address_key);
        assert_eq!(windows[1].0, domain_key);
        assert_eq!(windows[2].0, ALL_SENDERS_KEY);
    }

    let facts = SenderFacts {
        envelope_sender: sender.to_string(),
        from: from.clone(),
        spf_pass: true,
        dkim_pass: false,
        dmarc: "PASS".into(),
        dkim_domains: Vec::new(),
        header: HeaderCheck::Whole,
        machine_generated: false,
    };
    if sender_refusal(&facts).is_none() {
        assert!(from.is_some(), "told without a From");
        // (Without a normal form the notifier tells no one.)
        if let Some(normal) = normalize_address(sender) {
            let local = normal.rsplit_once('@').map_or("", |(local, _)| local);
            for daemon in DAEMON_LOCAL_PARTS {
                assert!(
                    local != daemon && !local.starts_with(&format!("{daemon}-")),
                    "told a daemon: {sender:?} (normal form {normal:?})"
                );
            }
        }
    }
});
