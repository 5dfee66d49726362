//! The one error type of the API and its mapping to RFC 9457 problem+json: every code of
//! the contract's error table, with its status, in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

tokio::task_local! {
    /// The id of the request being handled, for problem bodies and logs.
    pub static REQUEST_ID: String;
}

pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// The contract's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    MalformedRequest,
    Unauthenticated,
    TokenRevoked,
    TokenExpired,
    Forbidden,
    GovernanceDenied,
    NotFound,
    MethodNotAllowed,
    VersionConflict,
    InvalidTransition,
    AlreadyExists,
    IdempotencyKeyReused,
    PayloadTooLarge,
    ValidationFailed,
    UnbalancedEntry,
    AccountClosed,
    UnknownAccount,
    CurrencyMismatch,
    UnknownAgent,
    Overpayment,
    RateLimited,
    Internal,
    LogUnavailable,
    ReadStoreUnavailable,
    ProjectionLagging,
}

impl Code {
    pub fn status(self) -> StatusCode {
        use Code::*;
        match self {
            MalformedRequest => StatusCode::BAD_REQUEST,
            Unauthenticated | TokenRevoked | TokenExpired => StatusCode::UNAUTHORIZED,
            Forbidden | GovernanceDenied => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            VersionConflict | InvalidTransition | AlreadyExists | IdempotencyKeyReused => {
                StatusCode::CONFLICT
            }
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ValidationFailed | UnbalancedEntry | AccountClosed | UnknownAccount
            | CurrencyMismatch | UnknownAgent | Overpayment => StatusCode::UNPROCESSABLE_ENTITY,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            LogUnavailable | ReadStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProjectionLagging => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn as_str(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn title(self) -> &'static str {
        use Code::*;
        match self {
            MalformedRequest => "Malformed request",
            Unauthenticated => "Authentication required",
            TokenRevoked => "Token revoked",
            TokenExpired => "Token expired",
            Forbidden => "Forbidden",
            GovernanceDenied => "Denied by governance",
            NotFound => "Not found",
            MethodNotAllowed => "Method not allowed",
            VersionConflict => "Version conflict",
            InvalidTransition => "Invalid transition",
            AlreadyExists => "Already exists",
            IdempotencyKeyReused => "Idempotency key reused",
            PayloadTooLarge => "Payload too large",
            ValidationFailed => "Validation failed",
            UnbalancedEntry => "Unbalanced entry",
            AccountClosed => "Account closed",
            UnknownAccount => "Unknown account",
            CurrencyMismatch => "Currency mismatch",
            UnknownAgent => "Unknown agent",
            Overpayment => "Overpayment",
            RateLimited => "Rate limited",
            Internal => "Internal error",
            LogUnavailable => "Event log unavailable",
            ReadStoreUnavailable => "Read store unavailable",
            ProjectionLagging => "Projection lagging",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An error answer. `detail` is for people and never carries internal detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        ApiError {
            code,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        ApiError::new(Code::NotFound, detail)
    }

    /// A query parameter or header that is not what it must be: `400`, naming it.
    pub fn bad_param(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::new(Code::MalformedRequest, message.clone()).with_field(field, message)
    }

    /// The read store failed: `503 READ_STORE_UNAVAILABLE`, the cause logged, not shown.
    pub fn read_store(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "read store error");
        ApiError::new(
            Code::ReadStoreUnavailable,
            "the read store cannot be reached; retry shortly",
        )
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: String,
    request_id: String,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let code = self.code.as_str();
        let body = Problem {
            kind: format!("urn:chronicle:error:{code}"),
            title: self.code.title(),
            status: status.as_u16(),
            detail: &self.detail,
            code,
            request_id: current_request_id(),
            errors: &self.errors,
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<chronicle_events::LogError> for ApiError {
    fn from(e: chronicle_events::LogError) -> Self {
        use chronicle_events::LogError as L;
        match e {
            L::VersionConflict { stream, actual, .. } => ApiError::new(
                Code::VersionConflict,
                format!("{stream} is at version {actual}"),
            ),
            L::Unavailable(_) | L::Misconfigured(_) => {
                tracing::error!(error = %e, "event log unavailable");
                ApiError::new(
                    Code::LogUnavailable,
                    "the event log cannot be reached; retry shortly",
                )
            }
            L::TooLarge { max, .. } => ApiError::new(
                Code::PayloadTooLarge,
                format!("an event of this command would exceed {max} bytes"),
            ),
            L::Corrupt { .. } | L::Invalid(_) => {
                tracing::error!(error = %e, "event log refused an append");
                ApiError::new(Code::Internal, "the request could not be completed")
            }
        }
    }
}

impl From<chronicle_commands::Rejection> for ApiError {
    fn from(r: chronicle_commands::Rejection) -> Self {
        use chronicle_commands::RejectionCode as R;
        let code = match r.code {
            R::NotFound => Code::NotFound,
            R::AlreadyExists => Code::AlreadyExists,
            R::InvalidTransition => Code::InvalidTransition,
            R::ValidationFailed => Code::ValidationFailed,
            R::UnbalancedEntry => Code::UnbalancedEntry,
            R::AccountClosed => Code::AccountClosed,
            R::UnknownAccount => Code::UnknownAccount,
            R::CurrencyMismatch => Code::CurrencyMismatch,
            R::UnknownAgent => Code::UnknownAgent,
            R::Overpayment => Code::Overpayment,
        };
        let mut e = ApiError::new(code, r.message.clone());
        if let Some(field) = r.field {
            e = e.with_field(field, r.message);
        }
        e
    }
}

impl From<chronicle_commands::HandlerError> for ApiError {
    fn from(e: chronicle_commands::HandlerError) -> Self {
        use chronicle_commands::HandlerError as H;
        match e {
            H::Rejected(r) => r.into(),
            H::Forbidden(why) => ApiError::new(Code::Forbidden, why),
            H::GovernanceDenied(why) => ApiError::new(Code::GovernanceDenied, why),
            H::VersionConflict { stream, actual, .. } => ApiError::new(
                Code::VersionConflict,
                format!("{stream} is at version {actual}"),
            ),
            H::Log(e) => e.into(),
        }
    }
}
