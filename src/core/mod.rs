//! The pure core: every rule of the mail gateway, with no I/O.
//!
//! - [`action`]: `--action` chains such as `take-comment-resolve`.
//! - [`extension`]: the `EXTENSION` value, which form field it feeds, and the
//!   `X-RT-Mail-Extension` header put in front of the message.
//! - [`request`]: the form fields posted to RT's mail gateway.
//! - [`reply`]: what RT's answer means: delivered, rejected for good, or retry.
//! - [`route`]: envelope recipient to rt-mailgate arguments (the Lambda's routing table).
//! - [`aliases`]: an `/etc/aliases` file's rt-mailgate pipes as routes (the migration).
//! - [`route_record`]: one record per route of a mail: the lease (one poster at a
//!   time), "settled?", and how it ended; the claim rule.
//! - [`delivery_id`]: the `X-RT-Mailgate-Delivery` header that names one post, so RT
//!   can be asked whether it holds exactly this post.
//! - [`lookup`]: whether RT already holds a mail as a route would have put it there
//!   (asked before posting again after an outcome where RT may have taken it).
//! - [`outcome`]: the Lambda's one outcome table: delivered, retried or given up (with whom told).
//! - [`notice`]: the text of a notice when a mail is given up.
//! - [`rate_limit`]: how many notices may go out (sliding windows per address, domain,
//!   operator).
//! - [`line_endings`]: CRLF to LF, as a local MTA would hand the mail over.
//! - [`headers`]: the few header fields logs and notices need (Message-ID...).
//! - [`threading`]: which ticket a mail belongs to by RT's own markers (subject tag,
//!   `RT-Ticket-N@Organization`, RT's Message-IDs), Message-IDs to look up, and bounces of
//!   RT's mail.
//! - [`hold`]: why a route was held instead of posted (storm, loop, auto-reply), as
//!   its record's reason says it.
//! - [`held`]: every mail that did not become a ticket (held, dropped, given up,
//!   unrouted): its cause, what a release or a reject does, the daily digest.
//! - [`machine_mail`]: auto-replies, out-of-office, bounces and bulk mail told apart, other
//!   helpdesks' loop markers named, and the per-route policy for such mail.
//! - [`storm`]: storm and loop bounds, the fixed window a mail counts in, and what
//!   the counts mean.
//! - [`redact`]: credentials in URLs shown as `***` in reports, errors and logs.
//! - [`getopt`]: Getopt::Long-compatible command-line parsing for the drop-in CLI.
//! - [`credentials`]: the secret JSON (proxy header, basic auth, client certificate, RT
//!   API login), with values that never print.
//! - [`url_policy`]: plain http, redirects and URL redaction: where a mail may be posted.
//! - [`mail_index`]: the trace's index of mails by sender, From and Message-ID, by day.
//! - [`shell`]: values quoted for a shell in the commands the tools print.
//!
//! Adapters (HTTP, S3, SES) live outside this module and call into it.

pub mod action;
pub mod aliases;
pub mod credentials;
pub mod delivery_id;
pub mod extension;
pub mod getopt;
pub mod headers;
pub mod held;
pub mod hold;
pub mod line_endings;
pub mod lookup;
pub mod machine_mail;
pub mod mail_index;
pub mod notice;
pub mod outcome;
pub mod rate_limit;
pub mod redact;
pub mod reply;
pub mod request;
pub mod route;
pub mod route_record;
pub mod shell;
pub mod storm;
pub mod threading;
pub mod trace;
pub mod url_policy;
