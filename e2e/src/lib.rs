//! End-to-end support: the probe's wire format and the status-file contract (DESIGN §3) as seen from outside.

pub mod probe;
pub mod status;
