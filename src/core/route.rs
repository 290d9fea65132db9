//! The Lambda's routing table: envelope recipient to rt-mailgate arguments, written the
//! way an RT admin already writes `/etc/aliases` lines:
//!
//! ```text
//! bugs@example.com:         --queue bugs --action correspond --extension ticket
//! bugs-comment@example.com: --queue bugs --action comment --extension ticket
//! *@helpdesk.example.com:   --action correspond
//! ops@example.com:          --queue Ops --url https://rt2.example.com --secret rt2/mailgate
//! ```
//!
//! - Entries are separated by new lines or `;`; `#` starts a comment to the end of the
//!   line.
//! - After the `:`, words are split as a POSIX shell splits them, so a queue name may hold
//!   spaces, quotes, `#` or `;` when quoted: `--queue 'Sales Team'`, `--queue "It's #1"`,
//!   `--queue Sales\ Team`. A `;` or `#` inside quotes (or after a backslash) is part of
//!   the word, not a separator or comment. A quote left open fails the entry; a new line
//!   always ends an entry, even inside quotes.
//! - `*@domain` takes every address of the domain, and its local part names the queue.
//! - A sub-address (`bugs+123@`, separator configurable) is the mail's extension, just as
//!   `$EXTENSION` is for the CLI: it fills the `--extension` field and adds the
//!   `X-RT-Mail-Extension` header.
//! - Addresses compare case-insensitively (domains always are; RT admins expect local
//!   parts to be too).
//! - A route posts to the function's RT (`RT_URL`, credentials from `RT_SECRET_ID`)
//!   unless it names its own: `--url URL` (http or https, with a host and no
//!   `user:password@`) and, when that RT wants credentials, `--secret ID` (the name or
//!   ARN of the Secrets Manager secret holding them; only with `--url`). One function
//!   may so serve several RTs, each with its own credentials ([`RoutingTable::targets`]).
//! - Besides those, only `--queue`, `--action` and `--extension` belong in a route: the
//!   TLS settings and the timeout are the function's own (`--ca-file`,
//!   `--[no-]verify-ssl`, `--timeout`, `--debug`, `--help`, `--jar` are refused).
//! - Any mistake fails the whole table, naming the entry (a URL's credentials shown as
//!   `***`). The checks are pure: whether the secret exists is learnt at cold start.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::action::ActionChain;
use crate::core::extension::ExtensionField;
use crate::core::getopt::parse_args_extended;
use crate::core::outcome::Case;
use crate::core::redact::{redact_url, redact_word};
use crate::core::request::{GatewayRequest, MailgateArgs, RtTarget};
use crate::core::storm::RouteSense;

/// The options a route knows that rt-mailgate itself does not.
/// `--secret`, and the machine-mail and storm settings ([`crate::core::storm::ROUTE_OPTIONS`]:
/// `--auto-replies pass|comment|hold`, `--storm-sender N`, `--storm-route N`,
/// `--storm-window MINUTES`), which decide whether a post is made, never what it is:
/// they are not part of the post's fingerprint or delivery id.
const ROUTE_ONLY_OPTIONS: &[&str] = &["secret", "auto-replies", "storm-sender", "storm-route", "storm-window"];

/// A routing table entry that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {number} `{entry}`: {problem}")]
pub struct RouteError {
    /// 1-based position among the entries.
    pub number: usize,
    /// The entry as written, with any credentials in it shown as `***`.
    pub entry: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Which addresses an entry takes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Pattern {
    /// `local@domain`, lower-cased.
    Exact(String, String),
    /// `*@domain`, lower-cased.
    Domain(String),
}

#[derive(Debug, Clone)]
struct Entry {
    pattern: String,
    args: MailgateArgs,
    /// `--url` and `--secret`, when the entry names its own RT.
    rt: Option<RtTarget>,
    /// `--auto-replies` and the storm bounds, where the entry sets them.
    sense: RouteSense,
}

/// Why a URL can't name an RT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtUrlError {
    /// Not `http://` or `https://` with a host name.
    #[error("--url must be an http:// or https:// URL with a host name")]
    NotHttp,
    /// `user:password@` in the URL (shown nowhere: the URL is not echoed).
    #[error(
        "--url holds credentials (`user:password@`): put them in a Secrets Manager secret \
         and name it with --secret ID; the URL then names only the RT"
    )]
    Credentials,
    /// A `?query` or `#fragment`, which the gateway path can't follow.
    #[error("--url is RT's base URL: it takes no `?query` or `#fragment`")]
    QueryOrFragment,
}

/// An RT's base URL as a route (or an alias) gives it, checked and in one canonical
/// form: `HTTPS://RT.example.com/rt/` is `https://rt.example.com/rt`, so that two
/// spellings of one RT are one [`RtTarget`] (and one delivery fingerprint).
pub fn rt_base_url(text: &str) -> Result<String, RtUrlError> {
    let url = url::Url::parse(text.trim()).map_err(|_| RtUrlError::NotHttp)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(RtUrlError::NotHttp);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(RtUrlError::Credentials);
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(RtUrlError::QueryOrFragment);
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A validated routing table.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    exact: BTreeMap<(String, String), Entry>,
    domains: BTreeMap<String, Entry>,
    separator: Option<char>,
}

/// Where one recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The entry that matched, as written (`bugs@example.com`), for logs.
    pub entry: String,
    /// The post to make.
    pub request: GatewayRequest,
    /// The recipient address chose the queue or the action: a `*@domain` entry (its
    /// local part is the queue), or a sub-address under `--extension queue|action`.
    /// Anyone can write such an address, so a miss on it (RT has no such queue or
    /// action) is the sender's doing, not a broken route: it is counted and reported
    /// apart, and the queue is checked before posting where RT can be asked.
    pub named_by_address: bool,
    /// The entry's own machine-mail and storm settings (unset: the function's).
    pub sense: RouteSense,
}

impl RoutingTable {
    /// Parses and checks a table. `separator` splits sub-addresses (`+`); `None` turns
    /// sub-addressing off.
    pub fn parse(text: &str, separator: Option<char>) -> Result<Self, RouteError> {
        let mut table = Self {
            exact: BTreeMap::new(),
            domains: BTreeMap::new(),
            separator,
        };
        let entries = split_entries(text);
        for (index, line) in entries.iter().map(String::as_str).enumerate() {
            let fail = |problem: String| RouteError {
                number: index + 1,
                entry: shown_entry(line),
                problem,
            };
            let (address, args) = line
                .split_once(':')
                .ok_or_else(|| fail("expected `address: --queue ...`".into()))?;
            let pattern = parse_pattern(address.trim()).map_err(fail)?;
            let (args, rt, sense) = parse_route_args(args).map_err(fail)?;
            let entry = Entry {
                pattern: address.trim().to_string(),
                args,
                rt,
                sense,
            };
            let duplicate = match pattern {
                Pattern::Exact(local, domain) => table.exact.insert((local, domain), entry).is_some(),
                Pattern::Domain(domain) => table.domains.insert(domain, entry).is_some(),
            };
            if duplicate {
                return Err(fail("this address is already routed by an earlier entry".into()));
            }
        }
        if table.exact.is_empty() && table.domains.is_empty() {
            return Err(RouteError {
                number: 0,
                entry: String::new(),
                problem: "the routing table is empty".into(),
            });
        }
        Ok(table)
    }

    /// Where `recipient` goes, or `None` when no entry takes it.
    pub fn route(&self, recipient: &str) -> Option<Route> {
        let (local, domain) = split_address(recipient)?;
        let (local, domain) = (local.to_lowercase(), domain.to_lowercase());
        // A literal entry for the whole local part wins (`bugs+vip@` may be its own route).
        if let Some(entry) = self.exact.get(&(local.clone(), domain.clone())) {
            return Some(entry.route(None));
        }
        let (base, extension) = match self.separator.and_then(|sep| local.split_once(sep)) {
            Some((base, ext)) => (base.to_string(), Some(ext)),
            None => (local.clone(), None),
        };
        // Keep the extension's original case: ticket ids don't care, queue names might.
        let extension = extension.map(|_| original_extension(recipient, self.separator));
        if let Some(entry) = self.exact.get(&(base.clone(), domain.clone())) {
            return Some(entry.route(extension.as_deref()));
        }
        let entry = self.domains.get(&domain)?;
        if base.is_empty() {
            return None;
        }
        let mut args = entry.args.clone();
        args.queue = Some(base.into_bytes());
        let mut route = Entry {
            pattern: entry.pattern.clone(),
            args,
            rt: entry.rt.clone(),
            sense: entry.sense,
        }
        .route(extension.as_deref());
        route.named_by_address = true;
        Some(route)
    }

    /// Every RT the routes name with `--url` (and `--secret`), each once, sorted: the
    /// function builds one client per target at cold start. The function's own RT
    /// (`RT_URL`) is not among them.
    pub fn targets(&self) -> Vec<RtTarget> {
        let all = self.exact.values().chain(self.domains.values());
        let distinct: BTreeSet<&RtTarget> = all.filter_map(|entry| entry.rt.as_ref()).collect();
        distinct.into_iter().cloned().collect()
    }
}

/// What the routes cover, as the SES receipt rule lists recipients: whole domains and
/// single addresses (lower-cased, sorted). See [`RoutingTable::coverage`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Every domain a route names: the rule's domains (`MailDomains`).
    pub domains: BTreeSet<String>,
    /// What the rule must accept and nothing more (`ReceiptRecipients`): the domains
    /// of `*@domain` entries, and each other entry's address. SES matches an address
    /// also with a `+label`, so `bugs@` covers `bugs+42@` (with `+` as the separator).
    pub recipients: BTreeSet<String>,
}

impl RoutingTable {
    /// The domains and recipients the routes cover.
    pub fn coverage(&self) -> Coverage {
        let mut coverage = Coverage::default();
        for domain in self.domains.keys() {
            coverage.domains.insert(domain.clone());
            coverage.recipients.insert(domain.clone());
        }
        for (local, domain) in self.exact.keys() {
            coverage.domains.insert(domain.clone());
            if !self.domains.contains_key(domain) {
                coverage.recipients.insert(format!("{local}@{domain}"));
            }
        }
        coverage
    }

    /// The sub-address separator the table splits on.
    pub fn separator(&self) -> Option<char> {
        self.separator
    }
}

/// What one mail needs: one post per distinct request, and the recipients nobody takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryPlan {
    /// One entry per distinct post, in recipient order.
    pub deliveries: Vec<PlannedDelivery>,
    /// Recipients with no route: never posted.
    pub unrouted: Vec<String>,
}

/// One post and the recipients it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDelivery {
    /// The route (its entry and request).
    pub route: Route,
    /// The envelope recipients that resolved to this same post.
    pub recipients: Vec<String>,
    /// Not to be posted, and why: beyond `MAX_ROUTES_PER_MAIL`
    /// ([`Case::TooManyRoutes`], see [`DeliveryPlan::capped`]) or to a queue RT doesn't
    /// have ([`Case::UnknownQueue`]). Such a route is still claimed, recorded, logged,
    /// counted and reported as given up, never silently dropped.
    pub refused: Option<Case>,
}

impl DeliveryPlan {
    /// Marks every distinct post after the first `max_routes` (in recipient order, so a
    /// retry marks the same ones) [`Case::TooManyRoutes`]: one mail then makes at most
    /// `max_routes` posts, whatever its recipient list.
    pub fn capped(mut self, max_routes: usize) -> Self {
        for beyond in self.deliveries.iter_mut().skip(max_routes) {
            beyond.refused = Some(Case::TooManyRoutes);
        }
        self
    }
}

impl RoutingTable {
    /// Routes every envelope recipient; two recipients that make the same post (same
    /// fields and header as RT reads them, [`GatewayRequest::same_post`]) share one
    /// delivery, so RT gets the mail once.
    pub fn plan<S: AsRef<str>>(&self, recipients: &[S]) -> DeliveryPlan {
        let mut plan = DeliveryPlan::default();
        for recipient in recipients.iter().map(AsRef::as_ref) {
            match self.route(recipient) {
                None => plan.unrouted.push(recipient.to_string()),
                Some(route) => match plan
                    .deliveries
                    .iter_mut()
                    .find(|d| d.route.request.same_post(&route.request))
                {
                    Some(same) => same.recipients.push(recipient.to_string()),
                    None => plan.deliveries.push(PlannedDelivery {
                        route,
                        recipients: vec![recipient.to_string()],
                        refused: None,
                    }),
                },
            }
        }
        plan
    }
}

impl Entry {
    fn route(&self, extension: Option<&str>) -> Route {
        let mut request = self.args.resolve(extension.map(str::as_bytes)).request;
        request.rt = self.rt.clone();
        let field = self.args.extension.as_deref().map(ExtensionField::from_bytes);
        let named_by_address = extension.is_some_and(|e| !e.is_empty())
            && matches!(field, Some(Ok(ExtensionField::Queue | ExtensionField::Action)));
        Route {
            entry: self.pattern.clone(),
            request,
            named_by_address,
            sense: self.sense,
        }
    }
}

fn original_extension(recipient: &str, separator: Option<char>) -> String {
    let local = recipient.rsplit_once('@').map_or(recipient, |(l, _)| l);
    separator
        .and_then(|sep| local.split_once(sep))
        .map(|(_, ext)| ext.to_string())
        .unwrap_or_default()
}

/// `local@domain`, with a non-empty domain and no spaces or control characters.
fn split_address(address: &str) -> Option<(&str, &str)> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = address.rsplit_once('@')?;
    let clean = |s: &str| !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    (clean(local) && clean(domain)).then_some((local, domain))
}

fn parse_pattern(address: &str) -> Result<Pattern, String> {
    let (local, domain) = split_address(address).ok_or_else(|| format!("`{address}` is not an address"))?;
    let domain = domain.to_lowercase();
    if local == "*" {
        Ok(Pattern::Domain(domain))
    } else if local.contains('*') {
        Err("only `*@domain` may use `*`".into())
    } else {
        Ok(Pattern::Exact(local.to_lowercase(), domain))
    }
}

/// Where the text of a table is at, for [`split_entries`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Before the entry's first `:`: quotes are plain characters there.
    Address,
    /// Among the arguments, outside quotes.
    Words,
    /// Inside `'...'`: nothing is special but the closing quote.
    Single,
    /// Inside `"..."`: a backslash escapes the next character.
    Double,
    /// After a `#`, up to the end of the line.
    Comment,
}

/// The entries of a table, trimmed, without comments or empty entries. Quote-aware:
/// only a `;` or `#` outside quotes (and not after a backslash) separates or comments;
/// the quotes and backslashes themselves are kept for [`parse_route_args`].
fn split_entries(text: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let mut current = String::new();
    let mut scan = Scan::Address;
    let mut chars = text.chars().peekable();
    let mut end_entry = |current: &mut String, scan: &mut Scan| {
        let entry = current.trim();
        if !entry.is_empty() {
            entries.push(entry.to_string());
        }
        current.clear();
        *scan = Scan::Address;
    };
    while let Some(c) = chars.next() {
        // A new line ends an entry whatever the state: an open quote fails one entry,
        // not the rest of the table.
        if c == '\n' {
            end_entry(&mut current, &mut scan);
            continue;
        }
        match (scan, c) {
            (Scan::Comment, _) => {}
            (Scan::Address | Scan::Words, ';') => end_entry(&mut current, &mut scan),
            (Scan::Address | Scan::Words, '#') => scan = Scan::Comment,
            (Scan::Address, ':') => {
                scan = Scan::Words;
                current.push(c);
            }
            (Scan::Words | Scan::Double, '\\') => {
                current.push(c);
                if let Some(next) = chars.next_if(|&n| n != '\n') {
                    current.push(next);
                }
            }
            (Scan::Words, '\'') => {
                scan = Scan::Single;
                current.push(c);
            }
            (Scan::Words, '"') => {
                scan = Scan::Double;
                current.push(c);
            }
            (Scan::Single, '\'') | (Scan::Double, '"') => {
                scan = Scan::Words;
                current.push(c);
            }
            _ => current.push(c),
        }
    }
    end_entry(&mut current, &mut scan);
    entries
}

/// An entry as errors show it: as written, but for what may be credentials
/// (`https://u:p@rt` and `u:p@rt` alike, quoted or not) shown as `***`.
fn shown_entry(line: &str) -> String {
    let (address, args) = line.split_once(':').unwrap_or((line, ""));
    let words = shlex::split(args).unwrap_or_else(|| args.split_whitespace().map(String::from).collect());
    if words.iter().all(|w| redact_word(w) == *w) {
        return redact_url(line);
    }
    let shown: Vec<String> = words
        .iter()
        .map(|w| {
            let w = redact_word(w);
            shlex::try_quote(&w).map_or_else(|_| w.clone(), |q| q.into_owned())
        })
        .collect();
    format!("{address}: {}", shown.join(" "))
}

/// A route's arguments: what to post, and to which RT when not the function's.
fn parse_route_args(text: &str) -> Result<(MailgateArgs, Option<RtTarget>, RouteSense), String> {
    let words = shlex::split(text).ok_or("a quote is not closed, or a backslash ends the entry")?;
    let (parsed, route_only) = parse_args_extended(words, ROUTE_ONLY_OPTIONS);
    if let Some(warning) = parsed.warnings.first() {
        return Err(warning.clone());
    }
    if let Some(word) = parsed.operands.first() {
        return Err(format!("unexpected word `{}`", String::from_utf8_lossy(word)));
    }
    let o = parsed.options;
    let foreign = [
        (o.ca_file.is_some(), "--ca-file"),
        (o.verify_ssl.is_some(), "--verify-ssl/--no-verify-ssl"),
        (o.timeout.is_some(), "--timeout"),
        (o.debug, "--debug"),
        (o.help, "--help"),
        (o.jar.is_some(), "--jar"),
    ];
    if let Some((_, option)) = foreign.iter().find(|(given, _)| *given) {
        return Err(format!(
            "{option} is set once for the whole function (RT_CA_FILE, RT_VERIFY_TLS, RT_TIMEOUT), \
             not per route"
        ));
    }
    // As for any option, the last one given wins.
    let mut secret = None;
    let mut sense = RouteSense::default();
    for (option, value) in route_only {
        let value = String::from_utf8_lossy(&value).into_owned();
        if !sense.take(option, &value)? {
            secret = Some(value);
        }
    }
    let rt = match (&o.url, secret) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(
                "--secret names the credentials of a route's own RT, so it needs --url; \
                 the function's RT takes its credentials from RT_SECRET_ID"
                    .into(),
            )
        }
        (Some(url), secret) => {
            let url = std::str::from_utf8(url).map_err(|_| RtUrlError::NotHttp.to_string())?;
            let url = rt_base_url(url).map_err(|e| e.to_string())?;
            if let Some(id) = &secret {
                check_secret_id(id)?;
            }
            Some(RtTarget { url, secret })
        }
    };
    if let Some(action) = &o.action {
        ActionChain::parse(&String::from_utf8_lossy(action)).map_err(|e| e.to_string())?;
    }
    if let Some(word) = &o.extension {
        ExtensionField::from_bytes(word).map_err(|e| e.to_string())?;
    }
    if o.queue.as_deref().is_some_and(<[u8]>::is_empty) {
        return Err("--queue is empty".into());
    }
    let args = MailgateArgs {
        queue: o.queue,
        action: o.action,
        extension: o.extension,
    };
    Ok((args, rt, sense))
}

/// A Secrets Manager secret id as its API takes it: a name (letters, digits and
/// `/_+=.@-`, up to 512) or an ARN (which adds `:`).
fn check_secret_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c);
    if id.is_empty() || id.len() > 2048 || !id.chars().all(allowed) {
        return Err(format!(
            "--secret `{id}` is not a Secrets Manager secret name or ARN \
             (letters, digits and /_+=.@- ; an ARN adds :)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_lists_domains_and_the_addresses_outside_wildcards() {
        let table = RoutingTable::parse(
            "Bugs@Example.com: --queue bugs\n\
             bugs-comment@example.com: --queue bugs --action comment\n\
             *@helpdesk.example.com: --action correspond\n\
             vip@helpdesk.example.com: --queue VIP\n\
             ops@example.org: --queue Ops\n",
            Some('+'),
        )
        .unwrap();
        let c = table.coverage();
        assert_eq!(
            c.domains.iter().collect::<Vec<_>>(),
            ["example.com", "example.org", "helpdesk.example.com"]
        );
        assert_eq!(
            c.recipients.iter().collect::<Vec<_>>(),
            [
                "bugs-comment@example.com",
                "bugs@example.com",
                "helpdesk.example.com",
                "ops@example.org"
            ]
        );
    }

    #[test]
    fn equivalent_spellings_of_a_route_are_one_delivery_id() {
        use crate::core::delivery_id::DeliveryId;
        let id = |table: &str, to: &str| {
            let route = RoutingTable::parse(table, Some('+')).unwrap().route(to).unwrap();
            DeliveryId::new("m1", &route.request.fingerprint())
        };
        let first = id("support@example.com: --queue support", "support@example.com");
        for edited in [
            "support@example.com: --queue support --action correspond",
            "support@example.com: --action Correspond --queue=Support",
            "support@example.com: --action=correspond --queue SUPPORT",
            "Support@Example.com: --queue 'support'",
        ] {
            assert_eq!(id(edited, "support@example.com"), first, "{edited}");
        }
        // A real change of queue, action or RT is a new post, by design.
        for changed in [
            "support@example.com: --queue sales",
            "support@example.com: --queue support --action comment",
            "support@example.com: --queue support --url https://rt2.example.com",
        ] {
            assert_ne!(id(changed, "support@example.com"), first, "{changed}");
        }
        // A sub-address under `--extension ticket` stays its own post, however spelled.
        let reply = id(
            "bugs@example.com: --queue bugs --extension ticket",
            "bugs+7@example.com",
        );
        assert_eq!(
            id(
                "bugs@example.com: --extension Ticket --action correspond --queue Bugs",
                "bugs+7@example.com"
            ),
            reply
        );
        assert_ne!(
            id(
                "bugs@example.com: --queue bugs --extension ticket",
                "bugs+8@example.com"
            ),
            reply
        );
    }

    #[test]
    fn recipients_of_equivalent_routes_share_one_post() {
        let table = RoutingTable::parse(
            "a@example.com: --queue support; b@example.com: --queue Support --action correspond",
            None,
        )
        .unwrap();
        let plan = table.plan(&["a@example.com", "b@example.com"]);
        assert_eq!(plan.deliveries.len(), 1);
        assert_eq!(plan.deliveries[0].recipients, ["a@example.com", "b@example.com"]);
    }

    const TABLE: &str = "
        # the bugs desk
        bugs@Example.com: --queue bugs --action correspond --extension ticket
        bugs-comment@example.com: --queue bugs --action comment --extension ticket;
        billing@example.com: --queue Billing
        *@desk.example.com: --action correspond
    ";

    fn table() -> RoutingTable {
        RoutingTable::parse(TABLE, Some('+')).unwrap()
    }

    fn fields<'a>(route: &'a Route) -> Vec<(&'static str, &'a str)> {
        let text = |(name, value): (&'static str, &'a [u8])| (name, std::str::from_utf8(value).unwrap());
        route.request.form_fields().into_iter().map(text).collect()
    }

    #[test]
    fn exact_addresses_route_case_insensitively() {
        let route = table().route("BUGS@example.COM").unwrap();
        assert_eq!(route.entry, "bugs@Example.com");
        assert_eq!(fields(&route), [("queue", "bugs"), ("action", "correspond")]);
        assert_eq!(route.request.extension_header, None);
    }

    #[test]
    fn a_sub_address_is_the_extension_with_its_header() {
        let route = table().route("bugs-comment+42@example.com").unwrap();
        assert_eq!(
            fields(&route),
            [("queue", "bugs"), ("action", "comment"), ("ticket", "42")]
        );
        assert_eq!(route.request.message_prefix(), b"X-RT-Mail-Extension: 42\n");
        // Without --extension the sub-address only adds the header.
        let route = table().route("billing+Urgent@example.com").unwrap();
        assert_eq!(fields(&route), [("queue", "Billing")]);
        assert_eq!(route.request.message_prefix(), b"X-RT-Mail-Extension: Urgent\n");
    }

    #[test]
    fn a_domain_entry_takes_the_queue_from_the_local_part() {
        let route = table().route("Support+7@desk.example.com").unwrap();
        assert_eq!(route.entry, "*@desk.example.com");
        assert_eq!(fields(&route), [("queue", "support"), ("action", "correspond")]);
        assert_eq!(route.request.message_prefix(), b"X-RT-Mail-Extension: 7\n");
    }

    #[test]
    fn unrouted_and_odd_addresses_get_no_route() {
        let t = table();
        for recipient in [
            "nobody@example.com",
            "bugs@other.example",
            "",
            "@",
            "bugs@",
            "no-at-sign",
            "a b@example.com",
            "+1@desk.example.com",
        ] {
            assert_eq!(t.route(recipient), None, "{recipient:?}");
        }
    }

    #[test]
    fn a_separator_can_be_changed_or_turned_off() {
        let t = RoutingTable::parse("bugs@x.test: --queue bugs --extension ticket", Some('_')).unwrap();
        assert_eq!(
            fields(&t.route("bugs_9@x.test").unwrap()),
            [("queue", "bugs"), ("ticket", "9")]
        );
        let t = RoutingTable::parse("bugs@x.test: --queue bugs", None).unwrap();
        assert_eq!(t.route("bugs+9@x.test"), None);
    }

    #[test]
    fn routes_whose_queue_or_action_the_address_chose_are_marked() {
        let t = table();
        assert!(t.route("Support@desk.example.com").unwrap().named_by_address);
        assert!(!t.route("bugs@example.com").unwrap().named_by_address);
        // A ticket id or a bare header from the sub-address names no queue or action.
        assert!(!t.route("bugs-comment+42@example.com").unwrap().named_by_address);
        assert!(!t.route("billing+Urgent@example.com").unwrap().named_by_address);
        let t = RoutingTable::parse(
            "q@x.test: --extension queue; a@x.test: --queue q --extension action",
            Some('+'),
        )
        .unwrap();
        assert!(t.route("q+sales@x.test").unwrap().named_by_address);
        assert!(t.route("a+take@x.test").unwrap().named_by_address);
        assert!(!t.route("q@x.test").unwrap().named_by_address);
    }

    #[test]
    fn a_capped_plan_refuses_the_routes_beyond_the_cap() {
        let recipients: Vec<String> = (0..50).map(|n| format!("q{n}@desk.example.com")).collect();
        let plan = table().plan(&recipients).capped(10);
        assert_eq!(
            plan.deliveries.len(),
            50,
            "every route stays in the plan, to be reported"
        );
        let refused: Vec<_> = plan.deliveries.iter().map(|d| d.refused).collect();
        assert!(refused[..10].iter().all(Option::is_none));
        assert!(refused[10..].iter().all(|r| *r == Some(Case::TooManyRoutes)));
        assert_eq!(plan.deliveries[10].recipients, ["q10@desk.example.com"]);
        let small = table().plan(&["bugs@example.com"]).capped(10);
        assert_eq!(small.deliveries[0].refused, None);
    }

    #[test]
    fn a_plan_posts_each_distinct_route_once() {
        let plan = table().plan(&[
            "bugs@example.com",
            "BUGS@example.com",
            "bugs+3@example.com",
            "x@nowhere.test",
        ]);
        assert_eq!(plan.deliveries.len(), 2);
        assert_eq!(plan.deliveries[0].recipients, ["bugs@example.com", "BUGS@example.com"]);
        assert_eq!(plan.deliveries[1].recipients, ["bugs+3@example.com"]);
        assert_eq!(plan.unrouted, ["x@nowhere.test"]);
    }

    #[test]
    fn quoted_queue_names_keep_spaces_quotes_hashes_and_semicolons() {
        let t = RoutingTable::parse(
            r#"
            sales@x.test: --queue 'Sales Team' --action correspond # a comment; not an entry
            it@x.test: --queue "It's #1; really" ; ops@x.test: --queue Ops\ \#2\;b
            tab@x.test:	--queue	"a	b"	--action=comment
            esc@x.test: --queue "say \"hi\" \\ \$HOME" --extension 'ticket'
            "#,
            Some('+'),
        )
        .unwrap();
        let queue = |address: &str| t.route(address).unwrap().request.queue.clone();
        assert_eq!(
            fields(&t.route("sales+7@x.test").unwrap()),
            [("queue", "Sales Team"), ("action", "correspond")]
        );
        assert_eq!(queue("it@x.test").as_deref(), Some(&b"It's #1; really"[..]));
        assert_eq!(queue("ops@x.test").as_deref(), Some(&b"Ops #2;b"[..]));
        assert_eq!(
            fields(&t.route("tab@x.test").unwrap()),
            [("queue", "a\tb"), ("action", "comment")]
        );
        assert_eq!(
            fields(&t.route("esc+9@x.test").unwrap()),
            [("queue", "say \"hi\" \\ $HOME"), ("ticket", "9")]
        );
        assert_eq!(t.route("not@x.test"), None);
    }

    #[test]
    fn entries_split_only_outside_quotes() {
        let entries = split_entries("a@x: --queue 'q;#r' ; b@x: -q \"s;t\" # c@x: no\nd'e@x: -q u; e@x: -q v");
        assert_eq!(
            entries,
            [
                "a@x: --queue 'q;#r'",
                "b@x: -q \"s;t\"",
                // Quotes before the `:` are part of the address, not word quotes.
                "d'e@x: -q u",
                "e@x: -q v",
            ]
        );
        // A quote left open ends at the new line: the next entry is unharmed.
        assert_eq!(
            split_entries("a@x: -q 'open\nb@x: -q b"),
            ["a@x: -q 'open", "b@x: -q b"]
        );
    }

    #[test]
    fn what_the_route_parser_reads_is_what_shlex_quoting_wrote() {
        for queue in [
            "Sales Team",
            "It's #1; really",
            "a\"b\\c$d`e",
            "tab\there",
            "Ventes Équipe",
            "-starts-with-dash",
            "--url",
            "--secret",
            "x=y",
        ] {
            let line = format!("q@x.test: --queue {}", shlex::try_quote(queue).unwrap());
            let t = RoutingTable::parse(&line, None).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(
                t.route("q@x.test").unwrap().request.queue.as_deref(),
                Some(queue.as_bytes()),
                "{line}"
            );
        }
    }

    #[test]
    fn bad_entries_are_named() {
        let cases = [
            ("bugs@x.test --queue bugs", "route 1", "expected `address:"),
            (
                "a@x.test: --queue a\nbugs@x.test: --queue bugs --action close",
                "route 2",
                "`close`",
            ),
            ("bugs@x.test: --queue bugs --extension owner", "route 1", "owner"),
            (
                "bugs@x.test: --queue bugs --ca-file /etc/ca.pem",
                "route 1",
                "--ca-file is set once",
            ),
            (
                "bugs@x.test: --queue bugs --frobnicate",
                "route 1",
                "Unknown option: frobnicate",
            ),
            ("bugs@x.test: --queue bugs extra", "route 1", "unexpected word"),
            ("a@x.test: --queue a; A@X.test: --queue b", "route 2", "already routed"),
            ("not-an-address: --queue a", "route 1", "not an address"),
            ("b*s@x.test: --queue a", "route 1", "`*@domain`"),
            ("# only a comment", "", "empty"),
            ("a@x.test: --queue 'Sales Team", "route 1", "quote is not closed"),
            ("a@x.test: --queue \"Sales Team", "route 1", "quote is not closed"),
            ("a@x.test: --queue Sales\\", "route 1", "backslash ends"),
            ("a@x.test: --queue ''", "route 1", "--queue is empty"),
            (
                "a@x.test: --queue 'Sales Team' extra",
                "route 1",
                "unexpected word `extra`",
            ),
        ];
        for (text, number, problem) in cases {
            let err = RoutingTable::parse(text, Some('+')).unwrap_err().to_string();
            assert!(err.contains(number) && err.contains(problem), "{text:?} gave {err:?}");
        }
    }

    fn target(url: &str, secret: Option<&str>) -> RtTarget {
        RtTarget {
            url: url.into(),
            secret: secret.map(Into::into),
        }
    }

    const TWO_RTS: &str = "
        bugs@example.com: --queue bugs
        ops@example.com:  --queue Ops --url https://rt2.example.com/ --secret rt2/mailgate
        ops-comment@example.com: --queue Ops --action comment --URL=HTTPS://RT2.example.com -Secret=rt2/mailgate
        lab@example.com:  --queue Lab --url http://lab.internal:8080/rt
        *@desk.example.com: --url https://desk.example.com --sec arn:aws:secretsmanager:eu-west-1:123456789012:secret:desk-AbCdEf
    ";

    #[test]
    fn a_route_may_name_its_own_rt_and_secret() {
        let t = RoutingTable::parse(TWO_RTS, Some('+')).unwrap();
        assert_eq!(t.route("bugs@example.com").unwrap().request.rt, None);
        let ops = t.route("ops+5@example.com").unwrap();
        assert_eq!(
            ops.request.rt,
            Some(target("https://rt2.example.com", Some("rt2/mailgate")))
        );
        assert_eq!(fields(&ops), [("queue", "Ops")]);
        assert_eq!(ops.request.message_prefix(), b"X-RT-Mail-Extension: 5\n");
        // Any spelling of the same RT is one target.
        assert_eq!(t.route("ops-comment@example.com").unwrap().request.rt, ops.request.rt);
        assert_eq!(
            t.route("lab@example.com").unwrap().request.rt,
            Some(target("http://lab.internal:8080/rt", None))
        );
        // A domain entry's RT goes with every address of the domain.
        let desk = t.route("Billing@desk.example.com").unwrap();
        assert_eq!(fields(&desk), [("queue", "billing")]);
        assert_eq!(
            desk.request.rt,
            Some(target(
                "https://desk.example.com",
                Some("arn:aws:secretsmanager:eu-west-1:123456789012:secret:desk-AbCdEf")
            ))
        );
    }

    #[test]
    fn targets_are_each_rt_once_sorted() {
        let t = RoutingTable::parse(TWO_RTS, Some('+')).unwrap();
        assert_eq!(
            t.targets(),
            [
                target("http://lab.internal:8080/rt", None),
                target(
                    "https://desk.example.com",
                    Some("arn:aws:secretsmanager:eu-west-1:123456789012:secret:desk-AbCdEf")
                ),
                target("https://rt2.example.com", Some("rt2/mailgate")),
            ]
        );
        assert_eq!(table().targets(), []);
    }

    #[test]
    fn the_same_fields_for_two_rts_are_two_deliveries() {
        let t = RoutingTable::parse(
            "a@x.test: --queue q; b@x.test: --queue q --url https://rt2.test; c@x.test: --queue q",
            None,
        )
        .unwrap();
        let plan = t.plan(&["a@x.test", "b@x.test", "c@x.test"]);
        assert_eq!(plan.deliveries.len(), 2);
        assert_eq!(plan.deliveries[0].recipients, ["a@x.test", "c@x.test"]);
        assert_eq!(
            plan.deliveries[1].route.request.rt,
            Some(target("https://rt2.test", None))
        );
    }

    #[test]
    fn rt_base_urls_are_checked_and_canonical() {
        for (given, canonical) in [
            ("https://rt.example.com", "https://rt.example.com"),
            ("HTTPS://RT.Example.com/", "https://rt.example.com"),
            ("https://rt.example.com/rt/", "https://rt.example.com/rt"),
            ("http://rt.example.com:80/", "http://rt.example.com"),
            ("https://rt.example.com:8443", "https://rt.example.com:8443"),
            (" https://[::1]:8080 ", "https://[::1]:8080"),
        ] {
            assert_eq!(rt_base_url(given).as_deref(), Ok(canonical), "{given}");
        }
        for (given, error) in [
            ("rt.example.com", RtUrlError::NotHttp),
            ("ftp://rt.example.com", RtUrlError::NotHttp),
            ("file:///etc/passwd", RtUrlError::NotHttp),
            ("https://", RtUrlError::NotHttp),
            ("https://u:p@rt.example.com", RtUrlError::Credentials),
            ("https://u@rt.example.com", RtUrlError::Credentials),
            ("https://rt.example.com/?x=1", RtUrlError::QueryOrFragment),
            ("https://rt.example.com/#x", RtUrlError::QueryOrFragment),
        ] {
            assert_eq!(rt_base_url(given), Err(error), "{given}");
        }
    }

    #[test]
    fn bad_rt_options_are_refused_without_showing_credentials() {
        let cases = [
            (
                "a@x.test: --queue a --url https://rt:s3cret-pw@rt2.example.com/",
                "put them in a Secrets Manager secret",
            ),
            ("a@x.test: --queue a --url=https://rt:s3cret-pw@rt2", "--secret ID"),
            ("a@x.test: --queue a --url 'https://rt:s3cret pw@rt2'", "--secret ID"),
            (
                "a@x.test: --queue a --url rt:s3cret-pw@rt2.example.com",
                "http:// or https://",
            ),
            (
                "a@x.test: --queue a --url https://rt:s3cret/pw@rt2/",
                "http:// or https://",
            ),
            ("a@x.test: --queue a --url rt2.example.com", "http:// or https://"),
            ("a@x.test: --queue a --url 'https://rt2/?q=1'", "no `?query`"),
            ("a@x.test: --queue a --secret rt2/mailgate", "needs --url"),
            ("*@x.test: --secret=rt2", "needs --url"),
            (
                "a@x.test: --url https://rt2 --secret 'my secret'",
                "not a Secrets Manager secret name",
            ),
            (
                "a@x.test: --url https://rt2 --secret=",
                "Option secret requires an argument",
            ),
            ("a@x.test: --url https://rt2 --timeout 5", "--timeout is set once"),
            (
                "a@x.test: --url https://rt2 --no-verify-ssl",
                "--verify-ssl/--no-verify-ssl",
            ),
            ("a@x.test: --url https://rt2 --debug", "--debug is set once"),
            ("a@x.test: --url https://rt2 --help", "--help is set once"),
            ("a@x.test: --url https://rt2 --jar /tmp/j", "--jar is set once"),
        ];
        for (text, problem) in cases {
            let err = RoutingTable::parse(text, None).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(err.problem.contains(problem), "{text:?} gave {shown}");
            assert!(!shown.contains("s3cret"), "{text:?} showed a password: {shown}");
        }
        let err = RoutingTable::parse("a@x.test: --url https://u:pw@rt2.example.com/x", None).unwrap_err();
        assert_eq!(err.entry, "a@x.test: --url 'https://***@rt2.example.com/x'");
    }
}
