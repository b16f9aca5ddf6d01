//! The compiled form of rules: names resolved to slots, functions to pointers, templates
//! to compiled minijinja templates. Evaluation walks these and never touches the parser.

use crate::funcs::Builtin;
use crate::ruleset::model::Level;
use crate::syntax::ast::{BinOp, UnOp};
use crate::value::{Str, Value};

/// Index into the program's table of source locations.
pub(crate) type LocId = u32;

/// How a compiled expression is evaluated: a function chosen for the node's exact shape
/// when the node is built ([`crate::eval::op_for`]), so that evaluating it is one indirect
/// call of a function that does only what that shape needs.
pub(crate) type Op = for<'a> fn(
    &mut crate::eval::Ctx<'a>,
    &'a CExpr,
    &mut crate::eval::Frame<'a>,
) -> Result<Value, crate::eval::Fail>;

/// A compiled expression with the location it came from, and the function that evaluates
/// it (chosen for its shape when it is built: every compiled expression, folded, inlined or
/// copied, is built by [`CExpr::new`], and nothing changes a node in place).
#[derive(Clone)]
pub(crate) struct CExpr {
    pub node: Node,
    pub loc: LocId,
    op: Op,
    view: View,
    cond: Cond,
}

/// How [`crate::eval`] tests a node for truthiness, decided once per node when it is
/// built ([`crate::eval::cond_for`]); the index of its test op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Cond {
    /// `x == null`, `x != null`.
    EqNull,
    /// `x == "text"`, `x != "text"`.
    EqStr,
    /// `x == literal`, `x != literal`.
    EqConst,
    /// `literal == x`, `literal != x`.
    ConstEq,
    /// `a == b`, `a != b`.
    Eq,
    /// `a and b`.
    And,
    /// `a or b`.
    Or,
    /// `not x`.
    Not,
    /// Folded or written code.
    Settled,
    /// A slot or keys below one, by reference.
    LocalKeys,
    /// Anything evaluated for its value.
    Value,
    /// Anything else read by reference.
    Ref,
}

/// How [`crate::eval`] reads a value by reference without building it, decided once per
/// node when it is built ([`crate::eval::view_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// A literal.
    Const,
    /// A slot, or keys below one.
    LocalKeys,
    /// A global, or keys below one.
    GlobalKeys,
    /// Folded or written code, as the settings choose.
    Settled,
    /// `if`: the branch taken.
    If,
    /// `??`: the left side if not null, else the right side by reference.
    Coalesce,
    /// Anything else: evaluated.
    Value,
}

impl CExpr {
    /// A compiled expression, with the function that evaluates its shape.
    pub fn new(node: Node, loc: LocId) -> CExpr {
        let op = crate::eval::op_for(&node);
        let view = crate::eval::view_for(&node);
        let cond = crate::eval::cond_for(&node, view);
        CExpr {
            node,
            loc,
            op,
            view,
            cond,
        }
    }

    /// How this expression is tested for truthiness.
    #[inline(always)]
    pub fn cond(&self) -> Cond {
        self.cond
    }

    /// How this expression is read by reference.
    #[inline(always)]
    pub fn view(&self) -> View {
        self.view
    }

    /// The function that evaluates this expression.
    #[inline(always)]
    pub fn op(&self) -> Op {
        self.op
    }

    /// The expression's node, taken out (the expression is consumed).
    pub fn into_parts(self) -> (Node, LocId) {
        (self.node, self.loc)
    }
}

impl std::fmt::Debug for CExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CExpr")
            .field("node", &self.node)
            .field("loc", &self.loc)
            .finish()
    }
}

/// What a compiled expression does.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Const(Value),
    /// A slot of the current frame (a `let`, a parameter, an `as` result, a loop variable).
    Local(u32),
    /// A global: `settings`, `event`, or a field of the event.
    Global(u32),
    /// Reads keys and indexes below a base, by reference, cloning only the end.
    Path(Box<CExpr>, Box<[Seg]>),
    Unary(UnOp, Box<CExpr>),
    Binary(BinOp, Box<CExpr>, Box<CExpr>),
    If(Box<CExpr>, Box<CExpr>, Box<CExpr>),
    Call(&'static Builtin, Box<[CExpr]>, Option<Box<CLambda>>),
    CallUser(u32, Box<[CExpr]>),
    Array(Box<[CExpr]>),
    Object(Box<[(ObjKey, CExpr)]>),
    /// An object literal whose keys are all fixed and distinct, with their hashes, and the
    /// object it builds with every value null: each evaluation starts from a copy of it (its
    /// keys and their table), so no key is hashed or inserted.
    Record(Box<[(Str, u64, CExpr)]>, Box<crate::value::Map>),
    Template(u32, Box<[(Str, CExpr)]>),
    /// Code folded for the rule set's own settings (the first), and the same code as
    /// written (the second): the evaluation takes the first when its settings agree with
    /// the rule set's at every key the folding decided on ([`super::fold`]).
    Settled(Box<CExpr>, Box<CExpr>),
}

/// One step of a compiled path.
#[derive(Clone, Debug)]
pub(crate) enum Seg {
    /// A key, with its hash under the object maps' hasher, computed once at compile time,
    /// and where it was last found.
    Key(Str, KeyAt),
    Index(CExpr),
}

/// The hash of a key step and the position the key had in the last object it was found
/// in: objects of one shape (the items of an order, the rows of an answer) share their key
/// table, so the next one has it at the same place ([`crate::value::Map::get_hinted`]).
#[derive(Debug)]
pub(crate) struct KeyAt {
    pub hash: u64,
    pub hint: std::sync::atomic::AtomicU32,
}

impl Clone for KeyAt {
    /// A copy (an inlined body's path) starts from the position the original last saw.
    fn clone(&self) -> KeyAt {
        KeyAt {
            hash: self.hash,
            hint: std::sync::atomic::AtomicU32::new(
                self.hint.load(std::sync::atomic::Ordering::Relaxed),
            ),
        }
    }
}

impl Seg {
    /// A key step with its hash.
    pub fn key(k: Str) -> Seg {
        use std::hash::BuildHasher;
        let hash = crate::value::Hasher::default().hash_one(&*k);
        Seg::Key(
            k,
            KeyAt {
                hash,
                hint: std::sync::atomic::AtomicU32::new(0),
            },
        )
    }
}

/// A key of a compiled object literal.
#[derive(Clone, Debug)]
pub(crate) enum ObjKey {
    Static(Str),
    Computed(CExpr),
}

/// A lambda: parameter slots in the enclosing frame and a body.
#[derive(Clone, Debug)]
pub(crate) struct CLambda {
    pub params: Box<[u32]>,
    pub body: CExpr,
}

/// The `let` table of a frame: lazily evaluated named values.
#[derive(Debug, Default)]
pub(crate) struct Lets {
    /// For each slot, the index of the `let` that computes it, if any.
    pub by_slot: Vec<Option<u32>>,
    /// The lets, in order.
    pub items: Vec<CLet>,
}

#[derive(Debug)]
pub(crate) struct CLet {
    pub name: Str,
    pub slot: u32,
    pub expr: CExpr,
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct CRule {
    pub id: Str,
    pub doc: Option<String>,
    pub on: Vec<String>,
    pub file: String,
    pub loc: LocId,
    pub frame_size: u32,
    pub lets: Lets,
    pub subject: Option<CExpr>,
    pub when: Vec<CCond>,
    pub effects: Vec<CEffect>,
}

/// A compiled flow.
#[derive(Debug)]
pub(crate) struct CFlow {
    pub name: Str,
    pub params: Vec<Str>,
    pub frame_size: u32,
    pub lets: Lets,
    pub when: Vec<CCond>,
    pub effects: Vec<CEffect>,
    pub returns: Option<CExpr>,
}

/// A compiled user-defined function.
#[derive(Debug)]
pub(crate) struct CFunc {
    pub name: Str,
    pub params: Vec<Str>,
    pub frame_size: u32,
    pub body: Option<CExpr>,
    /// Whether it (transitively) asks the world; pure ones can be used in templates.
    pub pure: bool,
}

/// A compiled condition.
#[derive(Debug)]
pub(crate) struct CCond {
    pub expr: CExpr,
    pub text: String,
    pub on_false: OnFalse,
}

/// What a false condition records.
#[derive(Debug)]
pub(crate) enum OnFalse {
    Nothing,
    Journal(CJournal),
    Skip(CExpr),
}

/// A plain word (a journal code, a task kind, a link kind), or a template that gives one.
#[derive(Debug)]
pub(crate) enum Word {
    Fixed(Str),
    Template(CExpr),
}

#[derive(Debug)]
pub(crate) struct CJournal {
    pub code: Word,
    pub level: Level,
    pub text: Option<CExpr>,
    pub subject: Option<CExpr>,
}

/// A compiled effect with its guard.
#[derive(Debug)]
pub(crate) struct CEffect {
    pub cond: Option<CExpr>,
    /// The text of `if:` (empty without one), for traces and coverage.
    pub cond_text: String,
    pub loc: LocId,
    pub kind: EffectKind,
}

#[derive(Debug)]
pub(crate) enum EffectKind {
    Create {
        system: Str,
        entity: Str,
        body: CBody,
        key: Option<CExpr>,
        name: Option<(Str, u32)>,
        optional: bool,
    },
    Update {
        system: Str,
        entity: Str,
        id: CExpr,
        body: CBody,
        name: Option<(Str, u32)>,
        optional: bool,
    },
    Delete {
        system: Str,
        entity: Str,
        id: CExpr,
        optional: bool,
    },
    Link {
        kind: Word,
        ids: Vec<(Str, CExpr)>,
    },
    Journal(CJournal),
    Task {
        user: CExpr,
        kind: Word,
        text: CExpr,
    },
    Skip(CExpr),
    Use {
        flow: u32,
        args: Vec<(u32, CExpr)>,
        name: Option<u32>,
    },
    Let(Vec<(u32, CExpr)>),
    For {
        var: u32,
        list: CExpr,
        body: Vec<CEffect>,
    },
    Group {
        then: Vec<CEffect>,
        otherwise: Vec<CEffect>,
    },
}

impl EffectKind {
    /// Whether running it adds an effect to the plan (rather than binding names, looping,
    /// grouping or calling a flow).
    pub(crate) fn plans_an_effect(&self) -> bool {
        !matches!(
            self,
            EffectKind::Use { .. }
                | EffectKind::Let(_)
                | EffectKind::For { .. }
                | EffectKind::Group { .. }
        )
    }
}

/// A body template: YAML structure with expressions at the leaves.
#[derive(Debug)]
pub(crate) enum CBody {
    Expr(CExpr),
    /// The entries, and their keys as a shape (see [`CBody::map`]) when they are distinct.
    Map(Vec<(Str, CBody)>, Option<crate::value::Map>),
    Seq(Vec<CBody>),
}

impl CBody {
    /// A body map. When its keys are distinct (YAML keys `1` and `'1'` are one key of the
    /// body), their shape is kept so that the evaluation builds the body without looking
    /// for a key already there (`eval::effects::eval_body`).
    pub(crate) fn map(entries: Vec<(Str, CBody)>) -> CBody {
        let names: Vec<Str> = entries.iter().map(|(k, _)| k.clone()).collect();
        let values = vec![Value::Null; names.len()];
        let shape = crate::value::Map::from_entries(names, values);
        let shape = (!entries.is_empty() && shape.len() == entries.len()).then_some(shape);
        CBody::Map(entries, shape)
    }
}
