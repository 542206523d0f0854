//! The `SwarmStack` kind: compose files as the source of truth, turned into the stack's
//! services, networks, configs and secrets on every reload, named as `docker stack deploy`
//! names them.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::encrypted::AgeIdentities;
use super::load::{Sidecar, merge_env_files, read_content};
use super::located::{DocumentFields, Located, SpecError};
use super::types::{ApiVersion, DataSpec, Object, ObjectMeta, SUSPEND_ANNOTATION};
use crate::compose::ImportError;
use crate::compose::live::{self, LiveStackError, StackRequest};
use crate::yaml::Origin;

/// The `kind` of a stack document: always `SwarmStack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
pub enum StackKind {
    /// A compose stack, deployed as `docker stack deploy -c FILE… NAME` would.
    #[default]
    SwarmStack,
}

/// A compose stack, declared: `metadata.name` is the stack name, as in `docker stack deploy -c
/// docker-stack.yml NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwarmStack {
    /// Always `swarm-operator.io/v1alpha1`.
    pub api_version: ApiVersion,
    /// Always `SwarmStack`.
    pub kind: StackKind,
    /// The stack name. The annotation `swarm-operator.io/suspend: "true"` suspends every
    /// object of the stack; labels are not put on them (stack deploy sets its own).
    pub metadata: ObjectMeta,
    /// The compose files and their variables.
    pub spec: StackSpec,
}

/// Where a stack comes from.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StackSpec {
    /// Compose files, relative to this file and inside its directory, merged in order (like
    /// repeated `docker stack deploy -c`). They are not read as spec files themselves.
    #[schemars(length(min = 1))]
    pub compose_files: Vec<String>,
    /// An env file of `NAME=value` lines for `${…}` interpolation, relative to this file
    /// (`.age` is decrypted). Default: `.env` beside the first compose file, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
    /// Variables for `${…}` interpolation; they win over the env file. The operator's own
    /// environment is never read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// Keys only: variables may hold values that must not reach a log.
impl fmt::Debug for StackSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackSpec")
            .field("compose_files", &self.compose_files)
            .field("env_file", &self.env_file)
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The objects of `stack` (declared at `at`): its compose files converted as `import-compose`
/// converts them, the files they name read as a spec's own (`.age` decrypted). Every object is
/// located at the SwarmStack (its file is what labels and holds them: a broken compose file
/// keeps the stack's last good objects); problems point into the compose files. The files the
/// stack reads, and its dropped keys as warnings, go into `sidecar`.
pub(super) fn expand(
    stack: &SwarmStack,
    at: &Located<()>,
    identities: &AgeIdentities,
    sidecar: &mut Sidecar,
) -> Result<Vec<Located<Object>>, Vec<SpecError>> {
    let request = StackRequest {
        spec_file: &at.file,
        name: &stack.metadata.name,
        compose_files: &stack.spec.compose_files,
        env_file: stack.spec.env_file.as_deref(),
        variables: &stack.spec.variables,
        engine_api: sidecar.engine_api,
    };
    sidecar.reads.extend(live::named_files(&request));
    let converted = live::read(&request, identities).map_err(|e| errors_of(e, at))?;
    sidecar.reads.extend(live::data_files(&at.file, &converted));
    sidecar
        .warnings
        .extend(converted.dropped.iter().map(|d| SpecError {
            file: d.origin.file.as_ref().clone(),
            line: Some(d.origin.line),
            column: Some(d.origin.column),
            field: d.path.clone(),
            message: format!("ignored: {}", d.reason),
        }));
    sidecar.warnings.extend(
        converted
            .warnings
            .iter()
            .map(|w| SpecError::at(&at.file, Some((at.line, at.column)), "spec", w.clone())),
    );
    let in_compose = |written: &str, problem: String| match converted.sources.get(written) {
        Some((origin, field)) => SpecError {
            file: origin.file.as_ref().clone(),
            line: Some(origin.line),
            column: Some(origin.column),
            field: field.clone(),
            message: problem,
        },
        None => SpecError::at(&at.file, Some((at.line, at.column)), "spec", problem),
    };
    // Read with no field positions: a problem is located at the compose file's key instead.
    let none = DocumentFields::default();
    let mut errors = Vec::new();
    let mut objects: Vec<Object> = Vec::new();
    for mut service in converted.services.clone() {
        let env_files = service.spec.env_file.clone();
        if let Err(problems) = merge_env_files(&at.file, &mut service, &none, identities) {
            for p in problems {
                let written = field_index(&p.field)
                    .and_then(|i| env_files.get(i))
                    .map_or("", String::as_str);
                errors.push(in_compose(written, p.message.clone()));
            }
            continue;
        }
        suspend(&mut service.metadata, stack);
        objects.push(service.into());
    }
    for mut network in converted.networks.clone() {
        suspend(&mut network.metadata, stack);
        objects.push(network.into());
    }
    // Configs and secrets alike: their file read as a spec's own, a problem at the compose
    // line that named the file.
    let mut read_data = |metadata: &mut ObjectMeta, spec: &mut DataSpec| -> bool {
        match read_content(&at.file, spec, &none, identities) {
            Ok(content) => spec.content = content,
            Err(problems) => {
                let written = spec.file.clone().unwrap_or_default();
                errors.extend(
                    problems
                        .iter()
                        .map(|p| in_compose(&written, p.message.clone())),
                );
                return false;
            }
        }
        suspend(metadata, stack);
        true
    };
    for mut config in converted.configs.clone() {
        if read_data(&mut config.metadata, &mut config.spec) {
            objects.push(config.into());
        }
    }
    for mut secret in converted.secrets.clone() {
        if read_data(&mut secret.metadata, &mut secret.spec) {
            objects.push(secret.into());
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(objects
        .into_iter()
        .map(|value| Located {
            value,
            file: at.file.clone(),
            line: at.line,
            column: at.column,
            fields: at.fields.clone(),
        })
        .collect())
}

/// `i` of a field path ending in `[i]`.
fn field_index(field: &str) -> Option<usize> {
    field.strip_suffix(']')?.rsplit_once('[')?.1.parse().ok()
}

/// A suspended SwarmStack suspends each of its objects.
fn suspend(metadata: &mut ObjectMeta, stack: &SwarmStack) {
    if stack.metadata.is_suspended() {
        metadata
            .annotations
            .insert(SUSPEND_ANNOTATION.to_owned(), "true".to_owned());
    }
}

/// A stack's problem as located spec errors: in the compose file where it was written, or at
/// the SwarmStack's own field.
fn errors_of(error: LiveStackError, at: &Located<()>) -> Vec<SpecError> {
    let at_field = |field: &str, message: String| {
        SpecError::at(
            &at.file,
            at.fields
                .locations(&at.file)
                .nearest(field)
                .or(Some((at.line, at.column))),
            field,
            message,
        )
    };
    let located = |origin: &Origin, field: &str, message: String| SpecError {
        file: origin.file.as_ref().clone(),
        line: Some(origin.line),
        column: Some(origin.column),
        field: field.to_owned(),
        message,
    };
    match error {
        LiveStackError::Named { field, problem } => vec![at_field(&field, problem.to_string())],
        LiveStackError::EnvSyntax { .. } => vec![at_field("spec.envFile", error.to_string())],
        LiveStackError::Compose(ImportError::Invalid(invalid)) => invalid
            .iter()
            .map(|i| located(&i.origin, &i.path, i.message.clone()))
            .collect(),
        LiveStackError::Compose(ImportError::Parse(e)) => vec![SpecError {
            file: e.file.clone(),
            line: e.at.map(|(l, _)| l),
            column: e.at.map(|(_, c)| c),
            field: String::new(),
            message: e.message,
        }],
        LiveStackError::Compose(ImportError::Interpolation(e)) => {
            let origin = e.origin().clone();
            let text = e.to_string();
            let message = text
                .strip_prefix(&format!("{origin}: "))
                .unwrap_or(&text)
                .to_owned();
            vec![located(&origin, "", message)]
        }
        LiveStackError::Compose(ImportError::Read { file, problem }) => {
            vec![SpecError::file(file, problem.to_string())]
        }
        LiveStackError::Compose(ImportError::DotEnv { file, line }) => vec![SpecError {
            file,
            line: Some(line),
            column: None,
            field: String::new(),
            message:
                "not `NAME=value` or a `#` comment (the line is not shown: it may hold a value)"
                    .to_owned(),
        }],
        LiveStackError::Compose(ImportError::StackName(_)) => {
            vec![at_field("metadata.name", error.to_string())]
        }
        LiveStackError::Compose(other) => vec![at_field("spec.composeFiles", other.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::spec::{FileLoad, Object, load_dir};

    const STACK: &str = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmStack\nmetadata: {name: shop}\nspec:\n  composeFiles: [docker-stack.yml, docker-stack.prod.yml]\n";

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    fn names(objects: &[crate::spec::Located<Object>]) -> Vec<String> {
        let mut names: Vec<String> = objects
            .iter()
            .map(|o| format!("{}/{}", o.value.kind(), o.value.name()))
            .collect();
        names.sort();
        names
    }

    /// A config's or a secret's file that can not be read is an error at the compose line
    /// naming it; the stack yields nothing then.
    #[test]
    fn unreadable_config_and_secret_files_point_at_their_compose_lines() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "stack.yaml",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmStack\nmetadata: {name: shop}\nspec:\n  composeFiles: [docker-stack.yml]\n",
        );
        write(
            root,
            "docker-stack.yml",
            "services:\n  web: {image: busybox}\nconfigs:\n  site:\n    file: ./site.conf\nsecrets:\n  token:\n    file: ./token.txt\n",
        );
        let loaded = load_dir(root).unwrap();
        let errors: Vec<(String, Option<usize>)> = loaded
            .errors()
            .iter()
            .map(|e| (e.file.display().to_string(), e.line))
            .collect();
        let compose = root.join("docker-stack.yml").display().to_string();
        assert_eq!(
            errors,
            [(compose.clone(), Some(5)), (compose, Some(8))],
            "{:?}",
            loaded.errors()
        );
        assert!(loaded.objects().is_empty());
    }

    #[test]
    fn the_loader_turns_a_swarm_stack_into_its_objects_and_skips_the_files_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "stack.yaml", STACK);
        write(
            root,
            "docker-stack.yml",
            "services:\n  web:\n    image: nginx:${TAG}\n    configs:\n      - {source: site, target: /etc/nginx/conf.d/site.conf}\n  worker: {image: busybox}\nconfigs:\n  site: {file: ./site.yml}\n",
        );
        write(
            root,
            "docker-stack.prod.yml",
            "services:\n  web:\n    deploy: {replicas: 3}\n",
        );
        write(root, ".env", "TAG=1.4.2\n");
        // A config that is YAML too: it is the stack's, not a spec file.
        write(root, "site.yml", "listen: 80\n");
        let loaded = load_dir(root).unwrap();
        assert_eq!(
            loaded.errors(),
            [],
            "no missing apiVersion for the compose files"
        );
        assert_eq!(
            loaded
                .files
                .keys()
                .map(|p| p.to_path_buf())
                .collect::<Vec<_>>(),
            [root.join("stack.yaml")]
        );
        let objects = loaded.objects();
        assert_eq!(
            names(&objects),
            [
                "SwarmConfig/shop_site",
                "SwarmNetwork/shop_default",
                "SwarmService/shop_web",
                "SwarmService/shop_worker"
            ]
        );
        let web = objects
            .iter()
            .find_map(|o| {
                o.value
                    .as_service()
                    .filter(|s| s.metadata.name == "shop_web")
            })
            .unwrap();
        assert_eq!(web.spec.image, "nginx:1.4.2", ".env interpolated");
        assert_eq!(
            web.spec.replicas,
            Some(3),
            "the second file merged over the first"
        );
        assert_eq!(
            web.metadata
                .labels
                .get("com.docker.stack.namespace")
                .map(String::as_str),
            Some("shop")
        );
        let Some(Object::Config(site)) = objects
            .iter()
            .map(|o| &o.value)
            .find(|o| o.name() == "shop_site")
        else {
            panic!("no config");
        };
        assert_eq!(site.spec.content.0, b"listen: 80\n");
        assert!(
            objects.iter().all(|o| *o.file == *root.join("stack.yaml")),
            "every object is the SwarmStack file's: it holds them when a compose file breaks"
        );
    }

    #[test]
    fn errors_point_into_the_compose_file_and_dropped_keys_are_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "stack.yaml", STACK);
        write(
            root,
            "docker-stack.yml",
            "services:\n  web:\n    image: nginx\n    build: .\n",
        );
        write(
            root,
            "docker-stack.prod.yml",
            "services:\n  web:\n    deploy:\n      replicas: many\n",
        );
        let loaded = load_dir(root).unwrap();
        let errors = loaded.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, root.join("docker-stack.prod.yml"));
        assert_eq!((errors[0].line, errors[0].column), (Some(4), Some(17)));
        assert_eq!(errors[0].field, "services.web.deploy.replicas");
        assert!(
            !loaded
                .files
                .contains_key(root.join("docker-stack.yml").as_path()),
            "a broken stack's compose files are still not spec files"
        );
        write(root, "docker-stack.prod.yml", "services: {}\n");
        let loaded = load_dir(root).unwrap();
        assert_eq!(loaded.errors(), []);
        assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
        let warning = &loaded.warnings[0];
        assert_eq!(warning.file, root.join("docker-stack.yml"));
        assert_eq!(
            (warning.line, warning.field.as_str()),
            (Some(4), "services.web.build")
        );
    }

    #[test]
    fn the_store_passes_warnings_on_and_holds_a_stack_whose_compose_file_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "stack.yaml", STACK);
        write(
            root,
            "docker-stack.yml",
            "services:\n  web: {image: nginx, build: .}\n",
        );
        write(root, "docker-stack.prod.yml", "services: {}\n");
        let mut store = crate::spec::SpecStore::new();
        let desired = store.reload(root).unwrap();
        assert_eq!(
            names(&desired.objects()),
            ["SwarmNetwork/shop_default", "SwarmService/shop_web"]
        );
        assert_eq!(desired.warnings.len(), 1, "{:?}", desired.warnings);
        assert!(desired.complete);
        write(
            root,
            "docker-stack.yml",
            "services:\n  web: {image: [nginx]}\n",
        );
        let desired = store.reload(root).unwrap();
        assert!(
            !desired.complete,
            "a broken compose file fails its SwarmStack"
        );
        assert_eq!(
            desired.failed_files.iter().collect::<Vec<_>>(),
            [&root.join("stack.yaml")]
        );
        assert_eq!(
            names(&desired.objects()),
            ["SwarmNetwork/shop_default", "SwarmService/shop_web"],
            "the last good objects are held"
        );
    }

    #[test]
    fn paths_out_of_the_directory_are_refused_at_the_swarm_stacks_field() {
        let dir = tempfile::tempdir().unwrap();
        let deploy = dir.path().join("deploy");
        std::fs::create_dir(&deploy).unwrap();
        write(dir.path(), "docker-stack.yml", "services: {}\n");
        write(
            &deploy,
            "stack.yaml",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmStack\nmetadata: {name: shop}\nspec:\n  composeFiles:\n    - ../docker-stack.yml\n",
        );
        let loaded = load_dir(&deploy).unwrap();
        let errors = loaded.errors();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "spec.composeFiles[0]");
        assert_eq!(errors[0].line, Some(6));
        assert!(
            errors[0].message.contains("outside"),
            "{}",
            errors[0].message
        );
        assert!(matches!(
            loaded.files[deploy.join("stack.yaml").as_path()],
            FileLoad::Failed(_)
        ));
    }
}
