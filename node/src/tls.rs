//! The node's TLS listener: rustls (ring provider only) with a certificate that can be replaced
//! while the node runs. [`CertStore`] answers every handshake with the key it holds now;
//! [`CertStore::reload`] reads the files again (on SIGHUP) and swaps the key in only if the new
//! files parse and the key matches the certificate, so a bad file keeps the old certificate.
//! Connections already open keep the session they negotiated: nothing is dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no PEM certificate.
    #[error("TLS certificate {path}: {reason}")]
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file is unreadable or holds no PEM private key.
    #[error("TLS key {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key is of a kind rustls cannot sign with, or is not the certificate's key.
    #[error("TLS key {key} does not fit certificate {cert}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8, PKCS#1 or SEC1),
/// and checks that the key belongs to the leaf.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_err = |reason: String| TlsError::Cert { path: cert.to_owned(), reason };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no PEM certificate (\"BEGIN CERTIFICATE\") in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key.to_owned(), reason: e.to_string() })?;
    let ck = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(ck)
}

/// The certificate the listener presents, replaceable at run time.
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Loads the certificate and key; fails if either is unusable.
    pub fn open(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let ck = load_certified_key(cert, key)?;
        Ok(Self { cert: cert.to_owned(), key: key.to_owned(), current: RwLock::new(Arc::new(ck)) })
    }

    /// Reads the files again. On success new handshakes present the new certificate; on
    /// failure the current one stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ck = Arc::new(load_certified_key(&self.cert, &self.key)?);
        // A poisoned lock only means a panic elsewhere while holding it; the value is a
        // complete `Arc` either way.
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = ck;
        Ok(())
    }

    /// The certificate file this store reads.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Names the files only: the key never reaches a log through `Debug`.
impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore").field("cert", &self.cert).field("key", &self.key).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The rustls server configuration of the listener: TLS 1.2 and 1.3 with the ring provider's
/// safe defaults, no client certificates, the certificate from `store`.
pub fn server_config(store: Arc<CertStore>) -> Result<rustls::ServerConfig, TlsError> {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(store);
    Ok(config)
}
