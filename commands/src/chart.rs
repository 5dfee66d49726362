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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Account {
    pub code: String,
    pub name: String,
    pub account_type: AccountType,
    pub currency: String,
    pub open: bool,
}

pub struct ChartDecider;

/// [`valid_code`] and [`valid_currency`] as regular expressions, for API documents.
pub const CODE_PATTERN: &str = "^[A-Za-z0-9_-]{1,32}$";
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";

/// Account codes: 1 to 32 of A-Z, a-z, 0-9, '-', '_', '.'-free so they are one subject token.
pub fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 32
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Checks an account code.
pub fn require_code(code: &str) -> Result<(), Rejection> {
    if valid_code(code) {
        Ok(())
    } else {
        Err(Rejection::invalid(
            "code",
            "code must be 1 to 32 characters of A-Z, a-z, 0-9, '-' or '_'",
        ))
    }
}

/// ISO 4217 style: three upper-case letters.
pub fn valid_currency(c: &str) -> bool {
    c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())
}

impl Decider for ChartDecider {
    type Command = ChartCommand;
    type Event = ChartEvent;
    type State = Option<Account>;
    type Context = ();

    fn initial_state() -> Option<Account> {
        None
    }

    fn decide(
        command: &ChartCommand,
        state: &Option<Account>,
        _: &(),
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
                require_code(code)?;
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
    use crate::spec::Spec;

    fn open(code: &str, name: &str, currency: &str) -> ChartCommand {
        ChartCommand::Open {
            code: code.into(),
            name: name.into(),
            account_type: AccountType::Asset,
            currency: currency.into(),
        }
    }

    fn opened() -> ChartEvent {
        AccountOpened {
            code: "1000".into(),
            name: "Cash".into(),
            account_type: AccountType::Asset,
            currency: "EUR".into(),
        }
        .into()
    }

    #[test]
    fn opening() {
        ChartDecider::given([])
            .when(open("1000", "Cash", "EUR"))
            .then([opened()]);
        ChartDecider::given([opened()])
            .when(open("1000", "Cash", "EUR"))
            .then_error(RejectionCode::AlreadyExists);
        ChartDecider::given([])
            .when(open("10.00", "Cash", "EUR"))
            .then_invalid("code");
        ChartDecider::given([])
            .when(open("1000", " ", "EUR"))
            .then_invalid("name");
        for bad in ["eur", "EURO", "E1R", ""] {
            ChartDecider::given([])
                .when(open("1000", "Cash", bad))
                .then_invalid("currency");
        }
    }

    #[test]
    fn closing() {
        ChartDecider::given([opened()])
            .when(ChartCommand::Close)
            .then([AccountClosed {}.into()]);
        ChartDecider::given([opened(), AccountClosed {}.into()])
            .when(ChartCommand::Close)
            .then_error(RejectionCode::AccountClosed);
        ChartDecider::given([])
            .when(ChartCommand::Close)
            .then_error(RejectionCode::NotFound);
    }
}
