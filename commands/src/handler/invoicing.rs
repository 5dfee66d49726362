//! Planning an invoice's command: the invoice decides ([`crate::invoice`]), and the same
//! append carries what its events cause — the default accounts an issue needs (decided by
//! the chart's decider), then each event's journal entry (decided by the entry's, on the
//! chart as it will stand), then the invoice's own events, last, so that the position a
//! command answers covers all of it.

use chronicle_events::domain::invoice::InvoiceAccounts;
use chronicle_events::{Domain, Expected, StreamId};

use super::plan::Plan;
use super::{CommandHandler, Ctx, HandlerError};
use crate::chart::{Account, ChartCommand, ChartDecider};
use crate::command::Command;
use crate::entry::{Chart, EntryCommand, EntryDecider};
use crate::invoice::{InvoiceCommand, InvoiceDecider, Posting, accounts_to_open, posting};
use crate::{Decider, Rejection};

fn entry_stream(entry_id: &str) -> Result<StreamId, Rejection> {
    StreamId::new(Domain::Entry, entry_id).map_err(|_| Rejection::bad_id("entry_id"))
}

/// The invoice's command as the invoice decider takes it.
fn invoice_command(command: &Command, ctx: &Ctx) -> InvoiceCommand {
    match command {
        Command::IssueInvoice {
            invoice_id,
            customer,
            currency,
            issue_date,
            lines,
            recognition,
            accounts,
        } => InvoiceCommand::Issue {
            invoice_id: invoice_id.clone(),
            customer: customer.clone(),
            currency: currency.clone(),
            issue_date: *issue_date,
            lines: lines.clone(),
            recognition: *recognition,
            accounts: accounts.clone(),
        },
        Command::DeliverInvoice { delivered_on, .. } => InvoiceCommand::Deliver {
            delivered_on: *delivered_on,
        },
        Command::RecognizeRevenue { through, .. } => {
            InvoiceCommand::Recognize { through: *through }
        }
        Command::RecordPayment {
            amount, paid_on, ..
        } => InvoiceCommand::Pay {
            amount: *amount,
            paid_on: *paid_on,
        },
        Command::VoidInvoice { reason, .. } => InvoiceCommand::Void {
            reason: reason.clone(),
            today: ctx.now.date_naive(),
        },
        other => unreachable!("{:?} is not an invoice's command", other.action()),
    }
}

impl CommandHandler {
    pub(super) async fn plan_invoice(
        &self,
        ctx: &Ctx,
        command: &Command,
        stream: &StreamId,
        latest: bool,
        plan: &mut Plan,
    ) -> Result<(), HandlerError> {
        let decision = invoice_command(command, ctx);
        // The accounts the decision consults: the command's for an issue, else the
        // invoice's own (known once it is loaded).
        let (loaded, events, chart) = match &decision {
            InvoiceCommand::Issue { accounts, .. } => {
                let chart = self.accounts_of(accounts).await?;
                let (loaded, events) = self
                    .decide::<InvoiceDecider>(ctx, stream, latest, decision.clone(), &chart)
                    .await?;
                (loaded, events, chart)
            }
            _ => {
                let loaded = self
                    .load_for_decision::<InvoiceDecider>(ctx, stream, latest)
                    .await?;
                let chart = match &loaded.state {
                    Some(inv) => self.accounts_of(&inv.issued.accounts).await?,
                    None => Chart::new(),
                };
                let events = InvoiceDecider::decide(&decision, &loaded.state, &chart)?;
                (loaded, events, chart)
            }
        };
        if events.is_empty() {
            return Ok(());
        }
        let mut chart = chart;
        let mut invoice = loaded.state.clone();
        for event in &events {
            invoice = InvoiceDecider::evolve(invoice, event);
            let Some(inv) = &invoice else { continue };
            if let chronicle_events::domain::InvoiceEvent::InvoiceIssued(issued) = event {
                for open in accounts_to_open(issued, &chart) {
                    self.open_account(ctx, open, &mut chart, plan).await?;
                }
            }
            match posting(inv, event) {
                Posting::Post(post) => {
                    let EntryCommand::Post { entry_id, .. } = &post else {
                        unreachable!("a posting posts")
                    };
                    let entry = entry_stream(entry_id)?;
                    let (loaded, posted) = self
                        .decide::<EntryDecider>(ctx, &entry, latest, post, &chart)
                        .await?;
                    plan.decided(ctx, entry, &loaded, posted);
                }
                Posting::Reverse {
                    entry_id,
                    reverse,
                    mirror_on,
                } => {
                    let EntryCommand::Reverse {
                        reversal_entry_id, ..
                    } = &reverse
                    else {
                        unreachable!("a reversal reverses")
                    };
                    let reversal = entry_stream(reversal_entry_id)?;
                    let original = entry_stream(&entry_id)?;
                    let loaded = self.load::<EntryDecider>(&original, true).await?;
                    let reversed = EntryDecider::decide(&reverse, &loaded.state, &chart)?;
                    let Some(posted) = loaded.state.clone().map(|e| e.posted) else {
                        return Err(Rejection::new(
                            crate::RejectionCode::NotFound,
                            format!("the invoice's entry {entry_id} is not in the log"),
                        )
                        .into());
                    };
                    plan.decided(ctx, original, &loaded, reversed);
                    let mirror = EntryCommand::Mirror {
                        original: posted,
                        reversal_entry_id: reversal_entry_id.clone(),
                        on: mirror_on,
                    };
                    let (loaded, mirrored) = self
                        .decide::<EntryDecider>(ctx, &reversal, latest, mirror, &chart)
                        .await?;
                    plan.decided(ctx, reversal, &loaded, mirrored);
                }
            }
        }
        plan.decided(ctx, stream.clone(), &loaded, events);
        Ok(())
    }

    /// Opens a default account in the same append, and adds it to `chart` for the
    /// entries that follow.
    async fn open_account(
        &self,
        ctx: &Ctx,
        open: ChartCommand,
        chart: &mut Chart,
        plan: &mut Plan,
    ) -> Result<(), HandlerError> {
        let ChartCommand::Open {
            code,
            name,
            account_type,
            currency,
        } = &open
        else {
            unreachable!("only opens are planned here")
        };
        let account = Account {
            code: code.clone(),
            name: name.clone(),
            account_type: *account_type,
            currency: currency.clone(),
            open: true,
        };
        let stream = StreamId::new(Domain::Chart, code.as_str())
            .map_err(|_| Rejection::bad_id("accounts"))?;
        // The chart was read at the log's head: the account does not exist, and the append
        // expects it still not to.
        let loaded = self.load::<ChartDecider>(&stream, true).await?;
        let opened = ChartDecider::decide(&open, &loaded.state, &())?;
        plan.write(
            stream,
            Expected::Head(loaded.head.clone()),
            opened.into_iter().map(|e| ctx.pending(e)).collect(),
        );
        chart.insert(code.clone(), account);
        Ok(())
    }

    /// The accounts an invoice names, as the log has them now (those that exist).
    async fn accounts_of(&self, accounts: &InvoiceAccounts) -> Result<Chart, HandlerError> {
        self.chart_for(
            [
                &accounts.receivable,
                &accounts.deferred,
                &accounts.revenue,
                &accounts.cash,
            ]
            .into_iter()
            .map(String::as_str),
        )
        .await
    }
}
