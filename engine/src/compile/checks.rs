//! Whole-program checks: cycles between flows and functions, purity of functions, and the
//! settings checks that rule files declare.

use std::collections::{HashMap, HashSet};

use super::node::CExpr;
use super::scope::{Scope, ScopeKind};
use super::{Callable, Compiler, Program, RuleSource};
use crate::diagnostic::{codes, Diagnostic, Diagnostics, Location, Severity};
use crate::ruleset::model::Level;
use crate::ruleset::yaml::{MarkedFile, Seg};

/// A settings check, compiled, waiting for the program to exist.
pub(crate) struct PendingCheck {
    id: String,
    check: CExpr,
    message: CExpr,
    level: Level,
    frame_size: u32,
    /// Where to point: the settings key, or the check itself.
    at: Location,
    declared_at: String,
}

impl Compiler<'_> {
    pub(super) fn check_cycles(&mut self) {
        let mut graph: HashMap<Callable, Vec<(Callable, Location)>> = HashMap::new();
        for (from, to, loc) in &self.edges {
            graph.entry(*from).or_default().push((*to, loc.clone()));
        }
        let mut state: HashMap<Callable, u8> = HashMap::new(); // 1 = on stack, 2 = done
        let mut starts: Vec<Callable> = graph.keys().copied().collect();
        starts.sort_by_key(|c| match c {
            Callable::Func(i) => (0, *i),
            Callable::Flow(i) => (1, *i),
        });
        let mut reported = HashSet::new();
        for start in starts {
            let mut stack: Vec<Callable> = Vec::new();
            self.dfs(start, &graph, &mut state, &mut stack, &mut reported);
        }
    }

    fn dfs(
        &mut self,
        node: Callable,
        graph: &HashMap<Callable, Vec<(Callable, Location)>>,
        state: &mut HashMap<Callable, u8>,
        stack: &mut Vec<Callable>,
        reported: &mut HashSet<Callable>,
    ) {
        match state.get(&node) {
            Some(2) => return,
            Some(1) => return,
            _ => {}
        }
        state.insert(node, 1);
        stack.push(node);
        for (next, loc) in graph.get(&node).map(Vec::as_slice).unwrap_or(&[]) {
            if state.get(next) == Some(&1) {
                if reported.insert(*next) {
                    let from = stack.iter().position(|c| c == next).unwrap_or(0);
                    let mut names: Vec<String> = stack[from..]
                        .iter()
                        .map(|c| self.callable_name(*c))
                        .collect();
                    names.push(self.callable_name(*next));
                    self.error(
                        codes::CYCLE,
                        format!(
                            "{} call each other in a cycle: {}",
                            kind_word(*next),
                            names.join(" → ")
                        ),
                        loc.clone(),
                    )
                    .label = "this call closes the cycle".to_owned();
                }
                continue;
            }
            self.dfs(*next, graph, state, stack, reported);
        }
        stack.pop();
        state.insert(node, 2);
    }

    fn callable_name(&self, c: Callable) -> String {
        match c {
            Callable::Func(i) => self
                .funcs
                .get(i as usize)
                .map_or_else(String::new, |f| format!("{}()", f.name)),
            Callable::Flow(i) => self
                .flows
                .get(i as usize)
                .map_or_else(String::new, |f| f.name.to_string()),
        }
    }

    /// A function is pure when neither it nor anything it calls reads the world.
    pub(super) fn mark_pure_functions(&mut self) {
        let mut impure: HashSet<Callable> = self.world_readers.clone();
        loop {
            let before = impure.len();
            for (from, to, _) in &self.edges {
                if impure.contains(to) {
                    impure.insert(*from);
                }
            }
            if impure.len() == before {
                break;
            }
        }
        for (i, f) in self.funcs.iter_mut().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            f.pure = !impure.contains(&Callable::Func(i));
        }
    }

    pub(super) fn compile_settings_checks(
        &mut self,
        sources: &[RuleSource],
        settings_file: Option<&MarkedFile>,
    ) -> Vec<PendingCheck> {
        let mut out = Vec::new();
        for src in sources {
            for (i, def) in src.model.checks.iter().enumerate() {
                let base = [Seg::from("checks"), Seg::Index(i)];
                let globals = self.globals_for(ScopeKind::Settings, &[]);
                let mut scope = Scope::new(ScopeKind::Settings, globals);
                let check = self.expr(&def.check, &src.marked, &with(&base, "check"), &mut scope);
                let message = self.expr(
                    &def.message,
                    &src.marked,
                    &with(&base, "message"),
                    &mut scope,
                );
                let declared = src.marked.locate(&with(&base, "id"));
                let target = def.at.as_deref().and_then(|p| {
                    let file = settings_file?;
                    let keys: Vec<Seg> = p
                        .strip_prefix("settings.")
                        .unwrap_or(p)
                        .split('.')
                        .map(Seg::from)
                        .collect();
                    file.root.find(&keys)?;
                    Some(file.locate_key(&keys))
                });
                out.push(PendingCheck {
                    id: def.id.clone(),
                    check,
                    message,
                    level: def.level,
                    frame_size: scope.frame_size,
                    at: target.unwrap_or_else(|| declared.clone()),
                    declared_at: declared.position(),
                });
            }
        }
        out
    }
}

/// Evaluates the settings checks against the settings.
pub(crate) fn run_settings_checks(
    prog: &Program,
    settings: &crate::value::Value,
    checks: &[PendingCheck],
    diags: &mut Diagnostics,
) {
    for c in checks {
        match crate::eval::eval_standalone(prog, settings, &c.check, c.frame_size) {
            Ok(v) if v.truthy() => {}
            Ok(_) => {
                let message =
                    crate::eval::eval_standalone(prog, settings, &c.message, c.frame_size)
                        .map(|m| m.to_text())
                        .unwrap_or_else(|e| e.message);
                let severity = match c.level {
                    Level::Error => Severity::Error,
                    Level::Warning => Severity::Warning,
                    Level::Info => Severity::Note,
                };
                let mut d =
                    Diagnostic::error(codes::SETTINGS_CHECK, format!("{}: {message}", c.id))
                        .at(Some(c.at.clone()))
                        .label("this setting")
                        .note(format!("checked by `{}` ({})", c.id, c.declared_at));
                d.severity = severity;
                diags.push(d);
            }
            Err(e) => diags.push(
                Diagnostic::error(
                    codes::SETTINGS_CHECK_ERROR,
                    format!(
                        "settings check `{}` failed to evaluate: {}",
                        c.id, e.message
                    ),
                )
                .at(prog.locs.get(c.check.loc as usize).cloned()),
            ),
        }
    }
}

fn with(base: &[Seg], key: &str) -> Vec<Seg> {
    let mut p = base.to_vec();
    p.push(Seg::from(key));
    p
}

fn kind_word(c: Callable) -> &'static str {
    match c {
        Callable::Func(_) => "functions",
        Callable::Flow(_) => "flows",
    }
}
