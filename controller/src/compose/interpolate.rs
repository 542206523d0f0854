//! Variable substitution in compose files, as the docker CLI does it: `$VAR`, `${VAR}`,
//! `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`,
//! `${VAR+alt}` and `$$` for a literal `$`, in every string value (never in keys).
//!
//! Bounded, since compose files come from other people: `${…}` nests at most [`MAX_NESTING`]
//! deep, one value grows to at most [`MAX_VALUE_BYTES`], and a whole file's values together to
//! at most [`MAX_TOTAL_BYTES`]. No error quotes the value or a variable's content, only the
//! variable's name.

use crate::yaml::{Node, Origin, Value};

/// How deep `${A:-${B:-…}}` may nest (the docker CLI has no limit; real files use one or two).
pub const MAX_NESTING: usize = 10;
/// Longest value after substitution.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Longest total of the substituted values under one [`interpolate`] call.
pub const MAX_TOTAL_BYTES: usize = 16 * 1024 * 1024;

/// Why a value could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolationError {
    /// `${VAR?message}` or `${VAR:?message}` with the variable missing (or empty).
    #[error("{origin}: required variable {name} is missing a value: {message}")]
    Required {
        /// Where the value is.
        origin: Origin,
        /// The variable.
        name: String,
        /// The file's message, as written: not substituted, since it could then hold the
        /// value of another variable.
        message: String,
    },
    /// A `$` that starts no valid substitution. The value is not repeated: it may hold a
    /// password with a stray `$`.
    #[error(
        "{origin}: invalid interpolation format: write `${{VAR}}`, `${{VAR:-default}}`, … and escape a literal `$` as `$$`"
    )]
    Invalid {
        /// Where the value is.
        origin: Origin,
    },
    /// `${…}` nested deeper than [`MAX_NESTING`].
    #[error("{origin}: `${{…}}` nested more than {max} deep", max = MAX_NESTING)]
    TooDeep {
        /// Where the value is.
        origin: Origin,
    },
    /// A value longer than [`MAX_VALUE_BYTES`] after substitution, or all of them together
    /// longer than [`MAX_TOTAL_BYTES`].
    #[error("{origin}: the values would grow past {max} bytes after substitution")]
    TooLarge {
        /// Where the value is.
        origin: Origin,
        /// The limit reached.
        max: usize,
    },
}

impl InterpolationError {
    /// Where the value is.
    pub fn origin(&self) -> &Origin {
        match self {
            InterpolationError::Required { origin, .. }
            | InterpolationError::Invalid { origin }
            | InterpolationError::TooDeep { origin }
            | InterpolationError::TooLarge { origin, .. } => origin,
        }
    }
}

/// Substitutes variables in every string value under `node`, looking them up with `lookup`.
/// Variables that are unset (with no default) become empty strings and are reported in
/// `warnings`, as the docker CLI does.
pub fn interpolate(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<(), InterpolationError> {
    let mut total = 0;
    interpolate_node(node, lookup, warnings, &mut total)
}

fn interpolate_node(
    node: &mut Node,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
    total: &mut usize,
) -> Result<(), InterpolationError> {
    match &mut node.value {
        Value::Str(s) if s.contains('$') => {
            *s = substitute(s, lookup, &node.origin, warnings)?;
            *total += s.len();
            if *total > MAX_TOTAL_BYTES {
                return Err(InterpolationError::TooLarge {
                    origin: node.origin.clone(),
                    max: MAX_TOTAL_BYTES,
                });
            }
        }
        Value::Seq(items) => {
            for item in items {
                interpolate_node(item, lookup, warnings, total)?;
            }
        }
        Value::Map(entries) => {
            for entry in entries {
                interpolate_node(&mut entry.value, lookup, warnings, total)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn is_name_start(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_name_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

/// Substitutes the variables of one string.
pub fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    origin: &Origin,
    warnings: &mut Vec<String>,
) -> Result<String, InterpolationError> {
    substitute_at(text, lookup, origin, warnings, 0)
}

fn substitute_at(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    origin: &Origin,
    warnings: &mut Vec<String>,
    depth: usize,
) -> Result<String, InterpolationError> {
    if depth > MAX_NESTING {
        return Err(InterpolationError::TooDeep {
            origin: origin.clone(),
        });
    }
    let invalid = || InterpolationError::Invalid {
        origin: origin.clone(),
    };
    let too_large = || InterpolationError::TooLarge {
        origin: origin.clone(),
        max: MAX_VALUE_BYTES,
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        if out.len() > MAX_VALUE_BYTES {
            return Err(too_large());
        }
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let mut chars = after.chars();
        match chars.next() {
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('{') => {
                let close = matching_brace(after).ok_or_else(invalid)?;
                let inner = &after[1..close];
                out.push_str(&braced(inner, lookup, origin, warnings, &invalid, depth)?);
                rest = &after[close + 1..];
            }
            Some(c) if is_name_start(c) => {
                let end = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
                let name = &after[..end];
                out.push_str(&plain(name, lookup, warnings));
                rest = &after[end..];
            }
            _ => return Err(invalid()),
        }
    }
    out.push_str(rest);
    if out.len() > MAX_VALUE_BYTES {
        return Err(too_large());
    }
    Ok(out)
}

/// Index of the `}` closing the `{` at index 0 of `s`, counting nested `${`.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn plain(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> String {
    lookup(name).unwrap_or_else(|| {
        let warning = format!("The \"{name}\" variable is not set. Defaulting to a blank string.");
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
        String::new()
    })
}

fn braced(
    inner: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    origin: &Origin,
    warnings: &mut Vec<String>,
    invalid: &dyn Fn() -> InterpolationError,
    depth: usize,
) -> Result<String, InterpolationError> {
    let name_end = inner.find(|c| !is_name_char(c)).unwrap_or(inner.len());
    let name = &inner[..name_end];
    if !name.starts_with(is_name_start) {
        return Err(invalid());
    }
    let op = &inner[name_end..];
    if op.is_empty() {
        return Ok(plain(name, lookup, warnings));
    }
    let value = lookup(name);
    let (colon, op) = match op.strip_prefix(':') {
        Some(op) => (true, op),
        None => (false, op),
    };
    // With `:` an empty value counts as missing.
    let present = value.as_deref().is_some_and(|v| !(colon && v.is_empty()));
    let mut argument = |arg: &str| substitute_at(arg, lookup, origin, warnings, depth + 1);
    match op.chars().next() {
        Some('-') => match present {
            true => Ok(value.unwrap_or_default()),
            false => argument(&op[1..]),
        },
        Some('+') => match present {
            true => argument(&op[1..]),
            false => Ok(String::new()),
        },
        Some('?') => match present {
            true => Ok(value.unwrap_or_default()),
            false => Err(InterpolationError::Required {
                origin: origin.clone(),
                name: name.to_owned(),
                message: op[1..].to_owned(),
            }),
        },
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;

    fn origin() -> Origin {
        Origin {
            file: Arc::new(PathBuf::from("s.yml")),
            line: 3,
            column: 5,
        }
    }

    fn run(text: &str) -> Result<(String, Vec<String>), InterpolationError> {
        let env = |k: &str| match k {
            "TAG" => Some("1.2".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let mut warnings = Vec::new();
        substitute(text, &env, &origin(), &mut warnings).map(|s| (s, warnings))
    }

    fn ok(text: &str) -> String {
        run(text).unwrap().0
    }

    #[test]
    fn forms_of_the_docker_cli() {
        assert_eq!(ok("app:$TAG"), "app:1.2");
        assert_eq!(ok("app:${TAG}-x"), "app:1.2-x");
        assert_eq!(ok("${UNSET:-3}"), "3");
        assert_eq!(ok("${EMPTY:-3}"), "3");
        assert_eq!(ok("${EMPTY-3}"), "");
        assert_eq!(ok("${UNSET-3}"), "3");
        assert_eq!(ok("${TAG:+set}${UNSET:+never}"), "set");
        assert_eq!(ok("${EMPTY+set}"), "set");
        assert_eq!(ok("cost: $$5 and $${TAG}"), "cost: $5 and ${TAG}");
        assert_eq!(
            ok("${UNSET:-${TAG}}"),
            "1.2",
            "defaults are interpolated too"
        );
        assert_eq!(ok("${TAG:?needed}"), "1.2");
    }

    #[test]
    fn unset_variables_warn_once() {
        let (s, warnings) = run("$NOPE/${NOPE}").unwrap();
        assert_eq!(s, "/");
        assert_eq!(
            warnings,
            ["The \"NOPE\" variable is not set. Defaulting to a blank string."]
        );
    }

    #[test]
    fn required_and_invalid() {
        let e = run("${DB_HOST:?set DB_HOST to the database host}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "s.yml:3:5: required variable DB_HOST is missing a value: set DB_HOST to the database host"
        );
        assert!(matches!(run("${EMPTY?x}"), Ok((s, _)) if s.is_empty()));
        assert!(matches!(
            run("${EMPTY:?x}"),
            Err(InterpolationError::Required { .. })
        ));
        for bad in ["${", "${1A}", "$ x", "${TAG!x}", "a$"] {
            assert!(
                matches!(run(bad), Err(InterpolationError::Invalid { .. })),
                "{bad}"
            );
        }
        // A password with a stray `$` is located, never quoted.
        let e = run("s3cr3t$ pass").unwrap_err();
        assert_eq!(e, InterpolationError::Invalid { origin: origin() });
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(e.to_string().starts_with("s.yml:3:5: "), "{e}");
    }

    #[test]
    fn nesting_and_growth_are_bounded() {
        let nested = |depth: usize| format!("{}x{}", "${UNSET:-".repeat(depth), "}".repeat(depth));
        assert_eq!(ok(&nested(MAX_NESTING)), "x");
        assert!(matches!(
            run(&nested(MAX_NESTING + 1)),
            Err(InterpolationError::TooDeep { .. })
        ));
        assert!(matches!(
            run(&nested(10_000)),
            Err(InterpolationError::TooDeep { .. })
        ));
        let big = "b".repeat(MAX_VALUE_BYTES / 4 + 1);
        let env = move |k: &str| (k == "BIG").then(|| big.clone());
        let mut warnings = Vec::new();
        assert!(matches!(
            substitute("$BIG$BIG$BIG$BIG", &env, &origin(), &mut warnings),
            Err(InterpolationError::TooLarge { .. })
        ));
        assert!(substitute("$BIG$BIG$BIG", &env, &origin(), &mut warnings).is_ok());
    }

    #[test]
    fn errors_never_repeat_values() {
        let env = |k: &str| (k == "PASSWORD").then(|| "hunter2-value".to_owned());
        let mut warnings = Vec::new();
        let e = substitute("${MISSING:?${PASSWORD}}", &env, &origin(), &mut warnings).unwrap_err();
        assert_eq!(
            e.to_string(),
            "s.yml:3:5: required variable MISSING is missing a value: ${PASSWORD}"
        );
        let e = substitute("pa$$word-hunter7$", &env, &origin(), &mut warnings).unwrap_err();
        assert!(!e.to_string().contains("hunter7"), "{e}");
    }
}
