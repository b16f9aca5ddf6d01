//! Compiling rule files: every expression is parsed once, names are resolved to slots,
//! functions to pointers, templates compiled; every problem becomes a diagnostic with its
//! place in the YAML file. The result is a [`Program`] that evaluation walks.

mod checks;
pub(crate) mod fold;
mod lower;
pub(crate) mod node;
mod rules;
pub(crate) mod scope;
mod shapes;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;

use crate::diagnostic::{codes, Diagnostic, Diagnostics, Location};
use crate::ruleset::model::RuleFile;
use crate::ruleset::yaml::{MarkedFile, Seg};
use crate::value::{Str, Value};
use node::{CFlow, CFunc, CRule, Lets, LocId};
use scope::ScopeKind;

/// A rule file read twice: the typed model and the marked tree for locations.
pub(crate) struct RuleSource {
    pub marked: MarkedFile,
    pub model: RuleFile,
    /// What a layer above replaces or disables: skipped as if not written.
    pub hidden: Hidden,
    /// The file's expressions parsed where the file was read (by their text), so the
    /// compiler need not parse them again.
    pub parsed: Parsed,
}

/// Expressions parsed ahead, by their text.
pub(crate) type Parsed =
    HashMap<String, Result<crate::syntax::ast::Expr, crate::syntax::SyntaxError>>;

/// The expressions among `texts` (not templates), each parsed once.
pub(crate) fn parse_ahead(texts: Vec<String>) -> Parsed {
    let mut parsed = Parsed::with_capacity(texts.len());
    for text in texts {
        if !crate::template::is_template(&text) && !parsed.contains_key(&text) {
            let ast = crate::syntax::parse(&text);
            parsed.insert(text, ast);
        }
    }
    parsed
}

/// Definitions of a file that a layer above replaces (same rule id, function or flow name)
/// or disables (`disable:`).
#[derive(Default)]
pub(crate) struct Hidden {
    pub rules: HashSet<String>,
    pub functions: HashSet<String>,
    pub flows: HashSet<String>,
}

/// A declared event.
#[derive(Clone, Debug)]
pub struct EventInfo {
    /// Its description.
    pub doc: Option<String>,
    /// The names it brings into scope, with descriptions.
    pub fields: IndexMap<String, String>,
    /// `path:line:col` of its declaration.
    pub declared_at: String,
}

/// The compiled rule set.
pub(crate) struct Program {
    pub rules: Vec<CRule>,
    pub flows: Vec<CFlow>,
    pub funcs: Vec<CFunc>,
    pub locs: Vec<Location>,
    pub globals: Vec<Str>,
    pub rules_by_event: HashMap<String, Vec<u32>>,
    pub events: IndexMap<String, EventInfo>,
    pub templates: minijinja::Environment<'static>,
    pub empty_lets: Lets,
    /// The settings paths the folded code decided on, with their values in the rule set's
    /// own settings ([`fold`]): an evaluation whose settings agree at each of them runs the
    /// folded code.
    pub assumed: Vec<(Box<[Str]>, Value)>,
    /// The settings the program was folded for (shared, not copied).
    pub folded_for: Value,
    /// The settings of the last evaluation (held, so never another object at the same
    /// address) and whether they were settled ([`fold::settled`]): an evaluation with the
    /// same settings object does not compare them again (`eval::Ctx::new`).
    pub last_settled: std::sync::Mutex<Option<(Value, bool)>>,
}

/// A function or flow, as a node of the call graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Callable {
    Func(u32),
    Flow(u32),
}

pub(crate) struct Compiler<'s> {
    diags: &'s mut Diagnostics,
    settings: &'s Value,
    locs: Vec<Location>,
    globals: Vec<Str>,
    events: IndexMap<String, EventInfo>,
    funcs: Vec<CFunc>,
    func_index: HashMap<String, u32>,
    flows: Vec<CFlow>,
    flow_index: HashMap<String, u32>,
    templates: minijinja::Environment<'static>,
    template_count: u32,
    /// Edges of the call graph: caller, callee, where.
    edges: Vec<(Callable, Callable, Location)>,
    /// Functions and flows that call a built-in that reads the world.
    world_readers: HashSet<Callable>,
    /// What is being compiled now, for the call graph.
    current: Option<Callable>,
    /// The shapes of event documents.
    shapes: shapes::Shapes,
    /// The events of the rule being compiled (empty outside rules).
    rule_events: Vec<String>,
    /// Expressions parsed ahead ([`RuleSource::parsed`]), taken as they are met.
    parsed: Parsed,
}

/// Compiles rule files against the settings. Diagnostics are collected, never thrown:
/// the program is usable only when none of them is an error. With `fold`, work that does
/// not depend on the event is done now rather than at every evaluation ([`fold`]).
pub(crate) fn compile(
    sources: &[RuleSource],
    settings: &Value,
    settings_file: Option<&MarkedFile>,
    diags: &mut Diagnostics,
    fold: bool,
    parsed: Parsed,
) -> Program {
    let mut c = Compiler::new(diags, settings);
    c.parsed = parsed;
    c.declare_events(sources);
    c.declare_shapes(sources);
    c.declare_functions(sources);
    c.declare_flows(sources);
    c.compile_functions(sources);
    c.compile_flows(sources);
    let rules = c.compile_rules(sources);
    c.check_cycles();
    c.mark_pure_functions();
    let checks = c.compile_settings_checks(sources, settings_file);
    let mut program = c.finish(rules);
    checks::run_settings_checks(&program, settings, &checks, diags);
    if fold && !diags.has_errors() {
        fold::fold_program(&mut program, settings);
    }
    program
}

/// Compiles one expression on its own (it sees `settings` only), for examples, tools and
/// tests.
pub(crate) fn compile_expression(
    text: &str,
    settings: &Value,
    diags: &mut Diagnostics,
) -> (Program, node::CExpr, u32) {
    let file = Arc::new(crate::diagnostic::SourceFile {
        name: "<expression>".to_owned(),
        text: text.to_owned(),
    });
    let origin = crate::ruleset::yaml::Origin::whole(file);
    let mut c = Compiler::new(diags, settings);
    let globals = c.globals_for(ScopeKind::Flow, &[]);
    let mut scope = scope::Scope::new(ScopeKind::Flow, globals);
    let expr = c.expr_at(text, &origin, &mut scope);
    (c.finish(Vec::new()), expr, scope.frame_size)
}

impl<'s> Compiler<'s> {
    fn new(diags: &'s mut Diagnostics, settings: &'s Value) -> Compiler<'s> {
        Compiler {
            diags,
            settings,
            locs: Vec::new(),
            globals: vec![
                crate::value::Str::from("settings"),
                crate::value::Str::from("event"),
            ],
            events: IndexMap::new(),
            funcs: Vec::new(),
            func_index: HashMap::new(),
            flows: Vec::new(),
            flow_index: HashMap::new(),
            templates: crate::template::environment(),
            template_count: 0,
            edges: Vec::new(),
            world_readers: HashSet::new(),
            current: None,
            shapes: shapes::Shapes::default(),
            rule_events: Vec::new(),
            parsed: Parsed::new(),
        }
    }

    /// The program of what was compiled, with `rules`.
    fn finish(mut self, rules: Vec<CRule>) -> Program {
        let mut rules_by_event: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            for ev in &r.on {
                rules_by_event
                    .entry(ev.clone())
                    .or_default()
                    .push(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        crate::template::register_functions(&mut self.templates);
        Program {
            rules,
            flows: self.flows,
            funcs: self.funcs,
            locs: self.locs,
            globals: self.globals,
            rules_by_event,
            events: self.events,
            templates: self.templates,
            empty_lets: Lets::default(),
            assumed: Vec::new(),
            folded_for: Value::Null,
            last_settled: std::sync::Mutex::new(None),
        }
    }
}

impl Compiler<'_> {
    fn push_loc(&mut self, loc: Location) -> LocId {
        self.locs.push(loc);
        u32::try_from(self.locs.len() - 1).unwrap_or(u32::MAX)
    }

    fn error(
        &mut self,
        code: &'static str,
        message: impl Into<String>,
        at: Location,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::error(code, message).at(Some(at)));
        let last = self.diags.items.len() - 1;
        &mut self.diags.items[last]
    }

    /// The globals a scope of this kind sees, given the events of a rule.
    fn globals_for(&self, kind: ScopeKind, events: &[String]) -> Vec<(String, u32)> {
        let index = |name: &str| {
            self.globals
                .iter()
                .position(|g| &**g == name)
                .and_then(|i| u32::try_from(i).ok())
        };
        let mut out = Vec::new();
        if let Some(i) = index("settings") {
            out.push(("settings".to_owned(), i));
        }
        if kind == ScopeKind::Rule {
            if let Some(i) = index("event") {
                out.push(("event".to_owned(), i));
            }
            for ev in events {
                if let Some(info) = self.events.get(ev) {
                    for field in info.fields.keys() {
                        if let Some(i) = index(field) {
                            if !out.iter().any(|(n, _)| n == field) {
                                out.push((field.clone(), i));
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn declare_events(&mut self, sources: &[RuleSource]) {
        for src in sources {
            for (name, decl) in &src.model.events {
                let path = [Seg::from("events"), Seg::Key(name.clone())];
                let at = src.marked.locate_key(&path);
                if let Some(prev) = self.events.get(name) {
                    let prev = prev.declared_at.clone();
                    self.error(
                        codes::DUPLICATE_NAME,
                        format!("event `{name}` is declared twice"),
                        at,
                    )
                    .notes
                    .push(format!("first declared at {prev}"));
                    continue;
                }
                for field in decl.fields.keys() {
                    if matches!(field.as_str(), "settings" | "event") {
                        let fat = src.marked.locate_key(&[
                            Seg::from("events"),
                            Seg::Key(name.clone()),
                            Seg::from("fields"),
                            Seg::Key(field.clone()),
                        ]);
                        self.error(
                            codes::DUPLICATE_NAME,
                            format!("`{field}` is reserved and cannot be an event field"),
                            fat,
                        );
                        continue;
                    }
                    if !self.globals.iter().any(|g| **g == *field) {
                        self.globals.push(crate::value::Str::from(field.as_str()));
                    }
                }
                self.events.insert(
                    name.clone(),
                    EventInfo {
                        doc: decl.doc.clone(),
                        fields: decl.fields.clone(),
                        declared_at: at.position(),
                    },
                );
            }
        }
    }

    fn declare_functions(&mut self, sources: &[RuleSource]) {
        for src in sources {
            for key in src.model.functions.keys() {
                let path = [Seg::from("functions"), Seg::Key(key.clone())];
                let at = src.marked.locate_key(&path);
                let Some((name, params)) = parse_signature(key) else {
                    self.error(
                        codes::SHAPE,
                        format!("`{key}` is not a function signature like `name(a, b)`"),
                        at,
                    );
                    continue;
                };
                if src.hidden.functions.contains(&name) {
                    continue;
                }
                if crate::funcs::lookup(&name).is_some() {
                    self.error(
                        codes::DUPLICATE_NAME,
                        format!("`{name}` is a built-in function and cannot be redefined"),
                        at,
                    );
                    continue;
                }
                if self.func_index.contains_key(&name) {
                    self.error(
                        codes::DUPLICATE_NAME,
                        format!("function `{name}` is defined twice"),
                        at,
                    );
                    continue;
                }
                let i = u32::try_from(self.funcs.len()).unwrap_or(u32::MAX);
                self.func_index.insert(name.clone(), i);
                self.funcs.push(CFunc {
                    name: crate::value::Str::from(name.as_str()),
                    params: params
                        .iter()
                        .map(|p| crate::value::Str::from(p.as_str()))
                        .collect(),
                    frame_size: 0,
                    body: None,
                    pure: true,
                });
            }
        }
    }

    fn declare_flows(&mut self, sources: &[RuleSource]) {
        for src in sources {
            for (name, def) in &src.model.flows {
                let at = src
                    .marked
                    .locate_key(&[Seg::from("flows"), Seg::Key(name.clone())]);
                if src.hidden.flows.contains(name) {
                    continue;
                }
                if self.flow_index.contains_key(name) {
                    self.error(
                        codes::DUPLICATE_NAME,
                        format!("flow `{name}` is defined twice"),
                        at,
                    );
                    continue;
                }
                let i = u32::try_from(self.flows.len()).unwrap_or(u32::MAX);
                self.flow_index.insert(name.clone(), i);
                self.flows.push(CFlow {
                    name: crate::value::Str::from(name.as_str()),
                    params: def
                        .params
                        .iter()
                        .map(|p| crate::value::Str::from(p.as_str()))
                        .collect(),
                    frame_size: 0,
                    lets: Lets::default(),
                    when: Vec::new(),
                    effects: Vec::new(),
                    returns: None,
                });
            }
        }
    }
}

/// Parses `name(a, b)` (or a bare `name`).
pub(crate) fn parse_signature(key: &str) -> Option<(String, Vec<String>)> {
    let key = key.trim();
    let (name, rest) = match key.find('(') {
        Some(i) => (&key[..i], Some(&key[i + 1..])),
        None => (key, None),
    };
    let name = name.trim();
    if !is_ident(name) {
        return None;
    }
    let params = match rest {
        None => Vec::new(),
        Some(rest) => {
            let inner = rest.strip_suffix(')')?;
            if inner.trim().is_empty() {
                Vec::new()
            } else {
                let params: Vec<String> = inner.split(',').map(|p| p.trim().to_owned()).collect();
                if !params.iter().all(|p| is_ident(p)) {
                    return None;
                }
                params
            }
        }
    };
    Some((name.to_owned(), params))
}

pub(crate) fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(
            s,
            "and" | "or" | "not" | "in" | "if" | "then" | "else" | "null" | "true" | "false"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        assert_eq!(
            parse_signature("meta(kind, id)"),
            Some(("meta".into(), vec!["kind".into(), "id".into()]))
        );
        assert_eq!(parse_signature("today"), Some(("today".into(), vec![])));
        assert_eq!(parse_signature("f()"), Some(("f".into(), vec![])));
        assert_eq!(parse_signature("f(a b)"), None);
        assert_eq!(parse_signature("1f(a)"), None);
    }
}
