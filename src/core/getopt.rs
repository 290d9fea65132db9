//! Command-line parsing that behaves like the Perl client's Getopt::Long call, so an
//! existing `/etc/aliases` line means the same thing to us:
//! `--opt value`, `--opt=value`, a single dash (`-queue`), any case (`--URL`), unique
//! abbreviations (`--q`), `--no-verify-ssl` / `--noverify-ssl`, `--` ends the options,
//! and words that are not options are left alone.
//!
//! A bad option is a *warning*, never a refusal: a typo in an alias line must not bounce
//! the customer's mail. (clap refuses unknown options and single-dash long names, hence
//! this small parser.)

/// Options of `rt-mailgate`, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliOptions {
    /// `--queue`.
    pub queue: Option<String>,
    /// `--action`.
    pub action: Option<String>,
    /// `--url`: RT's base URL.
    pub url: Option<String>,
    /// `--jar`: accepted for compatibility; the NoAuth gateway needs no cookies.
    pub jar: Option<String>,
    /// `--help`.
    pub help: bool,
    /// `--debug`.
    pub debug: bool,
    /// `--extension`.
    pub extension: Option<String>,
    /// `--timeout` in seconds.
    pub timeout: Option<i64>,
    /// `--verify-ssl` / `--no-verify-ssl`; `None` means the default (verify).
    pub verify_ssl: Option<bool>,
    /// `--ca-file`.
    pub ca_file: Option<String>,
}

/// The result of parsing: options, Getopt-style warnings, and the words left over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// What was understood.
    pub options: CliOptions,
    /// One line per problem, worded as Getopt::Long words them.
    pub warnings: Vec<String>,
    /// Arguments that are not options (ignored by rt-mailgate, as in Perl).
    pub operands: Vec<String>,
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
];

/// Every spelling that may be abbreviated: (spelling, option, value for negatables).
fn spellings() -> Vec<(String, &'static str, Kind, bool)> {
    let mut all = Vec::new();
    for &(name, kind) in SPEC {
        all.push((name.to_string(), name, kind, true));
        if kind == Kind::Negatable {
            all.push((format!("no-{name}"), name, kind, false));
            all.push((format!("no{name}"), name, kind, false));
        }
    }
    all
}

/// Parses the arguments after the program name.
pub fn parse_args<I, S>(args: I) -> Parsed
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut parsed = Parsed::default();
    let mut args = args.into_iter().map(Into::into);
    let spellings = spellings();
    while let Some(arg) = args.next() {
        if arg == "--" {
            parsed.operands.extend(args.by_ref());
            break;
        }
        let Some(body) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|b| !b.is_empty())
        else {
            parsed.operands.push(arg);
            continue;
        };
        let (given, inline_value) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let wanted = given.to_ascii_lowercase();
        let exact = spellings.iter().find(|s| s.0 == wanted);
        let found = match exact {
            Some(s) => Ok(s),
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
                        None => parsed
                            .warnings
                            .push(format!("Value \"{value}\" invalid for option {name} (number expected)")),
                    }
                    continue;
                }
                let slot = match *name {
                    "queue" => &mut parsed.options.queue,
                    "action" => &mut parsed.options.action,
                    "url" => &mut parsed.options.url,
                    "jar" => &mut parsed.options.jar,
                    "extension" => &mut parsed.options.extension,
                    _ => &mut parsed.options.ca_file,
                };
                *slot = Some(value);
            }
        }
    }
    parsed
}

/// Getopt::Long's `=i`: an optional sign and digits.
fn parse_integer(value: &str) -> Option<i64> {
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

    // Each expectation below was checked against Perl's Getopt::Long with the same spec.

    #[test]
    fn long_forms_single_dash_case_and_abbreviations() {
        let p = parse("--queue q --action=take-comment -URL=http://rt -e ticket --ca f --deb");
        assert_eq!(p.options.queue.as_deref(), Some("q"));
        assert_eq!(p.options.action.as_deref(), Some("take-comment"));
        assert_eq!(p.options.url.as_deref(), Some("http://rt"));
        assert_eq!(p.options.extension.as_deref(), Some("ticket"));
        assert_eq!(p.options.ca_file.as_deref(), Some("f"));
        assert!(p.options.debug);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        assert_eq!(parse("-q x").options.queue.as_deref(), Some("x"));
    }

    #[test]
    fn mandatory_values_take_the_next_word_even_with_a_dash() {
        let p = parse("--queue -x --url u");
        assert_eq!(
            (p.options.queue.as_deref(), p.options.url.as_deref()),
            (Some("-x"), Some("u"))
        );
        let p = parse("--queue --url u");
        assert_eq!(p.options.queue.as_deref(), Some("--url"));
        assert_eq!(p.operands, ["u"]);
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
        assert_eq!(p.options.url.as_deref(), Some("u"));
        assert_eq!(
            p.warnings,
            ["Value \"abc\" invalid for option timeout (number expected)"]
        );
    }

    #[test]
    fn problems_warn_and_the_run_goes_on() {
        let p = parse("--bogus --queue q --debug=1 --url");
        assert_eq!(p.options.queue.as_deref(), Some("q"));
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
        assert_eq!(p.options.queue.as_deref(), Some("q"));
        assert_eq!(p.options.url, None);
        assert_eq!(p.operands, ["a", "b", "--url", "x", "-"]);
        assert_eq!(parse("-").operands, ["-"]);
    }

    #[test]
    fn later_values_win() {
        assert_eq!(parse("--queue a --queue b").options.queue.as_deref(), Some("b"));
        assert_eq!(parse("--no-verify-ssl --verify-ssl").options.verify_ssl, Some(true));
    }
}
