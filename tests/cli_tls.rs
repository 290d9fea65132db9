//! TLS, as the Perl client does it (LWP + IO::Socket::SSL + OpenSSL). `--ca-file`
//! trusts what OpenSSL trusts with IO::Socket::SSL's settings: any certificate in the
//! file as a trust anchor (so a self-signed or pinned server certificate), the Common
//! Name when there is no subjectAltName for the host, X.509 v1 certificates, a server
//! certificate marked CA:TRUE; and it still refuses a wrong
//! host, an out-of-date certificate, an unrelated CA or a certificate not meant for a
//! TLS server. Without `--ca-file` the system roots decide; `--no-verify-ssl` checks
//! nothing.
//!
//! Every certificate is made with the `openssl` command line, once per test run. In
//! each case both clients post to the same loopback HTTPS stand-in
//! (tests/support/tls_ok_server.py, which answers `ok`) and must agree: exit 0 when the
//! certificate is accepted, 75 (the MTA retries) when it is refused, and then ours says
//! on stderr what TLS refused.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use support::standin::{Answer, StandIn};
use support::{code, mails, ours, perl, stderr};

/// The stand-in listens on 127.0.0.1; clients reach it by address or as `localhost`,
/// which IO::Socket::SSL matches by different rules.
const IP: &str = "127.0.0.1";
const DNS: &str = "localhost";

/// A server name that is neither of them.
const OTHER_HOST: &str = "rt.example.org";
/// Both names a well-made server certificate of the tests carries.
const BOTH_NAMES: &str = "subjectAltName=IP:127.0.0.1,DNS:localhost";
/// Validity dates of the out-of-date certificates.
const LONG_AGO: [&str; 4] = ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"];

#[test]
fn ca_file_accepts_the_servers_self_signed_certificate() {
    // As RT's manual advises: the certificate `openssl req -x509` made (CA:TRUE).
    accepted("self_signed", IP, Some("self_signed.pem"));
    accepted("self_signed", DNS, Some("self_signed.pem"));
    // Without a subjectAltName, the Common Name names the host.
    accepted("self_signed_cn_ip", IP, Some("self_signed_cn_ip.pem"));
    accepted("self_signed_cn_dns", DNS, Some("self_signed_cn_dns.pem"));
}

#[test]
fn ca_file_accepts_a_common_name_without_subject_alt_name() {
    accepted("leaf_cn_ip", IP, Some("ca.pem"));
    accepted("leaf_cn_dns", DNS, Some("ca.pem"));
    // IO::Socket::SSL compares an IPv4 host with the CN even when the certificate has
    // DNS alternative names (only IP entries are weighed against an address).
    accepted("leaf_dns_alt_ip_cn", IP, Some("ca.pem"));
}

#[test]
fn ca_file_accepts_a_server_certificate_marked_ca() {
    // OpenSSL does not mind CA:TRUE on the server's certificate, pinned or issued.
    accepted("leaf_ca_true", IP, Some("ca.pem"));
    accepted("leaf_ca_true", IP, Some("leaf_ca_true.pem"));
    refused("leaf_ca_true", IP, Some("other_ca.pem"), "CaUsedAsEndEntity");
    refused("leaf_ca_true_of_impostor_ca", IP, Some("ca.pem"), "CaUsedAsEndEntity");
    refused("leaf_ca_true", DNS, Some("ca.pem"), "not valid for name");
}

#[test]
fn ca_file_accepts_the_servers_own_certificate_pinned() {
    // A leaf (CA:FALSE) issued by a CA that is not in the file: OpenSSL's partial
    // chains, which IO::Socket::SSL turns on, make it a trust anchor.
    accepted("leaf", IP, Some("leaf.pem"));
    accepted("leaf", DNS, Some("leaf.pem"));
    accepted("leaf_cn_ip", IP, Some("leaf_cn_ip.pem"));
}

#[test]
fn ca_file_accepts_a_bundle_whatever_the_place_of_the_right_certificate() {
    accepted("leaf", IP, Some("bundle_ca_second.pem"));
    accepted("leaf", IP, Some("bundle_leaf_second.pem"));
    accepted("self_signed", IP, Some("bundle_self_signed_second.pem"));
}

#[test]
fn ca_file_accepts_a_chain_through_an_intermediate() {
    // The server sends its certificate and the intermediate; the file holds the root,
    // or only the intermediate (a partial chain again).
    accepted("via_intermediate_chain", IP, Some("ca.pem"));
    accepted("via_intermediate_chain", IP, Some("intermediate.pem"));
    accepted("via_intermediate", IP, Some("intermediate.pem"));
    // Neither client fetches an intermediate the server does not send.
    refused("via_intermediate", IP, Some("ca.pem"), "UnknownIssuer");
}

#[test]
fn ca_file_accepts_version_1_certificates() {
    // `openssl x509 -req` given no extensions makes an X.509 v1 certificate (a CN and
    // nothing else), by the classic recipes: `-signkey` (self-signed) or `-CA`.
    accepted("v1_self_signed", IP, Some("v1_self_signed.pem"));
    accepted("v1_self_signed", IP, Some("bundle_v1_self_signed_second.pem"));
    accepted("v1_leaf_cn_ip", IP, Some("ca.pem"));
    accepted("v1_leaf_cn_dns", DNS, Some("ca.pem"));
    accepted("v1_leaf_cn_ip", IP, Some("v1_leaf_cn_ip.pem"));
    // A v1 CA (OpenSSL's "legacy v1 root"), issuing a v1 or a v3 certificate.
    accepted("v1_leaf_of_v1_ca", IP, Some("v1_ca.pem"));
    accepted("leaf_of_v1_ca", IP, Some("v1_ca.pem"));
}

#[test]
fn ca_file_refuses_version_1_certificates_as_it_refuses_others() {
    refused("v1_self_signed", DNS, Some("v1_self_signed.pem"), "NotValidForName");
    refused("v1_leaf_cn_dns", IP, Some("ca.pem"), "NotValidForName");
    refused("v1_leaf_cn_ip", IP, Some("other_ca.pem"), "UnknownIssuer");
    refused("v1_leaf_of_v1_ca", IP, Some("ca.pem"), "UnknownIssuer");
    refused("v1_expired", IP, Some("ca.pem"), "Expired");
    refused("v1_expired", IP, Some("v1_expired.pem"), "Expired");
    // Issued in the site CA's name, signed with another key.
    refused("v1_leaf_of_impostor_ca", IP, Some("ca.pem"), "UnknownIssuer");
    refused("leaf_of_impostor_ca", IP, Some("ca.pem"), "certificate");
}

#[test]
fn ca_file_works_over_tls_1_2() {
    // The server's handshake signature is checked another way in TLS 1.2.
    for (server, ca_file) in [
        ("self_signed", "self_signed.pem"),
        ("leaf", "ca.pem"),
        ("v1_self_signed", "v1_self_signed.pem"),
        ("v1_leaf_cn_ip", "ca.pem"),
    ] {
        let (ours, perl) = both_offering(Offer::Tls12Only, server, IP, &["--ca-file", &pki().path(ca_file)]);
        assert_eq!(code(&perl), 0, "Perl, {server}: {}", stderr(&perl));
        assert_eq!(code(&ours), 0, "ours, {server}: {}", stderr(&ours));
    }
    let (ours, perl) = both_offering(
        Offer::Tls12Only,
        "leaf",
        IP,
        &["--ca-file", &pki().path("other_ca.pem")],
    );
    assert_eq!((code(&ours), code(&perl)), (75, 75), "{}", stderr(&ours));
}

#[test]
fn ca_file_refuses_a_wrong_host_name() {
    refused("leaf_other_host", IP, Some("ca.pem"), "not valid for name");
    refused("leaf_other_host", DNS, Some("ca.pem"), "not valid for name");
    refused("leaf_other_host", IP, Some("leaf_other_host.pem"), "not valid for name");
    refused(
        "self_signed_cn_ip",
        DNS,
        Some("self_signed_cn_ip.pem"),
        "not valid for name",
    );
    refused(
        "self_signed_cn_dns",
        IP,
        Some("self_signed_cn_dns.pem"),
        "not valid for name",
    );
    refused("leaf_cn_ip", DNS, Some("ca.pem"), "not valid for name");
    // A DNS host is matched against the CN only when there is no DNS alternative name.
    refused("leaf_dns_alt_dns_cn", DNS, Some("ca.pem"), "not valid for name");
}

#[test]
fn ca_file_refuses_an_expired_certificate() {
    refused("leaf_expired", IP, Some("ca.pem"), "expired");
    refused("leaf_expired", IP, Some("leaf_expired.pem"), "expired");
    refused("self_signed_expired", IP, Some("self_signed_expired.pem"), "expired");
    // OpenSSL checks the dates of the certificate at the top of the chain too.
    refused(
        "leaf_of_expired_ca",
        IP,
        Some("expired_ca.pem"),
        "expired or not yet valid",
    );
}

#[test]
fn ca_file_refuses_an_unrelated_ca() {
    refused("leaf", IP, Some("other_ca.pem"), "UnknownIssuer");
    refused("self_signed", IP, Some("other_ca.pem"), "CaUsedAsEndEntity");
    refused("leaf_cn_ip", IP, Some("other_ca.pem"), "UnknownIssuer");
}

#[test]
fn ca_file_refuses_a_certificate_not_meant_for_a_tls_server() {
    // OpenSSL's `sslserver` purpose: extended key usage, Netscape type, key usage.
    refused("leaf_client_only", IP, Some("ca.pem"), "extended key usage");
    refused(
        "leaf_client_only",
        IP,
        Some("leaf_client_only.pem"),
        "extended key usage",
    );
    refused("leaf_ns_client", IP, Some("ca.pem"), "Netscape certificate type");
    let key_usage = "key usage does not allow a TLS server";
    refused("leaf_cert_sign_only", IP, Some("ca.pem"), key_usage);
    refused("leaf_cert_sign_only", IP, Some("leaf_cert_sign_only.pem"), key_usage);
}

#[test]
fn without_ca_file_the_system_roots_refuse_them_all() {
    for (server, host) in [
        ("self_signed", IP),
        ("self_signed", DNS),
        ("self_signed_cn_ip", IP),
        ("self_signed_cn_dns", DNS),
        ("leaf", IP),
        ("leaf_cn_ip", IP),
        ("leaf_cn_dns", DNS),
        ("via_intermediate_chain", IP),
        ("v1_self_signed", IP),
        ("v1_leaf_cn_ip", IP),
    ] {
        refused(server, host, None, "certificate");
    }
}

#[test]
fn no_verify_ssl_checks_nothing() {
    for server in ["self_signed", "leaf_other_host", "leaf_expired", "leaf_client_only"] {
        let (ours, perl) = both(server, IP, &["--no-verify-ssl"]);
        assert_eq!(code(&ours), 0, "{server}: {}", stderr(&ours));
        assert_eq!(code(&perl), 0, "{server}: {}", stderr(&perl));
    }
    // Even beside a --ca-file that would refuse it.
    let (ours, perl) = both(
        "leaf",
        IP,
        &["--no-verify-ssl", "--ca-file", &pki().path("other_ca.pem")],
    );
    assert_eq!((code(&ours), code(&perl)), (0, 0), "{}", stderr(&ours));
}

#[test]
fn a_ca_file_that_cannot_be_used_is_named_for_https() {
    let empty = pki().path("empty.pem");
    for ca_file in ["/nonexistent/ca.pem", empty.as_str()] {
        let (ours, perl) = both("leaf", IP, &["--ca-file", ca_file]);
        assert_eq!(code(&perl), 75, "{ca_file}: {}", stderr(&perl));
        assert_eq!(code(&ours), 75, "{ca_file}: {}", stderr(&ours));
        assert!(stderr(&ours).contains(ca_file), "{}", stderr(&ours));
    }
}

#[test]
fn a_ca_file_that_cannot_be_used_is_not_needed_for_http() {
    // LWP hands the file to IO::Socket::SSL, which opens it only for a TLS connection.
    let empty = pki().path("empty.pem");
    for ca_file in ["/nonexistent/ca.pem", empty.as_str()] {
        let rt = StandIn::always(Answer::ok_body("ok\n"));
        let mail = mails::plain("a@example.org", "tls", "x");
        let args = ["--url", &rt.url, "--timeout", "20", "--ca-file", ca_file];
        let out = ours(&args, None, &mail);
        assert_eq!(code(&out), 0, "{ca_file}: {}", stderr(&out));
        let out = perl(&args, None, &mail);
        assert_eq!(code(&out), 0, "{ca_file}: {}", stderr(&out));
        assert_eq!(rt.requests().len(), 2);
    }
}

/// Both clients deliver through the stand-in presenting `server`.
fn accepted(server: &str, host: &str, ca_file: Option<&str>) {
    let (ours, perl) = both_with(server, host, ca_file);
    let case = describe(server, host, ca_file);
    assert_eq!(code(&perl), 0, "Perl, {case}: {}", stderr(&perl));
    assert_eq!(code(&ours), 0, "ours, {case}: {}", stderr(&ours));
}

/// Both clients refuse the stand-in presenting `server` and exit 75; ours says it was
/// TLS, and `why`.
fn refused(server: &str, host: &str, ca_file: Option<&str>, why: &str) {
    let (ours, perl) = both_with(server, host, ca_file);
    let case = describe(server, host, ca_file);
    assert_eq!(code(&perl), 75, "Perl, {case}: {}", stderr(&perl));
    assert_eq!(code(&ours), 75, "ours, {case}: {}", stderr(&ours));
    let text = stderr(&ours);
    assert!(
        text.contains("TLS failure") && text.contains("certificate") && text.contains(why),
        "ours, {case}, expected `{why}`: {text}"
    );
    // The line MTAs quote is LWP's, word for word: `HTTP request failed: 500 Can't
    // connect to HOST:PORT (certificate verify failed). ...`; ours says more after it.
    let first = |out: &Output| stderr(out).lines().next().unwrap_or_default().to_string();
    assert_eq!(first(&ours), first(&perl), "{case}");
}

fn describe(server: &str, host: &str, ca_file: Option<&str>) -> String {
    format!("{server}.pem as {host}, --ca-file {}", ca_file.unwrap_or("(none)"))
}

fn both_with(server: &str, host: &str, ca_file: Option<&str>) -> (Output, Output) {
    match ca_file {
        Some(name) => both(server, host, &["--ca-file", &pki().path(name)]),
        None => both(server, host, &[]),
    }
}

/// Which TLS versions the stand-in offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// TLS 1.3 and 1.2 (1.3 is chosen).
    Any,
    Tls12Only,
}

/// Runs both clients, one after the other, against one stand-in presenting `server`
/// (a certificate of the test PKI) as `https://{host}:PORT`, with `args` added.
fn both(server: &str, host: &str, args: &[&str]) -> (Output, Output) {
    both_offering(Offer::Any, server, host, args)
}

fn both_offering(offer: Offer, server: &str, host: &str, args: &[&str]) -> (Output, Output) {
    let stand_in = TlsStandIn::start(server, offer);
    let url = format!("https://{host}:{}", stand_in.port);
    let mut all = vec!["--url", &url, "--timeout", "20"];
    all.extend_from_slice(args);
    let mail = mails::plain("a@example.org", "tls", "x");
    (ours(&all, None, &mail), perl(&all, None, &mail))
}

/// tests/support/tls_ok_server.py presenting one certificate (and key) of the PKI.
struct TlsStandIn {
    port: u16,
    child: Child,
}

impl TlsStandIn {
    fn start(server: &str, offer: Offer) -> Self {
        let pki = pki();
        let mut command = Command::new("python3");
        command
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/tls_ok_server.py"))
            .arg(pki.path(&format!("{server}.pem")))
            .arg(pki.path(&format!("{server}.key")));
        if offer == Offer::Tls12Only {
            command.arg("tls1.2");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the TLS stand-in");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let port = port
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the stand-in did not start for {server}"));
        Self { port, child }
    }
}

impl Drop for TlsStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every certificate of the tests, made once per run in a directory under the target
/// directory: `NAME.pem` (certificate) and `NAME.key` (its key).
struct Pki {
    dir: PathBuf,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::make)
}

impl Pki {
    fn make() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cli_tls-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        let pki = Self { dir };

        // Two CAs, the site's and an unrelated one.
        pki.self_signed("ca", "/CN=Test site CA", &[]);
        pki.self_signed("other_ca", "/CN=Unrelated CA", &[]);

        // Self-signed server certificates as `openssl req -x509` makes them (CA:TRUE).
        pki.self_signed("self_signed", "/CN=127.0.0.1", &["-addext", BOTH_NAMES]);
        pki.self_signed("self_signed_cn_ip", "/CN=127.0.0.1", &[]);
        pki.self_signed("self_signed_cn_dns", "/CN=localhost", &[]);

        // Server certificates (CA:FALSE) issued by the site CA.
        pki.issued("leaf", "ca", "/CN=127.0.0.1", BOTH_NAMES);
        pki.issued("leaf_cn_ip", "ca", "/CN=127.0.0.1", "");
        pki.sign(
            "leaf_ca_true",
            "ca",
            "/CN=127.0.0.1",
            "basicConstraints=CA:TRUE\nsubjectAltName=IP:127.0.0.1",
        );
        pki.issued("leaf_cn_dns", "ca", "/CN=localhost", "");
        pki.issued(
            "leaf_dns_alt_ip_cn",
            "ca",
            "/CN=127.0.0.1",
            "subjectAltName=DNS:rt.example.org",
        );
        pki.issued(
            "leaf_dns_alt_dns_cn",
            "ca",
            "/CN=localhost",
            "subjectAltName=DNS:rt.example.org",
        );
        pki.issued(
            "leaf_other_host",
            "ca",
            &format!("/CN={OTHER_HOST}"),
            &format!("subjectAltName=DNS:{OTHER_HOST}"),
        );
        pki.issued(
            "leaf_client_only",
            "ca",
            "/CN=127.0.0.1",
            &format!("{BOTH_NAMES}\nextendedKeyUsage=clientAuth"),
        );
        pki.issued(
            "leaf_ns_client",
            "ca",
            "/CN=127.0.0.1",
            &format!("{BOTH_NAMES}\nnsCertType=client"),
        );
        pki.issued(
            "leaf_cert_sign_only",
            "ca",
            "/CN=127.0.0.1",
            &format!("{BOTH_NAMES}\nkeyUsage=keyCertSign"),
        );

        // An intermediate CA, and a server certificate it issued, alone and as a chain.
        pki.issued_ca("intermediate", "ca", "/CN=Test intermediate CA");
        pki.issued("via_intermediate", "intermediate", "/CN=127.0.0.1", BOTH_NAMES);
        pki.concat("via_intermediate_chain", &["via_intermediate", "intermediate"]);
        pki.copy_key("via_intermediate", "via_intermediate_chain");

        // Out of date: a leaf, a self-signed one, and a CA (with a valid leaf under it).
        pki.openssl_ca_db();
        pki.long_ago(
            "leaf_expired",
            Some("ca"),
            "/CN=127.0.0.1",
            &format!("basicConstraints=CA:FALSE\n{BOTH_NAMES}"),
        );
        pki.long_ago(
            "self_signed_expired",
            None,
            "/CN=127.0.0.1",
            &format!("basicConstraints=critical,CA:TRUE\n{BOTH_NAMES}"),
        );
        pki.long_ago(
            "expired_ca",
            None,
            "/CN=Expired CA",
            "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign",
        );
        pki.issued("leaf_of_expired_ca", "expired_ca", "/CN=127.0.0.1", BOTH_NAMES);

        // X.509 v1, as `openssl x509 -req` makes it without extensions; out of date
        // through `openssl ca`, which also makes v1 without extensions.
        pki.v1_self_signed("v1_self_signed", "/CN=127.0.0.1");
        pki.v1_issued("v1_leaf_cn_ip", "ca", "/CN=127.0.0.1");
        pki.v1_issued("v1_leaf_cn_dns", "ca", "/CN=localhost");
        pki.v1_self_signed("v1_ca", "/CN=Test v1 CA");
        pki.v1_issued("v1_leaf_of_v1_ca", "v1_ca", "/CN=127.0.0.1");
        pki.issued("leaf_of_v1_ca", "v1_ca", "/CN=127.0.0.1", BOTH_NAMES);
        pki.long_ago("v1_expired", Some("ca"), "/CN=127.0.0.1", "");

        // An impostor: the site CA's name, another key.
        pki.self_signed("impostor_ca", "/CN=Test site CA", &[]);
        pki.v1_issued("v1_leaf_of_impostor_ca", "impostor_ca", "/CN=127.0.0.1");
        pki.issued("leaf_of_impostor_ca", "impostor_ca", "/CN=127.0.0.1", BOTH_NAMES);
        pki.sign(
            "leaf_ca_true_of_impostor_ca",
            "impostor_ca",
            "/CN=127.0.0.1",
            "basicConstraints=CA:TRUE\nsubjectAltName=IP:127.0.0.1",
        );

        // Bundles where the certificate that matters is not the first.
        pki.concat("bundle_ca_second", &["other_ca", "ca"]);
        pki.concat("bundle_leaf_second", &["other_ca", "leaf"]);
        pki.concat("bundle_self_signed_second", &["other_ca", "self_signed", "ca"]);
        pki.concat("bundle_v1_self_signed_second", &["other_ca", "v1_self_signed"]);

        std::fs::write(pki.dir.join("empty.pem"), "").unwrap();
        pki
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn file(&self, name: &str, ext: &str) -> String {
        self.path(&format!("{name}.{ext}"))
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("the openssl command runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `openssl req -x509`, with its default extensions (CA:TRUE) and `extra` options.
    fn self_signed(&self, name: &str, subject: &str, extra: &[&str]) {
        let (cert, key) = (self.file(name, "pem"), self.file(name, "key"));
        let mut args = vec![
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject, "-keyout", &key, "-out",
            &cert,
        ];
        args.extend_from_slice(extra);
        self.openssl(&args);
    }

    /// A key and a signing request for `subject`.
    fn request(&self, name: &str, subject: &str) -> String {
        let (key, csr) = (self.file(name, "key"), self.file(name, "csr"));
        self.openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ]);
        csr
    }

    /// A certificate issued by `issuer` with the extensions `ext` (lines of an
    /// extension file).
    fn sign(&self, name: &str, issuer: &str, subject: &str, ext: &str) {
        let csr = self.request(name, subject);
        let ext_file = self.file(name, "ext");
        std::fs::write(&ext_file, format!("{ext}\n")).unwrap();
        let (ca, ca_key, cert) = (
            self.file(issuer, "pem"),
            self.file(issuer, "key"),
            self.file(name, "pem"),
        );
        self.openssl(&[
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
            &ext_file,
            "-out",
            &cert,
        ]);
    }

    /// A server certificate (CA:FALSE) issued by `issuer`.
    fn issued(&self, name: &str, issuer: &str, subject: &str, ext: &str) {
        self.sign(name, issuer, subject, &format!("basicConstraints=CA:FALSE\n{ext}"));
    }

    /// A CA certificate issued by `issuer`.
    fn issued_ca(&self, name: &str, issuer: &str, subject: &str) {
        self.sign(
            name,
            issuer,
            subject,
            "basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign,cRLSign",
        );
    }

    /// `openssl x509 -req -signkey`: self-signed, X.509 v1.
    fn v1_self_signed(&self, name: &str, subject: &str) {
        let csr = self.request(name, subject);
        let (key, cert) = (self.file(name, "key"), self.file(name, "pem"));
        self.openssl(&[
            "x509", "-req", "-days", "2", "-in", &csr, "-signkey", &key, "-out", &cert,
        ]);
    }

    /// `openssl x509 -req -CA` without extensions: X.509 v1.
    fn v1_issued(&self, name: &str, issuer: &str, subject: &str) {
        let csr = self.request(name, subject);
        let (ca, ca_key, cert) = (
            self.file(issuer, "pem"),
            self.file(issuer, "key"),
            self.file(name, "pem"),
        );
        self.openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
        ]);
    }

    /// The database `openssl ca` needs: it alone sets arbitrary validity dates.
    fn openssl_ca_db(&self) {
        std::fs::create_dir_all(self.dir.join("ca_db")).unwrap();
        std::fs::write(self.dir.join("ca_db/index.txt"), "").unwrap();
        std::fs::write(self.dir.join("ca_db/serial"), "01\n").unwrap();
        std::fs::write(
            self.dir.join("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndatabase = ca_db/index.txt\nnew_certs_dir = ca_db\n\
             serial = ca_db/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
             [any]\ncommonName = supplied\n",
        )
        .unwrap();
    }

    /// A certificate valid for one day in 2020, issued by `issuer` or self-signed,
    /// with the extensions `ext` (none: X.509 v1).
    fn long_ago(&self, name: &str, issuer: Option<&str>, subject: &str, ext: &str) {
        let csr = self.request(name, subject);
        let ext_file = self.file(name, "ext");
        std::fs::write(&ext_file, format!("{ext}\n")).unwrap();
        let cert = self.file(name, "pem");
        // Self-signed: signed with its own key.
        let signer = issuer.unwrap_or(name);
        let (ca, ca_key) = (self.file(signer, "pem"), self.file(signer, "key"));
        let mut args = vec![
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-in", &csr, "-out", &cert, "-keyfile", &ca_key,
        ];
        if !ext.is_empty() {
            args.extend_from_slice(&["-extfile", &ext_file]);
        }
        args.extend_from_slice(&LONG_AGO);
        match issuer {
            Some(_) => args.extend_from_slice(&["-cert", &ca]),
            None => args.push("-selfsign"),
        }
        self.openssl(&args);
    }

    /// `name.pem`: the certificates of `parts`, in that order.
    fn concat(&self, name: &str, parts: &[&str]) {
        let text: String = parts
            .iter()
            .map(|part| std::fs::read_to_string(self.file(part, "pem")).unwrap())
            .collect();
        std::fs::write(self.file(name, "pem"), text).unwrap();
    }

    fn copy_key(&self, from: &str, to: &str) {
        std::fs::copy(self.file(from, "key"), self.file(to, "key")).unwrap();
    }
}

#[test]
fn the_test_certificates_are_what_their_names_say() {
    let text = |name: &str| {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in", &pki().path(&format!("{name}.pem"))])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(text("self_signed").contains("CA:TRUE"));
    assert!(text("self_signed_cn_ip").contains("CA:TRUE"));
    assert!(!text("self_signed_cn_ip").contains("Subject Alternative Name"));
    assert!(text("leaf").contains("CA:FALSE"));
    assert!(!text("leaf_cn_dns").contains("Subject Alternative Name"));
    assert!(text("leaf_expired").contains("Jan  2 00:00:00 2020 GMT"));
    assert!(text("expired_ca").contains("Jan  2 00:00:00 2020 GMT"));
    for v1 in ["v1_self_signed", "v1_leaf_cn_ip", "v1_ca", "v1_expired"] {
        assert!(text(v1).contains("Version: 1 (0x0)"), "{v1}");
    }
    assert!(text("leaf_of_v1_ca").contains("Version: 3"));
    let pem_count = |name: &str| {
        std::fs::read_to_string(Path::new(&pki().path(name)))
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count()
    };
    assert_eq!(pem_count("bundle_self_signed_second.pem"), 3);
    assert_eq!(pem_count("via_intermediate_chain.pem"), 2);
}
