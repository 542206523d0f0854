//! Where things are in spec files: [`Located`] values, per-field positions, and [`SpecError`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A 1-based line and column in a spec file.
pub type Position = (usize, usize);

/// Line and column of every field of one document, keyed by field path
/// (`metadata.name`, `spec.ports[1].published`, `spec.env.RUST_LOG`).
///
/// The position of a path is where its value starts (for a mapping entry: the value, not the
/// key). Built by the loader from the YAML itself, so validation can point at a field even
/// though the typed values carry no spans.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldLocations {
    fields: BTreeMap<String, Position>,
    keys: BTreeMap<String, Position>,
}

impl FieldLocations {
    /// Records the position of `path`.
    pub fn insert(&mut self, path: impl Into<String>, position: Position) {
        self.fields.insert(path.into(), position);
    }

    /// Records the position of the key of mapping entry `path`.
    pub fn insert_key(&mut self, path: impl Into<String>, position: Position) {
        self.keys.insert(path.into(), position);
    }

    /// The path of the mapping entry whose key starts exactly at `position`.
    pub fn key_path_at(&self, position: Position) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, p)| **p == position)
            .map(|(k, _)| k.as_str())
    }

    /// The position of exactly `path`.
    pub fn get(&self, path: &str) -> Option<Position> {
        self.fields.get(path).copied()
    }

    /// The position of `path`, or of its nearest recorded ancestor (`spec.ports[1].published`
    /// falls back to `spec.ports[1]`, then `spec.ports`, then `spec`).
    pub fn nearest(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(p) = self.get(path) {
                return Some(p);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    /// The field path whose value starts exactly at `position`, preferring the deepest one.
    pub fn path_at(&self, position: Position) -> Option<&str> {
        self.fields
            .iter()
            .filter(|(_, p)| **p == position)
            .max_by_key(|(k, _)| k.len())
            .map(|(k, _)| k.as_str())
    }

    /// Every recorded path and its position.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Position)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// The field positions of one loaded document, found again from its text when first asked
/// for. They are needed only to locate an error, and recorded for every document they cost
/// more than the object itself (two maps of every field path: about 3 kB for a small service
/// spec, where its text is 300 bytes).
#[derive(Default)]
pub struct DocumentFields {
    source: TextSource,
    /// Boxed: asked for by a rare error, and 56 bytes inline in every document's.
    found: std::sync::OnceLock<Box<FieldLocations>>,
}

/// Where a document's text is found when its positions are first asked for.
#[derive(Default, PartialEq)]
enum TextSource {
    /// No text: positions are those of the document (a value built without one).
    #[default]
    Nothing,
    /// The text itself, padded with empty lines so positions are those of the file: while
    /// it is loaded, and for a document not read from a spec file of its own.
    Kept(Box<str>),
    /// The document of its spec file whose text has this digest, read again when needed:
    /// kept, the texts of every loaded document were as large as the objects' own strings
    /// (1.8 MB at 5,000 specs) for the rare error that needs them. A file changed since
    /// is read again anyway: its errors point at the document until then.
    InFile { digest: u64 },
}

/// A digest of a document's text, to recognise it in its file again (within one process).
fn text_digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

impl DocumentFields {
    /// Positions to be read from `text` when first needed.
    pub fn deferred(text: &str) -> Self {
        DocumentFields {
            source: TextSource::Kept(text.into()),
            found: std::sync::OnceLock::new(),
        }
    }

    /// The same positions, the text dropped: it is the document of the object's spec file,
    /// found there again if an error ever needs it.
    #[must_use]
    pub fn found_in_file(self) -> Self {
        let source = match self.source {
            TextSource::Kept(text) => TextSource::InFile {
                digest: text_digest(&text),
            },
            other => other,
        };
        DocumentFields {
            source,
            found: self.found,
        }
    }

    /// The positions (read from the text on the first call; from `file`, the object's spec
    /// file, if the text was dropped).
    pub fn locations(&self, file: &Path) -> &FieldLocations {
        self.found.get_or_init(|| {
            Box::new(match &self.source {
                TextSource::Nothing => FieldLocations::default(),
                TextSource::Kept(text) => super::load::field_locations(text),
                TextSource::InFile { digest } => {
                    super::load::document_again(file, |text| text_digest(text) == *digest)
                        .map(|text| super::load::field_locations(&text))
                        .unwrap_or_default()
                }
            })
        })
    }
}

impl fmt::Debug for DocumentFields {
    /// Never the text: a secret's document holds its content.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            TextSource::Nothing => write!(f, "DocumentFields(none)"),
            TextSource::Kept(text) => write!(f, "DocumentFields(<{} bytes>)", text.len()),
            TextSource::InFile { .. } => write!(f, "DocumentFields(<in its file>)"),
        }
    }
}

impl PartialEq for DocumentFields {
    /// The same text has the same positions.
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Building field paths the way the loader records them: `spec.ports[1].published`, and keys
/// that are not plain identifiers quoted: `metadata.labels["app.kubernetes.io/name"]`.
pub mod field_path {
    /// The path of entry `key` of the mapping at `parent`.
    pub fn key(parent: &str, key: &str) -> String {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match (parent.is_empty(), plain) {
            (true, true) => key.to_owned(),
            (false, true) => format!("{parent}.{key}"),
            (_, false) => format!("{parent}[{key:?}]"),
        }
    }

    /// The path of item `index` of the sequence at `parent`.
    pub fn index(parent: &str, index: usize) -> String {
        format!("{parent}[{index}]")
    }
}

/// A value loaded from a spec file, with where it came from.
///
/// `line`/`column` point at the document's `metadata.name` value (or the document start when
/// that is missing). `fields` finds the position of every field of the document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Located<T> {
    pub value: T,
    /// The file it was read from. Shared: a file's objects are held by the load cache and by
    /// the last good objects, and cloned into every reload.
    pub file: std::sync::Arc<Path>,
    /// 1-based line of `metadata.name` (or of the document).
    pub line: usize,
    /// 1-based column of `metadata.name` (or of the document).
    pub column: usize,
    /// Positions of the document's fields, for field-level error locations. Shared: objects
    /// are cloned on every reload, their locations never change.
    #[serde(skip)]
    pub fields: std::sync::Arc<DocumentFields>,
}

impl<T> Located<T> {
    /// A located value without field positions (e.g. in tests); errors about its fields then
    /// point at `line:column`.
    pub fn new(value: T, file: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        Located {
            value,
            file: std::sync::Arc::from(file.into()),
            line,
            column,
            fields: std::sync::Arc::default(),
        }
    }

    /// `value` at this value's place (file, position, field positions).
    pub fn with_value<U>(&self, value: U) -> Located<U> {
        Located {
            value,
            file: std::sync::Arc::clone(&self.file),
            line: self.line,
            column: self.column,
            fields: std::sync::Arc::clone(&self.fields),
        }
    }

    /// An error about field `field` of this value, located at that field when its position is
    /// known, else at the nearest enclosing field, else at the document.
    pub fn error_at(&self, field: impl Into<String>, message: impl Into<String>) -> SpecError {
        let field = field.into();
        let (line, column) = self
            .fields
            .locations(&self.file)
            .nearest(&field)
            .unwrap_or((self.line, self.column));
        SpecError {
            file: self.file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            field,
            message: message.into(),
        }
    }
}

/// One problem in the spec directory, located as precisely as possible.
///
/// Displays as `file:line:column: field: message` (parts that are unknown are left out) and
/// serializes to the status file's `errors[]` shape: `file, line, column, field, message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct SpecError {
    /// The file the problem is in (or the directory, if it could not be read).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The field path, like `spec.ports[1].published`; empty when the problem is not about one
    /// field (syntax errors, a whole document).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl SpecError {
    /// An error about a whole file (no position, no field).
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        SpecError {
            file: file.into(),
            line: None,
            column: None,
            field: String::new(),
            message: message.into(),
        }
    }

    /// An error at a position.
    pub fn at(
        file: &Path,
        position: Option<Position>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        SpecError {
            file: file.to_owned(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for SpecError {}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {name: a}\nspec:\n  image: img:1\n";

    #[test]
    fn a_dropped_text_is_found_again_in_its_file_and_only_there() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.yaml");
        // A document after a marker line: its text padded as the loader splits the file.
        let content = format!("---{TEXT}");
        std::fs::write(&file, &content).unwrap();
        let padded = crate::spec::load::split_documents(&content)
            .into_iter()
            .find(|d| d.has_content)
            .unwrap()
            .text;
        let fields = DocumentFields::deferred(&padded).found_in_file();
        assert_eq!(format!("{fields:?}"), "DocumentFields(<in its file>)");
        assert_eq!(fields.locations(&file).get("spec.image"), Some((6, 10)));

        // Changed since: no position rather than a wrong one (errors then point at the document).
        let stale = DocumentFields::deferred(&padded).found_in_file();
        std::fs::write(&file, format!("---{}", TEXT.replace("img:1", "img:2"))).unwrap();
        assert!(stale.locations(&file).is_empty());
        let gone = DocumentFields::deferred(&padded).found_in_file();
        assert!(gone.locations(&dir.path().join("gone.yaml")).is_empty());
    }
}
