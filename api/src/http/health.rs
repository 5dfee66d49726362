//! `/health/live` (the process answers) and `/health/ready` (NATS and Postgres answer),
//! with one entry per component. No token needed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    summary = "The process answers",
    params(
    ),
    responses(
        (status = 200, description = "OK", body = crate::http::openapi::Document),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
async fn live() -> Json<Value> {
    Json(json!({ "status": "live" }))
}

fn component(result: Result<Value, String>) -> (bool, Value) {
    match result {
        Ok(mut details) => {
            details["status"] = json!("up");
            (true, details)
        }
        Err(why) => (false, json!({ "status": "down", "detail": why })),
    }
}

async fn check_nats(state: &AppState) -> Result<Value, String> {
    use chronicle_events::EventLog;
    match tokio::time::timeout(CHECK_TIMEOUT, state.log.last_position()).await {
        Ok(Ok(position)) => Ok(json!({ "last_position": position })),
        Ok(Err(_)) => Err("the event log does not answer".into()),
        Err(_) => Err("the event log did not answer in time".into()),
    }
}

async fn check_postgres(state: &AppState) -> Result<Value, String> {
    let probe = async {
        let client = state.db.get().await.map_err(|_| ())?;
        client.simple_query("SELECT 1").await.map_err(|_| ())?;
        Ok::<_, ()>(())
    };
    match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
        Ok(Ok(())) => Ok(json!({})),
        Ok(Err(())) => Err("the read store does not answer".into()),
        Err(_) => Err("the read store did not answer in time".into()),
    }
}

/// Each projection's position, lag and state (a failed projection is listed with its
/// error but does not make the process unready: queries of the other read models still
/// answer).
async fn check_projections(state: &AppState, log_position: Option<u64>) -> Value {
    let probe = async {
        let client = state.db.get().await.ok()?;
        client
            .query(
                "SELECT name, position, state, error_position FROM read.projection_checkpoints ORDER BY name",
                &[],
            )
            .await
            .ok()
    };
    let Ok(Some(rows)) = tokio::time::timeout(CHECK_TIMEOUT, probe).await else {
        return json!({ "status": "unknown" });
    };
    let mut out = serde_json::Map::new();
    for r in rows {
        let position = r.get::<_, i64>(1) as u64;
        out.insert(
            r.get(0),
            json!({
                "status": r.get::<_, String>(2),
                "position": position,
                "lag": log_position.map(|p| p.saturating_sub(position)),
                "error_position": r.get::<_, Option<i64>>(3),
            }),
        );
    }
    Value::Object(out)
}

#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    summary = "NATS, Postgres and projections",
    params(
    ),
    responses(
        (status = 200, description = "OK", body = crate::http::openapi::Document),
        (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
    ),
)]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (nats, postgres) = tokio::join!(check_nats(&state), check_postgres(&state));
    let log_position = nats.as_ref().ok().and_then(|v| v["last_position"].as_u64());
    let projections = if postgres.is_ok() {
        check_projections(&state, log_position).await
    } else {
        json!({ "status": "unknown" })
    };
    let (nats_ok, nats) = component(nats);
    let (pg_ok, postgres) = component(postgres);
    let ok = nats_ok && pg_ok;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ok { "ready" } else { "not_ready" },
            "components": { "nats": nats, "postgres": postgres, "projections": projections },
        })),
    )
}
