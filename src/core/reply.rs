//! What RT's answer means. RT's mail gateway answers HTTP 200 with a text body:
//! `ok` (delivered), `not ok - reason` (refused for good; RT has mailed the sender
//! where it could) or `temporary failure - reason`. Anything else, and any transport
//! or HTTP failure, means "try again later" to the Perl client (exit 75).

/// The answer to one post, as far as it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtAnswer {
    /// `ok`: the mail is in RT.
    Ok(OkDetails),
    /// `not ok - ...`: RT refused the mail for good.
    NotOk {
        /// RT's reason (`operation unsuccessful` unless RT runs in DevelMode).
        reason: String,
        /// The whole answer as RT wrote it (lossy UTF-8), for the admin.
        body: String,
    },
    /// `temporary failure - ...`: RT asks for a retry (also said for an unknown queue
    /// or an action no mail plugin handles, which no retry can fix).
    TemporaryFailure {
        /// RT's reason.
        reason: String,
        /// The whole answer as RT wrote it (lossy UTF-8), for the admin.
        body: String,
    },
    /// A 2xx answer that is none of the above (a proxy's page, a half-installed RT).
    Unexpected {
        /// The body as text (lossy), for the log and the admin.
        body: String,
    },
    /// A non-2xx status (500, 413 from a body-size limit, a redirect loop...).
    HttpError {
        /// The HTTP status code.
        status: u16,
        /// The status line as `CODE Reason`, with the server's own reason phrase.
        status_line: String,
    },
}

/// The DevelMode lines of an `ok` answer (`Ticket: 5`...); absent in production.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OkDetails {
    /// The whole answer as RT wrote it (lossy UTF-8), for `--debug`.
    pub body: String,
    /// `Ticket:` — the ticket the mail landed on.
    pub ticket: Option<u64>,
    /// `Queue:`.
    pub queue: Option<String>,
    /// `Status:`.
    pub status: Option<String>,
}

/// The three things that can become of a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// RT took the mail.
    Delivered,
    /// RT refused it for good; retrying changes nothing.
    Rejected,
    /// Not delivered; retrying later may succeed.
    Retry,
}

/// How a post failed before RT could answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportFailure {
    /// Connection refused, DNS failure, unreachable host.
    #[error("Can't connect to {0}")]
    Connect(String),
    /// No byte moved for the configured timeout.
    #[error("timeout: {0}")]
    Timeout(String),
    /// The TLS handshake or certificate check failed.
    #[error("TLS failure: {0}")]
    Tls(String),
    /// The connection broke mid-request.
    #[error("connection failed: {0}")]
    Broken(String),
    /// RT (or its proxy) redirected where a post may not follow (see
    /// [`crate::core::url_policy`]).
    #[error("{0}")]
    RedirectRefused(String),
    /// The message could not be read back from the spool.
    #[error("couldn't read message: {0}")]
    Spool(String),
}

impl TransportFailure {
    /// Every transport failure is worth a retry: the mail never reached RT whole.
    pub fn verdict(&self) -> Verdict {
        Verdict::Retry
    }
}

/// Classifies an HTTP answer from RT's mail gateway.
pub fn classify(status: u16, status_line: &str, body: &[u8]) -> RtAnswer {
    if !(200..300).contains(&status) {
        return RtAnswer::HttpError {
            status,
            status_line: status_line.to_string(),
        };
    }
    let text = String::from_utf8_lossy(body);
    // A prefix match, as the Perl client does: RT 4.0 answered `okTicket: 5...`.
    if let Some(rest) = text.strip_prefix("not ok") {
        RtAnswer::NotOk {
            reason: reason_after_dash(rest),
            body: text.to_string(),
        }
    } else if let Some(rest) = text.strip_prefix("ok") {
        RtAnswer::Ok(OkDetails {
            body: text.to_string(),
            ..parse_ok_details(rest)
        })
    } else if let Some(rest) = text.strip_prefix("temporary failure") {
        RtAnswer::TemporaryFailure {
            reason: reason_after_dash(rest),
            body: text.to_string(),
        }
    } else {
        RtAnswer::Unexpected {
            body: text.into_owned(),
        }
    }
}

impl RtAnswer {
    /// Delivered, rejected or retry, as the Perl client decides it.
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::Ok(_) => Verdict::Delivered,
            Self::NotOk { .. } => Verdict::Rejected,
            Self::TemporaryFailure { .. } | Self::Unexpected { .. } | Self::HttpError { .. } => Verdict::Retry,
        }
    }

    /// The answer as the server wrote it: RT's whole body, or the HTTP status line
    /// (what the Perl client prints for `--debug` and in its error messages).
    pub fn as_written(&self) -> &str {
        match self {
            Self::Ok(OkDetails { body, .. })
            | Self::NotOk { body, .. }
            | Self::TemporaryFailure { body, .. }
            | Self::Unexpected { body } => body,
            Self::HttpError { status_line, .. } => status_line,
        }
    }

    /// A one-line summary for logs.
    pub fn summary(&self) -> String {
        match self {
            Self::Ok(d) => match d.ticket {
                Some(t) => format!("ok (ticket {t})"),
                None => "ok".to_string(),
            },
            Self::NotOk { reason, .. } => format!("not ok - {reason}"),
            Self::TemporaryFailure { reason, .. } => format!("temporary failure - {reason}"),
            Self::Unexpected { body } => format!("unexpected reply: {}", first_line(body)),
            Self::HttpError { status_line, .. } => format!("HTTP {status_line}"),
        }
    }
}

fn reason_after_dash(rest: &str) -> String {
    let line = first_line(rest).trim();
    line.strip_prefix('-').unwrap_or(line).trim().to_string()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn parse_ok_details(rest: &str) -> OkDetails {
    let mut details = OkDetails::default();
    // RT 4.0 glued the fields together without newlines; split on the known labels.
    for line in rest.lines() {
        for (label, value) in split_labels(line) {
            match label {
                "Ticket" => details.ticket = value.parse().ok(),
                "Queue" => details.queue = Some(value.to_string()),
                "Status" => details.status = Some(value.to_string()),
                _ => {}
            }
        }
    }
    details
}

const LABELS: [&str; 6] = ["Ticket:", "Queue:", "Owner:", "Status:", "Subject:", "Requestor:"];

/// `Ticket: 5Queue: bugs` or `Ticket: 5` into (`Ticket`, `5`), (`Queue`, `bugs`).
fn split_labels(line: &str) -> Vec<(&str, &str)> {
    let mut starts: Vec<(usize, &str)> = LABELS.iter().flat_map(|label| line.match_indices(label)).collect();
    starts.sort_unstable();
    starts
        .iter()
        .enumerate()
        .map(|(n, &(at, label))| {
            let end = starts.get(n + 1).map_or(line.len(), |&(next, _)| next);
            (&label[..label.len() - 1], line[at + label.len()..end].trim())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_is_delivered_and_devel_lines_are_read() {
        let a = classify(
            200,
            "200 OK",
            b"ok\nTicket: 12\nQueue: bugs\nOwner: Nobody\nStatus: new\n",
        );
        assert_eq!(a.verdict(), Verdict::Delivered);
        let RtAnswer::Ok(d) = a else { panic!("not ok: {a:?}") };
        assert_eq!(
            (d.ticket, d.queue.as_deref(), d.status.as_deref()),
            (Some(12), Some("bugs"), Some("new"))
        );
        assert_eq!(
            classify(200, "200 OK", b"ok\n"),
            RtAnswer::Ok(OkDetails {
                body: "ok\n".into(),
                ..OkDetails::default()
            })
        );
    }

    #[test]
    fn rt4_glued_ok_is_understood() {
        let RtAnswer::Ok(d) = classify(200, "200 OK", b"okTicket: 5Queue: GeneralOwner: NobodyStatus: new") else {
            panic!()
        };
        assert_eq!((d.ticket, d.queue.as_deref()), (Some(5), Some("General")));
    }

    #[test]
    fn not_ok_is_rejected_for_good() {
        let a = classify(200, "200 OK", b"not ok - operation unsuccessful\n");
        assert_eq!(
            a,
            RtAnswer::NotOk {
                reason: "operation unsuccessful".into(),
                body: "not ok - operation unsuccessful\n".into()
            }
        );
        assert_eq!(a.verdict(), Verdict::Rejected);
    }

    #[test]
    fn temporary_failure_garbage_and_http_errors_are_retried() {
        let a = classify(200, "200 OK", b"temporary failure - operation unsuccessful\n");
        assert_eq!(
            a,
            RtAnswer::TemporaryFailure {
                reason: "operation unsuccessful".into(),
                body: "temporary failure - operation unsuccessful\n".into()
            }
        );
        assert_eq!(a.verdict(), Verdict::Retry);
        let a = classify(200, "200 OK", b"<html>Bad Gateway</html>");
        assert!(matches!(a, RtAnswer::Unexpected { .. }));
        assert_eq!(a.verdict(), Verdict::Retry);
        assert_eq!(classify(200, "200 OK", b"").verdict(), Verdict::Retry);
        let a = classify(413, "413 Request Entity Too Large", b"ok");
        assert_eq!(a.verdict(), Verdict::Retry);
        assert_eq!(a.summary(), "HTTP 413 Request Entity Too Large");
    }

    #[test]
    fn ok_is_a_prefix_match_like_perl() {
        // `^(ok|not ok)` in Perl: leading whitespace is not ok.
        assert_eq!(classify(200, "200 OK", b" ok").verdict(), Verdict::Retry);
    }

    #[test]
    fn the_answer_is_kept_as_written() {
        let body = "temporary failure - Could not load a valid queue\nfrom RT's log: queue 'nope'\n";
        let a = classify(200, "200 OK", body.as_bytes());
        assert_eq!(a.as_written(), body);
        assert_eq!(a.summary(), "temporary failure - Could not load a valid queue");
        let a = classify(503, "503 Backend Asleep", b"<html>");
        assert_eq!(a.as_written(), "503 Backend Asleep");
    }
}
