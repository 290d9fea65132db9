//! `rt-mailgate-routes`: the Lambda's routing table from the admin's side.
//!
//! - `import-aliases FILE --domain example.com`: an `/etc/aliases` file's rt-mailgate
//!   pipes as routes on stdout (fit for `ROUTES_FILE`); every alias skipped, and what a
//!   route leaves out, on stderr (see `rt_mailgate::core::aliases`). What the admin must
//!   set is named as the template's parameters (`RtUrl`, `RtTimeout`, ...).
//! - Both commands hold every RT URL to the rule the function keeps at cold start
//!   (`rt_mailgate::core::url_policy::check_rt_url`, as deployed in Lambda): no loopback,
//!   no plain `http://` unless `--allow-plain-http` (the stack's `AllowPlainHttp`;
//!   `explain` also reads `RT_ALLOW_HTTP`). What the function would refuse, they refuse.
//! - `explain ADDRESS`: where the function would send mail for that address, read from
//!   the same environment as the function (`ROUTES`, `ROUTES_FILE`,
//!   `SUBADDRESS_SEPARATOR`, `RT_URL`, `RT_SECRET_ID`); flags override those variables.
//!   The RT is the route's own `--url` (and `--secret`) or the function's; credentials in
//!   a URL are shown as `***`. With `MAIL_DOMAINS` (`--mail-domains`) it also says
//!   whether the receipt rule receives the address at all.
//! - `explain --recipients`: the template's `MailDomains` and `ReceiptRecipients` for the
//!   table: the domains the routes name, and the only addresses SES should accept; each
//!   checked against the most a parameter takes (CloudFormation: 4,096 bytes a value;
//!   the template's own `MaxLength`), and whether the table fits `Routes` at all.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rt_mailgate::core::aliases::{import_aliases_with, report};
use rt_mailgate::core::redact::redact_url;
use rt_mailgate::core::route::RoutingTable;
use rt_mailgate::lambda::config::{deployed_rt_url, routes_from_vars};
use rt_mailgate::rt::http::GATEWAY_PATH;

/// The Lambda's routing table: import it from /etc/aliases, explain where mail goes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Turn an aliases file's rt-mailgate pipes into routes (stdout); skips on stderr.
    ImportAliases {
        /// The aliases file, e.g. /etc/aliases.
        file: std::path::PathBuf,
        /// The mail domain the aliases served: `bugs:` becomes `bugs@DOMAIN`.
        #[arg(long)]
        domain: String,
        /// The stack allows plain http:// to RT (AllowPlainHttp=true): keep such URLs.
        #[arg(long)]
        allow_plain_http: bool,
    },
    /// Where would mail for ADDRESS go? Exits 1 when it is not routed (or not received).
    Explain {
        /// An envelope recipient, e.g. bugs+42@example.com.
        #[arg(required_unless_present = "recipients")]
        address: Option<String>,
        /// Print the template's MailDomains and ReceiptRecipients for the table instead.
        #[arg(long, conflicts_with = "address")]
        recipients: bool,
        /// The receipt rule's domains (the template's MailDomains), instead of $MAIL_DOMAINS.
        #[arg(long)]
        mail_domains: Option<String>,
        /// Routing table text, instead of $ROUTES.
        #[arg(long)]
        routes: Option<String>,
        /// Routing table file, instead of $ROUTES_FILE.
        #[arg(long)]
        routes_file: Option<String>,
        /// Sub-address separator (or `none`), instead of $SUBADDRESS_SEPARATOR.
        #[arg(long)]
        separator: Option<String>,
        /// RT's base URL, instead of $RT_URL.
        #[arg(long)]
        rt_url: Option<String>,
        /// The function's RT credentials secret (name or ARN), instead of $RT_SECRET_ID.
        #[arg(long)]
        rt_secret_id: Option<String>,
        /// The stack allows plain http:// to RT (AllowPlainHttp=true), instead of $RT_ALLOW_HTTP.
        #[arg(long)]
        allow_plain_http: bool,
    },
}

fn main() -> ExitCode {
    let result = match Args::parse().command {
        Command::ImportAliases {
            file,
            domain,
            allow_plain_http,
        } => import(&file, &domain, allow_plain_http),
        Command::Explain {
            address,
            recipients,
            mail_domains,
            routes,
            routes_file,
            separator,
            rt_url,
            rt_secret_id,
            allow_plain_http,
        } => {
            // A table given here replaces the function's, the S3 object's too.
            let local_table = (routes.is_some() || routes_file.is_some()).then(String::new);
            let flags = [
                ("ROUTES_S3_KEY", local_table),
                ("ROUTES", routes),
                ("ROUTES_FILE", routes_file),
                ("SUBADDRESS_SEPARATOR", separator),
                ("RT_URL", rt_url),
                ("RT_SECRET_ID", rt_secret_id),
                ("MAIL_DOMAINS", mail_domains),
                ("RT_ALLOW_HTTP", allow_plain_http.then(|| "true".to_string())),
            ];
            let var = |name: &str| match flags.iter().find(|(n, _)| *n == name) {
                Some((_, Some(value))) => Some(value.clone()),
                _ => std::env::var(name).ok(),
            };
            match address {
                Some(address) if !recipients => explain(&address, var),
                _ => print_recipients(var),
            }
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rt-mailgate-routes: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// True when at least one route was made.
fn import(file: &std::path::Path, domain: &str, allow_plain_http: bool) -> anyhow::Result<bool> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        anyhow::anyhow!("{} is not UTF-8 (line {line})", file.display())
    })?;
    let items = import_aliases_with(&text, domain, allow_plain_http)?;
    let report = report(&items, &file.display().to_string());
    for message in &report.messages {
        eprintln!("{message}");
    }
    print!("{}", report.routes);
    eprintln!(
        "{} routes made, {} aliases or lines skipped",
        report.routed, report.skipped
    );
    if let Ok(table) = RoutingTable::parse(&report.routes, Some('+')) {
        let coverage = table.coverage();
        eprintln!("for the template: {}", parameter("MailDomains", &coverage.domains));
        eprintln!(
            "  and, so that SES refuses every other address: {}",
            parameter("ReceiptRecipients", &coverage.recipients)
        );
        if join(&coverage.recipients).len() > MAX_PARAMETER_BYTES || coverage.recipients.len() > MAX_RULE_RECIPIENTS {
            eprintln!(
                "  (too long for one receipt rule or parameter value: see rt-mailgate-routes explain --recipients)"
            );
        }
    }
    Ok(report.routed > 0)
}

fn join(items: &std::collections::BTreeSet<String>) -> String {
    items.iter().map(String::as_str).collect::<Vec<_>>().join(",")
}

/// `Name=a,b` as one shell word, for `sam deploy --parameter-overrides`: the addresses
/// come from the aliases file, and a pasted line must pass them as they are.
fn parameter(name: &str, items: &std::collections::BTreeSet<String>) -> String {
    rt_mailgate::core::shell::quote(&format!("{name}={}", join(items))).into_owned()
}

/// SES allows this many recipients in one receipt rule.
const MAX_RULE_RECIPIENTS: usize = 100;

/// CloudFormation takes at most this many bytes in one parameter value (its quota,
/// whatever the template says): `ReceiptRecipients` has no smaller `MaxLength`.
const MAX_PARAMETER_BYTES: usize = 4096;

/// template.yaml's `MaxLength` of `MailDomains` (also the function's `MAIL_DOMAINS`,
/// bounded for Lambda's 4 KB of environment).
const MAX_MAIL_DOMAINS_BYTES: usize = 256;

/// template.yaml's `MaxLength` of `Routes`: what Lambda's 4 KB of environment leaves.
const MAX_ROUTES_BYTES: usize = 1000;

/// The table as one `Routes` value (its entries joined by `; `), from `ROUTES` and
/// `ROUTES_FILE` as given: comment and empty lines left out.
fn routes_value_bytes(var: &impl Fn(&str) -> Option<String>) -> usize {
    let mut text = var("ROUTES").unwrap_or_default();
    if let Some(file) = var("ROUTES_FILE").filter(|f| !f.trim().is_empty()) {
        // routes_from_vars has read it already; a failure here only counts nothing.
        text.push('\n');
        text.push_str(&std::fs::read_to_string(file.trim()).unwrap_or_default());
    }
    let entries: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    entries.join("; ").len()
}

/// `explain --recipients`: the template's two lists for this table. True when the
/// explicit list fits one receipt rule and SES's `+label` matching covers the table's
/// sub-addresses.
fn print_recipients(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<bool> {
    let table = routes_from_vars(&var).context("the routing table")?;
    let coverage = table.coverage();
    let (domains, recipients) = (join(&coverage.domains), join(&coverage.recipients));
    println!("{}", parameter("MailDomains", &coverage.domains));
    println!("{}", parameter("ReceiptRecipients", &coverage.recipients));
    let mut fits = true;
    if domains.len() > MAX_MAIL_DOMAINS_BYTES {
        fits = false;
        println!(
            "# MailDomains is {} bytes; the template takes at most {MAX_MAIL_DOMAINS_BYTES} (the function's \
             MAIL_DOMAINS shares Lambda's 4 KB of environment): serve fewer domains from one stack, or \
             deploy a second stack for the rest",
            domains.len()
        );
    }
    if recipients.len() > MAX_PARAMETER_BYTES {
        fits = false;
        println!(
            "# ReceiptRecipients is {} bytes; a CloudFormation parameter value takes at most \
             {MAX_PARAMETER_BYTES}: leave ReceiptRecipients empty (every address of MailDomains is \
             accepted; unrouted ones are alarmed on) or route whole domains with *@domain",
            recipients.len()
        );
    }
    let routes_bytes = routes_value_bytes(&var);
    if routes_bytes > MAX_ROUTES_BYTES {
        println!(
            "# the table is {routes_bytes} bytes as one Routes value; Routes takes at most \
             {MAX_ROUTES_BYTES}: put the table in the bucket instead (aws s3 cp routes.txt \
             s3://BUCKET/config/routes.txt) and set RoutesObjectKey=config/routes.txt"
        );
    }
    if coverage.recipients.len() > MAX_RULE_RECIPIENTS {
        fits = false;
        println!(
            "# {} recipients: an SES receipt rule takes at most {MAX_RULE_RECIPIENTS}; leave ReceiptRecipients \
             empty (every address of MailDomains is accepted; unrouted ones are alarmed on) or route \
             whole domains with *@domain",
            coverage.recipients.len()
        );
    }
    let addresses = coverage.recipients.iter().any(|r| r.contains('@'));
    if addresses && !matches!(table.separator(), Some('+') | None) {
        fits = false;
        println!(
            "# SES matches an address with a +label only: with SUBADDRESS_SEPARATOR={} it would refuse \
             sub-addresses (bugs{}42@...); list whole domains in ReceiptRecipients instead",
            table.separator().unwrap_or('+'),
            table.separator().unwrap_or('+'),
        );
    }
    Ok(fits)
}

/// True when the address is routed.
fn explain(address: &str, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<bool> {
    let table = routes_from_vars(&var).context("the routing table")?;
    // RT_URL under the function's rule, before anything is explained with it.
    let rt_url = deployed_rt_url(&var)?;
    let set = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    // The receipt rule's domains, as the template passes MailDomains to the function.
    if let Some(domains) = set("MAIL_DOMAINS") {
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let received = domains
            .split(',')
            .any(|d| d.trim().trim_start_matches('@').eq_ignore_ascii_case(&domain));
        if !received {
            println!(
                "{address}: not received (the receipt rule takes only MAIL_DOMAINS {domains}; add {domain} to MailDomains)"
            );
            return Ok(false);
        }
    }
    let Some(route) = table.route(address) else {
        println!("{address}: not routed (no route takes it; the function logs it and posts nothing)");
        return Ok(false);
    };
    let request = &route.request;
    let text = |field: &Option<_>, default: &str| match field {
        Some(value) => String::from_utf8_lossy(AsRef::<[u8]>::as_ref(value)).into_owned(),
        None => default.to_string(),
    };
    let header = request
        .extension_header
        .as_deref()
        .map(|h| String::from_utf8_lossy(h).trim_end().to_string());
    let endpoint = |url: &str| format!("{}{GATEWAY_PATH}", redact_url(url.trim_end_matches('/')));
    // The route's own RT, else the function's.
    let (posts_to, secret) = match &request.rt {
        Some(rt) => (
            format!("{} (the route's --url)", endpoint(&rt.url)),
            rt.secret.as_ref().map(|id| format!("{id} (the route's --secret)")),
        ),
        None => (
            rt_url.map_or_else(
                || "RT_URL is not set".to_string(),
                |url| format!("{} (RT_URL)", endpoint(&url)),
            ),
            set("RT_SECRET_ID").map(|id| format!("{id} (RT_SECRET_ID)")),
        ),
    };
    let extension = header.as_deref().and_then(|h| h.strip_prefix("X-RT-Mail-Extension: "));
    println!("{address}: routed");
    println!("  route:     {}", route.entry);
    println!(
        "  queue:     {}",
        text(&request.queue, "(not sent: RT's default queue)")
    );
    println!(
        "  action:    {}",
        text(&request.action, "(not sent: RT takes it as correspondence)")
    );
    println!(
        "  ticket:    {}",
        text(
            &request.ticket,
            "(not sent: RT goes by the subject's ticket tag, or makes a new ticket)"
        )
    );
    println!("  extension: {}", extension.unwrap_or("(none: no sub-address)"));
    println!("  header:    {}", header.as_deref().unwrap_or("(none)"));
    println!("  posts to:  {posts_to}");
    if let Some(secret) = secret {
        println!("  secret:    {secret}");
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parameter's `MaxLength` in template.yaml.
    fn template_max_length(parameter: &str) -> usize {
        let template = include_str!("../../template.yaml");
        let block = template
            .split_once(&format!("\n  {parameter}:\n"))
            .unwrap_or_else(|| panic!("template.yaml has no parameter {parameter}"))
            .1;
        let line = block
            .lines()
            .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
            .find_map(|l| l.trim().strip_prefix("MaxLength:"))
            .unwrap_or_else(|| panic!("{parameter} has no MaxLength"));
        line.trim().parse().unwrap()
    }

    #[test]
    fn the_limits_are_the_templates() {
        assert_eq!(template_max_length("MailDomains"), MAX_MAIL_DOMAINS_BYTES);
        assert_eq!(template_max_length("Routes"), MAX_ROUTES_BYTES);
        const { assert!(MAX_ROUTES_BYTES < MAX_PARAMETER_BYTES && MAX_MAIL_DOMAINS_BYTES < MAX_PARAMETER_BYTES) };
    }
}
