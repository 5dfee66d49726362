//! Set-based folds: a whole batch of events into a few statements over `unnest`ed
//! arrays, instead of one statement per row change. Postgres spends most of a small
//! statement's cost on the statement itself, so this is where catch-up speed comes from.
//!
//! Each fold must leave the tables exactly as the per-event statements of
//! [`Projection::apply`](crate::models::Projection::apply) would, and be refused where
//! they would be (`projections/tests/coalesce.rs` checks both against Postgres).

use std::collections::HashMap;

use chronicle_events::RecordedEvent;
use chronicle_events::domain::{Event, JobEvent};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::models::Stmt;

type Time = DateTime<Utc>;

/// A job's status after `e`.
pub(crate) fn job_status(e: &JobEvent) -> &'static str {
    match e {
        JobEvent::JobSubmitted(_) | JobEvent::JobRetried(_) => "PENDING",
        JobEvent::JobStarted(_) => "RUNNING",
        JobEvent::JobCompleted(_) => "COMPLETED",
        JobEvent::JobFailed(_) => "FAILED",
        JobEvent::JobCancelled(_) => "CANCELLED",
    }
}

/// Where the batch leaves one job's row.
struct JobRow {
    job_id: String,
    /// Submitted in this batch: the row is inserted whole.
    submitted: Option<Submitted>,
    status: &'static str,
    updated_at: Time,
    version: i64,
    position: i64,
    /// `None`: the batch leaves the column as it was; `Some(v)`: sets it to `v`.
    result: Option<Option<Value>>,
    error: Option<Option<String>>,
    cancel_reason: Option<Option<String>>,
}

struct Submitted {
    agent_id: String,
    kind: String,
    input: Value,
    at: Time,
    /// The submission's position: the row's never-changing `seq`.
    seq: i64,
}

const UPDATE_JOBS: &str = "UPDATE jobs AS j SET status = u.status, updated_at = u.updated_at, version = u.version, position = u.position,
        result = CASE WHEN u.set_result THEN u.result ELSE j.result END,
        error = CASE WHEN u.set_error THEN u.error ELSE j.error END,
        cancel_reason = CASE WHEN u.set_cancel THEN u.cancel_reason ELSE j.cancel_reason END
    FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::bool[], $7::jsonb[], $8::bool[], $9::text[], $10::bool[], $11::text[])
        AS u(job_id, status, updated_at, version, position, set_result, result, set_error, error, set_cancel, cancel_reason)
    WHERE j.job_id = u.job_id";

const INSERT_JOBS: &str = "INSERT INTO jobs (job_id, agent_id, kind, status, input, result, error, cancel_reason, submitted_at, updated_at, version, seq, position)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::bigint[], $12::bigint[], $13::bigint[])";

const INSERT_HISTORY: &str = "INSERT INTO job_history (job_id, version, event_type, status, actor_kind, actor_id, detail, occurred_at, position)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::jsonb[], $8::timestamptz[], $9::bigint[])";

fn boxed<T: tokio_postgres::types::ToSql + Sync + Send + 'static>(
    v: T,
) -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
    Box::new(v)
}

/// The jobs projection over a batch: at most one UPDATE (jobs that existed before the
/// batch), one INSERT (jobs submitted in it, with everything after folded in) and one
/// INSERT of history rows.
///
/// Updates go first: an update the per-event statements would have run before its job
/// existed then matches nothing, as it would have. A second `JobSubmitted` for a job
/// becomes a second inserted row, so the batch is refused as the per-event INSERT would
/// have been.
pub(crate) fn jobs(events: &[(&RecordedEvent, Event)], out: &mut Vec<Stmt>) {
    let mut rows: Vec<JobRow> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let n = events.len();
    let mut h_job = Vec::with_capacity(n);
    let mut h_version = Vec::with_capacity(n);
    let mut h_type = Vec::with_capacity(n);
    let mut h_status = Vec::with_capacity(n);
    let mut h_actor_kind = Vec::with_capacity(n);
    let mut h_actor_id = Vec::with_capacity(n);
    let mut h_detail = Vec::with_capacity(n);
    let mut h_at = Vec::with_capacity(n);
    let mut h_position = Vec::with_capacity(n);
    for (r, event) in events {
        let Event::Job(e) = event else { continue };
        let env = &r.envelope;
        let job = env.stream.id();
        let status = job_status(e);
        let at = env.occurred_at;
        let version = r.version as i64;
        let position = r.position as i64;
        let row = match e {
            JobEvent::JobSubmitted(s) => {
                rows.push(JobRow {
                    job_id: job.to_owned(),
                    submitted: Some(Submitted {
                        agent_id: s.agent_id.clone(),
                        kind: s.kind.clone(),
                        input: s.input.clone(),
                        at,
                        seq: position,
                    }),
                    status,
                    updated_at: at,
                    version,
                    position,
                    result: None,
                    error: None,
                    cancel_reason: None,
                });
                index.insert(job, rows.len() - 1);
                rows.last_mut().expect("just pushed")
            }
            _ => {
                let i = *index.entry(job).or_insert_with(|| {
                    rows.push(JobRow {
                        job_id: job.to_owned(),
                        submitted: None,
                        status,
                        updated_at: at,
                        version,
                        position,
                        result: None,
                        error: None,
                        cancel_reason: None,
                    });
                    rows.len() - 1
                });
                &mut rows[i]
            }
        };
        row.status = status;
        row.updated_at = at;
        row.version = version;
        row.position = position;
        match e {
            JobEvent::JobCompleted(c) => row.result = Some(Some(c.result.clone())),
            JobEvent::JobFailed(f) => row.error = Some(Some(f.error.clone())),
            JobEvent::JobCancelled(c) => row.cancel_reason = Some(Some(c.reason.clone())),
            JobEvent::JobRetried(_) => {
                row.error = Some(None);
                row.result = Some(None);
            }
            JobEvent::JobSubmitted(_) | JobEvent::JobStarted(_) => {}
        }
        h_job.push(job.to_owned());
        h_version.push(version);
        h_type.push(env.event_type.clone());
        h_status.push(status);
        h_actor_kind.push(env.actor.kind.as_str());
        h_actor_id.push(env.actor.id.clone());
        h_detail.push(env.data.clone());
        h_at.push(at);
        h_position.push(position);
    }

    let (inserts, updates): (Vec<JobRow>, Vec<JobRow>) =
        rows.into_iter().partition(|r| r.submitted.is_some());
    if !updates.is_empty() {
        let mut cols = UpdateColumns::default();
        for r in updates {
            cols.push(r);
        }
        out.push(Stmt {
            sql: UPDATE_JOBS,
            params: vec![
                boxed(cols.job_id),
                boxed(cols.status),
                boxed(cols.updated_at),
                boxed(cols.version),
                boxed(cols.position),
                boxed(cols.set_result),
                boxed(cols.result),
                boxed(cols.set_error),
                boxed(cols.error),
                boxed(cols.set_cancel),
                boxed(cols.cancel_reason),
            ],
        });
    }
    if !inserts.is_empty() {
        let mut cols = InsertColumns::default();
        for r in inserts {
            cols.push(r);
        }
        out.push(Stmt {
            sql: INSERT_JOBS,
            params: vec![
                boxed(cols.job_id),
                boxed(cols.agent_id),
                boxed(cols.kind),
                boxed(cols.status),
                boxed(cols.input),
                boxed(cols.result),
                boxed(cols.error),
                boxed(cols.cancel_reason),
                boxed(cols.submitted_at),
                boxed(cols.updated_at),
                boxed(cols.version),
                boxed(cols.seq),
                boxed(cols.position),
            ],
        });
    }
    if !h_job.is_empty() {
        out.push(Stmt {
            sql: INSERT_HISTORY,
            params: vec![
                boxed(h_job),
                boxed(h_version),
                boxed(h_type),
                boxed(h_status),
                boxed(h_actor_kind),
                boxed(h_actor_id),
                boxed(h_detail),
                boxed(h_at),
                boxed(h_position),
            ],
        });
    }
}

#[derive(Default)]
struct UpdateColumns {
    job_id: Vec<String>,
    status: Vec<&'static str>,
    updated_at: Vec<Time>,
    version: Vec<i64>,
    position: Vec<i64>,
    set_result: Vec<bool>,
    result: Vec<Option<Value>>,
    set_error: Vec<bool>,
    error: Vec<Option<String>>,
    set_cancel: Vec<bool>,
    cancel_reason: Vec<Option<String>>,
}

impl UpdateColumns {
    fn push(&mut self, r: JobRow) {
        self.job_id.push(r.job_id);
        self.status.push(r.status);
        self.updated_at.push(r.updated_at);
        self.version.push(r.version);
        self.position.push(r.position);
        self.set_result.push(r.result.is_some());
        self.result.push(r.result.flatten());
        self.set_error.push(r.error.is_some());
        self.error.push(r.error.flatten());
        self.set_cancel.push(r.cancel_reason.is_some());
        self.cancel_reason.push(r.cancel_reason.flatten());
    }
}

#[derive(Default)]
struct InsertColumns {
    job_id: Vec<String>,
    agent_id: Vec<String>,
    kind: Vec<String>,
    status: Vec<&'static str>,
    input: Vec<Value>,
    result: Vec<Option<Value>>,
    error: Vec<Option<String>>,
    cancel_reason: Vec<Option<String>>,
    submitted_at: Vec<Time>,
    updated_at: Vec<Time>,
    version: Vec<i64>,
    seq: Vec<i64>,
    position: Vec<i64>,
}

impl InsertColumns {
    fn push(&mut self, r: JobRow) {
        let s = r.submitted.expect("only submitted rows are inserted");
        self.job_id.push(r.job_id);
        self.agent_id.push(s.agent_id);
        self.kind.push(s.kind);
        self.status.push(r.status);
        self.input.push(s.input);
        self.result.push(r.result.flatten());
        self.error.push(r.error.flatten());
        self.cancel_reason.push(r.cancel_reason.flatten());
        self.submitted_at.push(s.at);
        self.updated_at.push(r.updated_at);
        self.version.push(r.version);
        self.seq.push(s.seq);
        self.position.push(r.position);
    }
}
