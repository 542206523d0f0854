//! `swarm-operator crds`: the JSON Schemas of the spec kinds, written or printed.

use std::path::PathBuf;
use std::process::ExitCode;

use super::CliError;
use crate::spec::{crds, write_crds};

/// The arguments of `crds`.
#[derive(clap::Args)]
pub struct CrdsArgs {
    /// Directory to write them to; prints them when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Writes the schemas to `--out`, or prints them.
pub fn run(args: CrdsArgs) -> Result<ExitCode, CliError> {
    match args.out {
        Some(dir) => {
            if let Err(source) = write_crds(&dir) {
                return Err(CliError::WriteCrds { dir, source });
            }
        }
        None => {
            for (name, schema) in crds() {
                println!("# {name}\n{schema}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
