//! Chronicle's event model and its log.
//!
//! Everything Chronicle knows is an event in one JetStream stream. This crate holds what an
//! event *is* — the [`Envelope`], the payload types of every domain in the business's words
//! ([`domain`]), the canonical encoding and per-stream hash chain ([`chain`]), schema
//! versions and upcasting ([`upcast`]) — and the log itself: the [`EventLog`] trait and its
//! JetStream implementation ([`JetStreamLog`]).
//!
//! Nothing here but [`jetstream`] does I/O, so the model is tested with plain values.

pub mod auth;
pub mod chain;
pub mod domain;
pub mod envelope;
pub mod jetstream;
pub mod log;
pub mod merkle;
pub mod snapshots;
pub mod stream_id;
pub mod tlog;
pub mod upcast;

pub use auth::Keyring;
pub use chain::{ChainError, canonical_json, compute_hash};
pub use domain::{DomainEvent, Event};
pub use envelope::{Actor, ActorKind, Envelope, PendingEvent, RecordedEvent};
pub use jetstream::{JetStreamLog, LogConfig};
pub use log::{
    AppendOutcome, AppendRequest, AppendedEvent, EventLog, EventStream, Expected, ForeignMessage,
    ForeignReason, LogError, LogStream, Stored, StreamHead, StreamRead, StreamWrite, events_only,
};
pub use stream_id::{Domain, StreamId, StreamIdError};
