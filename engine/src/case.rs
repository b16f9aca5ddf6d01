//! Rule test cases as data: an event, the world it meets, settings overrides.
//!
//! ```yaml
//! doc: An order in an upload status is uploaded.
//! event: {event: order.placed, now: "2024-05-01 10:00:00", order: {id: 7}}
//! world: {entities: {}, links: [], reference: {}}
//! settings: {statuses_to_copy: [new]}       # merged over the settings file
//! ```

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    doc: Option<String>,
    event: Value,
    #[serde(default)]
    world: Value,
    #[serde(default)]
    settings: Value,
    #[serde(default)]
    expect: Option<Value>,
}

impl Case {
    /// Reads a case from YAML or JSON text.
    pub fn from_yaml(text: &str) -> Result<Case, String> {
        let file: CaseFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
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
        Case::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))
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
