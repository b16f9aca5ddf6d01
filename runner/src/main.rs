//! The `skladsync` command.

use clap::Parser;

/// mimalloc: rule evaluation builds many small objects; it allocates them faster than the
/// system allocator (measured by the engine benchmark).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = skladsync_runner::cli::Cli::parse();
    skladsync_runner::commands::run(cli.command)
}
