//! The query routes (`GET /v1/queries/...`, `POST /v1/introspect`): answers from the
//! Postgres read models, never from the log, one file per resource, each route declared
//! once with `query!` (see `http::routes`). Lists take `limit` and an opaque `after`
//! cursor and answer `{"items": [...], "next": cursor|null}`; parameters are validated
//! (`filters`). Every answer carries `X-Chronicle-Position` (the checkpoint of the read
//! models it read); `X-Chronicle-Min-Position: <n>` waits up to 5 s for them to reach `n`
//! (`504 PROJECTION_LAGGING` otherwise). With Postgres away: `503 READ_STORE_UNAVAILABLE`.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use chronicle_commands::permissions::Read;
use serde_json::{Value, json};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::Caller;
use crate::error::{ApiError, Code};
use crate::state::AppState;

mod agents;
mod approvals;
pub mod filters;
mod invoices;
mod jobs;
mod ledger;
mod tokens;

use filters::{Page, encode_cursor};

const MIN_POSITION_WAIT: Duration = Duration::from_secs(5);

/// Every query route.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(tokens::routes())
        .merge(jobs::routes())
        .merge(approvals::routes())
        .merge(ledger::routes())
        .merge(invoices::routes())
        .merge(agents::routes())
}

/// Checks that the caller may read `what`, waits for `X-Chronicle-Min-Position` if asked,
/// and answers the position the read models of `projections` stand at.
pub(crate) async fn prepare(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    what: Read,
    projections: &[&str],
) -> Result<u64, ApiError> {
    caller.may_read(what)?;
    let Some(min) = headers.get("x-chronicle-min-position") else {
        return Ok(state.positions.position_of(projections));
    };
    let min: u64 = min
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::bad_param(
                "X-Chronicle-Min-Position",
                "X-Chronicle-Min-Position must be a log position",
            )
        })?;
    // A position past the log's end names no write that has happened: nothing to wait for.
    if min > state.positions.position_of(projections) {
        use chronicle_events::EventLog;
        if let Ok(end) = state.log.last_position().await
            && min > end
        {
            return Err(ApiError::bad_param(
                "X-Chronicle-Min-Position",
                format!("position {min} is past the log's end ({end})"),
            ));
        }
    }
    match state
        .positions
        .wait_for(projections, min, MIN_POSITION_WAIT)
        .await
    {
        Some(p) => Ok(p),
        None => Err(ApiError::new(
            Code::ProjectionLagging,
            format!("the read models did not reach position {min} within 5 s"),
        )),
    }
}

/// A JSON answer with the position its read models stand at.
pub(crate) fn answer(position: u64, body: Value) -> Response {
    let mut r = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&position.to_string()) {
        r.headers_mut().insert("x-chronicle-position", v);
    }
    r
}

pub(crate) async fn query(
    state: &AppState,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, ApiError> {
    let client = state.db.get().await.map_err(ApiError::read_store)?;
    let stmt = client
        .prepare_cached(sql)
        .await
        .map_err(ApiError::read_store)?;
    client
        .query(&stmt, params)
        .await
        .map_err(ApiError::read_store)
}

/// A page of rows whose `seq` column the cursor follows.
pub(crate) fn page_of(rows: Vec<Row>, page: &Page, item: impl Fn(&Row) -> Value) -> Value {
    let more = rows.len() as i64 > page.limit;
    let rows = &rows[..rows.len().min(page.limit as usize)];
    let next = if more {
        rows.last().map(|r| encode_cursor(r.get::<_, i64>("seq")))
    } else {
        None
    };
    json!({ "items": rows.iter().map(item).collect::<Vec<_>>(), "next": next })
}

/// The one row asked for, or `404` naming `what`.
pub(crate) fn one(
    rows: Vec<Row>,
    what: &str,
    item: impl Fn(&Row) -> Value,
) -> Result<Value, ApiError> {
    rows.first()
        .map(item)
        .ok_or_else(|| ApiError::not_found(format!("no such {what}")))
}
