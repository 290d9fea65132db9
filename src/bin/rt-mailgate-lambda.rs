//! `rt-mailgate-lambda`: the AWS Lambda function behind an SES receipt rule.
//! Reads its configuration once (a bad one stops the cold start with a clear error),
//! then serves invocations through the Lambda runtime API.

use rt_mailgate::lambda::deadline::deadline_from_epoch_ms;
use rt_mailgate::lambda::wiring::{ColdStartError, LiveHandler};
use tracing::Instrument;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let started = std::time::Instant::now();
    // The template declares AWS_ENDPOINT_URL empty (for `sam local`); the SDK would take
    // "" as the endpoint. Removed here, first, while this process has a single thread.
    let vars = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    for name in rt_mailgate::lambda::config::blank_endpoint_vars(vars) {
        std::env::remove_var(name);
    }
    // Lambda's advanced logging controls: AWS_LAMBDA_LOG_FORMAT=JSON gives one JSON object
    // per line (the template sets it), AWS_LAMBDA_LOG_LEVEL the level. Each line carries
    // the invocation's span (requestId) and, for a mail's lines, its message_id.
    rt_mailgate::lambda::logging::init();
    // A process killed at its deadline leaves its spool in /tmp, which outlives it.
    // Older than Lambda's longest invocation: never a spool another process still reads.
    let swept = rt_mailgate::spool::sweep_leftovers(&std::env::temp_dir(), std::time::Duration::from_secs(16 * 60));
    if swept > 0 {
        tracing::info!(swept, "removed spool files a killed process left behind");
    }
    let handler = match cold_start().await {
        Ok(handler) => handler,
        Err(e) => {
            tracing::error!(error = %e, "configuration refused; no mail was touched");
            return Err(e.to_string().into());
        }
    };
    tracing::info!(
        init_ms = started.elapsed().as_secs_f64() * 1000.0,
        version = env!("CARGO_PKG_VERSION"),
        "ready"
    );
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
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            // The runtime's own span (requestId) is an INFO span: disabled under
            // AWS_LAMBDA_LOG_LEVEL=WARN. This one is enabled at every level, so every
            // line, a give-up's warning included, carries the request id.
            let span = tracing::error_span!("invocation", requestId = %event.context.request_id);
            invocation(handler, metrics, event).instrument(span)
        },
    ))
    .await
}

/// One invocation: the handler's answer, the metrics flushed, a failure logged once.
async fn invocation(
    handler: &LiveHandler,
    metrics: &metrics_cloudwatch_embedded::Collector,
    event: lambda_runtime::LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, lambda_runtime::Diagnostic> {
    // The routing table object is checked for a change here (at most once a minute).
    let handler = handler.handler().await;
    // A held-mail request (a reject, the daily run) needs the bucket's listing, which
    // only the AWS adapters have.
    let answer = match rt_mailgate::lambda::held::request_in(&event.payload) {
        Some(request) => rt_mailgate::lambda::held::operate(&handler, request).await,
        None => {
            handler
                .handle(event.payload, Some(deadline_from_epoch_ms(event.context.deadline)))
                .await
        }
    };
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
}

async fn cold_start() -> Result<LiveHandler, ColdStartError> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    LiveHandler::cold_start(std::env::vars().collect(), &aws, true).await
}
