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

/// Appends the canonical encoding of `value` straight from its `Serialize`, without
/// building a `serde_json::Value`: members of every object sorted by their UTF-8 bytes as
/// [`write_canonical`] sorts them, everything else as `serde_json` writes it. For
/// Chronicle's types the bytes are those of `write_canonical(&serde_json::to_value(value))`
/// (tested for every event type); `f32` fields, which `to_value` widens to `f64` first,
/// would differ, and Chronicle's events have none.
pub fn write_canonical_from<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(out, Sorted::default());
    value.serialize(&mut ser)
}

/// A `serde_json` formatter that holds each object's members until the object ends, then
/// writes them sorted by key. Output goes to the innermost open member (its key or its
/// value), or to the writer when no object is open.
#[derive(Default)]
struct Sorted {
    open: Vec<OpenObject>,
}

#[derive(Default)]
struct OpenObject {
    members: Vec<(Vec<u8>, Vec<u8>)>,
    in_key: bool,
}

impl Sorted {
    fn sink<'a, W: ?Sized + std::io::Write>(&'a mut self, writer: &'a mut W) -> Sink<'a, W> {
        match self.open.last_mut() {
            None => Sink::Writer(writer),
            Some(o) => {
                let in_key = o.in_key;
                // A member exists from `begin_object_key` on.
                let (k, v) = o.members.last_mut().expect("a member is open");
                Sink::Member(if in_key { k } else { v })
            }
        }
    }
}

enum Sink<'a, W: ?Sized> {
    Writer(&'a mut W),
    Member(&'a mut Vec<u8>),
}

impl<W: ?Sized + std::io::Write> std::io::Write for Sink<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Writer(w) => w.write(buf),
            Sink::Member(m) => {
                m.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Writer(w) => w.write_all(buf),
            Sink::Member(m) => {
                m.extend_from_slice(buf);
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Writer(w) => w.flush(),
            Sink::Member(_) => Ok(()),
        }
    }
}

/// Its unescaped text, the order [`write_object`] sorts by (plain keys need no parse).
fn key_text(quoted: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let inner = &quoted[1..quoted.len().saturating_sub(1).max(1)];
    if !inner.contains(&b'\\') {
        return std::borrow::Cow::Borrowed(inner);
    }
    match serde_json::from_slice::<String>(quoted) {
        Ok(s) => std::borrow::Cow::Owned(s.into_bytes()),
        Err(_) => std::borrow::Cow::Borrowed(inner),
    }
}

macro_rules! to_sink {
    ($($name:ident($($arg:ident: $ty:ty),*);)+) => {
        $(fn $name<W: ?Sized + std::io::Write>(
            &mut self,
            writer: &mut W,
            $($arg: $ty),*
        ) -> std::io::Result<()> {
            serde_json::ser::CompactFormatter.$name(&mut self.sink(writer), $($arg),*)
        })+
    };
}

impl serde_json::ser::Formatter for Sorted {
    to_sink! {
        write_null();
        write_bool(v: bool);
        write_i8(v: i8);
        write_i16(v: i16);
        write_i32(v: i32);
        write_i64(v: i64);
        write_i128(v: i128);
        write_u8(v: u8);
        write_u16(v: u16);
        write_u32(v: u32);
        write_u64(v: u64);
        write_u128(v: u128);
        write_f32(v: f32);
        write_f64(v: f64);
        write_number_str(v: &str);
        begin_string();
        end_string();
        write_string_fragment(v: &str);
        write_char_escape(v: serde_json::ser::CharEscape);
        begin_array();
        end_array();
        begin_array_value(first: bool);
        write_raw_fragment(v: &str);
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.open.push(OpenObject::default());
        Ok(())
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut o = self.open.pop().expect("an object is open");
        o.members
            .sort_by(|a, b| key_text(&a.0).cmp(&key_text(&b.0)));
        let mut sink = self.sink(writer);
        sink.write_all(b"{")?;
        for (i, (k, v)) in o.members.iter().enumerate() {
            if i > 0 {
                sink.write_all(b",")?;
            }
            sink.write_all(k)?;
            sink.write_all(b":")?;
            sink.write_all(v)?;
        }
        sink.write_all(b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        _: &mut W,
        _first: bool,
    ) -> std::io::Result<()> {
        let o = self.open.last_mut().expect("an object is open");
        o.members
            .push((Vec::with_capacity(16), Vec::with_capacity(32)));
        o.in_key = true;
        Ok(())
    }

    fn end_object_key<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        if let Some(o) = self.open.last_mut() {
            o.in_key = false;
        }
        Ok(())
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        Ok(())
    }
}

/// The fields of an envelope to encode, borrowed.
pub struct EnvelopeParts<'a> {
    pub id: &'a uuid::Uuid,
    pub stream: &'a crate::StreamId,
    pub event_type: &'a str,
    pub schema: u32,
    pub occurred_at: &'a chrono::DateTime<chrono::Utc>,
    pub actor: &'a crate::Actor,
    pub command_id: &'a uuid::Uuid,
    pub correlation_id: &'a uuid::Uuid,
    pub causation_id: Option<&'a uuid::Uuid>,
    /// The event's data in canonical form ([`write_canonical_from`]).
    pub data: &'a [u8],
    pub prev_hash: Option<&'a str>,
}

/// An envelope's chain hash and its stored bytes (canonical JSON with `hash`), written
/// straight from its parts: the same bytes and hash as [`canonical_json`] and
/// [`compute_hash`] of the envelope as a JSON value, without building one. Members are
/// written in their sorted order; `hash` sits between `data` and `id`.
pub fn encode_envelope(p: &EnvelopeParts<'_>) -> (String, Vec<u8>) {
    fn member<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, v: &T) {
        write_string(key, out);
        out.push(b':');
        // Serializing ids, times, strings and numbers into memory cannot fail.
        serde_json::to_writer(&mut *out, v).expect("a scalar serializes");
    }
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(b"{\"actor\":{");
    member(&mut head, "id", &p.actor.id);
    head.push(b',');
    member(&mut head, "kind", p.actor.kind.as_str());
    head.extend_from_slice(b"},");
    member(&mut head, "causation_id", &p.causation_id);
    head.push(b',');
    member(&mut head, "command_id", p.command_id);
    head.push(b',');
    member(&mut head, "correlation_id", p.correlation_id);
    head.extend_from_slice(b",\"data\":");
    head.extend_from_slice(p.data);
    let mut tail = Vec::with_capacity(256);
    member(&mut tail, "id", p.id);
    tail.push(b',');
    member(&mut tail, "occurred_at", p.occurred_at);
    tail.push(b',');
    member(&mut tail, "prev_hash", &p.prev_hash);
    tail.push(b',');
    member(&mut tail, "schema", &p.schema);
    tail.push(b',');
    member(&mut tail, "stream", p.stream);
    tail.push(b',');
    member(&mut tail, "type", p.event_type);
    tail.push(b'}');

    let mut hasher = Sha256::new();
    hasher.update(p.prev_hash.unwrap_or("").as_bytes());
    hasher.update(&head);
    hasher.update(b",");
    hasher.update(&tail);
    let hash = hex::encode(hasher.finalize());

    let mut payload = head;
    payload.reserve(tail.len() + 80);
    payload.extend_from_slice(b",\"hash\":\"");
    payload.extend_from_slice(hash.as_bytes());
    payload.extend_from_slice(b"\",");
    payload.extend_from_slice(&tail);
    (hash, payload)
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
    fn canonical_from_serialize_is_canonical_of_the_value() {
        #[derive(serde::Serialize)]
        struct Inner {
            zeta: Option<u8>,
            alpha: Vec<Value>,
        }
        #[derive(serde::Serialize)]
        struct Outer {
            z: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            b: Inner,
            a: std::collections::HashMap<String, i64>,
            e: [u8; 0],
            u: std::collections::BTreeMap<u32, bool>,
            f: f64,
            n: f64,
        }
        let keys = [
            "b",
            "a",
            "\u{e9}",
            "\"",
            "a\u{1}",
            "A",
            "\u{1F916}",
            "\n",
            "aa",
            "",
        ];
        let outer = Outer {
            z: "line\nbreak \"quoted\" \u{7f} \u{1F916}",
            skipped: None,
            b: Inner {
                zeta: None,
                alpha: vec![
                    json!({"y": 1, "x": [{"d": null, "c": {}}], "é": "é"}),
                    json!([]),
                    json!(-0.0),
                    json!(u64::MAX),
                ],
            },
            a: keys
                .iter()
                .enumerate()
                .map(|(i, k)| (k.to_string(), i as i64 - 3))
                .collect(),
            e: [],
            u: [(10, true), (9, false), (100, true)].into_iter().collect(),
            f: 2.5e-10,
            n: f64::NAN,
        };
        let mut direct = Vec::new();
        write_canonical_from(&outer, &mut direct).unwrap();
        assert_eq!(
            String::from_utf8(direct).unwrap(),
            String::from_utf8(canonical_json(&serde_json::to_value(&outer).unwrap())).unwrap()
        );
        for scalar in [
            json!(1),
            json!("s"),
            json!(null),
            json!([1, {"b": 2, "a": 1}]),
        ] {
            let mut direct = Vec::new();
            write_canonical_from(&scalar, &mut direct).unwrap();
            assert_eq!(direct, canonical_json(&scalar));
        }
    }

    #[test]
    fn an_envelope_written_from_its_parts_is_the_canonical_one() {
        let id = uuid::Uuid::now_v7();
        let (cmd, corr, cause) = (
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4(),
        );
        let stream: crate::StreamId = "job.j-1".parse().unwrap();
        let data = json!({"z": [1, 2.5, "é\"\n"], "a": {"y": null, "b": true}, "n": -7});
        for (occurred_at, prev, causation) in [
            (
                "2026-01-02T03:04:05.123456Z",
                Some("ab".repeat(32)),
                Some(&cause),
            ),
            ("2026-01-02T03:04:05Z", None, None),
        ] {
            let occurred_at: chrono::DateTime<chrono::Utc> = occurred_at.parse().unwrap();
            let actor = crate::Actor::agent("bot \u{1F916}");
            let parts = EnvelopeParts {
                id: &id,
                stream: &stream,
                event_type: "JobSubmitted",
                schema: 1,
                occurred_at: &occurred_at,
                actor: &actor,
                command_id: &cmd,
                correlation_id: &corr,
                causation_id: causation,
                data: &canonical_json(&data),
                prev_hash: prev.as_deref(),
            };
            let mut value = json!({
                "id": id, "stream": stream, "type": "JobSubmitted", "schema": 1,
                "occurred_at": occurred_at, "actor": actor, "command_id": cmd,
                "correlation_id": corr, "causation_id": causation, "data": data,
                "prev_hash": prev,
            });
            let hash = compute_hash(&value);
            value["hash"] = json!(hash);
            assert_eq!(encode_envelope(&parts), (hash, canonical_json(&value)));
        }
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
