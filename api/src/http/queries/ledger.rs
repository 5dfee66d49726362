//! Ledger queries: accounts with balances, journal entries with their lines, and the trial
//! balance. Sums are exact integers written as strings: they can exceed what a JSON number
//! carries safely.

use std::collections::HashMap;

use chronicle_commands::permissions::Read;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};
use tokio_postgres::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{answer, one, page_of, prepare, query};
use crate::error::ApiError;
use crate::http::routes::query;
use crate::http::schema::{AccountCode, AggregateId, Limit};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(accounts))
        .routes(routes!(account))
        .routes(routes!(journal_entries))
        .routes(routes!(journal_entry))
        .routes(routes!(trial_balance))
}

const ACCOUNT_COLUMNS: &str = "code, name, type, currency, status, debits::text AS debits, credits::text AS credits, (debits - credits)::text AS balance, opened_at, closed_at, seq";

fn account_json(r: &Row) -> Value {
    json!({
        "code": r.get::<_, String>("code"),
        "name": r.get::<_, String>("name"),
        "type": r.get::<_, String>("type"),
        "currency": r.get::<_, String>("currency"),
        "status": r.get::<_, String>("status"),
        "debits": r.get::<_, String>("debits"),
        "credits": r.get::<_, String>("credits"),
        "balance": r.get::<_, String>("balance"),
        "opened_at": r.get::<_, DateTime<Utc>>("opened_at"),
        "closed_at": r.get::<_, Option<DateTime<Utc>>>("closed_at"),
    })
}

query! {
    accounts: GET "/v1/queries/accounts", "Accounts with balances" => Page,
    query: ["limit": Limit, "after": String],
    |s, caller, headers, f| {
        let page = f.page()?;
        let position = prepare(&s, &caller, &headers, Read::Ledger, &["ledger"]).await?;
        let sql = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM read.accounts WHERE seq > $1 ORDER BY seq LIMIT $2"
        );
        let rows = query(&s, &sql, &[&page.after, &(page.limit + 1)]).await?;
        Ok(answer(position, page_of(rows, &page, account_json)))
    }
}

query! {
    account: GET "/v1/queries/accounts/{code}", "One account with its balance" => Document,
    path: ["code" => code: AccountCode],
    query: [],
    |s, caller, headers, f| {
        let position = prepare(&s, &caller, &headers, Read::Ledger, &["ledger"]).await?;
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM read.accounts WHERE code = $1");
        let rows = query(&s, &sql, &[&code]).await?;
        Ok(answer(position, one(rows, "account", account_json)?))
    }
}

fn line_json(r: &Row) -> Value {
    json!({
        "line": r.get::<_, i32>("line_no"),
        "account": r.get::<_, String>("account"),
        "debit": r.get::<_, Option<i64>>("debit"),
        "credit": r.get::<_, Option<i64>>("credit"),
        "currency": r.get::<_, String>("currency"),
    })
}

async fn entries_with_lines(
    s: &AppState,
    rows: &[Row],
) -> Result<HashMap<String, Vec<Value>>, ApiError> {
    let ids: Vec<String> = rows.iter().map(|r| r.get("entry_id")).collect();
    let lines = query(
        s,
        "SELECT entry_id, line_no, account, debit, credit, currency FROM read.journal_lines
         WHERE entry_id = ANY($1) ORDER BY entry_id, line_no",
        &[&ids],
    )
    .await?;
    let mut by_entry: HashMap<String, Vec<Value>> = HashMap::new();
    for l in &lines {
        by_entry
            .entry(l.get("entry_id"))
            .or_default()
            .push(line_json(l));
    }
    Ok(by_entry)
}

const ENTRY_COLUMNS: &str = "entry_id, effective_date, memo, reverses, reversed_by, reverse_reason, posted_by, posted_at, source, seq";

fn entry_json(r: &Row, lines: &HashMap<String, Vec<Value>>) -> Value {
    let id: String = r.get("entry_id");
    json!({
        "entry_id": id,
        "effective_date": r.get::<_, NaiveDate>("effective_date"),
        "memo": r.get::<_, String>("memo"),
        "reverses": r.get::<_, Option<String>>("reverses"),
        "reversed_by": r.get::<_, Option<String>>("reversed_by"),
        "reverse_reason": r.get::<_, Option<String>>("reverse_reason"),
        "posted_by": r.get::<_, String>("posted_by"),
        "posted_at": r.get::<_, DateTime<Utc>>("posted_at"),
        "source": r.get::<_, Option<String>>("source"),
        "lines": lines.get(&id).cloned().unwrap_or_default(),
    })
}

query! {
    journal_entries: GET "/v1/queries/journal-entries", "Journal entries with lines" => Page,
    query: ["account": AccountCode, "from": chrono::NaiveDate, "to": chrono::NaiveDate, "source": String, "limit": Limit, "after": String],
    |s, caller, headers, f| {
        let account = f.text("account");
        let source = f.text("source");
        let (from, to) = (f.date("from")?, f.date("to")?);
        let page = f.page()?;
        let position = prepare(&s, &caller, &headers, Read::Ledger, &["ledger"]).await?;
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM read.journal_entries e WHERE seq > $1
               AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM read.journal_lines l WHERE l.entry_id = e.entry_id AND l.account = $2))
               AND ($3::date IS NULL OR effective_date >= $3) AND ($4::date IS NULL OR effective_date <= $4)
               AND ($5::text IS NULL OR source = $5)
             ORDER BY seq LIMIT $6"
        );
        let rows = query(
            &s,
            &sql,
            &[&page.after, &account, &from, &to, &source, &(page.limit + 1)],
        )
        .await?;
        let lines = entries_with_lines(&s, &rows).await?;
        Ok(answer(position, page_of(rows, &page, |r| entry_json(r, &lines))))
    }
}

query! {
    journal_entry: GET "/v1/queries/journal-entries/{id}", "One journal entry" => Document,
    path: ["id" => id: AggregateId],
    query: [],
    |s, caller, headers, f| {
        let position = prepare(&s, &caller, &headers, Read::Ledger, &["ledger"]).await?;
        let sql = format!("SELECT {ENTRY_COLUMNS} FROM read.journal_entries WHERE entry_id = $1");
        let rows = query(&s, &sql, &[&id]).await?;
        let lines = entries_with_lines(&s, &rows).await?;
        Ok(answer(
            position,
            one(rows, "journal entry", |r| entry_json(r, &lines))?,
        ))
    }
}

query! {
    /// Per account and currency, the sums of lines effective on or before `as_of` (today by
    /// default), and per currency the totals, whose debits always equal their credits.
    trial_balance: GET "/v1/queries/trial-balance", "Trial balance per account and currency" => Document,
    query: ["as_of": chrono::NaiveDate],
    |s, caller, headers, f| {
        let as_of = f.date("as_of")?.unwrap_or_else(|| Utc::now().date_naive());
        let position = prepare(&s, &caller, &headers, Read::Ledger, &["ledger"]).await?;
        let rows = query(
            &s,
            "SELECT l.account, a.name, a.type, l.currency,
                    COALESCE(sum(l.debit), 0)::text AS debits, COALESCE(sum(l.credit), 0)::text AS credits,
                    (COALESCE(sum(l.debit), 0) - COALESCE(sum(l.credit), 0))::text AS balance
             FROM read.journal_lines l JOIN read.accounts a ON a.code = l.account
             WHERE l.effective_date <= $1
             GROUP BY l.account, a.name, a.type, l.currency ORDER BY l.currency, l.account",
            &[&as_of],
        )
        .await?;
        let totals = query(
            &s,
            "SELECT currency, COALESCE(sum(debit), 0)::text AS debits, COALESCE(sum(credit), 0)::text AS credits
             FROM read.journal_lines WHERE effective_date <= $1 GROUP BY currency ORDER BY currency",
            &[&as_of],
        )
        .await?;
        Ok(answer(
            position,
            json!({
                "as_of": as_of,
                "accounts": rows.iter().map(|r| json!({
                    "account": r.get::<_, String>("account"),
                    "name": r.get::<_, String>("name"),
                    "type": r.get::<_, String>("type"),
                    "currency": r.get::<_, String>("currency"),
                    "debits": r.get::<_, String>("debits"),
                    "credits": r.get::<_, String>("credits"),
                    "balance": r.get::<_, String>("balance"),
                })).collect::<Vec<_>>(),
                "totals": totals.iter().map(|r| json!({
                    "currency": r.get::<_, String>("currency"),
                    "debits": r.get::<_, String>("debits"),
                    "credits": r.get::<_, String>("credits"),
                })).collect::<Vec<_>>(),
            }),
        ))
    }
}
