//! Reading a spec directory: files, documents, typed objects, and errors located by line, column
//! and field path.
//!
//! Each file is split into its `---`-separated documents, and each document is parsed twice:
//! once into a span tree (to learn the position of every field, which the typed values do not
//! carry) and once into its typed kind. A document's error therefore never hides another
//! document's, and every error is mapped back to a field path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, DeserializeOwned};
use serde_saphyr::{
    Budget, DefaultMessageFormatter, DuplicateKeyPolicy, MessageFormatter, Spanned,
};

use super::located::{FieldLocations, Located, Position, SpecError, field_path};
use super::types::{API_VERSION, KINDS, Object, SwarmNetwork, SwarmService};

/// Files larger than this are rejected unread: specs are small, and this bounds memory.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a spec directory could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum LoadDirError {
    /// Listing the directory failed (missing, not a directory, permissions).
    #[error("cannot read spec directory {}: {source}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The outcome of loading one file.
#[derive(Debug, Clone, PartialEq)]
pub enum FileLoad {
    /// Every document was valid (as far as loading goes); the objects in document order.
    Ok(Vec<Located<Object>>),
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

/// Every spec file of a directory, loaded.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadedDir {
    /// Each spec file (path as joined onto the directory) and its outcome.
    pub files: BTreeMap<PathBuf, FileLoad>,
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
    (lower.ends_with(".yaml") || lower.ends_with(".yml")) && lower.len() > 5
}

/// Loads every spec file directly in `dir` (sorted by name; subdirectories are not entered).
///
/// Only fails when the directory itself cannot be listed; problems with files and documents
/// are reported per file in the result.
pub fn load_dir(dir: &Path) -> Result<LoadedDir, LoadDirError> {
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
            Ok(meta) if meta.is_file() => paths.push(path),
            Ok(_) => {}
            // Vanished between listing and stat (an editor's save dance): not a spec file now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => paths.push(path), // let load_file report it
        }
    }
    paths.sort();
    let files = paths
        .into_iter()
        .map(|path| {
            let load = load_file(&path);
            (path, load)
        })
        .collect();
    Ok(LoadedDir { files })
}

/// Loads one spec file.
pub fn load_file(path: &Path) -> FileLoad {
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
        _ => {}
    }
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => load_str(path, &text),
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

/// Loads the spec documents in `text`, reporting errors against `file`.
pub fn load_str(file: &Path, text: &str) -> FileLoad {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for doc in split_documents(text) {
        if !doc.has_content {
            continue;
        }
        match load_document(file, &doc.text) {
            Ok(Some(object)) => objects.push(object),
            Ok(None) => {}
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        FileLoad::Ok(objects)
    } else {
        FileLoad::Failed(errors)
    }
}

/// Loads one document (padded with empty lines so positions are those of the whole file).
/// `Ok(None)` for an empty (null) document.
fn load_document(file: &Path, text: &str) -> Result<Option<Located<Object>>, Vec<SpecError>> {
    // Duplicate keys pass through here so their positions are known when the typed parse
    // below rejects them.
    let root: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, options(DuplicateKeyPolicy::PassThrough))
            .map_err(|e| vec![convert_error(file, &e, &FieldLocations::default())])?;
    let root_pos = position(&root);
    let Node::Map(entries) = &root.value else {
        if matches!(root.value, Node::Null) {
            return Ok(None);
        }
        return Err(vec![SpecError::at(
            file,
            root_pos,
            "",
            format!(
                "a spec document must be a mapping with apiVersion, kind, metadata and spec, not {}",
                root.value.describe()
            ),
        )]);
    };

    let mut fields = FieldLocations::default();
    record_fields(&root, "", &mut fields);

    let mut errors = Vec::new();
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k.value.as_key().as_deref() == Some(key))
            .map(|(_, v)| v)
    };
    match get("apiVersion") {
        Some(v) if v.value.as_str() == Some(API_VERSION) => {}
        Some(v) => errors.push(SpecError::at(
            file,
            position(v),
            "apiVersion",
            format!(
                "unknown apiVersion {}: the only supported apiVersion is `{API_VERSION}`",
                v.value.describe()
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
        Some(v) if v.value.as_str().is_some_and(|k| KINDS.contains(&k)) => v.value.as_str(),
        Some(v) => {
            errors.push(SpecError::at(
                file,
                position(v),
                "kind",
                format!(
                    "unknown kind {}: allowed kinds are {}",
                    v.value.describe(),
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
    if !errors.is_empty() {
        return Err(errors);
    }
    let object = match kind {
        Some("SwarmService") => typed::<SwarmService>(file, text, &fields)?.into(),
        Some("SwarmNetwork") => typed::<SwarmNetwork>(file, text, &fields)?.into(),
        _ => unreachable!("kind checked against KINDS above"),
    };
    let (line, column) = fields.get("metadata.name").or(root_pos).unwrap_or((1, 1));
    Ok(Some(Located {
        value: object,
        file: file.to_owned(),
        line,
        column,
        fields,
    }))
}

fn typed<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    fields: &FieldLocations,
) -> Result<T, Vec<SpecError>> {
    serde_saphyr::from_str_with_options(text, options(DuplicateKeyPolicy::Error))
        .map_err(|e| vec![convert_error(file, &e, fields)])
}

/// Parser options: duplicate keys are errors, and a budget far above any real spec file but
/// small enough that alias bombs and giant documents fail fast.
fn options(duplicate_keys: DuplicateKeyPolicy) -> serde_saphyr::Options {
    let mut budget = Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 100_000;
    budget.max_depth = 32;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    budget.max_recorded_anchor_events = 100_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = duplicate_keys;
    options.with_snippet = false;
    options
}

/// Turns a parser error into a [`SpecError`], recovering the field path from its position.
fn convert_error(file: &Path, err: &serde_saphyr::Error, fields: &FieldLocations) -> SpecError {
    let err = err.without_snippet();
    let pos = err
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line() as usize, l.column().max(1) as usize));
    let base = DefaultMessageFormatter.format_message(err).into_owned();
    let (field, message) = match (err, pos) {
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

fn position<T>(s: &Spanned<T>) -> Option<Position> {
    let l = s.referenced;
    (l.line() > 0).then(|| (l.line() as usize, l.column().max(1) as usize))
}

fn record_fields(node: &Spanned<Node>, path: &str, fields: &mut FieldLocations) {
    match &node.value {
        Node::Map(entries) => {
            for (k, v) in entries {
                let child = field_path::key(path, &k.value.as_key().unwrap_or_default());
                if let Some(p) = position(k) {
                    fields.insert_key(child.clone(), p);
                }
                if let Some(p) = position(v) {
                    fields.insert(child.clone(), p);
                }
                record_fields(v, &child, fields);
            }
        }
        Node::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                let child = field_path::index(path, i);
                if let Some(p) = position(v) {
                    fields.insert(child.clone(), p);
                }
                record_fields(v, &child, fields);
            }
        }
        _ => {}
    }
}

/// One document's text, padded with empty lines so positions match the file.
struct Document {
    text: String,
    has_content: bool,
}

/// Splits a YAML stream at its document markers, line-based (a `---` or `...` at column 0 is
/// always a marker in YAML, even inside block scalars). Directive lines (`%YAML`) go with the
/// document that follows them.
fn split_documents(text: &str) -> Vec<Document> {
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
        has_content: false,
    };
    let mut has_marker = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let start_new = |docs: &mut Vec<Document>, cur: &mut Document| {
            let done = std::mem::replace(
                cur,
                Document {
                    text: "\n".repeat(i),
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
            cur.has_content |= is_content(&line[3..]);
        } else if line.starts_with('%') {
            if cur.has_content || has_marker {
                start_new(&mut docs, &mut cur);
                has_marker = false;
            }
            cur.text.push_str(line);
        } else if is_marker(line, "...") {
            cur.text.push('\n');
            start_new(&mut docs, &mut cur);
            cur.text.push('\n');
            has_marker = false;
        } else {
            cur.has_content |= is_content(line);
            cur.text.push_str(line);
        }
    }
    docs.push(cur);
    docs
}

/// A YAML node of any shape, with the position of every child: the loader's view of a document
/// before it is typed.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl Node {
    fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The node as a mapping key (scalars only).
    fn as_key(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Bool(b) => Some(b.to_string()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Null => Some("null".to_owned()),
            Node::Seq(_) | Node::Map(_) => None,
        }
    }

    /// For messages: the value itself for scalars, its shape otherwise.
    fn describe(&self) -> String {
        match self {
            Node::Null => "null".to_owned(),
            Node::Str(s) => format!("`{s}`"),
            Node::Seq(_) => "a sequence".to_owned(),
            Node::Map(_) => "a mapping".to_owned(),
            other => format!("`{}`", other.as_key().unwrap_or_default()),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Node, E> {
                Ok(Node::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
                Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<SpecError> {
        match load_str(Path::new("t.yaml"), text) {
            FileLoad::Ok(o) => panic!("expected errors, got {o:?}"),
            FileLoad::Failed(e) => e,
        }
    }

    #[test]
    fn scratch() {
        let texts = [
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  image: x\n  bogus: 1\n",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  replicas: 3\n",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  image: x\n  ports:\n  - target: 80\n    published: 70000\n",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  image: x\n  image: y\n",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  image: x\n  mode: foo\n",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  image: x\n  replicas: -1\n",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  image: [x\n",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  image: x\n  replicas: three\n  healthcheck: {interval: 3x}\n",
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: a\nspec:\n  image: x\n  healthcheck: {interval: 3x}\n",
        ];
        for t in texts {
            for e in errs(t) {
                eprintln!("{e}  // {e:?}");
            }
        }
    }
}
