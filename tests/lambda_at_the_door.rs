//! The function on the shape the README ships: RT behind the shipped nginx front door
//! (the `header` check, over TLS, `extras/rest2-lookup.conf` installed) and asked as the
//! README's lookup user (Privileged; SeeQueue, ShowTicket, ShowTicketComments on each
//! queue, SeeQueue globally; an RT auth token), on SQLite and PostgreSQL.
//!
//! Mail to a queue the recipient address chose (`*@domain`, `--extension queue`)
//! becomes a ticket when RT has the queue, whatever its name holds (`%`, `/`, `?`,
//! `#`...); when RT itself says there is no such queue, the mail is given up before any
//! upload and counted in `GivenUp`. Where the door or the user can't tell (no REST 2
//! extra at the door, rights per queue only), the mail is posted as before: a mail is
//! never given up for a queue RT has, and the cold start says what is missing.

mod support;

use std::time::{Duration, Instant};

use support::lambda::{ses_event, Door, LambdaStack, ROUTES};
use support::rt::{Db, LookupUser, Rt};
use support::unique;

/// The fixtures' routes, a domain whose local part is the queue, and an address whose
/// sub-address is the queue.
fn routes() -> String {
    format!(
        "{ROUTES}; *@desks.example.test: --action correspond; \
         help@example.test: --action correspond --extension queue"
    )
}

/// A mail as SES stores it (CRLF).
fn smtp_mail(subject: &str) -> Vec<u8> {
    format!(
        "From: alice@customer.example\r\nTo: desk@desks.example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@customer.example>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
    )
    .into_bytes()
}

/// The stack with `door` in front of its RT and the routes above.
fn stack_at(door: Door) -> LambdaStack {
    let mut stack = LambdaStack::without_function(1);
    stack.open_door(door);
    stack.start_functions(&[("ROUTES", &routes())], 1);
    stack
}

/// The cold start's line about RT's REST 2 (logged in the background: waited for).
fn cold_start_line(stack: &LambdaStack) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = stack.function_log().into_iter().find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("RT's REST 2 at cold start"))
        });
        if let Some(line) = line {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "no cold start line about REST 2: {}",
            stack.log_text("function.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The lines of mail the function refused before posting, by case.
fn refused(stack: &LambdaStack, case: &str) -> usize {
    stack
        .function_log()
        .iter()
        .filter(|l| l["fields"]["message"] == "refused before posting; not posted")
        .filter(|l| l["fields"]["case"] == case)
        .count()
}

/// Wildcard and sub-address routes make tickets in the queues the addresses chose, any
/// name a local part can hold, and mail to queues RT lacks is never uploaded.
fn addresses_choose_queues_through_the_readme_door(db: Db) {
    let rt = Rt::of(db);
    let stack = stack_at(Door { db, ..Door::default() });
    let door = stack.door().unwrap();
    let line = cold_start_line(&stack);
    assert_eq!(line["level"], "INFO", "{line}");
    let said = line["fields"]["message"].as_str().unwrap();
    assert!(
        said.contains("lookup before posting again: available") && said.contains("proves a queue missing"),
        "{said}"
    );

    // A queue whose name holds what an address may: made in RT first (lower case: the
    // route takes the local part as RT's mail gateway would get it).
    let odd = format!("{}%2f%/x?y=1&z#w!$'*^`{{|}}~", unique("odd").to_lowercase());
    rt.create_queue(&odd);
    let (id, subject) = (unique("chosen"), unique("Chosen by the address"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let wildcard = "Support@desks.example.test".to_string();
    let sub_address = "help+bugs@example.test".to_string();
    let odd_address = format!("{odd}@desks.example.test");
    let answer = stack
        .invoke(&ses_event(&id, &[&wildcard, &sub_address, &odd_address]))
        .unwrap();
    assert_eq!(
        (answer["delivered"].as_u64(), answer["given_up"].as_u64()),
        (Some(3), Some(0)),
        "{answer}"
    );
    let mut queues: Vec<String> = rt.tickets_like(&subject).into_iter().map(|t| t.queue).collect();
    queues.sort();
    let mut expected = vec!["bugs".to_string(), odd.clone(), "support".to_string()];
    expected.sort();
    assert_eq!(queues, expected);
    assert_eq!(door.posts(), 3);
    assert!(
        door.requests()
            .iter()
            .any(|r| r.starts_with("GET /REST/2.0/queues?") && r.ends_with(" 200")),
        "the queue check went through the door: {:?}",
        door.requests()
    );

    // Queues RT doesn't have, under both kinds of route and with the same odd
    // characters: given up before any upload, counted in GivenUp.
    let (id, subject) = (unique("missing"), unique("No such queue"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let missing = [
        format!("{}@desks.example.test", unique("nosuch")),
        format!("help+{}@example.test", unique("nosuch")),
        format!("{odd}-not@desks.example.test"),
    ];
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    let answer = stack.invoke(&ses_event(&id, &missing)).unwrap();
    assert_eq!(
        (answer["delivered"].as_u64(), answer["given_up"].as_u64()),
        (Some(0), Some(3)),
        "{answer}"
    );
    assert_eq!(door.posts(), 3, "no upload to a queue RT doesn't have");
    assert!(rt.tickets_with_subject(&subject).is_empty());
    assert_eq!(refused(&stack, "UnknownQueue"), 3);
    assert_eq!(stack.metric_totals("GivenUp"), [3], "GivenUpAlarm sees them");
    assert_eq!(stack.metric_totals("AddressMisses"), Vec::<u64>::new());
}

#[test]
fn addresses_choose_queues_through_the_readme_door_on_sqlite() {
    addresses_choose_queues_through_the_readme_door(Db::Sqlite);
}

#[test]
fn addresses_choose_queues_through_the_readme_door_on_postgresql() {
    addresses_choose_queues_through_the_readme_door(Db::Pg);
}

/// With a door that can't tell (`door`), a mail to a queue RT has is posted, and a mail
/// to a made-up one is posted too (RT answers `temporary failure`: an address miss).
fn a_door_that_cant_tell_still_posts(door: Door, cold_start_says: &str) {
    let rt = Rt::of(door.db);
    let stack = stack_at(door);
    let line = cold_start_line(&stack);
    assert_eq!(line["level"], "WARN", "{line}");
    let said = line["fields"]["message"].as_str().unwrap();
    assert!(said.contains(cold_start_says), "{said}");

    let (id, subject) = (unique("posted"), unique("Posted all the same"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let made_up = format!("{}@desks.example.test", unique("nosuch"));
    let answer = stack
        .invoke(&ses_event(
            &id,
            &["Support@desks.example.test", "help+bugs@example.test", &made_up],
        ))
        .unwrap();
    assert_eq!(
        (answer["delivered"].as_u64(), answer["given_up"].as_u64()),
        (Some(2), Some(1)),
        "{answer}"
    );
    let mut queues: Vec<String> = rt.tickets_like(&subject).into_iter().map(|t| t.queue).collect();
    queues.sort();
    assert_eq!(queues, ["bugs", "support"]);
    assert_eq!(stack.door().unwrap().posts(), 3, "every route was posted");
    assert_eq!(refused(&stack, "UnknownQueue"), 0);
    assert_eq!(stack.metric_totals("AddressMisses"), [1]);
}

#[test]
fn a_door_without_the_rest2_extra_posts_every_mail_and_says_so_at_cold_start() {
    a_door_that_cant_tell_still_posts(
        Door {
            extras: false,
            ..Door::default()
        },
        "rest2-lookup.conf",
    );
}

#[test]
fn a_lookup_user_with_rights_per_queue_only_posts_every_mail_and_is_told_which_right_is_missing() {
    a_door_that_cant_tell_still_posts(
        Door {
            login: Some(LookupUser::PerQueue),
            db: Db::Pg,
            ..Door::default()
        },
        "lacks SeeQueue granted globally",
    );
}
