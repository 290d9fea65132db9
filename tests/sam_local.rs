//! `sam local` runs the function as shipped: the template (with `Architecture=x86_64`),
//! the bootstrap `sam build` made (scripts/sam-local-build), the `events/` fixtures as
//! they are and `events/env.json` as the only settings, in a Docker container, against
//! moto as S3 and the real RT.
//!
//! The container sits on Docker's default bridge (SAM ignores `--docker-network host`),
//! so what it reaches listens on the bridge's gateway, where `events/env.json` points:
//! moto at 172.17.0.1:4566, and RT at 172.17.0.1:9080 (a relay in this test to the test
//! RT on loopback). Nothing is pulled: the base image is our own (scripts/sam-local-image,
//! `--invoke-image ... --skip-pull-image`). `sam local invoke` exits 0 even when the
//! function fails, so each case is judged by the answer (its `errorType`) and by RT's
//! tickets. Each invocation starts a container: about 7 s.
//!
//! Needs: a Docker engine (scripts/docker-engine start), the base image and the build
//! (scripts/sam-local-build), the SAM CLI, moto, and the test RT (`RT_TEST_URL`). Each
//! missing piece fails the test, naming it.

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use support::lambda::wait_for;
use support::rt;

#[test]
fn sam_local_invoke_turns_the_new_ticket_fixture_into_a_ticket() {
    let stack = SamStack::start();
    let subject = "Printer on floor 3 is on fire";
    let before = tickets_titled(subject);

    let answer = stack.invoke("events/ses-new-ticket.json");

    assert_eq!(
        answer,
        json!({"delivered": 1, "rejected": 0, "unrouted": 0, "already_delivered": 0, "given_up": 0})
    );
    let new = new_tickets(&before, subject);
    assert_eq!(new.len(), 1, "one new ticket: {new:?}");
    assert_eq!(new[0].queue, "bugs");
    // What RT stored is the fixture's mail, turned to LF as a local MTA would.
    let history = rt::history(new[0].id);
    assert!(
        history.contains("This is the mail for the fixture ses-new-ticket.json."),
        "{history}"
    );
    assert!(!history.contains('\r'));
}

#[test]
fn sam_local_invoke_answers_failures_with_their_error_type() {
    let stack = SamStack::start();

    // No stored mail: the invocation fails (Lambda retries it), naming the cause.
    let missing = stack.invoke("events/ses-missing-object.json");
    assert_eq!(missing["errorType"], "MailNotReadable", "{missing}");
    assert!(
        missing["errorMessage"].as_str().unwrap().contains("demo-missing-0001"),
        "{missing}"
    );

    // An event that is no SES event at all.
    let malformed = stack.invoke_json(&json!({"hello": "world"}));
    assert_eq!(malformed["errorType"], "MalformedEvent", "{malformed}");

    // SES found a virus: given up (VirusPolicy drop), never posted to RT.
    let before = tickets_titled("invoice");
    let virus = stack.invoke("events/ses-virus.json");
    assert_eq!(
        virus,
        json!({"delivered": 0, "rejected": 0, "unrouted": 0, "already_delivered": 0, "given_up": 1})
    );
    assert_eq!(new_tickets(&before, "invoice"), []);
}

#[test]
fn sam_local_start_lambda_serves_the_lambda_invoke_api() {
    let stack = SamStack::start();
    let endpoint = stack.start_lambda();
    let subject = "Two desks, one mail";
    let before = tickets_titled(subject);

    // What `aws lambda invoke --endpoint-url http://127.0.0.1:PORT` (or boto3) sends.
    let (error, answer) = endpoint.invoke(&fixture("events/ses-multi-recipient.json"));
    assert_eq!(error, None);
    assert_eq!(
        answer,
        json!({"delivered": 2, "rejected": 0, "unrouted": 1, "already_delivered": 0, "given_up": 0})
    );
    let mut queues: Vec<String> = new_tickets(&before, subject).into_iter().map(|t| t.queue).collect();
    queues.sort();
    assert_eq!(queues, ["bugs", "support"]);

    // A synchronous (RequestResponse) rule gets SES's disposition back.
    let (error, answer) = endpoint.invoke(&fixture("events/ses-request-response.json"));
    assert_eq!(error, None);
    assert_eq!(answer, json!({"disposition": "CONTINUE"}));

    // A failure is an HTTP 200 with X-Amz-Function-Error, as from Lambda itself.
    let (error, answer) = endpoint.invoke(&json!({"Records": "not a list"}));
    assert_eq!(error.as_deref(), Some("Unhandled"));
    assert_eq!(answer["errorType"], "MalformedEvent", "{answer}");
}

// ---- the stack: moto and an RT relay on the bridge, SAM on the built template ----

/// One stack at a time: moto and the relay listen on the fixed addresses of env.json.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
/// SAM keeps its image layer over the base across base rebuilds unless told.
static IMAGE_REBUILT: AtomicBool = AtomicBool::new(false);
/// Bound on one `sam local invoke` (container start, cold start, RT): normally ~7 s.
const SAM_INVOKE_LIMIT: Duration = Duration::from_secs(180);
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The `Architecture` parameter for this machine (a container runs only its own).
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86_64",
        "aarch64" => "arm64",
        other => panic!("no Lambda architecture runs on {other}"),
    }
}

struct SamStack {
    _serial: MutexGuard<'static, ()>,
    docker_host: String,
    image: String,
    template: PathBuf,
    moto: Child,
    moto_url: String,
    _relay: Relay,
    dir: tempfile::TempDir,
}

impl SamStack {
    fn start() -> Self {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let env_file: Value = serde_json::from_slice(&std::fs::read(Path::new(ROOT).join("events/env.json")).unwrap())
            .expect("events/env.json is JSON");
        let env = &env_file["MailgateFunction"];
        let var = |name: &str| {
            env[name]
                .as_str()
                .unwrap_or_else(|| panic!("events/env.json sets no {name}"))
                .to_string()
        };

        let docker_host = docker_host();
        let image = std::env::var("SAM_LOCAL_IMAGE").unwrap_or_else(|_| "rt-mailgate-sam-base:latest".into());
        let inspect = docker(&docker_host, &["image", "inspect", "--format", "{{.Id}}", &image]);
        assert!(
            inspect.status.success(),
            "the base image {image} is missing: run scripts/sam-local-image (or scripts/sam-local-build)"
        );
        let template = built_template();
        assert!(
            Command::new("sam")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "the SAM CLI is missing: scripts/setup test (pip install aws-sam-cli)"
        );

        // moto where env.json's AWS_ENDPOINT_URL says, with the bucket env.json names.
        let moto_url = var("AWS_ENDPOINT_URL");
        let moto_addr = socket_addr(&moto_url);
        let dir = tempfile::tempdir().unwrap();
        let moto_log = dir.path().join("moto.log");
        let mut moto = Command::new("moto_server")
            .args(["-H", &moto_addr.ip().to_string(), "-p", &moto_addr.port().to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&moto_log).unwrap())
            .stderr(std::fs::File::create(&moto_log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("moto_server can't start: {e}. pip install 'moto[server]'"));
        wait_for(moto_addr, "moto", &mut moto, &moto_log);

        // RT where env.json's RT_URL says: a relay on the bridge to the test RT on loopback.
        let rt_target = socket_addr(&rt::url());
        let relay = Relay::start(socket_addr(&var("RT_URL")), rt_target);

        let stack = Self {
            _serial: serial,
            docker_host,
            image,
            template,
            moto,
            moto_url,
            _relay: relay,
            dir,
        };
        stack.s3_put(&var("MAIL_BUCKET"), Vec::new());
        // Every fixture's mail where SES's S3 action would have stored it.
        let prefix = var("MAIL_PREFIX");
        for entry in std::fs::read_dir(Path::new(ROOT).join("events/mail")).unwrap() {
            let path = entry.unwrap().path();
            let id = path.file_stem().unwrap().to_string_lossy().into_owned();
            stack.s3_put(
                &format!("{}/{prefix}{id}", var("MAIL_BUCKET")),
                std::fs::read(&path).unwrap(),
            );
        }
        stack
    }

    /// The arguments `sam local invoke` and `start-lambda` share.
    fn sam(&self, subcommand: &str) -> Command {
        let mut sam = Command::new("sam");
        sam.args(["local", subcommand])
            .arg("--template")
            .arg(&self.template)
            .args(["--env-vars", "events/env.json"])
            .args(["--parameter-overrides", &format!("Architecture={}", architecture())])
            .args([
                "--invoke-image",
                &self.image,
                "--skip-pull-image",
                "--region",
                "us-east-1",
            ])
            .current_dir(ROOT)
            .env("DOCKER_HOST", &self.docker_host)
            .env("SAM_CLI_TELEMETRY", "0")
            // moto takes any key; none of this machine's profiles leak into the container.
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", self.dir.path().join("no-credentials"))
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null());
        if !IMAGE_REBUILT.swap(true, Ordering::SeqCst) {
            sam.arg("--force-image-build");
        }
        sam
    }

    /// `sam local invoke MailgateFunction -e EVENT`: the function's answer.
    fn invoke(&self, event_file: &str) -> Value {
        let mut sam = self.sam("invoke");
        sam.args(["--event", event_file, "MailgateFunction"]);
        let output = run_bounded(sam, SAM_INVOKE_LIMIT, "sam local invoke");
        // The answer is stdout's last line; the function's log and SAM's go to stderr.
        let stdout = String::from_utf8_lossy(&output.stdout);
        let last = stdout.trim().lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|_| {
            panic!(
                "sam local invoke {event_file} gave no answer (exit {:?}): {stdout}\n{}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    /// `sam local invoke` with an event that is not a file in events/.
    fn invoke_json(&self, event: &Value) -> Value {
        let path = self.dir.path().join(format!("event-{}.json", support::unique("e")));
        std::fs::write(&path, event.to_string()).unwrap();
        self.invoke(path.to_str().unwrap())
    }

    /// `sam local start-lambda` on a free loopback port, answering once ready.
    fn start_lambda(&self) -> StartLambda {
        let port = support::free_port();
        let log = self.dir.path().join("start-lambda.log");
        let mut sam = self.sam("start-lambda");
        sam.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0);
        let mut child = sam.spawn().expect("sam starts");
        wait_for(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "sam local start-lambda",
            &mut child,
            &log,
        );
        StartLambda {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// PUT to moto's S3 (path-style), as SES's S3 action would.
    fn s3_put(&self, path: &str, body: Vec<u8>) {
        let (status, text) = block_on(async {
            let response = reqwest::Client::new()
                .put(format!("{}/{path}", self.moto_url))
                // moto takes any SigV4 signature, but wants one.
                .header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20261124/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0")
                .body(body)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .expect("moto answers");
            (response.status(), response.text().await.unwrap_or_default())
        });
        assert!(status.is_success(), "moto PUT {path}: {status} {text}");
    }
}

impl Drop for SamStack {
    fn drop(&mut self) {
        let _ = self.moto.kill();
        let _ = self.moto.wait();
    }
}

/// A running `sam local start-lambda`, stopped (with its process group) when dropped.
struct StartLambda {
    child: Child,
    url: String,
    log: PathBuf,
}

impl StartLambda {
    /// Lambda's Invoke API: `POST /2015-03-31/functions/NAME/invocations`. Returns the
    /// `X-Amz-Function-Error` header (set when the function failed) and the payload.
    fn invoke(&self, event: &Value) -> (Option<String>, Value) {
        let url = format!("{}/2015-03-31/functions/MailgateFunction/invocations", self.url);
        let (status, error, body) = block_on(async {
            let response = reqwest::Client::new()
                .post(&url)
                .body(event.to_string())
                .timeout(SAM_INVOKE_LIMIT)
                .send()
                .await
                .unwrap_or_else(|e| panic!("sam local start-lambda did not answer: {e}\n{}", self.log_text()));
            let error = response
                .headers()
                .get("x-amz-function-error")
                .map(|v| v.to_str().unwrap().to_string());
            (response.status(), error, response.text().await.unwrap_or_default())
        });
        assert_eq!(status, 200, "{body}\n{}", self.log_text());
        let answer = serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}\n{}", self.log_text()));
        (error, answer)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StartLambda {
    fn drop(&mut self) {
        // Ctrl-C to the group, as at a terminal: SAM removes its containers on the way out.
        let pid = self.child.id() as i32;
        let _ = Command::new("kill").args(["-INT", "--", &format!("-{pid}")]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        let _ = self.child.wait();
    }
}

/// The engine scripts/docker-engine started (or `DOCKER_HOST`), checked to answer.
fn docker_host() -> String {
    let host = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| {
            let out = Command::new(Path::new(ROOT).join("scripts/docker-engine"))
                .arg("host")
                .output()
                .expect("scripts/docker-engine runs");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        });
    let info = docker(&host, &["info", "--format", "{{.ServerVersion}}"]);
    assert!(
        info.status.success(),
        "no Docker engine answers at {host}: run scripts/docker-engine start (scripts/setup test does). {}",
        String::from_utf8_lossy(&info.stderr)
    );
    host
}

fn docker(host: &str, args: &[&str]) -> Output {
    let mut command = Command::new("docker");
    command.args(args).env("DOCKER_HOST", host);
    run_bounded(command, Duration::from_secs(30), "docker")
}

/// The built template (`$SAM_LOCAL_BUILD`, default target/sam-local/build), checked to
/// hold a bootstrap newer than the code.
fn built_template() -> PathBuf {
    let build = std::env::var_os("SAM_LOCAL_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target/sam-local/build"));
    let bootstrap = build.join("MailgateFunction/bootstrap");
    let built = std::fs::metadata(&bootstrap)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}. Run scripts/sam-local-build (scripts/test does)",
                bootstrap.display()
            )
        });
    let newest_source = ["src", "Cargo.toml", "Cargo.lock"]
        .iter()
        .map(|p| newest(&Path::new(ROOT).join(p)))
        .max()
        .unwrap();
    assert!(
        built >= newest_source,
        "{} is older than the code: run scripts/sam-local-build again",
        bootstrap.display()
    );
    build.join("template.yaml")
}

fn newest(path: &Path) -> SystemTime {
    let meta = std::fs::metadata(path).unwrap();
    if meta.is_dir() {
        std::fs::read_dir(path)
            .unwrap()
            .map(|e| newest(&e.unwrap().path()))
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    } else {
        meta.modified().unwrap()
    }
}

/// Runs `command` to its end, killed after `limit`.
fn run_bounded(mut command: Command, limit: Duration, what: &str) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} can't start: {e}"));
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).ok();
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).ok();
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} ran over {limit:?}: {}",
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn socket_addr(url: &str) -> SocketAddr {
    let url = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    (url.host_str().unwrap(), url.port_or_known_default().unwrap())
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

fn fixture(path: &str) -> Value {
    serde_json::from_slice(&std::fs::read(Path::new(ROOT).join(path)).unwrap()).unwrap()
}

fn tickets_titled(subject: &str) -> Vec<rt::Listed> {
    rt::tickets_like(subject)
        .into_iter()
        .filter(|t| t.subject == subject)
        .collect()
}

/// Tickets titled `subject` that were not in `before`.
fn new_tickets(before: &[rt::Listed], subject: &str) -> Vec<rt::Listed> {
    tickets_titled(subject)
        .into_iter()
        .filter(|t| !before.iter().any(|b| b.id == t.id))
        .collect()
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A TCP relay on the bridge address to the test RT on loopback (the container can't
/// reach the host's loopback). Stops accepting when dropped.
struct Relay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(listen: SocketAddr, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen)
            .unwrap_or_else(|e| panic!("can't listen on {listen} (Docker's bridge: is the engine up?): {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        if let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
                            pipe(&client, &upstream);
                            pipe(&upstream, &client);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

/// Copies `from` to `to` until `from` ends (or is silent for 5 minutes), then ends `to`'s writing side.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
    from.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
