//! Differences between two plans, effect by effect.
//!
//! Effects are aligned by their identity — (rule, op, target, `as`/key) — with a longest
//! common subsequence, so an effect inserted early does not make every later one look
//! changed. Effects that share an identity but differ are shown field by field; among the
//! effects left unmatched between two aligned ones, those with the same (rule, op, target)
//! are paired as changes too (a renamed `as`, say).

use serde::Serialize;
use serde_json::Value as J;
use similar::{capture_diff_slices, Algorithm, DiffOp};
use skladsync_engine::{Action, Effect};

use super::paint::Paint;

/// The identity of an effect, for alignment.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EffectId {
    /// The rule that planned it.
    pub rule: String,
    /// `create`, `link`, …
    pub op: &'static str,
    /// `system.entity` of a create/update/delete, the kind of a link or task, the code of a
    /// journal entry; empty for a skip.
    pub target: String,
    /// The `as` name, else the idempotency key, else empty.
    pub name: String,
}

impl EffectId {
    /// The identity of an effect.
    pub fn of(e: &Effect) -> EffectId {
        let (target, name) = match &e.action {
            Action::Create {
                system,
                entity,
                name,
                key,
                ..
            } => (
                format!("{system}.{entity}"),
                name.as_ref()
                    .map(|n| format!("as {n}"))
                    .or_else(|| key.as_ref().map(|k| format!("key {k}")))
                    .unwrap_or_default(),
            ),
            Action::Update {
                system,
                entity,
                name,
                ..
            } => (
                format!("{system}.{entity}"),
                name.as_ref().map(|n| format!("as {n}")).unwrap_or_default(),
            ),
            Action::Delete { system, entity, .. } => (format!("{system}.{entity}"), String::new()),
            Action::Link { kind, .. } => (kind.to_string(), String::new()),
            Action::Journal { code, .. } => (code.to_string(), String::new()),
            Action::Task { kind, .. } => (kind.to_string(), String::new()),
            Action::Skip { .. } => (String::new(), String::new()),
        };
        EffectId {
            rule: e.rule.to_string(),
            op: e.action.op(),
            target,
            name,
        }
    }

    /// A one-line headline: `order.upload: create moysklad.customerorder as ms_order`.
    pub fn headline(&self, flow: Option<&str>) -> String {
        let mut s = self.rule.clone();
        if let Some(f) = flow {
            s.push_str(&format!(" (flow {f})"));
        }
        s.push_str(": ");
        s.push_str(self.op);
        if !self.target.is_empty() {
            s.push(' ');
            s.push_str(&self.target);
        }
        if !self.name.is_empty() {
            s.push_str(&format!(" {}", self.name));
        }
        s
    }
}

/// One field that differs between two versions of an effect.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// `body.positions[0].price`.
    pub path: String,
    /// The value before (absent when the field is new).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<J>,
    /// The value after (absent when the field is gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<J>,
}

/// One difference between two plans.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// An effect only the new plan has.
    Added {
        /// The effect.
        effect: J,
    },
    /// An effect only the old plan has.
    Removed {
        /// The effect.
        effect: J,
    },
    /// An effect both plans have, with different fields.
    Changed {
        /// The effect before.
        before: J,
        /// The fields that differ.
        fields: Vec<FieldChange>,
    },
}

impl Change {
    /// The rule(s) concerned.
    pub fn rule(&self) -> String {
        let e = match self {
            Change::Added { effect } | Change::Removed { effect } => effect,
            Change::Changed { before, .. } => before,
        };
        e.get("rule")
            .and_then(J::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

fn to_json(e: &Effect) -> J {
    serde_json::to_value(e).unwrap_or(J::Null)
}

/// The differences between two lists of effects, in plan order.
pub fn diff_effects(before: &[Effect], after: &[Effect]) -> Vec<Change> {
    let old_ids: Vec<EffectId> = before.iter().map(EffectId::of).collect();
    let new_ids: Vec<EffectId> = after.iter().map(EffectId::of).collect();
    let mut out = Vec::new();
    for op in capture_diff_slices(Algorithm::Myers, &old_ids, &new_ids) {
        match op {
            DiffOp::Equal {
                old_index,
                new_index,
                len,
            } => {
                for i in 0..len {
                    push_pair(&mut out, &before[old_index + i], &after[new_index + i]);
                }
            }
            DiffOp::Delete {
                old_index, old_len, ..
            } => gap(&mut out, &before[old_index..old_index + old_len], &[]),
            DiffOp::Insert {
                new_index, new_len, ..
            } => gap(&mut out, &[], &after[new_index..new_index + new_len]),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => gap(
                &mut out,
                &before[old_index..old_index + old_len],
                &after[new_index..new_index + new_len],
            ),
        }
    }
    out
}

fn push_pair(out: &mut Vec<Change>, a: &Effect, b: &Effect) {
    if a == b {
        return;
    }
    let (ja, jb) = (to_json(a), to_json(b));
    let mut fields = Vec::new();
    field_diff("", &ja, &jb, &mut fields);
    if !fields.is_empty() {
        out.push(Change::Changed { before: ja, fields });
    }
}

/// Unmatched effects between two aligned ones: pair those of the same (rule, op, target)
/// in order, the rest are removed or added.
fn gap(out: &mut Vec<Change>, old: &[Effect], new: &[Effect]) {
    let coarse = |e: &Effect| {
        let id = EffectId::of(e);
        (id.rule, id.op, id.target)
    };
    let mut used = vec![false; new.len()];
    let mut pairs: Vec<(usize, Option<usize>)> = Vec::new();
    for (i, o) in old.iter().enumerate() {
        let key = coarse(o);
        let j = (0..new.len()).find(|&j| !used[j] && coarse(&new[j]) == key);
        if let Some(j) = j {
            used[j] = true;
        }
        pairs.push((i, j));
    }
    // Emit in the new plan's order where possible: removed ones first, then the rest.
    for (i, j) in &pairs {
        if j.is_none() {
            out.push(Change::Removed {
                effect: to_json(&old[*i]),
            });
        }
    }
    for (j, n) in new.iter().enumerate() {
        match pairs.iter().find(|(_, pj)| *pj == Some(j)) {
            Some((i, _)) => push_pair(out, &old[*i], n),
            None => out.push(Change::Added { effect: to_json(n) }),
        }
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Every leaf that differs between two JSON values, with its path.
pub fn field_diff(path: &str, a: &J, b: &J, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => field_diff(&join(path, k), va, vb, out),
                    None => out.push(FieldChange {
                        path: join(path, k),
                        before: Some(va.clone()),
                        after: None,
                    }),
                }
            }
            for (k, vb) in y {
                if !x.contains_key(k) {
                    out.push(FieldChange {
                        path: join(path, k),
                        before: None,
                        after: Some(vb.clone()),
                    });
                }
            }
        }
        (J::Array(x), J::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                let p = format!("{path}[{i}]");
                match (x.get(i), y.get(i)) {
                    (Some(va), Some(vb)) => field_diff(&p, va, vb, out),
                    (va, vb) => out.push(FieldChange {
                        path: p,
                        before: va.cloned(),
                        after: vb.cloned(),
                    }),
                }
            }
        }
        _ if a == b => {}
        _ => out.push(FieldChange {
            path: path.to_owned(),
            before: Some(a.clone()),
            after: Some(b.clone()),
        }),
    }
}

/// A value on one line.
pub fn compact(v: &J) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn headline_of(e: &J) -> String {
    let effect: Option<Effect> = serde_json::from_value(e.clone()).ok();
    match effect {
        Some(eff) => EffectId::of(&eff).headline(eff.flow.as_deref()),
        None => compact(e),
    }
}

/// Fields of an effect worth showing under its headline (identity fields left out).
fn detail_fields(e: &J) -> Vec<(String, String)> {
    let skip = [
        "rule", "flow", "op", "system", "entity", "as", "kind", "code",
    ];
    match e {
        J::Object(m) => m
            .iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), compact(v)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Renders changes as text, indented by `indent` spaces.
pub fn render(changes: &[Change], indent: usize, paint: Paint) -> String {
    let pad = " ".repeat(indent);
    let mut s = String::new();
    for c in changes {
        match c {
            Change::Added { effect } => {
                s.push_str(&format!(
                    "{pad}{}\n",
                    paint.green(&format!("+ {}", headline_of(effect)))
                ));
                for (k, v) in detail_fields(effect) {
                    s.push_str(&format!("{pad}    {}\n", paint.green(&format!("{k}: {v}"))));
                }
            }
            Change::Removed { effect } => {
                s.push_str(&format!(
                    "{pad}{}\n",
                    paint.red(&format!("- {}", headline_of(effect)))
                ));
                for (k, v) in detail_fields(effect) {
                    s.push_str(&format!("{pad}    {}\n", paint.red(&format!("{k}: {v}"))));
                }
            }
            Change::Changed { before, fields } => {
                s.push_str(&format!(
                    "{pad}{}\n",
                    paint.yellow(&format!("~ {}", headline_of(before)))
                ));
                for f in fields {
                    let line = match (&f.before, &f.after) {
                        (Some(a), Some(b)) => format!(
                            "{}: {} → {}",
                            f.path,
                            paint.red(&compact(a)),
                            paint.green(&compact(b))
                        ),
                        (Some(a), None) => paint.red(&format!("{}: {} (gone)", f.path, compact(a))),
                        (None, Some(b)) => {
                            paint.green(&format!("{}: {} (new)", f.path, compact(b)))
                        }
                        (None, None) => f.path.clone(),
                    };
                    s.push_str(&format!("{pad}    {line}\n"));
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eff(rule: &str, code: &str, text: &str) -> Effect {
        serde_json::from_value(serde_json::json!({
            "rule": rule, "op": "journal", "code": code, "level": "info", "text": text
        }))
        .unwrap()
    }

    #[test]
    fn an_inserted_effect_changes_nothing_else() {
        let a = vec![eff("r", "A", "a"), eff("r", "B", "b"), eff("r", "C", "c")];
        let b = vec![
            eff("r", "A", "a"),
            eff("r", "X", "x"),
            eff("r", "B", "b"),
            eff("r", "C", "c"),
        ];
        let d = diff_effects(&a, &b);
        assert_eq!(d.len(), 1);
        assert!(matches!(&d[0], Change::Added { effect } if effect["code"] == "X"));
    }

    #[test]
    fn same_identity_is_diffed_field_by_field() {
        let a = vec![eff("r", "A", "a"), eff("r", "B", "b")];
        let b = vec![eff("r", "A", "a"), eff("r", "B", "b2")];
        let d = diff_effects(&a, &b);
        assert_eq!(d.len(), 1);
        let Change::Changed { fields, .. } = &d[0] else {
            panic!()
        };
        assert_eq!(fields[0].path, "text");
    }

    #[test]
    fn nested_paths() {
        let mut out = Vec::new();
        field_diff(
            "",
            &serde_json::json!({"body": {"p": [1, 2], "x": 1}}),
            &serde_json::json!({"body": {"p": [1, 3], "y": 1}}),
            &mut out,
        );
        let paths: Vec<_> = out.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["body.p[1]", "body.x", "body.y"]);
    }
}
