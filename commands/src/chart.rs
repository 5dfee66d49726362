//! The chart-of-accounts decider: one account per stream (`chart.<code>`), opened once
//! and closed once.

use chronicle_events::domain::ChartEvent;
use chronicle_events::domain::chart::{AccountClosed, AccountOpened, AccountType};

use crate::{Decider, Rejection, RejectionCode, require_text};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartCommand {
    Open {
        code: String,
        name: String,
        account_type: AccountType,
        currency: String,
    },
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    pub code: String,
    pub name: String,
    pub account_type: AccountType,
    pub currency: String,
    pub open: bool,
}

pub struct ChartDecider;

/// Account codes: 1 to 32 of A-Z, a-z, 0-9, '-', '_', '.'-free so they are one subject token.
pub fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 32
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// ISO 4217 style: three upper-case letters.
pub fn valid_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

impl Decider for ChartDecider {
    type Command = ChartCommand;
    type Event = ChartEvent;
    type State = Option<Account>;

    fn initial_state() -> Option<Account> {
        None
    }

    fn decide(
        command: &ChartCommand,
        state: &Option<Account>,
    ) -> Result<Vec<ChartEvent>, Rejection> {
        match (command, state) {
            (
                ChartCommand::Open {
                    code,
                    name,
                    account_type,
                    currency,
                },
                None,
            ) => {
                if !valid_code(code) {
                    return Err(Rejection::invalid(
                        "code",
                        "code must be 1 to 32 characters of A-Z, a-z, 0-9, '-' or '_'",
                    ));
                }
                require_text("name", name, 200)?;
                if !valid_currency(currency) {
                    return Err(Rejection::invalid(
                        "currency",
                        "currency must be three upper-case letters (ISO 4217)",
                    ));
                }
                Ok(vec![
                    AccountOpened {
                        code: code.clone(),
                        name: name.clone(),
                        account_type: *account_type,
                        currency: currency.clone(),
                    }
                    .into(),
                ])
            }
            (ChartCommand::Open { code, .. }, Some(_)) => Err(Rejection::new(
                RejectionCode::AlreadyExists,
                format!("account {code} already exists"),
            )),
            (ChartCommand::Close, None) => {
                Err(Rejection::new(RejectionCode::NotFound, "no such account"))
            }
            (ChartCommand::Close, Some(a)) if !a.open => Err(Rejection::new(
                RejectionCode::AccountClosed,
                format!("account {} is already closed", a.code),
            )),
            (ChartCommand::Close, Some(_)) => Ok(vec![AccountClosed {}.into()]),
        }
    }

    fn evolve(state: Option<Account>, event: &ChartEvent) -> Option<Account> {
        match event {
            ChartEvent::AccountOpened(e) => Some(Account {
                code: e.code.clone(),
                name: e.name.clone(),
                account_type: e.account_type,
                currency: e.currency.clone(),
                open: true,
            }),
            ChartEvent::AccountClosed(_) => state.map(|a| Account { open: false, ..a }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(code: &str, currency: &str) -> ChartCommand {
        ChartCommand::Open {
            code: code.into(),
            name: "Cash".into(),
            account_type: AccountType::Asset,
            currency: currency.into(),
        }
    }

    #[test]
    fn opened_once_closed_once() {
        let events = ChartDecider::decide(&open("1000", "EUR"), &None).unwrap();
        let s = ChartDecider::fold(&events);
        assert!(s.as_ref().unwrap().open);
        assert_eq!(
            ChartDecider::decide(&open("1000", "EUR"), &s)
                .unwrap_err()
                .code,
            RejectionCode::AlreadyExists
        );
        let closed = ChartDecider::evolve(
            s.clone(),
            &ChartDecider::decide(&ChartCommand::Close, &s).unwrap()[0],
        );
        assert_eq!(
            ChartDecider::decide(&ChartCommand::Close, &closed)
                .unwrap_err()
                .code,
            RejectionCode::AccountClosed
        );
        assert_eq!(
            ChartDecider::decide(&ChartCommand::Close, &None)
                .unwrap_err()
                .code,
            RejectionCode::NotFound
        );
    }

    #[test]
    fn codes_and_currencies_are_validated() {
        assert_eq!(
            ChartDecider::decide(&open("10.00", "EUR"), &None)
                .unwrap_err()
                .field,
            Some("code")
        );
        for bad in ["eur", "EURO", "E1R", ""] {
            assert_eq!(
                ChartDecider::decide(&open("1000", bad), &None)
                    .unwrap_err()
                    .field,
                Some("currency")
            );
        }
    }
}
