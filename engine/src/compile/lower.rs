//! Compiling one expression (or template): parse, resolve names, check calls and settings
//! keys, fold constants.

use super::node::{CExpr, CLambda, Node, ObjKey, Seg as CSeg};
use super::scope::{suggest, Binding, Scope, ScopeKind};
use super::{Callable, Compiler};
use crate::diagnostic::codes;
use crate::eval::ops;
use crate::funcs::{self, LambdaArg};
use crate::ruleset::model::ExprText;
use crate::ruleset::yaml::{MarkedFile, Origin, Seg};
use crate::syntax::ast::{BinOp, Expr, ExprKind, ObjKey as AObjKey, Span, UnOp};
use crate::template::is_template;
use crate::value::Value;

impl Compiler<'_> {
    /// Compiles the expression or template at `path` of `file`.
    pub(crate) fn expr(
        &mut self,
        text: &ExprText,
        file: &MarkedFile,
        path: &[Seg],
        scope: &mut Scope,
    ) -> CExpr {
        let origin = file.origin(path);
        self.expr_at(&text.0, &origin, scope)
    }

    pub(crate) fn expr_at(&mut self, text: &str, origin: &Origin, scope: &mut Scope) -> CExpr {
        if is_template(text) {
            return self.template(text, origin, scope);
        }
        let parsed = match self.parsed.remove(text) {
            Some(parsed) => parsed,
            None => crate::syntax::parse(text),
        };
        match parsed {
            Err(e) => {
                let at = origin.locate(e.span.start as usize, e.span.end as usize);
                let loc = self.push_loc(at.clone());
                let d = self.error(codes::SYNTAX, format!("syntax error: {}", e.message), at);
                d.label = "here".to_owned();
                if looks_like_text(text) {
                    d.notes.push(quote_hint(text));
                }
                poison(loc)
            }
            Ok(ast) => {
                self.check_settings_keys(&ast, origin, false);
                self.check_event_paths(&ast, origin, scope);
                let whole_is_name = matches!(ast.kind, ExprKind::Name(_));
                let before = self.diags.items.len();
                let e = self.lower(&ast, origin, scope);
                if whole_is_name && self.diags.items.len() > before && looks_like_text(text) {
                    if let Some(d) = self.diags.items.last_mut() {
                        d.notes.push(quote_hint(text));
                    }
                }
                e
            }
        }
    }

    fn lower(&mut self, e: &Expr, o: &Origin, scope: &mut Scope) -> CExpr {
        let loc = self.push_loc(o.locate(e.span.start as usize, e.span.end as usize));
        let node = match &e.kind {
            ExprKind::Null => Node::Const(Value::Null),
            ExprKind::Bool(b) => Node::Const(Value::bool(*b)),
            ExprKind::Int(i) => Node::Const(Value::Int(*i)),
            ExprKind::Dec(d) => Node::Const(Value::number(*d)),
            ExprKind::Str(s) => Node::Const(Value::Str(crate::value::intern::key(s))),
            ExprKind::Name(n) => match scope.resolve(n) {
                Some(Binding::Local(s)) => Node::Local(s),
                Some(Binding::Global(g)) => Node::Global(g),
                None => {
                    self.unknown_name(n, e.span, o, scope);
                    Node::Const(Value::Null)
                }
            },
            ExprKind::Field(x, name) => {
                let base = self.lower(x, o, scope);
                return extend_path(base, CSeg::key(crate::value::intern::key(name)), loc);
            }
            ExprKind::Index(x, i) => {
                let base = self.lower(x, o, scope);
                let index = self.lower(i, o, scope);
                let seg = match &index.node {
                    Node::Const(Value::Str(s)) => CSeg::key(crate::value::intern::key(s)),
                    _ => CSeg::Index(index),
                };
                return extend_path(base, seg, loc);
            }
            ExprKind::Call(name, name_span, args) => self.call(name, *name_span, args, o, scope),
            ExprKind::Lambda(..) => {
                let at = o.locate(e.span.start as usize, e.span.end as usize);
                self.error(
                    codes::LAMBDA,
                    "a lambda can only be the last argument of a collection function, like `map(items, i => i.price)`",
                    at,
                );
                Node::Const(Value::Null)
            }
            ExprKind::Unary(op, x) => {
                let x = self.lower(x, o, scope);
                match (&x.node, op) {
                    (Node::Const(v), UnOp::Not) => Node::Const(Value::bool(!v.truthy())),
                    (Node::Const(v), UnOp::Neg) => match ops::neg(v) {
                        Ok(r) => Node::Const(r),
                        Err(_) => Node::Unary(*op, Box::new(x)),
                    },
                    _ => Node::Unary(*op, Box::new(x)),
                }
            }
            ExprKind::Binary(op, a, b) => {
                let a = self.lower(a, o, scope);
                let b = self.lower(b, o, scope);
                fold_binary(*op, a, b)
            }
            ExprKind::If(c, a, b) => {
                let c = self.lower(c, o, scope);
                let a = self.lower(a, o, scope);
                let b = self.lower(b, o, scope);
                match &c.node {
                    Node::Const(v) => return if v.truthy() { a } else { b },
                    _ => Node::If(Box::new(c), Box::new(a), Box::new(b)),
                }
            }
            ExprKind::Array(items) => {
                let items: Vec<CExpr> = items.iter().map(|i| self.lower(i, o, scope)).collect();
                if items.iter().all(|i| matches!(i.node, Node::Const(_))) {
                    Node::Const(Value::array(items.into_iter().map(const_of).collect()))
                } else {
                    Node::Array(items.into_boxed_slice())
                }
            }
            ExprKind::Object(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let key = match k {
                        AObjKey::Static(s) => ObjKey::Static(crate::value::intern::key(s)),
                        AObjKey::Computed(k) => ObjKey::Computed(self.lower(k, o, scope)),
                    };
                    out.push((key, self.lower(v, o, scope)));
                }
                let all_const = out.iter().all(|(k, v)| {
                    matches!(k, ObjKey::Static(_)) && matches!(v.node, Node::Const(_))
                });
                if all_const {
                    let mut map = crate::value::Map::default();
                    for (k, v) in out {
                        if let ObjKey::Static(k) = k {
                            map.insert(k, const_of(v));
                        }
                    }
                    Node::Const(Value::object(map))
                } else if out.iter().all(|(k, _)| matches!(k, ObjKey::Static(_))) && {
                    let mut keys: Vec<&str> = out
                        .iter()
                        .filter_map(|(k, _)| match k {
                            ObjKey::Static(k) => Some(&**k),
                            ObjKey::Computed(_) => None,
                        })
                        .collect();
                    keys.sort_unstable();
                    keys.windows(2).all(|w| w[0] != w[1])
                } {
                    use std::hash::BuildHasher;
                    let hasher = crate::value::Hasher::default();
                    let fields = out
                        .into_iter()
                        .filter_map(|(k, v)| match k {
                            ObjKey::Static(k) => {
                                let h = hasher.hash_one(&*k);
                                Some((k, h, v))
                            }
                            ObjKey::Computed(_) => None,
                        })
                        .collect::<Vec<_>>();
                    let mut shape = crate::value::Map::with_capacity_and_hasher(
                        fields.len(),
                        crate::value::Hasher::default(),
                    );
                    for (k, _, _) in &fields {
                        shape.insert(k.clone(), Value::Null);
                    }
                    Node::Record(fields.into_boxed_slice(), Box::new(shape))
                } else {
                    Node::Object(out.into_boxed_slice())
                }
            }
        };
        fuse_split_end(CExpr::new(node, loc))
    }

    fn unknown_name(&mut self, name: &str, span: Span, o: &Origin, scope: &Scope) {
        let at = o.locate(span.start as usize, span.end as usize);
        if scope.later.contains(name) {
            self.error(
                codes::UNKNOWN_RESULT,
                format!(
                    "`{name}` is defined further down; it can only be used after its definition"
                ),
                at,
            )
            .label = "used before it is defined".to_owned();
            return;
        }
        if scope.lenient {
            return;
        }
        if funcs::lookup(name).is_some() || self.func_index.contains_key(name) {
            self.error(
                codes::UNKNOWN_NAME,
                format!("`{name}` is a function; call it with arguments, like `{name}(…)`"),
                at,
            );
            return;
        }
        let visible = scope.visible();
        let hint = suggest(name, visible.iter().copied());
        let where_ = match scope.kind {
            ScopeKind::Rule => "in this rule",
            ScopeKind::Flow => "in this flow or function (they see only their parameters, their own names and `settings`)",
            ScopeKind::Settings => "in a settings check (only `settings` is)",
        };
        let d = self.error(codes::UNKNOWN_NAME, format!("unknown name `{name}`"), at);
        d.label = format!("not defined {where_}");
        if let Some(h) = hint {
            d.notes.push(format!("help: did you mean `{h}`?"));
        }
    }

    fn call(
        &mut self,
        name: &str,
        name_span: Span,
        args: &[Expr],
        o: &Origin,
        scope: &mut Scope,
    ) -> Node {
        let at = o.locate(name_span.start as usize, name_span.end as usize);
        let (plain, lambda) = match args.split_last() {
            Some((last, init)) if matches!(last.kind, ExprKind::Lambda(..)) => (init, Some(last)),
            _ => (args, None),
        };
        if let Some(bad) = plain
            .iter()
            .find(|a| matches!(a.kind, ExprKind::Lambda(..)))
        {
            let bat = o.locate(bad.span.start as usize, bad.span.end as usize);
            self.error(codes::LAMBDA, "a lambda can only be the last argument", bat);
        }
        if let Some(&fi) = self.func_index.get(name) {
            let want = self.funcs.get(fi as usize).map_or(0, |f| f.params.len());
            if lambda.is_some() {
                self.error(
                    codes::LAMBDA,
                    format!("`{name}` is a rule function; it takes no lambda"),
                    at.clone(),
                );
            }
            if plain.len() != want {
                self.error(
                    codes::ARITY,
                    format!(
                        "`{name}` takes {want} argument{}, got {}",
                        plural(want),
                        plain.len()
                    ),
                    at.clone(),
                );
            }
            if let Some(cur) = self.current {
                self.edges.push((cur, Callable::Func(fi), at));
            }
            let args: Vec<CExpr> = plain.iter().map(|a| self.lower(a, o, scope)).collect();
            return Node::CallUser(fi, args.into_boxed_slice());
        }
        let Some(b) = funcs::lookup(name) else {
            let names = funcs::all()
                .iter()
                .map(|b| b.name)
                .chain(self.func_index.keys().map(String::as_str));
            let hint = suggest(name, names);
            let d = self.error(
                codes::UNKNOWN_FUNCTION,
                format!("unknown function `{name}`"),
                at,
            );
            d.label = "no built-in or rule function has this name".to_owned();
            if let Some(h) = hint {
                d.notes.push(format!("help: did you mean `{h}`?"));
            }
            return Node::Const(Value::Null);
        };
        let lambda_arity = match (b.lambda, lambda) {
            (LambdaArg::None, Some(_)) => {
                self.error(
                    codes::LAMBDA,
                    format!("`{name}` takes no lambda"),
                    at.clone(),
                );
                None
            }
            (LambdaArg::Required(_), None) => {
                let d = self.error(
                    codes::LAMBDA,
                    format!("`{name}` needs a lambda as its last argument"),
                    at.clone(),
                );
                d.notes.push(format!("usage: {}", b.signature));
                None
            }
            (LambdaArg::Required(k) | LambdaArg::Optional(k), Some(_)) => Some(k),
            _ => None,
        };
        if plain.len() < b.min || plain.len() > b.max {
            let range = if b.max == usize::MAX {
                format!("at least {}", b.min)
            } else if b.min == b.max {
                b.min.to_string()
            } else {
                format!("{} to {}", b.min, b.max)
            };
            let d = self.error(
                codes::ARITY,
                format!(
                    "`{name}` takes {range} argument{}{}, got {}",
                    plural(b.max.min(b.min.max(2))),
                    if lambda_arity.is_some() {
                        " and a lambda"
                    } else {
                        ""
                    },
                    plain.len()
                ),
                at.clone(),
            );
            d.notes.push(format!("usage: {}", b.signature));
        }
        if b.reads_world {
            match (scope.kind, self.current) {
                (ScopeKind::Settings, _) => {
                    self.error(
                        codes::UNKNOWN_FUNCTION,
                        format!("`{name}` asks the world, which settings checks cannot do"),
                        at.clone(),
                    );
                }
                (_, Some(cur)) => {
                    self.world_readers.insert(cur);
                }
                _ => {}
            }
        }
        let args: Vec<CExpr> = plain.iter().map(|a| self.lower(a, o, scope)).collect();
        let lambda = match (lambda, lambda_arity) {
            (Some(l), Some(k)) => self.lambda(l, k, o, scope, name),
            _ => None,
        };
        Node::Call(b, args.into_boxed_slice(), lambda)
    }

    fn lambda(
        &mut self,
        e: &Expr,
        arity: usize,
        o: &Origin,
        scope: &mut Scope,
        fname: &str,
    ) -> Option<Box<CLambda>> {
        let ExprKind::Lambda(params, body) = &e.kind else {
            return None;
        };
        if params.len() != arity {
            let at = o.locate(e.span.start as usize, e.span.end as usize);
            self.error(
                codes::LAMBDA,
                format!(
                    "the lambda of `{fname}` takes {arity} parameter{}, this one has {}",
                    plural(arity),
                    params.len()
                ),
                at,
            );
        }
        let slots: Vec<u32> = params.iter().map(|(p, _)| scope.declare(p)).collect();
        let body = self.lower(body, o, scope);
        for (p, _) in params.iter().rev() {
            scope.undeclare(p);
        }
        Some(Box::new(CLambda {
            params: slots.into_boxed_slice(),
            body,
        }))
    }

    fn template(&mut self, text: &str, o: &Origin, scope: &mut Scope) -> CExpr {
        let loc = self.push_loc(o.locate(0, text.len().min(1)));
        let id = self.template_count;
        self.template_count += 1;
        let name = format!("t{id}");
        if let Err(e) = self
            .templates
            .add_template_owned(name.clone(), text.to_owned())
        {
            let (start, end) = e.range().map_or((0, text.len()), |r| (r.start, r.end));
            let at = o.locate(start, end);
            let d = self.error(
                codes::TEMPLATE,
                format!(
                    "template error: {}",
                    e.detail().unwrap_or("invalid template")
                ),
                at,
            );
            d.label = "here".to_owned();
            return poison(loc);
        }
        let mut names: Vec<String> = match self.templates.get_template(&name) {
            Ok(t) => t.undeclared_variables(false).into_iter().collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        let mut vars = Vec::new();
        for n in names {
            if funcs::lookup(&n).is_some() {
                continue;
            }
            let at = || {
                let start = text.find(n.as_str()).unwrap_or(0);
                o.locate(start, start + n.len())
            };
            if self.func_index.contains_key(&n) {
                let a = at();
                self.error(
                    codes::UNKNOWN_FUNCTION,
                    format!("rule function `{n}` cannot be called from a template"),
                    a,
                )
                .notes
                .push(
                    "help: compute the value in a `let` and use its name in the template"
                        .to_owned(),
                );
                continue;
            }
            match scope.resolve(&n) {
                Some(Binding::Local(s)) => vars.push((
                    crate::value::Str::from(n.as_str()),
                    CExpr::new(Node::Local(s), loc),
                )),
                Some(Binding::Global(g)) => vars.push((
                    crate::value::Str::from(n.as_str()),
                    CExpr::new(Node::Global(g), loc),
                )),
                None => {
                    let a = at();
                    let d = self.error(
                        codes::UNKNOWN_NAME,
                        format!("unknown name `{n}` in template"),
                        a,
                    );
                    if let Some(h) = suggest(&n, scope.visible()) {
                        d.notes.push(format!("help: did you mean `{h}`?"));
                    }
                }
            }
        }
        CExpr::new(Node::Template(id, vars.into_boxed_slice()), loc)
    }

    /// Reports `settings.a.b` chains whose keys the settings do not define.
    fn check_settings_keys(&mut self, e: &Expr, o: &Origin, parent_extends: bool) {
        let chain = settings_chain(e);
        if !parent_extends {
            if let Some(chain) = &chain {
                self.check_chain(chain, o);
            }
        }
        match &e.kind {
            ExprKind::Field(x, _) => self.check_settings_keys(x, o, chain.is_some()),
            ExprKind::Index(x, i) => {
                self.check_settings_keys(x, o, chain.is_some());
                self.check_settings_keys(i, o, false);
            }
            ExprKind::Array(items) => items
                .iter()
                .for_each(|i| self.check_settings_keys(i, o, false)),
            ExprKind::Object(pairs) => {
                for (k, v) in pairs {
                    if let AObjKey::Computed(k) = k {
                        self.check_settings_keys(k, o, false);
                    }
                    self.check_settings_keys(v, o, false);
                }
            }
            ExprKind::Call(_, _, args) => args
                .iter()
                .for_each(|a| self.check_settings_keys(a, o, false)),
            ExprKind::Lambda(_, b) | ExprKind::Unary(_, b) => self.check_settings_keys(b, o, false),
            ExprKind::Binary(_, a, b) => {
                self.check_settings_keys(a, o, false);
                self.check_settings_keys(b, o, false);
            }
            ExprKind::If(a, b, c) => {
                self.check_settings_keys(a, o, false);
                self.check_settings_keys(b, o, false);
                self.check_settings_keys(c, o, false);
            }
            _ => {}
        }
    }

    fn check_chain(&mut self, chain: &[(String, Span)], o: &Origin) {
        let settings = self.settings;
        let mut cur = settings;
        let mut walked = String::from("settings");
        for (key, span) in chain {
            let Value::Object(map) = cur else { return };
            match map.get(key.as_str()) {
                Some(v) => {
                    cur = v;
                    walked.push('.');
                    walked.push_str(key);
                }
                None => {
                    let at = o.locate(span.start as usize, span.end as usize);
                    let keys: Vec<&str> = map.keys().map(|k| &**k).collect();
                    let hint = suggest(key, keys.iter().copied());
                    let d = self.error(
                        codes::UNKNOWN_SETTING,
                        format!("the settings file defines no `{walked}.{key}`"),
                        at,
                    );
                    d.label = "not in the settings file".to_owned();
                    if let Some(h) = hint {
                        d.notes.push(format!("help: did you mean `{walked}.{h}`?"));
                    } else if !keys.is_empty() && keys.len() <= 16 {
                        d.notes.push(format!("`{walked}` has: {}", keys.join(", ")));
                    }
                    return;
                }
            }
        }
    }
}

/// `settings.a.b["c"]` → [(a, span), (b, span), (c, span)].
fn settings_chain(e: &Expr) -> Option<Vec<(String, Span)>> {
    match &e.kind {
        ExprKind::Name(n) if n == "settings" => Some(Vec::new()),
        ExprKind::Field(x, name) => {
            let mut chain = settings_chain(x)?;
            let len = u32::try_from(name.len()).unwrap_or(0);
            chain.push((
                name.clone(),
                Span {
                    start: e.span.end.saturating_sub(len),
                    end: e.span.end,
                },
            ));
            Some(chain)
        }
        ExprKind::Index(x, i) => {
            let mut chain = settings_chain(x)?;
            let ExprKind::Str(key) = &i.kind else {
                return None;
            };
            chain.push((key.clone(), i.span));
            Some(chain)
        }
        _ => None,
    }
}

fn extend_path(base: CExpr, seg: CSeg, loc: u32) -> CExpr {
    match base.node {
        Node::Path(inner, segs) => {
            let mut segs = segs.into_vec();
            segs.push(seg);
            CExpr::new(Node::Path(inner, segs.into_boxed_slice()), loc)
        }
        node => CExpr::new(
            Node::Path(Box::new(CExpr::new(node, base.loc)), Box::new([seg])),
            loc,
        ),
    }
}

fn fold_binary(op: BinOp, a: CExpr, b: CExpr) -> Node {
    match (&a.node, &b.node) {
        (Node::Const(x), Node::Const(y)) => {
            let folded = match op {
                BinOp::And => Some(Value::bool(x.truthy() && y.truthy())),
                BinOp::Or => Some(Value::bool(x.truthy() || y.truthy())),
                BinOp::Coalesce => Some(if x.is_null() { y.clone() } else { x.clone() }),
                _ => ops::binary(op, x, y).ok(),
            };
            match folded {
                Some(v) => Node::Const(v),
                None => Node::Binary(op, Box::new(a), Box::new(b)),
            }
        }
        (Node::Const(x), _) if op == BinOp::And && !x.truthy() => Node::Const(Value::bool(false)),
        (Node::Const(x), _) if op == BinOp::Or && x.truthy() => Node::Const(Value::bool(true)),
        (Node::Const(x), _) if op == BinOp::Coalesce && !x.is_null() => Node::Const(x.clone()),
        _ => Node::Binary(op, Box::new(a), Box::new(b)),
    }
}

fn const_of(e: CExpr) -> Value {
    match e.node {
        Node::Const(v) => v,
        _ => Value::Null,
    }
}

fn poison(loc: u32) -> CExpr {
    CExpr::new(Node::Const(Value::Null), loc)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Whether an expression that failed looks like it was meant as plain text: words, with no
/// operators, brackets or quotes.
fn looks_like_text(text: &str) -> bool {
    let t = text.trim();
    !t.is_empty() && !t.chars().any(|c| ".()[]{}|+-*/%<>=!?,:'\"".contains(c))
}

fn quote_hint(text: &str) -> String {
    let t = text.trim().replace('"', "\\\"");
    format!("help: values are expressions; to write the text itself, quote it: '\"{t}\"'")
}

/// `first(split(t, s))` and `last(split(t, s))` become one call that builds only the part
/// wanted (`ms_id_of`'s `last(split(href, "/"))` runs for every position of an order). The
/// call keeps the place of `split`, so its errors point where they did.
fn fuse_split_end(e: CExpr) -> CExpr {
    let CExpr {
        node: Node::Call(outer, args, None),
        loc,
        ..
    } = e
    else {
        return e;
    };
    let fusable = matches!(outer.name, "first" | "last")
        && matches!(
            &*args,
            [CExpr { node: Node::Call(inner, inner_args, None), .. }]
                if funcs::lookup("split").is_some_and(|split| std::ptr::eq(*inner, split))
                    && inner_args.len() == 2
        );
    if !fusable {
        return CExpr::new(Node::Call(outer, args, None), loc);
    }
    let last = outer.name == "last";
    match args.into_vec().pop() {
        Some(CExpr {
            node: Node::Call(_, inner_args, None),
            loc: inner_loc,
            ..
        }) => CExpr::new(
            Node::Call(funcs::split_end(last), inner_args, None),
            inner_loc,
        ),
        // (not reached: checked above)
        Some(other) => CExpr::new(Node::Call(outer, vec![other].into_boxed_slice(), None), loc),
        None => CExpr::new(Node::Call(outer, Box::new([]), None), loc),
    }
}
