//! `rt-mailgate-held`: every mail that did not become a ticket, in one place. Lists them
//! by cause (held: storm-sender, storm-route, loop, auto-reply; dropped: virus,
//! dmarc-reject, spam-drop; given-up: rt-refused, too-large, unknown-queue, out-of-time;
//! unrouted), sender, route and day; shows one; releases one or a whole storm (posted
//! once, through the normal delivery path, screening kept: here with the function's
//! settings, or inside the function with `--in-function`); rejects one (a notice to the
//! sender only where the sender-notice rules allow, at most one per sender, reason and
//! day). The rules are [`rt_mailgate::core::held`]'s, the reading and writing
//! [`rt_mailgate::lambda::held`]'s. Exits 0 when done, 1 when a listing stopped short or
//! a release left something not done, 2 on an error.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};
use rt_mailgate::aws::function::{invoke, RecordsFlags, ToolSettings};
use rt_mailgate::core::held::{release_does, Cause, Filter, HeldMail, Kind, RejectReason, DEFAULT_HELD_DAYS};
use rt_mailgate::core::shell;
use rt_mailgate::core::trace::{parse_time, stopped_short_text, utc};
use rt_mailgate::lambda::events::MailInfo;
use rt_mailgate::lambda::held::{find, one, ListRequest};
use rt_mailgate::lambda::invocation::{epoch_ms, Mode};
use rt_mailgate::lambda::wiring::LiveHandler;
use serde_json::{json, Value};

/// Every mail that did not become a ticket: list, show, release, reject.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    records: RecordsFlags,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the mails that did not become a ticket.
    List(Select),
    /// Show one mail: sender, Message-ID, subject, each route's cause, what release does.
    Show {
        /// SES's message id.
        id: String,
    },
    /// Post one mail (or a whole storm) once, through the normal delivery path.
    Release {
        /// SES's message id (or --storm with the selection).
        id: Option<String>,
        /// Release every mail the selection lists (give --day or --since, and a cause,
        /// sender or route).
        #[arg(long, conflicts_with = "id")]
        storm: bool,
        #[command(flatten)]
        select: Select,
        /// Also post a mail dropped on SES's verdicts (virus, DMARC reject, spam drop):
        /// only when you judge it safe.
        #[arg(long)]
        post_screened_mail: bool,
        /// Run inside the function (--function-name): for an RT only its VPC reaches.
        #[arg(long, requires = "function_name")]
        in_function: bool,
    },
    /// Reject one mail: it leaves the list for good; the sender is told only where allowed.
    Reject {
        /// SES's message id.
        id: String,
        /// Why: automatic, flood, loop, unwanted, too-large, wrong-address.
        #[arg(long)]
        reason: String,
        /// Run inside the function (--function-name).
        #[arg(long, requires = "function_name")]
        in_function: bool,
    },
}

/// Which mails.
#[derive(ClapArgs, Debug, Default)]
struct Select {
    /// A cause (storm-sender, storm-route, loop, auto-reply, virus, dmarc-reject,
    /// spam-drop, rt-refused, too-large, unknown-queue, out-of-time, unrouted) or a kind
    /// (held, dropped, given-up, unrouted).
    #[arg(long)]
    cause: Option<String>,
    /// The envelope sender or a From address (read through the trace's address index).
    #[arg(long)]
    sender: Option<String>,
    /// A route entry, as the routing table writes it.
    #[arg(long)]
    route: Option<String>,
    /// One day (YYYY-MM-DD, UTC).
    #[arg(long, conflicts_with_all = ["since", "until"])]
    day: Option<String>,
    /// From this time (2026-12-01T15:00:00Z, or an age: 90m, 24h, 2d). Default: 14d.
    #[arg(long)]
    since: Option<String>,
    /// Until this time (same forms). Default: now.
    #[arg(long)]
    until: Option<String>,
    /// Read at most this many mails' entries; past it the listing says it stopped short.
    #[arg(long, default_value_t = 1_000)]
    max_mails: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("rt-mailgate-held: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<u8> {
    let settings = ToolSettings::read(&args.records)?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let index = settings.record_index(&aws);
    let now = epoch_ms();
    match &args.command {
        Command::List(select) => {
            let (request, _) = list_request(select, now)?;
            let found = find(&index, &settings.prefix, &request, now)
                .await
                .context("reading the records")?;
            if args.json {
                let mails: Vec<Value> = found.mails.iter().map(mail_json).collect();
                println!(
                    "{}",
                    json!({"mails": mails, "stopped_short": found.stopped_short.is_some()})
                );
            } else {
                for mail in &found.mails {
                    print!("{}", mail.line());
                }
                println!("{} mail(s) did not become a ticket", found.mails.len());
                if let Some(short) = &found.stopped_short {
                    print!("{}", stopped_short_text(short.read, "--max-mails", short.last_ms, None));
                }
            }
            Ok(u8::from(found.stopped_short.is_some()))
        }
        Command::Show { id } => {
            let state = one(&index, &settings.prefix, id).await.context("reading the records")?;
            let held = state.held(now);
            if args.json {
                println!(
                    "{}",
                    json!({
                        "mail": held.as_ref().map(mail_json),
                        "filed": state.entry.is_some(),
                        "routes": state.records.iter().map(|(_, r)| json!({
                            "route": r.route, "state": r.state.word(), "case": r.case, "reason": r.reason,
                        })).collect::<Vec<_>>(),
                    })
                );
            } else {
                match &held {
                    Some(mail) => print!("{}", mail.details(now)),
                    None => println!(
                        "mail {id}: nothing of it is waiting (every route became a ticket, or it was released, \
                         rejected or expired): rt-mailgate-trace {} says what became of it",
                        shell::option("--message-id", id)
                    ),
                }
                for (_, record) in &state.records {
                    if let Some(how) = rt_mailgate::core::held::settled_by_operator(record) {
                        println!(
                            "  route {}: {how} ({})",
                            record.route,
                            record.reason.as_deref().unwrap_or("")
                        );
                    }
                }
            }
            Ok(if held.is_some() || state.entry.is_some() { 0 } else { 2 })
        }
        Command::Release {
            id,
            storm,
            select,
            post_screened_mail,
            in_function,
        } => {
            let mails = if *storm {
                if select.cause.is_none() && select.sender.is_none() && select.route.is_none() {
                    anyhow::bail!("--storm needs a --cause, --sender or --route (and --day or --since)");
                }
                if select.day.is_none() && select.since.is_none() {
                    anyhow::bail!("--storm needs --day or --since: a storm is released one stretch at a time");
                }
                let (request, _) = list_request(select, now)?;
                let found = find(&index, &settings.prefix, &request, now)
                    .await
                    .context("reading the records")?;
                if let Some(short) = &found.stopped_short {
                    eprint!("{}", stopped_short_text(short.read, "--max-mails", short.last_ms, None));
                    eprintln!("Releasing the {} read; run it again for the rest.", found.mails.len());
                }
                found.mails
            } else {
                let Some(id) = id else {
                    anyhow::bail!("name the mail (rt-mailgate-held release ID) or give --storm with a selection");
                };
                let state = one(&index, &settings.prefix, id).await.context("reading the records")?;
                match state.held(now) {
                    Some(mail) => vec![mail],
                    None => anyhow::bail!(
                        "mail {id} is not in the held list: nothing of it waits to be released \
                         (rt-mailgate-trace --message-id {id} says what became of it)"
                    ),
                }
            };
            release(&args, &settings, &aws, &mails, *post_screened_mail, *in_function).await
        }
        Command::Reject {
            id,
            reason,
            in_function,
        } => {
            let Some(word) = RejectReason::from_word(reason) else {
                let words: Vec<&str> = RejectReason::ALL.iter().map(|r| r.word()).collect();
                anyhow::bail!("--reason {reason:?}: give one of {}", words.join(", "));
            };
            let request = json!({"reject": {"message_id": id, "reason": word.word()}});
            let answer = if *in_function {
                let function = args.records.function_name.as_deref().unwrap_or_default();
                invoke(function, &json!({"rt-mailgate": {"held": request}})).context("invoking the function")?
            } else {
                let handler = LiveHandler::cold_start(settings.vars.clone().into_iter().collect(), &aws, true)
                    .await?
                    .handler()
                    .await;
                rt_mailgate::lambda::held::operate(&handler, &request)
                    .await
                    .map_err(anyhow::Error::msg)?
            };
            if args.json {
                println!("{answer}");
            } else {
                println!(
                    "mail {id}: rejected ({}): {} part(s) settled; sender notice {}",
                    word.word(),
                    answer["settled"].as_u64().unwrap_or(0),
                    answer["notice"].as_str().unwrap_or("?")
                );
            }
            Ok(0)
        }
    }
}

/// Posts each mail once: here, with the function's settings, or inside the function.
async fn release(
    args: &Args,
    settings: &ToolSettings,
    aws: &aws_config::SdkConfig,
    mails: &[HeldMail],
    post_screened_mail: bool,
    in_function: bool,
) -> anyhow::Result<u8> {
    let mut not_done = 0;
    let mut released = Vec::new();
    let handler = if in_function {
        None
    } else {
        Some(
            LiveHandler::cold_start(settings.vars.clone().into_iter().collect(), aws, false)
                .await?
                .handler()
                .await,
        )
    };
    for mail in mails {
        let dropped = mail.causes().iter().any(|c| c.kind == Kind::Dropped);
        // A mail dropped on SES's verdicts is posted only on the operator's word; the
        // release otherwise keeps the first delivery's screening.
        let (mode, release) = if dropped && post_screened_mail {
            (Mode::ReplayScreenedToo, false)
        } else {
            (Mode::Release, true)
        };
        let info = MailInfo {
            ses_id: mail.entry.mail.ses_id.clone(),
            recipients: mail.release_recipients(),
            sender: mail.entry.mail.sender.clone(),
            ..MailInfo::default()
        };
        let (done, report) = match &handler {
            Some(handler) => {
                let report = handler.replay(std::slice::from_ref(&info), mode).await;
                (report.failed == 0, report.lines)
            }
            None => {
                let function = args.records.function_name.as_deref().unwrap_or_default();
                let request = json!({ "rt-mailgate": { "replay": {
                    "message_id": info.ses_id,
                    "recipients": info.recipients,
                    "sender": info.sender,
                    "post_screened_mail": !release,
                    "release": release,
                }}});
                let answer = invoke(function, &request).context("invoking the function")?;
                (
                    answer["done"] == true,
                    answer["report"].as_str().unwrap_or_default().to_string(),
                )
            }
        };
        not_done += usize::from(!done);
        if args.json {
            released.push(json!({"ses_id": info.ses_id, "done": done, "report": report}));
        } else {
            print!("{report}");
            if !done {
                for cause in mail.causes() {
                    println!(
                        "  {} {}: release {}",
                        cause.kind.word(),
                        cause.label,
                        release_does(cause)
                    );
                }
            }
        }
    }
    if args.json {
        println!("{}", json!({"released": released, "not_done": not_done}));
    } else {
        println!("released {}, not done {not_done}", mails.len() - not_done);
    }
    Ok(u8::from(not_done > 0))
}

/// The listing a selection asks for (and its window, for the words).
fn list_request(select: &Select, now: u64) -> anyhow::Result<(ListRequest, (u64, u64))> {
    if let Some(cause) = &select.cause {
        if !Cause::known(cause) {
            anyhow::bail!(
                "--cause {cause:?}: give a cause (storm-sender, storm-route, loop, auto-reply, virus, dmarc-reject, \
                 spam-drop, rt-refused, too-large, unknown-queue, out-of-time, unrouted) or a kind (held, dropped, \
                 given-up, unrouted)"
            );
        }
    }
    let (since, until) = match &select.day {
        Some(day) => {
            let start = chrono::NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d")
                .map_err(|_| anyhow::anyhow!("--day {day:?}: give a day as 2026-12-01"))?
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis().max(0) as u64)
                .unwrap_or_default();
            (start, start + 86_400_000 - 1)
        }
        None => {
            let since = match &select.since {
                Some(t) => parse_time(t, now).map_err(anyhow::Error::msg)?,
                None => now.saturating_sub(u64::from(DEFAULT_HELD_DAYS) * 86_400_000),
            };
            let until = match &select.until {
                Some(t) => parse_time(t, now).map_err(anyhow::Error::msg)?,
                None => now,
            };
            (since, until)
        }
    };
    Ok((
        ListRequest {
            filter: Filter {
                cause: select.cause.clone(),
                sender: select.sender.clone(),
                route: select.route.clone(),
            },
            since_ms: since,
            until_ms: until,
            max_mails: select.max_mails.max(1),
        },
        (since, until),
    ))
}

/// A mail as `--json` prints it.
fn mail_json(mail: &HeldMail) -> Value {
    let e = &mail.entry;
    json!({
        "ses_id": e.mail.ses_id,
        "received": utc(e.mail.received_ms),
        "sender": e.mail.sender,
        "from": e.mail.from,
        "message_id": e.mail.message_id,
        "subject": e.subject,
        "causes": mail.causes().iter().map(|c| c.label).collect::<Vec<_>>(),
        "routes": mail.routes.iter().map(|(r, c)| json!({
            "route": r.route,
            "recipients": r.recipients,
            "kind": c.kind.word(),
            "cause": c.label,
            "reason": r.reason.clone().or_else(|| r.case.clone()),
            "since": utc(r.updated_ms),
            "release": release_does(*c),
        })).collect::<Vec<_>>(),
        "unrouted": mail.unrouted,
    })
}
