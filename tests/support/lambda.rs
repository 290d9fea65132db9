//! The Lambda on this machine, with real parts: moto as S3 and Secrets Manager (over
//! HTTP), cargo-lambda's Lambda runtime API emulator, our `rt-mailgate-lambda` binary
//! polling it (one process, or several to run invocations at once), and the real RT.
//! Everything binds 127.0.0.1 and is killed when the stack is dropped.
//!
//! Unless a test names its own `RT_URL` (a stand-in), the function reaches RT as the
//! README deploys it ([`Door`]): through the shipped nginx front door (`deploy/nginx/`,
//! over TLS, the `header` check, with `extras/rest2-lookup.conf` installed), with a
//! secret in Secrets Manager holding the door's header and the README's lookup user's
//! RT auth token (never RT's superuser).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Our Lambda binary, built by cargo for this test run.
pub const FUNCTION: &str = env!("CARGO_BIN_EXE_rt-mailgate-lambda");
/// The replay command.
pub const REPLAY: &str = env!("CARGO_BIN_EXE_rt-mailgate-replay");
/// The trace command.
pub const TRACE: &str = env!("CARGO_BIN_EXE_rt-mailgate-trace");
/// The bucket the tests' "SES" writes to.
pub const BUCKET: &str = "rt-mail";
/// The key prefix, as an SES S3 action with `objectKeyPrefix: inbound/` writes it.
pub const PREFIX: &str = "inbound/";
/// The routes the `events/` fixtures assume.
pub const ROUTES: &str = "bugs@example.test: --queue bugs --action correspond --extension ticket; \
     bugs-comment@example.test: --queue bugs --action comment --extension ticket; \
     support@example.test: --queue support --action correspond";

pub use super::free_port;

/// Waits (up to a minute) until something listens on `addr`; fails the test with the
/// server's log if it exits first or never listens.
pub fn wait_for(addr: SocketAddr, what: &str, child: &mut Child, log: &Path) {
    if let Err(exited) = wait_until(|| listens(addr), what, child, log) {
        panic!("{exited}");
    }
}

/// Waits (up to a minute, failing the test then with the server's log) until `ready()`;
/// `Err` saying how the server exited, with its log, if it exits first.
fn wait_until(ready: impl Fn() -> bool, what: &str, child: &mut Child, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited ({status}): {}", log_of(log)));
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not answer within a minute: {}",
            log_of(log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A server's log so far, for a failure's message ("" when there is none yet).
fn log_of(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// Whether something other than our own probe accepts a connection on `addr`. Connecting
/// to a free loopback port can pick that very port as its source and connect to itself
/// (TCP simultaneous open) where the ephemeral range covers the tests' ports: that is no
/// server.
fn listens(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .is_ok_and(|probe| probe.local_addr().ok() != probe.peer_addr().ok())
}

/// [`wait_for`] on a loopback port.
pub fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) {
    wait_for(SocketAddr::from(([127, 0, 0, 1], port)), what, child, log);
}

/// Starts `program` with `args`, its output to `log`; fails the test, naming the
/// install, when it can't start.
pub fn spawn(program: &str, args: &[&str], log: &Path, what: &str) -> Child {
    let file = std::fs::File::create(log).unwrap();
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{what} ({program}) can't start: {e}. Install it: pip install 'moto[server]' cargo-lambda")
        })
}

/// The shipped front door the function reaches RT through, and who it asks RT as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Door {
    /// `deploy/nginx/extras/rest2-lookup.conf` installed (the README tells admins to).
    pub extras: bool,
    /// `deploy/nginx/extras/rest2-thread.conf` installed too (optional: it passes the
    /// RT-side extra `deploy/rt/lib`, which every test RT loads).
    pub thread_extra: bool,
    /// The RT login in the secret: one of the lookup users, or none.
    pub login: Option<super::rt::LookupUser>,
    /// Over TLS (the function trusts the door's CA through `RT_CA_FILE`); plain http for
    /// a stand-in in front of the door, which passes plain http on.
    pub tls: bool,
    /// The RT behind it.
    pub db: super::rt::Db,
}

impl Default for Door {
    /// The README's: nginx with the header check and the REST 2 extra, over TLS, the
    /// README's lookup user.
    fn default() -> Self {
        Self {
            extras: true,
            thread_extra: false,
            login: Some(super::rt::LookupUser::Readme),
            tls: true,
            db: super::rt::Db::Sqlite,
        }
    }
}

/// The secret the door's credentials are in (Secrets Manager, in moto).
pub const DOOR_SECRET: &str = "rt-mailgate/door";

/// A running stack.
pub struct LambdaStack {
    /// moto's URL.
    pub moto: String,
    api_port: u16,
    invoke: String,
    /// The function's environment (AWS endpoint, bucket, routes, RT...).
    env: Vec<(String, String)>,
    children: Vec<Child>,
    /// How many function processes were started.
    functions: usize,
    /// The front door, once one is up (see [`Door`]).
    door: Option<super::proxy::Proxy>,
    /// DynamoDB's write semantics in front of moto, once the storm table is made.
    dynamodb: Option<super::dynamodb::DynamoFront>,
    dir: tempfile::TempDir,
}

impl LambdaStack {
    /// Starts moto, the emulator and the function with the fixtures' routes plus `env`.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with_secrets(env, &[])
    }

    /// As [`LambdaStack::start`], with these Secrets Manager secrets (name, JSON) in moto
    /// before the function's cold start reads them.
    pub fn start_with_secrets(env: &[(&str, &str)], secrets: &[(&str, &str)]) -> Self {
        let mut stack = Self::without_function(1);
        for (name, json) in secrets {
            stack.create_secret(name, json);
        }
        stack.start_functions(env, 1);
        stack
    }

    /// Starts moto and an emulator that lets `concurrency` invocations run at once, but
    /// no function yet: put what its cold start reads (secrets) in moto first, then
    /// [`Self::start_functions`].
    pub fn without_function(concurrency: usize) -> Self {
        Self::without_function_on(concurrency, |port, log| {
            spawn(
                "moto_server",
                &["-H", "127.0.0.1", "-p", &port.to_string()],
                log,
                "moto",
            )
        })
    }

    /// As [`Self::without_function`], with moto started by `start_moto(port, log)`: a
    /// moto serving 127.0.0.1:`port`, writing to `log` (e.g. one a test filled first).
    pub fn without_function_on(concurrency: usize, mut start_moto: impl FnMut(u16, &Path) -> Child) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut children = Vec::new();

        let moto_log = dir.path().join("moto.log");
        let (moto, child) = start_answering_moto(&mut start_moto, &moto_log);
        children.push(child);
        let api_port = free_port();

        // The emulator of the Lambda runtime API; we run our prebuilt function ourselves.
        // With `--concurrency N` it hands invocations to up to N polling processes at once.
        let watch_log = dir.path().join("emulator.log");
        let (port, concurrency) = (api_port.to_string(), concurrency.to_string());
        let mut child = spawn(
            "cargo",
            &[
                "lambda",
                "watch",
                "--only-lambda-apis",
                "-A",
                "127.0.0.1",
                "-P",
                &port,
                "--concurrency",
                &concurrency,
            ],
            &watch_log,
            "cargo lambda watch",
        );
        wait_for_port(api_port, "cargo lambda watch", &mut child, &watch_log);
        children.push(child);

        let stack = Self {
            moto,
            api_port,
            invoke: format!("http://127.0.0.1:{api_port}/2015-03-31/functions/_/invocations"),
            env: Vec::new(),
            children,
            functions: 0,
            door: None,
            dynamodb: None,
            dir,
        };
        stack.s3_put_bucket();
        stack
    }

    /// Starts the shipped front door `door` in front of the SQLite RT and puts its
    /// secret ([`DOOR_SECRET`]: the door's header, and the login's RT auth token) in
    /// moto; the functions started after this reach RT through it (unless their `env`
    /// names another `RT_URL`, e.g. a stand-in in front of the door: they still read
    /// the secret). Returns the door.
    pub fn open_door(&mut self, door: Door) -> &super::proxy::Proxy {
        assert!(self.door.is_none(), "one door per stack");
        let extras: &[&str] = match (door.extras, door.thread_extra) {
            (true, true) => &["rest2-lookup", "rest2-thread"],
            (true, false) => &["rest2-lookup"],
            (false, true) => &["rest2-thread"],
            (false, false) => &[],
        };
        let rt = super::rt::Rt::of(door.db);
        let server = super::proxy::Server::Nginx;
        let proxy = super::proxy::Proxy::start_before(&rt.url, server, &["header"], extras, door.tls);
        let mut secret: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&proxy.secret_json()).unwrap();
        if let Some(user) = door.login {
            secret.insert("rt_token".into(), rt.lookup_token(user).into());
        }
        self.create_secret(DOOR_SECRET, &serde_json::Value::Object(secret).to_string());
        self.door.insert(proxy)
    }

    /// The DynamoDB front the functions count storms through, once the table is made.
    pub fn dynamodb_front(&self) -> Option<&super::dynamodb::DynamoFront> {
        self.dynamodb.as_ref()
    }

    /// The front door, if one is up.
    pub fn door(&self) -> Option<&super::proxy::Proxy> {
        self.door.as_ref()
    }

    /// Starts `count` function processes polling the emulator, each with the fixtures'
    /// routes plus `env` (one log file each; [`Self::function_log`] reads them all).
    /// Without an `RT_URL` in `env`, through the README's front door ([`Door`]; the
    /// door opened with [`Self::open_door`], else the default one).
    pub fn start_functions(&mut self, env: &[(&str, &str)], count: usize) {
        let own_rt = env.iter().any(|(k, _)| *k == "RT_URL");
        if !own_rt && self.door.is_none() {
            self.open_door(Door::default());
        }
        let mut vars: Vec<(String, String)> = [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.moto.as_str()),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("MAIL_BUCKET", BUCKET),
            ("MAIL_PREFIX", PREFIX),
            ("ROUTES", ROUTES),
            ("RT_TIMEOUT", "10"),
            // As Lambda sets it for a function whose LoggingConfig is JSON (template.yaml).
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(front) = &self.dynamodb {
            vars.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), front.url.clone()));
        }
        vars.push(("RT_URL".into(), super::rt::url()));
        if let Some(door) = &self.door {
            vars.push(("RT_SECRET_ID".into(), DOOR_SECRET.into()));
            if !own_rt {
                vars.push(("RT_URL".into(), door.url().into()));
                if door.url().starts_with("https:") {
                    vars.push(("RT_CA_FILE".into(), door.ca().into()));
                }
            }
        }
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        // The last setting of a name wins (the test's own over the harness's).
        let mut seen = std::collections::HashSet::new();
        vars.reverse();
        vars.retain(|(k, _)| seen.insert(k.clone()));
        vars.reverse();
        self.env = vars;
        for _ in 0..count {
            let function_log = self.dir.path().join(function_log_name(self.functions));
            // A /tmp of its own, as each Lambda sandbox has: the cold start sweeps leftover
            // spools there, which must not be the live ones of another process (another
            // test's function on this machine, or this stack's other processes).
            let tmp = self.dir.path().join(format!("tmp-{}", self.functions));
            std::fs::create_dir(&tmp).unwrap();
            self.functions += 1;
            let mut command = Command::new(FUNCTION);
            command
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env(
                    "AWS_LAMBDA_RUNTIME_API",
                    format!("http://127.0.0.1:{}/.rt", self.api_port),
                )
                .env("AWS_LAMBDA_FUNCTION_NAME", "_")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
                .env("TMPDIR", &tmp)
                .envs(self.env.iter().map(|(k, v)| (k, v)));
            let file = std::fs::File::create(&function_log).unwrap();
            command
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file);
            self.children.push(command.spawn().expect("rt-mailgate-lambda starts"));
        }
    }

    /// Runs `rt-mailgate-replay` with the function's environment plus `env`.
    pub fn replay(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        self.tool(REPLAY, args, env)
    }

    /// The function's environment, as the template would set it.
    pub fn function_env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Where the emulator takes Lambda's Invoke API (`aws lambda invoke --endpoint-url`,
    /// function name `_`).
    pub fn invoke_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// Runs one of the operator's tools with the function's environment plus `env`.
    pub fn tool(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"))
    }

    /// Creates a Secrets Manager secret holding `json` (as `aws secretsmanager create-secret`).
    pub fn create_secret(&self, name: &str, json: &str) {
        self.secretsmanager("CreateSecret", serde_json::json!({"Name": name, "SecretString": json}));
    }

    /// Puts a new current value into a secret, as a rotation does.
    pub fn put_secret(&self, name: &str, json: &str) {
        self.secretsmanager(
            "PutSecretValue",
            serde_json::json!({"SecretId": name, "SecretString": json}),
        );
    }

    /// Creates the storm counters' DynamoDB table in moto, as the template's
    /// `StormCounterTable` is (key `pk`, on demand); the functions take it as
    /// `STORM_TABLE`, and reach DynamoDB through a front that applies one item's writes
    /// one at a time as DynamoDB does ([`super::dynamodb`]; moto alone can answer two
    /// concurrent adds the same count).
    pub fn create_storm_table(&mut self, name: &str) {
        if self.dynamodb.is_none() {
            self.dynamodb = Some(super::dynamodb::DynamoFront::start(&self.moto, 0.0));
        }
        self.dynamodb(
            "CreateTable",
            serde_json::json!({
                "TableName": name,
                "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            }),
        );
    }

    /// DynamoDB's JSON API over HTTP (moto): the answer.
    pub fn dynamodb(&self, action: &str, body: serde_json::Value) -> serde_json::Value {
        self.json_api("dynamodb", &format!("DynamoDB_20120810.{action}"), "1.0", body)
    }

    /// Secrets Manager's JSON API over HTTP.
    fn secretsmanager(&self, action: &str, body: serde_json::Value) {
        // The answer names the secret and its version, never the value.
        self.json_api("secretsmanager", &format!("secretsmanager.{action}"), "1.1", body);
    }

    /// An AWS JSON API of moto: `POST /` with the action in `X-Amz-Target` and a
    /// request body (never printed) of JSON `version`; the answer, which must be a success.
    fn json_api(&self, service: &str, target: &str, version: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, text) = block_on(async {
            let response = reqwest::Client::new()
                .post(&self.moto)
                .header("X-Amz-Target", target)
                .header("Content-Type", format!("application/x-amz-json-{version}"))
                .header(
                    "Authorization",
                    format!("AWS4-HMAC-SHA256 Credential=test/20261124/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
                )
                .body(body.to_string())
                .send()
                .await
                .unwrap_or_else(|e| panic!("moto answers: {e}: {}", self.moto_log()));
            (response.status(), response.text().await.unwrap())
        });
        assert!(status.is_success(), "{target}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_default()
    }

    /// Every object in the bucket under `prefix`, with its bytes.
    pub fn objects_under(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let (status, listing) = self.s3(
            reqwest::Method::GET,
            &format!("{BUCKET}?list-type=2&max-keys=1000&prefix={}", urlencode(prefix)),
            Vec::new(),
        );
        let listing = String::from_utf8_lossy(&listing).into_owned();
        assert_eq!(status, 200, "list {prefix}: {listing}");
        assert!(
            !listing.contains("<IsTruncated>true"),
            "more than 1000 objects under {prefix}"
        );
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(|key| {
                let (status, bytes) = self.s3(reqwest::Method::GET, &format!("{BUCKET}/{key}"), Vec::new());
                assert_eq!(status, 200, "get {key}");
                (key.to_string(), bytes)
            })
            .collect()
    }

    /// The routes' records: what `delivery-records/` holds apart from the trace's index
    /// entries (`index/`), the notice counters (`notices/`) and a flagged mail's verdicts
    /// (`screening/`).
    pub fn route_records(&self) -> Vec<(String, Vec<u8>)> {
        let mut records = self.objects_under("delivery-records/");
        records.retain(|(key, _)| {
            !["index/", "notices/", "screening/"]
                .iter()
                .any(|dir| key.starts_with(&format!("delivery-records/{dir}")))
        });
        records
    }

    /// Creates an SQS queue in moto; returns its URL.
    pub fn create_queue(&self, name: &str) -> String {
        let body = self.sqs(&[("Action", "CreateQueue"), ("QueueName", name)]);
        let start = body.find("<QueueUrl>").expect("QueueUrl") + "<QueueUrl>".len();
        body[start..body.find("</QueueUrl>").unwrap()].to_string()
    }

    /// Puts a message on a queue.
    pub fn send_to_queue(&self, url: &str, body: &str) {
        self.sqs(&[("Action", "SendMessage"), ("QueueUrl", url), ("MessageBody", body)]);
    }

    /// How many messages a queue holds (visible or not).
    pub fn queue_depth(&self, url: &str) -> usize {
        let body = self.sqs(&[
            ("Action", "GetQueueAttributes"),
            ("QueueUrl", url),
            ("AttributeName.1", "ApproximateNumberOfMessages"),
            ("AttributeName.2", "ApproximateNumberOfMessagesNotVisible"),
        ]);
        body.split("<Value>")
            .skip(1)
            .filter_map(|v| v.split('<').next()?.parse::<usize>().ok())
            .sum()
    }

    fn sqs(&self, form: &[(&str, &str)]) -> String {
        let mut body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect();
        body.push("Version=2012-11-05".into());
        block_on(async {
            let response = reqwest::Client::new()
                .post(&self.moto)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Authorization", "AWS4-HMAC-SHA256 Credential=test/20261124/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0")
                .body(body.join("&"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("moto answers: {e}: {}", self.moto_log()));
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(status.is_success(), "SQS {form:?}: {status} {text}");
            text
        })
    }

    fn s3(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
        block_on(async {
            // moto accepts any SigV4 signature but refuses anonymous reads; a dummy
            // Authorization header is enough for it to treat us as the account.
            let response = reqwest::Client::new()
                .request(method, format!("{}/{path}", self.moto))
                .header("Content-Type", "application/octet-stream")
                .header("Authorization", "AWS4-HMAC-SHA256 Credential=test/20261124/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0")
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("moto answers: {e}: {}", self.moto_log()));
            let status = response.status().as_u16();
            (status, response.bytes().await.unwrap().to_vec())
        })
    }

    fn s3_put_bucket(&self) {
        let (status, body) = self.s3(reqwest::Method::PUT, BUCKET, Vec::new());
        assert_eq!(status, 200, "create bucket: {}", String::from_utf8_lossy(&body));
    }

    /// Stores a raw mail where SES's S3 action would.
    pub fn store_mail(&self, message_id: &str, mail: &[u8]) {
        let (status, body) = self.s3(
            reqwest::Method::PUT,
            &format!("{BUCKET}/{PREFIX}{message_id}"),
            mail.to_vec(),
        );
        assert_eq!(status, 200, "put mail: {}", String::from_utf8_lossy(&body));
        let (status, stored) = self.s3(
            reqwest::Method::GET,
            &format!("{BUCKET}/{PREFIX}{message_id}"),
            Vec::new(),
        );
        assert!(
            status == 200 && stored == mail,
            "moto did not keep the mail ({status}, {} bytes)",
            stored.len()
        );
    }

    /// Puts any object into the bucket (e.g. the routing table under `config/`), as
    /// `aws s3 cp` does.
    pub fn put_object(&self, key: &str, bytes: &[u8]) {
        let (status, body) = self.s3(reqwest::Method::PUT, &format!("{BUCKET}/{key}"), bytes.to_vec());
        assert_eq!(status, 200, "put {key}: {}", String::from_utf8_lossy(&body));
    }

    /// Lets SES (moto) send from `address`, as `CreateEmailIdentity` does.
    pub fn verify_ses_identity(&self, address: &str) {
        let status = block_on(async {
            reqwest::Client::new()
                .post(format!("{}/v2/email/identities", self.moto))
                .header("Authorization", "AWS4-HMAC-SHA256 Credential=test/20261124/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=0")
                .header("Content-Type", "application/json")
                .body(serde_json::json!({ "EmailIdentity": address }).to_string())
                .send()
                .await
                .unwrap_or_else(|e| panic!("moto answers: {e}: {}", self.moto_log()))
                .status()
        });
        assert!(status.is_success(), "CreateEmailIdentity: {status}");
    }

    /// The raw mails SES (moto) was asked to send.
    pub fn sent_mail(&self) -> Vec<String> {
        let data: serde_json::Value = block_on(async {
            let body = reqwest::get(format!("{}/moto-api/data.json", self.moto))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            serde_json::from_slice(&body).unwrap()
        });
        let mut sent = Vec::new();
        collect_raw_messages(&data["ses"], &mut sent);
        sent
    }

    /// Invokes the function through the emulator; `Ok(answer)` or `Err((errorType, errorMessage))`.
    pub fn invoke(&self, event: &serde_json::Value) -> Result<serde_json::Value, (String, String)> {
        let (status, body) = block_on(async {
            let response = self
                .invocation(event, Duration::from_secs(120))
                .await
                .expect("the emulator answers");
            (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
        });
        let value: serde_json::Value =
            serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&body)));
        if status == 200 {
            Ok(value)
        } else {
            Err((
                value["errorType"].as_str().unwrap_or_default().to_string(),
                value["errorMessage"].as_str().unwrap_or_default().to_string(),
            ))
        }
    }

    /// The aws CLI's account in moto: test credentials, the region, moto's endpoint.
    pub fn aws_account(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL", self.moto.clone()),
        ]
    }

    /// The function as a deploy leaves it, in moto's Lambda under `name`: its
    /// configuration holds the function's environment (without Lambda's own `AWS_`
    /// variables), with `changes` on top, which the operator tools and
    /// `scripts/smoke-test` read with the aws CLI. Its code is a placeholder: invocations
    /// go to the emulator.
    pub fn register_function(&self, name: &str, changes: &[(&str, &str)]) {
        let mut variables: serde_json::Map<String, serde_json::Value> = self
            .function_env()
            .iter()
            .filter(|(k, _)| !k.starts_with("AWS_"))
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        for (k, v) in changes {
            variables.insert((*k).into(), (*v).into());
        }
        let zip = self.dir.path().join(format!("{name}.zip"));
        let made = Command::new("python3")
            .args([
                "-c",
                "import sys,zipfile; zipfile.ZipFile(sys.argv[1],'w').writestr('bootstrap','x')",
                zip.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", super::stderr(&made));
        let aws = |args: &[&str]| {
            let out = Command::new("aws")
                .args(args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", std::env::var("HOME").unwrap_or_default())
                .envs(self.aws_account())
                .output()
                .expect("the aws CLI runs (scripts/setup test)");
            assert!(out.status.success(), "aws {args:?}: {}", super::stderr(&out));
        };
        let role = format!("{name}-role");
        aws(&[
            "iam",
            "create-role",
            "--role-name",
            &role,
            "--assume-role-policy-document",
            "{}",
        ]);
        let environment = serde_json::json!({ "Variables": variables }).to_string();
        aws(&[
            "lambda",
            "create-function",
            "--function-name",
            name,
            "--runtime",
            "provided.al2023",
            "--handler",
            "bootstrap",
            "--role",
            &format!("arn:aws:iam::123456789012:role/{role}"),
            "--zip-file",
            &format!("fileb://{}", zip.display()),
            "--environment",
            &environment,
        ]);
    }

    /// A metric without dimensions (what the alarms read) in the function's log: its
    /// value in each invocation that counted any.
    pub fn metric_totals(&self, metric: &str) -> Vec<u64> {
        self.function_log()
            .iter()
            .filter(|l| l["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "RtMailgate")
            .filter(|l| {
                l["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]
                    .as_array()
                    .is_some_and(|d| d.is_empty())
            })
            .filter_map(|l| l[metric].as_u64())
            .filter(|&n| n > 0)
            .collect()
    }

    /// The function's log lines so far (JSON, one per line), of every function process.
    pub fn function_log(&self) -> Vec<serde_json::Value> {
        (0..self.functions)
            .flat_map(|n| {
                std::fs::read_to_string(self.dir.path().join(function_log_name(n)))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// What moto has logged so far (for a failure's message).
    fn moto_log(&self) -> String {
        log_of(&self.dir.path().join("moto.log"))
    }

    /// A log as written, whole: `function.log` (the function's JSON lines and anything
    /// else it printed), `emulator.log` (cargo-lambda's), `moto.log`.
    pub fn log_text(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Sends an invocation and stops waiting for its answer after `wait` (the function
    /// may be killed meanwhile, and its answer never come).
    pub fn invoke_and_walk_away(&self, event: &serde_json::Value, wait: Duration) {
        let _ = block_on(self.invocation(event, wait));
    }

    /// One invocation through the emulator, waited for at most `wait`.
    async fn invocation(&self, event: &serde_json::Value, wait: Duration) -> reqwest::Result<reqwest::Response> {
        reqwest::Client::new()
            .post(&self.invoke)
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(event).unwrap())
            .timeout(wait)
            .send()
            .await
    }

    /// The process id of the newest function process.
    pub fn function_pid(&self) -> u32 {
        self.children.last().unwrap().id()
    }

    /// The function's process, to check it is still alive (or why it died).
    pub fn function_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.children.last_mut().unwrap().try_wait().unwrap()
    }
}

impl Drop for LambdaStack {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The first function's log is `function.log`, as before there could be more.
fn function_log_name(n: usize) -> String {
    match n {
        0 => "function.log".to_string(),
        n => format!("function-{}.log", n + 1),
    }
}

/// moto keeps sent mail under `ses` → ... → `raw_data` (or `body`); walk it.
fn collect_raw_messages(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(raw) = map.get("raw_data").and_then(|v| v.as_str()) {
                out.push(raw.to_string());
                return;
            }
            map.values().for_each(|v| collect_raw_messages(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_raw_messages(v, out)),
        _ => {}
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Starts moto with `start_moto` on a free port and waits until it is moto that answers
/// there (an S3 bucket list). A port is only free when we look: if another server took it
/// before moto could, moto exits saying so and is started again on another one.
fn start_answering_moto(start_moto: &mut impl FnMut(u16, &Path) -> Child, log: &Path) -> (String, Child) {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut child = start_moto(port, log);
        match wait_until(|| lists_buckets(&url), "moto", &mut child, log) {
            Ok(()) => return (url, child),
            Err(exited) if attempt < ATTEMPTS && exited.contains("in use") => continue,
            Err(exited) => panic!("{exited}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Whether `url` answers an S3 ListBuckets as moto does (a port's listener may be another
/// server that took it first).
fn lists_buckets(url: &str) -> bool {
    block_on(async {
        let answer = reqwest::Client::new()
            .get(format!("{url}/"))
            .timeout(Duration::from_secs(5))
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=test/20261124/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
            )
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => response
                .text()
                .await
                .is_ok_and(|text| text.contains("ListAllMyBucketsResult")),
            _ => false,
        }
    })
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// An `events/` fixture as JSON.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// An SES event for `message_id` and `recipients`, built from the new-ticket fixture,
/// received now (as SES stamps it: the trace's index files the mail under that time).
pub fn ses_event(message_id: &str, recipients: &[&str]) -> serde_json::Value {
    let mut event = fixture("ses-new-ticket.json");
    let ses = &mut event["Records"][0]["ses"];
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    ses["mail"]["timestamp"] = now.clone().into();
    ses["receipt"]["timestamp"] = now.into();
    ses["mail"]["messageId"] = message_id.into();
    ses["mail"]["destination"] = recipients.into();
    ses["receipt"]["recipients"] = recipients.into();
    event
}
