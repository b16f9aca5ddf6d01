//! The `skladsync` command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = skladsync_runner::cli::Cli::parse();
    skladsync_runner::commands::run(cli.command)
}
