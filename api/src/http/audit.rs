//! The audit routes (`GET /v1/audit/...`, roles `auditor` or `admin`): the history as
//! NDJSON streamed in constant memory, any stream's state as of a time or position,
//! verification of the whole log, the public seal key, and the signed checkpoints of the
//! whole log's Merkle tree with inclusion and consistency proofs between them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chronicle_commands::permissions::Read;
use chronicle_events::{Domain, StreamId};
use chronicle_replay::history::{AsOf, HistoryFilter, history, record_json, state_at};
use chronicle_replay::tree::{self, ProofError};
use futures::StreamExt;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::http::schema::{AggregateId, DomainName, EventType, Position, StreamFilter};
use crate::state::AppState;

use super::queries::filters::Filters;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(stream_state))
        .routes(routes!(verify))
        .routes(routes!(seal_key))
        .routes(routes!(checkpoint))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
}

type Params = Query<HashMap<String, String>>;

/// The history, one envelope a line with its position and version, in log order.
#[utoipa::path(
    get,
    path = "/v1/audit/events",
    tag = "audit",
    summary = "The history as NDJSON, in log order",
    params(
        ("stream" = inline(Option<StreamFilter>), Query, nullable = false),
        ("type" = inline(Option<EventType>), Query, nullable = false),
        ("from_position" = inline(Option<Position>), Query, nullable = false),
        ("to_position" = inline(Option<Position>), Query, nullable = false),
        ("since" = inline(Option<chrono::DateTime<chrono::Utc>>), Query, nullable = false),
        ("until" = inline(Option<chrono::DateTime<chrono::Utc>>), Query, nullable = false),
        ("actor" = inline(Option<AggregateId>), Query, nullable = false, description = "The actor's id: what did this user or agent do"),
        ("command_id" = inline(Option<uuid::Uuid>), Query, nullable = false, description = "One command's events"),
        ("correlation_id" = inline(Option<uuid::Uuid>), Query, nullable = false, description = "Everything one request caused"),
    ),
    responses(
        (status = 200, description = "OK", body = String),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn events(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.may_read(Read::Audit)?;
    let f = Filters::new(
        &q,
        &[
            "stream",
            "type",
            "from_position",
            "to_position",
            "since",
            "until",
            "actor",
            "command_id",
            "correlation_id",
        ],
    )?;
    let filter = HistoryFilter {
        stream: f.text("stream"),
        event_type: f.text("type"),
        from_position: f.position("from_position")?,
        to_position: f.position("to_position")?,
        since: f.time("since")?,
        until: f.time("until")?,
        actor: f.text("actor"),
        command_id: f.uuid("command_id")?,
        correlation_id: f.uuid("correlation_id")?,
    };
    filter
        .validate()
        .map_err(|(field, why)| ApiError::bad_param(field, why))?;
    let stream = history(&s.log, filter).await.map_err(ApiError::from)?;
    let lines = stream.map(|item| {
        let mut line = match item {
            Ok(e) => record_json(&e).into_bytes(),
            Err(e) => {
                // The status line is gone: say so in the stream and end it.
                tracing::error!(error = %e, "history stream interrupted");
                serde_json::to_vec(&json!({"error": "the history could not be read to the end; retry from the last position received"})).unwrap_or_default()
            }
        };
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(line)
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

#[utoipa::path(
    get,
    path = "/v1/audit/streams/{domain}/{id}/state",
    tag = "audit",
    summary = "A stream's state as of a time or position",
    params(
        ("domain" = inline(DomainName), Path),
        ("id" = inline(AggregateId), Path),
        ("as_of" = inline(Option<chrono::DateTime<chrono::Utc>>), Query, nullable = false),
        ("at_position" = inline(Option<Position>), Query, nullable = false),
    ),
    responses(
        (status = 200, description = "OK", body = crate::http::openapi::Document),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn stream_state(
    State(s): State<AppState>,
    caller: Caller,
    Path((domain, id)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.may_read(Read::Audit)?;
    let f = Filters::new(&q, &["as_of", "at_position"])?;
    let domain: Domain = domain
        .parse()
        .map_err(|_| ApiError::not_found("no such domain"))?;
    let stream = StreamId::new(domain, id).map_err(|_| ApiError::not_found("no such stream"))?;
    let as_of = match (f.time("as_of")?, f.position("at_position")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_param(
                "as_of",
                "give as_of or at_position, not both",
            ));
        }
        (Some(t), None) => AsOf::Time(t),
        (None, Some(p)) => AsOf::Position(p),
        (None, None) => AsOf::Now,
    };
    let at = state_at(&s.log, &stream, as_of)
        .await
        .map_err(ApiError::from)?;
    if !at.exists && matches!(as_of, AsOf::Now) {
        return Err(ApiError::not_found(format!("no events in {stream}")));
    }
    Ok(axum::Json(at).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/audit/verify",
    tag = "audit",
    summary = "Verify hashes, chains, gaps and seals",
    params(
        ("from_position" = inline(Option<Position>), Query, nullable = false),
        ("to_position" = inline(Option<Position>), Query, nullable = false),
    ),
    responses(
        (status = 200, description = "OK", body = crate::http::openapi::Document),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn verify(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.may_read(Read::Audit)?;
    let f = Filters::new(&q, &["from_position", "to_position"])?;
    let from = f.position("from_position")?.unwrap_or(1);
    let to = f.position("to_position")?;
    if to.is_some_and(|t| t < from) {
        return Err(ApiError::bad_param(
            "from_position",
            "from_position is after to_position",
        ));
    }
    let progress = Arc::new((AtomicU64::new(from.saturating_sub(1)), AtomicU64::new(0)));
    let task = {
        let (log, key, progress) = (s.log.clone(), s.seal_public, progress.clone());
        tokio::spawn(async move {
            chronicle_replay::verify_log(&log, from, to, key, &|at, end| {
                progress.0.store(at, Ordering::Relaxed);
                progress.1.store(end, Ordering::Relaxed);
            })
            .await
        })
    };
    // Dropped with the answer (a client that hangs up), the verification stops.
    let mut task = AbortOnDrop(task);
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-ndjson"));
    if !ndjson
        && let Ok(done) = tokio::time::timeout(s.policy.verify_answer_within, &mut task.0).await
    {
        let report = done
            .map_err(|_| {
                ApiError::new(
                    crate::error::Code::LogUnavailable,
                    "the verification stopped; retry shortly",
                )
            })?
            .map_err(ApiError::from)?;
        return Ok(axum::Json(report).into_response());
    }
    // Long (or asked for as NDJSON): answered now, the report streamed when it is done.
    // As JSON, whitespace keeps the connection alive (JSON allows it before a value); as
    // NDJSON, a progress line every 2 s, then the report line.
    let body = async_stream::stream! {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
        tick.tick().await;
        let outcome = loop {
            tokio::select! {
                done = &mut task.0 => break done,
                _ = tick.tick() => {
                    let line = if ndjson {
                        let (at, end) = (progress.0.load(Ordering::Relaxed), progress.1.load(Ordering::Relaxed));
                        format!("{}\n", json!({"progress": {"checked_to": at, "end": end}}))
                    } else {
                        " ".to_owned()
                    };
                    yield Ok::<_, std::convert::Infallible>(line);
                }
            }
        };
        let last = match outcome {
            Ok(Ok(report)) if ndjson => json!({ "report": report }),
            Ok(Ok(report)) => serde_json::to_value(report).unwrap_or_default(),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a streamed verification failed");
                json!({"error": "the log could not be read to the end: LOG_UNAVAILABLE; verify again"})
            }
            Err(_) => json!({"error": "the verification stopped; verify again"}),
        };
        yield Ok(format!("{last}\n"));
    };
    let content_type = if ndjson {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

/// A task that is stopped when its handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[utoipa::path(
    get,
    path = "/v1/audit/seal-key",
    tag = "audit",
    summary = "The public seal key (Ed25519)",
    params(
    ),
    responses(
        (status = 200, description = "OK", body = crate::http::openapi::Document),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn seal_key(State(s): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.may_read(Read::Audit)?;
    let key = s
        .seal_public
        .ok_or_else(|| ApiError::not_found("this deployment has no seal key configured"))?;
    Ok(axum::Json(json!({ "algorithm": "Ed25519", "public_key": key.to_hex() })).into_response())
}

impl From<ProofError> for ApiError {
    fn from(e: ProofError) -> Self {
        match e {
            ProofError::NoCheckpoint | ProofError::NotSealed(_) => {
                ApiError::not_found(e.to_string())
            }
            ProofError::OutOfRange { position: 0, .. } => {
                ApiError::bad_param("position", "positions start at 1")
            }
            ProofError::OutOfRange { .. } => ApiError::not_found(e.to_string()),
            ProofError::FromAfterTo { .. } => ApiError::bad_param("from", e.to_string()),
            ProofError::Tree(e) => ApiError::read_store(e),
        }
    }
}

/// A checkpoint of a given size never changes; the latest does.
fn cache_for(size_given: bool) -> &'static str {
    if size_given {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

/// The latest signed tree head (or the one of a sealed `size`) as a C2SP signed note:
/// origin `chronicle/<stream>`, tree size, base64 root, a blank line, then the seal key's
/// Ed25519 signature line.
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoint",
    tag = "audit",
    summary = "A signed checkpoint of the whole log's Merkle tree (C2SP signed note)",
    params(
        ("size" = inline(Option<Position>), Query, nullable = false, description = "A sealed tree size; the latest checkpoint without it"),
    ),
    responses(
        (status = 200, description = "The signed note", body = String, content_type = "text/plain"),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn checkpoint(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.may_read(Read::Audit)?;
    let f = Filters::new(&q, &["size"])?;
    let size = f.position("size")?;
    let db = s.db.get().await.map_err(ApiError::read_store)?;
    let cp = tree::sealed(&**db, size).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, cache_for(size.is_some())),
        ],
        cp.note,
    )
        .into_response())
}

/// The inclusion proof (RFC 9162 §2.1.3) of the event at `position` in the tree of a
/// sealed `size`: leaf `position - 1`, its leaf hash `SHA-256(0x00 ‖ event hash)`, and the
/// sibling hashes from the leaf up.
#[utoipa::path(
    get,
    path = "/v1/audit/proofs/inclusion",
    tag = "audit",
    summary = "Inclusion proof of one event in a signed checkpoint",
    params(
        ("position" = inline(Position), Query, description = "The event's log position"),
        ("size" = inline(Option<Position>), Query, nullable = false, description = "A sealed tree size; the latest checkpoint's without it"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::http::openapi::Document),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn inclusion_proof(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.may_read(Read::Audit)?;
    let f = Filters::new(&q, &["position", "size"])?;
    let position = f
        .position("position")?
        .ok_or_else(|| ApiError::bad_param("position", "position is required"))?;
    let size = f.position("size")?;
    let db = s.db.get().await.map_err(ApiError::read_store)?;
    let (proof, _) = tree::inclusion(&**db, position, size).await?;
    Ok((
        [(header::CACHE_CONTROL, cache_for(size.is_some()))],
        axum::Json(proof),
    )
        .into_response())
}

/// The consistency proof (RFC 9162 §2.1.4) that the tree of sealed size `from` is a
/// prefix of the tree of sealed size `to`: nothing in the first was changed or removed.
#[utoipa::path(
    get,
    path = "/v1/audit/proofs/consistency",
    tag = "audit",
    summary = "Consistency proof between two signed checkpoints",
    params(
        ("from" = inline(Position), Query, description = "The older sealed tree size"),
        ("to" = inline(Option<Position>), Query, nullable = false, description = "The newer sealed tree size; the latest checkpoint's without it"),
    ),
    responses(
        (status = 200, description = "OK", body = crate::http::openapi::Document),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])),
)]
async fn consistency_proof(
    State(s): State<AppState>,
    caller: Caller,
    Query(q): Params,
) -> Result<Response, ApiError> {
    caller.may_read(Read::Audit)?;
    let f = Filters::new(&q, &["from", "to"])?;
    let from = f
        .position("from")?
        .ok_or_else(|| ApiError::bad_param("from", "from is required"))?;
    let to = f.position("to")?;
    if to.is_some_and(|t| t < from) {
        return Err(ProofError::FromAfterTo {
            from,
            to: to.unwrap_or_default(),
        }
        .into());
    }
    let db = s.db.get().await.map_err(ApiError::read_store)?;
    let (proof, _, _) = tree::consistency(&**db, from, to).await?;
    Ok((
        [(header::CACHE_CONTROL, cache_for(to.is_some()))],
        axum::Json(proof),
    )
        .into_response())
}
