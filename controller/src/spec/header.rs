//! The fields a spec document is dispatched on (`apiVersion`, `kind`, where `metadata.name`
//! is), read without building the document's tree of positions.
//!
//! The tree is what locates any field, but building it costs about three times the typed parse
//! of a small spec (`perf` of `validate --offline` on 5,000 one-service files: 26 % against 7 %),
//! and a reload of a burst of new files waits for all of them. A document whose header reads
//! cleanly and names a known apiVersion and kind goes straight to its typed parse; any other
//! (not a mapping, a wrong or missing apiVersion or kind, a repeated key, a syntax error) is
//! read through the tree as before, whose messages say exactly what is wrong.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use crate::yaml::{self, At, Position};

use super::types::{API_VERSION, KINDS};

/// What a spec document's dispatch needs from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Header {
    /// `apiVersion`, if a string.
    pub api_version: Option<String>,
    /// `kind`, if a string.
    pub kind: Option<String>,
    /// Where `metadata.name` is written, if `metadata` is a mapping that has one.
    pub name_at: Option<Position>,
}

impl Header {
    /// The header of one document's text, or `None` if it is not a mapping or does not parse
    /// (the caller reads it through the tree then, to say why).
    pub fn read(text: &str) -> Option<Header> {
        yaml::from_str::<Header>(text).ok()
    }

    /// The kind and where the name is, if this is a spec's header: the apiVersion and a kind
    /// this operator knows, and a name. Anything else is for the tree to explain.
    pub fn into_spec_dispatch(self) -> Option<(String, Position)> {
        if self.api_version.as_deref() != Some(API_VERSION) {
            return None;
        }
        let kind = self.kind.filter(|k| KINDS.contains(&k.as_str()))?;
        Some((kind, self.name_at?))
    }
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // By hand, not derived: a derived struct also accepts a sequence (its fields in
        // order), and a document that is a list must not pass for a spec.
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let mut header = Header::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "apiVersion" => header.api_version = Some(map.next_value()?),
                        "kind" => header.kind = Some(map.next_value()?),
                        "metadata" => {
                            // A map, not a derived struct, for the same reason: a metadata
                            // that is not a mapping is left to the tree.
                            let metadata: HashMap<String, At> = map.next_value()?;
                            header.name_at = metadata.get("name").map(|At(p)| *p);
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(header)
            }
        }
        deserializer.deserialize_map(HeaderVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_dispatch_fields_and_where_the_name_is() {
        let header = Header::read(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  labels: {a: b}\n  name: web\nspec: {image: x}\n",
        )
        .expect("a header");
        assert_eq!(
            header.api_version.as_deref(),
            Some("swarm-operator.io/v1alpha1")
        );
        assert_eq!(header.kind.as_deref(), Some("SwarmService"));
        assert_eq!(header.name_at, Some((5, 9)));
    }

    #[test]
    fn anything_unusual_is_left_to_the_tree() {
        for text in [
            "- swarm-operator.io/v1alpha1\n- SwarmService\n- {name: web}\n",
            "just a string\n",
            "apiVersion: [1]\nkind: SwarmService\n",
            "kind: SwarmService\nkind: SwarmNetwork\n",
            "metadata: [web]\n",
            "kind: {unclosed\n",
        ] {
            let header = Header::read(text);
            assert!(
                header.is_none() || header.as_ref().is_some_and(|h| h.name_at.is_none()),
                "{text:?} read as {header:?}"
            );
        }
    }
}
