//! Rebuilding read models from the log: the rebuilt tables equal the live ones, queries
//! keep answering throughout, drifted rows are put right, and the projection carries on.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::json;
use support::App;
use uuid::Uuid;

#[tokio::test]
async fn a_rebuild_equals_the_live_tables_while_queries_keep_answering() {
    let app = Arc::new(App::with_read_models().await);
    let mut last = 0;
    let (cash, sales) = (
        Uuid::new_v4().simple().to_string(),
        Uuid::new_v4().simple().to_string(),
    );
    for (code, kind) in [(&cash, "ASSET"), (&sales, "REVENUE")] {
        app.post(
            "/v1/commands/accounts",
            &app.admin,
            json!({"code": code, "name": code, "type": kind, "currency": "EUR"}),
        )
        .await;
    }
    let mut jobs = Vec::new();
    for i in 0..60 {
        let a = app
            .post(
                "/v1/commands/jobs",
                &app.admin,
                json!({"agent_id": "a", "kind": "k", "input": i}),
            )
            .await;
        jobs.push(
            a.body["stream"]
                .as_str()
                .unwrap()
                .strip_prefix("job.")
                .unwrap()
                .to_owned(),
        );
        let e = app
            .post(
                "/v1/commands/journal-entries",
                &app.admin,
                json!({"effective_date": "2026-01-31", "memo": "m", "lines": [
                    {"account": cash, "debit": i + 1, "currency": "EUR"},
                    {"account": sales, "credit": i + 1, "currency": "EUR"}]}),
            )
            .await;
        last = e.body["position"].as_u64().unwrap();
    }
    // Invoices too: the ledger's rebuild gives the same invoices, entries and accounts.
    for i in 0..3 {
        let id = format!("inv-{i}");
        app.post(
            "/v1/commands/invoices",
            &app.admin,
            json!({"invoice_id": id, "customer": "c", "currency": "EUR", "issue_date": "2026-01-01",
                   "lines": [{"description": "s", "amount": 1200 + i}],
                   "recognition": {"method": "RATABLE", "start": "2026-01-01", "months": 12}}),
        )
        .await;
        app.post(
            &format!("/v1/commands/invoices/{id}/recognize"),
            &app.admin,
            json!({"through": "2026-06-30"}),
        )
        .await;
        let p = app
            .post(
                &format!("/v1/commands/invoices/{id}/payments"),
                &app.admin,
                json!({"amount": 100, "paid_on": "2026-07-01"}),
            )
            .await;
        assert!(p.status.is_success(), "{}", p.body);
        last = p.body["position"].as_u64().unwrap();
    }
    let revenue_before = app
        .get(
            "/v1/queries/revenue?from=2026-01-01&to=2026-12-31",
            &app.admin,
            Some(last),
        )
        .await;
    assert_eq!(revenue_before.body["months"].as_array().unwrap().len(), 12);
    let a = app
        .get("/v1/queries/jobs?limit=1", &app.admin, Some(last))
        .await;
    assert_eq!(a.status, 200);

    // Queries answer all along.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let reader = {
        let (app, stop, answered) = (app.clone(), stop.clone(), answered.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let a = app
                    .get("/v1/queries/accounts?limit=10", &app.admin, None)
                    .await;
                assert_eq!(
                    a.status, 200,
                    "a query failed during the rebuild: {}",
                    a.body
                );
                assert_eq!(
                    a.body["items"].as_array().unwrap().len(),
                    6,
                    "never a half-built model (two accounts, and the invoices' four)"
                );
                answered.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let log = app.state.log.clone();
    for p in chronicle_api::server::select_projections(&[]).unwrap() {
        let name = p.name();
        let report = chronicle_replay::rebuild::rebuild(&log, &app.database_url, p, &|_, _| {})
            .await
            .unwrap();
        assert!(report.identical, "{name}: {report:?}");
    }
    stop.store(true, Ordering::SeqCst);
    reader.await.unwrap();
    assert!(answered.load(Ordering::SeqCst) > 0);
    let revenue_after = app
        .get(
            "/v1/queries/revenue?from=2026-01-01&to=2026-12-31",
            &app.admin,
            None,
        )
        .await;
    assert_eq!(revenue_after.body, revenue_before.body);

    // A row drifted from the log is put right by a rebuild, which says so.
    let (db, conn) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db.execute(
        "UPDATE read.jobs SET status = 'CANCELLED' WHERE job_id = $1",
        &[&jobs[3]],
    )
    .await
    .unwrap();
    let jobs_projection = chronicle_api::server::select_projections(&["jobs".into()])
        .unwrap()
        .remove(0);
    let report =
        chronicle_replay::rebuild::rebuild(&log, &app.database_url, jobs_projection, &|_, _| {})
            .await
            .unwrap();
    assert!(!report.identical);
    assert!(
        report
            .tables
            .iter()
            .any(|t| t.table == "read.jobs" && !t.identical)
    );
    let a = app
        .get(&format!("/v1/queries/jobs/{}", jobs[3]), &app.admin, None)
        .await;
    assert_eq!(a.body["status"], "PENDING");
    // The analysts' grant survives the swap.
    db.batch_execute("SET ROLE chronicle_analyst")
        .await
        .unwrap();
    db.query("SELECT count(*) FROM read.jobs", &[])
        .await
        .expect("analysts still read the rebuilt table");
    db.batch_execute("RESET ROLE").await.unwrap();

    // The projection carries on from where the rebuild left it.
    let a = app
        .post(
            "/v1/commands/jobs",
            &app.admin,
            json!({"agent_id": "a", "kind": "after"}),
        )
        .await;
    let q = app
        .get(
            "/v1/queries/jobs?kind=after",
            &app.admin,
            Some(a.body["position"].as_u64().unwrap()),
        )
        .await;
    assert_eq!(q.status, 200, "{}", q.body);
    assert_eq!(q.body["items"].as_array().unwrap().len(), 1);
}
