//! The projector runtime against real NATS and Postgres: exactly once in effect through
//! crashes, one active worker with a standby that takes over, and a poison event that
//! stops its projection only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chronicle_events::domain::job::{JobCompleted, JobStarted, JobSubmitted};
use chronicle_events::domain::user::{Role, TokenIssued};
use chronicle_events::jetstream::VERSION_HEADER;
use chronicle_events::{
    Actor, AppendRequest, Domain, EventLog, Expected, JetStreamLog, PendingEvent, StreamId,
};
use chronicle_projections::models::{Jobs, Projection, Tokens};
use chronicle_projections::runtime::{self, RunnerConfig};
use tokio::sync::watch;
use tokio_postgres::Client;
use uuid::Uuid;

mod support;
use support::fresh_database;

use chronicle_testkit::{isolated_log, keyring as test_keyring};

fn actor() -> Actor {
    Actor::user("alice")
}

/// Job `i`, submitted, started and completed: three events in one append.
async fn append_job(log: &JetStreamLog, i: usize) {
    let job = StreamId::new(Domain::Job, format!("job-{i}")).unwrap();
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        job.clone(),
        Expected::NO_STREAM,
        vec![
            PendingEvent::new(
                JobSubmitted {
                    job_id: job.id().into(),
                    agent_id: "a".into(),
                    kind: "k".into(),
                    input: serde_json::json!({"i": i}),
                },
                actor(),
                Uuid::new_v4(),
            ),
            PendingEvent::new(JobStarted {}, actor(), Uuid::new_v4()),
            PendingEvent::new(
                JobCompleted {
                    result: serde_json::json!(i),
                },
                actor(),
                Uuid::new_v4(),
            ),
        ],
    ))
    .await
    .unwrap();
}

/// `jobs` jobs, 64 appended at a time. Answers the log's last position.
async fn fill(log: &JetStreamLog, jobs: usize) -> u64 {
    let mut tasks = Vec::new();
    for i in 0..jobs {
        let log = log.clone();
        tasks.push(tokio::spawn(async move { append_job(&log, i).await }));
        if tasks.len() >= 64 {
            for t in tasks.drain(..) {
                t.await.unwrap();
            }
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    log.last_position().await.unwrap()
}

async fn checkpoint(db: &Client, name: &str) -> (i64, String) {
    db.query_opt(
        "SELECT position, state FROM read.projection_checkpoints WHERE name = $1",
        &[&name],
    )
    .await
    .unwrap()
    .map(|r| (r.get(0), r.get(1)))
    .unwrap_or((0, "none".into()))
}

async fn wait_for_checkpoint(db: &Client, name: &str, position: u64, within: Duration) {
    let started = Instant::now();
    loop {
        let (p, state) = checkpoint(db, name).await;
        if p as u64 >= position {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{name} stuck at {p} ({state}), wanted {position}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn(
    log: &JetStreamLog,
    db: &str,
    projection: Arc<dyn Projection>,
    batch_size: usize,
) -> (tokio::task::JoinHandle<()>, watch::Sender<bool>) {
    let (stop, stopped) = watch::channel(false);
    let cfg = RunnerConfig {
        batch_size,
        ..RunnerConfig::new(db)
    };
    let handle = tokio::spawn(runtime::run(
        Arc::new(log.clone()),
        cfg,
        projection,
        stopped,
    ));
    (handle, stop)
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn every_event_is_applied_exactly_once_however_the_projector_is_killed() {
    let log = isolated_log().await;
    let (db_url, db) = fresh_database().await;
    let jobs = 400;
    let end = fill(&log, jobs).await;

    // Abort the projector task mid-batch, again and again: the transaction in flight
    // dies with its connection.
    for round in 0..8 {
        let (task, _stop) = spawn(&log, &db_url, Arc::new(Jobs), 37);
        tokio::time::sleep(Duration::from_millis(15 + round * 7)).await;
        task.abort();
        let _ = task.await;
    }
    // Then kill its database sessions from the outside while it runs.
    let (task, stop) = spawn(&log, &db_url, Arc::new(Jobs), 37);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    }
    wait_for_checkpoint(&db, "jobs", end, Duration::from_secs(60)).await;
    let _ = stop.send(true);
    let _ = task.await;

    assert_eq!(
        count(&db, "SELECT count(*) FROM read.jobs").await,
        jobs as i64
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM read.job_history").await,
        3 * jobs as i64,
        "no event applied twice or skipped"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM read.jobs WHERE status = 'COMPLETED' AND version = 3"
        )
        .await,
        jobs as i64
    );
    // Positions applied are exactly the log's, without gaps.
    assert_eq!(
        count(&db, "SELECT count(DISTINCT position) FROM read.job_history").await as u64,
        end
    );
}

#[tokio::test]
async fn one_worker_is_active_and_a_standby_takes_over_when_it_dies() {
    let log = isolated_log().await;
    let (db_url, db) = fresh_database().await;
    let first = fill(&log, 20).await;
    let (active, _a) = spawn(&log, &db_url, Arc::new(Jobs), 100);
    wait_for_checkpoint(&db, "jobs", first, Duration::from_secs(10)).await;
    let (standby, _b) = spawn(&log, &db_url, Arc::new(Jobs), 100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let holders = count(
        &db,
        // pg_locks is the whole cluster's: only this test's database counts.
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    assert_eq!(holders, 1, "only one worker holds the projection");

    active.abort();
    let _ = active.await;
    let died = Instant::now();
    let more = fill_more(&log, 20, 10).await;
    wait_for_checkpoint(&db, "jobs", more, Duration::from_secs(5)).await;
    assert!(
        died.elapsed() < Duration::from_secs(5),
        "took over within seconds"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM read.jobs").await, 30);
    assert_eq!(
        count(&db, "SELECT count(*) FROM read.job_history").await,
        90
    );
    standby.abort();
}

/// Jobs numbered from `from`, after those of [`fill`].
async fn fill_more(log: &JetStreamLog, from: usize, n: usize) -> u64 {
    for i in from..from + n {
        append_job(log, i).await;
    }
    log.last_position().await.unwrap()
}

#[tokio::test]
async fn a_poison_event_stops_its_projection_only_and_says_where() {
    let log = isolated_log().await;
    let (db_url, db) = fresh_database().await;
    let before = fill(&log, 3).await;

    // A second JobSubmitted for job-1, as a buggy writer holding the event key would
    // append it: the jobs read model cannot take it (the job exists).
    let job = StreamId::new(Domain::Job, "job-1").unwrap();
    let existing = log.read_stream(&job, 1).await.unwrap();
    let mut forged = serde_json::to_value(&existing[0].envelope).unwrap();
    forged["id"] = serde_json::json!(Uuid::now_v7());
    forged["prev_hash"] = serde_json::json!(existing[2].envelope.hash);
    forged["hash"] = serde_json::json!(chronicle_events::compute_hash(&forged));
    let payload = chronicle_events::canonical_json(&forged);
    let subject = job.subject(&log.config().subject_prefix);
    let mut headers = async_nats::HeaderMap::new();
    let prev = existing[2].position.to_string();
    headers.insert(VERSION_HEADER, "4");
    headers.insert(chronicle_events::auth::PREV_HEADER, prev.as_str());
    headers.insert(
        chronicle_events::auth::AUTH_HEADER,
        test_keyring().sign(&subject, 4, &prev, &payload).as_str(),
    );
    let poison = log
        .jetstream()
        .publish_with_headers(subject, headers, Bytes::from(payload))
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;
    assert_eq!(poison, before + 1);

    // Events after it, for another projection.
    let now = chrono::Utc::now();
    let user = StreamId::new(Domain::User, "bob").unwrap();
    log.append(AppendRequest::single(
        Uuid::new_v4(),
        user,
        Expected::NO_STREAM,
        vec![PendingEvent::new(
            TokenIssued {
                jti: Uuid::now_v7(),
                role: Role::Writer,
                scopes: vec![],
                issued_at: now,
                expires_at: now + chrono::Duration::hours(1),
            },
            actor(),
            Uuid::new_v4(),
        )],
    ))
    .await
    .unwrap();
    let end = log.last_position().await.unwrap();

    let (jobs_task, _s1) = spawn(&log, &db_url, Arc::new(Jobs), 100);
    let (tokens_task, _s2) = spawn(&log, &db_url, Arc::new(Tokens), 100);
    wait_for_checkpoint(&db, "tokens", end, Duration::from_secs(10)).await;
    let started = Instant::now();
    loop {
        let row = db
            .query_one(
                "SELECT position, state, error, error_position FROM read.projection_checkpoints WHERE name = 'jobs'",
                &[],
            )
            .await
            .unwrap();
        let state: String = row.get(1);
        if state == "failed" {
            assert_eq!(
                row.get::<_, i64>(0) as u64,
                before,
                "applied everything before it"
            );
            assert_eq!(row.get::<_, Option<i64>>(3), Some(poison as i64));
            let error: String = row.get(2);
            assert!(error.contains("JobSubmitted"), "{error}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "jobs never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&db, "SELECT count(*) FROM read.jobs").await, 3);
    assert_eq!(count(&db, "SELECT count(*) FROM read.tokens").await, 1);
    jobs_task.abort();
    tokens_task.abort();
}

#[tokio::test]
async fn messages_chronicle_did_not_write_are_stepped_past_and_the_projection_goes_on() {
    let log = isolated_log().await;
    let (db_url, db) = fresh_database().await;
    fill(&log, 2).await;
    // Junk, and the same poison as above but without the event key: not Chronicle's, so
    // no reason to stop.
    let job = StreamId::new(Domain::Job, "job-1").unwrap();
    let existing = log.read_stream(&job, 1).await.unwrap();
    let mut forged = serde_json::to_value(&existing[0].envelope).unwrap();
    forged["id"] = serde_json::json!(Uuid::now_v7());
    forged["prev_hash"] = serde_json::json!(existing[2].envelope.hash);
    forged["hash"] = serde_json::json!(chronicle_events::compute_hash(&forged));
    let subject = job.subject(&log.config().subject_prefix);
    for payload in [b"junk".to_vec(), chronicle_events::canonical_json(&forged)] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(VERSION_HEADER, "4");
        log.jetstream()
            .publish_with_headers(subject.clone(), headers, Bytes::from(payload))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let end = fill_more(&log, 2, 2).await;
    let (task, _stop) = spawn(&log, &db_url, Arc::new(Jobs), 100);
    wait_for_checkpoint(&db, "jobs", end, Duration::from_secs(10)).await;
    let (_, state) = checkpoint(&db, "jobs").await;
    assert_eq!(state, "running");
    assert_eq!(count(&db, "SELECT count(*) FROM read.jobs").await, 4);
    task.abort();
}
