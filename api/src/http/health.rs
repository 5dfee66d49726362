//! `/health/live` (the process answers) and `/health/ready` (NATS and Postgres answer),
//! with one entry per component. No token needed.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::state::AppState;

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

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

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (nats, postgres) = tokio::join!(check_nats(&state), check_postgres(&state));
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
            "components": { "nats": nats, "postgres": postgres },
        })),
    )
}
