//! The sealer: appends `SealRecorded` to `seal.log` every `every_events` events or
//! `every` of activity, covering every position since the previous seal with a signed
//! Merkle root, chained to the previous seal. One is active across all processes (a
//! Postgres advisory lock, as for projections); the others stand by.

use std::time::{Duration, Instant};

use chronicle_events::domain::{Event, SealEvent};
use chronicle_events::merkle::{Hash, leaf_of_payload, merkle_root};
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, LogError, PendingEvent,
    StreamHead, StreamId,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::seal::SealKey;

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

/// What a seal covers: the leaves of positions `from..=to`, in order, and the positions
/// among them whose message no event key authenticates.
pub struct Covered {
    pub leaves: Vec<Hash>,
    pub unauthenticated: Vec<u64>,
}

/// Leaves of positions `from..=to`, in order, with the unauthenticated positions.
pub async fn leaves(log: &JetStreamLog, from: u64, to: u64) -> Result<Covered, LogError> {
    let filter = log.subject_filter(None);
    let mut out = Covered {
        leaves: Vec::with_capacity((to + 1 - from) as usize),
        unauthenticated: Vec::new(),
    };
    let mut seq = from;
    while seq <= to {
        let (raws, more) = log.read_raw_batch(seq, &filter, 1000).await?;
        for r in raws.iter().filter(|r| r.position <= to) {
            out.leaves.push(leaf_of_payload(&r.payload));
            if !log.authentic(r) {
                tracing::warn!(
                    position = r.position,
                    subject = %r.subject,
                    "sealing a message no event key authenticates; the seal records it"
                );
                metrics::counter!("chronicle_foreign_messages_total", "reader" => "sealer")
                    .increment(1);
                out.unauthenticated.push(r.position);
            }
        }
        match raws.last() {
            Some(last) if more && last.position < to => seq = last.position + 1,
            _ => break,
        }
    }
    Ok(out)
}

/// Appends one seal over everything unsealed up to the log's end, if anything is.
/// Answers the position sealed to.
pub async fn seal_now(log: &JetStreamLog, key: &SealKey) -> Result<Option<u64>, LogError> {
    let tip = seal_tip(log).await?;
    let end = log.last_position().await?;
    if end <= tip.sealed_to {
        return Ok(None);
    }
    let from = tip.sealed_to + 1;
    let covered = leaves(log, from, end).await?;
    let root = hex::encode(merkle_root(&covered.leaves));
    let seal = key.seal(
        from,
        end,
        root,
        tip.prev_seal.clone(),
        covered.unauthenticated,
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
    tracing::info!(from, to = end, "log sealed");
    Ok(Some(end))
}

/// Runs the sealer until `shutdown`.
pub async fn run(
    log: JetStreamLog,
    cfg: SealerConfig,
    key: SealKey,
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
        let mut last_seal = Instant::now();
        loop {
            if *shutdown.borrow() || client.is_closed() {
                break;
            }
            let due = async {
                let tip = seal_tip(&log).await?;
                let end = log.last_position().await?;
                let pending = end.saturating_sub(tip.sealed_to);
                Ok::<_, LogError>(
                    pending >= cfg.every_events
                        || (pending > 0 && last_seal.elapsed() >= cfg.every),
                )
            };
            match due.await {
                Ok(true) => match seal_now(&log, &key).await {
                    Ok(_) => last_seal = Instant::now(),
                    Err(LogError::VersionConflict { .. }) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot seal yet"),
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "sealer cannot read the log"),
            }
            pause(Duration::from_millis(500)).await;
        }
    }
}
