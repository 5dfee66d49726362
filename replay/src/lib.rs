//! The auditor's tools over the log:
//! - [`verify`]: every event's hash, every stream's chain and versions, gaps in positions,
//!   and every seal's root, signature and chain, reporting precisely what broke and where;
//! - [`seal`] and [`sealer`]: signed Merkle checkpoints of the log;
//! - [`checkpoint`]: tree heads as C2SP signed notes;
//! - [`tree`]: the whole log's Merkle tree stored as tiles in Postgres, kept up to date by
//!   the sealer, and its inclusion and consistency proofs between signed checkpoints;
//! - [`prove`]: proof bundles, and their offline check with the public seal key alone;
//! - [`history`]: the log read with filters, and any stream's state as of a time or a
//!   position, folded with the deciders' own `evolve`;
//! - [`export`]: a range of the log with its seals in one file, verifiable offline;
//! - [`backup`]: online, incremental backups of every stored message, and the restore
//!   that puts each back at its position;
//! - [`rebuild`]: a projection rebuilt from the log beside the live tables, compared, and
//!   swapped in atomically.

pub mod backup;
pub mod checkpoint;
pub mod export;
pub mod history;
pub mod prove;
pub mod rebuild;
pub mod seal;
pub mod sealer;
pub mod tree;
pub mod verify;

pub use verify::{Break, BreakKind, Gap, SealReport, Verifier, VerifyReport, verify_log};
