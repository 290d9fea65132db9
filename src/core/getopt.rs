//! Command-line parsing that behaves like the Perl client's Getopt::Long call, so an
//! existing `/etc/aliases` line means the same thing to us:
//! `--opt value`, `--opt=value`, a single dash (`-queue`), any case (`--URL`), unique
//! abbreviations (`--q`), `+queue` (Getopt::Long's `getopt_compat`), `--no-verify-ssl` /
//! `--noverify-ssl`, `--` ends the options, and words that are not options are left
//! alone. With `POSIXLY_CORRECT` in the environment Getopt::Long is stricter (no `+`, no
//! abbreviations, the first word ends the options), and so are we ([`Conventions`]).
//! Values stay bytes: an argument that is not UTF-8 is posted as the shell gave it.
//! Routes reuse the same rules for the few options only a route has
//! ([`parse_args_extended`]); rt-mailgate itself does not know them (they warn as unknown).
//!
//! A bad option is a *warning*, never a refusal: a typo in an alias line must not bounce
//! the customer's mail. (clap refuses unknown options and single-dash long names, hence
//! this small parser.)

/// Options of `rt-mailgate`, as given. Values are bytes, as the shell handed them over:
/// a queue named in Latin-1 (`caf\xe9`) is posted byte for byte, as Perl posts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliOptions {
    /// `--queue`.
    pub queue: Option<Vec<u8>>,
    /// `--action`.
    pub action: Option<Vec<u8>>,
    /// `--url`: RT's base URL.
    pub url: Option<Vec<u8>>,
    /// `--jar`: accepted for compatibility; the NoAuth gateway needs no cookies.
    pub jar: Option<Vec<u8>>,
    /// `--help`.
    pub help: bool,
    /// `--debug`.
    pub debug: bool,
    /// `--extension`.
    pub extension: Option<Vec<u8>>,
    /// `--timeout` in seconds.
    pub timeout: Option<i64>,
    /// `--verify-ssl` / `--no-verify-ssl`; `None` means the default (verify).
    pub verify_ssl: Option<bool>,
    /// `--ca-file`.
    pub ca_file: Option<Vec<u8>>,
    /// `--secret-file` (ours, not Perl's): a JSON file of credentials for the proxy in
    /// front of RT (see [`crate::core::credentials`]).
    pub secret_file: Option<Vec<u8>>,
    /// `--rt-organization` (ours): RT's `$Organization`; set, replies thread by RT's
    /// markers and bounces of RT's mail become comments (see [`crate::core::threading`]).
    pub rt_organization: Option<Vec<u8>>,
    /// `--rt-name` (ours): RT's `$rtname`, whose subject tag wins over any marker.
    pub rt_name: Option<Vec<u8>>,
}

/// The result of parsing: options, Getopt-style warnings, and the words left over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// What was understood.
    pub options: CliOptions,
    /// One line per problem, worded as Getopt::Long words them.
    pub warnings: Vec<String>,
    /// Arguments that are not options (ignored by rt-mailgate, as in Perl).
    pub operands: Vec<Vec<u8>>,
}

/// Getopt::Long's two configurations: its default, and the one it switches to when
/// `POSIXLY_CORRECT` is in the environment (whatever its value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Conventions {
    /// `--`, `-` or `+` start an option, unique abbreviations are taken, options and
    /// words may be mixed.
    #[default]
    Gnu,
    /// `POSIXLY_CORRECT`: only `--` and `-`, exact names only, and the first word that
    /// is not an option ends the options.
    Posix,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
    Flag,
    Negatable,
}

/// Option names and kinds, as in the Perl client's `GetOptions` call.
const SPEC: &[(&str, Kind)] = &[
    ("queue", Kind::Text),
    ("action", Kind::Text),
    ("url", Kind::Text),
    ("jar", Kind::Text),
    ("help", Kind::Flag),
    ("debug", Kind::Flag),
    ("extension", Kind::Text),
    ("timeout", Kind::Integer),
    ("verify-ssl", Kind::Negatable),
    ("ca-file", Kind::Text),
    ("secret-file", Kind::Text),
    ("rt-organization", Kind::Text),
    ("rt-name", Kind::Text),
];

/// Options of ours that the Perl client lacks (the CLI only). None shares a first letter
/// with the Perl client's, so every abbreviation that was unique there still is.
const CLI_ONLY: &[&str] = &["secret-file", "rt-organization", "rt-name"];

/// Every spelling that may be abbreviated: (spelling, option, value for negatables).
/// `extra` are text options beyond rt-mailgate's own (see [`parse_args_extended`]).
/// With `extra` options (a route's), the CLI's own additions to Perl's options are left
/// out: a route can't use them, and `--sec` must abbreviate `--secret` there.
fn spellings(extra: &[&'static str]) -> Vec<(String, &'static str, Kind, bool)> {
    let mut all = Vec::new();
    let cli_only = |name: &str| !extra.is_empty() && CLI_ONLY.contains(&name);
    let spec = SPEC.iter().copied().filter(|(name, _)| !cli_only(name));
    let extra = extra.iter().map(|&name| (name, Kind::Text));
    for (name, kind) in spec.chain(extra) {
        all.push((name.to_string(), name, kind, true));
        if kind == Kind::Negatable {
            all.push((format!("no-{name}"), name, kind, false));
            all.push((format!("no{name}"), name, kind, false));
        }
    }
    all
}

/// Parses the arguments after the program name with Getopt::Long's default conventions.
pub fn parse_args<I, S>(args: I) -> Parsed
where
    I: IntoIterator<Item = S>,
    S: Into<Vec<u8>>,
{
    parse_args_with(args, Conventions::Gnu)
}

/// Parses the arguments after the program name.
pub fn parse_args_with<I, S>(args: I, conventions: Conventions) -> Parsed
where
    I: IntoIterator<Item = S>,
    S: Into<Vec<u8>>,
{
    parse(args, conventions, &[]).0
}

/// Parses like [`parse_args`], also taking the text options `extra` that rt-mailgate
/// itself does not have (a route's `--secret`), with the same conventions: any case,
/// `=value` or the next word, unique abbreviations. Their values come back apart, in
/// order. Parsing them here rather than picking them out beforehand keeps
/// `--queue --secret` a queue named `--secret`, as Getopt::Long reads it.
pub fn parse_args_extended<I, S>(args: I, extra: &[&'static str]) -> (Parsed, Vec<(&'static str, Vec<u8>)>)
where
    I: IntoIterator<Item = S>,
    S: Into<Vec<u8>>,
{
    parse(args, Conventions::Gnu, extra)
}

fn parse<I, S>(args: I, conventions: Conventions, extra: &[&'static str]) -> (Parsed, Vec<(&'static str, Vec<u8>)>)
where
    I: IntoIterator<Item = S>,
    S: Into<Vec<u8>>,
{
    let mut parsed = Parsed::default();
    let mut extra_values = Vec::new();
    let mut args = args.into_iter().map(Into::into);
    let spellings = spellings(extra);
    let posix = conventions == Conventions::Posix;
    while let Some(arg) = args.next() {
        if arg == b"--" {
            parsed.operands.extend(args.by_ref());
            break;
        }
        let body = match option_body(&arg, posix) {
            Some(body) => body,
            None if posix => {
                // REQUIRE_ORDER: the first word ends the options.
                parsed.operands.push(arg);
                parsed.operands.extend(args.by_ref());
                break;
            }
            None => {
                parsed.operands.push(arg);
                continue;
            }
        };
        if body.is_empty() {
            // Only `+` reaches here (`-` and `--` alone are words).
            parsed.warnings.push("Missing option after +".to_string());
            continue;
        }
        let (given, inline_value) = match body.iter().position(|&b| b == b'=') {
            Some(at) => (&body[..at], Some(body[at + 1..].to_vec())),
            None => (body, None),
        };
        let wanted = String::from_utf8_lossy(given).to_ascii_lowercase();
        let exact = spellings.iter().find(|s| s.0 == wanted);
        let found = match exact {
            Some(s) => Ok(s),
            None if posix => Err(format!("Unknown option: {wanted}")),
            None => {
                let candidates: Vec<_> = spellings.iter().filter(|s| s.0.starts_with(&wanted)).collect();
                let options: std::collections::BTreeSet<_> = candidates.iter().map(|s| (s.1, s.3)).collect();
                match options.len() {
                    1 => Ok(candidates[0]),
                    0 => Err(format!("Unknown option: {wanted}")),
                    _ => Err(format!(
                        "Option {wanted} is ambiguous ({})",
                        candidates.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", ")
                    )),
                }
            }
        };
        let (_, name, kind, positive) = match found {
            Ok(s) => s,
            Err(warning) => {
                parsed.warnings.push(warning);
                continue;
            }
        };
        match kind {
            Kind::Flag | Kind::Negatable => {
                if inline_value.is_some() {
                    parsed.warnings.push(format!("Option {name} does not take an argument"));
                    continue;
                }
                match *name {
                    "help" => parsed.options.help = true,
                    "debug" => parsed.options.debug = true,
                    _ => parsed.options.verify_ssl = Some(*positive),
                }
            }
            Kind::Text | Kind::Integer => {
                // A mandatory value: `=v`, or the next word even when it starts with `-`.
                let value = match inline_value {
                    Some(v) if !v.is_empty() => Some(v),
                    Some(_) => None,
                    None => args.next(),
                };
                let Some(value) = value else {
                    parsed.warnings.push(format!("Option {name} requires an argument"));
                    continue;
                };
                if *kind == Kind::Integer {
                    match parse_integer(&value) {
                        Some(n) => parsed.options.timeout = Some(n),
                        None => parsed.warnings.push(format!(
                            "Value \"{}\" invalid for option {name} (number expected)",
                            String::from_utf8_lossy(&value)
                        )),
                    }
                    continue;
                }
                if extra.contains(name) {
                    extra_values.push((*name, value));
                    continue;
                }
                let slot = match *name {
                    "queue" => &mut parsed.options.queue,
                    "action" => &mut parsed.options.action,
                    "url" => &mut parsed.options.url,
                    "jar" => &mut parsed.options.jar,
                    "extension" => &mut parsed.options.extension,
                    "secret-file" => &mut parsed.options.secret_file,
                    "rt-organization" => &mut parsed.options.rt_organization,
                    "rt-name" => &mut parsed.options.rt_name,
                    _ => &mut parsed.options.ca_file,
                };
                *slot = Some(value);
            }
        }
    }
    (parsed, extra_values)
}

/// The option name (and `=value`) after its prefix, or `None` for a plain word.
/// `-` and `--` alone are words; `+` starts an option only outside POSIX mode
/// (Getopt::Long's `getopt_compat`).
fn option_body(arg: &[u8], posix: bool) -> Option<&[u8]> {
    if let Some(body) = arg.strip_prefix(b"--").or_else(|| arg.strip_prefix(b"-")) {
        return (!body.is_empty()).then_some(body);
    }
    if posix {
        return None;
    }
    arg.strip_prefix(b"+")
}

/// Getopt::Long's `=i`: an optional sign and digits.
fn parse_integer(value: &[u8]) -> Option<i64> {
    let value = std::str::from_utf8(value).ok()?;
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.strip_prefix('+').unwrap_or(value).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Parsed {
        parse_args(line.split_whitespace())
    }

    fn posix(line: &str) -> Parsed {
        parse_args_with(line.split_whitespace(), Conventions::Posix)
    }

    fn text(value: &Option<Vec<u8>>) -> Option<&str> {
        value.as_deref().map(|v| std::str::from_utf8(v).unwrap())
    }

    fn words(operands: &[Vec<u8>]) -> Vec<&str> {
        operands.iter().map(|v| std::str::from_utf8(v).unwrap()).collect()
    }

    // Each expectation below was checked against Perl's Getopt::Long with the same spec.

    #[test]
    fn long_forms_single_dash_case_and_abbreviations() {
        let p = parse("--queue q --action=take-comment -URL=http://rt -e ticket --ca f --deb");
        assert_eq!(text(&p.options.queue), Some("q"));
        assert_eq!(text(&p.options.action), Some("take-comment"));
        assert_eq!(text(&p.options.url), Some("http://rt"));
        assert_eq!(text(&p.options.extension), Some("ticket"));
        assert_eq!(text(&p.options.ca_file), Some("f"));
        assert!(p.options.debug);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(text(&parse("-q x").options.queue), Some("x"));
    }

    #[test]
    fn mandatory_values_take_the_next_word_even_with_a_dash() {
        let p = parse("--queue -x --url u");
        assert_eq!((text(&p.options.queue), text(&p.options.url)), (Some("-x"), Some("u")));
        let p = parse("--queue --url u");
        assert_eq!(text(&p.options.queue), Some("--url"));
        assert_eq!(words(&p.operands), ["u"]);
    }

    #[test]
    fn verify_ssl_is_negatable_both_ways() {
        assert_eq!(parse("--no-verify-ssl").options.verify_ssl, Some(false));
        assert_eq!(parse("--noverify-ssl").options.verify_ssl, Some(false));
        assert_eq!(parse("--verify").options.verify_ssl, Some(true));
        assert_eq!(parse("").options.verify_ssl, None);
    }

    #[test]
    fn timeout_is_an_integer() {
        assert_eq!(parse("--timeout=+5").options.timeout, Some(5));
        assert_eq!(parse("--timeout -5").options.timeout, Some(-5));
        let p = parse("--timeout abc --url u");
        assert_eq!(p.options.timeout, None);
        assert_eq!(text(&p.options.url), Some("u"));
        assert_eq!(
            p.warnings,
            ["Value \"abc\" invalid for option timeout (number expected)"]
        );
    }

    #[test]
    fn problems_warn_and_the_run_goes_on() {
        let p = parse("--bogus --queue q --debug=1 --url");
        assert_eq!(text(&p.options.queue), Some("q"));
        assert!(!p.options.debug);
        assert_eq!(
            p.warnings,
            [
                "Unknown option: bogus",
                "Option debug does not take an argument",
                "Option url requires an argument"
            ]
        );
        assert_eq!(parse("--queue=").warnings, ["Option queue requires an argument"]);
    }

    #[test]
    fn double_dash_ends_options_and_words_are_left_alone() {
        let p = parse("a --queue q b -- --url x -");
        assert_eq!(text(&p.options.queue), Some("q"));
        assert_eq!(p.options.url, None);
        assert_eq!(words(&p.operands), ["a", "b", "--url", "x", "-"]);
        assert_eq!(words(&parse("-").operands), ["-"]);
    }

    #[test]
    fn later_values_win() {
        assert_eq!(text(&parse("--queue a --queue b").options.queue), Some("b"));
        assert_eq!(parse("--no-verify-ssl --verify-ssl").options.verify_ssl, Some(true));
    }

    #[test]
    fn plus_starts_an_option_as_in_getopt_compat() {
        let p = parse("+queue q +url=u +deb");
        assert_eq!((text(&p.options.queue), text(&p.options.url)), (Some("q"), Some("u")));
        assert!(p.options.debug);
        let p = parse("+ queue");
        assert_eq!(p.warnings, ["Missing option after +"]);
        assert_eq!(words(&p.operands), ["queue"]);
        let p = parse("++queue q");
        assert_eq!(p.warnings, ["Unknown option: +queue"]);
        assert_eq!(words(&p.operands), ["q"]);
    }

    #[test]
    fn posixly_correct_takes_no_plus_no_abbreviation_and_stops_at_the_first_word() {
        let p = posix("+queue q --url u");
        assert_eq!(p.options.queue, None);
        assert_eq!(words(&p.operands), ["+queue", "q", "--url", "u"]);
        let p = posix("--q x");
        assert_eq!(p.warnings, ["Unknown option: q"]);
        let p = posix("--queue q a --url u");
        assert_eq!(text(&p.options.queue), Some("q"));
        assert_eq!(p.options.url, None);
        assert_eq!(words(&p.operands), ["a", "--url", "u"]);
        assert_eq!(posix("--noverify-ssl").options.verify_ssl, Some(false));
        assert_eq!(text(&posix("-QUEUE q").options.queue), Some("q"));
    }

    #[test]
    fn extra_options_parse_like_the_others_and_come_back_apart() {
        let line = "--SECRET=a -sec b --queue --secret --secret c +se d stray";
        let (p, extra) = parse_args_extended(line.split_whitespace(), &["secret"]);
        assert_eq!(text(&p.options.queue), Some("--secret"));
        let values: Vec<(&str, &str)> = extra
            .iter()
            .map(|(n, v)| (*n, std::str::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            values,
            [("secret", "a"), ("secret", "b"), ("secret", "c"), ("secret", "d")]
        );
        assert_eq!(words(&p.operands), ["stray"]);
        let (p, extra) = parse_args_extended(["--secret="], &["secret"]);
        assert_eq!(p.warnings, ["Option secret requires an argument"]);
        assert!(extra.is_empty());
        // rt-mailgate itself knows no such option: there `--secret` abbreviates
        // `--secret-file`, which routes in turn don't know.
        assert_eq!(text(&parse("--secret x").options.secret_file), Some("x"));
        let (p, _) = parse_args_extended(["--secret-file", "f"], &["secret"]);
        assert_eq!(p.warnings, ["Unknown option: secret-file"]);
    }

    #[test]
    fn threading_options_are_the_clis_own_and_abbreviate_nothing_of_perls() {
        let p = parse("--rt-organization rt.example.test --rt-name example.test");
        assert_eq!(text(&p.options.rt_organization), Some("rt.example.test"));
        assert_eq!(text(&p.options.rt_name), Some("example.test"));
        assert_eq!(text(&parse("--rt-o x").options.rt_organization), Some("x"));
        assert!(
            parse("--rt x").warnings[0].contains("ambiguous"),
            "{:?}",
            parse("--rt x").warnings
        );
        // The Perl client's abbreviations still mean what they meant.
        assert_eq!(parse("--t 30").options.timeout, Some(30));
        assert_eq!(text(&parse("--q a").options.queue), Some("a"));
        // A route knows neither.
        let (p, _) = parse_args_extended(["--rt-organization", "x"], &["secret"]);
        assert_eq!(p.warnings, ["Unknown option: rt-organization"]);
    }

    #[test]
    fn values_are_bytes_not_text() {
        let p = parse_args([b"--queue".to_vec(), b"caf\xe9".to_vec(), b"--ext=\xff".to_vec()]);
        assert_eq!(p.options.queue.as_deref(), Some(&b"caf\xe9"[..]));
        assert_eq!(p.options.extension.as_deref(), Some(&b"\xff"[..]));
        let p = parse_args([b"--timeout=\xe9".to_vec()]);
        assert_eq!(
            p.warnings,
            ["Value \"\u{fffd}\" invalid for option timeout (number expected)"]
        );
    }
}
