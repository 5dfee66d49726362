//! How a route is declared: once. `command!` and `query!` write a handler together with its
//! OpenAPI operation — path, tag, summary, body, parameters and the answers every command
//! (or query) gives — so the path literal, the query parameters a route takes (which its
//! `Filters` then accept, and nothing else) and the documentation cannot drift apart. Each
//! resource module lists its handlers once, in `routes()`, with utoipa-axum's `routes!`,
//! which puts them in the router and in `/openapi.json` alike.

/// Declares a command route:
///
/// ```ignore
/// command! {
///     revoke_token: POST "/v1/commands/users/{user_id}/tokens/{jti}/revoke",
///     "commands: tokens", "Revoke one token" => 200,
///     body: ReasonBody, path: ["user_id" => user_id: String, "jti" => jti: String],
///     |req| req.run(|b, _| Command::RevokeToken { ... }).await
/// }
/// ```
macro_rules! command {
    (
        $name:ident: POST $path:literal, $tag:literal, $summary:literal => $status:literal,
        body: $body:ty $(, path: [$($param:literal => $var:ident: $pty:ty),+])?,
        |$req:ident| $run:expr $(,)?
    ) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = $tag,
            summary = $summary,
            request_body(content = $body, content_type = "application/json"),
            params(
                $($(($param = inline($pty), Path),)+)?
                ("Idempotency-Key" = inline(Option<crate::http::schema::IdempotencyKey>), Header, nullable = false, description = "Makes a retry safe for 24 h"),
                ("If-Match" = inline(Option<crate::http::schema::VersionTag>), Header, nullable = false, description = "The aggregate's expected version, in quotes"),
            ),
            responses(
                (status = $status, description = "Done", body = crate::http::openapi::CommandAnswer),
                (status = 202, description = "Escalated by governance: a human must approve", body = crate::http::openapi::Escalated),
                (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
                (status = 503, description = "LOG_UNAVAILABLE", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = []))
        )]
        pub(crate) async fn $name(
            $(axum::extract::Path(($($var,)+)): axum::extract::Path<($($pty,)+)>,)?
            $req: crate::http::request::CommandRequest<$body>,
        ) -> crate::http::request::Res {
            $run
        }
    };
}
pub(crate) use command;

/// Declares a query route: its parameters are what its `Filters` accept.
///
/// ```ignore
/// query! {
///     /// A description, when there is more to say than the summary.
///     jobs: GET "/v1/queries/jobs", "Jobs" => Page,
///     query: ["status": JobStatus, "agent_id": AggregateId, "limit": Limit, "after": String],
///     |s, caller, headers, f| { ... }
/// }
/// ```
macro_rules! query {
    (
        $(#[doc = $doc:literal])*
        $name:ident: GET $path:literal, $summary:literal => $answer:ident,
        $(path: [$($param:literal => $var:ident: $pty:ty),+],)?
        query: [$($q:literal: $qt:ty),*],
        |$s:ident, $caller:ident, $headers:ident, $f:ident| $body:block
    ) => {
        $(#[doc = $doc])*
        #[utoipa::path(
            get,
            path = $path,
            tag = "queries",
            summary = $summary,
            params(
                $($(($param = inline($pty), Path),)+)?
                $(($q = inline(Option<$qt>), Query, nullable = false),)*
                ("X-Chronicle-Min-Position" = inline(Option<crate::http::schema::Position>), Header, nullable = false, description = "Wait (up to 5 s) until the read models reach this log position"),
            ),
            responses(
                (status = 200, description = "OK", body = crate::http::openapi::$answer),
                (status = "4XX", description = "Refused", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
                (status = 503, description = "Unavailable", body = crate::http::openapi::Problem, content_type = "application/problem+json"),
            ),
            security(("bearer" = [])),
        )]
        pub(crate) async fn $name(
            axum::extract::State($s): axum::extract::State<crate::state::AppState>,
            $caller: crate::auth::Caller,
            $headers: axum::http::HeaderMap,
            $(axum::extract::Path(($($var,)+)): axum::extract::Path<($($pty,)+)>,)?
            axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
        ) -> crate::http::request::Res {
            #[allow(unused_variables)]
            let $f = crate::http::queries::filters::Filters::new(&params, &[$($q),*])?;
            $($(let $var: String = $var.into();)+)?
            $body
        }
    };
}
pub(crate) use query;
