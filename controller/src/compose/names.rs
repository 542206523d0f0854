//! The names a compose file gives (service, network, volume, config and secret keys and their
//! `name:` values) checked before anything is written: each becomes a swarm object name and
//! part of a file name under `--out`, so `../` or `/` in one must never reach the disk.

use std::fmt;

use super::model::{Compose, Invalid};
use super::stack::scope;
use crate::yaml::Origin;

/// Longest object name: swarm's limit for service names (a DNS label), applied to every kind.
pub const MAX_NAME_LEN: usize = 63;

/// What is wrong with a name. The name itself is not repeated (a `name:` may come from the
/// environment); the error is located instead, and names the offending character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// Nothing.
    Empty,
    /// Does not start with a letter or digit.
    Start(char),
    /// Holds a character other than letters, digits, `_`, `.` and `-`.
    Char(char),
    /// Over [`MAX_NAME_LEN`] (as the swarm name, stack prefix included).
    Long(usize),
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => write!(f, "the name is empty"),
            NameProblem::Start(c) => write!(f, "the name starts with `{}`", shown(&c.to_string())),
            NameProblem::Char(c) => write!(f, "the name contains `{}`", shown(&c.to_string())),
            NameProblem::Long(n) => write!(
                f,
                "the swarm name would have {n} characters, more than {MAX_NAME_LEN}"
            ),
        }?;
        f.write_str(
            ": a name starts with a letter or digit and continues with letters, digits, `_`, `.` or `-`",
        )
    }
}

/// What is wrong with `name`, if anything.
pub fn problem(name: &str) -> Option<NameProblem> {
    let mut chars = name.chars();
    match chars.next() {
        None => Some(NameProblem::Empty),
        Some(c) if !c.is_ascii_alphanumeric() => Some(NameProblem::Start(c)),
        _ => match chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
            Some(c) => Some(NameProblem::Char(c)),
            None if name.len() > MAX_NAME_LEN => Some(NameProblem::Long(name.len())),
            None => None,
        },
    }
}

/// A key as it may appear in a field path of a message: control characters escaped, so that a
/// hostile key cannot rewrite the terminal.
pub fn shown(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Every name of `compose` that stack `stack` would turn into an object name or a file name,
/// checked: the key itself, and the swarm name (the key with the stack prefix, or `name:`).
pub fn check(compose: &Compose, stack: &str) -> Vec<Invalid> {
    let mut invalid = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    // `spec_file`: whether the entry becomes a spec file of its own (created, not external),
    // whose name must then be unique within its kind.
    let mut check_one = |key_origin: Option<&Origin>,
                         name_origin: Option<&Origin>,
                         section: &str,
                         key: &str,
                         name: Option<&str>,
                         spec_file: bool| {
        let origin = key_origin.cloned().unwrap_or_else(|| Origin {
            file: Default::default(),
            line: 0,
            column: 0,
        });
        // A `name:` inside `external:` has no origin of its own: the key's then.
        let name_origin = name_origin.cloned().unwrap_or_else(|| origin.clone());
        let path = format!("{section}.{}", shown(key));
        let key_problem = problem(key);
        if let Some(p) = key_problem {
            invalid.push(Invalid {
                origin: origin.clone(),
                path: path.clone(),
                message: format!("invalid key: {p}"),
            });
        }
        match name {
            Some(name) => {
                if let Some(p) = problem(name) {
                    invalid.push(Invalid {
                        origin: name_origin.clone(),
                        path: format!("{path}.name"),
                        message: format!("invalid name: {p}"),
                    });
                }
            }
            None if key_problem.is_none() => {
                if let Some(p) = problem(&scope(stack, key)) {
                    invalid.push(Invalid {
                        origin: origin.clone(),
                        path: path.clone(),
                        message: format!("invalid key: {p}"),
                    });
                }
            }
            None => {}
        }
        let swarm_name = name.map_or_else(|| scope(stack, key), str::to_owned);
        if spec_file && !written.insert((section.to_owned(), swarm_name)) {
            let (origin, path) = match name {
                Some(_) => (name_origin, format!("{path}.name")),
                None => (origin, path),
            };
            invalid.push(Invalid {
                origin,
                path,
                message: format!(
                    "another entry of `{section}` has the same swarm name: give each its own `name:`"
                ),
            });
        }
    };
    for (key, s) in &compose.services {
        check_one(s.origin.as_ref(), None, "services", key, None, true);
    }
    for (key, n) in &compose.networks {
        check_one(
            n.origin.as_ref(),
            n.name_origin.as_ref(),
            "networks",
            key,
            n.name.as_deref(),
            !n.external,
        );
    }
    for (key, v) in &compose.volumes {
        check_one(
            v.origin.as_ref(),
            v.name_origin.as_ref(),
            "volumes",
            key,
            v.name.as_deref(),
            false,
        );
    }
    for (key, c) in &compose.configs {
        check_one(
            c.origin.as_ref(),
            c.name_origin.as_ref(),
            "configs",
            key,
            c.name.as_deref(),
            !c.external,
        );
    }
    for (key, s) in &compose.secrets {
        check_one(
            s.origin.as_ref(),
            s.name_origin.as_ref(),
            "secrets",
            key,
            s.name.as_deref(),
            !s.external,
        );
    }
    invalid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_configs_with_one_swarm_name_are_refused_at_the_second() {
        let text = "configs:\n  a: {file: ./x, name: s_b}\n  b: {file: ./x}\n";
        let root = super::super::parse_file(std::path::Path::new("c.yml"), text).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "x").unwrap();
        let mut reader = super::super::model::Reader {
            base_dir: dir.path(),
            lookup: &|_| None,
            dropped: Vec::new(),
            invalid: Vec::new(),
            gated: Vec::new(),
        };
        let compose = reader.read(&root);
        assert_eq!(reader.invalid, []);
        let invalid: Vec<String> = check(&compose, "s").iter().map(|i| i.to_string()).collect();
        assert_eq!(
            invalid,
            [
                "c.yml:3:3: configs.b: another entry of `configs` has the same swarm name: give each its own `name:`"
            ]
        );
    }

    #[test]
    fn names() {
        assert_eq!(problem("web"), None);
        assert_eq!(problem("a.b_c-1"), None);
        assert_eq!(problem(""), Some(NameProblem::Empty));
        assert_eq!(problem("../x"), Some(NameProblem::Start('.')));
        assert_eq!(problem("x/../../y"), Some(NameProblem::Char('/')));
        assert_eq!(problem("x\n"), Some(NameProblem::Char('\n')));
        assert_eq!(problem(&"a".repeat(64)), Some(NameProblem::Long(64)));
        assert!(
            !NameProblem::Char('\n').to_string().contains('\n'),
            "escaped"
        );
        assert_eq!(shown("a\u{1b}[2Jb.\"c\""), "a\\u{1b}[2Jb.\"c\"");
    }
}
