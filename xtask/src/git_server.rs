//! A git server on the docker-in-docker cluster's bridge: `git daemon` in a container of the node image, serving a bare repository the e2e tests commit and push to.

use std::time::Duration;

use crate::cluster::{AUX_LABEL, Cluster, ClusterError, NODE_IMAGE, wait_for};
use crate::cmd::{Cmd, CmdError};

/// Where the bare repositories live in the container (`git daemon --base-path`).
const BASE: &str = "/srv/git";
/// The working clone commits are made in and pushed from.
const WORK: &str = "/srv/work";
/// The branch commits are pushed to.
pub const BRANCH: &str = "main";

/// Why the git server could not be started or pushed to.
#[derive(Debug, thiserror::Error)]
pub enum GitServerError {
    /// A docker (or git, through `docker exec`) command failed.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// The daemon did not answer in time.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A file name that would leave the working clone.
    #[error("{0:?}: a repository path must be relative and must not contain `..`")]
    Path(String),
    /// `git rev-parse HEAD` printed no commit id after a push.
    #[error("no commit id after pushing {message:?}: git printed {printed:?}")]
    NoCommit {
        /// The commit message.
        message: String,
        /// What the push script printed.
        printed: String,
    },
}

/// A running git server; dropping it removes its container.
#[derive(Debug)]
pub struct GitServer {
    container: String,
    repo: String,
    /// Its address on the cluster's bridge (what the nodes' containers reach through NAT).
    pub ip: String,
}

impl GitServer {
    /// Starts `git daemon` on the cluster's bridge serving an empty bare repository `repo`
    /// (e.g. `specs.git`) whose default branch is [`BRANCH`], and waits until it answers.
    ///
    /// The container carries [`AUX_LABEL`], not the node label, so the cluster's teardown
    /// removes it while [`Cluster::attach`] does not take it for a node.
    pub fn start(cluster: &Cluster, repo: &str) -> Result<GitServer, GitServerError> {
        let container = format!("{}-git", cluster.prefix);
        // A previous run against a reused cluster may have left one behind.
        let _ = Cmd::docker(["rm", "-f", "-v", &container]).output();
        let script = format!(
            "set -e; git init -q --bare -b {BRANCH} {BASE}/{repo}; \
             git init -q -b {BRANCH} {WORK}; git -C {WORK} remote add origin {BASE}/{repo}; \
             exec git daemon --base-path={BASE} --export-all --reuseaddr --listen=0.0.0.0"
        );
        Cmd::docker([
            "run",
            "-d",
            "--name",
            &container,
            "--hostname",
            &container,
            "--network",
            &cluster.network,
        ])
        .args(["--label", &format!("{AUX_LABEL}={}", cluster.prefix)])
        .args([NODE_IMAGE, "sh", "-c", &script])
        .output()?;
        let ip = Cmd::docker(["inspect", "--format"])
            .arg(format!(
                "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                cluster.network
            ))
            .arg(&container)
            .output()?;
        let server = GitServer {
            container,
            repo: repo.to_owned(),
            ip,
        };
        let url = format!("git://127.0.0.1/{repo}");
        wait_for(
            &format!("git daemon in {}", server.container),
            Duration::from_secs(60),
            || Ok(server.exec(["git", "ls-remote", &url]).succeeds()),
        )?;
        Ok(server)
    }

    /// The repository's `git://` URL on the cluster's bridge.
    pub fn url(&self) -> String {
        format!("git://{}/{}", self.ip, self.repo)
    }

    /// Writes (`Some`) or deletes (`None`) the files, commits everything as one commit and
    /// pushes it to [`BRANCH`]. Returns the commit id (40 hex digits).
    pub fn commit(
        &self,
        files: &[(&str, Option<&str>)],
        message: &str,
    ) -> Result<String, GitServerError> {
        for (path, contents) in files {
            if path.starts_with('/') || path.split('/').any(|p| p == "..") {
                return Err(GitServerError::Path((*path).to_owned()));
            }
            let target = format!("{WORK}/{path}");
            match contents {
                Some(text) => self
                    .exec([
                        "sh",
                        "-c",
                        "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"",
                        "sh",
                        &target,
                    ])
                    .stdin_bytes(text.as_bytes().to_vec())
                    .output()?,
                None => self.exec(["rm", "-f", &target]).output()?,
            };
        }
        let printed = self
            .exec([
                "sh",
                "-c",
                "set -e; cd \"$1\"; git add -A; \
                 git -c user.name=e2e -c user.email=e2e@swarm-operator.invalid commit -q -m \"$2\"; \
                 git push -q origin \"HEAD:$3\"; git rev-parse HEAD",
                "sh",
                WORK,
                message,
                BRANCH,
            ])
            .output()?;
        let id = printed.lines().last().unwrap_or_default().trim();
        if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(id.to_owned())
        } else {
            Err(GitServerError::NoCommit {
                message: message.to_owned(),
                printed,
            })
        }
    }

    fn exec<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Cmd::docker(["exec", "-i", &self.container]).args(args)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = Cmd::docker(["rm", "-f", "-v", &self.container]).output();
    }
}
