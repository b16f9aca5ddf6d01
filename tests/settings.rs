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

/// The settings file an integrator writes: the example with one edit. `shopz:` for `shops:`
/// is one error, in the settings file at the key, suggesting `shops` — not errors in the
/// rule files that read `settings.mappings.shops`. A text for a boolean and a text for a
/// list are refused at their own line and column.
#[test]
fn settings_are_checked_before_the_rules() {
    let root = common::root();
    let example = std::fs::read_to_string(root.join("rules/settings.example.yaml"))
        .expect("example settings");
    let tmp = tempfile::tempdir().expect("tempdir");
    let load = |from: &str, to: &str| {
        assert!(example.contains(from), "the example has no `{from}`");
        let path = tmp.path().join("settings.yaml");
        std::fs::write(&path, example.replacen(from, to, 1)).expect("write");
        let line = example[..example.find(from).expect("found")]
            .matches('\n')
            .count()
            + 1;
        let diags = match RuleSet::load(&root.join("rules"), Some(&path)) {
            Ok(_) => panic!("`{to}` should be refused"),
            Err(d) => d,
        };
        let rendered = diags.render(false);
        assert_eq!(diags.items.len(), 1, "one error for `{to}`:\n{rendered}");
        let d = &diags.items[0];
        let (at_line, _) = d
            .location
            .as_ref()
            .map(|l| l.file.line_col(l.start))
            .expect("a location");
        assert_eq!(
            d.location.as_ref().map(|l| l.file.name.clone()),
            Some(path.display().to_string()),
            "{rendered}"
        );
        assert_eq!(at_line, line, "{rendered}");
        rendered
    };
    let r = load("  shops: {}", "  shopz: {}");
    assert!(r.contains("unknown setting `mappings.shopz`"), "{r}");
    assert!(r.contains("did you mean `shops`?"), "{r}");
    let r = load(
        "  delivery_as_position: false",
        "  delivery_as_position: \"no\"",
    );
    assert!(
        r.contains("`crm_tab.delivery_as_position` must be a boolean"),
        "{r}"
    );
    let r = load("  upload_statuses: []", "  upload_statuses: new");
    assert!(
        r.contains("`mappings.upload_statuses` must be a list"),
        "{r}"
    );
    assert!(r.contains("`[new]`"), "{r}");
}

/// A case's settings overrides are held to the same shape: a text for a boolean in a case
/// fails the case instead of quietly turning the setting on.
#[test]
fn case_overrides_are_checked_too() {
    let root = common::root();
    let (rules, _) = RuleSet::load(
        &root.join("rules"),
        Some(&root.join("rules/settings.example.yaml")),
    )
    .unwrap_or_else(|d| panic!("{}", d.render(false)));
    let case = |settings: &str| {
        skladsync_engine::Case::from_yaml(&format!(
            "event: {{event: crm.order.changed, order: {{id: 1}}}}\nsettings: {settings}\n"
        ))
        .expect("a case")
    };
    let err = case("{crm_tab: {delivery_as_position: \"no\"}}")
        .run(&rules)
        .expect_err("a text for a boolean");
    assert!(
        err.message
            .contains("`crm_tab.delivery_as_position` must be a boolean"),
        "{err}"
    );
    let err = case("{mappings: {shopz: {a: b}}}")
        .run(&rules)
        .expect_err("an unknown key");
    assert!(err.message.contains("did you mean `shops`?"), "{err}");
    assert!(case("{crm_tab: {delivery_as_position: true}}")
        .run(&rules)
        .is_ok());
}
