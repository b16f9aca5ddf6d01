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
