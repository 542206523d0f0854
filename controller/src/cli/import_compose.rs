//! `swarm-operator import-compose`: compose stack files turned into spec files (the work is
//! [`crate::compose`]'s), with what was dropped listed.

use std::path::PathBuf;
use std::process::ExitCode;

use super::CliError;
use crate::compose;
use crate::spec::EngineApiVersion;

/// The arguments of `import-compose`.
#[derive(clap::Args)]
pub struct ImportComposeArgs {
    /// Compose files, merged in order like repeated `docker stack deploy -c`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The stack name (`NAME` of `docker stack deploy`).
    #[arg(long)]
    pub stack: String,
    /// Directory to write the specs (and the files they read) to.
    #[arg(long)]
    pub out: PathBuf,
    /// Fail (exit 2, nothing written) if any key would be dropped.
    #[arg(long)]
    pub strict: bool,
    /// Fail (exit 2, nothing written) on keys this Engine API version (e.g. `1.41`, Docker
    /// 20.10) does not know, located in the compose file. Without it the operator checks its
    /// engine's version when it loads the specs.
    #[arg(long, value_name = "VERSION")]
    pub api_version: Option<EngineApiVersion>,
}

/// Writes the specs; exit 1 if keys were dropped.
pub fn run(args: ImportComposeArgs) -> Result<ExitCode, CliError> {
    let ImportComposeArgs {
        files,
        stack,
        out,
        strict,
        api_version,
    } = args;
    let lookup = compose::environment(&files, |k| std::env::var(k).ok())?;
    let request = compose::ImportRequest {
        files,
        stack,
        out,
        strict,
        api_version,
    };
    let report = compose::import(&request, &lookup)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    println!(
        "wrote {} file(s) to {}",
        report.written.len(),
        request.out.display()
    );
    for removed in &report.removed {
        println!("removed (no longer in the compose files): {removed}");
    }
    for dropped in &report.dropped {
        println!("dropped: {dropped}");
    }
    Ok(if report.dropped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
