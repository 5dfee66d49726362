//! Invoices through the command handler on the in-memory log (no server): each command's
//! one append (accounts, entries, the invoice's events), and, for any invoice and any
//! sequence of commands, the ledger and the invoice agreeing to the unit — recognized +
//! deferred = total, paid + outstanding = total, each account's balance what the invoice
//! says, and the trial balance netting to zero in every currency.

use std::collections::BTreeMap;
use std::sync::Arc;

use chronicle_commands::invoice::{InvoiceDecider, default_accounts};
use chronicle_commands::{
    Answer, Command, CommandHandler, Ctx, Decider, HandlerError, Principal, RejectionCode,
};
use chronicle_events::domain::invoice::{InvoiceLine, InvoiceStatus, Recognition};
use chronicle_events::domain::money::MinorUnits;
use chronicle_events::domain::user::Role;
use chronicle_events::domain::{EntryEvent, Event, InvoiceEvent};
use chronicle_events::{Actor, EventLog, events_only};
use chronicle_testkit::MemoryLog;
use chrono::{NaiveDate, Utc};
use futures::StreamExt;
use proptest::prelude::*;
use uuid::Uuid;

fn admin() -> Ctx {
    Ctx {
        command_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        causation_id: None,
        actor: Actor::user("root"),
        principal: Principal::new("root", Role::Admin, vec![]),
        if_match: None,
        now: Utc::now(),
    }
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn issue(id: &str, recognition: Recognition, amounts: &[i64]) -> Command {
    Command::IssueInvoice {
        invoice_id: id.into(),
        customer: "ACME".into(),
        currency: "EUR".into(),
        issue_date: d(2026, 1, 1),
        lines: amounts
            .iter()
            .map(|a| InvoiceLine {
                description: "item".into(),
                amount: MinorUnits(*a),
            })
            .collect(),
        recognition,
        accounts: default_accounts(),
    }
}

async fn run(h: &CommandHandler, c: Command) -> Result<Vec<String>, HandlerError> {
    match h.execute(&admin(), &c).await? {
        Answer::Done(ex) => Ok(ex.events.iter().map(|e| e.event_type.clone()).collect()),
        other => panic!("{other:?}"),
    }
}

/// Everything in the log, decoded.
async fn all(log: &MemoryLog) -> Vec<Event> {
    let stream = log.read_from(1, None).await.unwrap();
    events_only(stream, "test")
        .map(|e| e.unwrap().decode().unwrap())
        .collect()
        .await
}

/// Per account, debits minus credits over every entry in the log; and per currency, the
/// same over every line (the trial balance's net).
fn balances(events: &[Event]) -> (BTreeMap<String, i128>, BTreeMap<String, i128>) {
    let mut accounts = BTreeMap::new();
    let mut currencies = BTreeMap::new();
    for e in events {
        if let Event::Entry(EntryEvent::JournalEntryPosted(p)) = e {
            for l in &p.lines {
                let net = i128::from(l.debit.map_or(0, |m| m.0))
                    - i128::from(l.credit.map_or(0, |m| m.0));
                *accounts.entry(l.account.clone()).or_default() += net;
                *currencies.entry(l.currency.clone()).or_default() += net;
            }
        }
    }
    (accounts, currencies)
}

fn invoice_of(events: &[Event]) -> Option<chronicle_commands::invoice::Invoice> {
    let mine: Vec<InvoiceEvent> = events
        .iter()
        .filter_map(|e| match e {
            Event::Invoice(i) => Some(i.clone()),
            _ => None,
        })
        .collect();
    InvoiceDecider::fold(&mine)
}

#[tokio::test]
async fn an_issue_opens_the_default_accounts_in_its_own_append() {
    let log = MemoryLog::new();
    let h = CommandHandler::new(Arc::new(log.clone()));
    let types = run(&h, issue("i1", Recognition::OnDelivery, &[700, 300]))
        .await
        .unwrap();
    assert_eq!(
        types,
        [
            "AccountOpened",
            "AccountOpened",
            "AccountOpened",
            "AccountOpened",
            "JournalEntryPosted",
            "InvoiceIssued"
        ]
    );
    // The next invoice finds them.
    let types = run(&h, issue("i2", Recognition::OnDelivery, &[5]))
        .await
        .unwrap();
    assert_eq!(types, ["JournalEntryPosted", "InvoiceIssued"]);
    let events = all(&log).await;
    let sources: Vec<Option<String>> = events
        .iter()
        .filter_map(|e| match e {
            Event::Entry(EntryEvent::JournalEntryPosted(p)) => Some(p.source.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sources,
        [Some("invoice.i1".to_owned()), Some("invoice.i2".to_owned())]
    );
}

#[tokio::test]
async fn two_processes_issuing_at_once_open_each_account_once() {
    let log = MemoryLog::new();
    let a = CommandHandler::new(Arc::new(log.clone()));
    let b = CommandHandler::new(Arc::new(log.clone()));
    let (x, y) = tokio::join!(
        run(&a, issue("i1", Recognition::OnDelivery, &[1])),
        run(&b, issue("i2", Recognition::OnDelivery, &[2]))
    );
    x.unwrap();
    y.unwrap();
    let opened = all(&log)
        .await
        .iter()
        .filter(|e| e.event_type() == "AccountOpened")
        .count();
    assert_eq!(opened, 4);
}

#[tokio::test]
async fn an_invoice_s_entry_is_not_reversed_by_hand_and_a_void_reverses_it() {
    let log = MemoryLog::new();
    let h = CommandHandler::new(Arc::new(log.clone()));
    run(&h, issue("i1", Recognition::OnDelivery, &[100]))
        .await
        .unwrap();
    let entry = chronicle_commands::invoice::entry_id("i1", "issue");
    let by_hand = h
        .execute(
            &admin(),
            &Command::ReverseEntry {
                entry_id: entry.clone(),
                reversal_entry_id: "r1".into(),
                reason: "typo".into(),
            },
        )
        .await;
    assert!(
        matches!(&by_hand, Err(HandlerError::Rejected(r)) if r.code == RejectionCode::InvalidTransition),
        "{by_hand:?}"
    );
    let types = run(
        &h,
        Command::VoidInvoice {
            invoice_id: "i1".into(),
            reason: "sent twice".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        types,
        [
            "JournalEntryReversed",
            "JournalEntryPosted",
            "InvoiceVoided"
        ]
    );
    let events = all(&log).await;
    let (accounts, currencies) = balances(&events);
    assert!(accounts.values().all(|b| *b == 0), "{accounts:?}");
    assert_eq!(currencies["EUR"], 0);
    let mirror = events.iter().rev().find_map(|e| match e {
        Event::Entry(EntryEvent::JournalEntryPosted(p)) => Some(p.clone()),
        _ => None,
    });
    let mirror = mirror.unwrap();
    assert_eq!(mirror.reverses, Some(entry));
    assert_eq!(mirror.source.as_deref(), Some("invoice.i1"));
}

#[derive(Debug, Clone)]
enum Step {
    Deliver(u64),
    Recognize(u64),
    Pay(i64),
    Void,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..400).prop_map(Step::Deliver),
        (0u64..800).prop_map(Step::Recognize),
        (-5i64..600_000).prop_map(Step::Pay),
        Just(Step::Void),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever is asked, what the ledger holds and what the invoice says agree exactly.
    #[test]
    fn the_ledger_and_the_invoice_agree_to_the_unit(
        ratably in any::<bool>(),
        amounts in proptest::collection::vec(1i64..500_000, 1..4),
        months in 1u32..=13,
        steps in proptest::collection::vec(step(), 0..12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let log = MemoryLog::new();
            let h = CommandHandler::new(Arc::new(log.clone()));
            let start = d(2026, 1, 1);
            let recognition = if ratably {
                Recognition::Ratable { start, months }
            } else {
                Recognition::OnDelivery
            };
            run(&h, issue("i1", recognition, &amounts)).await.unwrap();
            let id = || "i1".to_owned();
            for s in steps {
                let c = match s {
                    Step::Deliver(days) => Command::DeliverInvoice { invoice_id: id(), delivered_on: start + chrono::Days::new(days) },
                    Step::Recognize(days) => Command::RecognizeRevenue { invoice_id: id(), through: start + chrono::Days::new(days) },
                    Step::Pay(a) => Command::RecordPayment { invoice_id: id(), amount: MinorUnits(a), paid_on: start },
                    Step::Void => Command::VoidInvoice { invoice_id: id(), reason: "v".into() },
                };
                match h.execute(&admin(), &c).await {
                    Ok(_) | Err(HandlerError::Rejected(_)) => {}
                    Err(e) => panic!("{c:?}: {e:?}"),
                }
                let events = all(&log).await;
                let inv = invoice_of(&events).unwrap();
                let (accounts, currencies) = balances(&events);
                let total = i128::from(amounts.iter().sum::<i64>());
                assert_eq!(currencies["EUR"], 0, "the trial balance nets to zero");
                let balance = |code: &str| accounts.get(code).copied().unwrap_or(0);
                if inv.status == InvoiceStatus::Void {
                    assert!(accounts.values().all(|b| *b == 0));
                } else {
                    assert_eq!(i128::from(inv.recognized.0 + inv.deferred.0), total);
                    assert_eq!(i128::from(inv.paid.0 + inv.outstanding.0), total);
                    assert_eq!(-balance("2200"), i128::from(inv.deferred.0), "deferred revenue");
                    assert_eq!(balance("1200"), i128::from(inv.outstanding.0), "receivable");
                    assert_eq!(-balance("4000"), i128::from(inv.recognized.0), "revenue");
                    assert_eq!(balance("1000"), i128::from(inv.paid.0), "cash");
                }
            }
        });
    }
}
