//! The dry run of a rule change: every event of a corpus under two rule sets, and what
//! changed between the two plans. Events are evaluated in parallel (a `RuleSet` is
//! `Sync`); the report keeps corpus order.

use std::collections::BTreeMap;

use serde::Serialize;
use skladsync_engine::{EvalError, Plan, RuleSet};

use super::corpus::Item;
use super::paint::Paint;
use super::plandiff::{self, Change};

/// How one side's evaluation of an event went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorText {
    /// The error as shown.
    pub message: String,
    /// The error without its location (so a moved line is not a change).
    #[serde(skip)]
    pub key: (Option<String>, Option<String>, String),
}

impl ErrorText {
    fn of(e: &EvalError) -> ErrorText {
        ErrorText {
            message: e.to_string(),
            key: (e.rule.clone(), e.flow.clone(), e.message.clone()),
        }
    }
}

/// What changed for one event.
#[derive(Debug, Clone, Serialize)]
pub struct EventDiff {
    /// Where the event came from.
    pub source: String,
    /// The event name.
    pub event: String,
    /// The error under the base rules, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_error: Option<String>,
    /// The error under the current rules, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Effects added, removed and changed.
    pub effects: Vec<Change>,
    /// The rules whose effects changed (sorted).
    pub rules: Vec<String>,
}

/// The whole dry run.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// How many events were evaluated.
    pub events: usize,
    /// How many of them have changed plans.
    pub changed: usize,
    /// Per rule, how many events have changed effects of that rule.
    pub rules: BTreeMap<String, usize>,
    /// The events with changes, in corpus order.
    pub changes: Vec<EventDiff>,
}

fn eval(rules: &RuleSet, item: &Item) -> Result<Plan, ErrorText> {
    item.case.run(rules).map_err(|e| ErrorText::of(&e))
}

/// Compares the plans of one event.
pub fn compare(base: &RuleSet, current: &RuleSet, item: &Item) -> Option<EventDiff> {
    let before = eval(base, item);
    let after = eval(current, item);
    let empty = Vec::new();
    let (b_effects, b_err) = match &before {
        Ok(p) => (&p.effects, None),
        Err(e) => (&empty, Some(e)),
    };
    let (a_effects, a_err) = match &after {
        Ok(p) => (&p.effects, None),
        Err(e) => (&empty, Some(e)),
    };
    let effects = plandiff::diff_effects(b_effects, a_effects);
    let errors_differ = b_err.map(|e| &e.key) != a_err.map(|e| &e.key);
    if effects.is_empty() && !errors_differ {
        return None;
    }
    let mut rules: Vec<String> = effects.iter().map(Change::rule).collect();
    if errors_differ {
        for e in [b_err, a_err].into_iter().flatten() {
            if let Some(r) = &e.key.0 {
                rules.push(r.clone());
            }
        }
    }
    rules.sort();
    rules.dedup();
    Some(EventDiff {
        source: item.name.clone(),
        event: item.case.event.name.clone(),
        base_error: if errors_differ {
            b_err.map(|e| e.message.clone())
        } else {
            None
        },
        error: if errors_differ {
            a_err.map(|e| e.message.clone())
        } else {
            None
        },
        effects,
        rules,
    })
}

/// Evaluates every item under both rule sets on `threads` threads.
pub fn run(base: &RuleSet, current: &RuleSet, items: &[Item], threads: usize) -> DiffReport {
    let threads = threads.max(1);
    let chunk = items.len().div_ceil(threads).max(1);
    let results: Vec<Vec<Option<EventDiff>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|item| compare(base, current, item))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    let changes: Vec<EventDiff> = results.into_iter().flatten().flatten().collect();
    let mut rules = BTreeMap::new();
    for c in &changes {
        for r in &c.rules {
            *rules.entry(r.clone()).or_insert(0) += 1;
        }
    }
    DiffReport {
        events: items.len(),
        changed: changes.len(),
        rules,
        changes,
    }
}

/// How many threads to use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

impl DiffReport {
    /// The summary line.
    pub fn summary(&self) -> String {
        if self.changed == 0 {
            return format!("no plan changed ({} events)", self.events);
        }
        let per_rule: Vec<String> = self
            .rules
            .iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect();
        format!(
            "{} of {} events have changed plans; per rule: {}",
            self.changed,
            self.events,
            per_rule.join(", ")
        )
    }

    /// The report as text: per changed event, its changes; then the summary line.
    pub fn render(&self, paint: Paint) -> String {
        let mut s = String::new();
        for c in &self.changes {
            s.push_str(&format!(
                "{}  {}\n",
                paint.bold(&c.source),
                paint.dim(&c.event)
            ));
            if let Some(e) = &c.base_error {
                s.push_str(&format!(
                    "  {}\n",
                    paint.red(&format!("- evaluation error: {e}"))
                ));
            }
            if let Some(e) = &c.error {
                s.push_str(&format!(
                    "  {}\n",
                    paint.green(&format!("+ evaluation error: {e}"))
                ));
            }
            s.push_str(&plandiff::render(&c.effects, 2, paint));
        }
        if !self.changes.is_empty() {
            s.push('\n');
        }
        s.push_str(&self.summary());
        s.push('\n');
        s
    }
}
