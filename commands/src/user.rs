//! The user-tokens decider: a user's tokens are issued, revoked one by one, or all at once.
//!
//! Revoking a revoked token is accepted and appends nothing (as RFC 7009 does); revoking
//! all revokes every token still active when it is decided.

use std::collections::BTreeMap;

use chronicle_events::domain::UserEvent;
use chronicle_events::domain::user::{AllTokensRevoked, Role, TokenIssued, TokenRevoked};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::permissions::valid_scope;
use crate::{Decider, Rejection, RejectionCode, require_text};

/// Shortest and longest token lifetimes, and the default.
pub const MIN_TTL_SECONDS: i64 = 60;
pub const MAX_TTL_SECONDS: i64 = 366 * 24 * 3600;
pub const DEFAULT_TTL_SECONDS: i64 = 3600;
pub const MAX_SCOPES: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    /// `jti` and `now` come from the handler, so that deciding stays pure.
    IssueToken {
        jti: Uuid,
        role: Role,
        scopes: Vec<String>,
        ttl_seconds: Option<i64>,
        now: DateTime<Utc>,
    },
    RevokeToken {
        jti: Uuid,
        reason: String,
    },
    RevokeAll {
        reason: String,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Token {
    pub role: Role,
    pub scopes: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked: bool,
}

impl Token {
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        !self.revoked && now < self.expires_at
    }
}

/// A user's tokens by id.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UserTokens {
    pub tokens: BTreeMap<Uuid, Token>,
}

pub struct UserDecider;

impl Decider for UserDecider {
    type Command = UserCommand;
    type Event = UserEvent;
    type State = UserTokens;

    fn initial_state() -> UserTokens {
        UserTokens::default()
    }

    fn decide(command: &UserCommand, state: &UserTokens) -> Result<Vec<UserEvent>, Rejection> {
        match command {
            UserCommand::IssueToken {
                jti,
                role,
                scopes,
                ttl_seconds,
                now,
            } => {
                let ttl = ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
                if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl) {
                    return Err(Rejection::invalid(
                        "ttl_seconds",
                        format!(
                            "ttl_seconds must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS}"
                        ),
                    ));
                }
                if scopes.len() > MAX_SCOPES {
                    return Err(Rejection::invalid(
                        "scopes",
                        format!("at most {MAX_SCOPES} scopes"),
                    ));
                }
                if let Some(bad) = scopes.iter().find(|s| !valid_scope(s)) {
                    return Err(Rejection::invalid(
                        "scopes",
                        format!(
                            "scope `{}` is not one of: {}",
                            bad.chars().take(64).collect::<String>(),
                            crate::permissions::all_scopes().join(", ")
                        ),
                    ));
                }
                if state.tokens.contains_key(jti) {
                    return Err(Rejection::new(
                        RejectionCode::AlreadyExists,
                        format!("token {jti} already exists"),
                    ));
                }
                let mut scopes = scopes.clone();
                scopes.sort();
                scopes.dedup();
                Ok(vec![
                    TokenIssued {
                        jti: *jti,
                        role: *role,
                        scopes,
                        issued_at: *now,
                        expires_at: *now + Duration::seconds(ttl),
                    }
                    .into(),
                ])
            }
            UserCommand::RevokeToken { jti, reason } => {
                require_text("reason", reason, 2000)?;
                match state.tokens.get(jti) {
                    None => Err(Rejection::new(
                        RejectionCode::NotFound,
                        "no such token for this user",
                    )),
                    Some(t) if t.revoked => Ok(vec![]),
                    Some(t) => Ok(vec![
                        TokenRevoked {
                            jti: *jti,
                            reason: reason.clone(),
                            expires_at: Some(t.expires_at),
                        }
                        .into(),
                    ]),
                }
            }
            UserCommand::RevokeAll { reason, now } => {
                require_text("reason", reason, 2000)?;
                let active: Vec<(&Uuid, &Token)> = state
                    .tokens
                    .iter()
                    .filter(|(_, t)| t.active_at(*now))
                    .collect();
                if active.is_empty() {
                    return Ok(vec![]);
                }
                Ok(vec![
                    AllTokensRevoked {
                        jtis: active.iter().map(|(j, _)| **j).collect(),
                        reason: reason.clone(),
                        until: active.iter().map(|(_, t)| t.expires_at).max(),
                    }
                    .into(),
                ])
            }
        }
    }

    fn evolve(mut state: UserTokens, event: &UserEvent) -> UserTokens {
        match event {
            UserEvent::TokenIssued(e) => {
                state.tokens.insert(
                    e.jti,
                    Token {
                        role: e.role,
                        scopes: e.scopes.clone(),
                        issued_at: e.issued_at,
                        expires_at: e.expires_at,
                        revoked: false,
                    },
                );
            }
            UserEvent::TokenRevoked(e) => {
                if let Some(t) = state.tokens.get_mut(&e.jti) {
                    t.revoked = true;
                }
            }
            UserEvent::AllTokensRevoked(e) => {
                for jti in &e.jtis {
                    if let Some(t) = state.tokens.get_mut(jti) {
                        t.revoked = true;
                    }
                }
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn issue(jti: u128, ttl: Option<i64>) -> UserCommand {
        UserCommand::IssueToken {
            jti: Uuid::from_u128(jti),
            role: Role::Writer,
            scopes: vec!["jobs:write".into()],
            ttl_seconds: ttl,
            now: now(),
        }
    }

    fn run(given: &[UserCommand]) -> UserTokens {
        let mut s = UserDecider::initial_state();
        for c in given {
            for e in UserDecider::decide(c, &s).unwrap() {
                s = UserDecider::evolve(s, &e);
            }
        }
        s
    }

    #[test]
    fn issues_with_the_default_ttl() {
        let s = run(&[issue(1, None)]);
        let t = &s.tokens[&Uuid::from_u128(1)];
        assert_eq!(
            t.expires_at - t.issued_at,
            Duration::seconds(DEFAULT_TTL_SECONDS)
        );
    }

    #[test]
    fn ttl_and_scopes_are_validated() {
        let s = UserTokens::default();
        for bad in [issue(1, Some(10)), issue(1, Some(MAX_TTL_SECONDS + 1))] {
            assert_eq!(
                UserDecider::decide(&bad, &s).unwrap_err().field,
                Some("ttl_seconds")
            );
        }
        let bad = UserCommand::IssueToken {
            jti: Uuid::from_u128(1),
            role: Role::Writer,
            scopes: vec!["has space".into()],
            ttl_seconds: None,
            now: now(),
        };
        assert_eq!(
            UserDecider::decide(&bad, &s).unwrap_err().field,
            Some("scopes")
        );
    }

    #[test]
    fn a_token_is_revoked_once() {
        let revoke = UserCommand::RevokeToken {
            jti: Uuid::from_u128(1),
            reason: "lost laptop".into(),
        };
        let s = run(&[issue(1, None)]);
        assert_eq!(UserDecider::decide(&revoke, &s).unwrap().len(), 1);
        let s = run(&[issue(1, None), revoke.clone()]);
        assert!(UserDecider::decide(&revoke, &s).unwrap().is_empty());
        let unknown = UserCommand::RevokeToken {
            jti: Uuid::from_u128(9),
            reason: "x".into(),
        };
        assert_eq!(
            UserDecider::decide(&unknown, &s).unwrap_err().code,
            RejectionCode::NotFound
        );
    }

    #[test]
    fn revoke_all_lists_only_active_tokens() {
        let s = run(&[
            issue(1, None),
            issue(2, Some(60)),
            issue(3, None),
            UserCommand::RevokeToken {
                jti: Uuid::from_u128(3),
                reason: "x".into(),
            },
        ]);
        let later = now() + Duration::seconds(120);
        let events = UserDecider::decide(
            &UserCommand::RevokeAll {
                reason: "offboarding".into(),
                now: later,
            },
            &s,
        )
        .unwrap();
        match &events[..] {
            [UserEvent::AllTokensRevoked(e)] => assert_eq!(e.jtis, vec![Uuid::from_u128(1)]),
            other => panic!("{other:?}"),
        }
        let s = run(&[issue(1, None)]);
        let s = UserDecider::evolve(s, &events[0]);
        assert!(
            UserDecider::decide(
                &UserCommand::RevokeAll {
                    reason: "again".into(),
                    now: later
                },
                &s
            )
            .unwrap()
            .is_empty()
        );
    }
}
