//! The values the API takes, as types whose OpenAPI schema states the rule the command side
//! applies to them — an aggregate id, an account code, a currency, a non-blank text of at
//! most so many characters, an amount, a page size — so that a client generated from
//! `/openapi.json` sends what the API accepts. Each deserializes as the plain value it
//! wraps (the rules themselves are checked where they always were: in the deciders); the
//! tests below hold each documented pattern to the rule it documents.

use std::borrow::Cow;

use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// Text with something in it (not only whitespace) and no NUL character.
pub const TEXT_PATTERN: &str = r"^[^\x00]*[^\s\x00][^\x00]*$";

fn string(pattern: &str, max: Option<usize>, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(pattern.to_owned()))
        .min_length(Some(1))
        .max_length(max)
        .description(Some(description.to_owned()))
        .into()
}

macro_rules! string_value {
    ($(#[$meta:meta])* $name:ident, $schema:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $schema
            }
        }

        impl ToSchema for $name {}

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

string_value!(
    /// An aggregate's id: one NATS subject token.
    AggregateId,
    string(
        chronicle_events::stream_id::ID_PATTERN,
        Some(chronicle_events::stream_id::MAX_ID_LEN),
        "1 to 128 of A-Z, a-z, 0-9, '-', '_', ':', '@'"
    )
);

string_value!(
    /// An account's code.
    AccountCode,
    string(
        chronicle_commands::chart::CODE_PATTERN,
        Some(32),
        "1 to 32 of A-Z, a-z, 0-9, '-', '_'"
    )
);

string_value!(
    /// An ISO 4217 currency code.
    Currency,
    string(
        chronicle_commands::chart::CURRENCY_PATTERN,
        Some(3),
        "three upper-case letters"
    )
);

string_value!(
    /// A reason, an error or a memo: not blank, at most 2 000 characters.
    Text,
    string(TEXT_PATTERN, Some(2000), "not blank, at most 2 000 characters")
);

string_value!(
    /// A name or a kind: not blank, at most 200 characters.
    ShortText,
    string(TEXT_PATTERN, Some(200), "not blank, at most 200 characters")
);

string_value!(
    /// `Idempotency-Key`: 1 to 255 visible ASCII characters.
    IdempotencyKey,
    string("^[!-~]{1,255}$", Some(255), "1 to 255 visible ASCII characters")
);

string_value!(
    /// The path of a single-command route, e.g. `/v1/commands/jobs` (a batch's command).
    CommandPath,
    string("^/v1/commands/[!-~]{1,500}$", Some(513), "the path of a command route")
);

string_value!(
    /// `If-Match`: the aggregate's expected version, in quotes.
    VersionTag,
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .pattern(Some(r#"^(W/)?"?[0-9]{1,19}"?$"#.to_owned()))
        .description(Some("the version, e.g. \"3\""))
        .into()
);

fn domains() -> Vec<&'static str> {
    chronicle_events::Domain::ALL
        .iter()
        .map(|d| d.as_str())
        .collect()
}

string_value!(
    /// A stream (`job.42`) or a whole domain (`job.*`).
    StreamFilter,
    string(
        &format!(
            r"^({})\.(\*|[A-Za-z0-9_:@-]{{1,128}})$",
            domains().join("|")
        ),
        None,
        "`<domain>.<id>` or `<domain>.*`"
    )
);

string_value!(
    /// A domain of the log.
    DomainName,
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(domains()))
        .into()
);

string_value!(
    /// An event type of any domain.
    EventType,
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .enum_values(Some(
            chronicle_events::Event::all_types()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
        ))
        .into()
);

/// A token's scope: one of the permissions table's (`chronicle_commands::permissions`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Scope(pub String);

impl PartialSchema for Scope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .enum_values(Some(chronicle_commands::permissions::all_scopes()))
            .into()
    }
}

impl ToSchema for Scope {}

string_value!(
    /// A token's id (a UUID; anything else names no token).
    TokenId,
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::String))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
            utoipa::openapi::KnownFormat::Uuid,
        )))
        .into()
);

/// An amount in integer minor units: a positive JSON integer, or a string of digits.
pub struct Amount;

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .minimum(Some(1))
                    .maximum(Some(i64::MAX)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .pattern(Some("^0*[1-9][0-9]{0,18}$".to_owned())),
            )
            .description(Some(
                "integer minor units, positive, up to 2^63-1: a JSON integer or a string of digits",
            ))
            .into()
    }
}

impl ToSchema for Amount {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Amount")
    }
}

/// A page's size.
pub struct Limit;

impl PartialSchema for Limit {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .minimum(Some(1))
            .maximum(Some(1000))
            .description(Some("items per page, 1 to 1 000 (default 100)"))
            .into()
    }
}

impl ToSchema for Limit {}

/// A log position.
pub struct Position;

impl PartialSchema for Position {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int64,
            )))
            .minimum(Some(0))
            .into()
    }
}

impl ToSchema for Position {}

#[cfg(test)]
mod tests {
    use super::*;
    use chronicle_commands::chart::{valid_code, valid_currency};
    use chronicle_events::stream_id::valid_id;

    /// The documented patterns agree with the rules on a spread of values (regex crate
    /// syntax is close enough to ECMA-262's for these patterns).
    #[test]
    fn each_pattern_says_what_its_rule_checks() {
        let re = |p: &str| regex::Regex::new(p).unwrap();
        let id = re(chronicle_events::stream_id::ID_PATTERN);
        let code = re(chronicle_commands::chart::CODE_PATTERN);
        let currency = re(chronicle_commands::chart::CURRENCY_PATTERN);
        let text = re(TEXT_PATTERN);
        let samples = [
            "",
            " ",
            "a",
            "a.b",
            "a b",
            "job-1",
            "x:y@z",
            "A_B-c",
            "é",
            "1000",
            "EUR",
            "eur",
            "EURO",
            "*",
            ">",
            "\t",
            "\0",
            "a\0",
            "ok\n",
            &"x".repeat(32),
            &"x".repeat(33),
            &"x".repeat(128),
            &"x".repeat(129),
        ];
        for s in samples {
            assert_eq!(id.is_match(s), valid_id(s), "id {s:?}");
            assert_eq!(code.is_match(s), valid_code(s), "code {s:?}");
            assert_eq!(currency.is_match(s), valid_currency(s), "currency {s:?}");
            let non_blank = !s.trim().is_empty() && !s.contains('\0');
            assert_eq!(text.is_match(s), non_blank, "text {s:?}");
        }
    }
}
