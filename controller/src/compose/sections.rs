//! A service's derived sections (`deploy`'s restart, update, rollback, resources and
//! placement, `credential_spec`, `ulimits`, `configs`/`secrets` references, `networks`, the
//! long syntax of a port or a volume): compose's shape of the spec's types (serde remote
//! definitions, since the spec's own derives read the spec format), and why each key they
//! leave out is dropped.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

use super::fields;
use crate::spec::{
    CredentialSpecSpec, DurationStr, FailureAction, FileMode, FileReference, GenericResourceSpec,
    MemoryQuantity, PlacementPreference, PlacementSpec, Protocol, PublishMode, ResourceAmounts,
    ResourcesSpec, RestartCondition, RestartPolicySpec, UlimitSpec, UpdateOrder, UpdatePolicy,
};

/// `deploy.restart_policy`.
#[derive(Deserialize)]
pub struct RestartPolicy(#[serde(with = "RestartPolicyDef")] pub RestartPolicySpec);

#[derive(Deserialize)]
#[serde(remote = "RestartPolicySpec")]
struct RestartPolicyDef {
    #[serde(default)]
    condition: Option<RestartCondition>,
    #[serde(default, deserialize_with = "fields::duration")]
    delay: Option<DurationStr>,
    #[serde(default)]
    max_attempts: Option<u64>,
    #[serde(default, deserialize_with = "fields::duration")]
    window: Option<DurationStr>,
}

/// Why a key of `restart_policy` is left out.
pub fn restart_policy_dropped(_keys: &[&str]) -> &'static str {
    "not a restart policy option"
}

/// `deploy.update_config` and `deploy.rollback_config`.
#[derive(Deserialize)]
pub struct UpdateConfig(#[serde(with = "UpdatePolicyDef")] pub UpdatePolicy);

#[derive(Deserialize)]
#[serde(remote = "UpdatePolicy")]
struct UpdatePolicyDef {
    #[serde(default)]
    parallelism: Option<u64>,
    #[serde(default, deserialize_with = "fields::duration")]
    delay: Option<DurationStr>,
    #[serde(default)]
    failure_action: Option<FailureAction>,
    #[serde(default, deserialize_with = "fields::duration")]
    monitor: Option<DurationStr>,
    #[serde(default)]
    max_failure_ratio: Option<f64>,
    #[serde(default)]
    order: Option<UpdateOrder>,
}

/// Why a key of `update_config` or `rollback_config` is left out.
pub fn update_config_dropped(_keys: &[&str]) -> &'static str {
    "not an update policy option"
}

/// `deploy.resources`: `pids` is a limit only and `generic_resources` a reservation only, as
/// stack deploy converts them.
#[derive(Deserialize)]
pub struct Resources(#[serde(with = "ResourcesDef")] pub ResourcesSpec);

#[derive(Deserialize)]
#[serde(remote = "ResourcesSpec")]
struct ResourcesDef {
    #[serde(default, deserialize_with = "limits")]
    limits: Option<ResourceAmounts>,
    #[serde(default, deserialize_with = "reservations")]
    reservations: Option<ResourceAmounts>,
}

fn limits<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ResourceAmounts>, D::Error> {
    LimitsDef::deserialize(d).map(Some)
}

fn reservations<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<ResourceAmounts>, D::Error> {
    ReservationsDef::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(remote = "ResourceAmounts")]
struct LimitsDef {
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default, deserialize_with = "fields::memory")]
    memory: Option<MemoryQuantity>,
    /// Needs Engine API 1.41: gated where the section is read.
    #[serde(default)]
    pids: Option<i64>,
    #[serde(skip)]
    generic_resources: Vec<GenericResourceSpec>,
}

#[derive(Deserialize)]
#[serde(remote = "ResourceAmounts")]
struct ReservationsDef {
    #[serde(default)]
    cpus: Option<f64>,
    #[serde(default, deserialize_with = "fields::memory")]
    memory: Option<MemoryQuantity>,
    #[serde(skip)]
    pids: Option<i64>,
    #[serde(default, deserialize_with = "generic_resources")]
    generic_resources: Vec<GenericResourceSpec>,
}

/// `generic_resources: [{discrete_resource_spec: {kind, value}}]`, the only form stack deploy
/// converts.
fn generic_resources<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<GenericResourceSpec>, D::Error> {
    #[derive(Deserialize)]
    struct Item {
        #[serde(default, deserialize_with = "discrete")]
        discrete_resource_spec: Option<GenericResourceSpec>,
    }
    let items = Vec::<Item>::deserialize(d)?;
    Ok(items
        .into_iter()
        .filter_map(|i| i.discrete_resource_spec)
        .collect())
}

fn discrete<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<GenericResourceSpec>, D::Error> {
    #[derive(Deserialize)]
    struct Discrete {
        #[serde(default)]
        kind: Option<String>,
        #[serde(default)]
        value: Option<i64>,
    }
    let Discrete { kind, value } = Discrete::deserialize(d)?;
    match (kind, value) {
        (Some(kind), Some(value)) if !kind.is_empty() && value >= 1 => {
            Ok(Some(GenericResourceSpec { kind, value }))
        }
        _ => Err(serde::de::Error::custom(
            "needs `kind` (e.g. gpu) and a `value` of 1 or more",
        )),
    }
}

/// Why a key of `resources` is left out.
pub fn resources_dropped(keys: &[&str]) -> &'static str {
    match keys {
        [_] => "not a resources option",
        [
            "reservations",
            "generic_resources",
            "discrete_resource_spec",
            _,
        ] => "not a discrete resource option",
        ["reservations", "generic_resources", _] => "not converted by docker stack deploy",
        _ => "not supported by the spec kinds",
    }
}

/// `deploy.placement`.
#[derive(Deserialize)]
pub struct Placement(#[serde(with = "PlacementDef")] pub PlacementSpec);

#[derive(Deserialize)]
#[serde(remote = "PlacementSpec")]
struct PlacementDef {
    #[serde(default, deserialize_with = "fields::strings")]
    constraints: Vec<String>,
    #[serde(default, deserialize_with = "preferences")]
    preferences: Vec<PlacementPreference>,
    /// Needs Engine API 1.40: gated where the section is read.
    #[serde(default, rename = "max_replicas_per_node")]
    max_replicas: Option<u64>,
}

fn preferences<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<PlacementPreference>, D::Error> {
    Ok(Vec::<Preference>::deserialize(d)?
        .into_iter()
        .map(|p| p.0)
        .collect())
}

/// One preference; refused where it was written when it names no attribute to spread over.
#[derive(Deserialize)]
#[serde(try_from = "Spread")]
struct Preference(PlacementPreference);

#[derive(Deserialize)]
struct Spread {
    #[serde(default)]
    spread: Option<String>,
}

impl TryFrom<Spread> for Preference {
    type Error = &'static str;

    fn try_from(s: Spread) -> Result<Preference, &'static str> {
        s.spread
            .map(|spread| Preference(PlacementPreference { spread }))
            .ok_or("a preference must be `spread: <node attribute>`")
    }
}

/// Why a key of `placement` is left out.
pub fn placement_dropped(keys: &[&str]) -> &'static str {
    match keys {
        ["preferences", ..] => "not a placement preference option",
        _ => "not a placement option",
    }
}

/// `credential_spec`: exactly one of `file`, `registry` or `config` (a top-level config's
/// name, resolved in the conversion; gated where the section is read).
#[derive(Deserialize)]
#[serde(try_from = "CredentialSpecKeys")]
pub struct CredentialSpec(pub CredentialSpecSpec);

#[derive(Deserialize)]
struct CredentialSpecKeys {
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    registry: Option<String>,
    #[serde(default)]
    config: Option<String>,
}

impl TryFrom<CredentialSpecKeys> for CredentialSpec {
    type Error = &'static str;

    fn try_from(k: CredentialSpecKeys) -> Result<CredentialSpec, &'static str> {
        let given = [k.file.is_some(), k.registry.is_some(), k.config.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("give exactly one of `file`, `registry` or `config`");
        }
        Ok(CredentialSpec(CredentialSpecSpec {
            file: k.file,
            registry: k.registry,
            config: k.config,
            external: false,
        }))
    }
}

/// Why a key of `credential_spec` is left out.
pub fn credential_spec_dropped(_keys: &[&str]) -> &'static str {
    "not a credential_spec option"
}

/// `ulimits`: per name, one number for both limits or `{soft, hard}` (a missing one is 0).
#[derive(Deserialize)]
pub struct Ulimits(pub BTreeMap<String, Ulimit>);

/// One ulimit.
pub struct Ulimit(pub UlimitSpec);

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct SoftHard {
            #[serde(default)]
            soft: i64,
            #[serde(default)]
            hard: i64,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ulimit, E> {
                Ok(Ulimit(UlimitSpec { soft: v, hard: v }))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ulimit, E> {
                let v = i64::try_from(v).map_err(|_| E::custom("expected an integer"))?;
                self.visit_i64(v)
            }
            // Interpolated values are strings; the docker CLI casts them by the schema.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ulimit, E> {
                let v = v
                    .trim()
                    .parse()
                    .map_err(|_| E::custom("expected an integer"))?;
                self.visit_i64(v)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                let SoftHard { soft, hard } =
                    SoftHard::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Ulimit(UlimitSpec { soft, hard }))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a key of `ulimits` is left out.
pub fn ulimits_dropped(_keys: &[&str]) -> &'static str {
    "not a ulimit option"
}

/// A service's `configs` or `secrets`: names, or `{source, target, uid, gid, mode}`.
#[derive(Deserialize)]
pub struct FileRefs(pub Vec<FileRef>);

/// One reference.
pub struct FileRef(pub FileReference);

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Long {
            #[serde(default)]
            source: Option<String>,
            #[serde(default)]
            target: Option<String>,
            #[serde(default)]
            uid: Option<String>,
            #[serde(default)]
            gid: Option<String>,
            #[serde(default, deserialize_with = "file_mode")]
            mode: Option<FileMode>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_unit<E>(self) -> Result<FileRef, E> {
                Ok(FileRef(FileReference::default()))
            }
            fn visit_str<E>(self, name: &str) -> Result<FileRef, E> {
                Ok(FileRef(FileReference {
                    name: name.to_owned(),
                    ..FileReference::default()
                }))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<FileRef, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileRef, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileRef, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FileRef, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<FileRef, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FileRef(FileReference {
                    name: long.source.unwrap_or_default(),
                    target: long.target,
                    uid: long.uid,
                    gid: long.gid,
                    mode: long.mode,
                    external: false,
                }))
            }
        }
        d.deserialize_any(V)
    }
}

/// An octal file mode (`0440`, `"0440"`).
fn file_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<FileMode>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    // The YAML parser reads `0440` as a float; its digits are the mode.
    let text = text.strip_suffix(".0").unwrap_or(&text);
    FileMode::parse_octal(text)
        .map(Some)
        .ok_or_else(|| de::Error::custom("not an octal file mode like 0440"))
}

/// Why a key of a config or secret reference is left out.
pub fn file_refs_dropped(_keys: &[&str]) -> &'static str {
    "not a config/secret reference option"
}

/// A service's `networks`: a list of names, or a mapping of name to null or `{aliases}`
/// (`None`: no aliases given).
pub struct Networks(pub BTreeMap<String, Option<Vec<String>>>);

impl<'de> Deserialize<'de> for Networks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Attachment {
            #[serde(default, deserialize_with = "some_strings")]
            aliases: Option<Vec<String>>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Networks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list or mapping of networks")
            }
            fn visit_unit<E>(self) -> Result<Networks, E> {
                Ok(Networks(BTreeMap::new()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Networks, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(name) = seq.next_element::<Option<String>>()? {
                    out.extend(name.map(|n| (n, None)));
                }
                Ok(Networks(out))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Networks, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((name, attachment)) =
                    map.next_entry::<String, Option<Attachment>>()?
                {
                    out.insert(name, attachment.and_then(|a| a.aliases));
                }
                Ok(Networks(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `aliases:` given, even empty, is a list (null is an empty one).
fn some_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    fields::strings(d).map(Some)
}

/// Why a key of a service's network attachment is left out.
pub fn networks_dropped(_keys: &[&str]) -> &'static str {
    "not supported by swarm services"
}

/// A port's long syntax (the short one is one string, read by hand); `target` is required by
/// the reader, which says so at the port.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LongPort {
    pub target: Option<u16>,
    pub published: Option<u16>,
    pub protocol: Option<Protocol>,
    pub mode: Option<PublishMode>,
}

/// Why a key of a port is left out.
pub fn port_dropped(keys: &[&str]) -> &'static str {
    match keys {
        ["host_ip" | "name" | "app_protocol"] => "ignored by docker stack deploy",
        _ => "not a port option",
    }
}

/// A service volume's long syntax (the short one is one string, read by hand).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LongVolume {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub read_only: bool,
    pub bind: BindOptions,
    pub volume: VolumeOptions,
    pub tmpfs: TmpfsOptions,
}

/// `bind:` of a volume.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct BindOptions {
    pub propagation: Option<String>,
}

/// `volume:` of a volume.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct VolumeOptions {
    pub nocopy: Option<bool>,
}

/// `tmpfs:` of a volume.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TmpfsOptions {
    #[serde(deserialize_with = "fields::ram_bytes")]
    pub size: Option<u64>,
}

/// Why a key of a volume is left out.
pub fn volume_dropped(keys: &[&str]) -> &'static str {
    match keys {
        ["consistency"] => "only meaningful on Docker Desktop for Mac",
        ["bind" | "volume" | "tmpfs", _] => "not supported by docker stack deploy",
        _ => "not a volume option",
    }
}
