//! Where a node sits in a rule file, and what follows from it: the order of keys, and
//! which scalars are expressions. Only fixed-shape maps (a rule, an effect, a flow, …) are
//! reordered; maps whose order means something (`let`, `body`, `link`, `with`,
//! `functions`) keep it.

/// A place in the shape of a rule file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctx {
    /// The top of the file.
    File,
    /// `events:`.
    Events,
    /// One declared event.
    Event,
    /// `functions:`.
    Functions,
    /// `flows:`.
    Flows,
    /// One flow.
    Flow,
    /// `rules:`.
    Rules,
    /// One rule.
    Rule,
    /// `let:` (names in order).
    Lets,
    /// `when:`.
    When,
    /// One condition.
    Cond,
    /// `journal:` of a condition: a code or a map.
    JournalRef,
    /// A journal map.
    Journal,
    /// `do:` / `else:`.
    Effects,
    /// One effect.
    Effect,
    /// `link:`.
    Link,
    /// `with:`.
    With,
    /// `body:`.
    Body,
    /// `task:`.
    Task,
    /// `checks:`.
    Checks,
    /// One check.
    Check,
    /// An expression.
    Expr,
    /// Text that is not an expression (ids, docs, names, codes).
    Text,
}

/// Effect verbs, in the order `fmt` puts the verb first.
pub const VERBS: &[&str] = &[
    "create", "update", "delete", "link", "journal", "task", "skip", "use", "let", "for",
];

impl Ctx {
    /// The context of a map value under `key`, or of a sequence item (`key` is `None`).
    pub fn child(self, key: Option<&str>) -> Ctx {
        use Ctx::*;
        match (self, key) {
            (File, Some("events")) => Events,
            (File, Some("functions")) => Functions,
            (File, Some("flows")) => Flows,
            (File, Some("rules")) => Rules,
            (File, Some("checks")) => Checks,
            (Events, Some(_)) => Event,
            (Functions, _) | (Lets, _) | (With, _) => Expr,
            (Flows, Some(_)) => Flow,
            (Rules, None) => Rule,
            (Checks, None) => Check,
            (When, None) => Cond,
            (Effects, None) => Effect,
            (Flow | Rule, Some("let")) => Lets,
            (Flow | Rule, Some("when")) => When,
            (Flow | Rule, Some("do")) => Effects,
            (Flow, Some("return")) | (Rule, Some("subject")) => Expr,
            (Cond, Some("check" | "skip")) => Expr,
            (Cond, Some("journal")) => JournalRef,
            (JournalRef | Journal, Some("text" | "subject")) => Expr,
            (Effect, Some("if" | "skip" | "in" | "id" | "key")) => Expr,
            (Effect, Some("link")) => Link,
            (Effect, Some("journal")) => Journal,
            (Effect, Some("task")) => Task,
            (Effect, Some("with")) => With,
            (Effect, Some("let")) => Lets,
            (Effect, Some("do" | "else")) => Effects,
            (Effect, Some("body")) | (Body, _) => Body,
            (Link, Some("kind")) => Text,
            (Link, Some(_)) => Expr,
            (Task, Some("user" | "text")) => Expr,
            (Check, Some("check" | "message")) => Expr,
            _ => Text,
        }
    }

    /// Whether a string scalar here is an expression (templates excepted).
    pub fn is_expr(self) -> bool {
        matches!(self, Ctx::Expr | Ctx::Cond | Ctx::Body)
    }

    /// Whether the keys of a map here are put in a fixed order.
    pub fn reorders(self) -> bool {
        !self.order(&[]).is_empty()
    }

    /// The order of known keys of a map here, given the keys it has.
    pub fn order(self, keys: &[&str]) -> Vec<&'static str> {
        use Ctx::*;
        let fixed: &[&str] = match self {
            File => &["events", "functions", "flows", "rules", "checks"],
            Event => &["doc", "fields"],
            Flow => &["doc", "params", "let", "when", "do", "return"],
            Rule => &["id", "doc", "on", "subject", "let", "when", "do"],
            Cond => &["check", "doc", "journal", "skip"],
            JournalRef | Journal => &["code", "level", "text", "subject"],
            Task => &["user", "kind", "text"],
            Check => &["id", "doc", "check", "level", "message", "at"],
            Effect => {
                let verb = VERBS.iter().find(|v| keys.contains(v));
                let mut out: Vec<&'static str> = Vec::new();
                match verb {
                    Some(v) => {
                        out.push(v);
                        out.extend([
                            "doc", "if", "in", "with", "id", "as", "key", "body", "optional", "do",
                            "else",
                        ]);
                    }
                    None => out.extend(["if", "doc", "do", "else"]),
                }
                return out;
            }
            _ => &[],
        };
        fixed.to_vec()
    }

    /// Sorts keys: known ones in their order, then the rest as they were.
    pub fn sorted(self, keys: &[&str]) -> Vec<usize> {
        let order = self.order(keys);
        let mut idx: Vec<usize> = (0..keys.len()).collect();
        if order.is_empty() {
            return idx;
        }
        idx.sort_by_key(|&i| {
            order
                .iter()
                .position(|k| *k == keys[i])
                .unwrap_or(order.len())
        });
        idx
    }
}
