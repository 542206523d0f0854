//! The `--web-config` file, in the Prometheus exporter-toolkit web configuration format.
//!
//! Only the keys swarm-operator implements are accepted: a key of the format it does not
//! implement (`cipher_suites`, `http_server_config`, inline `cert`, …) is an error naming it,
//! never silently ignored, so that nobody believes a setting protects them when it does not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::{Budget, DefaultMessageFormatter, DuplicateKeyPolicy, MessageFormatter};

/// A web configuration file is a few lines; anything larger is not one.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Why the web configuration cannot be used. Never holds a password hash.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file could not be read.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is too large or not a regular file.
    #[error("{}: {message}", file.display())]
    NotAConfig {
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// The YAML does not match the format.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: u64,
        /// 1-based column (0 when unknown).
        column: u64,
        /// What is wrong and what to do.
        message: String,
    },
    /// A value is unusable.
    #[error("{}: {field}: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The key, e.g. `tls_server_config.cert_file` or `basic_auth_users.alice`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
}

/// `client_auth_type`: the Go `crypto/tls` policies exporter-toolkit accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    NoClientCert,
    /// A certificate is asked for, but not required and not verified.
    RequestClientCert,
    /// A certificate is required, but not verified against `client_ca_file`
    /// (`RequireClientCert` is exporter-toolkit's older name for it).
    #[serde(alias = "RequireClientCert")]
    RequireAnyClientCert,
    /// A certificate, if sent, must be signed by `client_ca_file`.
    VerifyClientCertIfGiven,
    /// A certificate signed by `client_ca_file` is required.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// Whether certificates are checked against `client_ca_file`.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// `min_version` / `max_version`. TLS 1.0 and 1.1 are not offered (rustls has neither).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "TLS12")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "TLS13")]
    Tls13,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    tls_server_config: Option<RawTls>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: ClientAuth,
    client_ca_file: Option<PathBuf>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
}

/// The TLS settings, with paths resolved against the configuration file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// Whether and how clients present certificates.
    pub client_auth: ClientAuth,
    /// The CA bundle (PEM) client certificates are verified against.
    pub client_ca_file: Option<PathBuf>,
    /// The oldest version offered (default TLS 1.2).
    pub min_version: TlsVersion,
    /// The newest version offered (default TLS 1.3).
    pub max_version: TlsVersion,
}

/// A parsed web configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// The file it was read from (named in later errors).
    pub file: PathBuf,
    /// TLS on every connection, when set.
    pub tls: Option<TlsSettings>,
    /// User name → bcrypt hash; basic auth is required when not empty.
    pub basic_auth_users: BTreeMap<String, String>,
}

impl std::fmt::Debug for WebConfig {
    // The hashes stay out of every log line, even at debug level.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("file", &self.file)
            .field("tls", &self.tls)
            .field("users", &self.basic_auth_users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebConfig {
    /// Reads and checks `file` (the certificate files are read when the server is built).
    pub fn load(file: &Path) -> Result<WebConfig, WebConfigError> {
        let read_error = |source| WebConfigError::Read {
            file: file.to_owned(),
            source,
        };
        let meta = std::fs::metadata(file).map_err(read_error)?;
        if !meta.is_file() {
            return Err(WebConfigError::NotAConfig {
                file: file.to_owned(),
                message: "not a regular file: give the web configuration YAML file".to_owned(),
            });
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(WebConfigError::NotAConfig {
                file: file.to_owned(),
                message: format!(
                    "{} bytes: a web configuration is at most {MAX_FILE_BYTES} bytes",
                    meta.len()
                ),
            });
        }
        let text = std::fs::read_to_string(file).map_err(read_error)?;
        Self::parse(file, &text)
    }

    /// Parses `text`, read from `file` (relative paths resolve against its directory, as
    /// exporter-toolkit resolves them).
    pub fn parse(file: &Path, text: &str) -> Result<WebConfig, WebConfigError> {
        // An empty file is valid in exporter-toolkit too: no TLS, no authentication.
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str_with_options(text, options())
                .map_err(|e| parse_error(file, &e))?
        };
        let base = file.parent().unwrap_or(Path::new("."));
        let invalid = |field: &str, message: String| WebConfigError::Invalid {
            file: file.to_owned(),
            field: field.to_owned(),
            message,
        };
        let tls = match raw.tls_server_config {
            None => None,
            Some(tls) => {
                let required = |value: Option<PathBuf>, key: &str| {
                    value.filter(|p| !p.as_os_str().is_empty()).ok_or_else(|| {
                        invalid(
                            &format!("tls_server_config.{key}"),
                            format!(
                                "required with tls_server_config (a PEM file; `{key}` given \
                                 inline is not supported)"
                            ),
                        )
                    })
                };
                let cert_file = base.join(required(tls.cert_file, "cert_file")?);
                let key_file = base.join(required(tls.key_file, "key_file")?);
                let client_ca_file = tls.client_ca_file.map(|p| base.join(p));
                match (tls.client_auth_type, &client_ca_file) {
                    (ClientAuth::NoClientCert, Some(_)) => {
                        return Err(invalid(
                            "tls_server_config.client_ca_file",
                            "set, but client_auth_type is NoClientCert: set client_auth_type \
                             (RequireAndVerifyClientCert, to require certificates it signed)"
                                .to_owned(),
                        ));
                    }
                    (auth, None) if auth.verifies() => {
                        return Err(invalid(
                            "tls_server_config.client_ca_file",
                            format!(
                                "required with client_auth_type {auth:?}: the CA bundle client \
                                 certificates are verified against"
                            ),
                        ));
                    }
                    _ => {}
                }
                let min_version = tls.min_version.unwrap_or(TlsVersion::Tls12);
                let max_version = tls.max_version.unwrap_or(TlsVersion::Tls13);
                if min_version > max_version {
                    return Err(invalid(
                        "tls_server_config.min_version",
                        "newer than max_version".to_owned(),
                    ));
                }
                Some(TlsSettings {
                    cert_file,
                    key_file,
                    client_auth: tls.client_auth_type,
                    client_ca_file,
                    min_version,
                    max_version,
                })
            }
        };
        for (user, hash) in &raw.basic_auth_users {
            let field = format!("basic_auth_users.{user}");
            if user.is_empty() || user.contains(':') {
                return Err(invalid(
                    &field,
                    "a user name is not empty and holds no `:` (basic auth splits at the first \
                     one)"
                        .to_owned(),
                ));
            }
            // Checked now so that a typo fails at start, not at the first scrape; the hash
            // itself is never quoted.
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(invalid(
                    &field,
                    "not a bcrypt hash ($2a$, $2b$ or $2y$, cost, 53 characters): make one with \
                     `htpasswd -nBC 10 USER`"
                        .to_owned(),
                ));
            }
        }
        Ok(WebConfig {
            file: file.to_owned(),
            tls,
            basic_auth_users: raw.basic_auth_users,
        })
    }
}

/// Duplicate keys are errors, and a small budget: a web configuration is a few lines.
fn options() -> serde_saphyr::Options {
    let mut budget = Budget::default();
    budget.max_events = 10_000;
    budget.max_aliases = 100;
    budget.max_anchors = 100;
    budget.max_nodes = 5_000;
    budget.max_depth = 8;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    options
}

fn parse_error(file: &Path, err: &serde_saphyr::Error) -> WebConfigError {
    let err = err.without_snippet();
    let (line, column) = err
        .location()
        .map_or((0, 0), |l| (l.line(), l.column().max(1)));
    let message = match err {
        serde_saphyr::Error::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown or unsupported key `{field}`: swarm-operator implements {} here",
            expected.join(", ")
        ),
        serde_saphyr::Error::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "unsupported value `{variant}`: allowed values are {}",
            expected.join(", ")
        ),
        // Type errors would quote the offending value, which may be a hash: say only where.
        serde_saphyr::Error::SerdeInvalidType { .. }
        | serde_saphyr::Error::SerdeInvalidValue { .. } => {
            "wrong kind of value here: see the exporter-toolkit web configuration format \
             (a map of tls_server_config keys, a map of user: bcrypt hash)"
                .to_owned()
        }
        other => DefaultMessageFormatter.format_message(other).into_owned(),
    };
    WebConfigError::Parse {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // cost 4: fast in tests; the format does not care.
    const HASH: &str = "$2b$04$4ARiUf1KbQrSd1xEtc9aKe8KD.ojTEAuQ3LArZnSt9bEprX4iSVmi";

    fn parse(text: &str) -> Result<WebConfig, WebConfigError> {
        WebConfig::parse(Path::new("/etc/op/web.yml"), text)
    }

    #[test]
    fn reads_the_exporter_toolkit_format_with_paths_relative_to_the_file() {
        let config = parse(&format!(
            "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /abs/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  \
             min_version: TLS13\nbasic_auth_users:\n  prometheus: '{HASH}'\n"
        ))
        .unwrap();
        let older_name = parse(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireClientCert\n",
        )
        .unwrap();
        assert_eq!(
            older_name.tls.unwrap().client_auth,
            ClientAuth::RequireAnyClientCert
        );
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/op/tls/server.crt"));
        assert_eq!(tls.key_file, Path::new("/abs/server.key"));
        assert_eq!(tls.client_ca_file.unwrap(), Path::new("/etc/op/ca.pem"));
        assert_eq!(tls.client_auth, ClientAuth::RequireAndVerifyClientCert);
        assert_eq!(
            (tls.min_version, tls.max_version),
            (TlsVersion::Tls13, TlsVersion::Tls13)
        );
        assert_eq!(config.basic_auth_users["prometheus"], HASH);
    }

    #[test]
    fn an_empty_file_protects_nothing() {
        let config = parse("\n").unwrap();
        assert!(config.tls.is_none() && config.basic_auth_users.is_empty());
    }

    #[test]
    fn unsupported_keys_are_located_errors_not_ignored() {
        let error =
            parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [X]\n")
                .unwrap_err()
                .to_string();
        assert!(error.starts_with("/etc/op/web.yml:4:3: "), "{error}");
        assert!(error.contains("`cipher_suites`"), "{error}");
        let error = parse("http_server_config:\n  http2: false\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("/etc/op/web.yml:1:1") && error.contains("`http_server_config`"),
            "{error}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_never_quote_a_hash() {
        let error = parse("basic_auth_users:\n  alice: 'secret-ish-not-a-hash'\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("basic_auth_users.alice"), "{error}");
        assert!(!error.contains("secret-ish"), "{error}");
        let error = parse("basic_auth_users:\n  alice: [secret-in-a-list]\n")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("/etc/op/web.yml:2:"), "{error}");
        assert!(!error.contains("secret-in-a-list"), "{error}");
        let error = parse(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("RequireAndVerifyClientCert") && error.contains(":4:"),
            "{error}"
        );
        let error =
            parse("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n")
                .unwrap_err()
                .to_string();
        assert!(error.contains("TLS12, TLS13"), "{error}");
    }

    #[test]
    fn inconsistent_tls_settings_are_refused() {
        let cases = [
            (
                "tls_server_config:\n  key_file: b\n",
                "tls_server_config.cert_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n",
                "tls_server_config.key_file",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
                "NoClientCert",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n",
                "client_ca_file: required",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n",
                "min_version",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    /// The example in manifests/operator/ stays valid, and its password is the one it says.
    #[test]
    fn the_manifest_example_is_valid() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/operator/web-config.example.yml");
        let config = WebConfig::load(&file).unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert_file, file.parent().unwrap().join("operator.crt"));
        assert!(bcrypt::verify("change me", &config.basic_auth_users["prometheus"]).unwrap());
    }

    #[test]
    fn the_debug_form_shows_users_but_no_hash() {
        let config = parse(&format!("basic_auth_users:\n  prometheus: '{HASH}'\n")).unwrap();
        let shown = format!("{config:?}");
        assert!(
            shown.contains("prometheus") && !shown.contains(HASH),
            "{shown}"
        );
    }
}
