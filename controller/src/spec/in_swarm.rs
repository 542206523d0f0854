//! Spec files stored in the swarm itself, as configs owned by the operator instance (written by
//! `apply`, removed by `delete`), and the mirror that copies them into a local directory for
//! `run --source swarm`, so that every manager that becomes leader sees the same specs.
//!
//! Each stored file is one config named by the hash of its instance, file name and content
//! (`swarm-operator-spec-<hash>`): configs are immutable, so a changed file is a new config
//! and the old one is removed after it. When both exist for a moment the newer (higher raft
//! version) wins.
//!
//! A directory's `.suspend` file is stored like a spec file, so that `apply` of a suspended
//! directory suspends every replica reading the stored specs, and the mirror carries it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::desired::SUSPEND_FILE;
use crate::desired::data_objects::ObservedData;
use crate::desired::definition::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::docker::configs::{CasOutcome, StoredConfig};
use crate::docker::{DockerEngine, DockerError};
use crate::spec::load::is_spec_file_name;

/// Label carrying the stored file's original name.
pub const STORED_FILE_LABEL: &str = "swarm-operator.io/stored-spec-file";
/// Prefix of the configs holding spec files.
pub const CONFIG_PREFIX: &str = "swarm-operator-spec-";
/// Label on a stored spec file's config listing the secrets `apply` created that the file
/// names (comma-separated): the operator reads what is still in use from labels, since a
/// config's data does not come with a list.
pub const APPLIED_SECRETS_LABEL: &str = "swarm-operator.io/applied-secrets";
/// What an empty `.suspend` is stored as: the engine refuses a config without data, and only
/// the file's presence matters.
const EMPTY_SUSPEND_CONTENT: &[u8] = b"# suspended (stored by swarm-operator apply)\n";

/// Errors storing, reading or mirroring spec files.
#[derive(Debug, thiserror::Error)]
pub enum StoredSpecsError {
    /// The swarm could not be read or written.
    #[error("specs stored in the swarm: {0}")]
    Docker(#[from] DockerError),
    /// A local file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A path given to `apply` holds no spec file.
    #[error("{0}: no spec files (*.yaml, *.yml) found; to remove stored specs use `delete`")]
    NoSpecFiles(PathBuf),
    /// A path given to `apply` is not a spec file.
    #[error("{0}: not a spec file (*.yaml or *.yml, not hidden) nor a .suspend file")]
    NotASpecFile(PathBuf),
}

/// One spec file: its name (no directory) and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecFile {
    /// File name, e.g. `quote-service.yaml`.
    pub name: String,
    /// The bytes as written.
    pub content: Vec<u8>,
}

/// A spec file as stored in the swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSpec {
    /// The config's id.
    pub config_id: String,
    /// The config's name (content-addressed).
    pub config_name: String,
    /// The config's raft version: later stores have higher ones.
    pub version: u64,
    /// The file.
    pub file: SpecFile,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Files stored anew (new, or changed).
    pub stored: Vec<String>,
    /// Files already stored with the same content.
    pub unchanged: Vec<String>,
    /// Files removed because the applied directory no longer has them.
    pub removed: Vec<String>,
    /// Secrets created for the SwarmSecrets of the files (see [`crate::desired::applied_secrets`]).
    pub secrets_created: Vec<String>,
}

/// The config name of `file` for `instance`: the same file stored twice is one config.
pub fn config_name(instance: &str, file: &SpecFile) -> String {
    let mut hasher = Sha256::new();
    for part in [instance.as_bytes(), file.name.as_bytes(), &file.content] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{CONFIG_PREFIX}{hex}")
}

/// The secrets named by the stored spec files of `instance` among `configs` (as listed, with
/// labels).
pub fn applied_secrets_named(configs: &[ObservedData], instance: &str) -> BTreeSet<String> {
    configs
        .iter()
        .filter(|c| {
            c.name.starts_with(CONFIG_PREFIX)
                && c.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE)
                && c.labels.get(INSTANCE_LABEL).map(String::as_str) == Some(instance)
        })
        .filter_map(|c| c.labels.get(APPLIED_SECRETS_LABEL))
        .flat_map(|names| {
            names
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

/// The files `apply` stores and the mirror writes: spec files and `.suspend`. A file name from
/// the swarm is used as a path in the mirror, so only plain names pass.
fn is_stored_file_name(name: &str) -> bool {
    (is_spec_file_name(name) || name == SUSPEND_FILE)
        && Path::new(name).file_name().and_then(|n| n.to_str()) == Some(name)
}

fn to_stored(config: StoredConfig) -> Option<StoredSpec> {
    let name = config.labels.get(STORED_FILE_LABEL)?.clone();
    if !is_stored_file_name(&name) {
        warn!(config = %config.name, file = %name, "ignoring a stored spec with an unusable file name");
        return None;
    }
    Some(StoredSpec {
        config_id: config.id,
        config_name: config.name,
        version: config.version,
        file: SpecFile {
            name,
            content: config.data,
        },
    })
}

/// Splits stored specs into the current one per file name (the newest) and the superseded.
pub fn resolve(stored: Vec<StoredSpec>) -> (BTreeMap<String, StoredSpec>, Vec<StoredSpec>) {
    let mut current: BTreeMap<String, StoredSpec> = BTreeMap::new();
    let mut superseded = Vec::new();
    for spec in stored {
        match current.get(&spec.file.name) {
            Some(existing) if existing.version >= spec.version => superseded.push(spec),
            _ => {
                if let Some(older) = current.insert(spec.file.name.clone(), spec) {
                    superseded.push(older);
                }
            }
        }
    }
    (current, superseded)
}

/// Reads the spec files of `path`: the file itself, or the spec files directly in a directory
/// (the same selection the directory loader makes), with its `.suspend` file if it has one.
pub fn read_spec_files(path: &Path) -> Result<Vec<SpecFile>, StoredSpecsError> {
    let io = |source| StoredSpecsError::Io {
        path: path.to_owned(),
        source,
    };
    let paths: Vec<PathBuf> = if path.is_dir() {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let entry = entry.map_err(io)?;
            let keep = entry.file_name().to_str().is_some_and(is_stored_file_name)
                && entry.path().is_file();
            if keep {
                paths.push(entry.path());
            }
        }
        paths.sort();
        let has_specs = paths.iter().any(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_spec_file_name)
        });
        if !has_specs {
            return Err(StoredSpecsError::NoSpecFiles(path.to_owned()));
        }
        paths
    } else {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !is_stored_file_name(name) {
            return Err(StoredSpecsError::NotASpecFile(path.to_owned()));
        }
        vec![path.to_owned()]
    };
    paths
        .into_iter()
        .map(|p| {
            let mut content = std::fs::read(&p).map_err(|source| StoredSpecsError::Io {
                path: p.clone(),
                source,
            })?;
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .expect("checked above")
                .to_owned();
            if name == SUSPEND_FILE && content.is_empty() {
                content = EMPTY_SUSPEND_CONTENT.to_vec();
            }
            Ok(SpecFile { name, content })
        })
        .collect()
}

/// `.suspend` first: stored and mirrored before the specs it holds back, so that no replica
/// acts on them in between.
fn suspend_first(a: &str, b: &str) -> std::cmp::Ordering {
    (a != SUSPEND_FILE).cmp(&(b != SUSPEND_FILE)).then(a.cmp(b))
}

/// Makes the spec files (and `.suspend`) directly in `dir` exactly `files` (atomic replace
/// per file; other files left alone). Returns whether anything changed. A `.suspend` is
/// written before the specs and removed after them, so the operator reading `dir` never acts
/// on a half-synced set that was applied suspended.
pub fn write_mirror(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<bool, StoredSpecsError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StoredSpecsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut changed = false;
    let mut writes: Vec<(&String, &Vec<u8>)> = files.iter().collect();
    writes.sort_by(|(a, _), (b, _)| suspend_first(a, b));
    for (name, content) in writes {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|old| &old == content) {
            continue;
        }
        // Write beside and rename: the watcher never sees a half-written file.
        let mut tmp = tempfile::Builder::new()
            .prefix(".")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(io(dir))?;
        tmp.write_all(content).map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| StoredSpecsError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        changed = true;
    }
    let mut removals = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_stored_file_name(name) && !files.contains_key(name) {
            removals.push(name.to_owned());
        }
    }
    // Reversed: `.suspend` last.
    removals.sort_by(|a, b| suspend_first(b, a));
    for name in removals {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(io(&path))?;
        changed = true;
    }
    Ok(changed)
}

/// The spec files of one operator instance stored in a swarm.
#[derive(Clone)]
pub struct SpecConfigs {
    api: DockerEngine,
    instance: String,
}

impl SpecConfigs {
    /// The stored specs of `instance`.
    pub fn new(api: DockerEngine, instance: &str) -> Self {
        SpecConfigs {
            api,
            instance: instance.to_owned(),
        }
    }

    fn owner_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.instance.clone()),
        ])
    }

    /// Every stored spec config of the instance (one list call).
    pub async fn list(&self) -> Result<Vec<StoredSpec>, StoredSpecsError> {
        let configs = self.api.list_configs(&self.owner_labels()).await?;
        Ok(configs
            .into_iter()
            .filter(|c| c.name.starts_with(CONFIG_PREFIX))
            .filter_map(to_stored)
            .collect())
    }

    /// The current content per file name.
    pub async fn current(&self) -> Result<BTreeMap<String, Vec<u8>>, StoredSpecsError> {
        let (current, _) = resolve(self.list().await?);
        Ok(current
            .into_iter()
            .map(|(name, spec)| (name, spec.file.content))
            .collect())
    }

    /// Stores `files` (one create per new or changed file), then removes their older copies
    /// and, with `prune`, every stored file not among them. Nothing is written for a file
    /// already stored with the same content. `secrets` lists, per file name, the secrets
    /// `apply` created that the file names (see [`APPLIED_SECRETS_LABEL`]).
    pub async fn apply(
        &self,
        files: &[SpecFile],
        prune: bool,
        secrets: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<ApplyReport, StoredSpecsError> {
        let (current, superseded) = resolve(self.list().await?);
        let mut report = ApplyReport::default();
        let mut keep: BTreeSet<String> = BTreeSet::new();
        let mut files: Vec<&SpecFile> = files.iter().collect();
        files.sort_by(|a, b| suspend_first(&a.name, &b.name));
        for file in files.iter().copied() {
            let name = config_name(&self.instance, file);
            keep.insert(name.clone());
            if current
                .get(&file.name)
                .is_some_and(|c| c.config_name == name)
            {
                report.unchanged.push(file.name.clone());
                continue;
            }
            let mut labels = self.owner_labels();
            labels.insert(STORED_FILE_LABEL.to_owned(), file.name.clone());
            if let Some(names) = secrets.get(&file.name).filter(|n| !n.is_empty()) {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                labels.insert(APPLIED_SECRETS_LABEL.to_owned(), names.join(","));
            }
            match self
                .api
                .create_config(&name, &labels, &file.content)
                .await?
            {
                // Conflict: the very same content was stored meanwhile (the name is its hash).
                CasOutcome::Written | CasOutcome::Conflict => report.stored.push(file.name.clone()),
            }
        }
        let applied: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
        // New copies exist before old ones go, so a mirror never sees a file missing; a
        // `.suspend` goes last, once nothing it held back changes any more.
        let mut stale: Vec<&StoredSpec> = current.values().chain(superseded.iter()).collect();
        stale.sort_by(|a, b| suspend_first(&b.file.name, &a.file.name));
        for spec in stale {
            if keep.contains(&spec.config_name) {
                continue;
            }
            let replaced = applied.contains(spec.file.name.as_str());
            let is_current = current
                .get(&spec.file.name)
                .is_some_and(|c| c.config_id == spec.config_id);
            if replaced || prune || !is_current {
                self.api.remove_config(&spec.config_id).await?;
                if !replaced && is_current {
                    report.removed.push(spec.file.name.clone());
                }
            }
        }
        Ok(report)
    }

    /// Removes the stored files named `names`; returns those that were stored.
    pub async fn delete(&self, names: &BTreeSet<String>) -> Result<Vec<String>, StoredSpecsError> {
        let mut removed = BTreeSet::new();
        for spec in self.list().await? {
            if names.contains(&spec.file.name) {
                self.api.remove_config(&spec.config_id).await?;
                removed.insert(spec.file.name);
            }
        }
        Ok(removed.into_iter().collect())
    }

    /// Copies the stored specs into `dir`; returns whether anything changed.
    pub async fn sync_mirror(&self, dir: &Path) -> Result<bool, StoredSpecsError> {
        let files = self.current().await?;
        write_mirror(dir, &files)
    }

    /// Keeps `dir` equal to the stored specs until `shutdown`: re-reads on every config event
    /// of the swarm and every `resync` (events can be missed while reconnecting).
    pub async fn mirror(self, dir: PathBuf, resync: Duration, shutdown: CancellationToken) {
        let mut events = Box::pin(self.api.config_events());
        let mut resync = tokio::time::interval(resync);
        resync.reset();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.next() => match event {
                    Some(Ok(())) => {}
                    Some(Err(error)) => warn!(%error, "config event stream"),
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        events = Box::pin(self.api.config_events());
                    }
                },
                _ = resync.tick() => {}
            }
            match self.sync_mirror(&dir).await {
                Ok(true) => info!(dir = %dir.display(), "stored specs changed; mirror updated"),
                Ok(false) => {}
                Err(error) => warn!(%error, "mirroring the stored specs; keeping the last copy"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(name: &str, version: u64, content: &str) -> StoredSpec {
        StoredSpec {
            config_id: format!("id-{name}-{version}"),
            config_name: format!("cfg-{version}"),
            version,
            file: SpecFile {
                name: name.into(),
                content: content.into(),
            },
        }
    }

    #[test]
    fn config_names_address_instance_file_name_and_content() {
        let file = |name: &str, content: &str| SpecFile {
            name: name.into(),
            content: content.into(),
        };
        let a = config_name("default", &file("a.yaml", "x"));
        assert_eq!(a, config_name("default", &file("a.yaml", "x")));
        assert!(a.starts_with(CONFIG_PREFIX) && a.len() <= 64, "{a}");
        assert_ne!(a, config_name("other", &file("a.yaml", "x")));
        assert_ne!(a, config_name("default", &file("b.yaml", "x")));
        assert_ne!(a, config_name("default", &file("a.yaml", "y")));
        // Length-prefixed parts: moving bytes between name and content changes the name.
        assert_ne!(
            config_name("default", &file("a.yamlx", "")),
            config_name("default", &file("a.yaml", "x"))
        );
    }

    #[test]
    fn the_newest_copy_of_a_file_wins() {
        let (current, superseded) = resolve(vec![
            stored("a.yaml", 7, "new"),
            stored("a.yaml", 3, "old"),
            stored("b.yaml", 5, "b"),
        ]);
        assert_eq!(current["a.yaml"].file.content, b"new");
        assert_eq!(current["b.yaml"].version, 5);
        assert_eq!(superseded.len(), 1);
        assert_eq!(superseded[0].version, 3);
        let (current, _) = resolve(vec![stored("a.yaml", 3, "old"), stored("a.yaml", 7, "new")]);
        assert_eq!(
            current["a.yaml"].file.content, b"new",
            "order does not matter"
        );
    }

    #[test]
    fn the_secrets_named_are_read_from_the_instances_stored_specs_only() {
        let config = |name: &str, instance: &str, named: Option<&str>| ObservedData {
            kind: crate::desired::data_objects::DataKind::Config,
            id: format!("id-{name}"),
            name: name.into(),
            labels: [
                (MANAGED_BY_LABEL, MANAGED_BY_VALUE),
                (INSTANCE_LABEL, instance),
                (APPLIED_SECRETS_LABEL, named.unwrap_or("")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        };
        let configs = [
            config(
                "swarm-operator-spec-1",
                "a",
                Some("db-0123456789,tls-abcdefabcd"),
            ),
            config("swarm-operator-spec-2", "a", None),
            config("swarm-operator-spec-3", "b", Some("other-0123456789")),
            config("unrelated", "a", Some("x-0123456789")),
        ];
        let named: Vec<String> = applied_secrets_named(&configs, "a").into_iter().collect();
        assert_eq!(named, ["db-0123456789", "tls-abcdefabcd"]);
    }

    #[test]
    fn file_names_from_the_swarm_cannot_leave_the_mirror() {
        for bad in [
            "../x.yaml",
            "sub/x.yaml",
            "/etc/x.yaml",
            ".hidden.yaml",
            "x.txt",
            "",
        ] {
            assert!(!is_stored_file_name(bad), "{bad}");
        }
        assert!(is_stored_file_name("quote-service.yaml"));
        assert!(is_stored_file_name(".suspend"));
    }

    #[test]
    fn the_mirror_becomes_exactly_the_stored_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stale.yaml"), "old").unwrap();
        std::fs::write(dir.path().join("keep.yaml"), "same").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a spec").unwrap();
        let files = BTreeMap::from([
            ("keep.yaml".to_owned(), b"same".to_vec()),
            ("new.yml".to_owned(), b"fresh".to_vec()),
        ]);
        assert!(write_mirror(dir.path(), &files).unwrap());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["keep.yaml", "new.yml", "notes.txt"]);
        assert_eq!(std::fs::read(dir.path().join("new.yml")).unwrap(), b"fresh");
        assert!(
            !write_mirror(dir.path(), &files).unwrap(),
            "a second sync changes nothing"
        );
    }

    #[test]
    fn apply_reads_a_directory_like_the_loader_and_refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yaml"), "b").unwrap();
        std::fs::write(dir.path().join("a.yml"), "a").unwrap();
        std::fs::write(dir.path().join(".a.yaml.swp"), "editor").unwrap();
        std::fs::write(dir.path().join("README.md"), "docs").unwrap();
        let files = read_spec_files(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.yml", "b.yaml"]);
        assert!(matches!(
            read_spec_files(&dir.path().join("README.md")),
            Err(StoredSpecsError::NotASpecFile(_))
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_spec_files(empty.path()),
            Err(StoredSpecsError::NoSpecFiles(_))
        ));
    }

    /// The stored set as `current` returns it after `apply` of `files`.
    fn stored_set(files: Vec<SpecFile>) -> BTreeMap<String, Vec<u8>> {
        let configs = files.into_iter().enumerate().map(|(i, file)| StoredConfig {
            id: format!("id{i}"),
            version: i as u64,
            name: config_name("default", &file),
            labels: BTreeMap::from([(STORED_FILE_LABEL.to_owned(), file.name)]),
            data: file.content,
        });
        let (current, _) = resolve(configs.filter_map(to_stored).collect());
        current
            .into_iter()
            .map(|(name, spec)| (name, spec.file.content))
            .collect()
    }

    fn loaded(mirror: &Path) -> crate::desired::DesiredState {
        crate::desired::DesiredState::load(
            &mut crate::spec::SpecStore::new(),
            mirror,
            &BTreeSet::new(),
            false,
            "default",
        )
        .unwrap()
    }

    #[test]
    fn a_suspended_directory_applied_suspends_what_reads_the_stored_specs() {
        let applied = tempfile::tempdir().unwrap();
        std::fs::write(
            applied.path().join("web.yaml"),
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: web}\nspec: {image: nginx:1}\n",
        )
        .unwrap();
        // `touch .suspend`: empty, which the engine would refuse as a config.
        std::fs::write(applied.path().join(SUSPEND_FILE), "").unwrap();
        let files = read_spec_files(applied.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, [SUSPEND_FILE, "web.yaml"]);
        assert!(!files[0].content.is_empty());

        let mirror = tempfile::tempdir().unwrap();
        assert!(write_mirror(mirror.path(), &stored_set(files)).unwrap());
        let desired = loaded(mirror.path());
        assert!(desired.all_suspended, "the mirror holds the .suspend file");
        assert!(desired.services.contains_key("web"));

        // Applied again without it: the stored set, and so the mirror, lose it.
        std::fs::remove_file(applied.path().join(SUSPEND_FILE)).unwrap();
        let files = read_spec_files(applied.path()).unwrap();
        assert!(write_mirror(mirror.path(), &stored_set(files)).unwrap());
        assert!(!loaded(mirror.path()).all_suspended);
        assert!(!mirror.path().join(SUSPEND_FILE).exists());
    }

    #[test]
    fn a_suspend_file_alone_is_applied_as_one_file_but_is_no_spec_directory() {
        let dir = tempfile::tempdir().unwrap();
        let suspend = dir.path().join(SUSPEND_FILE);
        std::fs::write(&suspend, "incident 42: hold everything\n").unwrap();
        let files = read_spec_files(&suspend).unwrap();
        assert_eq!(files[0].name, SUSPEND_FILE);
        assert_eq!(files[0].content, b"incident 42: hold everything\n");
        assert!(
            matches!(
                read_spec_files(dir.path()),
                Err(StoredSpecsError::NoSpecFiles(_))
            ),
            "a directory of only .suspend would replace every stored spec with nothing"
        );
    }
}
