//! The last good objects of every spec file, kept across reloads so that a broken edit never
//! removes what the file declared before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::load::{FileLoad, LoadDirError, load_dir};
use super::located::{Located, SpecError};
use super::types::Object;
use super::validate::validate;

/// What the spec directory asks for, after a reload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    /// Objects of files that loaded, plus the last good objects of files that now fail
    /// (in file, then document order).
    pub objects: Vec<Located<Object>>,
    /// Every problem found, with its location.
    pub errors: Vec<SpecError>,
    /// `false` when some file failed: then `objects` may lack objects the failed files declare
    /// (a file that failed on its first load contributes nothing), so nothing may be pruned
    /// on the grounds that it is missing from `objects`.
    pub complete: bool,
    /// The files that failed in this reload.
    pub failed_files: BTreeSet<PathBuf>,
}

/// Keeps, per spec file, the objects of its last successful load.
///
/// Semantics of [`SpecStore::reload`]:
/// * a file that loads replaces its previous objects;
/// * a file that fails keeps its last good objects (none if it never loaded) and is listed in
///   [`SpecStore::failed_files`] until it loads again;
/// * a file that is gone drops its objects (that is how a spec is deleted);
/// * a directory that cannot be listed changes nothing and returns the error.
#[derive(Debug, Clone, Default)]
pub struct SpecStore {
    last_good: BTreeMap<PathBuf, Vec<Located<Object>>>,
    failed: BTreeSet<PathBuf>,
}

impl SpecStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Re-reads `dir` (loading only: syntax, types, apiVersion/kind, unknown fields).
    pub fn reload(&mut self, dir: &Path) -> Result<Desired, LoadDirError> {
        self.reload_with(dir, None)
    }

    /// Re-reads `dir` and also runs [`validate`] over the result: a file with any validation
    /// error fails like a file that does not parse (it keeps its last good objects).
    ///
    /// Validation sees the new objects of files that loaded plus the last good objects of files
    /// that failed, so a service may refer to a network whose file is momentarily broken.
    pub fn reload_validated(
        &mut self,
        dir: &Path,
        existing_networks: &BTreeSet<String>,
    ) -> Result<Desired, LoadDirError> {
        self.reload_with(dir, Some(existing_networks))
    }

    /// The files that failed in the last reload.
    pub fn failed_files(&self) -> &BTreeSet<PathBuf> {
        &self.failed
    }

    /// The objects currently held (last good of every file).
    pub fn objects(&self) -> impl Iterator<Item = &Located<Object>> {
        self.last_good.values().flatten()
    }

    fn reload_with(
        &mut self,
        dir: &Path,
        existing_networks: Option<&BTreeSet<String>>,
    ) -> Result<Desired, LoadDirError> {
        let loaded = load_dir(dir)?;
        let mut errors = Vec::new();
        let mut fresh: BTreeMap<PathBuf, Vec<Located<Object>>> = BTreeMap::new();
        let mut failed = BTreeSet::new();
        for (path, load) in loaded.files {
            match load {
                FileLoad::Ok(objects) => {
                    fresh.insert(path, objects);
                }
                FileLoad::Failed(mut errs) => {
                    errors.append(&mut errs);
                    failed.insert(path);
                }
            }
        }

        if let Some(existing) = existing_networks {
            let candidate: Vec<Located<Object>> = fresh
                .values()
                .flatten()
                .chain(
                    failed
                        .iter()
                        .filter_map(|p| self.last_good.get(p))
                        .flatten(),
                )
                .cloned()
                .collect();
            for error in validate(&candidate, existing) {
                // Errors about last good objects of already failed files would point at text
                // that is no longer there: the load errors of that file stand for it.
                if fresh.contains_key(&error.file) {
                    failed.insert(error.file.clone());
                    errors.push(error);
                }
            }
            fresh.retain(|path, _| !failed.contains(path));
        }

        // Deleted files drop out; failed files keep what they had.
        self.last_good
            .retain(|path, _| failed.contains(path) || fresh.contains_key(path));
        self.last_good.extend(fresh);
        self.failed = failed;

        Ok(Desired {
            objects: self.objects().cloned().collect(),
            errors,
            complete: self.failed.is_empty(),
            failed_files: self.failed.clone(),
        })
    }
}
