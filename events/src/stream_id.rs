//! Stream identities: `<domain>.<id>`, one aggregate each, and their NATS subjects.
//!
//! An id becomes one subject token, so it is restricted to characters that can never be
//! mistaken for subject syntax (no `.`, `*`, `>` or whitespace): ASCII letters, digits and
//! `-`, `_`, `:`, `@`, at most 128 of them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The business domains of the log; the first token of a stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Domain {
    /// A user's tokens.
    User,
    Job,
    Approval,
    /// One account of the chart of accounts (`chart.<code>`).
    Chart,
    /// One journal entry.
    Entry,
    /// An agent's registration, maturity and governance decisions.
    Agent,
    /// An invoice and its revenue recognition.
    Invoice,
    /// Global governance switches (`governance.bypass`).
    Governance,
    /// Signed checkpoints of the log (`seal.log`).
    Seal,
}

impl Domain {
    pub const ALL: [Domain; 9] = [
        Domain::User,
        Domain::Job,
        Domain::Approval,
        Domain::Chart,
        Domain::Entry,
        Domain::Agent,
        Domain::Invoice,
        Domain::Governance,
        Domain::Seal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Domain::User => "user",
            Domain::Job => "job",
            Domain::Approval => "approval",
            Domain::Chart => "chart",
            Domain::Entry => "entry",
            Domain::Agent => "agent",
            Domain::Invoice => "invoice",
            Domain::Governance => "governance",
            Domain::Seal => "seal",
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Domain {
    type Err = StreamIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| StreamIdError::UnknownDomain(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    #[error("unknown domain `{0}`")]
    UnknownDomain(String),
    #[error("an id must be 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', ':' or '@'")]
    InvalidId,
    #[error("a stream is written `<domain>.<id>`")]
    Malformed,
}

/// One aggregate's stream: a domain and an id. Displayed and serialized as `job.7f3c…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    domain: Domain,
    id: String,
}

pub const MAX_ID_LEN: usize = 128;

/// [`valid_id`] as a regular expression (ECMA-262 and Python alike), for API documents.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_:@-]{1,128}$";

/// Whether `id` is usable as an aggregate id (one NATS subject token).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'@'))
}

impl StreamId {
    pub fn new(domain: Domain, id: impl Into<String>) -> Result<Self, StreamIdError> {
        let id = id.into();
        if !valid_id(&id) {
            return Err(StreamIdError::InvalidId);
        }
        Ok(StreamId { domain, id })
    }

    pub fn domain(&self) -> Domain {
        self.domain
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The NATS subject of this stream under `prefix` (e.g. `chronicle.ev`).
    pub fn subject(&self, prefix: &str) -> String {
        format!("{prefix}.{}.{}", self.domain, self.id)
    }

    /// Parses a subject `<prefix>.<domain>.<id>` back into a stream id.
    pub fn from_subject(prefix: &str, subject: &str) -> Result<Self, StreamIdError> {
        let rest = subject
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('.'))
            .ok_or(StreamIdError::Malformed)?;
        rest.parse()
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.domain, self.id)
    }
}

impl FromStr for StreamId {
    type Err = StreamIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (domain, id) = s.split_once('.').ok_or(StreamIdError::Malformed)?;
        StreamId::new(domain.parse()?, id)
    }
}

impl Serialize for StreamId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text_and_subject() {
        let s: StreamId = "job.7f3c-aa_01".parse().unwrap();
        assert_eq!(s.domain(), Domain::Job);
        assert_eq!(s.id(), "7f3c-aa_01");
        assert_eq!(s.subject("chronicle.ev"), "chronicle.ev.job.7f3c-aa_01");
        assert_eq!(
            StreamId::from_subject("chronicle.ev", "chronicle.ev.job.7f3c-aa_01").unwrap(),
            s
        );
        assert_eq!(s.to_string(), "job.7f3c-aa_01");
    }

    #[test]
    fn refuses_subject_syntax_and_unknown_domains() {
        for bad in [
            "job.a.b", "job.*", "job.>", "job.a b", "job.", "nope.x", "job",
        ] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad} should be refused");
        }
        assert!(StreamId::new(Domain::Job, "x".repeat(129)).is_err());
        assert!(StreamId::new(Domain::Job, "x".repeat(128)).is_ok());
    }
}
