//! The invoice decider given/when/then, the entries its events post, and the exact-money
//! properties over any sequence of commands.

use super::*;
use crate::spec::Spec;
use RejectionCode::*;
use chronicle_events::domain::chart::AccountType;
use proptest::prelude::*;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn account(code: &str, account_type: AccountType, currency: &str) -> (String, Account) {
    (
        code.to_owned(),
        Account {
            code: code.into(),
            name: code.into(),
            account_type,
            currency: currency.into(),
            open: true,
        },
    )
}

/// The default accounts, all open in EUR.
fn chart() -> Chart {
    [
        account("1200", AccountType::Asset, "EUR"),
        account("2200", AccountType::Liability, "EUR"),
        account("4000", AccountType::Revenue, "EUR"),
        account("1000", AccountType::Asset, "EUR"),
    ]
    .into_iter()
    .collect()
}

fn line(description: &str, amount: i64) -> InvoiceLine {
    InvoiceLine {
        description: description.into(),
        amount: MinorUnits(amount),
    }
}

fn issue_with(recognition: Recognition, lines: Vec<InvoiceLine>) -> InvoiceCommand {
    InvoiceCommand::Issue {
        invoice_id: "inv-1".into(),
        customer: "ACME".into(),
        currency: "EUR".into(),
        issue_date: d(2026, 1, 1),
        lines,
        recognition,
        accounts: default_accounts(),
    }
}

fn on_delivery() -> InvoiceCommand {
    issue_with(
        Recognition::OnDelivery,
        vec![line("Consulting", 60_000), line("Travel", 40_000)],
    )
}

fn ratable() -> InvoiceCommand {
    issue_with(
        Recognition::Ratable {
            start: d(2026, 1, 1),
            months: 12,
        },
        vec![line("Subscription", 100_000)],
    )
}

fn issued(recognition: Recognition, total: i64) -> InvoiceIssued {
    InvoiceIssued {
        invoice_id: "inv-1".into(),
        customer: "ACME".into(),
        currency: "EUR".into(),
        issue_date: d(2026, 1, 1),
        lines: match recognition {
            Recognition::OnDelivery => vec![line("Consulting", 60_000), line("Travel", 40_000)],
            Recognition::Ratable { .. } => vec![line("Subscription", 100_000)],
        },
        total: MinorUnits(total),
        recognition,
        accounts: default_accounts(),
        entry_id: entry_id("inv-1", "issue"),
    }
}

fn issued_on_delivery() -> InvoiceEvent {
    issued(Recognition::OnDelivery, 100_000).into()
}

fn issued_ratable() -> InvoiceEvent {
    issued(
        Recognition::Ratable {
            start: d(2026, 1, 1),
            months: 12,
        },
        100_000,
    )
    .into()
}

fn delivered() -> InvoiceEvent {
    RevenueRecognized {
        entry_id: entry_id("inv-1", "deliver"),
        amount: MinorUnits(100_000),
        recognized_on: d(2026, 2, 10),
        month: None,
        delivered_on: Some(d(2026, 2, 10)),
    }
    .into()
}

fn month(m: u32) -> InvoiceEvent {
    RevenueRecognized {
        entry_id: entry_id("inv-1", &format!("month-{m}")),
        amount: MinorUnits(if m == 12 { 8_337 } else { 8_333 }),
        recognized_on: month_end(d(2026, 1, 1), m).unwrap(),
        month: Some(m),
        delivered_on: None,
    }
    .into()
}

fn paid(n: u32, amount: i64) -> InvoiceEvent {
    PaymentReceived {
        entry_id: entry_id("inv-1", &format!("payment-{n}")),
        amount: MinorUnits(amount),
        paid_on: d(2026, 3, 1),
    }
    .into()
}

fn pay(amount: i64) -> InvoiceCommand {
    InvoiceCommand::Pay {
        amount: MinorUnits(amount),
        paid_on: d(2026, 3, 1),
    }
}

fn void(reason: &str) -> InvoiceCommand {
    InvoiceCommand::Void {
        reason: reason.into(),
        today: d(2026, 1, 20),
    }
}

#[test]
fn issuing() {
    InvoiceDecider::given([])
        .with(chart())
        .when(on_delivery())
        .then([issued_on_delivery()]);
    InvoiceDecider::given([])
        .with(chart())
        .when(ratable())
        .then([issued_ratable()]);
    // Missing default accounts are fine: the issuing append opens them.
    InvoiceDecider::given([])
        .when(ratable())
        .then([issued_ratable()]);
    InvoiceDecider::given([issued_ratable()])
        .with(chart())
        .when(ratable())
        .then_error(AlreadyExists);
}

#[test]
fn an_issue_is_checked_field_by_field() {
    let with = |f: &dyn Fn(&mut InvoiceCommand)| {
        let mut c = on_delivery();
        f(&mut c);
        InvoiceDecider::given([]).with(chart()).when(c)
    };
    macro_rules! set {
        ($field:ident = $value:expr) => {
            &|c: &mut InvoiceCommand| {
                if let InvoiceCommand::Issue { $field, .. } = c {
                    *$field = $value;
                }
            }
        };
    }
    with(set!(invoice_id = "inv 1".into())).then_invalid("invoice_id");
    with(set!(customer = " ".into())).then_invalid("customer");
    with(set!(customer = "c".repeat(201))).then_invalid("customer");
    with(set!(currency = "eur".into())).then_invalid("currency");
    with(set!(lines = vec![])).then_invalid("lines");
    with(set!(lines = vec![line("x", 1); 501])).then_invalid("lines");
    with(set!(lines = vec![line("x", 0)])).then_invalid("lines");
    with(set!(lines = vec![line("x", -5)])).then_invalid("lines");
    with(set!(lines = vec![line(" ", 5)])).then_invalid("lines");
    with(set!(lines = vec![line("x", i64::MAX), line("y", 1)])).then_invalid("lines");
    with(set!(
        recognition = Recognition::Ratable {
            start: d(2026, 1, 1),
            months: 0
        }
    ))
    .then_invalid("recognition");
    with(set!(
        recognition = Recognition::Ratable {
            start: d(2026, 1, 1),
            months: MAX_MONTHS + 1
        }
    ))
    .then_invalid("recognition");
    // Dates a read store keeps: years 1 to 9999, the whole period included.
    with(set!(issue_date = d(-4, 1, 1))).then_invalid("issue_date");
    with(set!(
        recognition = Recognition::Ratable {
            start: d(9995, 1, 1),
            months: 120
        }
    ))
    .then_invalid("recognition");
    let accts = |f: fn(&mut InvoiceAccounts)| {
        let mut a = default_accounts();
        f(&mut a);
        a
    };
    with(set!(accounts = accts(|a| a.cash = "10.00".into()))).then_invalid("accounts");
    // One account for two purposes.
    with(set!(accounts = accts(|a| a.cash = "1200".into()))).then_invalid("accounts");
    // An account of the wrong type.
    with(set!(
        accounts = accts(|a| {
            a.revenue = "1000".into();
            a.cash = "4000".into();
        })
    ))
    .then_invalid("accounts");
    // A code of another's choosing must exist; only the defaults are opened.
    with(set!(accounts = accts(|a| a.revenue = "4100".into()))).then_error(UnknownAccount);
    let mut closed = chart();
    closed.get_mut("4000").unwrap().open = false;
    InvoiceDecider::given([])
        .with(closed)
        .when(on_delivery())
        .then_error(AccountClosed);
    InvoiceDecider::given([])
        .with(chart())
        .when({
            let mut c = on_delivery();
            if let InvoiceCommand::Issue { currency, .. } = &mut c {
                *currency = "USD".into();
            }
            c
        })
        .then_error(CurrencyMismatch);
}

#[test]
fn nothing_but_an_issue_finds_a_missing_invoice() {
    for c in [
        InvoiceCommand::Deliver {
            delivered_on: d(2026, 2, 1),
        },
        InvoiceCommand::Recognize {
            through: d(2026, 2, 1),
        },
        pay(1),
        void("typo"),
    ] {
        InvoiceDecider::given([]).when(c).then_error(NotFound);
    }
}

#[test]
fn delivering() {
    let deliver = |on| InvoiceCommand::Deliver { delivered_on: on };
    InvoiceDecider::given([issued_on_delivery()])
        .when(deliver(d(2026, 2, 10)))
        .then([delivered()]);
    InvoiceDecider::given([issued_on_delivery(), delivered()])
        .when(deliver(d(2026, 2, 11)))
        .then_error(InvalidTransition);
    InvoiceDecider::given([issued_ratable()])
        .when(deliver(d(2026, 2, 10)))
        .then_error(InvalidTransition);
    InvoiceDecider::given([issued_on_delivery()])
        .when(deliver(d(2025, 12, 31)))
        .then_invalid("delivered_on");
    InvoiceDecider::given([issued_on_delivery()])
        .when(deliver(d(10_000, 1, 1)))
        .then_invalid("delivered_on");
}

#[test]
fn recognizing_month_by_month_sums_to_the_total() {
    let through = |on| InvoiceCommand::Recognize { through: on };
    // Through the end of month 5, then of month 12: 5 months, then 7, the last with the
    // remainder; 5 × 8 333 + 6 × 8 333 + 8 337 = 100 000.
    InvoiceDecider::given([issued_ratable()])
        .when(through(d(2026, 5, 31)))
        .then((1..=5).map(month));
    let after_five: Vec<InvoiceEvent> = std::iter::once(issued_ratable())
        .chain((1..=5).map(month))
        .collect();
    InvoiceDecider::given(after_five.clone())
        .when(through(d(2026, 12, 31)))
        .then((6..=12).map(month));
    // What is recognized already is not again; before a month ends, nothing.
    InvoiceDecider::given(after_five.clone())
        .when(through(d(2026, 5, 31)))
        .then([]);
    InvoiceDecider::given([issued_ratable()])
        .when(through(d(2026, 1, 30)))
        .then([]);
    let all: Vec<InvoiceEvent> = std::iter::once(issued_ratable())
        .chain((1..=12).map(month))
        .collect();
    InvoiceDecider::given(all)
        .when(through(d(2030, 1, 1)))
        .then([]);
    InvoiceDecider::given([issued_on_delivery()])
        .when(through(d(2026, 5, 31)))
        .then_error(InvalidTransition);
}

#[test]
fn months_that_ended_before_the_issue_are_caught_up_on_the_issue_date() {
    let mut late = issued(
        Recognition::Ratable {
            start: d(2025, 11, 1),
            months: 3,
        },
        300,
    );
    late.issue_date = d(2026, 1, 15);
    InvoiceDecider::given([late.into()])
        .when(InvoiceCommand::Recognize {
            through: d(2026, 1, 31),
        })
        .then([1, 2, 3].map(|m| {
            RevenueRecognized {
                entry_id: entry_id("inv-1", &format!("month-{m}")),
                amount: MinorUnits(100),
                recognized_on: if m < 3 {
                    d(2026, 1, 15)
                } else {
                    d(2026, 1, 31)
                },
                month: Some(m),
                delivered_on: None,
            }
            .into()
        }));
}

#[test]
fn paying() {
    let open = || vec![issued_on_delivery(), delivered()];
    InvoiceDecider::given(open())
        .when(pay(30_000))
        .then([paid(1, 30_000)]);
    InvoiceDecider::given([issued_on_delivery(), delivered(), paid(1, 30_000)])
        .when(pay(70_000))
        .then([paid(2, 70_000)]);
    InvoiceDecider::given([issued_on_delivery(), delivered(), paid(1, 30_000)])
        .when(pay(70_001))
        .then_error(Overpayment);
    InvoiceDecider::given([issued_on_delivery(), delivered(), paid(1, 100_000)])
        .when(pay(1))
        .then_error(Overpayment);
    InvoiceDecider::given(open())
        .when(pay(0))
        .then_invalid("amount");
    InvoiceDecider::given(open())
        .when(InvoiceCommand::Pay {
            amount: MinorUnits(1),
            paid_on: d(2025, 12, 1),
        })
        .then_invalid("paid_on");
    // Nothing is due on a draft.
    InvoiceDecider::given([issued_on_delivery()])
        .when(pay(1))
        .then_error(InvalidTransition);
}

#[test]
fn voiding() {
    InvoiceDecider::given([issued_on_delivery()])
        .when(void("issued twice"))
        .then([InvoiceVoided {
            reason: "issued twice".into(),
            entry_id: entry_id("inv-1", "void"),
            voided_on: d(2026, 1, 20),
        }
        .into()]);
    // Never dated before the issue.
    InvoiceDecider::given([issued_on_delivery()])
        .when(InvoiceCommand::Void {
            reason: "early".into(),
            today: d(2025, 12, 1),
        })
        .then([InvoiceVoided {
            reason: "early".into(),
            entry_id: entry_id("inv-1", "void"),
            voided_on: d(2026, 1, 1),
        }
        .into()]);
    InvoiceDecider::given([issued_on_delivery()])
        .when(void(" "))
        .then_invalid("reason");
    InvoiceDecider::given([issued_on_delivery(), delivered()])
        .when(void("too late"))
        .then_error(InvalidTransition);
    InvoiceDecider::given([issued_ratable(), month(1)])
        .when(void("too late"))
        .then_error(InvalidTransition);
    let voided: InvoiceEvent = InvoiceVoided {
        reason: "x".into(),
        entry_id: entry_id("inv-1", "void"),
        voided_on: d(2026, 1, 20),
    }
    .into();
    for c in [
        InvoiceCommand::Deliver {
            delivered_on: d(2026, 2, 1),
        },
        pay(1),
        void("again"),
    ] {
        InvoiceDecider::given([issued_on_delivery(), voided.clone()])
            .when(c)
            .then_error(InvalidTransition);
    }
}

#[test]
fn statuses_and_amounts_follow_the_events() {
    let fold = |events: Vec<InvoiceEvent>| InvoiceDecider::fold(&events).unwrap();
    let draft = fold(vec![issued_on_delivery()]);
    assert_eq!(
        (draft.status, draft.deferred, draft.outstanding),
        (
            InvoiceStatus::Draft,
            MinorUnits(100_000),
            MinorUnits(100_000)
        )
    );
    let open = fold(vec![issued_on_delivery(), delivered()]);
    assert_eq!(
        (open.status, open.recognized, open.deferred),
        (InvoiceStatus::Open, MinorUnits(100_000), MinorUnits(0))
    );
    assert_eq!(open.delivered_on, Some(d(2026, 2, 10)));
    let part = fold(vec![issued_on_delivery(), delivered(), paid(1, 30_000)]);
    assert_eq!(
        (part.status, part.paid, part.outstanding),
        (
            InvoiceStatus::PartiallyPaid,
            MinorUnits(30_000),
            MinorUnits(70_000)
        )
    );
    let full = fold(vec![
        issued_on_delivery(),
        delivered(),
        paid(1, 30_000),
        paid(2, 70_000),
    ]);
    assert_eq!(full.status, InvoiceStatus::Paid);
    assert_eq!(
        full.entry_ids,
        vec![
            entry_id("inv-1", "issue"),
            entry_id("inv-1", "deliver"),
            entry_id("inv-1", "payment-1"),
            entry_id("inv-1", "payment-2"),
        ]
    );
}

#[test]
fn each_event_posts_its_entry() {
    let inv = InvoiceDecider::fold(&[issued_ratable()]).unwrap();
    let lines = |debit: &str, credit: &str, amount: i64| {
        two_lines(debit, credit, MinorUnits(amount), "EUR")
    };
    let source = Some("invoice.inv-1".to_owned());
    assert_eq!(
        posting(&inv, &issued_ratable()),
        Posting::Post(EntryCommand::Post {
            entry_id: entry_id("inv-1", "issue"),
            effective_date: d(2026, 1, 1),
            memo: "Invoice inv-1 to ACME".into(),
            lines: lines("1200", "2200", 100_000),
            source: source.clone(),
        })
    );
    // Recognition: Dr deferred revenue, Cr revenue (not the other way round).
    assert_eq!(
        posting(&inv, &month(12)),
        Posting::Post(EntryCommand::Post {
            entry_id: entry_id("inv-1", "month-12"),
            effective_date: d(2026, 12, 31),
            memo: "Invoice inv-1: revenue for month 12 of 12".into(),
            lines: lines("2200", "4000", 8_337),
            source: source.clone(),
        })
    );
    assert_eq!(
        posting(&inv, &paid(1, 500)),
        Posting::Post(EntryCommand::Post {
            entry_id: entry_id("inv-1", "payment-1"),
            effective_date: d(2026, 3, 1),
            memo: "Invoice inv-1: payment received".into(),
            lines: lines("1000", "1200", 500),
            source: source.clone(),
        })
    );
    let voided = InvoiceVoided {
        reason: "dup".into(),
        entry_id: entry_id("inv-1", "void"),
        voided_on: d(2026, 1, 20),
    };
    assert_eq!(
        posting(&inv, &voided.into()),
        Posting::Reverse {
            entry_id: entry_id("inv-1", "issue"),
            reverse: EntryCommand::Reverse {
                reason: "dup".into(),
                reversal_entry_id: entry_id("inv-1", "void"),
                on_behalf_of: source,
            },
            mirror_on: d(2026, 1, 20),
        }
    );
    let delivered_inv = InvoiceDecider::fold(&[issued_on_delivery()]).unwrap();
    let Posting::Post(EntryCommand::Post { memo, .. }) = posting(&delivered_inv, &delivered())
    else {
        panic!("a delivery posts an entry")
    };
    assert_eq!(memo, "Invoice inv-1: revenue on delivery");
}

#[test]
fn an_issue_opens_only_the_missing_defaults_in_its_currency() {
    let InvoiceEvent::InvoiceIssued(i) = issued_ratable() else {
        unreachable!()
    };
    assert!(accounts_to_open(&i, &chart()).is_empty());
    let mut partial = chart();
    partial.remove("2200");
    partial.remove("1000");
    assert_eq!(
        accounts_to_open(&i, &partial),
        vec![
            ChartCommand::Open {
                code: "2200".into(),
                name: "Deferred revenue".into(),
                account_type: AccountType::Liability,
                currency: "EUR".into(),
            },
            ChartCommand::Open {
                code: "1000".into(),
                name: "Cash".into(),
                account_type: AccountType::Asset,
                currency: "EUR".into(),
            },
        ]
    );
}

#[test]
fn month_ends_and_entry_ids() {
    assert_eq!(month_end(d(2026, 1, 1), 1), Some(d(2026, 1, 31)));
    assert_eq!(month_end(d(2026, 1, 15), 1), Some(d(2026, 2, 14)));
    assert_eq!(month_end(d(2026, 1, 31), 1), Some(d(2026, 2, 27)));
    assert_eq!(month_end(d(2026, 1, 1), 12), Some(d(2026, 12, 31)));
    assert_eq!(entry_id("a", "issue"), entry_id("a", "issue"));
    assert_ne!(entry_id("a", "issue"), entry_id("b", "issue"));
    assert_ne!(entry_id("a", "month-1"), entry_id("a", "month-2"));
    assert!(chronicle_events::stream_id::valid_id(&entry_id(
        "a", "issue"
    )));
}

#[derive(Debug, Clone)]
enum Step {
    Deliver(u32),
    Recognize(u32),
    Pay(i64),
    Void,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u32..400).prop_map(Step::Deliver),
        (0u32..4000).prop_map(Step::Recognize),
        (-5i64..2_000_000).prop_map(Step::Pay),
        Just(Step::Void),
    ]
}

proptest! {
    #[test]
    fn the_months_sum_to_the_total(total in 0i64..=i64::MAX, months in 1u32..=MAX_MONTHS) {
        let amounts: Vec<i64> = (1..=months).map(|m| monthly_amount(MinorUnits(total), months, m).0).collect();
        prop_assert!(amounts.iter().all(|a| *a >= 0));
        prop_assert_eq!(amounts.iter().map(|a| i128::from(*a)).sum::<i128>(), i128::from(total));
    }

    /// Whatever is asked of an invoice, what is accepted keeps its amounts exact.
    #[test]
    fn accepted_commands_keep_the_amounts_exact(
        ratably in any::<bool>(),
        amounts in proptest::collection::vec(1i64..1_000_000, 1..5),
        months in 1u32..=24,
        steps in proptest::collection::vec(step(), 0..30),
    ) {
        let start = d(2026, 1, 1);
        let recognition = if ratably { Recognition::Ratable { start, months } } else { Recognition::OnDelivery };
        let lines = amounts.iter().map(|a| line("item", *a)).collect();
        let mut state = InvoiceDecider::initial_state();
        for e in InvoiceDecider::decide(&issue_with(recognition, lines), &state, &chart()).unwrap() {
            state = InvoiceDecider::evolve(state, &e);
        }
        let total = MinorUnits(amounts.iter().sum());
        for s in steps {
            let command = match s {
                Step::Deliver(days) => InvoiceCommand::Deliver { delivered_on: start + chrono::Days::new(days.into()) },
                Step::Recognize(days) => InvoiceCommand::Recognize { through: start + chrono::Days::new(days.into()) },
                Step::Pay(a) => InvoiceCommand::Pay { amount: MinorUnits(a), paid_on: start },
                Step::Void => InvoiceCommand::Void { reason: "v".into(), today: start },
            };
            // A snapshot never changes an answer: read back, the state is the same and
            // decides this command exactly as the replayed one.
            let snapshot = crate::spec::through_snapshot::<InvoiceDecider>(&state);
            prop_assert_eq!(&snapshot, &state);
            prop_assert_eq!(
                InvoiceDecider::decide(&command, &snapshot, &chart()),
                InvoiceDecider::decide(&command, &state, &chart())
            );
            if let Ok(events) = InvoiceDecider::decide(&command, &state, &chart()) {
                for e in &events {
                    state = InvoiceDecider::evolve(state, e);
                }
            }
            let inv = state.as_ref().unwrap();
            prop_assert_eq!(inv.issued.total, total);
            if inv.status == InvoiceStatus::Void {
                prop_assert_eq!((inv.recognized, inv.paid, inv.deferred, inv.outstanding), (MinorUnits(0), MinorUnits(0), MinorUnits(0), MinorUnits(0)));
            } else {
                prop_assert_eq!(inv.recognized.0 + inv.deferred.0, total.0);
                prop_assert_eq!(inv.paid.0 + inv.outstanding.0, total.0);
                prop_assert!(inv.deferred.0 >= 0 && inv.outstanding.0 >= 0);
                prop_assert_eq!(inv.status == InvoiceStatus::Paid, inv.outstanding == MinorUnits(0));
            }
        }
    }
}
