//! Installing a missing tool from Debian's packages, the way a new machine gets what the tests
//! need.

use std::path::Path;

use crate::cmd::{Cmd, CmdError};

/// Installs `package` with apt-get unless `path` already exists. Tries without `apt-get update`
/// first (fast when the package lists are fresh), then with it.
pub fn ensure_installed(path: &str, package: &str) -> Result<(), CmdError> {
    if Path::new(path).exists() {
        return Ok(());
    }
    eprintln!("{path} is missing: apt-get install {package}");
    let install = || {
        Cmd::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
    };
    install().map(drop).or_else(|_| {
        Cmd::new("apt-get").arg("update").output()?;
        install().map(drop)
    })
}
