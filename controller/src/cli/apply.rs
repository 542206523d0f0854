//! The one-shot commands: `validate`, `diff`, `apply` and `delete` (the long-running `run` is
//! in `operator`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::control::plan::{Plan, plan};
use crate::desired::applied_secrets::{self, Collected};
use crate::desired::{DesiredState, SUSPEND_FILE};
use crate::docker::{DockerEngine, DockerError, SwarmApi};
use crate::spec::in_swarm::{
    ApplyReport, SpecConfigs, StoredSpecsError, read_spec_files, write_mirror,
};
use crate::spec::{AgeIdentities, LoadDirError, SpecError, SpecStore};

/// Errors of the one-shot commands.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The spec directory could not be read.
    #[error(transparent)]
    Load(#[from] LoadDirError),
    /// The swarm could not be read.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Stored specs could not be read or written.
    #[error(transparent)]
    Stored(#[from] StoredSpecsError),
}

/// What `apply` found or did.
#[derive(Debug)]
pub enum ApplyOutcome {
    /// The specs were invalid; nothing was stored.
    Invalid(Vec<SpecError>),
    /// The specs were stored.
    Applied(ApplyReport),
}

/// Validates the spec directory. With `existing_networks` (read from a live swarm) references
/// to networks that exist there are accepted; with `None` every referenced network is assumed
/// to exist (offline validation) and only the other checks run. `.age` files are decrypted
/// with `identities`.
pub fn validate_dir(
    dir: &Path,
    existing_networks: Option<&BTreeSet<String>>,
    identities: &AgeIdentities,
) -> Result<Vec<SpecError>, CommandError> {
    let mut store = SpecStore::with_identities(identities.clone());
    let desired = match existing_networks {
        Some(networks) => store.reload_validated(dir, networks)?,
        None => {
            // Two passes: the first learns which networks are referenced, the second treats
            // them all as existing, so that only a live swarm can call one missing.
            let loaded = store.reload(dir)?;
            let referenced: BTreeSet<String> = loaded
                .objects
                .iter()
                .filter_map(|o| o.value.as_service())
                .flat_map(|s| s.spec.networks.iter().cloned())
                .chain(
                    loaded
                        .objects
                        .iter()
                        .filter_map(|o| o.value.as_network())
                        .filter(|n| n.spec.external)
                        .map(|n| n.metadata.name.clone()),
                )
                .collect();
            store = SpecStore::with_identities(identities.clone());
            store.reload_validated(dir, &referenced)?
        }
    };
    Ok(desired.errors)
}

/// The plan for the spec directory against the live swarm, and the spec problems found.
pub async fn diff_dir<A: SwarmApi>(
    api: &A,
    dir: &Path,
    allow_empty_prune: bool,
    instance: &str,
    identities: &AgeIdentities,
) -> Result<(Plan, Vec<SpecError>), CommandError> {
    let observed = api.observe().await?;
    let existing: BTreeSet<String> = observed.networks.keys().cloned().collect();
    let desired = DesiredState::load(
        &mut SpecStore::with_identities(identities.clone()),
        dir,
        &existing,
        allow_empty_prune,
        instance,
    )?;
    Ok((plan(&desired, &observed), desired.errors))
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
) -> Result<ApplyOutcome, CommandError> {
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
    let mut errors = validate_dir(scratch.path(), Some(&networks), &AgeIdentities::none())?;
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

/// What `delete` did.
#[derive(Debug, Default)]
pub struct DeleteReport {
    /// The stored files removed.
    pub removed: Vec<String>,
    /// Secrets `apply` created that no stored spec names any more, removed.
    pub secrets: Collected,
}

/// `delete TARGET`: removes stored spec files. `TARGET` is a spec file or directory (its file
/// names are removed) or the name of a stored file. Then removes the secrets `apply` created
/// whose SwarmSecret no stored spec declares any more and that no service mounts (see
/// [`applied_secrets::collect_unused`]).
pub async fn delete_target(
    api: &DockerEngine,
    target: &Path,
    instance: &str,
) -> Result<DeleteReport, CommandError> {
    let names: BTreeSet<String> = if target.exists() {
        read_spec_files(target)?
            .into_iter()
            .map(|f| f.name)
            .collect()
    } else {
        BTreeSet::from([target.display().to_string()])
    };
    let removed = SpecConfigs::new(api.clone(), instance)
        .delete(&names)
        .await?;
    let secrets = applied_secrets::collect_unused(api, instance).await?;
    Ok(DeleteReport { removed, secrets })
}
