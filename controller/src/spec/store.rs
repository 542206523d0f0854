//! The last good objects of every spec file, kept across reloads so that a broken edit never
//! removes what the file declared before.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::encrypted::AgeIdentities;
use super::engine_api::{self, EngineApiVersion};
use super::kept::{self, KeptObjects};
use super::load::{FirstOfBurst, KeptLoad, LoadCache, LoadDirError, load_dir_cached_first};
use super::located::{Located, SpecError};
use super::types::Object;
use super::validate::validate;

/// What the spec directory asks for, after a reload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    /// Objects of files that loaded, plus the last good objects of files that now fail
    /// (in file, then document order), per file as kept ([`Desired::objects`] decodes them).
    kept: Vec<KeptObjects>,
    /// Every problem found, with its location.
    pub errors: Vec<SpecError>,
    /// What loaded with a warning (keys of a SwarmStack's compose files that stack deploy
    /// would ignore too), located.
    pub warnings: Vec<SpecError>,
    /// `false` when some file failed: then `objects` may lack objects the failed files declare
    /// (a file that failed on its first load contributes nothing), so nothing may be pruned
    /// on the grounds that it is missing from `objects`.
    pub complete: bool,
    /// The files that failed in this reload.
    pub failed_files: BTreeSet<PathBuf>,
    /// Spec files a first read of a burst left for the next reload ([`ReadScope::FirstOfBurst`]);
    /// 0 when the whole directory was read. While it is not 0, `objects` holds what was read
    /// plus the last good objects of every other file the store knows, and `errors`,
    /// `warnings` and `failed_files` are the last whole read's (less those of files read now):
    /// nothing that is not yet read is reported or judged.
    pub unread_files: usize,
    /// A whole read that found exactly what the store's previous whole read found: the same
    /// objects (no file read anew, none added or gone), errors, warnings and failed files.
    /// What is built from it would be built again the same (the periodic reload of a quiet
    /// directory: rebuilding 5,000 definitions only to find them equal cost 10 MB of heap).
    pub same_as_last: bool,
}

impl Desired {
    /// Objects of files that loaded, plus the last good objects of files that now fail
    /// (in file, then document order). Decoded from what the store keeps on every call: a
    /// reload that is [`Desired::same_as_last`] need not ask.
    pub fn objects(&self) -> Vec<Located<Object>> {
        self.objects_one_by_one().collect()
    }

    /// [`Desired::objects`], each decoded when the iteration reaches it.
    pub fn objects_one_by_one(&self) -> impl Iterator<Item = Located<Object>> + Clone + '_ {
        self.kept.iter().flat_map(|file| kept::objects(file))
    }
}

/// How much of the spec directory a reload reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadScope {
    /// Every file.
    Whole,
    /// Every file, unless a burst of new files landed (at least [`BURST_FILES`] the store has
    /// not seen): then only the first [`FIRST_OF_BURST`] of them, so that their objects are
    /// created while the rest is read. The caller reads again, whole, right after.
    FirstOfBurst,
}

/// New files that make a burst: fewer are parsed in well under 0.1 s (on one core of the
/// 2-core reference machine: 0.17 ms a one-service file).
pub const BURST_FILES: usize = 512;

/// The files of a burst read first: about 40 ms of parsing, enough objects to keep the
/// manager busy while the rest of the burst is read.
pub const FIRST_OF_BURST: usize = 256;

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
    last_good: BTreeMap<Arc<Path>, KeptObjects>,
    failed: BTreeSet<PathBuf>,
    cache: LoadCache,
    identities: AgeIdentities,
    engine_api: Option<EngineApiVersion>,
    /// The errors and warnings of the last whole read: a first read of a burst reports them
    /// for the files it leaves unread.
    last_errors: Vec<SpecError>,
    last_warnings: Vec<SpecError>,
    /// Whether a whole read has been made (what `same_as_last` compares with).
    read_whole: bool,
    /// The existing networks the last whole read was validated against, when every file
    /// loaded and nothing failed validation: the same objects validated against the same
    /// networks would fail nothing either, and a quiet directory's periodic reload then
    /// decodes none of them.
    clean_with: Option<BTreeSet<String>>,
}

impl SpecStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store whose reloads decrypt the `.age` files specs refer to with `identities`.
    pub fn with_identities(identities: AgeIdentities) -> Self {
        SpecStore {
            identities,
            ..Self::default()
        }
    }

    /// Validated reloads also refuse service fields that `version` (the engine's negotiated
    /// API version) does not know; `None` (no engine to ask) skips that check.
    pub fn set_engine_api(&mut self, version: Option<EngineApiVersion>) {
        self.engine_api = version;
        self.cache.set_engine_api(version);
        self.clean_with = None;
    }

    /// Re-reads `dir` (loading only: syntax, types, apiVersion/kind, unknown fields).
    pub fn reload(&mut self, dir: &Path) -> Result<Desired, LoadDirError> {
        self.reload_with(dir, None, ReadScope::Whole)
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
        self.reload_with(dir, Some(existing_networks), ReadScope::Whole)
    }

    /// [`SpecStore::reload_validated`] of the `scope` asked for. A read that leaves files unread
    /// ([`Desired::unread_files`]) changes nothing the store keeps but its parse cache: the
    /// next whole read decides what loaded and what failed.
    pub fn reload_validated_scoped(
        &mut self,
        dir: &Path,
        existing_networks: &BTreeSet<String>,
        scope: ReadScope,
    ) -> Result<Desired, LoadDirError> {
        self.reload_with(dir, Some(existing_networks), scope)
    }

    /// The files that failed in the last reload.
    pub fn failed_files(&self) -> &BTreeSet<PathBuf> {
        &self.failed
    }

    /// The objects currently held (last good of every file).
    pub fn objects(&self) -> Vec<Located<Object>> {
        self.last_good
            .values()
            .flat_map(|objects| kept::objects(objects))
            .collect()
    }

    fn reload_with(
        &mut self,
        dir: &Path,
        existing_networks: Option<&BTreeSet<String>>,
        scope: ReadScope,
    ) -> Result<Desired, LoadDirError> {
        let is_known =
            |path: &Path| self.last_good.contains_key(path) || self.failed.contains(path);
        let first = (scope == ReadScope::FirstOfBurst).then_some(FirstOfBurst {
            burst: BURST_FILES,
            first: FIRST_OF_BURST,
            is_known: &is_known,
        });
        let loaded = load_dir_cached_first(dir, &mut self.cache, &self.identities, first)?;
        let unread_files = loaded.unread;
        let warnings = loaded.warnings;
        let mut errors = Vec::new();
        let mut fresh: BTreeMap<Arc<Path>, KeptObjects> = BTreeMap::new();
        let mut failed = BTreeSet::new();
        for (path, load) in loaded.files {
            match load {
                KeptLoad::Ok(objects) => {
                    fresh.insert(path, objects);
                }
                KeptLoad::Failed(mut errs) => {
                    errors.append(&mut errs);
                    failed.insert(path.to_path_buf());
                }
            }
        }
        let same_objects = self.read_whole
            && unread_files == 0
            && failed.is_empty()
            && self.failed.is_empty()
            && fresh.len() == self.last_good.len()
            && self.holds(&fresh);

        if let Some(existing) = existing_networks
            && !(same_objects && self.clean_with.as_ref() == Some(existing))
        {
            let candidate: Vec<Located<Object>> = fresh
                .values()
                .chain(
                    self.last_good
                        .iter()
                        // Read in part: every file not read (or not loaded) stands as it was.
                        .filter(|(p, _)| {
                            failed.contains(&***p)
                                || (unread_files > 0 && !fresh.contains_key(&***p))
                        })
                        .map(|(_, objects)| objects),
                )
                .flat_map(|objects| kept::objects(objects))
                .collect();
            let engine_errors = self
                .engine_api
                .map(|engine| engine_api::check(&candidate, engine))
                .unwrap_or_default();
            for error in validate(&candidate, existing)
                .into_iter()
                .chain(engine_errors)
            {
                // Errors about last good objects of already failed files would point at text
                // that is no longer there: the load errors of that file stand for it.
                if fresh.contains_key(error.file.as_path()) {
                    failed.insert(error.file.clone());
                    errors.push(error);
                }
            }
            fresh.retain(|path, _| !failed.contains(&**path));
        }

        if unread_files > 0 {
            return Ok(self.first_of_burst(fresh, unread_files));
        }

        let same_as_last = self.read_whole
            && failed == self.failed
            && errors == self.last_errors
            && warnings == self.last_warnings
            && self.holds(&fresh)
            && self
                .last_good
                .keys()
                .all(|path| fresh.contains_key(path) || failed.contains(&**path));
        // Deleted files drop out; failed files keep what they had.
        self.last_good
            .retain(|path, _| failed.contains(&**path) || fresh.contains_key(path));
        self.last_good.extend(fresh);
        self.clean_with = existing_networks.filter(|_| failed.is_empty()).cloned();
        self.failed = failed;
        self.last_errors.clone_from(&errors);
        self.last_warnings.clone_from(&warnings);
        self.read_whole = true;

        Ok(Desired {
            kept: self.last_good.values().cloned().collect(),
            errors,
            warnings,
            complete: self.failed.is_empty(),
            failed_files: self.failed.clone(),
            unread_files: 0,
            same_as_last,
        })
    }

    /// Whether every list read is the one the store keeps for its file. The cache hands back
    /// the very lists the store holds: equal pointers, no comparison.
    fn holds(&self, read: &BTreeMap<Arc<Path>, KeptObjects>) -> bool {
        read.iter().all(|(path, objects)| {
            self.last_good
                .get(path)
                .is_some_and(|kept| Arc::ptr_eq(kept, objects))
        })
    }

    /// What a first read of a burst asks for: the files that loaded (and validated) now, and
    /// for every other file its last good objects and its last errors. A file that
    /// failed now is treated as unread: it may refer to objects of files not read yet.
    fn first_of_burst(
        &self,
        fresh: BTreeMap<Arc<Path>, KeptObjects>,
        unread_files: usize,
    ) -> Desired {
        let not_read_now = |e: &&SpecError| !fresh.contains_key(e.file.as_path());
        let errors = self
            .last_errors
            .iter()
            .filter(not_read_now)
            .cloned()
            .collect();
        let failed_files = self
            .failed
            .iter()
            .filter(|path| !fresh.contains_key(path.as_path()))
            .cloned()
            .collect();
        let mut objects = Vec::new();
        let mut last_good = self.last_good.iter().peekable();
        // Path order, as a whole read gives: duplicate names keep the first object.
        for (path, read) in fresh {
            while let Some((_, kept)) = last_good.next_if(|(kept, _)| **kept < path) {
                objects.push(Arc::clone(kept));
            }
            last_good.next_if(|(kept, _)| **kept == path);
            objects.push(read);
        }
        objects.extend(last_good.map(|(_, kept)| Arc::clone(kept)));
        Desired {
            kept: objects,
            errors,
            // A stack's warnings are located in its compose files: the last whole read's stand.
            warnings: self.last_warnings.clone(),
            complete: false,
            failed_files,
            unread_files,
            same_as_last: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, image: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {{name: {name}}}\nspec: {{image: {image}, networks: [net]}}\n"
        )
    }

    fn names(d: &Desired) -> Vec<String> {
        d.objects()
            .iter()
            .map(|o| o.value.name().to_owned())
            .collect()
    }

    fn image(d: &Desired, name: &str) -> String {
        d.objects()
            .iter()
            .find(|o| o.value.name() == name)
            .and_then(|o| o.value.as_service())
            .map(|s| s.spec.image.clone())
            .unwrap()
    }

    /// A field the engine does not know fails its file like any validation error, and keeps
    /// the file's last good objects; without an engine version nothing is checked.
    #[test]
    fn fields_newer_than_the_engine_fail_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, svc("alpha", "img:1")).unwrap();
        let networks = BTreeSet::from(["net".to_owned()]);
        let mut store = SpecStore::new();
        store.set_engine_api(Some(EngineApiVersion::new(1, 41)));
        let first = store.reload_validated(dir.path(), &networks).unwrap();
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        std::fs::write(
            &a,
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: alpha}\nspec: {image: img:2, networks: [net], oomScoreAdj: 10}\n",
        )
        .unwrap();
        let refused = store.reload_validated(dir.path(), &networks).unwrap();
        assert_eq!(refused.errors.len(), 1, "{:?}", refused.errors);
        assert!(
            refused.errors[0]
                .to_string()
                .contains("spec.oomScoreAdj: needs Docker Engine API 1.46"),
            "{}",
            refused.errors[0]
        );
        assert_eq!(
            image(&refused, "alpha"),
            "img:1",
            "the last good spec stays"
        );
        store.set_engine_api(None);
        let unchecked = store.reload_validated(dir.path(), &networks).unwrap();
        assert!(unchecked.errors.is_empty(), "{:?}", unchecked.errors);
        assert_eq!(image(&unchecked, "alpha"), "img:2");
    }

    /// In a SwarmStack, a compose key the engine does not know is an error at the key in the
    /// compose file (file:line:column), not at the SwarmStack; the stack keeps its last good
    /// objects, and an engine that knows the key takes it.
    #[test]
    fn compose_keys_newer_than_the_engine_are_errors_in_the_compose_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("stack.yaml"),
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmStack\nmetadata: {name: shop}\nspec:\n  composeFiles: [docker-stack.yml]\n",
        )
        .unwrap();
        let compose = root.join("docker-stack.yml");
        std::fs::write(&compose, "services:\n  web:\n    image: img:1\n").unwrap();
        let networks = BTreeSet::new();
        let mut store = SpecStore::new();
        store.set_engine_api(Some(EngineApiVersion::new(1, 41)));
        let first = store.reload_validated(root, &networks).unwrap();
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        std::fs::write(
            &compose,
            "services:\n  web:\n    image: img:2\n    oom_score_adj: 100\n",
        )
        .unwrap();
        let refused = store.reload_validated(root, &networks).unwrap();
        let errors: Vec<String> = refused.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [format!(
                "{}:4:5: services.web.oom_score_adj: {}",
                compose.display(),
                crate::spec::engine_api::Feature::OomScoreAdj.refusal(EngineApiVersion::new(1, 41))
            )]
        );
        assert_eq!(
            image(&refused, "shop_web"),
            "img:1",
            "the last good spec stays"
        );
        store.set_engine_api(Some(EngineApiVersion::new(1, 46)));
        let newer = store.reload_validated(root, &networks).unwrap();
        assert!(newer.errors.is_empty(), "{:?}", newer.errors);
        assert_eq!(image(&newer, "shop_web"), "img:2");
    }

    #[test]
    fn an_edit_in_place_of_the_same_size_is_seen_although_loads_are_cached() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, svc("alpha", "img:1")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), svc("beta", "img:1")).unwrap();
        let mut store = SpecStore::new();
        assert_eq!(image(&store.reload(dir.path()).unwrap(), "alpha"), "img:1");
        // Same length, same second: only the modification time's nanoseconds and the change
        // time tell it apart.
        std::fs::write(&a, svc("alpha", "img:2")).unwrap();
        let d = store.reload(dir.path()).unwrap();
        assert_eq!(image(&d, "alpha"), "img:2");
        assert_eq!(image(&d, "beta"), "img:1");
        // Replaced by a rename (a new inode), and removed.
        let tmp = dir.path().join(".a.yaml.tmp");
        std::fs::write(&tmp, svc("alpha", "img:3")).unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert_eq!(image(&store.reload(dir.path()).unwrap(), "alpha"), "img:3");
        std::fs::remove_file(&a).unwrap();
        assert_eq!(names(&store.reload(dir.path()).unwrap()), ["beta"]);
    }

    #[test]
    fn a_file_a_spec_reads_is_read_again_although_the_spec_did_not_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("c.yaml"),
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata: {name: conf}\nspec: {file: ./app.conf}\n",
        )
        .unwrap();
        let content = |d: &Desired| {
            d.objects()
                .iter()
                .find_map(|o| match &o.value {
                    Object::Config(c) => Some(c.clone()),
                    _ => None,
                })
                .expect("the config")
        };
        let mut store = SpecStore::new();
        // Missing at first: the spec fails; creating the file fixes it without touching the spec.
        assert!(!store.reload(dir.path()).unwrap().errors.is_empty());
        std::fs::write(dir.path().join("app.conf"), "one").unwrap();
        let first = content(&store.reload(dir.path()).unwrap());
        std::fs::write(dir.path().join("app.conf"), "two").unwrap();
        let second = content(&store.reload(dir.path()).unwrap());
        assert_ne!(first, second, "the new content is seen");
    }

    #[test]
    fn an_unchanged_file_is_one_list_in_the_cache_and_the_last_good_objects() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, svc("alpha", "img:1")).unwrap();
        let mut store = SpecStore::new();
        store.reload(dir.path()).unwrap();
        let first = Arc::clone(&store.last_good[a.as_path()]);
        store.reload(dir.path()).unwrap();
        // The cache handed back the list it shares with the store, not a copy of it.
        let (path, kept) = store.last_good.get_key_value(a.as_path()).unwrap();
        assert!(Arc::ptr_eq(&first, kept));
        assert!(Arc::ptr_eq(&first[0].file, &kept[0].file));
        // One copy of the path: the store's key is the one its objects hold.
        assert!(Arc::ptr_eq(path, &kept[0].file));
    }

    #[test]
    fn an_error_found_after_loading_points_at_its_field_read_again_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // The second document of the file, its network reference on line 10.
        std::fs::write(
            dir.path().join("a.yaml"),
            format!(
                "{}---\n{}",
                svc("first", "img:1").replace("networks: [net]", "networks: []"),
                "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: second\nspec:\n  image: img:1\n  networks:\n  - missing\n"
            ),
        )
        .unwrap();
        let mut store = SpecStore::new();
        let loaded = store
            .reload_validated(dir.path(), &BTreeSet::new())
            .unwrap();
        let error = loaded
            .errors
            .iter()
            .find(|e| e.field == "spec.networks[0]")
            .expect("the missing network");
        assert_eq!((error.line, error.column), (Some(13), Some(5)), "{error}");
    }

    #[test]
    fn a_whole_read_says_whether_it_found_what_the_last_one_did() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, svc("alpha", "img:1")).unwrap();
        let mut store = SpecStore::new();
        assert!(
            !store.reload(dir.path()).unwrap().same_as_last,
            "nothing to compare with"
        );
        assert!(store.reload(dir.path()).unwrap().same_as_last);
        std::fs::write(&b, svc("beta", "img:1")).unwrap();
        assert!(
            !store.reload(dir.path()).unwrap().same_as_last,
            "a file added"
        );
        assert!(store.reload(dir.path()).unwrap().same_as_last);
        std::fs::write(&a, svc("alpha", "img:22")).unwrap();
        assert!(
            !store.reload(dir.path()).unwrap().same_as_last,
            "a file changed"
        );
        std::fs::write(&a, "kind: [broken").unwrap();
        assert!(
            !store.reload(dir.path()).unwrap().same_as_last,
            "a file broke"
        );
        assert!(
            store.reload(dir.path()).unwrap().same_as_last,
            "still broken alike"
        );
        std::fs::remove_file(&a).unwrap();
        assert!(
            !store.reload(dir.path()).unwrap().same_as_last,
            "a file gone"
        );
        // Validation against the swarm's networks is part of what is found: `net` missing,
        // then known.
        let none = BTreeSet::new();
        assert!(
            !store
                .reload_validated(dir.path(), &none)
                .unwrap()
                .same_as_last
        );
        assert!(
            store
                .reload_validated(dir.path(), &none)
                .unwrap()
                .same_as_last
        );
        let known: BTreeSet<String> = ["net".to_owned()].into();
        assert!(
            !store
                .reload_validated(dir.path(), &known)
                .unwrap()
                .same_as_last
        );
    }

    /// A quiet directory that validated clean is not validated again (nor decoded) while the
    /// swarm's networks stay the same; when they change, it is, without any file changing.
    #[test]
    fn a_clean_quiet_directory_is_validated_again_when_the_networks_change() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), svc("alpha", "img:1")).unwrap();
        let known: BTreeSet<String> = ["net".to_owned()].into();
        let mut store = SpecStore::new();
        let first = store.reload_validated(dir.path(), &known).unwrap();
        assert!(first.complete && first.errors.is_empty());
        let quiet = store.reload_validated(dir.path(), &known).unwrap();
        assert!(quiet.same_as_last && quiet.complete);
        assert_eq!(names(&quiet), ["alpha"]);

        let gone = store
            .reload_validated(dir.path(), &BTreeSet::new())
            .unwrap();
        assert!(!gone.complete, "the network went away: validated again");
        assert_eq!(gone.errors[0].field, "spec.networks[0]");
        let back = store.reload_validated(dir.path(), &known).unwrap();
        assert!(back.complete && back.errors.is_empty() && !back.same_as_last);
        assert!(
            store
                .reload_validated(dir.path(), &known)
                .unwrap()
                .same_as_last
        );
    }

    #[test]
    fn failed_file_keeps_last_good_and_deleted_file_drops() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, svc("alpha", "img:1")).unwrap();
        std::fs::write(&b, svc("beta", "img:1")).unwrap();
        let mut store = SpecStore::new();

        let d = store.reload(dir.path()).unwrap();
        assert!(d.complete && d.errors.is_empty());
        assert_eq!(names(&d), ["alpha", "beta"]);

        // A good edit replaces; a broken edit keeps the last good objects.
        std::fs::write(&a, svc("alpha", "img:2")).unwrap();
        std::fs::write(&b, format!("{}  bogus: 1\n", svc("beta", "img:2"))).unwrap();
        let d = store.reload(dir.path()).unwrap();
        assert!(!d.complete);
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].file, b);
        assert_eq!(names(&d), ["alpha", "beta"]);
        assert_eq!(image(&d, "alpha"), "img:2");
        assert_eq!(
            image(&d, "beta"),
            "img:1",
            "last good version of the broken file"
        );
        assert_eq!(store.failed_files().iter().collect::<Vec<_>>(), [&b]);
        assert_eq!(d.failed_files, store.failed_files().clone());

        // Fixed again: complete, new version.
        std::fs::write(&b, svc("beta", "img:3")).unwrap();
        let d = store.reload(dir.path()).unwrap();
        assert!(d.complete && store.failed_files().is_empty());
        assert_eq!(image(&d, "beta"), "img:3");

        // Deleted: its objects go.
        std::fs::remove_file(&a).unwrap();
        let d = store.reload(dir.path()).unwrap();
        assert!(d.complete);
        assert_eq!(names(&d), ["beta"]);

        // A broken file that is then deleted drops its last good objects too.
        std::fs::write(&b, "spec: [\n").unwrap();
        assert_eq!(names(&store.reload(dir.path()).unwrap()), ["beta"]);
        std::fs::remove_file(&b).unwrap();
        let d = store.reload(dir.path()).unwrap();
        assert!(d.complete && d.objects().is_empty());
    }

    #[test]
    fn file_failing_on_first_load_contributes_nothing_and_marks_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), "kind: [\n").unwrap();
        let mut store = SpecStore::new();
        let d = store.reload(dir.path()).unwrap();
        assert!(!d.complete);
        assert!(d.objects().is_empty());
        assert_eq!(d.errors.len(), 1);
    }

    #[test]
    fn unreadable_directory_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), svc("alpha", "img:1")).unwrap();
        let mut store = SpecStore::new();
        store.reload(dir.path()).unwrap();
        assert!(store.reload(&dir.path().join("missing")).is_err());
        assert_eq!(store.objects().len(), 1);
    }

    #[test]
    fn validation_errors_fail_the_file_when_validating() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, svc("alpha", "img:1")).unwrap();
        let existing: BTreeSet<String> = ["net".to_owned()].into();
        let mut store = SpecStore::new();
        let d = store.reload_validated(dir.path(), &existing).unwrap();
        assert!(d.complete, "{:#?}", d.errors);

        // Network `net` disappears from the swarm: the reference dangles, the file fails and
        // keeps its last good object.
        std::fs::write(&a, svc("alpha", "img:2")).unwrap();
        let d = store
            .reload_validated(dir.path(), &BTreeSet::new())
            .unwrap();
        assert!(!d.complete);
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].field, "spec.networks[0]");
        assert_eq!(image(&d, "alpha"), "img:1");
    }

    #[test]
    fn a_file_that_becomes_a_symlink_loop_keeps_its_objects() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, svc("alpha", "img:1")).unwrap();
        let mut store = SpecStore::new();
        assert_eq!(names(&store.reload(dir.path()).unwrap()), ["alpha"]);

        // `a.yaml` is replaced by a link into a loop: its objects are held, not pruned.
        std::fs::remove_file(&a).unwrap();
        std::os::unix::fs::symlink("b.yaml", &a).unwrap();
        std::os::unix::fs::symlink("a.yaml", &b).unwrap();
        let d = store.reload(dir.path()).unwrap();
        assert!(!d.complete);
        assert_eq!(names(&d), ["alpha"]);
        assert_eq!(image(&d, "alpha"), "img:1");
        assert!(d.failed_files.contains(&a) && d.failed_files.contains(&b));
        assert!(d.errors.iter().all(|e| e.message.contains("symlink loop")));

        // Removing the links is deleting the spec: then its objects go.
        std::fs::remove_file(&a).unwrap();
        std::fs::remove_file(&b).unwrap();
        let d = store.reload(dir.path()).unwrap();
        assert!(d.complete && d.objects().is_empty());
    }

    fn net(name: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmNetwork\nmetadata: {{name: {name}}}\nspec: {{}}\n"
        )
    }

    /// A burst of new files is read first files first: the first read holds the first
    /// `FIRST_OF_BURST` new files plus every other file as it stood (a changed file's last good
    /// objects, a failing file's last errors), keeps nothing, and reports nothing new; the
    /// whole read after it is what a single whole read would have been.
    #[test]
    fn a_burst_of_new_files_is_read_first_files_first() {
        let dir = tempfile::tempdir().unwrap();
        let existing = BTreeSet::from(["net".to_owned()]);
        let a = dir.path().join("a.yaml");
        let broken = dir.path().join("b.yaml");
        std::fs::write(&a, svc("alpha", "img:1")).unwrap();
        std::fs::write(&broken, "spec: [\n").unwrap();
        let mut store = SpecStore::new();
        let before = store
            .reload_validated_scoped(dir.path(), &existing, ReadScope::FirstOfBurst)
            .unwrap();
        assert_eq!(before.unread_files, 0, "two new files are not a burst");
        assert_eq!(before.errors.len(), 1);

        // The burst: 600 new files, `alpha` edited, and the first new file's service on a
        // network only the last file declares.
        std::fs::write(&a, svc("alpha", "img:2")).unwrap();
        let new = 600;
        for i in 0..new {
            let text = match i {
                0 => svc("s-0000", "img:1").replace("[net]", "[late]"),
                _ => svc(&format!("s-{i:04}"), "img:1"),
            };
            std::fs::write(dir.path().join(format!("s-{i:04}.yaml")), text).unwrap();
        }
        std::fs::write(dir.path().join("z-late.yaml"), net("late")).unwrap();

        let first = store
            .reload_validated_scoped(dir.path(), &existing, ReadScope::FirstOfBurst)
            .unwrap();
        // Read: s-0001..s-0255 (s-0000 fails for now: its network is in a file not read yet).
        // Unread: `a.yaml` (known, changed), `b.yaml` (known, failing), s-0256.., z-late.
        assert_eq!(first.unread_files, 2 + (new + 1 - FIRST_OF_BURST));
        let read: Vec<String> = names(&first);
        let mut expected = vec!["alpha".to_owned()];
        expected.extend((1..FIRST_OF_BURST).map(|i| format!("s-{i:04}")));
        assert_eq!(read, expected, "path order, the edited file as it stood");
        assert_eq!(image(&first, "alpha"), "img:1");
        assert!(!first.complete);
        assert_eq!(
            first.errors, before.errors,
            "the last whole read's errors, no new one"
        );
        assert_eq!(first.failed_files, before.failed_files);
        assert_eq!(store.objects().len(), 1, "a first read keeps nothing");

        let whole = store
            .reload_validated_scoped(dir.path(), &existing, ReadScope::Whole)
            .unwrap();
        assert_eq!(whole.unread_files, 0);
        assert_eq!(whole.objects().len(), 1 + new + 1);
        assert_eq!(image(&whole, "alpha"), "img:2");
        assert_eq!(
            whole.errors, before.errors,
            "s-0000 loads once its network is read"
        );
        let mut fresh = SpecStore::new();
        assert_eq!(
            fresh.reload_validated(dir.path(), &existing).unwrap(),
            whole,
            "the same as one whole read"
        );

        // Nothing new since: a burst read of it is whole, and what the last one found.
        let again = store
            .reload_validated_scoped(dir.path(), &existing, ReadScope::FirstOfBurst)
            .unwrap();
        assert_eq!(
            again,
            Desired {
                same_as_last: true,
                ..whole
            }
        );
    }
}
