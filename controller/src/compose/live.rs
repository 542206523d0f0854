//! A `SwarmStack`'s compose files read on every reload: the conversion of `import-compose`,
//! kept in memory, with the files the compose files name rebased onto the SwarmStack's
//! directory so that the spec loader reads (and decrypts) them as it does a spec's own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::model::Dropped;
use super::stack::CopiedKind;
use super::{ImportError, env_file_vars, source};
use crate::spec::files::{self, FileProblem};
use crate::spec::{SwarmConfig, SwarmNetwork, SwarmSecret, SwarmService};
use crate::yaml::Origin;

/// What a SwarmStack asks for, as written in it (paths relative to the SwarmStack's file).
#[derive(Clone, Copy)]
pub struct StackRequest<'a> {
    /// The SwarmStack's file: every path is relative to its directory and stays inside it.
    pub spec_file: &'a Path,
    /// The stack name (`metadata.name`).
    pub name: &'a str,
    /// `spec.composeFiles`, merged in order.
    pub compose_files: &'a [String],
    /// `spec.envFile`; `None`: `.env` beside the first compose file, when there is one.
    pub env_file: Option<&'a str>,
    /// `spec.variables`: win over the env file.
    pub variables: &'a BTreeMap<String, String>,
    /// The engine's negotiated API version: a key it does not know is an error at the key in
    /// the compose file. `None` (no engine asked) checks nothing.
    pub engine_api: Option<crate::spec::EngineApiVersion>,
}

/// A stack converted: spec objects whose `file:` and `envFile` paths are relative to the
/// SwarmStack's file, not read yet.
#[derive(Debug, Clone, Default)]
pub struct LiveStack {
    /// Services.
    pub services: Vec<SwarmService>,
    /// Networks (created and external).
    pub networks: Vec<SwarmNetwork>,
    /// Configs.
    pub configs: Vec<SwarmConfig>,
    /// Secrets.
    pub secrets: Vec<SwarmSecret>,
    /// Keys stack deploy would ignore, located in the compose files.
    pub dropped: Vec<Dropped>,
    /// Interpolation warnings (unset variables, by name).
    pub warnings: Vec<String>,
    /// Where each rebased path (as the specs now name it) was written in a compose file, and
    /// the field: problems reading it point there.
    pub sources: BTreeMap<String, (Origin, String)>,
}

/// Why a stack could not be read; each problem is located (a compose file's
/// file:line:column, or the SwarmStack's field).
#[derive(Debug, thiserror::Error)]
pub enum LiveStackError {
    /// A path the SwarmStack itself names (`composeFiles[i]`, `envFile`).
    #[error("{field}: {problem}")]
    Named {
        /// The SwarmStack's field.
        field: String,
        /// What is wrong.
        problem: FileProblem,
    },
    /// The env file is not `NAME=value` lines (the line is not shown: it may hold a value).
    #[error("envFile: line {line}: not `NAME=value` or a `#` comment")]
    EnvSyntax {
        /// 1-based line.
        line: usize,
    },
    /// The compose files: reading, parsing, interpolating or converting them.
    #[error(transparent)]
    Compose(#[from] ImportError),
}

/// Every file a SwarmStack reads, canonical, when it can be told: its compose files, its env
/// file, and (after a conversion) the files they name. None of them is a spec file.
pub fn named_files(request: &StackRequest<'_>) -> BTreeSet<PathBuf> {
    let mut named: BTreeSet<PathBuf> = request
        .compose_files
        .iter()
        .filter_map(|f| files::resolve_inside(request.spec_file, f).ok())
        .collect();
    if let Some(env) = env_file_path(request) {
        named.insert(env);
    }
    named
}

/// The env file, canonical, if the SwarmStack names one or `.env` is beside the first compose
/// file (as a file: a Python virtualenv is often called `.env`).
fn env_file_path(request: &StackRequest<'_>) -> Option<PathBuf> {
    match request.env_file {
        Some(written) => files::resolve_inside(request.spec_file, written).ok(),
        None => {
            let first =
                files::resolve_inside(request.spec_file, request.compose_files.first()?).ok()?;
            let beside = first.parent()?.join(".env");
            std::fs::symlink_metadata(&beside)
                .is_ok_and(|m| !m.is_dir())
                .then_some(beside)
        }
    }
}

/// The spec file's directory, canonical.
fn spec_dir(spec_file: &Path) -> Option<PathBuf> {
    spec_file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .canonicalize()
        .ok()
}

/// Reads the env file: `.env` beside the first compose file is read as a compose file's
/// source (inside that file's directory); a named `envFile` as a spec's file (inside the
/// SwarmStack's directory), decrypted when it ends in `.age`.
fn env_variables(
    request: &StackRequest<'_>,
    identities: &crate::spec::AgeIdentities,
) -> Result<Vec<(String, String)>, LiveStackError> {
    let bytes = match request.env_file {
        Some(written) => files::read_content(
            request.spec_file,
            written,
            source::MAX_ENV_FILE_BYTES as usize,
            identities,
        )
        .map_err(|problem| LiveStackError::Named {
            field: "spec.envFile".to_owned(),
            problem,
        })?,
        None => match env_file_path(request) {
            Some(path) => source::read_bounded(&path, source::MAX_ENV_FILE_BYTES, "an env file")
                .map_err(|problem| {
                    LiveStackError::Compose(ImportError::Read {
                        file: path,
                        problem,
                    })
                })?,
            None => return Ok(Vec::new()),
        },
    };
    let text = String::from_utf8(bytes).map_err(|_| LiveStackError::Named {
        field: "spec.envFile".to_owned(),
        problem: FileProblem::Unreadable {
            path: request.env_file.unwrap_or(".env").to_owned(),
            reason: "not valid UTF-8".to_owned(),
        },
    })?;
    env_file_vars(&text).map_err(|line| LiveStackError::EnvSyntax { line })
}

/// Converts the stack's compose files with the conversion of `import-compose`. Variables for
/// `${…}` come from `variables`, then the env file: never from the operator's own environment,
/// which holds its credentials and is not the stack's.
pub fn read(
    request: &StackRequest<'_>,
    identities: &crate::spec::AgeIdentities,
) -> Result<LiveStack, LiveStackError> {
    let mut compose_files = Vec::new();
    for (i, written) in request.compose_files.iter().enumerate() {
        files::resolve_inside(request.spec_file, written).map_err(|problem| {
            LiveStackError::Named {
                field: format!("spec.composeFiles[{i}]"),
                problem,
            }
        })?;
        // Checked inside; named as joined onto the SwarmStack's directory (not canonical), so
        // that locations read like the spec files' (relative to the spec directory).
        let dir = request
            .spec_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        compose_files.push(dir.join(written));
    }
    let defaults = env_variables(request, identities)?;
    let variables = request.variables.clone();
    let lookup = move |name: &str| {
        variables.get(name).cloned().or_else(|| {
            defaults
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    };
    let (mut stack, warnings) = super::convert(&compose_files, request.name, &lookup)?;
    if let Some(engine) = request.engine_api {
        stack
            .invalid
            .extend(super::refused_by(&stack.gated, engine));
    }
    if !stack.invalid.is_empty() {
        return Err(ImportError::Invalid(stack.invalid).into());
    }
    // The conversion names copies under `files/…`; here the files stay where they are, named
    // relative to the SwarmStack's file (they are inside its directory: the compose files are,
    // and their sources are inside theirs).
    let dir = spec_dir(request.spec_file);
    let mut rebased = BTreeMap::new();
    let mut sources = BTreeMap::new();
    for file in &stack.files {
        let relative = dir
            .as_deref()
            .and_then(|dir| file.from.strip_prefix(dir).ok())
            .map(|p| p.to_string_lossy().into_owned());
        let Some(relative) = relative else {
            return Err(ImportError::Invalid(vec![super::Invalid {
                origin: file.origin.clone(),
                path: file.field.clone(),
                message: source::SourceProblem::Outside {
                    dir: dir.unwrap_or_default(),
                }
                .to_string(),
            }])
            .into());
        };
        debug_assert!(matches!(file.kind, CopiedKind::Data | CopiedKind::Env));
        sources.insert(relative.clone(), (file.origin.clone(), file.field.clone()));
        rebased.insert(format!("./{}", file.to), relative);
    }
    let rebase = |path: &mut String| {
        if let Some(relative) = rebased.get(path.as_str()) {
            *path = relative.clone();
        }
    };
    let mut services = stack.services;
    for service in &mut services {
        service.spec.env_file.iter_mut().for_each(rebase);
    }
    let mut configs = stack.configs;
    for config in &mut configs {
        config.spec.file.as_mut().map(rebase);
    }
    let mut secrets = stack.secrets;
    for secret in &mut secrets {
        secret.spec.file.as_mut().map(rebase);
    }
    Ok(LiveStack {
        services,
        networks: stack.networks,
        configs,
        secrets,
        dropped: stack.dropped,
        warnings,
        sources,
    })
}

/// The files a converted stack reads besides its compose and env files, canonical.
pub fn data_files(spec_file: &Path, stack: &LiveStack) -> BTreeSet<PathBuf> {
    let written = stack
        .services
        .iter()
        .flat_map(|s| s.spec.env_file.iter())
        .chain(stack.configs.iter().filter_map(|c| c.spec.file.as_ref()))
        .chain(stack.secrets.iter().filter_map(|s| s.spec.file.as_ref()));
    written
        .filter_map(|w| files::resolve_inside(spec_file, w).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(
        spec_file: &'a Path,
        compose_files: &'a [String],
        variables: &'a BTreeMap<String, String>,
    ) -> StackRequest<'a> {
        StackRequest {
            spec_file,
            name: "shop",
            compose_files,
            env_file: None,
            variables,
            engine_api: None,
        }
    }

    #[test]
    fn files_are_rebased_onto_the_swarm_stacks_directory_and_variables_win_over_dot_env() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("compose")).unwrap();
        std::fs::write(
            root.join("compose/docker-stack.yml"),
            "services:\n  web:\n    image: nginx:${TAG}\n    env_file: web.env\n    configs: [site]\n    labels: {owner: \"${OWNER}\"}\nconfigs:\n  site: {file: ./site.conf}\n",
        )
        .unwrap();
        std::fs::write(root.join("compose/.env"), "TAG=1.0\nOWNER=shop\n").unwrap();
        std::fs::write(root.join("compose/web.env"), "A=1\n").unwrap();
        std::fs::write(root.join("compose/site.conf"), "listen 80;\n").unwrap();
        let spec_file = root.join("stack.yaml");
        let compose = vec!["compose/docker-stack.yml".to_owned()];
        let variables = BTreeMap::from([("TAG".to_owned(), "1.4.2".to_owned())]);
        let req = request(&spec_file, &compose, &variables);
        let stack = read(&req, &Default::default()).unwrap();
        let web = &stack.services[0];
        assert_eq!(web.metadata.name, "shop_web");
        assert_eq!(web.spec.image, "nginx:1.4.2", "variables win over .env");
        assert_eq!(web.spec.env_file, ["compose/web.env"]);
        assert_eq!(stack.configs[0].metadata.name, "shop_site");
        assert_eq!(
            stack.configs[0].spec.file.as_deref(),
            Some("compose/site.conf")
        );
        let real = root.canonicalize().unwrap();
        let mut named = named_files(&req);
        named.extend(data_files(&spec_file, &stack));
        assert_eq!(
            named,
            BTreeSet::from(
                ["docker-stack.yml", ".env", "web.env", "site.conf"]
                    .map(|f| real.join("compose").join(f))
            )
        );
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }

    /// The objects of a loaded directory, by kind and name, without the paths of the files
    /// they were read from (those differ by design; the contents are compared).
    fn comparable(dir: &Path) -> BTreeMap<(String, String), crate::spec::Object> {
        use crate::spec::Object;
        let loaded = crate::spec::load_dir(dir).unwrap();
        assert_eq!(loaded.errors(), [], "{}", dir.display());
        loaded
            .objects()
            .into_iter()
            .map(|o| {
                let key = (o.value.kind().to_owned(), o.value.name().to_owned());
                let value = match o.value {
                    Object::Service(s) => {
                        let mut s = (*s).clone();
                        s.spec.env_file.clear();
                        s.into()
                    }
                    Object::Config(c) => {
                        let mut c = (*c).clone();
                        c.spec.file = None;
                        c.into()
                    }
                    Object::Secret(c) => {
                        let mut c = (*c).clone();
                        c.spec.file = None;
                        c.into()
                    }
                    other => other,
                };
                (key, value)
            })
            .collect()
    }

    /// A SwarmStack yields exactly the objects `import-compose` writes for the same files and
    /// variables (the fixtures the stack-deploy equivalence test deploys).
    #[test]
    fn a_swarm_stack_is_what_import_compose_writes() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stacks");
        type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
        let cases: [Case<'_>; 4] = [
            ("shop", &["stack.yml"], &[("PROXY_PORT", "28080")]),
            ("metrics", &["stack.yml"], &[]),
            (
                "ledger",
                &["stack.yml", "stack.prod.yml"],
                &[("REGION", "eu-1")],
            ),
            ("ordered", &["stack.yml", "stack.override.yml"], &[]),
        ];
        for (name, files, vars) in cases {
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("src");
            copy_dir(&fixtures.join(name), &src);
            let variables: BTreeMap<String, String> = vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let paths: Vec<PathBuf> = files.iter().map(|f| src.join(f)).collect();
            let process = variables.clone();
            let lookup =
                super::super::environment(&paths, move |k| process.get(k).cloned()).unwrap();
            let out = dir.path().join("out");
            super::super::import(
                &super::super::ImportRequest {
                    files: paths,
                    stack: name.to_owned(),
                    out: out.clone(),
                    strict: false,
                    api_version: None,
                },
                &lookup,
            )
            .unwrap();
            let vars_yaml: Vec<String> =
                vars.iter().map(|(k, v)| format!("{k}: \"{v}\"")).collect();
            std::fs::write(
                src.join("swarm-stack.yaml"),
                format!(
                    "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmStack\nmetadata: {{name: {name}}}\nspec:\n  composeFiles: [{}]\n  variables: {{{}}}\n",
                    files.join(", "),
                    vars_yaml.join(", ")
                ),
            )
            .unwrap();
            let imported = comparable(&out);
            let live = comparable(&src);
            assert!(!imported.is_empty(), "{name}");
            assert_eq!(
                live.keys().collect::<Vec<_>>(),
                imported.keys().collect::<Vec<_>>(),
                "{name}"
            );
            for (key, object) in &imported {
                assert_eq!(&live[key], object, "{name}: {key:?}");
            }
        }
    }

    #[test]
    fn the_operators_environment_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let spec_file = dir.path().join("stack.yaml");
        // PATH is set in every process; a compose file must not be able to read it.
        std::fs::write(
            dir.path().join("c.yml"),
            "services:\n  web: {image: \"x:${PATH:-unset}\"}\n",
        )
        .unwrap();
        let compose = vec!["c.yml".to_owned()];
        let variables = BTreeMap::new();
        let stack = read(
            &request(&spec_file, &compose, &variables),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(stack.services[0].spec.image, "x:unset");
    }

    #[test]
    fn paths_leaving_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("deploy");
        std::fs::create_dir(&inner).unwrap();
        std::fs::write(dir.path().join("c.yml"), "services: {}\n").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "s").unwrap();
        std::fs::write(
            inner.join("c.yml"),
            "services:\n  web: {image: x, secrets: [s]}\nsecrets:\n  s: {file: ../secret.txt}\n",
        )
        .unwrap();
        let spec_file = inner.join("stack.yaml");
        let variables = BTreeMap::new();
        let outside = vec!["../c.yml".to_owned()];
        let err = read(
            &request(&spec_file, &outside, &variables),
            &Default::default(),
        )
        .unwrap_err();
        assert!(
            matches!(&err, LiveStackError::Named { field, problem: FileProblem::Outside { .. } } if field == "spec.composeFiles[0]"),
            "{err}"
        );
        let inside = vec!["c.yml".to_owned()];
        let err = read(
            &request(&spec_file, &inside, &variables),
            &Default::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("c.yml:4:"),
            "located in the compose file: {err}"
        );
        assert!(err.contains("outside"), "{err}");
    }
}
