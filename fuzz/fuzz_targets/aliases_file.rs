//! The `/etc/aliases` importer: any file text gives routes and skips, or a clear error;
//! never a panic. Every route it writes reads back through the routing table's own
//! parser, and no `user:password@` from a URL is ever copied into the output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::aliases::{import_aliases, report, Item};
use rt_mailgate::core::route::RoutingTable;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(items) = import_aliases(&text, "example.com") else {
        return;
    };
    for item in &items {
        if let Item::Route(migrated) = item {
            RoutingTable::parse(&migrated.route, Some('+'))
                .unwrap_or_else(|e| panic!("route {:?} does not read back: {e}", migrated.route));
        }
    }
    let out = report(&items, "aliases");
    // The secret of any `scheme://user:SECRET@host` in the input is never shown as a
    // credential (`:SECRET@`). The same text elsewhere in the file (an alias named or
    // delivering to it) may be quoted as what it is there.
    for (at, _) in text.match_indices("://") {
        let rest = &text[at + 3..];
        let authority = rest.split(['/', ' ', '\t', '\n', '"', '\'', ',']).next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@') {
            if let Some((_, password)) = userinfo.split_once(':') {
                if password.len() >= 12 && !password.contains('*') {
                    // The report's words (its messages and comments); a route line
                    // holds the alias's own queue names and options as written.
                    let comments: Vec<&str> = out.routes.lines().filter(|l| l.starts_with('#')).collect();
                    let shown = format!("{}\n{}", comments.join("\n"), out.messages.join("\n"));
                    let credential = format!(":{password}@");
                    assert!(!shown.contains(&credential), "a URL's password was copied");
                }
            }
        }
    }
});
