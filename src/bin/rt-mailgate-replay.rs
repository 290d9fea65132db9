//! `rt-mailgate-replay`: re-deliver mails from the SES bucket to RT, e.g. after an RT
//! outage or once a misrouted queue exists. Reads the same configuration (environment)
//! as the Lambda; delivery records keep it from posting anything twice.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rt_mailgate::aws::sqs::SqsDeadLetters;
use rt_mailgate::lambda::config::LambdaConfig;
use rt_mailgate::lambda::events::mails_in;
use rt_mailgate::lambda::events::MailInfo;
use rt_mailgate::lambda::invocation::Mode;
use rt_mailgate::lambda::wiring::aws_handler;

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
    /// Also post mails the first delivery dropped on SES's verdicts (a virus, a DMARC
    /// reject, a spam drop). Without it a replay keeps them dropped.
    #[arg(long)]
    post_screened_mail: bool,
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

/// True when every mail is settled.
async fn run(args: Args) -> anyhow::Result<bool> {
    let config = LambdaConfig::from_vars(|name| std::env::var(name).ok()).context("bad configuration")?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // No notices: a replay is watched by a person.
    let handler = aws_handler(config, &aws, false)
        .await
        .context("RT connection settings")?;

    let mode = if args.post_screened_mail {
        Mode::ReplayScreenedToo
    } else {
        Mode::Replay
    };
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
    println!("settled {}, not settled {}", report.settled, report.failed);
    Ok(report.failed == 0)
}
