//! The drop-in `rt-mailgate` command: options as the Perl client reads them, the mail
//! from stdin, one post to RT, and the Perl client's exit status:
//!
//! | outcome                                            | exit |
//! |----------------------------------------------------|------|
//! | RT answered `ok` or `not ok` (refused for good)    | 0    |
//! | stdin held nothing but whitespace                  | 0    |
//! | `--help`, or no `--url`                            | 1    |
//! | any other answer, HTTP error, timeout, no connection, unreadable stdin | 75 (EX_TEMPFAIL: the MTA keeps the mail and retries) |

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncRead;

use crate::core::getopt::{parse_args, CliOptions};
use crate::core::reply::{RtAnswer, Verdict};
use crate::core::request::MailgateArgs;
use crate::rt::http::{HttpGateway, HttpGatewayConfig, TlsPolicy, DEFAULT_TIMEOUT_SECS};
use crate::rt::MailGateway;
use crate::spool::{LineEndings, Spool};

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
    /// The arguments after `$0`.
    pub args: Vec<String>,
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
    let parsed = parse_args(invocation.args);
    for warning in &parsed.warnings {
        let _ = writeln!(stderr, "{warning}");
    }
    let options = parsed.options;
    if options.help {
        let _ = stdout.write_all(MANUAL.as_bytes());
        return EX_USAGE_FAIL; // never "succeed" when this may really be an email
    }
    let Some(url) = options.url.clone().filter(|u| !u.is_empty()) else {
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

    let gateway = match HttpGateway::new(&gateway_config(url, &options)) {
        Ok(gateway) => gateway,
        Err(e) => {
            // Tempfail, not bounce: the mail waits in the MTA's queue while the alias is fixed.
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
        let _ = writeln!(stderr, "{program}: temp file is '{}'", spool.path().display());
        let _ = writeln!(stderr, "{program}: connecting to {}", gateway.endpoint());
    }

    // The Perl client reports transport failures and non-2xx statuses alike.
    let answer = match gateway.post(&resolved.request, &spool).await {
        Err(failure) => Err(failure.to_string()),
        Ok(RtAnswer::HttpError { status_line, .. }) => Err(status_line),
        Ok(answer) => Ok(answer),
    };
    match answer {
        Err(failure) => {
            let _ = writeln!(
                stderr,
                "HTTP request failed: {failure}. Your webserver logs may have more information or there may be a network problem."
            );
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
                let _ = writeln!(stderr, "{}", answer_text(&answer));
            }
            match answer.verdict() {
                Verdict::Delivered => EX_OK,
                Verdict::Rejected => {
                    let _ = writeln!(
                        stderr,
                        "{program}: message <{message_id}> refused by RT: {}",
                        answer.summary()
                    );
                    EX_OK
                }
                Verdict::Retry => {
                    let _ = write!(
                        stderr,
                        "RT server error.\n\nThe RT server which handled your email did not behave as expected. It\nsaid:\n\n{}\n",
                        answer_text(&answer)
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

fn gateway_config(url: String, options: &CliOptions) -> HttpGatewayConfig {
    let tls = match (options.verify_ssl, &options.ca_file) {
        (Some(false), _) => TlsPolicy::NoVerify,
        (_, Some(path)) if !path.is_empty() => TlsPolicy::CaFile(PathBuf::from(path)),
        _ => TlsPolicy::SystemRoots,
    };
    // LWP reads a timeout of 0 (or less) as "no limit".
    let timeout = match options.timeout {
        None => Some(Duration::from_secs(DEFAULT_TIMEOUT_SECS)),
        Some(secs) if secs > 0 => Some(Duration::from_secs(secs as u64)),
        Some(_) => None,
    };
    HttpGatewayConfig {
        base_url: url,
        timeout,
        tls,
        user_agent: USER_AGENT.to_string(),
    }
}

/// RT's reply as the Perl client prints it (the body as RT sent it).
fn answer_text(answer: &RtAnswer) -> String {
    match answer {
        RtAnswer::Ok(_) => "ok".to_string(),
        RtAnswer::NotOk { reason } => format!("not ok - {reason}"),
        RtAnswer::TemporaryFailure { reason } => format!("temporary failure - {reason}"),
        RtAnswer::Unexpected { body } => body.clone(),
        RtAnswer::HttpError { status_line, .. } => status_line.clone(),
    }
}

/// `rt-mailgate --help`.
pub const MANUAL: &str = include_str!("../docs/rt-mailgate.txt");
