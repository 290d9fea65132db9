//! The X-RT-Mail-Extension header builder: whatever the extension holds, the result is
//! exactly one (possibly folded) header line: it starts with the field name, ends with
//! one LF, and every inner LF is followed by a TAB, so no header can be injected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::extension::extension_header;
use rt_mailgate::core::request::MailgateArgs;

fuzz_target!(|data: &[u8]| {
    let header = extension_header(data);
    assert!(header.starts_with(b"X-RT-Mail-Extension: "));
    assert_eq!(header.last(), Some(&b'\n'));
    let body = &header[..header.len() - 1];
    for (i, &byte) in body.iter().enumerate() {
        if byte == b'\n' {
            assert_eq!(body.get(i + 1), Some(&b'\t'), "an unfolded line break");
        }
    }
    let args = MailgateArgs {
        queue: Some("q".into()),
        action: None,
        extension: Some("ticket".into()),
    };
    let resolved = args.resolve(Some(data));
    assert_eq!(resolved.request.extension_header.is_some(), !data.is_empty());
});
