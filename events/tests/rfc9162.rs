//! Chronicle's Merkle tree against known-answer vectors that an independent reference
//! computed from RFC 9162's definitions (`rfc9162/reference.py`, Python and hashlib
//! only): every root, every inclusion proof and every consistency proof of trees of 1 to
//! 17, 31, 32, 33 and 40 leaves; each proof verifies, and fails once anything in it, or
//! what it is checked against, changes.

use chronicle_events::merkle::{
    Hash, consistency_proof, inclusion_proof, merkle_root, verify_consistency, verify_inclusion,
};
use serde_json::Value;

fn hash(v: &Value) -> Hash {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

fn vectors() -> (Value, Vec<Hash>) {
    let v: Value = serde_json::from_str(include_str!("rfc9162/vectors.json")).unwrap();
    let leaves = v["leaves"].as_array().unwrap().iter().map(hash).collect();
    (v, leaves)
}

fn flip(h: &Hash) -> Hash {
    let mut h = *h;
    h[7] ^= 0x40;
    h
}

#[test]
fn roots_match_the_reference() {
    let (v, leaves) = vectors();
    for (n, root) in v["roots"].as_object().unwrap() {
        let n: usize = n.parse().unwrap();
        assert_eq!(merkle_root(&leaves[..n]), hash(root), "size {n}");
    }
}

#[test]
fn inclusion_proofs_match_the_reference_verify_and_fail_when_anything_changes() {
    let (v, leaves) = vectors();
    let mut checked = 0;
    for case in v["inclusion"].as_array().unwrap() {
        let (m, n) = (
            case["index"].as_u64().unwrap(),
            case["size"].as_u64().unwrap(),
        );
        let expected: Vec<Hash> = case["path"].as_array().unwrap().iter().map(hash).collect();
        let tree = &leaves[..n as usize];
        let proof = inclusion_proof(tree, m as usize);
        assert_eq!(proof, expected, "PATH({m}, D[{n}])");
        let root = merkle_root(tree);
        let leaf = leaves[m as usize];
        assert!(verify_inclusion(&leaf, m, n, &proof, &root), "{m} in {n}");
        assert!(
            !verify_inclusion(&flip(&leaf), m, n, &proof, &root),
            "a changed event"
        );
        assert!(
            !verify_inclusion(&leaf, m, n, &proof, &flip(&root)),
            "a forged root"
        );
        if n > 1 {
            assert!(
                !verify_inclusion(&leaf, (m + 1) % n, n, &proof, &root),
                "a wrong position: {m} in {n}"
            );
        }
        // The size is bound by the signed checkpoint, not by the proof's shape: against
        // the root of another size, the proof fails.
        if (n as usize) < leaves.len() {
            let bigger = merkle_root(&leaves[..n as usize + 1]);
            assert!(
                !verify_inclusion(&leaf, m, n + 1, &proof, &bigger),
                "a wrong size: {m} in {n}"
            );
        }
        assert!(
            !verify_inclusion(&leaf, n, n, &proof, &root),
            "past the end"
        );
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = flip(&bad[i]);
            assert!(
                !verify_inclusion(&leaf, m, n, &bad, &root),
                "a changed proof"
            );
        }
        if !proof.is_empty() {
            assert!(
                !verify_inclusion(&leaf, m, n, &proof[..proof.len() - 1], &root),
                "a short proof"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 289);
}

#[test]
fn consistency_proofs_match_the_reference_verify_and_fail_when_a_root_is_forged() {
    let (v, leaves) = vectors();
    let mut checked = 0;
    for case in v["consistency"].as_array().unwrap() {
        let (m, n) = (case["from"].as_u64().unwrap(), case["to"].as_u64().unwrap());
        let expected: Vec<Hash> = case["proof"].as_array().unwrap().iter().map(hash).collect();
        let proof = consistency_proof(&leaves[..n as usize], m as usize);
        assert_eq!(proof, expected, "PROOF({m}, D[{n}])");
        let (old, new) = (
            merkle_root(&leaves[..m as usize]),
            merkle_root(&leaves[..n as usize]),
        );
        assert!(verify_consistency(m, n, &old, &new, &proof), "{m} → {n}");
        assert!(
            !verify_consistency(m, n, &flip(&old), &new, &proof),
            "a forged old root"
        );
        assert!(
            !verify_consistency(m, n, &old, &flip(&new), &proof),
            "a forged new root"
        );
        for i in 0..proof.len() {
            let mut bad = proof.clone();
            bad[i] = flip(&bad[i]);
            assert!(
                !verify_consistency(m, n, &old, &new, &bad),
                "a changed proof"
            );
        }
        if m < n {
            // A history rewritten below m: the old root of another prefix.
            let mut other = leaves[..n as usize].to_vec();
            other[0] = flip(&other[0]);
            let rewritten = merkle_root(&other);
            assert!(
                !verify_consistency(m, n, &old, &rewritten, &proof),
                "a rewrite"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 289);
    assert!(!verify_consistency(5, 3, &leaves[0], &leaves[1], &[]));
}
