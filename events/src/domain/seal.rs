//! Domain `seal`: signed checkpoints of the log (stream `seal.log`).

use serde::{Deserialize, Serialize};

use super::domain_events;

/// A seal of the log up to `to_position`, chained to the previous seal (`prev_seal`, its
/// hash) and signed by the seal key (`signature`, Ed25519 over the seal's content).
/// `unauthenticated` lists the positions since the previous seal whose message no event
/// key authenticates (foreign messages the sealer found and recorded rather than vouch
/// for); absent when there are none.
///
/// A seal with `tree_size` (written since the whole-log tree) is a checkpoint: `root` is
/// the RFC 9162 root of the tree over every position `1..=tree_size` (= `to_position`), and
/// `checkpoint` the base64 signature line of the C2SP signed note of that tree head under
/// the name `origin`. Without it (older seals), `root` is the Merkle root of the range
/// `from_position..=to_position` alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealRecorded {
    pub from_position: u64,
    pub to_position: u64,
    pub root: String,
    pub prev_seal: Option<String>,
    pub signature: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unauthenticated: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

domain_events!(
    /// Events of the seal chain.
    SealEvent,
    Seal,
    [SealRecorded]
);
