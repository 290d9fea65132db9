//! The real RTs started by `scripts/rt-test-server start`, read back over REST 1.0: one
//! on SQLite (`$RT_TEST_URL`, the one every test talks to unless it says otherwise) and
//! one on PostgreSQL (`$RT_TEST_PG_URL`, started with `RT_TEST_DB=pg`). A test names the
//! one it talks to with an [`Rt`] value (`Rt::sqlite()`, `Rt::pg()`, `Rt::of(Db::Pg)`);
//! the free functions here are the SQLite one's. Tests fail loudly (never skip) when the
//! RT they name is not running.

use std::collections::HashMap;
use std::path::PathBuf;

/// The database an RT runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// `scripts/rt-test-server start` (SQLite's writer lock serialises RT's readers and
    /// writers).
    Sqlite,
    /// `RT_TEST_DB=pg scripts/rt-test-server start`: as production RTs run, readers see
    /// only what RT has committed, never blocked by a write under way.
    Pg,
}

impl Db {
    /// Both, SQLite first.
    pub const ALL: [Db; 2] = [Db::Sqlite, Db::Pg];

    /// `SQLite` or `PostgreSQL`, for figures and messages.
    pub fn name(self) -> &'static str {
        match self {
            Db::Sqlite => "SQLite",
            Db::Pg => "PostgreSQL",
        }
    }

    /// The variables naming its URL and port, and their defaults (as `scripts/test` sets them).
    fn settings(self) -> (&'static str, &'static str, u16) {
        match self {
            Db::Sqlite => ("RT_TEST_URL", "RT_TEST_PORT", 8089),
            Db::Pg => ("RT_TEST_PG_URL", "RT_TEST_PG_PORT", 8090),
        }
    }
}

/// One running test RT: its database and base URL (checked to answer when made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rt {
    /// What it runs on.
    pub db: Db,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
}

impl Rt {
    /// The mails this RT has sent so far, oldest first: `scripts/rt-test-server` hands
    /// RT's outgoing mail to a script that appends each to `outgoing-mail` in the state
    /// folder, after a separator line.
    pub fn outgoing_mail(&self) -> Vec<String> {
        const SEPARATOR: &str = "==== rt-test-server: outgoing mail ====\n";
        let file = self.state().join("outgoing-mail");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (start the RT with this branch's scripts/rt-test-server, which keeps RT's mail)",
                file.display()
            )
        });
        text.split(SEPARATOR)
            .filter(|m| !m.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The RT on SQLite (`$RT_TEST_URL`, else port `$RT_TEST_PORT` or 8089).
    pub fn sqlite() -> Self {
        Self::of(Db::Sqlite)
    }

    /// The RT on PostgreSQL (`$RT_TEST_PG_URL`, else port `$RT_TEST_PG_PORT` or 8090).
    pub fn pg() -> Self {
        Self::of(Db::Pg)
    }

    /// The RT on `db`; panics, saying how to start it, when it does not answer.
    pub fn of(db: Db) -> Self {
        let (url_var, port_var, default_port) = db.settings();
        let port = std::env::var(port_var).unwrap_or_else(|_| default_port.to_string());
        let url = std::env::var(url_var)
            .unwrap_or_else(|_| format!("http://127.0.0.1:{port}"))
            .trim_end_matches('/')
            .to_string();
        let start = match db {
            Db::Sqlite => format!("RT_TEST_PORT={port} scripts/rt-test-server start"),
            Db::Pg => format!("RT_TEST_DB=pg RT_TEST_PORT={port} scripts/rt-test-server start"),
        };
        let probe = get_raw(&format!("{url}/REST/1.0/"));
        assert!(
            probe.is_ok(),
            "no RT on {} answers at {url} ({url_var}): start it with `{start}` (or run scripts/test). {probe:?}",
            db.name()
        );
        Self { db, url }
    }

    /// Its state folder (config, logs): `$RT_TEST_STATE` (SQLite) or `$RT_TEST_PG_STATE`
    /// (PostgreSQL), else the script's default for its port.
    pub fn state(&self) -> PathBuf {
        let var = match self.db {
            Db::Sqlite => "RT_TEST_STATE",
            Db::Pg => "RT_TEST_PG_STATE",
        };
        match std::env::var(var) {
            Ok(state) if !state.is_empty() => state.into(),
            _ => {
                let port = self.url.rsplit(':').next().unwrap_or_default();
                format!("/tmp/rt-mailgate-test-rt-{port}").into()
            }
        }
    }

    /// The RT auth token of one of the lookup users `scripts/rt-test-server` makes (see
    /// [`LookupUser`]); panics, saying how to make it, when the RT has none.
    pub fn lookup_token(&self, user: LookupUser) -> String {
        let file = self.state().join(user.token_file());
        let token = std::fs::read_to_string(&file).unwrap_or_default().trim().to_string();
        assert!(
            !token.is_empty(),
            "no lookup user's token in {} (RT on {}): run `RT_TEST_PORT={} scripts/rt-test-server lookup-user`",
            file.display(),
            self.db.name(),
            self.url.rsplit(':').next().unwrap_or_default()
        );
        token
    }

    /// Makes a queue named `name` in this RT (with RT's own Perl API, as an admin would
    /// in its web UI) unless there is one; returns its id. Everyone may create tickets
    /// and reply there (the test RT's global rights); the README's lookup user sees it
    /// (its SeeQueue is global).
    pub fn create_queue(&self, name: &str) -> u64 {
        self.create_queues(&[name])[0]
    }

    /// [`Self::create_queue`] for each name, in one go (RT starts once).
    pub fn create_queues(&self, names: &[&str]) -> Vec<u64> {
        let state = self.state().display().to_string();
        let script = r#"
            use strict; use warnings; use RT; RT::LoadConfig(); RT::Init();
            for my $name (@ARGV) {
                my $queue = RT::Queue->new(RT->SystemUser);
                $queue->LoadByCols(Name => $name);
                unless ($queue->id) {
                    my ($id, $msg) = $queue->Create(Name => $name, Description => 'made by a test');
                    die "queue: $msg\n" unless $id;
                }
                print $queue->id, "\n";
            }
        "#;
        let out = std::process::Command::new("timeout")
            .args(["120", "perl", "-I/usr/share/request-tracker5/lib", "-e", script])
            .args(names)
            .env("RT_SITE_CONFIG", format!("{state}/RT_SiteConfig.pm"))
            .env("RT_SITE_CONFIG_DIR", format!("{state}/site.d"))
            .output()
            .expect("perl runs");
        let ids: Vec<u64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        assert!(
            out.status.success() && ids.len() == names.len(),
            "queues {names:?} in {state}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ids
    }

    /// Sets a ticket's field as an RT user would (REST 1.0, as root): `Field: value`.
    pub fn set_field(&self, ticket: u64, content: &str) {
        let out = std::process::Command::new("curl")
            .args(["-fsS", "--max-time", "30", "--data-urlencode"])
            .arg(format!("content={content}"))
            .arg(format!(
                "{}/REST/1.0/ticket/{ticket}/edit?user=root&pass=password",
                self.url
            ))
            .output()
            .expect("curl runs");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.contains("updated"), "{said}");
    }

    /// Sets a ticket's status as an RT user would (REST 1.0, as root).
    pub fn set_status(&self, ticket: u64, status: &str) {
        self.set_field(ticket, &format!("Status: {status}"));
    }

    /// GET a REST 1.0 path as root; returns the bytes after RT's `RT/x.y.z 200 Ok\n\n` line.
    pub fn rest(&self, path: &str) -> Vec<u8> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let raw = get_raw(&format!("{}/REST/1.0/{path}{sep}user=root&pass=password", self.url))
            .unwrap_or_else(|e| panic!("RT on {} ({}) REST answers: {e}", self.db.name(), self.url));
        let head_end = raw.windows(2).position(|w| w == b"\n\n").expect("RT REST status line") + 2;
        assert!(
            raw.starts_with(b"RT/") && raw[..head_end].windows(6).any(|w| w == b"200 Ok"),
            "{}",
            String::from_utf8_lossy(&raw)
        );
        raw[head_end..].to_vec()
    }

    /// Ids of the tickets whose subject contains `text`.
    pub fn tickets_with_subject(&self, text: &str) -> Vec<u64> {
        self.subjects_like(text).into_iter().map(|(id, _)| id).collect()
    }

    /// (id, subject) of the tickets whose subject contains `text`, in one search.
    pub fn subjects_like(&self, text: &str) -> Vec<(u64, String)> {
        let query = format!("Subject LIKE '{text}'");
        let body = self.rest(&format!("search/ticket?query={}", encode(&query)));
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|line| {
                let (id, subject) = line.split_once(": ")?;
                Some((id.trim().parse().ok()?, subject.to_string()))
            })
            .collect()
    }

    /// The tickets whose subject contains `text`, with their queues, in one search.
    pub fn tickets_like(&self, text: &str) -> Vec<Listed> {
        let query = format!("Subject LIKE '{text}'");
        let body = self.rest(&format!(
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
    pub fn only_ticket_with_subject(&self, text: &str) -> u64 {
        let ids = self.tickets_with_subject(text);
        assert_eq!(
            ids.len(),
            1,
            "expected exactly one ticket with `{text}` in RT on {}, found {ids:?}",
            self.db.name()
        );
        ids[0]
    }

    /// A ticket's fields (`Queue`, `Owner`, `Status`, `Requestors`...).
    pub fn ticket(&self, id: u64) -> HashMap<String, String> {
        let body = self.rest(&format!("ticket/{id}/show"));
        String::from_utf8_lossy(&body)
            .lines()
            .filter_map(|line| {
                line.split_once(": ")
                    .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            })
            .collect()
    }

    /// The ticket's full history as text (transaction types, descriptions, contents).
    pub fn history(&self, id: u64) -> String {
        String::from_utf8_lossy(&self.rest(&format!("ticket/{id}/history?format=l"))).into_owned()
    }

    /// (attachment id, name, content type) of every attachment on the ticket.
    pub fn attachments(&self, id: u64) -> Vec<(u64, String, String)> {
        let body = String::from_utf8_lossy(&self.rest(&format!("ticket/{id}/attachments"))).into_owned();
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
    pub fn attachment_content(&self, ticket: u64, attachment: u64) -> Vec<u8> {
        self.rest(&format!("ticket/{ticket}/attachments/{attachment}/content"))
    }
}

/// The RT users the function asks RT's REST 2 API as (`scripts/rt-test-server` makes
/// them, each with an auth token in the RT's state folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupUser {
    /// `rt-mailgate-lookup`, the README's: Privileged, SeeQueue, ShowTicket and
    /// ShowTicketComments on each queue, and SeeQueue granted globally.
    Readme,
    /// `rt-mailgate-lookup-per-queue`: the same rights on each queue, none globally.
    PerQueue,
}

impl LookupUser {
    /// RT's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Readme => "rt-mailgate-lookup",
            Self::PerQueue => "rt-mailgate-lookup-per-queue",
        }
    }

    fn token_file(self) -> &'static str {
        match self {
            Self::Readme => "lookup-token",
            Self::PerQueue => "lookup-per-queue-token",
        }
    }
}

/// The SQLite RT's base URL (`$RT_TEST_URL`, else the script's default port).
pub fn url() -> String {
    Rt::sqlite().url
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

/// [`Rt::rest`] on the SQLite RT.
pub fn rest(path: &str) -> Vec<u8> {
    Rt::sqlite().rest(path)
}

/// [`Rt::tickets_with_subject`] on the SQLite RT.
pub fn tickets_with_subject(text: &str) -> Vec<u64> {
    Rt::sqlite().tickets_with_subject(text)
}

/// [`Rt::subjects_like`] on the SQLite RT.
pub fn subjects_like(text: &str) -> Vec<(u64, String)> {
    Rt::sqlite().subjects_like(text)
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

/// [`Rt::tickets_like`] on the SQLite RT.
pub fn tickets_like(text: &str) -> Vec<Listed> {
    Rt::sqlite().tickets_like(text)
}

/// [`Rt::only_ticket_with_subject`] on the SQLite RT.
pub fn only_ticket_with_subject(text: &str) -> u64 {
    Rt::sqlite().only_ticket_with_subject(text)
}

/// [`Rt::ticket`] on the SQLite RT.
pub fn ticket(id: u64) -> HashMap<String, String> {
    Rt::sqlite().ticket(id)
}

/// [`Rt::history`] on the SQLite RT.
pub fn history(id: u64) -> String {
    Rt::sqlite().history(id)
}

/// [`Rt::attachments`] on the SQLite RT.
pub fn attachments(id: u64) -> Vec<(u64, String, String)> {
    Rt::sqlite().attachments(id)
}

/// [`Rt::attachment_content`] on the SQLite RT.
pub fn attachment_content(ticket: u64, attachment: u64) -> Vec<u8> {
    Rt::sqlite().attachment_content(ticket, attachment)
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
