//! Reading a spec directory: files, documents, typed objects, and errors located by line, column
//! and field path.
//!
//! Each file is split into its `---`-separated documents. A document's header (apiVersion,
//! kind, where its name is) is read first, then the document is parsed into its typed kind;
//! the span tree that locates every field (which the typed values do not carry) is built only
//! when an error needs a position, or the header is not what a spec's is. A document's error
//! never hides another document's, and every error is mapped back to a field path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::yaml::{self, DuplicateKeys, Node, Value};

use super::encrypted::AgeIdentities;
use super::engine_api::EngineApiVersion;
use super::files;
use super::header::Header;
use super::kept::{self, KeptObjects};
use super::located::{DocumentFields, FieldLocations, Located, Position, SpecError, field_path};
use super::stack::SwarmStack;
use super::types::{
    API_VERSION, Content, DataSpec, KINDS, Object, SwarmConfig, SwarmNetwork, SwarmSecret,
    SwarmService,
};

/// Files larger than this are rejected unread: specs are small, and this bounds memory.
pub const MAX_FILE_BYTES: u64 = yaml::MAX_FILE_BYTES;

/// Why a spec directory could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadDirError {
    /// Listing the directory failed (missing, not a directory, permissions).
    #[error("cannot read spec directory {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// The outcome of loading one file.
#[derive(Debug, Clone, PartialEq)]
pub enum FileLoad {
    /// Every document was valid (as far as loading goes); the objects in document order.
    /// Shared: the load cache and the spec store's last good objects hold the same list.
    Ok(Arc<[Located<Object>]>),
    /// At least one problem; nothing from this file should be used. Holds every problem found.
    Failed(Vec<SpecError>),
}

impl FileLoad {
    /// The objects, if the file loaded.
    pub fn objects(&self) -> Option<&[Located<Object>]> {
        match self {
            FileLoad::Ok(objects) => Some(objects),
            FileLoad::Failed(_) => None,
        }
    }

    /// The errors (empty if the file loaded).
    pub fn errors(&self) -> &[SpecError] {
        match self {
            FileLoad::Ok(_) => &[],
            FileLoad::Failed(errors) => errors,
        }
    }
}

/// The outcome of loading one file, as the spec store takes it: the objects as they are kept
/// between reloads ([`kept`]).
#[derive(Debug, Clone, PartialEq)]
pub enum KeptLoad {
    /// Every document was valid; the objects in document order.
    Ok(KeptObjects),
    /// At least one problem: every problem found.
    Failed(Vec<SpecError>),
}

impl From<FileLoad> for KeptLoad {
    fn from(load: FileLoad) -> Self {
        match load {
            FileLoad::Ok(objects) => KeptLoad::Ok(kept::keep(&objects)),
            FileLoad::Failed(errors) => KeptLoad::Failed(errors),
        }
    }
}

impl From<KeptLoad> for FileLoad {
    fn from(load: KeptLoad) -> Self {
        match load {
            KeptLoad::Ok(objects) => FileLoad::Ok(kept::objects(&objects).collect()),
            KeptLoad::Failed(errors) => FileLoad::Failed(errors),
        }
    }
}

/// Every spec file of a directory, loaded: each one's outcome as a [`FileLoad`], or as a
/// [`KeptLoad`] for the spec store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadedDir<L = FileLoad> {
    /// Each spec file (path as joined onto the directory) and its outcome. The path is the
    /// one its objects' [`Located::file`] share, where they name it.
    pub files: BTreeMap<Arc<Path>, L>,
    /// What was loaded with a warning: keys of SwarmStacks' compose files that stack deploy
    /// would ignore too, located in the compose file.
    pub warnings: Vec<SpecError>,
    /// How many spec files a [`FirstOfBurst`] left for the next load: neither read nor cached.
    pub unread: usize,
}

/// How a load of a burst of new spec files may read its first files only, so that the objects
/// they declare can be created while the rest is parsed.
#[derive(Clone, Copy)]
pub struct FirstOfBurst<'a> {
    /// A burst is this many files that need parsing and that `is_known` does not know.
    pub burst: usize,
    /// In a burst, only this many of its new files are parsed (the first in path order);
    /// every other file that needs parsing is left unread.
    pub first: usize,
    /// Whether the caller has loaded the file before (its last good objects stand in for it
    /// while it is unread).
    pub is_known: &'a dyn Fn(&Path) -> bool,
}

/// What loading a file learns besides its objects: the files its SwarmStacks read (compose
/// files, env files, configs and secrets: none of them is a spec file) and its warnings.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sidecar {
    /// Given, not learnt: the engine's API version, against which a SwarmStack's compose keys
    /// are checked where they are written (`None`: not checked).
    pub(crate) engine_api: Option<EngineApiVersion>,
    /// The files read, canonical.
    pub(crate) reads: std::collections::BTreeSet<PathBuf>,
    /// Warnings, located.
    pub(crate) warnings: Vec<SpecError>,
}

impl LoadedDir {
    /// Objects of all files that loaded, in file then document order.
    pub fn objects(&self) -> Vec<Located<Object>> {
        self.files
            .values()
            .filter_map(FileLoad::objects)
            .flatten()
            .cloned()
            .collect()
    }

    /// Errors of all files that failed, in file order.
    pub fn errors(&self) -> Vec<SpecError> {
        self.files
            .values()
            .flat_map(FileLoad::errors)
            .cloned()
            .collect()
    }
}

/// Whether a directory entry named `name` is a spec file: `*.yaml` / `*.yml`, not hidden, not
/// an editor temp or backup file (`~` suffix, `.swp`, `.swx`, `.tmp`, `#...#`).
pub fn is_spec_file_name(name: &str) -> bool {
    if name.starts_with('.') || name.starts_with('#') || name.ends_with('~') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

/// Loads every spec file directly in `dir` (sorted by name; subdirectories are not entered).
///
/// Only fails when the directory itself cannot be listed; problems with files and documents
/// are reported per file in the result.
pub fn load_dir(dir: &Path) -> Result<LoadedDir, LoadDirError> {
    load_dir_cached(dir, &mut LoadCache::default(), &AgeIdentities::none())
}

/// What identifies one version of a file without reading it: if none of these changed, its
/// content did not either (an editor's save and a rename into place both change them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
    device: u64,
    changed_ns: i64,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
            device: meta.dev(),
            changed_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

/// The outcome of each spec file's last load, by path and stamp, so that a reload parses only
/// the files that changed: with thousands of specs, a reload after one saved file costs a
/// `stat` per file instead of a parse per file.
#[derive(Debug, Clone, Default)]
pub struct LoadCache {
    files: BTreeMap<Arc<Path>, (FileStamp, KeptObjects)>,
    engine_api: Option<EngineApiVersion>,
}

impl LoadCache {
    /// SwarmStacks loaded with this cache refuse compose keys `version` (the engine's
    /// negotiated API version) does not know, at the key; `None` checks nothing. Their files
    /// are never cached, so the next load applies it.
    pub fn set_engine_api(&mut self, version: Option<EngineApiVersion>) {
        self.engine_api = version;
    }
}

/// Like [`load_dir`], but reuses the outcome of files whose stamp did not change since the
/// last call with the same cache. `.age` files the specs refer to are decrypted with
/// `identities`.
pub fn load_dir_cached(
    dir: &Path,
    cache: &mut LoadCache,
    identities: &AgeIdentities,
) -> Result<LoadedDir, LoadDirError> {
    let loaded = load_dir_cached_first(dir, cache, identities, None)?;
    Ok(LoadedDir {
        files: loaded
            .files
            .into_iter()
            .map(|(path, load)| (path, load.into()))
            .collect(),
        warnings: loaded.warnings,
        unread: loaded.unread,
    })
}

/// Like [`load_dir_cached`]; with `first`, a burst of new files is read only in part (see
/// [`FirstOfBurst`]) and the files left are counted in [`LoadedDir::unread`].
pub fn load_dir_cached_first(
    dir: &Path,
    cache: &mut LoadCache,
    identities: &AgeIdentities,
    first: Option<FirstOfBurst<'_>>,
) -> Result<LoadedDir<KeptLoad>, LoadDirError> {
    let read_dir_err = |source| LoadDirError::ReadDir {
        dir: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_dir_err)? {
        let entry = entry.map_err(read_dir_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !is_spec_file_name(name) {
            continue;
        }
        // Follow symlinks (Kubernetes-style ConfigMap mounts are symlinks), skip the rest.
        let path = entry.path();
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => paths.push((path, Some(FileStamp::of(&meta)))),
            Ok(_) => {}
            // Vanished between listing and stat (an editor's save dance): not a spec file now.
            Err(_) if entry_vanished(&path) => {}
            // Unreadable, a symlink loop, a symlink to nothing: let load_file report it.
            Err(_) => paths.push((path, None)),
        }
    }
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    // Cached outcomes first; the files to parse (all of them when a burst of new files lands)
    // are parsed on every core, each with its own sidecar, and put back in path order.
    let mut outcomes: Vec<(PathBuf, Option<FileStamp>, Option<Cached>)> = paths
        .into_iter()
        .map(|(path, stamp)| {
            let cached = cache
                .files
                .remove_entry(path.as_path())
                .filter(|(_, (cached, _))| Some(*cached) == stamp)
                .map(|(path, (_, objects))| (path, objects));
            (path, stamp, cached)
        })
        .collect();
    let unread = match first {
        Some(first) => leave_most_of_a_burst(&mut outcomes, first),
        None => 0,
    };
    let to_parse: Vec<&Path> = outcomes
        .iter()
        .filter(|(_, _, cached)| cached.is_none())
        .map(|(path, _, _)| path.as_path())
        .collect();
    let mut parsed = parse_files(&to_parse, identities, cache.engine_api).into_iter();
    let mut files = BTreeMap::new();
    // In path order: made a map at once below, with full nodes (inserted one by one in order,
    // every node of the cache, which lives until the next reload, would stay half empty).
    let mut next_cache = Vec::new();
    let mut sidecar = Sidecar {
        engine_api: cache.engine_api,
        ..Sidecar::default()
    };
    for (path, stamp, cached) in outcomes {
        let (path, load, self_contained) = match cached {
            Some((path, objects)) => (path, KeptLoad::Ok(objects), true),
            None => {
                let parsed = parsed.next().expect("one outcome per file parsed");
                sidecar.reads.extend(parsed.own.reads);
                sidecar.warnings.extend(parsed.own.warnings);
                // Deleted between listing and reading (a `rm` racing the reload): the file is
                // gone, not broken, and must not hold back the pruning of what it declared. A
                // symlink whose target is missing or loops is still there, and broken.
                if matches!(parsed.load, KeptLoad::Failed(_)) && entry_vanished(&path) {
                    continue;
                }
                (
                    shared_path(path, &parsed.load),
                    parsed.load,
                    parsed.self_contained,
                )
            }
        };
        if let Some(stamp) = stamp
            && self_contained
            && let KeptLoad::Ok(objects) = &load
        {
            next_cache.push((Arc::clone(&path), (stamp, Arc::clone(objects))));
        }
        files.insert(path, load);
    }
    // The files a SwarmStack reads are its, not spec files: a compose file would only fail as
    // one ("missing apiVersion"), and a config that happens to be YAML too.
    if !sidecar.reads.is_empty() {
        files.retain(|path, _| {
            path.canonicalize()
                .map_or(true, |real| !sidecar.reads.contains(&real))
        });
        next_cache.retain(|(path, _)| {
            path.canonicalize()
                .map_or(true, |real| !sidecar.reads.contains(&real))
        });
    }
    cache.files = BTreeMap::from_iter(next_cache);
    Ok(LoadedDir {
        files,
        warnings: sidecar.warnings,
        unread,
    })
}

/// A cached file's path (as its objects share it) and objects.
type Cached = (Arc<Path>, KeptObjects);

/// `path` as the objects of its file share it (one copy of each path in the cache, the spec
/// store and the objects), or a new one.
fn shared_path(path: PathBuf, load: &KeptLoad) -> Arc<Path> {
    match load {
        KeptLoad::Ok(objects) => objects
            .iter()
            .map(|object| &object.file)
            .find(|file| ***file == *path)
            .map_or_else(|| Arc::from(path), Arc::clone),
        KeptLoad::Failed(_) => Arc::from(path),
    }
}

/// Takes out of `outcomes` (and counts) the files a first read of a burst leaves unread:
/// nothing unless the new files to parse are a burst; then every file to parse but the first
/// `first.first` new ones. Cached outcomes always stay: they cost nothing.
fn leave_most_of_a_burst(
    outcomes: &mut Vec<(PathBuf, Option<FileStamp>, Option<Cached>)>,
    first: FirstOfBurst<'_>,
) -> usize {
    let is_new = |path: &Path, cached: &Option<Cached>| cached.is_none() && !(first.is_known)(path);
    let new = outcomes
        .iter()
        .filter(|(path, _, cached)| is_new(path, cached))
        .count();
    if new < first.burst {
        return 0;
    }
    let before = outcomes.len();
    let mut taken = 0;
    outcomes.retain(|(path, _, cached)| {
        if cached.is_some() {
            return true;
        }
        if is_new(path, cached) && taken < first.first {
            taken += 1;
            return true;
        }
        false
    });
    before - outcomes.len()
}

/// Below this many files a reload parses on one thread: starting threads costs more than the
/// parse of a few small files.
const PARSE_ON_ONE_THREAD_BELOW: usize = 64;

/// One file parsed by [`parse_files`].
struct ParsedFile {
    load: KeptLoad,
    own: Sidecar,
    /// Whether its outcome depends on nothing but its own text, so that its stamp stands for
    /// it in the cache: a config's `file:` or a service's `envFile` can change on their own, a
    /// SwarmStack depends on its compose files, and a failed file may be fixed by creating
    /// what it refers to.
    self_contained: bool,
}

/// Loads `paths`, each with its own sidecar, in their order. A burst of new files is parsed on
/// every core: the first create waits for the whole reload (5,000 one-service files: 0.87 s
/// on one core of this project's 2-core reference machine). Each file's objects are made
/// [`kept`] as soon as it is parsed: the typed copy is freed before the next file's is made,
/// instead of all of them after the burst, around what is kept.
fn parse_files(
    paths: &[&Path],
    identities: &AgeIdentities,
    engine_api: Option<EngineApiVersion>,
) -> Vec<ParsedFile> {
    let parse_all = |paths: &[&Path]| -> Vec<ParsedFile> {
        paths
            .iter()
            .map(|path| {
                let mut own = Sidecar {
                    engine_api,
                    ..Sidecar::default()
                };
                let load = load_file_inner(path, identities, &mut own);
                let self_contained =
                    own.reads.is_empty() && own.warnings.is_empty() && is_self_contained(&load);
                ParsedFile {
                    load: load.into(),
                    own,
                    self_contained,
                }
            })
            .collect()
    };
    if paths.len() < PARSE_ON_ONE_THREAD_BELOW {
        return parse_all(paths);
    }
    // Asked only for a burst: it reads the cgroup's CPU quota from /proc and /sys.
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if threads < 2 {
        return parse_all(paths);
    }
    let chunk = paths.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = paths
            .chunks(chunk)
            .map(|part| scope.spawn(move || parse_all(part)))
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(outcomes) => outcomes,
                // A panic on a worker is the bug it would be on this thread, raised here.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Whether a file's outcome depends on nothing but its own text.
fn is_self_contained(load: &FileLoad) -> bool {
    load.objects().is_some_and(|objects| {
        objects.iter().all(|object| match &object.value {
            Object::Service(service) => service.spec.env_file.is_empty(),
            Object::Config(config) => config.spec.file.is_none(),
            Object::Secret(secret) => secret.spec.file.is_none(),
            Object::Network(_) => true,
        })
    })
}

/// Whether the directory entry `path` itself is gone (not: its symlink target).
fn entry_vanished(path: &Path) -> bool {
    matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// How many symlinks the kernel follows before giving up (Linux `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: usize = 40;

/// Why a symlink chain leads to no file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BrokenSymlink {
    /// The chain comes back to a link it passed (or is longer than the kernel follows).
    Loop(Vec<PathBuf>),
    /// The last link points at nothing.
    Dangling(Vec<PathBuf>),
}

impl fmt::Display for BrokenSymlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (chain, problem) = match self {
            BrokenSymlink::Loop(chain) => (chain, "is a symlink loop"),
            BrokenSymlink::Dangling(chain) => (chain, "is a symlink to a file that does not exist"),
        };
        let chain: Vec<String> = chain.iter().map(|p| p.display().to_string()).collect();
        write!(
            f,
            "{problem} ({}): point it at a regular file or remove it; what the file declared \
             before is kept, not removed, until then",
            chain.join(" -> ")
        )
    }
}

/// Follows the symlinks starting at `path` (the links as written, the first one by its file
/// name) and says why they lead to no file, if they do not.
fn broken_symlink(path: &Path) -> Option<BrokenSymlink> {
    let mut chain = vec![PathBuf::from(path.file_name()?)];
    let mut visited = vec![path.to_owned()];
    let mut current = path.to_owned();
    loop {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {}
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Some(BrokenSymlink::Dangling(chain));
            }
            Err(_) => return None,
        }
        let target = std::fs::read_link(&current).ok()?;
        // A relative target is relative to the directory holding the link.
        let next = current
            .parent()
            .map_or_else(|| target.clone(), |dir| dir.join(&target));
        chain.push(target);
        if visited.contains(&next) || visited.len() >= MAX_SYMLINK_HOPS {
            return Some(BrokenSymlink::Loop(chain));
        }
        visited.push(next.clone());
        current = next;
    }
}

/// Loads one spec file (without age identities: an `.age` file it refers to is an error).
pub fn load_file(path: &Path) -> FileLoad {
    load_file_with(path, &AgeIdentities::none())
}

/// Loads one spec file, decrypting the `.age` files it refers to with `identities`.
pub fn load_file_with(path: &Path, identities: &AgeIdentities) -> FileLoad {
    load_file_inner(path, identities, &mut Sidecar::default())
}

fn load_file_inner(path: &Path, identities: &AgeIdentities, sidecar: &mut Sidecar) -> FileLoad {
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return FileLoad::Failed(vec![SpecError::file(
                path,
                format!(
                    "file is {} bytes; spec files may be at most {MAX_FILE_BYTES} bytes",
                    meta.len()
                ),
            )]);
        }
        // Zero bytes is what a file is between its truncation and its new content (`cp` over
        // it, a slow writer), and a reload may land right there while other files of a burst
        // are read. Read as "declares nothing" it would prune what it declared (a remove and a
        // create with a new id); held like a broken file, its objects stay until it is whole.
        Ok(meta) if meta.len() == 0 => {
            return FileLoad::Failed(vec![SpecError::file(
                path,
                "file is empty (still being written?): the objects it declared are kept; \
                 write a spec into it, or delete the file to remove them",
            )]);
        }
        Ok(_) => {}
        Err(_) => {
            if let Some(broken) = broken_symlink(path) {
                return FileLoad::Failed(vec![SpecError::file(path, broken.to_string())]);
            }
        }
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => load_str_inner(path, &text, identities, sidecar, TextOrigin::File),
            Err(_) => FileLoad::Failed(vec![SpecError::file(
                path,
                "file is not valid UTF-8: spec files must be UTF-8 YAML",
            )]),
        },
        Err(e) => FileLoad::Failed(vec![SpecError::file(
            path,
            format!("cannot read file: {e}"),
        )]),
    }
}

/// Loads the spec documents in `text`, reporting errors against `file` (without age
/// identities).
pub fn load_str(file: &Path, text: &str) -> FileLoad {
    load_str_with(file, text, &AgeIdentities::none())
}

/// Loads the spec documents in `text`, reporting errors against `file`; `.age` files they
/// refer to are decrypted with `identities`.
pub fn load_str_with(file: &Path, text: &str, identities: &AgeIdentities) -> FileLoad {
    load_str_inner(
        file,
        text,
        identities,
        &mut Sidecar::default(),
        TextOrigin::Memory,
    )
}

fn load_str_inner(
    file: &Path,
    text: &str,
    identities: &AgeIdentities,
    sidecar: &mut Sidecar,
    origin: TextOrigin,
) -> FileLoad {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for doc in split_documents(text) {
        if !doc.has_content {
            continue;
        }
        match load_document(file, &doc.text, identities, sidecar, origin) {
            Ok(LoadedDocument::Object(object)) => objects.push(object),
            Ok(LoadedDocument::Stack(mut stack)) => objects.append(&mut stack),
            Ok(LoadedDocument::Empty) => {}
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        FileLoad::Ok(objects.into())
    } else {
        FileLoad::Failed(errors)
    }
}

/// Where a text being loaded comes from, which says whether its documents can be read again
/// later to locate an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TextOrigin {
    /// The spec file `file` as it is on disk: a loaded document's text is dropped, and read
    /// from the file again if an error ever needs its field positions.
    File,
    /// A text only in memory (given to [`load_str`], a document `apply` stores): kept.
    Memory,
}

/// What one document holds.
#[derive(Debug)]
pub(crate) enum LoadedDocument {
    /// Nothing (a null document).
    Empty,
    /// One object.
    Object(Located<Object>),
    /// A SwarmStack's objects, in the order its compose files convert them.
    Stack(Vec<Located<Object>>),
}

/// Loads one document (padded with empty lines so positions are those of the whole file).
/// What a SwarmStack reads and warns about goes into `sidecar`.
pub(crate) fn load_document(
    file: &Path,
    text: &str,
    identities: &AgeIdentities,
    sidecar: &mut Sidecar,
    origin: TextOrigin,
) -> Result<LoadedDocument, Vec<SpecError>> {
    let (kind, (line, column)) = match Header::read(text).and_then(Header::into_spec_dispatch) {
        Some(dispatch) => dispatch,
        None => match dispatch_by_tree(file, text)? {
            Some(dispatch) => dispatch,
            None => return Ok(LoadedDocument::Empty),
        },
    };

    // Positions are found from the text only if an error needs them (the typed parse, env
    // files and data sources below), the same way they are for the loaded object later.
    let fields = DocumentFields::deferred(text);
    let object = match kind.as_str() {
        "SwarmService" => {
            let mut service = typed::<SwarmService>(file, text, &fields)?;
            merge_env_files(file, &mut service, &fields, identities)?;
            service.into()
        }
        "SwarmNetwork" => typed::<SwarmNetwork>(file, text, &fields)?.into(),
        "SwarmConfig" => {
            let mut config = typed::<SwarmConfig>(file, text, &fields)?;
            if config.spec.applied_secret.is_some() {
                return Err(vec![SpecError::at(
                    file,
                    fields.locations(file).nearest("spec.appliedSecret"),
                    "spec.appliedSecret",
                    "only a SwarmSecret refers to a swarm secret `apply` created; give a config's content as `file`, `data` or `dataBase64`",
                )]);
            }
            config.spec.content = read_content(file, &config.spec, &fields, identities)?;
            config.into()
        }
        "SwarmSecret" => {
            let mut secret = typed::<SwarmSecret>(file, text, &fields)?;
            if let Some(applied) = &secret.spec.applied_secret
                && !is_applied_secret_name(&secret.metadata.name, applied)
            {
                return Err(vec![SpecError::at(
                    file,
                    fields.locations(file).nearest("spec.appliedSecret"),
                    "spec.appliedSecret",
                    format!(
                        "`{applied}` is not `{}-` and 10 lower-case hex digits: it names the swarm secret `apply` created for this content; apply the secret again instead of editing it",
                        secret.metadata.name
                    ),
                )]);
            }
            secret.spec.content = read_content(file, &secret.spec, &fields, identities)?;
            secret.into()
        }
        "SwarmStack" => {
            let stack = typed::<SwarmStack>(file, text, &fields)?;
            let at = Located {
                value: (),
                file: std::sync::Arc::from(file),
                line,
                column,
                fields: std::sync::Arc::new(fields),
            };
            return super::stack::expand(&stack, &at, identities, sidecar)
                .map(LoadedDocument::Stack);
        }
        _ => unreachable!("kind checked against KINDS above"),
    };
    // A SwarmStack's document keeps its text (above): its objects' errors point into it
    // while the stack is expanded, and stacks are few.
    let fields = match origin {
        TextOrigin::File => fields.found_in_file(),
        TextOrigin::Memory => fields,
    };
    Ok(LoadedDocument::Object(Located {
        value: object,
        file: std::sync::Arc::from(file),
        line,
        column,
        fields: std::sync::Arc::new(fields),
    }))
}

/// The slow way to a document's kind and the position of its name, through its tree of
/// positions: for the documents whose [`Header`] does not read cleanly, so that what is wrong
/// with them is said precisely. `None`: a null (empty) document.
fn dispatch_by_tree(file: &Path, text: &str) -> Result<Option<(String, Position)>, Vec<SpecError>> {
    let root =
        parse_nodes(file, text).map_err(|e| vec![SpecError::at(file, e.at, "", e.message)])?;
    let root_pos = root.origin.position();
    let Value::Map(_) = &root.value else {
        if matches!(root.value, Value::Null) {
            return Ok(None);
        }
        return Err(vec![SpecError::at(
            file,
            root_pos,
            "",
            format!(
                "a spec document must be a mapping with apiVersion, kind, metadata and spec, not {}",
                describe(&root)
            ),
        )]);
    };
    let mut errors = Vec::new();
    let get = |key: &str| root.get(key);
    match get("apiVersion") {
        Some(v) if v.as_str() == Some(API_VERSION) => {}
        Some(v) => errors.push(SpecError::at(
            file,
            v.origin.position(),
            "apiVersion",
            format!(
                "unknown apiVersion {}: the only supported apiVersion is `{API_VERSION}`",
                describe(v)
            ),
        )),
        None => errors.push(SpecError::at(
            file,
            root_pos,
            "apiVersion",
            format!("missing field `apiVersion`: it must be `{API_VERSION}`"),
        )),
    }
    let kind = match get("kind") {
        Some(v) if v.as_str().is_some_and(|k| KINDS.contains(&k)) => v.as_str(),
        Some(v) => {
            errors.push(SpecError::at(
                file,
                v.origin.position(),
                "kind",
                format!(
                    "unknown kind {}: allowed kinds are {}",
                    describe(v),
                    KINDS.join(", ")
                ),
            ));
            None
        }
        None => {
            errors.push(SpecError::at(
                file,
                root_pos,
                "kind",
                format!(
                    "missing field `kind`: allowed kinds are {}",
                    KINDS.join(", ")
                ),
            ));
            None
        }
    };
    match kind {
        Some(kind) if errors.is_empty() => {
            let name_pos = get("metadata")
                .and_then(|metadata| metadata.get("name"))
                .and_then(|name| name.origin.position());
            Ok(Some((
                kind.to_owned(),
                name_pos.or(root_pos).unwrap_or((1, 1)),
            )))
        }
        _ => Err(errors),
    }
}

/// The field positions of one document's text (see [`DocumentFields`]); empty if it does not
/// parse, which a loaded document always does.
/// The text of the document of spec file `file` that `is_it` recognises, as the loader splits
/// and pads it ([`split_documents`]); `None` when the file is gone, no longer a regular file,
/// larger than a spec file may be, not UTF-8, or no longer holds that document.
pub(super) fn document_again(file: &Path, is_it: impl Fn(&str) -> bool) -> Option<String> {
    use std::io::Read;
    if !std::fs::metadata(file).ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .ok()?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return None;
    }
    let text = String::from_utf8(bytes).ok()?;
    split_documents(&text)
        .into_iter()
        .map(|document| document.text)
        .find(|text| is_it(text))
}

pub(super) fn field_locations(text: &str) -> FieldLocations {
    let mut fields = FieldLocations::default();
    if let Ok(root) = parse_nodes(Path::new(""), text) {
        root.walk(
            "",
            &field_path::key,
            &field_path::index,
            &mut |path, key, node| {
                if let Some(p) = key.and_then(yaml::Origin::position) {
                    fields.insert_key(path, p);
                }
                if let Some(p) = node.origin.position() {
                    fields.insert(path, p);
                }
            },
        );
    }
    fields
}

/// A document's YAML tree with positions. Duplicate keys are kept (the typed parse rejects
/// them, and their positions are then known).
fn parse_nodes(file: &Path, text: &str) -> Result<Node, yaml::ParseError> {
    yaml::parse(file, text, DuplicateKeys::Keep)
}

/// For messages about `apiVersion` and `kind`: the value itself for scalars (these two are
/// never secret), its shape otherwise.
fn describe(node: &Node) -> String {
    match &node.value {
        Value::Null => "null".to_owned(),
        Value::Str(s) => format!("`{s}`"),
        Value::Seq(_) => "a sequence".to_owned(),
        Value::Map(_) => "a mapping".to_owned(),
        _ => format!("`{}`", node.scalar().unwrap_or_default()),
    }
}

/// Reads the service's `envFile`s and merges them under `env` (later files win over earlier
/// ones, `env` over all), so that everything downstream sees one environment.
pub(super) fn merge_env_files(
    file: &Path,
    service: &mut SwarmService,
    fields: &DocumentFields,
    identities: &AgeIdentities,
) -> Result<(), Vec<SpecError>> {
    let mut merged = std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    for (i, relative) in service.spec.env_file.iter().enumerate() {
        let read = files::read_content(file, relative, MAX_FILE_BYTES as usize, identities)
            .and_then(|bytes| {
                let text =
                    String::from_utf8(bytes).map_err(|_| files::FileProblem::Unreadable {
                        path: relative.clone(),
                        reason: "not valid UTF-8".to_owned(),
                    })?;
                files::parse_env_file(relative, &text)
            });
        match read {
            Ok(vars) => merged.extend(vars),
            Err(problem) => {
                let field = field_path::index("spec.envFile", i);
                errors.push(SpecError::at(
                    file,
                    fields.locations(file).nearest(&field),
                    field,
                    problem.to_string(),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    merged.extend(std::mem::take(&mut service.spec.env));
    service.spec.env = merged;
    Ok(())
}

/// Whether `applied` is `<logical>-<10 lower-case hex>`, the name `apply` gives the swarm
/// secret of a SwarmSecret named `logical`.
pub fn is_applied_secret_name(logical: &str, applied: &str) -> bool {
    applied
        .strip_prefix(logical)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hash| {
            hash.len() == 10
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// The content of a config or secret from its one source. Messages never quote the content.
pub(super) fn read_content(
    file: &Path,
    spec: &DataSpec,
    fields: &DocumentFields,
    identities: &AgeIdentities,
) -> Result<Content, Vec<SpecError>> {
    let error = |field: &str, message: String| {
        vec![SpecError::at(
            file,
            fields.locations(file).nearest(field),
            field,
            message,
        )]
    };
    let too_large = |field: &str, size: usize| {
        error(
            field,
            format!(
                "content is {size} bytes: swarm configs and secrets may be at most {} bytes (500 KiB)",
                files::MAX_DATA_BYTES
            ),
        )
    };
    if spec.applied_secret.is_some() {
        // The content is in the swarm secret, which nobody can read back.
        return match (&spec.file, &spec.data, &spec.data_base64) {
            (None, None, None) => Ok(Content::default()),
            _ => Err(error(
                "spec",
                "`appliedSecret` (written by `apply`) stands for the content: give no `file`, `data` or `dataBase64` with it".into(),
            )),
        };
    }
    let bytes = match (&spec.file, &spec.data, &spec.data_base64) {
        (Some(relative), None, None) => {
            files::read_content(file, relative, files::MAX_DATA_BYTES, identities)
                .map_err(|p| error("spec.file", p.to_string()))?
        }
        (None, Some(data), None) => data.as_bytes().to_vec(),
        (None, None, Some(encoded)) => {
            use base64::Engine as _;
            // The decoder's own message names an offending byte: not for a secret's content.
            let compact: String = encoded.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| {
                    error(
                        "spec.dataBase64",
                        "dataBase64 is not valid base64 (standard alphabet, `=` padded)".into(),
                    )
                })?
        }
        _ => {
            return Err(error(
                "spec",
                "give exactly one of `file`, `data` or `dataBase64`".into(),
            ));
        }
    };
    if bytes.len() > files::MAX_DATA_BYTES {
        let field = if spec.data.is_some() {
            "spec.data"
        } else {
            "spec.dataBase64"
        };
        return Err(too_large(field, bytes.len()));
    }
    Ok(Content(bytes))
}

fn typed<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    fields: &DocumentFields,
) -> Result<T, Vec<SpecError>> {
    yaml::from_str(text).map_err(|e| vec![convert_error(file, &e, fields.locations(file))])
}

/// Turns a parser error into a [`SpecError`], recovering the field path from its position.
fn convert_error(file: &Path, err: &serde_saphyr::Error, fields: &FieldLocations) -> SpecError {
    let pos = yaml::error_position(err);
    let base = yaml::error_message(err);
    let (field, message) = match (err.without_snippet(), pos) {
        (
            serde_saphyr::Error::SerdeUnknownField {
                field, expected, ..
            },
            Some(p),
        ) => {
            let path = fields
                .key_path_at(p)
                .map(str::to_owned)
                .unwrap_or_else(|| field.clone());
            (
                path,
                format!(
                    "unknown field `{field}`: allowed fields are {}",
                    expected.join(", ")
                ),
            )
        }
        (serde_saphyr::Error::SerdeMissingField { field, .. }, Some(p)) => {
            let parent = fields.path_at(p).unwrap_or("");
            (
                field_path::key(parent, field),
                format!("missing required field `{field}`"),
            )
        }
        (
            serde_saphyr::Error::SerdeUnknownVariant {
                variant, expected, ..
            },
            Some(p),
        ) => (
            fields.path_at(p).unwrap_or("").to_owned(),
            format!(
                "unknown value `{variant}`: allowed values are {}",
                expected.join(", ")
            ),
        ),
        (serde_saphyr::Error::DuplicateMappingKey { key, .. }, Some(p)) => (
            fields.key_path_at(p).unwrap_or("").to_owned(),
            match key {
                Some(k) => format!("duplicate key `{k}`: each key may appear only once"),
                None => "duplicate key: each key may appear only once".to_owned(),
            },
        ),
        (_, Some(p)) => (
            fields
                .path_at(p)
                .or_else(|| fields.key_path_at(p))
                .unwrap_or("")
                .to_owned(),
            base,
        ),
        (_, None) => (String::new(), base),
    };
    SpecError::at(file, pos, field, message)
}

/// One document's text, padded with empty lines so positions match the file.
pub(crate) struct Document {
    /// The text to parse: the document's lines, after as many empty lines as precede it.
    pub(crate) text: String,
    /// The document's lines exactly as in the file (markers included): the documents' raw
    /// texts put together are the file, so one document can be replaced in place.
    pub(crate) raw: String,
    /// Whether it holds anything but markers, comments and blank lines.
    pub(crate) has_content: bool,
}

/// Splits a YAML stream at its document markers, line-based (a `---` or `...` at column 0 is
/// always a marker in YAML, even inside block scalars). Directive lines (`%YAML`) go with the
/// document that follows them.
pub(crate) fn split_documents(text: &str) -> Vec<Document> {
    fn is_marker(line: &str, marker: &str) -> bool {
        line.strip_prefix(marker)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
    }
    fn is_content(line: &str) -> bool {
        let t = line.trim();
        !t.is_empty() && !t.starts_with('#')
    }
    let mut docs = Vec::new();
    let mut cur = Document {
        text: String::new(),
        raw: String::new(),
        has_content: false,
    };
    let mut has_marker = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let start_new = |docs: &mut Vec<Document>, cur: &mut Document| {
            let done = std::mem::replace(
                cur,
                Document {
                    text: "\n".repeat(i),
                    raw: String::new(),
                    has_content: false,
                },
            );
            docs.push(done);
        };
        if is_marker(line, "---") {
            if cur.has_content || has_marker {
                start_new(&mut docs, &mut cur);
            }
            has_marker = true;
            cur.text.push_str(line);
            cur.raw.push_str(line);
            cur.has_content |= is_content(&line[3..]);
        } else if line.starts_with('%') {
            if cur.has_content || has_marker {
                start_new(&mut docs, &mut cur);
                has_marker = false;
            }
            cur.text.push_str(line);
            cur.raw.push_str(line);
        } else if is_marker(line, "...") {
            cur.raw.push_str(line);
            cur.text.push('\n');
            start_new(&mut docs, &mut cur);
            cur.text.push('\n');
            has_marker = false;
        } else {
            cur.has_content |= is_content(line);
            cur.text.push_str(line);
            cur.raw.push_str(line);
        }
    }
    docs.push(cur);
    docs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::*;

    const HEAD: &str = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  image: x\n";

    fn load(text: &str) -> FileLoad {
        load_str(Path::new("t.yaml"), text)
    }

    fn ok(text: &str) -> Vec<Located<Object>> {
        match load(text) {
            FileLoad::Ok(o) => o.to_vec(),
            FileLoad::Failed(e) => panic!("expected success, got {e:#?}"),
        }
    }

    fn errs(text: &str) -> Vec<SpecError> {
        match load(text) {
            FileLoad::Ok(o) => panic!("expected errors, got {o:?}"),
            FileLoad::Failed(e) => e,
        }
    }

    /// The single error of `text`, as (line, column, field, message).
    fn one(text: &str) -> (usize, usize, String, String) {
        let e = errs(text);
        assert_eq!(e.len(), 1, "{e:#?}");
        let e = &e[0];
        assert_eq!(e.file, Path::new("t.yaml"));
        (
            e.line.expect("line"),
            e.column.expect("column"),
            e.field.clone(),
            e.message.clone(),
        )
    }

    fn service(o: &Located<Object>) -> &ServiceSpec {
        &o.value.as_service().expect("a service").spec
    }

    #[test]
    fn minimal_service_gets_defaults() {
        let o = ok(HEAD);
        assert_eq!(o.len(), 1);
        assert_eq!((o[0].line, o[0].column), (4, 9), "located at metadata.name");
        assert_eq!(o[0].value.name(), "a");
        assert_eq!(o[0].value.kind(), "SwarmService");
        let s = service(&o[0]);
        assert_eq!(s.mode, ServiceMode::Replicated);
        assert_eq!(s.replicas, None);
        assert_eq!(s.effective_replicas(), Some(1));
        assert_eq!(s.endpoint_mode, EndpointMode::Vip);
        assert!(s.env.is_empty() && s.ports.is_empty() && s.networks.is_empty());
        assert!(s.mounts.is_empty() && s.container_labels.is_empty());
        assert_eq!(s.command, None);
    }

    #[test]
    fn network_defaults() {
        let o = ok(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmNetwork\nmetadata: {name: n, labels: {a: b}}\nspec: {}\n",
        );
        let n = o[0].value.as_network().unwrap();
        assert_eq!(n.spec, NetworkSpec::default());
        assert_eq!(n.spec.driver, "overlay");
        assert_eq!(n.metadata.labels.get("a").unwrap(), "b");
    }

    #[test]
    fn port_defaults() {
        let o = ok(&format!("{HEAD}  ports:\n  - target: 80\n"));
        let p = &service(&o[0]).ports[0];
        assert_eq!(p.target, 80);
        assert_eq!(p.published, None);
        assert_eq!(p.protocol, Protocol::Tcp);
        assert_eq!(p.mode, PublishMode::Ingress);
    }

    #[test]
    fn multi_document_file_and_field_positions() {
        let text = "# leading comment\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmNetwork\nmetadata: {name: net}\nspec: {}\n---\n\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: svc\nspec:\n  image: x\n  ports:\n  - target: 80\n    published: 8080\n...\n";
        let o = ok(text);
        assert_eq!(o.len(), 2, "the empty middle document is ignored");
        assert_eq!(o[0].value.name(), "net");
        assert_eq!((o[0].line, o[0].column), (5, 18));
        assert_eq!(o[1].value.name(), "svc");
        assert_eq!((o[1].line, o[1].column), (13, 9));
        assert_eq!(
            o[1].fields
                .locations(&o[1].file)
                .get("spec.ports[0].published"),
            Some((18, 16))
        );
        assert_eq!(
            o[1].fields.locations(&o[1].file).get("spec.image"),
            Some((15, 10))
        );
    }

    #[test]
    fn errors_in_several_documents_are_all_reported() {
        let text = format!("{HEAD}  bogus: 1\n---\n{HEAD}  replicas: -1\n");
        let e = errs(&text);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert_eq!((e[0].line, e[0].field.as_str()), (Some(7), "spec.bogus"));
        assert_eq!(
            (e[1].line, e[1].field.as_str()),
            (Some(15), "spec.replicas")
        );
    }

    #[test]
    fn one_bad_document_fails_the_file() {
        let text = format!("{HEAD}---\n{HEAD}  bogus: 1\n");
        assert!(matches!(load(&text), FileLoad::Failed(e) if e.len() == 1));
    }

    #[test]
    fn unknown_field_is_rejected_with_location_and_allowed_fields() {
        let (l, c, f, m) = one(&format!("{HEAD}  replica: 3\n"));
        assert_eq!((l, c, f.as_str()), (7, 3, "spec.replica"));
        assert!(
            m.starts_with("unknown field `replica`: allowed fields are image, mode, replicas"),
            "{m}"
        );
    }

    #[test]
    fn unknown_nested_field() {
        let (l, c, f, m) = one(&format!(
            "{HEAD}  ports:\n  - target: 80\n    hostPort: 80\n"
        ));
        assert_eq!((l, c, f.as_str()), (9, 5, "spec.ports[0].hostPort"));
        assert!(
            m.contains("allowed fields are target, published, protocol, mode"),
            "{m}"
        );
        let (l, _, f, _) = one(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: a, namespace: b}\nspec: {image: x}\n",
        );
        assert_eq!((l, f.as_str()), (3, "metadata.namespace"));
        let (l, _, f, _) = one(&format!("{HEAD}status: {{}}\n"));
        assert_eq!((l, f.as_str()), (7, "status"));
    }

    #[test]
    fn missing_required_field() {
        let (l, c, f, m) = one(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  replicas: 3\n",
        );
        assert_eq!((l, c, f.as_str()), (6, 3, "spec.image"));
        assert_eq!(m, "missing required field `image`");
    }

    #[test]
    fn wrong_type() {
        let (l, c, f, m) = one(&format!("{HEAD}  env: [a, b]\n"));
        assert_eq!((l, f.as_str()), (7, "spec.env"));
        assert!(c >= 3, "{c}");
        assert!(m.contains("mapping"), "{m}");
        let (l, _, f, m) = one(&format!("{HEAD}  replicas: three\n"));
        assert_eq!((l, f.as_str()), (7, "spec.replicas"));
        assert!(m.contains("expected a non-negative integer"), "{m}");
    }

    #[test]
    fn negative_replicas() {
        let (l, c, f, m) = one(&format!("{HEAD}  replicas: -1\n"));
        assert_eq!((l, c, f.as_str()), (7, 13, "spec.replicas"));
        assert!(
            m.contains("negative") && m.contains("non-negative integer"),
            "{m}"
        );
    }

    #[test]
    fn ports_out_of_range_get_a_clear_message() {
        for (value, col) in [("70000", 16), ("0", 16), ("-5", 16)] {
            let (l, c, f, m) = one(&format!(
                "{HEAD}  ports:\n  - target: 80\n    published: {value}\n"
            ));
            assert_eq!(
                (l, c, f.as_str()),
                (9, col, "spec.ports[0].published"),
                "{value}"
            );
            assert_eq!(m, format!("port {value} is out of range: allowed 1-65535"));
        }
        let (l, c, f, m) = one(&format!("{HEAD}  ports: [{{target: 65536}}]\n"));
        assert_eq!((l, c, f.as_str()), (7, 20, "spec.ports[0].target"));
        assert_eq!(m, "port 65536 is out of range: allowed 1-65535");
    }

    #[test]
    fn unknown_enum_value_lists_allowed_values() {
        let (l, c, f, m) = one(&format!("{HEAD}  endpointMode: round-robin\n"));
        assert_eq!((l, c, f.as_str()), (7, 17, "spec.endpointMode"));
        assert_eq!(
            m,
            "unknown value `round-robin`: allowed values are vip, dnsrr"
        );
        let (_, _, f, m) = one(&format!("{HEAD}  updateConfig: {{order: first}}\n"));
        assert_eq!(f, "spec.updateConfig.order");
        assert!(m.contains("stop-first, start-first"), "{m}");
    }

    #[test]
    fn bad_duration_and_memory() {
        let (l, c, f, m) = one(&format!("{HEAD}  healthcheck:\n    interval: 3 seconds\n"));
        assert_eq!((l, c, f.as_str()), (8, 15, "spec.healthcheck.interval"));
        assert!(
            m.starts_with("invalid duration `3 seconds`: expected a duration like `500ms`"),
            "{m}"
        );
        let (l, c, f, m) = one(&format!("{HEAD}  stopGracePeriod: 10\n"));
        assert_eq!((l, c, f.as_str()), (7, 20, "spec.stopGracePeriod"));
        assert!(m.contains("a unit is required"), "{m}");
        let (l, _, f, m) = one(&format!(
            "{HEAD}  resources:\n    limits: {{memory: 128MB}}\n"
        ));
        assert_eq!((l, f.as_str()), (8, "spec.resources.limits.memory"));
        assert!(
            m.starts_with("invalid memory size `128MB`: expected a memory size like"),
            "{m}"
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let (l, c, f, m) = one(&format!("{HEAD}  image: y\n"));
        assert_eq!((l, c, f.as_str()), (7, 3, "spec.image"));
        assert_eq!(m, "duplicate key `image`: each key may appear only once");
        let e = errs(&format!("{HEAD}  env:\n    A: 1\n    A: 2\n"));
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].line, e[0].field.as_str()), (Some(9), "spec.env.A"));
    }

    #[test]
    fn syntax_error_is_located() {
        let (l, c, f, m) = one(&format!("{HEAD}  command: [a, b\n"));
        assert_eq!(f, "");
        assert!(l >= 7, "{l}:{c}");
        assert!(!m.is_empty());
        let e = errs("a: b\n c: d\n");
        assert_eq!(e[0].line, Some(2));
    }

    #[test]
    fn syntax_error_in_one_document_does_not_hide_another() {
        let e = errs(&format!("{HEAD}  command: [a\n---\n{HEAD}  bogus: 1\n"));
        assert_eq!(e.len(), 2, "{e:#?}");
        assert_eq!(e[1].field, "spec.bogus");
        assert_eq!(e[1].line, Some(15));
    }

    #[test]
    fn unknown_api_version_and_kind_say_what_is_allowed() {
        let e = errs("apiVersion: v1\nkind: Deployment\nmetadata: {name: a}\nspec: {}\n");
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].line, e[0].column, e[0].field.as_str()),
            (Some(1), Some(13), "apiVersion")
        );
        assert_eq!(
            e[0].message,
            "unknown apiVersion `v1`: the only supported apiVersion is `swarm-operator.io/v1alpha1`"
        );
        assert_eq!(
            (e[1].line, e[1].column, e[1].field.as_str()),
            (Some(2), Some(7), "kind")
        );
        assert_eq!(
            e[1].message,
            "unknown kind `Deployment`: allowed kinds are SwarmService, SwarmNetwork, SwarmConfig, SwarmSecret, SwarmStack"
        );
        let (l, _, f, m) =
            one("apiVersion: swarm-operator.io/v1alpha1\nmetadata: {name: a}\nspec: {}\n");
        assert_eq!((l, f.as_str()), (1, "kind"));
        assert!(m.starts_with("missing field `kind`"), "{m}");
    }

    #[test]
    fn non_mapping_document_is_an_error_and_empty_ones_are_ignored() {
        let (l, c, f, m) = one("- a\n- b\n");
        assert_eq!((l, c, f.as_str()), (1, 1, ""));
        assert!(
            m.contains("must be a mapping") && m.contains("a sequence"),
            "{m}"
        );
        let (_, _, _, m) = one("just a string\n");
        assert!(m.contains("`just a string`"), "{m}");
        assert!(ok("").is_empty());
        assert!(ok("# only a comment\n").is_empty());
        assert!(ok("---\n---\n...\n").is_empty());
        assert!(ok("~\n").is_empty());
    }

    #[test]
    fn alias_bombs_are_stopped_by_the_budget() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            text.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let e = errs(&text);
        assert_eq!(e.len(), 1, "{e:#?}");
    }

    /// The header's shortcut places an object where the tree would: every document of the
    /// fixtures and manifests, and documents written in the other styles YAML allows.
    #[test]
    fn the_header_places_objects_where_the_tree_does() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts: Vec<String> = [
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: web}\nspec: {image: x}\n",
            "{apiVersion: swarm-operator.io/v1alpha1, kind: SwarmNetwork, metadata: {labels: {a: b}, name: n}}\n",
            "# a comment\n\n'kind': SwarmService\n\"apiVersion\": swarm-operator.io/v1alpha1\nmetadata:\n    # why\n    name: \"quoted\"\nspec:\n  image: x\n",
            "base: &meta {name: anchored}\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: *meta\n",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata:\n  name: >-\n    folded\n",
        ]
        .map(str::to_owned)
        .to_vec();
        for dir in [root.join("tests/fixtures/valid"), root.join("../manifests")] {
            let mut stack = vec![dir];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if is_spec_file_name(&entry.file_name().to_string_lossy()) {
                        let text = std::fs::read_to_string(&path).unwrap();
                        texts.extend(split_documents(&text).into_iter().map(|d| d.text));
                    }
                }
            }
        }
        let mut compared = 0;
        for text in &texts {
            let Some(dispatch) = Header::read(text).and_then(Header::into_spec_dispatch) else {
                continue;
            };
            let tree = dispatch_by_tree(Path::new("f.yaml"), text).expect("a spec document");
            assert_eq!(tree, Some(dispatch), "{text}");
            compared += 1;
        }
        assert!(compared >= 8, "only {compared} documents compared");
    }

    #[test]
    fn full_fixture_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/valid");
        let loaded = load_dir(&dir).unwrap();
        let names: Vec<String> = loaded
            .files
            .keys()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["account.yml", "goblog.yaml"],
            "temp, hidden and non-YAML files skipped"
        );
        assert!(loaded.errors().is_empty(), "{:#?}", loaded.errors());
        let objects = loaded.objects();
        assert_eq!(objects.len(), 3);
        let account = service(&objects[0]);
        assert_eq!(
            account.command.as_deref(),
            Some(&["/account".to_owned()][..])
        );
        let limits = account.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits.memory.unwrap().bytes(), 128 * 1024 * 1024);
        assert_eq!(limits.cpus, Some(0.5));
        assert_eq!(
            account
                .resources
                .as_ref()
                .unwrap()
                .reservations
                .as_ref()
                .unwrap()
                .memory,
            Some(crate::spec::MemoryQuantity(64_000_000))
        );
        let update = account.update_config.as_ref().unwrap();
        assert_eq!(update.order, Some(UpdateOrder::StartFirst));
        assert_eq!(update.failure_action, Some(FailureAction::Rollback));
        assert_eq!(update.max_failure_ratio, Some(0.25));
        assert_eq!(update.delay.unwrap().as_nanos_i64(), 10_000_000_000);
        assert_eq!(
            account.restart_policy.as_ref().unwrap().condition,
            Some(RestartCondition::OnFailure)
        );
        assert_eq!(account.mounts[1].r#type, MountType::Tmpfs);
        assert_eq!(account.mounts[1].tmpfs_size.unwrap().bytes(), 16 << 20);
        assert!(account.mounts[2].read_only);
        assert_eq!(
            account.stop_grace_period.unwrap().as_duration().as_secs(),
            90
        );
        assert_eq!(account.placement.as_ref().unwrap().max_replicas, Some(2));
        let quote = service(&objects[2]);
        assert_eq!(quote.endpoint_mode, EndpointMode::Dnsrr);
        assert_eq!(quote.ports[0].mode, PublishMode::Host);
        assert_eq!(quote.healthcheck.as_ref().unwrap().retries, Some(3));
        assert_eq!(*objects[2].file, *dir.join("goblog.yaml"));
    }

    #[test]
    fn spec_file_names() {
        for good in ["a.yaml", "a.yml", "A.YAML", "my.service.yaml"] {
            assert!(is_spec_file_name(good), "{good}");
        }
        for bad in [
            ".a.yaml",
            "a.yaml~",
            ".a.yaml.swp",
            ".a.yaml.swx",
            "a.yaml.tmp",
            "#a.yaml#",
            "a.json",
            ".yaml",
            "a.yaml.bak",
        ] {
            assert!(!is_spec_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn unreadable_directory_is_the_only_hard_error() {
        let err = load_dir(Path::new("/definitely/not/here")).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"));
    }

    #[test]
    fn display_is_file_line_column_field_message() {
        let e = &errs(&format!("{HEAD}  bogus: 1\n"))[0];
        assert!(
            e.to_string()
                .starts_with("t.yaml:7:3: spec.bogus: unknown field `bogus`"),
            "{e}"
        );
        let json = serde_json::to_value(e).unwrap();
        assert_eq!(json["file"], "t.yaml");
        assert_eq!(json["line"], 7);
        assert_eq!(json["column"], 3);
        assert_eq!(json["field"], "spec.bogus");
        assert_eq!(
            SpecError::file("x.yaml", "boom").to_string(),
            "x.yaml: boom"
        );
    }

    #[test]
    fn quoted_keys_in_paths() {
        let o = ok(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\n  labels:\n    app.kubernetes.io/name: x\nspec: {image: x}\n",
        );
        assert_eq!(
            o[0].fields
                .locations(&o[0].file)
                .get(r#"metadata.labels["app.kubernetes.io/name"]"#),
            Some((6, 29))
        );
        assert_eq!(
            o[0].fields
                .locations(&o[0].file)
                .nearest(r#"metadata.labels["app.kubernetes.io/name"].x"#),
            Some((6, 29))
        );
    }

    #[test]
    fn env_files_merge_under_env_with_located_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.env"), "A=base\nB=base\nC=base\n").unwrap();
        std::fs::write(dir.path().join("prod.env"), "B=prod\n").unwrap();
        let spec = dir.path().join("web.yaml");
        std::fs::write(
            &spec,
            format!("{HEAD}  envFile: [./base.env, prod.env]\n  env: {{C: spec}}\n"),
        )
        .unwrap();
        let FileLoad::Ok(o) = load_file(&spec) else {
            panic!("loads")
        };
        let env = &service(&o[0]).env;
        assert_eq!(env["A"], "base");
        assert_eq!(env["B"], "prod", "later files win");
        assert_eq!(env["C"], "spec", "env wins over files");

        std::fs::write(
            &spec,
            format!("{HEAD}  envFile:\n  - ok.env\n  - ../up.env\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("ok.env"), "X=1\n").unwrap();
        let FileLoad::Failed(e) = load_file(&spec) else {
            panic!("fails")
        };
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!((e[0].line, e[0].column), (Some(9), Some(5)));
        assert_eq!(e[0].field, "spec.envFile[1]");
        assert!(
            e[0].message.contains("outside the spec directory"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn stack_fields_load() {
        let o = ok(&format!(
            "{HEAD}  hostname: web\n  init: true\n  capAdd: [NET_ADMIN]\n  sysctls: {{net.core.somaxconn: \"1024\"}}\n  ulimits: {{nofile: {{soft: 1, hard: 2}}}}\n  extraHosts: [\"db:10.0.0.1\"]\n  dns: {{nameservers: [10.0.0.2]}}\n  logging: {{driver: local, options: {{max-size: 1m}}}}\n  networks: [front]\n  networkAliases: {{front: [www]}}\n  mounts:\n  - {{type: tmpfs, target: /t, tmpfsMode: \"1777\"}}\n  - {{type: volume, source: d, target: /d, volume: {{noCopy: true, driver: local, driverOptions: {{type: tmpfs}}}}}}\n  - {{type: bind, source: /s, target: /s, bindPropagation: rslave}}\n"
        ));
        let s = service(&o[0]);
        assert_eq!(s.hostname.as_deref(), Some("web"));
        assert_eq!(s.ulimits["nofile"], UlimitSpec { soft: 1, hard: 2 });
        assert_eq!(s.network_aliases["front"], ["www"]);
        assert_eq!(s.mounts[0].tmpfs_mode, Some(FileMode(0o1777)));
        assert!(s.mounts[1].volume.as_ref().unwrap().no_copy);
        assert_eq!(s.mounts[2].bind_propagation, Some(BindPropagation::Rslave));
    }

    fn data_doc(kind: &str, name: &str, spec: &str) -> String {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n{spec}"
        )
    }

    #[test]
    fn configs_and_secrets_read_their_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("caddy")).unwrap();
        std::fs::write(dir.path().join("caddy/Caddyfile"), ":80 {\n}\n").unwrap();
        let spec = dir.path().join("stack.yaml");
        let text = [
            data_doc("SwarmConfig", "caddy", "  file: ./caddy/Caddyfile\n"),
            data_doc("SwarmConfig", "inline", "  data: |\n    a=1\n"),
            data_doc("SwarmSecret", "key", "  dataBase64: aHVudGVyMg==\n"),
        ]
        .join("---\n");
        std::fs::write(&spec, text).unwrap();
        let FileLoad::Ok(o) = load_file(&spec) else {
            panic!("loads")
        };
        let content = |i: usize| match &o[i].value {
            Object::Config(c) => c.spec.content.0.clone(),
            Object::Secret(s) => s.spec.content.0.clone(),
            _ => panic!(),
        };
        assert_eq!(content(0), b":80 {\n}\n");
        assert_eq!(content(1), b"a=1\n");
        assert_eq!(content(2), b"hunter2");
        let debug = format!("{:?}", o[2]);
        assert!(
            !debug.contains("hunter2") && !debug.contains("aHVudGVyMg"),
            "{debug}"
        );
        assert!(debug.contains("<7 bytes, sha256 "), "{debug}");
    }

    #[test]
    fn config_and_secret_sources_are_checked_without_quoting_content() {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path().join("outer.txt");
        std::fs::write(&outer, "hunter2").unwrap();
        let specs = dir.path().join("specs");
        std::fs::create_dir(&specs).unwrap();
        std::fs::write(specs.join("big"), vec![b'x'; 500 * 1024 + 1]).unwrap();
        let cases = [
            (
                "  file: missing.txt\n",
                "spec.file",
                "cannot read `missing.txt`",
            ),
            (
                "  file: ../outer.txt\n",
                "spec.file",
                "outside the spec directory",
            ),
            ("  file: big\n", "spec.file", "at most 512000 bytes"),
            ("  data: x\n  file: big\n", "spec", "exactly one of"),
            (
                "  dataBase64: \"hunter2!\"\n",
                "spec.dataBase64",
                "not valid base64",
            ),
        ];
        for (body, field, message) in cases {
            let spec = specs.join("s.yaml");
            std::fs::write(&spec, data_doc("SwarmSecret", "s", body)).unwrap();
            let FileLoad::Failed(e) = load_file(&spec) else {
                panic!("{body} fails")
            };
            assert_eq!(e.len(), 1, "{e:#?}");
            assert_eq!(e[0].field, field, "{body}");
            assert!(e[0].message.contains(message), "{body}: {}", e[0].message);
            assert!(e[0].line.is_some(), "{body}: located");
            assert!(!e[0].to_string().contains("hunter2"), "{}", e[0]);
        }
        std::os::unix::fs::symlink(&outer, specs.join("link")).unwrap();
        let spec = specs.join("s.yaml");
        std::fs::write(&spec, data_doc("SwarmSecret", "s", "  file: link\n")).unwrap();
        let e = load_file(&spec);
        assert!(
            e.errors()[0].message.contains("outside the spec directory"),
            "{e:?}"
        );
    }

    #[test]
    fn a_symlink_loop_is_a_located_error_not_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b.yaml", dir.path().join("a.yaml")).unwrap();
        std::os::unix::fs::symlink("a.yaml", dir.path().join("b.yaml")).unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        let errors = loaded.errors();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(errors[0].file, dir.path().join("a.yaml"));
        assert_eq!(
            errors[0].message,
            "is a symlink loop (a.yaml -> b.yaml -> a.yaml): point it at a regular file or \
             remove it; what the file declared before is kept, not removed, until then"
        );
        assert_eq!(errors[1].file, dir.path().join("b.yaml"));
        assert!(errors[1].message.contains("(b.yaml -> a.yaml -> b.yaml)"));
    }

    #[test]
    fn a_self_loop_and_a_link_into_a_loop_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("self.yaml", dir.path().join("self.yaml")).unwrap();
        std::os::unix::fs::symlink("self.yaml", dir.path().join("via.yaml")).unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        let messages: Vec<String> = loaded.errors().into_iter().map(|e| e.message).collect();
        assert_eq!(messages.len(), 2);
        assert!(
            messages[0].contains("(self.yaml -> self.yaml)"),
            "{messages:?}"
        );
        assert!(
            messages[1].contains("(via.yaml -> self.yaml -> self.yaml)"),
            "{messages:?}"
        );
    }

    #[test]
    fn a_symlink_to_nothing_is_an_error_and_a_good_symlink_loads() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("real.yaml"), HEAD).unwrap();
        std::os::unix::fs::symlink("target/real.yaml", dir.path().join("good.yaml")).unwrap();
        std::os::unix::fs::symlink("target/gone.yaml", dir.path().join("dangling.yaml")).unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        assert_eq!(loaded.objects().len(), 1);
        let errors = loaded.errors();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].file, dir.path().join("dangling.yaml"));
        assert!(
            errors[0].message.starts_with(
                "is a symlink to a file that does not exist (dangling.yaml -> target/gone.yaml)"
            ),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_cached_reload_sees_edits_of_the_files_specs_read() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("app.env"), "A=1\n").unwrap();
        std::fs::create_dir(d.join("files")).unwrap();
        std::fs::write(d.join("files/c.txt"), "one").unwrap();
        std::fs::write(
            d.join("s.yaml"),
            format!(
                "{HEAD}  envFile: [app.env]\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata: {{name: c}}\nspec: {{file: ./files/c.txt}}\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata: {{name: s}}\nspec: {{file: ./files/missing}}\n"
            ),
        )
        .unwrap();
        let mut cache = LoadCache::default();
        let loaded = load_dir_cached(d, &mut cache, &AgeIdentities::none()).unwrap();
        assert!(
            loaded.errors()[0]
                .message
                .contains("cannot read `./files/missing`")
        );
        // The missing file appears; the spec file is untouched.
        std::fs::write(d.join("files/missing"), "s").unwrap();
        let loaded = load_dir_cached(d, &mut cache, &AgeIdentities::none()).unwrap();
        assert!(loaded.errors().is_empty(), "{:?}", loaded.errors());
        std::fs::write(d.join("files/c.txt"), "two").unwrap();
        std::fs::write(d.join("app.env"), "A=2\n").unwrap();
        let objects = load_dir_cached(d, &mut cache, &AgeIdentities::none())
            .unwrap()
            .objects();
        let Object::Config(c) = &objects[1].value else {
            panic!("a config")
        };
        assert_eq!(c.spec.content.0, b"two");
        assert_eq!(service(&objects[0]).env["A"], "2");
    }
}
