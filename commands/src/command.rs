//! Every command of the contract as one value: what the HTTP routes parse into, what the
//! handler executes, and what an escalated approval carries until a human approves it.

use chronicle_events::domain::agent::Maturity;
use chronicle_events::domain::chart::AccountType;
use chronicle_events::domain::entry::JournalLine;
use chronicle_events::domain::invoice::{InvoiceAccounts, InvoiceLine, Recognition};
use chronicle_events::domain::money::MinorUnits;
use chronicle_events::domain::user::Role;
use chronicle_events::{Domain, StreamId};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Rejection;
use crate::governance::Action;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    IssueToken {
        user_id: String,
        role: Role,
        scopes: Vec<String>,
        ttl_seconds: Option<i64>,
    },
    RevokeToken {
        user_id: String,
        jti: Uuid,
        reason: String,
    },
    RevokeAllTokens {
        user_id: String,
        reason: String,
    },
    SubmitJob {
        job_id: String,
        agent_id: String,
        kind: String,
        input: serde_json::Value,
    },
    StartJob {
        job_id: String,
    },
    CompleteJob {
        job_id: String,
        result: serde_json::Value,
    },
    FailJob {
        job_id: String,
        error: String,
    },
    CancelJob {
        job_id: String,
        reason: String,
    },
    RetryJob {
        job_id: String,
    },
    RequestApproval {
        approval_id: String,
        action: String,
        payload: serde_json::Value,
        reason: String,
    },
    ApproveApproval {
        approval_id: String,
        reason: Option<String>,
    },
    RejectApproval {
        approval_id: String,
        reason: String,
    },
    OpenAccount {
        code: String,
        name: String,
        account_type: AccountType,
        currency: String,
    },
    CloseAccount {
        code: String,
    },
    PostEntry {
        entry_id: String,
        effective_date: NaiveDate,
        memo: String,
        lines: Vec<JournalLine>,
    },
    ReverseEntry {
        entry_id: String,
        reversal_entry_id: String,
        reason: String,
    },
    RegisterAgent {
        agent_id: String,
        name: String,
        maturity: Maturity,
    },
    ChangeMaturity {
        agent_id: String,
        maturity: Maturity,
        reason: String,
    },
    SetBypass {
        enabled: bool,
        reason: String,
        until: Option<DateTime<Utc>>,
    },
    IssueInvoice {
        invoice_id: String,
        customer: String,
        currency: String,
        issue_date: NaiveDate,
        lines: Vec<InvoiceLine>,
        recognition: Recognition,
        accounts: InvoiceAccounts,
    },
    DeliverInvoice {
        invoice_id: String,
        delivered_on: NaiveDate,
    },
    RecognizeRevenue {
        invoice_id: String,
        through: NaiveDate,
    },
    RecordPayment {
        invoice_id: String,
        amount: MinorUnits,
        paid_on: NaiveDate,
    },
    VoidInvoice {
        invoice_id: String,
        reason: String,
    },
}

/// The one stream of the global governance switches.
pub const BYPASS_STREAM_ID: &str = "bypass";

fn stream(domain: Domain, id: &str, field: &'static str) -> Result<StreamId, Rejection> {
    StreamId::new(domain, id).map_err(|_| Rejection::bad_id(field))
}

impl Command {
    pub fn action(&self) -> Action {
        use Command::*;
        match self {
            IssueToken { .. } => Action::IssueToken,
            RevokeToken { .. } => Action::RevokeToken,
            RevokeAllTokens { .. } => Action::RevokeAllTokens,
            SubmitJob { .. } => Action::SubmitJob,
            StartJob { .. } => Action::StartJob,
            CompleteJob { .. } => Action::CompleteJob,
            FailJob { .. } => Action::FailJob,
            CancelJob { .. } => Action::CancelJob,
            RetryJob { .. } => Action::RetryJob,
            RequestApproval { .. } => Action::RequestApproval,
            ApproveApproval { .. } => Action::ApproveApproval,
            RejectApproval { .. } => Action::RejectApproval,
            OpenAccount { .. } => Action::OpenAccount,
            CloseAccount { .. } => Action::CloseAccount,
            PostEntry { .. } => Action::PostEntry,
            ReverseEntry { .. } => Action::ReverseEntry,
            RegisterAgent { .. } => Action::RegisterAgent,
            ChangeMaturity { .. } => Action::ChangeMaturity,
            SetBypass { .. } => Action::SetBypass,
            IssueInvoice { .. } => Action::IssueInvoice,
            DeliverInvoice { .. } => Action::DeliverInvoice,
            RecognizeRevenue { .. } => Action::RecognizeRevenue,
            RecordPayment { .. } => Action::RecordPayment,
            VoidInvoice { .. } => Action::VoidInvoice,
        }
    }

    /// The aggregate the command is about: its answer's `stream`.
    pub fn stream(&self) -> Result<StreamId, Rejection> {
        use Command::*;
        match self {
            IssueToken { user_id, .. }
            | RevokeToken { user_id, .. }
            | RevokeAllTokens { user_id, .. } => stream(Domain::User, user_id, "user_id"),
            SubmitJob { job_id, .. }
            | StartJob { job_id }
            | CompleteJob { job_id, .. }
            | FailJob { job_id, .. }
            | CancelJob { job_id, .. }
            | RetryJob { job_id } => stream(Domain::Job, job_id, "job_id"),
            RequestApproval { approval_id, .. }
            | ApproveApproval { approval_id, .. }
            | RejectApproval { approval_id, .. } => {
                stream(Domain::Approval, approval_id, "approval_id")
            }
            OpenAccount { code, .. } | CloseAccount { code } => {
                crate::chart::require_code(code)?;
                stream(Domain::Chart, code, "code")
            }
            PostEntry { entry_id, .. } | ReverseEntry { entry_id, .. } => {
                stream(Domain::Entry, entry_id, "entry_id")
            }
            RegisterAgent { agent_id, .. } | ChangeMaturity { agent_id, .. } => {
                stream(Domain::Agent, agent_id, "agent_id")
            }
            SetBypass { .. } => stream(Domain::Governance, BYPASS_STREAM_ID, "stream"),
            IssueInvoice { invoice_id, .. }
            | DeliverInvoice { invoice_id, .. }
            | RecognizeRevenue { invoice_id, .. }
            | RecordPayment { invoice_id, .. }
            | VoidInvoice { invoice_id, .. } => stream(Domain::Invoice, invoice_id, "invoice_id"),
        }
    }

    /// Whether a success creates something new (`201`): an aggregate, or a token. Stated
    /// for every command, so that a new one does not compile until it is.
    pub fn creates(&self) -> bool {
        use Command::*;
        match self {
            IssueToken { .. }
            | SubmitJob { .. }
            | RequestApproval { .. }
            | OpenAccount { .. }
            | PostEntry { .. }
            | RegisterAgent { .. }
            | IssueInvoice { .. } => true,
            RevokeToken { .. }
            | RevokeAllTokens { .. }
            | StartJob { .. }
            | CompleteJob { .. }
            | FailJob { .. }
            | CancelJob { .. }
            | RetryJob { .. }
            | ApproveApproval { .. }
            | RejectApproval { .. }
            | CloseAccount { .. }
            | ReverseEntry { .. }
            | ChangeMaturity { .. }
            | SetBypass { .. }
            | DeliverInvoice { .. }
            | RecognizeRevenue { .. }
            | RecordPayment { .. }
            | VoidInvoice { .. } => false,
        }
    }
}
