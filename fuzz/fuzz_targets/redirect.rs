//! Redirect handling, as `rt::http` follows RT's redirects: each `Location` is joined to
//! the current URL and passed through `core::url_policy::check_redirect`, up to
//! `MAX_REDIRECTS` times. Whatever the locations say:
//! - never from https to anything else;
//! - with credentials, never off the starting host; without, never to a host outside
//!   the starting one and the allowed ones (unless any host is allowed, as the Perl
//!   client does);
//! - userinfo in a location never leaves the current host;
//! - no password of a URL followed shows in what is logged about it (`redact`).
//!
//! Input: a first byte of flags (credentials; any host or only `rt2.example`; which
//! starting URL), then one location per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::url_policy::{check_plain_http, check_redirect, redact, OtherHosts};
use rt_mailgate::rt::http::MAX_REDIRECTS;
use url::Url;

const STARTS: [&str; 4] = [
    "https://rt.example/REST/1.0/NoAuth/mail-gateway",
    "http://rt.example:8080/rt/REST/1.0/NoAuth/mail-gateway",
    "https://gate:s3cretpassw0rd@rt.example/REST/1.0/NoAuth/mail-gateway",
    "http://127.0.0.1/REST/1.0/NoAuth/mail-gateway",
];
const ALLOWED: &str = "rt2.example";

/// A URL's userinfo never shows: what is logged reads `scheme://***@host...`.
fn no_password_shown(url: &Url) {
    if url.username().is_empty() && url.password().is_none() {
        return;
    }
    let shown = redact(url);
    let (_, after) = shown.split_once("://").expect("a URL with userinfo has an authority");
    let host = after
        .strip_prefix("***@")
        .unwrap_or_else(|| panic!("userinfo shown: {shown}"));
    let authority = host.split(['/', '?', '#']).next().unwrap_or_default();
    assert!(!authority.contains('@'), "userinfo shown: {shown}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let with_credentials = flags & 1 != 0;
    let others = if flags & 2 != 0 {
        OtherHosts::Any
    } else {
        OtherHosts::Only(vec![ALLOWED.to_string()])
    };
    let start = Url::parse(STARTS[usize::from(flags >> 2) % STARTS.len()]).expect("a start URL");
    // The endpoint's own userinfo counts as credentials, as in `rt::http`.
    let with_credentials = with_credentials || !start.username().is_empty();
    let start_host = start.host_str().map(str::to_owned);

    let text = String::from_utf8_lossy(rest);
    let mut url = start.clone();
    for location in text.split('\n').take(MAX_REDIRECTS) {
        let Ok(next) = url.join(location) else { break };
        no_password_shown(&next);
        let Ok(()) = check_redirect(&url, &next, with_credentials, &others) else {
            break;
        };
        if url.scheme() == "https" {
            assert_eq!(next.scheme(), "https", "a downgrade to {next}");
        }
        let same_host = next.host_str() == url.host_str();
        if !same_host {
            assert!(
                next.username().is_empty() && next.password().is_none(),
                "userinfo to another host"
            );
        }
        if with_credentials {
            assert_eq!(
                next.host_str(),
                start_host.as_deref(),
                "credentials left the starting host"
            );
        } else if let OtherHosts::Only(_) = others {
            assert!(
                next.host_str() == start_host.as_deref()
                    || next.host_str().is_some_and(|h| h.eq_ignore_ascii_case(ALLOWED)),
                "followed to a host not allowed: {next}"
            );
        }
        url = next;
    }
    // What the cold start accepts as a base URL: plain http only to this machine.
    if let Ok(base) = Url::parse(&text) {
        if check_plain_http(&base, false).is_ok() && base.scheme() == "http" {
            let host = base.host_str().unwrap_or_default();
            assert!(
                host == "localhost" || host.ends_with(".localhost") || host.starts_with("127.") || host == "[::1]",
                "plain http to {host} accepted"
            );
        }
    }
});
