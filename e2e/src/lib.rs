//! End-to-end support: the probe's wire format and the status-file contract (README, "Status file") as seen from outside.

pub mod probe;
pub mod status;
