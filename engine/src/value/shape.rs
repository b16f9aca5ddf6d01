//! The shapes of the objects a thread has read: a tree of key sequences, so that an object
//! read again with keys another had before it (the orders, customers and entities a daemon
//! reads are of a few shapes) follows the tree by comparing each key read with the one the
//! tree expects, instead of interning it, and shares that object's key table, instead of
//! building one (and checking its keys for duplicates).
//!
//! Only a fast path: a key the tree does not know (an id, a long key, a key read again in
//! one object, or any key once the tree is full) leaves it, and the object is read the
//! general way from there ([`Map::from_read`]). The tree is bounded: [`MAX_NODES`] keys, at
//! most [`MAX_NEXT`] after one key, paths of at most [`MAX_DEPTH`] keys, and key tables of
//! [`MAX_HELD`] keys in all.

use super::map::KeyTable;
use super::{intern, Map, Str, Value};

/// The most keys the tree holds.
pub const MAX_NODES: usize = 4096;
/// The most keys the tree knows after one key (or first in an object).
pub const MAX_NEXT: usize = 32;
/// The most keys of an object the tree follows.
pub const MAX_DEPTH: usize = 128;
/// The most keys the tree's key tables hold between them.
pub const MAX_HELD: usize = 16_384;

/// A place in the tree: the keys read so far (0, the root, none).
pub(crate) type Node = u32;

/// The root: an object whose first key is still to be read.
pub(crate) const ROOT: Node = 0;

/// The tree (see the module).
pub(crate) struct Shapes {
    /// The keys known first in an object.
    first: Vec<(Str, Node)>,
    /// Node `n` is `nodes[n - 1]`.
    nodes: Vec<Step>,
    /// The keys the key tables of `nodes` hold.
    held: usize,
}

/// A key after the keys of its parent.
struct Step {
    key: Str,
    /// The key's [`key_hash`](super::key_hash).
    hash: u64,
    parent: Node,
    /// How many keys, this one included.
    depth: usize,
    /// The keys known after this one.
    next: Vec<(Str, Node)>,
    /// The key table of exactly these keys, which the objects read with these keys share;
    /// made when the first such object is complete.
    shape: Option<KeyTable>,
}

impl Shapes {
    /// An empty tree.
    pub(crate) const fn new() -> Shapes {
        Shapes {
            first: Vec::new(),
            nodes: Vec::new(),
            held: 0,
        }
    }

    fn step(&self, node: Node) -> Option<&Step> {
        (node as usize)
            .checked_sub(1)
            .and_then(|i| self.nodes.get(i))
    }

    /// The keys known after `node`, with the node each leads to.
    #[inline]
    pub(crate) fn next(&self, node: Node) -> &[(Str, Node)] {
        match self.step(node) {
            Some(step) => &step.next,
            None if node == ROOT => &self.first,
            None => &[],
        }
    }

    /// The node of `key` (of hash `hash`) after `node`, added to the tree; `None` (the
    /// object is read the general way from there) for a key not worth a place (see
    /// [`intern`]), one already among the keys of `node`, or when the tree is full.
    pub(crate) fn grow(&mut self, node: Node, key: &Str, hash: u64) -> Option<Node> {
        if !intern::worth(key) || self.nodes.len() >= MAX_NODES {
            return None;
        }
        let depth = match self.step(node) {
            Some(step) => step.depth,
            None if node == ROOT => 0,
            None => return None,
        };
        if depth >= MAX_DEPTH || self.next(node).len() >= MAX_NEXT {
            return None;
        }
        // The keys of a path are distinct: a key read again leaves the tree.
        let mut at = node;
        while let Some(step) = self.step(at) {
            if intern::same(&step.key, key) {
                return None;
            }
            at = step.parent;
        }
        let id = Node::try_from(self.nodes.len() + 1).ok()?;
        self.nodes.push(Step {
            key: key.clone(),
            hash,
            parent: node,
            depth: depth + 1,
            next: Vec::new(),
            shape: None,
        });
        match (node as usize).checked_sub(1) {
            Some(i) => self.nodes.get_mut(i)?.next.push((key.clone(), id)),
            None => self.first.push((key.clone(), id)),
        }
        Some(id)
    }

    /// Pushes the keys of `node`, first to last, with their hashes onto `keys`.
    pub(crate) fn push_keys(&self, node: Node, keys: &mut Vec<(Str, u64)>) {
        let start = keys.len();
        let mut at = node;
        while let Some(step) = self.step(at) {
            keys.push((step.key.clone(), step.hash));
            at = step.parent;
        }
        if let Some(pushed) = keys.get_mut(start..) {
            pushed.reverse();
        }
    }

    /// The object of the keys of `node` and `values` (as many): it shares the key table of
    /// the objects of these keys read before it.
    pub(crate) fn object(&mut self, node: Node, values: Vec<Value>) -> Map {
        let Some(i) = (node as usize).checked_sub(1) else {
            return Map::new();
        };
        if let Some(shape) = self.nodes.get(i).and_then(|s| s.shape.as_ref()) {
            return Map::of_table(shape, values);
        }
        let mut names = Vec::new();
        self.push_keys(node, &mut names);
        let names: Vec<Str> = names.into_iter().map(|(k, _)| k).collect();
        let n = names.len();
        if self.held + n > MAX_HELD {
            return Map::from_distinct(names, values);
        }
        let shape = Map::table(names);
        let map = Map::of_table(&shape, values);
        if let Some(step) = self.nodes.get_mut(i) {
            step.shape = Some(shape);
            self.held += n;
        }
        map
    }
}
