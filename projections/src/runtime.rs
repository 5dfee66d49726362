//! The projector runtime: runs one projection from its checkpoint, applying events in
//! batches, each batch's rows and the new checkpoint in one Postgres transaction — so
//! every event is applied exactly once in effect, whatever crashes where.
//!
//! - One active worker per projection across all processes: a worker holds a session
//!   advisory lock on the connection it writes with; the others poll for it and take over
//!   within a second of the active one's connection dropping. Because the lock and the
//!   writes share one connection, a worker that lost its lock cannot write.
//! - After each batch it `NOTIFY`s `chronicle_projections` with `<name>:<position>`,
//!   which read-your-writes queries wait on.
//! - An event that cannot be applied stops that projection only: its position and the
//!   error are recorded in `read.projection_checkpoints` (state `failed`).
//! - Postgres or NATS going away: retry with backoff and resume from the checkpoint.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chronicle_events::{EventLog, RecordedEvent, Stored};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use crate::feed::SharedFeed;
use crate::models::{Projection, Stmt};

/// How often an idle active worker checks that it should still run.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// The channel checkpoints are announced on.
pub const CHANNEL: &str = "chronicle_projections";

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub database_url: String,
    /// At most this many events per transaction.
    pub batch_size: usize,
    /// How long a batch waits for more events once it has one.
    pub batch_wait: Duration,
    /// How often a standby worker tries to become the active one.
    pub standby_poll: Duration,
}

impl RunnerConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        RunnerConfig {
            database_url: database_url.into(),
            batch_size: 4000,
            batch_wait: Duration::from_millis(5),
            standby_poll: Duration::from_millis(500),
        }
    }
}

enum BatchError {
    /// The connection failed: reconnect and resume from the checkpoint.
    Connection(tokio_postgres::Error),
    /// Some event of the batch was refused by the read model.
    Refused,
    /// The projection is no longer `running` (a rebuild took it over): stand by.
    Paused,
}

/// Why one event cannot be applied.
struct Poison {
    position: u64,
    error: String,
}

/// Runs `projection` until `shutdown` turns true; a batch in progress finishes first.
pub async fn run(
    log: Arc<dyn EventLog>,
    cfg: RunnerConfig,
    projection: Arc<dyn Projection>,
    shutdown: watch::Receiver<bool>,
) {
    run_on(SharedFeed::new(log), cfg, projection, shutdown).await
}

/// [`run`], reading the log through `feed` (shared with the process's other projections).
pub async fn run_on(
    feed: SharedFeed,
    cfg: RunnerConfig,
    projection: Arc<dyn Projection>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = projection.name();
    let mut backoff = Duration::from_millis(200);
    while !*shutdown.borrow() {
        let client = match connect(&cfg.database_url).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(projection = name, error = %e, "read store unreachable; retrying");
                sleep_or_shutdown(backoff, &mut shutdown).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        match active(&feed, &cfg, &*projection, &client, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(projection = name, error = %e, "projector interrupted; resuming");
                sleep_or_shutdown(Duration::from_millis(200), &mut shutdown).await;
            }
        }
    }
}

/// A connection whose unqualified table names are `schema`'s.
pub async fn connect_in(url: &str, schema: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
        .batch_execute(&format!("SET search_path TO {schema}, public"))
        .await?;
    Ok(client)
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    connect_in(url, "read").await
}

async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {},
        _ = shutdown.changed() => {},
    }
}

/// Waits to hold the projection's lock on `client`, then applies the log until shutdown
/// (`Ok`) or a failure that needs a new connection or a new feed (`Err`).
async fn active(
    feed: &SharedFeed,
    cfg: &RunnerConfig,
    projection: &dyn Projection,
    client: &Client,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let name = projection.name();
    let err = |e: tokio_postgres::Error| e.to_string();
    client
        .execute(
            "INSERT INTO read.projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&name],
        )
        .await
        .map_err(err)?;
    // Stand by until the projection may run (not failed, not being rebuilt) and this
    // worker holds its lock.
    let checkpoint = loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        let (_, before) = checkpoint_of(client, name).await.map_err(err)?;
        if before != "running" {
            // Failed (an operator must act) or being rebuilt: wait without the lock, so
            // that a rebuild can take it.
            sleep_or_shutdown(Duration::from_secs(1), shutdown).await;
            continue;
        }
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('chronicle.projection.' || $1::text)::bigint)",
                &[&name],
            )
            .await
            .map_err(err)?
            .get(0);
        if !locked {
            sleep_or_shutdown(cfg.standby_poll, shutdown).await;
            continue;
        }
        let (position, after) = checkpoint_of(client, name).await.map_err(err)?;
        if after != "running" {
            return Err(format!("{name} is {after}; standing by"));
        }
        break position;
    };
    tracing::info!(projection = name, checkpoint, "active");
    /// Stops the reading task with the worker, however it leaves.
    struct Prefetch(tokio::task::JoinHandle<()>);
    impl Drop for Prefetch {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut statements: HashMap<&'static str, Statement> = HashMap::new();
    {
        let feed = feed
            .follow(checkpoint + 1)
            .await
            .map_err(|e| e.to_string())?;
        // Read and decode the next events on another task while this one writes a batch.
        let (ahead, behind) = tokio::sync::mpsc::channel(cfg.batch_size * 2);
        let _reader = Prefetch(tokio::spawn(async move {
            let mut feed = feed;
            while let Some(next) = feed.next().await {
                if ahead.send(next).await.is_err() {
                    return;
                }
            }
        }));
        let mut feed = Box::pin(futures::stream::unfold(behind, |mut rx| async move {
            rx.recv().await.map(|next| (next, rx))
        }));
        loop {
            let first = tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                next = feed.next() => next,
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    // Idle: make sure nobody asked this projection to stand by (a rebuild).
                    let (_, state) = checkpoint_of(client, name).await.map_err(err)?;
                    if state != "running" {
                        return Err(format!("{name} is {state}; standing by"));
                    }
                    continue;
                }
            };
            let Some(first) = first else {
                return Err("the log feed ended".into());
            };
            // A message that is not one of Chronicle's events (junk, or a forgery no event
            // key authenticates) is stepped past and recorded: it moves the checkpoint
            // and nothing else. Nobody stops a projection by publishing one.
            let mut batch = Vec::new();
            let mut through = 0;
            let mut take = |item: Stored, batch: &mut Vec<RecordedEvent>| {
                through = item.position();
                match item {
                    Stored::Event(e) => batch.push(e),
                    Stored::Foreign(f) => f.record("projection"),
                }
            };
            take(first.map_err(|e| e.to_string())?, &mut batch);
            let deadline = tokio::time::Instant::now() + cfg.batch_wait;
            while batch.len() < cfg.batch_size {
                match tokio::time::timeout_at(deadline, feed.next()).await {
                    Ok(Some(item)) => take(item.map_err(|e| e.to_string())?, &mut batch),
                    Ok(None) | Err(_) => break,
                }
            }
            match apply_batch(client, projection, &batch, through, &mut statements).await {
                Ok(()) => {}
                Err(BatchError::Connection(e)) => return Err(e.to_string()),
                Err(BatchError::Refused) => {
                    // Find the event at fault: apply one by one, each committed.
                    for one in batch.chunks(1) {
                        match apply_batch(client, projection, one, one[0].position, &mut statements)
                            .await
                        {
                            Ok(()) => {}
                            Err(BatchError::Connection(e)) => return Err(e.to_string()),
                            Err(BatchError::Refused) => {
                                let poison = Poison {
                                    position: one[0].position,
                                    error: describe_refusal(
                                        client,
                                        projection,
                                        &one[0],
                                        &mut statements,
                                    )
                                    .await,
                                };
                                record_failure(client, name, &poison).await.map_err(err)?;
                                tracing::error!(
                                    projection = name,
                                    position = poison.position,
                                    error = %poison.error,
                                    "projection stopped on an event it cannot apply"
                                );
                                return Err(format!("{name} failed at {}", poison.position));
                            }
                            Err(BatchError::Paused) => return Err(format!("{name} paused")),
                        }
                    }
                    return Err("resuming after isolating a refused batch".into());
                }
                Err(BatchError::Paused) => return Err(format!("{name} paused for a rebuild")),
            }
        }
    }
}

/// The statements that fold `events` into `projection`'s tables; events of other domains
/// are skipped. Fails with the position of an event that does not decode.
pub fn statements_for(
    projection: &dyn Projection,
    events: &[RecordedEvent],
) -> Result<Vec<Stmt>, u64> {
    let mut decoded = Vec::with_capacity(events.len());
    for e in events {
        if !projection.domains().contains(&e.envelope.stream.domain()) {
            continue;
        }
        decoded.push((e, e.decode().map_err(|_| e.position)?));
    }
    let mut stmts = Vec::new();
    projection.apply_batch(&decoded, &mut stmts);
    Ok(stmts)
}

/// Prepares, once per connection, every statement `stmts` uses.
pub async fn prepare_all(
    client: &Client,
    stmts: &[Stmt],
    cache: &mut HashMap<&'static str, Statement>,
) -> Result<(), tokio_postgres::Error> {
    for s in stmts {
        if !cache.contains_key(s.sql) {
            let prepared = client.prepare(s.sql).await?;
            cache.insert(s.sql, prepared);
        }
    }
    Ok(())
}

/// Sends `stmts` pipelined on `client`, executed in order, inside whatever transaction
/// is open. Every statement must have been prepared with [`prepare_all`].
pub async fn execute_pipelined(
    client: &Client,
    stmts: &[Stmt],
    cache: &HashMap<&'static str, Statement>,
) -> Result<(), tokio_postgres::Error> {
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = stmts
        .iter()
        .map(|s| {
            s.params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect()
        })
        .collect();
    let writes = stmts
        .iter()
        .zip(&params)
        .map(|(s, p)| client.execute(&cache[s.sql], p));
    futures::future::try_join_all(writes).await?;
    Ok(())
}

/// A projection's checkpoint and state.
async fn checkpoint_of(
    client: &Client,
    name: &str,
) -> Result<(u64, String), tokio_postgres::Error> {
    client
        .query_one(
            "SELECT position, state FROM read.projection_checkpoints WHERE name = $1",
            &[&name],
        )
        .await
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)))
}

/// Applies `batch` and moves the checkpoint to `last` (at or past its last event), in one
/// transaction, then announces the new checkpoint.
async fn apply_batch(
    client: &Client,
    projection: &dyn Projection,
    batch: &[RecordedEvent],
    last: u64,
    statements: &mut HashMap<&'static str, Statement>,
) -> Result<(), BatchError> {
    let stmts = statements_for(projection, batch).map_err(|_| BatchError::Refused)?;
    let classify = |e: tokio_postgres::Error| {
        if e.as_db_error().is_some() {
            BatchError::Refused
        } else {
            BatchError::Connection(e)
        }
    };
    prepare_all(client, &stmts, statements)
        .await
        .map_err(classify)?;
    client.batch_execute("BEGIN").await.map_err(classify)?;
    let result = async {
        execute_pipelined(client, &stmts, statements).await?;
        let moved = client
            .execute(
                "UPDATE read.projection_checkpoints SET position = $2, error = NULL, error_position = NULL, updated_at = now() WHERE name = $1 AND state = 'running'",
                &[&projection.name(), &(last as i64)],
            )
            .await?;
        if moved != 1 {
            return Ok(false);
        }
        client
            .execute(
                "SELECT pg_notify($1, $2)",
                &[&CHANNEL, &format!("{}:{last}", projection.name())],
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(true)
    }
    .await;
    match result {
        Ok(true) => {
            client.batch_execute("COMMIT").await.map_err(classify)?;
            metrics::counter!("chronicle_projection_events_applied_total", "projection" => projection.name())
                .increment(batch.len() as u64);
            Ok(())
        }
        Ok(false) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(BatchError::Paused)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(classify(e))
        }
    }
}

/// What the read model said about one refused event (or why it could not be decoded).
async fn describe_refusal(
    client: &Client,
    projection: &dyn Projection,
    e: &RecordedEvent,
    statements: &mut HashMap<&'static str, Statement>,
) -> String {
    let event = match e.decode() {
        Ok(ev) => ev,
        Err(d) => return format!("{} does not decode: {d}", e.envelope.event_type),
    };
    let mut stmts = Vec::new();
    projection.apply(e, &event, &mut stmts);
    let _ = client.batch_execute("BEGIN").await;
    let mut why = format!("{} was refused", e.envelope.event_type);
    for s in &stmts {
        let params: Vec<&(dyn ToSql + Sync)> = s
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let stmt = match statements.get(s.sql) {
            Some(st) => st.clone(),
            None => match client.prepare(s.sql).await {
                Ok(st) => st,
                Err(_) => break,
            },
        };
        if let Err(err) = client.execute(&stmt, &params).await {
            if let Some(db) = err.as_db_error() {
                why = format!("{} was refused: {}", e.envelope.event_type, db.message());
            }
            break;
        }
    }
    let _ = client.batch_execute("ROLLBACK").await;
    why
}

async fn record_failure(
    client: &Client,
    name: &str,
    poison: &Poison,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE read.projection_checkpoints SET state = 'failed', error = $2, error_position = $3, updated_at = now() WHERE name = $1",
            &[&name, &poison.error, &(poison.position as i64)],
        )
        .await?;
    client
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&CHANNEL, &format!("{name}:failed")],
        )
        .await?;
    Ok(())
}

/// Runs every projection of `projections` until `shutdown`; returns when all have ended.
/// They share `feed`, the process's one reader of the log.
pub async fn run_all(
    feed: SharedFeed,
    cfg: RunnerConfig,
    projections: Vec<Arc<dyn Projection>>,
    shutdown: watch::Receiver<bool>,
) {
    let tasks: Vec<_> = projections
        .into_iter()
        .map(|p| tokio::spawn(run_on(feed.clone(), cfg.clone(), p, shutdown.clone())))
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}
