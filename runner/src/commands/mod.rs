//! Carrying out the commands of [`crate::cli`].

mod check;
mod demo;
mod diff;
mod emulate;
mod explain;
mod fmt;
mod icml;
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

/// Loads the rule set, printing diagnostics to stderr. `None` when it has errors.
pub fn load_rules(args: &RuleArgs) -> Result<(RuleSet, Diagnostics), Diagnostics> {
    let settings = settings_path(args);
    RuleSet::load(&args.rules, settings.as_deref())
}

/// Reads a YAML or JSON file into a value.
pub fn read_value(path: &Path) -> Result<skladsync_engine::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
