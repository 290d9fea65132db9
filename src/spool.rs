//! Spooling a mail to a temporary file, as the Perl client does: memory stays flat
//! whatever the size, the length is known before the upload (some proxies in front of
//! RT refuse chunked bodies), and the same bytes can be posted again (redirects, several
//! routes). While spooling it notes whether any non-blank byte came, and keeps the
//! header block for logs.

use std::io;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::core::headers::{HeaderBlockCollector, MailSummary};
use crate::core::line_endings::CrlfToLf;

const CHUNK: usize = 64 * 1024;

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
}

/// A mail on local disk, deleted when dropped.
#[derive(Debug)]
pub struct Spool {
    file: tempfile::NamedTempFile,
    len: u64,
    blank: bool,
    summary: MailSummary,
}

impl Spool {
    /// Copies `reader` to a new temporary file.
    pub async fn from_reader<R: AsyncRead + Unpin>(
        mut reader: R,
        line_endings: LineEndings,
    ) -> Result<Self, SpoolError> {
        let file = tempfile::Builder::new()
            .prefix("rt-mailgate-")
            .tempfile()
            .map_err(SpoolError::Create)?;
        let mut out = tokio::fs::File::from_std(file.reopen().map_err(SpoolError::Create)?);
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
            headers.push(chunk);
            out.write_all(chunk).await.map_err(SpoolError::Write)?;
            len += chunk.len() as u64;
            if n == 0 {
                break;
            }
        }
        out.flush().await.map_err(SpoolError::Write)?;
        let summary = MailSummary::from_header_block(&headers.finish());
        Ok(Self {
            file,
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
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Message-ID, sender and the like, from the mail's header.
    pub fn summary(&self) -> &MailSummary {
        &self.summary
    }

    /// A new reader positioned at the first byte.
    pub async fn open(&self) -> io::Result<tokio::fs::File> {
        Ok(tokio::fs::File::from_std(self.file.reopen()?))
    }
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
    }

    #[tokio::test]
    async fn whitespace_only_is_blank() {
        assert!(spool(b" \r\n\t\x0b\x0c", LineEndings::Keep).await.0.is_blank());
        assert!(spool(b"", LineEndings::Keep).await.0.is_empty());
        assert!(!spool(b"\n\xa0", LineEndings::Keep).await.0.is_blank());
    }
}
