//! [`Map`], the object of the expression language: keys in insertion order.
//!
//! An object is its keys and its values, kept apart: the values in a vector of its own, the
//! keys in a table that objects of the same shape share (the rows of an answer, the items
//! of an order, every object a literal of fixed keys builds), so such an object costs one
//! vector of values, and building one copies no key. A key is found by a scan of the keys
//! comparing pointers first (keys are interned, see [`intern`](super::intern)), then text;
//! an object of more than [`LINEAR_MAX`] keys has a hash index in its key table (shared
//! with the table).
//!
//! Order, equality and serialisation are those of an `IndexMap`: iteration in insertion
//! order, a key inserted again keeps its place, equality ignores order.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{intern, Hasher, Str, Value};

/// The most keys an object holds without a hash index (found by a scan).
pub const LINEAR_MAX: usize = 32;

/// The hash of a key under the maps' hasher.
#[inline]
pub fn key_hash(k: &str) -> u64 {
    Hasher::default().hash_one(k)
}

/// The keys of an object (shared by objects of the same shape).
#[derive(Clone, Default)]
struct Keys {
    names: Vec<Str>,
    /// Positions by key hash; present exactly when there are more than [`LINEAR_MAX`] keys.
    index: Option<HashTable<u32>>,
}

impl Keys {
    fn with_capacity(n: usize) -> Keys {
        Keys {
            names: Vec::with_capacity(n),
            index: None,
        }
    }

    /// Keys known to be distinct.
    fn from_distinct(names: Vec<Str>) -> Keys {
        let mut keys = Keys { names, index: None };
        keys.reindex();
        keys
    }

    #[inline]
    fn find(&self, k: &str) -> Option<usize> {
        match &self.index {
            None => scan(&self.names, k),
            Some(index) => self.probe(index, k, key_hash(k)),
        }
    }

    #[inline]
    fn find_hashed(&self, k: &str, hash: u64) -> Option<usize> {
        match &self.index {
            None => scan(&self.names, k),
            Some(index) => self.probe(index, k, hash),
        }
    }

    fn probe(&self, index: &HashTable<u32>, k: &str, hash: u64) -> Option<usize> {
        let names = &self.names;
        index
            .find(hash, |&i| {
                names.get(i as usize).is_some_and(|n| intern::same(n, k))
            })
            .map(|&i| i as usize)
    }

    /// Appends a key known not to be there.
    fn push(&mut self, k: Str) {
        self.names.push(k);
        let n = self.names.len();
        if n <= LINEAR_MAX {
            return;
        }
        match &mut self.index {
            None => self.reindex(),
            Some(index) => {
                let names = &self.names;
                let hash = key_hash(&names[n - 1]);
                // Positions fit in u32: an object of more than 4 billion keys cannot be built.
                index.insert_unique(hash, (n - 1) as u32, |&i| {
                    names.get(i as usize).map_or(0, |n| key_hash(n))
                });
            }
        }
    }

    /// Builds (or drops) the index after the keys changed other than by [`Keys::push`].
    fn reindex(&mut self) {
        if self.names.len() <= LINEAR_MAX {
            self.index = None;
            return;
        }
        let mut index = HashTable::with_capacity(self.names.len());
        for (i, n) in self.names.iter().enumerate() {
            let names = &self.names;
            index.insert_unique(key_hash(n), i as u32, |&j| {
                names.get(j as usize).map_or(0, |n| key_hash(n))
            });
        }
        self.index = Some(index);
    }
}

/// The position of `k` among `names`: by pointer first (interned keys), then by text.
#[inline]
fn scan(names: &[Str], k: &str) -> Option<usize> {
    let p = k.as_ptr();
    names
        .iter()
        .position(|n| std::ptr::eq(n.as_ptr(), p) && n.len() == k.len())
        .or_else(|| names.iter().position(|n| **n == *k))
}

/// How many key tables cut down by [`Map::retain_non_null`] a thread remembers.
const COMPACTED_KEPT: usize = 16;

/// A key table cut down by [`Map::retain_non_null`]: the table it came from, which of its
/// entries went (bit `i` for entry `i`), and the table left.
type Compacted = (Arc<Keys>, u64, Arc<Keys>);

thread_local! {
    /// This thread's key tables cut down by [`Map::retain_non_null`], the last used first.
    static COMPACTED: std::cell::RefCell<Vec<Compacted>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The keys of objects of one shape, without their values (see [`Map::table`]).
pub(crate) struct KeyTable(Arc<Keys>);

/// An object: keys in insertion order.
#[derive(Clone, Default)]
pub struct Map {
    /// `None` for an object that never had a key.
    keys: Option<Arc<Keys>>,
    values: Vec<Value>,
}

/// Iterator over the entries of a [`Map`].
pub type Iter<'a> = std::iter::Zip<std::slice::Iter<'a, Str>, std::slice::Iter<'a, Value>>;
/// Iterator over the entries of a [`Map`], values mutable.
pub type IterMut<'a> = std::iter::Zip<std::slice::Iter<'a, Str>, std::slice::IterMut<'a, Value>>;
/// Owning iterator over the entries of a [`Map`].
pub type IntoIter = std::iter::Zip<std::vec::IntoIter<Str>, std::vec::IntoIter<Value>>;

impl Map {
    /// An empty object.
    pub fn new() -> Map {
        Map::default()
    }

    /// An empty object with room for `n` keys.
    pub fn with_capacity(n: usize) -> Map {
        Map {
            keys: (n > 0).then(|| Arc::new(Keys::with_capacity(n))),
            values: Vec::with_capacity(n),
        }
    }

    /// [`Map::with_capacity`] (the signature of `IndexMap`'s).
    pub fn with_capacity_and_hasher(n: usize, _: Hasher) -> Map {
        Map::with_capacity(n)
    }

    /// An object of keys known to be distinct and their values (as many).
    pub(crate) fn from_distinct(names: Vec<Str>, values: Vec<Value>) -> Map {
        debug_assert_eq!(names.len(), values.len());
        Map {
            keys: Some(Arc::new(Keys::from_distinct(names))),
            values,
        }
    }

    /// An object of keys and their values (as many) as read, in order: a key read again
    /// keeps its first place and takes its last value (as [`Map::insert`] one by one would
    /// make it), but keys are only compared once all are read, a table of distinct keys
    /// built at once.
    pub(crate) fn from_entries(names: Vec<Str>, values: Vec<Value>) -> Map {
        debug_assert_eq!(names.len(), values.len());
        let distinct = if names.len() <= LINEAR_MAX {
            // Interned keys of one text are one allocation: pointers first, then text.
            !names.iter().enumerate().any(|(i, a)| {
                names
                    .get(..i)
                    .is_some_and(|before| before.iter().any(|b| intern::same(a, b)))
            })
        } else {
            let mut seen: HashTable<u32> = HashTable::with_capacity(names.len());
            let mut distinct = true;
            for (i, n) in names.iter().enumerate() {
                let hash = key_hash(n);
                let eq = |&j: &u32| names.get(j as usize).is_some_and(|m| intern::same(m, n));
                if seen.find(hash, eq).is_some() {
                    distinct = false;
                    break;
                }
                seen.insert_unique(hash, i as u32, |&j| {
                    names.get(j as usize).map_or(0, |m| key_hash(m))
                });
            }
            distinct
        };
        if distinct {
            return Map::from_distinct(names, values);
        }
        let mut map = Map::with_capacity(names.len());
        for (k, v) in names.into_iter().zip(values) {
            map.insert(k, v);
        }
        map
    }

    /// An object of the keys read, `read[base..]` with their [`key_hash`] (taken out of
    /// `read`), and their values (as many), in order: a key read again keeps its first
    /// place and takes its last value (as [`Map::insert`] one by one would make it), but
    /// keys are only compared once all are read, with the hashes they were read with: an
    /// object of at most [`LINEAR_MAX`] keys compares a key with those before it only when
    /// a filter of their hashes says it may be one of them, a wider one builds its index
    /// (the one it keeps) as it goes.
    pub(crate) fn from_read(read: &mut Vec<(Str, u64)>, base: usize, values: Vec<Value>) -> Map {
        let entries = read.get(base..).unwrap_or_default();
        debug_assert_eq!(entries.len(), values.len());
        let n = entries.len();
        if n == 0 {
            return Map { keys: None, values };
        }
        let index = if n <= LINEAR_MAX {
            // 256 bits, one per value of the hash's top byte.
            let mut seen = [0u64; 4];
            let mut distinct = true;
            for (i, (k, hash)) in entries.iter().enumerate() {
                let top = (hash >> 56) as usize;
                let (word, bit) = (top >> 6, 1u64 << (top & 63));
                let Some(word) = seen.get_mut(word) else {
                    break;
                };
                if *word & bit != 0
                    && entries.get(..i).is_some_and(|before| {
                        before.iter().any(|(b, h)| h == hash && intern::same(b, k))
                    })
                {
                    distinct = false;
                    break;
                }
                *word |= bit;
            }
            distinct.then_some(None)
        } else {
            let mut index: HashTable<u32> = HashTable::with_capacity(n);
            let mut distinct = true;
            for (i, (k, hash)) in entries.iter().enumerate() {
                let eq = |&j: &u32| {
                    entries
                        .get(j as usize)
                        .is_some_and(|(m, _)| intern::same(m, k))
                };
                if index.find(*hash, eq).is_some() {
                    distinct = false;
                    break;
                }
                // Positions fit in u32: an object of more than 4 billion keys cannot be read.
                index.insert_unique(*hash, i as u32, |&j| {
                    entries.get(j as usize).map_or(0, |(_, h)| *h)
                });
            }
            distinct.then_some(Some(index))
        };
        match index {
            Some(index) => {
                let names: Vec<Str> = read.drain(base..).map(|(k, _)| k).collect();
                Map {
                    keys: Some(Arc::new(Keys { names, index })),
                    values,
                }
            }
            None => {
                let mut map = Map::with_capacity(n);
                for ((k, _), v) in read.drain(base..).zip(values) {
                    map.insert(k, v);
                }
                map
            }
        }
    }

    /// A key table of keys known to be distinct, for objects of these keys
    /// ([`Map::of_table`]) to share.
    pub(crate) fn table(names: Vec<Str>) -> KeyTable {
        KeyTable(Arc::new(Keys::from_distinct(names)))
    }

    /// An object of the keys of `table` (shared, not copied) and `values`, as many.
    pub(crate) fn of_table(table: &KeyTable, values: Vec<Value>) -> Map {
        debug_assert_eq!(table.0.names.len(), values.len());
        Map {
            keys: Some(table.0.clone()),
            values,
        }
    }

    /// An object with the keys of `shape` (shared, not copied) and `values`, as many as
    /// `shape` has keys.
    pub(crate) fn with_keys_of(shape: &Map, values: Vec<Value>) -> Map {
        debug_assert_eq!(shape.len(), values.len());
        Map {
            keys: shape.keys.clone(),
            values,
        }
    }

    /// An object with the keys of `shape` (shared, not copied) and `values`, or the values
    /// back unless there are as many as `shape` has keys. Objects of one shape built this
    /// way hold one key table between them.
    pub fn like(shape: &Map, values: Vec<Value>) -> Result<Map, Vec<Value>> {
        if shape.len() == values.len() {
            Ok(Map::with_keys_of(shape, values))
        } else {
            Err(values)
        }
    }

    /// Whether two objects share one key table (so have the same keys in the same order).
    pub fn same_keys(&self, other: &Map) -> bool {
        match (&self.keys, &other.keys) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn names(&self) -> &[Str] {
        self.keys.as_deref().map_or(&[], |k| &k.names)
    }

    /// The keys in order, as a slice.
    pub(crate) fn key_names(&self) -> &[Str] {
        self.names()
    }

    /// The keys, to add one to: keys shared with other objects are copied first, with room
    /// for as many keys as there is room for values (a `reserve` before a `merge`), so the
    /// keys that follow do not grow the copy again.
    fn keys_for_push(&mut self) -> &mut Keys {
        let room = self.values.capacity().max(self.values.len() + 4);
        let arc = self.keys.get_or_insert_with(Default::default);
        if Arc::get_mut(arc).is_none() {
            let mut names = Vec::with_capacity(room);
            names.extend(arc.names.iter().cloned());
            *arc = Arc::new(Keys {
                names,
                index: arc.index.clone(),
            });
        }
        Arc::make_mut(arc)
    }

    fn keys_mut(&mut self) -> &mut Keys {
        Arc::make_mut(self.keys.get_or_insert_with(Default::default))
    }

    /// The number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The position of a key.
    #[inline]
    pub fn get_index_of<Q: AsRef<str> + ?Sized>(&self, k: &Q) -> Option<usize> {
        self.keys.as_deref()?.find(k.as_ref())
    }

    /// The value of a key.
    #[inline]
    pub fn get<Q: AsRef<str> + ?Sized>(&self, k: &Q) -> Option<&Value> {
        let i = self.get_index_of(k)?;
        self.values.get(i)
    }

    /// The value of a key whose hash (see [`key_hash`]) is known.
    #[inline]
    pub fn get_hashed(&self, k: &str, hash: u64) -> Option<&Value> {
        let i = self.keys.as_deref()?.find_hashed(k, hash)?;
        self.values.get(i)
    }

    /// The value of a key whose hash is known, trying position `hint` first: a key found
    /// at another position leaves its position in `hint` for the next object of the same
    /// shape (the items of a list share their key table). A hint is only a guess: it is
    /// taken only when the key there is `k` itself (the same interned text), so a stale or
    /// foreign hint costs a comparison, never a wrong answer.
    ///
    /// The check of the hint is inlined into the caller; only a miss calls
    /// [`Map::get_missed`] (a hit then costs a few instructions and no call).
    #[inline(always)]
    pub fn get_hinted(
        &self,
        k: &str,
        hash: u64,
        hint: &std::sync::atomic::AtomicU32,
    ) -> Option<&Value> {
        use std::sync::atomic::Ordering::Relaxed;
        let keys = self.keys.as_deref()?;
        let guess = hint.load(Relaxed) as usize;
        if let (Some(n), Some(v)) = (keys.names.get(guess), self.values.get(guess)) {
            if std::ptr::eq(n.as_ptr(), k.as_ptr()) && n.len() == k.len() {
                return Some(v);
            }
        }
        self.get_missed(keys, k, hash, hint)
    }

    /// [`Map::get_hinted`] when the hint missed: the key looked up, its position left in
    /// `hint`.
    #[inline(never)]
    fn get_missed(
        &self,
        keys: &Keys,
        k: &str,
        hash: u64,
        hint: &std::sync::atomic::AtomicU32,
    ) -> Option<&Value> {
        use std::sync::atomic::Ordering::Relaxed;
        let i = keys.find_hashed(k, hash)?;
        if let Ok(at) = u32::try_from(i) {
            hint.store(at, Relaxed);
        }
        self.values.get(i)
    }

    /// The key and value of a key.
    pub fn get_key_value<Q: AsRef<str> + ?Sized>(&self, k: &Q) -> Option<(&Str, &Value)> {
        let i = self.get_index_of(k)?;
        self.get_index(i)
    }

    /// The value of a key, mutable.
    #[inline]
    pub fn get_mut<Q: AsRef<str> + ?Sized>(&mut self, k: &Q) -> Option<&mut Value> {
        let i = self.get_index_of(k)?;
        self.values.get_mut(i)
    }

    /// Whether the key is there.
    #[inline]
    pub fn contains_key<Q: AsRef<str> + ?Sized>(&self, k: &Q) -> bool {
        self.get_index_of(k).is_some()
    }

    /// The entry at a position.
    pub fn get_index(&self, i: usize) -> Option<(&Str, &Value)> {
        Some((self.names().get(i)?, self.values.get(i)?))
    }

    /// The entry at a position, its value mutable.
    pub fn get_index_mut(&mut self, i: usize) -> Option<(&Str, &mut Value)> {
        let k = self.keys.as_deref()?.names.get(i)?;
        Some((k, self.values.get_mut(i)?))
    }

    /// The first entry.
    pub fn first(&self) -> Option<(&Str, &Value)> {
        self.get_index(0)
    }

    /// The last entry.
    pub fn last(&self) -> Option<(&Str, &Value)> {
        self.get_index(self.len().checked_sub(1)?)
    }

    /// Sets the value of a key: a key already there keeps its place (and its old value is
    /// returned), a new one goes last.
    pub fn insert(&mut self, k: Str, v: Value) -> Option<Value> {
        match self.get_index_of(&*k) {
            Some(i) => self
                .values
                .get_mut(i)
                .map(|slot| std::mem::replace(slot, v)),
            None => {
                self.keys_for_push().push(k);
                self.values.push(v);
                None
            }
        }
    }

    /// [`Map::insert`], returning the position of the key too.
    pub fn insert_full(&mut self, k: Str, v: Value) -> (usize, Option<Value>) {
        match self.get_index_of(&*k) {
            Some(i) => (
                i,
                self.values
                    .get_mut(i)
                    .map(|slot| std::mem::replace(slot, v)),
            ),
            None => {
                self.keys_for_push().push(k);
                self.values.push(v);
                (self.values.len() - 1, None)
            }
        }
    }

    /// Removes a key, keeping the order of the others.
    pub fn shift_remove<Q: AsRef<str> + ?Sized>(&mut self, k: &Q) -> Option<Value> {
        let i = self.get_index_of(k)?;
        let keys = self.keys_mut();
        keys.names.remove(i);
        keys.reindex();
        Some(self.values.remove(i))
    }

    /// Removes a key, moving the last entry into its place.
    pub fn swap_remove<Q: AsRef<str> + ?Sized>(&mut self, k: &Q) -> Option<Value> {
        let i = self.get_index_of(k)?;
        let keys = self.keys_mut();
        keys.names.swap_remove(i);
        keys.reindex();
        Some(self.values.swap_remove(i))
    }

    /// Drops the entries whose value is null, in place (what `compact()` does to an object
    /// nothing else holds). The keys left are shared with every object of the same keys
    /// compacted the same way: a per-thread cache remembers the last key tables cut down
    /// ([`COMPACTED_KEPT`] of them, each by which of its entries were null), so compacting
    /// the positions of an order, built by one literal, copies no key and allocates nothing.
    pub(crate) fn retain_non_null(&mut self) {
        let Some(keys) = &self.keys else { return };
        let n = self.values.len();
        if n > 64 || keys.index.is_some() || keys.names.len() != n {
            self.retain(|_, v| !v.is_null());
            return;
        }
        let mut nulls = 0u64;
        for (i, v) in self.values.iter().enumerate() {
            if v.is_null() {
                nulls |= 1 << i;
            }
        }
        if nulls == 0 {
            return;
        }
        let cut = COMPACTED
            .try_with(|cache| {
                let mut cache = cache.borrow_mut();
                if let Some(i) = cache
                    .iter()
                    .position(|(from, mask, _)| *mask == nulls && Arc::ptr_eq(from, keys))
                {
                    let hit = cache.remove(i);
                    let cut = hit.2.clone();
                    cache.insert(0, hit);
                    return cut;
                }
                let names = keys
                    .names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| nulls & (1 << i) == 0)
                    .map(|(_, k)| k.clone())
                    .collect();
                let cut = Arc::new(Keys { names, index: None });
                cache.truncate(COMPACTED_KEPT - 1);
                // The table cut down is held with it, so no other table takes its address.
                cache.insert(0, (keys.clone(), nulls, cut.clone()));
                cut
            })
            .ok();
        let Some(cut) = cut else {
            self.retain(|_, v| !v.is_null());
            return;
        };
        self.values.retain(|v| !v.is_null());
        self.keys = if self.values.is_empty() {
            None
        } else {
            Some(cut)
        };
    }

    /// Keeps the entries for which `keep` is true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&Str, &mut Value) -> bool) {
        let names = match self.keys.as_deref() {
            Some(k) => &k.names,
            None => return,
        };
        // Which entries stay, written down only from the first that goes.
        let mut kept: Option<Vec<bool>> = None;
        for (i, (k, v)) in names.iter().zip(self.values.iter_mut()).enumerate() {
            let stays = keep(k, v);
            match &mut kept {
                Some(flags) => flags.push(stays),
                None if !stays => {
                    let mut flags = vec![true; i];
                    flags.push(false);
                    kept = Some(flags);
                }
                None => {}
            }
        }
        let Some(kept) = kept else { return };
        match self.keys.as_mut().and_then(Arc::get_mut) {
            Some(keys) => {
                let mut flags = kept.iter();
                keys.names.retain(|_| flags.next().copied().unwrap_or(true));
            }
            None => {
                // Shared keys are not copied whole to be cut down: the kept ones make new keys.
                let mut flags = kept.iter();
                let names = self
                    .names()
                    .iter()
                    .filter(|_| flags.next().copied().unwrap_or(true))
                    .cloned()
                    .collect();
                self.keys = Some(Arc::new(Keys { names, index: None }));
            }
        }
        self.keys_mut().reindex();
        let mut flags = kept.iter();
        self.values
            .retain(|_| flags.next().copied().unwrap_or(true));
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.keys = None;
        self.values.clear();
    }

    /// The entries in order.
    #[inline]
    pub fn iter(&self) -> Iter<'_> {
        self.names().iter().zip(self.values.iter())
    }

    /// The entries in order, values mutable.
    #[inline]
    pub fn iter_mut(&mut self) -> IterMut<'_> {
        let names: &[Str] = self.keys.as_deref().map_or(&[], |k| &k.names);
        names.iter().zip(self.values.iter_mut())
    }

    /// The keys in order.
    #[inline]
    pub fn keys(&self) -> std::slice::Iter<'_, Str> {
        self.names().iter()
    }

    /// The values in order.
    #[inline]
    pub fn values(&self) -> std::slice::Iter<'_, Value> {
        self.values.iter()
    }

    /// The values in order, mutable.
    #[inline]
    pub fn values_mut(&mut self) -> std::slice::IterMut<'_, Value> {
        self.values.iter_mut()
    }

    /// The values, in order.
    pub fn into_values(self) -> std::vec::IntoIter<Value> {
        self.values.into_iter()
    }

    /// The keys, in order.
    pub fn into_keys(self) -> std::vec::IntoIter<Str> {
        self.into_iter()
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Room for `n` more entries.
    pub fn reserve(&mut self, n: usize) {
        self.values.reserve(n);
        // Shared keys are copied (with this room) only when a key is added.
        if let Some(keys) = self.keys.as_mut().and_then(Arc::get_mut) {
            keys.names.reserve(n);
        }
    }
}

impl IntoIterator for Map {
    type Item = (Str, Value);
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        let names = match self.keys {
            None => Vec::new(),
            Some(k) => Arc::try_unwrap(k).map_or_else(|k| k.names.clone(), |k| k.names),
        };
        names.into_iter().zip(self.values)
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a Str, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut Map {
    type Item = (&'a Str, &'a mut Value);
    type IntoIter = IterMut<'a>;

    fn into_iter(self) -> IterMut<'a> {
        self.iter_mut()
    }
}

impl Extend<(Str, Value)> for Map {
    fn extend<I: IntoIterator<Item = (Str, Value)>>(&mut self, items: I) {
        for (k, v) in items {
            self.insert(k, v);
        }
    }
}

impl FromIterator<(Str, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (Str, Value)>>(items: I) -> Map {
        let items = items.into_iter();
        let mut map = Map::with_capacity(items.size_hint().0);
        map.extend(items);
        map
    }
}

impl<const N: usize> From<[(Str, Value); N]> for Map {
    fn from(items: [(Str, Value); N]) -> Map {
        items.into_iter().collect()
    }
}

impl PartialEq for Map {
    /// The same keys with equal values, in any order (as `IndexMap`'s).
    fn eq(&self, other: &Map) -> bool {
        if self.len() != other.len() {
            return false;
        }
        if self.same_keys(other) {
            return self.values.iter().zip(&other.values).all(|(a, b)| a == b);
        }
        self.iter()
            .all(|(k, v)| other.get(&**k).is_some_and(|w| v == w))
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Map {
    type Output = Value;

    /// The value of a key; panics if it is not there (as `IndexMap`'s).
    fn index(&self, k: &str) -> &Value {
        match self.get(k) {
            Some(v) => v,
            None => panic!("no key {k:?} in the object"),
        }
    }
}

impl Serialize for Map {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(&**k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Map {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Map, D::Error> {
        struct MapVisitor;
        impl<'de> serde::de::Visitor<'de> for MapVisitor {
            type Value = Map;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, access: A) -> Result<Map, A::Error> {
                super::read_map_alone(access)
            }
        }
        d.deserialize_map(MapVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use proptest::prelude::*;

    proptest! {
        /// Dropping the null entries in place gives the entries left in order, found by
        /// key, and objects of one key table with the same nulls share the table left.
        #[test]
        fn retain_non_null_keeps_the_rest_and_shares_its_keys(
            n in 0usize..70,
            nulls in proptest::collection::vec(any::<bool>(), 70),
            indexed in any::<bool>(),
        ) {
            let n = if indexed { n.max(LINEAR_MAX + 1) } else { n };
            let names: Vec<Str> = (0..n).map(|i| key(u8::try_from(i).unwrap_or(0) + 1)).collect();
            let table = Map::table(names.clone());
            let values = |base: i64| -> Vec<Value> {
                (0..n)
                    .map(|i| if nulls[i] { Value::Null } else { Value::Int(base + i as i64) })
                    .collect()
            };
            let mut a = Map::of_table(&table, values(0));
            let mut b = Map::of_table(&table, values(100));
            a.retain_non_null();
            b.retain_non_null();
            // Another object of the table, only its first entry null, compacted in between.
            let only_first = |i: usize| i == 0;
            let mut d = Map::of_table(
                &table,
                (0..n)
                    .map(|i| if only_first(i) { Value::Null } else { Value::Int(200 + i as i64) })
                    .collect(),
            );
            d.retain_non_null();
            let want_d: Vec<(String, i64)> = (1..n).map(|i| (names[i].to_string(), 200 + i as i64)).collect();
            let got_d: Vec<(String, i64)> =
                d.iter().map(|(k, v)| (k.to_string(), v.as_i64().unwrap_or(-1))).collect();
            prop_assert_eq!(got_d, want_d);
            for (map, base) in [(&a, 0i64), (&b, 100)] {
                let want: Vec<(String, i64)> = (0..n)
                    .filter(|&i| !nulls[i])
                    .map(|i| (names[i].to_string(), base + i as i64))
                    .collect();
                let got: Vec<(String, i64)> = map
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_i64().unwrap_or(-1)))
                    .collect();
                prop_assert_eq!(&got, &want);
                for (k, v) in &want {
                    prop_assert_eq!(map.get(k.as_str()).and_then(Value::as_i64), Some(*v));
                }
                for i in (0..n).filter(|&i| nulls[i]) {
                    prop_assert!(map.get(&*names[i]).is_none());
                }
            }
            if !a.is_empty() && n <= 64 && n <= LINEAR_MAX {
                prop_assert!(a.same_keys(&b));
            }
            // A key added afterwards goes to this object alone.
            let mut c = a.clone();
            c.insert(intern::key("added"), Value::Int(-7));
            prop_assert_eq!(c.len(), a.len() + 1);
            prop_assert!(a.get("added").is_none() && b.get("added").is_none());
            prop_assert_eq!(c.get("added").and_then(Value::as_i64), Some(-7));
        }
    }

    /// Keys: enough to pass [`LINEAR_MAX`]; even ones interned, odd ones not (so they are
    /// found by text).
    fn key(i: u8) -> Str {
        let text = format!("key{i}");
        if i.is_multiple_of(2) {
            intern::key(&text)
        } else {
            Str::from(text.as_str())
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, i64),
        ShiftRemove(u8),
        SwapRemove(u8),
        RetainEven,
        /// Continue with a copy (sharing the keys) and drop the original.
        Fork,
        /// Continue with an object of the same keys and new values.
        Reshape(i64),
        /// Insert 36 keys from the given one on (past [`LINEAR_MAX`], so indexed).
        Grow(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..40, any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u8..40).prop_map(Op::ShiftRemove),
            1 => (0u8..40).prop_map(Op::SwapRemove),
            1 => Just(Op::RetainEven),
            1 => Just(Op::Fork),
            1 => any::<i64>().prop_map(Op::Reshape),
            1 => (0u8..40).prop_map(Op::Grow),
        ]
    }

    thread_local! {
        /// Hints of key lookups, kept from one object checked to the next.
        static HINTS: [std::sync::atomic::AtomicU32; 40] =
            std::array::from_fn(|_| std::sync::atomic::AtomicU32::new(0));
    }

    fn check(map: &Map, model: &IndexMap<String, i64>) {
        assert_eq!(map.len(), model.len());
        assert_eq!(map.is_empty(), model.is_empty());
        let got: Vec<(String, Value)> = map
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let want: Vec<(String, Value)> = model
            .iter()
            .map(|(k, v)| (k.clone(), Value::Int(*v)))
            .collect();
        assert_eq!(got, want);
        for i in 0..40u8 {
            let k = key(i);
            let want = model.get(&*k).map(|v| Value::Int(*v));
            assert_eq!(map.get(&*k).cloned(), want);
            // A key of the same text in another allocation is found all the same.
            let text = String::from(&*k);
            assert_eq!(map.get(text.as_str()).cloned(), want);
            assert_eq!(map.get_hashed(&text, key_hash(&text)).cloned(), want);
            // With a hint left by earlier objects (other shapes, other positions) and
            // with a wrong one: the same answer.
            HINTS.with(|hints| {
                let hint = &hints[usize::from(i)];
                assert_eq!(map.get_hinted(&k, key_hash(&k), hint).cloned(), want);
                assert_eq!(map.get_hinted(&text, key_hash(&text), hint).cloned(), want);
                let wrong = std::sync::atomic::AtomicU32::new(u32::from(i) * 7 % 45);
                assert_eq!(map.get_hinted(&k, key_hash(&k), &wrong).cloned(), want);
            });
            assert_eq!(map.get_index_of(&*k), model.get_index_of(&*k));
        }
        assert_eq!(
            serde_json::to_string(map).unwrap(),
            serde_json::to_string(model).unwrap()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn behaves_as_an_index_map(ops in proptest::collection::vec(op(), 0..120)) {
            let mut map = Map::new();
            let mut model: IndexMap<String, i64> = IndexMap::new();
            // Copies taken along the way must not see later changes.
            let mut copies: Vec<(Map, IndexMap<String, i64>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let old = map.insert(key(k), Value::Int(v));
                        let want = model.insert(key(k).to_string(), v);
                        prop_assert_eq!(old, want.map(Value::Int));
                    }
                    Op::ShiftRemove(k) => {
                        let got = map.shift_remove(&*key(k));
                        prop_assert_eq!(got, model.shift_remove(&*key(k)).map(Value::Int));
                    }
                    Op::SwapRemove(k) => {
                        let got = map.swap_remove(&*key(k));
                        prop_assert_eq!(got, model.swap_remove(&*key(k)).map(Value::Int));
                    }
                    Op::Grow(from) => {
                        for i in 0..36u8 {
                            let k = (from + i) % 40;
                            map.insert(key(k), Value::Int(i64::from(i)));
                            model.insert(key(k).to_string(), i64::from(i));
                        }
                    }
                    Op::RetainEven => {
                        map.retain(|_, v| v.as_i64().is_some_and(|i| i.rem_euclid(2) == 0));
                        model.retain(|_, v| v.rem_euclid(2) == 0);
                    }
                    Op::Fork => {
                        copies.push((map.clone(), model.clone()));
                        map = map.clone();
                    }
                    Op::Reshape(v) => {
                        copies.push((map.clone(), model.clone()));
                        let values = vec![Value::Int(v); map.len()];
                        map = Map::with_keys_of(&map, values);
                        prop_assert!(map.same_keys(&copies[copies.len() - 1].0) || map.is_empty());
                        model.values_mut().for_each(|x| *x = v);
                    }
                }
                check(&map, &model);
            }
            for (copy, model) in &copies {
                check(copy, model);
            }
            // Equality ignores order, as an `IndexMap`'s.
            let reversed: Map = map.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert!(reversed == map);
            prop_assert_eq!(Value::object(reversed.clone()), Value::object(map.clone()));
            if let Some((k, _)) = map.first() {
                let mut other = reversed.clone();
                other.insert(k.clone(), Value::str("different"));
                prop_assert!(other != map);
                let mut shorter = reversed;
                shorter.shift_remove(&**k);
                prop_assert!(shorter != map);
            }
            // Built at once from distinct keys: the same object.
            let (names, values): (Vec<Str>, Vec<Value>) =
                map.iter().map(|(k, v)| (k.clone(), v.clone())).unzip();
            let built = Map::from_distinct(names, values);
            check(&built, &model);
            let owned: Vec<(Str, Value)> = map.into_iter().collect();
            prop_assert_eq!(owned.len(), model.len());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// An object built at once from the keys read (with their hashes, duplicates among
        /// them, after the entries of other objects on the stack) is the one inserting them
        /// one by one makes: the filter of hashes of a narrow object and the index of a
        /// wide one find every duplicate, and the index kept finds every key.
        #[test]
        fn read_at_once_as_inserted_one_by_one(
            below in proptest::collection::vec(0u8..40, 0..4),
            keys in proptest::collection::vec(0u8..40, 0..48),
        ) {
            let mut read: Vec<(Str, u64)> =
                below.iter().map(|&k| (key(k), key_hash(&key(k)))).collect();
            let base = read.len();
            let mut model: IndexMap<String, i64> = IndexMap::new();
            let mut values = Vec::new();
            for (v, &k) in keys.iter().enumerate() {
                read.push((key(k), key_hash(&key(k))));
                values.push(Value::Int(v as i64));
                model.insert(key(k).to_string(), v as i64);
            }
            let map = Map::from_read(&mut read, base, values);
            check(&map, &model);
            prop_assert_eq!(read.len(), base);
        }
    }

    #[test]
    fn narrow_objects_read_with_colliding_filters_keep_distinct_keys() {
        // Keys whose hashes share their top byte (the filter's bit): distinct, compared by
        // text, and a duplicate among them found.
        let mut by_top: std::collections::HashMap<u64, Vec<Str>> = Default::default();
        for i in 0..2000 {
            let k: Str = Str::from(format!("c{i}").as_str());
            by_top.entry(key_hash(&k) >> 56).or_default().push(k);
        }
        let same: Vec<Str> = by_top.into_values().max_by_key(Vec::len).unwrap();
        assert!(same.len() >= 3);
        let mut read: Vec<(Str, u64)> = same.iter().map(|k| (k.clone(), key_hash(k))).collect();
        let n = read.len().min(LINEAR_MAX);
        read.truncate(n);
        let values: Vec<Value> = (0..n as i64).map(Value::Int).collect();
        let map = Map::from_read(&mut read.clone(), 0, values.clone());
        assert_eq!(map.len(), n);
        // The first key again, in another allocation: a duplicate.
        read.push((Str::from(&*same[0]), key_hash(&same[0])));
        let mut more = values;
        more.push(Value::Int(99));
        let map = Map::from_read(&mut read, 0, more);
        assert_eq!(map.len(), n);
        assert_eq!(map.get(&*same[0]), Some(&Value::Int(99)));
        assert_eq!(map.get_index_of(&*same[0]), Some(0));
    }

    #[test]
    fn objects_of_one_shape_share_their_keys_until_one_changes() {
        // More keys than are scanned: the hash index is shared too.
        let mut a = Map::new();
        for i in 0..36 {
            a.insert(key(i), Value::Int(i64::from(i)));
        }
        let mut b = Map::with_keys_of(&a, vec![Value::Null; 36]);
        assert!(a.same_keys(&b));
        // Values change without copying the keys.
        *b.get_mut("key3").unwrap() = Value::Int(33);
        assert!(a.same_keys(&b));
        assert_eq!(a.get("key3"), Some(&Value::Int(3)));
        // A new key copies them.
        b.insert(key(38), Value::Int(38));
        assert!(!a.same_keys(&b));
        assert_eq!(a.len(), 36);
        assert_eq!(a.get("key38"), None);
        assert_eq!(b.get("key38"), Some(&Value::Int(38)));
        assert_eq!(b.get("key35"), Some(&Value::Null));
        assert_eq!(b.get_index_of("key38"), Some(36));
    }
}
