//! Fault injection: a few hundred mails go through the function (via the Lambda runtime
//! API emulator, mails in moto's S3) while a stand-in in front of the real RT randomly
//! refuses connections, resets them, stalls, answers 500 or garbage. Each failed
//! invocation is retried as Lambda retries an async event (twice), then counted as sent
//! to the dead-letter queue. Afterwards every mail must be in RT exactly once, or in the
//! DLQ, and none both or neither.
//!
//! Bounded: `FAULT_MAILS` mails (default 120), a 2 s RT timeout, and a hard time limit
//! that the stand-in lives as long as (a stand-in stopped mid-run would cut the posts
//! it is passing on: RT takes them, the function can't know, and the mails end in RT
//! *and* in the dead-letter queue, which a run here showed when the stand-in kept its
//! default two minutes); `FAULT_LOG=FILE` keeps the function's log lines there.
//! The faults strike before the post reaches RT, and the function has no RT login;
//! cuts *after* RT took the mail, with and without a login, are
//! `tests/lambda_exactly_once.rs`'s. So the timeout stays well above RT's answer time
//! for these small mails (a few hundred ms here).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::lambda::{ses_event, LambdaStack};
use support::standin::{Answer, Settings, StandIn};
use support::{rt, unique};

const FAULTS: [&str; 5] = ["refused", "reset", "stall", "500", "garbage"];

#[test]
fn every_mail_ends_in_rt_exactly_once_or_in_the_dead_letter_queue() {
    let mails: usize = std::env::var("FAULT_MAILS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(120);
    let started = Instant::now();
    let time_limit = Duration::from_secs(900);

    // A deterministic xorshift: the same faults on every run.
    let seed = Arc::new(AtomicU64::new(0x9E37_79B9_7F4A_7C15));
    let injected: Arc<Vec<AtomicUsize>> = Arc::new((0..=FAULTS.len()).map(|_| AtomicUsize::new(0)).collect());
    let rt_url = rt::url();
    let (seed_in, counts) = (seed.clone(), injected.clone());
    let settings = Settings {
        lifetime: time_limit + Duration::from_secs(60),
        ..Settings::default()
    };
    let proxy = StandIn::start_with(settings, move |_| {
        let mut x = seed_in.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        seed_in.store(x, Ordering::Relaxed);
        // 45% of posts meet a fault, 55% reach RT.
        let (kind, answer) = match x % 100 {
            0..=9 => (0, Answer::Close),
            10..=19 => (1, Answer::Reset),
            20..=24 => (2, Answer::Stall),
            25..=34 => (3, Answer::status(500)),
            35..=44 => (4, Answer::Garbage),
            _ => (FAULTS.len(), Answer::Forward(rt_url.clone())),
        };
        counts[kind].fetch_add(1, Ordering::Relaxed);
        answer
    });
    let stack = LambdaStack::start(&[("RT_URL", &proxy.url), ("RT_TIMEOUT", "2")]);

    let run = unique("fault-run");
    let mut outcome: HashMap<String, &str> = HashMap::new();
    let mut first_try = 0;
    for n in 0..mails {
        assert!(
            started.elapsed() < time_limit,
            "the fault run took too long ({n} of {mails} mails)"
        );
        let (id, subject) = (format!("{run}-{n}"), format!("{run} mail {n:04}"));
        stack.store_mail(
            &id,
            format!("From: alice@customer.example\r\nSubject: {subject}\r\n\r\nmail {n}\r\n").as_bytes(),
        );
        let recipient = if n % 2 == 0 {
            "bugs@example.test"
        } else {
            "support@example.test"
        };
        let event = ses_event(&id, &[recipient]);
        // Lambda's policy for an async event: one try and two retries, then the DLQ.
        let attempts = (1..=3).find(|_| stack.invoke(&event).is_ok());
        first_try += usize::from(attempts == Some(1));
        outcome.insert(subject, if attempts.is_some() { "delivered" } else { "dead-letter" });
    }

    if let Ok(path) = std::env::var("FAULT_LOG") {
        std::fs::write(path, stack.log_text("function.log")).unwrap();
    }
    let mut in_rt: HashMap<String, usize> = HashMap::new();
    for (_, subject) in rt::subjects_like(&run) {
        *in_rt.entry(subject).or_default() += 1;
    }
    let mut wrong = Vec::new();
    for (subject, fate) in &outcome {
        let tickets = in_rt.get(subject).copied().unwrap_or(0);
        let fine = matches!((*fate, tickets), ("delivered", 1) | ("dead-letter", 0));
        if !fine {
            wrong.push(format!("{subject}: {fate}, {tickets} ticket(s)"));
        }
    }
    let delivered = outcome.values().filter(|f| **f == "delivered").count();
    let faults: Vec<String> = FAULTS
        .iter()
        .enumerate()
        .map(|(i, name)| format!("{name} {}", injected[i].load(Ordering::Relaxed)))
        .collect();
    println!(
        "fault run: {mails} mails in {:.1} s; posts reaching RT {}; faults injected: {}\n\
         delivered {delivered} ({first_try} at the first try), dead-lettered {}, in RT twice or lost: {}",
        started.elapsed().as_secs_f64(),
        injected[FAULTS.len()].load(Ordering::Relaxed),
        faults.join(", "),
        mails - delivered,
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "mails neither exactly once in RT nor dead-lettered:\n{}",
        wrong.join("\n")
    );
    assert_eq!(in_rt.len(), delivered, "no ticket for a mail we did not send");
    assert!(
        faults.iter().all(|f| !f.ends_with(" 0")),
        "every fault kind was exercised: {faults:?}"
    );
    assert!(
        delivered > mails / 2 && delivered < mails,
        "retries recover most mails; some reach the DLQ"
    );
}
