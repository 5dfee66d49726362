//! A query's parameters: only those the route declares (anything else is `400`, not
//! silently ignored), each checked as what it is — one of a set, a date, a time, a
//! position, a boolean — and the page: `limit` (1–1000, default 100) and `after`, an
//! opaque cursor over the `seq` a list is ordered by.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};

use crate::error::ApiError;

const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: i64 = 100;

/// The query's parameters, checked against what the route takes.
pub(crate) struct Filters<'a> {
    params: &'a HashMap<String, String>,
}

impl<'a> Filters<'a> {
    pub(crate) fn new(
        params: &'a HashMap<String, String>,
        allowed: &[&str],
    ) -> Result<Self, ApiError> {
        if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad_param(
                unknown,
                format!(
                    "unknown parameter `{}`; this route takes {}",
                    unknown.chars().take(64).collect::<String>(),
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
        Ok(Filters { params })
    }

    pub(crate) fn text(&self, name: &str) -> Option<String> {
        self.params.get(name).filter(|v| !v.is_empty()).cloned()
    }

    pub(crate) fn one_of(&self, name: &str, values: &[&str]) -> Result<Option<String>, ApiError> {
        match self.text(name) {
            None => Ok(None),
            Some(v) if values.contains(&v.as_str()) => Ok(Some(v)),
            Some(_) => Err(ApiError::bad_param(
                name,
                format!("{name} must be one of {}", values.join(", ")),
            )),
        }
    }

    pub(crate) fn date(&self, name: &str) -> Result<Option<NaiveDate>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse::<NaiveDate>()
                    .ok()
                    .filter(|d| chronicle_commands::valid_date(*d))
                    .ok_or_else(|| {
                        ApiError::bad_param(
                            name,
                            format!("{name} must be a date, YYYY-MM-DD, from 0001 to 9999"),
                        )
                    })
            })
            .transpose()
    }

    pub(crate) fn position(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_param(name, format!("{name} must be a log position"))
                })
            })
            .transpose()
    }

    pub(crate) fn uuid(&self, name: &str) -> Result<Option<uuid::Uuid>, ApiError> {
        self.text(name)
            .map(|v| {
                v.parse::<uuid::Uuid>()
                    .map_err(|_| ApiError::bad_param(name, format!("{name} must be a UUID")))
            })
            .transpose()
    }

    pub(crate) fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.text(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::bad_param(name, format!("{name} must be an RFC 3339 time"))
                    })
            })
            .transpose()
    }

    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.text(name).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::bad_param(
                name,
                format!("{name} must be true or false"),
            )),
        }
    }

    pub(crate) fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.text("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::bad_param("limit", format!("limit must be 1 to {MAX_LIMIT}"))
                })?,
        };
        let after = match self.text("after") {
            None => 0,
            Some(c) => decode_cursor(&c).ok_or_else(|| {
                ApiError::bad_param("after", "after is not a cursor from this API")
            })?,
        };
        Ok(Page { limit, after })
    }
}

pub(crate) struct Page {
    pub limit: i64,
    pub after: i64,
}

pub(crate) fn encode_cursor(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("c1:{seq}"))
}

fn decode_cursor(c: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(c).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix("c1:")?
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
}
