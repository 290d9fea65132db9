//! template.yaml declares `AWS_ENDPOINT_URL` empty, so that `sam local --env-vars` may
//! point the function at moto (SAM passes only declared variables). Deployed, the
//! variable is there and empty. The AWS SDK alone would take "" as S3's endpoint and
//! fail every read; the function removes blank endpoint variables first
//! ([`blank_endpoint_vars`]), so a deploy calls AWS's own S3, as if never declared.
//!
//! One test in this file: it sets the process's environment, as Lambda does.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use rt_mailgate::lambda::config::blank_endpoint_vars;

/// Notes the URL of each request about to be sent, and stops it there (no network).
#[derive(Debug, Default, Clone)]
struct SentTo(Arc<Mutex<Vec<String>>>);

impl Intercept for SentTo {
    fn name(&self) -> &'static str {
        "SentTo"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        self.0.lock().unwrap().push(context.request().uri().to_string());
        Err("stopped before sending".into())
    }
}

/// Reads a mail the way the function does (SDK defaults from the environment, an S3
/// client from them); returns where the request went, or why none was made.
async fn read_a_mail() -> Result<String, String> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sent = SentTo::default();
    let s3 = aws_sdk_s3::config::Builder::from(&aws)
        .interceptor(sent.clone())
        .build();
    let error = aws_sdk_s3::Client::from_conf(s3)
        .get_object()
        .bucket("rt-mailgate-mail")
        .key("inbound/m1")
        .send()
        .await
        .expect_err("the interceptor stops every request");
    let sent = sent.0.lock().unwrap().clone();
    sent.first()
        .cloned()
        .ok_or_else(|| format!("{}", aws_sdk_s3::error::DisplayErrorContext(&error)))
}

#[tokio::test(flavor = "current_thread")]
async fn the_templates_empty_endpoint_variable_leaves_s3_at_aws() {
    // What a deployed function's environment holds (and no profile to read).
    std::env::set_var("AWS_ENDPOINT_URL", "");
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "secret");
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/config");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    std::env::remove_var("AWS_PROFILE");

    // The SDK alone: every S3 call fails before a request is made.
    let unfixed = read_a_mail().await;
    let why = unfixed.expect_err("the SDK alone sent a request");
    assert!(why.contains("endpoint"), "{why}"); // "Custom endpoint `` was not a valid URI"

    // As the function starts: blank endpoint variables removed.
    let vars = std::env::vars().collect::<Vec<_>>();
    assert_eq!(blank_endpoint_vars(vars.clone()), ["AWS_ENDPOINT_URL"]);
    for name in blank_endpoint_vars(vars) {
        std::env::remove_var(name);
    }
    let url = read_a_mail().await.expect("a request to S3");
    assert!(
        url.starts_with("https://rt-mailgate-mail.s3.us-east-1.amazonaws.com/inbound/m1"),
        "{url}"
    );

    // And sam local's value (events/env.json) still reaches moto.
    std::env::set_var("AWS_ENDPOINT_URL", "http://172.17.0.1:4566");
    assert!(blank_endpoint_vars(std::env::vars()).is_empty());
    let url = read_a_mail().await.expect("a request to moto");
    assert!(url.starts_with("http://172.17.0.1:4566/"), "{url}");
}
