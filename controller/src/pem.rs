//! PEM files of the TLS stack (the engine's CA and client certificate, the web server's
//! certificate, key and client CA): read bounded, and reported without quoting them.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Far above any certificate chain or key; a larger "PEM file" is a mistake in the path.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why a PEM file cannot be used. The reason never quotes the file: the parser's own errors
/// can hold a line of it, and a key file's lines are secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PemError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// Every certificate in the PEM file `path`; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, reason(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(error(path, "no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// The private key in the PEM file `path` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| error(path, reason(&e, "private key (PKCS#8, PKCS#1 or SEC1)")))
}

/// The certificates of the PEM file `path` as the only trusted roots.
pub fn roots(path: &Path) -> Result<RootCertStore, PemError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    let meta = std::fs::metadata(path).map_err(|e| error(path, e.to_string()))?;
    if !meta.is_file() || meta.len() > MAX_PEM_BYTES {
        return Err(error(
            path,
            format!("not a PEM file (a regular file of at most {MAX_PEM_BYTES} bytes)"),
        ));
    }
    std::fs::read(path).map_err(|e| error(path, e.to_string()))
}

fn error(path: &Path, reason: String) -> PemError {
    PemError {
        path: path.to_owned(),
        reason,
    }
}

fn reason(error: &rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => format!("no PEM {what} in it"),
        _ => format!("not a valid PEM {what} file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_pem_is_named_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nS3CR3T-LINE!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = private_key(&key).unwrap_err();
        assert_eq!(e.path, key);
        assert!(!e.to_string().contains("S3CR3T"), "{e}");
        let e = certificates(&key).unwrap_err();
        assert!(e.reason.contains("not a valid PEM certificate"), "{e}");
        let e = roots(dir.path()).unwrap_err();
        assert!(e.reason.contains("not a PEM file"), "{e}");
    }
}
