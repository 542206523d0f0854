//! The spec reference in Markdown, generated from the JSON Schemas (`crds/REFERENCE.md`).

use serde_json::{Map, Value};

/// One Markdown document with a field table per kind, from `(kind, schema JSON)` pairs.
pub fn reference_markdown(schemas: &[(String, String)]) -> String {
    let mut out = String::from(
        "# Spec reference\n\nGenerated from the JSON Schemas in this directory by \
         `cargo run -p swarm-operator -- crds --out crds`; do not edit by hand.\n\
         Durations are strings like `500ms`, `3s`, `1m`, `1h30m`; memory sizes like `128Mi`, \
         `1Gi`, `512M`. Unknown fields are errors.\n",
    );
    for (file, json) in schemas {
        let schema: Value = serde_json::from_str(json).expect("generated schemas are JSON");
        let title = schema["title"].as_str().unwrap_or(file);
        out.push_str(&format!(
            "\n## {title}\n\n{}\n\n| field | type | description |\n|---|---|---|\n",
            schema["description"].as_str().unwrap_or_default()
        ));
        let defs = schema["$defs"].as_object().cloned().unwrap_or_default();
        let mut rows = Vec::new();
        walk(&schema, "", &defs, &mut rows, 0);
        for (path, kind, description) in rows {
            out.push_str(&format!("| `{path}` | {kind} | {description} |\n"));
        }
    }
    out
}

/// Follows a `$ref` into `$defs`; other schemas are returned as they are.
fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => reference
            .rsplit('/')
            .next()
            .and_then(|name| defs.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The non-null branch of an `anyOf: [X, null]` (how schemars writes `Option<X>`).
fn non_null<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    let schema = resolve(schema, defs);
    if let Some(branch) = schema["anyOf"]
        .as_array()
        .and_then(|branches| branches.iter().find(|b| b["type"] != "null"))
    {
        return resolve(branch, defs);
    }
    schema
}

fn type_name(schema: &Value, defs: &Map<String, Value>) -> String {
    let schema = non_null(schema, defs);
    let variants: Vec<String> = schema["oneOf"]
        .as_array()
        .or(schema["enum"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|v| v["const"].as_str().or(v.as_str()).map(|s| format!("`{s}`")))
        .collect();
    if !variants.is_empty() {
        return variants.join(" \\| ");
    }
    match &schema["type"] {
        Value::String(t) if t == "array" => {
            format!("list of {}", type_name(&schema["items"], defs))
        }
        Value::String(t) if t == "object" && schema.get("properties").is_none() => {
            "map of string".to_owned()
        }
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    }
}

fn walk(
    schema: &Value,
    prefix: &str,
    defs: &Map<String, Value>,
    rows: &mut Vec<(String, String, String)>,
    depth: usize,
) {
    // The spec types nest a handful of levels; the bound only guards against a cyclic schema.
    if depth > 8 {
        return;
    }
    let schema = non_null(schema, defs);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    for (name, property) in properties {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let target = non_null(property, defs);
        let description = property["description"]
            .as_str()
            .or(target["description"].as_str())
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        let required = if required.contains(&name.as_str()) {
            " (required)"
        } else {
            ""
        };
        rows.push((
            path.clone(),
            format!("{}{required}", type_name(property, defs)),
            description,
        ));
        let items = non_null(&target["items"], defs);
        if target["properties"].is_object() {
            walk(target, &path, defs, rows, depth + 1);
        } else if items["properties"].is_object() {
            walk(items, &format!("{path}[]"), defs, rows, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_field_is_in_the_reference() {
        let text = reference_markdown(&crate::spec::schema::schemas());
        for field in [
            "`spec.image` | string (required)",
            "`spec.replicas`",
            "`spec.endpointMode` | `vip` \\| `dnsrr`",
            "`spec.ports[].published`",
            "`spec.healthcheck.interval`",
            "`spec.updateConfig.order`",
            "`spec.placement.maxReplicas`",
            "`spec.resources.limits.memory`",
            "`spec.mounts[].type`",
            "`spec.attachable`",
        ] {
            assert!(text.contains(field), "{field} missing from:\n{text}");
        }
    }
}
