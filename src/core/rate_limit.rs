//! How many notices may go out: a sliding window of recent send times, kept as one small
//! text per address, per sender domain, for all senders together, and for each class of
//! operator notice (the adapter stores them in the delivery-records store with
//! conditional writes). Also the normal form of a sender
//! address, so `Victim+a@Example.org` and `victim+b@example.org` share one limit.
//!
//! A window's text is the send times in epoch milliseconds, space-separated, oldest
//! first; anything unreadable counts as no send at all (never as a reason to send more
//! than the limit: the times that do parse still count).

/// At most `max` sends within any `span_ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Sends allowed within the span.
    pub max: usize,
    /// The span, in milliseconds.
    pub span_ms: u64,
}

const HOUR_MS: u64 = 60 * 60 * 1000;

impl Window {
    /// At most `max` sends within any hour: every window the notices use.
    pub const fn per_hour(max: usize) -> Self {
        Self { max, span_ms: HOUR_MS }
    }
}

/// One notice per sender address (normalized) within any hour.
pub const PER_ADDRESS: Window = Window::per_hour(1);

/// Five notices per sender domain within any hour: a forged or sub-addressed flood to
/// one domain can't make a mail storm.
pub const PER_DOMAIN: Window = Window::per_hour(5);

/// Fifty sender notices within any hour, all senders together: however many domains a
/// flood forges, the gateway's SES identity sends at most this many answers an hour.
pub const ALL_SENDERS: Window = Window::per_hour(50);

/// Twenty operator digests (one per given-up mail) about broken routes
/// ([`crate::core::outcome::GiveUpClass::Route`]) within any hour; beyond that the log
/// and the `GivenUp` metric (and its alarm) still have every given-up mail. Outsiders
/// can't fill this window: what they can cause at will goes to the two below.
pub const OPERATOR: Window = Window::per_hour(20);

/// Twenty operator digests about mail refused for what the sender sent (size, RT's
/// refusal, too many routes) within any hour.
pub const OPERATOR_SENDER: Window = Window::per_hour(20);

/// Ten operator digests about routine policy drops (a virus, spam under `drop`, a DMARC
/// reject) within any hour: they need no action, and a virus wave must not use up the
/// notices about a mail too large for RT's door or a broken route (each class has its
/// own window). The rest are in the log and the `PolicyDropped` metric.
pub const OPERATOR_POLICY: Window = Window::per_hour(10);

/// One operator digest about misses on queue or action names the recipient address
/// chose (`*@domain`) within any hour: the rest are in the log and the `AddressMisses`
/// metric only. Anyone can write to any address of the domain.
pub const OPERATOR_ADDRESS_MISSES: Window = Window::per_hour(1);

/// Twenty operator digests about mail to a queue RT says it doesn't have (the
/// recipient address chose it) within any hour: a window of its own, so outsiders'
/// misses don't silence it and it can't silence a broken route's digests.
pub const OPERATOR_QUEUE_MISSING: Window = Window::per_hour(20);

/// The window's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A send is allowed; store this text (the window with `now` added) before sending.
    Send(String),
    /// The window is full.
    Limited,
}

/// Whether one more send fits `window` at `now_ms`, given the stored text (if any).
pub fn admit(stored: Option<&str>, now_ms: u64, window: Window) -> Admission {
    let since = now_ms.saturating_sub(window.span_ms);
    let mut recent: Vec<u64> = stored
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter_map(|t| t.parse().ok())
        // A time in the future (clock skew between invocations) still counts.
        .filter(|&t| t > since)
        .collect();
    if recent.len() >= window.max {
        return Admission::Limited;
    }
    recent.push(now_ms);
    recent.sort_unstable();
    Admission::Send(recent.iter().map(u64::to_string).collect::<Vec<_>>().join(" "))
}

/// A sender address in normal form: without white space or angle brackets around it
/// (in any order: `< a@x >` is `a@x`), lower-case, and without a `+tag` sub-address in
/// the local part. `None` without a domain. The normal form is its own normal form.
pub fn normalize_address(address: &str) -> Option<String> {
    let address = address
        .trim_matches(|c: char| c.is_whitespace() || matches!(c, '<' | '>'))
        .to_lowercase();
    let (local, domain) = address.rsplit_once('@')?;
    let local = local.split_once('+').map_or(local, |(base, _)| base);
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(format!("{local}@{domain}"))
}

/// The domain part of a normalized address.
pub fn domain_of(normalized: &str) -> &str {
    normalized.rsplit_once('@').map_or("", |(_, domain)| domain)
}

/// The store keys of the windows a sender notice must fit: the address's and the
/// domain's (the global one is [`ALL_SENDERS_KEY`]). Path separators in the address
/// can't reach other keys.
pub fn sender_keys(normalized: &str) -> [String; 2] {
    let safe = normalized.replace(['/', '\\'], "_");
    [
        format!("notices/address/{safe}"),
        format!("notices/domain/{}", domain_of(&safe)),
    ]
}

/// Every window a sender notice must fit, in the order to take them: the address's,
/// the domain's, then the global one (a flood spread over many domains ends there).
pub fn sender_windows(normalized: &str) -> [(String, Window); 3] {
    let [address, domain] = sender_keys(normalized);
    [
        (address, PER_ADDRESS),
        (domain, PER_DOMAIN),
        (ALL_SENDERS_KEY.to_string(), ALL_SENDERS),
    ]
}

/// The store key of the operator's window for broken routes ([`OPERATOR`]).
pub const OPERATOR_KEY: &str = "notices/operator";

/// The store key of the operator's window for mail refused for its content ([`OPERATOR_SENDER`]).
pub const OPERATOR_SENDER_KEY: &str = "notices/operator-sender";

/// The store key of the operator's window for routine policy drops ([`OPERATOR_POLICY`]).
pub const OPERATOR_POLICY_KEY: &str = "notices/operator-policy";

/// The store key of the operator's window for address misses ([`OPERATOR_ADDRESS_MISSES`]).
pub const OPERATOR_ADDRESS_MISSES_KEY: &str = "notices/operator-address-misses";

/// The store key of the operator's window for missing queues ([`OPERATOR_QUEUE_MISSING`]).
pub const OPERATOR_QUEUE_MISSING_KEY: &str = "notices/operator-queue-missing";

/// The store key of the window all sender notices share ([`ALL_SENDERS`]).
pub const ALL_SENDERS_KEY: &str = "notices/all-senders";

/// The operator window (store key and limit) for a class of give-up.
pub fn operator_window(class: crate::core::outcome::GiveUpClass) -> (&'static str, Window) {
    use crate::core::outcome::GiveUpClass;
    match class {
        GiveUpClass::Route => (OPERATOR_KEY, OPERATOR),
        GiveUpClass::Sender => (OPERATOR_SENDER_KEY, OPERATOR_SENDER),
        GiveUpClass::AddressMiss => (OPERATOR_ADDRESS_MISSES_KEY, OPERATOR_ADDRESS_MISSES),
        GiveUpClass::QueueMissing => (OPERATOR_QUEUE_MISSING_KEY, OPERATOR_QUEUE_MISSING),
        GiveUpClass::Policy => (OPERATOR_POLICY_KEY, OPERATOR_POLICY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Window = Window { max: 2, span_ms: 1000 };

    #[test]
    fn the_window_slides() {
        let Admission::Send(one) = admit(None, 10_000, W) else {
            panic!("first send")
        };
        assert_eq!(one, "10000");
        let Admission::Send(two) = admit(Some(&one), 10_500, W) else {
            panic!("second send")
        };
        assert_eq!(two, "10000 10500");
        assert_eq!(admit(Some(&two), 10_999, W), Admission::Limited);
        // Just over a span after the first send, one slot is free again (and the old
        // time is dropped).
        assert_eq!(admit(Some(&two), 11_001, W), Admission::Send("10500 11001".into()));
    }

    #[test]
    fn not_a_clock_hour_boundary() {
        // Two sends a minute apart, across an hour boundary, are still one hour window.
        let hour = PER_ADDRESS.span_ms;
        let Admission::Send(first) = admit(None, 5 * hour - 30_000, PER_ADDRESS) else {
            panic!()
        };
        assert_eq!(admit(Some(&first), 5 * hour + 30_000, PER_ADDRESS), Admission::Limited);
    }

    #[test]
    fn garbage_does_not_block_and_future_times_count() {
        assert_eq!(admit(Some("x y"), 100, W), Admission::Send("100".into()));
        assert_eq!(admit(Some("5000 6000"), 100, W), Admission::Limited);
    }

    #[test]
    fn addresses_are_normalized() {
        assert_eq!(
            normalize_address("<Victim+a@Example.ORG>").as_deref(),
            Some("victim@example.org")
        );
        assert_eq!(
            normalize_address("victim+b@example.org").as_deref(),
            Some("victim@example.org")
        );
        assert_eq!(normalize_address("a+b+c@x").as_deref(), Some("a@x"));
        // Found by the fuzz target `envelope_sender`: blanks inside the brackets made
        // another window for the same sender.
        assert_eq!(
            normalize_address("< Victim@example.org >").as_deref(),
            Some("victim@example.org")
        );
        assert_eq!(normalize_address("+tag@x"), None);
        assert_eq!(normalize_address("nobody"), None);
        assert_eq!(normalize_address(""), None);
    }

    #[test]
    fn keys_per_address_and_domain() {
        assert_eq!(
            sender_keys("victim@example.org"),
            ["notices/address/victim@example.org", "notices/domain/example.org"]
        );
        assert_eq!(sender_keys("a/../b@x/y")[1], "notices/domain/x_y");
        let windows = sender_windows("victim@example.org");
        assert_eq!(windows[2], (ALL_SENDERS_KEY.to_string(), ALL_SENDERS));
    }

    #[test]
    fn each_operator_class_has_its_own_window() {
        use crate::core::outcome::GiveUpClass;
        let keys: Vec<&str> = [
            GiveUpClass::Route,
            GiveUpClass::Sender,
            GiveUpClass::AddressMiss,
            GiveUpClass::QueueMissing,
            GiveUpClass::Policy,
        ]
        .into_iter()
        .map(|c| operator_window(c).0)
        .collect();
        assert_eq!(
            keys,
            [
                OPERATOR_KEY,
                OPERATOR_SENDER_KEY,
                OPERATOR_ADDRESS_MISSES_KEY,
                OPERATOR_QUEUE_MISSING_KEY,
                OPERATOR_POLICY_KEY
            ]
        );
        assert_eq!(operator_window(GiveUpClass::AddressMiss).1.max, 1);
    }

    #[test]
    fn a_virus_wave_leaves_the_sender_window_whole() {
        use crate::core::outcome::GiveUpClass;
        // Fill the policy window as a wave of virus mails does, then ask for a slot in
        // the window a mail too large for RT's door (HTTP 413) counts in.
        let (policy_key, policy) = operator_window(GiveUpClass::Policy);
        let mut stored: Option<String> = None;
        for n in 0..30 {
            if let Admission::Send(text) = admit(stored.as_deref(), 1_000_000 + n, policy) {
                stored = Some(text);
            }
        }
        assert_eq!(admit(stored.as_deref(), 1_000_100, policy), Admission::Limited);
        let (sender_key, sender) = operator_window(GiveUpClass::Sender);
        assert_ne!(policy_key, sender_key, "a window of its own");
        assert!(matches!(admit(None, 1_000_100, sender), Admission::Send(_)));
    }

    #[test]
    fn the_global_sender_window_caps_a_flood_over_many_domains() {
        let mut stored: Option<String> = None;
        let mut sent = 0;
        for n in 0..ALL_SENDERS.max as u64 + 10 {
            if let Admission::Send(text) = admit(stored.as_deref(), 1_000_000 + n, ALL_SENDERS) {
                stored = Some(text);
                sent += 1;
            }
        }
        assert_eq!(sent, ALL_SENDERS.max);
    }
}
