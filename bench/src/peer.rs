//! The peer: the same agent-job workload through `cqrs-es` 0.5 on Postgres
//! (`postgres-es`, one `GenericQuery` view), on the same Postgres server, against
//! Chronicle over HTTP. Both sides are then checked for lost updates: every job's view
//! (cqrs-es) or read-model row (Chronicle) against the events actually stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use cqrs_es::persist::GenericQuery;
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventEnvelope, View};
use postgres_es::{PostgresCqrs, PostgresViewRepository};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;

use crate::Args;
use crate::http::met;
use crate::procs::{Chronicle, fresh_database};
use crate::report::{Report, Spread, num};

// ---- the cqrs-es side: the job aggregate as cqrs-es users write it ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    Pending,
    Running,
    Completed,
    Failed,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Job {
    status: Option<Status>,
}

enum JobCommand {
    Submit { agent_id: String, kind: String },
    Start,
    Complete { result: serde_json::Value },
    Fail { error: String },
    Retry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum JobEvent {
    Submitted { agent_id: String, kind: String },
    Started,
    Completed { result: serde_json::Value },
    Failed { error: String },
    Retried,
}

impl DomainEvent for JobEvent {
    fn event_type(&self) -> String {
        match self {
            JobEvent::Submitted { .. } => "JobSubmitted",
            JobEvent::Started => "JobStarted",
            JobEvent::Completed { .. } => "JobCompleted",
            JobEvent::Failed { .. } => "JobFailed",
            JobEvent::Retried => "JobRetried",
        }
        .into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug)]
struct InvalidTransition;

impl std::fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid transition")
    }
}

impl std::error::Error for InvalidTransition {}

impl Aggregate for Job {
    const TYPE: &'static str = "job";
    type Command = JobCommand;
    type Event = JobEvent;
    type Error = InvalidTransition;
    type Services = ();

    async fn handle(
        &mut self,
        command: JobCommand,
        _: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), InvalidTransition> {
        use Status::*;
        let event = match (self.status, command) {
            (None, JobCommand::Submit { agent_id, kind }) => JobEvent::Submitted { agent_id, kind },
            (Some(Pending), JobCommand::Start) => JobEvent::Started,
            (Some(Running), JobCommand::Complete { result }) => JobEvent::Completed { result },
            (Some(Running), JobCommand::Fail { error }) => JobEvent::Failed { error },
            (Some(Failed), JobCommand::Retry) => JobEvent::Retried,
            _ => return Err(InvalidTransition),
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: JobEvent) {
        self.status = Some(match event {
            JobEvent::Submitted { .. } | JobEvent::Retried => Status::Pending,
            JobEvent::Started => Status::Running,
            JobEvent::Completed { .. } => Status::Completed,
            JobEvent::Failed { .. } => Status::Failed,
        });
    }
}

/// The view: a job's status and how many events it has seen.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct JobView {
    status: Option<Status>,
    events: u64,
}

impl View<Job> for JobView {
    fn update(&mut self, event: &EventEnvelope<Job>) {
        self.events += 1;
        let mut job = Job {
            status: self.status,
        };
        job.apply(event.payload.clone());
        self.status = job.status;
    }
}

type JobQuery = GenericQuery<PostgresViewRepository<JobView, Job>, JobView, Job>;

struct Peer {
    cqrs: PostgresCqrs<Job>,
    pool: sqlx::PgPool,
    view_errors: Arc<AtomicUsize>,
}

impl Peer {
    /// cqrs-es on a fresh database, its pool sized for `tasks`.
    async fn start(url: &str, tasks: u32) -> Result<Peer> {
        let db = fresh_database(url).await?;
        let pool = PgPoolOptions::new()
            .max_connections(tasks)
            .connect(&db)
            .await?;
        // postgres-es's own schema (its db/init.sql).
        sqlx::raw_sql(
            "CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL,
                 sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL,
                 event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
                 PRIMARY KEY (aggregate_type, aggregate_id, sequence));
             CREATE TABLE job_view (view_id text NOT NULL, version bigint CHECK (version >= 0) NOT NULL,
                 payload json NOT NULL, PRIMARY KEY (view_id));",
        )
        .execute(&pool)
        .await?;
        let view_errors = Arc::new(AtomicUsize::new(0));
        let mut query = JobQuery::new(Arc::new(PostgresViewRepository::new(
            "job_view",
            pool.clone(),
        )));
        let errors = view_errors.clone();
        query.use_error_handler(Box::new(move |_| {
            errors.fetch_add(1, Ordering::Relaxed);
        }));
        let cqrs = postgres_es::postgres_cqrs(pool.clone(), vec![Box::new(query)], ());
        Ok(Peer {
            cqrs,
            pool,
            view_errors,
        })
    }

    /// Views whose event count or status disagrees with the stored events.
    async fn lost_updates(&self) -> Result<i64> {
        let row: (i64,) = sqlx::query_as(
            "SELECT count(*) FROM (SELECT aggregate_id, count(*) AS n FROM events GROUP BY aggregate_id) e
             LEFT JOIN job_view v ON v.view_id = e.aggregate_id
             WHERE v.view_id IS NULL OR (v.payload->>'events')::bigint <> e.n",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.0)
    }
}

/// What one side answered.
#[derive(Default)]
struct Outcome {
    rate: f64,
    accepted: usize,
    rejected: usize,
    conflicts: usize,
}

fn lifecycle(i: usize, step: usize) -> JobCommand {
    match step {
        0 => JobCommand::Submit {
            agent_id: format!("agent-{}", i % 50),
            kind: "summarise".into(),
        },
        1 => JobCommand::Start,
        _ => JobCommand::Complete {
            result: json!({"pages": i % 40}),
        },
    }
}

/// Each of `tasks` tasks takes the next of `jobs` jobs and runs `job` on it (its submit,
/// start and complete, one command after the other); commands/s over the whole run.
async fn lifecycles<F, Fut>(jobs: usize, tasks: usize, job: F) -> Result<Outcome>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let workers = (0..tasks).map(|_| async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= jobs {
                return Ok::<_, anyhow::Error>(());
            }
            job(i).await?;
        }
    });
    futures::future::try_join_all(workers).await?;
    Ok(Outcome {
        rate: (3 * jobs) as f64 / started.elapsed().as_secs_f64(),
        accepted: 3 * jobs,
        ..Outcome::default()
    })
}

async fn peer_lifecycles(peer: &Peer, tag: &str, jobs: usize, tasks: usize) -> Result<Outcome> {
    lifecycles(jobs, tasks, |i| async move {
        let id = format!("{tag}-{i}");
        for step in 0..3 {
            peer.cqrs
                .execute(&id, lifecycle(i, step))
                .await
                .map_err(|e| anyhow::anyhow!("cqrs-es: {e}"))?;
        }
        Ok(())
    })
    .await
}

async fn chronicle_lifecycles(
    ch: &Chronicle,
    tag: &str,
    jobs: usize,
    tasks: usize,
) -> Result<Outcome> {
    lifecycles(jobs, tasks, |i| async move {
        let id = format!("{tag}-{i}");
        let steps = [
            (
                "/v1/commands/jobs".to_owned(),
                json!({"job_id": id, "agent_id": format!("agent-{}", i % 50), "kind": "summarise", "input": {}}),
            ),
            (format!("/v1/commands/jobs/{id}/start"), json!({})),
            (
                format!("/v1/commands/jobs/{id}/complete"),
                json!({"result": {"pages": i % 40}}),
            ),
        ];
        for (path, body) in steps {
            let r = ch.post(&path, &body).send().await?;
            anyhow::ensure!(r.status().is_success(), "{path} answered {}", r.status());
        }
        Ok(())
    })
    .await
}

/// The same lifecycles through Chronicle's `CommandHandler` in this process, on the log
/// the running `chronicle project` projects: the library against the library.
async fn chronicle_lifecycles_in_process(
    handler: &chronicle_commands::CommandHandler,
    tag: &str,
    jobs: usize,
    tasks: usize,
) -> Result<Outcome> {
    use chronicle_commands::Command;
    lifecycles(jobs, tasks, |i| async move {
        let job_id = format!("{tag}-{i}");
        let steps = [
            Command::SubmitJob {
                job_id: job_id.clone(),
                agent_id: format!("agent-{}", i % 50),
                kind: "summarise".into(),
                input: json!({}),
            },
            Command::StartJob {
                job_id: job_id.clone(),
            },
            Command::CompleteJob {
                job_id,
                result: json!({"pages": i % 40}),
            },
        ];
        for command in steps {
            handler
                .execute(&crate::aggregate::ctx(), &command)
                .await
                .map_err(|e| anyhow::anyhow!("chronicle: {e:?}"))?;
        }
        Ok(())
    })
    .await
}

/// The start/fail/retry command task `t` sends at its `k`-th turn.
fn hot_step(t: usize, k: usize) -> usize {
    (t + k) % 3
}

async fn peer_hot(peer: &Peer, id: &str, tasks: usize, per_task: usize) -> Result<Outcome> {
    peer.cqrs
        .execute(id, lifecycle(0, 0))
        .await
        .map_err(|e| anyhow::anyhow!("cqrs-es: {e}"))?;
    let accepted = AtomicUsize::new(0);
    let rejected = AtomicUsize::new(0);
    let conflicts = AtomicUsize::new(0);
    let started = Instant::now();
    let workers = (0..tasks).map(|t| {
        let (accepted, rejected, conflicts) = (&accepted, &rejected, &conflicts);
        async move {
            for k in 0..per_task {
                let command = match hot_step(t, k) {
                    0 => JobCommand::Start,
                    1 => JobCommand::Fail {
                        error: "timeout".into(),
                    },
                    _ => JobCommand::Retry,
                };
                match peer.cqrs.execute(id, command).await {
                    Ok(()) => accepted.fetch_add(1, Ordering::Relaxed),
                    Err(AggregateError::UserError(_)) => rejected.fetch_add(1, Ordering::Relaxed),
                    Err(AggregateError::AggregateConflict) => {
                        conflicts.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => return Err(anyhow::anyhow!("cqrs-es: {e}")),
                };
            }
            Ok(())
        }
    });
    futures::future::try_join_all(workers).await?;
    Ok(Outcome {
        rate: (tasks * per_task) as f64 / started.elapsed().as_secs_f64(),
        accepted: accepted.into_inner(),
        rejected: rejected.into_inner(),
        conflicts: conflicts.into_inner(),
    })
}

async fn chronicle_hot(ch: &Chronicle, id: &str, tasks: usize, per_task: usize) -> Result<Outcome> {
    let r = ch
        .post(
            "/v1/commands/jobs",
            &json!({"job_id": id, "agent_id": "agent-1", "kind": "summarise", "input": {}}),
        )
        .send()
        .await?;
    anyhow::ensure!(r.status() == 201, "submit answered {}", r.status());
    let accepted = AtomicUsize::new(0);
    let rejected = AtomicUsize::new(0);
    let started = Instant::now();
    let workers = (0..tasks).map(|t| {
        let (accepted, rejected) = (&accepted, &rejected);
        async move {
            for k in 0..per_task {
                let (path, body) = match hot_step(t, k) {
                    0 => (format!("/v1/commands/jobs/{id}/start"), json!({})),
                    1 => (
                        format!("/v1/commands/jobs/{id}/fail"),
                        json!({"error": "timeout"}),
                    ),
                    _ => (format!("/v1/commands/jobs/{id}/retry"), json!({})),
                };
                let r = ch.post(&path, &body).send().await?;
                match r.status().as_u16() {
                    200 => accepted.fetch_add(1, Ordering::Relaxed),
                    409 | 422 => rejected.fetch_add(1, Ordering::Relaxed),
                    other => anyhow::bail!("{path} answered {other}"),
                };
            }
            Ok(())
        }
    });
    futures::future::try_join_all(workers).await?;
    Ok(Outcome {
        rate: (tasks * per_task) as f64 / started.elapsed().as_secs_f64(),
        accepted: accepted.into_inner(),
        rejected: rejected.into_inner(),
        conflicts: 0,
    })
}

/// Chronicle's read model against the log, once the projector has caught up: jobs of
/// `tag` whose row disagrees with their stream (status, version, history rows).
async fn chronicle_lost_updates(
    log: &chronicle_events::JetStreamLog,
    ch: &Chronicle,
    tag: &str,
) -> Result<i64> {
    ch.wait_for_read_models(chronicle_events::EventLog::last_position(log).await?)
        .await?;
    let (db, conn) = tokio_postgres::connect(&ch.database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let jobs = db
        .query(
            "SELECT j.job_id, j.version, (SELECT count(*) FROM read.job_history h WHERE h.job_id = j.job_id)
             FROM read.jobs j WHERE j.job_id LIKE $1",
            &[&format!("{tag}%")],
        )
        .await?;
    let mut lost = 0;
    for row in &jobs {
        let id: String = row.get(0);
        let version: i64 = row.get(1);
        let history: i64 = row.get(2);
        let stream = chronicle_events::StreamId::new(chronicle_events::Domain::Job, id.as_str())?;
        let head = chronicle_events::EventLog::stream_head(log, &stream)
            .await?
            .version;
        if version as u64 != head || history as u64 != head {
            lost += 1;
        }
    }
    anyhow::ensure!(!jobs.is_empty(), "no jobs of {tag} in the read model");
    Ok(lost)
}

/// `log`: the log `ch` serves and projects.
pub async fn bench(
    args: &Args,
    ch: &Chronicle,
    log: chronicle_events::JetStreamLog,
    report: &mut Report,
) -> Result<()> {
    let url = args
        .database_url
        .as_deref()
        .context("DATABASE_URL is needed for the peer benchmark")?;
    let jobs = if args.quick { 600 } else { 3_000 };
    let hot_per_task = if args.quick { 60 } else { 250 };
    let handler = chronicle_commands::CommandHandler::new(Arc::new(log.clone()));
    let mut ratio_at_64 = Vec::new();
    for tasks in [16usize, 64] {
        println!("== peer: {jobs} jobs submitted, started and completed by {tasks} tasks");
        let peer = Peer::start(url, tasks as u32).await?;
        let mut lib = Vec::new();
        let mut http = Vec::new();
        let mut theirs = Vec::new();
        let mut last_tags = Vec::new();
        for round in 0..args.repeat {
            let tag = format!(
                "r{round}t{tasks}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..6]
            );
            let l =
                chronicle_lifecycles_in_process(&handler, &format!("{tag}l"), jobs, tasks).await?;
            let h = chronicle_lifecycles(ch, &format!("{tag}h"), jobs, tasks).await?;
            let p = peer_lifecycles(&peer, &tag, jobs, tasks).await?;
            println!(
                "round {round}: chronicle {:.0} commands/s in-process, {:.0} over HTTP; cqrs-es {:.0} commands/s; ratios {:.2}, {:.2}",
                l.rate,
                h.rate,
                p.rate,
                l.rate / p.rate,
                h.rate / p.rate
            );
            lib.push(l.rate);
            http.push(h.rate);
            theirs.push(p.rate);
            if tasks == 64 {
                ratio_at_64.push(l.rate / p.rate);
            }
            last_tags = vec![format!("{tag}l"), format!("{tag}h")];
        }
        let lost_theirs = peer.lost_updates().await?;
        let mut lost_ours = 0;
        for tag in &last_tags {
            lost_ours += chronicle_lost_updates(&log, ch, tag).await?;
        }
        let ratio = Spread::of_ratios(&lib, &theirs);
        let ratio_http = Spread::of_ratios(&http, &theirs);
        report.row(
            &format!("peer: job lifecycles (submit, start, complete), {tasks} tasks"),
            format!(
                "CommandHandler in-process: {}; over HTTP: {} ({:.2}× cqrs-es); read-model rows off their stream: {lost_ours}",
                Spread::of(lib.clone()).show(0, "commands/s"),
                Spread::of(http.clone()).show(0, "commands/s"),
                ratio_http.median
            ),
            format!(
                "cqrs-es + postgres-es in-process, pool of {tasks}: {}; views off their events: {lost_theirs}, view write errors {}",
                Spread::of(theirs.clone()).show(0, "commands/s"),
                peer.view_errors.load(Ordering::Relaxed)
            ),
            "≥ 3× its commands/s",
            met(ratio.median >= 3.0, &format!("{:.2}× in-process", ratio.median)),
        );
        if tasks == 16 {
            report.ratio("ingest_vs_cqrs_es_16", ratio);
            report.ratio("http_vs_cqrs_es_16", ratio_http);
        }
        peer.pool.close().await;
    }
    report.ratio("ingest_vs_cqrs_es", Spread::of(ratio_at_64));
    durable(args, jobs, report).await?;

    println!("== peer: one hot job, 16 tasks × {hot_per_task} start/fail/retry commands");
    let peer = Peer::start(url, 16).await?;
    let id = format!("hot-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let c = chronicle_hot(ch, &id, 16, hot_per_task).await?;
    let p = peer_hot(&peer, &id, 16, hot_per_task).await?;
    let lost_ours = chronicle_lost_updates(&log, ch, &id).await?;
    let lost_theirs = peer.lost_updates().await?;
    report.row(
        "peer: one hot job, 16 tasks",
        format!(
            "{} answered/s: {} accepted, {} refused as invalid transitions, conflicts retried inside; read model off the log: {lost_ours}",
            num(c.rate, 0),
            c.accepted,
            c.rejected
        ),
        format!(
            "cqrs-es: {} answered/s: {} accepted, {} refused, {} failed with AggregateConflict; view off its events: {lost_theirs}, view write errors {}",
            num(p.rate, 0),
            p.accepted,
            p.rejected,
            p.conflicts,
            peer.view_errors.load(Ordering::Relaxed)
        ),
        "no lost update",
        met(lost_ours == 0, &format!("Chronicle {lost_ours}, cqrs-es {lost_theirs}")),
    );
    peer.pool.close().await;
    Ok(())
}

/// The same lifecycles, 64 tasks, in process, with every write on disk before it is
/// acknowledged on both sides: Chronicle on a nats-server with `sync_interval: always`,
/// cqrs-es on a Postgres with `fsync=on` and `synchronous_commit=on`.
async fn durable(args: &Args, jobs: usize, report: &mut Report) -> Result<()> {
    let (Some(nats), Some(pg)) = (&args.durable_nats_url, &args.durable_database_url) else {
        report.note(
            "peer at equal durability: not measured (no DURABLE_NATS_URL / DURABLE_DATABASE_URL; scripts/bench starts them)".into(),
        );
        return Ok(());
    };
    let tasks = 64usize;
    println!("== peer at equal durability: {jobs} jobs by {tasks} tasks, every write synced");
    let log = chronicle_events::JetStreamLog::connect(nats, crate::fresh_config()).await?;
    let handler = chronicle_commands::CommandHandler::new(Arc::new(log.clone()));
    let peer = Peer::start(pg, tasks as u32).await?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..args.repeat {
        let tag = format!(
            "d{round}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let l = chronicle_lifecycles_in_process(&handler, &format!("{tag}l"), jobs, tasks).await?;
        let p = peer_lifecycles(&peer, &tag, jobs, tasks).await?;
        println!(
            "round {round}: chronicle {:.0} commands/s in-process, cqrs-es {:.0}; ratio {:.2}",
            l.rate,
            p.rate,
            l.rate / p.rate
        );
        ours.push(l.rate);
        theirs.push(p.rate);
    }
    let ratio = Spread::of_ratios(&ours, &theirs);
    report.row(
        &format!("peer at equal durability: job lifecycles, {tasks} tasks, every write synced"),
        format!(
            "CommandHandler in-process on nats-server `sync_interval: always`: {}",
            Spread::of(ours).show(0, "commands/s")
        ),
        format!(
            "cqrs-es + postgres-es on Postgres `fsync=on`, `synchronous_commit=on`: {}",
            Spread::of(theirs).show(0, "commands/s")
        ),
        "stated",
        format!("{:.2}×", ratio.median),
    );
    report.ratio("ingest_vs_cqrs_es_durable", ratio);
    peer.pool.close().await;
    log.jetstream()
        .delete_stream(&log.config().stream_name)
        .await
        .ok();
    Ok(())
}
