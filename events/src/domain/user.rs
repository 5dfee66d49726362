//! Domain `user`: a user's tokens (stream `user.<user_id>`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::domain_events;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Writer,
    Agent,
    Analyst,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Writer => "writer",
            Role::Agent => "agent",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
        }
    }
}

/// Schema 2. Schema 1 carried the scopes as one space-separated `scope` string, as OAuth
/// does on the wire; see `upcast`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenIssued {
    pub jti: Uuid,
    pub role: Role,
    pub scopes: Vec<String>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// `expires_at` is the revoked token's own expiry, after which nobody needs to remember
/// the revocation (absent in events written before it was recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevoked {
    pub jti: Uuid,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Revokes every token of the user still active when it was decided; lists them. `until`
/// is the latest expiry among them (absent in events written before it was recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllTokensRevoked {
    pub jtis: Vec<Uuid>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
}

domain_events!(
    /// Events of a user's token stream.
    UserEvent,
    User,
    [TokenIssued, TokenRevoked, AllTokensRevoked]
);
