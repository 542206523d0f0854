//! The bare cache (`--git-cache`) and one fetch of the ref into it, bounded by a deadline: a
//! restart fetches only what is new, and a remote that never answers does not hold anyone.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gix::protocol::transport::client::blocking_io::Transport;

use super::error::GitError;
use super::remote::RemoteUrl;

/// A commit id (40 hex digits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision(gix::ObjectId);

impl Revision {
    /// Parses 40 hex digits.
    pub fn parse(hex: &str) -> Option<Revision> {
        if hex.len() != 40 {
            return None;
        }
        gix::ObjectId::from_hex(hex.as_bytes()).ok().map(Revision)
    }

    /// The first 7 digits, as `git log --oneline` shows them.
    pub fn short(&self) -> String {
        self.0.to_hex_with_len(7).to_string()
    }

    pub(crate) fn id(&self) -> gix::ObjectId {
        self.0
    }
}

impl From<gix::ObjectId> for Revision {
    fn from(id: gix::ObjectId) -> Self {
        Revision(id)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_hex())
    }
}

impl fmt::Debug for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Revision({})", self.0.to_hex())
    }
}

/// The port of `git daemon` when a `git://` URL names none.
const GIT_DAEMON_PORT: u16 = 9418;

/// A connection to the remote, as [`Access::configure_connection`] gets it.
pub type Connection<'remote, 'repo> =
    gix::remote::Connection<'remote, 'static, 'repo, Box<dyn Transport + Send>>;

/// How a fetch reaches and authenticates to the remote: the one place where tokens, deploy
/// keys and known hosts plug in. Both hooks run on the fetch's own thread, before the
/// handshake; neither may log or return a credential.
pub trait Access: Send + Sync + fmt::Debug + 'static {
    /// Adjusts the cache repository's in-memory configuration before the remote is connected
    /// (e.g. `core.sshCommand`). Nothing is written to the cache's config file.
    fn configure_repository(&self, repo: &mut gix::Repository) -> Result<(), String> {
        let _ = repo;
        Ok(())
    }

    /// Sets credentials or transport options on the connection. When this does nothing, a
    /// remote that asks for credentials gets none (nothing ever prompts).
    fn configure_connection(&self, connection: &mut Connection<'_, '_>) {
        let _ = connection;
    }

    /// `text` without any secret of these credentials (a token), before an error keeps it.
    fn scrub(&self, text: &str) -> String {
        text.to_owned()
    }

    /// Why a connection or fetch failed, in one line without any secret: what to do about
    /// it where the credentials can tell (a refused token, an unknown host key), then the
    /// library's messages.
    fn explain(&self, error: &gix::Error) -> String {
        let mut messages: Vec<String> = Vec::new();
        for message in error.iter_errors().map(ToString::to_string) {
            if !messages.iter().any(|m| m.contains(&message)) {
                messages.push(message);
            }
        }
        self.scrub(&messages.join(": "))
    }
}

/// No credentials: `file://`, `git://`, public https, and ssh with the user's own agent/keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous;

impl Access for Anonymous {}

/// What one fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The commit the ref points to now.
    pub revision: Revision,
    /// Objects received (0: the cache had everything, nothing was downloaded).
    pub objects_received: u64,
}

/// The bare repository in the cache, and the ref it follows.
#[derive(Debug, Clone)]
pub struct Fetcher {
    repo: gix::ThreadSafeRepository,
    dir: PathBuf,
    url: RemoteUrl,
    /// The remote ref, e.g. `refs/heads/main`.
    reference: String,
    /// Where the fetched commit is kept in the cache, e.g. `refs/swarm-operator/heads/main`.
    local: String,
    access: Arc<dyn Access>,
    deadline: Duration,
}

/// The full name of `--git-ref`: a branch name (`main`) or a full ref (`refs/tags/v1`).
pub fn full_ref_name(reference: &str) -> Result<String, GitError> {
    let full = if reference.starts_with("refs/") {
        reference.to_owned()
    } else {
        format!("refs/heads/{reference}")
    };
    gix::refs::FullName::try_from(full.as_str()).map_err(|error| GitError::InvalidRef {
        reference: reference.to_owned(),
        reason: error.to_string(),
    })?;
    Ok(full)
}

impl Fetcher {
    /// Opens the bare repository `dir`, creating it (and its parents, mode 0700) if missing.
    /// Blocking: call it at start or from a blocking thread.
    pub fn open(
        dir: &Path,
        url: RemoteUrl,
        reference: &str,
        access: Arc<dyn Access>,
        deadline: Duration,
    ) -> Result<Fetcher, GitError> {
        let reference = full_ref_name(reference)?;
        let local = format!("refs/swarm-operator/{}", &reference["refs/".len()..]);
        let cache_error = |message: String| GitError::Cache {
            path: dir.to_owned(),
            message,
        };
        // The user's and the system's git configuration (url rewrites, credential helpers
        // that prompt, hooks) stay out: only what `Access` sets applies.
        let options = gix::open::Options::isolated();
        let repo = if dir.join("HEAD").exists() {
            gix::ThreadSafeRepository::open_opts(dir, options)
                .map_err(|e| cache_error(format!("not a usable git repository: {e}")))?
        } else {
            create_private_dir(dir).map_err(|e| cache_error(e.to_string()))?;
            gix::ThreadSafeRepository::init_opts(
                dir,
                gix::create::Kind::Bare,
                gix::create::Options::default(),
                options,
            )
            .map_err(|e| cache_error(format!("creating a bare repository: {e}")))?
        };
        Ok(Fetcher {
            repo,
            dir: dir.to_owned(),
            url,
            reference,
            local,
            access,
            deadline,
        })
    }

    /// The repository (for reading commits).
    pub fn repo(&self) -> gix::Repository {
        self.repo.to_thread_local()
    }

    /// The remote.
    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    /// The remote ref followed, e.g. `refs/heads/main`.
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The commit the cache holds for the ref from an earlier fetch, if any.
    pub fn cached(&self) -> Result<Option<Revision>, GitError> {
        let repo = self.repo();
        let reference = repo
            .try_find_reference(self.local.as_str())
            .map_err(|e| self.object_error("the cached ref", &e))?;
        match reference {
            None => Ok(None),
            Some(mut reference) => {
                let id = reference
                    .peel_to_commit()
                    .map_err(|e| self.object_error("the cached ref", &e))?
                    .id;
                Ok(Some(Revision(id)))
            }
        }
    }

    /// Fetches the ref on a blocking thread, within the deadline. A fetch that misses it is
    /// told to stop (the flag gix checks between steps) and reported as
    /// [`GitError::TimedOut`]; its thread ends when the connection does.
    pub async fn fetch(&self) -> Result<Fetched, GitError> {
        let interrupt = Arc::new(AtomicBool::new(false));
        let fetcher = self.clone();
        let flag = interrupt.clone();
        let task = tokio::task::spawn_blocking(move || fetcher.fetch_blocking(&flag));
        match tokio::time::timeout(self.deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(self.fetch_error(&format!("the fetch thread failed: {join}"))),
            Err(_elapsed) => {
                interrupt.store(true, Ordering::SeqCst);
                Err(GitError::TimedOut {
                    url: self.url.to_string(),
                    reference: self.reference.clone(),
                    after: self.deadline,
                })
            }
        }
    }

    /// One fetch of `+<ref>:<local ref>` (forced: the ref may move backwards), without tags.
    pub fn fetch_blocking(&self, interrupt: &AtomicBool) -> Result<Fetched, GitError> {
        let mut repo = self.repo();
        self.access
            .configure_repository(&mut repo)
            .map_err(|message| self.fetch_error(&message))?;
        let refspec = format!("+{}:{}", self.reference, self.local);
        let remote = repo
            .remote_at(self.url.connect_url().clone())
            .map_err(|e| self.fetch_error(&e.to_string()))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs([refspec.as_str()], gix::remote::Direction::Fetch)
            .map_err(|e| self.fetch_error(&e.to_string()))?;
        let mut connection = match self.url.connect_url().scheme {
            // gix's own git:// connection has no read timeout: a peer that accepts and never
            // answers would hold this thread forever after the deadline gave up on it.
            gix::url::Scheme::Git => {
                remote.to_connection_with_transport(self.git_daemon_transport()?)
            }
            _ => remote
                .connect(gix::remote::Direction::Fetch)
                .map_err(|e| self.explained(e))?,
        };
        // Never the configured helpers (which may prompt): `Access` sets what there is.
        connection.set_credentials(|_| Ok(None));
        self.access.configure_connection(&mut connection);
        let prepared = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| self.explained(e))?;
        if prepared.ref_map().mappings.is_empty() {
            return Err(GitError::RefNotFound {
                url: self.url.to_string(),
                reference: self.reference.clone(),
            });
        }
        let outcome = prepared
            .receive(gix::progress::Discard, interrupt)
            .map_err(|e| self.explained(e))?;
        let objects_received = match &outcome.status {
            gix::remote::fetch::Status::Change {
                write_pack_bundle, ..
            } => write_pack_bundle.index.num_objects.into(),
            gix::remote::fetch::Status::NoPackReceived { .. } => 0,
        };
        let revision = self.cached()?.ok_or_else(|| GitError::RefNotFound {
            url: self.url.to_string(),
            reference: self.reference.clone(),
        })?;
        Ok(Fetched {
            revision,
            objects_received,
        })
    }

    fn fetch_error(&self, message: &str) -> GitError {
        GitError::Fetch {
            url: self.url.to_string(),
            reference: self.reference.clone(),
            message: self.access.scrub(&self.url.scrub(message)),
        }
    }

    /// A `git://` connection whose every read and write is bounded by the fetch's deadline,
    /// built as gix's own (`gix_transport::client::git::connect`) is, which sets none.
    fn git_daemon_transport(&self) -> Result<Box<dyn Transport + Send>, GitError> {
        use gix::protocol::transport::client::git;
        use std::net::{TcpStream, ToSocketAddrs as _};
        let url = self.url.connect_url();
        let host = url
            .host_unbracketed()
            .ok_or_else(|| self.fetch_error("a git:// URL needs a host"))?;
        let port = url.port;
        let address = (host, port.unwrap_or(GIT_DAEMON_PORT))
            .to_socket_addrs()
            .map_err(|e| self.fetch_error(&format!("resolving the git server: {e}")))?
            .next()
            .ok_or_else(|| self.fetch_error("the git server's name resolves to no address"))?;
        let io_error = |what: &str, e: std::io::Error| self.fetch_error(&format!("{what}: {e}"));
        let read = TcpStream::connect_timeout(&address, self.deadline)
            .map_err(|e| io_error("connecting to the git server", e))?;
        read.set_read_timeout(Some(self.deadline))
            .and_then(|()| read.set_write_timeout(Some(self.deadline)))
            .map_err(|e| io_error("setting the connection's timeouts", e))?;
        let write = read
            .try_clone()
            .map_err(|e| io_error("cloning the git server connection", e))?;
        let virtual_host = url.host().unwrap_or(host).to_owned();
        Ok(Box::new(git::blocking_io::Connection::new(
            read,
            write,
            gix::protocol::transport::Protocol::V2,
            url.path.clone(),
            Some((virtual_host, port)),
            git::ConnectMode::Daemon,
            false,
        )))
    }

    /// A failed connection or fetch, explained by the credentials (see [`Access::explain`]).
    fn explained<E>(&self, error: E) -> GitError
    where
        gix::Error: From<E>,
    {
        let error = gix::Error::from(error);
        // A read or write of the remote that hit its timeout (the git:// connection's).
        let timed_out = error.iter_errors().any(|e| {
            e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            })
        });
        if timed_out {
            return GitError::TimedOut {
                url: self.url.to_string(),
                reference: self.reference.clone(),
                after: self.deadline,
            };
        }
        let explained = self.access.explain(&error);
        GitError::Fetch {
            url: self.url.to_string(),
            reference: self.reference.clone(),
            message: self.access.scrub(&self.url.scrub(&explained)),
        }
    }

    fn object_error(&self, what: &str, error: &dyn std::error::Error) -> GitError {
        GitError::Cache {
            path: self.dir.clone(),
            message: format!("reading {what}: {}", describe(error)),
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Creates `dir` and its missing parents with mode 0700: the cache holds the specs, and specs
/// may name secrets' files.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::checkout::tests::git;
    use std::os::unix::fs::PermissionsExt as _;

    /// A bare repository with one commit on `main`, made by the git CLI; its URL and commit.
    fn remote_with_a_commit(dir: &Path) -> (RemoteUrl, Revision) {
        let remote = dir.join("remote.git");
        git(dir, &["init", "-q", "--bare", "remote.git"], "");
        let work = dir.join("work");
        git(dir, &["init", "-q", "work"], "");
        std::fs::write(work.join("web.yaml"), "kind: SwarmService\n").unwrap();
        git(&work, &["add", "."], "");
        git(&work, &["commit", "-q", "-m", "one"], "");
        git(
            &work,
            &[
                "push",
                "-q",
                remote.to_str().unwrap(),
                "HEAD:refs/heads/main",
            ],
            "",
        );
        let id = git(&work, &["rev-parse", "HEAD"], "");
        let url = RemoteUrl::parse(&format!("file://{}", remote.display())).unwrap();
        (url, Revision::parse(&id).unwrap())
    }

    fn fetcher(cache: &Path, url: &RemoteUrl, reference: &str) -> Fetcher {
        Fetcher::open(
            cache,
            url.clone(),
            reference,
            Arc::new(Anonymous),
            Duration::from_secs(30),
        )
        .unwrap()
    }

    #[test]
    fn a_fetch_into_a_kept_cache_downloads_only_what_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let (url, commit) = remote_with_a_commit(dir.path());
        let cache = dir.path().join("cache/repo.git");
        let never = AtomicBool::new(false);

        let first = fetcher(&cache, &url, "main");
        assert_eq!(first.cached().unwrap(), None);
        let fetched = first.fetch_blocking(&never).unwrap();
        assert_eq!(fetched.revision, commit);
        assert_eq!(fetched.objects_received, 3, "commit, tree, blob");
        assert_eq!(first.fetch_blocking(&never).unwrap().objects_received, 0);

        // As after a restart: the cache is opened again and has everything.
        let reopened = fetcher(&cache, &url, "main");
        assert_eq!(reopened.cached().unwrap(), Some(commit));
        let again = reopened.fetch_blocking(&never).unwrap();
        assert_eq!((again.revision, again.objects_received), (commit, 0));
        assert!(
            std::fs::metadata(&cache).unwrap().permissions().mode() & 0o077 == 0,
            "the cache is private"
        );
    }

    #[test]
    fn a_missing_ref_or_remote_is_an_error_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let (url, _) = remote_with_a_commit(dir.path());
        let never = AtomicBool::new(false);
        let error = fetcher(&dir.path().join("c1"), &url, "nope")
            .fetch_blocking(&never)
            .unwrap_err();
        assert!(
            matches!(&error, GitError::RefNotFound { reference, .. } if reference == "refs/heads/nope"),
            "{error}"
        );
        let gone =
            RemoteUrl::parse(&format!("file://{}/missing.git", dir.path().display())).unwrap();
        let error = fetcher(&dir.path().join("c2"), &gone, "main")
            .fetch_blocking(&never)
            .unwrap_err();
        assert!(
            matches!(&error, GitError::Fetch { .. }) && error.to_string().contains("missing.git"),
            "{error}"
        );
    }

    #[test]
    fn refs_are_branch_names_or_full_refs() {
        assert_eq!(full_ref_name("main").unwrap(), "refs/heads/main");
        assert_eq!(full_ref_name("refs/tags/v1").unwrap(), "refs/tags/v1");
        assert!(full_ref_name("a..b").is_err());
        assert!(full_ref_name("bad ref").is_err());
    }

    /// A `git://` peer that accepts and never answers: the fetch's own thread ends with a
    /// timeout naming the remote instead of blocking forever.
    #[test]
    fn a_git_daemon_that_never_answers_times_out_and_frees_the_fetch_thread() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = RemoteUrl::parse(&format!("git://127.0.0.1:{port}/specs.git")).unwrap();
        let deadline = Duration::from_secs(1);
        let fetcher = Fetcher::open(
            &dir.path().join("cache.git"),
            url.clone(),
            "main",
            Arc::new(Anonymous),
            deadline,
        )
        .unwrap();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(fetcher.fetch_blocking(&AtomicBool::new(false)));
        });
        // Accepted and held open, never answered.
        let (_held, _) = listener.accept().unwrap();
        // Generous for a loaded machine: without a read timeout it never returns at all.
        let error = result
            .recv_timeout(Duration::from_secs(120))
            .expect("the fetch thread returns")
            .expect_err("nothing was fetched");
        assert!(
            matches!(&error, GitError::TimedOut { after, .. } if *after == deadline),
            "{error:?}"
        );
        assert!(error.to_string().contains(&url.to_string()), "{error}");
    }
}
