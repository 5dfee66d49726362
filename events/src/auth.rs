//! Event authentication: what tells Chronicle's own messages from anything else on its
//! subjects.
//!
//! Publishing rights on NATS are enough to put a message on `chronicle.ev.job.42`, and
//! anyone can compute SHA-256, so a well-formed envelope with a correct hash chain proves
//! nothing about who wrote it. Every message Chronicle's writers append therefore carries
//! `Chronicle-Auth: <key id>:<hex HMAC-SHA256>` over its subject, its version header, its
//! `Chronicle-Prev` header (where the previous message of its subject stood when it was
//! appended, so that a genuine message published again is out of place) and its payload
//! bytes, keyed by `CHRONICLE_EVENT_KEY` — a key that only Chronicle's
//! processes hold, separate from the token signing key and from the seal key. A message
//! without a valid one is *foreign*: every reader steps past it, `verify` reports it and
//! the sealer records it in the seal that covers it.
//!
//! Retired keys still verify (so the key can be rotated without rewriting history); only
//! the current key signs.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The header carrying a message's authentication.
pub const AUTH_HEADER: &str = "Chronicle-Auth";
/// The header saying where the previous message of the subject is: its position as the
/// append expected it (`0` for a stream's first), or `batch` for the message right before
/// this one in the same atomic append.
pub const PREV_HEADER: &str = "Chronicle-Prev";
/// [`PREV_HEADER`]'s value for a message whose predecessor is the one right before it.
pub const PREV_IN_BATCH: &str = "batch";

type HmacSha256 = Hmac<Sha256>;

/// One event key, ready to sign or check.
#[derive(Clone)]
struct EventKey {
    id: String,
    mac: HmacSha256,
}

impl EventKey {
    fn new(key: &[u8; 32]) -> EventKey {
        let mut d = Sha256::new();
        d.update(b"chronicle-event-key-id\n");
        d.update(key);
        let id = hex::encode(&d.finalize()[..4]);
        EventKey {
            id,
            mac: HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length"),
        }
    }

    /// The MAC over one message, before it is finalized or compared.
    fn over(&self, subject: &str, version: u64, prev: &str, payload: &[u8]) -> HmacSha256 {
        let mut m = self.mac.clone();
        m.update(b"chronicle-event/1\n");
        m.update(subject.as_bytes());
        m.update(b"\n");
        m.update(version.to_string().as_bytes());
        m.update(b"\n");
        m.update(prev.as_bytes());
        m.update(b"\n");
        m.update(payload);
        m
    }
}

/// The event keys of a deployment: the current one signs, all of them verify.
#[derive(Clone)]
pub struct Keyring {
    current: EventKey,
    retired: Vec<EventKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "retired",
                &self.retired.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    pub fn new(current: &[u8; 32], retired: &[[u8; 32]]) -> Keyring {
        Keyring {
            current: EventKey::new(current),
            retired: retired.iter().map(EventKey::new).collect(),
        }
    }

    /// The id of the signing key, as it appears in `Chronicle-Auth` headers.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// The `Chronicle-Auth` value of a message.
    pub fn sign(&self, subject: &str, version: u64, prev: &str, payload: &[u8]) -> String {
        let tag = self
            .current
            .over(subject, version, prev, payload)
            .finalize();
        format!("{}:{}", self.current.id, hex::encode(tag.into_bytes()))
    }

    /// A tag over derived data Chronicle keeps outside the log (a snapshot), so that it can
    /// tell its own from anything put in its place. `context` names what the data is.
    pub fn tag(&self, context: &str, data: &[u8]) -> String {
        let tag = self.current.over(context, 0, "", data).finalize();
        format!("{}:{}", self.current.id, hex::encode(tag.into_bytes()))
    }

    /// Whether `tag` is [`Keyring::tag`] of `data` by one of the keys.
    pub fn verify_tag(&self, context: &str, data: &[u8], tag: &str) -> bool {
        self.verify(context, Some(0), Some(""), data, Some(tag))
    }

    /// Whether `header` is a valid `Chronicle-Auth` of this message by one of the keys.
    pub fn verify(
        &self,
        subject: &str,
        version: Option<u64>,
        prev: Option<&str>,
        payload: &[u8],
        header: Option<&str>,
    ) -> bool {
        let (Some(header), Some(version), Some(prev)) = (header, version, prev) else {
            return false;
        };
        let Some((id, tag)) = header.split_once(':') else {
            return false;
        };
        let Ok(tag) = hex::decode(tag) else {
            return false;
        };
        std::iter::once(&self.current)
            .chain(&self.retired)
            .filter(|k| k.id == id)
            // verify_slice compares in constant time.
            .any(|k| {
                k.over(subject, version, prev, payload)
                    .verify_slice(&tag)
                    .is_ok()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_message_verifies_and_any_change_does_not() {
        let ring = Keyring::new(&[7; 32], &[]);
        let s = "chronicle.ev.job.1";
        let p: &[u8] = b"{\"a\":1}";
        let auth = ring.sign(s, 3, "17", p);
        let ok = |subject, version, prev, payload| {
            ring.verify(subject, version, prev, payload, Some(&auth))
        };
        assert!(ok(s, Some(3), Some("17"), p));
        assert!(!ok("chronicle.ev.job.2", Some(3), Some("17"), p));
        assert!(!ok(s, Some(4), Some("17"), p));
        assert!(!ok(s, Some(3), Some("18"), p));
        assert!(!ok(s, Some(3), Some("batch"), p));
        assert!(!ok(s, Some(3), Some("17"), b"{\"a\":2}"));
        assert!(!ok(s, None, Some("17"), p));
        assert!(!ok(s, Some(3), None, p));
        assert!(!ring.verify(s, Some(3), Some("17"), p, None));
        assert!(!ring.verify(s, Some(3), Some("17"), p, Some("junk")));
    }

    #[test]
    fn another_key_does_not_verify_but_a_retired_one_does() {
        let old = Keyring::new(&[1; 32], &[]);
        let auth = old.sign("s", 1, "0", b"p");
        let new = Keyring::new(&[2; 32], &[]);
        assert!(!new.verify("s", Some(1), Some("0"), b"p", Some(&auth)));
        let rotated = Keyring::new(&[2; 32], &[[1; 32]]);
        assert!(rotated.verify("s", Some(1), Some("0"), b"p", Some(&auth)));
        assert_ne!(rotated.current_id(), old.current_id());
    }
}
