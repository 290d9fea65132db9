//! `rt-mailgate-lambda`: the AWS Lambda function behind an SES receipt rule.
//! Reads its configuration once (a bad one stops the cold start with a clear error),
//! then serves invocations through the Lambda runtime API.

use anyhow::Context;
use rt_mailgate::aws::records::S3DeliveryRecords;
use rt_mailgate::aws::s3::S3MailStore;
use rt_mailgate::aws::ses::SesNotifier;
use rt_mailgate::lambda::config::LambdaConfig;
use rt_mailgate::lambda::handler::Handler;
use rt_mailgate::rt::http::HttpGateway;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = std::time::Instant::now();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_current_span(false)
        .with_target(false)
        .init();
    let handler = match cold_start().await {
        Ok(handler) => handler,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "configuration refused; no mail was touched");
            return Err(format!("{e:#}").into());
        }
    };
    tracing::info!(init_ms = started.elapsed().as_secs_f64() * 1000.0, "ready");
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            handler
                .handle(event.payload, deadline(&event.context))
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, kind = e.kind(), "invocation failed");
                    lambda_runtime::Diagnostic {
                        error_type: e.kind().to_string(),
                        error_message: e.to_string(),
                    }
                })
        },
    ))
    .await
}

/// The invocation's deadline (epoch milliseconds in the context) as an `Instant`.
fn deadline(context: &lambda_runtime::Context) -> Option<std::time::Instant> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    let left = context.deadline.checked_sub(now_ms)?;
    Some(std::time::Instant::now() + std::time::Duration::from_millis(left))
}

async fn cold_start() -> anyhow::Result<Handler<S3MailStore, S3DeliveryRecords, HttpGateway, Option<SesNotifier>>> {
    let config = LambdaConfig::from_vars(|name| std::env::var(name).ok()).context("bad configuration")?;
    let gateway = HttpGateway::new(&config.rt).context("RT connection settings")?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let s3 = aws_sdk_s3::config::Builder::from(&aws)
        .force_path_style(config.s3_force_path_style)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(s3);
    let store = S3MailStore::new(s3.clone(), config.bucket.clone());
    let records = S3DeliveryRecords::new(s3, config.bucket.clone(), config.records_prefix.clone());
    let notifier = config
        .notices
        .enabled()
        .then(|| config.notices.from.clone())
        .flatten()
        .map(|from| SesNotifier::new(aws_sdk_sesv2::Client::new(&aws), from));
    Ok(Handler::new(config, store, records, gateway, notifier))
}
