//! Typed event paths: the shapes of the documents events bring into scope, and the check
//! that a path a rule reads (`order.shipmentStore`) is one some document of the rule's
//! events can have.
//!
//! A shape is data in rule files. `shapes:` (top level) names shapes; an event declares the
//! shape of each of its fields under `events.<name>.shapes`. A shape is
//! - a map: the keys a document has, each with its shape; a `"*"` key stands for any other
//!   key (maps keyed by id, free-form data);
//! - a one-item list `[S]`: a list whose items have shape `S`;
//! - a word: `any` (free-form: nothing below it is checked), `string`, `number`, `boolean`,
//!   `date`, `null` (a leaf), or the name of a shape declared under `shapes:`.
//!
//! A path is checked only where every event of the rule that brings the name in declares
//! its shape; it is reported (a warning, E215) when no shape of those events has it.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::Value as J;

use super::scope::{suggest, Binding, Scope};
use super::{Compiler, RuleSource};
use crate::diagnostic::{codes, Diagnostic};
use crate::ruleset::yaml::{Origin, Seg};
use crate::syntax::ast::{Expr, ExprKind, ObjKey, Span};

/// Words that are shapes of their own.
const LEAVES: &[&str] = &["any", "string", "number", "boolean", "date", "null"];

/// Every shape of the rule set.
#[derive(Default)]
pub(crate) struct Shapes {
    named: HashMap<String, J>,
    /// Event → field → shape.
    by_event: HashMap<String, IndexMap<String, J>>,
}

enum Step {
    Key(String),
    Index,
}

/// What a path meets in one shape.
enum Walk {
    /// It can be there (or below a point the shape does not describe).
    Fits,
    /// Step `n` is a key the map at that point does not have; its keys.
    NoKey(usize, Vec<String>),
}

impl Shapes {
    fn resolve<'a>(&'a self, mut s: &'a J) -> &'a J {
        for _ in 0..32 {
            match s {
                J::String(w) if !LEAVES.contains(&w.as_str()) => match self.named.get(w) {
                    Some(next) => s = next,
                    None => return s,
                },
                _ => return s,
            }
        }
        s
    }

    fn walk(&self, shape: &J, steps: &[Step]) -> Walk {
        let mut cur = self.resolve(shape);
        for (n, step) in steps.iter().enumerate() {
            let next = match (cur, step) {
                (J::Object(m), Step::Key(k)) => match m.get(k).or_else(|| m.get("*")) {
                    Some(c) => c,
                    None => {
                        let keys = m.keys().filter(|k| *k != "*").cloned().collect();
                        return Walk::NoKey(n, keys);
                    }
                },
                (J::Object(m), Step::Index) => match m.get("*") {
                    Some(c) => c,
                    None => return Walk::Fits,
                },
                (J::Array(items), Step::Index) => match items.first() {
                    Some(c) => c,
                    None => return Walk::Fits,
                },
                _ => return Walk::Fits,
            };
            cur = self.resolve(next);
        }
        Walk::Fits
    }

    /// Every word that is neither a leaf nor a declared shape, with its path below `s`.
    fn unknown_words(&self, s: &J, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, String)>) {
        match s {
            J::String(w) if !LEAVES.contains(&w.as_str()) && !self.named.contains_key(w) => {
                out.push((path.clone(), w.clone()));
            }
            J::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    self.unknown_words(item, path, out);
                    path.pop();
                }
            }
            J::Object(m) => {
                for (k, v) in m {
                    path.push(Seg::Key(k.clone()));
                    self.unknown_words(v, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

/// `order.a["b"][0].c` → (`order`, [a, b, index, c] with spans).
fn chain(e: &Expr) -> Option<(String, Vec<(Step, Span)>)> {
    match &e.kind {
        ExprKind::Name(n) => Some((n.clone(), Vec::new())),
        ExprKind::Field(x, name) => {
            let (root, mut steps) = chain(x)?;
            let len = u32::try_from(name.len()).unwrap_or(0);
            steps.push((
                Step::Key(name.clone()),
                Span {
                    start: e.span.end.saturating_sub(len),
                    end: e.span.end,
                },
            ));
            Some((root, steps))
        }
        ExprKind::Index(x, i) => {
            let (root, mut steps) = chain(x)?;
            match &i.kind {
                ExprKind::Str(k) => steps.push((Step::Key(k.clone()), i.span)),
                _ => steps.push((Step::Index, i.span)),
            }
            Some((root, steps))
        }
        _ => None,
    }
}

impl Compiler<'_> {
    pub(super) fn declare_shapes(&mut self, sources: &[RuleSource]) {
        for src in sources {
            for (name, shape) in &src.model.shapes {
                self.shapes.named.insert(name.clone(), shape.clone());
            }
            for (event, decl) in &src.model.events {
                if !decl.shapes.is_empty() {
                    self.shapes
                        .by_event
                        .insert(event.clone(), decl.shapes.clone());
                }
            }
        }
        for src in sources {
            let mut found: Vec<(Vec<Seg>, String)> = Vec::new();
            for (name, shape) in &src.model.shapes {
                let mut path = vec![Seg::from("shapes"), Seg::Key(name.clone())];
                self.shapes.unknown_words(shape, &mut path, &mut found);
            }
            for (event, decl) in &src.model.events {
                for (field, shape) in &decl.shapes {
                    let mut path = vec![
                        Seg::from("events"),
                        Seg::Key(event.clone()),
                        Seg::from("shapes"),
                        Seg::Key(field.clone()),
                    ];
                    self.shapes.unknown_words(shape, &mut path, &mut found);
                    if !decl.fields.contains_key(field) {
                        let at = src.marked.locate_key(&[
                            Seg::from("events"),
                            Seg::Key(event.clone()),
                            Seg::from("shapes"),
                            Seg::Key(field.clone()),
                        ]);
                        self.error(
                            codes::UNKNOWN_SHAPE,
                            format!("event `{event}` has no field `{field}` to give a shape"),
                            at,
                        );
                    }
                }
            }
            for (path, word) in found {
                let at = src.marked.locate(&path);
                let names: Vec<&str> = self
                    .shapes
                    .named
                    .keys()
                    .map(String::as_str)
                    .chain(LEAVES.iter().copied())
                    .collect();
                let hint = suggest(&word, names);
                let d = self.error(
                    codes::UNKNOWN_SHAPE,
                    format!("`{word}` is neither a shape declared under `shapes:` nor one of any, string, number, boolean, date, null"),
                    at,
                );
                if let Some(h) = hint {
                    d.notes.push(format!("help: did you mean `{h}`?"));
                }
            }
        }
    }

    /// Warns on paths below event fields that no document of the rule's events can have.
    pub(super) fn check_event_paths(&mut self, e: &Expr, o: &Origin, scope: &Scope) {
        if self.rule_events.is_empty() || self.shapes.by_event.is_empty() {
            return;
        }
        let mut bound = Vec::new();
        self.paths_in(e, o, scope, &mut bound, false);
    }

    fn paths_in(
        &mut self,
        e: &Expr,
        o: &Origin,
        scope: &Scope,
        bound: &mut Vec<String>,
        parent_extends: bool,
    ) {
        let c = chain(e);
        if let (false, Some((root, steps))) = (parent_extends, &c) {
            if !steps.is_empty() && !bound.contains(root) {
                self.check_path(root, steps, o, scope);
            }
        }
        let extends = c.is_some();
        match &e.kind {
            ExprKind::Field(x, _) => self.paths_in(x, o, scope, bound, extends),
            ExprKind::Index(x, i) => {
                self.paths_in(x, o, scope, bound, extends);
                self.paths_in(i, o, scope, bound, false);
            }
            ExprKind::Array(items) => {
                for i in items {
                    self.paths_in(i, o, scope, bound, false);
                }
            }
            ExprKind::Object(pairs) => {
                for (k, v) in pairs {
                    if let ObjKey::Computed(k) = k {
                        self.paths_in(k, o, scope, bound, false);
                    }
                    self.paths_in(v, o, scope, bound, false);
                }
            }
            ExprKind::Call(_, _, args) => {
                for a in args {
                    self.paths_in(a, o, scope, bound, false);
                }
            }
            ExprKind::Lambda(params, body) => {
                let n = bound.len();
                bound.extend(params.iter().map(|(p, _)| p.clone()));
                self.paths_in(body, o, scope, bound, false);
                bound.truncate(n);
            }
            ExprKind::Unary(_, b) => self.paths_in(b, o, scope, bound, false),
            ExprKind::Binary(_, a, b) => {
                self.paths_in(a, o, scope, bound, false);
                self.paths_in(b, o, scope, bound, false);
            }
            ExprKind::If(a, b, c) => {
                self.paths_in(a, o, scope, bound, false);
                self.paths_in(b, o, scope, bound, false);
                self.paths_in(c, o, scope, bound, false);
            }
            _ => {}
        }
    }

    fn check_path(&mut self, root: &str, steps: &[(Step, Span)], o: &Origin, scope: &Scope) {
        if !matches!(scope.resolve(root), Some(Binding::Global(_))) {
            return;
        }
        let plain: Vec<Step> = steps
            .iter()
            .map(|(s, _)| match s {
                Step::Key(k) => Step::Key(k.clone()),
                Step::Index => Step::Index,
            })
            .collect();
        let mut first_miss: Option<(String, usize, Vec<String>)> = None;
        let mut any = false;
        for ev in &self.rule_events {
            let Some(info) = self.events.get(ev) else {
                return;
            };
            if !info.fields.contains_key(root) {
                continue;
            }
            let Some(shape) = self.shapes.by_event.get(ev).and_then(|m| m.get(root)) else {
                // An event brings the name in without a shape: nothing to check against.
                return;
            };
            any = true;
            match self.shapes.walk(shape, &plain) {
                Walk::Fits => return,
                Walk::NoKey(n, keys) => {
                    if first_miss.is_none() {
                        first_miss = Some((ev.clone(), n, keys));
                    }
                }
            }
        }
        let (true, Some((ev, n, keys))) = (any, first_miss) else {
            return;
        };
        let Some((Step::Key(key), span)) = steps.get(n) else {
            return;
        };
        let mut shown = root.to_owned();
        for (s, _) in &steps[..n] {
            match s {
                Step::Key(k) => {
                    shown.push('.');
                    shown.push_str(k);
                }
                Step::Index => shown.push_str("[…]"),
            }
        }
        let events = if self.rule_events.len() > 1 {
            "of the rule's events".to_owned()
        } else {
            format!("of `{ev}`")
        };
        let at = o.locate(span.start as usize, span.end as usize);
        let mut d = Diagnostic::warning(
            codes::UNKNOWN_FIELD,
            format!("no document {events} has `{key}` in `{shown}`"),
        )
        .at(Some(at))
        .label("not in the shape of the document");
        match suggest(key, keys.iter().map(String::as_str)) {
            Some(h) => d = d.note(format!("help: did you mean `{shown}.{h}`?")),
            None if !keys.is_empty() && keys.len() <= 24 => {
                d = d.note(format!("`{shown}` has: {}", keys.join(", ")));
            }
            None => {}
        }
        self.diags.push(d.note(
            "note: the shapes are declared under `events.<event>.shapes` and `shapes:` in the rule files; mark free-form data `any`",
        ));
    }
}
