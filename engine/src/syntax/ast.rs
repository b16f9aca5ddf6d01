//! The syntax tree of one expression, with byte spans into its text.

use std::fmt;

use rust_decimal::Decimal;

/// A byte range in the text of one expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from pest positions.
    pub fn from_pest(span: pest::Span<'_>) -> Span {
        Span {
            start: u32::try_from(span.start()).unwrap_or(u32::MAX),
            end: u32::try_from(span.end()).unwrap_or(u32::MAX),
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// An expression node with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    /// What the node is.
    pub kind: ExprKind,
    /// Where it is in the expression text.
    pub span: Span,
}

/// The kinds of expression nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A whole number literal.
    Int(i64),
    /// A decimal literal.
    Dec(Decimal),
    /// A string literal.
    Str(String),
    /// `[a, b]`.
    Array(Vec<Expr>),
    /// `{k: v}`.
    Object(Vec<(ObjKey, Expr)>),
    /// A name in scope.
    Name(String),
    /// `x.name`.
    Field(Box<Expr>, String),
    /// `x[i]`.
    Index(Box<Expr>, Box<Expr>),
    /// `f(args)`; the span of the name is kept for diagnostics.
    Call(String, Span, Vec<Expr>),
    /// `x => body`.
    Lambda(Vec<(String, Span)>, Box<Expr>),
    /// A prefix operator.
    Unary(UnOp, Box<Expr>),
    /// An infix operator.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `if c then a else b`.
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// A key of an object literal.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjKey {
    /// A fixed key.
    Static(String),
    /// `[expr]`.
    Computed(Expr),
}

/// Prefix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    /// `not`.
    Not,
    /// `-`.
    Neg,
}

/// Infix operators (the pipe is lowered to a call while parsing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    /// `or`.
    Or,
    /// `and`.
    And,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `in`.
    In,
    /// `not in`.
    NotIn,
    /// `??`.
    Coalesce,
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Rem,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::NotIn => "not in",
            BinOp::Coalesce => "??",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

impl Expr {
    /// Calls `f` on this node and every node below it, depth first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Array(items) => items.iter().for_each(|e| e.walk(f)),
            ExprKind::Object(pairs) => {
                for (k, v) in pairs {
                    if let ObjKey::Computed(k) = k {
                        k.walk(f);
                    }
                    v.walk(f);
                }
            }
            ExprKind::Field(x, _) | ExprKind::Unary(_, x) | ExprKind::Lambda(_, x) => x.walk(f),
            ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            ExprKind::Call(_, _, args) => args.iter().for_each(|e| e.walk(f)),
            ExprKind::If(a, b, c) => {
                a.walk(f);
                b.walk(f);
                c.walk(f);
            }
            _ => {}
        }
    }
}

/// A compact, fully parenthesised rendering: `(1 + (2 * 3))`, `map(xs, (i) => i.q)`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{e}")?;
            }
            Ok(())
        }
        match &self.kind {
            ExprKind::Null => f.write_str("null"),
            ExprKind::Bool(b) => write!(f, "{b}"),
            ExprKind::Int(i) => write!(f, "{i}"),
            ExprKind::Dec(d) => write!(f, "{d}"),
            ExprKind::Str(s) => write!(f, "{s:?}"),
            ExprKind::Name(n) => f.write_str(n),
            ExprKind::Field(x, n) => write!(f, "{x}.{n}"),
            ExprKind::Index(x, i) => write!(f, "{x}[{i}]"),
            ExprKind::Call(n, _, args) => {
                write!(f, "{n}(")?;
                list(f, args)?;
                f.write_str(")")
            }
            ExprKind::Lambda(params, body) => {
                let names: Vec<&str> = params.iter().map(|(p, _)| p.as_str()).collect();
                write!(f, "({}) => {body}", names.join(", "))
            }
            ExprKind::Unary(UnOp::Not, x) => write!(f, "(not {x})"),
            ExprKind::Unary(UnOp::Neg, x) => write!(f, "(-{x})"),
            ExprKind::Binary(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            ExprKind::If(c, a, b) => write!(f, "(if {c} then {a} else {b})"),
            ExprKind::Array(items) => {
                f.write_str("[")?;
                list(f, items)?;
                f.write_str("]")
            }
            ExprKind::Object(pairs) => {
                f.write_str("{")?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match k {
                        ObjKey::Static(k) => write!(f, "{k:?}: {v}")?,
                        ObjKey::Computed(k) => write!(f, "[{k}]: {v}")?,
                    }
                }
                f.write_str("}")
            }
        }
    }
}
