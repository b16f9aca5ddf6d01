//! Small example rule sets with cases: `tests/examples/<set>/rules/` (with its
//! `settings.yaml`) and `tests/examples/<set>/cases/*.yaml`. Each case's plan is a snapshot;
//! evaluating twice must give byte-identical output.

mod common;

use skladsync_engine::{Case, RuleSet};

#[test]
fn example_plans() {
    let base = common::root().join("tests/examples");
    let mut sets: Vec<_> = std::fs::read_dir(&base)
        .expect("tests/examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    assert!(!sets.is_empty());
    for set in sets {
        let set_name = set
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rules_dir = set.join("rules");
        let settings = rules_dir.join("settings.yaml");
        let (rules, warnings) =
            RuleSet::load(&rules_dir, settings.is_file().then_some(settings.as_path()))
                .unwrap_or_else(|d| panic!("{set_name}:\n{}", d.render(false)));
        assert!(
            warnings.is_empty(),
            "{set_name}:\n{}",
            warnings.render(false)
        );
        let cases_dir = set.join("cases");
        let cases = common::files(&cases_dir, &["yaml"]);
        assert!(!cases.is_empty(), "{set_name} has no cases");
        for path in cases {
            let name = format!("{set_name}__{}", common::case_name(&cases_dir, &path));
            let case = Case::load(&path).unwrap_or_else(|e| panic!("{e}"));
            let rendered = match case.run(&rules) {
                Ok(plan) => {
                    let again = case.run(&rules).expect("second run");
                    assert_eq!(
                        plan.to_json(),
                        again.to_json(),
                        "{name}: plans differ between runs"
                    );
                    plan.to_yaml()
                }
                Err(e) => format!("!!! evaluation error: {e}\n"),
            };
            let doc = case.doc.clone().unwrap_or_default();
            insta::with_settings!({
                snapshot_path => "../snapshots/examples",
                prepend_module_to_snapshot => false,
                omit_expression => true,
                description => doc,
            }, {
                insta::assert_snapshot!(name, rendered);
            });
        }
    }
}
