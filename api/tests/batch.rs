//! `POST /v1/commands/batch` against real NATS: each command answered on its own exactly as
//! alone, in the order given; a bad batch changes nothing; the rate limit counts every
//! command.

mod support;

use serde_json::{Value, json};
use support::{App, assert_problem, database_url};

fn jobs(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"path": "/v1/commands/jobs",
                   "body": {"job_id": format!("{tag}-{i}"), "agent_id": "a", "kind": "k"}})
        })
        .collect()
}

async fn batch(app: &App, token: &str, body: Value) -> support::Answer {
    app.post("/v1/commands/batch", token, body).await
}

#[tokio::test]
async fn each_command_is_answered_on_its_own_as_it_would_be_alone() {
    let app = App::start().await;
    let mut commands = jobs(3, "b");
    commands.push(json!({"path": "/v1/commands/jobs", "body": {"agent_id": "a"}}));
    commands.push(json!({"path": "/v1/commands/nothing-here", "body": {}}));
    commands.push(json!({"path": "/v1/commands/jobs/b-0/start", "body": {}, "if_match": "\"7\""}));
    commands.push(
        json!({"path": "/v1/commands/jobs", "idempotency_key": "once",
                         "body": {"job_id": "b-idem", "agent_id": "a", "kind": "k"}}),
    );
    let correlation = uuid::Uuid::new_v4();
    let a = app
        .send(
            app.http
                .post(format!("{}/v1/commands/batch", app.base))
                .bearer_auth(&app.admin)
                .header("X-Correlation-Id", correlation.to_string())
                .json(&json!({ "commands": commands })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["correlation_id"], correlation.to_string());
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    for (i, r) in results[..3].iter().enumerate() {
        assert_eq!(r["status"], 201, "{r}");
        assert_eq!(r["body"]["stream"], format!("job.b-{i}"));
        assert_eq!(r["etag"], "\"1\"");
    }
    // The same refusals as alone, as problem documents.
    assert_eq!(results[3]["status"], 400, "{}", results[3]);
    assert_eq!(results[3]["body"]["code"], "MALFORMED_REQUEST");
    assert_eq!(results[4]["status"], 404);
    assert_eq!(results[4]["body"]["code"], "NOT_FOUND");
    assert_eq!(results[5]["status"], 409, "{}", results[5]);
    assert_eq!(results[5]["body"]["code"], "VERSION_CONFLICT");
    assert_eq!(results[6]["status"], 201);

    // Every command of the batch carries its correlation id.
    let events = app
        .send(
            app.http
                .get(format!(
                    "{}/v1/audit/events?correlation_id={correlation}",
                    app.base
                ))
                .bearer_auth(&app.admin),
        )
        .await;
    let lines = events.body.as_str().unwrap().lines().count();
    assert_eq!(lines, 4, "{}", events.body);

    // A command's idempotency key works as the header does: the batch sent again replays
    // that answer and appends nothing for it.
    let before = app.log_len().await;
    let again = batch(
        &app,
        &app.admin,
        json!({"commands": [{"path": "/v1/commands/jobs", "idempotency_key": "once",
                             "body": {"job_id": "b-idem", "agent_id": "a", "kind": "k"}}]}),
    )
    .await;
    assert_eq!(again.body["results"][0]["status"], 201);
    assert_eq!(
        again.body["results"][0]["body"]["position"],
        results[6]["body"]["position"]
    );
    assert_eq!(app.log_len().await, before);

    // Another role: each command is held to the caller's permissions.
    let (analyst, _) = app.token("ann", "analyst").await;
    let a = batch(&app, &analyst, json!({ "commands": jobs(2, "nope") })).await;
    for r in a.body["results"].as_array().unwrap() {
        assert_eq!(r["status"], 403, "{r}");
        assert_eq!(r["body"]["code"], "FORBIDDEN");
    }
    // Without a token, the batch itself is refused.
    let a = app
        .send(
            app.http
                .post(format!("{}/v1/commands/batch", app.base))
                .json(&json!({ "commands": jobs(1, "anon") })),
        )
        .await;
    assert_problem(&a, 401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn an_ordered_batch_runs_each_command_after_the_one_before() {
    let app = App::start().await;
    let a = batch(
        &app,
        &app.admin,
        json!({"ordered": true, "commands": [
            {"path": "/v1/commands/accounts", "body": {"code": "1000", "name": "Cash", "type": "ASSET", "currency": "EUR"}},
            {"path": "/v1/commands/accounts", "body": {"code": "4000", "name": "Sales", "type": "REVENUE", "currency": "EUR"}},
            {"path": "/v1/commands/journal-entries", "body": {"effective_date": "2026-01-10", "memo": "m", "lines": [
                {"account": "1000", "debit": 100, "currency": "EUR"}, {"account": "4000", "credit": 100, "currency": "EUR"}]}},
            {"path": "/v1/commands/jobs", "body": {"job_id": "o-1", "agent_id": "a", "kind": "k"}},
            {"path": "/v1/commands/jobs/o-1/start", "body": {}},
            {"path": "/v1/commands/jobs/o-1/complete", "body": {"result": 1}},
        ]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let statuses: Vec<u64> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![201, 201, 201, 201, 200, 200], "{}", a.body);
    let positions: Vec<u64> = a.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"]["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
}

#[tokio::test]
async fn a_bad_batch_is_refused_whole_and_changes_nothing() {
    let app = App::start().await;
    let before = app.log_len().await;
    for body in [
        json!({"commands": []}),
        json!({"commands": jobs(1001, "big")}),
        json!({"commands": jobs(1, "x"), "extra": 1}),
        json!({"commands": [{"path": "/v1/queries/jobs", "body": {}}]}),
        json!({"commands": [{"body": {}}]}),
        json!({"commands": [{"path": "/v1/commands/jobs", "body": {}, "idempotency_key": ""}]}),
        json!({"commands": [{"path": "/v1/commands/jobs x", "body": {}}]}),
        json!({"commands": "no"}),
    ] {
        let a = batch(&app, &app.admin, body.clone()).await;
        assert_problem(&a, 400, "MALFORMED_REQUEST");
    }
    let a = app
        .send(
            app.http
                .post(format!("{}/v1/commands/batch", app.base))
                .bearer_auth(&app.admin)
                .header("Content-Type", "application/json")
                .body("{not json"),
        )
        .await;
    assert_problem(&a, 400, "MALFORMED_REQUEST");
    assert_eq!(app.log_len().await, before);
}

#[tokio::test]
async fn the_rate_limit_counts_every_command_of_a_batch() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let mut settings = support::settings_for(
        &format!("T{tag}"),
        &format!("t{}.ev", &tag[..12]),
        &database_url(),
    );
    settings.rate_limit = 5; // a burst of 10
    let app = App::start_with(settings).await;
    let before = app.log_len().await;
    let a = batch(&app, &app.admin, json!({ "commands": jobs(11, "rl") })).await;
    assert_problem(&a, 429, "RATE_LIMITED");
    assert_eq!(app.log_len().await, before, "nothing ran");
    let a = batch(&app, &app.admin, json!({ "commands": jobs(4, "ok") })).await;
    assert_eq!(a.status, 200, "{}", a.body);
    // 5 of the burst of 10 are spent: 6 more at once are too many.
    let a = batch(&app, &app.admin, json!({ "commands": jobs(6, "more") })).await;
    assert_problem(&a, 429, "RATE_LIMITED");
    assert!(a.headers.contains_key("retry-after"));
}
