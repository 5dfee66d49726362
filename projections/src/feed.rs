//! One log reader per projector process, fanned out to all its projections.
//!
//! Each projection keeps its own checkpoint and transactions, and must see every position
//! (also other domains' events, which only move its checkpoint, so that it stays comparable
//! with any command's position for read-your-writes). Following the log once per
//! projection had nats-server deliver every event five times over; a [`SharedFeed`] reads
//! the live log once and hands each event to every projection that is caught up.
//!
//! A projection behind the live end (started from an old checkpoint, rebuilt, or too slow
//! for the ring) reads on its own from its position — the way it always did — until it
//! reaches what the shared reader has passed, then takes the ring. No gap and no repeat at
//! the seam: it joins the ring *before* it reads on its own, the shared reader announces a
//! position only after handing that event to the ring, and whatever the ring gives at or
//! below the position already taken is dropped. A projection that falls more than the
//! ring's capacity behind (the ring dropped an event it had not read) reads on its own
//! again from where it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use chronicle_events::{EventLog, LogError, LogStream, Stored};
use futures::StreamExt;
use tokio::sync::{Mutex, broadcast};

/// Events the shared reader keeps for projections that are a little behind.
pub const RING: usize = 4096;

/// A process's shared reader of the live log (started with the first projection that
/// follows it, stopped with the last handle).
#[derive(Clone)]
pub struct SharedFeed {
    inner: Arc<Inner>,
}

struct Inner {
    log: Arc<dyn EventLog>,
    ring: broadcast::Sender<Stored>,
    /// The last position the reader has put in the ring (or, before it read anything, the
    /// log's end when it started).
    read_to: Arc<AtomicU64>,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Followers reading on their own right now.
    own_readers: Arc<AtomicUsize>,
    /// Own readers started so far.
    own_reads: AtomicU64,
}

/// A follower's own reader, counted while it lives.
struct OwnReader {
    stream: LogStream,
    count: Arc<AtomicUsize>,
}

impl Drop for OwnReader {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.get_mut().take() {
            reader.abort();
        }
    }
}

impl SharedFeed {
    pub fn new(log: Arc<dyn EventLog>) -> SharedFeed {
        SharedFeed::with_ring(log, RING)
    }

    pub fn with_ring(log: Arc<dyn EventLog>, ring: usize) -> SharedFeed {
        let (ring, _) = broadcast::channel(ring.max(1));
        SharedFeed {
            inner: Arc::new(Inner {
                log,
                ring,
                read_to: Arc::new(AtomicU64::new(0)),
                reader: Mutex::new(None),
                own_readers: Arc::new(AtomicUsize::new(0)),
                own_reads: AtomicU64::new(0),
            }),
        }
    }

    /// Starts the shared reader at the log's end, once.
    async fn start(&self) -> Result<(), LogError> {
        let mut reader = self.inner.reader.lock().await;
        if reader.is_some() {
            return Ok(());
        }
        let end = self.inner.log.last_position().await?;
        self.inner.read_to.store(end, Ordering::Release);
        let (log, ring, read_to) = (
            self.inner.log.clone(),
            self.inner.ring.clone(),
            self.inner.read_to.clone(),
        );
        *reader = Some(tokio::spawn(async move {
            loop {
                let from = read_to.load(Ordering::Acquire) + 1;
                match log.follow(from, &[]).await {
                    Ok(mut live) => {
                        while let Some(item) = live.next().await {
                            match item {
                                Ok(stored) => {
                                    let at = stored.position();
                                    // Into the ring first, then announced (see the module).
                                    let _ = ring.send(stored);
                                    read_to.store(at, Ordering::Release);
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "the shared log reader was interrupted");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the shared log reader cannot start"),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
        Ok(())
    }

    /// How many followers are reading on their own (behind the shared reader) now; the
    /// others share one reader.
    pub fn own_readers(&self) -> usize {
        self.inner.own_readers.load(Ordering::Relaxed)
    }

    /// How many times a follower has had to read on its own (it started or fell behind
    /// the shared reader).
    pub fn own_reads(&self) -> u64 {
        self.inner.own_reads.load(Ordering::Relaxed)
    }

    /// The log from `from_position` on, live — what `EventLog::follow(from, &[])` gives —
    /// through the shared reader once caught up.
    pub async fn follow(&self, from_position: u64) -> Result<LogStream, LogError> {
        self.start().await?;
        let next = from_position.max(1);
        let state = Follower {
            inner: self.inner.clone(),
            // Joined before anything is read on its own (see the module).
            ring: self.inner.ring.subscribe(),
            next,
            own: None,
            behind: next <= self.inner.read_to.load(Ordering::Acquire),
            lagged: false,
        };
        Ok(futures::stream::unfold(state, |mut f| async move {
            let item = f.next().await;
            Some((item, f))
        })
        .boxed())
    }
}

/// One projection's place in the log, and where it reads from.
struct Follower {
    inner: Arc<Inner>,
    ring: broadcast::Receiver<Stored>,
    /// The next position it needs.
    next: u64,
    /// Its own reader while it is behind the shared one.
    own: Option<OwnReader>,
    /// Whether it must read on its own: it started behind what the shared reader had
    /// passed, or fell more than the ring behind. (Being a few events behind in the ring
    /// is normal and is not this.)
    behind: bool,
    /// The ring said events were dropped before this follower read them: the next one it
    /// gives shows whether any it needs were among them.
    lagged: bool,
}

impl Follower {
    async fn next(&mut self) -> Result<Stored, LogError> {
        loop {
            if self.behind && self.own.is_none() {
                metrics::counter!("chronicle_projection_private_reads_total").increment(1);
                self.inner.own_reads.fetch_add(1, Ordering::Relaxed);
                let stream = self.inner.log.follow(self.next, &[]).await?;
                self.inner.own_readers.fetch_add(1, Ordering::Relaxed);
                self.own = Some(OwnReader {
                    stream,
                    count: self.inner.own_readers.clone(),
                });
            }
            if let Some(own) = self.own.as_mut() {
                let item = own
                    .stream
                    .next()
                    .await
                    .ok_or_else(|| LogError::Unavailable("the log feed ended".into()))??;
                if item.position() < self.next {
                    continue;
                }
                self.next = item.position() + 1;
                if item.position() >= self.inner.read_to.load(Ordering::Acquire) {
                    // Caught up with the shared reader: the ring has everything after.
                    self.own = None;
                    self.behind = false;
                }
                return Ok(item);
            }
            match self.ring.recv().await {
                Ok(item) if item.position() < self.next => continue,
                Ok(item) if self.lagged && item.position() > self.next => {
                    // Dropped events it needed: more than the ring behind. On its own
                    // again from `next` (this one is read again there).
                    self.lagged = false;
                    self.behind = true;
                }
                Ok(item) => {
                    self.lagged = false;
                    self.next = item.position() + 1;
                    return Ok(item);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Events were dropped from its ring: perhaps only ones it already
                    // read on its own before it joined.
                    self.lagged = true;
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(LogError::Unavailable(
                        "the shared log reader stopped".into(),
                    ));
                }
            }
        }
    }
}
