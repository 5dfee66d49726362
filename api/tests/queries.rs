//! The query API against real NATS and Postgres, with the projectors running: every route
//! and filter, pagination, read-your-writes, validation, lagging, and Postgres away.

mod support;

use serde_json::{Value, json};
use support::{App, assert_problem};

use chronicle_testkit::id;

fn pos(a: &support::Answer) -> u64 {
    a.body["position"]
        .as_u64()
        .unwrap_or_else(|| panic!("no position in {}", a.body))
}

/// Posts a command as admin and answers its position.
async fn cmd(app: &App, path: &str, body: Value) -> support::Answer {
    let a = app.post(path, &app.admin, body).await;
    assert!(a.status.is_success(), "{path}: {}", a.body);
    a
}

#[tokio::test]
async fn jobs_are_queryable_with_filters_history_and_pages() {
    let app = App::with_read_models().await;
    let (analyst, _) = app.token(&id(), "analyst").await;
    let kind = id();
    let mut last = 0;
    let mut ids = Vec::new();
    for i in 0..25 {
        let agent = if i % 2 == 0 { "even-bot" } else { "odd-bot" };
        let a = cmd(
            &app,
            "/v1/commands/jobs",
            json!({"agent_id": agent, "kind": kind, "input": {"i": i}}),
        )
        .await;
        ids.push(
            a.body["stream"]
                .as_str()
                .unwrap()
                .strip_prefix("job.")
                .unwrap()
                .to_owned(),
        );
        last = pos(&a);
    }
    let a = cmd(
        &app,
        &format!("/v1/commands/jobs/{}/start", ids[0]),
        json!({}),
    )
    .await;
    last = last.max(pos(&a));
    let a = cmd(
        &app,
        &format!("/v1/commands/jobs/{}/fail", ids[0]),
        json!({"error": "boom"}),
    )
    .await;
    last = last.max(pos(&a));

    // Three pages of ten, every job once.
    let mut seen = Vec::new();
    let mut path = format!("/v1/queries/jobs?kind={kind}&limit=10");
    let mut pages = 0;
    loop {
        let a = app.get(&path, &analyst, Some(last)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(
            a.headers["x-chronicle-position"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= last
        );
        pages += 1;
        for item in a.body["items"].as_array().unwrap() {
            seen.push(item["job_id"].as_str().unwrap().to_owned());
        }
        match a.body["next"].as_str() {
            Some(next) => path = format!("/v1/queries/jobs?kind={kind}&limit=10&after={next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "in submission order, no duplicates, no gaps");

    let a = app
        .get(
            &format!("/v1/queries/jobs?kind={kind}&agent_id=odd-bot&limit=1000"),
            &analyst,
            None,
        )
        .await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 12);
    let a = app
        .get(
            &format!("/v1/queries/jobs?kind={kind}&status=FAILED"),
            &analyst,
            None,
        )
        .await;
    let failed = a.body["items"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["error"], "boom");
    let a = app
        .get(
            &format!("/v1/queries/jobs?kind={kind}&status=PENDING"),
            &analyst,
            None,
        )
        .await;
    assert_eq!(a.body["items"].as_array().unwrap().len(), 24);

    let a = app
        .get(&format!("/v1/queries/jobs/{}", ids[0]), &analyst, None)
        .await;
    assert_eq!(a.body["status"], "FAILED");
    assert_eq!(a.body["version"], 3);
    let a = app
        .get(
            &format!("/v1/queries/jobs/{}/history", ids[0]),
            &analyst,
            None,
        )
        .await;
    let statuses: Vec<&str> = a.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["PENDING", "RUNNING", "FAILED"]);
    let a = app
        .get(&format!("/v1/queries/jobs/{}", id()), &analyst, None)
        .await;
    assert_problem(&a, 404, "NOT_FOUND");
    let a = app
        .get(
            &format!("/v1/queries/jobs/{}/history", id()),
            &analyst,
            None,
        )
        .await;
    assert_problem(&a, 404, "NOT_FOUND");
}

#[tokio::test]
async fn filters_and_pages_are_validated() {
    let app = App::with_read_models().await;
    for path in [
        "/v1/queries/jobs?status=DONE",
        "/v1/queries/jobs?status=pending",
        "/v1/queries/jobs?colour=red",
        "/v1/queries/jobs?limit=0",
        "/v1/queries/jobs?limit=1001",
        "/v1/queries/jobs?limit=-5",
        "/v1/queries/jobs?limit=99999999999999999999",
        "/v1/queries/jobs?after=%27%3B%20DROP%20TABLE%20read.jobs%3B--",
        "/v1/queries/approvals?status=MAYBE",
        "/v1/queries/journal-entries?from=yesterday",
        "/v1/queries/trial-balance?as_of=2026-13-45",
        "/v1/queries/governance/decisions?outcome=MAYBE",
        "/v1/queries/governance/decisions?from=monday",
        "/v1/queries/users/x/tokens?active=perhaps",
    ] {
        let a = app.get(path, &app.admin, None).await;
        assert_problem(&a, 400, "MALFORMED_REQUEST");
    }
    let a = app.get("/v1/queries/jobs", &app.admin, None).await;
    assert_eq!(a.status, 200, "the table survived: {}", a.body);
    let (writer, _) = app.token(&id(), "writer").await;
    let a = app.get("/v1/queries/jobs", &writer, None).await;
    assert_problem(&a, 403, "FORBIDDEN");
    let a = app
        .send(app.http.get(format!("{}/v1/queries/jobs", app.base)))
        .await;
    assert_problem(&a, 401, "UNAUTHENTICATED");
    let a = app
        .send(
            app.http
                .get(format!("{}/v1/queries/jobs", app.base))
                .bearer_auth(&app.admin)
                .header("X-Chronicle-Min-Position", "soon"),
        )
        .await;
    assert_problem(&a, 400, "MALFORMED_REQUEST");
}

#[tokio::test]
async fn reads_follow_writes_for_one_hundred_commands_in_a_row() {
    let app = App::with_read_models().await;
    let kind = id();
    for i in 0..100 {
        let a = cmd(
            &app,
            "/v1/commands/jobs",
            json!({"agent_id": "a", "kind": kind, "input": i}),
        )
        .await;
        let job = a.body["stream"]
            .as_str()
            .unwrap()
            .strip_prefix("job.")
            .unwrap()
            .to_owned();
        let q = app
            .get(
                &format!("/v1/queries/jobs/{job}"),
                &app.admin,
                Some(pos(&a)),
            )
            .await;
        assert_eq!(q.status, 200, "command {i}: {}", q.body);
        assert_eq!(q.body["input"], i);
    }
}

#[tokio::test]
async fn a_position_not_reached_in_five_seconds_is_projection_lagging() {
    // The reader's projectors are not running: a job's position is in the log but never
    // in its read model.
    let app = App::start().await;
    let db = support::fresh_database().await;
    let settings = support::settings_for(&app.stream, &app.prefix, &db);
    chronicle_api::server::migrate(&settings).await.unwrap();
    let reader = App::start_with(settings).await;
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"agent_id": "a", "kind": "k"}),
        )
        .await;
    let started = std::time::Instant::now();
    let q = reader
        .get("/v1/queries/jobs", &reader.admin, Some(pos(&a)))
        .await;
    assert_problem(&q, 504, "PROJECTION_LAGGING");
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    // A position past the log's end names nothing that happened: 400 at once.
    let q = reader
        .get("/v1/queries/jobs", &reader.admin, Some(u64::MAX / 2))
        .await;
    assert_problem(&q, 400, "MALFORMED_REQUEST");
}

#[tokio::test]
async fn tokens_approvals_agents_and_decisions_are_queryable() {
    let app = App::with_read_models().await;
    let user = format!("u{}", id());
    let (_, jti) = app.token(&user, "writer").await;
    let (_, jti2) = app.token(&user, "analyst").await;
    let a = cmd(
        &app,
        &format!("/v1/commands/users/{user}/tokens/{jti}/revoke"),
        json!({"reason": "lost"}),
    )
    .await;
    let p = pos(&a);
    let q = app
        .get(
            &format!("/v1/queries/users/{user}/tokens"),
            &app.admin,
            Some(p),
        )
        .await;
    assert_eq!(q.body["items"].as_array().unwrap().len(), 2);
    let q = app
        .get(
            &format!("/v1/queries/users/{user}/tokens?active=true"),
            &app.admin,
            Some(p),
        )
        .await;
    let active: Vec<&str> = q.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["jti"].as_str().unwrap())
        .collect();
    assert_eq!(active, vec![jti2.as_str()]);
    let q = app
        .get(&format!("/v1/queries/tokens/{jti}"), &app.admin, Some(p))
        .await;
    assert_eq!(q.body["active"], false);
    assert_eq!(q.body["revoke_reason"], "lost");

    // Introspection (RFC 7662).
    let (live, _) = app.token(&user, "auditor").await;
    let form = |t: &str| {
        app.http
            .post(format!("{}/v1/introspect", app.base))
            .bearer_auth(&app.admin)
            .form(&[("token", t)])
    };
    let a = app.send(form(&live)).await;
    assert_eq!(a.body["active"], true, "{}", a.body);
    assert_eq!(a.body["sub"], user.as_str());
    let a = app.send(form("nonsense")).await;
    assert_eq!(a.body, json!({"active": false}));

    // Approvals.
    let a = cmd(
        &app,
        "/v1/commands/approvals",
        json!({"action": "wire.send", "payload": {"n": 1}, "reason": "vendor"}),
    )
    .await;
    let approval = a.body["stream"]
        .as_str()
        .unwrap()
        .strip_prefix("approval.")
        .unwrap()
        .to_owned();
    let a = cmd(
        &app,
        &format!("/v1/commands/approvals/{approval}/reject"),
        json!({"reason": "no"}),
    )
    .await;
    let q = app
        .get(
            &format!("/v1/queries/approvals/{approval}"),
            &app.admin,
            Some(pos(&a)),
        )
        .await;
    assert_eq!(q.body["status"], "REJECTED");
    assert_eq!(q.body["decision_reason"], "no");
    let q = app
        .get("/v1/queries/approvals?status=REJECTED", &app.admin, None)
        .await;
    assert!(
        q.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["approval_id"] == approval.as_str())
    );
    let q = app
        .get("/v1/queries/approvals?status=PENDING", &app.admin, None)
        .await;
    assert!(
        !q.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["approval_id"] == approval.as_str())
    );

    // Agents and governance decisions.
    let agent = format!("bot-{}", id());
    cmd(
        &app,
        "/v1/commands/agents",
        json!({"agent_id": agent, "name": "Bot", "maturity": "STUDENT"}),
    )
    .await;
    let (bot, _) = app.token(&agent, "agent").await;
    let a = app
        .post(
            "/v1/commands/jobs",
            &bot,
            json!({"agent_id": agent, "kind": "k"}),
        )
        .await;
    assert_eq!(a.status, 201);
    let denied = app
        .post(
            &format!("/v1/commands/accounts/{}/close", id()),
            &bot,
            json!({}),
        )
        .await;
    assert_eq!(denied.status, 403);
    let a = cmd(
        &app,
        &format!("/v1/commands/agents/{agent}/maturity"),
        json!({"maturity": "INTERN", "reason": "ok"}),
    )
    .await;
    let p = pos(&a);
    let q = app
        .get(&format!("/v1/queries/agents/{agent}"), &app.admin, Some(p))
        .await;
    assert_eq!(q.body["maturity"], "INTERN");
    let q = app.get("/v1/queries/agents", &app.admin, Some(p)).await;
    assert!(
        q.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["agent_id"] == agent.as_str())
    );
    let q = app
        .get(
            &format!("/v1/queries/governance/decisions?agent_id={agent}"),
            &app.admin,
            Some(p),
        )
        .await;
    let outcomes: Vec<&str> = q.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["ALLOWED", "DENIED"]);
    let q = app
        .get(
            &format!("/v1/queries/governance/decisions?agent_id={agent}&outcome=DENIED"),
            &app.admin,
            None,
        )
        .await;
    assert_eq!(q.body["items"][0]["action"], "account.close");
    let q = app
        .get(
            &format!("/v1/queries/governance/decisions?agent_id={agent}&from=2999-01-01T00:00:00Z"),
            &app.admin,
            None,
        )
        .await;
    assert_eq!(q.body["items"], json!([]));

    let q = app.get("/v1/queries/projections", &app.admin, None).await;
    let names: Vec<&str> = q.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["tokens", "jobs", "approvals", "ledger", "agents"]
    );
    assert!(
        q.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "running")
    );
}

#[tokio::test]
async fn the_ledger_has_balances_entries_and_a_trial_balance_that_nets_to_zero() {
    let app = App::with_read_models().await;
    let (cash, sales, usd, fx) = (id(), id(), id(), id());
    for (code, kind, cur) in [
        (&cash, "ASSET", "EUR"),
        (&sales, "REVENUE", "EUR"),
        (&usd, "ASSET", "USD"),
        (&fx, "EQUITY", "USD"),
    ] {
        cmd(
            &app,
            "/v1/commands/accounts",
            json!({"code": code, "name": code, "type": kind, "currency": cur}),
        )
        .await;
    }
    let post =
        |date: &str, lines: Value| json!({"effective_date": date, "memo": "m", "lines": lines});
    let e1 = cmd(&app, "/v1/commands/journal-entries", post("2026-01-10", json!([
        {"account": cash, "debit": 1000, "currency": "EUR"}, {"account": sales, "credit": 1000, "currency": "EUR"}]))).await;
    let e2 = cmd(&app, "/v1/commands/journal-entries", post("2026-02-10", json!([
        {"account": cash, "debit": "9223372036854775807", "currency": "EUR"}, {"account": sales, "credit": "9223372036854775807", "currency": "EUR"},
        {"account": usd, "debit": 5, "currency": "USD"}, {"account": fx, "credit": 5, "currency": "USD"}]))).await;
    let entry1 = e1.body["stream"]
        .as_str()
        .unwrap()
        .strip_prefix("entry.")
        .unwrap()
        .to_owned();
    let r = cmd(
        &app,
        &format!("/v1/commands/journal-entries/{entry1}/reverse"),
        json!({"reason": "typo"}),
    )
    .await;
    let p = pos(&r).max(pos(&e2));

    let q = app
        .get(&format!("/v1/queries/accounts/{cash}"), &app.admin, Some(p))
        .await;
    assert_eq!(
        q.body["debits"], "9223372036854776807",
        "sums exceed i64 exactly"
    );
    assert_eq!(q.body["credits"], "1000");
    assert_eq!(q.body["balance"], "9223372036854775807");
    let q = app
        .get("/v1/queries/accounts?limit=2", &app.admin, Some(p))
        .await;
    assert_eq!(q.body["items"].as_array().unwrap().len(), 2);
    assert!(q.body["next"].is_string());

    let q = app
        .get(
            &format!("/v1/queries/journal-entries/{entry1}"),
            &app.admin,
            Some(p),
        )
        .await;
    assert_eq!(q.body["lines"].as_array().unwrap().len(), 2);
    assert!(q.body["reversed_by"].is_string());
    let q = app
        .get(
            &format!("/v1/queries/journal-entries?account={usd}"),
            &app.admin,
            Some(p),
        )
        .await;
    assert_eq!(q.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(q.body["items"][0]["lines"].as_array().unwrap().len(), 4);
    let q = app
        .get(
            &format!("/v1/queries/journal-entries?account={cash}&from=2026-02-01&to=2026-02-28"),
            &app.admin,
            Some(p),
        )
        .await;
    assert_eq!(q.body["items"].as_array().unwrap().len(), 1);

    let q = app
        .get(
            "/v1/queries/trial-balance?as_of=2026-01-31",
            &app.admin,
            Some(p),
        )
        .await;
    let totals = q.body["totals"].as_array().unwrap();
    assert_eq!(totals.len(), 1, "{}", q.body);
    // As of the end of January: entry 1 and its reversal (dated like the original).
    assert_eq!(totals[0]["debits"], totals[0]["credits"]);
    let q = app
        .get("/v1/queries/trial-balance", &app.admin, Some(p))
        .await;
    for t in q.body["totals"].as_array().unwrap() {
        assert_eq!(
            t["debits"], t["credits"],
            "per currency the trial balance nets to zero"
        );
    }
    assert_eq!(q.body["totals"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn with_postgres_away_queries_are_503_and_commands_keep_working() {
    let app = App::start().await; // no projectors; its pool points at the test server
    let dead = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("postgres://chronicle@127.0.0.1:{port}/gone")
    };
    let settings = support::settings_for(&app.stream, &app.prefix, &dead);
    let state = chronicle_api::server::connect(&settings).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(chronicle_api::server::serve(
        state,
        chronicle_api::http::ServeRole::All,
        listener,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{base}/v1/queries/jobs"))
        .bearer_auth(&app.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "READ_STORE_UNAVAILABLE");
    assert!(
        !body["detail"].as_str().unwrap().contains("127.0.0.1"),
        "no internal detail"
    );
    let r = http
        .post(format!("{base}/v1/commands/jobs"))
        .bearer_auth(&app.admin)
        .json(&json!({"agent_id": "a", "kind": "k"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}
