//! The user-tokens decider: a user's tokens are issued, revoked one by one, or all at once.
//!
//! Revoking a revoked token is accepted and appends nothing (as RFC 7009 does); revoking
//! all revokes every token still active when it is decided. A token of role `agent` is
//! issued only to a registered agent (the decision consults the agent of the user's id).

use std::collections::BTreeMap;

use chronicle_events::domain::UserEvent;
use chronicle_events::domain::user::{AllTokensRevoked, Role, TokenIssued, TokenRevoked};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::agent::Agent;
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
        user_id: String,
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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct UserTokens {
    pub tokens: BTreeMap<Uuid, Token>,
}

pub struct UserDecider;

impl Decider for UserDecider {
    type Command = UserCommand;
    type Event = UserEvent;
    type State = UserTokens;
    /// The registered agent whose id is the user's, if any (consulted for `agent` tokens).
    type Context = Option<Agent>;

    fn initial_state() -> UserTokens {
        UserTokens::default()
    }

    fn decide(
        command: &UserCommand,
        state: &UserTokens,
        agent: &Option<Agent>,
    ) -> Result<Vec<UserEvent>, Rejection> {
        match command {
            UserCommand::IssueToken {
                user_id,
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
                if *role == Role::Agent && agent.is_none() {
                    return Err(Rejection::new(
                        RejectionCode::UnknownAgent,
                        format!(
                            "no registered agent {}",
                            user_id.chars().take(128).collect::<String>()
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
    use crate::spec::Spec;
    use RejectionCode::*;
    use chronicle_events::domain::agent::Maturity;

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn issue_as(jti: u128, role: Role, scopes: &[&str], ttl: Option<i64>) -> UserCommand {
        UserCommand::IssueToken {
            user_id: "alice".into(),
            jti: Uuid::from_u128(jti),
            role,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ttl_seconds: ttl,
            now: now(),
        }
    }

    fn issue(jti: u128, ttl: Option<i64>) -> UserCommand {
        issue_as(jti, Role::Writer, &["jobs:write"], ttl)
    }

    fn issued(jti: u128, ttl: i64) -> UserEvent {
        TokenIssued {
            jti: Uuid::from_u128(jti),
            role: Role::Writer,
            scopes: vec!["jobs:write".into()],
            issued_at: now(),
            expires_at: now() + Duration::seconds(ttl),
        }
        .into()
    }

    fn revoked(jti: u128, ttl: i64) -> UserEvent {
        TokenRevoked {
            jti: Uuid::from_u128(jti),
            reason: "lost laptop".into(),
            expires_at: Some(now() + Duration::seconds(ttl)),
        }
        .into()
    }

    fn revoke(jti: u128) -> UserCommand {
        UserCommand::RevokeToken {
            jti: Uuid::from_u128(jti),
            reason: "lost laptop".into(),
        }
    }

    fn revoke_all(at: DateTime<Utc>) -> UserCommand {
        UserCommand::RevokeAll {
            reason: "offboarding".into(),
            now: at,
        }
    }

    #[test]
    fn issuing() {
        UserDecider::given([])
            .when(issue(1, None))
            .then([issued(1, DEFAULT_TTL_SECONDS)]);
        UserDecider::given([])
            .when(issue(1, Some(60)))
            .then([issued(1, 60)]);
        // Scopes are kept sorted and once.
        UserDecider::given([])
            .when(issue_as(
                1,
                Role::Writer,
                &["jobs:write", "jobs:read", "jobs:write"],
                Some(60),
            ))
            .then([TokenIssued {
                jti: Uuid::from_u128(1),
                role: Role::Writer,
                scopes: vec!["jobs:read".into(), "jobs:write".into()],
                issued_at: now(),
                expires_at: now() + Duration::seconds(60),
            }
            .into()]);
        UserDecider::given([issued(1, 60)])
            .when(issue(1, None))
            .then_error(AlreadyExists);
        for ttl in [10, MAX_TTL_SECONDS + 1] {
            UserDecider::given([])
                .when(issue(1, Some(ttl)))
                .then_invalid("ttl_seconds");
        }
        UserDecider::given([])
            .when(issue_as(1, Role::Writer, &["jobs:delete"], None))
            .then_invalid("scopes");
        let many: Vec<&str> = std::iter::repeat_n("jobs:read", MAX_SCOPES + 1).collect();
        UserDecider::given([])
            .when(issue_as(1, Role::Writer, &many, None))
            .then_invalid("scopes");
    }

    #[test]
    fn an_agent_token_needs_a_registered_agent() {
        UserDecider::given([])
            .when(issue_as(1, Role::Agent, &[], Some(60)))
            .then_error(UnknownAgent);
        let agent = Agent {
            agent_id: "alice".into(),
            name: "bot".into(),
            maturity: Maturity::Student,
        };
        UserDecider::given([])
            .with(Some(agent))
            .when(issue_as(1, Role::Agent, &[], Some(60)))
            .then([TokenIssued {
                jti: Uuid::from_u128(1),
                role: Role::Agent,
                scopes: vec![],
                issued_at: now(),
                expires_at: now() + Duration::seconds(60),
            }
            .into()]);
    }

    #[test]
    fn a_token_is_revoked_once() {
        UserDecider::given([issued(1, 60)])
            .when(revoke(1))
            .then([revoked(1, 60)]);
        UserDecider::given([issued(1, 60), revoked(1, 60)])
            .when(revoke(1))
            .then([]);
        UserDecider::given([issued(1, 60)])
            .when(revoke(9))
            .then_error(NotFound);
        UserDecider::given([issued(1, 60)])
            .when(UserCommand::RevokeToken {
                jti: Uuid::from_u128(1),
                reason: " ".into(),
            })
            .then_invalid("reason");
    }

    #[test]
    fn revoke_all_lists_only_active_tokens() {
        let later = now() + Duration::seconds(120);
        UserDecider::given([
            issued(1, 3600),
            issued(2, 60),
            issued(3, 7200),
            issued(4, 3600),
            revoked(4, 3600),
        ])
        .when(revoke_all(later))
        .then([AllTokensRevoked {
            jtis: vec![Uuid::from_u128(1), Uuid::from_u128(3)],
            reason: "offboarding".into(),
            until: Some(now() + Duration::seconds(7200)),
        }
        .into()]);
        let all: UserEvent = AllTokensRevoked {
            jtis: vec![Uuid::from_u128(1)],
            reason: "offboarding".into(),
            until: Some(now() + Duration::seconds(3600)),
        }
        .into();
        UserDecider::given([issued(1, 3600), all])
            .when(revoke_all(later))
            .then([]);
        UserDecider::given([]).when(revoke_all(later)).then([]);
        UserDecider::given([])
            .when(UserCommand::RevokeAll {
                reason: "".into(),
                now: later,
            })
            .then_invalid("reason");
    }
}
