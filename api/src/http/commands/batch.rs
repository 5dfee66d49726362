//! `POST /v1/commands/batch`: up to 1 000 commands in one request, each answered on its
//! own — not one transaction. Each command goes through its own route exactly as a single
//! request would (the same router, so the same permission check, body rules,
//! `Idempotency-Key`, `If-Match`, governance and answer), with the batch's bearer token;
//! a revocation or expiry during a batch stops the commands after it. The batch counts
//! against the rate limit as one request per command, all before any runs. Commands run
//! up to 64 at a time in no particular order, or one after another with `"ordered": true`
//! (each starts once the one before it is answered, whatever that answer). Every command
//! of a batch carries the batch's correlation id (its `X-Correlation-Id`, or a new one,
//! returned), so "what did this request cause" finds them all.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Bearer, Caller};
use crate::error::{ApiError, Code};
use crate::http::hardening::RateCharge;
use crate::http::schema::{CommandPath, IdempotencyKey, VersionTag};
use crate::idempotency::Idempotency;
use crate::state::AppState;

/// The most commands one batch holds.
pub const MAX_COMMANDS: usize = 1000;
/// Commands of an unordered batch in flight at once.
const IN_FLIGHT: usize = 64;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(batch))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchCommand {
    /// The route the command would be posted to alone.
    path: CommandPath,
    /// Its body, as the route takes it.
    #[schema(value_type = Object)]
    body: Value,
    /// As the `Idempotency-Key` header of a single request.
    idempotency_key: Option<IdempotencyKey>,
    /// As the `If-Match` header of a single request.
    if_match: Option<VersionTag>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    /// 1 to 1 000 commands.
    #[schema(min_items = 1, max_items = 1000)]
    commands: Vec<BatchCommand>,
    /// One after another, in order (default: up to 64 at a time, in no order).
    #[serde(default)]
    ordered: bool,
}

/// Each command's answer, in the order given: its status and body as a single request's
/// (a problem+json body for a refusal), and its `ETag` when it has one.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct BatchAnswer {
    correlation_id: Uuid,
    #[schema(value_type = Vec<Object>)]
    results: Vec<Value>,
}

#[utoipa::path(
    post,
    path = "/v1/commands/batch",
    tag = "commands: batch",
    summary = "Up to 1 000 commands, each answered on its own",
    request_body(content = BatchBody, content_type = "application/json"),
    params(
        ("X-Correlation-Id" = inline(Option<Uuid>), Header, nullable = false, description = "Given to every command of the batch"),
    ),
    responses(
        (status = 200, description = "Every command's own answer", body = BatchAnswer),
        (status = "4XX", description = "The batch itself refused; no command ran", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "LOG_UNAVAILABLE", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    Extension(bearer): Extension<Bearer>,
    charge: Option<Extension<RateCharge>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let _ = caller;
    let batch: BatchBody = crate::http::request::parse(&headers, &body)?;
    if batch.commands.is_empty() || batch.commands.len() > MAX_COMMANDS {
        return Err(ApiError::bad_param(
            "commands",
            format!("a batch holds 1 to {MAX_COMMANDS} commands"),
        ));
    }
    // What the schema states of each command is checked before anything runs.
    for (i, c) in batch.commands.iter().enumerate() {
        let path = &c.path.0;
        if !path.starts_with("/v1/commands/")
            || path.len() == 13
            || path.len() > 513
            || !path.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ApiError::bad_param(
                &format!("commands[{i}].path"),
                "must be the path of a command route, /v1/commands/...",
            ));
        }
        // The rule of the `Idempotency-Key` header, named as the batch's field.
        if let Some(k) = &c.idempotency_key
            && Idempotency::check_key(&k.0).is_err()
        {
            return Err(ApiError::bad_param(
                &format!("commands[{i}].idempotency_key"),
                "1 to 255 visible ASCII characters",
            ));
        }
    }
    if let Some(Extension(charge)) = charge
        && let Err(limited) = charge.more(batch.commands.len() as u32 - 1)
    {
        return Ok(*limited);
    }
    let correlation_id = match headers.get("x-correlation-id") {
        None => Uuid::now_v7(),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse::<Uuid>().ok())
            .ok_or_else(|| ApiError::bad_param("X-Correlation-Id", "must be a UUID"))?,
    };
    let router = state
        .batch_router
        .get_or_init(|| {
            let (router, _) = super::single_routes().split_for_parts();
            router
                .fallback(|| async {
                    ApiError::not_found("no command route has this path").into_response()
                })
                .with_state(state.clone())
        })
        .clone();
    let run = |command: BatchCommand| {
        let (router, bearer) = (router.clone(), bearer.clone());
        async move { run_one(router, bearer, correlation_id, command).await }
    };
    let results: Vec<Value> = if batch.ordered {
        let mut out = Vec::with_capacity(batch.commands.len());
        for command in batch.commands {
            out.push(run(command).await);
        }
        out
    } else {
        futures::stream::iter(batch.commands)
            .map(run)
            .buffered(IN_FLIGHT)
            .collect()
            .await
    };
    Ok(axum::Json(json!({ "correlation_id": correlation_id, "results": results })).into_response())
}

/// One command of a batch through its own route; its answer as `{status, body, etag?}`.
async fn run_one(
    router: axum::Router,
    bearer: Bearer,
    correlation_id: Uuid,
    command: BatchCommand,
) -> Value {
    let response = match request(bearer, correlation_id, &command) {
        Ok(req) => match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        },
        Err(refused) => refused.into_response(),
    };
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let body = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
    let mut answer = json!({ "status": status, "body": body });
    if let Some(etag) = etag {
        answer["etag"] = json!(etag);
    }
    answer
}

fn request(
    bearer: Bearer,
    correlation_id: Uuid,
    command: &BatchCommand,
) -> Result<Request, ApiError> {
    let header_of = |name: &str, v: &str| {
        HeaderValue::from_str(v).map_err(|_| {
            ApiError::new(
                Code::MalformedRequest,
                format!("{name} must be visible ASCII"),
            )
        })
    };
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(command.path.0.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-correlation-id", correlation_id.to_string());
    if let Some(key) = &command.idempotency_key {
        req = req.header("idempotency-key", header_of("idempotency_key", &key.0)?);
    }
    if let Some(tag) = &command.if_match {
        req = req.header(header::IF_MATCH, header_of("if_match", &tag.0)?);
    }
    let body = serde_json::to_vec(&command.body).unwrap_or_default();
    let mut req = req
        .body(Body::from(body))
        .map_err(|_| ApiError::not_found("no command route has this path"))?;
    req.extensions_mut().insert(bearer);
    Ok(req)
}
