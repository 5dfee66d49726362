//! Merkle roots over event hashes, and the exact bytes a seal signs.
//!
//! Leaves are the events' chain hashes (32 bytes; a stored message that is not an
//! envelope contributes the SHA-256 of its bytes). The tree is RFC 6962's: a leaf is
//! `SHA-256(0x00 ‖ hash)`, a node `SHA-256(0x01 ‖ left ‖ right)`, and a range splits at
//! the largest power of two below its size, so every range has exactly one root. The
//! inclusion and consistency proofs and their verification are RFC 9162 §2.1.3–2.1.4,
//! checked against vectors from an independent reference (`events/tests/rfc9162/`).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The leaf value of one stored message.
pub fn leaf_of_payload(payload: &[u8]) -> Hash {
    /// Only the `hash` of an envelope (the rest is skipped, not built). Anything this does
    /// not read cleanly — not an object, a duplicate or non-string `hash` — takes the
    /// general path below, which decides.
    #[derive(serde::Deserialize)]
    struct OnlyHash<'a> {
        #[serde(borrow)]
        hash: Option<&'a str>,
    }
    if let Ok(OnlyHash { hash: Some(h) }) = serde_json::from_slice::<OnlyHash>(payload) {
        let mut out = [0u8; 32];
        if hex::decode_to_slice(h, &mut out).is_ok() {
            return out;
        }
    }
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

/// RFC 9162's leaf hash of an entry: `SHA-256(0x00 ‖ entry)`.
pub fn leaf_hash(h: &Hash) -> Hash {
    let mut d = Sha256::new();
    d.update([0u8]);
    d.update(h);
    d.finalize().into()
}

/// RFC 9162's interior node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(l: &Hash, r: &Hash) -> Hash {
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
            let k = split(n);
            node_hash(&merkle_root(&leaves[..k]), &merkle_root(&leaves[k..]))
        }
    }
}

/// The largest power of two below `n` (`n` ≥ 2): where RFC 9162 splits a range.
fn split(n: usize) -> usize {
    1usize << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// The inclusion proof of leaf `index` in the tree over `leaves` (RFC 9162 §2.1.3.1,
/// `PATH(m, D[n])`): the sibling roots from the leaf up.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    let (mut path, sibling) = if index < k {
        (
            inclusion_proof(&leaves[..k], index),
            merkle_root(&leaves[k..]),
        )
    } else {
        (
            inclusion_proof(&leaves[k..], index - k),
            merkle_root(&leaves[..k]),
        )
    };
    path.push(sibling);
    path
}

/// The consistency proof between the tree over the first `from` of `leaves` and the tree
/// over all of them (RFC 9162 §2.1.4.1, `PROOF(m, D[n])`).
pub fn consistency_proof(leaves: &[Hash], from: usize) -> Vec<Hash> {
    fn sub(m: usize, d: &[Hash], whole: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if whole { vec![] } else { vec![merkle_root(d)] };
        }
        let k = split(n);
        let (mut proof, other) = if m <= k {
            (sub(m, &d[..k], whole), merkle_root(&d[k..]))
        } else {
            (sub(m - k, &d[k..], false), merkle_root(&d[..k]))
        };
        proof.push(other);
        proof
    }
    if from == 0 || from > leaves.len() {
        return Vec::new();
    }
    sub(from, leaves, true)
}

/// Whether `proof` shows `leaf` (an event hash) at `index` of the tree of `size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf_hash(leaf);
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// Whether `proof` shows the tree of `from` leaves with root `from_root` to be a prefix
/// of the tree of `to` leaves with root `to_root` (RFC 9162 §2.1.4.2; equal sizes need
/// an empty proof and equal roots, and every tree extends the empty one).
pub fn verify_consistency(
    from: u64,
    to: u64,
    from_root: &Hash,
    to_root: &Hash,
    proof: &[Hash],
) -> bool {
    if from > to {
        return false;
    }
    if from == 0 {
        return proof.is_empty();
    }
    if from == to {
        return proof.is_empty() && from_root == to_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if from.is_power_of_two() {
        path.push(*from_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (from - 1, to - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == from_root && &sr == to_root && s == 0
}

/// The bytes a seal's signature covers. A checkpoint seal (`tree`: its tree size and
/// origin) signs them too (`chronicle-seal/3`); an older seal that recorded
/// unauthenticated positions signed them (`chronicle-seal/2`); one that found none signs
/// what seals always did.
pub fn seal_message(
    from: u64,
    to: u64,
    root_hex: &str,
    prev_seal: Option<&str>,
    unauthenticated: &[u64],
    tree: Option<(u64, &str)>,
) -> Vec<u8> {
    let prev = prev_seal.unwrap_or("");
    if let Some((tree_size, origin)) = tree {
        let listed: Vec<String> = unauthenticated.iter().map(u64::to_string).collect();
        return format!(
            "chronicle-seal/3\n{from}\n{to}\n{root_hex}\n{prev}\n{}\n{tree_size}\n{origin}",
            listed.join(",")
        )
        .into_bytes();
    }
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
