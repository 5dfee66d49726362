//! The whole log's Merkle tree in Postgres (schema `audit`, `migrations/0004`): its tiles
//! (`chronicle_events::tlog`), its size and root, the unauthenticated positions found on
//! the way, and every checkpoint a seal signed. Derived from the log like a read model:
//! the sealer keeps it (one active across processes, [`Keeper`]), and an empty or
//! foreign store is rebuilt from the log.
//!
//! Why Postgres rather than a JetStream object store: a proof reads a few tiles in one
//! query; the size, the tiles and the checkpoints move in one transaction, so a reader
//! never sees a checkpoint the tiles cannot prove; and every process that answers audit
//! queries already holds a pool to it.

use std::collections::BTreeSet;

use chronicle_events::domain::seal::SealRecorded;
use chronicle_events::domain::{Event, SealEvent};
use chronicle_events::jetstream::RawEvent;
use chronicle_events::merkle::{Hash, leaf_of_payload};
use chronicle_events::tlog::{
    MISSING, MissingTile, ProofPlan, TileId, Tiles, TreeBuilder, consistency_ranges,
    frontier_tiles, inclusion_ranges,
};
use chronicle_events::{
    EventLog, ForeignReason, JetStreamLog, LogError, LogStream, RecordedEvent, Stored,
};
use futures::StreamExt;
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use crate::seal::{PublicSealKey, checkpoint_note};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the tree's store: {0}")]
    Store(#[from] tokio_postgres::Error),
    /// The store holds fewer tiles than its size says: written by something else.
    #[error("the tree's store is inconsistent: {0}")]
    Missing(#[from] MissingTile),
    /// Another process grew the tree meanwhile (two sealers at once); start again.
    #[error("another process moved the tree")]
    Moved,
}

/// The checkpoint name of a log: `chronicle/<stream>`.
pub fn origin(log: &JetStreamLog) -> String {
    format!("chronicle/{}", log.config().stream_name)
}

/// Reads these tiles (those the store holds).
pub async fn read_tiles<C: GenericClient>(
    db: &C,
    ids: &BTreeSet<TileId>,
) -> Result<Tiles, tokio_postgres::Error> {
    let levels: Vec<i16> = ids.iter().map(|t| t.level as i16).collect();
    let indexes: Vec<i64> = ids.iter().map(|t| t.index as i64).collect();
    let rows = db
        .query(
            "SELECT t.level, t.idx, t.hashes FROM audit.tree_tiles t \
             JOIN unnest($1::int2[], $2::int8[]) AS w(level, idx) \
             ON t.level = w.level AND t.idx = w.idx",
            &[&levels, &indexes],
        )
        .await?;
    let mut tiles = Tiles::default();
    for r in rows {
        let id = TileId {
            level: r.get::<_, i16>(0) as u32,
            index: r.get::<_, i64>(1) as u64,
        };
        tiles.insert_bytes(id, r.get::<_, &[u8]>(2));
    }
    Ok(tiles)
}

/// The size of the stored tree and its root.
pub async fn stored_size<C: GenericClient>(db: &C) -> Result<(u64, Hash), tokio_postgres::Error> {
    let row = db
        .query_opt("SELECT size, root FROM audit.tree", &[])
        .await?;
    Ok(match row {
        Some(r) => (
            r.get::<_, i64>(0) as u64,
            Hash::try_from(r.get::<_, &[u8]>(1)).unwrap_or(MISSING),
        ),
        None => (0, chronicle_events::merkle::merkle_root(&[])),
    })
}

/// A checkpoint a seal signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The C2SP signed note.
    pub note: String,
    /// Where the seal that signed it is in the log.
    pub seal_position: u64,
}

/// The checkpoint of tree size `size`, or the latest when `None`.
pub async fn checkpoint<C: GenericClient>(
    db: &C,
    size: Option<u64>,
) -> Result<Option<StoredCheckpoint>, tokio_postgres::Error> {
    let row = match size {
        Some(n) => {
            db.query_opt(
                "SELECT size, root, note, seal_position FROM audit.checkpoints WHERE size = $1",
                &[&(n.min(i64::MAX as u64) as i64)],
            )
            .await?
        }
        None => {
            db.query_opt(
                "SELECT size, root, note, seal_position FROM audit.checkpoints \
                 ORDER BY size DESC LIMIT 1",
                &[],
            )
            .await?
        }
    };
    Ok(row.map(|r| StoredCheckpoint {
        size: r.get::<_, i64>(0) as u64,
        root: Hash::try_from(r.get::<_, &[u8]>(1)).unwrap_or(MISSING),
        note: r.get(2),
        seal_position: r.get::<_, i64>(3) as u64,
    }))
}

/// An inclusion proof (RFC 9162 §2.1.3): leaf `leaf_index` (position `leaf_index + 1`)
/// with leaf hash `leaf_hash` is in the tree of `tree_size` leaves; `hashes` from the
/// leaf up, hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InclusionProof {
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub hashes: Vec<String>,
}

/// A consistency proof (RFC 9162 §2.1.4) from the tree of `from` leaves to the tree of
/// `to`; `hashes` hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("no seal has signed a checkpoint yet")]
    NoCheckpoint,
    #[error("{0} is not a sealed tree size; GET /v1/audit/checkpoint names the latest")]
    NotSealed(u64),
    #[error("position {position} is not in the tree of {size} (positions 1..={size})")]
    OutOfRange { position: u64, size: u64 },
    #[error("from ({from}) is after to ({to})")]
    FromAfterTo { from: u64, to: u64 },
    #[error(transparent)]
    Tree(#[from] TreeError),
}

impl From<tokio_postgres::Error> for ProofError {
    fn from(e: tokio_postgres::Error) -> Self {
        ProofError::Tree(TreeError::Store(e))
    }
}

/// The checkpoint of sealed size `size` (the latest when `None`), or why there is none.
pub async fn sealed<C: GenericClient>(
    db: &C,
    size: Option<u64>,
) -> Result<StoredCheckpoint, ProofError> {
    match (checkpoint(db, size).await?, size) {
        (Some(c), _) => Ok(c),
        (None, Some(n)) => Err(ProofError::NotSealed(n)),
        (None, None) => Err(ProofError::NoCheckpoint),
    }
}

/// The inclusion proof of `position` in the sealed tree of `size` leaves (the latest
/// checkpoint's when `None`), with that checkpoint.
pub async fn inclusion<C: GenericClient>(
    db: &C,
    position: u64,
    size: Option<u64>,
) -> Result<(InclusionProof, StoredCheckpoint), ProofError> {
    let cp = sealed(db, size).await?;
    if position == 0 || position > cp.size {
        return Err(ProofError::OutOfRange {
            position,
            size: cp.size,
        });
    }
    let index = position - 1;
    let mut ranges = inclusion_ranges(index, cp.size);
    ranges.push((index, index + 1));
    let plan = ProofPlan::of(ranges);
    let tiles = read_tiles(db, &plan.tiles).await?;
    let mut hashes = plan.hashes(&tiles).map_err(TreeError::from)?;
    let leaf = hashes.pop().expect("the leaf's own range");
    Ok((
        InclusionProof {
            leaf_index: index,
            tree_size: cp.size,
            leaf_hash: hex::encode(leaf),
            hashes: hashes.iter().map(hex::encode).collect(),
        },
        cp,
    ))
}

/// The consistency proof between the sealed trees of `from` and `to` leaves (the latest
/// checkpoint when `to` is `None`), with both checkpoints.
pub async fn consistency<C: GenericClient>(
    db: &C,
    from: u64,
    to: Option<u64>,
) -> Result<(ConsistencyProof, StoredCheckpoint, StoredCheckpoint), ProofError> {
    let new = sealed(db, to).await?;
    if from > new.size {
        return Err(ProofError::FromAfterTo { from, to: new.size });
    }
    let old = sealed(db, Some(from)).await?;
    let plan = ProofPlan::of(consistency_ranges(old.size, new.size));
    let tiles = read_tiles(db, &plan.tiles).await?;
    let hashes = plan.hashes(&tiles).map_err(TreeError::from)?;
    Ok((
        ConsistencyProof {
            from: old.size,
            to: new.size,
            hashes: hashes.iter().map(hex::encode).collect(),
        },
        old,
        new,
    ))
}

/// Leaves are flushed to the store every this many.
const FLUSH_EVERY: u64 = 32_768;

/// Keeps the stored tree up to date with the log. One runs at a time (the sealer's lock);
/// a second one at once is caught by the size it expects and gives way ([`TreeError::Moved`]).
pub struct Keeper {
    builder: TreeBuilder,
    origin: String,
    key: PublicSealKey,
    seal_subject: String,
    seal_stream: chronicle_events::StreamId,
}

/// A checkpoint seal met while growing the tree, kept once its root and signatures check.
struct MetSeal {
    position: u64,
    seal: SealRecorded,
    at: chrono::DateTime<chrono::Utc>,
}

/// The checkpoint seal an event of the seal stream is, if it is one.
fn checkpoint_seal(event: &RecordedEvent) -> Option<MetSeal> {
    match event.decode() {
        Ok(Event::Seal(SealEvent::SealRecorded(seal))) if seal.tree_size.is_some() => {
            Some(MetSeal {
                position: event.position,
                at: event.envelope.occurred_at,
                seal,
            })
        }
        _ => None,
    }
}

/// What one position adds to the tree.
struct Leaf {
    position: u64,
    hash: Hash,
    unauthenticated: bool,
    seal: Option<MetSeal>,
}

/// What has been taken since the tree was last flushed, at size `flushed`.
struct Growth {
    flushed: u64,
    unauthenticated: Vec<u64>,
    seals: Vec<MetSeal>,
}

impl Growth {
    fn since(flushed: u64) -> Growth {
        Growth {
            flushed,
            unauthenticated: Vec::new(),
            seals: Vec::new(),
        }
    }
}

impl Keeper {
    /// The stored tree, if it is this log's; otherwise (another log, or a log restored
    /// shorter) the store is emptied and the tree is rebuilt from position 1.
    pub async fn load(
        log: &JetStreamLog,
        db: &mut Client,
        key: PublicSealKey,
    ) -> Result<Keeper, TreeError> {
        let (size, _) = stored_size(&*db).await?;
        let ids: BTreeSet<TileId> = frontier_tiles(size).into_iter().collect();
        let tiles = read_tiles(&*db, &ids).await?;
        let mut builder = TreeBuilder::resume(size, &tiles)?;
        if size > 0 && !Self::agrees(log, db, size).await? {
            tracing::warn!(
                size,
                "the stored Merkle tree is not this log's: rebuilding it from the log"
            );
            let tx = db.transaction().await?;
            tx.batch_execute(
                "TRUNCATE audit.tree_tiles, audit.tree, audit.unauthenticated, audit.checkpoints",
            )
            .await?;
            tx.commit().await?;
            builder = TreeBuilder::new();
        }
        Ok(Keeper {
            builder,
            origin: origin(log),
            key,
            seal_subject: crate::sealer::seal_stream().subject(&log.config().subject_prefix),
            seal_stream: crate::sealer::seal_stream(),
        })
    }

    /// Whether the stored tree's last leaf is the log's message at `size`.
    async fn agrees(log: &JetStreamLog, db: &Client, size: u64) -> Result<bool, TreeError> {
        let index = size - 1;
        let plan = ProofPlan::of(vec![(index, index + 1)]);
        let tiles = read_tiles(db, &plan.tiles).await?;
        let stored = plan.hashes(&tiles)?[0];
        let (raws, _) = log
            .read_raw_batch(size, &log.subject_filter(None), 1)
            .await?;
        let entry = match raws.into_iter().next() {
            Some(r) if r.position == size => leaf_of_payload(&r.payload),
            _ => MISSING,
        };
        Ok(chronicle_events::merkle::leaf_hash(&entry) == stored)
    }

    pub fn size(&self) -> u64 {
        self.builder.size()
    }

    pub fn root(&self) -> Hash {
        self.builder.root()
    }

    /// Grows the tree to the log's end as it is now, reading on its own; answers the new
    /// size. On an error the keeper is stale: load it again.
    pub async fn extend(&mut self, log: &JetStreamLog, db: &mut Client) -> Result<u64, TreeError> {
        let end = log.last_position().await?;
        self.extend_to(log, end, db).await
    }

    /// [`Keeper::extend`] to `end`, the log's end as the caller found it.
    pub async fn extend_to(
        &mut self,
        log: &JetStreamLog,
        end: u64,
        db: &mut Client,
    ) -> Result<u64, TreeError> {
        let next = self.builder.size() + 1;
        if end < next {
            return Ok(self.builder.size());
        }
        let mut messages = log.read_messages(next, end, Vec::new()).await?;
        let mut growth = Growth::since(self.builder.size());
        while let Some(item) = messages.next().await {
            let (m, position) = item?;
            let raw = RawEvent::of_message(&m, position);
            let authentic = log.authentic(&raw);
            let seal = if authentic && raw.subject == self.seal_subject {
                log.classify(&raw).ok().and_then(|e| checkpoint_seal(&e))
            } else {
                None
            };
            let leaf = Leaf {
                position,
                hash: leaf_of_payload(&raw.payload),
                unauthenticated: !authentic,
                seal,
            };
            self.take(leaf, &mut growth, db).await?;
        }
        // What the reader did not meet up to `end` the log no longer holds.
        self.fill_to(end);
        self.finish(growth, db).await?;
        Ok(self.builder.size())
    }

    /// Grows the tree up to position `to` from `feed`: the log from at most this tree's
    /// size + 1 on, as the projector process's shared reader gives it (one delivery of each
    /// message for the whole process, not one more for the tree). Waits at most `wait` for
    /// each message; answers `false` when one did not come in time (the log's last
    /// messages may have been deleted): then [`Keeper::extend`] reads on its own.
    pub async fn extend_from(
        &mut self,
        feed: &mut LogStream,
        to: u64,
        wait: std::time::Duration,
        db: &mut Client,
    ) -> Result<bool, TreeError> {
        let mut growth = Growth::since(self.builder.size());
        let mut complete = true;
        while self.builder.size() < to {
            let stored = match tokio::time::timeout(wait, feed.next()).await {
                Err(_) => {
                    complete = false;
                    break;
                }
                Ok(None) => return Err(LogError::Unavailable("the log feed ended".into()).into()),
                Ok(Some(item)) => item?,
            };
            if stored.position() <= self.builder.size() {
                continue;
            }
            let leaf = Leaf {
                position: stored.position(),
                hash: stored.leaf(),
                unauthenticated: matches!(
                    &stored,
                    Stored::Foreign(f) if f.reason == ForeignReason::Unauthenticated
                ),
                seal: match &stored {
                    Stored::Event(e) if e.envelope.stream == self.seal_stream => checkpoint_seal(e),
                    _ => None,
                },
            };
            self.take(leaf, &mut growth, db).await?;
        }
        self.finish(growth, db).await?;
        Ok(complete)
    }

    /// Adds one position's leaf (after a missing leaf for each position before it that the
    /// log no longer holds), flushing every [`FLUSH_EVERY`] leaves.
    async fn take(
        &mut self,
        leaf: Leaf,
        growth: &mut Growth,
        db: &mut Client,
    ) -> Result<(), TreeError> {
        self.fill_to(leaf.position - 1);
        self.builder.push(&leaf.hash);
        if leaf.unauthenticated {
            metrics::counter!("chronicle_foreign_messages_total", "reader" => "tree").increment(1);
            growth.unauthenticated.push(leaf.position);
        }
        growth.seals.extend(leaf.seal);
        if self.builder.size() - growth.flushed >= FLUSH_EVERY {
            self.flush(db, growth).await?;
        }
        Ok(())
    }

    /// Missing leaves up to `position`.
    fn fill_to(&mut self, position: u64) {
        while self.builder.size() < position {
            self.builder.push(&MISSING);
        }
    }

    async fn finish(&mut self, mut growth: Growth, db: &mut Client) -> Result<(), TreeError> {
        if self.builder.size() > growth.flushed {
            self.flush(db, &mut growth).await?;
        }
        Ok(())
    }

    /// Writes the tiles changed since size `growth.flushed`, the new size and root, the
    /// positions found unauthenticated, and the checkpoints of the seals met — in one
    /// transaction.
    async fn flush(&mut self, db: &mut Client, growth: &mut Growth) -> Result<(), TreeError> {
        let from = growth.flushed;
        let size = self.builder.size();
        let root = self.builder.root();
        let tx = db.transaction().await?;
        // The size row first: it serializes writers, and one that expected another size
        // gives way.
        let moved = if from == 0 {
            tx.execute(
                "INSERT INTO audit.tree (id, size, root) VALUES (true, $1, $2) \
                 ON CONFLICT (id) DO UPDATE SET size = $1, root = $2, updated_at = now() \
                 WHERE audit.tree.size = 0",
                &[&(size as i64), &root.as_slice()],
            )
            .await?
        } else {
            tx.execute(
                "UPDATE audit.tree SET size = $1, root = $2, updated_at = now() WHERE size = $3",
                &[&(size as i64), &root.as_slice(), &(from as i64)],
            )
            .await?
        };
        if moved != 1 {
            return Err(TreeError::Moved);
        }
        let (mut levels, mut indexes, mut contents) = (Vec::new(), Vec::new(), Vec::new());
        for (id, bytes) in self.builder.take_changed() {
            levels.push(id.level as i16);
            indexes.push(id.index as i64);
            contents.push(bytes);
        }
        tx.execute(
            "INSERT INTO audit.tree_tiles (level, idx, hashes) \
             SELECT * FROM unnest($1::int2[], $2::int8[], $3::bytea[]) \
             ON CONFLICT (level, idx) DO UPDATE SET hashes = EXCLUDED.hashes",
            &[&levels, &indexes, &contents],
        )
        .await?;
        let positions: Vec<i64> = growth.unauthenticated.drain(..).map(|p| p as i64).collect();
        tx.execute(
            "INSERT INTO audit.unauthenticated (position) SELECT unnest($1::int8[]) \
             ON CONFLICT DO NOTHING",
            &[&positions],
        )
        .await?;
        for met in growth.seals.drain(..) {
            self.record_checkpoint(&tx, met).await?;
        }
        tx.commit().await?;
        growth.flushed = size;
        Ok(())
    }

    /// Keeps a seal's checkpoint once its root is the tree's at its size and its signed
    /// note opens with the seal key; otherwise says so (`verify` reports it as a bad seal).
    async fn record_checkpoint(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        met: MetSeal,
    ) -> Result<(), TreeError> {
        let size = met.seal.tree_size.unwrap_or_default();
        let root = if size == 0 {
            None
        } else {
            let plan = ProofPlan::of(vec![(0, size)]);
            let tiles = read_tiles(tx, &plan.tiles).await?;
            Some(plan.hashes(&tiles)?[0])
        };
        // `verifies` checks the seal's signature and opens its note (whose size is the
        // seal's `to_position`) with the seal key; the root must be the tree's.
        let note = checkpoint_note(&met.seal);
        let good = root
            .is_some_and(|r| hex::decode(&met.seal.root).ok().as_deref() == Some(&r[..]))
            && met.seal.origin.as_deref() == Some(self.origin.as_str())
            && self.key.verifies(&met.seal);
        if !good {
            tracing::error!(
                position = met.position,
                size,
                "a seal's checkpoint does not match the tree or the seal key; not serving it"
            );
            metrics::counter!("chronicle_bad_checkpoints_total").increment(1);
            return Ok(());
        }
        tx.execute(
            "INSERT INTO audit.checkpoints (size, root, note, seal_position, sealed_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (size) DO NOTHING",
            &[
                &(size as i64),
                &root.unwrap_or(MISSING).as_slice(),
                &note.unwrap_or_default(),
                &(met.position as i64),
                &met.at,
            ],
        )
        .await?;
        Ok(())
    }
}

/// The positions in `from..=to` found unauthenticated while the tree grew.
pub async fn unauthenticated_in<C: GenericClient>(
    db: &C,
    from: u64,
    to: u64,
) -> Result<Vec<u64>, tokio_postgres::Error> {
    Ok(db
        .query(
            "SELECT position FROM audit.unauthenticated WHERE position BETWEEN $1 AND $2 \
             ORDER BY position",
            &[&(from as i64), &(to as i64)],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, i64>(0) as u64)
        .collect())
}
