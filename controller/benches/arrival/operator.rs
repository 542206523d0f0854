//! One `swarm-operator run` as a user starts it (default flags but `--concurrency` when the
//! bench varies it), watched as the scale bench watches its operator.

use std::path::Path;

use anyhow::Result;
use tokio::process::Command;

use crate::process::Watched;

/// Starts the operator on `specs`; its log and status file belong to `instance` under `work`.
pub fn start(
    specs: &Path,
    work: &Path,
    instance: &str,
    concurrency: Option<usize>,
    log_filter: &str,
) -> Result<Watched> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarm-operator"));
    command
        .args(["run", "--specs"])
        .arg(specs)
        .arg("--status")
        .arg(work.join(format!("{instance}.status.json")))
        .args(["--instance", instance]);
    if let Some(concurrency) = concurrency {
        command.args(["--concurrency", &concurrency.to_string()]);
    }
    command.env("RUST_LOG", log_filter);
    Watched::spawn(command, work.join(format!("{instance}.log")))
}
