//! A compose file as an untyped YAML tree that remembers, for every node, the file and line it
//! came from (so that the import report can say where a dropped key was), before it is
//! interpolated, merged and converted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde::de;
use serde_saphyr::Spanned;

/// Where a node is: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The compose file.
    pub file: Arc<PathBuf>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
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
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping: `(key, key origin, value)` in file order.
    Map(Vec<Entry>),
}

/// One entry of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key, as text.
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

    /// The value of mapping key `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
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

    /// What kind of node this is, for messages.
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
}

/// Why a compose file could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", file.display(), at.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ParseError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column, when the parser knows them.
    pub at: Option<(usize, usize)>,
    /// The parser's message, without its position.
    pub message: String,
}

impl ParseError {
    fn new(file: &Path, err: &serde_saphyr::Error) -> ParseError {
        use serde_saphyr::MessageFormatter as _;
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
        let message = match inner {
            serde_saphyr::Error::Budget { .. } => format!(
                "the file is over the parser's limits (anchors and aliases expanded, nodes, size \
                 or nesting), like an alias bomb: {message}"
            ),
            _ => message,
        };
        ParseError {
            file: file.to_owned(),
            at: err
                .location()
                .filter(|l| l.line() > 0)
                .map(|l| (l.line() as usize, l.column().max(1) as usize)),
            message,
        }
    }
}

/// How deep a compose file may nest: real ones reach 7 (`services.x.deploy.resources.limits`
/// …), and every later step (interpolation, conversion) recurses once per level.
pub const MAX_DEPTH: usize = 32;

/// Parser options: a budget far above any real compose file but small enough that alias bombs
/// ("billion laughs"), deep nesting and giant documents fail fast, with their position; and no
/// source snippet in messages (it could show a value).
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_nodes = 100_000;
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = super::source::MAX_COMPOSE_BYTES as usize;
    budget.max_recorded_anchor_events = 100_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.with_snippet = false;
    options
}

/// Parses one compose file's text. An empty file is an empty mapping.
pub fn parse(file: &Path, text: &str) -> Result<Node, ParseError> {
    let options = options();
    let raw: Spanned<Raw> = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| ParseError::new(file, &e))?;
    let file = Arc::new(file.to_owned());
    let node = convert(raw, &file);
    Ok(match node.value {
        Value::Null => Node {
            value: Value::Map(Vec::new()),
            origin: node.origin,
        },
        _ => node,
    })
}

fn origin<T>(s: &Spanned<T>, file: &Arc<PathBuf>) -> Origin {
    let l = s.referenced;
    Origin {
        file: Arc::clone(file),
        line: l.line() as usize,
        column: l.column().max(1) as usize,
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
    Int(i64),
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
                Ok(Raw::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
                i64::try_from(v)
                    .map(Raw::Int)
                    .map_err(|_| E::custom(format!("{v} is too large")))
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

    #[test]
    fn nodes_know_file_and_line() {
        let text = "services:\n  web:\n    image: nginx\n    ports: [\"80:80\"]\n";
        let root = parse(Path::new("stack.yml"), text).unwrap();
        let web = root.get("services").unwrap().get("web").unwrap();
        let image = web.get("image").unwrap();
        assert_eq!(image.scalar().as_deref(), Some("nginx"));
        assert_eq!(image.origin.to_string(), "stack.yml:3:12");
        let key = &web.entries().unwrap()[1];
        assert_eq!((key.key.as_str(), key.origin.line), ("ports", 4));
    }

    #[test]
    fn anchors_and_merge_keys_resolve() {
        let text = "x-common: &common\n  restart: always\nservices:\n  a:\n    <<: *common\n    image: a\n";
        let root = parse(Path::new("s.yml"), text).unwrap();
        let a = root.get("services").unwrap().get("a").unwrap();
        assert_eq!(
            a.get("restart").unwrap().scalar().as_deref(),
            Some("always")
        );
    }

    #[test]
    fn empty_file_is_an_empty_mapping() {
        let root = parse(Path::new("e.yml"), "# nothing\n").unwrap();
        assert_eq!(root.entries().map(<[Entry]>::len), Some(0));
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
            let e = parse(Path::new("d.yml"), &text).unwrap_err();
            assert!(e.at.is_some(), "located: {e}");
        }
        let ok = format!("x: {}{}\n", "[".repeat(8), "]".repeat(8));
        assert!(parse(Path::new("d.yml"), &ok).is_ok());
    }
}
