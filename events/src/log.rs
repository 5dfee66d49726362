//! The event log's interface: append with an expected version, read one stream, read and
//! follow the whole log. [`crate::JetStreamLog`] implements it on NATS JetStream.

use async_trait::async_trait;
use futures::stream::BoxStream;
use uuid::Uuid;

use crate::envelope::{PendingEvent, RecordedEvent};
use crate::stream_id::StreamId;

/// Where a stream stands: how many events it has, the position of the last message on its
/// subject (what the next append expects, be it an event or a foreign message stepped
/// over) and the last event's hash (the next event's `prev_hash`). A stream with no
/// events is [`StreamHead::EMPTY`].
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

/// Why a stored message is not one of Chronicle's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForeignReason {
    /// No `Chronicle-Auth`, or one that no event key verifies: not written by Chronicle.
    Unauthenticated,
    /// Authenticated, but not an envelope of the stream its subject names.
    Malformed(String),
    /// Authenticated and well formed, but not the next event of its stream: a copy of an
    /// earlier event published again.
    OutOfPlace(String),
}

impl std::fmt::Display for ForeignReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForeignReason::Unauthenticated => f.write_str("not authenticated by an event key"),
            ForeignReason::Malformed(why) => write!(f, "not an envelope: {why}"),
            ForeignReason::OutOfPlace(why) => write!(f, "out of place: {why}"),
        }
    }
}

/// A stored message that is not one of Chronicle's events. Readers step past it; `verify`
/// reports it; the sealer records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignMessage {
    pub position: u64,
    pub subject: String,
    pub reason: ForeignReason,
    /// Its Merkle leaf value (`merkle::leaf_of_payload` of its bytes): the whole log's
    /// tree has a leaf for every position, events or not.
    pub leaf: crate::merkle::Hash,
}

impl ForeignMessage {
    /// Counts and logs it for `reader` (who stepped past it).
    pub fn record(&self, reader: &'static str) {
        metrics::counter!("chronicle_foreign_messages_total", "reader" => reader).increment(1);
        tracing::warn!(
            reader,
            position = self.position,
            subject = %self.subject,
            reason = %self.reason,
            "stepped past a message that is not an event"
        );
    }
}

/// One stored message as a reader of the whole log sees it.
// Events are nearly every message: boxing them to shrink the rare foreign one would cost an
// allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    Event(RecordedEvent),
    Foreign(ForeignMessage),
}

impl Stored {
    pub fn position(&self) -> u64 {
        match self {
            Stored::Event(e) => e.position,
            Stored::Foreign(f) => f.position,
        }
    }

    /// Its Merkle leaf value, as `merkle::leaf_of_payload` gives it from the stored bytes:
    /// an event's chain hash (a stored event's `hash` is 32 bytes of hex, or the log does
    /// not read it as an event), a foreign message's as found.
    pub fn leaf(&self) -> crate::merkle::Hash {
        match self {
            Stored::Event(e) => {
                let mut out = [0u8; 32];
                // Only events built in memory by tests can have another `hash`.
                let _ = hex::decode_to_slice(&e.envelope.hash, &mut out);
                out
            }
            Stored::Foreign(f) => f.leaf,
        }
    }

    pub fn event(self) -> Option<RecordedEvent> {
        match self {
            Stored::Event(e) => Some(e),
            Stored::Foreign(_) => None,
        }
    }
}

/// The events of one stream after a head, and the head after them.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRead {
    pub events: Vec<RecordedEvent>,
    pub head: StreamHead,
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

/// The stored messages of the log, in order: events, and foreign messages to step past.
pub type LogStream = BoxStream<'static, Result<Stored, LogError>>;

/// A stream of events read from the log.
pub type EventStream = BoxStream<'static, Result<RecordedEvent, LogError>>;

/// The events of `stream`, stepping past (and recording, as `reader`) foreign messages.
pub fn events_only(stream: LogStream, reader: &'static str) -> EventStream {
    use futures::StreamExt;
    stream
        .filter_map(move |item| {
            futures::future::ready(match item {
                Ok(Stored::Event(e)) => Some(Ok(e)),
                Ok(Stored::Foreign(f)) => {
                    f.record(reader);
                    None
                }
                Err(e) => Some(Err(e)),
            })
        })
        .boxed()
}

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
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let mut events = self
            .read_stream_after(stream, &StreamHead::EMPTY)
            .await?
            .events;
        events.retain(|e| e.version >= from_version);
        Ok(events)
    }

    /// The events of one stream after `head` (a head read earlier), in order, and the head
    /// after them: how a cached state catches up without reading the stream again from its
    /// start. Foreign messages on the stream's subject are stepped over (the head's
    /// position moves past them, its version and hash do not).
    async fn read_stream_after(
        &self,
        stream: &StreamId,
        head: &StreamHead,
    ) -> Result<StreamRead, LogError>;

    /// Where a stream stands, without reading its events.
    async fn stream_head(&self, stream: &StreamId) -> Result<StreamHead, LogError>;

    /// The position of the last event in the log (0 when empty).
    async fn last_position(&self) -> Result<u64, LogError>;

    /// The log from `from_position` up to its end as of the call, optionally only the
    /// messages of streams matching `filter` (`job.*`, `job.42`, `*.*`).
    async fn read_from(
        &self,
        from_position: u64,
        filter: Option<&str>,
    ) -> Result<LogStream, LogError>;

    /// The log from `from_position` on, live: the stream never ends by itself. `filters`
    /// are stream filters as for [`EventLog::read_from`]; none means every stream.
    async fn follow(&self, from_position: u64, filters: &[&str]) -> Result<LogStream, LogError>;

    /// The stored message at `position`, if the log holds one there.
    async fn stored_at(&self, position: u64) -> Result<Option<Stored>, LogError> {
        use futures::StreamExt;
        let mut from = self.read_from(position, None).await?;
        Ok(match from.next().await.transpose()? {
            Some(s) if s.position() == position => Some(s),
            _ => None,
        })
    }
}
