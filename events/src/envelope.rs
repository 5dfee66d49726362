//! The event envelope, exactly as the contract gives it, and the shapes an event takes
//! before it is appended ([`PendingEvent`]) and after it is read back ([`RecordedEvent`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{DecodeError, Event};
use crate::stream_id::StreamId;
use crate::upcast;

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    User,
    Agent,
    System,
}

impl ActorKind {
    /// Its name as serialized: `user`, `agent` or `system`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Agent => "agent",
            ActorKind::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: String,
}

impl Actor {
    pub fn user(id: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::User,
            id: id.into(),
        }
    }
    pub fn agent(id: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::Agent,
            id: id.into(),
        }
    }
    pub fn system(id: impl Into<String>) -> Self {
        Actor {
            kind: ActorKind::System,
            id: id.into(),
        }
    }
}

/// One event as stored in the log. `position` and `version` are not part of it: they are
/// where the log put it (see [`RecordedEvent`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    pub stream: StreamId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema: u32,
    pub occurred_at: DateTime<Utc>,
    pub actor: Actor,
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub data: serde_json::Value,
    pub prev_hash: Option<String>,
    pub hash: String,
}

impl Envelope {
    /// The payload as today's typed event: upcast from the stored schema, then decoded.
    pub fn decode(&self) -> Result<Event, DecodeError> {
        if self.schema == upcast::current_schema(&self.event_type) {
            // Already today's schema: decode in place.
            return Event::decode_ref(self.stream.domain(), &self.event_type, &self.data);
        }
        let (schema, data) = upcast::upcast(&self.event_type, self.schema, self.data.clone())?;
        debug_assert_eq!(schema, upcast::current_schema(&self.event_type));
        Event::decode(self.stream.domain(), &self.event_type, data)
    }
}

/// An event a command decided on, not yet in the log. The log gives it its id, time,
/// chain hashes and place.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub event: Event,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
}

impl PendingEvent {
    pub fn new(event: impl Into<Event>, actor: Actor, correlation_id: Uuid) -> Self {
        PendingEvent {
            event: event.into(),
            actor,
            correlation_id,
            causation_id: None,
        }
    }

    pub fn caused_by(mut self, causation_id: Uuid) -> Self {
        self.causation_id = Some(causation_id);
        self
    }
}

/// An event read from the log, with where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// The stream sequence: the event's place in the whole log.
    pub position: u64,
    /// The count of events of its stream up to and including this one.
    pub version: u64,
    pub envelope: Envelope,
}

impl RecordedEvent {
    pub fn decode(&self) -> Result<Event, DecodeError> {
        self.envelope.decode()
    }
}
