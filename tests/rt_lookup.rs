//! Asking RT whether it already holds a post (`Rest2Lookup`, RT 5's REST 2 API), against
//! the real RTs of `scripts/rt-test-server start`, each check on SQLite and on
//! PostgreSQL (`NAME::on_sqlite`, `NAME::on_postgresql`): mails are delivered with our
//! `rt-mailgate` exactly as a route of the Lambda posts them (with the
//! `X-RT-Mailgate-Delivery` header in front), then each route is looked up by its
//! delivery id. Every route that was posted is found on its own ticket and transaction,
//! and nothing else is. The last tests use a stand-in for what a real RT won't do on demand (paging
//! without totals, broken answers, silence) and check what is sent.

mod support;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use rt_mailgate::core::credentials::Credentials;
use rt_mailgate::core::delivery_id::DeliveryId;
use rt_mailgate::core::lookup::Unanswerable;
use rt_mailgate::core::request::{GatewayRequest, MailgateArgs};
use rt_mailgate::core::url_policy::OtherHosts;
use rt_mailgate::rt::http::{HttpGatewayConfig, TlsPolicy};
use rt_mailgate::rt::lookup::{DeliveryLookup, Lookup, LookupError, Rest2Lookup};
use rt_mailgate::rt::queues::QueueSearch;
use support::rt::{LookupUser, Rt};
use support::standin::{Answer, StandIn};
use support::{code, ours, rt, stderr, unique};

const ROOT_LOGIN: &str = r#"{"rt_username": "root", "rt_password": "password"}"#;
const LIMIT: Duration = Duration::from_secs(20);

/// A route as the Lambda's table holds it: rt-mailgate's arguments and an extension.
#[derive(Clone)]
struct Route {
    args: Vec<String>,
    extension: Option<String>,
}

fn route(args: &[&str], extension: Option<String>) -> Route {
    Route {
        args: args.iter().map(|a| a.to_string()).collect(),
        extension,
    }
}

impl Route {
    /// The request the route posts, resolved as the CLI and the Lambda resolve it.
    fn request(&self) -> GatewayRequest {
        let mut args = MailgateArgs::default();
        for pair in self.args.chunks(2) {
            let value = Some(pair[1].as_bytes().to_vec());
            match pair[0].as_str() {
                "--queue" => args.queue = value,
                "--action" => args.action = value,
                "--extension" => args.extension = value,
                other => panic!("not a route option here: {other}"),
            }
        }
        args.resolve(self.extension.as_deref().map(str::as_bytes)).request
    }

    /// Posts `mail` to `rt` through our rt-mailgate, as the route would: with the
    /// delivery id of this mail (named by its first Message-ID) in front.
    fn deliver(&self, rt: &Rt, mail: &[u8]) {
        let mut args = vec!["--url", rt.url.as_str()];
        args.extend(self.args.iter().map(String::as_str));
        let mut posted = delivery_id(&label_of(mail), self).header_line();
        posted.extend_from_slice(mail);
        let out = ours(&args, self.extension.as_deref(), &posted);
        assert_eq!(code(&out), 0, "stderr: {}", stderr(&out));
    }
}

/// The delivery id of the mail labelled `label` (its Message-ID, brackets or not). The
/// Lambda's id names one route's post (SES's message id and the post's fingerprint);
/// here one id serves every route of a mail, so that RT's hits for a mail reach the
/// route rule ([`rt_mailgate::core::lookup`]) whatever route asks: the rule, not the id,
/// is what these tests check against the real RT.
fn delivery_id(label: &str, _route: &Route) -> DeliveryId {
    let label = label.trim().trim_start_matches('<').trim_end_matches('>');
    DeliveryId::new(label, "0123456789abcdef")
}

/// A mail's label: its first Message-ID, without brackets.
fn label_of(mail: &[u8]) -> String {
    let text = String::from_utf8_lossy(mail);
    text.lines()
        .find_map(|line| line.strip_prefix("Message-ID: "))
        .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>').to_string())
        .unwrap_or_default()
}

/// A mail with its own Message-ID.
fn mail(message_id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: dave@example.org\nTo: rt@example.test\nSubject: {subject}\nMessage-ID: <{message_id}>\n\
         Date: Wed, 25 Nov 2026 10:00:00 +0000\n\nbody of {message_id}\n"
    )
    .into_bytes()
}

fn new_message_id(label: &str) -> String {
    format!("{}@lookup.example", unique(label))
}

/// Posts a new mail to queue bugs; returns its Message-ID and the ticket RT made of it.
fn new_ticket(rt: &Rt, label: &str) -> (String, u64) {
    let id = new_message_id(label);
    let subject = unique(label);
    bugs().deliver(rt, &mail(&id, &subject));
    (id, rt.only_ticket_with_subject(&subject))
}

/// The route of a new ticket in queue bugs.
fn bugs() -> Route {
    route(&["--queue", "bugs"], None)
}

fn gateway_config(url: &str, secret: &str) -> HttpGatewayConfig {
    HttpGatewayConfig {
        base_url: url.to_string(),
        timeout: None,
        tls: TlsPolicy::SystemRoots,
        user_agent: "rt-mailgate-test".into(),
        credentials: Credentials::from_json(secret).unwrap(),
        other_hosts: OtherHosts::Any,
    }
}

fn lookup_at(url: &str, secret: &str) -> Rest2Lookup {
    Rest2Lookup::new(&gateway_config(url, secret), None, LIMIT).unwrap()
}

fn find(lookup: &Rest2Lookup, label: &str, route: &Route) -> Result<Lookup, LookupError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(lookup.find(&delivery_id(label, route), &route.request()))
}

/// RT's queue search for `name`, as the queue check asks it.
fn search(lookup: &Rest2Lookup, name: &str) -> Result<QueueSearch, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(lookup.search_queue(name)).map_err(|e| e.to_string())
}

/// Looks up in `rt` as root, expecting an answer.
fn ask(rt: &Rt, message_id: &str, route: &Route) -> Lookup {
    find(&lookup_at(&rt.url, ROOT_LOGIN), message_id, route).expect("RT answers")
}

/// (transaction id, type) of each transaction in a ticket's history, read over REST 1.0.
fn transactions(rt: &Rt, ticket: u64) -> HashMap<u64, String> {
    let history = String::from_utf8_lossy(&rt.rest(&format!("ticket/{ticket}/history"))).into_owned();
    history
        .lines()
        .filter_map(|line| {
            let (id, description) = line.split_once(": ")?;
            Some((id.trim().parse().ok()?, description.to_string()))
        })
        .collect()
}

fn assert_found_on(rt: &Rt, found: Lookup, ticket: u64, description: &str) -> u64 {
    let Lookup::Found {
        ticket: on,
        transaction,
    } = found
    else {
        panic!("expected Found on ticket {ticket}, got {found:?}");
    };
    assert_eq!(on, ticket);
    let history = transactions(rt, ticket);
    let said = history
        .get(&transaction)
        .unwrap_or_else(|| panic!("transaction {transaction} is not in ticket {ticket}'s history {history:?}"));
    assert!(said.contains(description), "transaction {transaction}: {said}");
    transaction
}

fn queue_id(rt: &Rt, name: &str) -> String {
    let body = String::from_utf8_lossy(&rt.rest(&format!("queue/{name}"))).into_owned();
    body.lines()
        .find_map(|l| l.strip_prefix("id: queue/"))
        .expect("queue id")
        .trim()
        .to_string()
}

/// Each check against both RTs, as `NAME::on_sqlite` and `NAME::on_postgresql`.
macro_rules! on_both_rts {
    ($($(#[$meta:meta])* fn $name:ident($rt:ident: &Rt) $body:block)*) => {$(
        mod $name {
            use super::*;

            $(#[$meta])*
            fn check($rt: &Rt) $body

            #[test]
            fn on_sqlite() {
                check(&Rt::sqlite());
            }

            #[test]
            fn on_postgresql() {
                check(&Rt::pg());
            }
        }
    )*};
}

on_both_rts! {
fn a_new_ticket_is_found_in_its_queue_by_name_or_id_and_nowhere_else(rt: &Rt) {
    let (id, ticket) = new_ticket(rt, "lookup-new");
    let bugs = bugs();

    assert_found_on(rt, ask(rt, &id, &bugs), ticket, "Ticket created");
    assert_found_on(rt, ask(rt, &format!("<{id}>"), &bugs), ticket, "Ticket created");
    for same in ["BUGS", &queue_id(rt, "bugs")] {
        assert_found_on(rt, ask(rt, &id, &route(&["--queue", same], None)), ticket, "Ticket created");
    }
    // A comment on a new mail also creates the ticket.
    let comment = route(&["--queue", "bugs", "--action", "comment"], None);
    assert_found_on(rt, ask(rt, &id, &comment), ticket, "Ticket created");

    for other in [
        route(&["--queue", "support"], None),
        route(&[], None), // queue 1, General
        route(&["--queue", "bugs", "--extension", "ticket"], Some(ticket.to_string())),
    ] {
        assert_eq!(ask(rt, &id, &other), Lookup::NotFound, "{:?}", other.request());
    }
    assert_eq!(ask(rt, &new_message_id("never-sent"), &bugs), Lookup::NotFound);
}

fn a_reply_and_a_comment_are_found_on_their_ticket_as_what_they_are(rt: &Rt) {
    let (_, ticket) = new_ticket(rt, "lookup-thread");
    let on = |action: &str, t: u64| route(&["--action", action, "--extension", "ticket"], Some(t.to_string()));

    let reply_id = new_message_id("reply");
    on("correspond", ticket).deliver(rt, &mail(&reply_id, "Re: no tag here"));
    let reply = assert_found_on(
        rt,
        ask(rt, &reply_id, &on("correspond", ticket)),
        ticket,
        "Correspondence added",
    );
    assert_eq!(ask(rt, &reply_id, &on("comment", ticket)), Lookup::NotFound);
    assert_eq!(ask(rt, &reply_id, &on("correspond", ticket + 1000)), Lookup::NotFound);

    let comment_id = new_message_id("comment");
    on("comment", ticket).deliver(rt, &mail(&comment_id, "a note"));
    let comment = assert_found_on(rt, ask(rt, &comment_id, &on("comment", ticket)), ticket, "Comments added");
    assert_ne!(reply, comment);
    assert_eq!(ask(rt, &comment_id, &on("correspond", ticket)), Lookup::NotFound);
    // `take` rides along: the comment is what RT recorded.
    assert_found_on(rt, ask(rt, &comment_id, &on("take-comment", ticket)), ticket, "Comments added");
}

fn one_mail_to_two_queues_is_two_tickets_each_found_by_its_route(rt: &Rt) {
    let id = new_message_id("two-queues");
    let subject = unique("lookup-two");
    let (bugs, support) = (bugs(), route(&["--queue", "support"], None));
    bugs.deliver(rt, &mail(&id, &subject));
    // Only the first landed so far: the second route is still to be posted.
    assert_eq!(ask(rt, &id, &support), Lookup::NotFound);
    support.deliver(rt, &mail(&id, &subject));

    let tickets = rt.tickets_with_subject(&subject);
    assert_eq!(tickets.len(), 2, "{tickets:?}");
    let in_queue = |queue: &str| *tickets.iter().find(|&&t| rt.ticket(t)["Queue"] == queue).unwrap();
    assert_found_on(rt, ask(rt, &id, &bugs), in_queue("bugs"), "Ticket created");
    assert_found_on(rt, ask(rt, &id, &support), in_queue("support"), "Ticket created");
    assert_eq!(ask(rt, &id, &route(&["--queue", "General"], None)), Lookup::NotFound);
}

fn a_subject_tag_places_a_mail_without_a_ticket_field(rt: &Rt) {
    let (_, ticket) = new_ticket(rt, "lookup-tagged");
    let id = new_message_id("tagged");
    // RT follows the tag, whatever the route's queue.
    let support = route(&["--queue", "support"], None);
    support.deliver(rt, &mail(&id, &format!("Re: [example.test #{ticket}] still broken")));
    assert_found_on(rt, ask(rt, &id, &support), ticket, "Correspondence added");
    assert_eq!(
        ask(rt, &id, &route(&["--queue", "support", "--action", "comment"], None)),
        Lookup::NotFound
    );
}

fn a_reply_to_a_ticket_merged_since_is_found_on_the_ticket_it_went_into(rt: &Rt) {
    let ((_, a), (_, b)) = (new_ticket(rt, "lookup-merge-a"), new_ticket(rt, "lookup-merge-b"));
    let id = new_message_id("reply-to-b");
    let reply_to_b = route(&["--extension", "ticket"], Some(b.to_string()));
    reply_to_b.deliver(rt, &mail(&id, "Re: b"));
    let merged = String::from_utf8_lossy(&rt.rest(&format!("ticket/{b}/merge/{a}"))).into_owned();
    assert!(merged.contains("Merge completed"), "{merged}");

    assert_found_on(rt, ask(rt, &id, &reply_to_b), a, "Correspondence added");
}

fn a_message_id_inside_a_forwarded_mail_is_not_that_mail(rt: &Rt) {
    let inner = new_message_id("inner");
    let outer = new_message_id("outer");
    let forward = format!(
        "From: dave@example.org\nTo: rt@example.test\nSubject: {}\nMessage-ID: <{outer}>\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nsee below\n--B\n\
         Content-Type: message/rfc822\n\nFrom: erin@example.org\nSubject: the original\nMessage-ID: <{inner}>\n\n\
         original text\n--B--\n",
        unique("lookup-forward")
    );
    let bugs = bugs();
    bugs.deliver(rt, forward.as_bytes());
    assert!(matches!(ask(rt, &outer, &bugs), Lookup::Found { .. }));
    assert_eq!(ask(rt, &inner, &bugs), Lookup::NotFound);
}

fn a_wrong_rt_password_is_an_error_not_a_not_found(rt: &Rt) {
    let secret = r#"{"rt_username": "root", "rt_password": "hush-wrong"}"#;
    let err = find(&lookup_at(&rt.url, secret), &new_message_id("any"), &route(&[], None)).unwrap_err();
    assert!(matches!(err, LookupError::Unauthorized { .. }), "{err}");
    assert!(!err.to_string().contains("hush"), "{err}");
}

fn the_readme_lookup_users_token_works_as_the_login(rt: &Rt) {
    // rt-mailgate-lookup: Privileged, with only the README's rights (no superuser).
    let (id, ticket) = new_ticket(rt, "lookup-token");
    let bugs = bugs();

    let token = rt.lookup_token(LookupUser::Readme);
    let secret = serde_json::json!({ "rt_token": token }).to_string();
    let found = find(&lookup_at(&rt.url, &secret), &id, &bugs).unwrap();
    assert_found_on(rt, found, ticket, "Ticket created");
    // The same rights per queue only (the README's before): the lookup still finds it.
    let narrow = serde_json::json!({ "rt_token": rt.lookup_token(LookupUser::PerQueue) }).to_string();
    assert_found_on(rt, find(&lookup_at(&rt.url, &narrow), &id, &bugs).unwrap(), ticket, "Ticket created");

    let wrong = serde_json::json!({ "rt_token": format!("{token}0") }).to_string();
    let err = find(&lookup_at(&rt.url, &wrong), &id, &bugs).unwrap_err();
    assert!(matches!(err, LookupError::Unauthorized { .. }), "{err}");
    assert!(!err.to_string().contains(&token), "{err}");
}

fn rts_queue_search_proves_a_queue_missing_only_to_a_user_who_sees_every_queue(rt: &Rt) {
    // Names a local part can hold, each a queue of its own in RT.
    let odd = unique("q");
    let names = [
        format!("{odd}%2Fx"),
        format!("{odd}/a/b"),
        format!("{odd}+tag"),
        format!("{odd} spaced out"),
        format!("{odd}?x=1&y#z"),
        format!("{odd}\"quoted\""),
        format!("{odd}..%"),
    ];
    rt.create_queues(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let readme = lookup_at(&rt.url, &serde_json::json!({ "rt_token": rt.lookup_token(LookupUser::Readme) }).to_string());
    let narrow = lookup_at(&rt.url, &serde_json::json!({ "rt_token": rt.lookup_token(LookupUser::PerQueue) }).to_string());
    let root = lookup_at(&rt.url, ROOT_LOGIN);
    for name in names.iter().map(String::as_str).chain(["support", "SUPPORT", &queue_id(rt, "bugs")]) {
        assert_eq!(search(&readme, name), Ok(QueueSearch::Listed), "{name:?}");
        assert_eq!(search(&root, name), Ok(QueueSearch::Listed), "{name:?}");
    }
    for missing in names.iter().map(|n| format!("{n}-not")).chain(["9999999".to_string()]) {
        assert_eq!(search(&readme, &missing), Ok(QueueSearch::NoneInAll), "{missing:?}");
        assert_eq!(search(&root, &missing), Ok(QueueSearch::NoneInAll), "{missing:?}");
        // Rights per queue only: RT won't say more than "none I may see".
        assert_eq!(search(&narrow, &missing), Ok(QueueSearch::NoneVisible), "{missing:?}");
    }
    // The per-queue user sees the queues it has rights on (every queue there was when
    // the rights were granted); the new ones it can't see are unknown, never missing.
    assert_eq!(search(&narrow, "support"), Ok(QueueSearch::Listed));
    assert_eq!(search(&narrow, &names[0]), Ok(QueueSearch::NoneVisible));
}
}

#[test]
fn routes_and_mails_that_cannot_be_looked_up_say_so_without_asking() {
    // Nothing listens at this URL: an answer here proves no request was made.
    let lookup = lookup_at(&support::standin::refused_url(), ROOT_LOGIN);
    let take = route(&["--action", "take", "--extension", "ticket"], Some("5".into()));
    assert!(matches!(
        find(&lookup, "x@y", &take),
        Ok(Lookup::Unanswerable(Unanswerable::RecordsNoMessage(_)))
    ));
    assert!(matches!(
        find(&lookup, "x@y", &route(&[], None)),
        Err(LookupError::Transport { .. })
    ));
}

// --- Through the shipped nginx front door (deploy/nginx), with extras/rest2-lookup.conf. ---

/// `scripts/rt-proxy` in front of the test RT, over TLS with the header and client
/// certificate checks, on a free port and in a state folder of its own; stopped on drop.
struct Proxy {
    vars: HashMap<String, String>,
    state: std::path::PathBuf,
}

impl Proxy {
    fn start(extras: &str) -> Self {
        let port = support::free_port();
        // Directly under /tmp: run as root, the script hands the folder to `nobody`.
        let state = std::env::temp_dir().join(unique("rt-mailgate-lookup-proxy"));
        let out = Command::new("timeout")
            .arg("60")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rt-proxy"))
            .args(["start", "header", "mtls"])
            .env("RT_TEST_URL", rt::url())
            .env("RT_PROXY_SERVER", "nginx")
            .env("RT_PROXY_PORT", port.to_string())
            .env("RT_PROXY_STATE", &state)
            .env("RT_PROXY_EXTRAS", extras)
            .output()
            .expect("scripts/rt-proxy runs");
        let proxy = Self {
            vars: String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            state,
        };
        assert!(
            out.status.success(),
            "scripts/rt-proxy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        proxy
    }

    /// A lookup through the proxy: its CA, its secret (less the keys `without`) and
    /// `rt_login`'s keys.
    fn lookup(&self, rt_login: &str, without: &[&str]) -> Rest2Lookup {
        let read = std::fs::read_to_string(&self.vars["RT_PROXY_SECRET_JSON"]).unwrap();
        let mut secret: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&read).unwrap();
        secret.retain(|key, _| !without.contains(&key.as_str()));
        let login: serde_json::Map<String, serde_json::Value> = serde_json::from_str(rt_login).unwrap();
        secret.extend(login);
        let mut config = gateway_config(
            &self.vars["RT_PROXY_URL"],
            &serde_json::Value::Object(secret).to_string(),
        );
        config.tls = TlsPolicy::CaFile(self.vars["RT_PROXY_CA"].clone().into());
        Rest2Lookup::new(&config, None, LIMIT).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rt-proxy"))
            .arg("stop")
            .env("RT_PROXY_STATE", &self.state)
            .output();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

#[test]
fn the_shipped_proxy_passes_the_lookup_only_with_its_extra_and_its_checks() {
    let rt = &Rt::sqlite();
    let (id, ticket) = new_ticket(rt, "lookup-proxy");
    let bugs = bugs();

    let proxy = Proxy::start("rest2-lookup");
    let lookup = proxy.lookup(ROOT_LOGIN, &[]);
    assert_found_on(rt, find(&lookup, &id, &bugs).unwrap(), ticket, "Ticket created");
    let support = route(&["--queue", "support"], None);
    assert_eq!(find(&lookup, &id, &support).unwrap(), Lookup::NotFound);
    // The proxy's checks still apply: here its header (its client certificate is part
    // of the TLS setup that every request here passes).
    let err = find(&proxy.lookup(ROOT_LOGIN, &["header"]), &id, &bugs).unwrap_err();
    assert!(matches!(err, LookupError::Forbidden { .. }), "{err}");

    // The queue search passes too, any name in its query, as the README's lookup user.
    let readme = serde_json::json!({ "rt_token": rt.lookup_token(LookupUser::Readme) }).to_string();
    let lookup = proxy.lookup(&readme, &[]);
    assert_eq!(search(&lookup, "Support"), Ok(QueueSearch::Listed));
    let missing = format!("{}/x%2F..%", unique("nosuch"));
    assert_eq!(search(&lookup, &missing), Ok(QueueSearch::NoneInAll));
    drop(proxy);

    // Without the extra, the front door passes the mail gateway only: its 404 page is
    // no answer about a queue.
    let plain = Proxy::start("");
    let err = find(&plain.lookup(ROOT_LOGIN, &[]), &id, &bugs).unwrap_err();
    assert!(matches!(err, LookupError::NotAvailable { .. }), "{err}");
    let err = search(&plain.lookup(&readme, &[]), &missing).unwrap_err();
    assert!(err.contains("404"), "{err}");
}

// --- Against a stand-in: what a real RT won't do on demand. ---

fn json(body: serde_json::Value) -> Answer {
    Answer::ok_body(&body.to_string())
}

/// A page of the attachment search, each hit carrying the headers `headers`.
fn page(transactions: &[u64], per_page: u64, headers: &str) -> Answer {
    let items: Vec<_> = transactions
        .iter()
        .map(|t| {
            serde_json::json!({"type": "attachment", "id": "1", "TransactionId": t.to_string(), "Subject": "s",
                               "Headers": format!("Subject: s\n{headers}\n")})
        })
        .collect();
    json(
        serde_json::json!({"items": items, "per_page": per_page, "page": 1, "count": items.len(), "total": null, "pages": null}),
    )
}

fn transaction(kind: &str, ticket: u64) -> Answer {
    json(serde_json::json!({"id": 1, "Type": kind, "Object": {"type": "ticket", "id": ticket.to_string()}}))
}

#[test]
fn pages_are_read_until_one_is_not_full_when_rt_gives_no_total() {
    // RT sends `total: null` to anyone but a superuser.
    let reply = route(&["--extension", "ticket"], Some("5".into()));
    let header = delivery_id("x@y", &reply).search_text();
    let answers = [
        page(&[10, 11], 2, &header),
        page(&[12], 2, &header),
        transaction("Correspond", 7),
        transaction("Correspond", 8),
        transaction("Correspond", 5),
    ];
    let standin = StandIn::start(move |n| answers.get(n).cloned().unwrap_or(Answer::status(500)));
    let found = find(&lookup_at(&standin.url, ROOT_LOGIN), "x@y", &reply).unwrap();
    assert_eq!(
        found,
        Lookup::Found {
            ticket: 5,
            transaction: 12
        }
    );
    let lines: Vec<String> = standin.requests().into_iter().map(|r| r.request_line).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines[0].starts_with("GET /REST/2.0/attachments?query=") && lines[0].contains("page=1"));
    assert!(lines[1].contains("page=2"), "{}", lines[1]);
    assert!(lines[2].starts_with("GET /REST/2.0/transaction/10 "), "{}", lines[2]);
}

#[test]
fn what_is_sent_is_rts_login_and_the_proxy_header_only() {
    let standin = StandIn::always(json(
        serde_json::json!({"items": [], "per_page": 100, "pages": 0.0, "total": 0}),
    ));
    let secret = r#"{"rt_token": "1-14-hushtoken", "header": "X-Mailgate-Token: hush-gate",
                     "username": "proxy-user", "password": "hush-proxy"}"#;
    let found = find(&lookup_at(&standin.url, secret), "<a@b>", &route(&[], None)).unwrap();
    assert_eq!(found, Lookup::NotFound);
    let request = standin.only_request();
    assert_eq!(request.header("authorization"), Some("token 1-14-hushtoken"));
    assert_eq!(request.header("x-mailgate-token"), Some("hush-gate"));
    assert_eq!(request.headers.iter().filter(|(k, _)| k == "authorization").count(), 1);
    // The search is for the post's delivery header, top-level attachments only.
    let query = request.request_line.split_whitespace().nth(1).unwrap().to_string();
    let decoded = url::Url::parse(&format!("http://x{query}")).unwrap();
    let pairs: HashMap<String, String> = decoded.query_pairs().into_owned().collect();
    let conditions: serde_json::Value = serde_json::from_str(&pairs["query"]).unwrap();
    assert_eq!(conditions[0]["field"], "Headers");
    assert_eq!(conditions[0]["operator"], "LIKE");
    assert_eq!(
        conditions[0]["value"],
        delivery_id("<a@b>", &route(&[], None)).search_text()
    );
    assert!(pairs["fields"].contains("Headers"), "each hit's headers are checked");
    assert_eq!(conditions[1]["field"], "Parent");
    assert_eq!(pairs["per_page"], "100");
}

/// The error a reply route's lookup ends in when RT answers `answers` in turn.
fn error_for(answers: Vec<Answer>) -> LookupError {
    let standin = StandIn::start(move |n| answers.get(n).cloned().unwrap_or(Answer::status(500)));
    let secret = r#"{"rt_username": "root", "rt_password": "hush-pw", "header": "X-T: hush-gate"}"#;
    let reply = route(&["--extension", "ticket"], Some("5".into()));
    let err = find(&lookup_at(&standin.url, secret), "x@y", &reply).unwrap_err();
    assert!(!err.to_string().contains("hush"), "{err}");
    err
}

#[test]
fn answers_that_are_not_rest2s_are_errors_never_not_found() {
    // No REST 2 there: a 404, RT 4's redirect to its login page, a page that isn't JSON.
    for answer in [
        Answer::status(404),
        Answer::redirect("/NoAuth/Login.html"),
        Answer::ok_body("<html>login</html>"),
    ] {
        let err = error_for(vec![answer.clone()]);
        assert!(matches!(err, LookupError::NotAvailable { .. }), "{answer:?}: {err}");
        assert!(err.to_string().contains("rest2-lookup.conf"), "{err}");
    }
    let err = error_for(vec![Answer::status(401)]);
    assert!(matches!(err, LookupError::Unauthorized { .. }), "{err}");
    let err = error_for(vec![Answer::status(403)]);
    assert!(matches!(err, LookupError::Forbidden { .. }), "{err}");
    let err = error_for(vec![Answer::status(502)]);
    assert!(matches!(err, LookupError::Status { status: 502, .. }), "{err}");
    // Later requests: a transaction without its ticket, a transaction RT won't show.
    let header = delivery_id("x@y", &route(&["--extension", "ticket"], Some("5".into()))).search_text();
    let err = error_for(vec![
        page(&[10], 100, &header),
        Answer::ok_body(r#"{"Type": "Correspond"}"#),
    ]);
    assert!(matches!(err, LookupError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("transaction 10"), "{err}");
    let err = error_for(vec![page(&[10], 100, &header), Answer::status(403)]);
    assert!(matches!(err, LookupError::Forbidden { .. }), "{err}");
}

#[test]
fn a_silent_rt_is_a_timeout_within_the_limit() {
    let standin = StandIn::always(Answer::Stall);
    let limit = Duration::from_millis(500);
    let lookup = Rest2Lookup::new(&gateway_config(&standin.url, ROOT_LOGIN), None, limit).unwrap();
    let started = std::time::Instant::now();
    let err = find(&lookup, "x@y", &route(&[], None)).unwrap_err();
    assert!(matches!(err, LookupError::Timeout(d) if d == limit), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
