//! `rt-mailgate`: drop-in replacement for RT's Perl mail gateway client.
//! Reads a mail on stdin and posts it to RT; see `rt-mailgate --help`.

use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

fn main() {
    let mut args = std::env::args_os().map(|a| a.into_vec());
    let program = args.next().map_or_else(
        || "rt-mailgate".to_string(),
        |p| String::from_utf8_lossy(&p).into_owned(),
    );
    let invocation = rt_mailgate::cli::Invocation {
        program,
        args: args.collect(),
        posixly_correct: std::env::var_os("POSIXLY_CORRECT").is_some(),
        extension: std::env::var_os("EXTENSION").map(|v| v.as_bytes().to_vec()),
        stdin: stdin(),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("rt-mailgate: cannot start: {e}");
            std::process::exit(rt_mailgate::cli::EX_TEMPFAIL);
        }
    };
    let status = runtime.block_on(rt_mailgate::cli::run(
        invocation,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    ));
    std::process::exit(status);
}

/// The mail on fd 0. Not through `std::io::Stdin`: it reads `EBADF` as an empty input,
/// so a write-only stdin would look like "no message" (exit 0) where the Perl client's
/// read fails (exit 75, the MTA keeps the mail). A plain file on a copy of fd 0 reports it.
fn stdin() -> Box<dyn tokio::io::AsyncRead + Send + Unpin> {
    match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(tokio::fs::File::from_std(std::fs::File::from(fd))),
        Err(_) => Box::new(tokio::io::stdin()),
    }
}
