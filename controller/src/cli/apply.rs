//! `swarm-operator apply`: spec files validated with the stored ones they join, then stored in
//! the swarm for `run --source swarm` (a SwarmSecret's content as a swarm secret).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::AgeArgs;
use super::validate::validate_dir;
use super::{CliError, connect};
use crate::desired::SUSPEND_FILE;
use crate::desired::applied_secrets;
use crate::docker::{DockerEngine, SwarmApi};
use crate::spec::in_swarm::{
    ApplyReport, SpecConfigs, StoredSpecsError, read_spec_files, write_mirror,
};
use crate::spec::{AgeIdentities, SpecError};

/// The arguments of `apply`.
#[derive(clap::Args)]
pub struct ApplyArgs {
    /// A spec file or directory.
    pub path: PathBuf,
    /// As for `run`.
    #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
    pub instance: String,
    #[command(flatten)]
    pub age: AgeArgs,
}

/// Prints what was stored, or every problem (exit 1, nothing stored).
pub async fn run(args: ApplyArgs, context: Option<&str>) -> Result<ExitCode, CliError> {
    let ApplyArgs {
        path,
        instance,
        age,
    } = args;
    let identities = age.read()?;
    let api = connect(context).await?;
    match apply_path(&api, &path, &instance, &identities).await? {
        ApplyOutcome::Invalid(errors) => {
            for error in &errors {
                println!("{error}");
            }
            eprintln!("{} problem(s) found; nothing stored", errors.len());
            Ok(ExitCode::from(1))
        }
        ApplyOutcome::Applied(report) => {
            for name in &report.stored {
                println!("{name} stored");
            }
            for name in &report.unchanged {
                println!("{name} unchanged");
            }
            for name in &report.removed {
                println!("{name} removed");
            }
            for name in &report.secrets_created {
                println!("secret {name} created");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What `apply` found or did.
#[derive(Debug)]
pub enum ApplyOutcome {
    /// The specs were invalid; nothing was stored.
    Invalid(Vec<SpecError>),
    /// The specs were stored.
    Applied(ApplyReport),
}

/// `apply PATH`: validates the spec files of `path` together with the stored ones they join
/// (all of a directory replaces the stored set; a single file is added to it), then stores
/// them in the swarm. Invalid specs store nothing; their errors name the files in `path`.
///
/// A SwarmSecret's content is never stored in a config: it becomes a swarm secret `apply`
/// creates, and the stored spec names that secret (see [`crate::desired::applied_secrets`]).
pub async fn apply_path(
    api: &DockerEngine,
    path: &Path,
    instance: &str,
    identities: &AgeIdentities,
) -> Result<ApplyOutcome, CliError> {
    let mut files = read_spec_files(path)?;
    let is_dir = path.is_dir();
    let mut secrets = Vec::new();
    let mut secrets_by_file: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut errors = Vec::new();
    for file in files.iter_mut().filter(|f| f.name != SUSPEND_FILE) {
        let original = if is_dir {
            path.join(&file.name)
        } else {
            path.to_owned()
        };
        match applied_secrets::prepare(&original, &file.content, identities) {
            Ok(None) => {}
            Ok(Some(prepared)) => {
                file.content = prepared.content;
                secrets_by_file.insert(
                    file.name.clone(),
                    prepared.secrets.iter().map(|d| d.name.clone()).collect(),
                );
                secrets.extend(prepared.secrets);
            }
            Err(mut problems) => errors.append(&mut problems),
        }
    }
    if !errors.is_empty() {
        return Ok(ApplyOutcome::Invalid(errors));
    }
    let configs = SpecConfigs::new(api.clone(), instance);
    let mut resulting: BTreeMap<String, Vec<u8>> = if is_dir {
        BTreeMap::new()
    } else {
        configs.current().await?
    };
    let stored_names: BTreeSet<String> = resulting.keys().cloned().collect();
    resulting.extend(files.iter().map(|f| (f.name.clone(), f.content.clone())));

    // Validate the set as the operator will load it: the same loader on a directory.
    let temp = std::env::temp_dir();
    let io = |source| StoredSpecsError::Io {
        path: temp.clone(),
        source,
    };
    // A FROM-scratch image (the operator's own) has no /tmp until someone makes it.
    std::fs::create_dir_all(&temp).map_err(io)?;
    let scratch = tempfile::tempdir_in(&temp).map_err(io)?;
    write_mirror(scratch.path(), &resulting)?;
    let networks: BTreeSet<String> = api.observe().await?.networks.into_keys().collect();
    // Only spec files are stored, never the files they refer to (a SwarmSecret's decrypted
    // content went into its swarm secret above): no `.age` file is left to decrypt.
    let mut errors = validate_dir(
        scratch.path(),
        Some(&networks),
        &AgeIdentities::none(),
        api.engine_api_version(),
    )?;
    if !errors.is_empty() {
        for error in &mut errors {
            error.file = original_path(path, is_dir, &stored_names, &error.file, scratch.path());
        }
        return Ok(ApplyOutcome::Invalid(errors));
    }
    // The specs first, then the secrets they name (see `applied_secrets`).
    let mut report = configs.apply(&files, is_dir, &secrets_by_file).await?;
    report.secrets_created = applied_secrets::create(api, &secrets, instance).await?;
    Ok(ApplyOutcome::Applied(report))
}

/// Maps a file of the scratch directory back to where the user knows it from.
fn original_path(
    applied: &Path,
    is_dir: bool,
    stored: &BTreeSet<String>,
    scratch_file: &Path,
    scratch: &Path,
) -> PathBuf {
    let Ok(name) = scratch_file.strip_prefix(scratch) else {
        return scratch_file.to_owned();
    };
    if is_dir {
        applied.join(name)
    } else if applied.file_name() == Some(name.as_os_str()) {
        applied.to_owned()
    } else if stored.contains(name.to_str().unwrap_or_default()) {
        PathBuf::from(format!("(stored in the swarm) {}", name.display()))
    } else {
        scratch_file.to_owned()
    }
}
