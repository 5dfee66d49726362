//! What every answer carries and every caller is held to: security headers, CORS from an
//! allow-list only, and a rate limit per token (or per address without one), answering
//! `429 RATE_LIMITED` with `Retry-After`.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::{ApiError, Code};

/// How the HTTP layer is hardened (from the configuration).
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    pub rate_limit: u32,
    pub cors_origins: Vec<String>,
    pub hsts: bool,
    /// How long `GET /v1/audit/verify` may take before it answers and streams.
    pub verify_answer_within: std::time::Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            rate_limit: 500,
            cors_origins: vec![],
            hsts: false,
            verify_answer_within: std::time::Duration::from_secs(5),
        }
    }
}

/// Whom a request counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Caller {
    Token(uuid::Uuid),
    Address(IpAddr),
}

pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<Caller>,
}

impl Limiter {
    pub fn new(per_second: u32) -> Arc<Limiter> {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
        let limiter = Arc::new(Limiter {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        });
        // Forget callers not seen lately, so the table does not grow without end.
        let weak = Arc::downgrade(&limiter);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                let Some(l) = weak.upgrade() else { return };
                l.limiter.retain_recent();
                l.limiter.shrink_to_fit();
            }
        });
        limiter
    }
}

/// Counts the request against its token when it carries one this deployment signed (by
/// the token's id, as verified by `auth::authenticate`), and against the client's address
/// otherwise: a caller cannot escape the limit by sending a new junk bearer each time.
pub async fn rate_limit(
    State(limiter): State<Arc<Limiter>>,
    mut req: Request,
    next: Next,
) -> Response {
    let key = match req.extensions().get::<crate::auth::Bearer>() {
        Some(crate::auth::Bearer::Verified(claims)) => Some(Caller::Token(claims.jti)),
        _ => req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| Caller::Address(c.0.ip())),
    };
    if let Some(key) = key {
        if let Err(not_until) = limiter.limiter.check_key(&key) {
            return limited(not_until.wait_time_from(DefaultClock::default().now()));
        }
        // A request that carries several commands (`POST /v1/commands/batch`) counts the
        // rest of them against the same budget.
        req.extensions_mut().insert(RateCharge {
            limiter: limiter.clone(),
            key,
        });
    }
    next.run(req).await
}

fn limited(wait: std::time::Duration) -> Response {
    let mut response =
        ApiError::new(Code::RateLimited, "too many requests; slow down").into_response();
    let secs = wait.as_secs().max(1).to_string();
    if let Ok(v) = HeaderValue::from_str(&secs) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// What a request that passed the rate limit counted against, to count more.
#[derive(Clone)]
pub struct RateCharge {
    limiter: Arc<Limiter>,
    key: Caller,
}

impl RateCharge {
    /// Counts `n` more requests now, all or none: `Err` is the `429` to answer.
    pub fn more(&self, n: u32) -> Result<(), Box<Response>> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match self.limiter.limiter.check_key_n(&self.key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Box::new(limited(
                not_until.wait_time_from(DefaultClock::default().now()),
            ))),
            Err(_) => Err(Box::new(ApiError::new(
                Code::RateLimited,
                "this batch holds more commands than the rate limit allows at once (twice CHRONICLE_RATE_LIMIT); send smaller batches",
            )
            .into_response())),
        }
    }
}

/// Security headers on every answer.
pub async fn security_headers(State(hsts): State<bool>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}

/// CORS for the allowed origins only; with none, no CORS headers at all.
pub fn cors(origins: &[String]) -> CorsLayer {
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim()).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(allowed))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-chronicle-min-position"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::ETAG,
            HeaderName::from_static("x-chronicle-position"),
            HeaderName::from_static("x-request-id"),
        ])
}
