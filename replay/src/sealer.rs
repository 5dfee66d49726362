//! The sealer: keeps the whole log's Merkle tree up to date (`crate::tree`) and appends
//! `SealRecorded` to `seal.log` every `every_events` events or `every` of activity: a
//! signed checkpoint of the tree covering every position since the previous seal, chained
//! to it. One is active across all processes (a
//! Postgres advisory lock, as for projections); the others stand by.

use std::time::{Duration, Instant};

use chronicle_events::domain::{Event, SealEvent};
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, LogError, LogStream,
    PendingEvent, StreamHead, StreamId,
};
use chronicle_projections::feed::SharedFeed;
use tokio::sync::watch;
use uuid::Uuid;

use crate::seal::SealKey;
use crate::tree::{Keeper, TreeError, origin, unauthenticated_in};

/// The stream seals go to.
pub fn seal_stream() -> StreamId {
    StreamId::new(Domain::Seal, "log").expect("a valid constant id")
}

#[derive(Debug, Clone)]
pub struct SealerConfig {
    pub database_url: String,
    /// Seal once this many events are unsealed...
    pub every_events: u64,
    /// ...or once any are and this long has passed since the last seal.
    pub every: Duration,
}

/// Where the seal chain stands.
pub struct SealTip {
    pub head: StreamHead,
    /// The last position sealed (0 when none).
    pub sealed_to: u64,
    /// The last seal's hash, the next one's `prev_seal`.
    pub prev_seal: Option<String>,
}

pub async fn seal_tip(log: &JetStreamLog) -> Result<SealTip, LogError> {
    let (head, last) = log.last_event(&seal_stream()).await?;
    let Some(last) = last else {
        return Ok(SealTip {
            head,
            sealed_to: 0,
            prev_seal: None,
        });
    };
    let sealed_to = match last.decode() {
        Ok(Event::Seal(SealEvent::SealRecorded(s))) => s.to_position,
        _ => {
            return Err(LogError::Corrupt {
                position: last.position,
                message: "the last seal does not decode".into(),
            });
        }
    };
    Ok(SealTip {
        prev_seal: head.hash.clone(),
        head,
        sealed_to,
    })
}

/// Whether anything after the last seal is unsealed, the log's end being `end`: the last
/// seal itself, alone, is not worth another (an idle log would otherwise be sealed again
/// and again).
fn unsealed(tip: &SealTip, end: u64) -> bool {
    end > tip.sealed_to && !(end == tip.sealed_to + 1 && tip.head.position == end)
}

/// Grows the tree to the log's end and appends one checkpoint seal over everything
/// unsealed, if anything is. Answers the position sealed to.
pub async fn seal_now(
    log: &JetStreamLog,
    db: &mut tokio_postgres::Client,
    key: &SealKey,
) -> Result<Option<u64>, TreeError> {
    // A sealer running elsewhere grows the same tree and appends seals too: whoever loses
    // a race loads the tree again and retries.
    let mut attempt = 0;
    loop {
        let attempt_once = async {
            let mut keeper = Keeper::load(log, db, key.public()).await?;
            let tip = seal_tip(log).await?;
            keeper.extend(log, db).await?;
            seal_at(log, db, key, &mut keeper, tip).await
        };
        match attempt_once.await {
            Err(TreeError::Moved | TreeError::Log(LogError::VersionConflict { .. }))
                if attempt < 20 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            other => return other,
        }
    }
}

/// Appends a seal over everything unsealed up to the tree's size, `tip` being where the
/// seal chain stood before the tree was last grown.
async fn seal_at(
    log: &JetStreamLog,
    db: &mut tokio_postgres::Client,
    key: &SealKey,
    keeper: &mut Keeper,
    tip: SealTip,
) -> Result<Option<u64>, TreeError> {
    let size = keeper.size();
    if !unsealed(&tip, size) {
        return Ok(None);
    }
    let from = tip.sealed_to + 1;
    let unauthenticated = unauthenticated_in(&*db, from, size).await?;
    if !unauthenticated.is_empty() {
        tracing::warn!(
            positions = ?unauthenticated,
            "sealing messages no event key authenticates; the seal records them"
        );
    }
    let seal = key.checkpoint_seal(
        from,
        size,
        keeper.root(),
        tip.prev_seal.clone(),
        unauthenticated,
        &origin(log),
    );
    let request = AppendRequest::single(
        Uuid::now_v7(),
        seal_stream(),
        Expected::Head(tip.head),
        vec![PendingEvent::new(
            seal,
            Actor::system("sealer"),
            Uuid::now_v7(),
        )],
    );
    log.append(request).await?;
    tracing::info!(from, to = size, "log sealed");
    // Past the seal at once, so that its checkpoint is served as soon as it is written.
    keeper.extend(log, db).await?;
    Ok(Some(size))
}

/// How far behind the log's end the tree may be and still grow from the shared reader.
pub const FEED_FROM: u64 = chronicle_projections::feed::RING as u64;

/// How long the tree waits for the shared reader to deliver a message it knows is there
/// before reading on its own.
const FEED_WAIT: Duration = Duration::from_secs(2);

/// Grows the tree to the log's end: from the shared reader when there is one and the tree
/// is close to the end, otherwise (or when the reader does not bring the end in time)
/// reading on its own.
async fn grow(
    log: &JetStreamLog,
    keeper: &mut Keeper,
    feed: Option<&SharedFeed>,
    items: &mut Option<LogStream>,
    db: &mut tokio_postgres::Client,
) -> Result<u64, TreeError> {
    let end = log.last_position().await?;
    if let Some(feed) = feed
        && end.saturating_sub(keeper.size()) <= FEED_FROM
    {
        if items.is_none() {
            *items = Some(feed.follow(keeper.size() + 1).await?);
        }
        let stream = items.as_mut().expect("opened above");
        if keeper.extend_from(stream, end, FEED_WAIT, db).await? {
            return Ok(keeper.size());
        }
        tracing::debug!(
            end,
            size = keeper.size(),
            "the shared reader did not bring the log's end"
        );
    }
    keeper.extend_to(log, end, db).await
}

/// Runs the sealer until `shutdown`.
///
/// With `feed` (the projector process's shared reader) the tree grows from the messages
/// that reader already has rather than from a read of its own each tick; a tree further
/// behind than [`FEED_FROM`] positions (a first build, a rebuild) reads on its own first,
/// which is faster for a long catch-up.
pub async fn run(
    log: JetStreamLog,
    cfg: SealerConfig,
    key: SealKey,
    feed: Option<SharedFeed>,
    shutdown: watch::Receiver<bool>,
) {
    let pause = |d| {
        let mut s = shutdown.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(d) => {},
                _ = s.changed() => {},
            }
        }
    };
    while !*shutdown.borrow() {
        let Ok((client, conn)) =
            tokio_postgres::connect(&cfg.database_url, tokio_postgres::NoTls).await
        else {
            pause(Duration::from_secs(1)).await;
            continue;
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let locked = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('chronicle.sealer')::bigint)",
                &[],
            )
            .await
            .map(|r| r.get::<_, bool>(0));
        if !matches!(locked, Ok(true)) {
            pause(Duration::from_millis(500)).await;
            continue;
        }
        let mut client = client;
        let mut keeper = None;
        // The shared reader's messages from the tree's size on, once it is close.
        let mut items: Option<LogStream> = None;
        let mut last_seal = Instant::now();
        loop {
            if *shutdown.borrow() || client.is_closed() {
                break;
            }
            if keeper.is_none() {
                items = None;
                match Keeper::load(&log, &mut client, key.public()).await {
                    Ok(k) => keeper = Some(k),
                    Err(e) => tracing::warn!(error = %e, "sealer cannot load the Merkle tree"),
                }
            }
            if let Some(k) = keeper.as_mut() {
                // The tree follows the log all the time; a seal is due every
                // `every_events` events, or after `every` with any.
                let step = async {
                    let tip = seal_tip(&log).await?;
                    let size = grow(&log, k, feed.as_ref(), &mut items, &mut client).await?;
                    let pending = if unsealed(&tip, size) {
                        size - tip.sealed_to
                    } else {
                        0
                    };
                    if pending >= cfg.every_events
                        || (pending > 0 && last_seal.elapsed() >= cfg.every)
                    {
                        return seal_at(&log, &mut client, &key, k, tip).await;
                    }
                    Ok(None)
                };
                match step.await {
                    Ok(Some(_)) => last_seal = Instant::now(),
                    Ok(None) => {}
                    Err(TreeError::Log(LogError::VersionConflict { .. })) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot seal yet");
                        keeper = None;
                        items = None;
                    }
                }
            }
            pause(Duration::from_millis(500)).await;
        }
    }
}
