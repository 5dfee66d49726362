//! The HTTP application in-process against the real NATS and Postgres: health, request
//! ids, and problem+json for what no route answers.

use chronicle_api::config::{Cli, Settings};
use chronicle_api::http::ServeRole;
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
        support::SIGNING_KEY,
        "--event-key",
        support::EVENT_KEY,
        "serve",
    ])
    .settings
}

async fn start(settings: Settings) -> String {
    start_as(settings, ServeRole::All).await
}

async fn start_as(settings: Settings, role: ServeRole) -> String {
    let state = server::connect(&settings).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(state, role, listener, std::future::pending()));
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

mod support;

#[tokio::test]
async fn answers_carry_security_headers_and_cors_only_for_allowed_origins() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &database_url(),
    );
    settings.cors_origins = vec!["https://console.example".into()];
    let app = support::App::start_with(settings).await;
    for path in ["/health/live", "/nowhere"] {
        let r = app
            .send(
                app.http
                    .get(format!("{}{path}", app.base))
                    .header("Origin", "https://console.example"),
            )
            .await;
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers["x-frame-options"], "DENY");
        assert!(
            r.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        assert_eq!(r.headers["referrer-policy"], "no-referrer");
        assert!(
            !r.headers.contains_key("strict-transport-security"),
            "HSTS only when configured"
        );
        assert_eq!(
            r.headers["access-control-allow-origin"],
            "https://console.example"
        );
    }
    let r = app
        .send(
            app.http
                .get(format!("{}/health/live", app.base))
                .header("Origin", "https://evil.example"),
        )
        .await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn a_caller_over_the_rate_limit_gets_429_with_retry_after() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &database_url(),
    );
    settings.rate_limit = 5;
    let app = support::App::start_with(settings).await;
    let mut limited = None;
    for _ in 0..40 {
        let r = app
            .send(
                app.http
                    .get(format!("{}/v1/queries/projections", app.base))
                    .bearer_auth(&app.admin),
            )
            .await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("40 requests at once exceed 5/s with a burst of 10");
    support::assert_problem(&r, 429, "RATE_LIMITED");
    assert!(r.headers.contains_key("retry-after"));
    // Another token is not held to the first one's limit.
    let (other, _) = {
        // Issued through the system path: the admin's own HTTP budget is spent.
        let t = chronicle_api::server::issue_token(
            &app.state,
            "other",
            chronicle_events::domain::user::Role::Admin,
            None,
        )
        .await
        .unwrap();
        (t, ())
    };
    let r = app
        .send(
            app.http
                .get(format!("{}/health/live", app.base))
                .bearer_auth(&other),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn metrics_count_requests_commands_and_projection_lag() {
    let app = support::App::start().await;
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            serde_json::json!({"agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_eq!(a.status, 201);
    let _ = app
        .post(
            "/v1/commands/jobs/none/start",
            &app.admin,
            serde_json::json!({}),
        )
        .await;
    let r = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for needle in [
        "chronicle_http_requests_total{method=\"POST\",route=\"/v1/commands/jobs\",status=\"201\"}",
        "chronicle_commands_total{command=\"job.submit\",outcome=\"ok\"}",
        "chronicle_commands_total{command=\"job.start\",outcome=\"rejected\"}",
        "chronicle_command_duration_seconds_bucket",
        "chronicle_append_duration_seconds_bucket",
        "chronicle_projection_lag{projection=\"jobs\"}",
        "chronicle_revoked_tokens",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(
        !text.contains("/v1/commands/jobs/none"),
        "ids never become labels"
    );
}

#[tokio::test]
async fn openapi_describes_every_route_and_docs_list_them() {
    let app = support::App::start().await;
    let r = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let spec: serde_json::Value = r.json().await.unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    let routes = [
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("post", "/v1/commands/users/{user_id}/tokens"),
        ("post", "/v1/commands/users/{user_id}/tokens/{jti}/revoke"),
        ("post", "/v1/commands/users/{user_id}/tokens/revoke-all"),
        ("post", "/v1/commands/jobs"),
        ("post", "/v1/commands/jobs/{id}/start"),
        ("post", "/v1/commands/jobs/{id}/complete"),
        ("post", "/v1/commands/jobs/{id}/fail"),
        ("post", "/v1/commands/jobs/{id}/cancel"),
        ("post", "/v1/commands/jobs/{id}/retry"),
        ("post", "/v1/commands/approvals"),
        ("post", "/v1/commands/approvals/{id}/approve"),
        ("post", "/v1/commands/approvals/{id}/reject"),
        ("post", "/v1/commands/accounts"),
        ("post", "/v1/commands/accounts/{code}/close"),
        ("post", "/v1/commands/journal-entries"),
        ("post", "/v1/commands/journal-entries/{id}/reverse"),
        ("post", "/v1/commands/agents"),
        ("post", "/v1/commands/agents/{id}/maturity"),
        ("post", "/v1/commands/governance/bypass"),
        ("get", "/v1/queries/users/{user_id}/tokens"),
        ("get", "/v1/queries/tokens/{jti}"),
        ("post", "/v1/introspect"),
        ("get", "/v1/queries/jobs"),
        ("get", "/v1/queries/jobs/{id}"),
        ("get", "/v1/queries/jobs/{id}/history"),
        ("get", "/v1/queries/approvals"),
        ("get", "/v1/queries/approvals/{id}"),
        ("get", "/v1/queries/accounts"),
        ("get", "/v1/queries/accounts/{code}"),
        ("get", "/v1/queries/journal-entries"),
        ("get", "/v1/queries/journal-entries/{id}"),
        ("get", "/v1/queries/trial-balance"),
        ("get", "/v1/queries/agents"),
        ("get", "/v1/queries/agents/{id}"),
        ("get", "/v1/queries/governance/decisions"),
        ("get", "/v1/queries/projections"),
        ("get", "/v1/audit/events"),
        ("get", "/v1/audit/streams/{domain}/{id}/state"),
        ("get", "/v1/audit/verify"),
        ("get", "/v1/audit/seal-key"),
    ];
    for (method, path) in routes {
        assert!(
            spec["paths"][path][method].is_object(),
            "{method} {path} is not described"
        );
    }
    assert!(spec["components"]["schemas"]["Problem"].is_object());
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let page = app
        .http
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("/v1/queries/trial-balance")
    );
}

#[tokio::test]
async fn a_process_serves_only_its_role_s_routes() {
    let http = reqwest::Client::new();
    for (role, served, not_served) in [
        (ServeRole::Commands, "/v1/commands/jobs", "/v1/queries/jobs"),
        (ServeRole::Queries, "/v1/queries/jobs", "/v1/audit/verify"),
        (ServeRole::Audit, "/v1/audit/verify", "/v1/commands/jobs"),
    ] {
        let base = start_as(settings(&database_url()), role).await;
        let status = |path: &str| {
            let req = if path.starts_with("/v1/commands") {
                http.post(format!("{base}{path}"))
            } else {
                http.get(format!("{base}{path}"))
            };
            async move { req.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(status(served).await, 401, "{role:?} serves {served}");
        assert_eq!(
            status(not_served).await,
            404,
            "{role:?} serves {not_served}"
        );
        assert_eq!(status("/health/live").await, 200);
        let doc: serde_json::Value = http
            .get(format!("{base}/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(doc["paths"].get(served).is_some(), "{role:?}");
        assert!(doc["paths"].get(not_served).is_none(), "{role:?}");
    }
}
