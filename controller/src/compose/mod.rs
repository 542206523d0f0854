//! `import-compose`: compose stack files turned into spec files, one per object, named and
//! labelled as `docker stack deploy` names and labels them, with a report of what was left out.
//!
//! Why no compose model crate: `docker-compose-types` and `compose_spec` both deserialize with
//! the deprecated `serde_yaml` into types without positions (so the report could not say
//! file:line), neither interpolates, and both model `docker compose` rather than the subset and
//! defaults of `docker stack deploy`; interpolation and multi-file merging happen on the untyped
//! tree before typing anyway. The tree here comes from `serde-saphyr` (already the spec
//! loader) with spans, and the conversion follows the docker CLI's `cli/compose/convert`.

pub mod interpolate;
pub mod model;
pub mod stack;
pub mod tree;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use model::{Dropped, Invalid};
pub use stack::{IMAGE_LABEL, NAMESPACE_LABEL};

use crate::spec::{self, SpecError};

/// Base of the schema URLs written in each file's modeline.
const SCHEMA_BASE: &str = "https://swarm-operator.io/schemas/v1alpha1";

/// Why an import failed. Nothing is written unless the import succeeds (or only keys were
/// dropped without `--strict`).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The stack name is not one docker accepts.
    #[error(
        "invalid stack name `{0}`: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
    )]
    StackName(String),
    /// A compose file could not be read.
    #[error("cannot read {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A compose file is not valid YAML.
    #[error(transparent)]
    Parse(#[from] tree::ParseError),
    /// `${VAR?error}` or a malformed `$`.
    #[error(transparent)]
    Interpolation(#[from] interpolate::InterpolationError),
    /// Values that docker would refuse too.
    #[error("{} invalid value(s):\n{}", .0.len(), lines(.0))]
    Invalid(Vec<Invalid>),
    /// `--strict` and keys would be dropped.
    #[error("--strict: {} key(s) would be dropped:\n{}", .0.len(), lines(.0))]
    Strict(Vec<Dropped>),
    /// Writing the output failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The written specs do not load: a bug of the importer, reported rather than hidden.
    #[error("the written specs do not validate (please report this):\n{}", lines(.0))]
    SelfCheck(Vec<SpecError>),
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
        write!(f, "{}: {}: {}", self.origin, self.path, self.reason)
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
    let dot_env = files
        .first()
        .and_then(|f| f.parent())
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .map(|d| d.join(".env"))
        .filter(|p| p.is_file());
    let defaults: Vec<(String, String)> = match dot_env {
        Some(path) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ImportError::Read {
                file: path.clone(),
                source,
            })?;
            spec::files::parse_env_file(
                &path.display().to_string(),
                &text,
                spec::files::BareName::Skipped,
            )
            .map_err(|e| ImportError::Read {
                file: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?
        }
        None => Vec::new(),
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
    if spec::validate::name_problem(stack).is_some() {
        return Err(ImportError::StackName(stack.to_owned()));
    }
    let mut merged = model::Compose::default();
    let mut warnings = Vec::new();
    let mut dropped = Vec::new();
    let mut invalid = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|source| ImportError::Read {
            file: file.clone(),
            source,
        })?;
        let mut root = tree::parse(file, &text)?;
        if let tree::Value::Map(entries) = &mut root.value {
            for entry in entries.iter_mut().filter(|e| !e.key.starts_with("x-")) {
                interpolate::interpolate(&mut entry.value, lookup, &mut warnings)?;
            }
        }
        let base_dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_owned());
        let mut reader = model::Reader {
            base_dir: &base_dir,
            lookup,
            dropped: Vec::new(),
            invalid: Vec::new(),
        };
        let compose = reader.read(&root);
        dropped.append(&mut reader.dropped);
        invalid.append(&mut reader.invalid);
        model::merge(&mut merged, compose);
    }
    let mut stack = stack::convert(&merged, stack, lookup);
    stack.dropped.splice(0..0, dropped);
    stack.invalid.splice(0..0, invalid);
    Ok((stack, warnings))
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

/// Imports `request.files` into `request.out`.
pub fn import(
    request: &ImportRequest,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ImportReport, ImportError> {
    let (stack, warnings) = convert(&request.files, &request.stack, lookup)?;
    if !stack.invalid.is_empty() {
        return Err(ImportError::Invalid(stack.invalid));
    }
    if request.strict && !stack.dropped.is_empty() {
        return Err(ImportError::Strict(stack.dropped));
    }
    let out = &request.out;
    let write = |relative: &str, bytes: &[u8], private: bool| -> Result<(), ImportError> {
        let path = out.join(relative);
        let err = |source| ImportError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::write(&path, bytes).map_err(err)?;
        if private {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        }
        Ok(())
    };
    let mut written = Vec::new();
    let mut documents: Vec<(String, String)> = Vec::new();
    for s in &stack.services {
        documents.push((
            format!("service.{}.yaml", s.metadata.name),
            document("SwarmService", s),
        ));
    }
    for n in &stack.networks {
        documents.push((
            format!("network.{}.yaml", n.metadata.name),
            document("SwarmNetwork", n),
        ));
    }
    for c in &stack.configs {
        documents.push((
            format!("config.{}.yaml", c.metadata.name),
            document("SwarmConfig", c),
        ));
    }
    for s in &stack.secrets {
        documents.push((
            format!("secret.{}.yaml", s.metadata.name),
            document("SwarmSecret", s),
        ));
    }
    for file in &stack.files {
        let bytes = std::fs::read(&file.from).map_err(|source| ImportError::Read {
            file: file.from.clone(),
            source,
        })?;
        write(&file.to, &bytes, file.secret)?;
        written.push(file.to.clone());
    }
    for (name, text) in &documents {
        write(name, text.as_bytes(), false)?;
        written.push(name.clone());
    }
    // A re-import replaces the previous one: spec files of this stack that it no longer
    // writes (a service dropped from the compose file) would otherwise keep running.
    let mut removed = Vec::new();
    let ours_now: BTreeSet<&str> = documents.iter().map(|(n, _)| n.as_str()).collect();
    for entry in std::fs::read_dir(out).map_err(|source| ImportError::Write {
        path: out.clone(),
        source,
    })? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_previous_import(&entry.path(), &name, &request.stack)
            && !ours_now.contains(name.as_str())
        {
            std::fs::remove_file(entry.path()).map_err(|source| ImportError::Write {
                path: entry.path(),
                source,
            })?;
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
    let loaded = spec::load_dir(out).map_err(|e| ImportError::Write {
        path: out.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut errors = loaded.errors();
    let ours: BTreeSet<&str> = documents.iter().map(|(n, _)| n.as_str()).collect();
    let objects: Vec<_> = loaded
        .objects()
        .into_iter()
        .filter(|o| {
            o.file
                .file_name()
                .is_some_and(|n| ours.contains(n.to_string_lossy().as_ref()))
        })
        .collect();
    errors.retain(|e| {
        e.file
            .file_name()
            .is_some_and(|n| ours.contains(n.to_string_lossy().as_ref()))
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
