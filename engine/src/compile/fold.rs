//! Work done once at compile time instead of at every evaluation.
//!
//! Two passes over the compiled program, once it compiled without errors:
//!
//! - **Folds valid for any settings.** Small user functions (bodies of up to
//!   [`INLINE_MAX`] nodes) called where code repeats (a function body, a lambda) are inlined
//!   where their arguments can be read again at no cost and without effect (literals,
//!   parameters, loop variables and key paths below them, globals; not a lazily computed
//!   `let`), so `c2m_is_service(line.assortment)` becomes
//!   `line.assortment.meta.type == "service"`: no call, no frame, one path. A call whose
//!   arguments are all the same in every rule stays a call (its result is shared within an
//!   evaluation), and so does a call in a rule's own expressions (run once per event: a copy
//!   of the body would cost memory for nothing). Then what became
//!   constant is computed: pure built-ins of literals, operators, `if` on a literal, `x ??
//!   literal`, key paths into literals.
//! - **Folds for the rule set's own settings.** Decisions that only depend on settings — an
//!   `if` whose condition reads settings only, `not settings.x`, `settings.x == "y"`,
//!   `empty(settings.list)`, an `and`/`or`/`??` whose left side reads settings only — are
//!   taken once, for the settings the rule set was loaded with. Values read from the settings
//!   that decide nothing (a URL given to `format`) stay reads. The folded code does not
//!   replace the code as written: a [`Node::Settled`] holds both, and an evaluation takes the
//!   folded one only when its settings have the same value at every key a decision read
//!   ([`Program::assumed`]; checked once per evaluation). An evaluation with other settings
//!   (a test case's overrides) runs the code as written.
//!
//! A folded node keeps the place of the code it came from, so errors, traces and coverage
//! point where they did. Nothing that the evaluation would run is dropped unless it is a
//! literal or a read (which have no effect and cannot fail); lets are never moved.

use super::node::{CBody, CEffect, CExpr, CFunc, CJournal, CLambda, EffectKind, Node, ObjKey};
use super::node::{OnFalse, Seg, Word};
use super::Program;
use crate::funcs::{Imp, Size};
use crate::syntax::ast::{BinOp, UnOp};
use crate::value::{Map, Str, Value};

/// The largest function body (in nodes) that is inlined at its call sites.
const INLINE_MAX: usize = 40;

/// The largest constant (in bytes of JSON) a fold may build.
const CONST_MAX: usize = 4096;

/// Folds the program for `settings` (the rule set's own). Call it only on a program
/// compiled without errors (a call cycle would make inlining unbounded: bodies are folded
/// callee first, and a function is never inlined into itself).
pub(crate) fn fold_program(prog: &mut Program, settings: &Value) {
    let settings_global = prog
        .globals
        .iter()
        .position(|g| &**g == "settings")
        .and_then(|i| u32::try_from(i).ok());
    let mut f = Folder {
        settings,
        settings_global,
        assumed: Vec::new(),
    };
    for i in callee_first(&prog.funcs) {
        let Some(func) = prog.funcs.get_mut(i) else {
            continue;
        };
        let Some(body) = func.body.take() else {
            continue;
        };
        let mut site = Site {
            frame_size: func.frame_size,
            lets: Vec::new(),
            repeated: true,
        };
        let body = f.root(body, &prog.funcs, &mut site);
        if let Some(func) = prog.funcs.get_mut(i) {
            func.body = Some(body);
            func.frame_size = site.frame_size;
        }
    }
    let funcs = &prog.funcs;
    for flow in &mut prog.flows {
        let mut site = Site::of(flow.frame_size, &flow.lets.by_slot);
        for l in &mut flow.lets.items {
            f.root_in_place(&mut l.expr, funcs, &mut site);
        }
        for c in &mut flow.when {
            f.root_in_place(&mut c.expr, funcs, &mut site);
            f.on_false(&mut c.on_false, funcs, &mut site);
        }
        f.effects(&mut flow.effects, funcs, &mut site);
        if let Some(r) = &mut flow.returns {
            f.root_in_place(r, funcs, &mut site);
        }
        flow.frame_size = site.frame_size;
    }
    for rule in &mut prog.rules {
        let mut site = Site::of(rule.frame_size, &rule.lets.by_slot);
        for l in &mut rule.lets.items {
            f.root_in_place(&mut l.expr, funcs, &mut site);
        }
        if let Some(s) = &mut rule.subject {
            f.root_in_place(s, funcs, &mut site);
        }
        for c in &mut rule.when {
            f.root_in_place(&mut c.expr, funcs, &mut site);
            f.on_false(&mut c.on_false, funcs, &mut site);
        }
        f.effects(&mut rule.effects, funcs, &mut site);
        rule.frame_size = site.frame_size;
    }
    let mut assumed: Vec<(Box<[Str]>, Value)> = Vec::new();
    for path in f.assumed {
        if assumed.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let value = walk(settings, &path);
        assumed.push((path, value));
    }
    // Paths of one part of the settings together, so it is compared once.
    assumed.sort_by(|(a, _), (b, _)| a.cmp(b));
    prog.assumed = assumed;
    prog.folded_for = settings.clone();
}

/// Whether `settings` have the same value as the ones the program was folded for at every
/// key a fold decided on: then the folded code gives what the code as written would. The
/// settings the daemon gives (the rule set's own with the runner's `connection` merged in)
/// share every other part with the rule set's own: a part that is the very same object as
/// the one folded for is not walked.
pub(crate) fn settled(prog: &Program, settings: &Value) -> bool {
    if let (Value::Object(a), Value::Object(b)) = (settings, &prog.folded_for) {
        if std::sync::Arc::ptr_eq(a, b) {
            return true;
        }
    }
    let mut shared: Option<&str> = None;
    prog.assumed.iter().all(|(path, value)| {
        let Some(first) = path.first() else {
            return identical(settings, value);
        };
        if shared == Some(&**first) {
            return true;
        }
        if let (Some(Value::Object(a)), Some(Value::Object(b))) =
            (settings.get_ref(first), prog.folded_for.get_ref(first))
        {
            if std::sync::Arc::ptr_eq(a, b) {
                shared = Some(&**first);
                return true;
            }
        }
        identical(&walk(settings, path), value)
    })
}

/// The indexes of the functions, each after every function it calls.
fn callee_first(funcs: &[CFunc]) -> Vec<usize> {
    fn visit(i: usize, funcs: &[CFunc], state: &mut [u8], out: &mut Vec<usize>) {
        if state.get(i).copied() != Some(0) {
            return;
        }
        state[i] = 1;
        if let Some(body) = funcs.get(i).and_then(|f| f.body.as_ref()) {
            let mut callees = Vec::new();
            calls_in(body, &mut callees);
            for c in callees {
                visit(c as usize, funcs, state, out);
            }
        }
        state[i] = 2;
        out.push(i);
    }
    let mut state = vec![0u8; funcs.len()];
    let mut out = Vec::with_capacity(funcs.len());
    for i in 0..funcs.len() {
        visit(i, funcs, &mut state, &mut out);
    }
    out
}

/// The user functions an expression calls.
fn calls_in(e: &CExpr, out: &mut Vec<u32>) {
    if let Node::CallUser(i, _) = &e.node {
        out.push(*i);
    }
    children(e, &mut |c| calls_in(c, out));
}

/// Calls `f` on each sub-expression of `e` (one level).
fn children<'e>(e: &'e CExpr, f: &mut dyn FnMut(&'e CExpr)) {
    match &e.node {
        Node::Const(_) | Node::Local(_) | Node::Global(_) => {}
        Node::Path(base, segs) => {
            f(base);
            for s in segs.iter() {
                if let Seg::Index(ix) = s {
                    f(ix);
                }
            }
        }
        Node::Unary(_, x) => f(x),
        Node::Binary(_, a, b) => {
            f(a);
            f(b);
        }
        Node::If(c, a, b) => {
            f(c);
            f(a);
            f(b);
        }
        Node::Call(_, args, lambda) => {
            args.iter().for_each(&mut *f);
            if let Some(l) = lambda {
                f(&l.body);
            }
        }
        Node::CallUser(_, args) | Node::Array(args) => args.iter().for_each(f),
        Node::Object(pairs) => {
            for (k, v) in pairs.iter() {
                if let ObjKey::Computed(k) = k {
                    f(k);
                }
                f(v);
            }
        }
        Node::Record(fields, _) => fields.iter().for_each(|(_, _, v)| f(v)),
        Node::Template(_, vars) => vars.iter().for_each(|(_, v)| f(v)),
        Node::Settled(s, g) => {
            f(s);
            f(g);
        }
    }
}

/// The number of nodes of an expression.
fn size(e: &CExpr) -> usize {
    let mut n = 1;
    children(e, &mut |c| n += size(c));
    n
}

/// Where an expression is folded: its frame (that inlined lambdas take slots of) and which
/// of the frame's slots are lazily evaluated `let`s.
struct Site {
    frame_size: u32,
    lets: Vec<bool>,
    /// Whether code here may run many times in one evaluation: a function body, or a
    /// lambda (of a `map`, `filter`, …). Calls are inlined only there: a call in a rule's
    /// own expressions runs once per event, and a copy of the body would cost memory for
    /// nothing.
    repeated: bool,
}

impl Site {
    fn of(frame_size: u32, by_slot: &[Option<u32>]) -> Site {
        Site {
            frame_size,
            lets: by_slot.iter().map(Option::is_some).collect(),
            repeated: false,
        }
    }

    fn is_let(&self, slot: u32) -> bool {
        self.lets.get(slot as usize).copied().unwrap_or(false)
    }
}

/// Whether the settings are known (the pass for the rule set's own settings) or not.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    General,
    Special,
}

struct Folder<'s> {
    settings: &'s Value,
    settings_global: Option<u32>,
    /// The settings paths decisions of the folded code read.
    assumed: Vec<Box<[Str]>>,
}

/// A value known at compile time, and the settings paths it was read from.
struct Known {
    value: Value,
    paths: Vec<Box<[Str]>>,
}

impl Known {
    fn plain(value: Value) -> Known {
        Known {
            value,
            paths: Vec::new(),
        }
    }
}

impl Folder<'_> {
    /// Folds a whole expression (a function body, a let, a condition, an effect's
    /// expression): for any settings, then for the rule set's own; when the latter decided
    /// something, the result holds both.
    fn root(&mut self, e: CExpr, funcs: &[CFunc], site: &mut Site) -> CExpr {
        let general = self.fold(e, funcs, site, Mode::General);
        if self.settings_global.is_none() {
            return general;
        }
        let before = self.assumed.len();
        let special = self.fold(general.clone(), funcs, site, Mode::Special);
        if self.assumed.len() == before {
            return general;
        }
        let loc = general.loc;
        CExpr::new(Node::Settled(Box::new(special), Box::new(general)), loc)
    }

    fn root_in_place(&mut self, e: &mut CExpr, funcs: &[CFunc], site: &mut Site) {
        let taken = std::mem::replace(e, placeholder(e.loc));
        *e = self.root(taken, funcs, site);
    }

    fn on_false(&mut self, o: &mut OnFalse, funcs: &[CFunc], site: &mut Site) {
        match o {
            OnFalse::Nothing => {}
            OnFalse::Journal(j) => self.journal(j, funcs, site),
            OnFalse::Skip(e) => self.root_in_place(e, funcs, site),
        }
    }

    fn journal(&mut self, j: &mut CJournal, funcs: &[CFunc], site: &mut Site) {
        if let Word::Template(e) = &mut j.code {
            self.root_in_place(e, funcs, site);
        }
        if let Some(e) = &mut j.text {
            self.root_in_place(e, funcs, site);
        }
        if let Some(e) = &mut j.subject {
            self.root_in_place(e, funcs, site);
        }
    }

    fn body(&mut self, b: &mut CBody, funcs: &[CFunc], site: &mut Site) {
        match b {
            CBody::Expr(e) => self.root_in_place(e, funcs, site),
            CBody::Map(entries, _) => entries
                .iter_mut()
                .for_each(|(_, b)| self.body(b, funcs, site)),
            CBody::Seq(items) => items.iter_mut().for_each(|b| self.body(b, funcs, site)),
        }
    }

    /// Folds the expressions of effects; the effects themselves (their guards, order and
    /// nesting) stay as written, so traces and coverage see every one of them.
    fn effects(&mut self, effects: &mut [CEffect], funcs: &[CFunc], site: &mut Site) {
        for eff in effects {
            if let Some(c) = &mut eff.cond {
                self.root_in_place(c, funcs, site);
            }
            match &mut eff.kind {
                EffectKind::Create { body, key, .. } => {
                    self.body(body, funcs, site);
                    if let Some(k) = key {
                        self.root_in_place(k, funcs, site);
                    }
                }
                EffectKind::Update { id, body, .. } => {
                    self.root_in_place(id, funcs, site);
                    self.body(body, funcs, site);
                }
                EffectKind::Delete { id, .. } => self.root_in_place(id, funcs, site),
                EffectKind::Link { kind, ids } => {
                    if let Word::Template(e) = kind {
                        self.root_in_place(e, funcs, site);
                    }
                    for (_, e) in ids {
                        self.root_in_place(e, funcs, site);
                    }
                }
                EffectKind::Journal(j) => self.journal(j, funcs, site),
                EffectKind::Task { user, kind, text } => {
                    self.root_in_place(user, funcs, site);
                    if let Word::Template(e) = kind {
                        self.root_in_place(e, funcs, site);
                    }
                    self.root_in_place(text, funcs, site);
                }
                EffectKind::Skip(e) => self.root_in_place(e, funcs, site),
                EffectKind::Use { args, .. } => {
                    for (_, e) in args {
                        self.root_in_place(e, funcs, site);
                    }
                }
                EffectKind::Let(binds) => {
                    for (_, e) in binds {
                        self.root_in_place(e, funcs, site);
                    }
                }
                EffectKind::For { list, body, .. } => {
                    self.root_in_place(list, funcs, site);
                    self.effects(body, funcs, site);
                }
                EffectKind::Group { then, otherwise } => {
                    self.effects(then, funcs, site);
                    self.effects(otherwise, funcs, site);
                }
            }
        }
    }

    /// Folds an expression bottom-up.
    fn fold(&mut self, e: CExpr, funcs: &[CFunc], site: &mut Site, mode: Mode) -> CExpr {
        let (node, loc) = e.into_parts();
        let sub = |x: Box<CExpr>, this: &mut Self, site: &mut Site| {
            Box::new(this.fold(*x, funcs, site, mode))
        };
        let node = match node {
            Node::Settled(s, g) => {
                // The settings are known: the folded side is the one. Otherwise both are
                // kept as they are (the folded side was folded already).
                return match mode {
                    Mode::Special => self.fold(*s, funcs, site, mode),
                    Mode::General => CExpr::new(Node::Settled(s, g), loc),
                };
            }
            n @ (Node::Const(_) | Node::Local(_) | Node::Global(_)) => n,
            Node::Path(base, segs) => {
                let base = sub(base, self, site);
                let segs = segs
                    .into_vec()
                    .into_iter()
                    .map(|s| match s {
                        Seg::Index(ix) => {
                            let ix = self.fold(ix, funcs, site, mode);
                            match &ix.node {
                                Node::Const(Value::Str(k)) => {
                                    Seg::key(crate::value::intern::key(k))
                                }
                                _ => Seg::Index(ix),
                            }
                        }
                        key => key,
                    })
                    .collect::<Vec<_>>();
                join_path(*base, segs, loc)
            }
            Node::Unary(op, x) => Node::Unary(op, sub(x, self, site)),
            Node::Binary(op, a, b) => {
                let a = sub(a, self, site);
                let b = sub(b, self, site);
                return self.binary(op, a, b, loc, mode);
            }
            Node::If(c, a, b) => {
                let c = sub(c, self, site);
                if let Some(k) = self.known(&c, mode) {
                    self.assume(k.paths);
                    let taken = if k.value.truthy() { a } else { b };
                    return self.fold(*taken, funcs, site, mode);
                }
                Node::If(c, sub(a, self, site), sub(b, self, site))
            }
            Node::Call(b, args, lambda) => {
                let args: Vec<CExpr> = args
                    .into_vec()
                    .into_iter()
                    .map(|a| self.fold(a, funcs, site, mode))
                    .collect();
                let lambda = lambda.map(|l| {
                    let CLambda { params, body } = *l;
                    let outer = std::mem::replace(&mut site.repeated, true);
                    let body = self.fold(body, funcs, site, mode);
                    site.repeated = outer;
                    Box::new(CLambda { params, body })
                });
                Node::Call(b, args.into_boxed_slice(), lambda)
            }
            Node::CallUser(i, args) => {
                let args: Vec<CExpr> = args
                    .into_vec()
                    .into_iter()
                    .map(|a| self.fold(a, funcs, site, mode))
                    .collect();
                if mode == Mode::General {
                    match self.inline(i, args, funcs, site) {
                        Ok(inlined) => return self.fold(inlined, funcs, site, mode),
                        Err(args) => Node::CallUser(i, args.into_boxed_slice()),
                    }
                } else {
                    Node::CallUser(i, args.into_boxed_slice())
                }
            }
            Node::Array(items) => Node::Array(
                items
                    .into_vec()
                    .into_iter()
                    .map(|a| self.fold(a, funcs, site, mode))
                    .collect(),
            ),
            Node::Object(pairs) => Node::Object(
                pairs
                    .into_vec()
                    .into_iter()
                    .map(|(k, v)| {
                        let k = match k {
                            ObjKey::Computed(k) => {
                                ObjKey::Computed(self.fold(k, funcs, site, mode))
                            }
                            s => s,
                        };
                        (k, self.fold(v, funcs, site, mode))
                    })
                    .collect(),
            ),
            Node::Record(fields, shape) => {
                let fields: Vec<(Str, u64, CExpr)> = fields
                    .into_vec()
                    .into_iter()
                    .map(|(k, h, v)| (k, h, self.fold(v, funcs, site, mode)))
                    .collect();
                if fields
                    .iter()
                    .all(|(_, _, v)| matches!(v.node, Node::Const(_)))
                {
                    let values = fields
                        .into_iter()
                        .map(|(_, _, v)| match v.node {
                            Node::Const(c) => c,
                            _ => Value::Null,
                        })
                        .collect();
                    Node::Const(Value::object(Map::with_keys_of(&shape, values)))
                } else {
                    Node::Record(fields.into_boxed_slice(), shape)
                }
            }
            Node::Template(id, vars) => Node::Template(
                id,
                vars.into_vec()
                    .into_iter()
                    .map(|(n, v)| (n, self.fold(v, funcs, site, mode)))
                    .collect(),
            ),
        };
        let e = CExpr::new(node, loc);
        self.commit(e, mode)
    }

    /// Replaces an expression by its value when that is known: always when it depends on
    /// no settings; for the rule set's own settings when it is a decision (a boolean, or
    /// null).
    fn commit(&mut self, e: CExpr, mode: Mode) -> CExpr {
        if matches!(e.node, Node::Const(_)) {
            return e;
        }
        let Some(k) = self.known(&e, mode) else {
            return e;
        };
        let decision = matches!(k.value, Value::Bool(_) | Value::Null);
        if !k.paths.is_empty() && !decision {
            return e;
        }
        if !small(&k.value) {
            return e;
        }
        self.assume(k.paths);
        CExpr::new(Node::Const(k.value), e.loc)
    }

    fn binary(&mut self, op: BinOp, a: Box<CExpr>, b: Box<CExpr>, loc: u32, mode: Mode) -> CExpr {
        if matches!(op, BinOp::And | BinOp::Or | BinOp::Coalesce) {
            if let Some(k) = self.known(&a, mode) {
                let decided = match op {
                    BinOp::And => !k.value.truthy(),
                    BinOp::Or => k.value.truthy(),
                    _ => !k.value.is_null(),
                };
                if decided {
                    // `false and x`, `true or x`: x is never evaluated; `v ?? x`: v.
                    let value = match op {
                        BinOp::And => Value::bool(false),
                        BinOp::Or => Value::bool(true),
                        _ => k.value.clone(),
                    };
                    if op != BinOp::Coalesce || small(&value) {
                        self.assume(k.paths);
                        return CExpr::new(Node::Const(value), loc);
                    }
                    if k.paths.is_empty() {
                        return *a;
                    }
                } else if op == BinOp::Coalesce || boolean(&b) {
                    // `null ?? x`: x; `true and x`, `false or x` with x a boolean: x.
                    self.assume(k.paths);
                    return *b;
                }
            }
            // `(x ?? v) ?? y` with v not null: `x ?? v`.
            if op == BinOp::Coalesce {
                if let Node::Binary(BinOp::Coalesce, _, inner) = &a.node {
                    if matches!(&inner.node, Node::Const(v) if !v.is_null()) {
                        return *a;
                    }
                }
            }
        }
        let e = CExpr::new(Node::Binary(op, a, b), loc);
        self.commit(e, mode)
    }

    fn assume(&mut self, paths: Vec<Box<[Str]>>) {
        self.assumed.extend(paths);
    }

    /// The value of an expression if it is known at compile time: a literal, a settings path
    /// (for the rule set's own settings), or pure operations of known values.
    fn known(&self, e: &CExpr, mode: Mode) -> Option<Known> {
        match &e.node {
            Node::Const(v) => Some(Known::plain(v.clone())),
            Node::Path(base, segs) => {
                if mode != Mode::Special {
                    return None;
                }
                let Node::Global(g) = base.node else {
                    return None;
                };
                if Some(g) != self.settings_global {
                    return None;
                }
                let mut path = Vec::with_capacity(segs.len());
                for s in segs.iter() {
                    let Seg::Key(k, _) = s else { return None };
                    path.push(k.clone());
                }
                let path: Box<[Str]> = path.into_boxed_slice();
                Some(Known {
                    value: walk(self.settings, &path),
                    paths: vec![path],
                })
            }
            Node::Unary(op, x) => {
                let k = self.known(x, mode)?;
                let value = match op {
                    UnOp::Not => Value::bool(!k.value.truthy()),
                    UnOp::Neg => crate::eval::ops::neg(&k.value).ok()?,
                };
                Some(Known {
                    value,
                    paths: k.paths,
                })
            }
            Node::Binary(op, a, b) => {
                let ka = self.known(a, mode)?;
                match op {
                    BinOp::And if !ka.value.truthy() => {
                        return Some(Known {
                            value: Value::bool(false),
                            paths: ka.paths,
                        })
                    }
                    BinOp::Or if ka.value.truthy() => {
                        return Some(Known {
                            value: Value::bool(true),
                            paths: ka.paths,
                        })
                    }
                    BinOp::Coalesce if !ka.value.is_null() => return Some(ka),
                    _ => {}
                }
                let kb = self.known(b, mode)?;
                let value = match op {
                    BinOp::And | BinOp::Or => Value::bool(kb.value.truthy()),
                    BinOp::Coalesce => kb.value,
                    _ => crate::eval::ops::binary(*op, &ka.value, &kb.value).ok()?,
                };
                let mut paths = ka.paths;
                paths.extend(kb.paths);
                Some(Known { value, paths })
            }
            Node::If(c, a, b) => {
                let kc = self.known(c, mode)?;
                let mut k = self.known(if kc.value.truthy() { a } else { b }, mode)?;
                k.paths.extend(kc.paths);
                Some(k)
            }
            Node::Call(b, args, None) => {
                let Imp::Pure(fun) = b.imp else { return None };
                if b.reads_world || b.name == "range" {
                    return None;
                }
                let mut values = Vec::with_capacity(args.len());
                let mut paths = Vec::new();
                for a in args.iter() {
                    let k = self.known(a, mode)?;
                    values.push(k.value);
                    paths.extend(k.paths);
                }
                if let Size::Before(bound) = b.size {
                    if bound(&values, CONST_MAX as u64) > CONST_MAX as u64 {
                        return None;
                    }
                }
                let value = fun(&values).ok()?;
                Some(Known { value, paths })
            }
            _ => None,
        }
    }

    /// `f(args)` with `f`'s body in its place, when `f` is small and every argument can be
    /// read again where its parameter is used (or not at all) with the same value and no
    /// effect. Calls whose arguments are all the same in every rule (`c2m_lines(order)`)
    /// stay calls: their results are shared within an evaluation.
    fn inline(
        &mut self,
        i: u32,
        args: Vec<CExpr>,
        funcs: &[CFunc],
        site: &mut Site,
    ) -> Result<CExpr, Vec<CExpr>> {
        let Some(f) = funcs.get(i as usize) else {
            return Err(args);
        };
        let Some(body) = &f.body else {
            return Err(args);
        };
        let nparams = f.params.len();
        if !site.repeated
            || args.len() != nparams
            || args.iter().all(event_level)
            || !args.iter().all(|a| duplicable(a, site))
            || size(body) > INLINE_MAX
        {
            return Err(args);
        }
        let params = u32::try_from(nparams).unwrap_or(u32::MAX);
        let base = site.frame_size;
        site.frame_size = site
            .frame_size
            .saturating_add(f.frame_size.saturating_sub(params));
        Ok(subst(body, &args, params, base))
    }
}

/// Whether an expression's value is always a boolean (or it fails): `x` stands for `true and
/// x` then.
fn boolean(e: &CExpr) -> bool {
    match &e.node {
        Node::Const(v) => matches!(v, Value::Bool(_)),
        Node::Unary(UnOp::Not, _) => true,
        Node::Binary(op, _, _) => matches!(
            op,
            BinOp::And
                | BinOp::Or
                | BinOp::Eq
                | BinOp::Ne
                | BinOp::Lt
                | BinOp::Le
                | BinOp::Gt
                | BinOp::Ge
                | BinOp::In
        ),
        _ => false,
    }
}

/// Whether an argument is the same in every rule of an evaluation (see the evaluator's
/// shared calls): a literal, a global, or keys below one.
fn event_level(e: &CExpr) -> bool {
    match &e.node {
        Node::Const(_) | Node::Global(_) => true,
        Node::Path(base, segs) => {
            matches!(base.node, Node::Global(_)) && segs.iter().all(|s| matches!(s, Seg::Key(..)))
        }
        _ => false,
    }
}

/// Whether an argument can be read wherever its parameter is used, as often as it is, with
/// the same value and no effect: a literal, a global, a slot that is not a lazily computed
/// `let` (a parameter, a loop or lambda variable, an `as` result), or keys below those.
fn duplicable(e: &CExpr, site: &Site) -> bool {
    match &e.node {
        Node::Const(_) | Node::Global(_) => true,
        Node::Local(slot) => !site.is_let(*slot),
        Node::Path(base, segs) => {
            segs.iter().all(|s| matches!(s, Seg::Key(..)))
                && matches!(base.node, Node::Global(_) | Node::Local(_))
                && duplicable(base, site)
        }
        _ => false,
    }
}

/// A copy of a function body with its parameters replaced by the arguments, and its other
/// slots (lambda parameters) moved to `base` onwards in the caller's frame.
fn subst(e: &CExpr, args: &[CExpr], params: u32, base: u32) -> CExpr {
    let slot = |s: u32| base.saturating_add(s.saturating_sub(params));
    let node = match &e.node {
        Node::Local(s) if *s < params => {
            return args
                .get(*s as usize)
                .cloned()
                .unwrap_or_else(|| placeholder(e.loc));
        }
        Node::Local(s) => Node::Local(slot(*s)),
        Node::Const(_) | Node::Global(_) => e.node.clone(),
        Node::Path(b, segs) => {
            let b = subst(b, args, params, base);
            let segs: Vec<Seg> = segs
                .iter()
                .map(|s| match s {
                    Seg::Index(ix) => Seg::Index(subst(ix, args, params, base)),
                    key => key.clone(),
                })
                .collect();
            join_path(b, segs, e.loc)
        }
        Node::Unary(op, x) => Node::Unary(*op, Box::new(subst(x, args, params, base))),
        Node::Binary(op, a, b) => Node::Binary(
            *op,
            Box::new(subst(a, args, params, base)),
            Box::new(subst(b, args, params, base)),
        ),
        Node::If(c, a, b) => Node::If(
            Box::new(subst(c, args, params, base)),
            Box::new(subst(a, args, params, base)),
            Box::new(subst(b, args, params, base)),
        ),
        Node::Call(f, xs, lambda) => Node::Call(
            f,
            xs.iter().map(|x| subst(x, args, params, base)).collect(),
            lambda.as_ref().map(|l| {
                Box::new(CLambda {
                    params: l.params.iter().map(|p| slot(*p)).collect(),
                    body: subst(&l.body, args, params, base),
                })
            }),
        ),
        Node::CallUser(i, xs) => Node::CallUser(
            *i,
            xs.iter().map(|x| subst(x, args, params, base)).collect(),
        ),
        Node::Array(xs) => Node::Array(xs.iter().map(|x| subst(x, args, params, base)).collect()),
        Node::Object(pairs) => Node::Object(
            pairs
                .iter()
                .map(|(k, v)| {
                    let k = match k {
                        ObjKey::Computed(k) => ObjKey::Computed(subst(k, args, params, base)),
                        s => s.clone(),
                    };
                    (k, subst(v, args, params, base))
                })
                .collect(),
        ),
        Node::Record(fields, shape) => Node::Record(
            fields
                .iter()
                .map(|(k, h, v)| (k.clone(), *h, subst(v, args, params, base)))
                .collect(),
            shape.clone(),
        ),
        Node::Template(id, vars) => Node::Template(
            *id,
            vars.iter()
                .map(|(n, v)| (n.clone(), subst(v, args, params, base)))
                .collect(),
        ),
        Node::Settled(s, g) => Node::Settled(
            Box::new(subst(s, args, params, base)),
            Box::new(subst(g, args, params, base)),
        ),
    };
    CExpr::new(node, e.loc)
}

/// `base` followed by `segs`: one path (a path below a path is joined into one; keys into a
/// literal are read now).
fn join_path(base: CExpr, segs: Vec<Seg>, loc: u32) -> Node {
    if segs.is_empty() {
        return base.node;
    }
    match base.node {
        Node::Path(inner, first) => {
            let mut all = first.into_vec();
            all.extend(segs);
            Node::Path(inner, all.into_boxed_slice())
        }
        Node::Const(v) if segs.iter().all(|s| matches!(s, Seg::Key(..))) => {
            let mut cur = v;
            for s in &segs {
                if let Seg::Key(k, _) = s {
                    cur = match &cur {
                        Value::Object(o) => o.get(&**k).cloned().unwrap_or_default(),
                        _ => Value::Null,
                    };
                }
            }
            let _ = loc;
            Node::Const(cur)
        }
        node => Node::Path(
            Box::new(CExpr::new(node, base.loc)),
            segs.into_boxed_slice(),
        ),
    }
}

/// The value at keys `path` of `v` (null where a key is missing).
fn walk(v: &Value, path: &[Str]) -> Value {
    let mut cur = v;
    for k in path {
        match cur {
            Value::Object(o) => match o.get(&**k) {
                Some(next) => cur = next,
                None => return Value::Null,
            },
            _ => return Value::Null,
        }
    }
    cur.clone()
}

/// Whether two values are the same in every respect a rule can see: type, value, and the
/// order of keys.
fn identical(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Dec(x), Value::Dec(y)) => x == y && x.scale() == y.scale(),
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            std::sync::Arc::ptr_eq(x, y)
                || (x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| identical(a, b)))
        }
        (Value::Object(x), Value::Object(y)) => {
            std::sync::Arc::ptr_eq(x, y)
                || (x.len() == y.len()
                    && x.iter()
                        .zip(y.iter())
                        .all(|((ka, va), (kb, vb))| ka == kb && identical(va, vb)))
        }
        _ => false,
    }
}

/// Whether a value is small enough to be a constant of the program.
fn small(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Dec(_) => true,
        Value::Str(s) => s.len() <= CONST_MAX,
        Value::Ref(_) => false,
        _ => v.to_json_within(CONST_MAX).is_some(),
    }
}

fn placeholder(loc: u32) -> CExpr {
    CExpr::new(Node::Const(Value::Null), loc)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::eval::{EvalErrorKind, EvalOptions, Event};
    use crate::ruleset::RuleSet;
    use crate::value::Value;
    use crate::world::EmptyWorld;

    const SETTINGS: &str = "s:\n  flag: true\n  mode: net\n  list: []\n  url: https://x.test\n";

    /// A rule set whose function `f(x)` has `body`, called once with an event-level argument
    /// (a call shared by the evaluation) and once from a lambda (inlined).
    fn files(body: &str) -> Vec<(String, String)> {
        let text = format!(
            "events:\n  e:\n    fields: {{x: a value}}\nfunctions:\n  g(y): 'if y == null then settings.s.mode else y'\n  f(x): '{}'\nrules:\n  - id: r\n    on: e\n    let:\n      v: f(x)\n      w: map([x, null], i => f(i))\n    do:\n      - journal: {{code: V, level: info, text: 'to_json([v, w])'}}\n",
            body.replace('\'', "''")
        );
        vec![("t.yaml".to_owned(), text)]
    }

    fn event(x: &Value) -> Event {
        let mut doc = crate::value::Map::default();
        doc.insert("event".into(), Value::str("e"));
        doc.insert("x".into(), x.clone());
        Event::from_document(&Value::object(doc)).expect("event")
    }

    /// The plan as JSON, or the error as text (with its place).
    fn outcome(set: &RuleSet, ev: &Event, settings: Option<&Value>) -> String {
        let opts = EvalOptions {
            settings,
            ..EvalOptions::default()
        };
        match set.evaluate_with(ev, &EmptyWorld, opts) {
            Ok(plan) => serde_json::to_string(&plan).unwrap_or_default(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// The steps an evaluation takes: the smallest budget it succeeds with.
    fn steps(set: &RuleSet, ev: &Event, settings: Option<&Value>) -> u64 {
        let run = |budget| {
            let opts = EvalOptions {
                settings,
                budget,
                ..EvalOptions::default()
            };
            match set.evaluate_with(ev, &EmptyWorld, opts) {
                Err(e) => e.kind != EvalErrorKind::Budget,
                Ok(_) => true,
            }
        };
        let (mut lo, mut hi) = (0u64, 100_000u64);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if run(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    fn sets(body: &str) -> (RuleSet, RuleSet) {
        let files = files(body);
        let settings = Some(("settings.yaml", SETTINGS));
        let (folded, _) = RuleSet::from_texts(&files, settings)
            .unwrap_or_else(|d| panic!("loads: {}", d.render(false)));
        let written = RuleSet::unfolded(&files, settings)
            .unwrap_or_else(|d| panic!("loads: {}", d.render(false)));
        (folded, written)
    }

    fn overrides(flag: &Value, mode: &Value, list: &Value) -> Value {
        let mut s = crate::value::Map::default();
        s.insert("flag".into(), flag.clone());
        s.insert("mode".into(), mode.clone());
        s.insert("list".into(), list.clone());
        let mut o = crate::value::Map::default();
        o.insert("s".into(), Value::object(s));
        Value::object(o)
    }

    const DECIDES: &str = "if not settings.s.flag then null else if settings.s.mode == \"net\" and empty(settings.s.list) then g(x) ?? \"none\" else \"percent\"";

    #[test]
    fn decisions_on_the_own_settings_are_taken_once() {
        let (folded, written) = sets(DECIDES);
        let ev = event(&Value::str("a"));
        assert!(!folded.prog.assumed.is_empty());
        assert_eq!(outcome(&folded, &ev, None), outcome(&written, &ev, None));
        // The folded code skips the decisions: fewer steps than the code as written.
        assert!(
            steps(&folded, &ev, None) < steps(&written, &ev, None),
            "{} < {}",
            steps(&folded, &ev, None),
            steps(&written, &ev, None)
        );
        // The same settings given as overrides (another object, the same values): folded.
        let same = folded.settings_with(&Value::Null);
        let copy: Value = serde_json::from_str(&same.to_json()).expect("json");
        assert_eq!(steps(&folded, &ev, Some(&copy)), steps(&folded, &ev, None));
    }

    #[test]
    fn other_settings_run_the_code_as_written() {
        let (folded, written) = sets(DECIDES);
        let ev = event(&Value::Null);
        for (flag, mode, list) in [
            (Value::bool(false), Value::str("net"), Value::array(vec![])),
            (
                Value::bool(true),
                Value::str("percent"),
                Value::array(vec![]),
            ),
            (
                Value::bool(true),
                Value::str("net"),
                Value::array(vec![Value::str("a")]),
            ),
            (Value::bool(true), Value::Int(1), Value::array(vec![])),
        ] {
            let s = folded.settings_with(&overrides(&flag, &mode, &list));
            let got = outcome(&folded, &ev, Some(&s));
            assert_eq!(
                got,
                outcome(&written, &ev, Some(&s)),
                "{flag:?} {mode:?} {list:?}"
            );
            // The folded result for the own settings would be different: these did run the
            // code as written.
            assert_ne!(
                got,
                outcome(&folded, &ev, None),
                "{flag:?} {mode:?} {list:?}"
            );
        }
    }

    #[test]
    fn a_value_that_decides_nothing_is_not_assumed() {
        // `settings.s.url` only goes into a text: a pair whose runner fills in another URL
        // still runs the folded code.
        let (folded, written) =
            sets("if settings.s.flag then format(\"{}/{}\", settings.s.url, x) else null");
        let paths: Vec<String> = folded
            .prog
            .assumed
            .iter()
            .map(|(p, _)| p.join("."))
            .collect();
        assert_eq!(paths, ["s.flag"]);
        let ev = event(&Value::str("a"));
        let mut o = crate::value::Map::default();
        let mut s = crate::value::Map::default();
        s.insert("url".into(), Value::str("https://y.test"));
        o.insert("s".into(), Value::object(s));
        let other = folded.settings_with(&Value::object(o));
        let got = outcome(&folded, &ev, Some(&other));
        assert!(got.contains("https://y.test/a"), "{got}");
        assert_eq!(got, outcome(&written, &ev, Some(&other)));
        assert!(steps(&folded, &ev, Some(&other)) < steps(&written, &ev, Some(&other)));
    }

    #[test]
    fn a_folded_error_keeps_its_place() {
        // `1 + x` fails for a text: inlined from `f`, the error still points into `f`.
        let (folded, written) = sets("if settings.s.flag then 1 + x else 0");
        let ev = event(&Value::str("a"));
        let got = outcome(&folded, &ev, None);
        assert!(got.starts_with("error: rule `r` at t.yaml:"), "{got}");
        assert_eq!(got, outcome(&written, &ev, None));
    }

    fn leaf() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("x".to_owned()),
            Just("x.a".to_owned()),
            Just("settings.s.flag".to_owned()),
            Just("settings.s.mode".to_owned()),
            Just("settings.s.list".to_owned()),
            Just("settings.s.url".to_owned()),
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("0".to_owned()),
            Just("1.5".to_owned()),
            Just("\"net\"".to_owned()),
            Just("[]".to_owned()),
            Just("{a: 1}".to_owned()),
        ]
    }

    fn expr() -> impl Strategy<Value = String> {
        leaf().prop_recursive(4, 40, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} == {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} != {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} ?? {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} + {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} < {b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} in {b})")),
                inner.clone().prop_map(|a| format!("(not {a})")),
                inner.clone().prop_map(|a| format!("(-{a})")),
                inner.clone().prop_map(|a| format!("g({a})")),
                inner.clone().prop_map(|a| format!("empty({a})")),
                inner.clone().prop_map(|a| format!("string({a})")),
                inner.clone().prop_map(|a| format!("{{a: {a}, b: x}}.a")),
                inner.clone().prop_map(|a| format!("compact([{a}, x])")),
                (inner.clone(), inner.clone(), inner)
                    .prop_map(|(c, a, b)| format!("(if {c} then {a} else {b})")),
            ]
        })
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::bool),
            (-2i64..3).prop_map(Value::Int),
            Just(Value::str("net")),
            Just(Value::str("")),
            Just(Value::array(vec![])),
            Just(Value::array(vec![Value::str("net")])),
            (-2i64..3).prop_map(|a| {
                let mut m = crate::value::Map::default();
                m.insert("a".into(), Value::Int(a));
                Value::object(m)
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Folded and as written, the rules give the same plan (or the same error, at the
        /// same place) for any event, with the own settings and with any others.
        #[test]
        fn folded_code_gives_what_the_code_as_written_gives(
            body in expr(),
            xs in proptest::collection::vec(value(), 3),
            flag in value(),
            mode in value(),
            list in value(),
        ) {
            let (folded, written) = sets(&body);
            let other = folded.settings_with(&overrides(&flag, &mode, &list));
            for x in &xs {
                let ev = event(x);
                prop_assert_eq!(outcome(&folded, &ev, None), outcome(&written, &ev, None), "{}", body);
                prop_assert_eq!(
                    outcome(&folded, &ev, Some(&other)),
                    outcome(&written, &ev, Some(&other)),
                    "{}", body
                );
            }
        }
    }
}
