//! Loading rule sets for comparison: the current rules directory, another directory, or
//! the rules directory as it was at a git revision (read with `git ls-tree` and
//! `git cat-file`, no checkout). Both sides name their files as the current directory
//! does, so the same error reads the same on both sides.

use std::path::{Path, PathBuf};
use std::process::Command;

use skladsync_engine::ruleset::settings_shape::SettingsShape;
use skladsync_engine::{Layer, RuleSet};

use super::ToolError;

/// Rule files and the settings text, ready to compile.
#[derive(Debug, Clone, Default)]
pub struct RuleTexts {
    /// (name, text) of every rule file, in the order the engine loads a directory.
    pub files: Vec<(String, String)>,
    /// (name, text) of the settings file.
    pub settings: Option<(String, String)>,
    /// Integrators' layers over the files, in order.
    pub layers: Vec<Layer>,
}

impl RuleTexts {
    /// Compiles the texts; the error carries the rendered diagnostics.
    pub fn compile(&self, what: &str) -> Result<RuleSet, ToolError> {
        self.compile_shaped(what, None)
    }

    /// Compiles the texts, the settings checked against a shape first (see
    /// [`RuleSet::shape_of`]); the error carries the rendered diagnostics.
    pub fn compile_shaped(
        &self,
        what: &str,
        shape: Option<&SettingsShape>,
    ) -> Result<RuleSet, ToolError> {
        let settings = self
            .settings
            .as_ref()
            .map(|(n, t)| (n.as_str(), t.as_str()));
        let mut all = vec![Layer {
            name: String::new(),
            files: self.files.clone(),
        }];
        all.extend(self.layers.iter().cloned());
        RuleSet::from_layers(&all, settings, shape)
            .map(|(set, _warnings)| set)
            .map_err(|d| {
                ToolError::Rules(format!(
                    "the {what} rules do not load:\n{}",
                    d.render(false).trim_end()
                ))
            })
    }
}

/// Whether a file is a rule file, as the engine decides when it loads a directory.
pub fn is_rule_file(rel: &Path) -> bool {
    let hidden = rel
        .components()
        .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    !hidden && (name.ends_with(".yaml") || name.ends_with(".yml")) && !name.starts_with("settings")
}

/// Reads a settings file.
pub fn read_settings(path: &Path) -> Result<(String, String), ToolError> {
    let text = std::fs::read_to_string(path).map_err(|e| ToolError::io(path, e))?;
    Ok((path.display().to_string(), text))
}

/// The rule files of a directory, named as if they were under `name_as`.
pub fn from_dir(dir: &Path, name_as: &Path) -> Result<Vec<(String, String)>, ToolError> {
    let mut rels = Vec::new();
    collect(dir, Path::new(""), &mut rels)?;
    rels.sort();
    rels.into_iter()
        .map(|rel| {
            let path = dir.join(&rel);
            let text = std::fs::read_to_string(&path).map_err(|e| ToolError::io(&path, e))?;
            Ok((name_as.join(&rel).display().to_string(), text))
        })
        .collect()
}

fn collect(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), ToolError> {
    let here = dir.join(rel);
    let entries = std::fs::read_dir(&here).map_err(|e| ToolError::io(&here, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ToolError::io(&here, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let child = rel.join(&name);
        if entry.path().is_dir() {
            collect(dir, &child, out)?;
        } else if is_rule_file(&child) {
            out.push(child);
        }
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, ToolError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| ToolError::Git(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(ToolError::Git(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// The rule files of `rules_dir` as they were at a git revision, named as the current
/// directory names them.
pub fn from_git(rules_dir: &Path, rev: &str) -> Result<Vec<(String, String)>, ToolError> {
    from_git_inner(rules_dir, rev).map_err(|e| {
        ToolError::Git(format!(
            "`{rev}` is neither a directory nor a git revision of {} ({e})",
            rules_dir.display()
        ))
    })
}

fn from_git_inner(rules_dir: &Path, rev: &str) -> Result<Vec<(String, String)>, ToolError> {
    let prefix = String::from_utf8_lossy(&git(rules_dir, &["rev-parse", "--show-prefix"])?)
        .trim()
        .to_owned();
    let top = String::from_utf8_lossy(&git(rules_dir, &["rev-parse", "--show-toplevel"])?)
        .trim()
        .to_owned();
    let top = PathBuf::from(top);
    let commit = format!("{rev}^{{commit}}");
    git(&top, &["rev-parse", "--verify", "--quiet", &commit]).map_err(|_| {
        ToolError::Git(format!("`{rev}` is neither a directory nor a git revision"))
    })?;
    let spec = if prefix.is_empty() {
        ".".to_owned()
    } else {
        prefix.clone()
    };
    let listing = git(
        &top,
        &["ls-tree", "-r", "-z", "--name-only", rev, "--", &spec],
    )?;
    let mut rels: Vec<PathBuf> = listing
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| PathBuf::from(String::from_utf8_lossy(s).into_owned()))
        .filter_map(|p| {
            p.strip_prefix(&prefix)
                .ok()
                .map(Path::to_path_buf)
                .filter(|rel| is_rule_file(rel))
        })
        .collect();
    rels.sort();
    let mut files = Vec::new();
    for rel in rels {
        let object = format!("{rev}:{prefix}{}", rel.display());
        let text = git(&top, &["cat-file", "blob", &object])?;
        let text = String::from_utf8(text)
            .map_err(|_| ToolError::Git(format!("{object} is not UTF-8 text")))?;
        files.push((rules_dir.join(&rel).display().to_string(), text));
    }
    Ok(files)
}

/// The layers given on the command line, read.
pub fn layers(dirs: &[PathBuf]) -> Result<Vec<Layer>, ToolError> {
    dirs.iter()
        .map(|d| {
            Ok(Layer {
                name: d.display().to_string(),
                files: from_dir(d, d)?,
            })
        })
        .collect()
}

/// The shape of the settings of the rules in `rules_dir` (its `settings.example.yaml`).
pub fn shape(rules_dir: &Path) -> Result<Option<SettingsShape>, ToolError> {
    RuleSet::shape_of(rules_dir).map_err(|d| {
        let mut all = skladsync_engine::Diagnostics::default();
        all.push(d);
        ToolError::Rules(all.render(false).trim_end().to_owned())
    })
}
