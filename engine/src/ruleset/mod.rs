//! Loading a rule set: every rule file of a directory plus a settings file, read, checked
//! and compiled once.

pub mod expression;
pub mod model;
pub mod settings_shape;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::compile::{self, EventInfo, Program, RuleSource};
use crate::diagnostic::{codes, Diagnostic, Diagnostics, Location, SourceFile};
use crate::eval::{self, EvalError, EvalOptions, Event};
use crate::plan::Plan;
use crate::value::{deep_merge, Value};
use crate::world::World;
use model::RuleFile;
use settings_shape::SettingsShape;
use yaml::MarkedFile;

/// A compiled rule set with its settings. Cheap to evaluate many times, from many threads.
pub struct RuleSet {
    pub(crate) prog: Program,
    settings: Value,
    files: Vec<String>,
    shape: Option<SettingsShape>,
    /// The layer (its directory) of each file, for `explain`.
    layers: std::collections::HashMap<String, String>,
}

/// What a rule looks like from outside: for `explain`, coverage and docs.
#[derive(Clone, Debug)]
pub struct RuleInfo {
    /// The id.
    pub id: String,
    /// Its doc.
    pub doc: Option<String>,
    /// The events it listens to.
    pub on: Vec<String>,
    /// The file it is in.
    pub file: String,
    /// The layer it came from (its directory; the default rule set is the first layer).
    pub layer: String,
    /// `path:line:col` of its id.
    pub location: String,
    /// Its conditions: text and `path:line:col`.
    pub conditions: Vec<(String, String)>,
    /// The flows it uses (directly).
    pub flows: Vec<String>,
    /// Its effects' `if:` guards (not its flows'): text and `path:line:col`.
    pub branches: Vec<(String, String)>,
}

/// A flow from outside.
#[derive(Clone, Debug)]
pub struct FlowInfo {
    /// The name.
    pub name: String,
    /// Its conditions: text and `path:line:col`.
    pub conditions: Vec<(String, String)>,
    /// Its effects' `if:` guards: text and `path:line:col`.
    pub branches: Vec<(String, String)>,
}

impl RuleSet {
    /// Loads every `*.yaml`/`*.yml` under `rules_dir` (except files whose name starts with
    /// `settings`, and hidden entries), with the settings file. When the rules directory has
    /// a `settings.example.yaml`, the settings file must have its shape (see
    /// [`settings_shape`]); it is checked before the rules. On success, returns the rule set
    /// and the warnings; on failure, every diagnostic found.
    pub fn load(
        rules_dir: &Path,
        settings: Option<&Path>,
    ) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        Self::load_layers(rules_dir, &[], settings)
    }

    /// Loads the default rule set of `rules_dir` with integrators' layers over it, in
    /// order (see [`RuleSet::from_layers`]); the settings shape is the default rule set's.
    pub fn load_layers(
        rules_dir: &Path,
        layers: &[PathBuf],
        settings: Option<&Path>,
    ) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        let mut diags = Diagnostics::default();
        let mut all = Vec::new();
        for dir in std::iter::once(rules_dir).chain(layers.iter().map(PathBuf::as_path)) {
            let mut paths = Vec::new();
            if let Err(e) = collect_rule_files(dir, &mut paths) {
                diags.push(Diagnostic::error(
                    codes::IO,
                    format!("cannot read the rules directory {}: {e}", dir.display()),
                ));
                return Err(diags);
            }
            paths.sort();
            let mut texts = Vec::new();
            for p in paths {
                match std::fs::read_to_string(&p) {
                    Ok(t) => texts.push((p.display().to_string(), t)),
                    Err(e) => diags.push(Diagnostic::error(
                        codes::IO,
                        format!("cannot read {}: {e}", p.display()),
                    )),
                }
            }
            all.push(Layer {
                name: dir.display().to_string(),
                files: texts,
            });
        }
        let settings_text = match settings {
            None => None,
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => Some((p.display().to_string(), t)),
                Err(e) => {
                    diags.push(Diagnostic::error(
                        codes::IO,
                        format!("cannot read the settings file {}: {e}", p.display()),
                    ));
                    return Err(diags);
                }
            },
        };
        if diags.has_errors() {
            return Err(diags);
        }
        let shape = match settings_text {
            None => None,
            Some(_) => match Self::shape_of(rules_dir) {
                Ok(shape) => shape,
                Err(d) => {
                    diags.push(d);
                    return Err(diags);
                }
            },
        };
        Self::from_layers(
            &all,
            settings_text
                .as_ref()
                .map(|(n, t)| (n.as_str(), t.as_str())),
            shape.as_ref(),
        )
    }

    /// The shape of the settings of the rules in `rules_dir`: read off its
    /// `settings.example.yaml` (with `settings.schema.yaml` added), or `None` when it has no
    /// example settings file.
    pub fn shape_of(rules_dir: &Path) -> Result<Option<SettingsShape>, Diagnostic> {
        let example = rules_dir.join("settings.example.yaml");
        let text = match std::fs::read_to_string(&example) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Diagnostic::error(
                    codes::IO,
                    format!("cannot read {}: {e}", example.display()),
                ))
            }
        };
        let additions_path = rules_dir.join("settings.schema.yaml");
        let additions = match std::fs::read_to_string(&additions_path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Diagnostic::error(
                    codes::IO,
                    format!("cannot read {}: {e}", additions_path.display()),
                ))
            }
        };
        SettingsShape::from_example(&example.display().to_string(), &text, additions.as_deref())
            .map(Some)
    }

    /// Compiles rule files given as (name, text) pairs, with an optional settings file.
    pub fn from_texts(
        files: &[(String, String)],
        settings: Option<(&str, &str)>,
    ) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        Self::from_texts_shaped(files, settings, None)
    }

    /// Like [`RuleSet::from_texts`], with the shape the settings file must have. A settings
    /// file that does not have it is refused with its own errors only: the rules are not
    /// compiled against settings that did not match.
    pub fn from_texts_shaped(
        files: &[(String, String)],
        settings: Option<(&str, &str)>,
        shape: Option<&SettingsShape>,
    ) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        let layer = [Layer {
            name: String::new(),
            files: files.to_vec(),
        }];
        Self::from_layers(&layer, settings, shape)
    }

    /// Compiles layers of rule files: the default rule set first, then each integrator's
    /// layer over it. A layer adds rules, functions, flows and events; a rule with the id of
    /// one below, or a function or flow with its name, replaces it; `disable: [ids]` turns
    /// rules below off. Within one layer, a name used twice is an error as usual.
    pub fn from_layers(
        layers: &[Layer],
        settings: Option<(&str, &str)>,
        shape: Option<&SettingsShape>,
    ) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        Self::compiled(layers, settings, shape, true)
    }

    /// Rule files compiled without the compile-time folding ([`crate::compile::fold`]): the
    /// code as written, for tests that compare the two.
    #[cfg(test)]
    pub(crate) fn unfolded(
        files: &[(String, String)],
        settings: Option<(&str, &str)>,
    ) -> Result<RuleSet, Diagnostics> {
        let layer = [Layer {
            name: String::new(),
            files: files.to_vec(),
        }];
        Self::compiled(&layer, settings, None, false).map(|(set, _)| set)
    }

    fn compiled(
        layers: &[Layer],
        settings: Option<(&str, &str)>,
        shape: Option<&SettingsShape>,
        fold: bool,
    ) -> Result<(RuleSet, Diagnostics), Diagnostics> {
        let files: Vec<(String, String)> = layers
            .iter()
            .flat_map(|l| l.files.iter().cloned())
            .collect();
        let layer_of: Vec<usize> = layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| std::iter::repeat_n(i, l.files.len()))
            .collect();
        let file_layers: std::collections::HashMap<String, String> = layers
            .iter()
            .flat_map(|l| l.files.iter().map(|(n, _)| (n.clone(), l.name.clone())))
            .collect();
        let files = &files[..];
        let mut diags = Diagnostics::default();
        // The settings, read and checked against their shape while the rule files are
        // read (see `read_rule_files`).
        let read_settings_checked = || -> Result<(Value, Option<MarkedFile>), Vec<Diagnostic>> {
            let (value, marked) = match settings {
                None => (Value::object(Default::default()), None),
                Some((name, text)) => read_settings(name, text).map_err(|d| vec![d])?,
            };
            if let (Some(shape), Some(marked)) = (shape, marked.as_ref()) {
                let found = shape.check(&value, marked);
                if !found.is_empty() {
                    return Err(found);
                }
            }
            Ok((value, marked))
        };
        let settings_len = settings.map_or(0, |(_, text)| text.len());
        let (settings_read, reads) = read_rule_files(files, settings_len, read_settings_checked);
        let (settings_value, settings_marked) = match settings_read {
            Ok(pair) => pair,
            Err(found) => {
                diags.items.extend(found);
                diags.sort();
                return Err(diags);
            }
        };
        let mut sources = Vec::new();
        let mut source_layers = Vec::new();
        for (i, read) in reads.into_iter().enumerate() {
            let (src, found) = read;
            diags.items.extend(found.items);
            if let Some(src) = src {
                sources.push(src);
                source_layers.push(layer_of.get(i).copied().unwrap_or(0));
            }
        }
        // A file that cannot be read is reported first and only: compiling the others
        // without it would blame them for what it defines (flows, functions, events).
        if diags.has_errors() {
            diags.sort();
            return Err(diags);
        }
        hide_what_layers_replace(&mut sources, &source_layers, &mut diags);
        let mut parsed = compile::Parsed::new();
        for src in &mut sources {
            parsed.extend(std::mem::take(&mut src.parsed));
        }
        let prog = compile::compile(
            &sources,
            &settings_value,
            settings_marked.as_ref(),
            &mut diags,
            fold,
            parsed,
        );
        if !diags.has_errors() {
            warn_unused_flows(&prog, &sources, &mut diags);
        }
        diags.sort();
        if diags.has_errors() {
            return Err(diags);
        }
        Ok((
            RuleSet {
                prog,
                settings: settings_value,
                files: files.iter().map(|(n, _)| n.clone()).collect(),
                shape: shape.cloned(),
                layers: file_layers,
            },
            diags,
        ))
    }

    /// Evaluates an event with the rule set's settings.
    pub fn evaluate(&self, event: &Event, world: &dyn World) -> Result<Plan, EvalError> {
        self.evaluate_with(event, world, EvalOptions::default())
    }

    /// Evaluates an event with options (settings overrides, budget, trace).
    pub fn evaluate_with(
        &self,
        event: &Event,
        world: &dyn World,
        opts: EvalOptions<'_>,
    ) -> Result<Plan, EvalError> {
        let settings = opts.settings.unwrap_or(&self.settings);
        eval::evaluate(
            &self.prog,
            settings,
            event,
            world,
            EvalOptions {
                settings: None,
                ..opts
            },
        )
    }

    /// The settings the rule set was loaded with.
    pub fn settings(&self) -> &Value {
        &self.settings
    }

    /// `Ok` when the settings with `overrides` merged in still have the shape the rule set's
    /// settings must have (none: always); else what is wrong, one problem a line.
    pub fn check_overrides(&self, overrides: &Value) -> Result<(), String> {
        let Some(shape) = &self.shape else {
            return Ok(());
        };
        if overrides.is_null() {
            return Ok(());
        }
        let found = shape.check_value(&self.settings_with(overrides));
        if found.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = found
            .iter()
            .map(|d| {
                let help = d
                    .notes
                    .iter()
                    .find(|n| n.starts_with("help: "))
                    .map(|n| format!(" ({})", n.trim_start_matches("help: ")))
                    .unwrap_or_default();
                format!("{}{help}", d.message)
            })
            .collect();
        Err(format!("settings overrides: {}", lines.join("; ")))
    }

    /// The settings with overrides merged in (objects key by key, the rest replaced).
    pub fn settings_with(&self, overrides: &Value) -> Value {
        if overrides.is_null() {
            self.settings.clone()
        } else {
            deep_merge(&self.settings, overrides)
        }
    }

    /// The rule files, in load order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// `Ok` when a rule file declares the event; else what to say, with "did you mean".
    /// (Evaluating an undeclared event gives an empty plan, which hides a misspelt name.)
    pub fn check_event(&self, name: &str) -> Result<(), String> {
        if self.prog.events.contains_key(name) {
            return Ok(());
        }
        let hint =
            crate::compile::scope::suggest(name, self.prog.events.keys().map(String::as_str))
                .map(|h| format!("; did you mean `{h}`?"))
                .unwrap_or_default();
        Err(format!("no rule file declares the event `{name}`{hint}"))
    }

    /// The declared events.
    pub fn events(&self) -> impl Iterator<Item = (&String, &EventInfo)> {
        self.prog.events.iter()
    }

    /// Every rule, in evaluation order.
    pub fn rules(&self) -> Vec<RuleInfo> {
        let loc = |id: u32| {
            self.prog
                .locs
                .get(id as usize)
                .map(Location::position)
                .unwrap_or_default()
        };
        self.prog
            .rules
            .iter()
            .map(|r| RuleInfo {
                id: r.id.to_string(),
                doc: r.doc.clone(),
                on: r.on.clone(),
                file: r.file.clone(),
                layer: self.layers.get(&r.file).cloned().unwrap_or_default(),
                location: loc(r.loc),
                conditions: r
                    .when
                    .iter()
                    .map(|c| (c.text.clone(), loc(c.expr.loc)))
                    .collect(),
                flows: used_flows(&self.prog, &r.effects),
                branches: branches(&self.prog, &r.effects),
            })
            .collect()
    }

    /// Every flow.
    pub fn flows(&self) -> Vec<FlowInfo> {
        self.prog
            .flows
            .iter()
            .map(|f| FlowInfo {
                name: f.name.to_string(),
                conditions: f
                    .when
                    .iter()
                    .map(|c| {
                        let at = self
                            .prog
                            .locs
                            .get(c.expr.loc as usize)
                            .map(Location::position);
                        (c.text.clone(), at.unwrap_or_default())
                    })
                    .collect(),
                branches: branches(&self.prog, &f.effects),
            })
            .collect()
    }
}

/// The `if:` guards of effects (nested groups and loops included, flows not).
fn branches(prog: &Program, effects: &[crate::compile::node::CEffect]) -> Vec<(String, String)> {
    use crate::compile::node::EffectKind;
    let mut out = Vec::new();
    for e in effects {
        if let Some(c) = &e.cond {
            let at = prog
                .locs
                .get(c.loc as usize)
                .map(Location::position)
                .unwrap_or_default();
            out.push((e.cond_text.clone(), at));
        }
        match &e.kind {
            EffectKind::For { body, .. } => out.extend(branches(prog, body)),
            EffectKind::Group { then, otherwise } => {
                out.extend(branches(prog, then));
                out.extend(branches(prog, otherwise));
            }
            _ => {}
        }
    }
    out
}

fn used_flows(prog: &Program, effects: &[crate::compile::node::CEffect]) -> Vec<String> {
    use crate::compile::node::EffectKind;
    let mut out = Vec::new();
    for e in effects {
        match &e.kind {
            EffectKind::Use { flow, .. } => {
                if let Some(f) = prog.flows.get(*flow as usize) {
                    out.push(f.name.to_string());
                }
            }
            EffectKind::For { body, .. } => out.extend(used_flows(prog, body)),
            EffectKind::Group { then, otherwise } => {
                out.extend(used_flows(prog, then));
                out.extend(used_flows(prog, otherwise));
            }
            _ => {}
        }
    }
    out.dedup();
    out
}

/// One layer of rule files: its name (the directory) and its (name, text) files.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    /// The layer's name, e.g. its directory.
    pub name: String,
    /// Its rule files, (name, text).
    pub files: Vec<(String, String)>,
}

/// Marks the definitions that a higher layer replaces or disables.
fn hide_what_layers_replace(sources: &mut [RuleSource], layers: &[usize], diags: &mut Diagnostics) {
    use std::collections::HashMap;
    let layer = |i: usize| layers.get(i).copied().unwrap_or(0);
    let mut top_rule: HashMap<String, usize> = HashMap::new();
    let mut top_func: HashMap<String, usize> = HashMap::new();
    let mut top_flow: HashMap<String, usize> = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        let l = layer(i);
        for r in &s.model.rules {
            let e = top_rule.entry(r.id.clone()).or_insert(l);
            *e = (*e).max(l);
        }
        for k in s.model.functions.keys() {
            if let Some((name, _)) = compile::parse_signature(k) {
                let e = top_func.entry(name).or_insert(l);
                *e = (*e).max(l);
            }
        }
        for k in s.model.flows.keys() {
            let e = top_flow.entry(k.clone()).or_insert(l);
            *e = (*e).max(l);
        }
    }
    let mut disabled: HashMap<String, usize> = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        let l = layer(i);
        for (k, id) in s.model.disable.iter().enumerate() {
            let below = sources
                .iter()
                .enumerate()
                .any(|(j, o)| layer(j) < l && o.model.rules.iter().any(|r| &r.id == id));
            if below {
                let e = disabled.entry(id.clone()).or_insert(l);
                *e = (*e).max(l);
            } else {
                let at = s
                    .marked
                    .locate(&[yaml::Seg::from("disable"), yaml::Seg::Index(k)]);
                diags.push(
                    Diagnostic::error(
                        codes::UNKNOWN_DISABLED,
                        format!("`disable` names `{id}`, which no layer below defines"),
                    )
                    .at(Some(at))
                    .label("no such rule below"),
                );
            }
        }
    }
    for (i, s) in sources.iter_mut().enumerate() {
        let l = layer(i);
        for r in &s.model.rules {
            let replaced = top_rule.get(&r.id).is_some_and(|t| *t > l);
            let off = disabled.get(&r.id).is_some_and(|t| *t > l);
            if replaced || off {
                s.hidden.rules.insert(r.id.clone());
            }
        }
        for k in s.model.functions.keys() {
            if let Some((name, _)) = compile::parse_signature(k) {
                if top_func.get(&name).is_some_and(|t| *t > l) {
                    s.hidden.functions.insert(name);
                }
            }
        }
        for k in s.model.flows.keys() {
            if top_flow.get(k).is_some_and(|t| *t > l) {
                s.hidden.flows.insert(k.clone());
            }
        }
    }
}

/// Warns (E217) on every flow that no rule uses, directly or through other flows.
fn warn_unused_flows(prog: &Program, sources: &[RuleSource], diags: &mut Diagnostics) {
    let mut used: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut todo: Vec<String> = prog
        .rules
        .iter()
        .flat_map(|r| used_flows(prog, &r.effects))
        .collect();
    while let Some(name) = todo.pop() {
        if !used.insert(name.clone()) {
            continue;
        }
        if let Some(f) = prog.flows.iter().find(|f| *f.name == *name) {
            todo.extend(used_flows(prog, &f.effects));
        }
    }
    for f in &prog.flows {
        if used.contains(&*f.name) {
            continue;
        }
        let at = sources
            .iter()
            .find(|s| s.model.flows.contains_key(&*f.name) && !s.hidden.flows.contains(&*f.name))
            .map(|s| {
                s.marked
                    .locate_key(&[yaml::Seg::from("flows"), yaml::Seg::Key(f.name.to_string())])
            });
        diags.push(
            Diagnostic::warning(
                codes::UNUSED_FLOW,
                format!(
                    "flow `{}` is never used: no rule uses it, nor any flow a rule uses",
                    f.name
                ),
            )
            .at(at)
            .label("unused")
            .note("help: `use` it from a rule, or delete it"),
        );
    }
}

fn collect_rule_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_rule_files(&path, out)?;
        } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
            && !name.starts_with("settings")
        {
            out.push(path);
        }
    }
    Ok(())
}

fn yaml_error_location(file: &Arc<SourceFile>, e: &serde_yaml::Error) -> Option<Location> {
    let loc = e.location()?;
    let start = loc.index().min(file.text.len());
    Some(Location {
        file: file.clone(),
        start,
        end: start + 1,
    })
}

/// Each rule file read ([`read_rule_file`]), in the order given, with what reading it found;
/// and what `first` gives, run on this thread before its share of the files (`first_len`:
/// how many bytes it reads). The files are independent, and reading one (its YAML twice:
/// the marked tree and the model; then its expressions parsed, [`compile::parse_ahead`]) is
/// over half of loading the default rules, so with several files and a second core the
/// files past the middle (by size, `first` counted) are read on a thread of their own
/// meanwhile.
fn read_rule_files<R>(
    files: &[(String, String)],
    first_len: usize,
    first: impl FnOnce() -> R,
) -> (R, Vec<(Option<RuleSource>, Diagnostics)>) {
    let read_all = |part: &[(String, String)]| -> Vec<(Option<RuleSource>, Diagnostics)> {
        part.iter()
            .map(|(name, text)| {
                let mut found = Diagnostics::default();
                let src = read_rule_file(name, text, &mut found);
                (src, found)
            })
            .collect()
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if files.len() < 2 || cores < 2 {
        let r = first();
        return (r, read_all(files));
    }
    // Where half of all the text has been read, `first`'s counted first.
    let total: usize = first_len + files.iter().map(|(_, t)| t.len()).sum::<usize>();
    let mut seen = first_len;
    let split = files
        .iter()
        .position(|(_, t)| {
            seen += t.len();
            seen * 2 >= total
        })
        .map_or(files.len() / 2, |i| i + 1)
        .clamp(1, files.len() - 1);
    let (mine, theirs) = files.split_at(split);
    std::thread::scope(|scope| {
        let other = std::thread::Builder::new()
            .name("skladsync-read".into())
            .spawn_scoped(scope, || read_all(theirs));
        let r = first();
        let mut read = read_all(mine);
        match other {
            Ok(handle) => match handle.join() {
                Ok(rest) => read.extend(rest),
                Err(panic) => std::panic::resume_unwind(panic),
            },
            // No thread to be had: this one reads the rest too.
            Err(_) => read.extend(read_all(theirs)),
        }
        (r, read)
    })
}

fn read_rule_file(name: &str, text: &str, diags: &mut Diagnostics) -> Option<RuleSource> {
    let source = Arc::new(SourceFile {
        name: name.to_owned(),
        text: text.to_owned(),
    });
    let marked = match MarkedFile::parse(source.clone()) {
        Ok(m) => m,
        Err(e) => {
            diags.push(e.diagnostic(&source, ""));
            return None;
        }
    };
    let is_empty = matches!(&marked.root, yaml::YNode::Map { entries, .. } if entries.is_empty())
        || matches!(&marked.root, yaml::YNode::Scalar { text, .. } if text.is_empty());
    if is_empty {
        return Some(RuleSource {
            hidden: Default::default(),
            marked,
            model: RuleFile::default(),
            parsed: Default::default(),
        });
    }
    let (model, texts) = model::collect_expressions(|| serde_yaml::from_str::<RuleFile>(text));
    match model {
        Ok(model) => Some(RuleSource {
            marked,
            model,
            hidden: Default::default(),
            // Parsed here, on the thread that read the file (see `read_rule_files`).
            parsed: compile::parse_ahead(texts),
        }),
        Err(e) => {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            let at = yaml_error_location(&source, &e);
            // serde_yaml's reader is stricter than the marked tree's in places (a tab
            // before a comment): a syntax error is still a syntax error.
            let hint = at
                .as_ref()
                .and_then(|l| yaml::yaml_hint(&msg, text, l.start));
            let d = match hint {
                Some(h) => Diagnostic::error(codes::YAML, format!("not valid YAML: {msg}"))
                    .at(at)
                    .note(format!("help: {h}")),
                None => Diagnostic::error(codes::SHAPE, format!("this is not a valid rule file: {msg}"))
                    .at(at)
                    .note("a rule file has the sections `events`, `functions`, `flows`, `rules` and `checks`; see docs/language.md"),
            };
            diags.push(d);
            None
        }
    }
}

fn read_settings(name: &str, text: &str) -> Result<(Value, Option<MarkedFile>), Diagnostic> {
    let source = Arc::new(SourceFile {
        name: name.to_owned(),
        text: text.to_owned(),
    });
    let marked = MarkedFile::parse(source.clone())
        .map_err(|e| e.diagnostic(&source, "the settings file is "))?;
    let value: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            Diagnostic::error(
                codes::YAML,
                format!("the settings file cannot be read: {e}"),
            )
            .at(yaml_error_location(&source, &e))
        })?
    };
    let value = match value {
        Value::Null => Value::object(Default::default()),
        v @ Value::Object(_) => v,
        other => {
            return Err(Diagnostic::error(
                codes::SHAPE,
                format!(
                    "the settings file must be a map of settings, not {}",
                    other.type_name()
                ),
            )
            .at(Some(Location {
                file: source,
                start: 0,
                end: 1,
            })))
        }
    };
    Ok((value, Some(marked)))
}

#[cfg(test)]
mod read_tests {
    use super::read_rule_files;

    /// Files read on two threads come back in the order given, each with its own
    /// diagnostics, and what `first` gives is returned once: whatever the split.
    #[test]
    fn files_read_on_two_threads_come_back_in_order() {
        for n in 1..12usize {
            let files: Vec<(String, String)> = (0..n)
                .map(|i| {
                    let text = if i % 3 == 1 {
                        // Not valid YAML: an error, and no source.
                        "rules: [\n".to_owned()
                    } else {
                        format!(
                            "functions:\n  f{i}(x): x + {i}\n{}",
                            "# pad\n".repeat(i * 7)
                        )
                    };
                    (format!("f{i}.yaml"), text)
                })
                .collect();
            let mut ran = 0;
            let (first, read) = read_rule_files(&files, 40, || {
                ran += 1;
                "settings"
            });
            assert_eq!((first, ran), ("settings", 1));
            assert_eq!(read.len(), n);
            for (i, (src, found)) in read.iter().enumerate() {
                if i % 3 == 1 {
                    assert!(src.is_none(), "file {i} of {n}");
                    assert!(found.has_errors(), "file {i} of {n}");
                    let at = found.items[0]
                        .location
                        .as_ref()
                        .map(|l| l.file.name.clone());
                    assert_eq!(at.as_deref(), Some(format!("f{i}.yaml").as_str()));
                } else {
                    let src = src.as_ref().unwrap_or_else(|| panic!("file {i} of {n}"));
                    assert_eq!(src.marked.source.name, format!("f{i}.yaml"));
                    assert!(src.model.functions.contains_key(&format!("f{i}(x)")));
                    // Its expressions were parsed where it was read.
                    let body = format!("x + {i}");
                    assert!(
                        matches!(src.parsed.get(&body), Some(Ok(_))),
                        "file {i} of {n}"
                    );
                    assert!(found.items.is_empty(), "file {i} of {n}: {found:?}");
                }
            }
        }
    }

    /// What is parsed ahead is what the compiler would parse: every expression of the file
    /// once (an error stays an error, for the compiler to report), no template, and nothing
    /// read outside the file.
    #[test]
    fn a_file_s_expressions_are_parsed_where_it_is_read() {
        let text =
            "functions:\n  a(x): x * 2\n  b(x): x * 2\n  c(x): (x +\n  d(x): '\"n={{ x }}\"'\n";
        let outside = crate::ruleset::model::collect_expressions(|| {
            let mut found = crate::diagnostic::Diagnostics::default();
            super::read_rule_file("p.yaml", text, &mut found)
        });
        let (src, collected) = outside;
        // The file's own collection was its own; the outer one saw nothing of it.
        assert!(collected.is_empty(), "{collected:?}");
        let src = src.unwrap_or_else(|| panic!("the file reads"));
        let mut keys: Vec<&str> = src.parsed.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["(x +", "x * 2"]);
        assert!(matches!(src.parsed.get("x * 2"), Some(Ok(_))));
        assert!(matches!(src.parsed.get("(x +"), Some(Err(_))));
    }
}
