//! Tokens and who is calling: JWTs signed with `CHRONICLE_SIGNING_KEY` (HS256 only —
//! `alg: none` and every other algorithm are refused), the set of revoked token ids kept
//! by each process, and the `Caller` extractor every `/v1` route takes.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chronicle_events::domain::user::{Role, TokenIssued};
use chronicle_events::domain::{Event, UserEvent};
use chronicle_events::{EventLog, JetStreamLog, RecordedEvent};
use futures::StreamExt;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, Code};
use crate::state::AppState;

/// The claims of a Chronicle token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    /// Space-separated scopes, as OAuth writes them.
    pub scope: String,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and checks tokens with one symmetric key.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl TokenSigner {
    pub fn new(key: &[u8; 32]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        TokenSigner {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
        }
    }

    /// The token of an issued-token event: the same event always gives the same token.
    pub fn mint(&self, user_id: &str, issued: &TokenIssued) -> Result<String, ApiError> {
        let claims = Claims {
            sub: user_id.to_owned(),
            role: issued.role,
            scope: issued.scopes.join(" "),
            jti: issued.jti,
            iat: issued.issued_at.timestamp(),
            exp: issued.expires_at.timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            ApiError::new(Code::Internal, "the token could not be signed")
        })
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                Err(ApiError::new(Code::TokenExpired, "the token has expired"))
            }
            Err(_) => Err(ApiError::new(
                Code::Unauthenticated,
                "the bearer token is not valid",
            )),
        }
    }
}

/// Revoked token ids, fed from the log. The process that takes a revoke adds it at once;
/// every other follows the log and sees it within moments.
#[derive(Default)]
pub struct Revocations {
    revoked: RwLock<HashSet<Uuid>>,
}

impl Revocations {
    pub fn is_revoked(&self, jti: &Uuid) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(jti)
    }

    pub fn revoke(&self, jtis: impl IntoIterator<Item = Uuid>) {
        let mut set = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        set.extend(jtis);
    }

    pub fn len(&self) -> usize {
        self.revoked.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn apply(&self, e: &RecordedEvent) {
        match e.decode() {
            Ok(Event::User(UserEvent::TokenRevoked(r))) => self.revoke([r.jti]),
            Ok(Event::User(UserEvent::AllTokensRevoked(r))) => self.revoke(r.jtis),
            _ => {}
        }
    }

    /// Reads every revocation in the log, then follows it in the background. Returns once
    /// caught up, so a process never serves before it knows what is revoked.
    pub async fn start(log: JetStreamLog) -> Result<Arc<Revocations>, chronicle_events::LogError> {
        let this = Arc::new(Revocations::default());
        let mut next = 1;
        let mut history = log.read_from(1, Some("user.*")).await?;
        while let Some(e) = history.next().await {
            let e = e?;
            this.apply(&e);
            next = e.position + 1;
        }
        let follower = this.clone();
        tokio::spawn(async move {
            loop {
                match log.follow(next, &["user.*"]).await {
                    Ok(mut live) => {
                        while let Some(item) = live.next().await {
                            match item {
                                Ok(e) => {
                                    follower.apply(&e);
                                    next = e.position + 1;
                                }
                                Err(err) => {
                                    tracing::warn!(error = %err, "revocation feed interrupted");
                                    break;
                                }
                            }
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "revocation feed cannot start"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        Ok(this)
    }
}

/// The authenticated caller of a `/v1` route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
    pub jti: Uuid,
    pub scopes: Vec<String>,
}

impl Caller {
    pub fn is(&self, roles: &[Role]) -> bool {
        roles.contains(&self.role)
    }

    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.is(roles) {
            Ok(())
        } else {
            Err(ApiError::new(
                Code::Forbidden,
                format!("the {} role may not do this", self.role.as_str()),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::new(Code::Unauthenticated, "a bearer token is required"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(Code::Unauthenticated, "use `Authorization: Bearer <token>`")
            })?;
        let claims = state.signer.verify(token)?;
        if state.revocations.is_revoked(&claims.jti) {
            return Err(ApiError::new(
                Code::TokenRevoked,
                "the token has been revoked",
            ));
        }
        Ok(Caller {
            user_id: claims.sub,
            role: claims.role,
            jti: claims.jti,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration as ChronoDuration, Utc};

    fn issued(ttl: i64) -> TokenIssued {
        let now = Utc::now();
        TokenIssued {
            jti: Uuid::now_v7(),
            role: Role::Writer,
            scopes: vec!["a".into(), "b".into()],
            issued_at: now,
            expires_at: now + ChronoDuration::seconds(ttl),
        }
    }

    #[test]
    fn a_minted_token_verifies_with_its_claims() {
        let signer = TokenSigner::new(&[7; 32]);
        let t = issued(60);
        let claims = signer.verify(&signer.mint("alice", &t).unwrap()).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.jti, t.jti);
        assert_eq!(claims.scope, "a b");
    }

    #[test]
    fn foreign_keys_none_and_expired_tokens_are_refused() {
        let signer = TokenSigner::new(&[7; 32]);
        let other = TokenSigner::new(&[8; 32]);
        let token = other.mint("alice", &issued(60)).unwrap();
        assert_eq!(
            signer.verify(&token).unwrap_err().code,
            Code::Unauthenticated
        );

        // alg: none, with the same claims.
        let claims = signer
            .verify(&signer.mint("alice", &issued(60)).unwrap())
            .unwrap();
        let b64 = |v: &serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&serde_json::to_value(&claims).unwrap())
        );
        assert_eq!(
            signer.verify(&none).unwrap_err().code,
            Code::Unauthenticated
        );

        let expired = signer.mint("alice", &issued(-5)).unwrap();
        assert_eq!(
            signer.verify(&expired).unwrap_err().code,
            Code::TokenExpired
        );
        assert_eq!(
            signer.verify("garbage").unwrap_err().code,
            Code::Unauthenticated
        );
    }
}
