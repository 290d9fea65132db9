//! Which RT URLs and which redirects are safe to post a mail (and credentials) to.
//!
//! - Plain `http://` carries the mail and any credential in clear text: the function
//!   refuses it at cold start for a host that is not this machine, unless allowed
//!   (`RT_ALLOW_HTTP=true`, e.g. a private address inside the VPC).
//! - A redirect never goes from `https` to `http`; never to another host while the post
//!   carries credentials (a header, basic auth, a client certificate, URL userinfo); and
//!   to another host at all only when that host is allowed. The drop-in CLI allows any
//!   other host, as the Perl client does, when it sends no credentials.
//! - URLs shown anywhere have their userinfo replaced by `***`.

use url::Url;

/// Where redirects may lead besides the same scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtherHosts {
    /// Any host (the Perl client's behaviour), but never with credentials.
    Any,
    /// Only these host names (lower case); empty means none.
    Only(Vec<String>),
}

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefused {
    /// `https://` to `http://`.
    #[error("refused a redirect from https to http ({to})")]
    Downgrade {
        /// The target, redacted.
        to: String,
    },
    /// To another host while the post carries credentials.
    #[error("refused a redirect to another host with credentials ({to})")]
    CredentialsToOtherHost {
        /// The target, redacted.
        to: String,
    },
    /// To a host that is not allowed.
    #[error("refused a redirect to another host ({to}); allow it with RT_REDIRECT_HOSTS")]
    OtherHost {
        /// The target, redacted.
        to: String,
    },
}

/// Why an RT URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    /// `http://` to a host that is not this machine.
    #[error("RT URL {url} is plain http:// to another machine: mail and credentials would cross the network unencrypted; use https://, or set RT_ALLOW_HTTP=true for a private network")]
    PlainHttp {
        /// The URL, redacted.
        url: String,
    },
}

/// `url` as text with any `user:password@` replaced by `***@`. The URL's own userinfo is
/// cut where the parser says it ends: a quote in a user name (`u'x:pw@`) would end
/// the text rule's word before the `@`.
pub fn redact(url: &Url) -> String {
    use crate::core::redact::redact_url;
    if url.username().is_empty() && url.password().is_none() {
        return redact_url(url.as_str());
    }
    format!(
        "{}://***@{}",
        url.scheme(),
        redact_url(&url[url::Position::BeforeHost..])
    )
}

/// Refuses `http://` to another machine unless `allow_plain_http`.
pub fn check_plain_http(url: &Url, allow_plain_http: bool) -> Result<(), UrlRefused> {
    if url.scheme() != "http" || allow_plain_http || is_this_machine(url) {
        return Ok(());
    }
    Err(UrlRefused::PlainHttp { url: redact(url) })
}

/// Whether a redirect from `from` to `to` may be followed.
pub fn check_redirect(
    from: &Url,
    to: &Url,
    with_credentials: bool,
    others: &OtherHosts,
) -> Result<(), RedirectRefused> {
    if from.scheme() == "https" && to.scheme() != "https" {
        return Err(RedirectRefused::Downgrade { to: redact(to) });
    }
    // Same host and port; or same host, each on its scheme's default port (the usual
    // http-to-https upgrade of a site).
    let same_place = from.host_str() == to.host_str()
        && (from.port_or_known_default() == to.port_or_known_default() || from.port().is_none() && to.port().is_none());
    if same_place {
        return Ok(());
    }
    // URL userinfo in the target counts too: it would be sent to that host.
    if with_credentials || !to.username().is_empty() || to.password().is_some() {
        return Err(RedirectRefused::CredentialsToOtherHost { to: redact(to) });
    }
    let allowed = match others {
        OtherHosts::Any => true,
        OtherHosts::Only(hosts) => to
            .host_str()
            .is_some_and(|h| hosts.iter().any(|allowed| allowed.eq_ignore_ascii_case(h))),
    };
    if allowed {
        Ok(())
    } else {
        Err(RedirectRefused::OtherHost { to: redact(to) })
    }
}

fn is_this_machine(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn userinfo_is_redacted() {
        assert_eq!(redact(&url("https://u:hush@rt.example/x")), "https://***@rt.example/x");
        assert_eq!(redact(&url("https://rt.example/x")), "https://rt.example/x");
        // Found by the fuzz target `redirect`: a quote in the user name ended the text
        // rule's URL before the `@`, and the password showed.
        assert_eq!(
            redact(&url("https://u'x:hush@rt.example/x")),
            "https://***@rt.example/x"
        );
        assert_eq!(
            redact(&url("https://u\"x:hush@rt.example/x")),
            "https://***@rt.example/x"
        );
        assert_eq!(
            redact(&url("https://u:hush@rt.example:8443/?next=https://a:b@c")),
            "https://***@rt.example:8443/?next=https://***@c"
        );
    }

    #[test]
    fn plain_http_only_to_this_machine_unless_allowed() {
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost/",
            "http://[::1]/",
            "https://rt.example",
        ] {
            assert_eq!(check_plain_http(&url(local), false), Ok(()), "{local}");
        }
        let err = check_plain_http(&url("http://u:hush@rt.example/"), false).unwrap_err();
        assert!(err.to_string().contains("http://***@rt.example/") && !err.to_string().contains("hush"));
        assert_eq!(check_plain_http(&url("http://10.0.0.5/"), true), Ok(()));
    }

    #[test]
    fn redirects_never_downgrade_nor_carry_credentials_elsewhere() {
        let from = url("https://rt.example/REST/1.0/NoAuth/mail-gateway");
        let only_none = OtherHosts::Only(vec![]);
        let same = url("https://rt.example/rt/REST/1.0/NoAuth/mail-gateway");
        assert_eq!(check_redirect(&from, &same, true, &only_none), Ok(()));
        assert!(matches!(
            check_redirect(&from, &url("http://rt.example/x"), false, &OtherHosts::Any),
            Err(RedirectRefused::Downgrade { .. })
        ));
        let other = url("https://rt2.example/x");
        assert!(matches!(
            check_redirect(&from, &other, true, &OtherHosts::Any),
            Err(RedirectRefused::CredentialsToOtherHost { .. })
        ));
        assert!(matches!(
            check_redirect(&from, &url("https://u:p@rt2.example/x"), false, &OtherHosts::Any),
            Err(RedirectRefused::CredentialsToOtherHost { .. })
        ));
        assert!(matches!(
            check_redirect(&from, &other, false, &only_none),
            Err(RedirectRefused::OtherHost { .. })
        ));
        assert_eq!(check_redirect(&from, &other, false, &OtherHosts::Any), Ok(()));
        let allowed = OtherHosts::Only(vec!["rt2.example".into()]);
        assert_eq!(check_redirect(&from, &other, false, &allowed), Ok(()));
        // Another port is another place.
        assert!(check_redirect(&from, &url("https://rt.example:8443/x"), true, &OtherHosts::Any).is_err());
        // http to https on the same host is an upgrade, and fine.
        let plain = url("http://rt.example/x");
        assert_eq!(
            check_redirect(&plain, &url("https://rt.example/x"), true, &only_none),
            Ok(())
        );
    }
}
