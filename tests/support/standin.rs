//! A stand-in for RT on loopback that records every request and answers as told:
//! a normal reply, a redirect, raw bytes, or a fault a real RT can't be made to produce
//! (connection closed unread, reset, stall, an answer trickling in, garbage). As a
//! proxy in front of the real RT it passes a request on, or lets RT take the mail and
//! then breaks the connection to the client (reset, 502, stall): the answer is lost
//! after RT committed; or it breaks it as soon as RT has the whole request, while RT is
//! still storing the mail. Form fields are compared as raw bytes. It stops when dropped,
//! and after two minutes at the latest (or the lifetime given to [`StandIn::start_with`]).
//! [`refused_url`] gives a loopback address where nothing listens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the stand-in does with the n-th request (0-based).
#[derive(Debug, Clone)]
pub enum Answer {
    /// An HTTP answer.
    Http {
        status: u16,
        body: String,
        location: Option<String>,
    },
    /// Read the request, then reset the connection.
    Reset,
    /// Close the connection as soon as it is accepted, reading nothing (a dying server).
    Close,
    /// Read the request and never answer.
    Stall,
    /// Read the request, then send `200 OK` and the body one byte every `every`: the
    /// whole answer takes longer than a client's timeout, but bytes keep moving.
    Trickle { body: Vec<u8>, every: Duration },
    /// Read the request, wait, then answer as the inner answer.
    Delayed(Duration, Box<Answer>),
    /// Read the request, then send these bytes as the whole answer and close.
    Raw(Vec<u8>),
    /// Answer bytes that are not HTTP, then close.
    Garbage,
    /// Read the request, then send `200 OK` with this start of a body, and bytes after
    /// it without end, fast, until the client hangs up (at most 1 GiB): an answer no
    /// client may read whole.
    Endless(Vec<u8>),
    /// Pass the request on to a real server (`http://host:port`) and relay its answer.
    Forward(String),
    /// Pass the request on to a real server and read its whole answer (the server has
    /// done its work: RT has taken the mail), then fail the client as told instead of
    /// relaying it.
    ForwardThen(String, AfterCommit),
    /// Pass the request on to a real server and fail the client as told as soon as the
    /// server has all of it, while it is still working (RT storing a big mail when a
    /// proxy's idle timeout strikes); the server's answer is read and dropped, counted
    /// in [`StandIn::forwarding`] until then.
    ForwardCut(String, AfterCommit),
    /// Read the request, then answer as this function decides from it and from the
    /// requests being passed on right now (as [`StandIn::in_flight`] lists them), e.g.
    /// a fault for one mail's posts only. Not [`Answer::Close`]: the request is read.
    Decide(Decider),
}

/// The function of [`Answer::Decide`]: the request, the requests being passed on now.
#[derive(Clone)]
pub struct Decider(pub Arc<DecideFn>);

/// What a [`Decider`] calls.
pub type DecideFn = dyn Fn(&Recorded, &[Recorded]) -> Answer + Send + Sync;

impl std::fmt::Debug for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decider(..)")
    }
}

/// How [`Answer::ForwardThen`] (once the server has answered) and [`Answer::ForwardCut`]
/// (once it has the whole request) fail the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCommit {
    /// Reset the client's connection.
    Reset,
    /// Answer this status (a proxy's `502 Bad Gateway`) instead of the server's answer.
    Status(u16),
    /// Send nothing, as a proxy whose upstream answer got stuck: the client's timeout
    /// ends it.
    Stall,
}

impl Answer {
    /// HTTP 200 with `body`.
    pub fn ok_body(body: &str) -> Self {
        Self::Http {
            status: 200,
            body: body.to_string(),
            location: None,
        }
    }

    /// An HTTP status with a short body.
    pub fn status(status: u16) -> Self {
        Self::Http {
            status,
            body: format!("status {status}\n"),
            location: None,
        }
    }

    /// A 302 to `location`, a path on the stand-in itself.
    pub fn redirect(location: &str) -> Self {
        Self::redirect_with(302, location)
    }

    /// A redirect of any status to `location`, a path on the stand-in itself.
    pub fn redirect_with(status: u16, location: &str) -> Self {
        Self::Http {
            status,
            body: String::new(),
            location: Some(location.to_string()),
        }
    }
}

/// `http://127.0.0.1:PORT` where nothing listens: connecting is refused at once.
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST /REST/1.0/NoAuth/mail-gateway`.
    pub request_line: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// True when the body came with `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FormPart {
    /// The field name.
    pub name: String,
    /// The `filename` of its Content-Disposition, if any.
    pub filename: Option<String>,
    /// Its Content-Type, if any.
    pub content_type: Option<String>,
    /// Its bytes.
    pub data: Vec<u8>,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The form parts, sorted by name (the Perl client's order varies between runs).
    pub fn parts(&self) -> Vec<FormPart> {
        let content_type = self.header("content-type").expect("content-type");
        let boundary = multer::parse_boundary(content_type).expect("multipart boundary");
        let body = bytes::Bytes::from(self.body.clone());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut parts = runtime.block_on(async move {
            let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
            let mut multipart = multer::Multipart::new(stream, boundary);
            let mut parts = Vec::new();
            while let Some(field) = multipart.next_field().await.expect("well-formed multipart") {
                let name = field.name().unwrap_or_default().to_string();
                let filename = field.file_name().map(str::to_string);
                let content_type = field.content_type().map(|m| m.to_string());
                let data = field.bytes().await.expect("part bytes").to_vec();
                parts.push(FormPart {
                    name,
                    filename,
                    content_type,
                    data,
                });
            }
            parts
        });
        parts.sort();
        parts
    }

    /// The `message` part's bytes.
    pub fn message(&self) -> Vec<u8> {
        self.parts()
            .into_iter()
            .find(|p| p.name == "message")
            .expect("a message part")
            .data
    }

    /// The `message` part as the Lambda posts it, split into the delivery id it put in
    /// front (the `X-RT-Mailgate-Delivery` line, after any extension header) and the
    /// rest, which must be the mail's own bytes (after other headers put in front).
    pub fn lambda_message(&self) -> (String, Vec<u8>) {
        let message = self.message();
        let marker = b"X-RT-Mailgate-Delivery: ";
        let start = message
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("the Lambda puts its delivery id in front of every post");
        let end = start + message[start..].iter().position(|&b| b == b'\n').expect("a whole line") + 1;
        let id = String::from_utf8_lossy(&message[start + marker.len()..end - 1]).into_owned();
        let mut rest = message[..start].to_vec();
        rest.extend_from_slice(&message[end..]);
        (id, rest)
    }

    /// `(name, value)` of the text fields, sorted; values as raw bytes.
    pub fn fields(&self) -> Vec<(String, Vec<u8>)> {
        self.parts()
            .into_iter()
            .filter(|p| p.name != "message")
            .map(|p| (p.name, p.data))
            .collect()
    }

    /// The text fields as `name=value` strings (values must be UTF-8), for readable asserts.
    pub fn text_fields(&self) -> Vec<String> {
        self.fields()
            .into_iter()
            .map(|(name, value)| format!("{name}={}", String::from_utf8(value).expect("UTF-8 field")))
            .collect()
    }
}

/// How long a stand-in lives and what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// It stops after this long at the latest.
    pub lifetime: Duration,
    /// Whether recorded requests keep their bodies (a long proxy run of big mails
    /// should not hold them all in memory).
    pub keep_bodies: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(120),
            keep_bodies: true,
        }
    }
}

/// A running stand-in.
pub struct StandIn {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    forwarding: Arc<AtomicUsize>,
    in_flight: InFlight,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What every connection's task shares.
#[derive(Clone)]
struct Shared {
    log: Arc<Mutex<Vec<Recorded>>>,
    forwarding: Arc<AtomicUsize>,
    in_flight: InFlight,
    keep_bodies: bool,
    base: String,
}

impl StandIn {
    /// Starts a stand-in that answers every request with `answer`.
    pub fn always(answer: Answer) -> Self {
        Self::start(move |_| answer.clone())
    }

    /// Starts a stand-in whose answer depends on the request's index.
    pub fn start(answer: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        Self::start_with(Settings::default(), answer)
    }

    /// [`Self::start`] with another lifetime, or without keeping bodies.
    pub fn start_with(settings: Settings, answer: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let forwarding = Arc::new(AtomicUsize::new(0));
        let in_flight = InFlight::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = Shared {
            log: recorded.clone(),
            forwarding: forwarding.clone(),
            in_flight: in_flight.clone(),
            keep_bodies: settings.keep_bodies,
            base: url.clone(),
        };
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                let answer = Arc::new(answer);
                let serve = async {
                    let mut index = 0;
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let (answer, shared) = (answer.clone(), shared.clone());
                        let n = index;
                        index += 1;
                        tokio::spawn(async move { handle(stream, answer(n), shared).await });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                    _ = tokio::time::sleep(settings.lifetime) => {}
                }
            });
        });
        Self {
            url,
            recorded,
            forwarding,
            in_flight,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// How many requests are being passed on now, their server's answer not yet read
    /// (work a real RT may still commit).
    pub fn forwarding(&self) -> usize {
        self.forwarding.load(Ordering::SeqCst)
    }

    /// The requests being passed on now, their server's answer not yet read (bodies cut
    /// to their first [`IN_FLIGHT_BODY`] bytes: enough for a mail's headers).
    pub fn in_flight(&self) -> Vec<Recorded> {
        self.in_flight.list()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().unwrap().clone()
    }

    /// The only request received (panics unless there was exactly one).
    pub fn only_request(&self) -> Recorded {
        let all = self.requests();
        assert_eq!(all.len(), 1, "expected one request, got {}", all.len());
        all.into_iter().next().unwrap()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn handle(mut stream: TcpStream, answer: Answer, shared: Shared) {
    if let Answer::Close = answer {
        return; // dropped unread
    }
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let kept = match shared.keep_bodies {
        true => request.clone(),
        false => Recorded {
            body: Vec::new(),
            ..request.clone()
        },
    };
    shared.log.lock().unwrap().push(kept);
    respond(stream, answer, &request, &shared).await;
}

async fn respond(mut stream: TcpStream, answer: Answer, request: &Recorded, shared: &Shared) {
    match answer {
        Answer::Http { status, body, location } => {
            // Absolute, as the Perl client (LWP) needs; ours also takes relative ones.
            let base = &shared.base;
            let location = location.map(|l| format!("Location: {base}{l}\r\n")).unwrap_or_default();
            let head = format!(
                "HTTP/1.1 {status} Stand-in\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{location}Connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Answer::Reset => reset(stream),
        Answer::Stall => tokio::time::sleep(Duration::from_secs(60)).await,
        Answer::Close => {}
        Answer::Trickle { body, every } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            for byte in body {
                tokio::time::sleep(every).await;
                if stream.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
            let _ = stream.shutdown().await;
        }
        Answer::Delayed(wait, inner) => {
            tokio::time::sleep(wait).await;
            Box::pin(respond(stream, *inner, request, shared)).await;
        }
        Answer::Raw(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Answer::Garbage => {
            let _ = stream.write_all(b"\x00\x01garbage, not HTTP at all\r\n\r\n").await;
            let _ = stream.shutdown().await;
        }
        Answer::Endless(start) => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n";
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&start).await;
            let filler = vec![b'x'; 64 * 1024];
            for _ in 0..(1 << 30) / filler.len() {
                if stream.write_all(&filler).await.is_err() {
                    return;
                }
            }
            let _ = stream.shutdown().await;
        }
        Answer::Forward(target) => {
            if let Some(answer) = forward(&target, request, shared).await {
                let _ = stream.write_all(&answer).await;
            }
            let _ = stream.shutdown().await;
        }
        Answer::Decide(Decider(decide)) => {
            let answer = decide(request, &shared.in_flight.list());
            Box::pin(respond(stream, answer, request, shared)).await;
        }
        Answer::ForwardThen(target, after) => {
            // The server's whole answer is read first: whatever it did is done.
            let _ = forward(&target, request, shared).await;
            match after {
                AfterCommit::Reset => reset(stream),
                AfterCommit::Status(status) => Box::pin(respond(stream, Answer::status(status), request, shared)).await,
                AfterCommit::Stall => tokio::time::sleep(Duration::from_secs(60)).await,
            }
        }
        Answer::ForwardCut(target, after) => {
            let _passing = Passing::start(request, shared);
            let Some(mut upstream) = send(&target, request).await else {
                return reset(stream);
            };
            // The server has the whole request: fail the client now, read its answer.
            let failing = async {
                match after {
                    AfterCommit::Reset => reset(stream),
                    AfterCommit::Status(status) => {
                        Box::pin(respond(stream, Answer::status(status), request, shared)).await
                    }
                    AfterCommit::Stall => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            };
            let mut answer = Vec::new();
            let reading = upstream.read_to_end(&mut answer);
            let _ = tokio::join!(failing, reading);
        }
    }
}

/// A forwarded request's body is kept this far in [`StandIn::in_flight`].
pub const IN_FLIGHT_BODY: usize = 64 * 1024;

/// The requests being passed on now, each by a number of its own (the last one given
/// out first).
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<Numbered>>);

/// The last number given out, and the requests with theirs.
type Numbered = (u64, Vec<(u64, Recorded)>);

impl InFlight {
    fn list(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().1.iter().map(|(_, r)| r.clone()).collect()
    }
}

/// One request counted in [`StandIn::forwarding`] and listed in [`StandIn::in_flight`]
/// until dropped (when its server's answer is read, or the task ends).
struct Passing {
    in_flight: InFlight,
    forwarding: Arc<AtomicUsize>,
    number: u64,
}

impl Passing {
    fn start(request: &Recorded, shared: &Shared) -> Self {
        shared.forwarding.fetch_add(1, Ordering::SeqCst);
        let head = Recorded {
            body: request.body[..request.body.len().min(IN_FLIGHT_BODY)].to_vec(),
            ..request.clone()
        };
        let mut list = shared.in_flight.0.lock().unwrap();
        list.0 += 1;
        let number = list.0;
        list.1.push((number, head));
        Self {
            in_flight: shared.in_flight.clone(),
            forwarding: shared.forwarding.clone(),
            number,
        }
    }
}

impl Drop for Passing {
    fn drop(&mut self) {
        self.in_flight.0.lock().unwrap().1.retain(|(n, _)| *n != self.number);
        self.forwarding.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Drops the connection with an RST rather than a FIN.
fn reset(stream: TcpStream) {
    #[allow(deprecated)] // blocking on drop is the point: it makes the RST
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Sends `request` to `target` as one `Connection: close` exchange; returns the raw
/// answer. Counted in [`StandIn::forwarding`] (and listed in [`StandIn::in_flight`])
/// until the answer is read.
async fn forward(target: &str, request: &Recorded, shared: &Shared) -> Option<Vec<u8>> {
    let _passing = Passing::start(request, shared);
    let mut upstream = send(target, request).await?;
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).await.ok()?;
    Some(answer)
}

/// Connects to `target` and writes `request` whole (`Connection: close`); returns the
/// connection to read the answer from.
async fn send(target: &str, request: &Recorded) -> Option<TcpStream> {
    let address = target.trim_start_matches("http://").trim_end_matches('/');
    let mut upstream = TcpStream::connect(address).await.ok()?;
    let mut head = format!("{}\r\n", request.request_line);
    for (name, value) in &request.headers {
        if !matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "content-length" | "host"
        ) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&format!(
        "host: {address}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        request.body.len()
    ));
    upstream.write_all(head.as_bytes()).await.ok()?;
    upstream.write_all(&request.body).await.ok()?;
    Some(upstream)
}

async fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let chunked = find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut rest = buf[head_end..].to_vec();
    let body = if chunked {
        read_chunked(stream, rest).await?
    } else {
        let len: usize = find("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while rest.len() < len {
            let mut chunk = vec![0u8; 65536];
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            rest.extend_from_slice(&chunk[..n]);
        }
        rest
    };
    Some(Recorded {
        request_line,
        headers,
        body,
        chunked,
    })
}

async fn read_chunked(stream: &mut TcpStream, mut raw: Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        // Make sure a whole size line is there.
        let line_end = loop {
            if let Some(p) = raw[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + p;
            }
            fill(stream, &mut raw).await?;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[pos..line_end]).split(';').next()?.trim(),
            16,
        )
        .ok()?;
        pos = line_end + 2;
        while raw.len() < pos + size + 2 {
            fill(stream, &mut raw).await?;
        }
        body.extend_from_slice(&raw[pos..pos + size]);
        pos += size + 2;
        if size == 0 {
            return Some(body);
        }
    }
}

async fn fill(stream: &mut TcpStream, raw: &mut Vec<u8>) -> Option<()> {
    let mut chunk = vec![0u8; 65536];
    let n = stream.read(&mut chunk).await.ok()?;
    (n > 0).then(|| raw.extend_from_slice(&chunk[..n]))
}
