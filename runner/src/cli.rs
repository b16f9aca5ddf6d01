//! The command line, as clap types only; [`crate::commands`] carries them out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// skladsync keeps a retailCRM account and a МойСклад account in sync, following rules
/// written in YAML.
#[derive(Debug, Parser)]
#[command(name = "skladsync", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load and statically check the rules and settings; exit 1 on any error.
    Check(RuleArgs),
    /// Evaluate one event and print the plan.
    Plan(PlanArgs),
    /// Print the reference of the built-in functions (Markdown).
    Functions,
}

/// Where the rules and settings are.
#[derive(Debug, Args, Clone)]
pub struct RuleArgs {
    /// The rules directory.
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
    /// The settings file [default: RULES/settings.yaml, else RULES/settings.example.yaml].
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Colour diagnostics: auto (on a terminal), always or never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ColorChoice {
    /// On a terminal.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Output formats of plans.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// YAML.
    Yaml,
    /// JSON.
    Json,
}

/// `skladsync plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The event file (YAML or JSON): a map with `event` (its name), optionally `now`, and
    /// the event's fields.
    #[arg(long)]
    pub event: PathBuf,
    /// The recorded world file (YAML or JSON): `entities`, `links`, `reference`.
    #[arg(long)]
    pub world: Option<PathBuf>,
    /// Rules and settings.
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
}
