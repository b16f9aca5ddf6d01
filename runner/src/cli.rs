//! The command line, as clap types only; [`crate::commands`] carries them out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// skladsync keeps a retailCRM account and a МойСклад account in sync, following rules
/// written in YAML.
#[derive(Debug, Parser)]
#[command(
    name = "skladsync",
    version,
    about = "skladsync keeps a retailCRM account and a МойСклад account in sync, following rules written in YAML.",
    long_about = None
)]
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
    /// Run the sync daemon: poll CRM history, receive МойСклад webhooks, reconcile, sync
    /// stock, until SIGTERM or Ctrl-C.
    Run(RunArgs),
    /// Generate the ICML catalogue (CAT-02) from МойСклад: categories from product folders,
    /// offers with the xmlIds orders are matched by, written atomically to a file.
    Icml(IcmlArgs),
    /// Run both emulators standalone on loopback with the sample shop (for manual use).
    Emulate(EmulateArgs),
    /// Sync a sample shop between the two emulators with the default rules and print what
    /// happened. No accounts, no network.
    Demo(DemoArgs),
    /// Run rule test cases (event + world + settings overrides + expected plan).
    Test(TestArgs),
    /// Dry-run a rule change: plans of a corpus of events under the base rules and the
    /// current rules, and only what changed. Exit 0: no change, 1: plans differ, 2: error.
    Diff(DiffArgs),
    /// Why each rule fired or did not for one event: conditions and `let`s with values.
    Explain(ExplainArgs),
    /// Format rule files: key order, indentation, expression spacing; comments kept.
    Fmt(FmtArgs),
    /// Regenerate the JSON Schemas of rule files, settings files and case files.
    Schema(SchemaArgs),
    /// Work with test cases (`case new`: a scaffold).
    #[command(subcommand)]
    Case(CaseCommand),
    /// Evaluate one expression as a rule listening to the event would, and print its value.
    Eval(EvalArgs),
    /// Show the journal (oldest first; --follow: new entries as they come), from the state
    /// directory or, while the daemon runs, from the daemon.
    Journal(JournalArgs),
    /// Show waiting and parked work, cursors, links, counters and the rules version.
    Status(StatusArgs),
    /// Rebuild the link store from both systems by keys and external codes; prints what it
    /// changes (with --dry-run, only prints). The daemon must be stopped.
    Relink(RelinkArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory.
    Man(ManArgs),
}

/// Where the operator commands read: the config's state directory, or the running daemon.
#[derive(Debug, Args, Clone)]
pub struct TargetArgs {
    /// The runner's config file (only `state.path` and `journal:` are read; no credentials
    /// needed).
    #[arg(long, default_value = "skladsync.yaml")]
    pub config: PathBuf,
    /// The state directory (instead of the config's `state.path`).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Read from a running daemon at this URL (`http://HOST:PORT/status/<secret>`). Without
    /// it, the state directory is read; while a daemon holds it, the address the daemon
    /// wrote beside it (`<state>.daemon.json`) is used.
    #[arg(
        long,
        value_name = "URL",
        env = "SKLADSYNC_STATUS_URL",
        hide_env_values = true
    )]
    pub status_url: Option<String>,
    /// The account pair to read, in a runner that serves many (`pairs:` in its config);
    /// `default` is the pair of a single-pair config.
    #[arg(long, value_name = "ID", default_value = "default")]
    pub pair: String,
}

/// Journal levels, least serious first.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Everything.
    Info,
    /// Warnings and errors.
    Warning,
    /// Errors only.
    Error,
}

/// `skladsync journal`.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Where to read.
    #[command(flatten)]
    pub target: TargetArgs,
    /// Keep printing new and repeated entries as they are written (until Ctrl-C).
    #[arg(long, short)]
    pub follow: bool,
    /// How often --follow looks, in seconds.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub interval: f64,
    /// Only entries at least this serious.
    #[arg(long, value_enum)]
    pub level: Option<Level>,
    /// Only entries with this code (e.g. STORE_NOT_MAPPED; repeatable).
    #[arg(long)]
    pub code: Vec<String>,
    /// Only entries whose subject mentions this text (an order number, an id…).
    #[arg(long)]
    pub subject: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// `skladsync status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Where to read.
    #[command(flatten)]
    pub target: TargetArgs,
    /// The whole status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `skladsync relink`.
#[derive(Debug, Args)]
pub struct RelinkArgs {
    /// The runner's config file (both systems' credentials, the state directory).
    #[arg(long, default_value = "skladsync.yaml")]
    pub config: PathBuf,
    /// Only print what would be added, changed and removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the changes as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `skladsync completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `skladsync man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `skladsync.1` and one `skladsync-<command>.1` per command into this directory
    /// instead of printing `skladsync.1`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `skladsync case …`.
#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// Write a new case file: the schema modeline, a doc line, the event with its declared
    /// fields to fill in, includes, an empty world; `skladsync test --update` records its
    /// plan.
    New(CaseNewArgs),
    /// Rewrite cases to state only what differs from the fragments they include: the event
    /// keeps the keys whose values differ from the included event (deep per map key, lists
    /// whole), the world drops rows the fragments already hold. A case is rewritten only
    /// when it evaluates to the same plan (or error) afterwards, read back from disk.
    Shrink(CaseShrinkArgs),
}

/// `skladsync case shrink`.
#[derive(Debug, Args)]
pub struct CaseShrinkArgs {
    /// Case files or folders of cases (`*.yaml`, walked).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Report what would shrink and write nothing; exit 1 when anything would.
    #[arg(long)]
    pub check: bool,
    /// Also gather what most of the given cases of one fragment (last in their `include:`)
    /// share — event keys and values, world rows — into a new fragment beside it,
    /// `NAME.common.yaml`, which includes it; the cases that keep their plan over it include
    /// it instead and shrink further. Skipped when that file exists.
    #[arg(long)]
    pub base: bool,
    /// Rules and settings the cases are evaluated with (as for `skladsync test`).
    #[command(flatten)]
    pub rules: RuleArgs,
}

/// `skladsync case new`.
#[derive(Debug, Args)]
pub struct CaseNewArgs {
    /// The case file to write (refused when it exists).
    pub path: PathBuf,
    /// The event (a declared event's name).
    #[arg(long, required_unless_present = "from")]
    pub event: Option<String>,
    /// Make the case from one line of a recording (`record:` in the config): `FILE:LINE`,
    /// or `FILE` for its first line. The case keeps the event, what the systems answered and
    /// the plan the daemon made (as `expect:`).
    #[arg(long, conflicts_with_all = ["event", "include"])]
    pub from: Option<String>,
    /// Shared fragments to include (paths relative to the case file), e.g.
    /// `../worlds/shop.yaml`.
    #[arg(long)]
    pub include: Vec<String>,
    /// Rules and settings (to know the event and its fields).
    #[command(flatten)]
    pub rules: RuleArgs,
}

/// `skladsync eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The expression, e.g. 'order.items | map(i => i.offer.xmlId)'.
    pub expression: String,
    /// The event file (as for `plan`) or a case file (its world and settings overrides are
    /// used too).
    #[arg(long)]
    pub event: PathBuf,
    /// The recorded world file (answers `lookup` and the other world functions).
    #[arg(long)]
    pub world: Option<PathBuf>,
    /// Rules and settings (the rule set's functions and settings are in scope).
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
}

/// `skladsync test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The cases directory (or one case file).
    #[arg(default_value = "tests/cases")]
    pub dir: PathBuf,
    /// Rules and settings.
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Where the expected plans of cases without `expect:` are (insta snapshots,
    /// `<name>.snap`, the name being the case's path with `/` written `__`).
    #[arg(long, default_value = "snapshots/rules")]
    pub snapshots: PathBuf,
    /// Write the actual plans as the expected ones (the case's `expect:`, or its snapshot).
    #[arg(long)]
    pub update: bool,
    /// Report coverage: per rule whether it fired, per condition (of rules and flows)
    /// whether it was seen true and false.
    #[arg(long)]
    pub coverage: bool,
    /// Fail when coverage is below N percent. Coverage counts one point per rule that
    /// fired and one per condition seen true and one per condition seen false (a flow's
    /// conditions once); it is covered points / all points × 100. Implies --coverage.
    #[arg(long, value_name = "N")]
    pub min_coverage: Option<f64>,
}

/// Output formats of reports.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    /// Text for people (coloured on a terminal).
    Text,
    /// JSON for machines.
    Json,
}

/// `skladsync diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The base rules: another rules directory, or a git revision (the rules directory as
    /// it was then, read with git, no checkout).
    #[arg(long, value_name = "REV_OR_DIR")]
    pub base: String,
    /// The events: a directory of cases (event + world), recorded events or `.jsonl` files.
    #[arg(long, default_value = "tests/cases")]
    pub corpus: PathBuf,
    /// The current rules and settings (the settings are used on both sides unless
    /// --base-settings is given).
    #[command(flatten)]
    pub rules: RuleArgs,
    /// A settings file for the base rules.
    #[arg(long)]
    pub base_settings: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

/// `skladsync explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The event file, as for `plan`; a case file (event + world + settings) works too.
    #[arg(long)]
    pub event: PathBuf,
    /// The recorded world file.
    #[arg(long)]
    pub world: Option<PathBuf>,
    /// Only this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Rules and settings.
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

/// `skladsync fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Rule files or directories [default: rules].
    pub paths: Vec<PathBuf>,
    /// Change nothing; list the files that are not formatted and exit 1 if there are any.
    #[arg(long)]
    pub check: bool,
}

/// `skladsync schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The rules directory; the settings schema is made from its settings.example.yaml.
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
    /// The documented settings file the settings schema is made from
    /// [default: RULES/settings.example.yaml].
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Where to write rules.schema.json and settings.schema.json.
    #[arg(long, default_value = "schema")]
    pub out: PathBuf,
    /// Write nothing; exit 1 when the files there are not what would be written.
    #[arg(long)]
    pub check: bool,
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
    /// An integrator's rules directory laid over the rules (repeatable, in order): it adds
    /// rules, replaces a rule by id or a function or flow by name, and `disable:`s rules.
    /// Default: `rules.layers` of `./skladsync.yaml` (the config `run` reads), if any.
    #[arg(long = "layer", value_name = "DIR")]
    pub layers: Vec<PathBuf>,
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
    #[arg(long, required_unless_present = "live")]
    pub event: Option<PathBuf>,
    /// A read-only dry run against the live accounts: what the rules would do with the CRM
    /// order `--order N` as it is now (lookups answered by the real APIs and the state;
    /// nothing written to either system). Through the running daemon when there is one,
    /// else with the config's credentials and state.
    #[arg(long, requires = "order", conflicts_with_all = ["event", "world"])]
    pub live: bool,
    /// The CRM order id (`--live`).
    #[arg(long)]
    pub order: Option<i64>,
    /// The runner's config (`--live`).
    #[arg(long, default_value = "skladsync.yaml")]
    pub config: PathBuf,
    /// The recorded world file (YAML or JSON): `entities`, `links`, `reference`.
    #[arg(long)]
    pub world: Option<PathBuf>,
    /// Rules and settings.
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// Also print, on stderr, the evaluation steps and the time each rule took (the rules
    /// that listen to the event), dearest first. The time is that of `N` evaluations
    /// (default 100) divided by `N`, so a single slow first run does not mislead.
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "100", conflicts_with = "live")]
    pub timings: Option<u32>,
}

/// `skladsync icml`. Options given here override the config's `icml:` section.
#[derive(Debug, Args)]
#[command(
    after_help = "Offers: products without variants (xmlId = externalCode), variants \
(xmlId = productExternalCode#variantExternalCode), services (type=\"service\") and bundles, \
as the order rules match them (CAT-01). Goods whose codes the rules could not match back \
are left out and counted. The assortment is read page by page and written as it comes, \
so memory does not grow with the catalogue."
)]
pub struct IcmlArgs {
    /// The runner's config file: МойСклад credentials and the `icml:` section.
    #[arg(long)]
    pub config: PathBuf,
    /// The file to write (default: `icml.path` of the config). Written beside it, then
    /// renamed over it.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Sale price type (name, externalCode or id) [default: the first sale price].
    #[arg(long, value_name = "TYPE")]
    pub price_type: Option<String>,
    /// Also write purchase prices (`buyPrice`).
    #[arg(long)]
    pub purchase_price: bool,
    /// Include archived goods and folders (archived offers get productActivity N).
    #[arg(long)]
    pub include_archived: bool,
    /// Leave out a folder (id or externalCode) and everything under it; repeatable.
    #[arg(long = "ignore-category", value_name = "FOLDER")]
    pub ignore_categories: Vec<String>,
    /// Leave out goods outside any folder (else they go to category `warehouseRoot`).
    #[arg(long)]
    pub skip_without_category: bool,
    /// Leave out services.
    #[arg(long)]
    pub no_services: bool,
    /// Leave out bundles.
    #[arg(long)]
    pub no_bundles: bool,
    /// Offer quantity: quantity (stock − reserve + in transit), free_stock, stock, or none.
    #[arg(long, value_name = "KIND")]
    pub stock: Option<String>,
    /// Offer URL template: {externalCode}, {productExternalCode}, {code}, {article}, {id}
    /// [default: the item's card in МойСклад].
    #[arg(long, value_name = "TEMPLATE")]
    pub url_template: Option<String>,
    /// Product attribute (name) holding a public picture URL.
    #[arg(long, value_name = "ATTRIBUTE")]
    pub picture_attribute: Option<String>,
    /// Product attribute (name) with the dimensions in cm; give one (L/W/H in one value)
    /// or three (length, width, height).
    #[arg(long = "dimension-attribute", value_name = "ATTRIBUTE")]
    pub dimension_attributes: Vec<String>,
    /// `<shop><name>`.
    #[arg(long)]
    pub shop_name: Option<String>,
}

/// `skladsync run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The runner's config file (YAML; see docs/runner.md).
    #[arg(long)]
    pub config: PathBuf,
    /// Take over the МойСклад webhook registrations of another runner instance (one whose
    /// state directory is gone for good); same as `receiver.take_over: true`.
    #[arg(long)]
    pub take_over: bool,
    /// Log format on stderr: text, or json (one object per line, for a log collector).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SKLADSYNC_LOG_FORMAT")]
    pub log_format: LogFormat,
}

/// How the daemon logs.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Lines for people (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// `skladsync emulate`.
#[derive(Debug, Args)]
pub struct EmulateArgs {
    /// Start the emulators empty instead of with the sample shop.
    #[arg(long)]
    pub empty: bool,
    /// Write a runner config for the emulators to this file (rules from --rules).
    #[arg(long)]
    pub write_config: Option<PathBuf>,
    /// The rules directory the written config points at.
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
}

/// `skladsync demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The rules directory (the default rules).
    #[arg(long, default_value = "rules")]
    pub rules: PathBuf,
    /// A settings template for the demo shop (placeholders `{{org}}`, `{{store.<code>}}`,
    /// `{{state.<status>}}`, …) merged over the rules' example settings [default: the
    /// built-in demo settings].
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Keep the demo's files (settings, config, state) in this directory.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Record every evaluation into this directory (`record:`, docs/runner.md): replay it
    /// with `skladsync test DIR` or `skladsync diff --corpus DIR`.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Print the runner's log too.
    #[arg(long)]
    pub verbose: bool,
}
