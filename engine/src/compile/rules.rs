//! Compiling functions, flows, rules, conditions, effects and bodies.

use std::collections::HashSet;

use indexmap::IndexMap;

use super::node::{
    CBody, CCond, CEffect, CExpr, CJournal, CLet, CRule, EffectKind, Lets, Node, OnFalse, Word,
};
use super::scope::{suggest, Scope, ScopeKind};
use super::{is_ident, Callable, Compiler, RuleSource};
use crate::diagnostic::{codes, Diagnostic};
use crate::ruleset::model::{Condition, EffectDef, ExprText, JournalDef, JournalRef, Level};
use crate::ruleset::yaml::{MarkedFile, Seg};
use crate::value::Value;

/// Appends steps to a path.
fn at(path: &[Seg], more: impl IntoIterator<Item = Seg>) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.extend(more);
    p
}

impl Compiler<'_> {
    pub(super) fn compile_functions(&mut self, sources: &[RuleSource]) {
        for src in sources {
            for (key, body) in &src.model.functions {
                let Some((name, _)) = super::parse_signature(key) else {
                    continue;
                };
                if src.hidden.functions.contains(&name) {
                    continue;
                }
                let Some(&fi) = self.func_index.get(&name) else {
                    continue;
                };
                let Some(params) = self.funcs.get(fi as usize).map(|f| f.params.clone()) else {
                    continue;
                };
                let globals = self.globals_for(ScopeKind::Flow, &[]);
                let mut scope = Scope::new(ScopeKind::Flow, globals);
                for p in &params {
                    scope.declare(p);
                }
                self.current = Some(Callable::Func(fi));
                let path = [Seg::from("functions"), Seg::Key(key.clone())];
                let compiled = self.expr(body, &src.marked, &path, &mut scope);
                self.current = None;
                if let Some(f) = self.funcs.get_mut(fi as usize) {
                    f.body = Some(compiled);
                    f.frame_size = scope.frame_size;
                }
            }
        }
    }

    pub(super) fn compile_flows(&mut self, sources: &[RuleSource]) {
        for src in sources {
            for (name, def) in &src.model.flows {
                if src.hidden.flows.contains(name) {
                    continue;
                }
                let Some(&fi) = self.flow_index.get(name) else {
                    continue;
                };
                let base = [Seg::from("flows"), Seg::Key(name.clone())];
                let globals = self.globals_for(ScopeKind::Flow, &[]);
                let mut scope = Scope::new(ScopeKind::Flow, globals);
                let mut seen = HashSet::new();
                for (i, p) in def.params.iter().enumerate() {
                    if !is_ident(p) || !seen.insert(p.clone()) {
                        let loc = src
                            .marked
                            .locate(&at(&base, [Seg::from("params"), Seg::Index(i)]));
                        self.error(
                            codes::FLOW_PARAMS,
                            format!("`{p}` is not a valid, unique parameter name"),
                            loc,
                        );
                    }
                    scope.declare(p);
                }
                collect_later_names(&def.effects, &mut scope.later);
                scope.later.extend(def.lets.keys().cloned());
                self.current = Some(Callable::Flow(fi));
                let lets = self.lets(
                    &def.lets,
                    &src.marked,
                    &at(&base, [Seg::from("let")]),
                    &mut scope,
                );
                let when = self.conditions(
                    &def.when,
                    &src.marked,
                    &at(&base, [Seg::from("when")]),
                    &mut scope,
                );
                let effects = self.effects(
                    &def.effects,
                    &src.marked,
                    &at(&base, [Seg::from("do")]),
                    &mut scope,
                );
                let returns = def.returns.as_ref().map(|r| {
                    self.expr(
                        r,
                        &src.marked,
                        &at(&base, [Seg::from("return")]),
                        &mut scope,
                    )
                });
                self.current = None;
                if let Some(flow) = self.flows.get_mut(fi as usize) {
                    flow.lets = lets;
                    flow.when = when;
                    flow.effects = effects;
                    flow.returns = returns;
                    flow.frame_size = scope.frame_size;
                }
            }
        }
    }

    pub(super) fn compile_rules(&mut self, sources: &[RuleSource]) -> Vec<CRule> {
        let mut rules: Vec<CRule> = Vec::new();
        let mut ids: IndexMap<String, String> = IndexMap::new();
        for src in sources {
            for (ri, def) in src.model.rules.iter().enumerate() {
                if src.hidden.rules.contains(&def.id) {
                    continue;
                }
                let base = [Seg::from("rules"), Seg::Index(ri)];
                let id_loc = src.marked.locate(&at(&base, [Seg::from("id")]));
                if let Some(first) = ids.get(&def.id) {
                    let first = first.clone();
                    self.error(
                        codes::DUPLICATE_RULE,
                        format!("rule id `{}` is used twice", def.id),
                        id_loc.clone(),
                    )
                    .notes
                    .push(format!("first used at {first}"));
                } else {
                    ids.insert(def.id.clone(), id_loc.position());
                }
                let on = def.on.to_vec();
                for (k, ev) in on.iter().enumerate() {
                    if !self.events.contains_key(ev) {
                        let path = match &def.on {
                            crate::ruleset::model::OneOrMany::One(_) => {
                                at(&base, [Seg::from("on")])
                            }
                            crate::ruleset::model::OneOrMany::Many(_) => {
                                at(&base, [Seg::from("on"), Seg::Index(k)])
                            }
                        };
                        let loc = src.marked.locate(&path);
                        let hint = suggest(ev, self.events.keys().map(String::as_str));
                        let d = self.error(
                            codes::UNKNOWN_EVENT,
                            format!("rule `{}` listens to `{ev}`, which no rule file declares, so it can never fire", def.id),
                            loc,
                        );
                        d.label = "unknown event".to_owned();
                        match hint {
                            Some(h) => d.notes.push(format!("help: did you mean `{h}`?")),
                            None => d
                                .notes
                                .push("help: declare it under `events:` in a rule file".to_owned()),
                        }
                    }
                }
                if on.is_empty() {
                    let loc = src.marked.locate(&at(&base, [Seg::from("on")]));
                    self.diags.push(
                        Diagnostic::warning(
                            codes::NEVER_FIRES,
                            format!("rule `{}` listens to no event", def.id),
                        )
                        .at(Some(loc)),
                    );
                }
                self.rule_events.clone_from(&on);
                let globals = self.globals_for(ScopeKind::Rule, &on);
                let mut scope = Scope::new(ScopeKind::Rule, globals);
                scope.lenient = on.iter().any(|ev| !self.events.contains_key(ev));
                collect_later_names(&def.effects, &mut scope.later);
                scope.later.extend(def.lets.keys().cloned());
                let lets = self.lets(
                    &def.lets,
                    &src.marked,
                    &at(&base, [Seg::from("let")]),
                    &mut scope,
                );
                let subject = def.subject.as_ref().map(|s| {
                    self.expr(
                        s,
                        &src.marked,
                        &at(&base, [Seg::from("subject")]),
                        &mut scope,
                    )
                });
                let when_path = at(&base, [Seg::from("when")]);
                let when = self.conditions(&def.when, &src.marked, &when_path, &mut scope);
                for (i, c) in when.iter().enumerate() {
                    if let Node::Const(v) = &c.expr.node {
                        if !v.truthy() {
                            let loc = src.marked.locate(&at(&when_path, [Seg::Index(i)]));
                            self.diags.push(
                                Diagnostic::warning(
                                    codes::NEVER_FIRES,
                                    format!(
                                        "rule `{}` can never fire: this condition is always false",
                                        def.id
                                    ),
                                )
                                .at(Some(loc))
                                .label("always false"),
                            );
                        }
                    }
                }
                let effects = self.effects(
                    &def.effects,
                    &src.marked,
                    &at(&base, [Seg::from("do")]),
                    &mut scope,
                );
                self.rule_events.clear();
                let loc = self.push_loc(id_loc);
                rules.push(CRule {
                    id: crate::value::Str::from(def.id.as_str()),
                    doc: def.doc.clone(),
                    on,
                    file: src.marked.source.name.clone(),
                    loc,
                    frame_size: scope.frame_size,
                    lets,
                    subject,
                    when,
                    effects,
                });
            }
        }
        rules
    }

    fn lets(
        &mut self,
        defs: &IndexMap<String, ExprText>,
        file: &MarkedFile,
        path: &[Seg],
        scope: &mut Scope,
    ) -> Lets {
        let mut lets = Lets::default();
        for (name, text) in defs {
            let p = at(path, [Seg::Key(name.clone())]);
            if !is_ident(name) || matches!(name.as_str(), "settings" | "event") {
                let loc = file.locate_key(&p);
                self.error(
                    codes::DUPLICATE_NAME,
                    format!("`{name}` cannot be the name of a value"),
                    loc,
                );
            }
            // A let sees only the lets before it.
            scope.later.insert(name.clone());
            let expr = self.expr(text, file, &p, scope);
            let slot = scope.declare(name);
            let idx = u32::try_from(lets.items.len()).unwrap_or(u32::MAX);
            if lets.by_slot.len() <= slot as usize {
                lets.by_slot.resize(slot as usize + 1, None);
            }
            lets.by_slot[slot as usize] = Some(idx);
            lets.items.push(CLet {
                name: crate::value::Str::from(name.as_str()),
                slot,
                expr,
            });
        }
        lets
    }

    fn conditions(
        &mut self,
        defs: &[Condition],
        file: &MarkedFile,
        path: &[Seg],
        scope: &mut Scope,
    ) -> Vec<CCond> {
        let mut out = Vec::with_capacity(defs.len());
        for (i, c) in defs.iter().enumerate() {
            let p = at(path, [Seg::Index(i)]);
            match c {
                Condition::Plain(text) => out.push(CCond {
                    expr: self.expr(text, file, &p, scope),
                    text: text.0.clone(),
                    on_false: OnFalse::Nothing,
                }),
                Condition::Full(def) => {
                    let expr = self.expr(&def.check, file, &at(&p, [Seg::from("check")]), scope);
                    let on_false = match (&def.journal, &def.skip) {
                        (Some(_), Some(_)) => {
                            let loc = file.locate(&p);
                            self.error(
                                codes::SHAPE,
                                "a condition records either a `journal` or a `skip`, not both",
                                loc,
                            );
                            OnFalse::Nothing
                        }
                        (Some(j), None) => OnFalse::Journal(self.journal_ref(
                            j,
                            file,
                            &at(&p, [Seg::from("journal")]),
                            scope,
                        )),
                        (None, Some(s)) => {
                            OnFalse::Skip(self.expr(s, file, &at(&p, [Seg::from("skip")]), scope))
                        }
                        (None, None) => OnFalse::Nothing,
                    };
                    out.push(CCond {
                        expr,
                        text: def.check.0.clone(),
                        on_false,
                    });
                }
            }
        }
        out
    }

    fn journal_ref(
        &mut self,
        j: &JournalRef,
        file: &MarkedFile,
        path: &[Seg],
        scope: &mut Scope,
    ) -> CJournal {
        match j {
            JournalRef::Code(code) => CJournal {
                code: self.word(code, file, path, scope),
                level: Level::Error,
                text: None,
                subject: None,
            },
            JournalRef::Full(def) => self.journal_def(def, file, path, scope),
        }
    }

    fn journal_def(
        &mut self,
        def: &JournalDef,
        file: &MarkedFile,
        path: &[Seg],
        scope: &mut Scope,
    ) -> CJournal {
        CJournal {
            code: self.word(&def.code, file, &at(path, [Seg::from("code")]), scope),
            level: def.level,
            text: def
                .text
                .as_ref()
                .map(|t| self.expr(t, file, &at(path, [Seg::from("text")]), scope)),
            subject: def
                .subject
                .as_ref()
                .map(|s| self.expr(s, file, &at(path, [Seg::from("subject")]), scope)),
        }
    }

    fn effects(
        &mut self,
        defs: &[EffectDef],
        file: &MarkedFile,
        path: &[Seg],
        scope: &mut Scope,
    ) -> Vec<CEffect> {
        defs.iter()
            .enumerate()
            .filter_map(|(i, d)| self.effect(d, file, &at(path, [Seg::Index(i)]), scope))
            .collect()
    }

    fn effect(
        &mut self,
        d: &EffectDef,
        file: &MarkedFile,
        path: &[Seg],
        scope: &mut Scope,
    ) -> Option<CEffect> {
        let here = file.locate(path);
        let verbs: Vec<&str> = [
            ("create", d.create.is_some()),
            ("update", d.update.is_some()),
            ("delete", d.delete.is_some()),
            ("link", d.link.is_some()),
            ("journal", d.journal.is_some()),
            ("task", d.task.is_some()),
            ("skip", d.skip.is_some()),
            ("use", d.use_flow.is_some()),
            ("let", d.lets.is_some()),
            ("for", d.for_each.is_some()),
        ]
        .into_iter()
        .filter_map(|(v, on)| on.then_some(v))
        .collect();
        let verb = match verbs.as_slice() {
            [] if d.nested.is_some() => "do",
            [] => {
                let e = self.error(codes::EFFECT, "this effect has no verb", here.clone());
                e.notes.push(
                    "an effect is one of: create, update, delete, link, journal, task, skip, use, let, for, or a `do` group"
                        .to_owned(),
                );
                return None;
            }
            [one] => one,
            many => {
                self.error(
                    codes::EFFECT,
                    format!(
                        "one effect can do one thing, this one has {}",
                        many.join(" and ")
                    ),
                    here,
                );
                return None;
            }
        };
        // Fields that only some verbs take.
        let allowed: &[&str] = match verb {
            "create" => &["body", "key", "as", "optional"],
            "update" => &["body", "id", "as", "optional"],
            "delete" => &["id", "optional"],
            "use" => &["with", "as"],
            "for" => &["in", "do"],
            "do" => &["do", "else"],
            _ => &[],
        };
        let present = [
            ("body", d.body.is_some()),
            ("key", d.key.is_some()),
            ("as", d.name.is_some()),
            ("optional", d.optional),
            ("id", d.id.is_some()),
            ("with", d.with.is_some()),
            ("in", d.for_in.is_some()),
            ("do", d.nested.is_some()),
            ("else", d.otherwise.is_some()),
        ];
        for (field, on) in present {
            if on && !allowed.contains(&field) {
                let loc = file.locate_key(&at(path, [Seg::from(field)]));
                self.error(
                    codes::EFFECT,
                    format!("`{field}` has no meaning on a `{verb}` effect"),
                    loc,
                );
            }
        }
        if d.otherwise.is_some() && d.cond.is_none() {
            let loc = file.locate_key(&at(path, [Seg::from("else")]));
            self.error(codes::EFFECT, "`else` needs an `if`", loc);
        }
        let cond = d
            .cond
            .as_ref()
            .map(|c| self.expr(c, file, &at(path, [Seg::from("if")]), scope));
        let loc = self.push_loc(here.clone());
        let kind = match verb {
            "create" | "update" | "delete" => {
                let target = d
                    .create
                    .as_ref()
                    .or(d.update.as_ref())
                    .or(d.delete.as_ref())?;
                let (system, entity) = match target.split_once('.') {
                    Some((s, e)) if !s.is_empty() && !e.is_empty() => {
                        (crate::value::Str::from(s), crate::value::Str::from(e))
                    }
                    _ => {
                        let tloc = file.locate(&at(path, [Seg::from(verb)]));
                        self.error(
                            codes::EFFECT,
                            format!("`{verb}: {target}` must name `system.entity`"),
                            tloc,
                        );
                        return None;
                    }
                };
                let id = match (verb, &d.id) {
                    ("create", _) => None,
                    (_, Some(id)) => Some(self.expr(id, file, &at(path, [Seg::from("id")]), scope)),
                    (_, None) => {
                        self.error(
                            codes::EFFECT,
                            format!("`{verb}` needs an `id`"),
                            here.clone(),
                        );
                        None
                    }
                };
                let body = match (&d.body, verb) {
                    (Some(b), _) => self.body(b, file, &at(path, [Seg::from("body")]), scope),
                    (None, "delete") => CBody::map(Vec::new()),
                    (None, _) => {
                        self.error(
                            codes::EFFECT,
                            format!("`{verb}` needs a `body`"),
                            here.clone(),
                        );
                        CBody::map(Vec::new())
                    }
                };
                let key = d
                    .key
                    .as_ref()
                    .map(|k| self.expr(k, file, &at(path, [Seg::from("key")]), scope));
                let name = d.name.as_ref().map(|n| {
                    self.check_result_name(n, file, path);
                    (
                        crate::value::Str::from(n.as_str()),
                        scope.declare_or_reuse(n),
                    )
                });
                let id = id.unwrap_or(CExpr::new(Node::Const(Value::Null), loc));
                match verb {
                    "create" => EffectKind::Create {
                        system,
                        entity,
                        body,
                        key,
                        name,
                        optional: d.optional,
                    },
                    "update" => EffectKind::Update {
                        system,
                        entity,
                        id,
                        body,
                        name,
                        optional: d.optional,
                    },
                    _ => EffectKind::Delete {
                        system,
                        entity,
                        id,
                        optional: d.optional,
                    },
                }
            }
            "link" => {
                let map = d.link.as_ref()?;
                let Some(kind) = map.get("kind") else {
                    self.error(codes::EFFECT, "a `link` needs a `kind`", here);
                    return None;
                };
                let mut ids = Vec::new();
                for (system, text) in map {
                    if system == "kind" {
                        continue;
                    }
                    let e = self.expr(
                        text,
                        file,
                        &at(path, [Seg::from("link"), Seg::Key(system.clone())]),
                        scope,
                    );
                    ids.push((crate::value::Str::from(system.as_str()), e));
                }
                if ids.len() < 2 {
                    self.error(
                        codes::EFFECT,
                        "a `link` needs an id for each of two systems",
                        here,
                    );
                }
                EffectKind::Link {
                    kind: self.word(
                        &kind.0,
                        file,
                        &at(path, [Seg::from("link"), Seg::from("kind")]),
                        scope,
                    ),
                    ids,
                }
            }
            "journal" => {
                let def = d.journal.as_ref()?;
                EffectKind::Journal(self.journal_def(
                    def,
                    file,
                    &at(path, [Seg::from("journal")]),
                    scope,
                ))
            }
            "task" => {
                let t = d.task.as_ref()?;
                let p = at(path, [Seg::from("task")]);
                EffectKind::Task {
                    user: self.expr(&t.user, file, &at(&p, [Seg::from("user")]), scope),
                    kind: self.word(&t.kind, file, &at(&p, [Seg::from("kind")]), scope),
                    text: self.expr(&t.text, file, &at(&p, [Seg::from("text")]), scope),
                }
            }
            "skip" => {
                let s = d.skip.as_ref()?;
                EffectKind::Skip(self.expr(s, file, &at(path, [Seg::from("skip")]), scope))
            }
            "let" => {
                let defs = d.lets.as_ref()?;
                let mut binds = Vec::new();
                for (name, text) in defs {
                    let p = at(path, [Seg::from("let"), Seg::Key(name.clone())]);
                    let e = self.expr(text, file, &p, scope);
                    self.check_result_name(name, file, path);
                    binds.push((scope.declare_or_reuse(name), e));
                }
                EffectKind::Let(binds)
            }
            "for" => {
                let var = d.for_each.as_ref()?;
                let Some(list) = &d.for_in else {
                    self.error(codes::EFFECT, "`for` needs `in`: the list to go over", here);
                    return None;
                };
                let list = self.expr(list, file, &at(path, [Seg::from("in")]), scope);
                self.check_result_name(var, file, path);
                let slot = scope.declare(var);
                let body = self.effects(
                    d.nested.as_deref().unwrap_or(&[]),
                    file,
                    &at(path, [Seg::from("do")]),
                    scope,
                );
                scope.undeclare(var);
                EffectKind::For {
                    var: slot,
                    list,
                    body,
                }
            }
            "use" => {
                let name = d.use_flow.as_ref()?;
                let Some(&fi) = self.flow_index.get(name) else {
                    let floc = file.locate(&at(path, [Seg::from("use")]));
                    let hint = suggest(name, self.flow_index.keys().map(String::as_str));
                    let e = self.error(codes::UNKNOWN_FLOW, format!("unknown flow `{name}`"), floc);
                    if let Some(h) = hint {
                        e.notes.push(format!("help: did you mean `{h}`?"));
                    }
                    return None;
                };
                let params = self
                    .flows
                    .get(fi as usize)
                    .map(|f| f.params.clone())
                    .unwrap_or_default();
                let mut args = Vec::new();
                if let Some(with) = &d.with {
                    for (param, text) in with {
                        let p = at(path, [Seg::from("with"), Seg::Key(param.clone())]);
                        let e = self.expr(text, file, &p, scope);
                        match params.iter().position(|x| **x == **param) {
                            Some(slot) => args.push((u32::try_from(slot).unwrap_or(u32::MAX), e)),
                            None => {
                                let ploc = file.locate_key(&p);
                                let e = self.error(
                                    codes::FLOW_PARAMS,
                                    format!("flow `{name}` has no parameter `{param}`"),
                                    ploc,
                                );
                                e.notes.push(format!(
                                    "its parameters: {}",
                                    params
                                        .iter()
                                        .map(|p| p.to_string())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ));
                            }
                        }
                    }
                }
                if let Some(cur) = self.current {
                    self.edges.push((cur, Callable::Flow(fi), here.clone()));
                }
                let name_slot = d.name.as_ref().map(|n| {
                    self.check_result_name(n, file, path);
                    scope.declare_or_reuse(n)
                });
                EffectKind::Use {
                    flow: fi,
                    args,
                    name: name_slot,
                }
            }
            _ => {
                let then = self.effects(
                    d.nested.as_deref().unwrap_or(&[]),
                    file,
                    &at(path, [Seg::from("do")]),
                    scope,
                );
                let otherwise = self.effects(
                    d.otherwise.as_deref().unwrap_or(&[]),
                    file,
                    &at(path, [Seg::from("else")]),
                    scope,
                );
                EffectKind::Group { then, otherwise }
            }
        };
        let cond_text = d.cond.as_ref().map(|c| c.0.clone()).unwrap_or_default();
        Some(CEffect {
            cond,
            cond_text,
            loc,
            kind,
        })
    }

    /// A plain word, or a template (`"{{ problem.code }}"`) that gives one.
    fn word(&mut self, text: &str, file: &MarkedFile, path: &[Seg], scope: &mut Scope) -> Word {
        if crate::template::is_template(text) {
            Word::Template(self.expr(&ExprText(text.to_owned()), file, path, scope))
        } else {
            Word::Fixed(crate::value::Str::from(text))
        }
    }

    fn check_result_name(&mut self, name: &str, file: &MarkedFile, path: &[Seg]) {
        if !is_ident(name) || matches!(name, "settings" | "event") {
            let loc = file.locate(&at(path, [Seg::from("as")]));
            self.error(
                codes::DUPLICATE_NAME,
                format!("`{name}` cannot be the name of a result"),
                loc,
            );
        }
    }

    fn body(
        &mut self,
        v: &serde_yaml::Value,
        file: &MarkedFile,
        path: &[Seg],
        scope: &mut Scope,
    ) -> CBody {
        let constant = |v: Value| CBody::Expr(CExpr::new(Node::Const(v), 0));
        match v {
            serde_yaml::Value::Null => constant(Value::Null),
            serde_yaml::Value::Bool(b) => constant(Value::bool(*b)),
            serde_yaml::Value::Number(n) => constant(
                n.as_i64()
                    .map(Value::Int)
                    .or_else(|| n.as_f64().map(crate::value::number_from_f64))
                    .unwrap_or_default(),
            ),
            serde_yaml::Value::String(s) => {
                CBody::Expr(self.expr(&ExprText(s.clone()), file, path, scope))
            }
            serde_yaml::Value::Sequence(items) => CBody::Seq(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| self.body(item, file, &at(path, [Seg::Index(i)]), scope))
                    .collect(),
            ),
            serde_yaml::Value::Mapping(map) => {
                let mut entries = Vec::with_capacity(map.len());
                for (k, v) in map {
                    let key = match k {
                        serde_yaml::Value::String(s) => s.clone(),
                        serde_yaml::Value::Number(n) => n.to_string(),
                        serde_yaml::Value::Bool(b) => b.to_string(),
                        _ => {
                            let loc = file.locate(path);
                            self.error(codes::SHAPE, "body keys must be plain text", loc);
                            continue;
                        }
                    };
                    let b = self.body(v, file, &at(path, [Seg::Key(key.clone())]), scope);
                    entries.push((crate::value::intern::key(&key), b));
                }
                CBody::map(entries)
            }
            serde_yaml::Value::Tagged(_) => {
                let loc = file.locate(path);
                self.error(codes::SHAPE, "YAML tags are not supported in bodies", loc);
                constant(Value::Null)
            }
        }
    }
}

/// Names that effects will define (`as`, `let`), for "used before defined".
fn collect_later_names(effects: &[EffectDef], out: &mut HashSet<String>) {
    for e in effects {
        if let Some(n) = &e.name {
            out.insert(n.clone());
        }
        if let Some(lets) = &e.lets {
            out.extend(lets.keys().cloned());
        }
        if let Some(nested) = &e.nested {
            collect_later_names(nested, out);
        }
        if let Some(other) = &e.otherwise {
            collect_later_names(other, out);
        }
    }
}
