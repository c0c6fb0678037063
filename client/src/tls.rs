//! TLS of the SDK: one rustls `ClientConfig` (ring provider) for HTTPS and WSS, trusting the
//! system's roots (through `rustls-platform-verifier`) plus optional private CAs, and the
//! translation of a failed handshake into one clear [`ClientError::Tls`].

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::ClientError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process's default rustls provider unless one is set: a `reqwest::Client`
/// built without this SDK (e.g. `reqwest::Client::new()` in the same program) needs one,
/// since reqwest is compiled without its own (aws-lc-rs) provider.
pub fn install_default_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is set either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Reads every PEM certificate of a CA file.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let err = |reason: String| ClientError::CaFile { path: path.display().to_string(), reason };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    parse_ca_pem(&bytes).map_err(err)
}

/// Parses the certificates of a PEM bundle; at least one is required.
pub(crate) fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs =
        CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate (\"BEGIN CERTIFICATE\") in it".into());
    }
    Ok(certs)
}

/// A verifier for a machine without any CA certificate and no private CA given: every
/// certificate is refused with a reason, so plain-HTTP use still works there.
#[derive(Debug)]
struct NoRoots(Arc<CryptoProvider>);

impl ServerCertVerifier for NoRoots {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn build(extra: Vec<CertificateDer<'static>>) -> Result<ClientConfig, ClientError> {
    install_default_provider();
    let provider = provider();
    let private = !extra.is_empty();
    let verifier: Arc<dyn ServerCertVerifier> =
        match rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone()) {
            Ok(v) => Arc::new(v),
            Err(e) if private => {
                return Err(ClientError::CaFile { path: "(given)".into(), reason: e.to_string() })
            }
            // No system roots at all: HTTPS needs a CA file then.
            Err(_) => Arc::new(NoRoots(provider.clone())),
        };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Transport(format!("TLS configuration: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // HTTP/1.1 only: the node speaks it, and the WebSocket upgrade needs it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The configuration trusting the system's roots plus `extra` (none: the system's only, built
/// once per process).
pub(crate) fn client_config(extra: Vec<CertificateDer<'static>>) -> Result<Arc<ClientConfig>, ClientError> {
    static SYSTEM: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if !extra.is_empty() {
        return build(extra).map(Arc::new);
    }
    if let Some(c) = SYSTEM.get() {
        return Ok(c.clone());
    }
    let c = Arc::new(build(Vec::new())?);
    Ok(SYSTEM.get_or_init(|| c).clone())
}

fn describe(e: &rustls::Error) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the node's certificate is not trusted (unknown issuer); pass --ca-file with the CA \
             certificate (PEM) that issued it"
                .into()
        }
        E::InvalidCertificate(CertificateError::NotValidForName)
        | E::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            "the node's certificate is not valid for this host name; use the name it was issued for".into()
        }
        E::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "the node's certificate has expired".into()
        }
        E::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the node's certificate is not valid yet (check the clocks)".into(),
        E::InvalidCertificate(c) => format!("the node's certificate is not acceptable ({c:?})"),
        other => format!("handshake failed: {other}"),
    }
}

/// The TLS failure inside an error chain (reqwest, hyper, tungstenite and io errors wrap it),
/// if there is one.
pub(crate) fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<ClientError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<rustls::Error>() {
            return Some(ClientError::Tls(describe(r)));
        }
        // `io::Error::source` skips the error it wraps (often another `io::Error`): go into it.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            let inner: &(dyn std::error::Error + 'static) = inner;
            cur = Some(inner);
            continue;
        }
        cur = err.source();
    }
    None
}
