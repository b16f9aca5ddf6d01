//! Helpers of the tooling CLI tests: the real binary, run in a temporary copy of a small
//! rule set (the repository's `tests/examples/shop`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("runner/ has a parent")
        .to_path_buf()
}

/// Runs `skladsync` in `dir`: (exit code, stdout, stderr).
pub fn skladsync(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skladsync"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A temporary copy of the shop example: `rules/` (with `settings.yaml`), `cases/`, and
/// `snaps/` holding the example's insta snapshots under the names `skladsync test` looks
/// for (the case name, without the `shop__` prefix the repository's test adds).
pub fn shop() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = root().join("tests/examples/shop");
    copy_dir(&src.join("rules"), &dir.path().join("rules"));
    copy_dir(&src.join("cases"), &dir.path().join("cases"));
    let snaps = dir.path().join("snaps");
    std::fs::create_dir_all(&snaps).expect("snaps");
    for entry in std::fs::read_dir(root().join("snapshots/examples")).expect("snapshots") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("shop__") {
            std::fs::copy(entry.path(), snaps.join(rest)).expect("copy snapshot");
        }
    }
    dir
}

/// Replaces text in a file, which must contain it.
pub fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

/// Snapshots CLI output under `snapshots/cli`, with the temporary directory hidden.
pub fn snapshot(name: &str, text: &str, dir: &Path) {
    let shown = text.replace(&dir.display().to_string(), "[TMP]");
    insta::with_settings!({
        snapshot_path => "../../../snapshots/cli",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, shown);
    });
}
