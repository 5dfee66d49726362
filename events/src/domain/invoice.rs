//! Domain `invoice`: an invoice and its revenue recognition (stream `invoice.<invoice_id>`).
//!
//! Each event here is appended together with the journal entry it causes (and, when the
//! invoice is issued, the default accounts it needs), in one atomic append; the entry
//! carries `source: "invoice.<id>"` and its id is named in the event.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::domain_events;
use super::money::MinorUnits;

/// An invoice's status: `DRAFT → OPEN → PARTIALLY_PAID → PAID`, and `DRAFT → VOID`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvoiceStatus {
    /// Issued; nothing recognized yet.
    Draft,
    /// Revenue recognized (delivered, or a first month passed); nothing paid.
    Open,
    PartiallyPaid,
    Paid,
    /// Voided while a draft: its issue entry reversed.
    Void,
}

impl InvoiceStatus {
    pub const ALL: [InvoiceStatus; 5] = [
        InvoiceStatus::Draft,
        InvoiceStatus::Open,
        InvoiceStatus::PartiallyPaid,
        InvoiceStatus::Paid,
        InvoiceStatus::Void,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "DRAFT",
            InvoiceStatus::Open => "OPEN",
            InvoiceStatus::PartiallyPaid => "PARTIALLY_PAID",
            InvoiceStatus::Paid => "PAID",
            InvoiceStatus::Void => "VOID",
        }
    }
}

/// When an invoice's revenue is earned: all of it on delivery, or in equal monthly parts
/// over `months` months from `start` (the remainder on the last month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Recognition {
    OnDelivery,
    Ratable { start: NaiveDate, months: u32 },
}

/// The accounts an invoice posts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceAccounts {
    /// Accounts receivable (ASSET), `1200` by default.
    pub receivable: String,
    /// Deferred revenue (LIABILITY), `2200` by default.
    pub deferred: String,
    /// Revenue (REVENUE), `4000` by default.
    pub revenue: String,
    /// Cash (ASSET), `1000` by default.
    pub cash: String,
}

/// One line of an invoice: what is sold and for how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub description: String,
    pub amount: MinorUnits,
}

/// An invoice is issued (`DRAFT`): its total is receivable and deferred revenue
/// (entry `entry_id`: Dr receivable / Cr deferred).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceIssued {
    pub invoice_id: String,
    pub customer: String,
    pub currency: String,
    pub issue_date: NaiveDate,
    pub lines: Vec<InvoiceLine>,
    pub total: MinorUnits,
    pub recognition: Recognition,
    pub accounts: InvoiceAccounts,
    pub entry_id: String,
}

/// Revenue is earned: `amount` moves from deferred revenue to revenue (entry `entry_id`:
/// Dr deferred / Cr revenue), effective `recognized_on`. `month` is the month of a ratable
/// invoice (1 to its `months`); absent for recognition on delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevenueRecognized {
    pub entry_id: String,
    pub amount: MinorUnits,
    pub recognized_on: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month: Option<u32>,
    /// The day of delivery, for recognition on delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_on: Option<NaiveDate>,
}

/// A payment is received (entry `entry_id`: Dr cash / Cr receivable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceived {
    pub entry_id: String,
    pub amount: MinorUnits,
    pub paid_on: NaiveDate,
}

/// A draft is voided: its issue entry is reversed by `entry_id`, effective `voided_on`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceVoided {
    pub reason: String,
    pub entry_id: String,
    pub voided_on: NaiveDate,
}

domain_events!(
    /// Events of an invoice's stream.
    InvoiceEvent,
    Invoice,
    [InvoiceIssued, RevenueRecognized, PaymentReceived, InvoiceVoided]
);
