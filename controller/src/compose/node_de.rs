//! A serde `Deserializer` over the spanned YAML tree, so that compose sections can be derived
//! structs: it casts interpolated strings as the docker CLI casts them, and its errors carry
//! the failing node's origin and field path and never the text of a value.
//!
//! serde stops at a struct's first error, so a derived section reports one invalid value (the
//! first) where the hand-written reader reported every one; sections are read one by one, so a
//! bad value in one section never hides one in another.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use crate::yaml::{Entry, Node, Origin, Value};

/// Why a node does not fit the type asked for: where, and what, without the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct Error {
    /// The failing node's origin and field path; set by the deserializer of that node (it is
    /// `None` only while the error travels out of a visitor).
    pub at: Option<(Origin, String)>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Text(String),
    /// A word outside a closed set: the message names the set after the field
    /// (`unknown condition: none, on-failure or any`), never the word.
    UnknownWord(&'static [&'static str]),
}

impl Error {
    fn text(message: impl Into<String>) -> Error {
        Error {
            at: None,
            kind: Kind::Text(message.into()),
        }
    }

    /// What is wrong, without where.
    pub fn message(&self) -> String {
        match &self.kind {
            Kind::Text(text) => text.clone(),
            Kind::UnknownWord(words) => {
                let path = self.at.as_ref().map_or("", |(_, path)| path.as_str());
                let field = path.rsplit('.').next().unwrap_or(path);
                let field = field.split('[').next().unwrap_or(field);
                format!("unknown {field}: {}", one_of(words))
            }
        }
    }

    /// Located at `node` (path `path`) unless a deeper node already claimed it.
    fn located(mut self, node: &Node, path: &str) -> Error {
        if self.at.is_none() {
            self.at = Some((node.origin.clone(), path.to_owned()));
        }
        self
    }
}

/// `a, b or c`.
fn one_of(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// The kind of a value serde complains about, never the value itself.
fn kind(unexpected: &de::Unexpected<'_>) -> &'static str {
    use de::Unexpected as U;
    match unexpected {
        U::Bool(_) => "a boolean",
        U::Unsigned(_) | U::Signed(_) | U::Float(_) => "a number",
        U::Char(_) | U::Str(_) | U::Bytes(_) => "a string",
        U::Unit => "null",
        U::Option => "an optional value",
        U::Seq => "a list",
        U::Map => "a mapping",
        U::NewtypeStruct
        | U::Enum
        | U::UnitVariant
        | U::NewtypeVariant
        | U::TupleVariant
        | U::StructVariant
        | U::Other(_) => "another kind of value",
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Error {
        Error::text(message.to_string())
    }

    // serde's own messages quote the value (`invalid type: string "hunter2"`): these say its
    // kind only, since a value may be a secret interpolated from the environment.
    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Error {
        Error::text(format!("expected {expected}, found {}", kind(&unexpected)))
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Error {
        Error::text(format!(
            "out of range or invalid: expected {expected}, found {}",
            kind(&unexpected)
        ))
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Error {
        Error {
            at: None,
            kind: Kind::UnknownWord(expected),
        }
    }
}

/// The deserializer of one node; children get their own, with their path.
pub struct NodeDeserializer<'n> {
    node: &'n Node,
    path: String,
}

impl<'n> NodeDeserializer<'n> {
    /// The deserializer of `node`, written at field path `path`.
    pub fn new(node: &'n Node, path: &str) -> NodeDeserializer<'n> {
        NodeDeserializer {
            node,
            path: path.to_owned(),
        }
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, Error> {
        Err(Error::text(message).located(self.node, &self.path))
    }

    fn expected<T>(&self, what: &str) -> Result<T, Error> {
        self.fail(format!("expected {what}, found {}", self.node.describe()))
    }

    fn locate<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|e| e.located(self.node, &self.path))
    }

    /// The node's text if it is a string, trimmed, for the number casts.
    fn trimmed(&self) -> Option<&str> {
        self.node.as_str().map(str::trim)
    }

    fn unsigned<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = match &self.node.value {
            Value::Int(i) => u64::try_from(*i).ok(),
            // Interpolated values are strings; the docker CLI casts them by the schema.
            Value::Str(_) => self.trimmed().and_then(|s| s.parse().ok()),
            _ => None,
        };
        match value {
            Some(v) => self.locate(visitor.visit_u64(v)),
            None => self.fail("expected a non-negative integer"),
        }
    }

    fn signed<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = match &self.node.value {
            Value::Int(i) => i64::try_from(*i).ok(),
            Value::Str(_) => self.trimmed().and_then(|s| s.parse().ok()),
            _ => None,
        };
        match value {
            Some(v) => self.locate(visitor.visit_i64(v)),
            None => self.fail("expected an integer"),
        }
    }

    fn float<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = match &self.node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(_) => self.trimmed().and_then(|s| s.parse().ok()),
            _ => None,
        };
        match value {
            Some(v) => self.locate(visitor.visit_f64(v)),
            None => self.fail("expected a number"),
        }
    }

    fn entries<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let entries: &[Entry] = match &self.node.value {
            Value::Map(entries) => entries,
            // An empty key (`logging:`) is an empty mapping, as the compose loader reads it.
            Value::Null => &[],
            _ => return self.expected("a mapping"),
        };
        let access = MapAccess {
            entries: entries.iter(),
            current: None,
            path: &self.path,
        };
        self.locate(visitor.visit_map(access))
    }
}

macro_rules! forward {
    ($($method:ident => $to:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.$to(visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => match (i64::try_from(*i), u64::try_from(*i)) {
                (Ok(v), _) => visitor.visit_i64(v),
                (_, Ok(v)) => visitor.visit_u64(v),
                _ => visitor.visit_i128(*i),
            },
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(_) => return self.deserialize_seq(visitor),
            Value::Map(_) => return self.entries(visitor),
        };
        self.locate(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let value = match &self.node.value {
            Value::Bool(b) => *b,
            // Interpolated values are strings; the docker CLI casts them by the schema.
            Value::Str(s) => match cast_bool(s) {
                Some(b) => b,
                None => return self.fail("not a boolean: write true or false"),
            },
            _ => return self.expected("a boolean"),
        };
        self.locate(visitor.visit_bool(value))
    }

    forward! {
        deserialize_u8 => unsigned, deserialize_u16 => unsigned, deserialize_u32 => unsigned,
        deserialize_u64 => unsigned, deserialize_i8 => signed, deserialize_i16 => signed,
        deserialize_i32 => signed, deserialize_i64 => signed, deserialize_f32 => float,
        deserialize_f64 => float, deserialize_char => deserialize_string,
        deserialize_str => deserialize_string, deserialize_identifier => deserialize_string,
        deserialize_bytes => deserialize_any, deserialize_byte_buf => deserialize_any,
        deserialize_map => entries,
    }

    /// Numbers and booleans read as strings are their YAML text, as the docker CLI reads them
    /// where the schema says string.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.scalar() {
            Some(text) => self.locate(visitor.visit_string(text)),
            None => self.expected("a string"),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Null => self.locate(visitor.visit_none()),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node.value {
            Value::Null => self.locate(visitor.visit_unit()),
            _ => self.expected("nothing"),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let items: &[Node] = match &self.node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            _ => return self.expected("a list"),
        };
        let access = SeqAccess {
            items: items.iter().enumerate(),
            path: &self.path,
        };
        self.locate(visitor.visit_seq(access))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.entries(visitor)
    }

    /// Unit variants only, written as their word (`condition: on-failure`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node.scalar() {
            Some(word) => {
                let word: de::value::StringDeserializer<Error> = word.into_deserializer();
                self.locate(visitor.visit_enum(word))
            }
            None => self.expected("a string"),
        }
    }

    /// Not looked at, so that a key left out is never refused for its value.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// A string where the compose schema says boolean, cast as the docker CLI casts it.
pub fn cast_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "on" => Some(true),
        "false" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// A child's field path: `parent.key`, or `key` at the root.
pub fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

struct MapAccess<'n, 'p> {
    entries: std::slice::Iter<'n, Entry>,
    current: Option<&'n Entry>,
    path: &'p str,
}

impl<'de> de::MapAccess<'de> for MapAccess<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        let key: de::value::StrDeserializer<'_, Error> = entry.key.as_str().into_deserializer();
        seed.deserialize(key).map(Some).map_err(|e| {
            let path = key_path(self.path, &entry.key);
            Error {
                at: e.at.or(Some((entry.origin.clone(), path))),
                kind: e.kind,
            }
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let entry = self
            .current
            .take()
            .ok_or_else(|| Error::text("a mapping value was asked for before its key"))?;
        let path = key_path(self.path, &entry.key);
        // Located here too: a `deserialize_with` function's own error (a duration that does
        // not parse) is made after the value's deserializer returned.
        seed.deserialize(NodeDeserializer::new(&entry.value, &path))
            .map_err(|e| e.located(&entry.value, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct SeqAccess<'n, 'p> {
    items: std::iter::Enumerate<std::slice::Iter<'n, Node>>,
    path: &'p str,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some((i, item)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{i}]", self.path);
        seed.deserialize(NodeDeserializer::new(item, &path))
            .map(Some)
            .map_err(|e| e.located(item, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use serde::Deserialize;

    use super::*;
    use crate::spec::RestartCondition;
    use crate::yaml::{DuplicateKeys, parse};

    fn from_node<T: de::DeserializeOwned>(node: &Node, path: &str) -> Result<T, Error> {
        T::deserialize(NodeDeserializer::new(node, path)).map_err(|e| e.located(node, path))
    }

    fn tree(text: &str) -> Node {
        parse(Path::new("c.yml"), text, DuplicateKeys::Refuse).unwrap()
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(default)]
    struct Sample {
        enabled: Option<bool>,
        count: Option<u64>,
        offset: Option<i64>,
        ratio: Option<f64>,
        name: Option<String>,
        condition: Option<RestartCondition>,
        words: Vec<String>,
        nested: BTreeMap<String, Option<u16>>,
    }

    fn sample(text: &str) -> Result<Sample, Error> {
        from_node(&tree(text), "s")
    }

    #[test]
    fn interpolated_strings_are_cast_like_the_docker_cli() {
        let s = sample(
            "enabled: 'yes'\ncount: ' 5 '\noffset: '-3'\nratio: '0.5'\nname: 80\ncondition: on-failure\n",
        )
        .unwrap();
        assert_eq!(s.enabled, Some(true));
        assert_eq!(s.count, Some(5));
        assert_eq!(s.offset, Some(-3));
        assert_eq!(s.ratio, Some(0.5));
        assert_eq!(s.name.as_deref(), Some("80"));
        assert_eq!(s.condition, Some(RestartCondition::OnFailure));
    }

    #[test]
    fn null_sections_and_values_are_empty() {
        assert_eq!(
            from_node::<Sample>(&tree("~"), "s").unwrap(),
            Sample::default()
        );
        assert_eq!(sample("count:\nwords:\n").unwrap(), Sample::default());
    }

    #[test]
    fn errors_are_located_at_the_failing_node_and_never_show_the_value() {
        let cases = [
            (
                "enabled: hunter2\n",
                "c.yml:1:10",
                "s.enabled",
                "not a boolean: write true or false",
            ),
            (
                "count: -hunter2\n",
                "c.yml:1:8",
                "s.count",
                "expected a non-negative integer",
            ),
            (
                "offset: [hunter2]\n",
                "c.yml:1:9",
                "s.offset",
                "expected an integer",
            ),
            (
                "ratio: hunter2\n",
                "c.yml:1:8",
                "s.ratio",
                "expected a number",
            ),
            (
                "name: {a: hunter2}\n",
                "c.yml:1:7",
                "s.name",
                "expected a string, found a mapping",
            ),
            (
                "condition: hunter2\n",
                "c.yml:1:12",
                "s.condition",
                "unknown condition: none, on-failure or any",
            ),
            (
                "words: hunter2\n",
                "c.yml:1:8",
                "s.words",
                "expected a list, found a string",
            ),
            (
                "words: [a, [hunter2]]\n",
                "c.yml:1:12",
                "s.words[1]",
                "expected a string",
            ),
            (
                "nested:\n  x: 99999999\n",
                "c.yml:2:6",
                "s.nested.x",
                "out of range or invalid: expected u16, found a number",
            ),
        ];
        for (text, origin, path, message) in cases {
            let e = sample(text).unwrap_err();
            let (at, at_path) = e.at.clone().unwrap();
            assert_eq!(
                (at.to_string().as_str(), at_path.as_str()),
                (origin, path),
                "{text}"
            );
            assert!(e.message().starts_with(message), "{text}: {}", e.message());
            assert!(!e.message().contains("hunter2") && !e.message().contains("99999999"));
        }
    }

    #[test]
    fn a_section_that_is_not_a_mapping_is_refused_where_it_is() {
        let e = from_node::<Sample>(&tree("[a]"), "s").unwrap_err();
        assert_eq!(e.message(), "expected a mapping, found a list");
        assert_eq!(e.at.unwrap().1, "s");
    }
}
