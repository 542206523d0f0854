//! Labels: string maps of a few entries, stored as one sorted vector.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

use litemap::LiteMap;
use schemars::JsonSchema;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A set of labels: sorted by key, and serialized, deserialized, compared and described (JSON
/// schema) exactly like a `BTreeMap<String, String>`, so that a definition's hash and the CRDs
/// do not depend on which of the two holds them.
///
/// Why not a `BTreeMap`: most objects carry one to three labels, and every service holds its
/// labels in the spec and in the desired state (and, while they differ, in the observed one);
/// a `BTreeMap` allocates an eleven-slot leaf for its first entry (540 bytes). The map's
/// methods (`get`, `insert`, `remove`, `iter`, …) are litemap's, through `Deref`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(LiteMap<String, String>);

impl Labels {
    /// No labels.
    pub fn new() -> Self {
        Labels(LiteMap::new())
    }

    /// Whether there are none (a path for `skip_serializing_if`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same labels as a `BTreeMap`, for the objects that keep theirs in one (configs,
    /// secrets and networks: few per swarm).
    pub fn to_btree_map(&self) -> BTreeMap<String, String> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl Deref for Labels {
    type Target = LiteMap<String, String>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Labels {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl FromIterator<(String, String)> for Labels {
    /// Of equal keys the last is kept, as `BTreeMap` does.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Labels(iter.into_iter().collect())
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_tuple_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = <&'a LiteMap<String, String> as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for Labels {
    /// Always a map: litemap writes an empty map as a sequence in human-readable formats (it
    /// cannot tell the key type of an empty map), which would change the spec hash of every
    /// service without labels.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    /// A map of strings, read straight into one vector (no `BTreeMap` on the way: this runs
    /// for every spec of a burst); of a repeated key the last is kept, as a `BTreeMap` does.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;

        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                // What a `BTreeMap` says, so the messages stay the same.
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = map.next_entry::<String, String>()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }

        deserializer.deserialize_map(LabelsVisitor)
    }
}

impl JsonSchema for Labels {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <BTreeMap<String, String> as JsonSchema>::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        <BTreeMap<String, String> as JsonSchema>::schema_id()
    }

    fn inline_schema() -> bool {
        <BTreeMap<String, String> as JsonSchema>::inline_schema()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <BTreeMap<String, String> as JsonSchema>::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(entries: &[(&str, &str)]) -> (Labels, BTreeMap<String, String>) {
        let owned = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        (owned.clone().collect(), owned.collect())
    }

    /// A definition's hash is the SHA-256 of its JSON: labels must write exactly what a
    /// `BTreeMap` wrote, empty or not, or every service would look changed after an upgrade.
    #[test]
    fn labels_serialize_as_a_btreemap_does() {
        for entries in [&[][..], &[("b", "2"), ("a", "1")], &[("only", "one")]] {
            let (labels, map) = both(entries);
            assert_eq!(
                serde_json::to_string(&labels).unwrap(),
                serde_json::to_string(&map).unwrap()
            );
        }
        assert_eq!(serde_json::to_string(&Labels::new()).unwrap(), "{}");
    }

    #[test]
    fn labels_read_sorted_and_the_last_of_a_repeated_key_wins() {
        let labels: Labels = serde_json::from_str(r#"{"z": "1", "a": "2", "m": "3"}"#).unwrap();
        let keys: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "m", "z"]);
        assert_eq!(labels.get("m").map(String::as_str), Some("3"));
        let repeated: Labels = [("k", "first"), ("k", "last")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(repeated.len(), 1);
        assert_eq!(repeated.get("k").map(String::as_str), Some("last"));
        assert!(
            serde_json::from_str::<Labels>("[]").is_err(),
            "a list is not labels"
        );
    }

    #[test]
    fn labels_are_described_as_a_map_of_strings() {
        assert_eq!(
            schemars::schema_for!(Labels),
            schemars::schema_for!(BTreeMap<String, String>)
        );
    }
}
