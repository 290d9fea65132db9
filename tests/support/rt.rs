//! The real RT started by `scripts/rt-test-server start`, read back over REST 1.0.
//! Tests fail loudly (never skip) when it is not running.

use std::collections::HashMap;

/// RT's base URL for tests: `$RT_TEST_URL`, else the script's default port.
pub fn url() -> String {
    let url = std::env::var("RT_TEST_URL").unwrap_or_else(|_| "http://127.0.0.1:8089".to_string());
    let probe = get_raw(&format!("{url}/REST/1.0/"));
    assert!(
        probe.is_ok(),
        "no RT answers at {url}: start it with `scripts/rt-test-server start` (or run scripts/test). {probe:?}"
    );
    url
}

fn get_raw(url: &str) -> Result<Vec<u8>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response.bytes().await.map(|b| b.to_vec()).map_err(|e| e.to_string())
    })
}

/// GET a REST 1.0 path as root; returns the bytes after RT's `RT/x.y.z 200 Ok\n\n` line.
pub fn rest(path: &str) -> Vec<u8> {
    let base = url();
    let sep = if path.contains('?') { '&' } else { '?' };
    let raw = get_raw(&format!("{base}/REST/1.0/{path}{sep}user=root&pass=password")).expect("RT REST answers");
    let head_end = raw.windows(2).position(|w| w == b"\n\n").expect("RT REST status line") + 2;
    assert!(
        raw.starts_with(b"RT/") && raw[..head_end].windows(6).any(|w| w == b"200 Ok"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    raw[head_end..].to_vec()
}

/// Ids of the tickets whose subject contains `text`.
pub fn tickets_with_subject(text: &str) -> Vec<u64> {
    subjects_like(text).into_iter().map(|(id, _)| id).collect()
}

/// (id, subject) of the tickets whose subject contains `text`, in one search.
pub fn subjects_like(text: &str) -> Vec<(u64, String)> {
    let query = format!("Subject LIKE '{text}'");
    let body = rest(&format!("search/ticket?query={}", encode(&query)));
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|line| {
            let (id, subject) = line.split_once(": ")?;
            Some((id.trim().parse().ok()?, subject.to_string()))
        })
        .collect()
}

/// One ticket as a search lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its id.
    pub id: u64,
    /// Its queue's name.
    pub queue: String,
    /// Its subject.
    pub subject: String,
}

/// The tickets whose subject contains `text`, with their queues, in one search.
pub fn tickets_like(text: &str) -> Vec<Listed> {
    let query = format!("Subject LIKE '{text}'");
    let body = rest(&format!(
        "search/ticket?query={}&format=l&fields=Subject,Queue",
        encode(&query)
    ));
    // Records of `id: ticket/N`, `Queue: ...`, `Subject: ...` lines, split by `--`.
    String::from_utf8_lossy(&body)
        .split("\n--\n")
        .filter_map(|record| {
            let field = |name: &str| {
                record
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(": ").map(str::to_string))
            };
            Some(Listed {
                id: field("id")?.strip_prefix("ticket/")?.parse().ok()?,
                queue: field("Queue")?,
                subject: field("Subject")?,
            })
        })
        .collect()
}

/// The one ticket whose subject contains `text` (panics unless there is exactly one).
pub fn only_ticket_with_subject(text: &str) -> u64 {
    let ids = tickets_with_subject(text);
    assert_eq!(ids.len(), 1, "expected exactly one ticket with `{text}`, found {ids:?}");
    ids[0]
}

/// A ticket's fields (`Queue`, `Owner`, `Status`, `Requestors`...).
pub fn ticket(id: u64) -> HashMap<String, String> {
    let body = rest(&format!("ticket/{id}/show"));
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|line| {
            line.split_once(": ")
                .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The ticket's full history as text (transaction types, descriptions, contents).
pub fn history(id: u64) -> String {
    String::from_utf8_lossy(&rest(&format!("ticket/{id}/history?format=l"))).into_owned()
}

/// (attachment id, name, content type) of every attachment on the ticket.
pub fn attachments(id: u64) -> Vec<(u64, String, String)> {
    let body = String::from_utf8_lossy(&rest(&format!("ticket/{id}/attachments"))).into_owned();
    body.lines()
        .filter_map(|line| {
            let line = line.trim_start_matches("Attachments:").trim();
            let (aid, rest) = line.split_once(": ")?;
            let (name, kind) = rest.rsplit_once(" (")?;
            Some((
                aid.parse().ok()?,
                name.to_string(),
                kind.split(" / ").next()?.to_string(),
            ))
        })
        .collect()
}

/// The stored bytes of one attachment.
pub fn attachment_content(ticket: u64, attachment: u64) -> Vec<u8> {
    rest(&format!("ticket/{ticket}/attachments/{attachment}/content"))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
