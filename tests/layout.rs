//! Architecture guards: the engine stays a pure, domain-free library.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn engine_depends_on_no_io_crates() {
    let manifest = fs::read_to_string(root().join("engine/Cargo.toml")).expect("engine manifest");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("engine has a [dependencies] table");
    for banned in ["tokio", "reqwest", "sled", "clap", "axum", "hyper"] {
        assert!(
            !deps
                .lines()
                .any(|line| line.trim_start().starts_with(banned)),
            "engine/Cargo.toml depends on {banned}"
        );
    }
}

#[test]
fn engine_has_no_domain_names() {
    let mut files = Vec::new();
    files_under(&root().join("engine"), &mut files);
    files_under(&root().join("grammar"), &mut files);
    assert!(!files.is_empty());
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let lower = text.to_lowercase();
        for name in [
            "retailcrm",
            "moysklad",
            "мойсклад",
            "customerorder",
            "counterparty",
        ] {
            assert!(
                !lower.contains(name),
                "{} mentions the domain name {name:?}",
                file.display()
            );
        }
    }
}

#[test]
fn every_grammar_rule_the_engine_matches_on_is_documented() {
    let grammar = fs::read_to_string(root().join("grammar/expr.pest")).expect("grammar");
    let mut prev = "";
    let mut undocumented = Vec::new();
    for line in grammar.lines() {
        let is_rule = line.split_once('=').is_some_and(|(name, rest)| {
            !name.trim().is_empty()
                && name
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && matches!(rest.trim_start().chars().next(), Some('{' | '@' | '$'))
        });
        if is_rule && !prev.starts_with("///") {
            undocumented.push(line.split('=').next().unwrap_or("").trim().to_owned());
        }
        prev = line;
    }
    assert!(
        undocumented.is_empty(),
        "grammar rules without a /// doc: {undocumented:?}"
    );
}
