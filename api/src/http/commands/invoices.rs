//! `POST /v1/commands/invoices...`: invoices and their revenue recognition. Each command
//! appends the invoice's event with the journal entry it causes (and, on issue, the default
//! accounts it needs) in one append.

use chronicle_commands::Command;
use chronicle_commands::invoice::default_accounts;
use chronicle_events::domain::MinorUnits;
use chronicle_events::domain::invoice::{InvoiceAccounts, InvoiceLine, Recognition};
use chrono::NaiveDate;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ReasonBody;
use crate::http::request::derived_id;
use crate::http::routes::command;
use crate::http::schema::{AccountCode, AggregateId, Amount, Currency, ShortText, Text};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_invoice))
        .routes(routes!(deliver_invoice))
        .routes(routes!(recognize_revenue))
        .routes(routes!(record_payment))
        .routes(routes!(void_invoice))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssueInvoiceBody {
    invoice_id: Option<AggregateId>,
    customer: ShortText,
    currency: Currency,
    issue_date: NaiveDate,
    /// 1 to 500 lines; the invoice's total is their sum.
    #[schema(min_items = 1, max_items = 500)]
    lines: Vec<InvoiceLineBody>,
    recognition: RecognitionBody,
    /// The accounts to post to, each defaulting (receivable `1200`, deferred `2200`,
    /// revenue `4000`, cash `1000`); a default that does not exist yet is opened by the
    /// issue, in the invoice's currency.
    #[serde(default)]
    accounts: AccountsBody,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvoiceLineBody {
    description: Text,
    #[schema(value_type = Amount)]
    amount: MinorUnits,
}

/// When the revenue is earned: all on delivery, or ratably over `months` months from
/// `start` (`total / months` a month, the remainder on the last).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(
    tag = "method",
    rename_all = "SCREAMING_SNAKE_CASE",
    deny_unknown_fields
)]
pub(crate) enum RecognitionBody {
    OnDelivery,
    Ratable {
        start: NaiveDate,
        #[schema(minimum = 1, maximum = 120)]
        months: u32,
    },
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountsBody {
    receivable: Option<AccountCode>,
    deferred: Option<AccountCode>,
    revenue: Option<AccountCode>,
    cash: Option<AccountCode>,
}

impl AccountsBody {
    fn resolve(self) -> InvoiceAccounts {
        let d = default_accounts();
        let or = |given: Option<AccountCode>, default: String| given.map_or(default, String::from);
        InvoiceAccounts {
            receivable: or(self.receivable, d.receivable),
            deferred: or(self.deferred, d.deferred),
            revenue: or(self.revenue, d.revenue),
            cash: or(self.cash, d.cash),
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliverBody {
    delivered_on: NaiveDate,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecognizeBody {
    /// Every month whose end is on or before this day and not yet recognized is.
    through: NaiveDate,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PaymentBody {
    #[schema(value_type = Amount)]
    amount: MinorUnits,
    paid_on: NaiveDate,
}

command! {
    issue_invoice: POST "/v1/commands/invoices",
    "commands: invoices", "Issue an invoice (DRAFT): Dr receivable, Cr deferred revenue" => 201,
    body: IssueInvoiceBody,
    |req| req.run(|b, id| Command::IssueInvoice {
        invoice_id: b.invoice_id.map_or_else(|| derived_id(id, "invoice"), String::from),
        customer: b.customer.into(),
        currency: b.currency.into(),
        issue_date: b.issue_date,
        lines: b
            .lines
            .into_iter()
            .map(|l| InvoiceLine {
                description: l.description.into(),
                amount: l.amount,
            })
            .collect(),
        recognition: match b.recognition {
            RecognitionBody::OnDelivery => Recognition::OnDelivery,
            RecognitionBody::Ratable { start, months } => Recognition::Ratable { start, months },
        },
        accounts: b.accounts.resolve(),
    })
    .await
}

command! {
    deliver_invoice: POST "/v1/commands/invoices/{id}/deliver",
    "commands: invoices", "Deliver: recognize an ON_DELIVERY invoice's revenue" => 200,
    body: DeliverBody, path: ["id" => invoice_id: AggregateId],
    |req| req.run(|b, _| Command::DeliverInvoice {
        invoice_id: invoice_id.into(),
        delivered_on: b.delivered_on,
    })
    .await
}

command! {
    recognize_revenue: POST "/v1/commands/invoices/{id}/recognize",
    "commands: invoices", "Recognize a RATABLE invoice's months through a day" => 200,
    body: RecognizeBody, path: ["id" => invoice_id: AggregateId],
    |req| req.run(|b, _| Command::RecognizeRevenue {
        invoice_id: invoice_id.into(),
        through: b.through,
    })
    .await
}

command! {
    record_payment: POST "/v1/commands/invoices/{id}/payments",
    "commands: invoices", "Record a payment: Dr cash, Cr receivable" => 200,
    body: PaymentBody, path: ["id" => invoice_id: AggregateId],
    |req| req.run(|b, _| Command::RecordPayment {
        invoice_id: invoice_id.into(),
        amount: b.amount,
        paid_on: b.paid_on,
    })
    .await
}

command! {
    void_invoice: POST "/v1/commands/invoices/{id}/void",
    "commands: invoices", "Void a DRAFT invoice, reversing its issue entry" => 200,
    body: ReasonBody, path: ["id" => invoice_id: AggregateId],
    |req| req.run(|b, _| Command::VoidInvoice {
        invoice_id: invoice_id.into(),
        reason: b.reason.into(),
    })
    .await
}
