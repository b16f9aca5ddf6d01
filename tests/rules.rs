//! The default rule set against its cases.
//!
//! - `rules/` with `rules/settings.example.yaml` loads without a single diagnostic;
//! - every case under `tests/cases/**.yaml` (an event, a world, settings overrides) gives a
//!   plan, snapshotted in `snapshots/rules/` under the case's path (`area__ID_name`);
//! - every row of the table in `docs/behaviours.md` names rules that exist and cases that
//!   exist, and a case name starts with its requirement id.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use skladsync_engine::{Case, RuleSet};

fn load_default_rules() -> RuleSet {
    let root = common::root();
    let (rules, warnings) = RuleSet::load(
        &root.join("rules"),
        Some(&root.join("rules/settings.example.yaml")),
    )
    .unwrap_or_else(|d| panic!("the default rules do not load:\n{}", d.render(false)));
    assert!(
        warnings.is_empty(),
        "the default rules load with warnings:\n{}",
        warnings.render(false)
    );
    rules
}

fn case_files() -> (PathBuf, Vec<PathBuf>) {
    let dir = common::root().join("tests/cases");
    let files = common::files(&dir, &["yaml"]);
    (dir, files)
}

#[test]
fn default_rules_load_clean() {
    let rules = load_default_rules();
    assert!(rules.events().count() > 0);
}

#[test]
fn cases() {
    let rules = load_default_rules();
    let (dir, files) = case_files();
    for path in files {
        let name = common::case_name(&dir, &path);
        let case = Case::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let rendered = match case.run(&rules) {
            Ok(plan) => {
                let again = case.run(&rules).expect("second run");
                assert_eq!(
                    plan.to_json(),
                    again.to_json(),
                    "{name}: plan is not deterministic"
                );
                plan.to_yaml()
            }
            Err(e) => format!("!!! evaluation error: {e}\n"),
        };
        insta::with_settings!({
            snapshot_path => "../snapshots/rules",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => case.doc.clone().unwrap_or_default(),
        }, {
            insta::assert_snapshot!(name, rendered);
        });
    }
}

/// Rows of the first table of `docs/behaviours.md` with an id in the first column.
fn behaviour_rows(path: &Path) -> Vec<Vec<String>> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|cells| {
            cells.first().is_some_and(|c| {
                let id = c.trim_matches('`');
                id.contains('-')
                    && id.chars().any(|ch| ch.is_ascii_uppercase())
                    && id
                        .chars()
                        .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '-')
            })
        })
        .collect()
}

fn listed(cell: &str) -> Vec<String> {
    cell.split([',', ' '])
        .map(|s| s.trim().trim_matches('`').to_owned())
        .filter(|s| !s.is_empty() && s != "—" && s != "-")
        .collect()
}

#[test]
fn behaviours_table_points_at_real_rules_and_cases() {
    let root = common::root();
    let doc = root.join("docs/behaviours.md");
    let rows = behaviour_rows(&doc);
    if !doc.is_file() {
        return;
    }
    let rules = load_default_rules();
    let rule_ids: HashSet<String> = rules.rules().into_iter().map(|r| r.id).collect();
    let flow_names: HashSet<String> = rules.flows().into_iter().map(|f| f.name).collect();
    let (dir, files) = case_files();
    let cases: HashSet<String> = files
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let _ = dir;
    let mut problems = Vec::new();
    for row in rows {
        let id = row[0].trim_matches('`').to_owned();
        let (Some(rules_cell), Some(cases_cell)) = (row.get(2), row.get(3)) else {
            problems.push(format!(
                "{id}: the row needs the columns Id | Direction | Rules | Cases"
            ));
            continue;
        };
        let listed_rules = listed(rules_cell);
        if listed_rules.is_empty() {
            problems.push(format!("{id}: no rule listed"));
        }
        for r in &listed_rules {
            if !rule_ids.contains(r)
                && !flow_names.contains(r)
                && !r.starts_with("check:")
                && !r.starts_with("runner:")
            {
                problems.push(format!("{id}: rule or flow `{r}` does not exist"));
            }
        }
        let listed_cases = listed(cases_cell);
        if listed_cases.is_empty() {
            problems.push(format!("{id}: no case"));
        }
        for c in &listed_cases {
            if !cases.contains(c) {
                problems.push(format!("{id}: case `{c}` does not exist under tests/cases"));
            } else if !c.starts_with(&id) {
                problems.push(format!(
                    "{id}: case `{c}` is not named after the requirement"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/behaviours.md:\n{}",
        problems.join("\n")
    );
}
