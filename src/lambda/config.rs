//! The function's configuration, from environment variables, checked once at cold
//! start. A bad setting stops the function before any mail is touched, with a message
//! naming the variable (and for routes, the entry).
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `RT_URL` | RT's base URL | required |
//! | `MAIL_BUCKET` | the bucket SES's S3 action writes to | required |
//! | `MAIL_PREFIX` | the S3 action's object key prefix, used verbatim | empty |
//! | `ROUTES` | routing table (see [`crate::core::route`]) | |
//! | `ROUTES_FILE` | a routing table file packed with the function (added to `ROUTES`) | |
//! | `ROUTES_S3_KEY` | a routing table object in `MAIL_BUCKET` (added too; read by [`crate::lambda::wiring`], checked again for changes) | |
//! | `MAIL_DOMAINS` | the receipt rule's domains, comma-separated: a route outside them gets no mail (warned at cold start) | none |
//! | `ROUTES_S3_CHECK_SECONDS` | how often the object is checked for a change | 60 |
//! | `SUBADDRESS_SEPARATOR` | one character, or `none` | `+` |
//! | `RT_TIMEOUT` | seconds without a byte moving before a post is abandoned: RT's silence while it stores the mail counts, the upload does not | 600 (see [`DEFAULT_RT_TIMEOUT_SECS`]) |
//! | `RT_VERIFY_TLS` | `false` checks neither chain nor host name | `true` |
//! | `RT_CA_FILE` | trust only these CA certificates (PEM) | system roots |
//! | `RT_SECRET_ID` | Secrets Manager secret with RT's credentials (see [`crate::core::credentials`]) | none |
//! | `RT_ALLOW_HTTP` | allow plain `http://` to a host other than this machine | `false` |
//! | `ROUTE_CONCURRENCY` | how many routes of one mail are posted at once (1: one after another) | 4 |
//! | `RT_API_URL` | where RT's REST 2 API answers lookups (when not at `RT_URL`) | `RT_URL` |
//! | `RT_ORGANIZATION` | RT's `$Organization`: replies thread by RT's markers, bounces of RT's mail become comments ([`crate::core::threading`]); empty: threading off | empty |
//! | `RT_NAME` | RT's `$rtname` (its subject tag), read with `RT_ORGANIZATION` | empty |
//! | `AUTO_REPLY_POLICY`, `STORM_TABLE`, `STORM_SENDER_MAX`, `STORM_ROUTE_MAX`, `STORM_WINDOW_MINUTES`, `LOOP_HOLD_AFTER` | machine mail, storms and loops ([`crate::core::storm::HoldSettings`]) | `comment`, none (storms not counted), 15, 300, 10, 3 |
//! | `RT_THREAD_BY_MESSAGE_ID` | with `RT_ORGANIZATION`, a mail with no marker threads by the Message-IDs it answers (an RT search) | `true` |
//! | `RT_REOPEN_AFTER_DAYS` | with `RT_ORGANIZATION`, a reply to a ticket resolved more than N days ago opens a new ticket; 0: never | 0 |
//! | `RT_REDIRECT_HOSTS` | comma-separated hosts a redirect may lead to (never with credentials) | none |
//! | `LINE_ENDINGS` | `lf`: CRLF to LF as a local MTA would; `raw`: SES's bytes | `lf` |
//! | `SES_DISPOSITION` | what a `RequestResponse` invocation answers SES | `CONTINUE` |
//! | `RECORDS_PREFIX` | where delivery records go in the mail bucket | `delivery-records/` |
//! | `OPERATOR_EMAIL` | told of every mail given up | none |
//! | `SENDER_NOTICES` | also tell authenticated human senders (rate-limited) | `false` |
//! | `NOTICE_FROM` | SES-verified address notices come from | required with either above |
//! | `VIRUS_POLICY` | `drop` (with an operator notice) or `pass` | `drop` |
//! | `SPAM_POLICY` | `tag` (header `X-RT-Mailgate-Spam`), `pass` or `drop` | `tag` |
//! | `DMARC_REJECT` | `honour` (drop what the sender's domain says to reject) or `ignore` | `honour` |
//! | `MAX_MAIL_BYTES` | give up (with notices) on larger mail | none |
//! | `MAX_ROUTES_PER_MAIL` | distinct routes one mail may post to; the rest are given up (logged, counted, reported) | 10 (see [`DEFAULT_MAX_ROUTES_PER_MAIL`]) |
//! | `S3_FORCE_PATH_STYLE` | path-style S3 URLs (S3-compatible stores, moto) | `false` |
//! | `AWS_ENDPOINT_URL` | the AWS SDK's own: one endpoint for S3, SESv2 and Secrets Manager (moto, `sam local`); empty means unset (see [`blank_endpoint_vars`]) | AWS's |

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::core::credentials::Credentials;
use crate::core::outcome::{SpamPolicy, VerdictPolicy};
use crate::core::route::{RouteError, RoutingTable};
use crate::core::threading::RtIdentity;
use crate::core::url_policy::{check_rt_url, runs_in_lambda, OtherHosts, UrlRefused, UrlRules};
use crate::rt::http::{GatewayConfigError, HttpGatewayConfig, TlsPolicy};
use crate::spool::LineEndings;

/// `RT_TIMEOUT`'s default. RT answers only once the ticket is stored (and its scrips
/// have run), so the timeout, which counts inactivity, must outlast RT's think time
/// for the largest mail SES accepts (40 MB), or the function abandons a mail RT is still
/// storing and the retry makes a second ticket. Rule: at least 3 times the slowest
/// 40 MB answer of an idle RT. Measured with `bench/rt-answer-time.sh` on Debian's RT 5:
/// a 40 MB text/html body keeps RT busy ~160 s of CPU (answered after 179 s; ~300 s on
/// a heavily loaded machine), a plain-text body ~35 s, attachments 2-4 s; 3 x 160 =
/// 480 s, rounded up to 10 minutes. That leaves 300 s of the template's 900 s function
/// timeout for reading the mail from S3 and uploading it.
pub const DEFAULT_RT_TIMEOUT_SECS: u64 = 600;

/// `MAX_ROUTES_PER_MAIL`'s default: one mail to many addresses of a `*@domain` route
/// would otherwise make one upload (and one parse by RT) per address.
pub const DEFAULT_MAX_ROUTES_PER_MAIL: usize = 10;

/// What a synchronous (`RequestResponse`) invocation tells SES to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Disposition {
    /// Go on with the rule's other actions and later rules.
    Continue,
    /// Stop this rule's remaining actions.
    StopRule,
    /// Stop every later rule too (no second delivery by an overlapping rule).
    StopRuleSet,
}

impl FromStr for Disposition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "CONTINUE" => Ok(Self::Continue),
            "STOP_RULE" => Ok(Self::StopRule),
            "STOP_RULE_SET" => Ok(Self::StopRuleSet),
            _ => Err("must be CONTINUE, STOP_RULE or STOP_RULE_SET".into()),
        }
    }
}

/// Who is told when a mail is given up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoticeConfig {
    /// The operator's address.
    pub operator: Option<String>,
    /// Whether senders are told too (when safe).
    pub to_senders: bool,
    /// The SES-verified sender address of notices.
    pub from: Option<String>,
}

impl NoticeConfig {
    /// Whether any notice can be sent.
    pub fn enabled(&self) -> bool {
        self.from.is_some() && (self.operator.is_some() || self.to_senders)
    }
}

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable's value is unusable.
    #[error("{var}: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Why.
        reason: String,
    },
    /// The routing table has a bad entry.
    #[error("ROUTES: {0}")]
    Routes(#[from] RouteError),
    /// The routing table, read with the S3 object, has a bad entry.
    #[error("routing table (ROUTES, ROUTES_FILE and ROUTES_S3_KEY {location}): {source}")]
    RoutesWithObject {
        /// `s3://bucket/key`.
        location: String,
        /// The entry and its problem.
        source: RouteError,
    },
    /// A route's own `--url` breaks the rule `RT_URL` keeps (plain http, loopback).
    #[error("routing table (ROUTES, ROUTES_FILE, ROUTES_S3_KEY): a route's --url is refused, as RT_URL would be: {0}")]
    RouteUrl(UrlRefused),
    /// The RT connection settings are unusable.
    #[error("RT_URL / RT_CA_FILE: {0}")]
    Gateway(#[from] GatewayConfigError),
}

/// Everything the function needs, validated.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// How to reach RT.
    pub rt: HttpGatewayConfig,
    /// The mail bucket.
    pub bucket: String,
    /// The key prefix (the mail is at `prefix + messageId`).
    pub prefix: String,
    /// The key prefix of delivery records (in the mail bucket).
    pub records_prefix: String,
    /// Recipient to route.
    pub routes: RoutingTable,
    /// CRLF handling.
    pub line_endings: LineEndings,
    /// The answer to a `RequestResponse` invocation.
    pub disposition: Disposition,
    /// Path-style S3 addressing.
    pub s3_force_path_style: bool,
    /// What to do with SES's virus, spam and DMARC verdicts.
    pub verdict_policy: VerdictPolicy,
    /// Notices when a mail is given up.
    pub notices: NoticeConfig,
    /// Mail larger than this is given up.
    pub max_mail_bytes: Option<u64>,
    /// The Secrets Manager id of RT's credentials (read at cold start), if any.
    pub secret_id: Option<String>,
    /// Plain `http://` to another machine is allowed (`RT_ALLOW_HTTP`).
    pub allow_plain_http: bool,
    /// Where RT's REST 2 API answers (`RT_API_URL`), when not at `RT_URL`.
    pub rt_api_url: Option<String>,
    /// How many routes of one mail are posted at once.
    pub route_concurrency: usize,
    /// The routing table object in the mail bucket (`ROUTES_S3_KEY`), if any.
    pub routes_object_key: Option<String>,
    /// How often the routing table object is checked for a change.
    pub routes_check_interval: Duration,
    /// The receipt rule's domains (`MAIL_DOMAINS`, lower-cased), when given.
    pub mail_domains: Vec<String>,
    /// How many distinct routes one mail may post to (`MAX_ROUTES_PER_MAIL`).
    pub max_routes_per_mail: usize,
    /// What to do when RT's API can't answer whether it holds a post, once RT can no
    /// longer be storing it (`WHEN_RT_CANT_BE_ASKED`).
    pub when_rt_cant_be_asked: UnaskablePolicy,
    /// How long RT may still be storing a post after its last sign (`RT_SETTLE_SECONDS`);
    /// `None`: `RT_TIMEOUT`, which the rule in docs/operate.md (Timeouts) makes 3 × RT's slowest answer.
    pub rt_settle: Option<Duration>,
    /// The function's own RT as its mail names it (`RT_ORGANIZATION`, `RT_NAME`): with an
    /// empty organization, no threading (issue 22).
    pub rt_identity: RtIdentity,
    /// Machine mail, storms and loops (issue 23).
    pub hold: crate::core::storm::HoldSettings,
}

/// The routing table object's text, as read from S3, with where it was read.
#[derive(Debug, Clone, Copy)]
pub struct RoutesObjectText<'a> {
    /// `s3://bucket/key`, for messages.
    pub location: &'a str,
    /// The table as written.
    pub text: &'a str,
}

/// What a route whose last post may have reached RT does when RT's API can't be asked
/// (down, 401, no time left), once RT can no longer be storing that post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaskablePolicy {
    /// Leave the route for the retry (and finally the dead-letter queue): never a
    /// duplicate. The default: with an RT login, exactly once is kept.
    Retry,
    /// Post again (a duplicate is possible), logged.
    Post,
}

impl LambdaConfig {
    /// Reads the configuration through `var` (the process environment in production).
    /// With `ROUTES_S3_KEY` set this fails: the table object is read by
    /// [`crate::lambda::wiring`], which calls [`Self::from_vars_with`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::from_vars_with(var, None)
    }

    /// As [`Self::from_vars`], with the text of the routing table object
    /// (`ROUTES_S3_KEY`) added to `ROUTES` and `ROUTES_FILE`.
    pub fn from_vars_with(
        var: impl Fn(&str) -> Option<String>,
        routes_object: Option<RoutesObjectText<'_>>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let invalid = |var: &'static str, reason: &str| ConfigError::Invalid {
            var,
            reason: reason.to_string(),
        };

        let routes = routes_with_object(&var, routes_object)?;

        let timeout_secs = match get("RT_TIMEOUT") {
            None => DEFAULT_RT_TIMEOUT_SECS,
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| invalid("RT_TIMEOUT", "must be a whole number of seconds above 0"))?,
        };
        let verify = parse_bool(get("RT_VERIFY_TLS"), true).map_err(|r| invalid("RT_VERIFY_TLS", &r))?;
        let tls = match (verify, get("RT_CA_FILE")) {
            (false, _) => TlsPolicy::NoVerify,
            (true, Some(path)) => TlsPolicy::CaFile(PathBuf::from(path)),
            (true, None) => TlsPolicy::SystemRoots,
        };
        let redirect_hosts = get("RT_REDIRECT_HOSTS")
            .map(|v| {
                v.split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let rt = HttpGatewayConfig {
            base_url: required("RT_URL")?,
            timeout: Some(Duration::from_secs(timeout_secs)),
            tls,
            user_agent: concat!("rt-mailgate-lambda/", env!("CARGO_PKG_VERSION")).to_string(),
            // Filled in at cold start from RT_SECRET_ID (I/O is not this module's).
            credentials: Credentials::default(),
            other_hosts: OtherHosts::Only(redirect_hosts),
        };
        // The URL and the CA file are checked now, at cold start.
        rt.validate()?;
        let allow_plain_http = allow_plain_http(&var)?;
        // One rule for every URL that names an RT; loopback is RT only off Lambda.
        let rules = UrlRules {
            allow_plain_http,
            loopback_is_rt: !runs_in_lambda(&var),
        };
        let base = url::Url::parse(&rt.base_url).map_err(|_| invalid("RT_URL", "is not a URL"))?;
        check_rt_url(&base, rules).map_err(|e| invalid("RT_URL", &e.to_string()))?;
        refuse_credentials("RT_URL", &base)?;
        if let Some(api) = get("RT_API_URL") {
            let api = url::Url::parse(&api)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| invalid("RT_API_URL", "is not an http:// or https:// URL"))?;
            check_rt_url(&api, rules).map_err(|e| invalid("RT_API_URL", &e.to_string()))?;
            refuse_credentials("RT_API_URL", &api)?;
        }
        check_route_urls(&routes, rules)?;

        let line_endings = match get("LINE_ENDINGS").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("lf") => LineEndings::CrlfToLf,
            Some("raw") => LineEndings::Keep,
            Some(_) => return Err(invalid("LINE_ENDINGS", "must be `lf` or `raw`")),
        };
        let disposition = match get("SES_DISPOSITION") {
            None => Disposition::Continue,
            Some(v) => v.parse().map_err(|r: String| invalid("SES_DISPOSITION", &r))?,
        };
        let choice = |var: &'static str, default: &str, allowed: &[&str]| -> Result<String, ConfigError> {
            let value = get(var)
                .map(|v| v.to_ascii_lowercase())
                .unwrap_or_else(|| default.to_string());
            if allowed.contains(&value.as_str()) {
                Ok(value)
            } else {
                Err(invalid(var, &format!("must be one of {}", allowed.join(", "))))
            }
        };
        let verdict_policy = VerdictPolicy {
            drop_virus: choice("VIRUS_POLICY", "drop", &["drop", "pass"])? == "drop",
            spam: match choice("SPAM_POLICY", "tag", &["tag", "pass", "drop"])?.as_str() {
                "pass" => SpamPolicy::Pass,
                "drop" => SpamPolicy::Drop,
                _ => SpamPolicy::Tag,
            },
            honour_dmarc_reject: choice("DMARC_REJECT", "honour", &["honour", "ignore"])? == "honour",
        };
        let notices = NoticeConfig {
            operator: get("OPERATOR_EMAIL"),
            to_senders: parse_bool(get("SENDER_NOTICES"), false).map_err(|r| invalid("SENDER_NOTICES", &r))?,
            from: get("NOTICE_FROM"),
        };
        if (notices.operator.is_some() || notices.to_senders) && notices.from.is_none() {
            return Err(invalid(
                "NOTICE_FROM",
                "must be set (an SES-verified address) when OPERATOR_EMAIL or SENDER_NOTICES is",
            ));
        }
        for (var, address) in [("OPERATOR_EMAIL", &notices.operator), ("NOTICE_FROM", &notices.from)] {
            if address
                .as_deref()
                .is_some_and(|a| !a.contains('@') || a.contains(char::is_whitespace))
            {
                return Err(invalid(var, "is not an email address"));
            }
        }
        let route_concurrency = match get("ROUTE_CONCURRENCY") {
            None => 4,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=16).contains(n))
                .ok_or_else(|| invalid("ROUTE_CONCURRENCY", "must be a whole number from 1 to 16"))?,
        };
        let max_routes_per_mail = match get("MAX_ROUTES_PER_MAIL") {
            None => DEFAULT_MAX_ROUTES_PER_MAIL,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| invalid("MAX_ROUTES_PER_MAIL", "must be a whole number from 1 to 1000"))?,
        };
        let max_mail_bytes = match get("MAX_MAIL_BYTES") {
            None => None,
            Some(v) => Some(
                v.parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| invalid("MAX_MAIL_BYTES", "must be a number of bytes above 0"))?,
            ),
        };
        let records_prefix =
            get("RECORDS_PREFIX").unwrap_or_else(|| crate::aws::records::DEFAULT_RECORDS_PREFIX.to_string());
        let prefix = var("MAIL_PREFIX").unwrap_or_default();
        let routes_object_key = routes_object_key(&var)?;
        let routes_check_interval = match get("ROUTES_S3_CHECK_SECONDS") {
            None => Duration::from_secs(60),
            Some(v) => Duration::from_secs(
                v.parse::<u64>()
                    .ok()
                    .ok_or_else(|| invalid("ROUTES_S3_CHECK_SECONDS", "must be a whole number of seconds"))?,
            ),
        };
        let mail_domains = get("MAIL_DOMAINS")
            .map(|v| {
                v.split(',')
                    .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
                    .filter(|d| !d.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let rt_settle = match get("RT_SETTLE_SECONDS") {
            None => None,
            Some(v) => Some(Duration::from_secs(
                v.parse::<u64>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| invalid("RT_SETTLE_SECONDS", "must be a whole number of seconds above 0"))?,
            )),
        };
        let when_rt_cant_be_asked = match choice("WHEN_RT_CANT_BE_ASKED", "retry", &["retry", "post"])?.as_str() {
            "post" => UnaskablePolicy::Post,
            _ => UnaskablePolicy::Retry,
        };
        let rt_identity = RtIdentity {
            organization: get("RT_ORGANIZATION").unwrap_or_default(),
            rtname: get("RT_NAME").unwrap_or_default(),
            queue_tags: Vec::new(),
            by_message_id: parse_bool(get("RT_THREAD_BY_MESSAGE_ID"), true)
                .map_err(|r| invalid("RT_THREAD_BY_MESSAGE_ID", &r))?,
            reopen_after_days: match get("RT_REOPEN_AFTER_DAYS") {
                None => 0,
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&d| d <= 36_500)
                    .ok_or_else(|| invalid("RT_REOPEN_AFTER_DAYS", "must be a whole number of days (0: off)"))?,
            },
        };
        let hold = crate::core::storm::HoldSettings::from_vars(get).map_err(|bad| ConfigError::Invalid {
            var: bad.var,
            reason: bad.reason,
        })?;
        Ok(Self {
            hold,
            rt_identity,
            rt_settle,
            mail_domains,
            routes_object_key,
            routes_check_interval,
            when_rt_cant_be_asked,
            verdict_policy,
            notices,
            max_mail_bytes,
            secret_id: get("RT_SECRET_ID"),
            rt_api_url: get("RT_API_URL"),
            route_concurrency,
            max_routes_per_mail,
            allow_plain_http,
            rt,
            bucket: required("MAIL_BUCKET")?,
            prefix,
            records_prefix,
            routes,
            line_endings,
            disposition,
            s3_force_path_style: parse_bool(get("S3_FORCE_PATH_STYLE"), false)
                .map_err(|r| invalid("S3_FORCE_PATH_STYLE", &r))?,
        })
    }

    /// The domains the routes name that `MAIL_DOMAINS` leaves out: the receipt rule
    /// never receives their mail. Empty when `MAIL_DOMAINS` is not set.
    pub fn unreceived_domains(&self) -> Vec<String> {
        if self.mail_domains.is_empty() {
            return Vec::new();
        }
        let coverage = self.routes.coverage();
        coverage
            .domains
            .into_iter()
            .filter(|d| !self.mail_domains.contains(d))
            .collect()
    }

    /// The S3 key of a mail.
    pub fn object_key(&self, message_id: &str) -> String {
        format!("{}{message_id}", self.prefix)
    }

    /// The key to read a mail from: the event's own `objectKey` (buffered mode), else
    /// `MAIL_PREFIX + messageId`. Either must lie under `MAIL_PREFIX` and outside the
    /// delivery records: an event is outside input, and one naming
    /// `delivery-records/...` would otherwise have the function post a record to RT.
    pub fn mail_key(&self, message_id: &str, event_key: Option<&str>) -> Result<String, String> {
        let key = event_key.map_or_else(|| self.object_key(message_id), str::to_string);
        if !key.starts_with(&self.prefix) || key.len() == self.prefix.len() {
            return Err(format!("object key `{key}` is not under MAIL_PREFIX `{}`", self.prefix));
        }
        if key.starts_with(&self.records_prefix) {
            return Err(format!("object key `{key}` names a delivery record, not a mail"));
        }
        Ok(key)
    }
}

/// The routing table object's key (`ROUTES_S3_KEY`), if set: never under `MAIL_PREFIX`
/// or `RECORDS_PREFIX`, where SES and the function write (a mail read as a table would
/// show its lines in the error).
pub fn routes_object_key(var: impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let Some(key) = get("ROUTES_S3_KEY") else {
        return Ok(None);
    };
    let prefix = var("MAIL_PREFIX").unwrap_or_default();
    let records_prefix =
        get("RECORDS_PREFIX").unwrap_or_else(|| crate::aws::records::DEFAULT_RECORDS_PREFIX.to_string());
    if prefix.is_empty() || key.starts_with(&prefix) || key.starts_with(&records_prefix) {
        return Err(ConfigError::Invalid {
            var: "ROUTES_S3_KEY",
            reason: "must lie outside MAIL_PREFIX (which must not be empty) and RECORDS_PREFIX, \
                     e.g. config/routes.txt"
                .into(),
        });
    }
    Ok(Some(key))
}

/// The routing table alone, read as [`LambdaConfig::from_vars`] reads it (`ROUTES`,
/// `ROUTES_FILE`, `SUBADDRESS_SEPARATOR`): for tools that explain routes without the
/// rest of the function's settings. With `ROUTES_S3_KEY` set it fails, saying so: a
/// table without the object's routes would explain wrongly. The routes' own `--url`s
/// are held to the deployed function's rule ([`UrlRules::deployed`], `RT_ALLOW_HTTP`
/// read as the function reads it): a table the function would refuse is refused here.
pub fn routes_from_vars(var: impl Fn(&str) -> Option<String>) -> Result<RoutingTable, ConfigError> {
    let routes = routes_with_object(&var, None)?;
    check_route_urls(&routes, UrlRules::deployed(allow_plain_http(&var)?))?;
    Ok(routes)
}

/// `RT_URL` as the deployed function would check it: `Ok(None)` when unset. For tools
/// that describe the deployed function (`rt-mailgate-routes explain`): loopback is
/// refused, as it is in Lambda.
pub fn deployed_rt_url(var: impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(text) = var("RT_URL").map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let invalid = |reason: String| ConfigError::Invalid { var: "RT_URL", reason };
    let url = url::Url::parse(&text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| invalid("is not an http:// or https:// URL".into()))?;
    check_rt_url(&url, UrlRules::deployed(allow_plain_http(&var)?)).map_err(|e| invalid(e.to_string()))?;
    Ok(Some(text))
}

/// `RT_ALLOW_HTTP`.
fn allow_plain_http(var: impl Fn(&str) -> Option<String>) -> Result<bool, ConfigError> {
    let value = var("RT_ALLOW_HTTP")
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    parse_bool(value, false).map_err(|reason| ConfigError::Invalid {
        var: "RT_ALLOW_HTTP",
        reason,
    })
}

/// Each route's own `--url` under the rule `RT_URL` keeps: a route can't post in clear
/// text, or to the function itself, where the function's RT could not.
fn check_route_urls(routes: &RoutingTable, rules: UrlRules) -> Result<(), ConfigError> {
    for target in routes.targets() {
        // The route parser made it a canonical http(s) URL with a host.
        let Ok(url) = url::Url::parse(&target.url) else {
            continue;
        };
        check_rt_url(&url, rules).map_err(ConfigError::RouteUrl)?;
    }
    Ok(())
}

/// The routing table from `ROUTES`, `ROUTES_FILE` and, when `ROUTES_S3_KEY` is set, the
/// object's text (which must then be given), in that order.
pub fn routes_with_object(
    var: impl Fn(&str) -> Option<String>,
    object: Option<RoutesObjectText<'_>>,
) -> Result<RoutingTable, ConfigError> {
    let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    if get("ROUTES_S3_KEY").is_some() && object.is_none() {
        return Err(ConfigError::Invalid {
            var: "ROUTES_S3_KEY",
            reason: "the table is in S3 and was not read here: give a copy with --routes-file \
                     (aws s3 cp s3://BUCKET/KEY routes.txt)"
                .into(),
        });
    }
    let mut routes_text = get("ROUTES").unwrap_or_default();
    if let Some(path) = get("ROUTES_FILE") {
        let file = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
            var: "ROUTES_FILE",
            reason: format!("{path}: {e}"),
        })?;
        routes_text.push('\n');
        routes_text.push_str(&file);
    }
    if let Some(object) = object {
        routes_text.push('\n');
        routes_text.push_str(object.text);
    }
    if routes_text.trim().is_empty() {
        return Err(match object {
            Some(object) => ConfigError::Invalid {
                var: "ROUTES_S3_KEY",
                reason: format!("{} holds no routes (nor do ROUTES and ROUTES_FILE)", object.location),
            },
            None => ConfigError::Missing("ROUTES (or ROUTES_FILE, ROUTES_S3_KEY)"),
        });
    }
    let separator = match get("SUBADDRESS_SEPARATOR").as_deref() {
        None => Some('+'),
        Some(s) if s.eq_ignore_ascii_case("none") => None,
        Some(s) if s.chars().count() == 1 && !s.starts_with(['@', ':', ';', '#']) => s.chars().next(),
        Some(_) => {
            return Err(ConfigError::Invalid {
                var: "SUBADDRESS_SEPARATOR",
                reason: "must be one character (not @ : ; #) or `none`".into(),
            })
        }
    };
    RoutingTable::parse(&routes_text, separator).map_err(|source| match object {
        // Comments only: say where the routes were expected.
        Some(object) if source.number == 0 => ConfigError::Invalid {
            var: "ROUTES_S3_KEY",
            reason: format!("{} holds no routes (nor do ROUTES and ROUTES_FILE)", object.location),
        },
        Some(object) => ConfigError::RoutesWithObject {
            location: object.location.to_string(),
            source,
        },
        None => ConfigError::Routes(source),
    })
}

/// The AWS SDK's endpoint variables (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`)
/// among `vars` that are set but blank. The template declares `AWS_ENDPOINT_URL` empty
/// (so `sam local --env-vars` may set it), but the SDK takes an empty value as the
/// endpoint itself: S3 would be called at "" and every read would fail. The function
/// removes these at start, so a deploy reaches AWS's own endpoints as if never declared.
pub fn blank_endpoint_vars(vars: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    vars.into_iter()
        .filter(|(name, value)| {
            (name == "AWS_ENDPOINT_URL" || name.starts_with("AWS_ENDPOINT_URL_")) && value.trim().is_empty()
        })
        .map(|(name, _)| name)
        .collect()
}

/// A URL in the function's plain environment may not carry `user:password@` (anyone
/// who may read the function's configuration would read it): as a route's `--url`,
/// credentials belong in the Secrets Manager secret. The URL itself is not echoed.
fn refuse_credentials(var: &'static str, url: &url::Url) -> Result<(), ConfigError> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        var,
        reason: "holds credentials (`user:password@`): put them in the RT_SECRET_ID secret \
                 (basic auth as `username`/`password`); the URL names only the RT"
            .into(),
    })
}

fn parse_bool(value: Option<String>, default: bool) -> Result<bool, String> {
    match value.map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "yes" | "1" | "on") => Ok(true),
        Some("false" | "no" | "0" | "off") => Ok(false),
        Some(other) => Err(format!("`{other}` is not true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("RT_URL", "https://rt.example.com"),
            ("MAIL_BUCKET", "mail"),
            ("ROUTES", "bugs@example.com: --queue bugs"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            vars.insert(k.to_string(), v.to_string());
        }
        LambdaConfig::from_vars(|k| vars.get(k).cloned())
    }

    #[test]
    fn blank_endpoint_variables_are_picked_out_and_nothing_else() {
        let vars = [
            ("AWS_ENDPOINT_URL", ""),
            ("AWS_ENDPOINT_URL_S3", "  "),
            ("AWS_ENDPOINT_URL_SESV2", "http://172.17.0.1:4566"),
            ("AWS_REGION", ""),
            ("MY_AWS_ENDPOINT_URL", ""),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(blank_endpoint_vars(vars), ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]);
        let set = [("AWS_ENDPOINT_URL".to_string(), "http://127.0.0.1:4566".to_string())];
        assert!(blank_endpoint_vars(set).is_empty());
    }

    #[test]
    fn the_templates_empty_sam_local_variables_read_as_unset() {
        // template.yaml declares these empty for `sam local` to override.
        let c = config(&[("S3_FORCE_PATH_STYLE", ""), ("AWS_ENDPOINT_URL", "")]).unwrap();
        assert!(!c.s3_force_path_style, "virtual-hosted S3 URLs, as on AWS");
        assert!(config(&[("S3_FORCE_PATH_STYLE", "true")]).unwrap().s3_force_path_style);
    }

    #[test]
    fn defaults_are_what_an_admin_expects() {
        let c = config(&[]).unwrap();
        assert_eq!(c.prefix, "");
        assert_eq!(c.line_endings, LineEndings::CrlfToLf);
        assert_eq!(c.disposition, Disposition::Continue);
        assert_eq!(c.rt.tls, TlsPolicy::SystemRoots);
        assert_eq!(c.rt.timeout, Some(Duration::from_secs(600)));
        assert_eq!(
            config(&[("RT_TIMEOUT", "45")]).unwrap().rt.timeout,
            Some(Duration::from_secs(45))
        );
        assert!(c.routes.route("bugs+5@example.com").is_some());
        assert_eq!(c.max_routes_per_mail, DEFAULT_MAX_ROUTES_PER_MAIL);
        assert_eq!(config(&[("MAX_ROUTES_PER_MAIL", "3")]).unwrap().max_routes_per_mail, 3);
        assert_eq!(
            config(&[("MAIL_PREFIX", "inbound/")]).unwrap().object_key("abc"),
            "inbound/abc"
        );
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("RT_URL", "")], "RT_URL is not set"),
            (&[("RT_URL", "rt.example.com")], "not a valid http"),
            (&[("MAIL_BUCKET", " ")], "MAIL_BUCKET is not set"),
            (&[("ROUTES", "")], "ROUTES (or ROUTES_FILE, ROUTES_S3_KEY) is not set"),
            (
                &[("ROUTES_S3_KEY", "config/routes.txt")],
                "ROUTES_S3_KEY: the table is in S3",
            ),
            (&[("ROUTES_S3_CHECK_SECONDS", "often")], "ROUTES_S3_CHECK_SECONDS"),
            (
                &[("ROUTES", "bugs@example.com: --queue bugs --action fix")],
                "ROUTES: route 1",
            ),
            (
                &[("ROUTES_FILE", "/nonexistent/routes")],
                "ROUTES_FILE: /nonexistent/routes",
            ),
            (&[("RT_TIMEOUT", "soon")], "RT_TIMEOUT"),
            (&[("RT_TIMEOUT", "0")], "RT_TIMEOUT"),
            (&[("RT_VERIFY_TLS", "maybe")], "RT_VERIFY_TLS"),
            (&[("RT_CA_FILE", "/nonexistent/ca.pem")], "/nonexistent/ca.pem"),
            (&[("LINE_ENDINGS", "crlf")], "LINE_ENDINGS"),
            (&[("SES_DISPOSITION", "STOP")], "SES_DISPOSITION"),
            (&[("SUBADDRESS_SEPARATOR", "++")], "SUBADDRESS_SEPARATOR"),
            (&[("OPERATOR_EMAIL", "ops@example.com")], "NOTICE_FROM: must be set"),
            (
                &[("OPERATOR_EMAIL", "ops"), ("NOTICE_FROM", "rt@example.com")],
                "OPERATOR_EMAIL: is not an email",
            ),
            (&[("SPAM_POLICY", "bin")], "SPAM_POLICY: must be one of tag, pass, drop"),
            (&[("VIRUS_POLICY", "keep")], "VIRUS_POLICY"),
            (&[("DMARC_REJECT", "maybe")], "DMARC_REJECT"),
            (&[("MAX_MAIL_BYTES", "40MB")], "MAX_MAIL_BYTES"),
            (&[("MAX_ROUTES_PER_MAIL", "0")], "MAX_ROUTES_PER_MAIL"),
            (&[("MAX_ROUTES_PER_MAIL", "ten")], "MAX_ROUTES_PER_MAIL"),
        ];
        for (pairs, expected) in cases {
            let err = config(pairs).unwrap_err().to_string();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
    }

    /// A `Key: value` line of template.yaml, the first after `after` (a line of its own).
    fn template_number(template: &str, after: &str, key: &str) -> u64 {
        let block = template
            .split_once(&format!("\n{after}\n"))
            .unwrap_or_else(|| panic!("template.yaml has no line `{after}`"))
            .1;
        let line = block
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} after `{after}`"));
        line[key.len() + 1..].trim().parse().expect(line)
    }

    #[test]
    fn the_template_keeps_rt_timeout_inside_the_function_timeout() {
        let template = include_str!("../../template.yaml");
        let function_timeout = template_number(template, "  MailgateFunction:", "Timeout");
        let default = template_number(template, "  RtTimeout:", "Default");
        let max = template_number(template, "  RtTimeout:", "MaxValue");
        assert_eq!(
            default, DEFAULT_RT_TIMEOUT_SECS,
            "the template's default is the function's"
        );
        // One post at its limit, plus reading a 40 MB mail from S3 and uploading it.
        assert!(
            max + 120 <= function_timeout,
            "RtTimeout MaxValue {max} vs Timeout {function_timeout}"
        );
        assert!(function_timeout <= 900, "Lambda stops any function at 15 minutes");
        // Lambda's advice for SQS sources: visibility at least six function timeouts.
        let visibility = template_number(template, "  MailQueue:", "VisibilityTimeout");
        assert!(visibility >= 6 * function_timeout, "VisibilityTimeout {visibility}");
    }

    #[test]
    fn the_s3_routing_table_joins_the_others() {
        let vars: HashMap<&str, &str> = [
            ("RT_URL", "https://rt.example.com"),
            ("MAIL_BUCKET", "mail"),
            ("MAIL_PREFIX", "inbound/"),
            ("ROUTES_S3_KEY", "config/routes.txt"),
        ]
        .into_iter()
        .collect();
        let var = |k: &str| vars.get(k).map(|v| v.to_string());
        let object = |text| RoutesObjectText {
            location: "s3://mail/config/routes.txt",
            text,
        };
        // The import's output as it is: `#` comments, one route a line.
        let c = LambdaConfig::from_vars_with(
            var,
            Some(object("# from /etc/aliases\nbugs@example.com: --queue bugs\n")),
        )
        .unwrap();
        assert!(c.routes.route("bugs+7@example.com").is_some());
        assert_eq!(c.routes_object_key.as_deref(), Some("config/routes.txt"));
        assert_eq!(c.routes_check_interval, Duration::from_secs(60));
        let err = LambdaConfig::from_vars_with(var, Some(object("# only comments\n")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("s3://mail/config/routes.txt holds no routes"), "{err}");
        let err =
            LambdaConfig::from_vars_with(var, Some(object("a@example.com: --queue a\nb@example.com --queue b\n")))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("ROUTES_S3_KEY s3://mail/config/routes.txt): route 2 `b@example.com --queue b`"),
            "{err}"
        );
        for key in ["inbound/routes.txt", "delivery-records/routes"] {
            let var = |k: &str| match k {
                "ROUTES_S3_KEY" => Some(key.to_string()),
                _ => var(k),
            };
            let err = LambdaConfig::from_vars_with(var, Some(object("a@example.com: --queue a")))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("ROUTES_S3_KEY: must lie outside MAIL_PREFIX"),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn routes_outside_the_mail_domains_are_named() {
        let routes = "bugs@example.com: --queue bugs; *@helpdesk.example.com: --action correspond";
        let c = config(&[("ROUTES", routes), ("MAIL_DOMAINS", " Example.com ,")]).unwrap();
        assert_eq!(c.mail_domains, ["example.com"]);
        assert_eq!(c.unreceived_domains(), ["helpdesk.example.com"]);
        let c = config(&[("ROUTES", routes), ("MAIL_DOMAINS", "example.com,helpdesk.example.com")]).unwrap();
        assert!(c.unreceived_domains().is_empty());
        assert!(config(&[("ROUTES", routes)]).unwrap().unreceived_domains().is_empty());
    }

    #[test]
    fn the_templates_route_cap_is_the_functions_default() {
        let template = include_str!("../../template.yaml");
        let default = template_number(template, "  MaxRoutesPerMail:", "Default");
        assert_eq!(default as usize, DEFAULT_MAX_ROUTES_PER_MAIL);
        // The template's mail size default is SES's own limit: nothing SES takes is refused.
        assert_eq!(
            template_number(template, "  MaxMailBytes:", "Default"),
            40 * 1024 * 1024
        );
    }

    #[test]
    fn only_keys_under_the_mail_prefix_are_read() {
        let c = config(&[("MAIL_PREFIX", "inbound/")]).unwrap();
        assert_eq!(c.mail_key("m1", None).unwrap(), "inbound/m1");
        assert_eq!(c.mail_key("m1", Some("inbound/m1")).unwrap(), "inbound/m1");
        for hostile in ["delivery-records/m1/abc", "other/m1", "inbound/"] {
            assert!(c.mail_key("m1", Some(hostile)).is_err(), "{hostile}");
        }
        let flat = config(&[]).unwrap();
        assert!(flat.mail_key("delivery-records/m1/abc", None).is_err());
        assert!(flat.mail_key("m1", Some("delivery-records/x")).is_err());
        assert_eq!(flat.mail_key("m1", None).unwrap(), "m1");
    }

    #[test]
    fn plain_http_to_another_machine_needs_consent() {
        let err = config(&[("RT_URL", "http://u:hush@rt.example")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RT_ALLOW_HTTP") && !err.contains("hush"), "{err}");
        assert!(config(&[("RT_URL", "http://rt.example"), ("RT_ALLOW_HTTP", "true")]).is_ok());
        assert!(config(&[("RT_URL", "http://127.0.0.1:8080")]).is_ok());
    }

    #[test]
    fn a_routes_own_url_keeps_the_rule_rt_url_keeps() {
        let route = |url: &str| format!("bugs@example.com: --queue bugs; ops@example.com: --queue Ops --url {url}");
        // Plain http to another machine: refused, as RT_URL is, unless RT_ALLOW_HTTP.
        let plain = route("http://rt-ops.example.com/rt");
        let err = config(&[("ROUTES", &plain)]).unwrap_err().to_string();
        assert!(
            err.starts_with("routing table (ROUTES, ROUTES_FILE, ROUTES_S3_KEY): a route's --url is refused")
                && err.contains("http://rt-ops.example.com/rt is plain http://")
                && err.contains("RT_ALLOW_HTTP=true"),
            "{err}"
        );
        assert!(config(&[("ROUTES", &plain), ("RT_ALLOW_HTTP", "true")]).is_ok());
        assert!(config(&[("ROUTES", &route("https://rt-ops.example.com/rt"))]).is_ok());
        // Loopback: RT only when the function runs off Lambda (as the tests run it).
        let local = route("http://localhost:8080");
        assert!(config(&[("ROUTES", &local)]).is_ok());
        for sandbox in ["LAMBDA_TASK_ROOT", "AWS_SAM_LOCAL"] {
            let err = config(&[("ROUTES", &local), (sandbox, "/var/task"), ("RT_ALLOW_HTTP", "true")])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("a route's --url is refused") && err.contains("http://localhost:8080/ is this machine"),
                "{err}"
            );
        }
    }

    #[test]
    fn rt_url_on_loopback_is_refused_in_lambda() {
        for (var, url) in [("RT_URL", "http://127.0.0.1:8089"), ("RT_API_URL", "https://localhost")] {
            assert!(config(&[(var, url)]).is_ok(), "{var} off Lambda");
            let err = config(&[(var, url), ("LAMBDA_TASK_ROOT", "/var/task")])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{var}: RT URL {url}")) && err.contains("the function itself"),
                "{err}"
            );
        }
    }

    #[test]
    fn the_tools_hold_routes_and_rt_url_to_the_deployed_rule() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        // Loopback is refused even where the tool runs (not in Lambda).
        let err = routes_from_vars(vars(&[("ROUTES", "a@example.com: --queue a --url https://localhost")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("https://localhost/ is this machine"), "{err}");
        let plain = &[("ROUTES", "a@example.com: --queue a --url http://rt.internal")];
        assert!(routes_from_vars(vars(plain))
            .unwrap_err()
            .to_string()
            .contains("RT_ALLOW_HTTP"));
        let allowed = &[
            ("ROUTES", "a@example.com: --queue a --url http://rt.internal"),
            ("RT_ALLOW_HTTP", "true"),
        ];
        assert!(routes_from_vars(vars(allowed)).is_ok());
        assert_eq!(deployed_rt_url(vars(&[])).unwrap(), None);
        let err = deployed_rt_url(vars(&[("RT_URL", "http://127.0.0.1")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("RT_URL: RT URL http://127.0.0.1/ is this machine"),
            "{err}"
        );
        let err = deployed_rt_url(vars(&[("RT_URL", "http://rt.internal")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RT_ALLOW_HTTP"), "{err}");
        assert_eq!(
            deployed_rt_url(vars(&[("RT_URL", "https://rt.example.com")]))
                .unwrap()
                .as_deref(),
            Some("https://rt.example.com")
        );
    }

    #[test]
    fn rt_urls_refuse_credentials_as_routes_do() {
        for (var, url) in [
            ("RT_URL", "https://mailgate:hush@rt.example"),
            ("RT_URL", "https://mailgate@rt.example"),
            ("RT_API_URL", "https://api:hush@rt.example"),
        ] {
            let err = config(&[(var, url)]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{var}: holds credentials")) && !err.contains("hush"),
                "{err}"
            );
        }
    }

    #[test]
    fn tls_and_separator_settings() {
        assert_eq!(
            config(&[("RT_VERIFY_TLS", "false")]).unwrap().rt.tls,
            TlsPolicy::NoVerify
        );
        let c = config(&[("SUBADDRESS_SEPARATOR", "none")]).unwrap();
        assert!(c.routes.route("bugs+5@example.com").is_none());
        assert_eq!(
            config(&[("SES_DISPOSITION", "stop_rule_set")]).unwrap().disposition,
            Disposition::StopRuleSet
        );
        assert_eq!(
            config(&[("LINE_ENDINGS", "RAW")]).unwrap().line_endings,
            LineEndings::Keep
        );
    }
}
