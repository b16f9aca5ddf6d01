//! Evaluation of compiled expressions.

use std::sync::Arc;

use super::ops;
use super::{Call, Ctx, EvalError, EvalErrorKind, Frame};
use crate::compile::node::{CExpr, Node, ObjKey, Seg};
use crate::funcs::Imp;
use crate::syntax::ast::{BinOp, UnOp};
use crate::value::{Hasher, Map, PathKey, Value};

impl<'a> Ctx<'a> {
    /// Evaluates an expression in a frame.
    pub(crate) fn eval(&mut self, e: &'a CExpr, frame: &mut Frame<'a>) -> Result<Value, EvalError> {
        if self.budget == 0 {
            return self.tick(1, e.loc).map(|()| Value::Null);
        }
        self.budget -= 1;
        match &e.node {
            Node::Const(v) => Ok(v.clone()),
            Node::Local(slot) => self.local(*slot, frame, e),
            Node::Global(i) => Ok(self.globals.get(*i as usize).cloned().unwrap_or_default()),
            Node::Path(base, segs) => self.path(base, segs, frame),
            Node::Unary(op, x) => {
                let v = self.eval(x, frame)?;
                match op {
                    UnOp::Not => Ok(Value::Bool(!self.truth(&v, x)?)),
                    UnOp::Neg => {
                        ops::neg(&v).map_err(|m| self.error(EvalErrorKind::Type, e.loc, m))
                    }
                }
            }
            Node::Binary(op, a, b) => self.binary(*op, a, b, frame, e),
            Node::If(c, a, b) => {
                let cv = self.eval(c, frame)?;
                if self.truth(&cv, c)? {
                    self.eval(a, frame)
                } else {
                    self.eval(b, frame)
                }
            }
            Node::Call(f, args, lambda) => {
                let mut values = Vec::with_capacity(args.len());
                for a in args.iter() {
                    values.push(self.eval(a, frame)?);
                }
                match f.imp {
                    Imp::Pure(fun) => fun(&values).map_err(|m| {
                        self.error(EvalErrorKind::Type, e.loc, format!("{}(): {m}", f.name))
                    }),
                    Imp::Ctx(fun) => {
                        let mut call = Call {
                            cx: self,
                            frame,
                            lambda: lambda.as_deref(),
                            loc: e.loc,
                        };
                        fun(&mut call, &values)
                    }
                }
            }
            Node::CallUser(i, args) => self.call_user(*i, args, frame),
            Node::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items.iter() {
                    out.push(self.eval(item, frame)?);
                }
                Ok(Value::array(out))
            }
            Node::Object(pairs) => {
                let mut map = Map::with_capacity_and_hasher(pairs.len(), Hasher::default());
                for (k, v) in pairs.iter() {
                    let key = match k {
                        ObjKey::Static(k) => k.clone(),
                        ObjKey::Computed(k) => {
                            let kv = self.eval(k, frame)?;
                            match kv {
                                Value::Str(s) => s,
                                Value::Int(_) | Value::Dec(_) | Value::Bool(_) => {
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
            Node::Template(id, vars) => {
                let mut values = Vec::with_capacity(vars.len());
                for (name, accessor) in vars.iter() {
                    values.push((name.clone(), self.eval(accessor, frame)?));
                }
                crate::template::render(self.prog, *id, self.settings, values)
                    .map(Value::from)
                    .map_err(|m| self.error(EvalErrorKind::Type, e.loc, m))
            }
        }
    }

    /// Truthiness of a condition: booleans and null; anything else is true.
    pub(crate) fn truth(&self, v: &Value, _at: &CExpr) -> Result<bool, EvalError> {
        Ok(v.truthy())
    }

    fn local(&mut self, slot: u32, frame: &mut Frame<'a>, e: &CExpr) -> Result<Value, EvalError> {
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
        let v = self.eval(&def.expr, frame)?;
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.record_let(&def.name, &v);
        }
        let _ = e;
        frame.set(slot, v.clone());
        Ok(v)
    }

    fn path(
        &mut self,
        base: &'a CExpr,
        segs: &'a [Seg],
        frame: &mut Frame<'a>,
    ) -> Result<Value, EvalError> {
        let root = self.eval(base, frame)?;
        let mut owned: Option<Value> = None;
        let mut cur: &Value = &root;
        for seg in segs {
            let next: Option<Value> = match seg {
                Seg::Key(k) => match cur {
                    Value::Object(o) => match o.get(k) {
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

    fn binary(
        &mut self,
        op: BinOp,
        a: &'a CExpr,
        b: &'a CExpr,
        frame: &mut Frame<'a>,
        e: &CExpr,
    ) -> Result<Value, EvalError> {
        match op {
            BinOp::And => {
                let av = self.eval(a, frame)?;
                if !self.truth(&av, a)? {
                    return Ok(Value::Bool(false));
                }
                let bv = self.eval(b, frame)?;
                Ok(Value::Bool(self.truth(&bv, b)?))
            }
            BinOp::Or => {
                let av = self.eval(a, frame)?;
                if self.truth(&av, a)? {
                    return Ok(Value::Bool(true));
                }
                let bv = self.eval(b, frame)?;
                Ok(Value::Bool(self.truth(&bv, b)?))
            }
            BinOp::Coalesce => {
                let av = self.eval(a, frame)?;
                if av.is_null() {
                    self.eval(b, frame)
                } else {
                    Ok(av)
                }
            }
            _ => {
                let av = self.eval(a, frame)?;
                let bv = self.eval(b, frame)?;
                ops::binary(op, &av, &bv).map_err(|m| self.error(EvalErrorKind::Type, e.loc, m))
            }
        }
    }

    fn call_user(
        &mut self,
        i: u32,
        args: &'a [CExpr],
        frame: &mut Frame<'a>,
    ) -> Result<Value, EvalError> {
        let prog = self.prog;
        let Some(f) = prog.funcs.get(i as usize) else {
            return Ok(Value::Null);
        };
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(self.eval(a, frame)?);
        }
        let Some(body) = &f.body else {
            return Ok(Value::Null);
        };
        let empty = &prog.empty_lets;
        let mut callee = Frame::new(f.frame_size, empty);
        for (slot, v) in values.into_iter().enumerate() {
            callee.set(u32::try_from(slot).unwrap_or(u32::MAX), v);
        }
        self.eval(body, &mut callee)
    }
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

#[allow(dead_code)]
fn _assert_send(v: Value) -> Arc<Value> {
    Arc::new(v)
}
