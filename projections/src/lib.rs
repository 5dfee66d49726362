//! Chronicle's read side: the Postgres read models folded from the log.
//!
//! For now this holds the migration runner ([`migrate`]) and the connection pool set-up
//! ([`db`]); the projector runtime and the read models build on them.

pub mod db;
pub mod migrate;
