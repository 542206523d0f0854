//! YAML text read one way for spec files and compose files alike: one set of parser limits, a
//! tree that remembers where every node was written, typed values, and errors with their
//! position and without the text they were found in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter as _, Spanned};

/// Files larger than this are rejected unread, spec files and compose files alike: both are
/// small, and this bounds memory (the parser's scalar budget is the same size).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// How deep a document may nest: real ones reach 7 (`services.x.deploy.resources.limits` …),
/// and every later step (interpolation, conversion, field paths) recurses once per level.
pub const MAX_DEPTH: usize = 32;

/// A 1-based line and column.
pub type Position = (usize, usize);

/// What to do when a mapping repeats a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateKeys {
    /// Refuse the document, at the repeated key.
    Refuse,
    /// Keep both entries in the tree: a later typed parse refuses them, and can then say at
    /// which field path, because the tree it looks the path up in was built.
    Keep,
}

/// Parser options: a budget far above any real spec or compose file but small enough that
/// alias bombs ("billion laughs"), deep nesting in either style and giant documents fail fast,
/// with their position; and no source snippet in messages (it could show a value).
fn options(duplicate_keys: DuplicateKeys) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 100_000;
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    budget.max_recorded_anchor_events = 100_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.duplicate_keys = match duplicate_keys {
        DuplicateKeys::Refuse => DuplicateKeyPolicy::Error,
        DuplicateKeys::Keep => DuplicateKeyPolicy::PassThrough,
    };
    options.with_snippet = false;
    options
}

/// Where a node is: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file.
    pub file: Arc<PathBuf>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Origin {
    /// Line and column, if the parser knew them (it does not for an empty document).
    pub fn position(&self) -> Option<Position> {
        (self.line > 0).then_some((self.line, self.column))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A YAML node with its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Where it was written.
    pub origin: Origin,
}

/// A YAML value; mapping keys are kept in file order with their own origins.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer (wide enough for any the parser reads, so that the tree never refuses a
    /// number the typed parse would report better).
    Int(i128),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<Entry>),
}

/// One entry of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key, as text (`null`, `true`, `5` for scalar keys of those kinds; empty for a
    /// collection used as a key).
    pub key: String,
    /// Where the key was written.
    pub origin: Origin,
    /// The value.
    pub value: Node,
}

impl Node {
    /// The entries, if this is a mapping.
    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value of mapping key `key` (the first, if the key is repeated).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar (numbers and booleans as YAML writes them); `None` for null and
    /// collections.
    pub fn scalar(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// What kind of node this is, for messages that must not show the value.
    pub fn describe(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Calls `visit(path, key origin, node)` for every mapping entry and sequence item below
    /// this node, parents first; `path` is built with `key(parent, key)` and
    /// `index(parent, i)`, and the key origin is `None` for sequence items.
    pub fn walk(
        &self,
        path: &str,
        key: &dyn Fn(&str, &str) -> String,
        index: &dyn Fn(&str, usize) -> String,
        visit: &mut dyn FnMut(&str, Option<&Origin>, &Node),
    ) {
        match &self.value {
            Value::Map(entries) => {
                for entry in entries {
                    let child = key(path, &entry.key);
                    visit(&child, Some(&entry.origin), &entry.value);
                    entry.value.walk(&child, key, index, visit);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let child = index(path, i);
                    visit(&child, None, item);
                    item.walk(&child, key, index, visit);
                }
            }
            _ => {}
        }
    }
}

/// Why a YAML text could not be parsed, located and free of the text's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", file.display(), at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ParseError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when the parser knows them.
    pub at: Option<Position>,
    /// The parser's message, without its position.
    pub message: String,
}

impl ParseError {
    /// The parser's error for `file`.
    pub fn new(file: &Path, err: &serde_saphyr::Error) -> ParseError {
        ParseError {
            file: file.to_owned(),
            at: error_position(err),
            message: error_message(err),
        }
    }
}

/// Where the parser's error is, if it knows.
pub fn error_position(err: &serde_saphyr::Error) -> Option<Position> {
    err.without_snippet()
        .location()
        .filter(|l| l.line() > 0)
        .map(position)
}

/// The parser's message without its position or a snippet of the text; a breach of the
/// budget says what the budget is for.
pub fn error_message(err: &serde_saphyr::Error) -> String {
    let err = err.without_snippet();
    let message = serde_saphyr::DefaultMessageFormatter
        .format_message(err)
        .into_owned();
    // The budget breach may come wrapped (an alias's error carries where it was used).
    let mut inner = err;
    while let serde_saphyr::Error::AliasError { error, .. }
    | serde_saphyr::Error::WithSnippet { error, .. } = inner
    {
        inner = error;
    }
    match inner {
        serde_saphyr::Error::Budget { .. } => format!(
            "the file is over the parser's limits (anchors and aliases expanded, nodes, size or \
             nesting), like an alias bomb: {message}"
        ),
        _ => message,
    }
}

/// Parses one YAML document into a tree whose nodes know `file` and their position.
pub fn parse(file: &Path, text: &str, duplicate_keys: DuplicateKeys) -> Result<Node, ParseError> {
    let raw: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options(duplicate_keys))
        .map_err(|e| ParseError::new(file, &e))?;
    Ok(convert(raw, &Arc::new(file.to_owned())))
}

/// Deserialises one YAML document into `T`, with the same limits as [`parse`] and repeated
/// keys refused. The error is the parser's: turn it into a located message with
/// [`error_position`] and [`error_message`], or with the caller's own knowledge of fields.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, options(DuplicateKeys::Refuse))
}

/// Where a value was written, its content skipped: for a typed reader that needs one field's
/// position without building the whole tree of positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At(pub Position);

impl<'de> Deserialize<'de> for At {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<de::IgnoredAny>::deserialize(deserializer)?;
        Ok(At(position(spanned.referenced)))
    }
}

/// A parser location as a 1-based position: the one conversion, so that a node of the tree,
/// an [`At`] and an error at the same place agree.
fn position(l: serde_saphyr::Location) -> Position {
    (l.line() as usize, l.column().max(1) as usize)
}

fn origin<T>(s: &Spanned<T>, file: &Arc<PathBuf>) -> Origin {
    let (line, column) = position(s.referenced);
    Origin {
        file: Arc::clone(file),
        line,
        column,
    }
}

fn convert(raw: Spanned<Raw>, file: &Arc<PathBuf>) -> Node {
    let at = origin(&raw, file);
    let value = match raw.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => Value::Bool(b),
        Raw::Int(i) => Value::Int(i),
        Raw::Float(f) => Value::Float(f),
        Raw::Str(s) => Value::Str(s),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|i| convert(i, file)).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| Entry {
                    origin: origin(&k, file),
                    key: k.value.key_text(),
                    value: convert(v, file),
                })
                .collect(),
        ),
    };
    Node { value, origin: at }
}

/// What the parser hands over, before origins are attached.
enum Raw {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl Raw {
    fn key_text(&self) -> String {
        match self {
            Raw::Str(s) => s.clone(),
            Raw::Int(i) => i.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Bool(b) => b.to_string(),
            Raw::Null => "null".to_owned(),
            Raw::Seq(_) | Raw::Map(_) => String::new(),
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
                Raw::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
                Ok(Raw::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
                Ok(Raw::Int(i128::try_from(v).unwrap_or(i128::MAX)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw::Str(v))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Raw, E> {
                Ok(Raw::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Raw::Seq(items))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Raw::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Node {
        parse(Path::new("stack.yml"), text, DuplicateKeys::Refuse).unwrap()
    }

    #[test]
    fn nodes_know_file_and_line() {
        let root = tree("services:\n  web:\n    image: nginx\n    ports: [\"80:80\"]\n");
        let web = root.get("services").unwrap().get("web").unwrap();
        let image = web.get("image").unwrap();
        assert_eq!(image.scalar().as_deref(), Some("nginx"));
        assert_eq!(image.origin.to_string(), "stack.yml:3:12");
        let key = &web.entries().unwrap()[1];
        assert_eq!((key.key.as_str(), key.origin.line), ("ports", 4));
    }

    #[test]
    fn anchors_and_merge_keys_resolve() {
        let root = tree(
            "x-common: &common\n  restart: always\nservices:\n  a:\n    <<: *common\n    image: a\n",
        );
        let a = root.get("services").unwrap().get("a").unwrap();
        assert_eq!(
            a.get("restart").unwrap().scalar().as_deref(),
            Some("always")
        );
    }

    #[test]
    fn nesting_is_bounded_in_both_styles() {
        let flow = format!(
            "x: {}{}\n",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let mut block = String::new();
        for i in 0..=MAX_DEPTH {
            block.push_str(&format!("{}k{i}:\n", "  ".repeat(i)));
        }
        for text in [flow, block] {
            let e = parse(Path::new("d.yml"), &text, DuplicateKeys::Refuse).unwrap_err();
            assert!(e.at.is_some(), "located: {e}");
        }
        let ok = format!("x: {}{}\n", "[".repeat(8), "]".repeat(8));
        assert!(parse(Path::new("d.yml"), &ok, DuplicateKeys::Refuse).is_ok());
    }

    #[test]
    fn repeated_keys_are_refused_or_kept_as_asked() {
        let text = "a: 1\nb: 2\na: 3\n";
        let e = parse(Path::new("r.yml"), text, DuplicateKeys::Refuse).unwrap_err();
        assert_eq!(e.at.map(|(line, _)| line), Some(3), "{e}");
        let kept = parse(Path::new("r.yml"), text, DuplicateKeys::Keep).unwrap();
        let keys: Vec<_> = kept.entries().unwrap().iter().map(|e| &e.key).collect();
        assert_eq!(keys, ["a", "b", "a"]);
    }

    #[test]
    fn alias_bombs_are_refused_with_the_budget_named() {
        let mut text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n".to_owned();
        for i in 1..8 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(Path::new("b.yml"), &text, DuplicateKeys::Refuse).unwrap_err();
        assert!(e.message.contains("parser's limits"), "{e}");
    }

    #[test]
    fn huge_integers_stay_numbers_in_the_tree() {
        let root = tree("size: 18446744073709551615\n");
        assert_eq!(root.get("size").unwrap().value, Value::Int(u64::MAX.into()));
    }

    #[test]
    fn walk_visits_every_entry_and_item_with_its_path() {
        let root = tree("a:\n  b: [x, y]\n");
        let mut seen = Vec::new();
        root.walk(
            "",
            &|parent, key| {
                if parent.is_empty() {
                    key.to_owned()
                } else {
                    format!("{parent}.{key}")
                }
            },
            &|parent, i| format!("{parent}[{i}]"),
            &mut |path, key, node| seen.push((path.to_owned(), key.is_some(), node.origin.line)),
        );
        assert_eq!(
            seen,
            [
                ("a".to_owned(), true, 2),
                ("a.b".to_owned(), true, 2),
                ("a.b[0]".to_owned(), false, 2),
                ("a.b[1]".to_owned(), false, 2),
            ]
        );
    }
}
