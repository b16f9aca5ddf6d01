//! `skladsync diff`: the dry run of a rule change.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::{DiffArgs, ReportFormat};
use crate::tooling::paint::{stdout_color, Paint};
use crate::tooling::ruleload::{self, RuleTexts};
use crate::tooling::{corpus, dryrun, ToolError};

/// Exit 0 when no plan changed, 1 when some did, 2 when the diff could not be made.
pub fn run(args: &DiffArgs) -> ExitCode {
    match report(args) {
        Ok(report) => {
            match args.format {
                ReportFormat::Json => match serde_json::to_string_pretty(&report) {
                    Ok(j) => println!("{j}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                },
                ReportFormat::Text => {
                    let paint = Paint {
                        on: stdout_color(args.rules.color),
                    };
                    if report.changed > 0 {
                        print!("{}", report.render(paint));
                    } else {
                        eprintln!("{}", report.summary());
                    }
                }
            }
            if report.changed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn report(args: &DiffArgs) -> Result<dryrun::DiffReport, ToolError> {
    let rules_dir = &args.rules.rules;
    let settings = match super::settings_path(&args.rules) {
        Some(p) => Some(ruleload::read_settings(&p)?),
        None => None,
    };
    let shape = ruleload::shape(rules_dir)?;
    let current = RuleTexts {
        files: ruleload::from_dir(rules_dir, rules_dir)?,
        settings: settings.clone(),
        layers: ruleload::layers(&super::layers(&args.rules))?,
    }
    .compile_shaped("current", shape.as_ref())?;
    let base_files = if Path::new(&args.base).is_dir() {
        ruleload::from_dir(Path::new(&args.base), rules_dir)?
    } else {
        ruleload::from_git(rules_dir, &args.base)?
    };
    let base_settings = match &args.base_settings {
        Some(p) => Some(ruleload::read_settings(p)?),
        None => settings,
    };
    let base = RuleTexts {
        files: base_files,
        settings: base_settings,
        layers: ruleload::layers(&super::layers(&args.rules))?,
    }
    .compile_shaped("base", shape.as_ref())?;
    let items = corpus::load(&args.corpus)?;
    Ok(dryrun::run(
        &base,
        &current,
        &items,
        dryrun::default_threads(),
    ))
}
