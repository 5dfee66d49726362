//! The command API over HTTP against real NATS: every route's success and its rejection
//! codes, concurrency, If-Match, idempotency, tokens and revocation, and governance.

mod support;

use std::time::{Duration, Instant};

use chronicle_events::{Domain, EventLog, StreamId};
use serde_json::{Value, json};
use support::{App, assert_problem};
use uuid::Uuid;

use chronicle_testkit::id;

async fn submit_job(app: &App, token: &str) -> String {
    let job_id = id();
    let a = app
        .post(
            "/v1/commands/jobs",
            token,
            json!({"job_id": job_id, "agent_id": "agent-1", "kind": "summarise", "input": {"doc": "q3.pdf"}}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    job_id
}

/// The types of the events of one stream, in order.
async fn types(app: &App, stream: &str) -> Vec<String> {
    let stream: StreamId = stream.parse().unwrap();
    app.state
        .log
        .read_stream(&stream, 1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.envelope.event_type)
        .collect()
}

#[tokio::test]
async fn a_job_moves_along_its_lifecycle_and_illegal_moves_are_refused() {
    let app = App::start().await;
    let job = submit_job(&app, &app.admin).await;
    let base = format!("/v1/commands/jobs/{job}");

    let a = app
        .post(&format!("{base}/start"), &app.admin, json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["etag"], "\"2\"");
    assert_eq!(a.body["version"], 2);
    assert_eq!(a.body["stream"], format!("job.{job}"));
    assert_eq!(a.body["events"][0]["type"], "JobStarted");
    assert!(a.body["position"].as_u64().unwrap() > 0);

    let a = app
        .post(&format!("{base}/start"), &app.admin, json!({}))
        .await;
    assert_problem(&a, 409, "INVALID_TRANSITION");
    let a = app
        .post(&format!("{base}/retry"), &app.admin, json!({}))
        .await;
    assert_problem(&a, 409, "INVALID_TRANSITION");
    let a = app
        .post(
            &format!("{base}/fail"),
            &app.admin,
            json!({"error": "timeout"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = app
        .post(&format!("{base}/retry"), &app.admin, json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = app
        .post(&format!("{base}/start"), &app.admin, json!({}))
        .await;
    assert_eq!(a.status, 200);
    let a = app
        .post(
            &format!("{base}/complete"),
            &app.admin,
            json!({"result": {"pages": 3}}),
        )
        .await;
    assert_eq!(a.status, 200);
    let a = app
        .post(
            &format!("{base}/cancel"),
            &app.admin,
            json!({"reason": "late"}),
        )
        .await;
    assert_problem(&a, 409, "INVALID_TRANSITION");
    assert_eq!(
        types(&app, &format!("job.{job}")).await,
        vec![
            "JobSubmitted",
            "JobStarted",
            "JobFailed",
            "JobRetried",
            "JobStarted",
            "JobCompleted"
        ]
    );

    let a = app
        .post(
            &format!("/v1/commands/jobs/{}/start", id()),
            &app.admin,
            json!({}),
        )
        .await;
    assert_problem(&a, 404, "NOT_FOUND");
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"job_id": job, "agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_problem(&a, 409, "ALREADY_EXISTS");
    // Without job_id one is made.
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert!(a.body["stream"].as_str().unwrap().starts_with("job."));
}

#[tokio::test]
async fn of_forty_concurrent_starts_one_succeeds_and_thirty_nine_are_invalid_transitions() {
    let app = App::start().await;
    let job = submit_job(&app, &app.admin).await;
    let path = format!("/v1/commands/jobs/{job}/start");
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let request = app.request(&path, &app.admin).json(&json!({}));
        tasks.push(tokio::spawn(async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }));
    }
    let mut ok = 0;
    let mut invalid = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            409 if body["code"] == "INVALID_TRANSITION" => invalid += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, invalid), (1, 39));
    assert_eq!(
        types(&app, &format!("job.{job}")).await,
        vec!["JobSubmitted", "JobStarted"]
    );
}

#[tokio::test]
async fn if_match_guards_the_version() {
    let app = App::start().await;
    let job = submit_job(&app, &app.admin).await;
    let path = format!("/v1/commands/jobs/{job}/start");
    let stale = app
        .send(
            app.request(&path, &app.admin)
                .header("If-Match", "\"7\"")
                .json(&json!({})),
        )
        .await;
    assert_problem(&stale, 409, "VERSION_CONFLICT");
    let bad = app
        .send(
            app.request(&path, &app.admin)
                .header("If-Match", "soon")
                .json(&json!({})),
        )
        .await;
    assert_problem(&bad, 400, "MALFORMED_REQUEST");
    let ok = app
        .send(
            app.request(&path, &app.admin)
                .header("If-Match", "\"1\"")
                .json(&json!({})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.headers["etag"], "\"2\"");
}

#[tokio::test]
async fn an_idempotency_key_returns_the_first_answer_and_appends_nothing() {
    let app = App::start().await;
    let body = json!({"agent_id": "a", "kind": "k", "input": {"n": 1}});
    let send = |key: &str, body: &Value| {
        app.send(
            app.request("/v1/commands/jobs", &app.admin)
                .header("Idempotency-Key", key)
                .json(body),
        )
    };
    let first = send("order-42", &body).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let before = app.log_len().await;
    let again = send("order-42", &body).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["etag"], first.headers["etag"]);
    assert_eq!(app.log_len().await, before, "nothing appended");

    let other = send("order-42", &json!({"agent_id": "a", "kind": "other"})).await;
    assert_problem(&other, 409, "IDEMPOTENCY_KEY_REUSED");

    // Racing requests with one key append once.
    let key = id();
    let (a, b) = tokio::join!(send(&key, &body), send(&key, &body));
    assert_eq!((a.status.as_u16(), b.status.as_u16()), (201, 201));
    assert_eq!(a.body["stream"], b.body["stream"]);
    assert_eq!(app.log_len().await, before + 1);
}

#[tokio::test]
async fn tokens_are_issued_by_admins_and_a_revoked_token_stops_working_everywhere() {
    let app = App::start().await;
    let peer = app.peer().await;
    let user = format!("u{}", id());
    let (token, jti) = app.token(&user, "writer").await;

    // The token works for what its role allows, and not beyond.
    let job = submit_job(&app, &token).await;
    assert!(!job.is_empty());
    let a = app
        .post(
            &format!("/v1/commands/users/{user}/tokens"),
            &token,
            json!({"role": "admin"}),
        )
        .await;
    assert_problem(&a, 403, "FORBIDDEN");
    let a = app
        .post(
            &format!("/v1/commands/users/{user}/tokens"),
            &app.admin,
            json!({"role": "king"}),
        )
        .await;
    assert_problem(&a, 400, "MALFORMED_REQUEST");
    let a = app
        .post(
            &format!("/v1/commands/users/{user}/tokens"),
            &app.admin,
            json!({"role": "writer", "ttl_seconds": 5}),
        )
        .await;
    assert_problem(&a, 422, "VALIDATION_FAILED");
    // The peer knows the token is valid too.
    let a = peer
        .post(
            "/v1/commands/jobs",
            &token,
            json!({"agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);

    let revoke = format!("/v1/commands/users/{user}/tokens/{jti}/revoke");
    let a = app
        .post(&revoke, &app.admin, json!({"reason": "lost laptop"}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["events"][0]["type"], "TokenRevoked");
    // Refused at once by the instance that took the revoke...
    let a = app
        .post(
            "/v1/commands/jobs",
            &token,
            json!({"agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_problem(&a, 401, "TOKEN_REVOKED");
    // ...and within a second by the other.
    let started = Instant::now();
    loop {
        let a = peer
            .post(
                "/v1/commands/jobs",
                &token,
                json!({"agent_id": "a", "kind": "k"}),
            )
            .await;
        if a.status == 401 {
            assert_problem(&a, 401, "TOKEN_REVOKED");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the peer still accepted a revoked token after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Revoking again is accepted and appends nothing.
    let a = app
        .post(&revoke, &app.admin, json!({"reason": "again"}))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["events"], json!([]));
    let a = app
        .post(
            &format!("/v1/commands/users/{user}/tokens/{}/revoke", Uuid::new_v4()),
            &app.admin,
            json!({"reason": "x"}),
        )
        .await;
    assert_problem(&a, 404, "NOT_FOUND");

    // Revoke-all revokes every token still active, and a user may revoke their own.
    let (t1, _) = app.token(&user, "analyst").await;
    let (t2, _) = app.token(&user, "writer").await;
    let a = app
        .post(
            &format!("/v1/commands/users/{user}/tokens/revoke-all"),
            &t1,
            json!({"reason": "offboarding"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["events"][0]["type"], "AllTokensRevoked");
    for t in [&t1, &t2] {
        let a = app
            .post(
                "/v1/commands/jobs",
                t,
                json!({"agent_id": "a", "kind": "k"}),
            )
            .await;
        assert_problem(&a, 401, "TOKEN_REVOKED");
    }
}

#[tokio::test]
async fn requests_without_a_good_token_are_refused_and_change_nothing() {
    let app = App::start().await;
    let before = app.log_len().await;
    let body = json!({"agent_id": "a", "kind": "k"});
    let a = app
        .send(
            app.http
                .post(format!("{}/v1/commands/jobs", app.base))
                .json(&body),
        )
        .await;
    assert_problem(&a, 401, "UNAUTHENTICATED");
    let a = app
        .post("/v1/commands/jobs", "not-a-jwt", body.clone())
        .await;
    assert_problem(&a, 401, "UNAUTHENTICATED");
    let (analyst, _) = app.token(&id(), "analyst").await;
    let a = app.post("/v1/commands/jobs", &analyst, body).await;
    assert_problem(&a, 403, "FORBIDDEN");
    assert_eq!(
        app.log_len().await,
        before + 1,
        "only the analyst's token was issued"
    );
}

#[tokio::test]
async fn malformed_bodies_are_400_and_change_nothing() {
    let app = App::start().await;
    let before = app.log_len().await;
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "bad json",
            app.request("/v1/commands/jobs", &app.admin)
                .header("content-type", "application/json")
                .body("{\"agent_id\": "),
        ),
        (
            "unknown field",
            app.request("/v1/commands/jobs", &app.admin)
                .json(&json!({"agent_id": "a", "kind": "k", "priority": 9})),
        ),
        (
            "wrong type",
            app.request("/v1/commands/jobs", &app.admin)
                .json(&json!({"agent_id": 7, "kind": "k"})),
        ),
        (
            "not json",
            app.request("/v1/commands/jobs", &app.admin)
                .header("content-type", "text/plain")
                .body("agent_id=a"),
        ),
        (
            "float money",
            app.request("/v1/commands/journal-entries", &app.admin)
                .json(&json!({
                "effective_date": "2026-01-31", "memo": "m",
                "lines": [{"account": "a", "debit": 1.5, "currency": "EUR"},
                          {"account": "b", "credit": 1.5, "currency": "EUR"}]})),
        ),
        (
            "deep nesting",
            app.request("/v1/commands/jobs", &app.admin)
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"agent_id\":\"a\",\"kind\":\"k\",\"input\":{}{}}}",
                    "[".repeat(500),
                    "]".repeat(500)
                )),
        ),
    ];
    for (what, request) in cases {
        let a = app.send(request).await;
        assert_problem(&a, 400, "MALFORMED_REQUEST");
        assert!(a.status.as_u16() < 500, "{what}");
    }
    let huge = app
        .send(
            app.request("/v1/commands/jobs", &app.admin)
                .json(&json!({"agent_id": "a", "kind": "k", "input": "x".repeat(2 * 1024 * 1024)})),
        )
        .await;
    assert_problem(&huge, 413, "PAYLOAD_TOO_LARGE");
    let bad_id = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"job_id": "a.b>", "agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_problem(&bad_id, 422, "VALIDATION_FAILED");
    assert_eq!(bad_id.body["errors"][0]["field"], "job_id");
    assert_eq!(app.log_len().await, before);
}

async fn open_account(app: &App, code: &str, kind: &str, currency: &str) {
    let a = app
        .post(
            "/v1/commands/accounts",
            &app.admin,
            json!({"code": code, "name": format!("Account {code}"), "type": kind, "currency": currency}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

#[tokio::test]
async fn journal_entries_balance_on_open_accounts_and_reverse_once() {
    let app = App::start().await;
    let (cash, sales, usd, old) = (id(), id(), id(), id());
    open_account(&app, &cash, "ASSET", "EUR").await;
    open_account(&app, &sales, "REVENUE", "EUR").await;
    open_account(&app, &usd, "ASSET", "USD").await;
    open_account(&app, &old, "EXPENSE", "EUR").await;
    let a = app
        .post(
            &format!("/v1/commands/accounts/{old}/close"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = app
        .post(
            &format!("/v1/commands/accounts/{old}/close"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_problem(&a, 422, "ACCOUNT_CLOSED");
    let a = app
        .post(
            "/v1/commands/accounts",
            &app.admin,
            json!({"code": cash, "name": "again", "type": "ASSET", "currency": "EUR"}),
        )
        .await;
    assert_problem(&a, 409, "ALREADY_EXISTS");

    let entry =
        |lines: Value| json!({"effective_date": "2026-01-31", "memo": "sale", "lines": lines});
    let line = |account: &str, side: &str, amount: Value, currency: &str| json!({"account": account, side: amount, "currency": currency});
    let big = "9223372036854775807";
    let a = app
        .post(
            "/v1/commands/journal-entries",
            &app.admin,
            entry(json!([
                line(&cash, "debit", json!(big), "EUR"),
                line(&sales, "credit", json!(big), "EUR")
            ])),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let entry_id = a.body["stream"]
        .as_str()
        .unwrap()
        .strip_prefix("entry.")
        .unwrap()
        .to_owned();

    for (lines, status, code) in [
        (
            json!([
                line(&cash, "debit", json!(2), "EUR"),
                line(&sales, "credit", json!(1), "EUR")
            ]),
            422,
            "UNBALANCED_ENTRY",
        ),
        (
            json!([
                line(&cash, "debit", json!(1), "EUR"),
                line(&id(), "credit", json!(1), "EUR")
            ]),
            422,
            "UNKNOWN_ACCOUNT",
        ),
        (
            json!([
                line(&cash, "debit", json!(1), "EUR"),
                line(&old, "credit", json!(1), "EUR")
            ]),
            422,
            "ACCOUNT_CLOSED",
        ),
        (
            json!([
                line(&usd, "debit", json!(1), "EUR"),
                line(&sales, "credit", json!(1), "EUR")
            ]),
            422,
            "CURRENCY_MISMATCH",
        ),
        (
            json!([line(&cash, "debit", json!(1), "EUR")]),
            422,
            "VALIDATION_FAILED",
        ),
        (
            json!([
                line(&cash, "debit", json!(0), "EUR"),
                line(&sales, "credit", json!(0), "EUR")
            ]),
            422,
            "VALIDATION_FAILED",
        ),
        (
            json!([
                line(&cash, "debit", json!("9223372036854775808"), "EUR"),
                line(&sales, "credit", json!(1), "EUR")
            ]),
            400,
            "MALFORMED_REQUEST",
        ),
    ] {
        let a = app
            .post("/v1/commands/journal-entries", &app.admin, entry(lines))
            .await;
        assert_problem(&a, status, code);
    }

    let reverse = format!("/v1/commands/journal-entries/{entry_id}/reverse");
    let a = app
        .post(&reverse, &app.admin, json!({"reason": "duplicate invoice"}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let kinds: Vec<&str> = a.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["JournalEntryReversed", "JournalEntryPosted"]);
    let mirror_stream = a.body["events"][1]["stream"].as_str().unwrap().to_owned();
    let mirror: StreamId = mirror_stream.parse().unwrap();
    let posted = app.state.log.read_stream(&mirror, 1).await.unwrap();
    let data = &posted[0].envelope.data;
    assert_eq!(data["reverses"], entry_id.as_str());
    assert_eq!(
        data["lines"][0]["credit"].to_string(),
        big,
        "money is never rounded"
    );
    let a = app
        .post(&reverse, &app.admin, json!({"reason": "again"}))
        .await;
    assert_problem(&a, 409, "INVALID_TRANSITION");
}

#[tokio::test]
async fn approvals_are_decided_once_by_people() {
    let app = App::start().await;
    let a = app
        .post(
            "/v1/commands/approvals",
            &app.admin,
            json!({"action": "wire.send", "payload": {"amount": 100}, "reason": "vendor"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let approval = a.body["stream"]
        .as_str()
        .unwrap()
        .strip_prefix("approval.")
        .unwrap()
        .to_owned();
    let (writer, _) = app.token(&id(), "writer").await;
    let a = app
        .post(
            &format!("/v1/commands/approvals/{approval}/reject"),
            &writer,
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = app
        .post(
            &format!("/v1/commands/approvals/{approval}/approve"),
            &app.admin,
            json!({}),
        )
        .await;
    assert_problem(&a, 409, "INVALID_TRANSITION");
}

#[tokio::test]
async fn governance_allows_escalates_denies_and_bypasses_with_every_decision_on_record() {
    let app = App::start().await;
    let agent = format!("bot-{}", id());
    let a = app
        .post(
            "/v1/commands/agents",
            &app.admin,
            json!({"agent_id": agent, "name": "Invoice bot", "maturity": "STUDENT"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = app
        .post(
            &format!("/v1/commands/users/{}/tokens", id()),
            &app.admin,
            json!({"role": "agent"}),
        )
        .await;
    assert_problem(&a, 422, "UNKNOWN_AGENT");
    let (bot, _) = app.token(&agent, "agent").await;

    // LOW: allowed, the decision lands with the job.
    let job = submit_job(&app, &bot).await;
    let a = app
        .post(&format!("/v1/commands/jobs/{job}/start"), &bot, json!({}))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let kinds: Vec<&str> = a.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["JobStarted", "GovernanceDecisionRecorded"]);

    // MODERATE as a STUDENT: escalated; the job is untouched until a human approves.
    let a = app
        .post(
            &format!("/v1/commands/jobs/{job}/cancel"),
            &bot,
            json!({"reason": "stuck"}),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let approval_id = a.body["approval_id"].as_str().unwrap().to_owned();
    assert_eq!(
        types(&app, &format!("job.{job}")).await,
        vec!["JobSubmitted", "JobStarted"]
    );
    // Agents never approve.
    let a = app
        .post(
            &format!("/v1/commands/approvals/{approval_id}/approve"),
            &bot,
            json!({}),
        )
        .await;
    assert_problem(&a, 403, "FORBIDDEN");
    let approve = format!("/v1/commands/approvals/{approval_id}/approve");
    let (first, second) = tokio::join!(
        app.post(&approve, &app.admin, json!({"reason": "ok"})),
        app.post(&approve, &app.admin, json!({"reason": "ok"}))
    );
    let (winner, loser) = if first.status == 200 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(winner.status, 200, "{}", winner.body);
    assert_problem(&loser, 409, "INVALID_TRANSITION");
    assert_eq!(
        winner.body["escalated"]["outcome"], "EXECUTED",
        "{}",
        winner.body
    );
    let job_events = app
        .state
        .log
        .read_stream(&format!("job.{job}").parse().unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(
        job_events.len(),
        3,
        "the escalated command ran exactly once"
    );
    let cancelled = &job_events[2].envelope;
    assert_eq!(cancelled.event_type, "JobCancelled");
    assert_eq!(cancelled.actor.id, agent, "it ran as the agent");
    assert!(cancelled.causation_id.is_some(), "caused by the approval");

    // HIGH as a STUDENT: denied, and the denial is recorded.
    let a = app
        .post(
            &format!("/v1/commands/accounts/{}/close", id()),
            &bot,
            json!({}),
        )
        .await;
    assert_problem(&a, 403, "GOVERNANCE_DENIED");

    // The bypass lets it through, as BYPASSED, only while on.
    let a = app
        .post(
            "/v1/commands/governance/bypass",
            &bot,
            json!({"enabled": true, "reason": "me"}),
        )
        .await;
    assert_problem(&a, 403, "FORBIDDEN");
    let a = app
        .post(
            "/v1/commands/governance/bypass",
            &app.admin,
            json!({"enabled": true, "reason": "incident 42", "until": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let job2 = submit_job(&app, &app.admin).await;
    let a = app
        .post(
            &format!("/v1/commands/jobs/{job2}/cancel"),
            &bot,
            json!({"reason": "bypass"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = app
        .post(
            "/v1/commands/governance/bypass",
            &app.admin,
            json!({"enabled": false, "reason": "over"}),
        )
        .await;
    assert_eq!(a.status, 200);
    let a = app
        .post(
            &format!(
                "/v1/commands/jobs/{}/cancel",
                submit_job(&app, &app.admin).await
            ),
            &bot,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(
        a.status, 202,
        "escalated again once the bypass is off: {}",
        a.body
    );

    let agent_stream = StreamId::new(Domain::Agent, agent.as_str()).unwrap();
    let outcomes: Vec<String> = app
        .state
        .log
        .read_stream(&agent_stream, 1)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.envelope.event_type == "GovernanceDecisionRecorded")
        .map(|e| e.envelope.data["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        outcomes,
        vec![
            "ALLOWED",
            "ALLOWED",
            "ESCALATED",
            "DENIED",
            "BYPASSED",
            "ESCALATED"
        ]
    );
}

#[tokio::test]
async fn a_maturity_change_moves_what_an_agent_may_do_alone() {
    let app = App::start().await;
    let agent = format!("bot-{}", id());
    let register = json!({"agent_id": agent, "name": "Ledger bot", "maturity": "INTERN"});
    let a = app
        .post("/v1/commands/agents", &app.admin, register.clone())
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = app.post("/v1/commands/agents", &app.admin, register).await;
    assert_problem(&a, 409, "ALREADY_EXISTS");
    let (bot, _) = app.token(&agent, "agent").await;
    let code = id();
    let a = app
        .post(
            "/v1/commands/accounts",
            &bot,
            json!({"code": code, "name": "Petty cash", "type": "ASSET", "currency": "EUR"}),
        )
        .await;
    assert_eq!(
        a.status, 201,
        "MODERATE is allowed to an INTERN: {}",
        a.body
    );
    let close = format!("/v1/commands/accounts/{code}/close");
    let a = app.post(&close, &bot, json!({})).await;
    assert_eq!(a.status, 202, "HIGH is escalated for an INTERN: {}", a.body);

    let maturity = format!("/v1/commands/agents/{agent}/maturity");
    let a = app
        .post(
            &maturity,
            &bot,
            json!({"maturity": "AUTONOMOUS", "reason": "trust me"}),
        )
        .await;
    // No agent changes its own maturity, whatever its maturity or the bypass.
    assert_problem(&a, 403, "FORBIDDEN");
    let a = app
        .post(
            &maturity,
            &app.admin,
            json!({"maturity": "SUPERVISED", "reason": "90 days clean"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["events"][0]["type"], "AgentMaturityChanged");
    let a = app
        .post(
            &maturity,
            &app.admin,
            json!({"maturity": "SUPERVISED", "reason": "again"}),
        )
        .await;
    assert_problem(&a, 409, "INVALID_TRANSITION");
    let a = app.post(&close, &bot, json!({})).await;
    assert_eq!(
        a.status, 200,
        "HIGH is allowed to a SUPERVISED agent: {}",
        a.body
    );
}

#[tokio::test]
async fn a_process_that_never_saw_a_stream_still_refuses_to_create_it_twice() {
    // Creations are decided on the empty state without reading the log first; a stream
    // that does exist makes the append conflict, and the command is decided again on the
    // stream as stored. The peer has never seen these streams.
    let app = App::start().await;
    let peer = app.peer().await;
    let job = format!("j{}", id());
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"job_id": job, "agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let before = app.log_len().await;
    let a = peer
        .post(
            "/v1/commands/jobs",
            &peer.admin,
            json!({"job_id": job, "agent_id": "b", "kind": "k"}),
        )
        .await;
    assert_problem(&a, 409, "ALREADY_EXISTS");
    assert_eq!(app.log_len().await, before, "nothing appended");
    // And the peer goes on from the stored state.
    let a = peer
        .post(
            &format!("/v1/commands/jobs/{job}/start"),
            &peer.admin,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["version"], 2);
    // A command the empty state refuses is never guessed: it reads the stream.
    let other = format!("j{}", id());
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"job_id": other, "agent_id": "a", "kind": "k"}),
        )
        .await;
    assert_eq!(a.status, 201);
    let a = peer
        .post(
            &format!("/v1/commands/jobs/{other}/start"),
            &peer.admin,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
}
