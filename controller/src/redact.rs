//! Which values may leave the process: env values and secret contents are shown by key (and "changed"), never by value (webhook URLs: `notify::receivers`).
//!
//! Every output channel (page, API, event stream, status file, logs, events log, webhooks,
//! `get`, errors, panics) goes through these helpers or through a type whose `Debug` uses them,
//! so that the rule lives in one place: only `diff --show-values` on the user's own terminal
//! renders values ([`Values::Shown`]).

use std::fmt;

/// Whether a rendering may show values of fields that hold them (env values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Values {
    /// Keys only: `env.DB_PASSWORD changed`. Every channel but one.
    #[default]
    Hidden,
    /// Old and new values: only `diff --show-values` on the user's terminal.
    Shown,
}

/// What a redacted value is replaced with in `Debug` output.
pub const REDACTED: &str = "<redacted>";

/// Top-level fields (camelCase, as definitions and specs serialize) whose map values may be
/// secret: `env` is where users keep `DB_PASSWORD`, and log driver options hold tokens
/// (`splunk-token`, `awslogs-credentials`…). Keys stay visible; only values are hidden.
const VALUE_MAPS: &[&[&str]] = &[&["env"], &["logDriver", "options"], &["logging", "options"]];

/// Whether the dotted field path (`env.DB_PASSWORD`, `logDriver.options.splunk-token`, `env`)
/// is, or lies inside, a field whose values are hidden.
pub fn holds_values(path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    VALUE_MAPS.iter().any(|map| {
        // The map itself (`env`), or an entry in it: a prefix match on whole segments.
        parts.len() >= map.len() && parts[..map.len()] == **map
            || parts.len() < map.len() && map[..parts.len()] == parts[..]
    })
}

/// Replaces the values of every value-holding map in a serialized definition or spec with
/// [`REDACTED`], keeping the keys; used by `Debug` impls so that a `{:?}` (a log line, an
/// `expect` message, a failed assertion) never shows an env value.
pub fn redact_json(value: &mut serde_json::Value) {
    for map in VALUE_MAPS {
        let mut node = Some(&mut *value);
        for key in *map {
            node = node.and_then(|n| n.get_mut(*key));
        }
        if let Some(serde_json::Value::Object(entries)) = node {
            for v in entries.values_mut() {
                *v = serde_json::Value::String(REDACTED.to_owned());
            }
        }
    }
}

/// `Debug` for a serializable type holding env maps: its JSON with the values redacted.
pub fn debug_redacted<T: serde::Serialize>(
    name: &str,
    value: &T,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    match serde_json::to_value(value) {
        Ok(mut json) => {
            redact_json(&mut json);
            write!(f, "{name} {json}")
        }
        Err(_) => write!(f, "{name} {{ .. }}"),
    }
}

/// A decoder's message (serde's `invalid type: string "…", expected u64`) with every quoted
/// string replaced by `"…"`: a reply that does not decode may be a service spec, and the string
/// serde quotes may be an env value. The rest (types, line and column) stays.
pub fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            out.push_str("…\"");
            // Skip to the closing quote; serde quotes with Rust's escapes (`\"`).
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
        }
    }
    out
}

/// Crates whose debug and trace output carries values: bollard logs every request body (a
/// service spec, env values included) at debug and trace, and every response body at debug;
/// hyper-util logs connection pool keys, whose authority may hold a webhook URL's user info.
const VERBOSE_DEPENDENCIES: &[&str] = &["bollard", "hyper_util"];

/// Whether an event may be logged at all, whatever `RUST_LOG` says: events of
/// [`VERBOSE_DEPENDENCIES`] more verbose than info never are. Applied as a second filter after
/// the user's, because no directive added to an `EnvFilter` can hold: a more specific one
/// (`bollard::docker=trace`) would win over it.
pub fn may_log(target: &str, level: &tracing::Level) -> bool {
    let dependency = VERBOSE_DEPENDENCIES.iter().any(|crate_name| {
        target == *crate_name
            || target
                .strip_prefix(crate_name)
                .is_some_and(|rest| rest.starts_with("::"))
    });
    !dependency || *level <= tracing::Level::INFO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_and_log_options_hold_values_labels_do_not() {
        for path in [
            "env",
            "env.DB_PASSWORD",
            "logDriver",
            "logDriver.options",
            "logDriver.options.splunk-token",
        ] {
            assert!(holds_values(path), "{path}");
        }
        for path in [
            "labels.team",
            "image",
            "environment",
            "logDriver.name",
            "mode.replicated.replicas",
        ] {
            assert!(!holds_values(path), "{path}");
        }
    }

    #[test]
    fn redacted_json_keeps_keys_and_drops_values() {
        let mut json = serde_json::json!({
            "env": {"DB_PASSWORD": "hunter2"},
            "labels": {"team": "a"},
            "logDriver": {"name": "splunk", "options": {"splunk-token": "tok"}},
        });
        redact_json(&mut json);
        let text = json.to_string();
        assert!(
            text.contains("DB_PASSWORD") && text.contains("splunk-token"),
            "{text}"
        );
        assert!(
            !text.contains("hunter2") && !text.contains("\"tok\""),
            "{text}"
        );
        assert!(
            text.contains("\"team\":\"a\""),
            "labels are not values: {text}"
        );
    }

    #[test]
    fn quoted_strings_leave_decoder_messages() {
        let error = serde_json::from_str::<Vec<u64>>(r#"["hun\"ter2"]"#).unwrap_err();
        let shown = without_quoted(&error.to_string());
        assert!(!shown.contains("hun") && !shown.contains("ter2"), "{shown}");
        assert!(
            shown.starts_with("invalid type: string \"…\", expected u64"),
            "{shown}"
        );
    }

    #[test]
    fn bollard_never_logs_below_info() {
        use tracing::Level;
        assert!(!may_log("bollard::docker", &Level::DEBUG));
        assert!(!may_log("bollard", &Level::TRACE));
        assert!(!may_log("hyper_util::client::legacy::pool", &Level::DEBUG));
        assert!(may_log("bollard::docker", &Level::WARN));
        assert!(may_log("bollard_stubs_like_other", &Level::TRACE));
        assert!(may_log("swarm_operator::control::reconcile", &Level::TRACE));
    }
}
