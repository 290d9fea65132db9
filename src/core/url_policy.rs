//! Which RT URLs and which redirects are safe to post a mail (and credentials) to.
//!
//! - Plain `http://` carries the mail and any credential in clear text: the function
//!   refuses it at cold start for a host that is not this machine, unless allowed
//!   (`RT_ALLOW_HTTP=true`, e.g. a private address inside the VPC).
//! - A redirect never goes from `https` to `http`; never to another host while the post
//!   carries credentials (a header, basic auth, a client certificate, URL userinfo); and
//!   to another host at all only when that host is allowed. The drop-in CLI allows any
//!   other host, as the Perl client does, when it sends no credentials.
//! - A loopback URL (`localhost`, `127.0.0.1`, `[::1]`, `0.0.0.0`) is, inside Lambda,
//!   the function itself, never RT: refused there ([`UrlRules::loopback_is_rt`] false),
//!   and by the admin's tools, which describe the deployed function. Only a function run
//!   outside Lambda (the tests, `scripts/lambda-local`, a replay on RT's own host) may
//!   post to RT on loopback.
//! - One rule, [`check_rt_url`], for every URL that names an RT: `RT_URL`, `RT_API_URL`
//!   and each route's own `--url`, at cold start, in `rt-mailgate-routes explain` and in
//!   the aliases import alike, so what the function would refuse is never explained or
//!   printed as fine.
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
    #[error("RT URL {url} is plain http:// to another machine: mail and credentials would cross the network unencrypted; use https://, or set RT_ALLOW_HTTP=true (the template's AllowPlainHttp) for a private network")]
    PlainHttp {
        /// The URL, redacted.
        url: String,
    },
    /// Loopback (`localhost`, `127.0.0.1`, ...) where the function runs in Lambda.
    #[error("RT URL {url} is this machine (localhost/loopback): in Lambda that is the function itself, never RT; use the URL of RT's front door as Lambda reaches it")]
    Loopback {
        /// The URL, redacted.
        url: String,
    },
}

/// The exceptions [`check_rt_url`] makes, the same for every URL that names an RT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlRules {
    /// Plain `http://` to another machine is allowed (`RT_ALLOW_HTTP`, `AllowPlainHttp`).
    pub allow_plain_http: bool,
    /// A loopback URL can be RT: true only for a function run outside Lambda (see
    /// [`runs_in_lambda`]); the admin's tools, which describe the deployed function,
    /// say false.
    pub loopback_is_rt: bool,
}

impl UrlRules {
    /// The rules of the deployed function: loopback refused, plain http as allowed.
    pub fn deployed(allow_plain_http: bool) -> Self {
        Self {
            allow_plain_http,
            loopback_is_rt: false,
        }
    }
}

/// Lambda's reserved variables that only its sandbox (or SAM's emulation of it) sets:
/// `LAMBDA_TASK_ROOT` (Lambda: where the function's code is) and `AWS_SAM_LOCAL`
/// (`sam local`). Neither is a setting of this function; a function run directly (the
/// tests, `scripts/lambda-local`) has neither.
const SANDBOX_VARIABLES: [&str; 2] = ["LAMBDA_TASK_ROOT", "AWS_SAM_LOCAL"];

/// Whether the process runs in Lambda's sandbox (or `sam local`'s container), where
/// loopback is the function itself. `var` reads the environment.
pub fn runs_in_lambda(var: impl Fn(&str) -> Option<String>) -> bool {
    SANDBOX_VARIABLES
        .iter()
        .any(|name| var(name).is_some_and(|v| !v.trim().is_empty()))
}

/// The one rule for a URL that names an RT (`RT_URL`, `RT_API_URL`, a route's
/// `--url`): never loopback where that is not RT, never plain http to another machine
/// unless allowed.
pub fn check_rt_url(url: &Url, rules: UrlRules) -> Result<(), UrlRefused> {
    if is_this_machine(url) && !rules.loopback_is_rt {
        return Err(UrlRefused::Loopback { url: redact(url) });
    }
    check_plain_http(url, rules.allow_plain_http)
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

/// `localhost` (and `*.localhost`, RFC 6761), a loopback address, or the unspecified
/// address (which Linux connects to this machine).
fn is_this_machine(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_unspecified())
        }
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
    fn loopback_is_rt_only_outside_lambda() {
        let deployed = UrlRules::deployed(true);
        let local = UrlRules {
            allow_plain_http: false,
            loopback_is_rt: true,
        };
        for this_machine in [
            "http://localhost:8080/rt",
            "https://LOCALHOST./",
            "https://rt.localhost",
            "http://127.0.0.1:8089",
            "http://127.1.2.3",
            "http://0.0.0.0:80",
            "https://[::1]:8443",
            "http://[::ffff:127.0.0.1]/",
            "http://[::]/",
        ] {
            let err = check_rt_url(&url(this_machine), deployed).unwrap_err();
            assert!(matches!(err, UrlRefused::Loopback { .. }), "{this_machine}");
            assert!(err.to_string().contains("the function itself"), "{err}");
            assert_eq!(check_rt_url(&url(this_machine), local), Ok(()), "{this_machine}");
        }
        // Everything else follows the plain-http rule, in Lambda or not.
        for rules in [deployed, local] {
            assert_eq!(check_rt_url(&url("https://rt.example/rt"), rules), Ok(()));
            assert_eq!(check_rt_url(&url("https://10.0.0.5"), rules), Ok(()));
        }
        assert_eq!(check_rt_url(&url("http://10.0.0.5/"), deployed), Ok(()));
        let err = check_rt_url(&url("http://u:hush@rt.internal/"), local).unwrap_err();
        assert!(matches!(err, UrlRefused::PlainHttp { .. }) && !err.to_string().contains("hush"));
        assert!(err.to_string().contains("AllowPlainHttp"), "{err}");
    }

    #[test]
    fn lambdas_sandbox_is_told_by_its_reserved_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        assert!(runs_in_lambda(env(&[("LAMBDA_TASK_ROOT", "/var/task")])));
        assert!(runs_in_lambda(env(&[("AWS_SAM_LOCAL", "true")])));
        // What the tests and scripts/lambda-local set: a direct run.
        assert!(!runs_in_lambda(env(&[
            ("AWS_LAMBDA_RUNTIME_API", "http://127.0.0.1:9001/.rt"),
            ("AWS_LAMBDA_FUNCTION_NAME", "_"),
            ("LAMBDA_TASK_ROOT", ""),
        ])));
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
