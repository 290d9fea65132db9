//! Exactly once against the real RT (issues 9 and 13), on SQLite and on PostgreSQL, as
//! the README deploys it: RT behind the shipped nginx front door (`header` check,
//! `extras/rest2-lookup.conf`), asked as the README's lookup user. 30
//! mails (16 on PostgreSQL and without a login; more with a knob) go through four function processes (the Lambda
//! runtime API emulator, mails in moto's S3) while a proxy between the function and the door
//!
//! - faults a post *before* it reaches RT (connection closed unread, reset, stall past
//!   the timeout, 500, garbage), or
//! - lets RT **take** the mail and *then* fails the client: reset, 502, or a stall past
//!   the function's `RT_TIMEOUT` (2 s by default). The big mails' own answers often come later
//!   than that too: RT is still turning them into tickets when the function gives up.
//!
//! Some mails go to two routes (queues bugs and support); three are 10 MB; some
//! events are delivered twice at once, one copy to each function process (Lambda may
//! deliver an async event more than once). Each failed invocation is retried as Lambda
//! retries an async event (twice, after a delay), then counted as dead-lettered.
//!
//! **Big HTML mails** come first, alone: four mails of 1 MB text/html (RT's slowest kind: its
//! HTML-to-text conversion keeps RT busy for many seconds). Their first post is passed
//! on to RT, and the function's answer is cut *after RT took the mail*: by a reset or a
//! 502 as soon as RT has it all (a proxy's idle timeout while RT still stores it), or
//! after RT's answer (which comes long after the function gave up on RT's silence).
//! Two of them are delivered again the moment the proxy hands their first post to RT,
//! while RT is still storing them; every later post of them reaches RT untouched. RT's
//! API answers from what RT has committed (on PostgreSQL at once, on SQLite as soon as
//! RT's writer lets it: RT turns HTML into text before it writes), so a retry that asks
//! RT while RT is still storing the mail is told "not there". The run
//! counts invocations that arrived while RT was still storing their mail, and posts
//! made while RT was still storing an earlier post of the same mail (a duplicate in the
//! making).
//!
//! - With the lookup user's RT auth token in the function's secret (the lookup on), every
//!   route of every mail ends **exactly once in RT, or dead-lettered**: no duplicate,
//!   on either database.
//! - Without them (on SQLite), nothing is lost, and the duplicates that remain are
//!   counted (the figure docs/design.md quotes).
//!
//! The plain mails' first posts meet each fault kind once, in turn, so that a short run
//! covers them all; after that a deterministic xorshift picks by the kinds' shares.
//!
//! The figures (mails, posts, faults by kind, lookups, duplicates avoided, lost,
//! duplicated, dead-lettered) are printed; `cargo test --test lambda_exactly_once --
//! --nocapture` shows them. The RTs: `$RT_TEST_URL` (SQLite) and `$RT_TEST_PG_URL`
//! (PostgreSQL), as `scripts/test` starts them. Knobs: `EXACTLY_ONCE_MAILS` (default
//! 30, on PostgreSQL and without a login 16), `EXACTLY_ONCE_HTML_MAILS` (default 4), `EXACTLY_ONCE_HTML_MB`
//! (each, default 1: RT stores one for 5 to 10 s), `EXACTLY_ONCE_RT_SETTLE` (the function's
//! `RT_SETTLE_SECONDS`, default 30, 15 without a login: well above RT's longest store of
//! these mails; in production it is `RT_TIMEOUT`), `EXACTLY_ONCE_BIG_MB` (the third big mail, default 10), `EXACTLY_ONCE_RT_TIMEOUT` (the function's `RT_TIMEOUT`,
//! default 2, 5 without a login: a longer one lets a busy machine's RT answer small
//! mails in time; every stall then costs that long), `EXACTLY_ONCE_RETRY_DELAYS` (seconds before Lambda's two
//! retries, default `20,40`; Lambda's own are `60,120`), `EXACTLY_ONCE_TIME_LIMIT`
//! (seconds per run, default 600), `EXACTLY_ONCE_LOG_DIR` (keep the function's log
//! lines there). The two runs on SQLite take turns; the one on PostgreSQL runs beside them.
//!
//! `lambda_fault_injection` stays as it is: the quick, sequential check of the faults
//! before RT with one function process; this is the long proof of the cases after RT.

mod support;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

use support::lambda::{ses_event, Door, LambdaStack};
use support::rt::{Db, LookupUser, Rt};
use support::standin::{AfterCommit, Answer, Decider, Recorded, Settings, StandIn};
use support::{mails, unique};

/// What the proxy does to a post, with its share in percent.
const FAULTS: [(&str, u64); 9] = [
    ("closed unread", 8),
    ("reset", 6),
    ("stall", 4),
    ("500", 6),
    ("garbage", 6),
    ("RT took it, then reset", 7),
    ("RT took it, then 502", 7),
    ("RT took it, then stall", 5),
    ("passed on", 51),
];
/// The kinds before this index strike before the post reaches RT.
const AFTER_RT: usize = 5;
/// Index of "passed on" (the post reaches RT and its answer comes back).
const PASSED: usize = 8;

/// The routes of the fixtures' `ROUTES`: recipient and queue.
const BUGS: (&str, &str) = ("bugs@example.test", "bugs");
const SUPPORT: (&str, &str) = ("support@example.test", "support");

/// What happens to a big HTML mail's first post (its later ones reach RT untouched),
/// and whether its event is delivered again while RT is still storing it.
const HTML_FATES: [(HtmlFirstPost, bool); 4] = [
    (HtmlFirstPost::CutAtUpload(AfterCommit::Reset), false),
    (HtmlFirstPost::CutAtUpload(AfterCommit::Status(502)), true),
    (HtmlFirstPost::PassedOn, true),
    (HtmlFirstPost::CutAfterAnswer(AfterCommit::Reset), false),
];

/// A big HTML mail's first post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HtmlFirstPost {
    /// RT gets it all, the function's connection is failed at once.
    CutAtUpload(AfterCommit),
    /// RT gets it all and answers; the function's connection is failed then.
    CutAfterAnswer(AfterCommit),
    /// RT gets it all and answers (after the function gave up on its silence).
    PassedOn,
}

/// Invocations made at once (a twin pair counts once): most of a run is waiting (RT
/// storing, the function letting RT settle), so more than the two cores.
const WORKERS: usize = 3;

/// Runs on the same RT take turns.
static ON_SQLITE: Mutex<()> = Mutex::new(());

/// The proof with RT's API credentials: no duplicate, nothing lost.
fn with_the_rt_lookup(db: Db) {
    let _turn = (db == Db::Sqlite).then(|| ON_SQLITE.lock().unwrap_or_else(|e| e.into_inner()));
    let figures = run(Rt::of(db), Lookup::On);
    println!("{figures}");
    figures.assert_nothing_lost();
    assert!(
        figures.duplicated.is_empty(),
        "routes in RT on {} more than once despite the lookup:\n{}",
        db.name(),
        figures.duplicated.join("\n")
    );
    assert!(
        figures.found_by_lookup > 0,
        "the lookup found mails RT took before the connection broke"
    );
    assert!(figures.lease_held > 0, "twin invocations met each other's lease");
}

#[test]
fn with_the_rt_lookup_every_route_is_in_rt_on_sqlite_exactly_once_or_dead_lettered() {
    with_the_rt_lookup(Db::Sqlite);
}

#[test]
fn with_the_rt_lookup_every_route_is_in_rt_on_postgresql_exactly_once_or_dead_lettered() {
    with_the_rt_lookup(Db::Pg);
}

#[test]
fn without_rt_credentials_nothing_is_lost_and_the_duplicates_are_counted() {
    let _turn = ON_SQLITE.lock().unwrap_or_else(|e| e.into_inner());
    let figures = run(Rt::sqlite(), Lookup::Off);
    println!("{figures}");
    figures.assert_nothing_lost();
    assert_eq!(figures.found_by_lookup, 0, "without credentials RT is never asked");
    assert!(figures.lease_held > 0, "twin invocations met each other's lease");
}

/// Whether the function gets RT API credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    On,
    Off,
}

/// One mail of the run.
struct Mail {
    /// SES's message id (the S3 key under the prefix).
    id: String,
    subject: String,
    recipients: Vec<(&'static str, &'static str)>,
    /// Delivered twice at once.
    twin: bool,
    megabytes: usize,
    /// A big HTML mail: its first post's fate, and whether its event comes again while
    /// RT is storing that post.
    html: Option<(HtmlFirstPost, bool)>,
}

impl Mail {
    /// How many copies of its event are delivered.
    fn copies(&self) -> usize {
        match self.twin || self.html.is_some_and(|(_, again)| again) {
            true => 2,
            false => 1,
        }
    }
}

/// The run's knobs.
struct Knobs {
    mails: usize,
    html_mails: usize,
    html_megabytes: f64,
    rt_timeout: Duration,
    /// How long RT may still be storing a post (the function's `RT_SETTLE_SECONDS`):
    /// longer than the short inactivity timeout, as RT stores a big mail for seconds.
    rt_settle: Duration,
    /// The third big mail's size (the first two are 10 MB).
    biggest_megabytes: usize,
    delays: [Duration; 2],
    time_limit: Duration,
}

impl Knobs {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok();
        let delays: Vec<u64> = var("EXACTLY_ONCE_RETRY_DELAYS")
            .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![20, 40]);
        assert_eq!(delays.len(), 2, "EXACTLY_ONCE_RETRY_DELAYS is two numbers of seconds");
        Self {
            mails: var("EXACTLY_ONCE_MAILS").and_then(|v| v.parse().ok()).unwrap_or(30),
            html_mails: var("EXACTLY_ONCE_HTML_MAILS").and_then(|v| v.parse().ok()).unwrap_or(4),
            html_megabytes: var("EXACTLY_ONCE_HTML_MB").and_then(|v| v.parse().ok()).unwrap_or(1.0),
            rt_timeout: Duration::from_secs(var("EXACTLY_ONCE_RT_TIMEOUT").and_then(|v| v.parse().ok()).unwrap_or(2)),
            rt_settle: Duration::from_secs(var("EXACTLY_ONCE_RT_SETTLE").and_then(|v| v.parse().ok()).unwrap_or(30)),
            biggest_megabytes: var("EXACTLY_ONCE_BIG_MB").and_then(|v| v.parse().ok()).unwrap_or(10),
            delays: [Duration::from_secs(delays[0]), Duration::from_secs(delays[1])],
            time_limit: Duration::from_secs(
                var("EXACTLY_ONCE_TIME_LIMIT")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(600),
            ),
        }
    }
}

/// The mails: first the big HTML ones (by [`HTML_FATES`], to queue bugs and support in
/// turn); then the first three are big (10 MB to two routes, 10 MB, 10 MB), every
/// fourth goes to both routes, every sixth is delivered twice at once.
fn plan(run: &str, knobs: &Knobs) -> Vec<Mail> {
    let html = (0..knobs.html_mails).map(|n| Mail {
        id: format!("{run}-html-{n}"),
        subject: html_subject(run, n),
        recipients: vec![if n % 2 == 0 { BUGS } else { SUPPORT }],
        twin: false,
        megabytes: 0,
        html: Some(HTML_FATES[n % HTML_FATES.len()]),
    });
    let plain = (0..knobs.mails).map(|n| Mail {
        id: format!("{run}-{n}"),
        subject: format!("{run} mail {n:04}"),
        recipients: match n {
            n if n % 4 == 0 => vec![BUGS, SUPPORT],
            n if n % 2 == 1 => vec![SUPPORT],
            _ => vec![BUGS],
        },
        twin: n % 6 == 5,
        megabytes: match n {
            0 | 1 => 10,
            2 => knobs.biggest_megabytes,
            _ => 0,
        },
        html: None,
    });
    html.chain(plain).collect()
}

/// The subject of the run's `n`-th HTML mail; [`html_mail_of`] finds it in a post.
fn html_subject(run: &str, n: usize) -> String {
    format!("{run} html {n:03}")
}

/// Which HTML mail of `run` a post (or the start of one) carries, by its subject.
fn html_mail_of(run: &str, post: &[u8]) -> Option<usize> {
    let needle = format!("{run} html ");
    let at = post.windows(needle.len()).position(|w| w == needle.as_bytes())? + needle.len();
    std::str::from_utf8(post.get(at..at + 3)?).ok()?.parse().ok()
}

/// A mail as SES stores it (CRLF) whose body is about `megabytes` MB of text/html: lines
/// of log-like words of varying length, each ending in `<br>` (as `bench/rt-answer-time.sh`
/// makes its `body-html` mails, RT's slowest kind).
fn html_mail(subject: &str, message_id: &str, megabytes: f64) -> Vec<u8> {
    const WORDS: [&str; 20] = [
        "error",
        "warn",
        "info",
        "retry",
        "queue",
        "ticket",
        "mail",
        "gateway",
        "timeout",
        "socket",
        "upload",
        "answer",
        "request",
        "200",
        "404",
        "503",
        "0x7f3a",
        "user=alice",
        "id=42",
        "ok",
    ];
    let mut mail = format!(
        "From: alice@customer.example\r\nTo: rt@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/html; charset=us-ascii\r\n\r\n<html><body>\r\n"
    )
    .into_bytes();
    let size = (megabytes * 1_000_000.0) as usize;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while mail.len() < size {
        let mut line = String::new();
        let length = (next() % 80) as usize;
        while line.len() < length {
            line.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
            line.push(' ');
        }
        mail.extend_from_slice(line.trim_end().as_bytes());
        mail.extend_from_slice(b"<br>\r\n");
    }
    mail.extend_from_slice(b"</body></html>\r\n");
    mail
}

/// What the proxy saw of the big HTML mails' posts.
#[derive(Default)]
struct HtmlPosts {
    /// Posts of each HTML mail (by its index) so far.
    per_mail: Mutex<HashMap<usize, usize>>,
    /// Posts made while RT was still storing an earlier post of the same mail.
    while_storing: AtomicUsize,
}

/// The proxy: a big HTML mail's first post meets its planned fate (`html`, by mail
/// index), its later ones reach RT untouched. Faults strike only once the returned flag
/// is set (after the HTML mails' first posts): then the first posts meet each kind of
/// [`FAULTS`] once, in turn, and a deterministic xorshift picks by the shares after that.
fn proxy(
    rt_url: String,
    run: String,
    html: Vec<HtmlFirstPost>,
    lifetime: Duration,
) -> (StandIn, Arc<Vec<AtomicUsize>>, Arc<HtmlPosts>, Arc<AtomicBool>) {
    let seed = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let faulted = AtomicUsize::new(0);
    let faults_on = Arc::new(AtomicBool::new(false));
    let faulting = faults_on.clone();
    let counts: Arc<Vec<AtomicUsize>> = Arc::new(FAULTS.iter().map(|_| AtomicUsize::new(0)).collect());
    let counted = counts.clone();
    let html_posts = Arc::new(HtmlPosts::default());
    let seen = html_posts.clone();
    let (run, html) = (Arc::new(run), Arc::new(html));
    let settings = Settings {
        lifetime,
        keep_bodies: false,
    };
    let proxy = StandIn::start_with(settings, move |_| {
        let x = seed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |mut x| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                Some(x)
            })
            .unwrap();
        let mut roll = x % 100;
        let kind = match faulting.load(Ordering::SeqCst) {
            false => PASSED,
            true => match faulted.fetch_add(1, Ordering::SeqCst) {
                n if n < FAULTS.len() => n,
                _ => FAULTS
                    .iter()
                    .position(|(_, share)| {
                        let hit = roll < *share;
                        roll = roll.saturating_sub(*share);
                        hit
                    })
                    .unwrap_or(PASSED),
            },
        };
        if kind == 0 {
            // Closed unread: whichever mail it was, nothing of it is read.
            counted[kind].fetch_add(1, Ordering::Relaxed);
            return Answer::Close;
        }
        let (rt, run, html, counted, seen) = (rt_url.clone(), run.clone(), html.clone(), counted.clone(), seen.clone());
        Answer::Decide(Decider(Arc::new(move |request: &Recorded, in_flight: &[Recorded]| {
            let head = &request.body[..request.body.len().min(support::standin::IN_FLIGHT_BODY)];
            if let Some(n) = html_mail_of(&run, head) {
                if in_flight.iter().any(|r| html_mail_of(&run, &r.body) == Some(n)) {
                    seen.while_storing.fetch_add(1, Ordering::Relaxed);
                }
                let mut per_mail = seen.per_mail.lock().unwrap();
                let posts = per_mail.entry(n).or_default();
                *posts += 1;
                return match (*posts, html.get(n)) {
                    (1, Some(HtmlFirstPost::CutAtUpload(after))) => Answer::ForwardCut(rt.clone(), *after),
                    (1, Some(HtmlFirstPost::CutAfterAnswer(after))) => Answer::ForwardThen(rt.clone(), *after),
                    _ => Answer::Forward(rt.clone()),
                };
            }
            counted[kind].fetch_add(1, Ordering::Relaxed);
            let rt = rt.clone();
            match kind {
                1 => Answer::Reset,
                2 => Answer::Stall,
                3 => Answer::status(500),
                4 => Answer::Garbage,
                5 => Answer::ForwardThen(rt, AfterCommit::Reset),
                6 => Answer::ForwardThen(rt, AfterCommit::Status(502)),
                7 => Answer::ForwardThen(rt, AfterCommit::Stall),
                _ => Answer::Forward(rt),
            }
        })))
    });
    (proxy, counts, html_posts, faults_on)
}

/// One invocation to make: which mail, which copy of its event, which attempt (1-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Once {
        mail: usize,
        copy: usize,
        attempt: usize,
    },
    /// Both copies' first attempts, at the same moment, one per function process.
    Twins {
        mail: usize,
    },
}

/// The invocations to make, by when they are due, and how many are running.
#[derive(Default)]
struct Due {
    jobs: BinaryHeap<Reverse<(Instant, Job)>>,
    running: usize,
}

/// [`Due`], shared by the workers.
#[derive(Default)]
struct Schedule {
    state: Mutex<Due>,
    changed: Condvar,
}

impl Schedule {
    fn add(&self, due: Instant, job: Job) {
        self.state.lock().unwrap().jobs.push(Reverse((due, job)));
        self.changed.notify_all();
    }

    /// The next due job, or `None` when nothing is left (or time is up).
    fn next(&self, until: Instant) -> Option<Job> {
        let mut state = self.state.lock().unwrap();
        loop {
            let now = Instant::now();
            if now >= until {
                return None;
            }
            let wait = match state.jobs.peek() {
                None if state.running == 0 => return None,
                None => Duration::from_millis(500),
                Some(Reverse((due, _))) if *due > now => *due - now,
                Some(_) => {
                    let Reverse((_, job)) = state.jobs.pop().unwrap();
                    state.running += 1;
                    return Some(job);
                }
            };
            state = self.changed.wait_timeout(state, wait.min(until - now)).unwrap().0;
        }
    }

    fn done(&self) {
        self.state.lock().unwrap().running -= 1;
        self.changed.notify_all();
    }
}

/// What became of the copies of each mail's event: `true` delivered (an invocation
/// succeeded), `false` dead-lettered; and how many invocations were made.
#[derive(Default)]
struct Fates {
    ends: Mutex<HashMap<(usize, usize), bool>>,
    invocations: AtomicUsize,
    /// When the last first attempt ended (the rest is Lambda's retries).
    first_pass_end: Mutex<Option<Instant>>,
    /// Invocations of a big HTML mail that began while RT was still storing a post of it.
    arrived_while_storing: AtomicUsize,
}

/// What the workers share.
struct Runner<'a> {
    run: &'a str,
    stack: &'a LambdaStack,
    proxy: &'a StandIn,
    mails: &'a [Mail],
    knobs: &'a Knobs,
    schedule: &'a Schedule,
    fates: &'a Fates,
}

impl Runner<'_> {
    /// Counts an invocation's end; schedules Lambda's retry of a failed one (after the
    /// third attempt the event is dead-lettered).
    fn tried(&self, mail: usize, copy: usize, attempt: usize, ok: bool) {
        let fates = self.fates;
        fates.invocations.fetch_add(1, Ordering::Relaxed);
        if attempt == 1 {
            *fates.first_pass_end.lock().unwrap() = Some(Instant::now());
        }
        if ok || attempt == 3 {
            fates.ends.lock().unwrap().insert((mail, copy), ok);
        } else {
            let job = Job::Once {
                mail,
                copy,
                attempt: attempt + 1,
            };
            self.schedule.add(Instant::now() + self.knobs.delays[attempt - 1], job);
        }
    }

    /// SES's event for a mail.
    fn event(&self, mail: usize) -> serde_json::Value {
        let recipients: Vec<&str> = self.mails[mail].recipients.iter().map(|(r, _)| *r).collect();
        ses_event(&self.mails[mail].id, &recipients)
    }

    /// Whether the proxy is passing a post of HTML mail `mail` to RT right now (RT has
    /// it, or most of it, and is storing it).
    fn rt_storing(&self, mail: usize) -> bool {
        self.proxy
            .in_flight()
            .iter()
            .any(|r| html_mail_of(self.run, &r.body) == Some(mail))
    }

    /// The big HTML mails' first attempts, one mail at a time and nothing else running
    /// (both function processes are free): each is invoked, and a mail planned to come
    /// again is delivered a second time the moment the proxy hands its first post to
    /// RT, so the second invocation always arrives while RT is storing it.
    fn html_mails_first(&self) {
        for (n, mail) in self.mails.iter().enumerate() {
            let Some((_, again)) = mail.html else { continue };
            let event = self.event(n);
            std::thread::scope(|s| {
                let first = s.spawn(|| self.stack.invoke(&event).is_ok());
                if again {
                    let until = Instant::now() + Duration::from_secs(120);
                    while !self.rt_storing(n) && !first.is_finished() && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    if self.rt_storing(n) {
                        self.fates.arrived_while_storing.fetch_add(1, Ordering::Relaxed);
                    }
                    let ok = self.stack.invoke(&event).is_ok();
                    self.tried(n, 1, 1, ok);
                }
                self.tried(n, 0, 1, first.join().unwrap());
            });
        }
    }
}

/// Runs one invocation (or a twin pair) and schedules what Lambda would retry.
fn invoke(runner: &Runner, job: Job) {
    let Runner {
        stack, mails, fates, ..
    } = *runner;
    let event = |mail: usize| runner.event(mail);
    let tried = |mail, copy, attempt, ok| runner.tried(mail, copy, attempt, ok);
    match job {
        Job::Once { mail, copy, attempt } => {
            if mails[mail].html.is_some() && runner.rt_storing(mail) {
                fates.arrived_while_storing.fetch_add(1, Ordering::Relaxed);
            }
            let ok = stack.invoke(&event(mail)).is_ok();
            tried(mail, copy, attempt, ok);
        }
        Job::Twins { mail } => {
            let event = event(mail);
            let start = Barrier::new(2);
            let (first, second) = std::thread::scope(|s| {
                let other = s.spawn(|| {
                    start.wait();
                    stack.invoke(&event).is_ok()
                });
                start.wait();
                (stack.invoke(&event).is_ok(), other.join().unwrap())
            });
            tried(mail, 0, 1, first);
            tried(mail, 1, 1, second);
        }
    }
}

/// What a run did, counted.
struct Figures {
    db: Db,
    lookup: Lookup,
    seconds: f64,
    first_pass_seconds: f64,
    setup_seconds: f64,
    mails: usize,
    routes: usize,
    big: Vec<usize>,
    twins: usize,
    /// The big HTML mails' first-post fates and second deliveries, by their kinds.
    html: Vec<(HtmlFirstPost, bool)>,
    html_megabytes: f64,
    rt_timeout: Duration,
    html_posts: usize,
    arrived_while_storing: usize,
    posted_while_storing: usize,
    invocations: usize,
    failed_invocations: usize,
    posts: usize,
    /// RT's answer (or the failure) of each post, by its first words.
    answers: std::collections::BTreeMap<String, usize>,
    faults: Vec<(&'static str, usize)>,
    asked: usize,
    found_by_lookup: usize,
    found_before_posting: usize,
    not_found: usize,
    lookup_failed: usize,
    lease_held: usize,
    already_delivered: usize,
    record_races: usize,
    delivered_mails: usize,
    dead_lettered: usize,
    dead_lettered_in_rt: usize,
    exactly_once: usize,
    lost: Vec<String>,
    duplicated: Vec<String>,
    strays: Vec<String>,
}

impl Figures {
    fn assert_nothing_lost(&self) {
        assert!(
            self.lost.is_empty(),
            "routes of delivered mails missing in RT:\n{}",
            self.lost.join("\n")
        );
        assert!(self.strays.is_empty(), "tickets nobody sent: {:?}", self.strays);
        // The plain mails' first posts meet every kind in turn.
        for (n, (kind, count)) in self.faults.iter().enumerate() {
            assert!(*count > 0 || n == PASSED, "the proxy never produced `{kind}`");
        }
        assert!(
            self.delivered_mails > self.mails / 2,
            "retries recover most mails: {} of {}",
            self.delivered_mails,
            self.mails
        );
        // The case this proof is about must have happened, or it proves nothing.
        let again = self.html.iter().filter(|(_, again)| *again).count();
        assert!(
            self.arrived_while_storing >= again,
            "{} of the {again} big HTML mails delivered again arrived while RT was still storing them: \
             RT stored them quicker than the proxy could tell; raise EXACTLY_ONCE_HTML_MB",
            self.arrived_while_storing
        );
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds = |range: std::ops::Range<usize>| {
            self.faults[range]
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let big: Vec<String> = self.big.iter().map(|mb| format!("{mb} MB")).collect();
        writeln!(
            f,
            "exactly-once run on {}, RT lookup {}: {} mails ({} routes; big: {}; {} sent twice at once) in {:.1} s \
             (RT_TIMEOUT {} s; set up in {:.1} s, first attempts done after {:.1} s)",
            self.db.name(),
            match self.lookup {
                Lookup::On => "on",
                Lookup::Off => "off (no RT API credentials)",
            },
            self.mails,
            self.routes,
            big.join(", "),
            self.twins,
            self.seconds,
            self.rt_timeout.as_secs(),
            self.setup_seconds,
            self.first_pass_seconds
        )?;
        writeln!(
            f,
            "  invocations {} ({} failed and retried or dead-lettered); posts {}; the proxy passed {} on to RT untouched",
            self.invocations, self.failed_invocations, self.posts, self.faults[PASSED].1
        )?;
        let answers: Vec<String> = self.answers.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(f, "  what the posts got: {}", answers.join(", "))?;
        writeln!(f, "  faults before RT: {}", kinds(0..AFTER_RT))?;
        writeln!(f, "  faults after RT took the mail: {}", kinds(AFTER_RT..PASSED))?;
        if !self.html.is_empty() {
            let first = |kind: HtmlFirstPost| self.html.iter().filter(|(k, _)| *k == kind).count();
            writeln!(
                f,
                "  big HTML mails: {} of {} MB (first post cut as soon as RT had it: reset {}, 502 {}; \
                 cut after RT's answer: reset {}; passed on {}; {} delivered again the moment the proxy \
                 handed their first post to RT): {} posts; invocations that arrived while RT was still storing their \
                 mail {}; posts made while RT was still storing an earlier post of the same mail {}",
                self.html.len(),
                self.html_megabytes,
                first(HtmlFirstPost::CutAtUpload(AfterCommit::Reset)),
                first(HtmlFirstPost::CutAtUpload(AfterCommit::Status(502))),
                first(HtmlFirstPost::CutAfterAnswer(AfterCommit::Reset)),
                first(HtmlFirstPost::PassedOn),
                self.html.iter().filter(|(_, again)| *again).count(),
                self.html_posts,
                self.arrived_while_storing,
                self.posted_while_storing
            )?;
        }
        writeln!(
            f,
            "  RT asked {} times: found {} ({} of them before posting again), not found {}, no answer {}",
            self.asked, self.found_by_lookup, self.found_before_posting, self.not_found, self.lookup_failed
        )?;
        writeln!(
            f,
            "  duplicates avoided: lease held {}, already delivered {}, RT lookup {}; delivery-record races lost {}",
            self.lease_held, self.already_delivered, self.found_by_lookup, self.record_races
        )?;
        write!(
            f,
            "  delivered {} mails; routes exactly once in RT {}, lost {}, duplicated {}; dead-lettered {} mails ({} of their routes already in RT once)",
            self.delivered_mails,
            self.exactly_once,
            self.lost.len(),
            self.duplicated.len(),
            self.dead_lettered,
            self.dead_lettered_in_rt
        )?;
        for line in self.duplicated.iter().chain(&self.lost) {
            write!(f, "\n    {line}")?;
        }
        Ok(())
    }
}

fn run(rt: Rt, lookup: Lookup) -> Figures {
    let mut knobs = Knobs::from_env();
    // RT's API answers from what RT has committed, on SQLite too (RT turns an HTML mail
    // into text before it writes): after an unclear answer the function waits as long as
    // RT may still be storing the post (RT_SETTLE_SECONDS; in production RT_TIMEOUT),
    // which makes each unclear answer cost that long: few mails, the biggest 10 MB.
    // PostgreSQL's run is the shorter one.
    // Without a login every unclear answer costs the whole wait: the short run too.
    if (rt.db == Db::Pg || lookup == Lookup::Off) && std::env::var("EXACTLY_ONCE_MAILS").is_err() {
        knobs.mails = 16;
    }
    // Without a login every answer RT is late with becomes a wait: a busy machine's RT
    // must not be late with small mails (stalls then cost that long).
    if lookup == Lookup::Off && std::env::var("EXACTLY_ONCE_RT_TIMEOUT").is_err() {
        knobs.rt_timeout = Duration::from_secs(5);
    }
    // ...and a wait before every post again: half as long (still twice RT's store of
    // these mails on an idle machine).
    if lookup == Lookup::Off && std::env::var("EXACTLY_ONCE_RT_SETTLE").is_err() {
        knobs.rt_settle = Duration::from_secs(15);
    }
    let started = Instant::now();
    let until = started + knobs.time_limit;
    let run = unique(match lookup {
        Lookup::On => "once-lookup",
        Lookup::Off => "once-plain",
    });
    let mails = plan(&run, &knobs);
    let html_fates = mails.iter().filter_map(|m| m.html.map(|(first, _)| first)).collect();

    // WORKERS invocations at once, one more while a twin pair runs: a free function
    // process for each. RT behind the README's front door (plain http on loopback, so
    // that the fault proxy can pass posts on to it), asked as the README's lookup user
    // (or, without a login, with the door's credential only).
    let mut stack = LambdaStack::without_function(WORKERS + 1);
    let door = stack.open_door(Door {
        tls: false,
        db: rt.db,
        login: match lookup {
            Lookup::On => Some(LookupUser::Readme),
            Lookup::Off => None,
        },
        ..Door::default()
    });
    let door_url = door.url().to_string();
    let (proxy, faults, html_posts, faults_on) = proxy(
        door_url.clone(),
        run.clone(),
        html_fates,
        knobs.time_limit + Duration::from_secs(60),
    );
    let rt_timeout = knobs.rt_timeout.as_secs().max(1).to_string();
    let rt_settle = knobs.rt_settle.as_secs().max(1).to_string();
    let env = vec![
        ("RT_URL", proxy.url.as_str()),
        ("RT_TIMEOUT", rt_timeout.as_str()),
        ("RT_SETTLE_SECONDS", rt_settle.as_str()),
        // RT's API is asked through the door directly: the proxy faults posts only.
        ("RT_API_URL", door_url.as_str()),
    ];
    stack.start_functions(&env, WORKERS + 1);

    for (n, mail) in mails.iter().enumerate() {
        let text = format!("mail {n} of run {run}");
        let message_id = format!("{}@customer.example", mail.id);
        let stored = match mail.html {
            Some(_) => html_mail(&mail.subject, &message_id, knobs.html_megabytes),
            None => mails::ses_stored(&mail.subject, &message_id, &text, mail.megabytes),
        };
        stack.store_mail(&mail.id, &stored);
    }

    let setup_seconds = started.elapsed().as_secs_f64();
    let schedule = Schedule::default();
    let now = Instant::now();
    for (n, mail) in mails.iter().enumerate().filter(|(_, m)| m.html.is_none()) {
        let job = match mail.twin {
            true => Job::Twins { mail: n },
            false => Job::Once {
                mail: n,
                copy: 0,
                attempt: 1,
            },
        };
        // In mail order: the big ones first, so their retries end early.
        schedule.add(now + Duration::from_millis(n as u64), job);
    }
    let fates = Fates::default();
    let runner = Runner {
        run: &run,
        stack: &stack,
        proxy: &proxy,
        mails: &mails,
        knobs: &knobs,
        schedule: &schedule,
        fates: &fates,
    };
    runner.html_mails_first();
    faults_on.store(true, Ordering::SeqCst);
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                while let Some(job) = schedule.next(until) {
                    invoke(&runner, job);
                    schedule.done();
                }
            });
        }
    });
    keep_log(&stack, &run);
    assert!(
        Instant::now() < until,
        "the run took longer than {} s ({} of {} events settled)",
        knobs.time_limit.as_secs(),
        fates.ends.lock().unwrap().len(),
        mails.iter().map(Mail::copies).sum::<usize>()
    );
    // Posts RT still works on (a big mail whose answer the function gave up on) land
    // before the count: RT is given three more minutes for them.
    let drained_by = Instant::now() + Duration::from_secs(180);
    while proxy.forwarding() > 0 && Instant::now() < drained_by {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(proxy.forwarding(), 0, "RT finished what the proxy passed on");
    let seconds = started.elapsed().as_secs_f64();

    let invocations = fates.invocations.load(Ordering::Relaxed);
    let first_pass_end = *fates.first_pass_end.lock().unwrap();
    let arrived_while_storing = fates.arrived_while_storing.load(Ordering::Relaxed);
    let ends = fates.ends.into_inner().unwrap();
    keep_log(&stack, &run);
    let mut figures = count(&rt, lookup, seconds, &stack, &mails, &ends, &faults, &run);
    figures.html_megabytes = knobs.html_megabytes;
    figures.rt_timeout = knobs.rt_timeout;
    figures.html_posts = html_posts.per_mail.lock().unwrap().values().sum();
    figures.posted_while_storing = html_posts.while_storing.load(Ordering::Relaxed);
    figures.arrived_while_storing = arrived_while_storing;
    figures.invocations = invocations;
    figures.setup_seconds = setup_seconds;
    figures.first_pass_seconds = first_pass_end.map_or(0.0, |end| (end - started).as_secs_f64());
    figures.failed_invocations = invocations - ends.values().filter(|ok| **ok).count();
    figures
}

/// Keeps the function's log lines in `$EXACTLY_ONCE_LOG_DIR/RUN.jsonl`, if set (the
/// stack's folder goes with it), also when the run is about to fail.
fn keep_log(stack: &LambdaStack, run: &str) {
    if let Ok(dir) = std::env::var("EXACTLY_ONCE_LOG_DIR") {
        let lines: Vec<String> = stack.function_log().iter().map(|l| l.to_string()).collect();
        std::fs::write(format!("{dir}/{run}.jsonl"), lines.join("\n")).unwrap();
    }
}

/// Tickets in RT per route against what each mail's invocations said, and the
/// function's log lines counted.
#[allow(clippy::too_many_arguments)]
fn count(
    rt: &Rt,
    lookup: Lookup,
    seconds: f64,
    stack: &LambdaStack,
    mails: &[Mail],
    fates: &HashMap<(usize, usize), bool>,
    faults: &[AtomicUsize],
    run: &str,
) -> Figures {
    let mut in_rt: HashMap<(String, String), usize> = HashMap::new();
    for ticket in rt.tickets_like(run) {
        *in_rt.entry((ticket.subject, ticket.queue)).or_default() += 1;
    }
    let mut figures = Figures {
        db: rt.db,
        lookup,
        seconds,
        first_pass_seconds: 0.0,
        setup_seconds: 0.0,
        mails: mails.len(),
        routes: mails.iter().map(|m| m.recipients.len()).sum(),
        big: mails.iter().filter(|m| m.megabytes > 0).map(|m| m.megabytes).collect(),
        twins: mails.iter().filter(|m| m.twin).count(),
        html: mails.iter().filter_map(|m| m.html).collect(),
        html_megabytes: 0.0,
        rt_timeout: Duration::ZERO,
        html_posts: 0,
        arrived_while_storing: 0,
        posted_while_storing: 0,
        invocations: 0,
        failed_invocations: 0,
        posts: 0,
        answers: Default::default(),
        faults: FAULTS
            .iter()
            .zip(faults)
            .map(|((kind, _), n)| (*kind, n.load(Ordering::Relaxed)))
            .collect(),
        asked: 0,
        found_by_lookup: 0,
        found_before_posting: 0,
        not_found: 0,
        lookup_failed: 0,
        lease_held: 0,
        already_delivered: 0,
        record_races: 0,
        delivered_mails: 0,
        dead_lettered: 0,
        dead_lettered_in_rt: 0,
        exactly_once: 0,
        lost: Vec::new(),
        duplicated: Vec::new(),
        strays: Vec::new(),
    };
    let mut expected = std::collections::HashSet::new();
    for (n, mail) in mails.iter().enumerate() {
        let copies = mail.copies();
        let delivered = (0..copies).any(|c| fates.get(&(n, c)) == Some(&true));
        if delivered {
            figures.delivered_mails += 1;
        } else {
            figures.dead_lettered += 1;
        }
        for (_, queue) in &mail.recipients {
            let key = (mail.subject.clone(), queue.to_string());
            let tickets = in_rt.get(&key).copied().unwrap_or(0);
            let size = match mail.html {
                Some(_) => "HTML".to_string(),
                None => format!("{} MB", mail.megabytes),
            };
            let what = format!("{} in {queue} ({size}): {tickets} tickets", mail.subject);
            match (delivered, tickets) {
                (_, 2..) => figures
                    .duplicated
                    .push(format!("{what}, {}", fates_of(fates, n, copies))),
                (true, 1) => figures.exactly_once += 1,
                (true, _) => figures.lost.push(what),
                (false, 1) => figures.dead_lettered_in_rt += 1,
                (false, _) => {}
            }
            expected.insert(key);
        }
    }
    figures.strays = in_rt
        .keys()
        .filter(|k| !expected.contains(*k))
        .map(|(s, q)| format!("{s} in {q}"))
        .collect();

    for line in stack.function_log() {
        let fields = &line["fields"];
        let text = |name: &str| fields[name].as_str().unwrap_or_default();
        let message = text("message");
        match (message, text("duplicate_avoided"), text("outcome")) {
            ("delivery outcome", _, _) => {
                figures.posts += 1;
                *figures.answers.entry(answer_kind(text("rt"))).or_default() += 1;
            }
            (_, "lease", _) => figures.lease_held += 1,
            (_, "rt-lookup", _) => {
                figures.asked += 1;
                figures.found_by_lookup += 1;
                if text("when") == "before posting again" {
                    figures.found_before_posting += 1;
                }
            }
            (_, _, "already-delivered") => figures.already_delivered += 1,
            ("RT does not hold this post", _, _) => {
                figures.asked += 1;
                figures.not_found += 1;
            }
            // Without credentials nobody asks RT: not a failed lookup.
            (m, _, _)
                if (m.starts_with("RT could not be asked") || m.starts_with("RT can't be asked"))
                    && lookup == Lookup::On =>
            {
                figures.asked += 1;
                figures.lookup_failed += 1;
            }
            (m, _, _) if m.contains("changed by another invocation meanwhile") || m.starts_with("lease taken over") => {
                figures.record_races += 1
            }
            _ => {}
        }
    }
    figures
}

/// `ok`, `timeout`, `HTTP 502`, `connection reset`...: what kind of answer a post got.
fn answer_kind(rt: &str) -> String {
    const BROKEN: [(&str, &str); 5] = [
        ("invalid HTTP", "not HTTP"),
        ("connection closed", "connection closed"),
        ("connection error", "connection reset"),
        ("error writing a body", "upload cut"),
        ("anceled", "connection canceled"),
    ];
    if let Some((_, kind)) = BROKEN
        .iter()
        .find(|(needle, _)| rt.starts_with("connection") && rt.contains(needle))
    {
        return kind.to_string();
    }
    let head = rt.split([':', '\n']).next().unwrap_or_default();
    match head.strip_prefix("HTTP ") {
        Some(status) => format!("HTTP {}", status.split(' ').next().unwrap_or_default()),
        None => head.split(" - ").next().unwrap_or_default().trim().to_string(),
    }
}

fn fates_of(fates: &HashMap<(usize, usize), bool>, mail: usize, copies: usize) -> String {
    (0..copies)
        .map(|c| match fates.get(&(mail, c)) {
            Some(true) => format!("copy {c} delivered"),
            Some(false) => format!("copy {c} dead-lettered"),
            None => format!("copy {c} unfinished"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
