//! Invoices over HTTP against real NATS and Postgres, with the projectors running: the
//! contract's routes end to end — an ON_DELIVERY invoice issued, delivered and paid in two
//! parts; a 12-month RATABLE invoice recognized through month 5 and then month 12; voids;
//! the revenue report against the deferred-revenue account's balance at each month end;
//! the entries traced by `source`; and the invoice's state as of a position in the audit.

mod support;

use serde_json::{Value, json};
use support::{Answer, App, assert_problem};

fn pos(a: &Answer) -> u64 {
    a.body["position"]
        .as_u64()
        .unwrap_or_else(|| panic!("no position in {}", a.body))
}

fn types(a: &Answer) -> Vec<String> {
    a.body["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events in {}", a.body))
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn ok(app: &App, path: &str, body: Value) -> Answer {
    let a = app.post(path, &app.admin, body).await;
    assert!(a.status.is_success(), "{path}: {} {}", a.status, a.body);
    a
}

async fn invoice(app: &App, id: &str, at: u64) -> Value {
    let a = app
        .get(&format!("/v1/queries/invoices/{id}"), &app.admin, Some(at))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

fn amounts(inv: &Value) -> [&str; 5] {
    ["total", "recognized", "deferred", "paid", "outstanding"].map(|k| inv[k].as_str().unwrap())
}

#[tokio::test]
async fn an_invoice_on_delivery_is_issued_delivered_and_paid_in_two_parts() {
    let app = App::with_read_models().await;
    let a = ok(
        &app,
        "/v1/commands/invoices",
        json!({
            "invoice_id": "inv-d1", "customer": "ACME", "currency": "EUR", "issue_date": "2026-03-02",
            "lines": [{"description": "Consulting", "amount": 60000}, {"description": "Travel", "amount": "40000"}],
            "recognition": {"method": "ON_DELIVERY"}
        }),
    )
    .await;
    assert_eq!(a.status, 201);
    assert_eq!(a.body["stream"], "invoice.inv-d1");
    // The default accounts open in the same append, then the entry, then the invoice.
    assert_eq!(
        types(&a),
        [
            "AccountOpened",
            "AccountOpened",
            "AccountOpened",
            "AccountOpened",
            "JournalEntryPosted",
            "InvoiceIssued"
        ]
    );
    let inv = invoice(&app, "inv-d1", pos(&a)).await;
    assert_eq!(inv["status"], "DRAFT");
    assert_eq!(amounts(&inv), ["100000", "0", "100000", "0", "100000"]);
    assert_eq!(inv["recognition"], json!({"method": "ON_DELIVERY"}));

    // Nothing is due on a draft.
    let early = app
        .post(
            "/v1/commands/invoices/inv-d1/payments",
            &app.admin,
            json!({"amount": 1, "paid_on": "2026-03-03"}),
        )
        .await;
    assert_problem(&early, 409, "INVALID_TRANSITION");

    let a = ok(
        &app,
        "/v1/commands/invoices/inv-d1/deliver",
        json!({"delivered_on": "2026-03-10"}),
    )
    .await;
    assert_eq!(types(&a), ["JournalEntryPosted", "RevenueRecognized"]);
    let inv = invoice(&app, "inv-d1", pos(&a)).await;
    assert_eq!(inv["status"], "OPEN");
    assert_eq!(inv["delivered_on"], "2026-03-10");
    assert_eq!(amounts(&inv), ["100000", "100000", "0", "0", "100000"]);
    let again = app
        .post(
            "/v1/commands/invoices/inv-d1/deliver",
            &app.admin,
            json!({"delivered_on": "2026-03-11"}),
        )
        .await;
    assert_problem(&again, 409, "INVALID_TRANSITION");

    let a = ok(
        &app,
        "/v1/commands/invoices/inv-d1/payments",
        json!({"amount": 30000, "paid_on": "2026-03-20"}),
    )
    .await;
    let inv = invoice(&app, "inv-d1", pos(&a)).await;
    assert_eq!(inv["status"], "PARTIALLY_PAID");
    assert_eq!(amounts(&inv), ["100000", "100000", "0", "30000", "70000"]);
    let over = app
        .post(
            "/v1/commands/invoices/inv-d1/payments",
            &app.admin,
            json!({"amount": 70001, "paid_on": "2026-03-21"}),
        )
        .await;
    assert_problem(&over, 422, "OVERPAYMENT");
    let a = ok(
        &app,
        "/v1/commands/invoices/inv-d1/payments",
        json!({"amount": 70000, "paid_on": "2026-04-01"}),
    )
    .await;
    let inv = invoice(&app, "inv-d1", pos(&a)).await;
    assert_eq!(inv["status"], "PAID");
    assert_eq!(amounts(&inv), ["100000", "100000", "0", "100000", "0"]);
    let after = app
        .post(
            "/v1/commands/invoices/inv-d1/payments",
            &app.admin,
            json!({"amount": 1, "paid_on": "2026-04-02"}),
        )
        .await;
    assert_problem(&after, 422, "OVERPAYMENT");

    // Every entry is traced to the invoice, and the invoice lists them.
    let entries = app
        .get(
            "/v1/queries/journal-entries?source=invoice.inv-d1",
            &app.admin,
            Some(pos(&a)),
        )
        .await;
    assert_eq!(entries.status, 200, "{}", entries.body);
    let items = entries.body["items"].as_array().unwrap();
    let ids: Vec<&Value> = items.iter().map(|e| &e["entry_id"]).collect();
    assert_eq!(
        ids,
        inv["entry_ids"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(items.len(), 4);
    let lines = |i: usize| -> Vec<(String, Value, Value)> {
        items[i]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["account"].as_str().unwrap().to_owned(),
                    l["debit"].clone(),
                    l["credit"].clone(),
                )
            })
            .collect()
    };
    let n = Value::Null;
    assert_eq!(
        lines(0),
        [
            ("1200".into(), json!(100000), n.clone()),
            ("2200".into(), n.clone(), json!(100000))
        ]
    );
    // Recognition debits deferred revenue and credits revenue.
    assert_eq!(
        lines(1),
        [
            ("2200".into(), json!(100000), n.clone()),
            ("4000".into(), n.clone(), json!(100000))
        ]
    );
    assert_eq!(
        lines(2),
        [
            ("1000".into(), json!(30000), n.clone()),
            ("1200".into(), n.clone(), json!(30000))
        ]
    );
    assert!(items.iter().all(|e| e["source"] == "invoice.inv-d1"));
    // An invoice's entry is not reversed by hand.
    let by_hand = app
        .post(
            &format!(
                "/v1/commands/journal-entries/{}/reverse",
                items[0]["entry_id"].as_str().unwrap()
            ),
            &app.admin,
            json!({"reason": "typo"}),
        )
        .await;
    assert_problem(&by_hand, 409, "INVALID_TRANSITION");

    // Listed by status and customer.
    let paid = app
        .get(
            "/v1/queries/invoices?status=PAID&customer=ACME",
            &app.admin,
            Some(pos(&a)),
        )
        .await;
    assert_eq!(
        paid.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        paid.body
    );
    let drafts = app
        .get("/v1/queries/invoices?status=DRAFT", &app.admin, None)
        .await;
    assert!(drafts.body["items"].as_array().unwrap().is_empty());
    let bad = app
        .get("/v1/queries/invoices?status=LATE", &app.admin, None)
        .await;
    assert_problem(&bad, 400, "MALFORMED_REQUEST");
}

/// The deferred-revenue account's balance (credits minus debits) as of `day`, from the
/// trial balance.
async fn deferred_balance(app: &App, day: &str, at: u64) -> i64 {
    let tb = app
        .get(
            &format!("/v1/queries/trial-balance?as_of={day}"),
            &app.admin,
            Some(at),
        )
        .await;
    assert_eq!(tb.status, 200, "{}", tb.body);
    tb.body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == "2200")
        .map_or(0, |a| {
            a["credits"].as_str().unwrap().parse::<i64>().unwrap()
                - a["debits"].as_str().unwrap().parse::<i64>().unwrap()
        })
}

#[tokio::test]
async fn a_ratable_invoice_is_recognized_month_by_month_to_the_unit() {
    let app = App::with_read_models().await;
    let a = ok(
        &app,
        "/v1/commands/invoices",
        json!({
            "invoice_id": "inv-r1", "customer": "Globex", "currency": "EUR", "issue_date": "2026-01-01",
            "lines": [{"description": "Annual subscription", "amount": 100000}],
            "recognition": {"method": "RATABLE", "start": "2026-01-01", "months": 12}
        }),
    )
    .await;
    let issued = pos(&a);
    let a = ok(
        &app,
        "/v1/commands/invoices/inv-r1/recognize",
        json!({"through": "2026-05-31"}),
    )
    .await;
    assert_eq!(types(&a).len(), 10, "five months, each with its entry");
    let inv = invoice(&app, "inv-r1", pos(&a)).await;
    assert_eq!(inv["status"], "OPEN");
    assert_eq!(
        amounts(&inv),
        ["100000", "41665", "58335", "0", "100000"],
        "5 × 8 333"
    );
    assert_eq!(inv["recognition"]["months_recognized"], 5);
    // Recognizing what is recognized appends nothing.
    let a = ok(
        &app,
        "/v1/commands/invoices/inv-r1/recognize",
        json!({"through": "2026-05-31"}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(types(&a).is_empty());
    let a = ok(
        &app,
        "/v1/commands/invoices/inv-r1/recognize",
        json!({"through": "2026-12-31"}),
    )
    .await;
    assert_eq!(types(&a).len(), 14);
    let last = pos(&a);
    let inv = invoice(&app, "inv-r1", last).await;
    assert_eq!(amounts(&inv), ["100000", "100000", "0", "0", "100000"]);
    // The months sum to the total exactly: 11 × 8 333 + 8 337.
    let entries = app
        .get(
            "/v1/queries/journal-entries?source=invoice.inv-r1&limit=100",
            &app.admin,
            Some(last),
        )
        .await;
    let revenue: Vec<i64> = entries.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["lines"].as_array().unwrap().clone())
        .filter(|l| l["account"] == "4000")
        .map(|l| l["credit"].as_i64().unwrap())
        .collect();
    assert_eq!(revenue.len(), 12);
    assert_eq!(&revenue[..11], &[8333; 11]);
    assert_eq!(revenue[11], 8337);
    assert_eq!(revenue.iter().sum::<i64>(), 100_000);

    // The report, month by month: recognized in the month, and deferred at its end equal
    // to the balance of 2200 as of that day.
    let report = app
        .get(
            "/v1/queries/revenue?from=2026-01-01&to=2026-12-31&currency=EUR",
            &app.admin,
            Some(last),
        )
        .await;
    assert_eq!(report.status, 200, "{}", report.body);
    let months = report.body["months"].as_array().unwrap();
    assert_eq!(months.len(), 12);
    let ends = [
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",
        "2026-04-30",
        "2026-05-31",
        "2026-06-30",
        "2026-07-31",
        "2026-08-31",
        "2026-09-30",
        "2026-10-31",
        "2026-11-30",
        "2026-12-31",
    ];
    let mut deferred = 100_000;
    for (m, end) in months.iter().zip(ends) {
        assert_eq!(m["currency"], "EUR");
        assert_eq!(m["month"], &end[..7]);
        let recognized: i64 = m["recognized"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            recognized,
            if end.starts_with("2026-12") {
                8337
            } else {
                8333
            }
        );
        deferred -= recognized;
        assert_eq!(
            m["deferred"].as_str().unwrap().parse::<i64>().unwrap(),
            deferred
        );
        assert_eq!(deferred_balance(&app, end, last).await, deferred, "{end}");
    }
    assert_eq!(deferred, 0);
    // Before the issue there was nothing deferred.
    let before = app
        .get(
            "/v1/queries/revenue?from=2025-11-01&to=2025-12-31",
            &app.admin,
            Some(last),
        )
        .await;
    let months = before.body["months"].as_array().unwrap();
    assert!(
        months
            .iter()
            .all(|m| m["deferred"] == "0" && m["recognized"] == "0")
    );
    let bad = app
        .get(
            "/v1/queries/revenue?from=2026-05-01&to=2026-01-01",
            &app.admin,
            None,
        )
        .await;
    assert_problem(&bad, 400, "MALFORMED_REQUEST");

    // The audit shows the invoice as it stood at a position.
    let state = app
        .get(
            &format!("/v1/audit/streams/invoice/inv-r1/state?at_position={issued}"),
            &app.admin,
            None,
        )
        .await;
    assert_eq!(state.status, 200, "{}", state.body);
    assert_eq!(state.body["state"]["status"], "DRAFT");
    assert_eq!(state.body["state"]["deferred"], 100000);
    assert_eq!(state.body["state"]["recognized"], 0);
    let now = app
        .get("/v1/audit/streams/invoice/inv-r1/state", &app.admin, None)
        .await;
    assert_eq!(now.body["state"]["recognized"], 100000);
    assert_eq!(now.body["state"]["deferred"], 0);
}

#[tokio::test]
async fn only_a_draft_is_voided_and_its_entry_is_reversed() {
    let app = App::with_read_models().await;
    let issue = |id: &str| {
        json!({
            "invoice_id": id, "customer": "Initech", "currency": "EUR", "issue_date": "2026-02-01",
            "lines": [{"description": "Licence", "amount": 5000}],
            "recognition": {"method": "ON_DELIVERY"}
        })
    };
    ok(&app, "/v1/commands/invoices", issue("inv-v1")).await;
    let a = ok(
        &app,
        "/v1/commands/invoices/inv-v1/void",
        json!({"reason": "sent twice"}),
    )
    .await;
    assert_eq!(
        types(&a),
        [
            "JournalEntryReversed",
            "JournalEntryPosted",
            "InvoiceVoided"
        ]
    );
    let inv = invoice(&app, "inv-v1", pos(&a)).await;
    assert_eq!(inv["status"], "VOID");
    assert_eq!(inv["void_reason"], "sent twice");
    assert_eq!(amounts(&inv), ["5000", "0", "0", "0", "0"]);
    let entries = app
        .get(
            "/v1/queries/journal-entries?source=invoice.inv-v1",
            &app.admin,
            Some(pos(&a)),
        )
        .await;
    let items = entries.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["reversed_by"], items[1]["entry_id"]);
    assert_eq!(items[1]["reverses"], items[0]["entry_id"]);
    let again = app
        .post(
            "/v1/commands/invoices/inv-v1/void",
            &app.admin,
            json!({"reason": "again"}),
        )
        .await;
    assert_problem(&again, 409, "INVALID_TRANSITION");

    // After delivery, a void is refused and nothing is appended.
    ok(&app, "/v1/commands/invoices", issue("inv-v2")).await;
    ok(
        &app,
        "/v1/commands/invoices/inv-v2/deliver",
        json!({"delivered_on": "2026-02-02"}),
    )
    .await;
    let before = app.log_len().await;
    let late = app
        .post(
            "/v1/commands/invoices/inv-v2/void",
            &app.admin,
            json!({"reason": "too late"}),
        )
        .await;
    assert_problem(&late, 409, "INVALID_TRANSITION");
    assert_eq!(app.log_len().await, before);
}

#[tokio::test]
async fn bad_invoices_are_refused_and_change_nothing() {
    let app = App::with_read_models().await;
    let base = || {
        json!({
            "customer": "ACME", "currency": "EUR", "issue_date": "2026-01-01",
            "lines": [{"description": "x", "amount": 1}],
            "recognition": {"method": "ON_DELIVERY"}
        })
    };
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let before = app.log_len().await;
    for (body, status, code) in [
        (with("lines", json!([])), 422, "VALIDATION_FAILED"),
        (
            with("lines", json!([{"description": "x", "amount": 0}])),
            422,
            "VALIDATION_FAILED",
        ),
        (
            with("lines", json!([{"description": "x", "amount": 1.5}])),
            400,
            "MALFORMED_REQUEST",
        ),
        (with("currency", json!("eur")), 422, "VALIDATION_FAILED"),
        (
            with(
                "recognition",
                json!({"method": "RATABLE", "start": "2026-01-01", "months": 0}),
            ),
            422,
            "VALIDATION_FAILED",
        ),
        (
            with("recognition", json!({"method": "WEEKLY"})),
            400,
            "MALFORMED_REQUEST",
        ),
        (
            with("accounts", json!({"revenue": "4999"})),
            422,
            "UNKNOWN_ACCOUNT",
        ),
        (
            with("accounts", json!({"cash": "1200"})),
            422,
            "VALIDATION_FAILED",
        ),
        (with("surprise", json!(1)), 400, "MALFORMED_REQUEST"),
    ] {
        let a = app
            .post("/v1/commands/invoices", &app.admin, body.clone())
            .await;
        assert_problem(&a, status, code);
        let _ = body;
    }
    for path in ["deliver", "recognize", "payments", "void"] {
        let body = match path {
            "deliver" => json!({"delivered_on": "2026-01-02"}),
            "recognize" => json!({"through": "2026-01-02"}),
            "payments" => json!({"amount": 1, "paid_on": "2026-01-02"}),
            _ => json!({"reason": "r"}),
        };
        let a = app
            .post(
                &format!("/v1/commands/invoices/nope/{path}"),
                &app.admin,
                body,
            )
            .await;
        assert_problem(&a, 404, "NOT_FOUND");
    }
    assert_eq!(app.log_len().await, before, "nothing was appended");
    // An analyst may read invoices but not issue them.
    let (analyst, _) = app.token("ann", "analyst").await;
    let a = app.post("/v1/commands/invoices", &analyst, base()).await;
    assert_problem(&a, 403, "FORBIDDEN");
    let a = app.get("/v1/queries/invoices", &analyst, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
}
