//! JSON Schemas of the spec kinds, generated from the Rust types (the committed `crds/` files).

use std::path::Path;

use schemars::{JsonSchema, Schema, schema_for};

use super::stack::SwarmStack;
use super::types::{SwarmConfig, SwarmNetwork, SwarmSecret, SwarmService};

/// Base of the schemas' `$id`s.
const ID_BASE: &str = "https://swarm-operator.io/schemas/v1alpha1";

/// Every generated file of `crds/`: one JSON Schema per kind, then `REFERENCE.md` built from
/// them, as `(file name, contents)`.
pub fn crds() -> Vec<(String, String)> {
    let mut files = schemas();
    let reference = super::reference::reference_markdown(&files);
    files.push(("REFERENCE.md".to_owned(), reference));
    files
}

/// One JSON Schema per kind: `(file name, pretty JSON with a trailing newline)`.
pub fn schemas() -> Vec<(String, String)> {
    vec![
        schema::<SwarmService>(
            "swarmservice",
            "SwarmService",
            "A Docker Swarm service managed by swarm-operator (apiVersion swarm-operator.io/v1alpha1).",
        ),
        schema::<SwarmNetwork>(
            "swarmnetwork",
            "SwarmNetwork",
            "A Docker Swarm network managed by swarm-operator (apiVersion swarm-operator.io/v1alpha1).",
        ),
        schema::<SwarmConfig>(
            "swarmconfig",
            "SwarmConfig",
            "A Docker Swarm config managed by swarm-operator, versioned by content hash (apiVersion swarm-operator.io/v1alpha1).",
        ),
        schema::<SwarmSecret>(
            "swarmsecret",
            "SwarmSecret",
            "A Docker Swarm secret managed by swarm-operator, versioned by content hash (apiVersion swarm-operator.io/v1alpha1).",
        ),
        schema::<SwarmStack>(
            "swarmstack",
            "SwarmStack",
            "A compose stack managed by swarm-operator: its compose files converted on every reload into services, networks, configs and secrets named and labelled as `docker stack deploy` names them (apiVersion swarm-operator.io/v1alpha1).",
        ),
    ]
}

/// Writes [`crds`] into `dir` (created if missing).
pub fn write_crds(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, json) in crds() {
        std::fs::write(dir.join(name), json)?;
    }
    Ok(())
}

fn schema<T: JsonSchema>(stem: &str, title: &str, description: &str) -> (String, String) {
    let file = format!("{stem}.schema.json");
    let mut schema: Schema = schema_for!(T);
    schema.insert("$id".into(), format!("{ID_BASE}/{file}").into());
    schema.insert("title".into(), title.into());
    schema.insert("description".into(), description.into());
    let mut json = serde_json::to_string_pretty(&schema).expect("a schema is always JSON");
    json.push('\n');
    (file, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_pin_api_version_and_kind() {
        for (name, json) in schemas() {
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(v["$id"], format!("{ID_BASE}/{name}"), "{name} has its $id");
            let text = json.as_str();
            assert!(text.contains("swarm-operator.io/v1alpha1"), "{name}");
            assert_eq!(
                v["required"],
                serde_json::json!(["apiVersion", "kind", "metadata", "spec"]),
                "{name}"
            );
            assert_eq!(
                v["additionalProperties"], false,
                "{name}: unknown fields are errors"
            );
        }
    }
}
