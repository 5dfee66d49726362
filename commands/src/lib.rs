//! The command side's pure core: one *decider* per aggregate.
//!
//! A decider is three plain functions — [`Decider::initial_state`], [`Decider::decide`]
//! (a command, the current state and what else the decision consults give events, or a
//! [`Rejection`]) and [`Decider::evolve`] (a state and an event give the next state). They
//! do no I/O: the command handler at the edge ([`handler`]) loads a stream and what the
//! decision consults, folds them with `evolve`, calls `decide` and appends what comes out
//! with the version it decided on. Every rule lives in exactly one decider (or in
//! [`governance`] and [`permissions`]), and is tested there given/when/then (`spec`).

pub mod agent;
pub mod approval;
pub mod chart;
pub mod command;
pub mod entry;
pub mod governance;
pub mod handler;
pub mod invoice;
pub mod job;
pub mod permissions;
#[cfg(test)]
pub(crate) mod spec;
pub mod user;

pub use command::Command;
pub use handler::{Answer, CommandHandler, Ctx, EscalatedResult, Executed, HandlerError};
pub use permissions::Principal;

use chronicle_events::domain::DomainEvent;

/// Why a command was refused; each maps to one problem code of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCode {
    NotFound,
    AlreadyExists,
    InvalidTransition,
    ValidationFailed,
    UnbalancedEntry,
    AccountClosed,
    UnknownAccount,
    CurrencyMismatch,
    UnknownAgent,
    /// A payment larger than what is outstanding.
    Overpayment,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub code: RejectionCode,
    pub message: String,
    /// The field at fault, for validation errors.
    pub field: Option<&'static str>,
}

impl Rejection {
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            code: RejectionCode::ValidationFailed,
            message: message.into(),
            field: Some(field),
        }
    }

    /// `field` is not a usable aggregate id (one NATS subject token).
    pub fn bad_id(field: &'static str) -> Self {
        Rejection::invalid(
            field,
            format!("{field} must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', ':' or '@'"),
        )
    }
}

/// Checks an aggregate id the command names.
pub fn require_id(field: &'static str, id: &str) -> Result<(), Rejection> {
    if chronicle_events::stream_id::valid_id(id) {
        Ok(())
    } else {
        Err(Rejection::bad_id(field))
    }
}

/// One aggregate's decision logic.
pub trait Decider {
    type Command;
    type Event: DomainEvent;
    /// Serializable, for snapshots: a state read back must equal the one written.
    type State: Clone + serde::Serialize + serde::de::DeserializeOwned;
    /// The version of `State`'s shape and of `evolve`'s rules, as snapshots record it: a
    /// snapshot of another version is ignored (and the stream read whole). Bump it when
    /// either changes in a way that gives another state for the same events.
    const SNAPSHOT_SCHEMA: u32 = 1;
    /// What a decision consults beyond its own aggregate — other aggregates' states, as the
    /// handler loads them for the command (`()` for most). A decision never changes them.
    type Context;

    fn initial_state() -> Self::State;
    fn decide(
        command: &Self::Command,
        state: &Self::State,
        context: &Self::Context,
    ) -> Result<Vec<Self::Event>, Rejection>;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// The state after `events`, from the initial state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State
    where
        Self::Event: 'a,
    {
        events
            .into_iter()
            .fold(Self::initial_state(), |s, e| Self::evolve(s, e))
    }
}

/// The calendar dates a command may carry: years 1 to 9999, what ISO 8601's plain form
/// writes and every store of the read models keeps. (A date the read store cannot hold,
/// accepted into the log, would stop a projection for good.)
pub fn valid_date(date: chrono::NaiveDate) -> bool {
    use chrono::Datelike;
    (1..=9999).contains(&date.year())
}

/// Checks a calendar date a command carries (see [`valid_date`]).
pub fn require_date(field: &'static str, date: chrono::NaiveDate) -> Result<(), Rejection> {
    if valid_date(date) {
        Ok(())
    } else {
        Err(Rejection::invalid(
            field,
            format!("{field} must be a date from 0001-01-01 to 9999-12-31"),
        ))
    }
}

/// Checks a free-text field: not blank, at most `max` characters.
pub fn require_text(field: &'static str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        return Err(Rejection::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > max {
        return Err(Rejection::invalid(
            field,
            format!("{field} must be at most {max} characters"),
        ));
    }
    Ok(())
}
