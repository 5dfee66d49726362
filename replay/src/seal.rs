//! Seal keys: signing a seal with `CHRONICLE_SEAL_KEY` (an Ed25519 seed) and checking one
//! with the public half alone.

use chronicle_events::domain::seal::SealRecorded;
use chronicle_events::merkle::{Hash, seal_message};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::checkpoint::Checkpoint;

/// The private seal key.
pub struct SealKey(SigningKey);

impl SealKey {
    pub fn from_seed(seed: &[u8; 32]) -> SealKey {
        SealKey(SigningKey::from_bytes(seed))
    }

    /// The public key auditors verify with, as 64 hex characters.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }

    pub fn public(&self) -> PublicSealKey {
        PublicSealKey(self.0.verifying_key())
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }

    /// A checkpoint seal: the tree over positions `1..=to` has root `root`; the seal
    /// covers `from..=to` (everything since the previous seal), records the positions in
    /// it no event key authenticates, and carries the C2SP signed note of the tree head
    /// under `origin`.
    pub fn checkpoint_seal(
        &self,
        from: u64,
        to: u64,
        root: Hash,
        prev_seal: Option<String>,
        unauthenticated: Vec<u64>,
        origin: &str,
    ) -> SealRecorded {
        let root_hex = hex::encode(root);
        let signature = self.0.sign(&seal_message(
            from,
            to,
            &root_hex,
            prev_seal.as_deref(),
            &unauthenticated,
            Some((to, origin)),
        ));
        let note = Checkpoint {
            origin: origin.to_owned(),
            size: to,
            root,
        }
        .sign(origin, self);
        SealRecorded {
            from_position: from,
            to_position: to,
            root: root_hex,
            prev_seal,
            signature: hex::encode(signature.to_bytes()),
            unauthenticated,
            tree_size: Some(to),
            origin: Some(origin.to_owned()),
            checkpoint: Some(signature_blob(&note).to_owned()),
        }
    }

    /// A seal in the older form (before the whole-log tree): over positions `from..=to`
    /// with the Merkle root of that range alone. Kept to write the seals old logs hold.
    pub fn seal(
        &self,
        from: u64,
        to: u64,
        root_hex: String,
        prev_seal: Option<String>,
        unauthenticated: Vec<u64>,
    ) -> SealRecorded {
        let signature = self.0.sign(&seal_message(
            from,
            to,
            &root_hex,
            prev_seal.as_deref(),
            &unauthenticated,
            None,
        ));
        SealRecorded {
            from_position: from,
            to_position: to,
            root: root_hex,
            prev_seal,
            signature: hex::encode(signature.to_bytes()),
            unauthenticated,
            tree_size: None,
            origin: None,
            checkpoint: None,
        }
    }
}

/// The public seal key.
#[derive(Clone, Copy)]
pub struct PublicSealKey(VerifyingKey);

impl PublicSealKey {
    pub fn from_hex(text: &str) -> Result<PublicSealKey, String> {
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("a public seal key is 64 hex characters")?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicSealKey)
            .map_err(|_| "not an Ed25519 public key".into())
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// Whether `seal`'s signature is this key's over its content, and for a checkpoint
    /// seal, its signed note too.
    pub fn verifies(&self, seal: &SealRecorded) -> bool {
        if let Some(tree_size) = seal.tree_size {
            let Some(origin) = &seal.origin else {
                return false;
            };
            if tree_size != seal.to_position {
                return false;
            }
            let Some(note) = checkpoint_note(seal) else {
                return false;
            };
            if Checkpoint::open(&note, origin, self).is_err() {
                return false;
            }
        }
        let Some(sig) = hex::decode(&seal.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        let message = seal_message(
            seal.from_position,
            seal.to_position,
            &seal.root,
            seal.prev_seal.as_deref(),
            &seal.unauthenticated,
            seal.tree_size.zip(seal.origin.as_deref()),
        );
        self.0
            .verify_strict(&message, &Signature::from_bytes(&sig))
            .is_ok()
    }
}

/// The signature part of a note's (single) signature line: `base64(key ID ‖ signature)`.
fn signature_blob(note: &str) -> &str {
    note.rsplit_once(' ')
        .map(|(_, b)| b.trim_end())
        .unwrap_or_default()
}

/// The C2SP signed note a checkpoint seal carries (`None` for an older seal, or one whose
/// root is not 32 bytes of hex).
pub fn checkpoint_note(seal: &SealRecorded) -> Option<String> {
    let (size, origin, blob) = (
        seal.tree_size?,
        seal.origin.as_ref()?,
        seal.checkpoint.as_ref()?,
    );
    let root = Hash::try_from(hex::decode(&seal.root).ok()?).ok()?;
    let text = Checkpoint {
        origin: origin.clone(),
        size,
        root,
    }
    .text();
    Some(format!("{text}\n\u{2014} {origin} {blob}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_verifies_with_its_key_only_and_only_unchanged() {
        let key = SealKey::from_seed(&[3; 32]);
        let seal = key.seal(1, 10, "ab".repeat(32), None, vec![]);
        assert!(key.public().verifies(&seal));
        let other = SealKey::from_seed(&[4; 32]);
        assert!(!other.public().verifies(&seal));
        let mut changed = seal.clone();
        changed.to_position = 11;
        assert!(!key.public().verifies(&changed));
        let round = PublicSealKey::from_hex(&key.public_hex()).unwrap();
        assert!(round.verifies(&seal));
        // The positions a seal records as unauthenticated are signed with it.
        let recorded = key.seal(1, 10, "ab".repeat(32), None, vec![4, 7]);
        assert!(key.public().verifies(&recorded));
        let mut hidden = recorded.clone();
        hidden.unauthenticated = vec![4];
        assert!(!key.public().verifies(&hidden));
    }

    #[test]
    fn a_checkpoint_seal_signs_its_note_and_everything_else() {
        let key = SealKey::from_seed(&[3; 32]);
        let seal = key.checkpoint_seal(
            11,
            20,
            [7; 32],
            Some("cd".repeat(32)),
            vec![12],
            "chronicle/T",
        );
        assert!(key.public().verifies(&seal));
        let note = checkpoint_note(&seal).unwrap();
        let opened = Checkpoint::open(&note, "chronicle/T", &key.public()).unwrap();
        assert_eq!((opened.size, opened.root), (20, [7; 32]));
        for change in [
            |s: &mut SealRecorded| s.tree_size = Some(21),
            |s: &mut SealRecorded| s.root = "ab".repeat(32),
            |s: &mut SealRecorded| s.origin = Some("chronicle/U".into()),
            |s: &mut SealRecorded| s.unauthenticated.clear(),
            |s: &mut SealRecorded| s.checkpoint = None,
            |s: &mut SealRecorded| s.prev_seal = None,
        ] {
            let mut changed = seal.clone();
            change(&mut changed);
            assert!(!key.public().verifies(&changed), "{changed:?}");
        }
        assert!(!SealKey::from_seed(&[4; 32]).public().verifies(&seal));
    }
}
