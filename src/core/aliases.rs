//! Migrating an `/etc/aliases` file to the Lambda's routing table ([`crate::core::route`]):
//! the text of the file in, one [`Item`] per alias out (a route line, or a skip and why).
//! No I/O: `rt-mailgate-routes import-aliases` reads the file and prints the result.
//!
//! The file is read as Postfix and sendmail read it (aliases(5)):
//!
//! - `name: target, target, ...`; a line that starts with whitespace continues the one
//!   before; an empty line ends it, and so does any line that starts with non-whitespace.
//! - A line whose first non-whitespace character is `#` is a comment (an indented one does
//!   not end the alias it sits in). A `#` later in a line is not a comment.
//! - Targets are separated by commas outside double quotes; a quoted target may hold
//!   backslash escapes (`\"`).
//! - A pipe is `"|command args"` or `|"command args"` (or `|command`): the command is
//!   split into words as `/bin/sh` splits it, so `--queue 'Sales Team'` is one queue.
//!
//! An alias whose targets include a pipe to `rt-mailgate` becomes one route
//! (`name@domain: --queue 'Sales Team' ...`, shell-quoted so that the route parser reads
//! back the same arguments). The RT each pipe posts to (`--url`) is kept: the URL most
//! aliases share is the one to set as the template's `RtUrl` (the function's `RT_URL`),
//! and their routes leave it out; every other alias's route names its own `--url` (see
//! [`import_aliases`]). Every URL is held to the rule the function keeps at cold start
//! ([`check_rt_url`], as deployed: no loopback, no plain http unless `AllowPlainHttp`):
//! an alias whose own `--url` breaks it is skipped, saying why; a shared URL that breaks
//! it is not offered as `RtUrl`. What the report tells the admin to set is named as the
//! template's parameters (`RtUrl`, `RtTimeout`, `RtSecretArn`), which is where the admin
//! sets it.
//! Credentials in a URL (`user:password@`) are never copied: they belong in a Secrets
//! Manager secret, and a note says so. The pipe's function-wide options (`--ca-file`,
//! `--[no-]verify-ssl`, `--timeout`, `--debug`, `--jar`) are not route options: they are
//! kept aside in [`FunctionWide`] and summed up by [`report`]. Every other target, a second
//! rt-mailgate pipe, an `:include:` (never followed) or an ignored word is reported as a
//! note; an alias with no rt-mailgate pipe is skipped with its reason.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::core::getopt::parse_args;
use crate::core::redact::redact_word;
use crate::core::route::{rt_base_url, RoutingTable, RtUrlError};
use crate::core::url_policy::{check_rt_url, UrlRules};

/// What the import made of one alias (or of a line that is no alias).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An alias that pipes to rt-mailgate, as a route.
    Route(Migrated),
    /// An alias or line that gives no route.
    Skipped(Skipped),
}

/// An alias that gives no route, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Line number (1-based) where the alias starts.
    pub line: usize,
    /// The alias name, or the start of the line when it has none.
    pub name: String,
    /// Why no route was made.
    pub reason: String,
}

/// An alias turned into a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Line number (1-based) where the alias starts.
    pub line: usize,
    /// The alias name.
    pub name: String,
    /// The route, e.g. `bugs@example.com: --queue 'Sales Team' --action correspond`.
    pub route: String,
    /// The RT the pipe posted to (`--url`), if it named one.
    pub url: Option<AliasUrl>,
    /// The pipe's settings that belong to the whole function, left out of the route.
    pub function_wide: FunctionWide,
    /// What else the alias did that the route does not do (reported, not migrated).
    pub notes: Vec<String>,
}

/// The RT an alias's pipe posts to, as the routes give it.
#[derive(Clone, PartialEq, Eq)]
pub struct AliasUrl {
    /// RT's base URL in its canonical form ([`rt_base_url`]), without credentials.
    pub url: String,
    /// True when the route names it (`--url`); false when it is the URL most aliases
    /// share, left to the template's `RtUrl`.
    pub in_route: bool,
    /// Why the function would refuse this URL at cold start ([`check_rt_url`]), if it
    /// would: only ever set on the shared URL (a route's own is skipped instead).
    pub refused: Option<String>,
    /// `user:password@` as written, kept only to tell two credentials for one RT apart
    /// (two secrets); never shown.
    userinfo: Option<String>,
}

impl AliasUrl {
    /// Reads a pipe's `--url`, setting its credentials aside.
    fn parse(given: &str) -> Result<Self, RtUrlError> {
        let mut url = url::Url::parse(given.trim()).map_err(|_| RtUrlError::NotHttp)?;
        let userinfo = (!url.username().is_empty() || url.password().is_some())
            .then(|| format!("{}:{}", url.username(), url.password().unwrap_or_default()));
        // Only URLs without a host refuse these, and rt_base_url refuses those anyway.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Ok(Self {
            url: rt_base_url(url.as_str())?,
            in_route: false,
            refused: None,
            userinfo,
        })
    }

    /// Whether the alias's URL held credentials (which no route keeps).
    pub fn had_credentials(&self) -> bool {
        self.userinfo.is_some()
    }

    /// The URL as the alias gave it, credentials shown as `***`.
    pub fn shown(&self) -> String {
        match (self.had_credentials(), self.url.split_once("://")) {
            (true, Some((scheme, rest))) => format!("{scheme}://***@{rest}"),
            _ => self.url.clone(),
        }
    }

    /// What tells two RTs apart: the URL, and the credentials used with it.
    fn key(&self) -> (&str, Option<&str>) {
        (&self.url, self.userinfo.as_deref())
    }
}

// By hand, so that a debug print never shows a password.
impl fmt::Debug for AliasUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AliasUrl")
            .field("url", &self.url)
            .field("in_route", &self.in_route)
            .field("refused", &self.refused)
            .field("had_credentials", &self.had_credentials())
            .finish()
    }
}

/// The options of an rt-mailgate pipe that the Lambda sets once for all routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FunctionWide {
    /// `--ca-file`.
    pub ca_file: Option<String>,
    /// `--verify-ssl` / `--no-verify-ssl`.
    pub verify_ssl: Option<bool>,
    /// `--timeout`, in seconds.
    pub timeout: Option<i64>,
    /// `--debug`.
    pub debug: bool,
    /// `--jar`.
    pub jar: Option<String>,
}

/// The import can't start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The mail domain can't make addresses.
    #[error("`{0}` is not a mail domain")]
    BadDomain(String),
}

/// Reads an aliases file's text; every alias of `domain` becomes an [`Item`], in file
/// order.
///
/// The RT most aliases post to (same URL, same credentials; the first in the file on a
/// tie) is left to the template's `RtUrl`: those routes read as they always did, and a
/// file that knows one RT gives a table that names none. Every other alias's route
/// carries its own `--url`, so that no mail changes RT in the migration. URLs are held
/// to the deployed function's rule with plain http refused (see [`import_aliases_with`]).
pub fn import_aliases(text: &str, domain: &str) -> Result<Vec<Item>, ImportError> {
    import_aliases_with(text, domain, false)
}

/// As [`import_aliases`]; `allow_plain_http` is the stack's `AllowPlainHttp`
/// (`RT_ALLOW_HTTP`), the one exception the function makes for plain `http://`.
pub fn import_aliases_with(text: &str, domain: &str, allow_plain_http: bool) -> Result<Vec<Item>, ImportError> {
    let domain = domain.trim();
    if RoutingTable::parse(&format!("probe@{domain}: --queue probe"), None).is_err() || domain.contains('@') {
        return Err(ImportError::BadDomain(domain.to_string()));
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut items = Vec::new();
    for (line, text) in logical_lines(text) {
        let item = match alias(line, &text) {
            Err(skipped) => Item::Skipped(skipped),
            Ok((name, value)) => match seen.get(&name.to_lowercase()) {
                Some(first) => Item::Skipped(Skipped {
                    line,
                    name,
                    reason: format!("an alias of the same name on line {first} comes first (the MTA uses that one)"),
                }),
                None => {
                    seen.insert(name.to_lowercase(), line);
                    migrate(line, name, &value, domain)
                }
            },
        };
        items.push(item);
    }
    place_urls(&mut items, UrlRules::deployed(allow_plain_http));
    Ok(items)
}

/// Why the deployed function would refuse `url` (canonical, from [`rt_base_url`]), and
/// what the admin can do.
fn refusal(url: &str, rules: UrlRules) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let refused = check_rt_url(&parsed, rules).err()?;
    let fix = match refused {
        crate::core::url_policy::UrlRefused::PlainHttp { .. } => {
            "; with AllowPlainHttp=true in the stack, import with --allow-plain-http"
        }
        crate::core::url_policy::UrlRefused::Loopback { .. } => "",
    };
    Some(format!("{refused}{fix}"))
}

/// Chooses the URL left to `RtUrl` and writes `--url` into every other route; a route
/// whose own URL the function would refuse is skipped.
fn place_urls(items: &mut [Item], rules: UrlRules) {
    // (URL, credentials) -> (aliases, position of the first).
    let mut counts: BTreeMap<(&str, Option<&str>), (usize, usize)> = BTreeMap::new();
    for (position, item) in items.iter().enumerate() {
        if let Item::Route(Migrated { url: Some(url), .. }) = item {
            counts.entry(url.key()).or_insert((0, position)).0 += 1;
        }
    }
    let default = counts
        .iter()
        .max_by_key(|(_, &(count, first))| (count, std::cmp::Reverse(first)))
        .map(|(&(url, userinfo), _)| (url.to_string(), userinfo.map(String::from)));
    for item in items.iter_mut() {
        let Item::Route(m) = item else { continue };
        let Some(url) = &mut m.url else { continue };
        if default
            .as_ref()
            .is_some_and(|(u, i)| (u.as_str(), i.as_deref()) == url.key())
        {
            url.refused = refusal(&url.url, rules);
            continue;
        }
        if let Some(refused) = refusal(&url.url, rules) {
            *item = Item::Skipped(Skipped {
                line: m.line,
                name: m.name.clone(),
                reason: format!(
                    "the Lambda would refuse its route's --url {}: {refused}; write its route by hand \
                     with the URL Lambda reaches that RT at",
                    url.shown()
                ),
            });
            continue;
        }
        url.in_route = true;
        // A canonical URL holds no NUL: quoting can't fail.
        let quoted = shlex::try_quote(&url.url).map_or_else(|_| url.url.clone(), |q| q.into_owned());
        m.route = format!("{} --url {quoted}", m.route);
        if url.had_credentials() {
            m.notes.push(format!(
                "its --url held credentials ({}): the route leaves them out; put them in a Secrets \
                 Manager secret and add `--secret ID` to the route",
                url.shown()
            ));
        }
        // The same check the function makes at cold start: what is printed, it accepts.
        if let Err(e) = RoutingTable::parse(&m.route, None) {
            *item = Item::Skipped(Skipped {
                line: m.line,
                name: m.name.clone(),
                reason: format!("the Lambda would refuse its route: {}", e.problem),
            });
        }
    }
}

/// The logical lines of the file: (first line number, text with continuations joined).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    // Whether the last logical line may still be continued.
    let mut open = false;
    for (index, raw) in text.lines().enumerate() {
        let content = raw.trim_start();
        let indented = content.len() != raw.len();
        if content.is_empty() {
            open = false;
        } else if content.starts_with('#') {
            // An indented comment sits inside an alias; one at the margin ends it.
            open &= indented;
        } else if indented && open {
            // The newline goes; the continuation's own whitespace stays (as Postfix does).
            if let Some((_, last)) = lines.last_mut() {
                last.push_str(raw);
            }
        } else {
            lines.push((index + 1, raw.to_string()));
            open = true;
        }
    }
    lines
}

/// `name: value`, or why the line is no alias.
fn alias(line: usize, text: &str) -> Result<(String, String), Skipped> {
    let skip = |name: &str, reason: &str| Skipped {
        line,
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if text.starts_with(char::is_whitespace) {
        let start: String = text.trim().chars().take(30).collect();
        return Err(skip(
            &start,
            "an indented line that continues no alias (an empty line or a comment at the margin ended the one before)",
        ));
    }
    let Some((name, value)) = text.split_once(':') else {
        let start: String = text.chars().take(30).collect();
        return Err(skip(&start, "not an alias: no `name: value`"));
    };
    let name = name.trim();
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '@' | ',' | '\\')) {
        return Err(skip(
            name,
            "the alias name is not a plain local part, so it can't make an address",
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// One target of an alias, unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `|command`: the command line, without the `|`.
    Pipe(String),
    /// `:include:/path`.
    Include(String),
    /// `/path`: appended to a file.
    File(String),
    /// Anything else: an address or local user.
    Address(String),
}

impl Target {
    /// How the target is reported. A pipe shows its program only: arguments may hold
    /// secrets.
    fn describe(&self) -> String {
        match self {
            Target::Pipe(command) => {
                let words = shlex::split(command).unwrap_or_default();
                let program = words.first().map_or("", String::as_str);
                format!("pipes to `{}`", redact_word(program))
            }
            Target::Include(path) => format!(
                "includes `{}` (not followed: check that file by hand)",
                redact_words(path)
            ),
            Target::File(path) => format!("appends to the file `{}`", redact_words(path)),
            Target::Address(address) => format!("delivers to `{}`", redact_words(address)),
        }
    }
}

/// Any text an alias holds, word by word as [`redact_word`] hides credentials: a value
/// the parser did not recognise may still carry `user:password@`.
fn redact_words(text: &str) -> String {
    text.split(' ').map(redact_word).collect::<Vec<_>>().join(" ")
}

/// The targets of an alias's value: split at commas outside double quotes, then unquoted.
fn targets(value: &str) -> Vec<Target> {
    let mut raw = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push(c);
                current.extend(chars.next());
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => raw.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    raw.push(current);
    raw.iter()
        .map(|t| unquote(t.trim()))
        .filter(|t| !t.is_empty())
        .map(|t| {
            if let Some(command) = t.strip_prefix('|') {
                Target::Pipe(command.trim().to_string())
            } else if let Some(path) = t
                .get(..9)
                .filter(|p| p.eq_ignore_ascii_case(":include:"))
                .map(|_| &t[9..])
            {
                Target::Include(path.trim().to_string())
            } else if t.starts_with('/') {
                Target::File(t)
            } else {
                Target::Address(t)
            }
        })
        .collect()
}

/// RFC 822 quoting as the MTAs undo it: double quotes go, `\x` inside them is `x`.
fn unquote(target: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = target.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => out.extend(chars.next()),
            _ => out.push(c),
        }
    }
    out
}

/// The shell words of an rt-mailgate pipe.
#[derive(Debug, Clone)]
struct Invocation {
    /// Words before the program (`/usr/bin/perl`, `env X=1`).
    before: Vec<String>,
    /// The program's arguments.
    args: Vec<String>,
}

/// The pipe's words when it runs rt-mailgate; `None` when it runs something else.
fn rt_mailgate_words(command: &str) -> Option<Result<Invocation, String>> {
    let is_program = |word: &str| word.rsplit('/').next() == Some("rt-mailgate");
    let Some(mut words) = shlex::split(command) else {
        // Not shell words; worth a reason only if it was meant for rt-mailgate.
        return command
            .contains("rt-mailgate")
            .then(|| Err("its command has an unclosed quote or ends in a backslash".to_string()));
    };
    let at = words.iter().position(|w| is_program(w))?;
    let args = words.split_off(at + 1);
    words.pop();
    Some(Ok(Invocation { before: words, args }))
}

fn migrate(line: usize, name: String, value: &str, domain: &str) -> Item {
    let skip = |name: String, reason: String| Item::Skipped(Skipped { line, name, reason });
    let targets = targets(value);
    if targets.is_empty() {
        return skip(name, "it has no target".into());
    }
    let mut notes = Vec::new();
    let mut broken = None;
    let mut chosen: Option<Invocation> = None;
    for target in &targets {
        let words = match target {
            Target::Pipe(command) => rt_mailgate_words(command),
            _ => None,
        };
        match words {
            Some(Err(problem)) => {
                let problem = format!("a pipe to rt-mailgate is not migrated: {problem}");
                broken.get_or_insert_with(|| problem.clone());
                notes.push(problem);
            }
            Some(Ok(words)) if chosen.is_none() => chosen = Some(words),
            Some(Ok(Invocation { args, .. })) => notes.push(format!(
                "a second pipe to rt-mailgate ({}) is not migrated: one address has one route",
                show_words(&args)
            )),
            None => notes.push(format!(
                "also {}: not migrated (a route only posts to RT)",
                target.describe()
            )),
        }
    }
    let Some(Invocation { before, args }) = chosen else {
        let what: Vec<String> = targets.iter().map(Target::describe).collect();
        let reason = broken.unwrap_or_else(|| format!("no pipe to rt-mailgate: it {}", what.join(", ")));
        return skip(name, reason);
    };
    let interpreter = |w: &String| w.rsplit('/').next().is_some_and(|p| p.starts_with("perl"));
    if !(before.is_empty() || (before.len() == 1 && interpreter(&before[0]))) {
        notes.push(format!(
            "runs `{} rt-mailgate ...`: what comes before rt-mailgate is not migrated",
            show_words(&before)
        ));
    }

    let parsed = parse_args(args);
    let o = parsed.options;
    if o.help {
        return skip(
            name,
            "its pipe passes --help: rt-mailgate prints its manual and fails, so this alias delivered nothing".into(),
        );
    }
    for warning in &parsed.warnings {
        notes.push(format!(
            "rt-mailgate warned `{warning}` and went on; the route leaves it out"
        ));
    }
    if !parsed.operands.is_empty() {
        notes.push(format!(
            "words rt-mailgate ignores (or the shell acted on) are left out: {}",
            show_words(&parsed.operands.iter().map(text).collect::<Vec<_>>())
        ));
    }
    let url = match o.url.as_ref().map(|u| AliasUrl::parse(&text(u))) {
        None => None,
        Some(Ok(url)) => Some(url),
        Some(Err(e)) => {
            let shown = redact_word(&text(o.url.as_deref().unwrap_or_default()));
            return skip(name, format!("the Lambda would refuse its route: {e} (`{shown}`)"));
        }
    };
    if url.is_none() {
        notes.push(
            "the pipe has no --url: rt-mailgate refuses to run without one, so this alias delivered nothing; \
             the route posts to the function's RT (RtUrl)"
                .into(),
        );
    }
    let route_words = route_words(&[
        ("--queue", o.queue.as_ref().map(text)),
        ("--action", o.action.as_ref().map(text)),
        ("--extension", o.extension.as_ref().map(text)),
    ]);
    let route_words = match route_words {
        Ok(words) => words,
        Err(problem) => return skip(name, problem),
    };
    let route = if route_words.is_empty() {
        format!("{name}@{domain}:")
    } else {
        format!("{name}@{domain}: {}", route_words.join(" "))
    };
    // The same check the function makes at cold start: what is printed, it accepts.
    if let Err(e) = RoutingTable::parse(&route, None) {
        return skip(name, format!("the Lambda would refuse its route: {}", e.problem));
    }
    Item::Route(Migrated {
        line,
        name,
        route,
        url,
        function_wide: FunctionWide {
            ca_file: o.ca_file.map(text),
            verify_ssl: o.verify_ssl,
            timeout: o.timeout,
            debug: o.debug,
            jar: o.jar.map(text),
        },
        notes,
    })
}

/// An option value as text (an aliases file is read as UTF-8, so this is lossless).
fn text(value: impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(value.as_ref()).into_owned()
}

/// The route's own options, shell-quoted: `--queue 'Sales Team'` (`--url` is added by
/// `place_urls` once every alias is read).
fn route_words(options: &[(&str, Option<String>)]) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    for (option, value) in options {
        if let Some(value) = value {
            let quoted = shlex::try_quote(value).map_err(|_| format!("the {option} value holds a NUL byte"))?;
            words.push(format!("{option} {quoted}"));
        }
    }
    Ok(words)
}

/// Words for a report: shell-quoted, credentials redacted.
fn show_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            let w = redact_word(w);
            shlex::try_quote(&w).map(|q| q.into_owned()).unwrap_or(w)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What `import-aliases` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The routing table: `# ` comment lines on the RTs (`RtUrl`, the routes' `--url`)
    /// and the function-wide settings, then one route per line. Fit for `ROUTES_FILE`.
    pub routes: String,
    /// For the admin (stderr): every skipped alias with its reason, every note, warnings.
    pub messages: Vec<String>,
    /// How many routes were made.
    pub routed: usize,
    /// How many aliases (or lines) were skipped.
    pub skipped: usize,
}

/// Lays out the items: routes with their header, and the messages.
pub fn report(items: &[Item], source: &str) -> Report {
    let mut messages = Vec::new();
    let mut lines = Vec::new();
    // setting (`RtTimeout`) -> value shown -> aliases that gave it.
    let mut settings: BTreeMap<&str, BTreeMap<String, Vec<&str>>> = BTreeMap::new();
    // Each RT (URL and credentials), the function's own first, then in file order.
    let mut rts: Vec<(&AliasUrl, Vec<&str>)> = Vec::new();
    let (mut routed, mut skipped) = (0, 0);
    for item in items {
        match item {
            Item::Skipped(s) => {
                skipped += 1;
                messages.push(format!("line {}: `{}` skipped: {}", s.line, s.name, s.reason));
            }
            Item::Route(m) => {
                routed += 1;
                lines.push(m.route.clone());
                for note in &m.notes {
                    messages.push(format!("line {}: `{}` migrated, but {note}", m.line, m.name));
                }
                if let Some(url) = &m.url {
                    match rts.iter_mut().find(|(u, _)| u.key() == url.key()) {
                        Some((_, names)) => names.push(&m.name),
                        None => rts.push((url, vec![&m.name])),
                    }
                }
                for (setting, value) in function_wide_settings(&m.function_wide) {
                    settings
                        .entry(setting)
                        .or_default()
                        .entry(value)
                        .or_default()
                        .push(&m.name);
                }
            }
        }
    }
    let mut header = vec![format!(
        "# Lambda routes from {source}, made by `rt-mailgate-routes import-aliases`."
    )];
    rts.sort_by_key(|(url, _)| url.in_route);
    match rts.len() {
        0 => {}
        1 => header.push("# The RT the aliases post to:".into()),
        _ => header.push("# The RTs the aliases post to (credentials are never copied into routes):".into()),
    }
    for (url, names) in &rts {
        let count = names.len();
        let reach = lambda_reach(&url.url);
        if url.in_route {
            header.push(format!(
                "#   --url {}  ({count} of {routed} aliases, in their routes: {})",
                url.url,
                names.join(", ")
            ));
            if url.had_credentials() {
                header.push(
                    "#     its aliases' URL held credentials: put them in a Secrets Manager secret \
                     and add `--secret ID` to these routes"
                        .into(),
                );
            }
            if let Some(reach) = &reach {
                header.push(format!("#     WARNING: {reach}"));
                messages.push(format!("warning: --url {} ({}) is {reach}", url.url, names.join(", ")));
            }
        } else {
            match &url.refused {
                Some(refused) => {
                    header.push(format!(
                        "#   RtUrl: not {}, the URL of {count} of {routed} aliases (their routes leave \
                         --url out): the function would refuse it",
                        url.shown()
                    ));
                    header.push(format!("#     {refused}"));
                    messages.push(format!(
                        "error: RtUrl can't be the aliases' {}: the function would refuse it at cold start: {refused}",
                        url.shown()
                    ));
                }
                None => header.push(format!(
                    "#   RtUrl={}  ({count} of {routed} aliases; their routes leave --url out)",
                    url.url
                )),
            }
            if url.had_credentials() {
                header.push(
                    "#     its aliases' URL held credentials: put them in a Secrets Manager secret \
                     and give its ARN as RtSecretArn"
                        .into(),
                );
                messages.push(format!(
                    "warning: the aliases' URL for RtUrl held credentials ({}): they are not copied; \
                     put them in a Secrets Manager secret and give its ARN as RtSecretArn",
                    url.shown()
                ));
            }
            if let Some(reach) = reach.as_ref().filter(|_| url.refused.is_none()) {
                header.push(format!("#     WARNING: {reach}"));
                messages.push(format!("warning: RtUrl {} is {reach}", url.url));
            }
        }
    }
    if !settings.is_empty() {
        header.push("# The aliases' pipes also set (not in the routes; TLS trust goes in each RT's secret):".into());
    }
    for (setting, values) in &settings {
        for (value, names) in values {
            header.push(format!("#   {setting}{value}  ({} of {routed} aliases)", names.len()));
        }
        // TLS trust is each RT's own (`ca_pem` in its secret): several values are no
        // conflict, but checks turned off somewhere are worth a warning.
        let tls = TLS_SETTINGS.contains(setting);
        if values.len() > 1 && !tls {
            let each: Vec<String> = values
                .iter()
                .map(|(value, names)| format!("{setting}{value} for {}", names.join(", ")))
                .collect();
            let warning = format!(
                "the aliases differ on {setting}, which the function has only one of: {}",
                each.join("; ")
            );
            header.push(format!("# WARNING: {warning}"));
            messages.push(format!("warning: {warning}"));
        }
        if *setting == "--no-verify-ssl" {
            let names: Vec<&str> = values.values().flatten().copied().collect();
            messages.push(format!(
                "warning: {} turned TLS checks off (--no-verify-ssl); the function keeps them on: put \
                 the certificate RT's front door presents (or its CA) in that RT's secret as `ca_pem`. \
                 RtVerifyTls=false would turn them off for every RT",
                names.join(", ")
            ));
        }
    }
    if routed == 0 {
        messages.push(format!(
            "warning: no alias in {source} pipes to rt-mailgate: no route made"
        ));
    }
    // What the report says about the file (not the routes themselves, which never hold
    // credentials) may quote what the parser did not recognise: hide `user:password@`.
    let mut routes = header.iter().map(|l| redact_words(l)).collect::<Vec<_>>().join("\n");
    routes.push('\n');
    for line in lines {
        routes.push_str(&line);
        routes.push('\n');
    }
    Report {
        routes,
        messages: messages.iter().map(|m| redact_words(m)).collect(),
        routed,
        skipped,
    }
}

/// Whether the function, in Lambda, can reach an RT at `url` (its canonical form, from
/// [`rt_base_url`]): `None` when the host is a public name or address, else what the
/// admin must do. Lambda runs in AWS's network: `localhost` is the function itself, a
/// single-label or `.local` name resolves nowhere there, and a private address is
/// reachable only from the admin's VPC.
pub fn lambda_reach(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let front_door = "put RT's front door (deploy/) on a name and address Lambda reaches, and use its URL";
    let vpc =
        "reachable only with the function in your VPC (SubnetIds, SecurityGroupIds: docs/deploy.md, \"Private network (VPC)\")";
    let unreachable = |what: &str| Some(format!("{what}: Lambda can't reach it; {front_door}"));
    match parsed.host()? {
        url::Host::Ipv4(ip) if ip.is_loopback() || ip.is_unspecified() => {
            unreachable("a loopback address (in Lambda, that is the function itself)")
        }
        url::Host::Ipv4(ip) if ip.is_link_local() => unreachable("a link-local address"),
        url::Host::Ipv4(ip) if ip.is_private() || (ip.octets()[0] == 100 && (64..128).contains(&ip.octets()[1])) => {
            Some(format!("a private address: {vpc}"))
        }
        url::Host::Ipv6(ip) if ip.is_loopback() || ip.is_unspecified() => {
            unreachable("a loopback address (in Lambda, that is the function itself)")
        }
        url::Host::Ipv6(ip) if (ip.segments()[0] & 0xffc0) == 0xfe80 => unreachable("a link-local address"),
        url::Host::Ipv6(ip) if (ip.segments()[0] & 0xfe00) == 0xfc00 => Some(format!("a private address: {vpc}")),
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => None,
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                unreachable("localhost (in Lambda, that is the function itself)")
            } else if !name.contains('.') {
                unreachable("a single-label host name (it resolves only on your network)")
            } else if name.ends_with(".local") {
                unreachable("a .local (mDNS) name")
            } else if [".internal", ".lan", ".home.arpa", ".corp", ".intranet"]
                .iter()
                .any(|tld| name.ends_with(tld))
            {
                Some(format!("a private DNS name: {vpc}, with DNS that resolves it"))
            } else {
                None
            }
        }
    }
}

/// The settings of [`function_wide_settings`] that are each RT's own (its secret's
/// `ca_pem`), not the function's.
const TLS_SETTINGS: [&str; 3] = ["--ca-file", "--no-verify-ssl", "--verify-ssl"];

/// The template parameter (or note) each function-wide option maps to: (`RtTimeout`, `=...`).
fn function_wide_settings(f: &FunctionWide) -> Vec<(&'static str, String)> {
    let mut settings = Vec::new();
    if let Some(path) = &f.ca_file {
        settings.push((
            "--ca-file",
            format!(" {path}: put its certificates in the RT's secret as `ca_pem`"),
        ));
    }
    match f.verify_ssl {
        Some(false) => settings.push((
            "--no-verify-ssl",
            ": keep TLS checks on; put the RT's certificate (or CA) in its secret as `ca_pem`".into(),
        )),
        Some(true) => settings.push(("--verify-ssl", ": the function's default".into())),
        None => {}
    }
    if let Some(seconds) = f.timeout {
        settings.push(("RtTimeout", format!("={seconds}")));
    }
    if f.debug {
        settings.push(("--debug", ": no such setting; the function logs every delivery".into()));
    }
    if f.jar.is_some() {
        settings.push(("--jar", ": not needed; the mail gateway takes no cookies".into()));
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(text: &str) -> Vec<Item> {
        import_aliases(text, "example.com").unwrap()
    }

    fn routes(items: &[Item]) -> Vec<&str> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Route(m) => Some(m.route.as_str()),
                Item::Skipped(_) => None,
            })
            .collect()
    }

    fn skips(items: &[Item]) -> Vec<(usize, &str, &str)> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Skipped(s) => Some((s.line, s.name.as_str(), s.reason.as_str())),
                Item::Route(_) => None,
            })
            .collect()
    }

    fn only_route(text: &str) -> Migrated {
        match items(text).as_slice() {
            [Item::Route(m)] => m.clone(),
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn both_pipe_forms_and_quoted_queue_names() {
        let all = items(
            "a: \"|/usr/bin/rt-mailgate --queue 'Sales Team' --action correspond --url https://rt/\"\n\
             b: |\"/opt/rt5/bin/rt-mailgate --queue \\\"It's #1; ok\\\" --extension=ticket\"\n\
             c: |/usr/bin/rt-mailgate\n\
             d: \"|/usr/bin/perl /opt/rt/bin/rt-mailgate -q=Help -a take-comment\"\n",
        );
        assert_eq!(
            routes(&all),
            [
                "a@example.com: --queue 'Sales Team' --action correspond",
                "b@example.com: --queue \"It's #1; ok\" --extension ticket",
                "c@example.com:",
                "d@example.com: --queue Help --action take-comment",
            ]
        );
    }

    #[test]
    fn continuations_comments_and_blank_lines() {
        let all = items(
            "# header comment\n\
             a: \"|/usr/bin/rt-mailgate --queue\n\
             \t'Sales Team'\n\
             \x20 # an indented comment keeps the alias open\n\
             \x20 --action comment\"\n\
             \n\
             \x20 --orphan\n\
             b: root\n",
        );
        assert_eq!(routes(&all), ["a@example.com: --queue 'Sales Team' --action comment"]);
        let skipped = skips(&all);
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0].0, 7);
        assert!(skipped[0].2.contains("continues no alias"), "{skipped:?}");
        assert_eq!((skipped[1].0, skipped[1].1), (8, "b"));
        assert!(skipped[1].2.contains("no pipe to rt-mailgate: it delivers to `root`"));
    }

    #[test]
    fn a_comment_at_the_margin_ends_an_alias() {
        let all = items("a: \"|rt-mailgate --queue a\"\n# note\n --action comment\n");
        assert_eq!(routes(&all), ["a@example.com: --queue a"]);
        assert!(skips(&all)[0].2.contains("continues no alias"));
    }

    #[test]
    fn other_targets_are_noted_and_the_rt_mailgate_pipe_is_kept() {
        let m = only_route(
            "bugs: archive@example.com, \"|/usr/bin/rt-mailgate --queue bugs --url https://rt\", \
             /var/mail/bugs, :include:/etc/mail/bugs.list, \"|/usr/bin/rt-mailgate --queue other --url https://rt\", \
             \"|/usr/bin/logger -t x\"",
        );
        assert_eq!(m.route, "bugs@example.com: --queue bugs");
        let notes = m.notes.join("\n");
        for expected in [
            "also delivers to `archive@example.com`",
            "also appends to the file `/var/mail/bugs`",
            "also includes `/etc/mail/bugs.list` (not followed",
            "a second pipe to rt-mailgate (--queue other --url https://rt)",
            "also pipes to `/usr/bin/logger`",
        ] {
            assert!(notes.contains(expected), "{expected} not in {notes}");
        }
        assert_eq!(m.notes.len(), 5);
    }

    #[test]
    fn aliases_without_an_rt_mailgate_pipe_are_skipped_with_their_reason() {
        let all = items(
            "postmaster: root\n\
             list: :include:/etc/mail/list\n\
             proc: \"|/usr/bin/procmail -a secret\"\n\
             log: /var/log/mail.bugs\n\
             broken: \"|/usr/bin/rt-mailgate --queue 'open\"\n\
             empty:\n\
             no colon here\n\
             help: \"|rt-mailgate --help --url https://rt\"\n\
             \"quoted name\": root\n\
             bugs: \"|rt-mailgate --queue bugs --url https://rt\"\n\
             BUGS: \"|rt-mailgate --queue other --url https://rt\"\n\
             bad: \"|rt-mailgate --queue bad --action close --url https://rt\"\n",
        );
        assert_eq!(routes(&all), ["bugs@example.com: --queue bugs"]);
        let expected = [
            (1, "postmaster", "no pipe to rt-mailgate: it delivers to `root`"),
            (2, "list", "includes `/etc/mail/list` (not followed"),
            (3, "proc", "pipes to `/usr/bin/procmail`"),
            (4, "log", "appends to the file `/var/log/mail.bugs`"),
            (5, "broken", "unclosed quote"),
            (6, "empty", "no target"),
            (7, "no colon here", "no `name: value`"),
            (8, "help", "--help"),
            (9, "\"quoted name\"", "not a plain local part"),
            (11, "BUGS", "same name on line 10"),
            (12, "bad", "the Lambda would refuse its route: action `close`"),
        ];
        let skipped = skips(&all);
        assert_eq!(skipped.len(), expected.len(), "{skipped:?}");
        for ((line, name, reason), (l, n, r)) in expected.iter().zip(&skipped) {
            assert_eq!((line, name), (l, n));
            assert!(r.contains(reason), "{name}: {r}");
        }
        // A pipe's arguments are never echoed for a program that is not rt-mailgate.
        assert!(!skipped[2].2.contains("secret"));
    }

    #[test]
    fn function_wide_options_leave_the_route() {
        let m = only_route(
            "a: \"|rt-mailgate --queue a --url=https://u:p@rt/ --ca-file /etc/ca.pem \
             --no-verify-ssl --timeout 30 --debug --jar /tmp/j -e queue\"",
        );
        assert_eq!(m.route, "a@example.com: --queue a --extension queue");
        let url = m.url.as_ref().unwrap();
        assert_eq!((url.url.as_str(), url.in_route), ("https://rt", false));
        assert!(url.had_credentials());
        assert_eq!(url.shown(), "https://***@rt");
        // Whatever else an alias delivers to is shown without what may be credentials.
        let odd = Target::Address("x@a:very-secret-word@rt --url https://rt".into());
        assert_eq!(odd.describe(), "delivers to `***@rt --url https://rt`");
        assert_eq!(
            m.function_wide,
            FunctionWide {
                ca_file: Some("/etc/ca.pem".into()),
                verify_ssl: Some(false),
                timeout: Some(30),
                debug: true,
                jar: Some("/tmp/j".into()),
            }
        );
        assert!(!format!("{m:?}").contains("u:p"));
        assert!(m.notes.is_empty(), "{:?}", m.notes);
    }

    #[test]
    fn ignored_words_warnings_and_missing_url_are_noted() {
        let m = only_route("a: \"|env X=1 rt-mailgate --queue a --frob stray 2>/dev/null\"");
        assert_eq!(m.route, "a@example.com: --queue a");
        let notes = m.notes.join("\n");
        for expected in [
            "runs `env 'X=1' rt-mailgate ...`",
            "rt-mailgate warned `Unknown option: frob`",
            "left out: stray '2>/dev/null'",
            "no --url",
        ] {
            assert!(notes.contains(expected), "{expected} not in {notes}");
        }
    }

    #[test]
    fn a_bad_domain_is_refused() {
        for domain in ["", "a b", "x@y"] {
            assert_eq!(
                import_aliases("a: root", domain),
                Err(ImportError::BadDomain(domain.to_string()))
            );
        }
    }

    #[test]
    fn the_url_most_aliases_share_is_rt_url_and_the_others_stay_in_their_routes() {
        let all = items(
            "a: \"|rt-mailgate --queue a --url https://rt2.example/\"\n\
             b: \"|rt-mailgate --queue b --url HTTPS://RT1.example\"\n\
             c: \"|rt-mailgate --queue c --url https://rt1.example/\"\n\
             d: \"|rt-mailgate --queue d\"\n\
             e: |rt-mailgate --url https://rt3.example/it\\'s\n",
        );
        assert_eq!(
            routes(&all),
            [
                "a@example.com: --queue a --url https://rt2.example",
                "b@example.com: --queue b",
                "c@example.com: --queue c",
                // No --url: rt-mailgate refused it; the route goes to RtUrl.
                "d@example.com: --queue d",
                "e@example.com: --url \"https://rt3.example/it's\"",
            ]
        );
        // The routes post where the aliases did.
        let table: Vec<&str> = routes(&all);
        let table = RoutingTable::parse(&table.join("\n"), None).unwrap();
        let rt = |a: &str| table.route(a).unwrap().request.rt.map(|t| t.url);
        assert_eq!(rt("a@example.com").as_deref(), Some("https://rt2.example"));
        assert_eq!(rt("b@example.com"), None);
        assert_eq!(rt("e@example.com").as_deref(), Some("https://rt3.example/it's"));
        // On a tie, the first in the file is RtUrl.
        let tie = items("a: \"|rt-mailgate -q a --url https://rt2\"\nb: \"|rt-mailgate -q b --url https://rt1\"\n");
        assert_eq!(
            routes(&tie),
            ["a@example.com: --queue a", "b@example.com: --queue b --url https://rt1"]
        );
    }

    #[test]
    fn credentials_are_never_copied_and_two_credentials_are_two_rts() {
        let all = items(
            "a: \"|rt-mailgate --queue a --url https://u:s3cret@rt1/\"\n\
             b: \"|rt-mailgate --queue b --url https://u:s3cret@rt1\"\n\
             c: \"|rt-mailgate --queue c --url https://v:0ther@rt1/\"\n\
             d: \"|rt-mailgate --queue d --url https://rt1/\"\n",
        );
        assert_eq!(
            routes(&all),
            [
                "a@example.com: --queue a",
                "b@example.com: --queue b",
                "c@example.com: --queue c --url https://rt1",
                "d@example.com: --queue d --url https://rt1",
            ]
        );
        let Item::Route(c) = &all[2] else {
            panic!("{:?}", all[2])
        };
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(
            c.notes[0].contains("(https://***@rt1)") && c.notes[0].contains("add `--secret ID` to the route"),
            "{:?}",
            c.notes
        );
        let Item::Route(d) = &all[3] else {
            panic!("{:?}", all[3])
        };
        assert!(d.notes.is_empty(), "{:?}", d.notes);
        let shown = format!("{all:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("0ther"), "{shown}");
    }

    #[test]
    fn an_alias_whose_url_the_function_would_refuse_is_skipped() {
        let all = items(
            "a: \"|rt-mailgate --queue a --url rt.example.com\"\n\
             b: \"|rt-mailgate --queue b --url=ftp://u:s3cret@rt.example.com\"\n\
             c: \"|rt-mailgate --queue c --url https://rt.example.com/?x=1\"\n",
        );
        assert!(routes(&all).is_empty());
        let skipped = skips(&all);
        assert_eq!(skipped.len(), 3);
        assert!(skipped[0].2.contains("http:// or https://") && skipped[0].2.contains("`rt.example.com`"));
        assert!(skipped[1].2.contains("`ftp://***@rt.example.com`"), "{:?}", skipped[1]);
        assert!(skipped[2].2.contains("no `?query`"));
    }

    #[test]
    fn the_report_names_each_rt_and_sums_up_settings() {
        let all = items(
            "a: \"|rt-mailgate --queue a --url https://u:secret@rt1.example.net/ --no-verify-ssl\"\n\
             b: \"|rt-mailgate --queue b --url https://rt2.example.net --timeout 30\"\n\
             c: \"|rt-mailgate --queue c --url https://u:secret@rt1.example.net --timeout 60\"\n\
             d: root\n\
             e: \"|rt-mailgate --queue e --url https://v:other@rt2.example.net/\"\n",
        );
        let r = report(&all, "/etc/aliases");
        assert_eq!((r.routed, r.skipped), (4, 1));
        assert_eq!(
            r.routes,
            "# Lambda routes from /etc/aliases, made by `rt-mailgate-routes import-aliases`.\n\
             # The RTs the aliases post to (credentials are never copied into routes):\n\
             #   RtUrl=https://rt1.example.net  (2 of 4 aliases; their routes leave --url out)\n\
             #     its aliases' URL held credentials: put them in a Secrets Manager secret \
             and give its ARN as RtSecretArn\n\
             #   --url https://rt2.example.net  (1 of 4 aliases, in their routes: b)\n\
             #   --url https://rt2.example.net  (1 of 4 aliases, in their routes: e)\n\
             #     its aliases' URL held credentials: put them in a Secrets Manager secret \
             and add `--secret ID` to these routes\n\
             # The aliases' pipes also set (not in the routes; TLS trust goes in each RT's secret):\n\
             #   --no-verify-ssl: keep TLS checks on; put the RT's certificate (or CA) in its secret \
             as `ca_pem`  (1 of 4 aliases)\n\
             #   RtTimeout=30  (1 of 4 aliases)\n\
             #   RtTimeout=60  (1 of 4 aliases)\n\
             # WARNING: the aliases differ on RtTimeout, which the function has only one of: \
             RtTimeout=30 for b; RtTimeout=60 for c\n\
             a@example.com: --queue a\n\
             b@example.com: --queue b --url https://rt2.example.net\n\
             c@example.com: --queue c\n\
             e@example.com: --queue e --url https://rt2.example.net\n"
        );
        assert_eq!(r.messages.len(), 5, "{:?}", r.messages);
        assert_eq!(
            r.messages[0],
            "line 4: `d` skipped: no pipe to rt-mailgate: it delivers to `root`"
        );
        assert!(r.messages[1]
            .starts_with("line 5: `e` migrated, but its --url held credentials (https://***@rt2.example.net)"));
        assert!(r.messages[2]
            .starts_with("warning: the aliases' URL for RtUrl held credentials (https://***@rt1.example.net)"));
        assert!(r.messages[3].starts_with("warning: a turned TLS checks off (--no-verify-ssl)"));
        assert!(r.messages[4].starts_with("warning: the aliases differ on RtTimeout"));
        assert!(!format!("{r:?}").contains("secret@") && !format!("{r:?}").contains("other@"));
        // The function reads the whole output, header included.
        let table = RoutingTable::parse(&r.routes, Some('+')).unwrap();
        assert!(table.route("b+1@example.com").is_some());
    }

    #[test]
    fn urls_lambda_cannot_reach_are_named() {
        for (url, expected) in [
            ("http://localhost", "localhost"),
            ("http://rt.localhost:8080", "localhost"),
            ("http://127.0.0.1", "loopback"),
            ("http://[::1]", "loopback"),
            ("http://169.254.10.1", "link-local"),
            ("http://[fe80::1]", "link-local"),
            ("https://rt", "single-label"),
            ("https://rt.local", ".local"),
        ] {
            let reach = lambda_reach(url).unwrap_or_else(|| panic!("{url} passed"));
            assert!(
                reach.contains(expected) && reach.contains("front door (deploy/)"),
                "{url}: {reach}"
            );
        }
        for url in [
            "http://10.1.2.3",
            "http://172.20.0.5",
            "http://192.168.1.10",
            "http://100.64.0.1",
            "http://[fd00::5]",
            "https://rt.corp.internal",
        ] {
            let reach = lambda_reach(url).unwrap_or_else(|| panic!("{url} passed"));
            assert!(reach.contains("only with the function in your VPC"), "{url}: {reach}");
        }
        for url in [
            "https://rt.example.com",
            "https://203.0.113.7",
            "https://[2001:db8::1]/rt",
        ] {
            assert_eq!(lambda_reach(url), None, "{url}");
        }
    }

    #[test]
    fn one_rt_is_named_once() {
        let r = report(
            &items("a: \"|rt-mailgate --queue a --url https://rt.example.net/\""),
            "x",
        );
        assert_eq!(
            r.routes,
            "# Lambda routes from x, made by `rt-mailgate-routes import-aliases`.\n\
             # The RT the aliases post to:\n\
             #   RtUrl=https://rt.example.net  (1 of 1 aliases; their routes leave --url out)\n\
             a@example.com: --queue a\n"
        );
        assert!(r.messages.is_empty(), "{:?}", r.messages);
    }

    #[test]
    fn what_the_function_would_refuse_is_never_printed_as_a_route_or_rt_url() {
        let text = "general: \"|rt-mailgate --queue General --url http://localhost/\"\n\
                    general-comment: \"|rt-mailgate --queue General --action comment --url http://localhost/\"\n\
                    lab: \"|rt-mailgate --queue Lab --url https://127.0.0.1:8443/lab\"\n\
                    ops: \"|rt-mailgate --queue Ops --url http://10.0.0.5/rt\"\n\
                    web: \"|rt-mailgate --queue Web --url https://rt.example.com/\"\n";
        let all = import_aliases(text, "example.com").unwrap();
        // A route's own loopback or plain-http URL: skipped, saying why.
        let skipped: Vec<(&str, &str)> = all
            .iter()
            .filter_map(|i| match i {
                Item::Skipped(s) => Some((s.name.as_str(), s.reason.as_str())),
                Item::Route(_) => None,
            })
            .collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0].0, "lab");
        assert!(
            skipped[0]
                .1
                .starts_with("the Lambda would refuse its route's --url https://127.0.0.1:8443/lab: ")
                && skipped[0].1.contains("the function itself"),
            "{}",
            skipped[0].1
        );
        assert_eq!(skipped[1].0, "ops");
        assert!(
            skipped[1].1.contains("plain http://") && skipped[1].1.contains("--allow-plain-http"),
            "{}",
            skipped[1].1
        );
        assert_eq!(
            routes(&all),
            [
                "general@example.com: --queue General",
                "general-comment@example.com: --queue General --action comment",
                "web@example.com: --queue Web --url https://rt.example.com",
            ]
        );
        // The shared loopback URL is not offered as RtUrl: an error says why.
        let r = report(&all, "aliases");
        assert!(
            r.routes.contains(
                "#   RtUrl: not http://localhost, the URL of 2 of 3 aliases (their routes leave --url out): \
                 the function would refuse it\n#     RT URL http://localhost/ is this machine"
            ),
            "{}",
            r.routes
        );
        assert!(!r.routes.contains("RtUrl=http"), "{}", r.routes);
        assert!(
            r.messages
                .iter()
                .any(|m| m.starts_with("error: RtUrl can't be the aliases' http://localhost")),
            "{:?}",
            r.messages
        );
        // The stack's one exception for plain http is the import's too.
        let allowed = import_aliases_with(text, "example.com", true).unwrap();
        assert!(routes(&allowed).contains(&"ops@example.com: --queue Ops --url http://10.0.0.5/rt"));
        assert!(routes(&allowed).iter().all(|r| !r.contains("127.0.0.1")));
        // Every route printed is one the function (as deployed) takes.
        let table = RoutingTable::parse(&report(&allowed, "aliases").routes, Some('+')).unwrap();
        assert_eq!(table.targets().len(), 2);
    }
}
