//! The `chronicle` binary's library: configuration, the HTTP API (axum) and the
//! subcommands that run it (`dev`, `serve`, `migrate`).
//!
//! Kept as a library so that tests can start the real application in-process against
//! the real NATS and Postgres.

pub mod auth;
pub mod backup_cli;
pub mod config;
pub mod dev;
pub mod error;
pub mod http;
pub mod idempotency;
pub mod live;
pub mod metrics;
pub mod positions;
pub mod replay_cli;
pub mod server;
pub mod state;
pub mod telemetry;
