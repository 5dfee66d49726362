//! Schema versions and upcasting.
//!
//! The log is never rewritten: an event keeps the schema it was written with, and every
//! read lifts it to today's schema step by step (`n → n+1`) before it is decoded. A new
//! schema of an event type adds one step here and bumps [`current_schema`].

use serde_json::{Value, json};

use crate::domain::DecodeError;

/// Today's schema of each event type; types not listed are at schema 1.
pub fn current_schema(event_type: &str) -> u32 {
    match event_type {
        "TokenIssued" | "JournalEntryPosted" => 2,
        _ => 1,
    }
}

/// One step `from → from + 1` of an event type, if there is one.
fn step(event_type: &str, from: u32, data: Value) -> Option<Value> {
    match (event_type, from) {
        // TokenIssued 1 → 2: `scope` ("read write", OAuth's space-separated form) became
        // the list `scopes`.
        ("TokenIssued", 1) => {
            let mut data = data;
            let scopes: Vec<String> = data
                .get("scope")
                .and_then(Value::as_str)
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            if let Value::Object(map) = &mut data {
                map.remove("scope");
                map.insert("scopes".into(), json!(scopes));
            }
            Some(data)
        }
        // JournalEntryPosted 1 → 2: `source` (the aggregate that posted the entry) was
        // added; every entry of schema 1 was posted by hand, so it has none.
        ("JournalEntryPosted", 1) => Some(data),
        _ => None,
    }
}

/// Lifts `data` of `event_type` from `schema` to today's schema. Returns the schema
/// reached (always the current one) and the data.
pub fn upcast(event_type: &str, schema: u32, data: Value) -> Result<(u32, Value), DecodeError> {
    let target = current_schema(event_type);
    if schema > target || schema == 0 {
        return Err(DecodeError::UnsupportedSchema {
            event_type: event_type.to_owned(),
            schema,
        });
    }
    let mut data = data;
    let mut at = schema;
    while at < target {
        data = step(event_type, at, data).ok_or_else(|| DecodeError::UnsupportedSchema {
            event_type: event_type.to_owned(),
            schema: at,
        })?;
        at += 1;
    }
    Ok((at, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_current_schema_has_a_path_from_schema_one() {
        for (_, t) in crate::domain::Event::all_types() {
            for s in 1..=current_schema(t) {
                assert!(
                    upcast(t, s, json!({})).is_ok(),
                    "{t} schema {s} has no upcast path"
                );
            }
        }
    }

    #[test]
    fn newer_schemas_are_refused() {
        assert!(upcast("JobStarted", 2, json!({})).is_err());
        assert!(upcast("JobStarted", 0, json!({})).is_err());
    }
}
