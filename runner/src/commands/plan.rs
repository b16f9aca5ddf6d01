//! `skladsync plan`: evaluate one event and print the plan.

use std::process::ExitCode;

use skladsync_engine::{EvalOptions, RecordedWorld};

use crate::cli::{Format, PlanArgs};
use crate::tooling::corpus;

/// Exit 0 with the plan on stdout; 1 when the rules or the inputs are bad.
pub fn run(args: &PlanArgs) -> ExitCode {
    let color = super::use_color(args.rules.color);
    let rules = match super::load_rules(&args.rules) {
        Ok((rules, warnings)) => {
            if !warnings.is_empty() {
                eprint!("{}", warnings.render(color));
            }
            rules
        }
        Err(diags) => {
            eprint!("{}", diags.render(color));
            return ExitCode::from(1);
        }
    };
    // An event file, or a case file (its world and settings overrides are used too).
    let case = match super::read_value(&args.event).and_then(|doc| {
        corpus::item_from_value(args.event.display().to_string(), &doc)
            .map(|i| i.case)
            .map_err(|e| format!("{}: {e}", args.event.display()))
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = rules.check_event(&case.event.name) {
        eprintln!("error: {}: {e}", args.event.display());
        return ExitCode::from(1);
    }
    let event = case.event;
    let settings = rules.settings_with(&case.settings);
    let world = match &args.world {
        None => case.world,
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| RecordedWorld::from_yaml(&t))
        {
            Ok(w) => w,
            Err(e) => {
                eprintln!("error: world {}: {e}", p.display());
                return ExitCode::from(1);
            }
        },
    };
    let opts = EvalOptions {
        settings: Some(&settings),
        ..EvalOptions::default()
    };
    match rules.evaluate_with(&event, &world, opts) {
        Ok(plan) => {
            match args.format {
                Format::Yaml => print!("{}", plan.to_yaml()),
                Format::Json => println!("{}", plan.to_json()),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
