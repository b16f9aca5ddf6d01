//! Integrator tooling: what `skladsync test`, `diff`, `explain`, `fmt` and `schema` are
//! built from. Everything here is domain-free: it reads rule sets, cases and plans through
//! the engine's public API and knows no business names.

pub mod corpus;
pub mod coverage;
pub mod dryrun;
pub mod fmt;
pub mod paint;
pub mod plandiff;
pub mod ruleload;
pub mod schema;
pub mod testing;

use std::path::PathBuf;

/// Why a tooling step could not run at all (as opposed to finding a difference).
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A file or directory could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A file is not what it should be.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The rules could not be loaded; the diagnostics are rendered.
    #[error("{0}")]
    Rules(String),
    /// git could not give the base revision.
    #[error("{0}")]
    Git(String),
}

impl ToolError {
    /// An I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> ToolError {
        ToolError::Io {
            path: path.into(),
            message: e.to_string(),
        }
    }

    /// An invalid file.
    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> ToolError {
        ToolError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Files under `dir` (recursively, hidden entries skipped) whose name ends with one of
/// `exts`, sorted as paths.
pub fn files_with(dir: &std::path::Path, exts: &[&str]) -> Result<Vec<PathBuf>, ToolError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| ToolError::io(&d, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ToolError::io(&d, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if exts.iter().any(|x| name.ends_with(&format!(".{x}"))) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A stable name from a path relative to a base directory: `a/b/c.yaml` → `a__b__c`
/// (the name insta gives the case's snapshot).
pub fn case_name(base: &std::path::Path, file: &std::path::Path) -> String {
    let rel = file.strip_prefix(base).unwrap_or(file);
    let rel = rel.with_extension("");
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("__")
}
