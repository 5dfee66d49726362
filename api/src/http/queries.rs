//! The query routes (`GET /v1/queries/...`, `POST /v1/introspect`): answers from the
//! Postgres read models, never from the log. Lists take `limit` (1–1000, default 100) and
//! an opaque `after` cursor and answer `{"items": [...], "next": cursor|null}`; filters are
//! validated (an unknown status is `400`, not an empty list); unknown parameters are
//! refused. Every answer carries `X-Chronicle-Position` (the checkpoint of the read models
//! it read); `X-Chronicle-Min-Position: <n>` waits up to 5 s for them to reach `n`
//! (`504 PROJECTION_LAGGING` otherwise). With Postgres away: `503 READ_STORE_UNAVAILABLE`.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Code};
use crate::state::AppState;

const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: i64 = 100;
const MIN_POSITION_WAIT: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/queries/users/{user_id}/tokens", get(user_tokens))
        .route("/v1/queries/tokens/{jti}", get(token))
        .route("/v1/introspect", post(introspect))
        .route("/v1/queries/jobs", get(jobs))
        .route("/v1/queries/jobs/{id}", get(job))
        .route("/v1/queries/jobs/{id}/history", get(job_history))
        .route("/v1/queries/approvals", get(approvals))
        .route("/v1/queries/approvals/{id}", get(approval))
        .route("/v1/queries/accounts", get(accounts))
        .route("/v1/queries/accounts/{code}", get(account))
        .route("/v1/queries/journal-entries", get(journal_entries))
        .route("/v1/queries/journal-entries/{id}", get(journal_entry))
        .route("/v1/queries/trial-balance", get(trial_balance))
        .route("/v1/queries/agents", get(agents))
        .route("/v1/queries/agents/{id}", get(agent))
        .route("/v1/queries/governance/decisions", get(decisions))
        .route("/v1/queries/projections", get(projections))
}

type Params = Query<HashMap<String, String>>;
type Res = Result<Response, ApiError>;

fn read_store_down(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "read store error");
    ApiError::new(
        Code::ReadStoreUnavailable,
        "the read store cannot be reached; retry shortly",
    )
}

pub(crate) fn bad(field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::new(Code::MalformedRequest, message.clone()).with_field(field, message)
}

/// The query's parameters, checked against what the route takes.
pub(crate) struct Filters<'a> {
    params: &'a HashMap<String, String>,
}

impl<'a> Filters<'a> {
    pub(crate) fn new(
        params: &'a HashMap<String, String>,
        allowed: &[&str],
    ) -> Result<Self, ApiError> {
        if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(
                unknown,
                format!(
                    "unknown parameter `{}`; this route takes {}",
                    unknown.chars().take(64).collect::<String>(),
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
        Ok(Filters { params })
    }

    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.params.get(name).filter(|v| !v.is_empty()).cloned()
    }

    fn one_of(&self, name: &str, values: &[&str]) -> Result<Option<String>, ApiError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) if values.contains(&v.as_str()) => Ok(Some(v)),
            Some(_) => Err(bad(
                name,
                format!("{name} must be one of {}", values.join(", ")),
            )),
        }
    }

    fn date(&self, name: &str) -> Result<Option<NaiveDate>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse::<NaiveDate>()
                    .map_err(|_| bad(name, format!("{name} must be a date, YYYY-MM-DD")))
            })
            .transpose()
    }

    pub(crate) fn position(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad(name, format!("{name} must be a log position")))
            })
            .transpose()
    }

    pub(crate) fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.text(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| bad(name, format!("{name} must be an RFC 3339 time")))
            })
            .transpose()
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.text(name).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(bad(name, format!("{name} must be true or false"))),
        }
    }

    fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.text("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| bad("limit", format!("limit must be 1 to {MAX_LIMIT}")))?,
        };
        let after = match self.text("after") {
            None => 0,
            Some(c) => decode_cursor(&c)
                .ok_or_else(|| bad("after", "after is not a cursor from this API"))?,
        };
        Ok(Page { limit, after })
    }
}

struct Page {
    limit: i64,
    after: i64,
}

fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("c1:{seq}"))
}

fn decode_cursor(c: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(c).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("c1:")?
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
}

/// Checks the role, waits for `X-Chronicle-Min-Position` if asked, and answers the
/// position the read models stand at.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    projections: &[&str],
) -> Result<u64, ApiError> {
    use chronicle_commands::permissions::Read;
    let what = match projections {
        ["tokens"] => Read::Tokens,
        ["jobs"] => Read::Jobs,
        ["approvals"] => Read::Approvals,
        ["ledger"] => Read::Ledger,
        ["agents"] => Read::Agents,
        _ => Read::Projections,
    };
    caller.may_read(what)?;
    let Some(min) = headers.get("x-chronicle-min-position") else {
        return Ok(state.positions.position_of(projections));
    };
    let min: u64 = min
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            bad(
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
            return Err(bad(
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

fn answer(position: u64, body: Value) -> Response {
    let mut r = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&position.to_string()) {
        r.headers_mut().insert("x-chronicle-position", v);
    }
    r
}

async fn query(
    state: &AppState,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, ApiError> {
    let client = state.db.get().await.map_err(read_store_down)?;
    let stmt = client.prepare_cached(sql).await.map_err(read_store_down)?;
    client.query(&stmt, params).await.map_err(read_store_down)
}

/// A page of rows whose last column is the `seq` the cursor follows.
fn page_of(rows: Vec<Row>, page: &Page, item: impl Fn(&Row) -> Value) -> Value {
    let more = rows.len() as i64 > page.limit;
    let rows = &rows[..rows.len().min(page.limit as usize)];
    let next = if more {
        rows.last().map(|r| encode_cursor(r.get::<_, i64>("seq")))
    } else {
        None
    };
    json!({ "items": rows.iter().map(item).collect::<Vec<_>>(), "next": next })
}

fn one(rows: Vec<Row>, what: &str, item: impl Fn(&Row) -> Value) -> Result<Value, ApiError> {
    rows.first()
        .map(item)
        .ok_or_else(|| ApiError::not_found(format!("no such {what}")))
}

// ---- tokens -------------------------------------------------------------------------

const TOKEN_COLUMNS: &str =
    "jti, user_id, role, scopes, issued_at, expires_at, revoked_at, revoke_reason, seq";

fn token_json(r: &Row) -> Value {
    let revoked_at: Option<DateTime<Utc>> = r.get("revoked_at");
    let expires_at: DateTime<Utc> = r.get("expires_at");
    json!({
        "jti": r.get::<_, Uuid>("jti"),
        "user_id": r.get::<_, String>("user_id"),
        "role": r.get::<_, String>("role"),
        "scopes": r.get::<_, Vec<String>>("scopes"),
        "issued_at": r.get::<_, DateTime<Utc>>("issued_at"),
        "expires_at": expires_at,
        "revoked_at": revoked_at,
        "revoke_reason": r.get::<_, Option<String>>("revoke_reason"),
        "active": revoked_at.is_none() && expires_at > Utc::now(),
    })
}

#[utoipa::path(
    get,
    path = "/v1/queries/users/{user_id}/tokens",
    tag = "queries",
    summary = "A user's tokens",
    params(
        ("user_id" = String, Path),
        ("active" = Option<String>, Query),
        ("limit" = Option<String>, Query),
        ("after" = Option<String>, Query),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Page),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn user_tokens(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    Query(q): Params,
) -> Res {
    let f = Filters::new(&q, &["active", "limit", "after"])?;
    let active = f.boolean("active")?;
    let page = f.page()?;
    let position = prepare(&s, &caller, &headers, &["tokens"]).await?;
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM read.tokens WHERE user_id = $1 AND seq > $2
           AND ($3::bool IS NULL OR $3 = (revoked_at IS NULL AND expires_at > now()))
         ORDER BY seq LIMIT $4"
    );
    let rows = query(
        &s,
        &sql,
        &[&user_id, &page.after, &active, &(page.limit + 1)],
    )
    .await?;
    Ok(answer(position, page_of(rows, &page, token_json)))
}

#[utoipa::path(
    get,
    path = "/v1/queries/tokens/{jti}",
    tag = "queries",
    summary = "One token",
    params(
        ("jti" = String, Path),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Document),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn token(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(jti): Path<String>,
    Query(q): Params,
) -> Res {
    Filters::new(&q, &[])?;
    let position = prepare(&s, &caller, &headers, &["tokens"]).await?;
    let jti: Uuid = jti
        .parse()
        .map_err(|_| ApiError::not_found("no such token"))?;
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM read.tokens WHERE jti = $1");
    let rows = query(&s, &sql, &[&jti]).await?;
    Ok(answer(position, one(rows, "token", token_json)?))
}

/// RFC 7662: `token=...` as a form; an invalid, expired or revoked token is
/// `{"active": false}`. Answered from the token itself and the revoked set.
#[utoipa::path(
    post,
    path = "/v1/introspect",
    tag = "queries",
    summary = "RFC 7662 token introspection",
    request_body(content = super::openapi::IntrospectForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "OK", body = super::openapi::Document),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn introspect(
    State(s): State<AppState>,
    caller: Caller,
    axum::Form(fields): axum::Form<HashMap<String, String>>,
) -> Res {
    caller.may_read(chronicle_commands::permissions::Read::Tokens)?;
    let token = fields
        .get("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("token", "token is required"))?;
    let position = s.positions.position_of(&["tokens"]);
    let body = match s.signer.verify(token) {
        Ok(c) if !s.revocations.is_revoked(&c.jti) => json!({
            "active": true,
            "sub": c.sub,
            "scope": c.scope,
            "exp": c.exp,
            "iat": c.iat,
            "jti": c.jti,
            "role": c.role,
            "token_type": "Bearer",
        }),
        _ => json!({ "active": false }),
    };
    Ok(answer(position, body))
}

// ---- jobs ---------------------------------------------------------------------------

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

#[utoipa::path(
    get,
    path = "/v1/queries/jobs",
    tag = "queries",
    summary = "Jobs",
    params(
        ("status" = Option<String>, Query),
        ("agent_id" = Option<String>, Query),
        ("kind" = Option<String>, Query),
        ("limit" = Option<String>, Query),
        ("after" = Option<String>, Query),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Page),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn jobs(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Params,
) -> Res {
    let f = Filters::new(&q, &["status", "agent_id", "kind", "limit", "after"])?;
    let status = f.one_of("status", STATUSES)?;
    let (agent, kind) = (f.text("agent_id"), f.text("kind"));
    let page = f.page()?;
    let position = prepare(&s, &caller, &headers, &["jobs"]).await?;
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

#[utoipa::path(
    get,
    path = "/v1/queries/jobs/{id}",
    tag = "queries",
    summary = "One job",
    params(
        ("id" = String, Path),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Document),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn job(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Res {
    Filters::new(&q, &[])?;
    let position = prepare(&s, &caller, &headers, &["jobs"]).await?;
    let sql = format!("SELECT {JOB_COLUMNS} FROM read.jobs WHERE job_id = $1");
    let rows = query(&s, &sql, &[&id]).await?;
    Ok(answer(position, one(rows, "job", job_json)?))
}

#[utoipa::path(
    get,
    path = "/v1/queries/jobs/{id}/history",
    tag = "queries",
    summary = "A job's status history",
    params(
        ("id" = String, Path),
        ("limit" = Option<String>, Query),
        ("after" = Option<String>, Query),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Page),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn job_history(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Res {
    let f = Filters::new(&q, &["limit", "after"])?;
    let page = f.page()?;
    let position = prepare(&s, &caller, &headers, &["jobs"]).await?;
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

// ---- approvals ----------------------------------------------------------------------

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

#[utoipa::path(
    get,
    path = "/v1/queries/approvals",
    tag = "queries",
    summary = "Approvals",
    params(
        ("status" = Option<String>, Query),
        ("limit" = Option<String>, Query),
        ("after" = Option<String>, Query),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Page),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn approvals(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Params,
) -> Res {
    let f = Filters::new(&q, &["status", "limit", "after"])?;
    let status = f.one_of("status", &["PENDING", "APPROVED", "REJECTED"])?;
    let page = f.page()?;
    let position = prepare(&s, &caller, &headers, &["approvals"]).await?;
    let sql = format!(
        "SELECT {APPROVAL_COLUMNS} FROM read.approvals WHERE seq > $1 AND ($2::text IS NULL OR status = $2)
         ORDER BY seq LIMIT $3"
    );
    let rows = query(&s, &sql, &[&page.after, &status, &(page.limit + 1)]).await?;
    Ok(answer(position, page_of(rows, &page, approval_json)))
}

#[utoipa::path(
    get,
    path = "/v1/queries/approvals/{id}",
    tag = "queries",
    summary = "One approval",
    params(
        ("id" = String, Path),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Document),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn approval(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Res {
    Filters::new(&q, &[])?;
    let position = prepare(&s, &caller, &headers, &["approvals"]).await?;
    let sql = format!("SELECT {APPROVAL_COLUMNS} FROM read.approvals WHERE approval_id = $1");
    let rows = query(&s, &sql, &[&id]).await?;
    Ok(answer(position, one(rows, "approval", approval_json)?))
}

// ---- ledger -------------------------------------------------------------------------

const ACCOUNT_COLUMNS: &str = "code, name, type, currency, status, debits::text AS debits, credits::text AS credits, (debits - credits)::text AS balance, opened_at, closed_at, seq";

/// Sums are strings: they are exact integers that may exceed what JSON numbers carry
/// safely.
fn account_json(r: &Row) -> Value {
    json!({
        "code": r.get::<_, String>("code"),
        "name": r.get::<_, String>("name"),
        "type": r.get::<_, String>("type"),
        "currency": r.get::<_, String>("currency"),
        "status": r.get::<_, String>("status"),
        "debits": r.get::<_, String>("debits"),
        "credits": r.get::<_, String>("credits"),
        "balance": r.get::<_, String>("balance"),
        "opened_at": r.get::<_, DateTime<Utc>>("opened_at"),
        "closed_at": r.get::<_, Option<DateTime<Utc>>>("closed_at"),
    })
}

#[utoipa::path(
    get,
    path = "/v1/queries/accounts",
    tag = "queries",
    summary = "Accounts with balances",
    params(
        ("limit" = Option<String>, Query),
        ("after" = Option<String>, Query),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Page),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn accounts(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Params,
) -> Res {
    let f = Filters::new(&q, &["limit", "after"])?;
    let page = f.page()?;
    let position = prepare(&s, &caller, &headers, &["ledger"]).await?;
    let sql =
        format!("SELECT {ACCOUNT_COLUMNS} FROM read.accounts WHERE seq > $1 ORDER BY seq LIMIT $2");
    let rows = query(&s, &sql, &[&page.after, &(page.limit + 1)]).await?;
    Ok(answer(position, page_of(rows, &page, account_json)))
}

#[utoipa::path(
    get,
    path = "/v1/queries/accounts/{code}",
    tag = "queries",
    summary = "One account with its balance",
    params(
        ("code" = String, Path),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Document),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn account(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(code): Path<String>,
    Query(q): Params,
) -> Res {
    Filters::new(&q, &[])?;
    let position = prepare(&s, &caller, &headers, &["ledger"]).await?;
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM read.accounts WHERE code = $1");
    let rows = query(&s, &sql, &[&code]).await?;
    Ok(answer(position, one(rows, "account", account_json)?))
}

fn line_json(r: &Row) -> Value {
    json!({
        "line": r.get::<_, i32>("line_no"),
        "account": r.get::<_, String>("account"),
        "debit": r.get::<_, Option<i64>>("debit"),
        "credit": r.get::<_, Option<i64>>("credit"),
        "currency": r.get::<_, String>("currency"),
    })
}

async fn entries_with_lines(
    s: &AppState,
    rows: &[Row],
) -> Result<HashMap<String, Vec<Value>>, ApiError> {
    let ids: Vec<String> = rows.iter().map(|r| r.get("entry_id")).collect();
    let lines = query(
        s,
        "SELECT entry_id, line_no, account, debit, credit, currency FROM read.journal_lines
         WHERE entry_id = ANY($1) ORDER BY entry_id, line_no",
        &[&ids],
    )
    .await?;
    let mut by_entry: HashMap<String, Vec<Value>> = HashMap::new();
    for l in &lines {
        by_entry
            .entry(l.get("entry_id"))
            .or_default()
            .push(line_json(l));
    }
    Ok(by_entry)
}

const ENTRY_COLUMNS: &str = "entry_id, effective_date, memo, reverses, reversed_by, reverse_reason, posted_by, posted_at, seq";

fn entry_json(r: &Row, lines: &HashMap<String, Vec<Value>>) -> Value {
    let id: String = r.get("entry_id");
    json!({
        "entry_id": id,
        "effective_date": r.get::<_, NaiveDate>("effective_date"),
        "memo": r.get::<_, String>("memo"),
        "reverses": r.get::<_, Option<String>>("reverses"),
        "reversed_by": r.get::<_, Option<String>>("reversed_by"),
        "reverse_reason": r.get::<_, Option<String>>("reverse_reason"),
        "posted_by": r.get::<_, String>("posted_by"),
        "posted_at": r.get::<_, DateTime<Utc>>("posted_at"),
        "lines": lines.get(&id).cloned().unwrap_or_default(),
    })
}

#[utoipa::path(
    get,
    path = "/v1/queries/journal-entries",
    tag = "queries",
    summary = "Journal entries with lines",
    params(
        ("account" = Option<String>, Query),
        ("from" = Option<String>, Query),
        ("to" = Option<String>, Query),
        ("limit" = Option<String>, Query),
        ("after" = Option<String>, Query),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Page),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn journal_entries(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Params,
) -> Res {
    let f = Filters::new(&q, &["account", "from", "to", "limit", "after"])?;
    let account = f.text("account");
    let (from, to) = (f.date("from")?, f.date("to")?);
    let page = f.page()?;
    let position = prepare(&s, &caller, &headers, &["ledger"]).await?;
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM read.journal_entries e WHERE seq > $1
           AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM read.journal_lines l WHERE l.entry_id = e.entry_id AND l.account = $2))
           AND ($3::date IS NULL OR effective_date >= $3) AND ($4::date IS NULL OR effective_date <= $4)
         ORDER BY seq LIMIT $5"
    );
    let rows = query(
        &s,
        &sql,
        &[&page.after, &account, &from, &to, &(page.limit + 1)],
    )
    .await?;
    let lines = entries_with_lines(&s, &rows).await?;
    Ok(answer(
        position,
        page_of(rows, &page, |r| entry_json(r, &lines)),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/queries/journal-entries/{id}",
    tag = "queries",
    summary = "One journal entry",
    params(
        ("id" = String, Path),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Document),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn journal_entry(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Res {
    Filters::new(&q, &[])?;
    let position = prepare(&s, &caller, &headers, &["ledger"]).await?;
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM read.journal_entries WHERE entry_id = $1");
    let rows = query(&s, &sql, &[&id]).await?;
    let lines = entries_with_lines(&s, &rows).await?;
    Ok(answer(
        position,
        one(rows, "journal entry", |r| entry_json(r, &lines))?,
    ))
}

/// Per account and currency, the sums of lines effective on or before `as_of` (today by
/// default), and per currency the totals, whose debits always equal their credits.
#[utoipa::path(
    get,
    path = "/v1/queries/trial-balance",
    tag = "queries",
    summary = "Trial balance per account and currency",
    params(
        ("as_of" = Option<String>, Query),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Document),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn trial_balance(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Params,
) -> Res {
    let f = Filters::new(&q, &["as_of"])?;
    let as_of = f.date("as_of")?.unwrap_or_else(|| Utc::now().date_naive());
    let position = prepare(&s, &caller, &headers, &["ledger"]).await?;
    let rows = query(
        &s,
        "SELECT l.account, a.name, a.type, l.currency,
                COALESCE(sum(l.debit), 0)::text AS debits, COALESCE(sum(l.credit), 0)::text AS credits,
                (COALESCE(sum(l.debit), 0) - COALESCE(sum(l.credit), 0))::text AS balance
         FROM read.journal_lines l JOIN read.accounts a ON a.code = l.account
         WHERE l.effective_date <= $1
         GROUP BY l.account, a.name, a.type, l.currency ORDER BY l.currency, l.account",
        &[&as_of],
    )
    .await?;
    let totals = query(
        &s,
        "SELECT currency, COALESCE(sum(debit), 0)::text AS debits, COALESCE(sum(credit), 0)::text AS credits
         FROM read.journal_lines WHERE effective_date <= $1 GROUP BY currency ORDER BY currency",
        &[&as_of],
    )
    .await?;
    Ok(answer(
        position,
        json!({
            "as_of": as_of,
            "accounts": rows.iter().map(|r| json!({
                "account": r.get::<_, String>("account"),
                "name": r.get::<_, String>("name"),
                "type": r.get::<_, String>("type"),
                "currency": r.get::<_, String>("currency"),
                "debits": r.get::<_, String>("debits"),
                "credits": r.get::<_, String>("credits"),
                "balance": r.get::<_, String>("balance"),
            })).collect::<Vec<_>>(),
            "totals": totals.iter().map(|r| json!({
                "currency": r.get::<_, String>("currency"),
                "debits": r.get::<_, String>("debits"),
                "credits": r.get::<_, String>("credits"),
            })).collect::<Vec<_>>(),
        }),
    ))
}

// ---- agents and governance ----------------------------------------------------------

fn agent_json(r: &Row) -> Value {
    json!({
        "agent_id": r.get::<_, String>("agent_id"),
        "name": r.get::<_, String>("name"),
        "maturity": r.get::<_, String>("maturity"),
        "registered_at": r.get::<_, DateTime<Utc>>("registered_at"),
        "updated_at": r.get::<_, DateTime<Utc>>("updated_at"),
    })
}

#[utoipa::path(
    get,
    path = "/v1/queries/agents",
    tag = "queries",
    summary = "Agents",
    params(
        ("limit" = Option<String>, Query),
        ("after" = Option<String>, Query),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Page),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn agents(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Params,
) -> Res {
    let f = Filters::new(&q, &["limit", "after"])?;
    let page = f.page()?;
    let position = prepare(&s, &caller, &headers, &["agents"]).await?;
    let rows = query(
        &s,
        "SELECT agent_id, name, maturity, registered_at, updated_at, seq FROM read.agents WHERE seq > $1 ORDER BY seq LIMIT $2",
        &[&page.after, &(page.limit + 1)],
    )
    .await?;
    Ok(answer(position, page_of(rows, &page, agent_json)))
}

#[utoipa::path(
    get,
    path = "/v1/queries/agents/{id}",
    tag = "queries",
    summary = "One agent",
    params(
        ("id" = String, Path),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Document),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn agent(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Params,
) -> Res {
    Filters::new(&q, &[])?;
    let position = prepare(&s, &caller, &headers, &["agents"]).await?;
    let rows = query(
        &s,
        "SELECT agent_id, name, maturity, registered_at, updated_at, seq FROM read.agents WHERE agent_id = $1",
        &[&id],
    )
    .await?;
    Ok(answer(position, one(rows, "agent", agent_json)?))
}

#[utoipa::path(
    get,
    path = "/v1/queries/governance/decisions",
    tag = "queries",
    summary = "Governance decisions",
    params(
        ("agent_id" = Option<String>, Query),
        ("outcome" = Option<String>, Query),
        ("from" = Option<String>, Query),
        ("to" = Option<String>, Query),
        ("limit" = Option<String>, Query),
        ("after" = Option<String>, Query),
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Page),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn decisions(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Params,
) -> Res {
    let f = Filters::new(&q, &["agent_id", "outcome", "from", "to", "limit", "after"])?;
    let agent = f.text("agent_id");
    let outcome = f.one_of("outcome", &["ALLOWED", "DENIED", "ESCALATED", "BYPASSED"])?;
    let (from, to) = (f.time("from")?, f.time("to")?);
    let page = f.page()?;
    let position = prepare(&s, &caller, &headers, &["agents"]).await?;
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

/// Each projection's position, lag behind the log, and state.
#[utoipa::path(
    get,
    path = "/v1/queries/projections",
    tag = "queries",
    summary = "Each projection's position, lag and state",
    params(
        ("X-Chronicle-Min-Position" = Option<u64>, Header, description = "Wait (up to 5 s) until the read models reach this log position"),
    ),
    responses(
        (status = 200, description = "OK", body = super::openapi::Document),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn projections(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Params,
) -> Res {
    use chronicle_events::EventLog;
    Filters::new(&q, &[])?;
    let names = chronicle_projections::models::NAMES;
    let position = prepare(&s, &caller, &headers, &names).await?;
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
    Ok(answer(
        position,
        json!({ "items": items, "log_position": head }),
    ))
}
