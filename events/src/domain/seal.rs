//! Domain `seal`: signed checkpoints of the log (stream `seal.log`).

use serde::{Deserialize, Serialize};

use super::domain_events;

/// `root` is the Merkle root of the hashes of the messages at positions
/// `from_position..=to_position`, `prev_seal` the previous seal's hash, `signature` an
/// Ed25519 signature by the seal key over the seal's content. `unauthenticated` lists the
/// positions in the range whose message no event key authenticates (foreign messages the
/// sealer found and recorded rather than vouch for); absent when there are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealRecorded {
    pub from_position: u64,
    pub to_position: u64,
    pub root: String,
    pub prev_seal: Option<String>,
    pub signature: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unauthenticated: Vec<u64>,
}

domain_events!(
    /// Events of the seal chain.
    SealEvent,
    Seal,
    [SealRecorded]
);
