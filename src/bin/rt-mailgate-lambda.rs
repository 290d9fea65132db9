//! `rt-mailgate-lambda`: the AWS Lambda function behind an SES receipt rule.
//! Reads its configuration once (a bad one stops the cold start with a clear error),
//! then serves invocations through the Lambda runtime API.

use anyhow::Context;
use rt_mailgate::lambda::config::LambdaConfig;
use rt_mailgate::lambda::deadline::deadline_from_epoch_ms;
use rt_mailgate::lambda::wiring::{aws_handler, AwsHandler};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = std::time::Instant::now();
    // Lambda's advanced logging controls: AWS_LAMBDA_LOG_FORMAT=JSON gives one JSON object
    // per line (the template sets it), AWS_LAMBDA_LOG_LEVEL the level. Each line carries
    // the invocation's span (requestId) and, for a mail's lines, its message_id.
    lambda_runtime::tracing::init_default_subscriber();
    // A process killed at its deadline leaves its spool in /tmp, which outlives it.
    // Older than Lambda's longest invocation: never a spool another process still reads.
    let swept = rt_mailgate::spool::sweep_leftovers(&std::env::temp_dir(), std::time::Duration::from_secs(16 * 60));
    if swept > 0 {
        tracing::info!(swept, "removed spool files a killed process left behind");
    }
    let handler = match cold_start().await {
        Ok(handler) => handler,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "configuration refused; no mail was touched");
            return Err(format!("{e:#}").into());
        }
    };
    tracing::info!(init_ms = started.elapsed().as_secs_f64() * 1000.0, "ready");
    // CloudWatch metrics in Embedded Metric Format, written after each invocation.
    let metrics = match metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(rt_mailgate::lambda::metrics::NAMESPACE)
        .init()
    {
        Ok(metrics) => metrics,
        Err(e) => return Err(format!("metrics: {e}").into()),
    };
    let handler = &handler;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            let answer = handler
                .handle(event.payload, Some(deadline_from_epoch_ms(event.context.deadline)))
                .await;
            if let Err(e) = metrics.flush(std::io::stdout()) {
                tracing::warn!(error = %e, "metrics not written");
            }
            answer.map_err(|e| {
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

async fn cold_start() -> anyhow::Result<AwsHandler> {
    let config = LambdaConfig::from_vars(|name| std::env::var(name).ok()).context("bad configuration")?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    aws_handler(config, &aws, true).await.context("RT connection settings")
}
