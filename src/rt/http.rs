//! RT's mail gateway over HTTP(S): `POST {url}/REST/1.0/NoAuth/mail-gateway` as
//! `multipart/form-data`, the message part streamed from the spool with a known
//! Content-Length, exactly as the Perl client posts it.
//!
//! Like the Perl client (LWP): TLS verified by default (rustls, system roots), or
//! against `--ca-file` only, or not at all; the timeout bounds *inactivity* (no byte
//! moving), not the whole request, so a big mail on a slow link is not cut off; up to
//! 3 redirects (any 3xx, as LWP's `is_redirect`) are followed by posting again to the
//! new location; a failed status is reported with the server's own reason phrase.
//!
//! RT's answer is read with a bound ([`MAX_ANSWER_BYTES`]): RT's own answers are a few
//! lines, so more is a proxy's page or garbage, and a server that never stops sending
//! must not fill the client's memory (nor, with bytes always moving, outlast every
//! timeout). What was read up to the bound is judged by the reply rules as any answer
//! is (a prefix: `ok`, `not ok`, else a temporary failure), and the rest is not read.
//!
//! One deliberate difference: the Perl client appends the gateway path to `--url` as
//! given, so `https://rt.example/` posts to `//REST/1.0/...`. We post to
//! `/REST/1.0/...`: RT answers both alike, but a proxy that exposes only the exact
//! gateway path (as the configs in `deploy/` do) need not know about the double slash.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{stream, Future, StreamExt};
use reqwest::multipart::{Form, Part};
use reqwest::{Body, Client, Url};
use tokio_util::io::ReaderStream;

use secrecy::ExposeSecret;

use super::tls::{self, CaFile};
use super::MailGateway;
use crate::core::credentials::{ClientIdentity, Credentials};
use crate::core::redact::redact_url;
use crate::core::reply::{classify, RtAnswer, TransportFailure};
use crate::core::request::GatewayRequest;
use crate::core::url_policy::{check_redirect, OtherHosts};
use crate::spool::Spool;

/// The path RT serves its mail gateway on, below the base URL.
pub const GATEWAY_PATH: &str = "/REST/1.0/NoAuth/mail-gateway";
/// How many redirects are followed, as in the Perl client.
pub const MAX_REDIRECTS: usize = 3;
/// The Perl client's default `--timeout`, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 180;
const UPLOAD_CHUNK: usize = 64 * 1024;
/// The most of RT's answer that is read. RT answers `ok`, `not ok - reason` or
/// `temporary failure - reason` in a few lines (a few hundred bytes with DevelMode's
/// ticket details); a proxy's error page is a few KiB.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// What ends an answer cut at [`MAX_ANSWER_BYTES`], for whoever reads it in a log.
pub const ANSWER_CUT_NOTE: &str = "\n[rt-mailgate: the answer was cut here, at 65536 bytes; the rest was not read]\n";

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsPolicy {
    /// The system's trusted roots (the default).
    SystemRoots,
    /// Only the certificates in this PEM file (`--ca-file`), as OpenSSL trusts them (a
    /// self-signed or pinned server certificate in it is trusted as it is; see
    /// [`super::tls`]). Read only when an `https://` URL is used, as the Perl client
    /// reads it.
    CaFile(PathBuf),
    /// No chain or hostname check (`--no-verify-ssl`).
    NoVerify,
}

/// Settings for [`HttpGateway`].
#[derive(Clone)]
pub struct HttpGatewayConfig {
    /// RT's base URL (`--url`), e.g. `https://rt.example.com`.
    pub base_url: String,
    /// Inactivity limit; `None` waits for ever.
    pub timeout: Option<Duration>,
    /// Certificate checking.
    pub tls: TlsPolicy,
    /// Sent as `User-Agent`.
    pub user_agent: String,
    /// What goes with every post for the proxy in front of RT (header, basic auth,
    /// client certificate).
    pub credentials: Credentials,
    /// Where redirects may lead besides RT's own host.
    pub other_hosts: OtherHosts,
}

impl std::fmt::Debug for HttpGatewayConfig {
    // By hand: the URL may hold `user:password@` (credentials print redacted anyway).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGatewayConfig")
            .field("base_url", &redact_url(&self.base_url))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .field("user_agent", &self.user_agent)
            .field("credentials", &self.credentials)
            .field("other_hosts", &self.other_hosts)
            .finish()
    }
}

/// The gateway could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GatewayConfigError {
    /// The URL does not parse or is not http(s).
    #[error("RT URL `{url}` is not a valid http:// or https:// URL")]
    BadUrl {
        /// The URL as given, with any `user:password@` replaced by `***@`.
        url: String,
    },
    /// A credential can't be used (e.g. a header value that is not a valid header).
    #[error("RT credentials: {0}")]
    Credentials(String),
    /// The secret's `ca_pem` holds no usable certificate.
    #[error("the secret's ca_pem: {0}")]
    CaPem(String),
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

/// RT's mail gateway over HTTP(S).
#[derive(Debug)]
pub struct HttpGateway {
    /// For `http://` URLs: no certificate store is loaded (it costs milliseconds per mail).
    plain: Client,
    /// For `https://` URLs, built on first use (a redirect may lead from http to https).
    secure: OnceLock<Result<Client, String>>,
    config: HttpGatewayConfig,
    /// Read up front for an `https://` URL; for `http://`, on first use if a redirect
    /// leads to https.
    ca_file: Option<Arc<CaFile>>,
    endpoint: Url,
}

impl HttpGatewayConfig {
    /// Checks the URL and, for an `https://` URL, reads the CA file, without building a
    /// client.
    pub fn validate(&self) -> Result<(), GatewayConfigError> {
        self.checked().map(|_| ())
    }

    /// The CA file is read only for an `https://` URL: the Perl client hands it to
    /// IO::Socket::SSL, which opens it when a TLS connection is made, so a missing or
    /// broken file does not stop a post over plain http.
    ///
    /// A `ca_pem` in the RT's credentials (its secret) is that RT's own trust, and takes
    /// the place of the system roots or the function-wide CA file; it is checked now
    /// whatever the scheme (a secret is read at cold start: a bad one must show there).
    fn checked(&self) -> Result<(Url, Option<Arc<CaFile>>), GatewayConfigError> {
        let endpoint = endpoint_url(&self.base_url)?;
        let ca_file = match (&self.tls, &self.credentials.ca_pem) {
            (TlsPolicy::NoVerify, _) => None,
            (_, Some(pem)) => Some(Arc::new(
                CaFile::from_pem(pem.as_bytes()).map_err(|e| GatewayConfigError::CaPem(e.to_string()))?,
            )),
            (TlsPolicy::CaFile(path), None) if endpoint.scheme() == "https" => Some(read_ca_file(path)?),
            _ => None,
        };
        Ok((endpoint, ca_file))
    }
}

impl HttpGateway {
    /// Checks the configuration and builds the client (no connection is made yet).
    pub fn new(config: &HttpGatewayConfig) -> Result<Self, GatewayConfigError> {
        let (endpoint, ca_file) = config.checked()?;
        let plain = base_builder(config)
            .tls_certs_only(Vec::new())
            .build()
            .map_err(|e| GatewayConfigError::Client(e.to_string()))?;
        let gateway = Self {
            plain,
            secure: OnceLock::new(),
            config: config.clone(),
            ca_file,
            endpoint,
        };
        if gateway.endpoint.scheme() == "https" {
            gateway
                .secure_client()
                .map_err(|e| GatewayConfigError::Client(e.to_string()))?;
        }
        Ok(gateway)
    }

    fn secure_client(&self) -> Result<&Client, &str> {
        let built = self.secure.get_or_init(|| {
            let client_identity = self.config.credentials.client_identity.as_ref();
            // The secret's ca_pem (read by `checked`): trusted as --ca-file's certificates are.
            if let (Some(ca), Some(_)) = (&self.ca_file, &self.config.credentials.ca_pem) {
                let tls = tls::client_config(ca.clone(), client_identity).map_err(|e| format!("TLS setup: {e}"))?;
                return base_builder(&self.config)
                    .tls_backend_preconfigured(tls)
                    .build()
                    .map_err(|e| e.to_string());
            }
            let builder = match &self.config.tls {
                TlsPolicy::NoVerify => base_builder(&self.config)
                    .tls_danger_accept_invalid_certs(true)
                    .tls_danger_accept_invalid_hostnames(true),
                TlsPolicy::CaFile(path) => {
                    let ca_file = match &self.ca_file {
                        Some(ca_file) => ca_file.clone(),
                        None => read_ca_file(path).map_err(|e| e.to_string())?,
                    };
                    let tls = tls::client_config(ca_file, client_identity).map_err(|e| format!("TLS setup: {e}"))?;
                    // Must be the rustls reqwest links (Cargo.toml): otherwise `build` fails
                    // with "Unknown TLS backend". The client certificate is in `tls` already.
                    return base_builder(&self.config)
                        .tls_backend_preconfigured(tls)
                        .build()
                        .map_err(|e| e.to_string());
                }
                TlsPolicy::SystemRoots => base_builder(&self.config),
            };
            let builder = match client_identity {
                None => builder,
                Some(identity) => builder.identity(mtls_identity(identity)?),
            };
            builder.build().map_err(|e| e.to_string())
        });
        built.as_ref().map_err(String::as_str)
    }

    fn client_for(&self, url: &Url) -> Result<&Client, TransportFailure> {
        if url.scheme() == "https" {
            self.secure_client().map_err(|e| TransportFailure::Tls(e.to_string()))
        } else {
            Ok(&self.plain)
        }
    }

    /// The full gateway URL posts go to (it may hold `user:password@`: show it through
    /// [`crate::core::url_policy::redact`]).
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The proxy's header and basic auth on a request (marked sensitive: never logged).
    fn authenticated(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let credentials = &self.config.credentials;
        let mut request = request;
        if let Some(header) = &credentials.header {
            if let Ok(mut value) = reqwest::header::HeaderValue::from_str(header.value.expose_secret()) {
                value.set_sensitive(true);
                request = request.header(header.name.as_str(), value);
            }
        }
        if let Some(basic) = &credentials.basic {
            request = request.basic_auth(&basic.username, Some(basic.password.expose_secret()));
        }
        request
    }

    /// True when a post carries credentials of any kind (so it may not follow a
    /// redirect to another host).
    fn carries_credentials(&self) -> bool {
        self.config.credentials.authenticates_posts()
            || !self.endpoint.username().is_empty()
            || self.endpoint.password().is_some()
    }

    async fn post_to(&self, url: &Url, request: &GatewayRequest, message: &Spool) -> Result<Sent, TransportFailure> {
        let progress = Progress::new();
        let file = message
            .open()
            .await
            .map_err(|e| TransportFailure::Spool(e.to_string()))?;
        let prefix = Bytes::from(request.message_prefix());
        let length = prefix.len() as u64 + message.len();
        let ticker = progress.clone();
        let body = stream::once(async move { Ok(prefix) })
            .chain(ReaderStream::with_capacity(file, UPLOAD_CHUNK))
            .inspect(move |_| ticker.touch());
        let part = Part::stream_with_length(Body::wrap_stream(body), length)
            .mime_str("application/octet-stream")
            .map_err(|e| TransportFailure::Broken(e.to_string()))?;
        let form = request
            .form_fields()
            .into_iter()
            // Bytes, not text: a field that is not UTF-8 goes as given, like Perl's.
            .fold(Form::new(), |form, (name, value)| {
                form.part(name, Part::bytes(value.to_vec()))
            })
            .part("message", part);

        let client = self.client_for(url)?;
        let timeout = self.config.timeout;
        let response = progress
            .guard(
                timeout,
                self.authenticated(client.post(url.clone())).multipart(form).send(),
            )
            .await?;
        let response = response.map_err(|e| transport_failure(&e))?;
        let status = response.status();
        // hyper keeps the server's reason phrase only when it is not the standard one.
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .or_else(|| status.canonical_reason().map(str::to_string))
            .unwrap_or_default();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        loop {
            match progress.guard(timeout, chunks.next()).await? {
                Some(Ok(chunk)) => {
                    progress.touch();
                    let room = MAX_ANSWER_BYTES - body.len();
                    if chunk.len() > room {
                        // Past the bound: keep what fits, read no more (dropping the
                        // stream closes the connection).
                        body.extend_from_slice(&chunk[..room]);
                        body.extend_from_slice(ANSWER_CUT_NOTE.as_bytes());
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(transport_failure(&e)),
                None => break,
            }
        }
        let status_line = format!("{} {reason}", status.as_u16());
        Ok(Sent {
            status: status.as_u16(),
            status_line: status_line.trim_end().to_string(),
            location,
            body,
        })
    }
}

impl MailGateway for HttpGateway {
    async fn post(&self, request: &GatewayRequest, message: &Spool) -> Result<RtAnswer, TransportFailure> {
        let mut url = self.endpoint.clone();
        let mut sent = self.post_to(&url, request, message).await?;
        for _ in 0..MAX_REDIRECTS {
            if !is_redirect(sent.status) {
                break;
            }
            let Some(location) = sent.location.as_deref() else {
                // LWP posts to the missing URL and fails with its own 400.
                return Ok(RtAnswer::HttpError {
                    status: 400,
                    status_line: "400 URL missing".to_string(),
                });
            };
            let next = url
                .join(location)
                .map_err(|e| TransportFailure::Broken(format!("bad redirect to `{}`: {e}", redact_url(location))))?;
            check_redirect(&url, &next, self.carries_credentials(), &self.config.other_hosts)
                .map_err(|refused| TransportFailure::RedirectRefused(refused.to_string()))?;
            url = next;
            sent = self.post_to(&url, request, message).await?;
        }
        Ok(classify(sent.status, &sent.status_line, &sent.body))
    }
}

/// A client certificate for reqwest's own rustls setup (checked first by
/// [`tls::client_identity`], whose errors never quote the PEM).
fn mtls_identity(identity: &ClientIdentity) -> Result<reqwest::Identity, String> {
    tls::client_identity(identity).map_err(|e| format!("client certificate: {e}"))?;
    let mut pem = identity.cert_pem.clone().into_bytes();
    pem.push(b'\n');
    pem.extend_from_slice(identity.key_pem.expose_secret().as_bytes());
    reqwest::Identity::from_pem(&pem).map_err(|_| "client certificate: unusable PEM".to_string())
}

fn base_builder(config: &HttpGatewayConfig) -> reqwest::ClientBuilder {
    Client::builder()
        .user_agent(config.user_agent.clone())
        // Redirects are followed by hand: reqwest would not re-send a streamed body.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

const _: () = assert!(MAX_ANSWER_BYTES == 65536, "ANSWER_CUT_NOTE names the bound");

struct Sent {
    status: u16,
    status_line: String,
    location: Option<String>,
    body: Vec<u8>,
}

/// LWP's `is_redirect`: any 3xx, 300, 304 and 305 included.
fn is_redirect(status: u16) -> bool {
    (300..400).contains(&status)
}

/// `{base}/REST/1.0/NoAuth/mail-gateway`; a trailing `/` on the base is not doubled.
fn endpoint_url(base: &str) -> Result<Url, GatewayConfigError> {
    let bad = || GatewayConfigError::BadUrl { url: redact_url(base) };
    let parsed = Url::parse(base).map_err(|_| bad())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Url::parse(&format!("{}{GATEWAY_PATH}", base.trim_end_matches('/'))).map_err(|_| bad())
}

fn read_ca_file(path: &Path) -> Result<Arc<CaFile>, GatewayConfigError> {
    CaFile::read(path)
        .map(Arc::new)
        .map_err(|e| GatewayConfigError::CaFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Maps a reqwest error, with its whole cause chain, to a transport failure (also used
/// by the REST 2 lookup, [`super::lookup`]).
pub(crate) fn transport_failure(error: &reqwest::Error) -> TransportFailure {
    let mut text = error.to_string();
    // The causes below reqwest's own "error sending request for url (...)", minus
    // hyper's bare labels: what a person needs to know.
    let mut causes: Vec<String> = Vec::new();
    let mut source = std::error::Error::source(error);
    let mut tls = false;
    while let Some(cause) = source {
        let said = cause.to_string();
        text.push_str(": ");
        text.push_str(&said);
        tls |= said.contains("certificate") || cause.is::<std::io::Error>() && said.contains("tls");
        if !said.starts_with("client error (") {
            causes.push(said);
        }
        source = cause.source();
    }
    let tls = tls || text.contains("invalid peer certificate") || text.contains("received corrupt message");
    // As LWP names the place: `host:port`, the port always written.
    let place = error.url().and_then(|url| {
        let host = url.host_str()?;
        Some(format!("{host}:{}", url.port_or_known_default()?))
    });
    let innermost = causes.last().map_or(String::new(), |c| os_error_words(c));
    match place {
        // `HOST:PORT (REASON)`, LWP's words; then our own detail (see lwp_status_line).
        Some(place) if tls => {
            let reason = if text.contains("not valid for name") || text.contains("NotValidForName") {
                "hostname verification failed"
            } else if text.contains("invalid peer certificate") {
                "certificate verify failed"
            } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
                // What OpenSSL says when the other end answers plain HTTP.
                "SSL connect attempt failed: wrong version number"
            } else {
                "SSL connect attempt failed"
            };
            TransportFailure::Tls(format!("{place} ({reason}): {}", causes.join(": ")))
        }
        Some(place) if error.is_connect() => TransportFailure::Connect(format!("{place} ({innermost})")),
        _ if tls => TransportFailure::Tls(text),
        _ if error.is_connect() => TransportFailure::Connect(text),
        _ if error.is_timeout() => TransportFailure::Timeout(text),
        _ => TransportFailure::Broken(text),
    }
}

/// An OS or resolver error as Perl's `$!` and getaddrinfo word it: `Connection refused`,
/// not `tcp connect error: Connection refused (os error 111)`.
fn os_error_words(cause: &str) -> String {
    let words = cause
        .rsplit_once(": ")
        .filter(|(_, last)| !last.is_empty())
        .map_or(cause, |(_, last)| last);
    let words = match words.rfind(" (os error ") {
        Some(at) if words.ends_with(')') => &words[..at],
        _ => words,
    };
    words.trim().to_string()
}

/// The status line LWP gives a request that got no HTTP answer, which the Perl client
/// prints after `HTTP request failed: ` and MTAs quote in their logs and bounces:
/// `500 Can't connect to 127.0.0.1:9 (Connection refused)`, `500 read timeout`,
/// `500 Can't connect to rt.example:443 (certificate verify failed)`,
/// `500 Server closed connection without sending any data back`. Where ours knows more
/// (which certificate check failed), [`TransportFailure`]'s own text says it.
pub fn lwp_status_line(failure: &TransportFailure) -> String {
    match failure {
        TransportFailure::Connect(text) | TransportFailure::Tls(text) => match place_and_reason(text) {
            Some(words) => format!("500 Can't connect to {words}"),
            None => format!("500 {failure}"),
        },
        TransportFailure::Timeout(_) => "500 read timeout".to_string(),
        // The server closed the connection: seen on the answer, or (a race with the
        // upload) as a broken pipe while the mail was still going out.
        TransportFailure::Broken(text)
            if text.contains("connection closed before message completed") || text.contains("Broken pipe") =>
        {
            "500 Server closed connection without sending any data back".to_string()
        }
        TransportFailure::Broken(text) if text.contains("Connection reset by peer") => {
            "500 Status read failed: Connection reset by peer".to_string()
        }
        _ => format!("500 {failure}"),
    }
}

/// `HOST:PORT (REASON)` at the start of a failure's text, as [`transport_failure`]
/// writes it (followed by nothing or by `: DETAIL`).
fn place_and_reason(text: &str) -> Option<&str> {
    let (place, rest) = text.split_once(" (")?;
    if place.is_empty() || place.contains(char::is_whitespace) || !place.contains(':') {
        return None;
    }
    let close = rest.find(')')?;
    let after = &rest[close + 1..];
    (after.is_empty() || after.starts_with(": ")).then(|| &text[..place.len() + 2 + close + 1])
}

/// The client [`HttpGateway`] uses for `config.base_url`'s scheme (TLS policy, CA file,
/// client certificate, user agent; no redirects, no proxy), for other requests to the
/// same RT: the REST 2 lookup ([`super::lookup`]), which sets its own time limits.
pub(crate) fn client_for_base_url(config: &HttpGatewayConfig) -> Result<Client, GatewayConfigError> {
    let gateway = HttpGateway::new(config)?;
    let client = gateway
        .client_for(&gateway.endpoint)
        .map_err(|e| GatewayConfigError::Client(e.to_string()))?;
    Ok(client.clone())
}

/// When a byte last moved; the inactivity timeout is measured from it.
#[derive(Clone)]
struct Progress {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        self.start
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Runs `work` until it ends or nothing has moved for `timeout`.
    async fn guard<T>(&self, timeout: Option<Duration>, work: impl Future<Output = T>) -> Result<T, TransportFailure> {
        let Some(limit) = timeout else { return Ok(work.await) };
        self.touch();
        tokio::pin!(work);
        loop {
            let wait = limit.saturating_sub(self.idle());
            if wait.is_zero() {
                return Err(TransportFailure::Timeout(format!(
                    "no data moved for {} s",
                    limit.as_secs_f64()
                )));
            }
            tokio::select! {
                done = &mut work => return Ok(done),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_read_as_lwps_status_lines() {
        let cases = [
            (
                TransportFailure::Connect("127.0.0.1:9 (Connection refused)".into()),
                "500 Can't connect to 127.0.0.1:9 (Connection refused)",
            ),
            (
                TransportFailure::Connect("nonexistent.invalid:80 (Name or service not known)".into()),
                "500 Can't connect to nonexistent.invalid:80 (Name or service not known)",
            ),
            (
                TransportFailure::Tls(
                    "[::1]:8443 (certificate verify failed): invalid peer certificate: UnknownIssuer".into(),
                ),
                "500 Can't connect to [::1]:8443 (certificate verify failed)",
            ),
            (
                TransportFailure::Timeout("no data moved for 1 s".into()),
                "500 read timeout",
            ),
            (
                TransportFailure::Broken(
                    "client error (SendRequest): connection closed before message completed".into(),
                ),
                "500 Server closed connection without sending any data back",
            ),
            (
                TransportFailure::Broken(
                    "client error (SendRequest): error writing a body to connection: Broken pipe (os error 32)".into(),
                ),
                "500 Server closed connection without sending any data back",
            ),
            (
                TransportFailure::Broken("connection error: Connection reset by peer (os error 104)".into()),
                "500 Status read failed: Connection reset by peer",
            ),
            // Not in the place-and-reason form: said as it is, still a 500 line.
            (
                TransportFailure::Tls("TLS setup: no usable certificate (in a.pem)".into()),
                "500 TLS failure: TLS setup: no usable certificate (in a.pem)",
            ),
            (
                TransportFailure::RedirectRefused("refused a redirect from https to http (http://x/)".into()),
                "500 refused a redirect from https to http (http://x/)",
            ),
        ];
        for (failure, line) in cases {
            assert_eq!(lwp_status_line(&failure), line, "{failure:?}");
        }
        assert_eq!(
            os_error_words("tcp connect error: Connection refused (os error 111)"),
            "Connection refused"
        );
        assert_eq!(
            os_error_words("failed to lookup address information: Name or service not known"),
            "Name or service not known"
        );
    }

    #[test]
    fn endpoint_is_appended_once() {
        for base in ["http://rt.example", "http://rt.example/", "http://rt.example//"] {
            assert_eq!(
                endpoint_url(base).unwrap().as_str(),
                "http://rt.example/REST/1.0/NoAuth/mail-gateway"
            );
        }
        assert_eq!(
            endpoint_url("https://h/rt").unwrap().as_str(),
            "https://h/rt/REST/1.0/NoAuth/mail-gateway"
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for base in ["", "rt.example", "ftp://rt.example", "http://"] {
            assert!(
                matches!(endpoint_url(base), Err(GatewayConfigError::BadUrl { .. })),
                "{base}"
            );
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_a_config_error() {
        let config = |path: &str| HttpGatewayConfig {
            base_url: "https://rt.example".into(),
            timeout: None,
            tls: TlsPolicy::CaFile(path.into()),
            user_agent: "t".into(),
            credentials: Credentials::default(),
            other_hosts: OtherHosts::Any,
        };
        let err = HttpGateway::new(&config("/nonexistent/ca.pem")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let empty = tempfile::NamedTempFile::new().unwrap();
        let err = HttpGateway::new(&config(empty.path().to_str().unwrap())).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn a_ca_file_is_read_only_when_https_is_used() {
        let config = HttpGatewayConfig {
            base_url: "http://rt.example".into(),
            timeout: None,
            tls: TlsPolicy::CaFile("/nonexistent/ca.pem".into()),
            user_agent: "t".into(),
            credentials: Credentials::default(),
            other_hosts: OtherHosts::Any,
        };
        config.validate().unwrap();
        let gateway = HttpGateway::new(&config).unwrap();
        assert!(gateway.client_for(&Url::parse("http://rt.example/").unwrap()).is_ok());
        // A redirect to https: now the file is needed, and its problem is a TLS failure.
        match gateway.client_for(&Url::parse("https://rt.example/").unwrap()) {
            Err(TransportFailure::Tls(text)) => assert!(text.contains("/nonexistent/ca.pem"), "{text}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
}
