//! Approval queries: approvals by status, and one approval.

use chronicle_commands::permissions::Read;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio_postgres::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::{answer, one, page_of, prepare, query};
use crate::http::routes::query;
use crate::http::schema::{AggregateId, Limit};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(approvals))
        .routes(routes!(approval))
}

const APPROVAL_COLUMNS: &str = "approval_id, action, payload, reason, status, requested_by, requested_at, decided_by, decided_at, decision_reason, agent_id, escalated_command_id, seq";

fn approval_json(r: &Row) -> Value {
    json!({
        "approval_id": r.get::<_, String>("approval_id"),
        "action": r.get::<_, String>("action"),
        "payload": r.get::<_, Value>("payload"),
        "reason": r.get::<_, String>("reason"),
        "status": r.get::<_, String>("status"),
        "requested_by": r.get::<_, String>("requested_by"),
        "requested_at": r.get::<_, DateTime<Utc>>("requested_at"),
        "decided_by": r.get::<_, Option<String>>("decided_by"),
        "decided_at": r.get::<_, Option<DateTime<Utc>>>("decided_at"),
        "decision_reason": r.get::<_, Option<String>>("decision_reason"),
        "agent_id": r.get::<_, Option<String>>("agent_id"),
        "escalated_command_id": r.get::<_, Option<Uuid>>("escalated_command_id"),
    })
}

query! {
    approvals: GET "/v1/queries/approvals", "Approvals" => Page,
    query: ["status": chronicle_events::domain::approval::ApprovalStatus, "limit": Limit, "after": String],
    |s, caller, headers, f| {
        let status = f.one_of("status", &["PENDING", "APPROVED", "REJECTED"])?;
        let page = f.page()?;
        let position = prepare(&s, &caller, &headers, Read::Approvals, &["approvals"]).await?;
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM read.approvals WHERE seq > $1 AND ($2::text IS NULL OR status = $2)
             ORDER BY seq LIMIT $3"
        );
        let rows = query(&s, &sql, &[&page.after, &status, &(page.limit + 1)]).await?;
        Ok(answer(position, page_of(rows, &page, approval_json)))
    }
}

query! {
    approval: GET "/v1/queries/approvals/{id}", "One approval" => Document,
    path: ["id" => id: AggregateId],
    query: [],
    |s, caller, headers, f| {
        let position = prepare(&s, &caller, &headers, Read::Approvals, &["approvals"]).await?;
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM read.approvals WHERE approval_id = $1");
        let rows = query(&s, &sql, &[&id]).await?;
        Ok(answer(position, one(rows, "approval", approval_json)?))
    }
}
