//! The command routes (`POST /v1/commands/...`): each parses its body, checks the caller's
//! role, and runs one [`Command`] through the handler, with `If-Match` and
//! `Idempotency-Key` honoured. Answers `200`/`201` with the appended events and
//! `ETag: "<version>"`, or `202` when governance escalated an agent's command.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use chronicle_commands::{Answer, Command, Ctx, EscalatedResult, Executed};
use chronicle_events::domain::agent::Maturity;
use chronicle_events::domain::chart::AccountType;
use chronicle_events::domain::entry::JournalLine;
use chronicle_events::domain::user::Role;
use chronicle_events::{Actor, AppendedEvent};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Code};
use crate::idempotency::{Claim, Idempotency, StoredAnswer};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/commands/users/{user_id}/tokens", post(issue_token))
        .route(
            "/v1/commands/users/{user_id}/tokens/revoke-all",
            post(revoke_all_tokens),
        )
        .route(
            "/v1/commands/users/{user_id}/tokens/{jti}/revoke",
            post(revoke_token),
        )
        .route("/v1/commands/jobs", post(submit_job))
        .route("/v1/commands/jobs/{id}/start", post(start_job))
        .route("/v1/commands/jobs/{id}/complete", post(complete_job))
        .route("/v1/commands/jobs/{id}/fail", post(fail_job))
        .route("/v1/commands/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/commands/jobs/{id}/retry", post(retry_job))
        .route("/v1/commands/approvals", post(request_approval))
        .route("/v1/commands/approvals/{id}/approve", post(approve))
        .route("/v1/commands/approvals/{id}/reject", post(reject))
        .route("/v1/commands/accounts", post(open_account))
        .route("/v1/commands/accounts/{code}/close", post(close_account))
        .route("/v1/commands/journal-entries", post(post_entry))
        .route(
            "/v1/commands/journal-entries/{id}/reverse",
            post(reverse_entry),
        )
        .route("/v1/commands/agents", post(register_agent))
        .route("/v1/commands/agents/{id}/maturity", post(change_maturity))
        .route("/v1/commands/governance/bypass", post(set_bypass))
}

/// Parses a JSON body (an empty body reads as `{}`). Bad JSON, wrong types and unknown
/// fields are `400 MALFORMED_REQUEST` with serde's description of what is wrong.
fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct.split(';').next().unwrap_or("").trim();
                ct.eq_ignore_ascii_case("application/json") || ct.ends_with("+json")
            });
        if !json {
            return Err(ApiError::new(
                Code::MalformedRequest,
                "the body must be JSON with `Content-Type: application/json`",
            ));
        }
        body
    };
    let malformed = |e: serde_json::Error| {
        let mut detail = format!("the body does not fit this command: {e}");
        detail.truncate(300);
        ApiError::new(Code::MalformedRequest, detail)
    };
    let value: Value = serde_json::from_slice(bytes).map_err(malformed)?;
    // A NUL character cannot be stored by the read models (Postgres text and jsonb refuse
    // it): accepted into the log, it would stop a projection for good.
    if has_nul(&value) {
        return Err(ApiError::new(
            Code::MalformedRequest,
            "strings may not contain the NUL character (\\u0000)",
        ));
    }
    serde_json::from_value(value).map_err(malformed)
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// Ids a command creates when the body does not name them: derived from the command id,
/// so a retried request (same `Idempotency-Key`) names the same aggregate.
fn derived_id(command_id: Uuid, what: &str) -> String {
    Uuid::new_v5(&command_id, what.as_bytes()).to_string()
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|s| s.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                Code::MalformedRequest,
                "If-Match must be a version in quotes, e.g. \"3\"",
            )
        })
}

fn events_json(events: &[AppendedEvent]) -> Vec<Value> {
    events
        .iter()
        .map(|e| json!({ "id": e.id, "type": e.event_type, "stream": e.stream, "position": e.position }))
        .collect()
}

/// The answer of an executed command. An issued token is not part of what is stored (the
/// stored answer would keep a bearer credential at rest for a day): its claims are, and the
/// token is signed again from them on a replay.
fn executed_answer(state: &AppState, ex: &Executed) -> StoredAnswer {
    let mut body = json!({
        "command_id": ex.command_id,
        "stream": ex.stream,
        "version": ex.version,
        "position": ex.position,
        "events": events_json(&ex.events),
    });
    let token = ex.issued.as_ref().map(|(user_id, issued)| {
        body["jti"] = json!(issued.jti);
        body["expires_at"] = json!(issued.expires_at);
        state.signer.claims(user_id, issued)
    });
    if let Some(escalated) = &ex.escalated {
        body["escalated"] = match escalated {
            EscalatedResult::Executed { command_id, events } => json!({
                "outcome": "EXECUTED",
                "command_id": command_id,
                "events": events_json(events),
            }),
            EscalatedResult::Rejected(r) => {
                let e = ApiError::from(r.clone());
                json!({ "outcome": "REJECTED", "code": e.code.as_str(), "detail": e.detail })
            }
        };
    }
    StoredAnswer {
        status: if ex.created { 201 } else { 200 },
        etag: Some(format!("\"{}\"", ex.version)),
        body,
        token,
    }
}

/// The response of an answer, fresh or replayed; an issued token is signed here.
fn into_response(state: &AppState, answer: StoredAnswer) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut body = answer.body;
    if let Some(claims) = &answer.token {
        body["token"] = json!(state.signer.sign(claims)?);
    }
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(etag) = answer.etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
}

/// Runs one command for `caller`: permission (role and scopes, before anything else, a
/// replayed answer included), idempotency, then the handler (governance for agents).
async fn run(
    state: &AppState,
    caller: Caller,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
    build: impl FnOnce(Uuid) -> Command,
) -> Result<Response, ApiError> {
    let if_match = if_match(headers)?;
    let key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::new(Code::MalformedRequest, "Idempotency-Key must be ASCII"))
        })
        .transpose()?;
    if let Some(key) = key {
        Idempotency::check_key(key)?;
    }
    let command_id = match key {
        None => Uuid::now_v7(),
        Some(key) => Idempotency::command_id(caller.user_id(), key),
    };
    let command = build(command_id);
    chronicle_commands::permissions::may_run(&caller.principal, &command)
        .map_err(|why| ApiError::new(Code::Forbidden, why))?;
    let kv_key = match key {
        None => None,
        Some(key) => match state
            .idempotency
            .claim(caller.user_id(), key, "POST", uri.path(), body)
            .await?
        {
            Claim::Replay(answer) => return into_response(state, answer),
            Claim::Run { kv_key } => Some(kv_key),
        },
    };
    let result = execute(state, &caller, &command, command_id, if_match, headers).await;
    if let Some(kv_key) = kv_key {
        // A success is recorded and replayed for 24 h. An error releases the key: it
        // changed nothing, and the same request may succeed once the caller has fixed
        // what was wrong (or the log is back).
        state
            .idempotency
            .finish(&kv_key, result.as_ref().ok().cloned())
            .await;
    }
    into_response(state, result?)
}

async fn execute(
    state: &AppState,
    caller: &Caller,
    command: &Command,
    command_id: Uuid,
    if_match: Option<u64>,
    headers: &HeaderMap,
) -> Result<StoredAnswer, ApiError> {
    let correlation_id = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<Uuid>().ok())
        .unwrap_or(command_id);
    let ctx = Ctx {
        command_id,
        correlation_id,
        causation_id: None,
        actor: match caller.principal.agent_id() {
            Some(agent) => Actor::agent(agent),
            None => Actor::user(caller.user_id()),
        },
        principal: caller.principal.clone(),
        if_match,
        now: Utc::now(),
    };
    // A revocation this command appends (directly, or by an approval running an escalated
    // one) takes effect in this process as it is appended: see the handler's observer in
    // `server::connect`. Other processes follow the log.
    Ok(match state.handler.execute(&ctx, command).await? {
        Answer::Done(ex) => executed_answer(state, &ex),
        Answer::Escalated {
            approval_id,
            executed,
        } => StoredAnswer {
            status: 202,
            etag: None,
            body: json!({
                "approval_id": approval_id,
                "command_id": executed.command_id,
                "stream": executed.stream,
                "position": executed.position,
                "events": events_json(&executed.events),
            }),
            token: None,
        },
    })
}

// ---- bodies -----------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IssueTokenBody {
    /// admin, writer, agent, analyst or auditor.
    #[schema(value_type = String)]
    role: Role,
    #[serde(default)]
    scopes: Vec<String>,
    ttl_seconds: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OptionalReasonBody {
    reason: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SubmitJobBody {
    job_id: Option<String>,
    agent_id: String,
    kind: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    input: Value,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    #[serde(default)]
    #[schema(value_type = Object)]
    result: Value,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FailBody {
    error: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RequestApprovalBody {
    approval_id: Option<String>,
    action: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    payload: Value,
    reason: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OpenAccountBody {
    code: String,
    name: String,
    /// ASSET, LIABILITY, EQUITY, REVENUE or EXPENSE.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    account_type: AccountType,
    currency: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PostEntryBody {
    entry_id: Option<String>,
    effective_date: NaiveDate,
    #[serde(default)]
    memo: String,
    lines: Vec<LineBody>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LineBody {
    account: String,
    /// Integer minor units, as a number or a string of digits.
    #[schema(value_type = Option<i64>)]
    debit: Option<chronicle_events::domain::MinorUnits>,
    #[schema(value_type = Option<i64>)]
    credit: Option<chronicle_events::domain::MinorUnits>,
    currency: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ReverseBody {
    reason: String,
    reversal_entry_id: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterAgentBody {
    agent_id: String,
    name: String,
    /// STUDENT, INTERN, SUPERVISED or AUTONOMOUS.
    #[schema(value_type = String)]
    maturity: Maturity,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MaturityBody {
    #[schema(value_type = String)]
    maturity: Maturity,
    reason: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BypassBody {
    enabled: bool,
    reason: String,
    until: Option<DateTime<Utc>>,
}

// ---- routes -----------------------------------------------------------------------

type Res = Result<Response, ApiError>;

#[utoipa::path(
    post,
    path = "/v1/commands/users/{user_id}/tokens",
    tag = "commands: tokens",
    summary = "Issue a token (admin)",
    request_body(content = IssueTokenBody, content_type = "application/json"),
    params(
        ("user_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 201, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn issue_token(
    State(s): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: IssueTokenBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| Command::IssueToken {
        user_id,
        role: b.role,
        scopes: b.scopes,
        ttl_seconds: b.ttl_seconds,
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/users/{user_id}/tokens/{jti}/revoke",
    tag = "commands: tokens",
    summary = "Revoke one token",
    request_body(content = ReasonBody, content_type = "application/json"),
    params(
        ("user_id" = String, Path),
        ("jti" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn revoke_token(
    State(s): State<AppState>,
    caller: Caller,
    Path((user_id, jti)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: ReasonBody = parse(&headers, &body)?;
    let jti: Uuid = jti
        .parse()
        .map_err(|_| ApiError::not_found("no such token for this user"))?;
    run(&s, caller, &headers, &uri, &body, |_| {
        Command::RevokeToken {
            user_id,
            jti,
            reason: b.reason,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/users/{user_id}/tokens/revoke-all",
    tag = "commands: tokens",
    summary = "Revoke every active token of a user",
    request_body(content = ReasonBody, content_type = "application/json"),
    params(
        ("user_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn revoke_all_tokens(
    State(s): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: ReasonBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| {
        Command::RevokeAllTokens {
            user_id,
            reason: b.reason,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/jobs",
    tag = "commands: jobs",
    summary = "Submit a job (PENDING)",
    request_body(content = SubmitJobBody, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 201, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn submit_job(
    State(s): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: SubmitJobBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |id| Command::SubmitJob {
        job_id: b.job_id.unwrap_or_else(|| derived_id(id, "job")),
        agent_id: b.agent_id,
        kind: b.kind,
        input: b.input,
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/jobs/{id}/start",
    tag = "commands: jobs",
    summary = "Start a job",
    request_body(content = EmptyBody, content_type = "application/json"),
    params(
        ("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn start_job(
    State(s): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let _: EmptyBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| Command::StartJob {
        job_id,
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/jobs/{id}/complete",
    tag = "commands: jobs",
    summary = "Complete a job",
    request_body(content = CompleteBody, content_type = "application/json"),
    params(
        ("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn complete_job(
    State(s): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: CompleteBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| {
        Command::CompleteJob {
            job_id,
            result: b.result,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/jobs/{id}/fail",
    tag = "commands: jobs",
    summary = "Fail a job",
    request_body(content = FailBody, content_type = "application/json"),
    params(
        ("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn fail_job(
    State(s): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: FailBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| Command::FailJob {
        job_id,
        error: b.error,
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/jobs/{id}/cancel",
    tag = "commands: jobs",
    summary = "Cancel a job",
    request_body(content = ReasonBody, content_type = "application/json"),
    params(
        ("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn cancel_job(
    State(s): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: ReasonBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| Command::CancelJob {
        job_id,
        reason: b.reason,
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/jobs/{id}/retry",
    tag = "commands: jobs",
    summary = "Retry a failed job",
    request_body(content = EmptyBody, content_type = "application/json"),
    params(
        ("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn retry_job(
    State(s): State<AppState>,
    caller: Caller,
    Path(job_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let _: EmptyBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| Command::RetryJob {
        job_id,
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/approvals",
    tag = "commands: approvals",
    summary = "Request an approval",
    request_body(content = RequestApprovalBody, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 201, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn request_approval(
    State(s): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: RequestApprovalBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |id| {
        Command::RequestApproval {
            approval_id: b.approval_id.unwrap_or_else(|| derived_id(id, "approval")),
            action: b.action,
            payload: b.payload,
            reason: b.reason,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/approvals/{id}/approve",
    tag = "commands: approvals",
    summary = "Approve (runs an escalated command)",
    request_body(content = OptionalReasonBody, content_type = "application/json"),
    params(
        ("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn approve(
    State(s): State<AppState>,
    caller: Caller,
    Path(approval_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: OptionalReasonBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| {
        Command::ApproveApproval {
            approval_id,
            reason: b.reason,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/approvals/{id}/reject",
    tag = "commands: approvals",
    summary = "Reject",
    request_body(content = ReasonBody, content_type = "application/json"),
    params(
        ("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn reject(
    State(s): State<AppState>,
    caller: Caller,
    Path(approval_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: ReasonBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| {
        Command::RejectApproval {
            approval_id,
            reason: b.reason,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/accounts",
    tag = "commands: ledger",
    summary = "Open an account",
    request_body(content = OpenAccountBody, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 201, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn open_account(
    State(s): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: OpenAccountBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| {
        Command::OpenAccount {
            code: b.code,
            name: b.name,
            account_type: b.account_type,
            currency: b.currency,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/accounts/{code}/close",
    tag = "commands: ledger",
    summary = "Close an account",
    request_body(content = EmptyBody, content_type = "application/json"),
    params(
        ("code" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn close_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let _: EmptyBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| {
        Command::CloseAccount { code }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/journal-entries",
    tag = "commands: ledger",
    summary = "Post a balanced journal entry",
    request_body(content = PostEntryBody, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 201, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn post_entry(
    State(s): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: PostEntryBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |id| Command::PostEntry {
        entry_id: b.entry_id.unwrap_or_else(|| derived_id(id, "entry")),
        effective_date: b.effective_date,
        memo: b.memo,
        lines: b
            .lines
            .into_iter()
            .map(|l| JournalLine {
                account: l.account,
                debit: l.debit,
                credit: l.credit,
                currency: l.currency,
            })
            .collect(),
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/journal-entries/{id}/reverse",
    tag = "commands: ledger",
    summary = "Reverse an entry with a mirror entry",
    request_body(content = ReverseBody, content_type = "application/json"),
    params(
        ("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn reverse_entry(
    State(s): State<AppState>,
    caller: Caller,
    Path(entry_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: ReverseBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |id| {
        Command::ReverseEntry {
            entry_id,
            reversal_entry_id: b
                .reversal_entry_id
                .unwrap_or_else(|| derived_id(id, "reversal")),
            reason: b.reason,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/agents",
    tag = "commands: agents",
    summary = "Register an agent",
    request_body(content = RegisterAgentBody, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 201, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn register_agent(
    State(s): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: RegisterAgentBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| {
        Command::RegisterAgent {
            agent_id: b.agent_id,
            name: b.name,
            maturity: b.maturity,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/agents/{id}/maturity",
    tag = "commands: agents",
    summary = "Change an agent's maturity",
    request_body(content = MaturityBody, content_type = "application/json"),
    params(
        ("id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn change_maturity(
    State(s): State<AppState>,
    caller: Caller,
    Path(agent_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: MaturityBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| {
        Command::ChangeMaturity {
            agent_id,
            maturity: b.maturity,
            reason: b.reason,
        }
    })
    .await
}

#[utoipa::path(
    post,
    path = "/v1/commands/governance/bypass",
    tag = "commands: agents",
    summary = "Switch the governance bypass",
    request_body(content = BypassBody, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry safe for 24 h"),
        ("If-Match" = Option<String>, Header, description = "The aggregate's expected version, in quotes"),
    ),
    responses(
        (status = 200, description = "Done", body = super::openapi::CommandAnswer),
        (status = 202, description = "Escalated by governance: a human must approve", body = super::openapi::Escalated),
        (status = "4XX", description = "Refused", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = super::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
async fn set_bypass(
    State(s): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let b: BypassBody = parse(&headers, &body)?;
    run(&s, caller, &headers, &uri, &body, |_| Command::SetBypass {
        enabled: b.enabled,
        reason: b.reason,
        until: b.until,
    })
    .await
}
