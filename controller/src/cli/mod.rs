//! The command line's commands, one module per command, beside the status they read.

pub mod apply;
pub mod get;
pub mod live_status;
pub mod wait;
