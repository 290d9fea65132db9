//! `rt-mailgate-replay`: re-deliver mails from the SES bucket to RT, e.g. after an RT
//! outage or once a misrouted queue exists. Reads the same configuration (environment)
//! as the Lambda, or the deployed function's (`--function-name`); delivery records keep
//! it from posting anything twice. Exits 0 only when every mail it touched is delivered
//! or refused by RT; else 1, saying per mail and route what to fix (dead-letter messages
//! of such mails stay on the queue); 2 on a configuration error. `--release` posts mail
//! held for a storm, a loop or an auto-reply (once; the screening kept).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rt_mailgate::aws::function::{deployed_environment, invoke};
use rt_mailgate::aws::sqs::SqsDeadLetters;
use rt_mailgate::lambda::events::mails_in;
use rt_mailgate::lambda::events::MailInfo;
use rt_mailgate::lambda::invocation::Mode;
use rt_mailgate::lambda::wiring::LiveHandler;

/// Re-deliver mails from the SES bucket to RT (same environment as the Lambda).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// SES message id of a mail in the bucket (with --recipient).
    #[arg(long, requires = "recipient")]
    message_id: Option<String>,
    /// An envelope recipient to route (repeat for several).
    #[arg(long)]
    recipient: Vec<String>,
    /// The envelope sender, for notices.
    #[arg(long, default_value = "")]
    sender: String,
    /// A file holding an event: SES, SNS, SQS, or a Lambda on-failure record.
    #[arg(long, conflicts_with = "message_id")]
    event: Option<std::path::PathBuf>,
    /// A dead-letter queue URL: replay its messages and delete the settled ones.
    #[arg(long, conflicts_with_all = ["message_id", "event"])]
    dlq_url: Option<String>,
    /// At most this many queue messages.
    #[arg(long, default_value_t = 100)]
    max: usize,
    /// Also post mails SES's verdicts drop (a virus, a DMARC reject, a spam drop). Without
    /// it a replay keeps them dropped, on the verdicts of the first delivery's record, of
    /// the event, of the mail's verdict record, or of SES's fields on the stored mail.
    #[arg(long)]
    post_screened_mail: bool,
    /// Release held mail: a route held for a storm, a loop or an auto-reply is posted
    /// (once, with the screening kept); routes not held are replayed as without it.
    #[arg(long, conflicts_with = "post_screened_mail")]
    release: bool,
    /// Take the settings from this deployed function's environment (through the `aws`
    /// CLI); a variable set here wins.
    #[arg(long)]
    function_name: Option<String>,
    /// Run the replay inside the function (`--function-name`, with `--message-id` and
    /// `--recipient`): for an RT only the function's VPC reaches.
    #[arg(long, requires_all = ["function_name", "message_id"])]
    in_function: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rt-mailgate-replay: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// True when every mail is delivered or refused.
async fn run(args: Args) -> anyhow::Result<bool> {
    if args.in_function {
        return in_function(&args);
    }
    // The deployed function's variables, if named; a variable set here wins.
    let mut vars: std::collections::HashMap<String, String> = match &args.function_name {
        Some(name) => deployed_environment(name)
            .context("reading the function's settings")?
            .into_iter()
            .collect(),
        None => Default::default(),
    };
    vars.extend(std::env::vars());
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // No notices: a replay is watched by a person. The routing table object
    // (ROUTES_S3_KEY) is read as the function reads it.
    let handler = LiveHandler::cold_start(vars, &aws, false).await?.handler().await;

    let mode = if args.release {
        Mode::Release
    } else if args.post_screened_mail {
        Mode::ReplayScreenedToo
    } else {
        Mode::Replay
    };
    let dlq = args.dlq_url.is_some();
    let report = if let Some(url) = args.dlq_url {
        let queue = SqsDeadLetters::new(aws_sdk_sqs::Client::new(&aws), url);
        handler
            .replay_queue(&queue, args.max, mode)
            .await
            .map_err(anyhow::Error::msg)
            .context("reading the queue")?
    } else {
        let mails = if let Some(path) = args.event {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let payload = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
            mails_in(&payload).with_context(|| format!("{}", path.display()))?
        } else if let Some(ses_id) = args.message_id {
            vec![MailInfo {
                ses_id,
                recipients: args.recipient,
                sender: args.sender,
                ..MailInfo::default()
            }]
        } else {
            anyhow::bail!("name the mails: --message-id ID --recipient ADDR, --event FILE, or --dlq-url URL");
        };
        handler.replay(&mails, mode).await
    };
    print!("{}", report.lines);
    summary(report.settled, report.failed, dlq);
    Ok(report.failed == 0)
}

/// The last line: how many mails are done, and what the rest need.
fn summary(done: usize, not_done: usize, dlq: bool) {
    println!("done (delivered or refused by RT) {done}, not done {not_done}");
    if not_done > 0 {
        let kept = if dlq {
            " Their dead-letter messages stay on the queue."
        } else {
            ""
        };
        println!("Not done mails: fix what each route above says, then replay them again.{kept}");
    }
}

/// Sends the replay to the function itself and prints its report.
fn in_function(args: &Args) -> anyhow::Result<bool> {
    let (Some(function), Some(message_id)) = (&args.function_name, &args.message_id) else {
        anyhow::bail!("--in-function needs --function-name and --message-id");
    };
    let request = serde_json::json!({ "rt-mailgate": { "replay": {
        "message_id": message_id,
        "recipients": args.recipient,
        "sender": args.sender,
        "post_screened_mail": args.post_screened_mail,
        "release": args.release,
    }}});
    let answer = invoke(function, &request).context("invoking the function")?;
    print!("{}", answer["report"].as_str().unwrap_or_default());
    let count = |key: &str| answer[key].as_u64().unwrap_or(0) as usize;
    summary(count("settled"), count("failed"), false);
    Ok(answer["done"] == true)
}
