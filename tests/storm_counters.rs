//! The storm counters' adapter against DynamoDB's API, under contention: a storm's adds,
//! sent at once from many tasks as concurrent invocations send them, are each counted
//! exactly once. Every answered add answers a distinct count (1, 2, ... N, none twice,
//! none skipped), so no two invocations can both believe they are under the bound, and
//! the final count is N: no lost and no double counts. The sender's count and the
//! route's move together in the same atomic request.
//!
//! DynamoDB here is moto behind `tests/support/dynamodb_front.py`, which applies the
//! writes to one item one at a time as DynamoDB does (moto alone does not: 32 adds at
//! once answered one count twice now and then) and answers a share of them as a hot,
//! throttled item, which the SDK retries. A throttled write is never applied, so a
//! retry can't count twice; an add that stays throttled through every attempt is an
//! error the function fails open on and logs, never a wrong count.

mod support;

use rt_mailgate::aws::counters::{CounterError, DynamoCounters, StormCounters, ADD_ATTEMPTS, ADD_LIMIT};
use rt_mailgate::core::storm::{counter_item, StormBounds};

/// moto on a free port, killed when dropped.
struct Moto(std::process::Child, String);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto() -> (Moto, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("moto.log");
    let port = support::free_port();
    let mut child = support::lambda::spawn(
        "moto_server",
        &["-H", "127.0.0.1", "-p", &port.to_string()],
        &log,
        "moto",
    );
    support::lambda::wait_for_port(port, "moto", &mut child, &log);
    (Moto(child, format!("http://127.0.0.1:{port}")), dir)
}

/// The SDK's settings for DynamoDB at `endpoint`.
async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("CreateTable");
}

#[test]
fn concurrent_adds_are_each_counted_exactly_once() {
    // 2,000 adds, 32 at a time, 5% of the writes throttled; bench/storm-counters.sh runs
    // the same check with a 10,000-mail storm.
    let setting =
        |name: &str, default: f64| -> f64 { std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default) };
    let adds = setting("STORM_COUNTER_ADDS", 2000.0) as usize;
    let at_once = setting("STORM_COUNTER_AT_ONCE", 32.0) as usize;
    let throttle_share = setting("STORM_COUNTER_THROTTLED", 0.05);

    let (moto, _dir) = moto();
    let front = support::dynamodb::DynamoFront::start(&moto.1, throttle_share);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let aws = sdk_config(&front.url).await;
        let client = aws_sdk_dynamodb::Client::new(&aws);
        create_table(&client, "storms").await;
        // Built as the function builds its counters, with their retry setting.
        let counters = std::sync::Arc::new(DynamoCounters::from_sdk_config(&aws, "storms"));
        let bounds = StormBounds::default();
        let now = 1_796_000_000_000;
        // One storm: one sender, one route, one window; plus one other sender's mail.
        let storm = counter_item("alerts@example.test", "monitor@mon.example", now, &bounds);
        let other = counter_item("alerts@example.test", "person@example.org", now, &bounds);
        assert_eq!(storm.key, other.key, "one item per route and window");

        // The whole storm at once, the window's first add (which creates the item) too.
        let started = std::time::Instant::now();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..at_once)
            .map(|_| {
                let (counters, storm, next) = (counters.clone(), storm.clone(), next.clone());
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < adds {
                        answers.push(counters.add(&storm).await);
                    }
                    answers
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.extend(task.await.unwrap());
        }
        let took = started.elapsed();
        assert_eq!(answers.len(), adds);

        let (counted, failed): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
        // An add that fails (throttled through every try, or past the limit) is an error
        // the function fails open on and logs: never a count.
        let mut still_throttled = 0;
        for failure in &failed {
            let error = failure.as_ref().unwrap_err();
            assert!(matches!(error, CounterError::Failed(_)), "{error}");
            still_throttled += usize::from(error.to_string().contains("ProvisionedThroughputExceeded"));
        }
        let mut senders: Vec<u64> = counted.iter().map(|a| a.as_ref().unwrap().sender).collect();
        let mut routes: Vec<u64> = counted.iter().map(|a| a.as_ref().unwrap().route).collect();
        senders.sort_unstable();
        routes.sort_unstable();
        let expected: Vec<u64> = (1..=counted.len() as u64).collect();
        assert_eq!(senders, expected, "each sender count answered once, none skipped");
        assert_eq!(routes, expected, "each route count answered once, none skipped");
        let after = counters.add(&other).await.expect("a quiet add");
        assert_eq!(
            (after.route, after.sender),
            (counted.len() as u64 + 1, 1),
            "the item holds every counted add, and nothing else"
        );
        let stats = front.stats();
        if throttle_share > 0.0 {
            assert!(stats.throttled > 0, "the front throttled nothing: {stats:?}");
        }
        eprintln!(
            "{adds} adds, {at_once} at once: {took:?} ({:.0} a second); {} writes throttled \
             ({:.0}% asked); uncounted, failed open: {still_throttled} still throttled after \
             {ADD_ATTEMPTS} tries, {} past the {ADD_LIMIT:?} limit; lost counts 0, double counts 0",
            adds as f64 / took.as_secs_f64(),
            stats.throttled,
            throttle_share * 100.0,
            failed.len() - still_throttled,
        );
        // A missing table is an error the caller fails open on, never a count.
        let missing = DynamoCounters::new(client, "no-such-table");
        assert!(matches!(missing.add(&storm).await, Err(CounterError::Failed(_))));
    });
}
