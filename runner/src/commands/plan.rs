//! `skladsync plan`: evaluate one event and print the plan.

use std::process::ExitCode;

use skladsync_engine::{Event, RecordedWorld};

use crate::cli::{Format, PlanArgs};

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
    let event = match super::read_value(&args.event).and_then(|doc| {
        Event::from_document(&doc).map_err(|e| format!("{}: {e}", args.event.display()))
    }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let world = match &args.world {
        None => RecordedWorld::default(),
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
    match rules.evaluate(&event, &world) {
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
