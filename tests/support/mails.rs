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
