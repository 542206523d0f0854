//! A value of one of the engine's closed sets as read back: typed when known, kept verbatim
//! (and logged) when a newer engine sends one this build does not know.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

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
    /// Parses `value` of the engine field `field`, reporting an unknown value.
    pub fn parse(field: &'static str, value: &str) -> Self {
        match value.parse() {
            Ok(known) => EngineValue::Known(known),
            Err(_) => {
                report_unknown(field, value);
                EngineValue::Unknown(value.to_owned())
            }
        }
    }
}

/// Logs a value of `field` this build does not know.
fn report_unknown(field: &'static str, value: &str) {
    if first_report(field, value) {
        tracing::warn!(
            field,
            value,
            "the Docker engine reported a value this operator does not know; it is shown as it \
             is and counts as none of the known ones (upgrade the operator if the engine is newer)"
        );
    }
}

/// Logs a value of `field` that no spec can express (so a managed object always differs from
/// its spec there, and an update replaces it).
pub(crate) fn report_unsupported(field: &'static str, value: &str) {
    if first_report(field, value) {
        tracing::warn!(
            field,
            value,
            "the Docker engine reported a value no spec can express; on a service the operator \
             manages, the next update replaces it with what the spec says"
        );
    }
}

/// Whether `value` of `field` is reported for the first time: the engine is polled every few
/// seconds, and one line says all there is to say.
fn first_report(field: &'static str, value: &str) -> bool {
    static REPORTED: Mutex<BTreeSet<(&'static str, String)>> = Mutex::new(BTreeSet::new());
    REPORTED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((field, value.to_owned()))
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

    /// A writer that keeps what the subscriber logs.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_unknown_value_is_logged_once_per_field_and_value() {
        let log = Captured::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..3 {
                EngineValue::<TaskState>::parse("Test.Once", "defrosting");
            }
            EngineValue::<TaskState>::parse("Test.Once", "thawing");
            EngineValue::<TaskState>::parse("Test.Once", "running");
        });
        let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert_eq!(log.lines().count(), 2, "{log}");
        assert!(
            log.contains("WARN") && log.contains("value=\"defrosting\""),
            "{log}"
        );
        assert!(log.contains("value=\"thawing\""), "{log}");
    }

    #[test]
    fn an_unknown_value_is_kept_verbatim_and_matches_no_known_one() {
        let state = EngineValue::<TaskState>::parse("Status.State", "hibernating");
        assert_eq!(state, EngineValue::Unknown("hibernating".into()));
        assert!(!state.is(&TaskState::RUNNING));
        assert_eq!(state.to_string(), "hibernating");
    }
}
