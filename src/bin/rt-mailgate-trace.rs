//! `rt-mailgate-trace`: what happened to a mail. Given SES's message id, a `Message-ID`
//! header, or a sender (the envelope sender or a From address) and a time window, finds
//! the mail through the index the function writes (one listing of that value's entries,
//! whatever else the bucket holds) and prints every route of the mail from its route
//! records (delivered on which ticket, refused, given up and why, waiting for a retry)
//! with what happens next, and the commands that show the function's log lines for it.
//! A search that stops at its bound says so and how to go on. Every command printed is
//! quoted for a shell. Exits 0 when every route found is delivered or refused, 1 when one
//! is not, 2 when no mail was found or the records can't be read.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rt_mailgate::aws::function::{RecordsFlags, ToolSettings};
use rt_mailgate::core::shell;
use rt_mailgate::core::trace::{
    describe, indexed_mail_line, log_commands, mail_line, no_routes_lines, parse_time, route_lines, stopped_short_text,
    utc, MailFilter,
};
use rt_mailgate::lambda::invocation::epoch_ms;
use rt_mailgate::lambda::trace::{find_mails, TraceRequest};

/// What happened to a mail: its routes' states from the delivery records.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// SES's message id (the S3 key's last part, in the log as message_id).
    #[arg(long)]
    message_id: Option<String>,
    /// The mail's Message-ID header (angle brackets optional).
    #[arg(long)]
    header: Option<String>,
    /// The sender: the envelope sender or an address of the From header.
    #[arg(long)]
    sender: Option<String>,
    /// Only routes with a recipient containing this.
    #[arg(long)]
    recipient: Option<String>,
    /// From this time (2026-12-01T15:00:00Z, or an age: 90m, 24h, 2d). Default: 24h for
    /// --sender, every day kept for --header.
    #[arg(long)]
    since: Option<String>,
    /// Until this time (same forms). Default now.
    #[arg(long)]
    until: Option<String>,
    #[command(flatten)]
    records: RecordsFlags,
    /// The function's log group (else /aws/lambda/<function name>).
    #[arg(long)]
    log_group: Option<String>,
    /// Read at most this many mails' index entries in a search by --header or --sender
    /// (oldest first); past it the search says it stopped short and how to go on.
    #[arg(long, default_value_t = 1_000)]
    max_mails: usize,
    /// Search the route records one by one, in key order, instead of the index: for
    /// mails received before the function wrote the index (envelope sender only).
    #[arg(long)]
    scan: bool,
    /// Read at most this many records in a --scan.
    #[arg(long, default_value_t = 20_000)]
    max_records: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("rt-mailgate-trace: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<u8> {
    if args.message_id.is_none() && args.header.is_none() && args.sender.is_none() {
        anyhow::bail!("name the mail: --message-id ID, --header MESSAGE-ID, or --sender ADDRESS [--since T --until T]");
    }
    let settings = ToolSettings::read(&args.records)?;
    let (bucket, prefix) = (&settings.bucket, &settings.prefix);
    let now = epoch_ms();
    let since = match &args.since {
        Some(t) => parse_time(t, now).map_err(anyhow::Error::msg)?,
        // A Message-ID names one mail: every day the bucket keeps. A sender's mail: a day.
        None if args.message_id.is_some() || args.header.is_some() => 0,
        None => now.saturating_sub(86_400_000),
    };
    let until = match &args.until {
        Some(t) => parse_time(t, now).map_err(anyhow::Error::msg)?,
        None => now,
    };
    let request = TraceRequest {
        ses_id: args.message_id.clone(),
        filter: MailFilter {
            message_id_header: args.header.clone(),
            sender: args.sender.clone(),
            recipient: args.recipient.clone(),
            since_ms: (args.message_id.is_none() && since > 0).then_some(since),
            until_ms: (args.message_id.is_none()).then_some(until),
        },
        max_mails: args.max_mails.max(1),
        scan: args.scan,
        max_records: args.max_records.max(1),
    };

    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let index = settings.record_index(&aws);
    let found = find_mails(&index, prefix, &request)
        .await
        .context("reading the route records")?;
    let mails = &found.mails;

    let mut all_done = true;
    for mail in mails {
        match (&mail.indexed, mail.routes.first()) {
            (Some(indexed), _) => print!("{}", indexed_mail_line(indexed)),
            (None, Some(first)) => print!("{}", mail_line(&mail.ses_id, first)),
            (None, None) => println!("mail {}:", mail.ses_id),
        }
        for record in &mail.routes {
            all_done &= describe(record, now).done;
            print!("{}", route_lines(&mail.ses_id, record, now));
        }
        if mail.routes.is_empty() && mail.unreadable == 0 {
            all_done = false;
            if let Some(indexed) = &mail.indexed {
                print!("{}", no_routes_lines(indexed));
            }
        }
        if mail.unreadable > 0 {
            all_done = false;
            println!(
                "  {} record(s) not readable (a retry treats them as unsure)",
                mail.unreadable
            );
        }
    }
    if let Some(short) = &found.stopped_short {
        all_done = false;
        let (flag, go_on) = if args.scan {
            ("--max-records", None)
        } else {
            ("--max-mails", short.last_ms.map(|last| continue_command(&args, last)))
        };
        print!(
            "{}",
            stopped_short_text(short.read, flag, short.last_ms, go_on.as_deref())
        );
    } else if mails.is_empty() {
        print!("{}", not_found_text(&args, bucket, prefix, since, until));
    }
    let group = args
        .log_group
        .clone()
        .or_else(|| args.records.function_name.as_ref().map(|f| format!("/aws/lambda/{f}")));
    let ids: Vec<String> = match (&args.message_id, mails.is_empty()) {
        (Some(id), true) => vec![id.clone()],
        _ => mails.iter().map(|m| m.ses_id.clone()).collect(),
    };
    let (first, last) = mails
        .iter()
        .flat_map(|m| m.routes.iter().map(|r| r.updated_ms))
        .fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let (from, to) = if first == u64::MAX {
        (since, until)
    } else {
        (first, last)
    };
    match group {
        Some(group) if !ids.is_empty() => {
            println!("The function's log lines for it:");
            print!("{}", log_commands(&group, &ids, from, to));
        }
        _ if !ids.is_empty() => {
            println!("For the function's log lines, add --function-name (or --log-group).");
        }
        _ => {}
    }
    Ok(match (mails.is_empty(), all_done) {
        (true, _) => 2,
        (false, true) => 0,
        (false, false) => 1,
    })
}

/// The same search, from the time of the last mail a search that stopped short read
/// (that second again: its other mails may not all have been read).
fn continue_command(args: &Args, last_ms: u64) -> String {
    let mut words = vec!["rt-mailgate-trace".to_string()];
    let mut add = |flag: &str, value: &Option<String>| {
        if let Some(value) = value {
            words.push(shell::option(flag, value));
        }
    };
    add("--header", &args.header);
    add("--sender", &args.sender);
    add("--recipient", &args.recipient);
    add("--since", &Some(utc(last_ms)));
    add("--until", &args.until);
    add("--function-name", &args.records.function_name);
    add("--bucket", &args.records.bucket);
    add("--records-prefix", &args.records.records_prefix);
    add("--log-group", &args.log_group);
    words.join(" ")
}

/// What a complete search that found nothing says: where it looked, and the causes
/// left, the likeliest first.
fn not_found_text(args: &Args, bucket: &str, prefix: &str, since: u64, until: u64) -> String {
    if args.message_id.is_some() {
        return format!(
            "no route records found in s3://{bucket}/{prefix} for this mail.\n\
             Either the function never got it (SES's receipt rule, MX, the sender's TLS: see SES's own log), \
             every recipient was unrouted (the log says \"no route for this recipient\"), or the records \
             prefix differs.\n"
        );
    }
    let window = if since == 0 {
        format!("up to {}", utc(until))
    } else {
        format!("between {} and {}", utc(since), utc(until))
    };
    let what = match (&args.header, &args.sender) {
        (Some(header), _) => format!("with Message-ID {header}"),
        (None, Some(sender)) => format!("from {sender} (envelope sender or From)"),
        (None, None) => "like this".to_string(),
    };
    if args.scan {
        return format!(
            "no route records in s3://{bucket}/{prefix} of a mail {what} written {window}: the scan read \
             every record. Either the function never got it (SES's receipt rule, MX, the sender's TLS: see \
             SES's own log), every recipient was unrouted, or it is outside the window (--since).\n"
        );
    }
    format!(
        "no mail {what} received {window} in the trace's index (s3://{bucket}/{prefix}index/); the search \
         read every entry of the window.\n\
         Either the function never got it (SES's receipt rule, MX, the sender's TLS: see SES's own log), \
         it came outside the window (widen it: --since 30d), or before the function wrote the index \
         (add --scan to read the older records one by one).\n"
    )
}
