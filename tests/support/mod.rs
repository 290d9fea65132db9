//! Shared helpers for the integration tests: running the two clients, a real RT read
//! back over its REST 1.0 API, sample mails, and a recording stand-in for RT.
#![allow(dead_code)] // each test binary uses a different part

pub mod lambda;
pub mod mails;
pub mod rt;
pub mod standin;

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

/// Runs a client with `args`, `$EXTENSION` (if any) and `stdin`, and waits for it.
pub fn run_client(program: &str, args: &[&str], extension: Option<&str>, stdin: &[u8]) -> Output {
    assert!(
        std::path::Path::new(program).exists(),
        "{program} is missing: install rt5-clients (scripts/rt-test-server install)"
    );
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.env_remove("EXTENSION");
    if let Some(value) = extension {
        command.env("EXTENSION", value);
    }
    let mut child = command.spawn().expect("client starts");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
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
