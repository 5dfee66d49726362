//! The auditor's tools over the log. For now: [`verify`], which recomputes every event's
//! hash and every stream's chain and looks for gaps in positions, reporting precisely what
//! broke and where.

pub mod verify;

pub use verify::{Break, BreakKind, Gap, Verifier, VerifyReport, verify_log};
