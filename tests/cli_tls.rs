//! TLS, as the Perl client does it: the server's certificate is verified by default,
//! `--ca-file` trusts exactly the CAs in a file, `--no-verify-ssl` checks nothing.
//! Against a loopback HTTPS stand-in with a throw-away self-signed certificate.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use support::{code, mails, ours, perl, stderr};

struct TlsStandIn {
    url: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl TlsStandIn {
    /// A throw-away site CA, a server certificate for `127.0.0.1` signed by it, and a
    /// server using that certificate.
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let (ca, ca_key, cert, key, csr, ext) = (
            path("ca.pem"),
            path("ca.key"),
            path("cert.pem"),
            path("key.pem"),
            path("req.csr"),
            path("ext.cnf"),
        );
        std::fs::write(&ext, "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n").unwrap();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .expect("openssl runs");
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Test site CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ]);
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/tls_ok_server.py"))
            .arg(&cert)
            .arg(&key)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the TLS stand-in");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        Self {
            url: format!("https://127.0.0.1:{}", port.trim()),
            child,
            dir,
        }
    }

    /// The site CA's certificate, for `--ca-file`.
    fn cert(&self) -> String {
        self.dir.path().join("ca.pem").to_string_lossy().into_owned()
    }
}

impl Drop for TlsStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_untrusted_certificate_is_refused_by_default() {
    let server = TlsStandIn::start();
    let mail = mails::plain("a@example.org", "tls", "x");
    let out = ours(&["--url", &server.url], None, &mail);
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("TLS") || stderr(&out).contains("certificate"),
        "{}",
        stderr(&out)
    );
    assert_eq!(code(&perl(&["--url", &server.url], None, &mail)), 75);
}

#[test]
fn ca_file_trusts_that_ca() {
    let server = TlsStandIn::start();
    let mail = mails::plain("a@example.org", "tls", "x");
    let args = ["--url", &server.url, "--ca-file", &server.cert()];
    let out = ours(&args, None, &mail);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&perl(&args, None, &mail)), 0);
}

#[test]
fn no_verify_ssl_checks_nothing() {
    let server = TlsStandIn::start();
    let mail = mails::plain("a@example.org", "tls", "x");
    let out = ours(&["--url", &server.url, "--no-verify-ssl"], None, &mail);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&perl(&["--url", &server.url, "--no-verify-ssl"], None, &mail)), 0);
}

#[test]
fn an_unreadable_ca_file_is_named() {
    let out = ours(
        &["--url", "https://127.0.0.1:9", "--ca-file", "/nonexistent/ca.pem"],
        None,
        b"Subject: x\n\nx\n",
    );
    assert_eq!(code(&out), 75);
    assert!(stderr(&out).contains("/nonexistent/ca.pem"), "{}", stderr(&out));
}
