//! The JSON-like values that rules read and produce.
//!
//! Numbers are exact: integers are `i64`, everything else is a [`Decimal`], so money
//! arithmetic never drifts (`19.99 * 100` is `1999`). A decimal with no fractional part is
//! normalised to an integer, so the results of arithmetic compare and serialize the way a
//! reader expects.
//!
//! A [`Value::Ref`] stands for a value that is not known yet: a field of an entity that an
//! earlier effect of the same plan creates. It is resolved by whoever applies the plan.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A shared immutable string: one word (the length is stored with the text), so a [`Value`]
/// is two words and an evaluation's results are returned in registers.
pub type Str = arcstr::ArcStr;

/// The hasher of object maps: fast and deterministic (iteration order is insertion order
/// regardless of the hasher).
pub type Hasher = std::hash::BuildHasherDefault<rustc_hash::FxHasher>;

mod map;
mod shape;
pub use map::{key_hash, Map};

/// Object keys, interned: the keys rules name (`order.items`, `{quantity: …}`) and the keys
/// of the documents they read share one allocation per distinct text, so a key read by a
/// rule is found by comparing pointers, and a document of 200 items does not allocate its
/// keys 200 times.
///
/// The texts written in rules (`"variant"`, `"#"`) are interned the same way when they are
/// compiled. An interned text is kept for the life of the process and is static
/// ([`arcstr::ArcStr::leak`]): copying and dropping it touch no reference count, so the
/// literals an evaluation reads, and the keys of the objects it builds, cost no locked
/// instruction.
///
/// Interning is only a fast path: a key that is not interned (too long, looks like an id,
/// or the table is full) is an ordinary string and compares by its text, so nothing but
/// speed depends on it. The table is bounded ([`intern::MAX_KEYS`] keys of at most
/// [`intern::MAX_LEN`] bytes), so keys made of ids cannot make it grow without end.
pub mod intern {
    use super::Str;
    use hashbrown::HashTable;
    use std::cell::RefCell;
    use std::sync::Mutex;

    /// The most keys interned (per process, and per thread's cache).
    pub const MAX_KEYS: usize = 16_384;
    /// The longest key interned, in bytes.
    pub const MAX_LEN: usize = 48;

    /// Interned keys by their [`key_hash`](super::key_hash) (the hash the maps use, so a
    /// key read is hashed once for its interning and its object's table).
    type Set = HashTable<Str>;

    static GLOBAL: Mutex<Set> = Mutex::new(HashTable::new());

    thread_local! {
        /// This thread's view of the table, so that interning takes no lock once warm.
        static LOCAL: RefCell<Set> = const { RefCell::new(HashTable::new()) };
    }

    /// Whether a key is worth interning: short, and not an id (ids as keys — payments by
    /// id — are many and each met once).
    #[inline]
    pub(crate) fn worth(s: &str) -> bool {
        s.len() <= MAX_LEN && !s.as_bytes().first().is_some_and(u8::is_ascii_digit)
    }

    /// The shared string of a key.
    pub fn key(s: &str) -> Str {
        key_hashed(s, super::key_hash(s))
    }

    /// [`key`] of a key whose [`key_hash`](super::key_hash) is `hash`.
    pub(crate) fn key_hashed(s: &str, hash: u64) -> Str {
        if !worth(s) {
            return Str::from(s);
        }
        LOCAL
            .try_with(|local| {
                if let Some(k) = local.borrow().find(hash, |k| same_text(k, s)) {
                    return k.clone();
                }
                let k = {
                    let mut global = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
                    match global.find(hash, |k| same_text(k, s)) {
                        Some(k) => k.clone(),
                        None if global.len() < MAX_KEYS => {
                            let k: Str = Str::from(s);
                            // Kept for the process's life: static, so its copies touch
                            // no reference count.
                            let _ = k.leak();
                            global.insert_unique(hash, k.clone(), |k| super::key_hash(k));
                            k
                        }
                        None => return Str::from(s),
                    }
                };
                let mut local = local.borrow_mut();
                if local.len() < MAX_KEYS {
                    local.insert_unique(hash, k.clone(), |k| super::key_hash(k));
                }
                k
            })
            .unwrap_or_else(|_| Str::from(s))
    }

    /// Whether two short texts are equal, compared inline a word at a time (keys are
    /// short: a call to `memcmp` costs more than the comparison).
    #[inline]
    pub(crate) fn same_text(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let n = a.len();
        if n != b.len() {
            return false;
        }
        if n >= 8 {
            if n > 32 {
                return a == b;
            }
            let word = |s: &[u8], i: usize| {
                s.get(i..i + 8)
                    .and_then(|c| <[u8; 8]>::try_from(c).ok())
                    .map(u64::from_ne_bytes)
            };
            // Whole words, then the last eight bytes (overlapping the word before).
            let mut i = 0;
            while i + 8 < n {
                if word(a, i) != word(b, i) {
                    return false;
                }
                i += 8;
            }
            word(a, n - 8) == word(b, n - 8)
        } else if n >= 4 {
            let word = |s: &[u8], i: usize| {
                s.get(i..i + 4)
                    .and_then(|c| <[u8; 4]>::try_from(c).ok())
                    .map(u32::from_ne_bytes)
            };
            word(a, 0) == word(b, 0) && word(a, n - 4) == word(b, n - 4)
        } else {
            a.iter().zip(b).all(|(x, y)| x == y)
        }
    }

    /// Whether two keys are equal: the same allocation, or the same text.
    #[inline]
    pub fn same(a: &str, b: &str) -> bool {
        (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
    }
}

/// Whether two texts are equal: the same shared text, or the same bytes compared inline
/// (texts compared by rules are short: a call to `memcmp` costs more than the comparison).
#[inline]
pub(crate) fn same_str(a: &Str, b: &Str) -> bool {
    Str::ptr_eq(a, b) || intern::same_text(a, b)
}

/// A boolean as a [`Value`] holds it: a whole word, so that every payload of a value is one
/// word at the same place (see [`Value`]'s layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u64)]
pub enum Truth {
    /// `false`.
    False = 0,
    /// `true`.
    True = 1,
}

impl Truth {
    /// As a `bool`.
    #[inline]
    pub const fn get(self) -> bool {
        matches!(self, Truth::True)
    }
}

impl From<bool> for Truth {
    #[inline]
    fn from(b: bool) -> Truth {
        if b {
            Truth::True
        } else {
            Truth::False
        }
    }
}

impl From<Truth> for bool {
    #[inline]
    fn from(t: Truth) -> bool {
        t.get()
    }
}

impl fmt::Display for Truth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.get(), f)
    }
}

/// A value of the expression language.
///
/// Its layout is two words, a word-sized tag and a payload of one word (a boolean is a
/// [`Truth`], texts are thin, the rest is shared): the compiler then handles a value as a
/// pair of scalars, moved in two registers and stored as two words. A value with a tag of
/// one byte and a boolean at its second byte was copied as one 16-byte block loaded right
/// after it was stored in pieces (the processor cannot forward those stores to the load, and
/// waits for them): about a sixth of the evaluation's time went to such copies.
#[derive(Clone, Default)]
#[repr(u64)]
pub enum Value {
    /// The absence of a value. Missing keys and indexes read as null.
    #[default]
    Null,
    /// `true` or `false` (see [`Value::bool`], [`Value::as_bool`]).
    Bool(Truth),
    /// A whole number.
    Int(i64),
    /// An exact decimal number with a fractional part.
    Dec(Arc<Decimal>),
    /// A string.
    Str(Str),
    /// An ordered list.
    Array(Arc<Vec<Value>>),
    /// A map from string keys to values, in insertion order.
    Object(Arc<Map>),
    /// A value that becomes known only when the plan is applied.
    Ref(Arc<PendingRef>),
}

// A value is two words (its tag and one word of payload: texts are thin, decimals are
// shared), and so are an optional value and an evaluation's result (`Result<Value, Fail>`).
const _: () = assert!(std::mem::size_of::<Value>() == 16);
const _: () = assert!(std::mem::size_of::<Option<Value>>() == 16);
const _: () = assert!(std::mem::size_of::<Result<Value, Box<()>>>() == 16);

/// A reference to (a part of) the result of an earlier effect of the same plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PendingRef {
    /// The plan-unique name of the effect (its `as`).
    pub name: Str,
    /// Keys and indexes into the effect's result.
    pub path: Vec<PathKey>,
    /// What is already known of the result (e.g. the body that was sent), if anything.
    pub known: Option<Value>,
}

/// One step of a [`PendingRef`] path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKey {
    /// An object key.
    Key(Str),
    /// An array index.
    Index(i64),
}

impl PendingRef {
    /// The textual form used in plans: `name.key.0.key`.
    pub fn display_path(&self) -> String {
        let mut out = self.name.to_string();
        for key in &self.path {
            out.push('.');
            match key {
                PathKey::Key(k) => out.push_str(k),
                PathKey::Index(i) => out.push_str(&i.to_string()),
            }
        }
        out
    }

    /// Parses the textual form `name.key.0.key`.
    pub fn parse(text: &str) -> Option<PendingRef> {
        let mut parts = text.split('.');
        let name = parts.next().filter(|n| !n.is_empty())?;
        let path = parts
            .map(|p| match p.parse::<i64>() {
                Ok(i) => PathKey::Index(i),
                Err(_) => PathKey::Key(p.into()),
            })
            .collect();
        Some(PendingRef {
            name: name.into(),
            path,
            known: None,
        })
    }
}

impl Value {
    /// `true` or `false`.
    #[inline]
    pub const fn bool(b: bool) -> Value {
        Value::Bool(if b { Truth::True } else { Truth::False })
    }

    /// The boolean inside, if this is a boolean.
    #[inline]
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(b.get()),
            _ => None,
        }
    }

    /// A string value.
    pub fn str(s: &str) -> Value {
        Value::Str(s.into())
    }

    /// An array value.
    pub fn array(items: Vec<Value>) -> Value {
        Value::Array(Arc::new(items))
    }

    /// An object value.
    pub fn object(map: Map) -> Value {
        Value::Object(Arc::new(map))
    }

    /// An object from key/value pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        let mut map = Map::default();
        for (k, v) in pairs {
            map.insert(k.into(), v);
        }
        Value::object(map)
    }

    /// A number from a decimal, normalised to an integer when it has no fractional part.
    pub fn number(d: Decimal) -> Value {
        // Money is a few digits with a scale of up to a few places: whether it is whole is
        // a remainder of its mantissa, without the decimal arithmetic of `fract()`.
        let scale = d.scale();
        if let (Ok(m), true) = (i64::try_from(d.mantissa()), scale <= 18) {
            let unit = 10i64.pow(scale);
            if m % unit == 0 {
                return Value::Int(m / unit);
            }
            return Value::Dec(Arc::new(d.normalize()));
        }
        Value::number_slow(d)
    }

    /// [`Value::number`] of any decimal.
    fn number_slow(d: Decimal) -> Value {
        if d.fract().is_zero() {
            if let Some(i) = d.to_i64() {
                return Value::Int(i);
            }
        }
        Value::Dec(Arc::new(d.normalize()))
    }

    /// The name of this value's type, as error messages and `type()` show it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) | Value::Dec(_) => "number",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Ref(_) => "pending result",
        }
    }

    /// Whether this value is null.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Truthiness: only `null` and `false` are false.
    pub fn truthy(&self) -> bool {
        !matches!(self, Value::Null | Value::Bool(Truth::False))
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The array inside, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The object inside, if this is an object.
    pub fn as_object(&self) -> Option<&Map> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The number as a decimal, if this is a number.
    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Int(i) => Some(Decimal::from(*i)),
            Value::Dec(d) => Some(**d),
            _ => None,
        }
    }

    /// The number as an `i64`, if it is a whole number.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Dec(d) if d.fract().is_zero() => d.to_i64(),
            _ => None,
        }
    }

    /// Reads a key of an object; anything else (or a missing key) reads as null.
    pub fn get(&self, key: &str) -> Value {
        match self {
            Value::Object(o) => o.get(key).cloned().unwrap_or(Value::Null),
            Value::Ref(r) => r.field(PathKey::Key(key.into())),
            _ => Value::Null,
        }
    }

    /// A borrowed view of a key of an object.
    pub fn get_ref(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(o) => o.get(key),
            _ => None,
        }
    }

    /// Reads an index of an array (negative counts from the end); out of range is null.
    pub fn index(&self, i: i64) -> Value {
        match self {
            Value::Array(a) => index_of(a.len(), i)
                .and_then(|i| a.get(i).cloned())
                .unwrap_or(Value::Null),
            Value::Ref(r) => r.field(PathKey::Index(i)),
            _ => Value::Null,
        }
    }

    /// Renders the value as text the way `string()` and templates show it: strings
    /// unquoted, numbers in plain notation, null as the empty string, the rest as JSON.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Dec(d) => d.normalize().to_string(),
            Value::Str(s) => String::from(&**s),
            other => other.to_json(),
        }
    }

    /// Compact JSON text of the value.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("<{e}>"))
    }

    /// Compact JSON text of the value if it takes at most `max` bytes; `None` (having
    /// written at most `max` bytes) if it would be longer. Lists and objects share their
    /// parts, so a small value in memory can stand for an enormous text: this is how to
    /// write one without risking that.
    pub fn to_json_within(&self, max: usize) -> Option<String> {
        let mut out = Bounded {
            buf: Vec::new(),
            max,
        };
        serde_json::to_writer(&mut out, self).ok()?;
        String::from_utf8(out.buf).ok()
    }

    /// The first `max` bytes (at most) of the value's JSON text, cut at a character
    /// boundary, and whether that is the whole text.
    pub(crate) fn json_prefix(&self, max: usize) -> (String, bool) {
        let mut out = Bounded {
            buf: Vec::new(),
            max,
        };
        let complete = serde_json::to_writer(&mut out, self).is_ok();
        let text = match String::from_utf8(out.buf) {
            Ok(t) => t,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).unwrap_or_default()
            }
        };
        (text, complete)
    }

    /// [`Value::to_text`] if the text takes at most `max` bytes, `None` otherwise (without
    /// building more than `max` bytes).
    pub fn to_text_within(&self, max: usize) -> Option<String> {
        match self {
            Value::Str(s) => (s.len() <= max).then(|| s.to_string()),
            Value::Array(_) | Value::Object(_) | Value::Ref(_) => self.to_json_within(max),
            other => Some(other.to_text()).filter(|t| t.len() <= max),
        }
    }

    /// Whether lists, objects and the known bodies of pending results nest more than `max`
    /// levels deep. Walks without recursion, each shared part once per depth it is met at
    /// (so a list that shares its parts is cheap to check).
    pub fn deeper_than(&self, max: usize) -> bool {
        fn container(v: &Value) -> Option<usize> {
            match v {
                Value::Array(a) => Some(Arc::as_ptr(a) as *const () as usize),
                Value::Object(o) => Some(Arc::as_ptr(o) as *const () as usize),
                Value::Ref(r) if r.known.is_some() => Some(Arc::as_ptr(r) as *const () as usize),
                _ => None,
            }
        }
        if container(self).is_none() {
            return false;
        }
        // Most values are small trees: walk them plainly, and only when that takes more than
        // a few thousand steps (a value that shares its parts may stand for far more) walk
        // again remembering what was seen.
        let mut steps = 4096u32;
        if let Some(deeper) = deeper_plain(self, 1, max, &mut steps) {
            return deeper;
        }
        // The deepest level each container was walked from: met again no deeper, it has
        // nothing new to show.
        let mut seen: std::collections::HashMap<usize, usize, Hasher> =
            std::collections::HashMap::default();
        let mut stack: Vec<(&Value, usize)> = vec![(self, 1)];
        while let Some((v, depth)) = stack.pop() {
            let Some(ptr) = container(v) else { continue };
            if depth > max {
                return true;
            }
            match seen.get(&ptr) {
                Some(&d) if d >= depth => continue,
                _ => {
                    seen.insert(ptr, depth);
                }
            }
            match v {
                Value::Array(a) => stack.extend(a.iter().map(|x| (x, depth + 1))),
                Value::Object(o) => stack.extend(o.values().map(|x| (x, depth + 1))),
                Value::Ref(r) => stack.extend(r.known.iter().map(|x| (x, depth + 1))),
                _ => {}
            }
        }
        false
    }

    /// [`Value::weight_within`] with no cap and [`Value::deeper_than`]`(max)` of a list or
    /// object, found in one walk (a body named with `as` is both bound and charged).
    /// `None` for any other value, or once the walk takes more than a few thousand steps
    /// (a value that shares its parts may stand for far more): the caller then asks each
    /// on its own. When the value is deeper than `max` the weight is not finished.
    pub(crate) fn weight_and_depth(&self, max: usize) -> Option<(u64, bool)> {
        if !matches!(self, Value::Array(_) | Value::Object(_)) {
            return None;
        }
        let mut steps = 4096u32;
        let mut total = 0u64;
        let deeper = weigh_plain(self, 1, max, &mut steps, &mut total)?;
        Some((total, deeper))
    }

    /// About how many bytes the value takes written out as JSON (string escapes aside),
    /// counting shared parts as often as they appear; the walk stops as soon as the count
    /// passes `cap`, so the result is only exact below it.
    pub fn weight_within(&self, cap: u64) -> u64 {
        let mut total = 0u64;
        self.add_weight(cap, &mut total);
        total
    }

    fn add_weight(&self, cap: u64, total: &mut u64) {
        match self {
            Value::Array(a) => {
                *total += 2 + a.len() as u64;
                for v in a.iter() {
                    if *total > cap {
                        return;
                    }
                    match v.scalar_weight() {
                        Some(w) => *total += w,
                        None => v.add_weight(cap, total),
                    }
                }
            }
            Value::Object(o) => {
                *total += 2;
                for (k, v) in o.iter() {
                    if *total > cap {
                        return;
                    }
                    *total += k.len() as u64 + 4;
                    match v.scalar_weight() {
                        Some(w) => *total += w,
                        None => v.add_weight(cap, total),
                    }
                }
            }
            other => *total += other.scalar_weight().unwrap_or(0),
        }
    }

    /// The weight of a value that is not a list or object (those are walked).
    #[inline]
    fn scalar_weight(&self) -> Option<u64> {
        match self {
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Dec(_) => Some(8),
            Value::Str(s) => Some(s.len() as u64 + 2),
            Value::Ref(r) => Some(16 + r.name.len() as u64 + 8 * r.path.len() as u64),
            Value::Array(_) | Value::Object(_) => None,
        }
    }

    /// Deep equality, numbers compared by value (`1 == 1.0`).
    pub fn equals(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Int(_) | Value::Dec(_), Value::Int(_) | Value::Dec(_)) => {
                self.as_decimal() == other.as_decimal()
            }
            (Value::Str(a), Value::Str(b)) => same_str(a, b),
            // The same shared list or object is equal to itself without a look inside (a
            // list that shares its parts can stand for billions of items).
            (Value::Array(a), Value::Array(b)) => {
                Arc::ptr_eq(a, b)
                    || (a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.equals(y)))
            }
            (Value::Object(a), Value::Object(b)) => {
                // Objects sharing their keys compare value by value, in order.
                Arc::ptr_eq(a, b) || **a == **b
            }
            (Value::Ref(a), Value::Ref(b)) => a.name == b.name && a.path == b.path,
            _ => false,
        }
    }

    /// A total order over all values, used for sorting: null < booleans < numbers <
    /// strings < arrays < objects < pending results.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        fn rank(v: &Value) -> u8 {
            match v {
                Value::Null => 0,
                Value::Bool(_) => 1,
                Value::Int(_) | Value::Dec(_) => 2,
                Value::Str(_) => 3,
                Value::Array(_) => 4,
                Value::Object(_) => 5,
                Value::Ref(_) => 6,
            }
        }
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Int(_) | Value::Dec(_), Value::Int(_) | Value::Dec(_)) => {
                self.as_decimal().cmp(&other.as_decimal())
            }
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => {
                for (x, y) in a.iter().zip(b.iter()) {
                    let o = x.total_cmp(y);
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                a.len().cmp(&b.len())
            }
            (Value::Object(a), Value::Object(b)) => a.len().cmp(&b.len()).then_with(|| {
                for ((ka, va), (kb, vb)) in a.iter().zip(b.iter()) {
                    let o = ka.cmp(kb).then_with(|| va.total_cmp(vb));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            }),
            (Value::Ref(a), Value::Ref(b)) => a.display_path().cmp(&b.display_path()),
            _ => rank(self).cmp(&rank(other)),
        }
    }

    /// Converts a `serde_json::Value`.
    pub fn from_json(v: &serde_json::Value) -> Value {
        Value::from_json_like(v, None)
    }

    /// [`Value::from_json`], given what the value before it in the same list became (its
    /// `like`): an object with the same keys in the same order as that one (the items of an
    /// order, the rows of an answer) takes its keys and their table from it, so its keys are
    /// neither interned nor hashed again; its values are converted the same way, each given
    /// the value of its key in `like`.
    fn from_json_like(v: &serde_json::Value, like: Option<&Value>) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::bool(*b),
            serde_json::Value::Number(n) => number_from_json(n),
            serde_json::Value::String(s) => Value::str(s),
            serde_json::Value::Array(a) => {
                let mut items: Vec<Value> = Vec::with_capacity(a.len());
                for v in a {
                    let item = Value::from_json_like(v, items.last());
                    items.push(item);
                }
                Value::array(items)
            }
            serde_json::Value::Object(o) => {
                if let Some(r) = ref_from_object_json(o) {
                    return r;
                }
                if let Some(Value::Object(shape)) = like {
                    if shape.len() == o.len() && shape.keys().zip(o.keys()).all(|(a, b)| **a == **b)
                    {
                        // The keys (and their index) are shared with the model, not copied.
                        let mut values = Vec::with_capacity(o.len());
                        for (slot, v) in shape.values().zip(o.values()) {
                            values.push(Value::from_json_like(v, Some(slot)));
                        }
                        return Value::object(Map::with_keys_of(shape, values));
                    }
                }
                // The keys of a `serde_json` object are distinct: no lookup is needed.
                let mut names = Vec::with_capacity(o.len());
                let mut values = Vec::with_capacity(o.len());
                for (k, v) in o {
                    names.push(intern::key(k));
                    values.push(Value::from_json_like(v, None));
                }
                Value::object(Map::from_distinct(names, values))
            }
        }
    }

    /// Converts to a `serde_json::Value` (pending results become `{"$ref": "..."}`).
    pub fn to_serde_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

impl PendingRef {
    /// Reads one step further into the pending result.
    pub fn field(&self, key: PathKey) -> Value {
        if let Some(known) = &self.known {
            let found = match &key {
                PathKey::Key(k) => known.get_ref(k).cloned(),
                PathKey::Index(i) => match known {
                    Value::Array(_) => Some(known.index(*i)),
                    _ => None,
                },
            };
            if let Some(v) = found {
                return v;
            }
        }
        // Room for the new step at once (a clone has no spare room: the push would grow it).
        let mut path = Vec::with_capacity(self.path.len() + 1);
        path.extend_from_slice(&self.path);
        path.push(key);
        Value::Ref(Arc::new(PendingRef {
            name: self.name.clone(),
            path,
            known: None,
        }))
    }
}

/// [`Value::weight_and_depth`] of a list or object met at `depth`: adds its weight (as
/// [`Value::add_weight`] without a cap) to `total` and tells whether it nests deeper than
/// `max` (as [`deeper_plain`]); `None` once `steps` run out.
fn weigh_plain(
    v: &Value,
    depth: usize,
    max: usize,
    steps: &mut u32,
    total: &mut u64,
) -> Option<bool> {
    #[inline(always)]
    fn child(
        c: &Value,
        depth: usize,
        max: usize,
        steps: &mut u32,
        total: &mut u64,
    ) -> Option<bool> {
        match c {
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Dec(_) => *total += 8,
            Value::Str(s) => *total += s.len() as u64 + 2,
            Value::Array(_) | Value::Object(_) => {
                return weigh_plain(c, depth + 1, max, steps, total)
            }
            Value::Ref(r) => {
                // Weighed as it is written (a reference), walked for depth into its body.
                *total += c.scalar_weight().unwrap_or(0);
                if r.known.is_some() {
                    return deeper_plain(c, depth + 1, max, steps);
                }
            }
        }
        Some(false)
    }
    if depth > max {
        return Some(true);
    }
    match v {
        Value::Array(a) => {
            *steps = steps.checked_sub(u32::try_from(a.len()).ok()?)?;
            *total += 2 + a.len() as u64;
            for c in a.iter() {
                if child(c, depth, max, steps, total)? {
                    return Some(true);
                }
            }
        }
        Value::Object(o) => {
            *steps = steps.checked_sub(u32::try_from(o.len()).ok()?)?;
            *total += 2;
            for (k, c) in o.iter() {
                *total += k.len() as u64 + 4;
                if child(c, depth, max, steps, total)? {
                    return Some(true);
                }
            }
        }
        other => *total += other.scalar_weight().unwrap_or(0),
    }
    Some(false)
}

/// [`Value::deeper_than`] by a plain walk of `v` met at `depth`: `None` once `steps` run
/// out (the caller walks again remembering what was seen). Recurses at most `max + 1` deep.
fn deeper_plain(v: &Value, depth: usize, max: usize, steps: &mut u32) -> Option<bool> {
    // Scalars are counted as steps (all the items of a list or object at once) but not
    // visited: only containers recurse.
    fn children<'v>(
        items: impl Iterator<Item = &'v Value>,
        len: usize,
        depth: usize,
        max: usize,
        steps: &mut u32,
    ) -> Option<bool> {
        *steps = steps.checked_sub(u32::try_from(len).ok()?)?;
        for child in items {
            let nested = match child {
                Value::Array(_) | Value::Object(_) => true,
                Value::Ref(r) => r.known.is_some(),
                _ => false,
            };
            if nested && deeper_plain(child, depth + 1, max, steps)? {
                return Some(true);
            }
        }
        Some(false)
    }
    if depth > max {
        return Some(
            matches!(v, Value::Array(_) | Value::Object(_))
                || matches!(v, Value::Ref(r) if r.known.is_some()),
        );
    }
    match v {
        Value::Array(a) => children(a.iter(), a.len(), depth, max, steps),
        Value::Object(o) => children(o.values(), o.len(), depth, max, steps),
        Value::Ref(r) => children(r.known.iter(), 1, depth, max, steps),
        _ => Some(false),
    }
}

/// Resolves a possibly negative index against a length.
pub(crate) fn index_of(len: usize, i: i64) -> Option<usize> {
    if i >= 0 {
        usize::try_from(i).ok().filter(|&i| i < len)
    } else {
        let back = usize::try_from(i.unsigned_abs()).ok()?;
        len.checked_sub(back)
    }
}

fn number_from_json(n: &serde_json::Number) -> Value {
    if let Some(i) = n.as_i64() {
        return Value::Int(i);
    }
    if let Some(u) = n.as_u64() {
        return Value::number(Decimal::from(u));
    }
    number_from_f64(n.as_f64().unwrap_or(0.0))
}

/// Converts a float read from JSON or YAML by way of its shortest round-trip text, so
/// `19.99` stays exactly `19.99`.
pub(crate) fn number_from_f64(f: f64) -> Value {
    if !f.is_finite() {
        return Value::Null;
    }
    short_decimal(f).unwrap_or_else(|| number_from_f64_text(f))
}

/// [`number_from_f64`] of a float with at most six decimals and a small mantissa (prices,
/// quantities, weights: nearly every float of an API answer), without writing and reading
/// its text: the decimal `m / 10^scale` of the smallest `scale` whose `m` reads back as
/// exactly `f` is the float's shortest round-trip text. (`m` below 2^40 keeps the float's
/// rounding far finer than `10^-scale`, so no other `m` of that scale reads back as `f`.)
fn short_decimal(f: f64) -> Option<Value> {
    const POWERS: [f64; 7] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
    const LIMIT: f64 = (1u64 << 40) as f64;
    for (scale, p) in (0u32..).zip(POWERS) {
        let m = (f * p).round();
        if m.abs() >= LIMIT {
            return None;
        }
        if m / p == f {
            // `m` is whole and below 2^40: an integer as it is; with a last digit other
            // than 0, a decimal already normalised (what `Value::number` would make of it,
            // without its arithmetic on decimals).
            let m = m as i64;
            return Some(match scale {
                0 => Value::Int(m),
                _ if m % 10 != 0 => Value::Dec(Arc::new(Decimal::new(m, scale))),
                _ => Value::number(Decimal::new(m, scale)),
            });
        }
    }
    None
}

/// [`number_from_f64`] by way of the float's shortest round-trip text.
fn number_from_f64_text(f: f64) -> Value {
    // Written on the stack when it fits (it does for every price and quantity): this runs
    // for every number with a fraction of every document read.
    use std::io::Write;
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let heap;
    let text: &str = match write!(cursor, "{f}") {
        Ok(()) => {
            let n = usize::try_from(cursor.position()).unwrap_or(0);
            std::str::from_utf8(&buf[..n]).unwrap_or("")
        }
        Err(_) => {
            heap = format!("{f}");
            &heap
        }
    };
    match Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text)) {
        Ok(d) => Value::number(d),
        Err(_) => Decimal::from_f64_retain(f).map_or(Value::Null, Value::number),
    }
}

fn ref_from_object_json(o: &serde_json::Map<String, serde_json::Value>) -> Option<Value> {
    if o.len() != 1 {
        return None;
    }
    let text = o.get("$ref")?.as_str()?;
    PendingRef::parse(text).map(|r| Value::Ref(Arc::new(r)))
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.equals(other)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s.into())
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Value {
        Value::array(items)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(b.get()),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Dec(d) if d.fract().is_zero() => match d.to_i128() {
                Some(i) => s.serialize_i128(i),
                None => s.serialize_str(&d.to_string()),
            },
            Value::Dec(d) => match d.to_f64() {
                Some(f) => s.serialize_f64(f),
                None => s.serialize_str(&d.to_string()),
            },
            Value::Str(v) => s.serialize_str(v),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a.iter() {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Object(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, v) in o.iter() {
                    map.serialize_entry(&**k, v)?;
                }
                map.end()
            }
            Value::Ref(r) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("$ref", &r.display_path())?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        let mut scratch = Scratch::take();
        let read = d.deserialize_any(ValueVisitor {
            like: None,
            scratch: &mut scratch,
        });
        scratch.give_back();
        read
    }
}

/// The entries of the objects and lists being read, one stack for a whole document: an
/// object or a list pushes its entries and, once complete, moves them into vectors of
/// exactly their number (no vector grows while a document is read), so the stack's room
/// is taken once per thread, not once per object.
pub(crate) struct Scratch {
    /// The keys read (and their [`key_hash`]), of every object open.
    keys: Vec<(Str, u64)>,
    /// The values read, of every object and list open.
    values: Vec<Value>,
    /// The shapes of the objects read by this thread.
    shapes: shape::Shapes,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            keys: Vec::new(),
            values: Vec::new(),
            shapes: shape::Shapes::new(),
        }
    }
}

/// The most entries a thread's [`Scratch`] keeps room for between documents.
const SCRATCH_ROOM: usize = 4096;

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = const {
        std::cell::Cell::new(Scratch {
            keys: Vec::new(),
            values: Vec::new(),
            shapes: shape::Shapes::new(),
        })
    };
}

impl Scratch {
    /// This thread's stack (a new one while it is in use, e.g. by a read within a read).
    fn take() -> Scratch {
        SCRATCH.try_with(std::cell::Cell::take).unwrap_or_default()
    }

    /// Gives the stack back for the next document, emptied (a read refused midway leaves
    /// its entries), its room given up if it grew past [`SCRATCH_ROOM`].
    fn give_back(mut self) {
        self.keys.clear();
        self.values.clear();
        if self.keys.capacity() > SCRATCH_ROOM {
            self.keys = Vec::new();
        }
        if self.values.capacity() > SCRATCH_ROOM {
            self.values = Vec::new();
        }
        let _ = SCRATCH.try_with(|s| s.set(self));
    }
}

/// Reads a value given, as its model, what the value before it in the same list became (as
/// [`Value::from_json`] converts): an object whose keys start as the model's do takes their
/// text from the model instead of interning it again, and one with exactly the model's keys
/// shares the model's key table (the items of an order, the rows of an answer).
struct ValueVisitor<'a, 's> {
    like: Option<&'a Value>,
    scratch: &'s mut Scratch,
}

impl<'de> de::DeserializeSeed<'de> for ValueVisitor<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueVisitor<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON or YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or_else(|_| Value::number(Decimal::from(u)), Value::Int))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(number_from_f64(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::str(s))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::from(s))
    }

    // Lists and objects are read out of line: the function that reads every value (and is
    // entered once per value, recursively) stays small, without their frame.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        read_list(seq, self.scratch)
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Value, A::Error> {
        read_object(access, self.like, self.scratch)
    }
}

/// The items of a list being read, each read with the one before as its model.
#[inline(never)]
fn read_list<'de, A: SeqAccess<'de>>(mut seq: A, scratch: &mut Scratch) -> Result<Value, A::Error> {
    let base = scratch.values.len();
    // Each item's model is the item before it (null before the first, which models
    // nothing), held apart from the stack (which the item's own entries grow) until the
    // next one is read.
    let mut last = Value::Null;
    let mut read = false;
    while let Some(v) = seq.next_element_seed(ValueVisitor {
        like: Some(&last),
        scratch,
    })? {
        let before = std::mem::replace(&mut last, v);
        if read {
            scratch.values.push(before);
        }
        read = true;
    }
    let items = if read {
        scratch.values.push(last);
        scratch.values.split_off(base)
    } else {
        Vec::new()
    };
    Ok(Value::array(items))
}

/// An object being read (a pending reference, if it is one), with its model, if any.
#[inline(never)]
fn read_object<'de, A: MapAccess<'de>>(
    access: A,
    like: Option<&Value>,
    scratch: &mut Scratch,
) -> Result<Value, A::Error> {
    let map = match like {
        Some(Value::Object(shape)) if !shape.is_empty() => read_map_like(access, shape, scratch)?,
        _ => read_map(access, scratch)?,
    };
    if map.len() == 1 {
        if let Some(Value::Str(text)) = map.get("$ref") {
            if let Some(r) = PendingRef::parse(text) {
                return Ok(Value::Ref(Arc::new(r)));
            }
        }
    }
    Ok(Value::object(map))
}

/// The entries of a map being read, a key read again replacing its value in place. While
/// its keys are ones the thread's [`Shapes`](shape::Shapes) know after the ones before
/// them, they are only compared with those, and the object shares the key table of the
/// ones read with its keys before it; from the first other key, its keys are hashed,
/// interned and checked for duplicates ([`Map::from_read`]).
fn read_map<'de, A: MapAccess<'de>>(mut access: A, scratch: &mut Scratch) -> Result<Map, A::Error> {
    let values = scratch.values.len();
    let mut node = shape::ROOT;
    loop {
        match access.next_key_seed(KeyNext(scratch.shapes.next(node)))? {
            None if node == shape::ROOT => return Ok(Map::new()),
            None => {
                let values = scratch.values.split_off(values);
                return Ok(scratch.shapes.object(node, values));
            }
            Some(KeyStep::Known(next)) => node = next,
            Some(KeyStep::New(KeyString(key, hash))) => match scratch.shapes.grow(node, &key, hash)
            {
                Some(next) => node = next,
                None => {
                    let keys = scratch.keys.len();
                    scratch.shapes.push_keys(node, &mut scratch.keys);
                    scratch.keys.push((key, hash));
                    return read_map_rest(access, scratch, keys, values);
                }
            },
        }
        let v = access.next_value_seed(ValueVisitor {
            like: None,
            scratch,
        })?;
        scratch.values.push(v);
    }
}

/// [`read_map`] from a key on that the shapes do not know, read (and pushed onto the stack
/// with the ones before it, from `keys` and `values` on), its value next.
fn read_map_rest<'de, A: MapAccess<'de>>(
    mut access: A,
    scratch: &mut Scratch,
    keys: usize,
    values: usize,
) -> Result<Map, A::Error> {
    let v = access.next_value_seed(ValueVisitor {
        like: None,
        scratch,
    })?;
    scratch.values.push(v);
    while let Some(KeyString(key, hash)) = access.next_key::<KeyString>()? {
        scratch.keys.push((key, hash));
        let v = access.next_value_seed(ValueVisitor {
            like: None,
            scratch,
        })?;
        scratch.values.push(v);
    }
    let values = scratch.values.split_off(values);
    Ok(Map::from_read(&mut scratch.keys, keys, values))
}

/// A key read where the shapes know the keys that may come: one of them (its node), or
/// another.
enum KeyStep {
    Known(shape::Node),
    New(KeyString),
}

/// Reads a key expecting one of the keys the shapes know after the ones before it.
struct KeyNext<'a>(&'a [(Str, shape::Node)]);

impl<'de> de::DeserializeSeed<'de> for KeyNext<'_> {
    type Value = KeyStep;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyStep, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyNext<'_> {
    type Value = KeyStep;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean key")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyStep, E> {
        for (k, node) in self.0 {
            if intern::same_text(k, s) {
                return Ok(KeyStep::Known(*node));
            }
        }
        KeyVisitor.visit_str(s).map(KeyStep::New)
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<KeyStep, E> {
        self.visit_str(&s)
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<KeyStep, E> {
        KeyVisitor.visit_i64(i).map(KeyStep::New)
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<KeyStep, E> {
        KeyVisitor.visit_u64(u).map(KeyStep::New)
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<KeyStep, E> {
        KeyVisitor.visit_f64(f).map(KeyStep::New)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<KeyStep, E> {
        KeyVisitor.visit_bool(b).map(KeyStep::New)
    }

    fn visit_unit<E: de::Error>(self) -> Result<KeyStep, E> {
        KeyVisitor.visit_unit().map(KeyStep::New)
    }
}

/// [`read_map`] of a map on its own (with a stack of its own).
pub(crate) fn read_map_alone<'de, A: MapAccess<'de>>(access: A) -> Result<Map, A::Error> {
    let mut scratch = Scratch::take();
    let read = read_map(access, &mut scratch);
    scratch.give_back();
    read
}

/// [`read_map`] of a map read after `shape` in the same list: while its keys are the
/// shape's, in order, they are the shape's keys (their text compared, not interned again)
/// and each value is read with the shape's value as its model; with exactly the shape's keys
/// the map shares the shape's key table. From the first other key on, as [`read_map`].
fn read_map_like<'de, A: MapAccess<'de>>(
    mut access: A,
    shape: &Map,
    scratch: &mut Scratch,
) -> Result<Map, A::Error> {
    let names = shape.key_names();
    let models = shape.values().as_slice();
    let mut values: Vec<Value> = Vec::with_capacity(names.len());
    loop {
        let i = values.len();
        match access.next_key_seed(KeyLike(names.get(i)))? {
            None => break,
            Some(KeyRead::Same) => {
                let v = access.next_value_seed(ValueVisitor {
                    like: models.get(i),
                    scratch,
                })?;
                values.push(v);
            }
            Some(KeyRead::Other(key)) => {
                // The shape's keys so far are distinct: only the rest needs lookups.
                let names = names.get(..i).unwrap_or_default().to_vec();
                let mut map = Map::from_distinct(names, values);
                let v = access.next_value_seed(ValueVisitor {
                    like: None,
                    scratch,
                })?;
                map.insert(key, v);
                while let Some(KeyString(key, _)) = access.next_key::<KeyString>()? {
                    let v = access.next_value_seed(ValueVisitor {
                        like: None,
                        scratch,
                    })?;
                    map.insert(key, v);
                }
                return Ok(map);
            }
        }
    }
    if values.len() == names.len() {
        return Ok(Map::with_keys_of(shape, values));
    }
    let names = names.get(..values.len()).unwrap_or_default().to_vec();
    Ok(Map::from_distinct(names, values))
}

/// A key read where a model expects one: the model's key, or another.
enum KeyRead {
    Same,
    Other(Str),
}

/// Reads a key expecting the text of a model's key.
struct KeyLike<'a>(Option<&'a Str>);

impl<'de> de::DeserializeSeed<'de> for KeyLike<'_> {
    type Value = KeyRead;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyRead, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyLike<'_> {
    type Value = KeyRead;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean key")
    }

    fn visit_str<E>(self, s: &str) -> Result<KeyRead, E> {
        Ok(match self.0 {
            Some(k) if intern::same_text(k, s) => KeyRead::Same,
            _ => KeyRead::Other(intern::key(s)),
        })
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<KeyRead, E> {
        self.visit_str(&s)
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<KeyRead, E> {
        KeyVisitor.visit_i64(i).map(|k| KeyRead::Other(k.0))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<KeyRead, E> {
        KeyVisitor.visit_u64(u).map(|k| KeyRead::Other(k.0))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<KeyRead, E> {
        KeyVisitor.visit_f64(f).map(|k| KeyRead::Other(k.0))
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<KeyRead, E> {
        KeyVisitor.visit_bool(b).map(|k| KeyRead::Other(k.0))
    }

    fn visit_unit<E: de::Error>(self) -> Result<KeyRead, E> {
        KeyVisitor.visit_unit().map(|k| KeyRead::Other(k.0))
    }
}

/// A map key and its [`key_hash`]: YAML allows numbers and booleans as keys; they become
/// their text.
struct KeyString(Str, u64);

impl KeyString {
    /// The key of a text not interned.
    fn text(s: String) -> KeyString {
        let hash = key_hash(&s);
        KeyString(Str::from(s), hash)
    }
}

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyString, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = KeyString;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean key")
    }
    fn visit_str<E>(self, s: &str) -> Result<KeyString, E> {
        let hash = key_hash(s);
        Ok(KeyString(intern::key_hashed(s, hash), hash))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<KeyString, E> {
        self.visit_str(&s)
    }
    fn visit_i64<E>(self, i: i64) -> Result<KeyString, E> {
        Ok(KeyString::text(i.to_string()))
    }
    fn visit_u64<E>(self, u: u64) -> Result<KeyString, E> {
        Ok(KeyString::text(u.to_string()))
    }
    fn visit_f64<E>(self, f: f64) -> Result<KeyString, E> {
        Ok(KeyString::text(number_from_f64(f).to_text()))
    }
    fn visit_bool<E>(self, b: bool) -> Result<KeyString, E> {
        Ok(KeyString::text(b.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<KeyString, E> {
        self.visit_str("null")
    }
}

/// A writer that refuses to grow past `max` bytes.
struct Bounded {
    buf: Vec<u8>,
    max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.max {
            // Keep what fits (for prefixes), then refuse.
            let room = self.max.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&data[..room.min(data.len())]);
            return Err(std::io::Error::other("the text is longer than allowed"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Deep-merges `overlay` into `base`: objects merge key by key, everything else replaces.
pub fn deep_merge(base: &Value, overlay: &Value) -> Value {
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            let mut map = (**b).clone();
            for (k, v) in o.iter() {
                let merged = match map.get(k) {
                    Some(existing) => deep_merge(existing, v),
                    None => v.clone(),
                };
                map.insert(k.clone(), merged);
            }
            Value::object(map)
        }
        (_, o) => o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_texts_and_rule_literals_are_static() {
        // A key worth interning is shared and static: its copies count nothing.
        let k = intern::key("static-check-key");
        assert!(Str::is_static(&k));
        assert!(Str::ptr_eq(&k, &intern::key("static-check-key")));
        // One that is not (an id) is an ordinary counted text.
        let id = intern::key("12345-static-check");
        assert!(!Str::is_static(&id));
        assert!(!Str::ptr_eq(&id, &intern::key("12345-static-check")));
        // A text written in a rule is interned when it is compiled: what its evaluation
        // gives is the interned text itself.
        let world = crate::world::RecordedWorld::default();
        let eval = |text: &str| {
            crate::Expression::compile(text)
                .map_err(|d| d.render(false))
                .and_then(|e| e.eval(&world, None).map_err(|e| e.to_string()))
        };
        match eval(r#""static-check-literal""#) {
            Ok(Value::Str(s)) => {
                assert!(Str::is_static(&s));
                assert!(Str::ptr_eq(&s, &intern::key("static-check-literal")));
            }
            other => panic!("a literal text evaluated to {other:?}"),
        }
        // A text built by the evaluation is not.
        match eval(r#""static-" + "check-built""#) {
            Ok(Value::Str(s)) => assert!(!Str::is_static(&s)),
            other => panic!("a joined text evaluated to {other:?}"),
        }
    }

    #[test]
    fn floats_keep_their_decimal_text() {
        let v: Value = serde_json::from_str("[19.99, 0.1, 1e3, 12345678901234567890]").unwrap();
        assert_eq!(v.to_json(), "[19.99,0.1,1000,12345678901234567890]");
    }

    #[test]
    fn floats_read_without_text_as_with_it() {
        let mut floats = vec![
            0.0,
            -0.0,
            0.1,
            0.2,
            0.3,
            0.1 + 0.2,
            1.0 / 3.0,
            2.0 / 3.0,
            19.99,
            -19.99,
            199.99,
            120.5,
            1e-7,
            1e-6,
            0.000_001_5,
            123_456.789,
            1e15,
            1e15 + 0.5,
            1e12 + 0.25,
            1_099_511_627_775.0,
            1_099_511_627_776.5,
            1e300,
            -1e-300,
            4.35e-5,
        ];
        for i in -3000..3000 {
            let i = f64::from(i);
            floats.extend([i / 100.0, i * 0.1, i * 0.01, i / 7.0, i * 1.37, 199.99 + i]);
        }
        let mut fast = 0;
        for f in floats {
            let slow = number_from_f64_text(f);
            let got = number_from_f64(f);
            assert_eq!(got.to_text(), slow.to_text(), "{f}");
            assert_eq!(got.type_name(), slow.type_name(), "{f}");
            assert_eq!(
                matches!(got, Value::Int(_)),
                matches!(slow, Value::Int(_)),
                "{f}"
            );
            if let (Value::Dec(a), Value::Dec(b)) = (&got, &slow) {
                assert_eq!(a.scale(), b.scale(), "{f}");
                assert_eq!(a.mantissa(), b.mantissa(), "{f}");
            }
            fast += usize::from(short_decimal(f).is_some());
        }
        // The fast way is the one taken for prices and quantities.
        assert!(fast > 20_000, "{fast}");
        assert_eq!(short_decimal(1.0 / 3.0), None);
    }

    #[test]
    fn lists_of_one_shape_convert_as_read() {
        // Objects of one shape (taking their keys from the one before), of other shapes,
        // pending references among them, nested lists of objects, ids as keys.
        let text = r#"[
            {"id": 1, "offer": {"xmlId": "a", "price": 19.99}, "tags": [{"k": 1}, {"k": 2}]},
            {"id": 2, "offer": {"xmlId": "b", "price": 5}, "tags": [{"k": 3}, {"x": 4}]},
            {"id": 3, "offer": {"price": 1, "xmlId": "c"}, "tags": []},
            {"id": 4, "offer": {"$ref": "ms_order.meta"}, "tags": null},
            {"id": 5, "offer": {"$ref": "ms_order.meta"}, "tags": [{"k": {"$ref": "x.y"}}]},
            {"$ref": "ms_order.rows.1"},
            {"$ref": ""},
            {"$ref": "ms_order.rows.2"},
            {"301": {"id": 301}, "302": {"id": 302}},
            {"301": {"id": 303}, "302": {"id": 304}},
            {"id": 6},
            {"id": 7, "offer": null, "tags": "none"},
            [{"a": 1}, {"a": 2}],
            [{"a": 3}]
        ]"#;
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let converted = Value::from_json(&json);
        let read: Value = serde_json::from_str(text).unwrap();
        assert_eq!(converted.to_json(), read.to_json());
        assert_eq!(converted.to_json(), json.to_string());
        let items = converted.as_array().unwrap();
        assert!(matches!(items[3].get("offer"), Value::Ref(_)));
        assert!(matches!(
            items[4].get("tags").index(0).get("k"),
            Value::Ref(_)
        ));
        assert!(matches!(items[5], Value::Ref(_)));
        assert!(matches!(items[6], Value::Object(_)));
        assert!(matches!(items[7], Value::Ref(_)));
        // Keys are found (by pointer and by hash) in objects that took their keys from the
        // one before.
        assert_eq!(items[1].get("offer").get("xmlId"), Value::str("b"));
        assert_eq!(items[2].get("offer").get("xmlId"), Value::str("c"));
        assert_eq!(items[9].get("302").get("id"), Value::Int(304));
        assert_eq!(items[1].get("tags").index(1).get("x"), Value::Int(4));
        let key = |v: &Value, i: usize| v.as_object().unwrap().get_index(i).unwrap().0.clone();
        assert!(Str::ptr_eq(&key(&items[1], 1), &intern::key("offer")));
        // Objects of one shape share one key table, down into their nested objects.
        let obj = |v: &Value| v.as_object().unwrap().clone();
        assert!(obj(&items[0]).same_keys(&obj(&items[1])));
        assert!(obj(&items[0].get("offer")).same_keys(&obj(&items[1].get("offer"))));
        assert!(!obj(&items[1].get("offer")).same_keys(&obj(&items[2].get("offer"))));
    }

    #[test]
    fn keys_compared_inline_as_by_their_text() {
        // Every length up to past the inline comparison, differing at every position (the
        // first and last bytes of a word, the overlap of the last word), in other lengths.
        for n in 0..40usize {
            let a: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(intern::same_text(&a, &a.clone()), "{a}");
            for at in 0..n {
                let mut b = a.clone().into_bytes();
                b[at] = b'Z';
                let b = String::from_utf8(b).unwrap();
                assert!(!intern::same_text(&a, &b), "{a} {b}");
                assert!(!intern::same_text(&b, &a), "{b} {a}");
            }
            let longer = format!("{a}a");
            assert!(!intern::same_text(&a, &longer));
            assert!(!intern::same_text(&longer, &a));
        }
        assert!(intern::same_text("ёлка", "ёлка"));
        assert!(!intern::same_text("ёлка", "ёлкб"));
    }

    #[test]
    fn refs_round_trip() {
        let v: Value = serde_json::from_str(r#"{"a": {"$ref": "ms_order.meta"}}"#).unwrap();
        assert!(matches!(v.get("a"), Value::Ref(_)));
        assert_eq!(v.to_json(), r#"{"a":{"$ref":"ms_order.meta"}}"#);
    }

    #[test]
    fn keys_of_documents_and_rules_share_one_allocation() {
        let a: Value = serde_json::from_str(r#"{"quantity": 1, "301": 2}"#).unwrap();
        let b = Value::from_json(&serde_json::json!({"quantity": 3, "301": 4}));
        let key = |v: &Value, i: usize| v.as_object().unwrap().get_index(i).unwrap().0.clone();
        assert!(Str::ptr_eq(&key(&a, 0), &key(&b, 0)));
        assert!(Str::ptr_eq(&key(&a, 0), &intern::key("quantity")));
        // Ids as keys are not interned, and are found all the same.
        assert!(!Str::ptr_eq(&key(&a, 1), &key(&b, 1)));
        assert_eq!(b.get("301"), Value::Int(4));
    }

    #[test]
    fn depth_is_found_past_the_plain_walk() {
        // Wider than the plain walk goes: the walk that remembers what it saw decides.
        let mut deep = Value::Int(0);
        for _ in 0..10 {
            deep = Value::array(vec![deep]);
        }
        let mut items: Vec<Value> = (0..5000).map(Value::Int).collect();
        items.push(deep);
        let wide = Value::array(items);
        assert!(wide.deeper_than(10));
        assert!(!wide.deeper_than(11));
        // A list that shares its parts (40 levels, 2^40 items written out), still quick.
        let mut shared = Value::Int(1);
        for _ in 0..40 {
            shared = Value::array(vec![shared.clone(), shared]);
        }
        assert!(shared.deeper_than(39));
        assert!(!shared.deeper_than(40));
    }

    /// Values of every kind, nested a few levels, sharing their parts at times, with
    /// pending results that know their body.
    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::bool),
            any::<i64>().prop_map(Value::Int),
            "[a-zé]{0,6}".prop_map(|s| Value::str(&s)),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::array),
                proptest::collection::vec(("[a-c]{1,3}", inner.clone()), 0..6).prop_map(|kv| {
                    Value::object(kv.into_iter().map(|(k, v)| (Str::from(k), v)).collect())
                }),
                (inner.clone(), 0..4usize).prop_map(|(v, n)| Value::array(vec![v; n])),
                (inner, "[a-z]{1,4}", any::<bool>()).prop_map(|(v, name, known)| {
                    Value::Ref(Arc::new(PendingRef {
                        name: Str::from(name),
                        path: vec![PathKey::Key("id".into())],
                        known: known.then_some(v),
                    }))
                }),
            ]
        })
    }

    proptest::proptest! {
        /// A decimal becomes the same number by the mantissa's remainder as by decimal
        /// arithmetic: an integer when whole and within `i64`, else the normalised decimal.
        #[test]
        fn number_is_the_decimal_arithmetic(
            tiny in -100i128..100,
            small in -100_000i128..100_000,
            wide in proptest::num::i64::ANY,
            huge in -(1i128 << 95)..(1i128 << 95),
            pick in 0u8..4,
            scale in 0u32..=28,
        ) {
            let m = match pick {
                0 => tiny,
                1 => small,
                2 => i128::from(wide),
                _ => huge,
            };
            let d = Decimal::from_i128_with_scale(m, scale);
            let (fast, slow) = (Value::number(d), Value::number_slow(d));
            proptest::prop_assert!(
                matches!((&fast, &slow), (Value::Int(a), Value::Int(b)) if a == b)
                    || matches!((&fast, &slow), (Value::Dec(a), Value::Dec(b))
                        if a == b && a.scale() == b.scale() && a.is_sign_negative() == b.is_sign_negative()),
                "{d}: {fast:?} against {slow:?}"
            );
        }

        /// One walk for weight and depth finds what the two walks find: the depth always,
        /// the weight when not deeper (within any cap it is what the capped walk gives).
        #[test]
        fn weight_and_depth_are_the_two_walks(v in any_value(), max in 0usize..8, cap in 0u64..400) {
            if let Some((weight, deeper)) = v.weight_and_depth(max) {
                proptest::prop_assert_eq!(deeper, v.deeper_than(max));
                if !deeper {
                    proptest::prop_assert_eq!(weight, v.weight_within(u64::MAX));
                    if weight <= cap {
                        proptest::prop_assert_eq!(weight, v.weight_within(cap));
                    }
                }
            } else {
                proptest::prop_assert!(!matches!(v, Value::Array(_) | Value::Object(_)));
            }
        }
    }

    #[test]
    fn weight_and_depth_leave_large_shared_values_to_the_two_walks() {
        let mut shared = Value::Int(1);
        for _ in 0..40 {
            shared = Value::array(vec![shared.clone(), shared]);
        }
        assert_eq!(shared.weight_and_depth(256), None);
        let mut deep = Value::Int(0);
        for _ in 0..300 {
            deep = Value::from_pairs([("up", deep)]);
        }
        // 300 levels: deeper than 256 and 299, not than 300.
        assert!(deep.weight_and_depth(256).is_some_and(|(_, d)| d));
        assert!(deep.weight_and_depth(299).is_some_and(|(_, d)| d));
        assert!(deep
            .weight_and_depth(300)
            .is_some_and(|(w, d)| !d && w == deep.weight_within(u64::MAX)));
    }

    #[test]
    fn negative_indexes_count_from_the_end() {
        let v = Value::array(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(v.index(-1), Value::Int(2));
        assert_eq!(v.index(-3), Value::Null);
        assert_eq!(v.index(2), Value::Null);
    }
}
