//! Arguments several commands share: `--age-identity` and the duration flags' parsers.

use std::path::PathBuf;
use std::time::Duration;

use crate::spec::AgeIdentities;
use crate::spec::encrypted::IdentityError;

/// `--age-identity`, for every command that reads a spec directory.
#[derive(clap::Args)]
pub struct AgeArgs {
    /// Decrypt the `.age` files specs use (`file:`, `envFile`) in memory with the X25519
    /// identities in this file, as `age-keygen` writes it (mount it as a docker secret);
    /// repeatable.
    #[arg(long = "age-identity", value_name = "FILE")]
    pub age_identity: Vec<PathBuf>,
}

impl AgeArgs {
    /// Reads the identity files once, at start.
    pub fn read(&self) -> Result<AgeIdentities, IdentityError> {
        AgeIdentities::read(&self.age_identity)
    }
}

/// The longest duration a flag takes: far beyond any sensible period, and far from the
/// overflow of the clock arithmetic that timers do with it.
const MAX_FLAG_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration flag (`30s`, `5m`, `1h30m`): more than zero (a zero period would spin or panic
/// the timers) and at most a year. Every duration flag uses it.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    // The same grammar as durations in specs and compose files (Go's), so one word means one
    // thing everywhere.
    let duration = crate::spec::quantity::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    if duration > MAX_FLAG_DURATION {
        return Err("must be at most 8784h (366 days)".to_owned());
    }
    Ok(duration)
}

/// A period of the loop (`--resync`, `--spec-poll`): as [`positive_duration`], and at least a
/// second, since each one lists the whole swarm or reads the whole spec directory.
pub fn period(text: &str) -> Result<Duration, String> {
    let duration = positive_duration(text)?;
    if duration < Duration::from_secs(1) {
        return Err(
            "must be at least 1s (each period lists the swarm or reads every spec)".to_owned(),
        );
    }
    Ok(duration)
}
