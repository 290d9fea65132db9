//! Commands the tools print for the operator to paste ("next: rt-mailgate-replay
//! --message-id … --recipient …", the trace's `aws logs` lines): every value in them is
//! quoted for a POSIX shell here, because many are chosen by a mail's sender (envelope
//! addresses, `Message-ID` headers) and a pasted command must run exactly the words it
//! shows, never `$(…)`, a backtick, a second command after `;` or a newline, or a value
//! read as an option.
//!
//! - Plain words (letters, digits, `@ % + = : , . / _ -`) are printed as they are, so
//!   ordinary hints stay readable: `--recipient sales@example.com`.
//! - Anything else is put in single quotes (`'It'\''s'`), inside which a POSIX shell
//!   expands nothing.
//! - A value holding control characters (a newline, an escape sequence that would act on
//!   the operator's terminal) or invisible reordering characters is written as
//!   `$'…'` with each such character escaped, so the command stays one visible line
//!   (bash, zsh and ksh read this form; POSIX sh 2024 too).
//! - A value starting with `-` follows its option as `--option=VALUE` (and a positional
//!   one follows `--`), so no tool reads it as an option of its own.

use std::borrow::Cow;
use std::fmt::Write;

/// True for a character printed bare: nothing a shell gives a meaning to.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '@' | '%' | '+' | '=' | ':' | ',' | '.' | '/' | '_' | '-')
}

/// True for a character that must not reach the terminal as it is: control characters
/// and the invisible ones that reorder or hide text (bidi controls, zero-width marks).
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `text` as one shell word: bare when it is plain, else quoted (see the module doc).
/// A leading `-` is not dealt with here: use [`option`] or [`positional`].
pub fn quote(text: &str) -> Cow<'_, str> {
    if !text.is_empty() && text.chars().all(plain) {
        return Cow::Borrowed(text);
    }
    if !text.chars().any(unprintable) {
        return Cow::Owned(format!("'{}'", text.replace('\'', r"'\''")));
    }
    let mut out = String::from("$'");
    for c in text.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\'' => out.push_str(r"\'"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if unprintable(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if unprintable(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// An option and its value as they go into a printed command: `--recipient VALUE`, or
/// `--recipient=VALUE` when the value starts with `-` (so it is never taken for an
/// option).
pub fn option(name: &str, value: &str) -> String {
    if value.starts_with('-') {
        format!("{name}={}", quote(value))
    } else {
        format!("{name} {}", quote(value))
    }
}

/// A positional value in a printed command, after `--` when it starts with `-`.
pub fn positional(value: &str) -> String {
    if value.starts_with('-') {
        format!("-- {}", quote(value))
    } else {
        quote(value).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What `sh` makes of `line`: its words, one per line of `printf`.
    fn words_in_sh(line: &str) -> Vec<String> {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("printf '%s\\0' {line}"))
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_terminator('\0').map(str::to_string).collect()
    }

    const HOSTILE: &[&str] = &[
        "sales@example.com",
        "two words@example.com",
        "it's@example.com",
        "\"quoted\"@example.com",
        "$(touch /tmp/rt-mailgate-pwned)@example.com",
        "`touch /tmp/rt-mailgate-pwned`@example.com",
        "a;rm -rf ~@example.com",
        "line1\nrt-mailgate-replay --post-screened-mail",
        "-rf",
        "--post-screened-mail",
        "\u{1b}[2J\u{1b}]0;title\u{7}@example.com",
        "back\\slash'and\"all$`\n\t\r",
        "\u{202E}moc.elpmaxe@evil",
        "~root",
        "*@example.com",
        "",
        "ünïcödé@exämple.com",
    ];

    #[test]
    fn plain_values_are_printed_as_they_are() {
        assert_eq!(quote("sales@example.com"), "sales@example.com");
        assert_eq!(quote("0100018c-abc-000000"), "0100018c-abc-000000");
        assert_eq!(
            option("--recipient", "bugs+42@example.com"),
            "--recipient bugs+42@example.com"
        );
    }

    #[test]
    fn every_hostile_value_comes_back_from_the_shell_as_one_word_unchanged() {
        for value in HOSTILE {
            let words = words_in_sh(&quote(value));
            assert_eq!(words, [value.to_string()], "{value:?} quoted as {}", quote(value));
        }
        assert!(!std::path::Path::new("/tmp/rt-mailgate-pwned").exists());
    }

    #[test]
    fn a_quoted_value_is_one_visible_line_without_control_characters() {
        for value in HOSTILE {
            let q = quote(value);
            assert!(!q.chars().any(unprintable), "{value:?} quoted as {q:?}");
        }
        assert_eq!(quote("a\nb"), r"$'a\nb'");
        assert_eq!(quote("\u{1b}[2J"), r"$'\x1b[2J'");
        assert_eq!(quote("\u{202E}x"), r"$'\u202ex'");
    }

    #[test]
    fn a_leading_dash_is_never_an_option() {
        assert_eq!(option("--recipient", "-rf"), "--recipient=-rf");
        assert_eq!(
            option("--recipient", "--post-screened-mail"),
            "--recipient=--post-screened-mail"
        );
        assert_eq!(positional("-x@example.com"), "-- -x@example.com");
        assert_eq!(positional("x@example.com"), "x@example.com");
        // And the shell still hands the option its value whole.
        assert_eq!(words_in_sh(&option("--recipient", "-a b;c")), ["--recipient=-a b;c"]);
    }

    #[test]
    fn a_whole_command_keeps_its_words() {
        let line = format!(
            "rt-mailgate-replay {} {}",
            option("--message-id", "ses-1"),
            option("--recipient", "x$(id)`id`'\"\n@example.com")
        );
        assert_eq!(
            words_in_sh(&line)[..],
            [
                "rt-mailgate-replay",
                "--message-id",
                "ses-1",
                "--recipient",
                "x$(id)`id`'\"\n@example.com"
            ]
        );
    }
}
