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
use crate::http::schema::{AccountCode, AggregateId, Amount, Currency, ShortText, Text};
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
    code: AccountCode,
    name: ShortText,
    #[serde(rename = "type")]
    account_type: AccountType,
    currency: Currency,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostEntryBody {
    entry_id: Option<AggregateId>,
    effective_date: NaiveDate,
    /// At most 2 000 characters.
    #[serde(default)]
    #[schema(max_length = 2000, pattern = r"^[^\x00]*$")]
    memo: String,
    /// Two or more, each exactly one of debit and credit; per currency, debits equal
    /// credits, on open accounts of the line's currency.
    #[schema(value_type = Vec<LineSchema>, min_items = 2, max_items = 500)]
    lines: Vec<LineBody>,
}

/// One line as it is parsed: which of debit and credit it has is the decider's to check
/// (`422` when not exactly one), as the document says (`LineSchema`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LineBody {
    account: AccountCode,
    debit: Option<chronicle_events::domain::MinorUnits>,
    credit: Option<chronicle_events::domain::MinorUnits>,
    currency: Currency,
}

/// One line of an entry: an account, exactly one of debit and credit, and the line's
/// currency (the account's).
#[derive(utoipa::ToSchema)]
#[serde(untagged, deny_unknown_fields)]
#[allow(dead_code)] // documents LineBody
pub(crate) enum LineSchema {
    Debit {
        account: AccountCode,
        debit: Amount,
        currency: Currency,
    },
    Credit {
        account: AccountCode,
        credit: Amount,
        currency: Currency,
    },
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReverseBody {
    reason: Text,
    reversal_entry_id: Option<AggregateId>,
}

command! {
    open_account: POST "/v1/commands/accounts", "commands: ledger", "Open an account" => 201,
    body: OpenAccountBody,
    |req| req.run(|b, _| Command::OpenAccount {
        code: b.code.into(),
        name: b.name.into(),
        account_type: b.account_type,
        currency: b.currency.into(),
    })
    .await
}

command! {
    close_account: POST "/v1/commands/accounts/{code}/close",
    "commands: ledger", "Close an account" => 200,
    body: EmptyBody, path: ["code" => code: AccountCode],
    |req| req.run(|_, _| Command::CloseAccount { code: code.into() }).await
}

command! {
    post_entry: POST "/v1/commands/journal-entries",
    "commands: ledger", "Post a balanced journal entry" => 201,
    body: PostEntryBody,
    |req| req.run(|b, id| Command::PostEntry {
        entry_id: b.entry_id.map_or_else(|| derived_id(id, "entry"), String::from),
        effective_date: b.effective_date,
        memo: b.memo,
        lines: b
            .lines
            .into_iter()
            .map(|l| JournalLine {
                account: l.account.into(),
                debit: l.debit,
                credit: l.credit,
                currency: l.currency.into(),
            })
            .collect(),
    })
    .await
}

command! {
    reverse_entry: POST "/v1/commands/journal-entries/{id}/reverse",
    "commands: ledger", "Reverse an entry with a mirror entry" => 200,
    body: ReverseBody, path: ["id" => entry_id: AggregateId],
    |req| req.run(|b, id| Command::ReverseEntry {
        entry_id: entry_id.into(),
        reversal_entry_id: b
            .reversal_entry_id
            .map_or_else(|| derived_id(id, "reversal"), String::from),
        reason: b.reason.into(),
    })
    .await
}
