//! The rustls server configuration of a `--web-config`'s `tls_server_config`: the server's
//! certificate (re-read when its files change) and the client certificate policy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::config::{ClientAuth, TlsSettings, TlsVersion};

/// Why TLS cannot be set up. Names the file; never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or holds nothing in PEM.
    #[error(transparent)]
    Pem(#[from] crate::pem::PemError),
    /// A key rustls cannot use, or one that does not belong to its certificate.
    #[error("{}: {message}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// rustls refused the combination (versions, key type, CA bundle).
    #[error("TLS settings of {}: {message}", file.display())]
    Settings {
        /// The web configuration file.
        file: PathBuf,
        /// rustls's reason.
        message: String,
    },
}

/// The certificate and key files, read into a key rustls can sign with.
fn load_key(settings: &TlsSettings, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let certs = crate::pem::certificates(&settings.cert_file)?;
    let der = crate::pem::private_key(&settings.key_file)?;
    let key_error = |message: String| TlsError::File {
        file: settings.key_file.clone(),
        message,
    };
    let key = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| key_error(format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(certs, key);
    certified.keys_match().map_err(|_| {
        key_error(format!(
            "this key does not belong to the certificate in {}",
            settings.cert_file.display()
        ))
    })?;
    Ok(certified)
}

fn modified(file: &Path) -> Option<SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

/// Serves the configured certificate, re-read when the modification time of its certificate
/// or key file changes, checked on every handshake (as exporter-toolkit re-reads per
/// connection), so that a renewed certificate is used without a restart. A renewal that
/// cannot be read keeps the last good certificate and is logged.
#[derive(Debug)]
struct ReloadingCert {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let stamps = (
            modified(&self.settings.cert_file),
            modified(&self.settings.key_file),
        );
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if (current.0, current.1) != stamps {
            match load_key(&self.settings, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.settings.cert_file.display(),
                                   "TLS certificate re-read");
                    *current = (stamps.0, stamps.1, Arc::new(key));
                }
                Err(error) => {
                    // Remember the stamps so that the warning comes once per change.
                    tracing::warn!(%error, "keeping the last good TLS certificate");
                    current.0 = stamps.0;
                    current.1 = stamps.1;
                }
            }
        }
        Some(current.2.clone())
    }
}

/// `RequestClientCert` / `RequireAnyClientCert`: a certificate is asked for (and, for the
/// latter, required) but not checked against any CA, as in Go's `crypto/tls`; the client
/// still proves it holds the certificate's key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Builds the server configuration, reading every file once now so that a mistake stops
/// the operator at start. `web_config` is the file named in errors about the combination.
pub fn server_config(
    settings: &TlsSettings,
    web_config: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let settings_error = |e: &dyn std::fmt::Display| TlsError::Settings {
        file: web_config.to_owned(),
        message: e.to_string(),
    };
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (settings.min_version..=settings.max_version).contains(v))
    .map(|(_, version)| version)
    .collect();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| settings_error(&e))?;
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ClientCertVerifier> = match settings.client_auth {
        ClientAuth::NoClientCert => WebPkiClientVerifier::no_client_auth(),
        ClientAuth::RequestClientCert | ClientAuth::RequireAnyClientCert => {
            Arc::new(AnyClientCert {
                mandatory: settings.client_auth == ClientAuth::RequireAnyClientCert,
                algorithms,
            })
        }
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert => {
            let file = settings
                .client_ca_file
                .as_deref()
                .ok_or_else(|| settings_error(&"client_ca_file is required"))?;
            let roots = crate::pem::roots(file)?;
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = if settings.client_auth == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder.build().map_err(|e| settings_error(&e))?
        }
    };
    let key = load_key(settings, &provider)?;
    let resolver = ReloadingCert {
        current: Mutex::new((
            modified(&settings.cert_file),
            modified(&settings.key_file),
            Arc::new(key),
        )),
        settings: settings.clone(),
        provider,
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    // HTTP/1.1 only: the server speaks nothing else.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
