//! The HTTP application in-process against the real NATS and Postgres: health, request
//! ids, and problem+json for what no route answers.

use chronicle_api::config::{Cli, Settings};
use chronicle_api::server;
use clap::Parser;
use tokio::net::TcpListener;

fn settings(database_url: &str) -> Settings {
    let nats = std::env::var("NATS_URL").expect("NATS_URL is not set: run scripts/test");
    Cli::parse_from([
        "chronicle",
        "--nats-url",
        &nats,
        "--database-url",
        database_url,
        "--signing-key",
        &"ab".repeat(32),
        "serve",
    ])
    .settings
}

async fn start(settings: Settings) -> String {
    let state = server::connect(&settings).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(state, listener, std::future::pending()));
    format!("http://{addr}")
}

fn database_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL is not set: run scripts/test")
}

#[tokio::test]
async fn ready_reports_each_component() {
    let base = start(settings(&database_url())).await;
    let r = reqwest::get(format!("{base}/health/ready")).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["components"]["nats"]["status"], "up");
    assert_eq!(body["components"]["postgres"]["status"], "up");
}

#[tokio::test]
async fn ready_is_503_when_postgres_is_away_and_live_still_answers() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = start(settings(&format!(
        "postgres://chronicle@127.0.0.1:{port}/x"
    )))
    .await;
    let r = reqwest::get(format!("{base}/health/ready")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["components"]["nats"]["status"], "up");
    assert_eq!(body["components"]["postgres"]["status"], "down");
    assert!(
        !body.to_string().contains(&port.to_string()),
        "no connection detail leaks: {body}"
    );
    let r = reqwest::get(format!("{base}/health/live")).await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_json_with_the_request_id() {
    let base = start(settings(&database_url())).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{base}/v1/nothing/here"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "NOT_FOUND");
    assert_eq!(body["type"], "urn:chronicle:error:NOT_FOUND");
    assert_eq!(body["status"], 404);
    assert_eq!(body["request_id"], "trace-42");

    let r = client
        .delete(format!("{base}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["request_id"], id.as_str());
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
}
