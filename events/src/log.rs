//! The event log's interface: append with an expected version, read one stream, read and
//! follow the whole log. [`crate::JetStreamLog`] implements it on NATS JetStream.

use async_trait::async_trait;
use futures::stream::BoxStream;
use uuid::Uuid;

use crate::envelope::{PendingEvent, RecordedEvent};
use crate::stream_id::StreamId;

/// Where a stream stands: how many events it has, the position of the last one and its
/// hash (the next event's `prev_hash`). A stream with no events is [`StreamHead::EMPTY`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamHead {
    pub version: u64,
    pub position: u64,
    pub hash: Option<String>,
}

impl StreamHead {
    pub const EMPTY: StreamHead = StreamHead {
        version: 0,
        position: 0,
        hash: None,
    };

    /// The head after `event`, read from the log.
    pub fn of(event: &RecordedEvent) -> StreamHead {
        StreamHead {
            version: event.version,
            position: event.position,
            hash: Some(event.envelope.hash.clone()),
        }
    }
}

/// What an append expects of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// The stream is exactly at this head (the version a command decided on); otherwise
    /// the append fails with [`LogError::VersionConflict`].
    Head(StreamHead),
    /// Whatever the stream holds: the log reads the head itself and, if another append
    /// lands first, reads it again, so that the hash chain stays whole without the caller
    /// ever seeing a conflict.
    Any,
}

impl Expected {
    /// The stream must not exist yet.
    pub const NO_STREAM: Expected = Expected::Head(StreamHead::EMPTY);
}

/// The events one command appends to one stream.
#[derive(Debug, Clone)]
pub struct StreamWrite {
    pub stream: StreamId,
    pub expected: Expected,
    pub events: Vec<PendingEvent>,
}

/// One command's append: one or more streams, all or nothing. `command_id` makes it
/// idempotent: appending the same command id again appends nothing and answers the
/// first append's events.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    pub command_id: Uuid,
    pub writes: Vec<StreamWrite>,
}

impl AppendRequest {
    /// The common case: events for one stream.
    pub fn single(
        command_id: Uuid,
        stream: StreamId,
        expected: Expected,
        events: Vec<PendingEvent>,
    ) -> Self {
        AppendRequest {
            command_id,
            writes: vec![StreamWrite {
                stream,
                expected,
                events,
            }],
        }
    }

    pub fn event_count(&self) -> usize {
        self.writes.iter().map(|w| w.events.len()).sum()
    }
}

/// One appended event: where it landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedEvent {
    pub id: Uuid,
    pub stream: StreamId,
    pub event_type: String,
    pub version: u64,
    pub position: u64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub command_id: Uuid,
    /// In append order.
    pub events: Vec<AppendedEvent>,
    /// The command id had been appended before: nothing was written now, and `events` are
    /// the first append's.
    pub duplicate: bool,
}

impl AppendOutcome {
    /// The head of `stream` after this append, if it wrote to it.
    pub fn head_of(&self, stream: &StreamId) -> Option<StreamHead> {
        self.events
            .iter()
            .rev()
            .find(|e| &e.stream == stream)
            .map(|e| StreamHead {
                version: e.version,
                position: e.position,
                hash: Some(e.hash.clone()),
            })
    }

    /// The position of the last event appended.
    pub fn last_position(&self) -> u64 {
        self.events.iter().map(|e| e.position).max().unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The stream is not at the version the append expected.
    #[error("stream {stream} is at version {actual}, not {expected}")]
    VersionConflict {
        stream: StreamId,
        expected: u64,
        actual: u64,
    },
    /// One event is larger than the server takes in one message; nothing was written.
    #[error("an event of {size} bytes exceeds the log's limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    /// The request itself is wrong (empty, duplicate streams, ...); nothing was written.
    #[error("invalid append: {0}")]
    Invalid(String),
    /// NATS could not be reached or did not answer; the outcome of an append may be
    /// unknown, and retrying it with the same command id is safe.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// The stream's configuration does not give the guarantees Chronicle relies on.
    #[error("the log's stream is misconfigured: {0}")]
    Misconfigured(String),
    /// Something in the log does not decode as an event.
    #[error("corrupt event at position {position}: {message}")]
    Corrupt { position: u64, message: String },
}

/// A stream of events read from the log.
pub type EventStream = BoxStream<'static, Result<RecordedEvent, LogError>>;

#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends one command's events atomically; see [`AppendRequest`] and [`Expected`].
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, LogError>;

    /// The events of one stream from `from_version` (1 for all), in order. Costs time in
    /// proportion to the stream, not to the log.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
    ) -> Result<Vec<RecordedEvent>, LogError>;

    /// The events of one stream after `head` (a head read earlier), in order: how a cached
    /// state catches up without reading the stream again from its start.
    async fn read_stream_after(
        &self,
        stream: &StreamId,
        head: &StreamHead,
    ) -> Result<Vec<RecordedEvent>, LogError>;

    /// Where a stream stands, without reading its events.
    async fn stream_head(&self, stream: &StreamId) -> Result<StreamHead, LogError>;

    /// The position of the last event in the log (0 when empty).
    async fn last_position(&self) -> Result<u64, LogError>;

    /// The log from `from_position` up to its end as of the call, optionally only the
    /// events of streams matching `filter` (`job.*`, `job.42`, `*.*`).
    async fn read_from(
        &self,
        from_position: u64,
        filter: Option<&str>,
    ) -> Result<EventStream, LogError>;

    /// The log from `from_position` on, live: the stream never ends by itself. `filters`
    /// are stream filters as for [`EventLog::read_from`]; none means every stream.
    async fn follow(&self, from_position: u64, filters: &[&str]) -> Result<EventStream, LogError>;
}
