//! `--ca-file` / `RT_CA_FILE`: the server's certificate is checked against the
//! certificates of one PEM file, accepting exactly what the Perl client accepts.
//!
//! The Perl client is LWP over IO::Socket::SSL over OpenSSL. With `SSL_ca_file`, that
//! stack differs from webpki (what rustls checks with) in ways that matter for RT sites,
//! whose manual tells them to pass their self-signed certificate as `--ca-file`:
//!
//! - IO::Socket::SSL turns on OpenSSL's `X509_V_FLAG_PARTIAL_CHAIN`: *every*
//!   certificate in the file is a trust anchor, the server's own included. A
//!   self-signed certificate (`openssl req -x509` marks it CA:TRUE) or a pinned leaf
//!   is trusted because it is in the file; webpki refuses the first as
//!   `CaUsedAsEndEntity` and the second as `UnknownIssuer`.
//! - OpenSSL checks the validity dates of the trust anchor too; webpki does not.
//! - LWP asks IO::Socket::SSL for its `www` host-name scheme, which falls back to the
//!   subject's Common Name; webpki only reads the subjectAltName.
//! - OpenSSL checks the leaf's key usages for a TLS server (`sslserver` purpose);
//!   webpki only checks the extended key usage.
//! - OpenSSL reads X.509 v1 certificates, which `openssl x509 -req` makes when given no
//!   extensions (the classic recipe for a self-signed or home-CA certificate); webpki
//!   reads only v3.
//!
//! [`CaFileVerifier`] runs webpki first and adds each of these rules on top; everything
//! else (signatures along the chain, intermediates' dates and constraints, the TLS
//! handshake's own signature) stays webpki's and the crypto provider's. Only for a v1
//! certificate, which webpki cannot parse, are its one issuer signature and the
//! handshake signature checked here, with the provider's algorithms through webpki's
//! raw-public-key API. Each rule was checked against `/usr/bin/rt-mailgate`
//! (tests/cli_tls.rs runs both clients). Without `--ca-file` none of this applies:
//! system roots are verified as before.
//!
//! Known differences left, all refusals where Perl accepts: a v1 or CA:TRUE server
//! certificate issued by an intermediate the server sends (only a certificate of the
//! file is looked for as its issuer); a Common Name with a partial-label wildcard
//! (`w*.example.org`).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, verify_tls13_signature_with_raw_key, CryptoProvider,
    WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, SubjectPublicKeyInfoDer, TrustAnchor, UnixTime};
use secrecy::ExposeSecret;

use crate::core::credentials::ClientIdentity;
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, OtherError, PeerMisbehaved, RootCertStore,
    SignatureScheme,
};
use x509_parser::asn1_rs::Any;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Version;

/// The CA file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file could not be read.
    #[error("{0}")]
    Read(#[from] std::io::Error),
    /// A PEM block in it is broken.
    #[error("not a PEM file: {0}")]
    Pem(String),
    /// No `CERTIFICATE` block in it.
    #[error("no PEM certificate in it")]
    Empty,
    /// A certificate in it cannot be parsed.
    #[error("certificate {index} in it is not usable: {reason}")]
    BadCertificate {
        /// 1-based position in the file.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The certificates of a CA file, read and parsed once.
#[derive(Debug)]
pub struct CaFile {
    certs: Vec<Trusted>,
}

/// One certificate of the file, as a trust anchor.
#[derive(Debug)]
struct Trusted {
    der: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
    /// Validity period, in seconds since the epoch.
    not_before: i64,
    not_after: i64,
}

impl Trusted {
    fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

impl CaFile {
    /// Reads every `CERTIFICATE` block of a PEM file (text around them is ignored, as
    /// OpenSSL ignores it).
    pub fn read(path: &Path) -> Result<Self, CaFileError> {
        Self::from_pem(&std::fs::read(path)?)
    }

    /// Parses PEM text holding one or more certificates.
    pub fn from_pem(pem: &[u8]) -> Result<Self, CaFileError> {
        let mut certs = Vec::new();
        for (i, der) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let der = der.map_err(|e| CaFileError::Pem(e.to_string()))?;
            let bad = |reason: String| CaFileError::BadCertificate { index: i + 1, reason };
            let anchor = webpki::anchor_from_trusted_cert(&der)
                .map_err(|e| bad(format!("{e:?}")))?
                .to_owned();
            let (_, parsed) = X509Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
            let validity = parsed.validity();
            let (not_before, not_after) = (validity.not_before.timestamp(), validity.not_after.timestamp());
            certs.push(Trusted {
                der: der.clone(),
                anchor,
                not_before,
                not_after,
            });
        }
        if certs.is_empty() {
            return Err(CaFileError::Empty);
        }
        Ok(Self { certs })
    }

    /// The anchors that can vouch for anything now. OpenSSL refuses a chain whose trust
    /// anchor is expired or not yet valid (X509_V_ERR_CERT_HAS_EXPIRED at the top of the
    /// chain), and picks a valid one when a renewed CA sits beside the old one; webpki
    /// never looks at an anchor's dates, so the stale ones are left out here.
    fn roots_valid_at(&self, now: i64) -> RootCertStore {
        RootCertStore {
            roots: self
                .certs
                .iter()
                .filter(|c| c.valid_at(now))
                .map(|c| c.anchor.clone())
                .collect(),
        }
    }

    /// The anchors [`CaFile::roots_valid_at`] leaves out.
    fn roots_stale_at(&self, now: i64) -> RootCertStore {
        RootCertStore {
            roots: self
                .certs
                .iter()
                .filter(|c| !c.valid_at(now))
                .map(|c| c.anchor.clone())
                .collect(),
        }
    }

    /// Whether the file holds exactly this certificate, valid now.
    fn pins(&self, end_entity: &CertificateDer<'_>, now: i64) -> bool {
        self.certs
            .iter()
            .any(|c| c.der.as_ref() == end_entity.as_ref() && c.valid_at(now))
    }

    /// Whether a certificate of the file, valid now and fit to issue certificates,
    /// signed `leaf`: for the leaves webpki does not chain (v1, CA:TRUE); one level.
    fn issued(
        &self,
        leaf: &X509Certificate<'_>,
        leaf_der: &[u8],
        now: i64,
        algorithms: &WebPkiSupportedAlgorithms,
    ) -> bool {
        let Some((signed, algorithm, signature)) = signed_parts(leaf, leaf_der) else {
            return false;
        };
        self.certs.iter().filter(|c| c.valid_at(now)).any(|c| {
            let Ok((_, issuer)) = X509Certificate::from_der(&c.der) else {
                return false;
            };
            issuer.subject().as_raw() == leaf.issuer().as_raw()
                && can_issue(&issuer)
                && signature_verifies(issuer.public_key().raw, algorithm, signed, signature, algorithms)
        })
    }
}

/// A rustls client configuration that verifies servers against `ca` as the Perl client
/// does, for reqwest's `tls_backend_preconfigured`. Same crypto provider and protocol
/// versions reqwest would pick, and the ALPN it would offer (HTTP/1.1 only: the
/// `http2` feature is off).
pub fn client_config(ca: Arc<CaFile>, client: Option<&ClientIdentity>) -> Result<ClientConfig, Error> {
    let provider = default_provider();
    let verifier = CaFileVerifier::with_provider(ca, &provider);
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let (certs, key) = client_identity(identity)?;
            builder.with_client_auth_cert(certs, key)?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The process's crypto provider, or the one reqwest would install (aws-lc-rs).
fn default_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// The client certificate chain and key of an mTLS identity, from PEM. Errors say what
/// is missing, never what the PEM holds.
pub fn client_identity(
    identity: &ClientIdentity,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
    let certs = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::General("client_cert is not PEM certificates".into()))?;
    if certs.is_empty() {
        return Err(Error::General("client_cert holds no PEM certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.expose_secret().as_bytes())
        .map_err(|_| Error::General("client_key is not a PEM private key".into()))?;
    Ok((certs, key))
}

/// Verifies the server's certificate against a [`CaFile`]: webpki, plus the rules by
/// which OpenSSL and IO::Socket::SSL accept more (see the module doc).
#[derive(Debug)]
pub struct CaFileVerifier {
    ca: Arc<CaFile>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // x509-parser reads what webpki does not expose. Should it fail where webpki
        // succeeds, webpki's verdict alone stands (no key-usage or CN rules).
        let leaf = X509Certificate::from_der(end_entity).ok().map(|(_, leaf)| leaf);
        let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let parsed = match (ParsedCertificate::try_from(end_entity), &leaf) {
            (Ok(parsed), _) => parsed,
            (Err(e), Some(leaf)) if is_older_than_v3(&e) => return self.verify_v1(end_entity, leaf, server_name, secs),
            (Err(e), _) => return Err(e),
        };

        let roots = self.ca.roots_valid_at(secs);
        match verify_server_cert_signed_by_trust_anchor(&parsed, &roots, intermediates, now, self.algorithms.all) {
            Ok(()) => {}
            // X509_V_FLAG_PARTIAL_CHAIN (which IO::Socket::SSL sets): a certificate in the
            // file is trusted as it is, even as the server's own certificate, whether
            // self-signed with CA:TRUE (webpki: CaUsedAsEndEntity) or a leaf issued by a
            // CA that is not in the file (webpki: UnknownIssuer). Byte-identical only,
            // and within its dates; the handshake signature still proves the server
            // holds its key, and the purpose and name checks below still apply.
            Err(e) if is_untrusted_end_entity(&e) && self.ca.pins(end_entity, secs) => {}
            // OpenSSL does not mind CA:TRUE on the server's certificate; webpki stops
            // at it (CaUsedAsEndEntity), so a CA of the file having signed it is checked
            // here. Its dates were checked before that error.
            Err(e)
                if is_ca_used_as_end_entity(&e)
                    && leaf
                        .as_ref()
                        .is_some_and(|leaf| self.ca.issued(leaf, end_entity, secs, &self.algorithms)) => {}
            // Say so when only an out-of-date CA certificate would have vouched for it:
            // "UnknownIssuer" would send the operator looking in the wrong place.
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if verify_server_cert_signed_by_trust_anchor(
                    &parsed,
                    &self.ca.roots_stale_at(secs),
                    intermediates,
                    now,
                    self.algorithms.all,
                )
                .is_ok() =>
            {
                return Err(refusal(
                    "the CA file's certificate that issued it is expired or not yet valid",
                ));
            }
            Err(e) => return Err(e),
        }
        if let Some(leaf) = &leaf {
            server_purpose(leaf)?;
        }
        match verify_server_name(&parsed, server_name) {
            Err(e) if !leaf.as_ref().is_some_and(|leaf| common_name_names(leaf, server_name)) => Err(e),
            // A subjectAltName matched, or else the Common Name did by the rule of
            // IO::Socket::SSL's `www` scheme.
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match verify_tls12_signature(message, cert, dss, &self.algorithms) {
            Err(e) if is_older_than_v3(&e) => self.v1_handshake_signature(message, cert, dss, false),
            checked => checked,
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match verify_tls13_signature(message, cert, dss, &self.algorithms) {
            Err(e) if is_older_than_v3(&e) => self.v1_handshake_signature(message, cert, dss, true),
            checked => checked,
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl CaFileVerifier {
    /// A verifier against `ca` with the default crypto provider's algorithms (as
    /// [`client_config`] builds it): for checking certificates without a connection
    /// (the fuzz target `ca_pem` in `fuzz/`).
    pub fn new(ca: Arc<CaFile>) -> Self {
        Self::with_provider(ca, &default_provider())
    }

    fn with_provider(ca: Arc<CaFile>, provider: &CryptoProvider) -> Self {
        Self {
            ca,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// An X.509 v1 (or v2) server certificate, which webpki does not read, checked as
    /// OpenSSL checks it: within its dates; trusted because the file holds it (partial
    /// chain again) or because a certificate of the file signed it; named by its CN
    /// (no extensions, so no subjectAltName and no key usages). Intermediates the
    /// server sends are not followed here.
    fn verify_v1(
        &self,
        end_entity: &CertificateDer<'_>,
        leaf: &X509Certificate<'_>,
        server_name: &ServerName<'_>,
        now: i64,
    ) -> Result<ServerCertVerified, Error> {
        if leaf.version() == X509Version::V3 {
            return Err(Error::InvalidCertificate(CertificateError::BadEncoding));
        }
        let validity = leaf.validity();
        if now < validity.not_before.timestamp() {
            return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
        }
        if now > validity.not_after.timestamp() {
            return Err(Error::InvalidCertificate(CertificateError::Expired));
        }
        if !self.ca.pins(end_entity, now) && !self.ca.issued(leaf, end_entity, now, &self.algorithms) {
            return Err(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        }
        server_purpose(leaf)?;
        if common_name_names(leaf, server_name) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        }
    }

    /// The handshake signature made with the key of a v1 certificate (accepted by
    /// [`Self::verify_v1`]), checked with that key as rustls checks it for v3: the
    /// first algorithm of the scheme for TLS 1.3, any of them for TLS 1.2.
    fn v1_handshake_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, Error> {
        let (_, leaf) =
            X509Certificate::from_der(cert).map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let spki = SubjectPublicKeyInfoDer::from(leaf.public_key().raw);
        if tls13 {
            return verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms);
        }
        let candidates = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algorithms)| *algorithms)
            .ok_or(Error::PeerMisbehaved(
                PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        let key = webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if candidates
            .iter()
            .any(|algorithm| key.verify_signature(*algorithm, message, dss.signature()).is_ok())
        {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(Error::InvalidCertificate(CertificateError::BadSignature))
        }
    }
}

/// webpki refuses anything but X.509 v3 with this.
fn is_older_than_v3(error: &Error) -> bool {
    matches!(webpki_error(error), Some(webpki::Error::UnsupportedCertVersion))
}

/// The webpki error rustls passes on as `Other`, for the ones it has no variant for.
fn webpki_error(error: &Error) -> Option<&webpki::Error> {
    match error {
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => inner.downcast_ref(),
        _ => None,
    }
}

/// What a certificate's signature covers, the signature algorithm (the content of its
/// AlgorithmIdentifier, as webpki's algorithm ids are written) and the signature.
fn signed_parts<'a>(cert: &'a X509Certificate<'a>, der: &'a [u8]) -> Option<(&'a [u8], &'a [u8], &'a [u8])> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let (_, outer) = Any::from_der(der).ok()?;
    let (rest, _) = Any::from_der(outer.data).ok()?;
    let (_, algorithm) = Any::from_der(rest).ok()?;
    Some((
        cert.tbs_certificate.as_ref(),
        algorithm.data,
        &cert.signature_value.data,
    ))
}

/// OpenSSL's `X509_check_ca` for the issuer at the top of a chain: CA:TRUE, or a v1
/// self-signed certificate (OpenSSL's "legacy v1 root"); and a key usage, if present,
/// must allow signing certificates.
fn can_issue(issuer: &X509Certificate<'_>) -> bool {
    if let Ok(Some(ku)) = issuer.key_usage() {
        if !ku.value.key_cert_sign() {
            return false;
        }
    }
    match issuer.basic_constraints() {
        Ok(Some(bc)) => bc.value.ca,
        _ => issuer.version() == X509Version::V1 && issuer.subject().as_raw() == issuer.issuer().as_raw(),
    }
}

/// Whether `signature` over `message` verifies with the key `spki` (DER) by the
/// algorithm `algorithm_id` names, among the provider's.
fn signature_verifies(
    spki: &[u8],
    algorithm_id: &[u8],
    message: &[u8],
    signature: &[u8],
    algorithms: &WebPkiSupportedAlgorithms,
) -> bool {
    let spki = SubjectPublicKeyInfoDer::from(spki);
    let Ok(key) = webpki::RawPublicKeyEntity::try_from(&spki) else {
        return false;
    };
    algorithms
        .all
        .iter()
        .filter(|algorithm| algorithm.signature_alg_id().as_ref() == algorithm_id)
        .any(|algorithm| key.verify_signature(*algorithm, message, signature).is_ok())
}

/// A refusal by one of the rules added here, in words for the operator. rustls shows
/// an `Other` certificate error by its `Debug` form, so that is the sentence.
struct Refusal(&'static str);

impl std::fmt::Debug for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Refusal {}

fn refusal(why: &'static str) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refusal(why)))))
}

/// webpki's two ways of saying "this certificate is not vouched for by a CA in the
/// file", which a pinned certificate overrides. Any other failure (bad signature,
/// expired intermediate, wrong purpose...) stands.
fn is_untrusted_end_entity(error: &Error) -> bool {
    matches!(error, Error::InvalidCertificate(CertificateError::UnknownIssuer)) || is_ca_used_as_end_entity(error)
}

fn is_ca_used_as_end_entity(error: &Error) -> bool {
    matches!(webpki_error(error), Some(webpki::Error::CaUsedAsEndEntity))
}

/// OpenSSL's `sslserver` purpose for the server's certificate (`check_purpose_ssl_server`
/// with `ca = 0`, applied even when the certificate is itself the trust anchor): an
/// extended key usage, a Netscape cert type or a key usage, when present, must allow a
/// TLS server. webpki checks only the first.
fn server_purpose(leaf: &X509Certificate<'_>) -> Result<(), Error> {
    for extension in leaf.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::ExtendedKeyUsage(eku) if !eku.server_auth => {
                return Err(refusal("its extended key usage does not allow a TLS server"));
            }
            ParsedExtension::NSCertType(ns) if !ns.ssl_server() => {
                return Err(refusal("its Netscape certificate type does not allow a TLS server"));
            }
            ParsedExtension::KeyUsage(ku)
                if !(ku.digital_signature() || ku.key_encipherment() || ku.key_agreement()) =>
            {
                return Err(refusal("its key usage does not allow a TLS server"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the certificate's Common Name names the host, by IO::Socket::SSL's `www`
/// scheme (what LWP's `verify_hostname` asks for).
fn common_name_names(leaf: &X509Certificate<'_>, server_name: &ServerName<'_>) -> bool {
    let host = match server_name {
        ServerName::DnsName(name) => Host::Dns(name.as_ref()),
        ServerName::IpAddress(ip) => Host::Ip(IpAddr::from(*ip)),
        _ => return false,
    };
    // OpenSSL's X509_NAME_get_text_by_NID: the first CN of the subject.
    let Some(cn) = leaf.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) else {
        return false;
    };
    let dns_names = leaf.subject_alternative_name().ok().flatten().map_or(0, |san| {
        san.value
            .general_names
            .iter()
            .filter(|n| matches!(n, GeneralName::DNSName(_)))
            .count()
    });
    cn_names_host(&host, dns_names, cn)
}

/// The host a client connects to, as IO::Socket::SSL tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host<'a> {
    Dns(&'a str),
    Ip(IpAddr),
}

/// IO::Socket::SSL's `verify_hostname_of_cert` with the `www` scheme (`check_cn =>
/// 'when_only'`, `ip_in_cn => 4`, `wildcards_in_cn => 'anywhere'`), for the Common
/// Name once the subjectAltName did not match:
/// - a DNS host is matched against the CN only when the certificate has no DNS
///   subjectAltName at all (IP entries do not count);
/// - an IPv4 host is matched against the CN whatever the subjectAltName holds (only IP
///   entries are compared to it, so "DNS names present" never stops the fallback), as
///   the exact text of the address; never an IPv6 host.
fn cn_names_host(host: &Host<'_>, dns_alt_names: usize, cn: &str) -> bool {
    match host {
        Host::Dns(name) => dns_alt_names == 0 && dns_name_matches(name, cn),
        Host::Ip(IpAddr::V4(ip)) => cn == ip.to_string(),
        Host::Ip(IpAddr::V6(_)) => false,
    }
}

/// A DNS host against a name from a certificate: case-insensitive, a final dot ignored
/// on both (IO::Socket::SSL strips it). A wildcard is honoured only as the whole
/// leftmost label standing for exactly one label, with at least two labels under it
/// (`*.example.org`, not `*.org`), as webpki honours it in a subjectAltName.
/// IO::Socket::SSL also takes partial labels (`w*.example.org`) and checks the public
/// suffix list; those rare forms are refused here rather than guessed at.
fn dns_name_matches(host: &str, pattern: &str) -> bool {
    let host = host.trim_end_matches('.');
    let pattern = pattern.trim_end_matches('.');
    if host.is_empty() || pattern.is_empty() {
        return false;
    }
    match pattern.strip_prefix("*.") {
        Some(parent) => {
            let Some((label, rest)) = host.split_once('.') else {
                return false;
            };
            parent.contains('.')
                && !parent.contains('*')
                && !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && rest.eq_ignore_ascii_case(parent)
        }
        None => host.eq_ignore_ascii_case(pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: Host<'static> = Host::Ip(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn a_dns_host_uses_the_cn_only_without_dns_alt_names() {
        assert!(cn_names_host(&Host::Dns("rt.example.org"), 0, "rt.example.org"));
        assert!(!cn_names_host(&Host::Dns("rt.example.org"), 1, "rt.example.org"));
        assert!(!cn_names_host(&Host::Dns("rt.example.org"), 0, "other.example.org"));
    }

    #[test]
    fn an_ipv4_host_matches_the_cn_as_text_even_beside_dns_alt_names() {
        assert!(cn_names_host(&V4, 0, "127.0.0.1"));
        assert!(cn_names_host(&V4, 3, "127.0.0.1"));
        assert!(!cn_names_host(&V4, 0, "127.0.0.2"));
        assert!(!cn_names_host(&V4, 0, "localhost"));
        assert!(!cn_names_host(&V4, 0, "127.000.000.001"));
    }

    #[test]
    fn an_ipv6_host_never_matches_a_cn() {
        let v6 = Host::Ip(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
        assert!(!cn_names_host(&v6, 0, "::1"));
    }

    #[test]
    fn dns_names_compare_without_case_or_final_dot() {
        assert!(dns_name_matches("RT.Example.org", "rt.example.ORG"));
        assert!(dns_name_matches("rt.example.org.", "rt.example.org"));
        assert!(dns_name_matches("rt.example.org", "rt.example.org."));
        assert!(!dns_name_matches("rt.example.org", "example.org"));
        assert!(!dns_name_matches("", ""));
        assert!(!dns_name_matches("rt.example.org", ""));
    }

    #[test]
    fn a_wildcard_stands_for_one_whole_leftmost_label() {
        assert!(dns_name_matches("rt.example.org", "*.example.org"));
        assert!(dns_name_matches("RT.example.org", "*.EXAMPLE.org"));
        assert!(!dns_name_matches("a.rt.example.org", "*.example.org"));
        assert!(!dns_name_matches("example.org", "*.example.org"));
        assert!(!dns_name_matches("example.org", "*.org"));
        assert!(!dns_name_matches("rt.example.org", "r*.example.org"));
        assert!(!dns_name_matches("rt.example.org", "*.*.org"));
        assert!(!dns_name_matches("rt.example.org", "rt.*.org"));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        assert!(matches!(CaFile::from_pem(b""), Err(CaFileError::Empty)));
        assert!(matches!(CaFile::from_pem(b"garbage\n"), Err(CaFileError::Empty)));
        let key_only = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(matches!(CaFile::from_pem(key_only), Err(CaFileError::Empty)));
    }

    #[test]
    fn a_broken_certificate_is_named_by_position() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = CaFile::from_pem(pem).unwrap_err();
        assert!(matches!(err, CaFileError::BadCertificate { index: 1, .. }), "{err}");
    }

    #[test]
    fn only_the_two_untrusted_issuer_errors_can_be_pinned_away() {
        let other = |e: webpki::Error| Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))));
        assert!(is_untrusted_end_entity(&Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        )));
        assert!(is_untrusted_end_entity(&other(webpki::Error::CaUsedAsEndEntity)));
        assert!(!is_untrusted_end_entity(&other(webpki::Error::EndEntityUsedAsCa)));
        assert!(!is_untrusted_end_entity(&Error::InvalidCertificate(
            CertificateError::Expired
        )));
        assert!(!is_untrusted_end_entity(&Error::InvalidCertificate(
            CertificateError::BadSignature
        )));
        assert!(!is_untrusted_end_entity(&Error::InvalidCertificate(
            CertificateError::NotValidForName
        )));
    }
}
