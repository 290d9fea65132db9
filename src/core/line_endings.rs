//! CRLF to LF, chunk by chunk. SES stores the SMTP form of a mail (CRLF line ends);
//! a local MTA hands `rt-mailgate` LF-only lines, and RT keeps a stray `\r` in the text
//! it stores. Converting while streaming keeps memory flat.

/// Turns `\r\n` into `\n` across chunk boundaries; a lone `\r` is kept.
#[derive(Debug, Default)]
pub struct CrlfToLf {
    /// A `\r` that ended the previous chunk, not yet known to start a CRLF.
    pending_cr: bool,
}

impl CrlfToLf {
    /// A converter with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts one chunk, appending the result to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        // An empty chunk (a stream may yield one) says nothing about a pending `\r`.
        if chunk.is_empty() {
            return;
        }
        out.reserve(chunk.len() + 1);
        let mut rest = chunk;
        if self.pending_cr {
            self.pending_cr = false;
            if rest.first() != Some(&b'\n') {
                out.push(b'\r');
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\r') {
            out.extend_from_slice(&rest[..pos]);
            match rest.get(pos + 1) {
                Some(b'\n') => {} // drop the CR, the LF follows in the next slice
                Some(_) => out.push(b'\r'),
                None => self.pending_cr = true,
            }
            rest = &rest[pos + 1..];
        }
        out.extend_from_slice(rest);
    }

    /// Flushes a `\r` that ended the input.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.pending_cr) {
            out.push(b'\r');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(chunks: &[&[u8]]) -> Vec<u8> {
        let mut conv = CrlfToLf::new();
        let mut out = Vec::new();
        for c in chunks {
            conv.push(c, &mut out);
        }
        conv.finish(&mut out);
        out
    }

    #[test]
    fn crlf_becomes_lf_and_lone_cr_stays() {
        assert_eq!(convert(&[b"a\r\nb\rc\r\n\r\n"]), b"a\nb\rc\n\n");
    }

    #[test]
    fn crlf_split_across_chunks() {
        assert_eq!(convert(&[b"a\r", b"\nb\r", b"x", b"\r"]), b"a\nb\rx\r");
        assert_eq!(convert(&[b"\r", b"\r", b"\n"]), b"\r\n");
    }

    #[test]
    fn an_empty_chunk_between_cr_and_lf_changes_nothing() {
        // Found by the fuzz target `line_endings`: the empty chunk flushed the CR.
        assert_eq!(convert(&[b"a\r", b"", b"\nb"]), b"a\nb");
        assert_eq!(convert(&[b"\r", b"", b"\r", b"", b"\n"]), b"\r\n");
        assert_eq!(convert(&[b"a\r", b""]), b"a\r");
    }

    #[test]
    fn every_split_point_gives_the_same_result() {
        let input: &[u8] = b"H: v\r\n\r\nbody\r\r\n\rend\r";
        let whole = convert(&[input]);
        for i in 0..=input.len() {
            assert_eq!(convert(&[&input[..i], &input[i..]]), whole, "split at {i}");
        }
    }
}
