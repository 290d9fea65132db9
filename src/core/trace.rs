//! What a route record means to an operator: its state in words, the detail that
//! matters (RT's ticket, the reason of a give-up, until when RT may still be storing an
//! earlier attempt, who holds the lease), and what happens next in one sentence. Used by
//! `rt-mailgate-trace` (one mail's routes), by the replay's report (what to fix, per mail
//! and route) and by the smoke test. Pure: the records and the clock are given.

pub use crate::core::mail_index::bare_message_id;
use crate::core::mail_index::IndexedMail;
use crate::core::route_record::{RouteRecord, RouteState, Screened};
use crate::core::shell;

/// How a route stands, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteView {
    /// The record's state word (`delivered`, `refused`, `given-up`, `posting`, `unsure`, `free`).
    pub state: &'static str,
    /// The facts: ticket and transaction, reason, times.
    pub detail: String,
    /// What happens next, or what the operator should do, in a sentence.
    pub next: String,
    /// True when RT took the mail or refused it for good: nothing left to do.
    pub done: bool,
}

/// An epoch-milliseconds time as UTC (`2026-12-02T05:30:00Z`).
pub fn utc(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// What an attempt's case asks the operator to fix when the route stays broken.
pub fn fix_for(case: &str) -> &'static str {
    match case {
        "ConnectFailed" | "ServerError" | "Timeout" | "ConnectionBroken" | "HttpError" => {
            "RT (or its proxy) was unreachable, slow or failing: check RT_URL, the proxy and RT's own log"
        }
        "Unauthorized" => {
            "the proxy refused the function's credentials: check the secret (RT_SECRET_ID) against the proxy"
        }
        "TlsFailure" => "RT's certificate is not trusted or does not match RT_URL: fix the certificate or RT_CA_FILE",
        "RedirectRefused" => "RT_URL answers with a redirect: set RT_URL to where RT really is",
        "RtUnexpectedReply" => "RT_URL does not answer as RT's mail gateway: check RT_URL (and the proxy's paths)",
        "MailMissing" | "MailAccessDenied" | "MailStoreUnavailable" => {
            "the stored mail could not be read: check MAIL_PREFIX, the bucket and the function's IAM policy"
        }
        "DeadlineReached" | "LeaseHeld" => "nothing: the next attempt goes on where this one stopped",
        "RtTemporaryFailure" => {
            "RT has no such queue or action: fix the route (rt-mailgate-routes explain ADDRESS) or create the queue"
        }
        "PayloadTooLarge" => "raise the body size limit of the web server in front of RT",
        "MailTooLarge" => "raise MAX_MAIL_BYTES if the mail should go in",
        "VirusFound" | "SpamDropped" | "DmarcReject" => {
            "nothing, unless you judge the mail safe: rt-mailgate-replay --post-screened-mail posts it"
        }
        _ => "see the function's log lines for this mail",
    }
}

/// Reads a record at `now_ms`.
pub fn describe(record: &RouteRecord, now_ms: u64) -> RouteView {
    let case = record.case.as_deref().unwrap_or("");
    let replay = "then replay it (rt-mailgate-replay --message-id ID --recipient ADDRESS)";
    match record.state {
        RouteState::Delivered => {
            let mut detail = match record.ticket {
                Some(ticket) => format!("ticket {ticket}"),
                None if !record.delivery_id.is_empty() => format!(
                    "ticket not known (RT's answer did not name it; RT finds it by the header \
                     X-RT-Mailgate-Delivery: {})",
                    record.delivery_id
                ),
                None => "ticket not known".to_string(),
            };
            if let Some(transaction) = record.transaction {
                detail.push_str(&format!(", transaction {transaction}"));
            }
            if case == "FoundInRt" {
                detail.push_str(" (found in RT after an unclear answer)");
            }
            RouteView {
                state: record.state.word(),
                detail,
                next: "nothing: RT holds the mail".into(),
                done: true,
            }
        }
        // Rejected by an operator or expired unreleased (`rt-mailgate-held`): never posted.
        RouteState::Refused if crate::core::held::settled_by_operator(record).is_some() => RouteView {
            state: record.state.word(),
            detail: format!(
                "{} by rt-mailgate-held, never posted ({})",
                crate::core::held::settled_by_operator(record).unwrap_or_default(),
                record.reason.as_deref().unwrap_or("")
            ),
            next: "nothing: settled for good".into(),
            done: true,
        },
        RouteState::Refused => RouteView {
            state: record.state.word(),
            detail: "RT answered `not ok` (refused for good; RT told the sender where it could)".into(),
            next: "nothing, unless it should have gone in: RT's log says why it refused".into(),
            done: true,
        },
        RouteState::GivenUp => {
            let reason = record.reason.clone().unwrap_or_else(|| case.to_string());
            let next = match &record.screened {
                Screened::Dropped(_) => fix_for(if case.is_empty() { "VirusFound" } else { case }).to_string(),
                _ => format!("{}; {replay}", fix_for(case)),
            };
            RouteView {
                state: record.state.word(),
                detail: reason,
                next,
                done: false,
            }
        }
        RouteState::Posting if record.lease_holds(now_ms) => RouteView {
            state: record.state.word(),
            detail: format!(
                "an invocation ({}) is posting it; its lease runs until {}",
                record.holder,
                utc(record.lease_until_ms)
            ),
            next: "wait: it finishes, or Lambda's retry takes over once the lease runs out".into(),
            done: false,
        },
        RouteState::Posting => RouteView {
            state: record.state.word(),
            detail: format!(
                "its invocation ({}) stopped mid-post; the lease ran out at {}",
                record.holder,
                utc(record.lease_until_ms)
            ),
            next: "the next retry (or a replay) asks RT whether it holds the mail, and posts only if not".into(),
            done: false,
        },
        RouteState::Unsure => {
            let detail = if record.settle_until_ms > now_ms {
                format!(
                    "the last attempt ({case}) may have reached RT; RT may still store it until {}",
                    utc(record.settle_until_ms)
                )
            } else {
                format!("the last attempt ({case}) may have reached RT")
            };
            RouteView {
                state: record.state.word(),
                detail,
                next: format!(
                    "Lambda's retry (or a replay, once the event is dead-lettered) asks RT and posts only if RT \
                     does not hold it; if it keeps failing: {}",
                    fix_for(case)
                ),
                done: false,
            }
        }
        RouteState::Held => RouteView {
            state: record.state.word(),
            detail: record
                .reason
                .clone()
                .unwrap_or_else(|| "held (storm, loop or auto-reply)".into()),
            next: "nothing, if it should not go in (it expires); else release it \
                   (rt-mailgate-held release, or rt-mailgate-replay --release --message-id ID --recipient ADDRESS)"
                .into(),
            done: false,
        },
        RouteState::Free => RouteView {
            state: record.state.word(),
            detail: if case.is_empty() {
                "the last attempt did not reach RT".into()
            } else {
                format!("the last attempt ({case}) did not reach RT")
            },
            next: format!(
                "the retry posts at once; if the event is dead-lettered, {}; {replay}",
                fix_for(case)
            ),
            done: false,
        },
    }
}

/// Which records belong to the mail the operator asks about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailFilter {
    /// The `Message-ID` header (with or without angle brackets).
    pub message_id_header: Option<String>,
    /// The sender: the envelope sender, or (where the mail's index entry is read) an
    /// address of its `From` header; compared without case.
    pub sender: Option<String>,
    /// Records written at or after this time (epoch ms).
    pub since_ms: Option<u64>,
    /// Records written at or before this time (epoch ms).
    pub until_ms: Option<u64>,
    /// Only records with one of the recipients containing this (compared without case).
    pub recipient: Option<String>,
}

impl MailFilter {
    /// True when the record matches every given part.
    pub fn matches(&self, record: &RouteRecord) -> bool {
        let header_ok = self.message_id_header.as_deref().is_none_or(|wanted| {
            record
                .message_id
                .as_deref()
                .is_some_and(|have| bare_message_id(have) == bare_message_id(wanted))
        });
        let sender_ok = self
            .sender
            .as_deref()
            .is_none_or(|s| record.sender.eq_ignore_ascii_case(s.trim()));
        let recipient_ok = self.recipient.as_deref().is_none_or(|wanted| {
            let wanted = wanted.to_ascii_lowercase();
            record
                .recipients
                .iter()
                .any(|r| r.to_ascii_lowercase().contains(&wanted))
        });
        let since_ok = self.since_ms.is_none_or(|t| record.updated_ms >= t);
        let until_ok = self.until_ms.is_none_or(|t| record.updated_ms <= t);
        header_ok && sender_ok && recipient_ok && since_ok && until_ok
    }

    /// True when the mail an index entry describes matches every given part: the sender
    /// is its envelope sender or a From address; the times are its receipt time.
    pub fn matches_mail(&self, mail: &IndexedMail) -> bool {
        let header_ok = self.message_id_header.as_deref().is_none_or(|wanted| {
            mail.message_id
                .as_deref()
                .is_some_and(|have| bare_message_id(have) == bare_message_id(wanted))
        });
        let sender_ok = self.sender.as_deref().is_none_or(|s| mail.sent_by(s));
        let recipient_ok = self.recipient.as_deref().is_none_or(|wanted| {
            let wanted = wanted.to_ascii_lowercase();
            mail.recipients.iter().any(|r| r.to_ascii_lowercase().contains(&wanted))
        });
        // The index keeps the time to the second.
        let since_ok = self.since_ms.is_none_or(|t| mail.received_ms + 999 >= t);
        let until_ok = self.until_ms.is_none_or(|t| mail.received_ms <= t);
        header_ok && sender_ok && recipient_ok && since_ok && until_ok
    }
}

/// One route of one mail, as the trace prints it.
pub fn route_lines(ses_id: &str, record: &RouteRecord, now_ms: u64) -> String {
    let view = describe(record, now_ms);
    let recipients = record.recipients.join(", ");
    // The commands in `next`, with this mail's values quoted for a shell: a recipient
    // is a sender's choice.
    let next = match record.recipients.first() {
        Some(recipient) => view
            .next
            .replace(
                "--message-id ID --recipient ADDRESS",
                &format!(
                    "{} {}",
                    shell::option("--message-id", ses_id),
                    shell::option("--recipient", recipient)
                ),
            )
            .replace("explain ADDRESS", &format!("explain {}", shell::positional(recipient))),
        None => view
            .next
            .replace("--message-id ID", &shell::option("--message-id", ses_id)),
    };
    // The threading target the first post was made with (issue 22), when RT was asked.
    let thread = match &record.thread {
        Some(thread) => format!("    thread: {thread}\n"),
        None => String::new(),
    };
    format!(
        "  route {route} ({recipients}): {state}: {detail}\n{thread}    next: {next}\n",
        route = if record.route.is_empty() { "?" } else { &record.route },
        state = view.state,
        detail = view.detail,
    )
}

/// The head line of one mail in a trace.
pub fn mail_line(ses_id: &str, first: &RouteRecord) -> String {
    format!(
        "mail {ses_id}: from <{}>, Message-ID {}, last change {}\n",
        first.sender,
        first.message_id.as_deref().unwrap_or("(none)"),
        utc(first.updated_ms)
    )
}

/// The head line of one mail found through the trace's index: the envelope sender and
/// the From header's addresses (SES may have rewritten the first), the Message-ID, when
/// SES received it.
pub fn indexed_mail_line(mail: &IndexedMail) -> String {
    let from = if mail.from.is_empty() {
        String::new()
    } else {
        format!(" (From: {})", mail.from.join(", "))
    };
    format!(
        "mail {}: from <{}>{from}, Message-ID {}, received {}\n",
        mail.ses_id,
        mail.sender,
        mail.message_id.as_deref().unwrap_or("(none)"),
        utc(mail.received_ms)
    )
}

/// What the trace says of a mail the function got that has no route records.
pub fn no_routes_lines(mail: &IndexedMail) -> String {
    let mut text = format!(
        "  no route records for {}: no recipient was routed (the log says \"no route for this \
         recipient\"), or its delivery has not begun yet\n",
        mail.recipients.join(", ")
    );
    if let Some(recipient) = mail.recipients.first() {
        text.push_str(&format!(
            "    next: add a route (rt-mailgate-routes explain {}), then replay it (rt-mailgate-replay {} {})\n",
            shell::positional(recipient),
            shell::option("--message-id", &mail.ses_id),
            shell::option("--recipient", recipient),
        ));
    }
    text
}

/// What the trace says when a search stopped at its bound with more left: what it read,
/// that the rest was not searched, and how to go on (commands quoted for a shell).
/// `continue_with` is the command line that searches on from where this one stopped.
pub fn stopped_short_text(read: usize, bound_flag: &str, last_ms: Option<u64>, continue_with: Option<&str>) -> String {
    let mut text = match last_ms {
        Some(last) => format!(
            "The search STOPPED SHORT: it read {read} mails (the {bound_flag} bound), received up to {}; \
             later ones in the window were not searched, so a mail not shown may still have come.\n",
            utc(last)
        ),
        None => format!(
            "The search STOPPED SHORT: it read {read} records (the {bound_flag} bound) and there are more; \
             a mail not shown may be among the rest.\n"
        ),
    };
    match continue_with {
        Some(command) => text.push_str(&format!(
            "Narrow it with --since/--until, raise {bound_flag}, or go on from there:\n  {command}\n"
        )),
        None => text.push_str(&format!("Narrow it with --since/--until, or raise {bound_flag}.\n")),
    }
    text
}

/// A time given on the command line: RFC 3339 (`2026-12-01T15:00:00Z`) or an age before
/// `now_ms` (`90m`, `24h`, `2d`).
pub fn parse_time(text: &str, now_ms: u64) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis().max(0) as u64);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let unit_ms: u64 = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "{text:?}: give a time as 2026-12-01T15:00:00Z, or an age as 90m, 24h, 2d"
            ))
        }
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: give a time as 2026-12-01T15:00:00Z, or an age as 90m, 24h, 2d"))?;
    Ok(now_ms.saturating_sub(n.saturating_mul(unit_ms)))
}

/// The commands that show the function's log lines for these mails: CloudWatch Logs'
/// `filter-log-events` (prints the lines) per mail, and one Logs Insights query. The
/// window is widened by ten minutes each side (retries come minutes later).
pub fn log_commands(log_group: &str, ses_ids: &[String], since_ms: u64, until_ms: u64) -> String {
    let (start, end) = (since_ms.saturating_sub(600_000), until_ms + 600_000);
    // Pasted into a shell: only ids made of plain characters (SES's are).
    let plain = |id: &&String| {
        !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let ses_ids: Vec<String> = ses_ids.iter().filter(plain).cloned().collect();
    let ses_ids = &ses_ids;
    let mut text = String::new();
    for id in ses_ids {
        text.push_str(&format!(
            "  aws logs filter-log-events {group} --start-time {start} --end-time {end} \\\n    \
             --filter-pattern {pattern} --query 'events[].message' --output text\n",
            group = shell::option("--log-group-name", log_group),
            pattern = shell::quote(&format!("\"{id}\"")),
        ));
    }
    if !ses_ids.is_empty() {
        let ids = ses_ids
            .iter()
            .map(|id| format!("\"{id}\""))
            .collect::<Vec<_>>()
            .join(", ");
        text.push_str(&format!(
            "  Logs Insights on {log_group}:\n    fields @timestamp, level, fields.message, fields.outcome, fields.route, fields.rt, \
             fields.rt_ticket, spans.0.requestId\n    | filter span.message_id in [{ids}] or fields.message_id in [{ids}]\n    \
             | sort @timestamp asc\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: RouteState) -> RouteRecord {
        let mut r = RouteRecord::from_text(r#"{"state":"free"}"#).unwrap();
        r.state = state;
        r.route = "sales@example.com".into();
        r.recipients = vec!["sales@example.com".into()];
        r.sender = "alice@customer.example".into();
        r.message_id = Some("<m1@customer.example>".into());
        r.updated_ms = 1_000_000;
        r
    }

    #[test]
    fn a_route_rejected_or_expired_by_the_operator_says_so() {
        let r = crate::core::held::settle(
            &record(RouteState::Held),
            crate::core::held::EXPIRED,
            "held longer than 14 day(s)",
            2,
        );
        let view = describe(&r, 3);
        assert!(view.done);
        assert_eq!(
            view.detail,
            "expired by rt-mailgate-held, never posted (held longer than 14 day(s))"
        );
        assert!(!describe(&record(RouteState::Refused), 0)
            .detail
            .contains("rt-mailgate-held"));
    }

    #[test]
    fn a_delivered_route_names_its_ticket_and_transaction() {
        let mut r = record(RouteState::Delivered);
        r.ticket = Some(42);
        r.transaction = Some(420);
        let view = describe(&r, 0);
        assert!(view.done);
        assert_eq!(view.detail, "ticket 42, transaction 420");
    }

    #[test]
    fn a_threaded_route_says_how_its_ticket_was_chosen() {
        let mut r = record(RouteState::Delivered);
        assert!(!route_lines("ses-1", &r, 0).contains("thread:"));
        r.thread = Some("bounce:42".into());
        let text = route_lines("ses-1", &r, 0);
        assert!(text.contains("\n    thread: bounce:42\n    next: "), "{text}");
    }

    #[test]
    fn a_given_up_route_says_why_and_how_to_get_it_in() {
        let mut r = record(RouteState::GivenUp);
        r.case = Some("RtTemporaryFailure".into());
        r.reason = Some("RT has no such queue or action for route sales@example.com".into());
        let view = describe(&r, 0);
        assert!(!view.done);
        assert!(view.detail.contains("no such queue"));
        assert!(view.next.contains("create the queue") && view.next.contains("rt-mailgate-replay"));
        let text = route_lines("ses-1", &r, 0);
        assert!(
            text.contains("--message-id ses-1 --recipient sales@example.com"),
            "{text}"
        );
    }

    #[test]
    fn the_commands_of_a_route_are_quoted_for_a_shell() {
        let mut r = record(RouteState::GivenUp);
        r.case = Some("RtTemporaryFailure".into());
        r.recipients = vec!["-x $(id)'@example.com".into()];
        let text = route_lines("ses-1", &r, 0);
        assert!(
            text.contains(r#"rt-mailgate-routes explain -- '-x $(id)'\''@example.com'"#),
            "{text}"
        );
        assert!(
            text.contains(r#"rt-mailgate-replay --message-id ses-1 --recipient='-x $(id)'\''@example.com'"#),
            "{text}"
        );
        // A fix that names a variable keeps it (the mail's id goes only where ID stood).
        let mut r = record(RouteState::Free);
        r.case = Some("Unauthorized".into());
        assert!(route_lines("ses-1", &r, 0).contains("RT_SECRET_ID"));
    }

    #[test]
    fn a_search_that_stopped_short_says_so_and_how_to_go_on() {
        let text = stopped_short_text(
            40,
            "--max-mails",
            Some(1_700_000_000_000),
            Some("rt-mailgate-trace --since x"),
        );
        assert!(text
            .contains("STOPPED SHORT: it read 40 mails (the --max-mails bound), received up to 2023-11-14T22:13:20Z"));
        assert!(text.contains("\n  rt-mailgate-trace --since x\n"), "{text}");
        assert!(!text.contains("never got it"));
    }

    #[test]
    fn a_screened_drop_is_not_replayed_without_the_operators_word() {
        let mut r = record(RouteState::GivenUp);
        r.case = Some("VirusFound".into());
        r.screened = Screened::Dropped("VirusFound".into());
        let view = describe(&r, 0);
        assert!(view.next.contains("--post-screened-mail"), "{}", view.next);
        assert!(!view.next.contains("--message-id"));
    }

    #[test]
    fn unsure_says_until_when_rt_may_still_store_it() {
        let mut r = record(RouteState::Unsure);
        r.case = Some("Timeout".into());
        r.settle_until_ms = 1_700_000_000_000;
        let view = describe(&r, 1_699_999_000_000);
        assert!(view.detail.contains("until 2023-11-14T22:13:20Z"), "{}", view.detail);
        assert!(view.next.contains("asks RT"));
        // Once past, no time is named.
        assert!(!describe(&r, 1_800_000_000_000).detail.contains("until"));
    }

    #[test]
    fn posting_tells_a_live_lease_from_a_dead_holder() {
        let mut r = record(RouteState::Posting);
        r.holder = "pid7-1".into();
        r.lease_until_ms = 2_000_000;
        assert!(describe(&r, 1_000_000).next.starts_with("wait"));
        assert!(describe(&r, 9_000_000).detail.contains("stopped mid-post"));
    }

    #[test]
    fn times_are_given_as_dates_or_ages() {
        assert_eq!(parse_time("2023-11-14T22:13:20Z", 0), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert!(parse_time("yesterday", 0).is_err());
    }

    #[test]
    fn the_log_commands_name_the_group_the_mail_and_the_window() {
        let text = log_commands("/aws/lambda/f", &["ses-1".to_string()], 1_000_000, 2_000_000);
        assert!(
            text.contains("--log-group-name /aws/lambda/f --start-time 400000 --end-time 2600000"),
            "{text}"
        );
        assert!(text.contains("--filter-pattern '\"ses-1\"'"), "{text}");
        assert!(text.contains("span.message_id in [\"ses-1\"]"), "{text}");
    }

    #[test]
    fn free_names_what_to_fix() {
        let mut r = record(RouteState::Free);
        r.case = Some("Unauthorized".into());
        assert!(describe(&r, 0).next.contains("secret"));
    }

    #[test]
    fn a_mail_is_found_by_its_message_id_or_sender_and_time() {
        let r = record(RouteState::Delivered);
        let by_id = MailFilter {
            message_id_header: Some("m1@customer.example".into()),
            ..MailFilter::default()
        };
        assert!(by_id.matches(&r));
        let other = MailFilter {
            message_id_header: Some("<m2@customer.example>".into()),
            ..MailFilter::default()
        };
        assert!(!other.matches(&r));
        let by_sender = MailFilter {
            sender: Some("Alice@Customer.example".into()),
            since_ms: Some(999_000),
            until_ms: Some(1_001_000),
            ..MailFilter::default()
        };
        assert!(by_sender.matches(&r));
        let too_late = MailFilter {
            since_ms: Some(1_000_001),
            ..by_sender
        };
        assert!(!too_late.matches(&r));
    }
}
