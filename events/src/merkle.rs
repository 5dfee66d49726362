//! Merkle roots over event hashes, and the exact bytes a seal signs.
//!
//! Leaves are the events' chain hashes (32 bytes; a stored message that is not an
//! envelope contributes the SHA-256 of its bytes). The tree is RFC 6962's: a leaf is
//! `SHA-256(0x00 ‖ hash)`, a node `SHA-256(0x01 ‖ left ‖ right)`, and a range splits at
//! the largest power of two below its size, so every range has exactly one root.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The leaf value of one stored message.
pub fn leaf_of_payload(payload: &[u8]) -> Hash {
    leaf_of_parsed(
        serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .as_ref(),
        payload,
    )
}

/// [`leaf_of_payload`] for a payload already parsed (`None` when it is not JSON).
pub fn leaf_of_parsed(parsed: Option<&serde_json::Value>, payload: &[u8]) -> Hash {
    parsed
        .and_then(|v| v.get("hash"))
        .and_then(|h| h.as_str())
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| Hash::try_from(b).ok())
        .unwrap_or_else(|| Sha256::digest(payload).into())
}

fn leaf_hash(h: &Hash) -> Hash {
    let mut d = Sha256::new();
    d.update([0u8]);
    d.update(h);
    d.finalize().into()
}

fn node_hash(l: &Hash, r: &Hash) -> Hash {
    let mut d = Sha256::new();
    d.update([1u8]);
    d.update(l);
    d.update(r);
    d.finalize().into()
}

/// The root over `leaves` (the SHA-256 of nothing for none).
pub fn merkle_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf_hash(&leaves[0]),
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// The bytes a seal's signature covers. A seal that recorded unauthenticated positions
/// signs them too (`chronicle-seal/2`); one that found none signs what seals always did.
pub fn seal_message(
    from: u64,
    to: u64,
    root_hex: &str,
    prev_seal: Option<&str>,
    unauthenticated: &[u64],
) -> Vec<u8> {
    let prev = prev_seal.unwrap_or("");
    if unauthenticated.is_empty() {
        return format!("chronicle-seal/1\n{from}\n{to}\n{root_hex}\n{prev}").into_bytes();
    }
    let listed: Vec<String> = unauthenticated.iter().map(u64::to_string).collect();
    format!(
        "chronicle-seal/2\n{from}\n{to}\n{root_hex}\n{prev}\n{}",
        listed.join(",")
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Hash {
        [n; 32]
    }

    #[test]
    fn roots_follow_rfc_6962_shape() {
        let (a, b, c) = (h(1), h(2), h(3));
        assert_eq!(merkle_root(&[a]), leaf_hash(&a));
        assert_eq!(
            merkle_root(&[a, b]),
            node_hash(&leaf_hash(&a), &leaf_hash(&b))
        );
        assert_eq!(
            merkle_root(&[a, b, c]),
            node_hash(&node_hash(&leaf_hash(&a), &leaf_hash(&b)), &leaf_hash(&c))
        );
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]), "order matters");
    }

    #[test]
    fn a_leaf_is_the_envelope_hash_or_the_bytes_hash() {
        let hash = "ab".repeat(32);
        let env = format!(r#"{{"hash":"{hash}","x":1}}"#);
        assert_eq!(leaf_of_payload(env.as_bytes()), [0xab; 32]);
        assert_eq!(
            leaf_of_payload(b"junk"),
            <Hash>::from(Sha256::digest(b"junk"))
        );
    }
}
