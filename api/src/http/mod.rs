//! The HTTP application: the routers of each concern (health, commands, queries, audit),
//! merged by the role a process serves, and the layers every request passes, from the
//! outside in: request id (with its span and metrics), security headers, CORS, problem+json
//! for bare errors, authentication, the rate limit, the time-out, the body limit and NUL
//! characters in the URI. Routes are declared once (`routes`), so the router and
//! `/openapi.json` cannot disagree.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::error::{ApiError, Code, REQUEST_ID};
use crate::state::AppState;

pub mod audit;
pub mod commands;
pub mod hardening;
pub mod health;
pub mod openapi;
pub mod queries;
pub mod request;
pub mod routes;
pub mod schema;
pub mod subscribe;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Bodies larger than this are refused with `413 PAYLOAD_TOO_LARGE`.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Which routes a process serves (`chronicle serve --role`, `CHRONICLE_ROLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ServeRole {
    Commands,
    Queries,
    Audit,
    #[default]
    All,
}

/// The routes of `role` (every process also serves `/health/*`), documented.
pub fn routes(role: ServeRole) -> OpenApiRouter<AppState> {
    let serves = |r: ServeRole| role == ServeRole::All || role == r;
    let mut router = OpenApiRouter::with_openapi(openapi::base()).merge(health::routes());
    if serves(ServeRole::Commands) {
        router = router.merge(commands::routes());
    }
    if serves(ServeRole::Queries) {
        router = router.merge(queries::routes()).merge(subscribe::routes());
    }
    if serves(ServeRole::Audit) {
        router = router.merge(audit::routes());
    }
    router
}

/// The whole application for a process of `role`.
pub fn app(state: AppState, role: ServeRole) -> Router {
    let policy = state.policy.clone();
    let limiter = hardening::Limiter::new(policy.rate_limit);
    let signer = state.signer.clone();
    let (router, doc) = routes(role).split_for_parts();
    let doc = std::sync::Arc::new(doc);
    let page_doc = doc.clone();
    router
        .route("/metrics", axum::routing::get(metrics_text))
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { axum::Json(doc.as_ref().clone()) }),
        )
        .route(
            "/docs",
            axum::routing::get(move || async move { openapi::page(&page_doc) }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(refuse_nul_in_uri))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(middleware::from_fn_with_state(
            limiter,
            hardening::rate_limit,
        ))
        // Outside the rate limit, which counts verified tokens by their id.
        .layer(middleware::from_fn_with_state(
            signer,
            crate::auth::authenticate,
        ))
        // Outside the body limit and the time-out, so their bare answers get a body too.
        .layer(middleware::from_fn(problem_for_bare_errors))
        .layer(hardening::cors(&policy.cors_origins))
        .layer(middleware::from_fn_with_state(
            policy.hsts,
            hardening::security_headers,
        ))
        .layer(middleware::from_fn(request_id))
}

/// Prometheus text; gauges that are read, not counted, are set as it is asked for.
async fn metrics_text(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    use chronicle_events::EventLog;
    let Some(handle) = crate::metrics::handle() else {
        return ApiError::new(Code::Internal, "metrics are not available").into_response();
    };
    if let Ok(Ok(end)) =
        tokio::time::timeout(Duration::from_secs(1), state.log.last_position()).await
    {
        metrics::gauge!("chronicle_log_position").set(end as f64);
        for name in chronicle_projections::models::NAMES {
            let pos = state.positions.position_of(&[name]);
            metrics::gauge!("chronicle_projection_position", "projection" => name).set(pos as f64);
            metrics::gauge!("chronicle_projection_lag", "projection" => name)
                .set(end.saturating_sub(pos) as f64);
        }
    }
    metrics::gauge!("chronicle_revoked_tokens").set(state.revocations.len() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    )
        .into_response()
}

/// A NUL character (`%00`) in a path or query can name nothing Chronicle stores, and
/// Postgres refuses it in text: answer 400 before any handler sees it.
async fn refuse_nul_in_uri(req: Request, next: Next) -> Response {
    let uri = req.uri().to_string();
    if uri.to_ascii_lowercase().contains("%00") {
        return ApiError::new(
            Code::MalformedRequest,
            "the request's path or query contains a NUL character",
        )
        .into_response();
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// Takes the caller's `X-Request-Id` when it is a sane token, else makes one; answers it
/// and makes it available to handlers (problem bodies, log spans).
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    // The route's pattern, not the path: ids must not become label values.
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let mut response = REQUEST_ID
        .scope(id.clone(), async move {
            let _enter = span.enter();
            let response = next.run(req).await;
            tracing::info!(
                status = response.status().as_u16(),
                latency_ms = started.elapsed().as_secs_f64() * 1000.0,
                "answered"
            );
            response
        })
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let status = response.status().as_u16().to_string();
    metrics::counter!("chronicle_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status).increment(1);
    metrics::histogram!("chronicle_http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Layers below (body limit, time-out, axum's own extractors) answer some errors with a
/// bare status or plain text; give those a problem+json body instead.
async fn problem_for_bare_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    // Only bare answers: no body type, or the plain text of axum's own rejections.
    let bare = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_none_or(|v| v.as_bytes().starts_with(b"text/plain"));
    if !bare || response.status().is_success() || response.status().is_redirection() {
        return response;
    }
    let code = match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::BAD_REQUEST => Code::MalformedRequest,
        StatusCode::UNPROCESSABLE_ENTITY => Code::ValidationFailed,
        StatusCode::SERVICE_UNAVAILABLE => Code::LogUnavailable,
        _ => return response,
    };
    let detail = match code {
        Code::PayloadTooLarge => format!("the body exceeds {BODY_LIMIT} bytes"),
        _ => code.as_str().to_lowercase().replace('_', " "),
    };
    ApiError::new(code, detail).into_response()
}
