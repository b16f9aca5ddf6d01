//! `skladsync fmt`: an idempotent formatter for rule files.
//!
//! Keys of fixed-shape maps go in a stable order (`id, doc, on, subject, let, when, do` in
//! a rule, the verb first in an effect), indentation is two spaces, expressions are
//! pretty-printed from their syntax tree (templates and other text are left as written),
//! comments and single blank lines stay where they were. Every result is checked before
//! it is written: it must read back as the same rule file (expressions compared by their
//! syntax trees), keep every comment, and format to itself; a file that fails any of these
//! is refused with a message, never written.

pub mod ctx;
pub mod emit;
pub mod scalar;
pub mod tree;

use skladsync_engine::syntax::{self, pretty};
use skladsync_engine::template::is_template;
use yaml_rust2::scanner::TScalarStyle;

use ctx::Ctx;
use tree::{Kind, Node};

/// Why a file was not formatted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FmtError {
    /// It cannot be read as a rule file's YAML.
    #[error("{0}")]
    Tree(#[from] tree::TreeError),
    /// An expression does not parse.
    #[error("expression does not parse ({message}): {text}; `skladsync check` shows where")]
    Expr {
        /// The expression.
        text: String,
        /// The parser's message.
        message: String,
    },
    /// The formatted text would not be the same file (a bug in fmt; the file is left alone).
    #[error("fmt cannot format this file safely: {0}")]
    Unsafe(String),
}

impl From<scalar::BadExpr> for FmtError {
    fn from(e: scalar::BadExpr) -> FmtError {
        FmtError::Expr {
            text: e.text,
            message: e.message,
        }
    }
}

/// Formats the text of a rule file.
pub fn format(text: &str) -> Result<String, FmtError> {
    format_as(text, Ctx::File)
}

/// Formats YAML whose top is `root` (a rule file: [`Ctx::File`]; any other YAML, such as
/// a settings file: [`Ctx::Text`], which only re-indents).
pub fn format_as(text: &str, root: Ctx) -> Result<String, FmtError> {
    let text = text.replace("\r\n", "\n");
    let before = tree::parse(&text)?;
    let out = emit::emit(&before, root)?;
    let after = tree::parse(&out)
        .map_err(|e| FmtError::Unsafe(format!("the result is not valid YAML ({e})")))?;
    if before.comments.all_texts() != after.comments.all_texts() {
        return Err(FmtError::Unsafe(
            "a comment could not be kept where it is; move it above the nearest key".into(),
        ));
    }
    match (&before.root, &after.root) {
        (Some(a), Some(b)) => same(a, b, root).map_err(FmtError::Unsafe)?,
        (None, None) => {}
        _ => return Err(FmtError::Unsafe("the document would change".into())),
    }
    let again = emit::emit(&after, root)?;
    if again != out {
        let (n, a, b) = out
            .lines()
            .zip(again.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(n, (a, b))| (n + 1, a, b))
            .unwrap_or((0, "", ""));
        return Err(FmtError::Unsafe(format!(
            "formatting the result again changes it (a bug in fmt): line {n} `{a}` becomes `{b}`"
        )));
    }
    Ok(out)
}

fn scalar_value(node: &Node) -> Option<(serde_yaml::Value, &str)> {
    let Kind::Scalar(s) = &node.kind else {
        return None;
    };
    let v = if s.style == TScalarStyle::Plain {
        serde_yaml::from_str(&s.value).unwrap_or(serde_yaml::Value::String(s.value.clone()))
    } else {
        serde_yaml::Value::String(s.value.clone())
    };
    Some((v, &s.value))
}

/// Whether two trees are the same rule file: maps of fixed shape compared as sets of
/// keys, other maps and lists in order, expressions by syntax tree.
fn same(a: &Node, b: &Node, ctx: Ctx) -> Result<(), String> {
    if a.anchor != b.anchor {
        return Err(format!("anchor {:?} would change", a.anchor));
    }
    match (&a.kind, &b.kind) {
        (Kind::Alias(x), Kind::Alias(y)) if x == y => Ok(()),
        (Kind::Scalar(_), Kind::Scalar(_)) => {
            let (va, ta) = scalar_value(a).ok_or("scalar")?;
            let (vb, tb) = scalar_value(b).ok_or("scalar")?;
            if ctx.is_expr() {
                if let (serde_yaml::Value::String(_), serde_yaml::Value::String(_)) = (&va, &vb) {
                    if !is_template(ta) {
                        let ea = syntax::parse(ta).map_err(|e| e.message)?;
                        let eb = syntax::parse(tb).map_err(|e| e.message)?;
                        return if pretty::same(&ea, &eb) {
                            Ok(())
                        } else {
                            Err(format!("expression `{ta}` would change"))
                        };
                    }
                }
            }
            if va == vb {
                Ok(())
            } else {
                Err(format!("value {ta:?} would change"))
            }
        }
        (Kind::Seq(x, _), Kind::Seq(y, _)) if x.len() == y.len() => {
            let child = ctx.child(None);
            x.iter().zip(y).try_for_each(|(p, q)| same(p, q, child))
        }
        (Kind::Map(x, _), Kind::Map(y, _)) if x.len() == y.len() => {
            let key = |n: &Node| {
                scalar_value(n)
                    .map(|(_, t)| t.to_owned())
                    .unwrap_or_default()
            };
            let mut xs: Vec<&(Node, Node)> = x.iter().collect();
            let mut ys: Vec<&(Node, Node)> = y.iter().collect();
            if ctx.reorders() {
                xs.sort_by_key(|(k, _)| key(k));
                ys.sort_by_key(|(k, _)| key(k));
            }
            for ((ka, va), (kb, vb)) in xs.into_iter().zip(ys) {
                same(ka, kb, Ctx::Text)?;
                same(va, vb, ctx.child(Some(&key(ka))))?;
            }
            Ok(())
        }
        _ => Err("the structure would change".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(text: &str) -> String {
        let out = format(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(format(&out).expect("again"), out, "not idempotent");
        out
    }

    #[test]
    fn comments_at_the_end_of_a_block_stay_there() {
        let text = "rules:\n  - id: a\n    on: e\n    do:\n      - skip: '\"x\"'\n      # - create: later\n  - id: b\n    on: e\n";
        assert_eq!(fmt(text), text);
    }

    #[test]
    fn a_comment_inside_a_flow_map_makes_it_a_block() {
        let text = "rules:\n  - id: a\n    on: e\n    do:\n      - link: {kind: k, # the kind\n          a: x, b: y}\n";
        assert_eq!(
            fmt(text),
            // The comment keeps its column.
            "rules:\n  - id: a\n    on: e\n    do:\n      - link:\n          kind: k       # the kind\n          a: x\n          b: y\n"
        );
    }

    #[test]
    fn hashes_inside_scalars_are_not_comments() {
        let text = "functions:\n  f(x): |\n    \"a #b\" + x\n  g(x): '\"#\" + x'\n";
        assert_eq!(
            fmt(text),
            "functions:\n  f(x): '\"a #b\" + x'\n  g(x): '\"#\" + x'\n"
        );
    }

    #[test]
    fn anchors_aliases_and_header_are_kept() {
        let text =
            "# Header.\n\nevents:\n  a:\n    fields: &f\n      x: the x\n  b:\n    fields: *f\n";
        assert_eq!(fmt(text), text);
    }

    #[test]
    fn keys_are_ordered_and_comments_move_with_them() {
        let text = "rules:\n  - do:\n      - body: {a: 1}\n        # the target\n        create: s.e\n    # when\n    when: [x]\n    id: r\n    on: e\n";
        assert_eq!(
            fmt(text),
            "rules:\n  - id: r\n    on: e\n    # when\n    when: [x]\n    do:\n      # the target\n      - create: s.e\n        body: {a: 1}\n"
        );
    }

    #[test]
    fn an_expression_that_does_not_parse_is_refused() {
        assert!(matches!(
            format("rules:\n  - id: a\n    on: e\n    when: ['a +']\n"),
            Err(FmtError::Expr { .. })
        ));
    }
}
