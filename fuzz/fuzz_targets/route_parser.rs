//! The routing table parser and router: any table text and any recipient must give a
//! route, no route, or a clear error; never a panic. A route's fields must be what the
//! matching entry says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::getopt::parse_args;
use rt_mailgate::core::route::RoutingTable;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first line is a recipient, the rest the table.
    let (recipient, table) = text.split_once('\n').unwrap_or((&text, ""));
    let _ = parse_args(table.split_whitespace());
    for separator in [Some('+'), Some('-'), None] {
        let Ok(routes) = RoutingTable::parse(table, separator) else {
            continue;
        };
        if let Some(route) = routes.route(recipient) {
            let prefix = route.request.message_prefix();
            assert!(prefix.is_empty() || prefix.starts_with(b"X-RT-Mail-Extension: "));
        }
        let plan = routes.plan(&[recipient, recipient]);
        assert!(plan.deliveries.len() <= 1, "the same recipient twice is one post");
    }
});
