//! Snapshots of aggregate states, so that the first command on a long stream a process has
//! not cached reads only the events after the snapshot instead of the whole stream.
//!
//! A snapshot is derived data kept outside the log (a [`SnapshotStore`]: JetStream
//! key-value in a server, `chronicle_events::snapshots::KvSnapshots`, authenticated there
//! with the event key), written after the
//! append that takes a stream's version to a multiple of `every`. It is used only if it is
//! the same decider's at the same [`Decider::SNAPSHOT_SCHEMA`], and its head is still the
//! log's: the event at its position is the stream's at that version with that hash. The
//! events after it are then read and folded as always, so a snapshot never changes an
//! answer (`commands/tests/snapshots.rs` decides on both and compares).

use std::sync::Arc;

pub use chronicle_events::snapshots::SnapshotStore;
use chronicle_events::{EventLog, Stored, StreamHead, StreamId};
use serde::{Deserialize, Serialize};

use super::cache::Loaded;
use crate::Decider;

/// The snapshots of a handler: a store, and every how many events of a stream one is taken.
#[derive(Clone)]
pub struct Snapshots {
    pub store: Arc<dyn SnapshotStore>,
    pub every: u64,
}

#[derive(Serialize, Deserialize)]
struct Record {
    decider: String,
    schema: u32,
    version: u64,
    position: u64,
    hash: Option<String>,
    state: serde_json::Value,
}

/// A stream's key in a store: `<domain>.<id in hex>` (ids may hold characters keys may not).
pub fn key(stream: &StreamId) -> String {
    format!("{}.{}", stream.domain(), hex::encode(stream.id()))
}

/// A snapshot to write: the state of `stream` at `head`.
pub struct Pending {
    pub stream: StreamId,
    pub decider: &'static str,
    pub schema: u32,
    pub head: StreamHead,
    pub state: serde_json::Value,
}

impl Snapshots {
    /// Whether an append from `before` to `after` takes a stream past a multiple of `every`.
    pub fn due(&self, before: u64, after: u64) -> bool {
        self.every > 0 && after / self.every > before / self.every
    }

    pub fn save(&self, pending: Pending) {
        let record = Record {
            decider: pending.decider.to_owned(),
            schema: pending.schema,
            version: pending.head.version,
            position: pending.head.position,
            hash: pending.head.hash,
            state: pending.state,
        };
        if let Ok(bytes) = serde_json::to_vec(&record) {
            metrics::counter!("chronicle_snapshots_written_total").increment(1);
            self.store.put(key(&pending.stream), bytes);
        }
    }

    /// `stream`'s snapshot for `D`, if there is a usable one.
    pub async fn load<D: Decider + 'static>(
        &self,
        log: &dyn EventLog,
        stream: &StreamId,
    ) -> Option<Loaded<D::State>> {
        let bytes = self.store.get(&key(stream)).await?;
        let used = async {
            let record: Record = serde_json::from_slice(&bytes).ok()?;
            if record.decider != std::any::type_name::<D>() || record.schema != D::SNAPSHOT_SCHEMA {
                return None;
            }
            let state: D::State = serde_json::from_value(record.state).ok()?;
            // Still the log's: the event at its position is this stream's, at its version,
            // with its hash (a log restored from elsewhere, or rebuilt, fails here).
            match log.stored_at(record.position).await.ok()? {
                Some(Stored::Event(e))
                    if &e.envelope.stream == stream
                        && e.version == record.version
                        && Some(&e.envelope.hash) == record.hash.as_ref() => {}
                _ => return None,
            }
            Some(Loaded {
                head: StreamHead {
                    version: record.version,
                    position: record.position,
                    hash: record.hash,
                },
                state,
            })
        }
        .await;
        metrics::counter!(
            "chronicle_snapshot_loads_total",
            "used" => if used.is_some() { "yes" } else { "no" }
        )
        .increment(1);
        used
    }
}
