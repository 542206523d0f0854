//! Swarm configs and secrets as the operator manages them: immutable, content-addressed
//! versions named `<name>-<first 10 hex of sha256(content)>`, so a content change is a new
//! object plus one rolling update of each service that mounts it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::desired::definition::{INSTANCE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::spec::Content;

/// Label with the logical name (`metadata.name`) of a versioned config or secret.
pub const LOGICAL_NAME_LABEL: &str = "swarm-operator.io/logical-name";
/// Label with the full sha256 of a versioned config's or secret's content.
pub const CONTENT_HASH_LABEL: &str = "swarm-operator.io/content-sha256";
/// Label on a secret `apply` created (value [`APPLIED_BY_VALUE`]): its only copy of the
/// content is the secret itself, so the operator never recreates it, only mounts and collects it.
pub const CREATED_BY_LABEL: &str = "swarm-operator.io/created-by";
/// [`CREATED_BY_LABEL`]'s value on secrets `apply` created.
pub const APPLIED_BY_VALUE: &str = "apply";

/// Where the operator gets a version's content from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOrigin {
    /// From the spec (inline or a file): the operator creates the version when it is missing.
    Spec,
    /// A secret `apply` created and the stored spec names (`spec.appliedSecret`): the content
    /// exists only in that secret, so the operator can mount it but never create it.
    Applied,
}

/// Config or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataKind {
    /// A swarm config.
    Config,
    /// A swarm secret.
    Secret,
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataKind::Config => "config",
            DataKind::Secret => "secret",
        })
    }
}

/// The swarm name of version `content` of logical config/secret `name`.
pub fn versioned_name(name: &str, content: &Content) -> String {
    format!("{name}-{}", &content.sha256_hex()[..10])
}

/// A config or secret version the specs want to exist.
#[derive(Clone, PartialEq)]
pub struct DesiredData {
    /// Config or secret.
    pub kind: DataKind,
    /// `metadata.name` of the spec.
    pub logical_name: String,
    /// The swarm name: logical name plus hash suffix.
    pub name: String,
    /// The bytes (empty for [`DataOrigin::Applied`]: the operator does not have them).
    pub content: Content,
    /// User labels from the spec.
    pub labels: BTreeMap<String, String>,
    /// Where the content comes from.
    pub origin: DataOrigin,
}

impl fmt::Debug for DesiredData {
    // `Content`'s Debug is already redacted; spelled out so no field is ever added unredacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DesiredData")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("content", &self.content)
            .finish_non_exhaustive()
    }
}

impl DesiredData {
    /// Every label to write: the user's, ownership by `instance`, logical name and full hash.
    pub fn labels(&self, instance: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
        labels.insert(INSTANCE_LABEL.to_owned(), instance.to_owned());
        labels.insert(LOGICAL_NAME_LABEL.to_owned(), self.logical_name.clone());
        labels.insert(CONTENT_HASH_LABEL.to_owned(), self.content.sha256_hex());
        labels
    }
}

/// A config or secret as listed from the swarm (never with its content: swarm does not return
/// a secret's data, and the operator does not need a config's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedData {
    /// Config or secret.
    pub kind: DataKind,
    /// Swarm id.
    pub id: String,
    /// Swarm name.
    pub name: String,
    /// All its labels.
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_named_by_content() {
        let a = Content(b"listen 80\n".to_vec());
        let b = Content(b"listen 81\n".to_vec());
        assert_eq!(
            versioned_name("proxy", &a),
            versioned_name("proxy", &a.clone())
        );
        assert_ne!(versioned_name("proxy", &a), versioned_name("proxy", &b));
        let name = versioned_name("proxy", &a);
        assert_eq!(name.len(), "proxy-".len() + 10);
        assert!(a.sha256_hex().starts_with(&name["proxy-".len()..]));
    }

    #[test]
    fn debug_never_shows_content() {
        let d = DesiredData {
            kind: DataKind::Secret,
            logical_name: "db".into(),
            name: "db-x".into(),
            content: Content(b"hunter2".to_vec()),
            labels: BTreeMap::new(),
            origin: DataOrigin::Spec,
        };
        let text = format!("{d:?}");
        assert!(!text.contains("hunter2"), "{text}");
        let labels = d.labels("team-a");
        assert_eq!(labels[LOGICAL_NAME_LABEL], "db");
        assert_eq!(labels[CONTENT_HASH_LABEL].len(), 64);
        assert_eq!(labels[INSTANCE_LABEL], "team-a");
    }
}

/// How `diff` shows a change of a service's `secrets` (given as the JSON of the mount lists):
/// per logical secret, `<secret changed: sha256 8e07d4c511…>` for a new version, `added` or
/// `removed`, and changed file settings, but never more of the content than the version's
/// hash prefix (which is already in the swarm name).
pub fn describe_secret_changes(old: &str, new: &str) -> String {
    let parse = |json: &str| -> BTreeMap<String, (String, serde_json::Value)> {
        serde_json::from_str::<Vec<serde_json::Value>>(json)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|mut m| {
                let name = m.get("name")?.as_str()?.to_owned();
                let (logical, hash) = split_version(&name);
                m.as_object_mut()?.shift_remove("name");
                Some((logical.to_owned(), (hash.to_owned(), m)))
            })
            .collect()
    };
    let (old, new) = (parse(old), parse(new));
    let mut parts = Vec::new();
    for name in old
        .keys()
        .chain(new.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (old.get(name), new.get(name)) {
            (None, Some(_)) => parts.push(format!("{name}: added")),
            (Some(_), None) => parts.push(format!("{name}: removed")),
            (Some((old_hash, old_file)), Some((new_hash, new_file))) => {
                if old_hash != new_hash {
                    parts.push(format!("{name}: <secret changed: sha256 {new_hash}…>"));
                }
                if old_file != new_file {
                    parts.push(format!("{name}: file {old_file} → {new_file}"));
                }
            }
            (None, None) => {}
        }
    }
    parts.join(", ")
}

/// `db-8e07d4c511` → (`db`, `8e07d4c511`); names without a version suffix keep an empty hash.
fn split_version(name: &str) -> (&str, &str) {
    match name.rsplit_once('-') {
        Some((base, hash)) if hash.len() == 10 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            (base, hash)
        }
        _ => (name, ""),
    }
}

#[cfg(test)]
mod diff_tests {
    use super::*;

    #[test]
    fn secret_changes_show_hash_prefixes_only() {
        let old = r#"[{"name":"db-1a2b3c4d5e","target":"db","uid":"0","gid":"0","mode":292},{"name":"gone-0000000000","target":"g","uid":"0","gid":"0","mode":292}]"#;
        let new = r#"[{"name":"db-8e07d4c511","target":"db","uid":"0","gid":"0","mode":256},{"name":"ext","target":"e","uid":"0","gid":"0","mode":292}]"#;
        assert_eq!(
            describe_secret_changes(old, new),
            r#"db: <secret changed: sha256 8e07d4c511…>, db: file {"target":"db","uid":"0","gid":"0","mode":292} → {"target":"db","uid":"0","gid":"0","mode":256}, ext: added, gone: removed"#
        );
        assert_eq!(
            describe_secret_changes("null", new),
            "db: added, ext: added"
        );
    }
}
