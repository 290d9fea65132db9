//! DynamoDB as the storm counters meet it, on this machine: moto behind
//! `tests/support/dynamodb_front.py`, which applies writes to one item one at a time (as
//! DynamoDB does, and moto does not) and can answer a share of them as a throttled hot
//! item, the way DynamoDB pushes back under contention. Stopped when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// The front, listening on loopback.
pub struct DynamoFront {
    child: Child,
    /// Its URL: the endpoint to give the DynamoDB client (`AWS_ENDPOINT_URL_DYNAMODB`).
    pub url: String,
    _dir: tempfile::TempDir,
}

/// What the front did so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct FrontStats {
    /// Requests passed on to moto.
    pub forwarded: u64,
    /// Writes answered as throttled (never applied).
    pub throttled: u64,
}

impl DynamoFront {
    /// A front for the moto at `moto` that throttles `throttle_share` (0 to 1) of the writes.
    pub fn start(moto: &str, throttle_share: f64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dynamodb-front.log");
        let file = std::fs::File::create(&log).unwrap();
        let port = super::free_port();
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/dynamodb_front.py"))
            .args([port.to_string(), moto.to_string(), throttle_share.to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("python3 runs tests/support/dynamodb_front.py");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        super::lambda::wait_for(addr, "the DynamoDB front", &mut child, &log);
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> FrontStats {
        let body = std::process::Command::new("curl")
            .args(["-sf", &format!("{}/stats", self.url)])
            .output()
            .expect("curl runs");
        serde_json::from_slice(&body.stdout).expect("the front's stats")
    }
}

impl Drop for DynamoFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
