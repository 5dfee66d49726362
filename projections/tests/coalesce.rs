//! A projection's coalesced batch statements leave its tables exactly as its per-event
//! statements do, and are refused where those are. Runs against Postgres (`DATABASE_URL`).

use std::collections::HashMap;

use chronicle_events::domain::job::{
    JobCancelled, JobCompleted, JobFailed, JobRetried, JobStarted, JobSubmitted,
};
use chronicle_events::domain::{Event, JobEvent};
use chronicle_events::{Actor, Domain, Envelope, RecordedEvent, StreamId};
use chronicle_projections::models::{Jobs, Projection, Stmt};
use chronicle_projections::runtime::{self, connect_in};
use chrono::{Duration, TimeZone, Utc};
use tokio_postgres::Client;
use uuid::Uuid;

mod support;

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn recorded(position: u64, version: u64, job: &str, event: JobEvent) -> RecordedEvent {
    let event = Event::Job(event);
    let actor = if position.is_multiple_of(3) {
        Actor::agent("agent-7")
    } else {
        Actor::user("alice")
    };
    RecordedEvent {
        position,
        version,
        envelope: Envelope {
            id: Uuid::now_v7(),
            stream: StreamId::new(Domain::Job, job).unwrap(),
            event_type: event.event_type().to_owned(),
            schema: 1,
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                + Duration::seconds(position as i64),
            actor,
            command_id: Uuid::new_v4(),
            correlation_id: Uuid::new_v4(),
            causation_id: None,
            data: event.data(),
            prev_hash: None,
            hash: String::new(),
        },
    }
}

/// `n` job events over 25 jobs, every type, in any order (a job may be updated before
/// it was submitted), each job submitted at most once.
fn history(seed: u64, n: u64) -> Vec<RecordedEvent> {
    let mut rng = Rng(seed);
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut submitted = std::collections::HashSet::new();
    (1..=n)
        .map(|position| {
            let job = format!("job-{}", rng.below(25));
            let event = match rng.below(7) {
                0 | 1 if !submitted.contains(&job) => {
                    submitted.insert(job.clone());
                    JobEvent::JobSubmitted(JobSubmitted {
                        job_id: job.clone(),
                        agent_id: format!("agent-{}", rng.below(3)),
                        kind: "summarise".into(),
                        input: serde_json::json!({"n": position}),
                    })
                }
                0..=2 => JobEvent::JobStarted(JobStarted {}),
                3 => JobEvent::JobCompleted(JobCompleted {
                    result: serde_json::json!({"at": position}),
                }),
                4 => JobEvent::JobFailed(JobFailed {
                    error: format!("failed at {position}"),
                }),
                5 => JobEvent::JobCancelled(JobCancelled {
                    reason: format!("cancelled at {position}"),
                }),
                _ => JobEvent::JobRetried(JobRetried {}),
            };
            let version = versions.entry(job.clone()).or_default();
            *version += 1;
            recorded(position, *version, &job, event)
        })
        .collect()
}

async fn execute(client: &Client, stmts: &[Stmt]) -> Result<(), tokio_postgres::Error> {
    let mut cache = HashMap::new();
    runtime::prepare_all(client, stmts, &mut cache).await?;
    client.batch_execute("BEGIN").await?;
    match runtime::execute_pipelined(client, stmts, &cache).await {
        Ok(()) => client.batch_execute("COMMIT").await,
        Err(e) => {
            client.batch_execute("ROLLBACK").await?;
            Err(e)
        }
    }
}

/// Clients on two empty copies of the jobs tables.
async fn two_schemas() -> (Client, Client, Client) {
    let (db, admin) = support::fresh_database().await;
    for schema in ["per_event", "batched"] {
        admin
            .batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.jobs (LIKE read.jobs INCLUDING ALL);
                 CREATE TABLE {schema}.job_history (LIKE read.job_history INCLUDING ALL);"
            ))
            .await
            .unwrap();
    }
    let a = connect_in(&db, "per_event").await.unwrap();
    let b = connect_in(&db, "batched").await.unwrap();
    (admin, a, b)
}

async fn rows(admin: &Client, table: &str) -> Vec<String> {
    admin
        .query(
            &format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn coalesced_job_batches_leave_the_tables_as_per_event_statements_do() {
    for seed in [7u64, 1_234_567, 0x9e37_79b9_7f4a_7c15] {
        let (admin, per_event, batched) = two_schemas().await;
        let events = history(seed, 600);
        for e in &events {
            let mut stmts = Vec::new();
            Jobs.apply(e, &e.decode().unwrap(), &mut stmts);
            execute(&per_event, &stmts).await.unwrap();
        }
        // Batches of every size from 1 to 150.
        let mut rng = Rng(seed ^ 0xff);
        let mut rest = &events[..];
        while !rest.is_empty() {
            let size = (1 + rng.below(150) as usize).min(rest.len());
            let (batch, tail) = rest.split_at(size);
            let stmts = runtime::statements_for(&Jobs, batch).unwrap();
            assert!(stmts.len() <= 3, "a batch is at most three statements");
            execute(&batched, &stmts).await.unwrap();
            rest = tail;
        }
        for table in ["jobs", "job_history"] {
            let want = rows(&admin, &format!("per_event.{table}")).await;
            let got = rows(&admin, &format!("batched.{table}")).await;
            assert!(!want.is_empty());
            assert_eq!(got, want, "seed {seed}: {table} differs");
        }
    }
}

#[tokio::test]
async fn a_batch_submitting_a_job_twice_is_refused_like_the_second_insert() {
    let (_admin, _, batched) = two_schemas().await;
    let submit = |position, version| {
        recorded(
            position,
            version,
            "job-1",
            JobEvent::JobSubmitted(JobSubmitted {
                job_id: "job-1".into(),
                agent_id: "agent-1".into(),
                kind: "summarise".into(),
                input: serde_json::json!({}),
            }),
        )
    };
    // Twice within one batch.
    let batch = [
        submit(1, 1),
        recorded(2, 2, "job-1", JobEvent::JobStarted(JobStarted {})),
        submit(3, 3),
    ];
    let stmts = runtime::statements_for(&Jobs, &batch).unwrap();
    let err = execute(&batched, &stmts).await.unwrap_err();
    assert!(err.as_db_error().is_some(), "{err}");
    // Once before, once in a later batch.
    execute(
        &batched,
        &runtime::statements_for(&Jobs, &batch[..2]).unwrap(),
    )
    .await
    .unwrap();
    let later = [
        recorded(
            3,
            3,
            "job-1",
            JobEvent::JobCompleted(JobCompleted {
                result: serde_json::json!(1),
            }),
        ),
        submit(4, 4),
    ];
    let err = execute(&batched, &runtime::statements_for(&Jobs, &later).unwrap())
        .await
        .unwrap_err();
    assert!(err.as_db_error().is_some(), "{err}");
    // Nothing of the refused batches is left behind.
    let status: String = batched
        .query_one("SELECT status FROM jobs WHERE job_id = 'job-1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "RUNNING");
}
