//! A value of one of the engine's closed sets as read back: typed when known, kept verbatim
//! (and logged) when a newer engine sends one this build does not know.

use std::fmt;
use std::str::FromStr;

/// A known value of `T`, or the engine's own spelling of one `T` lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineValue<T> {
    /// One of the values this build knows.
    Known(T),
    /// A value `T` has no variant for, as the engine wrote it: shown to the user as it is and
    /// never mistaken for a known one.
    Unknown(String),
}

impl<T: FromStr> EngineValue<T> {
    /// Parses `value` of the engine field `field`, warning about an unknown value.
    pub fn parse(field: &'static str, value: &str) -> Self {
        match value.parse() {
            Ok(known) => EngineValue::Known(known),
            Err(_) => {
                tracing::warn!(
                    field,
                    value,
                    "the Docker engine reported a value this operator does not know; it is \
                     shown as it is and counts as none of the known ones (upgrade the operator \
                     if the engine is newer)"
                );
                EngineValue::Unknown(value.to_owned())
            }
        }
    }
}

impl<T: PartialEq> EngineValue<T> {
    /// Whether this is the known value `value`.
    pub fn is(&self, value: &T) -> bool {
        matches!(self, EngineValue::Known(known) if known == value)
    }
}

impl<T: fmt::Display> fmt::Display for EngineValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineValue::Known(known) => known.fmt(f),
            EngineValue::Unknown(raw) => f.write_str(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::TaskState;

    #[test]
    fn a_known_value_is_typed_and_displays_its_wire_name() {
        let state = EngineValue::<TaskState>::parse("Status.State", "running");
        assert_eq!(state, EngineValue::Known(TaskState::RUNNING));
        assert!(state.is(&TaskState::RUNNING));
        assert_eq!(state.to_string(), "running");
    }

    #[test]
    fn an_unknown_value_is_kept_verbatim_and_matches_no_known_one() {
        let state = EngineValue::<TaskState>::parse("Status.State", "hibernating");
        assert_eq!(state, EngineValue::Unknown("hibernating".into()));
        assert!(!state.is(&TaskState::RUNNING));
        assert_eq!(state.to_string(), "hibernating");
    }
}
