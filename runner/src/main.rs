//! The `skladsync` command.

use clap::Parser;

/// mimalloc: rule evaluation builds many small objects; it allocates them faster than the
/// system allocator (measured by the engine benchmark).
/// (The `system-allocator` feature leaves it out, for heap profilers.)
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options that keep the resident memory close to what is in use (measured by the
/// backlog benchmark's `footprint` run, docs/runner.md "Footprint"): freed pages go back to the
/// OS at once (`purge_delay` 0, default 10 ms, which in practice kept them) and arenas are not
/// committed ahead of use (`arena_eager_commit` 0). Idle 80.6 → 31.1 MB, a 20 000-offer stock
/// pass 257 → 160 MB, idle after it 364 → 118 MB.
const ALLOCATOR_OPTIONS: &[(&str, &str)] = &[
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// mimalloc reads its options from the environment once, before `main`: when one of
/// [`ALLOCATOR_OPTIONS`] is not set, the process starts itself again (same pid, arguments and
/// open files) with it set. An operator's own `MIMALLOC_…` values are kept. If that exec fails
/// the command runs with mimalloc's defaults.
#[cfg(target_os = "linux")]
fn allocator_options() {
    use std::os::unix::process::CommandExt;
    let missing: Vec<_> = ALLOCATOR_OPTIONS
        .iter()
        .filter(|(k, _)| std::env::var_os(k).is_none())
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "skladsync".into());
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg0(argv0).args(args);
    for (k, v) in missing {
        cmd.env(k, v);
    }
    // Returns only if the exec failed.
    let _ = cmd.exec();
}

#[cfg(not(target_os = "linux"))]
fn allocator_options() {}

fn main() -> std::process::ExitCode {
    allocator_options();
    let cli = skladsync_runner::cli::Cli::parse();
    skladsync_runner::commands::run(cli.command)
}
