//! Real git repositories and a real `git daemon` for the git source's tests, driven with the
//! git CLI (isolated from the machine's and the user's configuration).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A bare repository (`remote`) and a clone to commit in (`work`), on branch `main`.
pub struct GitRepo {
    /// Holds both.
    pub dir: tempfile::TempDir,
    /// The bare repository the operator fetches from.
    pub remote: PathBuf,
    /// The working clone.
    pub work: PathBuf,
}

/// Runs `git` in `dir` with an empty configuration; panics with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = git_command(dir).args(args).output().expect("running git");
    assert!(
        output.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn git_command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ]);
    command
}

impl GitRepo {
    /// An empty bare repository and its clone.
    pub fn new() -> GitRepo {
        let dir = tempfile::tempdir().expect("temp dir");
        let remote = dir.path().join("specs.git");
        let work = dir.path().join("work");
        git(dir.path(), &["init", "-q", "--bare", "specs.git"]);
        git(dir.path(), &["init", "-q", "work"]);
        git(
            &work,
            &["remote", "add", "origin", remote.to_str().expect("UTF-8")],
        );
        GitRepo { dir, remote, work }
    }

    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.remote.display())
    }

    /// Writes `files` (path → content; `None` removes it) into the clone and commits them;
    /// returns the commit (40 hex).
    pub fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> String {
        for (path, content) in files {
            let path = self.work.join(path);
            match content {
                Some(text) => {
                    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
                    std::fs::write(&path, text).expect("writing a file");
                }
                None => std::fs::remove_file(&path).expect("removing a file"),
            }
        }
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Pushes the clone's `main` to the bare repository.
    pub fn push(&self) {
        git(&self.work, &["push", "-q", "origin", "main"]);
    }

    /// Points the bare repository's `main` at `commit` (a force push), and the clone's too.
    pub fn force_push(&self, commit: &str) {
        git(&self.work, &["reset", "-q", "--hard", commit]);
        git(&self.work, &["push", "-q", "--force", "origin", "main"]);
    }
}

/// `git daemon` serving a directory on a loopback port; stopped on drop.
pub struct GitDaemon {
    child: Option<Child>,
    base: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl GitDaemon {
    /// Serves every repository under `base` (read only) on a free loopback port.
    pub fn start(base: &Path) -> GitDaemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut daemon = GitDaemon {
            child: None,
            base: base.to_owned(),
            port,
        };
        daemon.resume();
        daemon
    }

    /// `git://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    /// Stops serving (the port refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Serves again on the same port, once it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the daemon runs already");
        // The daemon itself, not `git daemon`: that runs it as a child, which would outlive a
        // kill of `git` and keep serving.
        let daemon = Path::new(&git(&self.base, &["--exec-path"])).join("git-daemon");
        let child = Command::new(daemon)
            .current_dir(&self.base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--base-path={}", self.base.display()))
            .arg(&self.base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting git daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
