//! Running rules: conditions, effects, flows, and the plan they build.

use std::sync::Arc;

use indexmap::IndexMap;

use super::{Ctx, Fail, Frame, ENTRY_BYTES, SLOT_BYTES};
use crate::compile::node::{
    CBody, CCond, CEffect, CFlow, CJournal, CRule, EffectKind, LocId, OnFalse, Word,
};
use crate::plan::{Action, Effect, Plan};
use crate::ruleset::model::Level;
use crate::trace::{BranchTrace, ConditionTrace, LetTrace, Outcome, RuleTrace};
use crate::value::{intern, Hasher, Map, PendingRef, Str, Value};

/// A plan under construction, with what it created and linked so far, so later lookups of
/// the same evaluation see them.
pub(crate) struct PlanBuilder {
    event: String,
    effects: Vec<Effect>,
    /// How many effects took each base name (`as`) so far: the names the rules give, a
    /// few, so a list searched by pointer first.
    names: Vec<(Str, u32)>,
    links: Vec<Linked>,
    created: Vec<Created>,
    /// Counts the changes to `links` and `created` (what lookups of the same evaluation
    /// see of the plan): a value computed from the world stays valid while it is unchanged.
    version: u64,
}

/// A link made earlier in the plan: its kind, and the object `linked()` answers for it
/// (`kind` and one id per system; no system is named `kind`), built once when the link is
/// made.
struct Linked {
    kind: Str,
    object: Value,
}

/// An entity created earlier in the plan.
pub(crate) struct Created {
    pub system: Str,
    pub entity: Str,
    pub name: Option<Str>,
    pub body: Value,
}

#[derive(Clone, Copy)]
struct Mark {
    effects: usize,
    links: usize,
    created: usize,
}

impl PlanBuilder {
    pub fn new(event: &str) -> PlanBuilder {
        PlanBuilder {
            event: event.to_owned(),
            effects: Vec::new(),
            names: Vec::new(),
            links: Vec::new(),
            created: Vec::new(),
            version: 0,
        }
    }

    /// Changes whenever what lookups see of the plan (its creations and links) changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How many effects the plan has so far.
    pub fn len(&self) -> usize {
        self.effects.len()
    }

    pub fn finish(self) -> Plan {
        Plan {
            event: self.event,
            effects: self.effects,
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            effects: self.effects.len(),
            links: self.links.len(),
            created: self.created.len(),
        }
    }

    fn rollback(&mut self, m: Mark) {
        self.version += 1;
        for e in self.effects.drain(m.effects..) {
            let name = match &e.action {
                Action::Create { name, .. } | Action::Update { name, .. } => name.clone(),
                _ => None,
            };
            if let Some(name) = name {
                let base = name.split('#').next().unwrap_or(&name).to_owned();
                if let Some((_, n)) = self.names.iter_mut().find(|(b, _)| **b == *base) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        self.links.truncate(m.links);
        self.created.truncate(m.created);
    }

    /// A plan-unique name: `base`, then `base#2`, `base#3` …
    fn unique_name(&mut self, base: &Str) -> Str {
        let i = match self.names.iter().position(|(b, _)| intern::same(b, base)) {
            Some(i) => i,
            None => {
                self.names.push((base.clone(), 0));
                self.names.len() - 1
            }
        };
        let Some((_, n)) = self.names.get_mut(i) else {
            return base.clone();
        };
        *n += 1;
        if *n == 1 {
            base.clone()
        } else {
            crate::value::Str::from(format!("{base}#{n}"))
        }
    }

    /// The latest link of the plan with `id` on the side of `system`.
    pub fn linked(&self, kind: &str, system: &str, id: &Value) -> Option<Value> {
        if system == "kind" {
            // Not a system: the object's `kind` is the link's.
            return None;
        }
        self.links.iter().rev().find_map(|l| {
            if &*l.kind != kind {
                return None;
            }
            let found = l.object.get_ref(system)?;
            same_id(found, id).then(|| l.object.clone())
        })
    }

    /// Records a link of the plan (its ids in order, a system named twice keeping its first
    /// place and its last id), for [`PlanBuilder::linked`].
    fn add_link(&mut self, kind: &Str, ids: Vec<(Str, Value)>) {
        let mut names = Vec::with_capacity(ids.len() + 1);
        let mut values = Vec::with_capacity(ids.len() + 1);
        static KIND: std::sync::OnceLock<Str> = std::sync::OnceLock::new();
        names.push(KIND.get_or_init(|| intern::key("kind")).clone());
        values.push(Value::Str(kind.clone()));
        for (s, v) in ids {
            names.push(s);
            values.push(v);
        }
        self.version += 1;
        self.links.push(Linked {
            kind: kind.clone(),
            object: Value::object(Map::from_entries(names, values)),
        });
    }

    /// Entities created earlier in the plan whose body matches every field of `filter`;
    /// each is returned as a pending result that knows its body.
    pub fn created_matching(&self, system: &str, entity: &str, filter: &Map) -> Vec<Value> {
        self.created
            .iter()
            .filter(|c| &*c.system == system && &*c.entity == entity)
            .filter(|c| {
                filter
                    .iter()
                    .all(|(k, want)| c.body.get_ref(k).is_some_and(|v| v.equals(want)))
            })
            .map(|c| match &c.name {
                Some(name) => Value::Ref(Arc::new(PendingRef {
                    name: name.clone(),
                    path: Vec::new(),
                    known: Some(c.body.clone()),
                })),
                None => c.body.clone(),
            })
            .collect()
    }

    fn push(&mut self, rule: &Str, flow: &Option<Str>, action: Action) {
        if self.effects.capacity() == 0 {
            // A plan that has one effect mostly has several: grown once, not from 4 on.
            self.effects.reserve(16);
        }
        self.effects.push(Effect {
            rule: rule.clone(),
            flow: flow.clone(),
            action,
        });
    }
}

/// Adds an effect to the plan, its size (as written out) taken from the memory budget: a
/// body may share its parts, so a small value in memory could otherwise make an enormous
/// plan. The effect limit was checked before the effect was built.
fn push_effect(cx: &mut Ctx<'_>, loc: LocId, action: Action) -> Result<(), Fail> {
    push_weighed(cx, loc, action, None)
}

/// [`push_effect`] of a create or update whose body's weight is known (uncapped, from
/// [`Ctx::check_depth_weighing`]): within the budget it is what the walk would find.
fn push_weighed(
    cx: &mut Ctx<'_>,
    loc: LocId,
    action: Action,
    body_weight: Option<u64>,
) -> Result<(), Fail> {
    let cap = cx.bytes_left;
    let body_within = |body: &Value| match body_weight {
        Some(w) if w <= cap => w,
        _ => body.weight_within(cap),
    };
    let weight = match &action {
        Action::Create { body, key, .. } => {
            body_within(body) + key.as_ref().map_or(0, |k| k.len() as u64)
        }
        Action::Update { id, body, .. } => id.weight_within(cap) + body_within(body),
        Action::Delete { id, .. } => id.weight_within(cap),
        Action::Link { ids, .. } => ids
            .iter()
            .map(|(k, v)| k.len() as u64 + v.weight_within(cap))
            .sum(),
        Action::Journal { text, subject, .. } => text.len() as u64 + subject.weight_within(cap),
        Action::Task { user, text, .. } => user.weight_within(cap) + text.len() as u64,
        Action::Skip { reason } => reason.len() as u64,
    };
    cx.charge(weight, loc)?;
    let (rule, flow) = (cx.rule.clone(), cx.flow.clone());
    cx.plan.push(&rule, &flow, action);
    Ok(())
}

fn same_id(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(_), Value::Int(_)) | (Value::Int(_), Value::Str(_)) => {
            a.to_text() == b.to_text()
        }
        _ => a.equals(b),
    }
}

/// Why running effects stopped early.
pub(crate) enum Stop {
    Error(Fail),
    Abort(Abort),
}

impl From<Fail> for Stop {
    fn from(e: Fail) -> Stop {
        Stop::Error(e)
    }
}

/// A false condition in a flow: the calling rule is abandoned.
pub(crate) struct Abort {
    flow: Str,
    condition: usize,
    loc: LocId,
    record: Option<Record>,
}

/// What a false condition records.
enum Record {
    Journal {
        code: Str,
        level: Level,
        text: String,
        subject: Option<Value>,
    },
    Skip(String),
}

impl Record {
    fn code(&self) -> Option<String> {
        match self {
            Record::Journal { code, .. } => Some(code.to_string()),
            Record::Skip(_) => None,
        }
    }
}

/// The text of a word: fixed, or its template rendered.
fn word<'a>(cx: &mut Ctx<'a>, frame: &mut Frame<'a>, w: &'a Word) -> Result<Str, Fail> {
    match w {
        Word::Fixed(s) => Ok(s.clone()),
        Word::Template(e) => {
            let v = cx.eval(e, frame)?;
            Ok(crate::value::Str::from(cx.text(&v, e.loc)?.trim()))
        }
    }
}

/// Runs one rule against the event.
pub(crate) fn run_rule<'a>(cx: &mut Ctx<'a>, rule: &'a CRule) -> Result<(), Fail> {
    cx.rule = rule.id.clone();
    cx.flow = None;
    cx.current = Some(rule);
    cx.subject = None;
    if let Some(trace) = cx.trace.as_deref_mut() {
        trace.rules.push(RuleTrace {
            rule: rule.id.to_string(),
            outcome: Outcome::Fired,
            conditions: Vec::new(),
            lets: Vec::new(),
            effects: 0,
            branches: Vec::new(),
        });
    }
    let mut frame = Frame::new(rule.frame_size, &rule.lets);
    let mark = cx.plan.mark();
    let outcome = match check_conditions(cx, &mut frame, &rule.when, None) {
        Err(e) => Err(e),
        Ok(Some((i, record))) => {
            let journal = record.as_ref().and_then(Record::code);
            if let Some(record) = record {
                let loc = rule.when.get(i).map_or(0, |c| c.expr.loc);
                emit_record(cx, rule, &mut frame, record, loc)?;
            }
            Ok(Outcome::Stopped {
                condition: i,
                journal,
            })
        }
        Ok(None) => match run_effects(cx, &mut frame, &rule.effects) {
            Ok(()) => Ok(Outcome::Fired),
            Err(Stop::Error(e)) => Err(e),
            Err(Stop::Abort(abort)) => {
                cx.plan.rollback(mark);
                let journal = abort.record.as_ref().and_then(Record::code);
                cx.flow = Some(abort.flow.clone());
                if let Some(record) = abort.record {
                    emit_record(cx, rule, &mut frame, record, abort.loc)?;
                }
                cx.flow = None;
                Ok(Outcome::Aborted {
                    flow: abort.flow.to_string(),
                    condition: abort.condition,
                    journal,
                })
            }
        },
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            if cx.trace.is_some() {
                let message = cx.failure_message(&e);
                if let Some(last) = cx.trace.as_deref_mut().and_then(|t| t.rules.last_mut()) {
                    last.outcome = Outcome::Error { message };
                }
            }
            return Err(e);
        }
    };
    if cx.trace.is_some() {
        finish_trace(cx, rule, &mut frame, outcome, mark.effects);
    }
    Ok(())
}

/// Records the outcome, and evaluates the lets that were never needed, for `explain`.
fn finish_trace<'a>(
    cx: &mut Ctx<'a>,
    rule: &'a CRule,
    frame: &mut Frame<'a>,
    outcome: Outcome,
    before: usize,
) {
    let effects = cx.plan.effects.len().saturating_sub(before);
    for l in &rule.lets.items {
        let known = frame
            .slots
            .get(l.slot as usize)
            .is_some_and(Option::is_some);
        if known {
            continue;
        }
        let result = cx.eval(&l.expr, frame).map_err(|f| cx.take_failure(f));
        if let Some(trace) = cx.trace.as_deref_mut() {
            if let Some(last) = trace.rules.last_mut() {
                match result {
                    Ok(v) => last.lets.push(LetTrace {
                        flow: None,
                        name: l.name.to_string(),
                        value: Some(v),
                        error: None,
                    }),
                    Err(e) => last.lets.push(LetTrace {
                        flow: None,
                        name: l.name.to_string(),
                        value: None,
                        error: Some(e.message),
                    }),
                }
            }
        }
    }
    if let Some(trace) = cx.trace.as_deref_mut() {
        if let Some(last) = trace.rules.last_mut() {
            last.outcome = outcome;
            last.effects = effects;
            let order: Vec<&str> = rule.lets.items.iter().map(|l| &*l.name).collect();
            last.lets.sort_by_key(|l| {
                order
                    .iter()
                    .position(|n| *n == l.name)
                    .unwrap_or(usize::MAX)
            });
        }
    }
}

fn emit_record<'a>(
    cx: &mut Ctx<'a>,
    rule: &'a CRule,
    frame: &mut Frame<'a>,
    record: Record,
    loc: LocId,
) -> Result<(), Fail> {
    cx.check_effects(loc)?;
    let action = match record {
        Record::Journal {
            code,
            level,
            text,
            subject,
        } => {
            let subject = match subject {
                Some(s) => s,
                None => match &rule.subject {
                    Some(e) => cx.eval(e, frame)?,
                    None => Value::Null,
                },
            };
            Action::Journal {
                code,
                level,
                text,
                subject,
            }
        }
        Record::Skip(reason) => Action::Skip { reason },
    };
    push_effect(cx, loc, action)
}

/// Evaluates conditions in order; the first false one is returned with what it records.
fn check_conditions<'a>(
    cx: &mut Ctx<'a>,
    frame: &mut Frame<'a>,
    when: &'a [CCond],
    flow: Option<&Str>,
) -> Result<Option<(usize, Option<Record>)>, Fail> {
    for (i, c) in when.iter().enumerate() {
        // A trace records the condition's value; without one only whether it holds counts.
        let (holds, value) = if cx.trace.is_some() {
            let v = cx.eval(&c.expr, frame)?;
            (v.truthy(), v)
        } else {
            (cx.test(&c.expr, frame)?, Value::Null)
        };
        if let Some(trace) = cx.trace.as_deref_mut() {
            let location = cx
                .prog
                .locs
                .get(c.expr.loc as usize)
                .map(|l| l.position())
                .unwrap_or_default();
            if let Some(last) = trace.rules.last_mut() {
                last.conditions.push(ConditionTrace {
                    flow: flow.map(|f| f.to_string()),
                    index: i,
                    text: c.text.clone(),
                    location,
                    value,
                    holds,
                    journal: None,
                    reason: None,
                });
            }
        }
        if holds {
            continue;
        }
        let record = match &c.on_false {
            OnFalse::Nothing => None,
            OnFalse::Skip(reason) => {
                let v = cx.eval(reason, frame)?;
                Some(Record::Skip(cx.text(&v, reason.loc)?))
            }
            OnFalse::Journal(j) => Some(journal_record(cx, frame, j)?),
        };
        if let (Some(trace), Some(record)) = (cx.trace.as_deref_mut(), &record) {
            if let Some(cond) = trace.rules.last_mut().and_then(|r| r.conditions.last_mut()) {
                match record {
                    Record::Journal { code, text, .. } => {
                        cond.journal = Some(code.to_string());
                        cond.reason = (!text.is_empty()).then(|| text.clone());
                    }
                    Record::Skip(reason) => cond.reason = Some(reason.clone()),
                }
            }
        }
        return Ok(Some((i, record)));
    }
    Ok(None)
}

fn journal_record<'a>(
    cx: &mut Ctx<'a>,
    frame: &mut Frame<'a>,
    j: &'a CJournal,
) -> Result<Record, Fail> {
    let text = match &j.text {
        Some(t) => {
            let v = cx.eval(t, frame)?;
            cx.text(&v, t.loc)?
        }
        None => String::new(),
    };
    let subject = match &j.subject {
        Some(s) => Some(cx.eval(s, frame)?),
        None => None,
    };
    Ok(Record::Journal {
        code: word(cx, frame, &j.code)?,
        level: j.level,
        text,
        subject,
    })
}

fn eval_body<'a>(
    cx: &mut Ctx<'a>,
    frame: &mut Frame<'a>,
    body: &'a CBody,
    body_loc: LocId,
) -> Result<Value, Fail> {
    match body {
        CBody::Expr(e) => cx.eval(e, frame),
        CBody::Map(entries, Some(shape)) => {
            // Distinct keys: the values in order, the keys from the shape (shared when no
            // value is null, which leaves its key out).
            cx.charge(entries.len() as u64 * ENTRY_BYTES, body_loc)?;
            let mut values = Vec::with_capacity(entries.len());
            let mut nulls = false;
            for (_, v) in entries {
                let value = eval_body(cx, frame, v, body_loc)?;
                nulls |= value.is_null();
                values.push(value);
            }
            if !nulls {
                return Ok(Value::object(Map::with_keys_of(shape, values)));
            }
            let mut names = Vec::with_capacity(values.len());
            let mut kept = Vec::with_capacity(values.len());
            for ((k, _), v) in entries.iter().zip(values) {
                if !v.is_null() {
                    names.push(k.clone());
                    kept.push(v);
                }
            }
            Ok(Value::object(Map::from_distinct(names, kept)))
        }
        CBody::Map(entries, None) => {
            cx.charge(entries.len() as u64 * ENTRY_BYTES, body_loc)?;
            let mut map = Map::with_capacity_and_hasher(entries.len(), Hasher::default());
            for (k, v) in entries {
                let value = eval_body(cx, frame, v, body_loc)?;
                if !value.is_null() {
                    map.insert(k.clone(), value);
                }
            }
            Ok(Value::object(map))
        }
        CBody::Seq(items) => {
            cx.charge(items.len() as u64 * SLOT_BYTES, body_loc)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(eval_body(cx, frame, item, body_loc)?);
            }
            Ok(Value::array(out))
        }
    }
}

/// Runs effects in order.
fn run_effects<'a>(
    cx: &mut Ctx<'a>,
    frame: &mut Frame<'a>,
    effects: &'a [CEffect],
) -> Result<(), Stop> {
    for eff in effects {
        if let Some(c) = &eff.cond {
            let holds = cx.test(c, frame)?;
            if cx.trace.is_some() {
                trace_branch(cx, c, &eff.cond_text, holds);
            }
            if !holds {
                if let EffectKind::Group { otherwise, .. } = &eff.kind {
                    run_effects(cx, frame, otherwise)?;
                }
                continue;
            }
        }
        cx.tick(1, eff.loc)?;
        if eff.kind.plans_an_effect() {
            cx.check_effects(eff.loc)?;
        }
        run_effect(cx, frame, eff)?;
    }
    Ok(())
}

/// Records an effect guard's outcome in the trace of the rule being evaluated.
fn trace_branch(cx: &mut Ctx<'_>, cond: &crate::compile::node::CExpr, text: &str, holds: bool) {
    let location = cx
        .prog
        .locs
        .get(cond.loc as usize)
        .map(|l| l.position())
        .unwrap_or_default();
    let flow = cx.flow.as_ref().map(|f| f.to_string());
    if let Some(last) = cx.trace.as_deref_mut().and_then(|t| t.rules.last_mut()) {
        last.branches.push(BranchTrace {
            flow,
            text: text.to_owned(),
            location,
            holds,
        });
    }
}

fn run_effect<'a>(cx: &mut Ctx<'a>, frame: &mut Frame<'a>, eff: &'a CEffect) -> Result<(), Stop> {
    let flow = cx.flow.clone();
    let loc = eff.loc;
    match &eff.kind {
        EffectKind::Create {
            system,
            entity,
            body,
            key,
            name,
            optional,
        } => {
            let body = eval_body(cx, frame, body, loc)?;
            let key = match key {
                Some(k) => match cx.eval(k, frame)? {
                    Value::Null => None,
                    v => Some(cx.text(&v, k.loc)?),
                },
                None => None,
            };
            let plan_name = name.as_ref().map(|(n, _)| cx.plan.unique_name(n));
            let mut weight = None;
            if let (Some((_, slot)), Some(pn)) = (name, &plan_name) {
                weight = cx.check_depth_weighing(&body, loc)?;
                frame.set(
                    *slot,
                    Value::Ref(Arc::new(PendingRef {
                        name: pn.clone(),
                        path: Vec::new(),
                        known: Some(body.clone()),
                    })),
                );
            }
            cx.plan.version += 1;
            cx.plan.created.push(Created {
                system: system.clone(),
                entity: entity.clone(),
                name: plan_name.clone(),
                body: body.clone(),
            });
            push_weighed(
                cx,
                loc,
                Action::Create {
                    system: system.clone(),
                    entity: entity.clone(),
                    name: plan_name,
                    key,
                    body,
                    optional: *optional,
                },
                weight,
            )?;
        }
        EffectKind::Update {
            system,
            entity,
            id,
            body,
            name,
            optional,
        } => {
            let id = cx.eval(id, frame)?;
            let body = eval_body(cx, frame, body, loc)?;
            let plan_name = name.as_ref().map(|(n, _)| cx.plan.unique_name(n));
            let mut weight = None;
            if let (Some((_, slot)), Some(pn)) = (name, &plan_name) {
                weight = cx.check_depth_weighing(&body, loc)?;
                frame.set(
                    *slot,
                    Value::Ref(Arc::new(PendingRef {
                        name: pn.clone(),
                        path: Vec::new(),
                        known: Some(body.clone()),
                    })),
                );
            }
            push_weighed(
                cx,
                loc,
                Action::Update {
                    system: system.clone(),
                    entity: entity.clone(),
                    id,
                    name: plan_name,
                    body,
                    optional: *optional,
                },
                weight,
            )?;
        }
        EffectKind::Delete {
            system,
            entity,
            id,
            optional,
        } => {
            let id = cx.eval(id, frame)?;
            push_effect(
                cx,
                loc,
                Action::Delete {
                    system: system.clone(),
                    entity: entity.clone(),
                    id,
                    optional: *optional,
                },
            )?;
        }
        EffectKind::Link { kind, ids } => {
            let kind = word(cx, frame, kind)?;
            let mut values = IndexMap::with_capacity_and_hasher(ids.len(), Hasher::default());
            let mut linked = Vec::with_capacity(ids.len());
            for (system, e) in ids {
                let v = cx.eval(e, frame)?;
                linked.push((system.clone(), v.clone()));
                values.insert(system.clone(), v);
            }
            cx.plan.add_link(&kind, linked);
            push_effect(cx, loc, Action::Link { kind, ids: values })?;
        }
        EffectKind::Journal(j) => {
            let Record::Journal {
                code,
                level,
                text,
                subject,
            } = journal_record(cx, frame, j)?
            else {
                return Ok(());
            };
            let subject = match subject {
                Some(s) => s,
                None => rule_subject(cx, frame)?,
            };
            push_effect(
                cx,
                loc,
                Action::Journal {
                    code,
                    level,
                    text,
                    subject,
                },
            )?;
        }
        EffectKind::Task { user, kind, text } => {
            let kind = word(cx, frame, kind)?;
            let user = cx.eval(user, frame)?;
            let text = {
                let v = cx.eval(text, frame)?;
                cx.text(&v, text.loc)?
            };
            push_effect(cx, loc, Action::Task { user, kind, text })?;
        }
        EffectKind::Skip(reason) => {
            let reason = {
                let v = cx.eval(reason, frame)?;
                cx.text(&v, reason.loc)?
            };
            push_effect(cx, loc, Action::Skip { reason })?;
        }
        EffectKind::Let(binds) => {
            for (slot, e) in binds {
                let v = cx.eval(e, frame)?;
                cx.check_depth(&v, e.loc)?;
                frame.set(*slot, v);
            }
        }
        EffectKind::For { var, list, body } => {
            let items = cx.eval(list, frame)?;
            let items = match items {
                Value::Null => return Ok(()),
                Value::Array(a) => a,
                other => {
                    return Err(Stop::Error(cx.error(
                        super::EvalErrorKind::Type,
                        list.loc,
                        format!("`for … in` needs a list, got {}", other.type_name()),
                    )))
                }
            };
            for item in items.iter() {
                frame.set(*var, item.clone());
                run_effects(cx, frame, body)?;
            }
        }
        EffectKind::Group { then, .. } => run_effects(cx, frame, then)?,
        EffectKind::Use {
            flow: fi,
            args,
            name,
        } => {
            // Journal entries written inside the flow carry the calling rule's subject.
            rule_subject(cx, frame)?;
            let prog = cx.prog;
            let Some(flow_def) = prog.flows.get(*fi as usize) else {
                return Ok(());
            };
            let mut callee = Frame::new(flow_def.frame_size, &flow_def.lets);
            for (slot, e) in args {
                let v = cx.eval(e, frame)?;
                callee.set(*slot, v);
            }
            let result = run_flow(cx, &mut callee, flow_def);
            cx.flow = flow;
            let value = result?;
            if let Some(slot) = name {
                cx.check_depth(&value, loc)?;
                frame.set(*slot, value);
            }
        }
    }
    Ok(())
}

/// The subject of the rule being run, when the effect is the rule's own (flows have no
/// access to the rule's frame; their journals carry their own subject or none).
fn rule_subject<'a>(cx: &mut Ctx<'a>, frame: &mut Frame<'a>) -> Result<Value, Fail> {
    if let Some(s) = &cx.subject {
        return Ok(s.clone());
    }
    if cx.flow.is_some() {
        return Ok(Value::Null);
    }
    let s = match cx.current.and_then(|r| r.subject.as_ref()) {
        Some(e) => cx.eval(e, frame)?,
        None => Value::Null,
    };
    cx.subject = Some(s.clone());
    Ok(s)
}

fn run_flow<'a>(cx: &mut Ctx<'a>, frame: &mut Frame<'a>, flow: &'a CFlow) -> Result<Value, Stop> {
    cx.flow = Some(flow.name.clone());
    if let Some((i, record)) = check_conditions(cx, frame, &flow.when, Some(&flow.name))? {
        return Err(Stop::Abort(Abort {
            flow: flow.name.clone(),
            condition: i,
            loc: flow.when.get(i).map_or(0, |c| c.expr.loc),
            record,
        }));
    }
    run_effects(cx, frame, &flow.effects)?;
    cx.flow = Some(flow.name.clone());
    match &flow.returns {
        Some(e) => Ok(cx.eval(e, frame)?),
        None => Ok(Value::Null),
    }
}
