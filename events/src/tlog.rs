//! The whole log's Merkle tree, stored as tiles so that any proof costs a handful of reads.
//!
//! The tree is RFC 9162's (see [`crate::merkle`]) over every position of the log: leaf `i`
//! is position `i + 1`, its entry the message's chain hash ([`crate::merkle::leaf_of_payload`];
//! a position the log no longer holds has the entry [`MISSING`]). Its nodes are stored in
//! the layout of C2SP tlog-tiles: a tile of tile-level `L` and index `N` holds the hashes of
//! the tree's perfect subtrees of height `8·L` with indices `256·N .. 256·N + 255` (the
//! level-0 tiles hold the leaf hashes). Tiles fill left to right and a full one never
//! changes; only the right-most tile of each level is partial.
//!
//! Every subtree root an RFC 9162 proof needs is either perfect — read from one tile, by
//! hashing at most 128 of its entries — or the right edge of a tree, a right fold of at
//! most `log₂ n` perfect ones. So a proof reads at most a few tiles per tile-level
//! (three tile-levels hold 16 million leaves), whatever the log's length.
//!
//! This module is pure: which tiles a proof needs ([`ProofPlan`]), the proof from those
//! tiles, and the builder that extends the tiles leaf by leaf ([`TreeBuilder`]). Storing
//! them is the caller's (Postgres, in `chronicle_replay::tree`).

use std::collections::{BTreeMap, BTreeSet};

use crate::merkle::{Hash, leaf_hash, node_hash};

/// Height of a tile: each holds up to 2⁸ hashes.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// The entry of a position the log does not hold (a gap a restore kept, say): no chain
/// hash is all zeros.
pub const MISSING: Hash = [0; 32];

/// The root of the perfect subtree of `2^height` leaves that starts at leaf
/// `index · 2^height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Node {
    pub height: u32,
    pub index: u64,
}

/// A tile: tile-level `level`, index `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileId {
    pub level: u32,
    pub index: u64,
}

impl Node {
    /// The tile that holds what this node is hashed from, and which of its entries.
    fn place(&self) -> (TileId, usize, usize) {
        let level = self.height / TILE_HEIGHT;
        let rest = self.height % TILE_HEIGHT;
        let first = self.index << rest;
        (
            TileId {
                level,
                index: first / TILE_WIDTH,
            },
            (first % TILE_WIDTH) as usize,
            1 << rest,
        )
    }
}

/// The perfect subtrees the range of leaves `lo..hi` splits into, left to right, in the
/// way RFC 9162 splits it (for every range a proof or root uses, `lo` is a multiple of a
/// power of two at least `hi - lo`, or 0). Its root is their right fold.
pub fn range_nodes(mut lo: u64, hi: u64) -> Vec<Node> {
    let mut out = Vec::new();
    while lo < hi {
        let fits = 63 - (hi - lo).leading_zeros();
        let aligned = if lo == 0 { 63 } else { lo.trailing_zeros() };
        let height = fits.min(aligned);
        out.push(Node {
            height,
            index: lo >> height,
        });
        lo += 1 << height;
    }
    out
}

/// The largest power of two below `n` (`n` ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The ranges of leaves whose roots make the inclusion proof of leaf `index` in the tree
/// of `size` leaves (RFC 9162 §2.1.3.1), in the proof's order (from the leaf up).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(m, lo, lo + k, out);
            out.push((lo + k, hi));
        } else {
            path(m - k, lo + k, hi, out);
            out.push((lo, lo + k));
        }
    }
    let mut out = Vec::new();
    if index < size {
        path(index, 0, size, &mut out);
    }
    out
}

/// The ranges of leaves whose roots make the consistency proof from the tree of `from`
/// leaves to the tree of `to` (RFC 9162 §2.1.4.1), in the proof's order.
pub fn consistency_ranges(from: u64, to: u64) -> Vec<(u64, u64)> {
    fn sub(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push((lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(m, lo, lo + k, whole, out);
            out.push((lo + k, hi));
        } else {
            sub(m - k, lo + k, hi, false, out);
            out.push((lo, lo + k));
        }
    }
    let mut out = Vec::new();
    if from > 0 && from < to {
        sub(from, 0, to, true, &mut out);
    }
    out
}

/// What a set of proofs needs: the subtree ranges, and the tiles they are hashed from.
#[derive(Debug, Clone, Default)]
pub struct ProofPlan {
    ranges: Vec<(u64, u64)>,
    pub tiles: BTreeSet<TileId>,
}

impl ProofPlan {
    /// A plan for the roots of these ranges, in order.
    pub fn of(ranges: Vec<(u64, u64)>) -> ProofPlan {
        let tiles = ranges
            .iter()
            .flat_map(|(lo, hi)| range_nodes(*lo, *hi))
            .map(|n| n.place().0)
            .collect();
        ProofPlan { ranges, tiles }
    }

    /// The roots of the plan's ranges from the tiles it asked for.
    pub fn hashes(&self, tiles: &Tiles) -> Result<Vec<Hash>, MissingTile> {
        self.ranges
            .iter()
            .map(|(lo, hi)| tiles.range_root(*lo, *hi))
            .collect()
    }
}

/// A tile the store did not hold (or held too short): the stored tree is smaller than
/// the size asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tile {}/{} is not stored (or too short)", .0.level, .0.index)]
pub struct MissingTile(pub TileId);

/// Tiles read from a store.
#[derive(Debug, Clone, Default)]
pub struct Tiles(pub BTreeMap<TileId, Vec<Hash>>);

impl Tiles {
    /// Tiles from the bytes a store keeps (32 bytes a hash); a length that is not a
    /// multiple of 32 is cut to the hashes it holds whole.
    pub fn insert_bytes(&mut self, id: TileId, bytes: &[u8]) {
        let hashes = bytes
            .chunks_exact(32)
            .map(|c| Hash::try_from(c).expect("32 bytes"))
            .collect();
        self.0.insert(id, hashes);
    }

    fn node(&self, node: Node) -> Result<Hash, MissingTile> {
        let (id, first, count) = node.place();
        let entries = self
            .0
            .get(&id)
            .and_then(|t| t.get(first..first + count))
            .ok_or(MissingTile(id))?;
        Ok(perfect_root(entries))
    }

    /// The root of leaves `lo..hi` (a range RFC 9162 uses).
    pub fn range_root(&self, lo: u64, hi: u64) -> Result<Hash, MissingTile> {
        let mut nodes = range_nodes(lo, hi).into_iter().rev();
        let Some(last) = nodes.next() else {
            return Ok(crate::merkle::merkle_root(&[]));
        };
        let mut root = self.node(last)?;
        for n in nodes {
            root = node_hash(&self.node(n)?, &root);
        }
        Ok(root)
    }
}

/// The root of a perfect tree whose bottom row is `row` (a power of two long).
fn perfect_root(row: &[Hash]) -> Hash {
    let mut row = row.to_vec();
    while row.len() > 1 {
        row = row
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    row[0]
}

/// The tiles a tree of `size` leaves is extended from: the right-most of each level.
pub fn frontier_tiles(size: u64) -> Vec<TileId> {
    let mut out = Vec::new();
    let mut level = 0;
    let mut at = size;
    while at > 0 {
        if !at.is_multiple_of(TILE_WIDTH) {
            out.push(TileId {
                level,
                index: at / TILE_WIDTH,
            });
        }
        at /= TILE_WIDTH;
        level += 1;
    }
    out
}

/// Extends the tree leaf by leaf and says which tiles changed.
#[derive(Debug, Clone)]
pub struct TreeBuilder {
    /// Whether tiles are kept (to store them), or only the root is wanted.
    tiles: bool,
    size: u64,
    /// The perfect subtrees the tree splits into (heights strictly decreasing).
    frontier: Vec<(u32, Hash)>,
    /// The right-most tile of each tile-level, as it now is.
    edge: Vec<(u64, Vec<Hash>)>,
    /// Right-most tiles changed since the last [`TreeBuilder::take_changed`].
    changed: BTreeSet<TileId>,
    /// Tiles that filled up since then.
    filled: Vec<(TileId, Vec<u8>)>,
}

impl TreeBuilder {
    /// An empty tree.
    pub fn new() -> TreeBuilder {
        TreeBuilder {
            tiles: true,
            size: 0,
            frontier: Vec::new(),
            edge: Vec::new(),
            changed: BTreeSet::new(),
            filled: Vec::new(),
        }
    }

    /// An empty tree whose root alone is wanted (no tiles kept): O(log n) memory.
    pub fn roots_only() -> TreeBuilder {
        TreeBuilder {
            tiles: false,
            ..TreeBuilder::new()
        }
    }

    /// The tree of `size` leaves whose right-most tiles (those [`frontier_tiles`] names)
    /// are in `tiles`.
    pub fn resume(size: u64, tiles: &Tiles) -> Result<TreeBuilder, MissingTile> {
        let mut b = TreeBuilder::new();
        b.size = size;
        for node in range_nodes(0, size) {
            b.frontier.push((node.height, tiles.node(node)?));
        }
        let mut at = size;
        let mut level = 0;
        while at > 0 || level == 0 {
            let index = at / TILE_WIDTH;
            let held = (at % TILE_WIDTH) as usize;
            let id = TileId { level, index };
            let row = if held == 0 {
                Vec::new()
            } else {
                let t = tiles.0.get(&id).ok_or(MissingTile(id))?;
                t.get(..held).ok_or(MissingTile(id))?.to_vec()
            };
            b.edge.push((index, row));
            at /= TILE_WIDTH;
            level += 1;
            if at == 0 {
                break;
            }
        }
        Ok(b)
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the tree as it now is.
    pub fn root(&self) -> Hash {
        let mut nodes = self.frontier.iter().rev();
        let Some((_, last)) = nodes.next() else {
            return crate::merkle::merkle_root(&[]);
        };
        nodes.fold(*last, |r, (_, h)| node_hash(h, &r))
    }

    /// Adds the next leaf, whose entry is `entry` (an event's chain hash).
    pub fn push(&mut self, entry: &Hash) {
        let mut hash = leaf_hash(entry);
        let mut height = 0u32;
        self.store(0, hash);
        while let Some((h, left)) = self.frontier.last()
            && *h == height
        {
            hash = node_hash(left, &hash);
            self.frontier.pop();
            height += 1;
            if height.is_multiple_of(TILE_HEIGHT) {
                self.store(height / TILE_HEIGHT, hash);
            }
        }
        self.frontier.push((height, hash));
        self.size += 1;
    }

    /// Appends `hash` to the right-most tile of tile-level `level`.
    fn store(&mut self, level: u32, hash: Hash) {
        if !self.tiles {
            return;
        }
        let level_ix = level as usize;
        if self.edge.len() <= level_ix {
            self.edge.push((0, Vec::new()));
        }
        let (index, row) = &mut self.edge[level_ix];
        if row.len() as u64 == TILE_WIDTH {
            let full = TileId {
                level,
                index: *index,
            };
            if self.changed.remove(&full) {
                self.filled.push((full, row.concat()));
            }
            *index += 1;
            row.clear();
        }
        row.push(hash);
        self.changed.insert(TileId {
            level,
            index: *index,
        });
    }

    /// The tiles changed since the last call, with their content now (the right-most of a
    /// level may still grow; the others are full and final).
    pub fn take_changed(&mut self) -> Vec<(TileId, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.filled);
        for id in std::mem::take(&mut self.changed) {
            let (_, row) = &self.edge[id.level as usize];
            out.push((id, row.concat()));
        }
        out
    }
}

impl Default for TreeBuilder {
    fn default() -> Self {
        TreeBuilder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{consistency_proof, inclusion_proof, merkle_root};

    fn entries(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let mut h = [0u8; 32];
                h[..8].copy_from_slice(&(i + 1).to_be_bytes());
                h
            })
            .collect()
    }

    /// Builds the tree of `entries`, flushing the changed tiles every `flush` leaves into
    /// a store, as the sealer does.
    fn build(entries: &[Hash], flush: usize) -> (TreeBuilder, Tiles) {
        let mut store = Tiles::default();
        let mut b = TreeBuilder::new();
        for (i, e) in entries.iter().enumerate() {
            b.push(e);
            if (i + 1) % flush == 0 {
                for (id, bytes) in b.take_changed() {
                    store.insert_bytes(id, &bytes);
                }
            }
        }
        for (id, bytes) in b.take_changed() {
            store.insert_bytes(id, &bytes);
        }
        (b, store)
    }

    #[test]
    fn roots_and_proofs_from_tiles_equal_the_in_memory_ones() {
        // Across tile edges: 256 and 65 536 leaves fill tiles of level 0 and 1.
        for n in [
            1u64, 2, 3, 7, 255, 256, 257, 511, 513, 1000, 65_535, 65_536, 65_537,
        ] {
            let e = entries(n);
            let (b, tiles) = build(&e, 97);
            assert_eq!(b.root(), merkle_root(&e), "root of {n}");
            for size in [1, n / 3, n / 2, n - 1, n].into_iter().filter(|s| *s > 0) {
                let prefix = &e[..size as usize];
                assert_eq!(tiles.range_root(0, size).unwrap(), merkle_root(prefix));
                for index in [0, size / 2, size - 1] {
                    let plan = ProofPlan::of(inclusion_ranges(index, size));
                    assert!(plan.tiles.len() <= 12, "{} tiles", plan.tiles.len());
                    assert_eq!(
                        plan.hashes(&tiles).unwrap(),
                        inclusion_proof(prefix, index as usize),
                        "inclusion of {index} in {size}"
                    );
                }
                for from in [1, size / 2, size - 1].into_iter().filter(|f| *f > 0) {
                    let plan = ProofPlan::of(consistency_ranges(from, size));
                    assert_eq!(
                        plan.hashes(&tiles).unwrap(),
                        consistency_proof(prefix, from as usize),
                        "consistency {from} to {size}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_resumed_builder_goes_on_as_if_never_stopped() {
        let e = entries(70_000);
        let (whole, whole_tiles) = build(&e, 1000);
        for stop in [1usize, 255, 256, 257, 65_536, 65_537, 69_999] {
            let (first, tiles) = build(&e[..stop], 50);
            let mut resumed = TreeBuilder::resume(first.size(), &tiles).unwrap();
            assert_eq!(resumed.root(), first.root());
            let mut store = tiles.clone();
            for x in &e[stop..] {
                resumed.push(x);
            }
            for (id, bytes) in resumed.take_changed() {
                store.insert_bytes(id, &bytes);
            }
            assert_eq!(resumed.root(), whole.root(), "resumed at {stop}");
            assert_eq!(store.0, whole_tiles.0, "tiles resumed at {stop}");
        }
    }

    #[test]
    fn a_store_too_small_for_the_size_says_which_tile() {
        let e = entries(300);
        let (_, tiles) = build(&e, 300);
        let plan = ProofPlan::of(inclusion_ranges(0, 600));
        assert!(plan.hashes(&tiles).is_err());
        assert!(tiles.range_root(0, 300).is_ok());
    }

    #[test]
    fn frontier_tiles_are_what_resume_needs() {
        for n in [1u64, 255, 256, 257, 65_536, 65_537] {
            let (_, tiles) = build(&entries(n), 1000);
            let mut only = Tiles::default();
            for id in frontier_tiles(n) {
                if let Some(t) = tiles.0.get(&id) {
                    only.0.insert(id, t.clone());
                }
            }
            TreeBuilder::resume(n, &only).unwrap();
        }
    }
}
