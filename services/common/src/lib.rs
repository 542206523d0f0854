//! Shared plumbing of the account and quote services: advertised address, health, logging, serving.

pub mod addr;
pub mod health;
pub mod http;
pub mod server;
pub mod telemetry;

pub use addr::advertised_addr;
pub use health::Health;
pub use server::{ServeError, Server, serve, shutdown_signal};
