//! The command handler's cache of aggregate states: recently used states, whatever their
//! decider, each with the head of its stream it stands at. A cached state is only ever a
//! starting point: an append checks the head it was decided on, and answers that append
//! nothing are decided again on the log (see `CommandHandler::execute`).

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::Mutex;

use chronicle_events::domain::{DomainEvent, Event};
use chronicle_events::{AppendOutcome, AppendRequest, Expected, StreamHead, StreamId};

use super::snapshot::{Pending, Snapshots};
use crate::Decider;

/// How many aggregate states are kept in memory.
pub const CAPACITY: usize = 50_000;

/// A state loaded for deciding, with the head it stands at.
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub head: StreamHead,
    pub state: S,
}

/// A state in the cache, whatever its decider: it can take the events appended to it.
trait CachedState: Send + Sync {
    fn apply(&mut self, event: &Event);
    fn as_any(&self) -> &dyn Any;
    /// What a snapshot of it records: its decider, the decider's snapshot schema, and the
    /// state as JSON.
    fn snapshot(&self) -> (&'static str, u32, serde_json::Value);
}

struct Cached<D: Decider>(D::State);

impl<D: Decider + 'static> CachedState for Cached<D>
where
    D::State: Send + Sync + 'static,
{
    fn apply(&mut self, event: &Event) {
        if let Some(e) = D::Event::from_event(event) {
            self.0 = D::evolve(self.0.clone(), e);
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn snapshot(&self) -> (&'static str, u32, serde_json::Value) {
        (
            std::any::type_name::<D>(),
            D::SNAPSHOT_SCHEMA,
            serde_json::to_value(&self.0).unwrap_or_default(),
        )
    }
}

struct Entry {
    head: StreamHead,
    state: Box<dyn CachedState>,
}

pub struct StateCache {
    entries: Mutex<lru::LruCache<StreamId, Entry>>,
}

impl StateCache {
    pub fn new(capacity: usize) -> Self {
        StateCache {
            entries: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(capacity.max(1)).expect("non-zero"),
            )),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<StreamId, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `stream`'s state as `D` folds it, if cached.
    pub fn get<D: Decider + 'static>(&self, stream: &StreamId) -> Option<Loaded<D::State>>
    where
        D::State: Send + Sync + 'static,
    {
        let mut cache = self.lock();
        let entry = cache.get(stream)?;
        let state = entry.state.as_any().downcast_ref::<Cached<D>>()?;
        Some(Loaded {
            head: entry.head.clone(),
            state: state.0.clone(),
        })
    }

    pub fn put<D: Decider + 'static>(&self, stream: &StreamId, loaded: &Loaded<D::State>)
    where
        D::State: Send + Sync + 'static,
    {
        self.lock().put(
            stream.clone(),
            Entry {
                head: loaded.head.clone(),
                state: Box::new(Cached::<D>(loaded.state.clone())),
            },
        );
    }

    pub fn contains(&self, stream: &StreamId) -> bool {
        self.lock().contains(stream)
    }

    /// The head a cached stream stands at, without touching its recency.
    pub fn head(&self, stream: &StreamId) -> Option<StreamHead> {
        self.lock().peek(stream).map(|e| e.head.clone())
    }

    /// After an append: the cached states of the streams written move on with it. A state
    /// cached at another head than the append expected (or a duplicate append, whose events
    /// landed earlier) is dropped: it is read again when next needed.
    /// With `snapshots`, answers the snapshots due: the streams this append took past a
    /// multiple of their interval.
    pub fn advance(
        &self,
        request: &AppendRequest,
        outcome: &AppendOutcome,
        snapshots: Option<&Snapshots>,
    ) -> Vec<Pending> {
        let mut due = Vec::new();
        let mut cache = self.lock();
        for write in &request.writes {
            let Some(entry) = cache.get_mut(&write.stream) else {
                continue;
            };
            // Appended wherever the stream stood: the cached state stays where it was, and
            // the next load reads what follows it.
            let Expected::Head(expected) = &write.expected else {
                continue;
            };
            if &entry.head != expected || outcome.duplicate {
                cache.pop(&write.stream);
                continue;
            }
            for e in &write.events {
                entry.state.apply(&e.event);
            }
            if let Some(head) = outcome.head_of(&write.stream) {
                let before = entry.head.version;
                entry.head = head;
                if let Some(s) = snapshots
                    && s.due(before, entry.head.version)
                {
                    let (decider, schema, state) = entry.state.snapshot();
                    due.push(Pending {
                        stream: write.stream.clone(),
                        decider,
                        schema,
                        head: entry.head.clone(),
                        state,
                    });
                }
            }
        }
        due
    }
}
