//! The version of the rules in use: a content hash of every rule file (by its path under the
//! rules directory), of the settings file and of the evaluation limits. Parked work waits for
//! it to change.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn rule_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rule_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// The first 16 hex digits of a SHA-256 over the rule files and the settings file. Files
/// that cannot be read count as empty (the rules loaded a moment ago: this only labels them).
pub fn rules_version(rules_dir: &Path, settings: Option<&Path>, limits: &str) -> String {
    let mut files = Vec::new();
    rule_files(rules_dir, &mut files);
    files.sort();
    let mut h = Sha256::new();
    for f in &files {
        let rel = f.strip_prefix(rules_dir).unwrap_or(f);
        h.update(rel.to_string_lossy().as_bytes());
        h.update([0]);
        h.update(std::fs::read(f).unwrap_or_default());
        h.update([0]);
    }
    h.update(b"settings\0");
    if let Some(s) = settings {
        h.update(std::fs::read(s).unwrap_or_default());
    }
    h.update(b"\0limits\0");
    h.update(limits.as_bytes());
    let digest = h.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_rule_or_setting_changes_the_version() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.yaml"), "rules: []\n").unwrap();
        let settings = dir.path().join("settings.yaml");
        std::fs::write(&settings, "x: 1\n").unwrap();
        let v1 = rules_version(dir.path(), Some(&settings), "l");
        assert_eq!(v1, rules_version(dir.path(), Some(&settings), "l"));
        assert_eq!(v1.len(), 16);
        std::fs::write(dir.path().join("sub/a.yaml"), "rules: [] # edited\n").unwrap();
        let v2 = rules_version(dir.path(), Some(&settings), "l");
        assert_ne!(v1, v2);
        std::fs::write(&settings, "x: 2\n").unwrap();
        let v3 = rules_version(dir.path(), Some(&settings), "l");
        assert_ne!(v2, v3);
        assert_ne!(v3, rules_version(dir.path(), Some(&settings), "m"));
    }
}
