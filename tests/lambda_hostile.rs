//! One mail can't make RT work without bound: against the real RT behind the README's
//! front door (the shipped nginx site, `header` check, `extras/rest2-lookup.conf`), the
//! function asking RT as the README's lookup user, with a stand-in in front of the door
//! that passes every request on and counts it, and moto. A mail to fifty made-up
//! queues under a `*@domain` route makes no upload to any of them, and no mail is
//! posted to more than `MAX_ROUTES_PER_MAIL` routes: the rest are given up, logged,
//! counted and reported, never silently dropped.

mod support;

use support::lambda::{ses_event, Door, LambdaStack};
use support::standin::{Answer, StandIn};
use support::{rt, unique};

/// A mail as SES stores it (CRLF).
fn smtp_mail(subject: &str) -> Vec<u8> {
    format!(
        "From: alice@customer.example\r\nTo: desk@desks.example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@customer.example>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
    )
    .into_bytes()
}

/// A stack whose function reaches the README's door (plain http on loopback, so the
/// stand-in can pass requests on) through a stand-in that records every request, posts
/// and REST 2 questions alike.
fn counted_door(env: &[(&str, &str)]) -> (LambdaStack, StandIn) {
    let mut stack = LambdaStack::without_function(1);
    let door = stack
        .open_door(Door {
            tls: false,
            ..Door::default()
        })
        .url()
        .to_string();
    let proxy = StandIn::start(move |_| Answer::Forward(door.clone()));
    let mut env = env.to_vec();
    env.push(("RT_URL", &proxy.url));
    stack.start_functions(&env, 1);
    (stack, proxy)
}

/// The mail-gateway posts the stand-in passed on, as their `queue` fields.
fn posted_queues(proxy: &StandIn) -> Vec<String> {
    proxy
        .requests()
        .iter()
        .filter(|r| r.request_line.contains("mail-gateway"))
        .map(|r| {
            r.text_fields()
                .into_iter()
                .find_map(|f| f.strip_prefix("queue=").map(String::from))
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn a_mail_to_fifty_made_up_queues_makes_no_upload_to_them() {
    let routes = format!("{}; *@desks.example.test: --action correspond", support::lambda::ROUTES);
    let (stack, proxy) = counted_door(&[
        ("ROUTES", &routes),
        ("OPERATOR_EMAIL", "ops@example.test"),
        ("NOTICE_FROM", "rt@example.test"),
    ]);
    stack.verify_ses_identity("rt@example.test");
    let (id, subject) = (unique("fifty-made-up"), unique("Fifty made up"));
    stack.store_mail(&id, &smtp_mail(&subject));
    // One real queue (RT's `support`, written as the sender likes) and fifty made up.
    let mut addresses = vec!["Support@desks.example.test".to_string()];
    addresses.extend((0..50).map(|n| format!("{}@desks.example.test", unique(&format!("nosuch{n}")))));
    let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
    let answer = stack.invoke(&ses_event(&id, &addresses)).unwrap();
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(answer["given_up"], 50, "{answer}");
    assert_eq!(
        posted_queues(&proxy),
        ["support"],
        "no upload to a queue RT doesn't have"
    );
    let ticket = rt::only_ticket_with_subject(&subject);
    assert_eq!(rt::ticket(ticket)["Queue"], "support");
    // Each route accounted for in the log: nine refused as unknown queues (checked,
    // within the cap of ten), forty-one beyond the cap.
    let log = stack.function_log();
    let cases = |case: &str| {
        log.iter()
            .filter(|l| l["fields"]["message"] == "refused before posting; not posted")
            .filter(|l| l["fields"]["case"] == case)
            .count()
    };
    assert_eq!((cases("UnknownQueue"), cases("TooManyRoutes")), (9, 41));
    // RT's own word on the nine makes them given up (GivenUpAlarm: a person may want
    // the queue); the forty-one beyond the cap are address misses.
    assert_eq!(stack.metric_totals("AddressMisses"), [41]);
    assert_eq!(stack.metric_totals("GivenUp"), [9]);
    // The queue check went through the same door, as the lookup user.
    let asked = proxy
        .requests()
        .into_iter()
        .filter(|r| r.request_line.starts_with("GET /REST/2.0/queues?"))
        // Not the cold start's probe (a search by id).
        .filter(|r| r.request_line.contains("Name"))
        .count();
    assert_eq!(asked, 10, "one question per checked queue (support and nine made up)");
    // One digest for the operator, naming the mail.
    let sent = stack.sent_mail();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains(&id), "{}", sent[0]);

    // The retry SES or Lambda may make posts nothing again.
    let again = stack.invoke(&ses_event(&id, &addresses)).unwrap();
    assert_eq!(again["already_delivered"], 51, "{again}");
    assert_eq!(posted_queues(&proxy), ["support"]);
}

#[test]
fn no_mail_is_posted_to_more_routes_than_the_cap() {
    let (stack, proxy) = counted_door(&[("MAX_ROUTES_PER_MAIL", "1")]);
    let (id, subject) = (unique("capped"), unique("Capped at one"));
    stack.store_mail(&id, &smtp_mail(&subject));
    let answer = stack
        .invoke(&ses_event(&id, &["bugs@example.test", "support@example.test"]))
        .unwrap();
    assert_eq!(
        (answer["delivered"].as_u64(), answer["given_up"].as_u64()),
        (Some(1), Some(1)),
        "{answer}"
    );
    // The first route in recipient order is posted; the one beyond the cap is not.
    assert_eq!(posted_queues(&proxy), ["bugs"]);
    let tickets = rt::tickets_with_subject(&subject);
    assert_eq!(tickets.len(), 1, "{tickets:?}");
    let given_up = stack
        .function_log()
        .into_iter()
        .find(|l| l["fields"]["case"] == "TooManyRoutes")
        .expect("the route beyond the cap is logged");
    assert_eq!(given_up["fields"]["route"], "support@example.test");
}
