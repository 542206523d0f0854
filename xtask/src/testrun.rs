//! `cargo xtask test`: the README's one test command: docker, fmt, clippy, unit + integration tests, images, e2e; each phase timed.

use std::path::Path;

use crate::cluster::{Cluster, ClusterError, ENV_CLUSTER, UpOptions};
use crate::cmd::{Cmd, CmdError};
use crate::docker::{self, DockerError};
use crate::images::{self, ImagesError};
use crate::timing::phase;

/// Which phase failed.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// Docker could not be made available.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// A cargo step failed (fmt, clippy, tests).
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// Image build.
    #[error(transparent)]
    Images(#[from] ImagesError),
    /// The e2e cluster.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// Options of `cargo xtask test`.
#[derive(Debug, Clone, Default)]
pub struct TestOptions {
    /// Skip images and the e2e phase.
    pub skip_e2e: bool,
    /// Nodes of the e2e cluster.
    pub nodes: usize,
}

fn cargo(root: &Path) -> Cmd {
    Cmd::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).current_dir(root)
}

/// Run every phase; stop at the first failure.
pub fn run(root: &Path, opts: &TestOptions) -> Result<(), TestError> {
    phase("docker: engine + local swarm", || {
        docker::ensure_docker()?;
        docker::ensure_local_swarm()
    })?;
    phase("test tools", || {
        // The controller's integration tests run a FROM-scratch image of static busybox,
        // check the status page in a headless Chromium and file_sd with a real Prometheus,
        // make the https webhook test's certificates with the openssl CLI, and encrypt the
        // `.age` test files with Debian's age CLI.
        crate::apt::ensure_installed("/bin/busybox", "busybox-static")?;
        crate::apt::ensure_installed("/usr/bin/age", "age")?;
        crate::apt::ensure_installed("/usr/bin/chromium", "chromium")?;
        crate::apt::ensure_installed("/usr/bin/prometheus", "prometheus")?;
        // --web-config's and the webhooks' tests: certificates made by openssl, requests sent
        // by curl; tests/transport.rs: TLS and ssh endpoints (socat, a real sshd).
        crate::apt::ensure_installed("/usr/bin/openssl", "openssl")?;
        crate::apt::ensure_installed("/usr/bin/curl", "curl")?;
        crate::apt::ensure_installed("/usr/bin/socat", "socat")?;
        crate::apt::ensure_installed("/usr/sbin/sshd", "openssh-server")?;
        crate::apt::ensure_installed("/usr/bin/ssh", "openssh-client")?;
        // tests/git_transports.rs: git's http-backend (Debian's git) behind lighttpd with TLS
        // (mod_openssl is its own package) and basic auth; sshd serves git-upload-pack.
        crate::apt::ensure_installed("/usr/lib/git-core/git-http-backend", "git")?;
        crate::apt::ensure_installed("/usr/sbin/lighttpd", "lighttpd")?;
        crate::apt::ensure_installed("/usr/lib/lighttpd/mod_openssl.so", "lighttpd-mod-openssl")
    })?;
    phase("cargo fmt --check", || {
        cargo(root).args(["fmt", "--all", "--", "--check"]).run()
    })?;
    phase("cargo clippy -D warnings", || {
        cargo(root)
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
            .run()
    })?;
    // The only freshness check of `crds/` (there is no unit-test twin): it regenerates with
    // the real binary, so it also catches a generated file that was never committed.
    phase("crds freshness", || check_crds(root))?;
    let static_build = (!opts.skip_e2e).then(|| images::prebuild_in_background(root));
    let tests = phase("cargo test (unit + integration)", || {
        cargo(root)
            .args(["test", "--workspace", "--exclude", "e2e"])
            .run()?;
        cargo(root)
            .args(["test", "-p", "e2e", "--lib", "--bins"])
            .run()
    });
    // Wait for the background build even when the tests failed: its cargo must not outlive us.
    let static_build = static_build.map(|handle| {
        phase(
            "images: static release build (overlapped with the tests)",
            || handle.join().expect("the static build thread panicked"),
        )
    });
    tests?;
    let Some(static_build) = static_build else {
        eprintln!("skipping images and e2e (--skip-e2e)");
        return Ok(());
    };
    static_build?;
    e2e(root, opts.nodes.max(1), &[])
}

/// Images, a cluster, then the e2e test binary against it (handed over via [`ENV_CLUSTER`]).
pub fn e2e(root: &Path, nodes: usize, extra: &[String]) -> Result<(), TestError> {
    let e2e_binary = || cargo(root).args(["test", "-p", "e2e", "--test", "swarm", "--"]);
    // Listing the scenarios needs no images and no cluster.
    if extra.iter().any(|a| a == "--list") {
        return e2e_binary().args(extra).run().map_err(Into::into);
    }
    docker::ensure_docker()?;
    let all = images::ALL.to_vec();
    phase("images", || images::build(root, &all))?;
    let cluster = Cluster::up(&UpOptions {
        nodes,
        managers: crate::cluster::default_managers(nodes),
        images: all.iter().map(|i| i.tag.to_string()).collect(),
    })?;
    let r = phase("e2e scenarios", || {
        e2e_binary()
            .args(extra)
            .env(ENV_CLUSTER, &cluster.prefix)
            .run()
    });
    drop(cluster);
    r?;
    // Its own node (a manager whose dockerd listens with --tlsverify, and sshd): reaching a
    // swarm as the docker CLI does.
    phase("e2e transport", || {
        cargo(root)
            .args(["test", "-p", "e2e", "--test", "transport"])
            .run()
    })
    .map_err(Into::into)
}

/// Regenerate `crds/` with the operator and fail if that changed anything (controller-rs style).
fn check_crds(root: &Path) -> Result<(), CmdError> {
    cargo(root)
        .args([
            "run",
            "-q",
            "-p",
            "swarm-operator",
            "--",
            "crds",
            "--out",
            "crds",
        ])
        .output()?;
    let (clean, _, _) = Cmd::new("git")
        .args(["diff", "--exit-code", "--", "crds"])
        .current_dir(root)
        .output_any()?;
    let untracked = Cmd::new("git")
        .args(["ls-files", "--others", "--exclude-standard", "crds"])
        .current_dir(root)
        .output()?;
    if clean && untracked.is_empty() {
        Ok(())
    } else {
        Err(CmdError::Failed {
            cmd: "git diff --exit-code -- crds".into(),
            status: "crds/ is stale".into(),
            stderr:
                "regenerate with `cargo run -p swarm-operator -- crds --out crds` and commit crds/"
                    .into(),
        })
    }
}
