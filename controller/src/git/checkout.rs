//! One commit's tree (under `--git-path`) written whole into `trees/<sha>`, then made current
//! by renaming a symlink: the spec loader never sees a half-updated checkout, and nothing from
//! the repository lands outside the new directory.
//!
//! Only directories and regular files are checked out. A symlink, a submodule, a name that is
//! not one plain path component (`..`, `a/b`, `.git`, Windows device names), a file over
//! [`Limits::file_bytes`] or a tree over the other limits refuses the whole commit, naming the
//! entry: the last good commit stays applied. Sizes are read from the object headers, so an
//! oversized blob is never inflated.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use gix::bstr::ByteSlice as _;
use gix::objs::tree::EntryKind;

use super::error::GitError;
use super::fetch::{Revision, create_private_dir, describe};

/// The name of the symlink to the current tree inside the cache directory.
pub const CURRENT: &str = "current";
/// The directory of the checked-out trees inside the cache directory.
pub const TREES: &str = "trees";

/// Bounds on what one commit may check out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One file (specs and the files they name are far smaller: a config or secret is at most
    /// 500 KiB).
    pub file_bytes: u64,
    /// All files together.
    pub total_bytes: u64,
    /// Files and directories.
    pub entries: usize,
    /// Directory depth below `--git-path`.
    pub depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            file_bytes: 4 * 1024 * 1024,
            total_bytes: 64 * 1024 * 1024,
            entries: 10_000,
            depth: 16,
        }
    }
}

/// `--git-path`: a directory of the repository, as plain components (empty: the root).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepoPath(Vec<String>);

impl RepoPath {
    /// Parses `--git-path`: relative, `/`-separated, no `.`/`..`/empty components.
    pub fn parse(path: &str) -> Result<RepoPath, GitError> {
        let invalid = |reason: &str| GitError::InvalidPath {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if path.starts_with('/') {
            return Err(invalid("must be relative to the repository's root"));
        }
        let mut parts = Vec::new();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                return Err(invalid("must stay inside the repository (no `..`)"));
            }
            parts.push(part.to_owned());
        }
        Ok(RepoPath(parts))
    }

    fn display(&self, below: &str) -> String {
        let mut shown = self.0.join("/");
        if !below.is_empty() {
            if !shown.is_empty() {
                shown.push('/');
            }
            shown.push_str(below);
        }
        if shown.is_empty() {
            "/".to_owned()
        } else {
            shown
        }
    }
}

impl std::fmt::Display for RepoPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display(""))
    }
}

/// One commit, checked out whole into its own directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The commit.
    pub revision: Revision,
    /// `<cache>/trees/<sha>`.
    pub dir: PathBuf,
}

impl Checkout {
    /// Makes this checkout the one `<cache>/current` points to (a symlink replaced by a rename,
    /// so a reader sees the old tree or the new one), then removes every other tree.
    pub fn activate(&self, cache: &Path) -> Result<(), GitError> {
        let error = |path: &Path, e: std::io::Error| GitError::Checkout {
            commit: self.revision.to_string(),
            path: path.to_owned(),
            message: e.to_string(),
        };
        let target = Path::new(TREES).join(self.revision.to_string());
        let next = cache.join(".current.next");
        match std::fs::remove_file(&next) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(&next, e)),
        }
        std::os::unix::fs::symlink(&target, &next).map_err(|e| error(&next, e))?;
        let current = cache.join(CURRENT);
        std::fs::rename(&next, &current).map_err(|e| error(&current, e))?;
        remove_trees_but(cache, Some(&self.revision));
        Ok(())
    }
}

/// The commit `<cache>/current` points to (from an earlier run), if any.
pub fn current(cache: &Path) -> Option<Revision> {
    let target = std::fs::read_link(cache.join(CURRENT)).ok()?;
    Revision::parse(target.file_name()?.to_str()?)
}

/// The directory the operator reads: `<cache>/current`.
pub fn current_dir(cache: &Path) -> PathBuf {
    cache.join(CURRENT)
}

/// Removes every tree of `<cache>/trees` but `keep`'s (and unfinished checkouts). Failures are
/// logged: a tree left behind costs space, not correctness.
fn remove_trees_but(cache: &Path, keep: Option<&Revision>) {
    let keep = keep.map(ToString::to_string);
    let Ok(entries) = std::fs::read_dir(cache.join(TREES)) else {
        return;
    };
    for entry in entries.flatten() {
        if Some(entry.file_name().to_string_lossy().as_ref()) == keep.as_deref() {
            continue;
        }
        if let Err(error) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(path = %entry.path().display(), %error, "removing an old checkout");
        }
    }
}

/// Checks out `revision`'s tree under `path` into `<cache>/trees/<sha>` (kept if it is there
/// already: a finished checkout is only ever renamed into place). Blocking.
pub fn check_out(
    repo: &gix::Repository,
    revision: Revision,
    path: &RepoPath,
    cache: &Path,
    limits: Limits,
) -> Result<Checkout, GitError> {
    let trees = cache.join(TREES);
    let dir = trees.join(revision.to_string());
    if dir.is_dir() {
        return Ok(Checkout { revision, dir });
    }
    let commit_id = revision.to_string();
    let io_error = |path: &Path, e: std::io::Error| GitError::Checkout {
        commit: commit_id.clone(),
        path: path.to_owned(),
        message: e.to_string(),
    };
    let object_error = |e: &dyn std::error::Error| GitError::Object {
        commit: commit_id.clone(),
        message: describe(e),
    };
    let refused = |below: &str, reason: String| GitError::Refused {
        commit: commit_id.clone(),
        path: path.display(below),
        reason,
    };

    let commit = repo
        .find_commit(revision.id())
        .map_err(|e| object_error(&e))?;
    let mut tree = commit.tree().map_err(|e| object_error(&e))?;
    if !path.0.is_empty() {
        let entry = tree
            .peel_to_entry_by_path(path.0.join("/"))
            .map_err(|e| object_error(&e))?
            .ok_or_else(|| refused("", "not in this commit".to_owned()))?;
        if !entry.mode().is_tree() {
            return Err(refused("", "not a directory in this commit".to_owned()));
        }
        tree = repo
            .find_tree(entry.object_id())
            .map_err(|e| object_error(&e))?;
    }

    create_private_dir(&trees).map_err(|e| io_error(&trees, e))?;
    // Written under a temporary name, renamed when complete; dropped (removed) on any error.
    let scratch = tempfile::Builder::new()
        .prefix(".checkout-")
        .tempdir_in(&trees)
        .map_err(|e| io_error(&trees, e))?;
    let mut budget = Budget {
        limits,
        entries: 0,
        bytes: 0,
    };
    let mut pending = vec![(tree.id, scratch.path().to_owned(), String::new(), 0usize)];
    while let Some((tree_id, target, below, depth)) = pending.pop() {
        let tree = repo.find_tree(tree_id).map_err(|e| object_error(&e))?;
        for entry in tree.iter() {
            let entry = entry.map_err(|e| object_error(&e))?;
            let name = entry.filename();
            let shown = if below.is_empty() {
                name.to_str_lossy().into_owned()
            } else {
                format!("{below}/{}", name.to_str_lossy())
            };
            let kind = entry.mode().kind();
            let mode =
                (kind == EntryKind::Link).then_some(gix::validate::path::component::Mode::Symlink);
            gix::validate::path::component(
                name,
                mode,
                gix::validate::path::component::Options {
                    protect_windows: true,
                    protect_hfs: true,
                    protect_ntfs: true,
                },
            )
            .map_err(|e| refused(&shown, format!("not a safe file name: {e}")))?;
            // Validated as one component of valid UTF-8 or refused: it can not leave `target`.
            let name = name
                .to_str()
                .map_err(|_| refused(&shown, "file names must be UTF-8".to_owned()))?;
            budget.entry().map_err(|reason| refused(&shown, reason))?;
            let file = target.join(name);
            match kind {
                EntryKind::Tree => {
                    if depth + 1 > limits.depth {
                        return Err(refused(
                            &shown,
                            format!("nested deeper than {} directories", limits.depth),
                        ));
                    }
                    std::fs::create_dir(&file).map_err(|e| io_error(&file, e))?;
                    pending.push((entry.object_id(), file, shown, depth + 1));
                }
                EntryKind::Blob | EntryKind::BlobExecutable => {
                    let size = repo
                        .find_header(entry.object_id())
                        .map_err(|e| object_error(&e))?
                        .size();
                    budget
                        .bytes(size)
                        .map_err(|reason| refused(&shown, reason))?;
                    let blob = repo
                        .find_blob(entry.object_id())
                        .map_err(|e| object_error(&e))?;
                    write_new(&file, &blob.data).map_err(|e| io_error(&file, e))?;
                }
                EntryKind::Link => {
                    return Err(refused(
                        &shown,
                        "a symlink: only files and directories are checked out".to_owned(),
                    ));
                }
                EntryKind::Commit => {
                    return Err(refused(
                        &shown,
                        "a submodule: only files and directories are checked out".to_owned(),
                    ));
                }
            }
        }
    }
    let scratch = scratch.keep();
    std::fs::rename(&scratch, &dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&scratch);
        io_error(&dir, e)
    })?;
    Ok(Checkout { revision, dir })
}

/// What a checkout has used of its [`Limits`].
struct Budget {
    limits: Limits,
    entries: usize,
    bytes: u64,
}

impl Budget {
    fn entry(&mut self) -> Result<(), String> {
        self.entries += 1;
        if self.entries > self.limits.entries {
            return Err(format!(
                "more than {} files and directories",
                self.limits.entries
            ));
        }
        Ok(())
    }

    fn bytes(&mut self, size: u64) -> Result<(), String> {
        if size > self.limits.file_bytes {
            return Err(format!(
                "{size} bytes, over the {} bytes a checked-out file may have",
                self.limits.file_bytes
            ));
        }
        self.bytes += size;
        if self.bytes > self.limits.total_bytes {
            return Err(format!(
                "the tree is over the {} bytes a checkout may have",
                self.limits.total_bytes
            ));
        }
        Ok(())
    }
}

/// Writes a new file (never through an existing one), mode 0600.
fn write_new(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Runs the git CLI in `dir` (no user or system configuration), feeding it `input`.
    pub(crate) fn git(dir: &Path, args: &[&str], input: &str) -> String {
        use std::io::Write as _;
        let mut child = Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "test")
            .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
            .env("GIT_COMMITTER_NAME", "test")
            .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the git CLI");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// A bare repository written object by object with the git CLI, so that trees git itself
    /// would never check out (`..`, `.git`) can be made.
    pub(crate) struct Objects {
        pub dir: tempfile::TempDir,
    }

    impl Objects {
        pub fn new() -> Objects {
            let dir = tempfile::tempdir().unwrap();
            git(dir.path(), &["init", "-q", "--bare", "."], "");
            Objects { dir }
        }

        pub fn blob(&self, content: &str) -> String {
            git(self.dir.path(), &["hash-object", "-w", "--stdin"], content)
        }

        /// A tree of `(mode, kind, id, name)` entries.
        pub fn tree(&self, entries: &[(&str, &str, &str, &str)]) -> String {
            let listing: String = entries
                .iter()
                .map(|(mode, kind, id, name)| format!("{mode} {kind} {id}\t{name}\n"))
                .collect();
            git(self.dir.path(), &["mktree", "--missing"], &listing)
        }

        pub fn commit(&self, tree: &str) -> Revision {
            let id = git(self.dir.path(), &["commit-tree", tree, "-m", "test"], "");
            Revision::parse(&id).unwrap()
        }

        /// A commit whose tree holds `deploy/<name>` for each file.
        pub fn commit_files(&self, files: &[(&str, &str)]) -> Revision {
            let entries: Vec<(String, String)> = files
                .iter()
                .map(|(name, content)| (self.blob(content), (*name).to_owned()))
                .collect();
            let deploy = self.tree(
                &entries
                    .iter()
                    .map(|(id, name)| ("100644", "blob", id.as_str(), name.as_str()))
                    .collect::<Vec<_>>(),
            );
            self.commit(&self.tree(&[("040000", "tree", &deploy, "deploy")]))
        }

        pub fn repo(&self) -> gix::Repository {
            gix::open_opts(self.dir.path(), gix::open::Options::isolated()).unwrap()
        }
    }

    fn deploy() -> RepoPath {
        RepoPath::parse("deploy").unwrap()
    }

    #[test]
    fn a_commit_is_checked_out_whole_and_made_current() {
        let objects = Objects::new();
        let repo = objects.repo();
        let cache = tempfile::tempdir().unwrap();
        let readme = objects.blob("not a spec");
        let spec = objects.blob("kind: SwarmService\n");
        let env = objects.blob("A=1\n");
        let sub = objects.tree(&[("100644", "blob", &env, "app.env")]);
        let deploy_tree = objects.tree(&[
            ("100644", "blob", &spec, "web.yaml"),
            ("040000", "tree", &sub, "files"),
        ]);
        let first = objects.commit(&objects.tree(&[
            ("100644", "blob", &readme, "README"),
            ("040000", "tree", &deploy_tree, "deploy"),
        ]));
        let checkout = check_out(&repo, first, &deploy(), cache.path(), Limits::default()).unwrap();
        assert_eq!(
            checkout.dir,
            cache.path().join("trees").join(first.to_string())
        );
        assert_eq!(
            std::fs::read_to_string(checkout.dir.join("web.yaml")).unwrap(),
            "kind: SwarmService\n"
        );
        assert_eq!(
            std::fs::read_to_string(checkout.dir.join("files/app.env")).unwrap(),
            "A=1\n"
        );
        assert!(
            !checkout.dir.join("README").exists(),
            "only --git-path is checked out"
        );
        checkout.activate(cache.path()).unwrap();
        assert_eq!(current(cache.path()), Some(first));
        assert!(current_dir(cache.path()).join("web.yaml").is_file());

        // The next commit: a new directory, the symlink switched, the old tree removed.
        let second = objects.commit_files(&[("web.yaml", "kind: SwarmNetwork\n")]);
        let next = check_out(&repo, second, &deploy(), cache.path(), Limits::default()).unwrap();
        assert!(checkout.dir.is_dir(), "the old tree stays until the switch");
        next.activate(cache.path()).unwrap();
        assert_eq!(current(cache.path()), Some(second));
        assert!(
            !checkout.dir.exists(),
            "the old tree is removed after the switch"
        );
        assert_eq!(
            std::fs::read_to_string(current_dir(cache.path()).join("web.yaml")).unwrap(),
            "kind: SwarmNetwork\n"
        );
        let left: Vec<_> = std::fs::read_dir(cache.path().join(TREES))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(second.to_string())]);
    }

    #[test]
    fn hostile_entries_refuse_the_whole_commit_and_write_nothing() {
        let objects = Objects::new();
        let repo = objects.repo();
        let blob = objects.blob("x");
        let target = objects.blob("/etc/passwd");
        let gitdir = objects.tree(&[("100644", "blob", &blob, "config")]);
        let some_commit = objects.commit_files(&[("a.yaml", "a")]);
        let cases: [(&str, &str, &str, &str, &str); 6] = [
            ("100644", "blob", &blob, "..", "not a safe file name"),
            ("040000", "tree", &gitdir, ".git", "not a safe file name"),
            ("100644", "blob", &blob, "CON", "not a safe file name"),
            ("100644", "blob", &blob, "a\\b", "not a safe file name"),
            ("120000", "blob", &target, "passwd", "a symlink"),
            (
                "160000",
                "commit",
                &some_commit.to_string(),
                "vendored",
                "a submodule",
            ),
        ];
        for (mode, kind, id, name, reason) in cases {
            let spec = objects.blob("kind: SwarmService\n");
            let deploy_tree = objects.tree(&[
                ("100644", "blob", &spec, "web.yaml"),
                (mode, kind, id, name),
            ]);
            let commit =
                objects.commit(&objects.tree(&[("040000", "tree", &deploy_tree, "deploy")]));
            let cache = tempfile::tempdir().unwrap();
            let error = check_out(&repo, commit, &deploy(), cache.path(), Limits::default())
                .expect_err(name);
            let GitError::Refused {
                commit: refused,
                path,
                reason: why,
            } = &error
            else {
                panic!("{name}: {error}");
            };
            assert_eq!(refused, &commit.to_string());
            assert_eq!(path, &format!("deploy/{name}"), "{error}");
            assert!(why.contains(reason), "{name}: {error}");
            // Nothing is left: no tree, no half-written scratch directory.
            let left: Vec<_> = std::fs::read_dir(cache.path().join(TREES))
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert!(left.is_empty(), "{name}: {left:?}");
            assert!(current(cache.path()).is_none());
        }
    }

    #[test]
    fn sizes_and_counts_are_bounded() {
        let objects = Objects::new();
        let repo = objects.repo();
        let big = objects.commit_files(&[("a.yaml", "small"), ("big.bin", &"x".repeat(100))]);
        let limits = Limits {
            file_bytes: 50,
            ..Limits::default()
        };
        let cache = tempfile::tempdir().unwrap();
        let error = check_out(&repo, big, &deploy(), cache.path(), limits).unwrap_err();
        assert!(
            matches!(&error, GitError::Refused { path, reason, .. }
                if path == "deploy/big.bin" && reason.contains("100 bytes")),
            "{error}"
        );
        let many = objects.commit_files(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let limits = Limits {
            entries: 2,
            ..Limits::default()
        };
        let error = check_out(&repo, many, &deploy(), cache.path(), limits).unwrap_err();
        assert!(error.to_string().contains("more than 2 files"), "{error}");
        let limits = Limits {
            total_bytes: 2,
            ..Limits::default()
        };
        let error = check_out(&repo, many, &deploy(), cache.path(), limits).unwrap_err();
        assert!(error.to_string().contains("over the 2 bytes"), "{error}");
    }

    #[test]
    fn the_spec_path_must_be_a_directory_of_the_commit() {
        let objects = Objects::new();
        let repo = objects.repo();
        let commit = objects.commit_files(&[("a.yaml", "a")]);
        let cache = tempfile::tempdir().unwrap();
        let missing = RepoPath::parse("specs").unwrap();
        let error =
            check_out(&repo, commit, &missing, cache.path(), Limits::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("commit {commit}: specs: not in this commit")
        );
        let file = RepoPath::parse("deploy/a.yaml").unwrap();
        let error = check_out(&repo, commit, &file, cache.path(), Limits::default()).unwrap_err();
        assert!(
            error
                .to_string()
                .ends_with("deploy/a.yaml: not a directory in this commit")
        );
        // The root is a directory.
        let root = check_out(
            &repo,
            commit,
            &RepoPath::default(),
            cache.path(),
            Limits::default(),
        )
        .unwrap();
        assert!(root.dir.join("deploy/a.yaml").is_file());
    }

    #[test]
    fn the_spec_path_stays_inside_the_repository() {
        assert!(RepoPath::parse("../etc").is_err());
        assert!(RepoPath::parse("a/../../b").is_err());
        assert!(RepoPath::parse("/etc").is_err());
        assert_eq!(
            RepoPath::parse("./deploy//swarm/").unwrap().to_string(),
            "deploy/swarm"
        );
        assert_eq!(RepoPath::parse("").unwrap().to_string(), "/");
    }
}
