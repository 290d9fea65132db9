//! Hiding credentials before text is shown: `https://user:password@rt.example/` as
//! `https://***@rt.example/` in reports, errors and logs. Pure text rules, no I/O.
//!
//! Both helpers err on the side of hiding: a URL whose password holds an unencoded `/`,
//! `?` or `#` (`https://u:pa/ss@rt`) is not a valid URL, but its password must not show
//! either, so an `@` later in the same word still ends the hidden part.

/// `scheme://user:password@host/...` as `scheme://***@host/...`, wherever a URL appears
/// in `text` (a whole URL, or a word such as `--url=...`); anything else unchanged.
pub fn redact_url(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The URL ends with its word: at white space or a double quote. Not at `'`: a user
        // name may hold one (`https://u'x:pw@rt`), and ending there would show the password.
        let word_end = tail.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(tail.len());
        match userinfo_end(&tail[..word_end]) {
            Some(end) => {
                out.push_str("***");
                rest = &tail[end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// One word (a shell word, quotes already removed, so it may hold spaces) that may carry
/// credentials, with or without a scheme: `https://u:p@rt` as `https://***@rt`,
/// `--url=u:p@rt` as `--url=***@rt`, `u:p w@rt` as `***@rt`. A word without a `:` before
/// its last `@` (an address, a queue name) is returned unchanged.
pub fn redact_word(word: &str) -> String {
    hide_colon_at(&redact_word_once(word))
}

/// Any `:SECRET@` left in a word (in a URL's path, a mangled option) as `:***@`.
fn hide_colon_at(word: &str) -> String {
    let mut out = String::new();
    let mut from = 0;
    for (at, _) in word.match_indices('@') {
        let before = &word[from..at];
        let secret = before.rfind(':').map(|colon| (colon, &before[colon + 1..]));
        match secret {
            Some((colon, secret)) if !secret.is_empty() && secret != "***" && !secret.contains(['/', ' ']) => {
                out.push_str(&before[..=colon]);
                out.push_str("***");
            }
            _ => out.push_str(before),
        }
        out.push('@');
        from = at + 1;
    }
    out.push_str(&word[from..]);
    out
}

fn redact_word_once(word: &str) -> String {
    if let Some(at) = word.find("://") {
        let tail = &word[at + 3..];
        // What comes before the scheme may hide credentials too (`u:p@x://...`); it holds
        // no `://` (the first one is at `at`).
        let head = format!("{}://", redact_word_once(&word[..at]));
        return match userinfo_end(tail) {
            Some(end) => format!("{head}***{}", &tail[end..]),
            None => format!("{head}{tail}"),
        };
    }
    // `--url=u:p@rt`: keep the option, hide what may be credentials.
    let start = if word.starts_with('-') {
        word.find('=').map_or(0, |eq| eq + 1)
    } else {
        0
    };
    match word[start..].rfind('@') {
        Some(at) if word[start..start + at].contains(':') => {
            format!("{}***{}", &word[..start], &word[start + at..])
        }
        _ => word.to_string(),
    }
}

/// Where the userinfo of `tail` (a URL after its `://`, up to the end of its word) ends:
/// the position of the `@` that closes it, if any.
fn userinfo_end(tail: &str) -> Option<usize> {
    let authority = &tail[..tail.find(['/', '?', '#']).unwrap_or(tail.len())];
    match authority.rfind('@') {
        Some(at) => Some(at),
        // `user:pa/ss@host`: the password holds a character that ends an authority.
        None if authority.contains(':') => tail.rfind('@'),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_wherever_they_appear() {
        assert_eq!(redact_url("https://u:p@rt.example/x@y"), "https://***@rt.example/x@y");
        assert_eq!(redact_url("--url=http://a@b:8080"), "--url=http://***@b:8080");
        assert_eq!(redact_url("https://rt.example/"), "https://rt.example/");
        assert_eq!(
            redact_url("x https://a:b@h y http://c@d"),
            "x https://***@h y http://***@d"
        );
        assert_eq!(redact_url("user@example.com"), "user@example.com");
        assert_eq!(
            redact_url("a@x: --url 'https://rt/' b@y"),
            "a@x: --url 'https://rt/' b@y"
        );
    }

    #[test]
    fn a_quote_in_the_user_name_does_not_end_the_url() {
        // Found by fuzzing: ending the word at the quote showed `x:pw@rt`.
        assert_eq!(
            redact_url("bad URL https://u'x:pw@rt example"),
            "bad URL https://***@rt example"
        );
        assert_eq!(redact_url("'https://u:pw@rt/'"), "'https://***@rt/'");
    }

    #[test]
    fn a_password_with_a_slash_hash_or_question_mark_is_still_hidden() {
        for url in ["https://u:pa/ss@rt/", "https://u:pa#ss@rt", "https://u:pa?ss@rt"] {
            let shown = redact_url(&format!("--url {url} --queue q"));
            assert!(!shown.contains("pa"), "{shown}");
            assert!(shown.contains("***@rt") && shown.ends_with(" --queue q"), "{shown}");
            assert!(!redact_word(url).contains("pa"), "{url}");
        }
        // A port and an `@` in the path hide too much rather than too little.
        assert_eq!(redact_url("https://rt:8443/x@y"), "https://***@y");
    }

    #[test]
    fn words_are_redacted_with_or_without_a_scheme() {
        assert_eq!(redact_word("https://u:p@rt/x"), "https://***@rt/x");
        assert_eq!(redact_word("https://u:p w@rt"), "https://***@rt");
        assert_eq!(redact_word("u:p@rt.example"), "***@rt.example");
        assert_eq!(redact_word("--url=u:p@rt"), "--url=***@rt");
        assert_eq!(redact_word("-u=u:p@rt"), "-u=***@rt");
        // Credentials in a URL's path, as a mangled URL may carry them.
        assert_eq!(
            redact_word("https://rt.example//u:secret@rt1"),
            "https://rt.example//u:***@rt1"
        );
        // A mangled URL with credentials before its scheme as well as after.
        assert_eq!(redact_word("x:secret@y://u:p@rt"), "***@y://***@rt");
        for unchanged in ["bugs@example.com", "https://rt.example/a@b", "Sales Team", "--queue"] {
            assert_eq!(redact_word(unchanged), unchanged);
        }
    }
}
