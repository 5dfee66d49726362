//! Proof bundles for auditors: what `chronicle replay prove` writes and `chronicle replay
//! check` checks offline, with the public seal key alone.
//!
//! - An **inclusion** bundle: an event as the log stores it, its position, its inclusion
//!   proof and the signed checkpoint the proof is against. Checked, it shows the event
//!   (exactly these bytes of content: its hash is recomputed) is at that position of the
//!   history the seal key signed.
//! - A **consistency** bundle: two signed checkpoints and the consistency proof between
//!   them. Checked, it shows the newer history extends the older one: nothing in the older
//!   was changed, removed or reordered.

use chronicle_events::JetStreamLog;
use chronicle_events::merkle::{Hash, leaf_hash, verify_consistency, verify_inclusion};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::Checkpoint;
use crate::seal::PublicSealKey;
use crate::tree::{self, ConsistencyProof, InclusionProof, ProofError, TreeError};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Bundle {
    Inclusion {
        position: u64,
        /// The stored envelope, as the log holds it (or as a line of `/v1/audit/events`
        /// gives it, with its `position` and `version`).
        event: Value,
        inclusion: InclusionProof,
        /// The C2SP signed note.
        checkpoint: String,
    },
    Consistency {
        consistency: ConsistencyProof,
        old_checkpoint: String,
        checkpoint: String,
    },
}

/// The inclusion bundle of the event at `position` against the sealed tree of `size`
/// (the latest checkpoint's when `None`).
pub async fn prove_inclusion<C: tokio_postgres::GenericClient>(
    log: &JetStreamLog,
    db: &C,
    position: u64,
    size: Option<u64>,
) -> Result<Bundle, ProofError> {
    let (inclusion, cp) = tree::inclusion(db, position, size).await?;
    let (raws, _) = log
        .read_raw_batch(position, &log.subject_filter(None), 1)
        .await
        .map_err(TreeError::from)?;
    let event = raws
        .into_iter()
        .find(|r| r.position == position)
        .and_then(|r| serde_json::from_slice::<Value>(&r.payload).ok())
        .ok_or(ProofError::OutOfRange {
            position,
            size: cp.size,
        })?;
    Ok(Bundle::Inclusion {
        position,
        event,
        inclusion,
        checkpoint: cp.note,
    })
}

/// The consistency bundle from the sealed tree of `from` to that of `to` (the latest when
/// `None`).
pub async fn prove_consistency<C: tokio_postgres::GenericClient>(
    db: &C,
    from: u64,
    to: Option<u64>,
) -> Result<Bundle, ProofError> {
    let (consistency, old, new) = tree::consistency(db, from, to).await?;
    Ok(Bundle::Consistency {
        consistency,
        old_checkpoint: old.note,
        checkpoint: new.note,
    })
}

/// What an offline check found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    /// `inclusion` or `consistency`.
    pub kind: &'static str,
    /// The checkpoint's origin (`chronicle/<stream>`) and tree size.
    pub origin: String,
    pub tree_size: u64,
    /// For an inclusion: the position and the event's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_hash: Option<String>,
    /// For a consistency: the older tree size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_size: Option<u64>,
    /// What did not hold (empty when `ok`).
    pub problems: Vec<String>,
}

/// The name every Chronicle checkpoint is signed under starts with this.
const ORIGIN_PREFIX: &str = "chronicle/";

fn open(note: &str, key: &PublicSealKey) -> Result<Checkpoint, String> {
    let origin = note.lines().next().unwrap_or_default();
    if !origin.starts_with(ORIGIN_PREFIX) {
        return Err(format!(
            "the checkpoint's origin {origin:?} is not a Chronicle log's"
        ));
    }
    Checkpoint::open(note, origin, key).map_err(|e| format!("the checkpoint: {e}"))
}

fn hashes(hex_list: &[String]) -> Result<Vec<Hash>, String> {
    hex_list
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| format!("{h:?} is not a 32-byte hex hash"))
        })
        .collect()
}

/// Checks a bundle with the public seal key alone.
pub fn check(bundle: &Bundle, key: &PublicSealKey) -> CheckReport {
    match bundle {
        Bundle::Inclusion {
            position,
            event,
            inclusion,
            checkpoint,
        } => check_inclusion(*position, event, inclusion, checkpoint, key),
        Bundle::Consistency {
            consistency,
            old_checkpoint,
            checkpoint,
        } => check_consistency(consistency, old_checkpoint, checkpoint, key),
    }
}

fn check_inclusion(
    position: u64,
    event: &Value,
    proof: &InclusionProof,
    note: &str,
    key: &PublicSealKey,
) -> CheckReport {
    let mut problems = Vec::new();
    let cp = open(note, key).map_err(|e| problems.push(e)).ok();
    // A line of `/v1/audit/events` is the envelope with its `position` and `version`
    // added; neither is an envelope field, so neither is hashed.
    let mut envelope = event.clone();
    if let Some(fields) = envelope.as_object_mut() {
        if let Some(at) = fields.remove("position")
            && at.as_u64() != Some(position)
        {
            problems.push(format!(
                "the event says position {at}, the bundle {position}"
            ));
        }
        fields.remove("version");
    }
    let stored = event
        .get("hash")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let computed = chronicle_events::chain::compute_hash(&envelope);
    if computed != stored {
        problems.push(format!(
            "the event's content hashes to {computed}, not to its hash {stored:?}: it was changed"
        ));
    }
    let entry = hex::decode(stored)
        .ok()
        .and_then(|b| Hash::try_from(b).ok());
    if position == 0 || proof.leaf_index != position - 1 {
        problems.push(format!(
            "the proof is for leaf {}, position {position} is leaf {}",
            proof.leaf_index,
            position.saturating_sub(1)
        ));
    }
    if let Some(e) = entry
        && hex::encode(leaf_hash(&e)) != proof.leaf_hash
    {
        problems.push("the proof's leaf hash is not the event's".into());
    }
    if let Some(cp) = &cp {
        if proof.tree_size != cp.size {
            problems.push(format!(
                "the proof is for a tree of {}, the checkpoint signs {}",
                proof.tree_size, cp.size
            ));
        }
        match (hashes(&proof.hashes), entry) {
            (Err(e), _) => problems.push(e),
            (Ok(path), Some(e)) => {
                if !verify_inclusion(&e, position.saturating_sub(1), cp.size, &path, &cp.root) {
                    problems
                        .push("the inclusion proof does not lead to the checkpoint's root".into());
                }
            }
            (Ok(_), None) => problems.push("the event has no 32-byte hex hash".into()),
        }
    }
    CheckReport {
        ok: problems.is_empty(),
        kind: "inclusion",
        origin: cp.as_ref().map(|c| c.origin.clone()).unwrap_or_default(),
        tree_size: cp.as_ref().map(|c| c.size).unwrap_or(proof.tree_size),
        position: Some(position),
        event_hash: Some(stored.to_owned()),
        from_size: None,
        problems,
    }
}

fn check_consistency(
    proof: &ConsistencyProof,
    old_note: &str,
    note: &str,
    key: &PublicSealKey,
) -> CheckReport {
    let mut problems = Vec::new();
    let old = open(old_note, key)
        .map_err(|e| problems.push(format!("older {e}")))
        .ok();
    let new = open(note, key).map_err(|e| problems.push(e)).ok();
    if let (Some(old), Some(new)) = (&old, &new) {
        if old.origin != new.origin {
            problems.push(format!(
                "the checkpoints are of two logs: {} and {}",
                old.origin, new.origin
            ));
        }
        if (proof.from, proof.to) != (old.size, new.size) {
            problems.push(format!(
                "the proof is from {} to {}, the checkpoints sign {} and {}",
                proof.from, proof.to, old.size, new.size
            ));
        }
        match hashes(&proof.hashes) {
            Err(e) => problems.push(e),
            Ok(path) => {
                if !verify_consistency(old.size, new.size, &old.root, &new.root, &path) {
                    problems.push(
                        "the consistency proof does not hold: the newer history does not extend the older".into(),
                    );
                }
            }
        }
    }
    CheckReport {
        ok: problems.is_empty(),
        kind: "consistency",
        origin: new.as_ref().map(|c| c.origin.clone()).unwrap_or_default(),
        tree_size: new.as_ref().map(|c| c.size).unwrap_or(proof.to),
        position: None,
        event_hash: None,
        from_size: Some(old.as_ref().map(|c| c.size).unwrap_or(proof.from)),
        problems,
    }
}
