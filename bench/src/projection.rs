//! Projection catch-up against a raw batched insert of the same rows, same Postgres, same
//! run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chronicle_events::domain::job::{JobCompleted, JobStarted, JobSubmitted};
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, PendingEvent, StreamId,
};
use chronicle_projections::models::Jobs;
use chronicle_projections::runtime::{self, RunnerConfig};
use futures::StreamExt;
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

use crate::Args;
use crate::report::{Report, Spread};

pub(crate) const EVENTS: usize = 200_000;

/// A fresh database with the read models migrated: its URL and a client on it.
async fn migrated_database(url: &str) -> Result<(String, Client)> {
    let db = crate::procs::fresh_database(url).await?;
    let (mut client, conn) = tokio_postgres::connect(&db, NoTls).await?;
    tokio::spawn(conn);
    chronicle_projections::migrate::run(&mut client).await?;
    Ok((db, client))
}

/// EVENTS events: jobs submitted, started and completed, one event per append (atomic
/// batches cost a server fsync each; this fills the log fast).
pub(crate) async fn fill(log: &JetStreamLog) -> Result<u64> {
    let actor = Actor::user("bench");
    let jobs = EVENTS / 3;
    let results: Vec<_> = futures::stream::iter(0..jobs)
        .map(|i| {
            let log = log.clone();
            let actor = actor.clone();
            async move {
                let job = StreamId::new(Domain::Job, format!("job-{i}"))?;
                let c = Uuid::new_v4();
                let events = [
                    PendingEvent::new(
                        JobSubmitted {
                            job_id: job.id().into(),
                            agent_id: format!("agent-{}", i % 50),
                            kind: "summarise".into(),
                            input: serde_json::json!({"doc": format!("{i}.pdf")}),
                        },
                        actor.clone(),
                        c,
                    ),
                    PendingEvent::new(JobStarted {}, actor.clone(), c),
                    PendingEvent::new(
                        JobCompleted {
                            result: serde_json::json!({"pages": i % 40}),
                        },
                        actor,
                        c,
                    ),
                ];
                let mut expected = Expected::NO_STREAM;
                for event in events {
                    let outcome = log
                        .append(AppendRequest::single(
                            Uuid::new_v4(),
                            job.clone(),
                            expected,
                            vec![event],
                        ))
                        .await?;
                    expected = Expected::Head(outcome.head_of(&job).context("appended")?);
                }
                Ok::<_, anyhow::Error>(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(log.last_position().await?)
}

/// Events/s of the jobs projection catching up from nothing.
async fn catch_up(log: &JetStreamLog, url: &str, end: u64) -> Result<f64> {
    let (db, client) = migrated_database(url).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(runtime::run(
        Arc::new(log.clone()),
        RunnerConfig::new(&db),
        Arc::new(Jobs),
        stopped,
    ));
    loop {
        let row = client
            .query_opt(
                "SELECT position FROM read.projection_checkpoints WHERE name = 'jobs'",
                &[],
            )
            .await?;
        if row.is_some_and(|r| r.get::<_, i64>(0) as u64 >= end) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    let _ = task.await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM read.job_history", &[])
        .await?
        .get(0);
    anyhow::ensure!(
        rows as usize == EVENTS / 3 * 3,
        "projection wrote {rows} history rows"
    );
    Ok(end as f64 / elapsed.as_secs_f64())
}

type Time = chrono::DateTime<chrono::Utc>;

/// `read.jobs` rows as columns, for `unnest`.
#[derive(Default)]
struct JobColumns {
    job_id: Vec<String>,
    agent_id: Vec<String>,
    kind: Vec<String>,
    status: Vec<String>,
    input: Vec<serde_json::Value>,
    result: Vec<serde_json::Value>,
    submitted_at: Vec<Time>,
    updated_at: Vec<Time>,
    version: Vec<i64>,
    seq: Vec<i64>,
    position: Vec<i64>,
}

/// `read.job_history` rows as columns.
#[derive(Default)]
struct HistoryColumns {
    job_id: Vec<String>,
    version: Vec<i64>,
    event_type: Vec<String>,
    status: Vec<String>,
    actor_kind: Vec<String>,
    actor_id: Vec<String>,
    detail: Vec<serde_json::Value>,
    occurred_at: Vec<Time>,
    position: Vec<i64>,
}

/// Events/s of inserting the same final rows (jobs and their history) raw, 1000 rows a
/// statement, in one transaction.
async fn raw_insert(log: &JetStreamLog, url: &str) -> Result<f64> {
    let (_db, mut client) = migrated_database(url).await?;
    // Read the events first: the raw side is given its rows, it does not fold them.
    let events: Vec<_> = log.read_from(1, None).await?.collect().await;
    let events: Vec<_> = events
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter_map(chronicle_events::Stored::event)
        .collect();
    let started = Instant::now();
    let tx = client.transaction().await?;
    let insert_jobs = tx
        .prepare(
            "INSERT INTO read.jobs (job_id, agent_id, kind, status, input, result, submitted_at, updated_at, version, seq, position)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::timestamptz[], $8::timestamptz[], $9::bigint[], $10::bigint[], $11::bigint[])",
        )
        .await?;
    let insert_history = tx
        .prepare(
            "INSERT INTO read.job_history (job_id, version, event_type, status, actor_kind, actor_id, detail, occurred_at, position)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::timestamptz[], $9::bigint[])",
        )
        .await?;
    for chunk in events.chunks(3000) {
        let mut jobs = JobColumns::default();
        let mut history = HistoryColumns::default();
        for e in chunk {
            let env = &e.envelope;
            let status = match env.event_type.as_str() {
                "JobSubmitted" => "PENDING",
                "JobStarted" => "RUNNING",
                _ => "COMPLETED",
            };
            history.job_id.push(env.stream.id().to_owned());
            history.version.push(e.version as i64);
            history.event_type.push(env.event_type.clone());
            history.status.push(status.into());
            history.actor_kind.push("user".into());
            history.actor_id.push(env.actor.id.clone());
            history.detail.push(env.data.clone());
            history.occurred_at.push(env.occurred_at);
            history.position.push(e.position as i64);
            if env.event_type == "JobCompleted" {
                jobs.job_id.push(env.stream.id().to_owned());
                jobs.agent_id.push("agent".into());
                jobs.kind.push("summarise".into());
                jobs.status.push("COMPLETED".into());
                jobs.input.push(serde_json::json!({}));
                jobs.result.push(env.data["result"].clone());
                jobs.submitted_at.push(env.occurred_at);
                jobs.updated_at.push(env.occurred_at);
                jobs.version.push(3);
                jobs.seq.push(e.position as i64);
                jobs.position.push(e.position as i64);
            }
        }
        let j = &jobs;
        tx.execute(
            &insert_jobs,
            &[
                &j.job_id,
                &j.agent_id,
                &j.kind,
                &j.status,
                &j.input,
                &j.result,
                &j.submitted_at,
                &j.updated_at,
                &j.version,
                &j.seq,
                &j.position,
            ],
        )
        .await?;
        let h = &history;
        tx.execute(
            &insert_history,
            &[
                &h.job_id,
                &h.version,
                &h.event_type,
                &h.status,
                &h.actor_kind,
                &h.actor_id,
                &h.detail,
                &h.occurred_at,
                &h.position,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(events.len() as f64 / started.elapsed().as_secs_f64())
}

pub async fn bench(args: &Args, log: &JetStreamLog, end: u64, report: &mut Report) -> Result<()> {
    let url = args
        .database_url
        .as_deref()
        .context("DATABASE_URL is needed for the projection benchmark")?;
    println!(
        "== projection: jobs catch-up over {end} events vs raw batched insert of the same rows"
    );
    let mut projected = Vec::new();
    let mut raw = Vec::new();
    for round in 0..args.repeat {
        let p = catch_up(log, url, end).await?;
        let r = raw_insert(log, url).await?;
        println!(
            "round {round}: projection {p:.0} events/s, raw insert {r:.0} events/s, ratio {:.2}",
            p / r
        );
        projected.push(p);
        raw.push(r);
    }
    let ratio = Spread::of_ratios(&projected, &raw);
    report.row(
        &format!("projection: jobs catch-up over {end} events from an empty database"),
        Spread::of(projected).show(0, "events/s"),
        format!(
            "unnest insert of the same final rows, 3 000 events a statement: {}",
            Spread::of(raw).show(0, "events/s")
        ),
        "ratio ≥ 0.5",
        crate::http::met(ratio.median >= 0.5, &format!("{:.2}", ratio.median)),
    );
    report.ratio("projection_vs_raw_insert", ratio);
    Ok(())
}
