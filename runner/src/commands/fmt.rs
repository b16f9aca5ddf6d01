//! `skladsync fmt`: format rule files, or check that they are formatted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::FmtArgs;
use crate::tooling::fmt::{self, ctx::Ctx};
use crate::tooling::ruleload::is_rule_file;
use crate::tooling::{files_with, ToolError};

/// The files to format: rule files under each directory; files given by name as they are.
fn targets(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ToolError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            for f in files_with(p, &["yaml", "yml"])? {
                let rel = f.strip_prefix(p).unwrap_or(&f);
                if is_rule_file(rel) {
                    out.push(f);
                }
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn is_settings(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("settings"))
}

/// Exit 0 when every file is (now) formatted; 1 when `--check` finds unformatted files or
/// a file cannot be formatted.
pub fn run(args: &FmtArgs) -> ExitCode {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("rules")]
    } else {
        args.paths.clone()
    };
    let files = match targets(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut failed = false;
    let mut unformatted = 0;
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                failed = true;
                continue;
            }
        };
        let root = if is_settings(&path) {
            Ctx::Text
        } else {
            Ctx::File
        };
        let out = match fmt::format_as(&text, root) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: {}: {e}; left as it is", path.display());
                failed = true;
                continue;
            }
        };
        if out == text {
            continue;
        }
        unformatted += 1;
        if args.check {
            println!("{}", path.display());
        } else if let Err(e) = std::fs::write(&path, out) {
            eprintln!("error: {}: {e}", path.display());
            failed = true;
        } else {
            println!("formatted {}", path.display());
        }
    }
    if args.check && unformatted > 0 {
        eprintln!("{unformatted} file(s) not formatted; `skladsync fmt` formats them");
        failed = true;
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
