//! Broken rule files and their rendered diagnostics: every `tests/diagnostics/*.yaml` is
//! loaded with `tests/diagnostics/settings.yaml`; `err_*` files must produce at least one
//! error, the others must load (warnings allowed). The rendering is the snapshot.

mod common;

use skladsync_engine::RuleSet;

#[test]
fn diagnostic_cases() {
    let dir = common::root().join("tests/diagnostics");
    let settings = std::fs::read_to_string(dir.join("settings.yaml")).expect("settings");
    let files: Vec<_> = common::files(&dir, &["yaml"])
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "settings.yaml"))
        .collect();
    assert!(files.len() >= 20);
    for file in files {
        let name = common::case_name(&dir, &file);
        let text = std::fs::read_to_string(&file).expect("readable case");
        let display = format!("tests/diagnostics/{name}.yaml");
        let result = RuleSet::from_texts(
            &[(display, text)],
            Some(("tests/diagnostics/settings.yaml", &settings)),
        );
        let rendered = match result {
            Ok((_, warnings)) => {
                assert!(!name.starts_with("err_"), "{name} should not load");
                warnings.render(false)
            }
            Err(diags) => {
                assert!(
                    name.starts_with("err_"),
                    "{name} should load:\n{}",
                    diags.render(false)
                );
                assert!(diags.has_errors());
                diags.render(false)
            }
        };
        insta::with_settings!({
            snapshot_path => "../snapshots/diagnostics",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, rendered);
        });
    }
}

/// A broken file is reported first and only. A tab in `rules/common.yaml` (which defines
/// functions and flows the other files use) is one error, in that file, with advice about
/// tabs — not errors in the files that use what it defines ("unknown function", "defined
/// further down") nor advice about quoting.
#[test]
fn a_broken_file_is_reported_alone() {
    let root = common::root();
    let rules = root.join("rules");
    let mut files: Vec<(String, String)> = common::files(&rules, &["yaml"])
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with("settings"))
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("rule file");
            (p.display().to_string(), text)
        })
        .collect();
    files.sort();
    let common_file = files
        .iter_mut()
        .find(|(n, _)| n.ends_with("rules/common.yaml"))
        .expect("rules/common.yaml");
    let at = common_file.1.find("\n  ").expect("an indented line") + 1;
    common_file.1.replace_range(at..at + 2, "\t");
    let common_name = common_file.0.clone();
    let settings = std::fs::read_to_string(rules.join("settings.example.yaml")).expect("settings");
    let diags = match RuleSet::from_texts(&files, Some(("settings.example.yaml", &settings))) {
        Ok(_) => panic!("a tab must not load"),
        Err(d) => d,
    };
    let rendered = diags.render(false);
    assert_eq!(diags.items.len(), 1, "{rendered}");
    assert_eq!(
        diags.items[0]
            .location
            .as_ref()
            .map(|l| l.file.name.clone()),
        Some(common_name),
        "{rendered}"
    );
    assert!(rendered.contains("tab"), "{rendered}");
    assert!(!rendered.contains("quote an expression"), "{rendered}");
}

/// A misspelt path into an event's document in a shipped rule is a warning with the right
/// suggestion, from the shapes the shipped events declare (rules/shapes.yaml for the CRM
/// order, rules/shapes_moysklad.yaml for МойСклад entities).
#[test]
fn a_misspelt_event_path_in_the_shipped_rules_is_a_warning() {
    let root = common::root();
    let rules = root.join("rules");
    let files: Vec<(String, String)> = {
        let mut f: Vec<(String, String)> = common::files(&rules, &["yaml"])
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| !n.to_string_lossy().starts_with("settings"))
            })
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("rule file");
                (p.display().to_string(), text)
            })
            .collect();
        f.sort();
        f
    };
    let settings = std::fs::read_to_string(rules.join("settings.example.yaml")).expect("settings");
    for (file, from, to, help) in [
        (
            "crm_to_ms/20_upload.yaml",
            "order.shipmentStore",
            "order.shipmentStor",
            "help: did you mean `order.shipmentStore`?",
        ),
        (
            "ms_to_crm/shipments.yaml",
            "entity.customerOrder",
            "entity.customerOrdr",
            "help: did you mean `entity.customerOrder`?",
        ),
    ] {
        let mut edited = files.clone();
        let target = edited
            .iter_mut()
            .find(|(n, t)| n.ends_with(file) && t.contains(from))
            .unwrap_or_else(|| panic!("rules/{file} reads {from}"));
        target.1 = target.1.replacen(from, to, 1);
        let (_, warnings) =
            RuleSet::from_texts(&edited, Some(("settings.example.yaml", &settings)))
                .unwrap_or_else(|d| panic!("{}", d.render(false)));
        let rendered = warnings.render(false);
        assert_eq!(warnings.items.len(), 1, "{rendered}");
        assert_eq!(warnings.items[0].code, "E215", "{rendered}");
        assert!(rendered.contains(help), "{rendered}");
    }
}
