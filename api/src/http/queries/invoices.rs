//! Invoice queries: invoices by status and customer, one invoice with its amounts and
//! entries, and the revenue report. Amounts are exact integers written as strings.

use chronicle_commands::permissions::Read;
use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use serde_json::{Value, json};
use tokio_postgres::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{answer, one, page_of, prepare, query};
use crate::error::ApiError;
use crate::http::routes::query;
use crate::http::schema::{AggregateId, Currency, Limit, ShortText};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(invoices))
        .routes(routes!(invoice))
        .routes(routes!(revenue))
}

/// The most months one revenue report covers.
const MAX_MONTHS: u32 = 120;

const INVOICE_COLUMNS: &str = "invoice_id, customer, currency, issue_date, status, method, start_date, months, lines,
    total, recognized, deferred, paid, outstanding, months_recognized, delivered_on, receivable_account,
    deferred_account, revenue_account, cash_account, entry_ids, void_reason, voided_on, issued_by, issued_at,
    updated_at, seq";

fn amount(r: &Row, column: &str) -> String {
    r.get::<_, i64>(column).to_string()
}

fn invoice_json(r: &Row) -> Value {
    let method: String = r.get("method");
    let recognition = match r.get::<_, Option<NaiveDate>>("start_date") {
        Some(start) => json!({
            "method": method,
            "start": start,
            "months": r.get::<_, Option<i32>>("months"),
            "months_recognized": r.get::<_, i32>("months_recognized"),
        }),
        None => json!({ "method": method }),
    };
    json!({
        "invoice_id": r.get::<_, String>("invoice_id"),
        "customer": r.get::<_, String>("customer"),
        "currency": r.get::<_, String>("currency"),
        "issue_date": r.get::<_, NaiveDate>("issue_date"),
        "status": r.get::<_, String>("status"),
        "recognition": recognition,
        "lines": r.get::<_, Value>("lines"),
        "total": amount(r, "total"),
        "recognized": amount(r, "recognized"),
        "deferred": amount(r, "deferred"),
        "paid": amount(r, "paid"),
        "outstanding": amount(r, "outstanding"),
        "delivered_on": r.get::<_, Option<NaiveDate>>("delivered_on"),
        "accounts": {
            "receivable": r.get::<_, String>("receivable_account"),
            "deferred": r.get::<_, String>("deferred_account"),
            "revenue": r.get::<_, String>("revenue_account"),
            "cash": r.get::<_, String>("cash_account"),
        },
        "entry_ids": r.get::<_, Vec<String>>("entry_ids"),
        "void_reason": r.get::<_, Option<String>>("void_reason"),
        "voided_on": r.get::<_, Option<NaiveDate>>("voided_on"),
        "issued_by": r.get::<_, String>("issued_by"),
        "issued_at": r.get::<_, DateTime<Utc>>("issued_at"),
        "updated_at": r.get::<_, DateTime<Utc>>("updated_at"),
    })
}

const STATUSES: &[&str] = &["DRAFT", "OPEN", "PARTIALLY_PAID", "PAID", "VOID"];

query! {
    invoices: GET "/v1/queries/invoices", "Invoices" => Page,
    query: ["status": chronicle_events::domain::invoice::InvoiceStatus, "customer": ShortText, "limit": Limit, "after": String],
    |s, caller, headers, f| {
        let status = f.one_of("status", STATUSES)?;
        let customer = f.text("customer");
        let page = f.page()?;
        let position = prepare(&s, &caller, &headers, Read::Invoices, &["ledger"]).await?;
        let sql = format!(
            "SELECT {INVOICE_COLUMNS} FROM read.invoices WHERE seq > $1
               AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR customer = $3)
             ORDER BY seq LIMIT $4"
        );
        let rows = query(&s, &sql, &[&page.after, &status, &customer, &(page.limit + 1)]).await?;
        Ok(answer(position, page_of(rows, &page, invoice_json)))
    }
}

query! {
    invoice: GET "/v1/queries/invoices/{id}", "One invoice with its amounts and entries" => Document,
    path: ["id" => id: AggregateId],
    query: [],
    |s, caller, headers, f| {
        let position = prepare(&s, &caller, &headers, Read::Invoices, &["ledger"]).await?;
        let sql = format!("SELECT {INVOICE_COLUMNS} FROM read.invoices WHERE invoice_id = $1");
        let rows = query(&s, &sql, &[&id]).await?;
        Ok(answer(position, one(rows, "invoice", invoice_json)?))
    }
}

/// The first day of `day`'s month.
fn month_of(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

query! {
    /// Per calendar month from `from`'s to `to`'s (by default the twelve months to today's)
    /// and per currency: `recognized`, the revenue invoices recognized in the month, and
    /// `deferred`, the balance of the invoices' deferred-revenue accounts at the month's end
    /// (credits minus debits, on the lines effective by then) — the same figure the trial
    /// balance gives for those accounts as of that day, at every log position.
    revenue: GET "/v1/queries/revenue", "Revenue recognized and deferred, per month" => Document,
    query: ["from": chrono::NaiveDate, "to": chrono::NaiveDate, "currency": Currency],
    |s, caller, headers, f| {
        let to = month_of(f.date("to")?.unwrap_or_else(|| Utc::now().date_naive()));
        let from = match f.date("from")? {
            Some(from) => month_of(from),
            None => to.checked_sub_months(Months::new(11)).unwrap_or(to),
        };
        if from > to {
            return Err(ApiError::bad_param("from", "from must not be after to"));
        }
        let span = (to.year() - from.year()) * 12 + to.month() as i32 - from.month() as i32 + 1;
        if span > MAX_MONTHS as i32 {
            return Err(ApiError::bad_param(
                "from",
                format!("a report covers at most {MAX_MONTHS} months"),
            ));
        }
        let currency = f.text("currency");
        if let Some(c) = &currency
            && !chronicle_commands::chart::valid_currency(c)
        {
            return Err(ApiError::bad_param("currency", "currency must be three upper-case letters"));
        }
        let position = prepare(&s, &caller, &headers, Read::Invoices, &["ledger"]).await?;
        let rows = query(
            &s,
            "WITH months AS (
                 SELECT m::date AS month FROM generate_series($1::date, $2::date, interval '1 month') AS m
             ), accounts AS (
                 SELECT currency, array_agg(DISTINCT deferred_account) AS deferred,
                        array_agg(DISTINCT revenue_account) AS revenue
                 FROM read.invoices WHERE ($3::text IS NULL OR currency = $3) GROUP BY currency
             )
             SELECT to_char(m.month, 'YYYY-MM') AS month, a.currency,
                    (SELECT COALESCE(sum(l.credit), 0) - COALESCE(sum(l.debit), 0) FROM read.journal_lines l
                      WHERE l.account = ANY(a.revenue) AND l.currency = a.currency AND l.source LIKE 'invoice.%'
                        AND l.effective_date >= m.month AND l.effective_date < m.month + interval '1 month'
                    )::text AS recognized,
                    (SELECT COALESCE(sum(l.credit), 0) - COALESCE(sum(l.debit), 0) FROM read.journal_lines l
                      WHERE l.account = ANY(a.deferred) AND l.currency = a.currency
                        AND l.effective_date < m.month + interval '1 month'
                    )::text AS deferred
             FROM months m CROSS JOIN accounts a ORDER BY a.currency, m.month",
            &[&from, &to, &currency],
        )
        .await?;
        Ok(answer(
            position,
            json!({
                "from": from,
                "to": to
                    .checked_add_months(Months::new(1))
                    .and_then(|next| next.pred_opt())
                    .unwrap_or(to),
                "months": rows.iter().map(|r| json!({
                    "month": r.get::<_, String>("month"),
                    "currency": r.get::<_, String>("currency"),
                    "recognized": r.get::<_, String>("recognized"),
                    "deferred": r.get::<_, String>("deferred"),
                })).collect::<Vec<_>>(),
            }),
        ))
    }
}
