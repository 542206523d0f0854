//! What the operator shows: the status, the page and its overview, activity, file_sd, metrics and notifications.

pub mod activity;
pub mod file_sd;
pub mod metrics;
pub mod notify;
pub mod overview;
pub mod page;
pub mod status;
