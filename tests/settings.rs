//! The settings checks of the default rules (spec §21), driven by settings files: every
//! `tests/settings_checks/*.yaml` is laid over `rules/settings.example.yaml` and loaded with
//! `rules/`. Files named `err_*` must be refused with at least one error; the others must
//! load. The rendered diagnostics are the snapshot.

mod common;

use skladsync_engine::{RuleSet, Value};

#[test]
fn settings_checks() {
    let root = common::root();
    let example: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root.join("rules/settings.example.yaml")).expect("example"),
    )
    .expect("example settings");
    let dir = root.join("tests/settings_checks");
    let files = common::files(&dir, &["yaml"]);
    assert!(files.len() >= 8);
    let tmp = tempfile::tempdir().expect("tempdir");
    for file in files {
        let name = common::case_name(&dir, &file);
        let overlay: Value = serde_yaml::from_str(&std::fs::read_to_string(&file).expect("case"))
            .expect("case yaml");
        let merged = skladsync_engine::value::deep_merge(&example, &overlay);
        let settings_path = tmp.path().join("settings.yaml");
        std::fs::write(
            &settings_path,
            serde_yaml::to_string(&merged).expect("yaml"),
        )
        .expect("write");
        let rendered = match RuleSet::load(&root.join("rules"), Some(&settings_path)) {
            Ok((_, warnings)) => {
                assert!(!name.starts_with("err_"), "{name} should be refused");
                warnings.render(false)
            }
            Err(diags) => {
                assert!(
                    name.starts_with("err_"),
                    "{name} should load:\n{}",
                    diags.render(false)
                );
                diags.render(false)
            }
        };
        let rendered = rendered
            .replace(&settings_path.display().to_string(), "settings.yaml")
            .replace(&format!("{}/", root.display()), "");
        if name.starts_with("valid") {
            assert!(rendered.is_empty(), "{name}:\n{rendered}");
        }
        insta::with_settings!({
            snapshot_path => "../snapshots/settings",
            prepend_module_to_snapshot => false,
            omit_expression => true,
        }, {
            insta::assert_snapshot!(name, rendered);
        });
    }
}
