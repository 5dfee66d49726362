//! Seal keys: signing a seal with `CHRONICLE_SEAL_KEY` (an Ed25519 seed) and checking one
//! with the public half alone.

use chronicle_events::domain::seal::SealRecorded;
use chronicle_events::merkle::seal_message;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

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

    /// A signed seal over positions `from..=to` with Merkle root `root_hex`, recording the
    /// positions in it that no event key authenticates.
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
        ));
        SealRecorded {
            from_position: from,
            to_position: to,
            root: root_hex,
            prev_seal,
            signature: hex::encode(signature.to_bytes()),
            unauthenticated,
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

    /// Whether `seal`'s signature is this key's over its content.
    pub fn verifies(&self, seal: &SealRecorded) -> bool {
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
        );
        self.0
            .verify_strict(&message, &Signature::from_bytes(&sig))
            .is_ok()
    }
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
}
