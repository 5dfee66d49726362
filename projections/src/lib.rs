//! Chronicle's read side: the Postgres read models folded from the log.
//!
//! - [`models`]: the read models, one projection per group of tables;
//! - [`runtime`]: the projector runtime that applies the log to them exactly once;
//! - [`feed`]: one reader of the log per projector process, shared by its projections;
//! - [`migrate`]: the migration runner; [`db`]: the connection pool.

mod coalesce;
pub mod db;
pub mod feed;
pub mod migrate;
pub mod models;
pub mod runtime;
