//! Rebuilding a projection from the log, beside the live tables.
//!
//! 1. Fresh tables are created in a side schema (`LIKE` the live ones, with their indexes
//!    and constraints) and the log is applied to them from position 1, while the live
//!    projection keeps running and queries keep answering from the live tables.
//! 2. The projection is marked `rebuilding`; its live worker stands by at its next batch,
//!    and the rebuild takes the projection's lock.
//! 3. The side tables catch up to exactly the live checkpoint, and the two are compared
//!    table by table (row count and a digest of every row).
//! 4. In one transaction the live tables are swapped out and the rebuilt ones in, and the
//!    projection is `running` again from the same checkpoint. Queries never see a
//!    half-built model: they read the old tables until the swap commits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chronicle_events::{EventLog, JetStreamLog, RecordedEvent};
use std::collections::HashMap;

use chronicle_projections::models::Projection;
use chronicle_projections::runtime;
use futures::StreamExt;
use serde::Serialize;
use tokio_postgres::{Client, Statement};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("read store: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Log(#[from] chronicle_events::LogError),
    #[error("{0}")]
    Other(String),
}

/// One table's comparison of rebuilt and live contents.
#[derive(Debug, Clone, Serialize)]
pub struct TableComparison {
    pub table: String,
    pub live_rows: i64,
    pub rebuilt_rows: i64,
    pub identical: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub projection: String,
    pub position: u64,
    pub events_applied: u64,
    pub tables: Vec<TableComparison>,
    /// Every table's rebuilt contents equal the live ones at the same position.
    pub identical: bool,
    pub seconds: f64,
}

/// Applies `events` to the tables `client`'s search path names, without a checkpoint.
async fn apply(
    client: &Client,
    projection: &dyn Projection,
    events: &[RecordedEvent],
    cache: &mut HashMap<&'static str, Statement>,
) -> Result<(), RebuildError> {
    let stmts = runtime::statements_for(projection, events)
        .map_err(|position| RebuildError::Other(format!("position {position} does not decode")))?;
    if stmts.is_empty() {
        return Ok(());
    }
    runtime::prepare_all(client, &stmts, cache).await?;
    client.batch_execute("BEGIN").await?;
    if let Err(e) = runtime::execute_pipelined(client, &stmts, cache).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(e.into());
    }
    client.batch_execute("COMMIT").await?;
    Ok(())
}

/// Applies the log from `from` to `to` (inclusive) to the side tables.
async fn apply_range(
    log: &JetStreamLog,
    client: &Client,
    projection: &dyn Projection,
    from: u64,
    to: u64,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<u64, RebuildError> {
    if from > to {
        return Ok(0);
    }
    let mut events = log.read_from(from, None).await?;
    let mut cache = HashMap::new();
    let mut batch = Vec::with_capacity(1000);
    let mut applied = 0;
    while let Some(item) = events.next().await {
        let item = item?;
        if item.position() > to {
            break;
        }
        // Foreign messages are stepped past, as the live projector does.
        let e = match item {
            chronicle_events::Stored::Event(e) => e,
            chronicle_events::Stored::Foreign(f) => {
                f.record("rebuild");
                continue;
            }
        };
        batch.push(e);
        if batch.len() == 1000 {
            apply(client, projection, &batch, &mut cache).await?;
            applied += batch.len() as u64;
            progress(batch.last().map_or(0, |e| e.position), to);
            batch.clear();
        }
    }
    apply(client, projection, &batch, &mut cache).await?;
    applied += batch.len() as u64;
    progress(to, to);
    Ok(applied)
}

fn bare(table: &str) -> &str {
    table.rsplit('.').next().unwrap_or(table)
}

/// Rebuilds `projection` from the log; see the module's documentation.
pub async fn rebuild(
    log: &JetStreamLog,
    database_url: &str,
    projection: Arc<dyn Projection>,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<RebuildReport, RebuildError> {
    let started = Instant::now();
    let name = projection.name();
    let side = format!("rebuild_{name}");
    let retired = format!("retired_{name}");
    let admin = chronicle_projections::runtime::connect_in(database_url, "read").await?;
    admin
        .execute(
            "INSERT INTO read.projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&name],
        )
        .await?;
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {side} CASCADE; CREATE SCHEMA {side};"
        ))
        .await?;
    for table in projection.tables() {
        let t = bare(table);
        admin
            .batch_execute(&format!(
                "CREATE TABLE {side}.{t} (LIKE read.{t} INCLUDING ALL)"
            ))
            .await?;
    }
    let builder = chronicle_projections::runtime::connect_in(database_url, &side).await?;

    // 1. Up to the log's end as of now, while the live projection runs.
    let end = log.last_position().await?;
    let mut applied = apply_range(log, &builder, &*projection, 1, end, progress).await?;
    let mut built_to = end;

    // Give a running live projection the time to reach what was built, so that the two
    // can be compared at one position. With no worker running (nobody holds its lock:
    // after a restore, before any projector starts) there is nothing to wait for.
    let wait_until = Instant::now() + Duration::from_secs(30);
    loop {
        let free: bool = admin
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('chronicle.projection.' || $1::text)::bigint)",
                &[&name],
            )
            .await?
            .get(0);
        if free {
            admin
                .execute(
                    "SELECT pg_advisory_unlock(hashtext('chronicle.projection.' || $1::text)::bigint)",
                    &[&name],
                )
                .await?;
            break;
        }
        let row = admin
            .query_one(
                "SELECT position, state FROM read.projection_checkpoints WHERE name = $1",
                &[&name],
            )
            .await?;
        let (position, state): (i64, String) = (row.get(0), row.get(1));
        if position as u64 >= built_to || state != "running" || Instant::now() > wait_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 2. Take the projection over: mark it, then wait for its worker to let go.
    admin
        .execute(
            "UPDATE read.projection_checkpoints SET state = 'rebuilding', updated_at = now() WHERE name = $1",
            &[&name],
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let locked: bool = admin
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('chronicle.projection.' || $1::text)::bigint)",
                &[&name],
            )
            .await?
            .get(0);
        if locked {
            break;
        }
        if Instant::now() > deadline {
            admin
                .execute(
                    "UPDATE read.projection_checkpoints SET state = 'running' WHERE name = $1 AND state = 'rebuilding'",
                    &[&name],
                )
                .await?;
            return Err(RebuildError::Other(format!(
                "the live {name} worker did not stand by within 60 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = async {
        // 3. Catch up to exactly the live checkpoint, and compare.
        let checkpoint: i64 = admin
            .query_one(
                "SELECT position FROM read.projection_checkpoints WHERE name = $1",
                &[&name],
            )
            .await?
            .get(0);
        let checkpoint = checkpoint as u64;
        // (When the live tables are behind what was built — a failed or lagging live
        // projection — the comparison shows it, and the rebuilt tables replace them.)
        if checkpoint > built_to {
            applied += apply_range(log, &builder, &*projection, built_to + 1, checkpoint, progress).await?;
            built_to = checkpoint;
        }
        let mut tables = Vec::new();
        for table in projection.tables() {
            let t = bare(table);
            let digest = |schema: &str| {
                format!(
                    "SELECT count(*), coalesce(md5(string_agg(md5(x::text), '' ORDER BY md5(x::text))), '') FROM {schema}.{t} x"
                )
            };
            let live = admin.query_one(&digest("read"), &[]).await?;
            let rebuilt = admin.query_one(&digest(&side), &[]).await?;
            tables.push(TableComparison {
                table: format!("read.{t}"),
                live_rows: live.get(0),
                rebuilt_rows: rebuilt.get(0),
                identical: live.get::<_, String>(1) == rebuilt.get::<_, String>(1),
            });
        }

        // 4. Swap in one transaction.
        let mut swap = format!("BEGIN; DROP SCHEMA IF EXISTS {retired} CASCADE; CREATE SCHEMA {retired};");
        for table in projection.tables() {
            let t = bare(table);
            swap.push_str(&format!(
                "ALTER TABLE read.{t} SET SCHEMA {retired}; ALTER TABLE {side}.{t} SET SCHEMA read;"
            ));
        }
        swap.push_str(&format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA read TO chronicle_analyst;
             UPDATE read.projection_checkpoints SET position = {built_to}, state = 'running', error = NULL, error_position = NULL, updated_at = now() WHERE name = '{name}';
             COMMIT;
             DROP SCHEMA {retired} CASCADE; DROP SCHEMA {side} CASCADE;"
        ));
        admin.batch_execute(&swap).await?;
        let identical = tables.iter().all(|t| t.identical);
        Ok::<_, RebuildError>(RebuildReport {
            projection: name.to_owned(),
            position: built_to,
            events_applied: applied,
            tables,
            identical,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
    .await;
    if result.is_err() {
        let _ = admin.batch_execute("ROLLBACK").await;
        let _ = admin
            .execute(
                "UPDATE read.projection_checkpoints SET state = 'running' WHERE name = $1 AND state = 'rebuilding'",
                &[&name],
            )
            .await;
    }
    let _ = admin
        .query_one(
            "SELECT pg_advisory_unlock(hashtext('chronicle.projection.' || $1::text)::bigint)",
            &[&name],
        )
        .await;
    result
}
