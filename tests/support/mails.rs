//! Sample mails as an MTA hands them to rt-mailgate (LF line ends unless stated).

/// A plain text mail.
pub fn plain(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\nTo: rt@example.test\nSubject: {subject}\nMessage-ID: <{subject}@test.example>\n\
         Date: Tue, 24 Nov 2026 10:00:00 +0000\n\n{body}\n"
    )
    .into_bytes()
}

/// Every byte value, `len` bytes long.
pub fn binary_blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 256) as u8).collect()
}

/// A multipart mail: an 8-bit ISO-8859-1 text part and a base64 binary attachment.
pub fn eight_bit_with_attachment(subject: &str, text: &[u8], blob: &[u8]) -> Vec<u8> {
    let mut mail = format!(
        "From: carol@example.org\nTo: support@example.test\nSubject: {subject}\nMessage-ID: <{subject}@test.example>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b0undary\"\n\n--b0undary\n\
         Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n"
    )
    .into_bytes();
    mail.extend_from_slice(text);
    mail.extend_from_slice(
        b"\n--b0undary\nContent-Type: application/octet-stream\n\
          Content-Disposition: attachment; filename=\"blob.bin\"\nContent-Transfer-Encoding: base64\n\n",
    );
    mail.extend_from_slice(base64_lines(blob).as_bytes());
    mail.extend_from_slice(b"--b0undary--\n");
    mail
}

/// A mail as SES stores it (CRLF line ends) with a unique Message-ID and, past the
/// text, an attachment making it about `megabytes` MB (none for 0).
pub fn ses_stored(subject: &str, message_id: &str, text: &str, megabytes: usize) -> Vec<u8> {
    let head = format!(
        "From: alice@customer.example\r\nTo: rt@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    );
    if megabytes == 0 {
        return format!("{head}Content-Type: text/plain\r\n\r\n{text}\r\n").into_bytes();
    }
    let mut mail = format!(
        "{head}Content-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n--b0undary\r\n\
         Content-Type: text/plain\r\n\r\n{text}\r\n--b0undary\r\n\
         Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"big.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    // Base64 grows the blob by 4/3, its line ends by 78/76.
    let blob = binary_blob(megabytes * 1024 * 1024 / 4 * 3 * 76 / 78);
    mail.extend_from_slice(base64_lines(&blob).replace('\n', "\r\n").as_bytes());
    mail.extend_from_slice(b"--b0undary--\r\n");
    mail
}

/// Base64 in 76-character lines, each ending in `\n` (RFC 2045).
pub fn base64_lines(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(data.len() * 4 / 3 + 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                encoded.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                encoded.push('=');
            }
        }
    }
    let mut lines = String::with_capacity(encoded.len() + encoded.len() / 76 + 1);
    for line in encoded.as_bytes().chunks(76) {
        lines.push_str(std::str::from_utf8(line).unwrap());
        lines.push('\n');
    }
    lines
}

#[test]
fn base64_matches_a_known_value() {
    assert_eq!(base64_lines(b"Man is"), "TWFuIGlz\n");
    assert_eq!(base64_lines(b"Ma"), "TWE=\n");
    assert_eq!(base64_lines(b"M"), "TQ==\n");
}

/// A header of a mail as text, unfolded: the first field of that name in its header.
pub fn header(mail: &str, name: &str) -> Option<String> {
    let head = mail.split("\n\n").next().unwrap_or_default();
    let mut value: Option<String> = None;
    for line in head.lines() {
        match &mut value {
            Some(v) if line.starts_with([' ', '\t']) => {
                v.push(' ');
                v.push_str(line.trim());
            }
            Some(_) => break,
            None => {
                if let Some((n, v)) = line.split_once(':') {
                    if n.eq_ignore_ascii_case(name) {
                        value = Some(v.trim().to_string());
                    }
                }
            }
        }
    }
    value
}
