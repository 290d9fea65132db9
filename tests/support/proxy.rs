//! The shipped front doors (the nginx site in `deploy/nginx/`, or the Apache one in
//! `deploy/apache/`) in front of the real RT, run by `scripts/rt-proxy` over TLS on a
//! loopback port and in a state folder of its own, so that several tests can each have
//! one. It is stopped and its folder removed when the [`Proxy`] is dropped, also when the
//! test panics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `scripts/rt-proxy` in this checkout.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/rt-proxy")
}

/// Which shipped front door runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// `deploy/nginx/` on Debian's nginx.
    Nginx,
    /// `deploy/apache/` on Debian's Apache (installed by the script when missing and root).
    Apache,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Apache => "apache",
        }
    }
}

/// A running proxy and the `KEY=VALUE` lines it printed (the latest, after a rotation).
pub struct Proxy {
    server: Server,
    vars: HashMap<String, String>,
    state: PathBuf,
    upstream: String,
}

impl Proxy {
    /// Starts nginx with these checks (`header`, `basic`, `mtls`; none: the shipped
    /// default, which refuses everything), always over TLS.
    pub fn start(modes: &[&str]) -> Self {
        Self::start_on(Server::Nginx, modes)
    }

    /// Starts `server` with these checks, always over TLS.
    pub fn start_on(server: Server, modes: &[&str]) -> Self {
        Self::start_with(server, modes, &[], true)
    }

    /// Starts `server` with these checks and these extras of `deploy/nginx/extras/`
    /// (nginx only; e.g. `rest2-lookup`), over TLS or (`tls` false, nginx without mtls)
    /// plain http, for a stand-in in front of it that passes requests on.
    pub fn start_with(server: Server, modes: &[&str], extras: &[&str], tls: bool) -> Self {
        Self::start_before(&super::rt::url(), server, modes, extras, tls)
    }

    /// As [`Self::start_with`], in front of the RT (or stand-in) at `upstream`
    /// (`http://HOST:PORT`).
    pub fn start_before(upstream: &str, server: Server, modes: &[&str], extras: &[&str], tls: bool) -> Self {
        let port = super::free_port();
        // Directly under /tmp: the script hands the folder to `nobody` when run as root,
        // who could not reach it inside a private temporary directory.
        let state = std::env::temp_dir().join(super::unique("rt-mailgate-proxytest"));
        let mut proxy = Self {
            server,
            vars: HashMap::new(),
            state,
            upstream: upstream.to_string(),
        };
        let mut args = vec!["start"];
        args.extend_from_slice(modes);
        let (port, extras) = (port.to_string(), extras.join(" "));
        let tls = if tls { "true" } else { "false" };
        proxy.vars = proxy.run(
            &args,
            &[
                ("RT_PROXY_PORT", &port),
                ("RT_PROXY_EXTRAS", &extras),
                ("RT_PROXY_TLS", tls),
            ],
        );
        proxy
    }

    /// New header token and basic password in place of the old, the server reloaded
    /// (same port and certificates).
    pub fn rotate(&mut self) {
        self.vars = self.run(&["rotate"], &[]);
    }

    /// A rotation's first half: a new credential beside the old for every check in force
    /// (the second token slot, a second htpasswd user, a second client CA), the server
    /// reloaded. [`Self::secret_json`] is then the new one, [`Self::old_secret_json`] the
    /// old one; both pass.
    pub fn rotate_begin(&mut self) {
        self.vars = self.run(&["rotate", "begin"], &[]);
    }

    /// A rotation's second half: the old credential removed, the server reloaded.
    pub fn rotate_end(&mut self) {
        self.vars = self.run(&["rotate", "end"], &[]);
    }

    /// Which server this is.
    pub fn server(&self) -> Server {
        self.server
    }

    /// Runs the script on this proxy's state folder; returns the lines it printed.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> HashMap<String, String> {
        let mut child = Command::new(script())
            .args(args)
            .env("RT_PROXY_TLS", "true")
            .env("RT_PROXY_SERVER", self.server.name())
            .env("RT_PROXY_STATE", &self.state)
            .env("RT_TEST_URL", &self.upstream)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("scripts/rt-proxy runs");
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "scripts/rt-proxy {args:?} failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// One of the printed values (panics naming a missing one).
    pub fn var(&self, key: &str) -> &str {
        self.vars
            .get(key)
            .unwrap_or_else(|| panic!("scripts/rt-proxy printed no {key}: {:?}", self.vars))
    }

    /// The base URL to give a client (`https://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        self.var("RT_PROXY_URL")
    }

    /// The CA file that verifies the proxy's certificate.
    pub fn ca(&self) -> &str {
        self.var("RT_PROXY_CA")
    }

    /// The file holding the secret JSON that passes the proxy's checks.
    pub fn secret_file(&self) -> &str {
        self.var("RT_PROXY_SECRET_JSON")
    }

    /// The secret JSON that passes the proxy's checks (as Secrets Manager would hold it).
    pub fn secret_json(&self) -> String {
        std::fs::read_to_string(self.secret_file()).unwrap()
    }

    /// During a rotation, the secret JSON from before it (still accepted).
    pub fn old_secret_json(&self) -> String {
        std::fs::read_to_string(self.var("RT_PROXY_OLD_SECRET_JSON")).unwrap()
    }

    /// The request lines the door has logged so far (`POST /REST/1.0/NoAuth/mail-gateway
    /// HTTP/1.1`, `GET /REST/2.0/queues?query=... HTTP/1.1`), each with its status
    /// (`... 200`), oldest first.
    pub fn requests(&self) -> Vec<String> {
        let log = self.state.join("log/rt-mailgate.access.log");
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (_, rest) = line.split_once(" \"")?;
                let (request, after) = rest.split_once("\" ")?;
                let status = after.split_whitespace().next()?;
                Some(format!("{request} {status}"))
            })
            .collect()
    }

    /// The mail-gateway posts the door passed on so far.
    pub fn posts(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.starts_with("POST /REST/1.0/NoAuth/mail-gateway "))
            .count()
    }

    /// What the door answers a bare `POST /REST/1.0/NoAuth/mail-gateway` without any
    /// credential (asked with curl): the status code and the body.
    pub fn bare_post(&self) -> (u16, String) {
        self.ask(
            &["-X", "POST", "--data", "queue=General&action=correspond&message=x"],
            "/REST/1.0/NoAuth/mail-gateway",
        )
    }

    /// What the door answers a bare `GET path` (asked with curl): status code and body.
    pub fn bare_get(&self, path: &str) -> (u16, String) {
        self.ask(&[], path)
    }

    fn ask(&self, args: &[&str], path: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert", self.ca(), "-w", "\n%{http_code}"])
            .args(args)
            .arg(format!("{}{path}", self.url()))
            .stdin(Stdio::null())
            .output()
            .expect("curl runs (apt-get install curl)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or_default();
        let status = status.parse().unwrap_or_else(|_| {
            panic!(
                "curl got no HTTP answer: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (status, body.to_string())
    }

    /// A secret JSON with the same keys, each holding a value the proxy refuses: another
    /// token, another password, a client certificate from a CA it does not trust.
    pub fn wrong_secret_json(&self) -> String {
        let mut secret = serde_json::Map::new();
        if self.vars.contains_key("RT_PROXY_HEADER") {
            secret.insert("header".into(), "X-Mailgate-Token: wrong-token-0123456789abcdef".into());
        }
        if self.vars.contains_key("RT_PROXY_PASSWORD") {
            secret.insert("username".into(), self.var("RT_PROXY_USERNAME").into());
            secret.insert("password".into(), "wrong-password-0123456789".into());
        }
        if self.vars.contains_key("RT_PROXY_WRONG_CLIENT_CERT") {
            let read = |key: &str| std::fs::read_to_string(self.var(key)).unwrap();
            secret.insert("client_cert".into(), read("RT_PROXY_WRONG_CLIENT_CERT").into());
            secret.insert("client_key".into(), read("RT_PROXY_WRONG_CLIENT_KEY").into());
        }
        serde_json::Value::Object(secret).to_string()
    }

    /// Every secret value the proxy accepts now: the header's value, the password, and
    /// each line of the client key's PEM body (a leak may re-wrap it; each line is a
    /// 64-character run of the key).
    pub fn secret_values(&self) -> Vec<String> {
        let mut values = Vec::new();
        if let Some(header) = self.vars.get("RT_PROXY_HEADER") {
            values.push(header.split_once(": ").unwrap().1.to_string());
        }
        if let Some(password) = self.vars.get("RT_PROXY_PASSWORD") {
            values.push(password.clone());
        }
        if let Some(key) = self.vars.get("RT_PROXY_CLIENT_KEY") {
            values.extend(pem_body_lines(&std::fs::read_to_string(key).unwrap()));
        }
        values
    }
}

/// The base64 lines of a PEM document (no `-----BEGIN/END` lines; none so short that it
/// could turn up by chance).
pub fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .map(str::trim)
        .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Never panic here: this may run while a failed test unwinds.
        let _ = Command::new(script())
            .arg("stop")
            .env("RT_PROXY_STATE", &self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
