//! The real adapters behind the Lambda and the replay command: S3 for mails and
//! delivery records, RT over HTTP (credentials from Secrets Manager), SESv2 for notices
//! (when configured).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::aws::records::S3DeliveryRecords;
use crate::aws::s3::S3MailStore;
use crate::aws::secrets::SecretsManager;
use crate::aws::ses::SesNotifier;
use crate::lambda::config::LambdaConfig;
use crate::lambda::handler::Handler;
use crate::rt::lookup::{Lookups, Rest2Lookup};
use crate::rt::pool::{GatewayPool, PoolError};

/// The handler with the AWS adapters.
pub type AwsHandler =
    Handler<S3MailStore, S3DeliveryRecords, GatewayPool<SecretsManager>, Option<SesNotifier>, Lookups>;

/// Builds the handler from a checked configuration and the AWS SDK's shared settings
/// (region, credentials, endpoint): reads RT's secrets and builds one client per RT.
/// `notices` turns SESv2 notices on where configured.
pub async fn aws_handler(
    config: LambdaConfig,
    aws: &aws_config::SdkConfig,
    notices: bool,
) -> Result<AwsHandler, PoolError> {
    let secrets = SecretsManager::new(aws_sdk_secretsmanager::Client::new(aws));
    let gateway = GatewayPool::build(
        config.rt.clone(),
        config.secret_id.clone(),
        config.routes.targets(),
        secrets,
    )
    .await?;
    let s3 = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(config.s3_force_path_style)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(s3);
    let store = S3MailStore::new(s3.clone(), config.bucket.clone());
    let records = S3DeliveryRecords::new(s3, config.bucket.clone(), config.records_prefix.clone());
    // Whenever NOTICE_FROM is set: the canary sends from it even with notices off (the
    // notices themselves still go only where OPERATOR_EMAIL / SENDER_NOTICES say).
    let notifier = match (&config.notices.from, notices) {
        (Some(from), true) => Some(SesNotifier::new(aws_sdk_sesv2::Client::new(aws), from.clone())),
        _ => None,
    };
    let lookups = lookups(&gateway, config.rt_api_url.as_deref())?;
    Ok(Handler::new(config, store, records, gateway, notifier, lookups))
}

/// How long one lookup may take at most (the deadline may cut it shorter).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A REST 2 lookup for each RT whose secret holds an RT login (`rt_token`, or
/// `rt_username` and `rt_password`); `api_url` (`RT_API_URL`) replaces the function's
/// own RT URL for its lookups. Without a login, that RT is not asked (logged per mail).
fn lookups(pool: &GatewayPool<SecretsManager>, api_url: Option<&str>) -> Result<Lookups, PoolError> {
    let mut own = None;
    let mut others = BTreeMap::new();
    for (target, config) in pool.configs() {
        if config.credentials.rt_api.is_none() {
            continue;
        }
        let url = if target.is_none() { api_url } else { None };
        let lookup = Rest2Lookup::new(config, url, LOOKUP_TIMEOUT).map_err(PoolError::from)?;
        match target {
            None => own = Some(lookup),
            Some(target) => {
                others.insert(target.clone(), lookup);
            }
        }
    }
    let lookups = Lookups::new(own, others);
    if lookups.is_empty() {
        tracing::info!("no RT login in the secret: RT is not asked before posting again (see README, Exactly once)");
    }
    Ok(lookups)
}
