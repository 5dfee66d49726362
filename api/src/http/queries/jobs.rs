//! Job queries: jobs by status, agent and kind, one job, and its status history.

use chronicle_commands::permissions::Read;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{answer, one, page_of, prepare, query};
use crate::error::ApiError;
use crate::http::routes::query;
use crate::http::schema::{AggregateId, Limit};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(jobs))
        .routes(routes!(job))
        .routes(routes!(job_history))
}

const JOB_COLUMNS: &str = "job_id, agent_id, kind, status, input, result, error, cancel_reason, submitted_at, updated_at, version, seq";
const STATUSES: &[&str] = &["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"];

fn job_json(r: &Row) -> Value {
    json!({
        "job_id": r.get::<_, String>("job_id"),
        "agent_id": r.get::<_, String>("agent_id"),
        "kind": r.get::<_, String>("kind"),
        "status": r.get::<_, String>("status"),
        "input": r.get::<_, Value>("input"),
        "result": r.get::<_, Option<Value>>("result"),
        "error": r.get::<_, Option<String>>("error"),
        "cancel_reason": r.get::<_, Option<String>>("cancel_reason"),
        "submitted_at": r.get::<_, DateTime<Utc>>("submitted_at"),
        "updated_at": r.get::<_, DateTime<Utc>>("updated_at"),
        "version": r.get::<_, i64>("version"),
    })
}

query! {
    jobs: GET "/v1/queries/jobs", "Jobs" => Page,
    query: ["status": chronicle_events::domain::job::JobStatus, "agent_id": AggregateId, "kind": String, "limit": Limit, "after": String],
    |s, caller, headers, f| {
        let status = f.one_of("status", STATUSES)?;
        let (agent, kind) = (f.text("agent_id"), f.text("kind"));
        let page = f.page()?;
        let position = prepare(&s, &caller, &headers, Read::Jobs, &["jobs"]).await?;
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM read.jobs WHERE seq > $1
               AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR agent_id = $3)
               AND ($4::text IS NULL OR kind = $4)
             ORDER BY seq LIMIT $5"
        );
        let rows = query(
            &s,
            &sql,
            &[&page.after, &status, &agent, &kind, &(page.limit + 1)],
        )
        .await?;
        Ok(answer(position, page_of(rows, &page, job_json)))
    }
}

query! {
    job: GET "/v1/queries/jobs/{id}", "One job" => Document,
    path: ["id" => id: AggregateId],
    query: [],
    |s, caller, headers, f| {
        let position = prepare(&s, &caller, &headers, Read::Jobs, &["jobs"]).await?;
        let sql = format!("SELECT {JOB_COLUMNS} FROM read.jobs WHERE job_id = $1");
        let rows = query(&s, &sql, &[&id]).await?;
        Ok(answer(position, one(rows, "job", job_json)?))
    }
}

query! {
    job_history: GET "/v1/queries/jobs/{id}/history", "A job's status history" => Page,
    path: ["id" => id: AggregateId],
    query: ["limit": Limit, "after": String],
    |s, caller, headers, f| {
        let page = f.page()?;
        let position = prepare(&s, &caller, &headers, Read::Jobs, &["jobs"]).await?;
        let exists = query(&s, "SELECT 1 FROM read.jobs WHERE job_id = $1", &[&id]).await?;
        if exists.is_empty() {
            return Err(ApiError::not_found("no such job"));
        }
        let rows = query(
            &s,
            "SELECT version AS seq, event_type, status, actor_kind, actor_id, detail, occurred_at, position
             FROM read.job_history WHERE job_id = $1 AND version > $2 ORDER BY version LIMIT $3",
            &[&id, &page.after, &(page.limit + 1)],
        )
        .await?;
        Ok(answer(
            position,
            page_of(rows, &page, |r| {
                json!({
                    "version": r.get::<_, i64>("seq"),
                    "type": r.get::<_, String>("event_type"),
                    "status": r.get::<_, String>("status"),
                    "actor": {"kind": r.get::<_, String>("actor_kind"), "id": r.get::<_, String>("actor_id")},
                    "data": r.get::<_, Option<Value>>("detail"),
                    "occurred_at": r.get::<_, DateTime<Utc>>("occurred_at"),
                    "position": r.get::<_, i64>("position"),
                })
            }),
        ))
    }
}
