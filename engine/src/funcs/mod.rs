//! Built-in functions, by family. Each one declares its signature, documentation and
//! examples; the examples run as tests (`funcs::tests`) and feed `docs/functions.md`.

/// Declares a built-in: family, name, signature, doc, examples, arity, lambda, implementation.
macro_rules! builtin {
    ($family:expr, $name:expr, $sig:expr, $doc:expr, [$($ex:expr => $res:expr),* $(,)?], $min:expr, $max:expr, $lambda:expr, $imp:expr) => {
        $crate::funcs::Builtin {
            name: $name,
            signature: $sig,
            doc: $doc,
            examples: &[$(($ex, $res)),*],
            family: $family,
            min: $min,
            max: $max,
            lambda: $lambda,
            reads_world: false,
            imp: $imp,
            size: $crate::funcs::Size::Result,
            owned: None,
        }
    };
}

mod collection;
mod date;
mod number;
mod string;
mod world;

pub use date::{parse_datetime, MILLIS_FORMAT};
pub(crate) use string::split_end;

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::eval::{Call, Fail};
use crate::value::Value;

/// Whether and how a function takes a lambda (always as its last argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LambdaArg {
    /// No lambda.
    None,
    /// An optional lambda with this many parameters.
    Optional(usize),
    /// A required lambda with this many parameters.
    Required(usize),
}

/// The family a function belongs to, for documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// Lists and objects.
    Collection,
    /// Text.
    String,
    /// Numbers.
    Number,
    /// Dates and times.
    Date,
    /// Lookups through the world.
    World,
    /// Conversions and types.
    Conversion,
}

impl Family {
    /// A heading for the family.
    pub fn title(self) -> &'static str {
        match self {
            Family::Collection => "Lists and objects",
            Family::String => "Text",
            Family::Number => "Numbers",
            Family::Date => "Dates and times",
            Family::World => "Lookups",
            Family::Conversion => "Conversions",
        }
    }
}

/// A plain function: values in, value out, no context.
pub(crate) type PureFn = fn(&[Value]) -> Result<Value, String>;

/// A pure built-in given its arguments to keep: an object or list argument that nothing else
/// holds is changed in place rather than copied. Gives what the [`PureFn`] of the same
/// built-in gives.
pub(crate) type OwnedFn = fn(&mut [Value]) -> Result<Value, String>;
/// A function that needs the evaluation context (a lambda, the world, the clock).
pub(crate) type CtxFn = fn(&mut Call<'_, '_>, &[Value]) -> Result<Value, Fail>;

/// An upper bound on the bytes a call will build, computed from its arguments before it
/// runs. The second argument is what is left of the memory budget: a walk may stop as soon
/// as it passes it (the call is refused then anyway).
pub(crate) type SizeFn = fn(&[Value], u64) -> u64;

/// How the memory budget accounts for a pure built-in's work.
#[derive(Clone, Copy)]
pub(crate) enum Size {
    /// It builds nothing worth counting (a number, a boolean, one of its arguments).
    Free,
    /// What it builds is at most a small multiple of its arguments: the result's own size
    /// is counted once it is built.
    Result,
    /// It can build far more than its arguments take (repeating a separator, writing out
    /// a value that shares its parts): the bound is checked before it runs.
    Before(SizeFn),
}

/// The bytes a value takes, not counting what its items take (they were counted when they
/// were built): a text's length, 32 bytes an item of a list, 48 an entry of an object.
#[inline]
pub(crate) fn shallow_bytes(v: &Value) -> u64 {
    match v {
        Value::Str(s) => s.len() as u64,
        Value::Array(a) => a.len() as u64 * crate::eval::SLOT_BYTES,
        Value::Object(o) => o.len() as u64 * crate::eval::ENTRY_BYTES,
        _ => 0,
    }
}

/// About how many bytes a value takes as text (see [`Value::to_text`]); `cap` lets the
/// walk of a list or object stop early.
pub(crate) fn text_bytes(v: &Value, cap: u64) -> u64 {
    match v {
        Value::Null => 0,
        Value::Str(s) => s.len() as u64,
        Value::Bool(_) | Value::Int(_) | Value::Dec(_) => 32,
        other => other.weight_within(cap),
    }
}

/// How a built-in is implemented.
pub(crate) enum Imp {
    Pure(PureFn),
    Ctx(CtxFn),
}

/// A built-in function.
pub struct Builtin {
    /// Its name.
    pub name: &'static str,
    /// How to call it, e.g. `map(list, item => value)`.
    pub signature: &'static str,
    /// What it does.
    pub doc: &'static str,
    /// Examples: an expression and the expression its result equals.
    pub examples: &'static [(&'static str, &'static str)],
    /// Its family.
    pub family: Family,
    /// Fewest arguments, not counting a lambda.
    pub min: usize,
    /// Most arguments, not counting a lambda (`usize::MAX`: any number).
    pub max: usize,
    /// The lambda it takes, if any.
    pub lambda: LambdaArg,
    /// Whether it reads the world (and so cannot be used in templates or settings checks).
    pub reads_world: bool,
    pub(crate) imp: Imp,
    /// How the memory budget accounts for it (pure built-ins only).
    pub(crate) size: Size,
    /// The same function taking its arguments, where the evaluator has them to give.
    pub(crate) owned: Option<OwnedFn>,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "builtin {}", self.name)
    }
}

impl Builtin {
    /// The bound checked before a call, for built-ins that can build far more than their
    /// arguments take.
    pub(crate) fn size_before(&self) -> Option<SizeFn> {
        match self.size {
            Size::Before(f) => Some(f),
            _ => None,
        }
    }

    /// Whether it can be called without an evaluation context (used in templates).
    pub(crate) fn pure_fn(&self) -> Option<PureFn> {
        match self.imp {
            Imp::Pure(f) => Some(f),
            Imp::Ctx(_) => None,
        }
    }
}

/// Every built-in function.
pub fn all() -> &'static [Builtin] {
    static ALL: OnceLock<Vec<Builtin>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = Vec::new();
        all.extend(collection::builtins());
        all.extend(string::builtins());
        all.extend(number::builtins());
        all.extend(date::builtins());
        all.extend(world::builtins());
        for b in &mut all {
            // Numbers, dates and booleans take no memory worth counting.
            if b.family == Family::Number || matches!(b.name, "date" | "add_days" | "now") {
                b.size = Size::Free;
            }
        }
        all
    })
}

/// Looks a built-in up by name.
pub fn lookup(name: &str) -> Option<&'static Builtin> {
    static INDEX: OnceLock<HashMap<&'static str, &'static Builtin>> = OnceLock::new();
    INDEX
        .get_or_init(|| all().iter().map(|b| (b.name, b)).collect())
        .get(name)
        .copied()
}

/// Markdown reference of every built-in, grouped by family (this is `docs/functions.md`).
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "# Built-in functions\n\n\
         Generated from the engine's function registry (`skladsync functions`); every example \
         below runs as a test. `a | f(b)` is the same call as `f(a, b)`.\n",
    );
    let mut families: Vec<Family> = all().iter().map(|b| b.family).collect();
    families.sort();
    families.dedup();
    for family in families {
        out.push_str(&format!("\n## {}\n", family.title()));
        for b in all().iter().filter(|b| b.family == family) {
            out.push_str(&format!("\n### `{}`\n\n{}\n", b.signature, b.doc));
            if !b.examples.is_empty() {
                out.push_str("\n```text\n");
                for (expr, result) in b.examples {
                    out.push_str(&format!("{expr}  ⇒  {result}\n"));
                }
                out.push_str("```\n");
            }
        }
    }
    out
}

// ---- helpers shared by the families ----

#[inline]
pub(crate) fn arg(args: &[Value], i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Null)
}

#[inline]
pub(crate) fn want_str(
    args: &[Value],
    i: usize,
    what: impl std::fmt::Display,
) -> Result<&str, String> {
    match arg(args, i) {
        Value::Str(s) => Ok(s),
        other => Err(not_a_string(what, other)),
    }
}

#[cold]
#[inline(never)]
fn not_a_string(what: impl std::fmt::Display, other: &Value) -> String {
    format!(
        "{what} must be a string, got {} {}",
        other.type_name(),
        short(other)
    )
}

pub(crate) fn want_array(
    args: &[Value],
    i: usize,
    what: impl std::fmt::Display,
) -> Result<&[Value], String> {
    match arg(args, i) {
        Value::Array(a) => Ok(a),
        other => Err(format!(
            "{what} must be an array, got {} {}",
            other.type_name(),
            short(other)
        )),
    }
}

/// A list argument where null counts as the empty list (a missing collection in a
/// document is common and means "none").
pub(crate) fn list_or_null(
    args: &[Value],
    i: usize,
    what: impl std::fmt::Display,
) -> Result<&[Value], String> {
    match arg(args, i) {
        Value::Null => Ok(&[]),
        _ => want_array(args, i, what),
    }
}

pub(crate) fn want_int(
    args: &[Value],
    i: usize,
    what: impl std::fmt::Display,
) -> Result<i64, String> {
    let v = arg(args, i);
    v.as_i64().ok_or_else(|| {
        format!(
            "{what} must be a whole number, got {} {}",
            v.type_name(),
            short(v)
        )
    })
}

/// A short rendering of a value for error messages.
pub(crate) fn short(v: &Value) -> String {
    // At most 60 characters are shown: never write out more than they can take.
    let (text, complete) = v.json_prefix(60 * 4);
    if !complete || text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

#[cfg(test)]
mod tests;
