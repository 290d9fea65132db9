//! The last details where a swapped binary could show: arguments that are not UTF-8,
//! Getopt::Long's `+option` and `POSIXLY_CORRECT`, LWP's timeout and redirect rules,
//! the stderr lines quoting RT's reply, odd stdin and a broken `TMPDIR`. Each case runs
//! the Perl client and ours side by side against the same kind of recording stand-in.

mod support;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::Output;
use std::time::Duration;

use support::standin::{Answer, Recorded, StandIn};
use support::{code, mails, run_client_with, stderr, Input, OURS, PERL};

/// One run of a client: arguments as bytes, extra environment, stdin.
struct Run {
    args: Vec<Vec<u8>>,
    env: Vec<(&'static str, Vec<u8>)>,
    input: fn() -> Input,
}

impl Run {
    fn new(args: &[&[u8]]) -> Self {
        Self {
            args: args.iter().map(|a| a.to_vec()).collect(),
            env: Vec::new(),
            input: || Input::Bytes(mails::plain("a@example.org", "details", "x")),
        }
    }

    fn env(mut self, name: &'static str, value: &[u8]) -> Self {
        self.env.push((name, value.to_vec()));
        self
    }

    fn input(mut self, input: fn() -> Input) -> Self {
        self.input = input;
        self
    }

    /// Runs `program` against a fresh stand-in answering `answer`; returns its output
    /// and what the stand-in received.
    fn against(&self, program: &str, answer: Answer) -> (Output, Vec<Recorded>) {
        let rt = StandIn::always(answer);
        let mut args: Vec<OsString> = vec!["--url".into(), rt.url.clone().into()];
        args.extend(self.args.iter().map(|a| OsString::from_vec(a.clone())));
        let env: Vec<(&str, OsString)> = self
            .env
            .iter()
            .map(|(name, value)| (*name, OsString::from_vec(value.clone())))
            .collect();
        let output = run_client_with(program, &args, &env, (self.input)());
        (output, rt.requests())
    }

    /// Both clients against `answer`: ((perl output, perl posts), (ours, our posts)).
    fn both(&self, answer: Answer) -> ((Output, Vec<Recorded>), (Output, Vec<Recorded>)) {
        (self.against(PERL, answer.clone()), self.against(OURS, answer))
    }

    /// Both clients post to an `ok` stand-in, exit 0, and post the same fields and bytes.
    fn posts_the_same(&self) -> Recorded {
        let ((perl_out, perl_posts), (our_out, our_posts)) = self.both(Answer::ok_body("ok\n"));
        assert_eq!(code(&perl_out), 0, "perl: {}", stderr(&perl_out));
        assert_eq!(code(&our_out), 0, "ours: {}", stderr(&our_out));
        let (theirs, mine) = (only(perl_posts), only(our_posts));
        assert_eq!(mine.fields(), theirs.fields(), "form fields differ, as raw bytes");
        assert_eq!(mine.message(), theirs.message(), "message bytes differ");
        mine
    }

    /// Both clients exit with `expected` against `answer`; returns their stderr.
    fn exits(&self, expected: i32, answer: Answer) -> (String, String) {
        let ((perl_out, _), (our_out, _)) = self.both(answer);
        assert_eq!(
            (code(&perl_out), code(&our_out)),
            (expected, expected),
            "(perl, ours); perl said {}; we said {}",
            stderr(&perl_out),
            stderr(&our_out)
        );
        (stderr(&perl_out), stderr(&our_out))
    }
}

fn only(mut posts: Vec<Recorded>) -> Recorded {
    assert_eq!(posts.len(), 1, "expected exactly one post");
    posts.remove(0)
}

// ---- bytes stay bytes ----

#[test]
fn arguments_that_are_not_utf8_are_posted_byte_for_byte() {
    let post = Run::new(&[b"--queue", b"caf\xe9", b"--action", b"corr\xffespond"]).posts_the_same();
    assert!(post.fields().contains(&("queue".to_string(), b"caf\xe9".to_vec())));
}

#[test]
fn an_extension_that_is_not_utf8_is_posted_byte_for_byte() {
    let post = Run::new(&[b"--extension", b"queue"])
        .env("EXTENSION", b"Sal\xe9s")
        .posts_the_same();
    assert_eq!(post.fields(), [("queue".to_string(), b"Sal\xe9s".to_vec())]);
    assert!(post.message().starts_with(b"X-RT-Mail-Extension: Sal\xe9s\n"));
}

// ---- Getopt::Long ----

#[test]
fn a_plus_starts_an_option_as_in_getopt_long() {
    let post = Run::new(&[b"+queue", b"bugs", b"+act=comment"]).posts_the_same();
    assert_eq!(post.text_fields(), ["action=comment", "queue=bugs"]);
}

#[test]
fn posixly_correct_parses_as_strictly_as_getopt_long_does() {
    // No `+`, and the first word ends the options: only the queue is taken.
    let post = Run::new(&[b"--queue", b"bugs", b"word", b"--action", b"comment", b"+queue", b"x"])
        .env("POSIXLY_CORRECT", b"1")
        .posts_the_same();
    assert_eq!(post.text_fields(), ["queue=bugs"]);
    // No abbreviations either: `--act` is unknown (a warning), the mail still goes.
    let post = Run::new(&[b"--act", b"comment", b"--queue", b"bugs"])
        .env("POSIXLY_CORRECT", b"")
        .posts_the_same();
    assert!(post.text_fields().is_empty(), "`comment` ended the options");
}

// ---- LWP: timeouts and redirects ----

fn delayed_ok(seconds: f64) -> Answer {
    Answer::Delayed(Duration::from_secs_f64(seconds), Box::new(Answer::ok_body("ok\n")))
}

#[test]
fn a_negative_timeout_gives_up_as_soon_as_rt_makes_us_wait() {
    Run::new(&[b"--timeout", b"-5"]).exits(75, delayed_ok(1.0));
    // Zero means no limit at all.
    Run::new(&[b"--timeout=0"]).exits(0, delayed_ok(1.5));
}

#[test]
fn the_timeout_counts_inactivity_not_the_whole_answer() {
    // The answer takes 4 s to arrive, a byte every 400 ms: never 2 s without data.
    let trickle = Answer::Trickle {
        body: b"ok\n\n\n\n\n\n\n\n\n\n".to_vec(),
        every: Duration::from_millis(400),
    };
    Run::new(&[b"--timeout", b"2"]).exits(0, trickle);
    Run::new(&[b"--timeout", b"1"]).exits(75, Answer::Stall);
}

#[test]
fn redirects_300_304_and_305_are_followed_too() {
    for status in [300, 301, 304, 305, 307, 308] {
        // Each client's first post is redirected, its second answered.
        let rt = StandIn::start(move |n| match n % 2 {
            0 => Answer::redirect_with(status, "/moved"),
            _ => Answer::ok_body("ok\n"),
        });
        for program in [PERL, OURS] {
            let args: Vec<OsString> = vec!["--url".into(), rt.url.clone().into()];
            let out = run_client_with(program, &args, &[], Input::Bytes(b"Subject: r\n\nx\n".to_vec()));
            assert_eq!(code(&out), 0, "{program} after {status}: {}", stderr(&out));
        }
        let lines: Vec<String> = rt.requests().into_iter().map(|r| r.request_line).collect();
        assert_eq!(lines.len(), 4, "{status}: {lines:?}");
        assert!(lines[1].starts_with("POST /moved "), "{status}: {lines:?}");
        assert!(lines[3].starts_with("POST /moved "), "{status}: {lines:?}");
    }
}

#[test]
fn a_redirect_without_location_fails_as_lwp_fails_it() {
    let raw = Answer::Raw(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec());
    let (theirs, mine) = Run::new(&[]).exits(75, raw);
    assert!(theirs.contains("HTTP request failed: 400 URL missing"), "{theirs}");
    assert!(mine.contains("HTTP request failed: 400 URL missing"), "{mine}");
}

#[test]
fn a_trailing_slash_on_the_url_differs_only_in_the_path_posted() {
    // Perl posts to `//REST/1.0/...`; we post to `/REST/1.0/...` (see docs/cli.md).
    let rt = StandIn::always(Answer::ok_body("ok\n"));
    let url = format!("{}/", rt.url);
    for program in [PERL, OURS] {
        let args: Vec<OsString> = vec!["--url".into(), url.clone().into()];
        let out = run_client_with(program, &args, &[], Input::Bytes(b"Subject: s\n\nx\n".to_vec()));
        assert_eq!(code(&out), 0, "{program}: {}", stderr(&out));
    }
    let lines: Vec<String> = rt.requests().into_iter().map(|r| r.request_line).collect();
    assert!(
        lines[0].starts_with("POST //REST/1.0/NoAuth/mail-gateway "),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("POST /REST/1.0/NoAuth/mail-gateway "), "{lines:?}");
}

#[test]
fn a_204_with_no_body_is_a_server_error_for_both() {
    let raw = Answer::Raw(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_vec());
    let (theirs, mine) = Run::new(&[]).exits(75, raw);
    assert!(theirs.contains("RT server error.") && mine.contains("RT server error."));
}

// ---- RT's reply, quoted as written ----

#[test]
fn every_line_of_an_unexpected_reply_is_quoted() {
    let body = "temporary failure - Could not load a valid queue\nsecond line from RT\n";
    let (theirs, mine) = Run::new(&[]).exits(75, Answer::ok_body(body));
    for said in [&theirs, &mine] {
        assert!(said.contains(body), "{said}");
    }
}

#[test]
fn a_failed_status_is_quoted_with_the_servers_own_reason() {
    let raw =
        Answer::Raw(b"HTTP/1.1 503 Backend Asleep\r\nContent-Length: 5\r\nConnection: close\r\n\r\nsleep".to_vec());
    let (theirs, mine) = Run::new(&[]).exits(75, raw);
    let line = "HTTP request failed: 503 Backend Asleep. Your webserver logs";
    assert!(theirs.contains(line), "{theirs}");
    assert!(mine.contains(line), "{mine}");
}

#[test]
fn an_answer_without_end_is_read_to_a_bound_and_judged_by_its_start() {
    // A server that never stops sending: bytes keep moving, so no timeout would ever
    // end it, and the Perl client (LWP has no bound) reads it all into memory; it is
    // not run here. Ours reads 64 KiB, judges them by the reply rules, and hangs up.
    let started = std::time::Instant::now();
    let page = Answer::Endless(b"<html><body>a proxy's page".to_vec());
    let (out, posts) = Run::new(&[b"--timeout", b"5"]).against(OURS, page);
    let said = stderr(&out);
    assert_eq!(code(&out), 75, "{}", &said[..said.len().min(300)]);
    assert_eq!(posts.len(), 1);
    assert!(
        said.contains("RT server error.")
            && said.contains("<html><body>a proxy's page")
            && said.contains("[rt-mailgate: the answer was cut here, at 65536 bytes; the rest was not read]"),
        "{}",
        &said[..said.len().min(300)]
    );
    assert!(said.len() < 70_000, "{} bytes on stderr", said.len());
    // RT's verdict at the start counts, as the reply rules read a prefix: a mail RT
    // took is not posted again.
    let (out, _) = Run::new(&[b"--timeout", b"5"]).against(OURS, Answer::Endless(b"ok\n".to_vec()));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn debug_prints_not_ok_with_its_reason() {
    let body = "not ok - Permission Denied\n";
    let (theirs, mine) = Run::new(&[b"--debug"]).exits(0, Answer::ok_body(body));
    assert!(
        theirs.contains(body) && mine.contains(body),
        "perl: {theirs}\nours: {mine}"
    );
}

// ---- stdin and the temporary directory ----

#[test]
fn write_only_stdin_exits_75_as_perl_does() {
    let (_, mine) = Run::new(&[])
        .input(|| Input::WriteOnly)
        .exits(75, Answer::ok_body("ok\n"));
    assert!(mine.contains("couldn't read message"), "{mine}");
}

#[test]
fn closed_stdin_is_no_message_and_nothing_is_posted() {
    // Perl's answer here is an accident of which file descriptors it inherits and its
    // libraries leave on fd 0: from a shell it says "no message passed on STDIN"
    // (exit 0), and so do we, always; beside other children (as when these tests run in
    // parallel) it may fail the read instead (exit 75). Either way there is no mail.
    let run = Run::new(&[]).input(|| Input::Closed);
    let ((perl_out, perl_posts), (our_out, our_posts)) = run.both(Answer::ok_body("ok\n"));
    assert!([0, 75].contains(&code(&perl_out)), "{}", stderr(&perl_out));
    assert_eq!(code(&our_out), 0, "{}", stderr(&our_out));
    assert!(stderr(&our_out).contains("no message passed on STDIN"));
    assert!(perl_posts.is_empty() && our_posts.is_empty());
}

#[test]
fn an_unusable_tmpdir_still_delivers() {
    for tmpdir in [&b"/nonexistent"[..], b"/proc"] {
        let post = Run::new(&[b"--queue", b"bugs"]).env("TMPDIR", tmpdir).posts_the_same();
        assert_eq!(post.text_fields(), ["queue=bugs"]);
    }
}

/// The Perl client has no `--version` (and an unknown option must stay a warning), so
/// ours tells its version where an admin looks: at the end of `--help` and in `--debug`.
#[test]
fn the_version_is_in_help_and_debug() {
    let version = format!("rt-mailgate {} (Rust)", env!("CARGO_PKG_VERSION"));
    let (help, _) = Run::new(&[b"--help"]).against(OURS, Answer::ok_body("ok\n"));
    assert_eq!(code(&help), 1, "--help still exits 1, as Perl's");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.trim_end().ends_with(&format!("VERSION\n    {version}")), "{text}");
    let (debug, posts) = Run::new(&[b"--debug"]).against(OURS, Answer::ok_body("ok\n"));
    assert_eq!((code(&debug), posts.len()), (0, 1));
    assert!(stderr(&debug).contains(&version), "{}", stderr(&debug));
}
