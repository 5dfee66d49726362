//! An event log in memory, for tests that need no server (the command handler's). It keeps
//! the contract of `JetStreamLog` — positions, versions, expected heads, idempotency by
//! command id, atomic multi-stream appends, the hash chain, foreign messages stepped over,
//! live follows — and [`crate::contract`] runs the same tests against both.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chronicle_events::chain::{EnvelopeParts, encode_envelope};
use chronicle_events::upcast::current_schema;
use chronicle_events::{
    AppendOutcome, AppendRequest, AppendedEvent, Envelope, EventLog, Expected, ForeignMessage,
    ForeignReason, LogError, LogStream, RecordedEvent, Stored, StreamHead, StreamId, StreamRead,
};
use chrono::{SubsecRound, Utc};
use futures::StreamExt;
use tokio::sync::watch;
use uuid::Uuid;

use crate::contract::Tamper;

/// One stored message.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)] // nearly every message is an event
enum Message {
    Event(RecordedEvent),
    /// Something Chronicle did not write, on `stream`'s subject.
    Foreign(StreamId, ForeignReason),
}

impl Message {
    fn stream(&self) -> &StreamId {
        match self {
            Message::Event(e) => &e.envelope.stream,
            Message::Foreign(s, _) => s,
        }
    }
}

/// Cheap to clone: clones share the messages.
#[derive(Clone)]
pub struct MemoryLog {
    shared: Arc<Shared>,
}

struct Shared {
    messages: Mutex<Vec<Message>>,
    /// The last position, for live follows.
    end: watch::Sender<u64>,
    /// Every call fails with `Unavailable` while set (to test how callers ride over it).
    down: std::sync::atomic::AtomicBool,
    /// How many stream reads and heads were asked for (to test what a caller reads).
    reads: std::sync::atomic::AtomicU64,
}

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog {
            shared: Arc::new(Shared {
                messages: Mutex::new(Vec::new()),
                end: watch::channel(0).0,
                down: Default::default(),
                reads: Default::default(),
            }),
        }
    }
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// While `down`, every call answers `LogError::Unavailable`.
    pub fn set_down(&self, down: bool) {
        self.shared
            .down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn check_up(&self) -> Result<(), LogError> {
        if self.shared.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(LogError::Unavailable("the in-memory log is down".into()))
        } else {
            Ok(())
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Message>> {
        self.shared
            .messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// How many times a stream was read (or its head asked for) so far.
    pub fn reads(&self) -> u64 {
        self.shared.reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many messages this log holds (events and foreign messages alike).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, messages: &mut Vec<Message>, m: Message) -> u64 {
        messages.push(m);
        messages.len() as u64
    }

    /// A stream's events after `head`, as every reader of the stream sees them: an event
    /// must follow the one before it (version and prev_hash); anything else is stepped over.
    fn read_after(messages: &[Message], stream: &StreamId, head: &StreamHead) -> StreamRead {
        let mut tip = head.clone();
        let mut events = Vec::new();
        for (i, m) in messages.iter().enumerate().skip(head.position as usize) {
            if m.stream() != stream {
                continue;
            }
            tip.position = i as u64 + 1;
            if let Message::Event(e) = m
                && e.version == tip.version + 1
                && e.envelope.prev_hash == tip.hash
            {
                tip.version = e.version;
                tip.hash = Some(e.envelope.hash.clone());
                events.push(e.clone());
            }
        }
        StreamRead { events, head: tip }
    }

    fn stored(position: u64, m: &Message) -> Stored {
        match m {
            Message::Event(e) => Stored::Event(e.clone()),
            Message::Foreign(s, reason) => Stored::Foreign(ForeignMessage {
                position,
                subject: format!("memory.{s}"),
                reason: reason.clone(),
                // The memory log keeps no bytes for them.
                leaf: [0u8; 32],
            }),
        }
    }
}

/// Whether `stream` matches a filter: `job.*`, `job.42`, `*.*`, `>` or none.
fn matches(filter: Option<&str>, stream: &StreamId) -> bool {
    let Some(f) = filter.filter(|f| !f.is_empty() && *f != ">") else {
        return true;
    };
    let (domain, id) = f.split_once('.').unwrap_or((f, "*"));
    (domain == "*" || domain == stream.domain().as_str()) && (id == "*" || id == stream.id())
}

#[async_trait]
impl EventLog for MemoryLog {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, LogError> {
        self.check_up()?;
        if request.writes.is_empty() || request.writes.iter().any(|w| w.events.is_empty()) {
            return Err(LogError::Invalid(
                "an append needs at least one event".into(),
            ));
        }
        if request.event_count() > chronicle_events::jetstream::MAX_EVENTS_PER_APPEND {
            return Err(LogError::Invalid("too many events in one append".into()));
        }
        let mut seen = HashSet::new();
        for w in &request.writes {
            if !seen.insert(&w.stream) {
                return Err(LogError::Invalid(format!(
                    "stream {} written twice in one append",
                    w.stream
                )));
            }
            if let Some(e) = w
                .events
                .iter()
                .find(|e| e.event.domain() != w.stream.domain())
            {
                return Err(LogError::Invalid(format!(
                    "{} is not an event of stream {}",
                    e.event.event_type(),
                    w.stream
                )));
            }
        }
        let mut messages = self.lock();
        // The same command again: its first append, and nothing written.
        let earlier: Vec<AppendedEvent> = messages
            .iter()
            .filter_map(|m| match m {
                Message::Event(e) if e.envelope.command_id == request.command_id => {
                    Some(appended(e))
                }
                _ => None,
            })
            .collect();
        if !earlier.is_empty() {
            return Ok(AppendOutcome {
                command_id: request.command_id,
                events: earlier,
                duplicate: true,
            });
        }
        let mut heads = Vec::with_capacity(request.writes.len());
        for w in &request.writes {
            let actual = Self::read_after(&messages, &w.stream, &StreamHead::EMPTY).head;
            match &w.expected {
                Expected::Head(expected) if expected.position != actual.position => {
                    return Err(LogError::VersionConflict {
                        stream: w.stream.clone(),
                        expected: expected.version,
                        actual: actual.version,
                    });
                }
                Expected::Head(expected) => heads.push(expected.clone()),
                Expected::Any => heads.push(actual),
            }
        }
        let occurred_at = Utc::now().trunc_subsecs(6);
        let mut out = Vec::with_capacity(request.event_count());
        for (w, head) in request.writes.iter().zip(heads) {
            let mut prev = head.hash.clone();
            for (i, pending) in w.events.iter().enumerate() {
                let id = Uuid::now_v7();
                let event_type = pending.event.event_type();
                let data = pending.event.data();
                let (hash, _) = encode_envelope(&EnvelopeParts {
                    id: &id,
                    stream: &w.stream,
                    event_type,
                    schema: current_schema(event_type),
                    occurred_at: &occurred_at,
                    actor: &pending.actor,
                    command_id: &request.command_id,
                    correlation_id: &pending.correlation_id,
                    causation_id: pending.causation_id.as_ref(),
                    data: &pending.event.canonical_data(),
                    prev_hash: prev.as_deref(),
                });
                let recorded = RecordedEvent {
                    position: messages.len() as u64 + 1,
                    version: head.version + 1 + i as u64,
                    envelope: Envelope {
                        id,
                        stream: w.stream.clone(),
                        event_type: event_type.to_owned(),
                        schema: current_schema(event_type),
                        occurred_at,
                        actor: pending.actor.clone(),
                        command_id: request.command_id,
                        correlation_id: pending.correlation_id,
                        causation_id: pending.causation_id,
                        data,
                        prev_hash: prev.clone(),
                        hash: hash.clone(),
                    },
                };
                out.push(appended(&recorded));
                self.push(&mut messages, Message::Event(recorded));
                prev = Some(hash);
            }
        }
        let end = messages.len() as u64;
        drop(messages);
        self.shared.end.send_replace(end);
        Ok(AppendOutcome {
            command_id: request.command_id,
            events: out,
            duplicate: false,
        })
    }

    async fn read_stream_after(
        &self,
        stream: &StreamId,
        head: &StreamHead,
    ) -> Result<StreamRead, LogError> {
        self.check_up()?;
        self.shared
            .reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(Self::read_after(&self.lock(), stream, head))
    }

    async fn stream_head(&self, stream: &StreamId) -> Result<StreamHead, LogError> {
        Ok(self
            .read_stream_after(stream, &StreamHead::EMPTY)
            .await?
            .head)
    }

    async fn last_position(&self) -> Result<u64, LogError> {
        self.check_up()?;
        Ok(self.lock().len() as u64)
    }

    async fn read_from(
        &self,
        from_position: u64,
        filter: Option<&str>,
    ) -> Result<LogStream, LogError> {
        self.check_up()?;
        let items: Vec<Result<Stored, LogError>> = self
            .lock()
            .iter()
            .enumerate()
            .skip(from_position.max(1) as usize - 1)
            .filter(|(_, m)| matches(filter, m.stream()))
            .map(|(i, m)| Ok(Self::stored(i as u64 + 1, m)))
            .collect();
        Ok(futures::stream::iter(items).boxed())
    }

    async fn follow(&self, from_position: u64, filters: &[&str]) -> Result<LogStream, LogError> {
        self.check_up()?;
        let filters: Vec<String> = filters.iter().map(|f| f.to_string()).collect();
        let this = self.clone();
        let end = self.shared.end.subscribe();
        Ok(
            futures::stream::unfold((from_position.max(1), end), move |(mut next, mut end)| {
                let (filters, this) = (filters.clone(), this.clone());
                async move {
                    loop {
                        let found = {
                            let messages = this.lock();
                            messages
                                .iter()
                                .enumerate()
                                .skip(next as usize - 1)
                                .find(|(_, m)| {
                                    filters.is_empty()
                                        || filters.iter().any(|f| matches(Some(f), m.stream()))
                                })
                                .map(|(i, m)| (i as u64 + 1, Self::stored(i as u64 + 1, m)))
                                .or_else(|| {
                                    next = messages.len() as u64 + 1;
                                    None
                                })
                        };
                        if let Some((position, stored)) = found {
                            return Some((Ok(stored), (position + 1, end)));
                        }
                        if end.changed().await.is_err() {
                            return None;
                        }
                    }
                }
            })
            .boxed(),
        )
    }
}

fn appended(e: &RecordedEvent) -> AppendedEvent {
    AppendedEvent {
        id: e.envelope.id,
        stream: e.envelope.stream.clone(),
        event_type: e.envelope.event_type.clone(),
        version: e.version,
        position: e.position,
        hash: e.envelope.hash.clone(),
    }
}

#[async_trait]
impl Tamper for MemoryLog {
    async fn publish_junk(&self, stream: &StreamId) -> u64 {
        let mut messages = self.lock();
        let p = self.push(
            &mut messages,
            Message::Foreign(stream.clone(), ForeignReason::Unauthenticated),
        );
        drop(messages);
        self.shared.end.send_replace(p);
        p
    }

    async fn republish(&self, position: u64) -> u64 {
        let mut messages = self.lock();
        let copy = messages[position as usize - 1].clone();
        let p = self.push(&mut messages, copy);
        drop(messages);
        self.shared.end.send_replace(p);
        p
    }
}
