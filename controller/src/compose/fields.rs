//! The compose format's value forms that derived sections name with `deserialize_with`
//! (durations, sizes, a string or a list, mappings of strings), read as the docker CLI reads
//! them; their errors say what form was expected, never the value.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::spec::{DurationStr, MemoryQuantity};

/// An optional duration in Go's syntax (`10s`, `1m30s`, `1.5s`).
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DurationStr>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    crate::spec::quantity::parse_duration(text.trim())
        .map(|d| Some(DurationStr(d)))
        .map_err(|_| de::Error::custom("not a duration like `10s`, `1m30s`, `1.5s`"))
}

/// A mapping of strings; entries without a value are left out (as the compose loader does).
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = BTreeMap::<String, Option<String>>::deserialize(d)?;
    Ok(map.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
}

/// Labels: [`key_values`], a `KEY` without value having an empty one.
pub fn labels<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let pairs = key_values(d)?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// Compose's "list or dict": a mapping, or a list of `KEY=VALUE` (`None`: a `KEY` alone, or a
/// mapping value that is null or not a scalar); a null list item is left out.
pub fn key_values<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, Option<String>>, D::Error> {
    /// A mapping value's text, if it is a scalar.
    struct Text(Option<String>);
    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(Text(match OneOrMany::deserialize(d) {
                Ok(OneOrMany::One(text)) => Some(text),
                _ => None,
            }))
        }
    }
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, Option<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping or a list of `KEY=VALUE`")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((key, Text(value))) = map.next_entry::<String, Text>()? {
                out.insert(key, value);
            }
            Ok(out)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(item) = seq.next_element::<Option<String>>()? {
                let Some(text) = item else { continue };
                match text.split_once('=') {
                    Some((k, v)) => out.insert(k.to_owned(), Some(v.to_owned())),
                    None => out.insert(text, None),
                };
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// A value that is one [`key_values`] form as a whole, to read with `Reader::section`.
#[derive(serde::Deserialize)]
pub struct KeyValues(
    #[serde(deserialize_with = "key_values")] pub BTreeMap<String, Option<String>>,
);

/// A string or a list of strings (compose's `string_or_list`): a string is a list of one.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(text) => vec![text],
        OneOrMany::Many(items) => items,
    })
}

/// A healthcheck `test`: a list (`[CMD, curl, …]`), or a string, which is a shell command
/// (docker: `CMD-SHELL`).
pub fn healthcheck_test<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(text) => vec!["CMD-SHELL".to_owned(), text],
        OneOrMany::Many(items) => items,
    })
}

/// A scalar (its YAML text), a list of them (null items left out), or null (an empty list).
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_unit<E>(self) -> Result<OneOrMany, E> {
                Ok(OneOrMany::Many(Vec::new()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(v.to_owned()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Option<String>>()? {
                    items.extend(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// An optional memory size, as [`ram_bytes`].
pub fn memory<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MemoryQuantity>, D::Error> {
    Ok(ram_bytes(d)?.map(MemoryQuantity))
}

/// An optional size as `docker stack deploy` reads `memory:` and a tmpfs `size:` (docker's
/// `RAMInBytes`: `512M`, `1g`, `64kb`, powers of 1024) or a number of bytes; a negative number
/// is no size.
pub fn ram_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_unit<E>(self) -> Result<Option<u64>, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, v: u64) -> Result<Option<u64>, E> {
            Ok(Some(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Option<u64>, E> {
            Ok(u64::try_from(v).ok())
        }
        fn visit_i128<E>(self, v: i128) -> Result<Option<u64>, E> {
            Ok(u64::try_from(v).ok())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<u64>, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<u64>, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<u64>, E> {
            super::model::parse_ram_bytes(v)
                .map(Some)
                .ok_or_else(|| E::custom("not a size like `512M`, `1g`, `64k`"))
        }
    }
    d.deserialize_any(V)
}
