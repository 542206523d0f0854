//! The operator's status file (the README's contract), read leniently: tests assert on the fields the contract names.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole status file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub generated_at: Option<String>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceStatus>,
    #[serde(default)]
    pub errors: Vec<SpecError>,
}

/// One service's observed state.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceStatus {
    #[serde(default)]
    pub desired_replicas: Option<u64>,
    #[serde(default)]
    pub running_replicas: Option<u64>,
    /// Running tasks of the service's current spec.
    #[serde(default)]
    pub updated_replicas: Option<u64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, rename = "virtualIPs")]
    pub virtual_ips: Vec<VirtualIp>,
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    #[serde(default)]
    pub last_error: Option<serde_json::Value>,
}

/// A Kubernetes-style condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// A service VIP on one network.
#[derive(Debug, Clone, Deserialize)]
pub struct VirtualIp {
    pub network: String,
    pub address: String,
}

/// One task of a service.
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoint {
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub slot: Option<u64>,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub addresses: Vec<Address>,
}

/// A task's address on one network (the daemon's CIDR suffix may or may not be stripped).
#[derive(Debug, Clone, Deserialize)]
pub struct Address {
    pub network: String,
    pub ip: String,
}

impl Address {
    /// The bare IP, without a `/24` suffix.
    pub fn bare_ip(&self) -> &str {
        self.ip.split('/').next().unwrap_or(&self.ip)
    }
}

/// A located spec error.
#[derive(Debug, Clone, Deserialize)]
pub struct SpecError {
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub column: Option<u64>,
    #[serde(default)]
    pub message: String,
}

impl ServiceStatus {
    /// Running endpoints' bare IPs on `network`.
    pub fn running_ips(&self, network: &str) -> Vec<String> {
        self.endpoints
            .iter()
            .filter(|e| e.state == "running")
            .flat_map(|e| {
                e.addresses
                    .iter()
                    .filter(|a| a.network == network)
                    .map(|a| a.bare_ip().to_string())
            })
            .collect()
    }

    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        self.holds("Ready").is_some()
    }

    /// The condition of type `type_` when it is `True`.
    pub fn holds(&self, type_: &str) -> Option<&Condition> {
        self.conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == "True")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_design_example() {
        let s: Status = serde_json::from_str(
            r#"{"generatedAt":"2026-01-01T00:00:00Z","services":{"quote-service":{"desiredReplicas":3,"runningReplicas":3,"updatedReplicas":2,
            "conditions":[{"type":"Ready","status":"True","reason":"r","message":"m","lastTransitionTime":"t"}],
            "virtualIPs":[{"network":"my_network","address":"10.0.1.5"}],
            "endpoints":[{"task":"t1","slot":1,"node":"n","state":"running","addresses":[{"network":"my_network","ip":"10.0.1.7/24"}]}],
            "lastError":null}},"errors":[{"file":"bad.yaml","line":3,"column":5,"message":"x"}]}"#,
        )
        .unwrap();
        let q = &s.services["quote-service"];
        assert!(q.is_ready());
        assert_eq!(
            q.holds("Ready").and_then(|c| c.reason.as_deref()),
            Some("r")
        );
        assert!(q.holds("Degraded").is_none());
        assert_eq!(q.updated_replicas, Some(2));
        assert_eq!(q.running_ips("my_network"), vec!["10.0.1.7"]);
        assert_eq!(s.errors[0].line, Some(3));
    }
}
