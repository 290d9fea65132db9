//! The `ca_pem` / `--ca-file` path (`rt::tls`): any PEM text gives a CA file or a clear
//! error, and any certificate chain a server could present is accepted or refused,
//! never a panic. A chain accepted at a time is within the server certificate's dates
//! and is vouched for by the file: the certificate is in it, or its issuer is a
//! certificate of the file or one the server sent. A client identity (`client_cert`,
//! `client_key`) is read or refused with an error that quotes nothing of the PEM.
//!
//! Input: the CA file's PEM, a NUL byte, the server's chain as PEM (its certificate
//! first), optionally a NUL byte and the host name connected to.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rt_mailgate::core::credentials::ClientIdentity;
use rt_mailgate::rt::tls::{client_identity, CaFile, CaFileVerifier};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

/// 2027-01-15: within the seeds' certificates' dates.
const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let ca_pem = parts.next().unwrap_or_default();
    let chain_pem = parts.next().unwrap_or_default();
    let host = String::from_utf8_lossy(parts.next().unwrap_or(b"rt.example")).into_owned();

    let identity = ClientIdentity {
        cert_pem: String::from_utf8_lossy(chain_pem).into_owned(),
        key_pem: String::from_utf8_lossy(ca_pem).into_owned().into(),
    };
    if let Err(e) = client_identity(&identity) {
        let text = e.to_string();
        assert!(
            [
                "client_cert is not PEM",
                "client_cert holds no PEM",
                "client_key is not a PEM"
            ]
            .iter()
            .any(|fixed| text.contains(fixed)),
            "an unexpected error: {text}"
        );
    }

    let ca = match CaFile::from_pem(ca_pem) {
        Ok(ca) => ca,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let file: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(ca_pem).filter_map(Result::ok).collect();
    assert!(!file.is_empty(), "a CA file without a certificate was read");
    let Ok(chain) = CertificateDer::pem_slice_iter(chain_pem).collect::<Result<Vec<_>, _>>() else {
        return;
    };
    let Some((leaf, intermediates)) = chain.split_first() else {
        return;
    };
    let name = ServerName::try_from(host.as_str())
        .map(|n| n.to_owned())
        .unwrap_or_else(|_| ServerName::try_from("rt.example").expect("a DNS name"));
    let verifier = CaFileVerifier::new(Arc::new(ca));
    let now = UnixTime::since_unix_epoch(Duration::from_secs(NOW));
    if verifier
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .is_ok()
    {
        let (_, parsed) = X509Certificate::from_der(leaf).expect("an accepted certificate parses");
        let validity = parsed.validity();
        let now = NOW as i64;
        assert!(
            validity.not_before.timestamp() <= now && now <= validity.not_after.timestamp(),
            "accepted outside its dates"
        );
        let in_file = file.iter().any(|c| c.as_ref() == leaf.as_ref());
        let issuer = parsed.issuer().as_raw();
        let issued_by = |der: &CertificateDer<'_>| {
            X509Certificate::from_der(der).is_ok_and(|(_, c)| c.subject().as_raw() == issuer)
        };
        assert!(
            in_file || file.iter().any(issued_by) || intermediates.iter().any(issued_by),
            "accepted a certificate nothing in the file vouches for"
        );
    }
});
