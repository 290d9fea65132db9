//! The drop-in `rt-mailgate` command: options as the Perl client reads them, the mail
//! from stdin, one post to RT, and the Perl client's exit status:
//!
//! | outcome                                            | exit |
//! |----------------------------------------------------|------|
//! | RT answered `ok` or `not ok` (refused for good)    | 0    |
//! | stdin held nothing but whitespace                  | 0    |
//! | `--help`, or no `--url`                            | 1    |
//! | any other answer, HTTP error, timeout, no connection, unreadable stdin | 75 (EX_TEMPFAIL: the MTA keeps the mail and retries) |

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncRead;

use crate::core::credentials::Credentials;
use crate::core::getopt::{parse_args_with, CliOptions, Conventions};
use crate::core::reply::{RtAnswer, Verdict};
use crate::core::request::MailgateArgs;
use crate::core::threading::{
    decide_mail, unchecked_target, AsIs, ResolvedRule, RtIdentity, ThreadTarget, MAX_BOUNCE_SCAN,
};
use crate::core::url_policy::{redact, OtherHosts};
use crate::rt::http::{lwp_status_line, HttpGateway, HttpGatewayConfig, TlsPolicy, DEFAULT_TIMEOUT_SECS};
use crate::rt::lookup::{ask_thread_target, LookupSetupError, Rest2Lookup};
use crate::rt::MailGateway;
use crate::spool::{LineEndings, Location, Spool};

/// Delivered, refused for good, or nothing to do.
pub const EX_OK: i32 = 0;
/// A permanent usage error (`--help`, no `--url`): the MTA bounces rather than loses.
pub const EX_USAGE_FAIL: i32 = 1;
/// EX_TEMPFAIL: the MTA keeps the mail and tries again later.
pub const EX_TEMPFAIL: i32 = 75;

/// The `User-Agent` sent to RT (the Perl client sends `rt-mailgate/VERSION `).
pub const USER_AGENT: &str = concat!("rt-mailgate/", env!("CARGO_PKG_VERSION"), " (rust)");

/// What the process was started with.
pub struct Invocation<R> {
    /// `$0`, for messages.
    pub program: String,
    /// The arguments after `$0`, as bytes (an argument need not be UTF-8).
    pub args: Vec<Vec<u8>>,
    /// Whether `POSIXLY_CORRECT` is set (Getopt::Long then parses more strictly).
    pub posixly_correct: bool,
    /// `$EXTENSION` from the environment, as bytes.
    pub extension: Option<Vec<u8>>,
    /// The mail.
    pub stdin: R,
}

/// Runs one `rt-mailgate` invocation; returns the exit status.
pub async fn run<R: AsyncRead + Unpin>(
    invocation: Invocation<R>,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> i32 {
    let program = invocation.program.as_str();
    let conventions = if invocation.posixly_correct {
        Conventions::Posix
    } else {
        Conventions::Gnu
    };
    let parsed = parse_args_with(invocation.args, conventions);
    for warning in &parsed.warnings {
        let _ = writeln!(stderr, "{warning}");
    }
    let options = parsed.options;
    if options.help {
        let _ = stdout.write_all(MANUAL.as_bytes());
        let _ = writeln!(stdout, "\nVERSION\n    {VERSION}");
        return EX_USAGE_FAIL; // never "succeed" when this may really be an email
    }
    let Some(url) = options.url.as_deref().filter(|u| !u.is_empty()) else {
        let _ = writeln!(
            stderr,
            "{program} invoked improperly\n\nNo 'url' provided to mail gateway!"
        );
        return EX_USAGE_FAIL;
    };

    let resolved = MailgateArgs {
        queue: options.queue.clone(),
        action: options.action.clone(),
        extension: options.extension.clone(),
    }
    .resolve(invocation.extension.as_deref());
    if let Some(warning) = &resolved.warning {
        let _ = writeln!(stderr, "{warning}");
    }

    // A URL that is not UTF-8 can't be valid; HttpGateway names it (lossily) as bad.
    let url = String::from_utf8_lossy(url).into_owned();
    let credentials = match options.secret_file.as_deref().map(read_secret_file).transpose() {
        Ok(credentials) => credentials.unwrap_or_default(),
        Err(e) => {
            let _ = writeln!(stderr, "{program}: {e}");
            return EX_TEMPFAIL;
        }
    };
    let config = gateway_config(url, &options, credentials);
    let gateway = match HttpGateway::new(&config) {
        Ok(gateway) => gateway,
        Err(e) => {
            // Tempfail, not bounce: the mail waits in the MTA's queue while the alias is fixed.
            let _ = writeln!(stderr, "{program}: {e}");
            return EX_TEMPFAIL;
        }
    };
    let threading = match threading(&options, &config) {
        Ok(threading) => threading,
        Err(e) => {
            let _ = writeln!(stderr, "{program}: {e}");
            return EX_TEMPFAIL;
        }
    };

    let spool = match Spool::from_reader(invocation.stdin, LineEndings::Keep).await {
        Ok(spool) => spool,
        Err(e) => {
            let _ = writeln!(stderr, "{program}: {e}");
            return EX_TEMPFAIL;
        }
    };
    if spool.location() == Location::Memory {
        // The Perl client's words, whatever --debug says: the admin should fix TMPDIR.
        let _ = writeln!(stderr, "{program}: Couldn't create temp file, using memory");
    }
    if spool.is_blank() {
        let _ = writeln!(stderr, "{program}: no message passed on STDIN");
        return EX_OK;
    }
    let message_id = spool
        .summary()
        .message_id
        .clone()
        .unwrap_or_else(|| "(none)".to_string());
    if options.debug {
        let _ = writeln!(stderr, "{program}: {VERSION}");
        if let Location::File(path) = spool.location() {
            let _ = writeln!(stderr, "{program}: temp file is '{}'", path.display());
        }
        let _ = writeln!(stderr, "{program}: connecting to {}", redact(gateway.endpoint()));
    }

    // Threading (ours, only with --rt-organization): the ticket RT's markers name,
    // checked with RT first; never over a ticket the extension names.
    let mut request = resolved.request;
    if let (Some((rt, lookup)), None) = (&threading, &request.ticket) {
        let target = match spool.head(MAX_BOUNCE_SCAN).await {
            Ok(head) => {
                let decision = decide_mail(&head, rt);
                match unchecked_target(&decision) {
                    Ok(target) => target,
                    Err(ask) => {
                        let (target, why) =
                            ask_thread_target(lookup, &request, &decision, ask, ResolvedRule::OFF).await;
                        if let Some(why) = why {
                            let _ = writeln!(
                                stderr,
                                "{program}: threading: RT could not say where the mail belongs, posted as without threading: {why}"
                            );
                        }
                        target
                    }
                }
            }
            Err(e) => {
                let _ = writeln!(stderr, "{program}: threading: the mail can't be read again: {e}");
                ThreadTarget::AsIs(AsIs::Unchecked)
            }
        };
        if options.debug {
            let _ = writeln!(stderr, "{program}: threading: {}", target.to_text());
        }
        target.apply(&mut request);
    }

    // The Perl client reports transport failures and non-2xx statuses alike, a
    // transport failure in LWP's words (`500 Can't connect to HOST:PORT (reason)`, the
    // line MTAs quote); ours adds a line of its own where it knows more.
    let answer = match gateway.post(&request, &spool).await {
        Err(failure) => {
            let line = lwp_status_line(&failure);
            let ours = failure.to_string();
            let more = (!line.contains(&ours)).then_some(ours);
            Err((line, more))
        }
        Ok(RtAnswer::HttpError { status_line, .. }) => Err((status_line, None)),
        Ok(answer) => Ok(answer),
    };
    match answer {
        Err((failure, more)) => {
            let _ = writeln!(
                stderr,
                "HTTP request failed: {failure}. Your webserver logs may have more information or there may be a network problem."
            );
            if let Some(more) = more {
                let _ = writeln!(stderr, "{program}: {more}");
            }
            if options.debug {
                let _ = writeln!(stderr, "\n{program}: undefined server error");
            }
            let _ = writeln!(
                stderr,
                "{program}: message <{message_id}> not delivered; the MTA will retry"
            );
            EX_TEMPFAIL
        }
        Ok(answer) => {
            if options.debug {
                let _ = writeln!(stderr, "{}", answer.as_written());
            }
            match answer.verdict() {
                Verdict::Delivered => EX_OK,
                Verdict::Rejected => {
                    let _ = writeln!(
                        stderr,
                        "{program}: message <{message_id}> refused by RT: {}",
                        answer.as_written().trim_end()
                    );
                    EX_OK
                }
                Verdict::Retry => {
                    let _ = write!(
                        stderr,
                        "RT server error.\n\nThe RT server which handled your email did not behave as expected. It\nsaid:\n\n{}\n",
                        answer.as_written()
                    );
                    let _ = writeln!(
                        stderr,
                        "{program}: message <{message_id}> not delivered; the MTA will retry"
                    );
                    EX_TEMPFAIL
                }
            }
        }
    }
}

/// `--rt-organization` (and `--rt-name`): RT's identity and a REST 2 lookup as the
/// `--secret-file`'s RT login, or `None` without the option. Each ticket a mail names is
/// checked before it is posted to, so without an RT login there is no threading at all:
/// an error, never a post to an unchecked ticket.
fn threading(options: &CliOptions, config: &HttpGatewayConfig) -> Result<Option<(RtIdentity, Rest2Lookup)>, String> {
    let Some(organization) = options.rt_organization.as_deref().filter(|o| !o.is_empty()) else {
        return Ok(None);
    };
    let text = |v: &[u8]| String::from_utf8_lossy(v).trim().to_string();
    let rt = RtIdentity {
        organization: text(organization),
        rtname: options.rt_name.as_deref().map(text).unwrap_or_default(),
        ..RtIdentity::default()
    };
    let lookup = Rest2Lookup::new(config, None, LOOKUP_TIMEOUT).map_err(|e| match e {
        LookupSetupError::NoRtLogin => "--rt-organization checks each ticket a reply names with RT's REST 2 API, \
             which needs an RT login: put rt_token (or rt_username and rt_password) in --secret-file"
            .to_string(),
        other => format!("--rt-organization: {other}"),
    })?;
    Ok(Some((rt, lookup)))
}

/// How long threading's questions to RT may take in all, per question.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `--secret-file`: the same JSON as the function's secret. Errors name the file and the
/// key, never a value.
fn read_secret_file(path: &[u8]) -> Result<Credentials, String> {
    let path = PathBuf::from(OsStr::from_bytes(path));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--secret-file {}: {e}", path.display()))?;
    Credentials::from_json(&text).map_err(|e| format!("--secret-file {}: {e}", path.display()))
}

fn gateway_config(url: String, options: &CliOptions, credentials: Credentials) -> HttpGatewayConfig {
    let tls = match (options.verify_ssl, &options.ca_file) {
        (Some(false), _) => TlsPolicy::NoVerify,
        (_, Some(path)) if !path.is_empty() => TlsPolicy::CaFile(PathBuf::from(OsStr::from_bytes(path))),
        _ => TlsPolicy::SystemRoots,
    };
    // LWP reads a timeout of 0 as "no limit", and a negative one as "give up as soon as
    // anything must be waited for" (the mail stays with the MTA: exit 75).
    let timeout = match options.timeout {
        None => Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
        Some(0) => None,
        Some(secs) => Some(Duration::from_secs(secs.max(0) as u64)),
    };
    HttpGatewayConfig {
        base_url: url,
        timeout,
        tls,
        user_agent: USER_AGENT.to_string(),
        credentials,
        // The Perl client follows a redirect anywhere; we do too, but never with
        // credentials to another host, nor from https to http.
        other_hosts: OtherHosts::Any,
    }
}

/// The version `--help` and `--debug` print (the Perl client has no `--version`, and an
/// unknown option must stay a warning, so the drop-in adds none).
pub const VERSION: &str = concat!("rt-mailgate ", env!("CARGO_PKG_VERSION"), " (Rust)");

/// `rt-mailgate --help` (followed by [`VERSION`]).
pub const MANUAL: &str = include_str!("../docs/rt-mailgate.txt");

#[cfg(test)]
mod tests {
    use super::*;

    /// The CHANGELOG's `## ` headings, in order.
    fn changelog_versions() -> Vec<&'static str> {
        include_str!("../CHANGELOG.md")
            .lines()
            .filter_map(|l| l.strip_prefix("## "))
            .collect()
    }

    #[test]
    fn the_changelogs_top_entry_is_the_released_version_the_binaries_print() {
        let versions = changelog_versions();
        let top = versions.first().expect("CHANGELOG.md has a version entry");
        let version = env!("CARGO_PKG_VERSION");
        // `## 0.2.0` or `## 0.2.0 (2026-12-06)`: a version, never "Unreleased".
        let (number, date) = top.split_once(' ').unwrap_or((top, ""));
        assert_eq!(
            number, version,
            "CHANGELOG's top entry `{top}` vs Cargo.toml's {version}"
        );
        assert!(
            date.is_empty() || (date.starts_with('(') && date.ends_with(')')),
            "`{top}`: a date in parentheses, if any"
        );
        assert!(
            !versions.iter().any(|v| v.to_ascii_lowercase().contains("unreleased")),
            "{versions:?}"
        );
        assert!(VERSION.contains(version) && USER_AGENT.contains(version));
        // Each version once, newest first.
        let numbers: Vec<Vec<u64>> = versions
            .iter()
            .map(|v| {
                let number = v.split(' ').next().unwrap_or_default();
                number
                    .split('.')
                    .map(|n| n.parse().unwrap_or_else(|_| panic!("`{v}` is not a version")))
                    .collect()
            })
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] > w[1]), "{versions:?}");
    }
}
