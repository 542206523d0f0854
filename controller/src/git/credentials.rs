//! How the git source proves who it is and whom it trusts: an https token (`--git-token-file`),
//! an ssh deploy key (`--git-ssh-key`) checked against known hosts (`--git-known-hosts`), and
//! the roots https servers are verified against (`--git-ca-file`).
//!
//! Everything is read and checked once, at start, so a missing or unusable file is a startup
//! error naming its flag. The token never leaves this module except as the basic-auth password
//! handed to gix for an https request: no Debug, no Display, zeroed on drop, and [`Auth::scrub`]
//! removes it from any text (an error) before that text goes anywhere.
//!
//! The ssh command is set on the repository's in-memory configuration (`core.sshCommand`), never
//! through the process environment, so nothing else the operator starts sees it. Host keys are
//! always checked (`StrictHostKeyChecking=yes`); there is no switch to turn that off.

use std::any::Any;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gix::bstr::BStr;
use gix::credentials::helper::{Action, NextAction};
use gix::credentials::protocol::{Context, Outcome};
use gix::protocol::transport::client::blocking_io::http;
use gix::remote::Connection;
use secrecy::{ExposeSecret as _, SecretString};

/// A token is a line of text; a larger file is a mistake in the path.
const MAX_TOKEN_BYTES: u64 = 16 * 1024;
/// Far above any private key or known_hosts file worth reading.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// How long connecting to the git server may take (TCP and TLS, or ssh's connection).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server may stay silent in the middle of a fetch before it is given up.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The username sent with the token when the URL names none. GitHub takes it for every kind of
/// token; Gitea, Forgejo and Bitbucket ignore the name; GitLab wants `oauth2` for OAuth tokens
/// (write it in the URL: `https://oauth2@gitlab.example/group/app.git`).
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";

/// The credential flags of `run --source git`, as given.
#[derive(Debug, Clone, Default)]
pub struct AuthFiles {
    /// `--git-token-file`: the https token (a docker secret).
    pub token: Option<PathBuf>,
    /// `--git-ssh-key`: the ssh deploy key (a docker secret, mode 0400).
    pub ssh_key: Option<PathBuf>,
    /// `--git-known-hosts`: the ssh host keys to trust (default: the user's
    /// `~/.ssh/known_hosts` and the system's, as ssh reads them).
    pub known_hosts: Option<PathBuf>,
    /// `--git-ca-file`: the only roots https servers are verified against (default: the
    /// system's store, or `SSL_CERT_FILE` / `SSL_CERT_DIR`).
    pub ca: Option<PathBuf>,
}

/// Why the credential flags cannot be used. Messages name the flag and the file, never the
/// contents.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A file named by a flag cannot be used.
    #[error("--{flag} {}: {reason}", path.display())]
    File {
        /// The flag (`git-token-file`, …).
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A flag that the URL's transport does not use: given by mistake, or the URL is wrong.
    #[error("--{flag} is for {wanted} URLs, and --git-url is a {scheme} URL")]
    WrongScheme {
        /// The flag.
        flag: &'static str,
        /// The schemes it is for.
        wanted: &'static str,
        /// The URL's scheme.
        scheme: String,
    },
    /// A password in the URL would show in `docker service inspect` and in process listings.
    #[error(
        "--git-url carries a password: put the token in a file (a docker secret) and pass it \
         with --git-token-file"
    )]
    PasswordInUrl,
    /// The URL does not parse (it is not quoted: it may hold credentials).
    #[error("--git-url is not a git URL")]
    BadUrl,
    /// The CA file of `--git-ca-file`.
    #[error("--git-ca-file {0}")]
    Ca(#[from] crate::pem::PemError),
    /// No root certificates to verify https servers against.
    #[error(
        "no TLS root certificates were found (system store, SSL_CERT_FILE, SSL_CERT_DIR) to \
         verify the git server: give its CA with --git-ca-file"
    )]
    NoRoots,
    /// rustls refused the configuration.
    #[error("TLS configuration for the git server: {0}")]
    Tls(#[from] rustls::Error),
}

/// The transport a URL uses, as far as credentials go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `https://`: the token, the CA roots.
    Https,
    /// `ssh://` or scp-like `user@host:path`: the key, the known hosts.
    Ssh,
    /// `http://`, `git://`, `file://`: nothing to authenticate or verify.
    Plain,
}

/// The credentials and trust of one git source, ready to hand to gix.
#[derive(Clone)]
pub struct Auth {
    scheme: Scheme,
    token: Option<Arc<SecretString>>,
    ssh_command: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    has_ca: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("scheme", &self.scheme)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ssh_command", &self.ssh_command)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Reads and checks the files of `files` for fetching `url`: each flag must suit the URL's
    /// transport, each file must be readable (and the key not readable by others, which ssh
    /// refuses), and https gets its roots now, so that a mistake stops the start.
    pub fn load(url: &str, files: &AuthFiles) -> Result<Auth, CredentialsError> {
        let parsed = gix::url::parse(BStr::new(url)).map_err(|_| CredentialsError::BadUrl)?;
        if parsed.password().is_some() {
            return Err(CredentialsError::PasswordInUrl);
        }
        let scheme = match parsed.scheme {
            gix::url::Scheme::Https => Scheme::Https,
            gix::url::Scheme::Ssh => Scheme::Ssh,
            _ => Scheme::Plain,
        };
        let wrong = |flag, wanted| CredentialsError::WrongScheme {
            flag,
            wanted,
            scheme: parsed.scheme.as_str().to_owned(),
        };
        if files.token.is_some() && scheme != Scheme::Https {
            // Over http:// the token would cross the network in clear text.
            return Err(wrong("git-token-file", "https"));
        }
        if files.ca.is_some() && scheme != Scheme::Https {
            return Err(wrong("git-ca-file", "https"));
        }
        if files.ssh_key.is_some() && scheme != Scheme::Ssh {
            return Err(wrong("git-ssh-key", "ssh"));
        }
        if files.known_hosts.is_some() && scheme != Scheme::Ssh {
            return Err(wrong("git-known-hosts", "ssh"));
        }
        let token = files
            .token
            .as_deref()
            .map(read_token)
            .transpose()?
            .map(Arc::new);
        let ssh_command = (scheme == Scheme::Ssh)
            .then(|| ssh_command(files.ssh_key.as_deref(), files.known_hosts.as_deref()))
            .transpose()?;
        let tls = (scheme == Scheme::Https)
            .then(|| tls_config(files.ca.as_deref()))
            .transpose()?
            .map(Arc::new);
        Ok(Auth {
            scheme,
            token,
            ssh_command,
            tls,
            has_ca: files.ca.is_some(),
        })
    }

    /// No credentials and the system's trust, for sources given by the tests or by code.
    pub fn anonymous(url: &str) -> Result<Auth, CredentialsError> {
        Auth::load(url, &AuthFiles::default())
    }

    /// The transport of the URL.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The ssh command the fetch runs (`None` unless the URL is an ssh URL); it names the key
    /// and known_hosts files, never their contents.
    pub fn ssh_command(&self) -> Option<&str> {
        self.ssh_command.as_deref()
    }

    /// Sets what gix reads from the repository's configuration when it connects: the ssh
    /// command. Call it on the repository before `Remote::connect`.
    ///
    /// The in-memory configuration is the last word: `GIT_SSH_COMMAND` or a `core.sshCommand`
    /// in a git configuration file cannot replace the host key checking.
    pub fn configure(&self, repo: &mut gix::Repository) -> Result<(), gix::Error> {
        if let Some(command) = &self.ssh_command {
            let mut config = repo.config_snapshot_mut();
            config.set_raw_value("core.sshCommand", command.as_str())?;
            // The command is a shell line; naming the variant spares gix a probe run of it.
            config.set_raw_value("ssh.variant", "ssh")?;
            config.commit()?;
        }
        Ok(())
    }

    /// Gives `connection` its credentials and the https client's TLS configuration and
    /// deadlines. Without a token, a server asking for credentials gets none: the operator
    /// never prompts, nor asks the user's credential helpers.
    pub fn authorize<'remote, 'repo, T>(
        &self,
        repo: &gix::Repository,
        url: &BStr,
        connection: Connection<'remote, '_, 'repo, T>,
    ) -> Connection<'remote, 'static, 'repo, T>
    where
        T: gix::protocol::transport::client::blocking_io::Transport,
    {
        let connection = connection.with_credentials(self.credentials());
        match self.scheme {
            Scheme::Https => connection.with_transport_options(self.http_options(repo, url)),
            Scheme::Ssh | Scheme::Plain => connection,
        }
    }

    /// The credential callback gix calls when a server asks: the token, or nothing.
    pub fn credentials(
        &self,
    ) -> impl FnMut(Action) -> Result<Option<Outcome>, gix::Error> + Send + 'static {
        let token = self.token.clone();
        move |action| Ok(answer(&token, action))
    }

    /// The http options gix derives from the repository's configuration (proxy, user agent,
    /// …), with the operator's TLS and deadlines: gix's reqwest backend builds its client
    /// through `configure_client`.
    pub fn http_options(&self, repo: &gix::Repository, url: &BStr) -> Box<dyn Any> {
        // Options gix cannot derive (a configuration it cannot parse) are its defaults: the
        // TLS and the deadlines below are what matters, and they are always set.
        let mut options = repo
            .transport_options(url, None)
            .ok()
            .flatten()
            .and_then(|options| options.downcast::<http::Options>().ok())
            .map_or_else(http::Options::default, |options| *options);
        options.connect_timeout = Some(CONNECT_TIMEOUT);
        let tls = self.tls.clone();
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(move |builder| {
                let builder = builder
                    .connect_timeout(CONNECT_TIMEOUT)
                    // reqwest's blocking client applies it to the wait for the response and
                    // to each read of the body: a silent server, not a long fetch.
                    .timeout(IDLE_TIMEOUT);
                Ok(match &tls {
                    Some(tls) => builder.tls_backend_preconfigured(tls.as_ref().clone()),
                    None => builder,
                })
            })),
            configure_request: None,
        };
        options.backend = Some(Arc::new(Mutex::new(backend)));
        Box::new(options)
    }

    /// `text` without the token in it: for errors from gix, reqwest or a server, before they
    /// reach a log, the status or an event. The token is never put in one on purpose; this is
    /// the second line of defence.
    pub fn scrub(&self, text: &str) -> String {
        match &self.token {
            Some(token) if !token.expose_secret().is_empty() => {
                text.replace(token.expose_secret(), "<redacted>")
            }
            _ => text.to_owned(),
        }
    }
}

/// How the git source's fetches use these credentials: the ssh command on the cache's
/// in-memory configuration, the token as the only credential offered, and for https the
/// operator's TLS roots and deadlines.
impl super::fetch::Access for Auth {
    fn configure_repository(&self, repo: &mut gix::Repository) -> Result<(), String> {
        self.configure(repo)
            .map_err(|error| self.scrub(&error.to_string()))
    }

    fn configure_connection(&self, connection: &mut super::fetch::Connection<'_, '_>) {
        connection.set_credentials(self.credentials());
        if self.scheme == Scheme::Https {
            let remote = connection.remote();
            let url = remote
                .url(gix::remote::Direction::Fetch)
                .map(|url| url.to_bstring())
                .unwrap_or_default();
            let options = self.http_options(remote.repo(), url.as_ref());
            connection.set_transport_options(options);
        }
    }

    fn scrub(&self, text: &str) -> String {
        Auth::scrub(self, text)
    }

    fn explain(&self, error: &gix::Error) -> String {
        Auth::explain(self, error)
    }
}

impl Auth {
    /// One line saying why a fetch failed, for the status, the log and events: our words for
    /// what we recognise (an untrusted certificate, a refused or missing token, ssh ending the
    /// connection), naming the flag to look at, then the chain of gix's messages; the token is
    /// scrubbed from all of it.
    pub fn explain(&self, error: &gix::Error) -> String {
        let chain = error.iter_errors().map(ToString::to_string);
        let mut messages: Vec<String> = Vec::new();
        for message in chain {
            // Wrappers repeat their source's text ("I/O error (Other)", "Io(…)"): keep what
            // adds something.
            if messages.iter().any(|m| m.contains(&message)) || message.starts_with("I/O error") {
                continue;
            }
            messages.push(message);
        }
        let detail = self.scrub(&messages.join(": "));
        match self.recognise(error) {
            Some(reason) => format!("{reason} ({detail})"),
            None => detail,
        }
    }

    fn recognise(&self, error: &gix::Error) -> Option<String> {
        if let Some(rustls::Error::InvalidCertificate(why)) =
            error.downcast_any_ref::<rustls::Error>()
        {
            let trusted = if self.has_ca {
                "the CAs of --git-ca-file"
            } else {
                "the system's CAs (give the server's CA with --git-ca-file)"
            };
            return Some(format!(
                "the git server's TLS certificate is not accepted ({why:?}): it is checked against {trusted}"
            ));
        }
        if error.classify().is_unauthenticated() || error.classify().is_permission_denied() {
            return Some(match (self.scheme, &self.token) {
                (Scheme::Https, Some(_)) => {
                    "the git server refused the token of --git-token-file (wrong, expired, or \
                     without read access to the repository)"
                        .to_owned()
                }
                (Scheme::Https, None) => {
                    "the git server asks for credentials: give a token with --git-token-file"
                        .to_owned()
                }
                _ if self.scheme == Scheme::Ssh => {
                    "the ssh server refused the key (--git-ssh-key): is it a deploy key of the \
                     repository?"
                        .to_owned()
                }
                _ => return None,
            });
        }
        let eof = error.iter_errors().any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        });
        if self.scheme == Scheme::Ssh && eof {
            return Some(
                "ssh ended the connection before git could speak: the server's host key is not \
                 in the known hosts (--git-known-hosts) or has changed, or the key was refused; \
                 ssh's own message is in the operator's log"
                    .to_owned(),
            );
        }
        None
    }
}

/// The credential callback: the token for a `Get` (with the URL's username, or
/// [`DEFAULT_TOKEN_USERNAME`]), nothing for `Store` and `Erase` (there is nothing to remember).
fn answer(token: &Option<Arc<SecretString>>, action: Action) -> Option<Outcome> {
    let Action::Get(context) = action else {
        return None;
    };
    let token = token.as_ref()?;
    // gix hands over the URL alone; its username (if any) is in it.
    let mut context = context;
    if context.username.is_none() && context.destructure_url_in_place(false).is_err() {
        return None;
    }
    let username = context
        .username
        .clone()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_TOKEN_USERNAME.to_owned());
    // The context handed back for Store/Erase carries no password.
    let next = Context {
        username: Some(username.clone()),
        password: None,
        ..context
    };
    Some(Outcome {
        credentials: gix::sec::identity::Credentials::UsernamePassword {
            username,
            password: token.expose_secret().to_owned(),
            oauth_refresh_token: None,
        },
        next: NextAction::from(next),
    })
}

/// The token file's text without its trailing newline: bounded, one line, printable.
fn read_token(path: &Path) -> Result<SecretString, CredentialsError> {
    let bad = |reason: String| CredentialsError::File {
        flag: "git-token-file",
        path: path.to_owned(),
        reason,
    };
    let file = open_regular(path, MAX_TOKEN_BYTES).map_err(bad)?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let mut bytes = e.into_bytes();
        zeroize(&mut bytes);
        bad("not UTF-8 text".to_owned())
    })?;
    let token = SecretString::from(text);
    let trimmed = token.expose_secret().trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(bad("empty".to_owned()));
    }
    if trimmed.chars().any(char::is_control) {
        // A header value cannot carry it, and a second line is a mistake (two tokens?).
        return Err(bad(
            "holds more than one line or control characters: a token is one line".to_owned(),
        ));
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

/// The ssh command line: the deploy key alone (if given), the known hosts (if given), strict
/// host key checking, never a prompt, and deadlines on connecting and on a silent server.
fn ssh_command(key: Option<&Path>, known_hosts: Option<&Path>) -> Result<String, CredentialsError> {
    let mut command = String::from("ssh");
    if let Some(key) = key {
        check_key(key)?;
        command.push_str(" -i ");
        command.push_str(&shell_quote(key, "git-ssh-key")?);
        command.push_str(" -o IdentitiesOnly=yes");
    }
    if let Some(known_hosts) = known_hosts {
        open_regular(known_hosts, MAX_KEY_FILE_BYTES).map_err(|reason| CredentialsError::File {
            flag: "git-known-hosts",
            path: known_hosts.to_owned(),
            reason,
        })?;
        command.push_str(" -o UserKnownHostsFile=");
        command.push_str(&shell_quote(known_hosts, "git-known-hosts")?);
    }
    // A read-only known_hosts (a docker secret) must not be written to.
    command.push_str(" -o StrictHostKeyChecking=yes -o UpdateHostKeys=no -o BatchMode=yes");
    command.push_str(&format!(
        " -o ConnectTimeout={} -o ServerAliveInterval={} -o ServerAliveCountMax=3",
        CONNECT_TIMEOUT.as_secs(),
        IDLE_TIMEOUT.as_secs() / 3,
    ));
    Ok(command)
}

/// The deploy key must be a readable regular file that only its owner can read: ssh ignores a
/// key others can read ("UNPROTECTED PRIVATE KEY FILE"), which would only show at the first
/// fetch, in ssh's words.
fn check_key(key: &Path) -> Result<(), CredentialsError> {
    use std::os::unix::fs::MetadataExt as _;
    let bad = |reason: String| CredentialsError::File {
        flag: "git-ssh-key",
        path: key.to_owned(),
        reason,
    };
    let file = open_regular(key, MAX_KEY_FILE_BYTES).map_err(bad)?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() == euid && meta.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "mode {:o}: ssh refuses a private key others can read; give it mode 0400 \
             (`mode: 0400` on the service's secret)",
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

/// Opens `path` for reading if it is a regular file of at most `max` bytes.
fn open_regular(path: &Path, max: u64) -> Result<std::fs::File, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_owned());
    }
    if meta.len() > max {
        return Err(format!("{} bytes; at most {max} are read", meta.len()));
    }
    Ok(file)
}

/// `path` as one word of a POSIX shell line (gix runs the ssh command through `sh -c`).
fn shell_quote(path: &Path, flag: &'static str) -> Result<String, CredentialsError> {
    let text = path.to_str().ok_or_else(|| CredentialsError::File {
        flag,
        path: path.to_owned(),
        reason: "not a UTF-8 path".to_owned(),
    })?;
    Ok(format!("'{}'", text.replace('\'', r"'\''")))
}

/// The TLS client configuration for https: the project's one TLS stack (rustls with ring), the
/// CA file's certificates as the only roots when given, else the system's.
fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, CredentialsError> {
    let roots = match ca {
        Some(ca) => crate::pem::roots(ca)?,
        None => {
            let native = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(CredentialsError::NoRoots);
            }
            roots
        }
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    // git's smart http is HTTP/1.1 everywhere; h2 would only add a code path to go wrong.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn zeroize(bytes: &mut [u8]) {
    use secrecy::zeroize::Zeroize as _;
    bytes.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_token_is_one_line_without_its_newline_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let token = write(dir.path(), "token", "ghp_s3cr3t\n", 0o400);
        let auth = Auth::load(
            "https://git.example/app.git",
            &AuthFiles {
                token: Some(token),
                ..AuthFiles::default()
            },
        )
        .unwrap();
        assert!(!format!("{auth:?}").contains("ghp_s3cr3t"));
        assert_eq!(
            auth.scrub("401 for ghp_s3cr3t at https://x:ghp_s3cr3t@git.example"),
            "401 for <redacted> at https://x:<redacted>@git.example"
        );
        let Some(Outcome {
            credentials:
                gix::sec::identity::Credentials::UsernamePassword {
                    username, password, ..
                },
            next,
        }) = answer(
            &auth.token,
            Action::get_for_url("https://git.example/app.git"),
        )
        else {
            panic!("the token is given for a Get");
        };
        assert_eq!(
            (username.as_str(), password.as_str()),
            (DEFAULT_TOKEN_USERNAME, "ghp_s3cr3t")
        );
        let Action::Store(stored) = next.store() else {
            unreachable!()
        };
        assert!(!stored.to_string().contains("ghp_s3cr3t"), "{stored}");
        // The URL's username wins, as with git.
        let Some(Outcome {
            credentials: gix::sec::identity::Credentials::UsernamePassword { username, .. },
            ..
        }) = answer(
            &auth.token,
            Action::get_for_url("https://oauth2@git.example/app.git"),
        )
        else {
            panic!("the token is given for a Get");
        };
        assert_eq!(username, "oauth2");
        assert!(answer(&None, Action::get_for_url("https://git.example/a.git")).is_none());
    }

    #[test]
    fn bad_token_files_are_named_by_flag_without_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let load = |path: PathBuf| {
            Auth::load(
                "https://git.example/app.git",
                &AuthFiles {
                    token: Some(path),
                    ..AuthFiles::default()
                },
            )
            .unwrap_err()
            .to_string()
        };
        let empty = load(write(dir.path(), "empty", "\n", 0o400));
        assert!(empty.starts_with("--git-token-file ") && empty.ends_with(": empty"));
        let two = load(write(dir.path(), "two", "tok-one\ntok-two\n", 0o400));
        assert!(two.contains("one line") && !two.contains("tok-"), "{two}");
        let missing = load(dir.path().join("absent"));
        assert!(missing.contains("No such file"), "{missing}");
        let big = load(write(dir.path(), "big", &"x".repeat(20_000), 0o400));
        assert!(big.contains("at most 16384"), "{big}");
        assert!(load(dir.path().to_owned()).contains("not a regular file"));
    }

    #[test]
    fn flags_must_suit_the_url_and_passwords_stay_out_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let token = write(dir.path(), "token", "t\n", 0o400);
        let key = write(dir.path(), "key", "k\n", 0o400);
        let err = |url: &str, files: AuthFiles| Auth::load(url, &files).unwrap_err().to_string();
        assert_eq!(
            err(
                "http://git.example/app.git",
                AuthFiles {
                    token: Some(token),
                    ..AuthFiles::default()
                }
            ),
            "--git-token-file is for https URLs, and --git-url is a http URL"
        );
        assert_eq!(
            err(
                "https://git.example/app.git",
                AuthFiles {
                    ssh_key: Some(key),
                    ..AuthFiles::default()
                }
            ),
            "--git-ssh-key is for ssh URLs, and --git-url is a https URL"
        );
        let password = err(
            "https://me:hunter2@git.example/app.git",
            AuthFiles::default(),
        );
        assert!(
            password.contains("--git-token-file") && !password.contains("hunter2"),
            "{password}"
        );
        assert_eq!(
            Auth::anonymous("git://git.example/app.git")
                .unwrap()
                .scheme(),
            Scheme::Plain
        );
    }

    #[test]
    fn the_ssh_command_checks_host_keys_and_quotes_paths() {
        let dir = tempfile::tempdir().unwrap();
        let key = write(dir.path(), "deploy key's", "k\n", 0o400);
        let hosts = write(dir.path(), "known_hosts", "h\n", 0o444);
        let auth = Auth::load(
            "ssh://git@git.example:2222/app.git",
            &AuthFiles {
                ssh_key: Some(key),
                known_hosts: Some(hosts),
                ..AuthFiles::default()
            },
        )
        .unwrap();
        let command = auth.ssh_command().unwrap();
        let dir = dir.path().display();
        assert!(
            command.starts_with(&format!(
                "ssh -i '{dir}/deploy key'\\''s' -o IdentitiesOnly=yes \
                 -o UserKnownHostsFile='{dir}/known_hosts' -o StrictHostKeyChecking=yes"
            )),
            "{command}"
        );
        assert!(command.contains("BatchMode=yes") && command.contains("ConnectTimeout=10"));
        // Without flags: ssh's own identities and known_hosts, still strict.
        let plain = Auth::anonymous("git@git.example:app.git").unwrap();
        assert_eq!(plain.scheme(), Scheme::Ssh);
        assert!(
            plain
                .ssh_command()
                .unwrap()
                .starts_with("ssh -o StrictHostKeyChecking=yes")
        );
    }

    #[test]
    fn a_key_others_can_read_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let key = write(dir.path(), "key", "k\n", 0o644);
        let err = Auth::load(
            "ssh://git@git.example/app.git",
            &AuthFiles {
                ssh_key: Some(key),
                ..AuthFiles::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("--git-ssh-key ") && err.contains("mode 644") && err.contains("0400"),
            "{err}"
        );
    }

    #[test]
    fn the_ssh_command_is_set_on_the_in_memory_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = gix::init_bare(dir.path().join("cache.git")).unwrap();
        let auth = Auth::anonymous("ssh://git@git.example/app.git").unwrap();
        auth.configure(&mut repo).unwrap();
        let options = repo.ssh_connect_options().unwrap();
        assert_eq!(
            options.command.as_deref().and_then(|c| c.to_str()),
            auth.ssh_command()
        );
        assert_eq!(
            options.kind,
            Some(gix::protocol::transport::client::blocking_io::ssh::ProgramKind::Ssh)
        );
    }
}
