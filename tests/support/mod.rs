//! Shared helpers for the integration tests: running the two clients, a real RT read
//! back over its REST 1.0 API, sample mails, a recording stand-in for RT, the shipped
//! nginx front door in front of the real RT, and DynamoDB's write semantics in front of
//! moto.
#![allow(dead_code)] // each test binary uses a different part

pub mod dynamodb;
pub mod lambda;
pub mod mails;
pub mod proxy;
pub mod rt;
pub mod standin;

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Our binary, built by cargo for this test run.
pub const OURS: &str = env!("CARGO_BIN_EXE_rt-mailgate");
/// The Perl reference client from Debian's rt5-clients.
pub const PERL: &str = "/usr/bin/rt-mailgate";

/// A token unique to this test run, for subjects that tests search tickets by.
pub fn unique(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{label}-{nanos:x}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A port nobody listens on now, for a server the test starts itself (which binds it
/// after this returns). With `RT_TEST_PORT_RANGE=LOW-HIGH` (scripts/test gives each of its
/// lanes its own range, below the kernel's ephemeral ports) the port comes from that
/// range, so a test in the other lane can't be handed the same port in the moment
/// between this check and the server's bind; else any port the kernel picks.
pub fn free_port() -> u16 {
    use std::net::TcpListener;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let range = std::env::var("RT_TEST_PORT_RANGE").ok().and_then(|r| {
        let (low, high) = r.split_once('-')?;
        Some((low.parse::<u16>().ok()?, high.parse::<u16>().ok()?))
    });
    let Some((low, high)) = range.filter(|(low, high)| low < high) else {
        return TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    };
    // Each test binary of a lane starts elsewhere in the range (they run one after
    // another, but a server of the last one may still be going away).
    let span = u64::from(high - low);
    let start = u64::from(std::process::id()) * 97;
    for _ in 0..span {
        let port = low + ((start + NEXT.fetch_add(1, Ordering::Relaxed)) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in RT_TEST_PORT_RANGE {low}-{high}");
}

/// Runs a client with `args`, `$EXTENSION` (if any) and `stdin`, and waits for it.
pub fn run_client(program: &str, args: &[&str], extension: Option<&str>, stdin: &[u8]) -> Output {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let env: Vec<(&str, OsString)> = extension.map(|e| ("EXTENSION", e.into())).into_iter().collect();
    run_client_with(program, &args, &env, Input::Bytes(stdin.to_vec()))
}

/// What a client's standard input is.
pub enum Input {
    /// A pipe holding these bytes.
    Bytes(Vec<u8>),
    /// No standard input at all (`<&-`).
    Closed,
    /// Standard input open for writing only (`0>/dev/null`): every read fails.
    WriteOnly,
}

/// Runs a client with arguments that need not be UTF-8, extra environment variables
/// (`$EXTENSION` is removed unless given) and any kind of stdin, and waits for it.
pub fn run_client_with(program: &str, args: &[OsString], env: &[(&str, OsString)], input: Input) -> Output {
    assert!(
        std::path::Path::new(program).exists(),
        "{program} is missing: install rt5-clients (scripts/rt-test-server install)"
    );
    let redirect = match input {
        Input::Bytes(_) => None,
        Input::Closed => Some("<&-"),
        Input::WriteOnly => Some("0>/dev/null"),
    };
    let mut command = match redirect {
        // The shell sets up the odd stdin, then becomes the client.
        Some(redirect) => {
            let mut sh = Command::new("sh");
            sh.arg("-c").arg(format!("exec \"$0\" \"$@\" {redirect}")).arg(program);
            sh
        }
        None => Command::new(program),
    };
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // LD_LIBRARY_PATH is cargo's, not an MTA's: with it, which file Perl's libraries
    // leave on a closed fd 0 changes, and with it Perl's answer to a closed stdin.
    command
        .env_remove("EXTENSION")
        .env_remove("POSIXLY_CORRECT")
        .env_remove("LD_LIBRARY_PATH");
    for (name, value) in env {
        command.env(name, value);
    }
    let stdin = match input {
        Input::Bytes(bytes) => bytes,
        _ => Vec::new(),
    };
    let mut child = command.spawn().expect("client starts");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin;
    // Write from a thread: a client that exits early must not deadlock the test.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().expect("client runs");
    writer.join().unwrap();
    output
}

/// Our client.
pub fn ours(args: &[&str], extension: Option<&str>, stdin: &[u8]) -> Output {
    run_client(OURS, args, extension, stdin)
}

/// The Perl client.
pub fn perl(args: &[&str], extension: Option<&str>, stdin: &[u8]) -> Output {
    run_client(PERL, args, extension, stdin)
}

/// The exit code, with stderr in the panic message when the process was killed.
pub fn code(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {}", stderr(output)))
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
