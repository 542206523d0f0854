//! `import-compose`: compose stack files turned into spec files, one per object, named and
//! labelled as `docker stack deploy` names and labels them, with a report of what was left out.
//!
//! Why no compose model crate: `docker-compose-types` and `compose_spec` both deserialize with
//! the deprecated `serde_yaml` into types without positions (so the report could not say
//! file:line), neither interpolates, and both model `docker compose` rather than the subset and
//! defaults of `docker stack deploy`; interpolation and multi-file merging happen on the untyped
//! tree before typing anyway. The tree is the crate's one spanned-YAML tree ([`crate::yaml`],
//! the spec loader's too), and the conversion follows the docker CLI's `cli/compose/convert`.
//! Sections of fixed shape are serde-derived over that tree (`node_de`, located errors
//! without values) and `serde_ignored` reports the keys they leave out; keys whose short and
//! long forms mix in one list (ports, volumes, depends_on, env_file) or that need the tree's
//! origins per key (a service's and `deploy`'s own keys) are read by hand in [`model`].

pub mod cronjob;
mod decls;
mod fields;
pub mod interpolate;
pub mod live;
pub mod model;
pub mod names;
mod node_de;
pub mod output;
mod sections;
pub mod source;
pub mod stack;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use model::{Dropped, Gated, Invalid};
pub use stack::{IMAGE_LABEL, NAMESPACE_LABEL};

use crate::spec::{self, EngineApiVersion, SpecError};

/// Base of the schema URLs written in each file's modeline.
const SCHEMA_BASE: &str = "https://swarm-operator.io/schemas/v1alpha1";

/// Why an import failed. Nothing is written unless the import succeeds (or only keys were
/// dropped without `--strict`): every name, path and source file is checked first. No message
/// holds a value from the environment or a file's content.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The stack name is not one docker accepts.
    #[error(
        "invalid stack name `{0}`: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
    )]
    StackName(String),
    /// A compose file (or the `.env` beside it) could not be read.
    #[error("{}: {problem}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        problem: source::SourceProblem,
    },
    /// The `.env` beside the compose file is not an env file.
    #[error("{}:{line}: {ENV_SYNTAX}", file.display())]
    DotEnv {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// A compose file is not valid YAML.
    #[error(transparent)]
    Parse(#[from] crate::yaml::ParseError),
    /// `${VAR?error}` or a malformed `$`.
    #[error(transparent)]
    Interpolation(#[from] interpolate::InterpolationError),
    /// Values that docker would refuse too.
    #[error("{} invalid value(s):\n{}", .0.len(), lines(.0))]
    Invalid(Vec<Invalid>),
    /// `--strict` and keys would be dropped.
    #[error("--strict: {} key(s) would be dropped:\n{}", .0.len(), lines(.0))]
    Strict(Vec<Dropped>),
    /// Writing the output failed, or `--out` is not a plain directory.
    #[error(transparent)]
    Output(#[from] output::OutputError),
    /// Reading the output directory back failed.
    #[error("cannot read back {}: {source}", path.display())]
    ReadBack {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The written specs do not load: a bug of the importer, reported rather than hidden.
    #[error("the written specs do not validate (please report this):\n{}", lines(.0))]
    SelfCheck(Vec<SpecError>),
}

/// What an env file line must be. The line itself is never shown: it may hold a password.
const ENV_SYNTAX: &str = "not `NAME=value` or a `#` comment (a bare `NAME` would read the \
     operator's own environment; the line is not shown: it may hold a value)";

/// The variables of env file `text`, or the 1-based line that is not one (parsed as the spec
/// loader will, so that an imported directory loads; the parser's own message is not kept, as
/// it may quote the line).
fn env_file_vars(text: &str) -> Result<Vec<(String, String)>, usize> {
    spec::files::parse_env_file("", text).map_err(|e| match e {
        spec::files::FileProblem::EnvSyntax { line, .. } => line,
        _ => 0,
    })
}

fn lines<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| format!("  {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are the file's own text: control characters in them must not reach a terminal.
        write!(
            f,
            "{}: {}: {}",
            self.origin,
            names::shown(&self.path),
            self.reason
        )
    }
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Spec files and copied files written, relative to the output directory.
    pub written: Vec<String>,
    /// Spec files of an earlier import of the same stack that this one no longer writes.
    pub removed: Vec<String>,
    /// Keys left out, located.
    pub dropped: Vec<Dropped>,
    /// Interpolation warnings (unset variables).
    pub warnings: Vec<String>,
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// Compose files, merged in order (like repeated `-c`).
    pub files: Vec<PathBuf>,
    /// The stack name (`docker stack deploy … NAME`).
    pub stack: String,
    /// The output directory.
    pub out: PathBuf,
    /// Fail instead of dropping keys.
    pub strict: bool,
    /// The Engine API version the specs are for: keys it does not know fail the import.
    /// `None` checks nothing (the operator checks its engine's version when it loads the
    /// specs).
    pub api_version: Option<EngineApiVersion>,
}

/// The keys of `gated` that `engine` does not know, as located errors.
pub fn refused_by(gated: &[model::Gated], engine: EngineApiVersion) -> Vec<Invalid> {
    gated
        .iter()
        .filter(|g| g.feature.since() > engine)
        .map(|g| Invalid {
            origin: g.origin.clone(),
            path: g.path.clone(),
            message: g.feature.refusal(engine),
        })
        .collect()
}

/// Looks a variable up by name.
pub type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// Variables for interpolation: the environment first, then a `.env` file beside the first
/// compose file (docker compose's convention; `docker stack deploy` itself reads only the
/// environment, so with a `.env` present run it as `env $(cat .env) docker stack deploy`).
pub fn environment(
    files: &[PathBuf],
    process: impl Fn(&str) -> Option<String> + 'static,
) -> Result<Lookup, ImportError> {
    let dir = files
        .first()
        .map(|f| base_dir(f))
        .unwrap_or_else(|| Path::new(".").to_owned());
    let path = dir.join(".env");
    // Read when present as anything but a directory (a Python virtualenv is often called
    // `.env`): a symlink out or a FIFO is refused, not skipped.
    let present = std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir());
    let defaults: Vec<(String, String)> = if present {
        let bytes = source::read_inside(&dir, ".env", source::MAX_ENV_FILE_BYTES, "an env file")
            .map_err(|problem| ImportError::Read {
                file: path.clone(),
                problem,
            })?;
        let text = String::from_utf8(bytes).map_err(|_| ImportError::Read {
            file: path.clone(),
            problem: source::SourceProblem::Unreadable("not UTF-8 text".to_owned()),
        })?;
        // A line without `=` in `.env` is an error too: it is more often a value pasted on
        // its own line than a name meant to set nothing.
        env_file_vars(&text).map_err(|line| ImportError::DotEnv {
            file: path.clone(),
            line,
        })?
    } else {
        Vec::new()
    };
    Ok(Box::new(move |name: &str| {
        process(name).or_else(|| {
            defaults
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }))
}

/// Reads, interpolates and merges the files, and converts them into the stack's objects.
pub fn convert(
    files: &[PathBuf],
    stack: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(stack::Stack, Vec<String>), ImportError> {
    if names::problem(stack).is_some() {
        return Err(ImportError::StackName(names::shown(stack)));
    }
    let mut merged = model::Compose::default();
    let mut warnings = Vec::new();
    let mut dropped = Vec::new();
    let mut invalid = Vec::new();
    let mut gated = Vec::new();
    for file in files {
        let read_error = |problem| ImportError::Read {
            file: file.clone(),
            problem,
        };
        // The file the user named: a symlink to it is fine, but it must be a bounded regular
        // file (`/dev/zero` or a FIFO would never end).
        let real = file
            .canonicalize()
            .map_err(|e| read_error(source::SourceProblem::Unreadable(e.kind().to_string())))?;
        let bytes = source::read_bounded(&real, source::MAX_COMPOSE_BYTES, "a compose file")
            .map_err(read_error)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read_error(source::SourceProblem::Unreadable(
                "not UTF-8 text".to_owned(),
            ))
        })?;
        let mut root = parse_file(file, &text)?;
        if let crate::yaml::Value::Map(entries) = &mut root.value {
            for entry in entries.iter_mut().filter(|e| !e.key.starts_with("x-")) {
                interpolate::interpolate(&mut entry.value, lookup, &mut warnings)?;
            }
        }
        let base_dir = base_dir(file);
        let mut reader = model::Reader {
            base_dir: &base_dir,
            lookup,
            dropped: Vec::new(),
            invalid: Vec::new(),
            gated: Vec::new(),
        };
        let compose = reader.read(&root);
        dropped.append(&mut reader.dropped);
        invalid.append(&mut reader.invalid);
        gated.append(&mut reader.gated);
        model::merge(&mut merged, compose);
    }
    invalid.extend(names::check(&merged, stack));
    let mut stack = stack::convert(&merged, stack, lookup);
    stack.dropped.splice(0..0, dropped);
    stack.invalid.splice(0..0, invalid);
    stack.gated = gated;
    Ok((stack, warnings))
}

/// The directory of compose file `file`, absolute: relative paths in it resolve there.
/// Parses one compose file's text into the spanned tree; repeated keys are refused (as
/// stack deploy refuses them), and an empty file is an empty mapping.
pub(crate) fn parse_file(
    file: &Path,
    text: &str,
) -> Result<crate::yaml::Node, crate::yaml::ParseError> {
    use crate::yaml::{DuplicateKeys, Node, Value};
    let root = crate::yaml::parse(file, text, DuplicateKeys::Refuse)?;
    Ok(match root.value {
        Value::Null => Node {
            value: Value::Map(Vec::new()),
            origin: root.origin,
        },
        _ => root,
    })
}

fn base_dir(file: &Path) -> PathBuf {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

/// Whether `path` (named `file`) is a spec file an import of `stack` wrote: named like one
/// (`service.<stack>_web.yaml`, …) and its objects labelled with the stack.
fn is_previous_import(path: &Path, file: &str, stack: &str) -> bool {
    let named = ["service.", "network.", "config.", "secret."]
        .iter()
        .any(|kind| {
            file.strip_prefix(kind)
                .and_then(|rest| rest.strip_prefix(stack))
                .is_some_and(|rest| rest.starts_with('_') && rest.ends_with(".yaml"))
        });
    named
        && spec::load_file(path).objects().is_some_and(|objects| {
            objects.iter().all(|o| {
                o.value
                    .metadata()
                    .labels
                    .get(NAMESPACE_LABEL)
                    .map(String::as_str)
                    == Some(stack)
            })
        })
}

fn modeline(kind: &str) -> String {
    format!(
        "# yaml-language-server: $schema={SCHEMA_BASE}/{}.schema.json\n",
        kind.to_ascii_lowercase()
    )
}

fn document<T: Serialize>(kind: &str, object: &T) -> String {
    let yaml = serde_saphyr::to_string(object).expect("spec objects serialize to YAML");
    format!("{}{yaml}", modeline(kind))
}

/// A file to write: its path under `--out`, content and mode.
struct Pending {
    to: String,
    bytes: Vec<u8>,
    mode: u32,
}

/// Reads every file the specs need and lays out every file to write, all in memory, and checks
/// each destination: nothing is written unless all of it is good.
fn plan_writes(stack: &stack::Stack) -> Result<Vec<Pending>, ImportError> {
    let mut pending = Vec::new();
    let mut invalid = Vec::new();
    for file in &stack.files {
        let (max, what) = match file.kind {
            stack::CopiedKind::Data => (source::MAX_DATA_BYTES, "a config or secret (swarm's)"),
            stack::CopiedKind::Env => (source::MAX_ENV_FILE_BYTES, "an env file"),
        };
        let problem = |message: String| Invalid {
            origin: file.origin.clone(),
            path: file.field.clone(),
            message,
        };
        let checked = source::read_bounded(&file.from, max, what)
            .map_err(|p| problem(p.to_string()))
            .and_then(|bytes| match file.kind {
                stack::CopiedKind::Data => Ok(bytes),
                stack::CopiedKind::Env => {
                    let text = std::str::from_utf8(&bytes)
                        .map_err(|_| problem("the env file is not UTF-8 text".to_owned()))?;
                    env_file_vars(text).map_err(|line| {
                        problem(format!("line {line} of the env file is {ENV_SYNTAX}"))
                    })?;
                    Ok(bytes)
                }
            });
        match checked {
            Ok(bytes) => pending.push(Pending {
                to: file.to.clone(),
                bytes,
                mode: if file.secret { 0o600 } else { 0o644 },
            }),
            Err(problem) => invalid.push(problem),
        }
    }
    let documents = stack
        .services
        .iter()
        .map(|s| ("service", &s.metadata.name, document("SwarmService", s)))
        .chain(
            stack
                .networks
                .iter()
                .map(|n| ("network", &n.metadata.name, document("SwarmNetwork", n))),
        )
        .chain(
            stack
                .configs
                .iter()
                .map(|c| ("config", &c.metadata.name, document("SwarmConfig", c))),
        )
        .chain(
            stack
                .secrets
                .iter()
                .map(|s| ("secret", &s.metadata.name, document("SwarmSecret", s))),
        );
    for (kind, name, text) in documents {
        pending.push(Pending {
            to: format!("{kind}.{name}.yaml"),
            bytes: text.into_bytes(),
            mode: 0o644,
        });
    }
    // Names were checked when read; this is the last line before the disk, for every path.
    let mut seen = BTreeSet::new();
    for p in &pending {
        let origin = stack
            .files
            .iter()
            .find(|f| f.to == p.to)
            .map(|f| (f.origin.clone(), f.field.clone()));
        let (origin, field) = origin.unwrap_or_else(|| {
            (
                crate::yaml::Origin {
                    file: Default::default(),
                    line: 0,
                    column: 0,
                },
                String::new(),
            )
        });
        if !p.to.split('/').all(output::plain_file_name) {
            invalid.push(Invalid {
                origin,
                path: field,
                message: "the file name is not a plain file name (empty, `.` or `..`)".to_owned(),
            });
        } else if !seen.insert(p.to.as_str()) {
            invalid.push(Invalid {
                origin,
                path: field,
                message: format!(
                    "another file is also written to {}: give the files different names",
                    names::shown(&p.to)
                ),
            });
        }
    }
    if invalid.is_empty() {
        Ok(pending)
    } else {
        Err(ImportError::Invalid(invalid))
    }
}

/// Imports `request.files` into `request.out`.
pub fn import(
    request: &ImportRequest,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ImportReport, ImportError> {
    let (mut stack, warnings) = convert(&request.files, &request.stack, lookup)?;
    if let Some(engine) = request.api_version {
        stack.invalid.extend(refused_by(&stack.gated, engine));
    }
    if !stack.invalid.is_empty() {
        return Err(ImportError::Invalid(stack.invalid));
    }
    if request.strict && !stack.dropped.is_empty() {
        return Err(ImportError::Strict(stack.dropped));
    }
    let pending = plan_writes(&stack)?;
    let out = output::OutDir::prepare(&request.out)?;
    let mut written = Vec::new();
    for p in &pending {
        out.write(&p.to, &p.bytes, p.mode)?;
        written.push(p.to.clone());
    }
    let documents: Vec<&str> = pending
        .iter()
        .filter(|p| !p.to.contains('/'))
        .map(|p| p.to.as_str())
        .collect();
    // A re-import replaces the previous one: spec files of this stack that it no longer
    // writes (a service dropped from the compose file) would otherwise keep running.
    let mut removed = Vec::new();
    let ours_now: BTreeSet<&str> = documents.iter().copied().collect();
    let read_back = |path: &Path| {
        let path = path.to_owned();
        move |source| ImportError::ReadBack { path, source }
    };
    for entry in std::fs::read_dir(out.path()).map_err(read_back(out.path()))? {
        let Ok(entry) = entry else { continue };
        // Only regular files: a symlink is neither read nor removed.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_previous_import(&entry.path(), &name, &request.stack)
            && !ours_now.contains(name.as_str())
        {
            std::fs::remove_file(entry.path()).map_err(read_back(&entry.path()))?;
            removed.push(name);
        }
    }
    // The written directory must load as it is: external networks count as existing.
    let externals: BTreeSet<String> = stack
        .networks
        .iter()
        .filter(|n| n.spec.external)
        .map(|n| n.metadata.name.clone())
        .collect();
    let loaded = spec::load_dir(out.path()).map_err(|e| ImportError::ReadBack {
        path: out.path().to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut errors = loaded.errors();
    let objects: Vec<_> = loaded
        .objects()
        .into_iter()
        .filter(|o| {
            o.file
                .file_name()
                .is_some_and(|n| ours_now.contains(n.to_string_lossy().as_ref()))
        })
        .collect();
    errors.retain(|e| {
        e.file
            .file_name()
            .is_some_and(|n| ours_now.contains(n.to_string_lossy().as_ref()))
    });
    errors.extend(spec::validate(&objects, &externals));
    if !errors.is_empty() {
        return Err(ImportError::SelfCheck(errors));
    }
    Ok(ImportReport {
        written,
        removed,
        dropped: stack.dropped,
        warnings,
    })
}

#[cfg(test)]
mod tests;
