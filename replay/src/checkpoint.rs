//! Checkpoints of the log's Merkle tree as C2SP signed notes (c2sp.org/tlog-checkpoint,
//! c2sp.org/signed-note): the note text is the origin (`chronicle/<stream>`), the tree
//! size and the base64 root, each on its own line; one signature line follows a blank
//! line, `— <key name> base64(key ID ‖ Ed25519 signature)`, signed by the seal key. The
//! key ID is `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chronicle_events::merkle::Hash;
use ed25519_dalek::{Signature, Signer, Verifier};
use sha2::{Digest, Sha256};

use crate::seal::{PublicSealKey, SealKey};

/// A tree head: how many leaves, and their root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text the signature covers.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// The signed note, signed by `key` under `name`.
    pub fn sign(&self, name: &str, key: &SealKey) -> String {
        let text = self.text();
        let signature = key.signing_key().sign(text.as_bytes());
        let mut blob = key_id(name, &key.public()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        format!("{text}\n\u{2014} {name} {}\n", STANDARD.encode(blob))
    }

    /// The checkpoint a signed note carries, if a signature by `key` under `name`
    /// verifies over its text (signatures by other keys are ignored, as the spec says).
    pub fn open(note: &str, name: &str, key: &PublicSealKey) -> Result<Checkpoint, String> {
        if note.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err("a note holds no control characters".into());
        }
        let (text, signatures) = note
            .split_once("\n\n")
            .ok_or("no blank line between the text and the signatures")?;
        let text = format!("{text}\n");
        let id = key_id(name, key);
        let mut verified = false;
        for line in signatures.lines() {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or("a signature line must start with an em dash and a space")?;
            let (who, blob) = rest
                .split_once(' ')
                .ok_or("a signature line without a key name")?;
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| "a signature that is not base64")?;
            if who != name || blob.len() < 4 || blob[..4] != id {
                continue;
            }
            let signature = Signature::from_slice(&blob[4..])
                .map_err(|_| "an Ed25519 signature is 64 bytes")?;
            key.verifying_key()
                .verify(text.as_bytes(), &signature)
                .map_err(|_| "the signature does not verify: the note was changed or forged")?;
            verified = true;
        }
        if !verified {
            return Err(format!("no signature by {name} with this key"));
        }
        let mut lines = text.lines();
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or("no origin")?;
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("the second line must be the tree size")?;
        let root = lines
            .next()
            .and_then(|r| STANDARD.decode(r).ok())
            .and_then(|r| Hash::try_from(r).ok())
            .ok_or("the third line must be the base64 root hash")?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// A signed note's key ID for an Ed25519 key (signature type 0x01).
pub fn key_id(name: &str, key: &PublicSealKey) -> [u8; 4] {
    let mut d = Sha256::new();
    d.update(name.as_bytes());
    d.update([0x0A, 0x01]);
    d.update(key.verifying_key().to_bytes());
    d.finalize()[..4].try_into().expect("4 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From `replay/tests/c2sp/reference.py` (Python's `cryptography` and `hashlib`, an
    /// implementation independent of this one): the note for this checkpoint, signed by
    /// the seed below under this name.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const NAME: &str = "chronicle/CHRONICLE";
    const EXPECTED: &str = include_str!("../tests/c2sp/note.txt");

    fn key() -> SealKey {
        SealKey::from_seed(&hex::decode(SEED).unwrap().try_into().unwrap())
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: NAME.into(),
            size: 1000,
            root: Sha256::digest(b"root").into(),
        }
    }

    #[test]
    fn a_signed_checkpoint_equals_the_reference_and_opens_with_the_public_key() {
        let note = checkpoint().sign(NAME, &key());
        assert_eq!(note, EXPECTED);
        assert_eq!(
            Checkpoint::open(&note, NAME, &key().public()).unwrap(),
            checkpoint()
        );
    }

    #[test]
    fn a_changed_note_another_key_or_name_is_refused() {
        let note = checkpoint().sign(NAME, &key());
        let forged = note.replacen("\n1000\n", "\n1001\n", 1);
        assert!(Checkpoint::open(&forged, NAME, &key().public()).is_err());
        let other = SealKey::from_seed(&[7; 32]);
        assert!(Checkpoint::open(&note, NAME, &other.public()).is_err());
        assert!(Checkpoint::open(&note, "someone/else", &key().public()).is_err());
        // A signature by an unknown key beside the right one is ignored.
        let also = checkpoint().sign("someone/else", &other);
        let both = format!("{note}{}", also.split_once("\n\n").unwrap().1);
        assert!(Checkpoint::open(&both, NAME, &key().public()).is_ok());
        assert!(Checkpoint::open(&note.replace('\n', "\r\n"), NAME, &key().public()).is_err());
    }
}
