//! Turns pest pairs into the syntax tree, applying operator precedence.

use std::str::FromStr;
use std::sync::OnceLock;

use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser;
use rust_decimal::Decimal;

use super::ast::{BinOp, Expr, ExprKind, ObjKey, Span, UnOp};
use super::parser::{ExprParser, Rule};

/// A syntax error in one expression.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    /// What is wrong, for a human.
    pub message: String,
    /// Where, in the expression text.
    pub span: Span,
}

impl SyntaxError {
    fn new(message: impl Into<String>, span: Span) -> SyntaxError {
        SyntaxError {
            message: message.into(),
            span,
        }
    }
}

type Result<T> = std::result::Result<T, SyntaxError>;

/// Parses one expression.
///
/// ```
/// let e = skladsync_engine::syntax::parse("1 + 2 * 3").unwrap();
/// assert_eq!(e.span.end, 9);
/// ```
pub fn parse(text: &str) -> Result<Expr> {
    if text.trim().is_empty() {
        return Err(SyntaxError::new(
            "empty expression: write a value, like `null` or `\"\"`",
            Span::default(),
        ));
    }
    check_nesting(text)?;
    let mut pairs = ExprParser::parse(Rule::program, text).map_err(|e| pest_error(e, text))?;
    let program = pairs
        .next()
        .ok_or_else(|| SyntaxError::new("empty expression", Span::default()))?;
    let expr = program
        .into_inner()
        .next()
        .ok_or_else(|| SyntaxError::new("empty expression", Span::default()))?;
    let expr = lower_expr(expr)?;
    check_depth(&expr)?;
    Ok(expr)
}

/// How deeply an expression may nest (brackets, `if`s, prefix operators). The parser, the
/// compiler and the evaluator are recursive; this keeps them far from the stack's end.
pub const MAX_NESTING: usize = 64;

/// Rejects expressions nested deeper than [`MAX_NESTING`] (brackets, runs of prefix
/// operators, `if`s) before the recursive parser sees them.
fn check_nesting(text: &str) -> Result<()> {
    let mut depth = 0usize;
    let mut prefix_run = 0usize;
    let mut ifs = 0usize;
    let mut ops = 0usize;
    let mut in_string: Option<char> = None;
    let mut escaped = false;
    let mut word = String::new();
    let too_deep = |at: usize| {
        let start = u32::try_from(at).unwrap_or(u32::MAX);
        Err(SyntaxError::new(
            format!("this expression is nested too deeply (more than {MAX_NESTING} levels); split it with `let`"),
            Span { start, end: start.saturating_add(1) },
        ))
    };
    for (at, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        if let Some(q) = in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                in_string = None;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            match word.as_str() {
                "not" => prefix_run += 1,
                "if" => {
                    ifs += 1;
                    prefix_run = 0;
                }
                "and" | "or" | "in" => {
                    ops += 1;
                    prefix_run = 0;
                }
                _ => prefix_run = 0,
            }
            word.clear();
        }
        match c {
            '"' | '\'' => {
                in_string = Some(c);
                prefix_run = 0;
            }
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '-' => {
                prefix_run += 1;
                ops += 1;
            }
            c if c.is_whitespace() => {}
            c => {
                prefix_run = 0;
                if "+*/%<>=!?|,".contains(c) {
                    ops += 1;
                }
            }
        }
        if ops > MAX_OPERATORS {
            let start = u32::try_from(at).unwrap_or(u32::MAX);
            return Err(SyntaxError::new(
                format!(
                    "this expression has more than {MAX_OPERATORS} operators; split it with `let`"
                ),
                Span {
                    start,
                    end: start.saturating_add(1),
                },
            ));
        }
        if depth > MAX_NESTING || prefix_run > MAX_NESTING || ifs > MAX_NESTING {
            return too_deep(at);
        }
    }
    Ok(())
}

/// Rejects syntax trees deeper than [`MAX_DEPTH`] (e.g. a chain of thousands of `+`), so
/// the recursive compiler and evaluator stay far from the stack's end. Walks with an
/// explicit stack.
fn check_depth(expr: &Expr) -> Result<()> {
    let mut stack: Vec<(&Expr, usize)> = vec![(expr, 1)];
    while let Some((e, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return Err(SyntaxError::new(
                format!("this expression is too deeply nested (more than {MAX_DEPTH} levels); split it with `let`"),
                e.span,
            ));
        }
        match &e.kind {
            ExprKind::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            ExprKind::Object(pairs) => {
                for (k, v) in pairs {
                    if let ObjKey::Computed(k) = k {
                        stack.push((k, d + 1));
                    }
                    stack.push((v, d + 1));
                }
            }
            ExprKind::Field(x, _) | ExprKind::Unary(_, x) | ExprKind::Lambda(_, x) => {
                stack.push((x, d + 1))
            }
            ExprKind::Index(a, b) | ExprKind::Binary(_, a, b) => {
                stack.push((a, d + 1));
                stack.push((b, d + 1));
            }
            ExprKind::Call(_, _, args) => stack.extend(args.iter().map(|a| (a, d + 1))),
            ExprKind::If(a, b, c) => {
                stack.push((a, d + 1));
                stack.push((b, d + 1));
                stack.push((c, d + 1));
            }
            _ => {}
        }
    }
    Ok(())
}

/// How many operators (and commas) one expression may have.
pub const MAX_OPERATORS: usize = 2000;

/// How deep a syntax tree may be.
pub const MAX_DEPTH: usize = 256;

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::op_or, Assoc::Left))
            .op(Op::infix(Rule::op_and, Assoc::Left))
            .op(Op::prefix(Rule::op_not))
            .op(Op::infix(Rule::op_eq, Assoc::Left)
                | Op::infix(Rule::op_ne, Assoc::Left)
                | Op::infix(Rule::op_lt, Assoc::Left)
                | Op::infix(Rule::op_le, Assoc::Left)
                | Op::infix(Rule::op_gt, Assoc::Left)
                | Op::infix(Rule::op_ge, Assoc::Left)
                | Op::infix(Rule::op_in, Assoc::Left)
                | Op::infix(Rule::op_not_in, Assoc::Left))
            .op(Op::infix(Rule::op_pipe, Assoc::Left))
            .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
            .op(Op::infix(Rule::op_mul, Assoc::Left)
                | Op::infix(Rule::op_div, Assoc::Left)
                | Op::infix(Rule::op_mod, Assoc::Left))
            .op(Op::infix(Rule::op_coalesce, Assoc::Right))
            .op(Op::prefix(Rule::op_neg))
    })
}

fn lower_expr(pair: Pair<'_, Rule>) -> Result<Expr> {
    let span = Span::from_pest(pair.as_span());
    match pair.as_rule() {
        Rule::expr => {
            let inner = pair
                .into_inner()
                .next()
                .ok_or_else(|| SyntaxError::new("empty expression", span))?;
            lower_expr(inner)
        }
        Rule::conditional => {
            let mut parts = pair.into_inner().filter(|p| p.as_rule() == Rule::expr);
            let mut next = || {
                parts
                    .next()
                    .ok_or_else(|| SyntaxError::new("incomplete `if … then … else …`", span))
                    .and_then(lower_expr)
            };
            let (c, a, b) = (next()?, next()?, next()?);
            Ok(Expr {
                kind: ExprKind::If(Box::new(c), Box::new(a), Box::new(b)),
                span,
            })
        }
        Rule::lambda => {
            let mut parts = pair.into_inner();
            let params_pair = parts
                .next()
                .ok_or_else(|| SyntaxError::new("lambda without parameters", span))?;
            let params = params_pair
                .into_inner()
                .map(|p| (p.as_str().to_owned(), Span::from_pest(p.as_span())))
                .collect();
            let body = parts
                .next()
                .ok_or_else(|| SyntaxError::new("lambda without a body", span))
                .and_then(lower_expr)?;
            Ok(Expr {
                kind: ExprKind::Lambda(params, Box::new(body)),
                span,
            })
        }
        Rule::operation => lower_operation(pair.into_inner()),
        other => Err(SyntaxError::new(
            format!("unexpected {}", rule_name(other)),
            span,
        )),
    }
}

fn lower_operation(pairs: Pairs<'_, Rule>) -> Result<Expr> {
    pratt()
        .map_primary(lower_postfix)
        .map_prefix(|op, rhs| {
            let rhs = rhs?;
            let span = Span::from_pest(op.as_span()).to(rhs.span);
            let op = match op.as_rule() {
                Rule::op_not => UnOp::Not,
                _ => UnOp::Neg,
            };
            Ok(fold_unary(op, rhs, span))
        })
        .map_infix(|lhs, op, rhs| {
            let (lhs, rhs) = (lhs?, rhs?);
            let span = lhs.span.to(rhs.span);
            let op = match op.as_rule() {
                Rule::op_pipe => return pipe(lhs, rhs, Span::from_pest(op.as_span())),
                Rule::op_or => BinOp::Or,
                Rule::op_and => BinOp::And,
                Rule::op_eq => BinOp::Eq,
                Rule::op_ne => BinOp::Ne,
                Rule::op_lt => BinOp::Lt,
                Rule::op_le => BinOp::Le,
                Rule::op_gt => BinOp::Gt,
                Rule::op_ge => BinOp::Ge,
                Rule::op_in => BinOp::In,
                Rule::op_not_in => BinOp::NotIn,
                Rule::op_coalesce => BinOp::Coalesce,
                Rule::op_add => BinOp::Add,
                Rule::op_sub => BinOp::Sub,
                Rule::op_mul => BinOp::Mul,
                Rule::op_div => BinOp::Div,
                _ => BinOp::Rem,
            };
            Ok(Expr {
                kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                span,
            })
        })
        .parse(pairs)
}

/// `-5` is the literal -5, not a negation at run time.
fn fold_unary(op: UnOp, rhs: Expr, span: Span) -> Expr {
    let kind = match (op, &rhs.kind) {
        (UnOp::Neg, ExprKind::Int(i)) if i.checked_neg().is_some() => ExprKind::Int(-i),
        (UnOp::Neg, ExprKind::Dec(d)) => ExprKind::Dec(-d),
        _ => ExprKind::Unary(op, Box::new(rhs)),
    };
    Expr { kind, span }
}

/// `x | f(a)` is `f(x, a)`.
fn pipe(lhs: Expr, rhs: Expr, op_span: Span) -> Result<Expr> {
    let span = lhs.span.to(rhs.span);
    match rhs.kind {
        ExprKind::Call(name, name_span, mut args) => {
            args.insert(0, lhs);
            Ok(Expr {
                kind: ExprKind::Call(name, name_span, args),
                span,
            })
        }
        ExprKind::Name(name) => Ok(Expr {
            kind: ExprKind::Call(name, rhs.span, vec![lhs]),
            span,
        }),
        _ => Err(SyntaxError::new(
            "the right side of `|` must be a function call, like `items | map(i => i.price)`",
            op_span.to(rhs.span),
        )),
    }
}

fn lower_postfix(pair: Pair<'_, Rule>) -> Result<Expr> {
    let mut parts = pair.into_inner();
    let first = parts
        .next()
        .ok_or_else(|| SyntaxError::new("missing operand", Span::default()))?;
    let mut expr = lower_primary(first)?;
    for suffix in parts {
        let suffix_span = Span::from_pest(suffix.as_span());
        let span = expr.span.to(suffix_span);
        expr = match suffix.as_rule() {
            Rule::field_access => {
                let name = suffix
                    .into_inner()
                    .next()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                Expr {
                    kind: ExprKind::Field(Box::new(expr), name),
                    span,
                }
            }
            Rule::index_access => {
                let index = suffix
                    .into_inner()
                    .next()
                    .ok_or_else(|| SyntaxError::new("empty index `[]`", suffix_span))
                    .and_then(lower_expr)?;
                Expr {
                    kind: ExprKind::Index(Box::new(expr), Box::new(index)),
                    span,
                }
            }
            _ => {
                let ExprKind::Name(name) = expr.kind else {
                    return Err(SyntaxError::new(
                        "only functions can be called, by name: `len(x)`, not `x.len()`",
                        suffix_span,
                    ));
                };
                let args = suffix
                    .into_inner()
                    .map(lower_expr)
                    .collect::<Result<Vec<_>>>()?;
                Expr {
                    kind: ExprKind::Call(name, expr.span, args),
                    span,
                }
            }
        };
    }
    Ok(expr)
}

fn lower_primary(pair: Pair<'_, Rule>) -> Result<Expr> {
    let span = Span::from_pest(pair.as_span());
    let text = pair.as_str();
    let kind =
        match pair.as_rule() {
            Rule::null => ExprKind::Null,
            Rule::boolean => ExprKind::Bool(text == "true"),
            Rule::integer => match text.parse::<i64>() {
                Ok(i) => ExprKind::Int(i),
                Err(_) => ExprKind::Dec(Decimal::from_str(text).map_err(|_| {
                    SyntaxError::new("this number is too large (at most 28 digits)", span)
                })?),
            },
            Rule::decimal => ExprKind::Dec(Decimal::from_str(text).map_err(|_| {
                SyntaxError::new("this number is too long (at most 28 digits)", span)
            })?),
            Rule::string => {
                let inner = pair.into_inner().next().map(|p| p.as_str()).unwrap_or("");
                ExprKind::Str(unescape(inner, span)?)
            }
            Rule::array => ExprKind::Array(
                pair.into_inner()
                    .map(lower_expr)
                    .collect::<Result<Vec<_>>>()?,
            ),
            Rule::object => {
                let mut pairs = Vec::new();
                for kv in pair.into_inner() {
                    let kv_span = Span::from_pest(kv.as_span());
                    let mut parts = kv.into_inner();
                    let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
                        return Err(SyntaxError::new("incomplete `key: value`", kv_span));
                    };
                    let key_span = Span::from_pest(key.as_span());
                    let key = match key.as_rule() {
                        Rule::field_name => ObjKey::Static(key.as_str().to_owned()),
                        Rule::string => {
                            let inner = key.into_inner().next().map(|p| p.as_str()).unwrap_or("");
                            ObjKey::Static(unescape(inner, key_span)?)
                        }
                        _ => {
                            let inner = key
                                .into_inner()
                                .next()
                                .ok_or_else(|| SyntaxError::new("empty key `[]`", key_span))?;
                            ObjKey::Computed(lower_expr(inner)?)
                        }
                    };
                    pairs.push((key, lower_expr(value)?));
                }
                ExprKind::Object(pairs)
            }
            Rule::paren => {
                let inner = pair
                    .into_inner()
                    .next()
                    .ok_or_else(|| SyntaxError::new("empty parentheses", span))?;
                let mut e = lower_expr(inner)?;
                e.span = span;
                return Ok(e);
            }
            Rule::ident => ExprKind::Name(text.to_owned()),
            other => {
                return Err(SyntaxError::new(
                    format!("unexpected {}", rule_name(other)),
                    span,
                ))
            }
        };
    Ok(Expr { kind, span })
}

fn unescape(raw: &str, span: Span) -> Result<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .ok_or_else(|| SyntaxError::new(format!("bad escape `\\u{hex}`"), span))?;
                out.push(ch);
            }
            Some(other) => out.push(other),
            None => return Err(SyntaxError::new("string ends with `\\`", span)),
        }
    }
    Ok(out)
}

fn pest_error(e: pest::error::Error<Rule>, text: &str) -> SyntaxError {
    let span = match e.location {
        InputLocation::Pos(p) => Span {
            start: u32::try_from(p).unwrap_or(u32::MAX),
            end: u32::try_from(p + 1).unwrap_or(u32::MAX),
        },
        InputLocation::Span((a, b)) => Span {
            start: u32::try_from(a).unwrap_or(u32::MAX),
            end: u32::try_from(b).unwrap_or(u32::MAX),
        },
    };
    let message = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut wanted: Vec<&str> = positives.iter().map(|r| rule_name(*r)).collect();
            wanted.sort_unstable();
            wanted.dedup();
            if wanted.is_empty() {
                "unexpected text".to_owned()
            } else {
                format!("expected {}", join_or(&wanted))
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let at = text
        .get(span.start as usize..)
        .and_then(|t| t.chars().next());
    if matches!(at, Some('"' | '\'')) {
        return SyntaxError {
            message: "this string is not closed, or has an unknown escape (known: \\\" \\' \\\\ \\n \\t \\r \\/ \\uXXXX)".to_owned(),
            span,
        };
    }
    SyntaxError { message, span }
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Human names of grammar rules, for error messages.
pub(crate) fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of expression",
        Rule::program | Rule::expr | Rule::operation | Rule::postfix | Rule::primary => "a value",
        Rule::conditional => "`if … then … else …`",
        Rule::lambda | Rule::lambda_params => "a lambda `x => …`",
        Rule::field_access => "`.name`",
        Rule::index_access => "`[index]`",
        Rule::call_args => "`(arguments)`",
        Rule::paren => "`(`",
        Rule::null => "`null`",
        Rule::boolean => "`true` or `false`",
        Rule::decimal | Rule::integer => "a number",
        Rule::string | Rule::dq_chars | Rule::sq_chars => "a string",
        Rule::array => "`[`",
        Rule::object => "`{`",
        Rule::pair => "`key: value`",
        Rule::computed_key => "`[key]`",
        Rule::ident | Rule::field_name => "a name",
        Rule::keyword => "a keyword",
        Rule::kw_if => "`if`",
        Rule::kw_then => "`then`",
        Rule::kw_else => "`else`",
        Rule::op_not => "`not`",
        Rule::op_neg => "`-`",
        Rule::op_or
        | Rule::op_and
        | Rule::op_eq
        | Rule::op_ne
        | Rule::op_le
        | Rule::op_ge
        | Rule::op_lt
        | Rule::op_gt
        | Rule::op_not_in
        | Rule::op_in
        | Rule::op_pipe
        | Rule::op_coalesce
        | Rule::op_add
        | Rule::op_sub
        | Rule::op_mul
        | Rule::op_div
        | Rule::op_mod => "an operator",
        _ => "something else",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> String {
        parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .to_string()
    }

    #[test]
    fn precedence() {
        assert_eq!(p("1 + 2 * 3"), "(1 + (2 * 3))");
        assert_eq!(p("a ?? 0 * 100"), "((a ?? 0) * 100)");
        assert_eq!(p("not a == b"), "(not (a == b))");
        assert_eq!(p("a or b and c"), "(a or (b and c))");
        assert_eq!(p("xs | len() > 0"), "(len(xs) > 0)");
        assert_eq!(p("a + b | f(1)"), "f((a + b), 1)");
        assert_eq!(p("x not in xs"), "(x not in xs)");
        assert_eq!(p("-x.y"), "(-x.y)");
        assert_eq!(p("-5"), "-5");
    }

    #[test]
    fn postfix_and_literals() {
        assert_eq!(p("a.b[0].c"), "a.b[0].c");
        assert_eq!(p("a[\"k-1\"]"), "a[\"k-1\"]");
        assert_eq!(
            p("{a: 1, 'b': [true, null], [k]: 2.50}"),
            "{\"a\": 1, \"b\": [true, null], [k]: 2.50}"
        );
        assert_eq!(p("map(xs, i => i.q)"), "map(xs, (i) => i.q)");
        assert_eq!(p("xs | map((a, b) => a)"), "map(xs, (a, b) => a)");
        assert_eq!(p("if a then 1 else 2"), "(if a then 1 else 2)");
        assert_eq!(p("x.in.not"), "x.in.not");
        assert_eq!(p("'it\\'s'"), "\"it's\"");
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse("1 +").unwrap_err();
        assert_eq!(e.span.start, 3);
        let e = parse("a | 1").unwrap_err();
        assert!(e.message.contains("must be a function call"), "{e}");
        let e = parse("x.len()").unwrap_err();
        assert!(e.message.contains("only functions can be called"), "{e}");
    }
}
