//! A throwaway PKI for TLS tests, made with the openssl CLI: CAs, and certificates they sign.
//!
//! Files live in one temporary directory as `NAME.crt` / `NAME.key` (`ca.crt` is the first
//! CA), so a test can name them in configuration files with relative paths, as users do.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A directory of CAs and certificates.
pub struct Pki {
    openssl: PathBuf,
    dir: tempfile::TempDir,
}

impl Pki {
    /// A new directory holding one CA, `ca` (`ca.crt`, `ca.key`).
    pub fn new(openssl: &Path) -> Pki {
        let pki = Pki {
            openssl: openssl.to_owned(),
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        pki.ca("ca", "swarm-operator test CA");
        pki
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `file` in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Another self-signed CA, `NAME.crt` / `NAME.key`.
    pub fn ca(&self, name: &str, common_name: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={common_name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
    }

    /// A certificate `NAME.crt` (key `NAME.key`, common name `NAME`) signed by the CA `ca`,
    /// with `extensions` in openssl's extfile syntax (`subjectAltName=IP:127.0.0.1`,
    /// `extendedKeyUsage=serverAuth`, …, one a line).
    pub fn issue(&self, name: &str, ca: &str, extensions: &str) {
        std::fs::write(self.path(&format!("{name}.ext")), extensions).expect("write extfile");
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.crt"),
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new(&self.openssl)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("running openssl");
        assert!(
            output.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
