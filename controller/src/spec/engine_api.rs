//! Which service fields need which Docker Engine API version, checked against an engine's.
//!
//! An engine silently drops a field its API version does not know (Docker 20.10, API 1.41,
//! stores a service with `oomScoreAdj` as one without it), so the service would run without
//! what its spec says and never converge. A field above the engine's version is therefore a
//! located error at validation instead.

use std::fmt;
use std::str::FromStr;

use super::located::{Located, SpecError};
use super::types::{Object, ServiceMode, ServiceSpec};

/// An Engine API version such as `1.41`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EngineApiVersion {
    /// Always 1 so far.
    pub major: u32,
    /// The version within the major one.
    pub minor: u32,
}

impl EngineApiVersion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        EngineApiVersion { major, minor }
    }
}

impl fmt::Display for EngineApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A version that is not `MAJOR.MINOR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an Engine API version like 1.41")]
pub struct BadApiVersion(pub String);

impl FromStr for EngineApiVersion {
    type Err = BadApiVersion;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadApiVersion(text.to_owned());
        let (major, minor) = text.trim().split_once('.').ok_or_else(bad)?;
        Ok(EngineApiVersion {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

/// A service field that older engines do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feature {
    /// `healthcheck.startInterval`.
    HealthcheckStartInterval,
    /// `oomScoreAdj`.
    OomScoreAdj,
    /// `capAdd`.
    CapAdd,
    /// `capDrop`.
    CapDrop,
    /// `ulimits`.
    Ulimits,
    /// `resources.limits.pids`.
    PidsLimit,
    /// `mode: replicated-job` or `global-job`.
    JobMode,
    /// `sysctls`.
    Sysctls,
    /// `placement.maxReplicas`.
    MaxReplicasPerNode,
    /// `credentialSpec.config`.
    CredentialSpecConfig,
}

impl Feature {
    /// The Engine API version that introduced it (the Engine API's version history).
    pub fn since(self) -> EngineApiVersion {
        match self {
            Feature::HealthcheckStartInterval => EngineApiVersion::new(1, 44),
            Feature::OomScoreAdj => EngineApiVersion::new(1, 46),
            Feature::CapAdd
            | Feature::CapDrop
            | Feature::Ulimits
            | Feature::PidsLimit
            | Feature::JobMode => EngineApiVersion::new(1, 41),
            Feature::Sysctls | Feature::MaxReplicasPerNode | Feature::CredentialSpecConfig => {
                EngineApiVersion::new(1, 40)
            }
        }
    }

    /// Its path in a `SwarmService` document.
    pub fn spec_field(self) -> &'static str {
        match self {
            Feature::HealthcheckStartInterval => "spec.healthcheck.startInterval",
            Feature::OomScoreAdj => "spec.oomScoreAdj",
            Feature::CapAdd => "spec.capAdd",
            Feature::CapDrop => "spec.capDrop",
            Feature::Ulimits => "spec.ulimits",
            Feature::PidsLimit => "spec.resources.limits.pids",
            Feature::JobMode => "spec.mode",
            Feature::Sysctls => "spec.sysctls",
            Feature::MaxReplicasPerNode => "spec.placement.maxReplicas",
            Feature::CredentialSpecConfig => "spec.credentialSpec.config",
        }
    }

    /// Why `engine` can not have it, for an error at the field.
    pub fn refusal(self, engine: EngineApiVersion) -> String {
        format!(
            "needs Docker Engine API {} or later; the engine speaks {engine} and would drop it \
             without a word, so the service would never be what its spec says: upgrade the \
             engine or remove the field",
            self.since()
        )
    }
}

/// The fields of `spec` that need more than the oldest engine has.
pub fn features(spec: &ServiceSpec) -> Vec<Feature> {
    let limits = spec.resources.as_ref().and_then(|r| r.limits.as_ref());
    [
        (
            spec.healthcheck
                .as_ref()
                .is_some_and(|h| h.start_interval.is_some()),
            Feature::HealthcheckStartInterval,
        ),
        (spec.oom_score_adj.is_some(), Feature::OomScoreAdj),
        (!spec.cap_add.is_empty(), Feature::CapAdd),
        (!spec.cap_drop.is_empty(), Feature::CapDrop),
        (!spec.ulimits.is_empty(), Feature::Ulimits),
        (limits.is_some_and(|l| l.pids.is_some()), Feature::PidsLimit),
        (
            matches!(
                spec.mode,
                ServiceMode::ReplicatedJob | ServiceMode::GlobalJob
            ),
            Feature::JobMode,
        ),
        (!spec.sysctls.is_empty(), Feature::Sysctls),
        (
            spec.placement
                .as_ref()
                .is_some_and(|p| p.max_replicas.is_some()),
            Feature::MaxReplicasPerNode,
        ),
        (
            spec.credential_spec
                .as_ref()
                .is_some_and(|c| c.config.is_some()),
            Feature::CredentialSpecConfig,
        ),
    ]
    .into_iter()
    .filter_map(|(used, feature)| used.then_some(feature))
    .collect()
}

/// A located error for every service field in `objects` that `engine` does not know.
pub fn check(objects: &[Located<Object>], engine: EngineApiVersion) -> Vec<SpecError> {
    objects
        .iter()
        .filter_map(|o| Some((o, o.value.as_service()?)))
        .flat_map(|(o, service)| {
            features(&service.spec)
                .into_iter()
                .filter(|f| f.since() > engine)
                .map(move |f| o.error_at(f.spec_field(), f.refusal(engine)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_str;

    #[test]
    fn versions_parse_and_order_numerically() {
        let v: EngineApiVersion = "1.41".parse().unwrap();
        assert_eq!(v, EngineApiVersion::new(1, 41));
        assert!(EngineApiVersion::new(1, 9) < v);
        assert_eq!(v.to_string(), "1.41");
        for bad in ["141", "1.x", "", "v1.41"] {
            assert!(bad.parse::<EngineApiVersion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn fields_above_the_engine_are_located_errors_naming_both_versions() {
        let text = "\
apiVersion: swarm-operator.io/v1alpha1
kind: SwarmService
metadata: {name: web}
spec:
  image: busybox
  capAdd: [NET_ADMIN]
  oomScoreAdj: 100
  healthcheck:
    test: [CMD, 'true']
    startInterval: 2s
";
        let crate::spec::FileLoad::Ok(objects) = load_str(std::path::Path::new("web.yaml"), text)
        else {
            panic!("the spec loads");
        };
        let errors: Vec<String> = check(&objects, EngineApiVersion::new(1, 41))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("web.yaml:10:20: spec.healthcheck.startInterval: needs Docker Engine API 1.44 or later; the engine speaks 1.41"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("web.yaml:7:16: spec.oomScoreAdj: needs Docker Engine API 1.46"),
            "{}",
            errors[1]
        );
        assert!(check(&objects, EngineApiVersion::new(1, 46)).is_empty());
        // An engine older than capabilities refuses those too.
        let old = check(&objects, EngineApiVersion::new(1, 40));
        assert_eq!(old.len(), 3);
        assert!(
            old.iter().any(|e| e
                .to_string()
                .contains("spec.capAdd: needs Docker Engine API 1.41")),
            "{old:?}"
        );
    }
}
