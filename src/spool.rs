//! Spooling a mail to a temporary file, as the Perl client does: memory stays flat
//! whatever the size, the length is known before the upload (some proxies in front of
//! RT refuse chunked bodies), and the same bytes can be posted again (redirects, several
//! routes). While spooling it notes whether any non-blank byte came, and keeps the
//! header block for logs.
//!
//! Where the spool lives: the temporary directory (`TMPDIR`), else `/tmp`, else memory
//! up to [`MEMORY_LIMIT`]. The Perl client also falls back to memory when it can't make
//! a temporary file: a broken `TMPDIR` must not defer every mail.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::core::headers::{HeaderBlockCollector, MailSummary};
use crate::core::line_endings::CrlfToLf;

const CHUNK: usize = 64 * 1024;
/// The most a spool keeps in memory when no temporary file can be made (SES's own limit
/// is 40 MB; a local MTA's default is lower still).
pub const MEMORY_LIMIT: u64 = 64 * 1024 * 1024;
/// Every spool file's name starts with this (a sweep of leftovers can find them).
pub const FILE_PREFIX: &str = "rt-mailgate-";

/// How line ends are treated while spooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEndings {
    /// Byte for byte (the CLI: the MTA already handed over local line ends).
    Keep,
    /// CRLF to LF, as a local MTA would hand the mail over (SES stores SMTP's CRLF).
    CrlfToLf,
}

/// Why a mail could not be spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// No temporary file could be made (full or read-only disk).
    #[error("couldn't create temp file: {0}")]
    Create(#[source] io::Error),
    /// The input broke off.
    #[error("couldn't read message: {0}")]
    Read(#[source] io::Error),
    /// The temporary file could not be written.
    #[error("couldn't write temp file: {0}")]
    Write(#[source] io::Error),
    /// No temporary file could be made and the mail is too big to keep in memory.
    #[error("couldn't create temp file ({0}), and the message is larger than {MEMORY_LIMIT} bytes")]
    TooBigForMemory(#[source] io::Error),
}

/// A mail on local disk (or, failing that, in memory), deleted when dropped.
#[derive(Debug)]
pub struct Spool {
    storage: Storage,
    len: u64,
    blank: bool,
    summary: MailSummary,
}

#[derive(Debug)]
enum Storage {
    File(tempfile::NamedTempFile),
    Memory(bytes::Bytes),
}

/// Where a spool keeps the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location<'a> {
    /// A temporary file.
    File(&'a Path),
    /// Memory: no temporary file could be made (the reason is logged by the caller).
    Memory,
}

/// Where the bytes being spooled go.
enum Sink {
    File(tempfile::NamedTempFile, tokio::fs::File),
    Memory(Vec<u8>, io::Error),
}

impl Sink {
    /// A new file in `TMPDIR`, else in `/tmp`, else memory.
    fn open() -> Self {
        let mut dirs = vec![std::env::temp_dir()];
        if dirs[0] != Path::new("/tmp") {
            dirs.push(PathBuf::from("/tmp"));
        }
        let mut last_error = io::Error::other("no temporary directory");
        for dir in dirs {
            let made = tempfile::Builder::new()
                .prefix(FILE_PREFIX)
                .tempfile_in(&dir)
                .and_then(|file| Ok((file.reopen()?, file)));
            match made {
                Ok((writer, file)) => return Self::File(file, tokio::fs::File::from_std(writer)),
                Err(e) => last_error = e,
            }
        }
        Self::Memory(Vec::new(), last_error)
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        match self {
            Self::File(_, out) => out.write_all(chunk).await.map_err(SpoolError::Write),
            Self::Memory(buf, why) => {
                if buf.len() as u64 + chunk.len() as u64 > MEMORY_LIMIT {
                    return Err(SpoolError::TooBigForMemory(io::Error::new(why.kind(), why.to_string())));
                }
                buf.extend_from_slice(chunk);
                Ok(())
            }
        }
    }

    async fn finish(self) -> Result<Storage, SpoolError> {
        match self {
            Self::File(file, mut out) => {
                out.flush().await.map_err(SpoolError::Write)?;
                Ok(Storage::File(file))
            }
            Self::Memory(buf, _) => Ok(Storage::Memory(buf.into())),
        }
    }
}

impl Spool {
    /// Copies `reader` to a new temporary file (or memory, see the module doc).
    pub async fn from_reader<R: AsyncRead + Unpin>(
        mut reader: R,
        line_endings: LineEndings,
    ) -> Result<Self, SpoolError> {
        let mut out = Sink::open();
        let mut buf = vec![0u8; CHUNK];
        let mut converted = Vec::with_capacity(CHUNK + 1);
        let mut converter = (line_endings == LineEndings::CrlfToLf).then(CrlfToLf::new);
        let mut headers = HeaderBlockCollector::new();
        let (mut len, mut blank) = (0u64, true);
        loop {
            let n = reader.read(&mut buf).await.map_err(SpoolError::Read)?;
            converted.clear();
            let chunk: &[u8] = match converter.as_mut() {
                Some(c) if n == 0 => {
                    c.finish(&mut converted);
                    &converted
                }
                Some(c) => {
                    c.push(&buf[..n], &mut converted);
                    &converted
                }
                None => &buf[..n],
            };
            blank = blank && chunk.iter().all(is_perl_whitespace);
            // The sender's bytes, before any conversion: the header check must see a
            // bare LF inside a CRLF header (see `core::headers`).
            headers.push(&buf[..n]);
            out.write(chunk).await?;
            len += chunk.len() as u64;
            if n == 0 {
                break;
            }
        }
        let storage = out.finish().await?;
        let summary = MailSummary::from_collected(&headers.finish());
        Ok(Self {
            storage,
            len,
            blank,
            summary,
        })
    }

    /// The number of bytes spooled.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing was spooled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when the mail holds no non-whitespace byte (the Perl client then posts nothing).
    pub fn is_blank(&self) -> bool {
        self.blank
    }

    /// Where the spool lives (shown by `--debug`).
    pub fn location(&self) -> Location<'_> {
        match &self.storage {
            Storage::File(file) => Location::File(file.path()),
            Storage::Memory(_) => Location::Memory,
        }
    }

    /// Message-ID, sender and the like, from the mail's header.
    pub fn summary(&self) -> &MailSummary {
        &self.summary
    }

    /// The mail's first `max` bytes (all of a shorter mail), read from the spool (local
    /// disk or memory, never the store again): what threading reads.
    pub async fn head(&self, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open().await?.take(max as u64).read_to_end(&mut out).await?;
        Ok(out)
    }

    /// A new reader positioned at the first byte.
    pub async fn open(&self) -> io::Result<Box<dyn AsyncRead + Send + Unpin>> {
        Ok(match &self.storage {
            Storage::File(file) => Box::new(tokio::fs::File::from_std(file.reopen()?)),
            Storage::Memory(bytes) => Box::new(io::Cursor::new(bytes.clone())),
        })
    }
}

/// Removes spool files a killed process left in `dir` (the Lambda's `/tmp` survives
/// between invocations of a sandbox, and a process killed at its deadline leaves its
/// spool behind). Only files last written more than `older_than` ago go: a spool in use
/// is written once and then read for at most an invocation's length, so with
/// `older_than` above the function's timeout no live spool is touched, even where
/// several processes share the directory. Returns how many were removed.
pub fn sweep_leftovers(dir: &Path, older_than: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let stale = |e: &std::fs::DirEntry| {
        e.metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > older_than)
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(FILE_PREFIX))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(stale)
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Perl's `\S` negated on bytes: space, \t, \n, \r, \f and vertical tab.
fn is_perl_whitespace(byte: &u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c')
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn spool(input: &[u8], endings: LineEndings) -> (Spool, Vec<u8>) {
        let spool = Spool::from_reader(input, endings).await.unwrap();
        let mut back = Vec::new();
        spool.open().await.unwrap().read_to_end(&mut back).await.unwrap();
        (spool, back)
    }

    #[tokio::test]
    async fn bytes_come_back_unchanged() {
        let input: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
        let (s, back) = spool(&input, LineEndings::Keep).await;
        assert_eq!(back, input);
        assert_eq!(s.len(), input.len() as u64);
        assert!(!s.is_blank());
    }

    #[tokio::test]
    async fn crlf_is_converted_when_asked() {
        let (s, back) = spool(b"Message-ID: <m1@x>\r\n\r\nhi\r\n", LineEndings::CrlfToLf).await;
        assert_eq!(back, b"Message-ID: <m1@x>\n\nhi\n");
        assert_eq!(s.len(), back.len() as u64);
        assert_eq!(s.summary().message_id.as_deref(), Some("m1@x"));
        assert!(s.summary().header.is_whole());
    }

    #[tokio::test]
    async fn the_header_check_sees_the_bytes_as_stored() {
        // Converted, this block would look like a clean LF header ending early.
        let (s, _) = spool(
            b"From: a@x\r\nX: 1\n\nDKIM-Signature: d=y\r\n\r\nhi\r\n",
            LineEndings::CrlfToLf,
        )
        .await;
        assert_eq!(
            s.summary().header,
            crate::core::headers::HeaderCheck::Malformed("a bare LF in a CRLF header")
        );
    }

    #[tokio::test]
    async fn whitespace_only_is_blank() {
        assert!(spool(b" \r\n\t\x0b\x0c", LineEndings::Keep).await.0.is_blank());
        assert!(spool(b"", LineEndings::Keep).await.0.is_empty());
        assert!(!spool(b"\n\xa0", LineEndings::Keep).await.0.is_blank());
    }

    #[tokio::test]
    async fn memory_is_the_last_resort_and_is_bounded() {
        let mut sink = Sink::Memory(Vec::new(), io::Error::other("read-only"));
        sink.write(b"Subject: x\n\nbody\n").await.unwrap();
        let Storage::Memory(bytes) = sink.finish().await.unwrap() else {
            panic!("not memory")
        };
        assert_eq!(&bytes[..], b"Subject: x\n\nbody\n");

        let mut sink = Sink::Memory(Vec::new(), io::Error::other("read-only"));
        let big = vec![b'x'; CHUNK];
        let mut result = Ok(());
        for _ in 0..=(MEMORY_LIMIT / CHUNK as u64) {
            result = sink.write(&big).await;
            if result.is_err() {
                break;
            }
        }
        let err = result.unwrap_err().to_string();
        assert!(err.contains("read-only") && err.contains("larger than"), "{err}");
    }

    #[test]
    fn leftovers_are_swept_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rt-mailgate-abc"), b"x").unwrap();
        std::fs::write(dir.path().join("other-file"), b"y").unwrap();
        std::fs::create_dir(dir.path().join("rt-mailgate-dir")).unwrap();
        // A spool written just now may be in use by another process: kept.
        assert_eq!(sweep_leftovers(dir.path(), std::time::Duration::from_secs(60)), 0);
        assert!(dir.path().join("rt-mailgate-abc").exists());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(sweep_leftovers(dir.path(), std::time::Duration::from_millis(10)), 1);
        assert!(dir.path().join("other-file").exists() && dir.path().join("rt-mailgate-dir").exists());
    }
}
