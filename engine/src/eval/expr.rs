//! Evaluation of compiled expressions.

use super::ops;
use super::{Call, Ctx, EvalErrorKind, Fail, Frame, ENTRY_BYTES, SLOT_BYTES};
use crate::compile::node::{CExpr, CLambda, Cond, KeyAt, Node, ObjKey, Op, Seg, View};
use crate::funcs::{Builtin, Imp, Size};
use crate::syntax::ast::{BinOp, UnOp};

use crate::value::{Hasher, Map, PathKey, Str, Value};

impl<'a> Ctx<'a> {
    /// Evaluates an expression in a frame: spends its step, then calls the function its
    /// shape was given when it was compiled ([`op_for`]).
    #[inline(always)]
    pub(crate) fn eval(&mut self, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
        if self.budget == 0 {
            return self.out_of_steps(e.loc);
        }
        self.budget -= 1;
        #[cfg(test)]
        if self.plain || self.unthreaded {
            return self.dispatch(e, frame);
        }
        (e.op())(self, e, frame)
    }

    /// The step budget is spent: the error [`Ctx::tick`] gives.
    #[cold]
    #[inline(never)]
    fn out_of_steps(&mut self, loc: crate::compile::node::LocId) -> Result<Value, Fail> {
        self.tick(1, loc).map(|()| Value::Null)
    }

    /// The general evaluation of a node whose step is spent: one match over every kind of
    /// node. What [`op_general`] does, what every specialised op falls back to if it ever
    /// met a node of another shape, and (in tests) what the ops are compared with.
    fn dispatch(&mut self, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
        match &e.node {
            Node::Const(v) => Ok(v.clone()),
            Node::Local(slot) => self.local(*slot, frame),
            Node::Global(i) => Ok(self.globals.get(*i as usize).cloned().unwrap_or_default()),
            Node::Path(base, segs) => self.path(base, segs, frame),
            Node::Unary(UnOp::Not, x) => Ok(Value::bool(!self.test(x, frame)?)),
            Node::Unary(UnOp::Neg, x) => self.neg(x, frame, e),
            Node::Binary(op, a, b) => self.binary(*op, a, b, frame, e),
            Node::If(c, a, b) => {
                let branch = if self.test(c, frame)? { a } else { b };
                self.eval(branch, frame)
            }
            Node::Call(f, args, lambda) => self.call(f, args, lambda.as_deref(), frame, e),
            Node::CallUser(i, args) => self.call_user(*i, args, frame),
            Node::Array(items) => self.array(items, frame, e),
            Node::Object(pairs) => self.object(pairs, frame, e),
            Node::Record(fields, shape) => self.record(fields, shape, frame, e),
            Node::Settled(folded, written) => {
                self.eval(if self.settled { folded } else { written }, frame)
            }
            Node::Template(id, vars) => self.template(*id, vars, frame, e),
        }
    }

    /// A specialised op met a node of another shape (which [`op_for`] never gives it):
    /// the general evaluation, counted in tests.
    #[cold]
    #[inline(never)]
    fn mismatch(&mut self, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
        #[cfg(test)]
        super::MISMATCHES.with(|m| m.set(m.get() + 1));
        self.dispatch(e, frame)
    }

    /// `-x`.
    #[inline(never)]
    fn neg(&mut self, x: &'a CExpr, frame: &mut Frame<'a>, e: &CExpr) -> Result<Value, Fail> {
        let v = self.eval(x, frame)?;
        ops::neg(&v).map_err(|m| self.error(EvalErrorKind::Type, e.loc, m))
    }

    /// A call of a built-in: its arguments are evaluated into an array of their own
    /// number (no default-filled spare places to fill and drop), then it is applied.
    #[inline(never)]
    fn call(
        &mut self,
        f: &'a Builtin,
        args: &'a [CExpr],
        lambda: Option<&'a CLambda>,
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        match args {
            [] => self.apply(f, lambda, &mut [], frame, e),
            [a0] => {
                if let (Imp::Pure(fun), None, true) = (&f.imp, f.owned, self.fast()) {
                    return self.call_pure_by_ref(f.name, *fun, f.size, a0, frame, e);
                }
                let mut values = [self.eval(a0, frame)?];
                self.apply(f, lambda, &mut values, frame, e)
            }
            [a0, a1] => {
                let v0 = self.eval(a0, frame)?;
                let mut values = [v0, self.eval(a1, frame)?];
                self.apply(f, lambda, &mut values, frame, e)
            }
            [a0, a1, a2] => {
                let v0 = self.eval(a0, frame)?;
                let v1 = self.eval(a1, frame)?;
                let mut values = [v0, v1, self.eval(a2, frame)?];
                self.apply(f, lambda, &mut values, frame, e)
            }
            _ => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(self.eval(a, frame)?);
                }
                self.apply(f, lambda, &mut values, frame, e)
            }
        }
    }

    /// Applies a built-in to its arguments' values.
    #[inline(never)]
    fn apply(
        &mut self,
        f: &'a Builtin,
        lambda: Option<&'a CLambda>,
        values: &mut [Value],
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        self.apply_here(f, lambda, values, frame, e)
    }

    /// [`Ctx::apply`]'s work, inlined into the op of its shape.
    #[inline(always)]
    fn apply_here(
        &mut self,
        f: &'a Builtin,
        lambda: Option<&'a CLambda>,
        values: &mut [Value],
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        match f.imp {
            Imp::Pure(fun) => {
                if let Size::Before(size) = f.size {
                    let bytes = size(values, self.bytes_left);
                    self.charge(bytes, e.loc)?;
                }
                // The arguments are this call's own: a built-in that can use them
                // in place is given them.
                let v = match f.owned {
                    Some(owned) => owned(values),
                    None => fun(values),
                };
                let v = v.map_err(|m| {
                    self.error(EvalErrorKind::Type, e.loc, format!("{}(): {m}", f.name))
                })?;
                if let Size::Result = f.size {
                    self.charge(crate::funcs::shallow_bytes(&v), e.loc)?;
                }
                Ok(v)
            }
            Imp::Ctx(fun) => {
                let mut call = Call {
                    cx: self,
                    frame,
                    lambda,
                    loc: e.loc,
                };
                fun(&mut call, values)
            }
        }
    }

    /// A list literal.
    #[inline(never)]
    fn array(
        &mut self,
        items: &'a [CExpr],
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        self.charge(items.len() as u64 * SLOT_BYTES, e.loc)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.eval(item, frame)?);
        }
        Ok(Value::array(out))
    }

    /// An object literal with computed keys (or one not known as a record).
    #[inline(never)]
    fn object(
        &mut self,
        pairs: &'a [(ObjKey, CExpr)],
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        self.charge(pairs.len() as u64 * ENTRY_BYTES, e.loc)?;
        let mut map = Map::with_capacity_and_hasher(pairs.len(), Hasher::default());
        for (k, v) in pairs {
            let key = match k {
                ObjKey::Static(k) => k.clone(),
                ObjKey::Computed(k) => {
                    let kv = self.eval(k, frame)?;
                    match kv {
                        Value::Str(s) => s,
                        Value::Int(_) | Value::Dec(_) | Value::Bool(_) => {
                            self.charge(32, k.loc)?;
                            kv.to_text().into()
                        }
                        other => {
                            return Err(self.error(
                                EvalErrorKind::Type,
                                k.loc,
                                format!(
                                    "an object key must be a string, got {}",
                                    other.type_name()
                                ),
                            ))
                        }
                    }
                }
            };
            let value = self.eval(v, frame)?;
            map.insert(key, value);
        }
        Ok(Value::object(map))
    }

    /// An object literal of static keys: the keys (shared, not copied) come from the
    /// literal's own empty object; the values are evaluated in order.
    #[inline(never)]
    fn record(
        &mut self,
        fields: &'a [(Str, u64, CExpr)],
        shape: &'a Map,
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        self.record_here(fields, shape, frame, e)
    }

    /// [`Ctx::record`]'s work, inlined into the op of its shape.
    #[inline(always)]
    fn record_here(
        &mut self,
        fields: &'a [(Str, u64, CExpr)],
        shape: &'a Map,
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        self.charge(fields.len() as u64 * ENTRY_BYTES, e.loc)?;
        let mut values = Vec::with_capacity(fields.len());
        for (_, _, v) in fields {
            values.push(self.eval(v, frame)?);
        }
        Ok(Value::object(Map::with_keys_of(shape, values)))
    }

    /// A template.
    #[inline(never)]
    fn template(
        &mut self,
        id: u32,
        vars: &'a [(Str, CExpr)],
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        let mut values = Vec::with_capacity(vars.len());
        for (name, accessor) in vars {
            values.push((name.clone(), self.eval(accessor, frame)?));
        }
        match crate::template::render(self.prog, id, self.settings, values, self.bytes_left) {
            Ok((text, built)) => {
                self.charge(built.saturating_add(text.len() as u64), e.loc)?;
                Ok(Value::from(text))
            }
            Err(crate::template::RenderError::Failed(m)) => {
                Err(self.error(EvalErrorKind::Type, e.loc, m))
            }
            Err(crate::template::RenderError::OutOfBytes) => {
                Err(self.out_of_bytes(u64::MAX, e.loc))
            }
            Err(crate::template::RenderError::OutOfFuel) => {
                Err(self.error(EvalErrorKind::Limit, e.loc, crate::template::OUT_OF_FUEL))
            }
        }
    }

    /// Whether the fast paths are on: always, but in tests that compare them with the
    /// general path.
    #[inline(always)]
    fn fast(&self) -> bool {
        #[cfg(test)]
        return !self.plain;
        #[cfg(not(test))]
        true
    }

    /// Spends one step of the budget for node `loc`, as [`Ctx::eval`] does on entry.
    #[inline(always)]
    fn step(&mut self, loc: crate::compile::node::LocId) -> Result<(), Fail> {
        if self.budget == 0 {
            return self.tick(1, loc);
        }
        self.budget -= 1;
        Ok(())
    }

    /// Whether a condition holds: the truthiness of its value, found without building the
    /// value where it is a comparison with `==`/`!=`, `and`, `or`, `not` or anything
    /// [`Ctx::with_ref`] reads by reference. The same steps, errors and order of
    /// evaluation as `eval(e)?.truthy()`.
    #[inline(always)]
    pub(crate) fn test(&mut self, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
        if !self.fast() {
            return Ok(self.eval(e, frame)?.truthy());
        }
        #[cfg(test)]
        if self.unthreaded {
            return self.test_general(e, frame);
        }
        // The test op of the node's shape, decided when it was built ([`cond_for`]).
        (TEST_OPS[e.cond() as usize])(self, e, frame)
    }

    /// [`Ctx::test`] by one match over the shapes: what every test op falls back to if it
    /// ever met a node of another shape, and (in tests) what they are compared with.
    fn test_general(&mut self, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
        match &e.node {
            Node::Binary(op @ (BinOp::Eq | BinOp::Ne), a, b) => {
                self.step(e.loc)?;
                let ne = *op == BinOp::Ne;
                if let Node::Const(bc) = &b.node {
                    return self.with_ref(a, frame, |av| av.equals(bc) != ne);
                }
                if let Node::Const(ac) = &a.node {
                    return self.with_ref(b, frame, |bv| ac.equals(bv) != ne);
                }
                let av = self.eval(a, frame)?;
                self.with_ref(b, frame, |bv| av.equals(bv) != ne)
            }
            Node::Binary(BinOp::And, a, b) => {
                self.step(e.loc)?;
                Ok(self.test(a, frame)? && self.test(b, frame)?)
            }
            Node::Binary(BinOp::Or, a, b) => {
                self.step(e.loc)?;
                Ok(self.test(a, frame)? || self.test(b, frame)?)
            }
            Node::Unary(UnOp::Not, x) => {
                self.step(e.loc)?;
                Ok(!self.test(x, frame)?)
            }
            Node::Settled(folded, written) => {
                self.step(e.loc)?;
                self.test(if self.settled { folded } else { written }, frame)
            }
            _ => self.with_ref(e, frame, Value::truthy),
        }
    }

    /// A test op met a node of a shape it was not chosen for: the general test, counted
    /// in tests.
    #[cold]
    #[inline(never)]
    fn test_mismatch(&mut self, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
        #[cfg(test)]
        super::MISMATCHES.with(|m| m.set(m.get() + 1));
        self.test_general(e, frame)
    }

    /// A call of a pure built-in of one argument that does not take it by value
    /// (`empty(x)`, `string(x)`, `type(x)`): the argument is looked at by reference.
    /// The same charges, result and errors as the general call.
    #[inline(never)]
    fn call_pure_by_ref(
        &mut self,
        name: &'static str,
        fun: crate::funcs::PureFn,
        size: Size,
        arg: &'a CExpr,
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        self.call_pure_by_ref_here(name, fun, size, arg, frame, e)
    }

    /// [`Ctx::call_pure_by_ref`]'s work, inlined into the op of its shape.
    #[inline(always)]
    fn call_pure_by_ref_here(
        &mut self,
        name: &'static str,
        fun: crate::funcs::PureFn,
        size: Size,
        arg: &'a CExpr,
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        let left = self.bytes_left;
        let result = self.with_ref(arg, frame, |v| {
            let values = std::slice::from_ref(v);
            match size {
                Size::Before(size) => {
                    let bytes = size(values, left);
                    if bytes > left {
                        return Err(bytes);
                    }
                    Ok((bytes, fun(values)))
                }
                Size::Free | Size::Result => Ok((0, fun(values))),
            }
        })?;
        let v = match result {
            Ok((bytes, v)) => {
                self.charge(bytes, e.loc)?;
                v
            }
            Err(bytes) => return Err(self.out_of_bytes(bytes, e.loc)),
        };
        let v = v.map_err(|m| self.error(EvalErrorKind::Type, e.loc, format!("{name}(): {m}")))?;
        if let Size::Result = size {
            self.charge(crate::funcs::shallow_bytes(&v), e.loc)?;
        }
        Ok(v)
    }

    fn local(&mut self, slot: u32, frame: &mut Frame<'a>) -> Result<Value, Fail> {
        if let Some(Some(v)) = frame.slots.get(slot as usize) {
            return Ok(v.clone());
        }
        let lets = frame.lets;
        let Some(Some(li)) = lets.by_slot.get(slot as usize) else {
            return Ok(Value::Null);
        };
        let Some(def) = lets.items.get(*li as usize) else {
            return Ok(Value::Null);
        };
        self.enter(def.expr.loc)?;
        let v = self.eval(&def.expr, frame);
        self.nesting -= 1;
        let v = v?;
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.record_let(self.flow.as_deref(), &def.name, &v);
        }
        frame.set(slot, v.clone());
        Ok(v)
    }

    #[inline(never)]
    fn path(
        &mut self,
        base: &'a CExpr,
        segs: &'a [Seg],
        frame: &mut Frame<'a>,
    ) -> Result<Value, Fail> {
        // Fast path: keys only below a local or a global: walk by reference, clone the end.
        if segs.iter().all(|s| matches!(s, Seg::Key(..))) {
            match base.node {
                Node::Local(slot) => {
                    if frame.slots.get(slot as usize).is_some_and(Option::is_none) {
                        self.local(slot, frame)?;
                    }
                    match frame.slots.get(slot as usize) {
                        Some(Some(root)) => {
                            if let Some(v) = walk_keys(root, segs) {
                                return Ok(v);
                            }
                        }
                        _ => return Ok(Value::Null),
                    }
                }
                Node::Global(i) => {
                    if let Some(root) = self.globals.get(i as usize) {
                        if let Some(v) = walk_keys(root, segs) {
                            return Ok(v);
                        }
                    }
                }
                _ => {}
            }
        }
        self.path_general(base, segs, frame)
    }

    /// [`Ctx::path`] beyond its fast path: a path with index steps, or below anything
    /// but a local or a global, or one that meets a pending reference.
    #[inline(never)]
    fn path_general(
        &mut self,
        base: &'a CExpr,
        segs: &'a [Seg],
        frame: &mut Frame<'a>,
    ) -> Result<Value, Fail> {
        self.path_general_here(base, segs, frame)
    }

    /// [`Ctx::path_general`]'s work, inlined into the op of its shape.
    #[inline(always)]
    fn path_general_here(
        &mut self,
        base: &'a CExpr,
        segs: &'a [Seg],
        frame: &mut Frame<'a>,
    ) -> Result<Value, Fail> {
        let root = self.eval(base, frame)?;
        let mut owned: Option<Value> = None;
        let mut cur: &Value = &root;
        for seg in segs {
            let next: Option<Value> = match seg {
                Seg::Key(k, hash) => match cur {
                    Value::Object(o) => match key_of(o, k, hash) {
                        Some(v) => {
                            // Borrow into the object when we can; it lives in `root` or `owned`.
                            if owned.is_none() {
                                cur = v;
                                continue;
                            }
                            Some(v.clone())
                        }
                        None => return Ok(Value::Null),
                    },
                    Value::Ref(r) => Some(r.field(PathKey::Key(k.clone()))),
                    _ => return Ok(Value::Null),
                },
                Seg::Index(ix) => {
                    let iv = self.eval(ix, frame)?;
                    Some(index_value(cur, &iv))
                }
            };
            if let Some(v) = next {
                owned = Some(v);
                cur = owned.as_ref().unwrap_or(&Value::Null);
            }
        }
        Ok(cur.clone())
    }

    #[inline(never)]
    fn binary(
        &mut self,
        op: BinOp,
        a: &'a CExpr,
        b: &'a CExpr,
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, Fail> {
        match op {
            BinOp::And => {
                if !self.test(a, frame)? {
                    return Ok(Value::bool(false));
                }
                Ok(Value::bool(self.test(b, frame)?))
            }
            BinOp::Or => {
                if self.test(a, frame)? {
                    return Ok(Value::bool(true));
                }
                Ok(Value::bool(self.test(b, frame)?))
            }
            BinOp::Coalesce => {
                let av = self.eval(a, frame)?;
                if av.is_null() {
                    self.eval(b, frame)
                } else {
                    Ok(av)
                }
            }
            BinOp::Add => {
                // `+` joins texts and lists: their size is checked against the memory
                // budget before they are built.
                let left = self.bytes_left;
                let add = |x: &Value, y: &Value| {
                    let bytes = ops::add_bytes(x, y);
                    if bytes > left {
                        return Err(bytes);
                    }
                    Ok((bytes, ops::binary(op, x, y)))
                };
                let result = if let Node::Const(bc) = &b.node {
                    self.with_ref(a, frame, |av| add(av, bc))?
                } else if let Node::Const(ac) = &a.node {
                    self.with_ref(b, frame, |bv| add(ac, bv))?
                } else {
                    let av = self.eval(a, frame)?;
                    self.with_ref(b, frame, |bv| add(&av, bv))?
                };
                match result {
                    Ok((bytes, v)) => {
                        self.charge(bytes, e.loc)?;
                        v.map_err(|m| self.error(EvalErrorKind::Type, e.loc, m))
                    }
                    Err(bytes) => Err(self.out_of_bytes(bytes, e.loc)),
                }
            }
            _ => {
                // Comparing with a literal is common (`status == "cancel"`): look at both
                // sides by reference, without touching reference counts.
                let result = if let Node::Const(bc) = &b.node {
                    self.with_ref(a, frame, |av| ops::binary(op, av, bc))?
                } else if let Node::Const(ac) = &a.node {
                    self.with_ref(b, frame, |bv| ops::binary(op, ac, bv))?
                } else {
                    let av = self.eval(a, frame)?;
                    self.with_ref(b, frame, |bv| ops::binary(op, &av, bv))?
                };
                result.map_err(|m| self.error(EvalErrorKind::Type, e.loc, m))
            }
        }
    }

    /// Calls `f` with the value of `e`, borrowed where it can be (literals, locals, globals
    /// and key paths below them), evaluated otherwise.
    #[inline(always)]
    fn with_ref<R>(
        &mut self,
        e: &'a CExpr,
        frame: &mut Frame<'a>,
        f: impl FnOnce(&Value) -> R,
    ) -> Result<R, Fail> {
        if !self.fast() {
            let v = self.eval(e, frame)?;
            return Ok(f(&v));
        }
        // Literals and keys below a slot, the commonest, here; the rest out of line.
        match (e.view(), &e.node) {
            (View::Const, Node::Const(v)) => Ok(f(v)),
            (View::LocalKeys, Node::Local(slot)) => self.local_ref(*slot, &[], e, frame, f),
            (View::LocalKeys, Node::Path(base, segs)) => match base.node {
                Node::Local(slot) => self.local_ref(slot, segs, e, frame, f),
                _ => self.with_ref_rest(e, frame, f),
            },
            _ => self.with_ref_rest(e, frame, f),
        }
    }

    /// [`Ctx::with_ref`] of anything but a literal or keys below a slot.
    #[inline(never)]
    fn with_ref_rest<R>(
        &mut self,
        e: &'a CExpr,
        frame: &mut Frame<'a>,
        f: impl FnOnce(&Value) -> R,
    ) -> Result<R, Fail> {
        // How this shape is read by reference was decided when it was built
        // ([`view_for`]); each arm checks only the node it reads.
        match (e.view(), &e.node) {
            (View::GlobalKeys, Node::Global(i)) => {
                if let Some(root) = self.globals.get(*i as usize) {
                    return Ok(f(root));
                }
            }
            (View::GlobalKeys, Node::Path(base, segs)) => {
                if let Node::Global(i) = base.node {
                    if let Some(root) = self.globals.get(i as usize) {
                        if let Some(found) = walk_keys_ref(root, segs) {
                            return Ok(f(found));
                        }
                    }
                }
            }
            // The side the settings choose (compile-time folding), by reference.
            (View::Settled, Node::Settled(folded, written)) => {
                self.step(e.loc)?;
                let side = if self.settled { folded } else { written };
                return self.with_ref(side, frame, f);
            }
            // The branch taken, and the right side of `??` when the left is null, by reference.
            (View::If, Node::If(c, a, b)) => {
                self.step(e.loc)?;
                let branch = if self.test(c, frame)? { a } else { b };
                return self.with_ref(branch, frame, f);
            }
            (View::Coalesce, Node::Binary(BinOp::Coalesce, a, b)) => {
                self.step(e.loc)?;
                let av = self.eval(a, frame)?;
                if !av.is_null() {
                    return Ok(f(&av));
                }
                return self.with_ref(b, frame, f);
            }
            _ => {}
        }
        let v = self.eval(e, frame)?;
        Ok(f(&v))
    }

    /// [`Ctx::with_ref`] of keys below slot `slot` (none: the slot itself): the step spent,
    /// the slot's `let` evaluated if it is not filled yet, the keys walked by reference.
    #[inline(always)]
    fn local_ref<R>(
        &mut self,
        slot: u32,
        segs: &'a [Seg],
        e: &'a CExpr,
        frame: &mut Frame<'a>,
        f: impl FnOnce(&Value) -> R,
    ) -> Result<R, Fail> {
        // The common case: a step left, the slot filled, no pending reference on the way.
        if self.budget != 0 {
            if let Some(Some(root)) = frame.slots.get(slot as usize) {
                if let Some(found) = walk_keys_ref(root, segs) {
                    self.budget -= 1;
                    return Ok(f(found));
                }
            }
        }
        let v = self.local_ref_rest(slot, segs, e, frame)?;
        Ok(f(&v))
    }

    /// [`Ctx::local_ref`] beyond its common case (the budget spent, a `let` not computed
    /// yet, a slot out of range, a pending reference on the way): the value, cloned.
    #[cold]
    #[inline(never)]
    fn local_ref_rest(
        &mut self,
        slot: u32,
        segs: &'a [Seg],
        e: &'a CExpr,
        frame: &mut Frame<'a>,
    ) -> Result<Value, Fail> {
        if self.budget == 0 {
            self.tick(1, e.loc)?;
        }
        self.budget = self.budget.saturating_sub(1);
        if frame.slots.get(slot as usize).is_some_and(Option::is_none) {
            self.local(slot, frame)?;
        }
        if let Some(Some(root)) = frame.slots.get(slot as usize) {
            if let Some(found) = walk_keys_ref(root, segs) {
                return Ok(found.clone());
            }
        } else {
            return Ok(Value::Null);
        }
        self.eval(e, frame)
    }

    #[inline(never)]
    fn call_user(
        &mut self,
        i: u32,
        args: &'a [CExpr],
        frame: &mut Frame<'a>,
    ) -> Result<Value, Fail> {
        // A call whose arguments are the same in every rule of the evaluation is computed
        // once (and again only if it reads the world and the plan changed since).
        if args.iter().all(event_level) {
            return self.call_user_remembered(i, args, frame);
        }
        self.call_user_fresh(i, args, frame)
    }

    /// [`Ctx::call_user`] of a call with an argument that is not event-level.
    #[inline(never)]
    fn call_user_fresh(
        &mut self,
        i: u32,
        args: &'a [CExpr],
        frame: &mut Frame<'a>,
    ) -> Result<Value, Fail> {
        self.call_user_fresh_here(i, args, frame)
    }

    /// [`Ctx::call_user_fresh`]'s work, inlined into the op of its shape.
    #[inline(always)]
    fn call_user_fresh_here(
        &mut self,
        i: u32,
        args: &'a [CExpr],
        frame: &mut Frame<'a>,
    ) -> Result<Value, Fail> {
        let prog = self.prog;
        let Some(f) = prog.funcs.get(i as usize) else {
            return Ok(Value::Null);
        };
        let Some(body) = &f.body else {
            return Ok(Value::Null);
        };
        // The arguments go into the first slots of a spare frame, the rest is empty.
        let mut slots = self.spare_frames.pop().unwrap_or_default();
        slots.clear();
        let size = (f.frame_size as usize).max(args.len());
        slots.reserve(size);
        for a in args {
            match self.eval(a, frame) {
                Ok(v) => slots.push(Some(v)),
                Err(e) => {
                    slots.clear();
                    self.spare_frames.push(slots);
                    return Err(e);
                }
            }
        }
        while slots.len() < size {
            slots.push(None);
        }
        self.run_user_body(body, slots)
    }

    /// [`Ctx::call_user`] of a call with event-level arguments: the remembered result if
    /// there is one still valid, else the call's result, remembered. The arguments' values
    /// are copied once, into the callee's frame (the memo keeps the evaluated ones).
    #[inline(never)]
    fn call_user_remembered(
        &mut self,
        i: u32,
        args: &'a [CExpr],
        frame: &mut Frame<'a>,
    ) -> Result<Value, Fail> {
        self.call_user_remembered_here(i, args, frame)
    }

    /// [`Ctx::call_user_remembered`]'s work, inlined into the op of its shape.
    #[inline(always)]
    fn call_user_remembered_here(
        &mut self,
        i: u32,
        args: &'a [CExpr],
        frame: &mut Frame<'a>,
    ) -> Result<Value, Fail> {
        let prog = self.prog;
        let Some(f) = prog.funcs.get(i as usize) else {
            return Ok(Value::Null);
        };
        let Some(body) = &f.body else {
            return Ok(Value::Null);
        };
        let mut given = Vec::with_capacity(args.len());
        for a in args {
            given.push(self.eval(a, frame)?);
        }
        let version = self.plan.version();
        let remembered = |m: &super::Memo| {
            m.func == i
                && m.args.len() == given.len()
                && m.args.iter().zip(&given).all(|(a, b)| same_arg(a, b))
        };
        if let Some(m) = self.memo.iter().find(|m| remembered(m)) {
            if f.pure || m.version == version {
                return Ok(m.result.clone());
            }
        }
        let mut slots = self.spare_frames.pop().unwrap_or_default();
        slots.clear();
        let size = (f.frame_size as usize).max(given.len());
        slots.reserve(size);
        slots.extend(given.iter().cloned().map(Some));
        slots.resize_with(size, || None);
        let result = self.run_user_body(body, slots)?;
        let version = self.plan.version();
        self.memo.retain(|m| !remembered(m));
        self.memo.push(super::Memo {
            func: i,
            args: given,
            version,
            result: result.clone(),
        });
        Ok(result)
    }

    /// Evaluates a user function's body in a frame of its own (`slots`, arguments first).
    #[inline]
    fn run_user_body(&mut self, body: &'a CExpr, slots: Vec<Option<Value>>) -> Result<Value, Fail> {
        let prog = self.prog;
        let mut callee = Frame {
            slots,
            lets: &prog.empty_lets,
        };
        let result = match self.enter(body.loc) {
            Ok(()) => {
                let r = self.eval(body, &mut callee);
                self.nesting -= 1;
                r
            }
            Err(e) => Err(e),
        };
        let mut slots = callee.slots;
        slots.clear();
        self.spare_frames.push(slots);
        result
    }
}

/// Whether an argument is the same wherever it is evaluated in one evaluation: a literal,
/// a global (`order`, `settings`) or keys below one.
fn event_level(e: &CExpr) -> bool {
    match &e.node {
        Node::Const(_) | Node::Global(_) => true,
        Node::Path(base, segs) => {
            matches!(base.node, Node::Global(_)) && segs.iter().all(|s| matches!(s, Seg::Key(..)))
        }
        _ => false,
    }
}

/// Whether two arguments of a remembered call are the same value: the same shared list,
/// object or pending result, or equal scalars of the same type (so a function that looks
/// at the type of its argument sees the same thing).
fn same_arg(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => std::sync::Arc::ptr_eq(x, y),
        (Value::Object(x), Value::Object(y)) => std::sync::Arc::ptr_eq(x, y),
        (Value::Ref(x), Value::Ref(y)) => std::sync::Arc::ptr_eq(x, y),
        _ => false,
    }
}

/// Walks key steps by reference. `None` when a pending reference is met (the slow path
/// handles those).
#[inline(always)]
fn walk_keys(root: &Value, segs: &[Seg]) -> Option<Value> {
    walk_keys_ref(root, segs).cloned()
}

static NULL: Value = Value::Null;

/// The value of key `k` (with `hash`, its hash under the maps' hasher) in an object. Keys
/// that rules name and keys of documents are interned ([`crate::value::intern`]), so the key is usually
/// found by comparing pointers; see [`Map`].
#[inline]
fn key_of<'m>(o: &'m Map, k: &str, at: &KeyAt) -> Option<&'m Value> {
    o.get_hinted(k, at.hash, &at.hint)
}

/// Walks key steps by reference; a missing key gives a reference to null.
fn walk_keys_ref<'v>(root: &'v Value, segs: &[Seg]) -> Option<&'v Value> {
    let mut cur = root;
    for seg in segs {
        let Seg::Key(k, hash) = seg else { return None };
        match cur {
            Value::Object(o) => match key_of(o, k, hash) {
                Some(v) => cur = v,
                None => return Some(&NULL),
            },
            Value::Ref(_) => return None,
            _ => return Some(&NULL),
        }
    }
    Some(cur)
}

/// `x[i]`: an array index (negative from the end) or an object key.
pub(crate) fn index_value(container: &Value, index: &Value) -> Value {
    match (container, index) {
        (Value::Array(_), _) => index.as_i64().map_or(Value::Null, |i| container.index(i)),
        (Value::Object(o), Value::Str(k)) => o.get(&**k).cloned().unwrap_or_default(),
        (Value::Object(o), Value::Int(_) | Value::Bool(_)) => {
            o.get(index.to_text().as_str()).cloned().unwrap_or_default()
        }
        (Value::Ref(r), Value::Str(k)) => r.field(PathKey::Key(k.clone())),
        (Value::Ref(r), Value::Int(i)) => r.field(PathKey::Index(*i)),
        _ => Value::Null,
    }
}

// ---------------------------------------------------------------------------------------
// Threaded code: each compiled expression carries the function that evaluates its shape,
// chosen once by `op_for` when the expression is built. `Ctx::eval` spends the node's step
// and calls it; each op does only what its shape needs (no dispatch over every kind of
// node, no re-checking of what compile time knew, such as "every step of this path is a
// key"). Each op's first lines name the shape it was chosen for; a node of another shape
// (which `op_for` never gives it) falls back to the general dispatcher (`Ctx::mismatch`),
// so an op can be slower than it should, never wrong.
// ---------------------------------------------------------------------------------------

/// The function that evaluates a node of this shape (see [`crate::compile::node::Op`]).
pub(crate) fn op_for(node: &Node) -> Op {
    match node {
        Node::Const(_) => op_const,
        Node::Local(_) => op_local,
        Node::Global(_) => op_global,
        Node::Path(base, segs) if segs.iter().all(|s| matches!(s, Seg::Key(..))) => {
            match (&base.node, segs.len()) {
                (Node::Local(_), 1) => op_local_key,
                (Node::Local(_), _) => op_local_keys,
                (Node::Global(_), _) => op_global_keys,
                _ => op_path,
            }
        }
        Node::Path(..) => op_path,
        Node::Unary(UnOp::Not, _) => op_not,
        Node::Unary(UnOp::Neg, _) => op_general,
        Node::Binary(BinOp::And, ..) => op_and,
        Node::Binary(BinOp::Or, ..) => op_or,
        Node::Binary(BinOp::Coalesce, ..) => op_coalesce,
        Node::Binary(BinOp::Add, ..) => op_binary,
        Node::Binary(_, _, b) if matches!(b.node, Node::Const(_)) => op_cmp_const,
        Node::Binary(..) => op_binary,
        Node::If(..) => op_if,
        Node::Call(f, args, _) => match (&f.imp, f.owned, args.len()) {
            (Imp::Pure(_), None, 1) => op_call_pure_ref,
            (_, _, 0) => op_call0,
            (_, _, 1) => op_call1,
            (_, _, 2) => op_call2,
            (_, _, 3) => op_call3,
            _ => op_general,
        },
        Node::CallUser(_, args) if args.iter().all(event_level) => op_call_user_remembered,
        Node::CallUser(..) => op_call_user,
        Node::Record(..) => op_record,
        Node::Settled(..) => op_settled,
        Node::Array(..) | Node::Object(..) | Node::Template(..) => op_general,
    }
}

/// How a node of this shape is read by reference ([`Ctx::with_ref`]).
pub(crate) fn view_for(node: &Node) -> View {
    match node {
        Node::Const(_) => View::Const,
        Node::Local(_) => View::LocalKeys,
        Node::Global(_) => View::GlobalKeys,
        Node::Path(base, segs) if segs.iter().all(|s| matches!(s, Seg::Key(..))) => {
            match base.node {
                Node::Local(_) => View::LocalKeys,
                Node::Global(_) => View::GlobalKeys,
                _ => View::Value,
            }
        }
        Node::Settled(..) => View::Settled,
        Node::If(..) => View::If,
        Node::Binary(BinOp::Coalesce, ..) => View::Coalesce,
        _ => View::Value,
    }
}

/// How a node of this shape is tested for truthiness ([`Ctx::test`]).
pub(crate) fn cond_for(node: &Node, view: View) -> Cond {
    match node {
        Node::Binary(BinOp::Eq | BinOp::Ne, _, b) => match &b.node {
            Node::Const(Value::Null) => Cond::EqNull,
            Node::Const(Value::Str(_)) => Cond::EqStr,
            Node::Const(_) => Cond::EqConst,
            _ => match node {
                Node::Binary(_, a, _) if matches!(a.node, Node::Const(_)) => Cond::ConstEq,
                _ => Cond::Eq,
            },
        },
        Node::Binary(BinOp::And, ..) => Cond::And,
        Node::Binary(BinOp::Or, ..) => Cond::Or,
        Node::Unary(UnOp::Not, _) => Cond::Not,
        Node::Settled(..) => Cond::Settled,
        _ => match view {
            View::LocalKeys => Cond::LocalKeys,
            View::Value => Cond::Value,
            View::Const | View::GlobalKeys | View::If | View::Coalesce | View::Settled => Cond::Ref,
        },
    }
}

/// A test op: whether a node of one shape holds.
type TestOp = for<'a> fn(&mut Ctx<'a>, &'a CExpr, &mut Frame<'a>) -> Result<bool, Fail>;

/// The test op of each [`Cond`], in its order.
static TEST_OPS: [TestOp; 12] = [
    test_eq_null,
    test_eq_str,
    test_eq_const,
    test_const_eq,
    test_eq,
    test_and,
    test_or,
    test_not,
    test_settled,
    test_local_keys,
    test_value,
    test_ref,
];

/// `x == null`, `x != null`: `x` looked at by reference.
fn test_eq_null<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    let Node::Binary(op @ (BinOp::Eq | BinOp::Ne), a, b) = &e.node else {
        return cx.test_mismatch(e, frame);
    };
    let Node::Const(Value::Null) = &b.node else {
        return cx.test_mismatch(e, frame);
    };
    cx.step(e.loc)?;
    let ne = *op == BinOp::Ne;
    cx.with_ref(a, frame, |av| av.is_null() != ne)
}

/// `x == "text"`, `x != "text"`: `x` looked at by reference, equal only to a text
/// ([`Value::equals`] of a text).
fn test_eq_str<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    let Node::Binary(op @ (BinOp::Eq | BinOp::Ne), a, b) = &e.node else {
        return cx.test_mismatch(e, frame);
    };
    let Node::Const(Value::Str(text)) = &b.node else {
        return cx.test_mismatch(e, frame);
    };
    cx.step(e.loc)?;
    let ne = *op == BinOp::Ne;
    cx.with_ref(a, frame, |av| {
        matches!(av, Value::Str(s) if crate::value::same_str(s, text)) != ne
    })
}

/// `x == literal`, `x != literal`: `x` looked at by reference.
fn test_eq_const<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    let Node::Binary(op @ (BinOp::Eq | BinOp::Ne), a, b) = &e.node else {
        return cx.test_mismatch(e, frame);
    };
    let Node::Const(bc) = &b.node else {
        return cx.test_mismatch(e, frame);
    };
    cx.step(e.loc)?;
    let ne = *op == BinOp::Ne;
    cx.with_ref(a, frame, |av| av.equals(bc) != ne)
}

/// `literal == x`, `literal != x`.
fn test_const_eq<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    let Node::Binary(op @ (BinOp::Eq | BinOp::Ne), a, b) = &e.node else {
        return cx.test_mismatch(e, frame);
    };
    let Node::Const(ac) = &a.node else {
        return cx.test_mismatch(e, frame);
    };
    cx.step(e.loc)?;
    let ne = *op == BinOp::Ne;
    cx.with_ref(b, frame, |bv| ac.equals(bv) != ne)
}

/// `a == b`, `a != b`.
fn test_eq<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    let Node::Binary(op @ (BinOp::Eq | BinOp::Ne), a, b) = &e.node else {
        return cx.test_mismatch(e, frame);
    };
    cx.step(e.loc)?;
    let ne = *op == BinOp::Ne;
    let av = cx.eval(a, frame)?;
    cx.with_ref(b, frame, |bv| av.equals(bv) != ne)
}

/// `a and b`.
fn test_and<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    let Node::Binary(BinOp::And, a, b) = &e.node else {
        return cx.test_mismatch(e, frame);
    };
    cx.step(e.loc)?;
    Ok(cx.test(a, frame)? && cx.test(b, frame)?)
}

/// `a or b`.
fn test_or<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    let Node::Binary(BinOp::Or, a, b) = &e.node else {
        return cx.test_mismatch(e, frame);
    };
    cx.step(e.loc)?;
    Ok(cx.test(a, frame)? || cx.test(b, frame)?)
}

/// `not x`.
fn test_not<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    let Node::Unary(UnOp::Not, x) = &e.node else {
        return cx.test_mismatch(e, frame);
    };
    cx.step(e.loc)?;
    Ok(!cx.test(x, frame)?)
}

/// Folded or written code, as the settings choose.
fn test_settled<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    let Node::Settled(folded, written) = &e.node else {
        return cx.test_mismatch(e, frame);
    };
    cx.step(e.loc)?;
    cx.test(if cx.settled { folded } else { written }, frame)
}

/// A slot, or keys below one, by reference.
fn test_local_keys<'a>(
    cx: &mut Ctx<'a>,
    e: &'a CExpr,
    frame: &mut Frame<'a>,
) -> Result<bool, Fail> {
    match &e.node {
        Node::Local(slot) => cx.local_ref(*slot, &[], e, frame, Value::truthy),
        Node::Path(base, segs) => match base.node {
            Node::Local(slot) if e.view() == View::LocalKeys => {
                cx.local_ref(slot, segs, e, frame, Value::truthy)
            }
            _ => cx.test_mismatch(e, frame),
        },
        _ => cx.test_mismatch(e, frame),
    }
}

/// Anything that is not read by reference: its value, evaluated.
fn test_value<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    if e.view() != View::Value {
        return cx.test_mismatch(e, frame);
    }
    Ok(cx.eval(e, frame)?.truthy())
}

/// Anything else read by reference (a literal, a global and keys below it, `if`, `??`).
fn test_ref<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<bool, Fail> {
    cx.with_ref(e, frame, Value::truthy)
}

/// Any node: the general dispatcher.
fn op_general<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    cx.dispatch(e, frame)
}

/// A literal.
fn op_const<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Const(v) = &e.node else {
        return cx.mismatch(e, frame);
    };
    Ok(v.clone())
}

/// A slot: its value if filled, else its `let` evaluated.
fn op_local<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Local(slot) = e.node else {
        return cx.mismatch(e, frame);
    };
    if let Some(Some(v)) = frame.slots.get(slot as usize) {
        return Ok(v.clone());
    }
    cx.local(slot, frame)
}

/// A global.
fn op_global<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Global(i) = e.node else {
        return cx.mismatch(e, frame);
    };
    Ok(cx.globals.get(i as usize).cloned().unwrap_or_default())
}

/// One key below a slot (`line.item`).
fn op_local_key<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Path(base, segs) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let (Node::Local(slot), [Seg::Key(k, at)]) = (&base.node, &**segs) else {
        return cx.mismatch(e, frame);
    };
    match frame.slots.get(*slot as usize) {
        Some(Some(Value::Object(o))) => Ok(key_of(o, k, at).cloned().unwrap_or_default()),
        // A slot not yet filled, or a pending reference: the path's general walk.
        Some(Some(Value::Ref(_)) | None) => cx.path(base, segs, frame),
        Some(Some(_)) | None => Ok(Value::Null),
    }
}

/// Keys below a slot (`line.item.offer`).
fn op_local_keys<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Path(base, segs) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let Node::Local(slot) = base.node else {
        return cx.mismatch(e, frame);
    };
    if frame.slots.get(slot as usize).is_some_and(Option::is_none) {
        cx.local(slot, frame)?;
    }
    match frame.slots.get(slot as usize) {
        Some(Some(root)) => match walk_keys(root, segs) {
            Some(v) => Ok(v),
            None => cx.path_general(base, segs, frame),
        },
        _ => Ok(Value::Null),
    }
}

/// Keys below a global (`order.customer.id`).
fn op_global_keys<'a>(
    cx: &mut Ctx<'a>,
    e: &'a CExpr,
    frame: &mut Frame<'a>,
) -> Result<Value, Fail> {
    let Node::Path(base, segs) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let Node::Global(i) = base.node else {
        return cx.mismatch(e, frame);
    };
    if let Some(root) = cx.globals.get(i as usize) {
        if let Some(v) = walk_keys(root, segs) {
            return Ok(v);
        }
    }
    cx.path_general(base, segs, frame)
}

/// Any other path (index steps, or below something that is not a slot or a global).
fn op_path<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Path(base, segs) = &e.node else {
        return cx.mismatch(e, frame);
    };
    cx.path_general_here(base, segs, frame)
}

/// `not x`.
fn op_not<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Unary(UnOp::Not, x) = &e.node else {
        return cx.mismatch(e, frame);
    };
    Ok(Value::bool(!cx.test(x, frame)?))
}

/// `a and b`.
fn op_and<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Binary(BinOp::And, a, b) = &e.node else {
        return cx.mismatch(e, frame);
    };
    if !cx.test(a, frame)? {
        return Ok(Value::bool(false));
    }
    Ok(Value::bool(cx.test(b, frame)?))
}

/// `a or b`.
fn op_or<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Binary(BinOp::Or, a, b) = &e.node else {
        return cx.mismatch(e, frame);
    };
    if cx.test(a, frame)? {
        return Ok(Value::bool(true));
    }
    Ok(Value::bool(cx.test(b, frame)?))
}

/// `a ?? b`.
fn op_coalesce<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Binary(BinOp::Coalesce, a, b) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let av = cx.eval(a, frame)?;
    if av.is_null() {
        cx.eval(b, frame)
    } else {
        Ok(av)
    }
}

/// A comparison or arithmetic (not `+`) with a literal on the right (`status == "new"`):
/// the left side looked at by reference.
fn op_cmp_const<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Binary(op, a, b) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let (Node::Const(bc), false) = (
        &b.node,
        matches!(op, BinOp::And | BinOp::Or | BinOp::Coalesce | BinOp::Add),
    ) else {
        return cx.mismatch(e, frame);
    };
    let op = *op;
    let result = cx.with_ref(a, frame, |av| ops::binary(op, av, bc))?;
    result.map_err(|m| cx.error(EvalErrorKind::Type, e.loc, m))
}

/// Any other binary operator.
fn op_binary<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Binary(op, a, b) = &e.node else {
        return cx.mismatch(e, frame);
    };
    cx.binary(*op, a, b, frame, e)
}

/// `if c then a else b`.
fn op_if<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::If(c, a, b) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let branch = if cx.test(c, frame)? { a } else { b };
    cx.eval(branch, frame)
}

/// Code folded for the rule set's own settings, or as written.
fn op_settled<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Settled(folded, written) = &e.node else {
        return cx.mismatch(e, frame);
    };
    cx.eval(if cx.settled { folded } else { written }, frame)
}

/// A pure built-in of one argument that does not take it by value (`empty(x)`,
/// `string(x)`): the argument looked at by reference.
fn op_call_pure_ref<'a>(
    cx: &mut Ctx<'a>,
    e: &'a CExpr,
    frame: &mut Frame<'a>,
) -> Result<Value, Fail> {
    let Node::Call(f, args, _) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let ([a0], Imp::Pure(fun)) = (&**args, &f.imp) else {
        return cx.mismatch(e, frame);
    };
    cx.call_pure_by_ref_here(f.name, *fun, f.size, a0, frame, e)
}

/// A built-in without arguments.
fn op_call0<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Call(f, args, lambda) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let [] = &**args else {
        return cx.mismatch(e, frame);
    };
    cx.apply_here(f, lambda.as_deref(), &mut [], frame, e)
}

/// A built-in of one argument.
fn op_call1<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Call(f, args, lambda) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let [a0] = &**args else {
        return cx.mismatch(e, frame);
    };
    let mut values = [cx.eval(a0, frame)?];
    cx.apply_here(f, lambda.as_deref(), &mut values, frame, e)
}

/// A built-in of two arguments.
fn op_call2<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Call(f, args, lambda) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let [a0, a1] = &**args else {
        return cx.mismatch(e, frame);
    };
    let v0 = cx.eval(a0, frame)?;
    let mut values = [v0, cx.eval(a1, frame)?];
    cx.apply_here(f, lambda.as_deref(), &mut values, frame, e)
}

/// A built-in of three arguments.
fn op_call3<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Call(f, args, lambda) = &e.node else {
        return cx.mismatch(e, frame);
    };
    let [a0, a1, a2] = &**args else {
        return cx.mismatch(e, frame);
    };
    let v0 = cx.eval(a0, frame)?;
    let v1 = cx.eval(a1, frame)?;
    let mut values = [v0, v1, cx.eval(a2, frame)?];
    cx.apply_here(f, lambda.as_deref(), &mut values, frame, e)
}

/// A user function with an argument that is not event-level.
fn op_call_user<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::CallUser(i, args) = &e.node else {
        return cx.mismatch(e, frame);
    };
    cx.call_user_fresh_here(*i, args, frame)
}

/// A user function whose arguments are all event-level: remembered for the evaluation.
fn op_call_user_remembered<'a>(
    cx: &mut Ctx<'a>,
    e: &'a CExpr,
    frame: &mut Frame<'a>,
) -> Result<Value, Fail> {
    let Node::CallUser(i, args) = &e.node else {
        return cx.mismatch(e, frame);
    };
    cx.call_user_remembered_here(*i, args, frame)
}

/// An object literal of fixed keys.
fn op_record<'a>(cx: &mut Ctx<'a>, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    let Node::Record(fields, shape) = &e.node else {
        return cx.mismatch(e, frame);
    };
    cx.record_here(fields, shape, frame, e)
}

#[cfg(test)]
mod op_choice_tests {
    use super::*;
    use crate::diagnostic::Diagnostics;

    /// The body of the lambda of `map(now(), x => text)`, compiled (with `settings` a map
    /// and a user function nowhere: calls of those are checked in `thread_tests`).
    fn body(text: &str) -> CExpr {
        let mut diags = Diagnostics::default();
        let settings = Value::from_json(&serde_json::json!({"a": {"b": 1}}));
        let (_, expr, _) = crate::compile::compile_expression(
            &format!("map(now(), x => {text})"),
            &settings,
            &mut diags,
        );
        assert!(!diags.has_errors(), "{text}: {diags:?}");
        match expr.node {
            Node::Call(_, _, Some(l)) => l.body,
            other => panic!("not a call with a lambda: {other:?}"),
        }
    }

    /// Each shape is given its own op (and its own way of being read by reference): an
    /// op chosen for another shape, or the general one where a specialised one exists,
    /// fails this.
    #[test]
    fn each_shape_gets_its_op() {
        let table: &[(&str, Op, View)] = &[
            ("1", op_const, View::Const),
            ("x", op_local, View::LocalKeys),
            ("settings", op_global, View::GlobalKeys),
            ("x.a", op_local_key, View::LocalKeys),
            ("x.a.b", op_local_keys, View::LocalKeys),
            ("settings.a", op_global_keys, View::GlobalKeys),
            ("settings.a.b", op_global_keys, View::GlobalKeys),
            ("x[0]", op_path, View::Value),
            ("x.a[0]", op_path, View::Value),
            ("first([x]).a", op_path, View::Value),
            ("not x", op_not, View::Value),
            ("-x", op_general, View::Value),
            ("x and x.a", op_and, View::Value),
            ("x or x.a", op_or, View::Value),
            ("x ?? 1", op_coalesce, View::Coalesce),
            ("x == 1", op_cmp_const, View::Value),
            ("x.a != \"a\"", op_cmp_const, View::Value),
            ("x < 2", op_cmp_const, View::Value),
            ("1 == x", op_binary, View::Value),
            ("x == x.a", op_binary, View::Value),
            ("x + 1", op_binary, View::Value),
            ("if x then 1 else 2", op_if, View::If),
            ("now()", op_call0, View::Value),
            ("empty(x)", op_call_pure_ref, View::Value),
            ("contains(x, \"a\")", op_call2, View::Value),
            ("replace(x, \"a\", \"b\")", op_call3, View::Value),
            ("format(\"{}{}{}\", x, x, x)", op_general, View::Value),
            ("map(x, y => y)", op_call1, View::Value),
            ("{a: x}", op_record, View::Value),
            ("[x]", op_general, View::Value),
        ];
        for (text, op, view) in table {
            let e = body(text);
            assert!(
                std::ptr::fn_addr_eq(e.op(), *op),
                "`{text}` was not given its op"
            );
            assert_eq!(e.view(), *view, "`{text}`");
        }
        // Each shape is tested for truthiness by its own test op.
        let conds: &[(&str, Cond)] = &[
            ("x == 1", Cond::EqConst),
            ("x.a != null", Cond::EqNull),
            ("x == null", Cond::EqNull),
            ("x.a.b == \"a\"", Cond::EqStr),
            ("x != \"\"", Cond::EqStr),
            ("\"a\" == x", Cond::ConstEq),
            ("1 == x", Cond::ConstEq),
            ("x == x.a", Cond::Eq),
            ("x and x.a", Cond::And),
            ("x or x.a", Cond::Or),
            ("not x", Cond::Not),
            ("x", Cond::LocalKeys),
            ("x.a.b", Cond::LocalKeys),
            ("x[0]", Cond::Value),
            ("empty(x)", Cond::Value),
            ("x < 1", Cond::Value),
            ("settings.a", Cond::Ref),
            ("x ?? 1", Cond::Ref),
            ("if x then x.a else 1", Cond::Ref),
            ("true", Cond::Ref),
        ];
        for (text, cond) in conds {
            assert_eq!(body(text).cond(), *cond, "`{text}`");
        }
        // The folded form of a decision on the settings, and a user call, get theirs too.
        let settled = CExpr::new(Node::Settled(Box::new(body("1")), Box::new(body("x"))), 0);
        assert!(std::ptr::fn_addr_eq(settled.op(), op_settled as Op));
        assert_eq!(settled.view(), View::Settled);
        assert_eq!(settled.cond(), Cond::Settled);
        let remembered = CExpr::new(Node::CallUser(0, Box::new([body("settings.a")])), 0);
        assert!(std::ptr::fn_addr_eq(
            remembered.op(),
            op_call_user_remembered as Op
        ));
        let fresh = CExpr::new(Node::CallUser(0, Box::new([body("x")])), 0);
        assert!(std::ptr::fn_addr_eq(fresh.op(), op_call_user as Op));
    }
}
