//! `skladsync eval`: evaluate one expression against an event (and a world) and print its
//! value, for trying the language without writing a rule.

use std::process::ExitCode;

use skladsync_engine::ruleset::expression::ExpressionError;
use skladsync_engine::{Layer, RecordedWorld, RuleSet};

use crate::cli::{EvalArgs, Format};
use crate::tooling::{corpus, ruleload};

/// Exit 0 with the value on stdout; 1 when the rules, the inputs or the expression are bad.
pub fn run(args: &EvalArgs) -> ExitCode {
    let color = super::use_color(args.rules.color);
    match value(args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::Diagnostics(d)) => {
            eprint!("{}", d.render(color));
            ExitCode::from(1)
        }
        Err(Failure::Text(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Diagnostics(skladsync_engine::Diagnostics),
    Text(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Text(s)
    }
}

fn value(args: &EvalArgs) -> Result<String, Failure> {
    let dir = &args.rules.rules;
    let mut layers = vec![Layer {
        name: dir.display().to_string(),
        files: ruleload::from_dir(dir, dir).map_err(|e| e.to_string())?,
    }];
    for layer in &super::layers(&args.rules) {
        layers.push(Layer {
            name: layer.display().to_string(),
            files: ruleload::from_dir(layer, layer).map_err(|e| e.to_string())?,
        });
    }
    let settings = match super::settings_path(&args.rules) {
        Some(p) => Some(ruleload::read_settings(&p).map_err(|e| e.to_string())?),
        None => None,
    };
    let shape = ruleload::shape(dir).map_err(|e| e.to_string())?;
    let doc = super::read_value(&args.event)?;
    let mut case = corpus::item_from_value(args.event.display().to_string(), &doc)
        .map(|i| i.case)
        .map_err(|e| format!("{}: {e}", args.event.display()))?;
    if let Some(w) = &args.world {
        case.world = std::fs::read_to_string(w)
            .map_err(|e| e.to_string())
            .and_then(|t| RecordedWorld::from_yaml(&t))
            .map_err(|e| format!("world {}: {e}", w.display()))?;
    }
    let v = RuleSet::evaluate_expression(
        &layers,
        settings.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        shape.as_ref(),
        "<expression>",
        &args.expression,
        &case.event,
        &case.world,
        &case.settings,
    )
    .map_err(|e| match e {
        ExpressionError::Rules(d) => Failure::Diagnostics(d),
        ExpressionError::Eval(m) => Failure::Text(m),
    })?;
    Ok(match args.format {
        Format::Json => format!("{}\n", v.to_json()),
        Format::Yaml => serde_yaml::to_string(&v).map_err(|e| e.to_string())?,
    })
}
