//! A table of malformed and hostile requests against every route: each answers a 4xx
//! problem+json (never a 5xx), and nothing is appended.

mod support;

use serde_json::json;
use support::App;

const COMMAND_ROUTES: &[&str] = &[
    "/v1/commands/users/u1/tokens",
    "/v1/commands/users/u1/tokens/00000000-0000-0000-0000-000000000000/revoke",
    "/v1/commands/users/u1/tokens/revoke-all",
    "/v1/commands/jobs",
    "/v1/commands/jobs/j1/start",
    "/v1/commands/jobs/j1/complete",
    "/v1/commands/jobs/j1/fail",
    "/v1/commands/jobs/j1/cancel",
    "/v1/commands/jobs/j1/retry",
    "/v1/commands/approvals",
    "/v1/commands/approvals/a1/approve",
    "/v1/commands/approvals/a1/reject",
    "/v1/commands/accounts",
    "/v1/commands/accounts/1000/close",
    "/v1/commands/journal-entries",
    "/v1/commands/journal-entries/e1/reverse",
    "/v1/commands/agents",
    "/v1/commands/agents/b1/maturity",
    "/v1/commands/governance/bypass",
];

const HOSTILE_SEGMENTS: &[&str] = &[
    "..%2F..%2Fetc%2Fpasswd",
    "%27%3B%20DROP%20TABLE%20read.jobs%3B--",
    "a.b.c",
    "%2A",
    "%3E",
    "%00",
    "%F0%9F%92%A5",
];

fn bodies() -> Vec<(&'static str, String)> {
    vec![
        ("not json", "agent_id=a".into()),
        ("truncated", "{\"agent_id\": ".into()),
        ("an array", "[1,2,3]".into()),
        ("a string", "\"hello\"".into()),
        ("null", "null".into()),
        ("unknown field", "{\"sudo\": true}".into()),
        ("wrong types", "{\"agent_id\": 1, \"kind\": [], \"reason\": {}, \"role\": 7, \"maturity\": false, \"enabled\": \"yes\", \"lines\": \"many\", \"code\": 1}".into()),
        ("deep nesting", format!("{{\"input\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000))),
        ("injection strings", "{\"agent_id\": \"'; DROP TABLE read.jobs;--\", \"kind\": \"$(rm -rf /)\", \"reason\": \"<script>alert(1)</script>\"}".into()),
        ("a long string", format!("{{\"reason\": \"{}\"}}", "x".repeat(900_000))),
        ("invalid utf-8 escape", "{\"reason\": \"\\ud800\"}".into()),
    ]
}

fn assert_client_error(what: &str, a: &support::Answer) {
    let s = a.status.as_u16();
    assert!((400..500).contains(&s), "{what}: answered {s}: {}", a.body);
    assert_eq!(
        a.headers["content-type"], "application/problem+json",
        "{what}: {}",
        a.body
    );
    let detail = a.body["detail"].as_str().unwrap_or_default();
    for leak in ["SELECT", "INSERT", "panicked", "/root/", "/work/", "src/"] {
        assert!(
            !detail.contains(leak),
            "{what}: detail leaks `{leak}`: {detail}"
        );
    }
}

#[tokio::test]
async fn hostile_commands_are_4xx_and_change_nothing() {
    let app = App::start().await;
    let before = app.log_len().await;
    for route in COMMAND_ROUTES {
        for (what, body) in bodies() {
            let a = app
                .send(
                    app.request(route, &app.admin)
                        .header("content-type", "application/json")
                        .body(body),
                )
                .await;
            assert_client_error(&format!("{route} with {what}"), &a);
        }
        let a = app
            .send(
                app.request(route, &app.admin)
                    .header("content-type", "application/xml")
                    .body("<a/>"),
            )
            .await;
        assert_client_error(&format!("{route} as xml"), &a);
    }
    for seg in HOSTILE_SEGMENTS {
        for template in [
            "/v1/commands/jobs/{}/start",
            "/v1/commands/accounts/{}/close",
            "/v1/commands/users/{}/tokens/revoke-all",
            "/v1/commands/approvals/{}/approve",
            "/v1/commands/agents/{}/maturity",
        ] {
            let path = template.replace("{}", seg);
            let a = app
                .post(
                    &path,
                    &app.admin,
                    json!({"reason": "r", "maturity": "INTERN"}),
                )
                .await;
            assert_client_error(&path, &a);
        }
    }
    assert_eq!(app.log_len().await, before, "nothing was appended");
}

#[tokio::test]
async fn hostile_queries_and_audits_are_4xx_or_empty_never_5xx() {
    let app = App::with_read_models().await;
    let mut paths: Vec<String> = [
        "/v1/queries/jobs?limit=1000000000",
        "/v1/queries/jobs?limit=1e3",
        "/v1/queries/jobs?after=AAAA",
        "/v1/queries/jobs?after=%00%00",
        "/v1/queries/jobs?status=PENDING&status=RUNNING",
        "/v1/queries/journal-entries?from=2026-02-30",
        "/v1/queries/trial-balance?as_of=99999-01-01",
        "/v1/queries/governance/decisions?from=2026-01-01T00:00:00",
        "/v1/audit/events?from_position=-1",
        "/v1/audit/events?to_position=18446744073709551616",
        "/v1/audit/events?stream=job.%3E",
        "/v1/audit/verify?from_position=abc",
        "/v1/audit/streams/job/x/state?at_position=-5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for seg in HOSTILE_SEGMENTS {
        for template in [
            "/v1/queries/jobs/{}",
            "/v1/queries/jobs/{}/history",
            "/v1/queries/tokens/{}",
            "/v1/queries/accounts/{}",
            "/v1/queries/journal-entries/{}",
            "/v1/queries/agents/{}",
            "/v1/queries/approvals/{}",
            "/v1/queries/users/{}/tokens",
            "/v1/audit/streams/job/{}/state",
            "/v1/audit/streams/{}/x/state",
        ] {
            paths.push(template.replace("{}", seg));
        }
    }
    for path in paths {
        let a = app.get(&path, &app.admin, None).await;
        let s = a.status.as_u16();
        assert!(s < 500, "{path}: answered {s}: {}", a.body);
        if s >= 400 {
            assert_client_error(&path, &a);
        }
    }
    let a = app
        .send(
            app.http
                .post(format!("{}/v1/introspect", app.base))
                .bearer_auth(&app.admin)
                .header("content-type", "application/json")
                .body("{\"token\": 1}"),
        )
        .await;
    assert_client_error("introspect as json", &a);
}

#[tokio::test]
async fn a_nul_character_never_reaches_the_log() {
    let app = App::start().await;
    let before = app.log_len().await;
    for body in [
        json!({"agent_id": "a", "kind": "k\u{0}"}),
        json!({"agent_id": "a", "kind": "k", "input": {"x": "\u{0}"}}),
        json!({"agent_id": "a", "kind": "k", "input": {"\u{0}": 1}}),
    ] {
        let a = app.post("/v1/commands/jobs", &app.admin, body).await;
        assert_client_error("NUL", &a);
    }
    assert_eq!(app.log_len().await, before);
}
