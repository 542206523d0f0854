//! `apply` and secrets: a SwarmSecret's content goes into a swarm secret `apply` creates, and
//! the spec it stores (a config, which anyone with API access can read back) only names it.
//!
//! Per SwarmSecret document of an applied file, `apply` reads the content (`data`,
//! `dataBase64`, or `file` next to the spec file), replaces the document in the stored copy by
//! one whose `spec` is only `appliedSecret: <name>-<10 hex>` (the hash is the content's
//! identity, as for every version the operator creates), stores the file, and then creates
//! that secret (owned, labelled `swarm-operator.io/created-by: apply`). Stored first: a secret
//! that exists is always named by a stored spec, so the operator never collects one that a
//! replica's copy of the specs does not know yet (see `reconcile::collect_old_versions`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tracing::info;

use crate::desired::data_objects::{
    APPLIED_BY_VALUE, CREATED_BY_LABEL, DataKind, DataOrigin, DesiredData, versioned_name,
};
use crate::docker::{DockerError, Ownership, SwarmApi};
use crate::spec::in_swarm::applied_secrets_named;
use crate::spec::load::{LoadedDocument, Sidecar, TextOrigin, load_document, split_documents};
use crate::spec::{AgeIdentities, DataSpec, Object, SpecError, SwarmSecret};

/// Why `apply` refuses a SwarmStack.
pub const STACK_NOT_APPLIED: &str = "a SwarmStack is not stored by `apply`: only spec files are stored, not the compose files it names; run the operator on the directory (`run --specs DIR`, e.g. a git checkout), or convert the stack with `import-compose` and apply that";

/// A spec file as `apply` stores it, with the secrets to create for it.
#[derive(Debug, Default)]
pub struct PreparedFile {
    /// The file with every SwarmSecret's content replaced by a reference.
    pub content: Vec<u8>,
    /// The secrets its SwarmSecrets refer to, with their content.
    pub secrets: Vec<DesiredData>,
}

/// Prepares the spec file at `path` (its bytes `text`) for storing: `None` when it declares
/// no secret and can be stored as it is. Errors name `path` and never quote a content; a
/// service with `envFile` is refused, since its values would be stored in a readable config,
/// and so is a config's `file` (only spec files are stored: the operator would not find it).
/// A secret's `file:` ending in `.age` is decrypted with `identities`.
pub fn prepare(
    path: &Path,
    text: &[u8],
    identities: &AgeIdentities,
) -> Result<Option<PreparedFile>, Vec<SpecError>> {
    // Not UTF-8: it holds no loadable secret, and validation reports the file.
    let Ok(text) = std::str::from_utf8(text) else {
        return Ok(None);
    };
    let mut out = String::with_capacity(text.len());
    let mut secrets = Vec::new();
    let mut errors = Vec::new();
    for doc in split_documents(text) {
        if !doc.has_content {
            out.push_str(&doc.raw);
            continue;
        }
        let located = match load_document(
            path,
            &doc.text,
            identities,
            &mut Sidecar::default(),
            TextOrigin::Memory,
        ) {
            Ok(LoadedDocument::Object(located)) => located,
            Ok(LoadedDocument::Empty) => {
                out.push_str(&doc.raw);
                continue;
            }
            // Only spec files are stored: the compose files (and the files they name) would
            // not be, and a replica reading the stored specs could not convert the stack.
            Ok(LoadedDocument::Stack(_)) => {
                errors.push(SpecError::at(path, None, "kind", STACK_NOT_APPLIED));
                continue;
            }
            Err(mut problems) => {
                errors.append(&mut problems);
                continue;
            }
        };
        match &located.value {
            Object::Secret(secret) if secret.spec.applied_secret.is_none() => {
                let data = DesiredData {
                    kind: DataKind::Secret,
                    logical_name: secret.metadata.name.clone(),
                    name: versioned_name(&secret.metadata.name, &secret.spec.content),
                    content: secret.spec.content.clone(),
                    labels: secret.metadata.labels.to_btree_map(),
                    origin: DataOrigin::Spec,
                };
                match reference_document(secret, &data.name) {
                    Ok(reference) => out.push_str(&reference),
                    Err(message) => errors.push(SpecError::at(
                        path,
                        Some((located.line, located.column)),
                        "spec",
                        message,
                    )),
                }
                secrets.push(data);
            }
            Object::Service(service) if !service.spec.env_file.is_empty() => {
                errors.push(SpecError::at(
                    path,
                    located.fields.locations(path).nearest("spec.envFile"),
                    "spec.envFile",
                    "`apply` does not store env files: their values would be readable by anyone with access to the swarm's configs; put secret values in a SwarmSecret (mounted as a file), or give plain settings under `env`",
                ));
            }
            Object::Config(config) if config.spec.file.is_some() => {
                errors.push(SpecError::at(
                    path,
                    located.fields.locations(path).nearest("spec.file"),
                    "spec.file",
                    "`apply` stores spec files only, not the files they name: give this config's content inline (`data` or `dataBase64`), or run the operator on the spec directory",
                ));
            }
            _ => out.push_str(&doc.raw),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok((!secrets.is_empty()).then(|| PreparedFile {
        content: out.into_bytes(),
        secrets,
    }))
}

/// The stored form of `secret`: its metadata and `spec.appliedSecret: name`. JSON, which is
/// YAML, so that no YAML emitter is needed; ended by `...` so that whatever follows in the
/// file starts a document of its own.
fn reference_document(secret: &SwarmSecret, name: &str) -> Result<String, String> {
    let stored = SwarmSecret {
        api_version: secret.api_version,
        kind: secret.kind,
        metadata: secret.metadata.clone(),
        spec: DataSpec {
            applied_secret: Some(name.to_owned()),
            ..DataSpec::default()
        },
    };
    let json = serde_json::to_string_pretty(&stored)
        .map_err(|e| format!("could not write the stored form of the secret: {e}"))?;
    Ok(format!(
        "---\n# Stored by `swarm-operator apply`: the content is in swarm secret {name}.\n{json}\n...\n"
    ))
}

/// The labels of a secret `apply` creates for `instance`.
pub fn labels(data: &DesiredData, instance: &str) -> BTreeMap<String, String> {
    let mut labels = data.labels(instance);
    labels.insert(CREATED_BY_LABEL.to_owned(), APPLIED_BY_VALUE.to_owned());
    labels
}

/// Creates the secrets in `secrets` that the swarm does not have yet (the name is the content's
/// hash, so an existing one holds the same content); returns the names created.
pub async fn create<A: SwarmApi>(
    api: &A,
    secrets: &[DesiredData],
    instance: &str,
) -> Result<Vec<String>, DockerError> {
    if secrets.is_empty() {
        return Ok(Vec::new());
    }
    let existing: BTreeSet<String> = api
        .list_data(DataKind::Secret)
        .await?
        .into_iter()
        .map(|d| d.name)
        .collect();
    let mut created = Vec::new();
    let mut seen = BTreeSet::new();
    for data in secrets {
        if existing.contains(&data.name) || !seen.insert(data.name.clone()) {
            continue;
        }
        match api.create_data(data, &labels(data, instance)).await {
            Ok(_) => {
                info!(secret = %data.name, "secret created");
                created.push(data.name.clone());
            }
            // Created meanwhile: same name, same content.
            Err(DockerError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}

/// What [`collect_unused`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Collected {
    /// Secrets removed.
    pub removed: Vec<String>,
    /// Unnamed secrets the swarm refused to remove (a service still mounts them): the
    /// operator removes them once the service has moved on or is gone.
    pub kept: Vec<String>,
}

/// Removes the secrets `apply` created for `instance` whose SwarmSecret no stored spec
/// declares any more and that no service mounts. A refusal (still in use) keeps the secret;
/// it is not an error. Old versions of a SwarmSecret still declared are left to the operator:
/// it keeps the previous version for swarm's rollback, which swarm's own in-use check (the
/// current spec only) does not protect.
pub async fn collect_unused<A: SwarmApi>(
    api: &A,
    instance: &str,
) -> Result<Collected, DockerError> {
    let secrets = api.list_data(DataKind::Secret).await?;
    let named = applied_secrets_named(&api.list_data(DataKind::Config).await?, instance);
    let declared: BTreeSet<&str> = named.iter().map(|n| logical_name(n)).collect();
    let mounted: BTreeSet<String> = api
        .list_services()
        .await?
        .into_iter()
        .flat_map(|s| {
            // The list's own copy: taken, not cloned.
            std::sync::Arc::unwrap_or_clone(s.definition)
                .secrets
                .into_iter()
                .map(|m| m.name)
        })
        .collect();
    let mut collected = Collected::default();
    for secret in secrets {
        let applied =
            secret.labels.get(CREATED_BY_LABEL).map(String::as_str) == Some(APPLIED_BY_VALUE);
        if !applied
            || !Ownership::from_labels(&secret.labels).is_owned_by(instance)
            || declared.contains(logical_name(&secret.name))
            || mounted.contains(&secret.name)
        {
            continue;
        }
        match api.remove_data(DataKind::Secret, &secret.id).await {
            Ok(()) | Err(DockerError::NotFound { .. }) => collected.removed.push(secret.name),
            Err(_) => collected.kept.push(secret.name),
        }
    }
    Ok(collected)
}

/// `db-0123456789` → `db`: the SwarmSecret a version belongs to.
fn logical_name(version: &str) -> &str {
    version
        .rsplit_once('-')
        .map_or(version, |(logical, _)| logical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load::load_str;

    const SERVICE: &str = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: app}  # the app\nspec:\n  image: busybox\n  secrets: [{name: db}]\n";

    #[test]
    fn a_swarm_stack_is_refused_with_what_to_do_instead() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("docker-stack.yml"),
            "services:\n  web: {image: nginx}\n",
        )
        .unwrap();
        let path = dir.path().join("shop.yaml");
        let text = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmStack\nmetadata: {name: shop}\nspec: {composeFiles: [docker-stack.yml]}\n";
        let errors = prepare(&path, text.as_bytes(), &AgeIdentities::none()).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].message, STACK_NOT_APPLIED);
        assert_eq!(errors[0].file, path);
    }

    #[test]
    fn secrets_are_replaced_by_references_and_the_rest_is_kept_as_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db.txt"), "from-a-file-3141").unwrap();
        let text = format!(
            "# top comment\n{SERVICE}---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata: {{name: db, labels: {{team: a}}}}\nspec: {{data: inline-2718}}\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata: {{name: tls}}\nspec: {{file: db.txt}}\n"
        );
        let path = dir.path().join("app.yaml");
        let prepared = prepare(&path, text.as_bytes(), &AgeIdentities::none())
            .unwrap()
            .expect("has secrets");
        let stored = String::from_utf8(prepared.content).unwrap();
        for plaintext in ["inline-2718", "from-a-file-3141", "db.txt"] {
            assert!(!stored.contains(plaintext), "{plaintext} in {stored}");
        }
        assert!(stored.starts_with("# top comment\n"), "{stored}");
        assert!(
            stored.contains("metadata: {name: app}  # the app"),
            "{stored}"
        );
        let names: Vec<&str> = prepared.secrets.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(
            names[0].starts_with("db-") && names[1].starts_with("tls-"),
            "{names:?}"
        );
        assert_eq!(prepared.secrets[0].content.0, b"inline-2718");
        assert_eq!(prepared.secrets[1].content.0, b"from-a-file-3141");

        // The stored copy loads (anywhere, without db.txt) as references to those secrets.
        let elsewhere = tempfile::tempdir().unwrap();
        let objects = load_str(&elsewhere.path().join("app.yaml"), &stored);
        let objects = objects.objects().expect("the stored copy loads");
        assert_eq!(objects.len(), 3);
        let Object::Secret(db) = &objects[1].value else {
            panic!("{:?}", objects[1].value)
        };
        assert_eq!(db.spec.applied_secret.as_deref(), Some(names[0]));
        assert_eq!(db.metadata.labels.get("team").unwrap(), "a");
        assert!(db.spec.content.0.is_empty());
    }

    #[test]
    fn a_file_without_secrets_is_stored_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            prepare(
                &dir.path().join("a.yaml"),
                SERVICE.as_bytes(),
                &AgeIdentities::none()
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn env_files_and_unreadable_secret_files_are_refused_without_quoting_anything() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.env"), "DB_PASSWORD=hunter2-1618\n").unwrap();
        let text = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: app}\nspec:\n  image: busybox\n  envFile: [app.env]\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata: {name: gone}\nspec: {file: missing.txt}\n";
        let path = dir.path().join("app.yaml");
        let errors = prepare(&path, text.as_bytes(), &AgeIdentities::none()).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].field, "spec.envFile");
        assert_eq!(errors[0].file, path);
        assert_eq!(errors[0].line, Some(6));
        assert_eq!(errors[1].field, "spec.file");
        for error in &errors {
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
    }

    #[test]
    fn a_config_file_is_refused_with_a_located_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nginx.conf"), "listen 80;\n").unwrap();
        let text = "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata: {name: proxy}\nspec:\n  file: nginx.conf\n";
        let errors = prepare(
            &dir.path().join("proxy.yaml"),
            text.as_bytes(),
            &AgeIdentities::none(),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            (errors[0].field.as_str(), errors[0].line),
            ("spec.file", Some(5))
        );
        assert!(
            errors[0].message.contains("inline"),
            "{}",
            errors[0].message
        );
    }

    fn version(logical: &str, hash: &str) -> DesiredData {
        DesiredData {
            kind: DataKind::Secret,
            logical_name: logical.into(),
            name: format!("{logical}-{hash}"),
            content: crate::spec::Content::default(),
            labels: BTreeMap::new(),
            origin: DataOrigin::Spec,
        }
    }

    #[tokio::test]
    async fn delete_collects_only_versions_of_secrets_no_stored_spec_declares_nor_service_mounts() {
        use crate::desired::definition::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
        use crate::docker::memory::MemorySwarm;
        let swarm = MemorySwarm::default();
        let instance = "team-a";
        let add = |data: &DesiredData, labels: BTreeMap<String, String>| {
            swarm.external_create_data(DataKind::Secret, &data.name, labels);
        };
        let (db_old, db_new) = (version("db", "aaaaaaaaaa"), version("db", "bbbbbbbbbb"));
        let gone = version("gone", "cccccccccc");
        let mounted = version("mounted", "dddddddddd");
        let by_hand = version("byhand", "eeeeeeeeee");
        let other = version("other", "ffffffffff");
        for data in [&db_old, &db_new, &gone, &mounted] {
            add(data, labels(data, instance));
        }
        add(&by_hand, by_hand.labels(instance));
        add(&other, labels(&other, "team-b"));
        swarm.external_create_data(
            DataKind::Config,
            "swarm-operator-spec-1",
            BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
                (INSTANCE_LABEL.to_owned(), instance.to_owned()),
                (
                    crate::spec::in_swarm::APPLIED_SECRETS_LABEL.to_owned(),
                    db_new.name.clone(),
                ),
            ]),
        );
        let mut service = crate::desired::definition::tests::sample_service("app");
        service.secrets = vec![crate::desired::definition::FileMount {
            name: mounted.name.clone(),
            target: "m".into(),
            uid: "0".into(),
            gid: "0".into(),
            mode: 0o400,
        }];
        swarm.external_create_service(service, &BTreeMap::new());

        let collected = collect_unused(&swarm, instance).await.unwrap();
        assert_eq!(collected.removed, std::slice::from_ref(&gone.name));
        assert!(collected.kept.is_empty());
        let mut left = swarm.data_names(DataKind::Secret);
        left.sort();
        // db's old version is the operator's to collect (it may be a rollback target).
        assert_eq!(
            left,
            [
                by_hand.name,
                db_old.name,
                db_new.name,
                mounted.name,
                other.name
            ]
        );
    }

    #[test]
    fn stored_documents_keep_their_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        // A secret between `...`-ended documents and one without markers at all.
        let text = format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata: {{name: db}}\nspec: {{data: x}}\n...\n{SERVICE}...\n"
        );
        let prepared = prepare(
            &dir.path().join("a.yaml"),
            text.as_bytes(),
            &AgeIdentities::none(),
        )
        .unwrap()
        .unwrap();
        let stored = String::from_utf8(prepared.content).unwrap();
        let loaded = load_str(&dir.path().join("a.yaml"), &stored);
        assert_eq!(loaded.objects().map(<[_]>::len), Some(2), "{stored}");
    }
}
