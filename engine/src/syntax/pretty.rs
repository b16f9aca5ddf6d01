//! Printing a syntax tree back as text: canonical spacing, minimal parentheses, and lines
//! broken where an expression is wider than asked for. `skladsync fmt` uses it; parsing
//! the printed text gives the same tree back (spans aside).
//!
//! A pipe is lowered to a call when parsing (`x | f(a)` is `f(x, a)`); the printer writes
//! a call as a pipe again when its first argument comes before its name in the text.
//!
//! ```
//! use skladsync_engine::syntax::{parse, pretty};
//!
//! let e = parse("not(a==1)and  (b  ??0)*2").unwrap();
//! assert_eq!(pretty::flat(&e), "not a == 1 and (b ?? 0) * 2");
//! let items = parse("items|map(i=>{sku:i.sku,quantity:i.quantity})").unwrap();
//! assert_eq!(pretty::flat(&items), "items | map(i => {sku: i.sku, quantity: i.quantity})");
//! assert_eq!(
//!     pretty::layout(&items, 30),
//!     "items | map(i => {\n  sku: i.sku,\n  quantity: i.quantity\n})"
//! );
//! ```

use super::ast::{BinOp, Expr, ExprKind, ObjKey, UnOp};

/// The expression on one line.
pub fn flat(expr: &Expr) -> String {
    layout(expr, usize::MAX)
}

/// The expression in lines of at most `width` characters where it can be broken (after
/// brackets and commas, before binary operators and pipes, around `then` and `else`).
pub fn layout(expr: &Expr, width: usize) -> String {
    let doc = to_doc(expr);
    render(&doc, width)
}

/// Whether two trees are the same, spans aside.
pub fn same(a: &Expr, b: &Expr) -> bool {
    use ExprKind as K;
    match (&a.kind, &b.kind) {
        (K::Null, K::Null) => true,
        (K::Bool(x), K::Bool(y)) => x == y,
        (K::Int(x), K::Int(y)) => x == y,
        (K::Dec(x), K::Dec(y)) => x == y,
        (K::Str(x), K::Str(y)) | (K::Name(x), K::Name(y)) => x == y,
        (K::Array(x), K::Array(y)) => all_same(x, y),
        (K::Object(x), K::Object(y)) => {
            x.len() == y.len()
                && x.iter().zip(y).all(|((ka, va), (kb, vb))| {
                    let keys = match (ka, kb) {
                        (ObjKey::Static(p), ObjKey::Static(q)) => p == q,
                        (ObjKey::Computed(p), ObjKey::Computed(q)) => same(p, q),
                        _ => false,
                    };
                    keys && same(va, vb)
                })
        }
        (K::Field(x, n), K::Field(y, m)) => n == m && same(x, y),
        (K::Index(x, i), K::Index(y, j)) => same(x, y) && same(i, j),
        (K::Call(n, _, x), K::Call(m, _, y)) => n == m && all_same(x, y),
        (K::Lambda(p, x), K::Lambda(q, y)) => {
            p.len() == q.len() && p.iter().zip(q).all(|(a, b)| a.0 == b.0) && same(x, y)
        }
        (K::Unary(o, x), K::Unary(p, y)) => o == p && same(x, y),
        (K::Binary(o, x1, x2), K::Binary(p, y1, y2)) => o == p && same(x1, y1) && same(x2, y2),
        (K::If(a1, a2, a3), K::If(b1, b2, b3)) => same(a1, b1) && same(a2, b2) && same(a3, b3),
        _ => false,
    }
}

fn all_same(x: &[Expr], y: &[Expr]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
}

/// A document to lay out (Wadler's pretty printer, as Lindig writes it strictly).
#[derive(Clone, Debug)]
enum Doc {
    Text(String),
    /// A space, or a new line when the enclosing group breaks.
    Line,
    /// Nothing, or a new line when the enclosing group breaks.
    Soft,
    Nest(usize, Box<Doc>),
    Group(Box<Doc>),
    Cat(Vec<Doc>),
}

fn text(s: impl Into<String>) -> Doc {
    Doc::Text(s.into())
}

fn cat(parts: Vec<Doc>) -> Doc {
    Doc::Cat(parts)
}

fn nest(d: Doc) -> Doc {
    Doc::Nest(2, Box::new(d))
}

fn group(d: Doc) -> Doc {
    Doc::Group(Box::new(d))
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Flat,
    Break,
}

fn fits(mut rem: isize, first: (usize, Mode, &Doc), rest: &[(usize, Mode, &Doc)]) -> bool {
    let mut stack = vec![first];
    let mut rest_iter = rest.iter().rev();
    loop {
        if rem < 0 {
            return false;
        }
        let Some((i, m, d)) = stack.pop().or_else(|| rest_iter.next().copied()) else {
            return true;
        };
        match d {
            Doc::Text(s) => rem -= s.chars().count() as isize,
            Doc::Line if m == Mode::Flat => rem -= 1,
            Doc::Soft if m == Mode::Flat => {}
            Doc::Line | Doc::Soft => return true,
            Doc::Nest(j, inner) => stack.push((i + j, m, inner)),
            Doc::Group(inner) => stack.push((i, m, inner)),
            Doc::Cat(parts) => stack.extend(parts.iter().rev().map(|p| (i, m, p))),
        }
    }
}

fn render(doc: &Doc, width: usize) -> String {
    let width = isize::try_from(width).unwrap_or(isize::MAX);
    let mut out = String::new();
    let mut col: isize = 0;
    let mut stack: Vec<(usize, Mode, &Doc)> = vec![(0, Mode::Break, doc)];
    while let Some((i, m, d)) = stack.pop() {
        match d {
            Doc::Text(s) => {
                out.push_str(s);
                col += s.chars().count() as isize;
            }
            Doc::Line | Doc::Soft if m == Mode::Flat => {
                if matches!(d, Doc::Line) {
                    out.push(' ');
                    col += 1;
                }
            }
            Doc::Line | Doc::Soft => {
                out.push('\n');
                out.push_str(&" ".repeat(i));
                col = i as isize;
            }
            Doc::Nest(j, inner) => stack.push((i + j, m, inner)),
            Doc::Group(inner) => {
                let mode = if m == Mode::Flat
                    || fits(width.saturating_sub(col), (i, Mode::Flat, inner), &stack)
                {
                    Mode::Flat
                } else {
                    Mode::Break
                };
                stack.push((i, mode, inner));
            }
            Doc::Cat(parts) => stack.extend(parts.iter().rev().map(|p| (i, m, p))),
        }
    }
    out
}

/// Binding strength, loosest first, as the parser's Pratt table has it.
fn prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Lambda(..) | ExprKind::If(..) => 0,
        ExprKind::Binary(op, ..) => op_prec(*op),
        ExprKind::Unary(UnOp::Not, _) => 3,
        ExprKind::Call(..) if is_pipe(e) => 5,
        ExprKind::Unary(UnOp::Neg, _) => 9,
        ExprKind::Int(i) if *i < 0 => 9,
        ExprKind::Dec(d) if d.is_sign_negative() => 9,
        _ => 10,
    }
}

fn op_prec(op: BinOp) -> u8 {
    match op {
        BinOp::Or => 1,
        BinOp::And => 2,
        BinOp::Eq
        | BinOp::Ne
        | BinOp::Lt
        | BinOp::Le
        | BinOp::Gt
        | BinOp::Ge
        | BinOp::In
        | BinOp::NotIn => 4,
        BinOp::Add | BinOp::Sub => 6,
        BinOp::Mul | BinOp::Div | BinOp::Rem => 7,
        BinOp::Coalesce => 8,
    }
}

/// A call written `x | f(…)`: its first argument comes before its name in the text.
fn is_pipe(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Call(_, name_span, args) => args
            .first()
            .is_some_and(|a| a.span.start < name_span.start && a.span != e.span),
        _ => false,
    }
}

fn paren_if(cond: bool, d: Doc) -> Doc {
    if cond {
        cat(vec![text("("), d, text(")")])
    } else {
        d
    }
}

/// An operand that must bind at least as tightly as `min` (lambdas always get parentheses
/// outside argument lists).
fn operand(e: &Expr, min: u8) -> Doc {
    paren_if(
        prec(e) < min || matches!(e.kind, ExprKind::Lambda(..)),
        to_doc(e),
    )
}

/// An operand of a binary operator or of a pipe: like [`operand`], and `??` keeps its
/// parentheses although it binds tighter (`(price ?? 0) * 100` reads better than
/// `price ?? 0 * 100`).
fn arith_operand(e: &Expr, min: u8) -> Doc {
    let coalesce = matches!(e.kind, ExprKind::Binary(BinOp::Coalesce, ..));
    paren_if(coalesce, operand(e, min))
}

/// An expression in a place where any expression may stand (arguments, items, values).
fn free(e: &Expr) -> Doc {
    to_doc(e)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A string literal: double quotes unless the text has `"` and no `'`.
pub fn quote(s: &str) -> String {
    let q = if s.contains('"') && !s.contains('\'') {
        '\''
    } else {
        '"'
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && (c as u32) <= 0xFFFF => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// `[a, b]`, `{k: v}`, `f(a, b)`: items that break one per line when they do not fit.
fn bracketed(open: &str, items: Vec<Doc>, close: &str) -> Doc {
    if items.is_empty() {
        return text(format!("{open}{close}"));
    }
    let mut inner = vec![Doc::Soft];
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            inner.push(text(","));
            inner.push(Doc::Line);
        }
        inner.push(item);
    }
    group(cat(vec![
        text(open),
        nest(cat(inner)),
        Doc::Soft,
        text(close),
    ]))
}

/// Whether an argument is a bracket (or a lambda giving one) that may hug the call's
/// parentheses: `map(items, i => {` … `})`.
fn huggable(e: &Expr) -> bool {
    match &e.kind {
        ExprKind::Object(p) => !p.is_empty(),
        ExprKind::Array(p) => !p.is_empty(),
        ExprKind::Lambda(_, body) => huggable(body),
        _ => false,
    }
}

fn call(name: &str, args: &[Expr]) -> Doc {
    let docs: Vec<Doc> = args.iter().map(free).collect();
    if let Some((last, init)) = args.split_last() {
        let short = init
            .iter()
            .all(|a| !huggable(a) && flat(a).chars().count() <= 40);
        if huggable(last) && short {
            let mut parts = vec![text(format!("{name}("))];
            for a in init {
                parts.push(text(format!("{}, ", flat(a))));
            }
            parts.push(free(last));
            parts.push(text(")"));
            return group(cat(parts));
        }
    }
    cat(vec![text(name), bracketed("(", docs, ")")])
}

/// Operands of a chain of the same left-associative operator: `a and b and c`.
fn chain<'a>(op: BinOp, e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match &e.kind {
        ExprKind::Binary(o, l, r) if *o == op && op != BinOp::Coalesce => {
            chain(op, l, out);
            out.push(r);
        }
        _ => out.push(e),
    }
}

fn to_doc(e: &Expr) -> Doc {
    match &e.kind {
        ExprKind::Null => text("null"),
        ExprKind::Bool(b) => text(b.to_string()),
        ExprKind::Int(i) => text(i.to_string()),
        ExprKind::Dec(d) => text(d.to_string()),
        ExprKind::Str(s) => text(quote(s)),
        ExprKind::Name(n) => text(n.clone()),
        ExprKind::Array(items) => bracketed("[", items.iter().map(free).collect(), "]"),
        ExprKind::Object(pairs) => bracketed(
            "{",
            pairs
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        ObjKey::Static(s) if is_ident(s) => s.clone(),
                        ObjKey::Static(s) => quote(s),
                        ObjKey::Computed(k) => format!("[{}]", flat(k)),
                    };
                    cat(vec![text(format!("{key}: ")), free(v)])
                })
                .collect(),
            "}",
        ),
        ExprKind::Field(x, name) => cat(vec![operand(x, 10), text(format!(".{name}"))]),
        ExprKind::Index(x, i) => cat(vec![operand(x, 10), text("["), free(i), text("]")]),
        ExprKind::Call(name, _, args) if is_pipe(e) => {
            let (first, rest) = args
                .split_first()
                .map_or((None, &args[..]), |(f, r)| (Some(f), r));
            let lhs = first
                .map(|f| arith_operand(f, 5))
                .unwrap_or_else(|| text(""));
            if rest.last().is_some_and(huggable) {
                return group(cat(vec![lhs, text(" | "), call(name, rest)]));
            }
            group(cat(vec![
                lhs,
                nest(cat(vec![Doc::Line, text("| "), call(name, rest)])),
            ]))
        }
        ExprKind::Call(name, _, args) => call(name, args),
        ExprKind::Lambda(params, body) => {
            let names: Vec<&str> = params.iter().map(|(p, _)| p.as_str()).collect();
            let head = if names.len() == 1 {
                names[0].to_owned()
            } else {
                format!("({})", names.join(", "))
            };
            cat(vec![text(format!("{head} => ")), free(body)])
        }
        ExprKind::Unary(UnOp::Not, x) => cat(vec![text("not "), operand(x, 3)]),
        ExprKind::Unary(UnOp::Neg, x) => {
            let needs = prec(x) < 10 || matches!(x.kind, ExprKind::Int(_) | ExprKind::Dec(_));
            cat(vec![text("-"), paren_if(needs, to_doc(x))])
        }
        ExprKind::Binary(op, l, r) => {
            let p = op_prec(*op);
            if *op == BinOp::Coalesce {
                return group(cat(vec![
                    operand(l, p + 1),
                    nest(cat(vec![Doc::Line, text("?? "), operand(r, p)])),
                ]));
            }
            let mut operands = Vec::new();
            chain(*op, e, &mut operands);
            // Arithmetic fills lines (breaks only where the next operand does not fit);
            // logic and comparisons break before every operator or none.
            let fill = (6..=7).contains(&p);
            let mut parts = Vec::new();
            let mut tail = Vec::new();
            for (i, x) in operands.iter().enumerate() {
                let min = if i == 0 { p } else { p + 1 };
                let doc = arith_operand(x, min);
                if i == 0 {
                    parts.push(doc);
                } else if fill {
                    tail.push(group(cat(vec![
                        Doc::Line,
                        text(format!("{} ", op.symbol())),
                        doc,
                    ])));
                } else {
                    tail.push(Doc::Line);
                    tail.push(text(format!("{} ", op.symbol())));
                    tail.push(doc);
                }
            }
            parts.push(nest(cat(tail)));
            group(cat(parts))
        }
        ExprKind::If(..) => {
            let mut arms = Vec::new();
            let mut rest = e;
            while let ExprKind::If(c, a, b) = &rest.kind {
                arms.push((c, a));
                rest = b;
            }
            let short = |x: &Expr| flat(x).chars().count() <= 40;
            if let [(c, a)] = arms[..] {
                if huggable(rest) && short(c) && short(a) {
                    return group(cat(vec![
                        text("if "),
                        operand_free(c),
                        text(" then "),
                        operand_free(a),
                        text(" else "),
                        operand_free(rest),
                    ]));
                }
            }
            let mut parts = Vec::new();
            for (i, (c, a)) in arms.into_iter().enumerate() {
                if i > 0 {
                    parts.push(Doc::Line);
                    parts.push(text("else "));
                }
                parts.extend([
                    text("if "),
                    operand_free(c),
                    text(" then "),
                    operand_free(a),
                ]);
            }
            parts.extend([Doc::Line, text("else "), operand_free(rest)]);
            group(cat(parts))
        }
    }
}

/// Any expression but a lambda, which gets parentheses.
fn operand_free(e: &Expr) -> Doc {
    paren_if(matches!(e.kind, ExprKind::Lambda(..)), to_doc(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;
    use proptest::prelude::*;

    fn round_trip(src: &str) {
        let Ok(e) = parse(src) else { return };
        for width in [usize::MAX, 60, 20, 1] {
            let printed = layout(&e, width);
            let again = parse(&printed).unwrap_or_else(|err| {
                panic!("{src:?} printed as {printed:?} does not parse: {err}")
            });
            assert!(
                same(&e, &again),
                "{src:?} printed as {printed:?} reads back differently"
            );
            let twice = layout(&again, width);
            assert_eq!(printed, twice, "printing {src:?} is not stable");
        }
    }

    #[test]
    fn precedence_and_parentheses() {
        for (src, want) in [
            ("(a + b) * c", "(a + b) * c"),
            ("a + (b * c)", "a + b * c"),
            ("a - (b - c)", "a - (b - c)"),
            ("(a - b) - c", "a - b - c"),
            ("a ?? (b ?? c)", "a ?? b ?? c"),
            ("(a ?? b) ?? c", "(a ?? b) ?? c"),
            ("(price ?? 0) * 100", "(price ?? 0) * 100"),
            ("not (a and b)", "not (a and b)"),
            ("(not a) == b", "(not a) == b"),
            ("a == (not b)", "a == (not b)"),
            ("-(a.b)", "-a.b"),
            ("(-a).b", "(-a).b"),
            ("(-5).x", "(-5).x"),
            ("- -x", "-(-x)"),
            ("x|len()", "x | len()"),
            ("x | f(1) | g()", "x | f(1) | g()"),
            ("(a + b) | f()", "a + b | f()"),
            ("(a or b) | f()", "(a or b) | f()"),
            ("(x | f()) + 1", "(x | f()) + 1"),
            ("f(x)", "f(x)"),
            ("(if a then b else c) + 1", "(if a then b else c) + 1"),
            (
                "if a then b else if c then d else e",
                "if a then b else if c then d else e",
            ),
            (
                "{\"a-b\": 1, c: 'x\"y', [k]: 2}",
                "{\"a-b\": 1, c: 'x\"y', [k]: 2}",
            ),
            ("map(xs, (a, b) => a)", "map(xs, (a, b) => a)"),
            ("\"tab\\there\"", "\"tab\\there\""),
        ] {
            let e = parse(src).unwrap();
            assert_eq!(flat(&e), want, "{src}");
            round_trip(src);
        }
    }

    #[test]
    fn long_expressions_break() {
        let e = parse("not empty(order.items) and order.status in settings.open_statuses and linked(\"order\", order.id) == null").unwrap();
        assert_eq!(
            layout(&e, 50),
            "not empty(order.items)\n  and order.status in settings.open_statuses\n  and linked(\"order\", order.id) == null"
        );
        let e = parse("if id == null then null else {meta: {href: base + \"/entity/\" + type + \"/\" + string(id), type: type}}").unwrap();
        let out = layout(&e, 40);
        assert!(out.lines().count() > 2, "{out}");
        round_trip(&flat(&e));
    }

    fn atom() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            (0i64..1000).prop_map(|i| i.to_string()),
            (0u32..1000, 1u32..100).prop_map(|(a, b)| format!("{a}.{b}")),
            "[a-z]{1,3}".prop_filter("not a keyword", |s| {
                !matches!(
                    s.as_str(),
                    "and" | "or" | "not" | "in" | "if" | "then" | "else"
                )
            }),
            "[a-z \"'\\\\]{0,6}".prop_map(|s| format!("{:?}", s)),
            Just("'it''s'".to_owned()).prop_map(|_| "'it\\'s'".to_owned()),
        ]
    }

    fn expr() -> impl Strategy<Value = String> {
        atom().prop_recursive(5, 48, 4, |inner| {
            let ops = prop_oneof![
                Just(" or "),
                Just(" and "),
                Just("=="),
                Just(" != "),
                Just("<"),
                Just(" <= "),
                Just(">"),
                Just(">="),
                Just(" in "),
                Just(" not in "),
                Just(" ?? "),
                Just("+"),
                Just(" - "),
                Just("*"),
                Just(" / "),
                Just("%"),
            ];
            prop_oneof![
                (inner.clone(), ops, inner.clone()).prop_map(|(a, o, b)| format!("{a}{o}{b}")),
                inner.clone().prop_map(|a| format!("({a})")),
                inner.clone().prop_map(|a| format!("not {a}")),
                inner.clone().prop_map(|a| format!("-{a}")),
                inner.clone().prop_map(|a| format!("{a}.x")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}[{b}]")),
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|v| format!("f({})", v.join(", "))),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} | g({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("map({a}, i => {b})")),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| format!("map({a}, (i, j) => {{k: {b}}})")),
                (inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(a, b, c)| format!("if {a} then {b} else {c}")),
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| format!("{{a: {a}, \"b c\": {b}, [{a}]: 1}}")),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn printing_reads_back_the_same(src in expr()) {
            prop_assume!(parse(&src).is_ok());
            round_trip(&src);
        }
    }
}
