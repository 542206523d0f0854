//! Real git servers for the git source's tests, started by the test on loopback ports: an
//! upstream of bare repositories pushed to with the git CLI, sshd serving `git-upload-pack` to
//! a deploy key, and `git http-backend` behind lighttpd with TLS (a test CA) and basic auth.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::pki::Pki;
use super::require_tool;
use super::sshd::Sshd;

/// The token the https server accepts (as the basic-auth password of any user named in
/// [`HTTPS_USER`]); never a real one.
pub const HTTPS_TOKEN: &str = "sot-test-token-4f1c9a7e";
/// The user the https server knows: the operator's default username for a token.
pub const HTTPS_USER: &str = "x-access-token";

use super::process::{Running, free_port, run_ok, wait_for_port};

/// A directory of bare repositories and a work tree per repository to commit and push from,
/// with the git CLI (as a developer pushes).
pub struct Upstream {
    dir: tempfile::TempDir,
}

impl Upstream {
    /// An empty upstream, or `None` (skipped, with a printed reason) without the git CLI.
    pub fn new(test: &str) -> Option<Upstream> {
        require_tool(test, "git", "git")?;
        Some(Upstream {
            dir: tempfile::tempdir().expect("temp dir"),
        })
    }

    /// The directory holding `NAME.git`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The bare repository `name.git`.
    pub fn bare(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.git"))
    }

    /// Commits `files` (path, text) to branch `main` of `name.git` (created on first use)
    /// and pushes; the new commit's id.
    pub fn commit(&self, name: &str, files: &[(&str, &str)], message: &str) -> String {
        let bare = self.bare(name);
        let work = self.dir.path().join(format!("{name}.work"));
        if !bare.exists() {
            run_ok(
                "git",
                &["init", "-q", "--bare", "-b", "main", &path_str(&bare)],
                self.dir.path(),
            );
            run_ok(
                "git",
                &["init", "-q", "-b", "main", &path_str(&work)],
                self.dir.path(),
            );
        }
        for (path, text) in files {
            let file = work.join(path);
            std::fs::create_dir_all(file.parent().expect("a file in a directory")).expect("mkdir");
            std::fs::write(file, text).expect("write a file to commit");
        }
        run_ok("git", &["add", "-A"], &work);
        run_ok(
            "git",
            &[
                "-c",
                "user.name=swarm-operator tests",
                "-c",
                "user.email=tests@swarm-operator.invalid",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                message,
            ],
            &work,
        );
        run_ok(
            "git",
            &["push", "-q", "--force", &path_str(&bare), "HEAD:main"],
            &work,
        );
        run_ok("git", &["rev-parse", "HEAD"], &work)
    }
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

/// sshd on a loopback port serving the upstream's repositories to root with a deploy key (as
/// GitHub's and Gitea's deploy keys serve one repository over ssh), its host key made here.
pub struct SshGitServer {
    sshd: Sshd,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl SshGitServer {
    /// Starts sshd, or `None` (skipped, with a printed reason) without sshd, ssh-keygen or
    /// root.
    pub fn start(test: &str) -> Option<SshGitServer> {
        let sshd = Sshd::start(test, &["deploy_key"], &["other_host_key"])?;
        sshd.write_known_hosts("wrong_known_hosts", "other_host_key.pub");
        Some(SshGitServer {
            port: sshd.port,
            sshd,
        })
    }

    /// The `ssh://` URL of the bare repository at `bare` (an absolute path).
    pub fn url(&self, bare: &Path) -> String {
        format!("ssh://root@127.0.0.1:{}{}", self.port, bare.display())
    }

    /// The deploy key (mode 0600, as ssh-keygen writes it).
    pub fn deploy_key(&self) -> PathBuf {
        self.sshd.dir().join("deploy_key")
    }

    /// A known_hosts file with the server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.sshd.dir().join("known_hosts")
    }

    /// A known_hosts file with another key for the server's address: what a client sees when
    /// someone else answers in the server's place.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        self.sshd.dir().join("wrong_known_hosts")
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        self.sshd.log()
    }
}

/// `git http-backend` (smart http, fetch only) behind lighttpd on a loopback port: TLS with a
/// certificate of a CA made by the test, basic auth with [`HTTPS_USER`] / [`HTTPS_TOKEN`].
pub struct HttpsGitServer {
    dir: tempfile::TempDir,
    pki: Pki,
    _lighttpd: Running,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl HttpsGitServer {
    /// Serves the repositories of `root` at `https://127.0.0.1:PORT/git/NAME.git`, or `None`
    /// (skipped, with a printed reason) without lighttpd, openssl or git's http-backend.
    pub fn start(test: &str, root: &Path) -> Option<HttpsGitServer> {
        let lighttpd = Some(PathBuf::from("/usr/sbin/lighttpd"))
            .filter(|p| p.is_file())
            .or_else(|| require_tool(test, "lighttpd", "lighttpd lighttpd-mod-openssl"))?;
        let openssl = require_tool(test, "openssl", "openssl")?;
        let backend = Path::new("/usr/lib/git-core/git-http-backend");
        if !backend.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {} is missing: apt-get install git",
                backend.display()
            );
            eprintln!("SKIPPED {test}: {} is missing", backend.display());
            return None;
        }
        let modules = Path::new("/usr/lib/lighttpd/mod_openssl.so");
        if !modules.is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but lighttpd has no TLS: apt-get install lighttpd-mod-openssl"
            );
            eprintln!("SKIPPED {test}: lighttpd-mod-openssl is missing");
            return None;
        }
        let pki = Pki::new(&openssl);
        pki.issue(
            "server",
            "ca",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        std::fs::write(path.join("users"), format!("{HTTPS_USER}:{HTTPS_TOKEN}\n"))
            .expect("write the users file");
        let port = free_port();
        // lighttpd's own syntax; the backend serves every repository under GIT_PROJECT_ROOT
        // (GIT_HTTP_EXPORT_ALL) and only fetches (http.receivepack is off without a user).
        std::fs::write(
            path.join("lighttpd.conf"),
            format!(
                r#"server.modules = ("mod_auth", "mod_authn_file", "mod_cgi", "mod_setenv", "mod_openssl", "mod_alias")
server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{dir}/error.log"
ssl.engine = "enable"
ssl.pemfile = "{certs}/server.crt"
ssl.privkey = "{certs}/server.key"
auth.backend = "plain"
auth.backend.plain.userfile = "{dir}/users"
auth.require = ( "/" => ( "method" => "basic", "realm" => "git", "require" => "valid-user" ) )
alias.url = ( "/git/" => "{backend}/" )
$HTTP["url"] =~ "^/git/" {{
  cgi.assign = ( "" => "" )
  setenv.add-environment = ( "GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1" )
}}
"#,
                root = root.display(),
                dir = path.display(),
                certs = pki.dir().display(),
                backend = backend.display(),
            ),
        )
        .expect("write lighttpd.conf");
        let child = Command::new(lighttpd)
            .args(["-D", "-f"])
            .arg(path.join("lighttpd.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting lighttpd");
        let lighttpd = Running(child);
        wait_for_port(port);
        Some(HttpsGitServer {
            dir,
            pki,
            _lighttpd: lighttpd,
            port,
        })
    }

    /// The https URL of the upstream's repository `name`.
    pub fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/git/{name}.git", self.port)
    }

    /// The test CA's certificate (what `--git-ca-file` takes).
    pub fn ca(&self) -> PathBuf {
        self.pki.path("ca.crt")
    }

    /// A file holding `token` and a newline, as a docker secret holds it.
    pub fn token_file(&self, name: &str, token: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{token}\n")).expect("write a token file");
        path
    }

    /// lighttpd's error log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}
