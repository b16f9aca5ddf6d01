//! Carrying out the commands of [`crate::cli`].

mod case;
mod case_shrink;
mod check;
mod demo;
mod diff;
mod emulate;
mod eval;
mod explain;
mod fmt;
mod icml;
mod ops;
mod plan;
mod run;
mod schema;
mod test;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use skladsync_engine::{Diagnostics, RuleSet};

use crate::cli::{ColorChoice, Command, RuleArgs};

/// Runs a command; the exit code follows the command's contract.
pub fn run(command: Command) -> ExitCode {
    match command {
        Command::Check(args) => check::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Icml(args) => icml::run(&args),
        Command::Emulate(args) => emulate::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Functions => {
            print!("{}", skladsync_engine::funcs::reference_markdown());
            ExitCode::SUCCESS
        }
        Command::Test(args) => test::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Fmt(args) => fmt::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Case(crate::cli::CaseCommand::New(args)) => case::new(&args),
        Command::Journal(args) => ops::journal(&args),
        Command::Status(args) => ops::status(&args),
        Command::Relink(args) => ops::relink(&args),
        Command::Completions(args) => ops::completions(&args),
        Command::Man(args) => ops::man(&args),
        Command::Case(crate::cli::CaseCommand::Shrink(args)) => case_shrink::shrink(&args),
    }
}

/// The settings file to use: the one given, else `settings.yaml`, else
/// `settings.example.yaml` in the rules directory.
pub fn settings_path(args: &RuleArgs) -> Option<PathBuf> {
    if let Some(p) = &args.settings {
        return Some(p.clone());
    }
    ["settings.yaml", "settings.example.yaml"]
        .iter()
        .map(|n| args.rules.join(n))
        .find(|p| p.is_file())
}

/// Whether to colour text written to stderr.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    }
}

/// The layers to use: `--layer` when given, else `rules.layers` of the project's
/// `skladsync.yaml` in the working directory (the config `skladsync run` reads), so the
/// tools see the rules the daemon runs.
pub fn layers(args: &RuleArgs) -> Vec<PathBuf> {
    if !args.layers.is_empty() {
        return args.layers.clone();
    }
    let Ok(text) = std::fs::read_to_string("skladsync.yaml") else {
        return Vec::new();
    };
    let Ok(doc) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
        return Vec::new();
    };
    doc.get("rules")
        .and_then(|r| r.get("layers"))
        .and_then(serde_yaml::Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(serde_yaml::Value::as_str)
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Loads the rule set, printing diagnostics to stderr. `None` when it has errors.
pub fn load_rules(args: &RuleArgs) -> Result<(RuleSet, Diagnostics), Diagnostics> {
    let settings = settings_path(args);
    RuleSet::load_layers(&args.rules, &layers(args), settings.as_deref())
}

/// Loads the rule set cases run against: the settings file given, else the rules'
/// documented example settings — never the active `settings.yaml`, so cases mean the same
/// on every installation (they state the settings they need as overrides).
pub fn load_rules_for_cases(args: &RuleArgs) -> Result<(RuleSet, Diagnostics), Diagnostics> {
    let example = args.rules.join("settings.example.yaml");
    let settings = match &args.settings {
        Some(p) => Some(p.clone()),
        None if example.is_file() => Some(example),
        None => settings_path(args),
    };
    RuleSet::load_layers(&args.rules, &layers(args), settings.as_deref())
}

/// Reads a YAML or JSON file into a value.
pub fn read_value(path: &Path) -> Result<skladsync_engine::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
