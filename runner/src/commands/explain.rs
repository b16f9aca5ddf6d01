//! `skladsync explain`: why each rule fired or did not for one event.

use std::process::ExitCode;

use skladsync_engine::trace::{Outcome, RuleTrace};
use skladsync_engine::{Action, Case, Plan, RecordedWorld, Trace, Value};

use crate::cli::{ExplainArgs, ReportFormat};
use crate::tooling::corpus;
use crate::tooling::coverage::one_line;
use crate::tooling::paint::{stdout_color, Paint};

/// Exit 0 with the explanation on stdout; 1 when the rules or the inputs are bad.
pub fn run(args: &ExplainArgs) -> ExitCode {
    let paint = Paint {
        on: stdout_color(args.rules.color),
    };
    let rules = match super::load_rules(&args.rules) {
        Ok((rules, _)) => rules,
        Err(diags) => {
            eprint!("{}", diags.render(super::use_color(args.rules.color)));
            return ExitCode::from(1);
        }
    };
    let mut case = match read_case(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(w) = &args.world {
        match std::fs::read_to_string(w)
            .map_err(|e| e.to_string())
            .and_then(|t| RecordedWorld::from_yaml(&t))
        {
            Ok(world) => case.world = world,
            Err(e) => {
                eprintln!("error: world {}: {e}", w.display());
                return ExitCode::from(1);
            }
        }
    }
    if let Some(id) = &args.rule {
        let all = rules.rules();
        match all.iter().find(|r| &r.id == id) {
            None => {
                eprintln!("error: there is no rule `{id}`");
                return ExitCode::from(1);
            }
            Some(r) if !r.on.contains(&case.event.name) => {
                println!(
                    "rule {id} does not listen to {} (it listens to {})",
                    case.event.name,
                    r.on.join(", ")
                );
                return ExitCode::SUCCESS;
            }
            Some(_) => {}
        }
    }
    let mut trace = Trace::default();
    let plan = case.run_traced(&rules, Some(&mut trace));
    let (plan, error) = match plan {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let traces: Vec<&RuleTrace> = trace
        .rules
        .iter()
        .filter(|t| args.rule.as_ref().is_none_or(|id| &t.rule == id))
        .collect();
    match args.format {
        ReportFormat::Json => {
            let doc = serde_json::json!({
                "event": case.event.name,
                "rules": traces,
                "plan": plan,
                "error": error,
            });
            match serde_json::to_string_pretty(&doc) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            }
        }
        ReportFormat::Text => {
            let heading = match &args.rule {
                Some(id) => format!("event {}, rule {id}\n", case.event.name),
                None => format!(
                    "event {}: {} rule(s) listened\n",
                    case.event.name,
                    traces.len()
                ),
            };
            // With layers, say where each rule came from.
            let origins: std::collections::HashMap<String, String> =
                if super::layers(&args.rules).is_empty() {
                    Default::default()
                } else {
                    rules
                        .rules()
                        .into_iter()
                        .map(|r| (r.id, format!("layer {} ({})", r.layer, r.location)))
                        .collect()
                };
            let mut text = render(&traces, plan.as_ref(), paint);
            for (id, origin) in &origins {
                let line = format!("rule {}: ", paint.bold(id));
                if let Some(at) = text.find(&line) {
                    if let Some(end) = text[at..].find('\n') {
                        text.insert_str(at + end + 1, &format!("  from {origin}\n"));
                    }
                }
            }
            print!("{heading}{text}");
            if let Some(e) = &error {
                println!("{}", paint.red(&format!("evaluation error: {e}")));
            }
        }
    }
    ExitCode::SUCCESS
}

fn read_case(args: &ExplainArgs) -> Result<Case, String> {
    let doc = crate::commands::read_value(&args.event)?;
    corpus::item_from_value(args.event.display().to_string(), &doc)
        .map(|i| i.case)
        .map_err(|e| format!("{}: {e}", args.event.display()))
}

/// A value on one line, cut at 120 characters.
fn short(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() > 120 {
        let cut: String = s.chars().take(117).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// The text report.
pub fn render(traces: &[&RuleTrace], plan: Option<&Plan>, paint: Paint) -> String {
    let mut s = String::new();
    for t in traces {
        s.push('\n');
        let status = match &t.outcome {
            Outcome::Fired => paint.green(&format!("fired ({} effect(s))", t.effects)),
            Outcome::Stopped { condition, journal } => paint.red(&format!(
                "stopped at when[{condition}]{}",
                journal
                    .as_ref()
                    .map(|j| format!(", journal {j}"))
                    .unwrap_or_default()
            )),
            Outcome::Aborted {
                flow,
                condition,
                journal,
            } => paint.red(&format!(
                "abandoned in flow {flow} at when[{condition}]{}",
                journal
                    .as_ref()
                    .map(|j| format!(", journal {j}"))
                    .unwrap_or_default()
            )),
            Outcome::Error { message } => paint.red(&format!("error: {message}")),
        };
        s.push_str(&format!("rule {}: {status}\n", paint.bold(&t.rule)));
        for l in &t.lets {
            let v = match (&l.value, &l.error) {
                (Some(v), _) => short(v),
                (None, Some(e)) => paint.red(&format!("error: {e}")),
                (None, None) => "(not computed)".to_owned(),
            };
            s.push_str(&format!("  let {} = {v}\n", l.name));
        }
        for c in &t.conditions {
            let mark = if c.holds {
                paint.green("true ")
            } else {
                paint.red("false")
            };
            let owner = c
                .flow
                .as_ref()
                .map(|f| format!("flow {f} "))
                .unwrap_or_default();
            s.push_str(&format!(
                "  {mark} {owner}when[{}] {}  {}\n",
                c.index,
                one_line(&c.text),
                paint.dim(&c.location)
            ));
            let literal = matches!(c.value, Value::Bool(_));
            if !literal {
                s.push_str(&format!("          = {}\n", short(&c.value)));
            }
        }
        let stopped = matches!(t.outcome, Outcome::Stopped { .. } | Outcome::Aborted { .. });
        if stopped {
            let reasons: Vec<String> = plan
                .map(|p| {
                    p.effects
                        .iter()
                        .filter(|e| *e.rule == *t.rule)
                        .filter_map(|e| match &e.action {
                            Action::Journal {
                                code, level, text, ..
                            } => Some(format!("journal {code} ({}): {text}", level.as_str())),
                            Action::Skip { reason } => Some(format!("skip: {reason}")),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            if reasons.is_empty() {
                s.push_str("  reason: none recorded (the condition is silent)\n");
            }
            for r in reasons {
                s.push_str(&format!("  reason: {r}\n"));
            }
        }
    }
    s
}
