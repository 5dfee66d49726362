//! Agent and governance queries: agents, one agent, governance decisions, and where each
//! projection stands.

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
        .routes(routes!(agents))
        .routes(routes!(agent))
        .routes(routes!(decisions))
        .routes(routes!(projections))
}

fn agent_json(r: &Row) -> Value {
    json!({
        "agent_id": r.get::<_, String>("agent_id"),
        "name": r.get::<_, String>("name"),
        "maturity": r.get::<_, String>("maturity"),
        "registered_at": r.get::<_, DateTime<Utc>>("registered_at"),
        "updated_at": r.get::<_, DateTime<Utc>>("updated_at"),
    })
}

query! {
    agents: GET "/v1/queries/agents", "Agents" => Page,
    query: ["limit": Limit, "after": String],
    |s, caller, headers, f| {
        let page = f.page()?;
        let position = prepare(&s, &caller, &headers, Read::Agents, &["agents"]).await?;
        let rows = query(
            &s,
            "SELECT agent_id, name, maturity, registered_at, updated_at, seq FROM read.agents WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&page.after, &(page.limit + 1)],
        )
        .await?;
        Ok(answer(position, page_of(rows, &page, agent_json)))
    }
}

query! {
    agent: GET "/v1/queries/agents/{id}", "One agent" => Document,
    path: ["id" => id: AggregateId],
    query: [],
    |s, caller, headers, f| {
        let position = prepare(&s, &caller, &headers, Read::Agents, &["agents"]).await?;
        let rows = query(
            &s,
            "SELECT agent_id, name, maturity, registered_at, updated_at, seq FROM read.agents WHERE agent_id = $1",
            &[&id],
        )
        .await?;
        Ok(answer(position, one(rows, "agent", agent_json)?))
    }
}

query! {
    decisions: GET "/v1/queries/governance/decisions", "Governance decisions" => Page,
    query: ["agent_id": AggregateId, "outcome": chronicle_events::domain::agent::Outcome, "from": chrono::DateTime<chrono::Utc>, "to": chrono::DateTime<chrono::Utc>, "limit": Limit, "after": String],
    |s, caller, headers, f| {
        let agent = f.text("agent_id");
        let outcome = f.one_of("outcome", &["ALLOWED", "DENIED", "ESCALATED", "BYPASSED"])?;
        let (from, to) = (f.time("from")?, f.time("to")?);
        let page = f.page()?;
        let position = prepare(&s, &caller, &headers, Read::Agents, &["agents"]).await?;
        let rows = query(
            &s,
            "SELECT position AS seq, agent_id, action, complexity, maturity, outcome, reason, command_id, approval_id, occurred_at
             FROM read.governance_decisions WHERE position > $1
               AND ($2::text IS NULL OR agent_id = $2) AND ($3::text IS NULL OR outcome = $3)
               AND ($4::timestamptz IS NULL OR occurred_at >= $4) AND ($5::timestamptz IS NULL OR occurred_at <= $5)
             ORDER BY position LIMIT $6",
            &[&page.after, &agent, &outcome, &from, &to, &(page.limit + 1)],
        )
        .await?;
        Ok(answer(
            position,
            page_of(rows, &page, |r| {
                json!({
                    "position": r.get::<_, i64>("seq"),
                    "agent_id": r.get::<_, String>("agent_id"),
                    "action": r.get::<_, String>("action"),
                    "complexity": r.get::<_, String>("complexity"),
                    "maturity": r.get::<_, String>("maturity"),
                    "outcome": r.get::<_, String>("outcome"),
                    "reason": r.get::<_, String>("reason"),
                    "command_id": r.get::<_, Uuid>("command_id"),
                    "approval_id": r.get::<_, Option<String>>("approval_id"),
                    "occurred_at": r.get::<_, DateTime<Utc>>("occurred_at"),
                })
            }),
        ))
    }
}

query! {
    /// Each projection's position, lag behind the log, and state.
    projections: GET "/v1/queries/projections", "Each projection's position, lag and state" => Document,
    query: [],
    |s, caller, headers, f| {
        use chronicle_events::EventLog;
        let names = chronicle_projections::models::NAMES;
        let position = prepare(&s, &caller, &headers, Read::Projections, &names).await?;
        let rows = query(
            &s,
            "SELECT name, position, state, error, error_position, updated_at FROM read.projection_checkpoints",
            &[],
        )
        .await?;
        let head = s.log.last_position().await.ok();
        let items: Vec<Value> = names
            .iter()
            .map(|name| {
                let row = rows.iter().find(|r| r.get::<_, String>("name") == *name);
                let pos = row.map(|r| r.get::<_, i64>("position") as u64).unwrap_or(0);
                json!({
                    "name": name,
                    "position": pos,
                    "lag": head.map(|h| h.saturating_sub(pos)),
                    "state": row.map(|r| r.get::<_, String>("state")).unwrap_or_else(|| "starting".into()),
                    "error": row.and_then(|r| r.get::<_, Option<String>>("error")),
                    "error_position": row.and_then(|r| r.get::<_, Option<i64>>("error_position")),
                    "updated_at": row.map(|r| r.get::<_, DateTime<Utc>>("updated_at")),
                })
            })
            .collect();
        Ok(answer(position, json!({ "items": items, "log_position": head })))
    }
}
