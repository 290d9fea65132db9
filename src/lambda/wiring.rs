//! The real adapters behind the Lambda and the replay command: S3 for mails and
//! delivery records, RT over HTTP (credentials from Secrets Manager), SESv2 for notices
//! (when configured). [`LiveHandler`] rebuilds the handler when the routing table
//! object (`ROUTES_S3_KEY`) changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::counters::{Counters, DynamoCounters};
use crate::aws::records::S3DeliveryRecords;
use crate::aws::routes_object::{Fetched, RoutesObject, RoutesObjectError};
use crate::aws::s3::S3MailStore;
use crate::aws::secrets::SecretsManager;
use crate::aws::ses::SesNotifier;
use crate::lambda::config::{routes_object_key, ConfigError, LambdaConfig, RoutesObjectText};
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
    let s3 = s3_client(config.s3_force_path_style, aws);
    let store = S3MailStore::new(s3.clone(), config.bucket.clone());
    let records = S3DeliveryRecords::new(s3, config.bucket.clone(), config.records_prefix.clone());
    // Whenever NOTICE_FROM is set: the canary sends from it even with notices off (the
    // notices themselves still go only where OPERATOR_EMAIL / SENDER_NOTICES say).
    let notifier = match (&config.notices.from, notices) {
        (Some(from), true) => Some(SesNotifier::new(aws_sdk_sesv2::Client::new(aws), from.clone())),
        _ => None,
    };
    let lookups = lookups(&gateway, config.rt_api_url.as_deref())?;
    // Storms are counted only where the template made the table (STORM_TABLE).
    let counters = match &config.hold.counter_table {
        Some(table) => Counters::Dynamo(DynamoCounters::from_sdk_config(aws, table.clone())),
        None => Counters::Off,
    };
    Ok(Handler::new(config, store, records, gateway, notifier, lookups).with_counters(counters))
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
        tracing::info!(
            "no RT login in the secret: RT is not asked before posting again (see docs/design.md, Exactly once)"
        );
    }
    // What this front door and this RT user allow, said once (see rt::queues).
    lookups.log_abilities();
    Ok(lookups)
}

/// Why the function could not start.
#[derive(Debug, thiserror::Error)]
pub enum ColdStartError {
    /// A setting (or the routing table) is unusable.
    #[error("bad configuration: {0}")]
    Config(#[from] ConfigError),
    /// The routing table object could not be read.
    #[error("bad configuration: ROUTES_S3_KEY: {0}")]
    RoutesObject(#[from] RoutesObjectError),
    /// RT's credentials could not be read, or a client not built.
    #[error("RT connection settings: {0}")]
    Rt(#[from] PoolError),
}

/// The handler, rebuilt when the routing table object (`ROUTES_S3_KEY`) changes: checked
/// at most once per `ROUTES_S3_CHECK_SECONDS` with `If-None-Match`. A new table that is
/// bad (or whose RTs' secrets can't be read) leaves the last good one in place, with an
/// error in the log and the `RoutesRefused` metric; the next check tries again.
pub struct LiveHandler {
    current: Mutex<Arc<AwsHandler>>,
    watch: Option<Watch>,
}

struct Watch {
    object: RoutesObject,
    vars: HashMap<String, String>,
    aws: aws_config::SdkConfig,
    notices: bool,
    interval: Duration,
    /// The last good table's ETag, and when the object was last asked.
    state: tokio::sync::Mutex<(String, Instant)>,
}

impl LiveHandler {
    /// Reads the configuration from `vars` (the process environment), the routing table
    /// object when `ROUTES_S3_KEY` is set, RT's secrets, and builds the handler. Any
    /// failure is the cold start's: no mail is touched.
    pub async fn cold_start(
        vars: HashMap<String, String>,
        aws: &aws_config::SdkConfig,
        notices: bool,
    ) -> Result<Self, ColdStartError> {
        let var = |name: &str| vars.get(name).cloned();
        let Some(key) = routes_object_key(var)? else {
            let config = LambdaConfig::from_vars(var)?;
            warn_unreceived(&config);
            let handler = aws_handler(config, aws, notices).await?;
            return Ok(Self {
                current: Mutex::new(Arc::new(handler)),
                watch: None,
            });
        };
        let bucket = var("MAIL_BUCKET")
            .filter(|b| !b.trim().is_empty())
            .ok_or(ConfigError::Missing("MAIL_BUCKET"))?;
        let path_style = var("S3_FORCE_PATH_STYLE")
            .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "yes" | "1" | "on"));
        let object = RoutesObject::new(s3_client(path_style, aws), bucket.trim(), key);
        let (text, etag) = match object.fetch(None).await? {
            Fetched::Table { text, etag } => (text, etag),
            // S3 answers 304 only to If-None-Match, which this read did not send.
            Fetched::Unchanged => {
                return Err(ColdStartError::RoutesObject(RoutesObjectError::Unavailable {
                    bucket,
                    key: object.location(),
                    reason: "S3 answered 304 Not Modified to a plain read".into(),
                }))
            }
        };
        let location = object.location();
        let config = LambdaConfig::from_vars_with(
            var,
            Some(RoutesObjectText {
                location: &location,
                text: &text,
            }),
        )?;
        let interval = config.routes_check_interval;
        warn_unreceived(&config);
        tracing::info!(routes = %location, etag, "routing table read");
        let handler = aws_handler(config, aws, notices).await?;
        Ok(Self {
            current: Mutex::new(Arc::new(handler)),
            watch: Some(Watch {
                object,
                vars,
                aws: aws.clone(),
                notices,
                interval,
                state: tokio::sync::Mutex::new((etag, Instant::now())),
            }),
        })
    }

    /// The handler to serve the next invocation with, after checking the routing table
    /// object when a check is due.
    pub async fn handler(&self) -> Arc<AwsHandler> {
        if let Some(watch) = &self.watch {
            let mut state = watch.state.lock().await;
            if state.1.elapsed() >= watch.interval {
                state.1 = Instant::now();
                if let Some((handler, etag)) = watch.refreshed(&state.0).await {
                    state.0 = etag;
                    *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(handler);
                }
            }
        }
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Watch {
    /// A handler with the object's new table, or `None` when it is unchanged or can't be
    /// used (then logged and counted).
    async fn refreshed(&self, etag: &str) -> Option<(AwsHandler, String)> {
        let location = self.object.location();
        let refused = |error: String| {
            tracing::error!(routes = %location, error = %error, "new routing table refused; the last good one stays in use");
            crate::lambda::metrics::routes_refused();
        };
        let (text, etag) = match self.object.fetch(Some(etag)).await {
            Ok(Fetched::Unchanged) => return None,
            Ok(Fetched::Table { text, etag }) => (text, etag),
            Err(e) => {
                // S3 unreachable is not a bad table: no metric, try again at the next check.
                tracing::warn!(routes = %location, error = %e, "routing table not checked; the last one stays in use");
                return None;
            }
        };
        let var = |name: &str| self.vars.get(name).cloned();
        let object = RoutesObjectText {
            location: &location,
            text: &text,
        };
        let config = match LambdaConfig::from_vars_with(var, Some(object)) {
            Ok(config) => config,
            Err(e) => {
                refused(e.to_string());
                return None;
            }
        };
        warn_unreceived(&config);
        match aws_handler(config, &self.aws, self.notices).await {
            Ok(handler) => {
                tracing::info!(routes = %location, etag, "routing table changed; now in use");
                Some((handler, etag))
            }
            Err(e) => {
                refused(format!("RT connection settings: {e}"));
                None
            }
        }
    }
}

/// A route for a domain the receipt rule does not take never gets mail: said at cold
/// start and with each new table, not refused (another rule may feed the function).
fn warn_unreceived(config: &LambdaConfig) {
    let unreceived = config.unreceived_domains();
    if !unreceived.is_empty() {
        tracing::warn!(
            domains = unreceived.join(","),
            "routes name domains MAIL_DOMAINS (the template's MailDomains) leaves out: the rule never receives their mail"
        );
    }
}

fn s3_client(path_style: bool, aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let s3 = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}
