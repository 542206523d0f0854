//! Bench settings from the environment: unset or blank means the default.

use anyhow::{Result, anyhow};

/// The variable's value, unless unset or blank.
pub fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The variable as a number, `default` when unset or blank; an error names it otherwise.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match env_text(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow!("{name}={v:?} is not a number")),
    }
}
