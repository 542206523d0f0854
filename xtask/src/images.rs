//! The project's container images: static release binaries copied into a temp build context and `docker build`-ed `FROM scratch`.

use std::path::{Path, PathBuf};

use crate::cmd::{Cmd, CmdError};

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// An image name that is not in [`ALL`].
    #[error("unknown image {0:?}; known: {known}", known = ALL.iter().map(|i| i.dir).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    /// The static cargo build failed.
    #[error("static release build failed")]
    Cargo(#[source] CmdError),
    /// Preparing the build context failed.
    #[error("preparing the build context for {image}")]
    Context {
        /// The image.
        image: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `docker build` failed.
    #[error("docker build of {image} failed")]
    Build {
        /// The image.
        image: String,
        /// The docker error.
        source: CmdError,
    },
}

/// The only target whose std is installed; `+crt-static` makes glibc binaries static.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// One image: its Dockerfile directory under `images/`, its tag, and the binaries it contains.
#[derive(Debug, Clone, Copy)]
pub struct Image {
    /// Directory under `images/` holding the Dockerfile; also the name used on the command line.
    pub dir: &'static str,
    /// The tag the manifests refer to.
    pub tag: &'static str,
    /// `(cargo package, binary)` pairs copied into the build context root.
    pub bins: &'static [(&'static str, &'static str)],
    /// `(file of the build machine, name in the context)` pairs copied too.
    pub host_files: &'static [(&'static str, &'static str)],
}

/// Every image, in build order.
pub const ALL: [Image; 4] = [
    Image {
        dir: "account-service",
        tag: "goblog/account-service:dev",
        bins: &[
            ("account-service", "account-service"),
            ("healthcheck", "healthcheck"),
        ],
        host_files: &[],
    },
    Image {
        dir: "quote-service",
        tag: "goblog/quote-service:dev",
        bins: &[
            ("quote-service", "quote-service"),
            ("healthcheck", "healthcheck"),
        ],
        host_files: &[],
    },
    Image {
        dir: "swarm-operator",
        tag: "swarm-operator:dev",
        bins: &[
            ("swarm-operator", "swarm-operator"),
            ("healthcheck", "healthcheck"),
        ],
        // The system roots for https webhooks (Slack, Discord, …): the image is FROM scratch.
        host_files: &[("/etc/ssl/certs/ca-certificates.crt", "ca-certificates.crt")],
    },
    Image {
        dir: "e2e-probe",
        tag: "goblog/e2e-probe:dev",
        bins: &[("e2e", "e2e-probe")],
        host_files: &[],
    },
];

/// Look images up by directory name; empty means all.
pub fn select(names: &[String]) -> Result<Vec<Image>, ImagesError> {
    if names.is_empty() {
        return Ok(ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            ALL.iter()
                .find(|i| i.dir == n || i.tag == n)
                .copied()
                .ok_or_else(|| ImagesError::Unknown(n.clone()))
        })
        .collect()
}

/// Where the static binaries land.
pub fn bin_dir(root: &Path) -> PathBuf {
    root.join("target").join(TARGET).join("release")
}

/// Build the static binaries of `images` in one cargo invocation (one lock, shared deps).
pub fn build_binaries(root: &Path, images: &[Image]) -> Result<(), ImagesError> {
    static_build(Cmd::new(cargo_program()), root, images)
        .run()
        .map_err(ImagesError::Cargo)
}

/// Start the static release build of every image on a thread of its own, at the lowest CPU
/// priority, with its output captured (a failure's error carries its tail).
///
/// Why: the integration tests spend most of their time waiting on the swarm, and the release
/// build (another profile and target, so another cargo lock) is the longest step of the images
/// phase. Overlapping the two takes its minutes off CI's wall time, while `nice` keeps the
/// tests' own processes first in line for the cores. Join it before [`build`], which then finds
/// the binaries fresh.
pub fn prebuild_in_background(root: &Path) -> std::thread::JoinHandle<Result<(), ImagesError>> {
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        let niced = Cmd::new("nice").args(["-n", "19"]).arg(cargo_program());
        static_build(niced, &root, &ALL)
            .output()
            .map(drop)
            .map_err(ImagesError::Cargo)
    })
}

fn cargo_program() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `cargo build --release --target … -p …` for the binaries of `images`, appended to `cargo`.
fn static_build(cargo: Cmd, root: &Path, images: &[Image]) -> Cmd {
    let mut packages: Vec<&str> = images
        .iter()
        .flat_map(|i| i.bins.iter().map(|(p, _)| *p))
        .collect();
    packages.sort_unstable();
    packages.dedup();
    let mut cmd = cargo
        .args(["build", "--release", "--target", TARGET])
        .current_dir(root)
        // Only target artifacts get RUSTFLAGS when --target is given, so build scripts and
        // proc-macros stay shared with ordinary builds.
        .env("RUSTFLAGS", "-C target-feature=+crt-static");
    for p in packages {
        cmd = cmd.args(["-p", p]);
    }
    cmd
}

/// `docker build` each image from a temp context holding its Dockerfile and binaries.
pub fn build_images(root: &Path, images: &[Image]) -> Result<(), ImagesError> {
    for img in images {
        let ctx_err = |source| ImagesError::Context {
            image: img.tag.to_string(),
            source,
        };
        let ctx = tempfile::Builder::new()
            .prefix("xtask-image-")
            .tempdir()
            .map_err(ctx_err)?;
        std::fs::copy(
            root.join("images").join(img.dir).join("Dockerfile"),
            ctx.path().join("Dockerfile"),
        )
        .map_err(ctx_err)?;
        for (_, bin) in img.bins {
            std::fs::copy(bin_dir(root).join(bin), ctx.path().join(bin)).map_err(ctx_err)?;
        }
        for (from, name) in img.host_files {
            std::fs::copy(from, ctx.path().join(name)).map_err(ctx_err)?;
        }
        let id = Cmd::docker(["build", "-q", "-t", img.tag])
            .arg(ctx.path())
            // The engine here has no BuildKit; ask for the classic builder explicitly.
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .map_err(|source| ImagesError::Build {
                image: img.tag.to_string(),
                source,
            })?;
        eprintln!(
            "built {} ({})",
            img.tag,
            id.lines().last().unwrap_or_default()
        );
    }
    Ok(())
}

/// Binaries then images.
pub fn build(root: &Path, images: &[Image]) -> Result<(), ImagesError> {
    build_binaries(root, images)?;
    build_images(root, images)
}

/// Whether an image tag exists in the local engine.
pub fn exists(tag: &str) -> bool {
    Cmd::docker(["image", "inspect", "--format", "{{.Id}}", tag]).succeeds()
}
