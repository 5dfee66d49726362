//! A table of malformed and hostile requests against every route: each answers a 4xx
//! problem+json (never a 5xx), and nothing is appended.

mod support;

use serde_json::json;
use support::App;

/// Every route the application declares, from its own OpenAPI document: a route added
/// later is in the table without anyone remembering to add it.
fn declared(prefix: &str) -> Vec<String> {
    let (_, doc) =
        chronicle_api::http::routes(chronicle_api::http::ServeRole::All).split_for_parts();
    doc.paths
        .paths
        .keys()
        .filter(|p| p.starts_with(prefix))
        .cloned()
        .collect()
}

/// `template` with each `{param}` made a plausible value (a UUID for a token id).
fn plausible(template: &str) -> String {
    template
        .split('/')
        .map(|seg| match seg {
            "{jti}" => "00000000-0000-0000-0000-000000000000",
            s if s.starts_with('{') => "x1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `template` once per path parameter, that parameter made `hostile` and the others
/// plausible.
fn with_hostile(template: &str, hostile: &str) -> Vec<String> {
    let segs: Vec<&str> = template.split('/').collect();
    (0..segs.len())
        .filter(|i| segs[*i].starts_with('{'))
        .map(|i| {
            let mut s: Vec<String> = segs.iter().map(|x| plausible(x)).collect();
            s[i] = hostile.to_owned();
            s.join("/")
        })
        .collect()
}

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
    let routes = declared("/v1/commands/");
    assert!(routes.len() >= 24, "{routes:?}");
    for route in routes.iter().map(|r| plausible(r)) {
        let route = route.as_str();
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
        for path in routes.iter().flat_map(|t| with_hostile(t, seg)) {
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
        "/v1/queries/invoices?status=LATE",
        "/v1/queries/journal-entries?source=%00",
        "/v1/queries/revenue?from=0001-01-01&to=262142-12-31",
        "/v1/queries/revenue?to=262142-12-31",
        "/v1/queries/revenue?from=-262143-01-01&to=-262143-03-01",
        "/v1/queries/revenue?currency=eur",
        "/v1/queries/journal-entries?from=-262143-01-01",
        "/v1/queries/trial-balance?as_of=%2B262142-01-01",
        "/v1/queries/governance/decisions?from=0000-01-01T00:00:00Z",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let templates: Vec<String> = [declared("/v1/queries/"), declared("/v1/audit/")].concat();
    for seg in HOSTILE_SEGMENTS {
        for template in &templates {
            paths.extend(with_hostile(template, seg));
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
async fn a_date_no_read_store_keeps_never_reaches_the_log() {
    let app = App::start().await;
    for code in ["1000", "4000"] {
        app.post(
            "/v1/commands/accounts",
            &app.admin,
            json!({"code": code, "name": code, "type": "ASSET", "currency": "EUR"}),
        )
        .await;
    }
    let before = app.log_len().await;
    for day in ["-262143-01-01", "0000-12-31", "+10000-01-01"] {
        let a = app
            .post(
                "/v1/commands/journal-entries",
                &app.admin,
                json!({"effective_date": day, "lines": [
                    {"account": "1000", "debit": 1, "currency": "EUR"},
                    {"account": "4000", "credit": 1, "currency": "EUR"}]}),
            )
            .await;
        assert_client_error(day, &a);
        let a = app
            .post(
                "/v1/commands/invoices",
                &app.admin,
                json!({"customer": "c", "currency": "EUR", "issue_date": day,
                       "lines": [{"description": "x", "amount": 1}],
                       "recognition": {"method": "ON_DELIVERY"}}),
            )
            .await;
        assert_client_error(day, &a);
    }
    assert_eq!(app.log_len().await, before);
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
    // The text `\u0000` (a backslash, then `u0000`) is not a NUL: accepted as it is.
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"agent_id": "a", "kind": "k\\u0000", "input": {"\\\\u0000": "\\u0000"}}),
        )
        .await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.body);
    assert_eq!(app.log_len().await, before + 1);
}
