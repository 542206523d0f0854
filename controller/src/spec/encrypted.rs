//! `.age` files in the spec directory: age identities read once at start, files decrypted in memory.
//!
//! Supported: X25519 identities (`AGE-SECRET-KEY-1…` lines as `age-keygen` writes them, `#`
//! comments and blank lines allowed), binary and ASCII-armored files. Not supported: ssh keys,
//! passphrase (scrypt) files, plugins. Plaintext only ever lives in memory; no message here
//! quotes a key or a byte of content.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file name suffix that marks a file as age-encrypted.
pub const SUFFIX: &str = ".age";

/// Identity files are a few lines each: anything larger is not one (a misplaced mount).
const MAX_IDENTITY_FILE_BYTES: u64 = 64 * 1024;

/// Whether the file a spec refers to is age-encrypted (by its name, as users name them).
pub fn is_encrypted(relative: &str) -> bool {
    relative.len() > SUFFIX.len()
        && relative
            .get(relative.len() - SUFFIX.len()..)
            .is_some_and(|s| s.eq_ignore_ascii_case(SUFFIX))
}

/// How large the encrypted form of `plaintext_max` bytes may be: age adds 16 bytes per 64 KiB
/// chunk and a header of a few hundred bytes per recipient; armor adds a third (base64) and a
/// line break per 64 characters. Twice the plaintext plus 64 KiB covers both with room, and
/// still bounds what is read before decryption.
pub fn encrypted_limit(plaintext_max: usize) -> usize {
    plaintext_max.saturating_mul(2).saturating_add(64 * 1024)
}

/// The identities given with `--age-identity`, kept in memory (the keys zeroize their memory
/// when dropped). Its `Debug` shows only the identity files and how many keys they hold.
#[derive(Clone, Default)]
pub struct AgeIdentities {
    keys: Arc<Vec<age::x25519::Identity>>,
    files: Vec<PathBuf>,
}

impl fmt::Debug for AgeIdentities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgeIdentities")
            .field("files", &self.files)
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Why an identity file could not be used. Names the file and line, never the key.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The file could not be read.
    #[error("cannot read age identity file {}: {source}", path.display())]
    Read {
        /// The identity file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Larger than any identity file.
    #[error(
        "age identity file {} is {size} bytes: an identity file (as age-keygen writes it) is a few lines; is this the right file?",
        path.display()
    )]
    TooLarge {
        /// The identity file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A line that is not an identity, a comment or blank.
    #[error(
        "age identity file {} line {line}: {reason}: each line must be an X25519 identity `AGE-SECRET-KEY-1…` as age-keygen writes it, a `#` comment or blank (ssh keys, passphrases and plugins are not supported)",
        path.display()
    )]
    Line {
        /// The identity file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the line itself).
        reason: &'static str,
    },
    /// No identity in the file.
    #[error(
        "age identity file {} holds no identity: create one with `age-keygen -o FILE`",
        path.display()
    )]
    Empty {
        /// The identity file.
        path: PathBuf,
    },
}

/// Why an `.age` file could not be decrypted. The messages never quote key or content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptProblem {
    /// No `--age-identity` was given.
    #[error(
        "it is encrypted with age but the operator has no identity: pass --age-identity FILE with the key it was encrypted to (`age-keygen -y FILE` prints its recipient)"
    )]
    NoIdentities,
    /// None of the identities is a recipient of the file.
    #[error(
        "no identity matches: pass --age-identity with the key it was encrypted to (tried {}), or encrypt it again to the recipient of one of those (`age-keygen -y FILE` prints it)",
        files.join(", ")
    )]
    NoMatch {
        /// The identity files that were tried.
        files: Vec<String>,
    },
    /// Encrypted with a passphrase (`age -p`), which an unattended operator cannot type.
    #[error(
        "it is encrypted with a passphrase (`age -p`): encrypt it to a recipient with `age -r` instead"
    )]
    Passphrase,
    /// Not an age file, damaged or truncated.
    #[error("it is not a valid age file ({reason}): encrypt it again with `age -r RECIPIENT`")]
    Corrupt {
        /// What is wrong, in the crate's terms (never content).
        reason: &'static str,
    },
    /// The plaintext is larger than the file's use allows.
    #[error("its decrypted content is larger than {max} bytes")]
    TooLarge {
        /// The limit for this use.
        max: usize,
    },
}

impl AgeIdentities {
    /// No identities: every `.age` file is an error saying how to pass one.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads every identity file once (at start: a docker secret does not change under a
    /// running task).
    ///
    /// # Errors
    /// A file that cannot be read, is too large, holds no identity or has a line that is not
    /// one; the error names the file and line.
    pub fn read(paths: &[PathBuf]) -> Result<Self, IdentityError> {
        let mut keys = Vec::new();
        for path in paths {
            keys.extend(read_identity_file(path)?);
        }
        Ok(AgeIdentities {
            keys: Arc::new(keys),
            files: paths.to_vec(),
        })
    }

    /// Whether any identity was given.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Decrypts `encrypted` (binary or armored) and returns the plaintext, refusing more than
    /// `max` bytes of it.
    ///
    /// # Errors
    /// See [`DecryptProblem`].
    pub fn decrypt(&self, encrypted: &[u8], max: usize) -> Result<Vec<u8>, DecryptProblem> {
        if self.is_empty() {
            return Err(DecryptProblem::NoIdentities);
        }
        let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(encrypted))
            .map_err(|e| corrupt(&e))?;
        if decryptor.is_scrypt() {
            return Err(DecryptProblem::Passphrase);
        }
        let reader = decryptor
            .decrypt(self.keys.iter().map(|k| k as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => DecryptProblem::NoMatch {
                    files: self.files.iter().map(|f| f.display().to_string()).collect(),
                },
                other => corrupt(&other),
            })?;
        let mut plaintext = Vec::new();
        // One byte over the limit tells "too large" from "exactly the limit" without reading
        // (or decrypting) the rest.
        reader
            .take(max as u64 + 1)
            .read_to_end(&mut plaintext)
            .map_err(|_| DecryptProblem::Corrupt {
                reason: "the payload is damaged or truncated",
            })?;
        if plaintext.len() > max {
            return Err(DecryptProblem::TooLarge { max });
        }
        Ok(plaintext)
    }
}

/// Our own words for the crate's errors: its messages are localized at run time and some carry
/// I/O errors, which we do not need to pass on.
fn corrupt(e: &age::DecryptError) -> DecryptProblem {
    let reason = match e {
        age::DecryptError::InvalidHeader => "the header is invalid",
        age::DecryptError::InvalidMac => "the header MAC is wrong: it was changed",
        age::DecryptError::UnknownFormat => "an unknown age format, perhaps from a newer age",
        age::DecryptError::DecryptionFailed | age::DecryptError::KeyDecryptionFailed => {
            "decryption failed: it is damaged"
        }
        age::DecryptError::Io(_) => "it is damaged or truncated",
        _ => "it cannot be decrypted",
    };
    DecryptProblem::Corrupt { reason }
}

fn read_identity_file(path: &Path) -> Result<Vec<age::x25519::Identity>, IdentityError> {
    let read = |source| IdentityError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let size = file.metadata().map_err(read)?.len();
    if size > MAX_IDENTITY_FILE_BYTES {
        return Err(IdentityError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let mut text = String::new();
    file.take(MAX_IDENTITY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(read)?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason| IdentityError::Line {
            path: path.to_owned(),
            line: i + 1,
            reason,
        };
        if !line.starts_with("AGE-SECRET-KEY-1") {
            return Err(bad("not an age X25519 identity"));
        }
        // The crate's reasons are fixed strings ("invalid Bech32 encoding"…), never the key.
        keys.push(line.parse::<age::x25519::Identity>().map_err(bad)?);
    }
    // The text held the keys: clear it rather than leave it in freed memory.
    zeroize_string(&mut text);
    if keys.is_empty() {
        return Err(IdentityError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(keys)
}

fn zeroize_string(text: &mut String) {
    use age::secrecy::zeroize::Zeroize as _;
    text.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The Debian `age` tools; a missing tool skips only outside CI.
    fn have_age() -> bool {
        let found = Command::new("age").arg("--version").output().is_ok()
            && Command::new("age-keygen").arg("--version").output().is_ok();
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "age and age-keygen are required under CI (Debian package `age`)"
            );
            eprintln!("skipping: age / age-keygen not installed (apt-get install age)");
        }
        found
    }

    /// Makes an identity file with age-keygen; returns its path and recipient.
    fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
        let path = dir.join(name);
        let out = Command::new("age-keygen")
            .arg("-o")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let out = Command::new("age-keygen")
            .arg("-y")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            path,
            String::from_utf8(out.stdout).unwrap().trim().to_owned(),
        )
    }

    /// Encrypts `plaintext` with the age CLI to `recipient` (armored with `-a`).
    fn encrypt(dir: &Path, plaintext: &[u8], recipient: &str, armor: bool) -> Vec<u8> {
        let input = dir.join("plain.tmp");
        std::fs::write(&input, plaintext).unwrap();
        let mut cmd = Command::new("age");
        cmd.arg("-r").arg(recipient);
        if armor {
            cmd.arg("-a");
        }
        let out = cmd.arg(&input).output().unwrap();
        std::fs::remove_file(&input).unwrap();
        assert!(out.status.success(), "{out:?}");
        out.stdout
    }

    #[test]
    fn binary_and_armored_files_from_the_cli_decrypt() {
        if !have_age() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (key, recipient) = keygen(dir.path(), "key.txt");
        let ids = AgeIdentities::read(&[key]).unwrap();
        for armor in [false, true] {
            let encrypted = encrypt(dir.path(), b"DB_PASSWORD=hunter2\n", &recipient, armor);
            assert_eq!(armor, encrypted.starts_with(b"-----BEGIN AGE"));
            let plain = ids.decrypt(&encrypted, 100).unwrap();
            assert_eq!(plain, b"DB_PASSWORD=hunter2\n");
        }
    }

    #[test]
    fn the_right_key_among_several_files_is_found() {
        if !have_age() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = keygen(dir.path(), "first.txt");
        let (second, recipient) = keygen(dir.path(), "second.txt");
        let ids = AgeIdentities::read(&[first, second]).unwrap();
        let encrypted = encrypt(dir.path(), b"s3cr3t", &recipient, false);
        assert_eq!(ids.decrypt(&encrypted, 100).unwrap(), b"s3cr3t");
    }

    #[test]
    fn failures_say_what_to_do_and_quote_nothing() {
        if !have_age() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = keygen(dir.path(), "key.txt");
        let (_, other) = keygen(dir.path(), "other.txt");
        let ids = AgeIdentities::read(std::slice::from_ref(&key)).unwrap();
        let encrypted = encrypt(dir.path(), b"s3cr3t", &other, false);

        let e = AgeIdentities::none().decrypt(&encrypted, 100).unwrap_err();
        assert_eq!(e, DecryptProblem::NoIdentities);
        assert!(e.to_string().contains("pass --age-identity"), "{e}");

        let e = ids.decrypt(&encrypted, 100).unwrap_err();
        assert!(matches!(e, DecryptProblem::NoMatch { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("no identity matches: pass --age-identity"),
            "{e}"
        );
        assert!(e.to_string().contains(&key.display().to_string()), "{e}");

        let mut damaged = encrypt(dir.path(), b"s3cr3t", &other, false);
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let ids_other = AgeIdentities::read(&[dir.path().join("other.txt")]).unwrap();
        let e = ids_other.decrypt(&damaged, 100).unwrap_err();
        assert!(matches!(e, DecryptProblem::Corrupt { .. }), "{e}");
        let e = ids.decrypt(b"DB_PASSWORD=plain text\n", 100).unwrap_err();
        assert!(matches!(e, DecryptProblem::Corrupt { .. }), "{e}");

        for e in [&e.to_string(), &format!("{ids:?}")] {
            assert!(!e.contains("s3cr3t") && !e.contains("plain text"), "{e}");
            assert!(!e.contains("AGE-SECRET-KEY"), "{e}");
        }
    }

    #[test]
    fn the_plaintext_limit_is_kept() {
        if !have_age() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (key, recipient) = keygen(dir.path(), "key.txt");
        let ids = AgeIdentities::read(&[key]).unwrap();
        let encrypted = encrypt(dir.path(), &[b'x'; 1000], &recipient, true);
        assert_eq!(ids.decrypt(&encrypted, 1000).unwrap().len(), 1000);
        assert_eq!(
            ids.decrypt(&encrypted, 999).unwrap_err(),
            DecryptProblem::TooLarge { max: 999 }
        );
        assert!(encrypted.len() <= encrypted_limit(1000));
    }

    #[test]
    fn identity_files_are_checked_by_line_without_quoting_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.txt");
        std::fs::write(&path, "# created: now\n\nAGE-SECRET-KEY-1NOTAKEYATALL\n").unwrap();
        let e = AgeIdentities::read(std::slice::from_ref(&path)).unwrap_err();
        assert!(matches!(e, IdentityError::Line { line: 3, .. }), "{e}");
        assert!(!e.to_string().contains("NOTAKEY"), "{e}");
        std::fs::write(&path, "ssh-ed25519 AAAA...\n").unwrap();
        let e = AgeIdentities::read(std::slice::from_ref(&path)).unwrap_err();
        assert!(matches!(e, IdentityError::Line { line: 1, .. }), "{e}");
        std::fs::write(&path, "# nothing\n").unwrap();
        let e = AgeIdentities::read(std::slice::from_ref(&path)).unwrap_err();
        assert!(matches!(e, IdentityError::Empty { .. }), "{e}");
        let e = AgeIdentities::read(&[dir.path().join("missing.txt")]).unwrap_err();
        assert!(
            e.to_string().starts_with("cannot read age identity file"),
            "{e}"
        );
    }

    /// A spec directory with a secret, a config and a service env file encrypted by the CLI.
    struct Dir {
        dir: tempfile::TempDir,
        key: PathBuf,
        recipient: String,
    }

    const SPECS: &str = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata:\n  name: db\nspec:\n  file: db.txt.age\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata:\n  name: conf\nspec:\n  file: conf.ini.age\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: web\nspec:\n  image: nginx:1\n  envFile: [app.env.age]\n";

    impl Dir {
        fn new() -> Dir {
            let dir = tempfile::tempdir().unwrap();
            let (key, recipient) = keygen(dir.path(), "key.txt");
            let d = Dir {
                dir,
                key,
                recipient,
            };
            d.seal("db.txt.age", b"hunter2-db", false);
            d.seal("conf.ini.age", b"[a]\nb=c\n", true);
            d.seal("app.env.age", b"DB_PASSWORD=hunter2-env\n", false);
            std::fs::write(d.dir.path().join("stack.yaml"), SPECS).unwrap();
            d
        }

        fn seal(&self, name: &str, plaintext: &[u8], armor: bool) {
            let sealed = encrypt(self.dir.path(), plaintext, &self.recipient, armor);
            std::fs::write(self.dir.path().join(name), sealed).unwrap();
        }

        fn store(&self) -> crate::spec::SpecStore {
            let ids = AgeIdentities::read(std::slice::from_ref(&self.key)).unwrap();
            crate::spec::SpecStore::with_identities(ids)
        }
    }

    fn secret(objects: &[crate::spec::Located<crate::spec::Object>]) -> &crate::spec::Content {
        objects
            .iter()
            .find_map(|o| match &o.value {
                crate::spec::Object::Secret(s) => Some(&s.spec.content),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn age_files_are_secrets_configs_and_env_files() {
        if !have_age() {
            return;
        }
        let d = Dir::new();
        let desired = d.store().reload(d.dir.path()).unwrap();
        assert!(desired.errors.is_empty(), "{:?}", desired.errors);
        let mut seen = 0;
        for object in &desired.objects() {
            match &object.value {
                crate::spec::Object::Secret(s) => assert_eq!(s.spec.content.0, b"hunter2-db"),
                crate::spec::Object::Config(c) => assert_eq!(c.spec.content.0, b"[a]\nb=c\n"),
                crate::spec::Object::Service(s) => {
                    assert_eq!(s.spec.env["DB_PASSWORD"], "hunter2-env");
                }
                crate::spec::Object::Network(_) => panic!(),
            }
            seen += 1;
            let debug = format!("{object:?}");
            assert!(!debug.contains("hunter2-db"), "{debug}");
        }
        assert_eq!(seen, 3);
    }

    /// age output is randomized: the versioned name is of the plaintext, so encrypting the
    /// same plaintext again is no new version (no write, no rolling restart).
    #[test]
    fn re_encrypting_the_same_plaintext_keeps_the_name() {
        if !have_age() {
            return;
        }
        let d = Dir::new();
        let mut store = d.store();
        let first = store.reload(d.dir.path()).unwrap().objects();
        let before = std::fs::read(d.dir.path().join("db.txt.age")).unwrap();
        d.seal("db.txt.age", b"hunter2-db", true);
        let after = std::fs::read(d.dir.path().join("db.txt.age")).unwrap();
        assert_ne!(before, after, "age output is randomized");
        let second = store.reload(d.dir.path()).unwrap().objects();
        let name = |c| crate::desired::data_objects::versioned_name("db", c);
        assert_eq!(name(secret(&first)), name(secret(&second)));
        use sha2::Digest as _;
        let hex: String = sha2::Sha256::digest(b"hunter2-db")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(name(secret(&second)), format!("db-{}", &hex[..10]));
    }

    /// A file that cannot be decrypted fails its spec file with the position of the field
    /// that names it, and the store keeps that file's last good objects.
    #[test]
    fn an_undecryptable_file_is_a_located_error_that_holds_the_objects() {
        if !have_age() {
            return;
        }
        let d = Dir::new();
        let mut store = d.store();
        let good = store.reload(d.dir.path()).unwrap();
        let (_, stranger) = keygen(d.dir.path(), "stranger.txt");
        let sealed = encrypt(d.dir.path(), b"hunter2-new", &stranger, false);
        std::fs::write(d.dir.path().join("db.txt.age"), sealed).unwrap();
        let held = store.reload(d.dir.path()).unwrap();
        assert!(!held.complete);
        assert_eq!(held.errors.len(), 1, "{:?}", held.errors);
        let e = &held.errors[0];
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (Some(6), Some(9), "spec.file")
        );
        assert!(
            e.message
                .starts_with("cannot decrypt `db.txt.age`: no identity matches"),
            "{}",
            e.message
        );
        assert_eq!(
            held.objects(),
            good.objects(),
            "the last good objects are kept"
        );
        assert_eq!(secret(&held.objects()).0, b"hunter2-db");

        // Without identities, and damaged: the same place, and what to do.
        let desired = crate::spec::SpecStore::new().reload(d.dir.path()).unwrap();
        assert!(desired.errors.iter().any(|e| e.field == "spec.envFile[0]"
            && e.message.contains("app.env.age")
            && e.message.contains("pass --age-identity FILE")));
        std::fs::write(
            d.dir.path().join("app.env.age"),
            b"age-encryption.org/v1\n-> X25519 x\n",
        )
        .unwrap();
        let desired = store.reload(d.dir.path()).unwrap();
        let e = desired
            .errors
            .iter()
            .find(|e| e.field == "spec.envFile[0]")
            .unwrap();
        assert!(e.message.contains("not a valid age file"), "{}", e.message);
        for e in &desired.errors {
            let shown = e.to_string();
            assert!(
                !shown.contains("hunter2") && !shown.contains("AGE-SECRET-KEY"),
                "{shown}"
            );
        }
    }

    #[test]
    fn encrypted_names() {
        assert!(is_encrypted("db.txt.age"));
        assert!(is_encrypted("sub/app.env.AGE"));
        assert!(!is_encrypted(".age"));
        assert!(!is_encrypted("db.txt"));
        assert!(!is_encrypted("page"));
    }
}
