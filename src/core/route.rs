//! The Lambda's routing table: envelope recipient to rt-mailgate arguments, written the
//! way an RT admin already writes `/etc/aliases` lines:
//!
//! ```text
//! bugs@example.com:         --queue bugs --action correspond --extension ticket
//! bugs-comment@example.com: --queue bugs --action comment --extension ticket
//! *@helpdesk.example.com:   --action correspond
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
//! - Only `--queue`, `--action` and `--extension` belong in a route: the RT URL and TLS
//!   settings are the function's own. Any mistake fails the whole table, naming the entry.

use std::collections::BTreeMap;

use crate::core::action::ActionChain;
use crate::core::extension::ExtensionField;
use crate::core::getopt::parse_args;
use crate::core::request::{GatewayRequest, MailgateArgs};

/// A routing table entry that can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {number} `{entry}`: {problem}")]
pub struct RouteError {
    /// 1-based position among the entries.
    pub number: usize,
    /// The entry as written.
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
                entry: line.to_string(),
                problem,
            };
            let (address, args) = line
                .split_once(':')
                .ok_or_else(|| fail("expected `address: --queue ...`".into()))?;
            let pattern = parse_pattern(address.trim()).map_err(fail)?;
            let args = parse_route_args(args).map_err(fail)?;
            let entry = Entry {
                pattern: address.trim().to_string(),
                args,
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

    /// The RTs routes name besides the function's own (none until routes carry `--url`).
    pub fn targets(&self) -> Vec<crate::core::request::RtTarget> {
        Vec::new()
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
        Some(
            Entry {
                pattern: entry.pattern.clone(),
                args,
            }
            .route(extension.as_deref()),
        )
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
}

impl RoutingTable {
    /// Routes every envelope recipient; two recipients that make the same post (same
    /// fields, same header) share one delivery, so RT gets the mail once.
    pub fn plan<S: AsRef<str>>(&self, recipients: &[S]) -> DeliveryPlan {
        let mut plan = DeliveryPlan::default();
        for recipient in recipients.iter().map(AsRef::as_ref) {
            match self.route(recipient) {
                None => plan.unrouted.push(recipient.to_string()),
                Some(route) => match plan.deliveries.iter_mut().find(|d| d.route.request == route.request) {
                    Some(same) => same.recipients.push(recipient.to_string()),
                    None => plan.deliveries.push(PlannedDelivery {
                        route,
                        recipients: vec![recipient.to_string()],
                    }),
                },
            }
        }
        plan
    }
}

impl Entry {
    fn route(&self, extension: Option<&str>) -> Route {
        Route {
            entry: self.pattern.clone(),
            request: self.args.resolve(extension.map(str::as_bytes)).request,
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

fn parse_route_args(text: &str) -> Result<MailgateArgs, String> {
    let words = shlex::split(text).ok_or("a quote is not closed, or a backslash ends the entry")?;
    let parsed = parse_args(words);
    if let Some(warning) = parsed.warnings.first() {
        return Err(warning.clone());
    }
    if let Some(word) = parsed.operands.first() {
        return Err(format!("unexpected word `{}`", String::from_utf8_lossy(word)));
    }
    let o = parsed.options;
    let foreign = [
        (o.url.is_some(), "--url"),
        (o.ca_file.is_some(), "--ca-file"),
        (o.verify_ssl.is_some(), "--verify-ssl/--no-verify-ssl"),
        (o.timeout.is_some(), "--timeout"),
        (o.debug, "--debug"),
        (o.help, "--help"),
        (o.jar.is_some(), "--jar"),
        (o.secret_file.is_some(), "--secret-file"),
    ];
    if let Some((_, option)) = foreign.iter().find(|(given, _)| *given) {
        return Err(format!(
            "{option} is set once for the whole function (RT_URL, RT_CA_FILE...), not per route"
        ));
    }
    if let Some(action) = &o.action {
        ActionChain::parse(&String::from_utf8_lossy(action)).map_err(|e| e.to_string())?;
    }
    if let Some(word) = &o.extension {
        ExtensionField::from_bytes(word).map_err(|e| e.to_string())?;
    }
    if o.queue.as_deref().is_some_and(<[u8]>::is_empty) {
        return Err("--queue is empty".into());
    }
    Ok(MailgateArgs {
        queue: o.queue,
        action: o.action,
        extension: o.extension,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "bugs@x.test: --queue bugs --url https://rt",
                "route 1",
                "--url is set once",
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
}
