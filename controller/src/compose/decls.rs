//! The top-level `networks`, `volumes`, `configs` and `secrets` declarations as derived
//! structs, and why each key they leave out is dropped; [`super::model::Reader`] adds what
//! the tree knows (origins, the key as the name of an external object, files resolved inside
//! the compose file's directory).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::fields;
use super::model::{FileObjectDecl, NetworkDecl, VolumeDecl};

/// `external: true`, or the legacy `external: {name: x}`, which also names the object.
#[derive(Debug, Default)]
pub struct External {
    /// Whether the object is external.
    pub is: bool,
    /// The legacy form's name.
    pub name: Option<String>,
}

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Legacy {
            #[serde(default)]
            name: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = External;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E>(self, is: bool) -> Result<External, E> {
                Ok(External { is, name: None })
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<External, E> {
                match super::node_de::cast_bool(text) {
                    Some(is) => Ok(External { is, name: None }),
                    None => Err(E::custom("not a boolean: write true or false")),
                }
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<External, A::Error> {
                let legacy = Legacy::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(External {
                    is: true,
                    name: legacy.name,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A top-level network.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Network {
    name: Option<String>,
    driver: Option<String>,
    #[serde(deserialize_with = "fields::string_map")]
    driver_opts: BTreeMap<String, String>,
    attachable: bool,
    internal: bool,
    #[serde(deserialize_with = "fields::labels")]
    labels: BTreeMap<String, String>,
    external: External,
    ipam: Ipam,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Ipam {
    driver: Option<String>,
    config: Vec<IpamConfig>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IpamConfig {
    subnet: Option<String>,
}

impl From<Network> for NetworkDecl {
    fn from(n: Network) -> NetworkDecl {
        NetworkDecl {
            origin: None,
            name_origin: None,
            // The legacy `external: {name}` wins over `name:`, as in the compose loader.
            name: n.external.name.or(n.name),
            driver: n.driver,
            driver_opts: n.driver_opts,
            attachable: n.attachable,
            internal: n.internal,
            external: n.external.is,
            labels: n.labels,
            ipam_driver: n.ipam.driver,
            subnets: n.ipam.config.into_iter().filter_map(|c| c.subnet).collect(),
        }
    }
}

/// Why a key of a network is left out.
pub fn network_dropped(keys: &[&str]) -> &'static str {
    match keys {
        ["ipam", _, ..] => "ignored by docker stack deploy",
        _ => "not supported by docker stack deploy",
    }
}

/// A top-level volume.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Volume {
    name: Option<String>,
    driver: Option<String>,
    #[serde(deserialize_with = "some_string_map")]
    driver_opts: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "fields::labels")]
    labels: BTreeMap<String, String>,
    external: External,
}

/// `driver_opts` given, even empty, is sent (an empty mapping is not no mapping).
fn some_string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    fields::string_map(d).map(Some)
}

impl From<Volume> for VolumeDecl {
    fn from(v: Volume) -> VolumeDecl {
        VolumeDecl {
            origin: None,
            name_origin: None,
            name: v.external.name.or(v.name),
            driver: v.driver,
            driver_opts: v.driver_opts,
            external: v.external.is,
            labels: v.labels,
        }
    }
}

/// Why a key of a volume is left out.
pub fn volume_dropped(_keys: &[&str]) -> &'static str {
    "not supported by docker stack deploy"
}

/// A top-level config or secret; its `file` is resolved by the reader, which knows the
/// compose file's directory.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FileObject {
    name: Option<String>,
    /// The path as written.
    pub file: Option<String>,
    #[serde(deserialize_with = "fields::labels")]
    labels: BTreeMap<String, String>,
    external: External,
}

impl From<FileObject> for FileObjectDecl {
    fn from(o: FileObject) -> FileObjectDecl {
        FileObjectDecl {
            name_origin: None,
            name: o.external.name.or(o.name),
            file: None,
            external: o.external.is,
            labels: o.labels,
            origin: None,
        }
    }
}

/// Why a key of a config or secret is left out.
pub fn file_object_dropped(keys: &[&str]) -> &'static str {
    match keys {
        ["template_driver" | "driver" | "driver_opts"] => {
            "not supported by the spec kinds (content is always the file)"
        }
        _ => "not supported by docker stack deploy (only `file` and `external`)",
    }
}
