//! The canonical encoding of an envelope and the per-stream SHA-256 hash chain.
//!
//! Canonical JSON: object keys sorted by their UTF-8 bytes, no insignificant whitespace,
//! strings escaped as `serde_json` does (only `"`, `\` and control characters), numbers as
//! `serde_json` prints them. It is written by hand rather than relying on `serde_json::Map`
//! being sorted, because any crate in the build can switch that map to insertion order.
//!
//! `hash = hex(SHA-256(prev_hash ‖ canonical(envelope without "hash")))`, with `prev_hash`
//! as its hex text (empty for a stream's first event). `prev_hash` is the `hash` of the
//! stream's previous event, so changing any event breaks every later link of its stream.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Appends the canonical encoding of `v` to `out`.
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => write_object(map, None, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_string(s, out),
        Value::Number(n) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail.
            let _ = write!(out, "{n}");
        }
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Null => out.extend_from_slice(b"null"),
    }
}

/// An object's canonical encoding, leaving out the member `skip`.
fn write_object(map: &serde_json::Map<String, Value>, skip: Option<&str>, out: &mut Vec<u8>) {
    let mut members: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .collect();
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, out);
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // Writing a &str into a Vec cannot fail.
    serde_json::to_writer(&mut *out, s).expect("writing a string to memory");
}

/// The canonical encoding of `v`.
pub fn canonical_json(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_canonical(v, &mut out);
    out
}

/// The chain hash of an envelope given as JSON. Any `hash` member is left out.
pub fn compute_hash(envelope: &Value) -> String {
    let prev = envelope
        .get("prev_hash")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    let mut canonical = Vec::with_capacity(512);
    match envelope {
        Value::Object(map) => write_object(map, Some("hash"), &mut canonical),
        other => write_canonical(other, &mut canonical),
    }
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}

/// What is wrong with one link of a stream's chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the stored hash {stored} is not the hash of the event's content ({computed})")]
    HashMismatch { stored: String, computed: String },
    #[error("prev_hash {found:?} does not match the previous event's hash {expected:?}")]
    BrokenLink {
        expected: Option<String>,
        found: Option<String>,
    },
    #[error("the envelope is not a JSON object with a hash")]
    NotAnEnvelope,
}

/// Checks one stored envelope against the hash of its stream's previous event.
pub fn check_link(envelope: &Value, expected_prev: Option<&str>) -> Result<(), ChainError> {
    let stored = envelope
        .get("hash")
        .and_then(Value::as_str)
        .ok_or(ChainError::NotAnEnvelope)?;
    let found_prev = envelope.get("prev_hash").and_then(Value::as_str);
    if found_prev != expected_prev {
        return Err(ChainError::BrokenLink {
            expected: expected_prev.map(str::to_owned),
            found: found_prev.map(str::to_owned),
        });
    }
    let computed = compute_hash(envelope);
    if computed != stored {
        return Err(ChainError::HashMismatch {
            stored: stored.to_owned(),
            computed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, {"z": null, "a": "x\"y"}], "a": true }"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":true,"b":[1,{"a":"x\"y","z":null}]}"#
        );
    }

    #[test]
    fn hash_covers_prev_hash_and_content_but_not_itself() {
        let e = json!({"id": "1", "prev_hash": null, "data": {"n": 1}});
        let h = compute_hash(&e);
        let mut with_hash = e.clone();
        with_hash["hash"] = json!(h.clone());
        assert_eq!(compute_hash(&with_hash), h);
        check_link(&with_hash, None).unwrap();

        let mut changed = with_hash.clone();
        changed["data"]["n"] = json!(2);
        assert!(matches!(
            check_link(&changed, None),
            Err(ChainError::HashMismatch { .. })
        ));
        assert!(matches!(
            check_link(&with_hash, Some("00")),
            Err(ChainError::BrokenLink { .. })
        ));
    }
}
