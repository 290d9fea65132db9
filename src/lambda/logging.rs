//! The function's log: Lambda's advanced logging controls as lambda_runtime reads them
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`: one JSON object per line; `AWS_LAMBDA_LOG_LEVEL`, else
//! `RUST_LOG`, else INFO), with one change: the runtime's own line for a failed
//! invocation (a Debug dump of the error the function logs itself, as "invocation
//! failed") is left out, so a failure is logged once. A panic still reaches the log
//! through Rust's panic message on stderr.

use std::str::FromStr;

use tracing_subscriber::filter::{Directive, EnvFilter, LevelFilter};

/// The runtime's target that repeats every handler error.
const RUNTIME_ERROR_ECHO: &str = "lambda_runtime::layers::panic=off";

/// Installs the subscriber (once, at cold start).
pub fn init() {
    let format = std::env::var("AWS_LAMBDA_LOG_FORMAT").unwrap_or_default();
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").or_else(|_| std::env::var("RUST_LOG"));
    let level = LevelFilter::from_str(level.as_deref().unwrap_or("INFO")).unwrap_or(LevelFilter::INFO);
    let mut filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    if let Ok(echo) = Directive::from_str(RUNTIME_ERROR_ECHO) {
        filter = filter.add_directive(echo);
    }
    let collector = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter);
    if format.eq_ignore_ascii_case("json") {
        collector.json().init();
    } else {
        collector.init();
    }
}
