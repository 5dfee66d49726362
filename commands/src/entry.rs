//! The journal-entry decider: a balanced entry is posted once and reversed at most once.
//!
//! A posting is checked against the chart of accounts as of its decision (its context: the
//! handler loads the accounts its lines name): two or more lines, each exactly one of debit
//! and credit, a positive amount in integer minor units, on an open account of the line's
//! currency; per currency, debits equal credits. Sums are checked for overflow; nothing
//! is rounded. A reversal is two decisions in one append: `Reverse` on the entry, and
//! `Mirror` on the reversal's own stream (which must not exist yet).
//!
//! An entry posted by another aggregate's command carries its `source` (`invoice.<id>`)
//! and is reversed only on that aggregate's behalf (voiding the invoice), never by hand:
//! the invoice's amounts would no longer match its entries.

use std::collections::{BTreeMap, HashMap};

use chronicle_events::domain::EntryEvent;
use chronicle_events::domain::entry::{JournalEntryPosted, JournalEntryReversed, JournalLine};
use chronicle_events::domain::money::MinorUnits;
use chrono::NaiveDate;

use crate::chart::Account;
use crate::{Decider, Rejection, RejectionCode, require_date, require_id, require_text};

pub const MAX_LINES: usize = 500;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryCommand {
    Post {
        entry_id: String,
        effective_date: NaiveDate,
        memo: String,
        lines: Vec<JournalLine>,
        /// The aggregate whose command posts it; `None` by hand.
        source: Option<String>,
    },
    Reverse {
        reason: String,
        reversal_entry_id: String,
        /// On whose behalf: must be the entry's own `source` (`None` by hand).
        on_behalf_of: Option<String>,
    },
    /// The reversal's own entry: the mirror of `original`, effective `on`.
    Mirror {
        original: JournalEntryPosted,
        reversal_entry_id: String,
        on: NaiveDate,
    },
}

/// The accounts a decision consults, by code.
pub type Chart = HashMap<String, Account>;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub posted: JournalEntryPosted,
    pub reversed_by: Option<String>,
}

pub struct EntryDecider;

/// Checks a posting against the chart as of the decision (`accounts` by code).
pub fn check_posting(
    lines: &[JournalLine],
    accounts: &HashMap<String, Account>,
) -> Result<(), Rejection> {
    if lines.len() < 2 {
        return Err(Rejection::invalid(
            "lines",
            "an entry has two or more lines",
        ));
    }
    if lines.len() > MAX_LINES {
        return Err(Rejection::invalid(
            "lines",
            format!("an entry has at most {MAX_LINES} lines"),
        ));
    }
    // Per currency: (debits, credits).
    let mut sums: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let amount = match (line.debit, line.credit) {
            (Some(d), None) => d,
            (None, Some(c)) => c,
            _ => {
                return Err(Rejection::invalid(
                    "lines",
                    format!("line {}: exactly one of debit and credit", i + 1),
                ));
            }
        };
        if amount <= MinorUnits(0) {
            return Err(Rejection::invalid(
                "lines",
                format!("line {}: the amount must be positive", i + 1),
            ));
        }
        let account = accounts.get(&line.account).ok_or_else(|| {
            Rejection::new(
                RejectionCode::UnknownAccount,
                format!("line {}: no account {}", i + 1, line.account),
            )
        })?;
        if !account.open {
            return Err(Rejection::new(
                RejectionCode::AccountClosed,
                format!("line {}: account {} is closed", i + 1, account.code),
            ));
        }
        if account.currency != line.currency {
            return Err(Rejection::new(
                RejectionCode::CurrencyMismatch,
                format!(
                    "line {}: account {} is in {}, the line in {}",
                    i + 1,
                    account.code,
                    account.currency,
                    line.currency
                ),
            ));
        }
        let overflow = || {
            Rejection::invalid(
                "lines",
                format!("the {} amounts overflow 2^63-1", line.currency),
            )
        };
        let sum = sums.entry(line.currency.as_str()).or_default();
        if line.debit.is_some() {
            sum.0 = sum.0.checked_add(amount.0).ok_or_else(overflow)?;
        } else {
            sum.1 = sum.1.checked_add(amount.0).ok_or_else(overflow)?;
        }
    }
    for (currency, (debits, credits)) in sums {
        if debits != credits {
            return Err(Rejection::new(
                RejectionCode::UnbalancedEntry,
                format!("{currency}: debits {debits} ≠ credits {credits}"),
            ));
        }
    }
    Ok(())
}

/// The mirror of a posted entry: every debit a credit and the reverse.
pub fn mirror(
    original: &JournalEntryPosted,
    reversal_entry_id: &str,
    effective_date: NaiveDate,
) -> JournalEntryPosted {
    JournalEntryPosted {
        entry_id: reversal_entry_id.to_owned(),
        effective_date,
        memo: format!("Reversal of {}", original.entry_id),
        lines: original
            .lines
            .iter()
            .map(|l| JournalLine {
                account: l.account.clone(),
                debit: l.credit,
                credit: l.debit,
                currency: l.currency.clone(),
            })
            .collect(),
        reverses: Some(original.entry_id.clone()),
        source: original.source.clone(),
    }
}

impl Decider for EntryDecider {
    type Command = EntryCommand;
    type Event = EntryEvent;
    type State = Option<Entry>;
    type Context = Chart;

    fn initial_state() -> Option<Entry> {
        None
    }

    fn decide(
        command: &EntryCommand,
        state: &Option<Entry>,
        accounts: &Chart,
    ) -> Result<Vec<EntryEvent>, Rejection> {
        match (command, state) {
            (
                EntryCommand::Post {
                    entry_id,
                    effective_date,
                    memo,
                    lines,
                    source,
                },
                None,
            ) => {
                require_id("entry_id", entry_id)?;
                require_date("effective_date", *effective_date)?;
                if memo.chars().count() > 2000 {
                    return Err(Rejection::invalid(
                        "memo",
                        "memo must be at most 2000 characters",
                    ));
                }
                check_posting(lines, accounts)?;
                Ok(vec![
                    JournalEntryPosted {
                        entry_id: entry_id.clone(),
                        effective_date: *effective_date,
                        memo: memo.clone(),
                        lines: lines.clone(),
                        reverses: None,
                        source: source.clone(),
                    }
                    .into(),
                ])
            }
            (EntryCommand::Post { entry_id, .. }, Some(_)) => Err(already_exists(entry_id)),
            (EntryCommand::Reverse { .. }, None) => {
                Err(Rejection::new(RejectionCode::NotFound, "no such entry"))
            }
            (
                EntryCommand::Reverse {
                    reason,
                    reversal_entry_id,
                    on_behalf_of,
                },
                Some(entry),
            ) => {
                require_text("reason", reason, 2000)?;
                require_id("reversal_entry_id", reversal_entry_id)?;
                if let Some(source) = &entry.posted.source
                    && on_behalf_of.as_ref() != Some(source)
                {
                    return Err(Rejection::new(
                        RejectionCode::InvalidTransition,
                        format!(
                            "entry {} was posted by {source} and is reversed only through it",
                            entry.posted.entry_id
                        ),
                    ));
                }
                if let Some(by) = &entry.reversed_by {
                    return Err(Rejection::new(
                        RejectionCode::InvalidTransition,
                        format!(
                            "entry {} is already reversed by {by}",
                            entry.posted.entry_id
                        ),
                    ));
                }
                // The mirror must itself be a valid posting today.
                let m = mirror(
                    &entry.posted,
                    reversal_entry_id,
                    entry.posted.effective_date,
                );
                check_posting(&m.lines, accounts)?;
                Ok(vec![
                    JournalEntryReversed {
                        reason: reason.clone(),
                        reversal_entry_id: reversal_entry_id.clone(),
                    }
                    .into(),
                ])
            }
            (
                EntryCommand::Mirror {
                    original,
                    reversal_entry_id,
                    on,
                },
                None,
            ) => Ok(vec![mirror(original, reversal_entry_id, *on).into()]),
            (
                EntryCommand::Mirror {
                    reversal_entry_id, ..
                },
                Some(_),
            ) => Err(already_exists(reversal_entry_id)),
        }
    }

    fn evolve(state: Option<Entry>, event: &EntryEvent) -> Option<Entry> {
        match event {
            EntryEvent::JournalEntryPosted(e) => Some(Entry {
                posted: e.clone(),
                reversed_by: None,
            }),
            EntryEvent::JournalEntryReversed(e) => state.map(|entry| Entry {
                reversed_by: Some(e.reversal_entry_id.clone()),
                ..entry
            }),
        }
    }
}

fn already_exists(entry_id: &str) -> Rejection {
    Rejection::new(
        RejectionCode::AlreadyExists,
        format!("entry {entry_id} already exists"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use RejectionCode::*;
    use chronicle_events::domain::chart::AccountType;
    use proptest::prelude::*;

    fn chart() -> Chart {
        let acc = |code: &str, currency: &str, open: bool| {
            (
                code.to_owned(),
                Account {
                    code: code.into(),
                    name: code.into(),
                    account_type: AccountType::Asset,
                    currency: currency.into(),
                    open,
                },
            )
        };
        [
            acc("cash", "EUR", true),
            acc("sales", "EUR", true),
            acc("usd", "USD", true),
            acc("usd2", "USD", true),
            acc("old", "EUR", false),
        ]
        .into_iter()
        .collect()
    }

    fn line(account: &str, debit: Option<i64>, credit: Option<i64>, currency: &str) -> JournalLine {
        JournalLine {
            account: account.into(),
            debit: debit.map(MinorUnits),
            credit: credit.map(MinorUnits),
            currency: currency.into(),
        }
    }

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 31).unwrap()
    }

    fn post(lines: Vec<JournalLine>) -> EntryCommand {
        EntryCommand::Post {
            entry_id: "e1".into(),
            effective_date: date(),
            memo: "sale".into(),
            lines,
            source: None,
        }
    }

    fn sale() -> Vec<JournalLine> {
        vec![
            line("cash", Some(1250), None, "EUR"),
            line("sales", None, Some(1250), "EUR"),
        ]
    }

    fn posted(lines: Vec<JournalLine>) -> JournalEntryPosted {
        JournalEntryPosted {
            entry_id: "e1".into(),
            effective_date: date(),
            memo: "sale".into(),
            lines,
            reverses: None,
            source: None,
        }
    }

    fn code(lines: Vec<JournalLine>) -> RejectionCode {
        EntryDecider::decide(&post(lines), &None, &chart())
            .unwrap_err()
            .code
    }

    #[test]
    fn posting() {
        EntryDecider::given([])
            .with(chart())
            .when(post(sale()))
            .then([posted(sale()).into()]);
        // Balanced per currency, two currencies in one entry, up to 2^63-1.
        let two = vec![
            line("cash", Some(5), None, "EUR"),
            line("sales", None, Some(5), "EUR"),
            line("usd", Some(i64::MAX), None, "USD"),
            line("usd2", None, Some(i64::MAX), "USD"),
        ];
        EntryDecider::given([])
            .with(chart())
            .when(post(two.clone()))
            .then([posted(two).into()]);
        EntryDecider::given([posted(sale()).into()])
            .with(chart())
            .when(post(sale()))
            .then_error(AlreadyExists);
        EntryDecider::given([])
            .with(chart())
            .when(EntryCommand::Post {
                entry_id: "e.1".into(),
                effective_date: date(),
                memo: String::new(),
                lines: sale(),
                source: None,
            })
            .then_invalid("entry_id");
        EntryDecider::given([])
            .with(chart())
            .when(EntryCommand::Post {
                entry_id: "e1".into(),
                effective_date: date(),
                memo: "m".repeat(2001),
                lines: sale(),
                source: None,
            })
            .then_invalid("memo");
        // A date no read store keeps is refused before it reaches the log.
        EntryDecider::given([])
            .with(chart())
            .when(EntryCommand::Post {
                entry_id: "e1".into(),
                effective_date: NaiveDate::from_ymd_opt(-4, 1, 1).unwrap(),
                memo: String::new(),
                lines: sale(),
                source: None,
            })
            .then_invalid("effective_date");
        // Without the chart, every account is unknown.
        EntryDecider::given([])
            .when(post(sale()))
            .then_error(UnknownAccount);
    }

    #[test]
    fn every_posting_rule_has_its_code() {
        assert_eq!(
            code(vec![line("cash", Some(1), None, "EUR")]),
            ValidationFailed
        );
        assert_eq!(
            code(vec![line("cash", Some(1), None, "EUR"); 501]),
            ValidationFailed
        );
        assert_eq!(
            code(vec![
                line("cash", Some(1), Some(1), "EUR"),
                line("sales", None, Some(1), "EUR")
            ]),
            ValidationFailed
        );
        assert_eq!(
            code(vec![
                line("cash", Some(0), None, "EUR"),
                line("sales", None, Some(0), "EUR")
            ]),
            ValidationFailed
        );
        assert_eq!(
            code(vec![
                line("cash", Some(2), None, "EUR"),
                line("sales", None, Some(1), "EUR")
            ]),
            UnbalancedEntry
        );
        assert_eq!(
            code(vec![
                line("cash", Some(1), None, "EUR"),
                line("nope", None, Some(1), "EUR")
            ]),
            UnknownAccount
        );
        assert_eq!(
            code(vec![
                line("cash", Some(1), None, "EUR"),
                line("old", None, Some(1), "EUR")
            ]),
            AccountClosed
        );
        assert_eq!(
            code(vec![
                line("cash", Some(1), None, "USD"),
                line("usd", None, Some(1), "USD")
            ]),
            CurrencyMismatch
        );
        assert_eq!(
            code(vec![
                line("usd", Some(i64::MAX), None, "USD"),
                line("usd", Some(1), None, "USD"),
                line("usd2", None, Some(1), "USD")
            ]),
            ValidationFailed,
            "overflow is refused, never wrapped"
        );
    }

    fn reverse(reason: &str, id: &str) -> EntryCommand {
        EntryCommand::Reverse {
            reason: reason.into(),
            reversal_entry_id: id.into(),
            on_behalf_of: None,
        }
    }

    #[test]
    fn reversing() {
        let given = || EntryDecider::given([posted(sale()).into()]).with(chart());
        given()
            .when(reverse("typo", "e1-rev"))
            .then([JournalEntryReversed {
                reason: "typo".into(),
                reversal_entry_id: "e1-rev".into(),
            }
            .into()]);
        EntryDecider::given([
            posted(sale()).into(),
            JournalEntryReversed {
                reason: "typo".into(),
                reversal_entry_id: "e1-rev".into(),
            }
            .into(),
        ])
        .with(chart())
        .when(reverse("again", "e1-rev2"))
        .then_error(InvalidTransition);
        EntryDecider::given([])
            .with(chart())
            .when(reverse("typo", "e1-rev"))
            .then_error(NotFound);
        given().when(reverse(" ", "e1-rev")).then_invalid("reason");
        given()
            .when(reverse("typo", "e1 rev"))
            .then_invalid("reversal_entry_id");
        // The mirror must post today: an account closed since refuses it.
        let mut closed = chart();
        closed.get_mut("sales").unwrap().open = false;
        EntryDecider::given([posted(sale()).into()])
            .with(closed)
            .when(reverse("typo", "e1-rev"))
            .then_error(AccountClosed);
    }

    #[test]
    fn the_mirror_of_a_reversal() {
        let on = NaiveDate::from_ymd_opt(2026, 2, 3).unwrap();
        let mirror_of = |id: &str| EntryCommand::Mirror {
            original: posted(sale()),
            reversal_entry_id: id.into(),
            on,
        };
        EntryDecider::given([])
            .when(mirror_of("e1-rev"))
            .then([JournalEntryPosted {
                entry_id: "e1-rev".into(),
                effective_date: on,
                memo: "Reversal of e1".into(),
                lines: vec![
                    line("cash", None, Some(1250), "EUR"),
                    line("sales", Some(1250), None, "EUR"),
                ],
                reverses: Some("e1".into()),
                source: None,
            }
            .into()]);
        EntryDecider::given([posted(sale()).into()])
            .when(mirror_of("e1"))
            .then_error(AlreadyExists);
        // A mirror keeps its original's source.
        let sourced = JournalEntryPosted {
            source: Some("invoice.i1".into()),
            ..posted(sale())
        };
        EntryDecider::given([])
            .when(EntryCommand::Mirror {
                original: sourced,
                reversal_entry_id: "e1-rev".into(),
                on,
            })
            .then([JournalEntryPosted {
                entry_id: "e1-rev".into(),
                effective_date: on,
                memo: "Reversal of e1".into(),
                lines: vec![
                    line("cash", None, Some(1250), "EUR"),
                    line("sales", Some(1250), None, "EUR"),
                ],
                reverses: Some("e1".into()),
                source: Some("invoice.i1".into()),
            }
            .into()]);
    }

    #[test]
    fn an_entry_with_a_source_is_posted_and_reversed_only_through_it() {
        let sourced = || JournalEntryPosted {
            source: Some("invoice.i1".into()),
            ..posted(sale())
        };
        EntryDecider::given([])
            .with(chart())
            .when(EntryCommand::Post {
                entry_id: "e1".into(),
                effective_date: date(),
                memo: "sale".into(),
                lines: sale(),
                source: Some("invoice.i1".into()),
            })
            .then([sourced().into()]);
        let on_behalf = |of: Option<&str>| EntryCommand::Reverse {
            reason: "void".into(),
            reversal_entry_id: "e1-rev".into(),
            on_behalf_of: of.map(str::to_owned),
        };
        let given = || EntryDecider::given([sourced().into()]).with(chart());
        given().when(on_behalf(None)).then_error(InvalidTransition);
        given()
            .when(on_behalf(Some("invoice.i2")))
            .then_error(InvalidTransition);
        given()
            .when(on_behalf(Some("invoice.i1")))
            .then([JournalEntryReversed {
                reason: "void".into(),
                reversal_entry_id: "e1-rev".into(),
            }
            .into()]);
    }

    proptest! {
        /// Any accepted entry balances per currency.
        #[test]
        fn any_accepted_entry_balances(
            raw in proptest::collection::vec((0usize..5, any::<bool>(), -5i64..i64::MAX, any::<bool>()), 0..8)
        ) {
            let codes = ["cash", "sales", "usd", "usd2", "old"];
            let lines: Vec<JournalLine> = raw
                .iter()
                .map(|(a, debit, amount, eur)| {
                    let cur = if *eur { "EUR" } else { "USD" };
                    if *debit { line(codes[*a], Some(*amount), None, cur) } else { line(codes[*a], None, Some(*amount), cur) }
                })
                .collect();
            if EntryDecider::decide(&post(lines.clone()), &None, &chart()).is_ok() {
                let mut sums: BTreeMap<String, i128> = BTreeMap::new();
                for l in &lines {
                    let s = sums.entry(l.currency.clone()).or_default();
                    *s += l.debit.map_or(0, |d| d.0 as i128) - l.credit.map_or(0, |c| c.0 as i128);
                }
                prop_assert!(sums.values().all(|s| *s == 0));
            }
        }
    }
}
