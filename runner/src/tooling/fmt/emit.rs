//! Writing a tree back: two-space indentation, sequences indented under their key, keys
//! of fixed-shape maps in their order, flow collections kept on one line when they fit
//! and carry no comments, comments and single blank lines where they were.

use super::ctx::Ctx;
use super::scalar::{self, BadExpr, Repr};
use super::tree::{Comments, Kind, Line, Node, Trailing, Tree};

/// The line width fmt aims for.
pub const WIDTH: usize = 100;

struct Emitter<'a> {
    c: &'a Comments,
    out: String,
}

/// Writes a tree; fails on an expression that does not parse.
pub fn emit(tree: &Tree, root_ctx: Ctx) -> Result<String, BadExpr> {
    let mut e = Emitter {
        c: &tree.comments,
        out: String::new(),
    };
    e.lines(&tree.comments.header, 0, true);
    if tree.explicit_start {
        e.out.push_str("---\n");
    }
    if let Some(root) = &tree.root {
        match &root.kind {
            Kind::Map(entries, _) if !entries.is_empty() && root.anchor.is_none() => {
                e.entries(root, entries, 0, root_ctx, None)?;
            }
            Kind::Seq(items, _) if !items.is_empty() && root.anchor.is_none() => {
                e.items(root, items, 0, root_ctx)?;
            }
            _ => {
                e.value_after(root, 0, Ctx::Text, None, "")?;
            }
        }
    }
    let footer: Vec<Line> = tree.comments.footer.clone();
    e.lines(&footer, 0, e.out.is_empty());
    let mut out = e.out.trim_end_matches('\n').to_owned();
    if !out.is_empty() {
        out.push('\n');
    }
    Ok(out)
}

fn key_text(k: &Node) -> &str {
    match &k.kind {
        Kind::Scalar(s) => &s.value,
        _ => "",
    }
}

impl Emitter<'_> {
    fn col(&self) -> usize {
        let start = self.out.rfind('\n').map_or(0, |i| i + 1);
        self.out[start..].chars().count()
    }

    fn lines(&mut self, lines: &[Line], indent: usize, first: bool) {
        let mut skip_blank = first || self.out.is_empty();
        for l in lines {
            match l {
                Line::Blank => {
                    if !skip_blank && !self.out.ends_with("\n\n") {
                        self.out.push('\n');
                    }
                }
                Line::Comment(c) => {
                    self.out.push_str(&" ".repeat(indent));
                    self.out.push_str(c);
                    self.out.push('\n');
                }
            }
            skip_blank = false;
        }
    }

    fn trailing(&mut self, t: Option<&Trailing>) {
        if let Some(t) = t {
            let col = self.col();
            let pad = if t.col > col { t.col - col } else { 1 };
            self.out.push_str(&" ".repeat(pad));
            self.out.push_str(&t.text);
        }
    }

    fn leading(&mut self, id: usize, indent: usize, first: bool) {
        if let Some(lines) = self.c.leading.get(&id) {
            let lines = lines.clone();
            self.lines(&lines, indent, first);
        }
    }

    /// The entries of a block map whose keys go at `indent`; with `dash`, the first
    /// entry goes after `- ` at that column.
    fn entries(
        &mut self,
        map: &Node,
        entries: &[(Node, Node)],
        indent: usize,
        ctx: Ctx,
        dash: Option<usize>,
    ) -> Result<(), BadExpr> {
        let keys: Vec<&str> = entries.iter().map(|(k, _)| key_text(k)).collect();
        for (n, &i) in ctx.sorted(&keys).iter().enumerate() {
            let (k, v) = &entries[i];
            match (n, dash) {
                (0, Some(d)) => {
                    self.leading(k.id, d, true);
                    self.out.push_str(&" ".repeat(d));
                    self.out.push_str("- ");
                }
                _ => {
                    self.leading(k.id, indent, n == 0);
                    self.out.push_str(&" ".repeat(indent));
                }
            }
            let key = match &k.kind {
                Kind::Scalar(s) => scalar::text(s, false),
                _ => Repr::Inline(String::new()),
            };
            self.out.push_str(key.inline().unwrap_or(key_text(k)));
            self.out.push(':');
            let child = ctx.child(Some(key_text(k)));
            self.value_after(v, indent, child, self.c.trailing.get(&k.id), " ")?;
        }
        self.tail(map.id, indent);
        Ok(())
    }

    fn tail(&mut self, id: usize, indent: usize) {
        if let Some(lines) = self.c.tail.get(&id) {
            let lines = lines.clone();
            self.lines(&lines, indent, false);
        }
    }

    fn items(
        &mut self,
        seq: &Node,
        items: &[Node],
        indent: usize,
        ctx: Ctx,
    ) -> Result<(), BadExpr> {
        let child = ctx.child(None);
        for (n, item) in items.iter().enumerate() {
            self.leading(item.id, indent, n == 0);
            let trailing = self.c.trailing.get(&item.id);
            match &item.kind {
                Kind::Map(entries, _)
                    if !entries.is_empty()
                        && item.anchor.is_none()
                        && trailing.is_none()
                        && !self.flow_fits(item, child, indent + 2) =>
                {
                    self.entries(item, entries, indent + 2, child, Some(indent))?;
                }
                _ => {
                    self.out.push_str(&" ".repeat(indent));
                    self.out.push('-');
                    self.value_after(item, indent, child, trailing, " ")?;
                }
            }
        }
        self.tail(seq.id, indent);
        Ok(())
    }

    /// Whether a flow-style collection stays on one line from the current column.
    fn flow_fits(&self, node: &Node, ctx: Ctx, col: usize) -> bool {
        let flow = match &node.kind {
            Kind::Map(_, f) | Kind::Seq(_, f) => *f,
            _ => false,
        };
        flow && self
            .flow_text(node, ctx)
            .is_some_and(|t| col + t.chars().count() <= WIDTH)
    }

    /// A collection on one line, if it has no comments, anchors or multi-line scalars.
    fn flow_text(&self, node: &Node, ctx: Ctx) -> Option<String> {
        if node.anchor.is_some() || self.c.has_any(node.id) {
            return None;
        }
        match &node.kind {
            Kind::Scalar(s) => {
                let r = if ctx.is_expr() {
                    scalar::expr(s, true, 0, 0, WIDTH).ok()?
                } else {
                    scalar::text(s, true)
                };
                r.inline().map(str::to_owned)
            }
            Kind::Alias(a) => Some(format!("*{a}")),
            Kind::Seq(items, _) => {
                let child = ctx.child(None);
                let parts = items
                    .iter()
                    .map(|i| {
                        if self.c.has_any(i.id) {
                            None
                        } else {
                            self.flow_text(i, child)
                        }
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(format!("[{}]", parts.join(", ")))
            }
            Kind::Map(entries, _) => {
                let keys: Vec<&str> = entries.iter().map(|(k, _)| key_text(k)).collect();
                let mut parts = Vec::new();
                for i in ctx.sorted(&keys) {
                    let (k, v) = &entries[i];
                    if self.c.has_any(k.id) || self.c.has_any(v.id) {
                        return None;
                    }
                    let key = self.flow_text(k, Ctx::Text)?;
                    let val = self.flow_text(v, ctx.child(Some(key_text(k))))?;
                    parts.push(format!("{key}: {val}"));
                }
                Some(format!("{{{}}}", parts.join(", ")))
            }
        }
    }

    /// Writes a value after its key's `:` (or a dash); `sep` goes before inline values.
    fn value_after(
        &mut self,
        node: &Node,
        indent: usize,
        ctx: Ctx,
        trailing: Option<&Trailing>,
        sep: &str,
    ) -> Result<(), BadExpr> {
        if let Some(a) = &node.anchor {
            self.out.push_str(&format!(" &{a}"));
        }
        match &node.kind {
            Kind::Alias(a) => {
                self.out.push_str(&format!("{sep}*{a}"));
                self.trailing(trailing);
                self.out.push('\n');
            }
            Kind::Scalar(s) => {
                let col = self.col() + sep.len();
                let repr = if ctx.is_expr() {
                    scalar::expr(s, false, col, indent + 2, WIDTH)?
                } else {
                    scalar::text(s, false)
                };
                if !repr.inline().is_some_and(str::is_empty) {
                    self.out.push_str(sep);
                }
                match repr {
                    Repr::Inline(t) => {
                        self.out.push_str(&t);
                        self.trailing(trailing);
                        self.out.push('\n');
                    }
                    Repr::Lines(lines) => {
                        for (i, l) in lines.iter().enumerate() {
                            if i > 0 {
                                self.out.push_str(&" ".repeat(indent + 2));
                            }
                            self.out.push_str(l);
                            if i + 1 == lines.len() {
                                self.trailing(trailing);
                            }
                            self.out.push('\n');
                        }
                    }
                    Repr::Block(header, lines) => {
                        self.out.push_str(&header);
                        self.trailing(trailing);
                        self.out.push('\n');
                        for l in lines {
                            if !l.is_empty() {
                                self.out.push_str(&" ".repeat(indent + 2));
                                self.out.push_str(&l);
                            }
                            self.out.push('\n');
                        }
                    }
                }
            }
            Kind::Map(entries, _) if entries.is_empty() => {
                self.out.push_str(&format!("{sep}{{}}"));
                self.trailing(trailing);
                self.out.push('\n');
            }
            Kind::Seq(items, _) if items.is_empty() => {
                self.out.push_str(&format!("{sep}[]"));
                self.trailing(trailing);
                self.out.push('\n');
            }
            Kind::Map(_, _) | Kind::Seq(_, _)
                if self.flow_fits(node, ctx, self.col() + sep.len()) =>
            {
                let text = self.flow_text(node, ctx).unwrap_or_default();
                self.out.push_str(sep);
                self.out.push_str(&text);
                self.trailing(trailing);
                self.out.push('\n');
            }
            Kind::Map(entries, _) => {
                self.trailing(trailing);
                self.out.push('\n');
                self.entries(node, entries, indent + 2, ctx, None)?;
            }
            Kind::Seq(items, _) => {
                self.trailing(trailing);
                self.out.push('\n');
                self.items(node, items, indent + 2, ctx)?;
            }
        }
        Ok(())
    }
}
