//! Rule test cases as data: an event, the world it meets, settings overrides.
//!
//! ```yaml
//! doc: An order in an upload status is uploaded.
//! event: {event: order.placed, now: "2024-05-01 10:00:00", order: {id: 7}}
//! world: {entities: {}, links: [], reference: {}}
//! settings: {statuses_to_copy: [new]}       # merged over the settings file
//! ```
//!
//! A case may `include:` shared fragments (paths relative to the case file): YAML maps with
//! any of `event`, `world` and `settings`, laid under the case in order. Maps merge key by
//! key; under `world` lists are joined (the fragment's rows first), elsewhere the case's
//! list replaces the fragment's. So a case states only what differs from a shared shop.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::diagnostic::{codes, Diagnostic, Location, SourceFile};
use crate::eval::{EvalError, EvalOptions, Event};
use crate::plan::Plan;
use crate::ruleset::yaml::{MarkedFile, Seg};
use crate::ruleset::RuleSet;
use crate::trace::Trace;
use crate::value::Value;
use crate::world::RecordedWorld;

/// One case.
#[derive(Clone, Debug)]
pub struct Case {
    /// What the case shows.
    pub doc: Option<String>,
    /// The event.
    pub event: Event,
    /// The event as written (for reports).
    pub event_doc: Value,
    /// The world.
    pub world: RecordedWorld,
    /// Settings overrides (merged over the rule set's settings).
    pub settings: Value,
    /// The expected plan, when the case file carries one.
    pub expect: Option<Value>,
}

/// A case file, as written (the JSON Schema of case files is made from it).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "skladsync test case")]
pub struct CaseFile {
    /// What the case shows (one or two sentences).
    #[serde(default)]
    pub doc: Option<String>,
    /// Shared fragments laid under this case, in order: paths relative to the case file of
    /// YAML maps with `event`, `world` and `settings`.
    #[serde(default)]
    pub include: Vec<String>,
    /// The event: `event` (a declared event's name), optionally `now`, and its fields.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub event: Value,
    /// The world the event meets: `entities`, `links`, `reference`, … as for `plan --world`.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub world: Value,
    /// Settings overrides, merged over the settings the cases run with.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub settings: Value,
    /// The expected plan (as `skladsync plan` prints it, or just its effects, or
    /// `{error: text}`); without it, the expectation is a snapshot.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub expect: Option<Value>,
}

/// A shared fragment of cases.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    #[serde(default)]
    doc: Option<String>,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    event: Value,
    #[serde(default)]
    world: Value,
    #[serde(default)]
    settings: Value,
}

/// How deeply fragments may include fragments.
const MAX_INCLUDE_DEPTH: usize = 8;

/// Merges `over` onto `base`: maps key by key; lists joined when `join`, else replaced; a
/// null in `over` keeps the base value. (`event` and `settings` merge with `join = false`,
/// `world` with `join = true`.)
pub fn layer(base: &Value, over: &Value, join: bool) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut map = (**b).clone();
            for (k, v) in o.iter() {
                let merged = match map.get(k) {
                    Some(existing) => layer(existing, v, join),
                    None => v.clone(),
                };
                map.insert(k.clone(), merged);
            }
            Value::object(map)
        }
        (Value::Array(b), Value::Array(o)) if join => {
            let mut items = (**b).clone();
            items.extend(o.iter().cloned());
            Value::array(items)
        }
        (b, Value::Null) => b.clone(),
        (_, o) => o.clone(),
    }
}

/// (event, world, settings) of the fragments `include` names, relative to `dir`, merged.
fn included(dir: &Path, include: &[String], depth: usize) -> Result<(Value, Value, Value), String> {
    let mut acc = (Value::Null, Value::Null, Value::Null);
    for rel in include {
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(format!(
                "`{rel}`: fragments include each other more than {MAX_INCLUDE_DEPTH} deep"
            ));
        }
        let path = dir.join(rel);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("include `{rel}` ({}): {e}", path.display()))?;
        let frag: Fragment = serde_yaml::from_str(&text)
            .map_err(|e| format!("include `{rel}` ({}): {e}", path.display()))?;
        let _ = frag.doc;
        let inner_dir = path.parent().unwrap_or(dir);
        let (e, w, s) = included(inner_dir, &frag.include, depth + 1)?;
        let e = layer(&e, &frag.event, false);
        let w = layer(&w, &frag.world, true);
        let s = layer(&s, &frag.settings, false);
        acc = (
            layer(&acc.0, &e, false),
            layer(&acc.1, &w, true),
            layer(&acc.2, &s, false),
        );
    }
    Ok(acc)
}

/// The `(event, world, settings)` that the fragments `include` names (relative to `dir`)
/// lay under a case, merged as for a case: what a case is merged over.
pub fn included_base(dir: &Path, include: &[String]) -> Result<(Value, Value, Value), String> {
    included(dir, include, 0)
}

impl CaseFile {
    /// The case file with its includes laid under it (none when `dir` is `None`).
    fn resolved(mut self, dir: Option<&Path>) -> Result<CaseFile, String> {
        if self.include.is_empty() {
            return Ok(self);
        }
        let Some(dir) = dir else {
            return Err("`include` needs the case's path".to_owned());
        };
        let (e, w, s) = included(dir, &self.include, 0)?;
        self.event = layer(&e, &self.event, false);
        self.world = layer(&w, &self.world, true);
        self.settings = layer(&s, &self.settings, false);
        Ok(self)
    }
}

impl Case {
    /// Reads a case from YAML or JSON text.
    pub fn from_yaml(text: &str) -> Result<Case, String> {
        Case::from_yaml_in(text, None)
    }

    /// Reads a case from YAML or JSON text, its includes relative to `dir`.
    pub fn from_yaml_in(text: &str, dir: Option<&Path>) -> Result<Case, String> {
        let file: CaseFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let file = file.resolved(dir)?;
        let event = Event::from_document(&file.event)?;
        let world = RecordedWorld::from_value(&file.world).map_err(|e| format!("world: {e}"))?;
        Ok(Case {
            doc: file.doc,
            event,
            event_doc: file.event,
            world,
            settings: file.settings,
            expect: file.expect,
        })
    }

    /// Reads a case from YAML or JSON text named `name`; a case that cannot be read is a
    /// diagnostic with its code frame (YAML syntax with a hint that fits, unknown keys, a
    /// malformed event or world).
    pub fn from_named(name: &str, text: &str) -> Result<Case, Diagnostic> {
        Case::from_named_in(name, text, None)
    }

    /// Like [`Case::from_named`], the includes relative to `dir`.
    pub fn from_named_in(name: &str, text: &str, dir: Option<&Path>) -> Result<Case, Diagnostic> {
        let source = Arc::new(SourceFile {
            name: name.to_owned(),
            text: text.to_owned(),
        });
        let marked =
            MarkedFile::parse(source.clone()).map_err(|e| e.diagnostic(&source, "the case is "))?;
        let file: CaseFile = serde_yaml::from_str(text).map_err(|e| {
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
            let at = e.location().map(|l| {
                let start = l.index().min(text.len());
                Location {
                    file: source.clone(),
                    start,
                    end: start + 1,
                }
            });
            let hint = at
                .as_ref()
                .and_then(|l| crate::ruleset::yaml::yaml_hint(&msg, text, l.start));
            match hint {
                Some(h) => Diagnostic::error(codes::YAML, format!("the case is not valid YAML: {msg}"))
                    .at(at)
                    .note(format!("help: {h}")),
                None => Diagnostic::error(codes::SHAPE, format!("this is not a valid case: {msg}"))
                    .at(at)
                    .note("a case has `doc`, `event`, `world`, `settings` and `expect`; see docs/tooling.md"),
            }
        })?;
        let file = file.resolved(dir).map_err(|e| {
            Diagnostic::error(codes::IO, format!("the case's include: {e}"))
                .at(Some(marked.locate_key(&[Seg::from("include")])))
        })?;
        let event = Event::from_document(&file.event).map_err(|e| {
            Diagnostic::error(codes::SHAPE, format!("the case's event: {e}"))
                .at(Some(marked.locate_key(&[Seg::from("event")])))
        })?;
        let world = RecordedWorld::from_value(&file.world).map_err(|e| {
            Diagnostic::error(codes::SHAPE, format!("the case's world: {e}"))
                .at(Some(marked.locate_key(&[Seg::from("world")])))
        })?;
        Ok(Case {
            doc: file.doc,
            event,
            event_doc: file.event,
            world,
            settings: file.settings,
            expect: file.expect,
        })
    }

    /// Reads a case file.
    pub fn load(path: &Path) -> Result<Case, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Case::from_yaml_in(&text, path.parent()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Evaluates the case against a rule set.
    pub fn run(&self, rules: &RuleSet) -> Result<Plan, EvalError> {
        self.run_traced(rules, None)
    }

    /// Evaluates the case, recording a trace.
    pub fn run_traced(
        &self,
        rules: &RuleSet,
        trace: Option<&mut Trace>,
    ) -> Result<Plan, EvalError> {
        rules
            .check_event(&self.event.name)
            .map_err(|message| EvalError {
                kind: crate::eval::EvalErrorKind::Type,
                rule: None,
                flow: None,
                location: None,
                message,
            })?;
        rules
            .check_overrides(&self.settings)
            .map_err(|message| EvalError {
                kind: crate::eval::EvalErrorKind::Type,
                rule: None,
                flow: None,
                location: None,
                message,
            })?;
        let settings = rules.settings_with(&self.settings);
        rules.evaluate_with(
            &self.event,
            &self.world,
            EvalOptions {
                settings: Some(&settings),
                trace,
                ..EvalOptions::default()
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_lay_shared_fragments_under_the_case() {
        let dir = std::env::temp_dir().join(format!("skladsync-case-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("worlds")).unwrap();
        std::fs::write(
            dir.join("worlds/shop.yaml"),
            "world:\n  entities:\n    wh.store: [{id: st-1}]\nsettings: {a: {b: 1, c: [x]}}\nevent: {now: '2024-05-01 10:00:00', order: {site: shop}}\n",
        )
        .unwrap();
        let text = "include: [worlds/shop.yaml]\nevent: {event: e, order: {id: 7}}\nworld:\n  entities:\n    wh.store: [{id: st-2}]\nsettings: {a: {c: [y]}}\n";
        let case = Case::from_yaml_in(text, Some(&dir)).unwrap();
        assert_eq!(
            case.event_doc.to_json(),
            r#"{"now":"2024-05-01 10:00:00","order":{"site":"shop","id":7},"event":"e"}"#
        );
        assert_eq!(case.settings.to_json(), r#"{"a":{"b":1,"c":["y"]}}"#);
        let file: CaseFile = serde_yaml::from_str(text).unwrap();
        let file = file.resolved(Some(&dir)).unwrap();
        assert_eq!(
            file.world.to_json(),
            r#"{"entities":{"wh.store":[{"id":"st-1"},{"id":"st-2"}]}}"#
        );
        assert!(Case::from_yaml(text).is_err(), "include needs a path");
        std::fs::remove_dir_all(&dir).ok();
    }
}
