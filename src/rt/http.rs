//! RT's mail gateway over HTTP(S): `POST {url}/REST/1.0/NoAuth/mail-gateway` as
//! `multipart/form-data`, the message part streamed from the spool with a known
//! Content-Length, exactly as the Perl client posts it.
//!
//! Like the Perl client (LWP): TLS verified by default (rustls, system roots), or
//! against `--ca-file` only, or not at all; the timeout bounds *inactivity* (no byte
//! moving), not the whole request, so a big mail on a slow link is not cut off; up to
//! 3 redirects are followed by posting again to the new location.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{stream, Future, StreamExt};
use reqwest::multipart::{Form, Part};
use reqwest::{Body, Client, Url};
use tokio_util::io::ReaderStream;

use super::tls::{self, CaFile};
use super::MailGateway;
use crate::core::reply::{classify, RtAnswer, TransportFailure};
use crate::core::request::GatewayRequest;
use crate::spool::Spool;

/// The path RT serves its mail gateway on, below the base URL.
pub const GATEWAY_PATH: &str = "/REST/1.0/NoAuth/mail-gateway";
/// How many redirects are followed, as in the Perl client.
pub const MAX_REDIRECTS: usize = 3;
/// The Perl client's default `--timeout`, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 180;
const UPLOAD_CHUNK: usize = 64 * 1024;

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
#[derive(Debug, Clone)]
pub struct HttpGatewayConfig {
    /// RT's base URL (`--url`), e.g. `https://rt.example.com`.
    pub base_url: String,
    /// Inactivity limit; `None` waits for ever.
    pub timeout: Option<Duration>,
    /// Certificate checking.
    pub tls: TlsPolicy,
    /// Sent as `User-Agent`.
    pub user_agent: String,
}

/// The gateway could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GatewayConfigError {
    /// The URL does not parse or is not http(s).
    #[error("RT URL `{url}` is not a valid http:// or https:// URL")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
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
    fn checked(&self) -> Result<(Url, Option<Arc<CaFile>>), GatewayConfigError> {
        let endpoint = endpoint_url(&self.base_url)?;
        let ca_file = match &self.tls {
            TlsPolicy::CaFile(path) if endpoint.scheme() == "https" => Some(read_ca_file(path)?),
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
            let builder = match &self.config.tls {
                TlsPolicy::NoVerify => base_builder(&self.config)
                    .tls_danger_accept_invalid_certs(true)
                    .tls_danger_accept_invalid_hostnames(true),
                TlsPolicy::CaFile(path) => {
                    let ca_file = match &self.ca_file {
                        Some(ca_file) => ca_file.clone(),
                        None => read_ca_file(path).map_err(|e| e.to_string())?,
                    };
                    let tls = tls::client_config(ca_file).map_err(|e| format!("TLS setup: {e}"))?;
                    // Must be the rustls reqwest links (Cargo.toml): otherwise `build` fails
                    // with "Unknown TLS backend".
                    base_builder(&self.config).tls_backend_preconfigured(tls)
                }
                TlsPolicy::SystemRoots => base_builder(&self.config),
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

    /// The full gateway URL posts go to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
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
            .fold(Form::new(), |form, (name, value)| form.text(name, value.to_string()))
            .part("message", part);

        let client = self.client_for(url)?;
        let timeout = self.config.timeout;
        let response = progress
            .guard(timeout, client.post(url.clone()).multipart(form).send())
            .await?;
        let response = response.map_err(|e| transport_failure(&e))?;
        let status = response.status();
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
                    body.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(transport_failure(&e)),
                None => break,
            }
        }
        let status_line = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
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
            let (true, Some(location)) = (is_redirect(sent.status), sent.location.as_deref()) else {
                break;
            };
            url = url
                .join(location)
                .map_err(|e| TransportFailure::Broken(format!("bad redirect to `{location}`: {e}")))?;
            sent = self.post_to(&url, request, message).await?;
        }
        Ok(classify(sent.status, &sent.status_line, &sent.body))
    }
}

fn base_builder(config: &HttpGatewayConfig) -> reqwest::ClientBuilder {
    Client::builder()
        .user_agent(config.user_agent.clone())
        // Redirects are followed by hand: reqwest would not re-send a streamed body.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

struct Sent {
    status: u16,
    status_line: String,
    location: Option<String>,
    body: Vec<u8>,
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// `{base}/REST/1.0/NoAuth/mail-gateway`; a trailing `/` on the base is not doubled.
fn endpoint_url(base: &str) -> Result<Url, GatewayConfigError> {
    let bad = || GatewayConfigError::BadUrl { url: base.to_string() };
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

/// Maps a reqwest error, with its whole cause chain, to a transport failure.
fn transport_failure(error: &reqwest::Error) -> TransportFailure {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    let mut tls = false;
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        tls |= cause.to_string().contains("certificate")
            || cause.is::<std::io::Error>() && cause.to_string().contains("tls");
        source = cause.source();
    }
    if tls || text.contains("invalid peer certificate") {
        TransportFailure::Tls(text)
    } else if error.is_connect() {
        TransportFailure::Connect(text)
    } else if error.is_timeout() {
        TransportFailure::Timeout(text)
    } else {
        TransportFailure::Broken(text)
    }
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
