//! The invoice decider, and the entries an invoice's events post.
//!
//! An invoice is issued `DRAFT`: its total is receivable, and deferred revenue (a
//! liability) until it is earned. It is earned on delivery (`ON_DELIVERY`: all of it,
//! status `OPEN`), or month by month (`RATABLE`: `total / months` a month, the remainder
//! on the last, so the months sum to the total exactly; `OPEN` after the first). Payments
//! move it to `PARTIALLY_PAID` and `PAID`, never past the total. Only a draft is voided,
//! which reverses its issue entry.
//!
//! Each event is appended with the journal entry it causes ([`posting`]), in one append;
//! the entry's id is derived from the invoice's id and what caused it, so a command decided
//! twice names the same entry. The accounts are checked here against the chart as of the
//! decision (the context): each of the right type, open, in the invoice's currency — or,
//! missing, one of the default codes, which the issuing append opens ([`accounts_to_open`]).
//!
//! Recognition debits deferred revenue and credits revenue: deferred revenue is a
//! liability, so earning it decreases it (a debit) and increases revenue (a credit).

use chronicle_events::domain::InvoiceEvent;
use chronicle_events::domain::chart::AccountType;
use chronicle_events::domain::entry::JournalLine;
use chronicle_events::domain::invoice::{
    InvoiceAccounts, InvoiceIssued, InvoiceLine, InvoiceStatus, InvoiceVoided, PaymentReceived,
    Recognition, RevenueRecognized,
};
use chronicle_events::domain::money::MinorUnits;
use chrono::{Months, NaiveDate};
use uuid::Uuid;

use crate::chart::{Account, ChartCommand, valid_code, valid_currency};
use crate::entry::{Chart, EntryCommand};
use crate::{Decider, Rejection, RejectionCode, require_date, require_id, require_text};

pub const MAX_LINES: usize = 500;
pub const MAX_MONTHS: u32 = 120;

/// The accounts an invoice posts to unless it names others, with the type each must have
/// and the name it is opened with when it does not exist yet.
pub const DEFAULT_ACCOUNTS: [(Role, &str, AccountType, &str); 4] = [
    (
        Role::Receivable,
        "1200",
        AccountType::Asset,
        "Accounts receivable",
    ),
    (
        Role::Deferred,
        "2200",
        AccountType::Liability,
        "Deferred revenue",
    ),
    (Role::Revenue, "4000", AccountType::Revenue, "Revenue"),
    (Role::Cash, "1000", AccountType::Asset, "Cash"),
];

/// What an account is to an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Receivable,
    Deferred,
    Revenue,
    Cash,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Receivable => "receivable",
            Role::Deferred => "deferred",
            Role::Revenue => "revenue",
            Role::Cash => "cash",
        }
    }

    fn code(self, accounts: &InvoiceAccounts) -> &str {
        match self {
            Role::Receivable => &accounts.receivable,
            Role::Deferred => &accounts.deferred,
            Role::Revenue => &accounts.revenue,
            Role::Cash => &accounts.cash,
        }
    }
}

/// The default accounts, for an invoice that names none.
pub fn default_accounts() -> InvoiceAccounts {
    let code = |role: Role| {
        DEFAULT_ACCOUNTS
            .iter()
            .find(|(r, ..)| *r == role)
            .map(|(_, c, ..)| (*c).to_owned())
            .unwrap_or_default()
    };
    InvoiceAccounts {
        receivable: code(Role::Receivable),
        deferred: code(Role::Deferred),
        revenue: code(Role::Revenue),
        cash: code(Role::Cash),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceCommand {
    Issue {
        invoice_id: String,
        customer: String,
        currency: String,
        issue_date: NaiveDate,
        lines: Vec<InvoiceLine>,
        recognition: Recognition,
        accounts: InvoiceAccounts,
    },
    Deliver {
        delivered_on: NaiveDate,
    },
    Recognize {
        through: NaiveDate,
    },
    Pay {
        amount: MinorUnits,
        paid_on: NaiveDate,
    },
    Void {
        reason: String,
        /// Today: the reversal is effective then (or on the issue date, if later).
        today: NaiveDate,
    },
}

/// An invoice as its events leave it. Amounts are kept exact: `recognized + deferred =
/// total` and `paid + outstanding = total` (both zero once void).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Invoice {
    pub issued: InvoiceIssued,
    pub status: InvoiceStatus,
    pub recognized: MinorUnits,
    pub deferred: MinorUnits,
    pub paid: MinorUnits,
    pub outstanding: MinorUnits,
    /// Months of a ratable invoice recognized so far.
    pub months_recognized: u32,
    pub delivered_on: Option<NaiveDate>,
    pub payments: u32,
    /// Its entries, the issue entry first.
    pub entry_ids: Vec<String>,
}

impl Invoice {
    /// The stream id of this invoice, as its entries name their source.
    pub fn source(&self) -> String {
        source_of(&self.issued.invoice_id)
    }
}

/// What an invoice's entries carry as their `source`.
pub fn source_of(invoice_id: &str) -> String {
    format!("invoice.{invoice_id}")
}

/// The id of the entry an invoice's event posts: a UUID v5 of the invoice and what caused
/// it, so that deciding the same thing twice names the same entry.
pub fn entry_id(invoice_id: &str, what: &str) -> String {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6368_726f_6e69_636c_6569_6e76_6f69_6365);
    Uuid::new_v5(
        &NAMESPACE,
        format!("invoice.{invoice_id}/{what}").as_bytes(),
    )
    .to_string()
}

/// Month `month` (1-based) of a ratable invoice from `start` ends the day before the same
/// day `month` months later (clamped to the month's end: from 31 January, the first month
/// ends on 27 February). `None` past the calendar's end.
pub fn month_end(start: NaiveDate, month: u32) -> Option<NaiveDate> {
    start.checked_add_months(Months::new(month))?.pred_opt()
}

/// The day month `month` is recognized: its end, or the issue date for a month that ended
/// before the invoice was issued (caught up on issue, never dated before it).
pub fn recognition_date(issued: &InvoiceIssued, start: NaiveDate, month: u32) -> Option<NaiveDate> {
    month_end(start, month).map(|end| end.max(issued.issue_date))
}

/// Month `month`'s share of `total` over `months`: `total / months`, the last month taking
/// the remainder.
pub fn monthly_amount(total: MinorUnits, months: u32, month: u32) -> MinorUnits {
    let months = i64::from(months.max(1));
    let share = total.0 / months;
    if i64::from(month) == months {
        MinorUnits(total.0 - share * (months - 1))
    } else {
        MinorUnits(share)
    }
}

pub struct InvoiceDecider;

fn conflict(message: impl Into<String>) -> Rejection {
    Rejection::new(RejectionCode::InvalidTransition, message)
}

fn not_before_issue(field: &'static str, date: NaiveDate, inv: &Invoice) -> Result<(), Rejection> {
    require_date(field, date)?;
    if date < inv.issued.issue_date {
        return Err(Rejection::invalid(
            field,
            format!(
                "{field} {date} is before the invoice's issue date {}",
                inv.issued.issue_date
            ),
        ));
    }
    Ok(())
}

/// Checks the accounts of an invoice against the chart as of the decision.
fn check_accounts(
    accounts: &InvoiceAccounts,
    currency: &str,
    chart: &Chart,
) -> Result<(), Rejection> {
    let codes = [
        &accounts.receivable,
        &accounts.deferred,
        &accounts.revenue,
        &accounts.cash,
    ];
    if let Some(bad) = codes.iter().find(|c| !valid_code(c)) {
        return Err(Rejection::invalid(
            "accounts",
            format!("account code `{bad}` must be 1 to 32 characters of A-Z, a-z, 0-9, '-' or '_'"),
        ));
    }
    for (i, a) in codes.iter().enumerate() {
        if codes[..i].contains(a) {
            return Err(Rejection::invalid(
                "accounts",
                format!("account {a} is named for two purposes; each must be its own"),
            ));
        }
    }
    for (role, default, account_type, _) in DEFAULT_ACCOUNTS {
        let code = role.code(accounts);
        match chart.get(code) {
            Some(account) => check_account(account, role, account_type, currency)?,
            None if code == default => {} // opened by the issuing append
            None => {
                return Err(Rejection::new(
                    RejectionCode::UnknownAccount,
                    format!(
                        "no account {code} (the {} account); only the default {default} is opened for an invoice",
                        role.name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_account(
    account: &Account,
    role: Role,
    account_type: AccountType,
    currency: &str,
) -> Result<(), Rejection> {
    if account.account_type != account_type {
        return Err(Rejection::invalid(
            "accounts",
            format!(
                "account {} is {}; the {} account must be {}",
                account.code,
                account.account_type.as_str(),
                role.name(),
                account_type.as_str()
            ),
        ));
    }
    if !account.open {
        return Err(Rejection::new(
            RejectionCode::AccountClosed,
            format!("account {} is closed", account.code),
        ));
    }
    if account.currency != currency {
        return Err(Rejection::new(
            RejectionCode::CurrencyMismatch,
            format!(
                "account {} is in {}, the invoice in {currency}",
                account.code, account.currency
            ),
        ));
    }
    Ok(())
}

fn check_issue(command: &InvoiceCommand, chart: &Chart) -> Result<MinorUnits, Rejection> {
    let InvoiceCommand::Issue {
        invoice_id,
        customer,
        currency,
        issue_date,
        lines,
        recognition,
        accounts,
    } = command
    else {
        unreachable!("only an issue is checked as one")
    };
    require_id("invoice_id", invoice_id)?;
    require_date("issue_date", *issue_date)?;
    require_text("customer", customer, 200)?;
    if !valid_currency(currency) {
        return Err(Rejection::invalid(
            "currency",
            "currency must be three upper-case letters (ISO 4217)",
        ));
    }
    if lines.is_empty() || lines.len() > MAX_LINES {
        return Err(Rejection::invalid(
            "lines",
            format!("an invoice has 1 to {MAX_LINES} lines"),
        ));
    }
    let mut total: i64 = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.description.trim().is_empty() || line.description.chars().count() > 2000 {
            return Err(Rejection::invalid(
                "lines",
                format!(
                    "line {}: a description of 1 to 2000 characters, not blank",
                    i + 1
                ),
            ));
        }
        if line.amount <= MinorUnits(0) {
            return Err(Rejection::invalid(
                "lines",
                format!("line {}: the amount must be positive", i + 1),
            ));
        }
        total = total
            .checked_add(line.amount.0)
            .ok_or_else(|| Rejection::invalid("lines", "the invoice's total overflows 2^63-1"))?;
    }
    if let Recognition::Ratable { start, months } = recognition {
        if !(1..=MAX_MONTHS).contains(months) {
            return Err(Rejection::invalid(
                "recognition",
                format!("months must be 1 to {MAX_MONTHS}"),
            ));
        }
        require_date("recognition", *start)?;
        if !month_end(*start, *months).is_some_and(crate::valid_date) {
            return Err(Rejection::invalid(
                "recognition",
                "the recognition period must end by 9999-12-31",
            ));
        }
    }
    check_accounts(accounts, currency, chart)?;
    Ok(MinorUnits(total))
}

impl Decider for InvoiceDecider {
    type Command = InvoiceCommand;
    type Event = InvoiceEvent;
    type State = Option<Invoice>;
    /// The invoice's four accounts as the log has them (those that exist).
    type Context = Chart;

    fn initial_state() -> Option<Invoice> {
        None
    }

    fn decide(
        command: &InvoiceCommand,
        state: &Option<Invoice>,
        chart: &Chart,
    ) -> Result<Vec<InvoiceEvent>, Rejection> {
        let Some(inv) = state else {
            return match command {
                InvoiceCommand::Issue {
                    invoice_id,
                    customer,
                    currency,
                    issue_date,
                    lines,
                    recognition,
                    accounts,
                } => {
                    let total = check_issue(command, chart)?;
                    Ok(vec![
                        InvoiceIssued {
                            invoice_id: invoice_id.clone(),
                            customer: customer.clone(),
                            currency: currency.clone(),
                            issue_date: *issue_date,
                            lines: lines.clone(),
                            total,
                            recognition: *recognition,
                            accounts: accounts.clone(),
                            entry_id: entry_id(invoice_id, "issue"),
                        }
                        .into(),
                    ])
                }
                _ => Err(Rejection::new(RejectionCode::NotFound, "no such invoice")),
            };
        };
        let id = &inv.issued.invoice_id;
        if inv.status == InvoiceStatus::Void && !matches!(command, InvoiceCommand::Issue { .. }) {
            return Err(conflict(format!("invoice {id} is void")));
        }
        match command {
            InvoiceCommand::Issue { .. } => Err(Rejection::new(
                RejectionCode::AlreadyExists,
                format!("invoice {id} already exists"),
            )),
            InvoiceCommand::Deliver { delivered_on } => {
                if inv.issued.recognition != Recognition::OnDelivery {
                    return Err(conflict(format!(
                        "invoice {id} is recognized ratably: recognize it month by month"
                    )));
                }
                if let Some(on) = inv.delivered_on {
                    return Err(conflict(format!("invoice {id} was delivered on {on}")));
                }
                not_before_issue("delivered_on", *delivered_on, inv)?;
                Ok(vec![
                    RevenueRecognized {
                        entry_id: entry_id(id, "deliver"),
                        amount: inv.issued.total,
                        recognized_on: *delivered_on,
                        month: None,
                        delivered_on: Some(*delivered_on),
                    }
                    .into(),
                ])
            }
            InvoiceCommand::Recognize { through } => {
                require_date("through", *through)?;
                let Recognition::Ratable { start, months } = inv.issued.recognition else {
                    return Err(conflict(format!(
                        "invoice {id} is recognized on delivery: deliver it"
                    )));
                };
                let mut events = Vec::new();
                for month in inv.months_recognized + 1..=months {
                    let Some(on) = recognition_date(&inv.issued, start, month) else {
                        break;
                    };
                    if on > *through {
                        break;
                    }
                    events.push(
                        RevenueRecognized {
                            entry_id: entry_id(id, &format!("month-{month}")),
                            amount: monthly_amount(inv.issued.total, months, month),
                            recognized_on: on,
                            month: Some(month),
                            delivered_on: None,
                        }
                        .into(),
                    );
                }
                Ok(events)
            }
            InvoiceCommand::Pay { amount, paid_on } => {
                if inv.status == InvoiceStatus::Draft {
                    return Err(conflict(format!(
                        "invoice {id} is a draft: nothing is due before its revenue is recognized"
                    )));
                }
                if *amount <= MinorUnits(0) {
                    return Err(Rejection::invalid("amount", "the amount must be positive"));
                }
                if *amount > inv.outstanding {
                    return Err(Rejection::new(
                        RejectionCode::Overpayment,
                        format!(
                            "invoice {id} has {} {} outstanding; {amount} is more",
                            inv.outstanding, inv.issued.currency
                        ),
                    ));
                }
                not_before_issue("paid_on", *paid_on, inv)?;
                Ok(vec![
                    PaymentReceived {
                        entry_id: entry_id(id, &format!("payment-{}", inv.payments + 1)),
                        amount: *amount,
                        paid_on: *paid_on,
                    }
                    .into(),
                ])
            }
            InvoiceCommand::Void { reason, today } => {
                require_text("reason", reason, 2000)?;
                if inv.status != InvoiceStatus::Draft {
                    return Err(conflict(format!(
                        "invoice {id} is {}: only a draft is voided",
                        inv.status.as_str()
                    )));
                }
                Ok(vec![
                    InvoiceVoided {
                        reason: reason.clone(),
                        entry_id: entry_id(id, "void"),
                        voided_on: (*today).max(inv.issued.issue_date),
                    }
                    .into(),
                ])
            }
        }
    }

    fn evolve(state: Option<Invoice>, event: &InvoiceEvent) -> Option<Invoice> {
        match (state, event) {
            (None, InvoiceEvent::InvoiceIssued(e)) => Some(Invoice {
                issued: e.clone(),
                status: InvoiceStatus::Draft,
                recognized: MinorUnits(0),
                deferred: e.total,
                paid: MinorUnits(0),
                outstanding: e.total,
                months_recognized: 0,
                delivered_on: None,
                payments: 0,
                entry_ids: vec![e.entry_id.clone()],
            }),
            (Some(mut inv), InvoiceEvent::RevenueRecognized(e)) => {
                inv.recognized = MinorUnits(inv.recognized.0 + e.amount.0);
                inv.deferred = MinorUnits(inv.deferred.0 - e.amount.0);
                if let Some(month) = e.month {
                    inv.months_recognized = month;
                }
                if e.delivered_on.is_some() {
                    inv.delivered_on = e.delivered_on;
                }
                if inv.status == InvoiceStatus::Draft {
                    inv.status = InvoiceStatus::Open;
                }
                inv.entry_ids.push(e.entry_id.clone());
                Some(inv)
            }
            (Some(mut inv), InvoiceEvent::PaymentReceived(e)) => {
                inv.paid = MinorUnits(inv.paid.0 + e.amount.0);
                inv.outstanding = MinorUnits(inv.outstanding.0 - e.amount.0);
                inv.payments += 1;
                inv.status = if inv.outstanding == MinorUnits(0) {
                    InvoiceStatus::Paid
                } else {
                    InvoiceStatus::PartiallyPaid
                };
                inv.entry_ids.push(e.entry_id.clone());
                Some(inv)
            }
            (Some(mut inv), InvoiceEvent::InvoiceVoided(e)) => {
                inv.status = InvoiceStatus::Void;
                inv.deferred = MinorUnits(0);
                inv.outstanding = MinorUnits(0);
                inv.entry_ids.push(e.entry_id.clone());
                Some(inv)
            }
            // Events out of order cannot come from this decider; the state stays as it is.
            (state, _) => state,
        }
    }
}

/// The default accounts an issue must open: those its invoice names that the chart lacks,
/// in the invoice's currency.
pub fn accounts_to_open(issued: &InvoiceIssued, chart: &Chart) -> Vec<ChartCommand> {
    DEFAULT_ACCOUNTS
        .iter()
        .filter(|(role, ..)| !chart.contains_key(role.code(&issued.accounts)))
        .map(|(role, _, account_type, name)| ChartCommand::Open {
            code: role.code(&issued.accounts).to_owned(),
            name: (*name).to_owned(),
            account_type: *account_type,
            currency: issued.currency.clone(),
        })
        .collect()
}

/// What an invoice's event does to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posting {
    /// Post this entry (on its own, new stream).
    Post(EntryCommand),
    /// Reverse the issue entry `entry_id` with this command, and post its mirror.
    Reverse {
        entry_id: String,
        reverse: EntryCommand,
        mirror_on: NaiveDate,
    },
}

fn two_lines(debit: &str, credit: &str, amount: MinorUnits, currency: &str) -> Vec<JournalLine> {
    vec![
        JournalLine {
            account: debit.to_owned(),
            debit: Some(amount),
            credit: None,
            currency: currency.to_owned(),
        },
        JournalLine {
            account: credit.to_owned(),
            debit: None,
            credit: Some(amount),
            currency: currency.to_owned(),
        },
    ]
}

/// The entry `event` posts, for the invoice as it stands after the event (`invoice`).
pub fn posting(invoice: &Invoice, event: &InvoiceEvent) -> Posting {
    let i = &invoice.issued;
    let a = &i.accounts;
    let post = |entry_id: &str, on: NaiveDate, memo: String, lines| {
        Posting::Post(EntryCommand::Post {
            entry_id: entry_id.to_owned(),
            effective_date: on,
            memo,
            lines,
            source: Some(invoice.source()),
        })
    };
    match event {
        InvoiceEvent::InvoiceIssued(e) => post(
            &e.entry_id,
            e.issue_date,
            format!("Invoice {} to {}", e.invoice_id, e.customer),
            two_lines(&a.receivable, &a.deferred, e.total, &i.currency),
        ),
        InvoiceEvent::RevenueRecognized(e) => post(
            &e.entry_id,
            e.recognized_on,
            match (e.month, i.recognition) {
                (Some(m), Recognition::Ratable { months, .. }) => format!(
                    "Invoice {}: revenue for month {m} of {months}",
                    i.invoice_id
                ),
                _ => format!("Invoice {}: revenue on delivery", i.invoice_id),
            },
            two_lines(&a.deferred, &a.revenue, e.amount, &i.currency),
        ),
        InvoiceEvent::PaymentReceived(e) => post(
            &e.entry_id,
            e.paid_on,
            format!("Invoice {}: payment received", i.invoice_id),
            two_lines(&a.cash, &a.receivable, e.amount, &i.currency),
        ),
        InvoiceEvent::InvoiceVoided(e) => Posting::Reverse {
            entry_id: i.entry_id.clone(),
            reverse: EntryCommand::Reverse {
                reason: e.reason.clone(),
                reversal_entry_id: e.entry_id.clone(),
                on_behalf_of: Some(invoice.source()),
            },
            mirror_on: e.voided_on,
        },
    }
}

#[cfg(test)]
mod tests;
