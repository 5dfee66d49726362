//! `POST /v1/commands/accounts...` and `.../journal-entries...`: the chart of accounts and
//! balanced journal entries.

use chronicle_commands::Command;
use chronicle_events::domain::chart::AccountType;
use chronicle_events::domain::entry::JournalLine;
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::EmptyBody;
use crate::http::request::derived_id;
use crate::http::routes::command;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_account))
        .routes(routes!(close_account))
        .routes(routes!(post_entry))
        .routes(routes!(reverse_entry))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct OpenAccountBody {
    code: String,
    name: String,
    /// ASSET, LIABILITY, EQUITY, REVENUE or EXPENSE.
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    account_type: AccountType,
    currency: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostEntryBody {
    entry_id: Option<String>,
    effective_date: NaiveDate,
    #[serde(default)]
    memo: String,
    lines: Vec<LineBody>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineBody {
    account: String,
    /// Integer minor units, as a number or a string of digits.
    #[schema(value_type = Option<i64>)]
    debit: Option<chronicle_events::domain::MinorUnits>,
    #[schema(value_type = Option<i64>)]
    credit: Option<chronicle_events::domain::MinorUnits>,
    currency: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReverseBody {
    reason: String,
    reversal_entry_id: Option<String>,
}

command! {
    open_account: POST "/v1/commands/accounts", "commands: ledger", "Open an account" => 201,
    body: OpenAccountBody,
    |req| req.run(|b, _| Command::OpenAccount {
        code: b.code,
        name: b.name,
        account_type: b.account_type,
        currency: b.currency,
    })
    .await
}

command! {
    close_account: POST "/v1/commands/accounts/{code}/close",
    "commands: ledger", "Close an account" => 200,
    body: EmptyBody, path: ["code" => code: String],
    |req| req.run(|_, _| Command::CloseAccount { code }).await
}

command! {
    post_entry: POST "/v1/commands/journal-entries",
    "commands: ledger", "Post a balanced journal entry" => 201,
    body: PostEntryBody,
    |req| req.run(|b, id| Command::PostEntry {
        entry_id: b.entry_id.unwrap_or_else(|| derived_id(id, "entry")),
        effective_date: b.effective_date,
        memo: b.memo,
        lines: b
            .lines
            .into_iter()
            .map(|l| JournalLine {
                account: l.account,
                debit: l.debit,
                credit: l.credit,
                currency: l.currency,
            })
            .collect(),
    })
    .await
}

command! {
    reverse_entry: POST "/v1/commands/journal-entries/{id}/reverse",
    "commands: ledger", "Reverse an entry with a mirror entry" => 200,
    body: ReverseBody, path: ["id" => entry_id: String],
    |req| req.run(|b, id| Command::ReverseEntry {
        entry_id,
        reversal_entry_id: b
            .reversal_entry_id
            .unwrap_or_else(|| derived_id(id, "reversal")),
        reason: b.reason,
    })
    .await
}
